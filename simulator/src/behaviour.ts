import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Faults } from '@router-fleet/agent';
import { fnv1a32, mulberry32 } from '@router-fleet/protocol/random';

/**
 * A behaviour: per-device faults drawn with probabilities, in the agent's fault vocabulary
 * (`Faults` of @router-fleet/agent), so a simulated fleet fails exactly as the agent's scenario
 * tests do. Stored as JSON; `ideal`, `realistic` and `hostile` are built in.
 */
export interface Behaviour {
  name: string;
  description?: string;
  rules: BehaviourRule[];
  /** Reboot duration drawn uniformly per device (ms). Default 0. */
  rebootMs?: { min: number; max: number };
}

export interface BehaviourRule {
  /** Chance (0–1) that a device gets these faults. Rules are drawn independently. */
  probability: number;
  faults: Faults;
  /** Name used in reports (`faults by label`). */
  label?: string;
  /** What a job on such a device must end in; omitted: it still succeeds (faults are survivable). */
  expect?: 'failed' | 'succeeded';
}

export const BUILT_IN_BEHAVIOURS = ['ideal', 'realistic', 'hostile'] as const;

const behavioursDir = join(dirname(fileURLToPath(import.meta.url)), '..', 'behaviours');

/** Loads a built-in behaviour by name or a JSON file by path; validates it (throws a TypeError). */
export function loadBehaviour(nameOrPath: string): Behaviour {
  const file = (BUILT_IN_BEHAVIOURS as readonly string[]).includes(nameOrPath) ? join(behavioursDir, `${nameOrPath}.json`) : nameOrPath;
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new TypeError(`cannot read behaviour ${nameOrPath}: ${(err as Error).message}`);
  }
  return validateBehaviour(parsed);
}

export function validateBehaviour(value: unknown): Behaviour {
  const v = value as Partial<Behaviour> | null;
  if (!v || typeof v !== 'object' || typeof v.name !== 'string' || !Array.isArray(v.rules)) {
    throw new TypeError('a behaviour needs a name and a rules array');
  }
  for (const [i, rule] of v.rules.entries()) {
    if (typeof rule?.probability !== 'number' || rule.probability < 0 || rule.probability > 1) {
      throw new TypeError(`rule ${i}: probability must be a number in 0..1`);
    }
    if (!rule.faults || typeof rule.faults !== 'object') throw new TypeError(`rule ${i}: faults must be an object`);
  }
  if (v.rebootMs && !(v.rebootMs.min >= 0 && v.rebootMs.max >= v.rebootMs.min)) throw new TypeError('rebootMs needs 0 ≤ min ≤ max');
  return v as Behaviour;
}

/** A device's draw: its merged faults, the labels drawn and the job result it must end in. */
export interface DeviceDraw {
  faults: Faults;
  labels: string[];
  expect: 'failed' | 'succeeded';
}

function merge(into: Record<string, unknown>, from: Record<string, unknown>): void {
  for (const [k, v] of Object.entries(from)) {
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      const target = (into[k] && typeof into[k] === 'object' ? into[k] : (into[k] = {})) as Record<string, unknown>;
      merge(target, v as Record<string, unknown>);
    } else {
      into[k] = v;
    }
  }
}

/**
 * Draws one device's faults: deterministic in (seed, serial number), independent of how many other
 * devices run or in which process, so the same run can be repeated exactly.
 */
export function drawDevice(behaviour: Behaviour, seed: number, serialNumber: string): DeviceDraw {
  const rand = mulberry32(fnv1a32(`${seed}:${serialNumber}`));
  const faults: Record<string, unknown> = {};
  const labels: string[] = [];
  let expect: DeviceDraw['expect'] = 'succeeded';
  for (const rule of behaviour.rules) {
    if (rand() < rule.probability) {
      merge(faults, rule.faults as Record<string, unknown>);
      if (rule.label) labels.push(rule.label);
      if (rule.expect === 'failed') expect = 'failed';
    }
  }
  if (behaviour.rebootMs) {
    const { min, max } = behaviour.rebootMs;
    merge(faults, { reboot: { durationMs: Math.round(min + rand() * (max - min)) } });
  }
  return { faults: faults as Faults, labels, expect };
}
