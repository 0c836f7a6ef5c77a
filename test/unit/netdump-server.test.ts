import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import dgram from 'node:dgram';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sanitizeComponent, sanitizeHeraldPath } from '../../src/rx/netdumpd.js';

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

function nd(type: number, seqno: number, offset: bigint, data: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(24 + data.length);
  b.writeUInt32BE(type, 0);
  b.writeUInt32BE(seqno, 4);
  b.writeBigUInt64BE(offset, 8);
  b.writeUInt32BE(data.length, 16);
  data.copy(b, 24);
  return b;
}

interface Srv { port: number; lines: () => string[]; stop: () => Promise<{ code: number | null; signal: string | null }>; stderr: () => string }

async function startServer(dir: string, extra: string[] = []): Promise<Srv> {
  const p = spawn(process.execPath, [RAWPOLL, 'netdump-server', '--dir', dir, '--bind', '127.0.0.1', '--port', '0', '--timeout', '2', ...extra],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  p.stdout.on('data', (d) => (out += d));
  p.stderr.on('data', (d) => (err += d));
  const exit = new Promise<{ code: number | null; signal: string | null }>((r) => p.once('exit', (code, signal) => r({ code, signal })));
  const t0 = Date.now();
  let m: RegExpMatchArray | null = null;
  while (!(m = out.match(/Waiting for clients on 127\.0\.0\.1:(\d+)/))) {
    if (Date.now() - t0 > 10000 || p.exitCode !== null) throw new Error(`netdump-server did not start: ${err}`);
    await sleep(20);
  }
  return {
    port: Number(m[1]), lines: () => out.split('\n').slice(0, -1), stderr: () => err,
    stop: async () => { p.kill('SIGTERM'); return exit; },
  };
}

class Client {
  sock = dgram.createSocket('udp4');
  acks: { seqno: number; port: number }[] = [];
  constructor(readonly ip: string, readonly srv: Srv) {}
  async open(port = 20024): Promise<this> {
    this.sock.on('message', (m, r) => { if (m.length === 4) this.acks.push({ seqno: m.readUInt32BE(0), port: r.port }); });
    await new Promise<void>((r) => this.sock.bind(port, this.ip, () => r()));
    return this;
  }
  send(m: Buffer, port: number): Promise<void> {
    return new Promise((r, j) => this.sock.send(m, port, '127.0.0.1', (e) => (e ? j(e) : r())));
  }
  /** Sends up to 5 times, 200 ms apart, until an ACK of seqno arrives from `from` (any port if 0); the ACK or null. */
  async exchange(m: Buffer, port: number, seqno: number, from = 0): Promise<{ seqno: number; port: number } | null> {
    const hit = () => this.acks.find((a) => a.seqno === seqno && (from === 0 || a.port === from)) ?? null;
    for (let t = 0; t < 5 && !hit(); t++) {
      await this.send(m, port);
      for (let w = 0; w < 20 && !hit(); w++) await sleep(10);
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
    assert.deepEqual(refusing, [`client ${c.ip}: refusing VMCORE seqno 1003 at offset 0x8000000000000000 + 100: beyond --max-dump-size 1048576 (no ACK; later ones only counted)`]);
    assert.ok(srv.lines().some((l) => l === `Completed dump from client ${c.ip}: 200 bytes in 2 messages (0 duplicates, 9 refused beyond --max-dump-size)`), srv.lines().join('\n'));
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
    // crash/…0 went to the spoofed herald from another port: the real dump is …1, where its herald said.
    assert.equal(fs.readlinkSync(path.join(dir, 'crash', `vmcore.${ip}.last`)), `vmcore.${ip}.1`);
    assert.deepEqual(fs.readFileSync(path.join(dir, 'crash', `vmcore.${ip}.1`)), data, 'the dump is where its herald said');
    assert.deepEqual(fs.readdirSync(path.join(dir, 'evil')).filter((n) => n.startsWith('vmcore') && !n.endsWith('.incomplete')), []);
    for (const d of [path.join(dir, 'evil'), path.join(dir, 'evil2'), dir]) {
      for (const n of fs.readdirSync(d).filter((x) => x.startsWith('vmcore.'))) {
        assert.equal(fs.statSync(path.join(d, n)).size, 0, `${d}/${n}: the spoofed sessions got no data`);
      }
    }
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
