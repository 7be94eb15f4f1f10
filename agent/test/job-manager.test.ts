import type { JobExecutionState, Message } from '@router-fleet/protocol';
import { describe, expect, it } from 'vitest';
import { resolveConfig } from '../src/config.js';
import { JobManager } from '../src/jobs/job-manager.js';
import { JOURNAL_VERSION, Journal, type JobRecord } from '../src/lifecycle/journal.js';
import { silentLogger } from '../src/logger.js';
import { createMemoryPlatform, type MemoryPlatform } from '../src/platform/memory.js';
import { waitFor } from '../../protocol/test/helpers/wait-for.js';
import { illegalStep } from './helpers/job-states.js';

type Session = ConstructorParameters<typeof JobManager>[0]['session'];

/** A journaled job record in `state` (its offer points nowhere: these tests never download). */
function recordOf(id: string, fields: Partial<JobRecord> & Pick<JobRecord, 'state' | 'transitions'>): JobRecord {
  return {
    v: JOURNAL_VERSION,
    executionId: id,
    jobId: `job-of-${id}`,
    offer: {
      executionId: id,
      jobId: `job-of-${id}`,
      packet: { url: 'https://127.0.0.1:1/p.tar', size: 10, sha256: 'a'.repeat(64) },
      download: { token: 't', expiresAt: Date.now() + 600_000 },
      deadline: Date.now() + 600_000,
      allowDowngrade: false,
    },
    resumes: 0,
    enteredAt: Date.now(),
    ...fields,
  };
}

/** A JobManager on the memory platform whose messages go to `send`. */
function managerOf(platform: MemoryPlatform, session: Session, send: (message: Message) => boolean): JobManager {
  return new JobManager({
    config: resolveConfig({ dataDir: '/unused' }),
    platform,
    log: silentLogger(),
    session,
    profile: () => {
      throw new Error('not used by these tests');
    },
    profiles: undefined as never,
    installers: new Map(),
    send,
    event: () => {},
    changed: () => {},
    reboot: () => {},
    powerCut: (e) => {
      throw e;
    },
    fatal: (e) => {
      throw e;
    },
  });
}

describe('JobManager', () => {
  it('a welcome while a journaled result is being finished never re-reports a state after the terminal one', async () => {
    // Power cut after the result was journaled (state done), then restart. The welcome arrives
    // just as #finalize has sent the terminal report but before the runner is cleared: the old
    // code then re-sent the last reported state (verifying) after `succeeded`.
    const platform = await createMemoryPlatform();
    const record = recordOf('exe-1', {
      state: 'done',
      transitions: 7,
      lastReported: 'verifying',
      result: { state: 'succeeded' },
      terminalMessageId: 'terminal-1',
    });
    await new Journal(platform.storage).save(record);

    const sent: Message[] = [];
    const welcomes: Promise<void>[] = [];
    const manager: JobManager = managerOf(
      platform,
      {
        connected: true,
        state: 'managed',
        epoch: 1,
        roundTrip: () => Promise.resolve(true),
        changed: () => new Promise(() => {}),
        reconnect: () => {},
      },
      (message) => {
        sent.push(message);
        // The welcome lands right after the terminal report went out.
        if (message.type === 'job-progress' && message.id === 'terminal-1' && welcomes.length === 0) {
          welcomes.push(manager.welcomed());
        }
        return true;
      },
    );
    await manager.start();
    await waitFor(() => welcomes.length > 0 && !manager.active, { what: 'the welcome after the terminal report, and the job done' });
    await Promise.all(welcomes);
    await manager.welcomed();

    expect(welcomes).toHaveLength(1);
    const states = sent
      .filter((m): m is Message & { type: 'job-progress' } => m.type === 'job-progress')
      .map((m) => (m.body as { state: JobExecutionState }).state);
    expect(states.filter((s) => s === 'succeeded').length).toBeGreaterThanOrEqual(1);
    const lastTerminal = states.lastIndexOf('succeeded');
    expect(states.slice(lastTerminal + 1)).toEqual([]);
    expect(illegalStep(states, 'verifying')).toBeUndefined();
  });

  it('counts a state as reported only once it was sent, and reports the states reached offline after the welcome', async () => {
    // The server last heard `downloading`; the device went on offline (the server had died) and
    // restarted in the health check. Nothing it reached offline may count as reported: after the
    // welcome the server must hear every state from `downloading` on, in a legal order.
    const platform = await createMemoryPlatform();
    const record = recordOf('exe-2', { state: 'health-check', transitions: 5, lastReported: 'downloading', packet: { sections: [] } });
    await new Journal(platform.storage).save(record);

    const session = {
      connected: false,
      state: 'connecting' as 'connecting' | 'managed',
      epoch: 1,
      roundTrip: () => new Promise<boolean>(() => {}),
      changed: () => new Promise<void>(() => {}),
      reconnect: () => {},
    };
    // Sends refused by the transport (a socket that saw its peer close), counted down per message.
    let refuse = 0;
    const sent: string[] = [];
    const manager = managerOf(platform, session, (message) => {
      if (refuse > 0) {
        refuse--;
        return false;
      }
      if (message.type === 'job-progress') sent.push((message.body as { state: string }).state);
      return true;
    });
    await manager.start(); // resumes in the health check, which waits for the session: nothing can be sent
    expect(manager.active?.record.state).toBe('health-check');
    expect(sent).toEqual([]);
    expect(manager.active?.record.lastReported).toBe('downloading');

    // Connected, but the socket is already dead: the send is refused, nothing counts as reported.
    session.connected = true;
    session.state = 'managed';
    refuse = 1;
    await manager.welcomed();
    expect(sent).toEqual([]);
    expect(manager.active?.record.lastReported).toBe('downloading');

    // The welcome on the new connection sends every state from the last one the server heard.
    await manager.welcomed();
    expect(sent.at(-1)).toBe('verifying');
    expect(sent.length).toBeGreaterThan(1);
    expect(illegalStep(sent, 'downloading')).toBeUndefined();
    expect(manager.active?.record.lastReported).toBe('verifying');
    // A later welcome repeats the current state only.
    const before = sent.length;
    await manager.welcomed();
    expect(sent.slice(before)).toEqual(['verifying']);
  });
});
