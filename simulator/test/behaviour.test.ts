import { describe, expect, it } from 'vitest';
import { BUILT_IN_BEHAVIOURS, drawDevice, loadBehaviour, validateBehaviour } from '../src/behaviour.js';
import { Histogram } from '../src/histogram.js';

describe('behaviours', () => {
  it('loads the built-in behaviours', () => {
    for (const name of BUILT_IN_BEHAVIOURS) expect(loadBehaviour(name).name).toBe(name);
    expect(() => loadBehaviour('/nonexistent/behaviour.json')).toThrow(TypeError);
    expect(() => validateBehaviour({ name: 'x', rules: [{ probability: 2, faults: {} }] })).toThrow(/probability/);
  });

  it('draws faults deterministically per device and close to the stated probabilities', () => {
    const hostile = loadBehaviour('hostile');
    expect(drawDevice(hostile, 1, 'M5L240000001')).toEqual(drawDevice(hostile, 1, 'M5L240000001'));
    const n = 20_000;
    const byLabel = new Map<string, number>();
    let failed = 0;
    for (let i = 0; i < n; i++) {
      const draw = drawDevice(hostile, 1, `SER${i}`);
      for (const l of draw.labels) byLabel.set(l, (byLabel.get(l) ?? 0) + 1);
      if (draw.expect === 'failed') failed++;
      expect(draw.faults.reboot?.durationMs).toBeGreaterThanOrEqual(1000);
    }
    for (const rule of hostile.rules) {
      expect(Math.abs((byLabel.get(rule.label!) ?? 0) / n - rule.probability), rule.label).toBeLessThan(0.01);
    }
    // install-failure (0.1) or health-check-failure (0.05), independently: 1 − 0.9 × 0.95
    expect(Math.abs(failed / n - 0.145)).toBeLessThan(0.01);
  });

  it('ideal draws no faults', () => {
    expect(drawDevice(loadBehaviour('ideal'), 5, 'A')).toEqual({ faults: {}, labels: [], expect: 'succeeded' });
  });
});

describe('histogram', () => {
  it('reports percentiles within a few percent and merges', () => {
    const a = new Histogram();
    const b = new Histogram();
    for (let i = 1; i <= 10_000; i++) (i % 2 ? a : b).record(i);
    a.merge(Histogram.from(JSON.parse(JSON.stringify(b))));
    const s = a.summary();
    expect(s.count).toBe(10_000);
    expect(Math.abs(s.p50 - 5000) / 5000).toBeLessThan(0.03);
    expect(Math.abs(s.p99 - 9900) / 9900).toBeLessThan(0.03);
    expect(s.max).toBe(10_000);
    expect(s.min).toBe(1);
  });
});
