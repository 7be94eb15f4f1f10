import { rm } from 'node:fs/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { createManualClock } from '../src/platform/clock.js';
import { createEmulatedPlatform } from '../src/platform/emulated.js';
import type { Faults } from '../src/platform/faults.js';
import { createMemoryPlatform, type MemoryPlatform } from '../src/platform/memory.js';
import type { Platform } from '../src/platform/platform.js';
import { tempDir } from './helpers/device.js';

/**
 * One contract, every Platform: the agent core relies on exactly these behaviours. `powerOn`
 * simulates a restart of the device (a new process on the same data directory for the emulated
 * platform, `powerOn()` for the memory platform).
 */
interface Harness {
  create(faults?: Faults): Promise<Platform>;
  powerOn(previous: Platform): Promise<Platform>;
  cleanup(): Promise<void>;
}

const clock = createManualClock(Date.UTC(2030, 0, 1));

const harnesses: Record<string, () => Promise<Harness>> = {
  memory: async () => ({
    create: (faults = {}) => createMemoryPlatform({ clock, faults, stagingQuotaBytes: 1024 * 1024 }),
    powerOn: async (p) => {
      await (p as MemoryPlatform).powerOn();
      return p;
    },
    cleanup: async () => {},
  }),
  emulated: async () => {
    const dir = await tempDir('contract-');
    let faults: Faults = {};
    return {
      create: (f = {}) => {
        faults = f;
        return createEmulatedPlatform({ dataDir: dir, clock, faults, stagingQuotaBytes: 1024 * 1024 });
      },
      powerOn: () => createEmulatedPlatform({ dataDir: dir, clock, faults, stagingQuotaBytes: 1024 * 1024 }),
      cleanup: () => rm(dir, { recursive: true, force: true }),
    };
  },
};

const bytes = (s: string) => Buffer.from(s);
async function* chunks(...parts: string[]) {
  for (const p of parts) yield Buffer.from(p);
}
async function readAll(source: AsyncIterable<Uint8Array>): Promise<string> {
  const out: Buffer[] = [];
  for await (const c of source) out.push(Buffer.from(c));
  return Buffer.concat(out).toString();
}

