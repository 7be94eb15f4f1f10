import { afterEach, describe, expect, it } from 'vitest';
import { FakeChannel } from './helpers/fake-channel.js';
import { type AppWorld, appWorld } from './helpers/http.js';
import { removeTempDirs, type Tenant } from './helpers/setup.js';

const worlds: AppWorld[] = [];
afterEach(async () => {
  for (const w of worlds.splice(0)) await w.app.close();
  removeTempDirs();
});

async function ready(kind: 'basic-25' | 'free' = 'basic-25', count = 1): Promise<{ w: AppWorld; t: Tenant; token: string }> {
  const w = await appWorld();
  worlds.push(w);
  const t = await w.newTenant();
  w.licences(t, kind, count);
  return { w, t, token: await w.login(t) };
}

const csvHeaders = { 'content-type': 'text/csv' };

describe('managed devices', () => {
  it('registers by serial number with the keep-alive defaults (seconds) and returns 201 {uuid, ...}', async () => {
    const { w, token } = await ready();
    const r = await w.req('POST', '/api/inventory/managed-devices', {
      token,
      body: { serialNumber: 'RTR-0001', name: 'Pump station', location: 'Regensburg' },
    });
    expect(r.statusCode).toBe(201);
    const d = r.json();
    expect(d).toMatchObject({
      serialNumber: 'RTR-0001',
      name: 'Pump station',
      location: 'Regensburg',
      groupUuid: null,
      connectionPingInterval: 120,
      connectionPongTimeout: 104,
      connectionSessionTimeout: 16,
      status: 'offline',
      admission: null,
    });
    expect(d.uuid).toMatch(/^[0-9a-f-]{36}$/);
    expect(JSON.stringify(d)).not.toMatch(/credential|secret|hash/i);
    expect((await w.req('GET', `/api/inventory/managed-devices/${d.uuid}`, { token })).json()).toEqual(d);
    const dup = await w.req('POST', '/api/inventory/managed-devices', { token, body: { serialNumber: 'RTR-0001' } });
    expect(dup.statusCode).toBe(409);
    expect(dup.json().code).toBe('SERVER_DEVICE_SERIAL_TAKEN');
  });

  it('stores only a hash of the device credential, and the sealed secret decrypts to a working credential', async () => {
    const { w, t } = await ready();
    const [dev] = w.devices(t, 1);
    const row = w.services.store
      .stmt('SELECT credential_hash, credential_enc FROM devices WHERE uuid = ?')
      .get(dev!.uuid) as { credential_hash: Buffer; credential_enc: Buffer };
    expect(row.credential_hash.toString('base64url')).not.toBe(dev!.credential);
    expect(row.credential_enc.toString('latin1')).not.toContain(dev!.credential);
    expect(w.services.admission.admit({ serialNumber: dev!.serialNumber, credential: dev!.credential }).outcome).toBe(
      'managed',
    );
  });

  it('updates metadata and custom fields; deletes', async () => {
    const { w, token } = await ready();
    const d = (await w.req('POST', '/api/inventory/managed-devices', { token, body: { serialNumber: 'A1' } })).json();
    const g = (await w.req('POST', '/api/inventory/device-groups', { token, body: { name: 'North' } })).json();
    const u = await w.req('PATCH', `/api/inventory/managed-devices/${d.uuid}`, {
      token,
      body: { name: 'n', groupUuid: g.uuid, customFields: { site: 'B7' }, connectionPingInterval: 60, model: 'MRX3' },
    });
    expect(u.statusCode).toBe(200);
    expect(u.json()).toMatchObject({ name: 'n', groupUuid: g.uuid, customFields: { site: 'B7' }, connectionPingInterval: 60 });
    const bad = await w.req('PATCH', `/api/inventory/managed-devices/${d.uuid}`, {
      token,
      body: { connectionPingInterval: '60' },
    });
    expect(bad.statusCode).toBe(400);
    expect((await w.req('DELETE', `/api/inventory/managed-devices/${d.uuid}`, { token })).statusCode).toBe(204);
    expect((await w.req('GET', `/api/inventory/managed-devices/${d.uuid}`, { token })).statusCode).toBe(404);
  });

  it('lists with filters (status, group, model, firmware, text, serialNumber), sorting and cursor pagination', async () => {
    const { w, t, token } = await ready('basic-25', 1);
    const g = (await w.req('POST', '/api/inventory/device-groups', { token, body: { name: 'G' } })).json();
    const csv = ['serialNumber,name,model,firmware,group'];
    for (let i = 0; i < 30; i++) {
      csv.push(`S${String(i).padStart(2, '0')},dev ${String(29 - i).padStart(2, '0')},${i % 2 ? 'MRX' : 'MIRO'},${i < 10 ? '2.0' : '2.1'},${i < 5 ? 'G' : ''}`);
    }
    const imp = await w.req('POST', '/api/inventory/managed-devices/import', {
      token,
      payload: `${csv.join('\n')}\n`,
      headers: csvHeaders,
    });
    expect(imp.json()).toMatchObject({ rows: 30, imported: 30, failed: 0 });
    const list = async (q: string) => (await w.req('GET', `/api/inventory/managed-devices?${q}`, { token })).json();
    expect((await list('model=MRX&limit=100')).items).toHaveLength(15);
    expect((await list('firmware=2.0')).items).toHaveLength(10);
    expect((await list(`groupUuid=${g.uuid}`)).items.map((d: { serialNumber: string }) => d.serialNumber)).toEqual([
      'S04',
      'S03',
      'S02',
      'S01',
      'S00',
    ]);
    expect((await list('serialNumber=S07')).items).toHaveLength(1);
    expect((await list('text=dev%202')).items).toHaveLength(10);
    // Online status comes from admissions (presence is flushed in batches).
    const ch = new FakeChannel(w.services.admission);
    const [first] = (await list('serialNumber=S00')).items;
    const cred = w.services.devices.credential(t.scope, first.uuid);
    ch.connect({ uuid: first.uuid, serialNumber: 'S00', credential: cred });
    w.services.admission.presence.flush();
    expect((await list('status=online')).items.map((d: { serialNumber: string }) => d.serialNumber)).toEqual(['S00']);
    expect((await list('status=offline&limit=100')).items).toHaveLength(29);
    // Walk all pages, sorted by serial number descending.
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const page = await list(`sort=serialNumber&order=desc&limit=7${cursor ? `&cursor=${cursor}` : ''}`);
      seen.push(...page.items.map((d: { serialNumber: string }) => d.serialNumber));
      cursor = page.nextCursor;
      pages++;
    } while (cursor);
    expect(pages).toBe(5);
    expect(seen).toEqual([...seen].sort().reverse());
    expect(new Set(seen).size).toBe(30);
    // A cursor from another sort order is refused; page sizes are capped.
    const p1 = await list('sort=name&limit=2');
    const mixed = await w.req('GET', `/api/inventory/managed-devices?sort=serialNumber&cursor=${p1.nextCursor}`, { token });
    expect(mixed.json().code).toBe('SERVER_INVALID_CURSOR');
    expect((await list('limit=100000')).items).toHaveLength(30);
  });

  it('device groups: CRUD and membership', async () => {
    const { w, t, token } = await ready();
    const devs = w.devices(t, 3);
    const g = await w.req('POST', '/api/inventory/device-groups', { token, body: { name: 'Plant 1', description: 'd' } });
    expect(g.statusCode).toBe(201);
    const { uuid } = g.json();
    expect((await w.req('POST', '/api/inventory/device-groups', { token, body: { name: 'Plant 1' } })).json().code).toBe(
      'SERVER_GROUP_NAME_TAKEN',
    );
    const add = await w.req('POST', `/api/inventory/device-groups/${uuid}/devices`, {
      token,
      body: { deviceUuids: devs.map((d) => d.uuid) },
    });
    expect(add.json()).toEqual({ added: 3 });
    expect((await w.req('GET', `/api/inventory/device-groups/${uuid}`, { token })).json().deviceCount).toBe(3);
    expect(
      (await w.req('DELETE', `/api/inventory/device-groups/${uuid}/devices/${devs[0]!.uuid}`, { token })).statusCode,
    ).toBe(204);
    const members = (await w.req('GET', `/api/inventory/device-groups/${uuid}/devices`, { token })).json();
    expect(members.items.map((d: { uuid: string }) => d.uuid).sort()).toEqual([devs[1]!.uuid, devs[2]!.uuid].sort());
    expect((await w.req('PATCH', `/api/inventory/device-groups/${uuid}`, { token, body: { name: 'Plant 2' } })).json().name).toBe(
      'Plant 2',
    );
    expect((await w.req('GET', '/api/inventory/device-groups', { token })).json().items).toHaveLength(1);
    expect((await w.req('DELETE', `/api/inventory/device-groups/${uuid}`, { token })).statusCode).toBe(204);
    // Devices stay, without group.
    expect((await w.req('GET', `/api/inventory/managed-devices/${devs[1]!.uuid}`, { token })).json().groupUuid).toBe(null);
  });
});

