/**
 * The RFC 2544 searches (src/exp/rfc2544.ts) against a model of a device whose truth the test sets: it forwards at
 * most `tputPps` frames/s and holds `bufferFrames` in a queue, so a trial of N frames at R pps loses
 * max(0, N − bufferFrames − tputPps × N / R). Each search must find what the model was given, within its resolution.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  bufferTimeUs, estimateTrials, lineMbps, runRfc2544, SinkOverrunError, type Rfc2544Params, type TrialOutcome, type TrialRequest,
} from '../../src/exp/rfc2544.js';
import type { Rfc2544Test } from '../../src/exp/results.js';

interface Device {
  tputPps: number;
  bufferFrames: number;
  /** Own drops the sink reports, trial by trial (index = trial number − 1); missing = 0. */
  ownDrops?: number[];
}

function model(d: Device): { run: (r: TrialRequest) => Promise<TrialOutcome>; reqs: TrialRequest[] } {
  const reqs: TrialRequest[] = [];
  const run = async (r: TrialRequest): Promise<TrialOutcome> => {
    reqs.push(r);
    const sent = r.burst ?? Math.round(r.ratePps * r.seconds!);
    const forwarded = Math.min(sent, Math.floor(d.bufferFrames + (d.tputPps * sent) / r.ratePps));
    const own = d.ownDrops?.[reqs.length - 1] ?? 0;
    const received = forwarded - own;
    return {
      size: r.size, ratePps: r.ratePps, achievedPps: r.ratePps, burst: r.burst ?? null, sent, received,
      lossPct: (100 * (sent - received)) / sent, ownDrops: own, seconds: r.seconds ?? sent / r.ratePps,
      latencyUs: { min: 10, p50: 20, p99: 40, max: 50, avg: 21 }, clock: 'kernel (CLOCK_REALTIME)',
      histogram: r.latency ? 'HISTFAAAA' : undefined,
    };
  };
  return { run, reqs };
}

function params(test: Rfc2544Test, o: Partial<Rfc2544Params> = {}): Rfc2544Params {
  return {
    test, sizes: [512], trialSeconds: 1, lossTolerancePct: 0, resolutionPct: 1, repeat: 3, maxRatePps: () => 10000, ...o,
  };
}

describe('rfc2544 throughput search', () => {
  test('finds the device rate within the resolution, never above it', async () => {
    const m = model({ tputPps: 7300, bufferFrames: 0 });
    const r = await runRfc2544(params('throughput'), m.run);
    const t = r.throughput![0];
    assert.ok(t.ratePps <= 7300 && t.ratePps >= 7300 * 0.99, `found ${t.ratePps}`);
    assert.equal(t.lossPct, 0);
    assert.equal(t.lineMbps, lineMbps(512, t.ratePps));
    assert.equal(m.reqs[0].ratePps, 10000, 'the max rate first');
    assert.ok(m.reqs.length <= 1 + 8, `${m.reqs.length} trials`);
    assert.equal(r.trials.length, m.reqs.length);
    assert.equal(r.sizesCountFcs, false);
    assert.deepEqual(r.maxRates, [{ size: 512, ratePps: 10000 }]);
  });

  test('a max rate that passes is the answer after one trial', async () => {
    const m = model({ tputPps: 20000, bufferFrames: 0 });
    const r = await runRfc2544(params('throughput', { sizes: [64, 1518] }), m.run);
    assert.deepEqual(r.throughput!.map((t) => t.ratePps), [10000, 10000]);
    assert.equal(m.reqs.length, 2);
  });

  test('--loss > 0: the partial-drop rate passes trials that lose up to that much', async () => {
    const m = model({ tputPps: 8000, bufferFrames: 0 });
    const r = await runRfc2544(params('throughput', { lossTolerancePct: 5 }), m.run);
    const t = r.throughput![0];
    // 8000 / (1 - 0.05) = 8421 pps loses exactly 5 %.
    assert.ok(t.ratePps > 8000 && t.ratePps <= 8421, `found ${t.ratePps}`);
    assert.ok(t.lossPct > 0 && t.lossPct <= 5);
  });

  test('a coarser resolution takes fewer trials and stays within its bracket', async () => {
    const m = model({ tputPps: 5555, bufferFrames: 0 });
    const r = await runRfc2544(params('throughput', { resolutionPct: 10 }), m.run);
    assert.ok(r.throughput![0].ratePps <= 5555 && r.throughput![0].ratePps >= 5555 * 0.9, `found ${r.throughput![0].ratePps}`);
    assert.ok(m.reqs.length <= 6, `${m.reqs.length} trials`);
  });

  test('a device 200 times slower than the max rate is found to the same relative precision', async () => {
    const m = model({ tputPps: 50, bufferFrames: 0 });
    const r = await runRfc2544(params('throughput', { resolutionPct: 1 }), m.run);
    assert.ok(r.throughput![0].ratePps <= 50 && r.throughput![0].ratePps >= 49, `found ${r.throughput![0].ratePps}`);
  });

  test('a device that passes nothing has throughput 0', async () => {
    const m = model({ tputPps: 0, bufferFrames: 0 });
    const r = await runRfc2544(params('throughput', { resolutionPct: 25 }), m.run);
    assert.equal(r.throughput![0].ratePps, 0);
    assert.equal(r.throughput![0].lossPct, 100);
  });
});

