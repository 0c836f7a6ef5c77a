/**
 * The pure half of `rawpoll sink`: per-flow accounts of pktgen test datagrams (PROTOCOLS.md §5) — loss (gaps in seq),
 * duplicates, reordering, inter-arrival times, rate and one-way latency — with live intervals and histograms that
 * merge across sinks. No I/O: src/rx/sink.ts feeds it batches from a receive engine, the unit tests synthetic sequences.
 */
import ipaddr from 'ipaddr.js';
import { UsageError } from '../errors.js';
import { PKTGEN_FIELD, pktgenCheck } from '../proto/pktgen.js';
import { formatIpv4 } from '../wire/addr.js';
import { readBe32 } from '../wire/checksum.js';
import type { PktgenBatch } from './batch.js';
import { decodeHistogram, newHistogram, Samples, SIGNIFICANT_DIGITS, type Histogram } from './histogram.js';

export { initHistograms } from './histogram.js';

const TWO32 = 2 ** 32;

/** How many seqs behind the highest one we remember exactly (to tell a late datagram from a duplicate). */
export const SEQ_WINDOW = 1 << 16;

/**
 * A step in seq larger than this, either way, is not loss or lateness but a restart of the sender or a forged
 * datagram: the flow counts a seq jump and resynchronises on the new seq (what came before keeps its own loss
 * count). 2^24 datagrams is a 16 s outage at 1 Mpps, over 1 s even at 10 GbE line rate of minimum frames: a real
 * gap that long is not what a sink measures. The same goes for a first datagram more than 2^24 past seq 1 (unless
 * midStream): one datagram with seq 0xffffffff used to claim 4294967294 lost.
 */
export const SEQ_JUMP = 1 << 24;

/**
 * With the flow budget full, a flow that has had a single datagram gives way to a new one only this long after it
 * (100 ms). It keeps flows sent round-robin (more of them than the budget) from pushing each other out before their
 * second datagram, for any flow of 10 pps or more; and a flood of forged sources locks new flows out only above
 * --max-flows / 100 ms new sources a second (100 000/s with the default budget).
 */
export const EVICT_AFTER_NS = 100e6;

/** Flows a SinkAccounting keeps by default; datagrams of further flows are counted as 'flows-over-budget'. */
export const DEFAULT_MAX_FLOWS = 10000;

/** x mod m in [0, m), also for a negative x (a seq below the first one on the unwrapped line). */
function mod(x: number, m: number): number {
  return x - Math.floor(x / m) * m;
}

/**
 * IPv6 sources get numeric ids from here up, above every IPv4 address (a u32): one numeric key space holds both
 * families, so flows are keyed, looked up and bounded (--max-flows) the same way.
 */
export const IPV6_ID_BASE = 2 ** 32;

export interface FlowKey {
  /** IPv4: the address (u32). IPv6: the source's interned id (>= IPV6_ID_BASE; unique while the flow lives). */
  srcIp: number;
  srcPort: number;
  /** IPv4: the address, 0 when unknown; IPv6: 0. */
  dstIp: number;
  dstPort: number;
  /** IPv6 flows only: the addresses as RFC 5952 text, dstIp6 null when unknown. */
  srcIp6?: string;
  dstIp6?: string | null;
}

/** RFC 5952 text of the 16 bytes at b[off] (ipaddr.js: lower case, longest zero run as ::). */
export function formatIpv6At(b: Uint8Array, off: number): string {
  return ipaddr.fromByteArray(Array.from(b.subarray(off, off + 16))).toString();
}

/** Whether the 16 bytes at b[off] are all zero (the engine's "unknown"). */
function zero16(b: Uint8Array, off: number): boolean {
  for (let i = 0; i < 16; i++) if (b[off + i] !== 0) return false;
  return true;
}

/** The 16 bytes at b[off] as an 8-character string: a Map key, compared by value. */
function ipv6Key(b: Uint8Array, off: number): string {
  return String.fromCharCode(
    (b[off] << 8) | b[off + 1], (b[off + 2] << 8) | b[off + 3], (b[off + 4] << 8) | b[off + 5], (b[off + 6] << 8) | b[off + 7],
    (b[off + 8] << 8) | b[off + 9], (b[off + 10] << 8) | b[off + 11], (b[off + 12] << 8) | b[off + 13], (b[off + 14] << 8) | b[off + 15]);
}

/**
 * IPv6 source addresses to numeric ids (IPV6_ID_BASE up), counted by reference: an address holds an id only while
 * some flow from it is accounted, so the table never has more entries than the sink has flows (--max-flows), however
 * many sources a spoofed flood makes up. An id is never reused.
 */
export class Ipv6Interner {
  private readonly ids = new Map<string, { id: number; refs: number }>();
  private next = IPV6_ID_BASE;

  /** The id of `key` (ipv6Key), or NaN when no flow has that source. */
  lookup(key: string): number {
    return this.ids.get(key)?.id ?? NaN;
  }

