/**
 * `rawpoll collect` under hostile traffic (issue 9): the floods an attacker used against the receivers, fed straight
 * into OopsCollector and NcfragReassembler (no network, no root). Each test reproduces one finding and checks the
 * budget that now holds: write queue bounded in entries and bytes, complete dumps written before partial ones, 2Q
 * eviction that keeps a real dump in progress, linear ncfrag reassembly with a fragment budget.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import * as dgram from 'node:dgram';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { OopsCollector, OOPS_DEFAULTS } from '../../src/rx/oopscollect.js';
import { NetconsoleCollector, NETCONSOLE_DEFAULTS, type CollectorEvent } from '../../src/rx/nclog.js';
import { CollectServer, type CollectEvent } from '../../src/rx/collect.js';
import { RAWPOLL } from '../helpers/lab.js';
import { oopsCollector, oopsDatagrams } from '../helpers/netoops.js';
import {
  NcfragReassembler, NCFRAG_DEFAULTS, parseExtDatagram, extendedDatagrams, markRange, type ExtDatagram,
} from '../../src/proto/netconsole.js';

// A full collection before each heap reading, so garbage not yet collected does not count as growth.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

function heap(): { heap: number; external: number } {
  gc();
  gc(); // buffers whose objects the first one collected are freed by the second
  const m = process.memoryUsage();
  return { heap: m.heapUsed, external: m.arrayBuffers };
}

/**
 * The attacker's datagram from the issue: v3, data_offset = arch_offset = 216 (user blob present), arch 0, type 1,
 * packet_count 4096, packet_no 0, boot_id 0xf0000000, kernel "6.1", 1024 zero bytes of data — 1240 bytes.
 */
const FAKE_HEX = '03000100d8000000d8000100' + '00100000' + '00000000' + '000000f0' + '362e31';

function fake(dumpId: number, bootId = 0xf0000000, packetNo = 0): Buffer {
  const b = Buffer.alloc(216 + 1024);
  Buffer.from(FAKE_HEX, 'hex').copy(b);
  b.writeUInt16LE(dumpId & 0xffff, 2);
  b.writeUInt32LE(packetNo, 16);
  b.writeUInt32LE(bootId >>> 0, 20);
  return b;
}

test('the attacker datagram from the issue is what it says (1240 bytes, 4096 chunks announced)', () => {
  const b = fake(1);
  assert.equal(b.length, 1240);
  assert.equal(b.readUInt32LE(12), 4096);
  assert.equal(b.readUInt32LE(20), 0xf0000000);
  assert.equal(b.toString('latin1', 24, 27), '6.1');
});


function textLog(n: number): Buffer {
  let s = '';
  for (let i = 0; s.length < n; i++) s += `<0>[${i}.000000] BUG: kernel NULL pointer dereference, line ${i}\n`;
  return Buffer.from(s.slice(0, n));
}

const setup = (o: Parameters<typeof oopsCollector>[0] = {}) => oopsCollector(o, 600_000);

const MiB = 1024 * 1024;

function growth(a: { heap: number; external: number }, b: { heap: number; external: number }): string {
  return `heap ${((b.heap - a.heap) / MiB).toFixed(1)} MiB, buffers ${((b.external - a.external) / MiB).toFixed(1)} MiB more after the flood`;
}

const ATTACKER = { address: '10.66.0.1', port: 40000 };
const REAL = { address: '10.9.0.5', port: 6665 };

