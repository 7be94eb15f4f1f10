import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeTempDirs, type Tenant } from '../helpers/setup.js';
import { BROWSER_TEST_MS, type ConsoleWorld, englishOnly, poll, startConsoleWorld } from './harness.js';

let w: ConsoleWorld;
let tenant: Tenant;

beforeAll(async () => {
  w = await startConsoleWorld({ sessionTtlSec: 3600 });
  tenant = await w.newTenant('Shell GmbH');
}, 120_000);

afterAll(async () => {
  await w?.closeAll();
  removeTempDirs();
});

describe('console shell in Chromium', () => {
  it('logs in, navigates, switches to German (kept in the profile), runs no inline script, logs out', async () => {
    const { page, pageErrors, cspViolations } = await w.newPage();
    await page.goto(`${w.baseUrl}/`);
    await page.locator('form input[name="username"]').waitFor();
    await w.screenshot(page, 'login');

    // A wrong password: an error in the form, no shell.
    await page.locator('input[name="username"]').fill(tenant.username);
    await page.locator('input[name="password"]').fill('not the password');
    await page.locator('form button[type="submit"]').click();
    await poll(() => page.locator('[data-testid="login-error"]').innerText()).toBe('The user name or the password is wrong.');

    await w.login(page, tenant);
    const nav = page.locator('nav.sidebar a');
    expect(await nav.allInnerTexts()).toEqual(['Dashboard', 'Devices', 'Resources', 'Update jobs', 'Licences', 'Account']);
    expect(await page.locator('[data-testid="user"]').innerText()).toContain(tenant.username);
    await w.screenshot(page, 'shell');

    // Client-side navigation, and a reload of a client-side route serves the console again.
    await page.locator('nav.sidebar a', { hasText: 'Resources' }).click();
    await page.waitForURL(`${w.baseUrl}/resources`);
    await poll(() => page.locator('main h1').innerText()).toBe('Resources');
    await page.reload();
    await poll(() => page.locator('main h1').innerText()).toBe('Resources');
    expect(await page.locator('nav.sidebar a[aria-current="page"]').innerText()).toBe('Resources');

    // German: no English text left in the shell; the choice is stored in the user's profile.
    await page.locator('[data-testid="language"]').selectOption('de');
    await poll(() => page.locator('main h1').innerText()).toBe('Ressourcen');
    await poll(() => page.evaluate(async () => (await (await fetch('/api/me')).json()).language)).toBe('de');
    expect(await page.evaluate(() => document.documentElement.lang)).toBe('de');
    const english = [...englishOnly(['common', 'resources'])];
    expect(english.length).toBeGreaterThan(10);
    const text = await page.locator('body').innerText();
    expect(text).toContain('Geräte');
    expect(english.filter((e) => text.includes(e))).toEqual([]);
    await w.screenshot(page, 'shell-de');
    // A reload (and so another browser) comes back in German, from the profile.
    await page.reload();
    await poll(() => page.locator('main h1').innerText()).toBe('Ressourcen');

    // The console itself caused no CSP violation; an inline script is refused (and reported).
    expect(await cspViolations()).toEqual([]);
    await page.evaluate(() => {
      const s = document.createElement('script');
      s.textContent = 'window.__inlineRan = true;';
      document.body.append(s);
    });
    await poll(async () => (await cspViolations()).map((v) => v.directive)).toContain('script-src-elem');
    expect(await page.evaluate(() => (window as unknown as { __inlineRan?: boolean }).__inlineRan)).toBeUndefined();

    // Log out: back to the login (in German), and the cookie no longer opens a session.
    await page.locator('[data-testid="logout"]').click();
    await poll(() => page.locator('[data-testid="login-notice"]').innerText()).toBe('Sie wurden abgemeldet.');
    expect(await page.evaluate(async () => (await fetch('/api/console/session')).status)).toBe(401);
    expect(await page.evaluate(() => document.cookie)).toBe(''); // HttpOnly: never visible to scripts
    expect(pageErrors).toEqual([]);
  }, BROWSER_TEST_MS);

  it('an expired session brings back the login with a notice', async () => {
    const { page, pageErrors } = await w.newPage({ locale: 'de-DE' });
    await page.goto(`${w.baseUrl}/licences`);
    // Before login the browser's language applies.
    await poll(() => page.locator('form h1').innerText()).toBe('Anmelden');
    await w.login(page, tenant);
    expect(await page.locator('main h1').innerText()).toBe('Lizenzen');
    w.advance(3601_000);
    // The next call of the API is refused: the console shows the login and says why.
    await page.locator('[data-testid="language"]').selectOption('en');
    await poll(() => page.locator('[data-testid="login-notice"]').innerText()).toBe('Your session has expired. Please log in again.');
    await w.screenshot(page, 'session-expired');
    await w.login(page, tenant);
    expect(pageErrors).toEqual([]);
  }, BROWSER_TEST_MS);
});
