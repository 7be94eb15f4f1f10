import { afterAll, beforeAll, describe, it } from 'vitest';
import type { ConfigInput } from '../src/config.js';
import type { DeviceOptions } from '../src/platform/device-model.js';
import type { Faults } from '../src/platform/faults.js';
import { issueCertificate } from '../src/packet-api.js';
import { FakeServer } from './helpers/fake-server.js';
import { type PlatformKind, TestDevice, tempDir } from './helpers/device.js';
import { firmwareImage, makePacket, testProfile } from './helpers/packets.js';
import { type TestCerts, testCerts } from './helpers/pki.js';

let certs: TestCerts;
let server: FakeServer;
const devices: TestDevice[] = [];
let n = 0;

beforeAll(async () => {
  certs = await testCerts();
  server = await new FakeServer({ certPem: certs.tlsServer.certPem, keyPem: certs.tlsServer.keyPem }).start();
});
afterAll(async () => {
  await Promise.all(devices.splice(0).map((d) => d.dispose()));
  await server.close();
});

async function device(kind: PlatformKind, faults: Faults = {}, config: ConfigInput = {}, options: DeviceOptions = {}) {
  const deviceId = `dev-${kind}-${++n}`;
  const profile = testProfile({
    serverUrl: server.url,
    caCertPem: certs.tlsCa.certPem,
    trustAnchorsPem: [certs.pki.root.certPem],
    deviceId,
  });
  const d = new TestDevice(kind, await tempDir(), profile, config, faults, options);
  devices.push(d);
  await d.start();
  await server.waitFor(() => server.received('status', deviceId)[0]);
  return { d, deviceId };
}

const text = (b: Uint8Array) => Buffer.from(b).toString();

describe.concurrent.each(['emulated', 'memory'] as const)('jobs on the %s platform', (kind) => {
  it('firmware update: download, verify, install, reboot, health check, commit; one terminal report', async ({ expect }) => {
    const { d, deviceId } = await device(kind);
    const packet = await makePacket(certs.pki.signer, [
      { name: 'autoupdate-2.0.0-full.arm64.tar', fileType: 'FirmwareFull', data: firmwareImage('2.0.0'), version: '2.0.0' },
    ]);
    server.addPacket(`fw-${deviceId}.tar`, packet);
    server.offer(deviceId, `exe-fw-${deviceId}`, `fw-${deviceId}.tar`);
    const terminal = await server.waitForTerminal(`exe-fw-${deviceId}`);
    expect(terminal.body.state).toBe('succeeded');
    expect(server.progress(`exe-fw-${deviceId}`)).toEqual(
      expect.arrayContaining(['downloading', 'downloaded', 'installing', 'rebooting', 'verifying', 'succeeded']),
    );
    expect(await d.platform.firmware.state()).toMatchObject({ booted: 'b', committed: 'b', versions: { b: '2.0.0' } });
    const hellos = server.received('hello', deviceId);
    expect(hellos.at(-1)!.body.firmwareVersion).toBe('2.0.0');
    expect(hellos.at(-1)!.body.bootId).not.toBe(hellos[0]!.body.bootId);
    expect(server.terminals(`exe-fw-${deviceId}`)).toHaveLength(1);
  });

  it('health-check failure after the reboot → rolled back to the previous slot, failed', async ({ expect }) => {
    const { d, deviceId } = await device(kind, { healthCheck: { fail: true } }, { healthCheckTimeoutSec: 2 });
    const packet = await makePacket(certs.pki.signer, [
      { name: 'fw.tar', fileType: 'FirmwareFull', data: firmwareImage('2.1.0'), version: '2.1.0' },
    ]);
    server.addPacket(`fwbad-${deviceId}.tar`, packet);
    server.offer(deviceId, `exe-hc-${deviceId}`, `fwbad-${deviceId}.tar`);
    const terminal = await server.waitForTerminal(`exe-hc-${deviceId}`, 20_000);
    expect(terminal.body).toMatchObject({ state: 'failed', errorCode: 'AGENT_HEALTH_CHECK_FAILED' });
    expect(await d.platform.firmware.state()).toMatchObject({ booted: 'a', committed: 'a', versions: { a: '1.0.0' } });
    expect(server.received('hello', deviceId).at(-1)!.body.firmwareVersion).toBe('1.0.0');
    expect(server.terminals(`exe-hc-${deviceId}`)).toHaveLength(1);
  });

  it('a failure in a later section rolls back the earlier ones', async ({ expect }) => {
    const { d, deviceId } = await device(kind, { install: { failSection: 2 } });
    const ca = await issueCertificate({ commonName: 'Plant CA', ca: true, keyBits: 1024 });
    const before = text((await d.platform.configuration.running()).content);
    const packet = await makePacket(certs.pki.signer, [
      { name: 'profile.cfg', fileType: 'ConfigurationProfile', data: 'hostname=plant-7\nuplink=up\n', version: '7' },
      { name: 'plant-ca.pem', fileType: 'CaCertificate', data: ca.certPem },
      { name: 'app-1.0.0.tar.xz', fileType: 'Container', data: 'rootfs', version: '1.0.0' },
    ]);
    server.addPacket(`multi-${deviceId}.tar`, packet);
    server.offer(deviceId, `exe-multi-${deviceId}`, `multi-${deviceId}.tar`);
    const terminal = await server.waitForTerminal(`exe-multi-${deviceId}`);
    expect(terminal.body).toMatchObject({ state: 'failed', errorCode: 'AGENT_INSTALL_FAILED' });
    expect(text((await d.platform.configuration.running()).content)).toBe(before);
    expect(await d.platform.certificates.list()).toEqual([]);
    expect(await d.platform.containers.list()).toEqual([]);
    await server.waitFor(() => server.received('event', deviceId).find((e) => e.body.kind === 'job.failed'));
    const kinds = server.received('event', deviceId).map((e) => e.body.kind);
    expect(kinds).toEqual(expect.arrayContaining(['job.section-installed', 'job.rolled-back', 'job.failed']));
  });

  it('a configuration that cuts the connection is restored automatically', async ({ expect }) => {
    const { d, deviceId } = await device(kind, {}, { healthCheckTimeoutSec: 2 });
    const before = text((await d.platform.configuration.running()).content);
    const packet = await makePacket(certs.pki.signer, [
      { name: 'cut.cfg', fileType: 'ConfigurationProfile', data: 'hostname=cut\nuplink=down\n', version: '8' },
    ]);
    server.addPacket(`cut-${deviceId}.tar`, packet);
    server.offer(deviceId, `exe-cut-${deviceId}`, `cut-${deviceId}.tar`);
    const terminal = await server.waitForTerminal(`exe-cut-${deviceId}`, 20_000);
    expect(terminal.body).toMatchObject({ state: 'failed', errorCode: 'AGENT_HEALTH_CHECK_FAILED' });
    expect(text((await d.platform.configuration.running()).content)).toBe(before);
    expect(d.platform.network.reachable()).toBe(true);
  });
});

