/**
 * An independent pktgen-style sender for receiver tests, through the kernel's own UDP socket (not rawpoll's code):
 *   node pktgen-udp.js DST_IP PORT PPS SECONDS [SRC_PORT]
 * Each datagram carries the 16-byte pktgen header laid out by hand (PROTOCOLS.md §5): magic 0xbe9be955, seq from 1,
 * tv_sec, tv_usec. Paced on a 1 ms timer in small bursts; prints {"sent":N} at the end.
 */
import { createSocket } from 'node:dgram';

const [dst, port, pps, seconds, sport] = process.argv.slice(2);
const sock = createSocket('udp4');
const total = Math.round(Number(pps) * Number(seconds));
let seq = 0;
const t0 = Date.now();
const tick = () => {
  const due = Math.min(total, Math.floor(((Date.now() - t0) / 1000) * Number(pps)));
  while (seq < due) {
    const b = Buffer.alloc(18);
    b.writeUInt32BE(0xbe9be955, 0);
    b.writeUInt32BE(++seq, 4);
    const now = Date.now();
    b.writeUInt32BE(Math.floor(now / 1000), 8);
    b.writeUInt32BE((now % 1000) * 1000, 12);
    sock.send(b, Number(port), dst);
  }
  if (seq >= total) {
    setTimeout(() => {
      process.stdout.write(JSON.stringify({ sent: seq }) + '\n');
      sock.close();
    }, 50);
  } else setTimeout(tick, 1);
};
sock.bind(sport ? Number(sport) : 0, tick);
