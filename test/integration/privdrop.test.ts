/**
 * `-Z USER` (tcpdump's privilege drop) on real namespaces and veth pairs: the kernel is the oracle. While a sender
 * runs with -Z nobody, /proc/PID/status of the rawpoll process says nobody's uid and gid and empty capability sets,
 * and its datagrams still reach a kernel UDP socket on the peer — through a link outage too (the capture handle is
 * kept, not reopened: after the drop it could not be). An unknown user is bad usage before anything reaches the wire
 * (tcpdump on the peer sees nothing), and a receiver (collect) with -Z nobody still receives and writes as nobody.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { flap, labsForThisFile, RAWPOLL, rawpoll, sh, startRawpoll, udpReceiver, waitFor, type RunningRawpoll } from '../helpers/lab.js';
import { startCollector } from '../helpers/collector.js';
import { startSink } from '../helpers/sink.js';
import { lookupUser, modeAllows, processCredentials } from '../../src/host/privdrop.js';

const { tmp, hosts } = labsForThisFile('rawpoll-privdrop-');
chmodSync(tmp, 0o755); // nobody must reach the collector's directory inside it
const NOBODY = lookupUser('nobody');
if (!NOBODY) throw new Error('this test needs a "nobody" account in /etc/passwd');

const procs: ChildProcess[] = [];
after(() => {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
});

/** The rawpoll process under `pid`: `ip netns exec` execs its command, but look one level down in case it forked. */
function rawpollPid(pid: number): number {
  const isRawpoll = (p: number) => readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0').includes(RAWPOLL);
  if (isRawpoll(pid)) return pid;
  const kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  const k = kids.find(isRawpoll);
  if (k === undefined) throw new Error(`no rawpoll process at or under pid ${pid}`);
  return k;
}

/**
 * Every thread of `pid` (credentials are per thread in the kernel: the addon's receive and send threads and libuv's
 * pool must have switched too) has nobody's uids and gids and no capability.
 */
function assertDropped(pid: number): void {
  const tids = readdirSync(`/proc/${pid}/task`);
  assert.ok(tids.length > 1, 'a node process has threads');
  for (const tid of tids) {
    const c = processCredentials(`${pid}/task/${tid}`);
    const t = `thread ${tid}`;
    assert.deepEqual(c.uid, [NOBODY!.uid, NOBODY!.uid, NOBODY!.uid, NOBODY!.uid], `${t} Uid: real, effective, saved, fs`);
    assert.deepEqual(c.gid, [NOBODY!.gid, NOBODY!.gid, NOBODY!.gid, NOBODY!.gid], `${t} Gid: real, effective, saved, fs`);
    assert.deepEqual(c.groups, [NOBODY!.gid], `${t} supplementary groups: only the primary one`);
    assert.equal(c.capPrm, 0n, `${t} CapPrm`);
    assert.equal(c.capEff, 0n, `${t} CapEff`);
    assert.equal(c.capAmb, 0n, `${t} CapAmb`);
  }
}

/** Polls (up to `ms`) until the rawpoll process of `p` runs as nobody (its main thread: the drop switches every thread); its pid. */
async function nobodyPid(p: RunningRawpoll, ms: number, what: string): Promise<number> {
  let pid = 0;
  assert.ok(await waitFor(() => {
    try {
      pid = rawpollPid(p.proc.pid!);
      return processCredentials(String(pid)).uid[0] === NOBODY!.uid;
    } catch {
      return false;
    }
  }, ms), `${what} never became nobody: ${p.err()}`);
  return pid;
}

