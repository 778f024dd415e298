// Words of the console in Chinese (zh-CN) and English. Dimension names come from the
// active scheme's labels (the scheme's own Chinese terms); class names of the default
// scheme have their established Chinese terms here, other schemes fall back to the
// scheme's rule labels, then to the class id.

const WORDS = {
  en: {
    title: 'Customer classifier console',
    nav_feed: 'Live feed', nav_overview: 'Overview', nav_customer: 'Customer',
    nav_standards: 'Standards', sign_out: 'Sign out', sign_in: 'Sign in',
    sign_in_title: 'Sign in with an API key',
    sign_in_help: 'A key with the read scope can watch; the admin scope can change the standard.',
    api_key: 'API key', bad_key: 'Unknown or revoked key.', no_scope: 'This key may not use the console (read or admin scope needed).',
    expired: 'Your session ended. Sign in again.',
    read_only: 'read only', admin: 'admin',
    all: 'All', dimension: 'Dimension', class: 'Class', reason: 'Reason', time: 'Time',
    customer: 'Customer', change: 'From → to', rule: 'Rule', version: 'Version',
    pause: 'Pause', resume: 'Resume', per_minute: '{n} / min', live: 'live',
    reconnecting: 'reconnecting…', paused_buffer: '{n} new while paused',
    feed_empty: 'Waiting for class changes…', shown: '{n} shown',
    reason_event: 'event', reason_time: 'time', reason_scheme_change: 'standard changed',
    reason_override: 'override', reason_merge: 'merge', reason_unmerge: 'unmerge', reason_initial: 'first class',
    none: '(none)',
    search_customer: 'Customer id', search: 'Open', not_found: 'No customer with this id.',
    since: 'since', explanation: 'Why', features: 'Feature values', next_step: 'What it would take',
    kept_by: 'kept by {k}; the rules say {c}', override: 'manual override',
    timeline: 'History', until: 'until', now: 'now', aggregates: 'Orders and calls',
    order_count: 'orders', net_revenue: 'net revenue', call_count: 'calls', last_order_at: 'last order',
    merged_into: 'This id was merged into {id}.', scheme_version: 'standard v{v}',
    versions: 'Versions', name: 'Name', status: 'Status', created: 'Created', activated: 'Activated',
    status_active: 'active', status_draft: 'draft', status_retired: 'retired',
    edit_draft: 'Edit a draft', load_into_editor: 'Edit', save_draft: 'Validate and save draft',
    draft_saved: 'Draft v{v} saved.', problems: '{n} problem(s)', line: 'line {n}',
    preview: 'Preview impact', activate: 'Activate', roll_back: 'Roll back to v{v}',
    customers_evaluated: '{n} customers evaluated against v{a}', changed: 'changed', unchanged: 'unchanged',
    samples: 'samples', no_changes: 'no class would change',
    confirm: 'Confirm', cancel: 'Cancel',
    confirm_activate: 'Activate standard v{v}? Every customer is re-evaluated; changes are announced.',
    confirm_roll_back: 'Roll back to standard v{v}? Every customer is re-evaluated under it.',
    confirm_save: 'Save this draft as a new version? Nothing changes until it is activated.',
    progress: '{done} of {total} customers, {changes} changes',
    job_succeeded: 'finished', job_failed: 'failed', job_running: 'running', job_queued: 'queued', job_cancelled: 'cancelled',
    needs_admin: 'Needs an admin key.', forbidden: 'Refused: this key lacks the admin scope.',
    counts_now: 'Customers per class now', trend: 'Last 30 days', flows: 'Moves from → to',
    period: 'Period', days: 'last {n} days', no_flows: 'No moves in this period.', total: 'total',
    error: 'Something went wrong: {m}', language: '中文',
  },
  zh: {
    title: '客户分级运营控制台',
    nav_feed: '实时变动', nav_overview: '总览', nav_customer: '客户', nav_standards: '分级标准',
    sign_out: '退出', sign_in: '登录', sign_in_title: '使用 API 密钥登录',
    sign_in_help: '只读（read）密钥可以查看；管理（admin）密钥可以修改分级标准。',
    api_key: 'API 密钥', bad_key: '密钥无效或已吊销。', no_scope: '此密钥无权使用控制台（需要 read 或 admin 权限）。',
    expired: '会话已结束，请重新登录。',
    read_only: '只读', admin: '管理员',
    all: '全部', dimension: '维度', class: '类别', reason: '原因', time: '时间',
    customer: '客户', change: '从 → 到', rule: '规则', version: '版本',
    pause: '暂停', resume: '继续', per_minute: '每分钟 {n} 条', live: '实时',
    reconnecting: '正在重连…', paused_buffer: '暂停期间新增 {n} 条',
    feed_empty: '等待分类变动…', shown: '显示 {n} 条',
    reason_event: '事件', reason_time: '时间推移', reason_scheme_change: '标准变更',
    reason_override: '人工指定', reason_merge: '合并', reason_unmerge: '拆分', reason_initial: '首次分类',
    none: '（无）',
    search_customer: '客户编号', search: '查看', not_found: '没有此编号的客户。',
    since: '起始', explanation: '原因', features: '特征值', next_step: '升级所需',
    kept_by: '因 {k} 保持不变；规则结果为 {c}', override: '人工指定',
    timeline: '历史', until: '至', now: '至今', aggregates: '订单与通话',
    order_count: '订单数', net_revenue: '净收入', call_count: '通话数', last_order_at: '最近下单',
    merged_into: '此编号已合并到 {id}。', scheme_version: '标准 v{v}',
    versions: '版本', name: '名称', status: '状态', created: '创建时间', activated: '启用时间',
    status_active: '生效中', status_draft: '草稿', status_retired: '已停用',
    edit_draft: '编辑草稿', load_into_editor: '编辑', save_draft: '校验并保存草稿',
    draft_saved: '草稿 v{v} 已保存。', problems: '{n} 处问题', line: '第 {n} 行',
    preview: '预览影响', activate: '启用', roll_back: '回滚到 v{v}',
    customers_evaluated: '已按 v{a} 对比评估 {n} 位客户', changed: '变动', unchanged: '不变',
    samples: '示例', no_changes: '没有客户会变动',
    confirm: '确认', cancel: '取消',
    confirm_activate: '启用标准 v{v}？所有客户将被重新评估，变动会被发布。',
    confirm_roll_back: '回滚到标准 v{v}？所有客户将按该版本重新评估。',
    confirm_save: '将此草稿保存为新版本？启用前不会有任何变化。',
    progress: '{done} / {total} 位客户，{changes} 处变动',
    job_succeeded: '已完成', job_failed: '失败', job_running: '进行中', job_queued: '排队中', job_cancelled: '已取消',
    needs_admin: '需要管理员密钥。', forbidden: '被拒绝：此密钥没有 admin 权限。',
    counts_now: '当前各类客户数', trend: '近 30 天', flows: '类别流转（从 → 到）',
    period: '时间段', days: '近 {n} 天', no_flows: '该时间段内没有流转。', total: '合计',
    error: '出错了：{m}', language: 'English',
  },
};

