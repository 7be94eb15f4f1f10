/**
 * The setup the job benches share: a fresh data directory with one account, enough licences for
 * `n` devices, `n` devices registered from a CSV and admitted, all ready on a job port that keeps
 * nothing but calls `onOffer` for each job offer sent, and a small firmware packet.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Message } from '@router-fleet/protocol';
import { loadConfig } from '../src/config.js';
import { createServices } from '../src/services.js';

export async function admittedFleet(name: string, n: number, onOffer: () => void) {
  const dir = mkdtempSync(join(tmpdir(), `fleet-${name}-`));
  const services = createServices(loadConfig({ flags: { dataDir: dir, logLevel: 'silent', scryptCost: 1024 }, env: {} }));
  const close = () => {
    services.close();
    rmSync(dir, { recursive: true, force: true });
  };
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
    let ready: ((deviceUuid: string, accountUuid: string) => void) | undefined;
    services.jobs.attach({
      send: (_uuid: string, message: Message) => {
        if (message.type === 'job-offer') onOffer();
        return true;
      },
      // Offers come as text from the job's template, as the channel sends them.
      sendText: (_uuid: string, text: string) => {
        if (text.startsWith('{"v":') && text.includes('"type":"job-offer"')) onOffer();
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
    return { services, scope, rows, packet, close };
  } catch (err) {
    close();
    throw err;
  }
}
