// The Simulation page in a real browser (Debian's chromium, playwright-core,
// axe-core on every state of the page). Run by tests/it/ui_sim.rs against a
// live `automate api` whose store holds the VM AUTOMATE_UI_VM:
//   AUTOMATE_UI_URL=... AUTOMATE_UI_TOKEN=... AUTOMATE_UI_VM=... \
//   AUTOMATE_UI_SCREENSHOTS=docs/ui node tests/ui/simulation.mjs
// Fills the form (the object select htmx fills when the type changes, a row
// added with htmx), runs USER_RUN_VM, sees the `.missing` fallback
// highlighted (a class and a visible label), expands the trees, and opens
// the permalink with JavaScript off (in Chromium). Screenshots:
// simulation*.png.
import { base, browserName, check, axe, shot, newPage, login, run } from './lib.mjs';

const vm = process.env.AUTOMATE_UI_VM;
const event = process.env.AUTOMATE_UI_EVENT;
check(vm && event, 'AUTOMATE_UI_VM and AUTOMATE_UI_EVENT are set');

await run(async (browser) => {
  const { page } = await newPage(browser);
  await login(page, '/ui/simulation');
  await axe(page, 'simulation-form');
  await shot(page, 'simulation-form');
  console.log('ok - the form (entry point, message, object, attributes)');

  // The entry point: any URI typed.
  await page.getByLabel('Entry point').selectOption('');
  await page.getByLabel('Or any URI').fill('/System/Event/EmsEvent/RHEVM/USER_RUN_VM');
  // The object: choosing a type swaps in a select of its objects (htmx):
  // first the VMs, then the events.
  await page.getByLabel('Type', { exact: true }).selectOption('VmOrTemplate');
  const objectSelect = page.locator('select#sim-object');
  await objectSelect.waitFor();
  check((await objectSelect.locator(`option[value="${vm}"]`).textContent()).includes('web-01'), 'the VM is listed by name');
  await page.getByLabel('Type', { exact: true }).selectOption('EventStream');
  await page.locator(`select#sim-object option[value="${event}"]`).waitFor({ state: 'attached' });
  await page.locator('select#sim-object').selectOption(event);
  check((await page.locator('select#sim-object option:checked').textContent()).includes('USER_RUN_VM'), 'the event is listed by type');
  // A row added with htmx, in place.
  await page.getByRole('button', { name: 'Add row' }).click();
  await page.locator('#attr-4').waitFor();
  await page.getByRole('button', { name: 'Add row' }).click();
  await page.locator('#attr-5').waitFor();
  check(page.url().endsWith('/ui/simulation'), `Add row stayed on the page: ${page.url()}`);
  await page.getByLabel('Attribute 1 name').fill('VmOrTemplate::vm');
  await page.getByLabel('Attribute 1 value').fill(vm);
  await page.getByLabel('Attribute 4 name').fill('note');
  await page.getByLabel('Attribute 4 value').fill('from the browser');
  await axe(page, 'simulation-filled');
  console.log('ok - the object select filled by htmx, rows added in place');

  await page.getByRole('button', { name: 'Run simulation' }).click();
  await page.waitForURL(/run=1/);
  await page.getByRole('heading', { name: /Result of/ }).waitFor();
  const url = new URL(page.url());
  check(url.searchParams.get('object_id') === event, `the URL carries the object: ${url}`);
  check(url.searchParams.getAll('attr').includes('note'), `the URL carries the rows: ${url}`);

  // The .missing fallback: highlighted by a class and a visible label.
  const missing = page.locator('.trace-tree li.t-relationship.missing').first();
  await missing.waitFor();
  const label = missing.locator('.badge.b-missing').first();
  check(await label.isVisible(), 'the .missing label is visible');
  check((await label.textContent()) === '.missing fallback', 'the label says .missing fallback');
  const outline = await missing.locator(':scope > details > summary').evaluate((e) => getComputedStyle(e).outlineStyle);
  check(outline === 'dashed', `the .missing relationship is outlined: ${outline}`);
  check(await missing.getByText('trying [.missing]').isVisible(), 'the fallback line shows beneath it');
  console.log('ok - the .missing fallback is highlighted (class, outline, visible label)');

  // Methods with their return codes.
  const rcs = await page.locator('.trace-tree .badge').allTextContents();
  check(rcs.some((t) => t.startsWith('rc=MIQ_')), `return codes shown: ${rcs}`);

  // Expand the trees: a closed trace node, a child object.
  // (A handle: the locator itself would move on to the next closed node.)
  const closedCount = await page.locator('.trace-tree details:not([open])').count();
  check(closedCount > 0, 'some trace nodes start closed');
  const closed = await page.locator('.trace-tree details:not([open])').first().elementHandle();
  await (await closed.$(':scope > summary')).click();
  check(await closed.evaluate((d) => d.open), 'a trace node expands');
  check((await page.locator('.trace-tree details:not([open])').count()) === closedCount - 1, 'one node more is open');
  const child = page.locator('.object-tree ul details').first();
  await child.locator(':scope > summary').click();
  check(await child.evaluate((d) => d.open), 'a child object expands');
  check(await child.locator('table.attrs').first().isVisible(), 'its attributes show');
  const root = page.locator('.object-tree > li > details > table.attrs');
  check((await root.textContent()).includes('web-01') || (await root.textContent()).includes(vm), 'the root holds the VM');
  console.log('ok - the object tree and the trace tree expand');

  // The commands: copyable, no real token.
  const cli = await page.getByLabel('automate', { exact: true }).inputValue();
  check(cli.startsWith('automate instantiate /System/Event/EmsEvent/RHEVM/USER_RUN_VM') && cli.includes(`EventStream::event_stream=${event}`) && cli.includes(`VmOrTemplate::vm=${vm}`), `cli: ${cli}`);
  const curl = await page.locator('#cmd-curl').inputValue();
  check(curl.includes('$AUTOMATE_TOKEN') && !curl.includes(process.env.AUTOMATE_UI_TOKEN), 'curl names $AUTOMATE_TOKEN only');
  check((await page.locator('.notice').textContent()).startsWith('Sandbox: nothing was written'), 'the sandbox notice');
  check((await page.locator('ul.diff').textContent()).includes('would update VmOrTemplate'), 'the diff lists what would have been written');
  check((await page.getByRole('alert').count()) === 0, 'no error');
  console.log('ok - the automate instantiate and curl commands, the sandbox notice');

  await axe(page, 'simulation-result');
  await shot(page, 'simulation', true);
  await missing.scrollIntoViewIfNeeded();
  await shot(page, 'simulation-missing');
  const permalink = await page.locator('#permalink').getAttribute('href');

  // A bad URI: a clear error on the page.
  await page.goto(`${base}/ui/simulation?submitted=1&uri=System%2FNope&run=1`);
  check((await page.getByRole('alert').textContent()).includes('is not an Automate URI'), 'a bad URI is named');
  await axe(page, 'simulation-error');
  console.log('ok - a bad URI is a clear error');

  // Without JavaScript: the permalink runs it again; the trees are
  // <details>, readable and expandable. (Chromium only: Playwright over
  // WebDriver BiDi does not honour javaScriptEnabled: false in Firefox.)
  if (browserName === 'chromium') {
    const nojs = await browser.newContext({ javaScriptEnabled: false, viewport: { width: 1280, height: 860 } });
    const plain = await nojs.newPage();
    await login(plain, '/ui/simulation');
    await plain.goto(base + permalink);
    const m = plain.locator('.trace-tree li.t-relationship.missing .badge.b-missing').first();
    check(await m.isVisible(), 'without JavaScript the .missing label shows');
    const obj = plain.locator('.object-tree ul details').first();
    await obj.locator(':scope > summary').click();
    check(await obj.evaluate((d) => d.open), 'without JavaScript a child object expands');
    check((await plain.locator('#sim-object').evaluate((e) => e.tagName)) === 'SELECT', 'the type known: the object select is rendered');
    await nojs.close();
    console.log('ok - without JavaScript: the permalink, the trees');
  } else {
    console.log(`ok - (skipped in ${browserName}: no JavaScript-free context over WebDriver BiDi; Chromium runs it)`);
  }
});
