// SinkAccounting with hdr-histogram-js in WebAssembly mode (as the Sink runs it): the batched entry, histograms made
// lazily and freed, totals over all flows, intervals that add up to the totals, and histograms merged across sinks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { PktgenBatch } from '../../src/rx/batch.js';
import { initHistograms, Samples } from '../../src/rx/histogram.js';
import {
  HISTOGRAMS_FORMAT, mergeHistograms, SinkAccounting, type AccountingOptions, type HistogramsDoc, type IntervalReport,
} from '../../src/rx/sinkaccount.js';
import { pktgenPayload } from '../helpers/pktgen.js';

await initHistograms();

const SRC = 0x0a000001; // 10.0.0.1
const DST = 0x0a000002; // 10.0.0.2
const T0 = 1_795_000_000; // the sender's tv_sec

interface Rec { srcPort: number; seq: number; rxNs: number; latencyNs: number; len: number; srcIp?: number; dstPort?: number }

const pg = pktgenPayload;

/** Records as an engine's batch; the columns run `pad` records past n, with records that must not be read. */
function batch(recs: Rec[], nonPktgen = 0, pad = 3): PktgenBatch {
  const len = recs.length + pad;
  const b: PktgenBatch = {
    n: recs.length, nonPktgen,
    srcIp: new Uint32Array(len).fill(0xc0a80001), dstIp: new Uint32Array(len).fill(DST), srcPort: new Uint16Array(len).fill(7),
    dstPort: new Uint16Array(len).fill(9), seq: new Uint32Array(len).fill(77), len: new Uint32Array(len).fill(1000),
    rxNs: new Float64Array(len).fill(1e12), latencyNs: new Float64Array(len).fill(5e6),
  };
  recs.forEach((r, i) => {
    b.srcIp[i] = r.srcIp ?? SRC;
    b.srcPort[i] = r.srcPort;
    b.dstPort[i] = r.dstPort ?? 9;
    b.seq[i] = r.seq;
    b.rxNs[i] = r.rxNs;
    b.latencyNs[i] = r.latencyNs;
    b.len[i] = r.len;
  });
  return b;
}

/** The same record through record(): the latency (whole µs here) becomes the sender's tv, NaN a tv of 0/0. */
function recordOne(a: SinkAccounting, r: Rec): boolean {
  const sentUs = T0 * 1e6 + Math.floor(r.rxNs / 1000);
  const wallUs = sentUs + r.latencyNs / 1000;
  const p = Number.isNaN(r.latencyNs) ? pg(r.seq, 0, 0, r.len) : pg(r.seq, Math.floor(sentUs / 1e6), sentUs % 1e6, r.len);
  return a.record(r.srcIp ?? SRC, r.srcPort, DST, r.dstPort ?? 9, p, r.rxNs, wallUs);
}

function lcg(seed: number): () => number {
  return () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
}

/**
 * Several flows interleaved, with loss, duplicates, reordering (some beyond a big jump), latencies of whole µs
 * (some negative) or none, and a stray seq jump.
 */
function traffic(seed: number, n: number, flows = 5): Rec[] {
  const rnd = lcg(seed);
  const next = new Array(flows).fill(1);
  const recs: Rec[] = [];
  const held: Rec[] = [];
  let t = 1e9;
  for (let i = 0; i < n; i++) {
    const k = Math.floor(rnd() * flows);
    t += Math.floor(1 + rnd() * 20_000);
    const seq = rnd() < 0.002 ? 0x7fffffff : next[k]++;
    const lat = rnd() < 0.1 ? NaN : Math.round((rnd() < 0.05 ? -20 : 50) + rnd() * 400) * 1000;
    const r: Rec = { srcPort: 5000 + k, seq, rxNs: t, latencyNs: lat, len: 18 + k };
    const x = rnd();
    if (x < 0.03) continue; // lost
    if (x < 0.06) { held.push(r); continue; } // comes later
    recs.push(r);
    if (x < 0.08) recs.push({ ...r, rxNs: (t += 100) }); // duplicated
    if (held.length && rnd() < 0.2) recs.push({ ...held.shift()!, rxNs: (t += 100) });
  }
  for (const r of held) recs.push({ ...r, rxNs: (t += 100) });
  return recs;
}

