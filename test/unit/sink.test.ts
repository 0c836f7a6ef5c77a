import { test } from 'node:test';
import assert from 'node:assert/strict';
import v8 from 'node:v8';
import vm from 'node:vm';
import { DEFAULT_MAX_FLOWS, SEQ_JUMP, SEQ_WINDOW, SinkAccounting, type SinkReport } from '../../src/rx/sink.js';
import { formatReport } from '../../src/cli/sink.js';
import { pktgenPayload } from '../helpers/pktgen.js';

const SRC = 0x0a000001; // 10.0.0.1
const DST = 0x0a000002; // 10.0.0.2

const pg = pktgenPayload;

/** Feed seqs of one flow, 1 µs apart. */
function feed(seqs: number[], o: ConstructorParameters<typeof SinkAccounting>[0] = {}, srcPort = 5000) {
  const a = new SinkAccounting(o);
  seqs.forEach((s, i) => a.record(SRC, srcPort, DST, 9, pg(s), 1_000_000 + i * 1000, 0));
  return a;
}

function flow(a: SinkAccounting) {
  assert.equal(a.flows.length, 1);
  return a.flowReports()[0];
}

const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

test('in order: nothing lost, duplicated or reordered', () => {
  const f = flow(feed(range(1, 1000)));
  assert.equal(f.received, 1000);
  assert.equal(f.unique, 1000);
  assert.equal(f.lost, 0);
  assert.equal(f.duplicates, 0);
  assert.equal(f.reordered, 0);
  assert.equal(f.firstSeq, 1);
  assert.equal(f.lastSeq, 1000);
  assert.equal(f.src, '10.0.0.1:5000');
  assert.equal(f.dst, '10.0.0.2:9');
  assert.equal(f.bytes, 18000);
});

test('loss: gaps in seq are counted', () => {
  const seqs = range(1, 20).filter((s) => s !== 5 && !(s >= 10 && s <= 12));
  const f = flow(feed(seqs));
  assert.equal(f.lost, 4);
  assert.equal(f.received, 16);
  assert.equal(f.reordered, 0);
});

test('duplicates: repeated seqs, immediate and later', () => {
  const f = flow(feed([1, 2, 2, 3, 3, 3, 4, 2]));
  assert.equal(f.duplicates, 4);
  assert.equal(f.unique, 4);
  assert.equal(f.lost, 0);
  assert.equal(f.reordered, 0);
});

test('reordering: a late datagram fills its gap and is not a loss', () => {
  const f = flow(feed([1, 3, 2, 4, 7, 5, 6, 8]));
  assert.equal(f.reordered, 3);
  assert.equal(f.lost, 0);
  assert.equal(f.duplicates, 0);
});

test('a duplicate of a reordered datagram is a duplicate, not a second reorder', () => {
  const f = flow(feed([1, 3, 2, 2, 4]));
  assert.equal(f.reordered, 1);
  assert.equal(f.duplicates, 1);
  assert.equal(f.lost, 0);
});

test('loss before the first arrival counts from seq 1, unless midStream', () => {
  assert.equal(flow(feed([3, 4, 5])).lost, 2);
  assert.equal(flow(feed([3, 4, 5], { midStream: true })).lost, 0);
  // seq 1 arriving after 2 is a reorder that fills the head gap
  const f = flow(feed([2, 1, 3]));
  assert.equal(f.lost, 0);
  assert.equal(f.reordered, 1);
  assert.equal(f.firstSeq, 1);
});

test('expect: a lost tail is loss too', () => {
  assert.equal(flow(feed(range(1, 8), { expect: 10 })).lost, 2);
  assert.equal(flow(feed(range(1, 8))).lost, 0);
});

