// 整改台账: inspection findings and their rectification (建账→整改→验收销号), warning lights,
// filters, the day's actions for the roles allowed, and the ledger as XLSX.
import { query } from '../api.js';
import { FINDING_STATUS, WARNING, chinaToday, dateTime } from '../format.js';
import { chip, formDialog, h, panel, showError, table, toast } from '../ui.js';

const ASSIGNEES = ['operator', 'admin', 'unit'];
const INSPECTORS = ['inspector', 'admin'];

export default {
  id: 'findings',
  title: '整改台账',
  async render(view, ctx) {
    const { api, node, session } = ctx;
    const filters = { status: '', warning: '' };
    let items = [];
    let cursor = null;

    const status = h('select', { id: 'f-status' }, h('option', { value: '' }, '全部状态'),
      Object.entries(FINDING_STATUS).map(([v, l]) => h('option', { value: v }, l)));
    const warning = h('select', { id: 'f-warning' }, h('option', { value: '' }, '全部预警'),
      ['red', 'yellow', 'green', 'none'].map((v) => h('option', { value: v }, WARNING[v])));
    const download = h('button', { type: 'button', class: 'btn-primary', id: 'ledger-xlsx' }, '导出台账（XLSX）');
    const listBox = h('div', { id: 'finding-list' });
    const more = h('button', { type: 'button', class: 'btn-ghost', hidden: true }, '加载更多');

    view.append(
      h('div', { class: 'page-head' },
        h('div', {}, h('h1', {}, '巡视巡察整改台账'), h('div', { class: 'sub' }, '预警：剩余20天内绿灯，10天内黄灯，超期红灯')),
        download),
      panel('整改问题', h('div', { class: 'toolbar' }, h('label', {}, '状态', status), h('label', {}, '预警', warning)), listBox, more));

    function actions(f) {
      const out = [];
      const post = (label, path, fields, toBody) => h('button', {
        type: 'button', class: 'btn-line', 'data-action': path,
        onclick: async () => {
          const answer = await formDialog(`${label}`, fields, (v) => api.post(`/v1/findings/${f.id}/${path}`, toBody(v), f.version), label);
          if (answer && answer.id) {
            toast(`${label}成功`);
            const fresh = await api.get(`/v1/findings/${f.id}${query({ min_position: answer.position })}`);
            items = items.map((x) => (x.id === f.id ? fresh : x));
            draw();
          }
        },
      }, label);
      if ((f.status === 'assigned' || f.status === 'in_progress') && session.has(...ASSIGNEES)) {
        out.push(post('报进展', 'progress', [
          { name: 'note', label: '整改进展', type: 'textarea' },
          { name: 'evidence', label: '佐证材料（说明或链接）', required: false },
        ], (v) => ({ note: v.note, ...(v.evidence ? { evidence: v.evidence } : {}) })));
        out.push(post('整改完成', 'complete', [{ name: 'summary', label: '整改情况', type: 'textarea' }], (v) => ({ summary: v.summary })));
      }
      if (f.status === 'completed' && session.has(...INSPECTORS)) {
        out.push(post('验收', 'verify', [
          { name: 'accepted', label: '验收结论', type: 'select', options: [['true', '通过，销号'], ['false', '不通过，退回重改']] },
          { name: 'comment', label: '验收意见', type: 'textarea' },
        ], (v) => ({ accepted: v.accepted === 'true', comment: v.comment })));
      }
      return out.length ? h('div', { class: 'actions' }, out) : '—';
    }

    function draw() {
      if (items.length === 0) {
        listBox.replaceChildren(h('p', { class: 'empty' }, '没有符合条件的整改问题。'));
        return;
      }
      listBox.replaceChildren(table([
        { label: '预警', value: (f) => chip(f.warning === 'none' ? (f.status === 'verified' ? '已销号' : '正常') : WARNING[f.warning], f.warning === 'none' ? 'none' : f.warning) },
        { label: '问题', value: (f) => h('span', { 'data-finding': f.id }, f.description) },
        { label: '类别', value: (f) => f.category_label },
        { label: '责任单位', value: (f) => f.responsible_unit_name || f.responsible_unit_code || '—' },
        { label: '整改时限', value: (f) => f.due_on || '—' },
        { label: '状态', value: (f) => h('span', {}, f.status_label, f.overdue_days > 0 ? h('span', { class: 'small muted' }, `（超期${f.overdue_days}天）`) : null) },
        { label: '最新进展', value: (f) => (f.last_progress_note ? `${f.last_progress_note}（${dateTime(f.last_progress_at)}）` : '—') },
        { label: '办理', value: actions },
      ], items, { caption: '整改问题' }));
    }

    let loads = 0;
    async function load(reset = true) {
      // Filters change faster than answers come back: only the latest load may draw.
      const mine = ++loads;
      const page = await api.get(`/v1/findings${query({ node: node.code, status: filters.status, warning: filters.warning, limit: 100, cursor: reset ? null : cursor })}`);
      if (!ctx.current() || mine !== loads) return;
      items = (reset ? [] : items).concat(page.items);
      cursor = page.next_cursor;
      more.hidden = !cursor;
      draw();
      document.body.dataset.ready = 'findings';
    }

    download.addEventListener('click', () => {
      api.download(`/v1/findings/ledger${query({ node: node.code, format: 'xlsx' })}`, `整改台账-${node.name}-${chinaToday()}.xlsx`)
        .then(() => toast('台账已导出'))
        .catch(showError);
    });
    status.addEventListener('change', () => { filters.status = status.value; load().catch(showError); });
    warning.addEventListener('change', () => { filters.warning = warning.value; load().catch(showError); });
    more.addEventListener('click', () => load(false).catch(showError));
    await load();
  },
};
