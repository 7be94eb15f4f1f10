import { CloseCodes, createMessage, type Message, type MessageOf } from '@router-fleet/protocol';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ControlChannel } from '../src/channel/channel.js';
import { jobChannelPort } from '../src/channel/job-port.js';
import { ChannelRepository } from '../src/store/channel.js';
import { STORE_FILE } from '../src/store/database.js';
import { SqliteDatabase } from '../src/store/sqlite.js';
import { DeviceStatusBuffer, readDeviceStatus } from '../src/store/device-status.js';
import { MemoryTransport } from './helpers/memory-transport.js';
import { removeTempDirs, type Tenant, type World, world } from './helpers/setup.js';
import { spyStatements } from './helpers/statement-spy.js';

// The session logic of the control channel over an in-memory transport: no sockets, a real store.

interface Bench {
  w: World;
  t: Tenant;
  channel: ControlChannel;
  /** Moves the keep-alive clock and runs one sweep. */
  tick(ms: number): void;
  connect(): MemoryTransport;
  device: { uuid: string; serialNumber: string; credential: string };
  sessionEvents: string[];
}

let bench: Bench | undefined;

async function open(): Promise<Bench> {
  const w = world();
  const t = await w.newTenant();
  w.licences(t, 'basic-25', 1);
  const [device] = w.devices(t, 1);
  let mono = 1_000_000;
  const s = w.services;
  const channel = new ControlChannel({
    config: s.config,
    clock: s.clock,
    metrics: s.metrics,
    admission: s.admission,
    notices: s.notices,
    trust: s.trust,
    repository: new ChannelRepository(s.store),
    status: new DeviceStatusBuffer(s.store),
    log: pino({ level: 'silent' }),
    monotonic: () => mono,
  });
  const sessionEvents: string[] = [];
  channel.onSession((event, session) => sessionEvents.push(`${event}:${session.deviceUuid}`));
  return {
    w,
    t,
    channel,
    device: device!,
    sessionEvents,
    tick(ms) {
      mono += ms;
      channel.sweep();
    },
    connect: () => new MemoryTransport((transport) => channel.accept(transport)),
  };
}

function hello(d: Bench['device']): MessageOf<'hello'> {
  return createMessage('hello', {
    serialNumber: d.serialNumber,
    deviceId: d.uuid,
    credential: d.credential,
    model: 'MRX5 LTE',
    firmwareVersion: '10.3.2',
    agentVersion: '0.1.0',
    capabilities: ['firmware'],
    bootId: 'b7c1d9e0-5f2a-4b3c-8d4e-1a2b3c4d5e6f',
    inventory: { activeSlot: 'a', configurationVersion: '7', certificates: 0, containers: 0, storageFreeBytes: 1 },
  });
}

async function admitted(b: Bench): Promise<{ link: MemoryTransport; welcome: Message & { type: 'welcome' } }> {
  const link = b.connect();
  const h = hello(b.device);
  link.deliver(h);
  const welcome = await link.next('welcome', (m) => m.correlationId === h.id);
  return { link, welcome };
}

beforeEach(async () => {
  bench = await open();
});

afterEach(async () => {
  await bench?.channel.close();
  bench?.w.close();
  bench = undefined;
  removeTempDirs();
});

