/**
 * Ethernet II (DIX) header, the layer netpoll's push_eth writes. A view over bytes (EthernetView) and a plain
 * representation (EthernetRepr) with symmetrical parse/emit, after smoltcp's src/wire/ethernet.rs. No I/O.
 */
import { readBe16, writeBe16 } from './checksum.js';
import { need, inRange } from './error.js';
import { macAt, writeMac } from './mac.js';

/** Field offsets from the start of the frame. */
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
export const ETHERTYPE_IPV6 = 0x86dd;
/** The shortest frame a NIC puts on the wire without the FCS; shorter ones get zero padding. */
export const ETH_MIN_FRAME = 60;

/** 0 when buf[off, end) can hold the header, else 1 (too short). Allocation-free, for hot paths. */
export function ethernetCheck(buf: Uint8Array, off = 0, end = buf.length): number {
  return off >= 0 && end - off >= ETH_HEADER_LEN ? 0 : 1;
}

/** A zero-copy view of an Ethernet header at buf[off]. `new` does no check (for emit); `checked` does. */
export class EthernetView {
  constructor(public buf: Uint8Array, public off = 0) {}

  /** ethernetCheck, as a view method. */
  static check(buf: Uint8Array, off = 0, end = buf.length): number {
    return ethernetCheck(buf, off, end);
  }

  /** A view after the length check; a WireError naming the shortfall otherwise. */
  static checked(buf: Uint8Array, off = 0): EthernetView {
    need(buf, off, ETH_HEADER_LEN, 'Ethernet header');
    return new EthernetView(buf, off);
  }

  /** Points the view at other bytes (no check): lets a hot path keep one view. */
  reset(buf: Uint8Array, off = 0): this {
    this.buf = buf;
    this.off = off;
    return this;
  }

  /** The 6 bytes in the frame (no copy). */
  get dst(): Buffer { return macAt(this.buf, this.off + ETH_FIELD.dst); }
  set dst(mac: Uint8Array) { writeMac(this.buf, this.off + ETH_FIELD.dst, mac); }
  get src(): Buffer { return macAt(this.buf, this.off + ETH_FIELD.src); }
  set src(mac: Uint8Array) { writeMac(this.buf, this.off + ETH_FIELD.src, mac); }
  get ethertype(): number { return readBe16(this.buf, this.off + ETH_FIELD.ethertype); }
  set ethertype(v: number) { writeBe16(this.buf, this.off + ETH_FIELD.ethertype, v); }
  /** Where the next header (802.1Q tag, IPv4, ARP) starts. */
  get payloadOffset(): number { return this.off + ETH_HEADER_LEN; }
}

export interface EthernetRepr {
  dst: Buffer;
  src: Buffer;
  ethertype: number;
}

export const EthernetRepr = {
  /** Fields of a checked view; the MACs are copies (the repr outlives the frame). */
  parse(v: EthernetView): EthernetRepr {
    return { dst: Buffer.from(v.dst), src: Buffer.from(v.src), ethertype: v.ethertype };
  },
  /** Writes the header into the view's 14 bytes (the length is checked here, once). */
  emit(r: EthernetRepr, v: EthernetView): void {
    need(v.buf, v.off, ETH_HEADER_LEN, 'Ethernet header');
    v.dst = r.dst;
    v.src = r.src;
    v.ethertype = inRange(r.ethertype, 0, 0xffff, 'EtherType');
  },
  /** Bytes emit writes. */
  bufferLen(): number {
    return ETH_HEADER_LEN;
  },
};

export function parseEthernet(buf: Uint8Array, off = 0): EthernetRepr {
  return EthernetRepr.parse(EthernetView.checked(buf, off));
}

export function emitEthernet(r: EthernetRepr, buf: Uint8Array, off = 0): number {
  EthernetRepr.emit(r, new EthernetView(buf, off));
  return ETH_HEADER_LEN;
}
