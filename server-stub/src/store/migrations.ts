import type { Database } from 'better-sqlite3';
import { AppError } from '../errors.js';

/**
 * Forward-only, numbered migrations. A migration is never edited once released: changes go into a
 * new, higher number. All pending migrations run in one `BEGIN IMMEDIATE` transaction, so several
 * processes opening the same file at once apply each migration exactly once.
 */
export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

/** Trigger step of version 24: count the NEW lease in (+) or the OLD lease out (-). */
function countLease(sign: '+' | '-'): string {
  return sign === '+'
    ? `  INSERT INTO lease_counts (account_id, state, n) VALUES (NEW.account_id, NEW.state, 1)
    ON CONFLICT (account_id, state) DO UPDATE SET n = n + 1;`
    : '  UPDATE lease_counts SET n = n - 1 WHERE account_id = OLD.account_id AND state = OLD.state;';
}

/** Trigger step of version 25: a new random licence version for the account of the NEW or OLD row. */
function bumpLicenceVersion(row: 'NEW' | 'OLD'): string {
  return `  INSERT INTO licence_versions (account_id, version) VALUES (${row}.account_id, random() >> 11)
    ON CONFLICT (account_id) DO UPDATE SET version = excluded.version;`;
}

/** Trigger step of version 28: add `n` to the job's count `bucket` where `when` holds. */
function countJob(job: string, bucket: string, n: string, when = '1'): string {
  return `  INSERT INTO job_counts (job_id, bucket, n) SELECT ${job}, ${bucket}, ${n} WHERE ${when}
    ON CONFLICT (job_id, bucket) DO UPDATE SET n = n + excluded.n;`;
}

/**
 * Trigger step of version 28: take `n` out of the job's count `bucket` where `when` holds (an
 * UPDATE, never an insert: rows of a job being deleted are not brought back).
 */
function uncountJob(job: string, bucket: string, n: string, when = '1'): string {
  return `  UPDATE job_counts SET n = n - (${n}) WHERE job_id = ${job} AND bucket = ${bucket} AND ${when};`;
}

/** Whether device `id` is unmanaged now (its pending job devices count as skipped). */
const unmanaged = (id: string) => `(SELECT admission FROM devices WHERE id = ${id}) IS 'unmanaged'`;

/** Trigger steps of version 28: one job_devices row counted in (NEW) or out (OLD). */
function countJobDevice(row: 'NEW' | 'OLD'): string {
  const step = row === 'NEW' ? countJob : uncountJob;
  return [
    step(`${row}.job_id`, `'status:' || ${row}.status`, '1'),
    step(`${row}.job_id`, `'result:' || ${row}.result`, '1', `${row}.status = 'done' AND ${row}.result IS NOT NULL`),
    step(`${row}.job_id`, `'skipped'`, '1', `${row}.status = 'pending' AND ${unmanaged(`${row}.device_id`)}`),
  ].join('\n');
}

/** Trigger step of version 28: an unfinished execution counted in its state (NEW) or out (OLD). */
function countJobExecution(row: 'NEW' | 'OLD'): string {
  const step = row === 'NEW' ? countJob : uncountJob;
  return step(`${row}.job_id`, `'state:' || ${row}.state`, '1', `${row}.finished_at IS NULL`);
}

