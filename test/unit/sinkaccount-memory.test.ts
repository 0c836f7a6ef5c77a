// What flows cost in memory with WebAssembly histograms (as the Sink runs them), measured as the process's RSS, which
// counts WASM memory (V8's heapUsed does not). A file of its own: RSS is measured in a fresh process.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import v8 from 'node:v8';
import vm from 'node:vm';
import type { PktgenBatch } from '../../src/rx/batch.js';
import { initHistograms } from '../../src/rx/histogram.js';
import { SinkAccounting } from '../../src/rx/sinkaccount.js';

await initHistograms();

/** RSS after a full GC (gc exposed at run time: node:test gives no flags per file). */
function rssNow(): number {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  gc();
  gc();
  return process.memoryUsage().rss;
}

/**
 * Datagram `seq` of `flows` sources 172.16.x.y:1024-1027 (the spoofed flood's shape), a 1000-record batch at a time,
 * each with a one-way latency of 150-160 µs.
 */
function flood(a: SinkAccounting, flows: number, seq: number): void {
  const n = 1000;
  const b: PktgenBatch = {
    n, nonPktgen: 0, srcIp: new Uint32Array(n), dstIp: new Uint32Array(n).fill(0x0a000002), srcPort: new Uint16Array(n),
    dstPort: new Uint16Array(n).fill(9), seq: new Uint32Array(n).fill(seq), len: new Uint32Array(n).fill(18),
    rxNs: new Float64Array(n), latencyNs: new Float64Array(n),
  };
  for (let i0 = 0; i0 < flows; i0 += n) {
    for (let k = 0; k < n; k++) {
      const i = i0 + k;
      b.srcIp[k] = 0xac100000 + (i >> 2);
      b.srcPort[k] = 1024 + (i & 3);
      b.rxNs[k] = seq * 1e6 + i * 10;
      b.latencyNs[k] = 150_000 + (i % 1000) * 10;
    }
    a.recordBatch(b);
  }
}

test('10,000 one-datagram flows with latency samples (a spoofed flood) hold no histogram and stay under 24 MB', () => {
  const before = rssNow();
  const a = new SinkAccounting({ intervals: true });
  flood(a, 10_000, 1);
  const grown = rssNow() - before;
  assert.equal(a.flows.length, 10_000);
  assert.ok(a.flows.every((f) => f.latency.hist === null && f.interArrival.hist === null && f.latency.count === 1));
  // Measured: 11-13 MB for 10,000, ~1.2 KB a flow (a latency histogram made at the first sample would add ~9 KB).
  assert.ok(grown < 24e6, `RSS grew by ${(grown / 1e6).toFixed(1)} MB`);
  a.destroy();
});

test('10,000 flows of two stamped datagrams: a latency histogram each, under 15 KB a flow', () => {
  const before = rssNow();
  const a = new SinkAccounting({ intervals: true });
  flood(a, 10_000, 1);
  flood(a, 10_000, 2);
  const perFlow = (rssNow() - before) / 10_000;
  assert.ok(a.flows.every((f) => f.latency.hist !== null && f.interArrival.hist === null));
  // Measured: ~9.3 KB a flow, 6 KB of it the histogram's counters (12 powers of two up to 160 µs, 128 counters of
  // 4 bytes each), the rest WASM memory grown ahead of use. A third datagram 1 s later adds an inter-arrival
  // histogram reaching 1 s (~14 KB): ~23 KB a flow in all, ~230 MB for 10,000 such flows.
  assert.ok(perFlow < 15_000, `${Math.round(perFlow)} bytes a flow`);
  a.destroy();
});
