/**
 * A userland netconsole (drivers/net/netconsole.c): messages from a line stream, a followed file or /dev/kmsg, each
 * formatted per target as the kernel's write_msg / write_ext_msg would (proto/netconsole.ts) and sent as UDP
 * datagrams to one target or several.
 *
 * Link outages (README, "When the link goes down"): a target whose link is down queues its datagrams (LinkQueue,
 * `linkQueue` per target, the oldest dropped and counted past it) and sends them when the link is back; a vanished
 * interface ends the run, and the summary says so (`gone`). Nothing is lost uncounted.
 *
 * `rawpoll netconsole` is flags and printing over runNetconsole.
 */
import type { Readable } from 'node:stream';
import { release as osRelease } from 'node:os';
import { LinkDownError, LinkGoneError, RuntimeError, UsageError } from '../errors.js';
import { WireError } from '../wire/error.js';
import { currentCpu, taskName } from '../host/hostinfo.js';
import type { LinkWatch } from '../link/watch.js';
import { NetconsoleFormatter, type NetconsoleFormatOptions } from '../proto/netconsole.js';
import { AddressError } from '../wire/addr.js';
import type { IpAddress } from '../wire/endpoint.js';
import { parseIpv6Addr } from '../wire/ipv6.js';
import { formatMac } from '../wire/mac.js';
import { LinkQueue } from './linkqueue.js';
import { UdpSender, type SenderOptions } from './sender.js';
import { followLines, kmsgRecords, streamLines } from './sources.js';

/** The kernel's sysdata fields, in the order it appends them (prepare_extradata). */
export const SYSDATA_FIELDS = ['cpu', 'taskname', 'release', 'msgid'] as const;
export type SysdataField = (typeof SYSDATA_FIELDS)[number];

export interface NetconsoleTargetOptions {
  sender: SenderOptions;
  /** The extended format (the kernel's '+'). */
  extended: boolean;
  /** Prepend the kernel release to every extended message (the kernel's 'r'). */
  release: boolean;
}

/** Where messages come from: lines of a stream (stdin), lines appended to a file (tail -F), or the kernel log. */
export type NetconsoleInput =
  | { kind: 'lines'; stream: Readable; name?: string }
  | { kind: 'follow'; path: string; fromStart?: boolean }
  | { kind: 'kmsg'; fromStart?: boolean };

/** One event line's content: the object for --json, and the human text. */
export type NetconsoleEvent = (e: Record<string, unknown>, human: string) => void;

export interface NetconsoleOptions {
  targets: NetconsoleTargetOptions[];
  input: NetconsoleInput;
  /** Level (0-7) of records made from lines in the extended format; default 6 (info). */
  level?: number;
  /** ` KEY=VALUE` lines appended to every extended message (configfs userdata). */
  userdata?: Array<[string, string]>;
  /** Sysdata fields appended to every extended message. */
  sysdata?: ReadonlySet<SysdataField> | null;
  /** Stop after this many messages. */
  count?: number;
  /** Datagrams kept per target while its link is down (default 1000). */
  linkQueue?: number;
  /** ready, kmsg-lost, follow-*, link-queue-flushed. */
  event?: NetconsoleEvent;
  /**
   * Called with each target's LinkWatch once the targets are open (to report its events), before the run's own
   * listeners; returns what to call at the end.
   */
  onLink?: (watch: LinkWatch) => (() => void) | void;
  /**
   * Subscribes to what may interrupt the run (SIGINT/SIGTERM in the CLI); returns the unsubscribe. Called once every
   * target is open: an interrupt then ends the run with a summary.
   */
  interrupt?: (stop: (reason: string) => void) => () => void;
}

export interface NetconsoleTargetSummary {
  dst: string;
  dstMac: string;
  datagrams: number;
  linkOutages: number;
  linkDownMs: number;
  queuedWhileDown: number;
  droppedQueueFull: number;
  notSentLinkDown: number;
}

export interface NetconsoleSummary {
  /** Why the run ended: 'end of input', 'count', the interrupt's reason, or 'interface IF disappeared'. */
  stopped: string;
  interrupted: string | null;
  messages: number;
  datagrams: number;
  payloadBytes: number;
  lostKmsgRecords: number;
  seconds: number;
  targets: NetconsoleTargetSummary[];
  /** The interface that disappeared and ended the run (the CLI exits 1 after the summary). */
  gone: string | null;
}

