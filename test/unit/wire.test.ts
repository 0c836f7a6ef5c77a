import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { addWords, corruptChecksum, incrementalUpdate, internetChecksum, onesSum } from '../../src/wire/checksum.js';
import { emitEthernet, parseEthernet, ETHERTYPE_ARP, ETHERTYPE_IPV4 } from '../../src/wire/ethernet.js';
import { emitVlan, parseVlan } from '../../src/wire/vlan.js';
import { ARP_LEN, emitArp, parseArp } from '../../src/wire/arp.js';
import { emitIpv4, ipv4ChecksumOk, Ipv4Repr, Ipv4View, parseIpv4 } from '../../src/wire/ipv4.js';
import { emitUdp, finishUdpChecksum, parseUdp, udpChecksum, udpChecksumOk, UdpRepr, UdpView } from '../../src/wire/udp.js';
import { formatMac, parseMac } from '../../src/wire/mac.js';
import { AddressError, formatIpv4, parseEndpoint, parseIpv4 as parseAddr, parseSource } from '../../src/wire/addr.js';
import { emitPcapGlobalHeader, emitPcapRecordHeader, parsePcap } from '../../src/wire/pcapfile.js';
import { WireError } from '../../src/wire/error.js';
import { hex, onesSum as refOnesSum, refChecksum } from '../helpers/bytes.js';

/** The documented bad value, computed the slow way: ones'-complement c + 1 with the end-around carry. */
const refAddOne = (c: number) => refOnesSum(Buffer.from([c >>> 8, c & 0xff, 0, 1]), 0, 4);

// --- checksum -------------------------------------------------------------------------------------------------------
test('checksum: RFC 1071 §3 example sums to 0xddf2', () => {
  const b = hex('0001 f203 f4f5 f6f7');
  assert.equal(onesSum(b, 0, b.length), 0xddf2);
  assert.equal(internetChecksum(b, 0, b.length), 0x220d);
});

test('checksum: odd length pads with a zero byte; matches the reference on random data', () => {
  for (let i = 0; i < 200; i++) {
    const b = randomBytes(1 + (i * 7) % 301);
    assert.equal(internetChecksum(b, 0, b.length), refChecksum(b));
  }
});

test('checksum: RFC 1624 incremental update equals a full recompute (property, 2000 cases)', () => {
  for (let i = 0; i < 2000; i++) {
    const b = randomBytes(20);
    b[10] = b[11] = 0;
    const c = internetChecksum(b, 0, 20);
    const w = 2 * (i % 10 === 5 ? 0 : i % 10);
    if (w === 10) continue;
    const old = b.readUInt16BE(w);
    const nw = i % 3 === 0 ? 0 : (i * 2654435761) & 0xffff;
    b.writeUInt16BE(nw, w);
    // Equal, or the other ones'-complement zero: a full recompute gives 0 where eqn. 3 may give 0xffff or 0
    // (about 1 case in 2^16; asserting 0xffff there made this test fail now and then).
    const inc = incrementalUpdate(c, old, nw);
    const full = internetChecksum(b, 0, 20);
    assert.ok(inc === full || (full === 0 && inc === 0xffff), `word ${w} ${old.toString(16)} -> ${nw.toString(16)}: ${inc} vs ${full}`);
    b.writeUInt16BE(inc, 10);
    assert.equal(refChecksum(b), 0, 'the patched header verifies');
  }
});

test('checksum: addWords folds 32-bit values as two words', () => {
  assert.equal(addWords(0, 0xc0a80001, 0xc0a800c7), refChecksum(hex('c0a80001c0a800c7')) ^ 0xffff);
});

// --- ethernet / vlan --------------------------------------------------------------------------------------------------
const ETH = hex('ffffffffffff 020000000001 0806');
test('ethernet: deconstruct, construct, round trip', () => {
  const r = parseEthernet(ETH);
  assert.equal(formatMac(r.dst), 'ff:ff:ff:ff:ff:ff');
  assert.equal(formatMac(r.src), '02:00:00:00:00:01');
  assert.equal(r.ethertype, ETHERTYPE_ARP);
  const out = Buffer.alloc(14);
  emitEthernet(r, out);
  assert.deepEqual(out, ETH);
  assert.throws(() => parseEthernet(ETH.subarray(0, 13)), WireError);
});

