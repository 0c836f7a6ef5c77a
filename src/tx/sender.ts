import { RuntimeError, UsageError } from '../errors.js';
import { hostOwnsAddress, hostOwnsIpv6Address, ifaceInfo, type IfaceInfo } from '../link/iface.js';
import type { Link } from '../link/link.js';
import { PcapLink } from '../link/pcap.js';
import { linkStatus } from '../link/watch.js';
import { PcapFileWriter } from '../link/pcapwriter.js';
import { arpRequestFilter, arpResolve, ArpResponder } from '../resolve/arp.js';
import { ndpResolve, NdpResponder, ndpSolicitFilter } from '../resolve/ndp.js';
import { chooseNextHop, chooseNextHop6, chooseSource6, type NextHop } from '../resolve/nexthop.js';
import { formatEndpoint, formatIpAddress, type IpAddress } from '../wire/endpoint.js';
import { formatIpv6Addr, isIpv6LinkLocal, isIpv6Multicast, isIpv6Unspecified, ipv6MulticastMac } from '../wire/ipv6.js';
import { ETH_HEADER_LEN, ETH_MIN_FRAME } from '../wire/ethernet.js';
import { VLAN_TAG_LEN } from '../wire/vlan.js';
import { formatMac } from '../wire/mac.js';
import {
  ipUdpOverhead, makeFramer, parseUdpFrame, patchIpId, udpHeaderLen, type FrameProfile, type Framer, type ParsedUdpFrame, type Udp6FrameOptions,
  type UdpFrameOptions,
} from '../wire/udpframe.js';

/**
 * The target: IPv4 as the u32 the IPv4 code uses ({ ip, port }, `family` 4 or left out), or IPv6 as its 16 bytes
 * ({ family: 6, ip6, port }, a link-local one with the zone it was written with, if any): endpoint.ts' Endpoint fits.
 */
export type SenderTarget = { family?: 4; ip: number; port: number } | { family: 6; ip6: Buffer; port: number; zone?: string };
/** The source (--from): the same two forms, with the port and the prefix saying which targets are on-link. */
export type SenderSource =
  | { family?: 4; ip: number; port?: number; prefix?: number }
  | { family: 6; ip6: Buffer; port?: number; prefix?: number; zone?: string };
/** A next hop for off-link targets: an IPv4 u32, or an address of either family (endpoint.ts' IpAddress). */
export type SenderGateway = number | IpAddress;

export interface SenderOptions extends FrameProfile {
  /** Required unless writePcap or link is given together with dstMac, srcMac and from. */
  iface?: string;
  to: SenderTarget;
  /**
   * Source address, of the target's family; default: the interface's first IPv4 address, or for IPv6 the kernel's
   * choice in netpoll_setup: the first address of the target's scope (global, or link-local for a link-local target).
   * `prefix` tells which targets are on-link.
   */
  from?: SenderSource;
  srcPort?: number;
  /** Of the target's family. */
  gateway?: SenderGateway;
  dstMac?: Buffer;
  srcMac?: Buffer;
  frameSize?: number;
  /** 'counter' (default): netpoll's, from 1, +1 per datagram. A number: fixed. 'zero': FreeBSD's. IPv4 only. */
  ipId?: number | 'counter' | 'zero';
  /** ARP (IPv4) or NDP (IPv6) requests and their timeout. */
  arpRetries?: number;
  arpTimeoutMs?: number;
  writePcap?: string;
  /** writePcap with nanosecond timestamps (magic 0xa1b23c4d) instead of µs. */
  pcapNano?: boolean;
  /**
   * Send on this Link (a NativeLink, a PcapFileWriter, a test's recorder, …) instead of a libpcap handle opened here.
   * The sender owns it from the call on: close() and abort() close it, and so does an open() that fails. A libpcap
   * handle on `iface` is then opened only to receive: ARP requests for a source address the host does not own, or
   * what `filter` asks for.
   */
  link?: Link;
  /** BPF for what the caller wants to receive via onUdp (e.g. netdump ACKs). */
  filter?: string;
  /** MTU when there is no interface (pcap file only). */
  mtu?: number;
  /** Payload size the caller will send: refused before any I/O if it cannot fit (MTU, --size). */
  payloadLen?: number;
}

