/**
 * netdump client across a link outage (issue 8): rawpoll netdump → rawpoll netdump-server over a veth pair in
 * namespaces this file creates; the client's own interface is taken down mid-dump with `ip link set IF down` (the
 * lab's flap), or deleted. Ground truth is the server's vmcore (sha256 against the source file) and the client's exit.
 * Every namespace, process and temporary file made here is removed in after(), whatever happened.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { netdumpLab, randomFile, sha256, startServer, type NetdumpLab, type RunningServer } from '../../scripts/bench-netdump.js';
import { exitOf, flap, must, RAWPOLL, waitFor } from '../helpers/lab.js';

const MB = 1_000_000;
const procs: ChildProcess[] = [];
const cleanups: (() => void)[] = [];
after(() => {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  for (const c of cleanups.splice(0)) c();
});

let source: string | null = null;
/** One 20 MB random file for every test here. */
function file(): string {
  if (!source) {
    source = randomFile(20 * MB);
    const dir = path.dirname(source);
    cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  }
  return source;
}

async function setup(): Promise<{ l: NetdumpLab; s: RunningServer }> {
  const l = await netdumpLab();
  cleanups.push(() => l.destroy());
  const s = await startServer(l);
  cleanups.push(() => fs.rmSync(s.dir, { recursive: true, force: true }));
  return { l, s };
}

interface Client { p: ChildProcess; out: () => string; err: () => string; t0: number }

/** rawpoll netdump in the client namespace (`ip netns exec` execs it: exit code and signal are rawpoll's own). */
function client(l: NetdumpLab, extra: string[], mergeStderr = false): Client {
  const args = [process.execPath, RAWPOLL, 'netdump', '-i', l.ifA, '--server', l.ipB, '--file', file(), '--json', ...extra];
  // Merged into one pipe (written synchronously on Linux), stdout and stderr keep the order rawpoll wrote them in.
  const cmd = mergeStderr ? ['sh', '-c', 'exec "$@" 2>&1', 'sh', ...args] : args;
  const p = spawn('ip', ['netns', 'exec', l.a, ...cmd], { stdio: ['ignore', 'pipe', 'pipe'] });
  procs.push(p);
  let out = '';
  let err = '';
  p.stdout!.on('data', (d) => (out += d));
  p.stderr!.on('data', (d) => (err += d));
  return { p, out: () => out, err: () => err, t0: Date.now() };
}

/** Bytes of vmcore the server has written so far. */
function vmcoreBytes(s: RunningServer): number {
  let n = 0;
  for (const name of fs.readdirSync(s.dir)) {
    if (!name.startsWith('vmcore')) continue;
    try {
      n += fs.statSync(path.join(s.dir, name)).size;
    } catch {
      /* renamed between readdir and stat */
    }
  }
  return n;
}

/** Waits until the server holds `bytes` of the dump, and checks the client is still at it (else the test proves nothing). */
async function midDump(c: Client, s: RunningServer, bytes: number): Promise<number> {
  assert.ok(await waitFor(() => vmcoreBytes(s) >= bytes || c.p.exitCode !== null, 30000, 5), `dump did not reach ${bytes} bytes: ${c.err()}`);
  const at = vmcoreBytes(s);
  assert.equal(c.p.exitCode, null, `client ended before the outage: ${c.out()} ${c.err()}`);
  assert.ok(at < 20 * MB, `server already had ${at} bytes when the outage began`);
  return at;
}

function jsonLines(out: string): Record<string, any>[] {
  return out.split('\n').filter((x) => x.startsWith('{')).map((x) => JSON.parse(x));
}

/** 20 MB with a 2 s flap of the client's link after ~4 MB: intact, one down and one up event, exit 0. */
async function survivesFlap(extra: string[]): Promise<string> {
  const { l, s } = await setup();
  // A retry budget (1 + 2 tries of 500 ms) shorter than the outage: only a stopped clock gets the dump through.
  const c = client(l, ['--poll-ms', '500', '--retries', '2', ...extra]);
  const at = await midDump(c, s, 4 * MB);
  const f0 = Date.now();
  await flap(l.a, l.ifA, 2000);
  const flapMs = Date.now() - f0;
  const e = await exitOf(c.p, 60000);
  assert.equal(e.signal, null, `client killed by ${e.signal}: ${c.err()}`);
  assert.equal(e.code, 0, c.err());
  const lines = jsonLines(c.out());
  const down = lines.filter((j) => j.event === 'link-down');
  const up = lines.filter((j) => j.event === 'link-up');
  assert.equal(down.length, 1, c.out());
  assert.equal(up.length, 1, c.out());
  assert.equal(down[0].iface, l.ifA);
  assert.equal(up[0].iface, l.ifA);
  assert.ok(Date.parse(up[0].at) > Date.parse(down[0].at));
  // The watch polls every 100 ms: what it saw is the flap, give or take a poll at each end.
  assert.ok(up[0].downMs > flapMs - 300 && up[0].downMs < flapMs + 300, `downMs ${up[0].downMs}, flap took ${flapMs} ms`);
  const sum = lines[lines.length - 1];
  assert.equal(sum.bytes, 20 * MB);
  assert.equal(sum.linkOutages, 1);
  assert.equal(sum.linkDownMs, up[0].downMs);
  assert.equal(sum.linkGone, null);
  const [d] = await s.next();
  assert.equal(d.status, 'complete');
  assert.equal(sha256(d.vmcore), sha256(file()));
  return `${sum.mode}: 20 MB in ${sum.seconds} s with a ${flapMs} ms flap at ${(at / MB).toFixed(1)} MB ` +
    `(down ${sum.linkDownMs} ms as seen), ${sum.retransmits} retransmits`;
}

