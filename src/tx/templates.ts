/**
 * The frames a blast cycles through: one template per (flow, size), built once by the foundation's framers (UdpFramer,
 * Udp6Framer: Ethernet[/802.1Q]/IPv4 or IPv6/UDP), and the order in which a run visits them. Per frame only the fields
 * of the patch plan change (src/tx/plan.ts), which also applies a deliberately bad checksum: the templates' own are
 * always correct. A flow's addresses and ports are in its own templates (and so in their
 * checksums' constant part): a --src-ip range, IPv4 or IPv6, costs nothing per frame.
 */
import { UsageError } from '../errors.js';
import { PKTGEN_HDR_LEN, writePktgenHeader } from '../proto/pktgen.js';
import type { IpFamily } from '../wire/endpoint.js';
import { ETH_HEADER_LEN, ETH_MIN_FRAME } from '../wire/ethernet.js';
import { IPV4_HEADER_LEN } from '../wire/ipv4.js';
import { IPV6_ADDR_LEN, IPV6_HEADER_LEN } from '../wire/ipv6.js';
import { UDP_HEADER_LEN } from '../wire/udp.js';
import { Udp6Framer, udpHeaderLen, UdpFramer, type FrameProfile, type VlanTag } from '../wire/udpframe.js';
import { VLAN_TAG_LEN } from '../wire/vlan.js';

/**
 * An address as the templates take it: IPv4 as the u32 the IPv4 code uses, IPv6 as its 16 bytes (network order).
 * One run is one family: every flow's source and the destination alike.
 */
export type BlastAddr = number | Buffer;

export function familyOf(a: BlastAddr): IpFamily {
  return typeof a === 'number' ? 4 : 6;
}

export type SizeSpec =
  | { kind: 'fixed'; sizes: [number] }
  | { kind: 'cycle'; sizes: number[] }
  | { kind: 'range'; sizes: [number, number] }
  | { kind: 'imix'; sizes: number[]; weights: number[] };

/** Distinct sizes a spec can produce (the templates to build). */
export function distinctSizes(spec: SizeSpec): number[] {
  if (spec.kind === 'range') {
    const out: number[] = [];
    for (let s = spec.sizes[0]; s <= spec.sizes[1]; s++) out.push(s);
    return out;
  }
  return [...new Set(spec.sizes)];
}

/**
 * The cycle of sizes the sender walks through. IMIX weights are interleaved (smooth weighted round robin, as
 * nginx balances upstreams) so 7,4,1 gives 64,576,64,64,576,64,... rather than seven 64s in a row.
 * A random range is drawn once into a 4096-frame cycle: no per-packet random numbers on the hot path.
 */
export function sizeSequence(spec: SizeSpec, rand: () => number = Math.random): number[] {
  switch (spec.kind) {
    case 'fixed':
    case 'cycle':
      return spec.sizes.slice();
    case 'range': {
      const [a, b] = spec.sizes;
      return Array.from({ length: a === b ? 1 : 4096 }, () => a + Math.floor(rand() * (b - a + 1)));
    }
    case 'imix': {
      const total = spec.weights.reduce((x, y) => x + y, 0);
      const cur = spec.weights.map(() => 0);
      const out: number[] = [];
      for (let n = 0; n < total; n++) {
        let best = -1;
        for (let i = 0; i < cur.length; i++) {
          cur[i] += spec.weights[i];
          if (best < 0 || cur[i] > cur[best]) best = i;
        }
        cur[best] -= total;
        out.push(spec.sizes[best]);
      }
      return out;
    }
  }
}

export interface FlowSpec {
  /** IPv4 u32s or IPv6 16-byte addresses, one family. */
  srcIps: BlastAddr[];
  srcPorts: [number, number];
  dstPorts: [number, number];
  /** Default: the largest of the three range sizes. */
  flows?: number;
}

export interface Flow {
  srcIp: BlastAddr;
  srcPort: number;
  dstPort: number;
}

/** Flow k takes the k-th value of each range (wrapping), as pktgen walks its min/max ranges. */
export function makeFlows(f: FlowSpec): Flow[] {
  const ns = f.srcPorts[1] - f.srcPorts[0] + 1;
  const nd = f.dstPorts[1] - f.dstPorts[0] + 1;
  const n = f.flows ?? Math.max(ns, nd, f.srcIps.length);
  if (!(Number.isInteger(n) && n >= 1 && n <= 65536)) throw new UsageError(`bad --flows '${f.flows}': expected 1-65536`);
  // Flow k repeats flow k - period (the ranges wrap together every lcm of their lengths): two "flows" with one
  // 4-tuple would share the sink's account and their seqs would collide.
  const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));
  const period = [ns, nd, f.srcIps.length].reduce((a, b) => Math.min(65537, (a / gcd(a, b)) * b), 1);
  if (n > period) {
    throw new UsageError(`bad --flows '${n}': --src-ip, --sport and --dport (${f.srcIps.length}, ${ns} and ${nd} values) make ` +
      `${period} distinct flow${period === 1 ? '' : 's'}; flow ${period} would repeat flow 0 (widen a range, or --flows ${period})`);
  }
  return Array.from({ length: n }, (_, k) => ({
    srcIp: f.srcIps[k % f.srcIps.length],
    srcPort: f.srcPorts[0] + (k % ns),
    dstPort: f.dstPorts[0] + (k % nd),
  }));
}

