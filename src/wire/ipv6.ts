/**
 * IPv6 (RFC 8200): the 40-byte fixed header as a view over bytes (Ipv6View: named offsets, a length check first,
 * getters/setters) and a plain representation (Ipv6Repr) with symmetrical parse/emit, after smoltcp's
 * src/wire/ipv6.rs; a walk over the extension headers a datagram may carry before its upper layer (Hop-by-Hop,
 * Routing, Fragment, Destination Options, AH), refusing what cannot be skipped with a WireError naming it; the
 * pseudo-header sum ICMPv6 and UDP checksums start from (§8.1); and the addresses: text through ipaddr.js,
 * solicited-node multicast (RFC 4291 §2.7.1) and the Ethernet multicast MAC (RFC 2464 §7). No I/O.
 *
 * Addresses travel as 16-byte Buffers (network order): the bytes the header holds, compared with .equals().
 */
import ipaddr from 'ipaddr.js';
import { AddressError } from './addr.js';
import { addWords, bytesAt, onesSum, readBe16, readBe32, writeBe16, writeBe32 } from './checksum.js';
import { inRange, need, WireError } from './error.js';
import { MAC_LEN } from './mac.js';

/** Field offsets from the start of the fixed header. */
export const IPV6_FIELD = {
  /** u32: version (4 bits, 6), traffic class (8 bits: DSCP and ECN), flow label (20 bits). */
  verTcFlow: 0,
  /** u16: bytes after the fixed header (extension headers + upper layer). */
  payloadLength: 4,
  /** u8: the first extension header's type, or the upper-layer protocol (IPPROTO_* numbers). */
  nextHeader: 6,
  /** u8: IPv4's TTL. NDP requires 255 (RFC 4861 §7.1.1: proof the sender is on-link). */
  hopLimit: 7,
  /** 16 bytes each. */
  src: 8,
  dst: 24,
  HEADER_LEN: 40,
} as const;
export const IPV6_HEADER_LEN = IPV6_FIELD.HEADER_LEN;
export const IPV6_ADDR_LEN = 16;
/** Every IPv6 link carries at least this MTU (RFC 8200 §5). */
export const IPV6_MIN_MTU = 1280;

/** Next Header values (IANA "Assigned Internet Protocol Numbers"). */
export const IPV6_NH = {
  HOP_BY_HOP: 0,
  TCP: 6,
  UDP: 17,
  ROUTING: 43,
  FRAGMENT: 44,
  ESP: 50,
  AH: 51,
  ICMPV6: 58,
  NO_NEXT: 59,
  DEST_OPTS: 60,
} as const;
export const IPPROTO_ICMPV6 = IPV6_NH.ICMPV6;

const VERSION_SHIFT = 28;
const TC_SHIFT = 20;
const FLOW_MASK = 0xfffff;

// Ipv6View.check results.
const OK = 0, TRUNCATED = 1, VERSION = 2, PAYLOAD_PAST_END = 3;

/**
 * 0 when buf[off, end) holds a whole IPv6 datagram as its fixed header describes it (version 6, 40 bytes, the payload
 * length inside the range); else a nonzero code. Allocation-free, for hot paths.
 */
export function ipv6Check(buf: Uint8Array, off = 0, end = buf.length): number {
  const room = end - off;
  if (off < 0 || room < IPV6_HEADER_LEN) return TRUNCATED;
  if (buf[off] >>> 4 !== 6) return VERSION;
  if (room - IPV6_HEADER_LEN < readBe16(buf, off + IPV6_FIELD.payloadLength)) return PAYLOAD_PAST_END;
  return OK;
}

export class Ipv6View {
  constructor(public buf: Uint8Array, public off = 0) {}

  /** ipv6Check, as a view method. */
  static check(buf: Uint8Array, off = 0, end = buf.length): number {
    return ipv6Check(buf, off, end);
  }

  /** A view after check(); a WireError naming the bad field and what would be valid otherwise. */
  static checked(buf: Uint8Array, off = 0, end = buf.length): Ipv6View {
    const c = ipv6Check(buf, off, end);
    if (c !== OK) {
      const at = `IPv6 header at offset ${off}`;
      const room = Math.max(0, end - off);
      throw new WireError(c === TRUNCATED ? `${at}: need ${IPV6_HEADER_LEN} bytes, have ${room}`
        : c === VERSION ? `${at}: version ${buf[off] >>> 4}, expected 6`
        : `${at}: payload length ${readBe16(buf, off + IPV6_FIELD.payloadLength)} runs past the ${room - IPV6_HEADER_LEN} bytes after the header`);
    }
    return new Ipv6View(buf, off);
  }

  reset(buf: Uint8Array, off = 0): this {
    this.buf = buf;
    this.off = off;
    return this;
  }

