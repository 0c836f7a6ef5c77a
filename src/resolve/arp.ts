import { performance } from 'node:perf_hooks';
import { LinkDownError, LinkGoneError, RuntimeError } from '../errors.js';
import { PcapLink } from '../link/pcap.js';
import { formatIpv4 } from '../wire/addr.js';
import { ARP_FIELD, ARP_LEN, ARP_REPLY, ARP_REQUEST, emitArp, parseArp } from '../wire/arp.js';
import { emitEthernet, ETH_HEADER_LEN, ETH_MIN_FRAME, ETHERTYPE_ARP, parseEthernet } from '../wire/ethernet.js';
import { MAC_BROADCAST, MAC_ZERO } from '../wire/mac.js';

export interface ArpResolveOptions {
  iface: string;
  srcMac: Buffer;
  srcIp: number;
  targetIp: number;
  /** Who-has requests to send before giving up (netdump's debugnet tries 3 times). */
  retries?: number;
  /** How long to wait for a reply after each request. */
  timeoutMs?: number;
  /**
   * Called once the capture handle is open, before the first who-has: where `rawpoll arp -Z` gives up root. If it
   * throws, the handle is closed and nothing is sent.
   */
  onOpen?: () => void | Promise<void>;
}

export interface ArpResult {
  mac: Buffer;
  ms: number;
  tries: number;
}

/** A complete ARP frame (padded to the 60-byte Ethernet minimum). */
export function buildArpFrame(op: number, srcMac: Buffer, srcIp: number, dstMac: Buffer, targetMac: Buffer, targetIp: number): Buffer {
  const f = Buffer.alloc(ETH_MIN_FRAME);
  emitEthernet({ dst: dstMac, src: srcMac, ethertype: ETHERTYPE_ARP }, f, 0);
  emitArp({ op, senderMac: srcMac, senderIp: srcIp, targetMac, targetIp }, f, ETH_HEADER_LEN);
  return f;
}

function hex32(ip: number): string {
  return '0x' + (ip >>> 0).toString(16).padStart(8, '0');
}

/** BPF for "ARP replies whose sender is IP": the opcode and the sender protocol address, at the codec's offsets. */
export function arpReplyFilter(ip: number): string {
  return `arp and arp[${ARP_FIELD.op}:2] = ${ARP_REPLY} and arp[${ARP_FIELD.spa}:4] = ${hex32(ip)}`;
}

/** BPF for "who-has IP" requests: the opcode and the target protocol address. */
export function arpRequestFilter(ip: number): string {
  return `arp and arp[${ARP_FIELD.op}:2] = ${ARP_REQUEST} and arp[${ARP_FIELD.tpa}:4] = ${hex32(ip)}`;
}

function parseArpFrame(frame: Buffer) {
  if (frame.length < ETH_HEADER_LEN + ARP_LEN) return null;
  if (parseEthernet(frame).ethertype !== ETHERTYPE_ARP) return null;
  try {
    return parseArp(frame, ETH_HEADER_LEN);
  } catch {
    return null;
  }
}

/**
 * Our own ARP client, as netdump's: broadcast who-has from our MAC/IP on a pcap handle of its own whose BPF filter
 * passes only replies from the asked address; `retries` requests, `timeoutMs` each.
 */
export async function arpResolve(o: ArpResolveOptions): Promise<ArpResult> {
  const retries = o.retries ?? 3;
  const timeoutMs = o.timeoutMs ?? 1000;
  const link = PcapLink.open(o.iface, arpReplyFilter(o.targetIp), 1 << 20);
  const request = buildArpFrame(ARP_REQUEST, o.srcMac, o.srcIp, MAC_BROADCAST, MAC_ZERO, o.targetIp);
  let t0 = performance.now();
  try {
    if (o.onOpen) {
      await o.onOpen();
      t0 = performance.now();
    }
    for (let tryNo = 1; tryNo <= retries; tryNo++) {
      const mac = await new Promise<Buffer | null>((resolve) => {
        const timer = setTimeout(() => {
          off();
          resolve(null);
        }, timeoutMs);
        const off = link.onFrame((frame) => {
          const arp = parseArpFrame(frame);
          if (arp && arp.op === ARP_REPLY && arp.senderIp === o.targetIp) {
            clearTimeout(timer);
            off();
            resolve(Buffer.from(arp.senderMac));
          }
        });
        link.send(request);
      });
      if (mac) return { mac, ms: performance.now() - t0, tries: tryNo };
    }
  } finally {
    link.close();
  }
  throw new RuntimeError(`no ARP reply from ${formatIpv4(o.targetIp)} on ${o.iface} after ${retries} ${retries === 1 ? 'try' : 'tries'}`);
}

/**
 * Answers who-has for an address the host's own stack does not own (rawpoll's --from), so the peer can send back to
 * it (netdump ACKs, or simply the peer's ARP check before its kernel replies). The link's filter must pass the requests.
 */
export class ArpResponder {
  answered = 0;
  /** Requests seen while the link could not send the reply. */
  unanswered = 0;
  private readonly off: () => void;

  constructor(private readonly link: PcapLink, private readonly mac: Buffer, private readonly ip: number) {
    this.off = link.onFrame((frame) => {
      const arp = parseArpFrame(frame);
      if (!arp || arp.op !== ARP_REQUEST || arp.targetIp !== this.ip) return;
      if (arp.senderMac.equals(this.mac)) return; // our own request, seen on the way out
      try {
        this.link.send(buildArpFrame(ARP_REPLY, this.mac, this.ip, arp.senderMac, arp.senderMac, arp.senderIp));
        this.answered++;
      } catch (e) {
        // The link went down (or away) between the request and our reply: the asker will ask again; the command
        // that owns the link reports the outage.
        if (!(e instanceof LinkDownError || e instanceof LinkGoneError)) throw e;
        this.unanswered++;
      }
    });
  }

  stop(): void {
    this.off();
  }
}