/**
 * For IPv6 (dstIp a Buffer): ttl is the hop limit and tos the traffic class; there is no header checksum, IP ID or DF
 * (RFC 8200 §3), so ipChecksum 'bad', df and a numeric ipId are refused, and the UDP checksum is mandatory (§8.1):
 * udpChecksum 'none' is refused too. ipId 'counter' is then simply nothing to count.
 */
export interface TemplateOptions extends FrameProfile {
  srcMac: Buffer;
  dstMac: Buffer;
  dstIp: BlastAddr;
  flows: Flow[];
  sizes: SizeSpec;
  /** Frames carry the pktgen test header (magic, seq, tv_sec, tv_usec) unless false. */
  seq: boolean;
  mtu: number;
  /** 'counter' from 1 (netpoll), 'zero', or a fixed value. */
  ipId: 'counter' | 'zero' | number;
  rand?: () => number;
}

export interface Templates {
  /** The templates back to back: template i is frames[offsets[i], offsets[i] + lengths[i]). */
  frames: Buffer;
  offsets: Uint32Array;
  lengths: Uint32Array;
  /** Flow of each template: the pktgen seq counts per flow. */
  flowOf: Uint32Array;
  /** Template indices in send order; a run cycles through it. */
  order: Uint32Array;
  nFlows: number;
  /** The templates' IP version: 4 (Ethernet/IPv4/UDP) or 6 (Ethernet/IPv6/UDP, nothing between IPv6 and UDP). */
  family: IpFamily;
  /** Offset of the IP header in every template (the Ethernet header, and the 802.1Q tag if any, come first). */
  ipOff: number;
  /** Offset of the UDP header in every template. */
  udpOff: number;
  /** Offset of the pktgen test header in every template, or -1 when they carry none. */
  seqOff: number;
  /** First IP ID for the counter, or -1 (the template's own value stays; always for IPv6, which has none). */
  ipIdStart: number;
  /**
   * The checksums the frames go out with. The templates always carry correct ones (0 for 'none'); a 'bad' one is
   * made per frame, the patch plan's last step (corruptChecksum), so it is exactly the documented value. IPv6 has no
   * header checksum: ipChecksum is 'good' there, meaning none to spoil.
   */
  ipChecksum: 'good' | 'bad';
  udpChecksum: 'good' | 'bad' | 'none';
  /** Mean frame length over the order cycle (for bits/s → frames/s). */
  meanLen: number;
}

/**
 * Frame-size limits for this link: 60 bytes (or what the headers need) up to MTU + Ethernet header (+ tag). Over IPv6
 * the headers alone make 62 bytes, and with the pktgen header 78 (82 tagged): the smallest IPv6 pktgen frame.
 */
