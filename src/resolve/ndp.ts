/**
 * Our own IPv6 Neighbor Discovery (RFC 4861), the twin of resolve/arp.ts: a Neighbor Solicitation to the target's
 * solicited-node group (ff02::1:ffXX:XXXX, Ethernet 33:33:ff:XX:XX:XX) from our MAC and source address, the
 * Advertisement captured on a pcap handle of its own whose BPF filter passes only NAs for the asked target; and the
 * answerer for an address the host's stack does not own (rawpoll's --from), replying to Solicitations with a solicited
 * Advertisement (S and O set, the target link-layer option), as the kernel's ndisc_recv_ns/ndisc_send_na do.
 */
import { performance } from 'node:perf_hooks';
import { LinkDownError, LinkGoneError, RuntimeError } from '../errors.js';
import { PcapLink } from '../link/pcap.js';
import { emitEthernet, ETH_HEADER_LEN, ETHERTYPE_IPV6, parseEthernet } from '../wire/ethernet.js';
import {
  emitIcmpv6, ICMPV6_FIELD, ICMPV6_NEIGHBOR_ADVERT, ICMPV6_NEIGHBOR_SOLICIT, Icmpv6Repr, type NeighborAdvertRepr,
  type NeighborSolicitRepr, parseIcmpv6,
} from '../wire/icmpv6.js';
import {
  emitIpv6, formatIpv6Addr, IPPROTO_ICMPV6, IPV6_ALL_NODES, IPV6_FIELD, IPV6_HEADER_LEN, ipv6MulticastMac, ipv6UpperLayer,
  Ipv6View, isIpv6Multicast, isIpv6Unspecified, parseIpv6Addr, solicitedNodeAddr,
} from '../wire/ipv6.js';

/** RFC 4861 §6.1.1/§7.1: NDP is sent with hop limit 255 and a receiver drops anything less (it was routed). */
export const NDP_HOP_LIMIT = 255;

export interface NdpResolveOptions {
  iface: string;
  srcMac: Buffer;
  /** 16 bytes: the Solicitation's source (ours, or an address we speak for). */
  srcIp: Buffer;
  targetIp: Buffer;
  /** Solicitations to send before giving up (RFC 4861 §10 MAX_MULTICAST_SOLICIT is 3, as ARP's default here). */
  retries?: number;
  /** How long to wait for an Advertisement after each Solicitation (RFC 4861's RETRANS_TIMER is 1000 ms). */
  timeoutMs?: number;
}

export interface NdpResult {
  mac: Buffer;
  ms: number;
  tries: number;
  /** The Advertisement's R flag: the neighbour is a router. */
  router: boolean;
}

/** Ethernet + IPv6 (hop limit 255) + an NDP message from src to dst, in one buffer: a complete frame. */
function buildNdpFrame(r: NeighborSolicitRepr | NeighborAdvertRepr, srcMac: Buffer, dstMac: Buffer, src: Buffer, dst: Buffer): Buffer {
  const len = Icmpv6Repr.bufferLen(r);
  const f = Buffer.alloc(ETH_HEADER_LEN + IPV6_HEADER_LEN + len);
  emitEthernet({ dst: dstMac, src: srcMac, ethertype: ETHERTYPE_IPV6 }, f, 0);
  emitIpv6({ trafficClass: 0, flowLabel: 0, payloadLength: len, nextHeader: IPPROTO_ICMPV6, hopLimit: NDP_HOP_LIMIT, src, dst }, f, ETH_HEADER_LEN);
  emitIcmpv6(r, f, ETH_HEADER_LEN + IPV6_HEADER_LEN, src, dst);
  return f;
}

/**
 * A Neighbor Solicitation for `target` to its solicited-node group, with our MAC as the source link-layer option
 * (omitted only from :: — DAD, RFC 4861 §4.3). 86 bytes: no Ethernet padding needed.
 */
export function buildNsFrame(srcMac: Buffer, srcIp: Buffer, target: Buffer): Buffer {
  const group = solicitedNodeAddr(target);
  const lladdr = isIpv6Unspecified(srcIp) ? null : srcMac;
  return buildNdpFrame({ type: ICMPV6_NEIGHBOR_SOLICIT, target, lladdr }, srcMac, ipv6MulticastMac(group), srcIp, group);
}

