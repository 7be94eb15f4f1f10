/** Protocol version spoken by this package, `MAJOR.MINOR`. */
export const PROTOCOL_VERSION = '1.1';
/** Major version: receivers accept every minor version of the same major. */
export const PROTOCOL_MAJOR = 1;
/** Minor version: additive changes only (new optional fields, new message types). */
export const PROTOCOL_MINOR = 1;

/** Parses `MAJOR.MINOR`; returns undefined when the text is not of that form. */
export function parseProtocolVersion(v: string): { major: number; minor: number } | undefined {
  const m = /^(0|[1-9]\d{0,3})\.(0|[1-9]\d{0,3})$/.exec(v);
  if (!m) return undefined;
  return { major: Number(m[1]), minor: Number(m[2]) };
}
