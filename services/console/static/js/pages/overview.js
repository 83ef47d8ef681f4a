// 总览: a node's indicators (its whole subtree), its children ranked, a 30-day trend.
import { query } from '../api.js';
import { chart } from '../charts.js';
import { KIND, chinaToday, countLevel, num, pct, rateLevel } from '../format.js';
import { h, panel, showError, table } from '../ui.js';

const GROUPS = [
  {
    key: 'pairings', title: '结对共建',
    figures: [
      ['active', '履行中结对', 'count'],
      ['commitments', '承诺事项', 'count'],
      ['fulfilled', '已兑现', 'count'],
      ['fulfil_rate', '承诺兑现率', 'rate'],
    ],
  },
  {
    key: 'members', title: '在职党员双报到',
    figures: [
      ['registered', '报到党员', 'count', '人'],
      ['service_hours', '服务时长', 'count', '小时'],
      ['points', '累计积分', 'count'],
    ],
  },
  {
    key: 'issues', title: '民情工单',
    figures: [
      ['reported', '受理', 'count', '件'],
      ['open', '在办', 'count', '件'],
      ['closed', '已销号', 'count', '件'],
      ['overdue', '超期', 'overdue', '件'],
      ['on_time_rate', '按期办结率', 'rate'],
      ['satisfaction_rate', '群众满意率', 'rate'],
      ['resolution_rate', '问题解决率', 'rate'],
    ],
  },
  {
    key: 'rectifications', title: '巡视巡察整改',
    figures: [
      ['total', '问题总数', 'count', '个'],
      ['verified', '已销号', 'count', '个'],
      ['overdue', '超期未改', 'overdue', '个'],
      ['completion_rate', '整改完成率', 'rate'],
    ],
  },
  {
    key: 'service_orders', title: '五单·志愿服务',
    figures: [
      ['requested', '群众点单', 'count', '单'],
      ['completed', '已完成', 'count', '单'],
      ['evaluated', '已评单', 'count', '单'],
      ['average_rating', '平均评分', 'count', '分'],
    ],
  },
  {
    key: 'surveys', title: '扫楼·入户走访',
    figures: [
      ['households_visited', '走访户数', 'count', '户'],
      ['flagged', '发现情况', 'count', '户'],
      ['group_rentals', '群租房', 'count', '户'],
      ['issues_raised', '转为工单', 'count', '件'],
    ],
  },
];

const RANKINGS = [
  ['issues.on_time_rate', '按期办结率', 'rate'],
  ['issues.satisfaction_rate', '群众满意率', 'rate'],
  ['issues.overdue', '超期工单', 'count'],
  ['issues.reported', '受理工单', 'count'],
  ['pairings.fulfil_rate', '承诺兑现率', 'rate'],
  ['rectifications.completion_rate', '整改完成率', 'rate'],
  ['members.registered', '报到党员', 'count'],
  ['members.service_hours', '服务时长', 'count'],
  ['service_orders.completed', '五单完成', 'count'],
  ['surveys.households_visited', '走访户数', 'count'],
];

function pick(stats, path) {
  const [g, f] = path.split('.');
  return stats[g] ? stats[g][f] : null;
}

function figureView(group, [key, label, kind, unit], stats) {
  const value = stats[group.key][key];
  const level = kind === 'rate' ? rateLevel(value) : kind === 'overdue' ? countLevel(value) : null;
  const text = kind === 'rate' ? pct(value) : num(value);
  return h('div', { class: 'figure', dataset: level ? { level } : {} },
    h('div', { class: 'label' }, label),
    h('div', { class: 'value', 'data-figure': `${group.key}.${key}`, 'data-value': value === null ? '' : String(value) },
      text, unit && value !== null ? h('small', {}, unit) : null));
}

