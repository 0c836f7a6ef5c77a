// rawpoll's native TX fast path (Linux).
//
// Why it exists: the pcap engine hands libpcap one frame per pcap_inject, one syscall per packet. Here JS hands over a
// few template frames and their patch plan once (plan.h: which fields change per frame, from which counter, feeding
// which checksum); a loop on a libuv worker thread copies them into a batch, applies the plan, and hands up to
// `batch` frames to the kernel per sendmmsg() call. No JS runs per packet, and no header offset is known here.
//
// Exports:
//   open(ifname, {qdiscBypass?, sndbuf?}) -> {fd, ifindex, qdiscBypass}
//   close(fd)
//   sendBatch(fd, buf, offsets: Uint32Array, lengths: Uint32Array) -> {sent, waits, errno, error}
//   blast(params, onProgress(p), onDone(err, result)) -> {stop(), threads}  (onDone once per sender thread)
//   and, from pcap.cc, our libpcap binding: pcapOpen, pcapTstampTypes, linkState, pcapLibVersion
// Nothing is dropped silently: EAGAIN/ENOBUFS wait for the queue (poll / a short sleep) and are counted as `waits`;
// a link that is down (ENETDOWN, or no carrier) keeps the schedule: frames due meanwhile are `notSentLinkDown`;
// a vanished interface (ENXIO) or any other error stops the run and the frames refused are returned as `notSent`.

#include <napi.h>

#include "linkstate.h"
#include "plan.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <string.h>
#include <pthread.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

namespace rawpoll_pcap {
void RegisterPcap(Napi::Env env, Napi::Object exports);  // pcap.cc: our libpcap binding
}
namespace rawpoll_plan {
// planwriter.cc: reads {frames, offsets, lengths, flows, order, nFlows, plan, ipId, seqStart} (throws what is wrong,
// prefixed with `who`), and the pcap engine's PlanWriter.
void LoadFrames(Napi::Env env, Napi::Object p, const char* who, Frames* fr);
void RegisterPlanWriter(Napi::Env env, Napi::Object exports);
}
namespace rawpoll_rx {
void RegisterRx(Napi::Env env, Napi::Object exports);  // rx.cc: the receive engines
}
namespace rawpoll_unixdgram {
void RegisterUnixDgram(Napi::Env env, Napi::Object exports);  // unixdgram.cc: AF_UNIX SOCK_DGRAM for collect --syslog
}

