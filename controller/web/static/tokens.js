// Creates a join token and shows the one-line installs that use it;
// uploads agent packages.
'use strict';
(() => {
  const pkgForm = document.getElementById('package-form');
  if (pkgForm) {
    pkgForm.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const err = pkgForm.querySelector('.error');
      const progress = document.getElementById('package-progress');
      err.hidden = true;
      const data = new FormData();
      for (const f of document.getElementById('package-file').files) data.append('file', f, f.name);
      progress.textContent = 'uploading…';
      const r = await fetch(`${document.querySelector('meta[name="prefix"]').content}/api/packages`, {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'X-CSRF-Token': document.querySelector('meta[name="csrf-token"]').content },
        body: data,
      });
      const v = await r.json().catch(() => ({}));
      progress.textContent = '';
      if (!r.ok) {
        err.textContent = v.error || `upload failed (${r.status})`;
        err.hidden = false;
        return;
      }
      location.reload();
    });
  }

  const form = document.getElementById('token-form');
  if (!form) return;
  const PREFIX = document.querySelector('meta[name="prefix"]').content;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const err = form.querySelector('.error');
    err.hidden = true;
    const body = {
      role: document.getElementById('token-role').value,
      uses: Number(document.getElementById('token-uses').value),
      ttl_minutes: Number(document.getElementById('token-ttl').value),
    };
    const r = await fetch(`${PREFIX}/api/tokens`, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf },
      body: JSON.stringify(body),
    });
    const v = await r.json();
    if (!r.ok) {
      err.textContent = v.error || `failed (${r.status})`;
      err.hidden = false;
      return;
    }
    const lines = document.getElementById('token-lines');
    lines.replaceChildren();
    if (v.install_lines.length === 0) {
      const p = document.createElement('p');
      p.className = 'error';
      p.textContent = 'No package for this agent is registered: run scripts/dist and put the tarballs in the controller\'s packages folder.';
      lines.append(p);
    }
    for (const l of v.install_lines) {
      const h = document.createElement('h3');
      h.textContent = `${l.arch} (${l.file})`;
      const pre = document.createElement('pre');
      pre.className = 'mono small install-line';
      pre.textContent = l.command;
      lines.append(h, pre);
    }
    document.getElementById('token-agent-command').textContent = v.agent_command;
    document.getElementById('token-result').hidden = false;
  });
})();
