import type { FastifyInstance } from 'fastify';
import type { ClusterRole } from '../hosts/membership.js';
import { installPeriodic } from '../periodic.js';
import type { Services } from '../services.js';

/** Period of the dispatcher tick (timeouts, dynamic targets, rollout limits that freed up), ms. */
export const JOB_TICK_MS = 1000;

/**
 * Runs the job dispatcher's tick every second and, with a test clock, whenever the clock moves (so
 * tests see timeouts, rate limits and maintenance windows react at once). Every process dispatches
 * to the devices connected to it (claims re-check the rollout limits in the store, so several
 * processes never exceed them together) and sends its devices' pending cancels; the store-wide
 * part (timeouts, orphaned claims, dynamic targets, finishing jobs) runs only in the process that
 * holds the background role. Also accepts `application/x-tar` bodies as a stream (packet uploads
 * are written to disk, never buffered).
 */
export function installJobs(app: FastifyInstance, services: Services, role: ClusterRole): void {
  app.addContentTypeParser('application/x-tar', (_request, payload, done) => done(null, payload));
  installPeriodic(app, { name: 'job tick', periodMs: JOB_TICK_MS, run: () => services.jobs.tick(role.leads()), onClockChange: services.clock });
}
