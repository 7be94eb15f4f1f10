import type { SessionState, UpdateState } from '@router-fleet/agent';
import { describe, expect, it } from 'vitest';
import { RouterFlag, RouterTable } from '../src/router-table.js';
import { WorkerMetrics } from '../src/worker-metrics.js';

function setup(routers = 1) {
  const table = new RouterTable(routers);
  const metrics = new WorkerMetrics(() => table);
  const session = (j: number, ...states: SessionState[]) => {
    for (const s of states) metrics.session(j, s, false);
  };
  const update = (j: number, ...states: UpdateState[]) => {
    for (const s of states) metrics.update(j, s);
  };
  return { table, metrics, session, update };
}

describe('WorkerMetrics: sessions', () => {
  it('counts a first connect and its admission, and records when they happened', () => {
    const { table, metrics, session } = setup();
    session(0, 'connecting', 'hello-sent', 'managed');
    const s = metrics.snapshot(1);
    expect(s.states).toEqual({ managed: 1 });
    expect(s.admission).toEqual({ managed: 1, unmanaged: 0, rejected: 0, authFailed: 0 });
    expect(s.counters).toMatchObject({ connects: 1, disconnects: 0, reconnects: 0 });
    expect(s.histograms.connect.count).toBe(1);
    expect(s.histograms.admission.count).toBe(1);
    expect(table.firstHelloAt[0]).toBeGreaterThan(0);
    expect(table.firstAdmissionAt[0]).toBeGreaterThanOrEqual(table.firstHelloAt[0]!);
    expect(table.decidedHelloAt[0]).toBe(table.firstHelloAt[0]);
    expect(table.downAt[0]).toBe(0);
  });

  it('tells a refused credential (before any hello) from a refused licence (after the hello)', () => {
    const { table, metrics, session } = setup(2);
    session(0, 'connecting', 'rejected-waiting');
    session(1, 'connecting', 'hello-sent', 'rejected-waiting');
    expect(table.admission(0)).toBe('auth-failed');
    expect(table.admission(1)).toBe('rejected');
    expect(metrics.snapshot(2).admission).toEqual({ managed: 0, unmanaged: 0, rejected: 1, authFailed: 1 });
    // Only the hello's answer is an admission time.
    expect(table.firstAdmissionAt[0]).toBe(0);
    expect(table.firstAdmissionAt[1]).toBeGreaterThan(0);
  });

  it('counts a lost channel and the reconnect that ends it', () => {
    const { table, metrics, session } = setup();
    session(0, 'connecting', 'hello-sent', 'managed', 'backing-off');
    expect(table.downAt[0]).toBeGreaterThan(0);
    expect(metrics.snapshot(1).counters.disconnects).toBe(1);
    table.attemptAt[0] = table.downAt[0]! + 1;
    session(0, 'connecting', 'hello-sent', 'unmanaged');
    const s = metrics.snapshot(1);
    expect(s.counters).toMatchObject({ connects: 2, disconnects: 1, reconnects: 1 });
    expect(s.histograms.reconnect.count).toBe(1);
    expect(Object.values(s.reconnectBins)).toEqual([1]);
    expect(table.reconnects[0]).toBe(1);
    expect(table.downAt[0]).toBe(0);
    expect(table.lastReconnectMs[0]).toBeGreaterThan(0);
    expect(table.lastRedialMs[0]).toBe(1);
    expect(table.admission(0)).toBe('unmanaged');
  });

  it('is down from a hello that timed out once it had been admitted before, not on its very first connect', () => {
    const first = setup();
    first.session(0, 'connecting', 'hello-sent', 'backing-off');
    expect(first.table.downAt[0]).toBe(0);
    const later = setup();
    later.session(0, 'connecting', 'hello-sent', 'rejected-waiting', 'connecting', 'hello-sent', 'backing-off');
    expect(later.table.downAt[0]).toBeGreaterThan(0);
    expect(later.metrics.snapshot(1).counters.disconnects).toBe(0);
  });

  it('keeps the connecting time of the first of several dials', () => {
    const { table, session } = setup();
    session(0, 'connecting');
    const dialAt = table.dialAt[0];
    session(0, 'connecting');
    expect(table.dialAt[0]).toBe(dialAt);
  });

  it('counts a stop as a disconnect unless the fleet is stopping', () => {
    const running = setup();
    running.session(0, 'connecting', 'hello-sent', 'managed', 'stopped');
    expect(running.metrics.snapshot(1).counters.disconnects).toBe(1);
    const stopping = setup();
    stopping.session(0, 'connecting', 'hello-sent', 'managed');
    stopping.metrics.session(0, 'stopped', true);
    expect(stopping.metrics.snapshot(1).counters.disconnects).toBe(0);
    expect(stopping.table.downAt[0]).toBe(0);
  });

  it('marks a managed router that exits as down and stopped, and counts the restart and its cause', () => {
    const { table, metrics, session } = setup();
    session(0, 'connecting', 'hello-sent', 'managed');
    metrics.restarting(0, { reason: 'power-cut' });
    expect(table.state(0)).toBe('stopped');
    expect(table.downAt[0]).toBeGreaterThan(0);
    metrics.restarting(0, { reason: 'error', error: Object.assign(new Error('x'), { code: 'AGENT_X' }) });
    const s = metrics.snapshot(1);
    expect(s.counters.restarts).toBe(2);
    expect(s.errors).toEqual({ 'exit:power-cut': 1, 'exit:AGENT_X': 1 });
  });

  it('counts only routers managed on a hello sent at or after the mark', () => {
    const { metrics, session } = setup(2);
    session(0, 'connecting', 'hello-sent', 'managed');
    metrics.mark(Date.now() + 60_000);
    expect(metrics.snapshot(2).managedSinceMark).toBe(0);
    metrics.mark(Date.now() - 60_000);
    session(1, 'connecting', 'hello-sent', 'managed');
    expect(metrics.snapshot(2).managedSinceMark).toBe(2);
    // Routers not started yet are not counted.
    expect(metrics.snapshot(1).managedSinceMark).toBe(1);
  });
});

