/**
 * The frames a blast cycles through: one template per (flow, size), built once by the foundation's UdpFramer, and the
 * order in which a run visits them. Per frame only the fields of the patch plan change (src/tx/plan.ts), which also
 * applies a deliberately bad checksum: the templates' own are always correct.
 */
import { UsageError } from '../errors.js';
import { PKTGEN_HDR_LEN, writePktgenHeader } from '../proto/pktgen.js';
import { ETH_HEADER_LEN, ETH_MIN_FRAME } from '../wire/ethernet.js';
import { IPV4_HEADER_LEN } from '../wire/ipv4.js';
import { UDP_HEADER_LEN } from '../wire/udp.js';
import { udpHeaderLen, UdpFramer, type FrameProfile, type VlanTag } from '../wire/udpframe.js';
import { VLAN_TAG_LEN } from '../wire/vlan.js';

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
  srcIps: number[];
  srcPorts: [number, number];
  dstPorts: [number, number];
  /** Default: the largest of the three range sizes. */
  flows?: number;
}

export interface Flow {
  srcIp: number;
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

export interface TemplateOptions extends FrameProfile {
  srcMac: Buffer;
  dstMac: Buffer;
  dstIp: number;
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
  /** Offset of the IPv4 header in every template (the Ethernet header, and the 802.1Q tag if any, come first). */
  ipOff: number;
  /** Offset of the pktgen test header in every template, or -1 when they carry none. */
  seqOff: number;
  /** First IP ID for the counter, or -1 (the template's own value stays). */
  ipIdStart: number;
  /**
   * The checksums the frames go out with. The templates always carry correct ones (0 for 'none'); a 'bad' one is
   * made per frame, the patch plan's last step (corruptChecksum), so it is exactly the documented value.
   */
  ipChecksum: 'good' | 'bad';
  udpChecksum: 'good' | 'bad' | 'none';
  /** Mean frame length over the order cycle (for bits/s → frames/s). */
  meanLen: number;
}

/** Frame-size limits for this link: 60 bytes (or what the headers need) up to MTU + Ethernet header (+ tag). */
export function sizeLimits(o: { mtu: number; vlan?: VlanTag; seq: boolean }): { min: number; max: number } {
  const hdr = udpHeaderLen(o.vlan) + (o.seq ? PKTGEN_HDR_LEN : 0);
  return { min: Math.max(ETH_MIN_FRAME, hdr), max: o.mtu + ETH_HEADER_LEN + (o.vlan ? VLAN_TAG_LEN : 0) };
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

export function buildTemplates(o: TemplateOptions): Templates {
  const { min, max } = sizeLimits(o);
  const sizes = distinctSizes(o.sizes);
  for (const s of sizes) {
    if (s < min || s > max) {
      throw new UsageError(`frame size ${s} is out of range for this link: ${min}-${max} bytes (without FCS; ${min} = headers${o.seq ? ' + 16-byte test header' : ''} or the Ethernet minimum, ${max} = MTU ${o.mtu} + ${max - o.mtu} bytes of Ethernet header)`);
    }
  }
  const hdr = udpHeaderLen(o.vlan);
  const ipOff = hdr - IPV4_HEADER_LEN - UDP_HEADER_LEN;
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
      const framer = new UdpFramer({
        srcMac: o.srcMac, dstMac: o.dstMac, srcIp: f.srcIp, dstIp: o.dstIp, srcPort: f.srcPort, dstPort: f.dstPort,
        ttl: o.ttl, tos: o.tos, df: o.df, vlan: o.vlan, ipChecksum: 'good', udpChecksum: o.udpChecksum === 'none' ? 'none' : 'good', frameSize: s,
      }, s - hdr);
      const payload = Buffer.alloc(Math.max(0, s - hdr));
      // seq 0 / time 0 in the template: the engines overwrite them (and fix the UDP checksum) per frame.
      if (o.seq) writePktgenHeader(payload, 0, 0, 0, 0);
      const frame = framer.build(payload, fixedId);
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
    frames, offsets, lengths, flowOf, order, nFlows: nf, ipOff,
    seqOff: o.seq ? ipOff + IPV4_HEADER_LEN + UDP_HEADER_LEN : -1,
    ipIdStart: o.ipId === 'counter' ? 1 : -1,
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
