import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { parseUdpFrame, UdpFramer } from '../../src/wire/udpframe.js';
import { parseMac } from '../../src/wire/mac.js';
import { chooseNextHop } from '../../src/resolve/nexthop.js';
import { buildArpFrame, arpReplyFilter, arpRequestFilter } from '../../src/resolve/arp.js';
import { hex, refChecksum } from '../helpers/bytes.js';

const base = {
  srcMac: parseMac('02:00:00:00:00:01'), dstMac: parseMac('02:00:00:00:00:02'),
  srcIp: 0x0a000001, dstIp: 0x0a000002, srcPort: 6665, dstPort: 6666,
};

/** The frame netpoll would send for "hello" with IP ID 1, written out field by field (PROTOCOLS.md §1). */
function expectedFrame(payload: Buffer, id: number): Buffer {
  const udpLen = 8 + payload.length;
  const ip = hex(`4500 ${(20 + udpLen).toString(16).padStart(4, '0')} ${id.toString(16).padStart(4, '0')} 0000 4011 0000 0a000001 0a000002`);
  ip.writeUInt16BE(refChecksum(ip), 10);
  const udp = Buffer.concat([hex(`1a09 1a0a ${udpLen.toString(16).padStart(4, '0')} 0000`), payload]);
  let c = refChecksum(Buffer.concat([hex(`0a000001 0a000002 0011 ${udpLen.toString(16).padStart(4, '0')}`), udp]));
  if (c === 0) c = 0xffff;
  udp.writeUInt16BE(c, 6);
  const f = Buffer.concat([hex('020000000002 020000000001 0800'), ip, udp]);
  return f.length < 60 ? Buffer.concat([f, Buffer.alloc(60 - f.length)]) : f;
}

test('UdpFramer: netpoll profile frame equals the hand-built bytes (short frame padded to 60)', () => {
  const fr = new UdpFramer(base, 1472);
  const p = Buffer.from('hello');
  assert.deepEqual(Buffer.from(fr.build(p, 1)), expectedFrame(p, 1));
});

test('UdpFramer: consecutive builds with new IDs and payloads stay correct (template reuse)', () => {
  const fr = new UdpFramer(base, 1472);
  for (let i = 0; i < 300; i++) {
    const p = randomBytes((i * 37) % 1473);
    assert.deepEqual(Buffer.from(fr.build(p, i + 1)), expectedFrame(p, i + 1), `iteration ${i}`);
  }
});

test('UdpFramer: VLAN tag, TTL/TOS/DF, --size padding and corruption options', () => {
  const fr = new UdpFramer({ ...base, vlan: { vid: 100, pcp: 5 }, ttl: 7, tos: 0x10, df: true, frameSize: 128, udpChecksum: 'bad', ipChecksum: 'bad' }, 1472);
  const f = fr.build(Buffer.from('x'), 42);
  assert.equal(f.length, 128);
  assert.deepEqual(f.subarray(12, 18), hex('8100 a064 0800'));
  const ip = f.subarray(18, 38);
  assert.equal(ip[1], 0x10);
  assert.equal(ip.readUInt16BE(2), 128 - 18);
  assert.equal(ip.readUInt16BE(4), 42);
  assert.equal(ip.readUInt16BE(6), 0x4000);
  assert.equal(ip[8], 7);
  assert.notEqual(refChecksum(ip), 0, 'IP checksum must be wrong');
  const udpLen = f.readUInt16BE(38 + 4);
  assert.equal(udpLen, 128 - 38);
  const sum = refChecksum(Buffer.concat([hex(`0a000001 0a000002 0011 ${udpLen.toString(16).padStart(4, '0')}`), f.subarray(38)]));
  assert.notEqual(sum, 0, 'UDP checksum must be wrong');
  const parsed = parseUdpFrame(f)!;
  assert.equal(parsed.vlan?.vid, 100);
  assert.equal(parsed.payload.length, 128 - 46);
  assert.equal(parsed.payload[0], 'x'.charCodeAt(0));
  assert.ok(parsed.payload.subarray(1).every((b) => b === 0));
});

