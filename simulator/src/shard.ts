import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { SimError } from './errors.js';

/**
 * One of N deterministic slices of a fleet: `index` is 1-based (`--shard 1/2` and `--shard 2/2`
 * are the two halves), so the command line reads as "slice K of N".
 */
export interface Shard {
  index: number;
  count: number;
}

/** The whole fleet as one slice: what a run without `--shard` is. */
export const WHOLE_FLEET: Shard = Object.freeze({ index: 1, count: 1 });

function shardError(message: string): SimError {
  return new SimError('SIM_SHARD_INVALID', message);
}

/** Validates a shard given as data (a scenario's `shard: { index, count }`). */
export function validateShard(value: unknown, where = 'shard'): Shard {
  const s = value as Partial<Shard> | null;
  if (!s || typeof s !== 'object') throw shardError(`${where} must be { "index": K, "count": N } with 1 ≤ K ≤ N`);
  const { index, count } = s;
  if (!Number.isInteger(count) || (count as number) < 1) throw shardError(`${where}: count must be an integer ≥ 1, not ${JSON.stringify(count)}`);
  if (!Number.isInteger(index) || (index as number) < 1 || (index as number) > (count as number)) {
    throw shardError(`${where}: index must be an integer from 1 to ${count as number}, not ${JSON.stringify(index)}`);
  }
  return { index: index as number, count: count as number };
}

/** Parses `K/N` (1 ≤ K ≤ N), as `--shard` takes it. */
export function parseShard(text: string): Shard {
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(text);
  if (!m) throw shardError(`--shard: ${JSON.stringify(text)} is not K/N (e.g. 1/2: the first of two slices)`);
  const shard = { index: Number(m[1]), count: Number(m[2]) };
  if (shard.count < 1) throw shardError(`--shard ${text}: N must be ≥ 1`);
  if (shard.index < 1 || shard.index > shard.count) throw shardError(`--shard ${text}: K must be from 1 to ${shard.count}`);
  return shard;
}

export function formatShard(shard: Shard): string {
  return `${shard.index}/${shard.count}`;
}

/**
 * The slice (1-based) a router belongs to among `count`, from a SHA-256 of its serial number.
 *
 * Why a hash of the serial number and not the router's line number modulo N: the slice of a router
 * is then a property of the router alone. It does not move when the profiles file is fetched again
 * in another order, when rows are added or removed around it, or when `--devices` takes a different
 * prefix of the file, and the same fleet CSV provisioned on two servers (other device ids) slices
 * the same way. SHA-256 (not a fast non-cryptographic hash) because it is the same on every
 * machine and Node.js version with nothing to install, and its cost (about 1 µs a router) is paid
 * once at start. The price: slices are even only statistically (binomial: ±√(n/N) routers).
 */
export function shardOfRouter(serialNumber: string, count: number): number {
  if (count === 1) return 1;
  return (createHash('sha256').update(serialNumber).digest().readUInt32BE(0) % count) + 1;
}

/** Identity of the fleet a run took its routers from (reports of different fleets do not merge). */
export interface FleetIdentity {
  /**
   * `sha256:` + hex over the sorted (serial number, device id) pairs of the fleet's routers: the
   * same set of routers is the same fleet whatever the order of the file; a fleet provisioned
   * again (new device ids) or another prefix of the file (`--devices`) is another one.
   */
  id: string;
  /** Routers of the whole fleet (every slice). */
  routers: number;
}

/** What `scanFleet` finds in a profiles file. */
export interface FleetScan {
  /** Routers (non-empty lines) in the file. */
  available: number;
  fleet: FleetIdentity;
  /** Line numbers (0-based, among non-empty lines) of the routers of the slice, ascending. */
  selected: number[];
}

/**
 * Reads the first `devices` routers (default all) of a profiles file (`fleet-sim provision`'s NDJSON),
 * computes the fleet's identity and picks the routers of `shard`.
 */
export async function scanFleet(file: string, shard: Shard = WHOLE_FLEET, devices = Number.POSITIVE_INFINITY): Promise<FleetScan> {
  const pairs: string[] = [];
  const selected: number[] = [];
  let available = 0;
  const lines = createInterface({ input: createReadStream(file), crlfDelay: Infinity });
  for await (const line of lines) {
    if (line.trim() === '') continue;
    const i = available++;
    if (i >= devices) continue; // still counted: `available` is the file's size
    let profile: { serialNumber?: unknown; deviceId?: unknown } | undefined;
    try {
      profile = (JSON.parse(line) as { profile?: { serialNumber?: unknown; deviceId?: unknown } }).profile;
    } catch {
      profile = undefined;
    }
    if (!profile || typeof profile.serialNumber !== 'string' || typeof profile.deviceId !== 'string') {
      lines.close();
      throw new SimError('SIM_FILE_UNREADABLE', `${file}: router ${i + 1} is not a provisioned profile line (write the file with fleet-sim provision)`);
    }
    pairs.push(`${profile.serialNumber}\t${profile.deviceId}\n`);
    if (shardOfRouter(profile.serialNumber, shard.count) === shard.index) selected.push(i);
  }
  const hash = createHash('sha256');
  for (const p of pairs.sort()) hash.update(p);
  return { available, fleet: { id: `sha256:${hash.digest('hex')}`, routers: pairs.length }, selected };
}