test('(a) 20,000 one-datagram fakes: nothing queued, no file, heap flat, each counted evicted_unconfirmed', async (t) => {
  const { dir, c, events, cleanup } = setup();
  try {
    const before = heap();
    for (let i = 0; i < 20_000; i++) c.handle(fake(i, 0xf0000000 + (i >>> 16)), ATTACKER);
    const after = heap();
    t.diagnostic(growth(before, after));
    assert.equal(c.stats.queuedWritesPeak, 0, 'a probation dump that gives way is not queued');
    assert.equal(c.stats.openDumps, OOPS_DEFAULTS.maxDumpsPerHost, 'one source holds at most maxDumpsPerHost dumps');
    assert.equal(c.drops.evicted_unconfirmed, 20_000 - OOPS_DEFAULTS.maxDumpsPerHost);
    assert.equal(events.filter((e) => e.event === 'dump-dropped').length, 0, 'counted, not one event line per datagram');
    assert.ok(after.heap - before.heap < 64 * MiB, `heap grew ${((after.heap - before.heap) / MiB).toFixed(1)} MiB`);
    assert.ok(after.external - before.external < 64 * MiB, `buffers grew ${((after.external - before.external) / MiB).toFixed(1)} MiB`);
    assert.deepEqual(readdirSync(dir), []);
    await c.close();
    // Open at close: written as partial (shutdown), the 4 still open and nothing else.
    assert.equal(events.filter((e) => e.event === 'dump-partial' && e.reason === 'shutdown').length, OOPS_DEFAULTS.maxDumpsPerHost);
  } finally { cleanup(); }
});

test('(a) 20,000 datagrams as two-chunk fakes from 10,000 addresses: queue within its entry budget, heap bounded, drops by reason', async (t) => {
  const maxQueuedWrites = 16;
  const { c, events, cleanup } = setup({ maxQueuedWrites });
  try {
    const before = heap();
    let peakSeen = 0;
    for (let i = 0; i < 10_000; i++) {
      const from = { address: `10.77.${i >> 8}.${i & 255}`, port: 40000 };
      c.handle(fake(i, 0xf0000000, 0), from);
      c.handle(fake(i, 0xf0000000, 1), from);
      peakSeen = Math.max(peakSeen, c.stats.queuedWrites);
    }
    const after = heap();
    t.diagnostic(`${growth(before, after)}; drops ${JSON.stringify(c.drops)}`);
    assert.ok(peakSeen <= maxQueuedWrites && c.stats.queuedWritesPeak <= maxQueuedWrites, `peak ${c.stats.queuedWritesPeak}`);
    assert.equal(c.stats.queuedWritesPeak, maxQueuedWrites, 'the flood did fill the queue');
    assert.ok(after.heap - before.heap < 64 * MiB, `heap grew ${((after.heap - before.heap) / MiB).toFixed(1)} MiB`);
    assert.ok(after.external - before.external < 64 * MiB, `buffers grew ${((after.external - before.external) / MiB).toFixed(1)} MiB`);
    // Established dumps that give way are written as partial, as far as the queue takes them; the rest is counted.
    const evicted = 10_000 - OOPS_DEFAULTS.maxOpenDumps;
    assert.ok(c.drops.backlog > evicted - 2 * maxQueuedWrites, JSON.stringify(c.drops));
    assert.equal(c.drops.evicted_unconfirmed, 0);
    assert.equal(events.filter((e) => e.event === 'dump-dropped').length, c.drops.backlog);
    await c.close();
    const written = events.filter((e) => e.event === 'dump-partial');
    assert.equal(written.length + c.drops.backlog, 10_000, 'every dump written or counted');
    assert.equal(c.stats.queuedWrites, 0);
    assert.equal(c.stats.queuedWriteBytes, 0);
  } finally { cleanup(); }
});

test('(a) the byte budget counts metadata: empty-log partials of 4096 chunks fill --max-bytes before the entry budget', async () => {
  // Each queued fake has a 0-byte log but a 4096-chunk packet table (8 KiB) and the fixed overhead.
  const { c, cleanup } = setup({ maxQueuedWrites: 1000, maxTotalBytes: 100 * 1024 });
  try {
    for (let i = 0; i < 200; i++) {
      const from = { address: `10.78.0.${i}`, port: 1 };
      c.handle(fake(i, 1, 0), from);
      c.handle(fake(i, 1, 1), from);
      assert.ok(c.stats.queuedWriteBytes <= 100 * 1024, String(c.stats.queuedWriteBytes));
    }
    assert.ok(c.stats.queuedWritesPeak < 15, `peak ${c.stats.queuedWritesPeak}`);
    assert.ok(c.drops.backlog > 100);
    await c.close();
  } finally { cleanup(); }
});

