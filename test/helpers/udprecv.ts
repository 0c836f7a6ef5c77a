/**
 * A plain kernel UDP receiver for integration tests, run inside a namespace:
 *   node udprecv.js PORT COUNT TIMEOUT_MS [FAMILY]
 * FAMILY: 4 (the default: an AF_INET socket on 0.0.0.0:PORT), 6 (AF_INET6 on [::]:PORT with IPV6_V6ONLY: IPv6 only)
 * or dual (AF_INET6 on [::]:PORT without it: IPv6 and IPv4, the latter as v4-mapped addresses).
 * Prints "ready" once bound, then one JSON line per datagram {from, port, hex}; exits after COUNT datagrams or the timeout.
 */
import { createSocket } from 'node:dgram';

const [port, count, timeoutMs] = process.argv.slice(2, 5).map(Number);
const family = process.argv[5] ?? '4';
if (!['4', '6', 'dual'].includes(family)) throw new Error(`udprecv: FAMILY must be 4, 6 or dual, not ${family}`);
const sock = family === '4' ? createSocket('udp4') : createSocket({ type: 'udp6', ipv6Only: family === '6' });
let n = 0;
sock.on('message', (msg, rinfo) => {
  process.stdout.write(JSON.stringify({ from: rinfo.address, port: rinfo.port, hex: msg.toString('hex') }) + '\n');
  if (++n >= count) finish();
});
function finish(): void {
  sock.close();
  process.exitCode = 0;
}
const ready = () => {
  process.stdout.write('ready\n');
  setTimeout(finish, timeoutMs).unref();
};
if (family === '4') sock.bind(port, ready);
else sock.bind(port, '::', ready);
