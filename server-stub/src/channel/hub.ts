import type { Message, MessageOf, MessageType } from '@router-fleet/protocol';
import type { AccountUuid, DeviceUuid } from '../ids.js';

/** What the hub knows about one open session (read-only view for handlers). */
export interface SessionInfo {
  readonly deviceUuid: DeviceUuid;
  readonly accountUuid: AccountUuid;
  /** What the device was last told: `managed` devices get jobs, `unmanaged` ones do not. */
  readonly admission: 'managed' | 'unmanaged';
  /** Server clock when the hello was admitted (ms). */
  readonly connectedAt: number;
}

export type SessionEvent = 'opened' | 'closed' | 'admission';

export type MessageHandler<T extends MessageType> = (message: MessageOf<T>, session: SessionInfo) => void;

/**
 * The control channel as the rest of the server sees it (the job dispatcher
 * uses only this). Sessions live in one process; in cluster mode each worker has its own hub and
 * `isConnected` answers for this worker only (see cluster/ for cross-worker delivery).
 */
export interface ChannelHub {
  /**
   * Sends one server → device message (`job-offer`, `job-cancel`, `ack`, ...) if the device has
   * an open session here. Returns false when it has none or was just dropped as a slow consumer.
   * The message is validated against its schema before sending (a bad message throws).
   */
  send(deviceUuid: string, message: Message): boolean;
  /**
   * Sends the text of one frame already encoded from a validated message (the job dispatcher's
   * offers, built from a per-job template): same rules as `send`, without encoding again.
   */
  sendText(deviceUuid: string, text: string): boolean;
  /** Whether the device has an open, admitted session in this process. */
  isConnected(deviceUuid: string): boolean;
  /** The session's state, or undefined. */
  session(deviceUuid: string): SessionInfo | undefined;
  /**
   * Registers a handler for device messages of `type` (after hello). Built-in handling (ping,
   * pong, status, event) happens first; `job-progress` and `analytics` are only handed to handlers.
   * Handlers run synchronously in the socket's message callback: keep them short and never throw
   * (a throw is logged and answered with nothing). Returns the function that unregisters it.
   */
  onMessage<T extends MessageType>(type: T, handler: MessageHandler<T>): () => void;
  /**
   * Called after a device's session opened (admitted), closed, or changed its admission while
   * open (licence-change), for dispatch bookkeeping.
   */
  onSession(listener: (event: SessionEvent, session: SessionInfo) => void): () => void;
  /** Number of open, admitted sessions in this process. */
  readonly size: number;
}
