/**
 * `rawpoll blast`: test traffic at a given rate (pktgen's job, from user space). The frames are a few templates
 * — one per (flow, size) — built once by the foundation's UdpFramer; per frame only the IP ID, the pktgen seq and
 * timestamps change, and both checksums follow by RFC 1624 incremental updates. Two engines run the same schedule:
 *   native  the loop in C (native/), sendmmsg batches on an AF_PACKET socket, no JS per packet;
 *   pcap    the loop in JS, frames patched in JS and handed to libpcap a group at a time (PcapLink.sendBatch: the
 *           pcap_inject per frame runs in C): portable, slower.
 * The schedule is absolute (frame i is due at t0 + the sum of the slots before it), so the average rate holds
 * however the OS interrupts us; frames are only sent back to back when they were due (we fell behind) or asked for
 * (--burst). That is the difference from tools that send N frames then sleep out the rest of the second.
 */
import { constants } from 'node:os';
import { performance } from 'node:perf_hooks';
import { LinkDownError, LinkGoneError, RuntimeError, UsageError } from '../errors.js';
import { NativeLink, type Engine, type NativeBlastResult } from '../link/native.js';
import { sentBeforeError, type PcapLink } from '../link/pcap.js';
import { PKTGEN_HDR_LEN, writePktgenHeader } from '../proto/pktgen.js';
import { formatIpv4 } from '../wire/addr.js';
import { ETH_HEADER_LEN, ETH_MIN_FRAME } from '../wire/ethernet.js';
import { IPV4_HEADER_LEN } from '../wire/ipv4.js';
import { UDP_HEADER_LEN } from '../wire/udp.js';
import { udpHeaderLen, UdpFramer, type FrameProfile, type VlanTag } from '../wire/udpframe.js';

// ---------- flag parsing (pure) ----------

const SI: Record<string, number> = { '': 1, k: 1e3, K: 1e3, m: 1e6, M: 1e6, g: 1e9, G: 1e9 };

/** "250kpps", "1.5Mpps", "10000" (pps) or "800Mbps", "2Gbps", "100kbps" (bits/s of frames). */
export function parseRate(s: string): { pps?: number; bps?: number } {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)(pps|bps|b\/s|bit\/s)?\s*$/.exec(s);
  const v = m ? Number(m[1]) * SI[m[2]] : NaN;
  if (!m || !(v > 0) || !Number.isFinite(v)) {
    throw new UsageError(`bad --rate '${s}': expected frames/s like 10000, 250kpps, 1.5Mpps or bits/s of frames like 800Mbps, 2Gbps`);
  }
  return m[3] && m[3] !== 'pps' ? { bps: v } : { pps: v };
}

const DUR: Record<string, number> = { ns: 1, us: 1e3, 'µs': 1e3, ms: 1e6, s: 1e9, m: 60e9, min: 60e9, h: 3600e9 };

/** A duration in ns: "500ns", "10us", "1ms", "1.5s", "2m"; a bare number means `bareUnit`. */
export function parseDuration(s: string, what: string, bareUnit: 'ns' | 'us' | 'ms' | 's' = 's'): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ns|us|µs|ms|s|min|m|h)?\s*$/.exec(s);
  const v = m ? Number(m[1]) * DUR[m[2] ?? bareUnit] : NaN;
  if (!m || !(v > 0) || !Number.isFinite(v)) {
    throw new UsageError(`bad ${what} '${s}': expected a positive duration like 500ns, 10us, 1ms, 2.5s (a bare number is ${bareUnit})`);
  }
  return v;
}

/** "9" or "10000-10015" → [lo, hi]. */
export function parseRange(s: string, what: string, lo: number, hi: number, parse: (x: string) => number = Number): [number, number] {
  const parts = s.split('-');
  const bad = () => new UsageError(`bad ${what} '${s}': expected N or LO-HI with values ${lo}-${hi}`);
  if (parts.length > 2) throw bad();
  let a: number, b: number;
  try {
    a = parse(parts[0].trim());
    b = parts.length === 2 ? parse(parts[1].trim()) : a;
  } catch {
    throw bad();
  }
  if (!Number.isInteger(a) || !Number.isInteger(b) || a < lo || b > hi || a > b) throw bad();
  return [a, b];
}

