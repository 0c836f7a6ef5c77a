// Message sources and the per-target formatter of `rawpoll netconsole` (no network). Expected bytes by hand.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { LineSplitter, streamLines, kmsgRecords, type KmsgDevice } from '../../src/tx/sources.js';
import { parseKmsgRecord } from '../../src/proto/kmsg.js';
import { NetconsoleFormatter } from '../../src/proto/netconsole.js';
import { UsageError } from '../../src/errors.js';

test('LineSplitter: lines across chunk boundaries, a last line without newline, long lines cut', () => {
  const s = new LineSplitter(8);
  assert.deepEqual(s.push(Buffer.from('ab')).map(String), []);
  assert.deepEqual(s.push(Buffer.from('c\nde\n\nf')).map(String), ['abc', 'de', '']);
  assert.deepEqual(s.push(Buffer.from('0123456789abcdefXY\nz')).map(String), ['f0123456', '789abcde', 'fXY']);
  assert.equal(String(s.end()), 'z');
  assert.equal(s.end(), null);
});

test('streamLines: every line of a stream, in order', async () => {
  const got: string[] = [];
  for await (const l of streamLines(Readable.from([Buffer.from('one\ntw'), Buffer.from('o\nthree')]))) got.push(String(l));
  assert.deepEqual(got, ['one', 'two', 'three']);
});

test('parseKmsgRecord: header fields, unescaped text, dictionary ignored', () => {
  const r = parseKmsgRecord(Buffer.from('30,1234,5678901,-,caller=T42;eth0: a\\x09b \\x5c end\n SUBSYSTEM=net\n DEVICE=n2\n'))!;
  assert.equal(r.prio, 30);
  assert.equal(r.facility, 3);
  assert.equal(r.level, 6);
  assert.equal(r.seq, 1234);
  assert.equal(r.usec, 5678901);
  assert.equal(r.cont, false);
  assert.equal(r.text.toString('latin1'), 'eth0: a\tb \\ end');
  assert.equal(parseKmsgRecord(Buffer.from('garbage')), null);
});

/** A stand-in for /dev/kmsg: one record per read, EAGAIN when empty, EPIPE when told. */
function fakeKmsg(script: Array<string | 'EAGAIN' | 'EPIPE'>): KmsgDevice & { closed: boolean } {
  const dev = {
    closed: false,
    read(buf: Buffer): number {
      const next = script.shift() ?? 'EAGAIN';
      if (next === 'EAGAIN' || next === 'EPIPE') throw Object.assign(new Error(next), { code: next });
      return buf.write(next, 'latin1');
    },
    close() { dev.closed = true; },
  };
  return dev;
}

test('kmsgRecords: skips the backlog, reports records lost to an overrun (EPIPE + seq jump), stops on abort', async () => {
  const dev = fakeKmsg(['6,1,10,-;old\n', '6,2,20,-;old\n', 'EAGAIN', '4,3,30,-;new\n', 'EPIPE', '3,9,90,-;after overrun\n']);
  const ac = new AbortController();
  const lost: Array<[number, number]> = [];
  let readyBefore = -1;
  const got: Array<[number, number, string]> = [];
  for await (const r of kmsgRecords({ device: dev, signal: ac.signal, pollMs: 1, onLost: (n, s) => lost.push([n, s]), onReady: () => (readyBefore = got.length) })) {
    got.push([r.seq, r.level, r.text.toString()]);
    if (got.length === 2) ac.abort();
  }
  assert.equal(readyBefore, 0);
  assert.deepEqual(got, [[3, 4, 'new'], [9, 3, 'after overrun']]);
  assert.deepEqual(lost, [[5, 9]]);
  assert.equal(dev.closed, true);
});

test('kmsgRecords --from-start: the backlog comes first', async () => {
  const dev = fakeKmsg(['6,1,10,-;a\n', '6,2,20,-;b\n']);
  const ac = new AbortController();
  const seqs: number[] = [];
  for await (const r of kmsgRecords({ device: dev, fromStart: true, signal: ac.signal, pollMs: 1 })) {
    seqs.push(r.seq);
    if (seqs.length === 2) ac.abort();
  }
  assert.deepEqual(seqs, [1, 2]);
});

test('formatter, basic: the line and its newline, cut at 1000 bytes; kmsg records as console lines', () => {
  const f = new NetconsoleFormatter({ extended: false });
  assert.deepEqual(f.line(Buffer.from('hello'), 5), [Buffer.from('hello\n')]);
  const d = f.line(Buffer.alloc(1500, 0x61), 5);
  assert.deepEqual(d.map((x) => x.length), [1000, 501]);
  assert.deepEqual(f.kmsg(Buffer.from('6,7,1234567,-;x\n'), 1234567, Buffer.from('link up')), [Buffer.from('[    1.234567] link up\n')]);
  assert.deepEqual(f.kmsg(Buffer.from(''), 123456789012, Buffer.from('late')), [Buffer.from('[123456.789012] late\n')]);
});

test('formatter, extended: seq from 0, level/facility, userdata then sysdata with msgid counting from 1', () => {
  let cpu = 0;
  const f = new NetconsoleFormatter({
    extended: true, level: 3, release: '6.9.0', userdata: [['dc', 'fra1']],
    sysdata: { cpu: () => cpu++, taskname: 'rawpoll', release: '6.9.0', msgid: true },
  });
  assert.deepEqual(f.line(Buffer.from('a\\b'), 1000).map(String),
    ['6.9.0,11,0,1000,-;a\\x5cb\n dc=fra1\n cpu=0\n taskname=rawpoll\n release=6.9.0\n msgid=1\n']);
  assert.deepEqual(f.line(Buffer.from('c'), 2000).map(String),
    ['6.9.0,11,1,2000,-;c\n dc=fra1\n cpu=1\n taskname=rawpoll\n release=6.9.0\n msgid=2\n']);
  // A kmsg record goes out verbatim (the kernel's bytes), with the extradata after it.
  assert.deepEqual(f.kmsg(Buffer.from('0,55,66,-;kernel\n SUBSYSTEM=net\n'), 66, Buffer.from('kernel')).map(String),
    ['6.9.0,0,55,66,-;kernel\n SUBSYSTEM=net\n dc=fra1\n cpu=2\n taskname=rawpoll\n release=6.9.0\n msgid=3\n']);
  const plain = new NetconsoleFormatter({ extended: true });
  assert.deepEqual(plain.line(Buffer.from('x'), 0).map(String), ['14,0,0,-;x\n']);
  assert.throws(() => new NetconsoleFormatter({ extended: false, release: '6.9.0' }), UsageError);
  assert.throws(() => new NetconsoleFormatter({ extended: false, userdata: [['a', 'b']] }), UsageError);
  assert.throws(() => new NetconsoleFormatter({ extended: true, level: 9 }), UsageError);
});