/** One UDP flow with every address known: what UdpSender.over needs (no interface lookup, no ARP). */
export type UdpFlow = (UdpFrameOptions | Udp6FrameOptions) & {
  /** Default 1500. */
  mtu?: number;
  ipId?: number | 'counter' | 'zero';
};

/**
 * The library's front door: one UDP flow from us to a target, its frames hand-built and handed to a Link — a libpcap
 * handle, a pcap file, or any Link the caller gives — with our own ARP for the next hop and an ARP responder for a
 * source address the host lacks.
 */
export class UdpSender {
  readonly iface: IfaceInfo | null;
  readonly dstMac: Buffer;
  readonly srcMac: Buffer;
  readonly family: 4 | 6;
  /** IPv4 addresses (0 over IPv6). */
  readonly srcIp: number;
  readonly dstIp: number;
  /** IPv6 addresses, 16 bytes (null over IPv4). */
  readonly srcIp6: Buffer | null;
  readonly dstIp6: Buffer | null;
  readonly mtu: number;
  readonly maxPayload: number;
  /** How long ARP (or NDP, over IPv6) took; null with a given MAC. */
  readonly arpMs: number | null;
  readonly nextHop: NextHop | null;
  /**
   * The libpcap handle on the interface, when there is one: it receives (ARP requests for our address, onUdp) and
   * its watch follows the link's state. It is also sendLink unless a pcap file or another Link was given.
   */
  readonly link: PcapLink | null;
  /** Where the frames go. */
  readonly sendLink: Link;
  readonly stats = { sent: 0, bytes: 0, retries: 0 };
  private _srcPort: number;
  private _dstPort: number;
  private readonly framer: Framer;
  private readonly responder: ArpResponder | NdpResponder | null;
  private readonly ipIdMode: number | 'counter' | 'zero';
  private nextId = 1;
  private readonly frameSize: number | undefined;

  private constructor(p: {
    iface: IfaceInfo | null; flow: UdpFlow & { mtu: number }; arpMs: number | null; nextHop: NextHop | null;
    link: PcapLink | null; sendLink: Link; responder: ArpResponder | NdpResponder | null;
  }) {
    const f = p.flow;
    this.iface = p.iface;
    this.dstMac = f.dstMac;
    this.srcMac = f.srcMac;
    this.family = f.family === 6 ? 6 : 4;
    this.srcIp = f.family === 6 ? 0 : f.srcIp;
    this.dstIp = f.family === 6 ? 0 : f.dstIp;
    this.srcIp6 = f.family === 6 ? f.srcIp6 : null;
    this.dstIp6 = f.family === 6 ? f.dstIp6 : null;
    this.mtu = f.mtu;
    this.arpMs = p.arpMs;
    this.nextHop = p.nextHop;
    this.link = p.link;
    this.sendLink = p.sendLink;
    this.responder = p.responder;
    this.ipIdMode = f.ipId ?? 'counter';
    this._srcPort = f.srcPort;
    this._dstPort = f.dstPort;
    this.maxPayload = f.mtu - ipUdpOverhead(this.family);
    this.frameSize = f.frameSize;
    const common = {
      srcMac: f.srcMac, dstMac: f.dstMac, srcPort: f.srcPort, dstPort: f.dstPort, ttl: f.ttl, tos: f.tos, vlan: f.vlan,
      udpChecksum: f.udpChecksum, frameSize: f.frameSize,
    };
    this.framer = makeFramer(f.family === 6
      ? { ...common, family: 6, srcIp6: f.srcIp6, dstIp6: f.dstIp6, flowLabel: f.flowLabel }
      : { ...common, srcIp: f.srcIp, dstIp: f.dstIp, df: f.df, ipChecksum: f.ipChecksum }, this.maxPayload);
  }

