// Customer page: classes with their explanations, what it would take to move up, history.
import { api, ApiError, el } from './api.js';
import { classLabel, dimLabel, dimensions, formatTime, lang, reasonLabel, ruleLabel, t } from './i18n.js';

let root = null;
let current = { id: '', customer: null, history: null, error: '' };

export function init(section) { root = section; form = null; }

export async function show(id) {
  if (id && id !== current.id) await load(id);
  render();
}

export function relabel() { render(); }

async function load(id) {
  current = { id, customer: null, history: null, error: '' };
  try {
    const path = `/v1/customers/${encodeURIComponent(id)}`;
    current.customer = await api(path);
    current.history = await api(`${path}/history`);
  } catch (exc) {
    current.error = exc instanceof ApiError && exc.status === 404 ? t('not_found') : t('error', { m: exc.message });
  }
}

let form = null;

// One search form for the page's life: a re-render never clears what is being typed.
function searchForm() {
  if (!form) {
    const input = el('input', { id: 'customer-id', name: 'id', required: true });
    form = el('form', { class: 'controls', onsubmit: (event) => {
      event.preventDefault();
      location.hash = `#/customer/${encodeURIComponent(input.value.trim())}`;
    } }, input, el('button', { type: 'submit' }));
  }
  const [input, button] = form.children;
  if (current.id && document.activeElement !== input) input.value = current.id;
  input.placeholder = t('search_customer');
  button.textContent = t('search');
  return form;
}

function value(v) {
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : v.toFixed(2);
  return v === null || v === undefined ? '—' : String(v);
}

// The `next` answer (when the API gives one): the next better class and what it takes.
export function nextLine(answer) {
  const next = answer?.next;
  if (!next || !next.text) return null;
  const text = next.text[lang()] ?? next.text.en ?? Object.values(next.text)[0];
  return el('p', { class: 'next' }, el('strong', {}, `${t('next_step')}: `), text);
}

export function classCard(dim, answer) {
  const explanation = answer.explanation || {};
  const features = Object.entries(explanation.features || {});
  return el('article', { class: 'card class-card', dataset: { dimension: dim, cls: answer.class } },
    el('header', {}, el('span', { class: 'dim' }, dimLabel(dim)), el('span', { class: 'cls' }, classLabel(dim, answer.class))),
    el('p', { class: 'muted' }, `${t('since')} ${formatTime(answer.since)} · ${t('scheme_version', { v: answer.scheme_version })}`),
    el('p', { class: 'rule' }, el('strong', {}, `${t('rule')}: `), explanation.kind === 'override' ? t('override') : ruleLabel(dim, answer.rule)),
    el('p', { class: 'why' }, el('strong', {}, `${t('explanation')}: `), explanation.summary || ''),
    explanation.kept_by ? el('p', { class: 'muted' }, t('kept_by', { k: explanation.kept_by, c: classLabel(dim, explanation.would_be) })) : null,
    features.length ? el('dl', { class: 'features' }, features.map(([name, v]) => [el('dt', {}, name), el('dd', {}, value(v))])) : null,
    nextLine(answer));
}

function timeline(periods) {
  const sorted = [...periods].sort((a, b) => b.valid_from.localeCompare(a.valid_from));
  return el('ol', { class: 'timeline', id: 'customer-history' }, sorted.map((p) => el('li', { dataset: { dimension: p.dimension } },
    el('span', { class: 'when' }, `${formatTime(p.valid_from)} ${t('until')} ${p.valid_to ? formatTime(p.valid_to) : t('now')}`),
    el('span', {}, `${dimLabel(p.dimension)}: `, el('strong', {}, classLabel(p.dimension, p.class))),
    el('span', { class: 'muted' }, ` · ${reasonLabel(p.reason)} · v${p.scheme_version}`))));
}

function render() {
  const parts = [el('h1', {}, t('nav_customer')), searchForm()];
  if (current.error) parts.push(el('p', { class: 'error', role: 'alert' }, current.error));
  const c = current.customer;
  if (c) {
    const order = dimensions().filter((d) => c.classes[d]).concat(Object.keys(c.classes).filter((d) => !dimensions().includes(d)));
    const agg = c.aggregates;
    parts.push(
      el('h2', { id: 'customer-title' }, c.id),
      c.merged_into ? el('p', { class: 'muted' }, t('merged_into', { id: c.id })) : null,
      el('p', { class: 'muted' }, `${t('order_count')} ${agg.order_count} · ${t('net_revenue')} ${agg.net_revenue} · ${t('call_count')} ${agg.call_count}${agg.last_order_at ? ` · ${t('last_order_at')} ${formatTime(agg.last_order_at)}` : ''}`),
      el('div', { class: 'grid', id: 'customer-classes' }, order.map((d) => classCard(d, c.classes[d]))),
      el('h2', {}, t('timeline')),
      timeline(current.history?.periods || []));
  }
  root.replaceChildren(...parts.filter(Boolean));
}
