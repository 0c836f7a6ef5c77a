/**
 * contrib/wireshark/rawpoll.lua against real traffic: rawpoll's netdump, oops and netconsole senders run in one
 * namespace, tcpdump captures on the peer, and tshark (4.0, Lua 5.2) decodes the capture with the script. Every field
 * must be there with the value that was sent (taken from the command line, the input, /proc/cpuinfo, or the captured
 * bytes read at PROTOCOLS.md's offsets here, never from the dissector's own idea of the layout), and valid traffic
 * must raise no expert info. A pcap built with src/proto + src/wire carries the messages rawpoll's client never sends
 * (EKCD_KEY) and deliberately broken ones: a KDH with one bit of bad parity must get the parity expert info, its
 * intact twin must not.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, rmSync } from 'node:fs';
import { arch as osArch, release as osRelease } from 'node:os';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { ChildProcess } from 'node:child_process';
import { netdumpLab, runClient, startServer, type NetdumpLab } from '../../scripts/bench-netdump.js';
import { exitOf, labsForThisFile, type Lab, RAWPOLL, rawpollAsync, ROOT, sh, waitFor } from '../helpers/lab.js';
import { parsePcap, emitPcapGlobalHeader, emitPcapRecordHeader } from '../../src/wire/pcapfile.js';
import { UdpFramer } from '../../src/wire/udpframe.js';
import { buildKdh, encodeAck, encodeNetdumpMessage, heraldPayload } from '../../src/proto/netdump.js';
import { formatExtRecord } from '../../src/proto/netconsole.js';

const LUA = resolve(ROOT, 'contrib', 'wireshark', 'rawpoll.lua');
const { tmp, hosts } = labsForThisFile('rawpoll-ws-');
const ndLabs: NetdumpLab[] = [];
after(() => { for (const l of ndLabs) l.destroy(); });

// Wireshark's expert severities (epan/proto.h PI_WARN, PI_ERROR).
const PI_WARN = 0x00600000;
const PI_ERROR = 0x00800000;

interface Expert { name: string; severity: number; message: string }
interface Frame {
  /** Every field of the frame's tree by filter name, in tree order (a field seen twice has two values). */
  f: Map<string, string[]>;
  experts: Expert[];
}

function walk(o: Record<string, unknown>, fr: Frame): void {
  for (const [k, v] of Object.entries(o)) {
    if (k === '_ws.expert') {
      for (const e of (Array.isArray(v) ? v : [v]) as Record<string, unknown>[]) {
        const name = Object.keys(e).find((x) => !x.startsWith('_ws.expert')) ?? '?';
        fr.experts.push({ name, severity: Number(e['_ws.expert.severity']), message: String(e['_ws.expert.message']) });
      }
      continue;
    }
    for (const x of Array.isArray(v) ? v : [v]) {
      if (typeof x === 'string') {
        if (!fr.f.has(k)) fr.f.set(k, []);
        fr.f.get(k)!.push(x);
      } else if (x && typeof x === 'object') {
        walk(x as Record<string, unknown>, fr);
      }
    }
  }
}

/** tshark -T json with the script, one Frame per packet. Checksum validation off: the peer kernel's own ACKs are
 * captured before veth's checksum offload fills them in, and checksums are other tests' business. */
function dissect(file: string): Frame[] {
  const r = sh('tshark', ['-n', '-r', file, '-X', `lua_script:${LUA}`, '-o', 'udp.check_checksum:FALSE',
    '-o', 'ip.check_checksum:FALSE', '-T', 'json', '--no-duplicate-keys']);
  const err = r.stderr.toString();
  assert.equal(r.status, 0, `tshark failed: ${err}`);
  assert.doesNotMatch(err, /lua/i, `tshark complained about the script: ${err}`);
  const pkts = JSON.parse(r.stdout.toString()) as { _source: { layers: Record<string, unknown> } }[];
  return pkts.map((p) => {
    const fr: Frame = { f: new Map(), experts: [] };
    walk(p._source.layers, fr);
    return fr;
  });
}

/** The only value of a field (fails if absent or repeated). */
function one(fr: Frame, name: string): string {
  const v = fr.f.get(name);
  assert.ok(v, `field ${name} missing; frame has ${[...fr.f.keys()].filter((k) => /^(debugnet|kdh|netoops|netconsole)/.test(k)).join(' ')}`);
  assert.equal(v.length, 1, `field ${name} appears ${v.length} times: ${v.join(' | ')}`);
  return v[0];
}
const num = (fr: Frame, name: string) => Number(one(fr, name));
const all = (fr: Frame, name: string) => fr.f.get(name) ?? [];
const hex = (s: string) => Buffer.from(s.replace(/:/g, ''), 'hex');

function assertFields(fr: Frame, names: string[], what: string): void {
  const missing = names.filter((n) => !fr.f.has(n));
  assert.deepEqual(missing, [], `${what}: fields missing`);
}

