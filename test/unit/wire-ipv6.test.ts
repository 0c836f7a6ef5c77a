/**
 * IPv6, ICMPv6 (Echo, Neighbor Solicitation/Advertisement) and UDP over IPv6 against bytes the Linux kernel sent, with
 * smoltcp's four small tests per protocol (deconstruct, construct, parse, emit), as test/unit/wire-vectors.test.ts
 * does for IPv4.
 *
 * Where the bytes come from: captured from the Linux kernel (6.18) while writing this test, two network namespaces
 * joined by a veth pair (02:00:00:00:00:01 fd00::1/64 <-> 02:00:00:00:00:02 fd00::2/64, both `nodad`, addr_gen_mode
 * 1 so no link-local chatter, `ethtool -K tx off` on both so checksums are the kernel's own, not partial ones left for
 * offload). `tcpdump -i <B's veth> -w f.pcap ip6` on the receiver while the sender ran
 * `ping -6 -c1 -p 70696e67 -s 8 fd00::2` (the kernel's NS and the peer's NA come first),
 * `printf 'hello netpoll\n' | socat -u - UDP6-SENDTO:[fd00::2]:6666,bind=[fd00::1]:6665`, then
 * `ping -6 -c1 -s 1600 fd00::2` (a Fragment header) and `socat UDP6-RECV:7777,ipv6-join-group=[ff02::1234]:v6a` (an
 * MLDv2 report behind a Hop-by-Hop router alert); `tcpdump -r f.pcap -nn -e -vv -xx` printed "[icmp6 sum ok]" and
 * "[udp sum ok]" on each. The fragment's 1448 bytes are the ping's: a timeval, then data[i] = i & 0xff (iputils
 * fills the payload so; checked against the capture byte for byte when this was written).
 * ROUTING_DSTOPTS is built by hand (no kernel here sends one); see its comment.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EthernetView, ETHERTYPE_IPV6, ETH_HEADER_LEN } from '../../src/wire/ethernet.js';
import {
  formatIpv6Addr, IPPROTO_ICMPV6, ipv6MulticastMac, ipv6PseudoHeaderSum, Ipv6Repr, ipv6UpperLayer, Ipv6View, IPV6_HEADER_LEN,
  IPV6_NH, isIpv6LinkLocal, parseIpv6Addr, solicitedNodeAddr, splitIpv6Zone,
} from '../../src/wire/ipv6.js';
import {
  ICMPV6_ECHO_REQUEST, ICMPV6_NEIGHBOR_ADVERT, ICMPV6_NEIGHBOR_SOLICIT, Icmpv6Repr, Icmpv6View, NDP_OPT_SOURCE_LLADDR,
  NDP_OPT_TARGET_LLADDR, parseIcmpv6, type NeighborAdvertRepr, type NeighborSolicitRepr,
} from '../../src/wire/icmpv6.js';
import { emitUdp6, fillUdp6Checksum, udp6Checksum, udp6ChecksumOk, UdpRepr, UdpView, UDP_HEADER_LEN } from '../../src/wire/udp.js';
import { WireError } from '../../src/wire/error.js';
import { AddressError } from '../../src/wire/addr.js';
import { formatMac } from '../../src/wire/mac.js';
import { hex, onesSum } from '../helpers/bytes.js';

// --- the vectors ---------------------------------------------------------------------------------------------------
const A1 = hex('fd00 0000 0000 0000 0000 0000 0000 0001');
const A2 = hex('fd00 0000 0000 0000 0000 0000 0000 0002');
const SNMA2 = hex('ff02 0000 0000 0000 0000 0001 ff00 0002');
const mac = (s: string) => Buffer.from(s.replace(/:/g, ''), 'hex');
const MAC1 = mac('02:00:00:00:00:01');
const MAC2 = mac('02:00:00:00:00:02');

/** Kernel NS: fd00::1 asks ff02::1:ff00:2 who has fd00::2, hop limit 255, source link-layer option 02:..:01. */
const KERNEL_NS = hex(`
  3333ff000002 020000000001 86dd
  6000 0000 0020 3a ff ${A1.toString('hex')} ${SNMA2.toString('hex')}
  87 00 7d97 00000000 ${A2.toString('hex')}
  01 01 020000000001`);
