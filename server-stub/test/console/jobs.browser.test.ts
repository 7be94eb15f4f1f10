import { copyFileSync, existsSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Behaviour, buildFirmwarePacket, type RestClient } from '@router-fleet/simulator';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeTempDirs, type Tenant } from '../helpers/setup.js';
import { type ConsolePage, type ConsoleWorld, englishLines, poll, type SimulatedFleet, simulatedFleet, startConsoleWorld } from './harness.js';

/**
 * The Update jobs page against a simulated fleet: 30 routers (each the real agent core) connected
 * to the test's server. A job to all of them is created in the page's form, paused and resumed
 * there, and its page follows the progress from the server's stream to 100 % without a reload and
 * without reading the job again; the devices whose install fails show their error code. A second
 * job, to a group, is cancelled in the page.
 */
const ROUTERS = 30;
const SEAT_LICENCES = 2; // basic-25 each: every router is managed
const LIVE_WAIT = 120_000;
/** The job page shows 25 device rows at once: the 30 routers span two pages. */
const ROWS_PER_PAGE = 25;
const IMAGE = fileURLToPath(new URL('../../../docs/images/console-job.png', import.meta.url));

/**
 * Slow enough that the job is still running when the page pauses it (1 s per install, reboots of
 * 1–2 s, at most 4 routers at once); some routers fail their install (the seed decides which).
 */
const behaviour: Behaviour = {
  name: 'console-jobs',
  rules: [
    { probability: 1, label: 'slow-install', faults: { install: { delayMs: 1000 } } },
    { probability: 0.2, label: 'install-failure', faults: { install: { failSection: 0 } }, expect: 'failed' },
  ],
  rebootMs: { min: 1000, max: 2000 },
};

const NAMESPACES = ['jobs', 'fleet', 'common'];

let w: ConsoleWorld;
let tenant: Tenant;
let rest: RestClient;
let routers: SimulatedFleet | undefined;
let realTime: NodeJS.Timeout | undefined;

beforeAll(async () => {
  w = await startConsoleWorld({ sessionTtlSec: 3600 });
  // The routers run on the real clock and judge the deadlines the server sets by it: the server's
  // clock follows real time here (a clock left at the harness's start date makes every offer late).
  w.clock.set(Date.now());
  realTime = setInterval(() => w.clock.set(Date.now()), 1000);
  routers = await simulatedFleet(w, { tenantName: 'Rollout GmbH', routers: ROUTERS, licences: SEAT_LICENCES, seed: 5 });
  ({ tenant, rest } = routers);
  const fleet = await routers.start({ behaviour });
  await fleet.waitFor((s) => s.managed === ROUTERS, LIVE_WAIT);
}, 240_000);

afterAll(async () => {
  clearInterval(realTime);
  await routers?.close();
  await w?.closeAll();
  removeTempDirs();
}, 60_000);

async function open(path: string): Promise<ConsolePage> {
  const cp = await w.newPage();
  await cp.page.goto(`${w.baseUrl}${path}`);
  await w.login(cp.page, tenant);
  // Survives only as long as the page is not reloaded (client-side navigation keeps it).
  await cp.page.evaluate(() => {
    (window as unknown as { __noReload: boolean }).__noReload = true;
  });
  return cp;
}

const notReloaded = (page: Page) => page.evaluate(() => (window as unknown as { __noReload?: boolean }).__noReload === true);
const jobState = (page: Page) => page.locator('header [data-testid="job-state"]').getAttribute('data-state');
const count = (page: Page, id: string) => page.locator(`[data-testid="job-count-${id}"]`).innerText();
const live = { timeout: LIVE_WAIT, interval: 250 };

