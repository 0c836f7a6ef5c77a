/**
 * The Linux pktgen test header (PROTOCOLS.md §5; net/core/pktgen.c `struct pktgen_hdr`). Pure codec, no I/O:
 * a view (PktgenView) and a plain representation (PktgenRepr) with symmetrical parse/emit, as the wire/ codecs.
 *
 * 16 bytes right after the UDP header, all big-endian:
 *   0 magic   0xbe9be955 (PKTGEN_MAGIC)
 *   4 seq     per-flow sequence number, the first datagram carries 1
 *   8 tv_sec  wall clock when the frame was built (pktgen leaves 0/0 with NO_TIMESTAMP)
 *  12 tv_usec
 * Receivers (Wireshark's "pktgen" dissector, our sink) recognise it by the magic alone.
 */
import { readBe32, writeBe32 } from '../wire/checksum.js';
import { need, WireError } from '../wire/error.js';

export const PKTGEN_MAGIC = 0xbe9be955;
/** Field offsets from the start of the header (the first UDP payload byte), all u32 big-endian. */
export const PKTGEN_FIELD = { magic: 0, seq: 4, tvSec: 8, tvUsec: 12, HEADER_LEN: 16 } as const;
export const PKTGEN_HDR_LEN = PKTGEN_FIELD.HEADER_LEN;

// PktgenView.check results.
const OK = 0, TRUNCATED = 1, MAGIC = 2;

/** 0 when buf[off, end) holds 16 bytes starting with the magic; else a nonzero code. Allocation-free. */
export function pktgenCheck(buf: Uint8Array, off = 0, end = buf.length): number {
  if (off < 0 || end - off < PKTGEN_HDR_LEN) return TRUNCATED;
  return readBe32(buf, off + PKTGEN_FIELD.magic) === PKTGEN_MAGIC ? OK : MAGIC;
}

export class PktgenView {
  constructor(public buf: Uint8Array, public off = 0) {}

  /** pktgenCheck, as a view method. */
  static check(buf: Uint8Array, off = 0, end = buf.length): number {
    return pktgenCheck(buf, off, end);
  }

  static checked(buf: Uint8Array, off = 0, end = buf.length): PktgenView {
    const c = PktgenView.check(buf, off, end);
    if (c === TRUNCATED) throw new WireError(`pktgen header at offset ${off}: need ${PKTGEN_HDR_LEN} bytes, have ${Math.max(0, end - off)}`);
    if (c === MAGIC) {
      throw new WireError(`pktgen header at offset ${off}: magic 0x${readBe32(buf, off).toString(16).padStart(8, '0')}, expected 0x${PKTGEN_MAGIC.toString(16)}`);
    }
    return new PktgenView(buf, off);
  }

  reset(buf: Uint8Array, off = 0): this {
    this.buf = buf;
    this.off = off;
    return this;
  }

  get magic(): number { return readBe32(this.buf, this.off + PKTGEN_FIELD.magic); }
  set magic(v: number) { writeBe32(this.buf, this.off + PKTGEN_FIELD.magic, v); }
  get seq(): number { return readBe32(this.buf, this.off + PKTGEN_FIELD.seq); }
  set seq(v: number) { writeBe32(this.buf, this.off + PKTGEN_FIELD.seq, v); }
  get tvSec(): number { return readBe32(this.buf, this.off + PKTGEN_FIELD.tvSec); }
  set tvSec(v: number) { writeBe32(this.buf, this.off + PKTGEN_FIELD.tvSec, v); }
  get tvUsec(): number { return readBe32(this.buf, this.off + PKTGEN_FIELD.tvUsec); }
  set tvUsec(v: number) { writeBe32(this.buf, this.off + PKTGEN_FIELD.tvUsec, v); }
}

export interface PktgenHeader {
  seq: number;
  tvSec: number;
  tvUsec: number;
}
/** The repr is the header's three variable fields (the magic is constant). */
export type PktgenRepr = PktgenHeader;

export const PktgenRepr = {
  parse(v: PktgenView): PktgenRepr {
    return { seq: v.seq, tvSec: v.tvSec, tvUsec: v.tvUsec };
  },
  /** Writes magic and fields; seq/tvSec/tvUsec are taken modulo 2^32, as the kernel's __be32 fields. */
  emit(r: PktgenRepr, v: PktgenView): void {
    need(v.buf, v.off, PKTGEN_HDR_LEN, 'pktgen header');
    v.magic = PKTGEN_MAGIC;
    v.seq = r.seq >>> 0;
    v.tvSec = r.tvSec >>> 0;
    v.tvUsec = r.tvUsec >>> 0;
  },
  bufferLen(): number {
    return PKTGEN_HDR_LEN;
  },
};

/** Writes the header at buf[off..off+16). seq/tvSec/tvUsec are taken modulo 2^32, as the kernel's __be32 fields. */
export function writePktgenHeader(buf: Uint8Array, off: number, seq: number, tvSec: number, tvUsec: number): void {
  PktgenRepr.emit({ seq, tvSec, tvUsec }, new PktgenView(buf, off));
}

/** Reads the header at off; null when there are fewer than 16 bytes or the magic is not pktgen's. */
export function readPktgenHeader(buf: Uint8Array, off: number): PktgenHeader | null {
  if (PktgenView.check(buf, off) !== OK) return null;
  return PktgenRepr.parse(new PktgenView(buf, off));
}
