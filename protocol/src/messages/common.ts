import { type TSchema, Type } from '@sinclair/typebox';
import { IDENTIFIER_CHARS, SERIAL_NUMBER_CHARS } from '../identifiers.js';

/** Milliseconds since the Unix epoch (UTC). */
export const EpochMs = (description: string) =>
  Type.Integer({
    minimum: 0,
    maximum: 8_640_000_000_000_000,
    description: `${description} (ms since the Unix epoch, UTC)`,
  });

/** A short identifier: letters, digits and `._:-`, 1–64 characters (UUIDs and ULIDs fit; `isIdentifier`). */
export const Identifier = (description: string) =>
  Type.String({ minLength: 1, maxLength: 64, pattern: `^[${IDENTIFIER_CHARS}]+$`, description });

/** A serial number: letters, digits and `._-`, 1–64 characters (`isSerialNumber`). */
export const SerialNumber = (description: string) =>
  Type.String({ minLength: 1, maxLength: 64, pattern: `^[${SERIAL_NUMBER_CHARS}]+$`, description });

/** A version string as routers report it (semver, or a vendor string such as `10.3`). */
export const VersionString = (description: string) =>
  Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9.+_~-]+$', description });

/** Lower-case hex SHA-256 digest. */
export const Sha256Hex = (description: string) =>
  Type.String({ minLength: 64, maxLength: 64, pattern: '^[0-9a-f]{64}$', description });

/** A stable error or reason code: upper-case letters, digits and underscores. */
export const Code = (description: string) =>
  Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Z][A-Z0-9_]*$', description });

/** Free text for humans, bounded. */
export const Text = (description: string, maxLength = 256) => Type.String({ maxLength, description });

export const Percent = (description: string) =>
  Type.Number({ minimum: 0, maximum: 100, description: `${description} (percent, 0–100)` });

export const Count = (description: string) =>
  Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description });

export type Described = TSchema;