export default {
  id: 'overview',
  title: '总览',
  async render(view, ctx) {
    const { api, node } = ctx;
    let asOf = '';
    let ranking = null;
    let stats = null;
    const disposers = [];

    const liveBadge = h('span', { class: 'live', id: 'live-state' }, '');
    const updated = h('span', { class: 'small muted', id: 'updated-at' }, '');
    disposers.push(ctx.onLiveState((s) => {
      liveBadge.dataset.state = s === 'on' ? 'on' : 'off';
      liveBadge.textContent = { on: '实时更新中', poll: `每30秒刷新`, off: '实时连接中断，重连中', denied: '每30秒刷新' }[s] || '';
    }));
    const dateInput = h('input', { type: 'date', id: 'as-of', max: chinaToday(), 'aria-label': '统计截至日期' });
    const today = h('button', { type: 'button', class: 'btn-ghost', id: 'as-of-now' }, '至今');
    const headName = h('h1', {}, node.name);
    const headSub = h('div', { class: 'sub' }, `${KIND[node.kind] || node.kind} · ${node.code} · 各项指标含全部下级`);
    const cards = h('div', { class: 'groups', id: 'cards' });
    const rankSelect = h('select', { id: 'ranking', 'aria-label': '排名指标' }, RANKINGS.map(([v, l]) => h('option', { value: v }, l)));
    const rankChart = h('div', { class: 'chart', id: 'rank-chart', role: 'img', 'aria-label': '下级单元排名柱状图' });
    const rankEmpty = h('p', { class: 'empty', hidden: true }, '没有下级单元。');
    const trendChart = h('div', { class: 'chart', id: 'trend-chart', role: 'img', 'aria-label': '近30天趋势折线图' });
    const childTable = h('div', { id: 'children-table' });
    view.append(
      h('div', { class: 'page-head' },
        h('div', {}, headName, headSub),
        h('div', { class: 'toolbar' }, h('div', { class: 'stamp' }, liveBadge, updated), h('label', {}, '统计截至', dateInput), today)),
      cards,
      h('div', { class: 'grid-2' },
        panel('下级单元排名', h('label', { class: 'small muted' }, '指标 ', rankSelect), rankChart, rankEmpty,
          h('p', { class: 'legend-note' }, '点击柱条进入该单元。比率：≥90% 绿，≥75% 黄，其余红。')),
        panel('近30天趋势', h('span', { class: 'small muted' }, '累计数，按日'), trendChart)),
      panel('下级单元指标', null, childTable));

    let rank = null;
    let trend = null;
    disposers.push(() => { rank?.dispose(); trend?.dispose(); });

    function drawCards() {
      cards.replaceChildren(...GROUPS.map((g) => h('section', { class: 'group', 'aria-label': g.title },
        h('h2', {}, g.title),
        h('div', { class: 'figures' }, g.figures.map((f) => figureView(g, f, stats))))));
    }

    function drawRanking() {
      if (ranking === null) {
        // open on the first indicator that tells the children apart
        const telling = RANKINGS.find(([path]) => stats.children.some((c) => pick(c, path)));
        ranking = (telling || RANKINGS[3])[0];
        rankSelect.value = ranking;
      }
      const [, label, kind] = RANKINGS.find(([v]) => v === ranking);
      const rows = stats.children
        .map((c) => ({ code: c.code, name: c.name, value: pick(c, ranking) }))
        .sort((a, b) => (b.value ?? -1) - (a.value ?? -1));
      const option = {
        grid: { left: 8, right: 36, top: 8, bottom: 8, containLabel: true },
        tooltip: { trigger: 'axis', axisPointer: { type: 'shadow' }, valueFormatter: (v) => (kind === 'rate' ? pct(v) : num(v)) },
        xAxis: { type: 'value', max: kind === 'rate' ? 1 : undefined, minInterval: kind === 'rate' ? 0 : 1, axisLabel: { formatter: (v) => (kind === 'rate' ? `${Math.round(v * 100)}%` : v) } },
        yAxis: { type: 'category', inverse: true, data: rows.map((r) => r.name), axisLabel: { width: 96, overflow: 'truncate' } },
        series: [{
          type: 'bar', name: label, barMaxWidth: 22,
          data: rows.map((r) => ({
            value: r.value,
            itemStyle: { color: kind === 'rate' ? { green: '#17753a', yellow: '#d48806', red: '#b3121b', none: '#9aa4b1' }[rateLevel(r.value)] : '#a8151c' },
          })),
          label: { show: true, position: 'right', formatter: (p) => (kind === 'rate' ? pct(p.value) : num(p.value)) },
        }],
      };
      if (!rank) {
        rank = chart(rankChart, option);
        rank.instance.on('click', (p) => {
          const row = rows[p.dataIndex];
          if (row) ctx.go('overview', row.code);
        });
      } else {
        rank.instance.setOption(option, { replaceMerge: ['series', 'yAxis'] });
        rank.instance.off('click');
        rank.instance.on('click', (p) => { const row = rows[p.dataIndex]; if (row) ctx.go('overview', row.code); });
      }
      rankChart.hidden = rows.length === 0;
      rankEmpty.hidden = rows.length > 0;
    }

    function drawChildren() {
      if (stats.children.length === 0) {
        childTable.replaceChildren(h('p', { class: 'empty' }, '没有下级单元。'));
        return;
      }
      const lit = (value, level, text) => h('span', { class: `chip ${level}` }, text ?? pct(value));
      childTable.replaceChildren(table([
        { label: '单元', value: (c) => h('a', { href: ctx.href('overview', c.code), 'data-child': c.code }, c.name) },
        { label: '受理', num: true, value: (c) => num(c.issues.reported) },
        { label: '在办', num: true, value: (c) => num(c.issues.open) },
        { label: '超期', num: true, value: (c) => lit(null, countLevel(c.issues.overdue), num(c.issues.overdue)) },
        { label: '按期办结率', num: true, value: (c) => lit(c.issues.on_time_rate, rateLevel(c.issues.on_time_rate)) },
        { label: '满意率', num: true, value: (c) => lit(c.issues.satisfaction_rate, rateLevel(c.issues.satisfaction_rate)) },
        { label: '兑现率', num: true, value: (c) => lit(c.pairings.fulfil_rate, rateLevel(c.pairings.fulfil_rate)) },
        { label: '整改完成率', num: true, value: (c) => lit(c.rectifications.completion_rate, rateLevel(c.rectifications.completion_rate)) },
        { label: '报到党员', num: true, value: (c) => num(c.members.registered) },
      ], stats.children, { caption: '下级单元指标' }));
    }

    async function drawTrend() {
      const to = asOf || chinaToday();
      const from = new Date(new Date(`${to}T00:00:00+08:00`).getTime() - 29 * 86400000);
      const fromText = new Intl.DateTimeFormat('en-CA', { timeZone: 'Asia/Shanghai' }).format(from);
      const daily = await api.get(`/v1/nodes/${encodeURIComponent(node.code)}/stats/daily${query({ from: fromText, to })}`);
      if (!ctx.current()) return;
      const days = daily.items.map((d) => d.date.slice(5));
      const option = {
        grid: { left: 8, right: 16, top: 34, bottom: 8, containLabel: true },
        legend: { top: 0, data: ['受理', '已销号', '超期工单', '报到党员'] },
        tooltip: { trigger: 'axis' },
        xAxis: { type: 'category', data: days, boundaryGap: false },
        yAxis: { type: 'value', minInterval: 1 },
        series: [
          ['受理', (d) => d.issues.reported],
          ['已销号', (d) => d.issues.closed],
          ['超期工单', (d) => d.issues.overdue],
          ['报到党员', (d) => d.members.registered],
        ].map(([name, f]) => ({ type: 'line', name, smooth: false, symbolSize: 4, data: daily.items.map(f) })),
      };
      if (!trend) trend = chart(trendChart, option);
      else trend.instance.setOption(option);
    }

    async function load(minPosition) {
      document.body.dataset.ready = '';
      const url = `/v1/nodes/${encodeURIComponent(node.code)}/stats${query({ as_of: asOf, min_position: minPosition })}`;
      stats = await api.get(url);
      if (!ctx.current()) return;
      for (const c of stats.children) ctx.names.set(c.code, c.name);
      drawCards();
      drawRanking();
      drawChildren();
      await drawTrend();
      updated.textContent = asOf ? `${asOf} 日终数据` : `更新于 ${new Date().toLocaleTimeString('zh-CN', { timeZone: 'Asia/Shanghai', hour12: false })}`;
      document.body.dataset.ready = 'overview';
    }

    rankSelect.addEventListener('change', () => { ranking = rankSelect.value; drawRanking(); });
    dateInput.addEventListener('change', () => { asOf = dateInput.value; load().catch(showError); });
    today.addEventListener('click', () => { dateInput.value = ''; asOf = ''; load().catch(showError); });

    // Live: a burst of events becomes one refresh, which waits for the read models to
    // include the newest event it was told about.
    let pending = null;
    let newest = null;
    disposers.push(ctx.onLive((e) => {
      if (asOf) return;
      if (e.position !== null) newest = Math.max(newest ?? 0, e.position);
      clearTimeout(pending);
      pending = setTimeout(() => {
        const at = newest;
        load(at ?? undefined).catch(showError);
      }, 800);
    }));
    disposers.push(() => clearTimeout(pending));

    await load();
    return () => { for (const d of disposers) d(); };
  },
};
