/**
 * The bench's C peers: small loops written to a temp dir and compiled at run time with `cc -O2` (the pcap ones with
 * -lpcap), so every ratio in the tables is against a ceiling measured in the same run on the same lab. Each prints
 * one JSON line on stdout; readiness ("ready") and errors go to stderr.
 *
 *   pcap-inject IF HEXFRAME COUNT
 *       pcap_create/activate like our binding (non-blocking, immediate, the naive loop's never-matching filter), then
 *       pcap_inject of the same frame COUNT times; EAGAIN waits in poll(POLLOUT), ENOBUFS sleeps 20 µs, both retried,
 *       so "sent" means sent.  -> {sent, retries, seconds, pps}
 *   sendmmsg IF HEXFRAME COUNT BATCH THREADS BYPASS
 *       AF_PACKET SOCK_RAW, protocol 0 (never handed received frames), PACKET_QDISC_BYPASS if BYPASS=1, one socket per
 *       thread, sendmmsg(MSG_DONTWAIT) of BATCH iovecs pointing at the one frame; EAGAIN/ENOBUFS retried as above
 *       (the same policy as the native engine).  -> {sent, retries, seconds, pps}
 *   pcap-count IF BUFFER_BYTES FILTER IDLE_S
 *       pcap_create with the sink's settings (snaplen 65535, promiscuous, not immediate: TPACKET_V3, timeout 10 ms,
 *       BUFFER_BYTES ring, non-blocking), poll() + pcap_dispatch(-1) with a callback that only counts. Ends IDLE_S
 *       after the last frame (once one came) or on SIGINT/SIGTERM.  -> {received, psRecv, dropped, ifdropped, seconds}
 *   recvmmsg PORT RCVBUF_BYTES IDLE_S [BATCH]
 *       a UDP socket on 0.0.0.0:PORT with SO_RCVBUFFORCE RCVBUF_BYTES, recvmmsg(MSG_DONTWAIT) BATCH (default 256, at
 *       most 256) at a time after poll(); ends like pcap-count. dropped = the socket's drops column in /proc/net/udp.
 *       -> {received, dropped, rcvbuf, batch, seconds}
 *   nc-send DST_IP PORT COUNT RATE
 *       a UDP socket bound to port 6665 (netconsole's source port) sending COUNT extended netconsole records
 *       "6,SEQ,USEC,-;rawpoll bench line SEQ" + newline, SEQ from 0, at RATE datagrams/s on an absolute schedule
 *       (record i is due at start + i/RATE; when behind, up to 64 due ones go in one blocking sendmmsg).
 *       -> {sent, seconds, pps}
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const COMMON = String.raw`
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}
static volatile sig_atomic_t stop_flag = 0;
static void on_stop(int s) { (void)s; stop_flag = 1; }
static void catch_stop(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_stop;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
}
/*
 * The receivers' loop: waits on fd (50 ms at most), lets drain() read all that is there (it returns the frames read,
 * or -1 to stop), and ends on a signal or idle s after the last frame once frames came. Counts into *got; returns
 * the seconds from the first frame seen to the last.
 */