describe('WorkerMetrics: updates', () => {
  it('counts an update from its offer to done, once', () => {
    const { table, metrics, update } = setup();
    metrics.jobCreated(Date.now());
    update(0, 'offered', 'downloading', 'installing', 'done');
    const s = metrics.snapshot(1);
    expect(s.counters).toMatchObject({ jobsOffered: 1, jobsActive: 0, jobsDone: 1, jobsRolledBack: 0 });
    expect(s.histograms.jobOffer.count).toBe(1);
    expect(s.histograms.jobComplete.count).toBe(1);
    expect(table.has(0, RouterFlag.UPDATE_ACTIVE)).toBe(false);
    update(0, 'done');
    expect(metrics.snapshot(1).counters.jobsDone).toBe(1);
  });

  it('counts a rolled-back update, and forgets the rollback for the next one', () => {
    const { metrics, update } = setup();
    update(0, 'offered', 'installing', 'rolling-back', 'done');
    expect(metrics.snapshot(1).counters).toMatchObject({ jobsOffered: 1, jobsDone: 1, jobsRolledBack: 1 });
    update(0, 'offered', 'downloading', 'done');
    expect(metrics.snapshot(1).counters).toMatchObject({ jobsOffered: 2, jobsDone: 2, jobsRolledBack: 1, jobsActive: 0 });
  });

  it('counts an update resumed in the middle (after a restart) as offered', () => {
    const { metrics, update } = setup();
    update(0, 'installing');
    expect(metrics.snapshot(1).counters).toMatchObject({ jobsOffered: 1, jobsActive: 1 });
  });

  it('records no job histograms without a job creation time', () => {
    const { metrics, update } = setup();
    update(0, 'offered', 'done');
    expect(metrics.snapshot(1).histograms.jobOffer.count).toBe(0);
  });
});

describe('WorkerMetrics: errors', () => {
  it('counts dial failures, close codes and other errors by code', () => {
    const { metrics } = setup();
    metrics.dialFailed('ECONNREFUSED');
    metrics.dialFailed('ECONNREFUSED');
    metrics.closed(1013);
    metrics.error('power-on');
    metrics.dialQueued();
    const s = metrics.snapshot(1);
    expect(s.errors).toEqual({ 'dial:ECONNREFUSED': 2, 'close:1013': 1, 'power-on': 1 });
    expect(s.counters).toMatchObject({ dialFailures: 2, dialsQueued: 1 });
  });
});
