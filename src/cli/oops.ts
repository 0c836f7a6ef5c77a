import { Command, Option } from 'commander';
import { UsageError } from '../errors.js';
import { NETOOPS_PORT, NETOOPS_RETRANSMIT_COUNT } from '../proto/netoops.js';
import { bootIdFromUuid } from '../host/hostinfo.js';
import { buildOopsReport, readOopsLog, rearmOneShot, sendOops } from '../tx/oops.js';
import { parseRateLimit, type RateLimit } from '../tx/oopsstate.js';
import { parseEndpointAny } from '../wire/endpoint.js';
import { statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { Account } from '../host/privdrop.js';
import {
  addDropOption, addFrameOptions, addLinkOptions, checkDropFiles, checkInputFile, checkOutputFile, interruptedExitCode, intArg, onStopSignal,
  relinquishPrivileges, senderOptionsFromFlags, type FrameFlags, type StopSignal,
} from './common.js';

interface OopsFlags extends FrameFlags {
  relinquishPrivileges?: Account;
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
      'Receive with `rawpoll collect --oops`.\n\n' +
      'IPv6 (--to fd00::9 or [fd00::9]:2004) is rawpoll\'s extension: netoops only ever sent IPv4. The same datagrams\n' +
      'go in Ethernet/IPv6/UDP frames (the next hop\'s MAC from NDP).')
    .option('--to <IP[:PORT]>', `collector address (port default ${NETOOPS_PORT}): 10.0.0.9, fd00::9 or [fd00::9]:${NETOOPS_PORT} (IPv6: rawpoll's extension)`)
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
  addDropOption(cmd, 'once the interface is open and the next hop resolved (before the first datagram); a --one-shot/--state ' +
    'file is then written as USER, so its directory must be USER\'s to write (and not sticky, as /tmp is)');
  cmd.addHelpText('after', '\nExamples:\n' +
    '  sudo rawpoll oops -i eth1 --to 10.0.0.9 --log dmesg.txt\n' +
    '  sudo rawpoll oops -i eth1 --to fd00::9 --log dmesg.txt             (IPv6: rawpoll\'s extension of netoops)\n' +
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
    // Before --rearm touches the state file and before ARP: a missing --log is a wrong value (exit 2), in every command;
    // so is a state file in a directory that is not there (it used to be created, typo and all).
    if (f.log !== undefined) checkInputFile(f.log, '--log');
    if (stateFile !== undefined) checkOutputFile(stateFile, f.oneShot !== undefined ? '--one-shot' : '--state');
    const user = f.relinquishPrivileges;
    checkDropFiles(user, { write: f.write });
    // After the drop the state file is replaced (temp file + rename) and its lock removed as USER: in a sticky
    // directory only a file's owner may do either, and the lock was made before the drop.
    if (user && stateFile !== undefined && (statSync(dirname(resolve(stateFile))).mode & 0o1000)) {
      throw new UsageError(`-Z ${user.name} and ${f.oneShot !== undefined ? '--one-shot' : '--state'} ${stateFile}: its directory is sticky ` +
        `(as /tmp), where ${user.name} could not replace the state file or remove its lock; keep it in a directory of ${user.name}'s`);
    }

    if (f.rearm) {
      await rearmOneShot(f.oneShot!);
      if (!haveLog) {
        print({ rearmed: true, stateFile: f.oneShot }, `re-armed ${f.oneShot}`);
        return;
      }
    }
    if (!haveLog) throw new UsageError('no log: give --log FILE (or - for standard input) or --kmsg');
    if (!f.to) throw new UsageError('no collector: give --to IP[:PORT] (or [IPv6]:PORT)');
    const to = parseEndpointAny(f.to, '--to', NETOOPS_PORT);
    const opts = senderOptionsFromFlags(f);

    const { log, kmsg: kmsgInfo } = readOopsLog(f.kmsg ? { kmsg: true } : { file: f.log! });
    if (log.length === 0) throw new UsageError(`the log ${f.kmsg ? '(/dev/kmsg)' : f.log} is empty: nothing to report`);
    const report = buildOopsReport(log, {
      soft, version: f.layout === 'v2' ? 2 : 3,
      dumpId: f.dumpId !== undefined ? intArg(f.dumpId, '--dump-id', 0, 65535)! : undefined,
      bootId: f.bootId !== undefined ? parseBootId(f.bootId) : undefined,
      kernelVersion: f.kernelVersion, board: f.board, firmware: f.firmware,
    });

    const r = await sendOops({
      ...opts, to, report, retransmit, gapUs, state: stateFile ? { file: stateFile, oneShot: !!f.oneShot, rate } : undefined,
      // Once the report may go, a signal stops the sending (one during ARP takes effect after it), not the process.
      interrupt: (stop) => onStopSignal(stop),
      onOpen: () => relinquishPrivileges(user, undefined, { writable: stateFile !== undefined ? [dirname(resolve(stateFile))] : [] }),
    });
    if (r.heldBack) {
      print({ sent: false, reason: r.reason, detail: r.detail, retryAt: r.retryAt, stateFile },
        `not sent: ${r.reason} (${r.detail})${r.retryAt ? `; next allowed at ${r.retryAt}` : ''}`);
      return;
    }
    const cut = r.interrupted as StopSignal | null;
    const enc = report.enc;
    const bootIdHex = report.bootId.toString(16).padStart(8, '0');
    const summary = {
      sent: r.sent, interrupted: cut, type: report.type, layout: `v${report.version}`,
      dumpId: report.dumpId, bootId: report.bootId, bootIdHex, kernelVersion: report.kernelVersion,
      logBytes: log.length, packetCount: enc.packetCount, retransmit, datagrams: r.datagrams, datagramBytes: r.datagramBytes,
      src: r.src, dst: r.dst, dstMac: r.dstMac, arpMs: r.arpMs,
      kmsg: kmsgInfo, board: report.board, firmware: report.firmware, stateFile: stateFile ?? null,
      disarmed: r.disarmed, iface: r.iface, pcapFile: f.write ?? null,
    };
    print(summary, `oops report ${summary.type} dump_id ${report.dumpId} boot_id ${bootIdHex}: ${log.length} bytes in ` +
      `${enc.packetCount} chunks x ${retransmit} = ${r.total} datagrams of ${r.datagramBytes} bytes ${r.src} -> ${r.dst} [${r.dstMac}]` +
      (kmsgInfo ? ` (${kmsgInfo.records} kmsg records${kmsgInfo.lost ? `, ${kmsgInfo.lost} lost to overrun` : ''})` : '') +
      (r.disarmed ? `; one-shot disarmed (${stateFile})` : '') +
      (cut ? `; interrupted (${cut}) after ${r.datagrams} of ${r.total} datagrams${stateFile ? `, ${stateFile} left as it was` : ''}` : ''));
    if (cut) process.exitCode = interruptedExitCode(cut, true);
  });
}
