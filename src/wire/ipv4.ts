/**
 * IPv4 header (RFC 791), the layer netpoll's push_ipv4 writes. A view over bytes (Ipv4View: named offsets, a length
 * check first, getters/setters) and a plain representation (Ipv4Repr) with symmetrical parse/emit, after smoltcp's
 * src/wire/ipv4.rs. No I/O.
 */
import { corruptChecksum, internetChecksum, onesSum, readBe16, readBe32, writeBe16, writeBe32 } from './checksum.js';
import { inRange, need, WireError } from './error.js';

/** Field offsets from the start of the header (no options: IHL 5). */
export const IPV4_FIELD = {
  /** Version (high nibble, 4) and IHL (low nibble, header length in 32-bit words). */
  verIhl: 0,
  tos: 1,
  /** u16: header + payload. */
  totalLength: 2,
  id: 4,
  /** u16: reserved, DF, MF bits and the fragment offset in 8-byte units. */
  flagsFrag: 6,
  ttl: 8,
  protocol: 9,
  checksum: 10,
  src: 12,
  dst: 16,
  /** Without options (IHL 5); the real length is IHL * 4. */
  HEADER_LEN: 20,
} as const;
/** The older name of IPV4_FIELD (same object). */
export const IPV4_OFF = IPV4_FIELD;
export const IPV4_HEADER_LEN = IPV4_FIELD.HEADER_LEN;
export const IPPROTO_UDP = 17;
export const IPV4_DF = 0x4000;
export const IPV4_MF = 0x2000;
const FRAG_OFFSET_MASK = 0x1fff;
/** MF or any fragment offset in the flags/fragment word: the datagram is a piece. */
export const IPV4_FRAGMENT_BITS = IPV4_MF | FRAG_OFFSET_MASK;
/** version 4, IHL 5: the only header emit writes (netpoll sends no options). */
const VER_IHL_NO_OPTIONS = 0x45;

/** Header length in bytes from the IHL nibble of the header at buf[off] (no checks: for callers past Ipv4View.check). */
export function ipv4HeaderLen(buf: Uint8Array, off: number): number {
  return (buf[off + IPV4_FIELD.verIhl] & 15) * 4;
}

// Ipv4View.check results.
const OK = 0, TRUNCATED = 1, VERSION = 2, IHL = 3, OPTIONS_TRUNCATED = 4, TOTAL_TOO_SHORT = 5, TOTAL_PAST_END = 6;

/**
 * 0 when buf[off, end) holds a whole IPv4 datagram as its header describes it (version 4, IHL >= 5, the header and
 * total length inside the range, total length >= header length); else a nonzero code. Allocation-free, for hot paths.
 */
export function ipv4Check(buf: Uint8Array, off = 0, end = buf.length): number {
  const room = end - off;
  if (off < 0 || room < IPV4_HEADER_LEN) return TRUNCATED;
  if (buf[off + IPV4_FIELD.verIhl] >>> 4 !== 4) return VERSION;
  const hl = ipv4HeaderLen(buf, off);
  if (hl < IPV4_HEADER_LEN) return IHL;
  if (room < hl) return OPTIONS_TRUNCATED;
  const total = readBe16(buf, off + IPV4_FIELD.totalLength);
  if (total < hl) return TOTAL_TOO_SHORT;
  if (room < total) return TOTAL_PAST_END;
  return OK;
}

export class Ipv4View {
  constructor(public buf: Uint8Array, public off = 0) {}

  /** ipv4Check, as a view method. */
  static check(buf: Uint8Array, off = 0, end = buf.length): number {
    return ipv4Check(buf, off, end);
  }

  /** A view after check(); a WireError naming the bad field and what would be valid otherwise. */
  static checked(buf: Uint8Array, off = 0, end = buf.length): Ipv4View {
    const c = Ipv4View.check(buf, off, end);
    if (c !== OK) throw new WireError(describe(c, buf, off, end));
    return new Ipv4View(buf, off);
  }

  reset(buf: Uint8Array, off = 0): this {
    this.buf = buf;
    this.off = off;
    return this;
  }

