import type { JobOfferBody } from '@router-fleet/protocol';
import { describe, expect, it } from 'vitest';
import { CONFIG_TABLE, envName, loadConfig, resolveConfig } from '../src/config.js';
import { CONNECTION_PROFILE_FORMAT, parseConnectionProfile, validateConnectionProfile } from '../src/connection-profile.js';
import { AgentError } from '../src/errors.js';
import { defaultInstallerMap, defaultInstallers, installerMap } from '../src/installers/registry.js';
import { type JobRecord, Journal, journalText } from '../src/lifecycle/journal.js';
import { collect, tarMember, verifiedStream } from '../src/jobs/payload.js';
import { createManualClock, seededRandom } from '../src/platform/clock.js';
import { parseFaults } from '../src/platform/faults.js';
import { createMemoryPlatform } from '../src/platform/memory.js';
import { Outbox } from '../src/reporting/outbox.js';
import { makePacket, sha256 } from './helpers/packets.js';
import { testCerts } from './helpers/pki.js';

describe('configuration table', () => {
  it('flags > environment > file > defaults, validated and frozen', () => {
    const config = loadConfig({
      flags: { dataDir: '/data', bootDelayMaxSec: 5 },
      env: { [envName('bootDelayMaxSec')]: '7', [envName('statusIntervalSec')]: '60', FLEET_AGENT_LOG_LEVEL: 'debug' },
      file: { statusIntervalSec: 30, healthCheckTimeoutSec: 99, logLevel: 'warn' },
    });
    expect(config.bootDelayMaxSec).toBe(5);
    expect(config.statusIntervalSec).toBe(60);
    expect(config.healthCheckTimeoutSec).toBe(99);
    expect(config.logLevel).toBe('debug');
    expect(config.backoffBaseMs).toBe(1000);
    expect(Object.isFrozen(config)).toBe(true);
  });

  it('refuses bad values, unknown file keys and a missing data directory', () => {
    const bad = [
      () => loadConfig({ flags: { dataDir: '/d', bootDelayMaxSec: -1 } }),
      () => loadConfig({ flags: { dataDir: '/d', logLevel: 'loud' } }),
      () => loadConfig({ flags: { dataDir: '/d' }, file: { bootDelay: 1 } as never }),
      () => loadConfig({ flags: { dataDir: '/d' }, env: { FLEET_AGENT_REQUIRE_SIGNATURES: 'maybe' } }),
      // Integers as text are decimal digits only; booleans true/1/false/0 (the server's rules too).
      () => loadConfig({ flags: { dataDir: '/d' }, env: { FLEET_AGENT_BOOT_DELAY_MAX_SEC: '0x10' } }),
      () => loadConfig({ flags: { dataDir: '/d' }, env: { FLEET_AGENT_BOOT_DELAY_MAX_SEC: '1e3' } }),
      () => loadConfig({ flags: { dataDir: '/d' }, env: { FLEET_AGENT_REQUIRE_SIGNATURES: 'yes' } }),
      () => loadConfig({}),
      () => resolveConfig({ backoffBaseMs: 10, backoffMaxMs: 5 }),
    ];
    for (const f of bad) {
      expect(f).toThrow(AgentError);
      try {
        f();
      } catch (e) {
        expect((e as AgentError).code).toBe('AGENT_CONFIG_INVALID');
      }
    }
  });

  it('documents every option with type, default, unit and description', () => {
    for (const spec of CONFIG_TABLE) {
      expect(spec.description.length, spec.name).toBeGreaterThan(10);
      expect(spec.unit.length, spec.name).toBeGreaterThan(0);
      expect(['string', 'integer', 'boolean']).toContain(spec.type);
    }
    expect(envName('bootDelayMaxSec')).toBe('FLEET_AGENT_BOOT_DELAY_MAX_SEC');
  });

  it('parses the fault vocabulary', () => {
    expect(parseFaults(['install.failSection=2', 'healthCheck.fail', 'powerCutAt=update:installing', 'install.failSection=Container'])).toEqual({
      install: { failSection: 'Container' },
      healthCheck: { fail: true },
      powerCutAt: 'update:installing',
    });
    expect(() => parseFaults(['nope=1'])).toThrow(TypeError);
  });
});