test('32-bit wrap: 0xfffffffe, 0xffffffff, 0, 1 is in order; a gap across the wrap is a loss', () => {
  const w = [0xfffffffd, 0xfffffffe, 0xffffffff, 0, 1, 2];
  const f = flow(feed(w, { midStream: true }));
  assert.equal(f.lost, 0);
  assert.equal(f.reordered, 0);
  assert.equal(f.firstSeq, 0xfffffffd);
  assert.equal(f.lastSeq, 2);
  const g = flow(feed([0xfffffffe, 0xffffffff, 1, 2], { midStream: true }));
  assert.equal(g.lost, 1); // seq 0 missing
  const h = flow(feed([0xffffffff, 1, 0, 2], { midStream: true }));
  assert.equal(h.lost, 0);
  assert.equal(h.reordered, 1);
});

test('older than the window: counted as late reorders, not checked for duplication', () => {
  const seqs = [...range(1, 5), ...range(7, SEQ_WINDOW + 10), 6];
  const f = flow(feed(seqs));
  assert.equal(f.late, 1);
  assert.equal(f.reordered, 1);
  assert.equal(f.lost, 0);
});

test('a big jump forward (> window) clears the memory and counts the gap', () => {
  const f = flow(feed([1, 2, 100_000, 100_001, 100_000]));
  assert.equal(f.lost, 100_000 - 3);
  assert.equal(f.duplicates, 1);
});

test('flows are keyed by src ip:port and dst port; non-pktgen datagrams are counted apart', () => {
  const a = new SinkAccounting();
  a.record(SRC, 1000, DST, 9, pg(1), 1, 0);
  a.record(SRC, 1001, DST, 9, pg(1), 2, 0);
  a.record(SRC + 1, 1000, DST, 9, pg(1), 3, 0);
  a.record(SRC, 1000, DST, 10, pg(1), 4, 0);
  a.record(SRC, 1000, DST, 9, pg(2), 5, 0);
  a.record(SRC, 1000, DST, 9, Buffer.from('hello, not pktgen'), 6, 0);
  const bad = pg(3);
  bad[0] = 0;
  a.record(SRC, 1000, DST, 9, bad, 7, 0);
  a.record(SRC, 1000, DST, 9, Buffer.alloc(15), 8, 0);
  assert.equal(a.flows.length, 4);
  assert.deepEqual(a.flowReports().map((f) => [f.src, f.dst, f.received]), [
    ['10.0.0.1:1000', '10.0.0.2:9', 2],
    ['10.0.0.1:1001', '10.0.0.2:9', 1],
    ['10.0.0.2:1000', '10.0.0.2:9', 1],
    ['10.0.0.1:1000', '10.0.0.2:10', 1],
  ]);
  const t = a.totals();
  assert.equal(t.datagrams, 8);
  assert.equal(t.nonPktgen, 3);
  assert.equal(t.received, 5);
  assert.equal(t.lost, 0);
});

test('inter-arrival, rate and one-way latency from the synthetic clock', () => {
  const a = new SinkAccounting();
  const t0Sec = 1_795_000_000;
  for (let i = 0; i < 1001; i++) {
    const arrivalNs = 5e9 + i * 10_000; // 10 µs apart: 100 kpps
    const sentUs = t0Sec * 1e6 + i * 10; // sent 10 µs apart
    const wall = sentUs + (i % 2 === 0 ? 200 : 300); // one-way latency 200 or 300 µs
    a.record(SRC, 5000, DST, 9, pg(i + 1, Math.floor(sentUs / 1e6), sentUs % 1e6), arrivalNs, wall);
  }
  const f = a.flowReports()[0];
  assert.equal(f.seconds, 0.01);
  assert.equal(f.pps, 100_000);
  assert.ok(Math.abs(f.interArrivalUs!.p50 - 10) <= 0.1, `p50 ${f.interArrivalUs!.p50}`);
  assert.ok(Math.abs(f.interArrivalUs!.p99 - 10) <= 0.1, `p99 ${f.interArrivalUs!.p99}`);
  assert.equal(f.latencyUs!.min, 200);
  assert.equal(f.latencyUs!.max, 300);
  assert.equal(f.latencyUs!.avg, 249.95);
  // quantiles come from a log histogram: within 1% (its bucket width) of the true value
  assert.ok(Math.abs(f.latencyUs!.p50 - 200) <= 2, `p50 ${f.latencyUs!.p50}`);
  assert.ok(Math.abs(f.latencyUs!.p99 - 300) <= 3, `p99 ${f.latencyUs!.p99}`);
});

