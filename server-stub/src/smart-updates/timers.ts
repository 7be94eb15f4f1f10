import type { FastifyInstance } from 'fastify';
import { isTestClock } from '../clock.js';
import type { Services } from '../services.js';
import { SMART_UPDATE_CHECK_MS } from './service.js';

/**
 * Runs the Smart Updates check periodically and, with a test clock, whenever the clock moves (so
 * tests and `--test-clock` runs see it at once). Duplicates across processes are prevented by the
 * store (one reservation per account, model and version), so every process may run it.
 */
export function installSmartUpdates(app: FastifyInstance, services: Services): void {
  const check = () => {
    try {
      services.smartUpdates.checkAll();
    } catch (err) {
      app.log.error({ err }, 'smart updates check failed');
    }
  };
  let timer: NodeJS.Timeout | undefined;
  let offClock: (() => void) | undefined;
  app.addHook('onReady', async () => {
    timer = setInterval(check, SMART_UPDATE_CHECK_MS);
    timer.unref();
  });
  if (isTestClock(services.clock)) offClock = services.clock.onChange(() => check());
  app.addHook('onClose', async () => {
    if (timer) clearInterval(timer);
    offClock?.();
  });
}
