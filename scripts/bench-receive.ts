/**
 * Receive: issue 11's targets for `rawpoll sink` and `rawpoll collect`, each against a peer measured in the same run,
 * on one veth lab this creates and removes (namespaces A and B; GRO/GSO/TSO off on B's veth, as libpcap needs for
 * small ring slots). Every figure is a median over the rounds; the order of the receivers rotates each round.
 *
 *  1. socket engine: zero-loss rate of `rawpoll sink` (default socket engine: recvmmsg, 64 a call, 32 MiB buffer)
 *     next to the C recvmmsg loop of bench-c.ts with the same batch and buffer. A zero-loss rate is the highest
 *     offered rate at which the receiver counted every frame blast sent (--count SEARCH frames): first blast unpaced
 *     (its top rate; T = the median pps of the round's unpaced runs), then for a receiver that lost frames --rate
 *     bisected in (0, T) for STEPS steps. A run has to outlast the buffer (64 MiB granted for 32 asked holds ~80k
 *     small datagrams), hence SEARCH's size. Also: the sink's own loss (loss.own) in the unpaced run.
 *  2. capture engine: the same search for `sink --capture -i IF -B RING` and `tcpdump -w /dev/null -B RING` (RING
 *     default 2 MiB, tcpdump's own default), the unpaced runs from blast with a thread per CPU; with the drops each
 *     reports (capture.dropped; "dropped by kernel"): a lossy run whose receiver reported no drop is counted.
 *  3. inter-arrival p99 at 100 kpps paced: the sink's totals.interArrivalUs.p99 next to the p99 of the gaps between
 *     tcpdump's nanosecond capture stamps of the same frames (tcpdump on B's veth during the same run).
 *  4. one-way latency p99 at 50 kpps paced, A -> B: the sink's totals.latencyUs.p99 and the clock it names, next to
 *     tcpdump's (capture stamp minus the frame's pktgen send stamp); with blast as a user runs it, and with
 *     --batch 1 (each frame stamped just before its own sendmmsg), which shows what of the p99 is the sender's.
 *  5. RSS: VmRSS of a sink (50 kpps) and of `collect --netconsole` (20k lines/s), both under traffic at once, 5 s
 *     and 20 s after it began. One run, not rounds: nothing here is a ratio.
 *  6. collect: records `rawpoll collect --netconsole` stored (lines of its netconsole/<host>.log) next to the
 *     datagrams the C recvmmsg loop (64 a call, 32 MiB) received, for the same offered load: the C nc-send loop
 *     sending COLLECT_LINES extended records at COLLECT_RATE/s from A. Then (no target) the zero-loss search of
 *     rows 1-2 for both, over nc-send's rate, unpaced first.
 *   node dist/scripts/bench-receive.js [--rounds N] [--search-count N] [--steps N] [--ring MiB]
 *                                      [--collect-lines N] [--collect-rate N] [--json]
 * (as root; it needs cc for the C loops and tcpdump/ethtool where used: a missing one says n/a)
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { RAWPOLL, twoHosts, type TwoHostLab } from '../test/helpers/lab.js';
import { PCAP_GLOBAL_LEN, PCAP_MAGIC, PCAP_RECORD_LEN } from '../src/wire/pcapfile.js';
import { UDP_HEADER_LEN } from '../src/wire/udp.js';
import { locateUdp } from '../src/wire/udpframe.js';
import { readPktgenHeader } from '../src/proto/pktgen.js';
import { buildCTools, cleanupOnSignal, type CTools } from './bench-c.js';
import { benchArgs, exitWithin, has, interruptWhenIdle, ready, sleep, start, type Proc } from './bench-proc.js';

export interface ReceiveOptions {
  rounds: number;
  /** Frames blast sends in each zero-loss search run (rows 1, 2). */
  searchCount?: number;
  /** Bisection steps below the top rate. */
  steps?: number;
  /** Capture ring of both capture receivers, MiB (row 2). */
  ringMiB?: number;
  /** Row 6: extended netconsole records sent per run, and their rate (per s). */
  collectLines?: number;
  collectRate?: number;
  c?: CTools;
}

/** One receiver's run: what the sender sent, what the receiver counted, and the loss it says is its own. */
export interface Trial {
  /** Offered rate asked of the sender, pps; null = unpaced. */
  rate: number | null;
  /** The sender's own pps over its run. */
  senderPps: number;
  sent: number;
  got: number;
  /** Loss (or drops) the receiver reports as its own: sink loss.own / capture.dropped, socket or kernel drops. */
  own: number | null;
}

export interface SearchRow {
  name: string;
  na?: string;
  /** Per round: the zero-loss rate (pps; 0 = none found), the unpaced run, and every run in order. */
  rounds: { rate: number; top: Trial; trials: Trial[] }[];
  notes: string[];
}

export interface SearchResult {
  count: number;
  steps: number;
  /** Per round: T, the median sender pps of the round's unpaced runs. */
  tops: number[];
  rows: SearchRow[];
}

export interface LatencyRun { p99: number | null; p50: number | null; max: number | null; clock: string; tcpdump: number | null }

