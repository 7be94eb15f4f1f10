import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { configTable, envName, isLoopbackHost, loadConfig } from '../src/config.js';
import { isAppError } from '../src/errors.js';
import { removeTempDirs, tempDir } from './helpers/setup.js';

afterEach(() => removeTempDirs());

function configError(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (isAppError(err) && err.code === 'SERVER_CONFIG_INVALID') return err.message;
    throw err;
  }
  throw new Error('no error');
}

describe('configuration', () => {
  it('has defaults for everything but the data directory', () => {
    const c = loadConfig({ flags: { dataDir: '/d' } });
    for (const spec of configTable) {
      if (spec.name !== 'dataDir') expect(c[spec.name], spec.name).toBe(spec.default);
    }
    expect(configError(() => loadConfig({}))).toMatch(/dataDir is required/);
  });

  it('takes flags over environment over file over defaults', () => {
    const file = join(tempDir(), 'c.json');
    writeFileSync(file, JSON.stringify({ dataDir: '/file', port: 1, leaseGraceSec: 7, sweepIntervalSec: 9 }));
    const c = loadConfig({
      flags: { port: 3 },
      env: { [envName('port')]: '2', [envName('leaseGraceSec')]: '8' },
      file,
    });
    expect(c).toMatchObject({ dataDir: '/file', port: 3, leaseGraceSec: 8, sweepIntervalSec: 9, pageSizeMax: 500 });
    expect(envName('leaseGraceSec')).toBe('FLEET_SERVER_LEASE_GRACE_SEC');
  });

  it('validates and freezes', () => {
    const c = loadConfig({ flags: { dataDir: '/d' } });
    expect(Object.isFrozen(c)).toBe(true);
    expect(configError(() => loadConfig({ flags: { dataDir: '/d', port: 70_000 } }))).toMatch(/port/);
    expect(configError(() => loadConfig({ flags: { dataDir: '/d' }, env: { FLEET_SERVER_PORT: 'eighty' } }))).toMatch(
      /FLEET_SERVER_PORT/,
    );
    for (const text of ['0x10', '1e3', '80.0']) {
      expect(configError(() => loadConfig({ flags: { dataDir: '/d' }, env: { FLEET_SERVER_PORT: text } })), text).toMatch(/FLEET_SERVER_PORT/);
    }
    expect(configError(() => loadConfig({ flags: { dataDir: '/d', logLevel: 'loud' } }))).toMatch(/logLevel/);
    expect(configError(() => loadConfig({ flags: { dataDir: '/d', tlsCert: '/c' } }))).toMatch(/together/);
    expect(configError(() => loadConfig({ flags: { dataDir: '/d', scryptCost: 3000 } }))).toMatch(/power of two/);
    expect(configError(() => loadConfig({ flags: { dataDir: '/d', testClock: 'yes' } }))).toMatch(/testClock/);
    expect(configError(() => loadConfig({ fileContent: { dataDir: '/d', colour: 'red' } as never }))).toMatch(/colour/);
  });

  it('every option documents its type, unit, default and purpose', () => {
    for (const s of configTable) {
      expect(s.unit.length, s.name).toBeGreaterThan(0);
      expect(s.description.length, s.name).toBeGreaterThan(10);
    }
  });
});

describe('listening address and plain HTTP', () => {
  it('listens on loopback by default', () => {
    expect(loadConfig({ flags: { dataDir: '/d' } }).host).toBe('127.0.0.1');
  });

  it('refuses plain HTTP on an address other hosts can reach unless allowPlainHttp is given', () => {
    for (const host of ['0.0.0.0', '::', '192.168.1.10', 'fleet.example.com']) {
      expect(configError(() => loadConfig({ flags: { dataDir: '/d', host } })), host).toMatch(/refusing plain HTTP .*--allow-plain-http/);
      expect(loadConfig({ flags: { dataDir: '/d', host, allowPlainHttp: true } }).host).toBe(host);
      expect(loadConfig({ flags: { dataDir: '/d', host, tlsCert: '/c.pem', tlsKey: '/k.pem' } }).host).toBe(host);
    }
    expect(loadConfig({ flags: { dataDir: '/d' }, env: { [envName('host')]: '0.0.0.0', [envName('allowPlainHttp')]: 'true' } }).allowPlainHttp).toBe(true);
  });

  it('counts 127.0.0.0/8, ::1 and localhost as loopback, and nothing else', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', 'localhost', '::ffff:127.0.0.1']) expect(isLoopbackHost(h), h).toBe(true);
    for (const h of ['0.0.0.0', '::', '', '10.0.0.1', '127.0.0.1.example.com', '128.0.0.1', 'localhost.example.com']) expect(isLoopbackHost(h), h).toBe(false);
  });
});
