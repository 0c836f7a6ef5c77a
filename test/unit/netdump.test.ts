import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  NETDUMP_VMCORE, NETDUMP_HERALD, NETDUMP_HDR_LEN, readNetdumpHeader, writeNetdumpHeader, encodeNetdumpMessage,
  netdumpLengthOk, encodeAck, decodeAck, heraldPayload, heraldPath, netdumpChunkSize, buildKdh, parseKdh, kdhParity,
  formatKdhInfo, KDH_LEN,
} from '../../src/proto/netdump.js';

// PROTOCOLS.md §4: type u32, seqno u32, offset u64, len u32, aux2 u32, all big-endian.
// VMCORE, seqno 7, offset 0x1_0000_2000 (above 4 GiB to catch a 32-bit offset), len 1448, aux2 0.
const HDR_VECTOR = Buffer.from(
  '00000003' + '00000007' + '0000000100002000' + '000005a8' + '00000000', 'hex');

test('netdump header: deconstruct the known bytes', () => {
  const h = readNetdumpHeader(HDR_VECTOR);
  assert.deepEqual(h, { type: NETDUMP_VMCORE, seqno: 7, offset: 0x100002000, offset64: 0x100002000n, len: 1448, aux2: 0 });
});

test('netdump header: an offset past 2^53 is exact in offset64 (the Number rounds)', () => {
  const b = Buffer.from(HDR_VECTOR);
  b.writeBigUInt64BE(2n ** 63n + 1n, 8);
  const h = readNetdumpHeader(b)!;
  assert.equal(h.offset64, 2n ** 63n + 1n);
  assert.equal(h.offset, 2 ** 63);
});

test('netdump header: construct into a zeroed buffer equals the vector', () => {
  const b = Buffer.alloc(NETDUMP_HDR_LEN);
  writeNetdumpHeader({ type: 3, seqno: 7, offset: 0x100002000, len: 1448, aux2: 0 }, b);
  assert.deepEqual(b, HDR_VECTOR);
});

test('netdump header: runt is null, header at an offset works', () => {
  assert.equal(readNetdumpHeader(HDR_VECTOR.subarray(0, 23)), null);
  const b = Buffer.concat([Buffer.from([0xaa, 0xbb]), HDR_VECTOR]);
  assert.equal(readNetdumpHeader(b, 2)!.seqno, 7);
});

test('netdump message: herald with path is header + path + NUL, strict length rule', () => {
  const m = encodeNetdumpMessage({ type: NETDUMP_HERALD, seqno: 1, offset: 0, aux2: 0 }, heraldPayload('host7/'));
  const expected = Buffer.concat([
    Buffer.from('00000001' + '00000001' + '0000000000000000' + '00000007' + '00000000', 'hex'),
    Buffer.from('host7/\0', 'latin1'),
  ]);
  assert.deepEqual(m, expected);
  const h = readNetdumpHeader(m)!;
  assert.equal(netdumpLengthOk(h, m.length), true);
  assert.equal(netdumpLengthOk(h, m.length + 1), false);
  assert.equal(netdumpLengthOk(h, m.length - 1), false);
  assert.equal(heraldPath(m.subarray(24)), 'host7/');
  assert.equal(heraldPayload('').length, 0);
  assert.equal(heraldPayload(undefined).length, 0);
  // cap_herald.c: no trailing NUL → no path.
  assert.equal(heraldPath(Buffer.from('abc')), null);
  assert.equal(heraldPath(Buffer.alloc(0)), null);
});

test('netdump ACK: exactly 4 big-endian bytes', () => {
  assert.deepEqual(encodeAck(0x01020304), Buffer.from([1, 2, 3, 4]));
  assert.equal(decodeAck(Buffer.from([0, 0, 1, 0])), 256);
  assert.equal(decodeAck(Buffer.from([0xff, 0xff, 0xff, 0xff])), 0xffffffff);
  assert.equal(decodeAck(Buffer.from([0, 0, 1])), null);
  assert.equal(decodeAck(Buffer.from([0, 0, 0, 1, 0])), null);
});

test('payload per datagram: min(4096, MTU - 52)', () => {
  assert.equal(netdumpChunkSize(1500), 1448);
  assert.equal(netdumpChunkSize(9000), 4096);
  assert.equal(netdumpChunkSize(4148), 4096);
  assert.equal(netdumpChunkSize(4147), 4095);
});

/** Independent KDH v4 vector, offsets straight from PROTOCOLS.md §4. */
function kdhVector(): Buffer {
  const b = Buffer.alloc(512);
  b.write('FreeBSD Kernel Dump', 0, 'latin1');
  b.write('amd64', 20, 'latin1');
  b.writeUInt32BE(4, 32);
  b.writeUInt32BE(2, 36);
  b.writeUInt32BE(0, 40); b.writeUInt32BE(20 * 1024 * 1024, 44); // dumplength u64
  b.writeUInt32BE(0, 48); b.writeUInt32BE(1700000000, 52); // dumptime u64
  b.writeUInt32BE(0, 56);
  b.writeUInt32BE(4096, 60);
  b.write('host7', 64, 'latin1');
  b.write('Linux host7 6.1.0 #1 SMP x86_64', 128, 'latin1');
  b.write('rawpoll test panic', 320, 'latin1');
  b[495] = 0;
  b.writeUInt32BE(0, 496); b.writeUInt32BE(20 * 1024 * 1024, 500); // dumpextent
  let p = 0;
  for (let i = 0; i < 508; i += 4) p ^= b.readUInt32BE(i);
  b.writeUInt32BE(p >>> 0, 508);
  return b;
}

