import type { MessageOf } from '@router-fleet/protocol';
import { afterAll, describe, expect, it } from 'vitest';
import { FakeDevice } from './helpers/fake-device.js';
import { JOB_DEVICE_HELLO, type JobsWorld, jobsWorld } from './helpers/jobs-world.js';
import { removeTempDirs } from './helpers/setup.js';
import { waitFor } from '../../protocol/test/helpers/wait-for.js';

const worlds: JobsWorld[] = [];
afterAll(async () => {
  for (const w of worlds) await w.shutdown();
  removeTempDirs();
});

/** Polls an async check until it returns a value (effects that cross sockets and async rendering). */
function poll<T>(check: () => Promise<T | undefined>, what: string): Promise<T> {
  return waitFor(check, { what });
}

const BODY = 'hostname {{device.name}}\nserial {{ device.serialNumber }}\nsite {{custom.site}}\napn {{group.apn}}\n';

async function setup() {
  const w = await jobsWorld();
  worlds.push(w);
  const group = (await w.api('POST', '/api/inventory/device-groups', { name: 'field' })).json;
  expect((await w.api('PUT', `/api/inventory/device-groups/${group.uuid}/template-values`, { values: { apn: 'iot.example' } })).status).toBe(200);
  const tpl = await w.api('POST', '/api/configuration-templates', { name: 'base', body: BODY, fileName: 'base.cli' });
  expect(tpl.status, JSON.stringify(tpl.json)).toBe(201);
  const mk = (serialNumber: string, site?: string) => {
    const row = w.services.devices.create(w.tenant.scope, {
      serialNumber,
      name: `router-${serialNumber}`,
      model: 'RT-100',
      groupUuid: group.uuid,
      ...(site ? { customFields: { site } } : {}),
    });
    return new FakeDevice({ uuid: row.uuid, serialNumber, credential: w.services.devices.credential(w.tenant.scope, row.uuid) }, JOB_DEVICE_HELLO);
  };
  return { w, group, tpl: tpl.json, devices: [mk('T-1', 'Berlin'), mk('T-2', 'Hamburg'), mk('T-3')] };
}

describe('configuration templates', () => {
  it('validates placeholders and previews for one device (missing values named)', async () => {
    const { w, tpl, devices } = await setup();
    const bad = await w.api('POST', '/api/configuration-templates', { name: 'bad', body: 'x {{device.password}}' });
    expect(bad.json).toMatchObject({ code: 'SERVER_TEMPLATE_INVALID', details: { placeholder: 'device.password' } });
    const open = await w.api('POST', '/api/configuration-templates', { name: 'bad2', body: 'x {{custom.site' });
    expect(open.json.code).toBe('SERVER_TEMPLATE_INVALID');
    const p = await w.api('POST', `/api/configuration-templates/${tpl.uuid}/preview`, { deviceUuid: devices[0]!.uuid });
    expect(p.status, JSON.stringify(p.json)).toBe(200);
    expect(p.json.rendered).toBe('hostname router-T-1\nserial T-1\nsite Berlin\napn iot.example\n');
    expect(p.json.placeholders).toEqual(['device.name', 'device.serialNumber', 'custom.site', 'group.apn']);
    const missing = await w.api('POST', `/api/configuration-templates/${tpl.uuid}/preview`, { deviceUuid: devices[2]!.uuid });
    expect(missing.status).toBe(422);
    expect(missing.json).toMatchObject({ code: 'SERVER_TEMPLATE_VALUE_MISSING', details: { missing: ['custom.site'] } });
    expect(missing.json.message).toContain('{{custom.site}}');
    const unknownDevice = await w.api('POST', `/api/configuration-templates/${tpl.uuid}/preview`, {
      deviceUuid: '00000000-0000-4000-8000-000000000000',
    });
    expect(unknownDevice.status).toBe(404);
    const taken = await w.api('POST', '/api/configuration-templates', { name: 'base', body: 'x' });
    expect(taken.status).toBe(409);
    expect(taken.json.code).toBe('SERVER_NAME_TAKEN');
    const patched = await w.api('PATCH', `/api/configuration-templates/${tpl.uuid}`, { description: 'v2' });
    expect(patched.json).toMatchObject({ description: 'v2', fileName: 'base.cli', kind: 'ascii-configuration' });
  });

  it('a template job gives each device its own signed packet; a missing value fails only that execution, before sending', async () => {
    const { w, tpl, devices } = await setup();
    for (const d of devices) await d.connect(w.channel.port);
    const job = await w.api('POST', '/api/jobs', { templateUuid: tpl.uuid, target: { deviceUuids: devices.map((d) => d.uuid) } });
    expect(job.status, JSON.stringify(job.json)).toBe(201);
    expect(job.json).toMatchObject({ templateUuid: tpl.uuid, packetUuid: null, name: 'base' });
    const isOffer = (m: { type: string }) => m.type === 'job-offer';
    const offers = (await Promise.all(devices.slice(0, 2).map((d) => d.next(isOffer)))) as MessageOf<'job-offer'>[];
    expect(offers[0]!.body.packet.sha256).not.toBe(offers[1]!.body.packet.sha256);
    for (const [i, o] of offers.entries()) {
      const res = await w.app.inject({
        method: 'GET',
        url: `/api/packets/download/${o.body.executionId}`,
        headers: { authorization: `Bearer ${o.body.download.token}` },
      });
      expect(res.statusCode).toBe(200);
      const tar = res.rawPayload.toString('latin1');
      expect(tar).toContain('FILETYPE=AsciiConfiguration');
      expect(tar).toContain('MANIFEST.sig');
      expect(tar).toContain(`hostname router-T-${i + 1}\nserial T-${i + 1}\nsite ${i === 0 ? 'Berlin' : 'Hamburg'}\napn iot.example\n`);
    }
    // The third device has no custom.site: its execution failed, and it was never offered anything.
    type Result = { deviceUuid: string; result: string | null; errorCode: string; errorMessage: string };
    const failed = await poll(async () => {
      const r = (await w.api('GET', `/api/jobs/${job.json.uuid}/devices`)).json.items as Result[];
      const x = r.find((y) => y.deviceUuid === devices[2]!.uuid);
      return x?.result === 'failed' ? x : undefined;
    }, 'the failed execution');
    expect(failed.errorCode).toBe('SERVER_TEMPLATE_VALUE_MISSING');
    expect(failed.errorMessage).toContain('{{custom.site}}');
    expect(devices[2]!.offers()).toHaveLength(0);
    for (const [i, o] of offers.entries()) {
      for (const state of ['downloading', 'downloaded', 'installing', 'verifying', 'succeeded'] as const) {
        devices[i]!.report(o.body.executionId, state);
      }
    }
    const done = await poll(async () => {
      const j = (await w.api('GET', `/api/jobs/${job.json.uuid}`)).json;
      return j.state === 'finished' ? j : undefined;
    }, 'the job to finish');
    expect(done.progress.results).toMatchObject({ succeeded: 2, failed: 1 });
    for (const d of devices) await d.disconnect();
  });

  it('template jobs need the plan feature and an existing template', async () => {
    const { w } = await setup();
    const unknown = await w.api('POST', '/api/jobs', {
      templateUuid: '00000000-0000-4000-8000-000000000000',
      target: { all: true },
    });
    expect(unknown.status).toBe(400);
    const both = await w.api('POST', '/api/jobs', {
      templateUuid: '00000000-0000-4000-8000-000000000000',
      firmwareVersion: '1.0.0',
      target: { all: true },
    });
    expect(both.json.code).toBe('SERVER_VALIDATION');
  });
});
