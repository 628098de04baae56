// Fails on purpose, to prove a failing scenario is seen by the harness with
// a screenshot. FAIL_MODE=expect: text that never shows up;
// FAIL_MODE=pageerror: the page's own script throws.
import { launch, main, step, expectText } from './lib.mjs';

main(async () => {
  const { page } = await launch();
  if (process.env.FAIL_MODE === 'pageerror') {
    await step('open a page whose script throws', () => page.goto(`${process.env.URL}/boom`));
  } else {
    await step('open the page', () => page.goto(process.env.URL));
    await step('look for missing text', () =>
      expectText(page.locator('#status'), 'this text is not on the page', { timeout: 1_000 }),
    );
  }
});
