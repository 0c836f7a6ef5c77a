/**
 * ARP for Ethernet/IPv4 (RFC 826), 28 bytes after the Ethernet header. A view over bytes (ArpView) and a plain
 * representation (ArpRepr) with symmetrical parse/emit, after smoltcp's src/wire/arp.rs. No I/O.
 */
import { readBe16, readBe32, writeBe16, writeBe32 } from './checksum.js';
import { inRange, need, WireError } from './error.js';
import { ETHERTYPE_IPV4 } from './ethernet.js';
import { MAC_LEN, macAt, writeMac } from './mac.js';

/** Field offsets from the start of the ARP packet (Ethernet/IPv4 sizes: hlen 6, plen 4). */
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
export const ARP_HTYPE_ETHERNET = 1;
export const ARP_REQUEST = 1;
export const ARP_REPLY = 2;
const IPV4_ADDR_LEN = 4;

// ArpView.check results.
const OK = 0, TRUNCATED = 1, ADDR_SIZES = 2;

/**
 * 0 when buf[off, end) holds 28 bytes laid out for 6-byte hardware and 4-byte protocol addresses (the offsets in
 * ARP_FIELD); else a nonzero code. Which hardware/protocol they are is the repr's question. Allocation-free.
 */
export function arpCheck(buf: Uint8Array, off = 0, end = buf.length): number {
  if (off < 0 || end - off < ARP_LEN) return TRUNCATED;
  if (buf[off + ARP_FIELD.hlen] !== MAC_LEN || buf[off + ARP_FIELD.plen] !== IPV4_ADDR_LEN) return ADDR_SIZES;
  return OK;
}

export class ArpView {
  constructor(public buf: Uint8Array, public off = 0) {}

  /** arpCheck, as a view method. */
  static check(buf: Uint8Array, off = 0, end = buf.length): number {
    return arpCheck(buf, off, end);
  }

  static checked(buf: Uint8Array, off = 0, end = buf.length): ArpView {
    const c = ArpView.check(buf, off, end);
    if (c === TRUNCATED) throw new WireError(`ARP packet at offset ${off}: need ${ARP_LEN} bytes, have ${Math.max(0, end - off)}`);
    if (c === ADDR_SIZES) {
      throw new WireError(`ARP packet at offset ${off}: address sizes ${buf[off + ARP_FIELD.hlen]}/${buf[off + ARP_FIELD.plen]}, expected ${MAC_LEN}/${IPV4_ADDR_LEN} (Ethernet/IPv4)`);
    }
    return new ArpView(buf, off);
  }

  reset(buf: Uint8Array, off = 0): this {
    this.buf = buf;
    this.off = off;
    return this;
  }

  get htype(): number { return readBe16(this.buf, this.off + ARP_FIELD.htype); }
  set htype(v: number) { writeBe16(this.buf, this.off + ARP_FIELD.htype, v); }
  get ptype(): number { return readBe16(this.buf, this.off + ARP_FIELD.ptype); }
  set ptype(v: number) { writeBe16(this.buf, this.off + ARP_FIELD.ptype, v); }
  get hlen(): number { return this.buf[this.off + ARP_FIELD.hlen]; }
  set hlen(v: number) { this.buf[this.off + ARP_FIELD.hlen] = v; }
  get plen(): number { return this.buf[this.off + ARP_FIELD.plen]; }
  set plen(v: number) { this.buf[this.off + ARP_FIELD.plen] = v; }
  get op(): number { return readBe16(this.buf, this.off + ARP_FIELD.op); }
  set op(v: number) { writeBe16(this.buf, this.off + ARP_FIELD.op, v); }
  /** Sender MAC (no copy). */
  get sha(): Buffer { return macAt(this.buf, this.off + ARP_FIELD.sha); }
  set sha(mac: Uint8Array) { writeMac(this.buf, this.off + ARP_FIELD.sha, mac); }
  get spa(): number { return readBe32(this.buf, this.off + ARP_FIELD.spa); }
  set spa(v: number) { writeBe32(this.buf, this.off + ARP_FIELD.spa, v); }
  /** Target MAC (no copy). */
  get tha(): Buffer { return macAt(this.buf, this.off + ARP_FIELD.tha); }
  set tha(mac: Uint8Array) { writeMac(this.buf, this.off + ARP_FIELD.tha, mac); }
  get tpa(): number { return readBe32(this.buf, this.off + ARP_FIELD.tpa); }
  set tpa(v: number) { writeBe32(this.buf, this.off + ARP_FIELD.tpa, v); }
}

export interface ArpRepr {
  op: number;
  senderMac: Buffer;
  senderIp: number;
  targetMac: Buffer;
  targetIp: number;
}

export const ArpRepr = {
  /** Fields of a checked view; a hardware type other than Ethernet or a protocol other than IPv4 is a WireError. */
  parse(v: ArpView): ArpRepr {
    if (v.htype !== ARP_HTYPE_ETHERNET || v.ptype !== ETHERTYPE_IPV4) {
      throw new WireError(`ARP packet at offset ${v.off}: hardware type ${v.htype}, protocol type 0x${v.ptype.toString(16).padStart(4, '0')}; expected ${ARP_HTYPE_ETHERNET} (Ethernet), 0x0800 (IPv4)`);
    }
    return { op: v.op, senderMac: Buffer.from(v.sha), senderIp: v.spa, targetMac: Buffer.from(v.tha), targetIp: v.tpa };
  },
  /** Writes the 28-byte Ethernet/IPv4 packet. */
  emit(r: ArpRepr, v: ArpView): void {
    need(v.buf, v.off, ARP_LEN, 'ARP packet');
    v.htype = ARP_HTYPE_ETHERNET;
    v.ptype = ETHERTYPE_IPV4;
    v.hlen = MAC_LEN;
    v.plen = IPV4_ADDR_LEN;
    v.op = inRange(r.op, 0, 0xffff, 'ARP operation');
    v.sha = r.senderMac;
    v.spa = r.senderIp >>> 0;
    v.tha = r.targetMac;
    v.tpa = r.targetIp >>> 0;
  },
  bufferLen(): number {
    return ARP_LEN;
  },
};

export function parseArp(buf: Uint8Array, off = 0): ArpRepr {
  return ArpRepr.parse(ArpView.checked(buf, off));
}

export function emitArp(r: ArpRepr, buf: Uint8Array, off = 0): number {
  ArpRepr.emit(r, new ArpView(buf, off));
  return ARP_LEN;
}
