/**
 * Known byte vectors, one per protocol, and smoltcp's four small tests on each (src/wire/*.rs `mod test`):
 * deconstruct (view getters read every field of the vector), construct (view setters into a zeroed buffer give the
 * vector), parse (bytes -> repr), emit (repr -> bytes, compared). All against the production codecs in src/wire and
 * src/proto, and the frame builder/parser built on them.
 *
 * Where the bytes come from:
 * - KERNEL_*: captured from the Linux kernel (6.18) while writing this test, two network namespaces joined by a veth
 *   pair (02:00:00:00:00:01 10.0.0.1/24 <-> 02:00:00:00:00:02 10.0.0.2/24, IPv6 off, `ethtool -K tx off` on the
 *   sender so the UDP checksum is the kernel's own, not a partial one left for offload):
 *   `tcpdump -i <peer veth> -w f.pcap 'arp or udp'` on the receiver while the sender ran
 *   `python3 -c "s=socket.socket(AF_INET,SOCK_DGRAM); s.bind(('10.0.0.1',6665)); s.sendto(b'hello netpoll\n',('10.0.0.2',6666))"`;
 *   then `tcpdump -r f.pcap -nn -e -xx -vv` (it printed "[udp sum ok]"). The ARP exchange is the kernel resolving 10.0.0.2.
 * - XDPSOCK_PKTGEN: a real 802.1Q frame carrying a pktgen header (struct pktgen_hdr, net/core/pktgen.c), printed by
 *   tcpdump in Ong Boon Leong's netdev post "[PATCH bpf-next v2 0/7] samples/bpf: xdpsock app enhancements"
 *   (30 Dec 2021, <20211230035447.523177-1-boon.leong.ong@intel.com>), second frame: "ce:17:07:17:3e:3a >
 *   fa:8d:f1:e2:0b:e8, ethertype 802.1Q (0x8100), length 62: vlan 12, p 3, ethertype IPv4 ... [udp sum ok]".
 *   tcpdump -X printed the IP datagram as hex; the 18 Ethernet/802.1Q bytes are written from that line (TCI =
 *   p 3 << 13 | vlan 12 = 0x600c). tshark decodes the whole frame as 802.1Q PRI 3 DEI 0 ID 12, IP and UDP checksums
 *   correct, "Linux Kernel Packet Generator" magic 0xbe9be955, seq 1, 2021-12-30 03:46:41.432252 UTC.
 * - LIBTINS_VLAN_ARP: the 802.1Q-tagged gratuitous ARP reply from a Cisco MAC (00:19:06:ea:b8:c1) in libtins'
 *   tests/src/dot1q_test.cpp (expected_packet): the DEI bit set (TCI 0xb07b: PCP 5, DEI 1, VID 123); tshark agrees.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EthernetRepr, EthernetView, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_VLAN, ETH_FIELD } from '../../src/wire/ethernet.js';
import { VlanRepr, VlanView, VLAN_TAG_LEN } from '../../src/wire/vlan.js';
import { Ipv4Repr, Ipv4View, IPPROTO_UDP, IPV4_HEADER_LEN } from '../../src/wire/ipv4.js';
import { UdpRepr, UdpView, UDP_HEADER_LEN } from '../../src/wire/udp.js';
import { ArpRepr, ArpView, ARP_LEN, ARP_REPLY, ARP_REQUEST } from '../../src/wire/arp.js';
import { PktgenRepr, PktgenView, PKTGEN_HDR_LEN, PKTGEN_MAGIC } from '../../src/proto/pktgen.js';
import { parseUdpFrame, UdpFramer } from '../../src/wire/udpframe.js';
import { formatMac } from '../../src/wire/mac.js';
import { hex, onesSum, refChecksum } from '../helpers/bytes.js';

// --- the vectors ---------------------------------------------------------------------------------------------------
/** Kernel who-has 10.0.0.2 tell 10.0.0.1 (42 bytes: veth does not pad). */
const KERNEL_ARP_REQ = hex(`
  ffffffffffff 020000000001 0806
  0001 0800 06 04 0001 020000000001 0a000001 000000000000 0a000002`);
