/**
 * `npm run bench` — a benchmark, not a test. On a veth lab it creates and removes:
 *  1. Throughput, 60-byte frames, alternating rounds of: rawpoll blast (native engine), rawpoll blast (pcap engine),
 *     trafgen (netsniff-ng), tcpreplay --topspeed, a naive pcap_inject loop (JS), and the C ceilings of each kernel
 *     path, compiled by the bench (scripts/bench-c.ts): a pcap_inject loop and an AF_PACKET sendmmsg loop (batches of
 *     256, qdisc bypass, 1 thread and one per CPU). Packets are counted at the receiver (rx_packets of the peer veth)
 *     and each whole process is timed (start-up included). Median of the rounds. Each rawpoll row is also shown as a
 *     ratio to its C ceiling: the pcap engine and the naive loop against C pcap_inject, the native engine against C
 *     sendmmsg with as many threads.
 *  2. Pacing: rawpoll blast --rate 10k/100k/500kpps for a second with each engine: achieved rate from the sender's
 *     own clock, delivered count at the receiver, and the receiver's inter-arrival p50/p99 from a tcpdump capture.
 *  3. RSS: the blast's max RSS at two --count values (flat = no per-packet allocation).
 *  4. Capture (scripts/bench-capture.ts): trafgen sends --capture-count frames to the peer's MAC/UDP port; rawpoll sink
 *     --capture, tcpdump, a C pcap_dispatch loop and a C recvmmsg loop each receive them with the same 64 MiB buffer:
 *     received, dropped (as each reports it), CPU time. Alternating rounds, medians.
 *  5. Receive (scripts/bench-receive.ts), issue 11's targets, each against a peer in the same run: the sink's socket
 *     engine's zero-loss rate vs a C recvmmsg loop (and its own loss at blast's top rate), the capture engine's
 *     zero-drop rate vs tcpdump, inter-arrival p99 at 100 kpps vs tcpdump's stamps, one-way latency p99 at 50 kpps,
 *     sink and collect RSS at 5 s / 20 s, and what collect stores vs what a C recvmmsg loop gets (--receive-count:
 *     frames per zero-loss search run, default 300 000).
 *  6. send vs naive loop (scripts/bench-send.ts) and netdump (scripts/bench-netdump.ts); not with --quick.
 *   node dist/scripts/bench.js [--rounds N] [--count N] [--capture-count N] [--receive-count N] [--quick] [--deliver]
 *                              [--only throughput,pacing,rss,capture,receive,send,netdump]
 * --quick: 1 round, 500 000 frames (capture too), no send/netdump sections. The C loops need cc and libpcap-dev; a
 * missing tool (or a failed compile) makes its row n/a.
 */
import { benchSend, printSendBench } from './bench-send.js';
import { benchNetdump, printNetdumpBench } from './bench-netdump.js';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { twoHosts, type TwoHostLab } from '../test/helpers/lab.js';
import { nativeAvailable } from '../src/link/native.js';
import { parseSizes } from '../src/cli/blast-args.js';
import { buildTemplates } from '../src/tx/templates.js';
import { parseIpv4 } from '../src/wire/addr.js';
import { parseMac } from '../src/wire/mac.js';
import { emitPcapGlobalHeader, emitPcapRecordHeader } from '../src/wire/pcapfile.js';
import { buildCTools, cleanupOnSignal } from './bench-c.js';
import { benchArgs } from './bench-proc.js';
import { benchCapture, printCaptureBench } from './bench-capture.js';
import { benchReceive, printReceiveBench } from './bench-receive.js';

const here = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(here, '..', '..');
const RAWPOLL = join(ROOT, 'bin', 'rawpoll.js');

