/**
 * The sink's receive engines (issue 11) on real veth pairs in namespaces we create and always remove: the socket
 * engine at blast's top rate, the kernel's timestamps, the split of loss into the network's (nftables drops a known
 * number) and the sink's own (a stopped sink's socket overflows), live intervals that add up to the report, and the
 * hardware-clock fallback on veth.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { labsForThisFile, must, nsRun, RAWPOLL, rawpollAsync, type TwoHostLab } from '../helpers/lab.js';
import { startSink as startSinkIn, type RunningSink } from '../helpers/sink.js';

interface Quantiles { p50: number; p99: number }
interface SinkJson {
  mode: string; reason: string; timestamp: string; clock: string; timestampWarning: string | null;
  socketDrops: number | null; rcvbufBytes: number | null;
  loss: { seqGaps: number; own: number; network: number; exact: boolean };
  engine: { datagrams: number; ownDrops: number; batches: number; noTimestamp: number };
  totals: { datagrams: number; received: number; unique: number; lost: number; duplicates: number; reordered: number;
    latencyUs: (Quantiles & { min: number; max: number }) | null; interArrivalUs: Quantiles | null };
  flows: { received: number; lost: number; latencyUs: (Quantiles & { min: number }) | null }[];
}
interface IntervalJson { event: 'interval'; start: number; end: number; received: number; unique: number; lost: number;
  duplicates: number; reordered: number; bytes: number }

const { tmp, hosts } = labsForThisFile('rawpoll-sink-engine-');

/** `rawpoll sink ARGS` in namespace B of L. */
function startSink(L: TwoHostLab, args: string[]): Promise<RunningSink> {
  return startSinkIn(L.lab, L.b, args);
}

