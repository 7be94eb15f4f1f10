import { createRequire } from 'node:module';
import type BetterSqlite3 from 'better-sqlite3';
import { AppError } from '../errors.js';

const require = createRequire(import.meta.url);

/** Major version of the running Node.js. */
const NODE_MAJOR = Number(process.versions.node.split('.')[0]);

/**
 * The SQLite driver for this Node.js: better-sqlite3 12 on Node 20, better-sqlite3 13 (installed
 * under the alias `better-sqlite3-napi`) on Node 22 and later.
 *
 * Why two: better-sqlite3 ≤ 12 wraps its objects in the raw `node::ObjectWrap`, whose destructor
 * on Node 24 asserts that a Node environment still exists, so a process aborts (SIGABRT) when
 * statements are finalised at exit (upstream WiseLibs/better-sqlite3#1515, closed without a fix
 * in 12.x). better-sqlite3 13 moved to Node-API and ships prebuilt binaries, but requires Node 22
 * and crashes on Node 20. Both have the same API; the store only sees this one constructor.
 * Both are optional dependencies of the server: this is the one this Node.js needs.
 */
export const SQLITE_DRIVER_PACKAGE = NODE_MAJOR >= 22 ? 'better-sqlite3-napi' : 'better-sqlite3';

/** Loads the driver (once); throws SERVER_STORE_DRIVER_MISSING when it is not installed or not loadable. */
export function sqliteDriver(name: string = SQLITE_DRIVER_PACKAGE): typeof BetterSqlite3 {
  if (loaded && name === SQLITE_DRIVER_PACKAGE) return loaded;
  let driver: typeof BetterSqlite3;
  try {
    driver = require(name) as typeof BetterSqlite3;
  } catch (err) {
    // Both drivers are optional dependencies: npm installs only the one whose `engines` admit the
    // Node.js it runs on, so Node 20 gets no engine warning for the other. Say which one is missing.
    throw new AppError(
      'SERVER_STORE_DRIVER_MISSING',
      `Node.js ${process.versions.node} needs the SQLite driver ${name}, which cannot be loaded (${(err as Error).message.split('\n')[0]}). `
      + 'Install the server again on this Node.js version, with optional dependencies (npm install, without --omit=optional).',
    );
  }
  if (name === SQLITE_DRIVER_PACKAGE) loaded = driver;
  return driver;
}

let loaded: typeof BetterSqlite3 | undefined;

/**
 * The driver's constructor, loaded on first use (not at import), so commands that never open the
 * store (`--help`) work without it and a missing driver is a catalogued error, not a crash at import.
 */
export const SqliteDatabase = function SqliteDatabase(...args: ConstructorParameters<typeof BetterSqlite3>) {
  const Driver = sqliteDriver();
  return new Driver(...args);
} as unknown as typeof BetterSqlite3;

/** Which driver package is in use (for logs and `/healthz`). */
export const SQLITE_DRIVER = NODE_MAJOR >= 22 ? 'better-sqlite3@13 (Node-API)' : 'better-sqlite3@12';
