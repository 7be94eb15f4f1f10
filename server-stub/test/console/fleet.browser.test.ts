import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeTempDirs, type Tenant } from '../helpers/setup.js';
import { type ConsolePage, type ConsoleWorld, englishLines, type SimulatedFleet, simulatedFleet, startConsoleWorld } from './harness.js';

/**
 * The Dashboard and Devices pages against a simulated fleet: 30 routers (each the real agent
 * core) connect to the test's server, which has seats for 25. Pages opened before the fleet
 * starts show the routers online (and 5 rejected) as they come, without a reload. One router is
 * named like an HTML injection; it must show as text.
 */
const ROUTERS = 30;
const SEATS = 25; // one basic-25 licence
const XSS = '<img src=x onerror=alert(1)>';
const LIVE_WAIT = 60_000;

const NAMESPACES = ['dashboard', 'devices', 'fleet'];

let w: ConsoleWorld;
let tenant: Tenant;
let routers: SimulatedFleet | undefined;
let xssUuid: string;

beforeAll(async () => {
  w = await startConsoleWorld({ sessionTtlSec: 3600 });
  routers = await simulatedFleet(w, { tenantName: 'Fleet Works GmbH', routers: ROUTERS, licences: 1, seed: 7 });
  tenant = routers.tenant;
  const [first] = tenant.scope.devices.list({ filter: {}, sort: 'serialNumber', desc: false, limit: 1 });
  xssUuid = first!.uuid;
  w.services.devices.update(tenant.scope, xssUuid, { name: XSS });
}, 180_000);

afterAll(async () => {
  await routers?.close();
  await w?.closeAll();
  removeTempDirs();
}, 60_000);

async function open(path: string): Promise<ConsolePage> {
  const cp = await w.openAs(tenant, path);
  // Survives only as long as the page is not reloaded.
  await cp.page.evaluate(() => {
    (window as unknown as { __noReload: boolean }).__noReload = true;
  });
  return cp;
}

const notReloaded = (page: Page) => page.evaluate(() => (window as unknown as { __noReload?: boolean }).__noReload === true);
const rows = (page: Page, selector = '') => page.locator(`[data-testid="device-table"] tbody tr${selector}`);

