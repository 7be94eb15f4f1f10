import { buildFirmwarePacket, RestClient } from '@router-fleet/simulator';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeTempDirs, type Tenant } from '../helpers/setup.js';
import { BROWSER_TEST_MS, type ConsolePage, type ConsoleWorld, englishLines, poll, startConsoleWorld } from './harness.js';

/**
 * Device groups and device settings in the console, against a real server with 30 registered
 * routers: a group is created, filled from the device list's selection and by picking devices on
 * its page (its members are paged by the server), targeted by an update job, renamed, a member
 * taken out, and deleted after a confirmation. A device's custom fields and keep-alive are edited
 * and still there after a reload; what the server refuses is explained in the user's language.
 */
const DEVICES = 30;
const XSS = '<img src=x onerror=alert(1)>';

const NAMESPACES = ['groups', 'devices', 'fleet', 'common'];

let w: ConsoleWorld;
let tenant: Tenant;
let rest: RestClient;
let devices: { uuid: string; serialNumber: string }[];

beforeAll(async () => {
  w = await startConsoleWorld({ sessionTtlSec: 3600 });
  tenant = await w.newTenant('Gruppen GmbH');
  // A Basic plan: custom fields are part of it.
  w.licences(tenant, 'basic-25', 2);
  devices = w.devices(tenant, DEVICES, 'GRP');
  rest = new RestClient({ server: w.baseUrl });
  await rest.login(tenant.username, tenant.password);
}, 120_000);

afterAll(async () => {
  await w?.closeAll();
  removeTempDirs();
}, 60_000);

const open = (path: string): Promise<ConsolePage> => w.openAs(tenant, path);

/**
 * The end of a test: English again (the language is kept in the user's profile, which the next
 * test shares), and the page had no script error, CSP violation or dialog (a name with markup
 * that ran would have opened one).
 */
async function backToEnglish({ page, pageErrors, cspViolations }: ConsolePage): Promise<void> {
  await page.locator('[data-testid="language"]').selectOption('en');
  await poll(() => page.evaluate(async () => (await (await fetch('/api/me')).json()).language)).toBe('en');
  expect(pageErrors).toEqual([]);
  expect(await cspViolations()).toEqual([]);
  expect(w.dialogs).toEqual([]);
}

const groupRow = (page: Page, name: string) => page.locator('[data-testid="group-table"] tbody tr', { has: page.locator('a.group-name', { hasText: name }) });
const memberRows = (page: Page) => page.locator('[data-testid="member-table"] tbody tr');
const groupOf = (uuid: string) => tenant.scope.devices.byUuid(uuid)!.group_uuid;

