import { afterEach, describe, expect, it } from 'vitest';
import { createJob, jobsWorlds } from './helpers/jobs-world.js';
import { type AppWorld, appWorld } from './helpers/http.js';
import { removeTempDirs } from './helpers/setup.js';

/** The reads the console's device pages use beside the device list and one device. */
const worlds: AppWorld[] = [];
afterEach(async () => {
  for (const w of worlds.splice(0)) await w.app.close();
  removeTempDirs();
});

async function ready() {
  const w = await appWorld();
  worlds.push(w);
  const t = await w.newTenant();
  w.licences(t, 'basic-25', 1);
  return { w, t, token: await w.login(t) };
}

describe('device list: admission filter', () => {
  it('filters by admission state, `none` for devices without one; an unknown state is a validation error', async () => {
    const { w, t, token } = await ready();
    const [a, b, c] = w.devices(t, 3);
    w.services.admission.admit({ serialNumber: a!.serialNumber, credential: a!.credential });
    w.services.store.stmt(`UPDATE devices SET admission = 'rejected' WHERE uuid = ?`).run(b!.uuid);
    const list = async (q: string) =>
      (await w.req('GET', `/api/inventory/managed-devices?${q}`, { token })).json().items.map((d: { uuid: string }) => d.uuid);
    expect(await list('admission=managed')).toEqual([a!.uuid]);
    expect(await list('admission=rejected')).toEqual([b!.uuid]);
    expect(await list('admission=none')).toEqual([c!.uuid]);
    expect(await list('admission=unmanaged')).toEqual([]);
    const bad = await w.req('GET', '/api/inventory/managed-devices?admission=maybe', { token });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().code).toBe('SERVER_VALIDATION');
  });
});

describe('GET /api/events/latest', () => {
  it('gives the newest event of each device named, leaves out devices without events, and checks the list', async () => {
    const { w, t, token } = await ready();
    const [a, b, c] = w.devices(t, 3);
    for (const [subject, type] of [
      [a!.uuid, 'test.first'],
      [b!.uuid, 'test.other'],
      [a!.uuid, 'test.second'],
    ] as const) {
      t.scope.events.record({ type, subject, at: w.clock.now() });
    }
    const res = await w.req('GET', `/api/events/latest?deviceUuids=${a!.uuid},${b!.uuid},${c!.uuid}`, { token });
    expect(res.statusCode).toBe(200);
    const items = res.json().items as Array<{ subject: string; type: string }>;
    expect(items.map((e) => [e.subject, e.type])).toEqual([
      [a!.uuid, 'test.second'],
      [b!.uuid, 'test.other'],
    ]);
    expect((await w.req('GET', '/api/events/latest', { token })).json()).toEqual({ items: [] });
    const tooMany = Array.from({ length: 101 }, () => a!.uuid).join(',');
    for (const q of ['not-a-uuid', tooMany]) {
      const bad = await w.req('GET', `/api/events/latest?deviceUuids=${q}`, { token });
      expect(bad.statusCode, q.slice(0, 20)).toBe(400);
      expect(bad.json().code).toBe('SERVER_VALIDATION');
    }
  });
});

describe('GET /api/inventory/managed-devices/{uuid}/jobs', () => {
  const open = jobsWorlds();

  it('lists the jobs a device was part of, newest first and paged, with its result and latest execution in each', async () => {
    const w = await open();
    const packet = await w.packet();
    const [d, other] = w.fakeDevices(2);
    await d!.connect(w.channel.port);
    const first = await createJob(w, { name: 'first', packetUuid: packet.uuid, target: { deviceUuids: [d!.uuid] } });
    const offer = await d!.next('job-offer', undefined, 20_000);
    d!.report((offer.body as { executionId: string }).executionId, 'failed', { errorCode: 'AGENT_INSTALL_FAILED' });
    await d!.until(() => d!.acks().length > 0 || undefined, 'the result acknowledged');
    const second = await createJob(w, { name: 'second', packetUuid: packet.uuid, target: { deviceUuids: [other!.uuid] } });
    const third = await createJob(w, { name: 'third', packetUuid: packet.uuid, target: { all: true } });

    const page1 = await w.api('GET', `/api/inventory/managed-devices/${d!.uuid}/jobs?limit=1`);
    expect(page1.status).toBe(200);
    expect(page1.json.items).toHaveLength(1);
    expect(page1.json.items[0]).toMatchObject({ jobUuid: third.uuid, jobName: 'third' });
    const page2 = await w.api('GET', `/api/inventory/managed-devices/${d!.uuid}/jobs?limit=1&cursor=${page1.json.nextCursor}`);
    expect(page2.json.items[0]).toMatchObject({
      jobUuid: first.uuid,
      jobName: 'first',
      status: 'done',
      result: 'failed',
      state: 'failed',
      errorCode: 'AGENT_INSTALL_FAILED',
      attempts: 1,
    });
    expect(page2.json.nextCursor).toBeNull();
    const otherJobs = await w.api('GET', `/api/inventory/managed-devices/${other!.uuid}/jobs`);
    expect(otherJobs.json.items.map((j: { jobUuid: string }) => j.jobUuid)).toEqual([third.uuid, second.uuid]);
    const unknown = await w.api('GET', '/api/inventory/managed-devices/00000000-0000-4000-8000-000000000000/jobs');
    expect(unknown.status).toBe(404);
  });
});