describe('CSV mass registration', () => {
  it('reports every bad row and imports nothing, unless partial import is asked for', async () => {
    const { w, t, token } = await ready();
    w.devices(t, 1, 'EXIST');
    const body = [
      'serialNumber,name,connectionPingInterval,group',
      'OK-1,first,60,',
      'OK-2,"quoted, with comma",,',
      'EXIST-0000,taken,,',
      'OK-1,duplicate in file,,',
      'bad serial!,x,,',
      'OK-3,x,abc,',
      'OK-4,x,,NoSuchGroup',
      'OK-5,too,many,cells,here',
    ].join('\r\n');
    const all = await w.req('POST', '/api/inventory/managed-devices/import', { token, payload: body, headers: csvHeaders });
    expect(all.statusCode).toBe(422);
    const report = all.json().details;
    expect(report).toMatchObject({ rows: 8, imported: 0, failed: 6, partial: false, accepted: [] });
    expect(report.errors.map((e: { line: number; code: string }) => [e.line, e.code])).toEqual([
      [4, 'SERVER_DEVICE_SERIAL_TAKEN'],
      [5, 'SERVER_DEVICE_SERIAL_TAKEN'],
      [6, 'SERVER_VALIDATION'],
      [7, 'SERVER_VALIDATION'],
      [8, 'SERVER_VALIDATION'],
      [9, 'SERVER_CSV_INVALID'],
    ]);
    // Which column breaks which rule, for a client to say in its user's language.
    expect(report.errors.slice(2).map((e: { details?: unknown }) => e.details)).toEqual([
      { in: 'csv', field: '/serialNumber', rule: 'pattern' },
      { in: 'csv', field: '/connectionPingInterval', rule: 'type' },
      { in: 'csv', field: '/group', rule: 'oneOf' },
      { in: 'csv', field: '', rule: 'invalid' },
    ]);
    expect(t.scope.devices.count()).toBe(1);
    const partial = await w.req('POST', '/api/inventory/managed-devices/import?partial=true', {
      token,
      payload: body,
      headers: csvHeaders,
    });
    expect(partial.statusCode).toBe(200);
    expect(partial.json()).toMatchObject({ rows: 8, imported: 2, failed: 6, partial: true });
    const quoted = (await w.req('GET', '/api/inventory/managed-devices?serialNumber=OK-2', { token })).json().items[0];
    expect(quoted.name).toBe('quoted, with comma');
    // The registered rows are named by line, with the new device's uuid.
    const first = (await w.req('GET', '/api/inventory/managed-devices?serialNumber=OK-1', { token })).json().items[0];
    expect(partial.json().accepted).toEqual([
      { line: 2, serialNumber: 'OK-1', uuid: first.uuid },
      { line: 3, serialNumber: 'OK-2', uuid: quoted.uuid },
    ]);
  });

  it('refuses files it cannot read: bad encoding, unknown or missing columns, open quotes, too many rows', async () => {
    const { w, token } = await ready();
    const post = (payload: string | Buffer) =>
      w.req('POST', '/api/inventory/managed-devices/import', { token, payload, headers: csvHeaders });
    const cases: (string | Buffer)[] = [
      Buffer.from([0x73, 0x65, 0x72, 0x69, 0x61, 0x6c, 0x0a, 0xff, 0xfe, 0x0a]),
      'name\nx\n',
      'serialNumber,colour\nA,red\n',
      'serialNumber\n"unterminated\n',
      '',
      'serialNumber,serialNumber\nA,B\n',
    ];
    const details: unknown[] = [];
    for (const c of cases) {
      const r = await post(c);
      expect(r.statusCode, String(c)).toBe(400);
      expect(r.json().code).toBe('SERVER_CSV_INVALID');
      details.push(r.json().details);
    }
    expect(details.slice(1, 4)).toEqual([
      { in: 'csv', field: '/serialNumber', rule: 'required' },
      { in: 'csv', field: '/colour', rule: 'unknownProperty' },
      { in: 'csv', field: '', rule: 'format' },
    ]);
    const json = await w.req('POST', '/api/inventory/managed-devices/import', { token, body: { serialNumber: 'A' } });
    expect(json.statusCode).toBe(415);
  });

  it('registers 50,000 devices in one import (one transaction, prepared statements)', async () => {
    const { w, t, token } = await ready();
    const lines = ['serialNumber,name,location'];
    for (let i = 0; i < 50_000; i++) lines.push(`BULK-${i},Router ${i},Hall ${i % 20}`);
    const started = performance.now();
    const r = await w.req('POST', '/api/inventory/managed-devices/import', {
      token,
      payload: `${lines.join('\n')}\n`,
      headers: csvHeaders,
    });
    const ms = performance.now() - started;
    expect(r.json()).toMatchObject({ rows: 50_000, imported: 50_000, failed: 0 });
    // The report lists the first 1,000 registered rows; the count covers all.
    expect(r.json().accepted).toHaveLength(1000);
    expect(r.json().accepted.at(-1)).toMatchObject({ line: 1001, serialNumber: 'BULK-999' });
    expect(t.scope.devices.count()).toBe(50_000);
    console.log(`50,000-row CSV import: ${Math.round(ms)} ms`);
  });
});
