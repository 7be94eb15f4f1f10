import type { MessageOf } from '@router-fleet/protocol';
import { describe, expect, it } from 'vitest';
import { waitFor } from '../../protocol/test/helpers/wait-for.js';
import { createJob, type JobsWorld, jobsWorlds } from './helpers/jobs-world.js';

const open = jobsWorlds();

const WAIT = 20_000;
const isOffer = (m: { type: string }) => m.type === 'job-offer';

/** Polls the job resource until `check` holds (results cross a socket and a group commit). */
async function jobWhen(w: JobsWorld, uuid: string, check: (job: { state: string; progress: Progress }) => boolean) {
  let last: { state: string; progress: Progress } | undefined;
  return waitFor(async () => {
    last = (await w.api('GET', `/api/jobs/${uuid}`)).json as { state: string; progress: Progress };
    return check(last) && last;
  }, { timeout: WAIT, what: () => `job ${uuid} to match: ${JSON.stringify(last)}` });
}

interface Progress {
  devices: { total: number; pending: number; skipped: number; active: number; done: number };
  results: Record<string, number>;
  inFlight: Record<string, number>;
  ignoredProgress: number;
}

/** The counts recounted from the rows, to compare with the ones the triggers keep. */
function recount(w: JobsWorld, uuid: string) {
  const db = w.services.store;
  const jobId = (db.stmt('SELECT id FROM jobs WHERE uuid = ?').get(uuid) as { id: number }).id;
  const devices = db
    .stmt(
      `SELECT COUNT(*) AS total,
         COUNT(CASE WHEN jd.status = 'pending' AND COALESCE(d.admission, '') != 'unmanaged' THEN 1 END) AS pending,
         COUNT(CASE WHEN jd.status = 'pending' AND d.admission = 'unmanaged' THEN 1 END) AS skipped,
         COUNT(CASE WHEN jd.status = 'active' THEN 1 END) AS active,
         COUNT(CASE WHEN jd.status = 'done' THEN 1 END) AS done
       FROM job_devices jd JOIN devices d ON d.id = jd.device_id WHERE jd.job_id = ?`,
    )
    .get(jobId);
  const results: Record<string, number> = { succeeded: 0, failed: 0, rejected: 0, cancelled: 0, 'timed-out': 0 };
  for (const r of db
    .stmt(`SELECT result, COUNT(*) AS n FROM job_devices WHERE job_id = ? AND status = 'done' GROUP BY result`)
    .all(jobId) as Array<{ result: string; n: number }>) {
    results[r.result] = r.n;
  }
  const inFlight: Record<string, number> = {};
  for (const r of db
    .stmt('SELECT state, COUNT(*) AS n FROM job_executions WHERE job_id = ? AND finished_at IS NULL GROUP BY state')
    .all(jobId) as Array<{ state: string; n: number }>) {
    inFlight[r.state] = r.n;
  }
  const ignored = (db.stmt('SELECT COALESCE(SUM(ignored_progress), 0) AS n FROM job_executions WHERE job_id = ?').get(jobId) as { n: number }).n;
  return { devices, results, inFlight, ignoredProgress: ignored };
}