describe('Dashboard and Devices with a simulated fleet', () => {
  it('show routers coming online and the ones rejected for want of licences, live, without a reload', async () => {
    const dashboard = await open('/');
    await expect.poll(() => dashboard.page.locator('[data-testid="count-total"]').innerText()).toBe(String(ROUTERS));
    expect(await dashboard.page.locator('[data-testid="count-online"]').innerText()).toBe('0');
    const devices = await open('/devices');
    await expect.poll(() => rows(devices.page).count()).toBe(ROUTERS);
    expect(await rows(devices.page, '[data-status="online"]').count()).toBe(0);

    const fleet = await routers!.start({ behaviour: 'ideal' });
    await fleet.waitFor((s) => s.managed === SEATS && s.rejected + s.backingOff >= ROUTERS - SEATS, LIVE_WAIT);

    const poll = { timeout: LIVE_WAIT, interval: 250 };
    await expect.poll(() => dashboard.page.locator('[data-testid="count-online"]').innerText(), poll).toBe(String(SEATS));
    await expect.poll(() => dashboard.page.locator('[data-testid="count-rejected"]').innerText(), poll).toBe(String(ROUTERS - SEATS));
    await expect.poll(() => rows(devices.page, '[data-status="online"]').count(), poll).toBe(SEATS);
    await expect.poll(() => rows(devices.page, '[data-admission="rejected"]').count(), poll).toBe(ROUTERS - SEATS);
    expect(await notReloaded(dashboard.page)).toBe(true);
    expect(await notReloaded(devices.page)).toBe(true);

    // The charts and the map follow (read again after the counts changed).
    await expect.poll(() => dashboard.page.locator('[data-testid="firmware-chart"]').count(), poll).toBe(1);
    await expect.poll(() => dashboard.page.locator('[data-testid="world-map"]').getAttribute('aria-label'), poll).toMatch(/30 routers/);
    await w.screenshot(dashboard.page, 'dashboard');

    // The router named like markup shows as text; no element and no dialog came of it.
    const xssRow = devices.page.locator('[data-testid="device-table"] tbody tr a.device-name', { hasText: XSS });
    await expect.poll(() => xssRow.count()).toBe(1);
    expect(await xssRow.innerText()).toBe(XSS);
    expect(await devices.page.locator('[data-testid="device-table"] img').count()).toBe(0);

    // Filters are done by the server: the rejected ones.
    await devices.page.locator('select[name="admission"]').selectOption('rejected');
    await expect.poll(() => rows(devices.page).count(), poll).toBe(ROUTERS - SEATS);
    expect(await rows(devices.page, '[data-admission="rejected"]').count()).toBe(ROUTERS - SEATS);
    expect(devices.page.url()).toContain('admission=rejected');
    await w.screenshot(devices.page, 'devices-rejected');
    await devices.page.locator('select[name="admission"]').selectOption('');
    await expect.poll(() => rows(devices.page).count(), poll).toBe(ROUTERS);
    // By group (the fleet's CSV put the routers into groups).
    const group = tenant.scope.groups.list({ afterId: 0, limit: 1 })[0]!;
    await devices.page.locator('select[name="groupUuid"]').selectOption(group.uuid);
    await expect.poll(() => rows(devices.page).count(), poll).toBe(group.device_count);
    await devices.page.locator('select[name="groupUuid"]').selectOption('');
    await expect.poll(() => rows(devices.page).count(), poll).toBe(ROUTERS);
    await w.screenshot(devices.page, 'devices');

    for (const cp of [dashboard, devices]) {
      expect(cp.pageErrors).toEqual([]);
      expect(await cp.cspViolations()).toEqual([]);
    }
    expect(w.dialogs).toEqual([]);
  }, 180_000);

  it('device details: metadata editing, events and job history; the injected name stays text', async () => {
    const { page, pageErrors, cspViolations } = await open(`/devices/${xssUuid}`);
    await expect.poll(() => page.locator('[data-testid="device-title"]').innerText()).toBe(XSS);
    expect(await page.locator('main img').count()).toBe(0);
    await page.locator('input[name="location"]').fill('Pumpwerk Nord <b>3</b>');
    await page.locator('input[name="latitude"]').fill('49.0134');
    await page.locator('input[name="longitude"]').fill('12.1016');
    await page.locator('[data-testid="metadata-form"] button[type="submit"]').click();
    await expect.poll(() => page.locator('[data-testid="metadata-form"] [role="status"]').innerText()).toBe('Saved.');
    const saved = tenant.scope.devices.byUuid(xssUuid);
    expect(saved).toMatchObject({ location: 'Pumpwerk Nord <b>3</b>', latitude: 49.0134, longitude: 12.1016, name: XSS });
    await expect.poll(() => page.locator('h2', { hasText: 'Job history' }).count()).toBe(1);
    await w.screenshot(page, 'device');
    // The connection profile downloads as a signed update packet (a tar), with the cookie.
    const [download] = await Promise.all([page.waitForEvent('download'), page.locator('[data-testid="profile-download"]').click()]);
    expect(download.suggestedFilename()).toBe(`connection-profile-${saved!.serial_number}.tar`);
    expect(await download.failure()).toBeNull();

    // German: the same page, every label translated.
    await page.locator('select[data-testid="language"]').selectOption('de');
    await expect.poll(() => page.locator('h2', { hasText: 'Auftragsverlauf' }).count()).toBe(1);
    expect(await englishLines(page, NAMESPACES, 'main')).toEqual([]);
    await w.screenshot(page, 'device-de');
    for (const [href, heading] of [
      ['/devices', 'Geräte'],
      ['/', 'Übersicht'],
    ] as const) {
      await page.locator(`nav.sidebar a[href="${href}"]`).click();
      await expect.poll(() => page.locator('main h1').innerText()).toBe(heading);
      await expect.poll(() => page.locator('main').innerText()).toMatch(/Online/);
      expect(await englishLines(page, NAMESPACES, 'main'), href).toEqual([]);
    }
    await w.screenshot(page, 'dashboard-de');
    expect(pageErrors).toEqual([]);
    expect(await cspViolations()).toEqual([]);
    expect(w.dialogs).toEqual([]);
  }, 120_000);
});