  /** The id of `key`, made if new; one more reference. */
  acquire(key: string): number {
    let e = this.ids.get(key);
    if (e === undefined) this.ids.set(key, (e = { id: this.next++, refs: 0 }));
    e.refs++;
    return e.id;
  }

  release(key: string): void {
    const e = this.ids.get(key);
    if (e !== undefined && --e.refs <= 0) this.ids.delete(key);
  }

  /** Addresses held. */
  get size(): number {
    return this.ids.size;
  }
}

export interface FlowReport {
  /** "IP:PORT"; IPv6 "[IP]:PORT" (RFC 5952 text). */
  src: string;
  /** As src; IP '*' when the engine did not learn the destination address. */
  dst: string;
  srcIp: string;
  srcPort: number;
  dstIp: string;
  dstPort: number;
  /** Datagrams with the pktgen header, duplicates included. */
  received: number;
  /** Distinct seqs received. */
  unique: number;
  /** Seqs never seen: gaps between the start (seq 1, or the first seq seen with midStream) and the highest seq (or `expect`). */
  lost: number;
  duplicates: number;
  /** Datagrams that arrived after one with a higher seq (and were not duplicates). */
  reordered: number;
  /** Of the reordered, those older than SEQ_WINDOW behind the highest seq: counted as new, not checked for duplication. */
  late: number;
  /** Steps in seq beyond SEQ_JUMP (sender restarts or forged datagrams): not counted as loss; the flow resynchronised. */
  seqJumps: number;
  /** Lowest and highest seq seen since the last seq jump (32-bit, as on the wire). */
  firstSeq: number;
  lastSeq: number;
  /** UDP payload bytes. */
  bytes: number;
  /** Between the first and last arrival, seconds. */
  seconds: number;
  pps: number;
  /** Mbit/s (10^6 bits a second) of UDP payload. */
  payloadMbps: number;
  /** Gaps between the flow's datagrams on the receive clock, µs; null before its second datagram. */
  interArrivalUs: InterArrivalUs | null;
  /** Receive wall clock minus the sender's tv_sec/tv_usec, µs; null when the sender left the timestamp 0. */
  latencyUs: LatencyUs | null;
}

/** Quantiles within 1% (HdrHistogram, 2 significant digits) and never above max; max exact. µs, 3 decimals. */
export interface InterArrivalUs {
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

/**
 * As InterArrivalUs, with min and avg exact. A negative latency (clocks not synced) counts as 0 in the quantiles;
 * min and avg keep the true values.
 */
export interface LatencyUs {
  min: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  avg: number;
}

const r3 = (x: number) => Math.round(x * 1000) / 1000;
const us = (ns: number) => r3(ns / 1000);

function interArrivalUs(s: Samples): InterArrivalUs | null {
  if (s.count === 0) return null;
  return { p50: us(s.percentile(50)), p90: us(s.percentile(90)), p99: us(s.percentile(99)), p999: us(s.percentile(99.9)), max: us(s.max) };
}

function latencyUs(s: Samples): LatencyUs | null {
  if (s.count === 0) return null;
  return {
    min: us(s.min), p50: us(s.percentile(50)), p90: us(s.percentile(90)), p99: us(s.percentile(99)), p999: us(s.percentile(99.9)),
    max: us(s.max), avg: us(s.sum / s.count),
  };
}

/** "IP:PORT" of both ends, "[IP]:PORT" for IPv6 (RFC 3986's brackets); an unknown destination address is '*'. */
function endpoints(k: FlowKey): { src: string; dst: string; srcIp: string; dstIp: string } {
  if (k.srcIp6 !== undefined) {
    const dstIp = k.dstIp6 ?? '*';
    return { src: `[${k.srcIp6}]:${k.srcPort}`, dst: `${k.dstIp6 ? `[${dstIp}]` : dstIp}:${k.dstPort}`, srcIp: k.srcIp6, dstIp };
  }
  const srcIp = formatIpv4(k.srcIp);
  const dstIp = k.dstIp === 0 ? '*' : formatIpv4(k.dstIp);
  return { src: `${srcIp}:${k.srcPort}`, dst: `${dstIp}:${k.dstPort}`, srcIp, dstIp };
}

/**
 * One flow's seq bookkeeping. Seqs are unwrapped onto a line (u) so 2^32 wrap-around is just another step. A seq
 * jump (SEQ_JUMP) closes the current segment of the line and starts a new one at the new seq.
 * Memory: ~1 KB for a flow of one datagram, which holds no histogram (a series' first sample is kept inline), so a
 * sink flooded with one datagram from each of many sources stays small. The duplicate bitmap grows with the span of
 * seqs seen, up to SEQ_WINDOW bits = 8 KB; a histogram has 128 counters of 4 bytes per power of two up to its
 * largest value: 6 KB for one reaching 150 µs, 12 KB for 1 s (measured in WASM memory: 9 and ~14 KB).
 */
export class FlowAccount {
  readonly key: FlowKey;
  /** IPv6 flows: the source's interner key and its 16 bytes (the batch fast path compares them). */
  ipv6: { key: string; bytes: Uint8Array } | null = null;
  received = 0;
  unique = 0;
  duplicates = 0;
  reordered = 0;
  late = 0;
  bytes = 0;
  firstArrivalNs = 0;
  lastArrivalNs = 0;
  /** Gaps between arrivals, and one-way latencies, ns. */
  readonly interArrival = new Samples();
  readonly latency = new Samples();
  /** Seq jumps seen after the first datagram (a first seq far from 1 is added by jumps()). */
  private seqJumps = 0;
  private maxU = 0;
  private minU = 0;
  /** `unique` when the current segment began. */
  private segUnique0 = 0;
  /** The first segment, once a jump closed it: its loss depends on the options given to lost(). */
  private firstSeg: { minU: number; maxU: number; unique: number } | null = null;
  /** Loss of the closed segments after the first. */
  private lostClosed = 0;
  /** Bit per seq in (maxU - cap, maxU], cap = 8 × its length: seen or not. Grows to SEQ_WINDOW bits as needed. */
  private seen = new Uint8Array(8);

