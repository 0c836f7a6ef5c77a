/**
 * IEEE 802.1Q tag as it follows the MAC addresses: the outer EtherType (TPID) 0x8100 sits in the Ethernet header,
 * then TCI u16 (PCP:3 DEI:1 VID:12) and the inner EtherType u16. View + repr as in ethernet.ts. No I/O.
 */
import { readBe16, writeBe16 } from './checksum.js';
import { inRange, need } from './error.js';

/** Field offsets from the start of the tag (the byte after the Ethernet header's EtherType). */
export const VLAN_FIELD = {
  /** Tag control information, u16: PCP (3 bits) | DEI (1) | VID (12). */
  tci: 0,
  /** The inner (encapsulated) EtherType, u16. */
  ethertype: 2,
  TAG_LEN: 4,
} as const;
export const VLAN_TAG_LEN = VLAN_FIELD.TAG_LEN;
const PCP_SHIFT = 13;
const DEI_BIT = 0x1000;
const VID_MASK = 0x0fff;

/** 0 when buf[off, end) can hold the tag, else 1 (too short). Allocation-free. */
export function vlanCheck(buf: Uint8Array, off = 0, end = buf.length): number {
  return off >= 0 && end - off >= VLAN_TAG_LEN ? 0 : 1;
}

export class VlanView {
  constructor(public buf: Uint8Array, public off = 0) {}

  /** vlanCheck, as a view method. */
  static check(buf: Uint8Array, off = 0, end = buf.length): number {
    return vlanCheck(buf, off, end);
  }

  static checked(buf: Uint8Array, off = 0): VlanView {
    need(buf, off, VLAN_TAG_LEN, '802.1Q tag');
    return new VlanView(buf, off);
  }

  reset(buf: Uint8Array, off = 0): this {
    this.buf = buf;
    this.off = off;
    return this;
  }

  get tci(): number { return readBe16(this.buf, this.off + VLAN_FIELD.tci); }
  set tci(v: number) { writeBe16(this.buf, this.off + VLAN_FIELD.tci, v); }
  /** Priority code point, 0-7. */
  get pcp(): number { return this.tci >>> PCP_SHIFT; }
  set pcp(v: number) { this.tci = (this.tci & ~(7 << PCP_SHIFT)) | ((v & 7) << PCP_SHIFT); }
  /** Drop eligible indicator (formerly CFI). */
  get dei(): boolean { return (this.tci & DEI_BIT) !== 0; }
  set dei(v: boolean) { this.tci = v ? this.tci | DEI_BIT : this.tci & ~DEI_BIT; }
  /** VLAN identifier, 0-4095. */
  get vid(): number { return this.tci & VID_MASK; }
  set vid(v: number) { this.tci = (this.tci & ~VID_MASK) | (v & VID_MASK); }
  get ethertype(): number { return readBe16(this.buf, this.off + VLAN_FIELD.ethertype); }
  set ethertype(v: number) { writeBe16(this.buf, this.off + VLAN_FIELD.ethertype, v); }
  get payloadOffset(): number { return this.off + VLAN_TAG_LEN; }
}

export interface VlanRepr {
  pcp: number;
  dei: boolean;
  vid: number;
  ethertype: number;
}

export const VlanRepr = {
  parse(v: VlanView): VlanRepr {
    return { pcp: v.pcp, dei: v.dei, vid: v.vid, ethertype: v.ethertype };
  },
  /** Writes the 4-byte tag; a PCP, VID or EtherType outside its field is a WireError naming it. */
  emit(r: VlanRepr, v: VlanView): void {
    need(v.buf, v.off, VLAN_TAG_LEN, '802.1Q tag');
    v.tci = (inRange(r.pcp, 0, 7, '802.1Q priority') << PCP_SHIFT) | (r.dei ? DEI_BIT : 0) | inRange(r.vid, 0, VID_MASK, '802.1Q VLAN ID');
    v.ethertype = inRange(r.ethertype, 0, 0xffff, 'EtherType');
  },
  bufferLen(): number {
    return VLAN_TAG_LEN;
  },
};

export function parseVlan(buf: Uint8Array, off = 0): VlanRepr {
  return VlanRepr.parse(VlanView.checked(buf, off));
}

export function emitVlan(r: VlanRepr, buf: Uint8Array, off = 0): number {
  VlanRepr.emit(r, new VlanView(buf, off));
  return VLAN_TAG_LEN;
}
