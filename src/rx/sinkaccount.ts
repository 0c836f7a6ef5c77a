/**
 * The pure half of `rawpoll sink`: per-flow accounts of pktgen test datagrams (PROTOCOLS.md §5) — loss (gaps in seq),
 * duplicates, reordering, inter-arrival times, rate and one-way latency. No I/O: src/rx/sink.ts feeds it from a
 * receive engine, the unit tests from synthetic sequences.
 */
import { UsageError } from '../errors.js';
import { PKTGEN_FIELD, pktgenCheck } from '../proto/pktgen.js';
import { formatIpv4 } from '../wire/addr.js';
import { readBe32 } from '../wire/checksum.js';

const TWO32 = 2 ** 32;

/**
 * A log-bucketed histogram of non-negative numbers (HDR-style): values below 128 are exact, above that each power
 * of two is cut into 64 buckets, so a quantile is within 1/128 (0.8%) of the true value. No allocation per sample:
 * RSS stays flat however long the sink runs. Of the 3136 buckets only the range between the lowest and highest
 * used is allocated (16 at first, 128 bytes), widened as samples fall outside it: a flow's samples span a few
 * powers of two, an empty histogram costs nothing (a sink that preallocated every bucket paid 50 KB per flow).
 */
export class LogHistogram {
  private static readonly EXACT = 128;
  private static readonly SUB = 64;
  private static readonly BUCKETS = LogHistogram.EXACT + 47 * LogHistogram.SUB;
  /** Buckets lo .. lo + counts.length - 1, null before the first sample. */
  private counts: Float64Array | null = null;
  private lo = 0;
  count = 0;
  min = Infinity;
  max = -Infinity;
  sum = 0;

  record(value: number): void {
    const v = value < 0 ? 0 : Math.floor(value);
    const i = LogHistogram.index(v);
    if (this.counts === null) {
      this.lo = i & ~15;
      this.counts = new Float64Array(Math.min(16, LogHistogram.BUCKETS - this.lo));
    } else if (i < this.lo || i >= this.lo + this.counts.length) {
      this.grow(i);
    }
    this.counts![i - this.lo]++;
    this.count++;
    this.sum += value;
    if (value < this.min) this.min = value;
    if (value > this.max) this.max = value;
  }

  /** Widen the bucket range to take bucket i, at least doubling it on that side (few regrowths per flow). */
  private grow(i: number): void {
    const old = this.counts!;
    const hi = this.lo + old.length;
    const lo = i < this.lo ? Math.max(0, Math.min(i & ~15, this.lo - old.length)) : this.lo;
    const top = i >= hi ? Math.min(LogHistogram.BUCKETS, Math.max((i | 15) + 1, hi + old.length)) : hi;
    this.counts = new Float64Array(top - lo);
    this.counts.set(old, this.lo - lo);
    this.lo = lo;
  }

  /** Bytes of bucket storage allocated so far. */
  get allocatedBytes(): number {
    return this.counts?.byteLength ?? 0;
  }

  private static index(v: number): number {
    if (v < LogHistogram.EXACT) return v;
    let e = Math.floor(Math.log2(v));
    let m = Math.floor(v / 2 ** (e - 6));
    // Math.log2 may round across a power of two; put the mantissa back in [64, 128).
    if (m >= 128) { e++; m = Math.floor(v / 2 ** (e - 6)); } else if (m < 64) { e--; m = Math.floor(v / 2 ** (e - 6)); }
    return Math.min(LogHistogram.EXACT + (e - 7) * LogHistogram.SUB + (m - 64), LogHistogram.BUCKETS - 1);
  }

  /** The bucket's midpoint (exact below 128), clamped to the observed min/max. */
  private static valueAt(i: number): number {
    if (i < LogHistogram.EXACT) return i;
    const j = i - LogHistogram.EXACT;
    const e = 7 + Math.floor(j / LogHistogram.SUB);
    const m = 64 + (j % LogHistogram.SUB);
    const width = 2 ** (e - 6);
    return m * width + width / 2;
  }

