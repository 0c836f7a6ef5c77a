import { Command } from 'commander';
import { closeSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import net from 'node:net';
import { LinkGoneError, RuntimeError, UsageError } from '../errors.js';
import { DEFAULT_MAX_FLOWS, parseIpv6, Sink, type FlowReport, type IntervalReport, type SinkReport } from '../rx/sink.js';
import { TIMESTAMP_SOURCES, type TimestampSource } from '../rx/engine.js';
import { MAX_TOKEN_CHARS, SERVE_DEFAULTS, TrialServer } from '../rx/serve.js';
import { MetricsServer, ReceiverMetrics, parseMetricsAddress, serveMetrics } from '../rx/metrics.js';
import { parseIpv4, parsePort } from '../wire/addr.js';
import { addDropOption, eventWriter, interruptedExitCode, intArg, onStopSignal, relinquishPrivileges, reportLinkEvents, type StopSignal } from './common.js';

interface SinkFlags {
  port: string;
  bind?: string;
  duration?: string;
  count?: string;
  idle?: string;
  capture?: boolean;
  iface?: string;
  expect?: string;
  midStream?: boolean;
  rcvbuf?: string;
  bufferSize?: string;
  maxFlows?: string;
  timestamp: string;
  interval?: string;
  jsonStream?: boolean;
  histogram?: string;
  json?: boolean;
  serve?: string;
  token?: string;
  tokenFile?: string;
  maxClients?: string;
  maxTrials?: string;
  maxTrialSeconds?: string;
  controlTimeout?: string;
  metrics?: string;
}

function secondsArg(v: string | undefined, what: string): number | undefined {
  if (v === undefined) return undefined;
  const n = /^\d+(\.\d+)?$/.test(v.trim()) ? Number(v) : NaN;
  if (!(n > 0 && n <= 86400 * 365)) throw new UsageError(`bad ${what} '${v}': expected seconds > 0, like 10 or 0.5`);
  return n;
}

export function register(program: Command): void {
  const cmd = program
    .command('sink')
    .summary('count pktgen/blast test traffic: loss, duplicates, reordering, rate, inter-arrival, latency')
    .description('Receive UDP datagrams carrying the pktgen test header (magic 0xbe9be955, seq, tv_sec, tv_usec: what ' +
      '`rawpoll blast` and Linux pktgen send) and account for each flow (src ip:port -> dst port): received, lost ' +
      '(gaps in seq, counted from seq 1 unless --mid-stream), duplicates, reordered, first/last seq, rate, ' +
      'inter-arrival p50/p99, and one-way latency (receive wall clock minus the sender\'s timestamp: meaningful only ' +
      'when the clocks are synced, e.g. PTP-disciplined hosts or namespaces on one host).')
    .option('-p, --port <PORT>', 'UDP destination port to count (pktgen\'s default)', '9')
    .option('--bind <IP>', 'only datagrams to this local IPv4 or IPv6 address (socket: bind address; capture: dst host). ' +
      'Without it the socket is dual-stack: one IPv6 socket on :: that takes IPv4 too (IPV6_V6ONLY off; IPv4 only on a ' +
      'kernel without IPv6, and the report says so)')
    .option('-d, --duration <S>', 'stop after S seconds')
    .option('-c, --count <N>', 'stop after N test datagrams')
    .option('--idle <S>', 'stop S seconds after the last datagram (once traffic has started)')
    .option('--capture', 'receive with libpcap on -i IF instead of a UDP socket (needs root)')
    .option('-i, --iface <IF>', 'interface to capture on (--capture), or the only one the socket takes datagrams from ' +
      '(SO_BINDTODEVICE; --timestamp hw needs it)')
    .option('--timestamp <CLOCK>', 'what times each datagram: kernel (its receive stamp), hw (the NIC\'s, where it has ' +
      'them; else it says so and uses kernel) or user (when the receive thread read it)', 'kernel')
    .option('--interval <S>', 'print a row every S seconds: rate, loss, reordering, latency p50/p99 of that interval')
    .option('--json-stream', 'write newline-delimited JSON events to stdout: start, one per --interval, end (the report)')
    .option('--histogram <FILE>', 'write the run\'s latency and inter-arrival histograms (HdrHistogram, compressed ' +
      'base64, in JSON) to FILE, to merge with other sinks\' runs')
    .option('--expect <N>', 'datagrams the sender sent per flow: a lost tail then counts as loss')
    .option('--mid-stream', 'the sender was already running: count loss from the first seq seen, not from seq 1')
    .option('--rcvbuf <BYTES>', 'socket receive buffer to ask for (as root SO_RCVBUFFORCE grants it; otherwise the kernel ' +
      'caps it at net.core.rmem_max)', String(32 << 20))
    .option('-B, --buffer-size <MiB>', '--capture: libpcap ring size in MiB (as tcpdump -B, but MiB)', '64')
    .option('--max-flows <N>', 'keep accounts for at most N flows (src ip:port), so spoofed sources cannot exhaust ' +
      'memory (a flow costs ~1 KB, ~25 KB once it has latency and inter-arrival histograms). With N flows ' +
      'kept, a new flow replaces the oldest that has had only one datagram, 100 ms or more ago (counted as ' +
      '"flows-evicted": forged sources send one each); with none such, the new flow\'s datagrams are counted as ' +
      '"flows-over-budget", not accounted', String(DEFAULT_MAX_FLOWS))
    .option('--json', 'print one JSON object with the report (every flow within --max-flows); with --serve, JSON lines: ' +
      'serving, then one per trial opened and closed, then stopped')
    .option('--serve <[IP:]PORT>', 'run as a trial server: a tester (rawpoll rfc2544) opens, polls and closes trials over ' +
      'a TCP control channel on PORT (all addresses, as iperf3 -s) or IP:PORT (that address only); runs until SIGINT/SIGTERM')
    .option('--token <T>', '--serve: a client\'s hello must carry this shared secret (compared in constant time)')
    .option('--token-file <F>', '--serve: the shared secret is the first line of F (keeps it out of ps)')
    .option('--max-clients <N>', `--serve: control connections at once (default ${SERVE_DEFAULTS.maxClients})`)
    .option('--max-trials <N>', `--serve: trials open at once, over all clients (default ${SERVE_DEFAULTS.maxTrials})`)
    .option('--max-trial-seconds <S>', `--serve: a trial's longest life; then it stops counting and its report waits for the ` +
      `client's close (default ${SERVE_DEFAULTS.maxTrialSeconds})`)
    .option('--control-timeout <S>', `--serve: close a control connection silent for S seconds, and its trials ` +
      `(default ${SERVE_DEFAULTS.idleSeconds})`)
    .option('--metrics <[IP:]PORT>', '--serve: Prometheus metrics of every trial at http://IP:PORT/metrics (no IP: every ' +
      'address): rawpoll_datagrams_received_total, _bytes_received_total, _drops_total{reason}, _socket_drops_total, ' +
      '_hosts_seen, _sink_trials_total, _sink_trials_open, _sink_clients');
  cmd.addHelpText('after', '\nWhich receive path (both read on a thread of their own and hand over batches):\n' +
    '  socket (default)  a kernel UDP socket read with recvmmsg, 64 datagrams a call, with a 32 MiB buffer\n' +
    '                    (--rcvbuf; as root SO_RCVBUFFORCE lifts net.core.rmem_max\'s cap). No privileges needed\n' +
    '                    above port 1023.\n' +
    '  --capture -i IF   libpcap on the interface (TPACKET_V3 ring of -B MiB, nanosecond timestamps; root): frames\n' +
    '                    are taken before the UDP stack. The kernel still sees the datagrams and, with no socket on\n' +
    '                    the port, answers some with ICMP port unreachable (rate-limited). With GRO/GSO/TSO on\n' +
    '                    (veth and most NICs) libpcap sizes ring slots for 64 KiB: for long bursts turn them off\n' +
    '                    on the receiving interface, ethtool -K IF gro off gso off tso off.\n' +
    'Clocks (--timestamp; every report names the one used):\n' +
    '  kernel  the kernel\'s receive timestamp (CLOCK_REALTIME, SO_TIMESTAMPNS or libpcap\'s): when the datagram entered\n' +
    '          the stack, whatever the sink was doing then. Inter-arrival gaps are the wire\'s, as tcpdump sees them.\n' +
    '  hw      the NIC\'s own receive timestamp (SO_TIMESTAMPING raw hardware; needs -i IF; it enables the NIC\'s\n' +
    '          receive timestamping). An interface without it (veth, most virtual NICs) falls back to kernel and\n' +
    '          says so. Latency then needs the NIC clock synced to the system clock (phc2sys).\n' +
    '  user    when the receive thread read the datagram: includes the time it waited in the socket.\n' +
    'One-way latency is that receive time minus the sender\'s tv_sec/tv_usec: meaningful when the clocks are synced\n' +
    '(PTP-disciplined hosts, or namespaces of one host); the sender stamps in µs.\n' +
    'Loss is split in the report: seq gaps the sink never saw, of which "own" the sink itself dropped (its socket\'s\n' +
    'overflow count, or its capture ring\'s), and "network" the rest. With own = 0 the network figure is exact; with\n' +
    'own > 0 the report says so and the network loss is at least the figure given.\n' +
    'A link outage does not stop a capture: link-down/link-up events are printed and it resumes; if the interface\n' +
    'disappears the report is printed and the exit code is 1.\n' +
    `The text report lists the ${REPORT_ROWS} flows that received most, then says how many more there are (--json lists all).\n` +
    `A seq step of more than 2^24 either way (or a first seq more than 2^24 past 1) is a sender restart or a forged\n` +
    'datagram, not loss: it is counted as a seq jump, the flow resynchronises on the new seq, and loss is counted on\n' +
    'either side of it.\n' +
    '\nExamples:\n' +
    '  rawpoll sink --port 9 --duration 10\n' +
    '  rawpoll sink --bind 10.0.0.2 --count 100000 --json\n' +
    '  rawpoll sink --bind 2001:db8::2 --duration 10         # IPv6 only on that address (flows print as [IP]:PORT)\n' +
    '  sudo rawpoll sink --capture -i eth1 --port 9 --idle 2      # line-rate blasts\n' +
    '  rawpoll sink --interval 1 --json-stream > run.ndjson        # one event a second, then the report\n' +
    '  rawpoll sink --duration 30 --histogram a.hist.json          # merge later with other sinks\' files\n' +
    '  (on the sender) sudo rawpoll blast -i eth1 --to 10.0.0.2:9 --count 100000\n' +
    '  rawpoll sink --serve 10.0.0.2:5201 --token-file /etc/rawpoll.token   # trials for rawpoll rfc2544 --control\n\n' +
    'Trial server (--serve): one JSON object per line each way over TCP (README, "sink --serve"): hello (with the token),\n' +
    'open {port, expect?, midStream?, timestamp?} -> trial, status {trial} -> counts, close {trial} -> the report and\n' +
    'its histograms, bye. Bounds: --max-clients, --max-trials, --max-trial-seconds, --control-timeout, 10 s to say\n' +
    'hello, 64 KiB a request line; a bad request gets an error reply and never stops the server. A client\'s trials\n' +
    'close when it says bye or disconnects. --bind, -i, --capture, --timestamp, --rcvbuf, -B and --max-flows apply to\n' +
    'every trial; --port, --expect and --mid-stream come from each open request instead.\n\n' +
    'Stops on --duration, --count, --idle, or Ctrl-C (SIGINT/SIGTERM: reason "interrupted"), then prints the report.\n' +
    'Exit codes: 0 report printed (also when a signal stopped a sink with no --count/--duration/--idle),\n' +
    '1 runtime failure (port in use, no permission), 2 bad usage, 130 (SIGINT) or 143 (SIGTERM) when a signal cut\n' +
    'short a run with --count, --duration or --idle (after printing the report). --serve runs until SIGINT/SIGTERM,\n' +
    'closes the open trials and exits 0; 1 when it cannot listen or open the receive path.');
  addDropOption(cmd, 'once the socket or capture is open (not with --serve: each trial opens its own)', { conflicts: 'serve' });
  cmd.action(async (f: SinkFlags, c: Command) => {
    if (f.serve !== undefined) return serve(f, c);
    for (const [flag, v] of SERVE_ONLY) {
      if (f[v] !== undefined) throw new UsageError(`${flag} is a --serve flag: add --serve [IP:]PORT, or drop ${flag}`);
    }
    const port = parsePort(f.port, '--port');
    if (port === 0) throw new UsageError("bad --port '0': expected a UDP port number 1-65535");
    if (f.capture && !f.iface) throw new UsageError('--capture needs the interface to capture on: add -i IF');
    if (!TIMESTAMP_SOURCES.includes(f.timestamp as TimestampSource)) {
      throw new UsageError(`bad --timestamp '${f.timestamp}': expected ${TIMESTAMP_SOURCES.join(', ')}`);
    }
    if (f.json && f.jsonStream) throw new UsageError('--json and --json-stream are two output formats: pick one (--json-stream ends with the report)');
    const interval = secondsArg(f.interval, '--interval');
    const histogramFd = f.histogram !== undefined ? openOutput(f.histogram, '--histogram') : null;
    const json = f.json || f.jsonStream;
    const intervals: IntervalReport[] = [];
    const onInterval = (r: IntervalReport) => {
      if (f.jsonStream) process.stdout.write(JSON.stringify({ event: 'interval', ...r }) + '\n');
      else if (f.json) intervals.push(r);
      else process.stdout.write((intervals.length === 0 ? INTERVAL_HEADER + '\n' : '') + formatInterval(r) + '\n');
      if (!f.jsonStream && !f.json) intervals.push(r);
    };
    const sink = new Sink({
      port,
      bind: f.bind !== undefined && !f.bind.includes(':') ? parseIpv4(f.bind, '--bind') : undefined,
      bind6: f.bind !== undefined && f.bind.includes(':') ? parseIpv6(f.bind, '--bind') : undefined,
      capture: f.capture ? { iface: f.iface!, bufferBytes: intArg(f.bufferSize, '--buffer-size', 1, 4096)! * (1 << 20) } : undefined,
      iface: f.capture ? undefined : f.iface,
      timestamp: f.timestamp as TimestampSource,
      duration: secondsArg(f.duration, '--duration'),
      count: intArg(f.count, '--count', 1, Number.MAX_SAFE_INTEGER),
      idle: secondsArg(f.idle, '--idle'),
      expect: intArg(f.expect, '--expect', 1, 2 ** 32 - 1),
      midStream: f.midStream,
      rcvbuf: intArg(f.rcvbuf, '--rcvbuf', 4096, 2 ** 31 - 1),
      maxFlows: intArg(f.maxFlows, '--max-flows', 1, 10_000_000),
      interval,
      onInterval: interval !== undefined ? onInterval : undefined,
    });
    try {
      await sink.start();
    } catch (e) {
      if (histogramFd !== null) closeSync(histogramFd);
      throw e;
    }
    await relinquishPrivileges(c.getOptionValue('relinquishPrivileges'), () => sink.stop('interrupted'));
    const r0 = sink.report();
    const host = r0.bind ?? (r0.family === 'dual' ? '::' : r0.family === 'ipv4' ? '0.0.0.0' : '*');
    const where = `UDP ${host.includes(':') ? `[${host}]` : host}:${port}${r0.family === 'dual' && r0.bind === null ? ' (IPv6 and IPv4)' : ''} via ` +
      (r0.mode === 'capture' ? `libpcap on ${r0.iface}` : `a socket (rcvbuf ${r0.rcvbufBytes} bytes${r0.rcvbufForced ? '' : ', capped by net.core.rmem_max'})`);
    // The fallback first: "listening on" is the line scripts wait for before they send.
    if (r0.timestampWarning) process.stderr.write(`rawpoll sink: --timestamp ${f.timestamp}: ${r0.timestampWarning}\n`);
    if (r0.familyWarning) process.stderr.write(`rawpoll sink: ${r0.familyWarning}\n`);
    process.stderr.write(`rawpoll sink: listening on ${where}; clock: ${r0.clock}\n`);
    if (f.jsonStream) {
      process.stdout.write(JSON.stringify({
        event: 'start', at: new Date().toISOString(), mode: r0.mode, port, bind: r0.bind, iface: r0.iface, timestamp: r0.timestamp,
        clock: r0.clock, timestampWarning: r0.timestampWarning, rcvbufBytes: r0.rcvbufBytes, interval: interval ?? null,
      }) + '\n');
    }
    // The link-state policy (README): a capture keeps running across an outage and reports it; a vanished interface
    // ends the run with the report, then exit 1.
    const offLink = sink.watch ? reportLinkEvents(sink.watch, eventWriter('sink', json)) : () => {};
    let interrupted = null as StopSignal | null;
    const unlisten = onStopSignal((sig) => {
      interrupted = sig;
      void sink.stop('interrupted');
    });
    let live: NodeJS.Timeout | null = null;
    if (process.stderr.isTTY && !json && interval === undefined) {
      let lastN = 0;
      live = setInterval(() => {
        const t = sink.accounting.counts();
        process.stderr.write(`\r${t.received} received, ${t.lost} lost, ${t.duplicates} dup, ${t.reordered} reordered, ${t.received - lastN} pps   `);
        lastN = t.received;
      }, 1000);
    }
    const report = await sink.done;
    if (live) {
      clearInterval(live);
      process.stderr.write('\r\x1b[K');
    }
    unlisten();
    offLink();
    if (histogramFd !== null) {
      writeSync(histogramFd, JSON.stringify(sink.histograms()) + '\n');
      closeSync(histogramFd);
    }
    const sig = report.reason === 'interrupted' ? interrupted : null; // a signal after the sink had ended changes nothing
    if (f.jsonStream) process.stdout.write(JSON.stringify({ event: 'end', ...report, interrupted: sig }) + '\n');
    else if (f.json) process.stdout.write(JSON.stringify({ ...report, ...(interval !== undefined ? { intervals } : {}), interrupted: sig }) + '\n');
    else process.stdout.write((intervals.length ? '\n' : '') + formatReport(sig ? { ...report, reason: `interrupted (${sig})` } : report));
    if (sig) process.exitCode = interruptedExitCode(sig, f.count !== undefined || f.duration !== undefined || f.idle !== undefined);
    if (report.iface && report.reason === `interface ${report.iface} disappeared`) throw new LinkGoneError(report.iface);
  });
}

/** Flags that only mean something to a trial server. */
const SERVE_ONLY: [string, keyof SinkFlags][] = [
  ['--token', 'token'], ['--token-file', 'tokenFile'], ['--max-clients', 'maxClients'], ['--max-trials', 'maxTrials'],
  ['--max-trial-seconds', 'maxTrialSeconds'], ['--control-timeout', 'controlTimeout'], ['--metrics', 'metrics'],
];

/** A single run's flags, which a trial server takes from each open request or has no use for. */
const SINGLE_RUN: [string, keyof SinkFlags, string][] = [
  ['--count', 'count', 'a trial ends when its client closes it'],
  ['--duration', 'duration', 'a trial ends when its client closes it (--max-trial-seconds bounds it)'],
  ['--idle', 'idle', 'a trial ends when its client closes it'],
  ['--interval', 'interval', 'clients poll a trial with status'],
  ['--json-stream', 'jsonStream', 'with --serve, --json logs one event per trial'],
  ['--histogram', 'histogram', 'each trial\'s histograms go to its client in the close reply'],
  ['--port', 'port', 'each open request names its port'],
  ['--expect', 'expect', 'each open request carries its expect'],
  ['--mid-stream', 'midStream', 'each open request carries its midStream'],
];

/** `--serve [IP:]PORT` → where to listen (no host: every address). IPv6 in brackets: [::1]:5201. */
export function parseServeAddress(v: string): { host?: string; port: number } {
  const t = v.trim();
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]:|([0-9.]+):)?(\d{1,5})$/.exec(t);
  const bad = () => new UsageError(`bad --serve '${v}': expected PORT (every address) or IP:PORT (that address only), like 5201, ` +
    '10.0.0.2:5201 or [::1]:5201; PORT 0-65535 (0: a free one, printed)');
  if (!m) throw bad();
  const host = m[1] ?? m[2];
  const port = Number(m[3]);
  if (port > 65535) throw bad();
  if (host !== undefined && net.isIP(host) === 0) throw bad();
  return { host, port };
}

