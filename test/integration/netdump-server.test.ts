/**
 * The netdump server against a small dgram client of our own, on loopback addresses 127.77.x.y (each test client
 * binds its own address, port 20024, as a FreeBSD client would). Expected bytes are built here from PROTOCOLS.md §4.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { NetdumpServer, type DumpResult } from '../../src/rx/netdumpd.js';

const NET = `127.77.${process.pid % 250}`;
let hostN = 1;
let dir = '';
let server: NetdumpServer;
const dumps: DumpResult[] = [];

function hdr(type: number, seqno: number, offset: number, len: number): Buffer {
  const b = Buffer.alloc(24);
  b.writeUInt32BE(type, 0);
  b.writeUInt32BE(seqno, 4);
  b.writeBigUInt64BE(BigInt(offset), 8);
  b.writeUInt32BE(len, 16);
  return b;
}
const msg = (type: number, seqno: number, offset: number, data: Buffer = Buffer.alloc(0)) =>
  Buffer.concat([hdr(type, seqno, offset, data.length), data]);

class TestClient {
  sock = dgram.createSocket('udp4');
  acks: { seqno: number; port: number; len: number }[] = [];
  waiters: (() => void)[] = [];
  readonly ip = `${NET}.${hostN++}`;
  serverPort = 0;
  async open(): Promise<void> {
    this.sock.on('message', (m, r) => {
      this.acks.push({ seqno: m.length === 4 ? m.readUInt32BE(0) : -1, port: r.port, len: m.length });
      this.waiters.splice(0).forEach((w) => w());
    });
    await new Promise<void>((r) => this.sock.bind(20024, this.ip, () => r()));
  }
  send(m: Buffer, port: number): Promise<void> {
    return new Promise((r, j) => this.sock.send(m, port, '127.0.0.1', (e) => (e ? j(e) : r())));
  }
  /** Send and wait for the ACK of `seqno` (retransmitting every 300 ms, like a client would), or null after `tries`. */
  async exchange(m: Buffer, port: number, seqno: number, tries = 5): Promise<{ seqno: number; port: number } | null> {
    for (let t = 0; t < tries; t++) {
      await this.send(m, port);
      const got = await new Promise<boolean>((res) => {
        const check = () => this.acks.some((a) => a.seqno === seqno);
        if (check()) return res(true);
        const timer = setTimeout(() => res(check()), 300);
        this.waiters.push(() => { if (check()) { clearTimeout(timer); res(true); } });
      });
      if (got) return this.acks.find((a) => a.seqno === seqno)!;
    }
    return null;
  }
  close(): void { this.sock.close(); }
}

function kdh(len: number, host: string): Buffer {
  const b = Buffer.alloc(512);
  b.write('FreeBSD Kernel Dump', 0);
  b.write('amd64', 20);
  b.writeUInt32BE(4, 32);
  b.writeUInt32BE(2, 36);
  b.writeBigUInt64BE(BigInt(len), 40);
  b.writeBigUInt64BE(1700000000n, 48);
  b.writeUInt32BE(4096, 60);
  b.write(host, 64);
  b.write('TestOS 1.0 #0\n', 128);
  b.write('test panic', 320);
  b.writeBigUInt64BE(BigInt(len), 496);
  let p = 0;
  for (let i = 0; i < 508; i += 4) p ^= b.readUInt32BE(i);
  b.writeUInt32BE(p >>> 0, 508);
  return b;
}

/** A full session, stop-and-wait, chunks of `chunk` bytes. Returns the session port learned from the first ACK. */
async function dumpSession(c: TestClient, data: Buffer, chunk = 1448, herald = Buffer.alloc(0)): Promise<number> {
  c.acks.length = 0; // seqnos restart at 1 per session
  const a = await c.exchange(msg(1, 1, 0, herald), server.port, 1);
  assert.ok(a, 'herald ACKed');
  assert.notEqual(a.port, server.port, 'ACK comes from a new per-client port');
  let seq = 2;
  for (let off = 0; off < data.length; off += chunk) {
    const piece = data.subarray(off, off + chunk);
    assert.ok(await c.exchange(msg(3, seq, off, piece), a.port, seq), `VMCORE seq ${seq} ACKed`);
    seq++;
  }
  assert.ok(await c.exchange(msg(4, seq, 0, kdh(data.length, 'testhost')), a.port, seq), 'KDH ACKed');
  seq++;
  assert.ok(await c.exchange(msg(2, seq, 0), a.port, seq), 'FINISHED ACKed');
  return a.port;
}