describe.concurrent('jobs (emulated platform)', () => {
  it('configuration, certificate and container sections succeed and show in the status', async ({ expect }) => {
    const { d, deviceId } = await device('emulated');
    const ca = await issueCertificate({ commonName: 'Plant CA', ca: true, keyBits: 1024 });
    const leaf = await issueCertificate({ commonName: 'vpn-client', issuer: ca, keyBits: 1024 });
    const packet = await makePacket(certs.pki.signer, [
      { name: 'plant-ca.pem', fileType: 'CaCertificate', data: ca.certPem },
      { name: 'vpn-client.pem', fileType: 'Certificate', data: `${leaf.certPem}${leaf.keyPem}` },
      { name: 'modbus-bridge-2.4.1.tar.xz', fileType: 'Container', data: 'rootfs-2.4.1', version: '2.4.1' },
      { name: 'modbus.json', fileType: 'ContainerConfiguration', data: JSON.stringify({ container: 'modbus-bridge', action: 'start' }) },
      { name: 'cli.txt', fileType: 'AsciiConfiguration', data: 'set ntp pool.example\n' },
    ]);
    server.addPacket(`ok-${deviceId}.tar`, packet);
    server.offer(deviceId, `exe-ok-${deviceId}`, `ok-${deviceId}.tar`);
    expect((await server.waitForTerminal(`exe-ok-${deviceId}`)).body.state).toBe('succeeded');
    expect((await d.platform.certificates.list()).map((c) => c.name).sort()).toEqual(['plant-ca', 'vpn-client']);
    expect(await d.platform.containers.get('modbus-bridge')).toMatchObject({ version: '2.4.1', state: 'running' });
    expect(text((await d.platform.configuration.running()).content)).toContain('ntp=pool.example');
    const status = await server.waitFor(() =>
      server.received('status', deviceId).find((s) => s.body.containers.length === 1 && s.body.certificates.length === 2),
    );
    expect(status.body.containers[0]).toEqual({ name: 'modbus-bridge', version: '2.4.1', state: 'running' });
    expect(JSON.stringify(status.body)).not.toContain('PRIVATE KEY');
  });

  it('a redelivered offer and an already-installed packet are reported, not re-applied', async ({ expect }) => {
    const { deviceId } = await device('emulated');
    const packet = await makePacket(certs.pki.signer, [{ name: 'c.txt', fileType: 'AsciiConfiguration', data: 'set a 1\n' }]);
    const name = `dup-${deviceId}.tar`;
    server.addPacket(name, packet);
    server.offer(deviceId, `exe-dup-${deviceId}`, name);
    const first = await server.waitForTerminal(`exe-dup-${deviceId}`);
    const requests = server.packets.get(name)!.requests;
    server.offer(deviceId, `exe-dup-${deviceId}`, name);
    await server.waitFor(() => server.received('job-progress', deviceId).filter((m) => m.id === first.id).length >= 2);
    expect(server.terminals(`exe-dup-${deviceId}`)).toHaveLength(1);
    server.offer(deviceId, `exe-dup2-${deviceId}`, name);
    const second = await server.waitForTerminal(`exe-dup2-${deviceId}`);
    expect(second.body.state).toBe('succeeded');
    expect(server.progress(`exe-dup2-${deviceId}`)).toEqual(['succeeded']);
    expect(server.packets.get(name)!.requests).toBe(requests);
  });

  it('cancel before the commit point aborts cleanly (staging removed)', async ({ expect }) => {
    const { d, deviceId } = await device('emulated', {}, { downloadStallSec: 30, downloadMinBytesPerSec: 1 });
    const packet = await makePacket(certs.pki.signer, [{ name: 'fw.bin', fileType: 'FirmwareFull', data: firmwareImage('3.0.0', 64 * 1024), version: '3.0.0' }]);
    server.addPacket(`slow-${deviceId}.tar`, packet, { trickle: { bytesPerTick: 1024, tickMs: 20 } });
    server.offer(deviceId, `exe-cancel-${deviceId}`, `slow-${deviceId}.tar`);
    await server.waitFor(() => server.progress(`exe-cancel-${deviceId}`).includes('downloading') || undefined);
    server.send(deviceId, 'job-cancel', { executionId: `exe-cancel-${deviceId}`, reason: 'operator' });
    const terminal = await server.waitForTerminal(`exe-cancel-${deviceId}`);
    expect(terminal.body.state).toBe('cancelled');
    expect(await d.platform.staging.size(`job-exe-cancel-${deviceId}/packet.tar`)).toBeUndefined();
    expect((await d.platform.firmware.state()).versions.b).toBeUndefined();
  });

  it('cancel after the commit point: finishes, says it could not cancel', async ({ expect }) => {
    const { deviceId } = await device('emulated', { install: { delayMs: 600 } });
    const packet = await makePacket(certs.pki.signer, [{ name: 'c.txt', fileType: 'AsciiConfiguration', data: 'set b 2\n' }]);
    server.addPacket(`late-${deviceId}.tar`, packet);
    server.offer(deviceId, `exe-late-${deviceId}`, `late-${deviceId}.tar`);
    await server.waitFor(() => server.progress(`exe-late-${deviceId}`).includes('installing') || undefined);
    const cancelId = server.send(deviceId, 'job-cancel', { executionId: `exe-late-${deviceId}` });
    const refusal = await server.waitFor(() => server.received('error', deviceId).find((e) => e.correlationId === cancelId));
    expect(refusal.body.code).toBe('AGENT_CANCEL_TOO_LATE');
    expect((await server.waitForTerminal(`exe-late-${deviceId}`)).body.state).toBe('succeeded');
  });

  it('refuses unsigned packets and packets signed outside the trust anchors (security event)', async ({ expect }) => {
    const { deviceId } = await device('emulated');
    const unsigned = await makePacket(undefined, [{ name: 'c.txt', fileType: 'AsciiConfiguration', data: 'set x 1\n' }]);
    const foreign = await makePacket(certs.pki.foreignSigner, [{ name: 'c.txt', fileType: 'AsciiConfiguration', data: 'set x 2\n' }]);
    server.addPacket(`unsigned-${deviceId}.tar`, unsigned);
    server.addPacket(`foreign-${deviceId}.tar`, foreign);
    server.offer(deviceId, `exe-unsigned-${deviceId}`, `unsigned-${deviceId}.tar`);
    expect((await server.waitForTerminal(`exe-unsigned-${deviceId}`)).body).toMatchObject({
      state: 'rejected',
      errorCode: 'PROTO_PACKET_SIGNATURE_MISSING',
    });
    server.offer(deviceId, `exe-foreign-${deviceId}`, `foreign-${deviceId}.tar`);
    expect((await server.waitForTerminal(`exe-foreign-${deviceId}`)).body).toMatchObject({
      state: 'rejected',
      errorCode: 'PROTO_PACKET_SIGNER_UNTRUSTED',
    });
    await server.waitFor(() => server.received('event', deviceId).find((e) => e.body.kind === 'security.packet-rejected'));
  });

  it('refuses a packet listing a name and its staging name on both platforms, extracting or not', async ({ expect }) => {
    for (const kind of ['emulated', 'memory'] as const) {
      const { d, deviceId } = await device(kind);
      const packet = await makePacket(certs.pki.signer, [
        { name: 'x.cfg', fileType: 'AsciiConfiguration', data: 'set a 1\n' },
        { name: 'x.cfg.partial', fileType: 'AsciiConfiguration', data: 'set a 2\n' },
      ]);
      server.addPacket(`clash-${deviceId}.tar`, packet);
      server.offer(deviceId, `exe-clash-${deviceId}`, `clash-${deviceId}.tar`);
      expect((await server.waitForTerminal(`exe-clash-${deviceId}`)).body, kind).toMatchObject({
        state: 'rejected',
        errorCode: 'PROTO_PACKET_DUPLICATE_ENTRY',
      });
      expect(d.kind).toBe(kind);
    }
  });

  it('refuses another model, unmet REQUIRED_SW and a downgrade (unless allowed)', async ({ expect }) => {
    const { d, deviceId } = await device('emulated', {}, {}, { firmwareVersion: '2.0.0' });
    const cases: [string, Buffer, string][] = [
      ['model', await makePacket(certs.pki.signer, [{ name: 'c.txt', fileType: 'AsciiConfiguration', data: 'set m 1\n' }], { targetModels: ['OTHER-9'] }), 'PROTO_PACKET_INCOMPATIBLE'],
      ['reqsw', await makePacket(certs.pki.signer, [{ name: 'c.txt', fileType: 'AsciiConfiguration', data: 'set m 1\n', requiredSw: '>=3.0.0' }]), 'PROTO_PACKET_INCOMPATIBLE'],
      ['down', await makePacket(certs.pki.signer, [{ name: 'fw.bin', fileType: 'FirmwareFull', data: firmwareImage('1.5.0'), version: '1.5.0' }]), 'PROTO_PACKET_INCOMPATIBLE'],
    ];
    for (const [id, packet, code] of cases) {
      server.addPacket(`${id}-${deviceId}.tar`, packet);
      server.offer(deviceId, `exe-${id}-${deviceId}`, `${id}-${deviceId}.tar`);
      expect((await server.waitForTerminal(`exe-${id}-${deviceId}`)).body).toMatchObject({ state: 'rejected', errorCode: code });
    }
    expect((await d.platform.firmware.state()).versions.b).toBeUndefined();
    server.offer(deviceId, `exe-down-ok-${deviceId}`, `down-${deviceId}.tar`, { allowDowngrade: true });
    expect((await server.waitForTerminal(`exe-down-ok-${deviceId}`)).body.state).toBe('succeeded');
    expect((await d.platform.firmware.state()).versions.b).toBe('1.5.0');
  });

  it('rejects a packet larger than the free staging space before writing it', async ({ expect }) => {
    const { d, deviceId } = await device('emulated', {}, {}, {});
    const packet = await makePacket(certs.pki.signer, [{ name: 'fw.bin', fileType: 'FirmwareFull', data: firmwareImage('9.0.0', 256 * 1024), version: '9.0.0' }]);
    server.addPacket(`big-${deviceId}.tar`, packet);
    await d.restart();
    (d.config as Record<string, unknown>).maxPacketBytes = 100 * 1024;
    const framesBefore = server.frames.length;
    await d.restart();
    // The offer follows the welcome of the restarted agent on the same socket.
    await server.waitForWelcome(deviceId, framesBefore);
    server.offer(deviceId, `exe-big-${deviceId}`, `big-${deviceId}.tar`);
    expect((await server.waitForTerminal(`exe-big-${deviceId}`)).body).toMatchObject({ state: 'rejected', errorCode: 'AGENT_PACKET_TOO_LARGE' });
    expect(server.packets.get(`big-${deviceId}.tar`)!.requests).toBe(0);
  });

  it('rejects an expired certificate and keeps the installed ones', async ({ expect }) => {
    const { d, deviceId } = await device('emulated');
    const ca = await issueCertificate({ commonName: 'Plant CA', ca: true, keyBits: 1024 });
    await d.platform.certificates.replaceAll([{ name: 'plant-ca', certPem: ca.certPem, isCa: true }]);
    const expired = await issueCertificate({
      commonName: 'old-client',
      keyBits: 1024,
      issuer: ca,
      notBefore: new Date(Date.now() - 3 * 86_400_000),
      notAfter: new Date(Date.now() - 86_400_000),
    });
    const untrusted = await issueCertificate({ commonName: 'stranger', issuer: certs.otherCa, keyBits: 1024 });
    for (const [id, pem] of [
      ['expired', expired.certPem],
      ['untrusted', untrusted.certPem],
    ] as const) {
      const packet = await makePacket(certs.pki.signer, [{ name: `${id}.pem`, fileType: 'Certificate', data: pem }]);
      server.addPacket(`${id}-${deviceId}.tar`, packet);
      server.offer(deviceId, `exe-${id}-${deviceId}`, `${id}-${deviceId}.tar`);
      expect((await server.waitForTerminal(`exe-${id}-${deviceId}`)).body).toMatchObject({
        state: 'rejected',
        errorCode: 'AGENT_CERTIFICATE_INVALID',
      });
    }
    expect((await d.platform.certificates.list()).map((c) => c.name)).toEqual(['plant-ca']);
  });

  it('waits for the install window; a passed deadline times out', async ({ expect }) => {
    const { d, deviceId } = await device('emulated');
    const packet = await makePacket(certs.pki.signer, [{ name: 'c.txt', fileType: 'AsciiConfiguration', data: 'set w 1\n' }]);
    server.addPacket(`win-${deviceId}.tar`, packet);
    const notBefore = Date.now() + 800;
    server.offer(deviceId, `exe-win-${deviceId}`, `win-${deviceId}.tar`, { installWindow: { notBefore, notAfter: notBefore + 60_000 } });
    await server.waitFor(() => server.progress(`exe-win-${deviceId}`).includes('downloaded') || undefined);
    expect(d.agent.updateState()).toBe('waiting');
    expect((await server.waitForTerminal(`exe-win-${deviceId}`)).body.state).toBe('succeeded');
    expect(Date.now()).toBeGreaterThanOrEqual(notBefore);
    server.offer(deviceId, `exe-late2-${deviceId}`, `win-${deviceId}.tar`, { deadline: Date.now() - 1000 });
    expect((await server.waitForTerminal(`exe-late2-${deviceId}`)).body).toMatchObject({ state: 'timed-out', errorCode: 'AGENT_DEADLINE_EXCEEDED' });
  });

  it.for([
    ['a new credential', 'good', 'succeeded'],
    ['a profile that cannot connect (rolled back)', 'bad', 'failed'],
  ] as const)('re-provisions through a ConnectionProfile section: %s', async ([, id, state], { expect }) => {
    const { d, deviceId } = await device('emulated', {}, id === 'bad' ? { healthCheckTimeoutSec: 2 } : {});
    const profile =
      id === 'good'
        ? { ...d.profile, credential: 'rotated-credential-0123456789' }
        : { ...d.profile, serverUrl: `wss://127.0.0.1:${server.port}/nowhere` };
    const packet = await makePacket(certs.pki.signer, [{ name: 'connection-profile.json', fileType: 'ConnectionProfile', data: JSON.stringify(profile) }]);
    server.addPacket(`${id}-${deviceId}.tar`, packet);
    server.offer(deviceId, `exe-prof-${id}-${deviceId}`, `${id}-${deviceId}.tar`);
    expect((await server.waitForTerminal(`exe-prof-${id}-${deviceId}`, 20_000)).body.state).toBe(state);
    const credential = server.received('hello', deviceId).at(-1)!.body.credential;
    expect(credential).toBe(id === 'good' ? 'rotated-credential-0123456789' : d.profile.credential);
  });
});