async function blast(L: TwoHostLab, args: string[]): Promise<{ sent: number }> {
  const r = await rawpollAsync(L.a, ['blast', '-i', L.ifA, '--to', `${L.ipB}:9`, '--json', ...args]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

describe('rawpoll sink: receive engines, kernel timestamps, loss split', () => {
  test('100 000 frames at blast\'s top rate into the socket engine: nothing lost, by the network or by the sink', async () => {
    const L = hosts();
    const sink = await startSink(L, ['--json', '--port', '9', '--bind', L.ipB, '--expect', '100000', '--idle', '2', '--duration', '120']);
    const sent = await blast(L, ['--count', '100000']);
    assert.equal(sent.sent, 100000);
    const r = JSON.parse(await sink.output()) as SinkJson;
    assert.equal(r.mode, 'socket');
    assert.deepEqual(r.loss, { seqGaps: 0, own: 0, network: 0, exact: true }, JSON.stringify(r.engine));
    assert.equal(r.totals.received, 100000);
    assert.equal(r.totals.unique, 100000);
    assert.ok(r.engine.batches < 100000 / 8, `records arrive in batches (${r.engine.batches} hand-overs for 100 000)`);
  });

  test('kernel timestamps: one-way latency between namespaces at 50 kpps paced is what the kernel saw, not the event loop', async () => {
    const L = hosts();
    const sink = await startSink(L, ['--json', '--port', '9', '--expect', '50000', '--idle', '2', '--duration', '120']);
    // --batch 1: one frame per sendmmsg, so each frame's send stamp is its own (a paced sender catching up otherwise
    // stamps up to 64 frames at once, and the last of them leaves well after its stamp).
    await blast(L, ['--count', '50000', '--rate', '50kpps', '--batch', '1']);
    const r = JSON.parse(await sink.output()) as SinkJson;
    assert.equal(r.timestamp, 'kernel');
    assert.match(r.clock, /SO_TIMESTAMPNS/);
    assert.equal(r.engine.noTimestamp, 0, 'every datagram carried its kernel timestamp');
    const lat = r.totals.latencyUs!;
    // The sender stamps each frame in µs just before sendmmsg; the kernel stamps it on receive a few µs later (p99
    // 2-3 µs on an idle VM). A clock read in JavaScript after the event loop got round to the datagram put p99 at
    // 19 584 µs (issue 11); the bound leaves room for a loaded machine.
    assert.ok(lat.min >= 0, `same clock on both ends: latency is never negative (${JSON.stringify(lat)})`);
    assert.ok(lat.p50 < 200, `p50 ${lat.p50} µs`);
    assert.ok(lat.p99 < 2000, `p99 ${lat.p99} µs`);
    // Inter-arrival gaps follow the sender's pacing, which a loaded machine disturbs: the bench compares them with
    // tcpdump's stamps of the same frames (npm run bench, section receive); here only that they were measured.
    assert.ok(r.totals.interArrivalUs !== null);
  });

  test('nftables drops every 50th datagram: the sink reports exactly that as network loss, and none of its own', async () => {
    const L = hosts();
    must('ip', ['netns', 'exec', L.b, 'nft', 'add table inet rploss']);
    must('ip', ['netns', 'exec', L.b, 'nft', 'add chain inet rploss in { type filter hook input priority 0 ; }']);
    must('ip', ['netns', 'exec', L.b, 'nft', 'add rule inet rploss in udp dport 9 numgen inc mod 50 == 0 counter drop']);
    const sink = await startSink(L, ['--json', '--port', '9', '--expect', '20000', '--idle', '2', '--duration', '120']);
    await blast(L, ['--count', '20000', '--rate', '50kpps']);
    const r = JSON.parse(await sink.output()) as SinkJson;
    const rules = must('ip', ['netns', 'exec', L.b, 'nft', 'list chain inet rploss in']);
    const dropped = Number(/counter packets (\d+)/.exec(rules)![1]);
    assert.equal(dropped, 400, rules);
    assert.deepEqual(r.loss, { seqGaps: dropped, own: 0, network: dropped, exact: true });
    assert.equal(r.totals.received, 20000 - dropped);
  });

  test('a sink that stops reading overflows its socket: the overflow is its own loss, not the network\'s', async () => {
    const L = hosts();
    const sink = await startSink(L, ['--json', '--port', '9', '--rcvbuf', '4096', '--expect', '3000', '--idle', '2', '--duration', '120']);
    sink.proc.kill('SIGSTOP'); // every thread, the receive engine's too
    try {
      await blast(L, ['--count', '3000', '--rate', '20kpps']);
    } finally {
      sink.proc.kill('SIGCONT');
    }
    const r = JSON.parse(await sink.output()) as SinkJson;
    assert.ok(r.loss.own > 0, JSON.stringify(r.loss));
    assert.equal(r.loss.own, r.socketDrops);
    // Nothing was lost on the veth: every gap is a datagram the socket dropped.
    assert.equal(r.loss.seqGaps, r.loss.own, JSON.stringify(r.loss));
    assert.equal(r.loss.network, 0);
    assert.equal(r.loss.exact, false);
    assert.equal(r.totals.received + r.loss.own, 3000);
    const text = nsRun(L.b, [process.execPath, RAWPOLL, 'sink', '--help']).stdout;
    assert.match(text, /own/);
  });

  test('--interval with --json-stream: start, interval and end events, the intervals adding up to the report', async () => {
    const L = hosts();
    const sink = await startSink(L, ['--json-stream', '--interval', '0.5', '--port', '9', '--idle', '1.5', '--duration', '120']);
    await blast(L, ['--count', '30000', '--rate', '15kpps']);
    const events = (await sink.output()).trim().split('\n').map((l) => JSON.parse(l) as { event: string });
    assert.equal(events[0].event, 'start');
    const end = events[events.length - 1] as unknown as SinkJson & { event: string };
    assert.equal(end.event, 'end');
    const iv = events.filter((e) => e.event === 'interval') as IntervalJson[];
    assert.ok(iv.length >= 4, `${iv.length} intervals for a 2 s run at 0.5 s`);
    for (let i = 1; i < iv.length; i++) assert.equal(iv[i].start, iv[i - 1].end, 'intervals follow each other');
    const sum = (k: keyof IntervalJson) => iv.reduce((n, e) => n + (e[k] as number), 0);
    assert.equal(sum('received'), end.totals.received);
    assert.equal(sum('unique'), end.totals.unique);
    assert.equal(sum('lost'), end.totals.lost);
    assert.equal(sum('duplicates'), end.totals.duplicates);
    assert.equal(sum('reordered'), end.totals.reordered);
    assert.equal(end.totals.received, 30000);
  });

  test('--interval in text mode prints rows, then the report; --histogram writes mergeable histograms', async () => {
    const L = hosts();
    const hist = join(tmp, 'h.json');
    const sink = await startSink(L, ['--interval', '0.5', '--histogram', hist, '--port', '9', '--idle', '1.5', '--duration', '120']);
    await blast(L, ['--count', '10000', '--rate', '10kpps']);
    const out = await sink.output();
    assert.match(out, /^INTERVAL s +RECEIVED/m);
    assert.match(out, /^\d+\.\d{3}-\d+\.\d{3} +\d+/m);
    assert.match(out, /loss: 0 seq gaps, all of them the network's/);
    assert.match(out, /clock: kernel/);
    const doc = JSON.parse(readFileSync(hist, 'utf8')) as { format: string; unit: string; latency: string | null; interArrival: string | null };
    assert.equal(doc.format, 'rawpoll-histograms/1');
    assert.equal(doc.unit, 'ns');
    assert.ok(doc.latency && doc.interArrival);
  });

  test('--timestamp hw on veth: it says it fell back, and to which clock; the report names it', async () => {
    const L = hosts();
    const sink = await startSink(L, ['--json', '--timestamp', 'hw', '-i', L.ifB, '--port', '9', '--idle', '1', '--duration', '60']);
    assert.match(sink.err(), /--timestamp hw: .*no hardware receive timestamps.*fell back to kernel software timestamps \(CLOCK_REALTIME/);
    await blast(L, ['--count', '100', '--rate', '1kpps']);
    const r = JSON.parse(await sink.output()) as SinkJson;
    assert.equal(r.timestamp, 'kernel');
    assert.match(r.timestampWarning!, /fell back/);
    assert.equal(r.totals.received, 100);
    const bad = nsRun(L.b, [process.execPath, RAWPOLL, 'sink', '--timestamp', 'ptp']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /bad --timestamp 'ptp': expected kernel, hw, user/);
  });
});
