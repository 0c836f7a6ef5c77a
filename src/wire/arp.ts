import { need, WireError } from './error.js';

/** ARP for Ethernet/IPv4 (RFC 826): htype 1, ptype 0x0800, hlen 6, plen 4, op, sha, spa, tha, tpa — 28 bytes. */
export const ARP_FIELD = {
  /** Hardware type, u16: 1 = Ethernet. */
  htype: 0,
  /** Protocol type, u16: an EtherType, 0x0800 = IPv4. */
  ptype: 2,
  /** Hardware address length, u8: 6. */
  hlen: 4,
  /** Protocol address length, u8: 4. */
  plen: 5,
  /** Operation, u16: 1 request, 2 reply. */
  op: 6,
  /** Sender hardware (MAC) and protocol (IPv4) address, target hardware and protocol address. */
  sha: 8, spa: 14, tha: 18, tpa: 24,
  LEN: 28,
} as const;
export const ARP_LEN = ARP_FIELD.LEN;
export const ARP_REQUEST = 1;
export const ARP_REPLY = 2;

export interface ArpRepr {
  op: number;
  senderMac: Buffer;
  senderIp: number;
  targetMac: Buffer;
  targetIp: number;
}

export function parseArp(buf: Uint8Array, off = 0): ArpRepr {
  need(buf, off, ARP_LEN, 'ARP packet');
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (b.readUInt16BE(off) !== 1 || b.readUInt16BE(off + 2) !== 0x0800 || b[off + 4] !== 6 || b[off + 5] !== 4) {
    throw new WireError('ARP packet: not Ethernet/IPv4');
  }
  return {
    op: b.readUInt16BE(off + 6),
    senderMac: Buffer.from(b.subarray(off + 8, off + 14)),
    senderIp: b.readUInt32BE(off + 14),
    targetMac: Buffer.from(b.subarray(off + 18, off + 24)),
    targetIp: b.readUInt32BE(off + 24),
  };
}

export function emitArp(r: ArpRepr, buf: Buffer, off = 0): number {
  need(buf, off, ARP_LEN, 'ARP packet');
  buf.writeUInt16BE(1, off);
  buf.writeUInt16BE(0x0800, off + 2);
  buf[off + 4] = 6;
  buf[off + 5] = 4;
  buf.writeUInt16BE(r.op, off + 6);
  r.senderMac.copy(buf, off + 8, 0, 6);
  buf.writeUInt32BE(r.senderIp >>> 0, off + 14);
  r.targetMac.copy(buf, off + 18, 0, 6);
  buf.writeUInt32BE(r.targetIp >>> 0, off + 24);
  return ARP_LEN;
}