  private get word0(): number { return readBe32(this.buf, this.off + IPV6_FIELD.verTcFlow); }
  private set word0(v: number) { writeBe32(this.buf, this.off + IPV6_FIELD.verTcFlow, v >>> 0); }
  get version(): number { return this.word0 >>> VERSION_SHIFT; }
  set version(v: number) { this.word0 = ((v & 15) << VERSION_SHIFT) | (this.word0 & 0x0fffffff); }
  /** DSCP (high 6 bits) and ECN (low 2), IPv4's TOS byte. */
  get trafficClass(): number { return (this.word0 >>> TC_SHIFT) & 0xff; }
  set trafficClass(v: number) { this.word0 = (this.word0 & ~(0xff << TC_SHIFT)) | ((v & 0xff) << TC_SHIFT); }
  get flowLabel(): number { return this.word0 & FLOW_MASK; }
  set flowLabel(v: number) { this.word0 = (this.word0 & ~FLOW_MASK) | (v & FLOW_MASK); }
  get payloadLength(): number { return readBe16(this.buf, this.off + IPV6_FIELD.payloadLength); }
  set payloadLength(v: number) { writeBe16(this.buf, this.off + IPV6_FIELD.payloadLength, v); }
  get nextHeader(): number { return this.buf[this.off + IPV6_FIELD.nextHeader]; }
  set nextHeader(v: number) { this.buf[this.off + IPV6_FIELD.nextHeader] = v; }
  get hopLimit(): number { return this.buf[this.off + IPV6_FIELD.hopLimit]; }
  set hopLimit(v: number) { this.buf[this.off + IPV6_FIELD.hopLimit] = v; }
  /** The 16 bytes in the datagram (no copy). */
  get src(): Buffer { return bytesAt(this.buf, this.off + IPV6_FIELD.src, IPV6_ADDR_LEN); }
  set src(a: Uint8Array) { writeIpv6Addr(this.buf, this.off + IPV6_FIELD.src, a); }
  get dst(): Buffer { return bytesAt(this.buf, this.off + IPV6_FIELD.dst, IPV6_ADDR_LEN); }
  set dst(a: Uint8Array) { writeIpv6Addr(this.buf, this.off + IPV6_FIELD.dst, a); }
  /** Where the payload (the first extension header, or the upper layer) starts. */
  get payloadOffset(): number { return this.off + IPV6_HEADER_LEN; }
  /** Where the datagram ends as the payload length says (Ethernet may pad beyond it). */
  get end(): number { return this.off + IPV6_HEADER_LEN + this.payloadLength; }
}

/** What the fixed header says. There is no header checksum in IPv6 (the upper layers' pseudo-header covers it). */
export interface Ipv6Repr {
  trafficClass: number;
  flowLabel: number;
  /** Bytes after the 40-byte header. */
  payloadLength: number;
  nextHeader: number;
  hopLimit: number;
  src: Buffer;
  dst: Buffer;
}

export const Ipv6Repr = {
  /** Fields of a checked view; the addresses are copies (the repr outlives the frame). */
  parse(v: Ipv6View): Ipv6Repr {
    return {
      trafficClass: v.trafficClass, flowLabel: v.flowLabel, payloadLength: v.payloadLength, nextHeader: v.nextHeader,
      hopLimit: v.hopLimit, src: Buffer.from(v.src), dst: Buffer.from(v.dst),
    };
  },
  /** Writes the 40-byte fixed header; a field outside its range is a WireError naming it. */
  emit(r: Ipv6Repr, v: Ipv6View): void {
    need(v.buf, v.off, IPV6_HEADER_LEN, 'IPv6 header');
    inRange(r.trafficClass, 0, 0xff, 'IPv6 traffic class');
    inRange(r.flowLabel, 0, FLOW_MASK, 'IPv6 flow label');
    writeBe32(v.buf, v.off + IPV6_FIELD.verTcFlow, ((6 << VERSION_SHIFT) | (r.trafficClass << TC_SHIFT) | r.flowLabel) >>> 0);
    v.payloadLength = inRange(r.payloadLength, 0, 0xffff, 'IPv6 payload length');
    v.nextHeader = inRange(r.nextHeader, 0, 0xff, 'IPv6 next header');
    v.hopLimit = inRange(r.hopLimit, 0, 0xff, 'IPv6 hop limit');
    v.src = r.src;
    v.dst = r.dst;
  },
  /** Bytes emit writes (the fixed header; extension headers and payload are the next layers'). */
  bufferLen(): number {
    return IPV6_HEADER_LEN;
  },
};

/** parse of a checked view (as parseIpv4Header for IPv4). */
export function parseIpv6Header(buf: Uint8Array, off = 0, end = buf.length): Ipv6Repr {
  return Ipv6Repr.parse(Ipv6View.checked(buf, off, end));
}