describe('built-in installers', () => {
  it('are one map per process and setting, holding every built-in FILETYPE', () => {
    const strict = defaultInstallerMap({ allowInsecure: false });
    expect(defaultInstallerMap({ allowInsecure: false })).toBe(strict);
    const insecure = defaultInstallerMap({ allowInsecure: true });
    expect(insecure).not.toBe(strict);
    expect([...strict.keys()].sort()).toEqual([...installerMap(defaultInstallers({ allowInsecure: false })).keys()].sort());
    expect(insecure.get('ConnectionProfile')).not.toBe(strict.get('ConnectionProfile'));
    expect(insecure.get('ConnectionProfile')).toBeDefined();
  });
});

describe('seeded randomness', () => {
  it('makes the same version-4 UUIDs and draws from a seed as it always did (simulated fleets replay)', () => {
    const r = seededRandom(2026);
    expect([r.uuid(), r.uuid(), r.next()]).toEqual(['74a923ac-4019-4125-ae90-34cffc4464ad', '4e105cb6-faa5-4f2f-9472-f9dc978cc9af', 0.37340650777332485]);
    const many = seededRandom(7);
    for (let i = 0; i < 1000; i++) expect(many.uuid()).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });
});

describe('connection profile', () => {
  it('accepts a complete profile and refuses broken ones', async () => {
    const { pki, tlsCa } = await testCerts();
    const good = {
      format: CONNECTION_PROFILE_FORMAT,
      serverUrl: 'wss://fleet.example.com/api/channel',
      caCertPem: tlsCa.certPem,
      trustAnchorsPem: [pki.root.certPem],
      deviceId: '2f1c7e5a-3b7d-4c1e-9a55-0d3c5e7b9a10',
      serialNumber: 'MRX5-2011-000123',
      credential: 'c2VjcmV0LWRldmljZS1jcmVkZW50aWFs',
      keepAlive: { pingIntervalSec: 120, pongTimeoutSec: 104, sessionTimeoutSec: 16 },
      futureField: 'ignored',
    };
    const result = validateConnectionProfile(good);
    expect(result.ok).toBe(true);
    if (result.ok) expect(result.profile).not.toHaveProperty('futureField');
    expect(validateConnectionProfile({ ...good, serverUrl: 'ws://fleet.example.com' }).ok).toBe(false);
    expect(validateConnectionProfile({ ...good, serverUrl: 'ws://fleet.example.com' }, { allowInsecure: true }).ok).toBe(true);
    for (const patch of [
      { format: 'other' },
      { caCertPem: 'not pem' },
      { trustAnchorsPem: [] },
      { deviceId: 'has space' },
      { credential: 'short' },
      { keepAlive: { pingIntervalSec: 1, pongTimeoutSec: 1, sessionTimeoutSec: 1 } },
    ]) {
      expect(validateConnectionProfile({ ...good, ...patch }).ok, JSON.stringify(patch)).toBe(false);
    }
    expect(parseConnectionProfile(Buffer.from('{nope')).ok).toBe(false);
  });
});