// The default scheme's classes in the words the sales teams use.
const ZH_CLASSES = {
  abc_tier: { A: 'A类客户', B: 'B类客户', C: 'C类客户' },
  value: { high: '高价值客户', medium: '中价值客户', low: '低价值客户', negative: '负价值客户' },
  purchase_behavior: { regular: '常规购买者', occasional: '偶尔购买者', potential: '潜在客户', churned: '流失客户' },
  loyalty: { high: '高忠诚度', medium: '中忠诚度', low: '低忠诚度', none: '无忠诚度' },
  lifecycle_stage: { won: '成交客户', deep_intent: '深度意向', initial_intent: '初步意向', potential: '潜在客户' },
  relationship: { strategic: '战略客户', priority: '优先客户', ordinary: '普通客户' },
  industry: { manufacturing: '制造业', retail: '批发和零售业', services: '服务业', technology: '信息技术', other: '其他' },
  company_size: { large: '大型企业', sme: '中小企业', micro: '微型企业', unknown: '未知' },
  '@merged': { merged: '已合并' },
  need_type: { functional: '功能需求', quality: '质量需求', emotional: '情感需求', social: '社交需求', unknown: '未知' },
};
const EN_CLASSES = { abc_tier: { A: 'A-tier', B: 'B-tier', C: 'C-tier' }, company_size: { sme: 'SME' } };
const EN_DIMENSIONS = { '@merged': 'Merge', abc_tier: 'ABC tier', purchase_behavior: 'Purchase behaviour', lifecycle_stage: 'Funnel stage', relationship: 'Relationship depth', company_size: 'Company size' };

let current = localStorage.getItem('console.lang') === 'en' ? 'en' : 'zh';
let scheme = null; // the active scheme's validated spec

export function lang() { return current; }

export function setLang(value) {
  current = value === 'en' ? 'en' : 'zh';
  localStorage.setItem('console.lang', current);
  document.documentElement.lang = current === 'zh' ? 'zh-CN' : 'en';
}

export function setScheme(spec) { scheme = spec; }
export function dimensions() { return scheme ? Object.keys(scheme.dimensions) : []; }
export function classesOf(dim) { return scheme?.dimensions?.[dim]?.classes ?? []; }

export function t(key, params = {}) {
  const text = WORDS[current][key] ?? WORDS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(params[name] ?? ''));
}

function humanize(id) {
  const words = String(id).replace(/_/g, ' ');
  return words.charAt(0).toUpperCase() + words.slice(1);
}

export function dimLabel(dim) {
  if (current === 'zh') return scheme?.dimensions?.[dim]?.label || ZH_DIMENSIONS[dim] || dim;
  return EN_DIMENSIONS[dim] || humanize(dim);
}
const ZH_DIMENSIONS = { '@merged': '合并' };

export function classLabel(dim, cls) {
  if (cls === null || cls === undefined) return t('none');
  if (current === 'en') return EN_CLASSES[dim]?.[cls] || humanize(cls);
  if (ZH_CLASSES[dim]?.[cls]) return ZH_CLASSES[dim][cls];
  const rule = scheme?.dimensions?.[dim]?.rules?.find((r) => r.class === cls && r.label);
  return rule ? rule.label : cls;
}

export function ruleLabel(dim, name) {
  const rule = scheme?.dimensions?.[dim]?.rules?.find((r) => r.name === name);
  return current === 'zh' && rule?.label ? `${rule.label} (${name})` : name;
}

export function reasonLabel(reason) { return t(`reason_${reason}`) === `reason_${reason}` ? reason : t(`reason_${reason}`); }

export function formatTime(iso) {
  if (!iso) return '';
  return new Date(iso).toLocaleString(current === 'zh' ? 'zh-CN' : 'en-GB', { hour12: false });
}

export function applyStatic(root = document) {
  root.querySelectorAll('[data-i18n]').forEach((el) => { el.textContent = t(el.dataset.i18n); });
  root.querySelectorAll('[data-i18n-placeholder]').forEach((el) => { el.placeholder = t(el.dataset.i18nPlaceholder); });
  document.title = t('title');
}
