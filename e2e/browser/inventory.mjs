// The inventory in a real browser: an admin logs in, creates a group, a
// room and servers, adds a user to the group; the user then logs in and
// sees only that group's servers and none of the admin pages.
//
// Env: URL (the controller's base URL, prefix included), ADMIN_NAME,
// ADMIN_PASSWORD.
import { join } from 'node:path';
import { launch, main, step, expect, expectText, login as logIn } from './lib.mjs';

// Pictures of the main pages for people reviewing a change (a failing step
// adds its own).
const shot = (page, name) =>
  page.screenshot({ path: join(process.env.SCREENSHOT_DIR || '.', `view-${name}.png`), fullPage: true });

const URL = process.env.URL;
const ADMIN = process.env.ADMIN_NAME;
const ADMIN_PW = process.env.ADMIN_PASSWORD;
const ALICE_PW = 'alice in wonderland';
const SERVER_PW = 'server-password-9f3k';
// A name with markup: it must show as text, never run.
const SHOP = 'Shop <b>&</b>';

/** Logs in and opens the server list, where this scenario works. */
async function login(page, name, password) {
  await logIn(page, URL, name, password);
  await page.goto(`${URL}/servers`);
}

async function logout(page) {
  await Promise.all([page.waitForURL(/\/login$/), page.click('#logout')]);
}

async function createServer(page, { name, group, address }) {
  await page.goto(`${URL}/servers/new`);
  await page.fill('#server-name', name);
  await page.selectOption('#server-group', { label: group });
  await page.selectOption('#server-room', { label: 'Hall 1' });
  await page.fill('#server-address', address);
  await page.fill('#server-user', 'ops');
  await page.selectOption('#server-cred-kind', 'password');
  await page.fill('#server-secret', SERVER_PW);
  await Promise.all([page.waitForURL(`${URL}/servers`), page.click('#server-save')]);
}

