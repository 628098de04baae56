// Shared by the browser scenarios in this folder. Each scenario is a node
// script run by e2e/src/browser.rs (`run_script`), which sets:
//   SCREENSHOT_DIR     where a failing step leaves its screenshot
//   SCRIPT_TIMEOUT_MS  after which main() gives up, screenshot first
//   CHROMIUM_PATH      the browser (Debian's /usr/bin/chromium)
// A scenario also runs by hand: `node e2e/browser/smoke.mjs` with the
// variables it reads (URL, ...) set; screenshots then go to the cwd.
//
//   import { launch, main, step, expect, expectText } from './lib.mjs';
//   main(async () => {
//     const { page } = await launch();
//     await step('open', () => page.goto(process.env.URL));
//     await step('title', () => expectText(page.locator('h1'), 'MyPlatform'));
//   });

import { createRequire } from 'node:module';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

// ESM resolves a bare 'playwright-core' from the importing file's folder
// upwards and ignores both the cwd and NODE_PATH, so a script in e2e/browser
// would never see web/node_modules. Resolving through a require rooted at
// web/package.json finds it wherever the scenario is started from.
const require = createRequire(new URL('../../web/package.json', import.meta.url));
const { chromium } = require('playwright-core');

const CHROMIUM_PATH = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const SCREENSHOT_DIR = process.env.SCREENSHOT_DIR || '.';
const SCRIPT_TIMEOUT_MS = Number(process.env.SCRIPT_TIMEOUT_MS || 110_000);

// Nothing here may reach past the loopback: no updates, sync, field trials
// or QUIC probing. --no-sandbox because the tests run as root.
export const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

const started = performance.now();
const stamp = () => `[${((performance.now() - started) / 1000).toFixed(2)}s]`;
export const log = (...args) => console.log(stamp(), ...args);

let browser = null;
let currentPage = null;
let stepNo = 0;
const pageErrors = [];
let pageErrorsSeen = 0;
let ignoredConsole = [];

/** Chromium with one page. Page errors fail the scenario (see watch()). */
export async function launch({ viewport = { width: 1280, height: 800 }, ignoreConsole = [] } = {}) {
  ignoredConsole = ignoreConsole;
  const t0 = performance.now();
  browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_FLAGS, headless: true });
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  watch(page);
  log(`chromium ${browser.version()} up in ${Math.round(performance.now() - t0)} ms`);
  return { browser, context, page };
}

/**
 * Records the page's uncaught exceptions and console.error messages (minus
 * those matching an `ignoreConsole` pattern of launch()) and makes it the
 * page a failing step screenshots. A UI that throws while still looking
 * right is broken, so any of these fails the step during which it happened.
 */
export function watch(page) {
  currentPage = page;
  page.on('pageerror', (err) => pageErrors.push(`uncaught exception: ${err.stack || err}`));
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    const text = msg.text();
    if (ignoredConsole.some((re) => re.test(text))) return;
    const loc = msg.location();
    pageErrors.push(`console.error: ${text}${loc.url ? ` (${loc.url}:${loc.lineNumber})` : ''}`);
  });
  return page;
}

function takeNewPageErrors() {
  const fresh = pageErrors.slice(pageErrorsSeen);
  pageErrorsSeen = pageErrors.length;
  return fresh;
}

async function screenshot(name) {
  if (!currentPage || currentPage.isClosed()) return null;
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  const file = join(SCREENSHOT_DIR, `${name}.png`);
  try {
    await currentPage.screenshot({ path: file, fullPage: true, timeout: 10_000 });
    return file;
  } catch (e) {
    log(`screenshot ${file} failed: ${e.message}`);
    return null;
  }
}

const slug = (s) => s.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 60);

/**
 * Runs one named step. If it throws, or the page reported errors while it
 * ran, the page is screenshotted as NN-<step>.png (NN orders the files like
 * the log) and the error goes on up with the step's name in front.
 */