test('vlan: TCI packs PCP/DEI/VID (802.1Q)', () => {
  const v = hex('a064 0800'); // PCP 5, DEI 0, VID 100, inner IPv4
  assert.deepEqual(parseVlan(v), { pcp: 5, dei: false, vid: 100, ethertype: ETHERTYPE_IPV4 });
  const out = Buffer.alloc(4);
  emitVlan({ pcp: 5, dei: false, vid: 100, ethertype: 0x0800 }, out);
  assert.deepEqual(out, v);
  emitVlan({ pcp: 7, dei: true, vid: 4095, ethertype: 0x0806 }, out);
  assert.deepEqual(out, hex('ffff 0806'));
});

// --- arp ---------------------------------------------------------------------------------------------------------------
// who-has 10.0.0.2 tell 10.0.0.1, from 02:00:00:00:00:01 (RFC 826 layout, as tcpdump -xx shows it).
const ARP_REQ = hex('0001 0800 06 04 0001 020000000001 0a000001 000000000000 0a000002');
test('arp: deconstruct a known who-has', () => {
  const r = parseArp(ARP_REQ);
  assert.equal(r.op, 1);
  assert.equal(formatMac(r.senderMac), '02:00:00:00:00:01');
  assert.equal(formatIpv4(r.senderIp), '10.0.0.1');
  assert.equal(formatMac(r.targetMac), '00:00:00:00:00:00');
  assert.equal(formatIpv4(r.targetIp), '10.0.0.2');
});
test('arp: construct into a zeroed buffer equals the vector; parse ∘ emit round trip', () => {
  const out = Buffer.alloc(ARP_LEN);
  emitArp({ op: 1, senderMac: parseMac('02:00:00:00:00:01'), senderIp: 0x0a000001, targetMac: Buffer.alloc(6), targetIp: 0x0a000002 }, out);
  assert.deepEqual(out, ARP_REQ);
  const back = Buffer.alloc(ARP_LEN);
  emitArp(parseArp(out), back);
  assert.deepEqual(back, ARP_REQ);
  const bad = Buffer.from(ARP_REQ);
  bad[1] = 6; // htype 6 (IEEE 802) is not ours
  assert.throws(() => parseArp(bad), WireError);
});

