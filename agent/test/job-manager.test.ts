import { createMessage, type JobExecutionState, type Message } from '@router-fleet/protocol';
import { describe, expect, it, vi } from 'vitest';
import { resolveConfig } from '../src/config.js';
import { JobManager } from '../src/jobs/job-manager.js';
import { Journal } from '../src/lifecycle/journal.js';
import { silentLogger } from '../src/logger.js';
import { createMemoryPlatform, type MemoryPlatform } from '../src/platform/memory.js';
import { waitFor } from '../../protocol/test/helpers/wait-for.js';
import { illegalStep, recordOf } from './helpers/job-states.js';

type Session = ConstructorParameters<typeof JobManager>[0]['session'];

/** Resolves once `signal` is aborted (at once if it already is). */
function untilAborted(signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) resolve();
    else signal?.addEventListener('abort', () => resolve(), { once: true });
  });
}

/** A JobManager on the memory platform whose messages go to `send`. */
function managerOf(
  platform: MemoryPlatform,
  session: Session,
  send: (message: Message) => boolean,
  overrides: Partial<ConstructorParameters<typeof JobManager>[0]> = {},
): JobManager {
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
    ...overrides,
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

  it('accepts, journals and reports an offer before its download waits for the transport\'s turn', async () => {
    const platform = await createMemoryPlatform();
    const session = { connected: true, state: 'managed' as const, epoch: 1, roundTrip: () => Promise.resolve(true), changed: () => new Promise<void>(() => {}), reconnect: () => {} };
    const sent: string[] = [];
    let release!: () => void;
    const turn = new Promise<void>((resolve) => (release = resolve));
    let turns = 0;
    let downloads = 0;
    const manager = managerOf(
      platform,
      session,
      (message) => {
        if (message.type === 'job-progress') sent.push((message.body as { state: string }).state);
        return true;
      },
      {
        profile: () => ({ caCertPem: 'CA', trustAnchorsPem: [] }) as never,
        downloadTurn: () => {
          turns++;
          return turn;
        },
        // The download itself is not what this test is about: it fails at once when it starts.
        downloadDispatcher: () => {
          downloads++;
          throw new Error('no download in this test');
        },
      },
    );
    await manager.start();
    const offer = recordOf('exe-turn', { state: 'offered', transitions: 0 }).offer;
    await manager.offer(createMessage('job-offer', offer, { id: 'offer-1', sentAt: Date.now() }));
    await waitFor(() => turns === 1, { what: 'the download waiting for its turn' });
    // Accepted before the wait: journaled in `downloading`, and the server told so.
    expect(manager.active?.record.state).toBe('downloading');
    expect(sent).toEqual(['downloading']);
    const journaled = await new Journal(platform.storage).load();
    expect(journaled).toMatchObject({ kind: 'record', record: { state: 'downloading', lastReported: 'downloading' } });
    expect(downloads).toBe(0);
    release();
    await waitFor(() => sent.includes('failed'), { what: 'the download started after its turn (and failed, as this test makes it)' });
    expect(downloads).toBe(1);
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

  it('a result reached offline reaches the server behind the states it skipped, after a restart too', async () => {
    // The server last heard `downloading`; the device finished the job while it could not reach
    // the server (power cut after the result was journaled). The result is finished before any
    // welcome, then the agent restarts once more, then it is welcomed: the server must hear
    // downloaded → installing before `succeeded`, not `succeeded` straight after `downloading`.
    const platform = await createMemoryPlatform();
    const record = recordOf('exe-3', {
      state: 'done',
      transitions: 7,
      lastReported: 'downloading',
      result: { state: 'succeeded' },
      terminalMessageId: 'terminal-3',
      packet: { sections: [] },
    });
    await new Journal(platform.storage).save(record);
    const session = {
      connected: false,
      state: 'connecting' as 'connecting' | 'managed',
      epoch: 1,
      roundTrip: () => new Promise<boolean>(() => {}),
      changed: () => new Promise<void>(() => {}),
      reconnect: () => {},
    };
    const sent: Message[] = [];
    const first = managerOf(platform, session, (message) => {
      sent.push(message);
      return true;
    });
    await first.start();
    await waitFor(() => first.history().some((h) => h.executionId === 'exe-3'), { what: 'exe-3 finished while disconnected' });
    await first.stop();
    expect(first.history().map((h) => h.executionId)).toEqual(['exe-3']);
    expect(sent).toEqual([]);

    const second = managerOf(platform, session, (message) => {
      sent.push(message);
      return true;
    });
    await second.start();
    session.connected = true;
    session.state = 'managed';
    await second.welcomed();
    const states = sent.flatMap((m) => (m.type === 'job-progress' ? [m.body.state] : []));
    expect(states.at(-1)).toBe('succeeded');
    expect(sent.at(-1)?.id).toBe('terminal-3');
    expect(illegalStep(states, 'downloading')).toBeUndefined();
  });

  it('states a welcome reported are journaled before the job goes on, so a power cut right after does not make them go out twice', async () => {
    // Resumed in `rebooting` (booted into the new slot); the server last heard `downloading`. The
    // welcome lands while the runner journals its move to the health check, and power is lost at
    // the health check's first step. The welcome had sent downloaded → installing → verifying;
    // after the restart the server must not hear them again from `downloading` (a step back).
    const base = await createMemoryPlatform({ faults: { powerCutAt: 'update:health-check' } });
    let release: (() => void) | undefined;
    let entered: (() => void) | undefined;
    const journaling = new Promise<void>((resolve) => (entered = resolve));
    const write = async (key: string, data: Uint8Array) => {
      if (key === 'journal.json' && release === undefined && Buffer.from(data).toString().includes('"state":"health-check"')) {
        await new Promise<void>((resolve) => {
          release = resolve;
          entered!();
        });
      }
      return base.storage.write(key, data);
    };
    const storage = new Proxy(base.storage, {
      get: (target, key) => {
        if (key === 'write') return write;
        const value: unknown = Reflect.get(target, key);
        return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
      },
    });
    const platform = { ...base, storage } as MemoryPlatform;
    await new Journal(platform.storage).save(
      recordOf('exe-4', {
        state: 'rebooting',
        transitions: 4,
        lastReported: 'downloading',
        packet: { sections: [] },
        reboot: { fromBootId: 'the boot before' },
      }),
    );
    const session = {
      connected: false,
      state: 'connecting' as 'connecting' | 'managed',
      epoch: 1,
      // The health check waits until the agent stops.
      roundTrip: (_ms: number, signal?: AbortSignal) => untilAborted(signal).then(() => false),
      changed: (_ms: number, signal?: AbortSignal) => untilAborted(signal),
      reconnect: () => {},
    };
    const states: string[] = [];
    const send = (message: Message) => {
      if (message.type === 'job-progress') states.push(message.body.state);
      return true;
    };
    let cut: (() => void) | undefined;
    const powerLost = new Promise<void>((resolve) => (cut = resolve));
    const first = managerOf(platform, session, send, { powerCut: () => cut!() });
    await first.start();
    await journaling; // the runner is journaling its move to the health check
    session.connected = true;
    session.state = 'managed';
    const welcomed = first.welcomed();
    await vi.waitFor(() => expect(states).toEqual(['downloaded', 'installing', 'verifying']));
    release!();
    await welcomed;
    await powerLost;

    const second = managerOf(platform, session, send);
    await second.start();
    await second.welcomed();
    await second.stop();
    expect(states.length).toBeGreaterThan(3);
    expect(illegalStep(states, 'downloading')).toBeUndefined();
  });
});
