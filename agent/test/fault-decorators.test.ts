import { describe, expect, it } from 'vitest';
import { AgentError } from '../src/errors.js';
import type { InstallContext, Installer } from '../src/installers/installer.js';
import type { DownloadResponse, DownloadSource } from '../src/jobs/download.js';
import type { SectionRecord } from '../src/lifecycle/journal.js';
import { createManualClock, systemClock } from '../src/platform/clock.js';
import { createEmulatedPlatform } from '../src/platform/emulated.js';
import { faultyDownloadSource, faultyInstaller } from '../src/platform/fault-decorators.js';
import { FaultInjector, type Faults } from '../src/platform/faults.js';
import { createMemoryPlatform } from '../src/platform/memory.js';
import { tempDir } from './helpers/device.js';

const injector = (faults: Faults) =>
  new FaultInjector(faults, () => {
    throw new Error('no power cut in these tests');
  });

function section(index: number, fileType: string): SectionRecord {
  return { index, fileName: `s${index}`, fileType, sha256: '0'.repeat(64), size: 1, extra: [], phase: 'installing', data: {} };
}

/** An installer that counts its calls per step. */
function countingInstaller() {
  const calls: string[] = [];
  const installer: Installer = {
    fileTypes: ['FirmwareFull', 'ConfigurationProfile'],
    download: async (ctx) => void calls.push(`download:${ctx.section.index}`),
    install: async (ctx) => void calls.push(`install:${ctx.section.index}`),
    needsReboot: () => true,
    requiresNewSession: () => true,
    commit: async (ctx) => void calls.push(`commit:${ctx.section.index}`),
    rollback: async (ctx) => {
      calls.push(`rollback:${ctx.section.index}`);
      return 'reboot';
    },
    cleanup: async (ctx) => void calls.push(`cleanup:${ctx.section.index}`),
  };
  return { installer, calls };
}

/** The parts of an install context the decorator and the counting installer read. */
function contextOf(s: SectionRecord, signal = new AbortController().signal): InstallContext {
  return { section: s, signal } as unknown as InstallContext;
}

describe('faultyInstaller', () => {
  it('is the installer itself when no install fault is set', () => {
    const { installer } = countingInstaller();
    expect(faultyInstaller(installer, injector({}), systemClock())).toBe(installer);
    expect(faultyInstaller(installer, injector({ download: { cutAfterBytes: 1 } }), systemClock())).toBe(installer);
  });

  it('fails the selected section (by index or FILETYPE) before the installer runs; others install', async () => {
    for (const failSection of [1, '1', 'ConfigurationProfile'] as const) {
      const { installer, calls } = countingInstaller();
      const faulty = faultyInstaller(installer, injector({ install: { failSection } }), systemClock());
      await faulty.install(contextOf(section(0, 'FirmwareFull')));
      const error = await faulty.install(contextOf(section(1, 'ConfigurationProfile'))).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(AgentError);
      expect((error as AgentError).code).toBe('AGENT_INSTALL_FAILED');
      expect((error as AgentError).message).toContain('section 1 (ConfigurationProfile)');
      expect(calls).toEqual(['install:0']);
    }
  });

  it('hangs on the selected section until the agent stops, without running the installer', async () => {
    const { installer, calls } = countingInstaller();
    const faulty = faultyInstaller(installer, injector({ install: { hangSection: 0 } }), systemClock());
    const stop = new AbortController();
    let settled = false;
    const hung = faulty.install(contextOf(section(0, 'FirmwareFull'), stop.signal)).finally(() => {
      settled = true;
    });
    // The other steps are not affected by the hang.
    await faulty.commit(contextOf(section(0, 'FirmwareFull')));
    expect(calls).toEqual(['commit:0']);
    expect(settled).toBe(false);
    const reason = new AgentError('AGENT_INTERNAL', 'stopping');
    stop.abort(reason);
    await expect(hung).rejects.toBe(reason);
    expect(calls).toEqual(['commit:0']);
  });

  it('delays every install by delayMs on the platform clock', async () => {
    const clock = createManualClock();
    const { installer, calls } = countingInstaller();
    const faulty = faultyInstaller(installer, injector({ install: { delayMs: 500 } }), clock);
    const done = faulty.install(contextOf(section(0, 'FirmwareFull')));
    expect(clock.pending()).toBe(1);
    await clock.advance(499);
    expect(clock.pending()).toBe(1);
    expect(calls).toEqual([]);
    await clock.advance(1);
    await done;
    expect(calls).toEqual(['install:0']);
  });

  it('passes every other step through unchanged', async () => {
    const { installer, calls } = countingInstaller();
    const faulty = faultyInstaller(installer, injector({ install: { failSection: 0 } }), systemClock());
    const ctx = contextOf(section(0, 'FirmwareFull'));
    expect(faulty.fileTypes).toEqual(installer.fileTypes);
    await faulty.download(ctx);
    expect(faulty.needsReboot(ctx)).toBe(true);
    expect(faulty.requiresNewSession?.(ctx)).toBe(true);
    await faulty.commit(ctx);
    expect(await faulty.rollback(ctx)).toBe('reboot');
    await faulty.cleanup(ctx);
    expect(calls).toEqual(['download:0', 'commit:0', 'rollback:0', 'cleanup:0']);
    const { requiresNewSession: _, ...plain } = installer;
    expect(faultyInstaller(plain, injector({ install: { delayMs: 1 } }), systemClock()).requiresNewSession).toBeUndefined();
  });
});

