// The web UI in a real browser: Debian's chromium driven by playwright-core,
// axe-core injected into every page (no serious or critical violation
// allowed). Run by tests/it/ui.rs against a live `automate api`:
//   AUTOMATE_UI_URL=http://127.0.0.1:PORT AUTOMATE_UI_TOKEN=... \
//   AUTOMATE_UI_SCREENSHOTS=docs/ui node tests/ui/explorer.mjs
// Prints one line per case and "browser: all cases passed" at the end;
// exits 1 on the first failure.
import { base, token, check, axe, shot, visit, newPage, run, browserName } from './lib.mjs';

const protectedPages = [
  '/ui/explorer',
  '/ui/explorer/domain/ManageIQ',
  '/ui/explorer/namespace/ManageIQ/System',
  '/ui/explorer/class/ManageIQ/System/Process',
  '/ui/explorer/instance/ManageIQ/System/Process/Event',
  '/ui/explorer/method/Custom/System/Event/EmsEvent/RHEVM/log_run',
  '/ui/explorer/search?q=event',
  '/ui/explorer/resolve?path=/System/Process/Event',
];

await run(async (browser) => {
  const { context, page } = await newPage(browser);

  // 1. Every page without the session redirects to the login form.
  for (const p of protectedPages) {
    await page.goto(base + p);
    const url = new URL(page.url());
    check(url.pathname === '/ui/login', `${p} without a session lands on ${url.pathname}`);
    check(url.searchParams.get('next') === p, `${p}: next=${url.searchParams.get('next')}`);
  }
  console.log('ok - every page without the session redirects to the login form');

  // 2. Login: a wrong token is refused, the right one signs in.
  await page.goto(`${base}/ui/login`);
  await axe(page, 'login');
  await shot(page, 'login');
  await page.getByLabel('API token').fill('not-the-token');
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('alert').waitFor();
  check((await page.getByRole('alert').textContent()).includes('Invalid token'), 'wrong token refused');
  await page.getByLabel('API token').fill(token);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.waitForURL(`${base}/ui/explorer`);
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === 'automate_session');
  check(session && session.httpOnly && session.sameSite === 'Strict' && session.path === '/ui', `cookie ${JSON.stringify(session)}`);
  console.log('ok - login (wrong token refused, HttpOnly SameSite=Strict cookie on /ui)');

  // 3. The Explorer: domains by priority.
  await axe(page, 'explorer');
  await shot(page, 'explorer');
  const domains = await page.locator('table.grid tbody th a').allTextContents();
  check(domains[0] === 'Custom' && domains[1] === 'ManageIQ', `domains by priority: ${domains}`);
  console.log('ok - the Explorer lists the domains by priority');

  // 4. Browse with htmx: expand ManageIQ, System, open the class Process,
  //    then its instance Event and a method.
  const tree = page.getByRole('navigation', { name: 'Datastore tree' });
  await tree.getByRole('link', { name: 'Expand ManageIQ' }).click();
  await tree.getByRole('link', { name: 'Expand System' }).first().waitFor();
  check(page.url() === `${base}/ui/explorer`, 'htmx expanded in place (no navigation)');
  await tree.getByRole('link', { name: 'Expand System' }).first().click();
  const processLink = tree.getByRole('link', { name: 'Process', exact: true }).first();
  await processLink.waitFor();
  await processLink.click();
  await page.waitForURL(`${base}/ui/explorer/class/ManageIQ/System/Process`);
  check(await page.getByRole('heading', { name: 'Schema' }).isVisible(), 'class schema shown');
  await axe(page, 'class');
  await shot(page, 'class');
  await page.locator('ul.names').getByRole('link', { name: 'Event', exact: true }).click();
  await page.waitForURL(`${base}/ui/explorer/instance/ManageIQ/System/Process/Event`);
  check(await page.getByRole('heading', { name: 'Values' }).isVisible(), 'instance values shown');
  await axe(page, 'instance');
  await shot(page, 'instance');
  console.log('ok - browse the fixture domain to a class and an instance (htmx tree)');

  // The overlaid instance: which domain each value comes from.
  await visit(page, 'instance-overlay', '/ui/explorer/instance/Custom/System/Event/EmsEvent/RHEVM/USER_RUN_VM', true);
  const values = await page.locator('table.values').textContent();
  check(values.includes('instance in Custom'), 'values from the Custom instance');
  check(values.includes('ManageIQ: /System/event_handlers/event_action_refresh?target=src_vm'), 'shadowed ManageIQ value shown');
  console.log('ok - an overlaid instance shows which domain each value comes from');

  // A method: the Rhai source highlighted, its inputs; a fixture (Ruby) method.
  await visit(page, 'method', '/ui/explorer/method/Custom/System/Event/EmsEvent/RHEVM/log_run');
  check(await page.locator('pre.code .t-kw').count() > 0, 'highlighted keywords');
  check((await page.locator('pre.code .ln').count()) === 9, 'one numbered line per source line');
  check((await page.getByRole('table', { name: 'Inputs with their defaults' }).textContent()).includes('level'), 'inputs listed');
  await page.goto(`${base}/ui/explorer/class/ManageIQ/System/Event/EmsEvent/RHEVM`);
  const firstMethod = page.getByRole('table', { name: 'Methods of the class' }).getByRole('link').first();
  await firstMethod.click();
  await page.waitForURL(/\/ui\/explorer\/method\/ManageIQ\//);
  await axe(page, 'method-ruby');
  console.log('ok - a method: highlighted source and inputs; a fixture method by the class page');

  // 5. Search by name across domains.
  await page.goto(`${base}/ui/explorer`);
  await tree.getByLabel('Search by name').fill('user_run_vm');
  await tree.getByRole('button', { name: 'Search' }).click();
  await page.waitForURL(/\/ui\/explorer\/search\?q=user_run_vm/);
  const found = await page.getByRole('table', { name: /Matches/ }).locator('tbody tr').allTextContents();
  check(found.some((r) => r.includes('Custom')) && found.some((r) => r.includes('ManageIQ')), `search results: ${found.length}`);
  await axe(page, 'search');
  await shot(page, 'search');
  console.log('ok - search finds USER_RUN_VM in both domains');

  // 6. The resolution list: the winner, and a name that falls back to .missing.
  await visit(page, 'resolve', '/ui/explorer/resolve?path=/System/Event/EmsEvent/RHEVM/USER_RUN_VM');
  const winner = await page.locator('tr.winner th').allTextContents();
  check(winner.length === 1 && winner[0] === 'Custom', `winner ${winner}`);
  await page.goto(`${base}/ui/explorer/resolve?path=/System/Event/EmsEvent/RHEVM/NO_SUCH_EVENT`);
  check((await page.locator('main').textContent()).includes('falls back to'), '.missing fallback said');
  await axe(page, 'resolve-missing');
  console.log('ok - the resolution list names the winner and the .missing fallback');

  // Every other page kind passes axe too.
  await visit(page, 'domain', '/ui/explorer/domain/ManageIQ');
  await visit(page, 'namespace', '/ui/explorer/namespace/ManageIQ/System/Event');
  const nf = await page.goto(`${base}/ui/explorer/class/ManageIQ/No/Such`);
  check(nf.status() === 404, 'unknown class is a 404');
  await axe(page, 'not-found');

  // 7. A form post without the CSRF token is refused (403) and changes nothing.
  const statuses = await page.evaluate(async () => {
    const post = (body, headers = {}) =>
      fetch('/ui/logout', {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
        body,
        redirect: 'manual',
      }).then((r) => r.status);
    return [await post('x=1'), await post('csrf_token=bad'), await post('', { 'X-CSRF-Token': 'bad' })];
  });
  check(statuses.every((s) => s === 403), `posts without the token: ${statuses}`);
  await page.goto(`${base}/ui/explorer`);
  check(new URL(page.url()).pathname === '/ui/explorer', 'still signed in after refused posts');
  console.log('ok - a form post without the CSRF token is refused with 403');

  // 8. Without JavaScript the pages still read, the tree is plain links.
  //    (Chromium only: Playwright over WebDriver BiDi does not honour
  //    javaScriptEnabled: false in Firefox, the context keeps JavaScript.)
  if (browserName === 'chromium') {
    const nojs = await browser.newContext({ javaScriptEnabled: false, viewport: { width: 1280, height: 860 } });
    await nojs.addCookies([{ ...session }]);
    const p2 = await nojs.newPage();
    await p2.goto(`${base}/ui/explorer`);
    await p2.getByRole('navigation', { name: 'Datastore tree' }).getByRole('link', { name: 'Expand ManageIQ' }).click();
    await p2.waitForURL(`${base}/ui/explorer/domain/ManageIQ`);
    check(await p2.getByRole('navigation', { name: 'Datastore tree' }).getByRole('link', { name: 'System', exact: true }).count() > 0, 'no-JS tree opened by navigation');
    await nojs.close();
    console.log('ok - without JavaScript the tree opens by plain links');
  } else {
    console.log(`ok - (skipped in ${browserName}: no JavaScript-free context over WebDriver BiDi; Chromium runs it)`);
  }

  // 9. Logout ends the session.
  await page.getByRole('button', { name: 'Log out' }).click();
  await page.waitForURL(`${base}/ui/login`);
  await page.goto(`${base}/ui/explorer`);
  check(new URL(page.url()).pathname === '/ui/login', 'signed out');
  console.log('ok - logout');

});
