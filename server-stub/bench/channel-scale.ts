/**
 * Control-channel scale benchmark (loopback only, bounded in time, stops by itself).
 *
 *   npx tsx server-stub/bench/channel-scale.ts [--devices 30000] [--workers 2] [--clients 3] [--concurrency 300]
 *     [--skip-raw] [--job] [--packet-kb 16] [--tls] [--rate 0 | --rate-of-floor 0.6] [--licences N] [--bad-credentials 0]
 *
 * 1. Prepares a data directory with N registered devices and enough Pro licences (CSV import).
 * 2. Runs a raw `ws` server (accept, answer the first message with a canned welcome) and connects
 *    the same fake devices to it: the floor.
 *    Above 15,000 connections the raw server runs as a node:cluster of processes (the 20,000 open
 *    files of one process), like `--workers`.
 * 3. Runs `fleet-server serve --workers W` (built dist/) and connects N devices (hello → welcome,
 *    pongs answered): connections per second end to end, admissions per second, server RSS.
 * 2b. With `--job`, the floor of offering: the raw server sends one offer-shaped frame (a job
 *    offer's size and shape, another type name) to every connected device at once; the devices
 *    count it. Prints floor offers/s (devices ÷ time until the last received it).
 * 4. With `--job`: one update job (a small signed packet, `--packet-kb`) to every connected device.
 *    The fake devices answer like a router: download the packet with the offer's credential
 *    (honouring 503 + Retry-After), check its SHA-256, then report downloading → downloaded →
 *    installing → verifying → succeeded. Prints the time from creating the job until every device
 *    was offered (and offers/s next to the floor of 2b, same devices, same run) and until every
 *    device's success was acknowledged, and `untilAllOffered`: the CPU seconds of the server's
 *    processes until the last offer, and how busy each fake-device process was meanwhile (CPU
 *    seconds ÷ wall seconds; near 1 the clients, not the server, set the pace).
 *    `BENCH_CLIENT_NODE_ARGS` (like BENCH_SERVER_NODE_ARGS) passes node flags to the client processes.
 * `--rate-of-floor F` (0 < F ≤ 1): the target's own terms in one run: the raw floor as fast as it
 * comes, then a ramp at F × that floor, first against the raw server, then against fleet-server;
 * a last line (`target`) puts the devices' p99 and the server's own next to the raw floor's p99
 * at the same ramp, and says which of them stayed within 100 ms. Replaces `--rate` and `--skip-raw`.
 * `--tls`: the raw floor and the server both serve TLS (a local CA from `fleet-server tls generate`),
 * the devices verify it. `--rate R`: a ramp, R connects started per second in all (still at most
 * `--concurrency` in flight); 0 = as fast as the window allows. Each run also prints the hello →
 * welcome latency (p50, p99, max) as the fake devices measured it.
 * `--licences L`: seats for L devices only (Basic licences), so the devices beyond L are rejected
 * (`no-free-licence`) as in a scale run; `--bad-credentials K`: K devices (spread over the fleet)
 * send a wrong credential and are denied. The last line (`admission`) puts the server's figures
 * next to the floor's of the same run: admissions/s, ratio, hello → welcome p50/p99, the outcomes
 * the devices were told, and the load average before and after; beside them the server's own
 * hello → welcome histogram (`serverWelcome`), its garbage collection by kind (`serverGc`), and each
 * fake-device process's event-loop lag and CPU busy while connecting (`clientLoops`, also for the
 * floor): where the devices' figure was made. `BENCH_SERVER_STDOUT=file` keeps the server's stdout.
 * Clients are C child processes (each well under the 20,000 open-file limit), each on its own
 * 127.0.0.x source address so ephemeral ports never run out; each keeps a bounded number of
 * handshakes in flight. Prints one JSON line per measurement.
 */
import { type ChildProcess, execFileSync, fork, spawn } from 'node:child_process';
import cluster from 'node:cluster';
import { createHash } from 'node:crypto';
import { createWriteStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpsServer } from 'node:https';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { Agent, fetch as undiciFetch } from 'undici';
import WebSocket, { WebSocketServer } from 'ws';

const SELF = fileURLToPath(import.meta.url);
/** The server under test: this package's build, or another build's `dist/cli.js` (BENCH_SERVER_CLI) for before/after runs. */
const CLI = process.env['BENCH_SERVER_CLI'] ?? fileURLToPath(new URL('../dist/cli.js', import.meta.url));
const SUBPROTOCOL = 'router-fleet.v1';

interface Dev {
  u: string;
  s: string;
  c: string;
}

