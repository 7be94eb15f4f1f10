import { randomUUID } from 'node:crypto';
import { createMessage, type JobExecutionState } from '@router-fleet/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { TestClock } from '../src/clock.js';
import type { JobOptionsInput } from '../src/jobs/options.js';
import { createServices, type Services } from '../src/services.js';
import { applied, jobPortFleet } from './helpers/job-port-fleet.js';
import { spyStatements } from './helpers/statement-spy.js';
import { removeTempDirs, T0, tempDir, testConfig } from './helpers/setup.js';

/*
 * The dispatcher judges a batch of channel inputs in memory in arrival order and writes what
 * changed set-based at the end. Whatever a batch holds, the store must end as it would have with
 * the same inputs applied one at a time: executions, the devices' places in the job, the counts
 * the triggers keep, the job's state and its events, and the acknowledgements.
 */

afterEach(() => removeTempDirs());

/** One input: a report of device `from` about device `about`'s execution (a stranger's, or an unknown one), or a reconnect. */
type Step =
  | { device: number; state: JobExecutionState; about?: number; unknown?: boolean }
  | { device: number; ready: true };

async function world(devices: number, options: JobOptionsInput) {
  const clock = new TestClock(T0);
  const services: Services = createServices(testConfig(tempDir()), { clock });
  const fleet = await jobPortFleet(services, 'BATCH', devices, options);
  const { rows, job, sent, executions, ready, progress } = fleet;

  const push = (step: Step) => {
    const uuid = rows[step.device]!.uuid;
    if ('ready' in step) return ready(uuid);
    const executionId = step.unknown ? randomUUID() : executions.get(rows[step.about ?? step.device]!.uuid)!;
    progress(uuid, createMessage('job-progress', {
      executionId,
      state: step.state,
      ...(step.state === 'failed' ? { errorCode: 'AGENT_INSTALL_FAILED', errorMessage: 'install failed' } : {}),
      ...(step.state === 'downloading' ? { percent: 40 } : {}),
    }, { sentAt: T0 }));
  };

  /** An event's execution id as the index of its device (ids differ between worlds). */
  const withDevice = (data: Record<string, unknown>) => {
    if (typeof data.executionId !== 'string') return data;
    const { executionId, ...rest } = data;
    return { ...rest, device: rows.findIndex((r) => executions.get(r.uuid) === executionId) };
  };
  /** What the store holds of the job, without row ids and uuids (which differ between worlds). */
  const snapshot = () => {
    const db = services.store;
    const jobId = (db.stmt('SELECT id FROM jobs WHERE uuid = ?').get(job.uuid) as { id: number }).id;
    return {
      executions: db.stmt(
        `SELECT d.serial_number, e.attempt, e.state, e.percent, e.offered_at, e.updated_at, e.finished_at, e.result_source,
           e.ignored_progress, e.error_code, e.error_message, e.cancel_sent_at
         FROM job_executions e JOIN devices d ON d.id = e.device_id WHERE e.job_id = ? ORDER BY d.serial_number, e.attempt`,
      ).all(jobId),
      devices: db.stmt(
        `SELECT d.serial_number, jd.status, jd.result, jd.attempts, jd.next_attempt_at
         FROM job_devices jd JOIN devices d ON d.id = jd.device_id WHERE jd.job_id = ? ORDER BY d.serial_number`,
      ).all(jobId),
      counts: db.stmt('SELECT bucket, n FROM job_counts WHERE job_id = ? AND n != 0 ORDER BY bucket').all(jobId),
      job: db.stmt('SELECT state, abort_reason, finished_at FROM jobs WHERE id = ?').get(jobId),
      events: (db.stmt(`SELECT type, data FROM account_events WHERE type LIKE 'job.%' AND type != 'job.started' ORDER BY id`).all() as Array<{ type: string; data: string }>)
        .map((e) => ({ type: e.type, data: withDevice(JSON.parse(e.data) as Record<string, unknown>) })),
      acks: sent.filter((s) => s.message.type === 'ack').map((s) => rows.findIndex((r) => r.uuid === s.deviceUuid)),
      offers: sent.filter((s) => s.message.type === 'job-offer').length,
      cancels: sent.filter((s) => s.message.type === 'job-cancel').map((s) => rows.findIndex((r) => r.uuid === s.deviceUuid)),
      ignored: { ...services.jobs.ignored },
    };
  };
  /** Statements (reads, writes) the store runs while `fn` and the inbox flush it leads to run. */
  const statements = async (fn: () => void) => {
    const n = { reads: 0, writes: 0 };
    const restore = spyStatements(services.store, (_, call) => (call === 'read' ? n.reads++ : n.writes++));
    try {
      fn();
      await applied(services);
    } finally {
      restore();
    }
    return n;
  };
  /**
   * Makes the `nth` run (counted from now) of a statement whose text starts with `sqlStart` throw,
   * as a failing disk or a constraint would; returns the runs seen and a restore.
   */
  const failNth = (sqlStart: string, nth: number) => {
    const seen = { runs: 0 };
    const restore = spyStatements(services.store, (sql, call) => {
      if (call === 'write' && sql.trimStart().startsWith(sqlStart) && ++seen.runs === nth) throw new Error('injected write failure');
    });
    return { seen, restore };
  };
  return { services, clock, fleet, push, snapshot, statements, failNth };
}

