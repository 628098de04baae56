// The browser shell: xterm.js on the controller's websocket
// (/api/servers/{id}/shell). Binary frames are terminal bytes both ways;
// text frames are JSON control messages. The page acknowledges what the
// terminal has drawn, so a flood of output waits on the server instead of
// piling up here.
'use strict';

(() => {
  const el = document.getElementById('terminal');
  if (!el) return;
  const PREFIX = document.querySelector('meta[name="prefix"]').content;
  const server = el.dataset.server;
  const status = document.getElementById('term-status');
  const again = document.getElementById('term-reconnect');
  const setStatus = (state, text) => {
    status.dataset.state = state;
    status.textContent = text;
  };

  const term = new Terminal({
    cursorBlink: true,
    scrollback: 5000,
    fontFamily: '"DejaVu Sans Mono", "Liberation Mono", monospace',
    fontSize: 14,
  });
  const fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(el);
  fit.fit();
  window.myplatformTerminal = term; // for tests and for people with devtools

  const encoder = new TextEncoder();
  let ws = null;
  let pendingAck = 0;
  let ackTimer = null;

  const send = (data) => {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(data);
  };
  const flushAck = () => {
    ackTimer = null;
    if (pendingAck > 0) {
      send(JSON.stringify({ type: 'ack', bytes: pendingAck }));
      pendingAck = 0;
    }
  };
  const ack = (n) => {
    pendingAck += n;
    if (pendingAck >= 65536) flushAck();
    else if (!ackTimer) ackTimer = setTimeout(flushAck, 20);
  };

  function connect() {
    again.hidden = true;
    setStatus('connecting', 'connecting…');
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const url = `${proto}//${location.host}${PREFIX}/api/servers/${server}/shell?cols=${term.cols}&rows=${term.rows}`;
    ws = new WebSocket(url);
    ws.binaryType = 'arraybuffer';
    ws.onmessage = (ev) => {
      if (typeof ev.data !== 'string') {
        const bytes = new Uint8Array(ev.data);
        // xterm decodes UTF-8 statefully: a character split across two
        // frames comes out whole.
        term.write(bytes, () => ack(bytes.length));
        return;
      }
      let msg;
      try { msg = JSON.parse(ev.data); } catch { return; }
      if (msg.type === 'connected') {
        setStatus('connected', 'connected');
        term.focus();
      } else if (msg.type === 'error') {
        setStatus('error', msg.message);
      } else if (msg.type === 'closed') {
        setStatus('closed', msg.message);
        term.write(`\r\n\x1b[33m${msg.message}\x1b[0m\r\n`);
      }
    };
    ws.onclose = () => {
      if (status.dataset.state === 'connecting' || status.dataset.state === 'connected') {
        setStatus('closed', 'session closed: the connection to the controller was lost');
      }
      again.hidden = false;
    };
  }

  term.onData((s) => send(encoder.encode(s)));
  term.onBinary((s) => send(Uint8Array.from(s, (c) => c.charCodeAt(0))));
  term.onResize(({ cols, rows }) => send(JSON.stringify({ type: 'resize', cols, rows })));
  window.addEventListener('resize', () => fit.fit());
  again.addEventListener('click', connect);
  connect();
})();

// Upload: several files into one absolute directory, with progress.
(() => {
  const form = document.getElementById('upload-form');
  if (!form) return;
  const PREFIX = document.querySelector('meta[name="prefix"]').content;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const bar = document.getElementById('upload-progress');
  const results = document.getElementById('upload-results');
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const files = document.getElementById('upload-files').files;
    const dir = document.getElementById('upload-dir').value.trim();
    const body = new FormData();
    for (const f of files) body.append('file', f, f.name);
    const xhr = new XMLHttpRequest();
    xhr.open('POST', `${PREFIX}/api/servers/${form.dataset.server}/files?dir=${encodeURIComponent(dir)}`);
    xhr.setRequestHeader('X-CSRF-Token', csrf);
    xhr.responseType = 'json';
    bar.hidden = false;
    bar.value = 0;
    results.replaceChildren();
    const submit = document.getElementById('upload-submit');
    submit.disabled = true;
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) bar.value = Math.round((100 * e.loaded) / e.total);
    };
    xhr.onloadend = () => {
      submit.disabled = false;
      const r = xhr.response || {};
      const items = r.files || [{ name: '(upload)', ok: false, error: r.error || `failed (${xhr.status})` }];
      for (const f of items) {
        const li = document.createElement('li');
        li.className = f.ok ? 'ok' : 'bad';
        li.textContent = f.ok ? `${f.name}: ${f.bytes} bytes -> ${f.path}` : `${f.name}: ${f.error}`;
        results.append(li);
      }
      if (xhr.status === 200) bar.value = 100;
    };
    xhr.send(body);
  });
})();

// Download: the browser streams the file straight to disk.
(() => {
  const form = document.getElementById('download-form');
  if (!form) return;
  const PREFIX = document.querySelector('meta[name="prefix"]').content;
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const path = document.getElementById('download-path').value.trim();
    const url = `${PREFIX}/api/servers/${form.dataset.server}/files?path=${encodeURIComponent(path)}`;
    const err = form.querySelector('.error');
    err.hidden = true;
    // Ask first (HEAD) so a refusal shows here instead of as a broken
    // download.
    const r = await fetch(url, { method: 'HEAD', credentials: 'same-origin' });
    if (!r.ok) {
      // HEAD has no body: ask again for the reason (a refusal is small).
      let why = `download refused (${r.status})`;
      try {
        const g = await fetch(url, { credentials: 'same-origin' });
        why = (await g.json()).error || why;
      } catch { /* keep the status */ }
      err.textContent = why;
      err.hidden = false;
      return;
    }
    const a = document.createElement('a');
    a.href = url;
    a.download = '';
    document.body.append(a);
    a.click();
    a.remove();
  });
})();
