import type { HistogramSummary } from '@router-fleet/simulator';

/** A horizontal bar chart as a small standalone SVG (no dependencies; renders in any browser or Markdown viewer). */
export function barChartSvg(title: string, bars: ReadonlyArray<{ label: string; value: number }>, unit: string): string {
  const width = 640;
  const rowH = 22;
  const left = 150;
  const height = 40 + bars.length * rowH;
  const max = Math.max(1, ...bars.map((b) => b.value));
  const esc = (t: string) => t.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const rows = bars
    .map((b, i) => {
      const y = 30 + i * rowH;
      const w = Math.max(1, ((width - left - 90) * b.value) / max);
      return `<text x="${left - 8}" y="${y + 14}" text-anchor="end">${esc(b.label)}</text>`
        + `<rect x="${left}" y="${y + 2}" width="${w.toFixed(1)}" height="${rowH - 6}" fill="#3b7dd8"/>`
        + `<text x="${(left + w + 6).toFixed(1)}" y="${y + 14}">${b.value.toLocaleString('en')} ${esc(unit)}</text>`;
    })
    .join('\n  ');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">
  <text x="10" y="18" font-weight="bold">${esc(title)}</text>
  ${rows}
</svg>
`;
}

/** Percentile bars of one histogram. */
export function histogramSvg(title: string, h: HistogramSummary): string {
  return barChartSvg(title, [
    { label: 'p50', value: h.p50 },
    { label: 'p90', value: h.p90 },
    { label: 'p99', value: h.p99 },
    { label: 'max', value: h.max },
  ], 'ms');
}
