import { CloseCodes, createMessage, MAX_FRAME_BYTES, type MessageOf, WS_SUBPROTOCOL } from '@router-fleet/protocol';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import pg from 'pg';
import { isPostgresUrl, STORE_FILE } from '../src/store/database.js';
import { WRITE_LOCK_KEY } from '../src/store/postgres/store.js';
import { SqliteDatabase } from '../src/store/sqlite.js';
import { addMonthsUtc, SECOND } from '../src/clock.js';
import type { ConfigInput } from '../src/config.js';
import { waitFor } from '../../protocol/test/helpers/wait-for.js';
import { type ChannelWorld, channelWorld } from './helpers/channel-world.js';
import { FakeDevice } from './helpers/fake-device.js';
import { DAY, removeTempDirs, T0 } from './helpers/setup.js';

let worlds: ChannelWorld[] = [];
afterEach(async () => {
  for (const w of worlds) await w.stop();
  worlds = [];
  removeTempDirs();
});

async function open(flags: ConfigInput = {}): Promise<ChannelWorld> {
  const w = await channelWorld(flags);
  worlds.push(w);
  return w;
}

/**
 * Another process's long write transaction on the world's store (the SQLite file, or the
 * PostgreSQL store's write lock): held until the returned function is called.
 */
async function holdWriteLock(w: ChannelWorld): Promise<() => Promise<void>> {
  const url = w.services.config.store;
  if (url && isPostgresUrl(url)) {
    const other = new pg.Client({ connectionString: url });
    await other.connect();
    await other.query('BEGIN');
    await other.query('SELECT pg_advisory_xact_lock($1)', [WRITE_LOCK_KEY]);
    return async () => {
      await other.query('ROLLBACK');
      await other.end();
    };
  }
  const other = new SqliteDatabase(join(w.dataDir, STORE_FILE), { timeout: 0 });
  other.exec('BEGIN IMMEDIATE');
  return async () => {
    other.exec('ROLLBACK');
    other.close();
  };
}

/** A server (`start`ed with `flags`), a tenant with one Basic-1 licence and one registered device. */
async function oneDevice(flags: ConfigInput = {}, start: (flags: ConfigInput) => Promise<ChannelWorld> = open) {
  const w = await start(flags);
  const t = await w.newTenant();
  w.licences(t, 'basic-1', 1);
  const [r] = w.devices(t, 1);
  return { w, t, r: r! };
}

async function deviceList(w: ChannelWorld, token: string) {
  w.services.admission.presence.flush();
  const res = await w.req('GET', '/api/inventory/managed-devices?limit=100&sort=serialNumber', { token });
  return res.json().items as { serialNumber: string; status: string; admission: string | null }[];
}