describe('rfc2544: the sink\'s own loss', () => {
  test('a trial the sink dropped frames in itself is run again; the retry counts', async () => {
    const m = model({ tputPps: 20000, bufferFrames: 0, ownDrops: [37] });
    const r = await runRfc2544(params('throughput'), m.run);
    assert.equal(m.reqs.length, 2);
    assert.deepEqual(m.reqs[0], m.reqs[1]);
    assert.equal(r.trials[0].ownDrops, 37);
    assert.equal(r.throughput![0].ratePps, 10000, 'from the retry, which lost nothing');
  });

  test('twice in a row: an error that says the sink could not keep up, and no throughput', async () => {
    const m = model({ tputPps: 20000, bufferFrames: 0, ownDrops: [0, 5, 9] });
    await assert.rejects(runRfc2544(params('throughput', { sizes: [64, 512] }), m.run), (e: unknown) => {
      assert.ok(e instanceof SinkOverrunError);
      assert.match((e as Error).message, /sink could not keep up.*dropped 9 frames itself.*size 512/);
      assert.equal((e as SinkOverrunError).exitCode, 1);
      return true;
    });
  });
});

describe('rfc2544 frame loss', () => {
  test('100 %, 90 %, … until two steps in a row lose nothing; losses as the device sets them', async () => {
    const m = model({ tputPps: 6500, bufferFrames: 0 });
    const r = await runRfc2544(params('frame-loss'), m.run);
    assert.deepEqual(r.frameLoss!.map((x) => x.offeredPct), [100, 90, 80, 70, 60, 50]);
    assert.deepEqual(r.frameLoss!.map((x) => x.ratePps), [10000, 9000, 8000, 7000, 6000, 5000]);
    for (const x of r.frameLoss!) assert.ok(Math.abs(x.lossPct - Math.max(0, 100 * (1 - 6500 / x.ratePps))) < 0.02);
    assert.equal(r.throughput, undefined);
  });

  test('a step that loses after a clean one restarts the count; all ten steps at most', async () => {
    const m = model({ tputPps: 100, bufferFrames: 0 });
    const r = await runRfc2544(params('frame-loss'), m.run);
    assert.equal(r.frameLoss!.length, 10);
    assert.equal(r.frameLoss![9].offeredPct, 10);
  });
});

