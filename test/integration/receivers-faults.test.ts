/**
 * The receivers when the world goes wrong: `collect` and `netdump-server` writing into a small tmpfs that fills up,
 * and killed (SIGKILL) and restarted in the middle of a transfer, then stopped with SIGINT/SIGTERM. Senders run in
 * the peer namespace of a veth pair this file creates and removes. The tmpfs is mounted on a temp directory this
 * file creates, and unmounted and removed in `finally` whatever happens. The kernel is the oracle for "nothing hidden
 * keeps the disk full": statfs's used blocks against the visible files.
 *
 * Every rawpoll process started here is checked for how it ended: exit code as expected and no signal, except the
 * one this file SIGKILLs on purpose.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { twoHosts, must, sh, waitFor, RAWPOLL, type TwoHostLab } from '../helpers/lab.js';
import { startCollector, type Collector } from '../helpers/collector.js';

interface Exit { code: number | null; signal: NodeJS.Signals | null }

/** How a process ended (resolves at once if it already has). */
function exitOf(p: ChildProcess): Promise<Exit> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve({ code: p.exitCode, signal: p.signalCode });
  return new Promise((r) => p.once('exit', (code, signal) => r({ code, signal })));
}

/** A command in a namespace, run to its end without blocking the event loop (the receivers' output keeps flowing). */
function nsRunAsync(ns: string, args: string[]): Promise<Exit & { stdout: string; stderr: string }> {
  return new Promise((res) => {
    const p = spawn('ip', ['netns', 'exec', ns, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('close', (code, signal) => res({ code, signal, stdout, stderr }));
  });
}

/** A tmpfs of `size` on a fresh temp directory; `remove` unmounts it (lazily if still busy) and deletes the directory. */
function tmpfs(size: string): { dir: string; remove: () => Promise<void> } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rawpoll-tmpfs-'));
  const m = sh('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0755`, 'rawpoll-test', dir]);
  if (m.status !== 0) {
    fs.rmdirSync(dir);
    throw new Error(`mount tmpfs on ${dir}: ${m.stderr}`);
  }
  return {
    dir,
    remove: async () => {
      // Processes killed by lab.destroy() may still hold files open for a moment.
      const ok = await waitFor(() => sh('umount', [dir]).status === 0, 3000, 100);
      if (!ok) sh('umount', ['-l', dir]);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Writes a file until the filesystem says ENOSPC. */
function fill(file: string): void {
  const fd = fs.openSync(file, 'w');
  const chunk = Buffer.alloc(64 * 1024, 0x55);
  try {
    for (;;) fs.writeSync(fd, chunk);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e;
  } finally {
    fs.closeSync(fd);
  }
}

/** Bytes in use on the filesystem of `dir`, as the kernel counts them. */
function usedBytes(dir: string): number {
  const s = fs.statfsSync(dir);
  return (s.blocks - s.bfree) * s.bsize;
}

/** Pages the regular files under `dir` occupy (tmpfs stores whole 4 KiB pages; directories take none). */
function visibleFileBytes(dir: string): number {
  let n = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) n += Math.ceil(fs.statSync(path.join(e.parentPath, e.name)).size / 4096) * 4096;
  }
  return n;
}

function tempFiles(dir: string): string[] {
  return fs.readdirSync(dir, { recursive: true }).map(String).filter((n) => /\.tmp-/.test(n));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** netconsole-style lines from a kernel UDP socket: node -e NC_SEND host port tag count. */
const NC_SEND = String.raw`
const s = require('node:dgram').createSocket('udp4');
const [host, port, tag, count] = process.argv.slice(1);
(async () => {
  for (let i = 0; i < Number(count); i++) {
    await new Promise((r) => s.send(Buffer.from('line ' + tag + ' ' + i + ' ' + 'x'.repeat(80) + '\n'), Number(port), host, r));
  }
  s.close();
})();
`;

/**
 * A netoops dump of a file, one round, built from PROTOCOLS.md §3 (v3, 88-byte header, no user blob; packet_no k
 * carries chunk count-1-k): node -e OOPS_SEND host port dumpId bootId file.
 */
const OOPS_SEND = String.raw`
const s = require('node:dgram').createSocket('udp4');
const [host, port, dumpId, bootId, file] = process.argv.slice(1);
const log = require('node:fs').readFileSync(file);
const count = Math.ceil(log.length / 1024);
(async () => {
  for (let k = 0; k < count; k++) {
    const i = count - 1 - k;
    const b = Buffer.alloc(88 + 1024);
    b.writeUInt16LE(3, 0); b.writeUInt16LE(Number(dumpId), 2); b.writeUInt16LE(88, 4); b.writeUInt16LE(88, 8);
    b.writeUInt16LE(1, 10); b.writeUInt32LE(count, 12); b.writeUInt32LE(k, 16); b.writeUInt32LE(Number(bootId), 20);
    log.copy(b, 88, i * 1024, Math.min(log.length, i * 1024 + 1024));
    await new Promise((r) => s.send(b, Number(port), host, r));
  }
  s.close();
})();
`;

/**
 * A netdump client on a kernel UDP socket, from the client's own address and port 20024, built from PROTOCOLS.md §4
 * (24-byte header: type, seqno, offset u64, len; HERALD 1, FINISHED 2, VMCORE 3, KDH 4), stop-and-wait, each message
 * sent up to `tries` times 200 ms apart. With bytes = -1 it sends the whole file, a KDH and FINISHED and exits 0 once
 * FINISHED is ACKed; otherwise it sends the first `bytes`, prints "paused" and holds its socket without sending more.
 * Exits 1 when a message is never ACKed. (The real client, `rawpoll netdump`, is tested against this server in
 * netdump.test.ts; here the client must stop exactly where the test says.)
 *   node -e ND_CLIENT myIp serverIp file bytes tries
 */
const ND_CLIENT = String.raw`
const s = require('node:dgram').createSocket('udp4');
const [me, server, file, bytes, tries] = process.argv.slice(1);
const all = require('node:fs').readFileSync(file);
const whole = Number(bytes) < 0;
const data = whole ? all : all.subarray(0, Number(bytes));
const acked = new Set();
let port = 0;
const waiters = [];
s.on('message', (m, r) => { if (m.length === 4) { acked.add(m.readUInt32BE(0)); if (!port) port = r.port; } waiters.splice(0).forEach((w) => w()); });
function msg(type, seq, off, payload) {
  const h = Buffer.alloc(24);
  h.writeUInt32BE(type, 0); h.writeUInt32BE(seq, 4); h.writeBigUInt64BE(BigInt(off), 8); h.writeUInt32BE(payload.length, 16);
  return Buffer.concat([h, payload]);
}
async function exchange(m, dport, seq) {
  for (let t = 0; t < Number(tries); t++) {
    await new Promise((r) => s.send(m, dport, server, r));
    const ok = await new Promise((r) => {
      if (acked.has(seq)) return r(true);
      const timer = setTimeout(() => r(acked.has(seq)), 200);
      waiters.push(() => { if (acked.has(seq)) { clearTimeout(timer); r(true); } });
    });
    if (ok) return;
  }
  process.stderr.write('no ACK for seqno ' + seq + '\n');
  process.exit(1);
}
/** FreeBSD's kerneldumpheader, big-endian fields, parity over the 512 bytes (PROTOCOLS.md §4). */
function kdh(len) {
  const b = Buffer.alloc(512);
  b.write('FreeBSD Kernel Dump', 0); b.write('amd64', 20); b.writeUInt32BE(4, 32); b.writeUInt32BE(2, 36);
  b.writeBigUInt64BE(BigInt(len), 40); b.writeBigUInt64BE(1700000000n, 48); b.writeUInt32BE(4096, 60);
  b.write('faulthost', 64); b.write('TestOS 1.0 #0\n', 128); b.write('fault test', 320); b.writeBigUInt64BE(BigInt(len), 496);
  let p = 0;
  for (let i = 0; i < 508; i += 4) p ^= b.readUInt32BE(i);
  b.writeUInt32BE(p >>> 0, 508);
  return b;
}
s.bind(20024, me, async () => {
  await exchange(msg(1, 1, 0, Buffer.alloc(0)), 20023, 1);
  let seq = 2;
  for (let off = 0; off < data.length; off += 1448, seq++) await exchange(msg(3, seq, off, data.subarray(off, off + 1448)), port, seq);
  if (!whole) {
    process.stdout.write('paused\n');
    return; // the open socket keeps the process (and the session) alive until the test kills it
  }
  await exchange(msg(4, seq, 0, kdh(data.length)), port, seq);
  seq++;
  await exchange(msg(2, seq, 0, Buffer.alloc(0)), port, seq);
  process.stdout.write('finished\n');
  s.close();
});
`;

function randomFile(dir: string, name: string, bytes: number): string {
  const f = path.join(dir, name);
  fs.writeFileSync(f, crypto.randomBytes(bytes));
  return f;
}

function sha256(file: string): string {
  return crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

function lastLine(file: string): string {
  const t = fs.readFileSync(file, 'utf8');
  assert.ok(t.endsWith('\n'), `${file} ends with a newline`);
  return t.slice(0, -1).split('\n').pop()!;
}

/** The status line every info file ends with. */
const STATUS = /^Dump (started|complete|incomplete: .+|unsuccessful: .+)$/;

// ---------------------------------------------------------------------------------------------------------------
// collect

test('collect on a full tmpfs: one disk-full line per episode, no temp files, resumes when space returns', async () => {
  let h: TwoHostLab | null = null;
  const fsys = tmpfs('512k');
  const inputs = fs.mkdtempSync(path.join(os.tmpdir(), 'rawpoll-rf-in-'));
  try {
    h = twoHosts();
    const { dir } = fsys;
    const c = await startCollector(h.lab, h.b, dir, ['--netconsole', '6666', '--oops', '2004']);
    const exit = exitOf(c.proc);
    const events = c.events;
    const count = (name: string) => events.filter((e) => e.event === name).length;
    const ncSend = async (tag: string, n: number) => {
      const r = await nsRunAsync(h!.a, [process.execPath, '-e', NC_SEND, h!.ipB, '6666', tag, String(n)]);
      assert.deepEqual([r.code, r.signal], [0, null], r.stderr);
    };
    const oopsSend = async (dumpId: number, file: string) => {
      const r = await nsRunAsync(h!.a, [process.execPath, '-e', OOPS_SEND, h!.ipB, '2004', String(dumpId), '4660', file]);
      assert.deepEqual([r.code, r.signal], [0, null], r.stderr);
    };
    const ncLog = path.join(dir, 'netconsole', `${h.ipA}.log`);
    const report = Buffer.from(Array.from({ length: 600 }, (_, i) => `<4>[${i}.0] oops line ${i}\n`).join(''));
    const reportFile = path.join(inputs, 'report.log');
    fs.writeFileSync(reportFile, report);

    // A log with a partly used last page: the first writes after the disk fills still fit, then one is cut.
    await ncSend('before', 20);
    assert.ok(await waitFor(() => fs.existsSync(ncLog) && fs.readFileSync(ncLog, 'utf8').split('\n').length === 21, 5000));

    // Episode 1: 300 netconsole lines and an oops report into a full disk.
    const filler = path.join(dir, 'filler');
    fill(filler);
    await ncSend('during1', 300);
    await oopsSend(1, reportFile);
    assert.ok(await c.wait((e) => e.event === 'disk-full', 5000), JSON.stringify(events));
    await sleep(500); // let the collector drain what is still in its socket buffers
    assert.equal(count('disk-full'), 1, 'one line for the whole episode');
    const full = events.find((e) => e.event === 'disk-full')!;
    assert.match(String(full.error), /^ENOSPC: no space left on device/);
    assert.ok(String(full.file).startsWith(dir + path.sep), `names the file: ${full.file}`);
    assert.deepEqual(tempFiles(dir), [], 'no temp file left behind');
    // The kernel's count of used pages is what the visible files hold: nothing hidden keeps the disk full.
    assert.equal(usedBytes(dir), visibleFileBytes(dir));

    // Space returns: the next write succeeds, says so once with what was lost, and a new report lands whole.
    fs.rmSync(filler);
    await ncSend('after1', 50);
    const resumed1 = await c.wait((e) => e.event === 'write-resumed', 5000);
    assert.ok(resumed1, JSON.stringify(events.slice(-5)));
    assert.equal(resumed1.lost_dumps, 1);
    await oopsSend(2, reportFile);
    const done = await c.wait((e) => e.event === 'dump-complete', 5000);
    assert.ok(done, JSON.stringify(events.slice(-5)));
    assert.equal(done.dump_id, 2);
    assert.deepEqual(fs.readFileSync(done.file as string), report);
    assert.equal(JSON.parse(fs.readFileSync(done.sidecar as string, 'utf8')).complete, true);

    // Episode 2.
    fill(filler);
    await ncSend('during2', 100);
    assert.ok(await waitFor(() => count('disk-full') === 2, 5000), JSON.stringify(events.slice(-5)));
    await sleep(300);
    assert.deepEqual(tempFiles(dir), []);
    fs.rmSync(filler);
    await ncSend('after2', 10);
    assert.ok(await waitFor(() => count('write-resumed') === 2, 5000), JSON.stringify(events.slice(-5)));
    const resumed2 = events.filter((e) => e.event === 'write-resumed')[1];

    // The log holds whole lines only (the cut ones were taken back), and exactly the ones not counted as lost.
    await sleep(200);
    const text = fs.readFileSync(ncLog, 'utf8');
    assert.ok(text.endsWith('\n'));
    const lines = text.slice(0, -1).split('\n');
    for (const l of lines) assert.match(l, /^line (before|during1|after1|during2|after2) \d+ x{80}$/);
    const tags = (t: string) => lines.filter((l) => l.startsWith(`line ${t} `)).length;
    assert.equal(tags('before'), 20);
    assert.equal(tags('after1'), 50);
    assert.equal(tags('after2'), 10);
    assert.equal(tags('during1') + Number(resumed1.lost_records), 300, JSON.stringify(resumed1));
    assert.equal(tags('during2') + Number(resumed2.lost_records), 100, JSON.stringify(resumed2));
    assert.equal(count('disk-full'), 2);
    assert.equal(events.filter((e) => e.event === 'error' || e.event === 'write-error').length, 0);

    c.proc.kill('SIGTERM');
    assert.deepEqual(await exit, { code: 0, signal: null }, c.stderr());
    const summary = events.find((e) => e.event === 'summary')!;
    assert.equal(summary.interrupted, 'SIGTERM');
    assert.equal((summary.write_failures as Record<string, unknown>).episodes, 2);
    assert.equal(c.stderr(), '');
  } finally {
    h?.lab.destroy();
    await fsys.remove();
    fs.rmSync(inputs, { recursive: true, force: true });
  }
});

/** Threads of a process blocked in opening a FIFO nobody reads (fs/pipe.c: fifo_open -> wait_for_partner). */
function blockedInFifoOpen(pid: number): boolean {
  try {
    return fs.readdirSync(`/proc/${pid}/task`).some((t) => fs.readFileSync(`/proc/${pid}/task/${t}/wchan`, 'utf8') === 'wait_for_partner');
  } catch {
    return false;
  }
}

test('collect killed mid-write and restarted: the successor removes the temp file left behind and keeps working', async () => {
  let h: TwoHostLab | null = null;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rawpoll-rf-kill-'));
  const inputs = fs.mkdtempSync(path.join(os.tmpdir(), 'rawpoll-rf-in-'));
  try {
    h = twoHosts();
    const report = Buffer.from(Array.from({ length: 3000 }, (_, i) => `<4>[${i}.0] kill test ${i}\n`).join(''));
    const reportFile = path.join(inputs, 'report.log');
    fs.writeFileSync(reportFile, report);
    const oopsSend = async () => {
      const r = await nsRunAsync(h!.a, [process.execPath, '-e', OOPS_SEND, h!.ipB, '2004', '9', '4660', reportFile]);
      assert.deepEqual([r.code, r.signal], [0, null], r.stderr);
    };
    const ncSend = async (tag: string) => {
      const r = await nsRunAsync(h!.a, [process.execPath, '-e', NC_SEND, h!.ipB, '6666', tag, '1']);
      assert.deepEqual([r.code, r.signal], [0, null], r.stderr);
    };
    const ncLog = path.join(dir, 'netconsole', `${h.ipA}.log`);

    const first: Collector = await startCollector(h.lab, h.b, dir, ['--netconsole', '6666', '--oops', '2004']);
    const firstExit = exitOf(first.proc);
    const pid = first.proc.pid!; // `ip netns exec` execs the command: this is the collector's pid
    // Hold the collector inside its write: its temp file is a FIFO nobody opens for reading, so open() blocks there
    // until the process dies. Also left there: a temp file of a live process (this test's parent) and a stranger.
    const tmpName = `.oops-${h.ipA}-00001234-9.log.tmp-${pid}`;
    must('mkfifo', [path.join(dir, tmpName)]);
    const liveTmp = `.oops-10.9.9.9-00000001-1.log.tmp-${process.ppid}`;
    fs.writeFileSync(path.join(dir, liveTmp), 'a live writer');
    fs.writeFileSync(path.join(dir, '.notes.tmp-x'), 'not a collector temp file');
    await oopsSend();
    assert.ok(await waitFor(() => blockedInFifoOpen(pid), 5000), 'collector never blocked in its temp file');
    await ncSend('first');
    assert.ok(await waitFor(() => fs.existsSync(ncLog) && fs.readFileSync(ncLog, 'utf8').includes('line first 0 '), 5000));
    first.proc.kill('SIGKILL');
    assert.deepEqual(await firstExit, { code: null, signal: 'SIGKILL' });
    assert.ok(fs.existsSync(path.join(dir, tmpName)), 'the killed collector left its temp file');

    const second = await startCollector(h.lab, h.b, dir, ['--netconsole', '6666', '--oops', '2004']);
    const secondExit = exitOf(second.proc);
    const removed = second.events.find((e) => e.event === 'stale-temp-removed');
    assert.ok(removed, JSON.stringify(second.events));
    assert.equal(removed.files, 1);
    assert.ok(!fs.existsSync(path.join(dir, tmpName)));
    assert.ok(fs.existsSync(path.join(dir, liveTmp)), 'a running process keeps its temp file');
    assert.ok(fs.existsSync(path.join(dir, '.notes.tmp-x')));

    await oopsSend();
    const done = await second.wait((e) => e.event === 'dump-complete', 5000);
    assert.ok(done, JSON.stringify(second.events));
    assert.deepEqual(fs.readFileSync(done.file as string), report);
    await ncSend('second');
    assert.ok(await waitFor(() => fs.readFileSync(ncLog, 'utf8').includes('line second 0 '), 5000));
    second.proc.kill('SIGINT');
    assert.deepEqual(await secondExit, { code: 0, signal: null }, second.stderr());
    assert.equal(second.events.find((e) => e.event === 'summary')?.interrupted, 'SIGINT');
    assert.deepEqual(tempFiles(dir).sort(), ['.notes.tmp-x', liveTmp].sort());
  } finally {
    h?.lab.destroy();
    fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(inputs, { recursive: true, force: true });
  }
});

// ---------------------------------------------------------------------------------------------------------------
// netdump-server

interface NdServer {
  proc: ChildProcess;
  exit: Promise<Exit>;
  lines: () => string[];
  /** --json records so far. */
  records: () => Record<string, unknown>[];
  waitLine: (re: RegExp, ms?: number) => Promise<string | undefined>;
  stderr: () => string;
}

async function startNd(h: TwoHostLab, dir: string, json: boolean): Promise<NdServer> {
  const proc = h.lab.spawn(h.b, [process.execPath, RAWPOLL, 'netdump-server', '--dir', dir, '--bind', h.ipB, ...(json ? ['--json'] : [])]);
  const exit = exitOf(proc);
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (err += d));
  const lines = () => out.split('\n').slice(0, -1);
  const t0 = Date.now();
  while (!must('ip', ['netns', 'exec', h.b, 'ss', '-uln']).includes(`${h.ipB}:20023`)) {
    if (Date.now() - t0 > 10000 || proc.exitCode !== null) throw new Error(`netdump-server did not start: ${err}`);
    await sleep(50);
  }
  return {
    proc, exit, lines, stderr: () => err,
    records: () => lines().map((l) => JSON.parse(l)),
    waitLine: async (re, ms = 10000) => {
      await waitFor(() => lines().some((l) => re.test(l)), ms);
      return lines().find((l) => re.test(l));
    },
  };
}

/** A whole dump of `file`; the client gives up after 3 tries of a message (0.6 s) when the server stops answering. */
function ndClient(h: TwoHostLab, file: string) {
  return nsRunAsync(h.a, [process.execPath, '-e', ND_CLIENT, h.ipA, h.ipB, file, '-1', '3']);
}

/** Half a dump: the first `bytes` of `file`, then the client holds its session open until killed. */
function ndHalf(h: TwoHostLab, file: string, bytes: number) {
  const p = h.lab.spawn(h.a, [process.execPath, '-e', ND_CLIENT, h.ipA, h.ipB, file, String(bytes), '10']);
  let out = '';
  p.stdout!.on('data', (d) => (out += d));
  return { p, exit: exitOf(p), paused: () => waitFor(() => out.includes('paused'), 10000) };
}

test('netdump-server on a full disk: the write error on stdout and in --json, .incomplete kept, later dump complete', async () => {
  let h: TwoHostLab | null = null;
  const fsys = tmpfs('4m');
  const inputs = fs.mkdtempSync(path.join(os.tmpdir(), 'rawpoll-rf-in-'));
  try {
    h = twoHosts();
    const { dir } = fsys;
    const ip = h.ipA;
    const big = randomFile(inputs, 'big.core', 6_000_000);
    const small = randomFile(inputs, 'small.core', 1_000_000);

    // Text mode: a 6 MB dump into 4 MB.
    const s1 = await startNd(h, dir, false);
    const c1 = await ndClient(h, big);
    assert.deepEqual([c1.code, c1.signal], [1, null], `client gives up when the ACKs stop: ${c1.stderr}`);
    const line = await s1.waitLine(/unsuccessful/);
    assert.ok(line, s1.lines().join('\n'));
    const incomplete0 = path.join(dir, `vmcore.${ip}.0.incomplete`);
    assert.equal(line, `Dump from client ${ip} unsuccessful: ${line.match(/write error @ offset [0-9a-f]{8}/)?.[0]} in ${fs.realpathSync(dir)}/vmcore.${ip}.0.incomplete: ENOSPC: no space left on device, write (kept as ${fs.realpathSync(dir)}/vmcore.${ip}.0.incomplete)`);
    assert.ok(fs.existsSync(incomplete0) && !fs.existsSync(path.join(dir, `vmcore.${ip}.0`)));
    assert.match(lastLine(path.join(dir, `info.${ip}.0`)), /^Dump unsuccessful: write error @ offset [0-9a-f]{8} in .*: ENOSPC: no space left on device/);
    s1.proc.kill('SIGTERM');
    assert.deepEqual(await s1.exit, { code: 0, signal: null }, s1.stderr());
    assert.match(s1.lines().pop()!, /^Stopped by SIGTERM: 0 open dumps/);

    // --json, disk still full: even the info file's first line does not fit. No ACK, one record per herald tried.
    const s2 = await startNd(h, dir, true);
    const c2 = await ndClient(h, small);
    assert.deepEqual([c2.code, c2.signal], [1, null], c2.stderr);
    const refused = s2.records().filter((r) => r.event === 'write-error');
    assert.ok(refused.length >= 1, s2.lines().join('\n'));
    assert.equal(refused[0].client, ip);
    assert.match(String(refused[0].error), new RegExp(`can't create output files: ${fs.realpathSync(dir)}/info\\.${ip.replace(/\./g, '\\.')}\\.1: ENOSPC`));
    assert.deepEqual(fs.readdirSync(dir).sort(), [`info.${ip}.0`, `vmcore.${ip}.0.incomplete`], 'no empty or status-less files');

    // Free some space, not enough: the dump's own record carries the error.
    fs.truncateSync(incomplete0, 2_000_000);
    const c3 = await ndClient(h, big);
    assert.deepEqual([c3.code, c3.signal], [1, null], c3.stderr);
    assert.ok(await waitFor(() => s2.records().some((r) => r.event === 'dump'), 5000), s2.lines().join('\n'));
    const failed = s2.records().find((r) => r.event === 'dump')!;
    assert.equal(failed.status, 'error');
    assert.match(String(failed.error), /^write error @ offset [0-9a-f]{8} in .*: ENOSPC: no space left on device/);
    assert.equal(failed.vmcore, path.join(fs.realpathSync(dir), `vmcore.${ip}.1.incomplete`));

    // Space back (the admin removes the cut-short dumps): a later dump completes, byte-exact, under its final name.
    fs.rmSync(incomplete0);
    fs.rmSync(failed.vmcore as string);
    const c4 = await ndClient(h, small);
    assert.deepEqual([c4.code, c4.signal], [0, null], c4.stderr);
    assert.ok(await waitFor(() => s2.records().filter((r) => r.event === 'dump').length === 2, 5000));
    const ok = s2.records().filter((r) => r.event === 'dump')[1];
    assert.equal(ok.status, 'complete');
    assert.equal(ok.vmcore, path.join(fs.realpathSync(dir), `vmcore.${ip}.2`));
    assert.equal(sha256(ok.vmcore as string), sha256(small));
    assert.equal(fs.readlinkSync(path.join(dir, `vmcore.${ip}.last`)), `vmcore.${ip}.2`);
    assert.equal(lastLine(path.join(dir, `info.${ip}.2`)), 'Dump complete');
    for (const n of [0, 1, 2]) assert.match(lastLine(path.join(dir, `info.${ip}.${n}`)), STATUS);
    s2.proc.kill('SIGINT');
    assert.deepEqual(await s2.exit, { code: 0, signal: null }, s2.stderr());
    assert.deepEqual(s2.records().pop(), { event: 'stop', interrupted: 'SIGINT', open_sessions: 0 });
    assert.equal(s1.stderr() + s2.stderr(), '');
  } finally {
    h?.lab.destroy();
    await fsys.remove();
    fs.rmSync(inputs, { recursive: true, force: true });
  }
});

test('netdump-server killed mid-dump and restarted: the cut-short dump stays .incomplete with a status line', async () => {
  let h: TwoHostLab | null = null;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rawpoll-rf-nd-'));
  const inputs = fs.mkdtempSync(path.join(os.tmpdir(), 'rawpoll-rf-in-'));
  try {
    h = twoHosts();
    const ip = h.ipA;
    const core = randomFile(inputs, 'core', 3_000_000);
    const half = 1_500_000;
    const halfClient = () => ndHalf(h!, core, half);
    const sent = fs.readFileSync(core);

    // Killed: half a dump ACKed, then SIGKILL.
    const s1 = await startNd(h, dir, true);
    const k1 = halfClient();
    assert.ok(await k1.paused(), 'client sent half a dump');
    s1.proc.kill('SIGKILL');
    assert.deepEqual(await s1.exit, { code: null, signal: 'SIGKILL' });
    k1.p.kill('SIGTERM');
    await k1.exit;
    const cut = path.join(dir, `vmcore.${ip}.0.incomplete`);
    assert.ok(!fs.existsSync(path.join(dir, `vmcore.${ip}.0`)), 'a cut-short dump never has the complete name');
    const cutBytes = fs.readFileSync(cut);
    // What the server had written: a prefix of what was sent (up to one 128 KiB buffer was still in memory).
    assert.ok(cutBytes.length > half - 128 * 1024 && cutBytes.length <= half, `${cutBytes.length} bytes`);
    assert.deepEqual(cutBytes, sent.subarray(0, cutBytes.length));
    assert.equal(lastLine(path.join(dir, `info.${ip}.0`)), 'Dump started');
    assert.ok(!fs.existsSync(path.join(dir, `vmcore.${ip}.last`)));

    // Restarted (text mode): a fresh dump gets the next index and completes byte-exact.
    const s2 = await startNd(h, dir, false);
    const c2 = await ndClient(h, core);
    assert.deepEqual([c2.code, c2.signal], [0, null], c2.stderr);
    assert.ok(await s2.waitLine(/^Completed dump from client/), s2.lines().join('\n'));
    assert.equal(sha256(path.join(dir, `vmcore.${ip}.1`)), sha256(core));
    assert.equal(fs.readlinkSync(path.join(dir, `vmcore.${ip}.last`)), `vmcore.${ip}.1`);
    assert.equal(fs.readlinkSync(path.join(dir, `info.${ip}.last`)), `info.${ip}.1`);
    assert.equal(lastLine(path.join(dir, `info.${ip}.1`)), 'Dump complete');
    assert.match(fs.readFileSync(path.join(dir, `info.${ip}.1`), 'utf8'), /^Dump from .*\n[^]*Hostname: faulthost\n[^]*Dump complete\n$/);
    assert.deepEqual(fs.readFileSync(cut), cutBytes, 'the earlier cut-short dump is left alone');

    // Stopped (SIGINT) with a dump open: "server stopped", not "client timed out"; everything ACKed is on disk.
    const k3 = halfClient();
    assert.ok(await k3.paused());
    s2.proc.kill('SIGINT');
    assert.deepEqual(await s2.exit, { code: 0, signal: null }, s2.stderr());
    k3.p.kill('SIGTERM');
    await k3.exit;
    const kept = path.join(fs.realpathSync(dir), `vmcore.${ip}.2.incomplete`);
    const tail = s2.lines().slice(-2);
    assert.deepEqual(tail, [
      `Dump from client ${ip} incomplete: server stopped (kept as ${kept})`,
      'Stopped by SIGINT: 1 open dump left as "Dump incomplete: server stopped"',
    ]);
    assert.deepEqual(fs.readFileSync(kept), sent.subarray(0, half));
    assert.equal(lastLine(path.join(dir, `info.${ip}.2`)), 'Dump incomplete: server stopped');
    assert.ok(!fs.existsSync(path.join(dir, `vmcore.${ip}.2`)));
    assert.equal(s2.stderr(), '');
    const names = fs.readdirSync(dir).sort();
    assert.deepEqual(names, [`info.${ip}.0`, `info.${ip}.1`, `info.${ip}.2`, `info.${ip}.last`,
      `vmcore.${ip}.0.incomplete`, `vmcore.${ip}.1`, `vmcore.${ip}.2.incomplete`, `vmcore.${ip}.last`]);
  } finally {
    h?.lab.destroy();
    fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(inputs, { recursive: true, force: true });
  }
});
