/**
 * rawpoll netdump (pcap client) → rawpoll netdump-server (kernel sockets) across namespaces this file creates and
 * removes. Loss/delay/reorder come from the AF_PACKET relay in scripts/bench-netdump.ts (this kernel has no netem).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { netdumpLab, randomFile, runClient, sha256, startServer, type NetdumpLab } from '../../scripts/bench-netdump.js';
import { must, RAWPOLL, snmp } from '../helpers/lab.js';

const MB = 1_000_000;
const labs: NetdumpLab[] = [];
const tmp: string[] = [];
after(() => {
  for (const l of labs) l.destroy();
  for (const t of tmp) fs.rmSync(t, { recursive: true, force: true });
});

async function lab(...a: Parameters<typeof netdumpLab>): Promise<NetdumpLab> {
  const l = await netdumpLab(...a);
  labs.push(l);
  return l;
}
function file(bytes: number): string {
  const f = randomFile(bytes);
  tmp.push(path.dirname(f));
  return f;
}
async function server(l: NetdumpLab, extra: string[] = []) {
  const s = await startServer(l, extra);
  tmp.push(s.dir);
  return s;
}

/** Classic pcap reader (24-byte global header, 16-byte record headers), for what tcpdump wrote. */
function readPcap(f: string): Buffer[] {
  const b = fs.readFileSync(f);
  const le = b.readUInt32LE(0) === 0xa1b2c3d4;
  const u32 = (o: number) => (le ? b.readUInt32LE(o) : b.readUInt32BE(o));
  const out: Buffer[] = [];
  for (let o = 24; o + 16 <= b.length;) {
    const incl = u32(o + 8);
    out.push(b.subarray(o + 16, o + 16 + incl));
    o += 16 + incl;
  }
  return out;
}

function ipChecksumOk(ip: Buffer): boolean {
  let s = 0;
  for (let i = 0; i < 20; i += 2) s += ip.readUInt16BE(i);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s === 0xffff;
}

