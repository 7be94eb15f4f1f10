import { runWorkerProcess } from './worker.js';

/** A child process of the fleet (forked by `startFleet` with IPC). */
runWorkerProcess();
