// The Scheduled retries page in a real browser, run by
// tests/it/ui_requests.rs against `automate api` after a request of
// /Test/Slow/default (a machine retrying in an hour) was approved: the
// retry is listed with its state, due time and URI; axe; retries.png.
import { check, visit, newPage, run, login } from './lib.mjs';

await run(async (browser) => {
  const { page } = await newPage(browser);
  await login(page, '/ui/retries');
  await visit(page, 'retries', '/ui/retries', true);
  const table = await page.locator('table.retries').textContent();
  check(table.includes('/Test/Slow/default?AutomationTask'), `the retry is listed: ${table}`);
  check(await page.getByRole('cell', { name: 'scheduled', exact: true }).isVisible(), 'with its state');
  console.log('ok - the scheduled retry is listed with its state, due time and URI');
});
