/**
 * `rawpoll blast`: test traffic at a given rate (pktgen's job, from user space). The frames are a few templates
 * (templates.ts: one per flow and size, IPv4 or IPv6); per frame only the fields of the patch plan change (plan.ts:
 * IP ID, pktgen seq and timestamps, and the checksums they feed, by RFC 1624; over IPv6 no IP ID or header checksum).
 * Two engines run the same schedule (schedule.ts):
 *   native  the loop in C (native/), sendmmsg batches on an AF_PACKET socket, no JS per packet;
 *   pcap    the schedule in JS (pcapengine.ts), a group at a time: the plan walked in C into one buffer, then
 *           Link.sendBatch (a PcapLink's pcap_inject per frame, in C): portable, answers ARP on the same handle.
 * Both report an EngineResult; summarise() turns it into the run's BlastResult.
 */
import { constants } from 'node:os';
import { performance } from 'node:perf_hooks';
import { RuntimeError } from '../errors.js';
import { NativeLink, type Engine, type NativeBlastParams, type NativeBlastResult } from '../link/native.js';
import { startPcapEngine, type EngineLink } from './pcapengine.js';
import { encodePlan, planFor } from './plan.js';
import { slotOf, type Pacing } from './schedule.js';
import { seqAfter, type Templates } from './templates.js';

export * from './templates.js';
export { Schedule, slotOf, type Grant, type Pacing, type ScheduleOptions } from './schedule.js';

export function realtimeNowNs(): bigint {
  return BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000)) * 1000n;
}

/**
 * The link going down mid-run (README, "When the link goes down"): 'continue' (default) keeps the schedule — frames
 * due while it is down are counted in notSentLinkDown (with --count they count toward it) and sending resumes on
 * schedule when it is back; 'stop' ends the run. A vanished interface always ends it (linkEnd 'gone').
 */
export type LinkDownPolicy = 'continue' | 'stop';

export interface BlastRunOptions {
  engine: Engine;
  iface: string;
  /** The pcap engine sends on this link (the sender's own libpcap handle, so ARP answering keeps working). */
  link?: EngineLink | null;
  /** The native engine blasts on this socket; default: one opened here (qdiscBypass) and closed when the run ends. */
  nativeLink?: NativeLink;
  templates: Templates;
  /** 0 = until durationNs or stop(). */
  count: number;
  durationNs?: number;
  pacing: Pacing;
  startAt?: { sec: number; nsec: number };
  /** Most frames per sendmmsg call (native) or sendBatch call (pcap), when unpaced or catching up; default 64. */
  batch?: number;
  /** Native engine, unpaced runs: sender threads (one per CPU). */
  threads?: number;
  qdiscBypass?: boolean;
  progressMs?: number;
  onProgress?: (p: { sent: number; bytes: number; waits: number; elapsedNs: number }) => void;
  onLinkDown?: LinkDownPolicy;
  /** pcap engine: who walks the patch plan, C (default, when the addon has it) or JS (plan.ts PlanWriter). */
  planWalker?: 'native' | 'js';
}

/**
 * What an engine reports of a run, both engines alike: the C loop's figures (link/native.ts NativeBlastResult says
 * what each means) but its errno and per-thread fields. For the pcap engine `batches` counts its sendBatch calls
 * where the C loop counts sendmmsg calls.
 */
export interface EngineResult extends Omit<NativeBlastResult, 'errno' | 'elapsedNs' | 'worker'> {
  /** The run ended because the link went down and the policy was 'stop'. */
  stoppedOnLinkDown: boolean;
}

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
  /** How late the start was against --start-at (null if it never started), and the worst/mean lateness of a group. */
  startedLateUs: number | null;
  lateMaxUs: number | null;
  lateMeanUs: number | null;
  firstSendEpoch: string;
  /** Calls that handed frames to the kernel's send path (see EngineResult.batches). */
  batches: number;
  nextSeq: number[];
  qdiscBypass: boolean;
}

export interface BlastRun {
  done: Promise<BlastResult>;
  stop(): void;
}

export function startBlast(o: BlastRunOptions): BlastRun {
  if (o.startAt) {
    const at = BigInt(o.startAt.sec) * 1_000_000_000n + BigInt(o.startAt.nsec);
    if (at < realtimeNowNs()) {
      throw new RuntimeError(`--start-at ${o.startAt.sec}.${String(o.startAt.nsec).padStart(9, '0')} has already passed (now ${(Number(realtimeNowNs() / 1000000n) / 1000).toFixed(3)}); give a time in the future`);
    }
  }
  let stopCalled = false;
  let run: { done: Promise<EngineResult>; stop(): void; qdiscBypass: boolean };
  if (o.engine === 'native') run = startNative(o);
  else {
    if (!o.link) throw new RuntimeError('the pcap engine needs an open link on the interface (a libpcap handle)');
    run = {
      ...startPcapEngine({
        link: o.link, iface: o.iface, templates: o.templates, count: o.count, durationNs: o.durationNs ?? 0, pacing: o.pacing,
        startAt: o.startAt, progressMs: o.progressMs, onProgress: o.onProgress, onLinkDown: o.onLinkDown ?? 'continue',
        maxGroup: o.batch, planWalker: o.planWalker,
      }),
      qdiscBypass: false,
    };
  }
  const done = run.done.then((r) => summarise(o, r, run.qdiscBypass, stopCalled));
  return { done, stop: () => { stopCalled = true; run.stop(); } };
}