  /** q in [0, 1]; NaN when empty. */
  quantile(q: number): number {
    if (this.count === 0 || this.counts === null) return NaN;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let k = 0; k < this.counts.length; k++) {
      seen += this.counts[k];
      if (seen >= rank) return Math.min(Math.max(LogHistogram.valueAt(this.lo + k), Math.max(0, this.min)), this.max);
    }
    return this.max;
  }
}

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

export interface FlowKey {
  srcIp: number;
  srcPort: number;
  dstIp: number;
  dstPort: number;
}

export interface FlowReport {
  src: string;
  /** "IP:PORT", IP '*' when the socket was bound to any address. */
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
  /** Bits/s of UDP payload. */
  payloadMbps: number;
  interArrivalUs: { p50: number; p99: number; max: number } | null;
  /** Receive wall clock minus the sender's tv_sec/tv_usec, µs; null when the sender left the timestamp 0. */
  latencyUs: { min: number; p50: number; p99: number; max: number; avg: number } | null;
}

/**
 * One flow's seq bookkeeping. Seqs are unwrapped onto a line (u) so 2^32 wrap-around is just another step. A seq
 * jump (SEQ_JUMP) closes the current segment of the line and starts a new one at the new seq.
 * Memory: 1-2 KB for a flow (the duplicate bitmap grows with the span of seqs seen, up to SEQ_WINDOW bits = 8 KB;
 * the histograms allocate as they fill), so a sink flooded with one datagram from each of many sources stays small.
 */
export class FlowAccount {
  readonly key: FlowKey;
  received = 0;
  unique = 0;
  duplicates = 0;
  reordered = 0;
  late = 0;
  bytes = 0;
  firstArrivalNs = 0;
  lastArrivalNs = 0;
  readonly interArrivalNs = new LogHistogram();
  readonly latencyUs = new LogHistogram();
  latencyMin = Infinity;
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

