/**
 * The receivers under a flood (issue 9): `collect`, `netdump-server` and `sink --capture`, each in a namespace this
 * file makes, take every crafted datagram class of the issue plus random bytes from test/helpers/flood.py — an
 * AF_PACKET sender in Python that shares no code with rawpoll — with sources spoofed across a /17 (the receiver has
 * rp_filter off and the prefix on-link, as a flat lab network would). Meanwhile and afterwards a real rawpoll sender
 * does its job. Each test asserts: the receiver stays alive and stops cleanly, the growth of its RSS (VmHWM from
 * /proc/PID/status, plus samples every 50 ms) stays under the budget its defaults document, its drops are reported
 * by reason, and the real transfers during and after the flood arrive byte-exact.
 *
 * Bounded: every flood has a count and a rate (PPS, 15 kpps); the whole file takes under a minute.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync, lstatSync } from 'node:fs';
import { join, relative } from 'node:path';
import { labsForThisFile, must, rawpollAsync, ROOT, RAWPOLL, rssKiB, waitFor, type TwoHostLab } from '../helpers/lab.js';
import { udpDropsIn } from '../../src/rx/sink.js';
import { startCollector } from '../helpers/collector.js';
import { netdumpLab, randomFile, runClient, sha256, startServer } from '../../scripts/bench-netdump.js';

const { tmp, hosts } = labsForThisFile('rawpoll-fuzz-');
const FLOOD = join(ROOT, 'test', 'helpers', 'flood.py');
const MiB = 1024 * 1024;
/** Flood rate: what the receivers must take without their own loss on this 2-core VM (the kernel drops the rest at a full socket buffer, real datagrams with it: no receiver can help that). */
const PPS = Number(process.env.RAWPOLL_FUZZ_PPS ?? 15_000);

interface HostileLab extends TwoHostLab {
  /** Prefix the flood's sources are drawn from (on-link at the receiver). */
  spoof: string;
  /** A second one, for classes whose every effect must be traceable by source. */
  spoof2: string;
}

let labN = 0;

/**
 * Lets the receiver `ns` take datagrams from a /16 of spoofed sources as from any host on its link: rp_filter off and
 * the prefix on-link (replies to it — ACKs, ICMP — go out as ARP requests nobody answers, as on a flat lab network).
 */
function openToSpoofing(ns: string, ifname: string): { spoof: string; spoof2: string } {
  const second = 16 + ((process.pid + labN++) % 16);
  for (const k of ['all', 'default', ifname]) must('ip', ['netns', 'exec', ns, 'sysctl', '-qw', `net.ipv4.conf.${k}.rp_filter=0`]);
  must('ip', ['-n', ns, 'route', 'add', `172.${second}.0.0/16`, 'dev', ifname]);
  return { spoof: `172.${second}.0.0/17`, spoof2: `172.${second}.128.0/17` };
}

function hostileLab(): HostileLab {
  const L = hosts();
  return { ...L, ...openToSpoofing(L.b, L.ifB) };
}

interface FloodSpec {
  kind: string;
  count: number;
  port: number;
  pps?: number;
  /** Fixed "IP:PORT" source instead of spoofed ones. */
  src?: string;
  /** Spoof from this prefix instead of the lab's first one. */
  spoof?: string;
}

