import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import dgram from 'node:dgram';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SeqnoWindow, sanitizeComponent, sanitizeHeraldPath } from '../../src/rx/netdumpd.js';

test('herald paths reduce to safe relative components', () => {
  assert.deepEqual(sanitizeHeraldPath(null), []);
  assert.deepEqual(sanitizeHeraldPath(''), []);
  assert.deepEqual(sanitizeHeraldPath('host7/'), ['host7']);
  assert.deepEqual(sanitizeHeraldPath('crash/host7'), ['crash', 'host7']);
  assert.deepEqual(sanitizeHeraldPath('../../etc'), ['etc']);
  assert.deepEqual(sanitizeHeraldPath('/etc/passwd'), ['etc', 'passwd']);
  assert.deepEqual(sanitizeHeraldPath('a/./b/../c'), ['a', 'b', 'c']);
  assert.deepEqual(sanitizeHeraldPath('..\\..\\win'), ['win']);
  assert.deepEqual(sanitizeHeraldPath('sp ace/$(rm)'), ['sp_ace', '__rm_']);
  assert.equal(sanitizeHeraldPath('a/'.repeat(40)).length, 16);
});

test('file name components never become "." or ".." or contain a separator', () => {
  assert.equal(sanitizeComponent('10.0.0.1'), '10.0.0.1');
  assert.equal(sanitizeComponent('..'), '_');
  assert.equal(sanitizeComponent('.'), '_');
  assert.equal(sanitizeComponent(''), '_');
  assert.equal(sanitizeComponent('a/b'), 'a_b');
  assert.equal(sanitizeComponent('x\0y'), 'x_y');
});

// ---------------------------------------------------------------------------------------------------------------
// Hostile datagrams against `rawpoll netdump-server` (a child process, so a death by signal is seen), on loopback
// addresses 127.78.x.y with port 20024 as a FreeBSD client. Datagrams built by hand from PROTOCOLS.md §4: header
// type u32, seqno u32, offset u64, len u32, aux2 u32, big-endian; ACK = the 4-byte seqno.

const NET = `127.78.${process.pid % 250}`;
let hostN = 1;
const RAWPOLL = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'bin', 'rawpoll.js');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Polls `f` every 20 ms until it holds or `ms` pass; whether it held. */
async function waitFor(f: () => boolean, ms = 5000): Promise<boolean> {
  for (const t0 = Date.now(); !f(); await sleep(20)) if (Date.now() - t0 > ms) return false;
  return true;
}

function nd(type: number, seqno: number, offset: bigint, data: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(24 + data.length);
  b.writeUInt32BE(type, 0);
  b.writeUInt32BE(seqno, 4);
  b.writeBigUInt64BE(offset, 8);
  b.writeUInt32BE(data.length, 16);
  data.copy(b, 24);
  return b;
}

interface Srv { port: number; pid: number; lines: () => string[]; stop: () => Promise<{ code: number | null; signal: string | null }>; stderr: () => string }

