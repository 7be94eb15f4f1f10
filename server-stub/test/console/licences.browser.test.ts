import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DAY } from '../../src/clock.js';
import { removeTempDirs, type Tenant } from '../helpers/setup.js';
import { BROWSER_TEST_MS, type ConsoleWorld, flatten, poll, startConsoleWorld } from './harness.js';

const locale = (lang: string, ns: string) =>
  flatten(JSON.parse(readFileSync(new URL(`../../console/src/locales/${lang}/${ns}.json`, import.meta.url), 'utf8')));

let w: ConsoleWorld;
let tenant: Tenant;

beforeAll(async () => {
  w = await startConsoleWorld();
  tenant = await w.newTenant('Licence AG');
}, 120_000);

afterAll(async () => {
  await w?.closeAll();
  removeTempDirs();
});

describe('licences page in Chromium', () => {
  it('redeems codes, activates now and at a date, shows seats and expiry notices, in English and German', async () => {
    const codes = w.services.licensing.issue('basic-25', 3, w.clock.now());
    const { page, pageErrors, cspViolations } = await w.newPage();
    await page.goto(`${w.baseUrl}/`);
    await w.login(page, tenant);
    await page.locator('nav.sidebar a', { hasText: 'Licences' }).click();
    await page.waitForURL(`${w.baseUrl}/licences`);

    const tile = (id: string) => page.locator(`[data-testid="${id}"] .value`).innerText();
    const row = (code: string) => page.locator(`tr[data-code="${code}"]`);
    const message = () => page.locator('[data-testid="licence-message"]').innerText();
    const notices = () => page.locator('[data-testid="licence-notices"]').innerText();
    await poll(() => tile('plan')).toBe('None');
    expect(await notices()).toContain('device management is disabled');

    const redeem = async (code: string) => {
      await page.locator('input[name="code"]').fill(code);
      await page.locator('form.panel button[type="submit"]').click();
    };
    await redeem('12');
    await poll(message).toBe('An activation code has the form XXXX-XXXX-XXXX (hexadecimal).');
    await redeem(codes[0]!);
    await poll(message).toContain(`Licence ${codes[0]} redeemed`);
    await poll(() => row(codes[0]!).locator('[data-testid="status"]').innerText()).toBe('Available');
    await redeem(codes[0]!);
    await poll(message).toBe('This activation code has already been redeemed.');

    // Activate now: the plan is in force, its seats are free.
    await row(codes[0]!).locator('[data-testid="activate-now"]').click();
    await poll(() => row(codes[0]!).locator('[data-testid="status"]').innerText()).toBe('Active');
    expect(await message()).toBe(`Licence ${codes[0]} is active.`);
    expect(await tile('plan')).toBe('Basic');
    expect(await tile('seats-available')).toBe('25');
    expect(await tile('seats-used')).toBe('0');
    expect(await notices()).toBe('');

    // Activate at a date: scheduled for that day.
    await redeem(codes[1]!);
    await poll(() => row(codes[1]!).locator('[data-testid="status"]').innerText()).toBe('Available');
    await row(codes[1]!).locator('[data-testid="activation-date"]').fill('2026-01-11');
    await row(codes[1]!).locator('[data-testid="activate-at"]').click();
    await poll(() => row(codes[1]!).locator('[data-testid="status"]').innerText()).toBe('Scheduled');
    expect(await message()).toBe(`Licence ${codes[1]} will be activated on 11 Jan 2026.`);
    const stored = w.services.licensing.list(tenant.scope);
    expect(stored.find((l) => l.code === codes[0])!.status).toBe('active');
    expect(stored.find((l) => l.code === codes[1])!).toMatchObject({ status: 'scheduled', activationAt: Date.parse('2026-01-11T00:00:00Z') });
    await redeem(codes[2]!);
    await poll(() => row(codes[2]!).locator('[data-testid="status"]').innerText()).toBe('Available');
    await w.screenshot(page, 'licences');

    // 25 days before the first licence's 12-month term ends: the page says so (by the server's clock).
    // (The login session ended long before: log in again.)
    w.advance(340 * DAY);
    await page.reload();
    await w.login(page, tenant);
    await poll(notices).toBe(`Licence ${codes[0]} expires on 1 Jan 2027 (in 25 days).`);
    expect(await tile('seats-total')).toBe('50');

    // German: every text of the page translated.
    await page.locator('[data-testid="language"]').selectOption('de');
    await poll(() => page.locator('main h1').innerText()).toBe('Lizenzen');
    expect(await notices()).toBe(`Lizenz ${codes[0]} läuft am 01.01.2027 ab (in 25 Tagen).`);
    const text = await page.locator('body').innerText();
    const english: string[] = [];
    for (const ns of ['common', 'licences']) {
      const de = locale('de', ns);
      for (const [key, en] of locale('en', ns)) {
        expect(de.has(key), `de/${ns}.json lacks ${key}`).toBe(true);
        if (de.get(key) !== en && !en.includes('{{')) english.push(en);
      }
    }
    expect(english.filter((e) => text.includes(e))).toEqual([]);
    expect(text).toContain('Jetzt aktivieren');
    await w.screenshot(page, 'licences-de');
    expect(await cspViolations()).toEqual([]);
    expect(pageErrors).toEqual([]);
  }, BROWSER_TEST_MS);
});
