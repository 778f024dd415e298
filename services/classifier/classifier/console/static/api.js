// Calls to the classifier API with the session cookie; state-changing calls repeat the
// CSRF cookie's value in X-CSRF-Token (the server compares it with the session's).

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

export function csrfToken() {
  const found = document.cookie.match(/(?:^|;\s*)classifier_csrf=([^;]+)/);
  return found ? decodeURIComponent(found[1]) : '';
}

export async function api(path, { method = 'GET', body, type } = {}) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET') headers['X-CSRF-Token'] = csrfToken();
  let payload;
  if (typeof body === 'string') {
    headers['Content-Type'] = type || 'application/yaml';
    payload = body;
  } else if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  const response = await fetch(path, { method, headers, body: payload, credentials: 'same-origin' });
  if (response.status === 204) return null;
  const isJson = (response.headers.get('content-type') || '').includes('json');
  const data = isJson ? await response.json() : await response.text();
  if (!response.ok) {
    if (response.status === 401 && path !== '/v1/console/session') {
      window.dispatchEvent(new CustomEvent('console:expired'));
    }
    throw new ApiError(response.status, isJson ? data : { detail: data });
  }
  return data;
}

// Build DOM without innerHTML: el('td', {class: 'x'}, 'text', child).
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'class') node.className = value;
    else if (name === 'dataset') Object.assign(node.dataset, value);
    else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else if (value === true) node.setAttribute(name, '');
    else node.setAttribute(name, value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// A confirmation in the page's own dialog (resolves true on confirm).
export function confirmAction(message, labels) {
  const dialog = document.getElementById('confirm');
  dialog.querySelector('.message').textContent = message;
  dialog.querySelector('.ok').textContent = labels.ok;
  dialog.querySelector('.cancel').textContent = labels.cancel;
  return new Promise((resolve) => {
    dialog.onclose = () => resolve(dialog.returnValue === 'ok');
    dialog.returnValue = '';
    dialog.showModal();
  });
}
