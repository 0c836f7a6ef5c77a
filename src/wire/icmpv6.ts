/**
 * ICMPv6 (RFC 4443) with the Neighbor Discovery messages rawpoll speaks (RFC 4861 §4.3 Neighbor Solicitation, §4.4
 * Neighbor Advertisement, §4.6.1 source/target link-layer address options) and Echo (for the vectors and a ping).
 * A view over bytes (Icmpv6View) and a plain representation (Icmpv6Repr) with symmetrical parse/emit, after
 * smoltcp's src/wire/icmpv6.rs and ndisc.rs. The checksum covers the IPv6 pseudo-header (RFC 4443 §2.3), so parse and
 * emit take the addresses. No I/O.
 */
import { bytesAt, corruptChecksum, onesSum, readBe16, readBe32, writeBe16, writeBe32 } from './checksum.js';
import { inRange, need, WireError } from './error.js';
import { IPPROTO_ICMPV6, IPV6_ADDR_LEN, ipv6PseudoHeaderSum, formatIpv6Addr, writeIpv6Addr } from './ipv6.js';
import { MAC_LEN, formatMac, writeMac } from './mac.js';

/** Field offsets from the start of the message. */
export const ICMPV6_FIELD = {
  type: 0,
  code: 1,
  checksum: 2,
  /** u32 whose meaning is the type's: Echo's identifier and sequence, NA's R/S/O flags, NS's reserved zeros. */
  body: 4,
  /** Echo: u16 identifier, u16 sequence number, then data. */
  echoIdent: 4,
  echoSeq: 6,
  /** NS/NA: the target address, 16 bytes, then options. */
  target: 8,
  HEADER_LEN: 4,
  /** Type, code, checksum and the 4-byte body: the shortest message of each type rawpoll reads. */
  MIN_LEN: 8,
  /** NS/NA without options. */
  ND_LEN: 24,
} as const;
export const ICMPV6_HEADER_LEN = ICMPV6_FIELD.HEADER_LEN;

export const ICMPV6_ECHO_REQUEST = 128;
export const ICMPV6_ECHO_REPLY = 129;
export const ICMPV6_NEIGHBOR_SOLICIT = 135;
export const ICMPV6_NEIGHBOR_ADVERT = 136;

/** NA flags, in the first byte of the body (RFC 4861 §4.4): Router, Solicited, Override. */
export const NDP_FLAG_ROUTER = 0x80000000;
export const NDP_FLAG_SOLICITED = 0x40000000;
export const NDP_FLAG_OVERRIDE = 0x20000000;

/** NDP option types (RFC 4861 §4.6); the length field counts 8-byte units, 0 is invalid. */
export const NDP_OPT_SOURCE_LLADDR = 1;
export const NDP_OPT_TARGET_LLADDR = 2;
/** A link-layer address option for Ethernet: type, length 1, 6-byte MAC (RFC 2464 §8). */
export const NDP_LLADDR_OPT_LEN = 8;

// Icmpv6View.check results.
const OK = 0, TRUNCATED = 1;

/** 0 when buf[off, end) holds at least the 4-byte header; else 1. The type's own length is parse's question. */
export function icmpv6Check(buf: Uint8Array, off = 0, end = buf.length): number {
  return off >= 0 && end - off >= ICMPV6_HEADER_LEN ? OK : TRUNCATED;
}

/**
 * A view of the ICMPv6 message in buf[off, end). ICMPv6 has no length field: the message ends where the IPv6 payload
 * does, so the view is given its end (ipv6UpperLayer's `end`).
 */
export class Icmpv6View {
  constructor(public buf: Uint8Array, public off = 0, public end = buf.length) {}

  /** icmpv6Check, as a view method. */
  static check(buf: Uint8Array, off = 0, end = buf.length): number {
    return icmpv6Check(buf, off, end);
  }

  static checked(buf: Uint8Array, off = 0, end = buf.length): Icmpv6View {
    if (icmpv6Check(buf, off, end) !== OK) {
      throw new WireError(`ICMPv6 message at offset ${off}: need ${ICMPV6_HEADER_LEN} bytes, have ${Math.max(0, end - off)}`);
    }
    return new Icmpv6View(buf, off, end);
  }

  reset(buf: Uint8Array, off = 0, end = buf.length): this {
    this.buf = buf;
    this.off = off;
    this.end = end;
    return this;
  }

