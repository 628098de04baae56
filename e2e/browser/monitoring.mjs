// Monitoring dashboards in Chromium (issue 10), driven by
// e2e/tests/dashboards.rs, whose synthetic hosts send known samples (and one
// new sample a second while this runs):
//   /overview  cards busiest first with their colour step, the silent host
//              and the one without data marked, the group filter, units;
//   /monitor   a group's average and its servers, one server's charts, a
//              custom range, the refresh picking up new points, a group
//              without servers and a range beyond retention; and the frame
//              time of redrawing every chart (printed as a FRAME-TIME line,
//              reported, not judged);
//   /alerts    a rule changed through the form (a bad one refused), the
//              recipients set, a test mail sent;
//   and a user of group web only: no overview, only web's servers, no
//   alert settings.
// Reads URL, ADMIN_NAME, ADMIN_PASSWORD, USER_NAME, USER_PASSWORD and EXPECT
// (JSON, see dashboards.rs).
import { launch, main, step, expect, expectText, log, watch, waitFor, login } from './lib.mjs';

const URL = process.env.URL;

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

/** What the page's charts hold: per chart, x (s) and each series' values. */
const chartState = (page) =>
  page.evaluate(() => {
    const m = window.__monitor;
    if (!m || !m.charts || !m.charts.cpu) return null;
    const cpu = m.charts.cpu.data;
    return {
      view: m.view,
      host: m.host,
      stepMs: m.stepMs,
      refreshes: m.refreshes,
      xs: cpu && cpu[0] ? Array.from(cpu[0]) : [],
      cpu: cpu && cpu[1] ? Array.from(cpu[1]) : [],
    };
  });

/** The values of a series, nulls dropped, minus the newest `skip` (the
 * newest bucket may hold only some hosts' sample of that second). */
const settled = (values, skip = 3) => {
  const v = values.filter((x) => x !== null && x !== undefined);
  return v.slice(0, Math.max(0, v.length - skip));
};

const near = (values, want, tol = 0.5) => values.length > 0 && values.every((v) => Math.abs(v - want) <= tol);

const scoreClasses = (cls) => cls.split(/\s+/).filter((c) => /^score-\d+$/.test(c));

