/**
 * UDP header (RFC 768), the layer netpoll's push_udp writes. A view over bytes (UdpView) and a plain representation
 * (UdpRepr) with symmetrical parse/emit, after smoltcp's src/wire/udp.rs. No I/O.
 */
import { addWords, bytesAt, corruptChecksum, onesSum, readBe16, writeBe16 } from './checksum.js';
import { inRange, need, WireError } from './error.js';
import { IPPROTO_UDP } from './ipv4.js';
import { ipv6PseudoHeaderSum } from './ipv6.js';

/** Field offsets from the start of the UDP header, all u16 big-endian. */
export const UDP_FIELD = {
  srcPort: 0,
  dstPort: 2,
  /** Header + payload. */
  length: 4,
  /** Over pseudo-header + header + payload; 0 = "no checksum" (IPv4 only). */
  checksum: 6,
  HEADER_LEN: 8,
} as const;
export const UDP_HEADER_LEN = UDP_FIELD.HEADER_LEN;

/**
 * The checksum field value for a computed UDP checksum `c`: a computed 0 goes out as 0xffff, because 0 on the wire
 * means "no checksum" (RFC 768; netpoll and the kernel's udp4_hwcsum/csum_tcpudp_magic users do the same).
 */
export function finishUdpChecksum(c: number): number {
  return c === 0 ? 0xffff : c;
}

/** Folded sum of the IPv4 pseudo-header: src, dst, zero/protocol, UDP length. */
export function pseudoHeaderSum(src: number, dst: number, udpLength: number): number {
  return addWords(0, src >>> 0, dst >>> 0, IPPROTO_UDP, udpLength);
}

/** Folded sum of pseudo-header + datagram buf[off, off+len) with the checksum field counted as 0. */
function datagramSum(buf: Uint8Array, off: number, len: number, src: number, dst: number): number {
  const c = off + UDP_FIELD.checksum;
  return onesSum(buf, c + 2, off + len, onesSum(buf, off, c, pseudoHeaderSum(src, dst, len)));
}

/** What the checksum field ends up holding for `mode` (the payload already in place): the one place the rules meet. */
function udpChecksumField(buf: Uint8Array, off: number, len: number, src: number, dst: number, mode: UdpChecksumMode): number {
  if (mode === 'none') return 0;
  const c = finishUdpChecksum(~datagramSum(buf, off, len, src, dst) & 0xffff);
  return mode === 'bad' ? corruptChecksum(c) : c;
}

export type UdpChecksumMode = 'good' | 'bad' | 'none';

// UdpView.check results.
const OK = 0, TRUNCATED = 1, LENGTH_TOO_SHORT = 2, LENGTH_PAST_END = 3;

/**
 * 0 when buf[off, end) holds the whole datagram its length field describes (8 <= length <= end - off); else a
 * nonzero code. `end` is where the IP payload ends (not the frame: Ethernet pads). Allocation-free, for hot paths.
 */
export function udpCheck(buf: Uint8Array, off = 0, end = buf.length): number {
  if (off < 0 || end - off < UDP_HEADER_LEN) return TRUNCATED;
  const len = readBe16(buf, off + UDP_FIELD.length);
  if (len < UDP_HEADER_LEN) return LENGTH_TOO_SHORT;
  if (end - off < len) return LENGTH_PAST_END;
  return OK;
}

export class UdpView {
  constructor(public buf: Uint8Array, public off = 0) {}

  /** udpCheck, as a view method. */
  static check(buf: Uint8Array, off = 0, end = buf.length): number {
    return udpCheck(buf, off, end);
  }

  /** A view after check(); a WireError naming the bad length otherwise. */
  static checked(buf: Uint8Array, off = 0, end = buf.length): UdpView {
    const c = UdpView.check(buf, off, end);
    if (c !== OK) {
      const at = `UDP header at offset ${off}`;
      const room = Math.max(0, end - off);
      throw new WireError(c === TRUNCATED ? `${at}: need ${UDP_HEADER_LEN} bytes, have ${room}`
        : c === LENGTH_TOO_SHORT ? `${at}: length ${readBe16(buf, off + UDP_FIELD.length)} is less than the ${UDP_HEADER_LEN}-byte header`
        : `${at}: length ${readBe16(buf, off + UDP_FIELD.length)} runs past the ${room} bytes there`);
    }
    return new UdpView(buf, off);
  }

