import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runScale } from '../src/scale.js';

describe('fleet-loadtest scale (small run in CI)', () => {
  it('admits exactly min(N, L) first come first served, updates them all and survives a restart', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'scale-report-'));
    try {
      const devices = Number(process.env['FLEET_SCALE_TEST_DEVICES'] ?? 2000);
      const licences = Math.round(devices * 0.8);
      const result = await runScale({ devices, licences, rate: 400, report: join(dir, 'scale.json'), baseline: false, log: () => {} });
      expect(result.checks.filter((c) => !c.pass)).toEqual([]);
      expect(result.pass).toBe(true);
      const md = readFileSync(join(dir, 'scale.md'), 'utf8');
      expect(md).toContain('PASS');
      expect(md).toContain('wss (TLS');
      expect(existsSync(join(dir, 'scale-admission.svg'))).toBe(true);
      expect(JSON.parse(readFileSync(join(dir, 'scale.json'), 'utf8')).devices).toBe(devices);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 400_000);
});