async function startServer(dir: string, extra: string[] = []): Promise<Srv> {
  // --json prints no "Waiting for clients" line: give it a port that was free a moment ago and watch for its socket.
  const json = extra.includes('--json');
  let fixed = 0;
  if (json) {
    const probe = dgram.createSocket('udp4');
    await new Promise<void>((r) => probe.bind(0, '127.0.0.1', () => r()));
    fixed = probe.address().port;
    await new Promise<void>((r) => probe.close(() => r()));
  }
  const p = spawn(process.execPath, [RAWPOLL, 'netdump-server', '--dir', dir, '--bind', '127.0.0.1', '--port', String(fixed), '--timeout', '2', ...extra],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  p.stdout.on('data', (d) => (out += d));
  p.stderr.on('data', (d) => (err += d));
  const exit = new Promise<{ code: number | null; signal: string | null }>((r) => p.once('exit', (code, signal) => r({ code, signal })));
  const listening = () => {
    if (!json) return Number(out.match(/Waiting for clients on 127\.0\.0\.1:(\d+)/)?.[1] ?? 0);
    return spawnSync('ss', ['-ulnH', 'sport', '=', `:${fixed}`], { encoding: 'utf8' }).stdout.includes(`127.0.0.1:${fixed}`) ? fixed : 0;
  };
  const t0 = Date.now();
  let port: number;
  while ((port = listening()) === 0) {
    if (Date.now() - t0 > 10000 || p.exitCode !== null) {
      p.kill('SIGKILL'); // a server left running would keep this test file from ever ending
      throw new Error(`netdump-server did not start: ${err}`);
    }
    await sleep(20);
  }
  return {
    port, pid: p.pid!, lines: () => out.split('\n').slice(0, -1), stderr: () => err,
    stop: async () => { p.kill('SIGTERM'); return exit; },
  };
}

class Client {
  sock = dgram.createSocket('udp4');
  acks: { seqno: number; port: number }[] = [];
  private waiters: (() => void)[] = [];
  constructor(readonly ip: string, readonly srv: Srv) {}
  async open(port = 20024): Promise<this> {
    this.sock.on('message', (m, r) => {
      if (m.length === 4) this.acks.push({ seqno: m.readUInt32BE(0), port: r.port });
      this.waiters.splice(0).forEach((w) => w());
    });
    await new Promise<void>((r) => this.sock.bind(port, this.ip, () => r()));
    return this;
  }
  get port(): number { return this.sock.address().port; }
  send(m: Buffer, port: number): Promise<void> {
    return new Promise((r, j) => this.sock.send(m, port, '127.0.0.1', (e) => (e ? j(e) : r())));
  }
  /** Sends up to 5 times, 200 ms apart, until an ACK of seqno arrives from `from` (any port if 0); the ACK or null. */
  async exchange(m: Buffer, port: number, seqno: number, from = 0): Promise<{ seqno: number; port: number } | null> {
    const hit = () => this.acks.find((a) => a.seqno === seqno && (from === 0 || a.port === from)) ?? null;
    for (let t = 0; t < 5 && !hit(); t++) {
      await this.send(m, port);
      // Woken by each datagram, so data follows an ACK at once, as a real client's does.
      await new Promise<void>((res) => {
        const timer = setTimeout(res, 200);
        const w = () => { if (hit()) { clearTimeout(timer); res(); } else this.waiters.push(w); };
        this.waiters.push(w);
      });
    }
    return hit();
  }
  close(): Promise<void> { return new Promise((r) => this.sock.close(() => r())); }
}

function kdh512(len: number): Buffer {
  const b = Buffer.alloc(512);
  b.write('FreeBSD Kernel Dump', 0);
  b.write('amd64', 20);
  b.writeUInt32BE(4, 32);
  b.writeBigUInt64BE(BigInt(len), 40);
  b.write('unithost', 64);
  b.writeBigUInt64BE(BigInt(len), 496);
  let p = 0;
  for (let i = 0; i < 508; i += 4) p ^= b.readUInt32BE(i);
  b.writeUInt32BE(p >>> 0, 508);
  return b;
}

/** Herald (with `herald` as path), the data in 1000-byte VMCOREs (`between(seq)` runs before each), KDH, FINISHED. */
async function fullDump(c: Client, data: Buffer, herald = '', between?: (seq: number, port: number) => Promise<void>): Promise<number> {
  const h = await c.exchange(nd(1, 1, 0n, herald ? Buffer.from(herald + '\0') : Buffer.alloc(0)), c.srv.port, 1);
  assert.ok(h, 'herald ACKed');
  let seq = 2;
  for (let off = 0; off < data.length; off += 1000, seq++) {
    await between?.(seq, h.port);
    assert.ok(await c.exchange(nd(3, seq, BigInt(off), data.subarray(off, off + 1000)), h.port, seq, h.port), `VMCORE seqno ${seq} ACKed`);
  }
  assert.ok(await c.exchange(nd(4, seq, 0n, kdh512(data.length)), h.port, seq, h.port), 'KDH ACKed');
  seq++;
  assert.ok(await c.exchange(nd(2, seq, 0n), h.port, seq, h.port), 'FINISHED ACKed');
  return h.port;
}

async function noAck(c: Client, m: Buffer, port: number, seqno: number): Promise<boolean> {
  const before = c.acks.length;
  await c.send(m, port);
  await sleep(300);
  return !c.acks.slice(before).some((a) => a.seqno === seqno);
}

function withDir(fn: (dir: string) => Promise<void>): () => Promise<void> {
  return async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rawpoll-ndhostile-'));
    try { await fn(fs.realpathSync(dir)); } finally { fs.rmSync(dir, { recursive: true, force: true }); }
  };
}

test('VMCORE offsets are u64: beyond --max-dump-size is refused (no ACK, nothing written, one log line), up to it accepted', withDir(async (dir) => {
  const srv = await startServer(dir, ['--max-dump-size', '1M', '--timeout', '10']); // refused datagrams keep no session alive
  const c = await new Client(`${NET}.${hostN++}`, srv).open();
  try {
    const h = await c.exchange(nd(1, 1, 0n), srv.port, 1);
    assert.ok(h);
    const head = Buffer.alloc(100, 0x41);
    assert.ok(await c.exchange(nd(3, 2, 0n, head), h.port, 2, h.port));
    // The reproducer: 2^63 once became Number 9223372036854775808, was ACKed and written at position 0.
    const hostile = Buffer.concat([Buffer.from('00000003000003eb80000000000000000000006400000000', 'hex'), Buffer.alloc(100, 0x58)]);
    assert.ok(await noAck(c, hostile, h.port, 1003), 'offset 2^63 not ACKed');
    const far = [2n ** 64n - 1n, 2n ** 63n + 1n, 2n ** 53n + 1n, 2n ** 53n, 2n ** 53n - 1n, 2n ** 44n, 1024n * 1024n - 99n];
    let seq = 2000;
    for (const off of far) assert.ok(await noAck(c, nd(3, seq++, off, Buffer.alloc(100, 0x58)), h.port, seq - 1), `offset ${off} not ACKed`);
    // EKCD_KEY is written at its offset too.
    assert.ok(await noAck(c, nd(5, seq++, 2n ** 63n, Buffer.alloc(16, 0x4b)), h.port, seq - 1), 'EKCD_KEY at 2^63 not ACKed');
    // Exactly up to the limit is fine: offset + len = 1 MiB.
    assert.ok(await c.exchange(nd(3, 3, 1024n * 1024n - 100n, Buffer.alloc(100, 0x5a)), h.port, 3, h.port), 'data ending at the limit ACKed');
    assert.ok(await c.exchange(nd(4, 4, 0n, kdh512(1024 * 1024)), h.port, 4, h.port));
    assert.ok(await c.exchange(nd(2, 5, 0n), h.port, 5, h.port));
    const core = fs.readFileSync(path.join(dir, `vmcore.${c.ip}.0`));
    assert.equal(core.length, 1024 * 1024);
    assert.deepEqual(core.subarray(0, 100), head, 'the start of the dump is intact');
    assert.ok(!core.includes(0x58), 'no refused byte anywhere');
    assert.ok(!fs.existsSync(path.join(dir, `key.${c.ip}.0`)), 'no key file for a refused key');
    const refusing = srv.lines().filter((l) => l.includes('refusing'));
    // The key is refused by its own bound (NETDUMP_EKCD_KEY_MAX) before --max-dump-size is asked.
    assert.deepEqual(refusing, [
      `client ${c.ip}: refusing VMCORE seqno 1003 at offset 0x8000000000000000 + 100: beyond --max-dump-size 1048576 (no ACK; later ones only counted)`,
      `client ${c.ip}: refusing EKCD_KEY seqno 2007 at offset 0x8000000000000000 + 16: a key ends within 65536 bytes (no ACK) (further ones only counted as keyBeyondLimit)`,
    ]);
    // The log line leaves the server just after the FINISHED ACK.
    assert.ok(await waitFor(() => srv.lines().some((l) => l === `Completed dump from client ${c.ip}: 200 bytes in 2 messages (0 duplicates, 8 refused beyond --max-dump-size)`)), srv.lines().join('\n'));
  } finally {
    await c.close();
    assert.deepEqual(await srv.stop(), { code: 0, signal: null }, srv.stderr());
  }
}));

