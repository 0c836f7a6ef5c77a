/**
 * A plain kernel UDPv6 receiver for integration tests, run inside a namespace (udprecv.ts' IPv6 twin):
 *   node udprecv6.js PORT COUNT TIMEOUT_MS
 * An AF_INET6 socket bound to [::]:PORT with IPV6_V6ONLY (IPv6 only). Prints "ready" once bound, then one JSON line
 * per datagram {from, port, hex}; exits after COUNT datagrams or the timeout.
 */
import { createSocket } from 'node:dgram';

const [port, count, timeoutMs] = process.argv.slice(2).map(Number);
const sock = createSocket({ type: 'udp6', ipv6Only: true });
let n = 0;
sock.on('message', (msg, rinfo) => {
  process.stdout.write(JSON.stringify({ from: rinfo.address, port: rinfo.port, hex: msg.toString('hex') }) + '\n');
  if (++n >= count) finish();
});
function finish(): void {
  sock.close();
  process.exitCode = 0;
}
sock.bind(port, '::', () => {
  process.stdout.write('ready\n');
  setTimeout(finish, timeoutMs).unref();
});
