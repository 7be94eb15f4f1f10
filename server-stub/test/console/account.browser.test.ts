import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeTempDirs, type Tenant } from '../helpers/setup.js';
import { BROWSER_TEST_MS, type ConsoleWorld, englishLines, poll, startConsoleWorld } from './harness.js';

let w: ConsoleWorld;
let tenant: Tenant;

beforeAll(async () => {
  w = await startConsoleWorld({ sessionTtlSec: 3600 });
  tenant = await w.newTenant('Konto AG');
  w.licences(tenant, 'basic-25', 1);
  w.licences(tenant, 'api', 1);
}, 120_000);

afterAll(async () => {
  await w?.closeAll();
  removeTempDirs();
});

describe('account page in Chromium', () => {
  it('edits the profile and company details, manages users, roles and API tokens, and shows the audit log', async () => {
    const { page, pageErrors, cspViolations } = await w.newPage();
    await page.goto(`${w.baseUrl}/account`);
    await w.login(page, tenant);
    await poll(() => page.locator('main h1').innerText()).toBe('Account');
    const me = tenant.scope.users.list({ afterId: 0, limit: 10 }).find((u) => u.username === tenant.username)!;

    // Own profile.
    const profile = page.locator('[data-testid="profile"]');
    await profile.locator('input[name="firstName"]').fill('Erika');
    await profile.locator('input[name="lastName"]').fill('Mustermann <b>');
    await profile.locator('input[name="email"]').fill('erika@example.com');
    await profile.locator('input[name="phone"]').fill('+49 941 123');
    await page.locator('[data-testid="profile-save"]').click();
    await poll(() => page.locator('[data-testid="profile-message"]').innerText()).toBe('Saved.');
    expect(JSON.parse(tenant.scope.users.byUuid(me.uuid)!.profile)).toEqual({
      firstName: 'Erika',
      lastName: 'Mustermann <b>',
      email: 'erika@example.com',
      phone: '+49 941 123',
    });

    // Company contact details: a malformed email is refused by the server, then a good one kept.
    const company = page.locator('[data-testid="company"]');
    await poll(() => company.locator('input[name="accountName"]').inputValue()).toBe('Konto AG');
    await company.locator('input[name="companyName"]').fill('Konto AG & Co. KG');
    await company.locator('input[name="city"]').fill('Regensburg');
    await company.locator('input[name="contactEmail"]').fill('not an address');
    await page.locator('[data-testid="company-save"]').click();
    await poll(() => page.locator('[data-testid="company-message"]').innerText()).toMatch(/^Please check the input/);
    await company.locator('input[name="contactEmail"]').fill('ops@konto.example');
    await page.locator('[data-testid="company-save"]').click();
    await poll(() => page.locator('[data-testid="company-message"]').innerText()).toBe('Saved.');
    expect(JSON.parse(tenant.scope.account().settings)).toMatchObject({
      companyName: 'Konto AG & Co. KG',
      city: 'Regensburg',
      contactEmail: 'ops@konto.example',
      analyticsConsent: false,
    });

    // Users and roles.
    const users = page.locator('[data-testid="users"]');
    const userRow = (name: string) => page.locator(`[data-testid="user-table"] tr[data-username="${name}"]`);
    await users.locator('input[name="newUsername"]').fill('operator.one');
    await users.locator('input[name="newUserPassword"]').fill('correct horse battery 2');
    await users.locator('select[name="newUserRole"]').selectOption('operator');
    await page.locator('[data-testid="user-add"]').click();
    await poll(() => page.locator('[data-testid="users-message"]').innerText()).toBe('User operator.one added.');
    await poll(() => userRow('operator.one').locator('select[name="role"]').inputValue()).toBe('operator');
    await userRow('operator.one').locator('select[name="role"]').selectOption('viewer');
    await poll(() => page.locator('[data-testid="users-message"]').innerText()).toBe('operator.one is now Viewer.');
    const added = tenant.scope.users.list({ afterId: 0, limit: 10 }).find((u) => u.username === 'operator.one')!;
    expect(added.role).toBe('viewer');
    // The only administrator cannot give up the role.
    await userRow(tenant.username).locator('select[name="role"]').selectOption('operator');
    await poll(() => page.locator('[data-testid="users-message"]').innerText()).toBe('The last administrator cannot be removed or given another role.');
    await poll(() => userRow(tenant.username).locator('select[name="role"]').inputValue()).toBe('admin');
    expect(tenant.scope.users.byUuid(me.uuid)!.role).toBe('admin');
    await userRow('operator.one').locator('[data-testid="user-remove"]').click();
    await userRow('operator.one').locator('[data-testid="user-remove-confirm"]').click();
    await poll(() => page.locator('[data-testid="users-message"]').innerText()).toMatch(/^User operator.one removed/);
    await poll(() => userRow('operator.one').count()).toBe(0);
    expect(tenant.scope.users.byUuid(added.uuid)).toBeUndefined();

    // API tokens: shown once, usable, then revoked.
    await page.locator('input[name="tokenName"]').fill('CI pipeline');
    await page.locator('[data-testid="token-create"]').click();
    const token = await page.locator('[data-testid="token-value"]').innerText();
    expect(token.length).toBeGreaterThan(20);
    const asToken = () => fetch(`${w.baseUrl}/api/me`, { headers: { authorization: `Bearer ${token}` } }).then((r) => r.status);
    expect(await asToken()).toBe(200);
    const tokenRow = page.locator('[data-testid="token-table"] tr[data-token="CI pipeline"]');
    await poll(() => tokenRow.locator('[data-testid="token-state"]').innerText()).toBe('Active');
    await tokenRow.locator('[data-testid="token-revoke"]').click();
    await poll(() => tokenRow.locator('[data-testid="token-state"]').innerText()).toMatch(/^Revoked /);
    expect(await asToken()).toBe(401);

    // The audit log holds what was just done, newest first, and its chain is intact.
    await page.locator('[data-testid="audit-refresh"]').click();
    const actions = () => page.locator('[data-testid="audit-table"] tbody tr td:nth-child(4)').allInnerTexts();
    await poll(actions).toContain('DELETE /api/api-tokens/{uuid}');
    const shown = await actions();
    expect(shown[0]).toBe('DELETE /api/api-tokens/{uuid}');
    for (const a of ['POST /api/api-tokens', 'DELETE /api/users/{uuid}', 'PATCH /api/users/{uuid}', 'POST /api/users', 'PATCH /api/account', 'PATCH /api/me']) {
      expect(shown).toContain(a);
    }
    expect(await page.locator('[data-testid="audit-table"] tbody tr').first().innerText()).toContain(tenant.username);
    await page.locator('[data-testid="audit-verify"]').click();
    await poll(() => page.locator('[data-testid="audit-message"]').innerText()).toMatch(/^The audit log is intact \(\d+ records checked\)\.$/);
    await w.screenshot(page, 'account');

    // German: every text of the page translated.
    await page.locator('[data-testid="language"]').selectOption('de');
    await poll(() => page.locator('main h1').innerText()).toBe('Konto');
    expect(await englishLines(page, ['account', 'common'], 'body')).toEqual([]);
    expect(await page.locator('main').innerText()).toContain('Benutzer und Rollen');
    await w.screenshot(page, 'account-de');
    expect(pageErrors).toEqual([]);
    expect(await cspViolations()).toEqual([]);
  }, BROWSER_TEST_MS);

  it('shows a viewer their profile and the company read-only, without users, tokens or audit log', async () => {
    const passwordHash = await w.services.auth.hash('viewer password 1');
    tenant.scope.write(() =>
      tenant.scope.users.insert({ uuid: crypto.randomUUID(), username: `viewer-${tenant.accountId}`, passwordHash, role: 'viewer', language: 'en', profile: {} }, w.clock.now()),
    );
    const { page, pageErrors, cspViolations } = await w.newPage();
    await page.goto(`${w.baseUrl}/account`);
    await w.login(page, { ...tenant, username: `viewer-${tenant.accountId}`, password: 'viewer password 1' });
    await poll(() => page.locator('[data-testid="company"] input[name="companyName"]').inputValue()).toBe('Konto AG & Co. KG');
    expect(await page.locator('[data-testid="company"] input[name="companyName"]').isDisabled()).toBe(true);
    expect(await page.locator('[data-testid="company-save"]').count()).toBe(0);
    expect(await page.locator('[data-testid="users"], [data-testid="tokens"], [data-testid="audit"]').count()).toBe(0);
    expect(await page.locator('main .notice').innerText()).toBe('Users, API tokens and the audit log are managed by the account\'s administrators.');
    expect(pageErrors).toEqual([]);
    expect(await cspViolations()).toEqual([]);
  }, BROWSER_TEST_MS);
});