/** Kernel reply: 10.0.0.2 is-at 02:00:00:00:00:02. */
const KERNEL_ARP_REPLY = hex(`
  020000000001 020000000002 0806
  0001 0800 06 04 0002 020000000002 0a000002 020000000001 0a000001`);
/** Kernel UDP 10.0.0.1:6665 -> 10.0.0.2:6666 "hello netpoll\n": TTL 64, DF, ID 0x1602, IP checksum 0x10bf, UDP 0xb56d. */
const KERNEL_UDP = hex(`
  020000000002 020000000001 0800
  4500 002a 1602 4000 4011 10bf 0a000001 0a000002
  1a09 1a0a 0016 b56d
  68656c6c6f206e6574706f6c6c0a`);
const KERNEL_PAYLOAD = Buffer.from('hello netpoll\n');
/** xdpsock frame: 802.1Q VID 12 PCP 3, 10.10.10.16:4096 -> 10.10.10.32:4096, TTL 64, ID 0, pktgen seq 1. */
const XDPSOCK_PKTGEN = hex(`
  fa8df1e20be8 ce1707173e3a 8100
  600c 0800
  4500 002c 0000 0000 4011 527e 0a0a0a10 0a0a0a20
  1000 1000 0018 e996
  be9be955 00000001 61cd2ba1 0006987c`);
/** libtins' tagged ARP reply, padded to 64 bytes. */
const LIBTINS_VLAN_ARP = hex(`
  ffffffffffff 001906eab8c1 8100
  b07b 0806
  0001 0800 0604 0002 001906eab8c1 c0a87b01 ffffffffffff c0a87b01
  ${'00'.repeat(18)}`);

const ETH_END = ETH_FIELD.HEADER_LEN;
const mac = (s: string) => Buffer.from(s.replace(/:/g, ''), 'hex');

test('vectors: lengths as captured, and the reference checksum agrees with the captured checksums', () => {
  assert.deepEqual([KERNEL_ARP_REQ.length, KERNEL_ARP_REPLY.length, KERNEL_UDP.length, XDPSOCK_PKTGEN.length, LIBTINS_VLAN_ARP.length], [42, 42, 56, 62, 64]);
  assert.equal(refChecksum(KERNEL_UDP.subarray(14, 34)), 0);
  assert.equal(onesSum(KERNEL_UDP, 34, 56, onesSum(hex('0a000001 0a000002 0011 0016'), 0, 12)), 0xffff);
  assert.equal(refChecksum(XDPSOCK_PKTGEN.subarray(18, 38)), 0);
  assert.equal(onesSum(XDPSOCK_PKTGEN, 38, 62, onesSum(hex('0a0a0a10 0a0a0a20 0011 0018'), 0, 12)), 0xffff);
});

// --- Ethernet ------------------------------------------------------------------------------------------------------
const ETH_REPR: EthernetRepr = { dst: mac('ff:ff:ff:ff:ff:ff'), src: mac('02:00:00:00:00:01'), ethertype: ETHERTYPE_ARP };

test('ethernet: deconstruct', () => {
  const v = EthernetView.checked(KERNEL_ARP_REQ);
  assert.equal(formatMac(v.dst), 'ff:ff:ff:ff:ff:ff');
  assert.equal(formatMac(v.src), '02:00:00:00:00:01');
  assert.equal(v.ethertype, ETHERTYPE_ARP);
  assert.equal(v.payloadOffset, 14);
});
test('ethernet: construct', () => {
  const b = Buffer.alloc(ETH_END);
  const v = new EthernetView(b);
  v.dst = mac('ff:ff:ff:ff:ff:ff');
  v.src = mac('02:00:00:00:00:01');
  v.ethertype = 0x0806;
  assert.deepEqual(b, KERNEL_ARP_REQ.subarray(0, ETH_END));
});
test('ethernet: parse', () => {
  assert.deepEqual(EthernetRepr.parse(EthernetView.checked(KERNEL_ARP_REQ)), ETH_REPR);
});
test('ethernet: emit', () => {
  const b = Buffer.alloc(EthernetRepr.bufferLen());
  EthernetRepr.emit(ETH_REPR, new EthernetView(b));
  assert.deepEqual(b, KERNEL_ARP_REQ.subarray(0, ETH_END));
});

