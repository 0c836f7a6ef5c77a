import { RuntimeError, UsageError } from '../errors.js';
import { hostOwnsAddress, ifaceInfo, type IfaceInfo } from '../link/iface.js';
import { PcapLink } from '../link/pcap.js';
import { linkStatus } from '../link/watch.js';
import { PcapFileWriter } from '../link/pcapwriter.js';
import { arpRequestFilter, arpResolve, ArpResponder } from '../resolve/arp.js';
import { chooseNextHop, type NextHop } from '../resolve/nexthop.js';
import { formatIpv4 } from '../wire/addr.js';
import { ETH_HEADER_LEN, ETH_MIN_FRAME } from '../wire/ethernet.js';
import { IPV4_HEADER_LEN } from '../wire/ipv4.js';
import { formatMac } from '../wire/mac.js';
import { UDP_HEADER_LEN } from '../wire/udp.js';
import { parseUdpFrame, patchIpId, udpHeaderLen, UdpFramer, type FrameProfile, type ParsedUdpFrame } from '../wire/udpframe.js';

export interface SenderOptions extends FrameProfile {
  /** Required unless writePcap is given together with dstMac, srcMac and from. */
  iface?: string;
  to: { ip: number; port: number };
  /** Source address; default: the interface's first IPv4 address. `prefix` tells which targets are on-link. */
  from?: { ip: number; port?: number; prefix?: number };
  srcPort?: number;
  gateway?: number;
  dstMac?: Buffer;
  srcMac?: Buffer;
  frameSize?: number;
  /** 'counter' (default): netpoll's, from 1, +1 per datagram. A number: fixed. 'zero': FreeBSD's. */
  ipId?: number | 'counter' | 'zero';
  arpRetries?: number;
  arpTimeoutMs?: number;
  writePcap?: string;
  /** BPF for what the caller wants to receive via onUdp (e.g. netdump ACKs). */
  filter?: string;
  /** MTU when there is no interface (pcap file only). */
  mtu?: number;
  /** Payload size the caller will send: refused before any I/O if it cannot fit (MTU, --size). */
  payloadLen?: number;
}

export interface FrameSink {
  send(frame: Uint8Array): void;
}

/**
 * The library's front door: one UDP flow from us to a target, its frames hand-built and put on the link
 * (or into a pcap file), with our own ARP for the next hop and an ARP responder for a source address the host lacks.
 */
export class UdpSender {
  readonly iface: IfaceInfo | null;
  readonly dstMac: Buffer;
  readonly srcMac: Buffer;
  readonly srcIp: number;
  readonly dstIp: number;
  readonly mtu: number;
  readonly maxPayload: number;
  readonly arpMs: number | null;
  readonly nextHop: NextHop | null;
  readonly link: PcapLink | null;
  readonly stats = { sent: 0, bytes: 0, retries: 0 };
  private _srcPort: number;
  private _dstPort: number;
  private readonly framer: UdpFramer;
  private readonly sink: FrameSink;
  private readonly writer: PcapFileWriter | null;
  private readonly responder: ArpResponder | null;
  private readonly ipIdMode: number | 'counter' | 'zero';
  private nextId = 1;
  private readonly frameSize: number | undefined;

  private constructor(p: {
    iface: IfaceInfo | null; dstMac: Buffer; srcMac: Buffer; srcIp: number; mtu: number; arpMs: number | null;
    nextHop: NextHop | null; link: PcapLink | null; writer: PcapFileWriter | null; responder: ArpResponder | null;
    o: SenderOptions; srcPort: number;
  }) {
    this.iface = p.iface;
    this.dstMac = p.dstMac;
    this.srcMac = p.srcMac;
    this.srcIp = p.srcIp;
    this.dstIp = p.o.to.ip;
    this.mtu = p.mtu;
    this.arpMs = p.arpMs;
    this.nextHop = p.nextHop;
    this.link = p.link;
    this.writer = p.writer;
    this.responder = p.responder;
    this.ipIdMode = p.o.ipId ?? 'counter';
    this._srcPort = p.srcPort;
    this._dstPort = p.o.to.port;
    this.maxPayload = p.mtu - IPV4_HEADER_LEN - UDP_HEADER_LEN;
    this.frameSize = p.o.frameSize;
    this.framer = new UdpFramer({
      srcMac: p.srcMac, dstMac: p.dstMac, srcIp: p.srcIp, dstIp: p.o.to.ip, srcPort: p.srcPort, dstPort: p.o.to.port,
      ttl: p.o.ttl, tos: p.o.tos, df: p.o.df, vlan: p.o.vlan, ipChecksum: p.o.ipChecksum, udpChecksum: p.o.udpChecksum,
      frameSize: p.o.frameSize,
    }, this.maxPayload);
    this.sink = (p.writer ?? p.link) as FrameSink;
  }