test('no sender timestamp (tv 0/0): no latency', () => {
  assert.equal(flow(feed([1, 2, 3])).latencyUs, null);
});

test('random loss/duplication/reordering matches a simple Set-based model', () => {
  let seed = 12345;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  for (let round = 0; round < 20; round++) {
    const arrivals: number[] = [];
    const pending: number[] = [];
    for (let s = 1; s <= 5000; s++) {
      const r = rnd();
      if (r < 0.03) continue; // lost
      if (r < 0.06) { pending.push(s); continue; } // delayed: comes out a few datagrams later
      arrivals.push(s);
      if (r < 0.08) arrivals.push(s); // duplicated
      if (pending.length && rnd() < 0.3) arrivals.push(pending.shift()!);
    }
    arrivals.push(...pending);
    // The model: a Set of seqs seen and the running maximum.
    const seen = new Set<number>();
    let max = 0;
    let dups = 0;
    let reordered = 0;
    for (const s of arrivals) {
      if (seen.has(s)) dups++;
      else {
        if (s < max) reordered++;
        seen.add(s);
      }
      max = Math.max(max, s);
    }
    const f = flow(feed(arrivals));
    assert.equal(f.received, arrivals.length);
    assert.equal(f.duplicates, dups);
    assert.equal(f.reordered, reordered);
    assert.equal(f.lost, max - seen.size);
    assert.equal(f.late, 0);
  }
});

test('recordAt reads the header in place, at an offset inside a frame', () => {
  const a = new SinkAccounting();
  for (const seq of [1, 2, 4, 3, 3]) {
    // The payload where an Ethernet/IPv4/UDP frame carries it, bytes that are not pktgen's around it.
    const f = Buffer.concat([Buffer.alloc(42, 0xee), pg(seq, 1795000000, 5), Buffer.alloc(4, 0xee)]);
    a.recordAt(SRC, 5001, DST, 9, f, 42, 18, seq * 1000, 1795000000 * 1e6 + 105);
  }
  const r = a.flowReports()[0];
  assert.deepEqual([r.src, r.dst, r.received, r.lost, r.reordered, r.duplicates, r.bytes], ['10.0.0.1:5001', '10.0.0.2:9', 5, 0, 1, 1, 90]);
  assert.equal(r.latencyUs!.min, 100);
  assert.equal(a.recordAt(SRC, 1, DST, 9, pg(1), 4, 14, 0, 0), false, 'too short at that offset');
  assert.equal(a.nonPktgen, 1);
});

test('seq jump: one datagram with seq 0x7fffffff in a flow is a jump, not 2^31 lost; loss on either side still counts', () => {
  const seqs = [...range(1, 1000).filter((x) => x !== 500), 0x7fffffff, ...range(0x7fffffff + 1, 0x7fffffff + 10).filter((x) => x !== 0x7fffffff + 5)];
  const a = feed(seqs);
  const f = flow(a);
  assert.equal(f.seqJumps, 1);
  assert.equal(f.lost, 2, 'seq 500 and 0x7fffffff + 5');
  assert.equal(f.received, seqs.length);
  assert.equal(f.unique, seqs.length);
  assert.deepEqual([f.firstSeq, f.lastSeq], [0x7fffffff, 0x7fffffff + 10], 'first/last seq since the jump');
  const t = a.totals();
  assert.equal(t.seqJumps, 1);
  assert.equal(t.lost, 2);
  // A forged jump and back: two jumps, nothing lost.
  const g = flow(feed([...range(1, 100), 0x7fffffff, ...range(101, 200)]));
  assert.deepEqual([g.seqJumps, g.lost, g.unique, g.duplicates], [2, 0, 201, 0]);
});