test('a spoofed VMCORE at offset 2^44..2^53 mid-dump is refused and the real session goes on, byte-exact', withDir(async (dir) => {
  const srv = await startServer(dir); // default --max-dump-size 64G
  const c = await new Client(`${NET}.${hostN++}`, srv).open();
  // The spoofer shares the client's address and port (here: its socket), and guesses the next seqno.
  const data = crypto.randomBytes(20_000);
  try {
    await fullDump(c, data, '', async (seq, port) => {
      if (seq === 5) assert.ok(await noAck(c, nd(3, seq, 2n ** 44n + 12345n, Buffer.alloc(1000, 0x58)), port, seq));
      if (seq === 9) assert.ok(await noAck(c, nd(3, seq, 2n ** 52n, Buffer.alloc(1000, 0x58)), port, seq));
    });
    assert.deepEqual(fs.readFileSync(path.join(dir, `vmcore.${c.ip}.0`)), data);
    assert.equal(fs.readFileSync(path.join(dir, `info.${c.ip}.0`), 'utf8').trimEnd().split('\n').pop(), 'Dump complete');
    assert.equal(srv.lines().filter((l) => l.includes('refusing')).length, 1, 'one log line per session');
    assert.ok(!srv.lines().some((l) => /unsuccessful|incomplete:/.test(l)), srv.lines().join('\n'));
  } finally {
    await c.close();
    assert.deepEqual(await srv.stop(), { code: 0, signal: null }, srv.stderr());
  }
}));

test('--max-dump-size: bad values are refused naming the value, exit 2', () => {
  for (const v of ['0', '-1', '1X', '8P', '9999999T', 'abc']) {
    const r = spawnSync(process.execPath, [RAWPOLL, 'netdump-server', '--dir', os.tmpdir(), '--port', '0', '--max-dump-size', v], { encoding: 'utf8' });
    assert.deepEqual([r.status, r.signal], [2, null], `${v}: ${r.stderr}`);
    assert.match(r.stderr, new RegExp(`bad --max-dump-size '${v}': expected bytes 1-4503599627370496`));
  }
});

test('session capture: a spoofed herald naming another path (or from another port) does not take the real client\'s session', withDir(async (dir) => {
  const srv = await startServer(dir);
  const ip = `${NET}.${hostN++}`;
  const c = new Client(ip, srv);
  try {
    // Before the client starts, a herald "from" it (same address, port 20024) names the attacker's directory.
    const spoof = await new Client(ip, srv).open();
    assert.ok(await spoof.exchange(nd(1, 1, 0n, Buffer.from('evil\0')), srv.port, 1));
    await spoof.close();
    // …and one from another port of that address, naming the real client's path.
    const spoof2 = await new Client(ip, srv).open(0);
    await spoof2.send(nd(1, 1, 0n, Buffer.from('crash\0')), srv.port);
    await sleep(100);
    await spoof2.close();
    await c.open();
    const data = crypto.randomBytes(10_000);
    // Midway through the real dump, more heralds from its address with other paths: the dump goes on.
    await fullDump(c, data, 'crash', async (seq) => {
      if (seq === 4) await c.send(nd(1, 1, 0n, Buffer.from('evil2\0')), srv.port);
      if (seq === 6) await c.send(nd(1, 1, 0n, Buffer.alloc(0)), srv.port);
    });
    // The spoofed herald from another port took crash/…0 only while it lasted: its ACK came back port-unreachable
    // (nobody on 20024 then), so it ended leaving nothing, and the real dump is …0, where its herald said.
    assert.equal(fs.readlinkSync(path.join(dir, 'crash', `vmcore.${ip}.last`)), `vmcore.${ip}.0`);
    assert.deepEqual(fs.readFileSync(path.join(dir, 'crash', `vmcore.${ip}.0`)), data, 'the dump is where its herald said');
    assert.deepEqual(fs.readdirSync(path.join(dir, 'crash')).sort(),
      [`info.${ip}.0`, `info.${ip}.last`, `vmcore.${ip}.0`, `vmcore.${ip}.last`]);
    // The others end after --herald-timeout (2 s here) without data, taking their files and directories with them.
    for (const d of [path.join(dir, 'evil'), path.join(dir, 'evil2'), dir].filter((x) => fs.existsSync(x))) {
      for (const n of fs.readdirSync(d).filter((x) => x.startsWith('vmcore.'))) {
        assert.equal(fs.statSync(path.join(d, n)).size, 0, `${d}/${n}: the spoofed sessions got no data`);
      }
    }
    await waitFor(() => srv.lines().some((l) => l.startsWith('Completed dump')));
    const done = srv.lines().filter((l) => l.startsWith('Completed dump'));
    assert.deepEqual(done, [`Completed dump from client ${ip}: 10000 bytes in 10 messages (0 duplicates)`]);
  } finally {
    try { await c.close(); } catch { /* never opened */ }
    assert.deepEqual(await srv.stop(), { code: 0, signal: null }, srv.stderr());
  }
}));