test('(b) a real dump completed during a flood is written before the queued partials, byte-exact', async () => {
  const maxQueuedWrites = 8;
  const { c, events, cleanup } = setup({ maxQueuedWrites });
  try {
    const flood = (from: number, to: number) => {
      for (let i = from; i < to; i++) {
        const src = { address: `10.79.${i >> 8}.${i & 255}`, port: 1 };
        c.handle(fake(i, 2, 0), src);
        c.handle(fake(i, 2, 1), src);
      }
    };
    flood(0, 500);
    assert.equal(c.stats.queuedWrites, maxQueuedWrites, 'queue full of partials when the real dump completes');
    const partialsBefore = events.filter((e) => e.event === 'dump-partial').length;
    const log = textLog(50 * 1024 + 321);
    for (const d of oopsDatagrams(log, 42, 0x1234, '6.9.0-real')) c.handle(d, REAL);
    flood(500, 1000);
    await c.flush();
    const order = events.filter((e) => e.event === 'dump-partial' || e.event === 'dump-complete');
    const at = order.findIndex((e) => e.event === 'dump-complete');
    assert.ok(at >= 0, 'real dump written');
    // At most the one partial already being written when it came goes first.
    assert.ok(at - partialsBefore <= 1, `${at - partialsBefore} partials written before it`);
    const done = order[at];
    assert.equal(done.host, REAL.address);
    assert.deepEqual(readFileSync(done.file as string), log);
    assert.equal(JSON.parse(readFileSync(done.sidecar as string, 'utf8')).complete, true);
    // It took the place of the newest queued partial, which is counted and reported.
    const displaced = events.filter((e) => e.event === 'dump-dropped' && /displaced/.test(String(e.reason)));
    assert.equal(displaced.length, 1);
    assert.equal(displaced[0].complete, false);
    await c.close();
  } finally { cleanup(); }
});

test('(b) a complete dump is dropped only when complete dumps fill the queue', async () => {
  const { c, events, cleanup } = setup({ maxQueuedWrites: 2 });
  try {
    for (let id = 1; id <= 3; id++) for (const d of oopsDatagrams(textLog(3000), id, 7, '6.9.0-real')) c.handle(d, REAL);
    // 1 being written + 1 waiting: the third complete dump finds no partial to displace.
    const dropped = events.filter((e) => e.event === 'dump-dropped');
    assert.equal(dropped.length, 1);
    assert.equal(dropped[0].complete, true);
    assert.equal(dropped[0].dump_id, 3);
    assert.equal(c.drops.backlog, 1);
    await c.close();
    assert.deepEqual(events.filter((e) => e.event === 'dump-complete').map((e) => e.dump_id), [1, 2]);
  } finally { cleanup(); }
});

test('(c) a real dump in progress survives 20,000 one-chunk fakes, from other sources and from its own address', async () => {
  const { dir, c, events, cleanup } = setup();
  try {
    const log = textLog(40 * 1024);
    const set = oopsDatagrams(log, 9, 0xbeef, '6.9.0-real');
    set.slice(0, 10).forEach((d) => c.handle(d, REAL));
    for (let i = 0; i < 20_000; i++) {
      // Half spoof the real host's own address: its per-host cap must push out fakes, not its real dump.
      const from = i % 2 ? REAL : { address: `10.80.${(i >> 8) & 255}.${i & 255}`, port: 1 };
      c.handle(fake(i, 0xf0000000 + (i >>> 16)), from);
    }
    set.slice(10).forEach((d) => c.handle(d, REAL));
    await c.flush();
    const done = events.filter((e) => e.event === 'dump-complete');
    assert.equal(done.length, 1);
    assert.equal(done[0].file, join(dir, 'oops-10.9.0.5-0000beef-9.log'), 'one file under its first name');
    assert.deepEqual(readFileSync(done[0].file as string), log);
    assert.equal(events.filter((e) => e.event === 'dump-partial').length, 0, 'the real dump never gave way as partial');
    // All open slots but the real dump's went to fakes; every other fake gave way unwritten.
    assert.equal(c.drops.evicted_unconfirmed, 20_000 - (OOPS_DEFAULTS.maxOpenDumps - 1));
    await c.close();
  } finally { cleanup(); }
});

