/**
 * Opens a UdpSender (the library, as an application would) inside a namespace and keeps it open, so a test can watch
 * what rawpoll does while it runs — e.g. answer ARP for a --from address the host does not own.
 *   node hold-sender.js IFACE FROM_IP TO_IP DST_MAC HOLD_MS
 */
import { UdpSender } from '../../src/tx/sender.js';
import { parseIpv4 } from '../../src/wire/addr.js';
import { parseMac } from '../../src/wire/mac.js';

const [iface, from, to, dstMac, holdMs] = process.argv.slice(2);
const s = await UdpSender.open({ iface, from: { ip: parseIpv4(from, 'from') }, to: { ip: parseIpv4(to, 'to'), port: 9 }, dstMac: parseMac(dstMac) });
process.stdout.write('ready\n');
setTimeout(async () => {
  await s.close();
}, Number(holdMs));