function waitDump(ip: string): Promise<DumpResult> {
  return new Promise((res) => {
    const hit = dumps.find((d) => d.client === ip);
    if (hit) return res(hit);
    const on = (d: DumpResult) => { if (d.client === ip) { server.off('dump', on); res(d); } };
    server.on('dump', on);
  });
}

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rawpoll-ndsrv-'));
  server = await NetdumpServer.start({ dir, bind: '127.0.0.1', port: 0, timeoutSec: 2 });
  server.on('dump', (d: DumpResult) => dumps.push(d));
});

after(async () => {
  await server?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('a dump lands byte for byte, info decodes the KDH, .last symlinks point at it', async () => {
  const c = new TestClient();
  await c.open();
  try {
    const data = crypto.randomBytes(300_000 + 123);
    await dumpSession(c, data);
    const d = await waitDump(c.ip);
    assert.equal(d.status, 'complete');
    assert.deepEqual(fs.readFileSync(path.join(dir, `vmcore.${c.ip}.0`)), data);
    const info = fs.readFileSync(path.join(dir, `info.${c.ip}.0`), 'utf8');
    assert.match(info, new RegExp(`^Dump from ${c.ip.replace(/\./g, '\\.')} \\[`));
    assert.match(info, /Hostname: testhost/);
    assert.match(info, /Dump Length: 300123B \(0 MB\)/);
    assert.match(info, /Panic String: test panic/);
    assert.match(info, /Header Parity Check: Pass/);
    assert.match(info, /Dump complete\n$/);
    assert.equal(fs.readlinkSync(path.join(dir, `vmcore.${c.ip}.last`)), `vmcore.${c.ip}.0`);
    assert.equal(fs.readlinkSync(path.join(dir, `info.${c.ip}.last`)), `info.${c.ip}.0`);
  } finally {
    c.close();
  }
});

test('out-of-order and duplicate VMCORE messages: written at their offsets, ACKed each time', async () => {
  const c = new TestClient();
  await c.open();
  try {
    const data = crypto.randomBytes(4096 * 10);
    const a = (await c.exchange(msg(1, 1, 0), server.port, 1))!;
    const order = [9, 3, 0, 1, 1, 8, 2, 7, 4, 6, 5, 5];
    for (const i of order) {
      assert.ok(await c.exchange(msg(3, 2 + i, i * 4096, data.subarray(i * 4096, (i + 1) * 4096)), a.port, 2 + i));
    }
    assert.ok(await c.exchange(msg(4, 12, 0, kdh(data.length, 'x')), a.port, 12));
    assert.ok(await c.exchange(msg(2, 13, 0), a.port, 13));
    const d = await waitDump(c.ip);
    assert.equal(d.status, 'complete');
    assert.equal(d.duplicates, 2);
    assert.deepEqual(fs.readFileSync(d.vmcore), data);
  } finally {
    c.close();
  }
});

test('abuse: bad length, > 4120 bytes, unknown type, FINISHED with no herald get no ACK; server survives', async () => {
  const c = new TestClient();
  await c.open();
  try {
    // FINISHED / VMCORE to the herald port, no session: dropped.
    assert.equal(await c.exchange(msg(2, 1, 0), server.port, 1, 2), null);
    assert.equal(await c.exchange(msg(3, 1, 0, Buffer.alloc(10)), server.port, 1, 2), null);
    // Herald whose len field lies: dropped.
    const lying = msg(1, 1, 0); lying.writeUInt32BE(5, 16);
    assert.equal(await c.exchange(lying, server.port, 1, 2), null);
    // Runt.
    await c.send(Buffer.alloc(10), server.port);
    assert.equal(server.active, 0);
    // A real session now.
    const a = (await c.exchange(msg(1, 1, 0), server.port, 1))!;
    assert.ok(a);
    // Retransmitted herald before any data: re-ACKed from the same session port, not a new session.
    c.acks.length = 0;
    const again = (await c.exchange(msg(1, 1, 0), server.port, 1))!;
    assert.equal(again.port, a.port);
    assert.equal(server.active, 1);
    // Strict length: header says 100, 99 bytes follow.
    const short = Buffer.concat([hdr(3, 2, 0, 100), Buffer.alloc(99)]);
    assert.equal(await c.exchange(short, a.port, 2, 2), null);
    // Over 24 + 4096 bytes, length field consistent: still dropped (the real server's buffer would truncate it).
    const big = msg(3, 3, 0, Buffer.alloc(4097));
    assert.equal(await c.exchange(big, a.port, 3, 2), null);
    // Unknown type 9 and HERALD on the session socket: no ACK.
    assert.equal(await c.exchange(msg(9, 4, 0), a.port, 4, 2), null);
    // Exactly 4096 bytes is fine.
    const ok = msg(3, 5, 0, Buffer.alloc(4096, 0x5a));
    assert.ok(await c.exchange(ok, a.port, 5));
    assert.ok(server.drops.length >= 2 && server.drops.oversize >= 1 && server.drops.unknownType >= 1);
    // Client goes silent: the server times it out (--timeout 2 here) and says so in the info file.
    const d = await waitDump(c.ip);
    assert.equal(d.status, 'timeout');
    assert.match(fs.readFileSync(d.info, 'utf8'), /Dump incomplete: client timed out\n$/);
    assert.equal(fs.readFileSync(d.vmcore).length, 4096);
  } finally {
    c.close();
  }
});

test('herald path: a subdirectory of --dir, "../../etc" and absolute paths cannot escape', async () => {
  const before = new Set(fs.readdirSync(path.dirname(dir)));
  for (const p of ['crash/host7/', '../../etc', '/etc/x', '..']) {
    const c = new TestClient();
    await c.open();
    try {
      await dumpSession(c, Buffer.from('hello ' + p), 1448, Buffer.from(p + '\0'));
      const d = await waitDump(c.ip);
      assert.equal(d.status, 'complete');
      const real = fs.realpathSync(d.vmcore);
      assert.ok(real.startsWith(fs.realpathSync(dir) + path.sep), `${p} stays inside --dir (${real})`);
      assert.equal(fs.readFileSync(d.vmcore, 'utf8'), 'hello ' + p);
    } finally {
      c.close();
    }
  }
  assert.ok(fs.existsSync(path.join(dir, 'crash', 'host7')));
  assert.ok(fs.existsSync(path.join(dir, 'etc')));
  assert.ok(fs.existsSync(path.join(dir, 'etc', 'x')));
  assert.deepEqual(new Set(fs.readdirSync(path.dirname(dir))), before, 'nothing new next to --dir');
});

test('a symlink inside --dir pointing outside is not followed', async () => {
  const outside = fs.mkdtempSync(path.join(os.tmpdir(), 'rawpoll-outside-'));
  try {
    fs.symlinkSync(outside, path.join(dir, 'evil'));
    const c = new TestClient();
    await c.open();
    try {
      await dumpSession(c, Buffer.from('x'), 1448, Buffer.from('evil\0'));
      const d = await waitDump(c.ip);
      assert.equal(path.dirname(d.vmcore), fs.realpathSync(dir));
      assert.deepEqual(fs.readdirSync(outside), []);
    } finally {
      c.close();
    }
  } finally {
    fs.rmSync(outside, { recursive: true, force: true });
  }
});

test('two clients at once each get their own session, port and files', async () => {
  const c1 = new TestClient();
  const c2 = new TestClient();
  await c1.open();
  await c2.open();
  try {
    const d1 = crypto.randomBytes(200_000);
    const d2 = crypto.randomBytes(150_001);
    const [p1, p2] = await Promise.all([dumpSession(c1, d1), dumpSession(c2, d2)]);
    assert.notEqual(p1, p2);
    const [r1, r2] = await Promise.all([waitDump(c1.ip), waitDump(c2.ip)]);
    assert.deepEqual(fs.readFileSync(r1.vmcore), d1);
    assert.deepEqual(fs.readFileSync(r2.vmcore), d2);
  } finally {
    c1.close();
    c2.close();
  }
});

test('a FINISHED resent after completion (its ACK was lost) is ACKed again, nothing else is', async () => {
  const c = new TestClient();
  await c.open();
  try {
    const port = await dumpSession(c, Buffer.from('abc'));
    const d = await waitDump(c.ip);
    assert.equal(d.status, 'complete');
    // dumpSession used seqnos 1 (herald), 2 (data), 3 (KDH), 4 (FINISHED).
    c.acks.length = 0;
    assert.ok(await c.exchange(msg(2, 4, 0), port, 4), 'FINISHED re-ACKed');
    assert.equal(await c.exchange(msg(3, 5, 0, Buffer.from('late')), port, 5, 2), null, 'no data after FINISHED');
    assert.equal(fs.readFileSync(d.vmcore, 'utf8'), 'abc');
  } finally {
    c.close();
  }
});

test('a second dump from the same host gets index 1', async () => {
  const c = new TestClient();
  await c.open();
  try {
    await dumpSession(c, Buffer.from('first'));
    await waitDump(c.ip);
    dumps.length = 0;
    await dumpSession(c, Buffer.from('second'));
    const d = await waitDump(c.ip);
    assert.equal(d.index, 1);
    assert.equal(fs.readFileSync(path.join(dir, `vmcore.${c.ip}.1`), 'utf8'), 'second');
    assert.equal(fs.readlinkSync(path.join(dir, `vmcore.${c.ip}.last`)), `vmcore.${c.ip}.1`);
  } finally {
    c.close();
  }
});