  reset(buf: Uint8Array, off = 0): this {
    this.buf = buf;
    this.off = off;
    return this;
  }

  get srcPort(): number { return readBe16(this.buf, this.off + UDP_FIELD.srcPort); }
  set srcPort(v: number) { writeBe16(this.buf, this.off + UDP_FIELD.srcPort, v); }
  get dstPort(): number { return readBe16(this.buf, this.off + UDP_FIELD.dstPort); }
  set dstPort(v: number) { writeBe16(this.buf, this.off + UDP_FIELD.dstPort, v); }
  get length(): number { return readBe16(this.buf, this.off + UDP_FIELD.length); }
  set length(v: number) { writeBe16(this.buf, this.off + UDP_FIELD.length, v); }
  get checksum(): number { return readBe16(this.buf, this.off + UDP_FIELD.checksum); }
  set checksum(v: number) { writeBe16(this.buf, this.off + UDP_FIELD.checksum, v); }
  get payloadOffset(): number { return this.off + UDP_HEADER_LEN; }
  /** The payload as the length field bounds it (no copy). */
  get payload(): Buffer { return bytesAt(this.buf, this.off + UDP_HEADER_LEN, this.length - UDP_HEADER_LEN); }

  /** Computes and writes the checksum over pseudo-header + header + payload: 'good', 'bad' (corruptChecksum), 'none' (0). */
  fillChecksum(src: number, dst: number, mode: UdpChecksumMode = 'good'): void {
    this.checksum = udpChecksumField(this.buf, this.off, this.length, src, dst, mode);
  }

  /** True when the checksum verifies, or is 0 (the sender chose none, legal over IPv4). */
  verifyChecksum(src: number, dst: number): boolean {
    return udpChecksumOk(this.buf, this.off, this.length, src, dst);
  }
}

/** What the header says. `length` counts header + payload: the payload is written in place, as netpoll does. */
export interface UdpRepr {
  srcPort: number;
  dstPort: number;
  length: number;
}

export interface UdpEmitOptions {
  /** 'good' (default), 'bad' (corruptChecksum of the right value, for NIC/peer validation), 'none' (field 0, legal over IPv4). */
  udpChecksum?: UdpChecksumMode;
}

export const UdpRepr = {
  /** Fields of a checked view; the checksum is not part of the repr (UdpView.verifyChecksum checks it). */
  parse(v: UdpView): UdpRepr {
    return { srcPort: v.srcPort, dstPort: v.dstPort, length: v.length };
  },
  /**
   * Writes the header in front of a payload already at off+8 (netpoll's push_udp), then the checksum over the
   * IPv4 pseudo-header (src, dst). Ports or a length outside their range are a WireError naming them.
   */
  emit(r: UdpRepr, v: UdpView, src: number, dst: number, o: UdpEmitOptions = {}): void {
    inRange(r.length, UDP_HEADER_LEN, 0xffff, 'UDP length');
    need(v.buf, v.off, r.length, 'UDP datagram');
    v.srcPort = inRange(r.srcPort, 0, 0xffff, 'UDP source port');
    v.dstPort = inRange(r.dstPort, 0, 0xffff, 'UDP destination port');
    v.length = r.length;
    v.fillChecksum(src, dst, o.udpChecksum);
  },
  /** Bytes emit covers: header + payload. */
  bufferLen(r: UdpRepr): number {
    return r.length;
  },
};

/** Header fields at buf[off] (a checked view), plus the checksum field as found. */
export function parseUdp(buf: Uint8Array, off = 0): UdpRepr & { checksum: number } {
  const v = UdpView.checked(buf, off);
  return { ...UdpRepr.parse(v), checksum: v.checksum };
}

/** The right checksum field value for buf[udpOff, udpOff+udpLength) (finishUdpChecksum applied; the field itself is not summed). */
export function udpChecksum(buf: Uint8Array, udpOff: number, udpLength: number, src: number, dst: number): number {
  return udpChecksumField(buf, udpOff, udpLength, src, dst, 'good');
}