  /**
   * One datagram: its 32-bit seq, arrival on a monotonic clock (ns), the receive wall clock (µs since the epoch),
   * the sender's timestamp (tv 0/0 = none) and its payload length.
   */
  add(seq: number, arrivalNs: number, wallUs: number, tvSec: number, tvUsec: number, bytes: number): void {
    seq = seq >>> 0;
    this.bytes += bytes;
    if (this.received === 0) {
      this.firstArrivalNs = arrivalNs;
      this.maxU = this.minU = seq;
      this.mark(seq);
      this.unique = 1;
    } else {
      this.interArrivalNs.record(arrivalNs - this.lastArrivalNs);
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
    this.lastArrivalNs = arrivalNs;
    if (tvSec !== 0 || tvUsec !== 0) {
      const lat = wallUs - (tvSec * 1e6 + tvUsec);
      this.latencyUs.record(lat);
      if (lat < this.latencyMin) this.latencyMin = lat;
    }
  }

  /** Lowest and highest seq on the unwrapped line (of the current segment). */
  get lowest(): number {
    return this.minU;
  }

  get highest(): number {
    return this.maxU;
  }

  /** Bytes of typed-array storage this flow holds (bitmap and histogram buckets). */
  get allocatedBytes(): number {
    return this.seen.byteLength + this.interArrivalNs.allocatedBytes + this.latencyUs.allocatedBytes;
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
    const r3 = (x: number) => Math.round(x * 1000) / 1000;
    const ia = this.interArrivalNs;
    const lat = this.latencyUs;
    const srcIp = formatIpv4(this.key.srcIp);
    // A socket bound to 0.0.0.0 does not learn each datagram's destination address: show it as '*'.
    const dstIp = this.key.dstIp === 0 ? '*' : formatIpv4(this.key.dstIp);
    return {
      src: `${srcIp}:${this.key.srcPort}`,
      dst: `${dstIp}:${this.key.dstPort}`,
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
      interArrivalUs: ia.count > 0 ? { p50: r3(ia.quantile(0.5) / 1000), p99: r3(ia.quantile(0.99) / 1000), max: r3(ia.max / 1000) } : null,
      latencyUs: lat.count > 0
        ? { min: r3(this.latencyMin), p50: r3(lat.quantile(0.5)), p99: r3(lat.quantile(0.99)), max: r3(lat.max), avg: r3(lat.sum / lat.count) }
        : null,
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
}

/**
 * Why a pktgen datagram was not accounted (besides having no pktgen header: nonPktgen): its flow was over the budget,
 * or it was the only datagram of a flow evicted to make room for a new one.
 */
export type RefusedReason = 'flows-over-budget' | 'flows-evicted';

export interface AccountingTotals {
  /** Every UDP datagram seen on the port. */
  datagrams: number;
  /** Of those, without the pktgen magic (not ours: ignored). */
  nonPktgen: number;
  /** Of those with the pktgen header, the ones not accounted, by reason. */
  refused: Record<RefusedReason, number>;
  received: number;
  unique: number;
  lost: number;
  duplicates: number;
  reordered: number;
  /** Seq jumps in all flows (restarts or forgeries: not in `lost`). */
  seqJumps: number;
}

/** All flows of one sink, keyed by (src ip, src port, dst port) — dst ip is recorded but not part of the key. */
export class SinkAccounting {
  readonly options: AccountingOptions;
  readonly maxFlows: number;
  private readonly byKey = new Map<number, Map<number, FlowAccount>>();
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
  /** The latest arrival in any flow (monotonic ns), 0 before the first. */
  lastArrivalNs = 0;

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

  /** Datagrams with the pktgen header that are accounted in a flow. */
  get accounted(): number {
    return this.datagrams - this.nonPktgen - this.refused['flows-over-budget'] - this.refused['flows-evicted'];
  }

  /** One UDP datagram; returns false when it was not accounted (no pktgen header, or its flow is over the budget). */
  record(srcIp: number, srcPort: number, dstIp: number, dstPort: number, payload: Uint8Array, arrivalNs: number, wallUs: number): boolean {
    return this.recordAt(srcIp, srcPort, dstIp, dstPort, payload, 0, payload.length, arrivalNs, wallUs);
  }

  /** The same for a payload of `len` bytes at buf[off]: the capture path's no-allocation entry. */
  recordAt(srcIp: number, srcPort: number, dstIp: number, dstPort: number, buf: Uint8Array, off: number, len: number, arrivalNs: number, wallUs: number): boolean {
    this.datagrams++;
    if (pktgenCheck(buf, off, Math.min(buf.length, off + len)) !== 0) {
      this.nonPktgen++;
      return false;
    }
    let f = this.last;
    if (f === null || f.key.srcIp !== srcIp || f.key.srcPort !== srcPort || f.key.dstPort !== dstPort) {
      let inner = this.byKey.get(srcIp);
      const k2 = srcPort * 65536 + dstPort;
      f = inner?.get(k2) ?? null;
      if (f === null) {
        if (this.flowSet.size >= this.maxFlows && !this.evictOne(arrivalNs)) {
          this.refused['flows-over-budget']++;
          return false;
        }
        if (inner === undefined) this.byKey.set(srcIp, (inner = new Map()));
        f = new FlowAccount({ srcIp, srcPort, dstIp, dstPort });
        inner.set(k2, f);
        this.flowSet.add(f);
        this.probation.push(f);
      }
      this.last = f;
    }
    f.add(readBe32(buf, off + PKTGEN_FIELD.seq), arrivalNs, wallUs, readBe32(buf, off + PKTGEN_FIELD.tvSec), readBe32(buf, off + PKTGEN_FIELD.tvUsec), len);
    if (arrivalNs > this.lastArrivalNs) this.lastArrivalNs = arrivalNs;
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
      if (this.last === f) this.last = null;
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

  totals(): AccountingTotals {
    const t: AccountingTotals = {
      datagrams: this.datagrams, nonPktgen: this.nonPktgen, refused: { ...this.refused },
      received: 0, unique: 0, lost: 0, duplicates: 0, reordered: 0, seqJumps: 0,
    };
    for (const f of this.flowSet) {
      t.received += f.received;
      t.unique += f.unique;
      t.lost += f.lost(this.options);
      t.duplicates += f.duplicates;
      t.reordered += f.reordered;
      t.seqJumps += f.jumps(this.options);
    }
    return t;
  }

  flowReports(): FlowReport[] {
    return this.flows.map((f) => f.report(this.options));
  }
}