type World = Awaited<ReturnType<typeof world>>;

/**
 * The same inputs, one batch each and all in one batch, on two fresh stores: the same end.
 * `before` brings both stores to the same start (the server's own moves: timeouts, a cancel).
 */
async function sameEnd(devices: number, options: JobOptionsInput, steps: Step[], before?: (w: World) => Promise<void>) {
  const one = await world(devices, options);
  const all = await world(devices, options);
  try {
    if (before) {
      await before(one);
      await before(all);
      expect(all.snapshot()).toEqual(one.snapshot());
    }
    for (const step of steps) {
      one.push(step);
      await applied(one.services);
    }
    for (const step of steps) all.push(step);
    await applied(all.services);
    const a = one.snapshot();
    const b = all.snapshot();
    expect(b).toEqual(a);
    return a;
  } finally {
    one.services.close();
    all.services.close();
  }
}

describe('a batch of job reports ends as the same reports one at a time', () => {
  it('advances, skipped states, stale and duplicate reports, strangers, unknown executions, reconnects and results with a retry', async () => {
    const end = await sameEnd(8, { retries: { max: 1, delaySec: 3600 } }, [
      { device: 0, state: 'downloading' },
      { device: 0, state: 'installing' },
      { device: 1, state: 'downloading' },
      { device: 0, state: 'downloading' }, // stale
      { device: 2, state: 'rebooting' }, // states in between missed
      { device: 2, ready: true }, // reconnect: the offer again
      { device: 0, state: 'succeeded' },
      { device: 0, state: 'succeeded' }, // duplicate: acknowledged again
      { device: 1, state: 'failed' }, // pending again for a retry
      { device: 3, state: 'succeeded', unknown: true },
      { device: 4, state: 'succeeded', about: 5 }, // another device's execution
      { device: 2, state: 'succeeded' },
      { device: 5, state: 'installing' },
      { device: 5, state: 'succeeded' },
      { device: 6, ready: true },
      { device: 6, state: 'succeeded' },
      { device: 7, state: 'succeeded' },
    ]);
    expect(end.job).toMatchObject({ state: 'running' });
    expect(end.devices.filter((d) => (d as { status: string }).status === 'pending')).toHaveLength(1);
    expect(end.ignored).toEqual({ duplicate: 1, illegal: 1, unknown: 2 });
  });

  it('every device done: the job finishes once, with its results, in the batch', async () => {
    const end = await sameEnd(6, {}, [
      ...[0, 1, 2, 3, 4, 5].map((device) => ({ device, state: 'downloading' as const })),
      ...[5, 4, 3, 2, 1].map((device) => ({ device, state: 'succeeded' as const })),
      { device: 0, state: 'failed' },
      { device: 0, state: 'failed' },
    ]);
    expect(end.job).toMatchObject({ state: 'finished' });
    expect(end.events).toEqual([{ type: 'job.finished', data: { results: expect.objectContaining({ succeeded: 5, failed: 1 }) } }]);
  });

  it('failures abort the job mid-batch; results after it settle as in a job no longer running', async () => {
    const end = await sameEnd(8, { abort: { failurePercent: 10, minFailures: 2 }, retries: { max: 1, delaySec: 3600 } }, [
      { device: 0, state: 'succeeded' },
      { device: 1, state: 'failed' },
      { device: 2, state: 'failed' }, // the job aborts here
      { device: 3, state: 'failed' }, // no retry: the job no longer runs
      { device: 4, state: 'succeeded' },
      { device: 5, state: 'installing' },
    ]);
    expect(end.job).toMatchObject({ state: 'aborted' });
    expect(end.events.map((e) => e.type)).toEqual(['job.aborted']);
    // The failures before the abort wait for their retry; the one after it does not.
    expect(end.devices.filter((d) => (d as { status: string }).status === 'pending')).toHaveLength(2);
  });

  it('results that come after the deadline replace the server\'s timed-out, once; later reports are repeats', async () => {
    const end = await sameEnd(5, { timeoutSec: 60 }, [
      { device: 0, state: 'succeeded' }, // revises timed-out
      { device: 1, state: 'failed' }, // revises timed-out
      { device: 2, state: 'installing' }, // the server decided: it waits for the result
      { device: 0, state: 'succeeded' }, // now the device's own result: a repeat
      { device: 1, state: 'succeeded' }, // a second, different result: the first one stands
      { device: 2, state: 'succeeded' },
      { device: 3, ready: true }, // nothing open any more: no offer again
    ], async (w) => {
      w.clock.advance(61_000);
      w.services.jobs.tick();
      await applied(w.services);
    });
    type Execution = { serial_number: string; state: string; result_source: string };
    expect((end.executions as Execution[]).map((e) => [e.state, e.result_source])).toEqual([
      ['succeeded', 'device'],
      ['failed', 'device'],
      ['succeeded', 'device'],
      ['timed-out', 'server'],
      ['timed-out', 'server'],
    ]);
    expect(end.counts).toEqual(expect.arrayContaining([
      { bucket: 'result:succeeded', n: 2 },
      { bucket: 'result:failed', n: 1 },
      { bucket: 'result:timed-out', n: 2 },
    ]));
    expect(end.events.filter((e) => e.type === 'job.execution-revised').map((e) => e.data)).toEqual([
      { device: 0, serverResult: 'timed-out', deviceResult: 'succeeded' },
      { device: 1, serverResult: 'timed-out', deviceResult: 'failed' },
      { device: 2, serverResult: 'timed-out', deviceResult: 'succeeded' },
    ]);
    expect(end.offers).toBe(5);
    expect(end.ignored).toMatchObject({ duplicate: 3 });
  });

  it('a reconnect batch sends the cancels its devices missed, and their results settle the job', async () => {
    const end = await sameEnd(6, {}, [
      { device: 0, state: 'downloading' },
      ...[1, 2, 3, 4].map((device) => ({ device, ready: true as const })),
      { device: 0, state: 'cancelled' },
      { device: 1, state: 'cancelled' },
      { device: 2, ready: true }, // again: told again
      { device: 3, state: 'cancelled' },
    ], async (w) => {
      // Devices 0-4 are gone when the job is cancelled: their cancels cannot be sent then.
      const unreachable = w.fleet.rows.slice(0, 5).map((r) => r.uuid);
      for (const uuid of unreachable) w.fleet.unreachable.add(uuid);
      w.services.jobs.cancel(w.fleet.scope, w.fleet.job.uuid);
      await applied(w.services);
      for (const uuid of unreachable) w.fleet.unreachable.delete(uuid);
    });
    // Device 5 was told at the cancel; 1-4 on their reconnect, 2 again on its second (it may have
    // missed the first); 0 never reconnected (its report alone does not resend the cancel), and
    // its result still counts.
    expect([...end.cancels].sort()).toEqual([1, 2, 2, 3, 4, 5]);
    type Execution = { serial_number: string; state: string; cancel_sent_at: number | null };
    const executions = end.executions as Execution[];
    expect(executions.map((e) => e.state)).toEqual(['cancelled', 'cancelled', 'offered', 'cancelled', 'offered', 'offered']);
    expect(executions.map((e) => e.cancel_sent_at !== null)).toEqual([false, true, true, true, true, true]);
    expect(end.job).toMatchObject({ state: 'cancelled' });
  });
});

