/**
 * The searches of RFC 2544 §26 (throughput, latency, frame loss rate, back-to-back) and RFC 9004's revised
 * back-to-back test, pure: every trial goes through the `runTrial` function the caller gives (exp/trial.ts runs it on
 * a real link and a `sink --serve`; the unit tests give a model of a device whose truth they set). No clock, no I/O.
 *
 * One rule for every test: a trial in which the sink dropped frames itself (`ownDrops` > 0: its socket or capture ring
 * overflowed) says nothing about the device. It is run once more; a second such trial ends the run with an error —
 * never a throughput computed from the sink's own loss.
 */
import { RuntimeError } from '../errors.js';
import type {
  BackToBackResult, FrameLossResult, LatencyResult, Rfc2544Run, Rfc2544Test, ThroughputResult, Trial,
} from './results.js';

/** RFC 2544 §9.1's frame sizes for Ethernet, counted here without the FCS (blast's convention): 1518 is 1522 on the wire. */
export const RFC2544_SIZES = [64, 128, 256, 512, 1024, 1280, 1518];

/** What one trial sends: `seconds` of frames at `ratePps`, or a burst of `burst` frames back to back at `ratePps`. */
export type TrialRequest =
  | { size: number; ratePps: number; seconds: number; burst?: undefined; latency?: boolean }
  | { size: number; ratePps: number; burst: number; seconds?: undefined; latency?: boolean };

/** A trial as the runner reports it: the Trial, and for latency trials the sink's clock and histogram. */
export interface TrialOutcome extends Trial {
  /** The sink's aggregate latency HdrHistogram (ns, compressed base64), when it sent one. */
  histogram?: string | null;
  /** The clock the sink timed the frames with. */
  clock?: string;
}

export type RunTrial = (req: TrialRequest) => Promise<TrialOutcome>;

/** The sink dropped frames itself in a trial and in its retry: the run cannot measure the device (exit 1). */
export class SinkOverrunError extends RuntimeError {
  constructor(readonly trial: Trial) {
    super(`the sink could not keep up: it dropped ${trial.ownDrops} frames itself (socket or capture buffer) at size ${trial.size}, ` +
      `${Math.round(trial.ratePps)} pps, in a trial and in its retry; no result is reported from the sink's own loss. ` +
      'Give the sink a CPU of its own or a larger --rcvbuf, or lower --max-rate');
    this.name = 'SinkOverrunError';
  }
}

export interface Rfc2544Params {
  test: Rfc2544Test;
  sizes: number[];
  trialSeconds: number;
  /** Throughput: the loss a passing trial may have, percent (0 = the no-drop rate). */
  lossTolerancePct: number;
  /**
   * Throughput: the search stops once a rate passed and the bracket is within this percent of its upper end (of the
   * max rate, while the device passes above half of it). Back-to-back: once it is within this percent of the burst
   * found (one frame wide, at least).
   */
  resolutionPct: number;
  /** Back-to-back: independent searches per size (RFC 2544 §26.4: at least 50). */
  repeat: number;
  /** The size's maximum offered rate, pps (measured by the caller, or from --max-rate). */
  maxRatePps: (size: number) => Promise<number> | number;
  /** Latency: the rate to measure at (else a throughput search finds it). */
  ratePps?: (size: number) => number;
  /** Back-to-back: the size's throughput for RFC 9004's buffer time (else a throughput search finds it). */
  throughputPps?: (size: number) => number;
  /** Back-to-back: the longest burst tried (default defaultMaxBurst: what the max rate sends in 0.2 s). */
  maxBurst?: (size: number, maxRatePps: number) => number;
}

/** What the search reports as it goes: each trial (numbered from 1) and an upper bound on how many there will be. */
export interface Progress {
  onTrial?: (t: Trial, k: number, n: number) => void;
}

/** Layer-2 bit rate on the wire at `pps` frames of `size` bytes without FCS: + 4 FCS + 8 preamble + 12 inter-frame gap. */
export function lineMbps(size: number, pps: number): number {
  return Math.round(pps * (size + 24) * 8 / 1e3) / 1e3;
}

/** Default back-to-back ceiling: 2 × (frames the max rate sends in 0.1 s), at least 2. */
export function defaultMaxBurst(_size: number, maxRatePps: number): number {
  return Math.max(2, Math.ceil(2 * maxRatePps * 0.1));
}

/** Binary-search steps to narrow [0, 1] to within `fraction`. */
function steps(fraction: number): number {
  return Math.max(0, Math.ceil(Math.log2(1 / fraction)));
}

/**
 * RFC 9004 §5.4: the frames of a loss-free burst the device forwarded meanwhile (at its throughput, for the burst's
 * time at the max rate) were not in its buffer; what is left, timed at the max rate, is the buffer time:
 * Corrected DUT Buffer Time = (1 / MaxRate) × (B2B frames − Throughput × B2B frames / MaxRate). In µs.
 */