  get version(): number { return this.buf[this.off + IPV4_FIELD.verIhl] >>> 4; }
  set version(v: number) { const o = this.off + IPV4_FIELD.verIhl; this.buf[o] = ((v & 15) << 4) | (this.buf[o] & 15); }
  /** Header length in bytes (IHL * 4). */
  get headerLen(): number { return ipv4HeaderLen(this.buf, this.off); }
  set headerLen(v: number) { const o = this.off + IPV4_FIELD.verIhl; this.buf[o] = (this.buf[o] & 0xf0) | ((v >>> 2) & 15); }
  get tos(): number { return this.buf[this.off + IPV4_FIELD.tos]; }
  set tos(v: number) { this.buf[this.off + IPV4_FIELD.tos] = v; }
  get totalLength(): number { return readBe16(this.buf, this.off + IPV4_FIELD.totalLength); }
  set totalLength(v: number) { writeBe16(this.buf, this.off + IPV4_FIELD.totalLength, v); }
  get id(): number { return readBe16(this.buf, this.off + IPV4_FIELD.id); }
  set id(v: number) { writeBe16(this.buf, this.off + IPV4_FIELD.id, v); }
  get flagsFrag(): number { return readBe16(this.buf, this.off + IPV4_FIELD.flagsFrag); }
  set flagsFrag(v: number) { writeBe16(this.buf, this.off + IPV4_FIELD.flagsFrag, v); }
  get df(): boolean { return (this.flagsFrag & IPV4_DF) !== 0; }
  set df(v: boolean) { this.flagsFrag = v ? this.flagsFrag | IPV4_DF : this.flagsFrag & ~IPV4_DF; }
  get mf(): boolean { return (this.flagsFrag & IPV4_MF) !== 0; }
  set mf(v: boolean) { this.flagsFrag = v ? this.flagsFrag | IPV4_MF : this.flagsFrag & ~IPV4_MF; }
  /** Fragment offset in bytes (the field counts 8-byte units). */
  get fragOffset(): number { return (this.flagsFrag & FRAG_OFFSET_MASK) * 8; }
  set fragOffset(v: number) { this.flagsFrag = (this.flagsFrag & ~FRAG_OFFSET_MASK) | ((v >>> 3) & FRAG_OFFSET_MASK); }
  /** MF set or a nonzero offset: a piece, not a whole datagram. */
  get isFragment(): boolean { return (this.flagsFrag & IPV4_FRAGMENT_BITS) !== 0; }
  get ttl(): number { return this.buf[this.off + IPV4_FIELD.ttl]; }
  set ttl(v: number) { this.buf[this.off + IPV4_FIELD.ttl] = v; }
  get protocol(): number { return this.buf[this.off + IPV4_FIELD.protocol]; }
  set protocol(v: number) { this.buf[this.off + IPV4_FIELD.protocol] = v; }
  get checksum(): number { return readBe16(this.buf, this.off + IPV4_FIELD.checksum); }
  set checksum(v: number) { writeBe16(this.buf, this.off + IPV4_FIELD.checksum, v); }
  get src(): number { return readBe32(this.buf, this.off + IPV4_FIELD.src); }
  set src(v: number) { writeBe32(this.buf, this.off + IPV4_FIELD.src, v); }
  get dst(): number { return readBe32(this.buf, this.off + IPV4_FIELD.dst); }
  set dst(v: number) { writeBe32(this.buf, this.off + IPV4_FIELD.dst, v); }
  /** Where the payload (UDP header) starts. */
  get payloadOffset(): number { return this.off + this.headerLen; }

  /** Folded ones'-complement sum of the header with the checksum field counted as 0. */
  sumWithoutChecksum(): number {
    const o = this.off;
    const c = IPV4_FIELD.checksum;
    return onesSum(this.buf, o + c + 2, o + this.headerLen, onesSum(this.buf, o, o + c));
  }

  /** Computes and writes the header checksum; 'bad' writes corruptChecksum() of it (--bad-ip-checksum). */
  fillChecksum(mode: 'good' | 'bad' = 'good'): void {
    const c = ~this.sumWithoutChecksum() & 0xffff;
    this.checksum = mode === 'bad' ? corruptChecksum(c) : c;
  }

  /** True when the header's checksum verifies (the sum over the header including the field is 0xffff). */
  verifyChecksum(): boolean {
    return internetChecksum(this.buf, this.off, this.off + this.headerLen) === 0;
  }
}

