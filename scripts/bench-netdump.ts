/**
 * netdump over a lab link: the kernel's 64 KiB rounds vs --window N, on a clean veth path and on a 20 ms delay path,
 * next to socat baselines (TCP file copy; UDP is no baseline for a file: it loses data). Run alone:
 *   node dist/scripts/bench-netdump.js [MB] [DELAY_MB]
 *
 * Also the lab the netdump integration tests use. This VM's kernel has no sch_netem, so loss/delay/reorder come from
 * a small AF_PACKET relay (Python, stdlib only) in a middle namespace: client ns —veth— relay ns —veth— server ns.
 * It forwards every frame between its two links, dropping / delaying / reordering client→server frames the way
 * `tc netem loss P` / `delay D reorder R` on the client's link would (R of the frames go at once, the rest wait D).
 * Both ends are the real kernel; only the wire in between is emulated.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Lab, must, RAWPOLL, rawpollAsync, type RunResult } from '../test/helpers/lab.js';

export const RELAY_PY = String.raw`
import socket, select, sys, random, time, heapq
ifa, ifb, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
imp = {True: [float(x) for x in sys.argv[4].split(',')], False: [float(x) for x in sys.argv[5].split(',')]}
random.seed(seed)
def mk(name):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    for opt in (33, 32):  # SO_RCVBUFFORCE, SO_SNDBUFFORCE
        s.setsockopt(socket.SOL_SOCKET, opt, 32 << 20)
    s.bind((name, 0))
    s.setblocking(False)
    return s
sa, sb = mk(ifa), mk(ifb)
heap, n = [], 0
def out(sock, data):
    for _ in range(100):
        try:
            sock.send(data); return
        except BlockingIOError:
            time.sleep(0.0002)
        except OSError:
            return
print('ready', flush=True)
while True:
    timeout = max(0.0, heap[0][0] - time.monotonic()) if heap else None
    r, _, _ = select.select([sa, sb], [], [], timeout)
    for s in r:
        a2b = s is sa
        dst = sb if a2b else sa
        loss, delay, reorder = imp[a2b]
        for _ in range(512):
            try:
                data, addr = s.recvfrom(65535)
            except BlockingIOError:
                break
            if addr[2] == socket.PACKET_OUTGOING:
                continue
            if loss and random.random() < loss:
                continue
            if delay and not (reorder and random.random() < reorder):
                n += 1
                heapq.heappush(heap, (time.monotonic() + delay / 1000.0, n, dst, data))
            else:
                out(dst, data)
    now = time.monotonic()
    while heap and heap[0][0] <= now:
        _, _, dst, data = heapq.heappop(heap)
        out(dst, data)
`;

export interface Impairment {
  /** Fraction 0..1 of frames dropped. */
  loss?: number;
  delayMs?: number;
  /** Fraction 0..1 of frames sent at once instead of after delayMs (netem's reorder). */
  reorder?: number;
}

export interface NetdumpLab {
  lab: Lab;
  /** Client, relay (or nothing: a direct veth pair) and server namespaces. */
  a: string;
  b: string;
  r: string | null;
  ifA: string;
  /** The server's end of its link. */
  ifB: string;
  ipA: string;
  ipB: string;
  destroy(): void;
}

let labN = 0;

/**
 * Client ns `a` and server ns `b`; with `link` set, a relay ns between them that impairs client→server frames
 * (and server→client ones with `back`). Addresses 10.<pid>.<n>.1 (client) and .2 (server).
 */
export async function netdumpLab(link?: Impairment, back?: Impairment, opts: { clientAddr?: boolean } = {}): Promise<NetdumpLab> {
  const lab = new Lab('nd');
  const subnet = `10.${150 + (process.pid % 100)}.${(labN++ * 7 + (process.pid >> 7)) % 250}`;
  try {
    const a = lab.ns('a');
    const b = lab.ns('b');
    const ifA = `${lab.tag}A`.slice(-15);
    const ifB = `${lab.tag}B`.slice(-15);
    let r: string | null = null;
    if (link) {
      r = lab.ns('r');
      const ra = `${lab.tag}ra`.slice(-15);
      const rb = `${lab.tag}rb`.slice(-15);
      lab.veth(a, ifA, r, ra);
      lab.veth(r, rb, b, ifB);
      for (const [ns, dev] of [[a, ifA], [r, ra], [r, rb], [b, ifB]]) {
        // Frames must stay MTU-sized for the relay to pass them on (no TSO/GSO super-frames from TCP baselines) and
        // carry finished checksums (veth leaves them CHECKSUM_PARTIAL, which a packet socket copies out unfinished).
        must('ip', ['netns', 'exec', ns, 'ethtool', '-K', dev, 'tx', 'off', 'tso', 'off', 'gso', 'off', 'gro', 'off']);
      }
      const fmt = (i?: Impairment) => `${i?.loss ?? 0},${i?.delayMs ?? 0},${i?.reorder ?? 0}`;
      const relay = lab.spawn(r, ['python3', '-u', '-c', RELAY_PY, ra, rb, String(process.pid), fmt(link), fmt(back)]);
      await waitLine(relay, 'ready', 10000);
    } else {
      lab.veth(a, ifA, b, ifB);
    }
    const ipA = `${subnet}.1`;
    const ipB = `${subnet}.2`;
    if (opts.clientAddr !== false) lab.addr(a, ifA, `${ipA}/24`);
    lab.addr(b, ifB, `${ipB}/24`);
    return { lab, a, b, r, ifA, ifB, ipA, ipB, destroy: () => lab.destroy() };
  } catch (e) {
    lab.destroy();
    throw e;
  }
}

