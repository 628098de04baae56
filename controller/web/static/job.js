// Follows a deploy or removal: polls /api/jobs/{id} and redraws its steps.
'use strict';
(() => {
  const list = document.getElementById('steps');
  if (!list) return;
  const PREFIX = document.querySelector('meta[name="prefix"]').content;
  const result = document.getElementById('job-result');
  const draw = (job) => {
    list.replaceChildren(
      ...job.steps.map((s) => {
        const li = document.createElement('li');
        li.dataset.state = s.state;
        const name = document.createElement('span');
        name.className = 'step-name';
        name.textContent = s.name;
        const detail = document.createElement('span');
        detail.className = 'step-detail muted';
        detail.textContent = ` ${s.detail}`;
        li.append(name, detail);
        return li;
      }),
    );
    if (job.finished) {
      result.className = job.ok ? 'ok' : 'error';
      result.textContent = job.ok ? 'Done.' : `Failed: ${job.error}`;
    }
  };
  const poll = async () => {
    const r = await fetch(`${PREFIX}/api/jobs/${encodeURIComponent(list.dataset.job)}`, { credentials: 'same-origin' });
    if (!r.ok) return;
    const job = await r.json();
    draw(job);
    if (!job.finished) setTimeout(poll, 500);
  };
  poll();
})();
