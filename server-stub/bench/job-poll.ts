/**
 * What one poll of a large job costs the store: a job naming N devices one by one (90 % done, 10 %
 * downloading), read the way `GET /api/jobs/{uuid}` reads it now (the job's head columns and its
 * `job_counts` rows) next to what it did before migration 28 (the whole row with the target JSON,
 * and a recount of every device and execution of the job), with the size of the target each returns.
 *
 *   npx tsx server-stub/bench/job-poll.ts [--devices 40000]
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { openDatabase } from '../src/store/database.js';
import { JOB_HEAD_COLUMNS } from '../src/store/jobs.js';

const { values } = parseArgs({ options: { devices: { type: 'string', default: '40000' } } });
const n = Number(values.devices);
const dir = mkdtempSync(join(tmpdir(), 'fleet-job-poll-'));
const db = openDatabase(dir);
try {
  db.exec(`INSERT INTO accounts (id, uuid, name, created_at) VALUES (1, 'a', 'A', 0)`);
  const uuids: string[] = [];
  const device = db.prepare(
    `INSERT INTO devices (id, uuid, account_id, serial_number, ping_interval, pong_timeout, session_timeout, credential_hash,
       credential_enc, admission, created_at, updated_at)
     VALUES (?, ?, 1, ?, 1, 1, 1, x'00', x'00', 'managed', 0, 0)`,
  );
  db.transaction(() => {
    for (let i = 1; i <= n; i++) {
      const uuid = randomUUID();
      uuids.push(uuid);
      device.run(i, uuid, `S${i}`);
    }
  })();
  const target = { all: false, deviceIds: uuids.map((_, i) => i + 1), groupIds: [], deviceUuids: uuids, groupUuids: [] };
  db.prepare(
    `INSERT INTO jobs (id, uuid, account_id, name, target, target_summary, options, state, created_at)
     VALUES (1, 'j', 1, 'J', ?, ?, '{}', 'running', 0)`,
  ).run(JSON.stringify(target), JSON.stringify({ all: false, groupUuids: [], deviceCount: n }));
  const jd = db.prepare(`INSERT INTO job_devices (job_id, device_id, status, result, added_at) VALUES (1, ?, ?, ?, 0)`);
  const ex = db.prepare(
    `INSERT INTO job_executions (uuid, job_id, device_id, attempt, state, claimed_at, updated_at, finished_at, deadline)
     VALUES (?, 1, ?, 1, ?, 0, 0, ?, 9)`,
  );
  db.transaction(() => {
    for (let i = 1; i <= n; i++) {
      const done = i <= n * 0.9;
      jd.run(i, done ? 'done' : 'active', done ? 'succeeded' : null);
      ex.run(randomUUID(), i, done ? 'succeeded' : 'downloading', done ? 5 : null);
    }
  })();

  const time = (fn: () => number, reps = 20): { ms: number; bytes: number } => {
    fn();
    const start = process.hrtime.bigint();
    let bytes = 0;
    for (let k = 0; k < reps; k++) bytes = fn();
    return { ms: Number(process.hrtime.bigint() - start) / 1e6 / reps, bytes };
  };
  const before = time(() => {
    const row = db.prepare('SELECT * FROM jobs WHERE id = 1').get() as { target: string };
    const t = JSON.parse(row.target) as { all: boolean; deviceUuids: string[]; groupUuids: string[] };
    db.prepare(
      `SELECT COUNT(*) AS total, COALESCE(SUM(jd.status = 'pending' AND COALESCE(d.admission, '') != 'unmanaged'), 0) AS pending,
         COALESCE(SUM(jd.status = 'pending' AND d.admission = 'unmanaged'), 0) AS skipped,
         COALESCE(SUM(jd.status = 'active'), 0) AS active, COALESCE(SUM(jd.status = 'done'), 0) AS done
       FROM job_devices jd JOIN devices d ON d.id = jd.device_id WHERE jd.job_id = 1`,
    ).get();
    db.prepare(`SELECT result, COUNT(*) AS n FROM job_devices WHERE job_id = 1 AND status = 'done' GROUP BY result`).all();
    db.prepare('SELECT state, COUNT(*) AS n FROM job_executions WHERE job_id = 1 AND finished_at IS NULL GROUP BY state').all();
    db.prepare('SELECT COALESCE(SUM(ignored_progress), 0) AS n FROM job_executions WHERE job_id = 1').get();
    return JSON.stringify({ all: t.all, deviceUuids: t.deviceUuids, groupUuids: t.groupUuids }).length;
  });
  const now = time(() => {
    const row = db.prepare(`SELECT ${JOB_HEAD_COLUMNS} FROM jobs WHERE id = 1`).get() as { target_summary: string };
    db.prepare('SELECT bucket, n FROM job_counts WHERE job_id = 1').all();
    return row.target_summary.length;
  });
  console.log(`job naming ${n} devices, one poll:`);
  console.log(`  before migration 28 (row with target + recount): ${before.ms.toFixed(2)} ms, target ${before.bytes} bytes`);
  console.log(`  now (head + job_counts):                         ${now.ms.toFixed(3)} ms, target ${now.bytes} bytes`);
} finally {
  db.close();
  rmSync(dir, { recursive: true, force: true });
}