main(async () => {
  for (const name of ['URL', 'ADMIN_NAME', 'ADMIN_PASSWORD', 'USER_NAME', 'USER_PASSWORD', 'EXPECT']) {
    expect(process.env[name], `${name} is set`);
  }
  const E = JSON.parse(process.env.EXPECT);
  // Refused on purpose below: a user's /overview (403), an invalid rule (422).
  const { browser, page } = await launch({ ignoreConsole: [/status of 40[34]/, /status of 422/] });

  await step('log in as admin: lands on the overview', async () => {
    await login(page, URL, process.env.ADMIN_NAME, process.env.ADMIN_PASSWORD);
    expect(/\/overview$/.test(new globalThis.URL(page.url()).pathname), `an admin lands on /overview, not ${page.url()}`);
    // The brand link is the home page, under the URL prefix too.
    await page.goto(`${URL}/alerts`);
    await Promise.all([page.waitForURL(/\/overview$/), page.click('a.brand')]);
  });

  // ---- /overview -----------------------------------------------------------
  const cards = page.locator('#cards .card');
  const cardList = () =>
    cards.evaluateAll((els) =>
      els.map((e) => ({
        agent: e.dataset.agent,
        score: e.dataset.score,
        cls: e.className,
        badge: e.querySelector('.badge') ? e.querySelector('.badge').innerText : '',
      })),
    );

  await step('overview: cards busiest first, coloured by step', async () => {
    await page.goto(`${URL}/overview`);
    const { seen } = await waitFor('cards in the expected order', 15_000, async () => {
      const seen = await cardList();
      return { ok: same(seen.map((c) => c.agent), E.order), seen: seen.map((c) => c.agent) };
    });
    const list = await cardList();
    log(`cards: ${E.names.join(', ')}`);
    list.forEach((c, i) => {
      const name = E.names[i];
      const steps = scoreClasses(c.cls);
      if (E.steps[i] === null) {
        expect(steps.length === 0, `${name} has no score class, has ${c.cls}`);
        expect(c.score === '', `${name} data-score is empty, not ${JSON.stringify(c.score)}`);
      } else {
        expect(same(steps, [`score-${E.steps[i]}`]), `${name} has class score-${E.steps[i]}, has "${c.cls}"`);
        expect(c.score === E.scores[i], `${name} data-score ${E.scores[i]}, not ${JSON.stringify(c.score)}`);
      }
      const silent = c.cls.split(/\s+/).includes('silent');
      if (E.silent.includes(c.agent)) {
        expect(silent, `${name} is marked silent: "${c.cls}"`);
        expect(/silent/i.test(c.badge), `${name} has a "silent" badge, has ${JSON.stringify(c.badge)}`);
      } else if (E.no_data.includes(c.agent)) {
        expect(/no data/i.test(c.badge), `${name} has a "no data yet" badge, has ${JSON.stringify(c.badge)}`);
      } else {
        expect(!silent, `${name} is not silent: "${c.cls}"`);
      }
    });
    expect(seen.length === E.order.length, 'all cards');
    await expectText(page.locator('#updated'), /updated \d\d:\d\d:\d\d/);
  });

  await step("overview: web-1's card in units", async () => {
    const card = page.locator(`#cards .card[data-agent="${E.web1}"]`);
    const text = async (sel) => (await card.locator(sel).innerText()).trim();
    const want = E.web1_card;
    const got = {
      cpu: await text('.m-cpu'),
      io: await text('.m-io'),
      net: await text('.m-net'),
      mem: await text('.m-mem'),
      disk: await text('.m-disk'),
      tcp: await text('.m-tcp'),
    };
    log(`web-1 card: ${JSON.stringify(got)}`);
    for (const k of ['cpu', 'io', 'net', 'disk', 'tcp']) {
      expect(got[k] === want[k], `.m-${k} is ${JSON.stringify(want[k])}, not ${JSON.stringify(got[k])}`);
    }
    expect(got.mem.startsWith(want.mem), `.m-mem starts with ${JSON.stringify(want.mem)}: ${JSON.stringify(got.mem)}`);
    const href = await card.locator('.name a, a.name').first().getAttribute('href');
    expect(href && href.endsWith(`/monitor?host=${E.web1}`), `the name links to the host's charts, not ${href}`);
  });

  await step('overview: the group filter', async () => {
    await page.selectOption('#group-filter', 'web');
    await waitFor('only web cards', 10_000, async () => {
      const seen = (await cardList()).map((c) => c.agent);
      return { ok: same(seen, E.web), seen };
    });
    await page.selectOption('#group-filter', 'empty');
    await waitFor('no cards for an empty group', 10_000, async () => {
      const n = await cards.count();
      return { ok: n === 0 && (await page.locator('#overview-empty').isVisible()), seen: n };
    });
    const why = await page.locator('#overview-empty').innerText();
    expect(why.trim().length > 10, `#overview-empty says why: ${JSON.stringify(why)}`);
    await page.selectOption('#group-filter', '');
    await waitFor('all cards again', 10_000, async () => {
      const seen = (await cardList()).map((c) => c.agent);
      return { ok: same(seen, E.order), seen };
    });
  });

  await step('units format as the contract says', async () => {
    const got = await page.evaluate(() => ({
      pct: units.pct(12.34),
      pct0: units.pct(0),
      pct100: units.pct(100),
      pctNull: units.pct(null),
      pctUndef: units.pct(undefined),
      bytes0: units.bytes(0),
      bytes512: units.bytes(512),
      bytes1536: units.bytes(1536),
      bytesMiB: units.bytes(1048576),
      bytes3GiB: units.bytes(3 * 2 ** 30),
      bytesTiB: units.bytes(2 ** 40),
      rate1536: units.rate(1536),
      rateMiB: units.rate(1048576),
      count: units.count(12345),
      perSec: units.perSec(3.2),
    }));
    const want = {
      pct: '12.3 %',
      pct0: '0.0 %',
      pct100: '100.0 %',
      pctNull: '–',
      pctUndef: '–',
      bytes0: '0 B',
      bytes512: '512 B',
      bytes1536: '1.5 KiB',
      bytesMiB: '1.0 MiB',
      bytes3GiB: '3.0 GiB',
      bytesTiB: '1.0 TiB',
      rate1536: '1.5 KiB/s',
      rateMiB: '1.0 MiB/s',
      count: '12,345',
      perSec: '3.2/s',
    };
    const wrong = Object.keys(want).filter((k) => got[k] !== want[k]);
    expect(wrong.length === 0, `units: ${wrong.map((k) => `${k} ${JSON.stringify(got[k])} (want ${JSON.stringify(want[k])})`).join(', ')}`);
  });

  // ---- /monitor ------------------------------------------------------------
  await step("monitor: group web's average and its servers in order", async () => {
    await page.goto(`${URL}/monitor?group=web&room=r1&range=1h&refresh_ms=2000`);
    const st = await waitFor('the average cpu chart near the mean of web', 15_000, async () => {
      const s = await chartState(page);
      return { ok: s && s.view === 'mean' && near(settled(s.cpu), E.mean_cpu_web), seen: s && { view: s.view, n: s.cpu.length, last: s.cpu.slice(-5) } };
    });
    log(`average: ${st.seen.n} points`);
    const servers = await page.locator('#servers li.server').evaluateAll((els) => els.map((e) => ({ agent: e.dataset.agent, cls: e.className })));
    expect(same(servers.map((s) => s.agent), E.web), `servers ${JSON.stringify(servers.map((s) => s.agent))} are ${JSON.stringify(E.web)}`);
    for (const s of servers) {
      const i = E.order.indexOf(s.agent);
      expect(same(scoreClasses(s.cls), [`score-${E.steps[i]}`]), `${E.names[i]} in the list has score-${E.steps[i]}: "${s.cls}"`);
      expect(!s.cls.split(/\s+/).includes('active'), `${E.names[i]} is not selected`);
    }
    expect(await page.locator('#servers li#avg.active').count() === 1, 'li#avg is the active entry');
    const first = await page.locator('#servers li').first().getAttribute('id');
    expect(first === 'avg', `the average comes first, not ${first}`);
    await expectText(page.locator('#view-title'), 'Average of 2 servers');
    expect((await page.locator('select#group').inputValue()) === 'web', 'group select shows web');
    expect((await page.locator('select#room').inputValue()) === 'r1', 'room select shows r1');
    expect((await page.locator('select#range').inputValue()) === '1h', 'range select shows 1h');
    expect(await page.locator('#notice').isHidden() || (await page.locator('#notice').innerText()).trim() === '', 'no notice');
  });

  await step('monitor: the refresh appends new points', async () => {
    const s0 = await chartState(page);
    const x0 = s0.xs[s0.xs.length - 1];
    const seen = await waitFor('a completed refresh with a newer point', 15_000, async () => {
      const s = await chartState(page);
      const x = s.xs[s.xs.length - 1];
      return { ok: s.refreshes > s0.refreshes && x > x0, seen: { refreshes: s.refreshes, from: s0.refreshes, x, x0 } };
    });
    log(`refresh: last x ${x0} -> ${seen.seen.x}, refreshes ${s0.refreshes} -> ${seen.seen.refreshes}`);
    const s = await chartState(page);
    expect(near(settled(s.cpu), E.mean_cpu_web), `after the refresh the average is still ${E.mean_cpu_web}: ${s.cpu.slice(-6)}`);
    const xs = s.xs;
    expect(xs.every((x, i) => i === 0 || x > xs[i - 1]), 'x strictly increasing after the refresh (no duplicated bucket)');
  });

  await step("monitor: click web-1 shows its own charts", async () => {
    await page.click(`#servers li.server[data-agent="${E.web1}"]`);
    await waitFor("web-1's cpu chart", 15_000, async () => {
      const s = await chartState(page);
      return { ok: s && s.view === 'host' && s.host === E.web1 && near(settled(s.cpu), E.web1_cpu), seen: s && { view: s.view, host: s.host, last: s.cpu.slice(-5) } };
    });
    expect(page.url().includes(`host=${E.web1}`), `the URL names the host: ${page.url()}`);
    const cls = await page.locator(`#servers li.server[data-agent="${E.web1}"]`).getAttribute('class');
    expect(cls.split(/\s+/).includes('active'), `web-1 is the active entry: "${cls}"`);
    await expectText(page.locator('#view-title'), 'web-1');
    const charts = await page.locator('div.chart').evaluateAll((els) => els.map((e) => e.dataset.chart));
    for (const c of ['cpu', 'mem', 'diskio', 'diskutil', 'net', 'netutil', 'tcp', 'ports']) {
      expect(charts.includes(c), `a ${c} chart (have ${charts})`);
    }
    expect(await page.locator('div.chart[data-chart="ports"]').isVisible(), 'the ports chart shows (web-1 has an application port)');
  });

  await step('monitor: a custom range shows only its points', async () => {
    const from = E.custom_from;
    const to = E.custom_to;
    await page.goto(`${URL}/monitor?host=${E.web1}&from=${from}&to=${to}`);
    const s = await waitFor('the custom range loaded', 15_000, async () => {
      const s = await chartState(page);
      return { ok: s && s.view === 'host' && s.xs.length > 0, seen: s && { n: s.xs.length } };
    });
    const st = await chartState(page);
    const xs = st.xs;
    expect(xs[0] >= from / 1000 && xs[xs.length - 1] < to / 1000, `points within [${from / 1000}, ${to / 1000}): ${xs[0]} .. ${xs[xs.length - 1]}`);
    expect(near(settled(st.cpu, 0), E.web1_cpu), 'web-1 values in the custom range');
    expect((await page.locator('select#range').inputValue()) === 'custom', 'range select shows custom');
    log(`custom range: ${s.seen.n} points, step ${st.stepMs} ms`);
  });

  await step('monitor: frame time while every chart is redrawn', async () => {
    // The last 1 999 s of history: 1 s points when the page asks for 2 000
    // (the store's bucket is span / (max_points - 1), rounded up to whole seconds).
    const to = E.history_end + 1000;
    const from = to - 1999 * 1000;
    await page.goto(`${URL}/monitor?host=${E.web1}&from=${from}&to=${to}`);
    await waitFor('1 999 s loaded', 15_000, async () => {
      const s = await chartState(page);
      return { ok: s && s.view === 'host' && s.xs.length > 100, seen: s && s.xs.length };
    });
    const r = await page.evaluate(async () => {
      const charts = Object.values(window.__monitor.charts).filter((c) => c && c.data && c.setData);
      const xs = charts[0].data[0];
      const lo = xs[0];
      const hi = xs[xs.length - 1];
      const points = Math.max(...charts.map((c) => c.data[0].length));
      const series = charts.reduce((n, c) => n + c.data.length - 1, 0);
      const frames = [];
      const work = [];
      const N = 60;
      let last = null;
      await new Promise((resolve) => {
        let i = 0;
        const tick = (ts) => {
          if (last !== null) frames.push(ts - last);
          last = ts;
          if (i >= N) {
            resolve();
            return;
          }
          const t0 = performance.now();
          // Zoom in and out across the range, data re-set as a refresh does.
          const f = (i % 12) / 12;
          const span = (hi - lo) * (1 - 0.9 * f);
          for (const c of charts) {
            c.setData(c.data, false);
            c.setScale('x', { min: hi - span, max: hi });
          }
          // Queued after uPlot's own commit microtasks: includes the draw.
          Promise.resolve().then(() => work.push(performance.now() - t0));
          i += 1;
          requestAnimationFrame(tick);
        };
        requestAnimationFrame(tick);
      });
      for (const c of charts) c.setScale('x', { min: lo, max: hi });
      const pct = (a, p) => {
        const s = [...a].sort((x, y) => x - y);
        return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
      };
      return {
        n: frames.length,
        p50: pct(frames, 50),
        p95: pct(frames, 95),
        max: Math.max(...frames),
        w50: pct(work, 50),
        w95: pct(work, 95),
        points,
        charts: charts.length,
        series,
      };
    });
    const f = (v) => v.toFixed(1);
    console.log(
      `FRAME-TIME p50=${f(r.p50)} p95=${f(r.p95)} max=${f(r.max)} ms over ${r.n} frames, ${r.points} points per series ` +
        `(${r.charts} charts, ${r.series} series; redraw work p50=${f(r.w50)} p95=${f(r.w95)} ms)`,
    );
    expect(r.n >= 59, `60 frames ran (${r.n})`);
  });

  await step('monitor: a group without servers says so', async () => {
    await page.goto(`${URL}/monitor?group=empty`);
    await expectText(page.locator('#notice'), /no monitored server/i);
    expect(await page.locator('#servers li.server').count() === 0, 'no servers listed');
  });

  await step('monitor: a host without samples says so', async () => {
    await page.goto(`${URL}/monitor?host=${E.no_data[0]}`);
    await expectText(page.locator('#notice'), /no data/i);
  });

  await step('monitor: a range beyond retention says so and shows the data', async () => {
    await page.goto(`${URL}/monitor?group=web&from=${E.far_from}&to=${Date.now()}`);
    const notice = await expectText(page.locator('#notice'), /not kept|retention|365/i);
    log(`notice: ${notice}`);
    await waitFor('data in the clamped range', 15_000, async () => {
      const s = await chartState(page);
      return { ok: s && settled(s.cpu, 0).length > 0, seen: s && s.cpu.length };
    });
  });

  // ---- /alerts (admin) -----------------------------------------------------
  const msg = page.locator('#alerts-msg');
  const clearMsg = () => page.evaluate(() => { document.querySelector('#alerts-msg').textContent = ''; });
  // Waits for a final message: one matching `re`, or any error.
  const waitMsg = async (what, re) =>
    waitFor(what, 10_000, async () => {
      const text = (await msg.innerText().catch(() => '')).trim();
      const cls = (await msg.getAttribute('class')) || '';
      return { ok: re.test(text) || (text !== '' && /\berror\b/.test(cls)), seen: { text, cls } };
    });

  await step('alerts: an invalid rule is refused and shown', async () => {
    await page.goto(`${URL}/alerts`);
    await page.locator('form#rules').waitFor();
    await page.locator('#firing tbody').waitFor({ state: 'attached' });
    await page.locator('#history tbody').waitFor({ state: 'attached' });
    await expectText(page.locator('#smtp-info'), E.smtp_host);
    await waitFor('the form filled from the settings', 10_000, async () => {
      const v = await page.locator(`form#rules [name="mem_for_secs"]`).inputValue();
      return { ok: v === '45', seen: v };
    });
    await clearMsg();
    await page.fill('form#rules [name="cpu_busy_above_pct"]', '150');
    await page.click('#rules-save');
    const { seen } = await waitMsg('an error message', /150|cpu_busy_above_pct/);
    expect(/\berror\b/.test(seen.cls), `#alerts-msg has class error: ${JSON.stringify(seen)}`);
    log(`refused: ${seen.text}`);
  });

  await step('alerts: change a rule, it survives a reload', async () => {
    await page.reload();
    await page.locator('form#rules').waitFor();
    await waitFor('the form filled from the settings', 10_000, async () => {
      const v = await page.locator(`form#rules [name="mem_for_secs"]`).inputValue();
      return { ok: v === '45', seen: v };
    });
    const cpu = await page.locator('form#rules [name="cpu_busy_above_pct"]').inputValue();
    expect(cpu === '', `the refused 150 was not stored (cpu rule off shows empty), shows ${JSON.stringify(cpu)}`);
    await clearMsg();
    await page.fill(`form#rules [name="${E.rule_field}"]`, E.rule_value);
    await page.click('#rules-save');
    const { seen } = await waitMsg('a saved message', /saved/i);
    expect(!/\berror\b/.test(seen.cls), `saved without error: ${JSON.stringify(seen)}`);
    await page.reload();
    await waitFor(`${E.rule_field} = ${E.rule_value} after a reload`, 10_000, async () => {
      const v = await page.locator(`form#rules [name="${E.rule_field}"]`).inputValue();
      return { ok: v === E.rule_value, seen: v };
    });
  });

  await step('alerts: set the recipients and send a test mail', async () => {
    await clearMsg();
    await page.fill('textarea#recipients', E.recipients.join('\n'));
    await page.click('#recipients-save');
    let { seen } = await waitMsg('recipients saved', /saved/i);
    expect(!/\berror\b/.test(seen.cls), `recipients saved: ${JSON.stringify(seen)}`);
    await clearMsg();
    await page.click('#test-mail');
    ({ seen } = await waitMsg('the test mail result', /sent/i));
    expect(!/\berror\b/.test(seen.cls), `test mail sent: ${JSON.stringify(seen)}`);
    expect(E.recipients.every((r) => seen.text.includes(r)), `the message names the recipients: ${seen.text}`);
    log(`test mail: ${seen.text}`);
  });

  // ---- a user of group web -------------------------------------------------
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const user = watch(await context.newPage());

  await step('log in as a user: lands on the monitor', async () => {
    await login(user, URL, process.env.USER_NAME, process.env.USER_PASSWORD);
    expect(/\/monitor$/.test(new globalThis.URL(user.url()).pathname), `a user lands on /monitor, not ${user.url()}`);
    expect(await user.locator('a[href$="/overview"]').count() === 0, 'no Overview link for a user');
  });

  await step('user: the overview is refused', async () => {
    const resp = await user.goto(`${URL}/overview`);
    expect(resp.status() === 403, `/overview answers 403 to a user, not ${resp.status()}`);
  });

  await step('user: the monitor lists only web servers', async () => {
    await user.goto(`${URL}/monitor`);
    await waitFor("web's servers only", 15_000, async () => {
      const seen = await user.locator('#servers li.server').evaluateAll((els) => els.map((e) => e.dataset.agent));
      return { ok: same(seen, E.web), seen };
    });
    const groups = await user.locator('select#group option').evaluateAll((els) => els.map((e) => e.value));
    expect(same(groups, ['', 'web']), `the group select offers all and web only: ${JSON.stringify(groups)}`);
  });

  await step('user: alerts without the settings', async () => {
    await user.goto(`${URL}/alerts`);
    await user.locator('#firing').waitFor();
    expect(await user.locator('form#rules').count() === 0, 'no rules form for a user');
    expect(await user.locator('#test-mail').count() === 0, 'no test mail button for a user');
    expect(await user.locator('textarea#recipients').count() === 0, 'no recipients for a user');
  });
});