/** Valid traffic: no expert info at all from our protocols, nothing at warning or error level from anything. */
function assertClean(frames: Frame[], what: string): void {
  frames.forEach((fr, i) => {
    const ours = fr.experts.filter((e) => /^(debugnet|kdh|netoops|netconsole)\./.test(e.name));
    const bad = fr.experts.filter((e) => e.severity >= PI_WARN);
    // A Lua error in a dissector is an error-level expert info too (_ws.lua.error).
    assert.deepEqual([...ours, ...bad], [], `${what} frame ${i + 1}: expert infos`);
  });
}

/** tcpdump on the peer; stop() waits until `expect` frames are in the file (or 5 s), then ends it with SIGINT. */
async function capture(lab: Lab, ns: string, iface: string, file: string, filter: string): Promise<{ stop(expect: number): Promise<void> }> {
  const p: ChildProcess = lab.spawn(ns, ['tcpdump', '-i', iface, '-U', '-n', '-s', '0', '-w', file, filter]);
  let err = '';
  p.stderr!.on('data', (d) => (err += d));
  assert.ok(await waitFor(() => /listening on/.test(err) || p.exitCode !== null, 10000), `tcpdump did not start: ${err}`);
  assert.equal(p.exitCode, null, `tcpdump exited: ${err}`);
  const count = () => { try { return parsePcap(readFileSync(file)).records.length; } catch { return 0; } };
  return {
    async stop(expect: number) {
      await waitFor(() => count() >= expect, 5000);
      p.kill('SIGINT');
      await exitOf(p, 5000);
    },
  };
}

/** The UDP payload of an Ethernet/IPv4 frame, by IHL and the UDP length (no VLAN in these labs). */
function udpPayload(frame: Buffer): Buffer {
  const ihl = (frame[14] & 15) * 4;
  const udp = 14 + ihl;
  return frame.subarray(udp + 8, udp + frame.readUInt16BE(udp + 4));
}

// KDH layout from PROTOCOLS.md §4 (struct kerneldumpheader v4), read here independently of src/proto.
function kdhFromBytes(b: Buffer) {
  const str = (off: number, len: number) => { const s = b.subarray(off, off + len); const z = s.indexOf(0); return s.subarray(0, z < 0 ? len : z).toString('utf8'); };
  let xor = 0;
  for (let i = 0; i < 512; i += 4) xor = (xor ^ b.readUInt32BE(i)) >>> 0;
  return {
    'kdh.magic': str(0, 20), 'kdh.architecture': str(20, 12), 'kdh.version': String(b.readUInt32BE(32)),
    'kdh.architectureversion': String(b.readUInt32BE(36)), 'kdh.dumplength': String(b.readBigUInt64BE(40)),
    'kdh.dumptime': String(b.readBigUInt64BE(48)), 'kdh.dumpkeysize': String(b.readUInt32BE(56)),
    'kdh.blocksize': String(b.readUInt32BE(60)), 'kdh.hostname': str(64, 64), 'kdh.versionstring': str(128, 192),
    'kdh.panicstring': str(320, 175), 'kdh.compression': String(b[495]), 'kdh.dumpextent': String(b.readBigUInt64BE(496)),
    xor,
  };
}

const DN_HDR = ['debugnet.type', 'debugnet.seq', 'debugnet.offset', 'debugnet.len', 'debugnet.aux2'];
const KDH_FIELDS = ['kdh.magic', 'kdh.architecture', 'kdh.version', 'kdh.architectureversion', 'kdh.dumplength',
  'kdh.dumptime', 'kdh.dumpkeysize', 'kdh.blocksize', 'kdh.hostname', 'kdh.versionstring', 'kdh.panicstring',
  'kdh.compression', 'kdh.dumpextent', 'kdh.unused', 'kdh.parity', 'kdh.parity.xor', 'kdh.parity.ok'];

