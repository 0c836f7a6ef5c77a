import { RuntimeError, UsageError } from '../errors.js';
import { hostOwnsAddress, ifaceInfo, type IfaceInfo } from '../link/iface.js';
import type { Link } from '../link/link.js';
import { PcapLink } from '../link/pcap.js';
import { linkStatus } from '../link/watch.js';
import { PcapFileWriter } from '../link/pcapwriter.js';
import { arpRequestFilter, arpResolve, ArpResponder } from '../resolve/arp.js';
import { chooseNextHop, type NextHop } from '../resolve/nexthop.js';
import { formatIpv4 } from '../wire/addr.js';
import { ETH_HEADER_LEN, ETH_MIN_FRAME } from '../wire/ethernet.js';
import { VLAN_TAG_LEN } from '../wire/vlan.js';
import { IPV4_HEADER_LEN } from '../wire/ipv4.js';
import { formatMac } from '../wire/mac.js';
import { UDP_HEADER_LEN } from '../wire/udp.js';
import { parseUdpFrame, patchIpId, udpHeaderLen, UdpFramer, type FrameProfile, type ParsedUdpFrame, type UdpFrameOptions } from '../wire/udpframe.js';

export interface SenderOptions extends FrameProfile {
  /** Required unless writePcap or link is given together with dstMac, srcMac and from. */
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
export interface UdpFlow extends UdpFrameOptions {
  /** Default 1500. */
  mtu?: number;
  ipId?: number | 'counter' | 'zero';
}

/**
 * The library's front door: one UDP flow from us to a target, its frames hand-built and handed to a Link — a libpcap
 * handle, a pcap file, or any Link the caller gives — with our own ARP for the next hop and an ARP responder for a
 * source address the host lacks.
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
  private readonly framer: UdpFramer;
  private readonly responder: ArpResponder | null;
  private readonly ipIdMode: number | 'counter' | 'zero';
  private nextId = 1;
  private readonly frameSize: number | undefined;

  private constructor(p: {
    iface: IfaceInfo | null; flow: UdpFlow & { mtu: number }; arpMs: number | null; nextHop: NextHop | null;
    link: PcapLink | null; sendLink: Link; responder: ArpResponder | null;
  }) {
    const f = p.flow;
    this.iface = p.iface;
    this.dstMac = f.dstMac;
    this.srcMac = f.srcMac;
    this.srcIp = f.srcIp;
    this.dstIp = f.dstIp;
    this.mtu = f.mtu;
    this.arpMs = p.arpMs;
    this.nextHop = p.nextHop;
    this.link = p.link;
    this.sendLink = p.sendLink;
    this.responder = p.responder;
    this.ipIdMode = f.ipId ?? 'counter';
    this._srcPort = f.srcPort;
    this._dstPort = f.dstPort;
    this.maxPayload = f.mtu - IPV4_HEADER_LEN - UDP_HEADER_LEN;
    this.frameSize = f.frameSize;
    this.framer = new UdpFramer({
      srcMac: f.srcMac, dstMac: f.dstMac, srcIp: f.srcIp, dstIp: f.dstIp, srcPort: f.srcPort, dstPort: f.dstPort,
      ttl: f.ttl, tos: f.tos, df: f.df, vlan: f.vlan, ipChecksum: f.ipChecksum, udpChecksum: f.udpChecksum,
      frameSize: f.frameSize,
    }, this.maxPayload);
  }

  /**
   * A sender on `link` for a flow whose addresses are all known: no interface, no ARP, no I/O of its own. The sender
   * owns the link from the call on (close/abort close it; so does a flow refused here).
   */
  static over(link: Link, flow: UdpFlow): UdpSender {
    try {
      validate(flow);
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
    // Nothing on the wire: a file takes what the NIC would have, so the interface's state does not matter.
    const toFile = !!o.writePcap || o.link instanceof PcapFileWriter;
    const offline = !o.iface;
    if (offline && !((o.writePcap || o.link) && o.dstMac && o.srcMac && o.from)) {
      throw new UsageError('no interface given: use -i IF, or write a pcap file with -w FILE together with --dst-mac, --src-mac and --from');
    }
    const iface = o.iface ? ifaceInfo(o.iface) : null;
    if (iface && !iface.up && !toFile) {
      throw new RuntimeError(`interface ${iface.name} is down; bring it up with: ip link set ${iface.name} up`);
    }
    // Up but no carrier (cable out, veth peer down): say so, rather than "no IPv4 address" (the kernel lists a link's
    // addresses only while it runs).
    if (iface && !toFile && linkStatus(iface.name).status === 'down') {
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
        nextHop = chooseNextHop(o.to.ip, o.gateway, { ip: src.ip, prefix });
        const r = await arpResolve({
          iface: iface!.name, srcMac, srcIp: src.ip, targetIp: nextHop.ip, retries: o.arpRetries, timeoutMs: o.arpTimeoutMs,
        });
        dstMac = r.mac;
        arpMs = r.ms;
      }
      const sendLink = o.link ?? writer ?? link!;
      const flow = { ...o, srcMac, dstMac, srcIp: src.ip, dstIp: o.to.ip, srcPort, dstPort: o.to.port, mtu };
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
      checkPayloadFits(len, this.mtu, this.frameSize, this.framer.headerLen);
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
    const counter = this.ipIdMode === 'counter';
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

function checkFrameSize(o: Pick<SenderOptions, 'frameSize' | 'vlan'>, mtu: number): void {
  if (o.frameSize === undefined) return;
  const hdr = udpHeaderLen(o.vlan);
  const max = mtu + ETH_HEADER_LEN + (o.vlan ? VLAN_TAG_LEN : 0);
  const min = Math.max(ETH_MIN_FRAME, hdr);
  if (!(Number.isInteger(o.frameSize) && o.frameSize >= min && o.frameSize <= max)) {
    throw new UsageError(`bad frame size '${o.frameSize}': expected ${min}-${max} bytes (60 is the Ethernet minimum; the maximum is MTU ${mtu} + headers)`);
  }
}
