// netconsole payload formats. Expected bytes are written out by hand from PROTOCOLS.md §2 and
// drivers/net/netconsole.c, never produced by the code under test.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  parseNetconsoleConfig, parseNetconsoleTarget, basicDatagrams, escapeExtText, unescapeExtText, formatExtRecord,
  formatExtradata, extendedDatagrams, parseExtDatagram, NcfragReassembler, MAX_PRINT_CHUNK,
  type EvictedPartial,
} from '../../src/proto/netconsole.js';
import { UsageError } from '../../src/errors.js';

const ip = (a: number, b: number, c: number, d: number) => ((a << 24) | (b << 16) | (c << 8) | d) >>> 0;

test('config: the full kernel syntax, extended + release', () => {
  const [t] = parseNetconsoleConfig('+r6665@10.0.0.7/eth1,6666@10.0.0.9/02:00:00:00:00:09');
  assert.equal(t.extended, true);
  assert.equal(t.release, true);
  assert.equal(t.srcPort, 6665);
  assert.deepEqual(t.src, { family: 4, ip: ip(10, 0, 0, 7) });
  assert.equal(t.dev, 'eth1');
  assert.equal(t.dstPort, 6666);
  assert.deepEqual(t.dst, { family: 4, ip: ip(10, 0, 0, 9) });
  assert.deepEqual([...t.dstMac!], [2, 0, 0, 0, 0, 9]);
});

test('config: every optional part left out takes the kernel defaults', () => {
  const [t] = parseNetconsoleConfig('@/,@192.168.1.2/');
  assert.deepEqual(
    { ...t, dstMac: t.dstMac, devMac: t.devMac },
    { extended: false, release: false, srcPort: 6665, src: null, dev: null, devMac: null, dstPort: 6666,
      dst: { family: 4, ip: ip(192, 168, 1, 2) }, dstMac: null },
  );
});

test('config: several targets separated by ;, local MAC in place of the device', () => {
  const ts = parseNetconsoleConfig('4444@10.1.1.1/eth0,9353@10.1.1.2/12:34:56:78:9a:bc;+@/02:aa:bb:cc:dd:ee,7777@10.1.1.3/');
  assert.equal(ts.length, 2);
  assert.equal(ts[0].srcPort, 4444);
  assert.equal(ts[0].dstPort, 9353);
  assert.deepEqual([...ts[0].dstMac!], [0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc]);
  assert.equal(ts[1].extended, true);
  assert.equal(ts[1].dev, null);
  assert.deepEqual([...ts[1].devMac!], [2, 0xaa, 0xbb, 0xcc, 0xdd, 0xee]);
  assert.equal(ts[1].dstPort, 7777);
});

test('config: bad input is a UsageError naming the bad part', () => {
  const cases: Array<[string, RegExp]> = [
    ['r@/,@10.0.0.9/', /'r'.*\+r/],
    ['70000@/eth0,@10.0.0.9/', /'70000'.*source port/],
    ['@10.0.0.300/eth0,@10.0.0.9/', /'10\.0\.0\.300'/],
    ['@/eth0,@10.0.0.9', /'10\.0\.0\.9'.*'\/'/],
    ['@/eth0,@/', /target IP is required/],
    ['@/eth0,@10.0.0.9/zz:00:00:00:00:01', /'zz:00:00:00:00:01'.*target MAC/],
    ['6665/eth0,@10.0.0.9/', /'6665\/eth0,'.*source port/],
    ['6665', /missing '@'/],
    ['', /empty target/],
    ['@/eth0,@10.0.0.9/;;@/eth0,@10.0.0.8/', /empty target/],
    ['@/eth0,@10.0.0.9/;', /empty target/], // trailing ';': the kernel rejects the empty target it leaves
  ];
  for (const [s, re] of cases) {
    assert.throws(() => parseNetconsoleConfig(s), (e: unknown) => e instanceof UsageError && re.test(e.message), s);
  }
  assert.throws(() => parseNetconsoleTarget('@/averyveryverylongifname,@10.0.0.9/'), /15 characters/);
});

test('basic: text cut into pieces of at most 1000 bytes, no header', () => {
  const text = Buffer.alloc(2500);
  for (let i = 0; i < text.length; i++) text[i] = 0x41 + (i % 26);
  const d = basicDatagrams(text);
  assert.deepEqual(d.map((x) => x.length), [1000, 1000, 500]);
  assert.deepEqual(Buffer.concat(d), text);
  assert.deepEqual(basicDatagrams(Buffer.from('hello\n')), [Buffer.from('hello\n')]);
  assert.deepEqual(basicDatagrams(Buffer.alloc(0)), []);
});