  /**
   * A sender on `link` for a flow whose addresses are all known: no interface, no ARP, no I/O of its own. The sender
   * owns the link from the call on (close/abort close it; so does a flow refused here).
   */
  static over(link: Link, flow: UdpFlow): UdpSender {
    try {
      validate(flow);
      if (flow.family === 6) checkIpv6Profile(flow);
      const mtu = flow.mtu ?? 1500;
      checkFrameSize(flow, mtu);
      return new UdpSender({ iface: null, flow: { ...flow, mtu }, arpMs: null, nextHop: null, link: null, sendLink: link, responder: null });
    } catch (e) {
      abortLink(link);
      throw e;
    }
  }

  /**
   * Opens the flow `o` describes: the interface's addresses, the next hop's MAC by ARP (unless dstMac), and the link
   * frames go to — `o.link`, a pcap file (`writePcap`), or a libpcap handle on `iface`.
   */
  static async open(o: SenderOptions): Promise<UdpSender> {
    try {
      return await UdpSender.start(o);
    } catch (e) {
      if (o.link) abortLink(o.link);
      throw e;
    }
  }

  private static async start(o: SenderOptions): Promise<UdpSender> {
    validate(o);
    if (o.link && o.writePcap) throw new UsageError('give a link to send on or a pcap file to write, not both');
    const family = o.to.family === 6 ? 6 : 4;
    if (family === 6) checkIpv6Options(o);
    else checkIpv4Options(o);
    // Nothing on the wire: a file takes what the NIC would have, so the interface's state does not matter.
    const toFile = !!o.writePcap || o.link instanceof PcapFileWriter;
    const offline = !o.iface;
    // A link-local target without -i is told why it needs one, before the general "no interface" below.
    if (family === 6 && offline) checkZones(o, null);
    if (offline && !((o.writePcap || o.link) && o.dstMac && o.srcMac && o.from)) {
      throw new UsageError('no interface given: use -i IF, or write a pcap file with -w FILE together with --dst-mac, --src-mac and --from');
    }
    const iface = o.iface ? ifaceInfo(o.iface) : null;
    if (family === 6 && iface) checkZones(o, iface);
    if (iface && !iface.up && !toFile) {
      throw new RuntimeError(`interface ${iface.name} is down; bring it up with: ip link set ${iface.name} up`);
    }
    // Up but no carrier (cable out, veth peer down): say so, rather than "no IPv4 address" (the kernel lists a link's
    // addresses only while it runs).
    if (iface && !toFile && linkStatus(iface.name).status === 'down') {
      throw new RuntimeError(`interface ${iface.name} has no carrier (cable, switch port or veth peer down); nothing can be sent on it now`);
    }
    const srcMac = o.srcMac ?? iface!.mac;
    const mtu = o.mtu ?? iface?.mtu ?? 1500;
    const srcPort = o.srcPort ?? o.from?.port ?? 6665;
    checkFrameSize(o, mtu, family);
    if (o.payloadLen !== undefined) checkPayloadFits(o.payloadLen, mtu, o.frameSize, udpHeaderLen(o.vlan, family), family);
    return family === 6 ? UdpSender.start6(o, iface, srcMac, mtu, srcPort) : UdpSender.start4(o, iface, srcMac, mtu, srcPort);
  }

