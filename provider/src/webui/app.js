// perigee admin pages: live provider status, JSON checks before saving, copy buttons,
// latency from this browser to each region. Everything works without it except the
// live updates and the latency column.
'use strict';

function $(sel, root) { return (root || document).querySelector(sel); }
function $all(sel, root) { return Array.from((root || document).querySelectorAll(sel)); }

// Copy buttons: data-copy names the element whose text is copied.
$all('[data-copy]').forEach(b => b.addEventListener('click', async () => {
  const text = document.getElementById(b.dataset.copy).textContent;
  try { await navigator.clipboard.writeText(text); b.textContent = 'Copied'; }
  catch (e) { b.textContent = 'Select and copy'; }
}));

// Provider status without reloading.
const list = document.getElementById('providers');
if (list) {
  const label = s => s.charAt(0).toUpperCase() + s.slice(1);
  const live = document.getElementById('live');
  const refresh = async () => {
    try {
      const r = await fetch('/manage/providers/status', { cache: 'no-store', credentials: 'same-origin' });
      if (!r.ok) return;
      for (const p of await r.json()) {
        const li = list.querySelector(`li[data-name="${CSS.escape(p.name)}"]`);
        if (!li) continue;
        const badge = li.querySelector('[data-status]');
        if (badge.dataset.status !== p.status) {
          badge.dataset.status = p.status;
          badge.className = 'badge b-' + p.status;
          badge.textContent = label(p.status);
          if (live) live.textContent = `${p.name} is now ${label(p.status)}`;
        }
        const err = li.querySelector('[data-error]');
        err.textContent = p.status_message || '';
        err.closest('div').hidden = !p.status_message;
        li.querySelector('[data-heartbeat]').textContent = p.last_heartbeat;
      }
    } catch (e) { /* the next round tries again */ }
  };
  setInterval(refresh, 1500);
}

// JSON fields are checked before the form is sent.
const checkJson = t => {
  const slot = document.getElementById(t.id + '-e');
  let msg = '';
  const text = t.value.trim();
  if (text !== '') {
    try {
      const v = JSON.parse(text);
      const want = t.dataset.json;
      const isArray = Array.isArray(v);
      const isObject = v !== null && typeof v === 'object' && !isArray;
      if (want === 'array' && !isArray) msg = 'must be a JSON array, like [] or [{…}]';
      if (want === 'object' && !isObject) msg = 'must be a JSON object, like {} or {"key": "value"}';
    } catch (e) { msg = 'not valid JSON: ' + e.message; }
  }
  slot.textContent = msg;
  slot.hidden = msg === '';
  t.setAttribute('aria-invalid', msg === '' ? 'false' : 'true');
  return msg === '';
};
$all('textarea[data-json]').forEach(t => t.addEventListener('input', () => checkJson(t)));
$all('form[data-check-json]').forEach(f => f.addEventListener('submit', ev => {
  const bad = $all('textarea[data-json]', f).filter(t => !checkJson(t));
  if (bad.length) { ev.preventDefault(); bad[0].focus(); }
}));

// The allowlist warning follows the checkboxes.
const warn = document.getElementById('orgs-warn');
if (warn) {
  const boxes = $all('input[name="orgs"]');
  const update = () => { warn.hidden = boxes.some(b => b.checked); };
  boxes.forEach(b => b.addEventListener('change', update));
  update();
}

// Latency from this browser to each region (the best of three).
$all('[data-latency]').forEach(async cell => {
  let best = Infinity;
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    try {
      await fetch(cell.dataset.latency, { mode: 'no-cors', cache: 'no-store' });
      best = Math.min(best, performance.now() - t0);
    } catch (e) { /* unreachable from here */ }
  }
  cell.textContent = best === Infinity ? 'unreachable' : `${Math.round(best)} ms`;
  cell.dataset.ms = best === Infinity ? '' : String(Math.round(best));
});
