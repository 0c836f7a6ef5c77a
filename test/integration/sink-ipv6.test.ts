/**
 * `rawpoll sink` over IPv6 (issue 15), on a real veth pair between namespaces we create and always remove. The
 * senders are the peer kernel's own UDP sockets (test/helpers/pktgen6.py: Python's AF_INET6/AF_INET sockets, no
 * rawpoll code), which leave out known seqs: the sink must report exactly those as lost, per flow, for an IPv4 and an
 * IPv6 flow in one run on the default dual-stack socket, on a socket bound to an IPv6 address, and with --capture
 * (IPv6 past a Destination Options header, inside an 802.1Q tag, and fragments counted and skipped). Every report is
 * validated against schemas/ with ajv as json-schemas.test.ts does.
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { labsForThisFile, must, nsRun, ROOT, sh, type TwoHostLab } from '../helpers/lab.js';
import { valid } from '../helpers/schemas.js';
import { startSink } from '../helpers/sink.js';

const SENDER = join(ROOT, 'test', 'helpers', 'pktgen6.py');

interface Flow { src: string; dst: string; srcIp: string; dstIp: string; received: number; unique: number; lost: number; duplicates: number; firstSeq: number; lastSeq: number }
interface Report {
  mode: string; bind: string | null; family: string | null; familyWarning: string | null; socketDrops: number | null;
  engine: { ownDrops: number; fragments: number }; loss: { own: number };
  totals: { received: number; lost: number; nonPktgen: number }; flows: Flow[];
}

/** pktgen6.py in a namespace: seqs 1..count minus skip; returns what it sent. */
function send(ns: string, o: {
  dst: string; port?: number; count: number; skip?: number[]; sport: number; big?: number[]; dstopts?: boolean;
  raw?: { iface: string; srcMac: string; dstMac: string; src: string; vlan: number };
}): number {
  const r = nsRun(ns, ['python3', SENDER, JSON.stringify({ port: 9, pps: 4000, ...o })]);
  assert.equal(r.code, 0, `sender failed: ${r.stderr}`);
  return (JSON.parse(r.stdout) as { sent: number }).sent;
}

function flow(r: Report, src: string): Flow {
  const f = r.flows.find((x) => x.src === src);
  assert.ok(f, `no flow from ${src} in ${JSON.stringify(r.flows.map((x) => x.src))}`);
  return f;
}

const { tmp, hosts } = labsForThisFile('rawpoll-sink-ipv6-');
let h: TwoHostLab;
const p = (process.pid % 0xffff).toString(16);
const A6 = `fd00:${p}::1`;
const B6 = `fd00:${p}::2`;
const VA6 = `fd01:${p}::1`; // 802.1Q-tagged frames (VLAN 100) over the same veth, crafted by the sender
const VB6 = `fd01:${p}::2`;
const B6x = `fd00:${p}::3`; // a second address of B's

before(() => {
  h = hosts();
  // lab.ns() turns IPv6 off (no autoconf chatter); this file needs it on the veth pair, with addresses that skip DAD.
  // B has a second local address, for --bind to leave out.
  h.lab.addr6(h.a, h.ifA, `${A6}/64`);
  h.lab.addr6(h.b, h.ifB, `${B6}/64`, `${B6x}/64`);
  // Neighbours resolved before any test datagram: the first ones must not wait in (or fall out of) the ND/ARP queue.
  for (const dst of [B6, B6x, h.ipB]) must('ip', ['netns', 'exec', h.a, 'ping', '-c', '1', '-W', '2', dst]);
});

