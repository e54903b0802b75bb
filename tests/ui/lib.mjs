// What every browser script shares: the environment tests/it/ui.rs passes
// (AUTOMATE_UI_URL, AUTOMATE_UI_TOKEN, AUTOMATE_UI_SCREENSHOTS,
// AUTOMATE_CHROMIUM, AUTOMATE_BROWSER, AUTOMATE_FIREFOX), launching
// Debian's chromium (or, with AUTOMATE_BROWSER=firefox, Debian's stock
// firefox-esr over WebDriver BiDi) through playwright-core, axe-core on a
// page (no serious or critical violation), screenshots, signing in, and
// the "ok - ..." / "browser: all cases passed" report the Rust side looks
// for.
import { chromium, firefox } from 'playwright-core';
import { createRequire } from 'node:module';
import { readFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
export const base = process.env.AUTOMATE_UI_URL;
export const token = process.env.AUTOMATE_UI_TOKEN;
const shots = process.env.AUTOMATE_UI_SCREENSHOTS;
/** `chromium` (the default) or `firefox`. */
export const browserName = (process.env.AUTOMATE_BROWSER || 'chromium').toLowerCase();
if (!['chromium', 'firefox'].includes(browserName)) {
  console.error(`AUTOMATE_BROWSER=${browserName}: give chromium or firefox`);
  process.exit(2);
}
const executablePath = browserName === 'firefox'
  ? process.env.AUTOMATE_FIREFOX || '/usr/bin/firefox-esr'
  : process.env.AUTOMATE_CHROMIUM || '/usr/bin/chromium';
if (!base || !token) {
  console.error('AUTOMATE_UI_URL and AUTOMATE_UI_TOKEN are required');
  process.exit(2);
}
if (shots) mkdirSync(shots, { recursive: true });

/** Throws (failing the script) unless `cond`. */
export function check(cond, what) {
  if (!cond) throw new Error(`failed: ${what}`);
}

/** The pages axe checked, by name. */
export const pagesChecked = [];
/** Console errors seen (a CSP violation, a script error); must stay empty. */
export const consoleErrors = [];

/**
 * axe-core on the page as it is now: no serious or critical violation.
 *
 * In Firefox (ESR 153 over WebDriver BiDi) axe runs on a copy of the page
 * in a second tab of the same context: the DOM as it is now (`content()`,
 * htmx's changes and open <details> included), served at the same URL
 * (so its styles and scripts load as they did). On some pages (the
 * Simulation result, an event's trace, the compile-error form) axe and
 * Playwright's label/role lookups on the same document crash Firefox's
 * content process (signal 11, "Execution context was destroyed"), in
 * whichever order they run; on the copy, axe runs alone.
 */
export async function axe(page, name) {
  if (browserName !== 'firefox') return axeOn(page, name);
  const url = page.url();
  const html = await page.content();
  const copy = await page.context().newPage();
  try {
    await copy.route((u) => u.href === url, (route) => route.fulfill({
      status: 200, contentType: 'text/html; charset=utf-8', body: html,
    }));
    await copy.goto(url);
    await axeOn(copy, name);
  } finally {
    await copy.close();
  }
}

async function axeOn(page, name) {
  try {
    await page.evaluate(axeSource);
  } catch (e) {
    // Firefox over WebDriver BiDi may replace the realm of a page that a
    // form post rendered just after Playwright saw it load: once more.
    if (!String(e.message).includes('Execution context was destroyed')) throw e;
    console.log(`  (${name}: the page's script context was replaced; axe injected again)`);
    await page.waitForLoadState('load');
    await page.evaluate(axeSource);
  }
  const result = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ')),
    }));
  });
  const bad = result.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  const minor = result.filter((v) => !(v.impact === 'serious' || v.impact === 'critical'));
  pagesChecked.push(name);
  if (minor.length) {
    console.log(`  axe ${name}: ${minor.length} minor/moderate: ${minor.map((v) => v.id).join(', ')}`);
  }
  check(bad.length === 0, `axe on ${name}: ${JSON.stringify(bad, null, 1)}`);
}

/**
 * A screenshot `docs/ui/NAME.png` (when AUTOMATE_UI_SCREENSHOTS is set;
 * in Chromium only, so a Firefox run does not redraw the docs' pictures).
 */