test('netdump: rawpoll netdump -> rawpoll netdump-server, captured on the server side, decodes field by field', async () => {
  const l = await netdumpLab();
  ndLabs.push(l);
  const s = await startServer(l);
  const core = randomBytes(5000); // 1448 × 3 + 656: four VMCOREs at MTU 1500
  const coreFile = join(tmp, 'core.bin');
  writeFileSync(coreFile, core);
  const pcap = join(tmp, 'netdump.pcap');
  const cap = await capture(l.lab, l.b, l.ifB, pcap, 'udp port 20023 or udp port 20024');
  const t0 = Math.floor(Date.now() / 1000);
  const r = await runClient(l, coreFile, ['--path', 'host7/', '--panic', 'wireshark test panic', '--hostname', 'wsbox']);
  const t1 = Math.ceil(Date.now() / 1000);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout.trim().split('\n').pop()!);
  const [d] = await s.next();
  assert.equal(d.status, 'complete');
  // HERALD, 4 VMCORE, KDH, FINISHED and an ACK for each.
  await cap.stop(2 * j.packets);
  const raw = parsePcap(readFileSync(pcap)).records.map((x) => x.data);
  const frames = dissect(pcap);
  assert.equal(frames.length, raw.length);
  assert.ok(frames.length >= 14, `captured ${frames.length} frames`);
  assertClean(frames, 'netdump');

  const msgs = frames.map((fr, i) => ({ fr, raw: raw[i] })).filter((m) => m.fr.f.has('debugnet.type'));
  const acks = frames.filter((fr) => fr.f.has('debugnet.ack.seq'));
  assert.equal(msgs.length + acks.length, frames.length, 'every frame is a debugnet message or ACK');
  for (const m of msgs) {
    assertFields(m.fr, DN_HDR, 'debugnet message');
    assert.equal(one(m.fr, 'udp.srcport'), '20024');
    assert.equal(num(m.fr, 'debugnet.aux2'), 0);
    // The header values are those in the captured bytes (big-endian, PROTOCOLS.md §4)...
    const p = udpPayload(m.raw);
    assert.equal(num(m.fr, 'debugnet.type'), p.readUInt32BE(0));
    assert.equal(num(m.fr, 'debugnet.seq'), p.readUInt32BE(4));
    assert.equal(one(m.fr, 'debugnet.offset'), String(p.readBigUInt64BE(8)));
    assert.equal(num(m.fr, 'debugnet.len'), p.length - 24);
  }
  const bySeq = new Map(msgs.map((m) => [num(m.fr, 'debugnet.seq'), m]));
  // ...and they are what the client was asked to send: seqno 1 herald with the path, then the core, KDH, FINISHED.
  const herald = bySeq.get(1)!;
  assert.ok(herald, 'herald captured');
  assert.equal(num(herald.fr, 'debugnet.type'), 1);
  assert.equal(one(herald.fr, 'udp.dstport'), '20023');
  assert.equal(num(herald.fr, 'debugnet.len'), 'host7/'.length + 1);
  assert.equal(one(herald.fr, 'debugnet.herald.path'), 'host7/');
  let off = 0;
  for (let seq = 2; seq <= 5; seq++) {
    const v = bySeq.get(seq);
    assert.ok(v, `VMCORE seqno ${seq} captured`);
    assert.equal(num(v.fr, 'debugnet.type'), 3);
    const len = Math.min(1448, core.length - off);
    assert.equal(one(v.fr, 'debugnet.offset'), String(off));
    assert.equal(num(v.fr, 'debugnet.len'), len);
    assert.deepEqual(hex(one(v.fr, 'debugnet.data')), core.subarray(off, off + len), `VMCORE seqno ${seq} data`);
    off += len;
  }
  assert.equal(off, core.length);
  const kdh = bySeq.get(6)!;
  assert.ok(kdh, 'KDH captured');
  assert.equal(num(kdh.fr, 'debugnet.type'), 4);
  assert.equal(num(kdh.fr, 'debugnet.len'), 512);
  assertFields(kdh.fr, KDH_FIELDS, 'KDH');
  const wire = kdhFromBytes(udpPayload(kdh.raw).subarray(24));
  for (const [k, v] of Object.entries(wire)) if (k !== 'xor') assert.equal(one(kdh.fr, k), v, k);
  assert.equal(one(kdh.fr, 'kdh.magic'), 'FreeBSD Kernel Dump');
  assert.equal(num(kdh.fr, 'kdh.version'), 4);
  assert.equal(one(kdh.fr, 'kdh.hostname'), 'wsbox');
  assert.equal(one(kdh.fr, 'kdh.panicstring'), 'wireshark test panic');
  assert.equal(one(kdh.fr, 'kdh.dumplength'), String(core.length));
  assert.equal(one(kdh.fr, 'kdh.dumpextent'), String(core.length));
  assert.equal(num(kdh.fr, 'kdh.compression'), 0);
  assert.ok(num(kdh.fr, 'kdh.dumptime') >= t0 && num(kdh.fr, 'kdh.dumptime') <= t1, `dumptime ${one(kdh.fr, 'kdh.dumptime')} in [${t0}, ${t1}]`);
  assert.equal(wire.xor, 0, 'the KDH on the wire has good parity');
  assert.equal(num(kdh.fr, 'kdh.parity'), udpPayload(kdh.raw).readUInt32BE(24 + 508));
  assert.equal(num(kdh.fr, 'kdh.parity.xor'), 0);
  assert.equal(one(kdh.fr, 'kdh.parity.ok'), '1');
  // The server's info file shows the same header (its own parse): the version string with it.
  const info = readFileSync(d.info, 'utf8');
  assert.ok(info.includes(`Version String: ${one(kdh.fr, 'kdh.versionstring').replace(/\n+$/, '')}\n`), info);
  const fin = bySeq.get(7)!;
  assert.ok(fin, 'FINISHED captured');
  assert.equal(num(fin.fr, 'debugnet.type'), 2);
  assert.equal(num(fin.fr, 'debugnet.len'), 0);
  assert.equal(bySeq.size, 7);
  // ACKs: 4 bytes, to 20024, each seqno the client sent.
  const acked = new Set(acks.map((a) => num(a, 'debugnet.ack.seq')));
  assert.deepEqual([...acked].sort((a, b) => a - b), [1, 2, 3, 4, 5, 6, 7]);
  for (const a of acks) {
    assert.equal(one(a, 'udp.dstport'), '20024');
    assert.equal(num(a, 'udp.length'), 8 + 4);
  }
});