/** Ipv6Repr.emit at buf[off]. Returns the header length. */
export function emitIpv6(r: Ipv6Repr, buf: Uint8Array, off = 0): number {
  Ipv6Repr.emit(r, new Ipv6View(buf, off));
  return IPV6_HEADER_LEN;
}

// --- extension headers -----------------------------------------------------------------------------------------------

/** One extension header passed on the way to the upper layer. */
export interface Ipv6Extension {
  /** Its type: the Next Header value that announced it (IPV6_NH.*). */
  type: number;
  offset: number;
  /** Bytes, all of it. */
  length: number;
}

/** The Fragment header's fields (RFC 8200 §4.5). */
export interface Ipv6FragmentInfo {
  /** In bytes, a multiple of 8. */
  offset: number;
  /** The M flag: more pieces follow. */
  more: boolean;
  id: number;
}

export interface Ipv6UpperLayer {
  /** The upper-layer protocol (58 ICMPv6, 17 UDP, …; 59 "no next header": nothing follows). */
  protocol: number;
  /** Where it starts, and where the datagram ends (the payload length's end, not the frame's). */
  offset: number;
  end: number;
  extensions: Ipv6Extension[];
  /** Set when a Fragment header was passed: this is the first piece, the upper layer's bytes are incomplete. */
  fragment: Ipv6FragmentInfo | null;
}

const EXT_NAMES: Record<number, string> = {
  [IPV6_NH.HOP_BY_HOP]: 'Hop-by-Hop Options', [IPV6_NH.ROUTING]: 'Routing', [IPV6_NH.FRAGMENT]: 'Fragment',
  [IPV6_NH.DEST_OPTS]: 'Destination Options', [IPV6_NH.AH]: 'Authentication',
};
const FRAGMENT_HEADER_LEN = 8;
const FRAG_M = 1;

/**
 * Walks a checked datagram's extension headers to its upper layer: Hop-by-Hop (only first, RFC 8200 §4.1), Routing,
 * Destination Options (length in 8-byte units after the first 8) and AH (RFC 4302: 4-byte units, plus 2) are skipped;
 * a Fragment header is skipped when this is the first piece (offset 0: the upper-layer header is here) and reported in
 * `fragment`. Refused with a WireError that names why: a header running past the datagram, Hop-by-Hop not first, a
 * later fragment (its upper-layer header is in the first piece; rawpoll does not reassemble), and a jumbogram (payload
 * length 0 behind Hop-by-Hop, RFC 2675). Any other Next Header value is the upper layer.
 */
export function ipv6UpperLayer(buf: Uint8Array, off = 0, end = buf.length): Ipv6UpperLayer {
  const v = Ipv6View.checked(buf, off, end);
  const stop = v.end;
  let nh = v.nextHeader;
  let at = v.payloadOffset;
  const extensions: Ipv6Extension[] = [];
  let fragment: Ipv6FragmentInfo | null = null;
  if (v.payloadLength === 0 && nh === IPV6_NH.HOP_BY_HOP) {
    throw new WireError(`IPv6 datagram at offset ${off}: payload length 0 behind Hop-by-Hop Options is a jumbogram (RFC 2675), not supported: expected a payload length of 1-65535`);
  }
  for (;;) {
    const name = EXT_NAMES[nh];
    if (name === undefined) return { protocol: nh, offset: at, end: stop, extensions, fragment };
    if (nh === IPV6_NH.HOP_BY_HOP && extensions.length > 0) {
      throw new WireError(`IPv6 datagram at offset ${off}: Hop-by-Hop Options at offset ${at} after ${extensions.length} other extension header(s): it must come first (RFC 8200 §4.1)`);
    }
    if (stop - at < 8) {
      throw new WireError(`IPv6 ${name} header at offset ${at}: need 8 bytes, have ${Math.max(0, stop - at)} before the datagram's end`);
    }
    let len: number;
    if (nh === IPV6_NH.FRAGMENT) {
      len = FRAGMENT_HEADER_LEN;
      const w = readBe16(buf, at + 2);
      const f = { offset: w & ~7, more: (w & FRAG_M) !== 0, id: readBe32(buf, at + 4) };
      if (f.offset !== 0) {
        throw new WireError(`IPv6 fragment at offset ${at} (id 0x${f.id.toString(16).padStart(8, '0')}, fragment offset ${f.offset}${f.more ? ', more follow' : ', the last'}): not the first piece, so its upper-layer header is elsewhere; rawpoll does not reassemble`);
      }
      fragment = f;
    } else if (nh === IPV6_NH.AH) {
      len = (buf[at + 1] + 2) * 4;
    } else {
      len = (buf[at + 1] + 1) * 8;
    }
    if (stop - at < len) {
      throw new WireError(`IPv6 ${name} header at offset ${at}: length ${len} runs past the ${stop - at} bytes left in the datagram`);
    }
    extensions.push({ type: nh, offset: at, length: len });
    nh = buf[at];
    at += len;
  }
}

