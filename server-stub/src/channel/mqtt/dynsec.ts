/**
 * Device accounts on an external Mosquitto, kept through the dynamic-security plugin's control
 * topic (`$CONTROL/dynamic-security/v1`) by an admin client of the server's own.
 *
 * How the plugin behaves (Mosquitto 2.0.11, read from its source and measured; see BENCHMARKS.md):
 * - one PUBLISH may carry many commands; the plugin answers them all in one message on
 *   `…/v1/response`, each answer carrying the command's `correlationData`;
 * - that answer is published at QoS 0 to every subscriber of the response topic, not only to the
 *   client that asked: another admin (a second server process, `mosquitto_ctrl`) sees our answers
 *   and we see theirs, so correlation ids carry a random prefix of this client;
 * - every command that changes something rewrites the plugin's whole JSON file before the next one
 *   runs: batching saves round trips, not file writes, and registering many devices costs time
 *   that grows with the number of clients already there;
 * - deleting a client, or changing its password, client id or roles, disconnects it at once.
 */
import { randomBytes } from 'node:crypto';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { BrokerAccounts } from './broker-accounts.js';
import { deviceClient, deviceOfRole, deviceRole, deviceRoleName, type DynsecRole, SERVER_ACCOUNT, serverRole } from './mosquitto-files.js';

export const DYNSEC_TOPIC = '$CONTROL/dynamic-security/v1';
export const DYNSEC_RESPONSE_TOPIC = `${DYNSEC_TOPIC}/response`;

/** One command of the plugin's API (`{"command": "createClient", …}`). */
export interface DynsecCommand {
  command: string;
  [field: string]: unknown;
}

/** The plugin's answer to one command: no `error` means it was done. */
export interface DynsecResponse {
  command: string;
  error?: string;
  data?: unknown;
}

/** Stable codes of what can go wrong talking to the plugin. */
export type BrokerAccountsErrorCode =
  /** The admin client could not connect (broker down, wrong address, TLS) or was refused (credential). */
  | 'SERVER_BROKER_UNREACHABLE'
  /** No answer within the timeout (broker gone, or the admin lacks `$CONTROL` rights). */
  | 'SERVER_BROKER_TIMEOUT'
  /** The plugin answered some commands with an error; `failures` lists them. */
  | 'SERVER_BROKER_COMMAND_FAILED'
  /** The accounts were closed. */
  | 'SERVER_BROKER_CLOSED';

export interface BrokerCommandFailure {
  /** The device (or account) the command was about. */
  subject: string;
  command: string;
  error: string;
}

export class BrokerAccountsError extends Error {
  constructor(
    readonly code: BrokerAccountsErrorCode,
    message: string,
    readonly failures: readonly BrokerCommandFailure[] = [],
  ) {
    super(message);
    this.name = 'BrokerAccountsError';
  }
}

export interface DynsecOptions {
  /** `mqtts://host:port` (or `mqtt://` on a trusted network). */
  readonly url: string;
  /** The dynamic-security admin (rights on `$CONTROL/dynamic-security/#`). */
  readonly username: string;
  readonly password: string;
  /** PEM CA certificate(s) the broker's certificate must chain to (mqtts); default: the system's. */
  readonly caPem?: string;
  /**
   * Most commands in one message (a device takes two). Default 20: Mosquitto 2.0 rewrites its file
   * after every command and serves no other client meanwhile, so one message stalls the broker for
   * about commands × one file write (≈ 0.14 s CPU per command with 10,000 devices, BENCHMARKS.md);
   * larger batches save round trips only.
   */
  readonly batchCommands?: number;
  /**
   * Largest command message (bytes). Default 60,000: below the `max_packet_size` the broker
   * documentation recommends for devices (the limit applies to the admin's packets too).
   */
  readonly maxMessageBytes?: number;
  /** Command messages sent before the first answer is waited for. Default 2. */
  readonly window?: number;
  /** How long one command message may wait for its answer (ms). Default 60,000. */
  readonly timeoutMs?: number;
  /** Client id of the admin connection. Default `rf-dynsec-{random}` (several processes may hold one each). */
  readonly clientId?: string;
  /** Connection timeout (ms). Default 10,000. */
  readonly connectTimeoutMs?: number;
}

