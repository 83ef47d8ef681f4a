// 审计: recompute the subtree's hash chains and show the verdict (and the first failure),
// download a signed checkpoint, read one aggregate's full history from the ledger.
import { query } from '../api.js';
import { EVENT, chinaToday, dateTime } from '../format.js';
import { h, panel, showError, table } from '../ui.js';

const REASON = { altered: '内容被改动', missing: '事件缺失', inserted: '多出事件', broken_link: '链接断裂' };

export default {
  id: 'audit',
  title: '审计',
  roles: ['operator', 'admin', 'inspector'],
  async render(view, ctx) {
    const { api, node } = ctx;
    const verdict = h('div', { id: 'verdict', 'aria-live': 'polite' }, h('p', { class: 'muted' }, '尚未校验。'));
    const verify = h('button', { type: 'button', class: 'btn-primary', id: 'run-verify' }, '校验账本完整性');
    const checkpoint = h('button', { type: 'button', class: 'btn-line', id: 'download-checkpoint' }, '下载签名检查点');
    const streamInput = h('input', { id: 'stream-id', placeholder: '工单、整改问题、结对或党员的编号（UUID）', 'aria-label': '聚合编号', size: 40 });
    const streamButton = h('button', { type: 'button', class: 'btn-line', id: 'load-stream' }, '查看历史');
    const history = h('div', { id: 'stream-history' });
    view.append(
      h('div', { class: 'page-head' }, h('div', {}, h('h1', {}, '审计与留痕'),
        h('div', { class: 'sub' }, `${node.name} 及下级的事件账本：每个节点一条哈希链，检查点由服务器签名`))),
      h('div', { class: 'grid-2' },
        panel('账本校验', null, h('div', { class: 'actions' }, verify, checkpoint), verdict),
        panel('业务对象历史', null, h('div', { class: 'toolbar' }, h('label', { class: 'field' }, '编号', streamInput), streamButton), history)));

    verify.addEventListener('click', async () => {
      verify.disabled = true;
      verdict.replaceChildren(h('p', { class: 'muted' }, '正在逐条重算哈希…'));
      try {
        const started = performance.now();
        const r = await api.get(`/v1/audit/verify${query({ node: node.code })}`);
        const ms = Math.round(performance.now() - started);
        const f = r.first_failure;
        verdict.replaceChildren(
          h('div', { class: `verdict ${r.ok ? 'ok' : 'bad'}`, 'data-ok': String(r.ok) }, r.ok ? '✔ 账本完整，未发现篡改' : '✘ 发现异常'),
          h('dl', { class: 'facts' },
            h('dt', {}, '校验节点'), h('dd', { 'data-nodes': r.nodes_checked }, `${r.nodes_checked} 个`),
            h('dt', {}, '校验事件'), h('dd', { 'data-events': r.events_checked }, `${r.events_checked} 条`),
            h('dt', {}, '用时'), h('dd', {}, `${ms} 毫秒`),
            f ? [h('dt', {}, '首个异常'), h('dd', {}, `节点 ${f.node} 第 ${f.seq} 条：${REASON[f.reason] || f.reason}`)] : null));
      } catch (err) {
        verdict.replaceChildren();
        showError(err);
      } finally {
        verify.disabled = false;
      }
    });

    checkpoint.addEventListener('click', () => {
      api.download(`/v1/audit/checkpoint${query({ node: node.code })}`, `检查点-${node.code}-${chinaToday()}.json`, 'application/json')
        .catch(showError);
    });

    async function loadStream(id) {
      const page = await api.get(`/v1/streams/${encodeURIComponent(id)}/events`);
      history.replaceChildren(table([
        { label: '版本', num: true, value: (e) => e.version },
        { label: '事件', value: (e) => EVENT[e.type] || e.type },
        { label: '发生时间', value: (e) => dateTime(e.occurred_at) },
        { label: '经办', value: (e) => e.actor },
        { label: '哈希', value: (e) => h('span', { class: 'mono', title: e.hash }, `${e.hash.slice(0, 16)}…`) },
      ], page.items, { caption: '历史事件' }));
    }
    streamButton.addEventListener('click', () => {
      const id = streamInput.value.trim();
      if (!/^[0-9a-f-]{36}$/i.test(id)) { showError(new Error('请输入完整的编号（UUID）')); return; }
      showError(null);
      loadStream(id).catch(showError);
    });
    streamInput.addEventListener('keydown', (e) => { if (e.key === 'Enter') streamButton.click(); });
    document.body.dataset.ready = 'audit';
  },
};
