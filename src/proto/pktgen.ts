/**
 * The Linux pktgen test header (PROTOCOLS.md §5; net/core/pktgen.c `struct pktgen_hdr`). Pure codec, no I/O.
 *
 * 16 bytes right after the UDP header, all big-endian:
 *   0 magic   0xbe9be955 (PKTGEN_MAGIC)
 *   4 seq     per-flow sequence number, the first datagram carries 1
 *   8 tv_sec  wall clock when the frame was built (pktgen leaves 0/0 with NO_TIMESTAMP)
 *  12 tv_usec
 * Receivers (Wireshark's "pktgen" dissector, our sink) recognise it by the magic alone.
 */
import { need } from '../wire/error.js';

export const PKTGEN_MAGIC = 0xbe9be955;
export const PKTGEN_FIELD = { magic: 0, seq: 4, tvSec: 8, tvUsec: 12, HEADER_LEN: 16 } as const;
export const PKTGEN_HDR_LEN = PKTGEN_FIELD.HEADER_LEN;

export interface PktgenHeader {
  seq: number;
  tvSec: number;
  tvUsec: number;
}

/** Writes the header at buf[off..off+16). seq/tvSec/tvUsec are taken modulo 2^32, as the kernel's __be32 fields. */
export function writePktgenHeader(buf: Uint8Array, off: number, seq: number, tvSec: number, tvUsec: number): void {
  need(buf, off, PKTGEN_HDR_LEN, 'pktgen header');
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  dv.setUint32(off, PKTGEN_MAGIC);
  dv.setUint32(off + 4, seq >>> 0);
  dv.setUint32(off + 8, tvSec >>> 0);
  dv.setUint32(off + 12, tvUsec >>> 0);
}

/** Reads the header at off; null when there are fewer than 16 bytes or the magic is not pktgen's. */
export function readPktgenHeader(buf: Uint8Array, off: number): PktgenHeader | null {
  if (off < 0 || buf.length - off < PKTGEN_HDR_LEN) return null;
  const u32 = (o: number) => ((buf[o] << 24) | (buf[o + 1] << 16) | (buf[o + 2] << 8) | buf[o + 3]) >>> 0;
  if (u32(off) !== PKTGEN_MAGIC) return null;
  return { seq: u32(off + 4), tvSec: u32(off + 8), tvUsec: u32(off + 12) };
}