// --- ipv4 --------------------------------------------------------------------------------------------------------------
// The classic example header (checksum 0xb861): 192.168.0.1 -> 192.168.0.199, UDP, TTL 64, DF, total length 115.
// Header only: the 95 payload bytes it announces are not here.
const IP = hex('4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7');
test('ipv4: the header alone reads through an unchecked view; checked() wants the whole datagram it announces', () => {
  const v = new Ipv4View(IP);
  assert.equal(v.totalLength, 115);
  assert.equal(v.df, true);
  assert.equal(v.ttl, 64);
  assert.equal(v.protocol, 17);
  assert.equal(v.checksum, 0xb861);
  assert.equal(formatIpv4(v.src), '192.168.0.1');
  assert.equal(formatIpv4(v.dst), '192.168.0.199');
  assert.ok(ipv4ChecksumOk(IP));
  assert.throws(() => parseIpv4(IP), { name: 'WireError', message: 'IPv4 header at offset 0: total length 115 runs past the 20 bytes there' });
  const whole = Buffer.concat([IP, Buffer.alloc(95)]);
  assert.deepEqual(parseIpv4(whole), {
    tos: 0, totalLength: 115, id: 0, df: true, mf: false, fragOffset: 0, ttl: 64, protocol: 17,
    src: 0xc0a80001, dst: 0xc0a800c7, checksum: 0xb861, headerLen: 20,
  });
});
test('ipv4: emit computes the known checksum; bad checksum is exactly corruptChecksum (ones-complement +1)', () => {
  const out = Buffer.alloc(20);
  emitIpv4({ tos: 0, totalLength: 115, id: 0, df: true, ttl: 64, protocol: 17, src: 0xc0a80001, dst: 0xc0a800c7 }, out);
  assert.deepEqual(out, IP);
  emitIpv4({ tos: 0, totalLength: 115, id: 0, df: true, ttl: 64, protocol: 17, src: 0xc0a80001, dst: 0xc0a800c7 }, out, 0, { ipChecksum: 'bad' });
  assert.equal(out.readUInt16BE(10), 0xb862);
  assert.equal(refOnesSum(out, 0, 20), 0x0001, 'a receiver sums to 0x0001 instead of 0xffff');
  assert.ok(!ipv4ChecksumOk(out));
  assert.throws(() => parseIpv4(hex('6500 0073')), WireError);
});
test('ipv4: checked() names what is wrong and what would be valid', () => {
  const d = Buffer.concat([IP, Buffer.alloc(95)]);
  const bad = (patch: (b: Buffer) => void, off = 0) => {
    const b = Buffer.from(d);
    patch(b);
    return () => Ipv4View.checked(b, off);
  };
  assert.throws(bad((b) => { b[0] = 0x65; }), { message: 'IPv4 header at offset 0: version 6, expected 4' });
  assert.throws(bad((b) => { b[0] = 0x44; }), { message: 'IPv4 header at offset 0: IHL 4 is too small: expected 5-15' });
  assert.throws(bad((b) => { b.writeUInt16BE(19, 2); }), { message: 'IPv4 header at offset 0: total length 19 is less than the header length 20' });
  assert.throws(() => Ipv4View.checked(d.subarray(0, 19)), { message: 'IPv4 header at offset 0: need 20 bytes, have 19' });
  assert.throws(() => Ipv4View.checked(hex('4f00'.padEnd(40 * 2, '0'))), { message: 'IPv4 header at offset 0: IHL 15 needs 60 header bytes, have 40' });
  assert.throws(() => Ipv4View.checked(d, 1), WireError);
  assert.equal(Ipv4View.check(d), 0);
  assert.equal(Ipv4View.check(d, 0, 114), 6 /* total length past the end */);
});
test('ipv4: emit refuses fields outside their range, naming them; the ID wraps like a counter', () => {
  const r = { tos: 0, totalLength: 115, id: 0, df: true, mf: false, fragOffset: 0, ttl: 64, protocol: 17, src: 1, dst: 2 };
  const v = new Ipv4View(Buffer.alloc(20));
  assert.throws(() => Ipv4Repr.emit({ ...r, ttl: 256 }, v), { name: 'WireError', message: 'IPv4 TTL 256 is out of range: expected 0-255' });
  assert.throws(() => Ipv4Repr.emit({ ...r, totalLength: 65536 }, v), /IPv4 total length 65536 is out of range: expected 0-65535/);
  assert.throws(() => Ipv4Repr.emit({ ...r, fragOffset: 12 }, v), /fragment offset 12 is not a multiple of 8/);
  assert.throws(() => Ipv4Repr.emit(r, new Ipv4View(Buffer.alloc(19))), /IPv4 header: need 20 bytes at offset 0, have 19/);
  Ipv4Repr.emit({ ...r, id: 0x10005 }, v);
  assert.equal(v.id, 5);
  assert.ok(v.verifyChecksum());
});

// --- udp ---------------------------------------------------------------------------------------------------------------
test('udp: checksum over pseudo-header matches a hand sum; 0 is sent as 0xffff', () => {
  // 10.0.0.1:6665 -> 10.0.0.2:6666 "hi"
  const d = hex('1a09 1a0a 000a 0000 6869');
  const pseudo = hex('0a000001 0a000002 0011 000a');
  const expected = refChecksum(Buffer.concat([pseudo, d]));
  assert.equal(udpChecksum(d, 0, 10, 0x0a000001, 0x0a000002), expected);
  const out = Buffer.alloc(10);
  out.write('hi', 8);
  emitUdp({ srcPort: 6665, dstPort: 6666, length: 10 }, out, 0, 0x0a000001, 0x0a000002);
  assert.equal(out.readUInt16BE(6), expected);
  assert.ok(udpChecksumOk(out, 0, 10, 0x0a000001, 0x0a000002));
  assert.deepEqual(parseUdp(out), { srcPort: 6665, dstPort: 6666, length: 10, checksum: expected });
  emitUdp({ srcPort: 6665, dstPort: 6666, length: 10 }, out, 0, 0x0a000001, 0x0a000002, { udpChecksum: 'bad' });
  assert.ok(!udpChecksumOk(out, 0, 10, 0x0a000001, 0x0a000002));
  assert.equal(out.readUInt16BE(6), expected === 0xffff ? 1 : expected + 1, 'bad = the right value + 1 (ones-complement)');
  emitUdp({ srcPort: 6665, dstPort: 6666, length: 10 }, out, 0, 0x0a000001, 0x0a000002, { udpChecksum: 'none' });
  assert.equal(out.readUInt16BE(6), 0);
});