function rssKb(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** CPU seconds (user + system) a process has used so far. */
function cpuSec(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

/** `of` summed over a process and all its children (cluster workers). */
function treeSum(pid: number, of: (pid: number) => number): number {
  let total = of(pid);
  try {
    const kids = execFileSync('pgrep', ['-P', String(pid)]).toString().trim().split('\n').filter(Boolean).map(Number);
    for (const k of kids) total += treeSum(k, of);
  } catch {
    // no children
  }
  return total;
}

/** CPU seconds of a process and all its children (cluster workers), a load-independent cost. */
const treeCpuSec = (pid: number) => treeSum(pid, cpuSec);

/** RSS of a process and all its children (cluster workers). */
const treeRssKb = (pid: number) => treeSum(pid, rssKb);

// ── client child: connect a slice of devices, report, then idle until told to stop ──────────
async function client(): Promise<void> {
  const { url, file, from, to, local, concurrency, rate, caFile } = JSON.parse(process.env['BENCH_CLIENT']!) as {
    url: string;
    file: string;
    from: number;
    to: number;
    local: string;
    concurrency: number;
    /** Connects started per second by this client (0: as fast as the window allows). */
    rate: number;
    caFile: string;
  };
  const ca = caFile ? readFileSync(caFile) : undefined;
  /** hello sent → welcome received (ms), per admitted device. */
  const latencies: number[] = [];
  const devices = (JSON.parse(readFileSync(file, 'utf8')) as Dev[]).slice(from, to);
  const sockets: WebSocket[] = [];
  let next = 0;
  let ok = 0;
  let failed = 0;
  /** What the devices were told: welcome admissions, and auth failures (close 4003). */
  const outcomes: Record<string, number> = {};
  const job = { floorOffers: 0, lastFloorOfferAt: 0, offers: 0, lastOfferAt: 0, succeeded: 0, lastSuccessAt: 0, downloadRetries: 0, errors: 0, firstError: '' };
  // Downloads as the simulator's agents make them: one bounded keep-alive pool per client process,
  // from the client's source address (a socket per download runs out of ephemeral ports).
  const pool = new Agent({ connections: 64, localAddress: local, ...(ca ? { connect: { ca } } : {}) });
  const failedWith = (message: string) => {
    job.errors++;
    job.firstError ||= message;
  };
  const progress = (ws: WebSocket, executionId: string, state: string, extra: object = {}) => {
    const id = `g-${executionId}-${state}`;
    ws.send(JSON.stringify({ v: '1.0', type: 'job-progress', id, sentAt: Date.now(), body: { executionId, state, ...extra } }));
    return id;
  };
  /** What a router does with an offer, minus the install: fetch, verify, report. */
  type Offer = { executionId: string; packet: { url: string; size: number; sha256: string }; download: { token: string } };
  const runOffer = async (ws: WebSocket, offer: Offer) => {
    const { executionId, packet, download } = offer;
    progress(ws, executionId, 'downloading', { percent: 0, bytesDone: 0, bytesTotal: packet.size });
    for (;;) {
      const res = await undiciFetch(packet.url, { headers: { authorization: `Bearer ${download.token}` }, dispatcher: pool });
      if (res.status === 503) {
        await res.arrayBuffer();
        job.downloadRetries++;
        const wait = Number(res.headers.get('retry-after') ?? '1') * 1000;
        await new Promise((r) => setTimeout(r, wait * (0.5 + Math.random())));
        continue;
      }
      const body = Buffer.from(await res.arrayBuffer());
      if (!res.ok || createHash('sha256').update(body).digest('hex') !== packet.sha256) {
        failedWith(`HTTP ${res.status}`);
        progress(ws, executionId, 'failed', { errorCode: 'AGENT_DOWNLOAD_FAILED', errorMessage: `HTTP ${res.status}` });
        return;
      }
      break;
    }
    progress(ws, executionId, 'downloaded', { percent: 100, bytesDone: packet.size, bytesTotal: packet.size });
    progress(ws, executionId, 'installing');
    progress(ws, executionId, 'verifying');
    pendingAcks.set(progress(ws, executionId, 'succeeded', { percent: 100 }), true);
  };
  const pendingAcks = new Map<string, boolean>();
  // The fake devices time hello → welcome on their own event loop: a loop that lags (TLS handshakes
  // of the other connects) inflates the figure for the floor and the server alike. Reported with it.
  const lag = monitorEventLoopDelay({ resolution: 10 });
  lag.enable();
  const cpu0 = process.cpuUsage();
  const start = performance.now();
  const one = (d: Dev) =>
    new Promise<void>((resolve) => {
      const ws = new WebSocket(url, [SUBPROTOCOL], { localAddress: local, perMessageDeflate: false, ...(ca ? { ca } : {}) });
      let helloAt = 0;
      sockets.push(ws);
      let done = false;
      const finish = (good: boolean) => {
        if (done) return;
        done = true;
        if (good) ok++;
        else failed++;
        resolve();
      };
      ws.on('open', () => {
        helloAt = performance.now();
        ws.send(
          JSON.stringify({
            v: '1.0',
            type: 'hello',
            id: `h-${d.s}`,
            sentAt: Date.now(),
            body: {
              serialNumber: d.s,
              deviceId: d.u,
              credential: d.c,
              model: 'MRX5',
              firmwareVersion: '10.3.2',
              agentVersion: '0.1.0',
              capabilities: [],
              bootId: `b-${d.s}`,
              inventory: { certificates: 0, containers: 0 },
            },
          }),
        );
      });
      ws.on('message', (data) => {
        const text = data.toString();
        if (text.includes('"type":"welcome"')) {
          if (!done) {
            latencies.push(performance.now() - helloAt);
            const outcome = /"admission":"([a-z]+)"/.exec(text)?.[1] ?? 'unknown';
            outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
          }
          finish(true);
        } else if (text.includes('"type":"floor-offer"')) {
          job.floorOffers++;
          job.lastFloorOfferAt = Date.now();
        } else if (text.includes('"type":"job-offer"')) {
          job.offers++;
          job.lastOfferAt = Date.now();
          runOffer(ws, (JSON.parse(text) as { body: Offer }).body).catch((e: Error) => failedWith(`${e.message} ${(e.cause as Error | undefined)?.message ?? ''}`));
        } else if (text.includes('"type":"ack"')) {
          const correlationId = (JSON.parse(text) as { correlationId?: string }).correlationId;
          if (correlationId && pendingAcks.delete(correlationId)) {
            job.succeeded++;
            job.lastSuccessAt = Date.now();
          }
        } else if (text.includes('"type":"ping"')) {
          const id = /"id":"([^"]+)"/.exec(text)?.[1];
          ws.send(JSON.stringify({ v: '1.0', type: 'pong', id: `p-${id}`, correlationId: id, sentAt: Date.now(), body: {} }));
        }
      });
      ws.on('error', () => finish(false));
      ws.on('close', (code) => {
        if (!done && code === 4003) outcomes['denied'] = (outcomes['denied'] ?? 0) + 1;
        finish(false);
      });
    });
  const worker = async () => {
    while (next < devices.length) {
      const i = next++;
      // A ramp: the i-th connect starts no earlier than i / rate seconds after the start.
      const due = rate > 0 ? start + (i / rate) * 1000 : 0;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      await one(devices[i]!);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const seconds = (performance.now() - start) / 1000;
  lag.disable();
  const cpu = process.cpuUsage(cpu0);
  const loop = {
    lagP99Ms: +(lag.percentile(99) / 1e6).toFixed(1),
    lagMaxMs: +(lag.max / 1e6).toFixed(1),
    busy: +((cpu.user + cpu.system) / 1e6 / seconds).toFixed(2),
  };
  process.send!({ ok, failed, seconds, latencies, outcomes, loop });
  process.on('message', (m) => {
    if (m === 'job') return void process.send!({ job });
    for (const ws of sockets) ws.terminate();
    process.exit(0);
  });
}

// ── raw ws floor server ─────────────────────────────────────────────────────────────────────
function rawServer(): void {
  const processes = Number(process.env['BENCH_RAW_PROCESSES'] ?? '1');
  if (cluster.isPrimary && processes > 1) {
    // Round-robin: the primary accepts and hands each socket to a worker (and closes its copy).
    cluster.schedulingPolicy = cluster.SCHED_RR;
    cluster.setupPrimary({ execArgv: process.execArgv });
    let listening = 0;
    cluster.on('listening', (_worker, address) => {
      if (++listening === processes) process.send!({ port: address.port });
    });
    // Every worker listens on port 0: the primary keys the shared handle by (address, port 0), so
    // all get the same random port (a worker naming that port explicitly would ask for a new bind).
    for (let i = 0; i < processes; i++) cluster.fork();
    return;
  }
  const tls = process.env['BENCH_RAW_TLS'] ? (JSON.parse(process.env['BENCH_RAW_TLS']) as { cert: string; key: string }) : undefined;
  const common = { perMessageDeflate: false, clientTracking: false, maxPayload: 65536 };
  let wss: WebSocketServer;
  if (tls) {
    const server = createHttpsServer({ cert: readFileSync(tls.cert), key: readFileSync(tls.key) });
    wss = new WebSocketServer({ server, ...common });
    server.listen(0, '127.0.0.1', () => wss.emit('listening'));
  } else {
    wss = new WebSocketServer({ port: 0, host: '127.0.0.1', ...common });
  }
  const welcome = JSON.stringify({ v: '1.0', type: 'welcome', id: 'w', sentAt: 0, body: { admission: 'managed' } });
  const open = new Set<WebSocket>();
  wss.on('connection', (ws) => {
    open.add(ws);
    ws.once('message', () => ws.send(welcome));
    ws.on('error', () => undefined);
    ws.on('close', () => open.delete(ws));
  });
  // The floor of offering (single process only): the same frame to every socket, one send each.
  process.on('message', (m: { floorOffer?: string }) => {
    if (m.floorOffer === undefined) return;
    for (const ws of open) ws.send(m.floorOffer);
  });
  if (!cluster.isWorker) wss.on('listening', () => process.send!({ port: (wss.address() as { port: number }).port }));
}

// ── orchestrator ────────────────────────────────────────────────────────────────────────────
async function prepare(dir: string, n: number, seats: number, badCredentials: number): Promise<string> {
  // The data directory is made by the build under test (its migrations: another build refuses a newer store).
  type Src = typeof import('../src/services.js') & typeof import('../src/config.js');
  const { createServices } = (await import(process.env['BENCH_SERVER_CLI'] ? new URL('./services.js', pathToFileURL(CLI)).href : '../src/services.js')) as Src;
  const { loadConfig } = (await import(process.env['BENCH_SERVER_CLI'] ? new URL('./config.js', pathToFileURL(CLI)).href : '../src/config.js')) as Src;
  const services = createServices(loadConfig({ flags: { dataDir: dir, logLevel: 'silent', scryptCost: 1024 }, env: {} }));
  try {
    const created = await services.auth.createAccount({ name: 'Bench', username: 'bench', password: 'bench password 1' });
    const scope = services.auth.scope(created.accountId);
    const now = services.clock.now();
    // Basic licences (25 seats and 1 seat) add up to exactly `seats`.
    const codes = [...services.licensing.issue('basic-25', Math.floor(seats / 25), now), ...services.licensing.issue('basic-1', seats % 25, now)];
    for (const code of codes) {
      const l = services.licensing.redeem(scope, code, now);
      services.licensing.activate(scope, l.uuid, undefined, now);
    }
    const csv = ['serialNumber', ...Array.from({ length: n }, (_, i) => `BENCH-${String(i).padStart(6, '0')}`)].join('\n');
    services.devices.importCsv(scope, csv, false, n);
    const rows = scope.devices.profileRows({ afterId: 0, limit: n });
    const every = badCredentials > 0 ? Math.floor(n / badCredentials) : 0;
    const devices: Dev[] = rows.map((r, i) => {
      const c = services.devices.credential(scope, r.uuid);
      // Spread over the fleet: every `every`-th device sends a credential that is not its own.
      const bad = every > 0 && i % every === every - 1 && Math.floor(i / every) < badCredentials;
      return { u: r.uuid, s: r.serial_number, c: bad ? `${c.slice(0, -1)}${c.endsWith('A') ? 'B' : 'A'}` : c };
    });
    const file = join(dir, 'devices.json');
    writeFileSync(file, JSON.stringify(devices));
    return file;
  } finally {
    services.close();
  }
}

/**
 * From the server's merged /metrics (all processes): count and sum of
 * `fleet_admission_transaction_seconds` (undefined when the server under test does not export it,
 * an older build); the garbage collector's pauses by kind (count, total seconds); and the
 * server's own hello → welcome histogram (`fleet_admission_duration_seconds`, hello frame decoded
 * to welcome written): the bucket its p99 falls in, and how many took longer than 50 and 100 ms;
 * how many admission transactions took longer than 25, 50 and 100 ms, and GC pauses over 10 and 100 ms.
 * Set beside the devices' figure, it tells the server's wait from what the network, the event
 * loops and TLS added.
 */
async function readServerMetrics(baseUrl: string, caFile: string) {
  const dispatcher = caFile ? new Agent({ connect: { ca: readFileSync(caFile) } }) : undefined;
  const text = await undiciFetch(`${baseUrl}/metrics`, dispatcher ? { dispatcher } : {}).then((r) => r.text());
  const count = /^fleet_admission_transaction_seconds_count(?:\{\})? (\S+)$/m.exec(text)?.[1];
  const sum = /^fleet_admission_transaction_seconds_sum(?:\{\})? (\S+)$/m.exec(text)?.[1];
  const commits = count === undefined || sum === undefined ? undefined : { count: Number(count), sum: Number(sum) };
  const gc: Record<string, { count: number; seconds: number; over10Ms: number; over100Ms: number }> = {};
  for (const m of text.matchAll(/^nodejs_gc_duration_seconds_(count|sum)\{kind="([a-z]+)"\} (\S+)$/gm)) {
    const kind = (gc[m[2]!] ??= { count: 0, seconds: 0, over10Ms: 0, over100Ms: 0 });
    if (m[1] === 'count') kind.count = Number(m[3]);
    else kind.seconds = +Number(m[3]).toFixed(3);
  }
  for (const [kind, g] of Object.entries(gc)) {
    const b = buckets(text, 'nodejs_gc_duration_seconds', `kind="${kind}"`);
    g.over10Ms = b.over(0.01);
    g.over100Ms = b.over(0.1);
  }
  const welcome = buckets(text, 'fleet_admission_duration_seconds');
  const serverWelcome =
    welcome.total > 0
      ? { count: welcome.total, p99AtMostMs: welcome.p99AtMost * 1000, over50Ms: welcome.over(0.05), over100Ms: welcome.over(0.1) }
      : undefined;
  const tx = buckets(text, 'fleet_admission_transaction_seconds');
  const transactionsOver = { over25Ms: tx.over(0.025), over50Ms: tx.over(0.05), over100Ms: tx.over(0.1) };
  return { commits, gc, serverWelcome, transactionsOver };
}

/** A histogram of a Prometheus text, its cumulative buckets summed over the series that contain `having`. */
function buckets(text: string, name: string, having = '') {
  const cumulative = new Map<number, number>();
  for (const m of text.matchAll(new RegExp(`^${name}_bucket\\{([^}]*)\\} (\\S+)$`, 'gm'))) {
    const le = /le="([^"]+)"/.exec(m[1]!)?.[1];
    if (le === undefined || !m[1]!.includes(having)) continue;
    const bound = le === '+Inf' ? Number.POSITIVE_INFINITY : Number(le);
    cumulative.set(bound, (cumulative.get(bound) ?? 0) + Number(m[2]));
  }
  const total = cumulative.get(Number.POSITIVE_INFINITY) ?? 0;
  const bounds = [...cumulative.keys()].sort((x, y) => x - y);
  return {
    total,
    /** How many took longer than `seconds` (a bucket bound). */
    over: (seconds: number) => total - (cumulative.get(seconds) ?? total),
    /** The smallest bucket bound at or under which 99 % fall. */
    p99AtMost: bounds.find((x) => (cumulative.get(x) ?? 0) >= 0.99 * total) ?? Number.NaN,
  };
}

