import { Command } from 'commander';
import { existsSync, statSync } from 'node:fs';
import { dirname, extname } from 'node:path';
import { RuntimeError, UsageError } from '../errors.js';
import { ControlClient } from '../exp/control.js';
import { writeReport } from '../exp/report.js';
import { estimateTrials, RFC2544_SIZES, runRfc2544, type Rfc2544Params } from '../exp/rfc2544.js';
import type { Rfc2544Run, Rfc2544Test, Trial } from '../exp/results.js';
import { FrameBlaster, TrialRunner } from '../exp/trial.js';
import { ifaceInfo } from '../link/iface.js';
import { parseEngine } from '../link/native.js';
import { sizeLimits } from '../tx/templates.js';
import { formatIpv4, parsePort } from '../wire/addr.js';
import { parseDestination, parseDuration, parseRate } from './blast-args.js';
import { addLinkOptions, intArg, onStopSignal, parseVlanArg, senderOptionsFromFlags, SIGNAL_EXIT, type FrameFlags, type StopSignal } from './common.js';

const TESTS: Rfc2544Test[] = ['throughput', 'latency', 'frame-loss', 'back-to-back'];

interface Rfc2544Flags extends FrameFlags {
  to: string;
  control: string;
  token?: string;
  sizes?: string;
  trial: string;
  loss: string;
  maxRate?: string;
  rate?: string;
  throughput?: string;
  resolution: string;
  repeat: string;
  settle: string;
  maxBurst?: string;
  engine?: string;
  report?: string;
}

/** --sizes 64,128,1518: frame bytes without FCS, each once, in the order given. */
export function parseSizeList(s: string): number[] {
  const sizes = s.split(',').map((x) => {
    const t = x.trim();
    if (!/^\d+$/.test(t)) throw new UsageError(`bad --sizes '${s}': expected frame sizes in bytes without FCS, like 64,512,1518`);
    return Number(t);
  });
  const dup = sizes.find((x, i) => sizes.indexOf(x) !== i);
  if (dup !== undefined) throw new UsageError(`bad --sizes '${s}': size ${dup} is listed twice`);
  return sizes;
}

/** Sizes this link can carry (blast's: without FCS, the test header inside): a size beyond MTU + 14 names the MTU. */
export function checkSizes(sizes: number[], iface: string, mtu: number, vlan: boolean): void {
  const { min, max } = sizeLimits({ mtu, vlan: vlan ? { vid: 0, pcp: 0 } : undefined, seq: true });
  for (const s of sizes) {
    if (s > max) {
      throw new UsageError(`bad --sizes: ${s} is too large for ${iface}: its MTU ${mtu} allows frames of at most ${max} bytes without FCS ` +
        `(MTU + 14 bytes of Ethernet header${vlan ? ' + 4 of 802.1Q tag' : ''}); raise the MTU (ip link set ${iface} mtu N) or drop the size`);
    }
    if (s < min) throw new UsageError(`bad --sizes: ${s} is below ${min} bytes, the smallest frame that holds the headers and the test header (or the Ethernet minimum)`);
  }
}

/** A percentage in [lo, hi] (`--loss 0.5`, `--resolution 1`). */
export function percentArg(v: string, what: string, lo: number, hi: number, loOpen = false): number {
  const t = v.trim();
  const n = /^\d+(\.\d+)?$/.test(t) ? Number(t) : NaN;
  if (!(n >= lo && n <= hi) || (loOpen && n === lo)) {
    throw new UsageError(`bad ${what} '${v}': expected a percentage ${loOpen ? `above ${lo}` : `from ${lo}`} up to ${hi}, like 0.5`);
  }
  return n;
}

/** --control HOST:PORT. */
export function parseHostPort(s: string, what: string): { host: string; port: number } {
  const m = /^\s*([A-Za-z0-9._-]+):(\d+)\s*$/.exec(s);
  if (!m) throw new UsageError(`bad ${what} '${s}': expected HOST:PORT, like 10.0.0.2:5201 (where rawpoll sink --serve listens)`);
  return { host: m[1], port: parsePort(m[2], `${what} port`) };
}

/** A rate flag as blast's --rate takes it, per size: frames/s as given, or bits/s of frames over 8 × size bytes. */
export function rateFor(flag: string, v: string): (size: number) => number {
  let r: { pps?: number; bps?: number };
  try {
    r = parseRate(v);
  } catch {
    throw new UsageError(`bad ${flag} '${v}': expected frames/s like 10000, 250kpps or bits/s of frames like 100Mbps`);
  }
  return (size) => (r.pps !== undefined ? r.pps : r.bps! / (8 * size));
}