describe.each(Object.keys(harnesses))('Platform contract: %s', (kind) => {
  let harness: Harness;
  afterEach(async () => harness?.cleanup());
  const setup = async (faults?: Faults) => {
    harness = await harnesses[kind]!();
    return harness.create(faults);
  };

  it('storage: atomic write, read, append, list, remove', async () => {
    const p = await setup();
    expect(await p.storage.read('missing.json')).toBeUndefined();
    await p.storage.write('a.json', bytes('one'));
    await p.storage.write('a.json', bytes('two'));
    expect(Buffer.from((await p.storage.read('a.json'))!).toString()).toBe('two');
    await p.storage.append('log', bytes('x\n'));
    await p.storage.append('log', bytes('y\n'));
    expect(Buffer.from((await p.storage.read('log'))!).toString()).toBe('x\ny\n');
    expect(await p.storage.list('a')).toEqual(['a.json']);
    await p.storage.remove('a.json');
    await p.storage.remove('a.json');
    expect(await p.storage.read('a.json')).toBeUndefined();
  });

  it('storage survives a power-on', async () => {
    const p = await setup();
    await p.storage.write('kept.json', bytes('{"k":1}'));
    const q = await harness.powerOn(p);
    expect(Buffer.from((await q.storage.read('kept.json'))!).toString()).toBe('{"k":1}');
  });

  it('staging: append, truncate to a resume offset, read from an offset, remove a directory, free space', async () => {
    const p = await setup();
    const free = await p.staging.freeBytes();
    expect(free).toBeGreaterThan(0);
    let w = await p.staging.openWriter('job-1/packet.tar', 0);
    await w.write(bytes('hello '));
    await w.write(bytes('world'));
    await w.sync();
    await w.close();
    expect(await p.staging.size('job-1/packet.tar')).toBe(11);
    w = await p.staging.openWriter('job-1/packet.tar', 6);
    await w.write(bytes('there'));
    await w.close();
    expect(await readAll(p.staging.read('job-1/packet.tar'))).toBe('hello there');
    expect(await readAll(p.staging.read('job-1/packet.tar', 6))).toBe('there');
    expect(await p.staging.freeBytes()).toBeLessThanOrEqual(free);
    await p.staging.remove('job-1');
    expect(await p.staging.size('job-1/packet.tar')).toBeUndefined();
  });

  it('firmware: inactive slot written, trial boot once, fallback without commit, commit makes it stick', async () => {
    let p = await setup();
    let s = await p.firmware.state();
    expect(s).toMatchObject({ booted: 'a', committed: 'a', trial: undefined, versions: { a: '1.0.0' } });
    await expect(p.firmware.writeSlot('a', chunks('x'), { version: '9' })).rejects.toThrow();
    const written = await p.firmware.writeSlot('b', chunks('new ', 'firmware'), { version: '2.0.0' });
    expect(written.size).toBe(12);
    expect(written.sha256).toMatch(/^[0-9a-f]{64}$/);
    await p.firmware.setTrialBoot('b');
    const bootId = p.system.bootId();
    p = await harness.powerOn(p);
    expect(p.system.bootId()).not.toBe(bootId);
    s = await p.firmware.state();
    expect(s).toMatchObject({ booted: 'b', committed: 'a', trial: undefined, versions: { a: '1.0.0', b: '2.0.0' } });
    // No commit: the next boot returns to the committed slot.
    p = await harness.powerOn(p);
    expect((await p.firmware.state()).booted).toBe('a');
    await p.firmware.setTrialBoot('b');
    p = await harness.powerOn(p);
    await p.firmware.commit();
    p = await harness.powerOn(p);
    expect(await p.firmware.state()).toMatchObject({ booted: 'b', committed: 'b' });
    expect(p.system.bootCount()).toBe(5);
  });

  it('firmware: a new image that does not boot falls back (fault reboot.bootFails)', async () => {
    let p = await setup({ reboot: { bootFails: true } });
    await p.firmware.writeSlot('b', chunks('broken'), { version: '2.0.0' });
    await p.firmware.setTrialBoot('b');
    p = await harness.powerOn(p);
    expect(await p.firmware.state()).toMatchObject({ booted: 'a', committed: 'a' });
  });

  it('configuration: validate, snapshot, apply, CLI commands, restore; uplink=down cuts the link', async () => {
    const p = await setup();
    expect(p.configuration.validate(bytes('a=1\nb=2\n'))).toBeUndefined();
    expect(p.configuration.validate(bytes('not a config'))).toBeDefined();
    const changes: boolean[] = [];
    p.network.onChange(() => changes.push(p.network.reachable()));
    await p.configuration.snapshot('backup-1');
    await p.configuration.apply(bytes('hostname=r1\nuplink=down\n'), '7');
    expect(p.network.reachable()).toBe(false);
    expect(p.network.link().up).toBe(false);
    expect((await p.configuration.running()).version).toBe('7');
    await p.configuration.restore('backup-1');
    expect(p.network.reachable()).toBe(true);
    expect(changes).toEqual([false, true]);
    await p.configuration.applyCommands('set ntp pool.example\nunset hostname\n# comment\n');
    const text = Buffer.from((await p.configuration.running()).content).toString();
    expect(text).toContain('ntp=pool.example');
    expect(text).not.toContain('hostname=');
    await expect(p.configuration.applyCommands('reboot now')).rejects.toThrow();
    await p.configuration.dropSnapshot('backup-1');
    await expect(p.configuration.restore('backup-1')).rejects.toThrow();
  });

  it('certificates: the whole store is replaced atomically', async () => {
    const p = await setup();
    expect(await p.certificates.list()).toEqual([]);
    await p.certificates.replaceAll([{ name: 'ca', certPem: 'PEM', isCa: true }]);
    const q = await harness.powerOn(p);
    expect(await q.certificates.list()).toEqual([{ name: 'ca', certPem: 'PEM', isCa: true }]);
  });

  it('containers: images and records', async () => {
    const p = await setup();
    await p.containers.storeImage('app', '1.0.0', chunks('image'));
    await p.containers.put('app', { name: 'app', version: '1.0.0', state: 'running', images: ['1.0.0'] });
    expect(await p.containers.get('app')).toMatchObject({ version: '1.0.0', state: 'running' });
    expect((await p.containers.list()).map((c) => c.name)).toEqual(['app']);
    await p.containers.put('app', undefined);
    await p.containers.removeImage('app', '1.0.0');
    expect(await p.containers.get('app')).toBeUndefined();
  });

  it('system and network: identity, uptime on the injected clock, faults', async () => {
    const p = await setup({ connection: { refuse: true } });
    expect(p.system.identity().model).toBe('EMU-1');
    expect(p.network.reachable()).toBe(false);
    const before = p.system.uptimeSec();
    await clock.advance(5000);
    expect(p.system.uptimeSec()).toBe(before + 5);
    await p.system.reboot();
  });

  it('fault points: a hang is released by its signal', async () => {
    const p = await setup({ hangAt: 'update:installing' });
    const stop = new AbortController();
    const hang = p.faults.point('update:installing', stop.signal);
    let released = false;
    void hang.then(() => {
      released = true;
    });
    // A second call passes at once (a hang fires once): the first was registered before it and, had it
    // not hung, would have resolved before this one did.
    await p.faults.point('update:installing');
    expect(released).toBe(false);
    stop.abort();
    await hang;
    expect(released).toBe(true);
    await p.faults.point('update:installing'); // fires once
  });
});