// --- 802.1Q --------------------------------------------------------------------------------------------------------
const VLAN_REPR: VlanRepr = { pcp: 3, dei: false, vid: 12, ethertype: ETHERTYPE_IPV4 };
const TAG = XDPSOCK_PKTGEN.subarray(ETH_END, ETH_END + VLAN_TAG_LEN);

test('802.1Q: deconstruct (and the outer EtherType is the TPID)', () => {
  assert.equal(EthernetView.checked(XDPSOCK_PKTGEN).ethertype, ETHERTYPE_VLAN);
  const v = VlanView.checked(XDPSOCK_PKTGEN, ETH_END);
  assert.equal(v.tci, 0x600c);
  assert.equal(v.pcp, 3);
  assert.equal(v.dei, false);
  assert.equal(v.vid, 12);
  assert.equal(v.ethertype, ETHERTYPE_IPV4);
  assert.equal(v.payloadOffset, 18);
  const d = VlanView.checked(LIBTINS_VLAN_ARP, ETH_END);
  assert.deepEqual([d.pcp, d.dei, d.vid, d.ethertype], [5, true, 123, ETHERTYPE_ARP]);
});
test('802.1Q: construct', () => {
  const b = Buffer.alloc(VLAN_TAG_LEN);
  const v = new VlanView(b);
  v.pcp = 3;
  v.vid = 12;
  v.dei = false;
  v.ethertype = ETHERTYPE_IPV4;
  assert.deepEqual(b, TAG);
  v.pcp = 5;
  v.dei = true;
  v.vid = 123;
  v.ethertype = ETHERTYPE_ARP;
  assert.deepEqual(b, LIBTINS_VLAN_ARP.subarray(ETH_END, ETH_END + VLAN_TAG_LEN));
});
test('802.1Q: parse', () => {
  assert.deepEqual(VlanRepr.parse(VlanView.checked(XDPSOCK_PKTGEN, ETH_END)), VLAN_REPR);
  assert.deepEqual(VlanRepr.parse(VlanView.checked(LIBTINS_VLAN_ARP, ETH_END)), { pcp: 5, dei: true, vid: 123, ethertype: ETHERTYPE_ARP });
});
test('802.1Q: emit', () => {
  const b = Buffer.alloc(VlanRepr.bufferLen());
  VlanRepr.emit(VLAN_REPR, new VlanView(b));
  assert.deepEqual(b, TAG);
  VlanRepr.emit({ pcp: 5, dei: true, vid: 123, ethertype: ETHERTYPE_ARP }, new VlanView(b));
  assert.deepEqual(b, LIBTINS_VLAN_ARP.subarray(ETH_END, ETH_END + VLAN_TAG_LEN));
});

// --- ARP -----------------------------------------------------------------------------------------------------------
const ARP_REQ_REPR: ArpRepr = {
  op: ARP_REQUEST, senderMac: mac('02:00:00:00:00:01'), senderIp: 0x0a000001, targetMac: Buffer.alloc(6), targetIp: 0x0a000002,
};
const ARP_REPLY_REPR: ArpRepr = {
  op: ARP_REPLY, senderMac: mac('02:00:00:00:00:02'), senderIp: 0x0a000002, targetMac: mac('02:00:00:00:00:01'), targetIp: 0x0a000001,
};