export interface ReceiveResult {
  seconds: number;
  lab: string;
  socket: SearchResult & { bufferMiB: number };
  capture: SearchResult & { ringMiB: number; topSender: string };
  interArrival: { rate: number; runs: { sink: number | null; tcpdump: number | null; frames: number; captured: number }[]; na?: string; notes: string[] };
  /** runs: blast as a user runs it; batch1: blast --batch 1. tcpdump: the p99 of capture stamp minus send stamp. */
  latency: { rate: number; runs: LatencyRun[]; batch1: LatencyRun[]; notes: string[] };
  rss: { at: number[]; sink: (number | null)[]; collect: (number | null)[]; sinkRate: number; collectRate: number; notes: string[] };
  collect: {
    lines: number;
    rate: number;
    /** Per round, at `rate`: collect's run (got = records stored, own = its socket_overflow) and the C loop's. */
    paced: { collect: Trial | null; c: Trial | null }[];
    /** No target: the zero-loss search of rows 1-2 over nc-send's rate (unpaced first). */
    search: SearchResult | null;
    na?: string;
    notes: string[];
  };
}

const median = (xs: (number | null)[]) => {
  const s = xs.filter((x): x is number => x !== null && Number.isFinite(x)).sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)] : NaN;
};
const last = (s: string) => s.trim().split('\n').pop() ?? '';

/** VmRSS in KiB (null once the process is gone). `ip netns exec` execs the command, so the child's pid is node's. */
function vmRssKiB(pid: number): number | null {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

function json(s: string): Record<string, any> | null {
  try {
    return JSON.parse(last(s));
  } catch {
    return null;
  }
}

interface Receiver {
  name: string;
  na?: string;
  /** The command, made afresh for each run. */
  args: () => string[];
  ready: RegExp;
  /** Ends by itself (--idle); otherwise SIGINT once drained. */
  selfEnding: boolean;
  parse(p: Proc): { got: number; own: number | null } | string;
}

/**
 * The sender for one run: blast --count n from A (unpaced when rate is null); its JSON says what it sent and at what
 * pps. Any failure is a string.
 */
type Send = (rate: number | null) => string[];

/** One run: the receiver starts in B and says it is ready, A sends, the receiver ends (or is stopped once drained). */
async function run(L: TwoHostLab, rc: Receiver, send: Send, rate: number | null, live: Proc[]): Promise<Trial | string> {
  const p = start(L.b, rc.args());
  live.push(p);
  try {
    if (!(await ready(p, rc.ready))) return `did not start: ${last(p.stderr())}`;
    await sleep(200);
    const s = start(L.a, send(rate));
    live.push(s);
    const code = await s.exited;
    const j = json(s.stdout());
    if (code !== 0 || !j || typeof j.sent !== 'number') return `sender exit ${code}: ${last(s.stderr())}`;
    if (rc.selfEnding) {
      if (!(await exitWithin(p, 60000))) return 'did not end by itself within 60 s';
    } else {
      await interruptWhenIdle(p, 1200);
      if (!(await exitWithin(p, 10000))) return 'did not end after SIGINT';
    }
    const r = rc.parse(p);
    if (typeof r === 'string') return r;
    return { rate, senderPps: Number(j.pps), sent: j.sent, got: r.got, own: r.own };
  } finally {
    for (const q of live.splice(0)) if (!q.ended()) q.child.kill('SIGKILL');
  }
}

/**
 * Zero-loss search, per round: every receiver's unpaced run first (T is their senders' median pps), then for each
 * receiver that lost frames `steps` bisection steps of --rate in (0, T). A receiver's rate is T if its unpaced run
 * got everything, else the highest paced rate that did (0: none).
 */
async function search(L: TwoHostLab, receivers: Receiver[], send: Send, rounds: number, steps: number, count: number): Promise<SearchResult> {
  const res: SearchResult = { count, steps, tops: [], rows: receivers.map((r) => ({ name: r.name, na: r.na, rounds: [], notes: [] })) };
  const live: Proc[] = [];
  try {
    for (let round = 0; round < rounds; round++) {
      const order = receivers.map((_, k) => (k + round) % receivers.length).filter((i) => !receivers[i].na);
      const tops = new Map<number, Trial>();
      for (const i of order) {
        const t = await run(L, receivers[i], send, null, live);
        if (typeof t === 'string') res.rows[i].notes.push(`round ${round + 1}: ${t}`);
        else tops.set(i, t);
      }
      const T = median([...tops.values()].map((t) => t.senderPps));
      res.tops.push(T);
      for (const i of order) {
        const top = tops.get(i);
        if (!top) continue;
        const trials = [top];
        let rate = 0;
        if (top.got >= top.sent) rate = T;
        else {
          let lo = 0;
          let hi = T;
          for (let k = 0; k < steps; k++) {
            const mid = Math.round((lo + hi) / 2);
            const t = await run(L, receivers[i], send, mid, live);
            if (typeof t === 'string') {
              res.rows[i].notes.push(`round ${round + 1} at ${mid} pps: ${t}`);
              break;
            }
            trials.push(t);
            if (t.got >= t.sent) lo = mid;
            else hi = mid;
          }
          rate = lo;
        }
        res.rows[i].rounds.push({ rate, top, trials });
      }
    }
    return res;
  } finally {
    for (const q of live) if (!q.ended()) q.child.kill('SIGKILL');
  }
}

interface Paired {
  sink: { interArrivalUs: { p99: number } | null; latencyUs: { p50: number; p99: number; max: number } | null };
  clock: string;
  received: number;
  captured: number;
  tdGapP99: number | null;
  tdLatP99: number | null;
}

/** pcap's magic for nanosecond timestamps (tcpdump --time-stamp-precision nano); wire/pcapfile reads the µs kind only. */
const PCAP_MAGIC_NS = 0xa1b23c4d;

/**
 * From a pcap file (µs or ns stamps): the gaps between consecutive records (µs, sorted) and each pktgen frame's
 * one-way latency, capture stamp minus the sender's tv_sec/tv_usec (µs, sorted) — tcpdump's view of what the sink
 * reports.
 */
function readCapture(file: string): { gaps: number[]; latency: number[]; frames: number } {
  let buf: Buffer;
  try {
    buf = readFileSync(file);
  } catch {
    return { gaps: [], latency: [], frames: 0 };
  }
  if (buf.length < PCAP_GLOBAL_LEN) return { gaps: [], latency: [], frames: 0 };
  const le = buf.readUInt32LE(0) === PCAP_MAGIC || buf.readUInt32LE(0) === PCAP_MAGIC_NS;
  const u32 = (o: number) => (le ? buf.readUInt32LE(o) : buf.readUInt32BE(o));
  const nano = u32(0) === PCAP_MAGIC_NS;
  const ts: number[] = [];
  const latency: number[] = [];
  const at = { ip: 0, udp: 0, udpLen: 0 };
  const sec0 = buf.length >= PCAP_GLOBAL_LEN + PCAP_RECORD_LEN ? u32(PCAP_GLOBAL_LEN) : 0;
  for (let p = PCAP_GLOBAL_LEN; p + PCAP_RECORD_LEN <= buf.length;) {
    const incl = u32(p + 8);
    const sec = u32(p);
    const frac = u32(p + 4) / (nano ? 1000 : 1);
    // Seconds relative to the first record: absolute ns would not fit a double exactly.
    ts.push((sec - sec0) * 1e6 + frac);
    const f = buf.subarray(p + PCAP_RECORD_LEN, p + PCAP_RECORD_LEN + incl);
    const h = locateUdp(f, at) ? readPktgenHeader(f, at.udp + UDP_HEADER_LEN) : null;
    if (h) latency.push((sec - h.tvSec) * 1e6 + frac - h.tvUsec);
    p += PCAP_RECORD_LEN + incl;
  }
  return { gaps: ts.slice(1).map((x, i) => x - ts[i]).sort((a, b) => a - b), latency: latency.sort((a, b) => a - b), frames: ts.length };
}

/** Nearest-rank percentile of sorted values. */
function percentile(sorted: number[], p: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] : NaN;
}