  private static async start4(o: SenderOptions, iface: IfaceInfo | null, srcMac: Buffer, mtu: number, srcPort: number): Promise<UdpSender> {
    const to = o.to as { ip: number; port: number };
    const from = o.from as { ip: number; port?: number; prefix?: number } | undefined;
    const gateway = o.gateway as number | undefined;
    const src = from ?? (iface?.ipv4[0] ? { ip: iface.ipv4[0].addr, prefix: iface.ipv4[0].prefix } : undefined);
    if (!src) {
      throw new UsageError(`${iface!.name} has no IPv4 address; give the source address with --from IP[/PREFIX][:PORT]`);
    }
    const prefix = src.prefix ?? iface?.ipv4.find((a) => a.addr === src.ip)?.prefix ?? iface?.ipv4[0]?.prefix;

    let link: PcapLink | null = null;
    let writer: PcapFileWriter | null = null;
    let responder: ArpResponder | null = null;
    try {
      // The file first: a directory or a missing parent is refused before anything goes on the wire, ARP included.
      if (o.writePcap) writer = new PcapFileWriter(o.writePcap, { nano: o.pcapNano });
      // Then the link: a missing permission should be the first thing the user hears about, before any ARP.
      // Sending on a given Link, the libpcap handle is only for receiving: ARP requests for an address the host
      // does not own (the host answers for its own), or what `filter` asks for.
      const needLink = iface && (o.link ? !hostOwnsAddress(src.ip) || !!o.filter : !o.writePcap || !o.dstMac);
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
        const hop = chooseNextHop(to.ip, gateway, { ip: src.ip, prefix });
        nextHop = hop;
        const r = await arpResolve({
          iface: iface!.name, srcMac, srcIp: src.ip, targetIp: hop.ip, retries: o.arpRetries, timeoutMs: o.arpTimeoutMs,
        });
        dstMac = r.mac;
        arpMs = r.ms;
      }
      const sendLink = o.link ?? writer ?? link!;
      const flow = { ...o, family: 4 as const, srcMac, dstMac, srcIp: src.ip, dstIp: to.ip, srcPort, dstPort: to.port, mtu };
      return new UdpSender({ iface, flow, arpMs, nextHop, link, sendLink, responder });
    } catch (e) {
      responder?.stop();
      link?.close();
      writer?.abort();
      throw e;
    }
  }

  /**
   * IPv6: the source as netpoll_setup picks it when none is given (the interface's first address of the target's
   * scope: link-local for a link-local target, else global — falling back to the link-local one, which still reaches
   * an on-link peer), the next hop's MAC by our own NDP (a multicast target's by RFC 2464 §7, no NDP), and an
   * NdpResponder for a source the host does not own, so the peer's kernel can resolve it.
   */
  private static async start6(o: SenderOptions, iface: IfaceInfo | null, srcMac: Buffer, mtu: number, srcPort: number): Promise<UdpSender> {
    const to = o.to as { family: 6; ip6: Buffer; port: number };
    const from = o.from as { family: 6; ip6: Buffer; prefix?: number } | undefined;
    const gateway = o.gateway as { family: 6; ip6: Buffer } | undefined;
    let src: { ip6: Buffer; prefix?: number } | undefined = from ? { ip6: from.ip6, prefix: from.prefix } : undefined;
    if (!src && iface) src = chooseSource6(iface.ipv6, to.ip6);
    if (!src) {
      throw new UsageError(`${iface!.name} has no IPv6 address; give the source address with --from [IPv6[/PREFIX]]:PORT or --from IPv6[/PREFIX]`);
    }
    const srcIp6 = src.ip6;
    const prefix = src.prefix ?? iface?.ipv6.find((a) => a.addr.equals(srcIp6))?.prefix;
    const owned = hostOwnsIpv6Address(srcIp6);

    let link: PcapLink | null = null;
    let writer: PcapFileWriter | null = null;
    let responder: NdpResponder | null = null;
    try {
      if (o.writePcap) writer = new PcapFileWriter(o.writePcap, { nano: o.pcapNano });
      const needLink = iface && (o.link ? !owned || !!o.filter : !o.writePcap || !o.dstMac);
      if (needLink) {
        const filters = [`(${ndpSolicitFilter(srcIp6)})`];
        if (o.filter) filters.push(`(${o.filter})`);
        link = PcapLink.open(iface.name, filters.join(' or '));
        if (!owned) responder = new NdpResponder(link, srcMac, srcIp6);
      }
      let dstMac = o.dstMac;
      let arpMs: number | null = null;
      let nextHop: NextHop | null = null;
      if (!dstMac && isIpv6Multicast(to.ip6)) {
        dstMac = ipv6MulticastMac(to.ip6); // RFC 2464 §7: no resolution for a group
        nextHop = { family: 6, ip6: to.ip6, via: 'direct' };
      } else if (!dstMac) {
        const hop = chooseNextHop6(to.ip6, gateway?.ip6, { ip6: srcIp6, prefix });
        nextHop = hop;
        const r = await ndpResolve({
          iface: iface!.name, srcMac, srcIp: srcIp6, targetIp: hop.ip6, retries: o.arpRetries, timeoutMs: o.arpTimeoutMs,
        });
        dstMac = r.mac;
        arpMs = r.ms;
      }
      const sendLink = o.link ?? writer ?? link!;
      const flow = {
        ...o, family: 6 as const, srcMac, dstMac, srcIp6, dstIp6: to.ip6, srcPort, dstPort: to.port, mtu,
        df: undefined, ipChecksum: undefined, ipId: undefined,
      };
      return new UdpSender({ iface, flow, arpMs, nextHop, link, sendLink, responder });
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
      checkPayloadFits(len, this.mtu, this.frameSize, this.framer.headerLen, this.family);
    }
  }

  /** One UDP datagram, built in place and handed to the link. */
  send(payload: Uint8Array): void {
    this.checkPayload(payload.length);
    const frame = this.framer.build(payload, this.nextIpId());
    this.sendLink.send(frame);
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
    const counter = this.ipIdMode === 'counter' && this.family === 4;
    const frame = this.framer.build(payload, this.nextIpId());
    for (let i = 0; i < count; i++) {
      if (i > 0 && counter) patchIpId(frame, this.framer.ipOff, this.nextId++ & 0xffff);
      this.sendLink.send(frame);
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
    const rx = this.link ?? this.sendLink;
    if (!rx.onFrame) throw new UsageError('receiving needs an interface (-i IF)');
    return rx.onFrame((frame) => {
      const p = parseUdpFrame(frame);
      if (!p || p.srcMac.equals(this.srcMac)) return;
      if (this.family === 4 ? p.family !== 6 && p.dstIp === this.srcIp : p.family === 6 && p.dstIp6!.equals(this.srcIp6!)) cb(p);
    });
  }

  /** The source and destination addresses in endpoint.ts' form. */
  get srcAddress(): IpAddress {
    return this.family === 6 ? { family: 6, ip6: this.srcIp6! } : { family: 4, ip: this.srcIp };
  }

  get dstAddress(): IpAddress {
    return this.family === 6 ? { family: 6, ip6: this.dstIp6! } : { family: 4, ip: this.dstIp };
  }

  /**
   * Text forms: srcIp/dstIp the bare addresses ("10.0.0.2", "fd00::2"), src/dst with the port as the command line
   * writes it ("10.0.0.2:9000", "[fd00::2]:9000").
   */
  describe(): {
    family: 4 | 6; srcIp: string; srcMac: string; dstIp: string; dstMac: string; srcPort: number; dstPort: number; src: string; dst: string; via: string;
  } {
    return {
      family: this.family, srcIp: formatIpAddress(this.srcAddress), srcMac: formatMac(this.srcMac), dstIp: formatIpAddress(this.dstAddress),
      dstMac: formatMac(this.dstMac), srcPort: this._srcPort, dstPort: this._dstPort,
      src: formatEndpoint({ ...this.srcAddress, port: this._srcPort }), dst: formatEndpoint({ ...this.dstAddress, port: this._dstPort }),
      via: this.nextHop ? this.nextHop.via : 'given',
    };
  }

  async close(): Promise<void> {
    this.stats.retries = this.sendLink.sendRetries ?? 0;
    this.responder?.stop();
    if (this.link !== this.sendLink) this.link?.close();
    this.sendLink.close();
  }

  /** Give up: like close, but a pcap file being written is removed rather than put in place. */
  abort(): void {
    this.responder?.stop();
    if (this.link !== this.sendLink) this.link?.close();
    abortLink(this.sendLink);
  }
}

