import { encodeCloseFrame } from '@router-fleet/protocol';
import type { ChannelTransport, LinkEndCause, LinkEvents } from '../transport.js';

/** How a link reaches its device: the bucket client that consumes the device's bucket. */
export interface Downlink {
  /** Whether the bucket's client is connected to the broker now. */
  connected(bucket: number): boolean;
  /** PUBLISH on the device's down topic (QoS 1); `done` after the broker's PUBACK or a failure. */
  publish(deviceId: string, bucket: number, text: string, done?: () => void): void;
  /** The link has ended: forget it (synchronously, before a newer link of the device is made). */
  forget(link: MqttLink): void;
}

/**
 * One MQTT connection of a device as the channel sees it (a {@link ChannelTransport}). There is no
 * socket of the server's own behind it: frames arrive on the bucket client, replies go out on the
 * device's down topic. `linkId` is the id of the device's `online` presence when one was heard.
 */
export class MqttLink implements ChannelTransport {
  #ended = false;
  #events: LinkEvents | undefined;

  constructor(
    readonly deviceId: string,
    readonly bucket: number,
    /** Set later only when the link was made before its connection's presence was heard. */
    public linkId: string | undefined,
    private readonly downlink: Downlink,
  ) {}

  /** Where the link reports frames and its end (the channel's answer to `accept`). */
  bind(events: LinkEvents): void {
    this.#events = events;
  }

  get ended(): boolean {
    return this.#ended;
  }

  get writable(): boolean {
    return !this.#ended && this.downlink.connected(this.bucket);
  }

  /** The broker bounds each device's queue (Mosquitto `max_queued_messages`); nothing queues here. */
  get bufferedAmount(): number {
    return 0;
  }

  get peer(): string {
    return `mqtt:${this.deviceId}${this.linkId ? `/${this.linkId}` : ''}`;
  }

  frame(data: Buffer): void {
    if (!this.#ended) this.#events?.frame(data, false);
  }

  send(text: string): void {
    if (!this.#ended) this.downlink.publish(this.deviceId, this.bucket, text);
  }

  close(code: number, reason: string): void {
    if (this.#ended) return;
    // The close frame tells the device to end its MQTT connection; the link is over once the broker
    // has the frame (or the publish failed: the device then learns from its own keep-alive).
    this.downlink.publish(this.deviceId, this.bucket, encodeCloseFrame(code, reason, this.linkId), () => this.end());
  }

  terminate(): void {
    this.end();
  }

  /**
   * Ends the link: it is forgotten at once (a newer link of the device may be made right after),
   * and `ended` is reported on a microtask, as a socket reports its close after the call that
   * ended it, never from inside it. `cause`: why, when the device did not end it.
   */
  end(cause?: LinkEndCause): void {
    if (this.#ended) return;
    this.#ended = true;
    this.downlink.forget(this);
    const events = this.#events;
    if (events) queueMicrotask(() => events.ended(cause));
  }
}
