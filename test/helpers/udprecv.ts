/**
 * A plain kernel UDP receiver for integration tests, run inside a namespace:
 *   node udprecv.js PORT COUNT TIMEOUT_MS
 * Prints "ready" once bound, then one JSON line per datagram {from, port, hex}; exits after COUNT datagrams or the timeout.
 */
import { createSocket } from 'node:dgram';

const [port, count, timeoutMs] = process.argv.slice(2).map(Number);
const sock = createSocket('udp4');
let n = 0;
sock.on('message', (msg, rinfo) => {
  process.stdout.write(JSON.stringify({ from: rinfo.address, port: rinfo.port, hex: msg.toString('hex') }) + '\n');
  if (++n >= count) finish();
});
function finish(): void {
  sock.close();
  process.exitCode = 0;
}
sock.bind(port, () => {
  process.stdout.write('ready\n');
  setTimeout(finish, timeoutMs).unref();
});
