/**
 * A blast's schedule, pure: no clock, no timers, no I/O — the caller passes the time. Frame k of the run owns a slot
 * of gapNs + len(k) * nsPerByte, and slots follow each other from t0 (the start, or a start time ahead), so the average rate holds however late any one
 * group goes out: frames are sent back to back only when they were due (the sender fell behind; at most maxGroup at
 * once) or asked for (--burst). That is the difference from tools that send N frames, then sleep out the second.
 *
 * The native engine's C loop (native/src/rawpoll_native.cc, BlastWorker::Run) keeps this same schedule on its own
 * thread; the pcap engine (src/tx/pcapengine.ts) asks this one.
 */

export interface Pacing {
  /** Frames per second, or bits per second of frames (Ethernet header to the end of padding; no FCS, preamble or IFG). */
  pps?: number;
  bps?: number;
  /** Fixed gap between frame starts (instead of a rate). */
  gapNs?: number;
  /** Frames that go out back to back as one group (with a rate, the groups keep its average). */
  burst?: number;
  /** Idle time after each burst, from the end of its last send. */
  burstGapNs?: number;
}

/** Slot length per frame: gapNs + bytes * nsPerByte; requestedPps over the order cycle's mean frame (null: unpaced). */
export function slotOf(p: Pacing, meanLen: number): { gapNs: number; nsPerByte: number; requestedPps: number | null } {
  const gapNs = p.gapNs ?? (p.pps ? 1e9 / p.pps : 0);
  const nsPerByte = p.bps ? 8e9 / p.bps : 0;
  const slot = gapNs + nsPerByte * meanLen;
  return { gapNs, nsPerByte, requestedPps: slot > 0 ? 1e9 / slot : null };
}

export interface ScheduleOptions {
  pacing: Pacing;
  /** Frames in the run; 0 = until durationNs (or until the caller stops asking). */
  count: number;
  /** 0 = no time limit. A paced run ends when the next slot would start at or after t0 + durationNs. */
  durationNs: number;
  /** Length of the k-th frame of the run (its slot grows with it under a bits/s rate). */
  frameLen: (k: number) => number;
  /** Most frames one group holds when unpaced, or when a paced sender catches up. */
  maxGroup: number;
}

export interface Grant {
  /** Frames to send now, back to back: run frames first .. first + frames - 1. 0 = nothing is due yet. */
  frames: number;
  /** Index in the run of the group's first frame (frames granted before it). */
  first: number;
  /** When the group was due (ns on the caller's clock): how late it went out is measured from here. */
  due: number;
  /** When to ask again: the next group's due time (in the past when unpaced: at once). */
  deadline: number;
  /** The run is over: --count granted, or --duration reached. */
  done: boolean;
}

export class Schedule {
  /** Slots have a length (a rate or a gap): groups wait for their due time. */
  readonly paced: boolean;
  readonly gapNs: number;
  readonly nsPerByte: number;
  private readonly burst: number;
  private readonly burstGapNs: number;
  private nextDue: number;
  private granted = 0;

  /** t0: when the first frame is due (a --start-at converted to the caller's clock, or now). */
  constructor(private readonly o: ScheduleOptions, private readonly t0: number) {
    const s = slotOf(o.pacing, 0);
    this.gapNs = s.gapNs;
    this.nsPerByte = s.nsPerByte;
    this.paced = this.gapNs > 0 || this.nsPerByte > 0;
    this.burst = Math.max(1, o.pacing.burst ?? 1);
    this.burstGapNs = o.pacing.burstGapNs ?? 0;
    this.nextDue = t0;
  }

  /** Frames granted so far (sent, or passed while the link was down: every granted frame uses its slot). */
  get frames(): number {
    return this.granted;
  }

  /** Whether groups wait for a due time (a rate, a gap or a burst gap); if not, the caller sends at once. */
  get waits(): boolean {
    return this.paced || this.burstGapNs > 0;
  }

  /** What to send at `now`. */
  next(now: number): Grant {
    const o = this.o;
    const first = this.granted;
    const left = o.count ? o.count - first : Infinity;
    if (left <= 0 || (o.durationNs && (this.paced ? this.nextDue : now) - this.t0 >= o.durationNs - 1)) {
      // -1 ns: the slots' float sum must not add a frame to a duration that is a whole number of them.
      return { frames: 0, first, due: this.nextDue, deadline: Infinity, done: true };
    }
    const due = this.nextDue;
    // Before t0 (a start time still ahead) nothing is due; unpaced, every group after it is due at once.
    if (now < due) return { frames: 0, first, due, deadline: due, done: false };
    let n = 0;
    if (this.burst > 1) {
      // One burst back to back; with a rate the schedule advances by their slots, so the average holds and the
      // gap between bursts is what is left.
      n = Math.min(this.burst, left);
      for (let k = 0; k < n; k++) this.nextDue += this.slot(first + k);
    } else if (this.paced) {
      // Every frame whose slot has begun: normally one, more only when the sender fell behind.
      let d = due;
      while (n < o.maxGroup && n < left && d <= now) {
        d += this.slot(first + n);
        n++;
        if (o.durationNs && d - this.t0 >= o.durationNs - 1) break;
      }
      this.nextDue = d;
    } else n = Math.min(o.maxGroup, left);
    this.granted += n;
    return { frames: n, first, due, deadline: this.nextDue, done: false };
  }

  /** The group granted last ended at `now` (its last send returned): a burst gap counts from here. */
  sent(now: number): void {
    if (this.burstGapNs > 0) this.nextDue = Math.max(this.nextDue, now + this.burstGapNs);
  }

  private slot(k: number): number {
    return this.gapNs + (this.nsPerByte ? this.o.frameLen(k) * this.nsPerByte : 0);
  }
}
