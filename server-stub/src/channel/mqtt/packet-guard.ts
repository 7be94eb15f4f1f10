/**
 * Follows the MQTT fixed headers of one connection's incoming bytes and reports a packet whose
 * remaining length exceeds `maxBytes` as soon as its header is read: aedes's parser would
 * otherwise buffer a packet of any declared size (up to 256 MiB) before looking at it. MQTT 3.1.1
 * has no way to refuse one packet, so the caller ends the connection.
 */
export class PacketSizeGuard {
  /** Bytes of the current packet's body still to skip; -1 while reading a fixed header. */
  #skip = -1;
  #headerByte = false;
  #length = 0;
  #shift = 0;
  #lengthBytes = 0;

  constructor(private readonly maxBytes: number) {}

  /** Feeds the next chunk; false when a packet is too large or its header is malformed. */
  feed(chunk: Buffer): boolean {
    let i = 0;
    while (i < chunk.length) {
      if (this.#skip > 0) {
        const n = Math.min(this.#skip, chunk.length - i);
        this.#skip -= n;
        i += n;
        continue;
      }
      if (this.#skip === 0) {
        this.#skip = -1;
        this.#headerByte = false;
      }
      if (!this.#headerByte) {
        // First byte: packet type and flags.
        this.#headerByte = true;
        this.#length = 0;
        this.#shift = 0;
        this.#lengthBytes = 0;
        i++;
        continue;
      }
      // Remaining length: a variable-length integer of at most four bytes.
      const b = chunk[i++]!;
      this.#length += (b & 0x7f) * 2 ** this.#shift;
      this.#shift += 7;
      this.#lengthBytes++;
      if (b & 0x80) {
        if (this.#lengthBytes >= 4) return false;
        continue;
      }
      if (this.#length > this.maxBytes) return false;
      this.#skip = this.#length;
      if (this.#skip === 0) {
        this.#skip = -1;
        this.#headerByte = false;
      }
    }
    return true;
  }
}