  constructor(key: FlowKey) {
    this.key = key;
  }

  /**
   * The source address as text (dotted quad, or RFC 5952): what a caller counting hosts should key on, since an
   * IPv6 flow's key.srcIp is an interned id, not an address.
   */
  get srcHost(): string {
    return this.key.srcIp6 ?? formatIpv4(this.key.srcIp);
  }

  private test(u: number): boolean {
    const i = mod(u, this.seen.length * 8);
    return (this.seen[i >> 3] & (1 << (i & 7))) !== 0;
  }

  private mark(u: number): void {
    const i = mod(u, this.seen.length * 8);
    this.seen[i >> 3] |= 1 << (i & 7);
  }

  private clear(u: number): void {
    const i = mod(u, this.seen.length * 8);
    this.seen[i >> 3] &= ~(1 << (i & 7));
  }

  /**
   * Make the bitmap cover `span` seqs ending at maxU (at most SEQ_WINDOW). Everything below minU is unseen, so
   * a bitmap that covers (minU..maxU) answers exactly as a full SEQ_WINDOW one would.
   */
  private cover(span: number): void {
    const cap = this.seen.length * 8;
    if (span <= cap || cap >= SEQ_WINDOW) return;
    let next = cap;
    while (next < span && next < SEQ_WINDOW) next *= 2;
    const old = this.seen;
    const oldTest = (u: number) => { const i = mod(u, cap); return (old[i >> 3] & (1 << (i & 7))) !== 0; };
    this.seen = new Uint8Array(next >> 3);
    for (let u = Math.max(this.minU, this.maxU - cap + 1); u <= this.maxU; u++) if (oldTest(u)) this.mark(u);
  }

  /** Close the current segment and start a new one at `seq` (a restart or a forgery). */
  private resync(seq: number): void {
    const uniq = this.unique - this.segUnique0;
    if (this.firstSeg === null) this.firstSeg = { minU: this.minU, maxU: this.maxU, unique: uniq };
    else this.lostClosed += Math.max(0, this.maxU - this.minU + 1 - uniq);
    this.seqJumps++;
    this.segUnique0 = this.unique;
    this.maxU = this.minU = seq;
    this.seen.fill(0);
    this.mark(seq);
    this.unique++;
  }

  /** One datagram: its 32-bit seq, arrival on the receive clock (ns), one-way latency (ns, NaN = none), payload length. */
  add(seq: number, rxNs: number, latencyNs: number, bytes: number): void {
    seq = seq >>> 0;
    this.bytes += bytes;
    if (this.received === 0) {
      this.firstArrivalNs = rxNs;
      this.maxU = this.minU = seq;
      this.mark(seq);
      this.unique = 1;
    } else {
      this.interArrival.add(rxNs - this.lastArrivalNs);
      // Signed 32-bit distance from the highest seq so far: a step across 2^32 is +1, not -4294967295.
      const delta = ((seq - mod(this.maxU, TWO32)) | 0);
      const u = this.maxU + delta;
      if (delta > SEQ_JUMP || delta < -SEQ_JUMP) {
        this.resync(seq);
      } else if (delta > 0) {
        this.cover(u - this.minU + 1);
        if (delta >= this.seen.length * 8) this.seen.fill(0);
        else for (let x = this.maxU + 1; x < u; x++) this.clear(x);
        this.mark(u);
        this.maxU = u;
        this.unique++;
      } else if (delta === 0) {
        this.duplicates++;
      } else if (this.maxU - u < SEQ_WINDOW) {
        this.cover(this.maxU - Math.min(u, this.minU) + 1);
        if (u < this.minU) this.minU = u;
        if (this.test(u)) {
          this.duplicates++;
        } else {
          this.mark(u);
          this.reordered++;
          this.unique++;
        }
      } else {
        if (u < this.minU) this.minU = u;
        this.late++;
        this.reordered++;
        this.unique++;
      }
    }
    this.received++;
    this.lastArrivalNs = rxNs;
    if (!Number.isNaN(latencyNs)) this.latency.add(latencyNs);
  }

