/**
 * Job creation → first offer on the server, without sockets: a job naming N admitted, ready
 * devices one by one (`target.deviceUuids`, as the scale run creates it), created through the
 * service (the store file is real, with `synchronous = FULL`).
 *
 *   npx tsx server-stub/bench/job-create.ts [--devices 15000] [--rounds 3]
 *
 * Prints one JSON line per round (a fresh data directory each): the create call's wall time (the
 * job, its targets and its event written in one transaction) and the time until the first offer
 * was handed to the channel.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { Message } from '@router-fleet/protocol';
import { loadConfig } from '../src/config.js';
import { createServices } from '../src/services.js';

const { values } = parseArgs({ options: { devices: { type: 'string', default: '15000' }, rounds: { type: 'string', default: '3' } } });
const n = Number(values.devices);

for (let round = 0; round < Number(values.rounds); round++) {
  const dir = mkdtempSync(join(tmpdir(), 'fleet-job-create-'));
  const services = createServices(loadConfig({ flags: { dataDir: dir, logLevel: 'silent', scryptCost: 1024 }, env: {} }));
  try {
    const created = await services.auth.createAccount({ name: 'Bench', username: 'bench', password: 'bench password 1' });
    const scope = services.auth.scope(created.accountId);
    const now = services.clock.now();
    for (const code of services.licensing.issue('pro', Math.ceil(n / 100), now)) {
      const l = services.licensing.redeem(scope, code, now);
      services.licensing.activate(scope, l.uuid, undefined, now);
    }
    const csv = ['serialNumber', ...Array.from({ length: n }, (_, i) => `BENCH-${String(i).padStart(6, '0')}`)].join('\n');
    services.devices.importCsv(scope, csv, false, n);
    const rows = scope.devices.profileRows({ afterId: 0, limit: n });
    services.admission.admitMany(rows.map((r) => ({ deviceUuid: r.uuid, credential: services.devices.credential(scope, r.uuid) })));
    let t0 = 0;
    let firstOfferMs = 0;
    let ready: ((deviceUuid: string, accountUuid: string) => void) | undefined;
    services.jobs.attach({
      send: (_uuid: string, message: Message) => {
        if (message.type === 'job-offer' && !firstOfferMs) firstOfferMs = performance.now() - t0;
        return true;
      },
      // Offers come as text from the job's template, as the channel sends them.
      sendText: (_uuid: string, text: string) => {
        if (!firstOfferMs && text.includes('"type":"job-offer"')) firstOfferMs = performance.now() - t0;
        return true;
      },
      onDeviceReady: (listener) => (ready = listener),
      onJobProgress: () => undefined,
    });
    for (const r of rows) ready!(r.uuid, created.accountUuid);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const packet = await services.packets.build(scope, {
      name: 'bench firmware',
      components: [{ kind: 'firmware', fileName: 'firmware-99.0.0.bin', data: Buffer.alloc(16_384, 0x5a).toString('base64'), version: '99.0.0' }],
    } as never);
    t0 = performance.now();
    services.jobs.create(scope, { name: 'bench job', packetUuid: packet.uuid, target: { deviceUuids: rows.map((r) => r.uuid) } }, null);
    const createMs = performance.now() - t0;
    while (!firstOfferMs) await new Promise((resolve) => setImmediate(resolve));
    process.stdout.write(`${JSON.stringify({ round, devices: n, createMs: Math.round(createMs), firstOfferMs: Math.round(firstOfferMs) })}\n`);
  } finally {
    services.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
