// What the agent's MQTT transport uses of mqtt: the client class, fed with the transport's own
// TCP/TLS sockets, without the package index's `connect()` and its protocol table (WebSocket,
// WeChat and Alipay mini-program streams, SOCKS proxies with ip-address and smart-buffer): the
// bundle resolves `mqtt` here (measured 89 KB less). A new import of something else from `mqtt`
// fails the bundle build loudly ("No matching export"): add it here.
import client from 'mqtt/lib/client';

// mqtt's build is TypeScript's CommonJS: from an ES module its default import is `exports`.
const MqttClient = client.default;
export { MqttClient };
