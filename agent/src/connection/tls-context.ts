import { createSecureContext, type SecureContext } from 'node:tls';

const contexts = new Map<string, SecureContext>();

/**
 * The TLS client context trusting `caPem`, built once per CA and process. Building one parses
 * every CA certificate (OpenSSL `addCACert`): per connection that cost as much CPU as the
 * handshake itself when thousands of simulated routers dial and download.
 */
export function clientContext(caPem: string): SecureContext {
  let context = contexts.get(caPem);
  if (!context) {
    context = createSecureContext({ ca: caPem });
    contexts.set(caPem, context);
  }
  return context;
}
