// automate's Events page (/ui/events): live updates over the session's
// server-sent events (/ui/events/stream, the REST API's stream; no token
// here). Updates are throttled and batched: the server sends at most 10
// messages a second; the page applies what has arrived at most once per
// animation frame and per MIN_GAP_MS, as one fragment, keeps the newest
// data-max-rows rows, and never lets its queue grow past that either.
// "Pause" stops applying (events are still counted); the counter shows the
// events per second that reached the page (with those the server left
// out). Without JavaScript the page is a plain list with a filter form.
(function () {
  'use strict';
  var table = document.getElementById('events-table');
  if (!table || !table.dataset.stream || typeof EventSource === 'undefined') return;
  var tbody = table.tBodies[0];
  var controls = document.getElementById('events-live');
  var rateEl = document.getElementById('events-rate');
  var stateEl = document.getElementById('events-state');
  var pauseBtn = document.getElementById('events-pause');
  var maxRows = parseInt(table.dataset.maxRows, 10) || 200;
  var fromMs = table.dataset.fromMs ? Number(table.dataset.fromMs) : null;
  var MIN_GAP_MS = 100;

  var pending = []; // arrived, not shown yet; oldest first
  var paused = false;
  var scheduled = false;
  var lastFlush = 0;
  var thisSecond = 0;
  // What the page did, for the browser test (and the curious).
  // workMs / maxWorkMs: the time this script spent on messages and DOM
  // updates (what it adds to the main thread; layout and paint come after).
  var stats = { messages: 0, received: 0, dropped: 0, skipped: 0, shown: 0, updates: 0, rate: 0, maxRate: 0, workMs: 0, maxWorkMs: 0 };
  window.automateEvents = stats;
  controls.hidden = false;

  function say(text) { stateEl.textContent = text; }

  function summary(e) {
    var parts = [];
    if (e.generic_events && e.generic_events.length) parts.push('raised ' + e.generic_events.join(', '));
    if (e.policies && e.policies.length) parts.push('policies ' + e.policies.join(', '));
    if (e.alerts && e.alerts.length) parts.push('alerts ' + e.alerts.join(', '));
    if (e.error) parts.push('error: ' + e.error);
    return parts.length ? parts.join('; ') : 'nothing raised';
  }

  function td(text) {
    var c = document.createElement('td');
    c.textContent = text;
    return c;
  }

  function row(e) {
    var tr = document.createElement('tr');
    tr.className = 'new';
    tr.appendChild(td(e.timestamp || ''));
    var th = document.createElement('th');
    th.scope = 'row';
    var a = document.createElement('a');
    a.href = '/ui/events/' + encodeURIComponent(e.id);
    a.textContent = e.event_type;
    th.appendChild(a);
    tr.appendChild(th);
    var p = td(e.provider || '');
    if (e.source) {
      var s = document.createElement('span');
      s.className = 'hint';
      s.textContent = e.source;
      p.appendChild(document.createTextNode(' '));
      p.appendChild(s);
    }
    tr.appendChild(p);
    tr.appendChild(td(e.vm_name || e.vm_ems_ref || ''));
    tr.appendChild(td(summary(e)));
    return tr;
  }

  function worked(since) {
    var ms = performance.now() - since;
    stats.workMs += ms;
    if (ms > stats.maxWorkMs) stats.maxWorkMs = ms;
  }

  function flush() {
    scheduled = false;
    if (paused || !pending.length) return;
    lastFlush = performance.now();
    var began = lastFlush;
    var batch = pending;
    pending = [];
    var frag = document.createDocumentFragment();
    for (var i = batch.length - 1; i >= 0; i--) frag.appendChild(row(batch[i]));
    var empty = tbody.querySelector('tr.empty');
    if (empty) empty.remove();
    tbody.insertBefore(frag, tbody.firstChild);
    while (tbody.rows.length > maxRows) tbody.deleteRow(-1);
    stats.shown += batch.length;
    stats.updates += 1;
    worked(began);
  }

  function schedule() {
    if (paused || scheduled || !pending.length) return;
    scheduled = true;
    var wait = Math.max(0, lastFlush + MIN_GAP_MS - performance.now());
    setTimeout(function () { requestAnimationFrame(flush); }, wait);
  }

  var source = new EventSource(table.dataset.stream);
  source.onopen = function () { say(paused ? 'paused' : 'live'); };
  source.onerror = function () { say('reconnecting…'); };
  source.addEventListener('events', function (m) {
    var began = performance.now();
    var d;
    try { d = JSON.parse(m.data); } catch (err) { return; }
    var events = d.events || [];
    stats.messages += 1;
    stats.received += events.length;
    stats.dropped += d.dropped || 0;
    thisSecond += events.length + (d.dropped || 0);
    for (var i = 0; i < events.length; i++) {
      var e = events[i];
      if (fromMs !== null && !(Date.parse(e.timestamp) >= fromMs)) continue;
      pending.push(e);
    }
    if (pending.length > maxRows) {
      stats.skipped += pending.length - maxRows;
      pending.splice(0, pending.length - maxRows);
    }
    if (paused) say('paused, ' + pending.length + ' new waiting');
    schedule();
    worked(began);
  });

  setInterval(function () {
    stats.rate = thisSecond;
    if (thisSecond > stats.maxRate) stats.maxRate = thisSecond;
    thisSecond = 0;
    rateEl.textContent = String(stats.rate);
  }, 1000);

  pauseBtn.addEventListener('click', function () {
    paused = !paused;
    pauseBtn.setAttribute('aria-pressed', paused ? 'true' : 'false');
    pauseBtn.textContent = paused ? 'Resume' : 'Pause';
    say(paused ? 'paused, ' + pending.length + ' new waiting' : 'live');
    schedule();
  });
})();
