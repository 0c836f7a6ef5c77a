import { addWords, incrementalUpdate, onesSum } from './checksum.js';
import { ETH_HEADER_LEN, ETH_MIN_FRAME, ETHERTYPE_IPV4, ETHERTYPE_VLAN } from './ethernet.js';
import { IPPROTO_UDP, IPV4_DF, IPV4_HEADER_LEN } from './ipv4.js';
import { UDP_HEADER_LEN } from './udp.js';
import { VLAN_TAG_LEN } from './vlan.js';

export interface VlanTag {
  vid: number;
  pcp?: number;
}

/**
 * The IPv4/UDP profile every sender shares; netpoll's is the default (TTL 64, TOS 0, DF clear, checksums right).
 * Corruption is explicit and named ('bad', 'none'), never a side effect.
 */
export interface FrameProfile {
  ttl?: number;
  tos?: number;
  df?: boolean;
  vlan?: VlanTag;
  ipChecksum?: 'good' | 'bad';
  udpChecksum?: 'good' | 'bad' | 'none';
}

export interface UdpFrameOptions extends FrameProfile {
  srcMac: Buffer;
  dstMac: Buffer;
  srcIp: number;
  dstIp: number;
  srcPort: number;
  dstPort: number;
  /** Pad the UDP payload with zeros so the whole frame (without FCS) is exactly this many bytes. */
  frameSize?: number;
}

/** Header bytes in front of the UDP payload: Ethernet (+802.1Q) + IPv4 + UDP. */
export function udpHeaderLen(vlan?: VlanTag): number {
  return ETH_HEADER_LEN + (vlan ? VLAN_TAG_LEN : 0) + IPV4_HEADER_LEN + UDP_HEADER_LEN;
}

/**
 * Builds Ethernet[/802.1Q]/IPv4/UDP frames the way netpoll does (push_udp, push_ipv4, push_eth): one pre-sized buffer,
 * the constant header bytes written once, and per datagram only the payload, lengths, IP ID and the two checksums.
 * The checksums start from partial sums of the constant words, so a send sums the payload once and nothing else.
 * Frames shorter than 60 bytes get zero Ethernet padding after the IP datagram, as a NIC would add.
 */
export class UdpFramer {
  readonly headerLen: number;
  readonly maxPayload: number;
  private readonly buf: Buffer;
  /** Offset of the IPv4 header in every frame (14, or 18 with a VLAN tag). */
  readonly ipOff: number;
  private readonly udpOff: number;
  private readonly o: Required<Omit<UdpFrameOptions, 'vlan' | 'frameSize'>> & Pick<UdpFrameOptions, 'vlan' | 'frameSize'>;
  private ipConstSum = 0;
  private udpConstSum = 0;

  constructor(opts: UdpFrameOptions, maxPayload: number) {
    // Field by field: an option passed as undefined must still get netpoll's default (a spread would keep the undefined).
    this.o = {
      ...opts,
      ttl: opts.ttl ?? 64, tos: opts.tos ?? 0, df: opts.df ?? false,
      ipChecksum: opts.ipChecksum ?? 'good', udpChecksum: opts.udpChecksum ?? 'good',
    };
    this.headerLen = udpHeaderLen(opts.vlan);
    this.ipOff = this.headerLen - IPV4_HEADER_LEN - UDP_HEADER_LEN;
    this.udpOff = this.ipOff + IPV4_HEADER_LEN;
    this.maxPayload = maxPayload;
    const padded = Math.max(opts.frameSize ?? 0, ETH_MIN_FRAME, this.headerLen + maxPayload);
    this.buf = Buffer.alloc(padded);
    this.writeConstantHeaders();
  }