export function udpChecksumOk(buf: Uint8Array, udpOff: number, udpLength: number, src: number, dst: number): boolean {
  if (readBe16(buf, udpOff + UDP_FIELD.checksum) === 0) return true; // sender chose no checksum
  return onesSum(buf, udpOff, udpOff + udpLength, pseudoHeaderSum(src, dst, udpLength)) === 0xffff;
}

/** UdpRepr.emit at buf[off]. Returns the header length. */
export function emitUdp(r: UdpRepr, buf: Uint8Array, off: number, src: number, dst: number, o: UdpEmitOptions = {}): number {
  UdpRepr.emit(r, new UdpView(buf, off), src, dst, o);
  return UDP_HEADER_LEN;
}

// --- UDP over IPv6 (RFC 8200 §8.1) ------------------------------------------------------------------------------------
// The same header; the checksum covers the IPv6 pseudo-header (16-byte addresses, 32-bit length) and is mandatory:
// 0 on the wire is not "no checksum" but a datagram the receiver discards (RFC 8200 §8.1; RFC 6935's tunnel exception
// is not netpoll's business). A computed 0 still goes out as 0xffff, as over IPv4.

/** Modes over IPv6: no 'none' (a zero checksum is refused by emit, naming why). */
export type Udp6ChecksumMode = 'good' | 'bad';

function udp6Field(buf: Uint8Array, off: number, len: number, src: Uint8Array, dst: Uint8Array, mode: UdpChecksumMode): number {
  if (mode === 'none') {
    throw new WireError('UDP over IPv6 without a checksum: RFC 8200 §8.1 makes it mandatory (a receiver discards a zero one); expected good or bad');
  }
  const c = off + UDP_FIELD.checksum;
  const sum = onesSum(buf, c + 2, off + len, onesSum(buf, off, c, ipv6PseudoHeaderSum(src, dst, len, IPPROTO_UDP)));
  const f = finishUdpChecksum(~sum & 0xffff);
  return mode === 'bad' ? corruptChecksum(f) : f;
}

/** The right checksum field value for buf[udpOff, udpOff+udpLength) between IPv6 src and dst (0 goes out as 0xffff). */
export function udp6Checksum(buf: Uint8Array, udpOff: number, udpLength: number, src: Uint8Array, dst: Uint8Array): number {
  return udp6Field(buf, udpOff, udpLength, src, dst, 'good');
}

/** True when the checksum verifies over the IPv6 pseudo-header; a zero field is false (mandatory over IPv6). */
export function udp6ChecksumOk(buf: Uint8Array, udpOff: number, udpLength: number, src: Uint8Array, dst: Uint8Array): boolean {
  if (readBe16(buf, udpOff + UDP_FIELD.checksum) === 0) return false;
  return onesSum(buf, udpOff, udpOff + udpLength, ipv6PseudoHeaderSum(src, dst, udpLength, IPPROTO_UDP)) === 0xffff;
}

/** UdpView.fillChecksum over IPv6: 'good' or 'bad'; 'none' is a WireError. */
export function fillUdp6Checksum(v: UdpView, src: Uint8Array, dst: Uint8Array, mode: UdpChecksumMode = 'good'): void {
  v.checksum = udp6Field(v.buf, v.off, v.length, src, dst, mode);
}

/** UdpRepr.emit over IPv6: the header in front of a payload already at off+8, then the checksum (src, dst 16 bytes). */
export function emitUdp6(r: UdpRepr, buf: Uint8Array, off: number, src: Uint8Array, dst: Uint8Array, o: UdpEmitOptions = {}): number {
  inRange(r.length, UDP_HEADER_LEN, 0xffff, 'UDP length');
  need(buf, off, r.length, 'UDP datagram');
  const v = new UdpView(buf, off);
  v.srcPort = inRange(r.srcPort, 0, 0xffff, 'UDP source port');
  v.dstPort = inRange(r.dstPort, 0, 0xffff, 'UDP destination port');
  v.length = r.length;
  fillUdp6Checksum(v, src, dst, o.udpChecksum);
  return UDP_HEADER_LEN;
}
