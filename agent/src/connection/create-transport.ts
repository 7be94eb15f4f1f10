import { isMqttUrl } from '@router-fleet/protocol';
import type { ChannelConnection, DialOptions, NetworkTransportOptions, Transport } from './transport.js';
import { createWsTransport } from './ws-transport.js';

/**
 * The agent's network transport: the connection profile's URL scheme picks the binding on every
 * dial — `ws(s)://` WebSocket, `mqtt(s)://` MQTT — so a new profile may switch it. The MQTT module
 * (and the `mqtt` package) is imported on the first MQTT dial only: a WebSocket agent never loads
 * it. The observer sees WebSocket sockets and MQTT links alike, as `OpenLink`s.
 */
export function createTransport(options: NetworkTransportOptions = {}): Transport & Required<Pick<Transport, 'downloadDispatcher'>> {
  const ws = createWsTransport(options);
  let mqtt: Promise<Transport> | undefined;
  const loadMqtt = (): Promise<Transport> => {
    if (!mqtt) {
      const loading = import('./mqtt-transport.js').then((m) => m.createMqttTransport(options));
      // A failed import (a broken install) is tried again on the next dial rather than remembered.
      loading.catch(() => {
        if (mqtt === loading) mqtt = undefined;
      });
      mqtt = loading;
    }
    return mqtt;
  };
  return {
    // Packet downloads are HTTPS whatever the channel: one rotation over the source addresses.
    downloadDispatcher: (caPem) => ws.downloadDispatcher(caPem),
    async dial(dial: DialOptions): Promise<ChannelConnection> {
      if (isMqttUrl(dial.url)) return (await loadMqtt()).dial(dial);
      return ws.dial(dial);
    },
  };
}
