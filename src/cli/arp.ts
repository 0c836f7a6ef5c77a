import { Command } from 'commander';
import { UsageError } from '../errors.js';
import { hostOwnsAddress, ifaceInfo } from '../link/iface.js';
import { arpResolve } from '../resolve/arp.js';
import { chooseNextHop } from '../resolve/nexthop.js';
import { formatIpv4, parseIpv4, parseSource } from '../wire/addr.js';
import { formatMac } from '../wire/mac.js';
import { addDropOption, intArg, relinquishPrivileges, requireLinkUsable } from './common.js';
import type { Account } from '../host/privdrop.js';

interface ArpFlags {
  iface?: string;
  from?: string;
  gateway?: string;
  retries: string;
  timeout: string;
  json?: boolean;
  relinquishPrivileges?: Account;
}

export function register(program: Command): void {
  const cmd = program
    .command('arp')
    .summary('resolve an IPv4 address to a MAC with our own who-has over pcap')
    .description('Broadcast an ARP who-has from the interface (our MAC, the source IP) and capture the reply with a BPF\n' +
      'filter that passes only replies from the asked address — no kernel neighbour cache involved.\n' +
      'With --gateway and a target outside the source subnet, the gateway is resolved instead (the next hop).')
    .argument('<IP>', 'address to resolve')
    .requiredOption('-i, --iface <IF>', 'interface to ask on')
    .option('--from <IP[/PREFIX]>', "source IP for the request; default: the interface's first IPv4 address")
    .option('--gateway <IP>', 'resolve this next hop when the target is off-link')
    .option('--retries <N>', 'requests before giving up', '3')
    .option('--timeout <MS>', 'wait after each request, in ms', '1000')
    .option('--json', 'print {"ip","mac","iface","via","nextHop","ms","tries"}: via is direct|gateway (as in send, blast ' +
      'and netconsole), nextHop the address asked (the target, or the gateway)')
    .addHelpText('after', '\nExamples:\n  sudo rawpoll arp -i eth1 10.0.0.2\n  sudo rawpoll arp -i eth1 10.9.9.9 --gateway 10.0.0.254 --json\n\n' +
      'Exit codes: 0 resolved, 1 no reply (or no permission), 2 bad usage.');
  addDropOption(cmd, 'once the capture handle is open (before the first who-has)')
    .action(async (ipArg: string, f: ArpFlags) => {
      const target = parseIpv4(ipArg, 'target IP');
      const gateway = f.gateway !== undefined ? parseIpv4(f.gateway, '--gateway') : undefined;
      const retries = intArg(f.retries, '--retries', 1, 100)!;
      const timeoutMs = intArg(f.timeout, '--timeout', 1, 60000)!;
      const from = f.from !== undefined ? parseSource(f.from, '--from') : undefined;
      const iface = ifaceInfo(f.iface!);
      // Down before "no IPv4 address": the kernel lists a link's addresses only while it runs, and a down link is a
      // runtime failure (exit 1) in every command, not bad usage.
      requireLinkUsable(iface);
      const src = from ?? (iface.ipv4[0] ? { ip: iface.ipv4[0].addr, prefix: iface.ipv4[0].prefix } : undefined);
      if (!src) throw new UsageError(`${iface.name} has no IPv4 address; give the source address with --from IP`);
      const hop = chooseNextHop(target, gateway, { ip: src.ip, prefix: src.prefix ?? iface.ipv4.find((a) => a.addr === src.ip)?.prefix });
      const r = await arpResolve({ iface: iface.name, srcMac: iface.mac, srcIp: src.ip, targetIp: hop.ip, retries, timeoutMs,
        onOpen: () => relinquishPrivileges(f.relinquishPrivileges) });
      if (f.json) {
        process.stdout.write(JSON.stringify({
          ip: formatIpv4(target), mac: formatMac(r.mac), iface: iface.name, via: hop.via, nextHop: formatIpv4(hop.ip), ms: round3(r.ms), tries: r.tries,
        }) + '\n');
      } else {
        const how = hop.via === 'direct' ? '' : ` via gateway ${formatIpv4(hop.ip)}`;
        process.stdout.write(`${formatIpv4(target)}${how} is-at ${formatMac(r.mac)} on ${iface.name} (${round3(r.ms)} ms, ${r.tries} ${r.tries === 1 ? 'try' : 'tries'})${hostOwnsAddress(src.ip) ? '' : ` asked as ${formatIpv4(src.ip)}`}\n`);
      }
    });
}

function round3(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
