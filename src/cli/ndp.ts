import { Command } from 'commander';
import { LinkGoneError, UsageError } from '../errors.js';
import { hostOwnsIpv6Address, ifaceInfo, ifaceIpv6Addrs } from '../link/iface.js';
import { PcapLink } from '../link/pcap.js';
import { chooseNextHop6, chooseSource6 } from '../resolve/nexthop.js';
import {
  ndpResolve, NdpResponder, ndpSolicitFilter, type NdpAnswer,
} from '../resolve/ndp.js';
import { AddressError } from '../wire/addr.js';
import { formatIpv6Addr, isIpv6Multicast, isIpv6Unspecified, parseIpv6Addr, splitIpv6Zone } from '../wire/ipv6.js';
import { formatMac } from '../wire/mac.js';
import { intArg, interruptedExitCode, onStopSignal, requireLinkUsable, type StopSignal } from './common.js';

interface NdpFlags {
  iface?: string;
  from?: string;
  gateway?: string;
  retries: string;
  timeout: string;
  answer?: string;
  duration?: string;
  json?: boolean;
}

/** A unicast IPv6 address from the command line; "fe80::1%IF" is taken when IF is -i's (the link is -i anyway). */
function unicastArg(s: string, what: string, iface: string): Buffer {
  const { addr, zone } = splitIpv6Zone(s);
  if (zone !== undefined && zone !== iface) throw new AddressError(`bad ${what} '${s}': its zone %${zone} is not the interface -i ${iface}`);
  const a = parseIpv6Addr(addr, what);
  if (isIpv6Multicast(a) || isIpv6Unspecified(a)) {
    throw new AddressError(`bad ${what} '${s}': ${isIpv6Unspecified(a) ? 'the unspecified address' : 'a multicast address'} has no neighbour; expected a unicast IPv6 address like fd00::2 or fe80::1`);
  }
  return a;
}

/** "ADDR[/PREFIX]" for --from. */
function sourceArg(s: string, iface: string): { ip: Buffer; prefix?: number } {
  const m = /^([^/]+)(?:\/(\d{1,3}))?$/.exec(String(s).trim());
  if (!m) throw new AddressError(`bad --from '${s}': expected ADDR[/PREFIX] like fd00::7 or fd00::7/64`);
  const ip = unicastArg(m[1], '--from', iface);
  if (m[2] !== undefined && Number(m[2]) > 128) throw new AddressError(`bad --from prefix '/${m[2]}': expected 0-128`);
  return { ip, prefix: m[2] !== undefined ? Number(m[2]) : undefined };
}

/** --duration in seconds: a positive number (fractions allowed), at most a day. */
function durationArg(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = /^\d+(\.\d+)?$/.test(v.trim()) ? Number(v) : NaN;
  if (!(n > 0 && n <= 86400)) throw new UsageError(`bad --duration '${v}': expected seconds, a number above 0 and at most 86400`);
  return n;
}

export function register(program: Command): void {
  program
    .command('ndp')
    .summary('resolve an IPv6 address to a MAC with our own Neighbor Solicitation over pcap, or answer them')
    .description('Send an IPv6 Neighbor Solicitation (RFC 4861) to the target\'s solicited-node group (ff02::1:ffXX:XXXX,\n' +
      'MAC 33:33:ff:XX:XX:XX) from the interface (our MAC, the source address) and capture the Advertisement with a BPF\n' +
      'filter that passes only Advertisements for the asked address — no kernel neighbour cache involved.\n' +
      'With --gateway and a target outside the source prefix, the gateway is resolved instead (the next hop).\n' +
      'With --answer ADDR instead of a target: answer Solicitations for ADDR (an address the host does not own) with a\n' +
      'solicited Advertisement carrying our MAC, until stopped or --duration; the IPv6 twin of the who-has rawpoll answers\n' +
      'for --from addresses.')
    .argument('[ADDR]', 'IPv6 address to resolve (fe80::… link-local ones on -i\'s link)')
    .requiredOption('-i, --iface <IF>', 'interface to ask (or answer) on')
    .option('--from <ADDR[/PREFIX]>', "source address of the Solicitation; default: the interface's IPv6 address (link-local for a link-local target)")
    .option('--gateway <ADDR>', 'resolve this next hop when the target is off-link')
    .option('--retries <N>', 'Solicitations before giving up', '3')
    .option('--timeout <MS>', 'wait after each Solicitation, in ms', '1000')
    .option('--answer <ADDR>', 'answer Neighbor Solicitations for ADDR instead of resolving (until SIGINT/SIGTERM or --duration)')
    .option('--duration <S>', 'with --answer: stop after S seconds')
    .option('--json', 'print {"ip","mac","iface","via","nextHop","ms","tries","router"}; with --answer, ' +
      '{"answer","iface","mac","answered","unanswered","seconds"} when it ends')
    .addHelpText('after', '\nExamples:\n  sudo rawpoll ndp -i eth1 fd00::2\n  sudo rawpoll ndp -i eth1 fe80::1 --json\n' +
      '  sudo rawpoll ndp -i eth1 2001:db8:9::9 --from 2001:db8::7/64 --gateway fe80::1\n' +
      '  sudo rawpoll ndp -i eth1 --answer fd00::7 --duration 60\n\n' +
      'Exit codes: 0 resolved (or answering ended), 1 no reply (or no permission), 2 bad usage.')
    .action(async (addrArg: string | undefined, f: NdpFlags) => {
      if (f.answer !== undefined && addrArg !== undefined) {
        throw new UsageError(`give ADDR to resolve or --answer ADDR to answer for, not both (got '${addrArg}' and --answer '${f.answer}')`);
      }
      if (f.answer === undefined && addrArg === undefined) {
        throw new UsageError('missing ADDR: the IPv6 address to resolve (or --answer ADDR to answer Solicitations for it)');
      }
      if (f.answer === undefined && f.duration !== undefined) throw new UsageError('--duration goes with --answer (resolving ends by itself: --retries, --timeout)');
      if (f.answer !== undefined) return answer(f);
      const ifname = f.iface!;
      const target = unicastArg(addrArg!, 'target IP', ifname);
      const gateway = f.gateway !== undefined ? unicastArg(f.gateway, '--gateway', ifname) : undefined;
      const retries = intArg(f.retries, '--retries', 1, 100)!;
      const timeoutMs = intArg(f.timeout, '--timeout', 1, 60000)!;
      const from = f.from !== undefined ? sourceArg(f.from, ifname) : undefined;
      const iface = ifaceInfo(ifname);
      // Down before "no IPv6 address": the kernel lists a link's addresses only while it runs (as arp).
      requireLinkUsable(iface);
      const addrs = ifaceIpv6Addrs(iface.name);
      const picked = chooseSource6(addrs, target);
      const src = from ?? (picked ? { ip: picked.ip6, prefix: picked.prefix } : undefined);
      if (!src) throw new UsageError(`${iface.name} has no IPv6 address; give the source address with --from ADDR`);
      const prefix = src.prefix ?? addrs.find((a) => a.addr.equals(src.ip))?.prefix;
      // On-link: a link-local target always; else within the source's prefix. With no known prefix the gateway is used (as arp).
      const next = chooseNextHop6(target, gateway, { ip6: src.ip, prefix });
      const hop = { ip: next.ip6, via: next.via };
      const r = await ndpResolve({ iface: iface.name, srcMac: iface.mac, srcIp: src.ip, targetIp: hop.ip, retries, timeoutMs });
      if (f.json) {
        process.stdout.write(JSON.stringify({
          ip: formatIpv6Addr(target), mac: formatMac(r.mac), iface: iface.name, via: hop.via, nextHop: formatIpv6Addr(hop.ip),
          ms: round3(r.ms), tries: r.tries, router: r.router,
        }) + '\n');
      } else {
        const how = hop.via === 'direct' ? '' : ` via gateway ${formatIpv6Addr(hop.ip)}`;
        process.stdout.write(`${formatIpv6Addr(target)}${how} is-at ${formatMac(r.mac)}${r.router ? ' (router)' : ''} on ${iface.name} ` +
          `(${round3(r.ms)} ms, ${r.tries} ${r.tries === 1 ? 'try' : 'tries'})${hostOwnsIpv6Address(src.ip) ? '' : ` asked as ${formatIpv6Addr(src.ip)}`}\n`);
      }
    });
}