test('netdump: EKCD_KEY and broken messages from src/proto into a pcap: one bad KDH parity bit gets the expert info', () => {
  const mac = (s: string) => Buffer.from(s.split(':').map((x) => parseInt(x, 16)));
  const fr = new UdpFramer({
    srcMac: mac('02:00:00:00:00:01'), dstMac: mac('02:00:00:00:00:02'), srcIp: 0x0a000001, dstIp: 0x0a000002,
    srcPort: 20024, dstPort: 20023, ttl: 255, df: true,
  }, 1500);
  const parts: Buffer[] = [emitPcapGlobalHeader()];
  const add = (payload: Buffer) => {
    const f = Buffer.from(fr.build(payload, 0));
    parts.push(emitPcapRecordHeader(1_700_000_000, parts.length, f.length, f.length), f);
  };
  add(encodeNetdumpMessage({ type: 1, seqno: 1, offset: 0, aux2: 0 }, heraldPayload('keyed/')));
  fr.setPorts(20024, 41234);
  const key = randomBytes(300);
  add(encodeNetdumpMessage({ type: 5, seqno: 2, offset: 0, aux2: 0 }, key));
  const good = buildKdh({ dumplength: 123456, dumptime: 1_700_000_000, hostname: 'parityhost', versionstring: 'FreeBSD 14.1-RELEASE\n', panicstring: 'page fault' });
  add(encodeNetdumpMessage({ type: 4, seqno: 3, offset: 0, aux2: 0 }, good));
  const bad = Buffer.from(good);
  const flipAt = 64 + 3; // bit 0 of hostname[3]: 'parityhost' becomes 'parhtyhost', stored parity unchanged
  bad[flipAt] ^= 0x01;
  add(encodeNetdumpMessage({ type: 4, seqno: 4, offset: 0, aux2: 0 }, bad));
  add(Buffer.from(encodeNetdumpMessage({ type: 3, seqno: 5, offset: 0, aux2: 0 }).subarray(0, 10)));      // truncated header
  add(encodeNetdumpMessage({ type: 9, seqno: 6, offset: 0, aux2: 0 }));                                   // unknown type
  add(encodeNetdumpMessage({ type: 3, seqno: 7, offset: 4096, aux2: 0, len: 100 }, Buffer.alloc(40, 1))); // len lies
  fr.setPorts(41234, 20024);
  add(encodeAck(3));
  const pcap = join(tmp, 'crafted.pcap');
  writeFileSync(pcap, Buffer.concat(parts));
  const frames = dissect(pcap);
  assert.equal(frames.length, 8);
  const [herald, ekcd, kdhGood, kdhBad, trunc, unknown, liar, ack] = frames;

  assertClean([herald, ekcd, kdhGood, ack], 'crafted valid');
  assert.equal(one(herald, 'debugnet.herald.path'), 'keyed/');
  assertFields(ekcd, DN_HDR, 'EKCD_KEY');
  assert.equal(num(ekcd, 'debugnet.type'), 5);
  assert.equal(num(ekcd, 'debugnet.seq'), 2);
  assert.equal(num(ekcd, 'debugnet.len'), key.length);
  assert.deepEqual(hex(one(ekcd, 'debugnet.ekcd_key')), key);
  assertFields(kdhGood, KDH_FIELDS, 'good KDH');
  assert.equal(one(kdhGood, 'kdh.hostname'), 'parityhost');
  assert.equal(one(kdhGood, 'kdh.versionstring'), 'FreeBSD 14.1-RELEASE\n');
  assert.equal(one(kdhGood, 'kdh.panicstring'), 'page fault');
  assert.equal(one(kdhGood, 'kdh.dumplength'), '123456');
  assert.equal(one(kdhGood, 'kdh.dumptime'), '1700000000');
  assert.equal(one(kdhGood, 'kdh.parity.ok'), '1');
  assert.equal(num(ack, 'debugnet.ack.seq'), 3);

  // The corrupted twin: same fields but the hostname bit, parity stored as before, the XOR off by exactly that bit.
  assertFields(kdhBad, KDH_FIELDS, 'bad KDH');
  assert.equal(one(kdhBad, 'kdh.hostname'), bad.subarray(64, 74).toString());
  assert.equal(one(kdhBad, 'kdh.parity'), one(kdhGood, 'kdh.parity'));
  assert.equal(num(kdhBad, 'kdh.parity.xor'), (0x01 << (8 * (3 - (flipAt % 4)))) >>> 0);
  assert.equal(one(kdhBad, 'kdh.parity.ok'), '0');
  assert.deepEqual(kdhBad.experts.map((e) => [e.name, e.severity]), [['kdh.parity.bad', PI_ERROR]]);

  assert.deepEqual(trunc.experts.map((e) => [e.name, e.severity]), [['debugnet.truncated', PI_ERROR]]);
  assert.equal(num(unknown, 'debugnet.type'), 9);
  assert.deepEqual(unknown.experts.map((e) => [e.name, e.severity]), [['debugnet.type.unknown', PI_WARN]]);
  assert.equal(num(liar, 'debugnet.len'), 100);
  assert.deepEqual(liar.experts.map((e) => [e.name, e.severity]), [['debugnet.len.mismatch', PI_ERROR]]);
});