/** p50, p99 and max of the hello → welcome latencies (ms). */
function percentiles(values: number[]): { p50Ms: number; p99Ms: number; maxMs: number } {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => +(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0).toFixed(1);
  return { p50Ms: at(0.5), p99Ms: at(0.99), maxMs: +(sorted.at(-1) ?? 0).toFixed(1) };
}

async function runClients(url: string, file: string, n: number, clients: number, concurrency: number, rate: number, caFile: string) {
  const per = Math.ceil(n / clients);
  const children: ChildProcess[] = [];
  const results = await Promise.all(
    Array.from({ length: clients }, (_, i) => {
      const child = fork(SELF, [], {
        env: {
          ...process.env,
          BENCH_CLIENT: JSON.stringify({
            url,
            file,
            from: i * per,
            to: Math.min(n, (i + 1) * per),
            local: `127.0.0.${2 + i}`,
            concurrency: Math.ceil(concurrency / clients),
            rate: rate / clients,
            caFile,
          }),
        },
        // BENCH_CLIENT_NODE_ARGS (e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`): node flags for the fake devices' processes only.
        execArgv: [...process.execArgv, ...(process.env['BENCH_CLIENT_NODE_ARGS']?.split(' ').filter(Boolean) ?? [])],
      });
      children.push(child);
      return new Promise<{
        ok: number;
        failed: number;
        seconds: number;
        latencies: number[];
        outcomes: Record<string, number>;
        loop: { lagP99Ms: number; lagMaxMs: number; busy: number };
      }>((resolve) =>
        child.once('message', resolve as never),
      );
    }),
  );
  const ok = results.reduce((a, r) => a + r.ok, 0);
  const failed = results.reduce((a, r) => a + r.failed, 0);
  const seconds = Math.max(...results.map((r) => r.seconds));
  const outcomes: Record<string, number> = {};
  for (const r of results) for (const [k, v] of Object.entries(r.outcomes)) outcomes[k] = (outcomes[k] ?? 0) + v;
  return {
    ok,
    failed,
    seconds,
    outcomes,
    welcome: percentiles(results.flatMap((r) => r.latencies)),
    /** Each client process's event-loop lag (p99, max) and CPU busy (CPU s ÷ wall s) while it connected. */
    clientLoops: results.map((r) => r.loop),
    children,
    stop: async () => {
      await Promise.all(
        children.map(
          (c) =>
            new Promise<void>((resolve) => {
              c.once('exit', () => resolve());
              c.send('stop');
            }),
        ),
      );
    },
  };
}