  /** Bytes of the message (header, body, options or data). */
  get length(): number { return this.end - this.off; }
  get type(): number { return this.buf[this.off + ICMPV6_FIELD.type]; }
  set type(v: number) { this.buf[this.off + ICMPV6_FIELD.type] = v; }
  get code(): number { return this.buf[this.off + ICMPV6_FIELD.code]; }
  set code(v: number) { this.buf[this.off + ICMPV6_FIELD.code] = v; }
  get checksum(): number { return readBe16(this.buf, this.off + ICMPV6_FIELD.checksum); }
  set checksum(v: number) { writeBe16(this.buf, this.off + ICMPV6_FIELD.checksum, v); }
  /** The 4-byte body as a u32 (NA flags live in its top 3 bits). */
  get body(): number { return readBe32(this.buf, this.off + ICMPV6_FIELD.body); }
  set body(v: number) { writeBe32(this.buf, this.off + ICMPV6_FIELD.body, v >>> 0); }
  get echoIdent(): number { return readBe16(this.buf, this.off + ICMPV6_FIELD.echoIdent); }
  set echoIdent(v: number) { writeBe16(this.buf, this.off + ICMPV6_FIELD.echoIdent, v); }
  get echoSeq(): number { return readBe16(this.buf, this.off + ICMPV6_FIELD.echoSeq); }
  set echoSeq(v: number) { writeBe16(this.buf, this.off + ICMPV6_FIELD.echoSeq, v); }
  get routerFlag(): boolean { return (this.body & NDP_FLAG_ROUTER) !== 0; }
  get solicitedFlag(): boolean { return (this.body & NDP_FLAG_SOLICITED) !== 0; }
  get overrideFlag(): boolean { return (this.body & NDP_FLAG_OVERRIDE) !== 0; }
  /** NS/NA target address (no copy). */
  get target(): Buffer { return bytesAt(this.buf, this.off + ICMPV6_FIELD.target, IPV6_ADDR_LEN); }
  set target(a: Uint8Array) { writeIpv6Addr(this.buf, this.off + ICMPV6_FIELD.target, a); }
  /** Where NS/NA options start. */
  get ndOptionsOffset(): number { return this.off + ICMPV6_FIELD.ND_LEN; }

  /** Folded sum of pseudo-header + message with the checksum field counted as 0. */
  private sumWithoutChecksum(src: Uint8Array, dst: Uint8Array): number {
    const c = this.off + ICMPV6_FIELD.checksum;
    const init = ipv6PseudoHeaderSum(src, dst, this.length, IPPROTO_ICMPV6);
    return onesSum(this.buf, c + 2, this.end, onesSum(this.buf, this.off, c, init));
  }

  /** Computes and writes the checksum over the pseudo-header (src, dst) and the message; 'bad' writes corruptChecksum() of it. */
  fillChecksum(src: Uint8Array, dst: Uint8Array, mode: 'good' | 'bad' = 'good'): void {
    const c = ~this.sumWithoutChecksum(src, dst) & 0xffff;
    this.checksum = mode === 'bad' ? corruptChecksum(c) : c;
  }

  /** The right checksum field value for this message between src and dst. */
  expectedChecksum(src: Uint8Array, dst: Uint8Array): number {
    return ~this.sumWithoutChecksum(src, dst) & 0xffff;
  }

  /** True when the checksum verifies; ICMPv6 has no "no checksum" (RFC 4443 §2.3). */
  verifyChecksum(src: Uint8Array, dst: Uint8Array): boolean {
    const init = ipv6PseudoHeaderSum(src, dst, this.length, IPPROTO_ICMPV6);
    return onesSum(this.buf, this.off, this.end, init) === 0xffff;
  }
}

/** Echo Request/Reply (RFC 4443 §4.1, §4.2). */
export interface Icmpv6EchoRepr {
  type: typeof ICMPV6_ECHO_REQUEST | typeof ICMPV6_ECHO_REPLY;
  ident: number;
  seq: number;
  data: Buffer;
}

/** Neighbor Solicitation (RFC 4861 §4.3): who has `target`; `lladdr` is the Source Link-Layer Address option. */
export interface NeighborSolicitRepr {
  type: typeof ICMPV6_NEIGHBOR_SOLICIT;
  target: Buffer;
  /** The asker's MAC; null when absent (it must be, when the IPv6 source is :: — DAD, §7.1.1). */
  lladdr: Buffer | null;
}

