// One load-test task, live while it runs. The live stream
// (/api/tasks/{id}/live, server-sent events) sends the task view on every
// change ("task") and the per-second points of new or completed seconds
// ("series", replaced by their `sec`); the charts append them with
// setData, never rebuilt. Buttons steer the run: stop all, change the TPS
// of all or of one generator, hot-attach another generator, stop one,
// download its JMeter log or the task's run files. Every call answers the
// task view, drawn at once; errors are the server's own words.
'use strict';
(() => {
  const root = document.getElementById('task');
  if (!root) return;
  const PREFIX = document.querySelector('meta[name="prefix"]').content;
  const ID = root.dataset.task;
  const MAX_TPS = Number(root.dataset.maxTps) > 0 ? Number(root.dataset.maxTps) : Infinity;
  const ACTIVE = new Set(['scheduled', 'starting', 'running', 'stopping']);
  const STEERABLE = new Set(['starting', 'running']);
  const GEN_ACTIVE = new Set(['starting', 'running', 'stopping']);
  const $ = (id) => document.getElementById(id);

  // ---- helpers ----------------------------------------------------------------

  // The JSON API through app.js (CSRF, session expiry, server's errors).
  const call = api;


  const now = () => Math.floor(Date.now() / 1000);
  const localTime = (unix) => (unix ? new Date(unix * 1000).toLocaleString() : '');
  const clock = (unix) => (unix ? new Date(unix * 1000).toLocaleTimeString() : '');
  const round = (n, digits = 2) => {
    if (n === null || n === undefined || !Number.isFinite(Number(n))) return '';
    const f = 10 ** digits;
    return String(Math.round(Number(n) * f) / f);
  };
  function duration(secs) {
    if (secs === null || secs === undefined || !Number.isFinite(secs)) return '';
    const s = Math.max(0, Math.round(secs));
    if (s < 60) return `${s} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min ${s % 60} s`;
    return `${Math.floor(m / 60)} h ${m % 60} min`;
  }

  function showError(message) {
    const box = $('task-error');
    box.textContent = message;
    box.hidden = false;
    box.scrollIntoView({ block: 'nearest' });
  }
  const clearError = () => { $('task-error').hidden = true; };

  function toast(message) {
    const t = document.getElementById('toast');
    if (!t) return;
    t.textContent = message;
    t.className = 'show';
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { t.className = ''; }, 3000);
  }

  // ---- state ------------------------------------------------------------------

  // Points of one series: seconds kept sorted, a point per second; a second
  // sent again (more generators' parts in it) replaces the old one.
  class Points {
    constructor() { this.secs = []; this.bySec = new Map(); }
    put(p) {
      if (!this.bySec.has(p.sec)) {
        const s = this.secs;
        if (!s.length || p.sec > s[s.length - 1]) s.push(p.sec);
        else {
          let lo = 0;
          let hi = s.length;
          while (lo < hi) {
            const mid = (lo + hi) >> 1;
            if (s[mid] < p.sec) lo = mid + 1; else hi = mid;
          }
          s.splice(lo, 0, p.sec);
        }
      }
      this.bySec.set(p.sec, p);
    }
    column(field) { return this.secs.map((s) => this.bySec.get(s)[field]); }
    last(back = 0) {
      const s = this.secs[this.secs.length - 1 - back];
      return s === undefined ? null : this.bySec.get(s);
    }
  }

  const state = {
    view: null,
    total: new Points(),
    gens: new Map(),
    row: 0,
    // '' = all generators, else an agent id.
    selected: '',
    // The target TPS over time, per view key: [[sec, tps]...]. The task's
    // own comes from the actions that set it (`target`); a generator's
    // share starts where the page first saw it.
    targets: new Map(),
    actionsSeen: 0,
    over: false,
    // The generator a rate dialog is for ('' = all).
    rateFor: '',
  };
  const pointsOf = (key) => (key === '' ? state.total : state.gens.get(key) || new Points());

  function noteTarget(key, value, at) {
    if (value === null || value === undefined) return;
    const list = state.targets.get(key);
    if (!list) {
      state.targets.set(key, [[at, value]]);
      return;
    }
    if (list[list.length - 1][1] === value) return;
    list.push([Math.max(at, list[list.length - 1][0]), value]);
  }
  function targetAt(key, sec) {
    const list = state.targets.get(key);
    if (!list || sec < list[0][0]) return null;
    let v = null;
    for (const [at, value] of list) {
      if (at > sec) break;
      v = value;
    }
    return v;
  }

  // ---- charts -----------------------------------------------------------------

  const charts = [];
  let zoomed = false;
  let syncing = false;

  function chartWidth() {
    return Math.max(320, $('task-charts').clientWidth - 36);
  }

  function makeChart(el, series, height, yLabel) {
    const opts = {
      width: chartWidth(),
      height,
      cursor: { sync: { key: `task-${ID}` } },
      // From 0: a rate or a response time read against its zero.
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
      // Ticks on whole seconds at least: points are per second.
      axes: [{ incrs: [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200, 86400] }, { label: yLabel, size: 64 }],
      series: [{}, ...series],
      hooks: {
        // A zoom (drag) on one chart zooms all; back to the whole run on
        // a double click. While zoomed in, new points do not reset it.
        setScale: [(u, key) => {
          if (key !== 'x' || syncing) return;
          const xs = u.data[0];
          if (!xs.length) return;
          const { min, max } = u.scales.x;
          zoomed = min > xs[0] + 0.5 || max < xs[xs.length - 1] - 0.5;
          syncing = true;
          for (const c of charts) {
            if (c !== u && c.data[0].length) c.setScale('x', { min, max });
          }
          syncing = false;
        }],
      },
    };
    return new uPlot(opts, series.map(() => []).concat([[]]), el);
  }

  function createCharts(tpsMode) {
    if (!window.uPlot || charts.length) return;
    const tpsSeries = [{ label: 'TPS', stroke: '#2456c7', fill: 'rgba(36,86,199,.10)', width: 1.5 }];
    if (tpsMode) tpsSeries.push({ label: 'target', stroke: '#b35c00', dash: [6, 4], width: 1.5, points: { show: false } });
    charts.push(
      makeChart($('chart-tps'), tpsSeries, 220, 'TPS'),
      makeChart($('chart-rt'), [
        { label: 'mean', stroke: '#2456c7', width: 1.5 },
        { label: 'p50', stroke: '#18794e', width: 1 },
        { label: 'p90', stroke: '#b35c00', width: 1 },
        { label: 'p95', stroke: '#8e44ad', width: 1 },
        { label: 'p99', stroke: '#b42318', width: 1.5 },
      ], 240, 'ms'),
      makeChart($('chart-errors'), [{ label: 'errors/s', stroke: '#b42318', fill: 'rgba(180,35,24,.12)', width: 1.5 }], 160, 'errors/s'));
  }

  function chartData() {
    const p = pointsOf(state.selected);
    const xs = p.secs.slice();
    const tps = [xs, p.column('count')];
    if (state.view && state.view.tps_mode) tps.push(xs.map((s) => targetAt(state.selected, s)));
    return [
      tps,
      [xs, p.column('mean_ms'), p.column('p50_ms'), p.column('p90_ms'), p.column('p95_ms'), p.column('p99_ms')],
      [xs, p.column('errors')],
    ];
  }

  // The newest second that is complete enough to tell: in the merged view
  // the newest one may still miss other generators' parts.
  function currentPoint() {
    const p = pointsOf(state.selected);
    if (state.selected === '' && !state.over && p.secs.length > 1) return p.last(1);
    return p.last(0);
  }

  let drawPending = false;
  function draw() {
    drawPending = false;
    const cur = currentPoint();
    $('task-current-tps').textContent = cur ? String(cur.count) : '0';
    $('task-current-detail').textContent = cur
      ? `at ${clock(cur.sec)}: mean ${round(cur.mean_ms, 1)} ms, p99 ${cur.p99_ms} ms, ${cur.errors} error(s)`
      : 'no samples yet';
    if (!charts.length) return;
    const data = chartData();
    syncing = true;
    charts.forEach((c, i) => c.setData(data[i], !zoomed));
    syncing = false;
  }
  function scheduleDraw() {
    if (drawPending) return;
    drawPending = true;
    // Coalesce a burst of updates into one draw (also in a hidden tab).
    setTimeout(draw, 50);
  }

  let resizeTimer = null;
  window.addEventListener('resize', () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      for (const c of charts) c.setSize({ width: chartWidth(), height: c.height });
    }, 150);
  });

  // ---- the task view ------------------------------------------------------------

  function fact(name, label, ...value) {
    return [h('dt', {}, label), h('dd', { dataset: { fact: name } }, ...value)];
  }

  function renderFacts() {
    const v = state.view;
    const t = v.task;
    const active = ACTIVE.has(t.status);
    const s = t.settings;
    const load = v.tps_mode
      ? [`${round(t.target)} TPS`, s.load.tps !== t.target ? h('span', { class: 'muted small' }, ` (started at ${round(s.load.tps)})`) : null]
      : [`${round(t.target, 0)} threads in all`, h('span', { class: 'muted small' }, ` (${t.threads} per thread group on each generator)`)];
    const running = v.generators.filter((g) => GEN_ACTIVE.has(g.status)).length;
    let started = 'not yet';
    if (t.started_at) started = localTime(t.started_at);
    else if (s.schedule.type === 'automatic' && s.schedule.steps.length) started = `scheduled for ${localTime(s.schedule.steps[0].at)}`;
    let ends = '';
    if (t.ended_at) ends = `ended ${localTime(t.ended_at)}`;
    else if (t.ends_at) ends = `${localTime(t.ends_at)}${active ? ` (in ${duration(t.ends_at - now())})` : ''}`;
    const ran = t.started_at ? (t.ended_at || (active ? now() : t.started_at)) - t.started_at : null;
    $('task-facts').replaceChildren(
      ...fact('plan', 'Plan', t.plan_id ? h('a', { href: `${PREFIX}/plans/${t.plan_id}` }, t.plan_name) : t.plan_name),
      ...fact('target', v.tps_mode ? 'Target' : 'Threads', ...load),
      ...fact('generators', 'Generators', `${running} taking part`, h('span', { class: 'muted small' }, ` (the plan asks for ${s.generators})`)),
      ...fact('started', 'Started', started),
      ...fact('ends', 'Ends', ends),
      ...fact('duration', 'Duration', ran === null ? '' : duration(ran), h('span', { class: 'muted small' }, ` of ${duration(s.duration_secs)} planned`)),
      ...fact('created', 'Created', `${t.created_by}, ${localTime(t.created_at)}`),
      ...fact('mode', 'Run', `${s.schedule.type === 'automatic' ? 'automatic schedule' : 'manual'}${s.debug ? ', debug (JTL of every request)' : ''}`),
      ...(t.artifact_sha256 ? fact('files', 'Run files', h('code', { class: 'small' }, t.artifact_sha256.slice(0, 16)), `… ${t.artifact_size ?? ''} bytes`) : []));
  }

  function renderStatus() {
    const t = state.view.task;
    const el = $('task-status');
    el.textContent = t.status;
    el.className = `task-status status-${t.status}`;
    el.dataset.status = t.status;
    const active = ACTIVE.has(t.status);
    const stop = $('task-stop');
    stop.hidden = !active;
    stop.textContent = t.status === 'scheduled' ? 'Cancel' : 'Stop all';
    $('task-rate').hidden = !(state.view.tps_mode && STEERABLE.has(t.status));
    $('task-attach').hidden = !STEERABLE.has(t.status);
    $('task-artifact').hidden = !t.artifact_sha256;
    const failure = $('task-failure');
    failure.textContent = t.error ? `${t.status === 'failed' ? 'Failed' : 'Note'}: ${t.error}` : '';
    failure.hidden = !t.error;
  }

  function renderTotals() {
    const tot = state.view.task.totals;
    const box = $('task-totals');
    box.hidden = !tot;
    if (!tot) return;
    const fig = (name, label, value) => [h('dt', {}, label), h('dd', { dataset: { total: name } }, value)];
    $('task-totals-figures').replaceChildren(
      ...fig('samples', 'Samples', String(tot.samples)),
      ...fig('tps', 'TPS', round(tot.tps)),
      ...fig('mean', 'Mean', `${round(tot.mean_ms, 1)} ms`),
      ...fig('p50', 'p50', `${tot.p50_ms} ms`),
      ...fig('p90', 'p90', `${tot.p90_ms} ms`),
      ...fig('p95', 'p95', `${tot.p95_ms} ms`),
      ...fig('p99', 'p99', `${tot.p99_ms} ms`),
      ...fig('max', 'Max', `${tot.max_ms} ms`),
      ...fig('errors', 'Errors', `${tot.errors} (${round(tot.error_pct)} %)`),
      ...fig('secs', 'Seconds with samples', String(tot.secs)),
      ...fig('bytes', 'Received', `${tot.bytes} bytes`));
    const labels = Array.isArray(tot.labels) ? tot.labels : [];
    $('task-labels').hidden = !labels.length;
    $('task-labels').querySelector('tbody').replaceChildren(...labels.map((l) => h('tr', { dataset: { label: l.label } },
      h('td', {}, l.label),
      h('td', { class: 'num' }, String(l.samples)),
      h('td', { class: `num${l.errors ? ' error' : ''}` }, String(l.errors)),
      h('td', { class: 'num' }, round(l.mean_ms, 1)),
      h('td', { class: 'num' }, String(l.p90_ms)),
      h('td', { class: 'num' }, String(l.p99_ms)))));
  }

  const hostLabel = (g) => {
    const same = state.view.generators.filter((o) => o.hostname === g.hostname).length > 1;
    return same ? `${g.hostname} (${g.agent_id.slice(0, 8)})` : g.hostname;
  };

  function renderGenerators() {
    const v = state.view;
    const steerable = STEERABLE.has(v.task.status);
    const rows = v.generators.map((g) => {
      const active = GEN_ACTIVE.has(g.status);
      const share = v.tps_mode && g.per_min !== null && g.per_min !== undefined && active ? round(g.per_min / 60) : '—';
      return h('tr', { dataset: { agent: g.agent_id, status: g.status }, class: state.selected === g.agent_id ? 'selected' : null },
        h('td', {}, g.hostname, h('div', { class: 'muted small mono' }, g.agent_id)),
        h('td', {}, h('span', { class: `gen-status gen-${g.status}`, dataset: { genStatus: g.status } }, g.status)),
        h('td', { class: 'num', dataset: { genShare: '' } }, share),
        h('td', { class: 'num' }, g.pid ?? ''),
        h('td', { class: 'small' }, g.jmeter_version ?? ''),
        h('td', { class: 'small' }, localTime(g.joined_at), g.ended_at ? h('div', { class: 'muted' }, `until ${clock(g.ended_at)}`) : null),
        h('td', { class: 'small' }, g.message ?? ''),
        h('td', { class: 'actions' },
          h('button', { type: 'button', class: 'small', dataset: { genView: g.agent_id } }, 'View'),
          steerable && active && g.status !== 'stopping' ? h('button', { type: 'button', class: 'small danger', dataset: { genStop: g.agent_id } }, 'Stop') : null,
          steerable && v.tps_mode && STEERABLE.has(g.status) ? h('button', { type: 'button', class: 'small', dataset: { genRate: g.agent_id } }, 'Change TPS') : null,
          h('button', { type: 'button', class: 'small', dataset: { genLog: g.agent_id } }, 'Log'),
          v.task.settings.debug ? h('a', { class: 'button small', href: `${PREFIX}/api/tasks/${ID}/generators/${encodeURIComponent(g.agent_id)}/jtl`, dataset: { genJtl: g.agent_id } }, 'JTL') : null));
    });
    const body = $('task-generators').querySelector('tbody');
    body.replaceChildren(...(rows.length ? rows : [h('tr', {}, h('td', { colspan: 8, class: 'empty' }, 'No generator has joined yet.'))]));

    // The chart selector follows the generators (a hot-attached one appears).
    const select = $('task-view');
    const want = [['', 'All generators'], ...v.generators.map((g) => [g.agent_id, hostLabel(g)])];
    const have = [...select.options].map((o) => [o.value, o.textContent]);
    if (JSON.stringify(want) !== JSON.stringify(have)) {
      select.replaceChildren(...want.map(([value, label]) => h('option', { value }, label)));
      select.value = want.some(([value]) => value === state.selected) ? state.selected : '';
    }

    const others = !steerable ? [] : v.candidates.filter((c) => !v.generators.some((g) => g.agent_id === c.agent_id && GEN_ACTIVE.has(g.status)));
    $('task-candidates').textContent = !steerable ? ''
      : others.length ? `Other load generators of the room: ${others.map(candidateText).join('; ')}.`
        : 'No other load generator in the room.';
  }

  function candidateText(c) {
    let s = c.state;
    if (c.state === 'busy' && c.busy_task) s = c.busy_task === Number(ID) ? 'in this task' : `busy with task ${c.busy_task}`;
    if (c.state === 'unusable' && c.problem) s = `unusable: ${c.problem}`;
    return `${c.hostname}${c.server && c.server !== c.hostname ? ` on ${c.server}` : ''} (${s})`;
  }

  function renderActions() {
    const list = $('task-actions');
    const acts = state.view.actions;
    list.replaceChildren(...acts.map((a) => h('li', { dataset: { action: '' } },
      h('span', { class: 'muted small' }, localTime(a.at)), ' ',
      h('strong', {}, a.who), ': ', a.action)));
    if (!acts.length) list.replaceChildren(h('li', { class: 'muted' }, 'Nothing yet.'));
  }

  function applyView(v) {
    if (!v || !v.task) return;
    const first = !state.view;
    state.view = v;
    state.over = !ACTIVE.has(v.task.status);
    // Target lines: a change is dated by the action that made it, when the
    // view brings a new one; what the first view shows starts now.
    const newest = !first && v.actions.length > state.actionsSeen ? v.actions[v.actions.length - 1].at : now();
    state.actionsSeen = v.actions.length;
    if (v.tps_mode) {
      const history = v.actions.filter((a) => a.target !== null && a.target !== undefined).map((a) => [a.at, a.target]);
      if (history.length) state.targets.set('', history);
      else if (!state.over) noteTarget('', v.task.target, newest);
    }
    if (v.tps_mode && !state.over) {
      for (const g of v.generators) {
        const active = GEN_ACTIVE.has(g.status);
        if (g.per_min !== null && g.per_min !== undefined) noteTarget(g.agent_id, active ? g.per_min / 60 : 0, active ? newest : (g.ended_at || newest));
      }
    }
    if (first) createCharts(v.tps_mode);
    renderStatus();
    renderFacts();
    renderTotals();
    renderGenerators();
    renderActions();
    if ($('attach-dialog').open) fillAttachChoices();
    if (state.over) {
      $('task-live').textContent = 'over';
      clearInterval(ticker);
    }
    scheduleDraw();
    document.body.dataset.ready = '1';
  }

  function applySeries(s) {
    if (typeof s.row === 'number' && s.row > state.row) state.row = s.row;
    for (const p of s.total || []) state.total.put(p);
    for (const [agent, points] of Object.entries(s.generators || {})) {
      let store = state.gens.get(agent);
      if (!store) state.gens.set(agent, store = new Points());
      for (const p of points) store.put(p);
    }
    scheduleDraw();
  }

  // Elapsed and remaining times move on between updates.
  const ticker = setInterval(() => { if (state.view) renderFacts(); }, 1000);

  // ---- the live stream ----------------------------------------------------------

  let source = null;
  let failures = 0;
  function connect() {
    const q = state.row ? `?after=${state.row}` : '';
    source = new EventSource(`${PREFIX}/api/tasks/${ID}/live${q}`);
    $('task-live').textContent = 'connecting…';
    source.onopen = () => {
      failures = 0;
      $('task-live').textContent = state.over ? 'over' : 'live';
    };
    source.addEventListener('task', (e) => applyView(JSON.parse(e.data)));
    source.addEventListener('series', (e) => applySeries(JSON.parse(e.data)));
    // The server says when the task is over; the stream then closes.
    source.addEventListener('end', () => {
      state.over = true;
      source.close();
      source = null;
      $('task-live').textContent = 'over';
    });
    // The stream ends after the task is over; otherwise it broke: check
    // the task (a lost session goes to the login) and resume.
    source.onerror = () => {
      source.close();
      source = null;
      if (state.over) {
        $('task-live').textContent = 'over';
        return;
      }
      failures += 1;
      $('task-live').textContent = 'reconnecting…';
      setTimeout(async () => {
        try {
          applyView(await call('GET', `/api/tasks/${ID}`));
          if (state.over) {
            applySeries(await call('GET', `/api/tasks/${ID}/series`));
            return;
          }
        } catch (err) {
          $('task-live').textContent = `offline: ${err.message}`;
        }
        connect();
      }, Math.min(30_000, 1000 * 2 ** Math.min(failures, 5)));
    };
  }

  // ---- steering -----------------------------------------------------------------

  async function steer(button, method, path, body, done) {
    clearError();
    if (button) button.disabled = true;
    try {
      applyView(await call(method, path, body));
      if (done) toast(done);
      return true;
    } catch (e) {
      showError(e.message);
      return false;
    } finally {
      if (button) button.disabled = false;
    }
  }

  $('task-stop').addEventListener('click', (ev) => {
    const scheduled = state.view && state.view.task.status === 'scheduled';
    if (!confirm(scheduled ? `Cancel task ${ID} before its scheduled start?` : `Stop task ${ID} on all its generators?`)) return;
    steer(ev.currentTarget, 'POST', `/api/tasks/${ID}/stop`, undefined, scheduled ? 'Cancelled.' : 'Stopping…');
  });

  // One dialog changes the TPS of the whole task or of one generator.
  const rateDialog = $('rate-dialog');
  function openRate(agent) {
    const v = state.view;
    state.rateFor = agent;
    const g = agent ? v.generators.find((o) => o.agent_id === agent) : null;
    $('rate-title').textContent = g ? `Change the TPS of ${hostLabel(g)}` : 'Change the TPS of the task';
    $('rate-help').textContent = g
      ? `Now ${round((g.per_min || 0) / 60)} TPS; the task's total follows (now ${round(v.task.target)}). At most ${MAX_TPS}.`
      : `Now ${round(v.task.target)} TPS in all, split evenly over the ${v.generators.filter((o) => STEERABLE.has(o.status)).length} running generator(s). At most ${MAX_TPS}.`;
    const input = $('rate-input');
    input.value = g ? round((g.per_min || 0) / 60) : round(v.task.target);
    input.max = Number.isFinite(MAX_TPS) ? String(MAX_TPS) : '';
    $('rate-error').hidden = true;
    rateDialog.showModal();
    input.select();
  }
  $('task-rate').addEventListener('click', () => openRate(''));
  $('rate-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const err = $('rate-error');
    const raw = $('rate-input').value.trim();
    const tps = Number(raw);
    if (raw === '' || !Number.isFinite(tps) || tps <= 0 || tps > MAX_TPS) {
      err.textContent = `Enter a TPS more than 0 and at most ${MAX_TPS}.`;
      err.hidden = false;
      return;
    }
    const path = state.rateFor
      ? `/api/tasks/${ID}/generators/${encodeURIComponent(state.rateFor)}/rate`
      : `/api/tasks/${ID}/rate`;
    const button = $('rate-submit');
    button.disabled = true;
    try {
      applyView(await call('POST', path, { tps }));
      rateDialog.close();
      toast(`TPS changed to ${round(tps)}.`);
    } catch (e) {
      err.textContent = e.message;
      err.hidden = false;
    } finally {
      button.disabled = false;
    }
  });

  // Hot-attach: any idle generator of the room, or a chosen one.
  const attachDialog = $('attach-dialog');
  function fillAttachChoices() {
    const select = $('attach-choice');
    const keep = select.value;
    const cands = state.view.candidates;
    const idle = cands.filter((c) => c.state === 'idle');
    select.replaceChildren(
      h('option', { value: '' }, idle.length ? `Any idle generator (${idle.length} idle)` : 'Any idle generator (none idle now)'),
      ...cands.map((c) => h('option', { value: c.agent_id, disabled: c.state !== 'idle' }, candidateText(c))));
    select.value = [...select.options].some((o) => o.value === keep && !o.disabled) ? keep : '';
    $('attach-help').textContent = idle.length
      ? ''
      : 'No generator of the room is idle now: starting one will say why.';
  }
  $('task-attach').addEventListener('click', () => {
    $('attach-error').hidden = true;
    fillAttachChoices();
    attachDialog.showModal();
  });
  $('attach-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const agent = $('attach-choice').value;
    const button = $('attach-submit');
    const err = $('attach-error');
    button.disabled = true;
    try {
      applyView(await call('POST', `/api/tasks/${ID}/generators`, agent ? { agent_id: agent } : undefined));
      attachDialog.close();
      toast('Generator starting.');
    } catch (e) {
      err.textContent = e.message;
      err.hidden = false;
    } finally {
      button.disabled = false;
    }
  });

  for (const b of root.querySelectorAll('[data-dialog-cancel]')) {
    b.addEventListener('click', () => b.closest('dialog').close());
  }

  function select(agent) {
    state.selected = agent;
    $('task-view').value = agent;
    zoomed = false;
    for (const tr of $('task-generators').querySelectorAll('tr[data-agent]')) {
      tr.classList.toggle('selected', tr.dataset.agent === agent);
    }
    draw();
  }
  $('task-view').addEventListener('change', (ev) => select(ev.target.value));

  async function downloadLog(button, agent) {
    const g = state.view.generators.find((o) => o.agent_id === agent);
    const host = g ? g.hostname : agent;
    button.disabled = true;
    clearError();
    try {
      const r = await fetch(`${PREFIX}/api/tasks/${ID}/generators/${encodeURIComponent(agent)}/log`, { credentials: 'same-origin' });
      if (r.status === 401) {
        location.href = `${PREFIX}/login?expired=1`;
        return;
      }
      if (!r.ok) {
        const v = await r.json().catch(() => null);
        throw new Error((v && v.error) || `${r.status} ${r.statusText}`);
      }
      const blob = await r.blob();
      const m = (r.headers.get('content-disposition') || '').match(/filename\*=UTF-8''([^;]+)/);
      const a = h('a', { href: URL.createObjectURL(blob), download: m ? decodeURIComponent(m[1]) : `task-${ID}-${host}-jmeter.log` });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 30_000);
    } catch (e) {
      showError(`The JMeter log of ${host} did not download: ${e.message}`);
    } finally {
      button.disabled = false;
    }
  }

  $('task-generators').addEventListener('click', (ev) => {
    const b = ev.target.closest('button');
    if (!b) return;
    const d = b.dataset;
    if (d.genView !== undefined) {
      select(d.genView);
      $('task-charts').scrollIntoView({ block: 'start', behavior: 'smooth' });
    } else if (d.genStop !== undefined) {
      const g = state.view.generators.find((o) => o.agent_id === d.genStop);
      if (!confirm(`Stop ${g ? g.hostname : d.genStop}? The others take over its share of the TPS.`)) return;
      steer(b, 'POST', `/api/tasks/${ID}/generators/${encodeURIComponent(d.genStop)}/stop`, undefined, 'Stopping the generator…');
    } else if (d.genRate !== undefined) {
      openRate(d.genRate);
    } else if (d.genLog !== undefined) {
      downloadLog(b, d.genLog);
    }
  });

  connect();
})();
