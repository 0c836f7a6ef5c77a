/**
 * What an RFC 2544 / RFC 9004 run produces (`rawpoll rfc2544 … --json`), and what the report renderer (exp/report.ts)
 * draws: one document per run. Frame sizes are blast's: the bytes handed to the NIC, without the 4-byte FCS
 * (`sizesCountFcs: false`); rates are frames per second offered by the sender.
 */
export type Rfc2544Test = 'throughput' | 'latency' | 'frame-loss' | 'back-to-back';

/** One trial: `size`-byte frames at `ratePps` for `seconds` (or a burst of `burst` frames back to back). */
export interface Trial {
  size: number;
  /** Offered rate, frames/s (the sender's requested rate; `achievedPps` what it managed). */
  ratePps: number;
  achievedPps: number;
  /** Back-to-back trials: the burst length in frames (null otherwise). */
  burst: number | null;
  sent: number;
  received: number;
  /** 100 × (sent − received) / sent. */
  lossPct: number;
  /** The sink's own drops in this trial (socket or capture ring): > 0 makes the trial's loss untrustworthy. */
  ownDrops: number;
  seconds: number;
  latencyUs: { min: number; p50: number; p99: number; max: number; avg: number } | null;
}

export interface ThroughputResult {
  size: number;
  /** The highest rate whose loss was <= lossTolerancePct (0 when none was). */
  ratePps: number;
  /** Layer-2 bit rate at that frame rate, counting FCS, preamble and inter-frame gap (size + 4 + 20 bytes a frame). */
  lineMbps: number;
  lossPct: number;
}

export interface FrameLossResult {
  size: number;
  /** Percent of maxRatePps offered (100, 90, … 10). */
  offeredPct: number;
  ratePps: number;
  lossPct: number;
}

export interface LatencyResult {
  size: number;
  ratePps: number;
  latencyUs: { min: number; p50: number; p99: number; max: number; avg: number };
  /** The clock the sink timed the frames with (its report's `clock`). */
  clock: string;
  /** The sink's HdrHistogram of this size's latency (ns, compressed base64), for plotting the distribution. */
  histogram: string | null;
}

export interface BackToBackResult {
  size: number;
  /** The longest loss-free burst of each repeat, frames. */
  frames: number[];
  /** Their mean, frames. */
  meanFrames: number;
  /**
   * RFC 9004 §5.4's corrected DUT buffer time: the burst's frames less those the device forwarded during it (at its
   * throughput), timed at the max rate: (1 / maxRatePps) × (meanFrames − throughputPps × meanFrames / maxRatePps), µs;
   * null without a throughput.
   */
  bufferTimeUs: number | null;
}

export interface Rfc2544Run {
  test: Rfc2544Test;
  tool: string;
  startedAt: string;
  iface: string;
  to: string;
  /** Frame sizes exclude the FCS (blast's convention). */
  sizesCountFcs: false;
  sizes: number[];
  trialSeconds: number;
  lossTolerancePct: number;
  maxRatePps: number;
  resolutionPct: number;
  repeat: number;
  trials: Trial[];
  /** Each size's max rate, frames/s: measured (blast's unpaced top rate) or from --max-rate. maxRatePps is the largest. */
  maxRates?: { size: number; ratePps: number }[];
  /** What the reader should know that the numbers do not say (a size with no latency, a burst search at its ceiling). */
  notes?: string[];
  throughput?: ThroughputResult[];
  frameLoss?: FrameLossResult[];
  latency?: LatencyResult[];
  backToBack?: BackToBackResult[];
}