test('KDH v4: build equals the independent vector, parity makes XOR zero', () => {
  const k = buildKdh({
    dumplength: 20 * 1024 * 1024, dumptime: 1700000000, hostname: 'host7',
    versionstring: 'Linux host7 6.1.0 #1 SMP x86_64', panicstring: 'rawpoll test panic',
  });
  assert.equal(k.length, KDH_LEN);
  assert.deepEqual(k, kdhVector());
  assert.equal(kdhParity(k), 0);
});

test('KDH v4: parse the vector reads every field, a flipped bit fails parity', () => {
  const v = kdhVector();
  const k = parseKdh(v)!;
  assert.equal(k.magic, 'FreeBSD Kernel Dump');
  assert.equal(k.architecture, 'amd64');
  assert.equal(k.version, 4);
  assert.equal(k.architectureversion, 2);
  assert.equal(k.dumplength, 20n * 1024n * 1024n);
  assert.equal(k.dumptime, 1700000000n);
  assert.equal(k.dumpkeysize, 0);
  assert.equal(k.blocksize, 4096);
  assert.equal(k.hostname, 'host7');
  assert.equal(k.versionstring, 'Linux host7 6.1.0 #1 SMP x86_64');
  assert.equal(k.panicstring, 'rawpoll test panic');
  assert.equal(k.compression, 0);
  assert.equal(k.dumpextent, 20n * 1024n * 1024n);
  assert.equal(k.parityOk, true);
  v[100] ^= 0x10;
  assert.equal(parseKdh(v)!.parityOk, false);
  assert.equal(parseKdh(v.subarray(0, 511)), null);
});

test('KDH v4: over-long strings are cut and NUL-terminated inside their field', () => {
  const k = buildKdh({ dumplength: 1, dumptime: 0, hostname: 'h'.repeat(100), versionstring: 'v'.repeat(300),
    panicstring: 'p'.repeat(300) });
  assert.equal(k[64 + 63], 0);
  assert.equal(k[128 + 191], 0);
  assert.equal(k[320 + 174], 0);
  assert.equal(k[495], 0); // compression untouched by the panic string
  const p = parseKdh(k)!;
  assert.equal(p.hostname, 'h'.repeat(63));
  assert.equal(p.versionstring.length, 191);
  assert.equal(p.panicstring.length, 174);
  assert.equal(p.parityOk, true);
});

test('KDH v4: a hostname cut at 63 bytes ends on a whole UTF-8 character', () => {
  // 62 ASCII bytes then 'é' (2 bytes: c3 a9): a byte cut at 63 would keep only c3.
  const k = buildKdh({ dumplength: 1, dumptime: 0, hostname: 'h'.repeat(62) + 'é' + 'x', versionstring: 'v' });
  assert.equal(k[64 + 62], 0, 'the lone lead byte 0xc3 is dropped, not written');
  assert.equal(parseKdh(k)!.hostname, 'h'.repeat(62));
  // A 3-byte character (€: e2 82 ac) straddling the cut at 63 from byte 61 is dropped whole; one that fits is kept.
  assert.equal(parseKdh(buildKdh({ dumplength: 1, dumptime: 0, hostname: 'h'.repeat(61) + '€', versionstring: 'v' }))!.hostname, 'h'.repeat(61));
  assert.equal(parseKdh(buildKdh({ dumplength: 1, dumptime: 0, hostname: 'h'.repeat(60) + '€', versionstring: 'v' }))!.hostname, 'h'.repeat(60) + '€');
  // Decoding the stored bytes as UTF-8 never needs a replacement character.
  assert.ok(!parseKdh(buildKdh({ dumplength: 1, dumptime: 0, hostname: 'ü'.repeat(40), versionstring: 'v' }))!.hostname.includes('\ufffd'));
  assert.equal(parseKdh(buildKdh({ dumplength: 1, dumptime: 0, hostname: 'ü'.repeat(40), versionstring: 'v' }))!.hostname, 'ü'.repeat(31));
});

test('kdhParity on fewer than 512 bytes: a RangeError naming the length', () => {
  assert.throws(() => kdhParity(new Uint8Array(100)), (e: unknown) => e instanceof RangeError && /512 bytes, got 100/.test(e.message));
  assert.throws(() => kdhParity(new Uint8Array(511)), /got 511/);
  assert.throws(() => kdhParity(new Uint8Array(600), 100), /got 500 \(buffer of 600 at offset 100\)/);
  assert.throws(() => kdhParity(new Uint8Array(0)), /got 0/);
  assert.equal(kdhParity(new Uint8Array(600), 88), 0);
});

test('KDH info lines use netdumpd labels', () => {
  const text = formatKdhInfo(parseKdh(kdhVector())!);
  assert.match(text, /^ {2}Architecture: amd64$/m);
  assert.match(text, /^ {2}Dump Length: 20971520B \(20 MB\)$/m);
  assert.match(text, /^ {2}Dumptime: Tue Nov 14 22:13:20 2023 UTC$/m);
  assert.match(text, /^ {2}Hostname: host7$/m);
  assert.match(text, /^ {2}Panic String: rawpoll test panic$/m);
  assert.match(text, /^ {2}Header Parity Check: Pass$/m);
});
