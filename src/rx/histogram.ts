/**
 * The sink's histograms: hdr-histogram-js, the HdrHistogram port (mergeable, with HdrHistogram's standard compressed
 * encoding, so histograms from several sinks add up). No I/O.
 *
 * WebAssembly mode once initHistograms() has run: recordValue costs ~20 ns there against ~120 ns in JS mode,
 * and the sink records up to four values per datagram at ~1M datagrams/s. Without it (the synchronous unit tests)
 * histograms are JS ones; the two kinds cannot be added to each other, so await it before the first sample.
 * A WASM histogram is freed only by destroy(). WASM memory never shrinks; freed space is reused once AssemblyScript's
 * collector has run (building and destroying 10,000-flow accountings over and over, RSS levels off at ~1.6× one's).
 */
import { build, decodeFromCompressedBase64, encodeIntoCompressedBase64, initWebAssembly, type Histogram } from 'hdr-histogram-js';
import { UsageError } from '../errors.js';

export type { Histogram };

/**
 * 2 significant digits: quantiles within 1%. A histogram's counts array is 128 counters per power of two between
 * 256 ns and its largest value (6 KB for one reaching 150 µs, with 32-bit counters); 3 digits cost ~6× that
 * (measured: 46 KB against 8 KB of RSS), too much for the 10,000 flows of --max-flows under a spoofed flood.
 */
export const SIGNIFICANT_DIGITS = 2;

/**
 * Recorded values are clamped to [0, MAX_NS] (2^42 ns, 73 minutes): a negative one-way latency (clocks not synced)
 * counts as 0, and a gap or latency beyond an hour (a paused sender, a forged timestamp) cannot grow a histogram
 * past 36 powers of two, nor past 2^53 where JS-mode histograms go wrong. Samples keeps the true min and max.
 */
export const MAX_NS = 2 ** 42;

let wasm = false;

/** Switches new histograms to WebAssembly. The Sink awaits it before receiving. */
export async function initHistograms(): Promise<void> {
  await initWebAssembly();
  wasm = true;
}

/**
 * An empty histogram of ns values. 32-bit counters for the many per-flow ones (one bucket overflows after 2^32
 * samples: over an hour of one flow at 1 Mpps with all gaps within 1% of each other); 64-bit for the few aggregates.
 */
export function newHistogram(bits: 32 | 64 = 32): Histogram {
  return build({ bitBucketSize: bits, autoResize: true, numberOfSignificantValueDigits: SIGNIFICANT_DIGITS, useWebAssembly: wasm });
}

export function clampNs(v: number): number {
  return v < 0 ? 0 : v > MAX_NS ? MAX_NS : v;
}

/** HdrHistogram's compressed base64 form (the one its Java, Go and C versions read). */
export function encodeHistogram(h: Histogram): string {
  return encodeIntoCompressedBase64(h);
}

/** Decodes into 64-bit counters (decoded histograms are added up), in the current mode; `what` names it in errors. */
export function decodeHistogram(s: string, what: string): Histogram {
  try {
    return decodeFromCompressedBase64(s, 64, wasm);
  } catch (e) {
    throw new UsageError(`bad histogram ${what}: ${(e as Error).message}; expected HdrHistogram's compressed base64 (V2) encoding`);
  }
}

/**
 * A series of ns values: exact count, min, max and sum, and a histogram for quantiles that is made at the second
 * value (the first is min itself until then): a flood of one-datagram flows costs no histogram at all.
 */
export class Samples {
  count = 0;
  min = Infinity;
  max = -Infinity;
  sum = 0;
  hist: Histogram | null = null;

  constructor(private readonly bits: 32 | 64 = 32) {}

  /** A series over a decoded histogram (which it then owns): min, max and sum as the histogram knows them, within 1%. */
  static of(h: Histogram): Samples {
    const s = new Samples(64);
    s.count = h.totalCount;
    if (s.count > 0) {
      s.hist = h;
      s.min = h.getValueAtPercentile(0);
      s.max = h.maxValue;
      s.sum = h.mean * s.count;
    }
    return s;
  }

  add(v: number): void {
    if (this.hist !== null) {
      this.hist.recordValue(clampNs(v));
    } else if (this.count === 1) {
      this.hist = newHistogram(this.bits);
      this.hist.recordValue(clampNs(this.min));
      this.hist.recordValue(clampNs(v));
    }
    this.count++;
    this.sum += v;
    if (v < this.min) this.min = v;
    if (v > this.max) this.max = v;
  }

  /** Adds another series (a flow's into an aggregate). */
  addSamples(o: Samples): void {
    if (o.count === 0) return;
    if (this.hist === null && this.count + o.count >= 2) {
      this.hist = newHistogram(this.bits);
      if (this.count === 1) this.hist.recordValue(clampNs(this.min));
    }
    if (this.hist !== null) {
      if (o.hist !== null) this.hist.add(o.hist);
      else this.hist.recordValue(clampNs(o.min));
    }
    this.count += o.count;
    this.sum += o.sum;
    if (o.min < this.min) this.min = o.min;
    if (o.max > this.max) this.max = o.max;
  }

  /** The value at `percent` (0-100), within 1% and clamped to the exact [min, max]; NaN when empty. */
  percentile(percent: number): number {
    if (this.count === 0) return NaN;
    if (this.hist === null) return this.min;
    const v = this.hist.getValueAtPercentile(percent);
    return Math.min(Math.max(v, this.min), this.max);
  }

  /** Empties the series, keeping its histogram's storage (the sink's per-interval aggregates). */
  reset(): void {
    this.count = 0;
    this.min = Infinity;
    this.max = -Infinity;
    this.sum = 0;
    this.hist?.reset();
  }

  /** The series as HdrHistogram's compressed base64 (a single value goes through a temporary histogram); null when empty. */
  encode(): string | null {
    if (this.count === 0) return null;
    if (this.hist !== null) return encodeHistogram(this.hist);
    const h = newHistogram(this.bits);
    h.recordValue(clampNs(this.min));
    const s = encodeHistogram(h);
    h.destroy();
    return s;
  }

  /** Bytes of counters, as hdr estimates them (0 without a histogram). */
  get allocatedBytes(): number {
    return this.hist?.estimatedFootprintInBytes ?? 0;
  }

  /** Frees the histogram (WASM memory) and empties the series. */
  destroy(): void {
    this.hist?.destroy();
    this.hist = null;
    this.reset();
  }
}