namespace {

constexpr uint64_t NS = 1000000000ull;
// Sleeping is only precise to the scheduler's wake-up latency (tens of µs on a VM): sleep until this close to the
// deadline, then busy-wait the rest on the clock. That is what keeps sub-µs gaps from collapsing.
constexpr uint64_t SPIN_NS = 200000;
constexpr unsigned MAX_SLOTS = 1024;
// A queue that stays full this long is not congestion any more (link down, driver stuck): fail instead of hanging.
constexpr uint64_t STALL_NS = 5 * NS;
// How often the send loop reads the link's flags. Carrier loss shows only there: sendmmsg still succeeds and the
// frames are dropped (veth with its peer down; a NIC's noop qdisc), so this bounds what could go unaccounted.
constexpr uint64_t LINK_CHECK_NS = 1000000;

inline uint64_t clock_ns(clockid_t c) {
  timespec ts;
  clock_gettime(c, &ts);
  return uint64_t(ts.tv_sec) * NS + uint64_t(ts.tv_nsec);
}
inline uint64_t mono_ns() { return clock_ns(CLOCK_MONOTONIC); }

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Waits until `deadline` on clock `c`: coarse sleeps (re-checking `stop`), then a busy-wait for the last stretch
// (still checking `stop`: a stop() that lands in it must not let the first group out).
void wait_until(clockid_t c, uint64_t deadline, const std::atomic<bool>& stop) {
  for (;;) {
    uint64_t now = clock_ns(c);
    if (now >= deadline) return;
    uint64_t left = deadline - now;
    if (left <= SPIN_NS) break;
    uint64_t sl = left - SPIN_NS;
    if (sl > 50000000ull) sl = 50000000ull;  // wake at least every 50 ms to notice stop()
    timespec ts{time_t(sl / NS), long(sl % NS)};
    nanosleep(&ts, nullptr);
    if (stop.load(std::memory_order_relaxed)) return;
  }
  while (clock_ns(c) < deadline) {
    if (stop.load(std::memory_order_relaxed)) return;
    cpu_relax();
  }
}

// Sends msgs[0, n): retries EAGAIN/ENOBUFS by waiting for the queue; stops on any other error.
// Returns 0 or the errno of the hard failure; *sent = frames the kernel accepted.
int send_all(int fd, mmsghdr* msgs, unsigned n, unsigned* sent, uint64_t* waits) {
  unsigned done = 0;
  uint64_t stallSince = 0;
  while (done < n) {
    int r = sendmmsg(fd, msgs + done, n - done, MSG_DONTWAIT);
    if (r > 0) {
      done += unsigned(r);
      stallSince = 0;
      continue;
    }
    int e = r < 0 ? errno : EIO;
    if (e == EINTR) continue;
    if (e == EAGAIN || e == EWOULDBLOCK || e == ENOBUFS) {
      ++*waits;
      uint64_t now = mono_ns();
      if (!stallSince) stallSince = now;
      else if (now - stallSince > STALL_NS) { *sent = done; return ETIMEDOUT; }
      if (e == ENOBUFS) {
        // The driver's ring is full (qdisc bypass) or the socket is out of memory: poll() would not wait for that.
        timespec ts{0, 20000};
        nanosleep(&ts, nullptr);
      } else {
        pollfd p{fd, POLLOUT, 0};
        poll(&p, 1, 10);
      }
      continue;
    }
    *sent = done;
    return e;
  }
  *sent = done;
  return 0;
}

// 1: up and running; 0: down (administratively, or no carrier — for a veth, its peer down); -1: gone. By ifindex,
// so a new interface of the same name is not taken for the deleted one. An unexpected ioctl error says 1:
// sendmmsg will tell.
int link_state(int fd, int ifindex) {
  ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_ifindex = ifindex;
  if (ioctl(fd, SIOCGIFNAME, &ifr) < 0) return errno == ENODEV ? -1 : 1;
  rawpoll_link::State st;
  int e = rawpoll_link::read_state(fd, ifr.ifr_name, &st);
  if (e) return e == ENODEV ? -1 : 1;
  return st.up && st.carrier ? 1 : 0;
}

// ---- socket ----

// A second send socket like `fd`: same interface, protocol 0, send buffer and qdisc bypass. -1 on failure.
int clone_socket(int fd) {
  sockaddr_ll sll;
  socklen_t len = sizeof sll;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&sll), &len) < 0) return -1;
  int s = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
  if (s < 0) return -1;
  sockaddr_ll b;
  memset(&b, 0, sizeof b);
  b.sll_family = AF_PACKET;
  b.sll_ifindex = sll.sll_ifindex;
  if (bind(s, reinterpret_cast<sockaddr*>(&b), sizeof b) < 0) {
    close(s);
    return -1;
  }
  int v = 0;
  socklen_t vl = sizeof v;
  if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, &vl) == 0 && v > 0) {
    v /= 2;  // the kernel reports double what was set
    if (setsockopt(s, SOL_SOCKET, SO_SNDBUFFORCE, &v, sizeof v) < 0) setsockopt(s, SOL_SOCKET, SO_SNDBUF, &v, sizeof v);
  }
  vl = sizeof v;
  if (getsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &v, &vl) == 0 && v) setsockopt(s, SOL_PACKET, PACKET_QDISC_BYPASS, &v, sizeof v);
  return s;
}