describe('event outbox', () => {
  it('keeps seqs across restarts, drops acknowledged events, tolerates a torn line, stays bounded', async () => {
    const platform = await createMemoryPlatform();
    const clock = createManualClock();
    let outbox = new Outbox(platform.storage, clock, 5);
    await outbox.load();
    for (let i = 0; i < 3; i++) await outbox.add('link.down', 'warning', { i });
    await outbox.ack([1, 2]);
    outbox = new Outbox(platform.storage, clock, 5);
    await platform.storage.append('outbox.log', Buffer.from('{"e":{"seq":99,'));
    await outbox.load();
    expect(outbox.pending().map((e) => e.seq)).toEqual([3]);
    const next = await outbox.add('boot', 'info');
    expect(next.seq).toBe(4);
    for (let i = 0; i < 10; i++) await outbox.add('x', 'debug');
    expect(outbox.size).toBe(5);
    expect(outbox.dropped).toBe(7);
    for (let i = 0; i < 100; i++) {
      const e = await outbox.add('y', 'debug');
      await outbox.ack([e.seq]);
    }
    outbox = new Outbox(platform.storage, clock, 5);
    await outbox.load();
    const last = await outbox.add('z', 'info');
    expect(last.seq).toBe(115);
    const log = Buffer.from((await platform.storage.read('outbox.log'))!).toString();
    expect(log.split('\n').length).toBeLessThan(80);
  });
});

describe('journal', () => {
  it('reports an unreadable or foreign-version record as corrupt', async () => {
    const platform = await createMemoryPlatform();
    const journal = new Journal(platform.storage);
    expect(await journal.load()).toEqual({ kind: 'empty' });
    await platform.storage.write('journal.json', Buffer.from('{"v":99,"executionId":"e1"}'));
    expect(await journal.load()).toMatchObject({ kind: 'corrupt', executionId: 'e1' });
    await platform.storage.write('journal.json', Buffer.from('{'));
    expect(await journal.load()).toMatchObject({ kind: 'corrupt' });
  });

  it('saves the record as JSON.stringify would, with the text of the offer made once per offer', async () => {
    const platform = await createMemoryPlatform();
    const journal = new Journal(platform.storage);
    const offer: JobOfferBody = {
      executionId: 'e1',
      jobId: 'j1',
      packet: { url: 'https://fleet.example/api/packets/p1', size: 1234, sha256: 'a'.repeat(64), description: 'a "quoted" ünïcode' },
      download: { token: 't'.repeat(32), expiresAt: 1000 },
      deadline: 2000,
      allowDowngrade: false,
    };
    const record: JobRecord = { v: 1, executionId: 'e1', jobId: 'j1', offer, state: 'offered', transitions: 0, resumes: 0, enteredAt: 5, lastReported: 'offered' };
    expect(JSON.parse(journalText(record))).toEqual(JSON.parse(JSON.stringify(record)));
    record.state = 'downloading';
    record.transitions = 1;
    record.downloadOffset = 512;
    await journal.save(record);
    const loaded = await journal.load();
    expect(loaded).toEqual({ kind: 'record', record: JSON.parse(JSON.stringify(record)) });
    // A loaded record (a new offer object) is saved as it is too.
    if (loaded.kind !== 'record') throw new Error('not a record');
    loaded.record.state = 'verifying';
    expect(JSON.parse(journalText(loaded.record))).toEqual(JSON.parse(JSON.stringify(loaded.record)));
  });
});

describe('payload access', () => {
  it('streams one member of a packet and checks it against the verified hash', async () => {
    const data = Buffer.alloc(5000, 7);
    const packet = await makePacket(undefined, [
      { name: 'a.txt', fileType: 'AsciiConfiguration', data: 'set a 1\n' },
      { name: 'dir/with-a-rather-long-name-that-needs-more-than-the-ustar-name-field-of-one-hundred-bytes-allows.bin', fileType: 'Container', data, version: '1' },
    ]);
    const source = (async function* () {
      for (let i = 0; i < packet.length; i += 777) yield packet.subarray(i, i + 777);
    })();
    const name = 'dir/with-a-rather-long-name-that-needs-more-than-the-ustar-name-field-of-one-hundred-bytes-allows.bin';
    const got = await collect(verifiedStream(tarMember(source, name), sha256(data), data.length), 1 << 20);
    expect(got.equals(data)).toBe(true);
    const tampered = (async function* () {
      yield Buffer.alloc(4999, 7);
    })();
    await expect(collect(verifiedStream(tampered, sha256(data), data.length), 1 << 20)).rejects.toMatchObject({ code: 'AGENT_STAGING_TAMPERED' });
  });
});
