// Proves the browser tooling end to end: Chromium starts, loads a page from
// the test's HTTP server (env URL) and the page's script runs.
import { launch, main, step, expect, expectText } from './lib.mjs';

main(async () => {
  const { page } = await launch();
  await step('open the page', () => page.goto(process.env.URL));
  await step('heading is shown', () => expectText(page.getByRole('heading', { level: 1 }), 'MyPlatform smoke'));
  // The page fills #status from a timer, so this also proves expectText waits.
  await step('script filled in the status', () => expectText(page.locator('#status'), 'ready'));
  await step('title', async () => expect((await page.title()) === 'MyPlatform smoke', 'page title "MyPlatform smoke"'));
});
