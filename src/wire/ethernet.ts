import { need } from './error.js';

/** Ethernet II header: dst[0,6) src[6,12) ethertype[12,14). */
export const ETH_HEADER_LEN = 14;
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
