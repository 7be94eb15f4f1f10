import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkPacketCompatibility, readPacketHead, writePacket } from '@router-fleet/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SMART_UPDATE_RETRY_MS } from '../src/smart-updates/service.js';
import { waitFor } from '../../protocol/test/helpers/wait-for.js';
import { jobsWorld, type JobsWorld } from './helpers/jobs-world.js';
import { T0, tempDir } from './helpers/setup.js';

let w: JobsWorld;
beforeAll(async () => {
  w = await jobsWorld({ flags: { presenceFlushMs: 50 } });
});
afterAll(async () => {
  await w.shutdown();
});

interface ReportedRow {
  reported_model: string | null;
  reported_firmware: string | null;
  reported_lat: number | null;
  reported_lon: number | null;
  reported_position_at: number | null;
}
const reported = (uuid: string) =>
  w.services.store
    .stmt<ReportedRow>('SELECT reported_model, reported_firmware, reported_lat, reported_lon, reported_position_at FROM devices WHERE uuid = ?')
    .get(uuid)!;

describe('what routers report', () => {
  it('is stored beside the typed-in fields; positions only when the router moved more than 25 m; the dashboard uses it', async () => {
    const [d] = w.fakeDevices(1, { prefix: 'REP', model: 'TYPED-MODEL' });
    await d!.connect(w.channel.port); // hello: model RT-100, firmware 1.0.0
    await waitFor(() => reported(d!.uuid).reported_model === 'RT-100' || undefined, { timeout: 10_000, what: 'the reported model' });
    d!.status({ firmwareVersion: '1.0.0', location: { lat: 47.3769, lon: 8.5417 } });
    await waitFor(() => reported(d!.uuid).reported_lat !== null || undefined, { timeout: 10_000, what: 'the reported position' });
    const at = reported(d!.uuid).reported_position_at;
    // ~11 m north: the same place (GNSS jitter), not written.
    d!.status({ firmwareVersion: '1.0.1', location: { lat: 47.3770, lon: 8.5417 } });
    await waitFor(() => reported(d!.uuid).reported_firmware === '1.0.1' || undefined, { timeout: 10_000, what: 'the next status' });
    expect(reported(d!.uuid)).toMatchObject({ reported_lat: 47.3769, reported_position_at: at });
    // ~111 m north: moved.
    w.advance(1000);
    d!.status({ firmwareVersion: '1.0.1', location: { lat: 47.3779, lon: 8.5417 } });
    await waitFor(() => reported(d!.uuid).reported_lat === 47.3779 || undefined, { timeout: 10_000, what: 'the moved position' });
    expect(reported(d!.uuid).reported_position_at).toBe(T0 + 1000);

    const view = await w.api('GET', `/api/inventory/managed-devices/${d!.uuid}`);
    expect(view.json).toMatchObject({
      model: 'TYPED-MODEL',
      latitude: null,
      reported: { model: 'RT-100', firmware: '1.0.1', position: { latitude: 47.3779, longitude: 8.5417 } },
    });
    expect((await w.api('GET', '/api/dashboard/device-types')).json.items).toContainEqual({ model: 'RT-100', count: 1 });
    expect((await w.api('GET', '/api/dashboard/device-types')).json.items).not.toContainEqual(expect.objectContaining({ model: 'TYPED-MODEL' }));
    const map = (await w.api('GET', '/api/dashboard/locations')).json;
    expect(map.features).toContainEqual(expect.objectContaining({
      geometry: { type: 'Point', coordinates: [8.5417, 47.3779] },
      properties: expect.objectContaining({ uuid: d!.uuid, positionSource: 'reported' }),
    }));
    await d!.disconnect();
    expect((await w.api('DELETE', `/api/inventory/managed-devices/${d!.uuid}`)).status).toBe(204);
  });
});