/** Feeds recs as batches of random sizes (1 to 300 records). */
function feedBatches(a: SinkAccounting, recs: Rec[], seed = 1): void {
  const rnd = lcg(seed);
  for (let i = 0; i < recs.length;) {
    const k = 1 + Math.floor(rnd() * 300);
    a.recordBatch(batch(recs.slice(i, i + k)));
    i += k;
  }
}

test('recordBatch accounts exactly as record() does: the same flows, counts and quantiles', () => {
  for (const seed of [1, 2, 3]) {
    const recs = traffic(seed, 20_000);
    const one = new SinkAccounting();
    for (const r of recs) assert.ok(recordOne(one, r));
    const batched = new SinkAccounting();
    feedBatches(batched, recs, seed);
    assert.deepEqual(batched.flowReports(), one.flowReports());
    assert.deepEqual(batched.totals(), one.totals());
    assert.equal(batched.accounted, recs.length);
    assert.ok(one.totals().seqJumps > 0 && one.totals().reordered > 0 && one.totals().duplicates > 0 && one.totals().lost > 0);
    one.destroy();
    batched.destroy();
  }
});

test('recordBatch reads records 0..n-1 only, counts the batch\'s non-pktgen datagrams, and skips other ports when filtered', () => {
  const a = new SinkAccounting();
  const recs: Rec[] = [
    { srcPort: 1, seq: 1, rxNs: 1000, latencyNs: 150_000, len: 100 },
    { srcPort: 1, seq: 2, rxNs: 2000, latencyNs: NaN, len: 100 },
    { srcPort: 1, seq: 3, rxNs: 3000, latencyNs: 160_000, len: 100, dstPort: 10 },
  ];
  assert.equal(a.recordBatch(batch(recs, 4)), 3);
  assert.deepEqual(a.flowReports().map((f) => [f.src, f.dst, f.received, f.bytes]), [['10.0.0.1:1', '10.0.0.2:9', 2, 200], ['10.0.0.1:1', '10.0.0.2:10', 1, 100]]);
  assert.deepEqual([a.datagrams, a.nonPktgen, a.accounted], [7, 4, 3]);
  assert.equal(a.recordBatch(batch([{ ...recs[1], seq: 4, rxNs: 4000 }, { ...recs[2], seq: 5 }], 1), 9), 1);
  assert.deepEqual([a.datagrams, a.nonPktgen, a.accounted], [9, 5, 4]);
  const f = a.flowReports()[0];
  assert.deepEqual([f.received, f.lost, f.latencyUs!.min, f.latencyUs!.max], [3, 1, 150, 150]);
  assert.equal(a.recordBatch(batch([], 2)), 0);
  assert.deepEqual([a.datagrams, a.nonPktgen], [11, 7]);
  a.destroy();
});

test('a negative latency (clocks not synced) counts as 0 in the quantiles; min and avg keep the true values', () => {
  const a = new SinkAccounting();
  const lats = [-5000, -3000, -1000, 1000, 2000];
  a.recordBatch(batch(lats.map((l, i) => ({ srcPort: 1, seq: i + 1, rxNs: (i + 1) * 1000, latencyNs: l, len: 18 }))));
  assert.deepEqual(a.flowReports()[0].latencyUs, { min: -5, p50: 0, p90: 2, p99: 2, p999: 2, max: 2, avg: -1.2 });
  assert.deepEqual(a.totals().latencyUs, { min: -5, p50: 0, p90: 2, p99: 2, p999: 2, max: 2, avg: -1.2 });
  a.destroy();
});