test('netconsole -Z nobody: uid/gid nobody, no capabilities, datagrams still arrive, through a link outage too', async () => {
  const h = hosts();
  const lines = Array.from({ length: 6 }, (_, i) => `privdrop line ${i}`);
  const rx = await udpReceiver(h.lab, h.b, 6666, lines.length, 20000);
  const p = spawn('ip', ['netns', 'exec', h.a, process.execPath, RAWPOLL, 'netconsole', '-i', h.ifA, '--to', h.ipB, '-Z', 'nobody', '--json'],
    { stdio: ['pipe', 'pipe', 'pipe'] });
  procs.push(p);
  let out = '';
  let err = '';
  p.stdout!.on('data', (d) => (out += d));
  p.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((r) => p.on('close', (code) => r(code)));
  // "ready" is printed right after the drop: the targets are open and resolved, no message has gone out yet.
  assert.ok(await waitFor(() => out.includes('"event":"ready"'), 10000), `no ready event: ${err}`);
  const pid = rawpollPid(p.pid!);
  assertDropped(pid);

  for (const l of lines.slice(0, 3)) p.stdin!.write(l + '\n');
  await new Promise((r) => setTimeout(r, 300));
  // An outage after the drop: the libpcap handle must ride it out bound (no reopen, which would need CAP_NET_RAW).
  await flap(h.a, h.ifA, 600);
  assert.ok(await waitFor(() => out.includes('"event":"link-up"'), 5000), `no link-up event: ${out}${err}`);
  for (const l of lines.slice(3)) p.stdin!.write(l + '\n');
  await new Promise((r) => setTimeout(r, 300));
  assertDropped(pid); // still nobody, still nothing
  p.stdin!.end();
  assert.equal(await exited, 0, err);

  const got = await rx.done();
  assert.deepEqual(got.map((d) => d.data.toString()), lines.map((l) => l + '\n'));
  assert.ok(got.every((d) => d.from === h.ipA && d.port === 6665));
  const summary = JSON.parse(out.trim().split('\n').pop()!);
  assert.equal(summary.event, 'summary');
  assert.equal(summary.datagrams, lines.length);
});

test('send -Z nobody: every datagram reaches the peer kernel socket', async () => {
  const h = hosts();
  const rx = await udpReceiver(h.lab, h.b, 9000, 20, 10000);
  const r = rawpoll(h.a, ['send', '-i', h.ifA, '--to', `${h.ipB}:9000`, '--data', 'after the drop', '-c', '20', '-Z', 'nobody', '--json']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).sent, 20);
  const got = await rx.done();
  assert.equal(got.length, 20);
  assert.ok(got.every((d) => d.data.toString() === 'after the drop'));
});

test('blast -Z nobody, both engines: every frame reaches the peer kernel socket', async () => {
  const h = hosts();
  for (const engine of ['native', 'pcap']) {
    const rx = await udpReceiver(h.lab, h.b, 9000, 100, 10000);
    const r = rawpoll(h.a, ['blast', '-i', h.ifA, '--to', `${h.ipB}:9000`, '--count', '100', '--rate', '20000', '--engine', engine, '-Z', 'nobody', '--json']);
    assert.equal(r.code, 0, `${engine}: ${r.stderr}`);
    assert.equal(JSON.parse(r.stdout).sent, 100, engine);
    assert.equal((await rx.done()).length, 100, engine);
  }
});