const DEFAULTS = { batchCommands: 20, maxMessageBytes: 60_000, window: 2, timeoutMs: 60_000, connectTimeoutMs: 10_000 };

/** Answers the plugin gives for "nothing to do", which make create and delete idempotent. */
const ALREADY = new Set(['Role already exists', 'Client already exists']);
const GONE = new Set(['Client not found', 'Role not found']);

interface Message {
  readonly payload: string;
  readonly ids: readonly string[];
  /** Answers still awaited. */
  remaining: number;
  timer?: NodeJS.Timeout;
  settle(err?: Error): void;
}

interface Pending {
  readonly message: Message;
  resolve(r: DynsecResponse): void;
}

/**
 * `BrokerAccounts` over the dynamic-security plugin of an external Mosquitto: one client and one
 * role per device (see `deviceRole`), the server's account untouched, other clients never touched.
 */
export class DynsecAccounts implements BrokerAccounts {
  readonly #client: MqttClient;
  readonly #opts: Required<Omit<DynsecOptions, 'caPem' | 'clientId'>>;
  readonly #prefix = randomBytes(6).toString('hex');
  #seq = 0;
  readonly #pending = new Map<string, Pending>();
  // Messages are sent in call order (a device created and deleted at once must end up deleted);
  // at most `window` of them wait for their answers at a time.
  readonly #queue: Message[] = [];
  readonly #inflight = new Set<Message>();
  #closed = false;

