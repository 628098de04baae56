// The plan editor: JMeter's tree (Test Plan -> Thread Group -> Controller
// -> HTTP Request, plus variables, header sets and data files) on the
// left, the selected element's form on the right. The whole plan is one
// JSON document saved with PUT over the revision it was loaded at; the
// controller checks it whole and answers every problem with its field,
// which is marked here and listed with a link to its element.
'use strict';
(() => {
  const PREFIX = document.querySelector('meta[name="prefix"]').content;
  const csrf = () => document.querySelector('meta[name="csrf-token"]').content;
  const ctx = JSON.parse(document.getElementById('plan-context').textContent);
  const tree = document.getElementById('plan-tree');
  const pane = document.getElementById('plan-pane');
  const problemsBox = document.getElementById('plan-problems');
  const dirtyTag = document.getElementById('plan-dirty');
  const upload = ctx.kind === 'upload';

  const state = { revision: 0, plan: null, files: [], selected: 'plan', problems: [], dirty: false };

  async function call(method, path, body) {
    const init = { method, credentials: 'same-origin', headers: { 'X-CSRF-Token': csrf() } };
    if (body instanceof FormData) init.body = body;
    else if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const r = await fetch(PREFIX + path, init);
    if (r.status === 401) {
      location.href = `${PREFIX}/login?expired=1`;
      throw new Error('session expired');
    }
    const data = await r.json().catch(() => ({}));
    return { status: r.status, ok: r.ok, data };
  }

  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (v === true) el.setAttribute(k, '');
      else el.setAttribute(k, v);
    }
    for (const kid of kids.flat()) {
      if (kid === null || kid === undefined || kid === false) continue;
      el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return el;
  }

  // ---- the tree's nodes ---------------------------------------------------

  // Node ids: plan, vars, hsets, hset/i, files, tg/i, ctl/i/j, smp/i/j/k.
  const parts = (id) => id.split('/').slice(1).map(Number);
  function nodeObject(id) {
    const p = state.plan;
    const [i, j, k] = parts(id);
    switch (id.split('/')[0]) {
      case 'plan': return p;
      case 'hset': return p.header_sets[i];
      case 'tg': return p.thread_groups[i];
      case 'ctl': return p.thread_groups[i]?.controllers[j];
      case 'smp': return p.thread_groups[i]?.controllers[j]?.samplers[k];
      default: return p;
    }
  }
  function fieldPrefix(id) {
    const [i, j, k] = parts(id);
    switch (id.split('/')[0]) {
      case 'hset': return `header_sets[${i}]`;
      case 'tg': return `thread_groups[${i}]`;
      case 'ctl': return `thread_groups[${i}].controllers[${j}]`;
      case 'smp': return `thread_groups[${i}].controllers[${j}].samplers[${k}]`;
      case 'vars': return 'variables';
      default: return '';
    }
  }
  function nodeOfField(field) {
    let m = field.match(/^thread_groups\[(\d+)\]\.controllers\[(\d+)\]\.samplers\[(\d+)\]/);
    if (m) return `smp/${m[1]}/${m[2]}/${m[3]}`;
    m = field.match(/^thread_groups\[(\d+)\]\.controllers\[(\d+)\]/);
    if (m) return `ctl/${m[1]}/${m[2]}`;
    m = field.match(/^thread_groups\[(\d+)\]/);
    if (m) return `tg/${m[1]}`;
    m = field.match(/^header_sets\[(\d+)\]/);
    if (m) return `hset/${m[1]}`;
    if (field.startsWith('variables')) return 'vars';
    if (field === 'file') return 'files';
    return 'plan';
  }
  const problemsOf = (id) => state.problems.filter((p) => {
    const n = nodeOfField(p.field);
    return n === id || n.startsWith(`${id}/`) || (id.startsWith('tg/') && n.startsWith(`ctl/${id.slice(3)}/`))
      || (id.startsWith('tg/') && n.startsWith(`smp/${id.slice(3)}/`))
      || (id.startsWith('ctl/') && n.startsWith(`smp/${id.slice(4)}/`));
  });

  function renderTree() {
    const p = state.plan;
    const node = (id, kind, label, off, kids) => h('li', {},
      h('button', {
        type: 'button',
        class: ['node', state.selected === id && 'selected', off && 'off', problemsOf(id).length && 'bad'].filter(Boolean).join(' '),
        dataset: { node: id },
        onclick: () => select(id),
      }, h('span', { class: 'kind' }, kind), label || '(unnamed)'),
      kids && kids.length ? h('ul', {}, kids) : null);
    const groups = upload ? [] : p.thread_groups.map((g, i) => node(`tg/${i}`, 'thread group', g.name, !g.enabled,
      g.controllers.map((c, j) => node(`ctl/${i}/${j}`, 'controller', c.name, !c.enabled,
        c.samplers.map((s, k) => node(`smp/${i}/${j}/${k}`, s.method, s.name, !s.enabled))))));
    const extras = upload ? [] : [
      node('vars', 'variables', `${p.variables.length} defined`),
      node('hsets', 'headers', 'Header sets', false, p.header_sets.map((s, i) => node(`hset/${i}`, 'set', s.name))),
      node('files', 'files', `${state.files.length} data file${state.files.length === 1 ? '' : 's'}`),
    ];
    tree.replaceChildren(h('ul', {}, node('plan', upload ? 'JMeter zip' : 'test plan', p.name, !p.enabled, [...extras, ...groups])));
  }

  function select(id) {
    state.selected = id;
    renderTree();
    renderPane();
  }

  function changed() {
    state.dirty = true;
    dirtyTag.hidden = false;
    renderTree();
  }

  // ---- form fields ----------------------------------------------------------

  // A labelled input bound to obj[key]; `field` is its path in problems.
  function field(label, input, help, fieldPath) {
    const own = state.problems.filter((p) => p.field === fieldPath);
    if (own.length) input.setAttribute('aria-invalid', 'true');
    if (fieldPath) input.dataset.field = fieldPath;
    return h('label', { class: 'field' }, h('span', {}, label), input,
      help ? h('span', { class: 'help' }, help) : null,
      own.map((p) => h('span', { class: 'field-error' }, p.message)));
  }
  function text(obj, key, attrs = {}, onChange) {
    return h('input', {
      value: obj[key] ?? '', ...attrs,
      oninput: (e) => { obj[key] = e.target.value; changed(); onChange?.(); },
    });
  }
  function area(obj, key, attrs = {}) {
    const t = h('textarea', { ...attrs, oninput: (e) => { obj[key] = e.target.value; changed(); } });
    t.value = obj[key] ?? '';
    return t;
  }
  function num(obj, key, attrs = {}, float, onChange) {
    return h('input', {
      type: 'number', value: obj[key] ?? '', min: 0, step: float ? 'any' : 1, ...attrs,
      oninput: (e) => {
        const v = e.target.value.trim();
        obj[key] = v === '' ? 0 : (float ? Number(v) : Math.trunc(Number(v)));
        changed();
        onChange?.();
      },
    });
  }
  function check(obj, key, label, help, fieldPath) {
    const box = h('input', { type: 'checkbox', checked: !!obj[key], onchange: (e) => { obj[key] = e.target.checked; changed(); } });
    return field(label, box, help, fieldPath);
  }
  function choice(obj, key, options, onChange) {
    const s = h('select', {
      onchange: (e) => { obj[key] = e.target.value; changed(); onChange?.(); },
    }, options.map(([v, l]) => h('option', { value: v, selected: obj[key] === v }, l)));
    return s;
  }
  // Name/value rows (variables, headers, form fields).
  function pairs(list, fieldPath, nameLabel = 'Name', valueLabel = 'Value') {
    const body = h('tbody');
    const draw = () => {
      body.replaceChildren(...list.map((row, i) => h('tr', {},
        h('td', {}, (() => { const t = text(row, 'name', { placeholder: nameLabel, 'aria-label': nameLabel }); markInvalid(t, `${fieldPath}[${i}].name`); return t; })()),
        h('td', {}, text(row, 'value', { placeholder: valueLabel, 'aria-label': valueLabel, size: 40 })),
        h('td', {}, h('button', { type: 'button', class: 'small danger', onclick: () => { list.splice(i, 1); changed(); draw(); } }, 'Remove')))));
    };
    draw();
    return h('div', {}, h('table', { class: 'rows' }, body),
      h('button', { type: 'button', class: 'small', onclick: () => { list.push({ name: '', value: '' }); changed(); draw(); } }, 'Add'));
  }
  function markInvalid(input, fieldPath) {
    input.dataset.field = fieldPath;
    const own = state.problems.filter((p) => p.field === fieldPath);
    if (own.length) {
      input.setAttribute('aria-invalid', 'true');
      input.title = own.map((p) => p.message).join('; ');
    }
  }

  // Tools on an element of a list: move, copy, delete.
  function tools(list, index, kindLabel, idOf, extra = []) {
    const move = (d) => {
      const j = index + d;
      if (j < 0 || j >= list.length) return;
      [list[index], list[j]] = [list[j], list[index]];
      changed();
      select(idOf(j));
    };
    return h('div', { class: 'tools' },
      extra,
      h('button', { type: 'button', class: 'small', onclick: () => move(-1), disabled: index === 0 }, 'Move up'),
      h('button', { type: 'button', class: 'small', onclick: () => move(1), disabled: index === list.length - 1 }, 'Move down'),
      h('button', {
        type: 'button', class: 'small', id: 'node-copy',
        onclick: () => {
          const copy = structuredClone(list[index]);
          const names = new Set(list.map((x) => x.name));
          let name = `${copy.name} (copy)`;
          for (let n = 2; names.has(name); n++) name = `${copy.name} (copy ${n})`;
          copy.name = name;
          list.splice(index + 1, 0, copy);
          changed();
          select(idOf(index + 1));
        },
      }, `Copy ${kindLabel}`),
      h('button', {
        type: 'button', class: 'small danger', id: 'node-delete',
        onclick: () => {
          if (!confirm(`Delete ${kindLabel} ${list[index].name}?`)) return;
          list.splice(index, 1);
          changed();
          select(list.length ? idOf(Math.min(index, list.length - 1)) : 'plan');
        },
      }, `Delete ${kindLabel}`));
  }

  // ---- panes ----------------------------------------------------------------

  function renderPane() {
    const id = state.selected;
    const kind = id.split('/')[0];
    if (!nodeObject(id) && !['vars', 'hsets', 'files'].includes(kind)) state.selected = 'plan';
    const render = { plan: planPane, vars: varsPane, hsets: hsetsPane, hset: hsetPane, files: filesPane, tg: groupPane, ctl: controllerPane, smp: samplerPane }[state.selected.split('/')[0]];
    pane.replaceChildren(...render(state.selected));
  }

  function planPane() {
    const p = state.plan;
    const run = p.run;
    const l = ctx.limits;
    const loadValue = h('span');
    const drawLoad = () => {
      loadValue.replaceChildren(run.load.type === 'tps'
        ? field('Target TPS', num(run.load, 'tps', { id: 'plan-tps', step: 'any' }, true, drawCurve), `Samples per second of the whole plan, all generators together (at most ${l.max_tps}). Threads are sized for it.`, 'run.load.tps')
        : field('Threads', num(run.load, 'threads', { id: 'plan-threads' }, false, drawCurve), `Threads of every enabled thread group, all generators together (at most ${l.max_threads}).`, 'run.load.threads'));
    };
    const loadType = choice(run.load, 'type', [['tps', 'by target TPS'], ['threads', 'by thread count']], () => {
      run.load = run.load.type === 'tps' ? { type: 'tps', tps: run.load.threads || 10 } : { type: 'threads', threads: Math.max(1, Math.round(run.load.tps || 1)) };
      drawLoad();
      drawCurve();
    });
    loadType.id = 'plan-load-type';
    drawLoad();
    const rooms = h('select', {
      id: 'plan-room',
      onchange: (e) => { run.room_id = e.target.value ? Number(e.target.value) : null; changed(); },
    }, h('option', { value: '' }, '(choose)'), ctx.rooms.map((r) => h('option', { value: r.id, selected: run.room_id === r.id },
      `${r.name} — ${r.generators.connected} of ${r.generators.installed} generators connected`)));
    const schedule = h('div');
    const curve = h('div', { class: 'curve', id: 'plan-curve' });
    function drawSchedule() {
      const auto = run.schedule.type === 'automatic';
      const mode = h('select', {
        id: 'plan-schedule',
        onchange: (e) => {
          run.schedule = e.target.value === 'automatic'
            ? { type: 'automatic', steps: [{ at: Math.ceil(Date.now() / 1000 / 60) * 60 + 600, percent: 100 }] }
            : { type: 'manual' };
          changed(); drawSchedule(); drawCurve();
        },
      }, h('option', { value: 'manual', selected: !auto }, 'manual (start and stop by hand)'),
      h('option', { value: 'automatic', selected: auto }, 'automatic (start, change the rate and stop on time)'));
      const kids = [field('Schedule', mode, 'Automatic: the first step starts the run, each step sets the rate as a % of the target, and the run stops after its duration.', 'run.schedule')];
      if (auto) {
        const steps = run.schedule.steps;
        const rows = steps.map((s, i) => {
          const at = h('input', {
            type: 'datetime-local', step: 1, value: localInput(s.at), 'aria-label': `Step ${i + 1} time`,
            oninput: (e) => { const t = Date.parse(e.target.value); if (!Number.isNaN(t)) { s.at = Math.round(t / 1000); changed(); drawCurve(); } },
          });
          markInvalid(at, `run.schedule.steps[${i}].at`);
          const pct = num(s, 'percent', { 'aria-label': `Step ${i + 1} percent`, max: 1000 }, false, drawCurve);
          markInvalid(pct, `run.schedule.steps[${i}].percent`);
          return h('tr', {}, h('td', {}, i === 0 ? 'start' : `step ${i + 1}`), h('td', {}, at), h('td', {}, pct, ' %'),
            h('td', {}, i > 0 ? h('button', { type: 'button', class: 'small danger', onclick: () => { steps.splice(i, 1); changed(); drawSchedule(); drawCurve(); } }, 'Remove') : null));
        });
        kids.push(h('table', { class: 'rows', id: 'plan-steps' }, h('tbody', {}, rows)),
          h('button', {
            type: 'button', class: 'small', id: 'plan-step-add',
            onclick: () => {
              // Halfway between the last step and the end of the run.
              const last = steps[steps.length - 1];
              const end = steps[0].at + run.duration_secs;
              steps.push({ at: Math.max(last.at + 1, Math.min(last.at + 60, Math.floor((last.at + end) / 2))), percent: 50 });
              changed(); drawSchedule(); drawCurve();
            },
          }, 'Add step'));
        state.problems.filter((p) => p.field === 'run.schedule.steps').forEach((p) => kids.push(h('p', { class: 'error' }, p.message)));
      }
      schedule.replaceChildren(...kids);
    }
    drawSchedule();
    setTimeout(drawCurve, 0);
    function drawCurve() {
      curve.replaceChildren();
      if (!window.uPlot) return;
      const target = run.load.type === 'tps' ? run.load.tps : run.load.threads;
      const auto = run.schedule.type === 'automatic' && run.schedule.steps.length;
      const xs = [];
      const ys = [];
      if (auto) {
        const steps = run.schedule.steps;
        const end = steps[0].at + run.duration_secs;
        steps.forEach((s, i) => {
          const until = Math.min(i + 1 < steps.length ? steps[i + 1].at : end, end);
          xs.push(s.at, until);
          ys.push(target * s.percent / 100, target * s.percent / 100);
        });
        xs.push(end);
        ys.push(0);
      } else {
        xs.push(0, run.duration_secs, run.duration_secs);
        ys.push(target, target, 0);
      }
      const width = Math.max(320, pane.clientWidth - 40);
      // eslint-disable-next-line no-new
      new uPlot({
        width, height: 180,
        scales: { x: { time: !!auto } },
        axes: [{ label: auto ? '' : 'seconds from start' }, { label: run.load.type === 'tps' ? 'TPS' : 'threads' }],
        series: [{}, { label: run.load.type === 'tps' ? 'TPS' : 'threads', stroke: '#2f6fde', fill: 'rgba(47,111,222,.12)' }],
        legend: { show: false },
      }, [xs, ys], curve);
    }
    const runFiles = h('div', { id: 'run-files' });
    const kids = [
      h('h2', {}, upload ? 'Uploaded JMeter zip' : 'Test plan'),
      upload && state.bundle ? h('div', { class: 'bundle', id: 'plan-bundle' },
        h('p', {}, 'Runs ', h('code', {}, state.bundle.jmx), ` unchanged except for the rate, threads and duration set below (${state.bundle.bytes} bytes, SHA-256 `, h('code', { class: 'small' }, state.bundle.sha256.slice(0, 16)), '…). ',
          h('a', { href: `${PREFIX}/api/plans/${ctx.id}/bundle` }, 'Download the zip')),
        state.bundle.files.length ? h('ul', { class: 'small' }, state.bundle.files.map(([n, size]) => h('li', {}, h('code', {}, n), ` ${size} bytes`))) : null) : null,
      field('Name', text(p, 'name', { id: 'plan-name', maxlength: 200 }, () => { document.getElementById('plan-title').textContent = p.name; }), null, 'name'),
      field('Comment', area(p, 'comment', { id: 'plan-comment' }), null, 'comment'),
      check(p, 'enabled', 'Enabled', 'A disabled plan cannot be run.', 'enabled'),
    ];
    if (!upload) {
      kids.push(
        check(p, 'teardown_on_shutdown', 'tearDown after shutdown', 'Run tearDown thread groups after the main threads are shut down.', 'teardown_on_shutdown'),
        check(p, 'serialize_thread_groups', 'Thread groups one after another', 'Run thread groups consecutively instead of all at once.', 'serialize_thread_groups'));
    }
    kids.push(
      h('h3', {}, 'Run'),
      field('Run type', loadType, 'By target TPS: the platform holds the rate with a shared Constant Throughput Timer. By thread count: the threads run as fast as they can.', 'run.load'),
      loadValue,
      field('Duration (s)', num(run, 'duration_secs', { id: 'plan-duration', min: 1 }, false, drawCurve), `Seconds the load runs, ramp-up included (at most ${l.max_duration_secs}).`, 'run.duration_secs'),
      field('Room', rooms, 'The room whose load generators run the plan; put them in the room of the system under test.', 'run.room_id'),
      field('Generators', num(run, 'generators', { id: 'plan-generators', min: 1 }), `How many of the room's load generators take part; the rate is split between them (at most ${l.max_generators}, ~1000 TPS each is a sane ceiling).`, 'run.generators'),
      check(run, 'debug', 'Debug', 'Keep a JTL of every request (downloadable), not only per-second summaries.', 'run.debug'),
      schedule,
      h('h3', {}, 'Load curve'),
      curve,
      h('h3', {}, 'Run files'),
      h('p', { class: 'muted small' }, 'What a run executes: the .jmx prepared for the run settings (saved ones) and every file it reads, in one zip.'),
      h('div', { class: 'tools' },
        h('button', { type: 'button', class: 'small', id: 'run-files-check', onclick: checkRunFiles }, 'Check run files'),
        h('a', { class: 'button small', id: 'run-files-download', href: `${PREFIX}/api/plans/${ctx.id}/run-files` }, 'Download run files')),
      runFiles);
    async function checkRunFiles() {
      const r = await call('POST', `/api/plans/${ctx.id}/prepare`);
      if (!r.ok) {
        runFiles.replaceChildren(h('p', { class: 'error' }, r.data.error || `failed (${r.status})`));
        return;
      }
      const v = r.data;
      runFiles.replaceChildren(
        h('p', {}, `${v.size} bytes, SHA-256 `, h('code', { class: 'small' }, v.sha256)),
        h('p', { class: 'small' }, 'JMeter properties per generator:'),
        h('ol', { class: 'small mono', id: 'run-files-properties' }, v.properties.map((args) => h('li', {}, args.join(' ')))),
        v.notes.length ? h('ul', { class: 'small', id: 'run-files-notes' }, v.notes.map((n) => h('li', {}, `${n.path}: ${n.message}`))) : h('p', { class: 'small muted' }, 'Nothing else in the file affects the load.'));
    }
    if (!upload) {
      kids.push(h('div', { class: 'tools' }, h('button', {
        type: 'button', id: 'add-thread-group',
        onclick: () => {
          p.thread_groups.push({ name: `Thread group ${p.thread_groups.length + 1}`, comment: '', ramp_up_secs: 0, csv_data_sets: [], cookies: true, clear_cookies_each_iteration: false, enabled: true, controllers: [] });
          changed();
          select(`tg/${p.thread_groups.length - 1}`);
        },
      }, 'Add thread group')));
    }
    return kids;
  }

  function localInput(unix) {
    const d = new Date(unix * 1000);
    const pad = (n) => String(n).padStart(2, '0');
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function varsPane() {
    return [h('h2', {}, 'User-defined variables'),
      h('p', { class: 'muted' }, 'Use them anywhere as ${name}.'),
      pairs(state.plan.variables, 'variables')];
  }

  function hsetsPane() {
    const p = state.plan;
    return [h('h2', {}, 'Header sets'),
      h('p', { class: 'muted' }, 'Named sets of HTTP headers; each HTTP request may use one.'),
      h('ul', {}, p.header_sets.map((s, i) => h('li', {}, h('a', { href: '#', onclick: (e) => { e.preventDefault(); select(`hset/${i}`); } }, s.name || '(unnamed)'), ` — ${s.headers.length} header(s)`))),
      h('button', {
        type: 'button', id: 'add-header-set',
        onclick: () => { p.header_sets.push({ name: `Headers ${p.header_sets.length + 1}`, headers: [{ name: 'Content-Type', value: 'application/json' }] }); changed(); select(`hset/${p.header_sets.length - 1}`); },
      }, 'Add header set')];
  }

  function hsetPane(id) {
    const [i] = parts(id);
    const set = state.plan.header_sets[i];
    const pre = fieldPrefix(id);
    const oldName = set.name;
    return [h('h2', {}, 'Header set'),
      field('Name', text(set, 'name', { id: 'hset-name' }, () => renameHeaderSet(oldName, set)), 'Requests refer to the set by name.', `${pre}.name`),
      pairs(set.headers, `${pre}.headers`, 'Header', 'Value'),
      tools(state.plan.header_sets, i, 'header set', (j) => `hset/${j}`)];
  }

  // Samplers follow a renamed header set.
  function renameHeaderSet(oldName, set) {
    for (const g of state.plan.thread_groups) {
      for (const c of g.controllers) {
        for (const s of c.samplers) if (s.header_set === oldName) s.header_set = set.name;
      }
    }
  }

  function filesPane() {
    const input = h('input', { type: 'file', id: 'file-input', multiple: true });
    const err = h('p', { class: 'error', role: 'alert', hidden: true });
    const send = h('button', {
      type: 'button', id: 'file-upload',
      onclick: async () => {
        err.hidden = true;
        for (const f of input.files) {
          const data = new FormData();
          data.append('file', f, f.name);
          const r = await call('POST', `/api/plans/${ctx.id}/files`, data);
          if (!r.ok) { err.textContent = r.data.error || `upload failed (${r.status})`; err.hidden = false; return; }
        }
        await reloadFiles();
        renderTree();
        renderPane();
      },
    }, 'Upload');
    return [h('h2', {}, 'Data files'),
      h('p', { class: 'muted' }, `CSV files the thread groups' CSV data sets read (at most ${ctx.limits.max_data_file_mib} MiB each). A file is checked against every data set that uses it.`),
      h('table', { class: 'grid', id: 'file-list' }, h('tbody', {}, state.files.length ? state.files.map((f) => h('tr', {},
        h('td', { class: 'mono' }, h('a', { href: `${PREFIX}/api/plans/${ctx.id}/files/${encodeURIComponent(f.name)}` }, f.name)),
        h('td', { class: 'num' }, `${f.bytes} bytes`),
        h('td', {}, h('button', {
          type: 'button', class: 'small danger',
          onclick: async () => {
            const r = await call('DELETE', `/api/plans/${ctx.id}/files/${encodeURIComponent(f.name)}`);
            if (!r.ok) { err.textContent = r.data.error; err.hidden = false; return; }
            await reloadFiles(); renderTree(); renderPane();
          },
        }, 'Delete')))) : [h('tr', {}, h('td', { class: 'empty' }, 'No data files yet.'))])),
      err, h('div', { class: 'tools' }, input, send)];
  }

  async function reloadFiles() {
    const r = await call('GET', `/api/plans/${ctx.id}`);
    if (r.ok) state.files = r.data.files;
  }

  function groupPane(id) {
    const [i] = parts(id);
    const g = state.plan.thread_groups[i];
    const pre = fieldPrefix(id);
    const sets = h('div');
    const drawSets = () => {
      sets.replaceChildren(...g.csv_data_sets.map((d, n) => {
        const at = `${pre}.csv_data_sets[${n}]`;
        const file = h('select', { 'aria-label': 'File', onchange: (e) => { d.file = e.target.value; changed(); } },
          h('option', { value: '' }, '(upload a file under Data files)'),
          state.files.map((f) => h('option', { value: f.name, selected: d.file === f.name }, f.name)),
          d.file && !state.files.some((f) => f.name === d.file) ? h('option', { value: d.file, selected: true }, `${d.file} (not uploaded)`) : null);
        const names = h('input', {
          value: d.variable_names.join(','), 'aria-label': 'Variable names', placeholder: 'user,password',
          oninput: (e) => { d.variable_names = e.target.value.split(',').map((s) => s.trim()).filter(Boolean); changed(); },
        });
        markInvalid(names, `${at}.variable_names`);
        return h('fieldset', { class: 'csv-data-set' }, h('legend', {}, `CSV data set ${n + 1}`),
          field('File', file, null, `${at}.file`),
          field('Variable names', names, 'Comma-separated, in column order; empty with "first line names the columns".', `${at}.variable_names`),
          field('Delimiter', text(d, 'delimiter', { size: 3, 'aria-label': 'Delimiter' }), 'One character; \\t for a tab.', `${at}.delimiter`),
          check(d, 'ignore_first_line', 'First line names the columns', null, `${at}.ignore_first_line`),
          check(d, 'recycle_on_eof', 'Recycle on EOF', 'Start again from the top at the end of the file.', `${at}.recycle_on_eof`),
          check(d, 'stop_thread_on_eof', 'Stop thread on EOF', 'Each thread stops when the file is used up (recycle off).', `${at}.stop_thread_on_eof`),
          field('Sharing', choice(d, 'sharing', [['all_threads', 'all threads'], ['current_thread_group', 'current thread group'], ['current_thread', 'current thread']]), 'Who reads the file from a shared position.', `${at}.sharing`),
          h('button', { type: 'button', class: 'small danger', onclick: () => { g.csv_data_sets.splice(n, 1); changed(); drawSets(); } }, 'Remove data set'));
      }));
    };
    drawSets();
    return [h('h2', {}, 'Thread group'),
      field('Name', text(g, 'name', { id: 'tg-name' }), null, `${pre}.name`),
      field('Comment', area(g, 'comment'), null, `${pre}.comment`),
      check(g, 'enabled', 'Enabled', null, `${pre}.enabled`),
      field('Ramp-up (s)', num(g, 'ramp_up_secs', { id: 'tg-ramp-up' }), 'Seconds until all threads run.', `${pre}.ramp_up_secs`),
      check(g, 'cookies', 'Cookies', 'An HTTP Cookie Manager: cookies set by responses go back with later requests of the same thread.', `${pre}.cookies`),
      check(g, 'clear_cookies_each_iteration', 'Clear cookies each iteration', null, `${pre}.clear_cookies_each_iteration`),
      h('h3', {}, 'CSV data sets'), sets,
      h('button', { type: 'button', class: 'small', id: 'add-csv', onclick: () => { g.csv_data_sets.push({ file: state.files[0]?.name || '', variable_names: [], delimiter: ',', ignore_first_line: false, recycle_on_eof: true, stop_thread_on_eof: false, sharing: 'all_threads' }); changed(); drawSets(); } }, 'Add CSV data set'),
      h('h3', {}, 'Controllers'),
      h('ul', {}, g.controllers.map((c, j) => h('li', {}, h('a', { href: '#', onclick: (e) => { e.preventDefault(); select(`ctl/${i}/${j}`); } }, c.name || '(unnamed)'), ` — ${c.samplers.length} request(s)${c.enabled ? '' : ', disabled'}`))),
      tools(state.plan.thread_groups, i, 'thread group', (j) => `tg/${j}`, [h('button', {
        type: 'button', class: 'small', id: 'add-controller',
        onclick: () => { g.controllers.push({ name: `Controller ${g.controllers.length + 1}`, enabled: true, samplers: [] }); changed(); select(`ctl/${i}/${g.controllers.length - 1}`); },
      }, 'Add controller')])];
  }

  function controllerPane(id) {
    const [i, j] = parts(id);
    const c = state.plan.thread_groups[i].controllers[j];
    const pre = fieldPrefix(id);
    return [h('h2', {}, 'Controller'),
      field('Name', text(c, 'name', { id: 'ctl-name' }), null, `${pre}.name`),
      check(c, 'enabled', 'Enabled', null, `${pre}.enabled`),
      h('h3', {}, 'HTTP requests'),
      h('ul', {}, c.samplers.map((s, k) => h('li', {}, h('a', { href: '#', onclick: (e) => { e.preventDefault(); select(`smp/${i}/${j}/${k}`); } }, s.name || '(unnamed)'), ` — ${s.method} ${s.host}${s.path}`))),
      tools(state.plan.thread_groups[i].controllers, j, 'controller', (n) => `ctl/${i}/${n}`, [h('button', {
        type: 'button', class: 'small', id: 'add-sampler',
        onclick: () => {
          c.samplers.push({ name: `Request ${c.samplers.length + 1}`, protocol: 'http', host: '', port: '', path: '/', method: 'GET', body: { type: 'none' }, header_set: null, assertion: null, extractors: [], content_encoding: '', enabled: true });
          changed();
          select(`smp/${i}/${j}/${c.samplers.length - 1}`);
        },
      }, 'Add HTTP request')])];
  }

  function samplerPane(id) {
    const [i, j, k] = parts(id);
    const s = state.plan.thread_groups[i].controllers[j].samplers[k];
    const pre = fieldPrefix(id);
    const body = h('div');
    const drawBody = () => {
      const type = choice(s.body, 'type', [['none', 'none'], ['json', 'raw body (JSON)'], ['form', 'form fields / query']], () => {
        s.body = s.body.type === 'json' ? { type: 'json', text: '' } : s.body.type === 'form' ? { type: 'form', fields: [] } : { type: 'none' };
        drawBody();
      });
      type.id = 'smp-body-type';
      body.replaceChildren(field('Arguments', type, 'Form fields are the query string of a GET and the form body otherwise.', `${pre}.body`),
        s.body.type === 'json' ? field('Body', area(s.body, 'text', { id: 'smp-body' }), 'Sent as is; ${var} references are resolved.', `${pre}.body.text`) : null,
        s.body.type === 'form' ? pairs(s.body.fields, `${pre}.body.fields`) : null);
    };
    drawBody();
    const assertion = h('div');
    const drawAssertion = () => {
      const holder = { kind: s.assertion ? s.assertion.kind : 'none' };
      const kind = choice(holder, 'kind', [['none', 'none'], ['contains', 'contains (regular expression)'], ['equals', 'equals'], ['matches', 'matches (whole body, regular expression)']], () => {
        s.assertion = holder.kind === 'none' ? null : { kind: holder.kind, text: s.assertion?.text || '' };
        drawAssertion();
      });
      kind.id = 'smp-assertion-kind';
      assertion.replaceChildren(field('Assertion', kind, 'A response that fails it counts as an error.', `${pre}.assertion`),
        s.assertion ? field('Text', text(s.assertion, 'text', { id: 'smp-assertion-text', size: 50 }), null, `${pre}.assertion.text`) : null);
    };
    drawAssertion();
    const extractors = h('div');
    const drawExtractors = () => {
      extractors.replaceChildren(h('table', { class: 'rows' }, h('tbody', {}, s.extractors.map((e, n) => {
        const at = `${pre}.extractors[${n}]`;
        const expr = text(e, 'expression', { placeholder: e.kind === 'json_path' ? '$.data.token' : 'token=(\\w+)', 'aria-label': 'Expression', size: 28 });
        markInvalid(expr, `${at}.expression`);
        const v = text(e, 'variable', { placeholder: 'variable', 'aria-label': 'Variable' });
        markInvalid(v, `${at}.variable`);
        return h('tr', {}, h('td', {}, choice(e, 'kind', [['json_path', 'JSON path'], ['regex', 'regex']])), h('td', {}, expr), h('td', {}, '→ ${', v, '}'),
          h('td', {}, text(e, 'default', { placeholder: 'default', 'aria-label': 'Default', size: 10 })),
          h('td', {}, h('button', { type: 'button', class: 'small danger', onclick: () => { s.extractors.splice(n, 1); changed(); drawExtractors(); } }, 'Remove')));
      }))), h('button', { type: 'button', class: 'small', id: 'add-extractor', onclick: () => { s.extractors.push({ kind: 'json_path', expression: '', variable: '', default: '' }); changed(); drawExtractors(); } }, 'Add extractor'));
    };
    drawExtractors();
    const headerSet = h('select', { id: 'smp-header-set', onchange: (e) => { s.header_set = e.target.value || null; changed(); } },
      h('option', { value: '' }, '(none)'), state.plan.header_sets.map((hs) => h('option', { value: hs.name, selected: s.header_set === hs.name }, hs.name)));
    return [h('h2', {}, 'HTTP request'),
      field('Name', text(s, 'name', { id: 'smp-name' }), 'Results are reported per name.', `${pre}.name`),
      check(s, 'enabled', 'Enabled', null, `${pre}.enabled`),
      field('Protocol', choice(s, 'protocol', [['http', 'http'], ['https', 'https']]), null, `${pre}.protocol`),
      field('Host', text(s, 'host', { id: 'smp-host', placeholder: 'shop.example or ${host}' }), 'Name or address only.', `${pre}.host`),
      field('Port', text(s, 'port', { id: 'smp-port', size: 8, placeholder: 'default' }), 'Empty for the protocol\'s default; a number or ${var}.', `${pre}.port`),
      field('Path', text(s, 'path', { id: 'smp-path', size: 50 }), 'Starts with /; may hold ${var} and a query string.', `${pre}.path`),
      field('Method', choice(s, 'method', ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'].map((m) => [m, m])), null, `${pre}.method`),
      field('Content encoding', choice(s, 'content_encoding', [['', 'none (JMeter default)'], ['UTF-8', 'UTF-8']]), null, `${pre}.content_encoding`),
      field('Header set', headerSet, 'Defined under Header sets.', `${pre}.header_set`),
      body,
      assertion,
      h('h3', {}, 'Extractors'),
      h('p', { class: 'muted small' }, 'Read a value from the response into a variable that later requests use as ${name}.'),
      extractors,
      tools(state.plan.thread_groups[i].controllers[j].samplers, k, 'request', (n) => `smp/${i}/${j}/${n}`)];
  }

  // ---- load and save ----------------------------------------------------------

  function showProblems() {
    if (!state.problems.length) {
      problemsBox.hidden = true;
      return;
    }
    problemsBox.replaceChildren(h('strong', {}, 'Not saved:'), h('ul', {}, state.problems.map((p) => h('li', {},
      h('a', { onclick: () => select(nodeOfField(p.field)) }, p.field), `: ${p.message}`))));
    problemsBox.hidden = false;
  }

  async function save() {
    const r = await call('PUT', `/api/plans/${ctx.id}`, { revision: state.revision, plan: state.plan });
    if (r.ok) {
      state.revision = r.data.revision;
      state.dirty = false;
      state.problems = [];
      dirtyTag.hidden = true;
      document.getElementById('plan-revision').textContent = `revision ${state.revision}`;
      toast('Saved.');
    } else if (r.status === 422 && r.data.problems) {
      state.problems = r.data.problems;
    } else {
      state.problems = [{ field: r.data.field || '', message: r.data.error || `save failed (${r.status})` }];
    }
    showProblems();
    renderTree();
    renderPane();
  }

  function toast(message) {
    const t = document.getElementById('toast');
    if (!t) return;
    t.textContent = message;
    t.className = 'show';
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { t.className = ''; }, 3000);
  }

  // Run: the saved plan becomes a task (unsaved changes are saved first;
  // a save with problems runs nothing) and its page follows. A refusal
  // (not enough idle generators, a plan that cannot run) is shown whole.
  const runError = document.getElementById('plan-run-error');
  async function run() {
    if (!state.plan) return;
    runError.hidden = true;
    if (state.dirty) {
      await save();
      if (state.dirty || state.problems.length) return;
    }
    const r0 = state.plan.run;
    const what = r0.schedule.type === 'automatic' ? 'Schedule' : 'Start';
    if (!confirm(`${what} a load test of plan ${state.plan.name} on ${r0.generators} load generator(s)?`)) return;
    const button = document.getElementById('plan-run');
    button.disabled = true;
    try {
      const r = await call('POST', `/api/plans/${ctx.id}/run`);
      if (r.ok) {
        location.href = `${PREFIX}/tasks/${r.data.id}`;
        return;
      }
      const problems = Array.isArray(r.data.problems) ? r.data.problems : [];
      runError.replaceChildren(
        h('strong', {}, 'Did not run: '),
        h('span', {}, r.data.error || `failed (${r.status})`),
        problems.length ? h('ul', {}, problems.map((p) => h('li', {},
          p.field ? h('a', { onclick: () => select(nodeOfField(p.field)) }, p.field) : null,
          p.field ? `: ${p.message}` : p.message))) : null);
      runError.hidden = false;
    } catch (e) {
      runError.replaceChildren(h('strong', {}, 'Did not run: '), h('span', {}, e.message));
      runError.hidden = false;
    } finally {
      button.disabled = false;
    }
  }

  document.getElementById('plan-save').addEventListener('click', save);
  document.getElementById('plan-run').addEventListener('click', run);
  document.addEventListener('keydown', (e) => {
    if ((e.ctrlKey || e.metaKey) && e.key === 's') {
      e.preventDefault();
      save();
    }
  });
  window.addEventListener('beforeunload', (e) => {
    if (state.dirty) e.preventDefault();
  });

  (async () => {
    const r = await call('GET', `/api/plans/${ctx.id}`);
    if (!r.ok) {
      pane.replaceChildren(h('p', { class: 'error' }, r.data.error || `cannot load the plan (${r.status})`));
      return;
    }
    state.plan = r.data.plan;
    state.revision = r.data.revision;
    state.files = r.data.files;
    state.bundle = r.data.bundle;
    document.getElementById('plan-revision').textContent = `revision ${state.revision}`;
    const wanted = new URLSearchParams(location.search).get('node');
    if (wanted && nodeObject(wanted)) state.selected = wanted;
    renderTree();
    renderPane();
    document.body.dataset.ready = '1';
  })();
})();