describe('what a batch of reports costs the store', () => {
  // SQLite writes each changed row with its prepared statement (microseconds); PostgreSQL writes
  // them set-based, so there the writes too are a few per batch.
  it('a few statements per batch, however many reports it holds (on SQLite: a few reads)', async () => {
    // One device never reports: the job stays running (a finished job is not dispatched, which reads less).
    const w = await world(25, {});
    try {
      const wave = (devices: number[], step: (device: number) => Step) => w.statements(() => {
        for (const device of devices) w.push(step(device));
      });
      // The first batch of a kind reads what later ones find cached (statements, the job's counts).
      const first = [0, 1, 2, 3];
      const few = [4, 5, 6, 7];
      const many = Array.from({ length: 16 }, (_, i) => i + 8);
      const progress = (state: JobExecutionState) => (device: number): Step => ({ device, state });
      const reconnect = (device: number): Step => ({ device, ready: true });
      for (const [name, step] of [
        ['downloading', progress('downloading')],
        ['rebooting', progress('rebooting')],
        ['reconnect', reconnect],
        ['succeeded', progress('succeeded')],
      ] as const) {
        await wave(first, step);
        const a = await wave(few, step);
        const b = await wave(many, step);
        if (w.services.store.dialect === 'postgres') expect({ name, ...b }).toEqual({ name, ...a });
        else expect({ name, reads: b.reads }).toEqual({ name, reads: a.reads });
        expect(w.services.store.dialect === 'postgres' ? a.reads + a.writes : a.reads, name).toBeLessThanOrEqual(16);
      }
    } finally {
      w.services.close();
    }
  });
});