const arg = benchArgs('node dist/scripts/bench.js [--rounds N] [--count N] [--capture-count N] [--receive-count N] [--quick] [--deliver]\n' +
  '                           [--only throughput,pacing,rss,capture,receive,send,netdump]   (as root; what each section measures: scripts/bench.ts)',
['--rounds', '--count', '--capture-count', '--receive-count', '--only'], ['--quick', '--deliver']);
const QUICK = process.argv.includes('--quick');
const ROUNDS = arg('--rounds', QUICK ? 1 : 3);
const COUNT = arg('--count', QUICK ? 500_000 : 6_000_000);
const CAPTURE_COUNT = arg('--capture-count', QUICK ? 500_000 : 2_000_000);
const RECEIVE_COUNT = arg('--receive-count', 300_000);
const ONLY = (() => {
  const i = process.argv.indexOf('--only');
  return i > 0 ? new Set(process.argv[i + 1].split(',')) : null;
})();
const section = (name: string) => !ONLY || ONLY.has(name);
const CPUS = Math.max(1, (await import('node:os')).availableParallelism());
/**
 * The frames go to a MAC the peer does not own: the peer's stack drops them as PACKET_OTHERHOST right after
 * rx_packets counts them. On veth the receive path runs on the sender's CPU, so a cheap receiver is what lets the
 * bench measure the senders rather than the peer's UDP layer (tcpdump on the peer still sees them: promiscuous).
 */
const OTHERHOST_MAC = '02:00:00:00:00:99';
/** --deliver: address the frames to the peer itself (UDP port 9, nothing listening): its whole receive path runs. */
const DELIVER = process.argv.includes('--deliver');
/** The naive loop, same frame as everyone: pcap_inject through our binding, one JS call per frame, EAGAIN/ENOBUFS retried. */
const NAIVE_SRC = `
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';
const require = createRequire(${JSON.stringify(join(ROOT, 'package.json'))});
const addon = require(${JSON.stringify(join(ROOT, 'native', 'build', 'Release', 'rawpoll_native.node'))});
const [iface, hex, n] = process.argv.slice(2);
const h = addon.pcapOpen(iface, { filter: 'arp and arp[6:2] = 9' }, () => {}, () => {});
const frame = Buffer.from(hex, 'hex');
const count = Number(n);
const t0 = performance.now();
for (let i = 0; i < count; i++) {
  for (;;) { try { h.inject(frame); break; } catch { /* queue full: retry */ } }
}
const seconds = (performance.now() - t0) / 1000;
h.close();
console.log(JSON.stringify({ sent: count, seconds, pps: Math.round(count / seconds) }));
`;

function nsExec(ns: string, args: string[]): { code: number | null; stdout: string; stderr: string; seconds: number } {
  const t0 = performance.now();
  const r = spawnSync('ip', ['netns', 'exec', ns, ...args], { maxBuffer: 64 << 20 });
  return { code: r.status, stdout: r.stdout?.toString() ?? '', stderr: r.stderr?.toString() ?? '', seconds: (performance.now() - t0) / 1000 };
}

function rxPackets(L: TwoHostLab): number {
  return Number(readNs(L.b, `/sys/class/net/${L.ifB}/statistics/rx_packets`));
}
function readNs(ns: string, path: string): string {
  return nsExec(ns, ['cat', path]).stdout.trim();
}

interface Tool {
  name: string;
  available: boolean;
  /** Why not available (default: not installed/built). */
  why?: string;
  /** Command sending `n` 60-byte frames A -> B. */
  cmd(n: number): string[];
  /** The C loop that is this row's kernel-path ceiling (a name in the tools list). */
  ceiling?: string;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)] : NaN;
}

function percentile(sorted: number[], p: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] : NaN;
}