interface JobCounts {
  floorOffers: number;
  lastFloorOfferAt: number;
  offers: number;
  lastOfferAt: number;
  succeeded: number;
  lastSuccessAt: number;
  downloadRetries: number;
  errors: number;
  /** The first failure's message (download status or network error), for the report. */
  firstError: string;
}

/** The job counters of every client process, summed. */
async function jobCounts(children: ChildProcess[]): Promise<JobCounts> {
  const all = await Promise.all(
    children.map(
      (c) =>
        new Promise<JobCounts>((resolve) => {
          c.once('message', (m: { job: JobCounts }) => resolve(m.job));
          c.send('job');
        }),
    ),
  );
  return {
    floorOffers: all.reduce((a, x) => a + x.floorOffers, 0),
    lastFloorOfferAt: Math.max(...all.map((x) => x.lastFloorOfferAt)),
    offers: all.reduce((a, x) => a + x.offers, 0),
    lastOfferAt: Math.max(...all.map((x) => x.lastOfferAt)),
    succeeded: all.reduce((a, x) => a + x.succeeded, 0),
    lastSuccessAt: Math.max(...all.map((x) => x.lastSuccessAt)),
    downloadRetries: all.reduce((a, x) => a + x.downloadRetries, 0),
    errors: all.reduce((a, x) => a + x.errors, 0),
    firstError: all.map((x) => x.firstError).find(Boolean) ?? '',
  };
}

