/**
 * NetconsoleCollector's batched writing: add() keeps records, flush() writes each host's with one writev. The
 * failures come from a spy on fs.writevSync (a short write, then ENOSPC) and, as root, from a real full filesystem
 * (a 16 KiB tmpfs, whose kernel writes what fits and then says ENOSPC) — the log keeps whole records only.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as dgram from 'node:dgram';
import { existsSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NetconsoleCollector, type CollectorEvent } from '../../src/rx/nclog.js';
import { CollectServer, type CollectEvent } from '../../src/rx/collect.js';
import { extendedDatagrams } from '../../src/proto/netconsole.js';

// The CommonJS fs object is the one whose functions node:fs's ESM exports take after syncBuiltinESMExports().
const fs = createRequire(import.meta.url)('node:fs') as typeof import('node:fs');
const realWritev = fs.writevSync;

type Writev = typeof fs.writevSync;
/** Runs fn with fs.writevSync replaced (nclog's named import follows), then restores it. */
async function withWritev<T>(spy: Writev, fn: () => T | Promise<T>): Promise<T> {
  fs.writevSync = spy;
  syncBuiltinESMExports();
  try {
    return await fn();
  } finally {
    fs.writevSync = realWritev;
    syncBuiltinESMExports();
  }
}

function setup(o: Partial<ConstructorParameters<typeof NetconsoleCollector>[0]> = {}, dir = mkdtempSync(join(tmpdir(), 'rp-nclog-flush-'))) {
  const events: CollectorEvent[] = [];
  const c = new NetconsoleCollector({ dir, onEvent: (e) => events.push(e), ...o });
  return { dir, events, c, log: (h: string) => readFileSync(c.logPath(h), 'latin1') };
}

const A = { address: '10.9.0.1', port: 6665 };
const B = { address: '10.9.0.2', port: 6665 };
const C = { address: '10.9.0.3', port: 6665 };
const enospc = () => Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });

test('flush: several hosts in one batch, one writev each, records in the order they came, nothing written before', async () => {
  const { dir, events, c, log } = setup();
  const calls: number[] = [];
  try {
    await withWritev((fd, bufs, pos) => { calls.push(bufs.length); return realWritev(fd, bufs, pos); }, () => {
      // C's record comes in three ncfrag pieces, interleaved with the others; it is written when its last piece is in.
      const body = `6,9,0,-;${'c'.repeat(2400)}\n`;
      const pieces = extendedDatagrams(Buffer.from(body));
      assert.equal(pieces.length, 3);
      c.add(Buffer.from('basic a1\n'), A);
      c.add(pieces[2], C);
      c.add(Buffer.from('6,1,0,-;b1\n'), B);
      c.add(Buffer.from('6,7,10,-;a2\n'), A);
      c.add(pieces[0], C);
      c.add(Buffer.from('6,2,0,-;b2\n SUBSYSTEM=net\n'), B);
      c.add(pieces[1], C);
      c.add(Buffer.from('6,8,20,-;a3\n'), A);
      assert.equal(calls.length, 0);
      assert.equal(existsSync(c.logPath(A.address)), false, 'nothing is written before flush()');
      c.flush();
      assert.deepEqual(calls, [3, 2, 1], 'one writev per host, in the order the hosts were first heard');
      assert.equal(log(A.address), 'basic a1\n6,7,10,-;a2\n6,8,20,-;a3\n');
      assert.equal(log(B.address), '6,1,0,-;b1\n6,2,0,-;b2\n SUBSYSTEM=net\n');
      assert.equal(log(C.address), body);
      assert.equal(c.stats.bytesWritten, 9 + 12 + 12 + 11 + 26 + body.length);
      // The next batch appends; a flush with nothing kept writes nothing.
      c.add(Buffer.from('6,9,30,-;a4\n'), A);
      c.flush();
      c.flush();
      assert.equal(calls.length, 4);
      assert.equal(log(A.address), 'basic a1\n6,7,10,-;a2\n6,8,20,-;a3\n6,9,30,-;a4\n');
    });
    assert.deepEqual(events.filter((e) => e.event === 'reassembled').map((e) => [e.host, e.seq, e.fragments]), [[C.address, 9, 3]]);
    assert.equal(events.filter((e) => e.event.startsWith('seq-') || e.event.startsWith('disk') || e.event.startsWith('write')).length, 0);
    assert.equal(c.stats.notWritten, 0);
  } finally {
    await c.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('flush: a write failing mid-batch keeps the whole records it wrote; the rest is counted and the DiskWatch told', async () => {
  const { dir, events, c, log } = setup();
  const recs = [1, 2, 3, 4, 5].map((i) => Buffer.from(`6,${i},0,-;record number ${i}\n`));
  try {
    // The disk fills two and a half records in: the kernel writes what fits, then refuses (ENOSPC).
    const cut = recs[0].length + recs[1].length + 7;
    let call = 0;
    await withWritev((fd, bufs) => {
      if (call++ > 0) throw enospc();
      return fs.writeSync(fd, Buffer.concat(bufs as Buffer[]).subarray(0, cut));
    }, () => {
      for (const r of recs) c.add(r, A);
      c.flush();
    });
    assert.equal(log(A.address), recs[0].toString() + recs[1].toString(), 'the half record is cut off again');
    assert.equal(c.stats.bytesWritten, recs[0].length + recs[1].length);
    assert.equal(c.stats.notWritten, 3);
    const full = events.filter((e) => e.event === 'disk-full');
    assert.equal(full.length, 1);
    assert.equal(full[0].file, c.logPath(A.address));
    // Nothing is kept for later: the next batch writes its own record only, and ends the episode.
    c.add(Buffer.from('6,6,0,-;after\n'), A);
    c.flush();
    assert.equal(log(A.address), recs[0].toString() + recs[1].toString() + '6,6,0,-;after\n');
    const resumed = events.filter((e) => e.event === 'write-resumed');
    assert.equal(resumed.length, 1);
    assert.equal(resumed[0].lost_records, 3);
    assert.equal(resumed[0].lost_bytes, recs[2].length + recs[3].length + recs[4].length);
  } finally {
    await c.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('flush: a short write without an error is continued from the byte where it stopped', async () => {
  const { dir, events, c, log } = setup();
  const recs = ['6,1,0,-;one\n', '6,2,0,-;two\n', '6,3,0,-;three\n'].map((s) => Buffer.from(s));
  const seen: number[] = [];
  try {
    await withWritev((fd, bufs, pos) => {
      const all = Buffer.concat(bufs as Buffer[]);
      seen.push(all.length);
      // At most 5 bytes a call: every record is split across calls, one call starts inside a record.
      return fs.writeSync(fd, all.subarray(0, 5));
    }, () => {
      for (const r of recs) c.add(r, B);
      c.flush();
    });
    const total = recs.reduce((n, r) => n + r.length, 0);
    assert.equal(log(B.address), recs.join(''));
    assert.deepEqual(seen, Array.from({ length: Math.ceil(total / 5) }, (_, k) => total - 5 * k));
    assert.equal(c.stats.bytesWritten, total);
    assert.equal(events.filter((e) => e.event !== 'new-host').length, 0);
  } finally {
    await c.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('flush: more hosts in a batch than maxOpenFiles — every file written, at most maxOpenFiles left open', async () => {
  const { dir, c, log } = setup({ maxOpenFiles: 2 });
  const openLogs = () => readdirSync('/proc/self/fd').filter((fd) => {
    try { return readlinkSync(`/proc/self/fd/${fd}`).startsWith(dir); } catch { return false; }
  }).length;
  try {
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < 12; i++) c.add(Buffer.from(`6,${round * 12 + i},0,-;line ${round} of ${i % 6}\n`), { address: `10.9.1.${i % 6}`, port: 6665 });
      c.flush();
      assert.ok(openLogs() <= 2, `${openLogs()} log files open`);
    }
    for (let h = 0; h < 6; h++) {
      assert.equal(log(`10.9.1.${h}`), `6,${h},0,-;line 0 of ${h}\n6,${h + 6},0,-;line 0 of ${h}\n6,${12 + h},0,-;line 1 of ${h}\n6,${18 + h},0,-;line 1 of ${h}\n`);
    }
    await c.close();
    assert.equal(openLogs(), 0);
  } finally {
    await c.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('close() writes what add() kept; a datagram after close is ignored', async () => {
  const { dir, c, log } = setup();
  try {
    c.add(Buffer.from('kept until close\n'), A);
    assert.equal(existsSync(c.logPath(A.address)), false);
    await c.close();
    c.add(Buffer.from('too late\n'), A);
    c.flush();
    assert.equal(log(A.address), 'kept until close\n');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an empty datagram is an empty basic line: nothing to write, no error', async () => {
  const { dir, events, c, log } = setup();
  try {
    c.add(Buffer.alloc(0), A);
    c.add(Buffer.alloc(0), B);
    c.add(Buffer.from('after\n'), B);
    c.flush();
    assert.equal(log(A.address), '');
    assert.equal(log(B.address), 'after\n');
    assert.deepEqual({ basic: c.stats.basic, notWritten: c.stats.notWritten, bytes: c.stats.bytesWritten }, { basic: 3, notWritten: 0, bytes: 6 });
    assert.deepEqual(events.map((e) => e.event), ['new-host', 'new-host']);
  } finally {
    await c.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a real full filesystem (16 KiB tmpfs): one writev fills it, the log ends at a whole record, a record that fits resumes', async (t) => {
  if (process.getuid?.() !== 0) return t.skip('mounting a tmpfs needs root');
  const dir = mkdtempSync(join(tmpdir(), 'rp-nclog-full-'));
  const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=16k,mode=0700', 'rawpoll-test', dir], { encoding: 'utf8' });
  if (m.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    return t.skip(`cannot mount a tmpfs: ${m.stderr.trim()}`);
  }
  const { events, c, log } = setup({}, dir);
  try {
    // 40 records of 1000 bytes in one batch: 16 fit in 16 KiB, the 17th is cut by the kernel, the next writev fails.
    const recs = Array.from({ length: 40 }, (_, i) => {
      const head = `6,${i},0,-;`;
      return Buffer.from(head + String.fromCharCode(0x41 + (i % 26)).repeat(1000 - head.length - 1) + '\n');
    });
    assert.ok(recs.every((r) => r.length === 1000));
    for (const r of recs) c.add(r, A);
    c.flush();
    const got = readFileSync(c.logPath(A.address));
    assert.equal(got.length % 1000, 0, `${got.length} bytes: not whole records`);
    const whole = got.length / 1000;
    assert.ok(whole >= 1 && whole < 40, `${whole} records written`);
    assert.deepEqual(got, Buffer.concat(recs.slice(0, whole)));
    assert.equal(c.stats.notWritten, 40 - whole);
    assert.equal(c.stats.bytesWritten, got.length);
    assert.deepEqual(events.filter((e) => e.event === 'disk-full').map((e) => e.file), [c.logPath(A.address)]);
    // tmpfs gives whole pages: what is left is the tail of the log's last page (16 KiB - whole KB), where a short line
    // fits — writing resumes by itself.
    c.add(Buffer.from('6,40,0,-;fits\n'), A);
    c.flush();
    assert.equal(log(A.address), Buffer.concat(recs.slice(0, whole)).toString('latin1') + '6,40,0,-;fits\n');
    const resumed = events.filter((e) => e.event === 'write-resumed');
    assert.equal(resumed.length, 1);
    assert.equal(resumed[0].lost_records, 40 - whole);
  } finally {
    await c.close();
    spawnSync('umount', [dir]);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('collect on loopback: three hosts interleaved through the receive engine, each log exact and in order', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rp-nclog-srv-'));
  const events: CollectEvent[] = [];
  const s = await CollectServer.start({ dir, bind: '127.0.0.1', netconsolePort: 0, dropReportMs: 60_000, onEvent: (e) => events.push(e) });
  const hosts = ['127.0.0.2', '127.0.0.3', '127.0.0.4'];
  const socks: dgram.Socket[] = [];
  const N = 2000;
  let closed = false;
  try {
    for (const h of hosts) {
      const sock = dgram.createSocket('udp4');
      await new Promise<void>((r) => sock.bind(0, h, () => r()));
      socks.push(sock);
    }
    const line = (h: number, i: number) => `6,${i},${i * 10},-;host ${h} line ${i} ${'x'.repeat(i % 97)}\n`;
    // Datagrams of the three hosts interleaved, in bursts: batches hold several hosts, views of one batch buffer.
    for (let i = 0; i < N; i += 50) {
      const sent: Promise<void>[] = [];
      for (let k = i; k < i + 50; k++) {
        for (let h = 0; h < 3; h++) sent.push(new Promise((r) => socks[h].send(line(h, k), s.ports.netconsole!, '127.0.0.1', () => r())));
      }
      await Promise.all(sent);
    }
    const until = Date.now() + 10_000;
    while (s.nc!.stats.datagrams < 3 * N && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    await s.close();
    closed = true;
    assert.equal(s.socketDrops('netconsole'), 0);
    for (let h = 0; h < 3; h++) {
      const want = Array.from({ length: N }, (_, i) => line(h, i)).join('');
      assert.equal(readFileSync(join(dir, 'netconsole', `${hosts[h]}.log`), 'latin1'), want, `${hosts[h]}'s log`);
    }
    assert.equal(s.nc!.stats.records, 3 * N);
    assert.equal(events.filter((e) => e.event.startsWith('seq-') || e.event === 'receiver-error').length, 0);
  } finally {
    for (const sock of socks) sock.close();
    if (!closed) await s.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
