// IPv6 in the sink's accounting (issue 15): batches with af/srcIp6/dstIp6 columns as the receive engines hand them
// over, IPv6 sources interned to numeric ids that live only as long as their flows (so --max-flows bounds them under a
// spoofed flood), and RFC 5952 "[addr]:port" endpoints. The addresses are written here byte by byte, the expected
// text by hand (RFC 5952 §4: lower case, the longest zero run as ::, a lone zero group not shortened).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { PktgenBatch } from '../../src/rx/batch.js';
import { initHistograms } from '../../src/rx/histogram.js';
import { EVICT_AFTER_NS, IPV6_ID_BASE, Ipv6Interner, SinkAccounting } from '../../src/rx/sinkaccount.js';
import { captureFilter, parseIpv6 } from '../../src/rx/sink.js';
import { pktgenPayload } from '../helpers/pktgen.js';

await initHistograms();

/** 2001:db8::<last>, or any 16 bytes given as 8 groups. */
function v6(...groups: number[]): Uint8Array {
  const g = groups.length === 1 ? [0x2001, 0xdb8, 0, 0, 0, 0, 0, groups[0]] : groups;
  const b = new Uint8Array(16);
  g.forEach((x, i) => { b[2 * i] = x >> 8; b[2 * i + 1] = x & 255; });
  return b;
}

interface Rec { af: 4 | 6; src4?: number; dst4?: number; src6?: Uint8Array; dst6?: Uint8Array; sport: number; seq: number; rxNs: number }

/** Records as an engine's batch (columns `pad` records longer than n, filled with records that must not be read). */
function batch(recs: Rec[], pad = 2): PktgenBatch {
  const len = recs.length + pad;
  const b = {
    n: recs.length, nonPktgen: 0,
    af: new Uint8Array(len).fill(6), srcIp: new Uint32Array(len).fill(0x01020304), dstIp: new Uint32Array(len),
    srcIp6: new Uint8Array(16 * len).fill(0xee), dstIp6: new Uint8Array(16 * len).fill(0xee),
    srcPort: new Uint16Array(len).fill(1), dstPort: new Uint16Array(len).fill(9), seq: new Uint32Array(len).fill(99),
    len: new Uint32Array(len).fill(18), rxNs: new Float64Array(len).fill(1e12), latencyNs: new Float64Array(len).fill(NaN),
  } satisfies PktgenBatch;
  recs.forEach((r, i) => {
    b.af[i] = r.af;
    b.srcIp[i] = r.af === 4 ? r.src4! : 0;
    b.dstIp[i] = r.af === 4 ? r.dst4 ?? 0 : 0;
    b.srcIp6.fill(0, 16 * i, 16 * i + 16);
    b.dstIp6.fill(0, 16 * i, 16 * i + 16);
    if (r.af === 6) {
      b.srcIp6.set(r.src6!, 16 * i);
      if (r.dst6) b.dstIp6.set(r.dst6, 16 * i);
    }
    b.srcPort[i] = r.sport;
    b.seq[i] = r.seq;
    b.rxNs[i] = r.rxNs;
  });
  return b;
}

test('a batch of IPv4 and IPv6 records: one flow each, exact counts, RFC 5952 endpoints', () => {
  const a = new SinkAccounting();
  const S6 = v6(1);
  const D6 = v6(2);
  const recs: Rec[] = [];
  // IPv6 seqs 1..10 without 4 and 5; IPv4 1..6 without 3; interleaved so the flows alternate.
  for (let s = 1; s <= 10; s++) {
    if (s !== 4 && s !== 5) recs.push({ af: 6, src6: S6, dst6: D6, sport: 4000, seq: s, rxNs: s * 1000 });
    if (s <= 6 && s !== 3) recs.push({ af: 4, src4: 0x0a000001, dst4: 0x0a000002, sport: 4000, seq: s, rxNs: s * 1000 + 1 });
  }
  assert.equal(a.recordBatch(batch(recs)), recs.length);
  const [f6, f4] = a.flowReports();
  assert.deepEqual([f6.src, f6.dst, f6.srcIp, f6.dstIp, f6.srcPort, f6.dstPort], ['[2001:db8::1]:4000', '[2001:db8::2]:9', '2001:db8::1', '2001:db8::2', 4000, 9]);
  assert.deepEqual([f6.received, f6.unique, f6.lost, f6.firstSeq, f6.lastSeq], [8, 8, 2, 1, 10]);
  assert.deepEqual([f4.src, f4.dst, f4.srcIp, f4.dstIp], ['10.0.0.1:4000', '10.0.0.2:9', '10.0.0.1', '10.0.0.2']);
  assert.deepEqual([f4.received, f4.lost], [5, 1]);
  assert.equal(a.totals().lost, 3);
  assert.equal(a.ipv6Sources, 1);
  assert.deepEqual(a.histograms().flows.map((f) => [f.src, f.dst]), [['[2001:db8::1]:4000', '[2001:db8::2]:9'], ['10.0.0.1:4000', '10.0.0.2:9']]);
  a.destroy();
});

