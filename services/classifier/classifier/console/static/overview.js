// Overview: per dimension, customers per class now and over the last 30 days (an SVG
// line chart drawn here, no chart library), and the from -> to moves of a period.
import { api, el } from './api.js';
import { classLabel, classesOf, dimLabel, dimensions, t } from './i18n.js';

const SVG = 'http://www.w3.org/2000/svg';
const PALETTE = ['#2f6fde', '#e8893a', '#3aa57a', '#c9485b', '#8a5cd0', '#7a8591', '#d1b43c'];
let root = null;
const state = { counts: {}, daily: {}, flowDimension: '', flowDays: 30, flows: null };

export function init(section) { root = section; }

export async function show() {
  const [{ dimensions: counts }, daily] = await Promise.all([
    api('/v1/classes/counts'),
    Promise.all(dimensions().map((d) => api(`/v1/classes/${encodeURIComponent(d)}/daily?days=30`))),
  ]);
  state.counts = counts;
  state.daily = Object.fromEntries(daily.map((d) => [d.dimension, d.days]));
  state.flowDimension ||= dimensions()[0] || '';
  await loadFlows();
  render();
}

export function relabel() { render(); }

async function loadFlows() {
  if (!state.flowDimension) return;
  const until = new Date();
  const since = new Date(until.getTime() - state.flowDays * 86_400_000);
  const query = `since=${encodeURIComponent(since.toISOString())}&until=${encodeURIComponent(until.toISOString())}`;
  state.flows = await api(`/v1/classes/${encodeURIComponent(state.flowDimension)}/flows?${query}`);
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  node.append(...children);
  return node;
}

function trendChart(dim) {
  const days = state.daily[dim] || [];
  const classes = classesOf(dim);
  const width = 320; const height = 120; const pad = 4;
  const max = Math.max(1, ...days.flatMap((d) => Object.values(d.counts)));
  const x = (i) => pad + (i * (width - 2 * pad)) / Math.max(1, days.length - 1);
  const y = (n) => height - pad - (n * (height - 2 * pad)) / max;
  const lines = classes.map((cls, k) => svg('polyline', {
    points: days.map((d, i) => `${x(i).toFixed(1)},${y(d.counts[cls] || 0).toFixed(1)}`).join(' '),
    fill: 'none', stroke: PALETTE[k % PALETTE.length], 'stroke-width': '2',
  }, svg('title', {}, classLabel(dim, cls))));
  return svg('svg', { viewBox: `0 0 ${width} ${height}`, class: 'trend', role: 'img', 'aria-label': `${dimLabel(dim)} · ${t('trend')}` },
    svg('line', { x1: pad, x2: width - pad, y1: height - pad, y2: height - pad, stroke: '#ccd' }), ...lines);
}

function countsCard(dim) {
  const rows = state.counts[dim] || [];
  const byClass = Object.fromEntries(rows.map((r) => [r.class, r.count]));
  const total = rows.reduce((n, r) => n + r.count, 0);
  const classes = [...classesOf(dim), ...Object.keys(byClass).filter((c) => !classesOf(dim).includes(c))];
  return el('article', { class: 'card overview-card', dataset: { dimension: dim } },
    el('header', {}, el('span', { class: 'dim' }, dimLabel(dim)), el('span', { class: 'muted' }, `${t('total')} ${total}`)),
    el('div', { class: 'bars' }, classes.map((cls, k) => {
      const n = byClass[cls] || 0;
      const bar = el('span', { class: 'bar' });
      bar.style.width = `${total ? (100 * n) / total : 0}%`;
      bar.style.background = PALETTE[k % PALETTE.length];
      return el('div', { class: 'bar-row', dataset: { cls } }, el('span', { class: 'label' }, classLabel(dim, cls)), el('span', { class: 'track' }, bar), el('span', { class: 'num' }, n));
    })),
    el('p', { class: 'muted small' }, t('trend')), trendChart(dim));
}

function flowsView() {
  const flows = state.flows?.flows || [];
  const max = Math.max(1, ...flows.map((f) => f.count));
  const dim = state.flowDimension;
  const dimSelect = el('select', { name: 'flow-dimension', onchange: async (e) => { state.flowDimension = e.target.value; await loadFlows(); render(); } },
    dimensions().map((d) => el('option', { value: d, selected: d === dim }, dimLabel(d))));
  const daySelect = el('select', { name: 'flow-days', onchange: async (e) => { state.flowDays = Number(e.target.value); await loadFlows(); render(); } },
    [1, 7, 30, 90].map((n) => el('option', { value: n, selected: n === state.flowDays }, t('days', { n }))));
  return el('section', { class: 'card', id: 'flows' },
    el('h2', {}, t('flows')),
    el('div', { class: 'controls' }, el('label', {}, t('dimension'), dimSelect), el('label', {}, t('period'), daySelect)),
    flows.length ? el('div', { class: 'bars' }, flows.map((f) => {
      const bar = el('span', { class: 'bar' });
      bar.style.width = `${(100 * f.count) / max}%`;
      return el('div', { class: 'bar-row flow', dataset: { from: f.from ?? '', to: f.to } },
        el('span', { class: 'label' }, `${classLabel(dim, f.from)} → ${classLabel(dim, f.to)}`), el('span', { class: 'track' }, bar), el('span', { class: 'num' }, f.count));
    })) : el('p', { class: 'muted' }, t('no_flows')));
}

function render() {
  if (!root) return;
  root.replaceChildren(
    el('h1', {}, t('nav_overview')),
    el('h2', {}, t('counts_now')),
    el('div', { class: 'grid' }, dimensions().map(countsCard)),
    flowsView());
}