/** A source answering every GET with `body` (in chunks of `chunk` bytes); records gets and discards. */
function fakeSource(body: Buffer, chunk: number) {
  const seen = { gets: 0, discards: 0 };
  const source: DownloadSource = {
    async get() {
      seen.gets++;
      const chunks: Buffer[] = [];
      for (let i = 0; i < body.length; i += chunk) chunks.push(body.subarray(i, i + chunk));
      return {
        statusCode: 200,
        headers: { 'content-length': String(body.length) },
        body: (async function* () {
          yield* chunks;
        })(),
        discard: () => void seen.discards++,
      };
    },
  };
  return { source, seen };
}

const GET = { headers: {}, dispatcher: undefined as never, signal: new AbortController().signal, timeoutMs: 1000 };

async function readAll(response: DownloadResponse): Promise<{ bytes: Buffer; error?: unknown }> {
  const parts: Buffer[] = [];
  try {
    for await (const c of response.body) parts.push(Buffer.from(c));
  } catch (error) {
    return { bytes: Buffer.concat(parts), error };
  }
  return { bytes: Buffer.concat(parts) };
}

describe('faultyDownloadSource', () => {
  const body = Buffer.from(Array.from({ length: 1000 }, (_, i) => i % 251));

  it('is the source itself when no download fault is set', () => {
    const { source } = fakeSource(body, 100);
    expect(faultyDownloadSource(source, injector({ install: { failSection: 0 } }), systemClock())).toBe(source);
  });

  it('fails the first failAttempts requests before they are sent', async () => {
    const { source, seen } = fakeSource(body, 100);
    const faulty = faultyDownloadSource(source, injector({ download: { failAttempts: 2 } }), systemClock());
    for (let i = 0; i < 2; i++) {
      const error = await faulty.get('https://x/p.tar', GET).catch((e: unknown) => e);
      expect((error as AgentError).code).toBe('AGENT_DOWNLOAD_FAILED');
      expect((error as AgentError).retryable).toBe(true);
    }
    expect(seen.gets).toBe(0);
    expect((await readAll(await faulty.get('https://x/p.tar', GET))).bytes.equals(body)).toBe(true);
    expect(seen.gets).toBe(1);
  });

  it('cuts the first cutTimes responses after exactly cutAfterBytes, then lets bodies through', async () => {
    const { source, seen } = fakeSource(body, 128);
    const faulty = faultyDownloadSource(source, injector({ download: { cutAfterBytes: 300, cutTimes: 2 } }), systemClock());
    for (let i = 0; i < 2; i++) {
      const r = await readAll(await faulty.get('https://x/p.tar', GET));
      expect(r.bytes.equals(body.subarray(0, 300))).toBe(true);
      expect((r.error as AgentError).code).toBe('AGENT_DOWNLOAD_INTERRUPTED');
    }
    expect(seen.discards).toBe(2);
    const whole = await readAll(await faulty.get('https://x/p.tar', GET));
    expect(whole.error).toBeUndefined();
    expect(whole.bytes.equals(body)).toBe(true);
    expect(seen.discards).toBe(2);
  });

  it('throttles the body to bytesPerSec on the platform clock', async () => {
    const clock = createManualClock();
    const { source } = fakeSource(body, 500);
    const faulty = faultyDownloadSource(source, injector({ download: { bytesPerSec: 1000 } }), clock);
    const response = await faulty.get('https://x/p.tar', GET);
    const it = response.body[Symbol.asyncIterator]();
    expect((await it.next()).value).toHaveLength(500);
    // The second chunk comes only after the first one's time on the link (500 bytes at 1000 B/s).
    const second = it.next();
    await Promise.resolve();
    expect(clock.pending()).toBe(1);
    await clock.advance(499);
    expect(clock.pending()).toBe(1);
    await clock.advance(1);
    expect((await second).value).toHaveLength(500);
  });
});

describe('the test platforms apply the fault decorators', () => {
  it('memory and emulated platforms wrap installers and the download source in their faults', async () => {
    const faults: Faults = { install: { failSection: 0 }, download: { failAttempts: 1 } };
    const platforms = [await createMemoryPlatform({ faults }), await createEmulatedPlatform({ dataDir: await tempDir(), faults })];
    for (const platform of platforms) {
      const { installer, calls } = countingInstaller();
      const error = await platform.decorate!.installer(installer).install(contextOf(section(0, 'FirmwareFull'))).catch((e: unknown) => e);
      expect((error as AgentError).code).toBe('AGENT_INSTALL_FAILED');
      expect(calls).toEqual([]);
      const { source, seen } = fakeSource(smallBody(), 10);
      const link = platform.decorate!.downloadSource(source);
      await expect(link.get('https://x/p.tar', GET)).rejects.toThrow(/network unreachable/);
      await link.get('https://x/p.tar', GET);
      expect(seen.gets).toBe(1);
      await platform.close();
    }
  });
});

function smallBody(): Buffer {
  return Buffer.alloc(20, 1);
}
