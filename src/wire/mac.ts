import { AddressError } from './addr.js';
import { bytesAt } from './checksum.js';
import { WireError } from './error.js';

export const MAC_LEN = 6;
export const MAC_BROADCAST: Buffer = Buffer.alloc(MAC_LEN, 0xff);
export const MAC_ZERO: Buffer = Buffer.alloc(MAC_LEN, 0);

const MAC_RE = /^[0-9a-fA-F]{1,2}([:-])[0-9a-fA-F]{1,2}(\1[0-9a-fA-F]{1,2}){4}$/;

/** "02:00:00:00:00:01" (or with '-') → 6 bytes; anything else is an AddressError (the CLI makes it exit 2). */
export function parseMac(s: string, what = 'MAC address'): Buffer {
  const t = String(s).trim();
  if (!MAC_RE.test(t)) {
    throw new AddressError(`bad ${what} '${s}': expected six hex bytes like 02:00:00:00:00:01`);
  }
  return Buffer.from(t.split(/[:-]/).map((h) => parseInt(h, 16)));
}

export function formatMac(b: Uint8Array, off = 0): string {
  let s = '';
  for (let i = 0; i < MAC_LEN; i++) {
    if (i) s += ':';
    s += b[off + i].toString(16).padStart(2, '0');
  }
  return s;
}

export function isBroadcastMac(b: Uint8Array, off = 0): boolean {
  for (let i = 0; i < MAC_LEN; i++) if (b[off + i] !== 0xff) return false;
  return true;
}

/** A 6-byte view of buf at off (no copy). */
export function macAt(buf: Uint8Array, off: number): Buffer {
  return bytesAt(buf, off, MAC_LEN);
}

/** Writes a MAC address into buf at off; anything but 6 bytes is a WireError naming its length. */
export function writeMac(buf: Uint8Array, off: number, mac: Uint8Array): void {
  if (mac.length !== MAC_LEN) throw new WireError(`MAC address of ${mac.length} bytes: expected ${MAC_LEN}`);
  buf.set(mac, off);
}
