/**
 * One RFC 2544 trial on a real link: open a trial on the sink's control channel (`rawpoll sink --serve`), blast the
 * frames from this process, wait for the sink to drain what the device still holds, close the trial and turn the
 * sink's report into a Trial. exp/rfc2544.ts decides what to send; this file only sends it and counts.
 *
 * Two seams, so the logic is tested without a network: the control channel (ControlChannel, the subset of
 * exp/control.ts's ControlClient used here) and the sender (Blaster; FrameBlaster is blast's machinery: one ARP for
 * the whole run, a template per size, startBlast per trial).
 */
import { RuntimeError } from '../errors.js';
import type { Engine } from '../link/native.js';
import { NativeLink } from '../link/native.js';
import type { HistogramsDoc, SinkReport } from '../rx/sink.js';
import { startBlast, type BlastResult, type BlastRun } from '../tx/blast.js';
import { UdpSender, type SenderOptions } from '../tx/sender.js';
import { buildTemplates, makeFlows } from '../tx/templates.js';
import type { RunTrial, TrialOutcome, TrialRequest } from './rfc2544.js';

/** What a trial needs of the sink's control channel (exp/control.ts ControlClient). */
export interface ControlChannel {
  open(o: { port: number; expect?: number }): Promise<number>;
  status(trial: number): Promise<{ received?: number }>;
  close(trial: number): Promise<{ report: SinkReport; histograms: HistogramsDoc | null }>;
}

/** `count` frames of `size` bytes at `ratePps` (null: as fast as the link takes them), `batch` frames per send call. */
export interface BlastRequest {
  size: number;
  ratePps: number | null;
  count: number;
  /** 0 = count only; else stop after this long (the unpaced top-rate measurement). */
  durationNs?: number;
  batch?: number;
}

export interface Blaster {
  blast(r: BlastRequest): Promise<BlastResult>;
  /** Stops the blast under way (a signal). */
  stop(): void;
}

export interface TrialRunnerOptions {
  control: ControlChannel;
  blaster: Blaster;
  /** The sink's UDP port: the frames' destination port, where the trial is opened. */
  port: number;
  /** Pause before every trial but the first, ms (RFC 2544 §23: a DUT settles between trials; default 2000). */
  settleMs?: number;
  /** Longest wait after the last frame for the sink to count what is still in flight, ms (RFC 2544 §23: 2 s). */
  drainMs?: number;
  /** How often the sink is asked during the drain, and how long its count must stand still to call it drained, ms. */
  pollMs?: number;
  /**
   * Back-to-back bursts go out unpaced (the max rate was blast's unpaced top rate): frames leave back to back as fast
   * as the link takes them, which is what that rate measured. Otherwise they are paced at the trial's rate.
   */
  unpacedBursts?: boolean;
  sleep?: (ms: number) => Promise<void>;
}

const sleepMs = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const r6 = (x: number) => Math.round(x * 1e6) / 1e6;

/** The Trial of one request from what the sender did and what the sink reported. */
export function trialFrom(req: TrialRequest, sent: BlastResult, report: SinkReport, histograms: HistogramsDoc | null): TrialOutcome {
  const received = report.totals.received;
  const lat = report.totals.latencyUs;
  return {
    size: req.size,
    ratePps: req.ratePps,
    achievedPps: sent.pps,
    burst: req.burst ?? null,
    sent: sent.sent,
    received,
    lossPct: sent.sent > 0 ? r6((100 * Math.max(0, sent.sent - received)) / sent.sent) : 0,
    ownDrops: report.loss.own,
    seconds: req.seconds ?? sent.seconds,
    latencyUs: lat ? { min: lat.min, p50: lat.p50, p99: lat.p99, max: lat.max, avg: lat.avg } : null,
    clock: report.clock,
    histogram: req.latency ? histograms?.latency ?? null : undefined,
  };
}

export class TrialRunner {
  private trials = 0;
  private stopped = false;
  private readonly o: Required<Omit<TrialRunnerOptions, 'unpacedBursts'>> & { unpacedBursts: boolean };

  constructor(o: TrialRunnerOptions) {
    this.o = { settleMs: 2000, drainMs: 2000, pollMs: 100, sleep: sleepMs, unpacedBursts: false, ...o };
  }

  /** The rest of the run stops: the blast under way ends and the next trial is not started. */
  stop(): void {
    this.stopped = true;
    this.o.blaster.stop();
  }