  /** Lowest and highest seq on the unwrapped line (of the current segment). */
  get lowest(): number {
    return this.minU;
  }

  get highest(): number {
    return this.maxU;
  }

  /** Bytes of storage this flow holds: the bitmap and the histograms (as hdr estimates them; WASM mode's run low). */
  get allocatedBytes(): number {
    return this.seen.byteLength + this.interArrival.allocatedBytes + this.latency.allocatedBytes;
  }

  /** Frees the histograms (WASM memory): the flow's gap and latency figures are gone. */
  destroy(): void {
    this.interArrival.destroy();
    this.latency.destroy();
  }

  /** Whether the first seq, counted from seq 1, lies beyond SEQ_JUMP: a jump, not a lost head. */
  private headJump(o: { midStream?: boolean }): boolean {
    const first = this.firstSeg ?? { minU: this.minU };
    return !o.midStream && first.minU - 1 > SEQ_JUMP;
  }

  /** Seq jumps: restarts or forgeries, resynchronised on and not counted as loss. */
  jumps(o: { midStream?: boolean } = {}): number {
    return this.received === 0 ? 0 : this.seqJumps + (this.headJump(o) ? 1 : 0);
  }

  /**
   * Seqs never seen. By default counting starts at seq 1 (pktgen and blast number from 1), so datagrams lost before
   * the first arrival count too; midStream starts at the first seq seen (a sink started after the sender).
   * `expect` (datagrams the sender sent in this flow) makes a lost tail visible too (only without seq jumps: after
   * one, the sender's count no longer lines up with ours). Each segment between seq jumps counts its own gaps; the
   * ones after the first start at their first seq.
   */
  lost(o: { midStream?: boolean; expect?: number } = {}): number {
    if (this.received === 0) return o.expect ?? 0;
    const fromOne = !o.midStream && !this.headJump(o);
    const first = this.firstSeg ?? { minU: this.minU, maxU: this.maxU, unique: this.unique - this.segUnique0 };
    const start = fromOne ? Math.min(1, first.minU) : first.minU;
    const end = this.firstSeg === null && o.expect !== undefined && fromOne ? Math.max(first.maxU, o.expect) : first.maxU;
    let lost = Math.max(0, end - start + 1 - first.unique);
    if (this.firstSeg !== null) lost += this.lostClosed + Math.max(0, this.maxU - this.minU + 1 - (this.unique - this.segUnique0));
    return lost;
  }