test('seq jump: a first datagram with seq 0xffffffff claims no loss (it claimed 4294967294)', () => {
  const f = flow(feed([0xffffffff]));
  assert.deepEqual([f.lost, f.seqJumps, f.firstSeq, f.lastSeq], [0, 1, 0xffffffff, 0xffffffff]);
  const m = flow(feed([0xffffffff], { midStream: true }));
  assert.deepEqual([m.lost, m.seqJumps], [0, 0], 'midStream expects a first seq anywhere');
  // Just inside the rule: a head gap of SEQ_JUMP datagrams is loss.
  const edge = flow(feed([SEQ_JUMP + 1]));
  assert.deepEqual([edge.lost, edge.seqJumps], [SEQ_JUMP, 0]);
  const beyond = flow(feed([SEQ_JUMP + 2]));
  assert.deepEqual([beyond.lost, beyond.seqJumps], [0, 1]);
});

test('seq jump: the threshold both ways; a sender restart (back to seq 1) resynchronises', () => {
  const step = (d: number) => flow(feed([10, 10 + d, 10 + d + 1]));
  assert.deepEqual([step(SEQ_JUMP).lost, step(SEQ_JUMP).seqJumps], [SEQ_JUMP - 1 + 9, 0], 'a gap of SEQ_JUMP - 1 is loss');
  assert.deepEqual([step(SEQ_JUMP + 1).lost, step(SEQ_JUMP + 1).seqJumps], [9, 1]);
  const start = 30_000_000;
  const r = flow(feed([...range(start, start + 99), ...range(1, 50), 52], { midStream: true }));
  assert.deepEqual([r.seqJumps, r.lost, r.late, r.reordered, r.firstSeq, r.lastSeq], [1, 1, 0, 0, 1, 52]);
  // Across the 2^32 wrap a step of +2 is not a jump.
  const w = flow(feed([0xfffffffe, 0xffffffff, 0, 1], { midStream: true }));
  assert.deepEqual([w.seqJumps, w.lost], [0, 0]);
});

test('duplicates far behind the head are still found as the bitmap grows; a one-datagram flow holds a few bytes', () => {
  const a = feed([...range(1, 40000), 17, 39000, 20000]);
  const f = flow(a);
  assert.deepEqual([f.duplicates, f.lost, f.reordered], [3, 0, 0]);
  // The bitmap and one inter-arrival histogram reaching 1 µs (no latency: the sender left tv 0).
  assert.ok(a.flows[0].allocatedBytes <= SEQ_WINDOW / 8 + 4096, `${a.flows[0].allocatedBytes}`);
  const one = feed([1]);
  assert.ok(one.flows[0].allocatedBytes <= 8, `${one.flows[0].allocatedBytes} bytes for a one-datagram flow`);
  // A reorder older than the bitmap when it was small (64 seqs) but inside SEQ_WINDOW: a reorder, then a duplicate.
  const b = flow(feed([1, ...range(3, 5000), 2, 2]));
  assert.deepEqual([b.reordered, b.duplicates, b.late, b.lost], [1, 1, 0, 0]);
});

/**
 * Datagrams 1 and 2 from 10.<i>:<port>, both stamped (a latency histogram each flow), or only the first (its one
 * latency and its one gap are kept inline: no histogram).
 */
function flood(a: SinkAccounting, sources: number, stampBoth = true): void {
  const p1 = pg(1, 1795000000, 0);
  const p2 = stampBoth ? pg(2, 1795000000, 0) : pg(2);
  for (let i = 0; i < sources; i++) {
    const ip = 0x0a000000 + Math.floor(i / 4);
    const port = 1024 + (i % 4);
    a.record(ip, port, DST, 9, p1, i * 1000, 1795000000e6 + 150);
    a.record(ip, port, DST, 9, p2, i * 1000 + 400, 1795000000e6 + 160);
  }
}

