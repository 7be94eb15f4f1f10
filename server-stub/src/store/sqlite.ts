import { createRequire } from 'node:module';
import type BetterSqlite3 from 'better-sqlite3';

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
 */
export const SqliteDatabase: typeof BetterSqlite3 = require(NODE_MAJOR >= 22 ? 'better-sqlite3-napi' : 'better-sqlite3');

/** Which driver package is in use (for logs and `/healthz`). */
export const SQLITE_DRIVER = NODE_MAJOR >= 22 ? 'better-sqlite3@13 (Node-API)' : 'better-sqlite3@12';
