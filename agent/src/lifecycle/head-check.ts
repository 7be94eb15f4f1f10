import { isProtocolError, type ProtocolError } from '@router-fleet/protocol';
import { readPacketHead } from '../packet-api.js';

/** What `readPacketHead` needs to judge a packet's head on this device. */
export type HeadOptions = NonNullable<Parameters<typeof readPacketHead>[1]>;

/**
 * Feeds the first bytes of a download into the protocol's `readPacketHead`, which verifies the
 * MANIFEST signature and the device compatibility before the payload arrives. A failure aborts the
 * download through `signal`; `rejection` then holds the protocol error.
 */
export class HeadCheck {
  readonly #controller = new AbortController();
  readonly #queue: Uint8Array[] = [];
  #wake: (() => void) | undefined;
  #ended = false;
  #settled = false;
  #fed = 0;
  #promise: Promise<void>;
  rejection: ProtocolError | undefined;

  /** `options`: the reader options for this device (anchors, model, firmware, limits). */
  constructor(options: Promise<HeadOptions>) {
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- the generator reads private fields of this feeder
    const self = this;
    const source = (async function* () {
      for (;;) {
        const chunk = self.#queue.shift();
        if (chunk) {
          yield chunk;
          continue;
        }
        if (self.#ended) return;
        await new Promise<void>((resolve) => {
          self.#wake = resolve;
        });
      }
    })();
    this.#promise = options
      .then((options) => readPacketHead(source, options))
      .then(
        () => {
          this.#settled = true;
        },
        (error: unknown) => {
          this.#settled = true;
          this.#queue.length = 0;
          if (isProtocolError(error)) {
            this.rejection = error;
            this.#controller.abort(error);
          }
        },
      );
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** A chunk of the packet starting at `offset` (a restarted download repeats bytes already fed). */
  feed(chunk: Uint8Array, offset: number): void {
    if (this.#settled) return;
    const skip = this.#fed - offset;
    if (skip < 0 || skip >= chunk.length) return;
    const part = skip === 0 ? chunk : chunk.subarray(skip);
    this.#fed += part.length;
    this.#queue.push(part);
    this.#wake?.();
  }

  async finish(): Promise<void> {
    this.#ended = true;
    this.#wake?.();
    await this.#promise;
    if (this.rejection) throw this.rejection;
  }

  dispose(): void {
    this.#ended = true;
    this.#wake?.();
  }
}