export function bufferTimeUs(meanFrames: number, maxRatePps: number, throughputPps: number): number {
  const implied = meanFrames / maxRatePps;
  return Math.round(((meanFrames - throughputPps * implied) / maxRatePps) * 1e9) / 1e3;
}

/** Runs the trials, retrying once a trial the sink lost frames in itself, and numbers them. */
export class TrialLog {
  readonly trials: Trial[] = [];
  private n: number;

  constructor(private readonly run: RunTrial, estimate: number, private readonly progress: Progress = {}) {
    this.n = estimate;
  }

  /** Raises the announced total when a search needs more trials than first thought (a retry, a longer search). */
  expect(more: number): void {
    this.n = Math.max(this.n, this.trials.length + more);
  }

  async trial(req: TrialRequest): Promise<TrialOutcome> {
    let t = await this.record(req);
    if (t.ownDrops > 0) {
      this.expect(1);
      t = await this.record(req);
      if (t.ownDrops > 0) throw new SinkOverrunError(t);
    }
    return t;
  }

  private async record(req: TrialRequest): Promise<TrialOutcome> {
    const out = await this.run(req);
    const { histogram: _h, clock: _c, ...t } = out;
    this.trials.push(t);
    if (this.trials.length > this.n) this.n = this.trials.length;
    this.progress.onTrial?.(t, this.trials.length, this.n);
    return out;
  }
}

/**
 * RFC 2544 §26.1: the highest rate whose loss is ≤ the tolerance. The max rate first (if it passes, that is the
 * answer), then a binary search on [0, max] until a rate has passed and the bracket is within resolutionPct of its
 * upper end. While the device passes above half the max rate that is within resolutionPct of the max rate; a device
 * far slower than the max (blast's unpaced top rate can be 100 × a shaper's) is still found to the same relative
 * precision, where a width fixed at a % of the max would stop at 0 or at a rate off by half (FD.io's MLRsearch also
 * ends on a relative width).
 */
export async function searchThroughput(log: TrialLog, size: number, maxRatePps: number, p: Pick<Rfc2544Params, 'trialSeconds' | 'lossTolerancePct' | 'resolutionPct'>): Promise<ThroughputResult> {
  const pass = (t: Trial) => t.lossPct <= p.lossTolerancePct;
  const first = await log.trial({ size, ratePps: maxRatePps, seconds: p.trialSeconds });
  if (pass(first)) return { size, ratePps: maxRatePps, lineMbps: lineMbps(size, maxRatePps), lossPct: first.lossPct };
  const f = p.resolutionPct / 100;
  let lo = 0;
  let loLoss = 0;
  let hi = maxRatePps;
  log.expect(steps(f));
  while (lo === 0 || hi - lo > Math.max(1, f * hi)) {
    const mid = Math.round((lo + hi) / 2);
    if (mid <= lo || mid >= hi) break; // down to 1 pps: nothing passes
    if (lo === 0 && hi < maxRatePps / 2) log.expect(steps(f) + 1);
    const t = await log.trial({ size, ratePps: mid, seconds: p.trialSeconds });
    if (pass(t)) {
      lo = mid;
      loLoss = t.lossPct;
    } else hi = mid;
  }
  return { size, ratePps: lo, lineMbps: lineMbps(size, lo), lossPct: lo > 0 ? loLoss : first.lossPct };
}

/**
 * RFC 2544 §26.3: loss at 100 %, 90 %, … of the max rate, until two successive steps lose nothing (or 10 % is done).
 */
export async function searchFrameLoss(log: TrialLog, size: number, maxRatePps: number, trialSeconds: number): Promise<FrameLossResult[]> {
  const out: FrameLossResult[] = [];
  let clean = 0;
  for (let pct = 100; pct >= 10 && clean < 2; pct -= 10) {
    const ratePps = Math.max(1, Math.round((maxRatePps * pct) / 100));
    const t = await log.trial({ size, ratePps, seconds: trialSeconds });
    out.push({ size, offeredPct: pct, ratePps, lossPct: t.lossPct });
    clean = t.lossPct === 0 ? clean + 1 : 0;
  }
  return out;
}

/** RFC 2544 §26.2: one trial at the size's throughput rate, one frame per send call so each carries its own stamp. */
export async function measureLatency(log: TrialLog, size: number, ratePps: number, trialSeconds: number): Promise<LatencyResult> {
  const t = await log.trial({ size, ratePps, seconds: trialSeconds, latency: true });
  if (!t.latencyUs) {
    throw new RuntimeError(`the sink timed no frame at size ${size}, ${Math.round(ratePps)} pps (received ${t.received} of ${t.sent}): no latency to report`);
  }
  return { size, ratePps, latencyUs: t.latencyUs, clock: t.clock ?? 'unknown', histogram: t.histogram ?? null };
}

