import type { JobExecutionState } from '@router-fleet/protocol';
import { describe, expect, it } from 'vitest';
import {
  abortVerdict,
  capacity,
  type CapacityCounts,
  countsNeeded,
  deviceAfterResult,
  executionDeadline,
  isJobDone,
  type RolloutLimits,
  waveCapacity,
} from '../src/jobs/rollout.js';

const NO_LIMITS: RolloutLimits = { maxConcurrent: null, maxPerMinute: null, waves: [], window: null };
const WEEKLY = { days: ['mon' as const], startTime: '02:00', endTime: '04:00', timeZone: 'UTC' as const };
const OPEN = { notBefore: 1000, notAfter: 2000 };
const INF = Number.POSITIVE_INFINITY;

describe('capacity: how many devices a job may start now', () => {
  const cases: Array<[string, Partial<RolloutLimits>, CapacityCounts, typeof OPEN | undefined, number]> = [
    ['no limits', {}, {}, undefined, INF],
    ['maxConcurrent with room', { maxConcurrent: 5 }, { inFlight: 3 }, undefined, 2],
    ['maxConcurrent full', { maxConcurrent: 5 }, { inFlight: 5 }, undefined, 0],
    ['maxConcurrent overfull (never negative)', { maxConcurrent: 5 }, { inFlight: 7 }, undefined, 0],
    ['maxPerMinute with room', { maxPerMinute: 10 }, { claimedLastMinute: 4 }, undefined, 6],
    ['the smaller of two limits', { maxConcurrent: 5, maxPerMinute: 10 }, { inFlight: 0, claimedLastMinute: 8 }, undefined, 2],
    ['first wave', { waves: [10, 50, 100] }, { devices: { total: 100, started: 0, unfinished: 0 } }, undefined, 10],
    ['a filled wave waits for its results', { waves: [10, 50, 100] }, { devices: { total: 100, started: 10, unfinished: 3 } }, undefined, 0],
    ['the next wave once the earlier has results', { waves: [10, 50, 100] }, { devices: { total: 100, started: 10, unfinished: 0 } }, undefined, 40],
    ['waves under maxConcurrent', { waves: [50], maxConcurrent: 3 }, { inFlight: 1, devices: { total: 10, started: 0, unfinished: 0 } }, undefined, 2],
    ['a window that has ended', { window: WEEKLY }, {}, undefined, 0],
    ['an open or coming window', { window: WEEKLY }, {}, OPEN, INF],
    ['a window and a limit', { window: WEEKLY, maxConcurrent: 4 }, { inFlight: 1 }, OPEN, 3],
  ];
  it.each(cases)('%s', (_name, limits, counts, window, expected) => {
    expect(capacity({ ...NO_LIMITS, ...limits }, counts, window)).toBe(expected);
  });

  it('reads only the counts its limits need', () => {
    expect(countsNeeded(NO_LIMITS)).toEqual({ inFlight: false, claimedLastMinute: false, devices: false });
    expect(countsNeeded({ ...NO_LIMITS, maxConcurrent: 1, waves: [50] })).toEqual({ inFlight: true, claimedLastMinute: false, devices: true });
    expect(countsNeeded({ ...NO_LIMITS, maxPerMinute: 1 })).toEqual({ inFlight: false, claimedLastMinute: true, devices: false });
  });

  it('a count its limits need but the caller did not read is a bug', () => {
    expect(() => capacity({ ...NO_LIMITS, maxConcurrent: 1 }, {}, undefined)).toThrow(/inFlight/);
    expect(() => capacity({ ...NO_LIMITS, waves: [10] }, {}, undefined)).toThrow(/devices/);
  });
});

describe('waveCapacity', () => {
  const cases: Array<[number[], number, number, number, number]> = [
    // waves, total, started, unfinished → capacity
    [[10, 50, 100], 20, 0, 0, 2],
    [[10, 50, 100], 20, 1, 0, 1],
    [[10, 50, 100], 20, 2, 1, 0],
    [[10, 50, 100], 20, 2, 0, 8],
    [[10, 50, 100], 20, 10, 0, 10],
    [[10, 50, 100], 20, 20, 2, 0],
    [[10, 50, 100], 20, 20, 0, INF],
    [[33], 10, 0, 0, 4], // rounded up: a wave never has less than its percentage
  ];
  it.each(cases)('waves %j of %i devices, %i started, %i unfinished → %d', (waves, total, started, unfinished, expected) => {
    expect(waveCapacity(waves, total, started, unfinished)).toBe(expected);
  });
});

describe('deviceAfterResult: another attempt or done', () => {
  const options = { retries: 1, retryDelaySec: 30 };
  const cases: Array<[JobExecutionState, number, boolean, 'pending' | 'done']> = [
    // result, attempt, job running → status
    ['failed', 1, true, 'pending'],
    ['timed-out', 1, true, 'pending'],
    ['failed', 2, true, 'done'], // retries used up
    ['rejected', 1, true, 'done'], // the device refused the packet: trying again cannot help
    ['cancelled', 1, true, 'done'],
    ['succeeded', 1, true, 'done'],
    ['failed', 1, false, 'done'], // paused, cancelled or aborted job: no new attempts
  ];
  it.each(cases)('%s on attempt %i (job running: %s) → %s', (result, attempt, running, status) => {
    expect(deviceAfterResult(result, attempt, options, running, 1_000)).toEqual({ status, nextAttemptAt: 31_000 });
  });
});

describe('abortVerdict: failures past the threshold abort the job', () => {
  const abort = { failurePercent: 20, minFailures: 3 };
  const cases: Array<[string, typeof abort | null, number, number, string | undefined]> = [
    ['no abort rule', null, 10, 10, undefined],
    ['over the percentage and the minimum', abort, 3, 10, '3 of 10 devices failed (30.0 %)'],
    ['over the percentage, under the minimum', abort, 2, 4, undefined],
    ['at the percentage exactly (not over it)', abort, 4, 20, undefined],
    ['over the minimum, under the percentage', abort, 5, 100, undefined],
    ['nothing finished yet', { failurePercent: 0, minFailures: 0 }, 0, 0, undefined],
  ];
  it.each(cases)('%s', (_name, rule, failed, finished, reason) => {
    expect(abortVerdict(rule, { failed, finished })).toEqual(reason === undefined ? undefined : { reason });
  });
});

describe('isJobDone: no device pending or active', () => {
  const cases: Array<[boolean, number, number, boolean]> = [
    // dynamic, pending, active → done
    [false, 0, 0, true],
    [false, 1, 0, false],
    [false, 0, 1, false],
    [true, 0, 0, false], // a dynamic job runs until cancelled: devices may still join
  ];
  it.each(cases)('dynamic %s, %i pending, %i active → %s', (dynamic, pending, active, done) => {
    expect(isJobDone({ dynamic }, { pending, active })).toBe(done);
  });
});

describe('executionDeadline', () => {
  it.each([
    ['the timeout without a window', undefined, 3_601_000],
    ['the end of a window that ends later', { notBefore: 0, notAfter: 9_000_000 }, 9_000_000],
    ['the timeout when the window ends sooner', { notBefore: 0, notAfter: 2_000 }, 3_601_000],
  ] as const)('%s', (_name, window, deadline) => {
    expect(executionDeadline(1_000, 3600, window)).toBe(deadline);
  });
});