test('arp: deconstruct', () => {
  const v = ArpView.checked(KERNEL_ARP_REQ, ETH_END);
  assert.deepEqual([v.htype, v.ptype, v.hlen, v.plen, v.op], [1, 0x0800, 6, 4, ARP_REQUEST]);
  assert.equal(formatMac(v.sha), '02:00:00:00:00:01');
  assert.equal(v.spa, 0x0a000001);
  assert.equal(formatMac(v.tha), '00:00:00:00:00:00');
  assert.equal(v.tpa, 0x0a000002);
  const r = ArpView.checked(KERNEL_ARP_REPLY, ETH_END);
  assert.equal(r.op, ARP_REPLY);
  assert.equal(formatMac(r.sha), '02:00:00:00:00:02');
  assert.equal(formatMac(r.tha), '02:00:00:00:00:01');
});
test('arp: construct', () => {
  const b = Buffer.alloc(ARP_LEN);
  const v = new ArpView(b);
  v.htype = 1;
  v.ptype = 0x0800;
  v.hlen = 6;
  v.plen = 4;
  v.op = ARP_REQUEST;
  v.sha = mac('02:00:00:00:00:01');
  v.spa = 0x0a000001;
  v.tha = Buffer.alloc(6);
  v.tpa = 0x0a000002;
  assert.deepEqual(b, KERNEL_ARP_REQ.subarray(ETH_END));
});
test('arp: parse', () => {
  assert.deepEqual(ArpRepr.parse(ArpView.checked(KERNEL_ARP_REQ, ETH_END)), ARP_REQ_REPR);
  assert.deepEqual(ArpRepr.parse(ArpView.checked(KERNEL_ARP_REPLY, ETH_END)), ARP_REPLY_REPR);
  // The tagged one: ARP behind the 802.1Q tag.
  const tagged = ArpRepr.parse(ArpView.checked(LIBTINS_VLAN_ARP, ETH_END + VLAN_TAG_LEN));
  assert.equal(formatMac(tagged.senderMac), '00:19:06:ea:b8:c1');
  assert.equal(tagged.senderIp, 0xc0a87b01);
});
test('arp: emit (request and reply)', () => {
  const b = Buffer.alloc(ArpRepr.bufferLen());
  ArpRepr.emit(ARP_REQ_REPR, new ArpView(b));
  assert.deepEqual(b, KERNEL_ARP_REQ.subarray(ETH_END));
  ArpRepr.emit(ARP_REPLY_REPR, new ArpView(b));
  assert.deepEqual(b, KERNEL_ARP_REPLY.subarray(ETH_END));
});

// --- IPv4 ----------------------------------------------------------------------------------------------------------
const IP_REPR: Ipv4Repr = {
  tos: 0, totalLength: 42, id: 0x1602, df: true, mf: false, fragOffset: 0, ttl: 64, protocol: IPPROTO_UDP,
  src: 0x0a000001, dst: 0x0a000002,
};
const IP_HDR = KERNEL_UDP.subarray(ETH_END, ETH_END + IPV4_HEADER_LEN);

