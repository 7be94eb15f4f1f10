/// <reference lib="dom" />
// Callbacks given to page.evaluate() run in the browser: they see the DOM.
/**
 * Browser tests of the operator console: a real fleet-server (in this process, listening on port 0
 * with its own data directory and a movable clock) and a real Chromium driven by playwright-core.
 * Debian's `chromium` is used (CHROMIUM_PATH overrides /usr/bin/chromium; `.ci/run` installs it).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Behaviour, FleetHandle, RestClient } from '@router-fleet/simulator';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { expect } from 'vitest';
import { TestClock } from '../../src/clock.js';
import type { ConfigInput } from '../../src/config.js';
import { main, type RunningServer } from '../../src/main.js';
import { T0, type Tenant, tempDir, testConfig, type World, worldOf } from '../helpers/setup.js';

const PACKAGE = fileURLToPath(new URL('../../', import.meta.url));
const CONSOLE_SRC = join(PACKAGE, 'console');
/** Server modules the console bundles too (the ones its lint rule lets it import). */
const CONSOLE_SHARED = [join(PACKAGE, 'src', 'import-columns.ts')];
const CONSOLE_INDEX = join(PACKAGE, 'dist', 'console', 'public', 'index.html');
export const SCREENSHOTS = fileURLToPath(new URL('./screenshots/', import.meta.url));
export const CHROMIUM = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium';

function newest(dir: string): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

/** Builds the console when its output is missing or older than its sources. */
export function ensureConsoleBuilt(): void {
  const sources = Math.max(newest(CONSOLE_SRC), ...CONSOLE_SHARED.map((f) => statSync(f).mtimeMs));
  if (existsSync(CONSOLE_INDEX) && statSync(CONSOLE_INDEX).mtimeMs >= sources) return;
  execFileSync(process.execPath, [join(PACKAGE, 'scripts', 'build-console.mjs')], { stdio: 'inherit' });
}

/** A CSP violation as the page saw it (`securitypolicyviolation` event). */
export interface CspViolation {
  readonly directive: string;
  readonly blocked: string;
  readonly sample: string;
}

export interface ConsolePage {
  readonly page: Page;
  /** Uncaught errors of the page's scripts. */
  readonly pageErrors: string[];
  /** CSP violations reported in the page so far. */
  cspViolations(): Promise<CspViolation[]>;
}

export interface ConsoleWorld extends World {
  readonly server: RunningServer;
  readonly baseUrl: string;
  readonly browser: Browser;
  /** A fresh browser context (own cookies) with English as the browser language unless given. */
  newPage(options?: { locale?: string }): Promise<ConsolePage>;
  /** Fills in the login form (the page shows it) and waits for the shell. */
  login(page: Page, tenant: Tenant): Promise<void>;
  /** A new page at `path`, logged in as the tenant's user; its dialogs are dismissed and kept in `dialogs`. */
  openAs(tenant: Tenant, path: string): Promise<ConsolePage>;
  /** What dialogs (alert, confirm) pages opened by `openAs` showed: none is expected. */
  readonly dialogs: string[];
  /** Saves a full-page PNG to test/console/screenshots/<name>.png; returns its path. */
  screenshot(page: Page, name: string): Promise<string>;
  closeAll(): Promise<void>;
}

export async function startConsoleWorld(flags: ConfigInput = {}): Promise<ConsoleWorld> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`no Chromium at ${CHROMIUM}: install Debian's chromium package (apt-get install chromium) or set CHROMIUM_PATH`);
  }
  ensureConsoleBuilt();
  const dataDir = tempDir();
  const clock = new TestClock(T0);
  const server = await main(testConfig(dataDir, flags), { clock, handleSignals: false });
  const base = worldOf(server.app.services, clock, dataDir);
  let browser: Browser;
  try {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      // Containers run tests as root, where Chromium's sandbox cannot start; /dev/shm is small there.
      args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'],
      timeout: 60_000,
    });
  } catch (err) {
    await server.close();
    throw err;
  }
  const contexts: BrowserContext[] = [];
  const dialogs: string[] = [];
  mkdirSync(SCREENSHOTS, { recursive: true });
  const world: ConsoleWorld = {
    ...base,
    dialogs,
    server,
    baseUrl: server.url,
    browser,
    async newPage(options = {}) {
      const context = await browser.newContext({ locale: options.locale ?? 'en-US', timezoneId: 'UTC', viewport: { width: 1280, height: 800 } });
      contexts.push(context);
      // Runs before any script of the page (and is itself exempt from the page's CSP).
      await context.addInitScript(() => {
        const w = window as unknown as { __csp: unknown[] };
        w.__csp = [];
        document.addEventListener('securitypolicyviolation', (e) => {
          w.__csp.push({ directive: e.effectiveDirective, blocked: e.blockedURI, sample: e.sample });
        });
      });
      const page = await context.newPage();
      page.setDefaultTimeout(30_000);
      const pageErrors: string[] = [];
      page.on('pageerror', (err) => pageErrors.push(String(err)));
      return {
        page,
        pageErrors,
        cspViolations: () => page.evaluate(() => (window as unknown as { __csp: CspViolation[] }).__csp),
      };
    },
    async login(page, tenant) {
      await page.locator('input[name="username"]').fill(tenant.username);
      await page.locator('input[name="password"]').fill(tenant.password);
      await page.locator('form button[type="submit"]').click();
      await page.locator('[data-testid="user"]').waitFor();
    },
    async openAs(tenant, path) {
      const cp = await world.newPage();
      cp.page.on('dialog', (d) => {
        dialogs.push(d.message());
        void d.dismiss();
      });
      await cp.page.goto(`${server.url}${path}`);
      await world.login(cp.page, tenant);
      return cp;
    },
    async screenshot(page, name) {
      const path = join(SCREENSHOTS, `${name}.png`);
      await page.screenshot({ path, fullPage: true });
      return path;
    },
    async closeAll() {
      for (const c of contexts.splice(0)) await c.close().catch(() => undefined);
      await browser.close().catch(() => undefined);
      await server.close();
    },
  };
  return world;
}

