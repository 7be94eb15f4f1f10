import type { AddressInfo } from 'node:net';
import type { MessageOf } from '@router-fleet/protocol';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { waitFor } from '../../protocol/test/helpers/wait-for.js';
import { buildApp } from '../src/app.js';
import { LiveFeeds, type LiveSink } from '../src/console/live-feeds.js';
import { createJob, jobsWorlds } from './helpers/jobs-world.js';
import { openSse, type SseClient } from './helpers/sse.js';
import { removeTempDirs, testConfig, world } from './helpers/setup.js';

const open = jobsWorlds();
const WAIT = 20_000;
const clients: SseClient[] = [];

afterEach(() => {
  for (const c of clients.splice(0)) c.close();
});

async function stream(baseUrl: string, token: string | undefined, query = ''): Promise<SseClient> {
  const c = await openSse(baseUrl, `/api/console/stream${query}`, token ? { authorization: `Bearer ${token}` } : {});
  clients.push(c);
  return c;
}

type Counts = { total: number; online: number; unmanaged: number; offline: number; rejected: number };

/** Every `counts` message differs from the one before it (only changes are sent). */
function expectOnlyChanges(c: SseClient): void {
  const counts = c.messages.filter((m) => m.event === 'counts').map((m) => JSON.stringify(m.data));
  for (let i = 1; i < counts.length; i++) expect(counts[i], `counts message ${i}`).not.toBe(counts[i - 1]);
}

