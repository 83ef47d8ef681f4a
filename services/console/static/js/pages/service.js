// 五单 (志愿服务): residents' needs as service orders (点单→派单→接单→完成→评单), the offers
// units and members publish (亮单), and the day's actions for the roles that may take them.
import { query } from '../api.js';
import { SERVICE_STATUS, dateTime, num } from '../format.js';
import { chip, formDialog, h, panel, showError, table, toast } from '../ui.js';

const WRITERS = ['operator', 'admin'];
const ASSIGNEES = ['operator', 'admin', 'unit'];
const OPEN = ['requested', 'dispatched', 'accepted'];

function statusChip(o) {
  return h('span', {},
    chip(SERVICE_STATUS[o.status] || o.status, o.status === 'evaluated' || o.status === 'cancelled' ? 'closed' : 'status'),
    o.overdue ? [' ', chip('超时未接单', 'red')] : null);
}

export default {
  id: 'service',
  title: '五单·志愿服务',
  async render(view, ctx) {
    const { api, node, session } = ctx;
    const filters = { status: '', overdue: '' };
    let items = [];
    let cursor = null;
    let unitChoices = [];
    let memberChoices = [];

    const status = h('select', { id: 'f-order-status' }, h('option', { value: '' }, '全部状态'),
      Object.entries(SERVICE_STATUS).map(([v, l]) => h('option', { value: v }, l)));
    const overdue = h('select', { id: 'f-order-overdue' }, h('option', { value: '' }, '全部'), h('option', { value: 'true' }, '仅超时未接单'), h('option', { value: 'false' }, '未超时'));
    const orderBox = h('div', { id: 'order-list' });
    const offerBox = h('div', { id: 'offer-list' });
    const more = h('button', { type: 'button', class: 'btn-ghost', hidden: true }, '加载更多');
    const newButton = session.has(...WRITERS) ? h('button', { type: 'button', class: 'btn-primary', id: 'new-order' }, '点单登记') : null;
    const name = (code) => (code ? ctx.names.get(code) || code : '—');
    const memberName = (id) => (memberChoices.find(([v]) => v === id) || [null, id])[1];

    view.append(
      h('div', { class: 'page-head' },
        h('div', {}, h('h1', {}, '五单 · 志愿服务'), h('div', { class: 'sub' }, `${node.name} 及下级 · 群众点单→社区派单→党员（单位）接单→完成→群众评单`)),
        newButton),
      panel('服务订单', h('div', { class: 'toolbar' }, h('label', {}, '状态', status), h('label', {}, '接单时限', overdue)), orderBox, more),
      panel('服务清单（亮单）', h('span', { class: 'small muted' }, '驻区单位与报到党员提供的服务'), offerBox));

    function act(o, label, path, fields, toBody) {
      return h('button', {
        type: 'button', class: 'btn-line', 'data-action': path,
        onclick: async () => {
          const answer = await formDialog(`${label} · ${o.title}`, fields, (v) => api.post(`/v1/service-orders/${o.id}/${path}`, toBody(v), o.version), label);
          if (answer && answer.id) {
            showError(null);
            toast(`${label}成功`);
            const fresh = await api.get(`/v1/service-orders/${o.id}${query({ min_position: answer.position })}`);
            if (!ctx.current()) return;
            items = items.map((x) => (x.id === o.id ? fresh : x));
            drawOrders();
          }
        },
      }, label);
    }

    function actions(o) {
      const out = [];
      const writer = session.has(...WRITERS);
      if ((o.status === 'requested' || o.status === 'dispatched') && writer) {
        out.push(act(o, o.status === 'requested' ? '派单' : '改派', 'dispatch', [
          { name: 'unit_code', label: '派给单位（代码，与党员二选一）', list: unitChoices, required: false },
          { name: 'member_id', label: '派给党员（编号，与单位二选一）', list: memberChoices, required: false },
        ], (v) => ({
          ...(v.unit_code.trim() ? { unit_code: v.unit_code.trim() } : {}),
          ...(v.member_id.trim() ? { member_id: v.member_id.trim() } : {}),
        })));
      }
      if (o.status === 'dispatched' && session.has(...ASSIGNEES)) {
        out.push(h('button', {
          type: 'button', class: 'btn-line', 'data-action': 'accept',
          onclick: async () => {
            try {
              const answer = await api.post(`/v1/service-orders/${o.id}/accept`, {}, o.version);
              showError(null);
              toast('接单成功');
              const fresh = await api.get(`/v1/service-orders/${o.id}${query({ min_position: answer.position })}`);
              if (!ctx.current()) return;
              items = items.map((x) => (x.id === o.id ? fresh : x));
              drawOrders();
            } catch (err) { showError(err); }
          },
        }, '接单'));
      }
      if (o.status === 'accepted' && session.has(...ASSIGNEES)) {
        out.push(act(o, '完成', 'complete', [
          { name: 'summary', label: '服务情况', type: 'textarea' },
          { name: 'hours', label: '服务时长（小时，计入党员服务记录）', type: 'number', required: false, attrs: { min: 0.5, max: 24, step: 0.5 } },
        ], (v) => ({ summary: v.summary, ...(v.hours !== '' ? { hours: Number(v.hours) } : {}) })));
      }
      if (o.status === 'completed' && writer) {
        out.push(act(o, '评单', 'evaluate', [
          { name: 'rating', label: '群众评价', type: 'select', options: [['5', '★★★★★ 5分'], ['4', '★★★★ 4分'], ['3', '★★★ 3分'], ['2', '★★ 2分'], ['1', '★ 1分']] },
          { name: 'comment', label: '评价意见', type: 'textarea', required: false },
        ], (v) => ({ rating: Number(v.rating), ...(v.comment ? { comment: v.comment } : {}) })));
      }
      if (OPEN.includes(o.status) && writer) {
        out.push(act(o, '取消', 'cancel', [{ name: 'reason', label: '取消理由', type: 'textarea' }], (v) => ({ reason: v.reason })));
      }
      return out.length ? h('div', { class: 'actions' }, out) : '—';
    }

    function drawOrders() {
      if (items.length === 0) {
        orderBox.replaceChildren(h('p', { class: 'empty' }, '没有符合条件的服务订单。'));
        return;
      }
      orderBox.replaceChildren(table([
        { label: '需求', value: (o) => h('div', {}, h('span', { 'data-order': o.id }, o.title), h('div', { class: 'small muted' }, o.description)) },
        { label: '社区', value: (o) => name(o.community_code) },
        { label: '状态', value: (o) => h('span', { 'data-status': o.status }, statusChip(o)) },
        { label: '承接', value: (o) => (o.member_id ? `党员 ${memberName(o.member_id)}` : o.unit_code ? name(o.unit_code) : '—') },
        { label: '接单时限', value: (o) => dateTime(o.accept_by) },
        { label: '服务结果', value: (o) => [o.summary || '—', o.hours !== null ? `（${num(o.hours)} 小时）` : '', o.rating !== null ? ` · 评价 ${o.rating} 分` : ''].join('') },
        { label: '办理', value: actions },
      ], items, { caption: '服务订单' }));
    }

    let loads = 0;
    async function loadOrders(reset = true) {
      // Filters change faster than answers come back: only the latest load may draw.
      const mine = ++loads;
      const from = reset ? null : cursor;
      const page = await api.get(`/v1/service-orders${query({ node: node.code, status: filters.status, overdue: filters.overdue, limit: 100, cursor: from })}`);
      if (!ctx.current() || mine !== loads) return;
      items = (reset ? [] : items).concat(page.items);
      cursor = page.next_cursor;
      more.hidden = !cursor;
      drawOrders();
    }

    async function loadOffers() {
      const page = await api.get(`/v1/service-offers${query({ node: node.code, limit: 100 })}`);
      if (!ctx.current()) return;
      if (page.items.length === 0) {
        offerBox.replaceChildren(h('p', { class: 'empty' }, '还没有服务清单。'));
        return;
      }
      offerBox.replaceChildren(table([
        { label: '服务', value: (o) => o.title },
        { label: '类别', value: (o) => o.category },
        { label: '提供方', value: (o) => (o.provider_code ? name(o.provider_code) : `党员 ${memberName(o.member_id)}`) },
        { label: '服务社区', value: (o) => name(o.community_code) },
        { label: '发布时间', value: (o) => dateTime(o.offered_at) },
      ], page.items, { caption: '服务清单' }));
    }

    // Whom to dispatch to: the root's units and the subtree's members, when the caller may list them.
    const root = node.path[0] || node.code;
    const choices = session.has(...WRITERS) ? Promise.all([
      api.get(`/v1/nodes?parent=${encodeURIComponent(root)}&kind=unit&limit=500`).then((page) => {
        unitChoices = page.items.map((u) => [u.code, u.name]);
        for (const u of page.items) ctx.names.set(u.code, u.name);
      }).catch(() => {}),
      api.get(`/v1/members${query({ node: node.code, limit: 200 })}`).then((page) => {
        memberChoices = page.items.map((m) => [m.id, m.name]);
      }).catch(() => {}),
    ]) : Promise.resolve();

    if (newButton) {
      newButton.addEventListener('click', async () => {
        const answer = await formDialog('点单登记（群众需求）', [
          { name: 'title', label: '服务需求' },
          { name: 'description', label: '需求说明', type: 'textarea' },
          { name: 'community_code', label: '所在社区代码', value: node.kind === 'community' ? node.code : '' },
          { name: 'due_on', label: '希望完成日期', type: 'date', required: false },
        ], (v) => api.post('/v1/service-orders', {
          title: v.title, description: v.description, community_code: v.community_code.trim(),
          ...(v.due_on ? { due_on: v.due_on } : {}),
        }), '登记');
        if (answer && answer.id) {
          toast('已登记');
          const fresh = await api.get(`/v1/service-orders/${answer.id}${query({ min_position: answer.position })}`);
          if (!ctx.current()) return;
          items = [fresh, ...items.filter((x) => x.id !== fresh.id)];
          drawOrders();
        }
      });
    }

    status.addEventListener('change', () => { filters.status = status.value; loadOrders().catch(showError); });
    overdue.addEventListener('change', () => { filters.overdue = overdue.value; loadOrders().catch(showError); });
    more.addEventListener('click', () => loadOrders(false).catch(showError));
    await ctx.learnNames(node.code);
    await choices;
    await Promise.all([loadOrders(), loadOffers()]);
    document.body.dataset.ready = 'service';
  },
};
