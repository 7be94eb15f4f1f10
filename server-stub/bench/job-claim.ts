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
import { parseArgs } from 'node:util';
import { admittedFleet } from './admitted-fleet.js';

const { values } = parseArgs({ options: { devices: { type: 'string', default: '4000' }, rounds: { type: 'string', default: '3' } } });
const n = Number(values.devices);

for (let round = 0; round < Number(values.rounds); round++) {
  let offers = 0;
  let allOffered: () => void = () => undefined;
  const done = new Promise<void>((resolve) => (allOffered = resolve));
  const { services, scope, packet, close } = await admittedFleet('job-claim', n, () => {
    if (++offers === n) allOffered();
  });
  try {
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
    close();
  }
}