export function sizeLimits(o: { mtu: number; vlan?: VlanTag; seq: boolean; family?: IpFamily }): { min: number; max: number } {
  const hdr = udpHeaderLen(o.vlan, o.family ?? 4) + (o.seq ? PKTGEN_HDR_LEN : 0);
  return { min: Math.max(ETH_MIN_FRAME, hdr), max: o.mtu + ETH_HEADER_LEN + (o.vlan ? VLAN_TAG_LEN : 0) };
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/** What IPv6 has no field for, or forbids: refused by name (the CLI says so first, in its own terms). */
function checkIpv6Options(o: TemplateOptions): void {
  const no = (what: string) => new UsageError(`${what} over IPv6`);
  if (o.ipChecksum === 'bad') throw no('--bad-ip-checksum: there is no IPv6 header checksum (RFC 8200 §3) to spoil');
  if (o.df) throw no('--df: IPv6 has no Don\'t Fragment bit (routers never fragment, RFC 8200 §5)');
  if (typeof o.ipId === 'number') throw no('--ip-id: IPv6 has no IP ID (only a Fragment header carries one)');
  if (o.udpChecksum === 'none') throw no('--no-udp-checksum: the UDP checksum is mandatory (RFC 8200 §8.1; a receiver discards a zero one)');
  for (const f of o.flows) {
    if (familyOf(f.srcIp) !== 6 || (f.srcIp as Buffer).length !== IPV6_ADDR_LEN) throw new UsageError('an IPv6 destination needs IPv6 sources: every --src-ip / --from of one family');
  }
}

export function buildTemplates(o: TemplateOptions): Templates {
  const family = familyOf(o.dstIp);
  if (family === 6) checkIpv6Options(o);
  else if (o.flows.some((f) => familyOf(f.srcIp) !== 4)) throw new UsageError('an IPv4 destination needs IPv4 sources: every --src-ip / --from of one family');
  else if (o.flowLabel) throw new UsageError(`--flow-label ${o.flowLabel} is IPv6 only: the IPv4 header has no flow label`);
  const { min, max } = sizeLimits({ ...o, family });
  const sizes = distinctSizes(o.sizes);
  for (const s of sizes) {
    if (s < min || s > max) {
      throw new UsageError(`frame size ${s} is out of range for this link: ${min}-${max} bytes (without FCS; ${min} = headers${o.seq ? ' + 16-byte test header' : ''}${family === 6 ? ' over IPv6' : ' or the Ethernet minimum'}, ${max} = MTU ${o.mtu} + ${max - o.mtu} bytes of Ethernet header)`);
    }
  }
  const hdr = udpHeaderLen(o.vlan, family);
  const ipOff = hdr - (family === 4 ? IPV4_HEADER_LEN : IPV6_HEADER_LEN) - UDP_HEADER_LEN;
  const udpOff = hdr - UDP_HEADER_LEN;
  const sizeIdx = new Map(sizes.map((s, i) => [s, i]));
  const nT = o.flows.length * sizes.length;
  if (nT > 1 << 20) throw new UsageError(`${o.flows.length} flows × ${sizes.length} sizes is too many templates (max 1048576): narrow --flows or --size`);
  const total = o.flows.length * sizes.reduce((a, s) => a + s, 0);
  const frames = Buffer.alloc(total);
  const offsets = new Uint32Array(nT);
  const lengths = new Uint32Array(nT);
  const flowOf = new Uint32Array(nT);
  const fixedId = o.ipId === 'counter' ? 0 : o.ipId === 'zero' ? 0 : o.ipId;
  let off = 0;
  o.flows.forEach((f, fi) => {
    sizes.forEach((s, si) => {
      const payload = Buffer.alloc(Math.max(0, s - hdr));
      // seq 0 / time 0 in the template: the engines overwrite them (and fix the UDP checksum) per frame.
      if (o.seq) writePktgenHeader(payload, 0, 0, 0, 0);
      const frame = family === 6
        ? new Udp6Framer({
          family: 6, srcMac: o.srcMac, dstMac: o.dstMac, srcIp6: f.srcIp as Buffer, dstIp6: o.dstIp as Buffer, srcPort: f.srcPort, dstPort: f.dstPort,
          ttl: o.ttl, tos: o.tos, flowLabel: o.flowLabel, vlan: o.vlan, udpChecksum: 'good', frameSize: s,
        }, s - hdr).build(payload, 0)
        : new UdpFramer({
          srcMac: o.srcMac, dstMac: o.dstMac, srcIp: f.srcIp as number, dstIp: o.dstIp as number, srcPort: f.srcPort, dstPort: f.dstPort,
          ttl: o.ttl, tos: o.tos, df: o.df, vlan: o.vlan, ipChecksum: 'good', udpChecksum: o.udpChecksum === 'none' ? 'none' : 'good', frameSize: s,
        }, s - hdr).build(payload, fixedId);
      const t = fi * sizes.length + si;
      frame.copy(frames, off);
      offsets[t] = off;
      lengths[t] = frame.length;
      flowOf[t] = fi;
      off += frame.length;
    });
  });
  // Walk flows round robin and sizes through their cycle at the same time: lcm(flows, sizes) frames per cycle.
  const seq = sizeSequence(o.sizes, o.rand);
  const nf = o.flows.length;
  let len = (nf / gcd(nf, seq.length)) * seq.length;
  if (len > 1 << 22) len = Math.max(nf, seq.length) * 64; // still visits every flow and size, just not every pairing
  const order = new Uint32Array(len);
  let bytes = 0;
  for (let i = 0; i < len; i++) {
    order[i] = (i % nf) * sizes.length + sizeIdx.get(seq[i % seq.length])!;
    bytes += lengths[order[i]];
  }
  return {
    frames, offsets, lengths, flowOf, order, nFlows: nf, family, ipOff, udpOff,
    seqOff: o.seq ? udpOff + UDP_HEADER_LEN : -1,
    ipIdStart: o.ipId === 'counter' && family === 4 ? 1 : -1,
    ipChecksum: o.ipChecksum ?? 'good',
    udpChecksum: o.udpChecksum ?? 'good',
    meanLen: bytes / len,
  };
}

/** Template i as a view into t.frames. */
export function templateFrame(t: Templates, i: number): Buffer {
  return t.frames.subarray(t.offsets[i], t.offsets[i] + t.lengths[i]);
}

/** Next seq per flow after the first `n` frames of the order cycle (seqs start at 1). */
export function seqAfter(t: Templates, n: number): number[] {
  const L = t.order.length;
  const per = new Array<number>(t.nFlows).fill(0);
  for (let i = 0; i < L; i++) per[t.flowOf[t.order[i]]]++;
  const next = per.map((c) => 1 + Math.floor(n / L) * c);
  for (let i = 0; i < n % L; i++) next[t.flowOf[t.order[i]]]++;
  return next;
}
