import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { FIRMWARE_SPREAD, fleetToCsv, generateFleet, MODEL_MIX } from '../src/fleet-generator.js';

const digest = (s: string) => createHash('sha256').update(s).digest('hex');

describe('fleet generator', () => {
  it('gives the same CSV for the same seed, byte for byte, and another for another seed', () => {
    const a = fleetToCsv(generateFleet({ devices: 500, seed: 42 }));
    const b = fleetToCsv(generateFleet({ devices: 500, seed: 42 }));
    const c = fleetToCsv(generateFleet({ devices: 500, seed: 43 }));
    expect(digest(a)).toBe(digest(b));
    expect(digest(a)).not.toBe(digest(c));
    // A prefix of a larger fleet with the same seed is the smaller fleet.
    expect(fleetToCsv(generateFleet({ devices: 1000, seed: 42 })).startsWith(a)).toBe(true);
  });

  it('makes unique serial numbers and a realistic mix', () => {
    const fleet = generateFleet({ devices: 5000, seed: 7 });
    expect(new Set(fleet.map((d) => d.serialNumber)).size).toBe(5000);
    const byModel = new Map<string, number>();
    for (const d of fleet) byModel.set(d.model, (byModel.get(d.model) ?? 0) + 1);
    for (const m of MODEL_MIX) {
      const share = ((byModel.get(m.model) ?? 0) / fleet.length) * 100;
      expect(Math.abs(share - m.weight), m.model).toBeLessThan(3);
    }
    expect(new Set(fleet.map((d) => d.firmware)).size).toBe(FIRMWARE_SPREAD.length);
    for (const d of fleet) {
      expect(d.latitude).toBeGreaterThanOrEqual(-90);
      expect(d.latitude).toBeLessThanOrEqual(90);
      expect(d.serialNumber).toMatch(/^[A-Z0-9]+$/);
    }
  });

  it('writes RFC 4180 CSV with a header and optional custom fields', () => {
    const csv = fleetToCsv(generateFleet({ devices: 3, seed: 1 }));
    const [header, ...rows] = csv.trimEnd().split('\n');
    expect(header).toBe('serialNumber,name,model,firmware,group,location,latitude,longitude,customFields.commissioned,customFields.installer,customFields.site');
    expect(rows).toHaveLength(3);
    expect(rows[0]).toMatch(/^[A-Z0-9]+,[^,]+,[^,]+,\d+\.\d+\.\d+,/);
    const plain = fleetToCsv(generateFleet({ devices: 3, seed: 1, customFields: false }));
    expect(plain.split('\n')[0]).toBe('serialNumber,name,model,firmware,group,location,latitude,longitude');
  });
});