test('a flow makes a histogram at a series\' second sample: none for one datagram, none for inter-arrival until the third; destroy frees them', () => {
  const a = new SinkAccounting();
  const r = (seq: number, latencyNs = 150_000) => ({ srcPort: 1, seq, rxNs: seq * 10_000, latencyNs, len: 18 });
  a.recordBatch(batch([r(1)]));
  const f = a.flows[0];
  assert.deepEqual([f.interArrival.hist, f.latency.hist, f.allocatedBytes], [null, null, 8]);
  // One sample each: reported from the inline value, exactly.
  assert.deepEqual(f.report().latencyUs, { min: 150, p50: 150, p90: 150, p99: 150, p999: 150, max: 150, avg: 150 });
  a.recordBatch(batch([r(2, 170_000)]));
  assert.equal(f.interArrival.hist, null, 'one gap');
  assert.notEqual(f.latency.hist, null);
  assert.deepEqual(f.report().interArrivalUs, { p50: 10, p90: 10, p99: 10, p999: 10, max: 10 });
  a.recordBatch(batch([r(3, NaN)]));
  assert.notEqual(f.interArrival.hist, null);
  assert.equal(f.latency.count, 2);
  assert.ok(f.allocatedBytes > 8);
  const lat = f.report().latencyUs!;
  assert.deepEqual([lat.min, lat.max, lat.avg], [150, 170, 160]);
  assert.ok(Math.abs(lat.p50 - 150) <= 1.5, `p50 ${lat.p50}`);
  a.destroy();
  assert.deepEqual([f.interArrival.hist, f.latency.hist, f.report().latencyUs, f.report().interArrivalUs], [null, null, null, null]);
  assert.equal(a.totals().received, 3, 'counts outlive destroy()');
});

test('hdr quantiles are within 1% of the exact ones, clamped to the exact min and max; values beyond 2^42 ns are clamped', () => {
  const rnd = lcg(7);
  const s = new Samples();
  const xs: number[] = [];
  for (let i = 0; i < 20000; i++) {
    const v = Math.floor(Math.exp(rnd() * 20)); // 1 .. 5e8 ns, log-uniform
    xs.push(v);
    s.add(v);
  }
  xs.sort((p, q) => p - q);
  for (const q of [0, 1, 50, 90, 99, 99.9, 100]) {
    const exact = xs[Math.max(0, Math.ceil((q / 100) * xs.length) - 1)];
    const got = s.percentile(q);
    assert.ok(Math.abs(got - exact) <= Math.max(1, exact * 0.01), `p${q}: ${got} vs ${exact}`);
  }
  assert.equal(s.percentile(100), xs[xs.length - 1]);
  assert.ok(Number.isNaN(new Samples().percentile(50)));
  const big = new Samples();
  [1000, 2 ** 50, 2 ** 60].forEach((v) => big.add(v));
  assert.ok(Math.abs(big.percentile(50) / 2 ** 42 - 1) < 0.01, `${big.percentile(50)}`);
  assert.deepEqual([big.max, big.hist!.maxValue <= 2 ** 42 * 1.01], [2 ** 60, true]);
  s.destroy();
  big.destroy();
});

test('totals: inter-arrival and latency over all flows, their histograms added up; null without samples', () => {
  const a = new SinkAccounting();
  const recs: Rec[] = [];
  for (let i = 1; i <= 100; i++) {
    recs.push({ srcPort: 1, seq: i, rxNs: i * 10_000, latencyNs: 100_000, len: 18 });
    recs.push({ srcPort: 2, seq: i, rxNs: i * 10_000 + 1, latencyNs: 300_000, len: 18 });
  }
  recs.push({ srcPort: 3, seq: 1, rxNs: 2e6, latencyNs: 900_000, len: 18 }); // one sample, kept inline
  a.recordBatch(batch(recs));
  const t = a.totals();
  assert.deepEqual([t.latencyUs!.min, t.latencyUs!.max, t.latencyUs!.avg], [100, 900, Math.round((100 * 100 + 100 * 300 + 900) / 201 * 1000) / 1000]);
  assert.ok(Math.abs(t.latencyUs!.p50 - 300) <= 3 && Math.abs(t.latencyUs!.p90 - 300) <= 3, JSON.stringify(t.latencyUs));
  assert.ok(t.latencyUs!.p999 === 900, 'the inline sample of flow 3 is in the sum');
  assert.ok(Math.abs(t.interArrivalUs!.p99 - 10) <= 0.1 && t.interArrivalUs!.max === 10, JSON.stringify(t.interArrivalUs));
  assert.equal(t.bytes, 201 * 18);
  const none = new SinkAccounting();
  none.recordBatch(batch([{ srcPort: 1, seq: 1, rxNs: 1, latencyNs: NaN, len: 18 }]));
  assert.deepEqual([none.totals().latencyUs, none.totals().interArrivalUs], [null, null]);
  a.destroy();
});

const COUNTS = ['received', 'unique', 'lost', 'duplicates', 'reordered', 'bytes'] as const;