function secondsArg(v: string, what: string, allowZero = false): number {
  if (allowZero && /^\s*0+(\.0*)?\s*(s|ms)?\s*$/.test(v)) return 0;
  return parseDuration(v, what, 's') / 1e9;
}

async function connectControl(host: string, port: number, token: string | undefined): Promise<ControlClient> {
  try {
    return await ControlClient.connect(host, port, { token });
  } catch (e) {
    if (e instanceof RuntimeError || e instanceof UsageError) throw e;
    throw new RuntimeError(`cannot reach the sink's control channel at ${host}:${port}: ${(e as Error).message} (is rawpoll sink --serve running there?)`);
  }
}

export function register(program: Command): void {
  const cmd = program
    .command('rfc2544')
    .summary('RFC 2544 benchmarks against a device: throughput, latency, frame loss, back-to-back (RFC 9004)')
    .description('Runs RFC 2544 §26\'s tests through a device under test: blast sends from here on -i IF, and a\n' +
      '`rawpoll sink --serve` on the far side counts each trial, opened and closed over its control channel (--control).\n' +
      '  throughput    per size, the highest rate whose loss is <= --loss: the max rate first, then a binary search\n' +
      '  frame-loss    per size, loss at 100%, 90%, ... of the max rate, until two steps in a row lose nothing\n' +
      '  latency       per size, one trial at the throughput rate (searched first, or --rate): the sink\'s p50/p99/max\n' +
      '  back-to-back  per size, the longest loss-free burst at the max rate, --repeat times, and RFC 9004\'s buffer time\n' +
      '                (needs the throughput: searched first, or --throughput)\n' +
      'Sizes are blast\'s: frame bytes without the 4-byte FCS. The RFC\'s 1518 is here a 1518-byte frame, 1522 on the\n' +
      'wire with its FCS (the JSON says so: "sizesCountFcs": false); 1514 is the largest untagged frame of a 1500 MTU.\n' +
      'A trial whose frames the sink dropped itself (socket or capture buffer full) is run again; twice is an error.')
    .argument('<test>', TESTS.join(' | '))
    .requiredOption('--to <IP[:PORT]>', 'the sink: where the frames go (port default 9); the trials are opened on that port')
    .requiredOption('--control <HOST:PORT>', 'the sink\'s control channel (rawpoll sink --serve [IP:]PORT)')
    .option('--token <T>', 'the shared secret the sink was started with (--token)')
    .option('--sizes <LIST>', 'frame sizes in bytes without FCS (a size above MTU + 14 is refused)', RFC2544_SIZES.join(','))
    .option('--trial <S>', 'each trial\'s length: 60 (RFC 2544 §24), 10, 1.5s, 500ms', '60')
    .option('--loss <PCT>', 'throughput: the loss a passing trial may have (0: the no-drop rate; > 0 a partial-drop rate)', '0')
    .option('--max-rate <RATE>', 'the highest rate offered, as blast\'s --rate: 250kpps, 1Mpps or 100Mbps (bits of frames, per size). ' +
      'Default: blast\'s unpaced top rate, measured per size over a short run first')
    .option('--rate <RATE>', 'latency: measure at this rate instead of searching each size\'s throughput first')
    .option('--throughput <RATE>', 'back-to-back: the device\'s throughput for RFC 9004\'s buffer time, instead of searching it first')
    .option('--resolution <PCT>', 'binary searches stop when the bracket is within this % of the answer: throughput, of its upper end (the max rate, ' +
      'while the device passes above half of it); back-to-back, of the burst found', '1')
    .option('--repeat <N>', 'back-to-back: searches per size (RFC 2544 §26.4: 50)', '50')
    .option('--max-burst <N>', 'back-to-back: the longest burst tried (default: what the max rate sends in 0.2 s)')
    .option('--settle <S>', 'pause between trials (RFC 2544 §23: 2 s)', '2')
    .option('--engine <ENGINE>', 'blast\'s engine: native (AF_PACKET, sendmmsg) or pcap; default native when built')
    .option('--vlan <ID[:PRIO]>', '802.1Q tag on the test frames')
    .option('--json', 'no progress or table: the run\'s document (exp/results.ts Rfc2544Run) on stdout')
    .option('--report <FILE>', 'write the report with its plots: FILE.svg, or FILE.html (the SVGs and the JSON)');
  addLinkOptions(cmd);
  cmd.addHelpText('after', '\nExamples:\n' +
    '  (far side)  rawpoll sink --serve 10.0.0.2:5201 --token s3cret\n' +
    '  sudo rawpoll rfc2544 throughput -i eth1 --to 10.0.0.2:9 --control 10.0.0.2:5201 --token s3cret --report run.html\n' +
    '  sudo rawpoll rfc2544 frame-loss -i eth1 --to 10.0.0.2 --control 10.0.0.2:5201 --sizes 64,1518 --max-rate 1Gbps --trial 10\n' +
    '  sudo rawpoll rfc2544 back-to-back -i eth1 --to 10.0.0.2 --control 10.0.0.2:5201 --sizes 64 --repeat 50 --json\n\n' +
    'Each trial prints a line on stderr: [k/n] size S rate R pps: sent, received, loss (n is an upper bound).\n' +
    'Exit codes: 0 done; 1 runtime failure (control channel unreachable, the sink could not keep up, link down);\n' +
    '2 bad usage (every flag is checked before the control channel is reached or a frame is sent); 130/143 interrupted.');
  cmd.action(async (testArg: string, f: Rfc2544Flags) => {
    // Every flag is checked here, before the control channel, ARP or the first frame.
    if (!TESTS.includes(testArg as Rfc2544Test)) throw new UsageError(`bad test '${testArg}': expected one of ${TESTS.join(', ')}`);
    const test = testArg as Rfc2544Test;
    const dst = parseDestination(f.to);
    const port = dst.port ?? 9;
    const control = parseHostPort(f.control, '--control');
    const sizes = parseSizeList(f.sizes ?? RFC2544_SIZES.join(','));
    const trialSeconds = secondsArg(f.trial, '--trial');
    const lossTolerancePct = percentArg(f.loss, '--loss', 0, 100);
    const resolutionPct = percentArg(f.resolution, '--resolution', 0, 100, true);
    const repeat = intArg(f.repeat, '--repeat', 1, 100000)!;
    const settleS = secondsArg(f.settle, '--settle', true);
    const maxBurst = intArg(f.maxBurst, '--max-burst', 1, 1 << 30);
    const maxRate = f.maxRate !== undefined ? rateFor('--max-rate', f.maxRate) : undefined;
    const rate = f.rate !== undefined ? rateFor('--rate', f.rate) : undefined;
    const throughput = f.throughput !== undefined ? rateFor('--throughput', f.throughput) : undefined;
    if (rate && test !== 'latency') throw new UsageError('--rate is for the latency test (the rate to measure latency at)');
    if (throughput && test !== 'back-to-back') throw new UsageError('--throughput is for the back-to-back test (the throughput RFC 9004\'s buffer time needs)');
    if (maxBurst !== undefined && test !== 'back-to-back') throw new UsageError('--max-burst is for the back-to-back test');
    if (f.report !== undefined) {
      const ext = extname(f.report).toLowerCase();
      if (ext !== '.svg' && ext !== '.html') throw new UsageError(`bad --report '${f.report}': expected a file ending in .svg or .html`);
      const dir = dirname(f.report);
      if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new UsageError(`bad --report '${f.report}': no directory '${dir}' to write it in`);
    }
    const engine = parseEngine(f.engine);
    if (!f.iface) throw new UsageError('rfc2544 needs an interface: -i IF');
    const info = ifaceInfo(f.iface);
    checkSizes(sizes, f.iface, info.mtu, f.vlan !== undefined && parseVlanArg(f.vlan) !== undefined);
    if (maxRate) {
      for (const s of sizes) {
        if (!(maxRate(s) >= 1)) throw new UsageError(`bad --max-rate '${f.maxRate}': less than one ${s}-byte frame per second`);
      }
    }
    const senderOpts = senderOptionsFromFlags({ ...f, size: undefined, write: undefined });
    const log = (line: string) => {
      if (!f.json) process.stderr.write(line + '\n');
    };

    const startedAt = new Date().toISOString();
    const client = await connectControl(control.host, control.port, f.token);
    let blaster: FrameBlaster | undefined;
    let runner: TrialRunner | undefined;
    let interrupted = null as StopSignal | null;
    const unlisten = onStopSignal((sig) => {
      interrupted = sig;
      runner?.stop();
    });
    try {
      blaster = await FrameBlaster.open({ engine, iface: f.iface, sender: senderOpts, to: { ip: dst.ip, port }, srcPort: 9 });
      if (interrupted) throw new RuntimeError('stopped');
      runner = new TrialRunner({ control: client, blaster, port, settleMs: settleS * 1000, unpacedBursts: !maxRate });
      const b = blaster;
      const measured = new Map<number, number>();
      const params: Rfc2544Params = {
        test, sizes, trialSeconds, lossTolerancePct, resolutionPct, repeat,
        maxRatePps: maxRate ?? (async (size) => {
          // blast's unpaced top rate for this size: what "as fast as this host sends" means here.
          const r = await b.topRate(size, Math.min(1, trialSeconds));
          if (r.error) throw new RuntimeError(`measuring the top rate at size ${size}: ${r.error}`);
          if (interrupted) throw new RuntimeError('stopped');
          measured.set(size, r.pps);
          log(`size ${size}: max rate ${r.pps} pps (blast's unpaced top rate over ${r.seconds.toFixed(2)} s)`);
          return r.pps;
        }),
        ratePps: rate, throughputPps: throughput,
        maxBurst: maxBurst !== undefined ? () => maxBurst : undefined,
      };
      log(`rfc2544 ${test}: ${sizes.length} size${sizes.length === 1 ? '' : 's'} (${sizes.join(', ')} bytes without FCS), trials of ${trialSeconds} s, ` +
        `at most ~${estimateTrials(params)} trials; sink ${formatIpv4(dst.ip)}:${port}, control ${control.host}:${control.port}`);
      const body = await runRfc2544(params, runner.run, { onTrial: (t, k, n) => log(progressLine(t, k, n)) });
      const run: Rfc2544Run = { ...body, tool: 'rawpoll rfc2544', startedAt, iface: f.iface, to: `${formatIpv4(dst.ip)}:${port}` };
      if (f.report !== undefined) await writeReport(run, f.report);
      if (f.json) process.stdout.write(JSON.stringify(run) + '\n');
      else {
        process.stdout.write(renderTable(run));
        if (f.report !== undefined) process.stdout.write(`report: ${f.report}\n`);
      }
    } catch (e) {
      if (interrupted) {
        process.stderr.write(`rawpoll: rfc2544 interrupted (${interrupted}): no result\n`);
        process.exitCode = SIGNAL_EXIT[interrupted];
        return;
      }
      throw e;
    } finally {
      unlisten();
      await client.end().catch(() => {});
      if (blaster) await blaster.close().catch(() => blaster!.abort());
    }
  });
}