describe('device results reach the job whatever the server missed', () => {
  it('accepts a state reachable through states the server never heard, and records the result once', async () => {
    const w = await open();
    const packet = await w.packet();
    const [d] = w.fakeDevices(1);
    await d!.connect(w.channel.port);
    const job = await createJob(w, { packetUuid: packet.uuid, target: { all: true } });
    const offer = (await d!.next(isOffer, WAIT)) as MessageOf<'job-offer'>;
    const x = offer.body.executionId;
    d!.report(x, 'downloading', { percent: 24 });
    // The server lost downloaded / installing (it died); the device goes on from where it is.
    d!.report(x, 'rebooting');
    const a = d!.report(x, 'succeeded');
    const b = d!.report(x, 'succeeded'); // repeated until acked: counted once
    await waitFor(() => d!.acks().length === 2, { timeout: WAIT, what: 'both terminal reports acked' });
    expect(d!.acks().map((m) => m.correlationId)).toEqual([a.id, b.id]);
    const done = await jobWhen(w, job.uuid, (j) => j.state === 'finished');
    expect(done.progress.results).toMatchObject({ succeeded: 1, 'timed-out': 0 });
    expect(done.progress.ignoredProgress).toBe(0);
    expect(w.services.jobs.ignored).toMatchObject({ duplicate: 1, illegal: 0 });
    expect(done.progress).toEqual(expect.objectContaining(recount(w, job.uuid)));
  });

  it('a device result revises the server\'s timeout (the device finished; what decided it is kept)', async () => {
    const w = await open();
    const packet = await w.packet();
    const [d] = w.fakeDevices(1);
    await d!.connect(w.channel.port);
    const job = await createJob(w, { packetUuid: packet.uuid, target: { all: true }, options: { timeoutSec: 60 } });
    const offer = (await d!.next(isOffer, WAIT)) as MessageOf<'job-offer'>;
    const x = offer.body.executionId;
    d!.report(x, 'downloading', { percent: 24 });
    await waitFor(
      () => w.services.store.stmt('SELECT state FROM job_executions WHERE uuid = ?').get(x) as { state: string } | undefined,
      { timeout: WAIT },
    );
    await jobWhen(w, job.uuid, (j) => j.progress.inFlight['downloading'] === 1);
    w.advance(61_000);
    const timedOut = await jobWhen(w, job.uuid, (j) => j.state === 'finished');
    expect(timedOut.progress.results).toMatchObject({ 'timed-out': 1, succeeded: 0 });
    const source = () =>
      w.services.store.stmt('SELECT state, result_source FROM job_executions WHERE uuid = ?').get(x) as { state: string; result_source: string };
    expect(source()).toEqual({ state: 'timed-out', result_source: 'server' });

    // Still running on the device: the server keeps its decision until the result comes.
    d!.report(x, 'installing');
    const result = d!.report(x, 'succeeded');
    await waitFor(() => d!.acks().some((m) => m.correlationId === result.id), { timeout: WAIT, what: 'the result acked' });
    const revised = await jobWhen(w, job.uuid, (j) => j.progress.results['succeeded'] === 1);
    expect(revised.progress.results).toMatchObject({ 'timed-out': 0, succeeded: 1 });
    expect(revised.progress.devices).toMatchObject({ total: 1, done: 1 });
    expect(source()).toEqual({ state: 'succeeded', result_source: 'device' });
    const rows = (await w.api('GET', `/api/jobs/${job.uuid}/devices`)).json.items;
    expect(rows[0]).toMatchObject({ result: 'succeeded', state: 'succeeded' });
    const events = (await w.api('GET', '/api/dashboard/events')).json.items as Array<{ type: string; data: unknown }>;
    expect(events.find((e) => e.type === 'job.execution-revised')?.data).toEqual({
      executionId: x,
      serverResult: 'timed-out',
      deviceResult: 'succeeded',
    });

    // Exactly once: a repeat of the device's result changes nothing (and is acked again).
    const again = d!.report(x, 'failed');
    await waitFor(() => d!.acks().some((m) => m.correlationId === again.id), { timeout: WAIT, what: 'the repeat acked' });
    expect(source()).toEqual({ state: 'succeeded', result_source: 'device' });
    const final = (await w.api('GET', `/api/jobs/${job.uuid}`)).json as { progress: Progress };
    expect(final.progress.results).toMatchObject({ succeeded: 1, failed: 0, 'timed-out': 0 });
    expect(final.progress).toEqual(expect.objectContaining(recount(w, job.uuid)));
  });

  it('re-offers an execution that was claimed but never recorded as offered when its device is ready', async () => {
    const w = await open();
    const packet = await w.packet();
    const [d] = w.fakeDevices(1);
    await d!.connect(w.channel.port);
    await createJob(w, { packetUuid: packet.uuid, target: { all: true } });
    const offer = (await d!.next(isOffer, WAIT)) as MessageOf<'job-offer'>;
    const x = offer.body.executionId;
    await d!.disconnect();
    // What a process that died between its claim and recording the offer leaves behind.
    w.services.store.stmt(`UPDATE job_executions SET state = 'queued', offered_at = NULL WHERE uuid = ?`).run(x);
    await d!.connect(w.channel.port);
    const again = (await d!.next(isOffer, WAIT)) as MessageOf<'job-offer'>;
    expect(again.body.executionId).toBe(x);
    await waitFor(
      () => (w.services.store.stmt('SELECT state FROM job_executions WHERE uuid = ?').get(x) as { state: string }).state === 'offered',
      { timeout: WAIT, what: 'recorded as offered' },
    );
  });

  it('a claim whose offer was never recorded and whose device stays away is claimed anew; a result for it is still recorded', async () => {
    const w = await open();
    const packet = await w.packet();
    const [d] = w.fakeDevices(1);
    await d!.connect(w.channel.port);
    const job = await createJob(w, { packetUuid: packet.uuid, target: { all: true } });
    const offer = (await d!.next(isOffer, WAIT)) as MessageOf<'job-offer'>;
    const x = offer.body.executionId;
    await d!.disconnect();
    // The offer went out, but the process that sent it died before recording it; the device stays away.
    const db = w.services.store;
    db.stmt(`UPDATE job_executions SET state = 'queued', offered_at = NULL WHERE uuid = ?`).run(x);
    w.advance(61_000);
    const row = () => db.stmt('SELECT state, result_source, error_code FROM job_executions WHERE uuid = ?').get(x);
    await waitFor(() => (row() as { state: string }).state !== 'queued', { timeout: WAIT, what: 'the orphan handled' });
    expect(row()).toEqual({ state: 'cancelled', result_source: 'server', error_code: 'SERVER_OFFER_UNCONFIRMED' });
    // Back: a new execution is offered; the device also reports what it did with the first one.
    await d!.connect(w.channel.port);
    const next = (await d!.next((m) => m.type === 'job-offer' && (m as MessageOf<'job-offer'>).body.executionId !== x, WAIT)) as MessageOf<'job-offer'>;
    const late = d!.report(x, 'succeeded');
    await waitFor(() => d!.acks().some((m) => m.correlationId === late.id), { timeout: WAIT, what: 'the result for the first offer acked' });
    expect(row()).toMatchObject({ state: 'succeeded', result_source: 'device' });
    d!.report(next.body.executionId, 'succeeded');
    const done = await jobWhen(w, job.uuid, (j) => j.state === 'finished');
    expect(done.progress.results).toMatchObject({ succeeded: 1, cancelled: 0 });
    expect(done.progress).toEqual(expect.objectContaining(recount(w, job.uuid)));
  });

  it('keeps the job counts equal to a recount through claims, progress, skipped devices, deletion and cancel', async () => {
    const w = await open({ licences: 1 });
    const packet = await w.packet();
    const devices = w.fakeDevices(4);
    await devices[0]!.connect(w.channel.port);
    await devices[1]!.connect(w.channel.port);
    const job = await createJob(w, { packetUuid: packet.uuid, target: { all: true } });
    const o0 = (await devices[0]!.next(isOffer, WAIT)) as MessageOf<'job-offer'>;
    await devices[1]!.next(isOffer, WAIT);
    devices[0]!.report(o0.body.executionId, 'downloading');
    devices[0]!.report(o0.body.executionId, 'installing');
    devices[0]!.report(o0.body.executionId, 'downloading'); // stale: ignored and counted
    await jobWhen(w, job.uuid, (j) => j.progress.ignoredProgress === 1);
    const db = w.services.store;
    // Admission changes move pending devices in and out of `skipped`; a deleted device leaves the job.
    db.stmt(`UPDATE devices SET admission = 'unmanaged' WHERE uuid = ?`).run(devices[2]!.uuid);
    db.stmt(`UPDATE devices SET admission = 'unmanaged' WHERE uuid = ?`).run(devices[3]!.uuid);
    db.stmt(`UPDATE devices SET admission = 'managed' WHERE uuid = ?`).run(devices[3]!.uuid);
    const mid = (await w.api('GET', `/api/jobs/${job.uuid}`)).json as { progress: Progress };
    expect(mid.progress.devices).toMatchObject({ total: 4, active: 2, skipped: 1, pending: 1 });
    expect(mid.progress.inFlight).toEqual({ installing: 1, offered: 1 });
    expect(mid.progress).toEqual(expect.objectContaining(recount(w, job.uuid)));
    expect((await w.api('DELETE', `/api/inventory/managed-devices/${devices[2]!.uuid}`)).status).toBeLessThan(300);
    await w.api('POST', `/api/jobs/${job.uuid}/cancel`);
    const end = (await w.api('GET', `/api/jobs/${job.uuid}`)).json as { progress: Progress };
    expect(end.progress.devices.total).toBe(3);
    expect(end.progress).toEqual(expect.objectContaining(recount(w, job.uuid)));
  });
});