function sumIntervals(rs: IntervalReport[]): Record<(typeof COUNTS)[number], number> {
  const s = { received: 0, unique: 0, lost: 0, duplicates: 0, reordered: 0, bytes: 0 };
  for (const r of rs) for (const k of COUNTS) s[k] += r[k];
  return s;
}

test('intervals add up exactly to the totals: loss, duplicates, reordering, seq jumps, evicted flows, midStream and expect', () => {
  const spoof = lcg(99);
  for (const [seed, o] of [[11, {}], [12, { midStream: true }], [13, { maxFlows: 8 }], [14, { expect: 5000 }]] as [number, AccountingOptions][]) {
    const recs = traffic(seed, 30_000, 6);
    // Spoofed one-datagram sources now and then: with maxFlows 8 they evict each other (and leave the totals).
    for (let i = 0; i < recs.length; i += 500) recs.splice(i, 0, { srcIp: 0xac100000 + i, srcPort: 1, seq: Math.floor(spoof() * 1000), rxNs: recs[i].rxNs, latencyNs: 10_000, len: 18 });
    const a = new SinkAccounting({ ...o, intervals: true });
    const rows: IntervalReport[] = [];
    const rnd = lcg(seed);
    let i = 0;
    while (i < recs.length) {
      const k = 1 + Math.floor(rnd() * 3000);
      a.recordBatch(batch(recs.slice(i, i + k)));
      i += k;
      if (rnd() < 0.5) rows.push(a.interval(recs[Math.min(i, recs.length) - 1].rxNs + 1));
    }
    rows.push(a.interval(recs[recs.length - 1].rxNs + 1, true));
    const t = a.totals();
    const sum = sumIntervals(rows);
    for (const k of COUNTS) assert.equal(sum[k], t[k], `${k} with ${JSON.stringify(o)}`);
    if (o.maxFlows) assert.ok(a.refused['flows-evicted'] > 0);
    if (o.expect) assert.ok(rows[rows.length - 1].lost > 1000, 'the lost tail is in the final interval');
    for (let j = 1; j < rows.length; j++) assert.equal(rows[j].start, rows[j - 1].end);
    a.destroy();
  }
});

test('an interval\'s lost is the change in the gap count: negative when late datagrams fill gaps counted before', () => {
  const a = new SinkAccounting();
  const r = (seq: number, rxNs: number) => ({ srcPort: 1, seq, rxNs, latencyNs: NaN, len: 18 });
  a.recordBatch(batch([r(1, 0), r(2, 1e6), r(5, 2e6)]));
  const one = a.interval(1e9);
  a.recordBatch(batch([r(3, 1.1e9), r(4, 1.2e9)]));
  const two = a.interval(2e9);
  assert.deepEqual([one.received, one.lost, two.received, two.lost, two.reordered], [3, 2, 2, -2, 2]);
  assert.equal(a.totals().lost, 0);
});

test('an interval reports its own rate and percentiles (with options.intervals), in seconds since the first arrival', () => {
  const a = new SinkAccounting({ intervals: true });
  const empty = a.interval(5e9);
  assert.deepEqual(empty, {
    start: 0, end: 0, received: 0, unique: 0, lost: 0, duplicates: 0, reordered: 0, bytes: 0, pps: 0, payloadMbps: 0, latencyUs: null, interArrivalUs: null,
  });
  const recs: Rec[] = [];
  const t0 = 7e9;
  // First second: 100 kpps (10 µs gaps), latency 200 µs; second: 50 kpps, latency 400 µs.
  for (let i = 0; i < 100_000; i++) recs.push({ srcPort: 1, seq: i + 1, rxNs: t0 + i * 10_000, latencyNs: 200_000, len: 100 });
  for (let i = 0; i < 50_000; i++) recs.push({ srcPort: 1, seq: 100_001 + i, rxNs: t0 + 1e9 + i * 20_000, latencyNs: 400_000, len: 100 });
  feedBatches(a, recs.slice(0, 100_000));
  const one = a.interval(t0 + 1e9 - 1);
  feedBatches(a, recs.slice(100_000));
  const two = a.interval(t0 + 2e9 - 1);
  assert.deepEqual([one.start, one.end, one.received, one.pps, one.payloadMbps], [0, 1, 100_000, 100_000, 80]);
  assert.deepEqual([two.start, two.end, two.received, two.pps, two.payloadMbps], [1, 2, 50_000, 50_000, 40]);
  assert.ok(Math.abs(one.latencyUs!.p50 - 200) <= 2 && Math.abs(one.latencyUs!.p99 - 200) <= 2, JSON.stringify(one.latencyUs));
  assert.ok(Math.abs(two.latencyUs!.p50 - 400) <= 4, JSON.stringify(two.latencyUs));
  assert.ok(Math.abs(one.interArrivalUs!.p99 - 10) <= 0.1, JSON.stringify(one.interArrivalUs));
  assert.ok(Math.abs(two.interArrivalUs!.p50 - 20) <= 0.2, JSON.stringify(two.interArrivalUs));
  const quiet = a.interval(t0 + 3e9 - 1);
  assert.deepEqual([quiet.received, quiet.latencyUs, quiet.interArrivalUs], [0, null, null]);
  a.destroy();
  const counts = new SinkAccounting();
  feedBatches(counts, recs);
  const row = counts.interval(t0 + 2e9 - 1);
  assert.deepEqual([row.received, row.pps, row.latencyUs, row.interArrivalUs], [150_000, 75_000, null, null], 'no percentiles asked for');
});