/** Neighbor Advertisement (RFC 4861 §4.4); `lladdr` is the Target Link-Layer Address option. */
export interface NeighborAdvertRepr {
  type: typeof ICMPV6_NEIGHBOR_ADVERT;
  router: boolean;
  /** Sent in answer to a Solicitation (the asker may mark the entry REACHABLE). */
  solicited: boolean;
  /** Replace a cached link-layer address (§7.2.5). */
  override: boolean;
  target: Buffer;
  lladdr: Buffer | null;
}

export type Icmpv6Repr = Icmpv6EchoRepr | NeighborSolicitRepr | NeighborAdvertRepr;

export interface Icmpv6ParseOptions {
  /** 'verify' (default): a wrong checksum is a WireError naming both values; 'ignore' reads the fields anyway. */
  checksum?: 'verify' | 'ignore';
}

export interface Icmpv6EmitOptions {
  /** 'good' (default) or 'bad' (corruptChecksum of the right value): a named, deliberate corruption. */
  checksum?: 'good' | 'bad';
}

/** The link-layer address option of `want` type among NS/NA options; a WireError for a malformed option list. */
function findLladdr(v: Icmpv6View, want: number): Buffer | null {
  let found: Buffer | null = null;
  for (let at = v.ndOptionsOffset; at < v.end;) {
    if (v.end - at < 2) throw new WireError(`NDP option at offset ${at}: need 2 bytes, have ${v.end - at}`);
    const type = v.buf[at];
    const len = v.buf[at + 1] * 8;
    // RFC 4861 §4.6: "Nodes MUST silently discard an ND packet that contains an option with length zero."
    if (len === 0) throw new WireError(`NDP option type ${type} at offset ${at}: length 0, expected 1 or more (8-byte units)`);
    if (v.end - at < len) throw new WireError(`NDP option type ${type} at offset ${at}: length ${len} runs past the ${v.end - at} bytes left`);
    if (type === want && found === null) {
      if (len !== NDP_LLADDR_OPT_LEN) throw new WireError(`NDP link-layer address option at offset ${at}: length ${len}, expected ${NDP_LLADDR_OPT_LEN} (Ethernet)`);
      found = Buffer.from(v.buf.subarray(at + 2, at + 2 + MAC_LEN));
    }
    at += len;
  }
  return found;
}

/** NS or NA (the two NDP messages), as opposed to Echo. */
export function isNdp(r: Icmpv6Repr): r is NeighborSolicitRepr | NeighborAdvertRepr {
  return r.type === ICMPV6_NEIGHBOR_SOLICIT || r.type === ICMPV6_NEIGHBOR_ADVERT;
}

const TYPES = 'Echo Request (128), Echo Reply (129), Neighbor Solicitation (135), Neighbor Advertisement (136)';

