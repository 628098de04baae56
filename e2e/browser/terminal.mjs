// The browser shell in a real browser: open a server's terminal page, type
// into xterm.js, read the screen back, resize the window, exit.
//
// Env: URL, ADMIN_NAME, ADMIN_PASSWORD, SERVER_ID.
import { join } from 'node:path';
import { launch, main, step, expect, login } from './lib.mjs';

const URL = process.env.URL;

/** The terminal's visible text, line by line (xterm's buffer API). */
const screen = (page) =>
  page.evaluate(() => {
    const b = window.myplatformTerminal.buffer.active;
    const lines = [];
    for (let i = 0; i < b.length; i++) lines.push(b.getLine(i).translateToString(true));
    return lines.join('\n');
  });

async function waitForScreen(page, needle, timeout = 15_000) {
  const deadline = Date.now() + timeout;
  let last = '';
  while (Date.now() < deadline) {
    last = await screen(page);
    if (last.includes(needle)) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${JSON.stringify(needle)} not on the terminal within ${timeout} ms; it shows:\n${last}`);
}

main(async () => {
  const { page } = await launch();
  await step('log in', async () => {
    await login(page, URL, process.env.ADMIN_NAME, process.env.ADMIN_PASSWORD);
  });

  await step('open the terminal', async () => {
    await page.goto(`${URL}/servers/${process.env.SERVER_ID}/terminal`);
    await page.waitForSelector('#term-status[data-state="connected"]', { timeout: 20_000 });
  });

  await step('type a command and read its output', async () => {
    await page.click('#terminal');
    await page.keyboard.type('echo "answer-$((6*7))"');
    await page.keyboard.press('Enter');
    await waitForScreen(page, 'answer-42');
  });

  await step('multi-byte characters come out whole', async () => {
    // Typed as escapes (a keyboard has no 世 key): the shell prints the
    // UTF-8 bytes, the terminal must show the characters.
    await page.keyboard.type("printf '\\n\\xe4\\xb8\\x96\\xe7\\x95\\x8c\\xf0\\x9f\\x99\\x82 ok\\n'");
    await page.keyboard.press('Enter');
    await waitForScreen(page, '世界🙂 ok');
  });

  await step('the terminal follows the window size', async () => {
    await page.setViewportSize({ width: 900, height: 700 });
    await page.waitForTimeout(300);
    const cols = await page.evaluate(() => window.myplatformTerminal.cols);
    await page.keyboard.type('stty size');
    await page.keyboard.press('Enter');
    const text = await waitForScreen(page, ` ${cols}\n`);
    expect(text.includes(` ${cols}`), `stty shows ${cols} columns`);
    await page.screenshot({ path: join(process.env.SCREENSHOT_DIR || '.', 'view-terminal.png') });
  });

  await step('exit closes the session and the page says so', async () => {
    await page.keyboard.type('exit');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#term-status[data-state="closed"]', { timeout: 15_000 });
    const text = await page.locator('#term-status').innerText();
    expect(text.includes('session closed'), `status: ${text}`);
  });

  await step('the session is listed and its recording plays', async () => {
    // The recording is stored just after the session ends: reload until
    // the list offers it.
    const until = Date.now() + 20_000;
    for (;;) {
      await page.goto(`${URL}/servers/${process.env.SERVER_ID}/sessions`);
      if ((await page.locator('#sessions a:has-text("Play")').count()) > 0) break;
      expect(Date.now() < until, 'the session list offers the recording within 20 s');
      await new Promise((r) => setTimeout(r, 300));
    }
    await page.click('#sessions a:has-text("Play")');
    await page.waitForSelector('#player .ap-wrapper, #player .ap-player', { timeout: 15_000 });
    await page.evaluate(() => window.myplatformPlayer.play());
    const deadline = Date.now() + 30_000;
    let text = '';
    while (Date.now() < deadline) {
      text = await page.locator('#player').innerText();
      if (text.includes('answer-42')) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(text.includes('answer-42'), `the replay shows the command's output; it shows: ${text}`);
    await page.screenshot({ path: join(process.env.SCREENSHOT_DIR || '.', 'view-player.png') });
  });
});
