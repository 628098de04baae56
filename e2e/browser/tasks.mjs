// Load-test tasks in Chromium: a plan that cannot run says why (from the
// plan list and from the editor), the task list shows a running task, and
// its page follows it live: the TPS chart fills from the live stream, the
// TPS of all generators changes through the dialog and shows in the
// actions log, one generator's own data can be viewed, its JMeter log and
// the run files download, another generator is hot-attached, and Stop all
// ends the task with its totals.
// Reads URL, ADMIN_NAME, ADMIN_PASSWORD, TASK_ID (running on 2 generators,
// TPS mode, with a third idle generator in its room), PLAN_ID (its plan),
// BAD_PLAN_ID (a plan whose run is refused for want of idle generators)
// and NEW_TPS.
import { launch, main, step, expect, expectText, log, waitFor, login } from './lib.mjs';

const URL = process.env.URL;
const TASK_ID = process.env.TASK_ID;
const PLAN_ID = process.env.PLAN_ID;
const BAD_PLAN_ID = process.env.BAD_PLAN_ID;
const NEW_TPS = process.env.NEW_TPS;

const generatorRows = (page) => page.locator('[data-generators] tbody tr[data-agent]');

main(async () => {
  for (const name of ['URL', 'ADMIN_NAME', 'ADMIN_PASSWORD', 'TASK_ID', 'PLAN_ID', 'BAD_PLAN_ID', 'NEW_TPS']) {
    expect(process.env[name], `${name} is set`);
  }
  // The refused runs answer 409: expected, and Chromium logs them.
  const { page } = await launch({ ignoreConsole: [/status of 409/] });
  page.on('dialog', (d) => d.accept());

  await step('log in', async () => {
    await login(page, URL, process.env.ADMIN_NAME, process.env.ADMIN_PASSWORD);
  });

  await step('Run in the plan list says why a plan cannot run', async () => {
    await page.click('a[href$="/plans"]');
    await page.click(`button[data-plan-run="${BAD_PLAN_ID}"]`);
    const shown = await expectText(page.locator('[data-run-error]'), 'idle load generator');
    log(`refused: ${shown}`);
    expect(/\/plans$/.test(page.url()), `still on the plan list, not ${page.url()}`);
  });

  await step('Run in the editor says so too', async () => {
    await page.goto(`${URL}/plans/${BAD_PLAN_ID}`);
    await page.waitForSelector('body[data-ready="1"]');
    await page.click('#plan-run');
    await expectText(page.locator('#plan-run-error'), 'idle load generator');
    expect(/\/plans\/\d+$/.test(page.url()), `still in the editor, not ${page.url()}`);
  });

  await step('the task list shows the running task', async () => {
    await page.click('a[href$="/tasks"]');
    await page.waitForSelector('body[data-ready="1"]');
    const row = page.locator(`[data-tasks] tr[data-task-id="${TASK_ID}"]`);
    await expectText(row, /starting|running/);
    await Promise.all([page.waitForURL(new RegExp(`/tasks/${TASK_ID}$`)), row.locator(`a[data-task-link="${TASK_ID}"]`).click()]);
  });

  await step('the task page is live with both generators', async () => {
    await page.waitForSelector('body[data-ready="1"]');
    await expectText(page.locator('[data-task-status]'), /running|starting/);
    const plan = await page.locator('[data-fact="plan"] a').getAttribute('href');
    expect(plan.endsWith(`/plans/${PLAN_ID}`), `plan link ${plan} is plan ${PLAN_ID}`);
    await waitFor('2 generator rows', 30_000, async () => {
      const n = await generatorRows(page).count();
      return { ok: n === 2, seen: n };
    });
    await page.locator('#chart-tps canvas').first().waitFor();
  });

  await step('the TPS chart fills from the live stream', async () => {
    const seen = await waitFor('a non-zero current TPS', 60_000, async () => {
      const text = await page.locator('[data-current-tps]').innerText();
      return { ok: Number(text) > 0, seen: text };
    });
    log(`current TPS ${seen.seen}`);
    await waitFor('both generators running', 60_000, async () => {
      const states = await page.locator('[data-generators] [data-gen-status]').allInnerTexts();
      return { ok: states.length === 2 && states.every((s) => /running/i.test(s)), seen: states };
    });
  });

  await step('one generator\'s own data', async () => {
    const first = generatorRows(page).first();
    const agent = await first.getAttribute('data-agent');
    await first.locator('[data-gen-view]').click();
    expect((await page.locator('[data-generator-select]').inputValue()) === agent, 'the selector shows the generator');
    await waitFor('the generator\'s own TPS', 30_000, async () => {
      const text = await page.locator('[data-current-tps]').innerText();
      return { ok: Number(text) > 0, seen: text };
    });
    await page.selectOption('[data-generator-select]', '');
  });

  await step('change the TPS of all generators', async () => {
    await page.click('[data-change-tps]');
    await page.locator('[data-rate-dialog]').waitFor();
    // Refused in the page before it is sent.
    await page.fill('[data-rate-input]', '0');
    await page.click('[data-rate-submit]');
    await expectText(page.locator('[data-rate-error]'), 'more than 0');
    await page.fill('[data-rate-input]', NEW_TPS);
    await page.click('[data-rate-submit]');
    await page.locator('[data-rate-dialog]').waitFor({ state: 'hidden' });
    const want = String(Number(NEW_TPS));
    await expectText(page.locator('[data-actions]'), `changed TPS to ${want}`);
    await expectText(page.locator('[data-fact="target"]'), `${want} TPS`);
  });

  await step('download a generator\'s JMeter log and the run files', async () => {
    const [logFile] = await Promise.all([
      page.waitForEvent('download', { timeout: 30_000 }),
      generatorRows(page).first().locator('[data-gen-log]').click(),
    ]);
    log(`log: ${logFile.suggestedFilename()}`);
    expect(/log/.test(logFile.suggestedFilename()), `a log file, not ${logFile.suggestedFilename()}`);
    const [zip] = await Promise.all([page.waitForEvent('download'), page.click('[data-download-artifact]')]);
    expect(zip.suggestedFilename().endsWith('.zip'), `a zip, not ${zip.suggestedFilename()}`);
    expect(await page.locator('[data-task-error]').isHidden(), 'no error shown');
  });

  await step('start another generator', async () => {
    await page.click('[data-attach]');
    await page.locator('[data-attach-dialog]').waitFor();
    await page.click('[data-attach-submit]');
    await page.locator('[data-attach-dialog]').waitFor({ state: 'hidden' });
    await waitFor('a third generator row', 30_000, async () => {
      const n = await generatorRows(page).count();
      return { ok: n === 3, seen: n };
    });
    await expectText(page.locator('[data-actions]'), 'attached');
    const options = await page.locator('[data-generator-select] option').count();
    expect(options === 4, `the chart selector lists all and 3 generators, not ${options} options`);
  });

  await step('Stop all ends the task', async () => {
    await page.click('[data-stop-all]');
    await expectText(page.locator('[data-task-status]'), 'finished', { timeout: 60_000 });
    await expectText(page.locator('[data-actions]'), 'stopped the task');
    await page.locator('[data-totals]').waitFor({ timeout: 15_000 });
    const samples = Number(await page.locator('[data-total="samples"]').innerText());
    log(`total samples ${samples}`);
    expect(samples > 0, `samples in the totals, not ${samples}`);
    expect(await page.locator('[data-stop-all]').isHidden(), 'Stop all is gone');
  });

  await step('the task list shows it finished with its figures', async () => {
    await page.goto(`${URL}/tasks`);
    await page.waitForSelector('body[data-ready="1"]');
    const row = page.locator(`[data-tasks] tr[data-task-id="${TASK_ID}"]`);
    await expectText(row, 'finished');
    const samples = Number(await row.locator('[data-total-samples]').innerText());
    expect(samples > 0, `samples in the list, not ${samples}`);
    expect(await row.locator('[data-task-delete]').count() === 1, 'a finished task can be deleted');
  });
});
