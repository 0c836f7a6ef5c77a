/**
 * blast -> sink on real veth pairs in namespaces we create and always remove. The sink's figures are checked against
 * the sender's count and against an independent ground truth: a tcpdump capture on the receiving interface, parsed
 * here byte by byte (classic pcap, Ethernet/IPv4/UDP, pktgen header per PROTOCOLS.md §5).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { Lab, must, nsRun, RAWPOLL, rawpollAsync, sh, twoHosts, waitFor, type TwoHostLab } from '../helpers/lab.js';
import { startSink as startSinkIn } from '../helpers/sink.js';

interface FlowJson {
  src: string; dst: string; received: number; unique: number; lost: number; duplicates: number; reordered: number;
  late: number; firstSeq: number; lastSeq: number; pps: number;
  interArrivalUs: { p50: number; p99: number } | null; latencyUs: { min: number; p50: number; p99: number } | null;
}
interface SinkJson {
  mode: string; reason: string; socketDrops: number | null; rcvbufBytes: number | null;
  totals: { datagrams: number; nonPktgen: number; received: number; unique: number; lost: number; duplicates: number; reordered: number;
    refused: { 'flows-over-budget': number; 'flows-evicted': number }; seqJumps: number };
  maxFlows: number;
  flows: FlowJson[];
}

/** Starts `rawpoll sink … --json` in a namespace; resolves once it listens. */
async function startSink(lab: Lab, ns: string, args: string[]): Promise<{ proc: ChildProcess; report: () => Promise<SinkJson> }> {
  const s = await startSinkIn(lab, ns, ['--json', ...args]);
  return { proc: s.proc, report: async () => JSON.parse(await s.output()) as SinkJson };
}

/** tcpdump -w on an interface of a namespace; stop() returns the file's bytes and asserts the kernel dropped none. */
async function startCapture(lab: Lab, ns: string, ifname: string, file: string, filter: string[]): Promise<{ stop: () => Promise<Buffer> }> {
  const proc = lab.spawn(ns, ['tcpdump', '-Z', 'root', '--immediate-mode', '-i', ifname, '-n', '-U', '-B', '65536', '-w', file, ...filter]);
  let err = '';
  proc.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<void>((res) => proc.on('close', () => res()));
  assert.ok(await waitFor(() => err.includes('listening on'), 10000), `tcpdump did not start: ${err}`);
  return {
    stop: async () => {
      // Let tcpdump write what it has: wait until the file stops growing, then interrupt it.
      let size = -1;
      await waitFor(() => {
        const now = statSync(file).size;
        const stable = now === size;
        size = now;
        return stable;
      }, 30000, 500);
      proc.kill('SIGINT');
      await exited;
      const m = /(\d+) packets? dropped by kernel/.exec(err);
      assert.ok(m, `tcpdump summary missing: ${err}`);
      assert.match(err, /(\d+) packets? captured/);
      assert.equal(Number(m[1]), 0, 'tcpdump itself dropped frames: the ground truth would be incomplete');
      return readFileSync(file);
    },
  };
}

interface Captured { tsUs: number; srcPort: number; seq: number }

/** Classic pcap (LE, µs) → the pktgen seq of every Ethernet/IPv4/UDP frame to `dport`, in capture order. */
function pktgenFrames(pcap: Buffer, dport: number): Captured[] {
  assert.equal(pcap.readUInt32LE(0), 0xa1b2c3d4, 'expected a little-endian microsecond pcap file');
  assert.equal(pcap.readUInt32LE(20), 1, 'expected LINKTYPE_ETHERNET');
  const out: Captured[] = [];
  for (let p = 24; p + 16 <= pcap.length;) {
    const tsUs = pcap.readUInt32LE(p) * 1e6 + pcap.readUInt32LE(p + 4);
    const len = pcap.readUInt32LE(p + 8);
    const f = pcap.subarray(p + 16, p + 16 + len);
    p += 16 + len;
    if (f.length < 14 + 20 + 8 + 16 || f.readUInt16BE(12) !== 0x0800 || f[23] !== 17) continue;
    const udp = 14 + (f[14] & 15) * 4;
    if (f.readUInt16BE(udp + 2) !== dport || f.readUInt32BE(udp + 8) !== 0xbe9be955) continue;
    out.push({ tsUs, srcPort: f.readUInt16BE(udp), seq: f.readUInt32BE(udp + 12) });
  }
  return out;
}