describe('sink over IPv6 (namespaces)', { timeout: 60000 }, () => {
  test('the default socket is dual-stack: an IPv6 and an IPv4 flow in one run, exact counts, --json-stream valid', async () => {
    const s = await startSink(h.lab, h.b, ['--port', '9', '--idle', '1', '--json-stream', '--interval', '0.5']);
    assert.match(s.err(), /listening on UDP \[::\]:9 \(IPv6 and IPv4\) via a socket/);
    const sent6 = send(h.a, { dst: B6, count: 600, skip: [5, 6, 7, 600], sport: 40006 });
    const sent4 = send(h.a, { dst: h.ipB, count: 400, skip: [9], sport: 40004 });
    assert.deepEqual([sent6, sent4], [596, 399]);
    const events = (await s.output()).split('\n').filter(Boolean).map((l) => valid<{ event: string }>('sink-stream', JSON.parse(l)));
    assert.equal(events[0].event, 'start');
    const end = events.at(-1) as unknown as Report & { event: string };
    assert.equal(end.event, 'end');
    assert.deepEqual([end.family, end.familyWarning, end.bind, end.socketDrops], ['dual', null, null, 0]);
    const f6 = flow(end, `[${A6}]:40006`);
    // The last seq (600) was never sent: without --expect a lost tail is not seen, so 3 lost.
    assert.deepEqual([f6.dst, f6.srcIp, f6.received, f6.unique, f6.lost, f6.duplicates, f6.firstSeq, f6.lastSeq], [`[${B6}]:9`, A6, 596, 596, 3, 0, 1, 599]);
    // The IPv4 client looks as it did on the IPv4 socket: its v4-mapped address unmapped.
    const f4 = flow(end, `${h.ipA}:40004`);
    assert.deepEqual([f4.dst, f4.srcIp, f4.received, f4.lost, f4.lastSeq], [`${h.ipB}:9`, h.ipA, 399, 1, 400]);
    assert.deepEqual([end.flows.length, end.totals.received, end.totals.lost, end.totals.nonPktgen], [2, 995, 4, 0]);
  });

  test('--bind an IPv6 address: that address only, reported in RFC 5952 text', async () => {
    const upper = B6.toUpperCase().replace('::', ':0:0:0:0:0:'); // fd00:XXXX:0:0:0:0:0:2, upper case: normalised
    const s = await startSink(h.lab, h.b, ['--port', '9', '--bind', upper, '--idle', '1', '--json']);
    assert.match(s.err(), new RegExp(`listening on UDP \\[${B6}\\]:9 via a socket`));
    send(h.a, { dst: B6x, count: 50, sport: 40008 }); // another local address: not this socket's
    send(h.a, { dst: B6, count: 200, skip: [100], sport: 40007 });
    const r = valid<Report>('sink', JSON.parse(await s.output()));
    assert.equal(r.bind, B6);
    assert.ok(r.flows.every((f) => f.dst === `[${B6}]:9`), JSON.stringify(r.flows.map((f) => f.dst)));
    assert.equal(r.flows.length, 1, `only the flow to ${B6}: ${JSON.stringify(r.flows.map((f) => f.src))}`);
    const f = flow(r, `[${A6}]:40007`);
    assert.deepEqual([f.received, f.lost], [199, 1]);
  });

  test('--capture: IPv6 past a Destination Options header, in an 802.1Q tag, fragments counted; IPv4 as before', async () => {
    const s = await startSink(h.lab, h.b, ['--port', '9', '--capture', '-i', h.ifB, '--idle', '1', '--json']);
    // Seqs 50 and 51 carry 3000 bytes: over the 1500-byte MTU the kernel sends each as 3 fragments, which the capture
    // does not reassemble (the socket would): they count as lost here, and as 6 fragments.
    send(h.a, { dst: B6, count: 500, skip: [5, 6, 7], sport: 40016, big: [50, 51], dstopts: true });
    send(h.a, { dst: VB6, count: 300, skip: [1], sport: 40017, raw: { iface: h.ifA, srcMac: h.macA, dstMac: h.macB, src: VA6, vlan: 100 } });
    send(h.a, { dst: h.ipB, count: 300, skip: [2, 3], sport: 40014 });
    const r = valid<Report>('sink', JSON.parse(await s.output()));
    assert.deepEqual([r.mode, r.family, r.engine.ownDrops], ['capture', null, 0]);
    const f6 = flow(r, `[${A6}]:40016`);
    assert.deepEqual([f6.dst, f6.received, f6.lost, f6.lastSeq], [`[${B6}]:9`, 495, 5, 500]);
    assert.equal(r.engine.fragments, 6);
    const fv = flow(r, `[${VA6}]:40017`);
    assert.deepEqual([fv.dst, fv.received, fv.lost, fv.firstSeq], [`[${VB6}]:9`, 299, 1, 2]);
    const f4 = flow(r, `${h.ipA}:40014`);
    assert.deepEqual([f4.dst, f4.received, f4.lost], [`${h.ipB}:9`, 298, 2]);
    assert.equal(r.flows.length, 3);
  });

  test('a kernel without IPv6: the dual-stack socket falls back to IPv4 and says so', async (t) => {
    // socket(AF_INET6) answers EAFNOSUPPORT as on a kernel booted with ipv6.disable=1 — by an LD_PRELOAD shim around
    // libc's socket(), since this kernel has IPv6 and a test cannot reboot it. Everything else is the real kernel's.
    const src = join(tmp, 'noipv6.c');
    const so = join(tmp, 'noipv6.so');
    writeFileSync(src, '#define _GNU_SOURCE\n#include <dlfcn.h>\n#include <errno.h>\n#include <sys/socket.h>\n' +
      'int socket(int d, int t, int p) {\n  if (d == AF_INET6) { errno = EAFNOSUPPORT; return -1; }\n' +
      '  return ((int (*)(int, int, int))dlsym(RTLD_NEXT, "socket"))(d, t, p);\n}\n');
    const cc = sh('cc', ['-shared', '-fPIC', '-o', so, src, '-ldl']);
    if (cc.status !== 0) return t.skip(`no C compiler for the shim: ${cc.stderr?.toString() ?? cc.error}`);
    const s = await startSink(h.lab, h.b, ['--port', '9', '--idle', '1', '--json'], { wrap: ['env', `LD_PRELOAD=${so}`] });
    assert.match(s.err(), /rawpoll sink: this kernel has no IPv6 \(socket\(AF_INET6\): Address family not supported by protocol\): listening on IPv4 only\n/);
    assert.match(s.err(), /listening on UDP 0\.0\.0\.0:9 via a socket/);
    send(h.a, { dst: h.ipB, count: 100, skip: [50], sport: 40024 });
    const r = valid<Report>('sink', JSON.parse(await s.output()));
    assert.equal(r.family, 'ipv4');
    assert.match(r.familyWarning ?? '', /^this kernel has no IPv6/);
    const f = flow(r, `${h.ipA}:40024`);
    assert.deepEqual([f.dst, f.received, f.lost], [`${h.ipB}:9`, 99, 1]);
  });
});