  private constructor(client: MqttClient, opts: DynsecOptions) {
    this.#client = client;
    this.#opts = {
      url: opts.url,
      username: opts.username,
      password: opts.password,
      batchCommands: opts.batchCommands ?? DEFAULTS.batchCommands,
      maxMessageBytes: opts.maxMessageBytes ?? DEFAULTS.maxMessageBytes,
      window: opts.window ?? DEFAULTS.window,
      timeoutMs: opts.timeoutMs ?? DEFAULTS.timeoutMs,
      connectTimeoutMs: opts.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs,
    };
    client.on('message', (topic, payload) => {
      if (topic === DYNSEC_RESPONSE_TOPIC) this.#onResponse(payload);
    });
    // Answers are QoS 0: those of commands sent before the link dropped are lost with it.
    client.on('close', () => {
      for (const m of [...this.#inflight]) this.#finish(m, unreachable());
    });
  }

  /** Connects the admin client and subscribes to the plugin's answers. */
  static async connect(opts: DynsecOptions): Promise<DynsecAccounts> {
    if (!/^mqtts?:\/\//.test(opts.url)) {
      throw new BrokerAccountsError('SERVER_BROKER_UNREACHABLE', `the broker URL must start with mqtt:// or mqtts:// (got ${opts.url})`);
    }
    const options: IClientOptions = {
      protocolVersion: 5,
      clientId: opts.clientId ?? `rf-dynsec-${randomBytes(6).toString('hex')}`,
      username: opts.username,
      password: opts.password,
      clean: true,
      connectTimeout: opts.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs,
      // The admin link is the server's own: the library's reconnect is fine here (devices use the
      // agent's backoff). Commands lost with the link time out and the next reconcile redoes them.
      reconnectPeriod: 2_000,
      ...(opts.caPem ? { ca: opts.caPem, rejectUnauthorized: true } : {}),
    };
    let client: MqttClient;
    try {
      client = await mqtt.connectAsync(opts.url, options, false);
    } catch (err) {
      throw new BrokerAccountsError('SERVER_BROKER_UNREACHABLE', `cannot connect to ${opts.url} as ${opts.username}: ${(err as Error).message}`);
    }
    // Errors after the first connection (refused reconnects, socket errors) are retried by the
    // library; without a listener they would be thrown.
    client.on('error', () => {});
    const accounts = new DynsecAccounts(client, opts);
    try {
      const granted = await client.subscribeAsync(DYNSEC_RESPONSE_TOPIC, { qos: 0 });
      if (granted.some((g) => g.qos > 2)) throw new Error('subscription refused: the user has no rights on $CONTROL/dynamic-security');
    } catch (err) {
      await client.endAsync(true);
      throw new BrokerAccountsError('SERVER_BROKER_UNREACHABLE', `cannot read the dynamic-security answers: ${(err as Error).message}`);
    }
    return accounts;
  }

  /** Called with each new connection after a lost one (the broker may have lost its accounts). */
  onReconnect(listener: () => void): void {
    this.#client.on('connect', listener);
  }

  /**
   * Sends commands (as few messages as the batch limits allow) and returns their answers in order.
   * Rejects only when answers are missing (timeout, closed); the plugin's errors are in the answers.
   */
  async execute(commands: readonly DynsecCommand[]): Promise<DynsecResponse[]> {
    if (this.#closed) throw new BrokerAccountsError('SERVER_BROKER_CLOSED', 'the broker accounts are closed');
    // Fail now rather than queue: the caller counts the failure and a reconcile after the
    // reconnect redoes the change.
    if (!this.#client.connected) throw unreachable();
    const answers: Promise<DynsecResponse>[] = [];
    const messages: Promise<void>[] = [];
    let batch: { id: string; text: string; resolve: (r: DynsecResponse) => void }[] = [];
    let bytes = 0;
    const flush = () => {
      if (batch.length === 0) return;
      const items = batch;
      batch = [];
      bytes = 0;
      messages.push(
        new Promise<void>((resolve, reject) => {
          const message: Message = {
            payload: `{"commands":[${items.map((i) => i.text).join(',')}]}`,
            ids: items.map((i) => i.id),
            remaining: items.length,
            settle: (err) => (err ? reject(err) : resolve()),
          };
          for (const i of items) this.#pending.set(i.id, { message, resolve: i.resolve });
          this.#queue.push(message);
        }),
      );
    };
    for (const c of commands) {
      const id = `${this.#prefix}-${++this.#seq}`;
      const text = JSON.stringify({ ...c, correlationData: id });
      if (batch.length >= this.#opts.batchCommands || (batch.length > 0 && bytes + text.length + 16 > this.#opts.maxMessageBytes)) flush();
      let resolve!: (r: DynsecResponse) => void;
      answers.push(new Promise<DynsecResponse>((r) => (resolve = r)));
      batch.push({ id, text, resolve });
      bytes += text.length + 1;
    }
    flush();
    this.#pump();
    // A message that timed out rejects here (its answers never come).
    await Promise.all(messages);
    return Promise.all(answers);
  }

  #pump(): void {
    while (this.#inflight.size < this.#opts.window && this.#queue.length > 0) {
      const m = this.#queue.shift()!;
      if (!this.#client.connected) {
        for (const id of m.ids) this.#pending.delete(id);
        m.settle(unreachable());
        continue;
      }
      this.#inflight.add(m);
      m.timer = setTimeout(
        () => this.#finish(m, new BrokerAccountsError('SERVER_BROKER_TIMEOUT', `no answer from the dynamic-security plugin within ${this.#opts.timeoutMs} ms`)),
        this.#opts.timeoutMs,
      );
      // A publish that fails (link lost) is retried by the library on reconnect or ends in the timeout.
      this.#client.publish(DYNSEC_TOPIC, m.payload, { qos: 1 }, () => {});
    }
  }

  #finish(m: Message, err?: Error): void {
    if (!this.#inflight.delete(m)) return;
    clearTimeout(m.timer);
    for (const id of m.ids) this.#pending.delete(id);
    m.settle(err);
    this.#pump();
  }

  #onResponse(payload: Buffer): void {
    let body: { responses?: unknown };
    try {
      body = JSON.parse(payload.toString()) as { responses?: unknown };
    } catch {
      return;
    }
    if (!Array.isArray(body.responses)) return;
    for (const r of body.responses as (DynsecResponse & { correlationData?: unknown })[]) {
      // Answers to other admins (same topic, no id of ours) are not for us.
      if (typeof r?.correlationData !== 'string') continue;
      const p = this.#pending.get(r.correlationData);
      if (!p) continue;
      this.#pending.delete(r.correlationData);
      if (--p.message.remaining === 0) this.#finish(p.message);
      const answer: DynsecResponse = { command: String(r.command) };
      if (r.error !== undefined) answer.error = String(r.error);
      if (r.data !== undefined) answer.data = r.data;
      p.resolve(answer);
    }
  }

  /**
   * Creates each device's role and client; a client that exists already gets the given credential,
   * client id and role (the plugin disconnects it, as a changed credential should).
   */
  async provision(devices: readonly { deviceId: string; credential: string }[]): Promise<void> {
    const commands: DynsecCommand[] = [];
    for (const d of devices) {
      commands.push(createRole(deviceRole(d.deviceId)));
      const c = deviceClient(d.deviceId, d.credential);
      commands.push({ command: 'createClient', username: c.username, password: c.password, clientid: c.clientid, roles: c.roles.map((rolename) => ({ rolename })) });
    }
    const answers = await this.execute(commands);
    const failures: BrokerCommandFailure[] = [];
    const existing: DynsecCommand[] = [];
    const existingIds: string[] = [];
    devices.forEach((d, i) => {
      const role = answers[2 * i]!;
      const client = answers[2 * i + 1]!;
      if (role.error && !ALREADY.has(role.error)) failures.push({ subject: d.deviceId, command: role.command, error: role.error });
      if (client.error === 'Client already exists') {
        const c = deviceClient(d.deviceId, d.credential);
        existing.push({ command: 'modifyClient', username: c.username, password: c.password, clientid: c.clientid, roles: c.roles.map((rolename) => ({ rolename })) });
        existingIds.push(d.deviceId);
      } else if (client.error) {
        failures.push({ subject: d.deviceId, command: client.command, error: client.error });
      }
    });
    if (existing.length > 0) {
      const again = await this.execute(existing);
      again.forEach((a, i) => {
        if (a.error) failures.push({ subject: existingIds[i]!, command: a.command, error: a.error });
      });
    }
    throwIfFailed('provision', failures);
  }

  /** Deletes each device's client (the broker disconnects it) and then its role. */
  async remove(deviceIds: readonly string[]): Promise<void> {
    const commands: DynsecCommand[] = [];
    for (const id of deviceIds) {
      commands.push({ command: 'deleteClient', username: id }, { command: 'deleteRole', rolename: deviceRoleName(id) });
    }
    const answers = await this.execute(commands);
    const failures: BrokerCommandFailure[] = [];
    answers.forEach((a, i) => {
      if (a.error && !GONE.has(a.error)) failures.push({ subject: deviceIds[Math.floor(i / 2)]!, command: a.command, error: a.error });
    });
    throwIfFailed('remove', failures);
  }

  /** User names of every client the plugin holds. */
  async listClients(): Promise<string[]> {
    return this.#list('listClients', 'clients');
  }

  /** Names of every role the plugin holds. */
  async listRoles(): Promise<string[]> {
    return this.#list('listRoles', 'roles');
  }

  async #list(command: 'listClients' | 'listRoles', key: 'clients' | 'roles'): Promise<string[]> {
    // One unpaged list: pages by offset over a table that changes meanwhile could skip entries.
    const [a] = await this.execute([{ command, verbose: false }]);
    if (a!.error) throw new BrokerAccountsError('SERVER_BROKER_COMMAND_FAILED', `${command}: ${a!.error}`, [{ subject: '*', command, error: a!.error }]);
    const items = (a!.data as Record<string, unknown> | undefined)?.[key];
    if (!Array.isArray(items)) throw new BrokerAccountsError('SERVER_BROKER_COMMAND_FAILED', `${command}: the answer has no ${key} list`);
    // Non-verbose lists are plain names; verbose ones objects (another plugin version may send those).
    return items.map((x: unknown) => (typeof x === 'string' ? x : String((x as Record<string, unknown>)[key === 'clients' ? 'username' : 'rolename'])));
  }

  /**
   * Brings the plugin in step with the store. A client is a device's when the role `rf-device-{its
   * user name}` exists (only this class makes such roles); any other client is never touched.
   * Creates the clients (and roles) of devices that lack either; removes the clients and roles of
   * devices that are gone. `devices` is read after the plugin's lists: a device registered while
   * they are taken is then either listed or read, never taken for a stale one.
   */
  async reconcile(devices: Iterable<string>, credentialOf: (deviceId: string) => string | undefined): Promise<{ created: number; removed: number }> {
    const [clients, roles] = await Promise.all([this.listClients(), this.listRoles()]);
    const clientSet = new Set(clients);
    const roleDevices = new Set<string>();
    for (const r of roles) {
      const d = deviceOfRole(r);
      if (d !== undefined) roleDevices.add(d);
    }
    const known = new Set<string>();
    const missing: { deviceId: string; credential: string }[] = [];
    const failures: BrokerCommandFailure[] = [];
    for (const id of devices) {
      known.add(id);
      if (clientSet.has(id) && roleDevices.has(id)) continue;
      const credential = credentialOf(id);
      if (credential === undefined) failures.push({ subject: id, command: 'reconcile', error: 'no credential in the store' });
      else missing.push({ deviceId: id, credential });
    }
    const stale = [...roleDevices].filter((id) => !known.has(id));
    let firstError: unknown;
    try {
      if (stale.length > 0) await this.remove(stale);
    } catch (err) {
      firstError = err;
    }
    try {
      if (missing.length > 0) await this.provision(missing);
    } catch (err) {
      firstError ??= err;
    }
    if (firstError) throw firstError;
    throwIfFailed('reconcile', failures);
    return { created: missing.length, removed: stale.length };
  }

  /**
   * Creates the server's role and, when missing, its client with this password. An existing client
   * is left as it is (changing it would disconnect the server's own bucket clients).
   */
  async ensureServerAccount(password: string, username = SERVER_ACCOUNT): Promise<{ created: boolean }> {
    const [role, client] = await this.execute([
      createRole(serverRole()),
      { command: 'createClient', username, password, roles: [{ rolename: SERVER_ACCOUNT }] },
    ]);
    const failures: BrokerCommandFailure[] = [];
    if (role!.error && !ALREADY.has(role!.error)) failures.push({ subject: username, command: role!.command, error: role!.error });
    if (client!.error && !ALREADY.has(client!.error)) failures.push({ subject: username, command: client!.command, error: client!.error });
    throwIfFailed('server account', failures);
    return { created: !client!.error };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const closed = () => new BrokerAccountsError('SERVER_BROKER_CLOSED', 'the broker accounts are closed');
    for (const m of this.#queue.splice(0)) m.settle(closed());
    for (const m of [...this.#inflight]) this.#finish(m, closed());
    await this.#client.endAsync(true);
  }
}

function unreachable(): BrokerAccountsError {
  return new BrokerAccountsError('SERVER_BROKER_UNREACHABLE', 'the admin connection to the broker is down');
}

function createRole(role: DynsecRole): DynsecCommand {
  return { command: 'createRole', rolename: role.rolename, acls: role.acls.map((a) => ({ priority: 0, ...a })) };
}

function throwIfFailed(what: string, failures: BrokerCommandFailure[]): void {
  if (failures.length === 0) return;
  const first = failures.slice(0, 3).map((f) => `${f.subject} ${f.command}: ${f.error}`).join('; ');
  throw new BrokerAccountsError('SERVER_BROKER_COMMAND_FAILED', `${what}: ${failures.length} command(s) failed (${first})`, failures);
}
