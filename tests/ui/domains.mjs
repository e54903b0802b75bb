// The Domains page (ManageIQ's Import/Export) in a real browser (Debian's
// chromium via playwright-core, axe-core on every page), run by
// tests/it/ui_domains.rs against `automate api`: disable/enable, a new
// priority, the locked ManageIQ domain's disabled actions, export as a zip
// download, import an upload with a preview first, a bad zip refused.
// Screenshots: domains.png, domain-preview.png.
import { readFileSync } from 'node:fs';
import { base, check, axe, shot, newPage, run, login } from './lib.mjs';

await run(async (browser) => {
  const { page } = await newPage(browser);
  await page.goto(`${base}/ui/domains`);
  check(new URL(page.url()).pathname === '/ui/login', 'the page without the session redirects to the login form');
  await login(page, '/ui/domains');
  await axe(page, 'domains');

  const names = await page.locator('table.domains tbody th a').allTextContents();
  check(names[0] === 'Custom' && names[names.length - 1] === 'ManageIQ', `by priority: ${names}`);
  const miq = page.locator('#domain-ManageIQ');
  check(await miq.getByRole('button', { name: 'Disable' }).isDisabled(), 'ManageIQ cannot be disabled');
  check((await miq.textContent()).includes('system domain: read-only'), 'and says why');
  console.log('ok - domains by priority; the locked domain\'s actions are disabled, with why');

  const status = () => page.getByRole('status').textContent();
  // A plain form post: its status is read once the page it answered with
  // has loaded, not from the page the button was on.
  const submit = (name, opts = {}) => Promise.all([
    page.waitForEvent('load'),
    page.getByRole('button', { name, ...opts }).click(),
  ]);
  await submit('Disable Custom');
  const off = await status();
  check(off.includes('Domain Custom disabled.'), `disabled: ${off}`);
  await submit('Enable Custom');
  const on = await status();
  check(on.includes('Domain Custom enabled.'), `enabled: ${on}`);
  // Typed over the selected value: Playwright's fill() over WebDriver BiDi
  // in Firefox types after what a number input holds ("10" became "1040";
  // its select-all does not reach number inputs); a user's Ctrl+A does.
  const prioField = page.getByLabel('Priority of Custom', { exact: true });
  await prioField.press('Control+a');
  await prioField.pressSequentially('40');
  check((await prioField.inputValue()) === '40', 'the priority field holds 40');
  await submit('Set the priority of Custom');
  const prio = await status();
  check(prio.includes('Domain Custom given priority 40.'), `priority: ${prio}`);
  check(await page.getByRole('button', { name: 'Move Custom down' }).isDisabled(), 'nothing moves below ManageIQ');
  check(await page.getByRole('button', { name: 'Move Custom up' }).isDisabled(), 'the first cannot move up');
  console.log('ok - disable, enable, priority 40; Up/Down disabled where there is no place to go');

  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('link', { name: 'Export Custom as zip' }).click(),
  ]);
  check(download.suggestedFilename() === 'Custom.zip', `file name ${download.suggestedFilename()}`);
  const zip = readFileSync(await download.path());
  check(zip.subarray(0, 2).toString() === 'PK', 'a zip');
  console.log(`ok - export Custom as a zip download (${zip.length} bytes)`);

  await page.getByLabel('Zip file').setInputFiles({ name: 'Custom.zip', mimeType: 'application/zip', buffer: zip });
  await page.getByLabel('Import as (name)').fill('BrowserCopy');
  await page.getByRole('button', { name: 'Preview' }).click();
  await page.getByRole('heading', { name: 'Import preview: BrowserCopy' }).waitFor();
  const changes = await page.locator('table.changes').textContent();
  check(changes.includes('log_run.rhai'), `preview lists the files: ${changes}`);
  await axe(page, 'domain-preview');
  await shot(page, 'domain-preview', true);
  await page.getByRole('button', { name: 'Import BrowserCopy' }).click();
  await page.waitForURL(`${base}/ui/domains`);
  check((await status()).includes('Imported domain BrowserCopy from the upload Custom.zip'), 'imported');
  check(await page.locator('#domain-BrowserCopy').isVisible(), 'listed');
  console.log('ok - import an upload: previewed, then imported and listed');

  await page.getByLabel('Zip file').setInputFiles({ name: 'broken.zip', mimeType: 'application/zip', buffer: Buffer.from('not a zip') });
  await submit('Import', { exact: true });
  const bad = await page.getByRole('alert').textContent();
  check(bad.includes('Nothing was imported: the upload broken.zip'), `bad zip: ${bad}`);
  await axe(page, 'domains-error');
  await page.goto(`${base}/ui/domains`);
  await shot(page, 'domains', true);
  console.log('ok - a bad zip is refused naming the file');
});
