import type { Logger } from 'pino';
import type { DeviceService } from '../../devices/service.js';
import type { Metrics } from '../../metrics.js';
import { BrokerAccountsError, DynsecAccounts, type DynsecOptions } from './dynsec.js';
import { SERVER_ACCOUNT } from './mosquitto-files.js';

/** Counter of broker account changes that failed (redone by the next reconcile), by operation. */
export const BROKER_ACCOUNT_FAILURES = 'fleet_broker_account_failures_total';
/** Counter of device accounts a reconcile created or removed. */
export const BROKER_ACCOUNT_RECONCILED = 'fleet_broker_accounts_reconciled_total';

export interface StartBrokerAccountsOptions {
  /** The external broker (`mqttUrl`): `mqtts://host:port`, or `mqtt://` on a trusted network. */
  readonly url: string;
  /** The dynamic-security admin (`mqttAdminUsername` / `mqttAdminPassword`). */
  readonly adminUsername: string;
  readonly adminPassword: string;
  /** PEM CA the broker's certificate chains to (mqtts); default: the system's trust store. */
  readonly caPem?: string;
  /**
   * The server's own account (`mqttUsername` / `mqttPassword`): its role `rf-server` is created
   * when missing, and the client too (an existing client is left unchanged). Omit to manage it by hand.
   */
  readonly serverAccount?: { readonly username: string; readonly password: string };
  /** Whose registrations and deletions are provisioned; what reconcile reads the devices from. */
  readonly devices: Pick<DeviceService, 'useBrokerAccounts' | 'reconcileBroker'>;
  readonly metrics: Metrics;
  readonly logger: Logger;
  /**
   * Reconcile before resolving and after the admin connection came back (default true). In a
   * cluster, let one process do it: every
   * process needs its own accounts for the registrations it serves, but concurrent reconciles
   * would each "create" what another just created, and re-setting an existing client disconnects it.
   */
  readonly reconcileAtStart?: boolean;
  /** Delay before a reconcile that redoes failed changes (ms). Default 30,000. */
  readonly retryDelayMs?: number;
  /** Reconcile this often as well (ms); 0 = only at start, after failures and after a reconnect. Default 0. */
  readonly reconcileIntervalMs?: number;
  /** Batching and timeouts of the plugin's commands (see DynsecOptions). */
  readonly dynsec?: Pick<DynsecOptions, 'batchCommands' | 'maxMessageBytes' | 'window' | 'timeoutMs' | 'connectTimeoutMs' | 'clientId'>;
}

export interface BrokerAccountsHandle {
  readonly accounts: DynsecAccounts;
  /** Reconciles now (what start, failures and reconnects schedule); resolves with what changed. */
  reconcile(): Promise<{ created: number; removed: number } | undefined>;
  /** Detaches from the device service, stops timers and closes the admin connection. */
  close(): Promise<void>;
}

/**
 * Starts keeping an external Mosquitto's device accounts (dynamic-security plugin) in step with
 * the store: connects as the admin (rejects with `BrokerAccountsError` `SERVER_BROKER_UNREACHABLE`
 * when it cannot: wrong URL, credential or CA), makes the server's account, attaches to the
 * device service (registrations provision, deletions remove) and reconciles once before resolving
 * (unless `reconcileAtStart` is false).
 * Failures after that are logged and counted in `fleet_broker_account_failures_total{op}`, never
 * thrown, and redone by a reconcile `retryDelayMs` later.
 */
export async function startBrokerAccounts(opts: StartBrokerAccountsOptions): Promise<BrokerAccountsHandle> {
  const log = opts.logger.child({ component: 'broker-accounts' });
  opts.metrics.counter(BROKER_ACCOUNT_FAILURES, 'Broker device account changes that failed (redone by the next reconcile), by operation.');
  opts.metrics.counter(BROKER_ACCOUNT_RECONCILED, 'Broker device accounts a reconcile created or removed.');
  const accounts = await DynsecAccounts.connect({
    url: opts.url,
    username: opts.adminUsername,
    password: opts.adminPassword,
    ...(opts.caPem ? { caPem: opts.caPem } : {}),
    ...opts.dynsec,
  });
  const retryDelayMs = opts.retryDelayMs ?? 30_000;
  let closed = false;
  let retry: NodeJS.Timeout | undefined;
  let running: Promise<{ created: number; removed: number } | undefined> | undefined;

  const failed = (op: string, err: unknown, deviceIds?: readonly string[]) => {
    opts.metrics.inc(BROKER_ACCOUNT_FAILURES, { op });
    const e = err as BrokerAccountsError;
    log.warn(
      { op, code: e.code, devices: deviceIds?.length, failures: e.failures?.slice(0, 10), err: e.message },
      'broker account change failed; the next reconcile redoes it',
    );
    schedule();
  };
  const schedule = () => {
    if (closed || retry) return;
    retry = setTimeout(() => {
      retry = undefined;
      void reconcile();
    }, retryDelayMs);
    retry.unref();
  };
  const reconcile = (): Promise<{ created: number; removed: number } | undefined> => {
    // One at a time; a request while one runs gets that one's result.
    running ??= (async () => {
      try {
        const r = await opts.devices.reconcileBroker();
        if (r.created) opts.metrics.inc(BROKER_ACCOUNT_RECONCILED, { change: 'created' }, r.created);
        if (r.removed) opts.metrics.inc(BROKER_ACCOUNT_RECONCILED, { change: 'removed' }, r.removed);
        log.info(r, 'broker device accounts reconciled');
        return r;
      } catch (err) {
        if (!closed) failed('reconcile', err);
        return undefined;
      } finally {
        running = undefined;
      }
    })();
    return running;
  };

  try {
    if (opts.serverAccount) {
      const { created } = await accounts.ensureServerAccount(opts.serverAccount.password, opts.serverAccount.username);
      if (created) log.info({ username: opts.serverAccount.username, role: SERVER_ACCOUNT }, 'server broker account created');
    }
  } catch (err) {
    await accounts.close();
    throw err;
  }
  opts.devices.useBrokerAccounts(accounts, (op, deviceIds, err) => failed(op, err, deviceIds));
  const reconciles = opts.reconcileAtStart ?? true;
  if (reconciles) await reconcile();
  // A broker that comes back may have lost changes made while it was away (or its whole file).
  if (reconciles) accounts.onReconnect(() => void reconcile());
  const interval = opts.reconcileIntervalMs ? setInterval(() => void reconcile(), opts.reconcileIntervalMs) : undefined;
  interval?.unref();

  return {
    accounts,
    reconcile,
    close: async () => {
      closed = true;
      clearTimeout(retry);
      clearInterval(interval);
      opts.devices.useBrokerAccounts(undefined);
      await accounts.close();
      await running;
    },
  };
}