Napi::Value Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "open(ifname, opts?): ifname must be a string");
  std::string ifname = info[0].As<Napi::String>();
  bool bypass = false;
  int sndbuf = 0;
  if (info.Length() > 1 && info[1].IsObject()) {
    Napi::Object o = info[1].As<Napi::Object>();
    if (o.Has("qdiscBypass")) bypass = o.Get("qdiscBypass").ToBoolean();
    if (o.Has("sndbuf") && o.Get("sndbuf").IsNumber()) sndbuf = o.Get("sndbuf").As<Napi::Number>().Int32Value();
  }
  unsigned ifindex = if_nametoindex(ifname.c_str());
  if (!ifindex) throw Napi::Error::New(env, "no such interface " + ifname + ": " + strerror(errno));
  // Protocol 0: the socket can send but is never handed received frames, so it costs nothing on the RX path.
  int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    int e = errno;
    throw Napi::Error::New(env, std::string("AF_PACKET socket: ") + strerror(e) +
                                    (e == EPERM ? " (needs root or CAP_NET_RAW)" : ""));
  }
  sockaddr_ll sll;
  memset(&sll, 0, sizeof sll);
  sll.sll_family = AF_PACKET;
  sll.sll_ifindex = int(ifindex);
  sll.sll_protocol = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&sll), sizeof sll) < 0) {
    int e = errno;
    close(fd);
    throw Napi::Error::New(env, "bind AF_PACKET to " + ifname + ": " + strerror(e));
  }
  if (sndbuf > 0) {
    // SO_SNDBUFFORCE passes rmem/wmem_max when we are root; fall back to the capped SO_SNDBUF.
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof sndbuf) < 0)
      setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
  }
  bool bypassOk = false;
  if (bypass) {
    // PACKET_QDISC_BYPASS (Linux 3.14): straight to the driver, no qdisc, no taps on this host (tcpdump on the
    // sending interface will not see these frames; the receiver does).
    int one = 1;
    bypassOk = setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one) == 0;
  }
  Napi::Object r = Napi::Object::New(env);
  r.Set("fd", fd);
  r.Set("ifindex", ifindex);
  r.Set("qdiscBypass", bypassOk);
  return r;
}

Napi::Value Close(const Napi::CallbackInfo& info) {
  if (info.Length() > 0 && info[0].IsNumber()) close(info[0].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}

Napi::Value ErrObj(Napi::Env env, unsigned sent, uint64_t waits, int err) {
  Napi::Object r = Napi::Object::New(env);
  r.Set("sent", sent);
  r.Set("waits", double(waits));
  r.Set("errno", err);
  r.Set("error", err ? Napi::Value(Napi::String::New(env, strerror(err))) : env.Null());
  return r;
}

// Synchronous: sends the frames buf[offsets[i], +lengths[i]) in sendmmsg batches. For tests and one-off bursts.
Napi::Value SendBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsNumber() || !info[1].IsBuffer() || !info[2].IsTypedArray() || !info[3].IsTypedArray())
    throw Napi::TypeError::New(env, "sendBatch(fd, buf, offsets: Uint32Array, lengths: Uint32Array)");
  int fd = info[0].As<Napi::Number>().Int32Value();
  auto buf = info[1].As<Napi::Buffer<uint8_t>>();
  auto offs = info[2].As<Napi::Uint32Array>();
  auto lens = info[3].As<Napi::Uint32Array>();
  if (offs.ElementLength() != lens.ElementLength()) throw Napi::RangeError::New(env, "offsets and lengths differ in length");
  size_t n = offs.ElementLength();
  for (size_t i = 0; i < n; i++)
    if (size_t(offs[i]) + lens[i] > buf.Length()) throw Napi::RangeError::New(env, "frame " + std::to_string(i) + " lies outside the buffer");
  std::vector<iovec> iov(n);
  std::vector<mmsghdr> msgs(n);
  memset(msgs.data(), 0, n * sizeof(mmsghdr));
  for (size_t i = 0; i < n; i++) {
    iov[i].iov_base = buf.Data() + offs[i];
    iov[i].iov_len = lens[i];
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  unsigned total = 0;
  uint64_t waits = 0;
  int err = 0;
  while (total < n && !err) {
    unsigned chunk = unsigned(std::min<size_t>(n - total, MAX_SLOTS)), sent = 0;
    err = send_all(fd, msgs.data() + total, chunk, &sent, &waits);
    total += sent;
  }
  return ErrObj(env, total, waits, err);
}

// ---- the paced send loop ----

struct Progress {
  uint64_t sent, bytes, waits, elapsedNs;
  unsigned worker;
};

// State the sender threads of one blast share. With one thread only `stop` is used; with several (unpaced only),
// they claim groups of frames from `claimed`; each frame's IP ID and seq follow from its run-wide index, so each
// number still goes out exactly once, but frames of different threads may interleave out of order on the wire.
struct Shared {
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> claimed{0};
};

