import type { Message, MessageOf } from '@router-fleet/protocol';

/**
 * What the job dispatcher needs from the control channel, and nothing more: the dispatcher never
 * reaches into the channel's sessions. The real channel implements this (in cluster mode each
 * worker's channel answers for its own connections); tests use a small WebSocket endpoint.
 */
export interface JobChannelPort {
  /** Sends a message to a connected device; false when it is not connected here. */
  send(deviceUuid: string, message: Message): boolean;
  /**
   * Sends a message already encoded (job offers from a per-job template, validated once per
   * template); false when the device is not connected here. Optional: without it the dispatcher
   * hands `send` the parsed message.
   */
  sendText?(deviceUuid: string, text: string): boolean;
  /** Devices that became connected and managed (call on welcome managed, and on licence-change managed). */
  onDeviceReady(listener: (deviceUuid: string, accountUuid: string) => void): void;
  /** job-progress messages from devices (the channel decodes and forwards them; ack is the dispatcher's job via send). */
  onJobProgress(listener: (deviceUuid: string, message: MessageOf<'job-progress'>) => void): void;
}
