import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { formatEvent } from '../../src/cli/collect.js';
import { oopsCollector } from '../helpers/netoops.js';

/** Datagrams built by hand from PROTOCOLS.md §3 (v3, no user blob: arch_offset 88, arch 0, data_offset 88). */
function dgram(o: { dumpId: number; bootId: number; count: number; no: number; data: Buffer; type?: number }): Buffer {
  const b = Buffer.alloc(88 + 1024);
  b.writeUInt16LE(3, 0); b.writeUInt16LE(o.dumpId, 2); b.writeUInt16LE(88, 4); b.writeUInt16LE(0, 6);
  b.writeUInt16LE(88, 8); b.writeUInt16LE(o.type ?? 1, 10); b.writeUInt32LE(o.count, 12); b.writeUInt32LE(o.no, 16);
  b.writeUInt32LE(o.bootId, 20); b.write('6.9.0-test', 24, 'latin1');
  o.data.copy(b, 88);
  return b;
}

/** The log cut as netoops does: packet_no k carries chunk (count-1-k), the newest first. */
function dump(log: Buffer, dumpId: number, bootId: number): Buffer[] {
  const count = Math.ceil(log.length / 1024);
  const out: Buffer[] = [];
  for (let k = 0; k < count; k++) {
    const i = count - 1 - k;
    out.push(dgram({ dumpId, bootId, count, no: k, data: log.subarray(i * 1024, Math.min(log.length, i * 1024 + 1024)) }));
  }
  return out;
}

function textLog(n: number, tag = ''): Buffer {
  let s = '';
  for (let i = 0; s.length < n; i++) s += `<4>[${i}.000000] ${tag}line ${i} of the oops log\n`;
  return Buffer.from(s.slice(0, n));
}

const setup = (o: Parameters<typeof oopsCollector>[0] = {}) => oopsCollector(o, 60_000);

const A = { address: '10.9.0.1', port: 2004 };

test('collector: 3 retransmit rounds -> one complete log identical to the original, duplicates and late counted', async () => {
  const { dir, events, c, cleanup } = setup();
  try {
    const log = textLog(50 * 1024 + 123);
    const set = dump(log, 77, 0xabc);
    for (let round = 0; round < 3; round++) for (const d of set) c.handle(d, A);
    await c.flush();
    const done = events.filter((e) => e.event === 'dump-complete');
    assert.equal(done.length, 1);
    assert.deepEqual(readFileSync(done[0].file as string), log);
    const meta = JSON.parse(readFileSync(done[0].sidecar as string, 'utf8'));
    assert.equal(meta.complete, true);
    assert.deepEqual(meta.missing_packet_no, []);
    assert.equal(meta.packet_count, 51);
    assert.equal(meta.dump_id, 77);
    assert.equal(meta.boot_id, 0xabc);
    assert.equal(meta.kernel_version, '6.9.0-test');
    assert.equal(meta.version, 3);
    assert.equal(meta.data_offset, 88);
    assert.equal(meta.arch_offset, 88);
    assert.equal(c.drops.late, 102);
    assert.equal(events.filter((e) => e.event === 'new-host').length, 1);
    await c.close();
    assert.deepEqual(readdirSync(dir).filter((f) => f.includes('.tmp-')), []);
  } finally { cleanup(); }
});

test('collector: out-of-order and duplicates inside a round still give the right order', async () => {
  const { events, c, cleanup } = setup();
  try {
    const log = textLog(10 * 1024 - 5);
    const set = dump(log, 1, 2);
    const shuffled = [set[3], set[9], set[0], set[0], set[5], set[1], set[8], set[2], set[7], set[4], set[6], set[3]];
    for (const d of shuffled) c.handle(d, A);
    await c.flush();
    const done = events.find((e) => e.event === 'dump-complete')!;
    assert.deepEqual(readFileSync(done.file as string), log);
    assert.equal(c.drops.duplicate, 1); // set[0] twice before completion; the last set[3] came after: late
    assert.equal(c.drops.late, 1);
    await c.close();
  } finally { cleanup(); }
});

test('collector: missing chunks -> partial after idle, sidecar names exactly the missing packet_no and gaps', async () => {
  const { events, c, cleanup } = setup({ idleMs: 1000 });
  try {
    const log = textLog(8 * 1024);
    const set = dump(log, 5, 6);
    const t0 = 1_000_000;
    set.forEach((d, k) => { if (k !== 2 && k !== 6) c.handle(d, A, t0); });
    c.sweep(t0 + 999);
    await c.flush();
    assert.equal(events.filter((e) => e.event.startsWith('dump-')).length, 0);
    c.sweep(t0 + 1000);
    await c.flush();
    const part = events.find((e) => e.event === 'dump-partial')!;
    assert.deepEqual(part.missing, [6, 2]);
    const meta = JSON.parse(readFileSync(part.sidecar as string, 'utf8'));
    assert.equal(meta.complete, false);
    assert.equal(meta.reason, 'idle');
    assert.deepEqual(meta.missing_packet_no, [6, 2]);
    // packet_no 6 = chunk 1 (bytes 1024..2047), packet_no 2 = chunk 5 (bytes 5120..6143)
    const expectLog = Buffer.concat([log.subarray(0, 1024), log.subarray(2048, 5120), log.subarray(6144)]);
    assert.deepEqual(readFileSync(part.file as string), expectLog);
    assert.deepEqual(meta.gaps, [{ at: 1024, packet_no: 6 }, { at: 4096, packet_no: 2 }]);
    await c.close();
  } finally { cleanup(); }
});

