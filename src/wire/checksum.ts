/**
 * The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
 * Sums are kept as folded 16-bit ones'-complement values so partial sums (pseudo-header, header, payload) compose.
 */

/** Ones'-complement sum of buf[start, end) as big-endian 16-bit words, folded to 16 bits. An odd tail byte is padded with 0. */
export function onesSum(buf: Uint8Array, start: number, end: number, initial = 0): number {
  let sum = initial;
  let i = start;
  const last = end - 1;
  for (; i < last; i += 2) sum += (buf[i] << 8) | buf[i + 1];
  if (i < end) sum += buf[i] << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

/** The checksum field value: complement of the folded sum. */
export function internetChecksum(buf: Uint8Array, start: number, end: number, initial = 0): number {
  return ~onesSum(buf, start, end, initial) & 0xffff;
}

/** Add 16-bit words (or a 32-bit value as two words) into a folded sum. */
export function addWords(sum: number, ...words: number[]): number {
  for (const w of words) sum += (w >>> 16) + (w & 0xffff);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

/**
 * RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'). Updates a checksum when one 16-bit word changes from m to m'
 * without re-summing the packet — how a template frame gets a new IP ID or sequence number per send.
 */
export function incrementalUpdate(oldCsum: number, oldWord: number, newWord: number): number {
  let sum = (~oldCsum & 0xffff) + (~oldWord & 0xffff) + (newWord & 0xffff);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/**
 * The deliberate bad checksum behind --bad-ip-checksum and --bad-udp-checksum, one definition for IPv4 and UDP:
 * the correct field value `c` plus 1 in ones'-complement arithmetic, i.e. c + 1, except 0xffff which becomes 0x0001
 * (end-around carry). So the receiver's ones'-complement sum over the covered bytes comes to 0x0001 instead of 0xffff:
 * the header (IPv4) or datagram (UDP) is wrong by exactly one, and a Linux peer drops it (Ip InHdrErrors / Udp
 * InCsumErrors). The result is never 0, so a bad UDP checksum can never read as "no checksum"; and because it is a
 * ones'-complement offset, RFC 1624 incremental updates of the field (a new IP ID, pktgen seq) keep it wrong by one.
 */
export function corruptChecksum(c: number): number {
  return c === 0xffff ? 0x0001 : (c + 1) & 0xffff;
}

/**
 * Big-endian 16/32-bit field access for the codecs' views: the same network-order words the checksum sums.
 * No bounds checks here: a view checks its length once (`check`/`checked`) and then reads freely.
 */
export function readBe16(b: Uint8Array, o: number): number {
  return (b[o] << 8) | b[o + 1];
}

export function writeBe16(b: Uint8Array, o: number, v: number): void {
  b[o] = v >>> 8;
  b[o + 1] = v;
}

export function readBe32(b: Uint8Array, o: number): number {
  return ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
}

export function writeBe32(b: Uint8Array, o: number, v: number): void {
  b[o] = v >>> 24;
  b[o + 1] = v >>> 16;
  b[o + 2] = v >>> 8;
  b[o + 3] = v;
}

/** buf[off, off+len) as a Buffer sharing its memory (no copy), clipped to buf: never bytes beyond the view. */
export function bytesAt(buf: Uint8Array, off: number, len: number): Buffer {
  const start = Math.min(Math.max(0, off), buf.length);
  return Buffer.from(buf.buffer, buf.byteOffset + start, Math.max(0, Math.min(len, buf.length - start)));
}