static double receive_until_idle(int fd, double idle, long (*drain)(void*), void* ctx, unsigned long long* got) {
  double first = 0, last = 0;
  while (!stop_flag) {
    struct pollfd pf = {fd, POLLIN, 0};
    poll(&pf, 1, 50);
    long r = drain(ctx);
    if (r < 0) break;
    *got += (unsigned long long)r;
    double t = now_s();
    if (r > 0) { if (!first) first = t; last = t; }
    else if (*got && t - last >= idle) break;
  }
  return last - first;
}
static size_t unhex(const char* h, unsigned char* out, size_t cap) {
  size_t n = 0;
  while (h[0] && h[1] && n < cap) {
    unsigned v;
    if (sscanf(h, "%2x", &v) != 1) break;
    out[n++] = (unsigned char)v;
    h += 2;
  }
  return n;
}
static void backoff(int fd, int e) {
  if (e == ENOBUFS) {
    struct timespec ts = {0, 20000};
    nanosleep(&ts, NULL);
  } else {
    struct pollfd p = {fd, POLLOUT, 0};
    poll(&p, 1, 10);
  }
}
`;

/**
 * The pcap loops' common start: create, activate, filter, non-blocking. NULL (having said why) on failure.
 * immediate = 1 for the sender's handle (as PcapLink's), 0 with `bufsize` for a capture (as sink --capture's).
 */
const PCAP_OPEN = String.raw`
#include <pcap/pcap.h>
static pcap_t* open_pcap(const char* ifname, int immediate, int promisc, int bufsize, const char* filter) {
  char err[PCAP_ERRBUF_SIZE];
  pcap_t* p = pcap_create(ifname, err);
  if (!p) { fprintf(stderr, "pcap_create: %s\n", err); return NULL; }
  pcap_set_snaplen(p, 65535);
  pcap_set_promisc(p, promisc);
  pcap_set_immediate_mode(p, immediate);
  pcap_set_timeout(p, 10);
  if (bufsize > 0) pcap_set_buffer_size(p, bufsize);
  if (pcap_activate(p) < 0) { fprintf(stderr, "pcap_activate: %s\n", pcap_geterr(p)); return NULL; }
  struct bpf_program prog;
  if (pcap_compile(p, &prog, filter, 1, PCAP_NETMASK_UNKNOWN) != 0 || pcap_setfilter(p, &prog) != 0) {
    fprintf(stderr, "filter: %s\n", pcap_geterr(p));
    return NULL;
  }
  pcap_freecode(&prog);
  if (pcap_setnonblock(p, 1, err) != 0) { fprintf(stderr, "pcap_setnonblock: %s\n", err); return NULL; }
  return p;
}
`;

export const C_SOURCES: Record<string, { src: string; pcap: boolean; threads?: boolean }> = {
  'pcap-inject': {
    pcap: true,
    src: COMMON + PCAP_OPEN + String.raw`
int main(int argc, char** argv) {
  if (argc < 4) { fprintf(stderr, "usage: pcap-inject IF HEXFRAME COUNT\n"); return 2; }
  unsigned char frame[2048];
  size_t len = unhex(argv[2], frame, sizeof frame);
  unsigned long long count = strtoull(argv[3], NULL, 10);
  pcap_t* p = open_pcap(argv[1], 1, 0, 0, "arp and arp[6:2] = 9");
  if (!p) return 1;
  int fd = pcap_get_selectable_fd(p);
  unsigned long long sent = 0, retries = 0;
  double t0 = now_s();
  while (sent < count) {
    if (pcap_inject(p, frame, len) == (int)len) { sent++; continue; }
    int e = errno;
    if (e == EAGAIN || e == EWOULDBLOCK || e == ENOBUFS || e == EINTR) { retries++; backoff(fd, e); continue; }
    fprintf(stderr, "pcap_inject: %s\n", pcap_geterr(p));
    break;
  }
  double s = now_s() - t0;
  printf("{\"sent\":%llu,\"retries\":%llu,\"seconds\":%.6f,\"pps\":%.0f}\n", sent, retries, s, s > 0 ? sent / s : 0);
  pcap_close(p);
  return sent == count ? 0 : 1;
}
`,
  },
  sendmmsg: {
    pcap: false,
    threads: true,
    src: COMMON + String.raw`
