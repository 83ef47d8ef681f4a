// Small DOM helpers: elements, tables that turn into cards on phones, dialogs, messages.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function chip(text, cls) {
  return h('span', { class: `chip ${cls || ''}` }, text);
}

/** columns: [{label, value: row => node|string, num?: bool}] */
export function table(columns, rows, { onPick, caption, selected } = {}) {
  const head = h('thead', {}, h('tr', {}, columns.map((c) => h('th', { class: c.num ? 'num' : '', scope: 'col' }, c.label))));
  const body = h('tbody', {}, rows.map((row) => {
    const tr = h('tr', {}, columns.map((c) => h('td', { class: c.num ? 'num' : '', 'data-label': c.label }, c.value(row))));
    if (onPick) {
      tr.classList.add('clickable');
      tr.tabIndex = 0;
      if (selected && selected(row)) tr.setAttribute('aria-selected', 'true');
      tr.addEventListener('click', () => onPick(row));
      tr.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); onPick(row); } });
    }
    return tr;
  }));
  return h('table', { class: 'stack' }, caption ? h('caption', { class: 'sr-only' }, caption) : null, head, body);
}

export function panel(title, extra, ...content) {
  return h('section', { class: 'panel' }, h('div', { class: 'panel-title' }, h('h2', {}, title), extra || null), ...content);
}

export function field(label, input) {
  return h('label', { class: 'field' }, label, input);
}

let toastTimer = 0;
export function toast(text) {
  const el = document.getElementById('toast');
  el.textContent = text;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.hidden = true; }, 3500);
}

export function showError(err) {
  if (err && err.signedOut) return;
  const el = document.getElementById('alert');
  el.textContent = err ? (err.message || String(err)) : '';
  el.hidden = !err;
}

/**
 * A modal form. fields: [{name, label, type: text|textarea|select|datetime|date|number|checkbox,
 * options: [[value, label]], value, required}]. submit(values) may throw: its message is shown
 * in the dialog and the dialog stays open.
 */
export function formDialog(title, fields, submit, okLabel = '确定') {
  const dialog = document.getElementById('dialog');
  const body = document.getElementById('dialog-body');
  const error = document.getElementById('dialog-error');
  const ok = document.getElementById('dialog-ok');
  document.getElementById('dialog-title').textContent = title;
  ok.textContent = okLabel;
  error.hidden = true;
  body.replaceChildren();
  const inputs = {};
  for (const f of fields) {
    let input;
    if (f.type === 'textarea') input = h('textarea', { name: f.name, required: f.required !== false, maxlength: 2000 });
    else if (f.type === 'select') input = h('select', { name: f.name }, f.options.map(([v, l]) => h('option', { value: v }, l)));
    else if (f.type === 'checkbox') input = h('input', { type: 'checkbox', name: f.name });
    else input = h('input', { name: f.name, type: f.type === 'datetime' ? 'datetime-local' : (f.type || 'text'), required: f.required !== false, ...(f.attrs || {}) });
    if (f.list) {
      const id = `list-${f.name}`;
      input.setAttribute('list', id);
      body.append(h('datalist', { id }, f.list.map(([v, l]) => h('option', { value: v }, l))));
    }
    if (f.type === 'checkbox') input.checked = Boolean(f.value);
    else if (f.value !== undefined) input.value = f.value;
    inputs[f.name] = input;
    body.append(f.type === 'checkbox' ? h('label', { class: 'field check' }, input, f.label) : field(f.label, input));
  }
  return new Promise((resolve) => {
    const form = document.getElementById('dialog-form');
    const cancel = document.getElementById('dialog-cancel');
    const close = (result) => {
      form.removeEventListener('submit', onSubmit);
      cancel.removeEventListener('click', onCancel);
      dialog.removeEventListener('cancel', onCancel);
      if (dialog.open) dialog.close();
      resolve(result);
    };
    const onCancel = (e) => { e.preventDefault(); close(null); };
    const onSubmit = async (e) => {
      e.preventDefault();
      const values = {};
      for (const [k, el] of Object.entries(inputs)) values[k] = el.type === 'checkbox' ? el.checked : el.value;
      ok.disabled = true;
      error.hidden = true;
      try {
        const result = await submit(values);
        close(result ?? true);
      } catch (err) {
        error.textContent = err.message || String(err);
        error.hidden = false;
      } finally {
        ok.disabled = false;
      }
    };
    form.addEventListener('submit', onSubmit);
    cancel.addEventListener('click', onCancel);
    dialog.addEventListener('cancel', onCancel);
    dialog.showModal();
    const first = body.querySelector('input, select, textarea');
    (first || ok).focus();
  });
}