describe('control channel: hello and admission over real sockets', () => {
  it('hello → welcome managed with the device\'s session parameters; status is stored', async () => {
    const { w, t, r } = await oneDevice();
    const d = await w.connect(r);
    expect(d.ws.protocol).toBe(WS_SUBPROTOCOL);
    const welcome = await d.admit();
    expect(welcome.body).toMatchObject({
      admission: 'managed',
      deviceId: r.uuid,
      session: { pingIntervalSec: 120, pongTimeoutSec: 104, sessionTimeoutSec: 16 },
      analyticsConsent: false,
      serverTime: w.clock.now(),
    });
    d.send(
      createMessage('status', {
        uptimeSec: 5,
        link: { type: 'lte', up: true, signalQuality: 70 },
        firmwareVersion: '10.4.0',
        certificates: [],
        containers: [{ name: 'bridge', version: '1.0.0', state: 'running' }],
        location: { lat: 48.7, lon: 9.1 },
      }),
    );
    // ping from the device is answered (and proves the status arrived before it)
    const ping = createMessage('ping', {});
    d.send(ping);
    await d.next('pong', (m) => m.correlationId === ping.id);
    w.server.app.channel.flush();
    w.services.admission.presence.flush();
    const token = await w.login(t);
    const st = await w.req('GET', `/api/inventory/managed-devices/${r.uuid}/status`, { token });
    expect(st.json()).toMatchObject({
      hello: { model: 'MRX5 LTE', firmwareVersion: '10.3.2' },
      status: { firmwareVersion: '10.4.0', link: { type: 'lte' }, location: { lat: 48.7 } },
    });
    expect(JSON.stringify(st.json())).not.toContain(r.credential);
    const dev = await w.req('GET', `/api/inventory/managed-devices/${r.uuid}`, { token });
    expect(dev.json()).toMatchObject({ status: 'online', firmware: '10.4.0' });
  });

  it('a store locked past the busy timeout: the hello is answered with close 1013 (try again), the server keeps serving', async () => {
    const { w, r } = await oneDevice({ storeBusyTimeoutMs: 50 });
    // Another process holds the write lock (a long transaction in another worker).
    const release = await holdWriteLock(w);
    try {
      const d = await w.connect(r);
      d.hello();
      expect((await d.waitClosed()).code).toBe(CloseCodes.TRY_AGAIN_LATER);
    } finally {
      await release();
    }
    // Nothing was leased by the failed attempt; the retry is admitted.
    const again = await w.connect(r);
    expect((await again.admit()).body).toMatchObject({ admission: 'managed' });
  });

  it('reference example: 10 Basic-1 licences, 2 expire → the last 2 of 10 connected get licence-change unmanaged', async () => {
    const w = await open();
    const t = await w.newTenant();
    w.licences(t, 'basic-1', 2);
    w.advance(30 * DAY);
    w.licences(t, 'basic-1', 8);
    const routers = w.devices(t, 10);
    const devices: FakeDevice[] = [];
    for (const r of routers) {
      w.advance(SECOND);
      const d = await w.connect(r);
      expect((await d.admit()).body.admission).toBe('managed');
      devices.push(d);
    }
    w.clock.set(addMonthsUtc(T0, 12) + DAY); // the test clock runs the sweep
    for (const d of devices.slice(8)) {
      const change = await d.next('licence-change');
      expect(change.body).toMatchObject({ admission: 'unmanaged', reason: 'LICENCE_EXPIRED' });
    }
    const probe = createMessage('ping', {});
    for (const d of devices.slice(0, 8)) {
      d.send(probe);
      await d.next('pong');
      expect(d.received.some((m) => m.type === 'licence-change')).toBe(false);
    }
    const list = await deviceList(w, await w.login(t));
    expect(list.filter((d) => d.status === 'unmanaged').map((d) => d.serialNumber)).toEqual(
      routers.slice(8).map((r) => r.serialNumber),
    );
    expect(devices.every((d) => d.closed === undefined)).toBe(true);
  });

  it('reference example: 10 fresh devices, 8 licences → first 8 managed, last 2 rejected with retryAfterSec and offline', async () => {
    const w = await open();
    const t = await w.newTenant();
    w.licences(t, 'basic-1', 8);
    const routers = w.devices(t, 10);
    const outcomes: string[] = [];
    const last: FakeDevice[] = [];
    for (const r of routers) {
      const d = await w.connect(r);
      const welcome = await d.admit();
      outcomes.push(welcome.body.admission);
      if (welcome.body.admission === 'rejected') {
        expect(welcome.body.retryAfterSec).toBeGreaterThan(0);
        expect(welcome.body.reason).toBe('LICENCE_UNAVAILABLE');
        last.push(d);
      }
    }
    expect(outcomes).toEqual([...Array(8).fill('managed'), 'rejected', 'rejected']);
    for (const d of last) expect((await d.waitClosed()).code).toBe(CloseCodes.REJECTED);
    const list = await deviceList(w, await w.login(t));
    expect(list.filter((d) => d.status === 'offline').map((d) => d.serialNumber)).toEqual(
      routers.slice(8).map((r) => r.serialNumber),
    );
    expect(list.filter((d) => d.status === 'online')).toHaveLength(8);
  });

  it('a disconnected device keeps its seat for the grace period and reclaims it on reconnect', async () => {
    const w = await open({ leaseGraceSec: 300 });
    const t = await w.newTenant();
    w.licences(t, 'basic-1', 1);
    const [a, b] = w.devices(t, 2);
    const da = await w.admitted(a!);
    da.close();
    await da.waitClosed();
    // The release is batched per tick: b must meet a seat held in its grace period, not a live session.
    const released = () => w.services.store.stmt('SELECT COUNT(*) AS n FROM leases WHERE released_at IS NOT NULL').get() as { n: number };
    await waitFor(() => released().n === 1, { what: 'the lease released into its grace period' });
    const db = await w.connect(b!);
    const rejected = await db.admit();
    expect(rejected.body).toMatchObject({ admission: 'rejected' });
    expect(rejected.body.retryAfterSec).toBeLessThanOrEqual(300);
    w.advance(60 * SECOND);
    const again = await w.connect(a!);
    expect((await again.admit()).body.admission).toBe('managed');
    expect(w.services.store.stmt('SELECT COUNT(*) AS n FROM leases WHERE state = ?').get('managed')).toEqual({ n: 1 });
  });

  it('a second connection of the same device replaces the first (4009) and keeps the seat', async () => {
    const { w, r } = await oneDevice();
    const first = await w.admitted(r);
    const second = await w.connect(r);
    expect((await second.admit()).body.admission).toBe('managed');
    expect((await first.waitClosed()).code).toBe(CloseCodes.REPLACED);
    // The server has seen the replaced socket close (only the second is open), and a round trip on the
    // second lets a release that close could have queued (batched per tick) reach the store.
    const connections = () => new Promise<number>((resolve, reject) => w.server.app.server.getConnections((err, n) => (err ? reject(err) : resolve(n))));
    await waitFor(async () => (await connections()) === 1, { what: 'the replaced socket closed on the server' });
    await second.roundTrip();
    expect(w.server.app.channel.isConnected(r.uuid)).toBe(true);
    const lease = w.services.store.stmt('SELECT released_at FROM leases').get() as { released_at: number | null };
    expect(lease.released_at).toBeNull();
  });

  it('wrong credential → error + close AUTH_FAILED (4003); unknown device likewise; no subprotocol → handshake refused', async () => {
    const { w, r } = await oneDevice();
    const d = await w.connect(r);
    d.hello({ credential: 'x'.repeat(43) });
    expect((await d.next('error')).body).toMatchObject({ code: 'SERVER_DEVICE_AUTH_FAILED' });
    expect((await d.waitClosed()).code).toBe(CloseCodes.AUTH_FAILED);
    const u = await w.connect({ ...r, uuid: '00000000-0000-4000-8000-000000000000' });
    u.hello();
    expect((await u.waitClosed()).code).toBe(CloseCodes.AUTH_FAILED);
    await expect(FakeDevice.open(w.channelUrl, r, { protocols: [] })).rejects.toThrow(/400/);
    await expect(FakeDevice.open(w.channelUrl, r, { protocols: ['router-fleet.v2'] })).rejects.toThrow(/400/);
    await expect(FakeDevice.open(w.channelUrl.replace('/api/channel', '/api/other'), r)).rejects.toThrow(/404/);
  });

  it('events are stored once and acked by seq; duplicates are acked again', async () => {
    const { w, t, r } = await oneDevice();
    const d = await w.admitted(r);
    const ev = (seq: number) =>
      createMessage('event', { seq, kind: 'link.down', severity: 'warning', at: T0, details: { iface: 'wwan0' } });
    const sent = [ev(1), ev(2), ev(1)];
    for (const m of sent) d.send(m);
    for (const m of sent) {
      const ack = await d.next('ack', (a) => a.correlationId === m.id);
      expect(ack.body).toEqual({ seqs: [(m.body as { seq: number }).seq] });
    }
    const token = await w.login(t);
    const events = await w.req('GET', '/api/account/events?type=device.event', { token });
    const items = events.json().items as { subject: string; data: { seq: number } }[];
    expect(items.map((e) => e.data.seq).sort()).toEqual([1, 2]);
    expect(items.every((e) => e.subject === r.uuid)).toBe(true);
  });

  it('half-open links: a device that does not answer pings is closed with PONG_TIMEOUT; one that answers stays', async () => {
    const w = await open();
    const t = await w.newTenant();
    w.licences(t, 'basic-1', 2);
    const [a, b] = w.devices(t, 2);
    const silent = await w.admitted(a!);
    silent.answerPings = false;
    const healthy = await w.admitted(b!);
    const heard = () => w.services.metrics.value('fleet_messages_in_total');
    const before = heard();
    w.tick(120 * SECOND); // ping interval of silence: both are pinged
    await silent.next('ping');
    await healthy.next('ping');
    await waitFor(() => heard() === before + 1, { what: 'the healthy pong (the one message the server hears)' });
    w.tick(104 * SECOND); // pong timeout
    expect((await silent.waitClosed()).code).toBe(CloseCodes.PONG_TIMEOUT);
    expect(healthy.closed).toBeUndefined();
    expect(w.server.app.channel.isConnected(b!.uuid)).toBe(true);
  });

  it('consent changes reach connected devices as settings', async () => {
    const { w, t, r } = await oneDevice();
    const d = await w.admitted(r);
    const token = await w.login(t);
    const res = await w.req('PATCH', '/api/account', { token, body: { settings: { analyticsConsent: true } } });
    expect(res.statusCode).toBe(200);
    expect((await d.next('settings')).body).toEqual({ analyticsConsent: true });
  });

  it('analytics over the channel: forbidden fields dropped, nothing stored without consent', async () => {
    const { w, t, r } = await oneDevice();
    const d = await w.admitted(r);
    const token = await w.login(t);
    const sample = (at: number) => ({
      at,
      periodSec: 3600,
      metrics: { cpuLoadPercent: 42, restarts: 1, ipAddress: '10.1.2.3', url: 'https://plant.example/x', userName: 'operator' },
    });
    const stored = () => w.services.store.stmt('SELECT COUNT(*) AS n FROM analytics_samples').get() as { n: number };
    const analytics = (at: number) => createMessage('analytics', { samples: [sample(at)] } as unknown as MessageOf<'analytics'>['body']);
    d.send(analytics(T0));
    await d.roundTrip(); // the server answers a ping after it handled the message before it
    expect(stored().n).toBe(0); // no consent yet
    await w.req('PATCH', '/api/account', { token, body: { settings: { analyticsConsent: true } } });
    await d.next('settings');
    d.send(analytics(T0 + 1));
    await waitFor(() => stored().n > 0, { what: 'the sample sent with consent stored' });
    expect(stored().n).toBe(1);
    const text = JSON.stringify(w.services.store.stmt('SELECT * FROM analytics_samples').all());
    for (const secret of ['10.1.2.3', 'plant.example', 'operator', 'ipAddress', 'userName']) expect(text).not.toContain(secret);
    expect(text).toContain('42');
  });

  it('graceful shutdown closes sessions with GOING_AWAY and keeps their seats for the grace period', async () => {
    const { w, r } = await oneDevice({}, channelWorld);
    const d = await w.admitted(r);
    await w.stop();
    expect((await d.waitClosed()).code).toBe(CloseCodes.GOING_AWAY);
    // What the next server finds in the store.
    const store = w.openStore();
    try {
      expect(store.stmt('SELECT released_at, grace_until FROM leases').get()).toMatchObject({
        released_at: expect.any(Number),
        grace_until: expect.any(Number),
      });
      expect(store.stmt('SELECT online FROM devices').get()).toEqual({ online: 0 });
    } finally {
      store.close();
    }
  });
});