describe('GET /api/console/stream (server-sent events, real HTTP)', () => {
  it('refuses a caller without a session, a malformed job id and another account\'s job with catalogue errors', async () => {
    const w = await open();
    const anonymous = await stream(w.baseUrl, undefined);
    await waitFor(() => anonymous.ended, { timeout: WAIT, what: 'the 401 answer' });
    expect(anonymous.status).toBe(401);
    expect(JSON.parse(anonymous.raw).code).toBe('SERVER_UNAUTHORIZED');

    const bad = await stream(w.baseUrl, w.token, '?job=not-a-uuid');
    await waitFor(() => bad.ended, { timeout: WAIT, what: 'the 400 answer' });
    expect(bad.status).toBe(400);
    expect(JSON.parse(bad.raw).code).toBe('SERVER_VALIDATION');

    const unknownParam = await stream(w.baseUrl, w.token, '?jobs=1');
    await waitFor(() => unknownParam.ended, { timeout: WAIT, what: 'the 400 answer' });
    expect(JSON.parse(unknownParam.raw).code).toBe('SERVER_VALIDATION');

    // A job of another account is not found (whether it exists or not).
    const other = await w.newTenant('Other');
    w.licences(other, 'basic-25', 1);
    const packet = await w.app.services.packets.build(other.scope, {
      name: 'other-fw',
      components: [{ kind: 'firmware', fileName: 'autoupdate-2.0.0-full.arm64.tar', data: Buffer.alloc(64).toString('base64'), version: '2.0.0' }],
    });
    const job = w.app.services.jobs.create(other.scope, { packetUuid: packet.uuid, target: { all: true } }, null);
    const foreign = await stream(w.baseUrl, w.token, `?job=${job.uuid}`);
    await waitFor(() => foreign.ended, { timeout: WAIT, what: 'the 404 answer' });
    expect(foreign.status).toBe(404);
    expect(JSON.parse(foreign.raw).code).toBe('SERVER_NOT_FOUND');
  });

  it('fleet: counts and new events as they change, only the changes, to every subscriber', async () => {
    const w = await open();
    const devices = w.fakeDevices(3);
    w.tenant.scope.events.record({ type: 'test.before', subject: 'first', at: w.clock.now() });
    const a = await stream(w.baseUrl, w.token);
    expect(a.status).toBe(200);
    expect(a.headers['content-type']).toMatch(/^text\/event-stream/);
    expect(await a.next('hello')).toEqual({ job: null });
    expect(await a.next('counts')).toEqual({ total: 3, online: 0, unmanaged: 0, offline: 3, rejected: 0 });
    const snapshot = await a.next('events');
    expect(snapshot.snapshot).toBe(true);
    expect(snapshot.items.map((e: { type: string }) => e.type)).toContain('test.before');

    const b = await stream(w.baseUrl, w.token);
    await b.next('counts');
    for (const d of devices.slice(0, 2)) await d.connect(w.channel.port);
    for (const c of [a, b]) await c.next('counts', (x: Counts) => x.online === 2 && x.offline === 1);

    w.tenant.scope.events.record({ type: 'test.after', subject: '<img src=x onerror=alert(1)>', at: w.clock.now() });
    for (const c of [a, b]) {
      const live = await c.next('events', (x) => !x.snapshot && x.items.some((e: { type: string }) => e.type === 'test.after'));
      expect(live.items.find((e: { type: string }) => e.type === 'test.after')).toMatchObject({
        source: 'system',
        severity: 'info',
        subject: '<img src=x onerror=alert(1)>',
      });
    }
    await devices[0]!.disconnect();
    await a.next('counts', (x: Counts) => x.online === 1 && x.offline === 2);
    expectOnlyChanges(a);
    // An event is sent once: the snapshot's events are not sent again.
    const ids = a.messages.filter((m) => m.event === 'events').flatMap((m) => m.data.items.map((e: { id: number }) => e.id));
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('counts a router rejected for want of a licence as rejected', async () => {
    const w = await open({ plan: 'basic-1' });
    const [first, second] = w.fakeDevices(2);
    const c = await stream(w.baseUrl, w.token);
    await first!.connect(w.channel.port);
    await c.next('counts', (x: Counts) => x.online === 1);
    await second!.openSocket(w.channel.port);
    second!.send(second!.hello());
    const counts = await c.next('counts', (x: Counts) => x.rejected === 1);
    expect(counts).toEqual({ total: 2, online: 1, unmanaged: 0, offline: 1, rejected: 1 });
  });

  it('job: progress counts and each device\'s changed result, as the devices report', async () => {
    const w = await open();
    const packet = await w.packet();
    const devices = w.fakeDevices(2);
    for (const d of devices) await d.connect(w.channel.port);
    const job = await createJob(w, { packetUuid: packet.uuid, target: { all: true } });
    const c = await stream(w.baseUrl, w.token, `?job=${job.uuid}`);
    expect(await c.next('hello')).toEqual({ job: job.uuid });
    const first = await c.next('job');
    expect(first).toMatchObject({ uuid: job.uuid, state: 'running' });
    expect(first.progress.devices.total).toBe(2);

    const offers = await Promise.all(devices.map((d) => d.next('job-offer', undefined, WAIT) as Promise<MessageOf<'job-offer'>>));
    const [x0, x1] = offers.map((o) => o.body.executionId);
    devices[0]!.report(x0!, 'downloading', { percent: 40 });
    const downloading = await c.next('devices', (m) => m.items.some((r: { state: string; percent: number }) => r.state === 'downloading' && r.percent === 40));
    expect(downloading.items.find((r: { state: string }) => r.state === 'downloading')).toMatchObject({
      deviceUuid: devices[0]!.uuid,
      executionId: x0,
      status: 'active',
    });
    devices[0]!.report(x0!, 'succeeded');
    devices[1]!.report(x1!, 'failed', { errorCode: 'AGENT_INSTALL_FAILED' });
    const done = await c.next('job', (j) => j.state === 'finished');
    expect(done.progress.results).toMatchObject({ succeeded: 1, failed: 1 });
    expect(done.progress.devices).toMatchObject({ total: 2, done: 2 });
    const rows = c.messages.filter((m) => m.event === 'devices').flatMap((m) => m.data.items);
    await waitFor(
      () => {
        const all = c.messages.filter((m) => m.event === 'devices').flatMap((m) => m.data.items);
        return all.some((r) => r.deviceUuid === devices[1]!.uuid && r.result === 'failed' && r.errorCode === 'AGENT_INSTALL_FAILED');
      },
      { timeout: WAIT, what: 'the failed device\'s row' },
    );
    expect(rows.every((r) => typeof r.updatedAt === 'string')).toBe(true);
    // Each message is a change: the same row is never sent twice in a row unchanged.
    const perDevice = new Map<string, string[]>();
    for (const m of c.messages.filter((m) => m.event === 'devices')) {
      for (const r of m.data.items) perDevice.set(r.deviceUuid, [...(perDevice.get(r.deviceUuid) ?? []), JSON.stringify(r)]);
    }
    for (const list of perDevice.values()) for (let i = 1; i < list.length; i++) expect(list[i]).not.toBe(list[i - 1]);
  });

  it('ends the stream with a reason when the session ends', async () => {
    const w = await open();
    const c = await stream(w.baseUrl, w.token);
    await c.next('counts');
    const res = await w.api('POST', '/api/auth/logout');
    expect(res.status).toBe(204);
    expect(await c.next('end')).toEqual({ reason: 'session-ended' });
    await waitFor(() => c.ended, { timeout: WAIT, what: 'the response to end' });
  });

  it('another process sharing the store file serves the stream (cluster mode): devices connected elsewhere show', async () => {
    const w = await open();
    const devices = w.fakeDevices(2);
    // A second server on the same data directory: it shares only the SQLite file with the first.
    const other = await buildApp(testConfig(w.dataDir), { clock: w.clock, runSweeps: false });
    await other.listen({ port: 0, host: '127.0.0.1' });
    try {
      const url = `http://127.0.0.1:${(other.server.address() as AddressInfo).port}`;
      const c = await stream(url, w.token);
      await c.next('counts', (x: Counts) => x.total === 2 && x.online === 0);
      for (const d of devices) await d.connect(w.channel.port);
      await c.next('counts', (x: Counts) => x.online === 2);
      w.tenant.scope.events.record({ type: 'test.elsewhere', at: w.clock.now() });
      await c.next('events', (x) => x.items.some((e: { type: string }) => e.type === 'test.elsewhere'));
    } finally {
      for (const c of clients.splice(0)) c.close();
      await other.close();
    }
  });
});

describe('LiveFeeds', () => {
  afterEach(() => removeTempDirs());

  function sink(): LiveSink & { got: Array<[string, unknown]>; ended: string | undefined } {
    const s = {
      got: [] as Array<[string, unknown]>,
      ended: undefined as string | undefined,
      send(event: string, data: unknown) {
        s.got.push([event, data]);
      },
      end(reason: string) {
        s.ended = reason;
      },
    };
    return s;
  }

  it('reads the store once per tick for all subscribers of a topic, and stops reading when they leave', async () => {
    const w = world();
    try {
      const t = await w.newTenant();
      w.licences(t, 'basic-25', 1);
      w.devices(t, 2);
      const feeds = new LiveFeeds(w.services, pino({ level: 'silent' }), { periodMs: 3_600_000 });
      const subs = [sink(), sink(), sink()];
      const leave = subs.map((s) => feeds.fleet(t.scope, s, () => true));
      for (const s of subs) expect(s.got[0]).toEqual(['counts', { total: 2, online: 0, unmanaged: 0, offline: 2, rejected: 0 }]);
      feeds.tick();
      expect(feeds.reads).toBe(1);
      w.devices(t, 1, 'more');
      feeds.tick();
      expect(feeds.reads).toBe(2);
      for (const s of subs) expect(s.got.at(-1)).toEqual(['counts', { total: 3, online: 0, unmanaged: 0, offline: 3, rejected: 0 }]);
      for (const l of leave) l();
      expect(feeds.size).toBe(0);
      feeds.tick();
      expect(feeds.reads).toBe(2);
      feeds.close();
    } finally {
      w.close();
    }
  });

  it('ends a subscription whose session check fails', async () => {
    const w = world();
    try {
      const t = await w.newTenant();
      const feeds = new LiveFeeds(w.services, pino({ level: 'silent' }), { periodMs: 3_600_000, authCheckMs: 0 });
      const ok = sink();
      const gone = sink();
      feeds.fleet(t.scope, ok, () => true);
      feeds.fleet(t.scope, gone, () => {
        throw new Error('session expired');
      });
      feeds.tick();
      expect(gone.ended).toBe('session-ended');
      expect(ok.ended).toBeUndefined();
      expect(feeds.size).toBe(1);
      feeds.close();
      expect(ok.ended).toBe('server-closing');
    } finally {
      w.close();
    }
  });
});
