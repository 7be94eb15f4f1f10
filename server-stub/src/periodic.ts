import type { FastifyInstance } from 'fastify';
import { type Clock, isTestClock } from './clock.js';

export interface PeriodicTask {
  /** Named in the error log when a run throws. */
  name: string;
  periodMs: number;
  run(): void;
  /** With a test clock, also run whenever the clock moves (tests see timeouts and expiry at once). */
  onClockChange?: Clock;
  /** Run once when the server is ready, before the first period has passed. */
  runAtStart?: boolean;
  /**
   * Run only while this holds (work done once per cluster runs only in the process that holds
   * the background role, see hosts/membership.ts). Default: always.
   */
  when?: () => boolean;
}

/**
 * Runs a task every `periodMs` from `onReady` until `onClose` (an unref'd timer: it never keeps the
 * process alive). A throwing run is logged and the next one still happens.
 */
export function installPeriodic(app: FastifyInstance, task: PeriodicTask): void {
  const run = () => {
    if (task.when && !task.when()) return;
    try {
      task.run();
    } catch (err) {
      app.log.error({ err }, `${task.name} failed`);
    }
  };
  let timer: NodeJS.Timeout | undefined;
  let offClock: (() => void) | undefined;
  app.addHook('onReady', async () => {
    timer = setInterval(run, task.periodMs);
    timer.unref();
    if (task.runAtStart) run();
  });
  if (task.onClockChange && isTestClock(task.onClockChange)) offClock = task.onClockChange.onChange(run);
  app.addHook('onClose', async () => {
    if (timer) clearInterval(timer);
    offClock?.();
  });
}
