import { Buffer } from 'node:buffer';
import { fleetToCsv, generateFleet, RestError } from '@router-fleet/simulator';
import { withRest } from './local-server.js';

/**
 * Seeds an account through the REST API: a deterministic fleet (CSV mass registration) and one
 * update job to every device (the devices are offline, so the job stays in progress: its progress
 * view is what the job-progress scenario reads).
 */
export function seedAccount(url: string, token: string, options: { devices: number; seed?: number; job?: boolean }) {
  return withRest(url, token, async (rest) => {
    const started = performance.now();
    const fleet = generateFleet({ devices: options.devices, seed: options.seed ?? 7, customFields: false });
    // The import refers to groups by name: they must exist first.
    for (const name of new Set(fleet.map((d) => d.group))) {
      try {
        await rest.json('POST', '/api/inventory/device-groups', { name });
      } catch (err) {
        if (!(err instanceof RestError && err.code === 'SERVER_GROUP_NAME_TAKEN')) throw err;
      }
    }
    await (await rest.raw('POST', '/api/inventory/managed-devices/import', fleetToCsv(fleet), 'text/csv')).body.dump();
    const importSec = (performance.now() - started) / 1000;
    let jobUuid: string | undefined;
    if (options.job !== false) {
      const packet = await rest.json<{ uuid: string }>('POST', '/api/packets/build', {
        name: 'load-test firmware',
        components: [{ kind: 'firmware', fileName: 'autoupdate-10.5.0-full.arm64.tar', data: Buffer.alloc(4096, 7).toString('base64'), version: '10.5.0' }],
      });
      const job = await rest.json<{ uuid: string }>('POST', '/api/jobs', { name: 'load-test job', packetUuid: packet.uuid, target: { all: true } });
      jobUuid = job.uuid;
    }
    return { devices: options.devices, importSec: Math.round(importSec * 100) / 100, jobUuid };
  });
}
