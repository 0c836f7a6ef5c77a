/**
 * `rawpoll netdump` → `rawpoll netdump-server` across namespaces this file creates and removes, while the test, from
 * the client's namespace, spoofs datagrams from the client's address and port 20024 with a plain UDP socket: heralds
 * naming other directories, and VMCOREs at offsets 2^63 and 2^44.. into every session port the server has open for
 * that address. Datagrams built by hand from PROTOCOLS.md §4. The client uses --from, an address its namespace does
 * not own when it starts (so it holds no socket on 20024); the test adds that address to the namespace only while
 * its own socket sends (Linux sends from a local source address only), and that socket absorbs the server's ACKs.
 * Then a herald flood from addresses nobody owns (a raw socket in Python), against a small --max-sessions.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { netdumpLab, randomFile, runClient, sha256, startServer, type NetdumpLab } from '../../scripts/bench-netdump.js';
import { must, waitFor } from '../helpers/lab.js';

const labs: NetdumpLab[] = [];
const injectors: ChildProcess[] = [];
const tmp: string[] = [];
after(() => {
  for (const p of injectors) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  for (const l of labs) l.destroy();
  for (const t of tmp) fs.rmSync(t, { recursive: true, force: true });
});

/**
 * node -e INJECT src dst: binds src:20024 and, per stdin line "herald ports(,) seq0", sends a herald naming `herald`
 * (unless '-') to 20023 and hostile VMCOREs to each port, then prints "sent".
 */
const INJECT = String.raw`
const s = require('node:dgram').createSocket('udp4');
const [src, dst] = process.argv.slice(1);
function msg(type, seq, off, payload) {
  const h = Buffer.alloc(24 + payload.length);
  h.writeUInt32BE(type, 0); h.writeUInt32BE(seq, 4); h.writeBigUInt64BE(off, 8); h.writeUInt32BE(payload.length, 16);
  payload.copy(h, 24);
  return h;
}
const send = (m, port) => new Promise((r, j) => s.send(m, port, dst, (e) => (e ? j(e) : r())));
s.on('message', () => {});
s.bind(20024, src, () => {
  process.stdout.write('ready\n');
  require('node:readline').createInterface({ input: process.stdin }).on('line', async (line) => {
    const [herald, ports, seq0] = line.split(' ');
    if (herald !== '-') await send(msg(1, 1, 0n, Buffer.from(herald + '\0')), 20023);
    let seq = Number(seq0);
    for (const p of ports.split(',').filter(Boolean).map(Number)) {
      for (const off of [2n ** 63n, 2n ** 44n + 4096n, 2n ** 52n, 2n ** 64n - 1n]) {
        for (let k = 0; k < 8; k++) await send(msg(3, seq + k, off, Buffer.alloc(1448, 0x58)), p);
      }
    }
    process.stdout.write('sent\n');
  });
});
`;