  private writeConstantHeaders(): void {
    const b = this.buf;
    const o = this.o;
    o.dstMac.copy(b, 0, 0, 6);
    o.srcMac.copy(b, 6, 0, 6);
    let p = 12;
    if (o.vlan) {
      b.writeUInt16BE(ETHERTYPE_VLAN, p);
      b.writeUInt16BE((((o.vlan.pcp ?? 0) & 7) << 13) | (o.vlan.vid & 0x0fff), p + 2);
      p += 4;
    }
    b.writeUInt16BE(ETHERTYPE_IPV4, p);
    const ip = this.ipOff;
    b[ip] = 0x45;
    b[ip + 1] = o.tos & 0xff;
    b.writeUInt16BE(o.df ? IPV4_DF : 0, ip + 6);
    b[ip + 8] = o.ttl & 0xff;
    b[ip + 9] = IPPROTO_UDP;
    b.writeUInt32BE(o.srcIp >>> 0, ip + 12);
    b.writeUInt32BE(o.dstIp >>> 0, ip + 16);
    // Constant IP words: ver/ihl/tos, flags, ttl/proto, src, dst. Variable: total length, id.
    this.ipConstSum = addWords(0, (b[ip] << 8) | b[ip + 1], b.readUInt16BE(ip + 6), (b[ip + 8] << 8) | b[ip + 9], o.srcIp >>> 0, o.dstIp >>> 0);
    this.setPorts(o.srcPort, o.dstPort);
  }

  setPorts(srcPort: number, dstPort: number): void {
    this.o.srcPort = srcPort;
    this.o.dstPort = dstPort;
    this.buf.writeUInt16BE(srcPort, this.udpOff);
    this.buf.writeUInt16BE(dstPort, this.udpOff + 2);
    // Pseudo-header (src, dst, proto) and the two ports; the UDP length is added per datagram (it appears twice).
    this.udpConstSum = addWords(0, this.o.srcIp >>> 0, this.o.dstIp >>> 0, IPPROTO_UDP, srcPort, dstPort);
  }

  /** The UDP payload length a frame of `frameSize` bytes has room for (0 when frameSize is unset). */
  paddedPayloadLen(payloadLen: number): number {
    const fs = this.o.frameSize;
    return fs ? Math.max(payloadLen, fs - this.headerLen) : payloadLen;
  }

  /** One complete frame. Returns a view into the framer's buffer: valid until the next build. */
  build(payload: Uint8Array, ipId: number): Buffer {
    const b = this.buf;
    const plen = this.paddedPayloadLen(payload.length);
    b.set(payload, this.headerLen);
    if (plen > payload.length) b.fill(0, this.headerLen + payload.length, this.headerLen + plen);
    const udpLen = UDP_HEADER_LEN + plen;
    const ipLen = IPV4_HEADER_LEN + udpLen;
    const ip = this.ipOff;
    const udp = this.udpOff;

    b.writeUInt16BE(ipLen, ip + 2);
    b.writeUInt16BE(ipId & 0xffff, ip + 4);
    let ipc = ~addWords(this.ipConstSum, ipLen, ipId & 0xffff) & 0xffff;
    if (this.o.ipChecksum === 'bad') ipc = (ipc + 1) & 0xffff;
    b.writeUInt16BE(ipc, ip + 10);

    b.writeUInt16BE(udpLen, udp + 4);
    let uc = 0;
    if (this.o.udpChecksum !== 'none') {
      const sum = onesSum(b, this.headerLen, this.headerLen + plen, addWords(this.udpConstSum, udpLen, udpLen));
      uc = ~sum & 0xffff;
      if (uc === 0) uc = 0xffff; // 0 means "no checksum" on the wire
      if (this.o.udpChecksum === 'bad') uc = uc === 0xffff ? 1 : uc + 1;
    }
    b.writeUInt16BE(uc, udp + 6);

    let frameLen = this.headerLen + plen;
    if (frameLen < ETH_MIN_FRAME) {
      b.fill(0, frameLen, ETH_MIN_FRAME);
      frameLen = ETH_MIN_FRAME;
    }
    return b.subarray(0, frameLen);
  }
}

/**
 * Re-stamps the IPv4 ID of a frame built by UdpFramer in place, updating the header checksum with RFC 1624 rather than
 * re-summing: how a repeated datagram goes out with netpoll's incrementing ID at the cost of two 16-bit writes.
 * (The UDP checksum does not cover the IP ID.)
 */