function reportOf(a: SinkAccounting): SinkReport {
  const totals = a.totals();
  return {
    mode: 'socket', port: 9, bind: null, iface: null, seconds: 1, reason: 'idle', timestamp: 'kernel', clock: 'kernel (CLOCK_REALTIME)',
    timestampWarning: null, rcvbufBytes: 1 << 20, rcvbufForced: false, socketDrops: 0, capture: null,
    loss: { seqGaps: totals.lost, own: 0, network: totals.lost, exact: true },
    engine: { datagrams: totals.datagrams, ownDrops: 0, ifDrops: 0, captured: 0, truncated: 0, noTimestamp: 0, batches: 1, queueWaits: 0, linkDownMs: 0 },
    maxFlows: a.maxFlows, linkOutages: 0, linkDownMs: 0, totals, flows: a.flowReports(),
  };
}

/** Heap + array buffers after a full GC (gc exposed at run time: node:test gives no flags per file). */
function memoryNow(): number {
  v8.setFlagsFromString('--expose-gc');
  (vm.runInNewContext('gc') as () => void)();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

test('flow budget: 200 000 distinct sources keep 10 000 flows, the rest counted as flows-over-budget, memory stays under 100 MB', () => {
  const before = memoryNow();
  const a = new SinkAccounting();
  flood(a, 200_000);
  const grown = memoryNow() - before;
  assert.equal(a.maxFlows, DEFAULT_MAX_FLOWS);
  assert.equal(a.flows.length, 10_000);
  const t = a.totals();
  assert.deepEqual(t.refused, { 'flows-over-budget': 380_000, 'flows-evicted': 0 });
  assert.equal(t.received, 20_000);
  assert.equal(t.datagrams, 400_000);
  assert.equal(a.accounted, 20_000);
  // Was ~60 KB a flow: 10 000 flows alone took 600 MB. Measured now: 79 MB, ~8 KB a flow, nearly all of it the
  // latency histogram each flow's second sample makes (JS mode here; sinkaccount-memory.test.ts measures WASM mode).
  assert.ok(grown < 100e6, `memory grew by ${(grown / 1e6).toFixed(1)} MB`);
  const text = formatReport(reportOf(a));
  const lines = text.split('\n');
  // Header, 50 rows, the rest in one line, a blank, totals, the budget warning, loss, clock, and the final newline.
  assert.equal(lines.length, 1 + 50 + 1 + 1 + 1 + 1 + 1 + 1 + 1, text.slice(0, 400));
  assert.equal(lines[51], '... and 9950 more flows (19900 received; --json lists them all)');
  assert.match(lines[53], /^10000 flows, 20000 received, 0 lost/);
  assert.equal(lines[54], 'warning: 380000 datagrams not accounted (flows-over-budget): more than --max-flows 10000 flows; raise --max-flows');
  assert.equal(JSON.parse(JSON.stringify(reportOf(a))).flows.length, 10_000);
});

test('flow budget raised to 200 000: each flow costs under 2 KB, and the text report (it threw RangeError at ~140k) renders', () => {
  const before = memoryNow();
  const a = new SinkAccounting({ maxFlows: 200_000 });
  flood(a, 200_000, false);
  assert.ok(a.flows.every((f) => f.latency.hist === null && f.interArrival.hist === null));
  const perFlow = (memoryNow() - before) / 200_000;
  assert.equal(a.flows.length, 200_000);
  assert.equal(a.refused['flows-over-budget'], 0);
  assert.ok(perFlow < 2048, `${Math.round(perFlow)} bytes a flow`);
  const lines = formatReport(reportOf(a)).split('\n');
  assert.equal(lines[51], '... and 199950 more flows (399900 received; --json lists them all)');
  assert.match(lines[53], /^200000 flows, 400000 received/);
});

test('flow budget: top flows by received first; maxFlows must be >= 1', () => {
  const a = new SinkAccounting({ maxFlows: 3 });
  for (let port = 1; port <= 5; port++) for (let s = 1; s <= port; s++) a.record(SRC, port, DST, 9, pg(s), s, 0);
  // Port 1's flow had one datagram, but within the last 100 ms: too young to give way to port 4 or 5.
  assert.deepEqual(a.flows.map((f) => f.key.srcPort), [1, 2, 3]);
  assert.deepEqual(a.refused, { 'flows-over-budget': 4 + 5, 'flows-evicted': 0 });
  assert.equal(a.record(SRC, 4, DST, 9, pg(9), 1, 0), false);
  assert.equal(a.record(SRC, 3, DST, 9, pg(4), 4, 0), true, 'a known flow is still accounted');
  // 100 ms later it does.
  assert.equal(a.record(SRC, 6, DST, 9, pg(1), 100e6 + 1, 0), true);
  assert.deepEqual(a.flows.map((f) => f.key.srcPort), [2, 3, 6]);
  assert.equal(a.refused['flows-evicted'], 1);
  const lines = formatReport(reportOf(a), 2).split('\n');
  assert.match(lines[1], /^10\.0\.0\.1:3 -> /);
  assert.match(lines[2], /^10\.0\.0\.1:2 -> /);
  assert.equal(lines[3], '... and 1 more flow (1 received; --json lists them all)');
  assert.throws(() => new SinkAccounting({ maxFlows: 0 }), /bad maxFlows '0': expected an integer >= 1/);
});

test('flow budget under spoofed sources: one-datagram flows 100 ms old give way, so a real flow starting during and after the flood is accounted whole', () => {
  const a = new SinkAccounting({ maxFlows: 1000 });
  const spoof = pg(1, 1795000000, 0);
  let t = 0;
  const real = (port: number, seq: number) => a.record(0x0a000063, port, DST, 9, pg(seq, 1795000000, 0), (t += 1000), 1795000000e6);
  let realSeq = 0;
  // 5 000 spoofed sources a second for 6 s (half the rate at which 1 000 flows of 100 ms would lock new flows out):
  // the budget is full after 0.2 s, from when the oldest give way.
  for (let i = 0; i < 30_000; i++) {
    spoof.writeUInt32BE((i * 2654435761) >>> 0, 4);             // random-looking seqs, 0xffffffff among them
    if (i % 97 === 0) spoof.writeUInt32BE(0xffffffff, 4);
    a.record(0xac100000 + i, 1024 + (i % 60000), DST, 9, spoof, (t += 200_000), 1795000000e6);
    if (i >= 5_000 && i < 25_000 && i % 10 === 0) assert.ok(real(4000, ++realSeq), 'the real flow is accounted during the flood');
  }
  for (let s = 1; s <= 500; s++) assert.ok(real(4001, s), 'a real flow begun after the flood is accounted');
  const flows = a.flowReports();
  const during = flows.find((f) => f.srcPort === 4000)!;
  const after = flows.find((f) => f.srcPort === 4001)!;
  assert.deepEqual([during.received, during.unique, during.lost, during.seqJumps], [2000, 2000, 0, 0]);
  assert.deepEqual([after.received, after.lost], [500, 0]);
  assert.equal(a.flows.length, 1000);
  assert.equal(a.refused['flows-over-budget'], 0);
  assert.equal(a.refused['flows-evicted'], 30_000 - 998);
  // At twice the rate the budget holds only flows under 100 ms old: new ones, real or not, are refused.
  const b = new SinkAccounting({ maxFlows: 1000 });
  for (let i = 0; i < 30_000; i++) b.record(0xac100000 + i, 1024, DST, 9, spoof, i * 50_000, 1795000000e6);
  assert.ok(b.refused['flows-over-budget'] > 14_000, JSON.stringify(b.refused));
  assert.equal(a.accounted, a.totals().received);
});
