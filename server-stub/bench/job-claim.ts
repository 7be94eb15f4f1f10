/**
 * The server's own cost of offering one job to N connected devices, without sockets: claims,
 * execution rows, tokens, encoding, the record of the offers (the store file is real, with
 * `synchronous = FULL`). The devices are admitted and ready on a port that keeps what is sent.
 *
 *   npx tsx server-stub/bench/job-claim.ts [--devices 4000] [--rounds 3]
 *
 * Prints one JSON line per round: wall time and this process's CPU time from job creation until
 * every device was offered, per offer (CPU time moves less than wall time on a shared machine).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { Message } from '@router-fleet/protocol';
import { loadConfig } from '../src/config.js';
import { createServices } from '../src/services.js';

const { values } = parseArgs({ options: { devices: { type: 'string', default: '4000' }, rounds: { type: 'string', default: '3' } } });
const n = Number(values.devices);

for (let round = 0; round < Number(values.rounds); round++) {
  const dir = mkdtempSync(join(tmpdir(), 'fleet-job-claim-'));
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
    let offers = 0;
    let ready: ((deviceUuid: string, accountUuid: string) => void) | undefined;
    let allOffered: () => void = () => undefined;
    const done = new Promise<void>((resolve) => (allOffered = resolve));
    services.jobs.attach({
      send: (_uuid: string, message: Message) => {
        if (message.type === 'job-offer' && ++offers === n) allOffered();
        return true;
      },
      // Offers come as text from the job's template, as the channel sends them.
      sendText: (_uuid: string, text: string) => {
        if (text.startsWith('{"v":') && text.includes('"type":"job-offer"') && ++offers === n) allOffered();
        return true;
      },
      onDeviceReady: (listener) => (ready = listener),
      onJobProgress: () => undefined,
    });
    for (const r of rows) ready!(r.uuid, created.accountUuid);
    await new Promise((resolve) => setImmediate(resolve));
    const packet = await services.packets.build(scope, {
      name: 'bench firmware',
      components: [{ kind: 'firmware', fileName: 'firmware-99.0.0.bin', data: Buffer.alloc(16_384, 0x5a).toString('base64'), version: '99.0.0' }],
    } as never);
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    services.jobs.create(scope, { name: 'bench job', packetUuid: packet.uuid, target: { all: true } }, null);
    services.jobs.dispatch();
    await done;
    const wallMs = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    const cpuMs = (cpu.user + cpu.system) / 1000;
    process.stdout.write(
      `${JSON.stringify({ round, devices: n, offers, wallMs: Math.round(wallMs), cpuMs: Math.round(cpuMs), cpuUsPerOffer: Math.round((cpuMs * 1000) / n), offersPerCpuSec: Math.round(n / (cpuMs / 1000)) })}\n`,
    );
  } finally {
    services.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
