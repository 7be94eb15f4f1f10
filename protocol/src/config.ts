import { readFileSync } from 'node:fs';

/**
 * The configuration loader the agent and the server share (`@router-fleet/protocol/config`). Each
 * program describes its options in one table (name, type, default, unit, description, range); the
 * loader reads every option from, in order of precedence, command line flags, the environment
 * (`PREFIX_OPTION_NAME`), a JSON file and the table's default, parses it by one rule per type,
 * checks the table's range and choices, runs the program's cross-option checks and freezes the
 * result. Nothing here reads configuration at import time.
 *
 * Values given as text (flags, environment) are parsed strictly:
 * - integer: optional `-` and decimal digits, surrounding blanks ignored (`0x10`, `1e3`, `1.0` and
 *   `+5` are refused: a value that only parses by accident must not pass);
 * - boolean: `true`/`1` or `false`/`0`;
 * - string: the text as given. A JSON file must give strings as JSON strings.
 */

/** The type of one option. */
export type OptionType = 'string' | 'integer' | 'boolean';

/** A value an option can take after parsing (`null` = not set). */
export type OptionValue = string | number | boolean | null;

/** One row of a configuration table. */
export interface OptionSpec<Name extends string = string> {
  /** Option name in camelCase; also the key in the JSON file. */
  readonly name: Name;
  readonly type: OptionType;
  /** `null` = not set; `undefined` = required. */
  readonly default: OptionValue | undefined;
  /** Unit of the value (`s`, `ms`, `bytes`, `path`, …). */
  readonly unit: string;
  /** What the option does; shown by `--help` and in the generated README tables. */
  readonly description: string;
  /** Smallest accepted integer. */
  readonly min?: number;
  /** Largest accepted integer. */
  readonly max?: number;
  /** The only accepted strings. */
  readonly choices?: readonly string[];
}

/** Raw option values by name, as flags or a parsed JSON file give them. */
export type ConfigInput<Name extends string = string> = Partial<Record<Name, unknown>>;

/** Where the values come from. */
export interface ConfigLayers<Name extends string = string> {
  /** Command line flags (highest precedence). */
  readonly flags?: ConfigInput<Name> | undefined;
  /** The environment (`process.env`); empty variables count as not set. */
  readonly env?: Readonly<Record<string, string | undefined>> | undefined;
  /** The parsed JSON file; keys outside the table are refused. */
  readonly file?: ConfigInput<Name> | undefined;
}

/** How one program names and reports its options. */
export interface ConfigRules<Config> {
  /** Environment variable prefix without the trailing `_` (`FLEET_AGENT`). */
  readonly envPrefix: string;
  /** Builds the program's own error (its catalogue code) for a refused configuration. */
  readonly error: (message: string) => Error;
  /** Cross-option checks on the merged values; returns why the configuration is refused, or nothing. */
  readonly check?: (config: Config) => string | undefined;
}

/** `bootDelayMaxSec` → `PREFIX_BOOT_DELAY_MAX_SEC`. */
export function optionEnvName(prefix: string, name: string): string {
  return `${prefix}_${name.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
}

/** `bootDelayMaxSec` → `boot-delay-max-sec`. */
export function optionFlagName(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

const INTEGER_TEXT = /^-?\d+$/;

/**
 * Parses one raw value by its option's type and checks range and choices. `source` names where the
 * value came from in the message (`flag`, `env FLEET_AGENT_PORT`, `file`). Throws what
 * `error(message)` builds.
 */
export function parseOption(spec: OptionSpec, raw: unknown, source: string, error: (message: string) => Error): OptionValue {
  if (raw === null) return null;
  const fail = (why: string): never => {
    throw error(`${spec.name} (${source}): ${why}`);
  };
  switch (spec.type) {
    case 'string': {
      if (typeof raw !== 'string') return fail('expected a string');
      if (spec.choices && !spec.choices.includes(raw)) return fail(`expected one of ${spec.choices.join(', ')}`);
      return raw;
    }
    case 'integer': {
      const n = typeof raw === 'string' && INTEGER_TEXT.test(raw.trim()) ? Number(raw) : raw;
      if (typeof n !== 'number' || !Number.isSafeInteger(n)) return fail('expected an integer');
      if (spec.min !== undefined && n < spec.min) return fail(`must be at least ${spec.min}`);
      if (spec.max !== undefined && n > spec.max) return fail(`must be at most ${spec.max}`);
      return n;
    }
    case 'boolean': {
      if (typeof raw === 'boolean') return raw;
      if (raw === 'true' || raw === '1') return true;
      if (raw === 'false' || raw === '0') return false;
      return fail('expected true or false');
    }
  }
}

/**
 * Resolves a configuration table: flags > environment > file > defaults, each value parsed and
 * checked, then the program's cross-option check; returns the frozen result. Unknown keys in the
 * file are refused (a typo must not pass silently).
 */
export function loadConfigTable<Config extends object>(
  table: readonly OptionSpec<Extract<keyof Config, string>>[],
  layers: ConfigLayers<Extract<keyof Config, string>>,
  rules: ConfigRules<Config>,
): Readonly<Config> {
  const file: Record<string, unknown> = layers.file ?? {};
  const known = new Set<string>(table.map((s) => s.name));
  for (const key of Object.keys(file)) {
    if (!known.has(key)) throw rules.error(`unknown option "${key}" in the configuration file`);
  }
  const flags: Record<string, unknown> = layers.flags ?? {};
  const env = layers.env ?? {};
  const out: Record<string, unknown> = {};
  for (const spec of table) {
    const envName = optionEnvName(rules.envPrefix, spec.name);
    const fromFlag = flags[spec.name];
    const fromEnv = env[envName];
    const fromFile = file[spec.name];
    let value: OptionValue | undefined;
    if (fromFlag !== undefined) value = parseOption(spec, fromFlag, 'flag', rules.error);
    else if (fromEnv !== undefined && fromEnv !== '') value = parseOption(spec, fromEnv, `env ${envName}`, rules.error);
    else if (fromFile !== undefined) value = parseOption(spec, fromFile, 'file', rules.error);
    else value = spec.default;
    if (value === undefined) throw rules.error(`${spec.name} is required`);
    out[spec.name] = value;
  }
  const config = out as Config;
  const refused = rules.check?.(config);
  if (refused !== undefined) throw rules.error(refused);
  return Object.freeze(config);
}

/**
 * Reads a JSON configuration file: it must hold one JSON object (option names as keys). Throws what
 * `error(message)` builds when the file cannot be read or is not such an object.
 */
export function readConfigFile(path: string, error: (message: string) => Error): ConfigInput {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw error(`configuration file ${path}: ${(err as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw error(`configuration file ${path}: expected a JSON object`);
  }
  return parsed as ConfigInput;
}