/** Deadline of a browser test (a loaded 2-core machine runs Chromium slowly). */
export const BROWSER_TEST_MS = 180_000;

/** `expect.poll` with a deadline for a page that is rendering on a loaded machine. */
export function poll<T>(read: () => T | Promise<T>, message?: string) {
  return expect.poll(read, { timeout: 20_000, interval: 100, ...(message === undefined ? {} : { message }) });
}

/** Every string of a translation file, by dotted key. */
export function flatten(value: unknown, prefix = ''): Map<string, string> {
  const out = new Map<string, string>();
  if (typeof value === 'string') out.set(prefix, value);
  else if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) for (const [kk, vv] of flatten(v, prefix ? `${prefix}.${k}` : k)) out.set(kk, vv);
  }
  return out;
}

/** A translation file of the console as a map of dotted key → text. */
export function locale(lang: 'en' | 'de', ns: string): Map<string, string> {
  return flatten(JSON.parse(readFileSync(join(CONSOLE_SRC, 'src', 'locales', lang, `${ns}.json`), 'utf8')));
}

/**
 * The English texts of the namespaces that differ in German (ones with placeholders left out): none
 * of them may show on a German page. Checks on the way that German has every key and no other.
 */
export function englishOnly(namespaces: readonly string[]): Set<string> {
  const out = new Set<string>();
  for (const ns of namespaces) {
    const en = locale('en', ns);
    const de = locale('de', ns);
    for (const [key, text] of en) {
      expect(de.has(key), `de/${ns}.json lacks ${key}`).toBe(true);
      if (de.get(key) !== text && !text.includes('{{')) out.add(text);
    }
    for (const key of de.keys()) expect(en.has(key), `en/${ns}.json lacks ${key}`).toBe(true);
  }
  return out;
}

/** The texts of `texts` that occur in `shown` as whole words (English "Model" is not in German "Modell"). */
export function shownIn(shown: string, texts: Iterable<string>): string[] {
  const escape = (x: string) => x.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return [...texts].filter((x) => new RegExp(`(^|[^\\p{L}])${escape(x)}($|[^\\p{L}])`, 'u').test(shown));
}

/** Lines (and table cells) of the page's `root` element that are English-only texts of the namespaces. */
export async function englishLines(page: Page, namespaces: readonly string[], root = 'main'): Promise<string[]> {
  const english = englishOnly(namespaces);
  const text = await page.locator(root).innerText();
  return text.split(/[\n\t]/).map((l) => l.trim()).filter((l) => english.has(l));
}

/** Routers of the simulator registered to a tenant of the console's server, ready to connect. */
export interface SimulatedFleet {
  readonly tenant: Tenant;
  /** A REST client logged in as the tenant's administrator. */
  readonly rest: RestClient;
  /** Connects the routers (each the real agent core, in this process), `rate` a second. */
  start(options: { behaviour: string | Behaviour; rate?: number }): Promise<FleetHandle>;
  /** Stops the routers (if started) and removes their profiles. */
  close(): Promise<void>;
}

/**
 * A tenant with `licences` Basic 25 licences and `routers` simulated routers generated from `seed`
 * and registered through the CSV import (what `fleet-sim provision` does), their connection
 * profiles in a temporary directory.
 */
export async function simulatedFleet(
  w: ConsoleWorld,
  options: { tenantName: string; routers: number; licences: number; seed: number },
): Promise<SimulatedFleet> {
  // Loaded here, not at the top: only the pages that need routers pay for loading the simulator.
  const { fleetToCsv, generateFleet, provisionFleet, RestClient, startFleet } = await import('@router-fleet/simulator');
  const tenant = await w.newTenant(options.tenantName);
  w.licences(tenant, 'basic-25', options.licences);
  const rest = new RestClient({ server: w.baseUrl });
  const token = await rest.login(tenant.username, tenant.password);
  const dir = mkdtempSync(join(tmpdir(), 'console-fleet-'));
  let fleet: FleetHandle | undefined;
  try {
    const csv = join(dir, 'fleet.csv');
    writeFileSync(csv, fleetToCsv(generateFleet({ devices: options.routers, seed: options.seed, customFields: false })));
    const provisioned = await provisionFleet({ server: w.baseUrl, token, fleetCsv: csv, outDir: dir });
    expect(provisioned).toMatchObject({ imported: options.routers, failed: 0 });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    tenant,
    rest,
    async start({ behaviour, rate = 50 }) {
      fleet = await startFleet({ profiles: dir, devices: options.routers, rate, processes: 0, behaviour, seed: options.seed });
      return fleet;
    },
    async close() {
      await fleet?.stop().catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