test('UdpFramer: --no-udp-checksum writes 0; setPorts changes the ports and keeps the checksum right', () => {
  const fr = new UdpFramer({ ...base, udpChecksum: 'none' }, 1472);
  assert.equal(fr.build(Buffer.from('abc'), 1).readUInt16BE(40), 0);
  const fr2 = new UdpFramer(base, 1472);
  fr2.setPorts(20024, 20023);
  const f = fr2.build(Buffer.from('abc'), 1);
  const p = parseUdpFrame(f)!;
  assert.equal(p.srcPort, 20024);
  assert.equal(p.dstPort, 20023);
  assert.equal(refChecksum(Buffer.concat([hex('0a000001 0a000002 0011 000b'), f.subarray(34, 45)])), 0);
});

test('parseUdpFrame: rejects non-UDP, fragments and truncated frames', () => {
  const fr = new UdpFramer(base, 1472);
  const good = Buffer.from(fr.build(Buffer.from('hello world'), 1));
  assert.ok(parseUdpFrame(good));
  const arp = buildArpFrame(1, base.srcMac, 1, Buffer.alloc(6, 0xff), Buffer.alloc(6), 2);
  assert.equal(parseUdpFrame(arp), null);
  const frag = Buffer.from(good);
  frag.writeUInt16BE(0x2000, 20); // MF
  assert.equal(parseUdpFrame(frag), null);
  assert.equal(parseUdpFrame(good.subarray(0, 40)), null);
  const lying = Buffer.from(good);
  lying.writeUInt16BE(200, 38); // UDP length beyond the IP datagram
  assert.equal(parseUdpFrame(lying), null);
});

test('next hop: gateway only for off-link targets (or when no prefix is known)', () => {
  assert.deepEqual(chooseNextHop(0x0a000002, undefined, { ip: 0x0a000001, prefix: 24 }), { ip: 0x0a000002, via: 'direct' });
  assert.deepEqual(chooseNextHop(0x0a090909, 0x0a0000fe, { ip: 0x0a000001, prefix: 24 }), { ip: 0x0a0000fe, via: 'gateway' });
  assert.deepEqual(chooseNextHop(0x0a000009, 0x0a0000fe, { ip: 0x0a000001, prefix: 24 }), { ip: 0x0a000009, via: 'direct' });
  assert.deepEqual(chooseNextHop(0x0a000009, 0x0a0000fe, { ip: 0x0a000001 }), { ip: 0x0a0000fe, via: 'gateway' });
});

test('ARP frames and BPF filters', () => {
  const f = buildArpFrame(1, base.srcMac, 0x0a000001, Buffer.alloc(6, 0xff), Buffer.alloc(6), 0x0a000002);
  assert.equal(f.length, 60);
  assert.deepEqual(f.subarray(0, 42), hex('ffffffffffff 020000000001 0806 0001 0800 06 04 0001 020000000001 0a000001 000000000000 0a000002'));
  assert.equal(arpReplyFilter(0x0a000002), 'arp and arp[6:2] = 2 and arp[14:4] = 0x0a000002');
  assert.equal(arpRequestFilter(0x0a000007), 'arp and arp[6:2] = 1 and arp[24:4] = 0x0a000007');
});

test('UdpFramer: options passed as undefined keep netpoll defaults (TTL 64, TOS 0, DF clear)', () => {
  const fr = new UdpFramer({ ...base, ttl: undefined, tos: undefined, df: undefined, ipChecksum: undefined, udpChecksum: undefined }, 1472);
  const p = Buffer.from('defaults');
  assert.deepEqual(Buffer.from(fr.build(p, 3)), expectedFrame(p, 3));
});

test('patchIpId: in-place ID change with RFC 1624 equals a fresh build (all IDs around the wrap)', async () => {
  const { patchIpId } = await import('../../src/wire/udpframe.js');
  const fr = new UdpFramer(base, 1472);
  const fresh = new UdpFramer(base, 1472);
  const p = Buffer.from('repeat me');
  const f = Buffer.from(fr.build(p, 65530));
  for (let id = 65531; id < 65536 + 40; id++) {
    patchIpId(f, fr.ipOff, id & 0xffff);
    assert.deepEqual(f, Buffer.from(fresh.build(p, id & 0xffff)), `id ${id & 0xffff}`);
  }
  const vl = new UdpFramer({ ...base, vlan: { vid: 5 } }, 1472);
  const g = Buffer.from(vl.build(p, 1));
  patchIpId(g, vl.ipOff, 2);
  assert.deepEqual(g, Buffer.from(new UdpFramer({ ...base, vlan: { vid: 5 } }, 1472).build(p, 2)));
});
