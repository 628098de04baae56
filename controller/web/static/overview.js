// The admin's overview: one card per monitored host, the busiest first
// (the API sorts by load score), coloured by score step. Filter by group
// (kept in the URL as ?group=), refreshed every 10 s; a card opens the
// host's charts on the monitoring page.
'use strict';
(() => {
  const root = document.getElementById('overview');
  if (!root) return;
  const PREFIX = document.querySelector('meta[name="prefix"]').content;
  const $ = (id) => document.getElementById(id);
  const REFRESH_MS = 10000;
  const select = $('group-filter');
  const cards = $('cards');
  const empty = $('overview-empty');
  const errorBox = $('overview-error');
  const loading = $('overview-loading');

  const num = (v) => (v === null || v === undefined || !Number.isFinite(Number(v)) ? null : Number(v));
  const clock = (d) => d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
  function ago(ms) {
    if (ms === null || ms === undefined) return '';
    const s = Math.round(ms / 1000);
    if (s < 120) return `${s} s ago`;
    const m = Math.round(s / 60);
    if (m < 120) return `${m} min ago`;
    const hrs = Math.round(m / 60);
    if (hrs < 48) return `${hrs} h ago`;
    return `${Math.round(hrs / 24)} days ago`;
  }

  // ---- one card's lines ---------------------------------------------------------

  function cpuText(s) {
    const c = s && s.cpu;
    if (!c) return 'CPU –';
    return `CPU ${units.pct(c.busy_pct)} (iowait ${units.pct(c.iowait_pct)})`;
  }
  function memText(s, score) {
    const m = s && s.mem;
    if (!m || !m.total_bytes) return 'Mem –';
    const pct = score && num(score.mem_pct) !== null
      ? score.mem_pct
      : 100 * (1 - m.available_bytes / m.total_bytes);
    return `Mem ${units.pct(pct)} · ${units.bytes(m.available_bytes)} free`;
  }
  function ioText(s) {
    const disks = (s && s.disks) || [];
    if (!disks.length) return 'IO –';
    let util = 0; let r = 0; let w = 0;
    for (const d of disks) {
      util = Math.max(util, num(d.util_pct) ?? 0);
      r += num(d.read_bps) ?? 0;
      w += num(d.write_bps) ?? 0;
    }
    return `IO ${units.pct(util)} · R ${units.rate(r)} W ${units.rate(w)}`;
  }
  function netText(s) {
    const nets = (s && s.nets) || [];
    let util = null; let rx = 0; let tx = 0;
    for (const n of nets) {
      if (num(n.util_pct) !== null) util = Math.max(util ?? 0, n.util_pct);
      rx += num(n.rx_bps) ?? 0;
      tx += num(n.tx_bps) ?? 0;
    }
    const head = util === null ? 'Net – %' : `Net ${units.pct(util)}`;
    return nets.length ? `${head} · ↓ ${units.rate(rx)} ↑ ${units.rate(tx)}` : head;
  }
  // The controller keeps the last filesystems seen in `latest`: they are
  // sampled every few minutes only.
  function diskText(s) {
    const fss = (s && s.filesystems) || [];
    let best = null;
    for (const f of fss) {
      if (!f.total_bytes) continue;
      const pct = (100 * f.used_bytes) / f.total_bytes;
      if (!best || pct > best.pct) best = { pct, mount: f.mount, f };
    }
    if (!best) return ['Disk –', 'No filesystem figures yet (they come every few minutes).'];
    return [`Disk ${units.pct(best.pct)} (${best.mount})`,
      `${best.mount}: ${units.bytes(best.f.used_bytes)} used of ${units.bytes(best.f.total_bytes)}, ${units.bytes(best.f.avail_bytes)} available`];
  }
  function tcpText(s) {
    const t = s && s.tcp;
    if (!t) return 'TCP –';
    return `TCP ${units.count(t.established)} · retrans ${units.perSec(t.retrans_segs_per_s)}`;
  }

  function card(host) {
    const s = host.latest;
    const score = host.score;
    const name = host.hostname || host.server_name || host.agent_id;
    const classes = ['card', 'host-card'];
    if (score && num(score.step) !== null) classes.push(`score-${Math.max(0, Math.min(10, Math.round(score.step)))}`);
    if (host.silent) classes.push('silent');
    const noData = host.age_ms === null || host.age_ms === undefined || !s;
    let badge = null;
    if (noData) badge = h('span', { class: 'badge', title: host.connected ? 'The agent is connected but has sent no sample yet.' : 'The agent never sent a sample.' }, 'no data yet');
    else if (host.silent) {
      badge = h('span', { class: 'badge', title: host.connected ? 'Connected, but the newest sample is older than 30 s.' : 'The agent is not connected.' },
        host.connected ? 'silent' : 'silent · offline');
    }
    const [disk, diskTitle] = diskText(s);
    const tags = [host.group, host.room].filter(Boolean);
    return h('article', {
      class: classes.join(' '),
      dataset: { agent: host.agent_id, score: score && num(score.value) !== null ? Number(score.value).toFixed(1) : '' },
    },
    h('header', { class: 'card-head' },
      h('a', { class: 'name', href: `${PREFIX}/monitor?host=${encodeURIComponent(host.agent_id)}`, title: host.agent_id }, name),
      badge,
      h('span', { class: 'score-value', title: score ? `Load score: CPU ${units.pct(score.cpu_pct)}, IO ${units.pct(score.io_pct)}, net ${units.pct(score.net_pct)}` : 'No score without a sample' },
        score ? Number(score.value).toFixed(1) : '–')),
    h('div', { class: 'card-tags small muted' },
      tags.length ? tags.map((t) => h('span', { class: 'tag' }, t)) : h('span', {}, 'no group'),
      s && host.age_ms !== null && host.age_ms !== undefined ? h('span', { class: 'age' }, ago(host.age_ms)) : null),
    h('ul', { class: 'metrics' },
      h('li', { class: 'm-cpu' }, cpuText(s)),
      h('li', { class: 'm-mem' }, memText(s, score)),
      h('li', { class: 'm-io' }, ioText(s)),
      h('li', { class: 'm-net' }, netText(s)),
      h('li', { class: 'm-disk', title: diskTitle }, disk),
      h('li', { class: 'm-tcp' }, tcpText(s))));
  }

  // ---- loading --------------------------------------------------------------------

  let gen = 0;
  async function load() {
    const my = ++gen;
    const group = select.value;
    const q = group ? `?group=${encodeURIComponent(group)}` : '';
    try {
      const hosts = await api('GET', `/api/hosts${q}`);
      if (my !== gen) return;
      errorBox.hidden = true;
      const list = Array.isArray(hosts) ? hosts : [];
      cards.replaceChildren(...list.map(card));
      if (!list.length) {
        empty.textContent = group
          ? `No monitored server in the group “${group}”: add servers to the group and install the monitor agent on them (Install agents).`
          : 'No monitored server yet: install the monitor agent on a server (Install agents) and it appears here with its first sample.';
      }
      empty.hidden = list.length > 0;
      $('updated').textContent = `updated ${clock(new Date())}`;
    } catch (e) {
      if (my !== gen) return;
      errorBox.textContent = `The servers could not be loaded: ${e.message}`;
      errorBox.hidden = false;
    } finally {
      if (my === gen) loading.hidden = true;
    }
  }

  // The filter lives in the URL so the view can be shared or reloaded.
  const initial = new URLSearchParams(location.search).get('group');
  if (initial && [...select.options].some((o) => o.value === initial)) select.value = initial;
  select.addEventListener('change', () => {
    const u = new URL(location.href);
    if (select.value) u.searchParams.set('group', select.value);
    else u.searchParams.delete('group');
    history.replaceState(null, '', u);
    cards.setAttribute('aria-busy', 'true');
    load().finally(() => cards.removeAttribute('aria-busy'));
  });

  let timer = null;
  const schedule = () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      await load();
      schedule();
    }, REFRESH_MS);
  };
  load().then(schedule);
})();