/** Kernel NA: fd00::2 answers fd00::1, flags S and O, target link-layer option 02:..:02. */
const KERNEL_NA = hex(`
  020000000001 020000000002 86dd
  6000 0000 0020 3a ff ${A2.toString('hex')} ${A1.toString('hex')}
  88 00 1c9a 60000000 ${A2.toString('hex')}
  02 01 020000000002`);
/** Kernel Echo Request: flow label 0x2a780, hop limit 64, id 1491, seq 1, 8 data bytes "ping" + 4 zero. */
const KERNEL_PING = hex(`
  020000000002 020000000001 86dd
  6002 a780 0010 3a 40 ${A1.toString('hex')} ${A2.toString('hex')}
  80 00 a10b 05d3 0001 70696e67 00000000`);
/** Kernel UDP fd00::1:6665 -> fd00::2:6666 "hello netpoll\n": flow label 0x796ef, hop limit 64, UDP checksum 0xcf6b. */
const KERNEL_UDP6 = hex(`
  020000000002 020000000001 86dd
  6007 96ef 0016 11 40 ${A1.toString('hex')} ${A2.toString('hex')}
  1a09 1a0a 0016 cf6b
  68656c6c6f206e6574706f6c6c0a`);
const PAYLOAD = Buffer.from('hello netpoll\n');
/** Kernel MLDv2 report from :: to ff02::16 behind Hop-by-Hop (router alert 0, PadN). */
const KERNEL_MLD_HBH = hex(`
  333300000016 020000000001 86dd
  6000 0000 0024 00 01 00000000000000000000000000000000 ff020000000000000000000000000016
  3a 00 0502 0000 0100
  8f00 5c58 0000 0001 04 00 0000 ff020000000000000000000000001234`);
/** Kernel first fragment of a 1608-byte Echo Request: Fragment header (offset 0, M, id 0xb6c367a3), 1448 bytes. */
const KERNEL_FRAG1 = Buffer.concat([hex(`
  020000000002 020000000001 86dd
  6002 a780 05b0 2c 40 ${A1.toString('hex')} ${A2.toString('hex')}
  3a 00 0001 b6c367a3
  8000 bdca 05eb 0001 4ee8026b00000000 322c0b0000000000`), Buffer.from(Array.from({ length: 1424 }, (_, i) => (i + 16) & 0xff))]);
/**
 * Hand-built (RFC 8200 §4.6, RFC 8754): Destination Options (PadN 4) -> Segment Routing header (type 4, segments
 * left 0, last entry 0, segment list [fd00::2]) -> the kernel's UDP datagram above. With segments left 0 the final
 * destination is the header's, so its UDP checksum stays right. tshark decodes it with no expert info, checksum good.
 */
const ROUTING_DSTOPTS = hex(`
  020000000002 020000000001 86dd
  6000 0000 0036 3c 40 ${A1.toString('hex')} ${A2.toString('hex')}
  2b 00 0104 00000000
  11 02 04 00 00 00 0000 ${A2.toString('hex')}
  1a09 1a0a 0016 cf6b 68656c6c6f206e6574706f6c6c0a`);

const IP = ETH_HEADER_LEN;
const UP = ETH_HEADER_LEN + IPV6_HEADER_LEN;

test('vectors: lengths as captured, IPv6 EtherType, and the reference sum over the pseudo-header verifies each checksum', () => {
  assert.deepEqual([KERNEL_NS, KERNEL_NA, KERNEL_PING, KERNEL_UDP6, KERNEL_MLD_HBH, KERNEL_FRAG1].map((b) => b.length), [86, 86, 70, 76, 90, 1510]);
  for (const f of [KERNEL_NS, KERNEL_NA, KERNEL_PING, KERNEL_UDP6, KERNEL_MLD_HBH, KERNEL_FRAG1]) assert.equal(EthernetView.checked(f).ethertype, ETHERTYPE_IPV6);
  // The pseudo-header written out the slow way (src, dst, u32 length, 3 zero bytes, next header), summed by the helper.
  const pseudo = (src: Buffer, dst: Buffer, len: number, nh: number) => onesSum(Buffer.concat([src, dst, hex(len.toString(16).padStart(8, '0')), hex('000000'), Buffer.from([nh])]), 0, 40);
  assert.equal(onesSum(KERNEL_NS, UP, 86, pseudo(A1, SNMA2, 32, 58)), 0xffff);
  assert.equal(onesSum(KERNEL_NA, UP, 86, pseudo(A2, A1, 32, 58)), 0xffff);
  assert.equal(onesSum(KERNEL_PING, UP, 70, pseudo(A1, A2, 16, 58)), 0xffff);
  assert.equal(onesSum(KERNEL_UDP6, UP, 76, pseudo(A1, A2, 22, 17)), 0xffff);
  assert.equal(onesSum(KERNEL_MLD_HBH, UP + 8, 90, pseudo(Buffer.alloc(16), KERNEL_MLD_HBH.subarray(38, 54), 28, 58)), 0xffff);
  assert.equal(ipv6PseudoHeaderSum(A1, A2, 22, 17), pseudo(A1, A2, 22, 17));
});

