import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ServerErrors } from '../src/errors.js';
import { type AppWorld, appWorld } from './helpers/http.js';
import { removeTempDirs } from './helpers/setup.js';

let w: AppWorld;
let token: string;
let device: string;

beforeAll(async () => {
  w = await appWorld({ bodyLimitBytes: 4096, csvBodyLimitBytes: 8192 });
  const t = await w.newTenant();
  w.licences(t, 'basic-25', 1);
  token = await w.login(t);
  device = w.devices(t, 1)[0]!.uuid;
});
afterAll(async () => {
  await w.app.close();
  removeTempDirs();
});

const json = { 'content-type': 'application/json' };

describe('bad input gets a 4xx with a catalogue code, never a 500, and the server keeps serving', () => {
  const cases: {
    name: string;
    method: 'GET' | 'POST' | 'PATCH' | 'DELETE';
    url: string | (() => string);
    payload?: string | Buffer;
    headers?: Record<string, string>;
    status: number;
    code: string;
  }[] = [
    { name: 'malformed JSON', method: 'POST', url: '/api/inventory/device-groups', payload: '{"name": "x",', headers: json, status: 400, code: 'SERVER_BAD_JSON' },
    { name: 'empty JSON body', method: 'POST', url: '/api/inventory/device-groups', payload: '', headers: json, status: 400, code: 'SERVER_BAD_JSON' },
    { name: 'JSON that is not an object', method: 'POST', url: '/api/inventory/device-groups', payload: '[1,2]', headers: json, status: 400, code: 'SERVER_VALIDATION' },
    { name: 'prototype pollution', method: 'POST', url: '/api/inventory/device-groups', payload: '{"name":"x","__proto__":{"admin":true}}', headers: json, status: 400, code: 'SERVER_BAD_JSON' },
    { name: 'a number for a string', method: 'POST', url: '/api/inventory/device-groups', payload: '{"name": 5}', headers: json, status: 400, code: 'SERVER_VALIDATION' },
    { name: 'a string for a number', method: 'POST', url: '/api/inventory/managed-devices', payload: '{"serialNumber":"Z1","connectionPingInterval":"120"}', headers: json, status: 400, code: 'SERVER_VALIDATION' },
    { name: 'out of range number', method: 'POST', url: '/api/inventory/managed-devices', payload: '{"serialNumber":"Z1","connectionPingInterval":-1}', headers: json, status: 400, code: 'SERVER_VALIDATION' },
    { name: 'unknown property', method: 'POST', url: '/api/inventory/device-groups', payload: '{"name":"x","accountId":1}', headers: json, status: 400, code: 'SERVER_VALIDATION' },
    { name: 'missing required property', method: 'POST', url: '/api/inventory/managed-devices', payload: '{}', headers: json, status: 400, code: 'SERVER_VALIDATION' },
    { name: 'oversized JSON body', method: 'POST', url: '/api/inventory/device-groups', payload: JSON.stringify({ name: 'x'.repeat(10_000) }), headers: json, status: 413, code: 'SERVER_BODY_TOO_LARGE' },
    { name: 'oversized CSV body', method: 'POST', url: '/api/inventory/managed-devices/import', payload: `serialNumber\n${'A\n'.repeat(10_000)}`, headers: { 'content-type': 'text/csv' }, status: 413, code: 'SERVER_BODY_TOO_LARGE' },
    { name: 'unsupported content type', method: 'POST', url: '/api/inventory/device-groups', payload: '<x/>', headers: { 'content-type': 'application/xml' }, status: 415, code: 'SERVER_UNSUPPORTED_MEDIA_TYPE' },
    { name: 'path id that is not a uuid', method: 'GET', url: '/api/inventory/managed-devices/not-a-uuid', status: 400, code: 'SERVER_VALIDATION' },
    { name: 'unknown uuid', method: 'GET', url: '/api/inventory/managed-devices/00000000-0000-4000-8000-000000000000', status: 404, code: 'SERVER_NOT_FOUND' },
    { name: 'unknown route', method: 'GET', url: '/api/nothing-here', status: 404, code: 'SERVER_NOT_FOUND' },
    { name: 'bad query value', method: 'GET', url: '/api/inventory/managed-devices?limit=abc', status: 400, code: 'SERVER_VALIDATION' },
    { name: 'unknown query filter', method: 'GET', url: '/api/inventory/managed-devices?account=2', status: 400, code: 'SERVER_VALIDATION' },
    { name: 'forged cursor', method: 'GET', url: '/api/inventory/managed-devices?cursor=eyJ4IjoxfQ', status: 400, code: 'SERVER_INVALID_CURSOR' },
    { name: 'garbage cursor', method: 'GET', url: '/api/inventory/devices-groups?cursor=%00%01', status: 404, code: 'SERVER_NOT_FOUND' },
    { name: 'bad activation date', method: 'POST', url: '/api/licences/00000000-0000-4000-8000-000000000000/activate', payload: '{"at":"tomorrow"}', headers: json, status: 400, code: 'SERVER_VALIDATION' },
    { name: 'CSV to a JSON route', method: 'POST', url: '/api/inventory/device-groups', payload: 'name\nx\n', headers: { 'content-type': 'text/csv' }, status: 400, code: 'SERVER_VALIDATION' },
    { name: 'a private key in the certificate store', method: 'POST', url: '/api/certificates', payload: JSON.stringify({ name: 'k', kind: 'ca', pem: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n' }), headers: json, status: 422, code: 'SERVER_CERTIFICATE_PRIVATE_KEY' },
    { name: 'device update with wrong types', method: 'PATCH', url: () => `/api/inventory/managed-devices/${device}`, payload: '{"customFields":{"a":1}}', headers: json, status: 400, code: 'SERVER_VALIDATION' },
  ];

  it.each(cases)('$name → $status $code', async (c) => {
    const res = await w.app.inject({
      method: c.method,
      url: typeof c.url === 'function' ? c.url() : c.url,
      headers: { authorization: `Bearer ${token}`, ...c.headers },
      ...(c.payload !== undefined ? { payload: c.payload } : {}),
    });
    expect(res.statusCode, res.body).toBe(c.status);
    const body = res.json();
    expect(body.code).toBe(c.code);
    expect(typeof body.message).toBe('string');
    expect(Object.keys(ServerErrors)).toContain(body.code);
    expect(res.body).not.toMatch(/at .*\.ts:\d+|SQLITE|stack/i);
  });

  const detailCases: { name: string; method: 'POST' | 'PATCH' | 'GET'; url: () => string; payload?: unknown; details: Record<string, unknown> }[] = [
    { name: 'below the minimum', method: 'PATCH', url: () => `/api/inventory/managed-devices/${device}`, payload: { connectionPingInterval: 2 }, details: { in: 'body', field: '/connectionPingInterval', rule: 'minimum', limit: 5 } },
    { name: 'above the maximum', method: 'PATCH', url: () => `/api/inventory/managed-devices/${device}`, payload: { connectionPongTimeout: 90_000 }, details: { in: 'body', field: '/connectionPongTimeout', rule: 'maximum', limit: 86_400 } },
    { name: 'a fraction for an integer', method: 'PATCH', url: () => `/api/inventory/managed-devices/${device}`, payload: { connectionSessionTimeout: 1.5 }, details: { in: 'body', field: '/connectionSessionTimeout', rule: 'type' } },
    { name: 'a nullable number out of range', method: 'PATCH', url: () => `/api/inventory/managed-devices/${device}`, payload: { latitude: 95, longitude: 10 }, details: { in: 'body', field: '/latitude', rule: 'maximum', limit: 90 } },
    { name: 'half a coordinate pair', method: 'PATCH', url: () => `/api/inventory/managed-devices/${device}`, payload: { latitude: 45 }, details: { in: 'body', field: '/longitude', rule: 'required' } },
    { name: 'a custom field name the pattern refuses', method: 'PATCH', url: () => `/api/inventory/managed-devices/${device}`, payload: { customFields: { 'bad name': 'x' } }, details: { in: 'body', field: '/customFields/bad name', rule: 'unknownProperty' } },
    { name: 'a custom field value too long', method: 'PATCH', url: () => `/api/inventory/managed-devices/${device}`, payload: { customFields: { site: 'x'.repeat(1001) } }, details: { in: 'body', field: '/customFields/site', rule: 'maxLength', limit: 1000 } },
    { name: 'an empty group name', method: 'POST', url: () => '/api/inventory/device-groups', payload: { name: '' }, details: { in: 'body', field: '/name', rule: 'minLength', limit: 1 } },
    { name: 'a missing property', method: 'POST', url: () => '/api/inventory/device-groups', payload: {}, details: { in: 'body', field: '/name', rule: 'required' } },
    { name: 'a control character in a name', method: 'POST', url: () => '/api/inventory/device-groups', payload: { name: 'a\u0007b' }, details: { in: 'body', field: '/name', rule: 'text' } },
    { name: 'a bad query value', method: 'GET', url: () => '/api/inventory/managed-devices?status=asleep', details: { in: 'querystring', field: '/status', rule: 'oneOf' } },
  ];

  it.each(detailCases)('SERVER_VALIDATION says which field breaks which rule: $name', async (c) => {
    const res = await w.app.inject({
      method: c.method,
      url: c.url(),
      headers: { authorization: `Bearer ${token}`, ...(c.payload === undefined ? {} : json) },
      ...(c.payload === undefined ? {} : { payload: JSON.stringify(c.payload) }),
    });
    expect(res.statusCode, res.body).toBe(400);
    expect(res.json()).toMatchObject({ code: 'SERVER_VALIDATION', details: c.details });
    expect(Object.keys(res.json().details).sort()).toEqual(Object.keys(c.details).sort());
  });

  it('an unauthenticated request is refused before its body is read or validated', async () => {
    const res = await w.app.inject({
      method: 'POST',
      url: '/api/inventory/managed-devices',
      headers: json,
      payload: '{"broken',
    });
    expect(res.statusCode).toBe(401);
    expect(res.headers['www-authenticate']).toBe('Bearer');
  });

  it('after all that, no internal error was counted and the server still answers', async () => {
    expect(w.services.metrics.value('fleet_errors_total', { code: 'SERVER_INTERNAL' })).toBe(0);
    expect((await w.req('GET', '/healthz')).statusCode).toBe(200);
    expect((await w.req('GET', '/api/me', { token })).statusCode).toBe(200);
  });
});