test('ipv4: deconstruct', () => {
  const v = Ipv4View.checked(KERNEL_UDP, ETH_END);
  assert.equal(v.version, 4);
  assert.equal(v.headerLen, 20);
  assert.equal(v.tos, 0);
  assert.equal(v.totalLength, 42);
  assert.equal(v.id, 0x1602);
  assert.equal(v.df, true);
  assert.equal(v.mf, false);
  assert.equal(v.fragOffset, 0);
  assert.equal(v.isFragment, false);
  assert.equal(v.ttl, 64);
  assert.equal(v.protocol, IPPROTO_UDP);
  assert.equal(v.checksum, 0x10bf);
  assert.equal(v.src, 0x0a000001);
  assert.equal(v.dst, 0x0a000002);
  assert.equal(v.payloadOffset, 34);
  assert.ok(v.verifyChecksum());
});
test('ipv4: construct', () => {
  const b = Buffer.alloc(IPV4_HEADER_LEN);
  const v = new Ipv4View(b);
  v.version = 4;
  v.headerLen = 20;
  v.tos = 0;
  v.totalLength = 42;
  v.id = 0x1602;
  v.df = true;
  v.mf = false;
  v.fragOffset = 0;
  v.ttl = 64;
  v.protocol = IPPROTO_UDP;
  v.src = 0x0a000001;
  v.dst = 0x0a000002;
  v.checksum = 0xffff; // fillChecksum must not count what was there
  v.fillChecksum();
  assert.deepEqual(b, IP_HDR);
});
test('ipv4: parse', () => {
  assert.deepEqual(Ipv4Repr.parse(Ipv4View.checked(KERNEL_UDP, ETH_END)), IP_REPR);
  assert.deepEqual(Ipv4Repr.parse(Ipv4View.checked(XDPSOCK_PKTGEN, ETH_END + VLAN_TAG_LEN)), {
    tos: 0, totalLength: 44, id: 0, df: false, mf: false, fragOffset: 0, ttl: 64, protocol: IPPROTO_UDP,
    src: 0x0a0a0a10, dst: 0x0a0a0a20,
  });
});
test('ipv4: emit', () => {
  const b = Buffer.alloc(Ipv4Repr.bufferLen());
  Ipv4Repr.emit(IP_REPR, new Ipv4View(b));
  assert.deepEqual(b, IP_HDR);
});

// --- UDP -----------------------------------------------------------------------------------------------------------
const UDP_OFF = ETH_END + IPV4_HEADER_LEN;
const UDP_REPR: UdpRepr = { srcPort: 6665, dstPort: 6666, length: 22 };
const UDP_DGRAM = KERNEL_UDP.subarray(UDP_OFF);

test('udp: deconstruct', () => {
  const v = UdpView.checked(KERNEL_UDP, UDP_OFF);
  assert.equal(v.srcPort, 6665);
  assert.equal(v.dstPort, 6666);
  assert.equal(v.length, 22);
  assert.equal(v.checksum, 0xb56d);
  assert.equal(v.payloadOffset, 42);
  assert.deepEqual(v.payload, KERNEL_PAYLOAD);
  assert.ok(v.verifyChecksum(0x0a000001, 0x0a000002));
  assert.ok(!v.verifyChecksum(0x0a000001, 0x0a000003), 'the pseudo-header counts');
});
test('udp: construct', () => {
  const b = Buffer.alloc(UDP_DGRAM.length);
  KERNEL_PAYLOAD.copy(b, UDP_HEADER_LEN);
  const v = new UdpView(b);
  v.srcPort = 6665;
  v.dstPort = 6666;
  v.length = 22;
  v.checksum = 0x1234; // fillChecksum must not count what was there
  v.fillChecksum(0x0a000001, 0x0a000002);
  assert.deepEqual(b, UDP_DGRAM);
});
test('udp: parse', () => {
  assert.deepEqual(UdpRepr.parse(UdpView.checked(KERNEL_UDP, UDP_OFF)), UDP_REPR);
  assert.deepEqual(UdpRepr.parse(UdpView.checked(XDPSOCK_PKTGEN, 38)), { srcPort: 4096, dstPort: 4096, length: 24 });
});
test('udp: emit (payload in place, header pushed in front, as netpoll)', () => {
  const b = Buffer.alloc(UdpRepr.bufferLen(UDP_REPR));
  KERNEL_PAYLOAD.copy(b, UDP_HEADER_LEN);
  UdpRepr.emit(UDP_REPR, new UdpView(b), 0x0a000001, 0x0a000002);
  assert.deepEqual(b, UDP_DGRAM);
});

// --- pktgen --------------------------------------------------------------------------------------------------------
const PG_OFF = ETH_END + VLAN_TAG_LEN + IPV4_HEADER_LEN + UDP_HEADER_LEN;
const PG_REPR: PktgenRepr = { seq: 1, tvSec: 1640836001, tvUsec: 432252 };
const PG_HDR = XDPSOCK_PKTGEN.subarray(PG_OFF);

