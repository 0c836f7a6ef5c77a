import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  NetoopsEncoder, parseNetoops, encodeUserBlob, decodeUserBlob, netoopsLayout,
  NETOOPS_ARCH_X86, NETOOPS_TYPE_OOPS, NETOOPS_TYPE_SOFT,
} from '../../src/proto/netoops.js';

/**
 * Expected bytes are laid out here by hand from PROTOCOLS.md §3 (v3: LE header, kernel_version[64] @24,
 * user blob[128] @88, arch data @216 = vendor,family,model,stepping + 168 bytes of pt_regs, data[1024] @388),
 * never by calling the encoder.
 */
function handV3(o: { dumpId: number; type: number; count: number; no: number; bootId: number; kver: string;
  blob: string; cpu: [number, number, number, number]; data: Buffer }): Buffer {
  const b = Buffer.alloc(388 + 1024);
  const put16 = (off: number, v: number) => { b[off] = v & 0xff; b[off + 1] = v >> 8; };
  const put32 = (off: number, v: number) => { for (let i = 0; i < 4; i++) b[off + i] = (v >>> (8 * i)) & 0xff; };
  put16(0, 3); put16(2, o.dumpId); put16(4, 388); put16(6, 2); put16(8, 216); put16(10, o.type);
  put32(12, o.count); put32(16, o.no); put32(20, o.bootId);
  for (let i = 0; i < o.kver.length; i++) b[24 + i] = o.kver.charCodeAt(i);
  for (let i = 0; i < o.blob.length; i++) b[88 + i] = o.blob.charCodeAt(i);
  b[216] = o.cpu[0]; b[217] = o.cpu[1]; b[218] = o.cpu[2]; b[219] = o.cpu[3];
  o.data.copy(b, 388);
  return b;
}

// A 2500-byte log: 3 chunks. packet_no 0 = bytes 2048..2499 (the newest, zero-padded), 1 = 1024..2047, 2 = 0..1023.
const LOG = Buffer.from(Array.from({ length: 2500 }, (_, i) => 0x41 + (i % 26)));
const HDR = {
  dumpId: 0x1234, type: NETOOPS_TYPE_OOPS, bootId: 0xdeadbeef, kernelVersion: '6.1.0-rawpoll',
  arch: NETOOPS_ARCH_X86, x86: { vendor: 2, family: 25, model: 33, stepping: 2 },
  userBlob: encodeUserBlob({ board: 'X570', firmware: 'F33' }),
};

function expected(no: number): Buffer {
  const data = Buffer.alloc(1024);
  const start = (2 - no) * 1024;
  LOG.copy(data, 0, start, Math.min(2500, start + 1024));
  return handV3({ dumpId: 0x1234, type: 1, count: 3, no, bootId: 0xdeadbeef, kver: '6.1.0-rawpoll',
    blob: 'board=X570\nfirmware=F33\n', cpu: [2, 25, 33, 2], data });
}

test('netoops v3 deconstruct: every field of hand-laid bytes', () => {
  const p = parseNetoops(expected(1));
  assert.ok(p.ok);
  const r = p.repr;
  assert.equal(r.version, 3);
  assert.equal(r.dumpId, 0x1234);
  assert.equal(r.dataOffset, 388);
  assert.equal(r.arch, 2);
  assert.equal(r.archOffset, 216);
  assert.equal(r.type, 1);
  assert.equal(r.packetCount, 3);
  assert.equal(r.packetNo, 1);
  assert.equal(r.bootId, 0xdeadbeef);
  assert.equal(r.kernelVersion, '6.1.0-rawpoll');
  assert.deepEqual(decodeUserBlob(r.userBlob!).fields, { board: 'X570', firmware: 'F33' });
  assert.deepEqual({ v: r.x86!.vendor, f: r.x86!.family, m: r.x86!.model, s: r.x86!.stepping }, { v: 2, f: 25, m: 33, s: 2 });
  assert.equal(r.x86!.regs.length, 168);
  assert.deepEqual(p.data, LOG.subarray(1024, 2048));
});

test('netoops v3 construct: encoder output equals the hand-laid datagrams, newest chunk is packet_no 0', () => {
  const enc = new NetoopsEncoder(HDR, LOG);
  assert.equal(enc.packetCount, 3);
  assert.deepEqual([...enc.order()], [0, 1, 2]);
  for (const no of [0, 1, 2]) assert.deepEqual(enc.datagram(no), expected(no), `packet_no ${no}`);
  // tail chunk zero-padded after 452 bytes
  const d0 = enc.datagram(0);
  assert.equal(d0.length, 1412);
  assert.deepEqual(d0.subarray(388, 388 + 452), LOG.subarray(2048));
  assert.ok(d0.subarray(388 + 452).every((x) => x === 0));
});