test('a herald retransmitted (same address, port and path) is ACKed again from the same session port', withDir(async (dir) => {
  const srv = await startServer(dir);
  const c = await new Client(`${NET}.${hostN++}`, srv).open();
  try {
    const herald = nd(1, 1, 0n, Buffer.from('x\0'));
    const a = await c.exchange(herald, srv.port, 1);
    assert.ok(a);
    await c.send(herald, srv.port);
    await sleep(200);
    assert.deepEqual(c.acks.map((x) => x.port), [a.port, a.port]);
    assert.deepEqual(fs.readdirSync(path.join(dir, 'x')).sort(), [`info.${c.ip}.0`, `vmcore.${c.ip}.0.incomplete`]);
  } finally {
    await c.close();
    assert.deepEqual(await srv.stop(), { code: 0, signal: null }, srv.stderr());
  }
}));

// ---------------------------------------------------------------------------------------------------------------
// Budgets (issue 9): half-open sessions, --max-sessions, indexes, the seqno window, the key file.

/** Every path under `dir` (files, links and directories), relative, sorted; the server may remove some meanwhile. */
function tree(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    let names: string[];
    try { names = fs.readdirSync(d); } catch { return; }
    for (const n of names) {
      const p = path.join(d, n);
      out.push(path.relative(dir, p));
      if (fs.lstatSync(p, { throwIfNoEntry: false })?.isDirectory()) walk(p);
    }
  };
  walk(dir);
  return out.sort();
}

/** The fds of process `pid`: how many, and how many of them are sockets. */
function fdsOf(pid: number): { all: number; sockets: number } {
  const names = fs.readdirSync(`/proc/${pid}/fd`);
  let sockets = 0;
  for (const n of names) {
    try { if (fs.readlinkSync(`/proc/${pid}/fd/${n}`).startsWith('socket:')) sockets++; } catch { /* closed meanwhile */ }
  }
  return { all: names.length, sockets };
}

/** The last "Drops since start: a N, b M" line as {a: N, b: M} ({} if none). */
function dropsOf(lines: string[]): Record<string, number> {
  const l = lines.filter((x) => x.startsWith('Drops since start: ')).pop();
  if (!l) return {};
  return Object.fromEntries(l.slice('Drops since start: '.length).split(', ').map((kv) => {
    const [k, v] = kv.split(' ');
    return [k, Number(v)];
  }));
}

const NET2 = `127.79.${process.pid % 250}`;

test('a half-open session (herald, no data) ends after --herald-timeout and leaves no files nor directories', withDir(async (dir) => {
  const srv = await startServer(dir, ['--herald-timeout', '1']);
  const c = await new Client(`${NET}.${hostN++}`, srv).open(); // on 20024: takes the ACK, sends nothing more
  try {
    assert.ok(await c.exchange(nd(1, 1, 0n, Buffer.from('a/b/c\0')), srv.port, 1));
    assert.deepEqual(tree(dir), ['a', 'a/b', 'a/b/c', `a/b/c/info.${c.ip}.0`, `a/b/c/vmcore.${c.ip}.0.incomplete`]);
    const t0 = Date.now();
    assert.ok(await waitFor(() => tree(dir).length === 0, 3000), tree(dir).join(' '));
    assert.ok(Date.now() - t0 >= 700, 'not before --herald-timeout');
    assert.deepEqual(srv.lines().filter((l) => l.includes('no data')),
      [`Session from ${c.ip}:20024 got no data within --herald-timeout 1 s; closed, its files removed (further ones only counted as heraldNoData)`]);
    // Its index was never used up: a real dump from the same client is .0.
    c.acks.length = 0;
    await fullDump(c, Buffer.from('real'), 'a/b/c');
    assert.equal(fs.readFileSync(path.join(dir, 'a', 'b', 'c', `vmcore.${c.ip}.0`), 'utf8'), 'real');
  } finally {
    await c.close();
    assert.deepEqual(await srv.stop(), { code: 0, signal: null }, srv.stderr());
  }
  assert.deepEqual(dropsOf(srv.lines()), { heraldNoData: 1 });
  assert.match(srv.lines().pop()!, /^Stopped by SIGTERM: 0 open dumps/);
}));