function waitLine(p: ChildProcess, word: string, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let buf = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`no '${word}' from helper within ${ms} ms: ${err}`)), ms);
    p.stderr?.on('data', (d) => { err += d; });
    p.stdout?.on('data', (d) => {
      buf += d;
      if (buf.includes(word)) { clearTimeout(timer); resolve(); }
    });
    p.on('exit', (code) => { clearTimeout(timer); reject(new Error(`helper exited (${code}) before '${word}': ${err}`)); });
  });
}

export interface ServerDump {
  client: string;
  vmcore: string;
  info: string;
  status: string;
  bytes: number;
  messages: number;
  duplicates: number;
  index: number;
  kdh: { hostname: string; panicstring: string; dumplength: number; parityOk: boolean } | null;
}

export interface RunningServer {
  dir: string;
  proc: ChildProcess;
  /** The server's {"event":"dump"} records, in order. */
  dumps: ServerDump[];
  /** Every other JSON line it printed (link-down/up/gone, write-error, stop). */
  events: Record<string, unknown>[];
  next(count?: number, ms?: number): Promise<ServerDump[]>;
}

/** `rawpoll netdump-server --json` in the server namespace, writing into a fresh temporary directory. */
export async function startServer(l: NetdumpLab, extra: string[] = []): Promise<RunningServer> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rawpoll-nd-'));
  const proc = l.lab.spawn(l.b, [process.execPath, RAWPOLL, 'netdump-server', '--dir', dir, '--bind', l.ipB, '--json', ...extra]);
  const dumps: ServerDump[] = [];
  const events: Record<string, unknown>[] = [];
  const waiters: (() => void)[] = [];
  let buf = '';
  proc.stdout!.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (line.trim()) {
        const j = JSON.parse(line);
        if (j.event === 'dump') dumps.push(j);
        else events.push(j);
      }
      waiters.splice(0).forEach((w) => w());
    }
  });
  let seen = 0;
  // Wait until the herald port is bound: a UDP probe answered by nothing is fine, we just poll `ss`.
  const t0 = Date.now();
  while (!must('ip', ['netns', 'exec', l.b, 'ss', '-uln']).includes(`${l.ipB}:20023`)) {
    if (Date.now() - t0 > 10000 || proc.exitCode !== null) throw new Error('netdump-server did not start');
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    dir, proc, dumps, events,
    next(count = 1, ms = 120000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`server reported ${dumps.length - seen} of ${count} dumps in ${ms} ms`)), ms);
        const check = () => {
          if (dumps.length - seen >= count) {
            clearTimeout(timer);
            const got = dumps.slice(seen, seen + count);
            seen += count;
            resolve(got);
          } else waiters.push(check);
        };
        check();
      });
    },
  };
}

export function runClient(l: NetdumpLab, file: string, extra: string[] = []): Promise<RunResult> {
  return rawpollAsync(l.a, ['netdump', '-i', l.ifA, '--server', l.ipB, '--file', file, '--json', ...extra]);
}

export function sha256(file: string): string {
  return crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

export function randomFile(bytes: number): string {
  const f = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'rawpoll-ndin-')), 'core.bin');
  const fd = fs.openSync(f, 'w');
  for (let done = 0; done < bytes;) {
    const n = Math.min(1 << 20, bytes - done);
    fs.writeSync(fd, crypto.randomBytes(n));
    done += n;
  }
  fs.closeSync(fd);
  return f;
}

// ---- benchmark ----

export interface NetdumpBenchRow {
  link: string;
  name: string;
  MB: number;
  seconds: number;
  MBps: number;
  retransmits: number | null;
  intact: boolean;
}

