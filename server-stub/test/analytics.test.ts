import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writePacket } from '@router-fleet/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ConsentEvent } from '../src/analytics/service.js';
import type { Notice } from '../src/channel/notices.js';
import { type AppWorld, appWorld } from './helpers/http.js';
import { DAY, removeTempDirs, T0, type Tenant, tempDir } from './helpers/setup.js';

let w: AppWorld;
let t: Tenant;
let token: string;

beforeAll(async () => {
  w = await appWorld({ testClock: true });
  t = await w.newTenant();
  token = await w.login(t);
});
afterAll(async () => {
  await w.app.close();
  removeTempDirs();
});

const rows = (accountId: number) =>
  w.services.store.stmt<{ metrics: string; model: string | null; firmware: string | null }>(
    'SELECT metrics, model, firmware FROM analytics_samples WHERE account_id = ? ORDER BY id',
  ).all(accountId);

describe('device analytics', () => {
  it('consent: asked after activation, changeable, announced at once (event + settings notice)', async () => {
    expect((await w.req('GET', '/api/account/analytics-consent', { token })).json()).toMatchObject({ consent: null, askRequired: false });
    w.licences(t, 'basic-25', 1);
    expect((await w.req('GET', '/api/account/analytics-consent', { token })).json()).toMatchObject({ consent: null, askRequired: true });
    const events: ConsentEvent[] = [];
    const notices: Notice[] = [];
    w.services.analytics.events.on('consent', (e) => events.push(e));
    const off = w.services.notices.subscribe((n) => notices.push(n));
    const put = await w.req('PUT', '/api/account/analytics-consent', { token, body: { consent: true } });
    expect(put.json()).toMatchObject({ consent: true, askRequired: false, decidedAt: new Date(w.clock.now()).toISOString() });
    expect(events).toEqual([{ accountUuid: t.accountUuid, accountKey: t.accountId, consent: true, at: w.clock.now() }]);
    expect(notices).toContainEqual({ kind: 'settings', accountUuid: t.accountUuid, analyticsConsent: true });
    // The same decision again changes nothing and tells nobody.
    await w.req('PUT', '/api/account/analytics-consent', { token, body: { consent: true } });
    expect(events).toHaveLength(1);
    off();
  });

  it('ingest keeps only the published metrics of the right shape and counts what it drops', async () => {
    const [d] = w.devices(t, 1, `AN${t.accountId}`);
    w.services.devices.update(t.scope, d!.uuid, { model: 'RT-100', firmware: '1.0.0' });
    const before = w.services.metrics.value('fleet_analytics_dropped_keys_total');
    const r = w.services.analytics.ingest(d!.uuid, t.accountUuid, {
      samples: [
        {
          at: T0,
          periodSec: 3600,
          metrics: {
            cpuLoadPercent: 40,
            memoryUsagePercent: 60,
            disconnections: 2,
            throughputBytesIn: 1000,
            ipAddress: '10.0.0.7',
            macAddress: '00:11:22:33:44:55',
            url: 'https://intranet.example/admin',
            username: 'bob',
            privateKey: '-----BEGIN PRIVATE KEY-----',
            latitude: 48.1,
            networkQuality: '192.168.1.1',
            functionUsage: { 'vpn.openvpn': true, 'dst 10.0.0.1': true },
          },
        },
        { at: 'yesterday', periodSec: 1, metrics: {} },
      ],
    });
    expect(r).toEqual({ stored: 1, droppedKeys: 8, droppedSamples: 1 });
    expect(w.services.metrics.value('fleet_analytics_dropped_keys_total') - before).toBe(8);
    const stored = rows(t.accountId);
    expect(stored).toHaveLength(1);
    expect(JSON.parse(stored[0]!.metrics)).toEqual({
      cpuLoadPercent: 40,
      memoryUsagePercent: 60,
      disconnections: 2,
      throughputBytesIn: 1000,
      functionUsage: { 'vpn.openvpn': true },
    });
    for (const secret of ['10.0.0', '00:11:22', 'intranet', 'bob', 'PRIVATE', '48.1', '192.168']) {
      expect(stored[0]!.metrics).not.toContain(secret);
    }
    // Another account's device, or garbage, stores nothing and never throws.
    expect(w.services.analytics.ingest(d!.uuid, 'someone-else', { samples: [] }).reason).toBe('unknown-device');
    expect(w.services.analytics.ingest(d!.uuid, t.accountUuid, null)).toMatchObject({ stored: 0 });
  });

  it('with consent withdrawn nothing is stored and the consent event fires', async () => {
    const [d] = w.devices(t, 1, `AW${t.accountId}`);
    const events: ConsentEvent[] = [];
    w.services.analytics.events.on('consent', (e) => events.push(e));
    await w.req('PUT', '/api/account/analytics-consent', { token, body: { consent: false } });
    expect(events).toMatchObject([{ accountUuid: t.accountUuid, consent: false }]);
    const n = rows(t.accountId).length;
    const r = w.services.analytics.ingest(d!.uuid, t.accountUuid, {
      samples: [{ at: T0, periodSec: 60, metrics: { cpuLoadPercent: 1 } }],
    });
    expect(r).toMatchObject({ stored: 0, reason: 'no-consent' });
    expect(rows(t.accountId)).toHaveLength(n);
    await w.req('PUT', '/api/account/analytics-consent', { token, body: { consent: true } });
  });

  it('aggregates per model and firmware', async () => {
    const devs = w.devices(t, 2, `AG${t.accountId}`);
    for (const d of devs) w.services.devices.update(t.scope, d.uuid, { model: 'RT-200', firmware: '3.0.0' });
    for (const [i, d] of devs.entries()) {
      w.services.analytics.ingest(d.uuid, t.accountId, {
        samples: [
          {
            at: T0 + DAY,
            periodSec: 43_200,
            metrics: { operatingHours: 100 + i, restarts: 1, cpuLoadPercent: 10, networkQuality: 80, throughputBytesOut: 500 },
          },
          { at: T0 + DAY, periodSec: 43_200, metrics: { restarts: 0, cpuLoadPercent: 30, disconnections: 1 } },
        ],
      });
    }
    const agg = (await w.req('GET', '/api/analytics/aggregates?model=RT-200', { token })).json().items;
    expect(agg).toEqual([
      expect.objectContaining({
        model: 'RT-200',
        firmware: '3.0.0',
        devices: 2,
        samples: 4,
        sampledHours: 48,
        operatingHoursAvg: 100.5,
        restarts: 2,
        restartsPerDay: 1,
        disconnections: 2,
        cpuLoadPercentAvg: 20,
        networkQualityAvg: 80,
        throughputBytesOut: 1000,
      }),
    ]);
    const all = (await w.req('GET', '/api/analytics/aggregates', { token })).json().items;
    expect(all.map((a: { model: string; firmware: string }) => `${a.model}@${a.firmware}`)).toEqual(['RT-100@1.0.0', 'RT-200@3.0.0']);
  });
});

