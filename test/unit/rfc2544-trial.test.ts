/**
 * A trial's choreography (src/exp/trial.ts TrialRunner) with a scripted control channel and sender: open with the
 * count expected, blast, drain, close, and the Trial built from the sink's report; plus the command's flag grammar
 * (src/cli/rfc2544.ts) and its exit codes for bad usage, which it must give before reaching the control channel.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { RuntimeError, UsageError } from '../../src/errors.js';
import { checkSizes, parseHostPort, parseSizeList, percentArg, progressLine, rateFor } from '../../src/cli/rfc2544.js';
import { TrialRunner, type BlastRequest, type ControlChannel } from '../../src/exp/trial.js';
import type { HistogramsDoc, SinkReport } from '../../src/rx/sink.js';
import type { BlastResult } from '../../src/tx/blast.js';
import { ROOT } from '../helpers/lab.js';

function blastResult(sent: number, o: Partial<BlastResult> = {}): BlastResult {
  return {
    engine: 'native', sent, notSent: 0, notSentLinkDown: 0, linkOutages: 0, linkDownMs: 0, linkEnd: null, bytes: sent * 512,
    waits: 0, error: null, seconds: 1, pps: sent, bitsPerSecond: sent * 512 * 8, requestedPps: sent, rateError: 0, started: true,
    startedLateUs: null, lateMaxUs: 0, lateMeanUs: 0, firstSendEpoch: '0.000000', batches: 1, nextSeq: [sent + 1], qdiscBypass: false, ...o,
  };
}

function sinkReport(received: number, own: number): SinkReport {
  return {
    clock: 'kernel (CLOCK_REALTIME)', loss: { seqGaps: 0, own, network: 0, exact: own === 0 },
    totals: { received, latencyUs: { min: 1, p50: 2, p90: 3, p99: 4, p999: 5, max: 6, avg: 2.5 } },
  } as unknown as SinkReport;
}

/** A sink that has counted `arrivals[i]` frames at the i-th status call of a trial, and `final` at close. */
function fakes(o: { final: number; own?: number; arrivals?: number[]; blastError?: string; blastThrows?: boolean }) {
  const calls: string[] = [];
  const blasts: BlastRequest[] = [];
  const sleeps: number[] = [];
  let polls = 0;
  const control: ControlChannel = {
    open: async (x) => {
      calls.push(`open ${x.port} ${x.expect}`);
      return 7;
    },
    status: async (id) => {
      calls.push(`status ${id}`);
      const a = o.arrivals ?? [o.final];
      return { received: a[Math.min(polls++, a.length - 1)] };
    },
    close: async (id) => {
      calls.push(`close ${id}`);
      const histograms = { latency: 'HIST' } as unknown as HistogramsDoc;
      return { report: sinkReport(o.final, o.own ?? 0), histograms };
    },
  };
  const blaster = {
    blast: async (r: BlastRequest) => {
      calls.push('blast');
      blasts.push(r);
      if (o.blastThrows) throw new RuntimeError('boom');
      return blastResult(r.count, { error: o.blastError ?? null });
    },
    stop: () => calls.push('stop'),
  };
  const sleep = async (ms: number) => {
    sleeps.push(ms);
  };
  return { control, blaster, calls, blasts, sleeps, sleep };
}

describe('TrialRunner', () => {
  test('open with the count, blast, drain until all arrived, close; the Trial from the sink\'s report', async () => {
    const f = fakes({ final: 980, own: 0, arrivals: [500, 980] });
    const r = new TrialRunner({ control: f.control, blaster: f.blaster, port: 9, settleMs: 1500, sleep: f.sleep });
    const t = await r.run({ size: 512, ratePps: 1000, seconds: 1 });
    assert.deepEqual(f.calls, ['open 9 1000', 'blast', 'status 7', 'status 7', 'status 7', 'status 7', 'close 7']);
    assert.deepEqual(f.blasts[0], { size: 512, count: 1000, ratePps: 1000, batch: undefined });
    assert.equal(t.sent, 1000);
    assert.equal(t.received, 980);
    assert.equal(t.lossPct, 2);
    assert.equal(t.ownDrops, 0);
    assert.equal(t.burst, null);
    assert.deepEqual(t.latencyUs, { min: 1, p50: 2, p99: 4, max: 6, avg: 2.5 });
    assert.equal(t.histogram, undefined, 'only latency trials carry the histogram');
    assert.deepEqual(f.sleeps, [100, 100, 100], 'no settle before the first trial');
  });

  test('every frame counted: the drain ends at once; settle before the next trial', async () => {
    const f = fakes({ final: 1000 });
    const r = new TrialRunner({ control: f.control, blaster: f.blaster, port: 9, settleMs: 1500, sleep: f.sleep });
    await r.run({ size: 64, ratePps: 1000, seconds: 1 });
    await r.run({ size: 64, ratePps: 1000, seconds: 1 });
    assert.deepEqual(f.sleeps, [1500]);
  });

  test('latency trials send one frame per call and keep the histogram; bursts go unpaced when asked', async () => {
    const f = fakes({ final: 50, own: 3 });
    const r = new TrialRunner({ control: f.control, blaster: f.blaster, port: 4000, settleMs: 0, sleep: f.sleep, unpacedBursts: true });
    const lat = await r.run({ size: 128, ratePps: 200, seconds: 0.25, latency: true });
    assert.equal(f.blasts[0].batch, 1);
    assert.equal(lat.histogram, 'HIST');
    assert.equal(lat.clock, 'kernel (CLOCK_REALTIME)');
    assert.equal(lat.ownDrops, 3);
    const b = await r.run({ size: 128, ratePps: 90000, burst: 50 });
    assert.deepEqual(f.blasts[1], { size: 128, count: 50, ratePps: null, batch: undefined });
    assert.equal(b.burst, 50);
    assert.equal(b.lossPct, 0);
    assert.ok(f.calls.includes('open 4000 50'));
  });

  test('a blast that fails (link down) closes the trial and is a runtime error', async () => {
    const f = fakes({ final: 0, blastError: 'link veth0 went down' });
    const r = new TrialRunner({ control: f.control, blaster: f.blaster, port: 9, sleep: f.sleep });
    await assert.rejects(r.run({ size: 64, ratePps: 10, seconds: 1 }), (e: unknown) => e instanceof RuntimeError && /went down/.test((e as Error).message));
    assert.equal(f.calls.at(-1), 'close 7');
    const g = fakes({ final: 0, blastThrows: true });
    const r2 = new TrialRunner({ control: g.control, blaster: g.blaster, port: 9, sleep: g.sleep });
    await assert.rejects(r2.run({ size: 64, ratePps: 10, seconds: 1 }), /boom/);
    assert.equal(g.calls.at(-1), 'close 7');
  });

  test('a count that stops moving ends the drain (the rest was lost)', async () => {
    const f = fakes({ final: 400, arrivals: [100, 400, 400, 400, 400] });
    const r = new TrialRunner({ control: f.control, blaster: f.blaster, port: 9, sleep: f.sleep });
    const t = await r.run({ size: 64, ratePps: 1000, seconds: 1 });
    assert.equal(f.calls.filter((c) => c === 'status 7').length, 4);
    assert.equal(t.lossPct, 60);
  });
});