/** socat TCP file copy from a to b over the same lab link: the stack's own reliable transfer, for scale. */
export async function socatBaseline(l: NetdumpLab, file: string): Promise<{ seconds: number; intact: boolean }> {
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'rawpoll-ndsocat-')), 'out.bin');
  const port = 20000 + (process.pid % 5000);
  const srv = l.lab.spawn(l.b, ['socat', '-u', `TCP-LISTEN:${port},bind=${l.ipB},reuseaddr`, `CREATE:${out}`]);
  const t0 = Date.now();
  while (!must('ip', ['netns', 'exec', l.b, 'ss', '-tln']).includes(`:${port}`)) {
    if (Date.now() - t0 > 5000) throw new Error('socat did not listen');
    await new Promise((r) => setTimeout(r, 20));
  }
  const start = process.hrtime.bigint();
  await new Promise<void>((resolve, reject) => {
    const c = spawn('ip', ['netns', 'exec', l.a, 'socat', '-u', `OPEN:${file}`, `TCP:${l.ipB}:${port}`]);
    let err = '';
    c.stderr.on('data', (d) => { err += d; });
    c.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`socat client exit ${code}: ${err}`))));
  });
  await new Promise<void>((resolve) => (srv.exitCode !== null ? resolve() : srv.on('exit', () => resolve())));
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const intact = sha256(out) === sha256(file);
  fs.rmSync(path.dirname(out), { recursive: true, force: true });
  return { seconds, intact };
}

async function measureLink(linkName: string, link: Impairment | undefined, mb: number, windows: number[]): Promise<NetdumpBenchRow[]> {
  const rows: NetdumpBenchRow[] = [];
  const l = await netdumpLab(link);
  const file = randomFile(Math.round(mb * 1e6));
  const want = sha256(file);
  let s: RunningServer | null = null;
  try {
    s = await startServer(l);
    for (const w of windows) {
      const r = await runClient(l, file, ['--window', String(w)]);
      if (r.code !== 0) throw new Error(`netdump --window ${w} failed: ${r.stderr}`);
      const j = JSON.parse(r.stdout);
      const [d] = await s.next();
      rows.push({
        link: linkName, name: w === 0 ? 'netdump, kernel 64 KiB rounds' : `netdump --window ${w}`, MB: mb,
        seconds: j.seconds, MBps: j.MBps, retransmits: j.retransmits, intact: sha256(d.vmcore) === want,
      });
      fs.rmSync(d.vmcore);
    }
    const b = await socatBaseline(l, file);
    rows.push({ link: linkName, name: 'socat TCP file copy', MB: mb, seconds: b.seconds, MBps: Math.round((mb / b.seconds) * 1000) / 1000, retransmits: null, intact: b.intact });
  } finally {
    l.destroy();
    if (s) fs.rmSync(s.dir, { recursive: true, force: true });
    fs.rmSync(path.dirname(file), { recursive: true, force: true });
  }
  return rows;
}

/**
 * The netdump entry of `npm run bench`: `mb` MB over a plain veth pair, and `delayMb` MB over a 20 ms delay link
 * (100 MB there would take the kernel's rounds ~45 s alone; the MB/s figure does not depend on the size).
 */
export async function benchNetdump(mb = 100, delayMb = 20): Promise<NetdumpBenchRow[]> {
  const rows = await measureLink('veth', undefined, mb, [0, 64, 256]);
  rows.push(...(await measureLink('20ms delay', { delayMs: 20 }, delayMb, [0, 64, 256, 512])));
  return rows;
}

export function printNetdumpBench(rows: NetdumpBenchRow[]): void {
  console.log('netdump: MB/s per mode (sha256 of the received file checked), socat TCP copy on the same link for scale');
  for (const r of rows) {
    const base = rows.find((x) => x.link === r.link && x.name.includes('kernel'))!;
    console.log(`  ${r.link.padEnd(11)} ${r.name.padEnd(30)} ${String(r.MB).padStart(4)} MB ${r.seconds.toFixed(2).padStart(7)} s ` +
      `${r.MBps.toFixed(2).padStart(8)} MB/s  ${(r.MBps / base.MBps).toFixed(1).padStart(5)}x rounds` +
      `  retransmits ${r.retransmits ?? '-'}  ${r.intact ? 'intact' : 'CORRUPT'}`);
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const mb = Number(process.argv[2] ?? 100);
  const delayMb = Number(process.argv[3] ?? 20);
  benchNetdump(mb, delayMb).then(printNetdumpBench).catch((e) => {
    console.error(e);
    process.exitCode = 1;
  });
}