  static async open(o: SenderOptions): Promise<UdpSender> {
    validate(o);
    const offline = !o.iface;
    if (offline && !(o.writePcap && o.dstMac && o.srcMac && o.from)) {
      throw new UsageError('no interface given: use -i IF, or write a pcap file with -w FILE together with --dst-mac, --src-mac and --from');
    }
    const iface = o.iface ? ifaceInfo(o.iface) : null;
    if (iface && !iface.up && !o.writePcap) {
      throw new RuntimeError(`interface ${iface.name} is down; bring it up with: ip link set ${iface.name} up`);
    }
    // Up but no carrier (cable out, veth peer down): say so, rather than "no IPv4 address" (the kernel lists a link's
    // addresses only while it runs).
    if (iface && !o.writePcap && linkStatus(iface.name).status === 'down') {
      throw new RuntimeError(`interface ${iface.name} has no carrier (cable, switch port or veth peer down); nothing can be sent on it now`);
    }
    const src = o.from ?? (iface?.ipv4[0] ? { ip: iface.ipv4[0].addr, prefix: iface.ipv4[0].prefix } : undefined);
    if (!src) {
      throw new UsageError(`${iface!.name} has no IPv4 address; give the source address with --from IP[/PREFIX][:PORT]`);
    }
    const prefix = src.prefix ?? iface?.ipv4.find((a) => a.addr === src.ip)?.prefix ?? iface?.ipv4[0]?.prefix;
    const srcMac = o.srcMac ?? iface!.mac;
    const mtu = o.mtu ?? iface?.mtu ?? 1500;
    const srcPort = o.srcPort ?? o.from?.port ?? 6665;
    checkFrameSize(o, mtu);
    if (o.payloadLen !== undefined) checkPayloadFits(o.payloadLen, mtu, o.frameSize, udpHeaderLen(o.vlan));

    let link: PcapLink | null = null;
    let writer: PcapFileWriter | null = null;
    let responder: ArpResponder | null = null;
    try {
      // Open the link first: a missing permission should be the first thing the user hears about, before any ARP.
      const needLink = iface && (!o.writePcap || !o.dstMac);
      if (needLink) {
        const filters = [arpRequestFilter(src.ip)];
        if (o.filter) filters.push(`(${o.filter})`);
        link = PcapLink.open(iface.name, filters.join(' or '));
        if (!hostOwnsAddress(src.ip)) responder = new ArpResponder(link, srcMac, src.ip);
      }
      let dstMac = o.dstMac;
      let arpMs: number | null = null;
      let nextHop: NextHop | null = null;
      if (!dstMac) {
        nextHop = chooseNextHop(o.to.ip, o.gateway, { ip: src.ip, prefix });
        const r = await arpResolve({
          iface: iface!.name, srcMac, srcIp: src.ip, targetIp: nextHop.ip, retries: o.arpRetries, timeoutMs: o.arpTimeoutMs,
        });
        dstMac = r.mac;
        arpMs = r.ms;
      }
      if (o.writePcap) writer = new PcapFileWriter(o.writePcap);
      return new UdpSender({ iface, dstMac, srcMac, srcIp: src.ip, mtu, arpMs, nextHop, link, writer, responder, o, srcPort });
    } catch (e) {
      responder?.stop();
      link?.close();
      writer?.abort();
      throw e;
    }
  }

  get srcPort(): number {
    return this._srcPort;
  }

  get dstPort(): number {
    return this._dstPort;
  }

  setPorts(srcPort: number, dstPort: number): void {
    this._srcPort = srcPort;
    this._dstPort = dstPort;
    this.framer.setPorts(srcPort, dstPort);
  }

  /** Refuses (UsageError) a payload that does not fit the MTU: netpoll does not fragment, and neither do we. */
  checkPayload(len: number): void {
    if (len > this.maxPayload || (this.frameSize !== undefined && this.framer.headerLen + len > this.frameSize)) {
      checkPayloadFits(len, this.mtu, this.frameSize, this.framer.headerLen);
    }
  }

  /** One UDP datagram, built in place and handed to the link. */
  send(payload: Uint8Array): void {
    this.checkPayload(payload.length);
    const frame = this.framer.build(payload, this.nextIpId());
    this.sink.send(frame);
    this.stats.sent++;
    this.stats.bytes += frame.length;
  }