describe('control-channel session logic over an in-memory transport', () => {
  it('hello → welcome managed; the session is open and its status is stored', async () => {
    const b = bench!;
    expect(b.channel.backlog).toBe(0);
    const { link, welcome } = await admitted(b);
    expect(welcome.body).toMatchObject({ admission: 'managed', deviceId: b.device.uuid });
    expect(b.channel.isConnected(b.device.uuid)).toBe(true);
    expect(b.channel.size).toBe(1);
    expect(b.sessionEvents).toEqual([`opened:${b.device.uuid}`]);

    link.deliver(
      createMessage('status', {
        uptimeSec: 5,
        link: { type: 'lte', up: true, signalQuality: 70 },
        firmwareVersion: '10.4.0',
        certificates: [],
        containers: [],
      }),
    );
    // A ping after the status: its pong proves the status was taken.
    const ping = createMessage('ping', {});
    link.deliver(ping);
    await link.next('pong', (m) => m.correlationId === ping.id);
    b.channel.flush();
    const deviceKey = new ChannelRepository(b.w.services.store).deviceFacts([b.device.uuid]).get(b.device.uuid)!.id;
    const row = readDeviceStatus(b.w.services.store, deviceKey)!;
    expect(JSON.parse(row.hello!)).toMatchObject({ model: 'MRX5 LTE', firmwareVersion: '10.3.2' });
    expect(JSON.parse(row.status!)).toMatchObject({ firmwareVersion: '10.4.0', link: { type: 'lte' } });
  });

  it('a hello that finds the write lock held by another connection is tried again from a timer, and welcomed once the lock is free', async () => {
    const b = bench!;
    const store = b.w.services.store;
    const tryWrite = store.tryWrite?.bind(store);
    // The PostgreSQL store has no tryWrite: its hellos wait in the database server as before.
    if (!tryWrite) return expect(store.dialect).toBe('postgres');
    let busy = 0;
    let twice: () => void;
    const triedTwice = new Promise<void>((resolve) => (twice = resolve));
    store.tryWrite = <T>(fn: () => T) => {
      const done = tryWrite(fn);
      if (!done && ++busy === 2) twice();
      return done;
    };
    const other = new SqliteDatabase(join(b.w.services.config.dataDir, STORE_FILE), { timeout: 0 });
    try {
      other.exec('BEGIN IMMEDIATE');
      const link = b.connect();
      const h = hello(b.device);
      link.deliver(h);
      // This test's own await resumed between two tries: the event loop turned while the hello waited.
      await triedTwice;
      other.exec('COMMIT');
      const welcome = await link.next('welcome', (m) => m.correlationId === h.id);
      expect(welcome.body).toMatchObject({ admission: 'managed', deviceId: b.device.uuid });
      expect(b.channel.isConnected(b.device.uuid)).toBe(true);
    } finally {
      other.close();
    }
  });

  it('a hello waiting for admission counts as backlog; frames before the welcome are ignored', async () => {
    const b = bench!;
    const link = b.connect();
    expect(b.channel.backlog).toBe(1);
    const h = hello(b.device);
    link.deliver(h);
    link.deliver(createMessage('ping', {}));
    await link.next('welcome');
    expect(b.channel.backlog).toBe(0);
    expect(link.sent.map((m) => m.type)).toEqual(['welcome']);
  });

  it('a job offer reaches the open session and its progress reaches the job port', async () => {
    const b = bench!;
    const port = jobChannelPort(b.channel);
    const ready: string[] = [];
    const progress: MessageOf<'job-progress'>[] = [];
    port.onDeviceReady((deviceUuid) => ready.push(deviceUuid));
    port.onJobProgress((_uuid, message) => progress.push(message));
    const { link } = await admitted(b);
    expect(ready).toEqual([b.device.uuid]);
    const offer = createMessage('job-offer', {
      executionId: 'exe-1',
      jobId: 'job-1',
      packet: { url: 'https://fleet.example.net/api/packets/download/exe-1', size: 1024, sha256: 'a'.repeat(64), description: 'Firmware 10.4.0' },
      download: { token: 'dl.token-of-the-offer', expiresAt: b.w.clock.now() + 900_000 },
      deadline: b.w.clock.now() + 86_400_000,
      allowDowngrade: false,
    });
    expect(port.send(b.device.uuid, offer)).toBe(true);
    expect((await link.next('job-offer')).body.executionId).toBe('exe-1');
    link.deliver(createMessage('job-progress', { executionId: 'exe-1', state: 'downloading', percent: 10 }));
    expect(progress.map((m) => m.body.state)).toEqual(['downloading']);
  });

  it('keep-alive: a ping after a quiet interval, then a close with PONG_TIMEOUT that releases the session', async () => {
    const b = bench!;
    const { link, welcome } = await admitted(b);
    const { pingIntervalSec, pongTimeoutSec } = welcome.body.session;
    b.tick(pingIntervalSec * 1000);
    await link.next('ping');
    b.tick(pongTimeoutSec * 1000);
    await link.until(() => link.ended);
    expect(link.closedWith?.code).toBe(CloseCodes.PONG_TIMEOUT);
    expect(b.channel.isConnected(b.device.uuid)).toBe(false);
    expect(b.channel.size).toBe(0);
    expect(b.sessionEvents).toEqual([`opened:${b.device.uuid}`, `closed:${b.device.uuid}`]);
  });

  it('a device that answers its ping stays open', async () => {
    const b = bench!;
    const { link, welcome } = await admitted(b);
    b.tick(welcome.body.session.pingIntervalSec * 1000);
    const ping = await link.next('ping');
    link.deliver(createMessage('pong', {}, { correlationId: ping.id }));
    b.tick(welcome.body.session.pongTimeoutSec * 1000);
    // The next ping (not a close) follows: the pong reset the quiet interval.
    b.tick(welcome.body.session.pingIntervalSec * 1000);
    await link.until(() => link.sent.filter((m) => m.type === 'ping').length === 2);
    expect(link.closedWith).toBeUndefined();
    expect(b.channel.isConnected(b.device.uuid)).toBe(true);
  });

  it('no hello within the hello timeout: error and close HELLO_REQUIRED', async () => {
    const b = bench!;
    const link = b.connect();
    b.tick(b.w.services.config.helloTimeoutMs);
    await link.until(() => link.ended);
    expect(link.closedWith?.code).toBe(CloseCodes.HELLO_REQUIRED);
    expect(link.sent.map((m) => m.type)).toEqual(['error']);
    expect(b.channel.backlog).toBe(0);
  });

  it('a second hello of the same device replaces the first (REPLACED) and keeps the session open', async () => {
    const b = bench!;
    const first = await admitted(b);
    const second = await admitted(b);
    expect(second.welcome.body.admission).toBe('managed');
    await first.link.until(() => first.link.ended);
    expect(first.link.closedWith?.code).toBe(CloseCodes.REPLACED);
    // The replaced session's end reports no close: the device is still connected, on the new link.
    expect(b.sessionEvents).toEqual([`opened:${b.device.uuid}`, `opened:${b.device.uuid}`]);
    expect(b.channel.isConnected(b.device.uuid)).toBe(true);
    expect(b.channel.size).toBe(1);
    const ping = createMessage('ping', {});
    second.link.deliver(ping);
    await second.link.next('pong', (m) => m.correlationId === ping.id);
  });

  it('an unknown credential is refused with AUTH_FAILED before admission', async () => {
    const b = bench!;
    const link = b.connect();
    link.deliver({ ...hello(b.device), body: { ...hello(b.device).body, credential: 'c2VjcmV0LWRldmljZS1jcmVkZW50aWFs' } } as Message);
    await link.until(() => link.ended);
    expect(link.closedWith?.code).toBe(CloseCodes.AUTH_FAILED);
    expect(link.sent.map((m) => m.type)).toEqual(['error']);
    expect(b.sessionEvents).toEqual([]);
  });

  it('hellos of one tick read their devices in one statement, however many: unknown devices and wrong serials are refused', async () => {
    const b = bench!;
    let factReads = 0;
    const restore = spyStatements(b.w.services.store, (sql, call) => call === 'read' && sql.includes('d.serial_number, d.ping_interval') && factReads++);
    const others = b.w.devices(b.t, 7, 'TICK');
    const wave = async (devices: Array<Bench['device']>) => {
      const before = factReads;
      const links = devices.map((d) => {
        const link = b.connect();
        link.deliver(hello(d));
        return link;
      });
      await Promise.all(links.map((link) => link.until(() => link.sent.length > 0)));
      return { reads: factReads - before, links };
    };
    try {
      expect((await wave([b.device])).reads).toBe(1);
      const unknown = { ...others[5]!, uuid: '00000000-0000-4000-8000-000000000000' };
      const wrongSerial = { ...others[6]!, serialNumber: 'NOT-ITS-SERIAL' };
      const { reads, links } = await wave([...others.slice(0, 5), unknown, wrongSerial]);
      expect(reads).toBe(1);
      expect(links.map((l) => l.sent[0]!.type)).toEqual([...Array(5).fill('welcome'), 'error', 'error']);
      expect(links.slice(0, 5).map((l) => (l.sent[0] as MessageOf<'welcome'>).body.admission)).toEqual(Array(5).fill('managed'));
      for (const link of links.slice(5)) {
        await link.until(() => link.ended);
        expect(link.closedWith?.code).toBe(CloseCodes.AUTH_FAILED);
      }
      expect(b.channel.size).toBe(6);
    } finally {
      restore();
    }
  });

  it('a peer that does not read is dropped once its unsent bytes pass the bound (slow-reader rule)', async () => {
    const b = bench!;
    const { link } = await admitted(b);
    link.bufferedAmount = b.w.services.config.channelMaxBufferedBytes + 1;
    expect(b.channel.send(b.device.uuid, createMessage('settings', { analyticsConsent: true }))).toBe(false);
    expect(link.terminated).toBe(true);
    expect(b.channel.isConnected(b.device.uuid)).toBe(false);
    expect(b.sessionEvents).toEqual([`opened:${b.device.uuid}`, `closed:${b.device.uuid}`]);
  });

  it('shutdown closes every session with GOING_AWAY; a link still waiting for its hello is closed too', async () => {
    const b = bench!;
    const { link } = await admitted(b);
    const silent = b.connect();
    await b.channel.close();
    expect(link.closedWith?.code).toBe(CloseCodes.GOING_AWAY);
    expect(silent.closedWith?.code).toBe(CloseCodes.GOING_AWAY);
    expect(link.ended && silent.ended).toBe(true);
    expect(b.channel.size).toBe(0);
    expect(b.channel.backlog).toBe(0);
  });
});
