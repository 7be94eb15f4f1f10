import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { Store } from '../src/store/database.js';
import { PostgresNoticeBus } from '../src/store/postgres/notices.js';
import { freshPostgresStore } from './helpers/postgres.js';
import { removeTempDirs, tempDir } from './helpers/setup.js';

/*
 * The notice bus between hosts (store/postgres/notices.ts) closed while its listening connection
 * is being made. Always on PostgreSQL: the bus is PostgreSQL's LISTEN/NOTIFY.
 */

afterAll(() => removeTempDirs());

describe('the PostgreSQL notice bus', () => {
  it('closed while it connects, it keeps no connection (one left open would keep the process from exiting)', async () => {
    const url = freshPostgresStore();
    const name = 'fleet-server notices';
    const db = Store.select(url, tempDir());
    const listeners = () =>
      db.stmt<{ n: number }>('SELECT COUNT(*)::int AS n FROM pg_stat_activity WHERE application_name = ? AND datname = current_database()').get(name)!.n;
    try {
      const before = listeners();
      const bus = new PostgresNoticeBus(url);
      const started = bus.start(pino({ level: 'silent' }));
      await bus.close();
      await started;
      expect(bus.listening).toBe(false);
      expect(listeners()).toBe(before);
    } finally {
      db.close();
    }
  }, 60_000);
});