describe('the job resource', () => {
  it('is a summary: counts and the target without its device list, which is paged apart', async () => {
    const w = await open();
    const packet = await w.packet();
    const devices = w.fakeDevices(5);
    const uuids = devices.map((d) => d.uuid);
    const job = await createJob(w, { packetUuid: packet.uuid, target: { deviceUuids: uuids } });
    const view = (await w.api('GET', `/api/jobs/${job.uuid}`)).json;
    expect(view.target).toEqual({ all: false, groupUuids: [], deviceCount: 5 });
    expect(view.progress.devices).toMatchObject({ total: 5, pending: 5 });
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const page = (await w.api('GET', `/api/jobs/${job.uuid}/target/devices?limit=2${cursor ? `&cursor=${cursor}` : ''}`)).json as {
        items: Array<{ deviceUuid: string }>;
        nextCursor: string | null;
      };
      seen.push(...page.items.map((i) => i.deviceUuid));
      cursor = page.nextCursor;
      pages++;
    } while (cursor);
    expect(seen).toEqual(uuids);
    expect(pages).toBe(3);
    const bad = await w.api('GET', `/api/jobs/${job.uuid}/target/devices?cursor=nonsense`);
    expect(bad.status).toBe(400);
    expect(bad.json.code).toBe('SERVER_INVALID_CURSOR');
  });
});