test('escape: bytes < 0x20, >= 0x7f and backslash as \\xNN (lowercase)', () => {
  const raw = Buffer.from([0x61, 0x09, 0x5c, 0x7f, 0xc3, 0xa9, 0x20, 0x7e]);
  assert.equal(escapeExtText(raw).toString('latin1'), 'a\\x09\\x5c\\x7f\\xc3\\xa9 ~');
  assert.deepEqual(unescapeExtText(Buffer.from('a\\x09\\x5c\\x7f\\xc3\\xa9 ~')), raw);
});

test('record: <prio>,<seq>,<usec>,<flag>;<text>\\n with dictionary lines', () => {
  const r = formatExtRecord({ level: 6, facility: 0, seq: 42, usec: 1234567, text: 'eth0: link up\tnow',
    dict: [['SUBSYSTEM', 'net'], ['DEVICE', 'n2'], ['EMPTY', '']] });
  assert.equal(r.toString('latin1'), '6,42,1234567,-;eth0: link up\\x09now\n SUBSYSTEM=net\n DEVICE=n2\n');
  const c = formatExtRecord({ level: 3, seq: 0, usec: 0, cont: true, text: Buffer.from('x') });
  assert.equal(c.toString(), '11,0,0,c;x\n'); // facility 1 (user) << 3 | 3
  assert.throws(() => formatExtRecord({ level: 8, seq: 0, usec: 0, text: '' }), UsageError);
});

test('extradata: userdata lines then sysdata cpu, taskname, release, msgid in the kernel order', () => {
  const e = formatExtradata([['dc', 'fra1'], ['rack', 'b12']], { msgid: 7, cpu: 1, release: '6.8.0', taskname: 'rawpoll' });
  assert.equal(e.toString(), ' dc=fra1\n rack=b12\n cpu=1\n taskname=rawpoll\n release=6.8.0\n msgid=7\n');
  assert.equal(formatExtradata().length, 0);
});

test('extended: a short record goes out whole, release prefix then extradata', () => {
  const msg = Buffer.from('6,1,100,-;hello\n');
  assert.deepEqual(extendedDatagrams(msg), [msg]);
  const d = extendedDatagrams(msg, { release: '6.8.0-rawpoll', extradata: Buffer.from(' k=v\n') });
  assert.deepEqual(d, [Buffer.from('6.8.0-rawpoll,6,1,100,-;hello\n k=v\n')]);
});

test('extended: exactly 1000 bytes is one datagram, 1001 are fragmented', () => {
  const head = '6,7,8,-;';
  const fit = Buffer.from(head + 'a'.repeat(1000 - head.length - 1) + '\n');
  assert.equal(fit.length, 1000);
  assert.deepEqual(extendedDatagrams(fit), [fit]);
  const over = Buffer.from(head + 'a'.repeat(1000 - head.length) + '\n');
  const d = extendedDatagrams(over);
  // body = 993 bytes. First piece: "6,7,8,-,ncfrag=0/993;" is 21 bytes, so 979 bytes of body.
  assert.equal(d.length, 2);
  assert.equal(d[0].toString(), '6,7,8,-,ncfrag=0/993;' + 'a'.repeat(979));
  assert.equal(d[1].toString(), '6,7,8,-,ncfrag=979/993;' + 'a'.repeat(13) + '\n');
});

test('extended: 5000-byte text with release and userdata, byte for byte like the kernel', () => {
  const text = Buffer.alloc(5000);
  for (let i = 0; i < text.length; i++) text[i] = 0x30 + (i % 10);
  const msg = Buffer.concat([Buffer.from('4,17,99000,-;'), text, Buffer.from('\n')]);
  const extra = Buffer.from(' host=lab\n');
  const d = extendedDatagrams(msg, { release: '6.1.0', extradata: extra });
  // Hand-built: data = text + "\n" + " host=lab\n" = 5011 bytes; header "6.1.0,4,17,99000,-" (18 bytes).
  const data = Buffer.concat([text, Buffer.from('\n host=lab\n')]);
  assert.equal(data.length, 5011);
  const expect: Buffer[] = [];
  let off = 0;
  while (off < data.length) {
    const h = `6.1.0,4,17,99000,-,ncfrag=${off}/5011;`;
    const n = Math.min(1000 - h.length, data.length - off);
    expect.push(Buffer.concat([Buffer.from(h), data.subarray(off, off + n)]));
    off += n;
  }
  assert.deepEqual(d, expect);
  assert.ok(d.every((x) => x.length <= MAX_PRINT_CHUNK));
  assert.equal(d[0].length, 1000);
  // First two pieces, written out literally.
  assert.equal(d[0].subarray(0, 33).toString(), '6.1.0,4,17,99000,-,ncfrag=0/5011;');
  assert.equal(d[1].subarray(0, 35).toString(), '6.1.0,4,17,99000,-,ncfrag=967/5011;');
  // The last piece ends with the userdata line.
  assert.ok(d[d.length - 1].toString().endsWith('6789\n host=lab\n'));
});

