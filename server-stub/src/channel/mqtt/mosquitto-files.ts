/**
 * Files an external Mosquitto needs to serve as the control channel's broker: the
 * dynamic-security plugin's file (passwords hashed as the plugin hashes them). Used to bootstrap a
 * broker before the server provisions devices over `$CONTROL`, and by tests and load tests that
 * start brokers of their own with many devices at once.
 */
import { pbkdf2Sync, randomBytes } from 'node:crypto';

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