/**
 * A Neighbor Advertisement for `target` (ours) to dstIp/dstMac, with our MAC as the target link-layer option. In
 * answer to a Solicitation: S and O set (RFC 4861 §7.2.4), unless the asker was :: (DAD): then to all-nodes, S clear.
 */
export function buildNaFrame(srcMac: Buffer, target: Buffer, dstMac: Buffer, dstIp: Buffer, flags: { solicited: boolean; override: boolean; router?: boolean }): Buffer {
  const na: NeighborAdvertRepr = {
    type: ICMPV6_NEIGHBOR_ADVERT, router: flags.router ?? false, solicited: flags.solicited, override: flags.override, target, lladdr: srcMac,
  };
  return buildNdpFrame(na, srcMac, dstMac, target, dstIp);
}

/** "ip6[48:4] = 0x… and …": the 16 target bytes as four 32-bit compares (BPF has nothing wider). */
function targetMatch(target: Buffer): string {
  const at = IPV6_HEADER_LEN + ICMPV6_FIELD.target;
  const words: string[] = [];
  for (let i = 0; i < 16; i += 4) words.push(`ip6[${at + i}:4] = 0x${target.readUInt32BE(i).toString(16).padStart(8, '0')}`);
  return words.join(' and ');
}

/**
 * BPF for "NDP messages of `type` about target": ICMPv6 right after the fixed header (NDP carries no extension
 * headers in practice; a datagram with them is not passed), hop limit 255, the type and the target address.
 */
function ndpFilter(type: number, target: Buffer): string {
  return `icmp6 and ip6[${IPV6_FIELD.hopLimit}] = ${NDP_HOP_LIMIT} and ip6[${IPV6_HEADER_LEN}] = ${type} and ${targetMatch(target)}`;
}

/** BPF for Neighbor Advertisements about `target` (the answer we wait for). */
export function ndpAdvertFilter(target: Buffer): string {
  return ndpFilter(ICMPV6_NEIGHBOR_ADVERT, target);
}

/** BPF for Neighbor Solicitations asking for `target` (what the answerer replies to). */
export function ndpSolicitFilter(target: Buffer): string {
  return ndpFilter(ICMPV6_NEIGHBOR_SOLICIT, target);
}

export interface NdpFrame {
  srcMac: Buffer;
  src: Buffer;
  dst: Buffer;
  msg: NeighborSolicitRepr | NeighborAdvertRepr;
}

/**
 * An NS or NA that passes RFC 4861's validation (§7.1.1/§7.1.2): hop limit 255, checksum right, code 0, length, well
 * formed options, a unicast target; an NS from :: without a source link-layer option and sent to a solicited-node
 * group; an NA to a multicast group without S. Anything else (another frame, a broken one) is null: a capture sees
 * what others send, and what is not ours to read is not an error.
 */
export function parseNdpFrame(frame: Buffer): NdpFrame | null {
  try {
    if (frame.length < ETH_HEADER_LEN + IPV6_HEADER_LEN) return null;
    const eth = parseEthernet(frame);
    if (eth.ethertype !== ETHERTYPE_IPV6) return null;
    const ip = Ipv6View.checked(frame, ETH_HEADER_LEN);
    if (ip.hopLimit !== NDP_HOP_LIMIT) return null;
    const up = ipv6UpperLayer(frame, ETH_HEADER_LEN);
    if (up.protocol !== IPPROTO_ICMPV6 || up.fragment) return null;
    const src = Buffer.from(ip.src);
    const dst = Buffer.from(ip.dst);
    const msg = parseIcmpv6(frame, up.offset, up.end, src, dst);
    if (msg.type !== ICMPV6_NEIGHBOR_SOLICIT && msg.type !== ICMPV6_NEIGHBOR_ADVERT) return null;
    if (isIpv6Multicast(msg.target)) return null;
    if (msg.type === ICMPV6_NEIGHBOR_SOLICIT && isIpv6Unspecified(src) && (msg.lladdr || !solicitedNodeAddr(msg.target).equals(dst))) return null;
    if (msg.type === ICMPV6_NEIGHBOR_ADVERT && isIpv6Multicast(dst) && msg.solicited) return null;
    return { srcMac: Buffer.from(eth.src), src, dst, msg };
  } catch {
    return null;
  }
}

