/**
 * The identifier rules of the protocol, one place for the schemas, the codec's helpers, the agent
 * and the server: what a message, device or execution id and a serial number may contain.
 */

/** Characters of an identifier (message, device, execution and account ids): letters, digits and `._:-`. */
export const IDENTIFIER_CHARS = 'A-Za-z0-9._:-';

/** A whole identifier: 1–64 of {@link IDENTIFIER_CHARS} (UUIDs and ULIDs fit). */
export const IDENTIFIER_PATTERN = new RegExp(`^[${IDENTIFIER_CHARS}]{1,64}$`);

/** True for a string that is an identifier ({@link IDENTIFIER_PATTERN}). */
export function isIdentifier(value: unknown): value is string {
  return typeof value === 'string' && IDENTIFIER_PATTERN.test(value);
}

/** Characters of a serial number as routers report it: letters, digits and `._-` (no `:`). */
export const SERIAL_NUMBER_CHARS = 'A-Za-z0-9._-';

/** A whole serial number on the wire: 1–64 of {@link SERIAL_NUMBER_CHARS}. */
export const SERIAL_NUMBER_PATTERN = new RegExp(`^[${SERIAL_NUMBER_CHARS}]{1,64}$`);

/** True for a string that is a serial number ({@link SERIAL_NUMBER_PATTERN}). */
export function isSerialNumber(value: unknown): value is string {
  return typeof value === 'string' && SERIAL_NUMBER_PATTERN.test(value);
}
