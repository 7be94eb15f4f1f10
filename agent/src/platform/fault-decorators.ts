import { AgentError } from '../errors.js';
import type { InstallContext, Installer } from '../installers/installer.js';
import type { DownloadResponse, DownloadSource } from '../jobs/download.js';
import { sleep } from './clock.js';
import { type FaultInjector, sectionMatches } from './faults.js';
import type { Clock, PlatformDecorators } from './platform.js';

/**
 * Fault behaviours as decorators around the parts of the agent they disturb, so the production
 * install and download code carries none of them: the emulated and memory platforms wrap the
 * agent's installers and its download source in these (`Platform.decorate`); a production platform
 * wraps nothing. Power cuts and hangs at named places stay `faults.point(name)` seams in the core.
 */
export function faultDecorators(injector: FaultInjector, clock: Clock): PlatformDecorators {
  return {
    installer: (installer) => faultyInstaller(installer, injector, clock),
    downloadSource: (source) => faultyDownloadSource(source, injector, clock),
  };
}

/**
 * An installer whose `install` step obeys the `install` faults: fails the selected section, hangs
 * on it until the agent stops (`ctx.signal`), or takes `delayMs` longer for every section. Every
 * other step is the wrapped installer's own. Without install faults the installer is returned as is.
 */
export function faultyInstaller(inner: Installer, injector: FaultInjector, clock: Clock): Installer {
  const faults = injector.faults.install;
  if (!faults || (faults.failSection === undefined && faults.hangSection === undefined && !faults.delayMs)) return inner;
  return {
    fileTypes: inner.fileTypes,
    download: (ctx) => inner.download(ctx),
    async install(ctx: InstallContext) {
      const { index, fileType } = ctx.section;
      if (sectionMatches(faults.failSection, index, fileType)) {
        throw new AgentError('AGENT_INSTALL_FAILED', `fault: install of section ${index} (${fileType}) fails`);
      }
      if (sectionMatches(faults.hangSection, index, fileType)) {
        // Never finishes: only the agent stopping ends the wait (the section stays half-installed).
        await new Promise<void>((resolve) => {
          if (ctx.signal.aborted) resolve();
          else ctx.signal.addEventListener('abort', () => resolve(), { once: true });
        });
        throw ctx.signal.reason;
      }
      if (faults.delayMs) await sleep(clock, faults.delayMs, ctx.signal);
      return inner.install(ctx);
    },
    needsReboot: (ctx) => inner.needsReboot(ctx),
    ...(inner.requiresNewSession ? { requiresNewSession: (ctx: InstallContext) => inner.requiresNewSession!(ctx) } : {}),
    commit: (ctx) => inner.commit(ctx),
    rollback: (ctx) => inner.rollback(ctx),
    cleanup: (ctx) => inner.cleanup(ctx),
  };
}

/**
 * A download source behind a faulty link (the `download` faults): the first `failAttempts`
 * requests fail before they are sent (network unreachable); the first `cutTimes` (default 1)
 * responses end after `cutAfterBytes` body bytes; every body arrives at `bytesPerSec`. Each limited
 * fault is counted by the injector, so it fires the same number of times across attempts and jobs.
 */
export function faultyDownloadSource(inner: DownloadSource, injector: FaultInjector, clock: Clock): DownloadSource {
  const faults = injector.faults.download;
  if (!faults) return inner;
  return {
    async get(url, options) {
      if (faults.failAttempts && injector.take('download.failAttempts', faults.failAttempts)) {
        throw new AgentError('AGENT_DOWNLOAD_FAILED', 'fault: network unreachable');
      }
      const cutAfter = faults.cutAfterBytes;
      // Decided before the request is sent: a refused attempt (e.g. 503) also uses up a cut.
      const cut = cutAfter !== undefined && injector.take('download.cut', faults.cutTimes ?? 1);
      const response = await inner.get(url, options);
      let body = response.body;
      if (faults.bytesPerSec) body = throttled(body, faults.bytesPerSec, clock, options.signal);
      if (cut) body = cutOff(body, cutAfter, response);
      return { statusCode: response.statusCode, headers: response.headers, body, discard: () => response.discard() };
    },
  };
}

/** The body at `bytesPerSec`: after each chunk, the time the chunk takes on such a link. */
async function* throttled(body: AsyncIterable<Uint8Array>, bytesPerSec: number, clock: Clock, signal: AbortSignal) {
  for await (const chunk of body) {
    yield chunk;
    await sleep(clock, (chunk.length / bytesPerSec) * 1000, signal);
  }
}

/** The body's first `limit` bytes, then a broken link. */
async function* cutOff(body: AsyncIterable<Uint8Array>, limit: number, response: DownloadResponse) {
  let sent = 0;
  for await (const chunk of body) {
    const part = chunk.subarray(0, Math.max(0, limit - sent));
    sent += part.length;
    if (part.length > 0) yield part;
    if (sent >= limit) {
      response.discard();
      throw new AgentError('AGENT_DOWNLOAD_INTERRUPTED', `fault: link cut after ${limit} bytes`);
    }
  }
}
