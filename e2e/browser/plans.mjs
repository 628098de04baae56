// The plan editor in Chromium: create a plan, get told what is wrong with
// it field by field, build the tree (thread group, controller, request,
// header set, CSV data file), schedule it with a previewed load curve,
// save, reload, copy a thread group, import a .jmx, upload a JMeter zip
// and check its run files. Reads URL, ADMIN_NAME, ADMIN_PASSWORD,
// CSV_PATH, JMX_PATH, ZIP_PATH; prints PLAN_ID=<id>.
import { launch, main, step, expect, expectText, log, login } from './lib.mjs';

const URL = process.env.URL;

main(async () => {
  // Refused saves are part of the scenario: their 422s are expected.
  const { page } = await launch({ ignoreConsole: [/status of 422/] });
  page.on('dialog', (d) => d.accept());

  await step('log in', async () => {
    await login(page, URL, process.env.ADMIN_NAME, process.env.ADMIN_PASSWORD);
  });

  await step('create a plan from the list', async () => {
    await page.click('a[href$="/plans"]');
    await page.fill('#plan-new-name', 'shop');
    await page.selectOption('#plan-new-room', { index: 1 });
    await Promise.all([page.waitForURL(/\/plans\/\d+$/), page.click('#plan-new-submit')]);
    await page.waitForSelector('body[data-ready="1"]');
    await expectText(page.locator('#plan-revision'), 'revision 1');
  });
  const planId = page.url().match(/\/plans\/(\d+)$/)[1];
  console.log(`PLAN_ID=${planId}`);

  await step('a TPS of 0 is refused with its field marked', async () => {
    await page.fill('#plan-tps', '0');
    await expectText(page.locator('#plan-dirty'), 'unsaved');
    await page.click('#plan-save');
    await expectText(page.locator('#plan-problems'), 'run.load.tps');
    const invalid = await page.locator('#plan-tps').getAttribute('aria-invalid');
    expect(invalid === 'true', 'the TPS input is not marked');
    await page.fill('#plan-tps', '25');
  });

  await step('build a thread group, a controller and a request', async () => {
    await page.click('#add-thread-group');
    await page.fill('#tg-name', 'buyers');
    await page.fill('#tg-ramp-up', '5');
    await page.click('#add-controller');
    await page.fill('#ctl-name', 'checkout');
    await page.click('#add-sampler');
    await page.fill('#smp-name', 'login');
    await page.fill('#smp-host', '${host}');
    await page.fill('#smp-port', '8080');
    await page.fill('#smp-path', '/login');
    await page.selectOption('#smp-body-type', 'json');
    await page.fill('#smp-body', '{"user":"${user}"}');
    await page.selectOption('#smp-assertion-kind', 'contains');
    await page.fill('#smp-assertion-text', 'token');
    await expectText(page.locator('#plan-tree'), 'login');
  });

  await step('a bad port is named on its element', async () => {
    await page.fill('#smp-port', '99999');
    await page.click('#plan-save');
    await expectText(page.locator('#plan-problems'), 'samplers[0].port');
    expect((await page.locator('#smp-port').getAttribute('aria-invalid')) === 'true', 'port not marked');
    expect((await page.locator('#plan-tree button.node.bad').count()) > 0, 'tree does not show the bad element');
    await page.fill('#smp-port', '8080');
  });

  await step('a header set, used by the request', async () => {
    await page.click('#plan-tree button[data-node="hsets"]');
    await page.click('#add-header-set');
    await page.fill('#hset-name', 'json');
    await page.click('#plan-tree button[data-node="smp/0/0/0"]');
    await page.selectOption('#smp-header-set', 'json');
  });

  await step('an automatic schedule shows its load curve', async () => {
    await page.click('#plan-tree button[data-node="plan"]');
    await page.selectOption('#plan-schedule', 'automatic');
    await page.click('#plan-step-add');
    await page.locator('#plan-curve canvas').first().waitFor();
    await page.click('#plan-save');
    await expectText(page.locator('#plan-revision'), 'revision 2');
    expect(await page.locator('#plan-problems').isHidden(), 'problems shown after a good save');
  });

  await step('a CSV file, then a data set that uses it', async () => {
    await page.click('#plan-tree button[data-node="files"]');
    await page.setInputFiles('#file-input', process.env.CSV_PATH);
    await page.click('#file-upload');
    await expectText(page.locator('#file-list'), 'users.csv');
    await page.click('#plan-tree button[data-node="tg/0"]');
    await page.click('#add-csv');
    await page.fill('.csv-data-set input[aria-label="Variable names"]', 'user,password');
    await page.click('#plan-save');
    await expectText(page.locator('#plan-revision'), 'revision 3');
  });

  await step('copy the thread group, save, and it is all there after a reload', async () => {
    await page.click('#plan-tree button[data-node="tg/0"]');
    await page.click('#node-copy');
    await expectText(page.locator('#plan-tree'), 'buyers (copy)');
    await page.click('#plan-save');
    await expectText(page.locator('#plan-revision'), 'revision 4');
    await page.reload();
    await page.waitForSelector('body[data-ready="1"]');
    const tree = await page.locator('#plan-tree').innerText();
    for (const want of ['buyers', 'buyers (copy)', 'checkout', 'login', 'json', '1 data file']) {
      expect(tree.includes(want), `tree lacks ${want}: ${tree}`);
    }
  });

  await step('import a .jmx from the list and see what it left out', async () => {
    await page.goto(`${URL}/plans`);
    await page.setInputFiles('#plan-import-file', process.env.JMX_PATH);
    await page.click('#plan-import-submit');
    await page.locator('#plan-import-open').waitFor();
    const notes = await page.locator('#plan-import-list').innerText();
    log(`import notes: ${notes}`);
    expect(notes.includes('left out'), `no left-out element listed: ${notes}`);
    await Promise.all([page.waitForURL(/\/plans\/\d+$/), page.click('#plan-import-open')]);
    await page.waitForSelector('body[data-ready="1"]');
    expect((await page.locator('#plan-tree button.node').count()) > 3, 'imported tree is empty');
  });

  await step('upload a JMeter zip, give it a room, check its run files', async () => {
    await page.goto(`${URL}/plans`);
    await page.setInputFiles('#plan-upload-file', process.env.ZIP_PATH);
    await Promise.all([page.waitForURL(/\/plans\/\d+$/), page.click('#plan-upload-submit')]);
    await page.waitForSelector('body[data-ready="1"]');
    await expectText(page.locator('#plan-bundle'), 'shop.jmx');
    await page.click('#run-files-check');
    await expectText(page.locator('#run-files'), 'choose the room');
    await page.selectOption('#plan-room', { index: 1 });
    await page.click('#plan-save');
    await expectText(page.locator('#plan-revision'), 'revision 2');
    await page.click('#run-files-check');
    await expectText(page.locator('#run-files-properties'), '-Jmyplatform.throughput=600');
  });
});