struct Job {
  int fd = -1;
  bool multi = false;  // several threads: counters in `sh`
  int cpu = -1;        // pin the sending thread to this CPU (multi-thread mode), -1 = leave it
  unsigned worker = 0;
  std::shared_ptr<Shared> sh;
  rawpoll_plan::Frames fr;  // templates, order, plan; its counters (multi-thread: the first IP ID and seqs)
  // Multi-thread: a frame's seq follows from its run-wide index g alone — seq0 + (g / L) * perCycle[flow] +
  // rank[g % L], rank = how many earlier frames of that flow the order cycle holds — so threads share no counter
  // (atomics on one cache line would bounce between the CPUs on every frame).
  std::vector<uint32_t> perCycle, rank;
  uint64_t count = 0;         // 0 = until duration/stop
  double durationNs = 0, gapNs = 0, nsPerByte = 0, burstGapNs = 0;
  uint32_t burst = 1, batch = 64, progressMs = 200;
  uint64_t startAtRealNs = 0;
  int ifindex = 0;             // the interface the socket is bound to (link checks)
  bool stopOnLinkDown = false; // end the run (err ENETDOWN) instead of counting frames due while the link is down
  bool linkDown = false;
  uint64_t linkDownSince = 0, linkChecked = 0;
  // results
  uint64_t sent = 0, bytes = 0, waits = 0, notSent = 0;
  uint64_t notSentLinkDown = 0, linkOutages = 0, linkDownNs = 0;
  bool linkGone = false;
  int err = 0;
  uint64_t firstNs = 0, lastNs = 0, firstRealNs = 0, startedLateNs = 0;
  double lateSumNs = 0;
  uint64_t lateMaxNs = 0;
  uint64_t groups = 0;   // groups of the schedule sent (lateness is per group)
  uint64_t batches = 0;  // sendmmsg batches (send_all calls) they took
};

class BlastWorker : public Napi::AsyncProgressWorker<Progress> {
 public:
  BlastWorker(Napi::Function done, Napi::Function progress, std::shared_ptr<Job> job)
      : Napi::AsyncProgressWorker<Progress>(done, "rawpoll.blast"), job_(std::move(job)) {
    progress_.Reset(progress, 1);
  }