export async function step(name, fn) {
  stepNo += 1;
  const label = `${String(stepNo).padStart(2, '0')}-${slug(name)}`;
  log(`step ${label}: ${name}`);
  const t0 = performance.now();
  try {
    const value = await fn();
    const errs = takeNewPageErrors();
    if (errs.length) throw new Error(`the page reported errors:\n  ${errs.join('\n  ')}`);
    log(`  ok (${Math.round(performance.now() - t0)} ms)`);
    return value;
  } catch (e) {
    const shot = await screenshot(label);
    log(`  FAILED (${Math.round(performance.now() - t0)} ms)${shot ? `, screenshot ${shot}` : ''}`);
    const err = new Error(`step "${name}": ${e.message}`);
    // Keep the original frames (where in the scenario it failed) without
    // repeating the message they start with.
    const head = `${e.name}: ${e.message}`;
    const frames = typeof e.stack === 'string' && e.stack.startsWith(head) ? e.stack.slice(head.length) : `\n${e.stack || ''}`;
    err.stack = `${err.message}${frames}`;
    err.reported = true;
    throw err;
  }
}

/** Throws `message` unless `cond` holds. */
export function expect(cond, message) {
  if (!cond) throw new Error(`expected: ${message}`);
}

/**
 * Waits until the locator's visible text contains `text` (a string or a
 * RegExp): pages that fill in after a fetch need the wait, and the error
 * shows what was there instead.
 */
export async function expectText(locator, text, { timeout = 10_000 } = {}) {
  const deadline = Date.now() + timeout;
  let last = '(no element)';
  for (;;) {
    try {
      last = await locator.innerText({ timeout: Math.max(1, Math.min(1_000, deadline - Date.now())) });
      if (typeof text === 'string' ? last.includes(text) : text.test(last)) return last;
    } catch {
      // Not there yet: keep polling until the deadline.
    }
    if (Date.now() >= deadline) {
      throw new Error(`text ${text} in ${locator} within ${timeout} ms; it showed: ${JSON.stringify(last)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Polls `fn` until it returns `{ ok: true, ... }` and returns that; after
 * `timeout` ms fails with `what` and the last `seen` it reported.
 */
export async function waitFor(what, timeout, fn, { every = 200 } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    last = await fn();
    if (last.ok) return last;
    if (Date.now() >= deadline) throw new Error(`${what} within ${timeout} ms; last seen: ${JSON.stringify(last.seen)}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

/**
 * Logs in through the login page at `url` (the base, prefix included) and
 * waits for the home page it leads to: the overview for an admin, the
 * monitoring charts for a user.
 */
export async function login(page, url, name, password) {
  await page.goto(`${url}/login`);
  await page.fill('#login-name', name);
  await page.fill('#login-password', password);
  await Promise.all([page.waitForURL(/\/(overview|monitor)$/), page.click('#login-submit')]);
}

/**
 * Runs the scenario and exits: 0 when it passed, 1 with the error on
 * stderr otherwise. It also fails the run on page errors no step noticed,
 * on SCRIPT_TIMEOUT_MS (screenshot `timeout.png`, taken before the harness
 * has to kill us and nothing can be seen any more), and when the harness
 * closes our stdin because the test process went away.
 */
export function main(fn) {
  let finished = false;
  const finish = async (code, message) => {
    if (finished) return;
    finished = true;
    if (message) console.error(message);
    if (browser) await browser.close().catch(() => {});
    log(code === 0 ? 'scenario passed' : 'scenario FAILED');
    process.exit(code);
  };

  if (process.env.E2E_STDIN_WATCHDOG) {
    process.stdin.on('end', () => finish(2, 'the test harness went away (stdin closed)'));
    process.stdin.resume();
  }
  // The harness's timeout backstop: close Chromium rather than leave it to
  // notice the dead pipe.
  process.on('SIGTERM', () => finish(1, 'stopped by SIGTERM (the harness timed out)'));
  const timer = setTimeout(async () => {
    const shot = await screenshot('timeout');
    await finish(1, `scenario timed out after ${SCRIPT_TIMEOUT_MS} ms${shot ? `; screenshot ${shot}` : ''}`);
  }, SCRIPT_TIMEOUT_MS);

  (async () => {
    try {
      await fn();
      const errs = takeNewPageErrors();
      if (errs.length) throw new Error(`the page reported errors:\n  ${errs.join('\n  ')}`);
      clearTimeout(timer);
      await finish(0);
    } catch (e) {
      clearTimeout(timer);
      // Errors outside a step get their screenshot here.
      if (!e.reported) await screenshot('failure');
      await finish(1, `scenario failed: ${e.stack || e}`);
    }
  })();
}