test('per-host cap: a source over maxDumpsPerHost pushes out its own least recently active dump, not others', async () => {
  const { c, events, cleanup } = setup({ maxDumpsPerHost: 2 });
  try {
    const other = { address: '10.9.0.6', port: 1 };
    const o = oopsDatagrams(textLog(5000), 1, 1, '6.9.0-real');
    o.slice(0, 2).forEach((d) => c.handle(d, other)); // other's dump, least recently active of all
    for (let id = 10; id < 13; id++) {
      const s = oopsDatagrams(textLog(5000), id, 1, '6.9.0-real');
      s.slice(0, 2).forEach((d) => c.handle(d, REAL));
    }
    await c.flush();
    const partial = events.filter((e) => e.event === 'dump-partial');
    assert.deepEqual(partial.map((e) => [e.host, e.dump_id, e.reason]), [[REAL.address, 10, 'evicted']]);
    o.slice(2).forEach((d) => c.handle(d, other));
    await c.flush();
    assert.ok(events.some((e) => e.event === 'dump-complete' && e.host === other.address));
    await c.close();
  } finally { cleanup(); }
});

test('a one-chunk dump that goes idle is still written (partial, reason idle); only eviction drops it', async () => {
  const { c, events, cleanup } = setup({ idleMs: 1000 });
  try {
    c.handle(fake(5, 3), ATTACKER, 1_000_000);
    c.sweep(1_001_000);
    await c.flush();
    const p = events.find((e) => e.event === 'dump-partial')!;
    assert.equal(p.reason, 'idle');
    assert.equal(p.chunks, 1);
    assert.equal(p.bytes, 0, 'zero-filled chunk: empty log');
    assert.equal((p.missing as number[]).length, 4095);
    await c.close();
  } finally { cleanup(); }
});

// ---------------------------------------------------------------------------------------------------------------
// ncfrag reassembly

/** The piece: one byte at offset 2i of a 262144-byte record, all from one source, seq 777. */
function sparsePiece(i: number): ExtDatagram {
  return parseExtDatagram(Buffer.from(`6,777,1,-,ncfrag=${2 * i}/262144;z`))!;
}

test('(d) 30,000 sparse ncfrag pieces of one 256 KiB record: linear (well under 2 s), every piece stored', (t) => {
  const r = new NcfragReassembler({ maxRecordBytes: 262144, maxFragmentsPerRecord: 1_000_000 });
  const pieces = Array.from({ length: 30_000 }, (_, i) => sparsePiece(i));
  const t0 = process.hrtime.bigint();
  for (const p of pieces) assert.equal(r.add('10.9.0.1:6665', p).kind, 'partial');
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  t.diagnostic(`30,000 pieces in ${ms.toFixed(0)} ms`);
  // Quadratic merging took 53 s of CPU for 25,000 of them.
  assert.ok(ms < 2000, `${ms} ms`);
  assert.equal(r.openCount, 1);
  assert.equal(r.openBytes, 262144);
  // Every one of them again is a duplicate; the record is still open.
  assert.equal(r.add('10.9.0.1:6665', pieces[12345]).kind, 'duplicate');
});

test('(d) the fragment budget: piece maxFragmentsPerRecord+1 that brings new bytes is rejected, in O(1)', (t) => {
  const r = new NcfragReassembler({ maxRecordBytes: 262144 });
  const kinds = new Map<string, number>();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < 30_000; i++) {
    const res = r.add('10.9.0.1:6665', sparsePiece(i));
    const k = res.kind === 'rejected' ? `rejected:${res.code}` : res.kind;
    kinds.set(k, (kinds.get(k) ?? 0) + 1);
  }
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  t.diagnostic(`30,000 pieces in ${ms.toFixed(0)} ms: ${JSON.stringify(Object.fromEntries(kinds))}`);
  const budget = NCFRAG_DEFAULTS.maxFragmentsPerRecord;
  assert.deepEqual(Object.fromEntries(kinds), { partial: budget, 'rejected:too_many_fragments': 30_000 - budget });
  assert.ok(ms < 2000, `${ms} ms`);
});