export const Icmpv6Repr = {
  /**
   * The message of a checked view sent from `src` to `dst` (the checksum is verified unless told to ignore it). Types
   * other than Echo and NS/NA, a nonzero NS/NA code (RFC 4861 §7.1), a short message and a malformed option list are
   * WireErrors naming the value.
   */
  parse(v: Icmpv6View, src: Uint8Array, dst: Uint8Array, o: Icmpv6ParseOptions = {}): Icmpv6Repr {
    const at = `ICMPv6 message at offset ${v.off}`;
    if ((o.checksum ?? 'verify') === 'verify' && !v.verifyChecksum(src, dst)) {
      throw new WireError(`${at}: checksum 0x${v.checksum.toString(16).padStart(4, '0')} is wrong, expected 0x${v.expectedChecksum(src, dst).toString(16).padStart(4, '0')} (from ${formatIpv6Addr(src)} to ${formatIpv6Addr(dst)})`);
    }
    const type = v.type;
    if (type === ICMPV6_ECHO_REQUEST || type === ICMPV6_ECHO_REPLY) {
      if (v.length < ICMPV6_FIELD.MIN_LEN) throw new WireError(`${at}: Echo of ${v.length} bytes, expected ${ICMPV6_FIELD.MIN_LEN} or more`);
      return { type, ident: v.echoIdent, seq: v.echoSeq, data: Buffer.from(v.buf.subarray(v.off + ICMPV6_FIELD.MIN_LEN, v.end)) };
    }
    if (type === ICMPV6_NEIGHBOR_SOLICIT || type === ICMPV6_NEIGHBOR_ADVERT) {
      if (v.length < ICMPV6_FIELD.ND_LEN) throw new WireError(`${at}: Neighbor ${type === ICMPV6_NEIGHBOR_SOLICIT ? 'Solicitation' : 'Advertisement'} of ${v.length} bytes, expected ${ICMPV6_FIELD.ND_LEN} or more`);
      if (v.code !== 0) throw new WireError(`${at}: type ${type} with code ${v.code}, expected 0 (RFC 4861 §7.1)`);
      const target = Buffer.from(v.target);
      if (type === ICMPV6_NEIGHBOR_SOLICIT) return { type, target, lladdr: findLladdr(v, NDP_OPT_SOURCE_LLADDR) };
      return {
        type, router: v.routerFlag, solicited: v.solicitedFlag, override: v.overrideFlag, target,
        lladdr: findLladdr(v, NDP_OPT_TARGET_LLADDR),
      };
    }
    throw new WireError(`${at}: type ${type} is not one rawpoll reads; expected ${TYPES}`);
  },

  /** Writes the message and its checksum over the pseudo-header (src, dst); the view's end must be where bufferLen says. */
  emit(r: Icmpv6Repr, v: Icmpv6View, src: Uint8Array, dst: Uint8Array, o: Icmpv6EmitOptions = {}): void {
    const len = Icmpv6Repr.bufferLen(r);
    need(v.buf, v.off, len, 'ICMPv6 message');
    v.end = v.off + len;
    v.type = r.type;
    v.code = 0;
    if (!isNdp(r)) {
      v.echoIdent = inRange(r.ident, 0, 0xffff, 'ICMPv6 Echo identifier');
      v.echoSeq = inRange(r.seq, 0, 0xffff, 'ICMPv6 Echo sequence number');
      v.buf.set(r.data, v.off + ICMPV6_FIELD.MIN_LEN);
    } else {
      v.body = r.type === ICMPV6_NEIGHBOR_ADVERT
        ? (r.router ? NDP_FLAG_ROUTER : 0) | (r.solicited ? NDP_FLAG_SOLICITED : 0) | (r.override ? NDP_FLAG_OVERRIDE : 0)
        : 0;
      v.target = r.target;
      if (r.lladdr) {
        const at = v.ndOptionsOffset;
        v.buf[at] = r.type === ICMPV6_NEIGHBOR_SOLICIT ? NDP_OPT_SOURCE_LLADDR : NDP_OPT_TARGET_LLADDR;
        v.buf[at + 1] = NDP_LLADDR_OPT_LEN / 8;
        writeMac(v.buf, at + 2, r.lladdr);
      }
    }
    v.fillChecksum(src, dst, o.checksum);
  },

  /** Bytes emit writes: the whole message (ICMPv6 is the last layer). */
  bufferLen(r: Icmpv6Repr): number {
    if (!isNdp(r)) return ICMPV6_FIELD.MIN_LEN + r.data.length;
    return ICMPV6_FIELD.ND_LEN + (r.lladdr ? NDP_LLADDR_OPT_LEN : 0);
  },
};

/** Icmpv6Repr.parse of the message in buf[off, end) sent from src to dst. */
export function parseIcmpv6(buf: Uint8Array, off: number, end: number, src: Uint8Array, dst: Uint8Array, o: Icmpv6ParseOptions = {}): Icmpv6Repr {
  return Icmpv6Repr.parse(Icmpv6View.checked(buf, off, end), src, dst, o);
}

/** Icmpv6Repr.emit at buf[off]. Returns the message length. */
export function emitIcmpv6(r: Icmpv6Repr, buf: Uint8Array, off: number, src: Uint8Array, dst: Uint8Array, o: Icmpv6EmitOptions = {}): number {
  Icmpv6Repr.emit(r, new Icmpv6View(buf, off), src, dst, o);
  return Icmpv6Repr.bufferLen(r);
}

/** "NS who-has fd00::2 from 02:…" — for logs and test messages. */
export function describeNdp(r: NeighborSolicitRepr | NeighborAdvertRepr): string {
  const ll = r.lladdr ? ` lladdr ${formatMac(r.lladdr)}` : '';
  if (r.type === ICMPV6_NEIGHBOR_SOLICIT) return `neighbor solicitation for ${formatIpv6Addr(r.target)}${ll}`;
  const flags = `${r.router ? 'R' : ''}${r.solicited ? 'S' : ''}${r.override ? 'O' : ''}` || 'none';
  return `neighbor advertisement ${formatIpv6Addr(r.target)} flags ${flags}${ll}`;
}