// --- IPv6 fixed header ---------------------------------------------------------------------------------------------
const IP6_REPR: Ipv6Repr = { trafficClass: 0, flowLabel: 0x796ef, payloadLength: 22, nextHeader: 17, hopLimit: 64, src: A1, dst: A2 };
const IP6_HDR = KERNEL_UDP6.subarray(IP, UP);

test('ipv6: deconstruct', () => {
  const v = Ipv6View.checked(KERNEL_UDP6, IP);
  assert.equal(v.version, 6);
  assert.equal(v.trafficClass, 0);
  assert.equal(v.flowLabel, 0x796ef);
  assert.equal(v.payloadLength, 22);
  assert.equal(v.nextHeader, 17);
  assert.equal(v.hopLimit, 64);
  assert.equal(formatIpv6Addr(v.src), 'fd00::1');
  assert.equal(formatIpv6Addr(v.dst), 'fd00::2');
  assert.equal(v.payloadOffset, UP);
  assert.equal(v.end, 76);
  const ns = Ipv6View.checked(KERNEL_NS, IP);
  assert.deepEqual([ns.flowLabel, ns.hopLimit, ns.nextHeader, formatIpv6Addr(ns.dst)], [0, 255, IPPROTO_ICMPV6, 'ff02::1:ff00:2']);
});
test('ipv6: construct', () => {
  const b = Buffer.alloc(IPV6_HEADER_LEN);
  const v = new Ipv6View(b);
  v.version = 6;
  v.trafficClass = 0xb8; // set and cleared again: the neighbouring fields must not change
  v.flowLabel = 0x796ef;
  assert.equal(v.trafficClass, 0xb8);
  v.trafficClass = 0;
  v.payloadLength = 22;
  v.nextHeader = 17;
  v.hopLimit = 64;
  v.src = A1;
  v.dst = A2;
  assert.deepEqual(b, IP6_HDR);
  assert.equal(v.version, 6);
  assert.equal(v.flowLabel, 0x796ef);
});
test('ipv6: parse', () => {
  assert.deepEqual(Ipv6Repr.parse(Ipv6View.checked(KERNEL_UDP6, IP)), IP6_REPR);
  assert.deepEqual(Ipv6Repr.parse(Ipv6View.checked(KERNEL_PING, IP)), { ...IP6_REPR, flowLabel: 0x2a780, payloadLength: 16, nextHeader: 58 });
});
test('ipv6: emit', () => {
  const b = Buffer.alloc(Ipv6Repr.bufferLen());
  Ipv6Repr.emit(IP6_REPR, new Ipv6View(b));
  assert.deepEqual(b, IP6_HDR);
  Ipv6Repr.emit({ ...IP6_REPR, flowLabel: 0, payloadLength: 32, nextHeader: 58, hopLimit: 255, dst: SNMA2 }, new Ipv6View(b));
  assert.deepEqual(b, KERNEL_NS.subarray(IP, UP));
});
test('ipv6: what check refuses, named', () => {
  assert.throws(() => Ipv6View.checked(KERNEL_UDP6, IP, IP + 39), /IPv6 header at offset 14: need 40 bytes, have 39/);
  assert.throws(() => Ipv6View.checked(KERNEL_UDP6, IP, 75), /payload length 22 runs past the 21 bytes after the header/);
  const v4 = Buffer.from(KERNEL_UDP6);
  v4[IP] = 0x45;
  assert.throws(() => Ipv6View.checked(v4, IP), /version 4, expected 6/);
  assert.throws(() => Ipv6Repr.emit({ ...IP6_REPR, flowLabel: 0x100000 }, new Ipv6View(Buffer.alloc(40))), /IPv6 flow label 1048576 is out of range: expected 0-1048575/);
  assert.throws(() => Ipv6Repr.emit({ ...IP6_REPR, src: A1.subarray(0, 4) }, new Ipv6View(Buffer.alloc(40))), /IPv6 address of 4 bytes: expected 16/);
});

