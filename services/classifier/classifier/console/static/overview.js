// Overview: per dimension, customers per class now (bars) and over the last 30 days
// (an Apache ECharts line chart), and the from -> to moves of a period (a sankey and
// the same numbers as a list).
import { api, el } from './api.js';
import { classLabel, classesOf, dimLabel, dimensions, formatTime, lang, t } from './i18n.js';

const PALETTE = ['#2f6fde', '#e8893a', '#3aa57a', '#c9485b', '#8a5cd0', '#7a8591', '#d1b43c'];
let root = null;
let charts = [];
const state = { counts: {}, daily: {}, flowDimension: '', flowDays: 30, flows: null };

export function init(section) {
  root = section;
  window.addEventListener('resize', () => charts.forEach((c) => c.resize()));
}

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

function chart(node, option) {
  if (!window.echarts) return; // the vendored library did not load: the lists still show
  const instance = window.echarts.init(node, null, { renderer: 'svg' });
  instance.setOption({ animation: false, color: PALETTE, textStyle: { fontFamily: 'inherit' }, ...option });
  charts.push(instance);
}

function trendOption(dim) {
  const days = state.daily[dim] || [];
  const day = (iso) => formatTime(iso).split(/[ ,]/)[0];
  return {
    grid: { left: 36, right: 8, top: 28, bottom: 20 },
    tooltip: { trigger: 'axis' },
    legend: { type: 'scroll', top: 0, textStyle: { fontSize: 11 } },
    xAxis: { type: 'category', data: days.map((d) => day(d.at)), axisLabel: { fontSize: 10 } },
    yAxis: { type: 'value', minInterval: 1, axisLabel: { fontSize: 10 } },
    series: classesOf(dim).map((cls) => ({
      name: classLabel(dim, cls), type: 'line', showSymbol: false, data: days.map((d) => d.counts[cls] || 0),
    })),
  };
}

function sankeyOption(dim, flows) {
  // Sources and targets are separate nodes (a class on both sides is no cycle).
  const source = (cls) => `${cls ?? ''}\u0001from`;
  const target = (cls) => `${cls}\u0001to`;
  const names = new Map();
  for (const f of flows) {
    names.set(source(f.from), classLabel(dim, f.from));
    names.set(target(f.to), classLabel(dim, f.to));
  }
  return {
    tooltip: { trigger: 'item' },
    series: [{
      type: 'sankey', left: 8, right: 90, top: 8, bottom: 8, nodeGap: 10, draggable: false,
      emphasis: { focus: 'adjacency' },
      data: [...names.keys()].map((name) => ({ name })),
      links: flows.map((f) => ({ source: source(f.from), target: target(f.to), value: f.count })),
      label: { formatter: (p) => names.get(p.name) ?? p.name },
      tooltip: { formatter: (p) => (p.dataType === 'edge'
        ? `${names.get(p.data.source)} → ${names.get(p.data.target)}: ${p.data.value}`
        : `${names.get(p.name)}: ${p.value}`) },
      lineStyle: { color: 'gradient', opacity: 0.35 },
    }],
  };
}

function countsCard(dim) {
  const rows = state.counts[dim] || [];
  const byClass = Object.fromEntries(rows.map((r) => [r.class, r.count]));
  const total = rows.reduce((n, r) => n + r.count, 0);
  const classes = [...classesOf(dim), ...Object.keys(byClass).filter((c) => !classesOf(dim).includes(c))];
  const trend = el('div', { class: 'trend', role: 'img', 'aria-label': `${dimLabel(dim)} · ${t('trend')}` });
  const card = el('article', { class: 'card overview-card', dataset: { dimension: dim } },
    el('header', {}, el('span', { class: 'dim' }, dimLabel(dim)), el('span', { class: 'muted' }, `${t('total')} ${total}`)),
    el('div', { class: 'bars' }, classes.map((cls, k) => {
      const n = byClass[cls] || 0;
      const bar = el('span', { class: 'bar' });
      bar.style.width = `${total ? (100 * n) / total : 0}%`;
      bar.style.background = PALETTE[k % PALETTE.length];
      return el('div', { class: 'bar-row', dataset: { cls } }, el('span', { class: 'label' }, classLabel(dim, cls)), el('span', { class: 'track' }, bar), el('span', { class: 'num' }, n));
    })),
    el('p', { class: 'muted small' }, t('trend')), trend);
  return { card, draw: () => chart(trend, trendOption(dim)) };
}

function flowsView() {
  const flows = state.flows?.flows || [];
  const max = Math.max(1, ...flows.map((f) => f.count));
  const dim = state.flowDimension;
  const dimSelect = el('select', { name: 'flow-dimension', onchange: async (e) => { state.flowDimension = e.target.value; await loadFlows(); render(); } },
    dimensions().map((d) => el('option', { value: d, selected: d === dim }, dimLabel(d))));
  const daySelect = el('select', { name: 'flow-days', onchange: async (e) => { state.flowDays = Number(e.target.value); await loadFlows(); render(); } },
    [1, 7, 30, 90].map((n) => el('option', { value: n, selected: n === state.flowDays }, t('days', { n }))));
  const sankey = el('div', { class: 'sankey', role: 'img', 'aria-label': t('flows') });
  const section = el('section', { class: 'card', id: 'flows' },
    el('h2', {}, t('flows')),
    el('div', { class: 'controls' }, el('label', {}, t('dimension'), dimSelect), el('label', {}, t('period'), daySelect)),
    flows.length ? sankey : null,
    flows.length ? el('div', { class: 'bars' }, flows.map((f) => {
      const bar = el('span', { class: 'bar' });
      bar.style.width = `${(100 * f.count) / max}%`;
      return el('div', { class: 'bar-row flow', dataset: { from: f.from ?? '', to: f.to } },
        el('span', { class: 'label' }, `${classLabel(dim, f.from)} → ${classLabel(dim, f.to)}`), el('span', { class: 'track' }, bar), el('span', { class: 'num' }, f.count));
    })) : el('p', { class: 'muted' }, t('no_flows')));
  return { section, draw: () => { if (flows.length) chart(sankey, sankeyOption(dim, flows)); } };
}

function render() {
  if (!root) return;
  charts.forEach((c) => c.dispose());
  charts = [];
  const cards = dimensions().map(countsCard);
  const flows = flowsView();
  root.replaceChildren(
    el('h1', {}, t('nav_overview')),
    el('h2', {}, t('counts_now')),
    el('div', { class: 'grid' }, cards.map((c) => c.card)),
    flows.section);
  if (!root.hidden) [...cards, flows].forEach((part) => part.draw());
  root.dataset.lang = lang();
}