export function patchIpId(frame: Buffer, ipOff: number, newId: number): void {
  const oldId = (frame[ipOff + 4] << 8) | frame[ipOff + 5];
  const c = (frame[ipOff + 10] << 8) | frame[ipOff + 11];
  const nc = incrementalUpdate(c, oldId, newId & 0xffff);
  frame[ipOff + 4] = (newId >>> 8) & 0xff;
  frame[ipOff + 5] = newId & 0xff;
  frame[ipOff + 10] = nc >>> 8;
  frame[ipOff + 11] = nc & 0xff;
}

export interface ParsedUdpFrame {
  dstMac: Buffer;
  srcMac: Buffer;
  vlan?: { vid: number; pcp: number };
  srcIp: number;
  dstIp: number;
  ttl: number;
  ipId: number;
  srcPort: number;
  dstPort: number;
  /** View into the frame: copy it if you keep it past the capture callback. */
  payload: Buffer;
}

/** Ethernet[/802.1Q]/IPv4/UDP → fields, or null for anything else (or a truncated/fragmented datagram). */
/** Offsets of a whole IPv4/UDP datagram inside an Ethernet frame (see locateUdp). */
export interface UdpLocation {
  /** The IPv4 header: 14, or 18 behind an 802.1Q tag. */
  ip: number;
  /** The UDP header. */
  udp: number;
  /** UDP length (header + payload), as the header says and the IP length allows. */
  udpLen: number;
}

/**
 * Where a whole IPv4/UDP datagram sits in an Ethernet (optionally 802.1Q) frame, without allocating: false for a runt,
 * anything but IPv4/UDP, a fragment, IHL < 5, an IP total length past the frame, or a UDP length outside 8..the IP
 * length. The one set of rules for parseUdpFrame and the receivers' hot paths.
 */
export function locateUdp(f: Uint8Array, at: UdpLocation): boolean {
  if (f.length < ETH_HEADER_LEN + IPV4_HEADER_LEN + UDP_HEADER_LEN) return false;
  let ip = ETH_HEADER_LEN;
  let type = (f[12] << 8) | f[13];
  if (type === ETHERTYPE_VLAN) {
    if (f.length < ETH_HEADER_LEN + 4 + IPV4_HEADER_LEN + UDP_HEADER_LEN) return false;
    type = (f[16] << 8) | f[17];
    ip += 4;
  }
  if (type !== ETHERTYPE_IPV4 || f[ip] >> 4 !== 4 || f[ip + 9] !== IPPROTO_UDP) return false;
  if ((((f[ip + 6] << 8) | f[ip + 7]) & 0x3fff) !== 0) return false; // a fragment: not a whole datagram
  const ihl = (f[ip] & 15) * 4;
  const ipLen = (f[ip + 2] << 8) | f[ip + 3];
  const udp = ip + ihl;
  if (ihl < IPV4_HEADER_LEN || udp + UDP_HEADER_LEN > f.length || ip + ipLen > f.length) return false;
  const udpLen = (f[udp + 4] << 8) | f[udp + 5];
  if (udpLen < UDP_HEADER_LEN || udp + udpLen > ip + ipLen) return false;
  at.ip = ip;
  at.udp = udp;
  at.udpLen = udpLen;
  return true;
}

export function parseUdpFrame(frame: Uint8Array): ParsedUdpFrame | null {
  const at = { ip: 0, udp: 0, udpLen: 0 };
  if (!locateUdp(frame, at)) return null;
  const b = Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength);
  const { ip, udp, udpLen } = at;
  let vlan: ParsedUdpFrame['vlan'];
  if (ip > ETH_HEADER_LEN) {
    const tci = b.readUInt16BE(14);
    vlan = { vid: tci & 0x0fff, pcp: tci >>> 13 };
  }
  return {
    dstMac: b.subarray(0, 6),
    srcMac: b.subarray(6, 12),
    vlan,
    srcIp: b.readUInt32BE(ip + 12),
    dstIp: b.readUInt32BE(ip + 16),
    ttl: b[ip + 8],
    ipId: b.readUInt16BE(ip + 4),
    srcPort: b.readUInt16BE(udp),
    dstPort: b.readUInt16BE(udp + 2),
    payload: b.subarray(udp + UDP_HEADER_LEN, udp + udpLen),
  };
}
