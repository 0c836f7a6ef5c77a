import { need } from './error.js';

/** Ethernet II header (IEEE 802.3 clause 3, DIX framing): field offsets from the start of the frame. */
export const ETH_FIELD = {
  /** Destination MAC, 6 bytes. */
  dst: 0,
  /** Source MAC, 6 bytes. */
  src: 6,
  /** EtherType, u16 big-endian (0x8100 here means an 802.1Q tag follows, see VLAN_FIELD). */
  ethertype: 12,
  HEADER_LEN: 14,
} as const;
export const ETH_HEADER_LEN = ETH_FIELD.HEADER_LEN;
export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_ARP = 0x0806;
export const ETHERTYPE_VLAN = 0x8100;
/** The shortest frame a NIC puts on the wire without the FCS; shorter ones get zero padding. */
export const ETH_MIN_FRAME = 60;

export interface EthernetRepr {
  dst: Buffer;
  src: Buffer;
  ethertype: number;
}

export function parseEthernet(buf: Uint8Array, off = 0): EthernetRepr {
  need(buf, off, ETH_HEADER_LEN, 'ethernet header');
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  return {
    dst: Buffer.from(b.subarray(off, off + 6)),
    src: Buffer.from(b.subarray(off + 6, off + 12)),
    ethertype: b.readUInt16BE(off + 12),
  };
}

export function emitEthernet(r: EthernetRepr, buf: Buffer, off = 0): number {
  need(buf, off, ETH_HEADER_LEN, 'ethernet header');
  r.dst.copy(buf, off, 0, 6);
  r.src.copy(buf, off + 6, 0, 6);
  buf.writeUInt16BE(r.ethertype, off + 12);
  return ETH_HEADER_LEN;
}
