/**
 * rawpoll oops -> rawpoll collect (and a plain kernel UDP socket) across a veth pair between two namespaces.
 * Expected bytes are laid out here from PROTOCOLS.md §3, never by calling the encoder.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { twoHosts, rawpollAsync, startTcpdump, udpReceiver, waitFor, sh, RAWPOLL, Lab } from '../helpers/lab.js';
import { startCollector as startCollectorWith } from '../helpers/collector.js';

const startCollector = (lab: Lab, ns: string, dir: string, extra: string[] = []) => startCollectorWith(lab, ns, dir, ['--oops', '2004', ...extra]);

function textLog(n: number, tag: string): Buffer {
  let s = '';
  for (let i = 0; s.length < n; i++) s += `<${i % 8}>[${String(i).padStart(5)}.${String(i * 7919 % 1e6).padStart(6, '0')}] ${tag} line ${i}: BUG: unable to handle page fault\n`;
  return Buffer.from(s.slice(0, n));
}

function tmp(prefix: string): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

test('oops: a 50 KB log arrives complete and identical at rawpoll collect; sidecar has the header fields', async () => {
  const h = twoHosts();
  const dir = tmp('rawpoll-oc-');
  try {
    const col = await startCollector(h.lab, h.b, dir, ['--idle', '5']);
    const log = textLog(50 * 1024, 'first');
    const logFile = join(dir, 'in.log');
    writeFileSync(logFile, log);
    const r = await rawpollAsync(h.a, ['oops', '-i', h.ifA, '--to', h.ipB, '--log', logFile, '--type', 'oops', '--json',
      '--boot-id', '0x12345678', '--dump-id', '4242', '--board', 'Test Board', '--firmware', 'FW 1.0', '--kernel-version', '6.0.0-test']);
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse(r.stdout);
    assert.equal(s.packetCount, 50);
    assert.equal(s.datagrams, 150);
    const done = await col.wait((e) => e.event === 'dump-complete');
    assert.ok(done, `no dump-complete; events: ${JSON.stringify(col.events)} ${col.stderr()}`);
    assert.equal(done.host, h.ipA);
    assert.deepEqual(readFileSync(done.file as string), log);
    const meta = JSON.parse(readFileSync(done.sidecar as string, 'utf8'));
    assert.equal(meta.version, 3);
    assert.equal(meta.dump_id, 4242);
    assert.equal(meta.boot_id, 0x12345678);
    assert.equal(meta.type, 1);
    assert.equal(meta.packet_count, 50);
    assert.equal(meta.kernel_version, '6.0.0-test');
    assert.deepEqual(meta.user_fields, { board: 'Test Board', firmware: 'FW 1.0' });
    assert.deepEqual(meta.missing_packet_no, []);
    assert.equal(meta.complete, true);
    await col.stop();
    const summary = col.events.find((e) => e.event === 'summary')!;
    assert.equal(summary.dumps_complete, 1);
    assert.equal(summary.oops_datagrams, 150);
    assert.deepEqual(summary.oops_drops, { late: 100 });
  } finally {
    h.lab.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('oops wire format: a plain kernel socket gets fixed-size v3 datagrams, newest chunk first, 3 rounds', async () => {
  const h = twoHosts();
  const dir = tmp('rawpoll-ow-');
  try {
    const rx = await udpReceiver(h.lab, h.b, 2004, 9, 8000);
    const log = textLog(3000, 'wire');
    const logFile = join(dir, 'in.log');
    writeFileSync(logFile, log);
    const r = await rawpollAsync(h.a, ['oops', '-i', h.ifA, '--to', `${h.ipB}:2004`, '--log', logFile, '--soft',
      '--boot-id', '3735928559', '--dump-id', '7', '--board', 'B', '--firmware', 'F', '--kernel-version', 'kv', '--gap-us', '300']);
    assert.equal(r.code, 0, r.stderr);
    const got = await rx.done();
    assert.equal(got.length, 9);
    // CPU identity as /proc/cpuinfo states it (x86 only: arch 2 and 4 cpuid bytes; else arch 0, no arch data)
    const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8').split('\n\n')[0];
    const field = (k: string) => Number((new RegExp(`^${k}\\s*:\\s*(\\d+)`, 'm').exec(cpuinfo) ?? [])[1]);
    const x86 = /^vendor_id/m.test(cpuinfo);
    const dataOff = x86 ? 388 : 216;
    got.forEach((d, i) => {
      const no = i % 3;
      assert.equal(d.from, h.ipA);
      assert.equal(d.port, 2004);
      const b = d.data;
      assert.equal(b.length, dataOff + 1024);
      const le16 = (o: number) => b[o] | (b[o + 1] << 8);
      const le32 = (o: number) => (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)) >>> 0;
      assert.equal(le16(0), 3);
      assert.equal(le16(2), 7);
      assert.equal(le16(4), dataOff);
      assert.equal(le16(6), x86 ? 2 : 0);
      assert.equal(le16(8), 216);
      assert.equal(le16(10), 3);
      assert.equal(le32(12), 3);
      assert.equal(le32(16), no, `datagram ${i}`);
      assert.equal(le32(20), 0xdeadbeef);
      assert.deepEqual(b.subarray(24, 88), Buffer.concat([Buffer.from('kv'), Buffer.alloc(62)]));
      assert.deepEqual(b.subarray(88, 216), Buffer.concat([Buffer.from('board=B\nfirmware=F\n'), Buffer.alloc(128 - 19)]));
      if (x86) {
        assert.deepEqual([b[217], b[218], b[219]], [field('cpu family'), field('model'), field('stepping')]);
        assert.ok(b.subarray(220, 388).every((x) => x === 0), 'no registers from user space');
      }
      const start = (2 - no) * 1024;
      const chunk = Buffer.alloc(1024);
      log.copy(chunk, 0, start, Math.min(log.length, start + 1024));
      assert.deepEqual(b.subarray(dataOff), chunk, `data of packet_no ${no}`);
    });
  } finally {
    h.lab.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
});

/** Classic pcap file -> UDP payloads of IPv4/UDP frames (no VLAN). Written here, independent of src/. */
function pcapUdpPayloads(file: string): Buffer[] {
  const f = readFileSync(file);
  const out: Buffer[] = [];
  const le = f.readUInt32LE(0) === 0xa1b2c3d4;
  let off = 24;
  while (off + 16 <= f.length) {
    const incl = le ? f.readUInt32LE(off + 8) : f.readUInt32BE(off + 8);
    const fr = f.subarray(off + 16, off + 16 + incl);
    off += 16 + incl;
    if (fr.length < 42 || fr.readUInt16BE(12) !== 0x0800 || fr[23] !== 17) continue;
    const ihl = (fr[14] & 0x0f) * 4;
    out.push(fr.subarray(14 + ihl + 8));
  }
  return out;
}