main(async () => {
  // The scenario provokes refusals on purpose (a wrong password: 401, a
  // duplicate: 409, a bad address: 422, an admin page: 403); Chromium
  // reports each such response on the console. The steps assert what the
  // page shows instead.
  const { page } = await launch({ ignoreConsole: [/status of 4(01|03|09|22)/] });
  page.on('dialog', (d) => d.accept());

  await step('a wrong password is refused on the page', async () => {
    await page.goto(`${URL}/servers`);
    expect(page.url().endsWith('/login'), `redirected to the login page, at ${page.url()}`);
    await page.fill('#login-name', ADMIN);
    await page.fill('#login-password', 'not the password');
    await page.click('#login-submit');
    await expectText(page.locator('#login-error'), 'Wrong user name or password');
  });

  await step('admin logs in', async () => {
    await login(page, ADMIN, ADMIN_PW);
    await expectText(page.locator('#whoami'), `${ADMIN} (admin)`);
    await expectText(page.locator('#no-servers'), 'No servers yet');
  });

  await step('create groups', async () => {
    await page.goto(`${URL}/groups`);
    for (const [name, app] of [[SHOP, 'shop-api.jar'], ['Billing', '']]) {
      await page.fill('#group-name', name);
      await page.fill('#group-app', app);
      await Promise.all([page.waitForLoadState('load'), page.click('#group-create')]);
      await expectText(page.locator('#groups'), name);
    }
    expect((await page.locator('#groups b').count()) === 0, 'markup in a group name rendered as markup');
  });

  await step('a duplicate group name shows the reason and keeps the form', async () => {
    await page.fill('#group-name', 'billing');
    await page.click('#group-create');
    await expectText(page.locator('#group-form .error'), 'already exists');
    expect((await page.inputValue('#group-name')) === 'billing', 'the form kept what was typed');
  });

  await step('create a room', async () => {
    await page.goto(`${URL}/rooms`);
    await page.fill('#room-name', 'Hall 1');
    await page.selectOption('#room-purpose', 'load_testing');
    await page.click('#room-create');
    // Room names are editable in place, so they sit in inputs, not text.
    await page.waitForSelector('#rooms tr[data-room="Hall 1"]', { timeout: 10_000 });
  });

  await step('an invalid address is refused with the reason', async () => {
    await page.goto(`${URL}/servers/new`);
    await page.fill('#server-name', 'bad');
    await page.fill('#server-address', '999.1.1.1');
    await page.click('#server-save');
    await expectText(page.locator('#server-form .error'), 'not a valid IP address');
  });

  await step('create servers in both groups', async () => {
    await createServer(page, { name: 'web-1', group: SHOP, address: '10.0.0.5' });
    await createServer(page, { name: 'bill-1', group: 'Billing', address: '10.0.0.6' });
    await expectText(page.locator('#servers'), 'web-1');
    await expectText(page.locator('#servers'), 'bill-1');
    const html = await page.content();
    expect(!html.includes(SERVER_PW), 'the server password is on the page');
    await shot(page, 'servers-admin');
  });

  await step('filter the list by group', async () => {
    await Promise.all([page.waitForURL(/group=/), page.selectOption('#filter-group', { label: 'Billing' })]);
    const rows = await page.locator('#servers tbody tr').count();
    expect(rows === 1, `one server of Billing, saw ${rows}`);
    await expectText(page.locator('#servers'), 'bill-1');
    await Promise.all([page.waitForURL(/group=$|group=&/), page.selectOption('#filter-group', '')]);
    expect((await page.locator('#servers tbody tr').count()) === 2, 'both servers without a filter');
  });

  await step('create a user', async () => {
    await page.goto(`${URL}/users`);
    await page.fill('#user-name', 'alice');
    await page.fill('#user-password', ALICE_PW);
    await Promise.all([page.waitForLoadState('load'), page.click('#user-create')]);
    await expectText(page.locator('#users'), 'alice');
  });

  await step('add the user to the shop group', async () => {
    await page.goto(`${URL}/groups`);
    await page.click(`#groups tr:has-text("Shop") a:has-text("Edit")`);
    await page.selectOption('#member-user', { label: 'alice' });
    await Promise.all([page.waitForLoadState('load'), page.click('#member-add-submit')]);
    await expectText(page.locator('#members'), 'alice');
  });

  await step('admin registers an agent package on the install page', async () => {
    await page.goto(`${URL}/tokens`);
    await expectText(page.locator('#package-none'), 'No package is registered');
    // A file that is not named like a package: refused, with the reason.
    await page.setInputFiles('#package-file', { name: 'agent.zip', mimeType: 'application/zip', buffer: Buffer.from('PK') });
    await page.click('#package-upload');
    await expectText(page.locator('#package-form .error'), 'is not an agent package name');
    const gz = Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    await page.setInputFiles('#package-file', { name: 'agent-monitor-9.9.9-linux-arm64.tar.gz', mimeType: 'application/gzip', buffer: gz });
    await Promise.all([page.waitForEvent('load'), page.click('#package-upload')]);
    await expectText(page.locator('#package-list'), 'agent-monitor-9.9.9-linux-arm64.tar.gz');
    await expectText(page.locator('#package-list'), 'arm64');
  });

  await step('admin logs out', () => logout(page));

  await step('the user sees only the shop group\'s servers', async () => {
    await login(page, 'alice', ALICE_PW);
    await expectText(page.locator('#whoami'), 'alice');
    await expectText(page.locator('#servers'), 'web-1');
    const text = await page.locator('#servers').innerText();
    expect(!text.includes('bill-1'), 'alice sees a Billing server');
    const groups = await page.locator('#filter-group option').allInnerTexts();
    expect(!groups.includes('Billing'), `alice can filter by Billing: ${groups}`);
    expect((await page.locator('a[href$="/users"]').count()) === 0, 'alice sees the Users link');
    expect((await page.locator('#new-server').count()) === 0, 'alice sees "New server"');
    await shot(page, 'servers-user');
  });

  await step('the user cannot open admin pages', async () => {
    const r = await page.goto(`${URL}/users`);
    expect(r.status() === 403, `/users answered ${r.status()}`);
    const g = await page.goto(`${URL}/servers/new`);
    expect(g.status() === 403, `/servers/new answered ${g.status()}`);
  });

  await step('after logout the pages need a login again', async () => {
    await page.goto(`${URL}/servers`);
    await logout(page);
    await page.goto(`${URL}/servers`);
    expect(page.url().endsWith('/login'), `at ${page.url()}`);
  });
});