test('the same bits as IPv4 and IPv6 are two sources; RFC 5952 text; an unknown destination is *', () => {
  const a = new SinkAccounting();
  // 2001:db8:0:0:1:0:0:1 -> 2001:db8::1:0:0:1 (the first of two equal zero runs); fe80::... upper bytes; :: itself.
  const odd = v6(0x2001, 0xdb8, 0, 0, 1, 0, 0, 1);
  const allZero = v6(0, 0, 0, 0, 0, 0, 0, 0);
  a.recordBatch(batch([
    { af: 4, src4: 0x20010db8, sport: 7, seq: 1, rxNs: 1 },
    { af: 6, src6: v6(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), sport: 7, seq: 1, rxNs: 2 },
    { af: 6, src6: odd, sport: 7, seq: 1, rxNs: 3 },
    { af: 6, src6: v6(0x2001, 0xdb8, 0, 1, 1, 1, 1, 1), dst6: allZero, sport: 7, seq: 1, rxNs: 4 },
  ]));
  assert.deepEqual(a.flowReports().map((f) => `${f.src} -> ${f.dst}`), [
    '32.1.13.184:7 -> *:9', '[2001:db8::]:7 -> *:9', '[2001:db8::1:0:0:1]:7 -> *:9', '[2001:db8:0:1:1:1:1:1]:7 -> *:9',
  ]);
  assert.ok(a.flows.slice(1).every((f) => f.key.srcIp >= IPV6_ID_BASE), 'IPv6 ids sit above every IPv4 address');
  assert.deepEqual(a.flows.map((f) => f.srcHost), ['32.1.13.184', '2001:db8::', '2001:db8::1:0:0:1', '2001:db8:0:1:1:1:1:1']);
  a.destroy();
});

test('record6: the unit-test entry parses the pktgen header as record() does', () => {
  const a = new SinkAccounting({ expect: 4 });
  const S = v6(0xfd00, 0, 0, 0, 0, 0, 0, 0x10);
  assert.equal(a.record6(S, 5000, v6(2), 9, pktgenPayload(1), 0, 0), true);
  assert.equal(a.record6(S, 5000, v6(2), 9, pktgenPayload(3), 1000, 0), true);
  assert.equal(a.record6(S, 5000, null, 9, Buffer.from('not pktgen'), 2000, 0), false);
  const [f] = a.flowReports();
  assert.deepEqual([f.src, f.dst, f.received, f.lost], ['[fd00::10]:5000', '[2001:db8::2]:9', 2, 2]);
  assert.deepEqual([a.datagrams, a.nonPktgen], [3, 1]);
  assert.throws(() => a.record6(new Uint8Array(4), 1, null, 9, pktgenPayload(1), 0, 0), /bad IPv6 address of 4 and 16 bytes: expected 16 each/);
  a.destroy();
});

test('Ipv6Interner: an id per address while referenced, never reused', () => {
  const t = new Ipv6Interner();
  const id = t.acquire('k1');
  assert.equal(id, IPV6_ID_BASE);
  assert.equal(t.acquire('k1'), id);
  assert.equal(t.lookup('k1'), id);
  assert.ok(Number.isNaN(t.lookup('k2')));
  t.release('k1');
  assert.equal(t.size, 1);
  t.release('k1');
  assert.equal(t.size, 0);
  assert.ok(Number.isNaN(t.lookup('k1')));
  assert.equal(t.acquire('k1'), IPV6_ID_BASE + 1);
});

test('a spoofed IPv6 flood: interned sources never outnumber --max-flows, with or without eviction', () => {
  const maxFlows = 8;
  for (const gapNs of [1e3, EVICT_AFTER_NS * 2]) {
    const a = new SinkAccounting({ maxFlows });
    let peak = 0;
    const N = 2000;
    for (let i = 0; i < N; i += 100) {
      const recs: Rec[] = [];
      for (let j = i; j < i + 100; j++) recs.push({ af: 6, src6: v6(0x2001, 0xdb8, 0, 0, 0, 0, j >> 16, j & 0xffff), sport: 1, seq: 1, rxNs: j * gapNs });
      a.recordBatch(batch(recs));
      peak = Math.max(peak, a.ipv6Sources);
    }
    assert.ok(peak <= maxFlows, `peak ${peak} interned sources with maxFlows ${maxFlows}`);
    assert.equal(a.ipv6Sources, a.flows.length);
    const r = a.totals().refused;
    assert.equal(a.totals().received + r['flows-over-budget'] + r['flows-evicted'], N);
    if (gapNs > EVICT_AFTER_NS) assert.equal(r['flows-evicted'], N - maxFlows);
    else assert.equal(r['flows-over-budget'], N - maxFlows);
    a.destroy();
  }
});