#include <linux/if_packet.h>
#include <net/if.h>
#include <pthread.h>
#include <sys/socket.h>
static unsigned char frame[2048];
static size_t flen;
static unsigned ifindex, batch;
static int bypass;
struct job { unsigned long long n, sent, retries; int err; };
static void* run(void* arg) {
  struct job* j = arg;
  int fd = socket(AF_PACKET, SOCK_RAW, 0);
  if (fd < 0) { j->err = errno; return NULL; }
  struct sockaddr_ll sll;
  memset(&sll, 0, sizeof sll);
  sll.sll_family = AF_PACKET;
  sll.sll_ifindex = (int)ifindex;
  if (bind(fd, (struct sockaddr*)&sll, sizeof sll) < 0) { j->err = errno; close(fd); return NULL; }
  if (bypass) { int one = 1; setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one); }
  struct mmsghdr* m = calloc(batch, sizeof *m);
  struct iovec iov = {frame, flen};
  for (unsigned i = 0; i < batch; i++) { m[i].msg_hdr.msg_iov = &iov; m[i].msg_hdr.msg_iovlen = 1; }
  while (j->sent < j->n) {
    unsigned want = j->n - j->sent < batch ? (unsigned)(j->n - j->sent) : batch;
    int r = sendmmsg(fd, m, want, MSG_DONTWAIT);
    if (r > 0) { j->sent += (unsigned)r; continue; }
    int e = r < 0 ? errno : EIO;
    if (e == EAGAIN || e == EWOULDBLOCK || e == ENOBUFS || e == EINTR) { j->retries++; backoff(fd, e); continue; }
    j->err = e;
    break;
  }
  free(m);
  close(fd);
  return NULL;
}
int main(int argc, char** argv) {
  if (argc < 7) { fprintf(stderr, "usage: sendmmsg IF HEXFRAME COUNT BATCH THREADS BYPASS\n"); return 2; }
  ifindex = if_nametoindex(argv[1]);
  if (!ifindex) { fprintf(stderr, "no interface %s\n", argv[1]); return 1; }
  flen = unhex(argv[2], frame, sizeof frame);
  unsigned long long count = strtoull(argv[3], NULL, 10);
  batch = (unsigned)atoi(argv[4]);
  unsigned threads = (unsigned)atoi(argv[5]);
  bypass = atoi(argv[6]);
  if (batch < 1) batch = 1;
  if (threads < 1) threads = 1;
  struct job* jobs = calloc(threads, sizeof *jobs);
  pthread_t* tid = calloc(threads, sizeof *tid);
  for (unsigned i = 0; i < threads; i++) jobs[i].n = count / threads + (i < count % threads ? 1 : 0);
  double t0 = now_s();
  for (unsigned i = 0; i < threads; i++) pthread_create(&tid[i], NULL, run, &jobs[i]);
  unsigned long long sent = 0, retries = 0;
  int err = 0;
  for (unsigned i = 0; i < threads; i++) {
    pthread_join(tid[i], NULL);
    sent += jobs[i].sent;
    retries += jobs[i].retries;
    if (jobs[i].err) err = jobs[i].err;
  }
  double s = now_s() - t0;
  if (err) fprintf(stderr, "sendmmsg: %s\n", strerror(err));
  printf("{\"sent\":%llu,\"retries\":%llu,\"seconds\":%.6f,\"pps\":%.0f}\n", sent, retries, s, s > 0 ? sent / s : 0);
  return sent == count ? 0 : 1;
}
`,
  },
  'pcap-count': {
    pcap: true,
    src: COMMON + PCAP_OPEN + String.raw`
static void on_frame(u_char* u, const struct pcap_pkthdr* h, const u_char* b) { (void)h; (void)b; (*(long*)u)++; }
static long drain_pcap(void* ctx) {
  pcap_t* p = ctx;
  long n = 0;
  for (;;) {
    int r = pcap_dispatch(p, -1, on_frame, (u_char*)&n);
    if (r == PCAP_ERROR) { fprintf(stderr, "pcap_dispatch: %s\n", pcap_geterr(p)); return -1; }
    if (r <= 0) return n;
  }
}
int main(int argc, char** argv) {
  if (argc < 5) { fprintf(stderr, "usage: pcap-count IF BUFFER_BYTES FILTER IDLE_S\n"); return 2; }
  catch_stop();
  double idle = atof(argv[4]);
  pcap_t* p = open_pcap(argv[1], 0, 1, atoi(argv[2]), argv[3]);
  if (!p) return 1;
  fprintf(stderr, "ready\n");
  unsigned long long got = 0;
  double seconds = receive_until_idle(pcap_get_selectable_fd(p), idle, drain_pcap, p, &got);
  struct pcap_stat st;
  memset(&st, 0, sizeof st);
  pcap_stats(p, &st);
  printf("{\"received\":%llu,\"psRecv\":%u,\"dropped\":%u,\"ifdropped\":%u,\"seconds\":%.6f}\n",
         got, st.ps_recv, st.ps_drop, st.ps_ifdrop, seconds);
  pcap_close(p);
  return 0;
}
`,
  },
  recvmmsg: {
    pcap: false,
    src: COMMON + String.raw`
