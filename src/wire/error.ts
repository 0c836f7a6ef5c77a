/**
 * The codecs' own error: a buffer that cannot be what the caller said it is (too short, wrong version, a length field
 * pointing past the data), or a repr that cannot be put on the wire (a field out of its range). The message names the
 * bad value and what would be valid. The CLI maps it to an exit code; nothing in wire/ knows about the CLI.
 */
export class WireError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WireError';
  }
}

/** Throws unless buf holds `len` bytes from `off`: the length check every view does before touching a field. */
export function need(buf: Uint8Array, off: number, len: number, what: string): void {
  if (off < 0 || buf.length - off < len) {
    throw new WireError(`${what}: need ${len} bytes at offset ${off}, have ${Math.max(0, buf.length - off)}`);
  }
}

/** Throws unless `value` is an integer in [lo, hi]: what a repr field must be before emit writes it. */
export function inRange(value: number, lo: number, hi: number, what: string): number {
  if (!Number.isInteger(value) || value < lo || value > hi) throw new WireError(`${what} ${value} is out of range: expected ${lo}-${hi}`);
  return value;
}
