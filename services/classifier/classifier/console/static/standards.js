// Standards: versions, a draft editor with validation errors at their lines, preview of
// the impact, activation with progress, roll back. Admin actions are disabled for a
// read-only key (the API refuses them with 403 as well).
import { api, ApiError, confirmAction, el } from './api.js';
import { classLabel, dimLabel, formatTime, t } from './i18n.js';

let root = null;
let ctx = null;
const state = { schemes: [], source: '', errors: [], draft: null, preview: null, job: null, message: '', error: '' };
let editor = null;

export function init(section, context) { root = section; ctx = context; }

export async function show() {
  await refresh();
  if (!state.source) {
    const active = state.schemes.find((s) => s.status === 'active');
    if (active) state.source = (await api(`/v1/schemes/${active.version}`)).source;
  }
  render();
}

export function relabel() { render(); }

async function refresh() { state.schemes = (await api('/v1/schemes')).schemes; }

const confirmLabels = () => ({ ok: t('confirm'), cancel: t('cancel') });

// The line a validation error's path (e.g. dimensions.value.rules[0].class) points at:
// each key is looked for inside the block of the one before (by indentation).
export function lineOf(source, path) {
  const lines = source.split('\n');
  let at = -1;
  let base = -1;
  let inclusive = false;
  const tokens = path.split('.').flatMap((p) => p.split(/(?=\[)/)).filter(Boolean);
  for (const token of tokens) {
    const index = token.match(/^\[?(\d+)\]?$/);
    let found = false;
    let seen = -1;
    let itemDepth = null;
    for (let i = inclusive ? at : at + 1; i < lines.length; i += 1) {
      const m = lines[i].match(/^(\s*)(- )?(?:["']?([^"':#]+?)["']?\s*:)?/);
      if (!lines[i].trim() || lines[i].trim().startsWith('#')) continue;
      const dash = m[1].length;
      const col = dash + (m[2] ? 2 : 0);
      if (i !== at && (m[2] ? dash : col) <= base) break;
      if (index) {
        if (m[2] && (itemDepth === null || dash === itemDepth)) { itemDepth = dash; seen += 1; if (seen === Number(index[1])) { at = i; base = dash; inclusive = true; found = true; break; } }
      } else if (m[3] === token) { at = i; base = col; inclusive = false; found = true; break; }
    }
    if (!found) break;
  }
  return Math.max(at, 0) + 1;
}

async function saveDraft() {
  if (!await confirmAction(t('confirm_save'), confirmLabels())) return;
  state.source = editor.value;
  state.errors = []; state.preview = null; state.message = ''; state.error = '';
  try {
    state.draft = await api('/v1/schemes', { method: 'POST', body: state.source, type: 'application/yaml' });
    state.message = t('draft_saved', { v: state.draft.version });
    await refresh();
  } catch (exc) {
    if (exc instanceof ApiError && exc.status === 422) {
      state.errors = (exc.problem.errors || [{ field: '', message: exc.message }]).map((e) => ({
        path: e.field || '', message: e.message, line: e.field ? lineOf(state.source, e.field) : null,
      }));
    } else state.error = describe(exc);
  }
  render();
}

function describe(exc) {
  return exc instanceof ApiError && exc.status === 403 ? t('forbidden') : t('error', { m: exc.message });
}

async function preview(version) {
  state.error = '';
  try { state.preview = await api(`/v1/schemes/${version}/preview`, { method: 'POST' }); } catch (exc) { state.error = describe(exc); }
  render();
}

async function activate(version, rollBack) {
  const message = rollBack ? t('confirm_roll_back', { v: version }) : t('confirm_activate', { v: version });
  if (!await confirmAction(message, confirmLabels())) return;
  state.error = '';
  try {
    state.job = await api(`/v1/schemes/${version}/activate`, { method: 'POST', body: {} });
    state.job.version = version;
    render();
    while (state.job.status === 'queued' || state.job.status === 'running') {
      await new Promise((resolve) => { setTimeout(resolve, 400); });
      state.job = { ...await api(`/v1/activations/${state.job.id}`), version };
      renderJob();
    }
    await refresh();
  } catch (exc) { state.error = describe(exc); }
  render();
}

function adminButton(label, onclick, attrs = {}) {
  return el('button', { type: 'button', disabled: !ctx.admin, title: ctx.admin ? null : t('needs_admin'), onclick, ...attrs }, label);
}

function versionRow(s) {
  const edit = el('button', { type: 'button', class: 'secondary', onclick: async () => { state.source = (await api(`/v1/schemes/${s.version}`)).source; render(); } }, t('load_into_editor'));
  const draft = s.status === 'draft';
  return el('tr', { dataset: { version: s.version, status: s.status } },
    el('td', {}, `v${s.version}`),
    el('td', {}, s.name),
    el('td', {}, el('span', { class: `badge ${s.status}` }, t(`status_${s.status}`))),
    el('td', {}, formatTime(s.created_at)),
    el('td', {}, formatTime(s.activated_at)),
    el('td', { class: 'actions' }, edit,
      draft ? adminButton(t('preview'), () => preview(s.version), { class: 'secondary', dataset: { action: 'preview' } }) : null,
      draft ? adminButton(t('activate'), () => activate(s.version, false), { dataset: { action: 'activate' } }) : null));
}

function versions() {
  const active = state.schemes.find((s) => s.status === 'active');
  // The version active before the current one: the latest retired one that was active.
  const previous = active && state.schemes
    .filter((s) => s.status === 'retired' && s.activated_at)
    .sort((a, b) => b.activated_at.localeCompare(a.activated_at))[0];
  const head = el('tr', {}, [t('version'), t('name'), t('status'), t('created'), t('activated'), ''].map((h) => el('th', {}, h)));
  const rollBack = previous
    ? adminButton(t('roll_back', { v: previous.version }), () => activate(previous.version, true), { class: 'danger', id: 'roll-back' })
    : null;
  return el('div', {},
    el('table', { class: 'versions', id: 'scheme-versions' }, el('thead', {}, head), el('tbody', {}, state.schemes.map(versionRow))),
    rollBack ? el('div', { class: 'controls roll-back' }, rollBack) : null);
}

function previewTable() {
  const p = state.preview;
  if (!p) return null;
  const dims = Object.entries(p.dimensions);
  return el('section', { class: 'card', id: 'preview' },
    el('h2', {}, `${t('preview')} · v${p.version}`),
    el('p', { class: 'muted' }, t('customers_evaluated', { n: p.customers, a: p.against_version ?? '—' })),
    el('table', {}, el('tbody', {}, dims.map(([dim, impact]) => el('tr', { dataset: { dimension: dim } },
      el('th', {}, dimLabel(dim)),
      el('td', { class: 'num' }, `${impact.changed} ${t('changed')} / ${impact.unchanged} ${t('unchanged')}`),
      el('td', {}, impact.transitions.length ? impact.transitions.map((tr) => el('div', { class: 'transition' },
        `${classLabel(dim, tr.from)} → ${classLabel(dim, tr.to)}: `, el('strong', {}, tr.count),
        tr.sample_customer_ids.length ? el('span', { class: 'muted' }, ` · ${t('samples')}: `,
          tr.sample_customer_ids.map((id) => el('a', { href: `#/customer/${encodeURIComponent(id)}` }, `${id} `))) : null))
        : el('span', { class: 'muted' }, t('no_changes')))))))); 
}

function jobView() {
  return el('div', { id: 'job' });
}

function renderJob() {
  const box = root.querySelector('#job');
  if (!box || !state.job) return;
  const j = state.job;
  const bar = el('progress', { max: Math.max(j.total, 1), value: j.status === 'succeeded' ? Math.max(j.total, 1) : j.done });
  box.replaceChildren(el('div', { class: 'card job', dataset: { status: j.status } },
    el('strong', {}, `v${j.version} · ${t(`job_${j.status}`)}`), bar,
    el('span', { class: 'muted' }, t('progress', { done: j.done, total: j.total, changes: j.changes }))));
}

function render() {
  if (!root) return;
  editor = el('textarea', { id: 'draft-editor', spellcheck: 'false', rows: 22, 'aria-invalid': state.errors.length ? 'true' : null });
  editor.value = state.source;
  editor.addEventListener('input', () => { state.source = editor.value; }); // kept across re-renders
  const errors = state.errors.length ? el('ul', { class: 'errors', id: 'draft-errors', role: 'alert' },
    el('li', { class: 'summary' }, t('problems', { n: state.errors.length })),
    state.errors.map((e) => el('li', { onclick: () => selectLine(e.line), dataset: { line: e.line ?? '' } },
      e.line ? el('span', { class: 'line' }, t('line', { n: e.line })) : null, el('code', {}, e.path), ` ${e.message}`))) : null;
  const parts = [
    el('h1', {}, t('nav_standards')),
    ctx.admin ? null : el('p', { class: 'notice' }, t('needs_admin')),
    state.error ? el('p', { class: 'error', role: 'alert', id: 'standards-error' }, state.error) : null,
    state.message ? el('p', { class: 'ok', id: 'standards-message' }, state.message) : null,
    jobView(),
    el('h2', {}, t('versions')), el('div', { class: 'scroll' }, versions()),
    previewTable(),
    el('h2', {}, t('edit_draft')),
    el('div', { class: 'editor' }, editor, errors),
    el('div', { class: 'controls' }, adminButton(t('save_draft'), saveDraft, { id: 'save-draft' }))];
  root.replaceChildren(...parts.filter(Boolean));
  renderJob();
  if (state.errors[0]?.line) selectLine(state.errors[0].line, false);
}

function selectLine(line, focus = true) {
  if (!line || !editor) return;
  const lines = editor.value.split('\n');
  const start = lines.slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0);
  if (focus) editor.focus();
  editor.setSelectionRange(start, start + (lines[line - 1] || '').length);
  editor.scrollTop = Math.max(0, (line - 5) * 18);
}