/** x86 vendor/family/model/stepping of the first CPU, as Linux's X86_VENDOR_* and cpuinfo print them. */
function cpuid(): { vendor: number; family: number; model: number; stepping: number } | null {
  const c = readFileSync('/proc/cpuinfo', 'utf8').split('\n\n')[0];
  const get = (k: string) => (new RegExp(`^${k}\\s*:\\s*(.*)$`, 'm').exec(c) ?? [])[1];
  const vendors: Record<string, number> = { GenuineIntel: 0, AuthenticAMD: 2, HygonGenuine: 9, CentaurHauls: 5 };
  if (get('vendor_id') === undefined) return null;
  return { vendor: vendors[get('vendor_id')] ?? 0xff, family: Number(get('cpu family')), model: Number(get('model')), stepping: Number(get('stepping')) };
}

test('netoops: rawpoll oops v3, captured on the peer, decodes field by field with every chunk in place', async () => {
  const h = hosts();
  const log = Buffer.from(Array.from({ length: 60 }, (_, i) => `<4>[ ${i}.000${i}] ws line ${i}: general protection fault\n`).join('').slice(0, 2900));
  const logFile = join(tmp, 'oops.log');
  writeFileSync(logFile, log);
  const pcap = join(tmp, 'oops.pcap');
  const cap = await capture(h.lab, h.b, h.ifB, pcap, 'udp dst port 2004');
  const r = await rawpollAsync(h.a, ['oops', '-i', h.ifA, '--to', h.ipB, '--log', logFile, '--type', 'oops', '--json',
    '--retransmit', '2', '--boot-id', '0x12345678', '--dump-id', '4242', '--board', 'WS Board', '--firmware', 'FW 9',
    '--kernel-version', '6.1.0-wstest']);
  assert.equal(r.code, 0, r.stderr);
  const s = JSON.parse(r.stdout);
  assert.equal(s.packetCount, 3);
  assert.equal(s.datagrams, 6);
  await cap.stop(6);
  const raw = parsePcap(readFileSync(pcap)).records.map((x) => x.data);
  const frames = dissect(pcap);
  assert.equal(frames.length, 6);
  assertClean(frames, 'netoops');
  const x86 = osArch() === 'x64' || osArch() === 'ia32';
  const cpu = x86 ? cpuid() : null;
  frames.forEach((fr, i) => {
    assertFields(fr, ['netoops.version', 'netoops.dump_id', 'netoops.data_offset', 'netoops.arch', 'netoops.arch_offset',
      'netoops.type', 'netoops.packet_count', 'netoops.packet_no', 'netoops.boot_id', 'netoops.kernel_version',
      'netoops.user_blob', 'netoops.user.key', 'netoops.user.value', 'netoops.data', 'netoops.text'], `netoops frame ${i + 1}`);
    assert.equal(num(fr, 'netoops.version'), 3);
    assert.equal(num(fr, 'netoops.dump_id'), 4242);
    assert.equal(num(fr, 'netoops.type'), 1);
    assert.equal(num(fr, 'netoops.packet_count'), 3);
    // Newest chunk first, the set sent twice: packet_no 0, 1, 2, 0, 1, 2.
    const k = i % 3;
    assert.equal(num(fr, 'netoops.packet_no'), k);
    assert.equal(one(fr, 'netoops.boot_id'), '0x12345678');
    assert.equal(one(fr, 'netoops.kernel_version'), '6.1.0-wstest');
    assert.equal(one(fr, 'netoops.user_blob'), 'board=WS Board\nfirmware=FW 9\n');
    assert.deepEqual(all(fr, 'netoops.user.key'), ['board', 'firmware']);
    assert.deepEqual(all(fr, 'netoops.user.value'), ['WS Board', 'FW 9']);
    // Offsets as on the wire (little-endian u16 @4 and @8), and the layout PROTOCOLS.md §3 gives them.
    const p = udpPayload(raw[i]);
    assert.equal(num(fr, 'netoops.data_offset'), p.readUInt16LE(4));
    assert.equal(num(fr, 'netoops.arch_offset'), p.readUInt16LE(8));
    assert.equal(num(fr, 'netoops.arch_offset'), 216);
    assert.equal(num(fr, 'netoops.arch'), x86 ? 2 : 0);
    assert.equal(num(fr, 'netoops.data_offset'), 216 + (x86 ? 4 + 168 : 0));
    if (cpu) {
      assertFields(fr, ['netoops.arch_data', 'netoops.x86.vendor', 'netoops.x86.family', 'netoops.x86.model',
        'netoops.x86.stepping', 'netoops.regs'], 'x86 arch block');
      assert.equal(num(fr, 'netoops.x86.vendor'), cpu.vendor);
      assert.equal(num(fr, 'netoops.x86.family'), cpu.family & 0xff);
      assert.equal(num(fr, 'netoops.x86.model'), cpu.model & 0xff);
      assert.equal(num(fr, 'netoops.x86.stepping'), cpu.stepping & 0xff);
      assert.deepEqual(hex(one(fr, 'netoops.regs')), Buffer.alloc(168));
    }
    const start = (3 - 1 - k) * 1024;
    const chunk = log.subarray(start, Math.min(log.length, start + 1024));
    assert.deepEqual(hex(one(fr, 'netoops.data')), Buffer.concat([chunk, Buffer.alloc(1024 - chunk.length)]), `chunk ${k}`);
    assert.equal(one(fr, 'netoops.text'), chunk.toString());
  });
});