/**
 * Our own NDP client, as arpResolve: Solicitations to the target's solicited-node group from our MAC/address on a pcap
 * handle of its own whose BPF filter passes only Advertisements for the target; `retries` Solicitations, `timeoutMs`
 * each. The MAC is the Advertisement's target link-layer option (one without it cannot complete an entry, RFC 4861
 * §7.2.5, and is ignored).
 */
export async function ndpResolve(o: NdpResolveOptions): Promise<NdpResult> {
  const retries = o.retries ?? 3;
  const timeoutMs = o.timeoutMs ?? 1000;
  const link = PcapLink.open(o.iface, ndpAdvertFilter(o.targetIp), 1 << 20);
  const solicit = buildNsFrame(o.srcMac, o.srcIp, o.targetIp);
  const t0 = performance.now();
  try {
    for (let tryNo = 1; tryNo <= retries; tryNo++) {
      const got = await new Promise<{ mac: Buffer; router: boolean } | null>((resolve) => {
        const timer = setTimeout(() => {
          off();
          resolve(null);
        }, timeoutMs);
        const off = link.onFrame((frame) => {
          const nd = parseNdpFrame(frame);
          if (!nd || nd.msg.type !== ICMPV6_NEIGHBOR_ADVERT || !nd.msg.target.equals(o.targetIp) || !nd.msg.lladdr) return;
          if (nd.srcMac.equals(o.srcMac)) return; // our own answerer's, seen on the way out
          clearTimeout(timer);
          off();
          resolve({ mac: nd.msg.lladdr, router: nd.msg.router });
        });
        link.send(solicit);
      });
      if (got) return { ...got, ms: performance.now() - t0, tries: tryNo };
    }
  } finally {
    link.close();
  }
  throw new RuntimeError(`no NDP reply from ${formatIpv6Addr(o.targetIp)} on ${o.iface} after ${retries} ${retries === 1 ? 'try' : 'tries'}`);
}

/** What the answerer did with one Solicitation. */
export interface NdpAnswer {
  /** The asker's address (:: for DAD) and MAC. */
  from: Buffer;
  mac: Buffer;
  /** 'solicited': unicast NA with S and O; 'dad': NA to all-nodes defending the address (S clear). */
  kind: 'solicited' | 'dad';
}

/**
 * Answers Neighbor Solicitations for an address the host's own stack does not own, so that the peer's kernel can
 * send to it (the IPv6 twin of ArpResponder). The link's filter must pass the Solicitations (ndpSolicitFilter).
 */
export class NdpResponder {
  answered = 0;
  /** Solicitations seen while the link could not send the answer. */
  unanswered = 0;
  private readonly off: () => void;

  constructor(private readonly link: PcapLink, private readonly mac: Buffer, private readonly ip: Buffer, onAnswer?: (a: NdpAnswer) => void) {
    this.off = link.onFrame((frame) => {
      const nd = parseNdpFrame(frame);
      if (!nd || nd.msg.type !== ICMPV6_NEIGHBOR_SOLICIT || !nd.msg.target.equals(this.ip)) return;
      if (nd.srcMac.equals(this.mac)) return; // our own Solicitation, seen on the way out
      const dad = isIpv6Unspecified(nd.src);
      // RFC 4861 §7.2.4: to the asker, at the MAC its option names (or the frame came from); a DAD probe's (::)
      // answer goes to all-nodes with S clear — the address is in use.
      const dstMac = dad ? ipv6MulticastMac(IPV6_ALL_NODES) : (nd.msg.lladdr ?? nd.srcMac);
      const dstIp = dad ? IPV6_ALL_NODES : nd.src;
      try {
        this.link.send(buildNaFrame(this.mac, this.ip, dstMac, dstIp, { solicited: !dad, override: true }));
        this.answered++;
        onAnswer?.({ from: nd.src, mac: nd.msg.lladdr ?? nd.srcMac, kind: dad ? 'dad' : 'solicited' });
      } catch (e) {
        // The link went down (or away) between the Solicitation and our answer: the asker will ask again; the command
        // that owns the link reports the outage.
        if (!(e instanceof LinkDownError || e instanceof LinkGoneError)) throw e;
        this.unanswered++;
      }
    });
  }

  stop(): void {
    this.off();
  }
}