test('netoops v3 kernel_version of 64 bytes is not NUL-terminated and still decodes', () => {
  const k = 'k'.repeat(64);
  const enc = new NetoopsEncoder({ ...HDR, kernelVersion: k + 'overflow' }, LOG);
  const b = enc.datagram(0);
  assert.equal(b.subarray(24, 88).toString('latin1'), k);
  const p = parseNetoops(b);
  assert.ok(p.ok && p.repr.kernelVersion === k);
});

test('netoops parse honours data_offset/arch_offset (v3 without user blob, other arch)', () => {
  // arch 0, arch_offset 88 (no blob), data_offset 100: 12 bytes of opaque arch data
  const b = Buffer.alloc(100 + 1024);
  b.writeUInt16LE(3, 0); b.writeUInt16LE(7, 2); b.writeUInt16LE(100, 4); b.writeUInt16LE(0, 6);
  b.writeUInt16LE(88, 8); b.writeUInt16LE(3, 10); b.writeUInt32LE(1, 12); b.writeUInt32LE(0, 16);
  b.write('hello', 100);
  const p = parseNetoops(b);
  assert.ok(p.ok);
  assert.equal(p.repr.userBlob, null);
  assert.equal(p.repr.x86, null);
  assert.equal(p.repr.type, NETOOPS_TYPE_SOFT);
  assert.equal(p.data.subarray(0, 5).toString(), 'hello');
});

test('netoops v2 layout: hand-laid bytes parse; encoder v2 matches them', () => {
  // v2: boot id @20, family/model/stepping @24..26, kernel @27, bios @91, board @155, regs @219 (168), data @387
  const b = Buffer.alloc(387 + 1024);
  b.writeUInt16LE(2, 0); b.writeUInt16LE(9, 2); b.writeUInt16LE(387, 4); b.writeUInt16LE(2, 6);
  b.writeUInt16LE(219, 8); b.writeUInt16LE(1, 10); b.writeUInt32LE(1, 12); b.writeUInt32LE(0, 16);
  b.writeUInt32LE(42, 20); b[24] = 6; b[25] = 85; b[26] = 7;
  b.write('5.4.0', 27, 'latin1'); b.write('BIOS 1.2', 91, 'latin1'); b.write('Board Z', 155, 'latin1');
  b.write('tail', 387, 'latin1');
  const p = parseNetoops(b);
  assert.ok(p.ok);
  assert.equal(p.repr.version, 2);
  assert.equal(p.repr.bootId, 42);
  assert.equal(p.repr.kernelVersion, '5.4.0');
  assert.equal(p.repr.biosVersion, 'BIOS 1.2');
  assert.equal(p.repr.boardName, 'Board Z');
  assert.deepEqual([p.repr.x86!.family, p.repr.x86!.model, p.repr.x86!.stepping, p.repr.x86!.vendor], [6, 85, 7, null]);
  const enc = new NetoopsEncoder({ version: 2, dumpId: 9, type: 1, bootId: 42, kernelVersion: '5.4.0', arch: 2,
    x86: { vendor: 0, family: 6, model: 85, stepping: 7 }, biosVersion: 'BIOS 1.2', boardName: 'Board Z' }, Buffer.from('tail'));
  assert.deepEqual(enc.datagram(0), b);
  assert.deepEqual(netoopsLayout({ version: 2, arch: 2 }), { archOffset: 219, dataOffset: 387, size: 1411 });
});

test('netoops parse rejects garbage with a reason, never throws', () => {
  const good = expected(0);
  const cases: [Buffer, string][] = [
    [Buffer.alloc(0), 'truncated'],
    [good.subarray(0, 23), 'truncated'],
    [good.subarray(0, 1411), 'truncated'],
    [Buffer.concat([Buffer.from([9, 0]), good.subarray(2)]), 'version'],
  ];
  const badOff = Buffer.from(good); badOff.writeUInt16LE(500, 8); // arch_offset > data_offset
  cases.push([badOff, 'offsets']);
  const hugeOff = Buffer.from(good); hugeOff.writeUInt16LE(60000, 4);
  cases.push([hugeOff, 'truncated']);
  const badNo = Buffer.from(good); badNo.writeUInt32LE(3, 16);
  cases.push([badNo, 'packet_no']);
  const zeroCount = Buffer.from(good); zeroCount.writeUInt32LE(0, 12);
  cases.push([zeroCount, 'packet_no']);
  for (const [b, reason] of cases) {
    const p = parseNetoops(b);
    assert.equal(p.ok, false);
    if (!p.ok) assert.equal(p.reason, reason, p.detail);
  }
  for (let i = 0; i < 2000; i++) {
    const r = Buffer.alloc(Math.floor(Math.random() * 1600));
    for (let j = 0; j < r.length; j++) r[j] = Math.floor(Math.random() * 256);
    parseNetoops(r); // must not throw
  }
});

test('netoops exact multiple of 1024: the tail chunk is full (the patch sent it empty)', () => {
  const log = Buffer.alloc(2048, 0x61);
  const enc = new NetoopsEncoder(HDR, log);
  assert.equal(enc.packetCount, 2);
  assert.ok(enc.datagram(0).subarray(388).every((x) => x === 0x61));
});