describe('device groups and device settings in the console', () => {
  it('creates a group, fills it from the device list and by picking, pages its members, targets it with a job, renames it, removes a member, deletes it', async () => {
    const cp = await open('/devices/groups');
    const { page } = cp;
    await poll(() => page.locator('main h1').innerText()).toBe('Device groups');
    await poll(() => page.locator('[data-testid="group-table-empty"]').count()).toBe(1);

    // Create: a name the server refuses (empty) is explained by field and rule, then a good one.
    const create = page.locator('[data-testid="group-create"]');
    await create.locator('button[type="submit"]').click();
    await poll(() => page.locator('[data-testid="group-create-message"]').innerText()).toBe('Name must have at least 1 characters.');
    await create.locator('input[name="name"]').fill('Pumpwerke Nord');
    await create.locator('textarea[name="description"]').fill('Pumping stations north of the river');
    await create.locator('button[type="submit"]').click();
    await poll(() => page.locator('[data-testid="group-create-message"]').innerText()).toBe('The group “Pumpwerke Nord” was created.');
    await poll(() => groupRow(page, 'Pumpwerke Nord').count()).toBe(1);
    // The same name again: the server's code, translated.
    await create.locator('input[name="name"]').fill('Pumpwerke Nord');
    await create.locator('button[type="submit"]').click();
    await poll(() => page.locator('[data-testid="group-create-message"]').innerText()).toBe('A group with this name already exists.');
    const group = tenant.scope.groups.list({ afterId: 0, limit: 10 }).find((g) => g.name === 'Pumpwerke Nord')!;
    expect(group.description).toBe('Pumping stations north of the river');

    // A group named like markup shows as text.
    await create.locator('input[name="name"]').fill(XSS);
    await create.locator('button[type="submit"]').click();
    await poll(() => groupRow(page, XSS).count()).toBe(1);
    expect(await groupRow(page, XSS).locator('a.group-name').innerText()).toBe(XSS);
    expect(await page.locator('main img').count()).toBe(0);
    await w.screenshot(page, 'groups');

    // From the device list: three devices ticked, put into the group.
    await page.locator('nav.sub-nav a[href="/devices"]').click();
    await page.waitForURL(`${w.baseUrl}/devices`);
    const deviceRow = (serial: string) => page.locator(`[data-testid="device-table"] tbody tr[data-serial="${serial}"]`);
    await poll(() => page.locator('[data-testid="device-table"] tbody tr').count()).toBe(DEVICES);
    for (const d of devices.slice(0, 3)) await deviceRow(d.serialNumber).locator('input[name="select"]').check();
    await poll(() => page.locator('[data-testid="selection-bar"]').innerText()).toContain('3 devices selected');
    await page.locator('select[name="addToGroup"]').selectOption(group.uuid);
    await page.locator('[data-testid="add-to-group"]').click();
    await poll(() => page.locator('[data-testid="selection-message"]').innerText()).toBe('3 devices were added to “Pumpwerke Nord”.');
    for (const d of devices.slice(0, 3)) expect(groupOf(d.uuid)).toBe(group.uuid);
    expect(groupOf(devices[3]!.uuid)).toBeNull();
    // The list filtered by the group shows exactly those.
    await page.locator('select[name="groupUuid"]').selectOption(group.uuid);
    await poll(() => page.locator('[data-testid="device-table"] tbody tr').count()).toBe(3);
    await w.screenshot(page, 'devices-selection');

    // The group's page: its three members.
    await page.locator('nav.sub-nav a[href="/devices/groups"]').click();
    await groupRow(page, 'Pumpwerke Nord').locator('a.group-name').click();
    await page.waitForURL(`${w.baseUrl}/devices/groups/${group.uuid}`);
    await poll(() => page.locator('[data-testid="group-title"]').innerText()).toBe('Pumpwerke Nord');
    await poll(() => memberRows(page).count()).toBe(3);
    expect(await page.locator('[data-testid="group-count"]').innerText()).toBe('3 devices');

    // Picking: the whole first page of the picker (25 devices by name, three of them members already) …
    const picker = page.locator('[data-testid="device-picker"]');
    await poll(() => picker.locator('tbody tr').count()).toBe(25);
    expect(await picker.locator(`tbody tr[data-serial="${devices[0]!.serialNumber}"]`).innerText()).toContain('this group');
    await picker.locator('thead input[type="checkbox"]').check();
    await poll(() => page.locator('[data-testid="add-selected"]').innerText()).toBe('Add 25 devices');
    await page.locator('[data-testid="add-selected"]').click();
    await poll(() => page.locator('[data-testid="group-count"]').innerText()).toBe('25 devices');
    // … and two found by a search.
    for (const d of devices.slice(27, 29)) {
      await page.locator('input[name="deviceSearch"]').fill(d.serialNumber);
      await page.locator('[data-testid="add-devices"] button[type="submit"]').click();
      await poll(() => picker.locator('tbody tr').count()).toBe(1);
      await picker.locator(`tbody tr[data-serial="${d.serialNumber}"] input[name="select"]`).check();
    }
    await poll(() => page.locator('[data-testid="add-selected"]').innerText()).toBe('Add 2 devices');
    await page.locator('[data-testid="add-selected"]').click();
    await poll(() => page.locator('[data-testid="add-message"]').innerText()).toBe('2 devices were added.');
    await poll(() => page.locator('[data-testid="group-count"]').innerText()).toBe('27 devices');
    expect(tenant.scope.groups.byUuid(group.uuid)!.device_count).toBe(27);

    // Members are paged by the server: 25, then 2.
    await poll(() => memberRows(page).count()).toBe(25);
    await page.locator('[data-testid="members"] .paging button', { hasText: 'Next page' }).click();
    await poll(() => memberRows(page).count()).toBe(2);
    expect(await memberRows(page).evaluateAll((rows) => rows.map((r) => r.getAttribute('data-serial')))).toEqual(
      devices.slice(27, 29).map((d) => d.serialNumber),
    );
    await page.locator('[data-testid="members"] .paging button', { hasText: 'Previous page' }).click();
    await poll(() => memberRows(page).count()).toBe(25);

    // Remove a member.
    await memberRows(page).filter({ has: page.locator(`td:text-is("${devices[0]!.serialNumber}")`) }).locator('[data-testid="member-remove"]').click();
    await poll(() => page.locator('[data-testid="members-message"]').innerText()).toBe(`“${devices[0]!.serialNumber}” was removed from the group.`);
    await poll(() => page.locator('[data-testid="group-count"]').innerText()).toBe('26 devices');
    expect(groupOf(devices[0]!.uuid)).toBeNull();
    await w.screenshot(page, 'group');

    // An update job for the group, from the group's page.
    const packetUuid = await buildFirmwarePacket(rest, { firmwareVersion: '99.2.0', sizeBytes: 16 * 1024, name: 'Router firmware 99.2.0' });
    await page.locator('main a', { hasText: 'Create an update job for this group' }).click();
    await page.waitForURL(`${w.baseUrl}/jobs/new?groupUuid=${group.uuid}`);
    await poll(() => page.locator('select[name="groupUuid"]').inputValue()).toBe(group.uuid);
    expect(await page.locator('input[name="target"][value="group"]').isChecked()).toBe(true);
    await poll(() => page.locator('select[name="groupUuid"] option:checked').innerText()).toBe('Pumpwerke Nord (26 devices)');
    await page.locator('select[name="packetUuid"]').selectOption(packetUuid);
    await page.locator('[data-testid="job-create"]').click();
    await page.waitForURL(/\/jobs\/[0-9a-f-]{36}$/);
    const jobUuid = page.url().split('/').at(-1)!;
    const job = w.services.jobs.repo(tenant.scope).byUuid(jobUuid)!;
    expect(JSON.parse(job.target_summary!)).toEqual({ all: false, groupUuids: [group.uuid], deviceCount: 0 });
    await poll(() => page.locator('[data-testid="job-devices"] tbody tr').count()).toBe(25);

    // Rename and describe.
    await page.goto(`${w.baseUrl}/devices/groups/${group.uuid}`);
    const edit = page.locator('[data-testid="group-edit"]');
    await poll(() => edit.locator('input[name="name"]').inputValue()).toBe('Pumpwerke Nord');
    await edit.locator('input[name="name"]').fill('Pumpwerke Süd');
    await edit.locator('textarea[name="description"]').fill('Moved south');
    await edit.locator('button[type="submit"]').click();
    await poll(() => page.locator('[data-testid="group-edit-message"]').innerText()).toBe('Saved.');
    await poll(() => page.locator('[data-testid="group-title"]').innerText()).toBe('Pumpwerke Süd');
    expect(tenant.scope.groups.byUuid(group.uuid)).toMatchObject({ name: 'Pumpwerke Süd', description: 'Moved south' });
    // Renaming to the other group's name is refused, in words.
    await edit.locator('input[name="name"]').fill(XSS);
    await edit.locator('button[type="submit"]').click();
    await poll(() => page.locator('[data-testid="group-edit-message"]').innerText()).toBe('A group with this name already exists.');
    await edit.locator('input[name="name"]').fill('Pumpwerke Süd');

    // German: nothing English on the group's page nor on the list.
    await page.locator('[data-testid="language"]').selectOption('de');
    await poll(() => page.locator('[data-testid="group-count"]').innerText()).toBe('26 Geräte');
    await page.locator('[data-testid="group-delete"]').click();
    await poll(() => page.locator('[data-testid="group-delete-confirm"]').innerText()).toContain('Die Gruppe „Pumpwerke Süd“ löschen? Ihre 26 Geräte bleiben registriert');
    // The confirmation has the focus, on its safe choice.
    await poll(() => page.evaluate(() => document.activeElement?.textContent)).toBe('Abbrechen');
    expect(await englishLines(page, NAMESPACES)).toEqual([]);
    await w.screenshot(page, 'group-de');
    // Cancel keeps it.
    await page.locator('[data-testid="group-delete-confirm"] button', { hasText: 'Abbrechen' }).click();
    await poll(() => page.locator('[data-testid="group-delete-confirm"]').count()).toBe(0);
    expect(tenant.scope.groups.byUuid(group.uuid)).toBeDefined();
    await page.locator('main a', { hasText: 'Alle Gruppen' }).click();
    await poll(() => page.locator('main h1').innerText()).toBe('Gerätegruppen');
    await poll(() => groupRow(page, 'Pumpwerke Süd').count()).toBe(1);
    expect(await englishLines(page, NAMESPACES)).toEqual([]);
    await w.screenshot(page, 'groups-de');

    // Delete, confirmed: back to the list; the devices stay, without a group.
    await groupRow(page, 'Pumpwerke Süd').locator('a.group-name').click();
    await page.locator('[data-testid="group-delete"]').click();
    await page.locator('[data-testid="group-delete-yes"]').click();
    await page.waitForURL(`${w.baseUrl}/devices/groups`);
    await poll(() => groupRow(page, XSS).count()).toBe(1);
    expect(await groupRow(page, 'Pumpwerke Süd').count()).toBe(0);
    expect(tenant.scope.groups.byUuid(group.uuid)).toBeUndefined();
    expect(tenant.scope.devices.byUuid(devices[1]!.uuid)).toMatchObject({ group_uuid: null });
    await backToEnglish(cp);
  }, BROWSER_TEST_MS);

  it('edits a device\'s custom fields and keep-alive; refusals are explained per field, in English and German; a reload shows what was saved', async () => {
    const device = devices[5]!;
    const cp = await open(`/devices/${device.uuid}`);
    const { page } = cp;
    await poll(() => page.locator('[data-testid="device-title"]').innerText()).toBe(device.serialNumber);
    const fields = page.locator('[data-testid="custom-fields"]');
    const keepAlive = page.locator('[data-testid="keep-alive"]');
    expect(await fields.innerText()).toContain('This device has no custom fields.');
    expect(await keepAlive.locator('input[name="connectionPingInterval"]').inputValue()).toBe('120');

    // Custom fields: two added and saved.
    await page.locator('[data-testid="custom-field-add"]').click();
    await fields.locator('input[name="customFieldName0"]').fill('site');
    await fields.locator('input[name="customFieldValue0"]').fill('Pumpwerk 7 <Halle B>');
    await page.locator('[data-testid="custom-field-add"]').click();
    await fields.locator('input[name="customFieldName1"]').fill('bad name');
    await fields.locator('input[name="customFieldValue1"]').fill('x');
    await page.locator('[data-testid="custom-fields-save"]').click();
    // The server refuses the name; the message names it and the rule.
    await poll(() => page.locator('[data-testid="custom-fields-message"]').innerText()).toBe(
      'The field name “bad name” is not allowed: it starts with a letter and has only letters, digits and _ (at most 64).',
    );
    await fields.locator('input[name="customFieldName1"]').fill('contract');
    await fields.locator('input[name="customFieldValue1"]').fill('x'.repeat(1001));
    await page.locator('[data-testid="custom-fields-save"]').click();
    await poll(() => page.locator('[data-testid="custom-fields-message"]').innerText()).toBe('Custom field “contract” must have at most 1,000 characters.');
    await fields.locator('input[name="customFieldValue1"]').fill('K-2291');
    await page.locator('[data-testid="custom-fields-save"]').click();
    await poll(() => page.locator('[data-testid="custom-fields-message"]').innerText()).toBe('Saved.');
    expect(JSON.parse(tenant.scope.devices.byUuid(device.uuid)!.custom_fields)).toEqual({ site: 'Pumpwerk 7 <Halle B>', contract: 'K-2291' });

    // Keep-alive: out of range and not a number are refused by the server, then good values saved.
    const ping = keepAlive.locator('input[name="connectionPingInterval"]');
    await ping.fill('2');
    await page.locator('[data-testid="keep-alive-save"]').click();
    await poll(() => page.locator('[data-testid="keep-alive-message"]').innerText()).toBe('Ping interval must be at least 5.');
    await ping.fill('soon');
    await page.locator('[data-testid="keep-alive-save"]').click();
    await poll(() => page.locator('[data-testid="keep-alive-message"]').innerText()).toBe(
      'Ping interval: the value has the wrong form (for example letters where a whole number belongs).',
    );
    await keepAlive.locator('input[name="connectionSessionTimeout"]').fill('100000');
    await ping.fill('60');
    await page.locator('[data-testid="keep-alive-save"]').click();
    await poll(() => page.locator('[data-testid="keep-alive-message"]').innerText()).toBe('Session timeout must be at most 86,400.');
    await keepAlive.locator('input[name="connectionSessionTimeout"]').fill('30');
    await page.locator('[data-testid="keep-alive-save"]').click();
    await poll(() => page.locator('[data-testid="keep-alive-message"]').innerText()).toBe('Saved.');
    expect(tenant.scope.devices.byUuid(device.uuid)).toMatchObject({ ping_interval: 60, pong_timeout: 104, session_timeout: 30 });

    // Metadata: half a coordinate pair is refused with the missing field named.
    await page.locator('[data-testid="metadata-form"] input[name="latitude"]').fill('48,1');
    await page.locator('[data-testid="metadata-form"] button[type="submit"]').click();
    await poll(() => page.locator('[data-testid="metadata-form"] [role="alert"]').innerText()).toBe('Longitude is required.');
    await page.locator('[data-testid="metadata-form"] input[name="latitude"]').fill('');

    // A reload shows what the server stored.
    await page.reload();
    await poll(() => page.locator('[data-testid="custom-fields"] input[name="customFieldName0"]').count()).toBe(1);
    const names = await fields.locator('input[name^="customFieldName"]').evaluateAll((els) => els.map((e) => (e as HTMLInputElement).value));
    const values = await fields.locator('input[name^="customFieldValue"]').evaluateAll((els) => els.map((e) => (e as HTMLInputElement).value));
    expect(Object.fromEntries(names.map((n, i) => [n, values[i]]))).toEqual({ site: 'Pumpwerk 7 <Halle B>', contract: 'K-2291' });
    expect(await keepAlive.locator('input[name="connectionPingInterval"]').inputValue()).toBe('60');
    expect(await keepAlive.locator('input[name="connectionPongTimeout"]').inputValue()).toBe('104');
    expect(await keepAlive.locator('input[name="connectionSessionTimeout"]').inputValue()).toBe('30');
    await w.screenshot(page, 'device-settings');

    // German: the same refusal in German; a field removed and saved.
    await page.locator('[data-testid="language"]').selectOption('de');
    await poll(() => keepAlive.locator('h2').innerText()).toBe('Verbindungsüberwachung');
    await ping.fill('2');
    await page.locator('[data-testid="keep-alive-save"]').click();
    await poll(() => page.locator('[data-testid="keep-alive-message"]').innerText()).toBe('Ping-Intervall muss mindestens 5 sein.');
    await fields.locator('button', { hasText: 'Entfernen' }).first().click();
    await page.locator('[data-testid="custom-fields-save"]').click();
    await poll(() => page.locator('[data-testid="custom-fields-message"]').innerText()).toBe('Gespeichert.');
    expect(Object.keys(JSON.parse(tenant.scope.devices.byUuid(device.uuid)!.custom_fields) as object)).toHaveLength(1);
    expect(await englishLines(page, NAMESPACES)).toEqual([]);
    await w.screenshot(page, 'device-settings-de');
    // A value with markup (`<Halle B>`) stays text as the group names did: checked by backToEnglish.
    await backToEnglish(cp);
  }, BROWSER_TEST_MS);
});