describe('executions past their deadline', () => {
  it('end together in one tick, with statements that do not grow with their number', async () => {
    const w = await world(30, { timeoutSec: 60 });
    try {
      // Five devices report once (their rows differ from the rest), the rest stay offered.
      for (const device of [0, 1, 2, 3, 4]) w.push({ device, state: 'downloading' });
      await applied(w.services);
      const tick = async (overdue: number) => {
        const n = await w.statements(() => {
          w.clock.advance(61_000);
          w.services.jobs.tick();
        });
        const done = (w.snapshot().executions as Array<{ state: string }>).filter((e) => e.state === 'timed-out').length;
        return { ...n, done: done - overdue };
      };
      // First tick: all 30 end; the job is finished in the same tick.
      const first = await tick(0);
      expect(first.done).toBe(30);
      const end = w.snapshot();
      expect(end.job).toMatchObject({ state: 'finished' });
      expect(end.counts).toEqual([{ bucket: 'result:timed-out', n: 30 }, { bucket: 'status:done', n: 30 }]);
      expect(end.events).toEqual([{ type: 'job.finished', data: { results: expect.objectContaining({ 'timed-out': 30 }) } }]);
      // A tick with nothing overdue reads and writes no more than the one that ended 30.
      const idle = await tick(30);
      expect(idle.done).toBe(0);
      const cost = (n: { reads: number; writes: number }) => (w.services.store.dialect === 'postgres' ? n.reads + n.writes : n.reads);
      expect(cost(first)).toBeLessThanOrEqual(cost(idle) + 16);
    } finally {
      w.services.close();
    }
  });
});

describe('a report that cannot be stored', () => {
  it('is not acknowledged and leaves nothing half written; what is acknowledged is stored; resent, it ends as if nothing failed', async () => {
    const steps: Step[] = [
      { device: 0, state: 'succeeded' },
      { device: 1, state: 'succeeded' },
      { device: 2, state: 'failed' },
    ];
    // Abort rules make the batch write results while it judges them (to count failures).
    const options: JobOptionsInput = { abort: { failurePercent: 90, minFailures: 5 } };
    const faulty = await world(4, options);
    const clean = await world(4, options);
    try {
      const fault = faulty.failNth('UPDATE job_executions', 2);
      for (const step of steps) faulty.push(step);
      await applied(faulty.services);
      fault.restore();
      expect(fault.seen.runs).toBeGreaterThanOrEqual(2);
      const after = faulty.snapshot();
      const serial = (device: number) => `BATCH-${device}`; // four devices: one digit
      const execution = (device: number) => (after.executions as Array<{ serial_number: string; state: string; finished_at: number | null }>)
        .find((e) => e.serial_number === serial(device))!;
      const place = (device: number) => (after.devices as Array<{ serial_number: string; status: string }>).find((d) => d.serial_number === serial(device))!;
      // Some report of the batch was refused (the fault bit), and each one is either stored and
      // acknowledged, or neither (its execution and its place in the job as before it came).
      expect(after.acks.length).toBeLessThan(3);
      for (const device of [0, 1, 2]) {
        if (after.acks.includes(device)) {
          expect(execution(device).finished_at).not.toBeNull();
          expect(place(device).status).toBe('done');
        } else {
          expect(execution(device)).toMatchObject({ state: 'offered', finished_at: null });
          expect(place(device).status).toBe('active');
        }
      }
      // The devices repeat what was not acknowledged: the end is the same as without the fault.
      for (const step of steps) if (!after.acks.includes(step.device)) faulty.push(step);
      await applied(faulty.services);
      for (const step of steps) clean.push(step);
      await applied(clean.services);
      const end = faulty.snapshot();
      const expected = clean.snapshot();
      expect(end.executions).toEqual(expected.executions);
      expect(end.devices).toEqual(expected.devices);
      expect(end.counts).toEqual(expected.counts);
      expect(end.job).toEqual(expected.job);
      expect([...new Set(end.acks)].sort()).toEqual([0, 1, 2]);
    } finally {
      faulty.services.close();
      clean.services.close();
    }
  });
});
