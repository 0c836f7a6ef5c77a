import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PKTGEN_HDR_LEN, PKTGEN_MAGIC, readPktgenHeader, writePktgenHeader } from '../../src/proto/pktgen.js';

// struct pktgen_hdr for seq 1, tv 1795000000.250000, written out by hand from net/core/pktgen.c (all __be32).
const VECTOR = Buffer.from([
  0xbe, 0x9b, 0xe9, 0x55, // pgh_magic
  0x00, 0x00, 0x00, 0x01, // seq_num
  0x6a, 0xfd, 0x86, 0xc0, // tv_sec 1795000000
  0x00, 0x03, 0xd0, 0x90, // tv_usec 250000
]);

test('constants match pktgen.c', () => {
  assert.equal(PKTGEN_MAGIC, 0xbe9be955);
  assert.equal(PKTGEN_HDR_LEN, 16);
  assert.equal(VECTOR.length, PKTGEN_HDR_LEN);
});

test('deconstruct: reads every field of the known bytes', () => {
  assert.deepEqual(readPktgenHeader(VECTOR, 0), { seq: 1, tvSec: 1795000000, tvUsec: 250000 });
});

test('construct: writes the known bytes into a zeroed buffer at an offset', () => {
  const buf = Buffer.alloc(42 + 16 + 4);
  writePktgenHeader(buf, 42, 1, 1795000000, 250000);
  assert.deepEqual(buf.subarray(42, 58), VECTOR);
  assert.ok(buf.subarray(0, 42).every((b) => b === 0));
  assert.ok(buf.subarray(58).every((b) => b === 0));
});

test('round trip with 32-bit extremes (seq wraps as the kernel __be32 does)', () => {
  const buf = new Uint8Array(16);
  writePktgenHeader(buf, 0, 0xffffffff, 0x80000000, 999999);
  assert.deepEqual(readPktgenHeader(buf, 0), { seq: 0xffffffff, tvSec: 0x80000000, tvUsec: 999999 });
  writePktgenHeader(buf, 0, 2 ** 32 + 5, 0, 0);
  assert.equal(readPktgenHeader(buf, 0)!.seq, 5);
});

test('works on a Uint8Array view with a byteOffset', () => {
  const backing = new Uint8Array(64);
  const view = backing.subarray(10, 40);
  writePktgenHeader(view, 4, 7, 8, 9);
  assert.deepEqual(Buffer.from(backing.subarray(14, 30)), Buffer.from([0xbe, 0x9b, 0xe9, 0x55, 0, 0, 0, 7, 0, 0, 0, 8, 0, 0, 0, 9]));
});

test('parse rejects a wrong magic and short buffers', () => {
  const bad = Buffer.from(VECTOR);
  bad[3] ^= 1;
  assert.equal(readPktgenHeader(bad, 0), null);
  assert.equal(readPktgenHeader(VECTOR.subarray(0, 15), 0), null);
  assert.equal(readPktgenHeader(VECTOR, 1), null);
  assert.equal(readPktgenHeader(VECTOR, -1), null);
});

test('write refuses a buffer too short for the header', () => {
  assert.throws(() => writePktgenHeader(new Uint8Array(20), 5, 1, 0, 0), /pktgen header/);
});