function readToken(f: SinkFlags): string | undefined {
  if (f.token !== undefined && f.tokenFile !== undefined) throw new UsageError('--token and --token-file both give the secret: pick one');
  let t = f.token;
  if (f.tokenFile !== undefined) {
    try {
      t = readFileSync(f.tokenFile, 'utf8').split('\n')[0].replace(/\r$/, '');
    } catch (e) {
      throw new UsageError(`cannot read --token-file '${f.tokenFile}': ${(e as Error).message}`);
    }
    if (!t) throw new UsageError(`--token-file '${f.tokenFile}': its first line is empty; put the secret there`);
  }
  if (t !== undefined && !t) throw new UsageError('empty --token: give the shared secret, or leave --token out');
  if (t !== undefined && t.length > MAX_TOKEN_CHARS) throw new UsageError(`--token of ${t.length} characters: at most ${MAX_TOKEN_CHARS}`);
  return t;
}

/** `rawpoll sink --serve`: a trial server until SIGINT/SIGTERM (exit 0 then: being stopped is how it ends). */
async function serve(f: SinkFlags, c: Command): Promise<void> {
  for (const [flag, k, why] of SINGLE_RUN) {
    const given = k === 'port' ? c.getOptionValueSource('port') === 'cli' : f[k] !== undefined;
    if (given) throw new UsageError(`--serve and ${flag} conflict: ${why}; drop ${flag}`);
  }
  const where = parseServeAddress(f.serve!);
  if (f.capture && !f.iface) throw new UsageError('--capture needs the interface to capture on: add -i IF');
  if (!TIMESTAMP_SOURCES.includes(f.timestamp as TimestampSource)) {
    throw new UsageError(`bad --timestamp '${f.timestamp}': expected ${TIMESTAMP_SOURCES.join(', ')}`);
  }
  const token = readToken(f);
  const metricsAt = f.metrics !== undefined ? parseMetricsAddress(f.metrics) : undefined;
  const ev = eventWriter('sink', f.json);
  const server = new TrialServer({
    host: where.host,
    port: where.port,
    token,
    trial: {
      bind: f.bind !== undefined && !f.bind.includes(':') ? parseIpv4(f.bind, '--bind') : undefined,
      bind6: f.bind !== undefined && f.bind.includes(':') ? parseIpv6(f.bind, '--bind') : undefined,
      capture: f.capture ? { iface: f.iface!, bufferBytes: intArg(f.bufferSize, '--buffer-size', 1, 4096)! * (1 << 20) } : undefined,
      iface: f.capture ? undefined : f.iface,
      timestamp: f.timestamp as TimestampSource,
      rcvbuf: intArg(f.rcvbuf, '--rcvbuf', 4096, 2 ** 31 - 1),
      maxFlows: intArg(f.maxFlows, '--max-flows', 1, 10_000_000),
    },
    limits: {
      maxClients: intArg(f.maxClients, '--max-clients', 1, 1024),
      maxTrials: intArg(f.maxTrials, '--max-trials', 1, 1024),
      maxTrialSeconds: secondsArg(f.maxTrialSeconds, '--max-trial-seconds'),
      idleSeconds: secondsArg(f.controlTimeout, '--control-timeout'),
    },
    onEvent: (e) => {
      switch (e.event) {
        case 'trial-opened':
          ev({ ...e, at: new Date().toISOString() }, `trial ${e.trial} opened by ${e.client}: UDP port ${e.port}` +
            (e.expect !== null ? `, expect ${e.expect}` : ''));
          break;
        case 'trial-closed': {
          const t = e.report.totals;
          ev({ ...e, at: new Date().toISOString() }, `trial ${e.trial} of ${e.client} closed (${e.reason}): UDP port ${e.port}, ` +
            `${t.received} received, ${t.lost} lost, ${t.duplicates} dup, ${t.reordered} reordered in ${e.report.seconds} s`);
          break;
        }
        // Connections are diagnostics, not results: stderr, whatever the output format.
        case 'client-refused':
          process.stderr.write(`rawpoll sink: refused ${e.client}: ${e.why}\n`);
          break;
        case 'client-connected':
          if (!f.json) process.stderr.write(`rawpoll sink: ${e.client} connected (${e.clients} of ${server.limits.maxClients})\n`);
          break;
        case 'client-closed':
          if (!f.json) process.stderr.write(`rawpoll sink: ${e.client} gone (${e.why})\n`);
          break;
      }
    },
  });
  // Shutdown is armed before listening: a signal during start-up still stops cleanly.
  let sig: StopSignal | null = null;
  let wake = () => {};
  const stopped = new Promise<void>((res) => (wake = res));
  const unlisten = onStopSignal((s) => {
    sig = s;
    wake();
  });
  let metrics: MetricsServer | null = null;
  try {
    if (metricsAt) {
      // Bound first: a --metrics port in use fails the start (exit 1) before "serving trials".
      const m = new ReceiverMetrics();
      serveMetrics(m, () => server);
      metrics = await MetricsServer.start(m, metricsAt);
    }
    const a = await server.start();
    const shown = a.address.includes(':') ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
    // With --json, readiness is a line on stdout too, so a script need not read stderr's text to know it may start.
    if (f.json) {
      process.stdout.write(JSON.stringify({
        event: 'serving', at: new Date().toISOString(), control: shown, mode: server.mode, iface: server.mode === 'capture' ? f.iface ?? null : null,
        clock: server.clock, token: token !== undefined,
      }) + '\n');
    }
    process.stderr.write(`rawpoll sink: serving trials on ${shown} (${server.mode}` +
      `${server.mode === 'capture' ? ` on ${f.iface}` : ''}; clock: ${server.clock}` +
      `${token !== undefined ? '; token required' : ''})\n`);
    if (server.clockWarning) process.stderr.write(`rawpoll sink: --timestamp ${f.timestamp}: ${server.clockWarning}\n`);
    await stopped;
  } finally {
    await server.stop();
    await metrics?.close();
    unlisten();
  }
  const n = server.trialsServed;
  if (f.json) process.stdout.write(JSON.stringify({ event: 'stopped', at: new Date().toISOString(), interrupted: sig, trials: n }) + '\n');
  process.stderr.write(`rawpoll sink: stopped serving (${sig}): ${n} trial${n === 1 ? '' : 's'} served\n`);
}