export type SizeSpec =
  | { kind: 'fixed'; sizes: [number] }
  | { kind: 'cycle'; sizes: number[] }
  | { kind: 'range'; sizes: [number, number] }
  | { kind: 'imix'; sizes: number[]; weights: number[] };

/** The classic "simple IMIX": 7 × 64, 4 × 576, 1 × 1518 (here 1514: frames are counted without the 4-byte FCS). */
export const SIMPLE_IMIX = { sizes: [64, 576, 1514], weights: [7, 4, 1] };

/**
 * Frame sizes --size accepts before the link is known: the Ethernet minimum up to the largest frame any MTU allows
 * (an IPv4 datagram is at most 65535 bytes, plus 14 bytes of Ethernet header and 4 of 802.1Q). buildTemplates then
 * applies the link's own MTU.
 */
export const SIZE_MIN = ETH_MIN_FRAME;
export const SIZE_MAX = 65535 + ETH_HEADER_LEN + 4;
/** Distinct sizes a LO-HI range may span: each is a template per flow (60-9014, jumbo frames, fits). */
export const MAX_RANGE_SIZES = 10000;

/** --size N | A,B,C (cycled) | LO-HI (random, uniform); --imix W,W,W weights the comma list (alone: simple IMIX). */
export function parseSizes(size: string | undefined, imix: string | boolean | undefined): SizeSpec {
  const num = (x: string) => {
    const t = x.trim();
    if (!/^\d+$/.test(t)) throw new UsageError(`bad --size '${size}': expected N, A,B,C or LO-HI (frame bytes without FCS, e.g. 60, 64,576,1514 or 60-1514)`);
    const n = Number(t);
    if (n < SIZE_MIN || n > SIZE_MAX) throw new UsageError(`bad --size '${size}': frame size ${t} is out of range: expected ${SIZE_MIN}-${SIZE_MAX} bytes without FCS (the link's MTU narrows it further)`);
    return n;
  };
  if (imix !== undefined && imix !== false) {
    if (imix === true) {
      if (size !== undefined && size.includes(',')) throw new UsageError('--imix without weights uses the simple IMIX sizes; give weights (--imix 7,4,1) to weight your --size list');
      return { kind: 'imix', ...SIMPLE_IMIX };
    }
    const weights = imix.split(',').map((w) => {
      const t = w.trim();
      if (!/^\d+$/.test(t) || Number(t) > 1000000) throw new UsageError(`bad --imix '${imix}': expected weights like 7,4,1 (integers, one per --size entry)`);
      return Number(t);
    });
    const sizes = size === undefined ? SIMPLE_IMIX.sizes : size.split(',').map(num);
    if (sizes.length !== weights.length) throw new UsageError(`--imix has ${weights.length} weights but --size has ${sizes.length} sizes: give one weight per size`);
    if (weights.every((w) => w === 0)) throw new UsageError(`bad --imix '${imix}': at least one weight must be > 0`);
    return { kind: 'imix', sizes, weights };
  }
  if (size === undefined) return { kind: 'fixed', sizes: [60] };
  if (size.includes(',')) return { kind: 'cycle', sizes: size.split(',').map(num) };
  if (size.includes('-')) {
    const parts = size.split('-');
    if (parts.length !== 2) throw new UsageError(`bad --size '${size}': expected one range LO-HI, like 60-1514`);
    const [a, b] = parts.map(num);
    if (a > b) throw new UsageError(`bad --size '${size}': LO must not exceed HI`);
    if (b - a + 1 > MAX_RANGE_SIZES) throw new UsageError(`bad --size '${size}': ${b - a + 1} sizes in the range, at most ${MAX_RANGE_SIZES} (each is a frame template per flow)`);
    return { kind: 'range', sizes: [a, b] };
  }
  return { kind: 'fixed', sizes: [num(size)] };
}

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

/** Splits "1795000000.250" into whole seconds and nanoseconds without going through a float. */
export function parseStartAt(s: string): { sec: number; nsec: number } {
  const m = /^\s*(\d{1,12})(?:\.(\d{1,9}))?\s*$/.exec(s);
  if (!m) throw new UsageError(`bad --start-at '${s}': expected a Unix time in seconds like 1795000000.250 (date +%s.%N)`);
  return { sec: Number(m[1]), nsec: Number((m[2] ?? '').padEnd(9, '0')) };
}

export function realtimeNowNs(): bigint {
  return BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000)) * 1000n;
}