test('a herald flood from 600 sources: sessions and fds stay within --max-sessions, no files stay, real dumps during and after are byte-exact', withDir(async (dir) => {
  const MAX = 32;
  const srv = await startServer(dir, ['--max-sessions', String(MAX), '--herald-timeout', '1', '--timeout', '5', '--stats-interval', '1']);
  const base = fdsOf(srv.pid);
  const socks: dgram.Socket[] = [];
  const bound = (ip: string, port: number) => new Promise<dgram.Socket>((r) => {
    const s = dgram.createSocket('udp4');
    s.on('message', () => {});
    s.on('error', () => {});
    socks.push(s);
    s.bind(port, ip, () => r(s));
  });
  // Sources: 150 addresses whose 20024 swallows the ACK (so only --herald-timeout or a newer herald ends them),
  // 150 whose ACK comes back port-unreachable, and 300 ports of one address, each naming a directory evil/<k>.
  const senders: { s: dgram.Socket; herald: Buffer }[] = [];
  for (let i = 1; i <= 150; i++) {
    await bound(`${NET2}.${i}`, 20024);
    senders.push({ s: await bound(`${NET2}.${i}`, 0), herald: nd(1, 7, 0n) });
  }
  for (let i = 151; i <= 250; i++) senders.push({ s: await bound(`${NET2}.${i}`, 0), herald: nd(1, 7, 0n) });
  for (let i = 1; i <= 50; i++) senders.push({ s: await bound(`${NET}.250`, 0), herald: nd(1, 7, 0n) }); // 50 more unreachable
  for (let k = 0; k < 300; k++) senders.push({ s: await bound(`${NET}.251`, 0), herald: nd(1, 7, 0n, Buffer.from(`evil/${k}\0`)) });
  await bound(`${NET}.251`, 20024);
  for (let i = senders.length - 1; i > 0; i--) { const j = (i * 7919) % (i + 1); [senders[i], senders[j]] = [senders[j], senders[i]]; }
  let peak = base;
  const sample = setInterval(() => {
    const f = fdsOf(srv.pid);
    peak = { all: Math.max(peak.all, f.all), sockets: Math.max(peak.sockets, f.sockets) };
  }, 5);
  const real = await new Client(`${NET}.${hostN++}`, srv).open();
  const during = crypto.randomBytes(50_000);
  const after = crypto.randomBytes(30_000);
  try {
    // ~200 heralds/s, in rounds of 4: less than MAX per 50 ms, so each finds a session old enough to give way (a
    // server falling behind under load may still refuse some: then they count as maxSessions).
    let realDone: Promise<unknown> | null = null;
    for (let i = 0; i < senders.length; i++) {
      const { s, herald } = senders[i];
      await new Promise<void>((r) => s.send(herald, srv.port, '127.0.0.1', () => r()));
      if (i === 100) realDone = fullDump(real, during).catch((e: Error) => e); // awaited below, after the flood
      if (i % 4 === 3) await sleep(20);
    }
    const failed = await realDone;
    assert.ok(!(failed instanceof Error), `${failed}\n${srv.lines().join('\n')}`);
    assert.deepEqual(fs.readFileSync(path.join(dir, `vmcore.${real.ip}.0`)), during, 'the dump during the flood');
    // After it: every spoofed session ends, its files and directories go; the real dump stays.
    const mine = [`info.${real.ip}.0`, `info.${real.ip}.last`, `vmcore.${real.ip}.0`, `vmcore.${real.ip}.last`];
    assert.ok(await waitFor(() => tree(dir).join() === mine.join(), 4000), tree(dir).slice(0, 20).join(' '));
    real.acks.length = 0;
    await fullDump(real, after);
    assert.deepEqual(fs.readFileSync(path.join(dir, `vmcore.${real.ip}.1`)), after, 'the dump after the flood');
    clearInterval(sample);
    // A session: its socket, info and vmcore; plus the two complete dumps' sockets lingering to re-ACK FINISHED.
    assert.ok(peak.sockets <= base.sockets + MAX + 2, `peak ${JSON.stringify(peak)}, base ${JSON.stringify(base)}`);
    assert.ok(peak.all <= base.all + 3 * MAX + 2, `peak ${JSON.stringify(peak)}, base ${JSON.stringify(base)}`);
    assert.ok(await waitFor(() => fdsOf(srv.pid).all <= base.all, 6000), `fds ${JSON.stringify(fdsOf(srv.pid))}, base ${JSON.stringify(base)}`);
  } finally {
    clearInterval(sample);
    await real.close();
    for (const s of socks) s.close();
    assert.deepEqual(await srv.stop(), { code: 0, signal: null }, srv.stderr());
  }
  const d = dropsOf(srv.lines());
  // Each spoofed herald had a session that ended without data, or was refused: the 300 from one address beyond its
  // 4 sessions within 50 ms (sessionLimit), any beyond --max-sessions (maxSessions; a refused retry of the real
  // client's herald would count there too).
  const ended = (d.heraldDisplaced ?? 0) + (d.heraldNoData ?? 0) + (d.heraldUnreachable ?? 0);
  if (d.maxSessions) assert.ok(ended + d.sessionLimit < 600 && ended + d.sessionLimit + d.maxSessions >= 600, JSON.stringify(d));
  else assert.equal(ended + d.sessionLimit, 600, JSON.stringify(d));
  assert.ok(d.heraldDisplaced > 0 && d.heraldNoData > 0 && d.heraldUnreachable > 0 && d.sessionLimit > 0, JSON.stringify(d));
  // One line per reason, then only counts (a "Drops since start" line at most every --stats-interval, and at stop).
  const lines = srv.lines();
  for (const re of [/gave way/, /got no data/, /came back/]) assert.equal(lines.filter((l) => re.test(l)).length, 1, re.source);
  assert.ok(lines.filter((l) => l.startsWith('Drops since start')).length <= 8, lines.join('\n'));
  // Bytes are exact; a datagram whose ACK was slow (a loaded machine) is sent again and counted as a duplicate.
  const done = lines.filter((l) => l.startsWith('Completed dump')).map((l) => l.replace(/ in \d+ messages \(\d+ duplicates\)$/, ''));
  assert.deepEqual(done, [`Completed dump from client ${real.ip}: 50000 bytes`, `Completed dump from client ${real.ip}: 30000 bytes`]);
}));

