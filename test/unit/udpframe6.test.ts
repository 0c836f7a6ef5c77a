/**
 * Udp6Framer against bytes it did not make: a UDPv6 frame the Linux kernel sent (socat in a namespace, veth tx
 * checksum offload off so the kernel summed it in software, captured by tcpdump on the peer), and checksums recomputed
 * by the reference helper (test/helpers/bytes.ts) over the RFC 8200 §8.1 pseudo-header written out by hand.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { makeFramer, parseUdpFrame, Udp6Framer, udpHeaderLen, UdpFramer } from '../../src/wire/udpframe.js';
import { parseMac } from '../../src/wire/mac.js';
import { parseIpv6Addr } from '../../src/wire/ipv6.js';
import { chooseNextHop6 } from '../../src/resolve/nexthop.js';
import { WireError } from '../../src/wire/error.js';
import { hex, refChecksum } from '../helpers/bytes.js';

/**
 * The kernel's frame: fd77::2 port 6665 -> fd77::1 port 6666, "hello from the kernel", hop limit 64, traffic class 0,
 * flow label 0x0cfeeb (Linux's auto flow label; ours is 0 unless --flow-label), UDP checksum 0xcdbf (tshark: good).
 */
const KERNEL = hex(
  '96f8a989fcb0 e201bd48b6f6 86dd' +
  '600cfeeb 001d 11 40 fd770000000000000000000000000002 fd770000000000000000000000000001' +
  '1a09 1a0a 001d cdbf' + Buffer.from('hello from the kernel').toString('hex'));

const base = {
  family: 6 as const,
  srcMac: parseMac('e2:01:bd:48:b6:f6'), dstMac: parseMac('96:f8:a9:89:fc:b0'),
  srcIp6: parseIpv6Addr('fd77::2', 'src'), dstIp6: parseIpv6Addr('fd77::1', 'dst'), srcPort: 6665, dstPort: 6666,
};

/** The pseudo-header of RFC 8200 §8.1, byte by byte: src, dst, 32-bit length, 3 zero bytes, next header 17. */
function pseudo(src: Buffer, dst: Buffer, len: number): Buffer {
  const p = Buffer.alloc(40);
  src.copy(p, 0);
  dst.copy(p, 16);
  p.writeUInt32BE(len, 32);
  p[39] = 17;
  return p;
}

test('Udp6Framer rebuilds the kernel-captured UDPv6 frame byte for byte (its flow label given)', () => {
  const fr = new Udp6Framer({ ...base, flowLabel: 0x0cfeeb }, 1452);
  assert.deepEqual(Buffer.from(fr.build(Buffer.from('hello from the kernel'), 0)), KERNEL);
  // netpoll's own profile: flow label 0, the rest the same; the checksum does not cover the flow label.
  const plain = Buffer.from(new Udp6Framer(base, 1452).build(Buffer.from('hello from the kernel'), 0));
  assert.deepEqual(plain.subarray(14, 18), hex('60000000'));
  assert.deepEqual(plain.subarray(18), KERNEL.subarray(18));
});

test('Udp6Framer: template reuse over many payload sizes; each checksum verifies over the hand-written pseudo-header', () => {
  const fr = new Udp6Framer(base, 1452);
  for (let i = 0; i < 200; i++) {
    const p = randomBytes((i * 53) % 1453);
    const f = Buffer.from(fr.build(p, i));
    const len = 8 + p.length;
    assert.equal(f.length, Math.max(60, 62 + p.length));
    assert.equal(f.readUInt16BE(18), len, 'IPv6 payload length');
    assert.equal(f.readUInt16BE(58), len, 'UDP length');
    assert.equal(refChecksum(Buffer.concat([pseudo(base.srcIp6, base.dstIp6, len), f.subarray(54, 54 + len)])), 0, `size ${p.length}`);
    assert.deepEqual(f.subarray(62, 62 + p.length), p);
  }
});

test('Udp6Framer: a computed checksum of 0 goes out as 0xffff (RFC 8200 §8.1 / RFC 768)', () => {
  // Choose the two payload bytes that make the sum 0xffff: their word is 0xffff minus the sum of everything else.
  const fr = new Udp6Framer(base, 1452);
  const f0 = Buffer.from(fr.build(Buffer.alloc(2), 0));
  const d = Buffer.from(f0.subarray(54, 64));
  d.writeUInt16BE(0, 6);
  // refChecksum is 0xffff minus the ones' sum S of the rest; a payload word of exactly that makes the sum 0xffff.
  const w = refChecksum(Buffer.concat([pseudo(base.srcIp6, base.dstIp6, 10), d]));
  const p = Buffer.alloc(2);
  p.writeUInt16BE(w);
  const f = Buffer.from(fr.build(p, 0));
  assert.equal(f.readUInt16BE(60), 0xffff, 'a computed 0 is sent as 0xffff, never 0 ("no checksum" is not IPv6\'s)');
  // 0xffff is as good as 0 to a receiver's verification: the whole sums to 0xffff (refChecksum 0).
  assert.equal(refChecksum(Buffer.concat([pseudo(base.srcIp6, base.dstIp6, 10), f.subarray(54, 64)])), 0);
});

