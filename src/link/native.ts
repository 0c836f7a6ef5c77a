/**
 * The native TX fast path (native/, an N-API addon): an AF_PACKET socket on the interface and a send loop in C that
 * hands the kernel batches of frames with sendmmsg, paced on CLOCK_MONOTONIC, patching per-frame fields itself.
 * The pcap engine (pcap_inject through our libpcap binding, one frame per call) is the simpler path beside it.
 */
import { constants } from 'node:os';
import { LinkDownError, LinkGoneError, RuntimeError, UsageError } from '../errors.js';
import { addonLoadError, loadAddon, tryLoadAddon, type Addon } from './addon.js';
import type { BatchSendError, Link } from './link.js';

export type Engine = 'pcap' | 'native';

export interface NativeBatchResult {
  sent: number;
  waits: number;
  errno: number;
  error: string | null;
}

export interface NativeBlastParams {
  fd: number;
  /** Template frames, back to back. The addon copies them: the Buffer may be reused after blast() returns. */
  frames: Buffer;
  offsets: Uint32Array;
  lengths: Uint32Array;
  /** Flow index of each template: the pktgen seq counts per flow. */
  flows: Uint32Array;
  /** Template indices in send order; the loop cycles through it. */
  order: Uint32Array;
  nFlows: number;
  /**
   * The per-frame changes (tx/plan.ts encodePlan, native/src/plan.h): which fields get the IP ID, the flow's seq and
   * the send time, and which checksums they feed. The loop knows no header offsets of its own.
   */
  plan: Int32Array;
  /** First value of the IP ID counter (+1 per frame, mod 2^16), if the plan patches it. */
  ipId: number;
  /** First seq of every flow (default 1). */
  seqStart?: number;
  /** Frames to send; 0 = until durationNs or stop(). */
  count: number;
  durationNs: number;
  /** Pacing: each frame's slot is gapNs + len * nsPerByte. Both 0 = as fast as the kernel takes them. */
  gapNs: number;
  nsPerByte: number;
  burst: number;
  /** Idle time after each burst, measured from the end of its last sendmmsg. */
  burstGapNs: number;
  /** Most frames per sendmmsg call. */
  batch: number;
  progressMs: number;
  /**
   * Sender threads (unpaced runs only), one per CPU like trafgen's processes. They share the IP ID and seq counters,
   * so every number goes out once, but frames of different threads interleave out of order. Default 1.
   */
  threads?: number;
  /** Wall-clock start (CLOCK_REALTIME), 0 = now. Sleeps, then busy-waits the last stretch. */
  startAtSec: number;
  startAtNsec: number;
  /**
   * The link going down ends the run (errno ENETDOWN) instead of the default: its slots pass, the frames due are
   * counted in notSentLinkDown, and sending resumes on schedule when it is back.
   */
  stopOnLinkDown?: boolean;
}

export interface NativeProgress {
  sent: number;
  bytes: number;
  waits: number;
  elapsedNs: number;
  /** Which sender thread reported (0 with one thread). */
  worker?: number;
}

export interface NativeBlastResult extends NativeProgress {
  notSent: number;
  /** Frames due while the link was down (ENETDOWN, or no IFF_RUNNING at a check): not sent, the schedule went on. */
  notSentLinkDown: number;
  /** Outages the loop saw (it reads the link's flags every ms) and their total length. */
  linkOutages: number;
  linkDownNs: number;
  /** The interface disappeared (ENXIO): the run ended with errno set. */
  linkGone: boolean;
  errno: number;
  error: string | null;
  /** CLOCK_MONOTONIC ns of the first and the last sendmmsg. */
  firstNs: number;
  lastNs: number;
  firstRealSec: number;
  firstRealNsec: number;
  startedLateNs: number;
  lateMaxNs: number;
  lateMeanNs: number;
  /** Groups of the schedule sent (a burst, or the frames due at one wake-up): lateness is measured per group. */
  groups: number;
  /** sendmmsg calls. */
  batches: number;
  nextIpId: number;
  nextSeq: number[];
}