/** The accounting, computed the simplest possible way: a Set of seqs and the running maximum. */
function model(seqs: number[], expect: number) {
  const seen = new Set<number>();
  let max = 0;
  let duplicates = 0;
  let reordered = 0;
  for (const s of seqs) {
    if (seen.has(s)) duplicates++;
    else {
      if (s < max) reordered++;
      seen.add(s);
    }
    max = Math.max(max, s);
  }
  return { received: seqs.length, unique: seen.size, lost: Math.max(max, expect) - seen.size, duplicates, reordered };
}

function offloadsOff(ns: string, ifname: string): void {
  // With GRO/GSO/TSO on, libpcap sizes every ring slot for 64 KiB frames and its ring holds ~1000 frames.
  nsRun(ns, ['ethtool', '-K', ifname, 'gro', 'off', 'gso', 'off', 'tso', 'off']);
}

describe('rawpoll blast -> rawpoll sink on a veth pair', () => {
  let L: TwoHostLab;
  const tmp = join(tmpdir(), `rawpoll-sink-${process.pid}`);
  before(() => {
    L = twoHosts();
    must('mkdir', ['-p', tmp]);
  });
  after(() => {
    L?.lab.destroy();
    rmSync(tmp, { recursive: true, force: true });
  });

  test('100 000 frames at 50 kpps into the UDP socket: zero loss, seq 1..100000, latency measured', async () => {
    const sink = await startSink(L.lab, L.b, ['--port', '9', '--bind', L.ipB, '--count', '100000', '--expect', '100000', '--idle', '3', '--duration', '120']);
    const blast = await rawpollAsync(L.a, ['blast', '-i', L.ifA, '--to', `${L.ipB}:9`, '--sport', '4000', '--count', '100000', '--rate', '50kpps', '--json']);
    assert.equal(blast.code, 0, blast.stderr);
    assert.equal(JSON.parse(blast.stdout).sent, 100000);
    const r = await sink.report();
    assert.equal(r.mode, 'socket');
    assert.equal(r.reason, 'count', JSON.stringify(r));
    assert.equal(r.socketDrops, 0);
    assert.equal(r.flows.length, 1);
    const f = r.flows[0];
    assert.equal(f.src, `${L.ipA}:4000`);
    assert.equal(f.dst, `${L.ipB}:9`);
    assert.deepEqual([f.received, f.unique, f.lost, f.duplicates, f.reordered, f.firstSeq, f.lastSeq], [100000, 100000, 0, 0, 0, 1, 100000]);
    assert.ok(f.latencyUs && f.latencyUs.min >= 0, `same-host clocks: one-way latency is not negative (${JSON.stringify(f.latencyUs)})`);
    assert.ok(f.interArrivalUs && f.interArrivalUs.p50 > 0);
  });

  test('100 000 frames at 200 kpps (twice what the socket sustains), received with --capture: zero loss', async () => {
    offloadsOff(L.b, L.ifB);
    const sink = await startSink(L.lab, L.b, ['--capture', '-i', L.ifB, '-B', '256', '--port', '9', '--count', '100000', '--expect', '100000', '--idle', '3', '--duration', '120']);
    const blast = await rawpollAsync(L.a, ['blast', '-i', L.ifA, '--to', `${L.ipB}:9`, '--count', '100000', '--rate', '200kpps', '--json']);
    assert.equal(blast.code, 0, blast.stderr);
    const r = await sink.report();
    assert.equal(r.mode, 'capture');
    assert.equal(r.reason, 'count', JSON.stringify(r));
    const f = r.flows[0];
    assert.deepEqual([f.received, f.lost, f.duplicates, f.reordered, f.firstSeq, f.lastSeq], [100000, 0, 0, 0, 1, 100000]);
  });

  test('several flows with IMIX sizes: one account per source port, each matching what blast says it sent', async () => {
    const sink = await startSink(L.lab, L.b, ['--port', '9', '--idle', '2', '--duration', '120']);
    const blast = await rawpollAsync(L.a, ['blast', '-i', L.ifA, '--to', `${L.ipB}:9`, '--flows', '4', '--sport', '10000-10003',
      '--size', '64,576,1514', '--imix', '7,4,1', '--count', '20000', '--rate', '20kpps', '--json']);
    assert.equal(blast.code, 0, blast.stderr);
    const sent = JSON.parse(blast.stdout) as { sent: number; lastSeq: number[] };
    assert.equal(sent.sent, 20000);
    const r = await sink.report();
    assert.equal(r.socketDrops, 0);
    const flows = [...r.flows].sort((x, y) => x.src.localeCompare(y.src));
    assert.deepEqual(flows.map((f) => f.src), [10000, 10001, 10002, 10003].map((p) => `${L.ipA}:${p}`));
    assert.deepEqual(flows.map((f) => f.received), sent.lastSeq, 'per-flow counts equal the last seq blast gave each flow');
    assert.equal(flows.reduce((n, f) => n + f.received, 0), 20000);
    for (const f of flows) assert.deepEqual([f.lost, f.duplicates, f.reordered, f.firstSeq], [0, 0, 0, 1], f.src);
  });

  test('--max-flows 2 with 4 flows: two accounts, the other flows\' datagrams counted as flows-over-budget', async () => {
    const sink = await startSink(L.lab, L.b, ['--port', '9', '--max-flows', '2', '--idle', '2', '--duration', '120']);
    const blast = await rawpollAsync(L.a, ['blast', '-i', L.ifA, '--to', `${L.ipB}:9`, '--flows', '4', '--sport', '10000-10003',
      '--count', '8000', '--rate', '20kpps', '--json']);
    assert.equal(blast.code, 0, blast.stderr);
    const r = await sink.report();
    assert.equal(r.socketDrops, 0);
    assert.equal(r.maxFlows, 2);
    assert.equal(r.flows.length, 2);
    assert.equal(r.totals.received, 4000, 'blast spreads 8000 frames evenly over 4 flows');
    assert.equal(r.totals.refused['flows-over-budget'], 4000);
    assert.equal(r.totals.datagrams, 8000);
    assert.equal(r.totals.seqJumps, 0);
    const bad = nsRun(L.b, [process.execPath, RAWPOLL, 'sink', '--max-flows', '0']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--max-flows '0'/);
  });

  test('known loss/duplication/reordering on a bridged path: the sink matches a tcpdump ground truth exactly', async () => {
    // This kernel has no sch_netem (CONFIG_NET_SCH_NETEM unset), so the impairments are made deterministic instead,
    // on the egress of a bridge port in a middle namespace (the sender never sees them): nftables drops every
    // datagram whose pktgen seq is 7 mod 64 and duplicates those 33 mod 64; an HTB class at 1 Mbit/s holds back
    // seqs 8-11 mod 64 while the others overtake them.
    const N = 20000;
    const lab = new Lab('rq');
    try {
      const { a, m, b, ifA, ifMA: mA, ifMB: mB, ifB } = lab.chain();
      must('ip', ['-n', m, 'link', 'add', 'br0', 'type', 'bridge']);
      for (const i of [mA, mB]) must('ip', ['-n', m, 'link', 'set', i, 'master', 'br0']);
      must('ip', ['-n', m, 'link', 'set', 'br0', 'up']);
      lab.addr(a, ifA, '10.201.7.1/24');
      lab.addr(b, ifB, '10.201.7.2/24');
      const rules = `table netdev imp {
  chain out {
    type filter hook egress device ${mB} priority 0;
    udp dport 9 @ih,58,6 7 counter drop
    udp dport 9 @ih,58,6 33 meta mark != 1 meta mark set 1 counter dup to ${mB}
  }
}
`;
      const nft = sh('ip', ['netns', 'exec', m, 'nft', '-f', '-'], rules);
      assert.equal(nft.status, 0, `nft: ${nft.stderr}`);
      must('ip', ['netns', 'exec', m, 'tc', 'qdisc', 'add', 'dev', mB, 'root', 'handle', '1:', 'htb', 'default', '10', 'r2q', '1000000']);
      must('ip', ['netns', 'exec', m, 'tc', 'class', 'add', 'dev', mB, 'parent', '1:', 'classid', '1:10', 'htb', 'rate', '10gbit']);
      must('ip', ['netns', 'exec', m, 'tc', 'class', 'add', 'dev', mB, 'parent', '1:', 'classid', '1:20', 'htb', 'rate', '1mbit', 'ceil', '1mbit', 'burst', '60b', 'cburst', '60b']);
      // u32 offsets count from the IPv4 header: 20 (IP) + 8 (UDP) + 4 (magic) = the seq word.
      must('ip', ['netns', 'exec', m, 'tc', 'filter', 'add', 'dev', mB, 'parent', '1:', 'protocol', 'ip', 'prio', '1', 'u32',
        'match', 'u32', '0x00000008', '0x0000003c', 'at', '32', 'flowid', '1:20']);

      const file = join(tmp, 'impair.pcap');
      const cap = await startCapture(lab, b, ifB, file, ['udp', 'dst', 'port', '9']);
      const sink = await startSink(lab, b, ['--port', '9', '--idle', '1.5', '--expect', String(N), '--duration', '60']);
      const blast = await rawpollAsync(a, ['blast', '-i', ifA, '--to', '10.201.7.2:9', '--count', String(N), '--rate', '20kpps', '--json']);
      assert.equal(blast.code, 0, blast.stderr);
      assert.equal(JSON.parse(blast.stdout).sent, N);
      const r = await sink.report();
      const truth = model(pktgenFrames(await cap.stop(), 9).map((c) => c.seq), N);
      assert.equal(r.socketDrops, 0, 'the sink socket overflowed: its figures would include its own loss');
      assert.equal(r.flows.length, 1);
      const f = r.flows[0];
      assert.deepEqual({ received: f.received, unique: f.unique, lost: f.lost, duplicates: f.duplicates, reordered: f.reordered }, truth);
      // What was injected, counted independently: seqs 1..N that are 7 (dropped) or 33 (duplicated) mod 64.
      const mod = (k: number) => Math.floor((N - k) / 64) + 1;
      assert.equal(f.lost, mod(7));
      assert.equal(f.duplicates, mod(33));
      assert.ok(f.reordered > 0 && f.reordered <= 4 * mod(8), `reordered ${f.reordered}`);
      assert.equal(f.lastSeq, N);
    } finally {
      lab.destroy();
    }
  });

  test('--burst: the receiver capture shows groups of N back to back with the burst gap between', async () => {
    const file = join(tmp, 'burst.pcap');
    const cap = await startCapture(L.lab, L.b, L.ifB, file, ['udp', 'dst', 'port', '9']);
    const blast = await rawpollAsync(L.a, ['blast', '-i', L.ifA, '--to', `${L.ipB}:9`, '--burst', '32', '--burst-gap', '20ms', '--count', '320', '--json']);
    assert.equal(blast.code, 0, blast.stderr);
    const bytes = await cap.stop();
    const frames = pktgenFrames(bytes, 9);
    assert.equal(frames.length, 320, `${bytes.length} bytes captured; blast said ${blast.stdout}`);
    assert.deepEqual(frames.map((c) => c.seq), Array.from({ length: 320 }, (_, i) => i + 1));
    // Split where the gap exceeds a quarter of the burst gap: exactly 10 groups of 32, seq-aligned.
    const groups: number[][] = [[frames[0].seq]];
    const between: number[] = [];
    for (let i = 1; i < frames.length; i++) {
      const gap = frames[i].tsUs - frames[i - 1].tsUs;
      if (gap > 5000) {
        groups.push([]);
        between.push(gap);
      }
      groups[groups.length - 1].push(frames[i].seq);
    }
    assert.deepEqual(groups.map((g) => g.length), Array(10).fill(32), `group sizes ${groups.map((g) => g.length)}`);
    assert.ok(between.every((g) => g >= 15000), `gaps between bursts (us): ${between}`);
  });

  test('usage and runtime errors: exit 2 / exit 1 with a one-line message', async () => {
    const noIf = nsRun(L.b, [process.execPath, RAWPOLL, 'sink', '--capture']);
    assert.equal(noIf.code, 2);
    assert.match(noIf.stderr, /--capture needs the interface/);
    const badPort = nsRun(L.b, [process.execPath, RAWPOLL, 'sink', '--port', '70000']);
    assert.equal(badPort.code, 2);
    assert.match(badPort.stderr, /bad --port '70000'/);
    const badBind = nsRun(L.b, [process.execPath, RAWPOLL, 'sink', '--bind', '10.255.255.254', '--duration', '1']);
    assert.equal(badBind.code, 2);
    assert.match(badBind.stderr, /bad --bind '10\.255\.255\.254'/);
    // No --duration: a sink that runs until stopped exits 0 when interrupted (README, Exit codes).
    const first = await startSink(L.lab, L.b, ['--port', '9999']);
    const busy = nsRun(L.b, [process.execPath, RAWPOLL, 'sink', '--port', '9999', '--duration', '1']);
    assert.equal(busy.code, 1);
    assert.match(busy.stderr, /already in use/);
    first.proc.kill('SIGINT');
    const r = await first.report();
    assert.equal(r.reason, 'interrupted');
    assert.equal(r.totals.received, 0);
  });
});
