import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfigTable, optionEnvName, optionFlagName, type OptionSpec, parseOption, readConfigFile } from '../src/config.js';

class TestConfigError extends Error {}
const error = (message: string) => new TestConfigError(message);

interface Demo {
  dataDir: string;
  port: number;
  retries: number;
  verbose: boolean;
  level: string;
  label: string | null;
}

const TABLE: readonly OptionSpec<keyof Demo>[] = [
  { name: 'dataDir', type: 'string', default: undefined, unit: 'path', description: 'Data directory.' },
  { name: 'port', type: 'integer', default: 8080, unit: 'port', min: 0, max: 65535, description: 'TCP port.' },
  { name: 'retries', type: 'integer', default: 3, unit: 'retries', min: -5, description: 'Retries.' },
  { name: 'verbose', type: 'boolean', default: false, unit: 'flag', description: 'Say more.' },
  { name: 'level', type: 'string', default: 'info', unit: 'level', choices: ['info', 'debug'], description: 'Level.' },
  { name: 'label', type: 'string', default: null, unit: 'text', description: 'Label.' },
];

const load = (layers: Parameters<typeof loadConfigTable<Demo>>[1], check?: (c: Demo) => string | undefined) =>
  loadConfigTable<Demo>(TABLE, layers, { envPrefix: 'DEMO', error, ...(check ? { check } : {}) });

function refusal(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof TestConfigError) return err.message;
    throw err;
  }
  throw new Error('accepted');
}

const port = TABLE[1]!;
const retries = TABLE[2]!;
const verbose = TABLE[3]!;
const label = TABLE[5]!;

describe('shared configuration loader', () => {
  it('names options in the environment and on the command line', () => {
    expect(optionEnvName('FLEET_AGENT', 'bootDelayMaxSec')).toBe('FLEET_AGENT_BOOT_DELAY_MAX_SEC');
    expect(optionFlagName('bootDelayMaxSec')).toBe('boot-delay-max-sec');
  });

  it('takes flags over environment over file over defaults, and freezes the result', () => {
    const c = load({
      flags: { dataDir: '/flag', port: 3 },
      env: { DEMO_PORT: '2', DEMO_RETRIES: '8', DEMO_LEVEL: '' },
      file: { port: 1, retries: 7, level: 'debug' },
    });
    expect(c).toEqual({ dataDir: '/flag', port: 3, retries: 8, verbose: false, level: 'debug', label: null });
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('reads integers given as text only as optional minus and decimal digits', () => {
    for (const [text, value] of [['10', 10], [' 12 ', 12], ['-3', -3], ['0', 0], ['007', 7]] as const) {
      expect(parseOption(retries, text, 'env', error), text).toBe(value);
    }
    // Each of these is a number to JavaScript's Number(), which the agent's loader once used.
    for (const text of ['0x10', '1e3', '1.0', '+5', '0b1', '0o7', 'Infinity', '', ' ', '12abc', '9007199254740993']) {
      expect(refusal(() => parseOption(retries, text, 'env DEMO_RETRIES', error)), text).toMatch(/retries \(env DEMO_RETRIES\): expected an integer/);
    }
    expect(parseOption(retries, 1e3, 'file', error)).toBe(1000); // a JSON number is a number
    expect(refusal(() => parseOption(retries, 1.5, 'file', error))).toMatch(/expected an integer/);
    expect(refusal(() => load({ flags: { dataDir: '/d' }, env: { DEMO_PORT: '0x10' } }))).toMatch(/port \(env DEMO_PORT\)/);
  });

  it('checks ranges and choices', () => {
    expect(refusal(() => parseOption(port, 70_000, 'flag', error))).toBe('port (flag): must be at most 65535');
    expect(refusal(() => parseOption(port, '-1', 'flag', error))).toBe('port (flag): must be at least 0');
    expect(refusal(() => load({ flags: { dataDir: '/d', level: 'loud' } }))).toMatch(/level \(flag\): expected one of info, debug/);
  });

  it('reads booleans as true/1 and false/0 only', () => {
    for (const raw of [true, 'true', '1']) expect(parseOption(verbose, raw, 'flag', error)).toBe(true);
    for (const raw of [false, 'false', '0']) expect(parseOption(verbose, raw, 'flag', error)).toBe(false);
    for (const raw of ['yes', 'no', 'TRUE', 1, 'maybe']) expect(refusal(() => parseOption(verbose, raw, 'flag', error)), String(raw)).toMatch(/expected true or false/);
  });

  it('takes strings only as strings, and null as not set', () => {
    expect(parseOption(label, 'x', 'file', error)).toBe('x');
    expect(parseOption(label, null, 'file', error)).toBeNull();
    expect(refusal(() => parseOption(label, 12, 'file', error))).toMatch(/label \(file\): expected a string/);
  });

  it('refuses a missing required option, unknown file keys and what the cross-option check refuses', () => {
    expect(refusal(() => load({}))).toBe('dataDir is required');
    expect(refusal(() => load({ flags: { dataDir: '/d' }, file: { colour: 'red' } as never }))).toMatch(/unknown option "colour"/);
    const check = (c: Demo) => (c.port < 1024 && !c.verbose ? 'low ports need verbose' : undefined);
    expect(refusal(() => load({ flags: { dataDir: '/d', port: 80 } }, check))).toBe('low ports need verbose');
    expect(load({ flags: { dataDir: '/d', port: 80, verbose: true } }, check).port).toBe(80);
  });
});

describe('configuration file', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  const fileWith = (text: string) => {
    const dir = mkdtempSync(join(tmpdir(), 'config-test-'));
    dirs.push(dir);
    const path = join(dir, 'c.json');
    writeFileSync(path, text);
    return path;
  };

  it('holds one JSON object', () => {
    expect(readConfigFile(fileWith('{"port": 1}'), error)).toEqual({ port: 1 });
    expect(refusal(() => readConfigFile(fileWith('[1]'), error))).toMatch(/expected a JSON object/);
    expect(refusal(() => readConfigFile(fileWith('{port'), error))).toMatch(/c\.json/);
    expect(refusal(() => readConfigFile('/nonexistent/c.json', error))).toMatch(/nonexistent/);
  });
});
