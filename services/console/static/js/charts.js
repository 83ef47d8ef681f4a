// Apache ECharts (vendored, see ../vendor/), with the console's colours.
import echarts from '../vendor/echarts.min.js';

export const PALETTE = ['#a8151c', '#1f4e8c', '#d48806', '#17753a', '#6b3fa0', '#0e7c86'];

const charts = new Set();
window.addEventListener('resize', () => { for (const c of charts) c.resize(); });

export function chart(el, option) {
  const instance = echarts.init(el, null, { renderer: 'canvas' });
  instance.setOption({ color: PALETTE, textStyle: { fontFamily: 'inherit' }, aria: { enabled: true }, ...option });
  charts.add(instance);
  return {
    instance,
    dispose() { charts.delete(instance); instance.dispose(); },
  };
}
