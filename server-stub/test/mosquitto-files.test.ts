import { pbkdf2Sync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { mqttBucketFilters, mqttTopics } from '@router-fleet/protocol';
import {
  channelDynsecFile,
  deviceClient,
  deviceOfRole,
  deviceRole,
  deviceRoleName,
  SERVER_ACCOUNT,
  serverRole,
} from '../src/channel/mqtt/mosquitto-files.js';

const ID = '3f0c2a4e-9d1b-4c55-8a61-0c3e7b9d2f10';

describe('broker account names and roles', () => {
  it('gives a device a role of its own with literal ACLs on exactly its three topics', () => {
    const t = mqttTopics(ID);
    expect(deviceRole(ID)).toEqual({
      rolename: `rf-device-${ID}`,
      acls: [
        { acltype: 'publishClientSend', topic: t.up, allow: true },
        { acltype: 'publishClientSend', topic: t.presence, allow: true },
        { acltype: 'subscribeLiteral', topic: t.down, allow: true },
        { acltype: 'publishClientReceive', topic: t.down, allow: true },
      ],
    });
    expect(deviceClient(ID, 'secret')).toEqual({ username: ID, password: 'secret', clientid: ID, roles: [`rf-device-${ID}`] });
  });

  it('maps role names back to devices and refuses ids that could widen a topic', () => {
    expect(deviceOfRole(deviceRoleName(ID))).toBe(ID);
    expect(deviceOfRole(SERVER_ACCOUNT)).toBeUndefined();
    expect(deviceOfRole('rf-device-')).toBeUndefined();
    expect(deviceOfRole('admin')).toBeUndefined();
    for (const bad of ['#', '+', 'a/b', '', 'x'.repeat(65)]) expect(() => deviceRoleName(bad)).toThrow(TypeError);
  });

  it('gives the server role the patterns every bucket filter falls under, and sending on down only', () => {
    const acls = serverRole().acls;
    const f = mqttBucketFilters(17);
    const covers = (pattern: string, filter: string) => {
      const p = pattern.split('/');
      const q = filter.split('/');
      return p.length === q.length && p.every((level, i) => level === '+' || level === q[i]);
    };
    const subscribe = acls.filter((a) => a.acltype === 'subscribePattern').map((a) => a.topic);
    expect(subscribe.some((p) => covers(p, f.up))).toBe(true);
    expect(subscribe.some((p) => covers(p, f.presence))).toBe(true);
    expect(acls.filter((a) => a.acltype === 'publishClientSend').map((a) => a.topic)).toEqual(['rf/v1/+/+/down']);
  });

  it('writes a broker file with the admin, the server and each device, passwords hashed as the plugin does', () => {
    const file = channelDynsecFile({ username: 'adm', password: 'a' }, { password: 's' }, [{ deviceId: ID, credential: 'c' }]) as {
      defaultACLAccess: Record<string, boolean>;
      clients: { username: string; clientid?: string; password: string; salt: string; iterations: number; roles: { rolename: string }[] }[];
      roles: { rolename: string }[];
    };
    expect(file.defaultACLAccess).toEqual({ publishClientSend: false, publishClientReceive: true, subscribe: false, unsubscribe: true });
    expect(file.clients.map((c) => c.username)).toEqual(['adm', SERVER_ACCOUNT, ID]);
    expect(file.roles.map((r) => r.rolename)).toEqual(['admin', SERVER_ACCOUNT, `rf-device-${ID}`]);
    const device = file.clients[2]!;
    expect(device.clientid).toBe(ID);
    const hash = pbkdf2Sync('c', Buffer.from(device.salt, 'base64'), device.iterations, 64, 'sha512').toString('base64');
    expect(device.password).toBe(hash);
  });
});