// ---------- templates ----------

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
  frames: Buffer;
  offsets: Uint32Array;
  lengths: Uint32Array;
  flowOf: Uint32Array;
  order: Uint32Array;
  nFlows: number;
  ipOff: number;
  seqOff: number;
  /** First IP ID for the counter, or -1 (the template's own value stays). */
  ipIdStart: number;
  /** Mean frame length over the order cycle (for bits/s → frames/s). */
  meanLen: number;
}

/** Frame-size limits for this link: 60 bytes (or what the headers need) up to MTU + Ethernet header (+ tag). */
export function sizeLimits(o: { mtu: number; vlan?: VlanTag; seq: boolean }): { min: number; max: number } {
  const hdr = udpHeaderLen(o.vlan) + (o.seq ? PKTGEN_HDR_LEN : 0);
  return { min: Math.max(ETH_MIN_FRAME, hdr), max: o.mtu + ETH_HEADER_LEN + (o.vlan ? 4 : 0) };
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
        ttl: o.ttl, tos: o.tos, df: o.df, vlan: o.vlan, ipChecksum: o.ipChecksum, udpChecksum: o.udpChecksum, frameSize: s,
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
    meanLen: bytes / len,
  };
}

// ---------- the run ----------

export interface Pacing {
  /** Frames per second, or bits per second of frames (Ethernet header to the end of padding; no FCS, preamble or IFG). */
  pps?: number;
  bps?: number;
  /** Fixed gap between frame starts (instead of a rate). */
  gapNs?: number;
  burst?: number;
  burstGapNs?: number;
}

export interface BlastRunOptions {
  engine: Engine;
  iface: string;
  /** The pcap engine sends on this handle (the sender's own, so ARP answering keeps working). */
  pcapLink?: PcapLink | null;
  templates: Templates;
  /** 0 = until durationNs or stop(). */
  count: number;
  durationNs?: number;
  pacing: Pacing;
  startAt?: { sec: number; nsec: number };
  batch?: number;
  /** Native engine, unpaced runs: sender threads (one per CPU). */
  threads?: number;
  qdiscBypass?: boolean;
  progressMs?: number;
  onProgress?: (p: { sent: number; bytes: number; waits: number; elapsedNs: number }) => void;
  /**
   * The link going down mid-run (README, "When the link goes down"): 'continue' (default) keeps the schedule — frames
   * due while it is down are counted in notSentLinkDown (with --count they count toward it) and sending resumes on
   * schedule when it is back; 'stop' ends the run. A vanished interface always ends it (linkEnd 'gone').
   */
  onLinkDown?: LinkDownPolicy;
}

export type LinkDownPolicy = 'continue' | 'stop';

export function parseLinkDownPolicy(s: string | undefined): LinkDownPolicy {
  if (s === undefined || s === 'continue' || s === 'stop') return s ?? 'continue';
  throw new UsageError(`bad --on-link-down '${s}': expected continue (count frames due while the link is down as not sent, resume when it is back) or stop (end the run, exit 1)`);
}

/** How often a send loop reads the link's state (native/src/rawpoll_native.cc LINK_CHECK_NS: the same). */
const LINK_CHECK_NS = 1_000_000;

export interface BlastResult {
  engine: Engine;
  sent: number;
  notSent: number;
  /** Frames whose slot came while the link was down: not sent, and not retried — the schedule went on. */
  notSentLinkDown: number;
  /** Outages the send loop saw (it reads the link state every ms) and their total length in ms. */
  linkOutages: number;
  linkDownMs: number;
  /** Why the link ended the run: it went down with onLinkDown 'stop', or the interface disappeared. */
  linkEnd: 'down' | 'gone' | null;
  bytes: number;
  /** Times a send met a full queue and waited for it (EAGAIN/ENOBUFS): never a drop. */
  waits: number;
  error: string | null;
  /** First to last send, seconds. */
  seconds: number;
  pps: number;
  bitsPerSecond: number;
  requestedPps: number | null;
  /** (achieved − requested) / requested, over the run; null when unpaced. */
  rateError: number | null;
  /** False when stop() came before the first frame (e.g. a signal while waiting for --start-at): nothing went out. */
  started: boolean;
  /** How late the start was against --start-at (null if it never started), and the worst/mean lateness of a frame. */
  startedLateUs: number | null;
  lateMaxUs: number | null;
  lateMeanUs: number | null;
  firstSendEpoch: string;
  sendCalls: number;
  nextSeq: number[];
  qdiscBypass: boolean;
}

