/**
 * Incast, the switch-buffer experiment in miniature: scripts/incast-demo builds three sender namespaces and a
 * receiver on a Linux bridge whose port to the receiver is shaped by tbf with a 30 kB queue, then runs three blasts
 * synchronised with --start-at (bursts of 24 x 1000-byte frames: one fits the queue, three together overrun it),
 * then the same blasts staggered. The sink's loss must be exactly what tbf dropped (its own counter, read with
 * tc -s), and the synchronised run must lose frames. The script removes its lab itself (trap on EXIT).
 * With --sweep it searches for the largest incast burst the port takes without loss and reports the buffer it implies;
 * the truth is tbf's burst + limit, which the test sets (see the test for the figures).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { ROOT } from '../helpers/lab.js';

interface Run {
  run: string;
  staggerMs: number;
  tbfDropped: number;
  sink: {
    socketDrops: number;
    totals: { received: number; unique: number; lost: number; duplicates: number };
    flows: { src: string; received: number; unique: number; lost: number; firstSeq: number }[];
  };
}

function demo(args: string[]): Promise<{ code: number | null; out: string; err: string; pid: number }> {
  return new Promise((res) => {
    const p = spawn('bash', [resolve(ROOT, 'scripts', 'incast-demo'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    // The script cleans up on TERM; never leave it running past the test.
    const guard = setTimeout(() => p.kill('SIGTERM'), 150_000);
    p.on('close', (code) => {
      clearTimeout(guard);
      res({ code, out, err, pid: p.pid! });
    });
  });
}

function assertLabGone(pid: number): void {
  const left = execFileSync('ip', ['netns', 'list']).toString().split('\n').filter((l) => l.startsWith(`ic${pid}`));
  assert.deepEqual(left, []);
}

test('incast: synchronised bursts overrun the shaped port and the sink reports exactly the loss tbf caused', async () => {
  const r = await demo(['--json', '--senders', '3', '--burst', '24', '--bursts', '20', '--size', '1000', '--queue', '30000', '--rate', '50mbit']);
  assert.equal(r.code, 0, r.err);
  const runs = r.out.trim().split('\n').map((l) => JSON.parse(l) as Run);
  assert.deepEqual(runs.map((x) => x.run), ['synchronized', 'staggered']);
  for (const x of runs) {
    assert.equal(x.sink.socketDrops, 0, `${x.run}: the sink's socket overflowed`);
    assert.equal(x.sink.flows.length, 3, `${x.run}: one flow per sender`);
    assert.deepEqual(x.sink.flows.map((f) => f.src).sort(), ['10.99.0.1:5001', '10.99.0.2:5002', '10.99.0.3:5003']);
    for (const f of x.sink.flows) assert.equal(f.unique + f.lost, 480, `${x.run} ${f.src}: every one of the 480 seqs is received or lost`);
    assert.equal(x.sink.totals.duplicates, 0);
    // Ground truth: the only place frames can be lost is the tbf queue, and tbf counts its drops.
    assert.equal(x.sink.totals.lost, x.tbfDropped, `${x.run}: sink lost ${x.sink.totals.lost}, tbf dropped ${x.tbfDropped}`);
  }
  assert.ok(runs[0].sink.totals.lost > 0, 'synchronised bursts must overrun a 30 kB queue');
  // The script's namespaces (named ic<its pid>…) are gone.
  assertLabGone(r.pid);
});

interface SweepTrial { frames: number; void: string | null; sent: number; received: number; lost: number; tbfDropped: number; drainedFrames: number }
interface Sweep {
  mode: string;
  expected: { bytes: number; frames: number };
  largestLossFree: SweepTrial | null;
  smallestLossy: SweepTrial | null;
  bufferFrames: number | null;
  bufferBytes: number | null;
  lossEqualsTbfDrops: boolean;
  trials: SweepTrial[];
  notes: string[];
}

// tbf rate 4mbit burst 8000 limit 24000 in front of the receiver: 800-byte frames (tbf charges blast's size, no FCS)
// pass (8000 + 24000) / 800 = 40 at once, and 500 a second after that; the sweep subtracts what passed while the
// burst arrived and must find burst + limit within ±20%. Every trial's loss must equal tbf's drops in that trial.
test('incast-demo --sweep: the largest loss-free incast burst implies tbf\'s burst + limit within ±20%', async () => {
  const r = await demo(['--sweep', '--json', '--senders', '3', '--rate', '4mbit', '--bucket', '8000', '--queue', '24000', '--size', '800', '--max-frames', '96']);
  assert.equal(r.code, 0, r.err);
  const s = JSON.parse(r.out) as Sweep;
  console.log(`incast-demo --sweep: ${s.trials.length} trials (frames/lost: ${s.trials.map((t) => `${t.frames}/${t.void ? 'void' : t.lost}`).join(' ')}); ` +
    `largest loss-free ${s.largestLossFree?.frames} frames, ${s.largestLossFree?.drainedFrames} forwarded meanwhile; implied buffer ` +
    `${s.bufferFrames} frames = ${s.bufferBytes} bytes, expected ${s.expected.frames} frames = ${s.expected.bytes} bytes`);
  assert.equal(s.mode, 'sweep');
  assert.deepEqual(s.expected, { bytes: 32000, frames: 40 });
  assert.deepEqual(s.notes, []);
  const valid = s.trials.filter((t) => !t.void);
  assert.equal(valid[0].frames, 96);
  assert.ok(valid[0].lost > 0, '96 × 800 bytes must overrun 32 000');
  assert.ok(s.largestLossFree && s.smallestLossy);
  assert.equal(s.smallestLossy.frames, s.largestLossFree.frames + 1);
  for (const t of s.trials) {
    assert.equal(t.lost, t.tbfDropped, `${t.frames} frames: lost ${t.lost}, tbf dropped ${t.tbfDropped}`);
    if (!t.void) assert.equal(t.sent, t.frames);
  }
  assert.equal(s.lossEqualsTbfDrops, true);
  assert.ok(s.bufferBytes !== null && Math.abs(s.bufferBytes - 32000) <= 0.2 * 32000, `${s.bufferBytes} bytes vs 32000`);
  assert.ok(s.bufferFrames !== null && Math.abs(s.bufferFrames - 40) <= 0.2 * 40, `${s.bufferFrames} frames vs 40`);
  assertLabGone(r.pid);
});