test('udp: a datagram whose sum is 0 gets 0xffff, never 0 (RFC 768)', () => {
  // Search payloads until the computed checksum is 0 (found deterministically within 2^16 tries).
  const out = Buffer.alloc(10);
  for (let v = 0; v < 0x10000; v++) {
    out.fill(0);
    out.writeUInt16BE(v, 8);
    const c = refChecksum(Buffer.concat([hex('0a000001 0a000002 0011 000a'), hex('1a09 1a0a 000a 0000'), out.subarray(8)]));
    if (c !== 0) continue; // the computed checksum would be 0, which the wire reserves for "none"
    emitUdp({ srcPort: 6665, dstPort: 6666, length: 10 }, out, 0, 0x0a000001, 0x0a000002);
    assert.equal(out.readUInt16BE(6), 0xffff);
    assert.equal(udpChecksum(out, 0, 10, 0x0a000001, 0x0a000002), 0xffff);
    // ... and its deliberately bad value is 0x0001 (0xffff + 1 with the end-around carry), never 0 ("no checksum").
    emitUdp({ srcPort: 6665, dstPort: 6666, length: 10 }, out, 0, 0x0a000001, 0x0a000002, { udpChecksum: 'bad' });
    assert.equal(out.readUInt16BE(6), 0x0001);
    assert.ok(!udpChecksumOk(out, 0, 10, 0x0a000001, 0x0a000002));
    return;
  }
  assert.fail('no zero-sum payload found');
});

test('udp: checked() refuses a length outside 8..the bytes there; emit refuses bad ports and lengths', () => {
  const d = hex('1a09 1a0a 000a 0000 6869');
  assert.equal(UdpView.checked(d).length, 10);
  assert.throws(() => UdpView.checked(d, 0, 9), { name: 'WireError', message: 'UDP header at offset 0: length 10 runs past the 9 bytes there' });
  const short = Buffer.from(d);
  short.writeUInt16BE(7, 4);
  assert.throws(() => UdpView.checked(short), { message: 'UDP header at offset 0: length 7 is less than the 8-byte header' });
  assert.throws(() => UdpView.checked(d.subarray(0, 7)), { message: 'UDP header at offset 0: need 8 bytes, have 7' });
  const v = new UdpView(Buffer.alloc(10));
  assert.throws(() => UdpRepr.emit({ srcPort: 65536, dstPort: 1, length: 10 }, v, 1, 2), { message: 'UDP source port 65536 is out of range: expected 0-65535' });
  assert.throws(() => UdpRepr.emit({ srcPort: 1, dstPort: 1, length: 11 }, v, 1, 2), /UDP datagram: need 11 bytes at offset 0, have 10/);
  assert.throws(() => UdpRepr.emit({ srcPort: 1, dstPort: 1, length: 7 }, v, 1, 2), /UDP length 7 is out of range: expected 8-65535/);
});