class Injector {
  out = '';
  proc: ChildProcess;
  constructor(l: NetdumpLab, src: string) {
    this.proc = spawn('ip', ['netns', 'exec', l.a, process.execPath, '-e', INJECT, src, l.ipB], { stdio: ['pipe', 'pipe', 'inherit'] });
    injectors.push(this.proc);
    this.proc.stdout!.on('data', (d) => (this.out += d));
  }
  private async until(n: number, word: string): Promise<void> {
    const t0 = Date.now();
    while (this.out.split('\n').filter((x) => x === word).length < n) {
      if (Date.now() - t0 > 10_000 || this.proc.exitCode !== null) throw new Error(`injector: no '${word}' (${this.out})`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  ready(): Promise<void> { return this.until(1, 'ready'); }
  sent = 0;
  async send(herald: string, ports: number[], seq0: number): Promise<void> {
    this.proc.stdin!.write(`${herald || '-'} ${ports.join(',')} ${seq0}\n`);
    await this.until(++this.sent, 'sent');
  }
  async stop(): Promise<void> {
    this.proc.stdin!.end();
    this.proc.kill('SIGTERM');
    await new Promise((r) => (this.proc.exitCode !== null || this.proc.signalCode !== null ? r(null) : this.proc.once('exit', r)));
  }
}

/** Ports of the server's session sockets connected to `client`:20024 (ss in the server's namespace). */
function sessionPorts(l: NetdumpLab, client: string): number[] {
  const out = must('ip', ['netns', 'exec', l.b, 'ss', '-uanH']);
  const ports: number[] = [];
  for (const line of out.split('\n')) {
    const m = line.match(new RegExp(`${l.ipB.replace(/\./g, '\\.')}:(\\d+)\\s+${client.replace(/\./g, '\\.')}:20024\\b`));
    if (m) ports.push(Number(m[1]));
  }
  return ports;
}

test('a real dump with spoofed heralds and VMCOREs at 2^63 / 2^44.. injected: byte-exact, in its own directory', async () => {
  const l = await netdumpLab(undefined, undefined, { clientAddr: true }); // a route for the injector
  labs.push(l);
  const s = await startServer(l);
  tmp.push(s.dir);
  // 16 MB stop-and-wait lasts a few seconds on the veth; 4 MB (about 1 s) sometimes ended before the injector ran.
  const f = randomFile(16_000_000);
  tmp.push(path.dirname(f));
  const other = l.ipA.replace(/\.1$/, '.77');
  const own = (op: 'add' | 'del') => must('ip', ['-n', l.a, 'addr', op, `${other}/32`, 'dev', l.ifA]);
  // Before the client: a herald "from" it naming the attacker's directory (netdumpd took the real herald as its repeat).
  own('add');
  let inj = new Injector(l, other);
  await inj.ready();
  await inj.send('evil', [], 2);
  await inj.stop();
  own('del');
  // Stop-and-wait (--window 1): a transfer long enough to spoof into.
  const client = runClient(l, f, ['--from', `${other}/24`, '--window', '1']);
  let done = false;
  void client.then(() => { done = true; });
  // Once the real session is open beside the spoofed one: spoof from the client's own address until the end.
  const t0 = Date.now();
  while (!done && sessionPorts(l, other).length < 2 && Date.now() - t0 < 20_000) await new Promise((r) => setTimeout(r, 20));
  assert.equal(sessionPorts(l, other).length, 2, 'the spoofed session and the real one, side by side');
  own('add');
  inj = new Injector(l, other);
  await inj.ready();
  let rounds = 0;
  while (!done && Date.now() - t0 < 60_000) {
    await inj.send(rounds % 3 === 1 ? `evil${rounds}` : '', sessionPorts(l, other), 2 + rounds * 50);
    rounds++;
  }
  await inj.stop();
  const r = await client;
  assert.equal(r.code, 0, r.stderr);
  assert.ok(rounds >= 1, `injected during the transfer (${rounds} rounds)`);
  const dumps = s.dumps.filter((d) => d.status === 'complete');
  assert.equal(dumps.length, 1, JSON.stringify(s.dumps));
  const d = dumps[0] as unknown as { vmcore: string; beyondMaxDumpSize: number };
  assert.equal(d.vmcore, path.join(fs.realpathSync(s.dir), `vmcore.${other}.0`), 'in --dir itself, not evil/');
  assert.equal(sha256(d.vmcore), sha256(f));
  assert.ok(d.beyondMaxDumpSize > 0, 'the hostile VMCOREs reached the real session');
  // The spoofed sessions got no data: while open, their vmcores are empty; ended, they leave nothing (evil/ too).
  const evil = path.join(s.dir, 'evil');
  for (const n of fs.existsSync(evil) ? fs.readdirSync(evil) : []) {
    if (n.startsWith('vmcore.')) assert.equal(fs.statSync(path.join(evil, n)).size, 0, `evil/${n} got no data`);
  }
  s.proc.kill('SIGTERM');
  const exit = await new Promise<{ code: number | null; signal: string | null }>((res) => {
    if (s.proc.exitCode !== null || s.proc.signalCode !== null) return res({ code: s.proc.exitCode, signal: s.proc.signalCode });
    s.proc.once('exit', (code, signal) => res({ code, signal }));
  });
  assert.deepEqual(exit, { code: 0, signal: null });
});

/**
 * python3 -c FLOOD src-prefix dst count rate: `count` heralds to dst:20023 at `rate`/s, each from a random address
 * src-prefix.10-250 and port (raw socket, IP_HDRINCL: no host owns these addresses, so the server's ACKs go
 * nowhere and no ICMP comes back), every other one naming a directory spoof/<i>; prints "sent N".
 */
const FLOOD = String.raw`
import random, socket, struct, sys, time
prefix, dst, count, rate = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
rnd = random.Random(9)
t0 = time.time()
for i in range(count):
    path = ('spoof/%d' % i).encode() + b'\0' if i % 2 else b''
    msg = struct.pack('!IIQII', 1, 1, 0, len(path), 0) + path
    udp = struct.pack('!HHHH', rnd.randint(1024, 65535), 20023, 8 + len(msg), 0) + msg
    src = '%s.%d' % (prefix, rnd.randint(10, 250))
    ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, socket.inet_aton(src), socket.inet_aton(dst))
    s.sendto(ip + udp, (dst, 0))
    wait = t0 + (i + 1) / rate - time.time()
    if wait > 0:
        time.sleep(wait)
print('sent %d' % count, flush=True)
`;

test('a real dump during a herald flood from silent spoofed sources, --max-sessions 16: byte-exact; the flood leaves no files; drops reported', async () => {
  const l = await netdumpLab();
  labs.push(l);
  const s = await startServer(l, ['--max-sessions', '16', '--herald-timeout', '2', '--stats-interval', '1']);
  tmp.push(s.dir);
  const f = randomFile(8_000_000);
  tmp.push(path.dirname(f));
  const COUNT = 3000;
  // 300 heralds/s: fewer than 16 per 50 ms, so each finds a session to give way and none is refused.
  const flood = spawn('ip', ['netns', 'exec', l.a, 'python3', '-c', FLOOD, l.ipA.replace(/\.1$/, ''), l.ipB, String(COUNT), '300'],
    { stdio: ['ignore', 'pipe', 'inherit'] });
  injectors.push(flood);
  let out = '';
  flood.stdout!.on('data', (d) => (out += d));
  await new Promise((r) => setTimeout(r, 1000));
  const r = await runClient(l, f);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(out, '', 'the dump was done while the flood went on');
  assert.ok(await waitFor(() => out.includes(`sent ${COUNT}`), 30_000), `flood: ${out}`);
  const dumps = s.dumps.filter((d) => d.status === 'complete');
  assert.equal(dumps.length, 1, JSON.stringify(s.dumps));
  assert.equal(sha256(dumps[0].vmcore), sha256(f));
  // Every spoofed session ends (given way, or --herald-timeout 2 s) and takes its files and directories along.
  const real = fs.realpathSync(s.dir);
  const mine = [dumps[0].vmcore, dumps[0].info].map((p) => path.relative(real, p)).sort();
  const left = () => fs.readdirSync(s.dir).filter((n) => !n.endsWith('.last')).sort();
  assert.ok(await waitFor(() => left().join() === mine.join(), 5000), left().slice(0, 10).join(' '));
  s.proc.kill('SIGINT');
  const exit = await new Promise<{ code: number | null; signal: string | null }>((res) => {
    if (s.proc.exitCode !== null || s.proc.signalCode !== null) return res({ code: s.proc.exitCode, signal: s.proc.signalCode });
    s.proc.once('exit', (code, signal) => res({ code, signal }));
  });
  assert.deepEqual(exit, { code: 0, signal: null });
  // The last drops record (printed before the stop record): each herald ended a session without data or was refused.
  const drops = s.events.filter((e) => e.event === 'drops').pop()?.drops as Record<string, number> | undefined;
  assert.ok(drops, JSON.stringify(s.events.slice(-3)));
  const accounted = drops.heraldDisplaced + drops.heraldNoData + drops.heraldUnreachable + drops.maxSessions + drops.sessionLimit;
  assert.ok(accounted >= COUNT * 0.99 && accounted <= COUNT, JSON.stringify(drops));
  assert.ok(drops.heraldDisplaced > 0, JSON.stringify(drops));
  assert.deepEqual(s.events.slice(-1), [{ event: 'stop', interrupted: 'SIGINT', open_sessions: 0 }]);
});
