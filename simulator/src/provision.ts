import { createWriteStream, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { csvObjects } from './csv.js';
import { SimError } from './errors.js';
import { RestClient, RestError } from './rest.js';

/** The file `provision` writes in its output directory: one line per router, in fleet order. */
export const PROFILES_FILE = 'profiles.ndjson';

/**
 * One line of PROFILES_FILE: the device's connection profile (as the server delivers it, JSON
 * format) plus what the simulated router looks like (`sim`: model, firmware, location).
 */
export interface ProvisionedDevice {
  profile: Record<string, unknown> & { deviceId: string; serialNumber: string; serverUrl: string; caCertPem: string };
  sim: { model: string; firmware: string; lat?: number; lon?: number };
}

/** One CSV row the server refused: its line in the file and the server's code and message. */
export interface RowError {
  line: number;
  code: string;
  message: string;
}

/** The server's answer to a CSV import (the body, or the `details` of SERVER_CSV_ROWS_INVALID). */
export interface ImportReport {
  rows: number;
  imported: number;
  failed: number;
  errors: RowError[];
}

function isImportReport(value: unknown): value is ImportReport {
  const r = value as Partial<ImportReport> | null;
  return !!r && typeof r === 'object' && typeof r.rows === 'number' && typeof r.failed === 'number' && Array.isArray(r.errors);
}

/** The per-row report as lines for a person: `line 7: SERVER_VALIDATION serialNumber must be …`. */
export function rowReportLines(errors: readonly RowError[]): string[] {
  return errors.map((e) => `line ${e.line}: ${e.code} ${e.message}`);
}

export interface ProvisionOptions {
  server: string;
  token: string;
  /** Fleet CSV (as `fleet-sim fleet` writes it). */
  fleetCsv: string;
  outDir: string;
  caPem?: string;
  /** Import the valid rows even if some fail (e.g. already registered). Default false. */
  partial?: boolean;
  log?: (line: string) => void;
}

export interface ProvisionResult {
  /** Data rows in the CSV. */
  rows: number;
  imported: number;
  failed: number;
  /** The rows the server refused (with `partial`; without it a refusal is SIM_PROVISION_ROWS_FAILED). */
  errors: RowError[];
  profiles: number;
  file: string;
}

/**
 * Registers a fleet through the server's CSV mass registration (creating the device groups it
 * names first) and fetches every connection profile in one bulk NDJSON request, written to
 * `outDir/profiles.ndjson` in the order of the CSV (the ramp order of `fleet-sim run`).
 */
export async function provisionFleet(options: ProvisionOptions): Promise<ProvisionResult> {
  const log = options.log ?? (() => {});
  let csv: string;
  try {
    csv = readFileSync(options.fleetCsv, 'utf8');
  } catch (err) {
    throw new SimError('SIM_FILE_UNREADABLE', `cannot read fleet CSV ${options.fleetCsv}: ${(err as Error).message}`);
  }
  const rows = csvObjects(csv, `fleet CSV ${options.fleetCsv}`);
  const rest = new RestClient({ server: options.server, token: options.token, ...(options.caPem ? { caPem: options.caPem } : {}) });
  try {
    const groups = [...new Set(rows.map((r) => r['group'] ?? '').filter((g) => g !== ''))];
    for (const name of groups) {
      try {
        await rest.json('POST', '/api/inventory/device-groups', { name });
      } catch (err) {
        if (!(err instanceof RestError && err.code === 'SERVER_GROUP_NAME_TAKEN')) throw err;
      }
    }
    log(`groups: ${groups.length}`);
    let report: ImportReport;
    try {
      const res = await rest.raw('POST', `/api/inventory/managed-devices/import${options.partial ? '?partial=true' : ''}`, csv, 'text/csv');
      report = (await res.body.json()) as ImportReport;
    } catch (err) {
      // All or nothing: the server registered none of the rows and says which ones are wrong.
      if (err instanceof RestError && err.code === 'SERVER_CSV_ROWS_INVALID' && isImportReport(err.details)) {
        const r = err.details;
        throw new SimError(
          'SIM_PROVISION_ROWS_FAILED',
          `${r.failed} of ${r.rows} rows refused; nothing was registered (fix those rows, or pass --partial to register the valid ones)`,
          { details: { rows: r.rows, imported: 0, failed: r.failed, errors: r.errors } },
        );
      }
      throw err;
    }
    log(`import: ${report.imported} of ${report.rows} rows imported, ${report.failed} failed`);

    const bySerial = new Map(rows.map((r) => [r['serialNumber']!, r]));
    const order = new Map(rows.map((r, i) => [r['serialNumber']!, i]));
    const profiles = await rest.raw('POST', '/api/inventory/connection-profiles', JSON.stringify({ all: true, format: 'json' }));
    const lines: Array<string | undefined> = new Array<string | undefined>(rows.length);
    let extra = 0;
    const input = createInterface({ input: profiles.body, crlfDelay: Infinity });
    for await (const line of input) {
      if (line.trim() === '') continue;
      const profile = JSON.parse(line) as ProvisionedDevice['profile'];
      const row = bySerial.get(profile.serialNumber);
      const index = order.get(profile.serialNumber);
      if (!row || index === undefined) {
        extra++;
        continue; // a device of the account that is not in this fleet
      }
      const lat = Number(row['latitude']);
      const lon = Number(row['longitude']);
      const device: ProvisionedDevice = {
        profile,
        sim: {
          model: row['model'] || 'EMU-1',
          firmware: row['firmware'] || '1.0.0',
          ...(row['latitude'] && Number.isFinite(lat) && Number.isFinite(lon) ? { lat, lon } : {}),
        },
      };
      lines[index] = JSON.stringify(device);
    }
    mkdirSync(options.outDir, { recursive: true });
    const file = join(options.outDir, PROFILES_FILE);
    const out = createWriteStream(file, { mode: 0o600 }); // holds device credentials
    let written = 0;
    for (const line of lines) {
      if (line === undefined) continue;
      if (!out.write(`${line}\n`)) await new Promise<void>((r) => out.once('drain', () => r()));
      written++;
    }
    await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
    log(`profiles: ${written} written to ${file}${extra ? ` (${extra} other devices of the account skipped)` : ''}`);
    return { rows: report.rows, imported: report.imported, failed: report.failed, errors: report.errors, profiles: written, file };
  } finally {
    await rest.close();
  }
}