test('netoops v2 (the v1 patch header), from rawpoll oops -w: SMBIOS strings and CPU identity at their v2 offsets', () => {
  const log = Buffer.from('v2 line\n'.repeat(200)); // 1600 bytes: 2 chunks
  const logFile = join(tmp, 'oops2.log');
  writeFileSync(logFile, log);
  const pcap = join(tmp, 'oops2.pcap');
  // -w: the frames into a pcap file, nothing sent (no root, no namespace needed).
  const w = sh(process.execPath, [RAWPOLL, 'oops', '--to', '10.0.0.2', '--dst-mac', '02:00:00:00:00:02',
    '--src-mac', '02:00:00:00:00:01', '--from', '10.0.0.1', '--log', logFile, '--layout', 'v2', '--retransmit', '1',
    '--dump-id', '2', '--board', 'MB-9', '--firmware', 'BIOS-3', '--kernel-version', '2.6.32-test', '-w', pcap, '--json']);
  assert.equal(w.status, 0, w.stderr.toString());
  const raw = parsePcap(readFileSync(pcap)).records.map((x) => x.data);
  const frames = dissect(pcap);
  assert.equal(frames.length, 2);
  assertClean(frames, 'netoops v2');
  const x86 = osArch() === 'x64' || osArch() === 'ia32';
  const cpu = x86 ? cpuid() : null;
  frames.forEach((fr, i) => {
    assertFields(fr, ['netoops.version', 'netoops.dump_id', 'netoops.data_offset', 'netoops.arch', 'netoops.arch_offset',
      'netoops.type', 'netoops.packet_count', 'netoops.packet_no', 'netoops.boot_id', 'netoops.kernel_version',
      'netoops.bios_version', 'netoops.board_name', 'netoops.data', 'netoops.text'], `netoops v2 frame ${i + 1}`);
    assert.equal(num(fr, 'netoops.version'), 2);
    assert.equal(num(fr, 'netoops.dump_id'), 2);
    assert.equal(num(fr, 'netoops.type'), 3, '--type defaults to soft');
    assert.equal(num(fr, 'netoops.packet_no'), i);
    assert.equal(num(fr, 'netoops.packet_count'), 2);
    assert.equal(one(fr, 'netoops.kernel_version'), '2.6.32-test');
    assert.equal(one(fr, 'netoops.bios_version'), 'BIOS-3');
    assert.equal(one(fr, 'netoops.board_name'), 'MB-9');
    const p = udpPayload(raw[i]);
    assert.equal(one(fr, 'netoops.boot_id'), `0x${p.readUInt32LE(20).toString(16).padStart(8, '0')}`);
    assert.equal(num(fr, 'netoops.arch_offset'), 219);
    if (cpu) {
      assert.equal(num(fr, 'netoops.x86.family'), cpu.family & 0xff);
      assert.equal(num(fr, 'netoops.x86.model'), cpu.model & 0xff);
      assert.equal(num(fr, 'netoops.x86.stepping'), cpu.stepping & 0xff);
      assert.ok(!fr.f.has('netoops.x86.vendor'), 'v2 carries no vendor');
    }
    const start = (2 - 1 - i) * 1024;
    const chunk = log.subarray(start, Math.min(log.length, start + 1024));
    assert.equal(one(fr, 'netoops.text'), chunk.toString());
  });
});

/** printk's escaping (PROTOCOLS.md §2): bytes < 0x20, >= 0x7f and '\' as \xNN. */
function escaped(s: string): string {
  return [...Buffer.from(s)].map((c) => (c < 0x20 || c >= 0x7f || c === 0x5c ? `\\x${c.toString(16).padStart(2, '0')}` : String.fromCharCode(c))).join('');
}