describe('smart updates', () => {
  it('keep devices on the newest compatible firmware with system jobs: one per model and version, no duplicates', async () => {
    const s = await w.newTenant();
    w.licences(s, 'basic-25', 1);
    const st = await w.login(s);
    const pki = await w.services.packets.pki();
    const dir = join(tempDir(), 'vendor');
    mkdirSync(dir);
    const fw = (version: string, requiredSw?: string) =>
      writePacket({
        files: [{
          name: `autoupdate-${version}-full.arm64.tar`,
          fileType: 'FirmwareFull',
          source: { data: Buffer.from(`firmware ${version}`) },
          version,
          ...(requiredSw ? { requiredSw } : {}),
        }],
        targetModels: ['SU-100'],
        signer: pki.signer,
        createdAt: new Date(T0),
      });
    writeFileSync(join(dir, 'a.tar'), await fw('2.0.0'));
    writeFileSync(join(dir, 'b.tar'), await fw('2.1.0', '>=1.5.0'));
    expect((await w.services.packets.importVendorFirmware(dir)).imported).toHaveLength(2);
    const mk = (serialNumber: string, model: string, firmware: string) =>
      w.services.devices.create(s.scope, { serialNumber, model, firmware }).uuid;
    const old = mk(`SU-A-${s.accountId}`, 'SU-100', '1.0.0'); // REQUIRED_SW of 2.1.0 excludes it: 2.0.0
    const mid = mk(`SU-B-${s.accountId}`, 'SU-100', '1.6.0'); // → 2.1.0
    mk(`SU-C-${s.accountId}`, 'SU-100', '2.1.0'); // current
    mk(`SU-D-${s.accountId}`, 'OTHER', '1.0.0'); // no firmware for its model
    const on = await w.req('PUT', '/api/account/smart-updates', { token: st, body: { enabled: true } });
    expect(on.json()).toMatchObject({ enabled: true });
    const jobs = async () =>
      (await w.req('GET', '/api/jobs', { token: st })).json().items as {
        uuid: string;
        system: boolean;
        firmwareVersion: string;
        options: { maxConcurrent: number };
        progress: { devices: { total: number } };
      }[];
    const targetDevices = async (uuid: string) =>
      ((await w.req('GET', `/api/jobs/${uuid}/target/devices`, { token: st })).json().items as { deviceUuid: string }[]).map((d) => d.deviceUuid);
    let list = await jobs();
    const named = await Promise.all(list.map(async (j) => [j.firmwareVersion, j.system, await targetDevices(j.uuid)]));
    expect(named.sort()).toEqual([
      ['2.0.0', true, [old]],
      ['2.1.0', true, [mid]],
    ]);
    expect(list[0]!.options).toMatchObject({ maxConcurrent: 20, maxPerMinute: 60 });
    // Periodic checks (test clock) create no duplicates; a newly outdated device joins the running job.
    w.advance(60_000);
    w.advance(60_000);
    expect(await jobs()).toHaveLength(2);
    mk(`SU-E-${s.accountId}`, 'SU-100', '1.9.0');
    w.advance(60_000);
    list = await jobs();
    expect(list).toHaveLength(2);
    expect(list.find((j) => j.firmwareVersion === '2.1.0')!.progress.devices.total).toBe(2);
    const sys = (await w.req('GET', '/api/audit-log?limit=100', { token: st })).json().items.filter(
      (r: { actor: { type: string } }) => r.actor.type === 'system',
    );
    expect(sys.map((r: { action: string }) => r.action).sort()).toEqual([
      'SMART-UPDATE create job',
      'SMART-UPDATE create job',
      'SMART-UPDATE extend job',
    ]);
    // Off: nothing new.
    await w.req('PUT', '/api/account/smart-updates', { token: st, body: { enabled: false } });
    mk(`SU-F-${s.accountId}`, 'SU-100', '1.0.0');
    w.advance(60_000);
    expect((await jobs()).find((j) => j.firmwareVersion === '2.0.0')!.progress.devices.total).toBe(1);
  });
});