test('netdump -Z nobody to netdump-server -Z nobody: the dump arrives byte-exact, written by nobody', async () => {
  const h = hosts();
  const dir = join(tmp, 'dumps');
  mkdirSync(dir);
  chownSync(dir, NOBODY.uid, NOBODY.gid);
  const core = join(tmp, 'core.bin');
  writeFileSync(core, randomBytes(300_000));
  const srv = spawn('ip', ['netns', 'exec', h.b, process.execPath, RAWPOLL, 'netdump-server', '--dir', dir, '--bind', h.ipB, '--json', '-Z', 'nobody'],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  procs.push(srv);
  let out = '';
  let err = '';
  srv.stdout!.on('data', (d) => (out += d));
  srv.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((r) => srv.on('close', (code) => r(code)));
  const bound = () => sh('ip', ['netns', 'exec', h.b, 'ss', '-Huln', `sport = :20023`]).stdout.toString().includes('20023');
  assert.ok(await waitFor(bound, 10000, 50), `server did not bind: ${err}`);
  // The drop follows the bind at once; give it the moment between the two.
  assert.ok(await waitFor(() => processCredentials(rawpollPid(srv.pid!)).uid[0] === NOBODY.uid, 5000), 'server still root');
  assertDropped(rawpollPid(srv.pid!));

  const c = rawpoll(h.a, ['netdump', '-i', h.ifA, '--server', h.ipB, '--file', core, '-Z', 'nobody', '--json']);
  assert.equal(c.code, 0, c.stderr);
  assert.equal(JSON.parse(c.stdout.trim().split('\n').pop()!).bytes, 300_000);
  assert.ok(await waitFor(() => out.includes('"event":"dump"'), 10000), `no dump event: ${out}${err}`);
  const d = JSON.parse(out.split('\n').find((l) => l.includes('"event":"dump"'))!);
  assert.equal(d.status, 'complete');
  assert.deepEqual(readFileSync(d.vmcore), readFileSync(core));
  assert.equal(statSync(d.vmcore).uid, NOBODY.uid);
  srv.kill('SIGINT');
  assert.equal(await exited, 0, err);
});

test('sink -Z nobody counts what blast sends; with --serve (each trial opens its own socket) -Z is bad usage', async () => {
  const h = hosts();
  const sink = await startSink(h.lab, h.b, ['--port', '9000', '--count', '200', '--json', '-Z', 'nobody']);
  assertDropped(rawpollPid(sink.proc.pid!));
  const b = rawpoll(h.a, ['blast', '-i', h.ifA, '--to', `${h.ipB}:9000`, '--count', '200', '--rate', '20000']);
  assert.equal(b.code, 0, b.stderr);
  const report = JSON.parse(await sink.output());
  assert.equal(report.flows[0].received, 200);
  const serve = rawpoll(h.b, ['sink', '--serve', '5201', '-Z', 'nobody']);
  assert.equal(serve.code, 2);
  assert.match(serve.stderr, /cannot be used with option '--serve/);
});

test('-Z with an unknown user: exit 2 naming the user, and nothing on the wire (not even ARP)', async () => {
  const h = hosts();
  const cap = spawn('ip', ['netns', 'exec', h.b, 'tcpdump', '-n', '-l', '-i', h.ifB, '-U', 'not ip6'], { stdio: ['ignore', 'pipe', 'pipe'] });
  procs.push(cap);
  let seen = '';
  let capErr = '';
  cap.stdout!.on('data', (d) => (seen += d));
  cap.stderr!.on('data', (d) => (capErr += d));
  assert.ok(await waitFor(() => capErr.includes('listening on'), 10000), `tcpdump did not start: ${capErr}`);
  const user = 'no-such-user-rawpoll';
  for (const args of [
    ['send', '-i', h.ifA, '--to', `${h.ipB}:9000`, '--data', 'x', '-Z', user],
    ['netconsole', '-i', h.ifA, '--to', h.ipB, '--relinquish-privileges', user],
    ['blast', '-i', h.ifA, '--to', `${h.ipB}:9`, '--count', '10', '-Z', user],
    ['netdump', '-i', h.ifA, '--server', h.ipB, '--file', RAWPOLL, '-Z', user],
  ]) {
    const r = rawpoll(h.a, args, 'line\n');
    assert.equal(r.code, 2, `${args[0]}: ${r.stderr}`);
    assert.equal(r.stderr.trim(), `rawpoll: bad -Z '${user}': no such user in /etc/passwd (or NSS); give an existing account, e.g. -Z nobody`);
  }
  await new Promise((res) => setTimeout(res, 500));
  assert.equal(seen, '', 'tcpdump on the peer saw frames from runs that were refused');
  // The capture was live all along: a run that is allowed is seen.
  const ok = rawpoll(h.a, ['send', '-i', h.ifA, '--to', `${h.ipB}:9000`, '--data', 'x', '-Z', 'nobody']);
  assert.equal(ok.code, 0, ok.stderr);
  assert.ok(await waitFor(() => /UDP, length 1/.test(seen), 5000), `tcpdump saw: ${seen}`);
  cap.kill('SIGINT');
});

test('-Z refusals: root itself, and -w FILE (renamed into place after the drop) are bad usage; nothing is written', () => {
  const h = hosts();
  const root = rawpoll(h.a, ['send', '-i', h.ifA, '--to', `${h.ipB}:9000`, '--data', 'x', '-Z', 'root']);
  assert.equal(root.code, 2);
  assert.match(root.stderr, /^rawpoll: bad -Z 'root': that is root \(uid 0\)/);
  const file = join(tmp, 'out.pcap');
  const w = rawpoll(h.a, ['send', '--to', `${h.ipB}:9000`, '--data', 'x', '--dst-mac', h.macB, '--src-mac', h.macA, '--from', h.ipA, '-w', file, '-Z', 'nobody']);
  assert.equal(w.code, 2);
  assert.match(w.stderr, new RegExp(`^rawpoll: -Z nobody and -w ${file}: a pcap file is renamed into place at the end`));
  assert.deepEqual(readdirSync(tmp).filter((n) => n.startsWith('out.pcap')), []);
  // -w - is opened before the drop: fine.
  const std = rawpoll(h.a, ['send', '--to', `${h.ipB}:9000`, '--data', 'x', '--dst-mac', h.macB, '--src-mac', h.macA, '--from', h.ipA, '-w', '-', '-Z', 'nobody']);
  assert.equal(std.code, 0, std.stderr);
  assert.equal(std.out.readUInt32LE(0), 0xa1b2c3d4);
});

test('collect -Z nobody: binds, becomes nobody, still receives and writes its logs as nobody', async () => {
  const h = hosts();
  const dir = join(tmp, 'collect');
  mkdirSync(dir);
  chownSync(dir, NOBODY.uid, NOBODY.gid);
  const c = await startCollector(h.lab, h.b, dir, ['--netconsole', '6666', '-Z', 'nobody']);
  procs.push(c.proc);
  assertDropped(rawpollPid(c.proc.pid!));
  const input = join(tmp, 'lines.txt');
  writeFileSync(input, 'hello from a\nsecond line\n');
  const r = rawpoll(h.a, ['netconsole', '-i', h.ifA, '--to', h.ipB], readFileSync(input));
  assert.equal(r.code, 0, r.stderr);
  const ncDir = join(dir, 'netconsole');
  assert.ok(await waitFor(() => {
    try {
      return readdirSync(ncDir).some((n) => readFileSync(join(ncDir, n), 'utf8').includes('second line'));
    } catch {
      return false;
    }
  }, 10000), `no netconsole log in ${ncDir}: ${c.stderr()}`);
  for (const n of readdirSync(ncDir)) assert.equal(statSync(join(ncDir, n)).uid, NOBODY.uid, `${n} is not nobody's`);
  assert.equal(await c.stop(), 0, c.stderr());
});

test('lookupUser reads /etc/passwd itself (no NSS needed): by name or uid; malformed lines are skipped', () => {
  const passwd = join(tmp, 'passwd');
  writeFileSync(passwd, ['root:x:0:0:root:/root:/bin/bash', 'broken line', 'svc:x:abc:1:bad uid::', 'rp:x:4242:4343:rawpoll:/nonexistent:/usr/sbin/nologin', ''].join('\n'));
  assert.deepEqual(lookupUser('rp', passwd), { name: 'rp', uid: 4242, gid: 4343 });
  assert.deepEqual(lookupUser('4242', passwd), { name: 'rp', uid: 4242, gid: 4343 });
  assert.equal(lookupUser('svc', passwd), null);
  assert.equal(lookupUser('nobody', passwd), null, 'a fixture file is not completed from NSS');
  // The permission bits as the dropped user will meet them: owner, then primary group, then others.
  const f = join(tmp, 'perm');
  writeFileSync(f, '');
  chownSync(f, 4242, 4343);
  chmodSync(f, 0o640);
  assert.ok(modeAllows({ name: 'rp', uid: 4242, gid: 1 }, f, 6));
  assert.ok(modeAllows({ name: 'g', uid: 1, gid: 4343 }, f, 4));
  assert.ok(!modeAllows({ name: 'g', uid: 1, gid: 4343 }, f, 2));
  assert.ok(!modeAllows(NOBODY, f, 4));
});

test('arp -Z nobody: drops once its capture handle is open, before the first who-has; still gets the reply', async () => {
  const h = hosts();
  // An address nobody answers: arp keeps asking (3 × 1 s), long enough to read its credentials while it runs.
  const p = startRawpoll(h.lab, h.a, ['arp', '-i', h.ifA, '10.255.255.254', '--from', h.ipA, '-Z', 'nobody'], /^/);
  // Dropped means every thread switched: poll until the main thread is nobody (the drop comes after the handle opens).
  assertDropped(await nobodyPid(p, 5000, 'arp'));
  assert.equal(await p.exited, 1, p.err());
  assert.match(p.err(), /^rawpoll: no ARP reply from 10\.255\.255\.254 on \S+ after 3 tries$/m);
  // And a real neighbour is still resolved after the drop: the handle receives as nobody.
  const r = rawpoll(h.a, ['arp', '-i', h.ifA, h.ipB, '-Z', 'nobody', '--json']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).mac, h.macB);
});

test('oops -Z nobody: drops once the link is open, before the first datagram; the one-shot state is written as nobody', async () => {
  const h = hosts();
  const dir = join(tmp, 'oops-state');
  mkdirSync(dir);
  chownSync(dir, NOBODY!.uid, NOBODY!.gid);
  const state = join(dir, 'armed');
  const log = join(tmp, 'oops.log');
  // ~3 KiB of log: 4 datagrams (the chunks) × 3 rounds, 150 ms apart: over a second of sending to read /proc in.
  writeFileSync(log, Array.from({ length: 60 }, (_, i) => `<4>[  ${i}.000000] oops line ${i} ${'x'.repeat(30)}`).join('\n') + '\n');
  const rx = await udpReceiver(h.lab, h.b, 2004, 12, 20000);
  const p = startRawpoll(h.lab, h.a, ['oops', '-i', h.ifA, '--to', h.ipB, '--log', log, '--type', 'oops',
    '--one-shot', state, '--gap-us', '150000', '-Z', 'nobody', '--json'], /^/);
  assertDropped(await nobodyPid(p, 10000, 'oops'));
  assert.equal(await p.exited, 0, p.err());
  const r = JSON.parse(p.out()) as { sent: boolean; datagrams: number; disarmed: boolean };
  assert.deepEqual([r.sent, r.datagrams, r.disarmed], [true, 12, true]);
  assert.equal((await rx.done()).length, 12);
  assert.equal(JSON.parse(readFileSync(state, 'utf8')).armed, false, 'disarmed');
  assert.equal(statSync(state).uid, NOBODY!.uid, 'the state file was written as nobody');
  assert.deepEqual(readdirSync(dir), ['armed'], 'no lock or temp file left');
  // A sticky state directory (as /tmp) is refused before anything is opened: nobody could not replace the file there.
  const sticky = join(tmp, 'sticky');
  mkdirSync(sticky);
  chmodSync(sticky, 0o1777);
  const s = rawpoll(h.a, ['oops', '-i', h.ifA, '--to', h.ipB, '--log', log, '--one-shot', join(sticky, 'armed'), '-Z', 'nobody']);
  assert.equal(s.code, 2, s.stderr);
  assert.match(s.stderr, /^rawpoll: -Z nobody and --one-shot \S+: its directory is sticky \(as \/tmp\)/);
  assert.deepEqual(readdirSync(sticky), []);
});