export function nativeAvailable(): boolean {
  return tryLoadAddon() !== null;
}

/** The addon for the native engine, or a RuntimeError saying how to build it. */
export function loadNative(): Addon {
  if (!tryLoadAddon()) throw new RuntimeError(`${addonLoadError()} (both --engine native and --engine pcap need it)`);
  return loadAddon();
}

/** 'native' when the addon is built and loads, else 'pcap'. */
export function defaultEngine(): Engine {
  return nativeAvailable() ? 'native' : 'pcap';
}

export function parseEngine(s: string | undefined): Engine {
  if (s === undefined) return defaultEngine();
  if (s === 'pcap' || s === 'native') return s;
  throw new UsageError(`bad --engine '${s}': expected pcap (libpcap, portable) or native (AF_PACKET + sendmmsg, Linux, needs npm run build:native)`);
}

/** A running native blast: progress events come from the addon's worker thread via the JS event loop. */
export interface NativeBlastHandle {
  done: Promise<NativeBlastResult>;
  stop(): void;
}

function sum<T>(xs: T[], k: keyof T): number {
  return xs.reduce((a, x) => a + (x[k] as unknown as number), 0);
}

/** The figures of several sender threads as one run. */
function merge(rs: NativeBlastResult[]): NativeBlastResult {
  if (rs.length === 1) return rs[0];
  const started = rs.filter((r) => r.sent > 0);
  const first = started.length ? started.reduce((a, r) => (r.firstNs < a.firstNs ? r : a)) : rs[0];
  return {
    sent: sum(rs, 'sent'), bytes: sum(rs, 'bytes'), waits: sum(rs, 'waits'), notSent: sum(rs, 'notSent'),
    // Every thread sees the same outages: count them once.
    notSentLinkDown: sum(rs, 'notSentLinkDown'), linkOutages: Math.max(...rs.map((r) => r.linkOutages)),
    linkDownNs: Math.max(...rs.map((r) => r.linkDownNs)), linkGone: rs.some((r) => r.linkGone),
    elapsedNs: Math.max(...rs.map((r) => r.elapsedNs)),
    errno: rs.find((r) => r.errno)?.errno ?? 0, error: rs.find((r) => r.error)?.error ?? null,
    firstNs: first.firstNs, lastNs: Math.max(...rs.map((r) => r.lastNs)), firstRealSec: first.firstRealSec, firstRealNsec: first.firstRealNsec,
    startedLateNs: Math.max(...rs.map((r) => r.startedLateNs)), lateMaxNs: Math.max(...rs.map((r) => r.lateMaxNs)),
    // Each thread's mean is over its own groups: weigh it by them.
    lateMeanNs: sum(rs, 'groups') ? rs.reduce((a, r) => a + r.lateMeanNs * r.groups, 0) / sum(rs, 'groups') : 0,
    groups: sum(rs, 'groups'), batches: sum(rs, 'batches'),
    nextIpId: rs[rs.length - 1].nextIpId, nextSeq: rs[rs.length - 1].nextSeq,
  };
}

/** One AF_PACKET socket bound to an interface, send-only (protocol 0: it is handed no received frames). */
export class NativeLink implements Link {
  readonly iface: string;
  readonly fd: number;
  readonly ifindex: number;
  readonly qdiscBypass: boolean;
  /** Times a sendmmsg met a full queue and waited (send/sendBatch; blast() reports its own). */
  sendRetries = 0;
  private readonly addon: Addon;
  private closed = false;

  private constructor(addon: Addon, iface: string, r: { fd: number; ifindex: number; qdiscBypass: boolean }) {
    this.addon = addon;
    this.iface = iface;
    this.fd = r.fd;
    this.ifindex = r.ifindex;
    this.qdiscBypass = r.qdiscBypass;
  }