describe('control channel: bad input (malformed frames, floods, a peer that does not read) while a healthy device keeps working', () => {
  async function setup() {
    const w = await open({ helloTimeoutMs: 1000 });
    const t = await w.newTenant();
    w.licences(t, 'basic-1', 5);
    const ids = w.devices(t, 5);
    const healthy = await w.admitted(ids[0]!);
    const stillHealthy = async () => {
      const ping = createMessage('ping', {});
      healthy.send(ping);
      await healthy.next('pong', (m) => m.correlationId === ping.id);
      expect(healthy.closed).toBeUndefined();
    };
    return { w, ids, stillHealthy };
  }

  it('frame-level faults close with the mapped code: oversized 1009, invalid UTF-8 1007, binary 1002, wrong version 4000', async () => {
    const { w, ids, stillHealthy } = await setup();
    const cases: [string, (d: FakeDevice) => void, number][] = [
      ['oversized', (d) => d.sendRaw('x'.repeat(MAX_FRAME_BYTES + 1)), CloseCodes.MESSAGE_TOO_BIG],
      ['invalid UTF-8', (d) => d.sendRaw(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), false), CloseCodes.INVALID_PAYLOAD],
      ['binary', (d) => d.sendRaw(Buffer.from('{}'), true), CloseCodes.PROTOCOL_ERROR],
      [
        'wrong version',
        (d) => d.sendRaw(JSON.stringify({ ...createMessage('ping', {}), v: '2.0' })),
        CloseCodes.UNSUPPORTED_VERSION,
      ],
    ];
    for (const [name, act, code] of cases) {
      const d = await w.admitted(ids[1]!);
      act(d);
      expect((await d.waitClosed()).code, name).toBe(code);
      await stillHealthy();
    }
  });

  it('invalid JSON, unknown type and schema violations get an error and the channel stays open; repeated garbage closes 1008', async () => {
    const { w, ids, stillHealthy } = await setup();
    const d = await w.admitted(ids[1]!);
    d.sendRaw('{not json');
    expect((await d.next('error')).body).toMatchObject({ code: 'PROTO_INVALID_JSON' });
    const unknown = { ...createMessage('ping', {}), type: 'teleport' };
    d.sendRaw(JSON.stringify(unknown));
    const e2 = await d.next('error', (m) => m.correlationId === unknown.id);
    expect(e2.body).toMatchObject({ code: 'PROTO_UNKNOWN_TYPE', pointer: '/type' });
    const bad = createMessage('event', { seq: 0, kind: 'x', severity: 'info', at: 0 });
    d.sendRaw(JSON.stringify(bad));
    const e3 = await d.next('error', (m) => m.correlationId === bad.id);
    expect(e3.body).toMatchObject({ code: 'PROTO_SCHEMA_VIOLATION', pointer: '/body/seq' });
    const ping = createMessage('ping', {});
    d.send(ping);
    await d.next('pong', (m) => m.correlationId === ping.id);
    expect(d.closed).toBeUndefined();
    for (let i = 0; i < 10; i++) d.sendRaw(`garbage ${i}`);
    expect((await d.waitClosed()).code).toBe(CloseCodes.POLICY_VIOLATION);
    await stillHealthy();
  });

  it('no hello first (4001) and no hello in time (4001)', async () => {
    const { w, ids, stillHealthy } = await setup();
    const d = await w.connect(ids[1]!);
    d.send(createMessage('ping', {}));
    expect((await d.waitClosed()).code).toBe(CloseCodes.HELLO_REQUIRED);
    const idle = await w.connect(ids[2]!);
    await waitFor(() => w.server.app.channel.backlog === 1, { what: 'the idle connection awaiting its hello' });
    w.tick(1000);
    expect((await idle.waitClosed()).code).toBe(CloseCodes.HELLO_REQUIRED);
    await stillHealthy();
  });

  it('raw garbage on the TCP port and a handshake with 5,000 headers are refused without a crash', async () => {
    const { w, stillHealthy } = await setup();
    const { connect } = await import('node:net');
    const port = new URL(w.channelUrl).port;
    const talk = (payload: Buffer | string) =>
      new Promise<string>((resolve) => {
        const s = connect(Number(port), '127.0.0.1', () => s.end(payload));
        let got = '';
        s.on('data', (c) => (got += c.toString('latin1')));
        s.on('error', () => resolve(got));
        s.on('close', () => resolve(got));
      });
    const garbage = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) % 256));
    expect(await talk(garbage)).toMatch(/^(HTTP\/1\.1 400|)/);
    const headers = Array.from({ length: 5000 }, (_, i) => `X-H${i}: ${i}\r\n`).join('');
    const handshake =
      `GET /api/channel HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n`
      + `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n`
      + `Sec-WebSocket-Protocol: ${WS_SUBPROTOCOL}\r\n${headers}\r\n`;
    const answer = await talk(handshake);
    expect(answer).not.toMatch(/^HTTP\/1\.1 101/);
    expect(answer).toMatch(/^(HTTP\/1\.1 431|HTTP\/1\.1 400|)/);
    await stillHealthy();
  });

  it('a client that never reads is dropped when its buffer passes the bound; the healthy device is unaffected', async () => {
    const { w, ids, stillHealthy } = await setup();
    const slow = await w.admitted(ids[1]!);
    (slow.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    const channel = w.server.app.channel;
    const big = createMessage('error', { code: 'SERVER_TEST_FILLER', message: 'y'.repeat(1000) });
    let sent = 0;
    while (channel.isConnected(ids[1]!.uuid) && sent < 200_000) {
      for (let i = 0; i < 500; i++) if (channel.send(ids[1]!.uuid, big)) sent++;
      await new Promise((r) => setImmediate(r));
    }
    expect(channel.isConnected(ids[1]!.uuid)).toBe(false);
    expect(sent).toBeLessThan(200_000);
    await stillHealthy();
    const metrics = await w.req('GET', '/metrics');
    expect(metrics.body).toMatch(/fleet_channel_errors_total\{code="SLOW_CONSUMER"\} 1/);
  });
});