// --- the pseudo-header -----------------------------------------------------------------------------------------------

/**
 * Folded sum of the IPv6 pseudo-header (RFC 8200 §8.1): source, destination, upper-layer packet length (32 bits),
 * three zero bytes and the next header (the upper layer's, not the first extension header's).
 */
export function ipv6PseudoHeaderSum(src: Uint8Array, dst: Uint8Array, upperLength: number, nextHeader: number): number {
  const s = onesSum(dst, 0, IPV6_ADDR_LEN, onesSum(src, 0, IPV6_ADDR_LEN));
  return addWords(s, upperLength >>> 0, nextHeader);
}

// --- addresses -------------------------------------------------------------------------------------------------------

export const IPV6_UNSPECIFIED: Buffer = Buffer.alloc(IPV6_ADDR_LEN);
/** ff02::1, all nodes on the link. */
export const IPV6_ALL_NODES: Buffer = Buffer.from('ff020000000000000000000000000001', 'hex');

/** Writes a 16-byte address into buf at off; anything else is a WireError naming its length. */
export function writeIpv6Addr(buf: Uint8Array, off: number, a: Uint8Array): void {
  if (a.length !== IPV6_ADDR_LEN) throw new WireError(`IPv6 address of ${a.length} bytes: expected ${IPV6_ADDR_LEN}`);
  buf.set(a, off);
}

/**
 * IPv6 address text (RFC 4291 §2.2, any form ipaddr.js reads, "::ffff:1.2.3.4" included) → 16 bytes. A zone
 * ("fe80::1%eth1") is refused here: the caller that knows the interface strips and checks it (splitIpv6Zone).
 */
export function parseIpv6Addr(s: string, what: string): Buffer {
  const t = String(s).trim();
  if (t.includes('%')) throw new AddressError(`bad ${what} '${s}': a zone (%IF) is not taken here; the interface is -i`);
  if (!ipaddr.IPv6.isValid(t)) {
    throw new AddressError(`bad ${what} '${s}': expected an IPv6 address like fd00::2 or fe80::1`);
  }
  return Buffer.from(ipaddr.IPv6.parse(t).toByteArray());
}

/** "fe80::1%eth1" → { addr: "fe80::1", zone: "eth1" }; no '%', no zone. */
export function splitIpv6Zone(s: string): { addr: string; zone?: string } {
  const t = String(s).trim();
  const i = t.indexOf('%');
  return i < 0 ? { addr: t } : { addr: t.slice(0, i), zone: t.slice(i + 1) };
}

/** 16 bytes → RFC 5952 text (lower case, the longest run of zero words as '::'). */
export function formatIpv6Addr(a: Uint8Array, off = 0): string {
  return (ipaddr.fromByteArray(Array.from(a.subarray(off, off + IPV6_ADDR_LEN))) as ipaddr.IPv6).toRFC5952String();
}

export function isIpv6Multicast(a: Uint8Array): boolean {
  return a[0] === 0xff;
}

/** fe80::/10 (RFC 4291 §2.5.6): valid only on one link, so a target of this kind needs the interface named. */
export function isIpv6LinkLocal(a: Uint8Array): boolean {
  return a[0] === 0xfe && (a[1] & 0xc0) === 0x80;
}

export function isIpv6Unspecified(a: Uint8Array): boolean {
  return IPV6_UNSPECIFIED.equals(a);
}

/** ff02::1:ffXX:XXXX with the address's low 24 bits (RFC 4291 §2.7.1): where a Neighbor Solicitation for it goes. */
export function solicitedNodeAddr(a: Uint8Array): Buffer {
  if (a.length !== IPV6_ADDR_LEN) throw new WireError(`IPv6 address of ${a.length} bytes: expected ${IPV6_ADDR_LEN}`);
  const m = Buffer.from('ff0200000000000000000001ff000000', 'hex');
  m[13] = a[13];
  m[14] = a[14];
  m[15] = a[15];
  return m;
}

/** 33:33 and the group's low 32 bits (RFC 2464 §7): the Ethernet destination of an IPv6 multicast datagram. */
export function ipv6MulticastMac(group: Uint8Array): Buffer {
  if (!isIpv6Multicast(group)) throw new WireError(`IPv6 address ${formatIpv6Addr(group)} is not multicast: expected ff00::/8`);
  const mac = Buffer.alloc(MAC_LEN);
  mac[0] = 0x33;
  mac[1] = 0x33;
  mac.set(group.subarray(12, 16), 2);
  return mac;
}
