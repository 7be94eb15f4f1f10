import type { JobChannelPort } from '../jobs/channel-port.js';
import type { ChannelHub } from './hub.js';

/**
 * Connects the job dispatcher to the control channel: a device is ready for jobs when its session
 * opens managed or turns managed while open (licence-change); decoded `job-progress` messages go
 * to the dispatcher, which sends its own acks through `send`.
 */
export function jobChannelPort(hub: ChannelHub): JobChannelPort {
  return {
    send: (deviceUuid, message) => hub.send(deviceUuid, message),
    sendText: (deviceUuid, text) => hub.sendText(deviceUuid, text),
    onDeviceReady(listener) {
      hub.onSession((event, session) => {
        if (event !== 'closed' && session.admission === 'managed') listener(session.deviceUuid, session.accountUuid);
      });
    },
    onJobProgress(listener) {
      hub.onMessage('job-progress', (message, session) => listener(session.deviceUuid, message));
    },
  };
}