/** Closes a link, or for a pcap file being written, removes it: a run that failed leaves no file behind. */
function abortLink(l: Link): void {
  if (l instanceof PcapFileWriter) l.abort();
  else l.close();
}

function validate(o: FrameProfile & Pick<SenderOptions, 'ipId' | 'arpRetries' | 'arpTimeoutMs'>): void {
  const int = (v: number | undefined, lo: number, hi: number, what: string) => {
    if (v !== undefined && !(Number.isInteger(v) && v >= lo && v <= hi)) {
      throw new UsageError(`bad ${what} '${v}': expected an integer ${lo}-${hi}`);
    }
  };
  int(o.ttl, 0, 255, 'TTL');
  int(o.tos, 0, 255, 'TOS');
  int(o.flowLabel, 0, 0xfffff, 'IPv6 flow label');
  if (typeof o.ipId === 'number') int(o.ipId, 0, 65535, 'IP ID');
  int(o.vlan?.vid, 0, 4095, 'VLAN ID');
  int(o.vlan?.pcp, 0, 7, 'VLAN priority');
  int(o.arpRetries, 1, 100, 'ARP retries');
  int(o.arpTimeoutMs, 1, 60000, 'ARP timeout (ms)');
}

function checkPayloadFits(len: number, mtu: number, frameSize: number | undefined, headerLen: number, family: 4 | 6 = 4): void {
  const max = mtu - ipUdpOverhead(family);
  if (len > max) {
    const ip = family === 6 ? '40 IPv6' : '20 IP';
    throw new UsageError(`payload of ${len} bytes does not fit the MTU of ${mtu} (at most ${max} bytes: MTU - ${ip} - 8 UDP); rawpoll does not fragment`);
  }
  if (frameSize !== undefined && headerLen + len > frameSize) {
    throw new UsageError(`payload of ${len} bytes does not fit a ${frameSize}-byte frame (at most ${frameSize - headerLen} bytes after ${headerLen} bytes of headers)`);
  }
}