/** --answer: our NdpResponder on a capture of Solicitations for ADDR, until a signal, --duration, or the link is gone. */
async function answer(f: NdpFlags): Promise<void> {
  const ifname = f.iface!;
  const addr = unicastArg(f.answer!, '--answer', ifname);
  const durationS = durationArg(f.duration);
  const iface = ifaceInfo(ifname);
  requireLinkUsable(iface);
  if (hostOwnsIpv6Address(addr)) {
    throw new UsageError(`--answer ${formatIpv6Addr(addr)}: this host owns that address and its kernel already answers for it; expected an address it does not have`);
  }
  const link = PcapLink.open(iface.name, ndpSolicitFilter(addr), 1 << 20);
  const t0 = process.hrtime.bigint();
  const onAnswer = (a: NdpAnswer) => {
    if (!f.json) {
      process.stdout.write(a.kind === 'dad'
        ? `${formatIpv6Addr(addr)}: defended against duplicate address detection from ${formatMac(a.mac)}\n`
        : `${formatIpv6Addr(addr)} is-at ${formatMac(iface.mac)}: answered ${formatIpv6Addr(a.from)} (${formatMac(a.mac)})\n`);
    }
  };
  const responder = new NdpResponder(link, iface.mac, addr, onAnswer);
  // On stderr in both modes: stdout keeps the answers (or the one JSON object); a script waits for this line.
  process.stderr.write(`rawpoll ndp: answering Neighbor Solicitations for ${formatIpv6Addr(addr)} on ${iface.name} as ${formatMac(iface.mac)}\n`);
  let gone = false;
  let timer: NodeJS.Timeout | null = null;
  let unlisten = () => {};
  const end = await new Promise<StopSignal | null>((resolve) => {
    if (durationS !== undefined) timer = setTimeout(() => resolve(null), durationS * 1000);
    unlisten = onStopSignal((sig) => resolve(sig));
    link.watch.once('gone', () => {
      gone = true;
      resolve(null);
    });
  });
  if (timer) clearTimeout(timer);
  unlisten();
  responder.stop();
  link.close();
  const seconds = Math.round(Number(process.hrtime.bigint() - t0) / 1e6) / 1000;
  const summary: Record<string, unknown> = {
    answer: formatIpv6Addr(addr), iface: iface.name, mac: formatMac(iface.mac), answered: responder.answered, unanswered: responder.unanswered, seconds,
  };
  if (end) summary.interrupted = end;
  if (f.json) process.stdout.write(JSON.stringify(summary) + '\n');
  else {
    process.stdout.write(`answered ${responder.answered} Neighbor Solicitation${responder.answered === 1 ? '' : 's'} for ${formatIpv6Addr(addr)} in ${seconds} s` +
      `${responder.unanswered ? `, ${responder.unanswered} not (link down)` : ''}${end ? ' (interrupted)' : ''}\n`);
  }
  if (gone) throw new LinkGoneError(iface.name);
  if (end) process.exitCode = interruptedExitCode(end, durationS !== undefined);
}

function round3(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