/**
 * Opens FILE for writing before anything listens (so a bad path fails first): a directory is refused, a FIFO or device
 * is written into, a regular file is created or truncated.
 */
function openOutput(file: string, what: string): number {
  try {
    if (statSync(file).isDirectory()) throw new UsageError(`bad ${what} '${file}': it is a directory; give a file name`);
  } catch (e) {
    if (e instanceof UsageError) throw e;
  }
  try {
    return openSync(file, 'w');
  } catch (e) {
    throw new RuntimeError(`cannot write ${what} '${file}': ${(e as Error).message}`);
  }
}

const INTERVAL_HEADER = 'INTERVAL s         RECEIVED       PPS     LOST   REORD   LATENCY p50/p99 us   GAP p50/p99 us';

/** One --interval row (the header above names the columns). */
export function formatInterval(r: IntervalReport): string {
  const pair = (x: { p50: number; p99: number } | null) => (x ? `${x.p50}/${x.p99}` : '-');
  return `${`${r.start.toFixed(3)}-${r.end.toFixed(3)}`.padEnd(17)} ${String(r.received).padStart(9)} ${String(r.pps).padStart(9)} ` +
    `${String(r.lost).padStart(8)} ${String(r.reordered).padStart(7)} ${pair(r.latencyUs).padStart(20)} ${pair(r.interArrivalUs).padStart(16)}`;
}