test('20 MB, kernel rounds: sha256 identical, KDH in the info file, herald path honoured, frames as FreeBSD builds them', async () => {
  const l = await lab();
  const s = await server(l);
  const f = file(20 * MB);
  const cap = path.join(s.dir, '..', `nd-cap-${process.pid}.pcap`);
  tmp.push(cap);
  const tcpdump = l.lab.spawn(l.b, ['tcpdump', '-i', l.ifA.replace(/A$/, 'B'), '-U', '-n', '-s', '200', '-c', '3', '-w', cap,
    'udp port 20023 or udp port 20024']);
  await new Promise((r) => setTimeout(r, 500)); // tcpdump prints nothing useful on stdout to wait for
  const r = await runClient(l, f, ['--path', 'host7/', '--panic', 'rawpoll test panic', '--hostname', 'crashbox']);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.equal(j.bytes, 20 * MB);
  // The kernel cuts each 64 KiB buffer into 1448-byte datagrams: 46 per full buffer (the last 376 bytes), 8 for
  // the final 11520 bytes; plus HERALD, KDH, FINISHED.
  assert.equal(j.packets, 305 * 46 + 8 + 3);
  assert.equal(j.retransmits, 0);
  const [d] = await s.next();
  assert.equal(d.status, 'complete');
  assert.equal(d.client, l.ipA);
  assert.equal(d.vmcore, path.join(fs.realpathSync(s.dir), 'host7', `vmcore.${l.ipA}.0`));
  assert.equal(sha256(d.vmcore), sha256(f));
  const info = fs.readFileSync(d.info, 'utf8');
  assert.match(info, /Dump Length: 20000000B \(19 MB\)/);
  assert.match(info, /Hostname: crashbox/);
  assert.match(info, /Panic String: rawpoll test panic/);
  assert.match(info, /Blocksize: 4096/);
  assert.match(info, /Header Parity Check: Pass/);
  assert.match(info, /Dump complete\n$/);
  assert.equal(d.kdh!.parityOk, true);
  // The client's address is the host's own: its held UDP socket on 20024 kept the kernel from answering ACKs
  // with ICMP port-unreachable.
  assert.equal(snmp(l.a, 'Icmp', 'OutDestUnreachs'), 0);

  await new Promise<void>((res) => (tcpdump.exitCode !== null ? res() : tcpdump.on('exit', () => res())));
  const frames = readPcap(cap);
  assert.ok(frames.length >= 2, `captured ${frames.length} frames`);
  // Herald, byte by byte from PROTOCOLS.md §4: IPv4 TTL 255, ID 0, DF; UDP 20024 -> 20023; header + "host7/\0".
  const h = frames[0];
  assert.equal(h.readUInt16BE(12), 0x0800);
  const ip = h.subarray(14, 34);
  assert.equal(ip[0], 0x45);
  assert.equal(ip.readUInt16BE(2), 20 + 8 + 24 + 7);
  assert.equal(ip.readUInt16BE(4), 0, 'IP ID 0');
  assert.equal(ip.readUInt16BE(6), 0x4000, 'DF, no fragment offset');
  assert.equal(ip[8], 255, 'TTL 255');
  assert.equal(ip[9], 17);
  assert.ok(ipChecksumOk(ip));
  assert.equal(ip.subarray(12, 16).join('.'), l.ipA);
  assert.equal(ip.subarray(16, 20).join('.'), l.ipB);
  const udp = h.subarray(34, 42);
  assert.equal(udp.readUInt16BE(0), 20024);
  assert.equal(udp.readUInt16BE(2), 20023);
  assert.equal(udp.readUInt16BE(4), 8 + 24 + 7);
  assert.notEqual(udp.readUInt16BE(6), 0, 'UDP checksum on');
  assert.deepEqual(h.subarray(42, 42 + 31), Buffer.concat([
    Buffer.from('00000001' + '00000001' + '0000000000000000' + '00000007' + '00000000', 'hex'), Buffer.from('host7/\0'),
  ]));
  // The server's first ACK: 4 bytes, seqno 1, from its new per-client port to 20024.
  const ack = frames[1];
  const aUdp = ack.subarray(34, 42);
  assert.notEqual(aUdp.readUInt16BE(0), 20023);
  assert.equal(aUdp.readUInt16BE(0), j.serverPort);
  assert.equal(aUdp.readUInt16BE(2), 20024);
  assert.equal(aUdp.readUInt16BE(4), 12);
  assert.deepEqual(ack.subarray(42, 46), Buffer.from([0, 0, 0, 1]));
  // Then the first VMCORE goes to that port: type 3, seqno 2, offset 0, len 1448.
  const v = frames[2];
  assert.equal(v.subarray(34, 42).readUInt16BE(2), j.serverPort);
  assert.deepEqual(v.subarray(42, 66), Buffer.from('00000003' + '00000002' + '0000000000000000' + '000005a8' + '00000000', 'hex'));
});

test('20 MB with --window 64 and stdin as the source', async () => {
  const l = await lab();
  const s = await server(l);
  const f = file(20 * MB);
  const r = await new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
    const p = spawn('ip', ['netns', 'exec', l.a, process.execPath, RAWPOLL, 'netdump', '-i', l.ifA,
      '--server', l.ipB, '--file', '-', '--window', '64', '--json'], { stdio: [fs.openSync(f, 'r'), 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout!.on('data', (d) => { out += d; });
    p.stderr!.on('data', (d) => { err += d; });
    p.on('close', (code) => resolve({ code, out, err }));
  });
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out);
  assert.equal(j.mode, 'window 64');
  const [d] = await s.next();
  assert.equal(sha256(d.vmcore), sha256(f));
});