test('20 MB, --window 64, 2 s link flap mid-dump: byte-exact, link-down and link-up events, exit 0', async () => {
  console.log(`# ${await survivesFlap(['--window', '64'])}`);
});

test('20 MB, kernel rounds, 2 s link flap mid-dump: byte-exact, link-down and link-up events, exit 0', async () => {
  console.log(`# ${await survivesFlap([])}`);
});

test('--link-wait 1 and a 3 s outage: exit 1 after ~1 s down, one line naming the interface and the wait', async () => {
  const { l, s } = await setup();
  const c = client(l, ['--link-wait', '1']);
  await midDump(c, s, 2 * MB);
  const downAt = Date.now();
  const flapping = flap(l.a, l.ifA, 3000);
  const e = await exitOf(c.p, 20000);
  const exitedAfter = Date.now() - downAt;
  await flapping;
  assert.equal(e.signal, null, `client killed by ${e.signal}: ${c.err()}`);
  assert.equal(e.code, 1, c.err());
  // It gave up at the wait, while the link was still down, not when it came back.
  assert.ok(exitedAfter >= 1000 && exitedAfter < 2800, `exited ${exitedAfter} ms after the link went down`);
  const err = c.err().trim().split('\n');
  assert.equal(err.length, 1, c.err());
  assert.match(err[0], new RegExp(`^rawpoll: link ${l.ifA} stayed down longer than --link-wait 1 s: ` +
    `gave up on the netdump to ${l.ipB.replace(/\./g, '\\.')}:\\d+ with \\d+ of 20000000 bytes ACKed$`));
  assert.ok(jsonLines(c.out()).some((j) => j.event === 'link-down' && j.iface === l.ifA), c.out());
});

test('client interface deleted mid-dump: link-gone event, the summary, then "interface IF disappeared", exit 1', async () => {
  const { l, s } = await setup();
  const c = client(l, ['--window', '64'], true);
  await midDump(c, s, 2 * MB);
  must('ip', ['-n', l.a, 'link', 'del', l.ifA]);
  const e = await exitOf(c.p, 20000);
  assert.equal(e.signal, null, `client killed by ${e.signal}: ${c.out()}`);
  assert.equal(e.code, 1, c.out());
  const lines = c.out().trim().split('\n');
  // Last the error, just before it the summary, before that the event.
  assert.equal(lines[lines.length - 1], `rawpoll: interface ${l.ifA} disappeared`);
  const sum = JSON.parse(lines[lines.length - 2]);
  assert.equal(sum.linkGone, l.ifA);
  assert.equal(sum.total, 20 * MB);
  assert.ok(sum.bytes > 0 && sum.bytes < 20 * MB, `bytes ${sum.bytes}`);
  assert.ok(lines.slice(0, -2).map((x) => JSON.parse(x)).some((j) => j.event === 'link-gone' && j.iface === l.ifA), c.out());
});

test("server's link flapped 2 s mid-dump: netdump-server -i reports it and keeps its sockets; the dump completes byte-exact", async () => {
  const { l } = await setup().then(async (x) => {
    // This test wants the server started with -i: stop the default one.
    x.s.proc.kill('SIGTERM');
    await exitOf(x.s.proc);
    return x;
  });
  const ifB = `${l.lab.tag}B`.slice(-15);
  const s = await startServer(l, ['-i', ifB]);
  cleanups.push(() => fs.rmSync(s.dir, { recursive: true, force: true }));
  const c = client(l, ['--window', '64']);
  await midDump(c, s, 4 * MB);
  await flap(l.b, ifB, 2000);
  const e = await exitOf(c.p, 60000);
  assert.equal(e.signal, null, c.err());
  assert.equal(e.code, 0, c.err());
  const [d] = await s.next();
  const events = s.events as Record<string, any>[];
  assert.equal(d.status, 'complete');
  assert.equal(sha256(d.vmcore), sha256(file()));
  const down = events.find((x) => x.event === 'link-down');
  const up = events.find((x) => x.event === 'link-up');
  assert.equal(down?.iface, ifB);
  assert.ok(up && up.downMs >= 1700 && up.downMs < 4000, JSON.stringify(up));
  s.proc.kill('SIGINT');
  const x = await exitOf(s.proc);
  assert.equal(x.signal, null);
  assert.equal(x.code, 0);
});

test('netdump-server -i IF: that link deleted -> stop line, then exit 1 "interface IF disappeared"', async () => {
  const { l, s: first } = await setup();
  first.proc.kill('SIGTERM');
  await exitOf(first.proc);
  const ifB = `${l.lab.tag}B`.slice(-15);
  const s = await startServer(l, ['-i', ifB]);
  cleanups.push(() => fs.rmSync(s.dir, { recursive: true, force: true }));
  let err = '';
  s.proc.stderr!.on('data', (d) => (err += d));
  await new Promise((r) => setTimeout(r, 300));
  must('ip', ['-n', l.b, 'link', 'del', ifB]);
  const x = await exitOf(s.proc);
  assert.equal(x.signal, null, err);
  assert.equal(x.code, 1, err);
  const events = s.events as Record<string, any>[];
  assert.ok(events.some((e) => e.event === 'link-gone'), JSON.stringify(events));
  assert.equal(events.find((e) => e.event === 'stop')?.stopped, `interface ${ifB} disappeared`);
  assert.match(err, new RegExp(`^rawpoll: interface ${ifB} disappeared$`, 'm'));
});