// --- extension headers ---------------------------------------------------------------------------------------------
test('ipv6 extension headers: none, Hop-by-Hop, Fragment (first piece), Destination Options + Routing', () => {
  assert.deepEqual(ipv6UpperLayer(KERNEL_UDP6, IP), { protocol: 17, offset: UP, end: 76, extensions: [], fragment: null });
  assert.deepEqual(ipv6UpperLayer(KERNEL_MLD_HBH, IP), {
    protocol: 58, offset: UP + 8, end: 90, extensions: [{ type: IPV6_NH.HOP_BY_HOP, offset: UP, length: 8 }], fragment: null,
  });
  const f = ipv6UpperLayer(KERNEL_FRAG1, IP);
  assert.equal(f.protocol, 58);
  assert.equal(f.offset, UP + 8);
  assert.deepEqual(f.fragment, { offset: 0, more: true, id: 0xb6c367a3 });
  const r = ipv6UpperLayer(ROUTING_DSTOPTS, IP);
  assert.deepEqual(r.extensions, [{ type: IPV6_NH.DEST_OPTS, offset: UP, length: 8 }, { type: IPV6_NH.ROUTING, offset: UP + 8, length: 24 }]);
  assert.equal(r.protocol, 17);
  assert.equal(r.offset, UP + 32);
  const u = UdpView.checked(ROUTING_DSTOPTS, r.offset, r.end);
  assert.deepEqual(u.payload, PAYLOAD);
  assert.ok(udp6ChecksumOk(ROUTING_DSTOPTS, r.offset, u.length, A1, A2));
});
test('ipv6 extension headers: refused with the reason', () => {
  // A later fragment: its upper-layer header is in the first piece.
  const later = Buffer.from(KERNEL_FRAG1.subarray(0, UP + 8 + 160));
  later.writeUInt16BE(160 + 8, IP + 4);
  later.writeUInt16BE(1448, UP + 2); // offset 1448, M clear
  assert.throws(() => ipv6UpperLayer(later, IP), /IPv6 fragment at offset 54 \(id 0xb6c367a3, fragment offset 1448, the last\): not the first piece/);
  // Hop-by-Hop anywhere but first.
  const hbhLate = Buffer.from(ROUTING_DSTOPTS);
  hbhLate[UP] = IPV6_NH.HOP_BY_HOP;
  assert.throws(() => ipv6UpperLayer(hbhLate, IP), /Hop-by-Hop Options at offset 62 after 1 other extension header\(s\): it must come first/);
  // A header longer than the datagram.
  const long = Buffer.from(ROUTING_DSTOPTS);
  long[UP + 9] = 9;
  assert.throws(() => ipv6UpperLayer(long, IP), /IPv6 Routing header at offset 62: length 80 runs past the 46 bytes left/);
  // A jumbogram.
  const jumbo = Buffer.from(KERNEL_MLD_HBH);
  jumbo.writeUInt16BE(0, IP + 4);
  assert.throws(() => ipv6UpperLayer(jumbo, IP), /jumbogram \(RFC 2675\), not supported/);
  for (const b of [later, hbhLate, long, jumbo]) assert.throws(() => ipv6UpperLayer(b, IP), WireError);
});

// --- ICMPv6: Neighbor Solicitation / Advertisement, Echo ---------------------------------------------------------------
const NS_REPR: NeighborSolicitRepr = { type: ICMPV6_NEIGHBOR_SOLICIT, target: A2, lladdr: MAC1 };
const NA_REPR: NeighborAdvertRepr = { type: ICMPV6_NEIGHBOR_ADVERT, router: false, solicited: true, override: true, target: A2, lladdr: MAC2 };

