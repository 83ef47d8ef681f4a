// The console's shell: sign-in, navigation, breadcrumbs, and the page router.
// Routes are #/<page>/<node code>; every page works on the chosen node's subtree, and the
// API decides what the token may see — the console shows only what it is given.
import { createApi } from './api.js';
import { KIND, ROLE } from './format.js';
import { followFeed } from './live.js';
import { PAGES } from './pages/index.js';
import { currentSession, signOut, storeToken, takeTokenFromFragment } from './session.js';
import { h, showError } from './ui.js';

const POLL_SECONDS = 30;

function parseRoute() {
  const [, page, code] = window.location.hash.match(/^#\/([\w-]*)\/?([^/?#]*)/) || [];
  return { page: page || PAGES[0].id, code: code ? decodeURIComponent(code) : null };
}

export function href(page, code) {
  return `#/${page}/${encodeURIComponent(code)}`;
}

function signInScreen(message) {
  document.getElementById('who').hidden = true;
  document.getElementById('context').hidden = true;
  document.getElementById('nav').replaceChildren();
  const input = h('textarea', { id: 'token-input', rows: 4, 'aria-label': '访问令牌', placeholder: 'eyJ…' });
  const view = document.getElementById('view');
  view.replaceChildren(
    h('section', { class: 'panel signin' },
      h('div', { class: 'panel-title' }, h('h1', {}, '登录工作台')),
      message ? h('p', { class: 'alert', role: 'alert' }, message) : null,
      h('p', {}, '请从单位统一身份认证（单点登录）入口进入工作台；登录链接形如 ', h('code', {}, '/console/#token=…'), '，令牌只保存在本浏览器标签页中，关闭即失效。'),
      h('ol', { class: 'small' },
        h('li', {}, '开发环境：运行 ', h('code', {}, 'make run'), '（即 ', h('code', {}, 'civic dev'), '），打开它打印的 “Console” 登录链接；'),
        h('li', {}, '或用 ', h('code', {}, 'civic token --scope <节点代码> --role <角色>'), ' 签发令牌，粘贴到下面。')),
      h('form', { id: 'token-form', class: 'toolbar' },
        h('label', { class: 'field grow' }, '访问令牌', input),
        h('button', { type: 'submit', class: 'btn-primary' }, '登录'))));
  document.getElementById('token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    if (!input.value.trim()) return;
    storeToken(input.value);
    start();
  });
}

