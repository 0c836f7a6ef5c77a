/**
 * The baseline a lab engineer would write first: one pre-built 60-byte frame, `cap.send` in a tight loop.
 *   node naive-cap-loop.js IFACE DST_MAC COUNT   -> prints {"sent":N,"seconds":S,"pps":P}
 * It retries EAGAIN/ENOBUFS like PcapLink so that "sent" means sent.
 */
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';

const require = createRequire(import.meta.url);
const { Cap } = require('cap');
const [iface, dstMac, countArg] = process.argv.slice(2);
const count = Number(countArg);
const c = new Cap();
const rx = Buffer.alloc(65536);
c.open(iface, 'arp and arp[6:2] = 9', 1 << 20, rx);
const frame = Buffer.alloc(60);
Buffer.from(dstMac.split(':').map((h) => parseInt(h, 16))).copy(frame, 0);
frame.set([0x02, 0, 0, 0, 0, 1], 6);
frame.writeUInt16BE(0x0800, 12);
frame.set([0x45, 0, 0, 29, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 0x1a, 0x09, 0, 9, 0, 9, 0, 0, 0x78], 14);
const t0 = performance.now();
let retries = 0;
for (let i = 0; i < count; i++) {
  for (;;) {
    try {
      c.send(frame, 60);
      break;
    } catch {
      retries++;
    }
  }
}
const seconds = (performance.now() - t0) / 1000;
process.stdout.write(JSON.stringify({ sent: count, seconds, pps: Math.round(count / seconds), retries }) + '\n');
c.close();
process.exit(0);
