import { internetChecksum } from './checksum.js';
import { need, WireError } from './error.js';

/**
 * IPv4 header without options (IHL 5), as netpoll writes it:
 * 0 ver/ihl, 1 tos, 2 total length, 4 id, 6 flags/frag, 8 ttl, 9 protocol, 10 checksum, 12 src, 16 dst.
 */
export const IPV4_FIELD = {
  verIhl: 0, tos: 1, totalLength: 2, id: 4, flagsFrag: 6, ttl: 8, protocol: 9, checksum: 10, src: 12, dst: 16,
  /** Without options (IHL 5); the real length is IHL * 4. */
  HEADER_LEN: 20,
} as const;
/** The older name of IPV4_FIELD (same object). */
export const IPV4_OFF = IPV4_FIELD;
export const IPV4_HEADER_LEN = IPV4_FIELD.HEADER_LEN;
export const IPPROTO_UDP = 17;
export const IPV4_DF = 0x4000;

export interface Ipv4Repr {
  tos: number;
  totalLength: number;
  id: number;
  df: boolean;
  mf: boolean;
  fragOffset: number;
  ttl: number;
  protocol: number;
  checksum: number;
  src: number;
  dst: number;
  headerLen: number;
}

export interface ChecksumOptions {
  /** 'good' (default) computes the right value; 'bad' writes it off by one — a named, deliberate corruption. */
  ipChecksum?: 'good' | 'bad';
}

export function parseIpv4(buf: Uint8Array, off = 0): Ipv4Repr {
  need(buf, off, IPV4_HEADER_LEN, 'IPv4 header');
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const verIhl = b[off];
  if (verIhl >>> 4 !== 4) throw new WireError(`IPv4 header: version ${verIhl >>> 4}`);
  const headerLen = (verIhl & 15) * 4;
  if (headerLen < IPV4_HEADER_LEN) throw new WireError(`IPv4 header: IHL ${verIhl & 15} too small`);
  need(buf, off, headerLen, 'IPv4 header with options');
  const ff = b.readUInt16BE(off + 6);
  return {
    tos: b[off + 1],
    totalLength: b.readUInt16BE(off + 2),
    id: b.readUInt16BE(off + 4),
    df: (ff & IPV4_DF) !== 0,
    mf: (ff & 0x2000) !== 0,
    fragOffset: (ff & 0x1fff) * 8,
    ttl: b[off + 8],
    protocol: b[off + 9],
    checksum: b.readUInt16BE(off + 10),
    src: b.readUInt32BE(off + 12),
    dst: b.readUInt32BE(off + 16),
    headerLen,
  };
}

/** True when the header's checksum verifies (the sum over the header including the field is 0xffff). */
export function ipv4ChecksumOk(buf: Uint8Array, off = 0): boolean {
  const ihl = (buf[off] & 15) * 4;
  return internetChecksum(buf, off, off + ihl) === 0;
}

/** Writes a 20-byte header (no options) and its checksum. repr.checksum and repr.headerLen are ignored. */
export function emitIpv4(r: Omit<Ipv4Repr, 'checksum' | 'headerLen' | 'mf' | 'fragOffset'> & Partial<Ipv4Repr>, buf: Buffer, off = 0, o: ChecksumOptions = {}): number {
  need(buf, off, IPV4_HEADER_LEN, 'IPv4 header');
  buf[off] = 0x45;
  buf[off + 1] = r.tos & 0xff;
  buf.writeUInt16BE(r.totalLength, off + 2);
  buf.writeUInt16BE(r.id & 0xffff, off + 4);
  buf.writeUInt16BE((r.df ? IPV4_DF : 0) | (r.mf ? 0x2000 : 0) | (((r.fragOffset ?? 0) >>> 3) & 0x1fff), off + 6);
  buf[off + 8] = r.ttl & 0xff;
  buf[off + 9] = r.protocol & 0xff;
  buf.writeUInt16BE(0, off + 10);
  buf.writeUInt32BE(r.src >>> 0, off + 12);
  buf.writeUInt32BE(r.dst >>> 0, off + 16);
  let c = internetChecksum(buf, off, off + IPV4_HEADER_LEN);
  if (o.ipChecksum === 'bad') c = (c + 1) & 0xffff;
  buf.writeUInt16BE(c, off + 10);
  return IPV4_HEADER_LEN;
}
