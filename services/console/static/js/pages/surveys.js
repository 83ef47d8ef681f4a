// 扫楼 (入户走访): household visits of the subtree with their flags, the notes as the API
// gives them (masked unless the caller is an admin), coverage per grid, and a visit form.
import { query } from '../api.js';
import { SURVEY_FLAG, chinaToday, num } from '../format.js';
import { chip, formDialog, h, panel, showError, table, toast } from '../ui.js';

const WRITERS = ['operator', 'admin'];

export default {
  id: 'surveys',
  title: '扫楼·入户走访',
  async render(view, ctx) {
    const { api, node, session } = ctx;
    let items = [];
    let cursor = null;
    const flag = h('select', { id: 'f-flag' }, h('option', { value: '' }, '全部'),
      Object.entries(SURVEY_FLAG).map(([v, l]) => h('option', { value: v }, l)));
    const listBox = h('div', { id: 'survey-list' });
    const coverageBox = h('div', { id: 'coverage' });
    const period = h('span', { class: 'small muted', id: 'coverage-period' }, '');
    const more = h('button', { type: 'button', class: 'btn-ghost', hidden: true }, '加载更多');
    const newButton = session.has(...WRITERS) ? h('button', { type: 'button', class: 'btn-primary', id: 'new-survey' }, '登记走访') : null;
    const name = (code) => ctx.names.get(code) || code;

    view.append(
      h('div', { class: 'page-head' },
        h('div', {}, h('h1', {}, '扫楼 · 入户走访'),
          h('div', { class: 'sub' }, session.has('admin') ? '管理员可见走访记录原文，每次查看均留痕' : '走访记录含个人信息，已按规定脱敏显示')),
        newButton),
      panel('网格走访覆盖', period, coverageBox),
      panel('走访记录', h('label', { class: 'small muted' }, '发现情况 ', flag), listBox, more));

    async function loadCoverage(minPosition) {
      const cov = await api.get(`/v1/surveys/coverage${query({ node: node.code, min_position: minPosition })}`);
      if (!ctx.current()) return;
      period.textContent = `${cov.from} 至 ${cov.to}`;
      for (const c of cov.items) ctx.names.set(c.code, c.name);
      if (cov.items.length === 0) {
        coverageBox.replaceChildren(h('p', { class: 'empty' }, '没有网格，也没有走访记录。'));
        return;
      }
      coverageBox.replaceChildren(table([
        { label: '网格（社区）', value: (c) => h('span', { 'data-coverage': c.code }, c.name) },
        { label: '走访户数', num: true, value: (c) => num(c.households) },
        { label: '走访次数', num: true, value: (c) => num(c.visits) },
        { label: '发现情况', num: true, value: (c) => num(c.flagged) },
        { label: '群租房', num: true, value: (c) => num(c.group_rentals) },
        { label: '转为工单', num: true, value: (c) => num(c.issues_raised) },
        { label: '最近走访', value: (c) => c.last_visited_on || '—' },
      ], cov.items, { caption: '网格走访覆盖' }));
    }

    function draw() {
      if (items.length === 0) {
        listBox.replaceChildren(h('p', { class: 'empty' }, '没有符合条件的走访记录。'));
        return;
      }
      listBox.replaceChildren(table([
        { label: '走访日期', value: (s) => s.visited_on },
        { label: '网格（社区）', value: (s) => name(s.node_code) },
        { label: '楼栋', value: (s) => h('span', { 'data-survey': s.id }, s.building) },
        { label: '房号', value: (s) => s.room },
        { label: '居住人数', num: true, value: (s) => num(s.residents) },
        { label: '发现情况', value: (s) => (s.flags.length ? s.flags.map((f) => chip(SURVEY_FLAG[f] || f, f === 'vacant' ? 'none' : 'red')) : '—') },
        { label: '走访记录', value: (s) => (s.note_masked ? h('span', { class: 'muted', title: '含个人信息，仅管理员可见原文' }, `${s.note}（已脱敏）`) : (s.note ?? '—')) },
        { label: '工单', value: (s) => (s.issue_id ? h('a', { href: ctx.href('issues', s.node_code), 'data-issue': s.issue_id }, '已转工单') : '—') },
      ], items, { caption: '走访记录' }));
    }

    let loads = 0;
    async function load(reset = true, minPosition) {
      // Filters change faster than answers come back: only the latest load may draw.
      const mine = ++loads;
      const page = await api.get(`/v1/surveys${query({ node: node.code, flag: flag.value, limit: 100, cursor: reset ? null : cursor, min_position: minPosition })}`);
      if (!ctx.current() || mine !== loads) return;
      items = (reset ? [] : items).concat(page.items);
      cursor = page.next_cursor;
      more.hidden = !cursor;
      draw();
    }

    if (newButton) {
      newButton.addEventListener('click', async () => {
        const answer = await formDialog('登记入户走访', [
          { name: 'node_code', label: '网格或社区代码', value: node.kind === 'grid' || node.kind === 'community' ? node.code : '' },
          { name: 'building', label: '楼栋', attrs: { placeholder: '如 3幢' } },
          { name: 'room', label: '房号', attrs: { placeholder: '如 2单元301' } },
          { name: 'visited_on', label: '走访日期', type: 'date', value: chinaToday(), attrs: { max: chinaToday() } },
          { name: 'residents', label: '居住人数', type: 'number', required: false, attrs: { min: 0, max: 99 } },
          ...Object.entries(SURVEY_FLAG).map(([v, l]) => ({ name: `flag_${v}`, label: l, type: 'checkbox' })),
          { name: 'note', label: '走访记录（含个人信息，加密保存）', type: 'textarea', required: false },
          { name: 'raise_issue', label: '有发现情况时同时登记工单', type: 'checkbox' },
        ], (v) => api.post('/v1/surveys', {
          node_code: v.node_code.trim(), building: v.building, room: v.room, visited_on: v.visited_on,
          flags: Object.keys(SURVEY_FLAG).filter((f) => v[`flag_${f}`]),
          raise_issue: v.raise_issue,
          ...(v.residents !== '' ? { residents: Number(v.residents) } : {}),
          ...(v.note ? { note: v.note } : {}),
        }), '登记');
        if (answer && answer.id) {
          showError(null);
          toast(answer.issue_id ? '走访已登记，并已转为工单' : '走访已登记');
          await Promise.all([load(true, answer.position), loadCoverage(answer.position)]);
        }
      });
    }

    flag.addEventListener('change', () => load().catch(showError));
    more.addEventListener('click', () => load(false).catch(showError));
    await ctx.learnNames(node.code);
    await Promise.all([load(), loadCoverage()]);
    document.body.dataset.ready = 'surveys';
  },
};
