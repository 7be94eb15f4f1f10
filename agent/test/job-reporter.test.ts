import type { JobExecutionState, Message } from '@router-fleet/protocol';
import { describe, expect, it } from 'vitest';
import { resolveConfig } from '../src/config.js';
import { JobReporter } from '../src/jobs/job-reporter.js';
import type { JobRecord } from '../src/lifecycle/journal.js';
import { silentLogger } from '../src/logger.js';
import { createMemoryPlatform, type MemoryPlatform } from '../src/platform/memory.js';
import { illegalStep, recordOf } from './helpers/job-states.js';

/** A job record in `state` that last reported `lastReported`, for a packet of 1,000 bytes. */
function recordIn(id: string, state: JobRecord['state'], lastReported: JobExecutionState): JobRecord {
  const r = recordOf(id, { state, transitions: 0, lastReported });
  return { ...r, offer: { ...r.offer, packet: { ...r.offer.packet, size: 1000 } } };
}

interface Link {
  connected: boolean;
  /** The transport's answer per message (a socket that saw its peer close refuses); default: accept. */
  accept?: (message: Message) => boolean;
}

/** A reporter on `platform` whose session is `link` and whose accepted sends land in `wire`. */
function reporterOf(platform: MemoryPlatform, link: Link, wire: Message[]): JobReporter {
  return new JobReporter({
    config: resolveConfig({ dataDir: '/unused', reportResendSec: 30 }),
    platform,
    log: silentLogger(),
    session: link,
    send: (message) => {
      if (!link.connected || link.accept?.(message) === false) return false;
      wire.push(message);
      return true;
    },
    journal: async () => {},
  });
}

/** Accepts `n` messages, then refuses every one. */
const acceptFirst = (n: number) => () => n-- > 0;

const states = (wire: Message[], executionId: string): string[] =>
  wire.flatMap((m) => (m.type === 'job-progress' && m.body.executionId === executionId ? [m.body.state] : []));

describe('JobReporter', () => {
  it('reports the states skipped since the last one that went out, and counts only what went out', async () => {
    const platform = await createMemoryPlatform();
    const link: Link = { connected: false };
    const wire: Message[] = [];
    const reporter = reporterOf(platform, link, wire);
    const record = recordIn('exe-p', 'installing', 'downloading');

    reporter.progress(record); // not welcomed: nothing goes out, nothing counts
    expect(wire).toEqual([]);
    expect(record.lastReported).toBe('downloading');

    link.connected = true;
    link.accept = acceptFirst(1); // the second state of the chain is refused by the transport
    reporter.progress(record);
    expect(states(wire, 'exe-p')).toEqual(['downloaded']);
    expect(record.lastReported).toBe('downloaded');

    link.accept = undefined;
    reporter.progress(record);
    record.state = 'rebooting';
    reporter.progress(record);
    record.state = 'health-check';
    reporter.progress(record);
    expect(states(wire, 'exe-p')).toEqual(['downloaded', 'installing', 'rebooting', 'verifying']);
    expect(illegalStep(states(wire, 'exe-p'), 'downloading')).toBeUndefined();

    // A state with no job state of its own repeats the last one only when asked where the job is.
    record.state = 'rolling-back';
    reporter.progress(record);
    expect(states(wire, 'exe-p')).toHaveLength(4);
    reporter.progress(record, undefined, true);
    expect(states(wire, 'exe-p').at(-1)).toBe('verifying');

    // Download progress carries the bytes; a finished record reports nothing (its result does).
    const downloading = recordIn('exe-d', 'downloading', 'offered');
    reporter.progress(downloading, { bytesDone: 250 });
    const body = wire.at(-1)!.body as { state: string; bytesDone: number; bytesTotal: number; percent: number };
    expect(body).toMatchObject({ state: 'downloading', bytesDone: 250, bytesTotal: 1000, percent: 25 });
    const before = wire.length;
    reporter.progress({ ...record, state: 'done' }, undefined, true);
    expect(wire).toHaveLength(before);
  });

  it('sends a result once behind its skipped states, resends it alone until acknowledged, and keeps it across a restart', async () => {
    const platform = await createMemoryPlatform();
    const link: Link = { connected: false };
    const wire: Message[] = [];
    const reporter = reporterOf(platform, link, wire);

    // Finished offline: the server last heard `downloading`.
    await reporter.record('exe-r', { state: 'succeeded' }, 'result-1', 'downloading');
    await reporter.send('result-1');
    expect(wire).toEqual([]);

    // Restart: the outbox is on storage, chain included.
    const restarted = reporterOf(platform, link, wire);
    expect((await restarted.pending()).map((r) => r.messageId)).toEqual(['result-1']);
    link.connected = true;
    await restarted.welcomed(() => undefined);
    expect(states(wire, 'exe-r')).toEqual(['downloaded', 'installing', 'succeeded']);
    expect(wire.at(-1)!.id).toBe('result-1');

    // The next welcome (and the next restart) resends the result only: its chain went out.
    await restarted.welcomed(() => undefined);
    await reporterOf(platform, link, wire).welcomed(() => undefined);
    expect(states(wire, 'exe-r')).toEqual(['downloaded', 'installing', 'succeeded', 'succeeded', 'succeeded']);
    expect(illegalStep(states(wire, 'exe-r'), 'downloading')).toBeUndefined();

    await restarted.ack('result-1');
    expect(await restarted.pending()).toEqual([]);
    expect(await reporterOf(platform, link, wire).pending()).toEqual([]);
  });

  it('a chain cut short by a refused send holds the result back and continues from the last state that went out', async () => {
    const platform = await createMemoryPlatform();
    const link: Link = { connected: true, accept: acceptFirst(1) };
    const wire: Message[] = [];
    const reporter = reporterOf(platform, link, wire);
    await reporter.record('exe-c', { state: 'succeeded' }, 'result-c', 'downloading');
    await reporter.send('result-c'); // `downloaded` goes out, `installing` is refused
    expect(states(wire, 'exe-c')).toEqual(['downloaded']);
    expect((await reporterOf(platform, link, wire).pending())[0]?.chainFrom).toBe('downloaded');

    link.accept = undefined;
    await reporter.welcomed(() => undefined);
    expect(states(wire, 'exe-c')).toEqual(['downloaded', 'installing', 'succeeded']);
    expect(illegalStep(states(wire, 'exe-c'), 'downloading')).toBeUndefined();
  });

  it('an ack and a new result at the same moment both stick (one outbox, written in order)', async () => {
    const platform = await createMemoryPlatform();
    const link: Link = { connected: true };
    const wire: Message[] = [];
    const reporter = reporterOf(platform, link, wire);
    await reporter.record('exe-1', { state: 'failed', errorCode: 'AGENT_INSTALL_FAILED' }, 'result-1', 'installing');
    await reporter.send('result-1');
    await Promise.all([reporter.record('exe-2', { state: 'succeeded' }, 'result-2', 'verifying'), reporter.ack('result-1')]);
    expect((await reporter.pending()).map((r) => r.messageId)).toEqual(['result-2']);
    expect((await reporterOf(platform, link, wire).pending()).map((r) => r.messageId)).toEqual(['result-2']);
  });
});
