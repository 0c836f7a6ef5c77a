import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatReport } from '../../src/cli/sink.js';
import type { SinkReport } from '../../src/rx/sink.js';

const report: SinkReport = {
  mode: 'socket', port: 9, bind: null, iface: null, seconds: 2.5, reason: 'idle', timestamp: 'kernel', clock: 'kernel (CLOCK_REALTIME, SO_TIMESTAMPNS)',
  timestampWarning: null, rcvbufBytes: 425984, rcvbufForced: false, socketDrops: 17, capture: null,
  loss: { seqGaps: 2, own: 17, network: 0, exact: false },
  engine: { datagrams: 1018, ownDrops: 17, ifDrops: 0, captured: 0, truncated: 0, noTimestamp: 0, batches: 40, queueWaits: 0, linkDownMs: 0 },
  maxFlows: 10000, linkOutages: 0, linkDownMs: 0,
  totals: {
    datagrams: 1001, nonPktgen: 1, refused: { 'flows-over-budget': 0, 'flows-evicted': 0 }, received: 1000, unique: 998, lost: 2, duplicates: 2, reordered: 3,
    seqJumps: 0, bytes: 18000, interArrivalUs: { p50: 10, p90: 11, p99: 12.5, p999: 30, max: 40 }, latencyUs: { min: 20, p50: 30, p90: 60, p99: 90, p999: 99, max: 100, avg: 33 },
  },
  flows: [{
    src: '10.0.0.1:5001', dst: '*:9', srcIp: '10.0.0.1', srcPort: 5001, dstIp: '*', dstPort: 9,
    received: 1000, unique: 998, lost: 2, duplicates: 2, reordered: 3, late: 0, seqJumps: 0, firstSeq: 1, lastSeq: 1000,
    bytes: 18000, seconds: 0.01, pps: 99900, payloadMbps: 14.4,
    interArrivalUs: { p50: 10, p90: 11, p99: 12.5, p999: 30, max: 40 }, latencyUs: { min: 20, p50: 30, p90: 60, p99: 90, p999: 99, max: 100, avg: 33 },
  }],
};

test('the human report: a header, one row per flow, totals with the loss rate, the own-loss warning, the clock', () => {
  const lines = formatReport(report).split('\n');
  assert.match(lines[0], /^FLOW\s+RECEIVED\s+LOST\s+DUP\s+REORD\s+SEQ\s+PPS\s+Mbit\/s\s+GAP p50\/p99 us\s+LATENCY p50\/p99 us$/);
  assert.match(lines[1], /^10\.0\.0\.1:5001 -> \*:9\s+1000\s+2\s+2\s+3\s+1-1000\s+99900\s+14\.4\s+10\/12\.5\s+30\/90$/);
  assert.equal(lines[2], '');
  assert.equal(lines[3], '1 flow, 1000 received, 2 lost (0.200%), 2 duplicates, 3 reordered in 2.5 s (stopped: idle); 1 datagram without the pktgen header ignored');
  assert.equal(lines[4], "warning: loss: 2 seq gaps, of which 17 the sink's own (its socket buffer overflowed, rcvbuf 425984 bytes: raise --rcvbuf); the network lost at least 0");
  assert.equal(lines[5], 'clock: kernel (CLOCK_REALTIME, SO_TIMESTAMPNS)');
  assert.equal(lines[6], '');
  assert.equal(lines.length, 7);
});

test('no flows, no latency: dashes, no warning', () => {
  const empty: SinkReport = { ...report, socketDrops: 0, flows: [], totals: {
    datagrams: 0, nonPktgen: 0, refused: { 'flows-over-budget': 0, 'flows-evicted': 0 }, received: 0, unique: 0, lost: 0, duplicates: 0, reordered: 0, seqJumps: 0,
    bytes: 0, interArrivalUs: null, latencyUs: null,
  } };
  assert.equal(formatReport(empty).split('\n')[2], '0 flows, 0 received, 0 lost (0.000%), 0 duplicates, 0 reordered in 2.5 s (stopped: idle)');
  const noTs: SinkReport = { ...report, flows: [{ ...report.flows[0], latencyUs: null, interArrivalUs: null }] };
  assert.match(formatReport(noTs).split('\n')[1], /\s-\s+-$/);
});