function checkFrameSize(o: Pick<SenderOptions, 'frameSize' | 'vlan'>, mtu: number, family: 4 | 6 = 4): void {
  if (o.frameSize === undefined) return;
  const hdr = udpHeaderLen(o.vlan, family);
  const max = mtu + ETH_HEADER_LEN + (o.vlan ? VLAN_TAG_LEN : 0);
  const min = Math.max(ETH_MIN_FRAME, hdr);
  if (!(Number.isInteger(o.frameSize) && o.frameSize >= min && o.frameSize <= max)) {
    throw new UsageError(`bad frame size '${o.frameSize}': expected ${min}-${max} bytes (${family === 6 ? `${hdr} is Ethernet + IPv6 + UDP` : '60 is the Ethernet minimum'}; the maximum is MTU ${mtu} + headers)`);
  }
}

/**
 * IPv4 target: --from and --gateway must be IPv4 too (an IPv6 --from with an IPv4 --to is a mistake, not a choice),
 * and the IPv6-only flow label is refused.
 */
function checkIpv4Options(o: SenderOptions): void {
  const to = formatIpAddress({ family: 4, ip: (o.to as { ip: number }).ip });
  if (o.from?.family === 6) {
    throw new UsageError(`--to ${to} and --from ${formatIpAddress(o.from)} are different families: give an IPv4 --from (or an IPv6 --to)`);
  }
  if (typeof o.gateway === 'object' && o.gateway.family === 6) {
    throw new UsageError(`--to ${to} and --gateway ${formatIpAddress(o.gateway)} are different families: the gateway must be IPv4 too`);
  }
  if (o.flowLabel !== undefined && o.flowLabel !== 0) {
    throw new UsageError(`--flow-label ${o.flowLabel} is IPv6 only (the IPv4 header has no flow label); --to ${to} is IPv4`);
  }
}

