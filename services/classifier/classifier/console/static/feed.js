// Live feed: the SSE stream of class changes (cookie-authenticated). EventSource resumes
// with Last-Event-ID after a dropped connection; if the browser gives up (the server
// answered with an error), the stream is reopened after the last id seen.
import { api, ApiError, el } from './api.js';
import { classLabel, classesOf, dimLabel, dimensions, formatTime, reasonLabel, ruleLabel, t } from './i18n.js';

const KEEP = 2000;
const REASONS = ['event', 'time', 'scheme_change', 'override', 'merge'];
const state = { changes: [], seen: new Set(), lastId: 0, liveFrom: 0, paused: false, buffered: 0, arrivals: [], source: null, retry: null };
const filter = { dimension: '', cls: '', reason: '' };
let root = null;
let ui = {};

export function init(section) {
  root = section;
  build();
  start();
  setInterval(renderRate, 1000);
}

export function show() {}

export function relabel() { build(); }

export function stop() {
  state.source?.close();
  state.source = null;
  clearTimeout(state.retry);
}

async function start() {
  const { position } = await api('/v1/changes/head');
  state.lastId = Math.max(0, position - 100); // the last 100, then live
  state.liveFrom = position;
  open();
}

function open() {
  stop();
  const source = new EventSource(`/v1/changes/stream?after=${state.lastId}`);
  state.source = source;
  source.onopen = () => setStatus(true);
  source.addEventListener('class_changed', (message) => receive(JSON.parse(message.data)));
  source.onerror = () => {
    setStatus(false);
    // The browser retries by itself (with Last-Event-ID) unless the server answered with
    // an error (a proxy's 502 while the API restarts, or 401 once the session ended).
    if (source.readyState === EventSource.CLOSED) reopenLater();
  };
}

function reopenLater() {
  clearTimeout(state.retry);
  state.retry = setTimeout(() => {
    api('/v1/console/session').then(open, (exc) => {
      if (!(exc instanceof ApiError && exc.status === 401)) reopenLater();
    });
  }, 2000);
}

function receive(change) {
  if (state.seen.has(change.id)) return; // never show one twice
  state.seen.add(change.id);
  state.lastId = Math.max(state.lastId, change.id);
  state.changes.push(change);
  if (change.id > state.liveFrom) state.arrivals.push(Date.now()); // the rate counts live ones
  if (state.changes.length > KEEP) state.seen.delete(state.changes.shift().id);
  if (state.paused) { state.buffered += 1; renderCounts(); return; }
  if (matches(change)) ui.body.prepend(row(change));
  trim();
  renderCounts();
}

function matches(change) {
  return (!filter.dimension || change.dimension === filter.dimension)
    && (!filter.cls || change.to === filter.cls)
    && (!filter.reason || change.reason === filter.reason);
}

function row(change) {
  const link = el('a', { href: `#/customer/${encodeURIComponent(change.customer_id)}` }, change.customer_id);
  return el('tr', { dataset: { id: change.id, dimension: change.dimension, to: change.to, reason: change.reason } },
    el('td', { class: 'time' }, formatTime(change.occurred_at)),
    el('td', { class: 'customer' }, link),
    el('td', { class: 'dimension' }, dimLabel(change.dimension)),
    el('td', { class: 'move' },
      el('span', { class: 'from', dataset: { cls: change.from ?? '' } }, classLabel(change.dimension, change.from)),
      ' → ',
      el('span', { class: 'to', dataset: { cls: change.to } }, classLabel(change.dimension, change.to))),
    el('td', { class: 'reason' }, reasonLabel(change.reason)),
    el('td', { class: 'rule' }, change.rule ? ruleLabel(change.dimension, change.rule) : ''),
    el('td', { class: 'version' }, `v${change.scheme_version}`));
}

function trim() {
  while (ui.body.children.length > 500) ui.body.lastElementChild.remove();
}

function renderAll() {
  const rows = state.changes.filter(matches).slice(-500).reverse().map(row);
  ui.body.replaceChildren(...rows);
  renderCounts();
}

function renderCounts() {
  ui.shown.textContent = t('shown', { n: ui.body.children.length });
  ui.buffer.textContent = state.paused && state.buffered ? t('paused_buffer', { n: state.buffered }) : '';
  ui.empty.hidden = ui.body.children.length > 0;
}

function renderRate() {
  if (!ui.rate) return;
  const cutoff = Date.now() - 60_000;
  while (state.arrivals.length && state.arrivals[0] < cutoff) state.arrivals.shift();
  ui.rate.textContent = t('per_minute', { n: state.arrivals.length });
}

function setStatus(live) {
  if (!ui.status) return;
  ui.status.textContent = live ? t('live') : t('reconnecting');
  ui.status.className = live ? 'status live' : 'status down';
}

function select(name, options, value, onchange) {
  return el('select', { name, onchange: (event) => onchange(event.target.value) },
    el('option', { value: '' }, t('all')),
    options.map(([v, label]) => el('option', { value: v, selected: v === value }, label)));
}

function build() {
  const dims = dimensions().map((d) => [d, dimLabel(d)]);
  const classes = filter.dimension ? classesOf(filter.dimension).map((c) => [c, classLabel(filter.dimension, c)]) : [];
  const pause = el('button', { type: 'button', class: 'secondary', id: 'feed-pause' }, state.paused ? t('resume') : t('pause'));
  pause.addEventListener('click', () => {
    state.paused = !state.paused;
    pause.textContent = state.paused ? t('resume') : t('pause');
    if (!state.paused) { state.buffered = 0; renderAll(); } else renderCounts();
  });
  ui = {
    status: el('span', { class: 'status' }),
    rate: el('span', { class: 'rate', id: 'feed-rate' }),
    shown: el('span', { class: 'muted' }),
    buffer: el('span', { class: 'muted', id: 'feed-buffer' }),
    empty: el('p', { class: 'muted empty' }, t('feed_empty')),
    body: el('tbody', { id: 'feed-rows' }),
  };
  const controls = el('div', { class: 'controls' },
    el('label', {}, t('dimension'), select('dimension', dims, filter.dimension, (v) => { filter.dimension = v; filter.cls = ''; build(); })),
    el('label', {}, t('class'), select('class', classes, filter.cls, (v) => { filter.cls = v; renderAll(); })),
    el('label', {}, t('reason'), select('reason', REASONS.map((r) => [r, reasonLabel(r)]), filter.reason, (v) => { filter.reason = v; renderAll(); })),
    pause, ui.status, ui.rate, ui.shown, ui.buffer);
  const table = el('table', { class: 'feed' },
    el('thead', {}, el('tr', {}, ['time', 'customer', 'dimension', 'change', 'reason', 'rule', 'version'].map((k) => el('th', {}, t(k))))),
    ui.body);
  root.replaceChildren(el('h1', {}, t('nav_feed')), controls, el('div', { class: 'scroll' }, table), ui.empty);
  setStatus(state.source?.readyState === EventSource.OPEN);
  renderAll();
  renderRate();
}
