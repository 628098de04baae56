// The plan list: create a plan and open it in the editor, copy a plan,
// run a plan (its task page follows; a refusal is shown above the list).
'use strict';
(() => {
  const PREFIX = document.querySelector('meta[name="prefix"]').content;
  const csrf = () => document.querySelector('meta[name="csrf-token"]').content;

  async function call(method, path, body) {
    const init = { method, credentials: 'same-origin', headers: { 'X-CSRF-Token': csrf() } };
    if (body instanceof FormData) init.body = body;
    else if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const r = await fetch(PREFIX + path, init);
    const v = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(v.error || `${r.status} ${r.statusText}`);
    return v;
  }

  function fail(form, message) {
    const err = form.querySelector('.error');
    err.textContent = message;
    err.hidden = false;
  }

  const form = document.getElementById('plan-new');
  form?.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const room = document.getElementById('plan-new-room').value;
    const body = { name: document.getElementById('plan-new-name').value, run: {} };
    if (room) body.run.room_id = Number(room);
    try {
      const v = await call('POST', '/api/plans', body);
      location.href = `${PREFIX}/plans/${v.id}`;
    } catch (e) {
      fail(form, e.message);
    }
  });

  const up = document.getElementById('plan-upload');
  up?.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const f = document.getElementById('plan-upload-file').files[0];
    if (!f) return;
    const data = new FormData();
    data.append('file', f, f.name);
    const button = document.getElementById('plan-upload-submit');
    button.disabled = true;
    try {
      const v = await call('POST', '/api/plans/upload', data);
      location.href = `${PREFIX}/plans/${v.id}`;
    } catch (e) {
      fail(up, e.message);
    } finally {
      button.disabled = false;
    }
  });

  // Import: what the import left out or changed is shown before moving
  // on to the editor.
  const imp = document.getElementById('plan-import');
  imp?.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const data = new FormData();
    const f = document.getElementById('plan-import-file').files[0];
    if (!f) return;
    data.append('file', f, f.name);
    try {
      const v = await call('POST', '/api/plans/import', data);
      const notes = document.getElementById('plan-import-notes');
      const open = document.createElement('a');
      open.href = `${PREFIX}/plans/${v.id}`;
      open.id = 'plan-import-open';
      open.className = 'button';
      open.textContent = `Open ${v.name}`;
      const list = document.createElement('ul');
      list.id = 'plan-import-list';
      for (const n of v.notes) {
        const li = document.createElement('li');
        li.textContent = `${n.path}: ${n.outcome === 'left_out' ? 'left out' : 'changed'}: ${n.message}`;
        list.append(li);
      }
      const head = document.createElement('p');
      head.textContent = v.notes.length ? `Imported as ${v.name}, with these differences from the file:` : `Imported as ${v.name}, nothing left out.`;
      notes.replaceChildren(head, list, open);
      notes.hidden = false;
    } catch (e) {
      fail(imp, e.message);
    }
  });

  // Run: a task starts now (or waits for the plan's schedule) and its page
  // follows. A refusal (not enough idle generators, a plan that cannot run)
  // is shown whole, with each problem of the plan on a line.
  const runError = document.getElementById('plans-run-error');
  document.addEventListener('click', async (ev) => {
    const b = ev.target.closest('button[data-plan-run]');
    if (!b) return;
    const d = b.dataset;
    const what = d.planAutomatic ? 'Schedule' : 'Start';
    if (!confirm(`${what} a load test of plan ${d.planName} on ${d.planGenerators} load generator(s)?`)) return;
    runError.hidden = true;
    b.disabled = true;
    const r = await fetch(`${PREFIX}/api/plans/${d.planRun}/run`, {
      method: 'POST', credentials: 'same-origin', headers: { 'X-CSRF-Token': csrf() },
    }).catch((e) => ({ ok: false, status: 0, json: async () => ({ error: `cannot reach the controller: ${e.message}` }) }));
    if (r.status === 401) {
      location.href = `${PREFIX}/login?expired=1`;
      return;
    }
    const v = await r.json().catch(() => ({}));
    if (r.ok) {
      location.href = `${PREFIX}/tasks/${v.id}`;
      return;
    }
    b.disabled = false;
    const head = document.createElement('strong');
    head.textContent = `Plan ${d.planName} did not run: `;
    const msg = document.createElement('span');
    msg.textContent = v.error || `${r.status} ${r.statusText}`;
    const kids = [head, msg];
    if (Array.isArray(v.problems) && v.problems.length) {
      const list = document.createElement('ul');
      for (const p of v.problems) {
        const li = document.createElement('li');
        li.textContent = p.field ? `${p.field}: ${p.message}` : p.message;
        list.append(li);
      }
      kids.push(list);
    }
    runError.replaceChildren(...kids);
    runError.hidden = false;
    runError.scrollIntoView({ block: 'nearest' });
  });

  document.addEventListener('click', async (ev) => {
    const b = ev.target.closest('button[data-plan-copy]');
    if (!b) return;
    b.disabled = true;
    try {
      const v = await call('POST', `/api/plans/${b.dataset.planCopy}/copy`);
      location.href = `${PREFIX}/plans/${v.id}`;
    } catch (e) {
      alert(e.message);
      b.disabled = false;
    }
  });
})();
