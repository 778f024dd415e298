// The console's shell: sign-in, navigation by URL hash, language switch.
import { api, ApiError } from './api.js';
import { applyStatic, lang, setLang, setScheme, t } from './i18n.js';
import * as feed from './feed.js';
import * as overview from './overview.js';
import * as customer from './customer.js';
import * as standards from './standards.js';

const VIEWS = { feed, overview, customer, standards };
const ctx = { principal: null, admin: false };
const started = new Set();
let currentView = null;

function show(id) {
  document.querySelectorAll('.view').forEach((section) => { section.hidden = section.id !== `view-${id}`; });
  document.querySelectorAll('#nav a').forEach((a) => a.classList.toggle('active', a.dataset.view === id));
}

function route() {
  if (!ctx.principal) { show('signin'); return; }
  const [, name = 'feed', ...rest] = location.hash.split('/');
  const view = VIEWS[name] ? name : 'feed';
  show(view);
  const section = document.getElementById(`view-${view}`);
  if (!started.has(view)) { started.add(view); VIEWS[view].init(section, ctx); }
  currentView = view;
  VIEWS[view].show(rest.map(decodeURIComponent).join('/'));
}

function renderWho() {
  const who = document.getElementById('who');
  who.textContent = ctx.principal ? `${ctx.principal.key_id} · ${ctx.admin ? t('admin') : t('read_only')}` : '';
}

async function loadScheme() {
  const { schemes } = await api('/v1/schemes');
  const active = schemes.find((s) => s.status === 'active');
  if (active) setScheme((await api(`/v1/schemes/${active.version}`)).spec);
}

async function signedIn(principal) {
  await loadScheme(); // labels and dimensions first: the pages show once they have them
  ctx.principal = principal;
  ctx.admin = principal.scopes.includes('admin');
  document.getElementById('nav').hidden = false;
  document.getElementById('who').hidden = false;
  document.getElementById('sign-out').hidden = false;
  renderWho();
  route();
}

function signedOut(message) {
  ctx.principal = null;
  feed.stop();
  started.clear();
  for (const name of Object.keys(VIEWS)) document.getElementById(`view-${name}`).replaceChildren();
  document.getElementById('nav').hidden = true;
  document.getElementById('who').hidden = true;
  document.getElementById('sign-out').hidden = true;
  document.getElementById('signin-error').textContent = message || '';
  show('signin');
}

document.getElementById('signin').addEventListener('submit', async (event) => {
  event.preventDefault();
  const input = document.getElementById('signin-key');
  const error = document.getElementById('signin-error');
  error.textContent = '';
  try {
    const principal = await api('/v1/console/session', { method: 'POST', body: { key: input.value.trim() } });
    input.value = '';
    await signedIn(principal);
  } catch (exc) {
    error.textContent = exc instanceof ApiError && exc.status === 403 ? t('no_scope') : t('bad_key');
  }
});

document.getElementById('sign-out').addEventListener('click', async () => {
  try { await api('/v1/console/session', { method: 'DELETE' }); } finally { signedOut(); }
});

document.getElementById('lang').addEventListener('click', () => {
  setLang(lang() === 'zh' ? 'en' : 'zh');
  applyStatic();
  renderWho();
  for (const name of started) VIEWS[name].relabel();
});

window.addEventListener('console:expired', () => { if (ctx.principal) signedOut(t('expired')); });
window.addEventListener('hashchange', route);

setLang(lang());
applyStatic();
api('/v1/console/session').then(signedIn, () => signedOut());