export interface BlastRun {
  done: Promise<BlastResult>;
  stop(): void;
}

function schedule(t: Templates, p: Pacing): { gapNs: number; nsPerByte: number; requestedPps: number | null } {
  const gapNs = p.gapNs ?? (p.pps ? 1e9 / p.pps : 0);
  const nsPerByte = p.bps ? 8e9 / p.bps : 0;
  const slot = gapNs + nsPerByte * t.meanLen;
  return { gapNs, nsPerByte, requestedPps: slot > 0 ? 1e9 / slot : null };
}

export function startBlast(o: BlastRunOptions): BlastRun {
  if (o.startAt) {
    const at = BigInt(o.startAt.sec) * 1_000_000_000n + BigInt(o.startAt.nsec);
    if (at < realtimeNowNs()) {
      throw new RuntimeError(`--start-at ${o.startAt.sec}.${String(o.startAt.nsec).padStart(9, '0')} has already passed (now ${(Number(realtimeNowNs() / 1000000n) / 1000).toFixed(3)}); give a time in the future`);
    }
  }
  return o.engine === 'native' ? startNative(o) : startPcap(o);
}

function summarise(o: BlastRunOptions, r: NativeBlastResult, qdiscBypass: boolean, stopCalled: boolean): BlastResult {
  const t = o.templates;
  const started = !(stopCalled && r.sent === 0 && !r.error);
  const { requestedPps } = schedule(t, o.pacing);
  const paced = requestedPps !== null;
  const secs = r.sent > 1 ? (r.lastNs - r.firstNs) / 1e9 : 0;
  // Frame i leaves in slot i: over N frames the run covers N−1 slots from first to last send.
  const pps = secs > 0 ? (r.sent - 1) / secs : 0;
  const us = (ns: number) => Math.round(ns / 100) / 10;
  const linkEnd = r.linkGone ? 'gone' : o.onLinkDown === 'stop' && r.errno === constants.errno.ENETDOWN ? 'down' : null;
  const error = linkEnd === 'gone' ? `interface ${o.iface} disappeared` : linkEnd === 'down' ? `link ${o.iface} went down` : r.error;
  return {
    engine: o.engine, sent: r.sent, notSent: r.notSent, bytes: r.bytes, waits: r.waits, error,
    notSentLinkDown: r.notSentLinkDown, linkOutages: r.linkOutages, linkDownMs: Math.round(r.linkDownNs / 1e5) / 10, linkEnd,
    seconds: Math.round(secs * 1e6) / 1e6, pps: Math.round(pps), bitsPerSecond: secs > 0 ? Math.round((r.bytes * 8 * (r.sent - 1)) / r.sent / secs) : 0,
    requestedPps: requestedPps === null ? null : Math.round(requestedPps * 1000) / 1000,
    rateError: paced && requestedPps && pps ? Math.round(((pps - requestedPps) / requestedPps) * 1e6) / 1e6 : null,
    started, startedLateUs: o.startAt && started ? us(r.startedLateNs) : null,
    lateMaxUs: requestedPps !== null || o.pacing.burstGapNs ? us(r.lateMaxNs) : null,
    lateMeanUs: requestedPps !== null || o.pacing.burstGapNs ? us(r.lateMeanNs) : null,
    firstSendEpoch: `${r.firstRealSec}.${String(Math.floor(r.firstRealNsec / 1000)).padStart(6, '0')}`,
    sendCalls: r.sendCalls, nextSeq: r.nextSeq, qdiscBypass,
  };
}

