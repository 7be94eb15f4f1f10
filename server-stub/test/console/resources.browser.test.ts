import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createCa, createTestPki, issueCertificate, writePacket } from '@router-fleet/protocol';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DAY } from '../../src/clock.js';
import { removeTempDirs, T0, type Tenant, tempDir } from '../helpers/setup.js';
import { BROWSER_TEST_MS, type ConsolePage, type ConsoleWorld, englishOnly, poll, shownIn, startConsoleWorld } from './harness.js';

/** The MANIFEST member of a packet: the first tar entry, its size in the header's octal field. */
function manifestOf(packet: Buffer): string {
  expect(packet.subarray(0, 8).toString('latin1')).toBe('MANIFEST');
  const size = parseInt(packet.subarray(124, 136).toString('latin1').replace(/\0.*$/, '').trim(), 8);
  return packet.subarray(512, 512 + size).toString('utf8');
}

let w: ConsoleWorld;
let tenant: Tenant;
let cp: ConsolePage;

beforeAll(async () => {
  w = await startConsoleWorld({ sessionTtlSec: 3600 });
  tenant = await w.newTenant('Ressourcen KG');
  w.licences(tenant, 'basic-25', 1);
  // The vendor's catalogue: firmware for two models, signed by the vendor's root.
  const vendor = await createTestPki({ now: new Date(T0), name: 'Acme Routers' });
  const dir = join(tempDir(), 'vendor');
  mkdirSync(dir);
  for (const [version, models] of [['7.10.2', ['RUTX11', 'RUTX12']], ['7.11.0', ['RUTX11']]] as const) {
    const data = Buffer.alloc(2048, version.length);
    writeFileSync(
      join(dir, `${version}.tar`),
      await writePacket({
        files: [{ name: `RUTX_R_${version}.bin`, fileType: 'FirmwareFull', source: { data }, version }],
        targetModels: [...models],
        signer: vendor.signer,
        createdAt: new Date(T0),
      }),
    );
  }
  const imported = await w.services.packets.importVendorFirmware(dir, { trustAnchorsPem: [vendor.root.certPem] });
  expect(imported.imported).toHaveLength(3);
  cp = await w.newPage();
  await cp.page.goto(`${w.baseUrl}/`);
  await w.login(cp.page, tenant);
}, 120_000);

afterAll(async () => {
  await w?.closeAll();
  removeTempDirs();
});

/** Each file input of the page: its button's text, its "no file" text and its opacity, or `native`. */
function fileFields(page: Page): Promise<string[][]> {
  return page.locator('main').evaluate((main) =>
    Array.from(main.querySelectorAll('input[type="file"]'), (input) => {
      const picker = input.closest('label.file-picker');
      if (!picker) return ['native'];
      const text = (id: string) => picker.querySelector(`[data-testid="${id}"]`)?.textContent ?? '';
      return [text('file-choose'), text('file-name'), getComputedStyle(input).opacity];
    }),
  );
}