  readonly run: RunTrial = async (req) => {
    const o = this.o;
    if (this.trials++ > 0 && o.settleMs > 0) await o.sleep(o.settleMs);
    if (this.stopped) throw new RuntimeError('stopped');
    const count = req.burst ?? Math.max(1, Math.round(req.ratePps * req.seconds));
    const id = await o.control.open({ port: o.port, expect: count });
    let sent: BlastResult;
    try {
      sent = await o.blaster.blast({
        size: req.size, count, ratePps: req.burst !== undefined && o.unpacedBursts ? null : req.ratePps,
        // Latency trials: one frame per send call, so each frame's test header carries its own send time.
        batch: req.latency ? 1 : undefined,
      });
    } catch (e) {
      await o.control.close(id).catch(() => {});
      throw e;
    }
    if (sent.error || this.stopped) {
      await o.control.close(id).catch(() => {});
      throw new RuntimeError(this.stopped ? 'stopped' : `trial at size ${req.size}, ${Math.round(req.ratePps)} pps: ${sent.error} (${sent.sent} of ${count} frames sent)`);
    }
    await this.drain(id, sent.sent);
    const { report, histograms } = await o.control.close(id);
    return trialFrom(req, sent, report, histograms);
  };

  /** Waits until the sink has counted every frame sent, or its count stood still for two polls, or drainMs passed. */
  private async drain(id: number, sent: number): Promise<void> {
    const o = this.o;
    let last = -1;
    let still = 0;
    for (let waited = 0; waited < o.drainMs; waited += o.pollMs) {
      const s = await o.control.status(id);
      const got = typeof s.received === 'number' ? s.received : null;
      if (got === null) {
        await o.sleep(o.drainMs - waited); // a server that does not say: the RFC's fixed wait
        return;
      }
      if (got >= sent) return;
      still = got === last ? still + 1 : 0;
      if (still >= 2) return;
      last = got;
      await o.sleep(o.pollMs);
    }
  }
}

export interface FrameBlasterOptions {
  engine: Engine;
  iface: string;
  /** Everything but the destination, from the command's flags (cli/common.ts senderOptionsFromFlags). */
  sender: Omit<SenderOptions, 'to'>;
  to: { ip: number; port: number };
  srcPort: number;
  qdiscBypass?: boolean;
}

/**
 * blast's machinery for a run of trials: the interface opened and the next hop ARP-resolved once, then per trial one
 * template (one flow, one size, pktgen test header with seq from 1) and a startBlast run of `count` frames.
 */
export class FrameBlaster implements Blaster {
  private current: BlastRun | null = null;

  private constructor(private readonly o: FrameBlasterOptions, readonly sender: UdpSender, private readonly nativeLink: NativeLink | undefined) {}

  static async open(o: FrameBlasterOptions): Promise<FrameBlaster> {
    // As blast: the native engine sends on its own AF_PACKET socket, the sender's Link (which owns it from here on,
    // closing it also when open fails); a libpcap handle is opened only to answer ARP for a --from the host lacks.
    const nativeLink = o.engine === 'native' ? NativeLink.open(o.iface, { qdiscBypass: !!o.qdiscBypass }) : undefined;
    const sender = await UdpSender.open({ ...o.sender, to: o.to, srcPort: o.srcPort, link: nativeLink });
    return new FrameBlaster(o, sender, nativeLink);
  }

  get mtu(): number {
    return this.sender.mtu;
  }

  async blast(r: BlastRequest): Promise<BlastResult> {
    const s = this.sender;
    const p = this.o.sender;
    const templates = buildTemplates({
      srcMac: s.srcMac, dstMac: s.dstMac, dstIp: this.o.to.ip, seq: true, mtu: s.mtu, sizes: { kind: 'fixed', sizes: [r.size] },
      flows: makeFlows({ srcIps: [s.srcIp], srcPorts: [this.o.srcPort, this.o.srcPort], dstPorts: [this.o.to.port, this.o.to.port] }),
      ttl: p.ttl, tos: p.tos, df: p.df, vlan: p.vlan, ipChecksum: p.ipChecksum, udpChecksum: p.udpChecksum, ipId: 'counter',
    });
    const paced = r.ratePps !== null;
    this.current = startBlast({
      engine: this.o.engine, iface: this.o.iface, link: s.link, nativeLink: this.nativeLink, templates, count: r.count,
      durationNs: r.durationNs ?? 0, pacing: paced ? { pps: r.ratePps! } : {}, batch: r.batch ?? (paced ? 64 : 256),
      qdiscBypass: !!this.o.qdiscBypass, onLinkDown: 'stop',
    });
    try {
      return await this.current.done;
    } finally {
      this.current = null;
    }
  }

  /** blast's unpaced top rate for this size: frames/s over `seconds` as fast as the link takes them. */
  async topRate(size: number, seconds: number): Promise<BlastResult> {
    return this.blast({ size, ratePps: null, count: 0, durationNs: seconds * 1e9 });
  }

  stop(): void {
    this.current?.stop();
  }

  async close(): Promise<void> {
    await this.sender.close();
  }

  abort(): void {
    this.sender.abort();
  }
}
