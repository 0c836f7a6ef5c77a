/**
 * SIGINT/SIGTERM in the middle of a run, for the commands that send or count (src/cli/common.ts, onStopSignal):
 * the command stops, prints its summary and exits 0 (a run-until-stopped job) or 128+signal (a job with its own end
 * cut short) — never killed by the signal. Ground truth for "nothing went out" is the peer's rx_packets counter.
 * Every namespace and process made here is removed in after(), whatever happened.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { netdumpLab, randomFile, startServer, type NetdumpLab, type RunningServer } from '../../scripts/bench-netdump.js';
import { nativeAvailable } from '../../src/link/native.js';
import { RAWPOLL, rxPackets, snmp, twoHosts, waitFor, type TwoHostLab } from '../helpers/lab.js';

const procs: ChildProcess[] = [];
const cleanups: (() => void)[] = [];
after(() => {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  for (const c of cleanups.splice(0)) c();
});

interface Exit { code: number | null; signal: NodeJS.Signals | null }
interface Running { p: ChildProcess; out: () => string; err: () => string; exit: Promise<Exit> }

/** rawpoll in a namespace (`ip netns exec` execs it: the pid we signal is rawpoll's own). */
function start(ns: string, args: string[], stdin: 'ignore' | 'pipe' = 'ignore'): Running {
  const p = spawn('ip', ['netns', 'exec', ns, process.execPath, RAWPOLL, ...args], { stdio: [stdin, 'pipe', 'pipe'] });
  procs.push(p);
  let out = '';
  let err = '';
  p.stdout!.on('data', (d) => (out += d));
  p.stderr!.on('data', (d) => (err += d));
  const exit = new Promise<Exit>((res) => p.on('close', (code, signal) => res({ code, signal })));
  return { p, out: () => out, err: () => err, exit };
}