function start() {
  const session = currentSession();
  if (!session) {
    signInScreen(null);
    return;
  }
  let seq = 0; // bumped by every navigation: a page still loading for an older one stops
  const api = createApi(session, (error) => {
    signOut();
    stopLive();
    seq += 1; // whatever page is loading stops drawing
    window.onhashchange = null;
    signInScreen(`登录已失效，请重新登录。（${error.message}）`);
  });
  const names = new Map();
  const liveListeners = new Set();
  let liveState = 'off';
  const liveStateListeners = new Set();
  const setLiveState = (s) => { liveState = s; for (const f of liveStateListeners) f(s); };
  let stopLive = () => {};

  // Live updates: the SSE feed for roles that may follow it, else a periodic refresh.
  if (session.has('admin', 'integrator')) {
    stopLive = followFeed(session, {
      onEvent: (e) => { for (const f of liveListeners) f(e); },
      onState: (s) => {
        setLiveState(s);
        if (s === 'denied') startPolling();
      },
    });
  } else {
    startPolling();
  }
  function startPolling() {
    setLiveState('poll');
    const timer = setInterval(() => { for (const f of liveListeners) f({ position: null }); }, POLL_SECONDS * 1000);
    stopLive = () => clearInterval(timer);
  }

  document.getElementById('who').hidden = false;
  document.getElementById('who-roles').textContent = session.roles.map((r) => ROLE[r] || r).join('、');
  document.getElementById('sign-out').onclick = () => {
    signOut();
    stopLive();
    history.replaceState(null, '', window.location.pathname);
    signInScreen('已退出登录。');
  };

  const pages = PAGES.filter((p) => !p.roles || session.has(...p.roles));
  let cleanup = null;

  async function nodeInfo(code) {
    let last;
    for (let attempt = 0; attempt < 3; attempt += 1) {
      try {
        const node = await api.get(`/v1/nodes/${encodeURIComponent(code)}`);
        names.set(node.code, node.name);
        return node;
      } catch (err) {
        last = err;
        if (err.status !== 503) throw err;
        await new Promise((r) => setTimeout(r, 400));
      }
    }
    throw last;
  }

  async function nameOf(code) {
    if (!names.has(code)) {
      try { await nodeInfo(code); } catch { names.set(code, code); }
    }
    return names.get(code);
  }

  // Names of a subtree's nodes, for tables that carry only codes (one request, two levels).
  const learned = new Set();
  async function learnNames(code) {
    if (learned.has(code)) return;
    learned.add(code);
    const walk = (n) => { names.set(n.code, n.name); n.children.forEach(walk); };
    try { walk(await api.get(`/v1/nodes/${encodeURIComponent(code)}/tree?depth=2`)); } catch { learned.delete(code); }
  }

  async function renderContext(page, node) {
    const crumbs = document.getElementById('crumbs');
    const chain = [...node.path.filter((c) => c !== node.code), node.code];
    const labels = await Promise.all(chain.map(nameOf));
    crumbs.replaceChildren(...chain.flatMap((code, i) => {
      const last = i === chain.length - 1;
      const item = last
        ? h('span', { 'aria-current': 'page' }, labels[i])
        : h('a', { href: href(page.id, code) }, labels[i]);
      return i === 0 ? [item] : [h('span', { class: 'sep', 'aria-hidden': 'true' }, '›'), item];
    }));
    const select = document.getElementById('children-jump');
    select.replaceChildren(h('option', { value: '' }, '进入下级…'));
    select.disabled = true;
    try {
      const children = await api.get(`/v1/nodes?parent=${encodeURIComponent(node.code)}&limit=500`);
      for (const c of children.items) {
        names.set(c.code, c.name);
        select.append(h('option', { value: c.code }, `${c.name}（${KIND[c.kind] || c.kind}${c.closed ? '，已撤销' : ''}）`));
      }
      select.disabled = children.items.length === 0;
      if (children.items.length === 0) select.firstChild.textContent = '无下级';
    } catch { /* the breadcrumbs still work */ }
    select.onchange = () => { if (select.value) window.location.hash = href(page.id, select.value); };
    document.getElementById('context').hidden = false;
  }

  async function route() {
    const mine = ++seq;
    const { page: pageId, code } = parseRoute();
    const page = pages.find((p) => p.id === pageId) || pages[0];
    const target = code || session.scope;
    if (!code || page.id !== pageId) {
      history.replaceState(null, '', href(page.id, target));
    }
    if (cleanup) { try { cleanup(); } catch { /* ignore */ } cleanup = null; }
    showError(null);
    const nav = document.getElementById('nav');
    nav.replaceChildren(...pages.map((p) => h('a', { href: href(p.id, target), 'aria-current': p.id === page.id ? 'page' : null }, p.title)));
    const view = document.getElementById('view');
    document.body.dataset.ready = '';
    let node;
    try {
      node = await nodeInfo(target);
    } catch (err) {
      if (mine !== seq || err.signedOut) return;
      view.replaceChildren(h('div', { class: 'empty' }, '无法打开该节点。'));
      showError(err);
      return;
    }
    if (mine !== seq) return;
    document.getElementById('scope-line').textContent = `${node.name} · ${KIND[node.kind] || node.kind} · ${node.code}`;
    document.title = `${page.title} · ${node.name} · 基层治理工作台`;
    renderContext(page, node).catch(showError);
    view.replaceChildren();
    const ctx = {
      session,
      api,
      node,
      names,
      nameOf,
      learnNames,
      href,
      go: (p, c) => { window.location.hash = href(p, c); },
      onLive(fn) { liveListeners.add(fn); return () => liveListeners.delete(fn); },
      liveState: () => liveState,
      onLiveState(fn) { liveStateListeners.add(fn); fn(liveState); return () => liveStateListeners.delete(fn); },
      current: () => mine === seq,
    };
    try {
      cleanup = (await page.render(view, ctx)) || null;
    } catch (err) {
      showError(err);
    }
  }

  window.onhashchange = route;
  route();
}

window.addEventListener('DOMContentLoaded', () => {
  takeTokenFromFragment();
  start();
});
