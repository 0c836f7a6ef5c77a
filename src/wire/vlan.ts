import { need } from './error.js';

/** 802.1Q tag as it follows the MAC addresses: [TPID 0x8100 is the outer ethertype] TCI u16 (PCP:3 DEI:1 VID:12), inner ethertype u16. */
export const VLAN_FIELD = {
  /** Tag control information, u16: PCP (3 bits) | DEI (1) | VID (12). */
  tci: 0,
  /** The inner (encapsulated) EtherType, u16. */
  ethertype: 2,
  TAG_LEN: 4,
} as const;
export const VLAN_TAG_LEN = VLAN_FIELD.TAG_LEN;

export interface VlanRepr {
  pcp: number;
  dei: boolean;
  vid: number;
  ethertype: number;
}

export function parseVlan(buf: Uint8Array, off = 0): VlanRepr {
  need(buf, off, VLAN_TAG_LEN, '802.1Q tag');
  const tci = (buf[off] << 8) | buf[off + 1];
  return { pcp: tci >>> 13, dei: (tci & 0x1000) !== 0, vid: tci & 0x0fff, ethertype: (buf[off + 2] << 8) | buf[off + 3] };
}

export function emitVlan(r: VlanRepr, buf: Buffer, off = 0): number {
  need(buf, off, VLAN_TAG_LEN, '802.1Q tag');
  buf.writeUInt16BE(((r.pcp & 7) << 13) | (r.dei ? 0x1000 : 0) | (r.vid & 0x0fff), off);
  buf.writeUInt16BE(r.ethertype, off + 2);
  return VLAN_TAG_LEN;
}