test('icmpv6: deconstruct (NS, NA, Echo Request)', () => {
  const ns = Icmpv6View.checked(KERNEL_NS, UP);
  assert.deepEqual([ns.type, ns.code, ns.checksum, ns.body, ns.length], [135, 0, 0x7d97, 0, 32]);
  assert.equal(formatIpv6Addr(ns.target), 'fd00::2');
  assert.equal(ns.ndOptionsOffset, UP + 24);
  assert.deepEqual([KERNEL_NS[UP + 24], KERNEL_NS[UP + 25]], [NDP_OPT_SOURCE_LLADDR, 1]);
  assert.ok(ns.verifyChecksum(A1, SNMA2));
  assert.ok(!ns.verifyChecksum(A1, A2), 'the pseudo-header counts');
  const na = Icmpv6View.checked(KERNEL_NA, UP);
  assert.deepEqual([na.type, na.code, na.checksum, na.routerFlag, na.solicitedFlag, na.overrideFlag], [136, 0, 0x1c9a, false, true, true]);
  assert.equal(formatIpv6Addr(na.target), 'fd00::2');
  assert.equal(KERNEL_NA[UP + 24], NDP_OPT_TARGET_LLADDR);
  assert.ok(na.verifyChecksum(A2, A1));
  const ping = Icmpv6View.checked(KERNEL_PING, UP);
  assert.deepEqual([ping.type, ping.code, ping.checksum, ping.echoIdent, ping.echoSeq], [128, 0, 0xa10b, 1491, 1]);
  assert.ok(ping.verifyChecksum(A1, A2));
});
test('icmpv6: construct (NS and NA: fields, the option by hand, then fillChecksum)', () => {
  const b = Buffer.alloc(32);
  const v = new Icmpv6View(b);
  v.type = 135;
  v.code = 0;
  v.checksum = 0xffff; // fillChecksum must not count what was there
  v.body = 0;
  v.target = A2;
  b.set(hex('0101 020000000001'), 24);
  v.fillChecksum(A1, SNMA2);
  assert.deepEqual(b, KERNEL_NS.subarray(UP));
  v.type = 136;
  v.body = 0x60000000;
  b.set(hex('0201 020000000002'), 24);
  v.fillChecksum(A2, A1);
  assert.deepEqual(b, KERNEL_NA.subarray(UP));
});
test('icmpv6: parse (NS, NA, Echo Request; the checksum is verified)', () => {
  assert.deepEqual(Icmpv6Repr.parse(Icmpv6View.checked(KERNEL_NS, UP), A1, SNMA2), NS_REPR);
  assert.deepEqual(Icmpv6Repr.parse(Icmpv6View.checked(KERNEL_NA, UP), A2, A1), NA_REPR);
  assert.deepEqual(parseIcmpv6(KERNEL_PING, UP, 70, A1, A2), { type: ICMPV6_ECHO_REQUEST, ident: 1491, seq: 1, data: hex('70696e67 00000000') });
  // (src and dst swapped would still verify: the sum does not know the order.)
  assert.throws(() => parseIcmpv6(KERNEL_NA, UP, 86, A2, SNMA2), /ICMPv6 message at offset 54: checksum 0x1c9a is wrong, expected 0x[0-9a-f]{4} \(from fd00::2 to ff02::1:ff00:2\)/);
  assert.equal(parseIcmpv6(KERNEL_NA, UP, 86, A2, SNMA2, { checksum: 'ignore' }).type, ICMPV6_NEIGHBOR_ADVERT);
  const zeroOpt = Buffer.from(KERNEL_NS);
  zeroOpt[UP + 25] = 0;
  assert.throws(() => parseIcmpv6(zeroOpt, UP, 86, A1, SNMA2, { checksum: 'ignore' }), /NDP option type 1 at offset 78: length 0, expected 1 or more/);
  assert.throws(() => parseIcmpv6(KERNEL_MLD_HBH, UP + 8, 90, Buffer.alloc(16), KERNEL_MLD_HBH.subarray(38, 54)), /type 143 is not one rawpoll reads; expected Echo Request \(128\)/);
  const noOpt = parseIcmpv6(KERNEL_NS, UP, UP + 24, A1, SNMA2, { checksum: 'ignore' });
  assert.deepEqual(noOpt, { ...NS_REPR, lladdr: null });
});
test('icmpv6: emit (NS, NA, Echo Request)', () => {
  const b = Buffer.alloc(Icmpv6Repr.bufferLen(NS_REPR));
  Icmpv6Repr.emit(NS_REPR, new Icmpv6View(b), A1, SNMA2);
  assert.deepEqual(b, KERNEL_NS.subarray(UP));
  Icmpv6Repr.emit(NA_REPR, new Icmpv6View(b), A2, A1);
  assert.deepEqual(b, KERNEL_NA.subarray(UP));
  const echo = { type: ICMPV6_ECHO_REQUEST, ident: 1491, seq: 1, data: hex('70696e67 00000000') } as const;
  const e = Buffer.alloc(Icmpv6Repr.bufferLen(echo));
  Icmpv6Repr.emit(echo, new Icmpv6View(e), A1, A2);
  assert.deepEqual(e, KERNEL_PING.subarray(UP));
  Icmpv6Repr.emit(NA_REPR, new Icmpv6View(b), A2, A1, { checksum: 'bad' });
  assert.equal(b.readUInt16BE(2), 0x1c9b, 'bad: the right value plus one');
});

