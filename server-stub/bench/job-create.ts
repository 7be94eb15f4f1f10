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
import { parseArgs } from 'node:util';
import { admittedFleet } from './admitted-fleet.js';

const { values } = parseArgs({ options: { devices: { type: 'string', default: '15000' }, rounds: { type: 'string', default: '3' } } });
const n = Number(values.devices);

for (let round = 0; round < Number(values.rounds); round++) {
  let t0 = 0;
  let firstOfferMs = 0;
  const { services, scope, rows, packet, close } = await admittedFleet('job-create', n, () => {
    if (!firstOfferMs && t0) firstOfferMs = performance.now() - t0;
  });
  try {
    t0 = performance.now();
    services.jobs.create(scope, { name: 'bench job', packetUuid: packet.uuid, target: { deviceUuids: rows.map((r) => r.uuid) } }, null);
    const createMs = performance.now() - t0;
    // A job that offers nothing (a regression) ends the bench instead of spinning forever.
    while (!firstOfferMs) {
      if (performance.now() - t0 > 60_000) throw new Error('no offer within 60 s of the job');
      await new Promise((resolve) => setImmediate(resolve));
    }
    process.stdout.write(`${JSON.stringify({ round, devices: n, createMs: Math.round(createMs), firstOfferMs: Math.round(firstOfferMs) })}\n`);
  } finally {
    close();
  }
}
