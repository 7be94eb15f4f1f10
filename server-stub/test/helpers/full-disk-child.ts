// A reference server on a data directory given on the command line (the full-disk test mounts a
// small tmpfs there first, in a private mount namespace). Creates one account allowed to upload
// unsigned packets and prints one JSON line {url, token}; serves until killed.
// Usage: node --import ts-register.mjs full-disk-child.ts <dataDir> [reserveBytes]
import { TestClock } from '../../src/clock.js';
import { loadConfig } from '../../src/config.js';
import { main } from '../../src/main.js';
import { T0, worldOf } from './setup.js';

const [dataDir, reserve] = process.argv.slice(2);
const config = loadConfig({
  flags: {
    dataDir: dataDir!,
    logLevel: 'silent',
    scryptCost: 1024,
    port: 0,
    host: '127.0.0.1',
    storageReserveBytes: Number(reserve ?? 1_048_576),
    storageLowBytes: 512 * 1024,
  },
  env: {},
});
const clock = new TestClock(T0);
const server = await main(config, { clock, handleSignals: true });
const w = worldOf(server.app.services, clock, dataDir!);
const tenant = await w.newTenant('Full');
w.licences(tenant, 'basic-25', 1);
const login = await server.app.inject({
  method: 'POST',
  url: '/api/auth/login',
  payload: { username: tenant.username, password: tenant.password },
});
const token = (login.json() as { token: string }).token;
const policy = await server.app.inject({
  method: 'PUT',
  url: '/api/packets/policy',
  headers: { authorization: `Bearer ${token}` },
  payload: { allowUnsigned: true, trustAnchors: [] },
});
if (policy.statusCode !== 200) throw new Error(`policy: ${policy.statusCode} ${policy.body}`);
process.stdout.write(`${JSON.stringify({ url: server.url, token })}\n`);
