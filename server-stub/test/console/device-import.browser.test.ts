import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeTempDirs, type Tenant } from '../helpers/setup.js';
import { BROWSER_TEST_MS, type ConsoleWorld, englishOnly, poll, shownIn, startConsoleWorld } from './harness.js';

let w: ConsoleWorld;
let tenant: Tenant;

beforeAll(async () => {
  w = await startConsoleWorld({ sessionTtlSec: 3600 });
  tenant = await w.newTenant('Import GmbH');
  w.licences(tenant, 'basic-25', 1);
}, 120_000);

afterAll(async () => {
  await w?.closeAll();
  removeTempDirs();
});

const MARKUP = '<img src=x onerror=alert(1)>';

describe('device CSV import in Chromium', () => {
  it('registers devices from a CSV file, shows why a line is refused, and downloads a connection profile', async () => {
    const { page, pageErrors, cspViolations } = await w.newPage();
    const dialogs: string[] = [];
    page.on('dialog', (d) => {
      dialogs.push(d.message());
      void d.dismiss();
    });
    await page.goto(`${w.baseUrl}/devices/import`);
    await w.login(page, tenant);
    await poll(() => page.locator('main h1').innerText()).toBe('Register devices from a CSV file');
    // A page of the Devices entry: the navigation marks Devices.
    expect(await page.locator('nav.sidebar a.active').innerText()).toBe('Devices');

    const csv = [
      'serialNumber,name,location,latitude,longitude',
      `RUT-0001,${MARKUP},Hall 1,52.52,13.40`,
      'RUT-0002,Depot south,Hall 2,48.14,11.58',
      'RUT-0003,Depot east,Hall 3,123.0,11.58',
      'RUT-0004,Depot west,Hall 4,,',
    ].join('\n');
    const form = page.locator('[data-testid="import-form"]');
    const choose = () => form.locator('input[type="file"]').setInputFiles({ name: 'routers.csv', mimeType: 'text/csv', buffer: Buffer.from(csv) });
    const lineOf = (n: number) => page.locator(`[data-testid="report-lines"] tr[data-line="${n}"]`);

    // All or nothing: one bad line, nothing registered, the line's reason shown.
    await choose();
    await form.locator('button[type="submit"]').click();
    await poll(() => page.locator('[data-testid="report-rolled-back"]').innerText()).toBe(
      'No device was registered: 1 line is refused. Correct it, or tick "Register the valid lines".',
    );
    expect(await lineOf(4).locator('[data-testid="outcome"]').innerText()).toBe('Refused');
    // The column and the rule it breaks, from the report's details (not the server's English message).
    expect(await lineOf(4).locator('[data-testid="reason"]').innerText()).toBe('A value is not valid (latitude must be at most 90)');
    expect(await page.locator('[data-testid="report-imported"] .value').innerText()).toBe('0');
    expect(tenant.scope.devices.count()).toBe(0);

    // The valid lines only.
    await form.locator('input[name="partial"]').check();
    await form.locator('button[type="submit"]').click();
    await poll(() => page.locator('[data-testid="report-summary"]').innerText()).toBe('3 devices registered.');
    const lines = await page.locator('[data-testid="report-lines"] tbody tr').evaluateAll((rows) =>
      rows.map((r) => [r.getAttribute('data-line'), r.querySelector('[data-testid="outcome"]')!.textContent]),
    );
    expect(lines).toEqual([
      ['2', 'Registered'],
      ['3', 'Registered'],
      ['4', 'Refused'],
      ['5', 'Registered'],
    ]);
    expect(await lineOf(4).locator('[data-testid="reason"]').innerText()).toContain('latitude');
    expect(await lineOf(2).locator('[data-testid="serial"]').innerText()).toBe('RUT-0001');
    expect(tenant.scope.devices.count()).toBe(3);
    await w.screenshot(page, 'device-import');

    // The registered device's connection profile: the signed packet, and the JSON.
    const device = tenant.scope.devices.list({ filter: { serialNumber: 'RUT-0002' }, sort: 'name', desc: false, limit: 1 })[0]!;
    const [packet] = await Promise.all([page.waitForEvent('download'), lineOf(3).locator('[data-testid="profile-packet"]').click()]);
    expect(packet.suggestedFilename()).toBe('connection-profile-RUT-0002.tar');
    const tar = readFileSync((await packet.path())!);
    expect(tar.subarray(0, 8).toString('latin1')).toBe('MANIFEST');
    expect(tar.toString('latin1')).toContain('FILETYPE=ConnectionProfile');
    const [json] = await Promise.all([page.waitForEvent('download'), lineOf(3).locator('[data-testid="profile-json"]').click()]);
    const profile = JSON.parse(readFileSync((await json.path())!, 'utf8')) as { deviceId: string; serialNumber: string; credential: string };
    expect(profile).toMatchObject({ deviceId: device.uuid, serialNumber: 'RUT-0002' });
    expect(profile.credential).toBe(w.services.devices.credential(tenant.scope, device.uuid));

    // Any registered device by serial number; a name that is markup shows as text.
    const lookup = page.locator('[data-testid="profile-lookup"]');
    await lookup.locator('input[name="profileSerial"]').fill('RUT-0001');
    await lookup.locator('button[type="submit"]').click();
    await poll(() => lookup.locator('[data-testid="profile-results"]').innerText()).toContain(MARKUP);
    expect(await page.locator('main img').count()).toBe(0);
    await lookup.locator('input[name="profileSerial"]').fill('NOPE-1');
    await lookup.locator('button[type="submit"]').click();
    await poll(() => lookup.innerText()).toContain('No device has this serial number.');

    // The same file again: every line refused, each for its reason.
    await choose();
    await form.locator('button[type="submit"]').click();
    await poll(() => page.locator('[data-testid="report-summary"]').innerText()).toBe('0 devices registered.');
    expect(await lineOf(2).locator('[data-testid="reason"]').innerText()).toBe(
      'The serial number is already registered, or occurs twice in this file.',
    );
    // A file that is no device CSV at all: the whole file is refused, naming the problem.
    await form.locator('input[type="file"]').setInputFiles({ name: 'x.csv', mimeType: 'text/csv', buffer: Buffer.from('serial,colour\nA,red\n') });
    await form.locator('button[type="submit"]').click();
    await poll(() => page.locator('[data-testid="import-error"]').innerText()).toBe('The file cannot be read as a device CSV (serialNumber is required)');

    // German: the page's texts translated, the report too.
    await choose();
    await form.locator('button[type="submit"]').click();
    await poll(() => page.locator('[data-testid="report-lines"] tbody tr').count()).toBe(4);
    await page.locator('[data-testid="language"]').selectOption('de');
    await poll(() => page.locator('main h1').innerText()).toBe('Geräte aus einer CSV-Datei registrieren');
    expect(await page.locator('[data-testid="report-summary"]').innerText()).toBe('0 Geräte registriert.');
    expect(await lineOf(3).locator('[data-testid="reason"]').innerText()).toBe(
      'Die Seriennummer ist bereits registriert oder kommt in dieser Datei doppelt vor.',
    );
    expect(await lineOf(4).locator('[data-testid="reason"]').innerText()).toBe('Ein Wert ist ungültig (latitude darf höchstens 90 sein)');
    expect(shownIn(await page.locator('body').innerText(), englishOnly(['common', 'device-import']))).toEqual([]);
    await w.screenshot(page, 'device-import-de');
    await form.locator('input[type="file"]').setInputFiles({ name: 'x.csv', mimeType: 'text/csv', buffer: Buffer.from('serialNumber,colour\nA,red\n') });
    await form.locator('button[type="submit"]').click();
    await poll(() => page.locator('[data-testid="import-error"]').innerText()).toBe('Die Datei kann nicht als Geräte-CSV gelesen werden (colour wird hier nicht angenommen)');
    expect(dialogs).toEqual([]);
    expect(await cspViolations()).toEqual([]);
    expect(pageErrors).toEqual([]);
  }, BROWSER_TEST_MS);
});