describe('Smart Updates', () => {
  it('target the reported model, and retry a router that rejected once it changed or after 24 h, not before', async () => {
    const pki = await w.services.packets.pki();
    const dir = join(tempDir(), 'vendor');
    mkdirSync(dir);
    writeFileSync(join(dir, 'fw.tar'), await writePacket({
      files: [{ name: 'autoupdate-3.0.0-full.arm64.tar', fileType: 'FirmwareFull', source: { data: Buffer.from('firmware 3.0.0') }, version: '3.0.0' }],
      targetModels: ['RT-100'],
      signer: pki.signer,
      createdAt: new Date(T0),
    }));
    expect((await w.services.packets.importVendorFirmware(dir)).imported).toHaveLength(1);
    const [d] = w.fakeDevices(1, { prefix: 'SUR', model: 'SOMETHING-ELSE' });
    await d!.connect(w.channel.port);
    await waitFor(() => reported(d!.uuid).reported_model === 'RT-100' || undefined, { timeout: 10_000, what: 'the reported model' });
    expect((await w.api('PUT', '/api/account/smart-updates', { enabled: true })).status).toBe(200);

    const systemJobs = async () => (await w.api('GET', '/api/jobs')).json.items.filter((j: { system: boolean }) => j.system) as { state: string }[];
    /** The router rejects offer n (as it would a packet whose signer it does not trust); waits for n finished jobs. */
    const untilFinished = async (n: number) => {
      await waitFor(() => d!.offers().length >= n || undefined, { timeout: 20_000, what: `offer ${n}` });
      d!.report(d!.offers()[n - 1]!.body.executionId, 'rejected', { errorCode: 'PROTO_PACKET_SIGNER_UNTRUSTED' });
      return waitFor(async () => {
        const jobs = await systemJobs();
        return jobs.length === n && jobs.every((j) => j.state === 'finished') && jobs;
      }, { timeout: 20_000, what: `${n} finished system jobs` });
    };
    expect(await untilFinished(1)).toHaveLength(1);

    // Nothing changed and a day has not passed: not offered again.
    w.advance(60_000);
    expect(w.services.smartUpdates.checkAccount(w.tenant.accountId).created).toEqual([]);
    // The router changed (it reports other firmware): offered again.
    d!.status({ firmwareVersion: '1.2.0' });
    await waitFor(() => reported(d!.uuid).reported_firmware === '1.2.0' || undefined, { timeout: 10_000, what: 'the new firmware' });
    expect(w.services.smartUpdates.checkAccount(w.tenant.accountId).created).toEqual([expect.objectContaining({ model: 'RT-100', version: '3.0.0', devices: 1 })]);
    expect(await untilFinished(2)).toHaveLength(2);
    expect(w.services.smartUpdates.checkAccount(w.tenant.accountId).created).toEqual([]);
    // A day later: offered again even though nothing changed (moving the test clock runs the check).
    w.advance(SMART_UPDATE_RETRY_MS - 120_000);
    expect(w.services.smartUpdates.checkAccount(w.tenant.accountId).created).toEqual([]);
    w.advance(120_000);
    w.services.smartUpdates.checkAccount(w.tenant.accountId);
    await w.relogin();
    expect(await systemJobs()).toHaveLength(3);
    await d!.disconnect();
  });
});

describe('the firmware Smart Updates pick', () => {
  it('is what the routers would install: versions and REQUIRED_SW by protocol\'s one version rule', async () => {
    const pki = await w.services.packets.pki();
    const dir = join(tempDir(), 'vendor-partial');
    mkdirSync(dir);
    // A two-part VERSION and REQUIRED_SW, as vendors write them; node-semver had refused '2.1'.
    writeFileSync(join(dir, 'fw.tar'), await writePacket({
      files: [{ name: 'fw-2.1.tar', fileType: 'FirmwareFull', source: { data: Buffer.from('firmware 2.1') }, version: '2.1', requiredSw: '>=2.0' }],
      targetModels: ['RT-200'],
      signer: pki.signer,
      createdAt: new Date(T0),
    }));
    expect((await w.services.packets.importVendorFirmware(dir)).imported).toHaveLength(1);
    const { manifest } = await readPacketHead(join(dir, 'fw.tar'), { requireSignature: false });
    // Offered = newer than the running firmware and accepted by the router's own check.
    const routerAccepts = (firmwareVersion: string) => checkPacketCompatibility(manifest, { model: 'RT-200', firmwareVersion }) === undefined;
    for (const [firmware, offered] of [['2.0', true], ['2.0.5', true], ['1.9', false], ['=2.0.0', false], ['2.1', false], ['2.1.0', false]] as const) {
      expect(w.services.smartUpdates.target('RT-200', firmware)?.version, firmware).toBe(offered ? '2.1' : undefined);
      if (offered) expect(routerAccepts(firmware), firmware).toBe(true);
    }
    expect(routerAccepts('1.9')).toBe(false); // REQUIRED_SW
    expect(routerAccepts('=2.0.0')).toBe(false); // not a version to the router
  });
});
