/**
 * The baseline a lab engineer would write first: one pre-built 60-byte frame, pcap_inject (through rawpoll's own
 * libpcap binding, one JS call per frame) in a tight loop.
 *   node naive-pcap-loop.js IFACE DST_MAC COUNT   -> prints {"sent":N,"seconds":S,"pps":P}
 * It retries EAGAIN/ENOBUFS like PcapLink so that "sent" means sent.
 */
import { performance } from 'node:perf_hooks';
import { loadAddon } from '../src/link/addon.js';

const [iface, dstMac, countArg] = process.argv.slice(2);
const count = Number(countArg);
const h = loadAddon().pcapOpen(iface, { filter: 'arp and arp[6:2] = 9' }, () => {}, () => {});
const frame = Buffer.alloc(60);
Buffer.from(dstMac.split(':').map((x) => parseInt(x, 16))).copy(frame, 0);
frame.set([0x02, 0, 0, 0, 0, 1], 6);
frame.writeUInt16BE(0x0800, 12);
frame.set([0x45, 0, 0, 29, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 0x1a, 0x09, 0, 9, 0, 9, 0, 0, 0x78], 14);
const t0 = performance.now();
let retries = 0;
for (let i = 0; i < count; i++) {
  for (;;) {
    try {
      h.inject(frame);
      break;
    } catch {
      retries++;
    }
  }
}
const seconds = (performance.now() - t0) / 1000;
process.stdout.write(JSON.stringify({ sent: count, seconds, pps: Math.round(count / seconds), retries }) + '\n');
h.close();
process.exit(0);