describe('rfc2544 flags', () => {
  test('sizes: a list without FCS; above MTU + 14 names the MTU', () => {
    assert.deepEqual(parseSizeList('64, 128,1518'), [64, 128, 1518]);
    assert.throws(() => parseSizeList('64,x'), UsageError);
    assert.throws(() => parseSizeList('64,64'), /listed twice/);
    checkSizes([64, 1514], 'eth1', 1500, false);
    assert.throws(() => checkSizes([64, 1518], 'eth1', 1500, false), /1518 is too large for eth1: its MTU 1500 allows frames of at most 1514 bytes/);
    checkSizes([1518], 'eth1', 1500, true);
    assert.throws(() => checkSizes([50], 'eth1', 1500, false), /below 60/);
  });

  test('percentages, HOST:PORT, rates per size', () => {
    assert.equal(percentArg('0', '--loss', 0, 100), 0);
    assert.equal(percentArg('0.5', '--loss', 0, 100), 0.5);
    assert.throws(() => percentArg('0', '--resolution', 0, 100, true), /above 0/);
    assert.throws(() => percentArg('101', '--loss', 0, 100), UsageError);
    assert.deepEqual(parseHostPort('10.0.0.2:5201', '--control'), { host: '10.0.0.2', port: 5201 });
    assert.deepEqual(parseHostPort('sink.lab:77', '--control'), { host: 'sink.lab', port: 77 });
    assert.throws(() => parseHostPort('10.0.0.2', '--control'), /HOST:PORT/);
    assert.equal(rateFor('--max-rate', '250kpps')(64), 250000);
    assert.equal(rateFor('--max-rate', '8Mbps')(1000), 1000, 'bits of frames: 8 Mbit/s of 1000-byte frames');
    assert.throws(() => rateFor('--max-rate', 'fast'), /bad --max-rate 'fast'/);
  });

  test('the progress line', () => {
    const line = progressLine({
      size: 512, ratePps: 123456, achievedPps: 123000, burst: null, sent: 1000, received: 990, lossPct: 1, ownDrops: 0, seconds: 1, latencyUs: null,
    }, 3, 17);
    assert.equal(line, '[3/17] size 512 rate 123456 pps: sent 1000, received 990, loss 1.00%');
  });

  test('bad usage exits 2 naming the value, before the control channel is reached', () => {
    const cli = (args: string[]) => spawnSync(process.execPath, [resolve(ROOT, 'bin', 'rawpoll.js'), 'rfc2544', ...args], { encoding: 'utf8' });
    const base = ['-i', 'lo', '--to', '127.0.0.1:9', '--control', '127.0.0.1:1'];
    const cases: [string[], RegExp][] = [
      [['speed', ...base], /bad test 'speed'/],
      [['throughput', ...base, '--sizes', '64,70000'], /70000 is too large for lo: its MTU \d+/],
      [['throughput', ...base, '--loss', '-1'], /bad --loss/],
      [['throughput', ...base, '--trial', '0'], /bad --trial/],
      [['throughput', ...base, '--max-rate', '1Gbit'], /bad --max-rate/],
      [['throughput', ...base, '--report', 'x.pdf'], /bad --report 'x.pdf'/],
      [['throughput', ...base, '--rate', '1000'], /--rate is for the latency test/],
      [['throughput', '-i', 'lo', '--to', '127.0.0.1', '--control', 'nowhere'], /bad --control 'nowhere'/],
      [['throughput', '-i', 'nosuchif0', '--to', '127.0.0.1', '--control', '127.0.0.1:1'], /no interface 'nosuchif0'/],
      [['back-to-back', ...base, '--repeat', '0'], /bad --repeat '0'/],
    ];
    for (const [args, re] of cases) {
      const r = cli(args);
      assert.equal(r.status, 2, `${args.join(' ')}: exit ${r.status}, ${r.stderr}`);
      assert.match(r.stderr, re);
    }
    // Good flags and nothing listening: a runtime failure (1), named.
    const r = cli(['throughput', ...base, '--sizes', '64', '--max-rate', '10']);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /control/);
  });
});