  report(o: { midStream?: boolean; expect?: number } = {}): FlowReport {
    const seconds = (this.lastArrivalNs - this.firstArrivalNs) / 1e9;
    const { src, dst, srcIp, dstIp } = endpoints(this.key);
    return {
      src,
      dst,
      srcIp,
      srcPort: this.key.srcPort,
      dstIp,
      dstPort: this.key.dstPort,
      received: this.received,
      unique: this.unique,
      lost: this.lost(o),
      duplicates: this.duplicates,
      reordered: this.reordered,
      late: this.late,
      seqJumps: this.jumps(o),
      firstSeq: mod(this.minU, TWO32),
      lastSeq: mod(this.maxU, TWO32),
      bytes: this.bytes,
      seconds: r3(seconds),
      pps: seconds > 0 ? Math.round((this.received - 1) / seconds) : 0,
      payloadMbps: seconds > 0 ? r3(((this.bytes * 8) / seconds) / 1e6) : 0,
      interArrivalUs: interArrivalUs(this.interArrival),
      latencyUs: latencyUs(this.latency),
    };
  }
}

export interface AccountingOptions {
  /** Count loss from the first seq seen instead of from seq 1 (the sink started after the sender). */
  midStream?: boolean;
  /** Datagrams the sender sent per flow: a lost tail then counts as loss too. */
  expect?: number;
  /**
   * Flows to keep accounts for (default DEFAULT_MAX_FLOWS). Every new source ip:port costs memory, so a flood of
   * spoofed sources would grow the sink without bound. With the budget full, a new flow takes the place of the
   * oldest flow that has had a single datagram, EVICT_AFTER_NS or longer ago (one datagram each is what a flood of
   * forged sources looks like; a real flow has its second soon after, and flows sent round-robin must not push each
   * other out): that datagram is counted under refused['flows-evicted'] and leaves the totals. With no such flow,
   * the new flow's datagrams are counted under refused['flows-over-budget'] and not accounted.
   */
  maxFlows?: number;
  /**
   * Keep latency and inter-arrival percentiles per interval (interval()): two more histogram records per datagram,
   * ~60 ns (measured for one flow in WASM mode: ~150 ns a datagram with them, ~85 ns without). Without it interval
   * reports have counts and rates, and null percentiles.
   */
  intervals?: boolean;
}

/**
 * Why a pktgen datagram was not accounted (besides having no pktgen header: nonPktgen): its flow was over the budget,
 * or it was the only datagram of a flow evicted to make room for a new one.
 */
export type RefusedReason = 'flows-over-budget' | 'flows-evicted';

/** What interval() and totals() add up over the flows. */
export interface FlowSums {
  received: number;
  unique: number;
  lost: number;
  duplicates: number;
  reordered: number;
  /** Seq jumps in all flows (restarts or forgeries: not in `lost`). */
  seqJumps: number;
  /** UDP payload bytes. */
  bytes: number;
}

export interface AccountingTotals extends FlowSums {
  /** Every UDP datagram seen on the port. */
  datagrams: number;
  /** Of those, without the pktgen magic (not ours: ignored). */
  nonPktgen: number;
  /** Of those with the pktgen header, the ones not accounted, by reason. */
  refused: Record<RefusedReason, number>;
  /** Over all flows (their histograms added up); null with no samples. */
  interArrivalUs: InterArrivalUs | null;
  latencyUs: LatencyUs | null;
}

/**
 * The datagrams accounted between two interval() calls. The counts of all intervals of a run add up exactly to the
 * final totals, because each is the change of the same sums over the flows: an evicted flow's datagram leaves
 * `received` in the interval it is evicted, and `lost` is the change in the gap count, negative in an interval where
 * late datagrams filled gaps counted lost before. The tail that `expect` adds to the loss is in the final interval.
 */
export interface IntervalReport {
  /** Seconds since the first arrival of the run, 3 decimals (both 0 before it). */
  start: number;
  end: number;
  received: number;
  unique: number;
  lost: number;
  duplicates: number;
  reordered: number;
  bytes: number;
  pps: number;
  payloadMbps: number;
  /** Over the datagrams of this interval, all flows together; null with no samples (or without options.intervals). µs. */
  latencyUs: { p50: number; p99: number } | null;
  interArrivalUs: { p50: number; p99: number } | null;
}

export const HISTOGRAMS_FORMAT = 'rawpoll-histograms/1';

/**
 * A sink's histograms for merging with other sinks' (`--histogram FILE`): each is HdrHistogram's compressed base64
 * encoding of ns values, null when empty. `latency` and `interArrival` are the sums of the flows'.
 */
export interface HistogramsDoc {
  format: typeof HISTOGRAMS_FORMAT;
  unit: 'ns';
  significantDigits: number;
  latency: string | null;
  interArrival: string | null;
  flows: { src: string; dst: string; latency: string | null; interArrival: string | null }[];
}

/** Merged documents, with the quantiles of the merged aggregates (min, max and avg too come from the histograms). */
export interface MergedHistograms extends HistogramsDoc {
  latencyUs: LatencyUs | null;
  interArrivalUs: InterArrivalUs | null;
}

/**
 * Adds up the aggregate histograms of several sinks' documents; the flows are listed as they came (each is one
 * sink's view). Throws on a document of another format, naming it.
 */
export function mergeHistograms(docs: HistogramsDoc[]): MergedHistograms {
  const latency = newHistogram(64);
  const gaps = newHistogram(64);
  const addDecoded = (into: Histogram, s: string | null, what: string) => {
    if (s === null) return;
    const h = decodeHistogram(s, what);
    into.add(h);
    h.destroy();
  };
  try {
    docs.forEach((d, i) => {
      if (d.format !== HISTOGRAMS_FORMAT || d.unit !== 'ns') {
        throw new UsageError(`bad histograms document ${i + 1}: format '${d.format}', unit '${d.unit}'; expected '${HISTOGRAMS_FORMAT}', 'ns'`);
      }
      addDecoded(latency, d.latency, `'latency' of document ${i + 1}`);
      addDecoded(gaps, d.interArrival, `'interArrival' of document ${i + 1}`);
    });
    const lat = Samples.of(latency);
    const ia = Samples.of(gaps);
    return {
      format: HISTOGRAMS_FORMAT, unit: 'ns', significantDigits: SIGNIFICANT_DIGITS,
      latency: lat.encode(), interArrival: ia.encode(), flows: docs.flatMap((d) => d.flows),
      latencyUs: latencyUs(lat), interArrivalUs: interArrivalUs(ia),
    };
  } finally {
    latency.destroy();
    gaps.destroy();
  }
}

/** All flows of one sink, keyed by (src ip, src port, dst port) — dst ip is recorded but not part of the key. */
export class SinkAccounting {
  readonly options: AccountingOptions;
  readonly maxFlows: number;
  private readonly byKey = new Map<number, Map<number, FlowAccount>>();
  /** IPv6 sources of the accounted flows to their numeric keys (bounded by maxFlows: entries live with their flows). */
  private readonly ipv6Ids = new Ipv6Interner();
  /**
   * The IPv6 datagram account() is working on (source and destination at byte offsets): scratch fields rather than
   * an argument object, so a datagram allocates nothing unless it makes a flow.
   */
  private v6src: Uint8Array | null = null;
  private v6srcOff = 0;
  private v6dst: Uint8Array | null = null;
  private v6dstOff = 0;
  private v6key = '';
  /** Accounted flows in the order they began (a Set: an evicted flow leaves in O(1)). */
  private readonly flowSet = new Set<FlowAccount>();
  /**
   * Flows in the order they began, candidates for eviction while they have a single datagram. Entries of flows
   * that got a second datagram (or were evicted) are skipped when reached; the queue is compacted as its head moves.
   */
  private probation: FlowAccount[] = [];
  private probationHead = 0;
  private last: FlowAccount | null = null;
  datagrams = 0;
  nonPktgen = 0;
  readonly refused: Record<RefusedReason, number> = { 'flows-over-budget': 0, 'flows-evicted': 0 };
  /** The latest arrival in any flow (receive clock, ns), 0 before the first. */
  lastArrivalNs = 0;
  /** The first arrival of the run, null before it: intervals count their seconds from there. */
  private firstArrivalNs: number | null = null;
  /**
   * Gaps and latencies of the current interval, all flows together: two aggregates per sink rather than interval
   * histograms per flow, so a datagram is recorded into at most four histograms (its flow's two and these).
   */
  private readonly intervalGaps = new Samples(64);
  private readonly intervalLatency = new Samples(64);
  /** Where the current interval began (receive clock) and the flow sums then. */
  private intervalStartNs: number | null = null;
  private intervalSums: FlowSums = { received: 0, unique: 0, lost: 0, duplicates: 0, reordered: 0, seqJumps: 0, bytes: 0 };