function countLines(dir: string): number {
  let n = 0;
  for (const f of readdirSync(dir)) {
    if (!f.endsWith('.log')) continue;
    const b = readFileSync(join(dir, f));
    for (let i = b.indexOf(10); i >= 0; i = b.indexOf(10, i + 1)) n++;
  }
  return n;
}

export async function benchReceive(opts: ReceiveOptions): Promise<ReceiveResult> {
  const t0 = performance.now();
  const rounds = opts.rounds;
  const count = opts.searchCount ?? 300_000;
  const steps = opts.steps ?? 3;
  const ringMiB = opts.ringMiB ?? 2;
  const collectLines = opts.collectLines ?? 200_000;
  const collectRate = opts.collectRate ?? 60_000;
  const c = opts.c ?? buildCTools();
  const tmp = mkdtempSync(join(tmpdir(), 'rprecv-'));
  // A Ctrl-C ends the bench through process.exit (cleanupOnSignal): 'exit' still runs, and removes this section's files.
  const removeTmp = () => rmSync(tmp, { recursive: true, force: true });
  process.once('exit', removeTmp);
  const L = twoHosts();
  const live: Proc[] = [];
  const SOCKBUF = 32 << 20;
  try {
    const ethtool = has('ethtool') ? spawnSync('ip', ['netns', 'exec', L.b, 'ethtool', '-K', L.ifB, 'gro', 'off', 'gso', 'off', 'tso', 'off']) : null;
    const offloads = ethtool?.status === 0 ? 'GRO/GSO/TSO off on B' : `offloads left on (${ethtool ? last(ethtool.stderr.toString()) : 'no ethtool'})`;
    const blast = (port: number, n: number) => (rate: number | null) =>
      [process.execPath, RAWPOLL, 'blast', '-i', L.ifA, '--to', `${L.ipB}:${port}`, '--dst-mac', L.macB, '--count', String(n), '--json',
        ...(rate !== null ? ['--rate', String(rate)] : [])];
    const sinkJson = (p: Proc) => {
      const j = json(p.stdout());
      return j?.totals ? j : null;
    };
    const cRecv = (port: number): Receiver => ({
      name: 'C recvmmsg loop',
      na: c.bin.recvmmsg ? undefined : c.why.recvmmsg,
      args: () => [c.bin.recvmmsg ?? '', String(port), String(SOCKBUF), '1', '64'],
      ready: /ready/,
      selfEnding: true,
      parse: (p) => {
        const j = json(p.stdout());
        return j ? { got: j.received, own: j.dropped >= 0 ? j.dropped : null } : `no report: ${last(p.stderr())}`;
      },
    });

    // 1. Socket engine against the C recvmmsg loop: same port, batch, buffer.
    const sockRecv: Receiver[] = [
      {
        name: 'rawpoll sink (socket)',
        args: () => [process.execPath, RAWPOLL, 'sink', '--port', '9', '--json', '--idle', '1', '--expect', String(count), '--rcvbuf', String(SOCKBUF)],
        ready: /listening/,
        selfEnding: true,
        parse: (p) => {
          const j = sinkJson(p);
          return j ? { got: j.totals.unique, own: j.loss?.own ?? j.socketDrops ?? null } : `no report: ${last(p.stderr())}`;
        },
      },
      cRecv(9),
    ];
    const socket = { ...(await search(L, sockRecv, blast(9, count), rounds, steps, count)), bufferMiB: SOCKBUF >> 20 };

    // 2. Capture engine against tcpdump, same ring. Port 10: no socket there; B answers a few with ICMP (rate-limited).
    const capRecv: Receiver[] = [
      {
        name: 'rawpoll sink --capture',
        args: () => [process.execPath, RAWPOLL, 'sink', '--capture', '-i', L.ifB, '--port', '10', '-B', String(ringMiB), '--json', '--idle', '1', '--expect', String(count)],
        ready: /listening/,
        selfEnding: true,
        parse: (p) => {
          const j = sinkJson(p);
          return j ? { got: j.totals.unique, own: j.capture ? j.capture.dropped : null } : `no report: ${last(p.stderr())}`;
        },
      },
      {
        name: 'tcpdump -w /dev/null',
        na: has('tcpdump') ? undefined : 'tcpdump not installed',
        args: () => ['tcpdump', '-n', '-i', L.ifB, '-w', '/dev/null', '-B', String(ringMiB << 10), 'udp dst port 10'],
        ready: /listening on/,
        selfEnding: false,
        parse: (p) => {
          const cap = /(\d+) packets? captured/.exec(p.stderr());
          const drop = /(\d+) packets? dropped by kernel/.exec(p.stderr());
          return cap ? { got: Number(cap[1]), own: drop ? Number(drop[1]) : null } : `no statistics: ${last(p.stderr())}`;
        },
      },
    ];
    // Unpaced with a sender thread per CPU (a capture is for line-rate blasts); paced runs are one thread (--threads is
    // for unpaced runs only).
    const CPUS = Math.max(1, availableParallelism());
    const capSend: Send = (rate) => [...blast(10, count)(rate), ...(rate === null ? ['--threads', String(CPUS), '--qdisc-bypass'] : [])];
    const capture = { ...(await search(L, capRecv, capSend, rounds, steps, count)), ringMiB, topSender: `blast --threads ${CPUS} --qdisc-bypass` };

    // 3. and 4.: a sink (socket engine, kernel clock) and tcpdump with nanosecond stamps on B's veth, on the same frames.
    const tdOk = has('tcpdump');
    const paired = async (rate: number, n: number, extra: string[], notes: string[], round: number): Promise<Paired | null> => {
      const file = join(tmp, `paired-${round}-${rate}.pcap`);
      const td = tdOk ? start(L.b, ['tcpdump', '-n', '-i', L.ifB, '--time-stamp-precision', 'nano', '-B', String(64 << 10), '-s', '96', '-w', file, 'udp dst port 9']) : null;
      const sk = start(L.b, [process.execPath, RAWPOLL, 'sink', '--port', '9', '--json', '--idle', '1', '--expect', String(n), '--timestamp', 'kernel']);
      live.push(sk, ...(td ? [td] : []));
      try {
        if ((td && !(await ready(td, /listening on/))) || !(await ready(sk, /listening/))) {
          notes.push(`round ${round + 1}: did not start: ${td ? last(td.stderr()) : ''} ${last(sk.stderr())}`);
          return null;
        }
        await sleep(200);
        const s = start(L.a, [...blast(9, n)(rate), ...extra]);
        live.push(s);
        await s.exited;
        await exitWithin(sk, 20000);
        if (td) {
          await interruptWhenIdle(td, 300);
          await exitWithin(td, 10000);
        }
        const j = sinkJson(sk);
        if (!j) {
          notes.push(`round ${round + 1}: sink: no report: ${last(sk.stderr())}`);
          return null;
        }
        const cap = td ? readCapture(file) : null;
        return {
          sink: j.totals,
          clock: String(j.clock),
          received: j.totals.received,
          captured: cap?.frames ?? 0,
          tdGapP99: cap?.gaps.length ? percentile(cap.gaps, 99) : null,
          tdLatP99: cap?.latency.length ? percentile(cap.latency, 99) : null,
        };
      } finally {
        for (const q of live.splice(0)) if (!q.ended()) q.child.kill('SIGKILL');
        rmSync(file, { force: true });
      }
    };
    const IA_RATE = 100_000;
    const LAT_RATE = 50_000;
    const interArrival: ReceiveResult['interArrival'] = { rate: IA_RATE, runs: [], notes: [], na: tdOk ? undefined : 'tcpdump not installed' };
    const latency: ReceiveResult['latency'] = { rate: LAT_RATE, runs: [], batch1: [], notes: [] };
    for (let round = 0; round < rounds; round++) {
      const ia = await paired(IA_RATE, IA_RATE, [], interArrival.notes, round);
      if (ia) interArrival.runs.push({ sink: ia.sink.interArrivalUs?.p99 ?? null, tcpdump: ia.tdGapP99, frames: ia.received, captured: ia.captured });
      // Blast as a user runs it (paced groups of up to 64, one send stamp per sendmmsg), then with --batch 1: every
      // frame stamped just before its own sendmmsg. Both ends of the gap between the two are the sender's.
      for (const [out, extra] of [[latency.runs, []], [latency.batch1, ['--batch', '1']]] as const) {
        const r = await paired(LAT_RATE, LAT_RATE, [...extra], latency.notes, round);
        if (r) out.push({ p99: r.sink.latencyUs?.p99 ?? null, p50: r.sink.latencyUs?.p50 ?? null, max: r.sink.latencyUs?.max ?? null, clock: r.clock, tcpdump: r.tdLatP99 });
      }
    }

    // 5. RSS of a sink and of collect under steady traffic, at 5 s and 20 s.
    const RSS_AT = [5, 20];
    const rss: ReceiveResult['rss'] = { at: RSS_AT, sink: [], collect: [], sinkRate: 50_000, collectRate: 20_000, notes: [] };
    {
      const dir = join(tmp, 'rss-collect');
      const sk = start(L.b, [process.execPath, RAWPOLL, 'sink', '--port', '9', '--json', '--idle', '1']);
      const co = start(L.b, [process.execPath, RAWPOLL, 'collect', '--dir', dir, '--netconsole', '6666', '--json']);
      live.push(sk, co);
      try {
        if (!(await ready(sk, /listening/)) || !(await ready(co, /listening/))) {
          rss.notes.push(`did not start: ${last(sk.stderr())} ${last(co.stderr())}`);
        } else {
          const secs = RSS_AT[RSS_AT.length - 1] + 1;
          const s1 = start(L.a, blast(9, rss.sinkRate * secs)(rss.sinkRate));
          const s2 = c.bin['nc-send'] ? start(L.a, [c.bin['nc-send'], L.ipB, '6666', String(rss.collectRate * secs), String(rss.collectRate)]) : null;
          live.push(s1, ...(s2 ? [s2] : []));
          if (!s2) rss.notes.push(`collect idle: no nc-send (${c.why['nc-send']})`);
          const began = performance.now();
          for (const at of RSS_AT) {
            await sleep(Math.max(0, at * 1000 - (performance.now() - began)));
            rss.sink.push(vmRssKiB(sk.child.pid!));
            rss.collect.push(vmRssKiB(co.child.pid!));
          }
          await s1.exited;
          if (s2) await s2.exited;
          co.child.kill('SIGINT');
          await exitWithin(sk, 10000);
          await exitWithin(co, 10000);
          const j = sinkJson(sk);
          if (j && j.totals.received < rss.sinkRate * secs) rss.notes.push(`sink got ${j.totals.received} of ${rss.sinkRate * secs}`);
        }
      } finally {
        for (const q of live.splice(0)) if (!q.ended()) q.child.kill('SIGKILL');
        rmSync(dir, { recursive: true, force: true });
      }
    }

    // 6. collect against the C recvmmsg loop, the same offered netconsole load from the C nc-send loop: paced at
    // collectRate, then (no target) the zero-loss search of rows 1-2 over nc-send's rate.
    const collect: ReceiveResult['collect'] = {
      lines: collectLines, rate: collectRate, paced: [], search: null, notes: [],
      na: !c.bin['nc-send'] ? c.why['nc-send'] : !c.bin.recvmmsg ? c.why.recvmmsg : undefined,
    };
    if (!collect.na) {
      let runNo = 0;
      let dir = '';
      const collectRecv: Receiver = {
        name: 'rawpoll collect',
        args: () => {
          dir = join(tmp, `collect-${runNo++}`); // a fresh directory per run
          return [process.execPath, RAWPOLL, 'collect', '--dir', dir, '--netconsole', '6666', '--json'];
        },
        ready: /listening/,
        selfEnding: false,
        parse: (p) => {
          try {
            // What it stored: the lines of netconsole/<host>.log; its own loss: the 'dropped' events' socket_overflow.
            const stored = countLines(join(dir, 'netconsole'));
            const over = [...p.stdout().matchAll(/"socket_overflow":(\d+)/g)].pop();
            return { got: stored, own: over ? Number(over[1]) : 0 };
          } catch (e) {
            return `no netconsole logs: ${(e as Error).message}; ${last(p.stderr())}`;
          } finally {
            rmSync(dir, { recursive: true, force: true });
          }
        },
      };
      const ncSend: Send = (rate) => [c.bin['nc-send']!, L.ipB, '6666', String(collectLines), String(rate ?? 1e9)];
      const cLoop = cRecv(6666);
      for (let round = 0; round < rounds; round++) {
        const r: { collect: Trial | null; c: Trial | null } = { collect: null, c: null };
        for (const which of round % 2 ? ['c', 'collect'] as const : ['collect', 'c'] as const) {
          const t = await run(L, which === 'c' ? cLoop : collectRecv, ncSend, collectRate, live);
          if (typeof t === 'string') collect.notes.push(`round ${round + 1}: ${which === 'c' ? 'C loop' : 'collect'}: ${t}`);
          else r[which] = t;
        }
        collect.paced.push(r);
      }
      collect.search = await search(L, [collectRecv, cLoop], ncSend, rounds, steps, collectLines);
    }

    return {
      seconds: (performance.now() - t0) / 1000,
      lab: `veth ${L.ifA} -> ${L.ifB} (namespaces ${L.a}/${L.b}; ${offloads})`,
      socket, capture, interArrival, latency, rss, collect,
    };
  } finally {
    for (const q of live) if (!q.ended()) q.child.kill('SIGKILL');
    L.lab.destroy();
    removeTmp();
    process.removeListener('exit', removeTmp);
    if (!opts.c) c.remove();
  }
}