/**
 * A -- M -- B: M is a plain Linux router (ip_forward) that drops `percent`% of the UDP datagrams to port 2004 it
 * forwards: netem on its B-side link when the kernel has it (the recipe), else nftables numgen in its forward
 * chain (this VM's kernel has no sch_netem). The loss cannot sit on A's own egress: a qdisc/egress drop is reported
 * to the sender (ENOBUFS), and rawpoll's pcap send retries it, so nothing would be lost.
 */
function lossyRoute(percent: number): { lab: Lab; a: string; m: string; b: string; ifA: string; ifB: string; ipA: string; ipB: string; gw: string; how: string } {
  const lab = new Lab('rl');
  try {
    const { a, m, b, ifA, ifMA, ifMB, ifB } = lab.chain();
    lab.addr(a, ifA, '10.31.1.1/24');
    lab.addr(m, ifMA, '10.31.1.254/24');
    lab.addr(m, ifMB, '10.31.2.254/24');
    lab.addr(b, ifB, '10.31.2.1/24');
    sh('ip', ['netns', 'exec', m, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
    sh('ip', ['-n', b, 'route', 'add', 'default', 'via', '10.31.2.254']);
    let how = '';
    if (sh('ip', ['netns', 'exec', m, 'tc', 'qdisc', 'add', 'dev', ifMB, 'root', 'netem', 'loss', `${percent}%`]).status === 0) {
      how = 'netem';
    } else {
      const nft = (args: string[]) => sh('ip', ['netns', 'exec', m, 'nft', ...args]).status === 0;
      if (nft(['add', 'table', 'inet', 'rploss'])
        && nft(['add', 'chain', 'inet', 'rploss', 'lossy', '{ type filter hook forward priority 0; }'])
        && nft(['add', 'rule', 'inet', 'rploss', 'lossy', 'udp', 'dport', '2004', 'numgen', 'random', 'mod', '100', '<', String(percent), 'counter', 'drop'])) {
        how = 'nftables';
      }
    }
    return { lab, a, m, b, ifA, ifB, ipA: '10.31.1.1', ipB: '10.31.2.1', gw: '10.31.1.254', how };
  } catch (e) {
    lab.destroy();
    throw e;
  }
}

test('oops under 30% loss: 3 rounds deliver the log, or the sidecar names exactly what never arrived', async (t) => {
  const h = lossyRoute(30);
  const dir = tmp('rawpoll-ol-');
  try {
    const how = h.how;
    if (!how) {
      t.skip('no way to drop frames here (neither sch_netem nor nft)');
      return;
    }
    const col = await startCollector(h.lab, h.b, dir, ['--idle', '2']);
    const figures: string[] = [];
    let totalChunks = 0;
    let totalMissing = 0;
    let sentDatagrams = 0;
    let arrivedDatagrams = 0;
    let complete = 0;
    const runs = 4;
    for (let run = 0; run < runs; run++) {
      const cap = join(dir, `cap${run}.pcap`);
      const td = await startTcpdump(h.lab, h.b, h.ifB, cap, 'udp dst port 2004', ['-B', '65536']);
      const log = textLog(50 * 1024, `lossy${run}`);
      const logFile = join(dir, `in${run}.log`);
      writeFileSync(logFile, log);
      const r = await rawpollAsync(h.a, ['oops', '-i', h.ifA, '--to', h.ipB, '--gateway', h.gw, '--log', logFile, '--json', '--dump-id', String(100 + run)]);
      assert.equal(r.code, 0, r.stderr);
      sentDatagrams += JSON.parse(r.stdout).datagrams;
      const ev = await col.wait((e) => (e.event === 'dump-complete' || e.event === 'dump-partial') && e.dump_id === 100 + run, 20000);
      assert.ok(ev, `no dump event for run ${run}: ${JSON.stringify(col.events)}`);
      await td.stop(300); // let tcpdump write the last frames before it stops
      assert.match(td.err(), /\n0 packets dropped by kernel/, `the capture is the truth here: it must be whole (${td.err()})`);
      // What reached B's link after the lossy router, from the capture: packet_no at UDP payload offset 16 (LE).
      const payloads = pcapUdpPayloads(cap).filter((p) => p.length >= 24 && p.readUInt16LE(2) === 100 + run);
      arrivedDatagrams += payloads.length;
      const seen = new Set(payloads.map((p) => p.readUInt32LE(16)));
      const expectMissing = [...Array(50).keys()].filter((k) => !seen.has(k)).sort((x, y) => y - x);
      const meta = JSON.parse(readFileSync(ev.sidecar as string, 'utf8'));
      assert.deepEqual(meta.missing_packet_no, expectMissing, `run ${run}: ${payloads.length} captured (${pcapUdpPayloads(cap).length} UDP frames, ${readFileSync(cap).length} bytes), event ${JSON.stringify(ev)}, tcpdump: ${td.err()}`);
      // The .log holds exactly the delivered chunks, oldest first.
      const parts: Buffer[] = [];
      for (let k = 49; k >= 0; k--) if (seen.has(k)) parts.push(log.subarray((49 - k) * 1024, (50 - k) * 1024));
      assert.deepEqual(readFileSync(ev.file as string), Buffer.concat(parts));
      if (meta.complete) complete++;
      totalChunks += 50;
      totalMissing += expectMissing.length;
      figures.push(`run ${run}: ${payloads.length}/150 datagrams arrived, ${50 - expectMissing.length}/50 chunks, missing [${expectMissing.join(',')}]`);
    }
    const summary = `loss via ${how} 30%: ${arrivedDatagrams}/${sentDatagrams} datagrams arrived (${(100 * arrivedDatagrams / sentDatagrams).toFixed(1)}%), ` +
      `${totalChunks - totalMissing}/${totalChunks} chunks delivered (${(100 * (totalChunks - totalMissing) / totalChunks).toFixed(1)}%), ${complete}/${runs} dumps complete`;
    t.diagnostic(summary);
    for (const f of figures) t.diagnostic(f);
    // Loss really happened (else the test proves nothing), and 3 rounds recover most of it (0.3^3 = 2.7% per chunk).
    assert.ok(arrivedDatagrams < sentDatagrams * 0.85, summary);
    assert.ok(totalMissing < totalChunks * 0.15, summary);
    await col.stop();
  } finally {
    h.lab.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('oops one-shot and rate-limit across invocations, checked at the collector', async () => {
  const h = twoHosts();
  const dir = tmp('rawpoll-os-');
  try {
    const col = await startCollector(h.lab, h.b, dir, ['--idle', '5']);
    const logFile = join(dir, 'in.log');
    writeFileSync(logFile, textLog(2500, 'oneshot'));
    // The state file's directory must exist: rawpoll creates the file, not its directory (issue 13).
    mkdirSync(join(dir, 'state'));
    const armed = join(dir, 'state', 'armed');
    let id = 500;
    const send = async (args: string[]) => {
      const r = await rawpollAsync(h.a, ['oops', '-i', h.ifA, '--to', h.ipB, '--log', logFile, '--json', '--dump-id', String(++id), ...args]);
      assert.equal(r.code, 0, r.stderr);
      return { id, ...JSON.parse(r.stdout) };
    };
    const steps = [
      await send(['--type', 'oops', '--one-shot', armed]), // armed (no file yet): sent, disarms
      await send(['--type', 'oops', '--one-shot', armed]), // disarmed: held back
      await send(['--soft', '--one-shot', armed]), // soft: never held back, never disarms
      await send(['--type', 'oops', '--one-shot', armed]), // still disarmed
    ];
    assert.deepEqual(steps.map((s) => s.sent), [true, false, true, false]);
    assert.equal(steps[1].reason, 'disarmed');
    assert.equal(JSON.parse(readFileSync(armed, 'utf8')).armed, false);
    const re = await rawpollAsync(h.a, ['oops', '--one-shot', armed, '--rearm', '--json']);
    assert.equal(re.code, 0, re.stderr);
    assert.equal(JSON.parse(re.stdout).rearmed, true);
    steps.push(await send(['--type', 'oops', '--one-shot', armed])); // re-armed: sent
    assert.equal(steps[4].sent, true);
    assert.equal(existsSync(`${armed}.lock`), false);

    const st = join(dir, 'state', 'rate');
    const rl = [];
    for (let i = 0; i < 3; i++) rl.push(await send(['--soft', '--rate-limit', '2/1h', '--state', st]));
    assert.deepEqual(rl.map((s) => s.sent), [true, true, false]);
    assert.equal(rl[2].reason, 'rate-limited');

    const sentIds = [...steps, ...rl].filter((s) => s.sent).map((s) => s.id).sort();
    await waitFor(() => col.events.filter((e) => e.event === 'dump-complete').length >= sentIds.length, 15000);
    await new Promise((r) => setTimeout(r, 500)); // anything held back would have arrived by now too
    const got = col.events.filter((e) => e.event === 'dump-complete').map((e) => e.dump_id as number).sort();
    assert.deepEqual(got, sentIds);
    await col.stop();
  } finally {
    h.lab.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('oops --kmsg: a marker written to /dev/kmsg arrives with its level in the collected log', async () => {
  const h = twoHosts();
  const dir = tmp('rawpoll-ok-');
  try {
    const col = await startCollector(h.lab, h.b, dir, ['--idle', '5']);
    const marker = `rawpoll-oops-kmsg-marker-${process.pid}-${Date.now()}`;
    writeFileSync('/dev/kmsg', `<3>${marker}\n`); // level 3 (err); the kernel log is global, not per namespace
    const r = await rawpollAsync(h.a, ['oops', '-i', h.ifA, '--to', h.ipB, '--kmsg', '--json', '--dump-id', '31']);
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse(r.stdout);
    assert.ok(s.kmsg.records > 0);
    const done = await col.wait((e) => e.event === 'dump-complete' && e.dump_id === 31, 20000);
    assert.ok(done, JSON.stringify(col.events.slice(-3)));
    const text = readFileSync(done.file as string, 'latin1');
    // `<level>[ seconds.micros] text` lines, as printk's buffer had them; the marker is near the end (newest).
    assert.match(text, new RegExp(`^<3>\\[\\s*\\d+\\.\\d{6}\\] ${marker}$`, 'm'));
    assert.equal(text.length, s.logBytes);
    await col.stop();
  } finally {
    h.lab.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('oops --layout v2 (the v1 patch header) is reassembled too, SMBIOS strings in the sidecar', async () => {
  const h = twoHosts();
  const dir = tmp('rawpoll-o2-');
  try {
    const col = await startCollector(h.lab, h.b, dir, ['--idle', '5']);
    const log = textLog(7000, 'v2');
    const logFile = join(dir, 'in.log');
    writeFileSync(logFile, log);
    const r = await rawpollAsync(h.a, ['oops', '-i', h.ifA, '--to', h.ipB, '--log', logFile, '--layout', 'v2',
      '--dump-id', '2', '--board', 'MB-9', '--firmware', 'BIOS-3', '--kernel-version', '2.6.32-test']);
    assert.equal(r.code, 0, r.stderr);
    const done = await col.wait((e) => e.event === 'dump-complete' && e.dump_id === 2);
    assert.ok(done, JSON.stringify(col.events));
    assert.deepEqual(readFileSync(done.file as string), log);
    const meta = JSON.parse(readFileSync(done.sidecar as string, 'utf8'));
    assert.equal(meta.version, 2);
    assert.equal(meta.kernel_version, '2.6.32-test');
    assert.equal(meta.bios_version, 'BIOS-3');
    assert.equal(meta.motherboard_type, 'MB-9');
    await col.stop();
  } finally {
    h.lab.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
});
