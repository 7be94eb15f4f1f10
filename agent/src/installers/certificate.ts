import forge from 'node-forge';
import { AgentError } from '../errors.js';
import type { StoredCertificate } from '../platform/platform.js';
import { type InstallContext, type Installer, sectionExtra } from './installer.js';

const MAX_PEM_BYTES = 256 * 1024;

interface ParsedSection {
  name: string;
  certs: forge.pki.Certificate[];
  certPem: string;
  keyPem?: string;
  isCa: boolean;
}

function invalid(ctx: InstallContext, why: string): AgentError {
  return new AgentError('AGENT_CERTIFICATE_INVALID', `${ctx.section.fileName}: ${why}`);
}

function certName(ctx: InstallContext): string {
  const explicit = sectionExtra(ctx.section, 'NAME');
  const base = explicit ?? ctx.section.fileName.split('/').pop()!.replace(/\.(pem|crt|cer)$/i, '');
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(base)) throw invalid(ctx, `invalid certificate name "${base}"`);
  return base;
}

function isCaCert(cert: forge.pki.Certificate): boolean {
  const bc = cert.getExtension('basicConstraints') as { cA?: boolean } | null;
  return bc?.cA === true;
}

function parseSection(ctx: InstallContext, pem: string): ParsedSection {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw invalid(ctx, 'no PEM certificate');
  let certs: forge.pki.Certificate[];
  try {
    certs = blocks.map((b) => forge.pki.certificateFromPem(b));
  } catch (error) {
    throw invalid(ctx, `unparsable certificate (${(error as Error).message})`);
  }
  const isCa = ctx.section.fileType === 'CaCertificate';
  const keyBlock = pem.match(/-----BEGIN (?:RSA |EC )?PRIVATE KEY-----[\s\S]+?-----END (?:RSA |EC )?PRIVATE KEY-----/)?.[0];
  if (keyBlock && isCa) throw invalid(ctx, 'a CA section must not carry a private key');
  if (keyBlock) {
    try {
      const key = forge.pki.privateKeyFromPem(keyBlock) as forge.pki.rsa.PrivateKey;
      const pub = certs[0]!.publicKey as forge.pki.rsa.PublicKey;
      if (!pub.n || key.n.compareTo(pub.n) !== 0) throw invalid(ctx, 'the private key does not match the certificate');
    } catch (error) {
      if (error instanceof AgentError) throw error;
      throw invalid(ctx, 'unparsable or unsupported private key (RSA PEM expected)');
    }
  }
  if (isCa && !isCaCert(certs[0]!)) throw invalid(ctx, 'a CaCertificate section holds a certificate that is not a CA');
  return {
    name: certName(ctx),
    certs,
    certPem: blocks.join('\n'),
    ...(keyBlock ? { keyPem: keyBlock } : {}),
    isCa,
  };
}

/**
 * Checks validity (now, on the device clock) and the chain with node-forge: a certificate must
 * chain to an installed CA or a CA of the same packet (intermediates in its own PEM help); a CA
 * must be valid and either self-signed (a new root, authorised by the signed packet) or chain to
 * a trusted CA.
 */
async function check(ctx: InstallContext, parsed: ParsedSection): Promise<void> {
  const now = new Date(ctx.platform.clock.now());
  for (const cert of parsed.certs) {
    if (now < cert.validity.notBefore) throw invalid(ctx, `${cert.subject.getField('CN')?.value ?? 'certificate'} is not valid yet`);
    if (now > cert.validity.notAfter) throw invalid(ctx, `${cert.subject.getField('CN')?.value ?? 'certificate'} has expired`);
  }
  const leaf = parsed.certs[0]!;
  const selfSigned = (() => {
    try {
      return leaf.isIssuer(leaf) && leaf.verify(leaf);
    } catch {
      return false;
    }
  })();
  if (parsed.isCa && selfSigned) return;
  const installed = await ctx.platform.certificates.list();
  const caPems = [...installed.filter((c) => c.isCa).map((c) => c.certPem), ...(await ctx.packetCaPems())];
  const store = forge.pki.createCaStore();
  for (const pem of caPems) {
    for (const block of pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []) {
      try {
        store.addCertificate(forge.pki.certificateFromPem(block));
      } catch {
        // an unparsable stored CA cannot help
      }
    }
  }
  try {
    forge.pki.verifyCertificateChain(store, parsed.certs, { validityCheckDate: now });
  } catch (error) {
    const message = (error as { message?: string }).message ?? 'verification failed';
    throw invalid(ctx, `does not chain to a trusted CA (${message})`);
  }
}

async function parsedPayload(ctx: InstallContext): Promise<ParsedSection> {
  const pem = (await ctx.readPayload(MAX_PEM_BYTES)).toString('utf8');
  return parseSection(ctx, pem);
}

/** Certificates and CAs: checked before the commit point, installed by an atomic swap of the store. */
export const certificateInstaller: Installer = {
  fileTypes: ['Certificate', 'CaCertificate'],
  async download(ctx) {
    await check(ctx, await parsedPayload(ctx));
  },
  async install(ctx) {
    const parsed = await parsedPayload(ctx);
    const data = ctx.section.data;
    const store = ctx.platform.certificates;
    if (data.previous === undefined) {
      data.previous = await store.list();
      await ctx.save();
    }
    const previous = data.previous as StoredCertificate[];
    const next: StoredCertificate[] = [
      ...previous.filter((c) => c.name !== parsed.name),
      { name: parsed.name, certPem: parsed.certPem, ...(parsed.keyPem ? { keyPem: parsed.keyPem } : {}), isCa: parsed.isCa },
    ];
    await store.replaceAll(next);
  },
  needsReboot: () => false,
  async commit(ctx) {
    // The previous store is no longer needed (it may hold keys): forget it.
    delete ctx.section.data.previous;
    await ctx.save();
  },
  async rollback(ctx) {
    const previous = ctx.section.data.previous as StoredCertificate[] | undefined;
    if (previous) await ctx.platform.certificates.replaceAll(previous);
    return 'done';
  },
  async cleanup() {},
};