/**
 * RFC 2544 §26.4 / RFC 9004 §5: the longest burst at the max rate that loses nothing, by binary search on the burst
 * length in [1, maxBurst]; maxBurst itself is tried first (a device that takes it all reports it: the search's ceiling).
 */
export async function searchBurst(log: TrialLog, size: number, maxRatePps: number, maxBurst: number, resolutionPct: number): Promise<number> {
  const first = await log.trial({ size, ratePps: maxRatePps, burst: maxBurst });
  if (first.lossPct === 0) return maxBurst;
  let lo = 0;
  let hi = maxBurst;
  log.expect(steps(1 / maxBurst));
  while (hi - lo > Math.max(1, Math.floor((lo * resolutionPct) / 100))) {
    const mid = Math.floor((lo + hi) / 2);
    if (mid <= lo) break;
    const t = await log.trial({ size, ratePps: maxRatePps, burst: mid });
    if (t.lossPct === 0) lo = mid;
    else hi = mid;
  }
  return lo;
}

/** An upper bound on the trials a run takes (retries aside): the `n` of the progress lines' `[k/n]`. */
export function estimateTrials(p: Rfc2544Params, maxBurst = 1000): number {
  const tput = 1 + steps(p.resolutionPct / 100);
  const perSize: Record<Rfc2544Test, number> = {
    throughput: tput,
    'frame-loss': 10,
    latency: 1 + (p.ratePps ? 0 : tput),
    'back-to-back': p.repeat * (1 + steps(1 / maxBurst)) + (p.throughputPps ? 0 : tput),
  };
  return perSize[p.test] * p.sizes.length;
}

/** The run's document without the caller's fields (tool, startedAt, iface, to). */
export type Rfc2544Body = Omit<Rfc2544Run, 'tool' | 'startedAt' | 'iface' | 'to'>;

/** Runs one RFC 2544 test over every size. */
export async function runRfc2544(p: Rfc2544Params, runTrial: RunTrial, progress: Progress = {}): Promise<Rfc2544Body> {
  const log = new TrialLog(runTrial, estimateTrials(p), progress);
  const maxRates: { size: number; ratePps: number }[] = [];
  const throughput: ThroughputResult[] = [];
  const frameLoss: FrameLossResult[] = [];
  const latency: LatencyResult[] = [];
  const backToBack: BackToBackResult[] = [];
  const notes: string[] = [];
  const tput = async (size: number, max: number) => {
    const r = await searchThroughput(log, size, max, p);
    throughput.push(r);
    return r.ratePps;
  };
  for (const size of p.sizes) {
    const max = await p.maxRatePps(size);
    if (!(max > 0)) throw new RuntimeError(`no max rate for size ${size} (got ${max} pps): nothing can be offered`);
    maxRates.push({ size, ratePps: max });
    switch (p.test) {
      case 'throughput':
        await tput(size, max);
        break;
      case 'frame-loss':
        frameLoss.push(...(await searchFrameLoss(log, size, max, p.trialSeconds)));
        break;
      case 'latency': {
        const rate = p.ratePps ? p.ratePps(size) : await tput(size, max);
        if (rate > 0) latency.push(await measureLatency(log, size, rate, p.trialSeconds));
        else notes.push(`size ${size}: no rate lost ≤ ${p.lossTolerancePct}% (throughput 0), so no latency was measured`);
        break;
      }
      case 'back-to-back': {
        const t = p.throughputPps ? p.throughputPps(size) : await tput(size, max);
        const ceiling = (p.maxBurst ?? defaultMaxBurst)(size, max);
        const frames: number[] = [];
        for (let i = 0; i < p.repeat; i++) frames.push(await searchBurst(log, size, max, ceiling, p.resolutionPct));
        const meanFrames = Math.round((frames.reduce((a, b) => a + b, 0) / frames.length) * 100) / 100;
        if (frames.some((f) => f >= ceiling)) notes.push(`size ${size}: a burst of ${ceiling} frames (the search's ceiling) lost nothing; the buffer may be larger`);
        backToBack.push({ size, frames, meanFrames, bufferTimeUs: t > 0 ? bufferTimeUs(meanFrames, max, t) : null });
        break;
      }
    }
  }
  const body: Rfc2544Body = {
    test: p.test, sizesCountFcs: false, sizes: p.sizes, trialSeconds: p.trialSeconds, lossTolerancePct: p.lossTolerancePct,
    maxRatePps: Math.max(...maxRates.map((m) => m.ratePps)), resolutionPct: p.resolutionPct, repeat: p.repeat,
    trials: log.trials, maxRates,
  };
  if (throughput.length) body.throughput = throughput;
  if (p.test === 'frame-loss') body.frameLoss = frameLoss;
  if (p.test === 'latency') body.latency = latency;
  if (p.test === 'back-to-back') body.backToBack = backToBack;
  if (notes.length) body.notes = notes;
  return body;
}
