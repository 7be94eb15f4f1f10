import type { SectionPhase, SectionRecord } from './journal.js';

/** One installer step of a section, journaled around the call by `journaledStep`. */
export interface SectionStep<T> {
  /**
   * The phase recorded, durably, before the call: after a power cut the journal says the step was
   * begun (an interrupted install is rolled back). Omitted for a step that changes nothing the
   * journal must know about before it ends (it is idempotent and simply runs again).
   */
  readonly entering?: SectionPhase;
  /** The installer call. */
  call(): Promise<T>;
  /** Records what the call returned (the section's next phase, notes); persisted at once. */
  settle(value: T): void;
}

/** A step's end: its value once the result is durable, or the error the call threw. */
export type StepEnd<T> = { ok: true; value: T } | { ok: false; error: unknown };

/**
 * Journals a section's phase around an installer call, after Mender's `SaveState` before each
 * state's `OnEnter`: persist "entering phase X of section S", make the call, record its result and
 * persist that. A call that throws leaves the entering phase as the last durable word and its
 * error is returned for the caller to judge. A failed journal write is not the step's failure and
 * throws: nothing after it may rely on the journal (before the call, the call is not made).
 */
export async function journaledStep<T>(save: () => Promise<void>, section: SectionRecord, step: SectionStep<T>): Promise<StepEnd<T>> {
  if (step.entering !== undefined) {
    section.phase = step.entering;
    await save();
  }
  let value: T;
  try {
    value = await step.call();
  } catch (error) {
    return { ok: false, error };
  }
  step.settle(value);
  await save();
  return { ok: true, value };
}