function describe(code: number, buf: Uint8Array, off: number, end: number): string {
  const at = `IPv4 header at offset ${off}`;
  const room = Math.max(0, end - off);
  const verIhl = room > 0 ? buf[off] : 0;
  switch (code) {
    case TRUNCATED: return `${at}: need ${IPV4_HEADER_LEN} bytes, have ${room}`;
    case VERSION: return `${at}: version ${verIhl >>> 4}, expected 4`;
    case IHL: return `${at}: IHL ${verIhl & 15} is too small: expected 5-15`;
    case OPTIONS_TRUNCATED: return `${at}: IHL ${verIhl & 15} needs ${(verIhl & 15) * 4} header bytes, have ${room}`;
    case TOTAL_TOO_SHORT: return `${at}: total length ${readBe16(buf, off + IPV4_FIELD.totalLength)} is less than the header length ${(verIhl & 15) * 4}`;
    case TOTAL_PAST_END: return `${at}: total length ${readBe16(buf, off + IPV4_FIELD.totalLength)} runs past the ${room} bytes there`;
    default: return `${at}: invalid (code ${code})`;
  }
}

/** What the header says; the checksum is not part of it (emit computes it, Ipv4View.verifyChecksum checks it). */
export interface Ipv4Repr {
  tos: number;
  /** Header + payload bytes. */
  totalLength: number;
  id: number;
  df: boolean;
  mf: boolean;
  /** In bytes, a multiple of 8. */
  fragOffset: number;
  ttl: number;
  protocol: number;
  src: number;
  dst: number;
}

export interface ChecksumOptions {
  /** 'good' (default) computes the right value; 'bad' writes corruptChecksum() of it — a named, deliberate corruption. */
  ipChecksum?: 'good' | 'bad';
}

export const Ipv4Repr = {
  /** Fields of a checked view (options, if any, are skipped: emit writes none). */
  parse(v: Ipv4View): Ipv4Repr {
    return {
      tos: v.tos, totalLength: v.totalLength, id: v.id, df: v.df, mf: v.mf, fragOffset: v.fragOffset,
      ttl: v.ttl, protocol: v.protocol, src: v.src, dst: v.dst,
    };
  },
  /**
   * Writes a 20-byte header (IHL 5, no options) and its checksum, as netpoll's push_ipv4. The ID is taken modulo 2^16
   * (a counter wraps); any other field outside its range is a WireError naming it.
   */
  emit(r: Ipv4Repr, v: Ipv4View, o: ChecksumOptions = {}): void {
    need(v.buf, v.off, IPV4_HEADER_LEN, 'IPv4 header');
    if (r.fragOffset % 8 !== 0) throw new WireError(`IPv4 fragment offset ${r.fragOffset} is not a multiple of 8`);
    v.buf[v.off + IPV4_FIELD.verIhl] = VER_IHL_NO_OPTIONS;
    v.tos = inRange(r.tos, 0, 0xff, 'IPv4 TOS');
    v.totalLength = inRange(r.totalLength, 0, 0xffff, 'IPv4 total length');
    v.id = r.id & 0xffff;
    v.flagsFrag = (r.df ? IPV4_DF : 0) | (r.mf ? IPV4_MF : 0) | (inRange(r.fragOffset, 0, FRAG_OFFSET_MASK * 8, 'IPv4 fragment offset') >>> 3);
    v.ttl = inRange(r.ttl, 0, 0xff, 'IPv4 TTL');
    v.protocol = inRange(r.protocol, 0, 0xff, 'IPv4 protocol');
    v.src = r.src >>> 0;
    v.dst = r.dst >>> 0;
    v.fillChecksum(o.ipChecksum);
  },
  /** Bytes emit writes (the header; the payload is the next layer's). */
  bufferLen(): number {
    return IPV4_HEADER_LEN;
  },
};

/** parse of a checked view, plus the checksum field and the header length as found. */
export function parseIpv4(buf: Uint8Array, off = 0): Ipv4Repr & { checksum: number; headerLen: number } {
  const v = Ipv4View.checked(buf, off);
  return { ...Ipv4Repr.parse(v), checksum: v.checksum, headerLen: v.headerLen };
}

/** True when the header's checksum verifies (the sum over the header including the field is 0xffff). */
export function ipv4ChecksumOk(buf: Uint8Array, off = 0): boolean {
  return new Ipv4View(buf, off).verifyChecksum();
}

/** Ipv4Repr.emit at buf[off]; mf and fragOffset default to a whole datagram. Returns the header length. */
export function emitIpv4(r: Omit<Ipv4Repr, 'mf' | 'fragOffset'> & Partial<Ipv4Repr>, buf: Uint8Array, off = 0, o: ChecksumOptions = {}): number {
  Ipv4Repr.emit({ ...r, mf: r.mf ?? false, fragOffset: r.fragOffset ?? 0 }, new Ipv4View(buf, off), o);
  return IPV4_HEADER_LEN;
}