describe('Update jobs with a simulated fleet', () => {
  it('creates a job in the form, pauses and resumes it, and follows it live to 100 % with per-device error codes', async () => {
    const packetUuid = await buildFirmwarePacket(rest, { firmwareVersion: '99.0.0', sizeBytes: 16 * 1024, name: 'Router firmware 99.0.0' });
    // A second operator watches the list: the job shows there and ends there without a reload.
    const watcher = await open('/jobs');
    await poll(() => watcher.page.locator('main .notice').innerText()).toBe('No update jobs yet.');
    const { page, pageErrors, cspViolations } = await open('/jobs');
    await poll(() => page.locator('main .notice').innerText()).toBe('No update jobs yet.');
    await page.locator('a', { hasText: 'New job' }).click();
    await page.waitForURL(`${w.baseUrl}/jobs/new`);
    await poll(() => page.locator('select[name="packetUuid"]').inputValue()).toBe(packetUuid);

    // What the form refuses before asking the server.
    await page.locator('input[name="waves"]').fill('50, 20');
    await page.locator('[data-testid="job-create"]').click();
    await poll(() => page.locator('[data-testid="job-form-error"]').innerText()).toContain('ascending percentages');
    expect(page.url()).toBe(`${w.baseUrl}/jobs/new`);

    await page.locator('input[name="name"]').fill('Firmware 99 to everyone');
    await page.locator('input[name="target"][value="all"]').check();
    await page.locator('input[name="maxConcurrent"]').fill('4');
    await page.locator('input[name="waves"]').fill('50, 100');
    await page.locator('input[name="timeoutSec"]').fill('900');
    await page.locator('input[name="abortPercent"]').fill('90');
    await page.locator('input[name="abortMin"]').fill('25');
    // Only the job's own reads are counted from here: a page that polled the job would read it again and again.
    const reads: string[] = [];
    page.on('request', (r) => {
      if (r.method() === 'GET' && r.url().includes('/api/jobs/')) reads.push(new URL(r.url()).pathname);
    });
    await page.locator('[data-testid="job-create"]').click();
    await page.waitForURL(/\/jobs\/[0-9a-f-]{36}$/);
    const jobUuid = page.url().split('/').at(-1)!;
    const job = w.services.jobs.repo(tenant.scope).byUuid(jobUuid)!;
    expect(job).toMatchObject({ name: 'Firmware 99 to everyone', state: 'running' });
    expect(JSON.parse(job.options)).toMatchObject({ maxConcurrent: 4, waves: [50, 100], timeoutSec: 900, abort: { failurePercent: 90, minFailures: 25 } });
    expect(JSON.parse(job.target_summary!)).toEqual({ all: true, groupUuids: [], deviceCount: 0 });
    await poll(() => page.locator('[data-testid="job-title"]').innerText()).toBe('Firmware 99 to everyone');
    await poll(() => page.locator('[data-testid="live-badge"]').innerText()).toBe('Live');
    expect(await page.locator('[data-testid="job-options"]').innerText()).toMatch(/At most at once\s+4/);

    // Pause: no new routers start; the page shows the state the server answered.
    await page.locator('[data-testid="job-pause"]').click();
    await poll(() => jobState(page)).toBe('paused');
    expect(w.services.jobs.repo(tenant.scope).byUuid(jobUuid)!.state).toBe('paused');
    expect(await page.locator('[data-testid="job-message"]').innerText()).toContain('The job is paused');
    await page.locator('[data-testid="job-resume"]').click();
    await poll(() => jobState(page)).toBe('running');
    expect(w.services.jobs.repo(tenant.scope).byUuid(jobUuid)!.state).toBe('running');

    // Progress comes from the stream: the percentage climbs to 100 % and the job finishes, no reload.
    const seen = new Set<string>();
    await expect
      .poll(async () => {
        const pct = await page.locator('.job-summary [data-testid="job-percent"]').innerText();
        seen.add(pct);
        return pct;
      }, live)
      .toBe('100 %');
    await expect.poll(() => jobState(page), live).toBe('finished');
    expect(await notReloaded(page)).toBe(true);
    // Intermediate values were shown on the way (the bar moved, it did not jump from 0 to 100).
    expect([...seen].filter((p) => p !== '0 %' && p !== '100 %').length).toBeGreaterThan(0);

    const progress = w.services.jobs.progressView(w.services.jobs.repo(tenant.scope).byUuid(jobUuid)!);
    const failed = progress.results['failed'] ?? 0;
    expect(progress.devices).toMatchObject({ total: ROUTERS, done: ROUTERS });
    expect(failed).toBeGreaterThan(0);
    await expect.poll(() => count(page, 'succeeded'), live).toBe(String(progress.results['succeeded']));
    expect(await count(page, 'failed')).toBe(String(failed));
    expect(await count(page, 'total')).toBe(String(ROUTERS));
    expect(await page.locator('[data-testid="job-done-of"]').innerText()).toBe(`${ROUTERS} of ${ROUTERS} devices done`);

    // Device results: the first page's rows followed the stream too; failures show their error code.
    const rows = page.locator('[data-testid="job-devices"] tbody tr');
    await poll(() => rows.count()).toBe(ROWS_PER_PAGE);
    await expect.poll(() => page.locator('[data-testid="job-devices"] tbody tr[data-status="done"]').count(), live).toBe(ROWS_PER_PAGE);
    const results = await rest.json<{ items: Array<{ deviceUuid: string; result: string; errorCode: string | null }> }>(
      'GET',
      `/api/jobs/${jobUuid}/devices?limit=${ROWS_PER_PAGE}`,
    );
    for (const r of results.items) {
      const row = page.locator(`tr[data-device="${r.deviceUuid}"]`);
      expect(await row.getAttribute('data-result'), r.deviceUuid).toBe(r.result);
      if (r.errorCode) expect(await row.locator('[data-testid="error-code"]').innerText()).toBe(r.errorCode);
    }
    // The job itself is read once (again only after the stream reconnected, which it may on a loaded machine).
    expect(reads.filter((p) => p === `/api/jobs/${jobUuid}`).length).toBeLessThanOrEqual(2);
    // The device list is read once, after each action and at each change of the job's state
    // (pause and resume: each answer, and the stream's message when it came first; the end; a reconnect).
    expect(reads.filter((p) => p === `/api/jobs/${jobUuid}/devices`).length).toBeLessThanOrEqual(1 + 2 * 2 + 1 + 1);
    // The second page holds the other routers, failures with their code.
    await page.locator('[data-testid="devices-next"]').click();
    await poll(() => rows.count()).toBe(ROUTERS - ROWS_PER_PAGE);
    await page.locator('.paging button', { hasText: 'Previous' }).click();
    await poll(() => rows.count()).toBe(ROWS_PER_PAGE);
    const codes = await page.locator('[data-testid="error-code"]').allInnerTexts();
    expect(codes.length).toBeGreaterThan(0);
    expect(new Set(codes)).toEqual(new Set(['AGENT_INSTALL_FAILED']));

    // The README's picture of the job page: the viewport only (a small PNG). It is written to
    // docs/images when missing or when UPDATE_DOC_IMAGES=1 (each run's picture differs a little:
    // user name, times), so that running the tests does not change a file of the repository.
    await page.evaluate(() => window.scrollTo(0, 0));
    const shotPath = join(fileURLToPath(new URL('./screenshots/', import.meta.url)), 'job.png');
    const shot = await page.screenshot({ path: shotPath });
    expect(shot.byteLength).toBeLessThan(300_000);
    if (!existsSync(IMAGE) || process.env['UPDATE_DOC_IMAGES'] === '1') {
      mkdirSync(join(IMAGE, '..'), { recursive: true });
      copyFileSync(shotPath, IMAGE);
    }
    expect(statSync(IMAGE).size).toBeLessThan(300_000);

    const watched = watcher.page.locator(`[data-testid="job-table"] tr[data-job="${jobUuid}"]`);
    await expect.poll(() => watched.getAttribute('data-state'), live).toBe('finished');
    expect(await watched.locator('[data-testid="job-percent"]').innerText()).toBe('100 %');
    expect(await notReloaded(watcher.page)).toBe(true);
    expect(watcher.pageErrors).toEqual([]);

    // The list shows the job as finished, with its counts.
    await page.locator('a', { hasText: 'All update jobs' }).click();
    const listRow = page.locator(`[data-testid="job-table"] tr[data-job="${jobUuid}"]`);
    await poll(() => listRow.getAttribute('data-state')).toBe('finished');
    expect(await listRow.locator('[data-testid="job-percent"]').innerText()).toBe('100 %');
    await w.screenshot(page, 'jobs');
    expect(pageErrors).toEqual([]);
    expect(await cspViolations()).toEqual([]);
  }, 240_000);

  it('creates a job for a group and cancels it; German throughout', async () => {
    const packetUuid = await buildFirmwarePacket(rest, { firmwareVersion: '99.1.0', sizeBytes: 16 * 1024, name: 'Router firmware 99.1.0' });
    const group = await rest.json<{ uuid: string }>('POST', '/api/inventory/device-groups', { name: 'Pumpwerke <Nord>' });
    const devices = tenant.scope.devices.list({ filter: {}, sort: 'serialNumber', desc: false, limit: 10 });
    const added = await rest.json<{ added: number }>('POST', `/api/inventory/device-groups/${group.uuid}/devices`, { deviceUuids: devices.map((d) => d.uuid) });
    expect(added).toEqual({ added: 10 });

    const { page, pageErrors, cspViolations } = await open('/jobs/new');
    await page.locator('select[data-testid="language"]').selectOption('de');
    await poll(() => page.locator('main h1').innerText()).toBe('Neuer Update-Auftrag');
    await page.locator('select[name="packetUuid"]').selectOption(packetUuid);
    // One device: found by the server as the operator types (serial number, name or location).
    await page.locator('input[name="target"][value="device"]').check();
    await page.locator('input[name="deviceSearch"]').fill(devices[3]!.serial_number);
    await poll(() => page.locator('select[name="deviceUuid"] option').allInnerTexts()).toEqual([`${devices[3]!.name} (${devices[3]!.serial_number})`]);
    expect(await page.locator('select[name="deviceUuid"]').inputValue()).toBe(devices[3]!.uuid);
    await page.locator('input[name="deviceSearch"]').fill('no such router');
    await poll(() => page.locator('select[name="deviceUuid"] option').allInnerTexts()).toEqual(['Kein Gerät passt']);
    await page.locator('[data-testid="job-create"]').click();
    await poll(() => page.locator('[data-testid="job-form-error"]').innerText()).toBe('Gerät: bitte ausfüllen.');
    await page.locator('input[name="target"][value="group"]').check();
    await poll(() => page.locator('[data-testid="job-form-error"]').count()).toBe(0);
    await poll(() => page.locator('select[name="groupUuid"] option').allInnerTexts()).toContain('Pumpwerke <Nord> (10 Geräte)');
    await page.locator('select[name="groupUuid"]').selectOption(group.uuid);
    await page.locator('input[name="maxConcurrent"]').fill('1');
    await page.locator('select[name="window"]').selectOption('weekly');
    expect(await englishLines(page, NAMESPACES, 'body')).toEqual([]);
    await w.screenshot(page, 'job-new-de');
    // Times and days are typed in the language's pattern (the browser's own inputs would show its
    // locale's "--:-- --" and "mm/dd/yyyy"), and a wrong one is refused in German.
    const startTime = page.locator('input[name="startTime"]');
    expect([await startTime.evaluate((e) => (e as HTMLInputElement).type), await startTime.getAttribute('placeholder'), await startTime.inputValue()]).toEqual(['text', 'hh:mm', '02:00']);
    await startTime.fill('25:00');
    await page.locator('[data-testid="job-create"]').click();
    await poll(() => page.locator('[data-testid="job-form-error"]').innerText()).toBe('Von (Uhrzeit): bitte eine Uhrzeit als hh:mm eingeben (24 Stunden).');
    await startTime.fill('02:00');
    await page.locator('select[name="window"]').selectOption('once');
    const windowStart = page.locator('input[name="windowStart"]');
    expect([await windowStart.evaluate((e) => (e as HTMLInputElement).type), await windowStart.getAttribute('placeholder')]).toEqual(['text', 'TT.MM.JJJJ hh:mm']);
    await windowStart.fill('31.02.2027 10:00');
    await page.locator('input[name="windowEnd"]').fill('01.03.2027 10:00');
    await page.locator('[data-testid="job-create"]').click();
    await poll(() => page.locator('[data-testid="job-form-error"]').innerText()).toBe('Von: bitte Datum und Uhrzeit als TT.MM.JJJJ hh:mm eingeben.');
    await windowStart.fill('02.03.2027 10:00');
    await page.locator('[data-testid="job-create"]').click();
    await poll(() => page.locator('[data-testid="job-form-error"]').innerText()).toBe('Das Fenster muss nach seinem Beginn enden.');
    // Back to no window: this job is to run at once.
    await page.locator('select[name="window"]').selectOption('none');
    await page.locator('[data-testid="job-create"]').click();
    await page.waitForURL(/\/jobs\/[0-9a-f-]{36}$/);
    const jobUuid = page.url().split('/').at(-1)!;
    expect(JSON.parse(w.services.jobs.repo(tenant.scope).byUuid(jobUuid)!.target_summary!)).toEqual({ all: false, groupUuids: [group.uuid], deviceCount: 0 });
    await poll(() => page.locator('[data-testid="job-title"]').innerText()).toBe('Router firmware 99.1.0');
    await poll(() => page.locator('[data-testid="job-devices"] tbody tr').count()).toBe(10);

    await page.locator('[data-testid="job-cancel"]').click();
    await page.locator('[data-testid="job-cancel-confirm"]').click();
    await poll(() => jobState(page)).toBe('cancelled');
    expect(w.services.jobs.repo(tenant.scope).byUuid(jobUuid)!.state).toBe('cancelled');
    expect(await page.locator('header [data-testid="job-state"]').innerText()).toBe('Abgebrochen');
    expect(await page.locator('[data-testid="job-pause"], [data-testid="job-resume"], [data-testid="job-cancel"]').count()).toBe(0);
    // Every device ends (cancelled before its commit point, or finished past it); the page follows.
    await expect.poll(() => page.locator('[data-testid="job-devices"] tbody tr[data-status="done"]').count(), live).toBe(10);
    expect(await englishLines(page, NAMESPACES, 'body')).toEqual([]);
    await w.screenshot(page, 'job-de');
    expect(pageErrors).toEqual([]);
    expect(await cspViolations()).toEqual([]);
  }, 180_000);
});
