import { SimError } from './errors.js';

/** The two ways the simulator talks to one server, derived from one `--server` URL. */
export interface ServerUrls {
  /** REST base URL (`http://` or `https://`, path kept, no trailing slash). */
  rest: string;
  /** Origin the routers dial (`ws://` or `wss://` + host + port); the profiles' path is kept. */
  channelOrigin: string;
  /** True for `http://` and `ws://`: the routers need `allowInsecureTransport`. */
  insecure: boolean;
}

const SCHEMES: Record<string, { rest: string; channel: string }> = {
  'https:': { rest: 'https:', channel: 'wss:' },
  'wss:': { rest: 'https:', channel: 'wss:' },
  'http:': { rest: 'http:', channel: 'ws:' },
  'ws:': { rest: 'http:', channel: 'ws:' },
};

/**
 * Validates a server URL and maps it explicitly: `https://` and `wss://` mean TLS for both the REST
 * API and the control channel; `http://` and `ws://` mean plain TCP for both (a development server;
 * the routers are then allowed insecure transport). Anything else — no scheme, another scheme, no
 * host — is SIM_SERVER_URL_INVALID, so a typo fails at once instead of a fleet that never connects.
 */
export function serverUrls(text: string): ServerUrls {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new SimError('SIM_SERVER_URL_INVALID', `not a URL: ${JSON.stringify(text)} (e.g. https://127.0.0.1:8443)`);
  }
  const scheme = SCHEMES[url.protocol];
  if (!scheme) {
    throw new SimError('SIM_SERVER_URL_INVALID', `unsupported scheme ${url.protocol} in ${JSON.stringify(text)}: use https:// (or wss://); http:// and ws:// for a server without TLS`);
  }
  if (url.hostname === '') throw new SimError('SIM_SERVER_URL_INVALID', `no host in ${JSON.stringify(text)}`);
  if (url.username || url.password) throw new SimError('SIM_SERVER_URL_INVALID', 'credentials in the server URL are not supported: use --token');
  const path = url.pathname.replace(/\/+$/, '');
  return {
    rest: `${scheme.rest}//${url.host}${path}`,
    channelOrigin: `${scheme.channel}//${url.host}`,
    insecure: scheme.channel === 'ws:',
  };
}