/**
 * A frame of a job offer's shape and size (uuids, a token and a URL of the real lengths) under
 * another type name, which the fake devices count and do not act on.
 */
function floorOfferFrame(): string {
  const uuid = '00000000-0000-4000-8000-000000000000';
  return JSON.stringify({
    v: '1.1',
    type: 'floor-offer',
    id: uuid,
    sentAt: Date.now(),
    body: {
      executionId: uuid,
      jobId: uuid,
      packet: { url: `https://127.0.0.1:40000/api/packets/download/${uuid}`, size: 20480, sha256: 'f'.repeat(64), description: 'bench firmware' },
      download: { token: `${Buffer.from(JSON.stringify({ e: uuid, d: uuid, x: Date.now() })).toString('base64url')}.${'m'.repeat(43)}`, expiresAt: Date.now() },
      deadline: Date.now(),
      allowDowngrade: false,
    },
  });
}

/** Floor of offering: the raw server sends one offer-shaped frame to each connected device. */
async function floorOffers(
  raw: ChildProcess,
  children: ChildProcess[],
  connected: number,
): Promise<{ offersPerSec: number; seconds: number; received: number }> {
  const started = Date.now();
  raw.send({ floorOffer: floorOfferFrame() });
  const limit = started + 60_000;
  let c = await jobCounts(children);
  while (c.floorOffers < connected && Date.now() < limit) {
    await new Promise((res) => setTimeout(res, 50));
    c = await jobCounts(children);
  }
  const seconds = (c.lastFloorOfferAt - started) / 1000;
  return { offersPerSec: Math.round(c.floorOffers / seconds), seconds: +seconds.toFixed(2), received: c.floorOffers };
}