#include <netinet/in.h>
#include <sys/socket.h>
#define B 256
static long long udp_drops(unsigned port) {
  FILE* f = fopen("/proc/net/udp", "r");
  if (!f) return -1;
  char line[512];
  long long drops = -1;
  if (!fgets(line, sizeof line, f)) { fclose(f); return -1; }
  while (fgets(line, sizeof line, f)) {
    unsigned lport;
    if (sscanf(line, " %*d: %*x:%x", &lport) != 1 || lport != port) continue;
    char* last = strrchr(line, ' ');
    if (last) drops = atoll(last + 1);
  }
  fclose(f);
  return drops;
}
struct ctx { int fd; struct mmsghdr* m; };
static unsigned batch = B;
static long drain_socket(void* p) {
  struct ctx* c = p;
  long n = 0;
  for (;;) {
    int r = recvmmsg(c->fd, c->m, batch, MSG_DONTWAIT, NULL);
    if (r <= 0) return n;
    n += r;
  }
}
int main(int argc, char** argv) {
  if (argc < 4) { fprintf(stderr, "usage: recvmmsg PORT RCVBUF_BYTES IDLE_S [BATCH]\n"); return 2; }
  catch_stop();
  unsigned port = (unsigned)atoi(argv[1]);
  int rcv = atoi(argv[2]);
  double idle = atof(argv[3]);
  if (argc > 4) batch = (unsigned)atoi(argv[4]);
  if (batch < 1 || batch > B) batch = B;
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) { perror("socket"); return 1; }
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcv, sizeof rcv) < 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
  int granted = 0;
  socklen_t gl = sizeof granted;
  getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &granted, &gl);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  if (bind(fd, (struct sockaddr*)&a, sizeof a) < 0) { perror("bind"); return 1; }
  static unsigned char bufs[B][2048];
  struct iovec iov[B];
  struct mmsghdr m[B];
  memset(m, 0, sizeof m);
  for (int i = 0; i < B; i++) {
    iov[i].iov_base = bufs[i];
    iov[i].iov_len = sizeof bufs[i];
    m[i].msg_hdr.msg_iov = &iov[i];
    m[i].msg_hdr.msg_iovlen = 1;
  }
  fprintf(stderr, "ready\n");
  struct ctx c = {fd, m};
  unsigned long long got = 0;
  double seconds = receive_until_idle(fd, idle, drain_socket, &c, &got);
  printf("{\"received\":%llu,\"dropped\":%lld,\"rcvbuf\":%d,\"batch\":%u,\"seconds\":%.6f}\n", got, udp_drops(port), granted, batch, seconds);
  close(fd);
  return 0;
}
`,
  },
  'nc-send': {
    pcap: false,
    src: COMMON + String.raw`
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#define G 64
int main(int argc, char** argv) {
  if (argc < 5) { fprintf(stderr, "usage: nc-send DST_IP PORT COUNT RATE\n"); return 2; }
  unsigned long long count = strtoull(argv[3], NULL, 10);
  double rate = atof(argv[4]);
  if (rate <= 0) { fprintf(stderr, "nc-send: RATE must be > 0\n"); return 2; }
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) { perror("socket"); return 1; }
  struct sockaddr_in src, dst;
  memset(&src, 0, sizeof src);
  src.sin_family = AF_INET;
  src.sin_port = htons(6665);
  if (bind(fd, (struct sockaddr*)&src, sizeof src) < 0) { perror("bind 6665"); return 1; }
  memset(&dst, 0, sizeof dst);
  dst.sin_family = AF_INET;
  dst.sin_port = htons((uint16_t)atoi(argv[2]));
  if (inet_pton(AF_INET, argv[1], &dst.sin_addr) != 1) { fprintf(stderr, "nc-send: bad address %s\n", argv[1]); return 2; }
  if (connect(fd, (struct sockaddr*)&dst, sizeof dst) < 0) { perror("connect"); return 1; }
  static char bufs[G][128];
  struct iovec iov[G];
  struct mmsghdr m[G];
  memset(m, 0, sizeof m);
  unsigned long long sent = 0;
  double t0 = now_s();
  while (sent < count) {
    double el = now_s() - t0;
    unsigned long long due = (unsigned long long)(el * rate) + 1;
    if (due > count) due = count;
    if (due <= sent) {
      /* Sleep until the next record is due; short waits spin (a timer on a VM overshoots by tens of µs). */
      double wait = (double)sent / rate - el;
      if (wait > 100e-6) {
        struct timespec ts = {0, (long)((wait - 50e-6) * 1e9)};
        nanosleep(&ts, NULL);
      }
      continue;
    }
    unsigned n = due - sent > G ? G : (unsigned)(due - sent);
    for (unsigned i = 0; i < n; i++) {
      unsigned long long seq = sent + i;
      int len = snprintf(bufs[i], sizeof bufs[i], "6,%llu,%llu,-;rawpoll bench line %llu\n", seq, (unsigned long long)((now_s() - t0) * 1e6), seq);
      iov[i].iov_base = bufs[i];
      iov[i].iov_len = (size_t)len;
      m[i].msg_hdr.msg_iov = &iov[i];
      m[i].msg_hdr.msg_iovlen = 1;
    }
    int r = sendmmsg(fd, m, n, 0);
    if (r > 0) sent += (unsigned)r;
    else if (r < 0 && errno != EINTR && errno != ENOBUFS && errno != EAGAIN) { perror("sendmmsg"); break; }
  }
  double s = now_s() - t0;
  printf("{\"sent\":%llu,\"seconds\":%.6f,\"pps\":%.0f}\n", sent, s, s > 0 ? sent / s : 0);
  close(fd);
  return sent == count ? 0 : 1;
}
`,
  },
};

export interface CTools {
  dir: string;
  /** Path of each compiled loop, or null (then `why` says why: no cc, no pcap.h, a compile error). */
  bin: Record<string, string | null>;
  why: Record<string, string>;
  /** Removes the temp dir with the sources and binaries. */
  remove(): void;
}

/** Writes and compiles every loop in C_SOURCES into a fresh temp dir. Never throws for a missing compiler. */
export function buildCTools(): CTools {
  const dir = mkdtempSync(join(tmpdir(), 'rpbench-c-'));
  const bin: Record<string, string | null> = {};
  const why: Record<string, string> = {};
  const cc = process.env.CC ?? 'cc';
  const hasCc = spawnSync('sh', ['-c', `command -v ${cc}`]).status === 0;
  for (const [name, s] of Object.entries(C_SOURCES)) {
    bin[name] = null;
    if (!hasCc) {
      why[name] = `no C compiler (${cc})`;
      continue;
    }
    const src = join(dir, `${name}.c`);
    const out = join(dir, name);
    writeFileSync(src, s.src);
    const args = ['-O2', '-o', out, src, ...(s.threads ? ['-pthread'] : []), ...(s.pcap ? ['-lpcap'] : [])];
    const r = spawnSync(cc, args);
    if (r.status === 0) bin[name] = out;
    else why[name] = `cc failed: ${(r.stderr?.toString() ?? '').trim().split('\n').slice(0, 2).join(' / ') || `exit ${r.status}`}`;
  }
  return { dir, bin, why, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * try/finally does not run when the bench is killed by SIGINT/SIGTERM (Ctrl-C): this does the same cleanup then.
 * It removes only what this process made: the namespaces its Labs created (tags rp<pid>x<n>/nd<pid>x<n>, see
 * test/helpers/lab.ts; their veths go with them, their processes are killed first) and what `cleanup` removes.
 */
export function cleanupOnSignal(cleanup: () => void): void {
  const ours = new RegExp(`^(rp|nd)${process.pid % 100000}x\\d+[a-z]*$`);
  const handler = (sig: NodeJS.Signals) => {
    const list = spawnSync('ip', ['netns', 'list']).stdout?.toString() ?? '';
    for (const ns of list.split('\n').map((l) => l.split(' ')[0]).filter((n) => ours.test(n))) {
      const pids = spawnSync('ip', ['netns', 'pids', ns]).stdout?.toString().split('\n').filter(Boolean) ?? [];
      for (const pid of pids) spawnSync('kill', ['-9', pid]);
      spawnSync('ip', ['netns', 'del', ns]);
    }
    try {
      cleanup();
    } finally {
      console.error(`\nbench: ${sig}: removed its namespaces and temp files`);
      process.exit(sig === 'SIGINT' ? 130 : 143);
    }
  };
  process.once('SIGINT', handler);
  process.once('SIGTERM', handler);
}