  /** qdiscBypass: PACKET_QDISC_BYPASS — straight to the driver, no qdisc, and no local taps (tcpdump here won't see it). */
  static open(iface: string, opts: { qdiscBypass?: boolean; sndbuf?: number } = {}): NativeLink {
    const addon = loadNative();
    try {
      return new NativeLink(addon, iface, addon.open(iface, { sndbuf: 4 << 20, ...opts }));
    } catch (e) {
      const msg = (e as Error).message;
      if (/no such interface/i.test(msg)) throw new UsageError(`no interface '${iface}' (${msg})`);
      throw new RuntimeError(`cannot open ${iface} for the native engine: ${msg}`);
    }
  }

  /**
   * Link.sendBatch with sendmmsg: frames 0..n-1 of buf (frame i = buf[offsets[i], +lengths[i])), a full queue waited
   * out in C. Returns n; a failure throws LinkDownError (ENETDOWN), LinkGoneError (ENXIO/ENODEV: the interface went
   * away under the socket) or RuntimeError, with `sent` frames before it gone out.
   */
  sendBatch(buf: Uint8Array, offsets: Uint32Array, lengths: Uint32Array, n: number): number {
    if (this.closed) throw Object.assign(new RuntimeError(`native link ${this.iface} is closed`), { sent: 0 }) as BatchSendError;
    if (!(Number.isInteger(n) && n >= 0 && n <= offsets.length && n <= lengths.length)) {
      throw new RangeError(`sendBatch: n ${n} is not 0-${Math.min(offsets.length, lengths.length)} (the frames offsets and lengths describe)`);
    }
    const b = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
    const r = this.addon.sendBatch(this.fd, b, offsets.subarray(0, n), lengths.subarray(0, n));
    this.sendRetries += r.waits;
    if (!r.errno) return r.sent;
    throw Object.assign(this.sendError(r.errno, `send on ${this.iface} failed after ${r.sent} of ${n} frames: ${r.error}`), { sent: r.sent }) as BatchSendError;
  }

  /** One frame: a batch of one. */
  send(frame: Uint8Array): void {
    this.sendBatch(frame, Uint32Array.of(0), Uint32Array.of(frame.length), 1);
  }

  /** ENETDOWN: down (the caller may wait for it); ENXIO/ENODEV: the ifindex the socket is bound to is gone. */
  private sendError(errno: number, msg: string): RuntimeError {
    const E = constants.errno;
    if (errno === E.ENETDOWN) return new LinkDownError(this.iface);
    if (errno === E.ENXIO || errno === E.ENODEV) return new LinkGoneError(this.iface);
    return new RuntimeError(msg);
  }

  /** Runs the paced send loop in C on a worker thread. Resolves with what was sent and what was not. */
  blast(p: Omit<NativeBlastParams, 'fd'>, onProgress: (p: NativeProgress) => void = () => {}): NativeBlastHandle {
    this.check();
    let stop: () => void = () => {};
    const done = new Promise<NativeBlastResult>((res, rej) => {
      // One onDone per sender thread; the run is done when all are, and its figures are their sum.
      const results: NativeBlastResult[] = [];
      let failed: Error | null = null;
      const last = new Map<number, NativeProgress>();
      const progress = (q: NativeProgress) => {
        last.set(q.worker ?? 0, q);
        if (last.size === 1) return onProgress(q);
        const all = [...last.values()];
        onProgress({ sent: sum(all, 'sent'), bytes: sum(all, 'bytes'), waits: sum(all, 'waits'), elapsedNs: Math.max(...all.map((x) => x.elapsedNs)) });
      };
      let threads = 1;
      let calls = 0;
      const h = this.addon.blast({ ...p, fd: this.fd }, progress, (err, r) => {
        calls++;
        if (err) failed = failed ?? err;
        else results.push(r!);
        if (calls < threads) return;
        if (failed) rej(failed);
        else res(merge(results));
      });
      threads = h.threads;
      stop = () => h.stop();
    });
    return { done, stop: () => stop() };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.addon.close(this.fd);
  }

  private check(): void {
    if (this.closed) throw new RuntimeError(`native link ${this.iface} is closed`);
  }
}