const NC_HDR = ['netconsole.extended', 'netconsole.release', 'netconsole.prio', 'netconsole.facility', 'netconsole.level',
  'netconsole.seq', 'netconsole.timestamp', 'netconsole.flags', 'netconsole.cont', 'netconsole.body'];

test('netconsole: extended with release, userdata, sysdata and ncfrag; basic on 6666; extended found by the heuristic on another port', async () => {
  const h = hosts();
  const pcap = join(tmp, 'nc.pcap');
  const cap = await capture(h.lab, h.b, h.ifB, pcap, 'udp dst portrange 6666-6677');
  const long = Array.from({ length: 80 }, (_, i) => `word${i}\\tab\t`).join(' ').padEnd(2500, 'z');
  const r = await rawpollAsync(h.a, ['netconsole', '-i', h.ifA, '--to', h.ipB, '--extended', '--release',
    '--userdata', 'dc=fra1', '--sysdata', '--json'], `short line\n${long}\n`);
  assert.equal(r.code, 0, r.stderr);
  const sum = JSON.parse(r.stdout.trim().split('\n').pop()!);
  const rb = await rawpollAsync(h.a, ['netconsole', '-i', h.ifA, '--to', h.ipB, '--json'], 'basic hello\n');
  assert.equal(rb.code, 0, rb.stderr);
  const rh = await rawpollAsync(h.a, ['netconsole', '-i', h.ifA, '--to', `${h.ipB}:6677`, '--extended', '--level', 'err', '--json'], 'heuristic line\n');
  assert.equal(rh.code, 0, rh.stderr);
  await cap.stop(sum.datagrams + 2);
  const frames = dissect(pcap);
  assert.equal(frames.length, sum.datagrams + 2);
  assertClean(frames, 'netconsole');
  const ext = frames.slice(0, sum.datagrams);
  const [basic, heur] = frames.slice(sum.datagrams);
  const rel = osRelease();

  for (const [i, fr] of ext.entries()) {
    assertFields(fr, NC_HDR, `extended frame ${i + 1}`);
    assert.equal(one(fr, 'netconsole.extended'), '1');
    assert.equal(one(fr, 'netconsole.release'), rel);
    assert.equal(num(fr, 'netconsole.prio'), (1 << 3) | 6, 'facility user, level info');
    assert.equal(num(fr, 'netconsole.facility'), 1);
    assert.equal(num(fr, 'netconsole.level'), 6);
    assert.equal(one(fr, 'netconsole.flags'), '-');
    assert.equal(one(fr, 'netconsole.cont'), '0');
    assert.ok(num(fr, 'udp.length') - 8 <= 1000, 'MAX_PRINT_CHUNK');
  }
  // The short record: one datagram, the text, then userdata and the sysdata lines in the kernel's order.
  const short = ext[0];
  assert.equal(num(short, 'netconsole.seq'), 0);
  assert.ok(!short.f.has('netconsole.frag.offset'));
  assert.equal(one(short, 'netconsole.text'), 'short line');
  assert.deepEqual(all(short, 'netconsole.kv.key'), ['dc', 'cpu', 'taskname', 'release', 'msgid']);
  const kv = (fr: Frame) => Object.fromEntries(all(fr, 'netconsole.kv.key').map((k, i) => [k, all(fr, 'netconsole.kv.value')[i]]));
  assert.equal(kv(short).dc, 'fra1');
  assert.equal(kv(short).release, rel);
  assert.equal(one(short, 'netconsole.sysdata.release'), rel);
  assert.equal(num(short, 'netconsole.sysdata.msgid'), 1);
  assert.equal(one(short, 'netconsole.sysdata.cpu'), kv(short).cpu);
  assert.equal(one(short, 'netconsole.sysdata.taskname'), kv(short).taskname);
  assert.ok(kv(short).taskname.length > 0);

  // The long record: ncfrag pieces that tile [0, total) in order, whose bodies join into text + extradata.
  const frags = ext.slice(1);
  assert.ok(frags.length >= 3, `${frags.length} fragments`);
  const total = num(frags[0], 'netconsole.frag.total');
  let at = 0;
  let body = '';
  for (const fr of frags) {
    assertFields(fr, ['netconsole.frag', 'netconsole.frag.offset', 'netconsole.frag.total', 'netconsole.frag.len'], 'fragment');
    assert.equal(num(fr, 'netconsole.seq'), 1);
    assert.equal(one(fr, 'netconsole.timestamp'), one(frags[0], 'netconsole.timestamp'), 'one record, one timestamp');
    assert.equal(num(fr, 'netconsole.frag.total'), total);
    assert.equal(num(fr, 'netconsole.frag.offset'), at);
    assert.equal(one(fr, 'netconsole.frag'), `ncfrag=${at}/${total}`);
    const b = one(fr, 'netconsole.body');
    assert.equal(num(fr, 'netconsole.frag.len'), Buffer.byteLength(b));
    body += b;
    at += Buffer.byteLength(b);
  }
  assert.equal(at, total);
  assert.ok(BigInt(one(frags[0], 'netconsole.timestamp')) >= BigInt(one(short, 'netconsole.timestamp')));
  const last = frags[frags.length - 1];
  assert.equal(kv(last).dc, 'fra1');
  assert.equal(num(last, 'netconsole.sysdata.msgid'), 2);
  const extradata = all(last, 'netconsole.kv').map((x) => ` ${x}\n`).join('');
  assert.equal(body, `${escaped(long)}\n${extradata}`);
  assert.equal(one(frags[0], 'netconsole.text'), escaped(long).slice(0, Buffer.byteLength(one(frags[0], 'netconsole.body'))));

  // Basic format on 6666: the text itself, no header fields.
  assert.equal(one(basic, 'netconsole.extended'), '0');
  assert.equal(one(basic, 'netconsole.text'), 'basic hello\n');
  assert.ok(!basic.f.has('netconsole.seq'));
  // Port 6677 is nobody's: only the heuristic can have claimed it.
  assert.equal(one(heur, 'udp.dstport'), '6677');
  assertFields(heur, NC_HDR.filter((n) => n !== 'netconsole.release'), 'heuristic');
  assert.equal(num(heur, 'netconsole.level'), 3);
  assert.equal(num(heur, 'netconsole.seq'), 0);
  assert.equal(one(heur, 'netconsole.text'), 'heuristic line');
});