// --- UDP over IPv6 -------------------------------------------------------------------------------------------------
const UDP6_REPR: UdpRepr = { srcPort: 6665, dstPort: 6666, length: 22 };
const UDP6_DGRAM = KERNEL_UDP6.subarray(UP);

test('udp over ipv6: deconstruct', () => {
  const v = UdpView.checked(KERNEL_UDP6, UP);
  assert.deepEqual([v.srcPort, v.dstPort, v.length, v.checksum], [6665, 6666, 22, 0xcf6b]);
  assert.deepEqual(v.payload, PAYLOAD);
  assert.ok(udp6ChecksumOk(KERNEL_UDP6, UP, 22, A1, A2));
  assert.ok(!udp6ChecksumOk(KERNEL_UDP6, UP, 22, A2, A1.map((x, i) => (i === 15 ? 3 : x)) as Buffer), 'the pseudo-header counts');
});
test('udp over ipv6: construct', () => {
  const b = Buffer.alloc(UDP6_DGRAM.length);
  PAYLOAD.copy(b, UDP_HEADER_LEN);
  const v = new UdpView(b);
  v.srcPort = 6665;
  v.dstPort = 6666;
  v.length = 22;
  v.checksum = 0x1234;
  fillUdp6Checksum(v, A1, A2);
  assert.deepEqual(b, UDP6_DGRAM);
});
test('udp over ipv6: parse', () => {
  assert.deepEqual(UdpRepr.parse(UdpView.checked(KERNEL_UDP6, UP)), UDP6_REPR);
});
test('udp over ipv6: emit', () => {
  const b = Buffer.alloc(UdpRepr.bufferLen(UDP6_REPR));
  PAYLOAD.copy(b, UDP_HEADER_LEN);
  emitUdp6(UDP6_REPR, b, 0, A1, A2);
  assert.deepEqual(b, UDP6_DGRAM);
  assert.throws(() => emitUdp6(UDP6_REPR, b, 0, A1, A2, { udpChecksum: 'none' }), /UDP over IPv6 without a checksum: RFC 8200 §8.1 makes it mandatory/);
});
test('udp over ipv6: a computed 0 goes out as 0xffff, and a zero field does not verify', () => {
  // Find a payload word that makes the sum come to 0xffff (checksum 0): the complement of what the rest sums to.
  const b = Buffer.alloc(UDP_HEADER_LEN + 2);
  const v = new UdpView(b);
  v.srcPort = 1;
  v.dstPort = 2;
  v.length = 10;
  const rest = onesSum(b, 0, 10, ipv6PseudoHeaderSum(A1, A2, 10, 17));
  b.writeUInt16BE(~rest & 0xffff, 8);
  assert.equal(onesSum(b, 0, 10, ipv6PseudoHeaderSum(A1, A2, 10, 17)), 0xffff);
  assert.equal(udp6Checksum(b, 0, 10, A1, A2), 0xffff);
  fillUdp6Checksum(v, A1, A2);
  assert.equal(v.checksum, 0xffff);
  assert.ok(udp6ChecksumOk(b, 0, 10, A1, A2));
  v.checksum = 0;
  assert.ok(!udp6ChecksumOk(b, 0, 10, A1, A2), 'zero is not "no checksum" over IPv6');
});