test('Udp6Framer: hop limit, traffic class, VLAN tag, --size padding and the bad UDP checksum', () => {
  const fr = new Udp6Framer({ ...base, ttl: 9, tos: 0xb8, flowLabel: 0xabcde, vlan: { vid: 100, pcp: 5 }, frameSize: 200, udpChecksum: 'bad' }, 1452);
  assert.equal(fr.headerLen, 14 + 4 + 40 + 8);
  assert.equal(udpHeaderLen({ vid: 1 }, 6), 66);
  const f = Buffer.from(fr.build(Buffer.from('x'), 0));
  assert.equal(f.length, 200);
  assert.deepEqual(f.subarray(12, 18), hex('8100 a064 86dd'));
  assert.equal(f.readUInt32BE(18), (6 << 28 | 0xb8 << 20 | 0xabcde) >>> 0);
  assert.equal(f.readUInt16BE(22), 200 - 58);
  assert.equal(f[25], 9);
  const len = 200 - 58;
  // The documented corruption: the right value + 1 in ones' complement, so the receiver's sum is 0x0001.
  const sum = 0xffff - refChecksum(Buffer.concat([pseudo(base.srcIp6, base.dstIp6, len), f.subarray(58, 200)]));
  assert.equal(sum, 0x0001);
  const p = parseUdpFrame(f)!;
  assert.equal(p.family, 6);
  assert.equal(p.vlan?.vid, 100);
  assert.equal(p.ttl, 9);
  assert.equal(p.payload.length, 200 - 66);
});

test('Udp6Framer refuses what IPv6 has no room for (DF, a bad IP checksum, no UDP checksum), naming why', () => {
  assert.throws(() => new Udp6Framer({ ...base, df: true }, 1452), (e: unknown) => e instanceof WireError && /Don't Fragment/.test(e.message));
  assert.throws(() => new Udp6Framer({ ...base, ipChecksum: 'bad' }, 1452), (e: unknown) => e instanceof WireError && /no header checksum/.test(e.message));
  assert.throws(() => new Udp6Framer({ ...base, udpChecksum: 'none' }, 1452), (e: unknown) => e instanceof WireError && /RFC 8200 §8.1/.test(e.message));
  assert.throws(() => new Udp6Framer({ ...base, flowLabel: 0x100000 }, 1452), WireError);
});

test('setPorts keeps the checksum right; makeFramer picks the family; parseUdpFrame reads IPv4 as before', () => {
  const fr = makeFramer(base, 1452);
  assert.ok(fr instanceof Udp6Framer);
  fr.setPorts(20024, 20023);
  const f = Buffer.from(fr.build(Buffer.from('abc'), 0));
  const p = parseUdpFrame(f)!;
  assert.deepEqual([p.srcPort, p.dstPort, p.family, p.srcIp, p.ipId], [20024, 20023, 6, 0, 0]);
  assert.deepEqual(p.srcIp6, base.srcIp6);
  assert.deepEqual(p.dstIp6, base.dstIp6);
  assert.equal(refChecksum(Buffer.concat([pseudo(base.srcIp6, base.dstIp6, 11), f.subarray(54, 65)])), 0);
  const v4 = makeFramer({ srcMac: base.srcMac, dstMac: base.dstMac, srcIp: 1, dstIp: 2, srcPort: 1, dstPort: 2 }, 1472);
  assert.ok(v4 instanceof UdpFramer);
  assert.equal(parseUdpFrame(v4.build(Buffer.from('v4'), 1))!.family, undefined);
  // A fragment, or a truncated datagram, is not a whole UDP datagram.
  const frag = Buffer.concat([KERNEL.subarray(0, 54), hex('1100 0001 00000001'), KERNEL.subarray(54)]);
  frag[20] = 44;
  frag.writeUInt16BE(KERNEL.readUInt16BE(18) + 8, 18);
  assert.equal(parseUdpFrame(frag), null);
  assert.equal(parseUdpFrame(KERNEL.subarray(0, 70)), null);
  assert.equal(parseUdpFrame(KERNEL)!.payload.toString(), 'hello from the kernel');
});

test('next hop over IPv6: gateway only off-link; a link-local target is always on-link', () => {
  const a = (s: string) => parseIpv6Addr(s, 'x');
  const src = { ip6: a('fd00::1'), prefix: 64 };
  assert.deepEqual(chooseNextHop6(a('fd00::2'), undefined, src), { family: 6, ip6: a('fd00::2'), via: 'direct' });
  assert.deepEqual(chooseNextHop6(a('fd00::2'), a('fe80::1'), src), { family: 6, ip6: a('fd00::2'), via: 'direct' });
  assert.deepEqual(chooseNextHop6(a('fd99::2'), a('fe80::1'), src), { family: 6, ip6: a('fe80::1'), via: 'gateway' });
  assert.deepEqual(chooseNextHop6(a('fe80::9'), a('fe80::1'), src), { family: 6, ip6: a('fe80::9'), via: 'direct' });
  assert.deepEqual(chooseNextHop6(a('fd00::2'), a('fe80::1'), { ip6: a('fd00::1') }), { family: 6, ip6: a('fe80::1'), via: 'gateway' });
});