test('(d) bitmap coverage: random out-of-order, duplicate and overlapping pieces give the record byte for byte', () => {
  let seed = 99;
  const rnd = (n: number) => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8) % n;
  for (let round = 0; round < 50; round++) {
    const total = 1 + rnd(5000);
    const data = Buffer.alloc(total);
    for (let i = 0; i < total; i++) data[i] = 0x21 + rnd(90);
    const r = new NcfragReassembler();
    const covered = new Uint8Array(total);
    let done: Buffer | null = null;
    let fragments = 0;
    while (!done) {
      const off = rnd(total);
      const len = 1 + rnd(Math.min(total - off, 1 + rnd(1200)));
      const res = r.add('k', parseExtDatagram(Buffer.concat([Buffer.from(`6,3,0,-,ncfrag=${off}/${total};`), data.subarray(off, off + len)]))!);
      let fresh = 0;
      for (let i = off; i < off + len; i++) if (!covered[i]) { covered[i] = 1; fresh++; }
      if (fresh === 0) {
        assert.equal(res.kind, 'duplicate');
        continue;
      }
      fragments++;
      if (covered.every((x) => x === 1)) {
        assert.equal(res.kind, 'complete');
        if (res.kind === 'complete') {
          done = res.record.bytes;
          assert.equal(res.record.fragments, fragments);
        }
      } else {
        assert.equal(res.kind, 'partial');
      }
    }
    assert.deepEqual(done, Buffer.concat([Buffer.from('6,3,0,-;'), data]));
    assert.equal(r.openCount, 0);
    assert.equal(r.openBytes, 0);
  }
});

test('markRange agrees with one flag per byte on every alignment', () => {
  let seed = 7;
  const rnd = (n: number) => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8) % n;
  const n = 300;
  const bits = new Uint8Array((n + 7) >> 3);
  const flags = new Uint8Array(n);
  for (let k = 0; k < 2000; k++) {
    const a = rnd(n), b = a + rnd(n - a + 1);
    let fresh = 0;
    for (let i = a; i < b; i++) if (!flags[i]) { flags[i] = 1; fresh++; }
    assert.equal(markRange(bits, a, b), fresh, `[${a},${b})`);
    if (flags.every((x) => x === 1)) { bits.fill(0); flags.fill(0); }
  }
});

test('a kernel-cut record still reassembles with the budget in place (pieces in reverse order)', () => {
  const msg = Buffer.from(`6,9,1,-;${'y'.repeat(8000)}\n`);
  const pieces = extendedDatagrams(msg, { release: '6.9.0', extradata: Buffer.from(' cpu=3\n taskname=kworker\n') });
  assert.ok(pieces.length > 8);
  const r = new NcfragReassembler({ maxFragmentsPerRecord: pieces.length });
  const res = pieces.reverse().map((p) => r.add('k', parseExtDatagram(p)!));
  const last = res[res.length - 1];
  assert.equal(last.kind, 'complete');
  if (last.kind === 'complete') assert.equal(last.record.bytes.toString(), `6.9.0,${msg.toString()} cpu=3\n taskname=kworker\n`);
});