interface Target {
  sender: UdpSender;
  fmt: NetconsoleFormatter;
  extended: boolean;
  sent: number;
  /** Datagrams waiting for the link to come back. */
  queue: LinkQueue;
}

/** The formatter of each target: release, userdata and sysdata go to extended targets. */
function formatters(o: NetconsoleOptions): NetconsoleFormatter[] {
  const rel = osRelease();
  const sys = o.sysdata ?? null;
  return o.targets.map((t) => {
    const f: NetconsoleFormatOptions = { extended: t.extended, level: o.level ?? 6 };
    if (t.release) f.release = rel;
    if (t.extended) {
      if (o.userdata?.length) f.userdata = o.userdata;
      if (sys) {
        f.sysdata = {
          cpu: sys.has('cpu') ? currentCpu : undefined,
          taskname: sys.has('taskname') ? taskName() : undefined,
          release: sys.has('release') ? rel : undefined,
          msgid: sys.has('msgid'),
        };
      }
    } else if (o.userdata?.length || sys) {
      throw new UsageError('userdata/sysdata need the extended format (the kernel sends them only there)');
    }
    return new NetconsoleFormatter(f);
  });
}

/**
 * Runs until the input ends, `count` messages were sent, the interrupt fires or a target's interface disappears;
 * resolves with the summary. Datagrams still queued for a link that is down at the end are counted as not sent.
 */