/** One job to every connected fake device; prints time to all offered and to all succeeded. */
async function jobFanOut(
  baseUrl: string,
  children: ChildProcess[],
  connected: number,
  packetBytes: number,
  caFile: string,
  floor: { offersPerSec: number } | undefined,
  serverPid: number,
): Promise<void> {
  const dispatcher = caFile ? new Agent({ connect: { ca: readFileSync(caFile) } }) : undefined;
  const fetch = (url: string, init: Parameters<typeof undiciFetch>[1] = {}) => undiciFetch(url, { ...init, ...(dispatcher ? { dispatcher } : {}) });
  const call = async <T>(method: string, path: string, token: string | undefined, body: unknown): Promise<T> => {
    const res = await fetch(`${baseUrl}${path}`, {
      method,
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify(body),
    });
    if (!res.ok) throw new Error(`${method} ${path}: HTTP ${res.status} ${await res.text()}`);
    return (await res.json()) as T;
  };
  const { token } = await call<{ token: string }>('POST', '/api/auth/login', undefined, { username: 'bench', password: 'bench password 1' });
  const image = Buffer.alloc(packetBytes, 0x5a);
  const packet = await call<{ uuid: string; sizeBytes?: number }>('POST', '/api/packets/build', token, {
    name: 'bench firmware',
    components: [{ kind: 'firmware', fileName: 'firmware-99.0.0.bin', data: image.toString('base64'), version: '99.0.0' }],
  });
  // CPU seconds of the server (all processes) and of each fake-device process while the offers go out:
  // a process busy all that window (busy ≈ 1) is what bounds the offers/s.
  const serverCpu0 = treeCpuSec(serverPid);
  const clientCpu0 = children.map((ch) => cpuSec(ch.pid!));
  const created = Date.now();
  const job = await call<{ uuid: string }>('POST', '/api/jobs', token, { name: 'bench job', packetUuid: packet.uuid, target: { all: true } });
  const createMs = Date.now() - created;
  const counts = () => jobCounts(children);
  const limit = created + 10 * 60_000;
  let c = await counts();
  let offerWindow: { seconds: number; serverCpuSec: number; clientCpuSec: number[] } | undefined;
  // Until every device has succeeded or failed (a failure does not end the wait: the figures say how many).
  while ((c.succeeded + c.errors < connected || c.offers < connected) && Date.now() < limit) {
    await new Promise((res) => setTimeout(res, offerWindow ? 1000 : 100));
    c = await counts();
    if (!offerWindow && c.offers >= connected) {
      offerWindow = {
        seconds: (Date.now() - created) / 1000,
        serverCpuSec: treeCpuSec(serverPid) - serverCpu0,
        clientCpuSec: children.map((ch, i) => cpuSec(ch.pid!) - clientCpu0[i]!),
      };
    }
  }
  const view = await fetch(`${baseUrl}/api/jobs/${job.uuid}`, { headers: { authorization: `Bearer ${token}` } }).then(
    (r) => r.json() as Promise<{ state: string; progress: { percentComplete: number; results: Record<string, number> } }>,
  );
  process.stdout.write(
    `${JSON.stringify({
      job: `one job to ${connected} devices, ${packetBytes / 1024} KiB packet`,
      createRequestMs: createMs,
      offered: c.offers,
      allOfferedSec: +((c.lastOfferAt - created) / 1000).toFixed(2),
      offersPerSec: Math.round(c.offers / ((c.lastOfferAt - created) / 1000)),
      ...(floor ? { floorOffersPerSec: floor.offersPerSec, ratio: +(c.offers / ((c.lastOfferAt - created) / 1000) / floor.offersPerSec).toFixed(2) } : {}),
      succeeded: c.succeeded,
      allSucceededSec: +((c.lastSuccessAt - created) / 1000).toFixed(2),
      executionsPerSec: Math.round(c.succeeded / ((c.lastSuccessAt - created) / 1000)),
      ...(offerWindow
        ? {
            untilAllOffered: {
              seconds: +offerWindow.seconds.toFixed(2),
              serverCpuSec: +offerWindow.serverCpuSec.toFixed(2),
              clientBusy: offerWindow.clientCpuSec.map((x) => +(x / offerWindow.seconds).toFixed(2)),
            },
          }
        : {}),
      downloadRetries: c.downloadRetries,
      errors: c.errors,
      ...(c.firstError ? { firstError: c.firstError } : {}),
      server: { state: view.state, percentComplete: view.progress.percentComplete, results: view.progress.results },
    })}\n`,
  );
}