test('histograms(): two sinks fed disjoint halves of a run merge into the quantiles of one sink fed all of it', () => {
  const recs = traffic(21, 40_000, 8);
  const all = new SinkAccounting();
  const even = new SinkAccounting();
  const odd = new SinkAccounting();
  all.recordBatch(batch(recs));
  // Split by flow, as ECMP or RSS would split the traffic between two sinks.
  even.recordBatch(batch(recs.filter((r) => r.srcPort % 2 === 0)));
  odd.recordBatch(batch(recs.filter((r) => r.srcPort % 2 === 1)));
  const docs = [even.histograms(), odd.histograms()].map((d) => JSON.parse(JSON.stringify(d)) as HistogramsDoc);
  const merged = mergeHistograms(docs);
  const whole = mergeHistograms([all.histograms()]);
  assert.deepEqual(merged.latencyUs, whole.latencyUs);
  assert.deepEqual(merged.interArrivalUs, whole.interArrivalUs);
  assert.equal(merged.flows.length, 8);
  assert.deepEqual(merged.flows.map((f) => f.src).sort(), all.histograms().flows.map((f) => f.src).sort());
  assert.deepEqual([merged.format, merged.unit, merged.significantDigits], [HISTOGRAMS_FORMAT, 'ns', 2]);
  // The merged document is a document too: merging it again changes nothing.
  assert.deepEqual(mergeHistograms([merged]).latencyUs, merged.latencyUs);
  // Against the sink's own totals: the same quantiles (within a bucket's 1% where the totals clamp to the exact max).
  const t = all.totals();
  for (const k of ['p50', 'p90', 'p99'] as const) {
    assert.ok(Math.abs(merged.latencyUs![k] - t.latencyUs![k]) <= Math.abs(t.latencyUs![k]) * 0.01 + 0.001, `${k}: ${merged.latencyUs![k]} vs ${t.latencyUs![k]}`);
    assert.ok(Math.abs(merged.interArrivalUs![k] - t.interArrivalUs![k]) <= t.interArrivalUs![k] * 0.01 + 0.001, k);
  }
  for (const a of [all, even, odd]) a.destroy();
});

test('mergeHistograms: empty histograms stay null; another format or a broken encoding is refused by name', () => {
  const empty = new SinkAccounting().histograms();
  assert.deepEqual(empty, { format: HISTOGRAMS_FORMAT, unit: 'ns', significantDigits: 2, latency: null, interArrival: null, flows: [] });
  const m = mergeHistograms([empty, empty]);
  assert.deepEqual([m.latency, m.latencyUs, m.interArrivalUs], [null, null, null]);
  assert.throws(() => mergeHistograms([empty, { ...empty, format: 'iperf3' as typeof HISTOGRAMS_FORMAT }]),
    /bad histograms document 2: format 'iperf3', unit 'ns'; expected 'rawpoll-histograms\/1', 'ns'/);
  assert.throws(() => mergeHistograms([{ ...empty, latency: 'bm90IGEgaGlzdG9ncmFt' }]), /bad histogram 'latency' of document 1: .*compressed base64/);
});