/** `[k/n] size 512 rate 123456 pps: sent S, received R, loss L%` — one per trial, on stderr. */
export function progressLine(t: Trial, k: number, n: number): string {
  const burst = t.burst !== null ? ` burst ${t.burst}` : '';
  const own = t.ownDrops > 0 ? `; the sink dropped ${t.ownDrops} itself: trial not trusted` : '';
  return `[${k}/${n}] size ${t.size} rate ${Math.round(t.ratePps)} pps${burst}: sent ${t.sent}, received ${t.received}, loss ${fmtPct(t.lossPct)}%${own}`;
}

function fmtPct(x: number): string {
  return x === 0 ? '0' : x < 0.01 ? x.toPrecision(2) : x.toFixed(2);
}

function table(head: string[], rows: (string | number)[][]): string {
  const cells = [head, ...rows.map((r) => r.map(String))];
  const w = head.map((_, i) => Math.max(...cells.map((r) => r[i].length)));
  return cells.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ')).join('\n') + '\n';
}

/** The terminal's summary of a run. */
export function renderTable(run: Rfc2544Run): string {
  const out: string[] = [`RFC 2544 ${run.test} on ${run.iface} to ${run.to}: ${run.trials.length} trials of ${run.trialSeconds} s; sizes without FCS\n`];
  if (run.throughput && run.test !== 'latency') {
    out.push(table(['size', 'throughput pps', 'line Mbit/s', 'loss %'],
      run.throughput.map((r) => [r.size, Math.round(r.ratePps), r.lineMbps.toFixed(2), fmtPct(r.lossPct)])));
  }
  if (run.frameLoss) {
    out.push(table(['size', 'offered %', 'rate pps', 'loss %'], run.frameLoss.map((r) => [r.size, r.offeredPct, r.ratePps, fmtPct(r.lossPct)])));
  }
  if (run.latency) {
    out.push(table(['size', 'rate pps', 'min µs', 'p50 µs', 'p99 µs', 'max µs', 'clock'],
      run.latency.map((r) => [r.size, Math.round(r.ratePps), r.latencyUs.min, r.latencyUs.p50, r.latencyUs.p99, r.latencyUs.max, r.clock])));
  }
  if (run.backToBack) {
    out.push(table(['size', 'burst frames (mean)', 'min', 'max', 'repeats', 'buffer µs'],
      run.backToBack.map((r) => [r.size, r.meanFrames, Math.min(...r.frames), Math.max(...r.frames), r.frames.length, r.bufferTimeUs ?? '-'])));
  }
  for (const n of run.notes ?? []) out.push(`note: ${n}\n`);
  return out.join('\n');
}
