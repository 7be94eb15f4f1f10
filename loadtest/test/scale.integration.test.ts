import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { MOSQUITTO_MISSING } from '../src/brokers.js';
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
      const json = JSON.parse(readFileSync(join(dir, 'scale.json'), 'utf8'));
      expect(json.devices).toBe(devices);
      // Memory of every server process (primary and workers) with the fleet connected.
      expect(json.server.connectedRssBytes).toBeGreaterThan(json.server.idleRssBytes);
      expect(json.server.bytesPerDevice).toBeGreaterThan(0);
      expect(md).toContain('server memory per device');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 400_000);

  it('runs the same scenario over plain ws (--no-tls) and says so', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'scale-report-'));
    try {
      // With a rollout limit on the job (--job-concurrency): the server takes it and the job still completes.
      const result = await runScale({ devices: 300, licences: 250, rate: 300, tls: false, jobConcurrency: 40, report: join(dir, 'plain.json'), baseline: false, log: () => {} });
      expect(result.checks.filter((c) => !c.pass)).toEqual([]);
      expect(result.transport).toMatch(/^ws \(plain/);
      expect(result.jobConcurrency).toBe(40);
      const md = readFileSync(join(dir, 'plain.md'), 'utf8');
      expect(md).toContain('Transport: ws (plain');
      expect(md).toContain('Job rollout limit: 40 executions in flight');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 300_000);

  it('runs on a PostgreSQL database of its own (--store postgres), names it in the report and drops it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'scale-report-'));
    try {
      const result = await runScale({ devices: 100, licences: 80, rate: 300, tls: false, store: 'postgres', report: join(dir, 'pg.json'), baseline: false, log: () => {} });
      expect(result.checks.filter((c) => !c.pass)).toEqual([]);
      expect(result.store).toMatch(/^PostgreSQL \(database fleet_scale_\d+_[0-9a-f]+ on 127\.0\.0\.1:5432, created for the run and dropped after it\)$/);
      expect(result.counts).toMatchObject({ devices: 100, managed: 80, refused: 20, jobSucceeded: 80, jobsFinished: 80 });
      const name = /database (\S+)/.exec(result.store)![1]!;
      const client = new pg.Client({ host: process.env['PGHOST'] || '127.0.0.1', port: Number(process.env['PGPORT'] || 5432), user: process.env['PGUSER'] || 'postgres', password: process.env['PGPASSWORD'] ?? '', database: 'postgres' });
      await client.connect();
      try {
        expect((await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name])).rowCount).toBe(0);
      } finally {
        await client.end();
      }
      expect(readFileSync(join(dir, 'pg.md'), 'utf8')).toContain('Store: PostgreSQL (database');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 300_000);

  it('runs the simulator as shards of the fleet file and reports the merge of their reports (--shards)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'scale-report-'));
    try {
      const result = await runScale({ devices: 300, licences: 240, rate: 300, tls: false, shards: 2, report: join(dir, 'shards.json'), baseline: false, log: () => {} });
      expect(result.checks.filter((c) => !c.pass)).toEqual([]);
      const json = JSON.parse(readFileSync(join(dir, 'shards.json'), 'utf8'));
      const shards = json.simulator.shards;
      expect(shards.count).toBe(2);
      expect(shards.devices).toHaveLength(2);
      expect(shards.devices[0] + shards.devices[1]).toBe(300);
      expect(Math.min(...shards.devices)).toBeGreaterThan(0);
      // The run's figures are the merged report's: every router of both shards, once.
      expect(shards.merged).toMatchObject({ devices: 300, started: 300, shard: { count: 2, indices: [1, 2] }, merged: { missing: [] } });
      expect(shards.merged.fleet.routers).toBe(300);
      expect(json.histograms).toEqual(shards.merged.histograms);
      expect(json.histograms.admission.count).toBeGreaterThanOrEqual(300);
      expect(json.processes).toBe(2);
      // The merged report's end counts are those a single run of the same fleet ends with.
      expect(json.counts).toMatchObject({ devices: 300, managed: 240, refused: 60, jobsFinished: 240, jobsRolledBack: 0, jobSucceeded: 240 });
      expect(json.counts.states).toMatchObject({ managed: 240 });
      expect(readFileSync(join(dir, 'shards.md'), 'utf8')).toContain(`Simulator: 2 shards of the fleet (${shards.devices[0]} + ${shards.devices[1]} routers)`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 300_000);

  it.skipIf(MOSQUITTO_MISSING)(`runs over MQTT through sharded Mosquitto brokers bridged to a hub, with the raw MQTT floor and a broker restart${MOSQUITTO_MISSING ? ` (skipped: ${MOSQUITTO_MISSING})` : ''}`, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'scale-report-'));
    try {
      const result = await runScale({ devices: 200, licences: 160, rate: 300, transport: 'mqtt', devicesPerBroker: 120, report: join(dir, 'mqtt.json'), log: () => {} });
      expect(result.checks.filter((c) => !c.pass)).toEqual([]);
      expect(result.checks.map((c) => c.name)).toContain('every router back after a broker restart');
      expect(result.transport).toMatch(/^mqtts \(TLS.*2 Mosquitto broker\(s\) bridged to a hub/);
      const json = JSON.parse(readFileSync(join(dir, 'mqtt.json'), 'utf8'));
      expect(json.brokers.count).toBe(2);
      expect(json.brokers.devicesPerBroker.reduce((a: number, b: number) => a + b, 0)).toBe(200);
      expect(json.brokers.connectedHeapBytes).toBeGreaterThan(json.brokers.idleHeapBytes);
      expect(json.mqttFloor).toMatchObject({ transport: 'mqtts', clients: 200, failed: 0, answered: 200 });
      expect(json.ratios.connectsPerSec).toBeGreaterThan(0);
      const md = readFileSync(join(dir, 'mqtt.md'), 'utf8');
      expect(md).toContain('raw `mqtts` floor');
      expect(md).toContain('broker heap per device');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 400_000);
});
