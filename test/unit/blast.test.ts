import { test } from 'node:test';
import assert from 'node:assert/strict';
import { UsageError } from '../../src/errors.js';
import { parseDuration, parseRange, parseRate, parseSizes, parseStartAt } from '../../src/cli/blast-args.js';
import { buildTemplates, makeFlows, sizeLimits, sizeSequence } from '../../src/tx/templates.js';

// Independent ones'-complement checksum (RFC 1071), not the code under test.
function csum(bytes: number[]): number {
  let s = 0;
  for (let i = 0; i < bytes.length; i += 2) s += (bytes[i] << 8) | (bytes[i + 1] ?? 0);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}
const be16 = (v: number) => [v >>> 8, v & 0xff];

test('parseRate: frames/s with SI suffixes, bits/s of frames', () => {
  assert.deepEqual(parseRate('250kpps'), { pps: 250000 });
  assert.deepEqual(parseRate('1.5Mpps'), { pps: 1500000 });
  assert.deepEqual(parseRate('10000'), { pps: 10000 });
  assert.deepEqual(parseRate('800Mbps'), { bps: 800e6 });
  assert.deepEqual(parseRate('2Gbps'), { bps: 2e9 });
  for (const bad of ['fast', '0', '-5kpps', '10 kbits', '']) assert.throws(() => parseRate(bad), UsageError, bad);
  assert.throws(() => parseRate('fast'), /--rate 'fast'.*250kpps/);
});

test('parseDuration: units and the bare-number unit', () => {
  assert.equal(parseDuration('10us', '--gap', 'ns'), 10_000);
  assert.equal(parseDuration('500ns', '--gap', 'ns'), 500);
  assert.equal(parseDuration('1ms', '--burst-gap', 'ns'), 1e6);
  assert.equal(parseDuration('2.5', '--duration', 's'), 2.5e9);
  assert.equal(parseDuration('750', '--gap', 'ns'), 750);
  assert.throws(() => parseDuration('soon', '--duration'), /bad --duration 'soon'/);
  assert.throws(() => parseDuration('0', '--duration'), UsageError);
});

test('parseRange: single values and LO-HI', () => {
  assert.deepEqual(parseRange('9', '--dport', 0, 65535), [9, 9]);
  assert.deepEqual(parseRange('10000-10015', '--sport', 0, 65535), [10000, 10015]);
  assert.throws(() => parseRange('20-10', '--sport', 0, 65535), /bad --sport '20-10'/);
  assert.throws(() => parseRange('70000', '--dport', 0, 65535), UsageError);
  assert.throws(() => parseRange('a-b', '--dport', 0, 65535), UsageError);
});

test('parseStartAt keeps nanoseconds exact (no float rounding)', () => {
  assert.deepEqual(parseStartAt('1795000000.250'), { sec: 1795000000, nsec: 250000000 });
  assert.deepEqual(parseStartAt('1795000000.000000001'), { sec: 1795000000, nsec: 1 });
  assert.deepEqual(parseStartAt('1795000000'), { sec: 1795000000, nsec: 0 });
  assert.throws(() => parseStartAt('tomorrow'), /--start-at 'tomorrow'/);
});

test('sizes: fixed, cycling list, random range within bounds, IMIX weights interleaved', () => {
  assert.deepEqual(sizeSequence(parseSizes(undefined, undefined)), [60]);
  assert.deepEqual(sizeSequence(parseSizes('128', undefined)), [128]);
  assert.deepEqual(sizeSequence(parseSizes('64,576,1514', undefined)), [64, 576, 1514]);
  const r = sizeSequence(parseSizes('60-70', undefined));
  assert.equal(r.length, 4096);
  assert.ok(r.every((s) => s >= 60 && s <= 70));
  assert.equal(new Set(r).size, 11); // 4096 draws cover all 11 sizes
  const imix = sizeSequence(parseSizes('64,576,1514', '7,4,1'));
  assert.equal(imix.length, 12);
  assert.equal(imix.filter((s) => s === 64).length, 7);
  assert.equal(imix.filter((s) => s === 576).length, 4);
  assert.equal(imix.filter((s) => s === 1514).length, 1);
  // Interleaved, not seven 64s in a row.
  let run = 0;
  let maxRun = 0;
  for (const s of [...imix, ...imix]) {
    run = s === 64 ? run + 1 : 0;
    maxRun = Math.max(maxRun, run);
  }
  assert.ok(maxRun <= 3, `longest run of 64s: ${maxRun}`);
  assert.deepEqual(parseSizes(undefined, true), { kind: 'imix', sizes: [64, 576, 1514], weights: [7, 4, 1] });
  assert.throws(() => parseSizes('64,576', '7,4,1'), /3 weights but --size has 2/);
  assert.throws(() => parseSizes('big', undefined), /bad --size 'big'/);
});

