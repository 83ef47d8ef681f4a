// 结对共建 / 双报到: pairings with their commitments' progress; in-service members with their
// service hours and points (personal data masked by the API unless the caller is an admin).
import { query } from '../api.js';
import { MEMBER_STATUS, PAIRING_STATUS, num } from '../format.js';
import { chip, h, panel, showError, table } from '../ui.js';

export default {
  id: 'pairings',
  title: '结对共建·双报到',
  async render(view, ctx) {
    const { api, node, session } = ctx;
    const pairingBox = h('div', { id: 'pairing-list' });
    const memberBox = h('div', { id: 'member-list' });
    const status = h('select', { id: 'f-pairing-status' }, h('option', { value: 'active' }, '履行中'), h('option', { value: 'terminated' }, '已终止'), h('option', { value: '' }, '全部'));
    view.append(
      h('div', { class: 'page-head' }, h('div', {}, h('h1', {}, '结对共建 · 在职党员双报到'),
        h('div', { class: 'sub' }, session.has('admin') ? '管理员可见完整个人信息，每次查看均留痕' : '个人信息已按规定脱敏显示'))),
      panel('结对共建', h('label', { class: 'small muted' }, '状态 ', status), pairingBox),
      panel('报到党员', h('span', { class: 'small muted' }, '服务时长与积分'), memberBox));

    const fill = (share) => {
      const el = h('span', {});
      el.style.width = `${Math.round(share * 100)}%`; // CSSOM, allowed by the CSP
      return el;
    };
    const name = (code) => ctx.names.get(code) || code;

    async function loadPairings() {
      const page = await api.get(`/v1/pairings${query({ node: node.code, status: status.value, limit: 200 })}`);
      if (!ctx.current()) return;
      if (page.items.length === 0) {
        pairingBox.replaceChildren(h('p', { class: 'empty' }, '没有结对记录。'));
        return;
      }
      pairingBox.replaceChildren(table([
        { label: '结对单位', value: (p) => name(p.unit_code) },
        { label: '结对社区', value: (p) => name(p.community_code) },
        { label: '期限', value: (p) => `${p.starts_on} 至 ${p.ends_on}` },
        { label: '状态', value: (p) => chip(PAIRING_STATUS[p.status] || p.status, p.status === 'active' ? 'closed' : 'none') },
        {
          label: '承诺兑现',
          value: (p) => {
            const share = p.commitments_total ? p.commitments_fulfilled / p.commitments_total : 0;
            return h('div', {},
              h('div', { class: 'small' }, `${p.commitments_fulfilled} / ${p.commitments_total}`),
              h('div', { class: 'bar', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': p.commitments_total, 'aria-valuenow': p.commitments_fulfilled, 'aria-label': '承诺兑现进度' },
                fill(share)));
          },
        },
        { label: '共建活动', num: true, value: (p) => `${p.activity_count} 次 / ${p.participant_total} 人次` },
        { label: '评议', value: (p) => p.rating || '—' },
      ], page.items, { caption: '结对共建' }));
    }

    async function loadMembers() {
      const page = await api.get(`/v1/members${query({ node: node.code, limit: 200 })}`);
      if (!ctx.current()) return;
      if (page.items.length === 0) {
        memberBox.replaceChildren(h('p', { class: 'empty' }, '没有报到党员。'));
        return;
      }
      memberBox.replaceChildren(table([
        { label: '姓名', value: (m) => h('span', { 'data-member': m.id }, m.name) },
        { label: '手机', value: (m) => m.phone },
        { label: '所在单位', value: (m) => name(m.home_unit_code) },
        { label: '报到社区', value: (m) => name(m.community_code) },
        { label: '状态', value: (m) => MEMBER_STATUS[m.status] || m.status },
        { label: '服务时长', num: true, value: (m) => `${num(m.service_hours)} 小时` },
        { label: '积分', num: true, value: (m) => num(m.points) },
      ], page.items, { caption: '报到党员' }));
    }

    status.addEventListener('change', () => loadPairings().catch(showError));
    await ctx.learnNames(node.code);
    await Promise.all([loadPairings(), loadMembers()]);
    document.body.dataset.ready = 'pairings';
  },
};
