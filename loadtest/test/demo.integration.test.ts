import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const DEMO = fileURLToPath(new URL('../dist/demo.js', import.meta.url));

describe('npm run demo -- --once', () => {
  it('admits 1,000 of 1,200 routers on the Free plan, updates all 1,000 and stops by itself', async () => {
    const started = Date.now();
    const { code, stdout } = await new Promise<{ code: number | null; stdout: string }>((resolve) => {
      const child = execFile(process.execPath, [DEMO, '--once'], { maxBuffer: 16 * 1024 * 1024, timeout: 170_000 }, () => undefined);
      let out = '';
      child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      child.on('exit', (c) => resolve({ code: c, stdout: out }));
    });
    expect(code, stdout.slice(-3000)).toBe(0);
    expect(stdout).toContain('1000 routers managed, 200 rejected');
    expect(stdout).toMatch(/job 100 %\s+succeeded 1000\s+failed 0/);
    expect(stdout).toContain('"online":1000');
    expect(stdout).toMatch(/API docs\s+https:\/\/127\.0\.0\.1:\d+\/docs/);
    expect(stdout).toMatch(/console\s+https:\/\/127\.0\.0\.1:\d+\/ /);
    expect(stdout).toMatch(/login\s+\S+ \/ \S+/);
    console.log(`demo finished in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }, 180_000);

  it('--transport mqtt: the same over MQTT through the server\'s embedded broker', async () => {
    const { code, stdout } = await new Promise<{ code: number | null; stdout: string }>((resolve) => {
      const child = execFile(process.execPath, [DEMO, '--once', '--transport', 'mqtt'], { maxBuffer: 16 * 1024 * 1024, timeout: 290_000 }, () => undefined);
      let out = '';
      child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      child.on('exit', (c) => resolve({ code: c, stdout: out }));
    });
    expect(code, stdout.slice(-3000)).toBe(0);
    expect(stdout).toContain('over MQTT through the server\'s embedded broker');
    expect(stdout).toContain('1000 routers managed, 200 rejected');
    expect(stdout).toMatch(/job 100 %\s+succeeded 1000\s+failed 0/);
    expect(stdout).toContain('"online":1000');
  }, 300_000);

  it('refuses an unknown --transport with a clear error', async () => {
    const { code, stderr } = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = execFile(process.execPath, [DEMO, '--once', '--transport', 'pigeon'], { timeout: 30_000 }, () => undefined);
      let err = '';
      child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
      child.on('exit', (c) => resolve({ code: c, stderr: err }));
    });
    expect(code).toBe(2);
    expect(stderr).toContain('--transport must be ws or mqtt');
  }, 60_000);
});