export async function shot(page, name, fullPage = false) {
  if (shots && browserName === 'chromium') {
    await page.screenshot({ path: join(shots, `${name}.png`), fullPage });
  }
}

/** Opens `path`, checks it answers < 400, runs axe and takes a screenshot. */
export async function visit(page, name, path, fullPage = false) {
  const res = await page.goto(base + path);
  check(res && res.status() < 400, `${path} answers ${res && res.status()}`);
  await axe(page, name);
  await shot(page, name, fullPage);
}

/**
 * Playwright drives stock Firefox over WebDriver BiDi (its `moz-firefox`
 * channel), but a browser context's setup sends
 * `emulation.setMediaFeaturesOverride`, which Firefox ESR 153 does not
 * implement yet ("unknown command"), failing `newContext`. The tests never
 * emulate media features, so that one command is answered by a harmless
 * `session.status` under the same id instead (at the WebSocket playwright
 * talks BiDi over); every other command goes through untouched.
 */
function bidiShim() {
  const { ws } = require('playwright-core/lib/utilsBundle');
  if (ws.prototype.__automateShim) return;
  const send = ws.prototype.send;
  ws.prototype.send = function (data, ...rest) {
    if (typeof data === 'string' && data.includes('"emulation.setMediaFeaturesOverride"')) {
      const msg = JSON.parse(data);
      if (msg.method === 'emulation.setMediaFeaturesOverride') {
        data = JSON.stringify({ id: msg.id, method: 'session.status', params: {} });
      }
    }
    return send.call(this, data, ...rest);
  };
  ws.prototype.__automateShim = true;
}

/** Headless chromium, or firefox with AUTOMATE_BROWSER=firefox. */
export async function launch() {
  if (browserName === 'firefox') {
    bidiShim();
    const browser = await firefox.launch({ executablePath, channel: 'moz-firefox', headless: true });
    console.log(`  browser: firefox ${browser.version()} (WebDriver BiDi)`);
    return browser;
  }
  return chromium.launch({
    executablePath,
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
  });
}

/** A page in a new 1280x860 context that records console errors. */
export async function newPage(browser) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const page = await context.newPage();
  // AUTOMATE_UI_DEBUG=1: the page's navigations, loads, crashes and close.
  if (process.env.AUTOMATE_UI_DEBUG) {
    page.on('framenavigated', (f) => console.log(`  [debug] navigated: ${f.url()}`));
    page.on('load', () => console.log(`  [debug] load: ${page.url()}`));
    page.on('crash', () => console.log(`  [debug] CRASH: ${page.url()}`));
    page.on('close', () => console.log(`  [debug] close: ${page.url()}`));
  }
  page.on('console', (m) => {
    // Refused loads (401, 403, 404) are logged as failed loads; anything
    // else (a CSP violation, a script error) fails the script.
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) {
      consoleErrors.push(`${page.url()}: ${m.text()}`);
    }
  });
  return { context, page };
}

/** Signs in with the API token through the login form, landing on `next`. */
export async function login(page, next = '/ui/explorer') {
  await page.goto(`${base}/ui/login?next=${encodeURIComponent(next)}`);
  await page.getByLabel('API token').fill(token);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.waitForURL(`${base}${next}`);
}

/**
 * Runs `body(browser)` in a fresh chromium, then reports: every check of
 * the script passed, no console error, axe's pages; exits 1 on failure.
 */
export async function run(body) {
  // A hung browser or server fails the script instead of hanging the test.
  const limit = Number(process.env.AUTOMATE_UI_TIMEOUT_S || 300);
  setTimeout(() => {
    console.log(`not ok - the script did not finish within ${limit} s`);
    process.exit(1);
  }, limit * 1000).unref();
  const browser = await launch();
  let failed = false;
  try {
    await body(browser);
    check(consoleErrors.length === 0, `console errors (CSP?): ${consoleErrors.join('\n')}`);
    console.log(`ok - axe: no serious or critical violation on ${pagesChecked.length} pages (${pagesChecked.join(', ')})`);
    console.log('browser: all cases passed');
  } catch (e) {
    failed = true;
    console.log(`not ok - ${e.message}`);
    console.log(consoleErrors.join('\n'));
  } finally {
    await browser.close();
  }
  process.exit(failed ? 1 : 0);
}