  constructor(options: AccountingOptions = {}) {
    const max = options.maxFlows ?? DEFAULT_MAX_FLOWS;
    if (!Number.isInteger(max) || max < 1) throw new UsageError(`bad maxFlows '${max}': expected an integer >= 1`);
    this.options = options;
    this.maxFlows = max;
  }

  /** The accounted flows, in the order they began. */
  get flows(): FlowAccount[] {
    return [...this.flowSet];
  }

  /** IPv6 source addresses held for the flows (never more than the flows). */
  get ipv6Sources(): number {
    return this.ipv6Ids.size;
  }

  /** Datagrams with the pktgen header that are accounted in a flow. */
  get accounted(): number {
    return this.datagrams - this.nonPktgen - this.refused['flows-over-budget'] - this.refused['flows-evicted'];
  }

  /**
   * Records 0..n-1 of a receive engine's batch, read from its columns (no allocation per record); its nonPktgen
   * datagrams are counted. With dstPortFilter, records to other ports are skipped, not counted. Returns the records
   * accounted.
   */
  recordBatch(b: PktgenBatch, dstPortFilter?: number): number {
    const { n, af, srcIp, dstIp, srcIp6, dstIp6, srcPort, dstPort, seq, len, rxNs, latencyNs } = b;
    let accounted = 0;
    for (let i = 0; i < n; i++) {
      if (dstPortFilter !== undefined && dstPort[i] !== dstPortFilter) continue;
      this.datagrams++;
      let src = srcIp[i];
      if (af !== undefined && af[i] === 6) src = this.ipv6Source(srcIp6!, i * 16, dstIp6!, i * 16, srcPort[i], dstPort[i]);
      if (this.account(src, srcPort[i], dstIp[i], dstPort[i], seq[i], rxNs[i], latencyNs[i], len[i])) accounted++;
    }
    this.datagrams += b.nonPktgen;
    this.nonPktgen += b.nonPktgen;
    return accounted;
  }

  /**
   * One UDP datagram, its pktgen header parsed here (the unit tests' entry): arrival on the receive clock (ns) and
   * the receive wall clock (µs since the epoch, against the sender's tv_sec/tv_usec). Returns false when it was not
   * accounted (no pktgen header, or its flow is over the budget).
   */
  record(srcIp: number, srcPort: number, dstIp: number, dstPort: number, payload: Uint8Array, arrivalNs: number, wallUs: number): boolean {
    return this.recordAt(srcIp, srcPort, dstIp, dstPort, payload, 0, payload.length, arrivalNs, wallUs);
  }

  /** record() of an IPv6 datagram: its 16-byte source and destination (null or all zero: unknown). */
  record6(src: Uint8Array, srcPort: number, dst: Uint8Array | null, dstPort: number, payload: Uint8Array, arrivalNs: number, wallUs: number): boolean {
    if (src.length !== 16 || (dst !== null && dst.length !== 16)) {
      throw new UsageError(`bad IPv6 address of ${src.length} and ${dst?.length ?? 16} bytes: expected 16 each`);
    }
    const id = this.ipv6Source(src, 0, dst, 0, srcPort, dstPort);
    const ok = this.recordAt(id, srcPort, 0, dstPort, payload, 0, payload.length, arrivalNs, wallUs);
    this.v6src = null; // a datagram without the pktgen header never reached account()
    return ok;
  }