test('parse: extended datagrams with and without release, fragments, garbage', () => {
  const p = parseExtDatagram(Buffer.from('6.1.0,4,17,99000,-,caller=T12,ncfrag=967/5011;abc'))!;
  assert.equal(p.release, '6.1.0');
  assert.equal(p.prio, 4);
  assert.equal(p.level, 4);
  assert.equal(p.facility, 0);
  assert.equal(p.seq, 17);
  assert.equal(p.usec, 99000);
  assert.equal(p.cont, false);
  assert.deepEqual(p.extra, ['caller=T12']);
  assert.equal(p.header, '6.1.0,4,17,99000,-,caller=T12');
  assert.deepEqual(p.frag, { offset: 967, total: 5011 });
  assert.equal(p.body.toString(), 'abc');
  const q = parseExtDatagram(Buffer.from('14,3,5,c;hi\n'))!;
  assert.equal(q.release, null);
  assert.equal(q.facility, 1);
  assert.equal(q.level, 6);
  assert.equal(q.cont, true);
  assert.equal(q.frag, null);
  for (const g of ['[  1.0] plain console line\n', 'a,b,c,d;x', '6,1,2;x', '6,1,2,x;x', '6,1,2,-,ncfrag=5/5;x',
    '6,1,2,-,ncfrag=0/0;', '', ';;;', '6,1,2,-,ncfrag=1/9,ncfrag=2/9;x']) {
    assert.equal(parseExtDatagram(Buffer.from(g)), null, g);
  }
});

test('reassembly: out-of-order and duplicated pieces give back the unfragmented record', () => {
  const text = 'x'.repeat(2300);
  const msg = Buffer.from(`6,9,1,-;${text}\n`);
  const pieces = extendedDatagrams(msg, { release: 'r1', extradata: Buffer.from(' a=b\n') });
  assert.equal(pieces.length, 3);
  const r = new NcfragReassembler();
  const order = [2, 0, 2, 1];
  const kinds = order.map((i) => r.add('h', parseExtDatagram(pieces[i])!).kind);
  assert.deepEqual(kinds, ['partial', 'partial', 'duplicate', 'complete']);
  const again = new NcfragReassembler();
  let done: Buffer | null = null;
  for (const i of [1, 2, 0]) {
    const res = again.add('h', parseExtDatagram(pieces[i])!);
    if (res.kind === 'complete') done = res.record.bytes;
  }
  assert.equal(done!.toString(), `r1,6,9,1,-;${text}\n a=b\n`);
  assert.equal(again.openCount, 0);
});

test('reassembly: bounded — oldest open record evicted, oversize totals rejected', () => {
  const evicted: EvictedPartial[] = [];
  const r = new NcfragReassembler({ maxOpen: 2, maxRecordBytes: 4096, onEvict: (e) => evicted.push(e) });
  for (const seq of [1, 2, 3]) {
    assert.equal(r.add('h', parseExtDatagram(Buffer.from(`6,${seq},0,-,ncfrag=0/2000;abc`))!).kind, 'partial');
  }
  assert.equal(r.openCount, 2);
  assert.deepEqual(evicted.map((e) => [e.seq, e.have, e.total, e.code]), [[1, 3, 2000, 'evicted']]);
  assert.equal(r.openBytes, 4000);
  const big = r.add('h', parseExtDatagram(Buffer.from('6,4,0,-,ncfrag=0/999999;abc'))!);
  assert.deepEqual(big.kind === 'rejected' && big.code, 'too_big');
  const past = r.add('h', parseExtDatagram(Buffer.from('6,5,0,-,ncfrag=1999/2000;abc'))!);
  assert.deepEqual(past.kind === 'rejected' && past.code, 'bad_range');
  const perKey = new NcfragReassembler({ maxBytesPerKey: 3000, onEvict: (e) => evicted.push(e) });
  perKey.add('a', parseExtDatagram(Buffer.from('6,1,0,-,ncfrag=0/2000;x'))!);
  perKey.add('b', parseExtDatagram(Buffer.from('6,1,0,-,ncfrag=0/2000;x'))!);
  perKey.add('a', parseExtDatagram(Buffer.from('6,2,0,-,ncfrag=0/2000;x'))!);
  assert.equal(perKey.openCount, 2);
  assert.equal(evicted[evicted.length - 1].key, 'a');
  assert.equal(evicted[evicted.length - 1].seq, 1);
  r.flush();
  assert.equal(r.openCount, 0);
  assert.equal(r.openBytes, 0);
  assert.deepEqual(evicted.slice(-2).map((e) => e.code), ['shutdown', 'shutdown']);
});
