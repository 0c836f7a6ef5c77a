/**
 * Capture: how fast rawpoll's own libpcap binding receives, next to tcpdump, a C pcap_dispatch loop and a C recvmmsg
 * loop on a UDP socket, on a veth lab this creates and removes (namespaces A and B).
 *
 * Each run: one receiver starts in B and says it is ready; A sends COUNT identical 60-byte frames addressed to B
 * (B's MAC, B's IP, UDP port P; trafgen -P 1, or the C sendmmsg loop without trafgen) as fast as it can; the receiver
 * then drains its ring and reports what it got and what it says it dropped:
 *   rawpoll sink --capture   totals.received and capture.dropped (pcap_stats) of --json; ends itself (--idle 2)
 *   tcpdump -w /dev/null     "packets captured" / "packets dropped by kernel" after SIGINT, sent once its CPU time
 *                            stops growing (>= 2 s after the sender ended: the ring is drained)
 *   C pcap_dispatch loop     counts frames in the callback, pcap_stats ps_drop; ends itself 2 s after the last frame
 *   C recvmmsg loop          a UDP socket on P (the kernel-socket ceiling); dropped = the socket's drops in /proc/net/udp
 * All get the same ring/buffer (BUFFER MiB: pcap_set_buffer_size, tcpdump -B, sink -B, SO_RCVBUFFORCE) and the
 * same libpcap settings as the sink where they have them (promiscuous, not immediate mode: TPACKET_V3, 10 ms block
 * timeout). Receivers alternate (the order rotates each round); figures are medians over the rounds.
 *   node dist/scripts/bench-capture.js [--count N] [--rounds N] [--buffer MiB]
 * (as root; it needs cc + libpcap-dev for the C loops, and tcpdump/trafgen where present: a missing one says n/a)
 */
import { spawnSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { RAWPOLL, twoHosts, type TwoHostLab } from '../test/helpers/lab.js';
import { parseSizes } from '../src/cli/blast-args.js';
import { buildTemplates } from '../src/tx/templates.js';
import { parseIpv4 } from '../src/wire/addr.js';
import { parseMac } from '../src/wire/mac.js';
import { buildCTools, cleanupOnSignal, type CTools } from './bench-c.js';
import { benchArgs, cpuTicks, exitWithin, has, interruptWhenIdle, ready, sleep, start, type Proc } from './bench-proc.js';

export interface CaptureRun {
  received: number;
  /** As the receiver itself reports it (null: it reports none). */
  dropped: number | null;
  /** Frames the sender sent, and frames B's interface counted (rx_packets). */
  sent: number;
  atIf: number;
  senderPps: number;
  /** CPU seconds (user + system, all threads) the receiver process used from just before the send to its end. */
  cpuSeconds: number;
}

export interface CaptureRow {
  name: string;
  /** Why there is no figure (tool missing, cc failed). */
  na?: string;
  runs: CaptureRun[];
  notes: string[];
}

export interface CaptureResult {
  count: number;
  bufferMiB: number;
  port: number;
  sender: string;
  rows: CaptureRow[];
  /** The whole section could not run (no sender). */
  na?: string;
}

const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK']).stdout?.toString().trim()) || 100;
function rxPackets(L: TwoHostLab): number {
  const r = spawnSync('ip', ['netns', 'exec', L.b, 'cat', `/sys/class/net/${L.ifB}/statistics/rx_packets`]);
  return Number(r.stdout.toString().trim());
}

interface Receiver {
  name: string;
  na?: string;
  args: string[];
  ready: RegExp;
  /** Ends by itself (--idle); otherwise SIGINT once drained. */
  selfEnding: boolean;
  parse(p: Proc): { received: number; dropped: number | null } | string;
}

const median = (xs: number[]) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)] : NaN;
};