function summarise(o: BlastRunOptions, r: EngineResult, qdiscBypass: boolean, stopCalled: boolean): BlastResult {
  const started = !(stopCalled && r.sent === 0 && !r.error);
  const { requestedPps } = slotOf(o.pacing, o.templates.meanLen);
  const paced = requestedPps !== null;
  const secs = r.sent > 1 ? (r.lastNs - r.firstNs) / 1e9 : 0;
  // Frame i leaves in slot i: over N frames the run covers N−1 slots from first to last send.
  const pps = secs > 0 ? (r.sent - 1) / secs : 0;
  const us = (ns: number) => Math.round(ns / 100) / 10;
  const linkEnd = r.linkGone ? 'gone' : r.stoppedOnLinkDown ? 'down' : null;
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
    batches: r.batches, nextSeq: r.nextSeq, qdiscBypass,
  };
}

/** The C loop's figures as an EngineResult. */
function fromNative(r: NativeBlastResult, policy: LinkDownPolicy | undefined): EngineResult {
  return {
    sent: r.sent, bytes: r.bytes, waits: r.waits, notSent: r.notSent, notSentLinkDown: r.notSentLinkDown,
    linkOutages: r.linkOutages, linkDownNs: r.linkDownNs, linkGone: r.linkGone, error: r.error,
    stoppedOnLinkDown: policy === 'stop' && r.errno === constants.errno.ENETDOWN,
    firstNs: r.firstNs, lastNs: r.lastNs, firstRealSec: r.firstRealSec, firstRealNsec: r.firstRealNsec,
    startedLateNs: r.startedLateNs, lateMaxNs: r.lateMaxNs, lateMeanNs: r.lateMeanNs,
    groups: r.groups, batches: r.batches, nextIpId: r.nextIpId, nextSeq: r.nextSeq,
  };
}

function startNative(o: BlastRunOptions): { done: Promise<EngineResult>; stop(): void; qdiscBypass: boolean } {
  const own = !o.nativeLink;
  const link = o.nativeLink ?? NativeLink.open(o.iface, { qdiscBypass: !!o.qdiscBypass });
  const close = () => own && link.close();
  const t = o.templates;
  const s = slotOf(o.pacing, t.meanLen);
  // The loop walks the patch plan (native/src/plan.h): it knows no header offsets of its own.
  const params: Omit<NativeBlastParams, 'fd'> = {
    frames: t.frames, offsets: t.offsets, lengths: t.lengths, flows: t.flowOf, order: t.order, nFlows: t.nFlows,
    plan: encodePlan(planFor(t)), ipId: t.ipIdStart, seqStart: 1,
    count: o.count, durationNs: o.durationNs ?? 0, gapNs: s.gapNs, nsPerByte: s.nsPerByte,
    burst: o.pacing.burst ?? 1, burstGapNs: o.pacing.burstGapNs ?? 0, batch: o.batch ?? 64,
    progressMs: o.progressMs ?? 200, threads: o.threads ?? 1, startAtSec: o.startAt?.sec ?? 0, startAtNsec: o.startAt?.nsec ?? 0,
    stopOnLinkDown: o.onLinkDown === 'stop',
  };
  let h;
  try {
    h = link.blast(params, o.onProgress);
  } catch (e) {
    close();
    throw e;
  }
  const done = h.done.then(
    (r) => {
      close();
      if ((o.threads ?? 1) > 1) {
        // Threads share no counters: the k-th frame of the run carries IP ID first + k and the seq its order slot gives
        // (frames due while the link was down keep their numbers: they leave gaps).
        r.nextIpId = (t.ipIdStart + r.sent + r.notSentLinkDown) & 0xffff;
        r.nextSeq = seqAfter(t, r.sent + r.notSentLinkDown);
      }
      return fromNative(r, o.onLinkDown);
    },
    (e) => {
      close();
      throw new RuntimeError(`native blast on ${o.iface} failed: ${(e as Error).message}`);
    },
  );
  return { done, stop: () => h.stop(), qdiscBypass: link.qdiscBypass };
}