  /** The same for a payload of `len` bytes at buf[off]. */
  recordAt(srcIp: number, srcPort: number, dstIp: number, dstPort: number, buf: Uint8Array, off: number, len: number, arrivalNs: number, wallUs: number): boolean {
    this.datagrams++;
    if (pktgenCheck(buf, off, Math.min(buf.length, off + len)) !== 0) {
      this.nonPktgen++;
      return false;
    }
    const tvSec = readBe32(buf, off + PKTGEN_FIELD.tvSec);
    const tvUsec = readBe32(buf, off + PKTGEN_FIELD.tvUsec);
    // The difference in µs first: wallUs × 1000 is beyond 2^53, where a double's step is 256 ns.
    const latencyNs = tvSec === 0 && tvUsec === 0 ? NaN : Math.round((wallUs - (tvSec * 1e6 + tvUsec)) * 1000);
    return this.account(srcIp, srcPort, dstIp, dstPort, readBe32(buf, off + PKTGEN_FIELD.seq), arrivalNs, latencyNs, len);
  }

  /**
   * The numeric key of the IPv6 source at src[srcOff] (NaN when no flow has it yet: account() interns it if it makes
   * the flow), leaving the datagram's addresses in the scratch fields for account(). The last flow's source is
   * compared byte by byte first: a run of one flow's datagrams makes no key string.
   */
  private ipv6Source(src: Uint8Array, srcOff: number, dst: Uint8Array | null, dstOff: number, srcPort: number, dstPort: number): number {
    this.v6src = src;
    this.v6srcOff = srcOff;
    this.v6dst = dst;
    this.v6dstOff = dstOff;
    const f = this.last;
    if (f !== null && f.ipv6 !== null && f.key.srcPort === srcPort && f.key.dstPort === dstPort) {
      const a = f.ipv6.bytes;
      let same = true;
      for (let j = 0; j < 16 && same; j++) same = a[j] === src[srcOff + j];
      if (same) {
        this.v6key = f.ipv6.key;
        return f.key.srcIp;
      }
    }
    this.v6key = ipv6Key(src, srcOff);
    return this.ipv6Ids.lookup(this.v6key);
  }

  /** Accounts one pktgen datagram in its flow (made, or refused, here); false when refused. */
  private account(srcIp: number, srcPort: number, dstIp: number, dstPort: number, seq: number, rxNs: number, latencyNs: number, bytes: number): boolean {
    let f = this.last;
    const v6 = this.v6src;
    this.v6src = null;
    if (f === null || f.key.srcIp !== srcIp || f.key.srcPort !== srcPort || f.key.dstPort !== dstPort) {
      let inner = this.byKey.get(srcIp);
      const k2 = srcPort * 65536 + dstPort;
      f = inner?.get(k2) ?? null;
      if (f === null) {
        if (this.flowSet.size >= this.maxFlows && !this.evictOne(rxNs)) {
          this.refused['flows-over-budget']++;
          return false;
        }
        let ipv6: FlowAccount['ipv6'] = null;
        let key: FlowKey;
        if (v6 !== null) {
          // After evictOne: the evicted flow may have held this source's last reference, and so its id.
          srcIp = this.ipv6Ids.acquire(this.v6key);
          inner = this.byKey.get(srcIp);
          const d = this.v6dst;
          ipv6 = { key: this.v6key, bytes: v6.slice(this.v6srcOff, this.v6srcOff + 16) };
          key = {
            srcIp, srcPort, dstIp: 0, dstPort, srcIp6: formatIpv6At(v6, this.v6srcOff),
            dstIp6: d === null || zero16(d, this.v6dstOff) ? null : formatIpv6At(d, this.v6dstOff),
          };
        } else {
          key = { srcIp, srcPort, dstIp, dstPort };
        }
        if (inner === undefined) this.byKey.set(srcIp, (inner = new Map()));
        f = new FlowAccount(key);
        f.ipv6 = ipv6;
        inner.set(k2, f);
        this.flowSet.add(f);
        this.probation.push(f);
      }
      this.last = f;
    }
    if (this.options.intervals && f.received > 0) this.intervalGaps.add(rxNs - f.lastArrivalNs);
    f.add(seq, rxNs, latencyNs, bytes);
    if (this.options.intervals && !Number.isNaN(latencyNs)) this.intervalLatency.add(latencyNs);
    if (this.firstArrivalNs === null) this.firstArrivalNs = rxNs;
    if (rxNs > this.lastArrivalNs) this.lastArrivalNs = rxNs;
    return true;
  }

  /** Removes the oldest flow that has had a single datagram, EVICT_AFTER_NS ago or more; false if none. Amortised O(1). */
  private evictOne(nowNs: number): boolean {
    const q = this.probation;
    while (this.probationHead < q.length) {
      const f = q[this.probationHead];
      if (f.received === 1 && this.flowSet.has(f) && nowNs - f.lastArrivalNs < EVICT_AFTER_NS) break; // the oldest is too young
      this.probationHead++;
      if (f.received !== 1 || !this.flowSet.has(f)) continue;
      this.flowSet.delete(f);
      const inner = this.byKey.get(f.key.srcIp)!;
      inner.delete(f.key.srcPort * 65536 + f.key.dstPort);
      if (inner.size === 0) this.byKey.delete(f.key.srcIp);
      if (f.ipv6 !== null) this.ipv6Ids.release(f.ipv6.key);
      if (this.last === f) this.last = null;
      // A one-datagram flow keeps its one sample inline, so this frees nothing today: it keeps a wider eviction
      // rule from leaking WASM memory.
      f.destroy();
      this.refused['flows-evicted']++;
      this.compactProbation();
      return true;
    }
    this.compactProbation();
    return false;
  }

