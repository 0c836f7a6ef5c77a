import { readFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import { RuntimeError, UsageError } from '../errors.js';
import {
  NetoopsEncoder, NETOOPS_PORT, NETOOPS_RETRANSMIT_COUNT, NETOOPS_TYPE_OOPS, NETOOPS_TYPE_SOFT, NETOOPS_ARCH_X86,
  encodeUserBlob, netoopsTypeName,
} from '../proto/netoops.js';
import { readHostInfo, readKmsgSnapshot, bootIdFromUuid } from '../host/hostinfo.js';
import { OopsStateFile, decide, recordSent, parseRateLimit, type RateLimit } from '../tx/oopsstate.js';
import { UdpSender } from '../tx/sender.js';
import { parseEndpoint } from '../wire/addr.js';
import {
  addFrameOptions, addLinkOptions, interruptedExitCode, intArg, onStopSignal, senderOptionsFromFlags, type FrameFlags, type StopSignal,
} from './common.js';

interface OopsFlags extends FrameFlags {
  to?: string;
  log?: string;
  kmsg?: boolean;
  type: string;
  soft?: boolean;
  retransmit: string;
  gapUs: string;
  oneShot?: string;
  state?: string;
  rearm?: boolean;
  rateLimit?: string;
  bootId?: string;
  dumpId?: string;
  board?: string;
  firmware?: string;
  kernelVersion?: string;
  layout: string;
}

function parseBootId(s: string): number {
  const t = s.trim();
  if (/^0x[0-9a-f]{1,8}$/i.test(t)) return parseInt(t.slice(2), 16) >>> 0;
  if (/^\d+$/.test(t) && Number(t) <= 0xffffffff) return Number(t) >>> 0;
  try {
    return bootIdFromUuid(t);
  } catch {
    throw new UsageError(`bad --boot-id '${s}': expected a u32 (decimal or 0x hex) or a boot_id UUID`);
  }
}

/** Spin for short gaps (timers are ms-grained), sleep for long ones. */
async function gap(us: number): Promise<void> {
  if (us <= 0) return;
  if (us >= 2000) {
    await new Promise((r) => setTimeout(r, Math.round(us / 1000)));
    return;
  }
  const end = process.hrtime.bigint() + BigInt(us) * 1000n;
  while (process.hrtime.bigint() < end) { /* spin */ }
}

export function register(program: Command): void {
  const cmd = program
    .command('oops')
    .summary('send a netoops crash/diagnostic report (structured, 1024-byte chunks, newest first)')
    .description('Send a log as a netoops report (Google\'s never-merged kernel patch, v3 layout): fixed-size UDP datagrams\n' +
      'from port 2004 to port 2004, a little-endian header with the machine\'s specifics (kernel release, boot id,\n' +
      'CPU vendor/family/model/stepping, board and firmware from /sys/class/dmi/id in the user blob), 1024 bytes of\n' +
      'log each, newest chunk first (packet_no 0 = the tail), the whole set repeated --retransmit times (no ACKs).\n' +
      'arch is 2 on x86/x86-64 (CPU identity + zeroed registers: user space has no trap frame); any other machine\n' +
      'sends arch 0 with no arch data (data_offset = arch_offset).\n' +
      'Receive with `rawpoll collect --oops`.')
    .option('--to <IP[:PORT]>', `collector address (port default ${NETOOPS_PORT})`)
    .option('--log <FILE>', 'the log to send ("-" for standard input)')
    .option('--kmsg', 'send the current kernel log (/dev/kmsg, read to its end without waiting), as <level>[secs.usecs] lines')
    .addOption(new Option('--type <TYPE>', 'report type: soft (type 3, a diagnostic) or oops (type 1, a real crash)').choices(['soft', 'oops']).default('soft'))
    .option('--soft', 'same as --type soft')
    .option('--retransmit <N>', 'times the whole set is sent (the patch: 3)', String(NETOOPS_RETRANSMIT_COUNT))
    .option('--gap-us <US>', 'pause between datagrams in microseconds (the seed spaced packets to spare switch buffers)', '0')
    .option('--one-shot <FILE>', 'one-shot mode, state in FILE: an oops-type report goes out only if FILE says armed (missing = armed) and disarms it; soft reports never disarm')
    .option('--rearm', 're-arm the one-shot state file (alone, or before sending)')
    .option('--rate-limit <N/PERIOD>', 'at most N reports per PERIOD (e.g. 3/1h, 10/d, 5/600), counted in the state file')
    .option('--state <FILE>', 'state file for --rate-limit without --one-shot')
    .option('--boot-id <ID>', 'boot_id: u32 (decimal/0x hex) or a UUID (default: first 32 bits of /proc/sys/kernel/random/boot_id)')
    .option('--dump-id <N>', 'dump_id (default: seconds since boot & 0xffff, as the patch)')
    .option('--board <NAME>', 'board name for the user blob (default: /sys/class/dmi/id/board_name)')
    .option('--firmware <VER>', 'firmware version for the user blob (default: /sys/class/dmi/id/bios_version)')
    .option('--kernel-version <REL>', 'kernel_version field (default: uname -r)')
    .addOption(new Option('--layout <V>', 'header layout: v3 (default) or v2 (the v1 patch: SMBIOS strings in the header)').choices(['v2', 'v3']).default('v3'));
  addLinkOptions(cmd);
  addFrameOptions(cmd);
  cmd.addHelpText('after', '\nExamples:\n' +
    '  sudo rawpoll oops -i eth1 --to 10.0.0.9 --log dmesg.txt\n' +
    '  sudo rawpoll oops -i eth1 --to 10.0.0.9 --kmsg --soft --gap-us 200 --retransmit 3\n' +
    '  sudo rawpoll oops -i eth1 --to 10.0.0.9 --kmsg --type oops --one-shot /var/lib/rawpoll/armed\n' +
    '  rawpoll oops --one-shot /var/lib/rawpoll/armed --rearm\n' +
    '  sudo rawpoll oops -i eth1 --to 10.0.0.9 --log app.log --rate-limit 3/1h --state /var/lib/rawpoll/oops.state\n\n' +
    'A report held back by --one-shot or --rate-limit is not an error: exit 0, "sent": false in --json.\n' +
    'SIGINT/SIGTERM stop the sending: the summary says how many datagrams went out, and the state file is left as it\n' +
    'was (the report counts as not sent).\n' +
    'Exit codes: 0 done, 1 runtime failure (no ARP reply, no permission, state locked), 2 bad usage (nothing sent),\n' +
    '130 (SIGINT) or 143 (SIGTERM) interrupted before every datagram of every round was sent.');
  cmd.action(async (f: OopsFlags) => {
    const json = !!f.json;
    const print = (o: Record<string, unknown>, text: string) => process.stdout.write((json ? JSON.stringify(o) : text) + '\n');
    if (f.soft && f.type === 'oops' && cmd.getOptionValueSource('type') === 'cli') {
      throw new UsageError('--soft and --type oops contradict each other: choose one');
    }
    const soft = f.soft ? true : f.type === 'soft';
    const retransmit = intArg(f.retransmit, '--retransmit', 1, 100)!;
    const gapUs = intArg(f.gapUs, '--gap-us', 0, 10_000_000)!;
    const rate: RateLimit | undefined = f.rateLimit !== undefined ? parseRateLimit(f.rateLimit) : undefined;
    if (f.oneShot && f.state && f.oneShot !== f.state) throw new UsageError('--one-shot FILE and --state FILE name different files: the state lives in one file');
    const stateFile = f.oneShot ?? f.state;
    if (rate && !stateFile) throw new UsageError('--rate-limit needs a state file: add --one-shot FILE or --state FILE');
    if (f.rearm && !f.oneShot) throw new UsageError('--rearm needs --one-shot FILE (the file to re-arm)');
    if (f.log !== undefined && f.kmsg) throw new UsageError('give the log with --log FILE or --kmsg, not both');
    const haveLog = f.log !== undefined || !!f.kmsg;

    if (f.rearm) {
      const st = await OopsStateFile.lock(f.oneShot!);
      try {
        const s = st.read();
        st.write({ ...s, armed: true, disarmedAt: null });
      } finally {
        st.unlock();
      }
      if (!haveLog) {
        print({ rearmed: true, stateFile: f.oneShot }, `re-armed ${f.oneShot}`);
        return;
      }
    }
    if (!haveLog) throw new UsageError('no log: give --log FILE (or - for standard input) or --kmsg');
    if (!f.to) throw new UsageError('no collector: give --to IP[:PORT]');
    const to = parseEndpoint(f.to, '--to', NETOOPS_PORT);
    const opts = senderOptionsFromFlags(f);

    let log: Buffer;
    let kmsgInfo: { records: number; lost: number } | null = null;
    if (f.kmsg) {
      try {
        const k = readKmsgSnapshot();
        log = k.log;
        kmsgInfo = { records: k.records, lost: k.lost };
      } catch (e) {
        throw new RuntimeError(`cannot read /dev/kmsg: ${(e as Error).message} (needs root or CAP_SYSLOG)`);
      }
    } else {
      try {
        log = readFileSync(f.log === '-' ? 0 : f.log!);
      } catch (e) {
        throw new RuntimeError(`cannot read log ${f.log === '-' ? 'from standard input' : f.log}: ${(e as Error).message}`);
      }
    }
    if (log.length === 0) throw new UsageError(`the log ${f.kmsg ? '(/dev/kmsg)' : f.log} is empty: nothing to report`);

    const host = readHostInfo();
    const board = f.board ?? host.board ?? undefined;
    const firmware = f.firmware ?? host.firmware ?? undefined;
    const version = f.layout === 'v2' ? 2 : 3;
    const enc = new NetoopsEncoder({
      version,
      dumpId: f.dumpId !== undefined ? intArg(f.dumpId, '--dump-id', 0, 65535)! : host.uptimeSec & 0xffff,
      type: soft ? NETOOPS_TYPE_SOFT : NETOOPS_TYPE_OOPS,
      bootId: f.bootId !== undefined ? parseBootId(f.bootId) : host.bootId,
      kernelVersion: f.kernelVersion ?? host.kernelRelease,
      arch: host.arch,
      x86: host.arch === NETOOPS_ARCH_X86 && host.cpu ? { vendor: host.cpu.vendor, family: host.cpu.family, model: host.cpu.model, stepping: host.cpu.stepping } : undefined,
      userBlob: version === 3 ? encodeUserBlob({ board, firmware }) : undefined,
      biosVersion: firmware,
      boardName: board,
    }, log);
    const dumpId = enc.buf.readUInt16LE(2);
    const bootId = enc.buf.readUInt32LE(20);

    const state = stateFile ? await OopsStateFile.lock(stateFile, 60_000) : null;
    try {
      const now = Date.now();
      const dopts = { soft, oneShot: !!f.oneShot, rate, now };
      if (state) {
        const d = decide(state.read(), dopts);
        if (!d.send) {
          print({ sent: false, reason: d.reason, detail: d.detail, retryAt: d.retryAt ?? null, stateFile },
            `not sent: ${d.reason} (${d.detail})${d.retryAt ? `; next allowed at ${d.retryAt}` : ''}`);
          return;
        }
      }
      // From here on a signal stops the sending (one during ARP takes effect when ARP is done), not the process.
      let interrupted = null as StopSignal | null;
      const unlisten = onStopSignal((sig) => { interrupted = sig; });
      let sender: UdpSender;
      try {
        sender = await UdpSender.open({ ...opts, to, srcPort: opts.from?.port ?? NETOOPS_PORT, payloadLen: enc.buf.length });
      } catch (e) {
        unlisten();
        throw e;
      }
      const total = enc.packetCount * retransmit;
      let datagrams = 0;
      try {
        send: for (let round = 0; round < retransmit; round++) {
          for (const k of enc.order()) {
            if (datagrams > 0) await gap(gapUs);
            if ((datagrams & 63) === 63) await new Promise((r) => setImmediate(r)); // short gaps spin: let a signal in
            if (interrupted) break send;
            sender.send(enc.datagram(k));
            datagrams++;
          }
        }
        await sender.close();
      } catch (e) {
        sender.abort();
        throw e;
      } finally {
        unlisten();
      }
      const cut = datagrams < total ? interrupted : null;
      if (state && !cut) state.write(recordSent(state.read(), dopts));
      const d = sender.describe();
      const summary = {
        sent: !cut, interrupted: cut, type: netoopsTypeName(soft ? NETOOPS_TYPE_SOFT : NETOOPS_TYPE_OOPS), layout: `v${version}`,
        dumpId, bootId, bootIdHex: bootId.toString(16).padStart(8, '0'), kernelVersion: f.kernelVersion ?? host.kernelRelease,
        logBytes: log.length, packetCount: enc.packetCount, retransmit, datagrams, datagramBytes: enc.buf.length,
        src: `${d.srcIp}:${d.srcPort}`, dst: `${d.dstIp}:${d.dstPort}`, dstMac: d.dstMac,
        arpMs: sender.arpMs === null ? null : Math.round(sender.arpMs * 1000) / 1000,
        kmsg: kmsgInfo, board: board ?? null, firmware: firmware ?? null, stateFile: stateFile ?? null,
        disarmed: !!f.oneShot && !soft && !cut, iface: sender.iface?.name ?? null, pcapFile: f.write ?? null,
      };
      print(summary, `oops report ${summary.type} dump_id ${dumpId} boot_id ${summary.bootIdHex}: ${log.length} bytes in ` +
        `${enc.packetCount} chunks x ${retransmit} = ${total} datagrams of ${enc.buf.length} bytes ${summary.src} -> ${summary.dst} [${d.dstMac}]` +
        (kmsgInfo ? ` (${kmsgInfo.records} kmsg records${kmsgInfo.lost ? `, ${kmsgInfo.lost} lost to overrun` : ''})` : '') +
        (summary.disarmed ? `; one-shot disarmed (${stateFile})` : '') +
        (cut ? `; interrupted (${cut}) after ${datagrams} of ${total} datagrams${stateFile ? `, ${stateFile} left as it was` : ''}` : ''));
      if (cut) process.exitCode = interruptedExitCode(cut, true);
    } finally {
      state?.unlock();
    }
  });
}
