/**
 * The messages the codec benches decode and encode: one `hello`, `status` and `job-progress` of
 * each of 1,024 routers. What is each router's own differs between the messages (serial number,
 * device id, credential, boot id, message id, execution id, its own certificates); what a fleet
 * shares (model, versions, capabilities, container names, a CA's certificate) is the same in all,
 * as it is in a fleet.
 */
import { createHash } from 'node:crypto';
import { createMessage, decode, encode, type Message } from '../src/index.js';

/** Where the routers' own random values come from. */
export interface RandomSource {
  uuid(): string;
  bytes(n: number): Buffer;
}

/** A source that gives the same values in every run, for counts that must repeat (up to 64 bytes a call). */
export function seededSource(seed = 'fleet'): RandomSource {
  let n = 0;
  const next = () => createHash('sha512').update(`${seed} ${n++}`).digest();
  return {
    bytes: (k) => {
      if (k > 64) throw new RangeError(`seededSource gives at most 64 bytes a call, not ${k}`);
      return next().subarray(0, k);
    },
    uuid: () => {
      const h = next().toString('hex');
      const variant = (8 | (Number.parseInt(h[16]!, 16) & 3)).toString(16);
      return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`;
    },
  };
}

/** Routers in the fleet: a power of two, so that a case can go round them with a mask. */
const ROUTERS = 1024;

export type BenchType = 'hello' | 'status' | 'job-progress';

// Real SHA-256 hex digests, distinct per certificate and per router: their mix of digits and
// letters is what routers send, and V8's test of `[0-9a-f]` branches on it. The cases go round the
// messages of 1,024 routers, as a server reads the messages of many: the processor learns the
// branches of a few strings seen again and again (the pattern takes about 50 ns on 4 or 64 real
// digests in turn, 250 on 4,000: `bench/patterns.ts`).
const sha = (router: number, c: string) =>
  createHash('sha256').update(`router ${router} certificate ${c}`).digest('hex');
const serial = (router: number) => `MRX5-2011-${String(router).padStart(6, '0')}`;
const ownDate = (router: number, i: number) =>
  new Date(Date.UTC(2027, 0, 1) + (router * 4 + i) * 86_400_000 + router * 1000).toISOString().replace('.000', '');
const now = 1_795_000_000_000;

/** Each type's messages, one per router. */
export function fleetMessages(random: RandomSource): Record<BenchType, Message[]> {
  const envelope = () => ({ sentAt: now, id: random.uuid() });
  const hello = (router: number) =>
    createMessage(
      'hello',
      {
        serialNumber: serial(router),
        deviceId: random.uuid(),
        credential: random.bytes(30).toString('base64'),
        model: 'MRX5 LTE',
        firmwareVersion: '10.3.2',
        agentVersion: '0.1.0',
        capabilities: ['firmware', 'configuration-profile', 'certificate', 'container', 'analytics'],
        bootId: random.uuid(),
        inventory: {
          activeSlot: 'a',
          configurationVersion: '7',
          certificates: 3,
          containers: 1,
          storageFreeBytes: 268435456,
        },
      },
      envelope(),
    );
  const status = (router: number) =>
    createMessage(
      'status',
      {
        uptimeSec: 86400,
        link: { type: 'lte', up: true, signalQuality: 72, rssiDbm: -71 },
        firmwareVersion: '10.3.2',
        configurationVersion: '7',
        certificates: ['a', 'b', 'c', 'd'].map((c, i) => ({
          fingerprintSha256: sha(router, c),
          subject: `CN=vpn-client-00012${i},OU=Plant ${i},O=Example Water Works`,
          // Two certificates a whole fleet shares (a CA's), two the router's own, issued on its day.
          notAfter: i < 2 ? '2030-12-31T23:59:59Z' : ownDate(router, i),
        })),
        containers: [
          { name: 'modbus-bridge', version: '2.4.1', state: 'running' },
          { name: 'node-red', version: '4.0.2', state: 'stopped' },
        ],
        location: { lat: 48.7758, lon: 9.1829, accuracyM: 25 },
      },
      envelope(),
    );
  const jobProgress = (router: number) =>
    createMessage(
      'job-progress',
      {
        executionId: `exe-${router.toString(16).padStart(4, '0')}-${random.bytes(4).toString('hex')}`,
        state: 'downloading',
        percent: 37.5,
        bytesDone: 3932160,
        bytesTotal: 10485760,
      },
      envelope(),
    );
  return {
    hello: Array.from({ length: ROUTERS }, (_, router) => hello(router)),
    status: Array.from({ length: ROUTERS }, (_, router) => status(router)),
    'job-progress': Array.from({ length: ROUTERS }, (_, router) => jobProgress(router)),
  };
}

/** The operations the codec benches measure, each next to its floor. */
export type CodecOperation = 'json-parse' | 'decode' | 'json-stringify' | 'encode' | 'encode-unvalidated';

/**
 * One type's frames and each operation on its `i`-th router's message, going round the fleet:
 * decode and its floor (`JSON.parse` of the UTF-8 text) read the encoded frames, encode and its
 * floor (`JSON.stringify`) the message objects.
 */
export function codecCases(list: Message[]): { frames: Buffer[]; run: Record<CodecOperation, (i: number) => unknown> } {
  const frames = list.map((message) => Buffer.from(encode(message)));
  const mask = list.length - 1;
  return {
    frames,
    run: {
      'json-parse': (i) => JSON.parse(frames[i & mask]!.toString('utf8')),
      decode: (i) => decode(frames[i & mask]!),
      'json-stringify': (i) => JSON.stringify(list[i & mask]),
      encode: (i) => encode(list[i & mask]!),
      'encode-unvalidated': (i) => encode(list[i & mask]!, { validate: false }),
    },
  };
}