  private compactProbation(): void {
    if (this.probationHead < 1024 || this.probationHead * 2 < this.probation.length) return;
    this.probation = this.probation.slice(this.probationHead).filter((f) => f.received === 1);
    this.probationHead = 0;
  }

  /** The counts over all flows, loss by `o`. */
  /** The counts of totals() without its histograms: cheap enough for a live progress line. */
  counts(): FlowSums {
    return this.sums(this.options);
  }

  private sums(o: { midStream?: boolean; expect?: number }): FlowSums {
    const t: FlowSums = { received: 0, unique: 0, lost: 0, duplicates: 0, reordered: 0, seqJumps: 0, bytes: 0 };
    for (const f of this.flowSet) {
      t.received += f.received;
      t.unique += f.unique;
      t.lost += f.lost(o);
      t.duplicates += f.duplicates;
      t.reordered += f.reordered;
      t.seqJumps += f.jumps(o);
      t.bytes += f.bytes;
    }
    return t;
  }

  /** The flows' gaps and latencies added up; the caller destroys them. */
  private aggregates(): { gaps: Samples; latency: Samples } {
    const gaps = new Samples(64);
    const latency = new Samples(64);
    for (const f of this.flowSet) {
      gaps.addSamples(f.interArrival);
      latency.addSamples(f.latency);
    }
    return { gaps, latency };
  }

  /**
   * Closes the current interval at endNs (the receive clock) and reports the datagrams accounted in it. `final`
   * (the run's last interval) adds the lost tail that `expect` makes visible: without it, a live row would count
   * every datagram not yet sent as lost.
   */
  interval(endNs: number, final = false): IntervalReport {
    const now = this.sums(final ? this.options : { midStream: this.options.midStream });
    const was = this.intervalSums;
    const t0 = this.firstArrivalNs;
    const startNs = this.intervalStartNs ?? t0 ?? endNs;
    const seconds = (endNs - startNs) / 1e9;
    const received = now.received - was.received;
    const bytes = now.bytes - was.bytes;
    const quantiles = (s: Samples) => (s.count === 0 ? null : { p50: us(s.percentile(50)), p99: us(s.percentile(99)) });
    const r: IntervalReport = {
      start: t0 === null ? 0 : r3((startNs - t0) / 1e9),
      end: t0 === null ? 0 : r3((endNs - t0) / 1e9),
      received,
      unique: now.unique - was.unique,
      lost: now.lost - was.lost,
      duplicates: now.duplicates - was.duplicates,
      reordered: now.reordered - was.reordered,
      bytes,
      pps: seconds > 0 ? Math.round(received / seconds) : 0,
      payloadMbps: seconds > 0 ? r3((bytes * 8) / seconds / 1e6) : 0,
      latencyUs: quantiles(this.intervalLatency),
      interArrivalUs: quantiles(this.intervalGaps),
    };
    this.intervalSums = now;
    if (t0 !== null) this.intervalStartNs = endNs;
    this.intervalGaps.reset();
    this.intervalLatency.reset();
    return r;
  }

  totals(): AccountingTotals {
    const { gaps, latency } = this.aggregates();
    const t: AccountingTotals = {
      datagrams: this.datagrams, nonPktgen: this.nonPktgen, refused: { ...this.refused },
      ...this.sums(this.options),
      interArrivalUs: interArrivalUs(gaps), latencyUs: latencyUs(latency),
    };
    gaps.destroy();
    latency.destroy();
    return t;
  }

  flowReports(): FlowReport[] {
    return this.flows.map((f) => f.report(this.options));
  }

  /** The histograms of every flow and their sums, encoded for mergeHistograms (`--histogram FILE`). */
  histograms(): HistogramsDoc {
    const { gaps, latency } = this.aggregates();
    const doc: HistogramsDoc = {
      format: HISTOGRAMS_FORMAT, unit: 'ns', significantDigits: SIGNIFICANT_DIGITS,
      latency: latency.encode(), interArrival: gaps.encode(),
      flows: this.flows.map((f) => {
        const { src, dst } = endpoints(f.key);
        return { src, dst, latency: f.latency.encode(), interArrival: f.interArrival.encode() };
      }),
    };
    gaps.destroy();
    latency.destroy();
    return doc;
  }

  /**
   * Frees every histogram (WASM memory, which is not garbage-collected): call when done with the accounting. Its
   * counts stay readable; its gap and latency figures are gone.
   */
  destroy(): void {
    for (const f of this.flowSet) f.destroy();
    this.intervalGaps.destroy();
    this.intervalLatency.destroy();
  }
}