/** Waits for the exit (bounded) and checks rawpoll ended by itself: an exit code, no signal. */
async function ended(r: Running, ms = 15000): Promise<number> {
  const e = await Promise.race([r.exit, new Promise<null>((res) => setTimeout(() => res(null), ms))]);
  assert.ok(e, `still running ${ms} ms after the signal: ${r.err()}`);
  assert.equal(e.signal, null, `rawpoll was killed by ${e.signal}: ${r.err()}`);
  return e.code!;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function hosts(): TwoHostLab {
  const L = twoHosts();
  cleanups.push(() => L.lab.destroy());
  return L;
}

describe('netdump client', () => {
  let l: NetdumpLab;
  let s: RunningServer;
  /** Bytes the server has written so far (it writes in 128 KiB buffers): progress, not an exact count. */
  const written = () => fs.readdirSync(s.dir).filter((n) => n.startsWith('vmcore'))
    .reduce((a, n) => a + fs.statSync(path.join(s.dir, n)).size, 0);
  function file(bytes: number): string {
    const f = randomFile(bytes);
    cleanups.push(() => fs.rmSync(path.dirname(f), { recursive: true, force: true }));
    return f;
  }

  test('SIGINT mid-transfer (--json): bytes sent of the total, "interrupted":"SIGINT", exit 130', async () => {
    // 20 ms of delay in the relay: the kernel's rounds then move ~3 MB/s, so 6 MB is still under way when we stop it.
    l = await netdumpLab({ delayMs: 20 });
    cleanups.push(() => l.destroy());
    // --timeout 1: the server ends the abandoned session a second later and reports what it received.
    s = await startServer(l, ['--timeout', '1']);
    cleanups.push(() => fs.rmSync(s.dir, { recursive: true, force: true }));
    const r = start(l.a, ['netdump', '-i', l.ifA, '--server', l.ipB, '--file', file(6_000_000), '--json']);
    assert.ok(await waitFor(() => written() > 500_000 || r.p.exitCode !== null, 15000), `transfer did not start: ${r.err()}`);
    r.p.kill('SIGINT');
    assert.equal(await ended(r), 130, r.err());
    const j = JSON.parse(r.out());
    assert.equal(j.interrupted, 'SIGINT');
    assert.equal(j.total, 6_000_000);
    assert.ok(j.bytes >= 500_000 && j.bytes < 6_000_000, `bytes ${j.bytes}`);
    // The server's account: no FINISHED came, and it received at least every byte the client counts as ACKed.
    const [d] = await s.next(1, 10000);
    assert.equal(d.status, 'timeout');
    assert.ok(d.bytes >= j.bytes && d.bytes < 6_000_000, `server received ${d.bytes}, client claims ${j.bytes} ACKed`);
  });

  test('SIGTERM mid-transfer (human output, --window 8): "interrupted", N of M bytes, exit 143', async () => {
    const before = written();
    const r = start(l.a, ['netdump', '-i', l.ifA, '--server', l.ipB, '--file', file(6_000_000), '--window', '8']);
    assert.ok(await waitFor(() => written() - before > 200_000 || r.p.exitCode !== null, 15000), `transfer did not start: ${r.err()}`);
    r.p.kill('SIGTERM');
    assert.equal(await ended(r), 143, r.err());
    const m = /^netdump: interrupted \(SIGTERM\) after (\d+) of 6000000 bytes ACKed by /.exec(r.out());
    assert.ok(m, r.out());
    const [d] = await s.next(1, 10000);
    assert.equal(d.status, 'timeout');
    assert.ok(Number(m[1]) >= 200_000 && Number(m[1]) <= d.bytes, `client ${m[1]}, server ${d.bytes}`);
  });
});

const engines = nativeAvailable() ? ['native', 'pcap'] : ['pcap'];

describe('blast --start-at', () => {
  let L: TwoHostLab;
  /** Frames B received while `run` ran, counted after the start instant has passed (late frames would show). */
  async function framesAtPeer(startAt: number, run: () => Promise<void>): Promise<number> {
    const rx0 = rxPackets(L.b, L.ifB);
    await run();
    await sleep(Math.max(0, startAt * 1000 - Date.now()) + 300);
    return rxPackets(L.b, L.ifB) - rx0;
  }
  // native with --count (a job with an end: 130), pcap with no end (run until stopped: 0).
  for (const engine of engines) {
    const [limit, code] = engine === 'native' ? [['--count', '1000000'], 130] : [[], 0];
    test(`${engine}: SIGINT 1 s before the start: 0 frames on the wire, "interrupted before --start-at", exit ${code}`, async () => {
      L ??= hosts();
      const startAt = Math.floor(Date.now() / 1000) + 3 + 0.25;
      let r!: Running;
      const n = await framesAtPeer(startAt, async () => {
        // --dst-mac: no ARP, so B's rx_packets counts only blast frames.
        r = start(L.a, ['blast', '-i', L.ifA, '--to', `${L.ipB}:9`, '--dst-mac', L.macB, '--rate', '100kpps', '--engine', engine,
          '--start-at', startAt.toFixed(3), '--json', ...limit]);
        await sleep(Math.max(300, (startAt - 1) * 1000 - Date.now()));
        r.p.kill('SIGINT');
        assert.equal(await ended(r), code, r.err());
      });
      assert.equal(n, 0, 'frames reached the peer');
      const j = JSON.parse(r.out());
      assert.equal(j.interrupted, 'SIGINT');
      assert.equal(j.started, false);
      assert.equal(j.sent, 0);
      assert.equal(j.startedLateUs, null);
    });

    test(`${engine}: SIGINT 15 ms before the start still stops it: 0 frames, human summary says it never started`, async () => {
      L ??= hosts();
      const startAt = Math.floor(Date.now() / 1000) + 2 + 0.5;
      let r!: Running;
      const n = await framesAtPeer(startAt, async () => {
        r = start(L.a, ['blast', '-i', L.ifA, '--to', `${L.ipB}:9`, '--dst-mac', L.macB, '--rate', '100kpps', '--engine', engine,
          '--start-at', startAt.toFixed(3), '--duration', '5']);
        await sleep(startAt * 1000 - 15 - Date.now());
        r.p.kill('SIGINT');
        const late = Date.now() - startAt * 1000;
        assert.ok(late < 0, `the test itself signalled ${late} ms after the start (machine too busy to judge)`);
        assert.equal(await ended(r), 130, r.err());
      });
      assert.equal(n, 0, 'frames reached the peer');
      assert.match(r.out(), /^0 frames sent: interrupted \(SIGINT\) before --start-at;/);
      assert.doesNotMatch(r.out(), /started .* after --start-at/);
    });
  }
});

describe('interrupted jobs with an end of their own, and run-until-stopped ones', () => {
  test('blast --count N at a rate, SIGINT after ~1 s: exit 130, frames sent = datagrams the peer received < N', async () => {
    const L = hosts();
    const noPorts0 = snmp(L.b, 'Udp', 'NoPorts');
    const r = start(L.a, ['blast', '-i', L.ifA, '--to', `${L.ipB}:9`, '--dst-mac', L.macB, '--rate', '20kpps', '--count', '1000000', '--json']);
    await sleep(1000);
    r.p.kill('SIGINT');
    assert.equal(await ended(r), 130, r.err());
    const j = JSON.parse(r.out());
    assert.equal(j.interrupted, 'SIGINT');
    assert.equal(j.started, true);
    assert.ok(j.sent > 0 && j.sent < 1_000_000, `sent ${j.sent}`);
    // Nothing listens on port 9 in B: each datagram that reached its UDP layer counts once in NoPorts.
    assert.ok(await waitFor(() => snmp(L.b, 'Udp', 'NoPorts') - noPorts0 === j.sent, 2000),
      `peer got ${snmp(L.b, 'Udp', 'NoPorts') - noPorts0}, blast says ${j.sent}`);
  });

  test('sink with no limit, SIGINT: report printed, exit 0; with --duration, SIGTERM: exit 143', async () => {
    const L = hosts();
    const sink = start(L.b, ['sink', '--port', '9', '--json']);
    assert.ok(await waitFor(() => sink.err().includes('listening on'), 10000), sink.err());
    const timed = start(L.b, ['sink', '--port', '10', '--duration', '60', '--json']);
    assert.ok(await waitFor(() => timed.err().includes('listening on'), 10000), timed.err());
    const b = start(L.a, ['blast', '-i', L.ifA, '--to', `${L.ipB}:9`, '--count', '137', '--rate', '10kpps']);
    assert.equal(await ended(b), 0, b.err());
    await sleep(200);
    sink.p.kill('SIGINT');
    timed.p.kill('SIGTERM');
    assert.equal(await ended(sink), 0, sink.err());
    assert.equal(await ended(timed), 143, timed.err());
    const j = JSON.parse(sink.out());
    assert.equal(j.interrupted, 'SIGINT');
    assert.equal(j.totals.received, 137);
    assert.equal(JSON.parse(timed.out()).interrupted, 'SIGTERM');
  });

  test('send -c with a large count and netconsole reading stdin, SIGINT: summary, exit 130', async () => {
    const L = hosts();
    const noPorts0 = snmp(L.b, 'Udp', 'NoPorts');
    const send = start(L.a, ['send', '-i', L.ifA, '--to', `${L.ipB}:9`, '--dst-mac', L.macB, '--data', 'x', '-c', '2000000000', '--json']);
    // stdin stays open: netconsole waits for more lines until the signal.
    const nc = start(L.a, ['netconsole', '-i', L.ifA, '--to', `${L.ipB}:6666`, '--dst-mac', L.macB, '--json'], 'pipe');
    nc.p.stdin!.write('one\ntwo\n');
    assert.ok(await waitFor(() => /"event":"ready"/.test(nc.out()), 10000), nc.err());
    await sleep(700);
    send.p.kill('SIGINT');
    nc.p.kill('SIGINT');
    assert.equal(await ended(send), 130, send.err());
    assert.equal(await ended(nc), 130, nc.err());
    const j = JSON.parse(send.out());
    assert.equal(j.interrupted, 'SIGINT');
    assert.ok(j.sent > 0 && j.sent < 2_000_000_000, `sent ${j.sent}`);
    const summary = nc.out().trim().split('\n').map((l) => JSON.parse(l)).find((e) => e.event === 'summary');
    assert.equal(summary.interrupted, 'SIGINT');
    assert.equal(summary.messages, 2);
    // Nothing listens on B: every datagram either sent counts once in B's UDP NoPorts, and none more.
    assert.ok(await waitFor(() => snmp(L.b, 'Udp', 'NoPorts') - noPorts0 === j.sent + 2, 2000),
      `B saw ${snmp(L.b, 'Udp', 'NoPorts') - noPorts0} datagrams, send says ${j.sent} + netconsole 2`);
  });
});
