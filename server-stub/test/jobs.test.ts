import { randomUUID } from 'node:crypto';
import type { MessageOf } from '@router-fleet/protocol';
import { describe, expect, it } from 'vitest';
import { DAY, MINUTE } from '../src/clock.js';
import { CLAIMS_PER_TRANSACTION } from '../src/jobs/dispatcher.js';
import { waitFor } from '../../protocol/test/helpers/wait-for.js';
import type { FakeDevice } from './helpers/fake-device.js';
import { createJob, type JobsWorld, jobsWorlds } from './helpers/jobs-world.js';
import { T0 } from './helpers/setup.js';

const open = jobsWorlds();

const isOffer = (m: { type: string }) => m.type === 'job-offer';

async function connectAll(w: JobsWorld, devices: FakeDevice[]): Promise<void> {
  for (const d of devices) await d.connect(w.channel.port);
}

/** The job resource once `check` holds (results cross a socket and a group commit). */
async function jobWhen(w: JobsWorld, uuid: string, check: (job: { state: string }) => boolean, what: string) {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- test answers are checked field by field
  return waitFor(async (): Promise<any> => {
    const job = (await w.api('GET', `/api/jobs/${uuid}`)).json;
    return check(job) && job;
  }, { what });
}

/** Sends a terminal report and waits for its ack (the server stored it, and dispatched after). */
async function finish(d: FakeDevice, executionId: string, state: 'succeeded' | 'failed' | 'cancelled', errorCode?: string): Promise<void> {
  const report = d.report(executionId, state, errorCode ? { errorCode } : {});
  await d.next('ack', (m) => m.correlationId === report.id);
}

