import type { FastifyInstance } from 'fastify';
import { isTestClock } from '../clock.js';
import type { Services } from '../services.js';

/** Period of the dispatcher tick (timeouts, dynamic targets, rollout limits that freed up), ms. */
export const JOB_TICK_MS = 1000;

/**
 * Runs the job dispatcher's tick every second and, with a test clock, whenever the clock moves (so
 * tests see timeouts, rate limits and maintenance windows react at once). Also accepts
 * `application/x-tar` bodies as a stream (packet uploads are written to disk, never buffered).
 */
export function installJobs(app: FastifyInstance, services: Services): void {
  app.addContentTypeParser('application/x-tar', (_request, payload, done) => done(null, payload));
  const tick = () => {
    try {
      services.jobs.tick();
    } catch (err) {
      app.log.error({ err }, 'job tick failed');
    }
  };
  let timer: NodeJS.Timeout | undefined;
  let offClock: (() => void) | undefined;
  app.addHook('onReady', async () => {
    timer = setInterval(tick, JOB_TICK_MS);
    timer.unref();
  });
  if (isTestClock(services.clock)) offClock = services.clock.onChange(() => tick());
  app.addHook('onClose', async () => {
    if (timer) clearInterval(timer);
    offClock?.();
  });
}
