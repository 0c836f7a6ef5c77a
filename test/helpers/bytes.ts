/** Byte helpers for codec tests, written the slow, obvious way and independent of src/wire. */

/** "0001 f203" → bytes (white space ignored). */
export const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/** The Internet checksum (RFC 1071) of `b`, summed word by word. */
export function refChecksum(b: Uint8Array): number {
  let s = 0;
  for (let i = 0; i < b.length; i += 2) s += (b[i] << 8) + (i + 1 < b.length ? b[i + 1] : 0);
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return ~s & 0xffff;
}

/** The folded one's-complement sum of b[start, end) plus `init` (a checksum over it and the pseudo-header is 0xffff). */
export function onesSum(b: Uint8Array, start: number, end: number, init = 0): number {
  let s = init;
  for (let i = start; i < end; i += 2) s += (b[i] << 8) | (i + 1 < end ? b[i + 1] : 0);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}
