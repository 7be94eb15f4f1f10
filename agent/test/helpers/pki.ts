import { type CertificateAndKey, createTestPki, issueCertificate, type TestPki } from '../../src/packet-api.js';

export interface TestCerts {
  pki: TestPki;
  /** CA that issued the fake server's TLS certificate (goes into the connection profile). */
  tlsCa: CertificateAndKey;
  /** The fake server's TLS certificate for localhost / 127.0.0.1. */
  tlsServer: CertificateAndKey;
  /** An unrelated CA (a profile with it must not connect). */
  otherCa: CertificateAndKey;
}

const KEY_BITS = 2048;
let shared: Promise<TestCerts> | undefined;

/**
 * One PKI per test file (vitest isolates modules per file). RSA-2048: OpenSSL 3 at its default
 * security level (Node 24) refuses 1024-bit keys in TLS, and the tests must pass on Node 20 and 24.
 */
export function testCerts(): Promise<TestCerts> {
  shared ??= (async () => {
    const [pki, tlsCa, otherCa] = await Promise.all([
      createTestPki({ keyBits: KEY_BITS }),
      issueCertificate({ commonName: 'Fake Server TLS CA', ca: true, keyBits: KEY_BITS }),
      issueCertificate({ commonName: 'Other TLS CA', ca: true, keyBits: KEY_BITS }),
    ]);
    const tlsServer = await issueCertificate({
      commonName: 'localhost',
      issuer: tlsCa,
      keyBits: KEY_BITS,
      extKeyUsage: ['serverAuth'],
      subjectAltNames: { dns: ['localhost'], ip: ['127.0.0.1'] },
    });
    return { pki, tlsCa, tlsServer, otherCa };
  })();
  return shared;
}