export const migrations: readonly Migration[] = [
  {
    version: 1,
    name: 'accounts, users, tokens, licences, devices, groups, leases, events',
    sql: `
CREATE TABLE accounts (
  id INTEGER PRIMARY KEY,
  uuid TEXT NOT NULL UNIQUE,
  name TEXT NOT NULL,
  settings TEXT NOT NULL DEFAULT '{}',
  created_at INTEGER NOT NULL
);
CREATE TABLE users (
  id INTEGER PRIMARY KEY,
  uuid TEXT NOT NULL UNIQUE,
  account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
  username TEXT NOT NULL UNIQUE COLLATE NOCASE,
  password_hash TEXT NOT NULL,
  role TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
  profile TEXT NOT NULL DEFAULT '{}',
  language TEXT NOT NULL DEFAULT 'en' CHECK (language IN ('en', 'de')),
  failed_logins INTEGER NOT NULL DEFAULT 0,
  locked_until INTEGER,
  created_at INTEGER NOT NULL
);
CREATE INDEX users_account ON users(account_id);
CREATE TABLE sessions (
  token_hash TEXT PRIMARY KEY,
  user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  expires_at INTEGER NOT NULL,
  created_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX sessions_user ON sessions(user_id);
CREATE TABLE api_tokens (
  id INTEGER PRIMARY KEY,
  uuid TEXT NOT NULL UNIQUE,
  account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
  user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  token_hash TEXT NOT NULL UNIQUE,
  created_at INTEGER NOT NULL,
  last_used_at INTEGER,
  revoked_at INTEGER
);
CREATE INDEX api_tokens_account ON api_tokens(account_id);
CREATE TABLE vendor_codes (
  code TEXT PRIMARY KEY,
  plan TEXT NOT NULL,
  issued_at INTEGER NOT NULL,
  redeemed_at INTEGER,
  redeemed_by INTEGER REFERENCES accounts(id) ON DELETE SET NULL
) WITHOUT ROWID;
CREATE TABLE licences (
  id INTEGER PRIMARY KEY,
  uuid TEXT NOT NULL UNIQUE,
  account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
  code TEXT NOT NULL UNIQUE REFERENCES vendor_codes(code),
  plan TEXT NOT NULL,
  seats INTEGER NOT NULL,
  issued_at INTEGER NOT NULL,
  redeemed_at INTEGER NOT NULL,
  activation_at INTEGER,
  expires_at INTEGER
);
CREATE INDEX licences_account ON licences(account_id);
CREATE TABLE device_groups (
  id INTEGER PRIMARY KEY,
  uuid TEXT NOT NULL UNIQUE,
  account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  description TEXT NOT NULL DEFAULT '',
  created_at INTEGER NOT NULL,
  UNIQUE (account_id, name)
);
CREATE TABLE devices (
  id INTEGER PRIMARY KEY,
  uuid TEXT NOT NULL UNIQUE,
  account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
  serial_number TEXT NOT NULL UNIQUE,
  name TEXT NOT NULL DEFAULT '',
  location TEXT NOT NULL DEFAULT '',
  group_id INTEGER REFERENCES device_groups(id) ON DELETE SET NULL,
  model TEXT,
  firmware TEXT,
  ping_interval INTEGER NOT NULL,
  pong_timeout INTEGER NOT NULL,
  session_timeout INTEGER NOT NULL,
  custom_fields TEXT NOT NULL DEFAULT '{}',
  credential_hash BLOB NOT NULL,
  credential_enc BLOB NOT NULL,
  admission TEXT CHECK (admission IN ('managed', 'unmanaged', 'rejected')),
  admission_reason TEXT,
  admission_at INTEGER,
  online INTEGER NOT NULL DEFAULT 0,
  connected_at INTEGER,
  last_seen_at INTEGER,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE INDEX devices_account ON devices(account_id, id);
CREATE INDEX devices_account_name ON devices(account_id, name, id);
CREATE INDEX devices_group ON devices(group_id);
CREATE TABLE leases (
  device_id INTEGER PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,
  account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
  state TEXT NOT NULL CHECK (state IN ('managed', 'unmanaged')),
  leased_at INTEGER NOT NULL,
  released_at INTEGER,
  grace_until INTEGER
);
CREATE INDEX leases_account_state ON leases(account_id, state, leased_at);
CREATE INDEX leases_grace ON leases(account_id, grace_until) WHERE grace_until IS NOT NULL;
CREATE TABLE account_events (
  id INTEGER PRIMARY KEY,
  account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
  type TEXT NOT NULL,
  subject TEXT,
  dedupe_key TEXT,
  data TEXT NOT NULL DEFAULT '{}',
  at INTEGER NOT NULL,
  UNIQUE (account_id, dedupe_key)
);
CREATE INDEX account_events_account ON account_events(account_id, id);
CREATE TABLE audit_log (
  id INTEGER PRIMARY KEY,
  account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
  user_uuid TEXT,
  action TEXT NOT NULL,
  status INTEGER NOT NULL,
  at INTEGER NOT NULL
);
CREATE INDEX audit_log_account ON audit_log(account_id, id);
CREATE TABLE configuration_templates (
  id INTEGER PRIMARY KEY,
  uuid TEXT NOT NULL UNIQUE,
  account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  body TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  UNIQUE (account_id, name)
);
CREATE TABLE certificates (
  id INTEGER PRIMARY KEY,
  uuid TEXT NOT NULL UNIQUE,
  account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  kind TEXT NOT NULL CHECK (kind IN ('certificate', 'ca')),
  pem TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  UNIQUE (account_id, name)
);
`,
  },
  {
    version: 2,
    name: 'device status reported over the control channel',
    sql: `
CREATE TABLE device_status (
  device_id INTEGER PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,
  hello TEXT,
  hello_at INTEGER,
  status TEXT,
  status_at INTEGER
);
`,
  },
  // ── packets and update jobs (versions 10+; 2–9 belong to the control channel) ──────────
  {
    version: 10,
    name: 'update packets, vendor firmware catalogue, update jobs and executions',
    sql: `
CREATE TABLE packets (
  id INTEGER PRIMARY KEY,
  uuid TEXT NOT NULL UNIQUE,
  account_id INTEGER REFERENCES accounts(id) ON DELETE CASCADE,
  origin TEXT NOT NULL CHECK (origin IN ('upload', 'build', 'vendor')),
  name TEXT NOT NULL,
  sha256 TEXT NOT NULL,
  size INTEGER NOT NULL,
  signed INTEGER NOT NULL,
  signer TEXT,
  manifest TEXT NOT NULL,
  model TEXT,
  version TEXT,
  created_at INTEGER NOT NULL
);
CREATE INDEX packets_account ON packets(account_id, id);
CREATE INDEX packets_sha256 ON packets(sha256);
CREATE UNIQUE INDEX packets_vendor_firmware ON packets(model, version) WHERE origin = 'vendor';
CREATE TABLE packet_policies (
  account_id INTEGER PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
  allow_unsigned INTEGER NOT NULL DEFAULT 0,
  trust_anchors TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE jobs (
  id INTEGER PRIMARY KEY,
  uuid TEXT NOT NULL UNIQUE,
  account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  packet_id INTEGER REFERENCES packets(id),
  firmware_version TEXT,
  target TEXT NOT NULL,
  options TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('running', 'paused', 'finished', 'cancelled', 'aborted')),
  created_by TEXT,
  system INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  finished_at INTEGER,
  abort_reason TEXT
);
CREATE INDEX jobs_account ON jobs(account_id, id);
CREATE INDEX jobs_state ON jobs(state, id);
CREATE INDEX jobs_packet ON jobs(packet_id, state);
CREATE TABLE job_devices (
  job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  device_id INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
  status TEXT NOT NULL CHECK (status IN ('pending', 'active', 'done')),
  result TEXT,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER NOT NULL DEFAULT 0,
  added_at INTEGER NOT NULL,
  PRIMARY KEY (job_id, device_id)
) WITHOUT ROWID;
CREATE INDEX job_devices_device ON job_devices(device_id, status);
CREATE INDEX job_devices_status ON job_devices(job_id, status, result);
CREATE TABLE job_executions (
  id INTEGER PRIMARY KEY,
  uuid TEXT NOT NULL UNIQUE,
  job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  device_id INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
  packet_id INTEGER REFERENCES packets(id),
  attempt INTEGER NOT NULL,
  state TEXT NOT NULL,
  percent REAL,
  error_code TEXT,
  error_message TEXT,
  claimed_at INTEGER NOT NULL,
  offered_at INTEGER,
  updated_at INTEGER NOT NULL,
  finished_at INTEGER,
  deadline INTEGER NOT NULL,
  window_start INTEGER,
  window_end INTEGER,
  cancel_requested INTEGER NOT NULL DEFAULT 0,
  cancel_sent_at INTEGER,
  ignored_progress INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX job_executions_job ON job_executions(job_id, state);
CREATE INDEX job_executions_job_offered ON job_executions(job_id, offered_at);
CREATE INDEX job_executions_device ON job_executions(device_id, state);
CREATE INDEX job_executions_open ON job_executions(deadline) WHERE finished_at IS NULL;
`,
  },
  {
    version: 11,
    name: 'device coordinates and dashboard indexes',
    sql: `
ALTER TABLE devices ADD COLUMN latitude REAL;
ALTER TABLE devices ADD COLUMN longitude REAL;
CREATE INDEX devices_account_firmware ON devices(account_id, firmware);
CREATE INDEX devices_account_model ON devices(account_id, model);
CREATE INDEX devices_account_status ON devices(account_id, online, admission);
CREATE INDEX devices_account_geo ON devices(account_id, id) WHERE latitude IS NOT NULL AND longitude IS NOT NULL;
`,
  },
  // ── audit, certificates, templates, analytics, smart updates (versions 20+) ───────────────
  {
    version: 20,
    name: 'append-only, hash-chained audit records',
    sql: `
CREATE TABLE audit_records (
  id INTEGER PRIMARY KEY,
  account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
  seq INTEGER NOT NULL,
  at INTEGER NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  resource_kind TEXT,
  resource_uuid TEXT,
  status INTEGER NOT NULL,
  request TEXT,
  before TEXT,
  after TEXT,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL,
  UNIQUE (account_id, seq)
);
CREATE INDEX audit_records_account ON audit_records(account_id, id);
CREATE INDEX audit_records_resource ON audit_records(account_id, resource_uuid, id);
-- No statement may change or remove a record while its account exists (the cascade of an account
-- deletion is the only way out). The hash chain makes edits behind SQLite's back detectable.
CREATE TRIGGER audit_records_no_update BEFORE UPDATE ON audit_records
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER audit_records_no_delete BEFORE DELETE ON audit_records
WHEN EXISTS (SELECT 1 FROM accounts WHERE id = OLD.account_id)
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE INDEX account_events_account_at ON account_events(account_id, at, id);
CREATE INDEX account_events_subject ON account_events(account_id, subject, id);
`,
  },
  {
    version: 21,
    name: 'certificate store metadata, template kinds, group template values, template jobs',
    sql: `
ALTER TABLE certificates ADD COLUMN subject TEXT;
ALTER TABLE certificates ADD COLUMN issuer TEXT;
ALTER TABLE certificates ADD COLUMN serial TEXT;
ALTER TABLE certificates ADD COLUMN not_before INTEGER;
ALTER TABLE certificates ADD COLUMN not_after INTEGER;
ALTER TABLE certificates ADD COLUMN fingerprint_sha256 TEXT;
ALTER TABLE certificates ADD COLUMN self_signed INTEGER;
CREATE INDEX certificates_expiry ON certificates(account_id, not_after);
ALTER TABLE configuration_templates ADD COLUMN kind TEXT NOT NULL DEFAULT 'ascii-configuration';
ALTER TABLE configuration_templates ADD COLUMN file_name TEXT NOT NULL DEFAULT 'config.txt';
ALTER TABLE configuration_templates ADD COLUMN description TEXT NOT NULL DEFAULT '';
ALTER TABLE configuration_templates ADD COLUMN updated_at INTEGER;
CREATE TABLE group_template_values (
  group_id INTEGER PRIMARY KEY REFERENCES device_groups(id) ON DELETE CASCADE,
  account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
  vals TEXT NOT NULL DEFAULT '{}',
  updated_at INTEGER NOT NULL
);
CREATE TABLE template_jobs (
  job_id INTEGER PRIMARY KEY REFERENCES jobs(id) ON DELETE CASCADE,
  template_uuid TEXT NOT NULL,
  name TEXT NOT NULL,
  kind TEXT NOT NULL,
  file_name TEXT NOT NULL,
  body TEXT NOT NULL
);
CREATE TABLE template_renders (
  job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  device_id INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
  packet_id INTEGER REFERENCES packets(id) ON DELETE SET NULL,
  error_code TEXT,
  error_message TEXT,
  rendered_at INTEGER NOT NULL,
  PRIMARY KEY (job_id, device_id)
) WITHOUT ROWID;
`,
  },
  {
    version: 22,
    name: 'device analytics samples and smart updates',
    sql: `
CREATE TABLE analytics_samples (
  id INTEGER PRIMARY KEY,
  account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
  device_id INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
  model TEXT,
  firmware TEXT,
  at INTEGER NOT NULL,
  period_sec INTEGER NOT NULL,
  metrics TEXT NOT NULL,
  received_at INTEGER NOT NULL
);
CREATE INDEX analytics_samples_account ON analytics_samples(account_id, model, firmware);
CREATE INDEX analytics_samples_device ON analytics_samples(device_id, at);
CREATE TABLE smart_update_jobs (
  account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
  model TEXT NOT NULL,
  version TEXT NOT NULL,
  job_id INTEGER REFERENCES jobs(id) ON DELETE SET NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (account_id, model, version)
) WITHOUT ROWID;
`,
  },
  {
    version: 23,
    name: 'drop the audit_log table of version 1 (never written since the hash-chained audit_records of version 20)',
    sql: `
DROP INDEX IF EXISTS audit_log_account;
DROP TABLE IF EXISTS audit_log;
`,
  },
  {
    version: 24,
    name: 'lease counts per account and state, kept by triggers (admission read COUNT(*) over every lease per hello: O(n) at 40,000 leases)',
    sql: `
CREATE TABLE lease_counts (
  account_id INTEGER NOT NULL,
  state TEXT NOT NULL,
  n INTEGER NOT NULL,
  PRIMARY KEY (account_id, state)
) WITHOUT ROWID;
INSERT INTO lease_counts (account_id, state, n) SELECT account_id, state, COUNT(*) FROM leases GROUP BY account_id, state;
CREATE TRIGGER leases_count_insert AFTER INSERT ON leases BEGIN
${countLease('+')}
END;
CREATE TRIGGER leases_count_delete AFTER DELETE ON leases BEGIN
${countLease('-')}
END;
CREATE TRIGGER leases_count_update AFTER UPDATE OF account_id, state ON leases
  WHEN OLD.account_id IS NOT NEW.account_id OR OLD.state IS NOT NEW.state BEGIN
${countLease('-')}
${countLease('+')}
END;
CREATE TRIGGER lease_counts_account_delete AFTER DELETE ON accounts BEGIN
  DELETE FROM lease_counts WHERE account_id = OLD.id;
END;
`,
  },
  {
    version: 25,
    name: 'licence versions per account: a new random value on every licence change (admission caches licences per version; random, so a rolled-back change cannot be repeated by a later one)',
    sql: `
CREATE TABLE licence_versions (
  account_id INTEGER PRIMARY KEY,
  version INTEGER NOT NULL
);
CREATE TRIGGER licences_version_insert AFTER INSERT ON licences BEGIN
${bumpLicenceVersion('NEW')}
END;
CREATE TRIGGER licences_version_update AFTER UPDATE ON licences BEGIN
${bumpLicenceVersion('OLD')}
${bumpLicenceVersion('NEW')}
END;
CREATE TRIGGER licences_version_delete AFTER DELETE ON licences BEGIN
${bumpLicenceVersion('OLD')}
END;
`,
  },
  {
    version: 26,
    name: 'pending job devices and queued executions indexed apart (the dispatch claim scanned every device of a running job, 22 ms at 40,000 per dispatch, and the job tick every open execution, 9 ms a second, both under the write lock; a maxConcurrent job counted its unfinished executions row by row, 59 ms)',
    sql: `
CREATE INDEX job_devices_pending ON job_devices(job_id, added_at, device_id) WHERE status = 'pending';
CREATE INDEX job_executions_queued ON job_executions(claimed_at) WHERE state = 'queued' AND finished_at IS NULL;
CREATE INDEX job_executions_unfinished ON job_executions(job_id, finished_at, state) WHERE finished_at IS NULL;
`,
  },
  {
    version: 27,
    name: 'restart hold: leases a new process life holds for their devices until it has caught up with the reconnecting fleet (after a crash every open lease stayed open for good; after a restart seats went to waiting devices when the fleet took longer than the grace period to return)',
    sql: `
ALTER TABLE leases ADD COLUMN restart_hold INTEGER;
CREATE INDEX leases_restart_hold ON leases(restart_hold) WHERE restart_hold IS NOT NULL;
CREATE TABLE restart_hold (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  started_at INTEGER NOT NULL,
  held_at_start INTEGER NOT NULL,
  last_return_at INTEGER,
  ended_at INTEGER,
  end_reason TEXT
);
`,
  },
  {
    version: 28,
    name: 'job counts kept by triggers (a job poll recounted every device and execution of the job: 40,000 rows per GET) and a target summary (the poll returned every target UUID, 1.8 MB); who decided an execution\'s result (a device\'s result revises one the server decided without it)',
    sql: `
ALTER TABLE job_executions ADD COLUMN result_source TEXT CHECK (result_source IN ('device', 'server'));
UPDATE job_executions SET result_source = CASE
  WHEN error_code LIKE 'SERVER\\_%' ESCAPE '\\' OR (state = 'cancelled' AND offered_at IS NULL) THEN 'server' ELSE 'device' END
  WHERE finished_at IS NOT NULL;
ALTER TABLE jobs ADD COLUMN target_summary TEXT;
UPDATE jobs SET target_summary = json_object(
  'all', json(CASE WHEN json_extract(target, '$.all') THEN 'true' ELSE 'false' END),
  'groupUuids', json(COALESCE(json_extract(target, '$.groupUuids'), '[]')),
  'deviceCount', COALESCE(json_array_length(target, '$.deviceUuids'), 0));
CREATE INDEX job_executions_finished ON job_executions(job_id, finished_at) WHERE finished_at IS NOT NULL;
CREATE TABLE job_counts (
  job_id INTEGER NOT NULL,
  bucket TEXT NOT NULL,
  n INTEGER NOT NULL,
  PRIMARY KEY (job_id, bucket)
) WITHOUT ROWID;
INSERT INTO job_counts (job_id, bucket, n) SELECT job_id, 'status:' || status, COUNT(*) FROM job_devices GROUP BY job_id, status;
INSERT INTO job_counts (job_id, bucket, n) SELECT job_id, 'result:' || result, COUNT(*) FROM job_devices
  WHERE status = 'done' AND result IS NOT NULL GROUP BY job_id, result;
INSERT INTO job_counts (job_id, bucket, n) SELECT jd.job_id, 'skipped', COUNT(*) FROM job_devices jd JOIN devices d ON d.id = jd.device_id
  WHERE jd.status = 'pending' AND d.admission = 'unmanaged' GROUP BY jd.job_id;
INSERT INTO job_counts (job_id, bucket, n) SELECT job_id, 'state:' || state, COUNT(*) FROM job_executions
  WHERE finished_at IS NULL GROUP BY job_id, state;
INSERT INTO job_counts (job_id, bucket, n) SELECT job_id, 'ignored', SUM(ignored_progress) FROM job_executions
  WHERE ignored_progress > 0 GROUP BY job_id;
CREATE TRIGGER job_counts_device_insert AFTER INSERT ON job_devices BEGIN
${countJobDevice('NEW')}
END;
CREATE TRIGGER job_counts_device_update AFTER UPDATE OF status, result ON job_devices
  WHEN OLD.status IS NOT NEW.status OR OLD.result IS NOT NEW.result BEGIN
${countJobDevice('OLD')}
${countJobDevice('NEW')}
END;
CREATE TRIGGER job_counts_device_delete AFTER DELETE ON job_devices BEGIN
${countJobDevice('OLD')}
END;
-- A deleted device leaves its jobs while it still exists, so its skipped count is taken out too.
CREATE TRIGGER job_counts_device_gone BEFORE DELETE ON devices BEGIN
  DELETE FROM job_devices WHERE device_id = OLD.id;
END;
CREATE TRIGGER job_counts_admission AFTER UPDATE OF admission ON devices
  WHEN (OLD.admission IS 'unmanaged') != (NEW.admission IS 'unmanaged') BEGIN
  INSERT INTO job_counts (job_id, bucket, n)
    SELECT job_id, 'skipped', CASE WHEN NEW.admission IS 'unmanaged' THEN 1 ELSE -1 END
    FROM job_devices WHERE device_id = NEW.id AND status = 'pending'
    ON CONFLICT (job_id, bucket) DO UPDATE SET n = n + excluded.n;
END;
CREATE TRIGGER job_counts_execution_insert AFTER INSERT ON job_executions BEGIN
${countJobExecution('NEW')}
${countJob('NEW.job_id', `'ignored'`, 'NEW.ignored_progress', 'NEW.ignored_progress != 0')}
END;
CREATE TRIGGER job_counts_execution_update AFTER UPDATE OF state, finished_at, ignored_progress ON job_executions
  WHEN OLD.state IS NOT NEW.state OR OLD.finished_at IS NOT NEW.finished_at OR OLD.ignored_progress != NEW.ignored_progress BEGIN
${countJobExecution('OLD')}
${countJobExecution('NEW')}
${countJob('NEW.job_id', `'ignored'`, 'NEW.ignored_progress - OLD.ignored_progress', 'NEW.ignored_progress != OLD.ignored_progress')}
END;
CREATE TRIGGER job_counts_execution_delete AFTER DELETE ON job_executions BEGIN
${countJobExecution('OLD')}
${uncountJob('OLD.job_id', `'ignored'`, 'OLD.ignored_progress', 'OLD.ignored_progress != 0')}
END;
CREATE TRIGGER job_counts_job_delete AFTER DELETE ON jobs BEGIN
  DELETE FROM job_counts WHERE job_id = OLD.id;
END;
`,
  },
  {
    version: 29,
    name: 'what routers report (model, firmware, trust-anchor digest, position) beside the typed-in fields; smart update attempts per device (a router that failed is retried when it changed or after 24 h)',
    sql: `
ALTER TABLE devices ADD COLUMN reported_model TEXT;
ALTER TABLE devices ADD COLUMN reported_firmware TEXT;
ALTER TABLE devices ADD COLUMN reported_anchors TEXT;
ALTER TABLE devices ADD COLUMN reported_lat REAL;
ALTER TABLE devices ADD COLUMN reported_lon REAL;
ALTER TABLE devices ADD COLUMN reported_position_at INTEGER;
CREATE INDEX devices_account_effective_model ON devices(account_id, COALESCE(reported_model, model));
CREATE INDEX devices_account_effective_firmware ON devices(account_id, COALESCE(reported_firmware, firmware));
CREATE TABLE smart_update_devices (
  account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
  model TEXT NOT NULL,
  version TEXT NOT NULL,
  device_id INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
  device_state TEXT,
  attempted_at INTEGER NOT NULL,
  PRIMARY KEY (account_id, model, version, device_id)
) WITHOUT ROWID;
INSERT OR IGNORE INTO smart_update_devices (account_id, model, version, device_id, device_state, attempted_at)
  SELECT s.account_id, s.model, s.version, jd.device_id, NULL, jd.added_at
  FROM smart_update_jobs s JOIN job_devices jd ON jd.job_id = s.job_id;
`,
  },
  {
    version: 30,
    name: 'failed logins counted per (user name as typed, client address): a lockout by one client no longer locks the user out everywhere, and unknown user names lock like known ones',
    sql: `
CREATE TABLE login_failures (
  username TEXT NOT NULL,
  client TEXT NOT NULL,
  failures INTEGER NOT NULL,
  locked_until INTEGER,
  last_at INTEGER NOT NULL,
  PRIMARY KEY (username, client)
) WITHOUT ROWID;
CREATE INDEX login_failures_last ON login_failures(last_at);
`,
  },
  {
    version: 31,
    name: 'fewer job_executions indexes to keep per claim, offer and progress report: (job_id, state) was read by no query; (job_id, offered_at) served only by its job_id (now (job_id, claimed_at), which the claims per minute count and no offer rewrites); (device_id, state) becomes (device_id), which no state change rewrites',
    sql: `
DROP INDEX job_executions_job;
DROP INDEX job_executions_job_offered;
DROP INDEX job_executions_device;
CREATE INDEX job_executions_job_claimed ON job_executions(job_id, claimed_at);
CREATE INDEX job_executions_device ON job_executions(device_id);
`,
  },
  {
    version: 32,
    name: 'the device list sorted by serial number or creation time within an account pages by index (neither column changes after registration)',
    sql: `
CREATE INDEX devices_account_serial ON devices(account_id, serial_number);
CREATE INDEX devices_account_created ON devices(account_id, created_at);
`,
  },
  {
    version: 33,
    name: 'seat hold after a lost MQTT broker: since when devices can reach the server again (null while the broker is lost), so a broker outage longer than the quiet period does not end the hold while no device can return',
    sql: `
ALTER TABLE restart_hold ADD COLUMN serving_since INTEGER;
UPDATE restart_hold SET serving_since = started_at;
`,
  },
  {
    version: 34,
    name: 'seat hold across several server processes: which processes are out of touch with the MQTT broker (the quiet period waits for the last one), and when the hold last took leases (its hard cap counts from then)',
    sql: `
CREATE TABLE hold_outages (
  owner TEXT PRIMARY KEY,
  since INTEGER NOT NULL
);
ALTER TABLE restart_hold ADD COLUMN last_loss_at INTEGER;
`,
  },
  {
    version: 35,
    name: 'several independent server hosts on one store: each server process registers itself (heartbeat, stop), cluster-wide background roles are leased to one process at a time, a lease names the process that admitted its device (released by another when that process dies), and the files every host must agree on (server key, signing PKI, local TLS CA) and packet bytes are kept in the store',
    sql: `
CREATE TABLE server_instances (
  id TEXT PRIMARY KEY,
  lock_key INTEGER NOT NULL,
  label TEXT NOT NULL,
  started_at INTEGER NOT NULL,
  heartbeat_at INTEGER NOT NULL,
  stopped_at INTEGER
) WITHOUT ROWID;
CREATE TABLE server_roles (
  name TEXT PRIMARY KEY,
  holder TEXT NOT NULL,
  expires_at INTEGER NOT NULL
) WITHOUT ROWID;
ALTER TABLE leases ADD COLUMN instance_id TEXT;
CREATE INDEX leases_instance ON leases(instance_id) WHERE instance_id IS NOT NULL;
CREATE TABLE shared_files (
  name TEXT PRIMARY KEY,
  data BLOB NOT NULL,
  updated_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE packet_blobs (
  sha256 TEXT PRIMARY KEY,
  size INTEGER NOT NULL,
  chunks INTEGER NOT NULL,
  stored_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE packet_chunks (
  sha256 TEXT NOT NULL,
  seq INTEGER NOT NULL,
  data BLOB NOT NULL,
  PRIMARY KEY (sha256, seq)
) WITHOUT ROWID;
`,
  },
];

export function latestVersion(): number {
  return Math.max(0, ...migrations.map((m) => m.version));
}

/** Applies pending migrations; returns the versions applied. Refuses a store from a newer server. */
export function migrate(db: Database, now: number, list: readonly Migration[] = migrations): number[] {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`);
  const run = db.transaction(() => {
    const current =
      (db.prepare('SELECT MAX(version) AS v FROM schema_migrations').get() as { v: number | null }).v ?? 0;
    // Sorted: migrations of parallel work may be listed out of order in the array.
    list = [...list].sort((x, y) => x.version - y.version);
    const known = list.at(-1)?.version ?? 0;
    if (current > known) {
      throw new AppError(
        'SERVER_STORE_VERSION',
        `store schema version ${current} is newer than this server knows (${known})`,
      );
    }
    const applied: number[] = [];
    const record = db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)');
    for (const m of list) {
      if (m.version <= current) continue;
      db.exec(m.sql);
      record.run(m.version, m.name, now);
      applied.push(m.version);
    }
    return applied;
  });
  return run.immediate();
}
