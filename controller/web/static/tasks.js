// The task list: every scheduled, running and finished load test with its
// whole-run figures once over. Refreshes itself every 5 s while any task
// is active; a finished task can be deleted with its files.
'use strict';
(() => {
  const table = document.getElementById('tasks');
  if (!table) return;
  const PREFIX = document.querySelector('meta[name="prefix"]').content;
  const body = table.querySelector('tbody');
  const errorBox = document.getElementById('tasks-error');
  const updated = document.getElementById('tasks-updated');
  const REFRESH_MS = 5000;
  const ACTIVE = new Set(['scheduled', 'starting', 'running', 'stopping']);

  const call = api;


  const localTime = (unix) => (unix ? new Date(unix * 1000).toLocaleString() : '');
  const round = (n, digits = 1) => {
    if (n === null || n === undefined || !Number.isFinite(Number(n))) return '';
    const f = 10 ** digits;
    return String(Math.round(Number(n) * f) / f);
  };
  function duration(secs) {
    if (secs === null || secs === undefined || secs < 0) return '';
    const s = Math.round(secs);
    if (s < 60) return `${s} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min ${s % 60} s`;
    return `${Math.floor(m / 60)} h ${m % 60} min`;
  }
  function load(t) {
    if (t.settings.load.type === 'tps') return `${round(t.target, 2)} TPS`;
    return `${round(t.target, 0)} threads`;
  }

  function row(t) {
    const active = ACTIVE.has(t.status);
    const now = Date.now() / 1000;
    const ran = t.started_at ? (t.ended_at || (active ? now : t.started_at)) - t.started_at : null;
    const cells = [
      h('td', { class: 'num' }, h('a', { href: `${PREFIX}/tasks/${t.id}`, dataset: { taskLink: String(t.id) } }, String(t.id))),
      h('td', {}, t.plan_name, t.settings.debug ? h('span', { class: 'tag small' }, 'debug') : null),
      h('td', {}, h('span', { class: `task-status status-${t.status}`, dataset: { status: t.status } }, t.status)),
      h('td', { class: 'small' }, t.created_by),
      h('td', { class: 'small' }, t.started_at ? localTime(t.started_at)
        : (t.status === 'scheduled' && t.settings.schedule.steps?.length
          ? `scheduled for ${localTime(t.settings.schedule.steps[0].at)}` : '')),
      h('td', { class: 'num' }, duration(ran), h('span', { class: 'muted small' }, ` / ${duration(t.settings.duration_secs)}`)),
      h('td', {}, load(t), h('span', { class: 'muted small' }, ` on ${t.settings.generators}`)),
    ];
    const tot = t.totals;
    if (t.status === 'failed' && t.error && !(tot && tot.samples)) {
      cells.push(h('td', { colspan: 6, class: 'error small', dataset: { taskError: '' } }, t.error));
    } else if (tot) {
      cells.push(
        h('td', { class: 'num', dataset: { totalSamples: '' } }, String(tot.samples)),
        h('td', { class: 'num' }, round(tot.tps, 2)),
        h('td', { class: 'num' }, round(tot.mean_ms, 1)),
        h('td', { class: 'num' }, String(tot.p90_ms)),
        h('td', { class: 'num' }, String(tot.p99_ms)),
        h('td', { class: `num${tot.errors ? ' error' : ''}` }, `${round(tot.error_pct, 2)} %`,
          h('span', { class: 'muted small' }, ` (${tot.errors})`)));
    } else {
      cells.push(h('td', { colspan: 6, class: 'muted small' }, active ? 'running — open the task to follow it' : (t.error || '')));
    }
    cells.push(h('td', { class: 'actions' },
      h('a', { class: 'button small', href: `${PREFIX}/tasks/${t.id}` }, 'Open'),
      active ? null : h('button', {
        type: 'button', class: 'small danger', dataset: { taskDelete: String(t.id) },
      }, 'Delete')));
    return h('tr', { dataset: { taskId: String(t.id), status: t.status } }, cells);
  }

  let timer = null;
  async function refresh() {
    clearTimeout(timer);
    let tasks;
    try {
      tasks = await call('GET', '/api/tasks');
      errorBox.hidden = true;
    } catch (e) {
      errorBox.textContent = `Cannot load the tasks: ${e.message}`;
      errorBox.hidden = false;
      timer = setTimeout(refresh, REFRESH_MS);
      return;
    }
    if (!tasks.length) {
      body.replaceChildren(h('tr', {}, h('td', { colspan: 14, class: 'empty' }, 'No tasks yet: run a plan from the load-test plans.')));
    } else {
      body.replaceChildren(...tasks.map(row));
    }
    updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
    document.body.dataset.ready = '1';
    if (tasks.some((t) => ACTIVE.has(t.status))) timer = setTimeout(refresh, REFRESH_MS);
  }

  table.addEventListener('click', async (ev) => {
    const b = ev.target.closest('button[data-task-delete]');
    if (!b) return;
    const id = b.dataset.taskDelete;
    if (!confirm(`Delete task ${id} with its results and files?`)) return;
    b.disabled = true;
    try {
      await call('DELETE', `/api/tasks/${id}`);
      await refresh();
    } catch (e) {
      errorBox.textContent = `Task ${id} was not deleted: ${e.message}`;
      errorBox.hidden = false;
      b.disabled = false;
    }
  });

  refresh();
})();