test('parseSizes: sizes outside 60-65553 and ranges over 10000 sizes are usage errors naming the value', () => {
  // Used to allocate every size of the range before any check: heap out of memory instead of exit 2.
  const t0 = Date.now();
  assert.throws(() => parseSizes('60-99999999999', undefined), (e: unknown) => e instanceof UsageError && /bad --size '60-99999999999': frame size 99999999999 is out of range: expected 60-65553/.test(e.message));
  assert.ok(Date.now() - t0 < 1000);
  assert.throws(() => parseSizes('59', undefined), /frame size 59 is out of range: expected 60-65553/);
  assert.throws(() => parseSizes('65554', undefined), /frame size 65554 is out of range/);
  assert.throws(() => parseSizes('64,70000', undefined), /frame size 70000 is out of range/);
  assert.throws(() => parseSizes('64,70000', '1,1'), /frame size 70000 is out of range/);
  assert.throws(() => parseSizes('0-100', undefined), /frame size 0 is out of range/);
  assert.throws(() => parseSizes('60-10060', undefined), (e: unknown) => e instanceof UsageError && /10001 sizes in the range, at most 10000/.test(e.message));
  assert.throws(() => parseSizes('60-70-80', undefined), /bad --size '60-70-80': expected one range LO-HI/);
  assert.deepEqual(parseSizes('60-10059', undefined), { kind: 'range', sizes: [60, 10059] });
  assert.deepEqual(parseSizes('65553', undefined), { kind: 'fixed', sizes: [65553] });
  assert.deepEqual(parseSizes('60', undefined), { kind: 'fixed', sizes: [60] });
});

test('makeFlows walks each range; default flow count is the largest range', () => {
  const f = makeFlows({ srcIps: [1], srcPorts: [10000, 10003], dstPorts: [9, 9] });
  assert.deepEqual(f.map((x) => x.srcPort), [10000, 10001, 10002, 10003]);
  assert.ok(f.every((x) => x.dstPort === 9 && x.srcIp === 1));
  const g = makeFlows({ srcIps: [1, 2], srcPorts: [5, 7], dstPorts: [9, 10], flows: 6 });
  assert.deepEqual(g.map((x) => [x.srcIp, x.srcPort, x.dstPort]), [[1, 5, 9], [2, 6, 10], [1, 7, 9], [2, 5, 10], [1, 6, 9], [2, 7, 10]]);
  // More flows than distinct 4-tuples (issue 13: --flows 17 --sport 10000-10015 ran 17 flows on 16 ports).
  assert.throws(() => makeFlows({ srcIps: [1], srcPorts: [10000, 10015], dstPorts: [9, 9], flows: 17 }),
    /bad --flows '17': --src-ip, --sport and --dport \(1, 16 and 1 values\) make 16 distinct flows; flow 16 would repeat flow 0/);
  assert.throws(() => makeFlows({ srcIps: [1, 2], srcPorts: [5, 7], dstPorts: [9, 10], flows: 7 }), /make 6 distinct flows/);
});

test('size limits: 60 bytes minimum, headers + test header with a VLAN tag, MTU + 14 maximum', () => {
  assert.deepEqual(sizeLimits({ mtu: 1500, seq: true }), { min: 60, max: 1514 });
  assert.deepEqual(sizeLimits({ mtu: 1500, seq: true, vlan: { vid: 5 } }), { min: 62, max: 1518 });
  assert.deepEqual(sizeLimits({ mtu: 9000, seq: false }), { min: 60, max: 9014 });
});

