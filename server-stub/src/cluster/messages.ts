import type { Notice } from '../channel/notices.js';
import type { MetricsJson } from '../metrics.js';

/**
 * IPC between the cluster primary and its workers (node:cluster's channel, JSON-serialised).
 *
 * worker → primary: `opened`/`closed` (which devices this worker holds, so the primary can release
 * them if the worker dies; each names the devices of one run of opens or closes, in order),
 * `notice` (an admission or settings change to fan out), `metrics-req` (a /metrics scrape),
 * `metrics-snap` (this worker's figures for someone's scrape, in prom-client's JSON form),
 * `mqtt-consuming` (every MQTT bucket client of this worker has subscribed: it serves) and
 * `mqtt-drop` (end these deleted devices' connections at the embedded broker).
 * primary → worker: `notice` (deliver to your sessions), `metrics-snap-req`, `metrics-res`.
 */
export type WorkerToPrimary =
  | { t: 'opened'; uuids: string[] }
  | { t: 'closed'; uuids: string[] }
  | { t: 'notice'; notice: Notice }
  | { t: 'metrics-req'; id: number }
  | { t: 'metrics-snap'; id: number; snap: MetricsJson }
  | { t: 'mqtt-consuming' }
  | { t: 'mqtt-drop'; deviceIds: readonly string[] };

export type PrimaryToWorker =
  | { t: 'notice'; notice: Notice }
  | { t: 'metrics-snap-req'; id: number }
  | { t: 'metrics-res'; id: number; text: string }
  /** The cluster's other hosts count this one dead (hosts/membership.ts): close every session, their devices say hello again. */
  | { t: 'reconnect-all' };

export function isMessage<T extends { t: string }>(value: unknown): value is T {
  return typeof value === 'object' && value !== null && typeof (value as { t?: unknown }).t === 'string';
}

/**
 * Environment the primary gives each worker at fork: its index (which MQTT buckets it consumes)
 * and, with the embedded broker (which runs in the primary), where and how its bucket clients log in.
 */
export const CLUSTER_ENV = {
  workerIndex: 'FLEET_CLUSTER_WORKER_INDEX',
  mqttUrl: 'FLEET_CLUSTER_MQTT_URL',
  mqttSecret: 'FLEET_CLUSTER_MQTT_SECRET',
  mqttPin: 'FLEET_CLUSTER_MQTT_PIN',
  /** With a PostgreSQL store: the primary's id among the hosts sharing it (leases name it). */
  instanceId: 'FLEET_CLUSTER_INSTANCE_ID',
} as const;