function startNative(o: BlastRunOptions): BlastRun {
  const link = NativeLink.open(o.iface, { qdiscBypass: !!o.qdiscBypass });
  const t = o.templates;
  const s = schedule(t, o.pacing);
  let h;
  try {
    h = link.blast({
      frames: t.frames, offsets: t.offsets, lengths: t.lengths, flows: t.flowOf, order: t.order, nFlows: t.nFlows,
      ipOff: t.ipOff, seqOff: t.seqOff, ipId: t.ipIdStart, seqStart: 1, timestamps: true,
      count: o.count, durationNs: o.durationNs ?? 0, gapNs: s.gapNs, nsPerByte: s.nsPerByte,
      burst: o.pacing.burst ?? 1, burstGapNs: o.pacing.burstGapNs ?? 0, batch: o.batch ?? 64,
      progressMs: o.progressMs ?? 200, threads: o.threads ?? 1, startAtSec: o.startAt?.sec ?? 0, startAtNsec: o.startAt?.nsec ?? 0,
      stopOnLinkDown: o.onLinkDown === 'stop',
    }, o.onProgress);
  } catch (e) {
    link.close();
    throw e;
  }
  let stopCalled = false;
  const done = h.done.then(
    (r) => {
      link.close();
      if ((o.threads ?? 1) > 1) {
        // Threads share no counters: the k-th frame of the run carries IP ID first + k and the seq its order slot gives
        // (frames due while the link was down keep their numbers: they leave gaps).
        r.nextIpId = (t.ipIdStart + r.sent + r.notSentLinkDown) & 0xffff;
        r.nextSeq = seqAfter(t, r.sent + r.notSentLinkDown);
      }
      return summarise(o, r, link.qdiscBypass, stopCalled);
    },
    (e) => {
      link.close();
      throw new RuntimeError(`native blast on ${o.iface} failed: ${(e as Error).message}`);
    },
  );
  return { done, stop: () => { stopCalled = true; h.stop(); } };
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

// The pcap engine: the same schedule and the same per-frame patching as native/src/rawpoll_native.cc, in JS.
const sleepCell = new Int32Array(new SharedArrayBuffer(4));
const SPIN_NS = 200_000;
const SLICE_NS = 20_000_000; // give the event loop a turn this often (progress, SIGINT)
/** Most frames one sendBatch carries: a bigger --burst goes out in several, back to back (it may be 2^20 frames). */
const BATCH_MAX = 1024;

function monoNs(): number {
  return Number(process.hrtime.bigint());
}

function startPcap(o: BlastRunOptions): BlastRun {
  const link = o.pcapLink;
  if (!link) throw new RuntimeError('the pcap engine needs an open libpcap handle on the interface');
  const t = o.templates;
  const s = schedule(t, o.pacing);
  const paced = s.gapNs > 0 || s.nsPerByte > 0;
  const burst = Math.max(1, o.pacing.burst ?? 1);
  const burstGapNs = o.pacing.burstGapNs ?? 0;
  const nT = t.offsets.length;
  // Templates stay as built: each frame is a copy patched in the batch buffer, its checksums from the template's sums.
  const views = Array.from({ length: nT }, (_, i) => t.frames.subarray(t.offsets[i], t.offsets[i] + t.lengths[i]));
  const ipPartial = new Uint32Array(nT);
  const udpPartial = new Uint32Array(nT);
  const hasSeq = new Uint8Array(nT);
  const udpOn = new Uint8Array(nT);
  const ipOn = t.ipIdStart >= 0;
  const not16 = (v: number) => ~v & 0xffff;
  for (let i = 0; i < nT; i++) {
    const f = views[i];
    ipPartial[i] = not16(f.readUInt16BE(t.ipOff + 10)) + not16(f.readUInt16BE(t.ipOff + 4));
    if (t.seqOff >= 0 && f.length >= t.seqOff + 16) {
      hasSeq[i] = 1;
      const hc = f.readUInt16BE(t.ipOff + 26);
      udpOn[i] = hc !== 0 ? 1 : 0;
      let p = not16(hc);
      for (let k = 4; k < 16; k += 2) p += not16(f.readUInt16BE(t.seqOff + k));
      udpPartial[i] = p;
    }
  }
  const seqs = new Array<number>(t.nFlows).fill(1);
  let ipId = t.ipIdStart;
  let stopped = false;
  let stopCalled = false;
  const L = t.order.length;
  let pos = 0;
  const st = { sent: 0, bytes: 0, waits: 0, notSent: 0, notSentLinkDown: 0, firstNs: 0, lastNs: 0, firstReal: 0, lateMax: 0, lateSum: 0, groups: 0, startedLateNs: 0 };
  let err: string | null = null;
  // The link, as the native loop keeps it: down from a LinkDownError or a read of its state (every LINK_CHECK_NS;
  // the read also sees carrier loss before a send does); while down, the slots pass and their frames are counted.
  const lk = { down: false, since: 0, checked: 0, outages: 0, downNs: 0, gone: false, stoppedDown: false };
  const markDown = (now: number): void => {
    if (lk.down) return;
    lk.down = true;
    lk.since = now;
    lk.checked = now;
    lk.outages++;
    if (o.onLinkDown === 'stop') {
      lk.stoppedDown = true;
      err = `link ${o.iface} went down`;
    }
  };
  const checkLink = (now: number): void => {
    if (now - lk.checked < LINK_CHECK_NS) return;
    lk.checked = now;
    // check() emits the watch's 'up' at once, on which the PcapLink reopens its handle (README, "When the link goes down").
    const s = link.watch.check();
    if (s === 'gone') {
      lk.gone = true;
      err = `interface ${o.iface} disappeared`;
    } else if (s === 'down') markDown(now);
    else if (lk.down) {
      lk.down = false;
      lk.downNs += now - lk.since;
    }
  };

  const ipOff = t.ipOff;
  const seqOff = t.seqOff;
  const udpCs = ipOff + 26;
  const order = t.order;
  const flowOf = t.flowOf;
  const lengths = t.lengths;
  // Per group: the timestamp's bytes and its contribution to the UDP checksum, computed once.
  let tsSum = 0;
  let s0 = 0, s1 = 0, s2 = 0, s3 = 0, u0 = 0, u1 = 0, u2 = 0, u3 = 0;
  const setTime = (realMs: number): void => {
    const sec = Math.floor(realMs / 1000) >>> 0;
    const usec = Math.floor((realMs % 1000) * 1000) >>> 0;
    tsSum = (sec >>> 16) + (sec & 0xffff) + (usec >>> 16) + (usec & 0xffff);
    s0 = sec >>> 24; s1 = (sec >>> 16) & 255; s2 = (sec >>> 8) & 255; s3 = sec & 255;
    u0 = usec >>> 24; u1 = (usec >>> 16) & 255; u2 = (usec >>> 8) & 255; u3 = usec & 255;
  };
  // The group's frames are copied into one buffer, patched there and handed to link.sendBatch at once (one call
  // into the addon per group instead of one per frame). Sized once for the largest group of the largest frames.
  let maxLen = 0;
  for (let i = 0; i < nT; i++) if (t.lengths[i] > maxLen) maxLen = t.lengths[i];
  const batchFrames = Math.min(Math.max(64, burst), BATCH_MAX);
  const batch = Buffer.alloc(batchFrames * maxLen);
  const bOff = new Uint32Array(batchFrames);
  const bLen = new Uint32Array(batchFrames);
  /** Template of each frame in the batch: to undo the counters of those that did not go out, and to skip the copy. */
  const bTi = new Uint32Array(batchFrames);
  /**
   * Frames in the last batch. Its slot j holds template bTi[j] at bOff[j] with only the patched fields changed, and no
   * other slot of that batch overlaps it: when the next batch puts the same template there, the copy is skipped
   * (every field that differs is patched again). A slot beyond it may have been overwritten since.
   */
  let prevM = 0;
  // Plain byte stores and 32-bit folds: this runs once per frame, so no Buffer.write* calls or divisions.
  const patchInto = (ti: number, o: number, copy: boolean): void => {
    const f = batch;
    if (copy) f.set(views[ti], o);
    if (ipOn) {
      const id = ipId & 0xffff;
      ipId++;
      const x = o + ipOff;
      f[x + 4] = id >>> 8;
      f[x + 5] = id & 255;
      let c = ipPartial[ti] + id;
      c = (c & 0xffff) + (c >>> 16);
      c = ~((c & 0xffff) + (c >>> 16)) & 0xffff;
      f[x + 10] = c >>> 8;
      f[x + 11] = c & 255;
    }
    if (hasSeq[ti]) {
      const seq = seqs[flowOf[ti]]++ >>> 0;
      const h = o + seqOff;
      f[h + 4] = seq >>> 24; f[h + 5] = (seq >>> 16) & 255; f[h + 6] = (seq >>> 8) & 255; f[h + 7] = seq & 255;
      f[h + 8] = s0; f[h + 9] = s1; f[h + 10] = s2; f[h + 11] = s3;
      f[h + 12] = u0; f[h + 13] = u1; f[h + 14] = u2; f[h + 15] = u3;
      if (udpOn[ti]) {
        let c = udpPartial[ti] + (seq >>> 16) + (seq & 0xffff) + tsSum;
        c = (c & 0xffff) + (c >>> 16);
        c = ~((c & 0xffff) + (c >>> 16)) & 0xffff;
        if (c === 0) c = 0xffff;
        f[o + udpCs] = c >>> 8;
        f[o + udpCs + 1] = c & 255;
      }
    }
  };
  const waitUntil = (deadline: number): void => {
    for (;;) {
      const left = deadline - monoNs();
      if (left <= 0) return;
      if (left > SPIN_NS) Atomics.wait(sleepCell, 0, 0, Math.min(left - SPIN_NS, SLICE_NS) / 1e6);
      else {
        while (monoNs() < deadline) { /* busy-wait the last stretch */ }
        return;
      }
    }
  };

  const done = (async (): Promise<BlastResult> => {
    if (o.startAt) {
      const at = Number(BigInt(o.startAt.sec) * 1000n + BigInt(Math.floor(o.startAt.nsec / 1e6))) + (o.startAt.nsec % 1e6) / 1e6;
      // Timers while far off; in the last 20 ms, blocking waits of ≤ 1 ms each followed by a turn of the event loop,
      // so a SIGINT until ~1 ms before the start is seen before any frame goes out (with one blocking wait to the
      // start it was seen only after the first 20 ms slice of frames); the last stretch blocks, then spins.
      for (;;) {
        if (stopped) break;
        const left = at - (performance.timeOrigin + performance.now());
        if (left <= 0) {
          st.startedLateNs = -left * 1e6;
          break;
        }
        if (left > 20) await new Promise((r) => setTimeout(r, Math.min(left - 10, 200)));
        else if (left > 1.5) {
          Atomics.wait(sleepCell, 0, 0, Math.min(1, left - 1.2));
          await new Promise((r) => setImmediate(r));
        } else if (left > 0.3) Atomics.wait(sleepCell, 0, 0, left - 0.2);
      }
    }
    // One turn of the event loop before the first slice: startBlast() returns first, so the caller's listeners (link
    // events, signals) are attached before anything is sent (an async function runs synchronously to its first await).
    if (!o.startAt) await new Promise((r) => setImmediate(r));
    const t0 = monoNs();
    let next = t0;
    let lastReport = t0;
    const reportNs = (o.progressMs ?? 200) * 1e6;
    const timeOrigin = performance.timeOrigin;
    while (!stopped && !err) {
      const sliceEnd = monoNs() + SLICE_NS;
      while (!stopped) {
        // --count is met by frames sent plus frames due while the link was down.
        if (o.count && st.sent + st.notSentLinkDown >= o.count) {
          stopped = true;
          break;
        }
        const left = o.count ? o.count - st.sent - st.notSentLinkDown : Infinity;
        if (o.durationNs && (paced ? next : monoNs()) - t0 >= o.durationNs - 1) {
          stopped = true;
          break;
        }
        const groupDeadline = next;
        if (paced || burstGapNs > 0) waitUntil(next);
        else if (lk.down) waitUntil(lk.checked + LINK_CHECK_NS); // unpaced, link down: one group per link check
        const now = monoNs();
        let n = 0;
        if (burst > 1) {
          n = Math.min(burst, left);
          for (let k = 0; k < n; k++) next += s.gapNs + t.lengths[t.order[(pos + k) % L]] * s.nsPerByte;
        } else if (paced) {
          let d = next;
          while (n < 64 && n < left && d <= now) {
            d += s.gapNs + t.lengths[t.order[(pos + n) % L]] * s.nsPerByte;
            n++;
            if (o.durationNs && d - t0 >= o.durationNs - 1) break;
          }
          if (!n) continue;
          next = d;
        } else n = Math.min(64, left);
        checkLink(now);
        if (err) break;
        if (lk.down) {
          // The group's slots pass while the link is down: its frames are counted, not sent later.
          st.notSentLinkDown += n;
          pos = (pos + n) % L;
        } else {
          const realMs = timeOrigin + performance.now();
          setTime(realMs);
          const tSend = monoNs();
          if (!st.firstNs) {
            st.firstNs = tSend;
            st.firstReal = realMs;
          }
          if (paced || burstGapNs > 0) {
            const late = tSend - groupDeadline;
            if (late > 0) {
              st.lateSum += late;
              if (late > st.lateMax) st.lateMax = late;
            }
          }
          st.groups++;
          const retries0 = link.sendRetries;
          // k: frames of the group sent so far; one sendBatch per group (per BATCH_MAX frames of a bigger burst).
          for (let k = 0; k < n;) {
            const m = Math.min(n - k, batchFrames);
            let o = 0;
            for (let j = 0, p = pos; j < m; j++, p = p + 1 === L ? 0 : p + 1) {
              const ti = order[p];
              patchInto(ti, o, j >= prevM || bTi[j] !== ti || bOff[j] !== o);
              bTi[j] = ti;
              bOff[j] = o;
              bLen[j] = lengths[ti];
              o += lengths[ti];
            }
            prevM = m;
            let got = m;
            let failed = false;
            let failure: unknown;
            try {
              link.sendBatch(batch, bOff, bLen, m);
            } catch (e) {
              failed = true;
              failure = e;
              got = sentBeforeError(e);
            }
            st.sent += got;
            for (let j = 0; j < got; j++) st.bytes += bLen[j];
            pos = (pos + got) % L;
            k += got;
            if (failed) {
              // Undo the counters of the frames that did not go out, so the next frames carry their numbers.
              for (let j = got; j < m; j++) {
                if (ipOn) ipId--;
                if (hasSeq[bTi[j]]) seqs[flowOf[bTi[j]]]--;
              }
              if (failure instanceof LinkDownError) {
                // Their slots and those of the rest of the group are gone; the schedule goes on.
                markDown(monoNs());
                st.notSentLinkDown += n - k;
                pos = (pos + n - k) % L;
              } else {
                lk.gone = failure instanceof LinkGoneError;
                err = (failure as Error).message;
                st.notSent += n - k;
              }
              break;
            }
          }
          st.waits += link.sendRetries - retries0;
          st.lastNs = monoNs();
        }
        if (err) break;
        const tEnd = monoNs();
        if (burstGapNs > 0) next = Math.max(next, tEnd + burstGapNs);
        if (tEnd >= sliceEnd) break;
      }
      const tNow = monoNs();
      if (o.onProgress && tNow - lastReport >= reportNs) {
        lastReport = tNow;
        o.onProgress({ sent: st.sent, bytes: st.bytes, waits: st.waits, elapsedNs: tNow - t0 });
      }
      if (!stopped && !err) await new Promise((r) => setImmediate(r));
    }
    if (lk.down) lk.downNs += monoNs() - lk.since;
    // Stopped by the caller, whose watch may have seen the interface vanish before this loop's next read: say so.
    if (!err && stopCalled && link.watch.check() === 'gone') {
      lk.gone = true;
      err = `interface ${o.iface} disappeared`;
    }
    if (err && o.count && o.count > st.sent + st.notSent + st.notSentLinkDown) st.notSent = o.count - st.sent - st.notSentLinkDown;
    const realSec = Math.floor(st.firstReal / 1000);
    const r: NativeBlastResult = {
      sent: st.sent, bytes: st.bytes, waits: st.waits, elapsedNs: st.lastNs - t0, notSent: st.notSent,
      notSentLinkDown: st.notSentLinkDown, linkOutages: lk.outages, linkDownNs: lk.downNs, linkGone: lk.gone,
      errno: err ? (lk.stoppedDown ? constants.errno.ENETDOWN : -1) : 0, error: err,
      firstNs: st.firstNs, lastNs: st.lastNs, firstRealSec: realSec, firstRealNsec: Math.round((st.firstReal - realSec * 1000) * 1e6),
      startedLateNs: st.startedLateNs, lateMaxNs: st.lateMax, lateMeanNs: st.groups ? st.lateSum / st.groups : 0, sendCalls: st.sent,
      nextIpId: ipId & 0xffff, nextSeq: seqs,
    };
    return summarise(o, r, false, stopCalled);
  })();
  return { done, stop: () => { stopCalled = true; stopped = true; } };
}

/** A short human label for a flow list: "10.0.0.1:10000-10015 -> 10.0.0.2:9 (16 flows)". */
export function describeFlows(flows: Flow[], dstIp: number): string {
  const r = (xs: number[], f: (x: number) => string = String) => {
    const lo = Math.min(...xs);
    const hi = Math.max(...xs);
    return lo === hi ? f(lo) : `${f(lo)}-${f(hi)}`;
  };
  const srcIps = r(flows.map((f) => f.srcIp), formatIpv4);
  return `${srcIps}:${r(flows.map((f) => f.srcPort))} -> ${formatIpv4(dstIp)}:${r(flows.map((f) => f.dstPort))} (${flows.length} flow${flows.length === 1 ? '' : 's'})`;
}
