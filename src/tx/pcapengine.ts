/**
 * The pcap engine: the schedule (schedule.ts) says when and how many, the patch plan (plan.ts) makes each frame from
 * its template — walked in C, a group per call (native/src/planwriter.cc) — and the link sends a group at a time
 * (Link.sendBatch: for a PcapLink one pcap_inject per frame, in C). Nothing in JS runs per frame. Portable where
 * the native engine's AF_PACKET loop is not, and it answers ARP on the same handle meanwhile. It runs on the JS
 * thread in slices, giving the event loop a turn between them (progress, signals, link events).
 */
import { performance } from 'node:perf_hooks';
import { LinkDownError, LinkGoneError } from '../errors.js';
import { sentBeforeError, type Link } from '../link/link.js';
import type { EngineResult, LinkDownPolicy } from './blast.js';
import { groupWriter, planFor, type GroupWriter } from './plan.js';
import { Schedule, type Pacing } from './schedule.js';
import type { Templates } from './templates.js';

/** How often a send loop reads the link's state (native/src/rawpoll_native.cc LINK_CHECK_NS: the same). */
export const LINK_CHECK_NS = 1_000_000;
const SPIN_NS = 200_000;
/** Give the event loop a turn this often (progress, SIGINT). */
const SLICE_NS = 20_000_000;
/** A group due further off than this is waited for on a timer, with the event loop free meanwhile. */
const TIMER_WAIT_NS = 4_000_000;
/** Default for the most frames a group holds when unpaced, or when a paced sender catches up (--batch). */
const GROUP_MAX = 64;
/** Most frames one sendBatch carries: a bigger --burst goes out in several, back to back (it may be 2^20 frames). */
const BATCH_MAX = 1024;
const sleepCell = new Int32Array(new SharedArrayBuffer(4));

/** What the engine sends on: a Link, and (a PcapLink's LinkWatch) a way to read the link's state between sends. */
export type EngineLink = Pick<Link, 'sendBatch' | 'sendRetries'> & { readonly watch?: { check(): 'up' | 'down' | 'gone' } };

export interface PcapEngineOptions {
  link: EngineLink;
  iface: string;
  templates: Templates;
  /** 0 = until durationNs or stop(). */
  count: number;
  durationNs: number;
  pacing: Pacing;
  startAt?: { sec: number; nsec: number };
  progressMs?: number;
  onProgress?: (p: { sent: number; bytes: number; waits: number; elapsedNs: number }) => void;
  onLinkDown: LinkDownPolicy;
  /** Most frames a group holds when unpaced, or when a paced sender catches up (--batch; default 64). */
  maxGroup?: number;
  /** Who walks the patch plan: the C writer (default, when the addon has it) or PlanWriter in JS. */
  planWalker?: 'native' | 'js';
}

function monoNs(): number {
  return Number(process.hrtime.bigint());
}

function realtimeNs(): bigint {
  return BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6));
}

/** Blocks until `deadline` (monoNs): sleeps while far, busy-waits the last SPIN_NS. */
function waitUntil(deadline: number): void {
  for (;;) {
    const left = deadline - monoNs();
    if (left <= 0) return;
    if (left > SPIN_NS) Atomics.wait(sleepCell, 0, 0, Math.min(left - SPIN_NS, SLICE_NS) / 1e6);
    else {
      while (monoNs() < deadline) { /* busy-wait the last stretch */ }
      return;
    }
  }
}

/**
 * The link as the native loop keeps it: down from a LinkDownError or a read of its state (every LINK_CHECK_NS; the
 * read also sees carrier loss before a send does). While it is down the slots pass and their frames are counted.
 */
class LinkHealth {
  down = false;
  outages = 0;
  downNs = 0;
  gone = false;
  /** The run ended because the link went down under --on-link-down stop. */
  stoppedDown = false;
  checked = 0;
  private since = 0;

  constructor(private readonly iface: string, private readonly policy: LinkDownPolicy, private readonly read: () => 'up' | 'down' | 'gone') {}

  /** An outage from `now`. Returns the run's error when the policy is to stop. */
  markDown(now: number): string | null {
    if (this.down) return null;
    this.down = true;
    this.since = now;
    this.checked = now;
    this.outages++;
    if (this.policy !== 'stop') return null;
    this.stoppedDown = true;
    return `link ${this.iface} went down`;
  }