test('--max-sessions: when every session has data a herald gets no ACK (counted; --json drops record), and is ACKed once one ends', withDir(async (dir) => {
  const srv = await startServer(dir, ['--max-sessions', '2', '--json']);
  const [a, b, z] = [0, 1, 2].map(() => new Client(`${NET}.${hostN++}`, srv));
  for (const c of [a, b, z]) await c.open();
  try {
    const open = async (c: Client) => {
      const h = (await c.exchange(nd(1, 1, 0n), srv.port, 1))!;
      assert.ok(h);
      assert.ok(await c.exchange(nd(3, 2, 0n, Buffer.from('x')), h.port, 2, h.port));
      return h.port;
    };
    const pa = await open(a);
    const pb = await open(b);
    assert.ok(await noAck(z, nd(1, 1, 0n), srv.port, 1), 'refused: both sessions have data');
    assert.ok(await noAck(z, nd(1, 1, 0n), srv.port, 1));
    for (const [c, p] of [[a, pa], [b, pb]] as const) {
      assert.ok(await c.exchange(nd(4, 3, 0n, kdh512(1)), p, 3, p));
      assert.ok(await c.exchange(nd(2, 4, 0n), p, 4, p));
    }
    await fullDump(z, Buffer.from('z'));
    assert.equal(fs.readFileSync(path.join(dir, `vmcore.${z.ip}.0`), 'utf8'), 'z');
  } finally {
    for (const c of [a, b, z]) await c.close();
    assert.deepEqual(await srv.stop(), { code: 0, signal: null }, srv.stderr());
  }
  const recs = srv.lines().map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.deepEqual(recs.slice(-2), [
    { event: 'drops', drops: { runt: 0, length: 0, oversize: 0, notHerald: 0, unknownType: 0, beyondMaxDumpSize: 0, keyBeyondLimit: 0,
      sessionLimit: 0, maxSessions: 2, heraldDuringDump: 0, heraldNoData: 0, heraldDisplaced: 0, heraldUnreachable: 0 } },
    { event: 'stop', interrupted: 'SIGTERM', open_sessions: 0 },
  ]);
  assert.equal(recs.filter((r) => r.event === 'dump' && r.status === 'complete').length, 3);
}));

test('4 sessions from one address: one without data gives way to a fifth herald; with all 4 receiving data, one gets no ACK (sessionLimit)', withDir(async (dir) => {
  const srv = await startServer(dir);
  const ip = `${NET}.${hostN++}`;
  // Every session's ACKs go to ip:20024 and it takes data only from there: `c` is that end; the heralds come from
  // other ports of the same address, numbered so that each ACK names its herald.
  const c = await new Client(ip, srv).open();
  const others = await Promise.all([0, 1, 2, 3, 4, 5].map(() => new Client(ip, srv).open(0)));
  const herald = async (k: number): Promise<number | null> => {
    await others[k].send(nd(1, 100 + k, 0n), srv.port);
    await waitFor(() => c.acks.some((a) => a.seqno === 100 + k), 300);
    return c.acks.find((a) => a.seqno === 100 + k)?.port ?? null;
  };
  const data = async (k: number, port: number) => assert.ok(await c.exchange(nd(3, 200 + k, 0n, Buffer.from('d')), port, 200 + k, port));
  try {
    for (let k = 0; k < 3; k++) await data(k, (await herald(k))!);
    const idle = (await herald(3))!;
    assert.ok(idle);
    await sleep(60); // only a session heralded 50 ms ago or more gives way
    const p4 = await herald(4);
    assert.ok(p4, 'the session without data gave way');
    await data(4, p4);
    assert.ok(await noAck(c, nd(3, 203, 0n, Buffer.from('d')), idle, 203), 'the one that gave way is closed');
    assert.equal(await herald(5), null, '4 sessions with data: no ACK');
  } finally {
    await c.close();
    for (const o of others) await o.close();
    assert.deepEqual(await srv.stop(), { code: 0, signal: null }, srv.stderr());
  }
  const d = dropsOf(srv.lines());
  assert.equal(d.sessionLimit, 1, JSON.stringify(d));
  assert.equal(d.heraldDisplaced, 1, JSON.stringify(d));
  assert.equal(srv.lines().filter((l) => l.includes('in progress')).length, 1);
}));