export async function benchCapture(opts: { count: number; rounds: number; bufferMiB?: number; port?: number; senderProcs?: number; c?: CTools }): Promise<CaptureResult> {
  const count = opts.count;
  const bufferMiB = opts.bufferMiB ?? 64;
  const bytes = bufferMiB << 20;
  const port = opts.port ?? 9;
  const c = opts.c ?? buildCTools();
  const files: string[] = [];
  const L = twoHosts();
  const live: Proc[] = [];
  try {
    const t = buildTemplates({
      srcMac: parseMac(L.macA), dstMac: parseMac(L.macB), dstIp: parseIpv4(L.ipB, 'B'),
      flows: [{ srcIp: parseIpv4(L.ipA, 'A'), srcPort: 9, dstPort: port }], sizes: parseSizes('60', undefined), seq: true, mtu: 1500, ipId: 'counter',
    });
    const frame = Buffer.from(t.frames.subarray(0, 60));
    const cfg = join(tmpdir(), `rpbench-capture-${process.pid}.cfg`);
    writeFileSync(cfg, `{ ${[...frame].map((b) => `0x${b.toString(16).padStart(2, '0')}`).join(', ')} }\n`);
    files.push(cfg);

    let sender: { name: string; args: string[] } | null = null;
    const procs = opts.senderProcs ?? 1;
    if (has('trafgen')) sender = { name: `trafgen -P ${procs}`, args: ['trafgen', '--dev', L.ifA, '--conf', cfg, '--num', String(count), '--no-cpu-stats', '-Q', '-P', String(procs)] };
    else if (c.bin.sendmmsg) sender = { name: `C sendmmsg loop (${procs} thread(s), batch 256, qdisc bypass)`, args: [c.bin.sendmmsg, L.ifA, frame.toString('hex'), String(count), '256', String(procs), '1'] };
    const result: CaptureResult = { count, bufferMiB, port, sender: sender?.name ?? 'none', rows: [] };
    if (!sender) {
      result.na = 'no sender: neither trafgen nor a C compiler';
      return result;
    }

    const json = (p: Proc): Record<string, unknown> | null => {
      try {
        return JSON.parse(p.stdout().trim().split('\n').pop() ?? '');
      } catch {
        return null;
      }
    };
    const receivers: Receiver[] = [
      {
        name: 'rawpoll sink --capture',
        args: [process.execPath, RAWPOLL, 'sink', '--capture', '-i', L.ifB, '--port', String(port), '--json', '--idle', '2', '-B', String(bufferMiB)],
        ready: /listening/,
        selfEnding: true,
        parse: (p) => {
          const j = json(p) as { totals?: { received: number }; capture?: { dropped: number } | null } | null;
          if (!j?.totals) return `no report: ${p.stderr().trim().split('\n').pop()}`;
          return { received: j.totals.received, dropped: j.capture ? j.capture.dropped : null };
        },
      },
      {
        name: 'tcpdump -w /dev/null',
        na: has('tcpdump') ? undefined : 'tcpdump not installed',
        args: ['tcpdump', '-n', '-i', L.ifB, '-w', '/dev/null', '-B', String(bytes >> 10), `udp port ${port}`],
        ready: /listening on/,
        selfEnding: false,
        parse: (p) => {
          const cap = /(\d+) packets? captured/.exec(p.stderr());
          const drop = /(\d+) packets? dropped by kernel/.exec(p.stderr());
          if (!cap) return `no statistics: ${p.stderr().trim().split('\n').pop()}`;
          return { received: Number(cap[1]), dropped: drop ? Number(drop[1]) : null };
        },
      },
      {
        name: 'C pcap_dispatch loop',
        na: c.bin['pcap-count'] ? undefined : c.why['pcap-count'],
        args: [c.bin['pcap-count'] ?? '', L.ifB, String(bytes), `udp dst port ${port}`, '2'],
        ready: /ready/,
        selfEnding: true,
        parse: (p) => {
          const j = json(p) as { received: number; dropped: number } | null;
          return j ? { received: j.received, dropped: j.dropped } : `no report: ${p.stderr().trim().split('\n').pop()}`;
        },
      },
      {
        name: 'C recvmmsg loop (UDP)',
        na: c.bin.recvmmsg ? undefined : c.why.recvmmsg,
        args: [c.bin.recvmmsg ?? '', String(port), String(bytes), '2'],
        ready: /ready/,
        selfEnding: true,
        parse: (p) => {
          const j = json(p) as { received: number; dropped: number } | null;
          return j ? { received: j.received, dropped: j.dropped >= 0 ? j.dropped : null } : `no report: ${p.stderr().trim().split('\n').pop()}`;
        },
      },
    ];
    result.rows = receivers.map((r) => ({ name: r.name, na: r.na, runs: [], notes: [] }));

    for (let round = 0; round < opts.rounds; round++) {
      for (let k = 0; k < receivers.length; k++) {
        const i = (k + round) % receivers.length;
        const rc = receivers[i];
        const row = result.rows[i];
        if (rc.na) continue;
        const p = start(L.b, rc.args);
        live.push(p);
        try {
          if (!(await ready(p, rc.ready, 15000))) {
            row.notes.push(`did not start: ${p.stderr().trim().split('\n').pop() ?? ''}`);
            continue;
          }
          await sleep(300);
          // The receiver's CPU time, sampled until it exits (the last sample is from its idle tail).
          const pid = p.child.pid!;
          const ticks0 = cpuTicks(pid);
          let ticks = ticks0;
          const sampler = setInterval(() => {
            const v = cpuTicks(pid);
            if (v >= 0) ticks = v;
          }, 50);
          p.exited.then(() => clearInterval(sampler), () => clearInterval(sampler));
          const rx0 = rxPackets(L);
          const t0 = performance.now();
          const s = start(L.a, sender.args);
          live.push(s);
          const code = await s.exited;
          const seconds = (performance.now() - t0) / 1000;
          let sent = count;
          try {
            sent = JSON.parse(s.stdout().trim()).sent ?? count; // the C sender says what it sent
          } catch {
            /* trafgen: --num frames when it exits 0 */
          }
          if (code !== 0) {
            row.notes.push(`sender exit ${code}: ${s.stderr().trim().split('\n').pop()}`);
            continue;
          }
          if (rc.selfEnding) {
            if (!(await exitWithin(p, 60000))) {
              p.child.kill('SIGINT');
              row.notes.push('did not end by itself within 60 s: interrupted');
            }
          } else {
            await interruptWhenIdle(p, 2000);
          }
          if (!(await exitWithin(p, 10000))) p.child.kill('SIGKILL');
          await p.exited;
          const atIf = rxPackets(L) - rx0;
          const r = rc.parse(p);
          if (typeof r === 'string') {
            row.notes.push(r);
            continue;
          }
          if (process.env.RPB_DEBUG) console.error(rc.name, "sender", seconds.toFixed(2), "s; receiver done at", ((performance.now() - t0) / 1000).toFixed(2));
          row.runs.push({ ...r, sent, atIf, senderPps: sent / seconds, cpuSeconds: (ticks - ticks0) / CLK_TCK });
        } finally {
          for (const q of live.splice(0)) if (!q.ended()) q.child.kill('SIGKILL');
        }
      }
    }
    return result;
  } finally {
    for (const q of live) if (!q.ended()) q.child.kill('SIGKILL');
    L.lab.destroy();
    for (const f of files) rmSync(f, { force: true });
    if (!opts.c) c.remove();
  }
}