const k = (pps: number) => (Number.isFinite(pps) ? (pps / 1000).toFixed(0) : '-');
const met = (ok: boolean | null) => (ok === null ? 'n/a' : ok ? 'met' : 'NOT met');

/** Zero-loss rates of two rows of a search, their per-round ratio, and each round's runs as text. */
function searchFigures(s: SearchResult, a: string, b: string) {
  const ra = s.rows.find((r) => r.name === a)!;
  const rb = s.rows.find((r) => r.name === b)!;
  const ratios: number[] = [];
  for (let i = 0; i < Math.min(ra.rounds.length, rb.rounds.length); i++) ratios.push(ra.rounds[i].rate / rb.rounds[i].rate);
  const runs = (r: SearchRow) =>
    r.rounds.map((x) => x.trials.map((t) => `${t.rate === null ? 'top' : k(t.rate) + 'k'}:${t.got >= t.sent ? 'ok' : `-${t.sent - t.got}`}`).join(' ')).join(' | ');
  // Every round's rates at T: neither lost a frame at the sender's top rate, so the search could not tell them apart.
  const bothTop = ra.rounds.length > 0 && rb.rounds.length > 0 &&
    ra.rounds.every((x, i) => x.rate === s.tops[i]) && rb.rounds.every((x, i) => x.rate === s.tops[i]);
  return { ra, rb, rateA: median(ra.rounds.map((x) => x.rate)), rateB: median(rb.rounds.map((x) => x.rate)), ratio: median(ratios), runs, bothTop };
}