function has(bin: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${bin}`]).status === 0;
}

async function main(): Promise<void> {
  if (process.getuid && process.getuid() !== 0) throw new Error('the bench creates network namespaces: run it as root');
  const c = buildCTools();
  cleanupOnSignal(() => {
    c.remove();
    for (const f of readdirSync(tmpdir())) if (f.startsWith('rpbench-') && f.includes(String(process.pid))) rmSync(join(tmpdir(), f), { force: true });
  });
  try {
    await benchAll(c);
  } finally {
    c.remove();
  }
}

async function benchAll(c: ReturnType<typeof buildCTools>): Promise<void> {
  const L = twoHosts();
  const DST_MAC = DELIVER ? L.macB : OTHERHOST_MAC;
  const files: string[] = [];
  try {
    // IPv6 autoconfiguration would add its own frames to rx_packets.
    for (const [ns, i] of [[L.a, L.ifA], [L.b, L.ifB]]) nsExec(ns, ['sysctl', '-qw', `net.ipv6.conf.${i}.disable_ipv6=1`]);
    // The one 60-byte frame every tool sends: blast's own template (pktgen header, seq 0), UDP A:9 -> B:9.
    const t = buildTemplates({
      srcMac: parseMac(L.macA), dstMac: parseMac(DST_MAC), dstIp: parseIpv4(L.ipB, 'B'),
      flows: [{ srcIp: parseIpv4(L.ipA, 'A'), srcPort: 9, dstPort: 9 }], sizes: parseSizes('60', undefined), seq: true, mtu: 1500, ipId: 'counter',
    });
    const frame = t.frames.subarray(0, 60);
    const hex = [...frame].map((b) => `0x${b.toString(16).padStart(2, '0')}`).join(', ');
    const cfg = join(tmpdir(), `rpbench-${process.pid}.cfg`);
    writeFileSync(cfg, `{ ${hex} }\n`);
    files.push(cfg);
    // tcpreplay: a 1000-frame file preloaded and looped, so disk reads do not count against it.
    const pcap = join(tmpdir(), `rpbench-${process.pid}.pcap`);
    const recs: Buffer[] = [emitPcapGlobalHeader()];
    for (let i = 0; i < 1000; i++) recs.push(emitPcapRecordHeader(0, i, 60, 60), frame);
    writeFileSync(pcap, Buffer.concat(recs));
    files.push(pcap);
    const naive = join(tmpdir(), `rpbench-naive-${process.pid}.mjs`);
    writeFileSync(naive, NAIVE_SRC);
    files.push(naive);

    const blast = (engine: string, n: number, extra: string[] = []) =>
      [process.execPath, RAWPOLL, 'blast', '-i', L.ifA, '--to', `${L.ipB}:9`, '--dst-mac', DST_MAC, '--count', String(n), '--engine', engine, '--json', ...extra];
    const SMMSG_N = `C sendmmsg ${CPUS} threads`;
    const tools: Tool[] = [
      { name: 'rawpoll blast native', available: nativeAvailable(), cmd: (n) => blast('native', n, ['--qdisc-bypass', '--threads', String(CPUS)]), ceiling: SMMSG_N },
      { name: 'blast native 1 thread', available: nativeAvailable(), cmd: (n) => blast('native', n, ['--qdisc-bypass']), ceiling: 'C sendmmsg 1 thread' },
      { name: 'rawpoll blast pcap', available: true, cmd: (n) => blast('pcap', n), ceiling: 'C pcap_inject loop' },
      { name: 'trafgen -P 1', available: has('trafgen'), cmd: (n) => ['trafgen', '--dev', L.ifA, '--conf', cfg, '--num', String(n), '--no-cpu-stats', '-Q', '-P', '1'] },
      { name: 'trafgen', available: has('trafgen'), cmd: (n) => ['trafgen', '--dev', L.ifA, '--conf', cfg, '--num', String(n), '--no-cpu-stats', '-Q'] },
      { name: 'tcpreplay --topspeed', available: has('tcpreplay'), cmd: (n) => ['tcpreplay', '-q', '-i', L.ifA, '--topspeed', '--preload-pcap', `--loop=${Math.ceil(n / 1000)}`, pcap] },
      { name: 'naive pcap_inject loop', available: true, cmd: (n) => [process.execPath, naive, L.ifA, frame.toString('hex'), String(n)], ceiling: 'C pcap_inject loop' },
      // The ceilings: the same frame through the same kernel path from a C loop (EAGAIN/ENOBUFS retried: sent = sent).
      { name: 'C pcap_inject loop', available: !!c.bin['pcap-inject'], why: c.why['pcap-inject'], cmd: (n) => [c.bin['pcap-inject']!, L.ifA, frame.toString('hex'), String(n)] },
      { name: 'C sendmmsg 1 thread', available: !!c.bin.sendmmsg, why: c.why.sendmmsg, cmd: (n) => [c.bin.sendmmsg!, L.ifA, frame.toString('hex'), String(n), '256', '1', '1'] },
      { name: SMMSG_N, available: !!c.bin.sendmmsg && CPUS > 1, why: CPUS > 1 ? c.why.sendmmsg : 'one CPU: same as 1 thread', cmd: (n) => [c.bin.sendmmsg!, L.ifA, frame.toString('hex'), String(n), '256', String(CPUS), '1'] },
    ];
    if (CPUS === 1) tools[0].ceiling = 'C sendmmsg 1 thread';

    if (section('throughput')) {
      console.log(`rawpoll bench: veth pair ${L.ifA} -> ${L.ifB} in namespaces ${L.a}/${L.b}; ${COUNT} frames of 60 bytes per run ` +
        `(UDP ${L.ipA}:9 -> ${L.ipB}:9, dst MAC ${DST_MAC}: ${DELIVER ? "the peer's, so its IP/UDP stack takes each one" : 'not the peer\'s, so it counts then drops them; --deliver for the full receive path'}), ${ROUNDS} alternating round(s)`);
      console.log(`  native engine with --qdisc-bypass (trafgen bypasses the qdisc by default too) and --threads ${CPUS}, as trafgen runs one process per CPU by default;`);
      console.log('  "own clock" = the pps the blast or C loop reports itself (first to last frame, no process start-up);');
      console.log('  "x C ceiling" = pps over the pps of the C loop on the same kernel path (pcap_inject, or AF_PACKET sendmmsg with as many threads):');
      console.log('  wall (receiver count / whole process, as the pps column) / own (each one\'s own clock: send loop only, no start-up)');
      const pps = new Map<string, number[]>();
      const own = new Map<string, number[]>();
      const notes = new Map<string, string>();
      // A run whose process failed (e.g. it could not start) is not a measurement: it stays out of the median and is
      // reported; a run that exited 0 but delivered fewer frames stays in (that is the tool's real figure).
      const failed = new Map<string, number>();
      for (let round = 0; round < ROUNDS; round++) {
        for (const tool of tools) {
          if (!tool.available) continue;
          const rx0 = rxPackets(L);
          const r = nsExec(L.a, tool.cmd(COUNT));
          const got = rxPackets(L) - rx0;
          if (r.code !== 0) {
            failed.set(tool.name, (failed.get(tool.name) ?? 0) + 1);
            notes.set(tool.name, `${failed.get(tool.name)} of ${ROUNDS} run(s) failed, not in the median: exit ${r.code}: ${r.stderr.trim().split('\n').pop()}`);
            continue;
          }
          if (got < COUNT * 0.99) notes.set(tool.name, `${got} of ${COUNT} frames arrived`);
          pps.set(tool.name, [...(pps.get(tool.name) ?? []), got / r.seconds]);
          try {
            own.set(tool.name, [...(own.get(tool.name) ?? []), JSON.parse(r.stdout).pps]);
          } catch {
            /* no JSON: not a blast or C loop */
          }
        }
      }
      const base = median(pps.get('trafgen') ?? []);
      console.log('\nThroughput (frames counted at the receiver / whole-process wall time, median):');
      console.log(`  ${'tool'.padEnd(24)} ${'pps'.padStart(10)}  ${'x trafgen'.padStart(9)}  ${'x C ceiling: wall / own'.padStart(43)}  ${'own clock'.padStart(10)}  target`);
      // Issue 10's targets, against the C loop on the same kernel path in this run (whole process, receiver count):
      // the native engine 0.95 x C sendmmsg with as many threads, the pcap engine 0.9 x C pcap_inject.
      const targets: Record<string, number> = { 'rawpoll blast native': 0.95, 'blast native 1 thread': 0.95, 'rawpoll blast pcap': 0.9 };
      for (const tool of tools) {
        if (!tool.available || !pps.get(tool.name)?.length) {
          console.log(`  ${tool.name.padEnd(24)} ${'n/a'.padStart(10)}  (${tool.available ? notes.get(tool.name) : tool.why ?? 'not installed/built'})`);
          continue;
        }
        const p = median(pps.get(tool.name)!);
        const ratio = p / base;
        const tgt = targets[tool.name];
        const vsCeiling = tool.ceiling ? p / median(pps.get(tool.ceiling) ?? []) : NaN;
        const o = own.has(tool.name) ? String(Math.round(median(own.get(tool.name)!))) : '';
        const x = (a: number, b: number) => (Number.isFinite(a / b) ? (a / b).toFixed(2) : 'n/a');
        const cr = tool.ceiling
          ? `${x(p, median(pps.get(tool.ceiling) ?? []))} / ${x(median(own.get(tool.name) ?? []), median(own.get(tool.ceiling) ?? []))} of ${tool.ceiling}`
          : '';
        console.log(`  ${tool.name.padEnd(24)} ${Math.round(p).toString().padStart(10)}  ${(Number.isFinite(ratio) ? ratio.toFixed(2) : '-').padStart(9)}  ${cr.padStart(43)}  ${o.padStart(10)}  ` +
          (tgt ? `>= ${tgt}x C ceiling (wall) ${vsCeiling >= tgt ? 'met' : Number.isFinite(vsCeiling) ? 'NOT met' : 'n/a'}` : '') +
          (notes.has(tool.name) ? `  (${notes.get(tool.name)})` : ''));
      }
    }

    if (section('pacing')) {
      console.log('\nPacing (1 s at each rate; achieved = sender clock first..last frame; receiver inter-arrival from tcpdump):');
      console.log(`  ${'engine'.padEnd(7)} ${'rate'.padStart(8)} ${'achieved'.padStart(10)} ${'error'.padStart(8)} ${'delivered'.padStart(10)} ${'captured'.padStart(9)} ${'p50 µs'.padStart(8)} ${'p99 µs'.padStart(8)} ${'expect µs'.padStart(9)}  target <= 1%`);
      for (const engine of nativeAvailable() ? ['native', 'pcap'] : ['pcap']) {
        for (const rate of [10_000, 100_000, 500_000]) {
          const capFile = join(tmpdir(), `rpbench-${process.pid}-${engine}-${rate}.pcap`);
          files.push(capFile);
          const tcpdump = spawnSync('sh', ['-c', `ip netns exec ${L.b} tcpdump -n -i ${L.ifB} -B 131072 -s 64 -w ${capFile} udp >/dev/null 2>&1 & echo $!`]);
          const tdPid = Number(tcpdump.stdout.toString().trim());
          await new Promise((r) => setTimeout(r, 700));
          const rx0 = rxPackets(L);
          const r = nsExec(L.a, blast(engine, 0, ['--rate', String(rate), '--duration', '1']));
          const got = rxPackets(L) - rx0;
          await new Promise((r2) => setTimeout(r2, 500));
          spawnSync('kill', ['-INT', String(tdPid)]);
          await new Promise((r2) => setTimeout(r2, 500));
          let j: { sent: number; pps: number; rateError: number } | null = null;
          try {
            j = JSON.parse(r.stdout);
          } catch {
            console.log(`  ${engine} ${rate}: blast failed: ${r.stderr.trim()}`);
            continue;
          }
          const gaps = interArrivals(capFile);
          const err = j!.rateError;
          console.log(`  ${engine.padEnd(7)} ${String(rate).padStart(8)} ${String(j!.pps).padStart(10)} ${((err * 100).toFixed(3) + '%').padStart(8)} ` +
            `${String(got).padStart(10)} ${String(gaps.length + 1).padStart(9)} ${fmt(percentile(gaps, 50))} ${fmt(percentile(gaps, 99))} ${(1e6 / rate).toFixed(1).padStart(9)}  ` +
            `${Math.abs(err) <= 0.01 ? 'met' : 'NOT met'}${got < j!.sent ? `  (${j!.sent - got} not delivered)` : ''}`);
        }
      }
    }

    if (section('rss')) {
      console.log('\nRSS (max resident set of the whole blast process):');
      for (const engine of nativeAvailable() ? ['native', 'pcap'] : ['pcap']) {
        const rss = [COUNT / 10, COUNT].map((n) => {
          const r = nsExec(L.a, blast(engine, Math.round(n)));
          try {
            return JSON.parse(r.stdout).maxRssKiB as number;
          } catch {
            return NaN;
          }
        });
        console.log(`  ${engine.padEnd(7)} --count ${Math.round(COUNT / 10)}: ${(rss[0] / 1024).toFixed(1)} MiB, --count ${COUNT}: ${(rss[1] / 1024).toFixed(1)} MiB  (${Math.abs(rss[1] - rss[0]) < 8192 ? 'flat' : 'GROWS'})`);
      }
    }
  } finally {
    L.lab.destroy();
    for (const f of files) rmSync(f, { force: true });
  }

  // Receive side: our libpcap binding next to tcpdump and the C loops, on a lab of its own (created and removed there).
  if (section('capture')) {
    console.log('');
    printCaptureBench(await benchCapture({ count: CAPTURE_COUNT, rounds: ROUNDS, bufferMiB: 64, c }));
  }

  // Issue 11's receive targets: sink and collect against their peers, on a lab of their own.
  if (section('receive')) {
    console.log('');
    printReceiveBench(await benchReceive({ rounds: ROUNDS, searchCount: RECEIVE_COUNT, c }));
  }

  if (!QUICK && section('send')) {
    // The foundation's own figure (issue 2): `rawpoll send -c` next to a naive pcap_inject loop, same lab kind.
    console.log('');
    printSendBench(benchSend(COUNT >= 100000 ? 100000 : COUNT, ROUNDS), COUNT >= 100000 ? 100000 : COUNT);
  }
  if (!QUICK && section('netdump')) {
    // netdump (issue 4): 100 MB on the veth and on a 20 ms delay link, kernel rounds vs windows vs socat.
    console.log('');
    printNetdumpBench(await benchNetdump(100, 100));
  }
}

function fmt(v: number): string {
  return (Number.isFinite(v) ? v.toFixed(1) : '-').padStart(8);
}

/** Inter-arrival times (µs, sorted) of the UDP frames in a classic pcap capture. */
function interArrivals(file: string): number[] {
  let buf: Buffer;
  try {
    buf = readFileSync(file);
  } catch {
    return [];
  }
  if (buf.length < 24) return [];
  const le = buf.readUInt32LE(0) === 0xa1b2c3d4;
  const u32 = (o: number) => (le ? buf.readUInt32LE(o) : buf.readUInt32BE(o));
  const ts: number[] = [];
  for (let p = 24; p + 16 <= buf.length;) {
    const incl = u32(p + 8);
    ts.push(u32(p) * 1e6 + u32(p + 4));
    p += 16 + incl;
  }
  return ts.slice(1).map((x, i) => x - ts[i]).sort((a, b) => a - b);
}

main().catch((e) => {
  console.error(`bench failed: ${(e as Error).stack ?? e}`);
  process.exitCode = 1;
});