// --- addresses -----------------------------------------------------------------------------------------------------
test('addresses: text through ipaddr.js, RFC 5952 out; solicited-node group and its MAC as the kernel used them', () => {
  assert.deepEqual(parseIpv6Addr('fd00::2', 'target'), A2);
  assert.deepEqual(parseIpv6Addr(' FD00:0:0:0:0:0:0:2 ', 'target'), A2);
  assert.equal(formatIpv6Addr(parseIpv6Addr('2001:db8:0:0:1:0:0:1', 'x')), '2001:db8::1:0:0:1');
  assert.equal(formatIpv6Addr(KERNEL_NS.subarray(38, 54)), 'ff02::1:ff00:2');
  assert.deepEqual(solicitedNodeAddr(A2), KERNEL_NS.subarray(38, 54));
  assert.equal(formatIpv6Addr(solicitedNodeAddr(parseIpv6Addr('fe80::aabb:ccdd:eeff:1122', 'x'))), 'ff02::1:ffff:1122');
  assert.equal(formatMac(ipv6MulticastMac(solicitedNodeAddr(A2))), '33:33:ff:00:00:02');
  assert.deepEqual(ipv6MulticastMac(solicitedNodeAddr(A2)), KERNEL_NS.subarray(0, 6));
  assert.deepEqual(ipv6MulticastMac(KERNEL_MLD_HBH.subarray(38, 54)), KERNEL_MLD_HBH.subarray(0, 6));
  assert.throws(() => ipv6MulticastMac(A2), /IPv6 address fd00::2 is not multicast: expected ff00::\/8/);
  assert.ok(isIpv6LinkLocal(parseIpv6Addr('fe80::1', 'x')));
  assert.ok(!isIpv6LinkLocal(A1));
  assert.deepEqual(splitIpv6Zone('fe80::1%eth1'), { addr: 'fe80::1', zone: 'eth1' });
  assert.throws(() => parseIpv6Addr('10.0.0.2', 'target'), (e: Error) => e instanceof AddressError && /bad target '10.0.0.2': expected an IPv6 address like fd00::2/.test(e.message));
  assert.throws(() => parseIpv6Addr('fd00::1::2', 'target'), AddressError);
  assert.throws(() => parseIpv6Addr('fe80::1%eth1', 'target'), /a zone \(%IF\) is not taken here/);
});

// --- whole frames: what resolve/ndp.ts builds and accepts, on the kernel's own exchange --------------------------------
test('ndp frames: buildNsFrame and buildNaFrame rebuild the kernel\'s NS and NA byte for byte; parseNdpFrame reads them', async () => {
  const { buildNaFrame, buildNsFrame, ndpAdvertFilter, parseNdpFrame } = await import('../../src/resolve/ndp.js');
  assert.deepEqual(buildNsFrame(MAC1, A1, A2), KERNEL_NS);
  assert.deepEqual(buildNaFrame(MAC2, A2, MAC1, A1, { solicited: true, override: true }), KERNEL_NA);
  const ns = parseNdpFrame(KERNEL_NS)!;
  assert.deepEqual([ns.srcMac, ns.src, ns.dst, ns.msg], [MAC1, A1, SNMA2, NS_REPR]);
  assert.deepEqual(parseNdpFrame(KERNEL_NA)!.msg, NA_REPR);
  // RFC 4861 §7.1: what a node must drop is not an NDP frame to us.
  const routed = Buffer.from(KERNEL_NA);
  routed[IP + 7] = 254;
  assert.equal(parseNdpFrame(routed), null, 'hop limit below 255: it was routed');
  const badSum = Buffer.from(KERNEL_NA);
  badSum[UP + 2] ^= 1;
  assert.equal(parseNdpFrame(badSum), null, 'a wrong checksum');
  assert.equal(parseNdpFrame(KERNEL_UDP6), null);
  assert.equal(parseNdpFrame(KERNEL_PING), null);
  assert.equal(ndpAdvertFilter(A2), 'icmp6 and ip6[7] = 255 and ip6[40] = 136 and ip6[48:4] = 0xfd000000 and ip6[52:4] = 0x00000000 and ip6[56:4] = 0x00000000 and ip6[60:4] = 0x00000002');
});
