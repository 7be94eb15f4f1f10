import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DAY } from '../../src/clock.js';
import { ServerErrors } from '../../src/errors.js';
import { removeTempDirs, type Tenant } from '../helpers/setup.js';
import { BROWSER_TEST_MS, type ConsoleWorld, englishOnly, poll, startConsoleWorld } from './harness.js';

/**
 * English texts shown on a German page: the console's English-only texts of the namespaces, and
 * the server's own (English) error messages, which the console must never show in their place.
 */
async function englishOn(page: Page, extra: readonly string[] = []): Promise<string[]> {
  const text = await page.locator('body').innerText();
  const english = [...englishOnly(['common', 'licences']), ...Object.values(ServerErrors).map((e) => e.message), ...extra];
  return english.filter((e) => text.includes(e));
}

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
      await page.locator('[data-testid="redeem-form"] button[type="submit"]').click();
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
    // The day is typed in the console's pattern (the browser's own date input would say mm/dd/yyyy).
    expect(await row(codes[1]!).locator('[data-testid="activation-date"]').getAttribute('placeholder')).toBe('dd/mm/yyyy');
    await row(codes[1]!).locator('[data-testid="activation-date"]').fill('11/01/2026');
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
    expect(await englishOn(page)).toEqual([]);
    expect(await page.locator('body').innerText()).toContain('Jetzt aktivieren');
    // The activation day in the German pattern: its placeholder, a translated error for a day that
    // does not exist, then a day typed as dd.mm.yyyy schedules the licence for that day.
    const dateField = row(codes[2]!).locator('[data-testid="activation-date"]');
    expect(await dateField.getAttribute('type')).toBe('text');
    expect(await dateField.getAttribute('placeholder')).toBe('TT.MM.JJJJ');
    await dateField.fill('31.02.2027');
    await dateField.blur();
    await poll(() => row(codes[2]!).locator('[data-testid="activation-date-error"]').innerText()).toBe('Bitte ein Datum als TT.MM.JJJJ eingeben.');
    expect(await row(codes[2]!).locator('[data-testid="activate-at"]').isDisabled()).toBe(true);
    const day = new Date(w.clock.now() + 5 * DAY).toISOString().slice(0, 10);
    const [y, m, d] = day.split('-');
    await dateField.fill(`${d}.${m}.${y}`);
    await row(codes[2]!).locator('[data-testid="activate-at"]').click();
    await poll(() => row(codes[2]!).locator('[data-testid="status"]').innerText()).toBe('Geplant');
    expect(await message()).toBe(`Lizenz ${codes[2]} wird am ${d}.${m}.${y} aktiviert.`);
    expect(w.services.licensing.list(tenant.scope).find((l) => l.code === codes[2])!.activationAt).toBe(Date.parse(`${day}T00:00:00Z`));
    expect(await englishOn(page)).toEqual([]);
    await w.screenshot(page, 'licences-de');
    expect(await cspViolations()).toEqual([]);
    expect(pageErrors).toEqual([]);
  }, BROWSER_TEST_MS);

  it('imports the vendor CSV with a per-line report, schedules an activation, and speaks German throughout, server errors included', async () => {
    const tenant2 = await w.newTenant('Import KG');
    const now = w.clock.now();
    const [good, later] = w.services.licensing.issue('basic-25', 2, now);
    const issuedAt = new Date(now).toISOString();
    // The vendor's file (`licences issue --csv`): a good line, the same code again, a line with one cell.
    const vendorFile = ['code,plan,issuedAt', `${good},basic-25,${issuedAt}`, `${good},basic-25,${issuedAt}`, 'ZZZZ-ZZZZ', ''].join('\r\n');
    const { page, pageErrors, cspViolations } = await w.newPage();
    await page.goto(`${w.baseUrl}/licences`);
    await w.login(page, tenant2);
    await poll(() => page.locator('main h1').innerText()).toBe('Licences');

    const form = page.locator('[data-testid="licence-import-form"]');
    const upload = async (name: string, body: string, partial: boolean) => {
      await form.locator('input[type="file"]').setInputFiles({ name, mimeType: 'text/csv', buffer: Buffer.from(body) });
      await form.locator('input[name="partial"]').setChecked(partial);
      await form.locator('button[type="submit"]').click();
    };
    const line = (n: number) => page.locator(`[data-testid="report-lines"] tr[data-line="${n}"]`);
    const lines = () =>
      page.locator('[data-testid="report-lines"] tbody tr').evaluateAll((rows) =>
        rows.map((r) => [r.getAttribute('data-line'), r.querySelector('[data-testid="outcome"]')!.textContent, r.lastElementChild!.textContent]),
      );
    /** The import was refused as a whole (`summary`), and these are its report's lines. */
    const rolledBack = async (summary: string, expected: string[][]) => {
      await poll(() => page.locator('[data-testid="report-rolled-back"]').innerText()).toBe(summary);
      expect(await lines()).toEqual(expected);
    };
    const row = (code: string) => page.locator(`tr[data-code="${code}"]`);
    const message = () => page.locator('[data-testid="licence-message"]').innerText();

    // All or nothing: the file is refused, each refused line says why; nothing was redeemed.
    await upload('licences.csv', vendorFile, false);
    await rolledBack('No code was redeemed: 2 lines are refused. Correct them, or tick "Import the valid lines".', [
      ['3', 'Refused', 'The code occurs more than once in this file.'],
      ['4', 'Refused', 'The line cannot be read: it has more or fewer cells than the first line names.'],
    ]);
    expect(await page.locator('[data-testid="report-imported"] .value').innerText()).toBe('0');
    expect(w.services.licensing.list(tenant2.scope)).toEqual([]);

    // The valid lines only: the good line is redeemed, and its licence is listed Available.
    await upload('licences.csv', vendorFile, true);
    await poll(() => page.locator('[data-testid="report-summary"]').innerText()).toBe(
      '1 code redeemed. The licences are available until you activate them.',
    );
    expect(await lines()).toEqual([
      ['2', 'Redeemed', good],
      ['3', 'Refused', 'The code occurs more than once in this file.'],
      ['4', 'Refused', 'The line cannot be read: it has more or fewer cells than the first line names.'],
    ]);
    expect(await line(2).locator('[data-testid="imported-code"]').innerText()).toBe(good);
    await poll(() => row(good!).locator('[data-testid="status"]').innerText()).toBe('Available');
    expect(w.services.licensing.list(tenant2.scope).map((l) => [l.code, l.status])).toEqual([[good, 'available']]);
    await w.screenshot(page, 'licences-import');

    // Activate at a future date: the licence is pending (Scheduled) until that day, nothing is in force yet.
    await page.locator('input[name="code"]').fill(later!);
    await page.locator('[data-testid="redeem-form"] button[type="submit"]').click();
    await poll(() => row(later!).locator('[data-testid="status"]').innerText()).toBe('Available');
    const day = new Date(now + 10 * DAY).toISOString().slice(0, 10);
    const shown = new Intl.DateTimeFormat('en-GB', { dateStyle: 'medium', timeZone: 'UTC' }).format(Date.parse(day));
    const shownDe = new Intl.DateTimeFormat('de-DE', { dateStyle: 'medium', timeZone: 'UTC' }).format(Date.parse(day));
    await row(later!).locator('[data-testid="activation-date"]').fill(day);
    await row(later!).locator('[data-testid="activate-at"]').click();
    await poll(() => row(later!).locator('[data-testid="status"]').innerText()).toBe('Scheduled');
    expect(await row(later!).locator('[data-testid="activation"]').innerText()).toBe(`Activates on ${shown}`);
    expect(await message()).toBe(`Licence ${later} will be activated on ${shown}.`);
    expect(await page.locator('[data-testid="plan"] .value').innerText()).toBe('None');
    expect(w.services.licensing.view(tenant2.scope, w.services.licensing.list(tenant2.scope).find((l) => l.code === later)!.uuid)).toMatchObject({
      status: 'scheduled',
      activationAt: Date.parse(`${day}T00:00:00Z`),
    });
    // Activated now, the other one puts the plan in force: seats in use of seats available.
    await row(good!).locator('[data-testid="activate-now"]').click();
    await poll(() => row(good!).locator('[data-testid="status"]').innerText()).toBe('Active');
    expect(await page.locator('[data-testid="seats-usage"]').innerText()).toBe('0 of 25 seats in use');

    // German: what is already on screen (the message, the report) turns German too ...
    await page.locator('[data-testid="language"]').selectOption('de');
    await poll(() => page.locator('main h1').innerText()).toBe('Lizenzen');
    expect(await message()).toBe(`Lizenz ${good} ist aktiv.`);
    // The file field is the page's own, in German (the browser's would say "Choose File").
    const picker = page.locator('[data-testid="licence-import-form"] [data-testid="file-picker"]');
    expect(await picker.locator('[data-testid="file-choose"]').innerText()).toBe('Datei auswählen…');
    expect(await picker.locator('[data-testid="file-name"]').innerText()).toBe('licences.csv');
    expect(await lines()).toEqual([
      ['2', 'Eingelöst', good],
      ['3', 'Abgelehnt', 'Der Code kommt in dieser Datei mehrfach vor.'],
      ['4', 'Abgelehnt', 'Die Zeile kann nicht gelesen werden: Sie hat mehr oder weniger Zellen, als die erste Zeile benennt.'],
    ]);
    expect(await row(later!).locator('[data-testid="activation"]').innerText()).toBe(`Wird am ${shownDe} aktiviert`);
    expect(await page.locator('[data-testid="seats-usage"]').innerText()).toBe('0 von 25 Plätzen belegt');
    // ... and so do the server's errors: a code the server calls malformed, a file it cannot read,
    // and a file it refuses line by line.
    await page.locator('input[name="code"]').fill('12');
    await page.locator('[data-testid="redeem-form"] button[type="submit"]').click();
    await poll(message).toBe('Ein Aktivierungscode hat die Form XXXX-XXXX-XXXX (hexadezimal).');
    await upload('wrong.csv', 'serial,plan\r\nA,basic-25\r\n', false);
    await poll(() => page.locator('[data-testid="import-error"]').innerText()).toBe(
      'Die Datei kann nicht als Lizenzdatei gelesen werden: Sie muss CSV-Text in UTF-8 sein, dessen erste Zeile eine Spalte „code“ benennt.',
    );
    expect(await englishOn(page)).toEqual([]);
    await upload('licences.csv', vendorFile, false);
    await rolledBack('Es wurde kein Code eingelöst: 3 Zeilen sind abgelehnt. Korrigieren Sie sie oder wählen Sie „Gültige Zeilen importieren“.', [
      ['2', 'Abgelehnt', 'Dieser Aktivierungscode wurde bereits eingelöst.'],
      ['3', 'Abgelehnt', 'Der Code kommt in dieser Datei mehrfach vor.'],
      ['4', 'Abgelehnt', 'Die Zeile kann nicht gelesen werden: Sie hat mehr oder weniger Zellen, als die erste Zeile benennt.'],
    ]);
    // Not one English text, nor the server's English messages (those of this report's lines included).
    expect(await englishOn(page, ['Wrong number of cells.'])).toEqual([]);
    await w.screenshot(page, 'licences-import-de');
    expect(await cspViolations()).toEqual([]);
    expect(pageErrors).toEqual([]);
  }, BROWSER_TEST_MS);
});
