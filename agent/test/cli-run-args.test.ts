import { describe, expect, it } from 'vitest';
import { parseRunArgs } from '../src/cli-run.js';

// `fleet-agent run` parses its flags without yargs (an idle agent does not load it); what it does
// not recognise as plain must go to yargs (undefined), never be guessed.
describe('parseRunArgs (run without yargs)', () => {
  it('parses the forms the documentation and the systemd unit use, as yargs names them', () => {
    expect(parseRunArgs(['run', '--no-supervise', '--data', '/var/lib/fleet-agent'])).toEqual({ supervise: false, dataDir: '/var/lib/fleet-agent' });
    expect(parseRunArgs(['run'])).toEqual({});
    expect(
      parseRunArgs(['run', '--data-dir=/d', '--boot-delay-max-sec', '0', '--backoff-base-ms=400', '--log-level', 'debug', '--allow-insecure-transport', '--config', 'c.json']),
    ).toEqual({ dataDir: '/d', bootDelayMaxSec: 0, backoffBaseMs: 400, logLevel: 'debug', allowInsecureTransport: true, config: 'c.json' });
    expect(parseRunArgs(['run', '--supervise', '--require-signatures=false'])).toEqual({ supervise: true, requireSignatures: false });
    expect(parseRunArgs(['run', '--fault', 'reboot.durationMs=10', '--fault=download.stallAt=5'])).toEqual({
      fault: ['reboot.durationMs=10', 'download.stallAt=5'],
    });
  });

  it('leaves everything else to yargs: other commands, help, unknown or repeated flags, missing or odd values', () => {
    for (const args of [
      [],
      ['version'],
      ['provision', 'p.tar'],
      ['run', '--help'],
      ['run', '-h'],
      ['run', '--no-such-flag', '1'],
      ['run', '--data', '/a', '--data', '/b'],
      ['run', '--data'],
      ['run', '--data', '--log-level', 'info'],
      ['run', '--boot-delay-max-sec', 'soon'],
      ['run', '--boot-delay-max-sec', '-1'],
      ['run', '--supervise', 'false'],
      ['run', '--no-data'],
      ['run', 'extra'],
      ['run', '--bootDelayMaxSec', '0'],
    ]) {
      expect(parseRunArgs(args), args.join(' ')).toBeUndefined();
    }
  });
});