  /**
   * The same payload `count` times, as `send` would put it on the wire, but built once: each further frame only gets
   * the next IP ID patched in with an RFC 1624 checksum update. `onProgress(i)` is called every 4096 frames.
   */
  sendRepeated(payload: Uint8Array, count: number, onProgress?: (sent: number) => void): void {
    this.checkPayload(payload.length);
    if (count <= 0) return;
    const counter = this.ipIdMode === 'counter';
    const frame = this.framer.build(payload, this.nextIpId());
    for (let i = 0; i < count; i++) {
      if (i > 0 && counter) patchIpId(frame, this.framer.ipOff, this.nextId++ & 0xffff);
      this.sink.send(frame);
      if (onProgress && (i & 4095) === 4095) onProgress(i + 1);
    }
    this.stats.sent += count;
    this.stats.bytes += count * frame.length;
  }

  private nextIpId(): number {
    return this.ipIdMode === 'counter' ? this.nextId++ & 0xffff : this.ipIdMode === 'zero' ? 0 : this.ipIdMode;
  }

  /** UDP frames captured on the link that pass the `filter` given at open. The payload is a view: copy to keep. */
  onUdp(cb: (pkt: ParsedUdpFrame) => void): () => void {
    if (!this.link) throw new UsageError('receiving needs an interface (-i IF)');
    return this.link.onFrame((frame) => {
      const p = parseUdpFrame(frame);
      if (p && p.dstIp === this.srcIp && !p.srcMac.equals(this.srcMac)) cb(p);
    });
  }

  describe(): { srcIp: string; srcMac: string; dstIp: string; dstMac: string; srcPort: number; dstPort: number; via: string } {
    return {
      srcIp: formatIpv4(this.srcIp), srcMac: formatMac(this.srcMac), dstIp: formatIpv4(this.dstIp), dstMac: formatMac(this.dstMac),
      srcPort: this._srcPort, dstPort: this._dstPort, via: this.nextHop ? this.nextHop.via : 'given',
    };
  }

  async close(): Promise<void> {
    this.stats.retries = this.link?.sendRetries ?? 0;
    this.responder?.stop();
    this.link?.close();
    this.writer?.close();
  }

  /** Give up: like close, but a pcap file being written is removed rather than put in place. */
  abort(): void {
    this.responder?.stop();
    this.link?.close();
    this.writer?.abort();
  }
}

function validate(o: SenderOptions): void {
  const int = (v: number | undefined, lo: number, hi: number, what: string) => {
    if (v !== undefined && !(Number.isInteger(v) && v >= lo && v <= hi)) {
      throw new UsageError(`bad ${what} '${v}': expected an integer ${lo}-${hi}`);
    }
  };
  int(o.ttl, 0, 255, 'TTL');
  int(o.tos, 0, 255, 'TOS');
  if (typeof o.ipId === 'number') int(o.ipId, 0, 65535, 'IP ID');
  int(o.vlan?.vid, 0, 4095, 'VLAN ID');
  int(o.vlan?.pcp, 0, 7, 'VLAN priority');
  int(o.arpRetries, 1, 100, 'ARP retries');
  int(o.arpTimeoutMs, 1, 60000, 'ARP timeout (ms)');
}

function checkPayloadFits(len: number, mtu: number, frameSize: number | undefined, headerLen: number): void {
  const max = mtu - IPV4_HEADER_LEN - UDP_HEADER_LEN;
  if (len > max) {
    throw new UsageError(`payload of ${len} bytes does not fit the MTU of ${mtu} (at most ${max} bytes: MTU - 20 IP - 8 UDP); rawpoll does not fragment`);
  }
  if (frameSize !== undefined && headerLen + len > frameSize) {
    throw new UsageError(`payload of ${len} bytes does not fit a ${frameSize}-byte frame (at most ${frameSize - headerLen} bytes after ${headerLen} bytes of headers)`);
  }
}

function checkFrameSize(o: SenderOptions, mtu: number): void {
  if (o.frameSize === undefined) return;
  const hdr = udpHeaderLen(o.vlan);
  const max = mtu + ETH_HEADER_LEN + (o.vlan ? 4 : 0);
  const min = Math.max(ETH_MIN_FRAME, hdr);
  if (!(Number.isInteger(o.frameSize) && o.frameSize >= min && o.frameSize <= max)) {
    throw new UsageError(`bad frame size '${o.frameSize}': expected ${min}-${max} bytes (60 is the Ethernet minimum; the maximum is MTU ${mtu} + headers)`);
  }
}