test('collector: same key, different content (two dumps in one second) -> second file, not dropped as late', async () => {
  const { events, c, cleanup } = setup();
  try {
    const l1 = textLog(3000, 'first ');
    const l2 = textLog(3000, 'second ');
    for (const d of dump(l1, 9, 9)) c.handle(d, A);
    for (const d of dump(l2, 9, 9)) c.handle(d, A);
    await c.flush();
    const done = events.filter((e) => e.event === 'dump-complete');
    assert.equal(done.length, 2);
    assert.deepEqual(readFileSync(done[0].file as string), l1);
    assert.deepEqual(readFileSync(done[1].file as string), l2);
    assert.notEqual(done[0].file, done[1].file);
    await c.close();
  } finally { cleanup(); }
});

test('collector: different hosts and boot ids are separate dumps', async () => {
  const { events, c, cleanup } = setup();
  try {
    const l = textLog(2000);
    for (const d of dump(l, 1, 1)) c.handle(d, A);
    for (const d of dump(l, 1, 2)) c.handle(d, A);
    for (const d of dump(l, 1, 1)) c.handle(d, { address: '10.9.0.2', port: 2004 });
    await c.flush();
    assert.equal(events.filter((e) => e.event === 'dump-complete').length, 3);
    assert.equal(events.filter((e) => e.event === 'new-host').length, 2);
    await c.close();
  } finally { cleanup(); }
});

test('collector: garbage is counted by reason, memory stays within the caps', async () => {
  const { c, events, cleanup } = setup({ maxOpenDumps: 4, maxBytesPerDump: 64 * 1024, maxTotalBytes: 16 * 1024 });
  try {
    for (let i = 0; i < 3000; i++) {
      const r = Buffer.alloc(Math.floor(Math.random() * 1500));
      for (let j = 0; j < r.length; j++) r[j] = Math.floor(Math.random() * 256);
      c.handle(r, A);
    }
    const good = dgram({ dumpId: 1, bootId: 1, count: 10, no: 0, data: Buffer.from('x') });
    c.handle(good.subarray(0, 20), A); // truncated header
    c.handle(good.subarray(0, 500), A); // truncated data
    const absurd = Buffer.from(good); absurd.writeUInt32LE(0xffffffff, 12);
    c.handle(absurd, A);
    // many plausible partial dumps: caps force eviction
    for (let id = 0; id < 40; id++) {
      for (let no = 0; no < 8; no++) c.handle(dgram({ dumpId: id, bootId: 7, count: 60, no, data: Buffer.from(`d${id}n${no}`) }), A);
      assert.ok(c.bufferedBytes <= 16 * 1024, `buffered ${c.bufferedBytes}`);
      assert.ok(c.stats.openDumps <= 4);
    }
    assert.ok(c.drops.truncated >= 2);
    assert.ok(c.drops.too_big >= 1);
    assert.ok(c.drops.version > 2000);
    await c.close();
    assert.equal(c.bufferedBytes, 0);
    // Every dump is accounted for: written as partial, or dropped for the write backlog (a queued dump costs its
    // packet table and header too, so 16 KiB of --max-bytes hold only a few of them).
    const partial = events.filter((e) => e.event === 'dump-partial');
    const dropped = events.filter((e) => e.event === 'dump-dropped');
    assert.equal(partial.length + dropped.length, 40);
    assert.equal(c.drops.backlog, dropped.length);
    assert.ok(partial.some((e) => e.reason === 'evicted'));
    assert.equal(c.stats.queuedWrites, 0);
  } finally { cleanup(); }
});

test('formatEvent: one line, text or JSON', () => {
  const t = new Date('2026-01-02T03:04:05.000Z');
  const e = { event: 'dump-complete', host: '10.0.0.1', bytes: 10, kernel: '6.1 x', missing: [1, 2] };
  assert.equal(formatEvent(e, false, t), '2026-01-02T03:04:05.000Z dump-complete 10.0.0.1 bytes=10 kernel="6.1 x" missing=[1,2]');
  assert.deepEqual(JSON.parse(formatEvent(e, true, t)), { time: '2026-01-02T03:04:05.000Z', ...e });
});
