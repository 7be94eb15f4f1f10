/**
 * A horizontal bar chart (chart.js, tree-shaken: only the bar controller, its element, the two
 * scales and the tooltip are registered). Used for firmware versions and device types.
 */
import { BarController, BarElement, CategoryScale, Chart, LinearScale, Tooltip } from 'chart.js';
import { useEffect, useRef } from 'preact/hooks';

Chart.register(BarController, BarElement, CategoryScale, LinearScale, Tooltip);

export interface Bar {
  label: string;
  count: number;
}

/** Most bars shown; the rest are summed into one "other" bar. */
const MAX_BARS = 12;

export function BarChart(props: { bars: readonly Bar[]; label: string; otherLabel: string; testId?: string }) {
  const canvas = useRef<HTMLCanvasElement>(null);
  const chart = useRef<Chart<'bar'> | null>(null);
  const sorted = [...props.bars].sort((a, b) => b.count - a.count);
  const shown = sorted.slice(0, MAX_BARS);
  const rest = sorted.slice(MAX_BARS).reduce((n, b) => n + b.count, 0);
  if (rest > 0) shown.push({ label: props.otherLabel, count: rest });
  const labels = shown.map((b) => b.label);
  const data = shown.map((b) => b.count);

  useEffect(() => {
    if (!canvas.current) return;
    chart.current = new Chart(canvas.current, {
      type: 'bar',
      data: { labels: [], datasets: [{ label: props.label, data: [], backgroundColor: '#1f6feb', borderRadius: 3 }] },
      options: {
        indexAxis: 'y',
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        plugins: { tooltip: { enabled: true } },
        scales: { x: { beginAtZero: true, ticks: { precision: 0 } } },
      },
    });
    return () => chart.current?.destroy();
  }, []);

  useEffect(() => {
    const c = chart.current;
    if (!c) return;
    c.data.labels = labels;
    c.data.datasets[0]!.data = data;
    c.data.datasets[0]!.label = props.label;
    c.update();
  }, [JSON.stringify(labels), JSON.stringify(data), props.label]);

  return (
    <div class={`chart chart-rows-${Math.min(shown.length, MAX_BARS + 1)}`}>
      <canvas ref={canvas} role="img" aria-label={props.label} data-testid={props.testId} />
      {/* The same figures as text, for screen readers and tests. */}
      <ul class="visually-hidden">
        {shown.map((b) => (
          <li key={b.label}>
            {b.label}
            :
            {b.count}
          </li>
        ))}
      </ul>
    </div>
  );
}