test('netconsole receiver: the sparse-piece flood is counted by reason, and a real record from the same host still lands', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rawpoll-budget-nc-'));
  const events: CollectorEvent[] = [];
  const c = new NetconsoleCollector({ dir, onEvent: (e) => events.push(e) });
  const from = { address: '10.9.0.1', port: 6665 };
  try {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < 30_000; i++) c.handle(Buffer.from(`6,777,1,-,ncfrag=${2 * i}/262144;z`), from);
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    assert.ok(ms < 5000, `${ms} ms`);
    assert.equal(c.drops.too_many_fragments, 30_000 - NETCONSOLE_DEFAULTS.maxFragmentsPerRecord);
    assert.equal(c.stats.dropped, c.drops.too_many_fragments);
    assert.deepEqual(c.pending, { records: 1, bytes: 262144 });
    // One line says the record went over its budget; the other 28,975 pieces are only counted.
    const rejected = events.filter((e) => e.event === 'fragment-rejected');
    assert.equal(rejected.length, 1);
    assert.equal(rejected[0].code, 'too_many_fragments');
    assert.equal(rejected[0].seq, 777);
    for (const p of extendedDatagrams(Buffer.from(`6,778,2,-;${'r'.repeat(2500)}\n`))) c.handle(p, from);
    await c.close();
    assert.equal(c.drops.shutdown, 1, 'the flooded record, given up at close');
    assert.equal(readFileSync(c.logPath(from.address), 'utf8'), `6,778,2,-;${'r'.repeat(2500)}\n`);
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

// ---------------------------------------------------------------------------------------------------------------
// The server and the CLI: budgets passed through, drop reasons reported

test('CollectServer on loopback: the budgets reach both receivers, dropped lines per protocol name the new reasons', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rawpoll-budget-srv-'));
  const events: CollectEvent[] = [];
  const s = await CollectServer.start({
    dir, bind: '127.0.0.1', netconsolePort: 0, oopsPort: 0, dropReportMs: 60_000, idleMs: 600_000,
    maxDumpsPerHost: 1, maxQueuedWrites: 3, maxFragmentsPerRecord: 4, onEvent: (e) => events.push(e),
  });
  const sock = dgram.createSocket('udp4');
  const send = (b: Buffer, port: number) => new Promise<void>((r) => sock.send(b, port, '127.0.0.1', () => r()));
  let closed = false;
  try {
    assert.equal(s.oops!.opts.maxDumpsPerHost, 1);
    assert.equal(s.oops!.opts.maxQueuedWrites, 3);
    // Two one-chunk fakes from one address: the first gives way unwritten. Six pieces of one record: 2 over budget.
    await send(fake(1), s.ports.oops!);
    await send(fake(2), s.ports.oops!);
    for (let i = 0; i < 6; i++) await send(Buffer.from(`6,777,1,-,ncfrag=${2 * i}/262144;z`), s.ports.netconsole!);
    const until = Date.now() + 5000;
    while ((s.oops!.stats.datagrams < 2 || s.nc!.stats.datagrams < 6) && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    s.reportDrops();
    const oops = events.find((e) => e.event === 'dropped' && e.proto === 'netoops')!;
    assert.equal(oops.evicted_unconfirmed, 1);
    assert.equal(oops.open_dumps, 1);
    assert.equal(oops.queued_writes, 0);
    const nc = events.find((e) => e.event === 'dropped' && e.proto === 'netconsole')!;
    assert.equal(nc.too_many_fragments, 2);
    assert.equal(nc.open_records, 1);
    await s.close();
    closed = true;
    // At close: the flooded record counted as shutdown, in a second netconsole line.
    const last = events.filter((e) => e.event === 'dropped' && e.proto === 'netconsole').pop()!;
    assert.equal(last.shutdown, 1);
  } finally {
    sock.close();
    if (!closed) await s.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('rawpoll collect: the budget flags are checked like every other (exit 2, the value and the range named)', () => {
  for (const [flag, range] of [['--max-queued-writes', '1-100000'], ['--max-dumps-per-host', '1-100000'], ['--max-fragments', '1-262144']]) {
    const r = spawnSync(process.execPath, [RAWPOLL, 'collect', '--dir', tmpdir(), '--oops', '0', '--bind', '127.0.0.1', flag, '0'], { encoding: 'utf8', timeout: 20_000 });
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, new RegExp(`bad ${flag} '0': expected an integer ${range}`));
  }
});
