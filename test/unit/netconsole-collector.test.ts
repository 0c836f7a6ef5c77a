// NetconsoleCollector fed datagrams directly (no network). Datagrams are written out by hand per PROTOCOLS.md §2.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, readdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NetconsoleCollector, type CollectorEvent } from '../../src/rx/nclog.js';

function setup(o: Partial<ConstructorParameters<typeof NetconsoleCollector>[0]> = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'rp-nclog-'));
  const events: CollectorEvent[] = [];
  const c = new NetconsoleCollector({ dir, onEvent: (e) => events.push(e), ...o });
  return { dir, events, c, log: (h: string) => readFileSync(join(dir, 'netconsole', `${h}.log`)) };
}

const A = { address: '10.9.0.1', port: 6665 };
const B = { address: '10.9.0.2', port: 6665 };

test('basic lines are appended per host as they come', async () => {
  const { dir, events, c, log } = setup();
  try {
    c.handle(Buffer.from('[    1.000] hello\n'), A);
    c.handle(Buffer.from('from b\n'), B);
    c.handle(Buffer.from('[    2.000] second\n'), A);
    await c.close();
    assert.equal(log('10.9.0.1').toString(), '[    1.000] hello\n[    2.000] second\n');
    assert.equal(log('10.9.0.2').toString(), 'from b\n');
    assert.deepEqual(events.filter((e) => e.event === 'new-host').map((e) => e.host), ['10.9.0.1', '10.9.0.2']);
    assert.equal(c.stats.basic, 3);
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('extended: fragments out of order and duplicated, reassembled into the unfragmented record', async () => {
  const { dir, events, c, log } = setup();
  try {
    // A 2100-byte body "0123456789…" + "\n" (2101 bytes) split as the kernel does it, header "6,5,77,-".
    const body = Buffer.alloc(2101);
    for (let i = 0; i < 2100; i++) body[i] = 0x30 + (i % 10);
    body[2100] = 0x0a;
    const h0 = '6,5,77,-,ncfrag=0/2101;';          // 23 bytes -> 977 of body
    const h1 = '6,5,77,-,ncfrag=977/2101;';        // 25 bytes -> 975
    const h2 = '6,5,77,-,ncfrag=1952/2101;';       // 26 bytes -> the last 149
    const p0 = Buffer.concat([Buffer.from(h0), body.subarray(0, 977)]);
    const p1 = Buffer.concat([Buffer.from(h1), body.subarray(977, 1952)]);
    const p2 = Buffer.concat([Buffer.from(h2), body.subarray(1952)]);
    assert.equal(p0.length, 1000);
    assert.equal(p1.length, 1000);
    c.handle(Buffer.from('6,4,70,-;before\n'), A);
    c.handle(p2, A);
    c.handle(p0, A);
    c.handle(p0, A);
    c.handle(p1, A);
    c.handle(Buffer.from('6,6,80,-;after\n'), A);
    await c.close();
    const expect = Buffer.concat([Buffer.from('6,4,70,-;before\n6,5,77,-;'), body, Buffer.from('6,6,80,-;after\n')]);
    assert.deepEqual(log('10.9.0.1'), expect);
    assert.equal(events.filter((e) => e.event === 'duplicate-fragment').length, 1);
    assert.deepEqual(events.filter((e) => e.event === 'reassembled').map((e) => [e.seq, e.fragments]), [[5, 3]]);
    assert.equal(events.filter((e) => e.event.startsWith('seq-')).length, 0);
    assert.equal(c.stats.records, 3);
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('extended with release prefix and userdata keeps them in the record', async () => {
  const { dir, c, log } = setup();
  try {
    c.handle(Buffer.from('6.8.0-1,6,0,1,-;x\n dc=fra1\n'), A);
    await c.close();
    assert.equal(log('10.9.0.1').toString(), '6.8.0-1,6,0,1,-;x\n dc=fra1\n');
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('seq gaps, restarts and late records are reported per source', async () => {
  const { dir, events, c } = setup();
  try {
    for (const s of [10, 11, 15, 12, 0, 1]) c.handle(Buffer.from(`6,${s},0,-;m${s}\n`), A);
    c.handle(Buffer.from('6,100,0,-;other port\n'), { address: A.address, port: 7000 });
    await c.close();
    const seqEvents = events.filter((e) => e.event.startsWith('seq-')).map((e) => [e.event, e.expected, e.got]);
    assert.deepEqual(seqEvents, [['seq-gap', 12, 15], ['seq-late', 16, 12], ['seq-restart', 16, 0]]);
    const gap = events.find((e) => e.event === 'seq-gap')!;
    assert.equal(gap.missing, 3);
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('a record never completed is reported at close and not written', async () => {
  const { dir, events, c } = setup();
  try {
    c.handle(Buffer.from('6,1,0,-,ncfrag=0/1500;half'), A);
    assert.deepEqual(c.pending, { records: 1, bytes: 1500 });
    await c.close();
    const d = events.find((e) => e.event === 'fragments-dropped')!;
    assert.equal(d.host, '10.9.0.1');
    assert.equal(d.seq, 1);
    assert.equal(d.have, 4);
    assert.equal(d.total, 1500);
    assert.equal(existsSync(join(dir, 'netconsole', '10.9.0.1.log')), false);
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('garbage: random datagrams, absurd ncfrag totals, many sources — keeps running, bounded, says what it dropped', async () => {
  const { dir, events, c } = setup({ maxOpenFragments: 16, maxBytesPerHost: 64 * 1024, maxOpenFiles: 4 });
  try {
    let seed = 12345;
    const rnd = () => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 16;
    for (let i = 0; i < 2000; i++) {
      const len = rnd() % 1500;
      const b = Buffer.alloc(len);
      for (let j = 0; j < len; j++) b[j] = rnd() & 0xff;
      c.handle(b, { address: `10.9.${i % 7}.${i % 200}`, port: rnd() });
    }
    c.handle(Buffer.from('6,1,0,-,ncfrag=0/4000000000;x'), A);
    c.handle(Buffer.from('6,1,0,-,ncfrag=10/20;' + 'y'.repeat(50)), A);
    for (let i = 0; i < 300; i++) {
      c.handle(Buffer.from(`6,${i},0,-,ncfrag=0/60000;piece`), { address: `10.8.${i >> 8}.${i & 255}`, port: 6665 });
      assert.ok(c.pending.records <= 16);
    }
    assert.ok(c.pending.bytes <= 16 * 60000);
    c.handle(Buffer.from('6,2,0,-;still alive\n'), B);
    await c.close();
    assert.equal(readFileSync(join(dir, 'netconsole', '10.9.0.2.log')).toString().endsWith('6,2,0,-;still alive\n'), true);
    const dropped = events.filter((e) => e.event === 'fragment-rejected');
    assert.ok(dropped.some((e) => /limit/.test(String(e.reason))));
    assert.ok(dropped.some((e) => /runs past/.test(String(e.reason))));
    assert.ok(events.filter((e) => e.event === 'fragments-dropped').length >= 300 - 16);
    assert.ok(readdirSync(join(dir, 'netconsole')).length > 100);
  } finally { rmSync(dir, { recursive: true, force: true }); }
});