test('evicting a flow whose source has other flows keeps its id; evicting its last flow frees it', () => {
  const S = v6(7);
  const a = new SinkAccounting({ maxFlows: 2 });
  a.recordBatch(batch([
    { af: 6, src6: S, sport: 1, seq: 1, rxNs: 0 },          // A: one datagram, evictable later
    { af: 6, src6: S, sport: 2, seq: 1, rxNs: 1 },          // B: two datagrams, kept
    { af: 6, src6: S, sport: 2, seq: 2, rxNs: 2 },
    { af: 6, src6: S, sport: 3, seq: 1, rxNs: EVICT_AFTER_NS + 10 }, // C evicts A; S is still B's
  ]));
  assert.deepEqual(a.flowReports().map((f) => [f.src, f.received]), [['[2001:db8::7]:2', 2], ['[2001:db8::7]:3', 1]]);
  assert.equal(a.ipv6Sources, 1);
  assert.equal(a.flows[0].key.srcIp, a.flows[1].key.srcIp);

  // maxFlows 1: the new flow evicts the source's only flow, so the source is interned anew — and found again.
  const b = new SinkAccounting({ maxFlows: 1 });
  b.recordBatch(batch([
    { af: 6, src6: S, sport: 1, seq: 1, rxNs: 0 },
    { af: 6, src6: S, sport: 2, seq: 1, rxNs: EVICT_AFTER_NS + 1 },
    { af: 4, src4: 0x0a000001, sport: 2, seq: 1, rxNs: EVICT_AFTER_NS + 2 }, // over budget: breaks the fast path
    { af: 6, src6: S, sport: 2, seq: 2, rxNs: EVICT_AFTER_NS + 3 },
  ]));
  assert.deepEqual(b.flowReports().map((f) => [f.src, f.received, f.lost]), [['[2001:db8::7]:2', 2, 0]]);
  assert.deepEqual(b.totals().refused, { 'flows-over-budget': 1, 'flows-evicted': 1 });
  assert.equal(b.ipv6Sources, 1);
  a.destroy();
  b.destroy();
});

test('a hand-built batch without the IPv6 columns is all IPv4 (as before)', () => {
  const a = new SinkAccounting();
  const { af: _af, srcIp6: _s, dstIp6: _d, ...v4only } = batch([
    { af: 4, src4: 0x0a000001, dst4: 0x0a000002, sport: 1, seq: 1, rxNs: 0 },
    { af: 4, src4: 0x0a000001, dst4: 0x0a000002, sport: 1, seq: 2, rxNs: 1 },
  ]);
  a.recordBatch(v4only);
  assert.deepEqual(a.flowReports().map((f) => [f.src, f.dst, f.received]), [['10.0.0.1:1', '10.0.0.2:9', 2]]);
  a.destroy();
});

test('parseIpv6 and the capture filter', () => {
  assert.equal(parseIpv6(' 2001:DB8:0:0::2 ', '--bind'), '2001:db8::2');
  assert.throws(() => parseIpv6('2001:db8::g', '--bind'), /bad --bind '2001:db8::g': expected an IPv6 address like 2001:db8::2/);
  assert.throws(() => parseIpv6('fe80::1%eth0', '--bind'), /bad --bind 'fe80::1%eth0'/);
  // IPv4 bind: the filter of before (IPv4 only).
  assert.equal(captureFilter(9, 0x0a000002), '(udp dst port 9 and dst host 10.0.0.2) or (vlan and (udp dst port 9 and dst host 10.0.0.2))');
  const any = captureFilter(9);
  assert.match(any, /^\(udp dst port 9 or \(ip6 and \(ip6\[6\] == 0 or ip6\[6\] == 43 or ip6\[6\] == 60 or ip6\[6\] == 44\)\)\) or \(vlan and/);
  assert.match(captureFilter(9, undefined, '2001:db8::2'), /udp dst port 9 and dst host 2001:db8::2\) or \(ip6 dst host 2001:db8::2 and/);
});