async function orchestrate(): Promise<void> {
  const { values } = parseArgs({
    options: {
      devices: { type: 'string', default: '30000' },
      workers: { type: 'string', default: '2' },
      clients: { type: 'string', default: '3' },
      concurrency: { type: 'string', default: '300' },
      'skip-raw': { type: 'boolean', default: false },
      job: { type: 'boolean', default: false },
      'packet-kb': { type: 'string', default: '16' },
      tls: { type: 'boolean', default: false },
      rate: { type: 'string', default: '0' },
      'rate-of-floor': { type: 'string', default: '0' },
      licences: { type: 'string' },
      'bad-credentials': { type: 'string', default: '0' },
    },
  });
  let rate = Number(values.rate);
  const rateOfFloor = Number(values['rate-of-floor']);
  if (!(rateOfFloor >= 0 && rateOfFloor <= 1)) throw new Error('--rate-of-floor takes a fraction in (0, 1]');
  const n = Number(values.devices);
  const workers = Number(values.workers);
  const clients = Number(values.clients);
  const concurrency = Number(values.concurrency);
  const seats = values.licences === undefined ? n : Number(values.licences);
  const badCredentials = Number(values['bad-credentials']);
  const load = () => loadavg().map((x) => +x.toFixed(1));
  const loadBefore = load();
  type Loop = { lagP99Ms: number; lagMaxMs: number; busy: number };
  type Floor = { connectsPerSec: number; welcome: ReturnType<typeof percentiles>; cpuMsPerConnect: number; clientLoops: Loop[] };
  /** The raw floor of the server's run (at its ramp when there is one). */
  let floor: Floor | undefined;
  /** With --rate-of-floor: the raw floor as fast as it comes, whose fraction is the ramp. */
  let fastFloor: Floor | undefined;
  const dir = mkdtempSync(join(tmpdir(), 'fleet-bench-'));
  const timedOut = () => {
    process.stdout.write(`${JSON.stringify({ error: 'benchmark timed out' })}\n`);
    process.exit(2);
  };
  let deadline = setTimeout(timedOut, 15 * 60_000);
  try {
    const t0 = performance.now();
    const file = await prepare(dir, n, seats, badCredentials);
    process.stdout.write(`${JSON.stringify({ step: 'prepare', devices: n, seats, badCredentials, seconds: (performance.now() - t0) / 1000 })}\n`);
    const tls = values.tls
      ? (JSON.parse(execFileSync(process.execPath, [CLI, 'tls', 'generate', '--data', dir, '--ip', '127.0.0.1']).toString()) as { ca: string; cert: string; key: string })
      : undefined;
    const scheme = tls ? 'wss' : 'ws';
    let offerFloor: { offersPerSec: number } | undefined;

    /** The raw floor at `floorRate` (0: as fast as it comes), printed as one line; `label` names the run. */
    const rawFloor = async (floorRate: number, label: string) => {
      const rawProcesses = Math.ceil(n / 15_000);
      const raw = fork(SELF, [], {
        env: { ...process.env, BENCH_RAW: '1', BENCH_RAW_PROCESSES: String(rawProcesses), ...(tls ? { BENCH_RAW_TLS: JSON.stringify(tls) } : {}) },
        execArgv: process.execArgv,
      });
      const { port } = await new Promise<{ port: number }>((resolve) => raw.once('message', resolve as never));
      await new Promise((res) => setTimeout(res, 500));
      const idle = treeRssKb(raw.pid!);
      const cpu0 = treeCpuSec(raw.pid!);
      const r = await runClients(`${scheme}://127.0.0.1:${port}/`, file, n, clients, concurrency, floorRate, tls?.ca ?? '');
      await new Promise((res) => setTimeout(res, 500));
      const rss = treeRssKb(raw.pid!);
      const cpuMsPerConnect = +(((treeCpuSec(raw.pid!) - cpu0) * 1000) / Math.max(1, r.ok)).toFixed(2);
      const measured: Floor = { connectsPerSec: Math.round(r.ok / r.seconds), welcome: r.welcome, cpuMsPerConnect, clientLoops: r.clientLoops };
      process.stdout.write(
        `${JSON.stringify({
          server: `raw ${scheme} (${rawProcesses} process${rawProcesses > 1 ? 'es' : ''})`,
          ...(label ? { run: label } : {}),
          rate: floorRate || 'unlimited',
          connected: r.ok,
          failed: r.failed,
          seconds: +r.seconds.toFixed(2),
          connectsPerSec: Math.round(r.ok / r.seconds),
          welcome: r.welcome,
          cpuMsPerConnect,
          rssIdleMb: +(idle / 1024).toFixed(1),
          rssMb: +(rss / 1024).toFixed(1),
          rssPerConnKb: +((rss - idle) / Math.max(1, r.ok)).toFixed(2),
        })}\n`,
      );
      if (values.job && rawProcesses === 1) {
        offerFloor = await floorOffers(raw, r.children, r.ok);
        process.stdout.write(`${JSON.stringify({ floor: `raw ${scheme}: one offer-shaped frame to each of ${r.ok} devices`, ...measured })}\n`);
      }
      await r.stop();
      raw.kill('SIGTERM');
      await new Promise((res) => raw.once('exit', res));
      return measured;
    };

    if (rateOfFloor > 0) {
      // The target's own terms: the floor as fast as it comes, then the ramp at a fraction of it,
      // the raw server first (its p99 at that ramp), then fleet-server at the same ramp.
      fastFloor = await rawFloor(0, 'as fast as it comes');
      rate = Math.max(1, Math.round(rateOfFloor * fastFloor.connectsPerSec));
      // Two ramps of n / rate seconds each are still to come (the raw server's, fleet-server's):
      // the time bound now follows them, with as much again to spare, and 10 minutes more.
      clearTimeout(deadline);
      deadline = setTimeout(timedOut, (2 * 2 * (n / rate) + 600) * 1000);
      floor = await rawFloor(rate, `ramp at ${rateOfFloor} x ${fastFloor.connectsPerSec}/s`);
    } else if (!values['skip-raw']) {
      floor = await rawFloor(rate, '');
    }

    const server = spawn(
      process.execPath,
      // BENCH_SERVER_NODE_ARGS (e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`): node flags for the server's processes only.
      [
        ...(process.env['BENCH_SERVER_NODE_ARGS']?.split(' ').filter(Boolean) ?? []),
        CLI,
        'serve',
        '--data',
        dir,
        '--port',
        '0',
        '--host',
        '127.0.0.1',
        '--workers',
        String(workers),
        ...(tls ? ['--tls-cert', tls.cert, '--tls-key', tls.key] : []),
      ],
      { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, FLEET_SERVER_LOG_LEVEL: 'info' } },
    );
    // BENCH_SERVER_STDOUT=file: the server's stdout (its log, and e.g. `--trace-gc` lines) kept in a file.
    if (process.env['BENCH_SERVER_STDOUT']) server.stdout!.pipe(createWriteStream(process.env['BENCH_SERVER_STDOUT']));
    let url = '';
    let buffered = '';
    await new Promise<void>((resolve, reject) => {
      server.once('exit', (code) => reject(new Error(`the server exited (${code}) before it listened`)));
      server.stdout!.on('data', (c: Buffer) => {
        if (url) return;
        buffered += c.toString();
        const m = /"url":"(https?:\/\/[^"]+)"/.exec(buffered);
        if (m && !url) {
          url = m[1]!;
          resolve();
        }
      });
    });
    await new Promise((res) => setTimeout(res, 1000));
    const idle = treeRssKb(server.pid!);
    const cpu0 = treeCpuSec(server.pid!);
    const r = await runClients(`${url.replace('http', 'ws')}/api/channel`, file, n, clients, concurrency, rate, tls?.ca ?? '');
    await new Promise((res) => setTimeout(res, 1500));
    const rss = treeRssKb(server.pid!);
    const answeredDevices = r.ok + (r.outcomes['denied'] ?? 0);
    // The server's CPU per device answered (primary and workers; the 1.5 s settle included).
    const cpuMsPerAdmission = +(((treeCpuSec(server.pid!) - cpu0) * 1000) / Math.max(1, answeredDevices)).toFixed(2);
    process.stdout.write(
      `${JSON.stringify({
        server: `fleet-server --workers ${workers}`,
        connected: r.ok,
        failed: r.failed,
        seconds: +r.seconds.toFixed(2),
        admissionsPerSec: Math.round(r.ok / r.seconds),
        welcome: r.welcome,
        outcomes: r.outcomes,
        cpuMsPerAdmission,
        rssIdleMb: +(idle / 1024).toFixed(1),
        rssMb: +(rss / 1024).toFixed(1),
        rssPerConnKb: +((rss - idle) / Math.max(1, r.ok)).toFixed(2),
      })}\n`,
    );
    // Hellos per admission transaction (group commit), from the server's merged metrics.
    const serverMetrics = await readServerMetrics(url, tls?.ca ?? '');
    const commits = serverMetrics.commits;
    // Devices told something (welcomed, or denied) per second: a denied device is answered too.
    const admissionsPerSec = Math.round(answeredDevices / r.seconds);
    process.stdout.write(
      `${JSON.stringify({
        admission: `${n} devices, ${seats} seats, ${badCredentials} bad credentials, ${scheme}, ${workers} workers, rate ${rate || 'unlimited'}`,
        admissionsPerSec,
        floorConnectsPerSec: floor?.connectsPerSec ?? null,
        ratio: floor ? +(admissionsPerSec / floor.connectsPerSec).toFixed(2) : null,
        welcome: r.welcome,
        floorWelcome: floor?.welcome ?? null,
        cpuMsPerAdmission,
        floorCpuMsPerConnect: floor?.cpuMsPerConnect ?? null,
        ...(commits
          ? {
              transactions: commits.count,
              hellosPerTransaction: +(r.ok / Math.max(1, commits.count)).toFixed(1),
              transactionMeanMs: +((commits.sum * 1000) / Math.max(1, commits.count)).toFixed(1),
            }
          : {}),
        outcomes: r.outcomes,
        serverWelcome: serverMetrics.serverWelcome ?? null,
        transactionsOver: serverMetrics.transactionsOver,
        serverGc: serverMetrics.gc,
        clientLoops: r.clientLoops,
        floorClientLoops: floor?.clientLoops ?? null,
        loadavg: { before: loadBefore, after: load() },
      })}\n`,
    );
    if (fastFloor && floor) {
      // The target in its own terms: hello → welcome p99 ≤ 100 ms while the connects ramp at
      // ≥ the fraction of the floor measured as fast as it comes, in this run.
      const own = serverMetrics.serverWelcome;
      process.stdout.write(
        `${JSON.stringify({
          target: `hello -> welcome p99 <= 100 ms at ${rateOfFloor} x the raw floor`,
          floorAsFastAsItComes: fastFloor.connectsPerSec,
          rate,
          rampKept: { floor: floor.connectsPerSec, server: admissionsPerSec },
          p99Ms: {
            floorDevices: floor.welcome.p99Ms,
            devices: r.welcome.p99Ms,
            serverOwnAtMost: own?.p99AtMostMs ?? null,
          },
          serverOver100Ms: own?.over100Ms ?? null,
          met: {
            rampKept: admissionsPerSec >= 0.97 * rate,
            devices: r.welcome.p99Ms <= 100,
            serverOwn: own ? own.over100Ms <= 0.01 * own.count : null,
            floorDevices: floor.welcome.p99Ms <= 100,
          },
          loadavg: load(),
        })}\n`,
      );
    }
    if (values.job) await jobFanOut(url, r.children, r.ok, Number(values['packet-kb']) * 1024, tls?.ca ?? '', offerFloor, server.pid!);
    await r.stop();
    server.kill('SIGTERM');
    await new Promise((res) => server.once('exit', res));
  } finally {
    clearTimeout(deadline);
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.env['BENCH_CLIENT']) void client();
else if (process.env['BENCH_RAW']) rawServer();
else void orchestrate();
