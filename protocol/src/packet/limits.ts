/**
 * Limits the packet reader enforces. Every limit is checked from a tar header (or from MANIFEST)
 * before the member body is read, so a hostile packet cannot make the reader buffer or write more
 * than these bounds. Exceeding one rejects the packet with `PROTO_PACKET_LIMIT_EXCEEDED`.
 */
export interface PacketLimits {
  /** Maximum number of members, MANIFEST and MANIFEST.sig included. Default 64. */
  maxEntries: number;
  /** Maximum size of one payload member, in bytes. Default 1 GiB. */
  maxEntrySize: number;
  /** Maximum size of the whole packet (tar stream, headers and padding included), in bytes. Default 2 GiB. */
  maxTotalSize: number;
  /** Maximum number of `/`-separated segments in a member path (`a/b/c` has 3). Default 4. */
  maxPathDepth: number;
  /** Maximum length of a member path, in UTF-8 bytes. Default 255. */
  maxPathLength: number;
  /** Maximum size of MANIFEST, in bytes. Default 1 MiB. */
  maxManifestSize: number;
  /** Maximum size of MANIFEST.sig, in bytes. Default 256 KiB. */
  maxSignatureSize: number;
  /** Maximum size of one pax extended header or GNU long-name record, in bytes. Default 64 KiB. */
  maxExtendedHeaderSize: number;
}

/** The default {@link PacketLimits}. Frozen; spread it to derive your own. */
export const DEFAULT_PACKET_LIMITS: Readonly<PacketLimits> = Object.freeze({
  maxEntries: 64,
  maxEntrySize: 1024 * 1024 * 1024,
  maxTotalSize: 2 * 1024 * 1024 * 1024,
  maxPathDepth: 4,
  maxPathLength: 255,
  maxManifestSize: 1024 * 1024,
  maxSignatureSize: 256 * 1024,
  maxExtendedHeaderSize: 64 * 1024,
});

/** Merges `overrides` into the defaults and validates the result (positive safe integers). */
export function resolveLimits(overrides: Partial<PacketLimits> | undefined): Readonly<PacketLimits> {
  const limits: PacketLimits = { ...DEFAULT_PACKET_LIMITS };
  for (const [key, value] of Object.entries(overrides ?? {})) {
    if (!Object.hasOwn(DEFAULT_PACKET_LIMITS, key)) throw new TypeError(`Unknown packet limit "${key}"`);
    if (value === undefined) continue;
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
      throw new TypeError(`Packet limit "${key}" must be a positive integer, got ${String(value)}`);
    }
    limits[key as keyof PacketLimits] = value;
  }
  return Object.freeze(limits);
}