describe('resources page in Chromium', () => {
  it('uploads a packet file and shows its MANIFEST; refuses a damaged one; builds a signed packet from files', async () => {
    const { page } = cp;
    await page.locator('nav.sidebar a', { hasText: 'Resources' }).click();
    await poll(() => page.locator('main h1').innerText()).toBe('Resources');
    await poll(() => page.locator('.tabs a.active').innerText()).toBe('Update packets');
    await poll(() => page.locator('main').innerText()).toContain('No update packets yet');

    // The account accepts unsigned packets once its admin says so (in the policy panel).
    await page.locator('[data-testid="policy-toggle"]', { hasText: 'Allow unsigned packets' }).click();
    await poll(() => page.locator('[data-testid="policy-message"]').innerText()).toBe('Unsigned packets may now be uploaded.');
    expect((await w.services.packets.repo(tenant.scope).policy()).allowUnsigned).toBe(true);

    const config = Buffer.from('config system\n\toption hostname "edge-1"\n');
    const packet = await writePacket({
      files: [
        { name: 'router.cfg', fileType: 'AsciiConfiguration', source: { data: config }, description: 'Base configuration' },
        { name: 'fw.bin', fileType: 'FirmwareFull', source: { data: Buffer.alloc(4096, 7) }, version: '7.11.0' },
      ],
      targetModels: ['RUTX11'],
      description: 'Spring rollout',
      createdAt: new Date(T0),
    });
    const upload = page.locator('[data-testid="packet-upload"]');

    // A damaged packet (a payload byte flipped) is refused with the reader's verdict.
    const damaged = Buffer.from(packet);
    damaged[damaged.indexOf(config) + 3]! ^= 0xff;
    await upload.locator('input[type="file"]').setInputFiles({ name: 'damaged.tar', mimeType: 'application/x-tar', buffer: damaged });
    await poll(() => upload.locator('[data-testid="file-name"]').innerText()).toBe('damaged.tar');
    await upload.locator('button[type="submit"]').click();
    await poll(() => page.locator('[data-testid="upload-message"]').innerText()).toBe(
      'The packet was refused: it is not a valid, trusted update packet.',
    );

    await upload.locator('input[type="file"]').setInputFiles({ name: 'spring.tar', mimeType: 'application/x-tar', buffer: packet });
    await upload.locator('input[name="packetName"]').fill('Spring rollout');
    await upload.locator('button[type="submit"]').click();

    // The packet's page: header, sections in processing order, and the MANIFEST exactly as signed.
    await page.waitForURL(/\/resources\/packets\/[0-9a-f-]{36}$/);
    await poll(() => page.locator('[data-testid="packet-name"]').innerText()).toBe('Spring rollout');
    await poll(() => page.locator('[data-testid="manifest"]').innerText()).toBe(manifestOf(packet));
    const manifest = await page.locator('[data-testid="manifest"]').innerText();
    expect(manifest).toMatch(/^FILENAME=router\.cfg$/m);
    expect(manifest).toMatch(/^FILETYPE=FirmwareFull$/m);
    expect(manifest).toContain('TARGET_MODELS=RUTX11');
    const sections = await page.locator('[data-testid="manifest-sections"] tbody tr').allInnerTexts();
    expect(sections.map((s) => s.split('\t').slice(0, 4).map((c) => c.trim()))).toEqual([
      ['1', 'router.cfg\nBase configuration', 'Configuration (text)', ''],
      ['2', 'fw.bin', 'Firmware (full)', '7.11.0'],
    ]);
    expect(await page.locator('[data-testid="manifest-header"]').innerText()).toContain('Spring rollout');
    expect(await page.locator('[data-testid="packet-detail"]').innerText()).toContain('Unsigned');
    await w.screenshot(page, 'resources-packet-manifest');

    // Build one from files: the server writes the MANIFEST and signs it.
    await page.locator('a', { hasText: '← All packets' }).click();
    await poll(() => page.locator('[data-testid="packet-list"] tbody tr').count()).toBe(1);
    const build = page.locator('[data-testid="packet-build"]');
    await build.locator('input[name="buildName"]').fill('VPN settings');
    await build.locator('input[name="buildModels"]').fill('RUTX11, RUTX12');
    await build.locator('[data-testid="component"] select').selectOption('ascii-configuration');
    await build.locator('[data-testid="component"] input[type="file"]').setInputFiles({
      name: 'vpn.conf',
      mimeType: 'text/plain',
      buffer: Buffer.from('remote vpn.example 1194\n'),
    });
    expect(await build.locator('[data-testid="component"] input[aria-label="Name in the packet"]').inputValue()).toBe('vpn.conf');
    await build.locator('button[type="submit"]').click();
    await page.waitForURL(/\/resources\/packets\/[0-9a-f-]{36}$/);
    await poll(() => page.locator('[data-testid="packet-name"]').innerText()).toBe('VPN settings');
    await poll(() => page.locator('[data-testid="manifest"]').innerText()).toMatch(/^FILENAME=vpn\.conf$/m);
    expect(await page.locator('[data-testid="manifest"]').innerText()).toContain('TARGET_MODELS=RUTX11,RUTX12');
    expect(await page.locator('[data-testid="packet-detail"]').innerText()).toContain('Signed');
    const built = w.services.packets.repo(tenant.scope).list({ afterId: 0, limit: 10 });
    expect(built.map((p) => [p.name, p.origin, p.signed])).toEqual([
      ['Spring rollout', 'upload', 0],
      ['VPN settings', 'build', 1],
    ]);

    await page.locator('a', { hasText: '← All packets' }).click();
    await poll(() => page.locator('[data-testid="packet-list"] tbody tr').count()).toBe(2);
    await w.screenshot(page, 'resources-packets');

    // Delete, after a confirmation.
    await page.locator('[data-testid="packet-list"] tr[data-name="VPN settings"] a').click();
    await page.locator('[data-testid="delete-packet"]').click();
    expect(await page.locator('[data-testid="packet-detail"]').innerText()).toContain('Delete the packet VPN settings?');
    await page.locator('[data-testid="confirm-delete"]').click();
    await page.waitForURL(`${w.baseUrl}/resources/packets`);
    await poll(() => page.locator('[data-testid="packet-list"] tbody tr').count()).toBe(1);
    expect(w.services.packets.repo(tenant.scope).list({ afterId: 0, limit: 10 }).map((p) => p.name)).toEqual(['Spring rollout']);
  }, BROWSER_TEST_MS);

  it('lists the vendor firmware catalogue and switches Smart Updates on', async () => {
    const { page } = cp;
    await page.locator('.tabs a', { hasText: 'Vendor firmware' }).click();
    await page.waitForURL(`${w.baseUrl}/resources/firmware`);
    await poll(() => page.locator('[data-testid="firmware-list"] tbody tr').count()).toBe(3);
    await page.locator('input[name="model"]').fill('RUTX12');
    await page.locator('form.filter button').click();
    await poll(() => page.locator('[data-testid="firmware-list"] tbody tr').count()).toBe(1);
    expect(await page.locator('[data-testid="firmware-list"] tbody tr').getAttribute('data-version')).toBe('7.10.2');
    await page.locator('[data-testid="firmware-list"] button', { hasText: 'MANIFEST' }).click();
    expect(await page.locator('[data-testid="firmware-list"] [data-testid="manifest-sections"]').innerText()).toContain('RUTX_R_7.10.2.bin');

    expect(await page.locator('[data-testid="smart-state"]').innerText()).toBe('Off');
    await page.locator('[data-testid="smart-toggle"]').click();
    await poll(() => page.locator('[data-testid="smart-state"]').innerText()).toBe('On');
    expect(w.services.smartUpdates.setting(tenant.scope).enabled).toBe(true);
    await w.screenshot(page, 'resources-firmware');
  }, BROWSER_TEST_MS);

  it('creates a configuration template and fills in one device\'s parameters until its preview renders', async () => {
    const { page } = cp;
    const [device] = w.devices(tenant, 3, 'EDGE');
    w.services.devices.update(tenant.scope, device!.uuid, { name: 'Edge Berlin', location: 'Hall 4' });
    await page.locator('.tabs a', { hasText: 'Configuration templates' }).click();
    await poll(() => page.locator('main').innerText()).toContain('No configuration templates yet.');
    const form = page.locator('[data-testid="template-create"]');
    await form.locator('input[name="templateName"]').fill('Site settings');
    await form.locator('input[name="templateFileName"]').fill('site.cfg');
    await form.locator('textarea[name="templateBody"]').fill('hostname={{device.name}}\nlocation={{ device.location }}\nsite={{custom.site}}\n');
    await form.locator('button[type="submit"]').click();
    await page.waitForURL(/\/resources\/templates\/[0-9a-f-]{36}$/);
    await poll(() => page.locator('[data-testid="template-name"]').innerText()).toBe('Site settings');

    const params = page.locator('[data-testid="device-parameters"]');
    await params.locator('input[name="deviceSearch"]').fill('Berlin');
    await params.locator('button[type="submit"]').click();
    await params.locator('[data-testid="device-matches"] button', { hasText: 'Edge Berlin' }).click();
    await poll(() => params.locator('[data-testid="preview-missing"]').innerText()).toBe('No value yet for {{custom.site}}.');
    await params.locator('input[data-param="custom.site"]').fill('Berlin-Nord');
    await params.locator('[data-testid="save-parameters"]').click();
    await poll(() => params.locator('[data-testid="template-preview"] pre').innerText()).toBe(
      'hostname=Edge Berlin\nlocation=Hall 4\nsite=Berlin-Nord\n',
    );
    expect(tenant.scope.devices.byUuid(device!.uuid)!.custom_fields).toBe(JSON.stringify({ site: 'Berlin-Nord' }));
    await w.screenshot(page, 'resources-templates');
  }, BROWSER_TEST_MS);

  it('stores certificates, shows their expiry and calls out one expiring soon; German throughout', async () => {
    const { page, pageErrors, cspViolations } = cp;
    const now = new Date(w.clock.now());
    const ca = await createCa({ commonName: 'Fleet VPN CA', now, keyBits: 1024 });
    const leaf = await issueCertificate({ commonName: 'vpn.example', issuer: ca, now, keyBits: 1024, notAfter: new Date(now.getTime() + 10 * DAY) });
    await page.locator('.tabs a', { hasText: 'Certificates' }).click();
    await poll(() => page.locator('main').innerText()).toContain('No certificates stored yet.');
    const form = page.locator('[data-testid="certificate-upload"]');
    await form.locator('textarea[name="pem"]').fill(ca.certPem);
    await form.locator('input[type="checkbox"]').check();
    await form.locator('button[type="submit"]').click();
    await poll(() => page.locator('[data-testid="certificate-message"]').innerText()).toBe('Certificate Fleet VPN CA stored.');
    // A private key is refused.
    await form.locator('textarea[name="pem"]').fill(ca.keyPem);
    await form.locator('button[type="submit"]').click();
    await poll(() => page.locator('[data-testid="certificate-message"]').innerText()).toBe(
      'Private keys are never accepted; upload the certificate only.',
    );
    await form.locator('textarea[name="pem"]').fill('');
    await form.locator('input[type="file"]').setInputFiles({ name: 'vpn.pem', mimeType: 'application/x-pem-file', buffer: Buffer.from(leaf.certPem) });
    await form.locator('button[type="submit"]').click();
    await poll(() => page.locator('[data-testid="certificate-list"] tbody tr').count()).toBe(2);
    const row = (name: string) => page.locator(`[data-testid="certificate-list"] tr[data-name="${name}"]`);
    expect(await row('Fleet VPN CA').locator('[data-testid="certificate-status"]').innerText()).toBe('Valid');
    expect(await row('vpn.example').locator('[data-testid="certificate-status"]').innerText()).toBe('Expires soon');
    expect(await row('vpn.example').innerText()).toContain('11 Jan 2026');
    expect(await page.locator('[data-testid="certificate-notices"]').innerText()).toBe('Certificate vpn.example expires on 11 Jan 2026.');
    await w.screenshot(page, 'resources-certificates');

    // German: every text of each section translated.
    await page.locator('[data-testid="language"]').selectOption('de');
    await poll(() => page.locator('main h1').innerText()).toBe('Ressourcen');
    expect(await page.locator('[data-testid="certificate-notices"]').innerText()).toBe('Zertifikat vpn.example läuft am 11.01.2026 ab.');
    const english = englishOnly(['common', 'resources']);
    for (const tab of ['Zertifikate', 'Update-Pakete', 'Hersteller-Firmware', 'Konfigurationsvorlagen']) {
      await page.locator('.tabs a', { hasText: tab }).click();
      await poll(() => page.locator('.tabs a.active').innerText()).toBe(tab);
      await page.locator('main table, main .notice').first().waitFor();
      const text = await page.locator('body').innerText();
      expect(shownIn(text, english), tab).toEqual([]);
      // The browser's own file button would say "Choose File" whatever the page's language: each
      // file input is hidden behind the page's own button and "no file" text.
      const files = { Zertifikate: 1, 'Update-Pakete': 2 }[tab] ?? 0;
      expect(await fileFields(page), tab).toEqual(Array.from({ length: files }, () => ['Datei auswählen…', 'Keine Datei ausgewählt', '0']));
    }
    await w.screenshot(page, 'resources-templates-de');
    await page.locator('[data-testid="template-list"] a').first().click();
    await poll(() => page.locator('[data-testid="template-name"]').innerText()).toBe('Site settings');
    const text = await page.locator('body').innerText();
    expect(shownIn(text, english)).toEqual([]);
    expect(text).toContain('Parameter je Gerät');
    expect(await cspViolations()).toEqual([]);
    expect(pageErrors).toEqual([]);
  }, BROWSER_TEST_MS);
});