  /** Reads the link's state if LINK_CHECK_NS has passed since the last read. Returns the run's error, if it ends. */
  check(now: number): string | null {
    if (now - this.checked < LINK_CHECK_NS) return null;
    this.checked = now;
    // A PcapLink's watch emits 'up' on this read at once, on which the link reopens its handle.
    const s = this.read();
    if (s === 'gone') return this.markGone();
    if (s === 'down') return this.markDown(now);
    if (this.down) {
      this.down = false;
      this.downNs += now - this.since;
    }
    return null;
  }

  markGone(): string {
    this.gone = true;
    return `interface ${this.iface} disappeared`;
  }

  end(now: number): void {
    if (this.down) this.downNs += now - this.since;
  }
}

/**
 * A group's frames written into one buffer by the plan's walker and handed to link.sendBatch at once (one call
 * into the addon per group instead of one per frame). Sized once for the largest group of the largest frames.
 */
class GroupBuffer {
  readonly buf: Buffer;
  readonly off: Uint32Array;
  readonly len: Uint32Array;
  readonly capacity: number;

  constructor(t: Templates, private readonly writer: GroupWriter, frames: number) {
    let maxLen = 0;
    for (let i = 0; i < t.lengths.length; i++) if (t.lengths[i] > maxLen) maxLen = t.lengths[i];
    this.capacity = frames;
    this.buf = Buffer.alloc(frames * maxLen);
    this.off = new Uint32Array(frames);
    this.len = new Uint32Array(frames);
  }

  /** Writes the frames at order positions pos .. pos + m - 1 (m ≤ capacity) into slots 0 .. m - 1; returns their bytes. */
  fill(pos: number, m: number, tvSec: number, tvUsec: number): number {
    return this.writer.fill(this.buf, this.off, this.len, pos, m, tvSec, tvUsec);
  }

  bytes(from: number, to: number): number {
    let b = 0;
    for (let j = from; j < to; j++) b += this.len[j];
    return b;
  }
}

