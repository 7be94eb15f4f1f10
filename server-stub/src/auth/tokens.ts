import { createHash, randomBytes } from 'node:crypto';

/**
 * Bearer tokens: 256 random bits with a prefix telling their kind (`rfs_` login session, `rfa_` API
 * token). Only the SHA-256 of a token is stored; the token itself is shown once.
 */
export type TokenKind = 'session' | 'api';

const PREFIX: Record<TokenKind, string> = { session: 'rfs_', api: 'rfa_' };

export function newToken(kind: TokenKind): string {
  return `${PREFIX[kind]}${randomBytes(32).toString('base64url')}`;
}

export function tokenKind(token: string): TokenKind | undefined {
  if (token.startsWith(PREFIX.session)) return 'session';
  if (token.startsWith(PREFIX.api)) return 'api';
  return undefined;
}

export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('base64url');
}