// --- the two checksum rules ----------------------------------------------------------------------------------------------
test('finishUdpChecksum: a computed 0 goes out as 0xffff, anything else unchanged', () => {
  assert.equal(finishUdpChecksum(0), 0xffff);
  for (const c of [1, 0x1234, 0xfffe, 0xffff]) assert.equal(finishUdpChecksum(c), c);
});
test('corruptChecksum: the right value + 1 in ones-complement arithmetic (0xffff -> 0x0001), never 0', () => {
  assert.equal(corruptChecksum(0x0000), 0x0001);
  assert.equal(corruptChecksum(0xb861), 0xb862);
  assert.equal(corruptChecksum(0xfffe), 0xffff);
  assert.equal(corruptChecksum(0xffff), 0x0001);
  for (let c = 0; c <= 0xffff; c++) {
    const b = corruptChecksum(c);
    assert.ok(b !== 0 && b === refAddOne(c), `c=${c.toString(16)}`);
  }
});
test('corruptChecksum survives an RFC 1624 update: a re-stamped bad header is exactly as bad (property, 2000 cases)', () => {
  for (let i = 0; i < 2000; i++) {
    const h = randomBytes(20);
    h[10] = h[11] = 0;
    const good = internetChecksum(h, 0, 20);
    const oldId = h.readUInt16BE(4);
    const newId = (i * 40503) & 0xffff;
    const patched = incrementalUpdate(corruptChecksum(good), oldId, newId);
    h.writeUInt16BE(newId, 4);
    h.writeUInt16BE(patched, 10);
    assert.equal(refOnesSum(h, 0, 20), 0x0001, `case ${i}`);
  }
});

// --- addresses ---------------------------------------------------------------------------------------------------------
test('addresses: MAC and IPv4 parsing reject bad input with an AddressError (a WireError: exit 2) naming it', () => {
  assert.deepEqual(parseMac('02-00-00-00-00-0A'), hex('02000000000a'));
  assert.throws(() => parseMac('02:00:00:00:00'), (e: Error) => e instanceof AddressError && e instanceof WireError && /02:00:00:00:00/.test(e.message));
  assert.throws(() => parseMac('zz:00:00:00:00:00'), AddressError);
  assert.throws(() => parseMac('zz:00:00:00:00:00'), { name: 'AddressError' }); // the codec's own error (a WireError)
  assert.throws(() => parseMac('zz:00:00:00:00:00'), WireError);
  assert.equal(parseAddr('10.0.0.2', 'x'), 0x0a000002);
  assert.throws(() => parseAddr('10.0.0.256', 'target'), /bad target '10.0.0.256'/);
  assert.throws(() => parseAddr('10.0.2', 'target'), AddressError);
  assert.deepEqual(parseEndpoint('10.0.0.2:9000', '--to'), { ip: 0x0a000002, port: 9000 });
  assert.throws(() => parseEndpoint('10.0.0.2', '--to'), /IP:PORT/);
  assert.throws(() => parseEndpoint('10.0.0.2:70000', '--to'), /70000/);
  assert.deepEqual(parseSource('10.0.0.7/24:5000', '--from'), { ip: 0x0a000007, prefix: 24, port: 5000 });
  assert.deepEqual(parseSource('10.0.0.7', '--from'), { ip: 0x0a000007, prefix: undefined, port: undefined });
  assert.throws(() => parseSource('10.0.0.7/33', '--from'), /0-32/);
});

// --- pcap file ---------------------------------------------------------------------------------------------------------
test('pcap file: global header is the classic little-endian µs format, linktype 1', () => {
  assert.deepEqual(emitPcapGlobalHeader(65535), hex('d4c3b2a1 0200 0400 00000000 00000000 ffff0000 01000000'));
});
test('pcap file: parse ∘ emit round trip, truncated file rejected', () => {
  const f1 = randomBytes(60);
  const f2 = randomBytes(1514);
  const file = Buffer.concat([emitPcapGlobalHeader(), emitPcapRecordHeader(1700000000, 5, 60, 60), f1, emitPcapRecordHeader(1700000001, 999999, 1514, 1514), f2]);
  const p = parsePcap(file);
  assert.equal(p.linktype, 1);
  assert.equal(p.records.length, 2);
  assert.deepEqual(p.records[0].data, f1);
  assert.equal(p.records[1].tsUsec, 999999);
  assert.deepEqual(p.records[1].data, f2);
  assert.throws(() => parsePcap(file.subarray(0, file.length - 1)), WireError);
});
