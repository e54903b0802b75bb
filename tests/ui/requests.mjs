// The Requests and Retries pages in a real browser (Debian's chromium via
// playwright-core, axe-core on every page), run by tests/it/ui_requests.rs
// against `automate run` (workers and the retry runner):
// create, approve and watch a request finish; a form without the CSRF
// token refused. Screenshots: requests.png, request-new.png, request.png,
// and tests/ui/retries.mjs makes retries.png.
import { base, check, axe, shot, visit, newPage, run, login } from './lib.mjs';

await run(async (browser) => {
  const { page } = await newPage(browser);

  // Without the session: the login form.
  for (const p of ['/ui/requests', '/ui/requests/new', '/ui/retries']) {
    await page.goto(base + p);
    const url = new URL(page.url());
    check(url.pathname === '/ui/login' && url.searchParams.get('next') === p, `${p} without a session lands on ${page.url()}`);
  }
  console.log('ok - the request pages without the session redirect to the login form');

  await login(page, '/ui/requests');
  await axe(page, 'requests-empty');
  check((await page.textContent('main')).includes('No request yet.'), 'an empty list says so');

  // Create: the retrying /Test/Counter/default, not auto-approved.
  await page.getByRole('link', { name: 'New automation request' }).click();
  await page.waitForURL(`${base}/ui/requests/new`);
  await axe(page, 'request-new');
  await shot(page, 'request-new', true);
  await page.getByLabel('Namespace').fill('Test');
  await page.getByLabel('Class', { exact: true }).fill('Counter');
  await page.getByLabel('Instance').fill('default');
  await page.getByLabel('Attribute 1 name').fill('who');
  await page.getByLabel('Attribute 1 value').fill('Ada');
  await page.getByLabel('Requester').fill('jdoe');
  await page.getByRole('button', { name: 'Create request' }).click();
  await page.waitForURL(/\/ui\/requests\/\d+$/);
  const requestUrl = page.url();
  const id = requestUrl.split('/').pop();
  const created = await page.getByRole('status').textContent();
  check(created.includes(`Automation request ${id} created (pending_approval, pending)`), `flash: ${created}`);
  check((await page.locator('#request-state-value').textContent()).trim() === 'pending', 'pending before approval');
  check(await page.getByRole('cell', { name: 'Ada' }).isVisible(), 'the attribute is shown');
  check(await page.getByRole('rowheader', { name: 'request_created' }).isVisible(), 'request_created raised');
  console.log(`ok - request ${id} created from the form, pending approval, request_created shown`);

  // Approve with a reason, then watch it finish: the state section polls
  // while the service's retry runner delivers the machine's retries.
  await page.getByLabel('Reason (optional)').fill('ship it');
  await page.getByRole('button', { name: 'Approve' }).click();
  await page.waitForURL(requestUrl);
  const approved = await page.getByRole('status').first().textContent();
  check(approved.includes(`Request ${id} approved`), `flash: ${approved}`);
  await page.locator('#request-state-value', { hasText: 'finished' }).waitFor({ timeout: 30000 });
  check(page.url() === requestUrl, 'htmx refreshed the state in place');
  const tasks = await page.locator('table.tasks').textContent();
  check(tasks.includes('AutomationTask') && tasks.includes('finished') && tasks.includes('Ok'), `task: ${tasks}`);
  const events = await page.locator('table.events').textContent();
  for (const e of ['request_created', 'request_approved', 'request_starting']) {
    check(events.includes(e), `${e} in ${events}`);
  }
  check((await page.textContent('main')).includes('can no longer be approved or denied'), 'approval closed');
  await axe(page, 'request');
  await shot(page, 'request', true);
  console.log(`ok - approved; watched request ${id} finish (the retry runner finished its state machine)`);

  await visit(page, 'requests', '/ui/requests');
  const row = await page.locator('table.requests tbody tr').first().textContent();
  check(row.includes(id) && row.includes('finished') && row.includes('jdoe'), `list row: ${row}`);
  await page.goto(`${base}/ui/retries`);
  await axe(page, 'retries-after');
  console.log('ok - the list shows it finished');

  // A form without the session's CSRF token is refused.
  await page.goto(`${base}/ui/requests/new`);
  await page.evaluate(() => document.querySelector('form[action="/ui/requests"] input[name=csrf_token]').remove());
  await page.getByLabel('Namespace').fill('Test');
  await page.getByLabel('Class', { exact: true }).fill('Work');
  await page.getByLabel('Instance').fill('hello');
  await page.getByRole('button', { name: 'Create request' }).click();
  await page.getByRole('heading', { name: 'Forbidden' }).waitFor();
  await page.goto(`${base}/ui/requests`);
  check(await page.locator('table.requests tbody tr').count() === 1, 'nothing was created');
  console.log('ok - a form post without the CSRF token is refused (403), nothing created');
});