/** The options that mean nothing (or are forbidden) over IPv6, named as the command line writes them. */
function checkIpv6Profile(o: FrameProfile & { ipId?: SenderOptions['ipId'] }, to = 'the target'): void {
  if (o.df) throw new UsageError(`--df is IPv4 only: IPv6 has no Don't Fragment bit (routers never fragment IPv6, RFC 8200 §5); ${to} is IPv6`);
  if (typeof o.ipId === 'number' || o.ipId === 'zero') {
    throw new UsageError(`--ip-id is IPv4 only: the IPv6 header has no identification field (only a Fragment header does, and rawpoll does not fragment); ${to} is IPv6`);
  }
  if (o.ipChecksum === 'bad') throw new UsageError(`--bad-ip-checksum is IPv4 only: the IPv6 header has no checksum; ${to} is IPv6 (--bad-udp-checksum works)`);
  if (o.udpChecksum === 'none') {
    throw new UsageError(`--no-udp-checksum is refused over IPv6: the UDP checksum is mandatory there (RFC 8200 §8.1; a receiver discards a zero one); ${to} is IPv6`);
  }
}

function checkIpv6Options(o: SenderOptions): void {
  const to = `--to ${formatIpAddress(o.to as IpAddress)}`;
  checkIpv6Profile(o, to);
  if (o.from && o.from.family !== 6) {
    throw new UsageError(`${to} and --from ${formatIpAddress({ family: 4, ip: o.from.ip })} are different families: give an IPv6 --from like [fd00::7]:5000 (or an IPv4 --to)`);
  }
  if (o.gateway !== undefined && (typeof o.gateway === 'number' || o.gateway.family !== 6)) {
    const g = typeof o.gateway === 'number' ? { family: 4 as const, ip: o.gateway } : o.gateway;
    throw new UsageError(`${to} and --gateway ${formatIpAddress(g)} are different families: the gateway must be IPv6 too`);
  }
  const from = o.from as { ip6: Buffer } | undefined;
  if (from && (isIpv6Multicast(from.ip6) || isIpv6Unspecified(from.ip6))) {
    throw new UsageError(`bad --from ${formatIpv6Addr(from.ip6)}: a source address must be unicast (not :: or a multicast group)`);
  }
  if (isIpv6Unspecified((o.to as { ip6: Buffer }).ip6)) throw new UsageError(`bad ${to}: :: is no destination`);
}

/**
 * A link-local address is valid on one link only: such a target needs -i, and a zone written with it (fe80::1%eth1)
 * must name the same interface. The same for a link-local --from or --gateway with a zone.
 */
function checkZones(o: SenderOptions, iface: IfaceInfo | null): void {
  const named: Array<[string, { ip6: Buffer; zone?: string } | undefined]> = [
    ['--to', o.to as { ip6: Buffer; zone?: string }],
    ['--from', o.from as { ip6: Buffer; zone?: string } | undefined],
    ['--gateway', typeof o.gateway === 'object' ? o.gateway as { ip6: Buffer; zone?: string } : undefined],
  ];
  for (const [what, a] of named) {
    if (!a) continue;
    const text = formatIpv6Addr(a.ip6) + (a.zone !== undefined ? `%${a.zone}` : '');
    if (what !== '--from' && isIpv6LinkLocal(a.ip6) && !iface && !o.dstMac) {
      throw new UsageError(`${what} ${text} is link-local (fe80::/10): it is only reachable through one interface; name it with -i IF`);
    }
    if (a.zone !== undefined && iface && a.zone !== iface.name) {
      throw new UsageError(`${what} ${text} names zone ${a.zone}, but -i is ${iface.name}: a link-local address belongs to the link it is sent on; make them agree`);
    }
    if (a.zone !== undefined && !iface) {
      throw new UsageError(`${what} ${text} names zone ${a.zone}: give the same interface with -i ${a.zone}`);
    }
  }
}
