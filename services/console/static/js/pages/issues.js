// 工单: the subtree's issues (12345 loop 受理→派单→签收→办结→回访→销号), filters, an issue's
// timeline from the ledger, and the day's actions for the roles that may take them.
import { query } from '../api.js';
import { EVENT, ISSUE_STATUS, SATISFACTION, SOURCE, chinaInstant, chinaLocalInDays, dateTime } from '../format.js';
import { chip, formDialog, h, panel, showError, table, toast } from '../ui.js';

const WRITERS = ['operator', 'admin'];
const ASSIGNEES = ['operator', 'admin', 'unit'];
const AUDITORS = ['operator', 'admin', 'inspector'];

function statusChip(issue) {
  return h('span', {},
    chip(ISSUE_STATUS[issue.status] || issue.status, issue.status === 'closed' ? 'closed' : 'status'),
    issue.overdue ? [' ', chip('超期', 'red')] : null,
    issue.escalation ? [' ', chip('吹哨', 'whistle')] : null);
}

export default {
  id: 'issues',
  title: '工单',
  async render(view, ctx) {
    const { api, node, session } = ctx;
    const filters = { status: '', overdue: '', whistle: false };
    let selectedId = null;
    let cursor = null;
    let items = [];

    const status = h('select', { id: 'f-status' }, h('option', { value: '' }, '全部状态'),
      Object.entries(ISSUE_STATUS).map(([v, l]) => h('option', { value: v }, l)));
    const overdue = h('select', { id: 'f-overdue' }, h('option', { value: '' }, '全部'), h('option', { value: 'true' }, '仅超期'), h('option', { value: 'false' }, '未超期'));
    const whistle = h('input', { type: 'checkbox', id: 'f-whistle' });
    const canWhistleFilter = ['street', 'county'].includes(node.kind);
    const listBox = h('div', { id: 'issue-list' });
    const more = h('button', { type: 'button', class: 'btn-ghost', hidden: true }, '加载更多');
    const detail = h('div', { id: 'issue-detail' }, h('p', { class: 'empty' }, '选择一条工单查看详情与办理。'));
    const newButton = session.has(...WRITERS) ? h('button', { type: 'button', class: 'btn-primary', id: 'new-issue' }, '登记工单') : null;

    view.append(
      h('div', { class: 'page-head' },
        h('div', {}, h('h1', {}, '民情工单'), h('div', { class: 'sub' }, `${node.name} 及下级的工单 · 受理→派单→签收→办结→回访→销号`)),
        newButton),
      h('div', { class: 'split' },
        panel('工单列表', h('div', { class: 'toolbar' },
          h('label', {}, '状态', status),
          h('label', {}, '时限', overdue),
          canWhistleFilter ? h('label', { class: 'check' }, whistle, `吹哨到${node.name}`) : null),
        listBox, more),
        h('div', {}, detail)));

    let loads = 0;
    async function load(reset = true) {
      // Filters change faster than answers come back: only the latest load may draw.
      const mine = ++loads;
      const q = query({
        node: node.code, status: filters.status, overdue: filters.overdue,
        escalated_to: filters.whistle ? node.code : '', limit: 50, cursor: reset ? null : cursor,
      });
      const page = await api.get(`/v1/issues${q}`);
      if (!ctx.current() || mine !== loads) return;
      items = (reset ? [] : items).concat(page.items);
      cursor = page.next_cursor;
      more.hidden = !cursor;
      drawList();
      document.body.dataset.ready = 'issues';
    }

    function drawList() {
      if (items.length === 0) {
        listBox.replaceChildren(h('p', { class: 'empty' }, '没有符合条件的工单。'));
        return;
      }
      listBox.replaceChildren(table([
        { label: '标题', value: (i) => h('span', { 'data-issue': i.id }, i.title) },
        { label: '状态', value: statusChip },
        { label: '来源', value: (i) => SOURCE[i.source] || i.source },
        { label: '承办单位', value: (i) => (i.assignee ? ctx.names.get(i.assignee.code) || i.assignee.code : '—') },
        { label: '办结时限', value: (i) => dateTime(i.due_at) },
      ], items, { onPick: (i) => open(i.id), selected: (i) => i.id === selectedId, caption: '工单列表' }));
    }

    async function open(id, minPosition) {
      selectedId = id;
      drawList();
      const issue = await api.get(`/v1/issues/${id}${query({ min_position: minPosition })}`);
      if (!ctx.current()) return;
      const idx = items.findIndex((i) => i.id === id);
      if (idx >= 0) { items[idx] = issue; drawList(); }
      drawDetail(issue, minPosition);
    }

    function act(issue, label, path, fields, toBody, okText) {
      return h('button', {
        type: 'button', class: 'btn-line', 'data-action': path,
        onclick: async () => {
          const run = async (values) => {
            const answer = await api.post(`/v1/issues/${issue.id}/${path}`, toBody(values), issue.version);
            return answer;
          };
          const answer = fields.length === 0
            ? await run({}).catch((err) => { showError(err); return null; })
            : await formDialog(`${label} · ${issue.title}`, fields, run, okText || label);
          if (answer && answer.id) {
            showError(null);
            toast(`${label}成功`);
            await open(issue.id, answer.position);
          }
        },
      }, label);
    }

    function actionsFor(issue) {
      const s = issue.status;
      const out = [];
      const writer = session.has(...WRITERS);
      const assignee = session.has(...ASSIGNEES);
      const ancestors = [...node.path, node.code].map((c) => [c, ctx.names.get(c) || c]);
      if (s === 'reported' && writer) {
        out.push(act(issue, '派单', 'assign', [
          { name: 'assignee_code', label: '承办单位代码', list: unitChoices, value: unitChoices[0]?.[0] || '' },
          { name: 'due_at', label: '办结时限（北京时间）', type: 'datetime', value: chinaLocalInDays(3) },
        ], (v) => ({ assignee_code: v.assignee_code.trim(), due_at: chinaInstant(v.due_at) })));
      }
      if (s === 'assigned' && assignee) out.push(act(issue, '签收', 'accept', [], () => ({})));
      if ((s === 'assigned' || s === 'accepted') && assignee) {
        out.push(act(issue, '退单', 'return', [{ name: 'reason', label: '退单理由', type: 'textarea' }], (v) => ({ reason: v.reason })));
        out.push(act(issue, '延期', 'extend', [
          { name: 'due_at', label: '新的办结时限（北京时间）', type: 'datetime', value: chinaLocalInDays(7) },
          { name: 'reason', label: '延期理由', type: 'textarea' },
        ], (v) => ({ due_at: chinaInstant(v.due_at), reason: v.reason })));
      }
      if (s === 'accepted' && assignee) {
        out.push(act(issue, '办理进展', 'progress', [{ name: 'note', label: '进展情况', type: 'textarea' }], (v) => ({ note: v.note })));
        out.push(act(issue, '办结', 'resolve', [{ name: 'result', label: '办理结果', type: 'textarea' }], (v) => ({ result: v.result })));
      }
      if (s !== 'closed' && s !== 'resolved' && writer && !(issue.escalation && !issue.escalation.answered_at)) {
        out.push(act(issue, '吹哨', 'escalate', [
          { name: 'to_code', label: '吹哨到（街道或县区代码）', list: ancestors, value: ancestors.length > 1 ? ancestors[1][0] : ancestors[0][0] },
          { name: 'respond_within_minutes', label: '响应时限（分钟）', type: 'number', value: '30', attrs: { min: 1, max: 10080 } },
        ], (v) => ({ to_code: v.to_code.trim(), respond_within_minutes: Number(v.respond_within_minutes) })));
      }
      if (s === 'resolved' && writer) {
        out.push(act(issue, '回访', 'evaluate', [
          { name: 'satisfaction', label: '群众评价', type: 'select', options: Object.entries(SATISFACTION) },
          { name: 'resolved', label: '问题已解决', type: 'checkbox', value: true },
          { name: 'comment', label: '回访记录', type: 'textarea', required: false },
        ], (v) => ({ satisfaction: v.satisfaction, resolved: v.resolved, ...(v.comment ? { comment: v.comment } : {}) })));
        out.push(act(issue, '销号', 'close', [], () => ({})));
      }
      if ((s === 'resolved' || s === 'closed') && writer) {
        out.push(act(issue, '重办', 'reopen', [{ name: 'reason', label: '重办理由', type: 'textarea' }], (v) => ({ reason: v.reason })));
      }
      return out;
    }

    async function drawDetail(issue) {
      const nodeName = h('span', {}, ctx.names.get(issue.node_code) || issue.node_code);
      // On a unit's page the issues live elsewhere, perhaps outside the caller's subtree:
      // asking for their node's name would only earn a 404.
      if (node.kind !== 'unit') ctx.nameOf(issue.node_code).then((n) => { nodeName.textContent = n; });
      const facts = [
        ['状态', statusChip(issue)],
        ['所在单元', nodeName],
        ['类别', issue.category],
        ['来源', SOURCE[issue.source] || issue.source],
        ['承办单位', issue.assignee ? ctx.names.get(issue.assignee.code) || issue.assignee.code : '—'],
        ['办结时限', dateTime(issue.due_at)],
        ['受理时间', dateTime(issue.reported_at)],
        issue.escalation ? ['吹哨', `${ctx.names.get(issue.escalation.to) || issue.escalation.to}，${dateTime(issue.escalation.respond_by)} 前响应${issue.escalation.answered_at ? '（已响应）' : ''}`] : null,
        issue.result ? ['办理结果', issue.result] : null,
        issue.evaluation ? ['回访', `${SATISFACTION[issue.evaluation.satisfaction] || issue.evaluation.satisfaction}${issue.evaluation.resolved ? '，已解决' : '，未解决'}`] : null,
      ].filter(Boolean);
      const timeline = h('ol', { class: 'timeline', id: 'timeline' });
      const actions = actionsFor(issue);
      detail.replaceChildren(panel(issue.title, h('span', { class: 'small muted mono' }, issue.id),
        h('dl', { class: 'facts' }, facts.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
        actions.length ? h('div', { class: 'actions', id: 'issue-actions' }, actions) : h('p', { class: 'muted small' }, '当前状态下您没有可办理的操作。'),
        h('h2', {}, '办理过程'), timeline));
      if (window.matchMedia('(max-width: 760px)').matches) detail.scrollIntoView({ block: 'start' });
      if (!session.has(...AUDITORS)) {
        timeline.replaceWith(h('p', { class: 'muted small' }, '查看办理记录需要经办、巡察或管理员角色。'));
        return;
      }
      try {
        const history = await api.get(`/v1/streams/${issue.id}/events`);
        if (!ctx.current()) return;
        timeline.replaceChildren(...history.items.map((e) => h('li', {},
          h('div', {}, h('strong', {}, EVENT[e.type] || e.type), ' ', h('span', { class: 'when' }, dateTime(e.occurred_at))),
          h('div', { class: 'small muted' }, `经办：${e.actor}`, e.data && (e.data.reason || e.data.result || e.data.note || e.data.comment) ? ` · ${e.data.reason || e.data.result || e.data.note || e.data.comment}` : ''))));
      } catch (err) {
        timeline.replaceChildren(h('li', {}, err.message));
      }
    }

    // Units to dispatch to: the root's units, when the caller may list them.
    let unitChoices = [];
    const root = node.path[0] || node.code;
    api.get(`/v1/nodes?parent=${encodeURIComponent(root)}&kind=unit&limit=500`)
      .then((page) => {
        unitChoices = page.items.map((u) => [u.code, u.name]);
        for (const u of page.items) ctx.names.set(u.code, u.name);
      })
      .catch(() => {});

    if (newButton) {
      newButton.addEventListener('click', async () => {
        const answer = await formDialog('登记工单（受理）', [
          { name: 'title', label: '标题' },
          { name: 'category', label: '类别', value: '环境卫生', list: [['环境卫生', ''], ['矛盾纠纷', ''], ['安全隐患', ''], ['民生服务', '']] },
          { name: 'source', label: '来源', type: 'select', options: Object.entries(SOURCE) },
          { name: 'node_code', label: '所在单元代码', value: node.code },
          { name: 'description', label: '情况描述', type: 'textarea', required: false },
        ], (v) => api.post('/v1/issues', {
          title: v.title, category: v.category, source: v.source, node_code: v.node_code.trim(),
          ...(v.description ? { description: v.description } : {}),
        }), '登记');
        if (answer && answer.id) {
          toast('已受理');
          await load();
          await open(answer.id, answer.position);
        }
      });
    }

    await ctx.learnNames(node.code);
    status.addEventListener('change', () => { filters.status = status.value; load().catch(showError); });
    overdue.addEventListener('change', () => { filters.overdue = overdue.value; load().catch(showError); });
    whistle.addEventListener('change', () => { filters.whistle = whistle.checked; load().catch(showError); });
    more.addEventListener('click', () => load(false).catch(showError));
    await load();
  },
};