test('pktgen: deconstruct', () => {
  assert.equal(PG_HDR.length, PKTGEN_HDR_LEN);
  const v = PktgenView.checked(XDPSOCK_PKTGEN, PG_OFF);
  assert.equal(v.magic, PKTGEN_MAGIC);
  assert.equal(v.seq, 1);
  assert.equal(v.tvSec, 1640836001); // 2021-12-30 03:46:41 UTC, as tshark shows it
  assert.equal(v.tvUsec, 432252);
});
test('pktgen: construct', () => {
  const b = Buffer.alloc(PKTGEN_HDR_LEN);
  const v = new PktgenView(b);
  v.magic = PKTGEN_MAGIC;
  v.seq = 1;
  v.tvSec = 1640836001;
  v.tvUsec = 432252;
  assert.deepEqual(b, PG_HDR);
});
test('pktgen: parse', () => {
  assert.deepEqual(PktgenRepr.parse(PktgenView.checked(XDPSOCK_PKTGEN, PG_OFF)), PG_REPR);
});
test('pktgen: emit', () => {
  const b = Buffer.alloc(PktgenRepr.bufferLen());
  PktgenRepr.emit(PG_REPR, new PktgenView(b));
  assert.deepEqual(b, PG_HDR);
});

// --- whole frames: the production builder and parser on the same vectors -------------------------------------------
test('UdpFramer rebuilds the kernel frame byte for byte (then pads it to 60, as a NIC would)', () => {
  const fr = new UdpFramer({
    srcMac: mac('02:00:00:00:00:01'), dstMac: mac('02:00:00:00:00:02'), srcIp: 0x0a000001, dstIp: 0x0a000002,
    srcPort: 6665, dstPort: 6666, df: true,
  }, 1472);
  const f = fr.build(KERNEL_PAYLOAD, 0x1602);
  assert.equal(f.length, 60);
  assert.deepEqual(f.subarray(0, KERNEL_UDP.length), KERNEL_UDP);
  assert.ok(f.subarray(KERNEL_UDP.length).every((x) => x === 0));
});

test('UdpFramer rebuilds the xdpsock 802.1Q pktgen frame byte for byte', () => {
  const fr = new UdpFramer({
    srcMac: mac('ce:17:07:17:3e:3a'), dstMac: mac('fa:8d:f1:e2:0b:e8'), srcIp: 0x0a0a0a10, dstIp: 0x0a0a0a20,
    srcPort: 4096, dstPort: 4096, vlan: { vid: 12, pcp: 3 },
  }, 1472);
  const payload = Buffer.alloc(PKTGEN_HDR_LEN);
  PktgenRepr.emit(PG_REPR, new PktgenView(payload));
  assert.deepEqual(Buffer.from(fr.build(payload, 0)), XDPSOCK_PKTGEN);
});

test('parseUdpFrame reads both captured frames', () => {
  const k = parseUdpFrame(KERNEL_UDP)!;
  assert.deepEqual({ ...k, dstMac: formatMac(k.dstMac), srcMac: formatMac(k.srcMac) }, {
    dstMac: '02:00:00:00:00:02', srcMac: '02:00:00:00:00:01', vlan: undefined, srcIp: 0x0a000001, dstIp: 0x0a000002,
    ttl: 64, ipId: 0x1602, srcPort: 6665, dstPort: 6666, payload: KERNEL_PAYLOAD,
  });
  const x = parseUdpFrame(XDPSOCK_PKTGEN)!;
  assert.deepEqual(x.vlan, { vid: 12, pcp: 3 });
  assert.equal(formatMac(x.srcMac), 'ce:17:07:17:3e:3a');
  assert.deepEqual([x.srcIp, x.dstIp, x.ttl, x.ipId, x.srcPort, x.dstPort], [0x0a0a0a10, 0x0a0a0a20, 64, 0, 4096, 4096]);
  assert.deepEqual(x.payload, PG_HDR);
  assert.equal(parseUdpFrame(KERNEL_ARP_REQ), null);
  assert.equal(parseUdpFrame(LIBTINS_VLAN_ARP), null);
});
