import { addWords, onesSum } from './checksum.js';
import { need } from './error.js';
import { IPPROTO_UDP } from './ipv4.js';

/** UDP header (RFC 768), all u16 big-endian. */
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

export interface UdpRepr {
  srcPort: number;
  dstPort: number;
  length: number;
  checksum: number;
}

export function parseUdp(buf: Uint8Array, off = 0): UdpRepr {
  need(buf, off, UDP_HEADER_LEN, 'UDP header');
  return {
    srcPort: (buf[off] << 8) | buf[off + 1],
    dstPort: (buf[off + 2] << 8) | buf[off + 3],
    length: (buf[off + 4] << 8) | buf[off + 5],
    checksum: (buf[off + 6] << 8) | buf[off + 7],
  };
}

/** Folded sum of the IPv4 pseudo-header: src, dst, zero/protocol, UDP length. */
export function pseudoHeaderSum(src: number, dst: number, udpLength: number): number {
  return addWords(0, src >>> 0, dst >>> 0, IPPROTO_UDP, udpLength);
}

/**
 * The UDP checksum over pseudo-header + header + payload (checksum field must hold 0 while summing).
 * A computed 0 is sent as 0xffff: 0 on the wire means "no checksum" (RFC 768; netpoll does the same).
 */
export function udpChecksum(buf: Uint8Array, udpOff: number, udpLength: number, src: number, dst: number): number {
  const c = ~onesSum(buf, udpOff, udpOff + udpLength, pseudoHeaderSum(src, dst, udpLength)) & 0xffff;
  return c === 0 ? 0xffff : c;
}

export function udpChecksumOk(buf: Uint8Array, udpOff: number, udpLength: number, src: number, dst: number): boolean {
  const stored = (buf[udpOff + 6] << 8) | buf[udpOff + 7];
  if (stored === 0) return true; // sender chose no checksum
  return (~onesSum(buf, udpOff, udpOff + udpLength, pseudoHeaderSum(src, dst, udpLength)) & 0xffff) === 0;
}

export interface UdpEmitOptions {
  /** 'good' (default), 'bad' (off by one, for NIC/peer validation), 'none' (field 0, legal over IPv4). */
  udpChecksum?: 'good' | 'bad' | 'none';
}

/** Writes the header in front of a payload already at off+8, then the checksum over the pseudo-header. */
export function emitUdp(r: Omit<UdpRepr, 'checksum'>, buf: Buffer, off: number, src: number, dst: number, o: UdpEmitOptions = {}): number {
  need(buf, off, r.length, 'UDP datagram');
  buf.writeUInt16BE(r.srcPort, off);
  buf.writeUInt16BE(r.dstPort, off + 2);
  buf.writeUInt16BE(r.length, off + 4);
  buf.writeUInt16BE(0, off + 6);
  if (o.udpChecksum !== 'none') {
    let c = udpChecksum(buf, off, r.length, src, dst);
    if (o.udpChecksum === 'bad') c = c === 0xffff ? 1 : (c + 1) & 0xffff || 1;
    buf.writeUInt16BE(c, off + 6);
  }
  return UDP_HEADER_LEN;
}