/** Runs flood.py in the sender's namespace; resolves with what it says it sent. */
function flood(L: HostileLab, f: FloodSpec): Promise<{ sent: number; seconds: number }> {
  const args = {
    iface: L.ifA, srcMac: L.macA, dstMac: L.macB, dst: L.ipB, port: f.port, kind: f.kind, count: f.count,
    pps: f.pps ?? PPS, seed: f.count + f.port, ...(f.src ? { src: f.src } : { spoof: f.spoof ?? L.spoof }),
  };
  return new Promise((resolve, reject) => {
    const p = spawn('ip', ['netns', 'exec', L.a, 'python3', FLOOD, JSON.stringify(args)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    p.on('close', (code) => {
      if (code !== 0) return reject(new Error(`flood.py ${f.kind} exited ${code}: ${err}`));
      const r = JSON.parse(out);
      assert.equal(r.sent, f.count, `${f.kind}: sent ${r.sent} of ${f.count}`);
      resolve(r);
    });
  });
}

/**
 * Resident memory of a process, in bytes: at the start (VmRSS), and the peak (the kernel's high-water mark VmHWM, and
 * samples of VmRSS every 50 ms). Budgets are checked on the growth: what node and the addon's code take resident at
 * start (~55 MiB here, half of it file-backed pages of the node binary) depends on the machine, not on the flood.
 */
class RssWatch {
  peak = 0;
  readonly start: number;
  private timer: NodeJS.Timeout;
  constructor(private readonly pid: number) {
    this.start = rssKiB(pid).rss * 1024;
    this.timer = setInterval(() => this.sample(), 50);
    this.timer.unref(); // a test that fails before stop() must still end
  }
  private sample(): void {
    try { this.peak = Math.max(this.peak, rssKiB(this.pid).rss * 1024); } catch { /* exited */ }
  }
  /** Call while the process is still alive: VmHWM covers any spike between samples. Returns the growth. */
  stop(): number {
    clearInterval(this.timer);
    const m = rssKiB(this.pid);
    this.peak = Math.max(this.peak, m.hwm * 1024, m.rss * 1024);
    return this.peak - this.start;
  }
  toString(): string {
    return `RSS ${mb(this.start)} at start, peak ${mb(this.peak)} (+${mb(this.peak - this.start)})`;
  }
}

/** The node process inside `ip netns exec` (it execs, so the pid is the same: checked). */
function receiverPid(pid: number | undefined): number {
  assert.ok(pid);
  const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  assert.ok(cmd.includes(RAWPOLL), `pid ${pid} is not rawpoll: ${cmd}`);
  return pid;
}

/** Datagrams the kernel dropped for the UDP sockets bound to `port` in `ns` (the drops column of /proc/net/udp). */
function udpDrops(ns: string, port: number): number {
  return udpDropsIn(must('ip', ['netns', 'exec', ns, 'cat', '/proc/net/udp']), port) ?? 0;
}

function textLog(n: number, tag: string): Buffer {
  let s = '';
  for (let i = 0; s.length < n; i++) s += `<${i % 8}>[${String(i).padStart(5)}.${String((i * 7919) % 1e6).padStart(6, '0')}] ${tag} line ${i}: BUG: unable to handle page fault\n`;
  return Buffer.from(s.slice(0, n));
}

const mb = (b: number) => `${(b / MiB).toFixed(1)} MiB`;

test('collect under a flood: fake dumps, truncated and random datagrams, tiny ncfrag pieces, spoofed netconsole; real reports during and after arrive byte-exact', { timeout: 180_000 }, async () => {
  const L = hostileLab();
  const dir = mkdtempSync(join(tmp, 'collect-'));
  const col = await startCollector(L.lab, L.b, dir, ['--oops', '2004', '--netconsole', '6666', '--idle', '3']);
  const rss = new RssWatch(receiverPid(col.proc.pid));
  const real = [textLog(50 * 1024, 'during'), textLog(50 * 1024, 'after')];
  real.forEach((b, i) => writeFileSync(join(dir, `..real${i}.log`), b));
  const oops = (i: number) => rawpollAsync(L.a, ['oops', '-i', L.ifA, '--to', L.ipB, '--log', join(dir, `..real${i}.log`),
    '--json', '--boot-id', '0x600d', '--dump-id', String(4242 + i)]);

  // During: the fake-dump flood (a fresh dump per datagram), and 300 ms into it a real 50 KB report.
  const fakes = flood(L, { kind: 'oops-fake', count: 40_000, port: 2004 });
  await new Promise((r) => setTimeout(r, 300));
  const r0 = await oops(0);
  assert.equal(r0.code, 0, r0.stderr);
  await fakes;
  console.log(`collect: kernel socket drops after the fake-dump flood: ${udpDrops(L.b, 2004)}`);
  // Then every other class, one after another.
  const ncSrc = `${L.spoof.split('/')[0].replace(/\.0$/, '.5')}:6665`;
  for (const f of [
    { kind: 'oops-trunc', count: 10_000, port: 2004 },
    { kind: 'random', count: 20_000, port: 2004 },
    { kind: 'random', count: 20_000, port: 6666 },
    { kind: 'nc-ext', count: 5_000, port: 6666 },
    { kind: 'ncfrag', count: 30_000, port: 6666, src: ncSrc },
  ]) await flood(L, f);

  // After: another real report, and real netconsole lines.
  const r1 = await oops(1);
  assert.equal(r1.code, 0, r1.stderr);
  const lines = Array.from({ length: 50 }, (_, i) => `real netconsole line ${i} after the flood`);
  const nc = await rawpollAsync(L.a, ['netconsole', '-i', L.ifA, '--to', `${L.ipB}:6666`], lines.join('\n') + '\n');
  assert.equal(nc.code, 0, nc.stderr);

  for (let i = 0; i < 2; i++) {
    const done = await col.wait((e) => e.event === 'dump-complete' && e.host === L.ipA && e.dump_id === 4242 + i, 30_000);
    assert.ok(done, `real report ${i} not complete: ${col.stderr()} ${JSON.stringify(col.events.filter((e) => e.host === L.ipA))}`);
    assert.deepEqual(readFileSync(done.file as string), real[i], `real report ${i} differs`);
  }
  const ncLog = join(dir, 'netconsole', `${L.ipA}.log`);
  assert.ok(await waitFor(() => { try { return readFileSync(ncLog, 'utf8').includes(lines[lines.length - 1]); } catch { return false; } }, 10_000));
  const got = readFileSync(ncLog, 'utf8').split('\n').filter(Boolean);
  assert.deepEqual(got, lines, 'netconsole lines after the flood');

  assert.equal(col.proc.exitCode, null, `collector died: ${col.stderr()}`);
  const grew = rss.stop();
  assert.equal(await col.stop(), 0, col.stderr());
  const summary = col.events.find((e) => e.event === 'summary')!;
  const drops = summary.oops_drops as Record<string, number>;
  const ncStats = summary.netconsole as Record<string, number>;
  console.log(`collect: ${rss}; oops datagrams ${summary.oops_datagrams}, drops ${JSON.stringify(drops)}; netconsole ${JSON.stringify(ncStats)}`);
  assert.ok(drops.truncated > 0 && (drops.version ?? 0) + (drops.offsets ?? 0) > 0, JSON.stringify(drops));
  assert.ok(ncStats.dropped > 0, `ncfrag pieces over the budget are counted: ${JSON.stringify(ncStats)}`);
  // Budget: --max-bytes (64 MiB) of reassembly and as much again queued for writing, ncfrag reassembly (16 MiB),
  // and 32 MiB of garbage-collector slack.
  assert.ok(grew < (64 + 64 + 16 + 32) * MiB, `collect: ${rss}`);
});

test('netdump-server under a flood: spoofed heralds, VMCOREs at huge offsets, random bytes; real dumps during and after arrive byte-exact, no files left by the flood', { timeout: 180_000 }, async () => {
  const nl = await netdumpLab();
  let L: HostileLab;
  try {
    const { lab, a, b, ifA, ifB, ipA, ipB } = nl;
    L = { lab, a, b, ifA, ifB, ipA, ipB, macA: lab.mac(a, ifA), macB: lab.mac(b, ifB), ...openToSpoofing(b, ifB) };
  } catch (e) {
    nl.destroy();
    throw e;
  }
  try {
    const srv = await startServer(nl, ['--herald-timeout', '2']);
    const rss = new RssWatch(receiverPid(srv.proc.pid));
    const during = randomFile(4 * MiB);
    const afterwards = randomFile(1 * MiB);

    const heralds = flood(L, { kind: 'herald', count: 20_000, port: 20023 });
    await new Promise((r) => setTimeout(r, 300));
    // Its ARP who-has competes with the flood at the server's kernel: one reply in CI came after 3 tries of 1 s.
    const c0 = await runClient(nl, during, ['--retries', '10']);
    assert.equal(c0.code, 0, c0.stderr);
    await heralds;
    await flood(L, { kind: 'vmcore', count: 20_000, port: 20023 });
    await flood(L, { kind: 'random', count: 10_000, port: 20023 });
    const c1 = await runClient(nl, afterwards);
    assert.equal(c1.code, 0, c1.stderr);

    const mine = () => srv.dumps.filter((d) => d.client === L.ipA);
    assert.ok(await waitFor(() => mine().length >= 2, 30_000), JSON.stringify(srv.dumps.slice(-3)));
    const [d0, d1] = mine();
    assert.equal(d0.status, 'complete');
    assert.equal(d1.status, 'complete');
    assert.equal(sha256(d0.vmcore), sha256(during));
    assert.equal(sha256(d1.vmcore), sha256(afterwards));

    // Half-open sessions end after --herald-timeout and, having received nothing, leave no files.
    const expected = new Set([d0.vmcore, d0.info, d1.vmcore, d1.info].map((p) => relative(srv.dir, p)));
    const leftovers = () => {
      const out: string[] = [];
      const walk = (d: string) => {
        for (const n of readdirSync(d)) {
          const p = join(d, n);
          if (lstatSync(p).isDirectory()) walk(p);
          else if (!lstatSync(p).isSymbolicLink() && !expected.has(relative(srv.dir, p))) out.push(relative(srv.dir, p));
        }
      };
      walk(srv.dir);
      return out;
    };
    assert.ok(await waitFor(() => leftovers().length === 0, 15_000), `files left by the flood: ${leftovers().slice(0, 10).join(' ')} (${leftovers().length})`);

    assert.equal(srv.proc.exitCode, null, 'server died');
    const grew = rss.stop();
    const heraldPortDrops = udpDrops(L.b, 20023);
    srv.proc.kill('SIGINT');
    await new Promise<void>((r) => srv.proc.once('close', () => r()));
    assert.equal(srv.proc.exitCode, 0);
    const stop = srv.events.find((e) => e.event === 'stop') as Record<string, unknown> | undefined;
    const drops = [...srv.events].reverse().find((e) => e.event === 'drops') as Record<string, unknown> | undefined;
    console.log(`netdump-server: ${rss}; herald port: ${heraldPortDrops} datagrams dropped by the kernel (socket buffer full); ${JSON.stringify(drops)}`);
    assert.ok(stop, JSON.stringify(srv.events.slice(-5)));
    assert.ok(drops, `no drops record: ${JSON.stringify(srv.events.slice(-5))}`);
    const d = (drops.drops ?? drops) as Record<string, number>;
    const heraldsEnded = (d.heraldNoData ?? 0) + (d.heraldUnreachable ?? 0) + (d.heraldDisplaced ?? 0) + (d.maxSessions ?? 0);
    assert.ok(heraldsEnded > 0, `spoofed heralds not counted: ${JSON.stringify(d)}`);
    assert.ok((d.notHerald ?? 0) > 0 && (d.length ?? 0) + (d.runt ?? 0) + (d.oversize ?? 0) > 0, `garbage not counted by reason: ${JSON.stringify(d)}`);
    // Budget: --max-sessions (128) x a 128 KiB buffer, and 32 MiB of garbage-collector slack.
    assert.ok(grew < (16 + 32) * MiB, `netdump-server: ${rss}`);
  } finally {
    nl.destroy();
  }
});

test('sink --capture under a flood: spoofed flows with wild seqs, frames breaking IPv4/UDP, random payloads; real blasts during and after are counted exactly', { timeout: 180_000 }, async () => {
  const L = hostileLab();
  must('ip', ['netns', 'exec', L.b, 'ethtool', '-K', L.ifB, 'gro', 'off', 'gso', 'off', 'tso', 'off']);
  const proc = L.lab.spawn(L.b, [process.execPath, RAWPOLL, 'sink', '--capture', '-i', L.ifB, '--port', '9', '--json']);
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (err += d));
  assert.ok(await waitFor(() => /listening|capturing|counting/i.test(err) || proc.exitCode !== null, 10_000), err);
  assert.equal(proc.exitCode, null, err);
  const rss = new RssWatch(receiverPid(proc.pid));

  const blast = (sport: number, count: number) => rawpollAsync(L.a, ['blast', '-i', L.ifA, '--to', `${L.ipB}:9`, '--sport', String(sport),
    '--count', String(count), '--rate', '10kpps', '--json']);
  const real0 = blast(4000, 20_000);
  await flood(L, { kind: 'pktgen', count: 30_000, port: 9 });
  await flood(L, { kind: 'random', count: 10_000, port: 9 });
  const b0 = await real0;
  assert.equal(b0.code, 0, b0.stderr);
  // The frames that break IPv4/UDP come from the second prefix: no flow may begin from there.
  await flood(L, { kind: 'bad-ip', count: 10_000, port: 9, spoof: L.spoof2 });
  const b1 = await blast(4001, 5_000);
  assert.equal(b1.code, 0, b1.stderr);
  await new Promise((r) => setTimeout(r, 500));

  assert.equal(proc.exitCode, null, `sink died: ${err}`);
  const grew = rss.stop();
  proc.kill('SIGINT');
  await new Promise<void>((r) => proc.once('close', () => r()));
  const r = JSON.parse(out);
  const flow = (port: number) => r.flows.find((f: { srcIp: string; srcPort: number }) => f.srcIp === L.ipA && f.srcPort === port);
  const f0 = flow(4000);
  const f1 = flow(4001);
  console.log(`sink: ${rss}; totals ${JSON.stringify(r.totals)}; capture ${JSON.stringify(r.capture)}`);
  assert.ok(f0 && f1, `real flows missing: ${r.flows.length} flows`);
  assert.deepEqual([f0.received, f0.unique, f0.lost, f0.duplicates, f0.seqJumps], [20_000, 20_000, 0, 0, 0]);
  assert.deepEqual([f1.received, f1.unique, f1.lost, f1.duplicates, f1.seqJumps], [5_000, 5_000, 0, 0, 0]);
  assert.equal(r.capture.dropped, 0, 'the capture ring kept up: the counts above are the network\'s');
  assert.ok(r.totals.refused['flows-evicted'] > 0, 'spoofed one-datagram flows gave way');
  assert.ok(r.totals.nonPktgen >= 10_000 * 0.99, `random payloads counted as not ours: ${r.totals.nonPktgen}`);
  assert.ok(r.totals.seqJumps > 0, 'wild seqs are seq jumps, not loss');
  const pfx2 = L.spoof2.split('.').slice(0, 2).join('.') + '.';
  const bad = r.flows.filter((f: { srcIp: string }) => f.srcIp.startsWith(pfx2) && Number(f.srcIp.split('.')[2]) >= 128);
  assert.equal(bad.length, 0, `frames breaking IPv4/UDP were accounted: ${JSON.stringify(bad.slice(0, 3))}`);
  // Budget: --max-flows (10 000) x 2 KB, the 64 MiB capture ring (-B) touched all through, and 32 MiB of
  // garbage-collector slack.
  assert.ok(grew < (20 + 64 + 32) * MiB, `sink: ${rss}`);
});