/** Flow rows in the text report; the rest are summed up in one line. */
export const REPORT_ROWS = 50;

/**
 * The human report: one row per flow (the `rows` that received most, then a line for the rest), then totals and the
 * socket's own drops. Never throws for many flows (column widths are a loop, not Math.max(...rows)).
 */
export function formatReport(r: SinkReport, rows = REPORT_ROWS): string {
  const table: string[][] = [['FLOW', 'RECEIVED', 'LOST', 'DUP', 'REORD', 'SEQ', 'PPS', 'Mbit/s', 'GAP p50/p99 us', 'LATENCY p50/p99 us']];
  const n = (x: number) => (Number.isFinite(x) ? String(x) : '-');
  const shown: FlowReport[] = r.flows.length <= rows ? r.flows : r.flows.slice().sort((a, b) => b.received - a.received).slice(0, rows);
  for (const f of shown) {
    table.push([
      `${f.src} -> ${f.dst}`, String(f.received), String(f.lost), String(f.duplicates), String(f.reordered),
      `${f.firstSeq}-${f.lastSeq}`, String(f.pps), String(f.payloadMbps),
      f.interArrivalUs ? `${n(f.interArrivalUs.p50)}/${n(f.interArrivalUs.p99)}` : '-',
      f.latencyUs ? `${n(f.latencyUs.p50)}/${n(f.latencyUs.p99)}` : '-',
    ]);
  }
  const widths = table[0].map(() => 0);
  for (const row of table) row.forEach((c, i) => { if (c.length > widths[i]) widths[i] = c.length; });
  const lines = table.map((row) => row.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ').trimEnd());
  const more = r.flows.length - shown.length;
  if (more > 0) {
    let received = 0;
    for (const f of r.flows) received += f.received;
    for (const f of shown) received -= f.received;
    lines.push(`... and ${more} more flow${more === 1 ? '' : 's'} (${received} received; --json lists them all)`);
  }
  const t = r.totals;
  const lossPct = t.unique + t.lost > 0 ? ((100 * t.lost) / (t.unique + t.lost)).toFixed(3) : '0.000';
  const over = t.refused['flows-over-budget'];
  lines.push('');
  lines.push(`${r.flows.length} flow${r.flows.length === 1 ? '' : 's'}, ${t.received} received, ${t.lost} lost (${lossPct}%), ${t.duplicates} duplicate${t.duplicates === 1 ? '' : 's'}, ` +
    `${t.reordered} reordered in ${r.seconds} s (stopped: ${r.reason})` + (t.nonPktgen ? `; ${t.nonPktgen} datagram${t.nonPktgen === 1 ? '' : 's'} without the pktgen header ignored` : ''));
  if (t.seqJumps) {
    lines.push(`${t.seqJumps} seq jump${t.seqJumps === 1 ? '' : 's'} (a step of more than 2^24: sender restarts or forged datagrams; not counted as loss)`);
  }
  if (over) {
    lines.push(`warning: ${over} datagram${over === 1 ? '' : 's'} not accounted (flows-over-budget): more than --max-flows ${r.maxFlows} flows; raise --max-flows`);
  }
  const evicted = t.refused['flows-evicted'];
  if (evicted) {
    lines.push(`warning: ${evicted} one-datagram flow${evicted === 1 ? '' : 's'} evicted to make room for new ones (flows-evicted; their datagrams are not in the totals): more than --max-flows ${r.maxFlows} sources, spoofed ones maybe`);
  }
  if (r.capture) {
    lines.push(`capture: ${r.capture.received} frames passed the filter, ${r.capture.dropped} dropped by our capture ring` +
      (r.capture.ifdropped ? `, ${r.capture.ifdropped} by the interface` : ''));
  }
  if (r.linkOutages) {
    lines.push(`link ${r.iface} went down ${r.linkOutages} time${r.linkOutages === 1 ? '' : 's'}, ${(r.linkDownMs / 1000).toFixed(2)} s in all: what was sent meanwhile counts as lost`);
  }
  const l = r.loss;
  lines.push(l.exact
    ? `loss: ${l.seqGaps} seq gaps, all of them the network's (the sink dropped nothing itself)`
    : `warning: loss: ${l.seqGaps} seq gaps, of which ${l.own} the sink's own (its ` +
      (r.mode === 'socket' ? `socket buffer overflowed, rcvbuf ${r.rcvbufBytes} bytes: raise --rcvbuf` : 'capture ring was full: raise -B') +
      `); the network lost at least ${l.network}`);
  lines.push(`clock: ${r.clock}` + (r.timestampWarning ? ` (${r.timestampWarning})` : ''));
  if (r.familyWarning) lines.push(`warning: ${r.familyWarning}`);
  return lines.join('\n') + '\n';
}
