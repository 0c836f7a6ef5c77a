/**
 * PcapFileWriter as tcpdump -w: where PATH goes (pcapTarget), µs and ns files read back by tcpdump's own rules
 * (magic, then per record the fraction below 10^6 or 10^9), and abort leaving nothing. No root, no network.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, symlinkSync, lstatSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PcapFileWriter, pcapTarget, PCAP_MAGIC_NSEC } from '../../src/link/pcapwriter.js';
import { parsePcap, PCAP_MAGIC } from '../../src/wire/pcapfile.js';
import { RuntimeError } from '../../src/errors.js';

const tmp = mkdtempSync(join(tmpdir(), 'rawpoll-pcapw-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const frame = Buffer.alloc(60, 0xab);

test('pcapTarget: - is stdout, /dev/null a special file, a directory and a missing parent refused naming the path', () => {
  assert.deepEqual(pcapTarget('-'), { kind: 'stdout' });
  assert.deepEqual(pcapTarget('/dev/null'), { kind: 'special', path: '/dev/null' });
  assert.deepEqual(pcapTarget(join(tmp, 'new.pcap')), { kind: 'file', path: join(tmp, 'new.pcap') });
  assert.throws(() => pcapTarget(tmp), (e: Error) => e instanceof RuntimeError && e.message === `cannot write ${tmp}: it is a directory; give a file name, a FIFO or a device, or - for standard output`);
  assert.throws(() => pcapTarget(join(tmp, 'no', 'x.pcap')), /directory .*\/no does not exist/);
  assert.deepEqual(readdirSync(tmp), []);
});

test('a symlink to a file: the file it points to is replaced, the link stays a link', () => {
  const d = join(tmp, 'link');
  mkdirSync(d);
  writeFileSync(join(d, 'real.pcap'), 'old');
  symlinkSync('real.pcap', join(d, 'l.pcap'));
  const w = new PcapFileWriter(join(d, 'l.pcap'));
  w.send(frame);
  w.close();
  assert.ok(lstatSync(join(d, 'l.pcap')).isSymbolicLink());
  assert.equal(parsePcap(readFileSync(join(d, 'real.pcap'))).records.length, 1);
  assert.deepEqual(readdirSync(d).sort(), ['l.pcap', 'real.pcap']);
});

test('µs and ns files: the magic says which, the fraction stays below 10^6 or 10^9, and both say the same time', () => {
  const read = (nano: boolean) => {
    const p = join(tmp, nano ? 'ns.pcap' : 'us.pcap');
    const t0 = Date.now();
    const w = new PcapFileWriter(p, { nano });
    for (let i = 0; i < 3; i++) w.send(frame);
    w.close();
    const b = readFileSync(p);
    rmSync(p);
    const recs = [0, 1, 2].map((i) => ({ sec: b.readUInt32LE(24 + i * 76), frac: b.readUInt32LE(28 + i * 76) }));
    return { magic: b.readUInt32LE(0), recs, t0 };
  };
  const us = read(false);
  assert.equal(us.magic, PCAP_MAGIC);
  const ns = read(true);
  assert.equal(ns.magic, PCAP_MAGIC_NSEC);
  for (const r of us.recs) assert.ok(r.frac < 1e6);
  for (const r of ns.recs) assert.ok(r.frac < 1e9);
  const ms = (r: { sec: number; frac: number }, div: number) => r.sec * 1000 + r.frac / div;
  assert.ok(Math.abs(ms(ns.recs[0], 1e6) - ns.t0) < 1000, 'ns record within a second of the wall clock');
  assert.ok(Math.abs(ms(us.recs[0], 1e3) - us.t0) < 1000, 'µs record within a second of the wall clock');
  for (let i = 1; i < 3; i++) assert.ok(ms(ns.recs[i], 1e6) >= ms(ns.recs[i - 1], 1e6), 'never backwards');
});

test('abort: the temp file is removed and an existing file under the name is untouched', () => {
  const p = join(tmp, 'keep.pcap');
  writeFileSync(p, 'keep');
  const w = new PcapFileWriter(p);
  w.send(frame);
  w.abort();
  assert.equal(readFileSync(p, 'utf8'), 'keep');
  assert.deepEqual(readdirSync(tmp).filter((f) => f.startsWith('keep')), ['keep.pcap']);
  rmSync(p);
});