describe('rfc2544 latency', () => {
  test('at --rate: one trial per size, one frame per send call, the sink\'s histogram and clock', async () => {
    const m = model({ tputPps: 20000, bufferFrames: 0 });
    const r = await runRfc2544(params('latency', { sizes: [64, 512], ratePps: (s) => 1e6 / s }), m.run);
    assert.equal(m.reqs.length, 2);
    assert.ok(m.reqs.every((q) => q.latency === true));
    assert.deepEqual(r.latency!.map((l) => l.ratePps), [1e6 / 64, 1e6 / 512]);
    assert.equal(r.latency![0].histogram, 'HISTFAAAA');
    assert.equal(r.latency![0].clock, 'kernel (CLOCK_REALTIME)');
    assert.deepEqual(r.latency![0].latencyUs, { min: 10, p50: 20, p99: 40, max: 50, avg: 21 });
    assert.equal((r.trials[0] as unknown as Record<string, unknown>).histogram, undefined, 'trials keep no histogram');
  });

  test('without --rate: the throughput search first, then the latency trial at its rate', async () => {
    const m = model({ tputPps: 4000, bufferFrames: 0 });
    const r = await runRfc2544(params('latency'), m.run);
    const last = m.reqs[m.reqs.length - 1];
    assert.equal(last.latency, true);
    assert.equal(last.ratePps, r.throughput![0].ratePps);
    assert.equal(r.latency![0].ratePps, r.throughput![0].ratePps);
  });
});

describe('rfc2544 back-to-back', () => {
  test('finds the buffer in frames each repeat, and RFC 9004\'s buffer time', async () => {
    const m = model({ tputPps: 1000, bufferFrames: 150 });
    const r = await runRfc2544(params('back-to-back', { throughputPps: () => 1000, repeat: 3 }), m.run);
    const b = r.backToBack![0];
    // At 10000 pps a burst of N frames lasts N/10000 s, in which the device forwards N/10 more: N = 150 / 0.9 = 166.
    assert.deepEqual(b.frames, [166, 166, 166]);
    assert.equal(b.meanFrames, 166);
    assert.ok(m.reqs.every((q) => q.burst !== undefined && q.ratePps === 10000));
    assert.equal(m.reqs[0].burst, 2000, 'the ceiling first: 2 × 10000 pps × 0.1 s');
    // (1/10000) × (166 − 1000 × 166/10000) s = 14.94 ms: the 150 frames queued, timed at the max rate.
    assert.equal(b.bufferTimeUs, 14940);
    assert.equal(r.throughput, undefined, '--throughput given: no search');
  });

  test('without --throughput a throughput search comes first; a burst at the ceiling is noted', async () => {
    const m = model({ tputPps: 3000, bufferFrames: 5000 });
    const r = await runRfc2544(params('back-to-back', { repeat: 2, maxBurst: () => 400 }), m.run);
    assert.ok(r.throughput![0].ratePps <= 3000 + 5000 && r.throughput![0].ratePps > 0);
    assert.deepEqual(r.backToBack![0].frames, [400, 400]);
    assert.match(r.notes![0], /ceiling/);
  });

  test('bufferTimeUs is RFC 9004 §5.4\'s corrected buffer time', () => {
    assert.equal(bufferTimeUs(1000, 1e6, 5e5), 500); // 1 ms of burst at 1 Mpps, half forwarded: 500 frames = 500 µs
    assert.equal(bufferTimeUs(1000, 1e6, 0), 1000);
  });
});

test('the progress count never runs ahead of its total', async () => {
  const seen: [number, number][] = [];
  const m = model({ tputPps: 777, bufferFrames: 33, ownDrops: [0, 0, 4] });
  const p = params('back-to-back', { repeat: 2, sizes: [64, 128] });
  await runRfc2544(p, m.run, { onTrial: (_t, k, n) => seen.push([k, n]) });
  seen.forEach(([k, n], i) => {
    assert.equal(k, i + 1);
    assert.ok(k <= n);
  });
  assert.ok(estimateTrials(p) > 0);
});
