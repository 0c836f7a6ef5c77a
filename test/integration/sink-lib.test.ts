/**
 * The Sink class as a library (what tests and the bench use), over loopback only: a node dgram socket sends
 * hand-built pktgen payloads (PROTOCOLS.md §5) with known gaps and duplicates.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { Sink } from '../../src/rx/sink.js';
import { RuntimeError } from '../../src/errors.js';
import { freeUdpPort, stampedPktgen } from '../helpers/pktgen.js';

const LO = 0x7f000001;

const pg = stampedPktgen;

const freePort = freeUdpPort;

async function sendAll(port: number, payloads: Buffer[]): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((res) => s.bind(0, '127.0.0.1', () => res()));
  const src = s.address().port;
  for (const p of payloads) {
    await new Promise<void>((res, rej) => s.send(p, port, '127.0.0.1', (e) => (e ? rej(e) : res())));
  }
  s.close();
  return src;
}

test('count: stops after N test datagrams and accounts gaps, duplicates and foreign datagrams', async () => {
  const port = await freePort();
  const sink = new Sink({ port, bind: LO, count: 499, duration: 30 });
  await sink.start();
  const seqs = [...Array(500).keys()].map((i) => i + 1).filter((s) => s !== 10 && s !== 11);
  seqs.splice(30, 0, 20); // a late duplicate of 20
  const payloads = seqs.map(pg);
  payloads.splice(5, 0, Buffer.from('not a test datagram'));
  const src = await sendAll(port, payloads);
  const r = await sink.done;
  assert.equal(r.reason, 'count');
  assert.equal(r.mode, 'socket');
  assert.equal(r.bind, '127.0.0.1');
  assert.equal(r.socketDrops, 0);
  const { datagrams, nonPktgen, refused, received, unique, lost, duplicates, reordered, seqJumps, bytes } = r.totals;
  assert.deepEqual({ datagrams, nonPktgen, refused, received, unique, lost, duplicates, reordered, seqJumps, bytes },
    { datagrams: 500, nonPktgen: 1, refused: { 'flows-over-budget': 0, 'flows-evicted': 0 }, received: 499, unique: 498, lost: 2, duplicates: 1, reordered: 0, seqJumps: 0, bytes: 499 * 32 });
  // Nothing dropped by the sink itself: the two gaps are the sender's (seqs 10 and 11 never sent).
  assert.deepEqual(r.loss, { seqGaps: 2, own: 0, network: 2, exact: true });
  assert.equal(r.timestamp, 'kernel');
  assert.equal(r.flows.length, 1);
  const f = r.flows[0];
  assert.equal(f.src, `127.0.0.1:${src}`);
  assert.equal(f.dst, `127.0.0.1:${port}`);
  assert.equal(f.firstSeq, 1);
  assert.equal(f.lastSeq, 500);
  assert.equal(f.bytes, 499 * 32);
  assert.ok(f.latencyUs !== null && f.latencyUs.max < 60e6, 'latency measured against the same clock');
  assert.deepEqual(sink.report(), r, 'after stopping, report() is the final report');
});

test('idle: stops once traffic has paused; stop() before any traffic gives an empty report', async () => {
  const port = await freePort();
  const sink = new Sink({ port, idle: 0.3, duration: 30, expect: 12 });
  await sink.start();
  await sendAll(port, [1, 2, 3, 5, 4, 6, 7, 8, 9, 10].map(pg));
  const r = await sink.done;
  assert.equal(r.reason, 'idle');
  // Bound to any address, the socket still learns each datagram's destination (IP_PKTINFO).
  assert.equal(r.flows[0].dst, `127.0.0.1:${port}`);
  assert.deepEqual([r.totals.received, r.totals.lost, r.totals.reordered], [10, 2, 1]); // 11 and 12 never sent: --expect 12

  const quiet = new Sink({ port, duration: 30 });
  await quiet.start();
  assert.equal(quiet.report().reason, 'running');
  const q = await quiet.stop();
  assert.equal(q.reason, 'stopped');
  assert.deepEqual(q.flows, []);
  assert.equal(q.totals.datagrams, 0);
});

test('a port already bound: RuntimeError naming it', async () => {
  const port = await freePort();
  const first = new Sink({ port, bind: LO });
  await first.start();
  try {
    const second = new Sink({ port, bind: LO });
    await assert.rejects(second.start(), (e: unknown) => e instanceof RuntimeError && e.message.includes(`127.0.0.1:${port}`) && /in use/.test(e.message));
  } finally {
    await first.stop();
  }
});
