// Alerts: what fires now and the history of alert events (with how their
// mail went), refreshed every 10 s. An admin also edits the rules and the
// recipients and sends a test mail; every answer, good or bad, is told in
// #alerts-msg in the server's own words.
'use strict';
(() => {
  const root = document.getElementById('alerts-page');
  if (!root) return;
  const $ = (id) => document.getElementById(id);
  const ADMIN = root.dataset.admin === 'true';
  const REFRESH_MS = 10000;
  const HISTORY_LIMIT = 200;
  const PREFIX = document.querySelector('meta[name="prefix"]').content;

  const KINDS = {
    cpu_high: 'CPU busy',
    memory_low: 'Memory low',
    full_gc_frequent: 'Frequent full GCs',
    host_silent: 'Server silent',
  };
  const MAIL = {
    pending: 'pending', sent: 'sent', failed: 'failed', off: 'off', stale: 'not sent (over)',
  };
  const THRESHOLDS = ['cpu_busy_above_pct', 'mem_available_below_pct', 'full_gc_min_interval_secs', 'silent_after_secs'];
  const RULE_FIELDS = ['cpu_busy_above_pct', 'cpu_for_secs', 'mem_available_below_pct', 'mem_for_secs', 'full_gc_min_interval_secs', 'silent_after_secs'];

  const when = (ms) => (ms ? new Date(ms).toLocaleString() : '');
  function duration(ms) {
    const s = Math.max(0, Math.round(ms / 1000));
    if (s < 60) return `${s} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min`;
    const hrs = Math.floor(m / 60);
    if (hrs < 48) return `${hrs} h ${m % 60} min`;
    return `${Math.floor(hrs / 24)} days ${hrs % 24} h`;
  }

  function say(text, bad) {
    const box = $('alerts-msg');
    box.textContent = text;
    box.classList.toggle('error', !!bad);
    box.classList.toggle('ok', !bad);
    box.hidden = !text;
  }

  const kindCell = (kind) => h('td', { class: 'kind' },
    h('span', { class: `alert-kind kind-${kind}` }, KINDS[kind] || kind),
    h('span', { class: 'muted small mono' }, ` ${kind}`));
  const hostCell = (a) => h('td', {},
    h('a', { href: `${PREFIX}/monitor?host=${encodeURIComponent(a.host)}`, title: a.host }, a.hostname || a.host));
  const emptyRow = (cols, text) => h('tr', { class: 'placeholder' }, h('td', { colspan: String(cols), class: 'empty' }, text));

  function renderFiring(list) {
    const now = Date.now();
    const rows = list.map((a) => h('tr', { class: 'firing', dataset: { kind: a.kind, host: a.host } },
      kindCell(a.kind),
      hostCell(a),
      h('td', {}, when(a.since_ms)),
      h('td', { class: 'num' }, duration(now - a.since_ms))));
    $('firing').querySelector('tbody').replaceChildren(...(rows.length ? rows : [emptyRow(4, 'Nothing is firing: every rule is within its limits.')]));
  }

  function mailCell(a) {
    const text = MAIL[a.mail_state] || a.mail_state || '';
    const tries = a.mail_tries ? ` (${a.mail_tries} ${a.mail_tries === 1 ? 'try' : 'tries'})` : '';
    return h('td', { class: 'mail' },
      h('span', { class: `mail-state mail-${a.mail_state}`, dataset: { mailState: a.mail_state || '' }, title: a.mail_error || '' }, text),
      a.mail_state === 'failed' || a.mail_state === 'pending' ? h('span', { class: 'muted small' }, tries) : null,
      a.mail_error ? h('div', { class: 'error small' }, a.mail_error) : null);
  }

  function renderHistory(list) {
    const rows = list.map((a) => h('tr', { class: a.firing ? 'fired' : 'resolved', dataset: { id: String(a.id), kind: a.kind, host: a.host } },
      h('td', { class: 'time' }, when(a.at_ms)),
      kindCell(a.kind),
      hostCell(a),
      h('td', {}, h('span', { class: a.firing ? 'event event-fired' : 'event event-resolved' }, a.firing ? 'fired' : 'resolved')),
      mailCell(a),
      h('td', { class: 'message' }, a.message || '')));
    $('history').querySelector('tbody').replaceChildren(...(rows.length ? rows : [emptyRow(6, 'No alert has fired yet.')]));
  }

  let loadFailed = false;
  async function loadAlerts() {
    try {
      const r = await api('GET', `/api/alerts?limit=${HISTORY_LIMIT}`);
      renderFiring((r && r.firing) || []);
      renderHistory((r && r.history) || []);
      $('alerts-updated').textContent = `updated ${new Date().toLocaleTimeString([], { hour12: false })}`;
      if (loadFailed) say('', false);
      loadFailed = false;
    } catch (e) {
      loadFailed = true;
      say(`The alerts could not be loaded: ${e.message}`, true);
    }
  }

  // ---- admin: settings ----------------------------------------------------------

  function fillRules(rules) {
    const form = $('rules');
    for (const name of RULE_FIELDS) {
      const el = form.elements[name];
      if (!el) continue;
      const v = rules ? rules[name] : null;
      el.value = v === null || v === undefined ? '' : String(v);
    }
  }

  function smtpText(smtp) {
    if (!smtp) return 'No SMTP server configured (settings file, [alerts.smtp])';
    const sec = { none: 'no TLS', starttls: 'STARTTLS', tls: 'TLS' }[smtp.security] || smtp.security;
    return `Server ${smtp.host}:${smtp.port} (${sec}), sender ${smtp.from}. Set in the settings file, [alerts.smtp].`;
  }

  async function loadSettings() {
    try {
      const s = await api('GET', '/api/alerts/settings');
      fillRules(s.rules);
      $('recipients').value = (s.recipients || []).join('\n');
      $('smtp-info').textContent = smtpText(s.smtp);
      $('drop-caches-info').textContent = s.drop_caches_on_memory_low
        ? 'When memory is low, the agents also drop the page cache (settings file).'
        : '';
      $('rules-fields').disabled = false;
      $('recipients').disabled = false;
    } catch (e) {
      $('smtp-info').textContent = '';
      say(`The alert settings could not be loaded: ${e.message}`, true);
    }
  }

  async function busy(button, fn) {
    button.disabled = true;
    try {
      await fn();
    } catch (e) {
      say(e.message, true);
    } finally {
      button.disabled = false;
    }
  }

  function setup() {
    $('rules').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const form = $('rules');
      const body = {};
      const bad = [];
      for (const name of RULE_FIELDS) {
        const el = form.elements[name];
        const raw = el.value.trim();
        if (raw === '') {
          // An empty box, or one the browser could not read as a number.
          if (el.validity && el.validity.badInput) bad.push(el.getAttribute('aria-label') || name);
          body[name] = null;
        } else {
          body[name] = Number(raw);
        }
      }
      if (bad.length) {
        say(`Not a number: ${bad.join('; ')}`, true);
        return;
      }
      busy($('rules-save'), async () => {
        const stored = await api('PUT', '/api/alerts/rules', body);
        fillRules(stored || body);
        const off = THRESHOLDS.filter((n) => (stored || body)[n] === null);
        say(`Rules saved${off.length ? ` (${off.length} rule${off.length === 1 ? '' : 's'} off)` : ''}.`, false);
      });
    });

    $('recipients-save').addEventListener('click', () => {
      const list = $('recipients').value.split('\n').map((l) => l.trim()).filter(Boolean);
      busy($('recipients-save'), async () => {
        const r = await api('PUT', '/api/alerts/recipients', { recipients: list });
        const stored = (r && r.recipients) || list;
        $('recipients').value = stored.join('\n');
        say(stored.length ? `Recipients saved: ${stored.join(', ')}.` : 'Recipients saved: none, so no alert mail is sent.', false);
      });
    });

    $('test-mail').addEventListener('click', () => {
      busy($('test-mail'), async () => {
        say('Sending a test mail…', false);
        const r = await api('POST', '/api/alerts/test-mail');
        const to = (r && r.sent_to) || [];
        say(`Test mail sent to ${to.join(', ') || 'the recipients'}.`, false);
      });
    });
  }

  if (ADMIN && $('rules')) {
    setup();
    loadSettings();
  }
  const tick = async () => {
    await loadAlerts();
    setTimeout(tick, REFRESH_MS);
  };
  tick();
})();