  void Execute(const ExecutionProgress& ep) override {
    // The default 50 µs timer slack would make every sleep overshoot; restore it for the next libuv job.
    int oldSlack = prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
    prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0);
    // Several senders: one per CPU, as trafgen forks one process per CPU. On veth the receive side runs on the
    // sender's CPU too, so spreading the senders spreads that work. Restore the libuv thread's affinity after.
    cpu_set_t oldSet;
    bool pinned = false;
    if (job_->cpu >= 0 && pthread_getaffinity_np(pthread_self(), sizeof oldSet, &oldSet) == 0) {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(job_->cpu, &set);
      pinned = pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0;
    }
    // Extra threads get their own socket (as trafgen's processes do): one socket shared by several CPUs makes them
    // contend on its send-buffer accounting on every frame.
    int own = -1;
    if (job_->worker > 0) {
      own = clone_socket(job_->fd);
      if (own >= 0) job_->fd = own;
    }
    Run(ep);
    if (own >= 0) close(own);
    if (pinned) pthread_setaffinity_np(pthread_self(), sizeof oldSet, &oldSet);
    if (oldSlack > 0) prctl(PR_SET_TIMERSLACK, oldSlack, 0, 0, 0);
  }

  void OnProgress(const Progress* p, size_t n) override {
    if (!n || progress_.IsEmpty()) return;
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    Napi::Object o = Napi::Object::New(env);
    o.Set("sent", double(p->sent));
    o.Set("bytes", double(p->bytes));
    o.Set("waits", double(p->waits));
    o.Set("elapsedNs", double(p->elapsedNs));
    o.Set("worker", p->worker);
    progress_.Call({o});
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    const Job& j = *job_;
    Napi::Object r = Napi::Object::New(env);
    r.Set("sent", double(j.sent));
    r.Set("bytes", double(j.bytes));
    r.Set("waits", double(j.waits));
    r.Set("notSent", double(j.notSent));
    r.Set("notSentLinkDown", double(j.notSentLinkDown));
    r.Set("linkOutages", double(j.linkOutages));
    r.Set("linkDownNs", double(j.linkDownNs));
    r.Set("linkGone", j.linkGone);
    r.Set("errno", j.err);
    r.Set("error", j.err ? Napi::Value(Napi::String::New(env, strerror(j.err))) : env.Null());
    r.Set("firstNs", double(j.firstNs));
    r.Set("lastNs", double(j.lastNs));
    r.Set("firstRealSec", double(j.firstRealNs / NS));
    r.Set("firstRealNsec", double(j.firstRealNs % NS));
    r.Set("startedLateNs", double(j.startedLateNs));
    r.Set("lateMaxNs", double(j.lateMaxNs));
    r.Set("lateMeanNs", j.groups ? j.lateSumNs / double(j.groups) : 0.0);
    r.Set("groups", double(j.groups));
    r.Set("batches", double(j.batches));  // sendmmsg calls
    r.Set("worker", j.worker);
    r.Set("multi", j.multi);
    r.Set("nextIpId", j.fr.ipId & 0xffff);  // multi-thread: the first ID; JS adds the run's frame count
    Napi::Array seq = Napi::Array::New(env, j.fr.seq.size());
    for (size_t i = 0; i < j.fr.seq.size(); i++) seq.Set(uint32_t(i), j.fr.seq[i]);
    r.Set("nextSeq", seq);
    Callback().Call({env.Null(), r});
  }

  void OnError(const Napi::Error& e) override {
    Napi::HandleScope scope(Env());
    Callback().Call({e.Value()});
  }

 private:
  std::shared_ptr<Job> job_;
  Napi::FunctionReference progress_;

  void Run(const ExecutionProgress& ep) {
    Job& j = *job_;
    const unsigned slots = std::min<unsigned>(MAX_SLOTS, std::max<unsigned>(j.batch, j.burst));
    std::vector<uint8_t> ring(size_t(slots) * j.fr.maxLen);
    std::vector<iovec> iov(slots);
    std::vector<mmsghdr> msgs(slots);
    memset(msgs.data(), 0, slots * sizeof(mmsghdr));
    for (unsigned s = 0; s < slots; s++) {
      iov[s].iov_base = ring.data() + size_t(s) * j.fr.maxLen;
      msgs[s].msg_hdr.msg_iov = &iov[s];
      msgs[s].msg_hdr.msg_iovlen = 1;
    }
    const bool paced = j.gapNs > 0 || j.nsPerByte > 0;
    const size_t L = j.fr.order.size();
    size_t pos = 0;  // index into order of the next frame
    uint64_t gBase = 0;  // multi-thread: run-wide index of the group's first frame

    if (j.startAtRealNs) {
      uint64_t now = clock_ns(CLOCK_REALTIME);
      if (now < j.startAtRealNs) wait_until(CLOCK_REALTIME, j.startAtRealNs, j.sh->stop);
      uint64_t after = clock_ns(CLOCK_REALTIME);
      j.startedLateNs = after > j.startAtRealNs ? after - j.startAtRealNs : 0;
    }
    const uint64_t t0 = mono_ns();
    double next = double(t0);  // deadline of the next group, CLOCK_MONOTONIC ns
    uint64_t lastReport = t0;
    const uint64_t reportNs = uint64_t(j.progressMs) * 1000000ull;

    while (!j.sh->stop.load(std::memory_order_relaxed)) {
      // --count is met by frames sent plus frames due while the link was down (the schedule does not wait for it).
      const uint64_t used = j.sent + j.notSentLinkDown;
      if (!j.multi && j.count && used >= j.count) break;
      uint64_t left = j.count && !j.multi ? j.count - used : UINT64_MAX;
      if (j.durationNs > 0) {
        double ref = paced ? next : double(mono_ns());
        if (ref - double(t0) >= j.durationNs - 1) break;  // -1 ns: the slots' float sum must not add a frame
      }
      // 1. When is the next group due, and how many frames does it hold?
      double groupDeadline = next;
      if (paced || j.burstGapNs > 0) {
        if (double(mono_ns()) < next) wait_until(CLOCK_MONOTONIC, uint64_t(next), j.sh->stop);
        if (j.sh->stop.load(std::memory_order_relaxed)) break;
      } else if (j.linkDown) {
        // Unpaced, link down: one batch is attempted (and counted as not sent) per link check, not a spin.
        wait_until(CLOCK_MONOTONIC, j.linkChecked + LINK_CHECK_NS, j.sh->stop);
        if (j.sh->stop.load(std::memory_order_relaxed)) break;
      }
      uint64_t now = mono_ns();
      unsigned n = 0;
      if (j.burst > 1) {
        // One burst: `burst` frames back to back; with a rate the schedule advances by their periods, so the
        // average rate holds and the gap between bursts is what is left.
        n = unsigned(std::min<uint64_t>(j.burst, left));
        for (unsigned k = 0; k < n; k++) next += j.gapNs + double(j.fr.tpl[j.fr.order[(pos + k) % L]].len) * j.nsPerByte;
      } else if (paced) {
        // Every frame whose deadline has passed (normally one; more only when we fell behind), at most one batch.
        double d = next;
        while (n < j.batch && n < left && d <= double(now)) {
          d += j.gapNs + double(j.fr.tpl[j.fr.order[(pos + n) % L]].len) * j.nsPerByte;
          n++;
          if (j.durationNs > 0 && d - double(t0) >= j.durationNs - 1) break;
        }
        if (!n) continue;
        next = d;
      } else if (j.multi) {
        // Claim the next n frames of the whole run; frame g uses template order[g % L] wherever it is sent.
        uint64_t g0 = j.sh->claimed.fetch_add(j.batch, std::memory_order_relaxed);
        if (j.count && g0 >= j.count) break;
        n = unsigned(j.count ? std::min<uint64_t>(j.batch, j.count - g0) : j.batch);
        pos = size_t(g0 % L);
        gBase = g0;
      } else {
        n = unsigned(std::min<uint64_t>(j.batch, left));
      }

      // 2. The link: while it is down the group's slots pass unsent and are counted; gone ends the run.
      CheckLink(j, now);
      if (j.err) break;
      if (j.linkDown) {
        j.notSentLinkDown += n;
        pos = (pos + n) % L;
      }

      // 3. Send the group in chunks of at most `slots` frames, each chunk prepared just before its sendmmsg.
      unsigned done = j.linkDown ? n : 0;
      const bool sending = done < n;
      while (done < n && !j.err) {
        if (j.linkDown) {
          // Went down during this group: its remaining frames are due now and cannot go.
          j.notSentLinkDown += n - done;
          pos = (pos + (n - done)) % L;
          break;
        }
        unsigned m = std::min(n - done, slots);
        uint64_t real = clock_ns(CLOCK_REALTIME);
        uint32_t tvSec = uint32_t(real / NS), tvUsec = uint32_t((real % NS) / 1000);
        for (unsigned s = 0; s < m; s++) Prepare(j, j.fr.tpl[j.fr.order[(pos + s) % L]], gBase + done + s, ring.data() + size_t(s) * j.fr.maxLen, &iov[s], tvSec, tvUsec);
        if (done == 0) j.groups++;
        uint64_t tSend = mono_ns();
        if (!j.firstNs) {
          j.firstNs = tSend;
          j.firstRealNs = real;
        }
        if (done == 0 && (paced || j.burstGapNs > 0)) {
          double late = double(tSend) - groupDeadline;
          if (late > 0) {
            j.lateSumNs += late;
            if (uint64_t(late) > j.lateMaxNs) j.lateMaxNs = uint64_t(late);
          }
        }
        unsigned sent = 0;
        int e = send_all(j.fd, msgs.data(), m, &sent, &j.waits);
        j.batches++;
        for (unsigned s = 0; s < sent; s++) j.bytes += iov[s].iov_len;
        if (sent < m) {
          // Frames prepared but refused: undo their IP IDs / seqs so the counters match what went out.
          if (!j.multi) Rewind(j, pos + sent, m - sent);
          if (e == ENETDOWN) {
            // Taken down (ip link set IF down): the refused frames' slots are gone; the schedule goes on.
            j.notSentLinkDown += m - sent;
            MarkDown(j, mono_ns());
          } else {
            j.notSent += m - sent;
            j.err = e;
            if (e == ENXIO || e == ENODEV) j.linkGone = true;  // packet_snd: the bound device was unregistered
          }
        }
        j.sent += sent;
        pos = (pos + (e == ENETDOWN ? m : sent)) % L;
        done += m;
      }
      const uint64_t tEnd = mono_ns();
      if (sending) j.lastNs = tEnd;
      if (j.err) break;
      if (j.burstGapNs > 0) next = std::max(next, double(tEnd) + j.burstGapNs);
      if (reportNs && tEnd - lastReport >= reportNs) {
        lastReport = tEnd;
        Progress p{j.sent, j.bytes, j.waits, tEnd - t0, j.worker};
        ep.Send(&p, 1);
      }
    }
    if (j.linkDown) j.linkDownNs += mono_ns() - j.linkDownSince;
    // Stopped from JS, which may have seen the interface vanish before this loop's next read: say so, so that the
    // rest of --count is counted as not sent, as for a deletion the loop saw itself.
    if (!j.err && j.sh->stop.load(std::memory_order_relaxed) && link_state(j.fd, j.ifindex) < 0) {
      j.linkGone = true;
      j.err = ENXIO;
    }
    if (j.err && j.count && !j.multi && j.count > j.sent + j.notSent + j.notSentLinkDown) j.notSent = j.count - j.sent - j.notSentLinkDown;
  }

  // A new outage from `now`. With stopOnLinkDown it ends the run instead (err ENETDOWN).
  static void MarkDown(Job& j, uint64_t now) {
    if (j.linkDown) return;
    j.linkDown = true;
    j.linkDownSince = now;
    j.linkChecked = now;
    j.linkOutages++;
    if (j.stopOnLinkDown) j.err = ENETDOWN;
  }

  // Reads the link's state when LINK_CHECK_NS has passed since the last read: marks an outage's start or end, or the
  // interface gone (err ENXIO, as sendmmsg would say).
  static void CheckLink(Job& j, uint64_t now) {
    if (now - j.linkChecked < LINK_CHECK_NS) return;
    j.linkChecked = now;
    int s = link_state(j.fd, j.ifindex);
    if (s < 0) {
      j.linkGone = true;
      j.err = ENXIO;
    } else if (s == 0) {
      MarkDown(j, now);
    } else if (j.linkDown) {
      j.linkDown = false;
      j.linkDownNs += now - j.linkDownSince;
    }
  }

  // Copies one template into a slot and applies the plan: the run's counters and the group's wall-clock time.
  // g: the frame's index in the whole run (used by several threads, which share no counters: see Blast()).
  static void Prepare(Job& j, const rawpoll_plan::Template& t, uint64_t g, uint8_t* slot, iovec* iov, uint32_t tvSec, uint32_t tvUsec) {
    iov->iov_len = t.len;
    if (!j.multi) return j.fr.next(t, slot, tvSec, tvUsec);
    const size_t L = j.fr.order.size();
    j.fr.write(t, slot, uint32_t(j.fr.ipId + g), uint32_t(j.fr.seq[t.flow] + (g / L) * j.perCycle[t.flow] + j.rank[g % L]), tvSec, tvUsec);
  }

  static void Rewind(Job& j, size_t from, unsigned k) {
    const size_t L = j.fr.order.size();
    for (unsigned s = k; s-- > 0;) j.fr.unwrite(j.fr.tpl[j.fr.order[(from + s) % L]]);
  }
};

