/**
 * The blast schedule (src/tx/schedule.ts) on a fake clock: the test says what time it is, the schedule says how many
 * frames go now and when to ask again. No timers, no I/O.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Schedule, slotOf, type Pacing } from '../../src/tx/schedule.js';

const MS = 1e6;

function sched(pacing: Pacing, o: { count?: number; durationNs?: number; maxGroup?: number; lens?: number[]; t0?: number } = {}): Schedule {
  const lens = o.lens ?? [60];
  return new Schedule({ pacing, count: o.count ?? 0, durationNs: o.durationNs ?? 0, maxGroup: o.maxGroup ?? 64, frameLen: (k) => lens[k % lens.length] }, o.t0 ?? 0);
}

/** Runs the schedule as an engine that is never late: asks at each deadline, sends in no time. [time, frames] per group. */
function drive(s: Schedule, limit = 10_000): [number, number][] {
  const out: [number, number][] = [];
  let now = 0;
  for (let i = 0; i < limit; i++) {
    const g = s.next(now);
    if (g.done) return out;
    if (g.frames) {
      out.push([now, g.frames]);
      s.sent(now);
    } else now = g.deadline;
  }
  throw new Error('the schedule did not end');
}

test('unpaced: groups of maxGroup at once until --count, then done', () => {
  const s = sched({}, { count: 150 });
  assert.deepEqual([s.next(0), s.next(0), s.next(5)].map((g) => [g.frames, g.first]), [[64, 0], [64, 64], [22, 128]]);
  const end = s.next(5);
  assert.equal(end.done, true);
  assert.equal(end.frames, 0);
  assert.equal(s.frames, 150);
});

test('1000 pps: one frame per ms slot; early asks get nothing and the slot to wait for', () => {
  const s = sched({ pps: 1000 });
  assert.deepEqual(s.next(0), { frames: 1, first: 0, due: 0, deadline: 1 * MS, done: false });
  assert.deepEqual(s.next(0.5 * MS), { frames: 0, first: 1, due: 1 * MS, deadline: 1 * MS, done: false });
  assert.deepEqual(s.next(1 * MS), { frames: 1, first: 1, due: 1 * MS, deadline: 2 * MS, done: false });
});

test('a late sender catches up: every frame whose slot has begun, back to back, at most maxGroup; the rate holds', () => {
  const s = sched({ pps: 1000 }, { maxGroup: 8 });
  s.next(0);
  // 3.2 ms: the slots at 1, 2 and 3 ms have begun; the next is at 4 ms, as if none had been late.
  assert.deepEqual(s.next(3.2 * MS), { frames: 3, first: 1, due: 1 * MS, deadline: 4 * MS, done: false });
  // 100 ms late: at most 8 now, the rest in the following groups.
  const g = s.next(104 * MS);
  assert.equal(g.frames, 8);
  assert.equal(g.deadline, 12 * MS);
  let sent = 4 + 8;
  for (let now = 104 * MS; ; now += 0.01 * MS) {
    const x = s.next(now);
    sent += x.frames;
    if (x.deadline > now) break;
  }
  assert.equal(sent, 105, 'caught up with slots 0..104 ms, not one more');
});

test('--duration ends a paced run when the next slot would start at or after it: 10 ms at 1000 pps = 10 frames', () => {
  const groups = drive(sched({ pps: 1000 }, { durationNs: 10 * MS }));
  assert.deepEqual(groups.map(([t]) => t / MS), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  // 3 kpps: a slot of 333333.33 ns; the float sum must not squeeze in a 31st frame.
  assert.equal(drive(sched({ pps: 3000 }, { durationNs: 10 * MS })).length, 30);
});

test('--duration unpaced: counted on the clock', () => {
  const s = sched({}, { durationNs: 1 * MS });
  assert.equal(s.next(0).frames, 64);
  assert.equal(s.next(0.999 * MS).frames, 64);
  assert.equal(s.next(1 * MS).done, true);
});

test('bits/s: each frame\'s slot is its own length (8 Mbit/s: 100 bytes = 100 µs, 1000 bytes = 1 ms)', () => {
  const groups = drive(sched({ bps: 8e6 }, { count: 4, lens: [100, 1000] }));
  assert.deepEqual(groups.map(([t]) => t / 1000), [0, 100, 1100, 1200]);
  assert.deepEqual(slotOf({ bps: 8e6 }, 550), { gapNs: 0, nsPerByte: 1000, requestedPps: 1e9 / 550e3 });
  assert.deepEqual(slotOf({ gapNs: 250 }, 60), { gapNs: 250, nsPerByte: 0, requestedPps: 4e6 });
  assert.equal(slotOf({}, 60).requestedPps, null);
});

test('--burst with a rate: bursts back to back, the average rate kept (16 at 1000 pps: one burst per 16 ms)', () => {
  const groups = drive(sched({ pps: 1000, burst: 16 }, { count: 40 }));
  assert.deepEqual(groups, [[0, 16], [16 * MS, 16], [32 * MS, 8]]);
});

test('--burst-gap: idle from the end of each burst (its last send), however long the burst took', () => {
  const s = sched({ burst: 4, burstGapNs: 3 * MS }, { count: 10 });
  assert.equal(s.next(0).frames, 4);
  s.sent(0.5 * MS); // the burst's sends took 0.5 ms
  assert.deepEqual(s.next(1 * MS), { frames: 0, first: 4, due: 3.5 * MS, deadline: 3.5 * MS, done: false });
  assert.equal(s.next(3.5 * MS).frames, 4);
  s.sent(3.5 * MS);
  assert.equal(s.next(6.5 * MS).frames, 2, 'the last burst holds what --count leaves');
  s.sent(6.5 * MS);
  assert.equal(s.next(100 * MS).done, true);
  assert.equal(s.waits, true);
});

test('a start time ahead: nothing before it, then the schedule runs from it (unpaced too)', () => {
  const paced = sched({ pps: 1000 }, { t0: 50 * MS, count: 3 });
  assert.deepEqual(paced.next(10 * MS), { frames: 0, first: 0, due: 50 * MS, deadline: 50 * MS, done: false });
  assert.deepEqual(drive(paced).map(([t]) => t / MS), [50, 51, 52]);
  const unpaced = sched({}, { t0: 50 * MS, count: 100 });
  assert.equal(unpaced.next(49.9 * MS).frames, 0);
  assert.equal(unpaced.next(49.9 * MS).deadline, 50 * MS);
  assert.equal(unpaced.next(50 * MS).frames, 64);
  // --duration counts from the start time, not from when the run was set up.
  const d = sched({ pps: 1000 }, { t0: 50 * MS, durationNs: 3 * MS });
  assert.deepEqual(drive(d).map(([t]) => t / MS), [50, 51, 52]);
});
