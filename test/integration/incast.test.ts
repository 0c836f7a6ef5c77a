/**
 * Incast, the switch-buffer experiment in miniature: scripts/incast-demo builds three sender namespaces and a
 * receiver on a Linux bridge whose port to the receiver is shaped by tbf with a 30 kB queue, then runs three blasts
 * synchronised with --start-at (bursts of 24 x 1000-byte frames: one fits the queue, three together overrun it),
 * then the same blasts staggered. The sink's loss must be exactly what tbf dropped (its own counter, read with
 * tc -s), and the synchronised run must lose frames. The script removes its lab itself (trap on EXIT).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
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
  const tag = `ic${r.pid}`;
  const { execFileSync } = await import('node:child_process');
  const left = execFileSync('ip', ['netns', 'list']).toString().split('\n').filter((l) => l.startsWith(tag));
  assert.deepEqual(left, []);
});
