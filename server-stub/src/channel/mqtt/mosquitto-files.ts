/**
 * Files an external Mosquitto needs to serve as the control channel's broker: the
 * dynamic-security plugin's file (passwords hashed as the plugin hashes them). Used to bootstrap a
 * broker before the server provisions devices over `$CONTROL`, and by tests and load tests that
 * start brokers of their own with many devices at once.
 */
import { pbkdf2Sync, randomBytes } from 'node:crypto';
import { MQTT_BINDING, mqttTopics } from '@router-fleet/protocol';

/** A password as the dynamic-security plugin stores it: PBKDF2-SHA512, 101 iterations, 12-byte salt. */
export function dynsecPassword(password: string, iterations = 101): { password: string; salt: string; iterations: number } {
  const salt = randomBytes(12);
  return {
    password: pbkdf2Sync(password, salt, iterations, 64, 'sha512').toString('base64'),
    salt: salt.toString('base64'),
    iterations,
  };
}

export interface DynsecAcl {
  acltype: 'publishClientSend' | 'publishClientReceive' | 'subscribeLiteral' | 'subscribePattern' | 'unsubscribeLiteral' | 'unsubscribePattern';
  topic: string;
  allow: boolean;
  priority?: number;
}

export interface DynsecClient {
  username: string;
  password: string;
  /** The only client id this user may connect with. */
  clientid?: string;
  roles: string[];
}

export interface DynsecRole {
  rolename: string;
  acls: DynsecAcl[];
}

/** The dynamic-security plugin's file: an admin (full $CONTROL rights) plus the given clients and roles. */
export function dynsecFile(admin: { username: string; password: string }, clients: DynsecClient[] = [], roles: DynsecRole[] = []): object {
  const all = (t: DynsecAcl['acltype'], topic: string): DynsecAcl => ({ acltype: t, topic, allow: true, priority: 0 });
  return {
    defaultACLAccess: { publishClientSend: false, publishClientReceive: true, subscribe: false, unsubscribe: true },
    clients: [
      { username: admin.username, roles: [{ rolename: 'admin' }], ...dynsecPassword(admin.password) },
      ...clients.map((c) => ({
        username: c.username,
        ...(c.clientid ? { clientid: c.clientid } : {}),
        roles: c.roles.map((rolename) => ({ rolename })),
        ...dynsecPassword(c.password),
      })),
    ],
    groups: [],
    roles: [
      {
        rolename: 'admin',
        acls: [
          all('publishClientSend', '$CONTROL/dynamic-security/#'),
          all('publishClientReceive', '$CONTROL/dynamic-security/#'),
          all('subscribePattern', '$CONTROL/dynamic-security/#'),
          all('publishClientReceive', '$SYS/#'),
          all('subscribePattern', '$SYS/#'),
          all('unsubscribePattern', '#'),
        ],
      },
      ...roles.map((r) => ({ rolename: r.rolename, acls: r.acls.map((a) => ({ priority: 0, ...a })) })),
    ],
  };
}

/** User name and role name of the server's own broker account (its bucket clients connect as this user). */
export const SERVER_ACCOUNT = 'rf-server';

/** Prefix of every device role: the role of device `d` is `rf-device-d`; nothing else uses the prefix. */
export const DEVICE_ROLE_PREFIX = 'rf-device-';

/** The role name of a device's broker client. Throws a TypeError for an id that is not an identifier. */
export function deviceRoleName(deviceId: string): string {
  mqttTopics(deviceId);
  return `${DEVICE_ROLE_PREFIX}${deviceId}`;
}

/** The device a role name belongs to, or undefined when the role is not a device role. */
export function deviceOfRole(rolename: string): string | undefined {
  return rolename.startsWith(DEVICE_ROLE_PREFIX) && rolename.length > DEVICE_ROLE_PREFIX.length
    ? rolename.slice(DEVICE_ROLE_PREFIX.length)
    : undefined;
}

/**
 * A device's role: its own topics as literal ACLs. Mosquitto 2.0.11's dynamic-security plugin does
 * not expand `%u`/`%c` in ACL topics, so one shared role cannot say "your own topics": each device
 * gets a role of its own. Everything not granted here is denied by the default ACL access (publish
 * and subscribe denied), so a device cannot subscribe to `#` or publish on another device's topics.
 */
export function deviceRole(deviceId: string): DynsecRole {
  const t = mqttTopics(deviceId);
  return {
    rolename: deviceRoleName(deviceId),
    acls: [
      { acltype: 'publishClientSend', topic: t.up, allow: true },
      // The presence topic carries `online` (published after connect) and the will (`offline`).
      { acltype: 'publishClientSend', topic: t.presence, allow: true },
      { acltype: 'subscribeLiteral', topic: t.down, allow: true },
      { acltype: 'publishClientReceive', topic: t.down, allow: true },
    ],
  };
}

/** A device's broker client: user name = client id = device id, password = its credential. */
export function deviceClient(deviceId: string, credential: string): DynsecClient {
  return { username: deviceId, password: credential, clientid: deviceId, roles: [deviceRoleName(deviceId)] };
}

/**
 * The server's role: it consumes every device's `up` and `presence` (its bucket clients subscribe
 * to `rf/v1/{bucket}/+/up` and `…/presence`, which these patterns cover) and sends on every `down`.
 */
export function serverRole(): DynsecRole {
  const any = `${MQTT_BINDING.topicRoot}/+/+`;
  return {
    rolename: SERVER_ACCOUNT,
    acls: [
      { acltype: 'subscribePattern', topic: `${any}/up`, allow: true },
      { acltype: 'subscribePattern', topic: `${any}/presence`, allow: true },
      { acltype: 'publishClientReceive', topic: `${any}/up`, allow: true },
      { acltype: 'publishClientReceive', topic: `${any}/presence`, allow: true },
      { acltype: 'publishClientSend', topic: `${any}/down`, allow: true },
      { acltype: 'unsubscribePattern', topic: `${MQTT_BINDING.topicRoot}/#`, allow: true },
    ],
  };
}

/** The server's client (no client id restriction: each bucket client has its own id `rf-server-b{n}`). */
export function serverClient(password: string, username = SERVER_ACCOUNT): DynsecClient {
  return { username, password, roles: [SERVER_ACCOUNT] };
}

/**
 * A whole dynamic-security file for a broker that serves the control channel: the admin, the
 * server's account and role, and one client and role per device. What tests and load tests write
 * before starting a broker with thousands of devices (provisioning them over `$CONTROL` one by one
 * costs the plugin a rewrite of this whole file per command).
 */
export function channelDynsecFile(
  admin: { username: string; password: string },
  server: { username?: string; password: string },
  devices: Iterable<{ deviceId: string; credential: string }>,
): object {
  const clients: DynsecClient[] = [serverClient(server.password, server.username)];
  const roles: DynsecRole[] = [serverRole()];
  for (const d of devices) {
    clients.push(deviceClient(d.deviceId, d.credential));
    roles.push(deviceRole(d.deviceId));
  }
  return dynsecFile(admin, clients, roles);
}