test('netconsole heuristic on another port: datagrams that are not kernel records are left alone; kmsg and release forms are read', () => {
  const fr = new UdpFramer({
    srcMac: Buffer.from('020000000001', 'hex'), dstMac: Buffer.from('020000000002', 'hex'), srcIp: 0x0a000001,
    dstIp: 0x0a000002, srcPort: 40000, dstPort: 6677,
  }, 1500);
  const parts: Buffer[] = [emitPcapGlobalHeader()];
  for (const p of ['hello;world', '14,1,2;three fields only', '999,1,2,-;prio too big', 'a,b,c,d,e;letters']) {
    const f = Buffer.from(fr.build(Buffer.from(p), 0));
    parts.push(emitPcapRecordHeader(1, 0, f.length, f.length), f);
  }
  // And the forms rawpoll's senders do not make but kernels do: a continuation record with a caller= header field and
  // dictionary lines (/dev/kmsg), the release prefix as in the example.
  const rec = formatExtRecord({ level: 4, facility: 0, seq: 77, usec: 123456789, cont: true, text: 'pci 0000:00:1f.0: cont',
    dict: [['SUBSYSTEM', 'pci'], ['DEVICE', '+pci:0000:00:1f.0']] });
  const semi = rec.indexOf(';');
  const kmsg = Buffer.concat([rec.subarray(0, semi), Buffer.from(',caller=T42'), rec.subarray(semi)]);
  for (const p of [kmsg, Buffer.from('6.8.0,6,123,456,-;msg')]) {
    const f = Buffer.from(fr.build(p, 0));
    parts.push(emitPcapRecordHeader(1, 0, f.length, f.length), f);
  }
  const pcap = join(tmp, 'heur.pcap');
  writeFileSync(pcap, Buffer.concat(parts));
  const frames = dissect(pcap);
  assert.equal(frames.length, 6);
  for (const f of frames.slice(0, 4)) assert.ok(![...f.f.keys()].some((k) => k.startsWith('netconsole.')), [...f.f.keys()].join(' '));
  const [k, r] = frames.slice(4);
  assertClean([k, r], 'crafted netconsole');
  assert.equal(num(k, 'netconsole.prio'), 4);
  assert.equal(num(k, 'netconsole.facility'), 0);
  assert.equal(num(k, 'netconsole.seq'), 77);
  assert.equal(one(k, 'netconsole.timestamp'), '123456789');
  assert.equal(one(k, 'netconsole.flags'), 'c');
  assert.equal(one(k, 'netconsole.cont'), '1');
  assert.equal(one(k, 'netconsole.header.extra'), 'caller=T42');
  assert.equal(one(k, 'netconsole.text'), 'pci 0000:00:1f.0: cont');
  assert.deepEqual(all(k, 'netconsole.kv.key'), ['SUBSYSTEM', 'DEVICE']);
  assert.deepEqual(all(k, 'netconsole.kv.value'), ['pci', '+pci:0000:00:1f.0']);
  assert.ok(!k.f.has('netconsole.release'));
  assert.equal(one(r, 'netconsole.release'), '6.8.0');
  assert.equal(num(r, 'netconsole.level'), 6);
  assert.equal(num(r, 'netconsole.seq'), 123);
  assert.equal(one(r, 'netconsole.timestamp'), '456');
  assert.equal(one(r, 'netconsole.text'), 'msg');
  rmSync(pcap);
});