test('buildTemplates: a 60-byte frame equals the hand-laid netpoll/pktgen bytes', () => {
  const srcMac = Buffer.from([0x02, 0, 0, 0, 0, 0x01]);
  const dstMac = Buffer.from([0x02, 0, 0, 0, 0, 0x02]);
  const src = [10, 0, 0, 1];
  const dst = [10, 0, 0, 2];
  const t = buildTemplates({
    srcMac, dstMac, dstIp: 0x0a000002, flows: [{ srcIp: 0x0a000001, srcPort: 9, dstPort: 9 }],
    sizes: parseSizes('60', undefined), seq: true, mtu: 1500, ipId: 'counter',
  });
  // Expected bytes from PROTOCOLS.md §1 and §5: template carries IP ID 0, seq 0, tv 0 (the engines patch them).
  // Like pktgen's pkt_size, the UDP payload fills the frame: 60 − 42 = 18 bytes, the 16-byte test header + 2 zeros.
  const payload = [0xbe, 0x9b, 0xe9, 0x55, ...new Array(14).fill(0)];
  const ipHdr = [0x45, 0, ...be16(20 + 8 + 18), 0, 0, 0, 0, 64, 17, 0, 0, ...src, ...dst];
  const ipc = csum(ipHdr);
  ipHdr[10] = ipc >>> 8;
  ipHdr[11] = ipc & 0xff;
  const udpLen = 8 + 18;
  const uc = csum([...src, ...dst, 0, 17, ...be16(udpLen), ...be16(9), ...be16(9), ...be16(udpLen), 0, 0, ...payload]);
  const expected = Buffer.from([
    ...dstMac, ...srcMac, 0x08, 0x00, ...ipHdr, ...be16(9), ...be16(9), ...be16(udpLen), ...be16(uc === 0 ? 0xffff : uc), ...payload,
  ]);
  assert.equal(expected.length, 60);
  assert.equal(t.offsets.length, 1);
  assert.deepEqual(t.frames.subarray(t.offsets[0], t.offsets[0] + t.lengths[0]), expected);
  assert.equal(t.ipOff, 14);
  assert.equal(t.seqOff, 42);
  assert.equal(t.ipIdStart, 1);
  assert.equal(t.meanLen, 60);
});

test('buildTemplates: flows × sizes, order walks both, out-of-range sizes refused', () => {
  const base = {
    srcMac: Buffer.alloc(6, 1), dstMac: Buffer.alloc(6, 2), dstIp: 0x0a000002, seq: true, mtu: 1500, ipId: 'counter' as const,
    flows: makeFlows({ srcIps: [0x0a000001], srcPorts: [100, 101], dstPorts: [9, 9] }),
  };
  const t = buildTemplates({ ...base, sizes: parseSizes('64,128,256', undefined) });
  assert.equal(t.offsets.length, 6);
  assert.equal(t.order.length, 6); // lcm(2 flows, 3 sizes)
  const seen = [...t.order].map((i) => `${t.flowOf[i]}/${t.lengths[i]}`);
  assert.deepEqual(seen, ['0/64', '1/128', '0/256', '1/64', '0/128', '1/256']);
  assert.equal(t.meanLen, (64 + 128 + 256) / 3);
  assert.throws(() => buildTemplates({ ...base, sizes: parseSizes('1515', undefined) }), /frame size 1515 is out of range.*60-1514/);
  assert.throws(() => buildTemplates({ ...base, sizes: parseSizes('59', undefined) }), UsageError);
  const noSeq = buildTemplates({ ...base, seq: false, ipId: 7, sizes: parseSizes('60', undefined) });
  assert.equal(noSeq.seqOff, -1);
  assert.equal(noSeq.ipIdStart, -1);
  assert.equal(noSeq.frames.readUInt16BE(noSeq.offsets[0] + 18), 7);
});