template <typename T>
T num(Napi::Object o, const char* k, T dflt) {
  Napi::Value v = o.Get(k);
  return v.IsNumber() ? T(v.As<Napi::Number>().DoubleValue()) : dflt;
}

// blast(params, onProgress, onDone) -> { stop() }
// params: { fd, frames: Buffer, offsets: Uint32Array, lengths: Uint32Array, flows: Uint32Array (flow of each
//   template), order: Uint32Array (template index cycle), nFlows, plan: Int32Array (plan.h), ipId (first value of
//   the IP ID counter), seqStart (1), count, durationNs, gapNs, nsPerByte, burst, burstGapNs, batch, progressMs,
//   startAtSec, startAtNsec }
Napi::Value Blast(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsObject() || !info[1].IsFunction() || !info[2].IsFunction())
    throw Napi::TypeError::New(env, "blast(params, onProgress, onDone)");
  Napi::Object p = info[0].As<Napi::Object>();
  auto job = std::make_shared<Job>();
  Job& j = *job;
  j.sh = std::make_shared<Shared>();
  j.fd = num<int>(p, "fd", -1);
  if (j.fd < 0) throw Napi::TypeError::New(env, "blast: params.fd must be an open socket");
  rawpoll_plan::LoadFrames(env, p, "blast", &j.fr);
  j.count = num<uint64_t>(p, "count", 0);
  j.durationNs = num<double>(p, "durationNs", 0);
  j.gapNs = num<double>(p, "gapNs", 0);
  j.nsPerByte = num<double>(p, "nsPerByte", 0);
  j.burst = std::max<uint32_t>(1, num<uint32_t>(p, "burst", 1));
  j.burstGapNs = num<double>(p, "burstGapNs", 0);
  j.batch = std::min<uint32_t>(MAX_SLOTS, std::max<uint32_t>(1, num<uint32_t>(p, "batch", 64)));
  j.progressMs = num<uint32_t>(p, "progressMs", 200);
  uint64_t sas = num<uint64_t>(p, "startAtSec", 0), san = num<uint64_t>(p, "startAtNsec", 0);
  j.startAtRealNs = sas ? sas * NS + san : 0;
  j.stopOnLinkDown = p.Get("stopOnLinkDown").ToBoolean().Value();
  {
    sockaddr_ll sll;
    socklen_t sl = sizeof sll;
    if (getsockname(j.fd, reinterpret_cast<sockaddr*>(&sll), &sl) < 0 || sll.sll_family != AF_PACKET)
      throw Napi::TypeError::New(env, "blast: params.fd must be an AF_PACKET socket bound to an interface");
    j.ifindex = sll.sll_ifindex;
  }

  unsigned threads = std::max<unsigned>(1, num<unsigned>(p, "threads", 1));
  if (threads > 1) {
    if (j.gapNs > 0 || j.nsPerByte > 0 || j.burst > 1 || j.burstGapNs > 0 || j.startAtRealNs)
      throw Napi::RangeError::New(env, "blast: threads > 1 is for unpaced runs only (no rate, gap, burst or start time)");
    if (threads > 64) throw Napi::RangeError::New(env, "blast: at most 64 threads");
    j.multi = true;
    j.perCycle.assign(j.fr.nFlows, 0);
    j.rank.resize(j.fr.order.size());
    for (size_t i = 0; i < j.fr.order.size(); i++) {
      const rawpoll_plan::Template& t = j.fr.tpl[j.fr.order[i]];
      j.rank[i] = j.fr.plan.uses[rawpoll_plan::FLOW_SEQ] ? j.perCycle[t.flow]++ : 0;
    }
  }
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  // Every copy is made before any thread starts: a copy taken from a running job would take its counters too.
  std::vector<std::shared_ptr<Job>> jobs;
  for (unsigned k = 0; k < threads; k++) {
    auto jk = k == 0 ? job : std::make_shared<Job>(j);  // copies config and templates; shares `sh`
    jk->worker = k;
    if (threads > 1 && ncpu > 0) jk->cpu = int(k % unsigned(ncpu));
    jobs.push_back(jk);
  }
  for (auto& jk : jobs) (new BlastWorker(info[2].As<Napi::Function>(), info[1].As<Napi::Function>(), jk))->Queue();
  Napi::Object handle = Napi::Object::New(env);
  std::shared_ptr<Shared> sh = j.sh;
  handle.Set("threads", threads);
  handle.Set("stop", Napi::Function::New(env, [sh](const Napi::CallbackInfo& ci) -> Napi::Value {
    sh->stop.store(true);
    return ci.Env().Undefined();
  }, "stop"));
  return handle;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  rawpoll_pcap::RegisterPcap(env, exports);
  rawpoll_plan::RegisterPlanWriter(env, exports);
  rawpoll_rx::RegisterRx(env, exports);
  rawpoll_unixdgram::RegisterUnixDgram(env, exports);
  exports.Set("open", Napi::Function::New(env, Open, "open"));
  exports.Set("close", Napi::Function::New(env, Close, "close"));
  exports.Set("sendBatch", Napi::Function::New(env, SendBatch, "sendBatch"));
  exports.Set("blast", Napi::Function::New(env, Blast, "blast"));
  return exports;
}

}  // namespace

NODE_API_MODULE(rawpoll_native, Init)