const SENDER_BOUND = '(both got every frame at the top rate in every round: the sender was the limit, not these receivers)';

export function printReceiveBench(r: ReceiveResult): void {
  const W = [40, 24, 30, 9];
  const line = (what: string, ours: string, peer: string, x: string, target: string) =>
    console.log(`  ${what.padEnd(W[0])} ${ours.padStart(W[1])}  ${peer.padStart(W[2])}  ${x.padStart(W[3])}  ${target}`);
  const s = r.socket;
  const cp = r.capture;
  console.log(`Receive (issue 11's targets; ${r.lab}; 60-byte blast frames A -> B; median of the rounds, order rotating):`);
  console.log(`  zero-loss rate: the highest offered rate at which the receiver counted every one of ${s.count} frames sent: blast unpaced first`);
  console.log(`  (its top rate T, the median of the round's unpaced runs: T per round ${s.tops.map(k).join(', ')} kpps), then for a receiver that lost`);
  console.log(`  frames, --rate bisected ${s.steps} steps in (0, T). Socket receivers: 64 a recvmmsg, ${s.bufferMiB} MiB buffer; capture receivers: ${cp.ringMiB} MiB ring,`);
  console.log(`  their unpaced runs from ${cp.topSender} (T per round ${cp.tops.map(k).join(', ')} kpps).`);
  line('measure', 'rawpoll', 'peer', 'ratio', 'target');

  const f1 = searchFigures(s, 'rawpoll sink (socket)', 'C recvmmsg loop');
  line('1 socket engine zero-loss rate', `${k(f1.rateA)} kpps`, `C recvmmsg ${k(f1.rateB)} kpps`, Number.isFinite(f1.ratio) ? f1.ratio.toFixed(2) + 'x' : '-',
    `>= 1.0x C recvmmsg  ${met(Number.isFinite(f1.ratio) ? f1.ratio >= 1 : null)}`);
  if (f1.bothTop) console.log(`  ${''.padEnd(W[0])} ${SENDER_BOUND}`);
  const ownTop = f1.ra.rounds.map((x) => x.top.own);
  const cTop = f1.rb.rounds.map((x) => x.top);
  line('  own loss at blast\'s top rate', ownTop.length ? `${median(ownTop)} of ${s.count}` : '-',
    cTop.length ? `C: got ${median(cTop.map((t) => t.got))}, ${median(cTop.map((t) => t.own))} dropped` : '-', '',
    `0 (every round)  ${met(ownTop.length ? ownTop.every((x) => x === 0) : null)}`);

  const f2 = searchFigures(cp, 'rawpoll sink --capture', 'tcpdump -w /dev/null');
  line('2 capture engine zero-drop rate', `${k(f2.rateA)} kpps`, `tcpdump ${k(f2.rateB)} kpps`, Number.isFinite(f2.ratio) ? f2.ratio.toFixed(2) + 'x' : '-',
    `>= 1.0x tcpdump  ${met(Number.isFinite(f2.ratio) ? f2.ratio >= 1 : null)}`);
  if (f2.bothTop) console.log(`  ${''.padEnd(W[0])} ${SENDER_BOUND}`);
  // "Drops reported when they happen": every lossy run of the sink has capture.dropped > 0.
  const lossy = f2.ra.rounds.flatMap((x) => x.trials).filter((t) => t.got < t.sent);
  const unreported = lossy.filter((t) => !t.own);
  const topA = f2.ra.rounds.map((x) => x.top);
  const topB = f2.rb.rounds.map((x) => x.top);
  line('  at top rate: lost / drops reported', topA.length ? `${median(topA.map((t) => t.sent - t.got))} / ${median(topA.map((t) => t.own))}` : '-',
    topB.length ? `tcpdump ${median(topB.map((t) => t.sent - t.got))} / ${median(topB.map((t) => t.own))}` : '-', '',
    `drops reported in every lossy run (${lossy.length - unreported.length} of ${lossy.length})  ${met(lossy.length ? unreported.length === 0 : null)}`);

  const ia = r.interArrival;
  const iaS = median(ia.runs.map((x) => x.sink));
  const iaT = median(ia.runs.map((x) => x.tcpdump));
  const iaD = median(ia.runs.map((x) => (x.sink !== null && x.tcpdump !== null ? x.sink - x.tcpdump : null)));
  line(`3 inter-arrival p99 at ${k(ia.rate)} kpps paced`, Number.isFinite(iaS) ? `${iaS.toFixed(2)} µs` : ia.na ?? '-', Number.isFinite(iaT) ? `tcpdump ${iaT.toFixed(2)} µs` : '-',
    Number.isFinite(iaD) ? `${iaD >= 0 ? '+' : ''}${iaD.toFixed(2)} µs` : '-', `within 2 µs  ${met(Number.isFinite(iaD) ? Math.abs(iaD) <= 2 : null)}`);

  const lat = r.latency;
  for (const [runs, how] of [[lat.runs, 'blast as run'], [lat.batch1, 'blast --batch 1']] as const) {
    const p99 = median(runs.map((x) => x.p99));
    const td = median(runs.map((x) => x.tcpdump));
    line(`${how === 'blast as run' ? '4' : ' '} latency p99 at ${k(lat.rate)} kpps, ${how}`, Number.isFinite(p99) ? `${p99.toFixed(1)} µs` : '-',
      Number.isFinite(td) ? `tcpdump ${td.toFixed(1)} µs` : '-', Number.isFinite(p99 - td) ? `${p99 - td >= 0 ? '+' : ''}${(p99 - td).toFixed(1)} µs` : '',
      `<= 200 µs  ${met(Number.isFinite(p99) ? p99 <= 200 : null)}`);
  }
  const clock = lat.runs[0]?.clock ?? lat.batch1[0]?.clock;
  if (clock) console.log(`  ${''.padEnd(W[0])} sink's clock: ${clock}; tcpdump: its capture stamp minus the frame's send stamp`);
  const rs = r.rss;
  const mib = (x: number | null) => (x === null ? '-' : (x / 1024).toFixed(1));
  for (const [name, v, rate] of [['sink', rs.sink, `${k(rs.sinkRate)} kpps`], ['collect', rs.collect, `${k(rs.collectRate)}k lines/s`]] as const) {
    const grow = v.length === 2 && v[0] !== null && v[1] !== null ? v[1] - v[0] : null;
    line(`5 ${name} RSS at ${rs.at.join(' s / ')} s (${rate})`, `${v.map(mib).join(' / ')} MiB`, '', grow === null ? '-' : `${grow >= 0 ? '+' : ''}${(grow / 1024).toFixed(1)} MiB`,
      `flat (grows < 8 MiB)  ${met(grow === null ? null : grow < 8192)}`);
  }

  const co = r.collect;
  if (co.na) line('6 collect stored / C recvmmsg got', 'n/a', '', '', `(${co.na})`);
  else {
    const ratio = median(co.paced.map((x) => (x.collect && x.c?.got ? x.collect.got / x.c.got : null)));
    const col = co.paced.map((x) => x.collect).filter((x): x is Trial => !!x);
    const cl = co.paced.map((x) => x.c).filter((x): x is Trial => !!x);
    line(`6 collect at ${k(co.rate)}k lines/s: stored`, col.length ? `${median(col.map((x) => x.got))} of ${median(col.map((x) => x.sent))}` : '-',
      cl.length ? `C recvmmsg ${median(cl.map((x) => x.got))} of ${median(cl.map((x) => x.sent))}` : '-', Number.isFinite(ratio) ? (ratio * 100).toFixed(1) + '%' : '-',
      `>= 99% of C recvmmsg  ${met(Number.isFinite(ratio) ? ratio >= 0.99 : null)}`);
  }
  const f6 = co.search ? searchFigures(co.search, 'rawpoll collect', 'C recvmmsg loop') : null;
  if (f6 && co.search) {
    const tops = f6.ra.rounds.map((x) => x.top);
    line('  collect zero-loss rate (no target)', `${k(f6.rateA)}k lines/s`, `C recvmmsg ${k(f6.rateB)}k lines/s`, Number.isFinite(f6.ratio) ? f6.ratio.toFixed(2) + 'x' : '-',
      `nc-send unpaced (T ${co.search.tops.map(k).join(', ')}k/s): collect stored ${median(tops.map((t) => t.got))} of ${co.lines}, socket_overflow ${median(tops.map((t) => t.own))}`);
  }

  console.log('  runs (offered rate: ok, or -lost):');
  console.log(`    sink (socket)      ${f1.runs(f1.ra)}`);
  console.log(`    C recvmmsg         ${f1.runs(f1.rb)}`);
  console.log(`    sink --capture     ${f2.runs(f2.ra)}   (drops reported at top: ${topA.map((t) => t.own ?? '-').join(', ')})`);
  console.log(`    tcpdump            ${f2.runs(f2.rb)}   (drops reported at top: ${topB.map((t) => t.own ?? '-').join(', ')})`);
  console.log(`    inter-arrival p99 sink/tcpdump µs (frames sink/tcpdump): ${ia.runs.map((x) => `${x.sink ?? '-'}/${x.tcpdump === null ? '-' : x.tcpdump.toFixed(3)} (${x.frames}/${x.captured})`).join(', ')}`);
  const latRuns = (runs: LatencyRun[]) => runs.map((x) => `${x.p99 ?? '-'}/${x.tcpdump === null ? '-' : x.tcpdump.toFixed(1)}`).join(', ');
  console.log(`    latency p99 sink/tcpdump µs: ${latRuns(lat.runs)}; with --batch 1: ${latRuns(lat.batch1)}`);
  console.log(`    collect stored/C got at ${k(co.rate)}k/s: ${co.paced.map((x) => `${x.collect?.got ?? '-'}/${x.c?.got ?? '-'}`).join(', ')}`);
  if (f6) {
    console.log(`    collect            ${f6.runs(f6.ra)}`);
    console.log(`    C recvmmsg (6666)  ${f6.runs(f6.rb)}`);
  }
  const notes = [
    ...s.rows.flatMap((x) => x.notes.map((n) => `${x.name}: ${n}`)), ...cp.rows.flatMap((x) => x.notes.map((n) => `${x.name}: ${n}`)),
    ...ia.notes.map((n) => `inter-arrival: ${n}`), ...lat.notes.map((n) => `latency: ${n}`), ...rs.notes.map((n) => `rss: ${n}`), ...co.notes.map((n) => `collect: ${n}`),
    ...(co.search?.rows ?? []).flatMap((x) => x.notes.map((n) => `${x.name} (search): ${n}`)),
    ...cp.rows.filter((x) => x.na).map((x) => `${x.name}: n/a (${x.na})`), ...s.rows.filter((x) => x.na).map((x) => `${x.name}: n/a (${x.na})`),
  ];
  for (const n of notes) console.log(`  note: ${n}`);
  console.log(`  (section took ${r.seconds.toFixed(0)} s)`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const arg = benchArgs('node dist/scripts/bench-receive.js [--rounds N] [--search-count N] [--steps N] [--ring MiB] ' +
    '[--collect-lines N] [--collect-rate N] [--json]   (as root: issue 11\'s receive targets, see scripts/bench.ts)',
  ['--rounds', '--search-count', '--steps', '--ring', '--collect-lines', '--collect-rate'], ['--json']);
  const c = buildCTools();
  cleanupOnSignal(() => c.remove());
  try {
    const r = await benchReceive({
      rounds: arg('--rounds', 3), searchCount: arg('--search-count', 300_000), steps: arg('--steps', 3), ringMiB: arg('--ring', 2),
      collectLines: arg('--collect-lines', 200_000), collectRate: arg('--collect-rate', 60_000), c,
    });
    if (process.argv.includes('--json')) console.log(JSON.stringify(r));
    else printReceiveBench(r);
  } finally {
    c.remove();
  }
}