test('1100 spoofed heralds from one address use up no index: its real dump is .0; the lowest free index is taken, past 1024', withDir(async (dir) => {
  const srv = await startServer(dir, ['--herald-timeout', '1']);
  const ip = `${NET}.${hostN++}`;
  const c = await new Client(ip, srv).open(); // takes the ACKs, so the sessions end by giving way or by timeout
  const spoof: dgram.Socket[] = [];
  try {
    for (let i = 0; i < 1100; i++) {
      const s = dgram.createSocket('udp4');
      spoof.push(s);
      await new Promise<void>((r) => s.bind(0, ip, () => r()));
      await new Promise<void>((r) => s.send(nd(1, 9, 0n), srv.port, '127.0.0.1', () => r()));
      if (i % 10 === 9) await sleep(2);
    }
    assert.ok(await waitFor(() => fs.readdirSync(dir).length === 0, 4000), fs.readdirSync(dir).join(' '));
    await fullDump(c, Buffer.from('zero'));
    assert.equal(fs.readFileSync(path.join(dir, `vmcore.${ip}.0`), 'utf8'), 'zero');

    // 1100 dumps there (complete, cut short, or only a key left): the next is 1100, then the first gap.
    for (let n = 1; n < 1100; n++) fs.writeFileSync(path.join(dir, n % 3 ? `vmcore.${ip}.${n}` : `vmcore.${ip}.${n}.incomplete`), '');
    fs.rmSync(path.join(dir, `vmcore.${ip}.700`));
    fs.writeFileSync(path.join(dir, `key.${ip}.700`), '');
    fs.writeFileSync(path.join(dir, `info.${ip}.1100`), '');
    c.acks.length = 0;
    await fullDump(c, Buffer.from('late'));
    assert.equal(fs.readlinkSync(path.join(dir, `vmcore.${ip}.last`)), `vmcore.${ip}.1101`);
    fs.rmSync(path.join(dir, `vmcore.${ip}.300.incomplete`));
    c.acks.length = 0;
    await fullDump(c, Buffer.from('gap'));
    assert.equal(fs.readFileSync(path.join(dir, `vmcore.${ip}.300`), 'utf8'), 'gap');
  } finally {
    for (const s of spoof) s.close();
    await c.close();
    assert.deepEqual(await srv.stop(), { code: 0, signal: null }, srv.stderr());
  }
  // Over 4 at a time from one address: the oldest gave way once 50 ms old, later ones were refused meanwhile.
  const d = dropsOf(srv.lines());
  assert.equal(d.heraldDisplaced + d.heraldNoData + d.sessionLimit, 1100, JSON.stringify(d));
  assert.ok(d.heraldDisplaced > 0 && d.sessionLimit > 0, JSON.stringify(d));
}));

test('SeqnoWindow: fixed memory, duplicates and too-old seqnos told apart like an unbounded set within the window, wrap-safe', () => {
  const w = new SeqnoWindow();
  assert.equal(w.byteLength, 8192);
  for (let s = 1; s <= 200_000; s++) assert.equal(w.add(s), true);
  assert.equal(w.byteLength, 8192, 'no growth');
  assert.equal(w.add(200_000), false);
  assert.equal(w.add(200_000 - 65535), false, 'seen, inside the window');
  assert.equal(w.add(200_000 - 65536), false, 'too old: counted as a duplicate');
  assert.equal(w.add(500_000), true, 'a jump ahead');
  assert.equal(w.add(499_999), true, 'not seen: inside the new window');
  assert.equal(w.add(499_999), false);
  assert.equal(w.add(200_000), false, 'behind the new window');
  // Against an unbounded model, from just below 2^32 across the wrap, with reordering and repeats.
  const model = new Set<number>();
  let high = 0xffff_0000;
  const m = new SeqnoWindow(1024);
  let rnd = 12345;
  const next = (): number => ((rnd = (Math.imul(rnd, 1103515245) + 12345) >>> 0) >>> 8);
  let started = false;
  for (let i = 0; i < 200_000; i++) {
    const r = next() % 100;
    const s = (r < 70 ? high + 1 + (next() % 4) : r < 98 ? high - (next() % 1200) : high + 2000 + (next() % 3000)) >>> 0;
    const ahead = (s - high) >>> 0;
    const expectNew: boolean = !started || (ahead !== 0 && ahead < 0x80000000) || (((high - s) >>> 0) < 1024 && !model.has(s));
    assert.equal(m.add(s), expectNew, `seqno ${s}, high ${high}`);
    model.add(s);
    if (!started || (ahead !== 0 && ahead < 0x80000000)) high = s;
    started = true;
  }
  assert.ok(high < 0xffff_0000, 'wrapped');
  assert.throws(() => new SeqnoWindow(1000), /power of 2/);
});

test('duplicates in a dump: repeats and seqnos more than 65536 behind the newest are counted, the data stays byte-exact', withDir(async (dir) => {
  const srv = await startServer(dir);
  const c = await new Client(`${NET}.${hostN++}`, srv).open();
  const data = crypto.randomBytes(4000);
  try {
    const h = (await c.exchange(nd(1, 1, 0n), srv.port, 1))!;
    const v = (seq: number, k: number) => (c.acks.length = 0, c.exchange(nd(3, seq, BigInt(k * 1000), data.subarray(k * 1000, (k + 1) * 1000)), h.port, seq, h.port));
    assert.ok(await v(2, 0));
    assert.ok(await v(3, 1));
    assert.ok(await v(3, 1)); // repeat: ACKed again
    assert.ok(await v(70_000, 2)); // a jump: seqno 3 is now 69997 behind
    assert.ok(await v(3, 1)); // too old to tell: a duplicate
    assert.ok(await v(69_999, 3)); // inside the window, new
    assert.ok(await c.exchange(nd(4, 70_001, 0n, kdh512(4000)), h.port, 70_001, h.port));
    assert.ok(await c.exchange(nd(2, 70_002, 0n), h.port, 70_002, h.port));
    assert.deepEqual(fs.readFileSync(path.join(dir, `vmcore.${c.ip}.0`)), data);
    assert.ok(await waitFor(() => srv.lines().includes(`Completed dump from client ${c.ip}: 4000 bytes in 6 messages (2 duplicates)`)), srv.lines().join('\n'));
  } finally {
    await c.close();
    assert.deepEqual(await srv.stop(), { code: 0, signal: null }, srv.stderr());
  }
}));

