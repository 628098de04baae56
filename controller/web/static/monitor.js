// Monitoring: the servers of a group/room (sorted by load score) beside
// the charts of their average or of one server. The view lives in the URL
// (group, room, host, range | from & to) so it can be shared; a change of
// view loads its whole range once, then every 10 s only the newest
// buckets are asked for and appended (setData, charts never rebuilt), a
// preset range sliding along. Zoom by dragging, double-click to zoom out;
// a zoom survives the refreshes. window.__monitor exposes the state to the
// browser tests.
'use strict';
(() => {
  const root = document.getElementById('monitor');
  if (!root) return;
  const PREFIX = document.querySelector('meta[name="prefix"]').content;
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const REFRESH_MS = Math.max(1000, Number(params.get('refresh_ms')) || 10000);
  const MAX_POINTS = 2000;
  const RETENTION_DAYS = Number(root.dataset.retentionDays) || 0;
  const MIN = 60 * 1000;
  const RANGES = { '15m': 15 * MIN, '1h': 60 * MIN, '6h': 360 * MIN, '24h': 1440 * MIN, '7d': 7 * 1440 * MIN, '30d': 30 * 1440 * MIN };
  const RANGE_NAMES = { '15m': 'the last 15 minutes', '1h': 'the last hour', '6h': 'the last 6 hours', '24h': 'the last 24 hours', '7d': 'the last 7 days', '30d': 'the last 30 days' };

  const C = {
    blue: '#2456c7', orange: '#d9730d', green: '#18794e', purple: '#7c3aed', red: '#c0392b', teal: '#0e7490', grey: '#6b7585',
  };
  const fill = (hex, a) => {
    const n = parseInt(hex.slice(1), 16);
    return `rgba(${n >> 16},${(n >> 8) & 255},${n & 255},${a})`;
  };
  const PORT_COLOURS = [C.blue, C.green, C.orange, C.purple, C.teal, C.red, '#8a6d00', '#b03a82'];

  // Each chart: its series (field, label, colour) and how its values read.
  // `optional` series are shown only when the range holds a point of them.
  const CHARTS = [
    { key: 'cpu', unit: 'pct', pctScale: true, empty: 'No CPU figures in this range.', series: [
      { field: 'cpu.busy_pct', label: 'busy', stroke: C.blue, fill: fill(C.blue, 0.1) },
      { field: 'cpu.iowait_pct', label: 'iowait', stroke: C.orange },
    ] },
    { key: 'mem', unit: 'bytes', empty: 'No memory figures in this range.', series: [
      { field: 'mem.available_bytes', label: 'available', stroke: C.green, fill: fill(C.green, 0.08) },
      { field: 'mem.free_bytes', label: 'free', stroke: C.teal },
      { field: 'jvm.heap_used_bytes', label: 'JVM heap used', stroke: C.purple, optional: true },
    ] },
    { key: 'diskio', unit: 'rate', empty: 'No disk figures in this range.', series: [
      { field: 'disk.read_bps', label: 'read', stroke: C.blue, fill: fill(C.blue, 0.08) },
      { field: 'disk.write_bps', label: 'write', stroke: C.orange },
    ] },
    { key: 'diskutil', unit: 'pct', pctScale: true, empty: 'No disk figures in this range.', series: [
      { field: 'disk.util_pct', label: 'busiest disk busy', stroke: C.purple, fill: fill(C.purple, 0.1) },
    ] },
    { key: 'net', unit: 'rate', empty: 'No network figures in this range.', series: [
      { field: 'net.rx_bps', label: '↓ received', stroke: C.green, fill: fill(C.green, 0.08) },
      { field: 'net.tx_bps', label: '↑ sent', stroke: C.blue },
    ] },
    { key: 'netutil', unit: 'pct', pctScale: true, empty: 'No utilisation: the link speed of the interfaces is unknown (virtual or VM interfaces often do not report one).', series: [
      { field: 'net.util_pct', label: 'busiest interface', stroke: C.purple, fill: fill(C.purple, 0.1) },
    ] },
    { key: 'tcp', unit: 'count', rightUnit: 'perSec', empty: 'No TCP figures in this range.', series: [
      { field: 'tcp.established', label: 'established', stroke: C.blue },
      { field: 'tcp.retrans_segs_per_s', label: 'retransmits', stroke: C.red, scale: 'r' },
    ] },
    { key: 'ports', unit: 'count', empty: 'No connections on the application ports in this range.', series: [] },
  ];
  const PORT_KINDS = [
    { kind: 'total', label: 'total', dash: undefined, width: 1.6 },
    { kind: 'time_wait', label: 'TIME_WAIT', dash: [5, 3], width: 1.2 },
    { kind: 'close_wait', label: 'CLOSE_WAIT', dash: [1.5, 2.5], width: 1.4 },
  ];
  const portSeries = (ports) => ports.flatMap((p, i) => PORT_KINDS.map((k) => ({
    field: `app.port.${p}.${k.kind}`, label: `:${p} ${k.label}`, stroke: PORT_COLOURS[i % PORT_COLOURS.length], dash: k.dash, width: k.width,
  })));

  // ---- state ----------------------------------------------------------------------

  const state = {
    group: '', room: '', host: null,
    range: '1h', from: null, to: null, // from/to (ms) only for a custom range
    hosts: [], hostsLoaded: false, extraHost: null,
    meanHosts: null, // `hosts` of the last mean answer
    ports: [],
    fields: [],
    data: new Map(), // field -> [[ts_ms, value], ...] sorted
    stepMs: null, viewFrom: null, viewTo: null, heldTo: null,
    apiNotice: null,
    zoom: null, // {min, max} in seconds while zoomed in
    loaded: false, loading: false, refreshing: false,
  };
  const M = {
    charts: {}, view: 'mean', host: null, stepMs: null, refreshes: 0, lastRefreshMs: null, maxPoints: MAX_POINTS, refreshMs: REFRESH_MS,
  };
  window.__monitor = M;
  let gen = 0; // bumped by every change of view: older answers are dropped

  // ---- helpers --------------------------------------------------------------------

  const num = (v) => (v === null || v === undefined || !Number.isFinite(Number(v)) ? null : Number(v));
  const pad = (n) => String(n).padStart(2, '0');
  const toLocalInput = (ms) => {
    const d = new Date(ms);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
  };
  const fromLocalInput = (s) => (s ? new Date(s).getTime() : NaN);
  // One 24-hour form for every time on the page, like the axis ticks.
  const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const clock = (ms) => {
    const d = new Date(ms);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  };
  const when = (ms, secs) => {
    const d = new Date(ms);
    const t = secs ? clock(ms) : `${pad(d.getHours())}:${pad(d.getMinutes())}`;
    return `${d.getDate()} ${MONTHS[d.getMonth()]} ${d.getFullYear()} ${t}`;
  };
  const hostName = (h) => h.hostname || h.server_name || h.agent_id;
  const plural = (n) => (n === 1 ? '1 server' : `${n} servers`);
  const isCustom = () => state.range === 'custom';
  const liveCustom = () => isCustom() && state.to > Date.now();
  function stepText(ms) {
    if (!ms) return '';
    if (ms < 60000) return `${Math.round(ms / 1000)} s`;
    if (ms < 3600000) return `${Math.round(ms / 60000)} min`;
    return `${Math.round(ms / 3600000)} h`;
  }

  function showError(msg) {
    const box = $('monitor-error');
    box.textContent = msg;
    box.hidden = !msg;
  }
  function status(msg) { $('monitor-status').textContent = msg; }

  // ---- URL <-> controls ---------------------------------------------------------

  function readUrl() {
    const p = new URLSearchParams(location.search);
    const has = (sel, v) => [...$(sel).options].some((o) => o.value === v);
    state.group = p.get('group') || '';
    state.room = p.get('room') || '';
    // A group or room not offered (gone, not visible) is still asked for:
    // the API answers for it, and the select shows it as such.
    for (const [sel, v] of [['group', state.group], ['room', state.room]]) {
      if (v && !has(sel, v)) $(sel).append(h('option', { value: v }, `${v} (unknown)`));
    }
    state.host = p.get('host') || null;
    const from = Number(p.get('from'));
    const to = Number(p.get('to'));
    if (p.get('from') && p.get('to') && Number.isFinite(from) && Number.isFinite(to) && to > from) {
      state.range = 'custom';
      state.from = from;
      state.to = to;
    } else {
      state.range = RANGES[p.get('range')] ? p.get('range') : '1h';
    }
  }

  function writeControls() {
    $('group').value = state.group;
    $('room').value = state.room;
    $('range').value = state.range;
    $('custom-range').hidden = !isCustom();
    if (isCustom()) {
      $('from').value = toLocalInput(state.from);
      $('to').value = toLocalInput(state.to);
    }
  }

  function writeUrl() {
    const u = new URL(location.href);
    const sp = u.searchParams;
    const set = (k, v) => (v ? sp.set(k, v) : sp.delete(k));
    set('group', state.group);
    set('room', state.room);
    set('host', state.host);
    if (isCustom()) {
      sp.delete('range');
      sp.set('from', String(state.from));
      sp.set('to', String(state.to));
    } else {
      sp.set('range', state.range);
      sp.delete('from');
      sp.delete('to');
    }
    history.replaceState(null, '', u);
  }

  // ---- charts -------------------------------------------------------------------

  let syncing = false;
  const chartList = () => CHARTS.map((d) => M.charts[d.key]).filter(Boolean);

  function panelOf(key) { return root.querySelector(`[data-panel="${key}"]`); }
  function chartEl(key) { return root.querySelector(`[data-chart="${key}"]`); }
  function chartWidth(key) {
    const el = chartEl(key);
    const w = el.clientWidth || el.parentElement.clientWidth || $('charts').clientWidth / 2;
    return Math.max(260, Math.floor(w));
  }

  const BINARY_INCRS = [];
  for (let k = 0; k < 5; k += 1) {
    for (const m of [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]) BINARY_INCRS.push(m * 1024 ** k);
  }

  function axisFor(unit, side) {
    const fmt = units.axis[unit];
    const a = {
      scale: side === 1 ? 'r' : 'y',
      side: side === 1 ? 1 : 3,
      size: side === 1 ? 58 : 78,
      values: (u, splits) => splits.map((v) => (v === null || v === undefined ? '' : fmt(v))),
      grid: side === 1 ? { show: false } : { stroke: '#eceff3', width: 1 },
      ticks: { stroke: '#dde1e7', width: 1, size: 4 },
    };
    if (unit === 'bytes' || unit === 'rate') a.incrs = BINARY_INCRS;
    return a;
  }

  // 24-hour local time on the x axis; the date under the first tick and
  // where the day changes. Columns: tick step (s), format, then the format
  // when the year / month / day / hour / minute / second changes, mode.
  const TIME_TICKS = [
    [3600 * 24 * 365, '{YYYY}', null, null, null, null, null, null, 1],
    [3600 * 24 * 28, '{MMM}', '\n{YYYY}', null, null, null, null, null, 1],
    [3600 * 24, '{D} {MMM}', '\n{YYYY}', null, null, null, null, null, 1],
    [3600, '{HH}:{mm}', '\n{D} {MMM} {YYYY}', null, '\n{D} {MMM}', null, null, null, 1],
    [60, '{HH}:{mm}', '\n{D} {MMM} {YYYY}', null, '\n{D} {MMM}', null, null, null, 1],
    [1, '{HH}:{mm}:{ss}', '\n{D} {MMM} {YYYY}', null, '\n{D} {MMM}', null, null, null, 1],
  ];

  function yRange(pct) {
    return (u, min, max) => {
      const top = num(max) === null ? 0 : max;
      if (pct) return [0, top <= 0 ? 10 : Math.min(100, Math.max(5, top * 1.15))];
      return [0, top > 0 ? top * 1.12 : 1];
    };
  }

  // Breaks a line where a host sent nothing for a while (agent stopped,
  // host down) instead of drawing a straight line across the hole.
  function gapsFn(u, sidx, i0, i1, nullGaps) {
    const xs = u.data[0];
    const thr = gapSecs;
    let extra = null;
    for (let i = Math.max(i0 + 1, 1); i <= i1; i += 1) {
      if (xs[i] - xs[i - 1] > thr) {
        (extra || (extra = [])).push([Math.round(u.valToPos(xs[i - 1], 'x', true)), Math.round(u.valToPos(xs[i], 'x', true))]);
      }
    }
    if (!extra) return nullGaps;
    return nullGaps.concat(extra).sort((a, b) => a[0] - b[0]);
  }
  let gapSecs = Infinity;

  function seriesOpts(def, s) {
    const unit = s.scale === 'r' ? def.rightUnit : def.unit;
    return {
      label: s.label,
      scale: s.scale || 'y',
      stroke: s.stroke,
      fill: s.fill,
      width: s.width || 1.5,
      dash: s.dash,
      points: { show: false },
      gaps: gapsFn,
      value: (u, v) => units[unit](v),
    };
  }

  function makeChart(def) {
    const axes = [
      { stroke: '#4b5563', values: TIME_TICKS, grid: { stroke: '#eceff3', width: 1 }, ticks: { stroke: '#dde1e7', width: 1, size: 4 } },
      axisFor(def.unit, 3),
    ];
    const scales = { x: { time: true }, y: { range: yRange(def.pctScale) } };
    if (def.rightUnit) {
      axes.push(axisFor(def.rightUnit, 1));
      scales.r = { range: yRange(false) };
    }
    const opts = {
      width: chartWidth(def.key),
      height: 190,
      cursor: {
        sync: { key: 'monitor' },
        drag: { x: true, y: false, setScale: true },
        // Our own double-click: back to the whole range, not to the data.
        bind: { dblclick: () => null },
      },
      legend: { live: true },
      scales,
      axes,
      series: [{ value: (u, v) => (v === null || v === undefined ? '–' : when(v * 1000, true)) }],
      hooks: {
        setScale: [(u, key) => {
          if (key !== 'x' || syncing) return;
          // A drag zoomed this chart: all follow, and refreshes keep it.
          const { min, max } = u.scales.x;
          const full = fullWindow();
          state.zoom = (min > full.min + 0.5 || max < full.max - 0.5) ? { min, max } : null;
          applyX(u);
          zoomHint();
        }],
      },
    };
    const u = new uPlot(opts, [[]], chartEl(def.key));
    u.over.addEventListener('dblclick', () => resetZoom());
    u.__def = def;
    u.__keys = [];
    return u;
  }

  // Puts the chart's series in line with `defs` (JVM heap, ports come and
  // go with the view) without rebuilding the chart.
  function syncSeries(u, defs) {
    const keys = defs.map((s) => s.field);
    if (keys.join('|') === u.__keys.join('|')) return;
    for (let i = u.series.length - 1; i >= 1; i -= 1) u.delSeries(i);
    defs.forEach((s) => u.addSeries(seriesOpts(u.__def, s)));
    u.__keys = keys;
  }

  function createCharts() {
    if (!window.uPlot) {
      showError('The chart library did not load; reload the page.');
      return false;
    }
    for (const def of CHARTS) if (!M.charts[def.key]) M.charts[def.key] = makeChart(def);
    return true;
  }

  function fullWindow() {
    return { min: state.viewFrom / 1000, max: state.viewTo / 1000 };
  }

  // The x window of every chart: the zoom while zoomed in, else the whole
  // range (also where it has no data: a hole shows as a hole).
  function applyX(except) {
    if (state.viewFrom === null) return;
    const w = state.zoom || fullWindow();
    syncing = true;
    try {
      // batch(): the hooks run now, while `syncing` says they are ours.
      for (const u of chartList()) {
        if (u === except) continue;
        const sc = u.scales.x;
        if (sc.min !== null && Math.abs(sc.min - w.min) < 1e-6 && Math.abs(sc.max - w.max) < 1e-6) continue;
        u.batch(() => u.setScale('x', { min: w.min, max: w.max }));
      }
    } finally {
      syncing = false;
    }
  }

  function resetZoom() {
    state.zoom = null;
    applyX(null);
    zoomHint();
  }

  function zoomHint() {
    const z = state.zoom;
    $('view-detail').textContent = detailText() + (z ? ` · zoomed to ${when(z.min * 1000, true)} – ${clock(z.max * 1000)} (double-click to zoom out)` : '');
  }

  // [xs (s), ys...] for the given fields: timestamps of all of them; a
  // field without a value at a timestamp is left out there (undefined:
  // the line goes on), not a gap.
  function align(fields) {
    const cols = fields.map((f) => state.data.get(f) || []);
    const seen = new Set();
    const ts = [];
    for (const col of cols) {
      for (const p of col) {
        if (!seen.has(p[0])) { seen.add(p[0]); ts.push(p[0]); }
      }
    }
    ts.sort((a, b) => a - b);
    const index = new Map(ts.map((t, i) => [t, i]));
    const out = [ts.map((t) => t / 1000)];
    for (const col of cols) {
      const ys = new Array(ts.length);
      for (const p of col) ys[index.get(p[0])] = p[1];
      out.push(ys);
    }
    return out;
  }

  const hasPoints = (f) => (state.data.get(f) || []).length > 0;

  function chartSeriesDefs(def) {
    if (def.key === 'ports') return portSeries(state.ports);
    return def.series.filter((s) => !s.optional || hasPoints(s.field));
  }

  function updateGapThreshold() {
    // Three buckets (or three sampling intervals when sparser) without a
    // point is a hole.
    const col = state.data.get('cpu.busy_pct') || state.data.get('mem.available_bytes') || [];
    let typical = state.stepMs || 1000;
    if (col.length > 10) {
      const d = [];
      for (let i = Math.max(1, col.length - 200); i < col.length; i += 1) d.push(col[i][0] - col[i - 1][0]);
      d.sort((a, b) => a - b);
      typical = Math.max(typical, d[d.length >> 1]);
    }
    gapSecs = Math.max(3 * typical, 3 * (state.stepMs || 1000)) / 1000;
  }

  function draw() {
    if (!createCharts()) return;
    updateGapThreshold();
    const w = state.zoom || fullWindow();
    // When nothing at all is there, #notice says so once, not every chart.
    const anyData = state.fields.some(hasPoints);
    for (const def of CHARTS) {
      const u = M.charts[def.key];
      const defs = chartSeriesDefs(def);
      const data = align(defs.map((s) => s.field));
      syncing = true;
      try {
        u.batch(() => {
          syncSeries(u, defs);
          u.setData(data, false);
          if (state.viewFrom !== null) u.setScale('x', { min: w.min, max: w.max });
        });
      } finally {
        syncing = false;
      }
      const panel = panelOf(def.key);
      if (def.key === 'ports') {
        const none = !state.ports.length;
        panel.hidden = none;
        chartEl('ports').hidden = none;
      }
      const empty = !defs.some((s) => hasPoints(s.field));
      let msg = panel.querySelector('.chart-empty');
      if (!msg) {
        msg = h('div', { class: 'chart-empty' });
        panel.append(msg);
      }
      msg.textContent = state.loaded ? def.empty : '';
      msg.hidden = !(empty && state.loaded && anyData);
    }
  }

  let resizeTimer = null;
  const resizeObserver = new ResizeObserver(() => {
    if (resizeTimer) return;
    resizeTimer = setTimeout(() => {
      resizeTimer = null;
      for (const u of chartList()) {
        const w = chartWidth(u.__def.key);
        if (Math.abs(w - u.width) > 2) u.setSize({ width: w, height: u.height });
      }
    }, 150);
  });
  resizeObserver.observe($('charts'));

  // ---- the server list ---------------------------------------------------------

  function avgText() {
    const n = state.meanHosts ?? state.hosts.length;
    return `Average of ${plural(n)}`;
  }

  function metricLine(host) {
    const s = host.latest;
    const sc = host.score;
    if (!s) return host.connected ? 'no data yet' : 'no data yet · agent offline';
    const parts = [];
    if (s.cpu) parts.push(`CPU ${units.pct(s.cpu.busy_pct)}`);
    if (sc && num(sc.mem_pct) !== null) parts.push(`mem ${units.pct(sc.mem_pct)}`);
    else if (s.mem && s.mem.total_bytes) parts.push(`mem ${units.pct(100 * (1 - s.mem.available_bytes / s.mem.total_bytes))}`);
    if (sc && num(sc.io_pct) !== null) parts.push(`IO ${units.pct(sc.io_pct)}`);
    return parts.join(' · ');
  }

  function renderServers() {
    const list = $('servers');
    const avg = $('avg');
    avg.textContent = '';
    avg.append(h('span', { class: 'srv-name' }, avgText()),
      h('span', { class: 'srv-line small muted' }, state.group || state.room
        ? [state.group && `group ${state.group}`, state.room && `room ${state.room}`].filter(Boolean).join(' · ')
        : 'all servers you may see'));
    avg.classList.toggle('active', !state.host);
    avg.setAttribute('aria-pressed', String(!state.host));
    const items = state.hosts.map((host) => {
      const sc = host.score;
      const step = sc && num(sc.step) !== null ? Math.max(0, Math.min(10, Math.round(sc.step))) : null;
      const cls = ['server'];
      if (step !== null) cls.push(`score-${step}`);
      if (host.silent) cls.push('silent');
      if (state.host === host.agent_id) cls.push('active');
      return h('li', {
        class: cls.join(' '), tabindex: '0', role: 'button', 'aria-pressed': String(state.host === host.agent_id),
        title: host.agent_id,
        dataset: { agent: host.agent_id, score: sc && num(sc.value) !== null ? Number(sc.value).toFixed(1) : '' },
      },
      h('span', { class: 'srv-name' }, hostName(host),
        host.silent ? h('span', { class: 'badge' }, host.latest ? 'silent' : 'no data yet') : null),
      h('span', { class: 'srv-score', title: 'Load score' }, sc ? Number(sc.value).toFixed(1) : '–'),
      h('span', { class: 'srv-line small' }, metricLine(host)));
    });
    list.replaceChildren(avg, ...items);
    const none = $('servers-empty');
    none.hidden = !state.hostsLoaded || state.hosts.length > 0;
    none.textContent = `No monitored server in ${whereText()}.`;
  }

  function whereText() {
    const parts = [];
    if (state.group) parts.push(`group “${state.group}”`);
    if (state.room) parts.push(`room “${state.room}”`);
    if (!parts.length) return 'any group you may see';
    return parts.join(' and ');
  }

  function selectedHost() {
    return state.hosts.find((x) => x.agent_id === state.host) || state.extraHost || null;
  }

  function viewTitle() {
    if (!state.host) return avgText();
    const host = selectedHost();
    return host ? hostName(host) : state.host;
  }

  function detailText() {
    const parts = [];
    if (isCustom()) parts.push(`${when(state.from)} – ${when(state.to)}`);
    else parts.push(RANGE_NAMES[state.range]);
    if (state.stepMs && state.fields.some(hasPoints)) parts.push(state.stepMs <= 1000 ? 'every point' : `${stepText(state.stepMs)} means`);
    if (state.host) {
      const host = selectedHost();
      if (host && host.group) parts.push(`group ${host.group}`);
      if (host && host.silent) parts.push(host.latest ? 'silent now' : 'no sample yet');
    }
    return parts.join(' · ');
  }

  function renderTitle() {
    $('view-title').textContent = viewTitle();
    zoomHint();
  }

  function renderNotice() {
    const msgs = [];
    if (state.apiNotice) msgs.push(state.apiNotice);
    const meanEmpty = !state.host && state.meanHosts === 0;
    if (meanEmpty) {
      msgs.push(`No monitored server in ${whereText()}: nothing to average. Add servers to it and install the monitor agent on them.`);
    } else if (state.loaded && !state.fields.some(hasPoints)) {
      const what = state.host ? viewTitle() : 'these servers';
      const range = isCustom() ? 'this range' : RANGE_NAMES[state.range];
      msgs.push(`No data for ${what} in ${range} yet${state.host && selectedHost() && !selectedHost().latest ? ': the agent has not sent a sample' : ''}.`);
    }
    const el = $('notice');
    el.textContent = msgs.join(' ');
    el.hidden = msgs.length === 0;
  }

  function portsOfView() {
    const set = new Set();
    const from = state.host ? [selectedHost()].filter(Boolean) : state.hosts;
    for (const host of from) {
      for (const p of (host.latest && host.latest.app && host.latest.app.ports) || []) set.add(Number(p.port));
    }
    return [...set].sort((a, b) => a - b);
  }

  function fieldsOfView() {
    const f = [];
    for (const def of CHARTS) for (const s of def.series) f.push(s.field);
    return f.concat(portSeries(state.ports).map((s) => s.field));
  }

  async function loadHosts() {
    const q = new URLSearchParams();
    if (state.group) q.set('group', state.group);
    if (state.room) q.set('room', state.room);
    const qs = q.toString();
    const hosts = await api('GET', `/api/hosts${qs ? `?${qs}` : ''}`);
    state.hosts = Array.isArray(hosts) ? hosts : [];
    state.hostsLoaded = true;
    // A host asked for by the URL but outside the filter: still named.
    if (state.host && !state.hosts.some((x) => x.agent_id === state.host)) {
      if (!state.extraHost || state.extraHost.agent_id !== state.host) {
        const all = await api('GET', '/api/hosts').catch(() => []);
        state.extraHost = (all || []).find((x) => x.agent_id === state.host) || null;
      }
    } else {
      state.extraHost = null;
    }
    renderServers();
    renderTitle();
  }

  // ---- series ---------------------------------------------------------------------

  function seriesUrl(fields, from, to, maxPoints) {
    const q = new URLSearchParams();
    q.set('fields', fields.join(','));
    q.set('from', String(Math.floor(from)));
    q.set('to', String(Math.ceil(to)));
    q.set('max_points', String(maxPoints));
    if (state.host) return `/api/hosts/${encodeURIComponent(state.host)}/series?${q}`;
    if (state.group) q.set('group', state.group);
    if (state.room) q.set('room', state.room);
    return `/api/series/mean?${q}`;
  }

  // Both answers in one shape: {step_ms, series, from, to, notice, hosts}.
  function normal(r) {
    if (r && r.result) return { ...r.result, from: r.from, to: r.to, notice: r.notice ?? null, hosts: r.hosts };
    return { ...r, hosts: undefined };
  }

  function windowNow() {
    if (isCustom()) return { from: state.from, to: state.to };
    const to = Date.now();
    return { from: to - RANGES[state.range], to };
  }

  // A new view or range: its whole range, once.
  async function loadSeries() {
    const my = ++gen;
    state.loading = true;
    state.zoom = null;
    M.view = state.host ? 'host' : 'mean';
    M.host = state.host;
    $('charts').classList.add('loading');
    status('Loading…');
    state.ports = portsOfView();
    const fields = fieldsOfView();
    const w = windowNow();
    try {
      const r = normal(await api('GET', seriesUrl(fields, w.from, w.to, MAX_POINTS)));
      if (my !== gen) return;
      state.fields = fields;
      state.stepMs = num(r.step_ms) || 1000;
      M.stepMs = state.stepMs;
      state.viewFrom = w.from;
      state.viewTo = w.to;
      state.heldTo = num(r.to) ?? w.to;
      state.apiNotice = r.notice || null;
      if (!state.host) state.meanHosts = num(r.hosts);
      state.data = new Map();
      for (const s of r.series || []) state.data.set(s.field, (s.points || []).slice());
      for (const f of fields) if (!state.data.has(f)) state.data.set(f, []);
      state.loaded = true;
      showError('');
      draw();
      renderServers();
      renderTitle();
      renderNotice();
      status(`updated ${clock(Date.now())}`);
    } catch (e) {
      if (my !== gen) return;
      state.loaded = false;
      state.stepMs = null;
      const what = state.host ? `the charts of ${viewTitle()}` : 'the average';
      showError(`Could not load ${what}: ${e.message}`);
      status('');
    } finally {
      if (my === gen) {
        state.loading = false;
        $('charts').classList.remove('loading');
      }
    }
  }

  // Every REFRESH_MS: only the newest buckets, appended.
  async function refreshSeries() {
    if (state.loading || state.refreshing) return;
    if (!state.loaded) { // the first load failed: try again
      await loadSeries();
      return;
    }
    if (isCustom() && !liveCustom()) return;
    const step = state.stepMs;
    const now = Date.now();
    let last = null;
    for (const col of state.data.values()) {
      if (col.length && (last === null || col[col.length - 1][0] > last)) last = col[col.length - 1][0];
    }
    const from = last ?? Math.floor(state.heldTo / step) * step;
    // Far behind (a sleeping laptop): the range itself is due.
    if (!isCustom() && now - from > RANGES[state.range]) {
      await loadSeries();
      return;
    }
    const k = Math.max(1, Math.ceil((now - from) / step));
    const to = from + k * step;
    const ports = portsOfView();
    if (ports.join(',') !== state.ports.join(',')) {
      state.ports = ports;
      state.fields = fieldsOfView();
    }
    const fields = state.fields;
    const my = gen;
    state.refreshing = true;
    try {
      const r = normal(await api('GET', seriesUrl(fields, from, to, k + 1)));
      if (my !== gen) return;
      const byField = new Map((r.series || []).map((s) => [s.field, s.points || []]));
      const keepFrom = isCustom() ? state.from : now - RANGES[state.range];
      const keepTo = isCustom() ? state.to : Infinity;
      for (const f of fields) {
        const old = state.data.get(f) || [];
        let cut = old.length;
        while (cut > 0 && old[cut - 1][0] >= from) cut -= 1;
        let drop = 0;
        while (drop < cut && old[drop][0] < keepFrom) drop += 1;
        const fresh = (byField.get(f) || []).filter((p) => p[0] >= from && p[0] <= keepTo);
        state.data.set(f, old.slice(drop, cut).concat(fresh));
      }
      state.heldTo = num(r.to) ?? to;
      if (!isCustom()) {
        state.viewFrom = keepFrom;
        state.viewTo = now;
      }
      if (!state.host && num(r.hosts) !== null) state.meanHosts = num(r.hosts);
      showError('');
      draw();
      renderTitle();
      renderNotice();
      M.refreshes += 1;
      M.lastRefreshMs = Date.now();
      status(`updated ${clock(M.lastRefreshMs)}`);
    } catch (e) {
      if (my !== gen) return;
      showError(`Refreshing the charts failed (will retry): ${e.message}`);
    } finally {
      state.refreshing = false;
    }
  }

  async function refreshHosts() {
    try {
      await loadHosts();
    } catch (e) {
      showError(`Refreshing the server list failed (will retry): ${e.message}`);
    }
  }

  // ---- user actions ---------------------------------------------------------------

  async function reloadAll() {
    writeUrl();
    renderServers();
    renderTitle();
    try {
      await loadHosts();
    } catch (e) {
      showError(`The server list could not be loaded: ${e.message}`);
    }
    await loadSeries();
  }

  function selectView(agent) {
    if ((agent || null) === state.host) return;
    state.host = agent || null;
    writeUrl();
    renderServers();
    renderTitle();
    loadSeries();
  }

  $('servers').addEventListener('click', (ev) => {
    const li = ev.target.closest('li');
    if (!li) return;
    selectView(li.id === 'avg' ? null : li.dataset.agent);
  });
  $('servers').addEventListener('keydown', (ev) => {
    if (ev.key !== 'Enter' && ev.key !== ' ') return;
    const li = ev.target.closest('li');
    if (!li) return;
    ev.preventDefault();
    selectView(li.id === 'avg' ? null : li.dataset.agent);
  });

  function onFilter() {
    state.group = $('group').value;
    state.room = $('room').value;
    state.host = null; // another set of servers: back to their average
    state.meanHosts = null;
    reloadAll();
  }
  $('group').addEventListener('change', onFilter);
  $('room').addEventListener('change', onFilter);

  $('range').addEventListener('change', () => {
    const v = $('range').value;
    if (v === 'custom') {
      // Start from what is on screen (the zoom if any); Apply loads it.
      const z = state.zoom;
      const from = z ? z.min * 1000 : (state.viewFrom ?? Date.now() - RANGES['1h']);
      const to = z ? z.max * 1000 : (state.viewTo ?? Date.now());
      $('from').value = toLocalInput(from);
      $('to').value = toLocalInput(to);
      $('custom-range').hidden = false;
      $('from').focus();
      return;
    }
    $('custom-range').hidden = true;
    state.range = v;
    reloadAll();
  });

  $('monitor-filters').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const v = $('range').value;
    state.group = $('group').value;
    state.room = $('room').value;
    if (v === 'custom') {
      // Minutes in the inputs; keep the exact ms of a shared URL when the
      // inputs still show it.
      const fromIn = $('from').value;
      const toIn = $('to').value;
      let from = fromLocalInput(fromIn);
      let to = fromLocalInput(toIn);
      if (isCustom() && fromIn === toLocalInput(state.from)) from = state.from;
      if (isCustom() && toIn === toLocalInput(state.to)) to = state.to;
      if (!Number.isFinite(from) || !Number.isFinite(to)) {
        showError('Enter both the start and the end of the range.');
        return;
      }
      if (to <= from) {
        showError('The end of the range must be after its start.');
        return;
      }
      state.range = 'custom';
      state.from = from;
      state.to = to;
    } else {
      state.range = v;
    }
    showError('');
    reloadAll();
  });

  // ---- start ------------------------------------------------------------------------

  readUrl();
  writeControls();
  if (RETENTION_DAYS > 0) {
    $('from').title = `Data is kept ${RETENTION_DAYS} days at most.`;
  }
  if (!createCharts()) return;
  renderServers();
  renderTitle();
  reloadAll().then(() => {
    let timer = null;
    const tick = async () => {
      await Promise.all([refreshHosts(), refreshSeries()]);
      timer = setTimeout(tick, REFRESH_MS);
    };
    timer = setTimeout(tick, REFRESH_MS);
    document.addEventListener('visibilitychange', () => {
      // Back on the tab: catch up now rather than at the next tick.
      if (document.visibilityState === 'visible') {
        clearTimeout(timer);
        tick();
      }
    });
  });
})();
