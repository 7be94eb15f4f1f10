import type { FastifyInstance } from 'fastify';
import { installPeriodic } from '../periodic.js';
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
  installPeriodic(app, { name: 'job tick', periodMs: JOB_TICK_MS, run: () => services.jobs.tick(), onClockChange: services.clock });
}