test('a herald naming a dump in progress (a retransmit held up behind a flood, or spoofed) gets no ACK and does not end it', withDir(async (dir) => {
  const srv = await startServer(dir, ['--timeout', '30']);
  const c = await new Client(`${NET}.${hostN++}`, srv).open();
  const data = crypto.randomBytes(5000);
  try {
    await fullDump(c, data, 'p', async (seq) => {
      if (seq === 4) assert.ok(await noAck(c, nd(1, 1, 0n, Buffer.from('p\0')), srv.port, 1));
    });
    assert.deepEqual(fs.readFileSync(path.join(dir, 'p', `vmcore.${c.ip}.0`)), data);
  } finally {
    await c.close();
    assert.deepEqual(await srv.stop(), { code: 0, signal: null }, srv.stderr());
  }
  assert.deepEqual(dropsOf(srv.lines()), { heraldDuringDump: 1 });
  assert.ok(!srv.lines().some((l) => /^Dump from client .* incomplete:/.test(l)), srv.lines().join('\n'));
}));

test('EKCD key data must end within 64 KiB (the client\'s buffer): beyond is refused, counted, and the key file stays small', withDir(async (dir) => {
  const srv = await startServer(dir);
  const c = await new Client(`${NET}.${hostN++}`, srv).open();
  try {
    const h = (await c.exchange(nd(1, 1, 0n), srv.port, 1))!;
    assert.ok(await c.exchange(nd(5, 2, 0n, Buffer.alloc(100, 0x4b)), h.port, 2, h.port));
    assert.ok(await c.exchange(nd(5, 3, 65536n - 100n, Buffer.alloc(100, 0x4c)), h.port, 3, h.port), 'ending at 64 KiB');
    assert.ok(await noAck(c, nd(5, 4, 65536n, Buffer.alloc(1, 0x58)), h.port, 4));
    assert.ok(await noAck(c, nd(5, 5, 65500n, Buffer.alloc(100, 0x58)), h.port, 5));
    assert.ok(await noAck(c, nd(5, 6, 2n ** 50n, Buffer.alloc(16, 0x58)), h.port, 6));
    assert.ok(await c.exchange(nd(3, 7, 0n, Buffer.from('core')), h.port, 7, h.port));
    assert.ok(await c.exchange(nd(4, 8, 0n, kdh512(4)), h.port, 8, h.port));
    assert.ok(await c.exchange(nd(2, 9, 0n), h.port, 9, h.port));
    const key = fs.readFileSync(path.join(dir, `key.${c.ip}.0`));
    assert.equal(key.length, 65536);
    assert.deepEqual(key.subarray(0, 100), Buffer.alloc(100, 0x4b));
    assert.deepEqual(key.subarray(65436), Buffer.alloc(100, 0x4c));
    assert.ok(!key.includes(0x58), 'no refused byte');
  } finally {
    await c.close();
    assert.deepEqual(await srv.stop(), { code: 0, signal: null }, srv.stderr());
  }
  assert.deepEqual(dropsOf(srv.lines()), { keyBeyondLimit: 3 });
  assert.equal(srv.lines().filter((l) => l.includes('refusing EKCD_KEY')).length, 1);
}));

test('a herald path through a symlink out of --dir creates nothing outside', withDir(async (dir) => {
  const outside = fs.mkdtempSync(path.join(os.tmpdir(), 'rawpoll-outside-'));
  const srv = await startServer(dir);
  const c = await new Client(`${NET}.${hostN++}`, srv).open();
  try {
    fs.symlinkSync(outside, path.join(dir, 'out'));
    await fullDump(c, Buffer.from('x'), 'out/deeper/still');
    assert.deepEqual(fs.readdirSync(outside), [], 'mkdir -p followed the link and made out/deeper/still there');
    assert.equal(fs.readFileSync(path.join(dir, `vmcore.${c.ip}.0`), 'utf8'), 'x', 'the default directory instead');
  } finally {
    await c.close();
    assert.deepEqual(await srv.stop(), { code: 0, signal: null }, srv.stderr());
    fs.rmSync(outside, { recursive: true, force: true });
  }
}));

test('--max-sessions, --herald-timeout, --stats-interval: bad values are refused naming the value and the range, exit 2', () => {
  for (const [flag, v, range] of [['--max-sessions', '0', '1-10000'], ['--max-sessions', '10001', '1-10000'], ['--max-sessions', 'x', '1-10000'],
    ['--herald-timeout', '0', '1-86400'], ['--herald-timeout', '1.5', '1-86400'], ['--stats-interval', '-1', '0-86400']]) {
    const r = spawnSync(process.execPath, [RAWPOLL, 'netdump-server', '--dir', os.tmpdir(), '--port', '0', flag, v], { encoding: 'utf8' });
    assert.deepEqual([r.status, r.signal], [2, null], `${flag} ${v}: ${r.stderr}`);
    assert.match(r.stderr, new RegExp(`bad ${flag} '${v.replace('.', '\\.')}': expected an integer ${range}`));
  }
  const help = spawnSync(process.execPath, [RAWPOLL, 'netdump-server', '--help'], { encoding: 'utf8' }).stdout;
  for (const w of ['--max-sessions N      (default 128)', '--herald-timeout S    (default 15)', 'heraldDisplaced', 'heraldNoData', 'keyBeyondLimit']) {
    assert.ok(help.includes(w), w);
  }
});
