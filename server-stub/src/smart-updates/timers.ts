import type { FastifyInstance } from 'fastify';
import type { ClusterRole } from '../hosts/membership.js';
import { installPeriodic } from '../periodic.js';
import type { Services } from '../services.js';
import { SMART_UPDATE_CHECK_MS } from './service.js';

/**
 * Runs the Smart Updates check periodically and, with a test clock, whenever the clock moves (so
 * tests and `--test-clock` runs see it at once). Duplicates across processes are prevented by the
 * store (one reservation per account, model and version), so any process may run it; among
 * independent hosts only the holder of the background role does (one scan of the store instead
 * of one per host).
 */
export function installSmartUpdates(app: FastifyInstance, services: Services, role: ClusterRole): void {
  installPeriodic(app, {
    name: 'smart updates check',
    periodMs: SMART_UPDATE_CHECK_MS,
    run: () => services.smartUpdates.checkAll(),
    onClockChange: services.clock,
    when: () => role.leads(),
  });
}
