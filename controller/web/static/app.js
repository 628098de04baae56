// MyPlatform pages: every change goes through the JSON API with the
// session's CSRF token. Forms and buttons declare what they call:
//   <form data-api="/api/x" data-method="POST" data-next="/page">
//   <form data-api-template="/api/groups/1/members/{user}" data-method="PUT">
//   <button data-api="/api/x/1" data-method="DELETE" data-confirm="Sure?">
//   <button data-api="/api/x" data-body='{"role":"monitor"}'>  (JSON body)
// Field names with a dot build nested objects ("credential.kind");
// data-type="int" sends a number; checkboxes send booleans.
'use strict';

const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.content ?? '';
const PREFIX = meta('prefix');

async function api(method, path, body) {
  const init = {
    method,
    credentials: 'same-origin',
    headers: { 'X-CSRF-Token': meta('csrf-token') },
  };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const r = await fetch(PREFIX + path, init);
  if (r.status === 401) {
    location.href = PREFIX + '/login?expired=1';
    throw new Error('session expired');
  }
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!r.ok) {
    throw new Error((data && data.error) || `${r.status} ${r.statusText}`);
  }
  return data;
}

/** An element with attributes (`dataset` for data-*) and children; text
 *  children become text nodes, so nothing is parsed as HTML. */
function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}

function formBody(form) {
  const out = {};
  for (const el of form.elements) {
    if (!el.name || el.disabled) continue;
    let v;
    if (el.type === 'checkbox') v = el.checked;
    else if (el.dataset.type === 'int') {
      if (el.value.trim() === '') continue;
      v = Number(el.value);
    } else v = el.value;
    const path = el.name.split('.');
    let node = out;
    for (const k of path.slice(0, -1)) node = node[k] ??= {};
    node[path[path.length - 1]] = v;
  }
  // An empty secret with "keep" is not a change.
  if (out.credential && out.credential.kind === 'keep') delete out.credential;
  return out;
}

function showError(form, message) {
  const box = form.querySelector('.error');
  if (box) {
    box.textContent = message;
    box.hidden = false;
  } else {
    toast(message, true);
  }
}

function toast(message, bad) {
  const t = document.getElementById('toast');
  if (!t) return;
  t.textContent = message;
  t.className = bad ? 'show bad' : 'show';
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.className = ''; }, 6000);
}

function done(el) {
  const next = el.dataset.next;
  if (next) location.href = PREFIX + next;
  else location.reload();
}

document.addEventListener('submit', async (ev) => {
  const form = ev.target;
  const tpl = form.dataset.apiTemplate;
  if (!form.dataset.api && !tpl) return;
  ev.preventDefault();
  const body = formBody(form);
  let path = form.dataset.api;
  if (tpl) path = tpl.replace(/\{(\w+)\}/g, (_, k) => encodeURIComponent(body[k]));
  const button = form.querySelector('[type=submit]');
  if (button) button.disabled = true;
  try {
    await api(form.dataset.method || 'POST', path, tpl ? undefined : body);
    done(form);
  } catch (e) {
    showError(form, e.message);
  } finally {
    if (button) button.disabled = false;
  }
});

document.addEventListener('click', async (ev) => {
  const b = ev.target.closest('button[data-api]');
  if (!b) return;
  ev.preventDefault();
  if (b.dataset.confirm && !confirm(b.dataset.confirm)) return;
  const label = b.textContent;
  b.disabled = true;
  if (b.dataset.busy) b.textContent = b.dataset.busy;
  try {
    const body = b.dataset.body ? JSON.parse(b.dataset.body) : undefined;
    const r = await api(b.dataset.method || 'POST', b.dataset.api, body);
    // A started job (deploy, removal) has a page of its own.
    if (r && r.job) {
      location.href = `${PREFIX}/jobs/${encodeURIComponent(r.job)}`;
      return;
    }
    done(b);
  } catch (e) {
    toast(e.message, true);
  } finally {
    b.disabled = false;
    b.textContent = label;
  }
});

document.addEventListener('change', (ev) => {
  if (ev.target.classList.contains('autosubmit')) ev.target.form.submit();
});

/** How every page writes a measured value; one place so that the same
 *  number reads the same everywhere. Percentages arrive as 0..100 (never
 *  scaled here), bytes use binary prefixes. Missing values read "–". */
const units = (() => {
  const NONE = '–';
  const ok = (v) => v !== null && v !== undefined && v !== '' && Number.isFinite(Number(v));
  const PREFIXES = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  function bytes(v) {
    if (!ok(v)) return NONE;
    const n = Number(v);
    const sign = n < 0 ? '-' : '';
    let a = Math.abs(n);
    if (Math.round(a) < 1024) return `${sign}${Math.round(a)} B`;
    let i = 0;
    while (i < PREFIXES.length - 1 && a >= 1024) {
      a /= 1024;
      i += 1;
    }
    // 1023.96 KiB would print as "1024.0 KiB": one prefix up instead.
    if (Number(a.toFixed(1)) >= 1024 && i < PREFIXES.length - 1) {
      a /= 1024;
      i += 1;
    }
    return `${sign}${a.toFixed(1)} ${PREFIXES[i]}`;
  }
  function count(v) {
    if (!ok(v)) return NONE;
    const n = Math.round(Number(v));
    const s = String(Math.abs(n)).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
    return n < 0 ? `-${s}` : s;
  }
  return {
    pct: (v) => (ok(v) ? `${Number(v).toFixed(1)} %` : NONE),
    bytes,
    rate: (v) => (ok(v) ? `${bytes(v)}/s` : NONE),
    count,
    perSec: (v) => (ok(v) ? `${Number(v).toFixed(1)}/s` : NONE),
    /** Shorter forms for chart axes: no needless ".0". */
    axis: {
      pct: (v) => `${Number(Number(v).toFixed(1))} %`,
      bytes: (v) => bytes(v).replace('.0 ', ' '),
      rate: (v) => `${bytes(v).replace('.0 ', ' ')}/s`,
      count: (v) => (Math.abs(v) >= 1e6 ? `${Number((v / 1e6).toFixed(1))} M` : Math.abs(v) >= 1e4 ? `${Number((v / 1e3).toFixed(1))} k` : String(Number(Number(v).toFixed(2)))),
      perSec: (v) => `${Number(Number(v).toFixed(2))}/s`,
    },
  };
})();
window.units = units;