export function startPcapEngine(o: PcapEngineOptions): { done: Promise<EngineResult>; stop(): void } {
  const link = o.link;
  const t = o.templates;
  const L = t.order.length;
  const writer = groupWriter(t, planFor(t), o.planWalker);
  const burst = Math.max(1, o.pacing.burst ?? 1);
  const maxGroup = Math.min(o.maxGroup ?? GROUP_MAX, BATCH_MAX);
  const group = new GroupBuffer(t, writer, Math.min(Math.max(maxGroup, burst), BATCH_MAX));
  const health = new LinkHealth(o.iface, o.onLinkDown, () => link.watch?.check() ?? 'up');
  const st = { sent: 0, bytes: 0, waits: 0, notSent: 0, notSentLinkDown: 0, firstNs: 0, lastNs: 0, firstRealMs: 0, lateMax: 0, lateSum: 0, groups: 0, batches: 0, startedLateNs: 0 };
  let stopped = false;
  let stopCalled = false;
  let err: string | null = null;
  /** When the first frame is due (monotonic ns). */
  let t0 = 0;

  /** Sends the `n` frames from order position `pos`, due at `due`; a failure sets err or marks the link down. */
  const sendGroup = (pos: number, n: number, due: number, waits: boolean): void => {
    const realMs = performance.timeOrigin + performance.now();
    const tvSec = Math.floor(realMs / 1000);
    const tvUsec = Math.floor((realMs - tvSec * 1000) * 1000);
    const tSend = monoNs();
    if (!st.firstNs) {
      st.firstNs = tSend;
      st.firstRealMs = realMs;
      st.startedLateNs = Math.max(0, tSend - t0);
    }
    if (waits && tSend > due) {
      st.lateSum += tSend - due;
      if (tSend - due > st.lateMax) st.lateMax = tSend - due;
    }
    st.groups++;
    const retries0 = link.sendRetries ?? 0;
    // k: frames of the group whose slot has passed; one sendBatch per `capacity` frames.
    for (let k = 0; k < n;) {
      const m = Math.min(n - k, group.capacity);
      const bytes = group.fill(pos, m, tvSec >>> 0, tvUsec >>> 0);
      let got = m;
      let failure: unknown = null;
      // When this batch began: a link going down can hold sendBatch in its full-queue retries before ENETDOWN, and
      // the slots passed meanwhile belong to the outage, as the frames due in them are counted not sent.
      const tBatch = monoNs();
      try {
        link.sendBatch(group.buf, group.off, group.len, m);
      } catch (e) {
        failure = e;
        got = sentBeforeError(e);
      }
      st.batches++;
      st.sent += got;
      st.bytes += got === m ? bytes : group.bytes(0, got);
      pos = (pos + got) % L;
      k += got;
      if (failure) {
        writer.rewind(pos, m - got); // their IP IDs and seqs go to the next frames
        if (failure instanceof LinkDownError) {
          // The rest of the group's slots pass while it is down; the schedule goes on.
          err = health.markDown(tBatch);
          st.notSentLinkDown += n - k;
        } else {
          if (failure instanceof LinkGoneError) health.gone = true;
          err = (failure as Error).message;
          st.notSent += n - k;
        }
        break;
      }
    }
    st.waits += (link.sendRetries ?? 0) - retries0;
    st.lastNs = monoNs();
  };

  let wake: (() => void) | null = null;
  const done = (async (): Promise<EngineResult> => {
    // One turn of the event loop first: startBlast() returns before anything is sent, so the caller's listeners
    // (link events, signals) are attached (an async function runs synchronously to its first await).
    await new Promise((r) => setImmediate(r));
    // --start-at is on the wall clock; the schedule runs on the monotonic one from the moment it names.
    const startNs = o.startAt ? BigInt(o.startAt.sec) * 1_000_000_000n + BigInt(o.startAt.nsec) : null;
    t0 = startNs === null ? monoNs() : monoNs() + Number(startNs - realtimeNs());
    const sched = new Schedule({ pacing: o.pacing, count: o.count, durationNs: o.durationNs, maxGroup, frameLen: (k) => t.lengths[t.order[k % L]] }, t0);
    let lastReport = t0;
    const reportNs = (o.progressMs ?? 200) * 1e6;
    while (!stopped && !err) {
      const sliceEnd = monoNs() + SLICE_NS;
      let sleepUntil = 0;
      while (!stopped) {
        // Unpaced with the link down: one group per link check, not a spin.
        if (!sched.waits && health.down) waitUntil(health.checked + LINK_CHECK_NS);
        const now = monoNs();
        const g = sched.next(now);
        if (g.done) {
          stopped = true;
          break;
        }
        if (!g.frames) {
          if (g.deadline - now > TIMER_WAIT_NS) {
            sleepUntil = g.deadline;
            break;
          }
          waitUntil(g.deadline);
          continue;
        }
        err = health.check(now);
        if (err) break;
        if (health.down) st.notSentLinkDown += g.frames; // its slots pass while the link is down
        else sendGroup(g.first % L, g.frames, g.due, sched.waits);
        if (err) break;
        const tEnd = monoNs();
        sched.sent(tEnd);
        if (tEnd >= sliceEnd) break;
      }
      const tNow = monoNs();
      if (o.onProgress && tNow - lastReport >= reportNs) {
        lastReport = tNow;
        o.onProgress({ sent: st.sent, bytes: st.bytes, waits: st.waits, elapsedNs: tNow - t0 });
      }
      if (stopped || err) break;
      // A far deadline (a start time, a slow rate, a burst gap) is slept on a timer with the event loop free, waking
      // early enough to wait out the rest exactly; stop() wakes it at once.
      const far = sleepUntil - monoNs() - TIMER_WAIT_NS / 2;
      await new Promise<void>((r) => {
        if (far <= 0) return setImmediate(r);
        const timer = setTimeout(() => r(), far / 1e6);
        wake = () => {
          clearTimeout(timer);
          r();
        };
      });
      wake = null;
    }
    health.end(monoNs());
    // Stopped by the caller, whose watch may have seen the interface vanish before this loop's next read: say so.
    if (!err && stopCalled && link.watch?.check() === 'gone') err = health.markGone();
    if (err && o.count && o.count > st.sent + st.notSent + st.notSentLinkDown) st.notSent = o.count - st.sent - st.notSentLinkDown;
    const realSec = Math.floor(st.firstRealMs / 1000);
    return {
      sent: st.sent, bytes: st.bytes, waits: st.waits, notSent: st.notSent, notSentLinkDown: st.notSentLinkDown,
      linkOutages: health.outages, linkDownNs: health.downNs, linkGone: health.gone, error: err, stoppedOnLinkDown: health.stoppedDown,
      firstNs: st.firstNs, lastNs: st.lastNs, firstRealSec: realSec, firstRealNsec: Math.round((st.firstRealMs - realSec * 1000) * 1e6),
      startedLateNs: st.startedLateNs, lateMaxNs: st.lateMax, lateMeanNs: st.groups ? st.lateSum / st.groups : 0,
      groups: st.groups, batches: st.batches, nextIpId: writer.counters().ipId, nextSeq: writer.counters().seq,
    };
  })();
  return {
    done,
    stop: () => {
      stopCalled = true;
      stopped = true;
      wake?.();
    },
  };
}