export async function runNetconsole(o: NetconsoleOptions): Promise<NetconsoleSummary> {
  const fmts = formatters(o);
  const event: NetconsoleEvent = o.event ?? (() => {});
  const queueLimit = o.linkQueue ?? 1000;
  const targets: Target[] = [];
  try {
    for (let i = 0; i < o.targets.length; i++) {
      const t = o.targets[i];
      targets.push({ sender: await UdpSender.open(t.sender), fmt: fmts[i], extended: t.extended, sent: 0, queue: new LinkQueue(queueLimit) });
    }
  } catch (e) {
    for (const t of targets) t.sender.abort();
    throw e;
  }

  const ac = new AbortController();
  let stopReason = 'end of input';
  let interrupted = null as string | null;
  const unlisten = o.interrupt?.((reason) => {
    if (ac.signal.aborted) return; // already ending (count reached, interface gone): the interrupt changes nothing
    interrupted = reason;
    stopReason = reason;
    ac.abort();
  }) ?? (() => {});

  // The link-state policy: a target whose link is down queues and sends when it is back; a vanished interface ends
  // the run after the summary.
  let gone: string | null = null;
  const endGone = (iface: string) => {
    gone = gone ?? iface;
    stopReason = `interface ${iface} disappeared`;
    ac.abort();
  };
  const send = (t: Target, d: Buffer) => {
    t.sender.send(d);
    t.sent++;
  };
  const detach = targets.map((t) => {
    const link = t.sender.link;
    if (!link) return () => {};
    const flushOnUp = () => {
      if (t.queue.length && t.queue.flush((d) => send(t, d))) {
        event({ event: 'link-queue-flushed', iface: link.iface, sent: t.queue.queuedTotal - t.queue.dropped, dropped: t.queue.dropped },
          `link ${link.iface}: queued datagrams sent${t.queue.dropped ? `, ${t.queue.dropped} dropped (queue full)` : ''}`);
      }
    };
    // Queued datagrams go out before the link's 'up' is reported, and a 'gone' is reported before the run ends.
    link.watch.on('up', flushOnUp);
    const report = o.onLink?.(link.watch);
    const onGone = () => endGone(link.iface);
    link.watch.on('gone', onGone);
    return () => {
      report?.();
      link.watch.removeListener('up', flushOnUp);
      link.watch.removeListener('gone', onGone);
    };
  });
  const input = o.input;
  const source = input.kind === 'kmsg' ? 'kmsg' : input.kind === 'follow' ? `follow ${input.path}` : input.name ?? 'stdin';
  const ready = () => {
    const desc = targets.map((t) => {
      const d = t.sender.describe();
      return { src: d.src, dst: d.dst, dstMac: d.dstMac, via: d.via, resolver: t.sender.family === 6 ? 'NDP' : 'ARP',
        arpMs: t.sender.arpMs === null ? null : Math.round(t.sender.arpMs * 1000) / 1000, extended: t.extended,
        iface: t.sender.iface?.name ?? null };
    });
    event({ event: 'ready', source, targets: desc.map(({ resolver: _, ...d }) => d) },
      `${source} -> ${desc.map((d) => `${d.dst} [${d.dstMac}${d.arpMs === null ? '' : `, ${d.resolver} ${d.arpMs} ms`}]${d.extended ? ' extended' : ''}`).join(', ')}`);
  };

  const t0 = process.hrtime.bigint();
  const usecNow = () => Number((process.hrtime.bigint() - t0) / 1000n);
  let messages = 0;
  let datagrams = 0;
  let payloadBytes = 0;
  let lost = 0;
  const sendAll = (make: (t: Target) => Buffer[]) => {
    for (const t of targets) {
      for (const d of make(t)) {
        datagrams++;
        payloadBytes += d.length;
        if (t.queue.length === 0) {
          try {
            send(t, d);
            continue;
          } catch (e) {
            if (e instanceof LinkGoneError) return endGone(e.iface);
            if (!(e instanceof LinkDownError)) throw e;
          }
        }
        t.queue.push(d);
      }
    }
    messages++;
    if (o.count !== undefined && messages >= o.count) {
      stopReason = 'count';
      ac.abort();
    }
  };

  try {
    if (input.kind === 'kmsg') {
      const recs = kmsgRecords({
        fromStart: input.fromStart, signal: ac.signal, onReady: ready,
        onLost: (n, next) => {
          lost += n;
          event({ event: 'kmsg-lost', lost: n, nextSeq: next }, `kernel log overran us: ${n} record${n === 1 ? '' : 's'} lost before seq ${next}`);
        },
      });
      for await (const r of recs) {
        sendAll((t) => t.fmt.kmsg(r.raw, r.usec, r.text));
        if (ac.signal.aborted) break;
      }
    } else {
      const lines = input.kind === 'follow'
        ? followLines(input.path, {
          // "ready" once the follower has fixed its start: a line written after it is never taken for an old one.
          fromStart: input.fromStart, signal: ac.signal, onReady: ready,
          onEvent: (e) => event({ event: `follow-${e.kind}`, path: e.path }, `${e.path} ${e.kind}`),
        })
        : streamLines(input.stream, ac.signal);
      if (input.kind === 'lines') ready();
      for await (const line of lines) {
        const usec = usecNow();
        sendAll((t) => t.fmt.line(line, usec));
        if (ac.signal.aborted) break;
      }
    }
  } catch (e) {
    for (const t of targets) t.sender.abort();
    // Bad input (ours or a codec's) keeps its kind: exit 2; anything else is the world saying no: exit 1.
    throw e instanceof UsageError || e instanceof RuntimeError || e instanceof WireError ? e : new RuntimeError((e as Error).message);
  } finally {
    for (const off of detach) off();
    unlisten();
  }
  // What still waits for a link that did not come back before the end is not sent: counted, never silent.
  const unsent = targets.map((t) => t.queue.discard());
  const linkStats = targets.map((t) => t.sender.link?.watch).map((w) => ({
    outages: w?.outages ?? 0, downMs: w ? w.downMsTotal + (w.downSince !== null ? Date.now() - w.downSince : 0) : 0,
  }));
  for (const t of targets) await t.sender.close();
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  return {
    stopped: stopReason, interrupted, messages, datagrams, payloadBytes, lostKmsgRecords: lost,
    seconds: Math.round(seconds * 1000) / 1000,
    targets: targets.map((t, i) => ({
      dst: t.sender.describe().dst, dstMac: formatMac(t.sender.dstMac), datagrams: t.sent,
      linkOutages: linkStats[i].outages, linkDownMs: linkStats[i].downMs, queuedWhileDown: t.queue.queuedTotal,
      droppedQueueFull: t.queue.dropped, notSentLinkDown: unsent[i],
    })),
    gone,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// The config string with IPv6 addresses: netpoll_parse_options (net/core/netpoll.c) reads each address with
// netpoll_parse_ip_addr — in4_pton unless it holds a ':', else in6_pton — written bare, as in `@/,@fd00:1:2:3::1/`:
// the grammar's delimiters ('@', '/', ',') never occur in an IPv6 address, so the fields split as for IPv4. Both
// addresses must be of one family (netpoll_parse_options fails the string otherwise).
