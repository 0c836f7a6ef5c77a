/**
 * `rawpoll rfc2544` against a device whose truth the test sets: namespace M bridges A (the tester) and B (the sink,
 * `rawpoll sink --serve`), and shapes M's port toward B with `tbf rate R burst B limit L`. tbf charges each frame its
 * skb->len on that port: the Ethernet frame as blast built it, header to the end of padding, no FCS — exactly blast's
 * size S. So the device forwards R / (8 × S) frames/s, and a burst sent far faster than that passes tbf's bucket
 * (B bytes) and its queue (L bytes): (B + L) / S frames without loss, plus the few tbf sends during the burst.
 * The frame-loss curve is checked against tbf's own drop counter (tc -s qdisc show), read between trials.
 * R is low (8 Mbit/s: 1953 frames/s of 512 bytes) so neither sender nor sink is ever the bottleneck, and so that the
 * sender's worst stall on this 2-core VM (~25 ms, then the frames due go out back to back: 25 ms × R = 25 KB) fits
 * in tbf's burst + limit (48 KB): at 20 Mbit/s a stall in a trial at 98% of R lost frames. Trials are 1 s.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, must, RAWPOLL, rawpollAsync, waitFor, qdiscDrops } from '../helpers/lab.js';
import type { Rfc2544Run } from '../../src/exp/results.js';

const RATE_BPS = 8e6;
const BURST = 16000;
const LIMIT = 32000;
const SIZE = 512;
const PPS = RATE_BPS / (8 * SIZE); // 1953.1 frames/s as tbf counts them
const TOKEN = 'rfc2544-test';
const CONTROL_PORT = 5201;

let lab: Lab;
let a: string;
let m: string;
let ifA: string;
let ifMb: string;
let ipB: string;
const tmp = mkdtempSync(join(tmpdir(), 'rawpoll-rfc2544-'));

function tbfDrops(): number {
  return qdiscDrops(m, ifMb);
}

function args(test: string, more: string[]): string[] {
  return ['rfc2544', test, '-i', ifA, '--to', `${ipB}:9`, '--control', `${ipB}:${CONTROL_PORT}`, '--token', TOKEN,
    '--sizes', String(SIZE), '--trial', '1', ...more];
}

before(async () => {
  lab = new Lab('r25');
  a = lab.ns('a');
  m = lab.ns('m');
  const b = lab.ns('b');
  ifA = `${lab.tag}A`.slice(-15);
  const ifMa = `${lab.tag}Ma`.slice(-15);
  ifMb = `${lab.tag}Mb`.slice(-15);
  const ifB = `${lab.tag}B`.slice(-15);
  lab.veth(a, ifA, m, ifMa);
  lab.veth(m, ifMb, b, ifB);
  must('ip', ['-n', m, 'link', 'add', 'br0', 'type', 'bridge']);
  must('ip', ['-n', m, 'link', 'set', ifMa, 'master', 'br0']);
  must('ip', ['-n', m, 'link', 'set', ifMb, 'master', 'br0']);
  must('ip', ['-n', m, 'link', 'set', 'br0', 'up']);
  must('tc', ['-n', m, 'qdisc', 'add', 'dev', ifMb, 'root', 'tbf', 'rate', `${RATE_BPS / 1e6}mbit`, 'burst', String(BURST), 'limit', String(LIMIT)]);
  const subnet = `10.${150 + (process.pid % 50)}.${process.pid % 250}`;
  lab.addr(a, ifA, `${subnet}.1/24`);
  ipB = `${subnet}.2`;
  lab.addr(b, ifB, `${ipB}/24`);
  const sink: ChildProcess = lab.spawn(b, [process.execPath, RAWPOLL, 'sink', '--serve', `${ipB}:${CONTROL_PORT}`, '--token', TOKEN]);
  let err = '';
  sink.stderr!.on('data', (d) => (err += d));
  assert.ok(await waitFor(() => /serving trials/.test(err), 10000), `sink --serve did not start: ${err}`);
});

after(() => {
  lab?.destroy();
  rmSync(tmp, { recursive: true, force: true });
});

describe('rawpoll rfc2544 through a tbf shaper (namespaces)', { timeout: 120000 }, () => {
  test('throughput: within ±10% of tbf\'s rate in frames/s', async () => {
    const r = await rawpollAsync(a, args('throughput', ['--max-rate', '4000', '--resolution', '2', '--settle', '0.3', '--json']));
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '', '--json: nothing on stderr');
    const run = JSON.parse(r.stdout) as Rfc2544Run;
    const t = run.throughput![0];
    console.log(`throughput at ${SIZE} bytes: ${t.ratePps} pps measured, ${PPS.toFixed(1)} expected (${RATE_BPS / 1e6} Mbit/s / (8 × ${SIZE})), ${run.trials.length} trials`);
    assert.ok(Math.abs(t.ratePps - PPS) <= PPS * 0.1, `${t.ratePps} pps vs ${PPS.toFixed(1)}`);
    assert.equal(run.sizesCountFcs, false);
    assert.equal(run.test, 'throughput');
    assert.equal(run.trials[0].ratePps, 4000);
    assert.ok(run.trials[0].lossPct > 40, 'the max rate loses about half');
    assert.ok(run.trials.every((x) => x.ownDrops === 0));
  });

  test('frame-loss: the loss at 100% matches tbf\'s drop counter within 1%', async () => {
    const before0 = tbfDrops();
    let after1: number | null = null;
    const p = spawn('ip', ['netns', 'exec', a, process.execPath, RAWPOLL, ...args('frame-loss', ['--max-rate', '3500', '--settle', '1'])]);
    let err = '';
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => {
      err += d;
      // The first trial's line comes right after its close, a second before the next trial: read tbf's counter now.
      if (after1 === null && /^\[1\//m.test(err)) after1 = tbfDrops();
    });
    const code = await new Promise<number | null>((res) => p.on('close', res));
    assert.equal(code, 0, err);
    const m1 = /^\[1\/\d+\] size 512 rate 3500 pps: sent (\d+), received (\d+), loss ([\d.]+)%/m.exec(err);
    assert.ok(m1 && after1 !== null, err);
    const sent = Number(m1[1]);
    const lost = sent - Number(m1[2]);
    const drops = after1! - before0;
    const tbfPct = (100 * drops) / sent;
    console.log(`frame loss at 100% (3500 pps): rfc2544 ${Number(m1[3]).toFixed(2)}% (${lost} of ${sent}), tbf dropped ${drops} (${tbfPct.toFixed(2)}%)`);
    assert.ok(Math.abs(Number(m1[3]) - tbfPct) <= 1, `${m1[3]}% vs tbf ${tbfPct.toFixed(2)}%`);
    // 3500 pps offered, 1953 forwarded: about 44% lost.
    assert.ok(Math.abs(Number(m1[3]) - 100 * (1 - PPS / 3500)) < 5);
    // The curve ends after two loss-free steps: 50% and 40% of 3500 are below tbf's rate, 60% (2100) above it.
    assert.match(out, /\b60\s+2100\s+[1-9]/);
    assert.match(out, /\b40\s+1400\s+0\b/);
    assert.doesNotMatch(out, /\b30\s+1050\b/);
  });

  test('back-to-back: the longest loss-free burst is (burst + limit) / frame size within ±20%', async () => {
    const expected = (BURST + LIMIT) / SIZE; // 93.75 frames
    const r = await rawpollAsync(a, args('back-to-back', ['--repeat', '2', '--max-burst', '1000', '--throughput', '8Mbps', '--settle', '0.2', '--json']));
    assert.equal(r.code, 0, r.stderr);
    const run = JSON.parse(r.stdout) as Rfc2544Run;
    const b = run.backToBack![0];
    console.log(`back-to-back at ${SIZE} bytes: bursts ${b.frames.join(', ')} (mean ${b.meanFrames}), expected ${expected.toFixed(1)}; ` +
      `max rate ${run.maxRatePps} pps (unpaced); buffer time ${b.bufferTimeUs} µs; ${run.trials.length} trials`);
    for (const f of b.frames) assert.ok(Math.abs(f - expected) <= expected * 0.2, `${f} vs ${expected}`);
    assert.ok(b.bufferTimeUs !== null && b.bufferTimeUs > 0);
    assert.equal(run.throughput, undefined, '--throughput given: no search');
  });

  test('latency: at --rate, the sink\'s percentiles, clock and histogram', async () => {
    const report = join(tmp, 'latency.html');
    const r = await rawpollAsync(a, args('latency', ['--rate', '1000', '--settle', '0.2', '--json', '--report', report]));
    assert.equal(r.code, 0, r.stderr);
    const run = JSON.parse(r.stdout) as Rfc2544Run;
    const l = run.latency![0];
    console.log(`latency at ${SIZE} bytes, 1000 pps: p50 ${l.latencyUs.p50} µs, p99 ${l.latencyUs.p99} µs, max ${l.latencyUs.max} µs (${l.clock})`);
    assert.equal(run.trials.length, 1);
    assert.equal(run.trials[0].lossPct, 0);
    assert.ok(l.latencyUs.p50 > 0 && l.latencyUs.p50 <= l.latencyUs.p99 && l.latencyUs.p99 <= l.latencyUs.max);
    // Below tbf's rate frames do not queue there: p50 far under a full queue's 32 ms (limit / rate); p99 too, though
    // this VM's scheduling has put it at a few ms.
    assert.ok(l.latencyUs.p50 < 3000 && l.latencyUs.p99 < 32000, `p50 ${l.latencyUs.p50} µs, p99 ${l.latencyUs.p99} µs`);
    assert.ok(l.clock.length > 0);
    assert.ok(typeof l.histogram === 'string' && l.histogram.length > 0);
    const html = readFileSync(report, 'utf8');
    assert.match(html, /<svg/);
    assert.ok(html.includes(l.histogram!), 'the report embeds the run\'s JSON');
  });

  test('the control channel unreachable: exit 1 before any frame, naming it', async () => {
    const r = await rawpollAsync(a, ['rfc2544', 'throughput', '-i', ifA, '--to', `${ipB}:9`, '--control', `${ipB}:${CONTROL_PORT + 1}`, '--sizes', '512', '--max-rate', '100']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`control channel at ${ipB.replace(/\./g, '\\.')}:${CONTROL_PORT + 1}`));
  });
});