test('5% loss (client->server) and 5% ACK loss: intact, retransmits counted', async () => {
  const l = await lab({ loss: 0.05 }, { loss: 0.05 });
  const s = await server(l);
  const big = file(20 * MB);
  const r1 = await runClient(l, big, ['--window', '64', '--arp-retries', '10']);
  assert.equal(r1.code, 0, r1.stderr);
  const j1 = JSON.parse(r1.stdout);
  const [d1] = await s.next();
  assert.equal(sha256(d1.vmcore), sha256(big));
  assert.ok(j1.retransmits > 0.05 * j1.packets * 0.5, `window 64: ${j1.retransmits} retransmits of ${j1.packets}`);
  // The kernel's rounds lose ~1 poll per lossy round: 2 MB with 100 ms polls keeps this test short.
  const small = file(2 * MB);
  const r2 = await runClient(l, small, ['--poll-ms', '100', '--arp-retries', '10']);
  assert.equal(r2.code, 0, r2.stderr);
  const j2 = JSON.parse(r2.stdout);
  const [d2] = await s.next();
  assert.equal(sha256(d2.vmcore), sha256(small));
  assert.ok(j2.retransmits > 0);
  console.log(`# loss 5%+5%: window 64 20 MB: ${j1.retransmits} retransmits / ${j1.packets} datagrams, ${j1.MBps} MB/s; ` +
    `rounds 2 MB (poll 100 ms): ${j2.retransmits} / ${j2.packets}, ${j2.MBps} MB/s; server saw ${d1.duplicates} + ${d2.duplicates} duplicates`);
});

test('delay 20 ms, reorder 25%: intact in both modes', async () => {
  const l = await lab({ delayMs: 20, reorder: 0.25 });
  const s = await server(l);
  const f = file(20 * MB);
  const out: string[] = [];
  for (const w of ['0', '64']) {
    const r = await runClient(l, f, ['--window', w]);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    const [d] = await s.next();
    assert.equal(d.status, 'complete');
    assert.equal(sha256(d.vmcore), sha256(f));
    out.push(`${j.mode}: ${j.MBps} MB/s, ${j.retransmits} retransmits`);
  }
  console.log(`# delay 20ms reorder 25%, 20 MB: ${out.join('; ')}`);
});

test('server that never answers: exit 1 after 1 + retries tries, clear message', async () => {
  const l = await lab();
  const f = file(10000);
  const t0 = Date.now();
  const r = await runClient(l, f, ['--poll-ms', '200', '--retries', '2']);
  assert.equal(r.code, 1);
  assert.equal(r.stdout, '');
  assert.match(r.stderr, /^rawpoll: netdump to [\d.]+:20023 failed after 3 tries of 200 ms: the herald was never ACKed/);
  assert.ok(Date.now() - t0 < 60000);
  // The kernel's own attempts (1 + 11 of ~1 s) are the default: say so in help.
  const help = must(process.execPath, [RAWPOLL, 'netdump', '--help']);
  assert.match(help, /--retries <N>.*\(default: "11"\)/s);
});

test('two clients at once, one from an address the host does not own (--from, ARP answered by rawpoll)', async () => {
  const l = await lab();
  const s = await server(l);
  const f1 = file(8 * MB);
  const f2 = file(6 * MB);
  const other = l.ipA.replace(/\.1$/, '.77');
  const [r1, r2] = await Promise.all([
    runClient(l, f1, ['--window', '32']),
    runClient(l, f2, ['--from', `${other}/24`]),
  ]);
  assert.equal(r1.code, 0, r1.stderr);
  assert.equal(r2.code, 0, r2.stderr);
  assert.equal(JSON.parse(r2.stdout).src, other);
  const ds = await s.next(2);
  const byClient = new Map(ds.map((d) => [d.client, d]));
  assert.equal(sha256(byClient.get(l.ipA)!.vmcore), sha256(f1));
  assert.equal(sha256(byClient.get(other)!.vmcore), sha256(f2));
});
