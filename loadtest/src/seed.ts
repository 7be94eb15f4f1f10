import { fleetToCsv, generateFleet } from '@router-fleet/simulator';
import { api } from './local-server.js';

/**
 * Seeds an account through the REST API: a deterministic fleet (CSV mass registration) and one
 * update job to every device (the devices are offline, so the job stays in progress: its progress
 * view is what the job-progress scenario reads).
 */
export async function seedAccount(url: string, token: string, options: { devices: number; seed?: number; job?: boolean }) {
  const started = performance.now();
  const fleet = generateFleet({ devices: options.devices, seed: options.seed ?? 7, customFields: false });
  // The import refers to groups by name: they must exist first.
  for (const name of new Set(fleet.map((d) => d.group))) {
    await api(url, token, 'POST', '/api/inventory/device-groups', { name }).catch((err: Error) => {
      if (!/409|EXISTS|exists/.test(err.message)) throw err;
    });
  }
  const csv = fleetToCsv(fleet);
  const res = await fetch(`${url}/api/inventory/managed-devices/import`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'text/csv' },
    body: csv,
  });
  const report = await res.json();
  if (!res.ok) throw new Error(`CSV import failed: ${res.status} ${JSON.stringify(report).slice(0, 500)}`);
  const importSec = (performance.now() - started) / 1000;
  let jobUuid: string | undefined;
  if (options.job !== false) {
    const packet = await api<{ uuid: string }>(url, token, 'POST', '/api/packets/build', {
      name: 'load-test firmware',
      components: [{ kind: 'firmware', fileName: 'autoupdate-10.5.0-full.arm64.tar', data: Buffer.alloc(4096, 7).toString('base64'), version: '10.5.0' }],
    });
    const job = await api<{ uuid: string }>(url, token, 'POST', '/api/jobs', { name: 'load-test job', packetUuid: packet.uuid, target: { all: true } });
    jobUuid = job.uuid;
  }
  return { devices: options.devices, importSec: Math.round(importSec * 100) / 100, jobUuid };
}