export function printCaptureBench(r: CaptureResult): void {
  console.log(`Capture (${r.count} frames of 60 bytes per run from A, ${r.sender}, to B's MAC/IP, UDP port ${r.port}; each receiver in B with a ` +
    `${r.bufferMiB} MiB ring/buffer; median of ${Math.max(0, ...r.rows.map((x) => x.runs.length))} round(s), order rotating):`);
  if (r.na) {
    console.log(`  n/a (${r.na})`);
    return;
  }
  console.log('  dropped: as the receiver itself reports it (pcap_stats ps_drop; the UDP socket\'s drops column); CPU s: user + system time of the receiver process from the send to its end;');
  console.log('  kfr/CPU-s: frames received per CPU second of the receiver (its own work only: on veth the kernel copies into the ring in softirq on the');
  console.log('  sender\'s CPU); sndr kpps: frames sent / sender wall time with that receiver attached; at IF: rx_packets of B\'s interface');
  const recv = new Map(r.rows.map((row) => [row.name, median(row.runs.map((x) => x.received))]));
  const tcpd = recv.get('tcpdump -w /dev/null') ?? NaN;
  const cpcap = recv.get('C pcap_dispatch loop') ?? NaN;
  const ratio = (a: number, b: number) => (Number.isFinite(a / b) ? (a / b).toFixed(2) : '-');
  console.log(`  ${'receiver'.padEnd(24)} ${'received'.padStart(9)} ${'dropped'.padStart(8)} ${'recv/sent'.padStart(9)} ${'x tcpdump'.padStart(9)} ` +
    `${'x C pcap'.padStart(8)} ${'CPU s'.padStart(6)} ${'kfr/CPU-s'.padStart(9)} ${'sndr kpps'.padStart(9)} ${'at IF'.padStart(9)}  runs (received / CPU s)`);
  for (const row of r.rows) {
    if (row.na || row.runs.length === 0) {
      console.log(`  ${row.name.padEnd(24)} ${'n/a'.padStart(9)}  (${row.na ?? row.notes.join('; ')})`);
      continue;
    }
    const rec = recv.get(row.name)!;
    const drops = row.runs.map((x) => x.dropped).filter((x): x is number => x !== null);
    const sent = median(row.runs.map((x) => x.sent));
    const cpu = median(row.runs.map((x) => x.cpuSeconds));
    const perCpu = median(row.runs.map((x) => (x.cpuSeconds > 0 ? x.received / x.cpuSeconds : NaN)));
    console.log(`  ${row.name.padEnd(24)} ${String(rec).padStart(9)} ${(drops.length ? String(median(drops)) : '-').padStart(8)} ` +
      `${(((100 * rec) / sent).toFixed(1) + '%').padStart(9)} ${ratio(rec, tcpd).padStart(9)} ${ratio(rec, cpcap).padStart(8)} ` +
      `${cpu.toFixed(2).padStart(6)} ${(Number.isFinite(perCpu) ? (perCpu / 1000).toFixed(0) : '-').padStart(9)} ` +
      `${(median(row.runs.map((x) => x.senderPps)) / 1000).toFixed(0).padStart(9)} ${String(median(row.runs.map((x) => x.atIf))).padStart(9)}  ` +
      row.runs.map((x) => `${x.received}/${x.cpuSeconds.toFixed(2)}`).join(', ') + (row.notes.length ? `  (${row.notes.join('; ')})` : ''));
   }
  const ran = r.rows.filter((row) => row.runs.length > 0);
  if (ran.length > 1 && ran.every((row) => row.runs.every((x) => x.received >= x.sent))) {
    console.log('  (every receiver got every frame in every run: the sender, with the receive path it runs in softirq, was the bottleneck,' +
      ' not the receivers; CPU s and kfr/CPU-s are what separate them)');
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const arg = benchArgs('node dist/scripts/bench-capture.js [--count N] [--rounds N] [--buffer MiB] [--sender-procs N]   (as root)',
    ['--count', '--rounds', '--buffer', '--sender-procs']);
  const c = buildCTools();
  cleanupOnSignal(() => {
    c.remove();
    rmSync(join(tmpdir(), `rpbench-capture-${process.pid}.cfg`), { force: true });
  });
  try {
    printCaptureBench(await benchCapture({ count: arg('--count', 2_000_000), rounds: arg('--rounds', 3), bufferMiB: arg('--buffer', 64), senderProcs: arg('--sender-procs', 1), c }));
  } finally {
    c.remove();
  }
}
