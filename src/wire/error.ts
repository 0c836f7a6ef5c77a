/** A buffer that cannot be what the caller said it is (too short, wrong version, bad length field). */
export class WireError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WireError';
  }
}

export function need(buf: Uint8Array, off: number, len: number, what: string): void {
  if (off < 0 || buf.length - off < len) {
    throw new WireError(`${what}: need ${len} bytes at offset ${off}, have ${Math.max(0, buf.length - off)}`);
  }
}