describe('update jobs over the control channel (protocol-level fake devices, real sockets)', () => {
  it('targets devices, groups or all; runs an execution through the state machine and acks the result', async () => {
    const w = await open();
    const packet = await w.packet();
    const group = (await w.api('POST', '/api/inventory/device-groups', { name: 'north' })).json;
    const inGroup = w.fakeDevices(2, { groupUuid: group.uuid });
    const others = w.fakeDevices(2);
    await connectAll(w, [...inGroup, ...others]);
    const job = await createJob(w, { packetUuid: packet.uuid, target: { groupUuids: [group.uuid] } });
    const offers = await Promise.all(inGroup.map((d) => d.next(isOffer))) as MessageOf<'job-offer'>[];
    await w.quiet(others);
    expect(others.every((d) => d.offers().length === 0)).toBe(true);
    const o = offers[0]!;
    expect(o.body).toMatchObject({
      jobId: job.uuid,
      allowDowngrade: false,
      packet: { size: packet.size, sha256: packet.sha256 },
    });
    expect(o.body.packet.url).toBe(`${w.baseUrl}/api/packets/download/${o.body.executionId}`);
    for (const [i, d] of inGroup.entries()) {
      const exec = offers[i]!.body.executionId;
      d.report(exec, 'downloading', { percent: 50 });
      d.report(exec, 'downloaded');
      d.report(exec, 'installing');
      d.report(exec, 'verifying');
      const done = d.report(exec, 'succeeded');
      const ack = (await d.next((m) => m.type === 'ack')) as MessageOf<'ack'>;
      expect(ack.correlationId).toBe(done.id);
      expect(ack.body.seqs).toEqual([]);
    }
    const final = await jobWhen(w, job.uuid, (r) => r.state === 'finished', 'the job finished');
    expect(final.progress).toMatchObject({ devices: { total: 2, done: 2 }, results: { succeeded: 2 }, percentComplete: 100 });
    const devices = (await w.api('GET', `/api/jobs/${job.uuid}/devices`)).json;
    expect(devices.items.map((r: { result: string; state: string }) => [r.result, r.state])).toEqual([
      ['succeeded', 'succeeded'],
      ['succeeded', 'succeeded'],
    ]);
    const events = (await w.api('GET', '/api/dashboard/events')).json.items.map((e: { type: string }) => e.type);
    expect(events).toEqual(expect.arrayContaining(['job.started', 'job.finished']));

    // all: true reaches the devices outside the group too.
    await createJob(w, { packetUuid: packet.uuid, target: { all: true } });
    await Promise.all(others.map((d) => d.next(isOffer)));
  });

  it('accepts a job naming 50,000 devices (about 2 MB of JSON, beyond the default body limit)', async () => {
    const w = await open();
    const packet = await w.packet(1000);
    const deviceUuids = Array.from({ length: 50_000 }, () => randomUUID());
    const res = await w.api('POST', '/api/jobs', { packetUuid: packet.uuid, target: { deviceUuids } });
    // Past the body limit: the UUIDs name no device of this account, which the job reports, not a 413.
    expect(res.status, JSON.stringify(res.json).slice(0, 300)).not.toBe(413);
    expect(res.status).toBeLessThan(500);
  });

  it('names its devices by UUID: a repeated one counts once, an unknown one is refused by name and creates nothing', async () => {
    const w = await open();
    const packet = await w.packet();
    const [a, b, c] = w.fakeDevices(3).map((d) => d.uuid);
    const unknown = randomUUID();
    const bad = await w.api('POST', '/api/jobs', { packetUuid: packet.uuid, target: { deviceUuids: [a, unknown, b] } });
    expect(bad.status).toBe(400);
    expect(bad.json).toMatchObject({ code: 'SERVER_VALIDATION', message: `Unknown device ${unknown}.` });
    expect((await w.api('GET', '/api/jobs')).json.items).toHaveLength(0);
    const job = await createJob(w, { packetUuid: packet.uuid, target: { deviceUuids: [c, a, c, b, a] } });
    const view = (await w.api('GET', `/api/jobs/${job.uuid}`)).json;
    expect(view.target.deviceCount).toBe(3);
    expect(view.progress.devices.total).toBe(3);
    const listed = (await w.api('GET', `/api/jobs/${job.uuid}/target/devices`)).json;
    expect(listed.items.map((d: { deviceUuid: string }) => d.deviceUuid)).toEqual([c, a, b]);
  });

  it('refuses a device of another account by name, as an unknown one, and creates nothing', async () => {
    const w = await open();
    const packet = await w.packet();
    const [own] = w.fakeDevices(1).map((d) => d.uuid);
    const other = await w.newTenant('Other');
    w.licences(other, 'basic-25', 1);
    const [foreign] = w.devices(other, 1, 'OTHER').map((d) => d.uuid);
    const bad = await w.api('POST', '/api/jobs', { packetUuid: packet.uuid, target: { deviceUuids: [own, foreign] } });
    expect(bad.status).toBe(400);
    expect(bad.json).toMatchObject({ code: 'SERVER_VALIDATION', message: `Unknown device ${foreign}.` });
    expect((await w.api('GET', '/api/jobs')).json.items).toHaveLength(0);
  });

  it('offers a job to more connected devices than one claim transaction takes, each exactly once', async () => {
    const n = 2 * CLAIMS_PER_TRANSACTION + 37;
    const w = await open({ licences: Math.ceil(n / 25) });
    const packet = await w.packet();
    const devices = w.fakeDevices(n);
    await connectAll(w, devices);
    const job = await createJob(w, { packetUuid: packet.uuid, target: { all: true } });
    await waitFor(() => devices.every((d) => d.offers().length > 0), { timeout: 20_000, what: 'every device offered' });
    await w.quiet(devices);
    expect(devices.map((d) => d.offers().length)).toEqual(devices.map(() => 1));
    expect(new Set(devices.map((d) => d.offers()[0]!.body.executionId)).size).toBe(devices.length);
    // Each batch's offers are recorded (in the transaction that claims the next batch, the last one
    // on its own): none is left queued, which a cancel would end without telling the device.
    const view = await jobWhen(w, job.uuid, () => true, 'the job');
    expect(view.progress.inFlight).toEqual({ offered: n });
    // Connecting over a thousand devices one by one takes most of the default 30 s on a loaded machine.
  }, 120_000);

  it('never has more than maxConcurrent executions in flight', async () => {
    const w = await open();
    const packet = await w.packet();
    const devices = w.fakeDevices(7);
    await connectAll(w, devices);
    await createJob(w, { packetUuid: packet.uuid, target: { all: true }, options: { rollout: { maxConcurrent: 2 } } });
    let inFlight = 0;
    let maxSeen = 0;
    let finished = 0;
    const offered = new Set<string>();
    while (finished < devices.length) {
      await waitFor(() => devices.some((d) => d.offers().some((o) => !offered.has(o.body.executionId))), { timeout: 5000, what: 'an offer' });
      await w.quiet(devices);
      const fresh = devices.flatMap((d) =>
        d.offers().filter((o) => !offered.has(o.body.executionId)).map((o) => ({ d, o })),
      );
      for (const { o } of fresh) offered.add(o.body.executionId);
      inFlight += fresh.length;
      maxSeen = Math.max(maxSeen, inFlight);
      // Finish one, then see what the dispatcher sends next.
      const { d, o } = fresh[0]!;
      d.report(o.body.executionId, 'succeeded');
      inFlight--;
      finished++;
      for (const rest of fresh.slice(1)) {
        rest.d.report(rest.o.body.executionId, 'succeeded');
        inFlight--;
        finished++;
      }
    }
    expect(maxSeen).toBeLessThanOrEqual(2);
    expect(maxSeen).toBe(2);
    expect(offered.size).toBe(7);
  });

  it('starts no more than maxPerMinute new executions per minute of the test clock', async () => {
    const w = await open();
    const packet = await w.packet();
    const devices = w.fakeDevices(5);
    await connectAll(w, devices);
    await createJob(w, { packetUuid: packet.uuid, target: { all: true }, options: { rollout: { maxPerMinute: 2 } } });
    const count = () => devices.reduce((n, d) => n + d.offers().length, 0);
    await waitFor(() => count() === 2, { timeout: 5000, what: '2 offers' });
    // Finishing them frees nothing: the limit is on starts per minute.
    for (const d of devices) for (const o of d.offers()) await finish(d, o.body.executionId, 'succeeded');
    await w.quiet(devices);
    expect(count()).toBe(2);
    w.advance(30_000);
    await w.quiet(devices);
    expect(count()).toBe(2);
    w.advance(31_000);
    await waitFor(() => count() === 4, { timeout: 5000, what: '4 offers' });
    await w.quiet(devices);
    expect(count()).toBe(4);
    w.advance(MINUTE + 1);
    await waitFor(() => count() === 5, { timeout: 5000, what: '5 offers' });
  });

  it('rolls out in waves: the next wave waits until the earlier one has results', async () => {
    const w = await open();
    const packet = await w.packet();
    const devices = w.fakeDevices(10);
    await connectAll(w, devices);
    await createJob(w, { packetUuid: packet.uuid, target: { all: true }, options: { rollout: { waves: [20, 100] } } });
    const offers = () => devices.flatMap((d) => d.offers().map((o) => ({ d, o })));
    await waitFor(() => offers().length === 2, { timeout: 5000, what: 'wave 1' });
    await w.quiet(devices);
    expect(offers()).toHaveLength(2);
    await finish(offers()[0]!.d, offers()[0]!.o.body.executionId, 'succeeded');
    await w.quiet(devices);
    expect(offers()).toHaveLength(2);
    offers()[1]!.d.report(offers()[1]!.o.body.executionId, 'succeeded');
    await waitFor(() => offers().length === 10, { timeout: 5000, what: 'wave 2' });
  });

  it('aborts when failures exceed the percentage AND the minimum count: no new executions', async () => {
    const w = await open();
    const packet = await w.packet();
    const devices = w.fakeDevices(8);
    await connectAll(w, devices);
    const job = await createJob(w, {
      packetUuid: packet.uuid,
      target: { all: true },
      options: { rollout: { maxConcurrent: 2 }, abort: { failurePercent: 50, minFailures: 2 } },
    });
    const offers = () => devices.flatMap((d) => d.offers().map((o) => ({ d, o })));
    await waitFor(() => offers().length === 2, { timeout: 5000, what: 'first two' });
    // One failure: 100 % but below the minimum count → goes on.
    offers()[0]!.d.report(offers()[0]!.o.body.executionId, 'failed', { errorCode: 'AGENT_INSTALL_FAILED' });
    await waitFor(() => offers().length === 3, { timeout: 5000, what: 'third offer' });
    offers()[1]!.d.report(offers()[1]!.o.body.executionId, 'failed', { errorCode: 'AGENT_INSTALL_FAILED' });
    await jobWhen(w, job.uuid, (j) => j.state === 'aborted', 'the job aborted');
    await finish(offers()[2]!.d, offers()[2]!.o.body.executionId, 'succeeded');
    w.advance(MINUTE);
    await w.quiet(devices);
    expect(offers()).toHaveLength(3);
    const view = (await w.api('GET', `/api/jobs/${job.uuid}`)).json;
    expect(view.abortReason).toMatch(/2 of 2 devices failed/);
    const results = (await w.api('GET', `/api/jobs/${job.uuid}/devices`)).json.items;
    expect(results.filter((r: { errorCode: string }) => r.errorCode === 'AGENT_INSTALL_FAILED')).toHaveLength(2);
    const events = (await w.api('GET', '/api/dashboard/events')).json.items.map((e: { type: string }) => e.type);
    expect(events).toContain('job.aborted');
  });

  it('times an execution out at its deadline; a retry is a new execution attempt', async () => {
    const w = await open();
    const packet = await w.packet();
    const [d] = w.fakeDevices(1);
    await d!.connect(w.channel.port);
    const job = await createJob(w, {
      packetUuid: packet.uuid,
      target: { all: true },
      options: { timeoutSec: 60, retries: { max: 1 } },
    });
    const first = (await d!.next(isOffer)) as MessageOf<'job-offer'>;
    expect(first.body.deadline).toBe(T0 + 60_000);
    d!.report(first.body.executionId, 'downloading');
    w.advance(61_000);
    const second = (await d!.next(isOffer)) as MessageOf<'job-offer'>;
    expect(second.body.executionId).not.toBe(first.body.executionId);
    // A late result of the timed-out execution is acked and revises that execution; the device's
    // result in the job stays with its latest execution (the retry).
    d!.report(first.body.executionId, 'failed');
    w.advance(61_000);
    const view = await jobWhen(w, job.uuid, (j) => j.state === 'finished', 'the job finished');
    expect(view.state).toBe('finished');
    expect(view.progress.results['timed-out']).toBe(1);
    const rows = (await w.api('GET', `/api/jobs/${job.uuid}/devices`)).json.items;
    expect(rows[0]).toMatchObject({ attempts: 2, result: 'timed-out', errorCode: 'SERVER_EXECUTION_TIMEOUT' });
  });

  it('cancel: before the commit point the device aborts; after it the device finishes and reports', async () => {
    const w = await open();
    const packet = await w.packet();
    const [early, late] = w.fakeDevices(2);
    await connectAll(w, [early!, late!]);
    const job = await createJob(w, { packetUuid: packet.uuid, target: { all: true } });
    const eo = (await early!.next(isOffer)) as MessageOf<'job-offer'>;
    const lo = (await late!.next(isOffer)) as MessageOf<'job-offer'>;
    early!.report(eo.body.executionId, 'downloading');
    late!.report(lo.body.executionId, 'downloaded');
    late!.report(lo.body.executionId, 'installing');
    const states = async () => (await w.api('GET', `/api/jobs/${job.uuid}/devices`)).json.items.map((r: { deviceUuid: string; state: string }) => `${r.deviceUuid}:${r.state}`);
    await waitFor(async () => {
      const s = await states();
      return s.includes(`${early!.uuid}:downloading`) && s.includes(`${late!.uuid}:installing`);
    }, { what: 'both reports stored' });
    const cancelled = await w.api('POST', `/api/jobs/${job.uuid}/cancel`);
    expect(cancelled.json.state).toBe('cancelled');
    const cancel = (await early!.next((m) => m.type === 'job-cancel')) as MessageOf<'job-cancel'>;
    expect(cancel.body.executionId).toBe(eo.body.executionId);
    await finish(early!, eo.body.executionId, 'cancelled');
    await w.quiet([late!]);
    expect(late!.cancels()).toHaveLength(0); // past the commit point: nothing to cancel on the device
    await finish(late!, lo.body.executionId, 'succeeded');
    const rows = (await w.api('GET', `/api/jobs/${job.uuid}/devices`)).json.items;
    const byDevice = Object.fromEntries(rows.map((r: { deviceUuid: string }) => [r.deviceUuid, r]));
    expect(byDevice[early!.uuid]).toMatchObject({ result: 'cancelled', cancelRequested: true });
    expect(byDevice[late!.uuid]).toMatchObject({ result: 'succeeded', cancelRequested: true });
    expect((await w.api('POST', `/api/jobs/${job.uuid}/cancel`)).json.code).toBe('SERVER_JOB_STATE');
  });

  it('honours a weekly maintenance window: download at once, install window in the offer', async () => {
    const w = await open();
    const packet = await w.packet();
    const [d] = w.fakeDevices(1);
    await d!.connect(w.channel.port);
    // T0 is Thursday 2026-01-01 00:00 UTC; the window is Saturdays 02:00–04:00 UTC.
    await createJob(w, {
      packetUuid: packet.uuid,
      target: { all: true },
      options: { timeoutSec: 3600, window: { days: ['sat'], startTime: '02:00', endTime: '04:00', timeZone: 'UTC' } },
    });
    const offer = (await d!.next(isOffer)) as MessageOf<'job-offer'>;
    const sat = T0 + 2 * DAY;
    expect(offer.body.installWindow).toEqual({ notBefore: sat + 2 * 3_600_000, notAfter: sat + 4 * 3_600_000 });
    expect(offer.body.deadline).toBe(sat + 4 * 3_600_000);
    d!.report(offer.body.executionId, 'downloading');
    d!.report(offer.body.executionId, 'downloaded');
    // The device waits for the window; moving the clock into it, it installs (the execution must not time out before).
    w.advance(2 * DAY + 2 * 3_600_000 + 60_000);
    d!.report(offer.body.executionId, 'installing');
    d!.report(offer.body.executionId, 'succeeded');
    await d!.next((m) => m.type === 'ack');
  });

  it('an offline device gets its job when it comes back; offers are re-sent after a reconnect', async () => {
    const w = await open();
    const packet = await w.packet();
    const [d] = w.fakeDevices(1);
    await createJob(w, { packetUuid: packet.uuid, target: { all: true } });
    // Paces the scenario only (nothing is asserted absent): the device comes back a moment after the job started.
    await new Promise((r) => setTimeout(r, 50));
    await d!.connect(w.channel.port);
    const offer = (await d!.next(isOffer)) as MessageOf<'job-offer'>;
    await d!.disconnect();
    await d!.connect(w.channel.port);
    const again = (await d!.next(isOffer)) as MessageOf<'job-offer'>;
    expect(again.body.executionId).toBe(offer.body.executionId);
  });

  it('ignores and counts duplicate and stale progress; every terminal report is acked', async () => {
    const w = await open();
    const packet = await w.packet();
    const [d] = w.fakeDevices(1);
    await d!.connect(w.channel.port);
    const job = await createJob(w, { packetUuid: packet.uuid, target: { all: true } });
    const offer = (await d!.next(isOffer)) as MessageOf<'job-offer'>;
    const x = offer.body.executionId;
    d!.report(x, 'downloaded');
    d!.report(x, 'downloading'); // backwards: stale, ignored
    d!.report(x, 'verifying'); // skips installing: reachable, the server missed it
    d!.report(x, 'installing'); // behind verifying: stale, ignored
    const a = d!.report(x, 'failed', { errorCode: 'AGENT_HASH_MISMATCH' });
    const b = d!.report(x, 'failed', { errorCode: 'AGENT_HASH_MISMATCH' }); // duplicate after a reconnect
    await waitFor(() => d!.acks().length === 2, { timeout: 5000, what: 'two acks' });
    expect(d!.acks().map((m) => m.correlationId)).toEqual([a.id, b.id]);
    expect(w.services.jobs.ignored).toMatchObject({ duplicate: 1, illegal: 2 });
    const view = (await w.api('GET', `/api/jobs/${job.uuid}`)).json;
    expect(view.progress.ignoredProgress).toBe(2);
    expect(view.progress.results.failed).toBe(1);
  });

  it('never dispatches to unmanaged devices and reports them as skipped', async () => {
    // Two seats while both connect; then the first licence ends and the device that connected
    // last becomes unmanaged (floating admission).
    const w = await open({ plan: 'basic-1' });
    w.licences(w.tenant, 'basic-1', 1, T0 + DAY);
    const packet = await w.packet();
    const [managed, unmanaged] = w.fakeDevices(2);
    w.advance(DAY + 1000);
    expect((await managed!.connect(w.channel.port)).body.admission).toBe('managed');
    expect((await unmanaged!.connect(w.channel.port)).body.admission).toBe('managed');
    w.advance(364 * DAY + DAY / 2); // the first licence (12 months from T0) has ended, the second not
    await waitFor(() => w.tenant.scope.devices.byUuid(unmanaged!.uuid)?.admission === 'unmanaged', { timeout: 5000, what: 'unmanaged' });
    await w.relogin();
    const job = await createJob(w, { packetUuid: packet.uuid, target: { all: true } });
    await managed!.next(isOffer);
    w.advance(MINUTE);
    await w.quiet([managed!, unmanaged!]);
    expect(unmanaged!.offers()).toHaveLength(0);
    const view = (await w.api('GET', `/api/jobs/${job.uuid}`)).json;
    expect(view.progress.devices).toMatchObject({ total: 2, skipped: 1 });
    const rows = (await w.api('GET', `/api/jobs/${job.uuid}/devices`)).json.items;
    expect(rows.find((r: { deviceUuid: string }) => r.deviceUuid === unmanaged!.uuid).status).toBe('skipped');
  });

  it('includes devices that join a targeted group while a dynamic job runs; pause and resume', async () => {
    const w = await open();
    const packet = await w.packet();
    const group = (await w.api('POST', '/api/inventory/device-groups', { name: 'late' })).json;
    const [first] = w.fakeDevices(1, { groupUuid: group.uuid });
    const [joiner] = w.fakeDevices(1);
    await connectAll(w, [first!, joiner!]);
    const job = await createJob(w, { packetUuid: packet.uuid, target: { groupUuids: [group.uuid] }, options: { dynamic: true } });
    await first!.next(isOffer);
    expect((await w.api('POST', `/api/jobs/${job.uuid}/pause`)).json.state).toBe('paused');
    // The list filters by the lifecycle's states, and refuses a state the lifecycle does not have.
    const listed = async (state: string) => (await w.api('GET', `/api/jobs?state=${state}`)).json.items.map((j: { uuid: string }) => j.uuid);
    expect(await listed('paused')).toEqual([job.uuid]);
    expect(await listed('running')).toEqual([]);
    expect((await w.api('GET', '/api/jobs?state=sleeping')).json.code).toBe('SERVER_VALIDATION');
    await w.api('POST', `/api/inventory/device-groups/${group.uuid}/devices`, { deviceUuids: [joiner!.uuid] });
    w.advance(1000);
    await w.quiet([first!, joiner!]);
    expect(joiner!.offers()).toHaveLength(0);
    expect((await w.api('POST', `/api/jobs/${job.uuid}/resume`)).json.state).toBe('running');
    w.advance(1000);
    await joiner!.next(isOffer);
  });

  it('refuses to delete a packet an active job uses (stable code)', async () => {
    const w = await open();
    const packet = await w.packet();
    w.fakeDevices(1);
    await createJob(w, { packetUuid: packet.uuid, target: { all: true } });
    const del = await w.api('DELETE', `/api/packets/${packet.uuid}`);
    expect(del.status).toBe(409);
    expect(del.json.code).toBe('SERVER_PACKET_IN_USE');
  });
});
