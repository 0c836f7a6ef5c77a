// Receive engines off the JavaScript thread (issue 11): one thread per engine reads the kernel in batches and hands
// JavaScript columns of records, never a call per datagram.
//
//   socket engine   a UDP socket of its own: recvmmsg batches of 64, a large buffer (SO_RCVBUFFORCE when privileged,
//                   else SO_RCVBUF up to net.core.rmem_max), the kernel's receive timestamp of each datagram
//                   (SO_TIMESTAMPNS, or SO_TIMESTAMPING for hardware ones), its destination address (IP_PKTINFO)
//                   and the socket's drop counter (SO_RXQ_OVFL on each datagram, SO_MEMINFO at each hand-over).
//                   family 'dual': one AF_INET6 socket with IPV6_V6ONLY off, as netconsd listens (IPv4 datagrams
//                   arrive as ::ffff:a.b.c.d and are recorded as IPv4), IPV6_RECVPKTINFO for the destination; a
//                   kernel without IPv6 (socket(AF_INET6) fails, EAFNOSUPPORT) gets the IPv4 socket and a warning.
//   capture engine  our libpcap binding's settings (TPACKET_V3, not immediate, 10 ms block timeout, a BPF filter)
//                   with nanosecond timestamps, read by pcap_dispatch on this thread; pcap_stats' drop count is the
//                   engine's own loss. libpcap rather than a ring of our own: it is what tcpdump measures with, so a
//                   comparison with it is like for like, and its TPACKET_V3 code is what we would write again.
//                   Ethernet (+ one 802.1Q tag) / IPv4 or IPv6 (past Hop-by-Hop, Routing and Destination Options
//                   headers; fragments are counted and skipped) / UDP.
//
// Two record shapes ("modes"):
//   pktgen   the pktgen test header is read here (magic, seq, tv_sec, tv_usec; PROTOCOLS.md §5): records are
//            (af, srcIp, dstIp, srcIp6, dstIp6, srcPort, dstPort, seq, len, rxNs, latencyNs); datagrams without the
//            magic are only counted
//   payload  the UDP payload itself, copied back to back into one buffer (collect's netconsole and oops ports):
//            records are (af, srcIp, dstIp, srcIp6, dstIp6, srcPort, dstPort, len, off, rxNs)
// Addresses: af 4 records carry srcIp/dstIp (u32) and zero srcIp6/dstIp6; af 6 records carry the 16 bytes of
// srcIp6/dstIp6 and zero srcIp/dstIp. A destination the engine cannot learn is zero.
//
// Hand-over: the thread fills a batch and passes it to JavaScript through a thread-safe function when it holds
// `batchRecords` records, or `flushMs` after its first record — so a slow trickle is not held back and a flood is
// handed over in few large batches. At most `queue` batches wait for JavaScript; when they do, the thread waits too
// and the kernel's buffer fills: what it then drops is counted as the engine's own loss (the socket's drop counter,
// or the capture's), never silently.
//
// Exports: rxOpen(opts, onBatch(batch), onEnd(error|null)) -> handle {port, clock, timestamp, rcvbuf, rcvbufForced,
// warning, epochUs, stats(), stop()}. stop() asks the thread to end; it hands over what it holds, then onEnd is called (the handle's stats are
// final from then on). A receive error ends the thread the same way, with onEnd({message, code}); a capture whose
// link went down waits for it to come back instead (its socket stays bound, as PcapLink's does).

#include <napi.h>
#include <pcap/pcap.h>

#include <arpa/inet.h>
#include <errno.h>
#include <linux/errqueue.h>
#include <linux/sock_diag.h>
#include <linux/net_tstamp.h>
#include <linux/sockios.h>
#include <linux/ethtool.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "linkstate.h"

namespace rawpoll_rx {

const uint32_t PKTGEN_MAGIC = 0xbe9be955;
const unsigned VLEN = 64;  // datagrams per recvmmsg

inline uint64_t realtime_ns() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

inline uint64_t mono_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

inline uint32_t be32(const uint8_t* p) { return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3]; }
inline uint16_t be16(const uint8_t* p) { return uint16_t(p[0] << 8 | p[1]); }

enum Mode { PKTGEN, PAYLOAD };
enum Clock { KERNEL, HW, USER };

// One hand-over: columns of n records (the columns a mode does not use stay empty).
struct Batch {
  uint32_t n = 0;
  uint32_t nonPktgen = 0;
  std::vector<uint32_t> srcIp, dstIp, seq, len, off;
  std::vector<uint16_t> srcPort, dstPort;
  std::vector<uint8_t> af, srcIp6, dstIp6;  // 4 or 6; 16 bytes a record (sized once, zeroed: an af 4 record writes none)
  std::vector<double> rxNs, latencyNs;
  std::vector<uint8_t> data;
  uint64_t firstAt = 0;  // monotonic ns of the first record

  Batch(Mode m, uint32_t cap) {
    srcIp.resize(cap); dstIp.resize(cap); len.resize(cap); srcPort.resize(cap); dstPort.resize(cap); rxNs.resize(cap);
    af.resize(cap); srcIp6.resize(size_t(cap) * 16); dstIp6.resize(size_t(cap) * 16);
    if (m == PKTGEN) { seq.resize(cap); latencyNs.resize(cap); }
    else off.resize(cap);
  }
};

struct Options {
  Mode mode = PKTGEN;
  Clock clock = KERNEL;
  uint32_t batchRecords = 4096;     // at least VLEN: a drain reads a whole recvmmsg vector only while it fits
  uint32_t flushMs = 5;
  uint32_t queue = 16;
  uint32_t payloadBytes = 8 << 20;  // payload mode: most bytes one batch holds
  uint16_t port = 0;                // capture: the UDP destination port (the filter selects it too)
  bool dual = false;                // socket: AF_INET6 with IPV6_V6ONLY off
};

// Only the engine's thread writes a counter: a relaxed load and store (plain moves on x86, no fence per datagram).
inline void bump(std::atomic<double>& a, double n) {
  a.store(a.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

// Counters the thread writes and JavaScript reads at any time.
struct Counters {
  std::atomic<double> datagrams{0};   // UDP datagrams read (pktgen or not)
  std::atomic<double> ownDrops{0};    // the kernel's drops for this engine: socket overflow, capture ring full
  std::atomic<double> ifDrops{0};     // capture: the interface's drops (pcap_stats ps_ifdrop)
  std::atomic<double> captured{0};    // capture: frames that passed the filter (pcap_stats ps_recv)
  std::atomic<double> truncated{0};   // payload mode: datagrams longer than a receive slot (cut, counted)
  std::atomic<double> noTimestamp{0}; // datagrams without the asked-for timestamp (the engine's read time was used)
  std::atomic<double> batches{0};
  std::atomic<double> queueWaits{0};  // hand-overs that had to wait for JavaScript
  std::atomic<double> linkDownMs{0};
  std::atomic<double> fragments{0};   // capture: IPv6 fragments to the port, or any IPv6 fragment (not reassembled: skipped)
};

class Engine;
void CallJs(Napi::Env env, Napi::Function fn, Engine* ctx, Batch* b);
using Tsfn = Napi::TypedThreadSafeFunction<Engine, Batch, CallJs>;

class Engine {
 public:
  Options o;
  Counters c;
  int fd = -1;             // socket engine
  pcap_t* p = nullptr;     // capture engine
  std::string iface;       // capture engine: for the link-state checks
  int stopFd = -1;
  std::atomic<bool> stop{false};
  std::thread th;
  Tsfn tsfn;
  Napi::FunctionReference onEnd;
  std::string endMsg, endCode;  // why the thread ended, '' when stopped
  uint64_t epochNs = 0;          // rxNs = timestamp - epochNs; a whole number of µs
  bool epochSet = false;
  Napi::ObjectReference self;

  ~Engine() {
    if (fd >= 0) close(fd);
    if (p) pcap_close(p);
    if (stopFd >= 0) close(stopFd);
  }

  double rel(uint64_t tsNs) {
    if (!epochSet) {  // the hardware clock has its own epoch: start counting at its first timestamp
      epochNs = tsNs / 1000 * 1000;
      epochSet = true;
    }
    return double(int64_t(tsNs - epochNs));
  }

  Batch* fresh() { return new Batch(o.mode, o.batchRecords); }

  // Hands the batch to JavaScript (waiting while `queue` batches are pending) and returns a fresh one.
  Batch* handOver(Batch* b) {
    if (b->n == 0 && b->nonPktgen == 0) return b;
    bump(c.batches, 1);
    napi_status st = tsfn.NonBlockingCall(b);
    if (st == napi_queue_full) {
      bump(c.queueWaits, 1);
      st = tsfn.BlockingCall(b);
    }
    if (st != napi_ok) delete b;  // closing: JavaScript no longer listens
    return fresh();
  }

  bool due(const Batch* b, uint64_t now) const {
    return b->n + VLEN > o.batchRecords || (o.mode == PAYLOAD && b->data.size() + VLEN * 65536 > o.payloadBytes) ||
           ((b->n || b->nonPktgen) && now - b->firstAt >= uint64_t(o.flushMs) * 1000000ull);
  }

  // The poll timeout until the batch is due: -1 (none held) waits for data or stop.
  int timeoutMs(const Batch* b, uint64_t now) const {
    if (!b->n && !b->nonPktgen) return -1;
    uint64_t dueAt = b->firstAt + uint64_t(o.flushMs) * 1000000ull;
    return now >= dueAt ? 0 : int((dueAt - now + 999999) / 1000000);
  }

  // One datagram's record; `payload` is its first `have` bytes, `udpLen` the payload's real length. An IPv6 datagram
  // has src6 (and dst6, null when unknown); an IPv4 one src/dst.
  void add(Batch* b, uint32_t src, uint32_t dst, const uint8_t* src6, const uint8_t* dst6, uint16_t sport, uint16_t dport,
           const uint8_t* payload, uint32_t have, uint32_t udpLen, uint64_t tsNs, uint64_t realNs) {
    bump(c.datagrams, 1);
    if (!b->n && !b->nonPktgen) b->firstAt = mono_ns();
    if (o.mode == PKTGEN) {
      if (have < 16 || udpLen < 16 || be32(payload) != PKTGEN_MAGIC) {
        b->nonPktgen++;
        return;
      }
    }
    uint32_t i = b->n++;
    if (src6) {
      b->af[i] = 6;
      memcpy(&b->srcIp6[size_t(i) * 16], src6, 16);
      if (dst6) memcpy(&b->dstIp6[size_t(i) * 16], dst6, 16);
    } else {
      b->af[i] = 4;
      b->srcIp[i] = src;
      b->dstIp[i] = dst;
    }
    b->srcPort[i] = sport;
    b->dstPort[i] = dport;
    b->len[i] = udpLen;
    b->rxNs[i] = rel(tsNs);
    if (o.mode == PKTGEN) {
      b->seq[i] = be32(payload + 4);
      uint32_t tvSec = be32(payload + 8), tvUsec = be32(payload + 12);
      b->latencyNs[i] = tvSec == 0 && tvUsec == 0
                            ? NAN
                            : double(int64_t(realNs - (uint64_t(tvSec) * 1000000000ull + uint64_t(tvUsec) * 1000ull)));
    } else {
      uint32_t take = std::min(have, udpLen);
      b->off[i] = uint32_t(b->data.size());
      b->len[i] = take;
      b->data.insert(b->data.end(), payload, payload + take);
    }
  }

  void finish(const std::string& msg, const std::string& code) {
    endMsg = msg;
    endCode = code;
  }

  void RunSocket();
  void RunCapture();
  void readSocketDrops();
  void readCaptureStats();
};

void Engine::readSocketDrops() {
  uint32_t mem[SK_MEMINFO_VARS] = {0};
  socklen_t l = sizeof mem;
  if (getsockopt(fd, SOL_SOCKET, SO_MEMINFO, mem, &l) == 0 && l > SK_MEMINFO_DROPS * sizeof(uint32_t)) {
    c.ownDrops.store(double(mem[SK_MEMINFO_DROPS]));
  }
}

void Engine::RunSocket() {
  const uint32_t slot = o.mode == PKTGEN ? 64 : 65536;
  std::vector<uint8_t> bufs(size_t(slot) * VLEN);
  std::vector<uint8_t> ctrl(size_t(256) * VLEN);
  std::vector<sockaddr_in6> names(VLEN);  // room for either family's address
  std::vector<iovec> iov(VLEN);
  std::vector<mmsghdr> msgs(VLEN);
  Batch* b = fresh();
  pollfd pf[2] = {{fd, POLLIN, 0}, {stopFd, POLLIN, 0}};
  while (!stop.load()) {
    uint64_t now = mono_ns();
    if (due(b, now)) {
      readSocketDrops();
      b = handOver(b);
      continue;
    }
    int pr = poll(pf, 2, timeoutMs(b, now));
    if (pr < 0 && errno != EINTR) { finish(std::string("poll: ") + strerror(errno), ""); break; }
    if (pr <= 0 || !(pf[0].revents & (POLLIN | POLLERR))) continue;
    // Drain: recvmmsg until the socket is empty or the batch is full.
    while (!stop.load() && b->n + VLEN <= o.batchRecords && (o.mode != PAYLOAD || b->data.size() + VLEN * slot <= o.payloadBytes)) {
      for (unsigned k = 0; k < VLEN; k++) {
        iov[k] = {bufs.data() + size_t(k) * slot, slot};
        msgs[k].msg_hdr = {};
        msgs[k].msg_hdr.msg_name = &names[k];
        msgs[k].msg_hdr.msg_namelen = sizeof(sockaddr_in6);
        msgs[k].msg_hdr.msg_iov = &iov[k];
        msgs[k].msg_hdr.msg_iovlen = 1;
        msgs[k].msg_hdr.msg_control = ctrl.data() + size_t(k) * 256;
        msgs[k].msg_hdr.msg_controllen = 256;
        msgs[k].msg_len = 0;
      }
      // MSG_TRUNC: msg_len is the datagram's real length even when only `slot` bytes were kept (pktgen needs 16).
      int n = recvmmsg(fd, msgs.data(), VLEN, MSG_DONTWAIT | MSG_TRUNC, nullptr);
      if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) break;
        if (errno == ECONNREFUSED) continue;  // an ICMP error queued on the socket: not ours to stop for
        finish(std::string("recvmmsg: ") + strerror(errno), "");
        stop.store(true);
        break;
      }
      uint64_t readNs = realtime_ns();
      for (int k = 0; k < n; k++) {
        msghdr& h = msgs[k].msg_hdr;
        uint64_t ts = 0;
        uint32_t dst = 0;
        const uint8_t* dst6 = nullptr;
        in6_pktinfo pi6;
        for (cmsghdr* cm = CMSG_FIRSTHDR(&h); cm; cm = CMSG_NXTHDR(&h, cm)) {
          if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_TIMESTAMPNS) {
            timespec t;
            memcpy(&t, CMSG_DATA(cm), sizeof t);
            ts = uint64_t(t.tv_sec) * 1000000000ull + uint64_t(t.tv_nsec);
          } else if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_TIMESTAMPING) {
            timespec t[3];
            memcpy(t, CMSG_DATA(cm), sizeof t);
            const timespec& hw = t[2];  // raw hardware; t[0] is the software stamp
            if (hw.tv_sec || hw.tv_nsec) ts = uint64_t(hw.tv_sec) * 1000000000ull + uint64_t(hw.tv_nsec);
          } else if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_PKTINFO) {
            in_pktinfo pi;
            memcpy(&pi, CMSG_DATA(cm), sizeof pi);
            dst = ntohl(pi.ipi_addr.s_addr);
          } else if (cm->cmsg_level == IPPROTO_IPV6 && cm->cmsg_type == IPV6_PKTINFO) {
            // An IPv4 datagram on the dual-stack socket has its destination v4-mapped here too.
            memcpy(&pi6, CMSG_DATA(cm), sizeof pi6);
            if (IN6_IS_ADDR_V4MAPPED(&pi6.ipi6_addr)) dst = be32(pi6.ipi6_addr.s6_addr + 12);
            else dst6 = pi6.ipi6_addr.s6_addr;
          } else if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SO_RXQ_OVFL) {
            uint32_t d;
            memcpy(&d, CMSG_DATA(cm), sizeof d);
            c.ownDrops.store(double(d), std::memory_order_relaxed);
          }
        }
        if (o.clock == USER) ts = readNs;
        else if (!ts) {
          ts = readNs;
          bump(c.noTimestamp, 1);
        }
        uint32_t realLen = msgs[k].msg_len;
        if (o.mode == PAYLOAD && (h.msg_flags & MSG_TRUNC)) bump(c.truncated, 1);
        const uint8_t* pay = bufs.data() + size_t(k) * slot;
        const sockaddr_in6& from = names[k];
        if (from.sin6_family == AF_INET6 && !IN6_IS_ADDR_V4MAPPED(&from.sin6_addr)) {
          add(b, 0, 0, from.sin6_addr.s6_addr, dst6, ntohs(from.sin6_port), o.port, pay, std::min(realLen, slot), realLen, ts, ts);
        } else {
          // AF_INET, or an IPv4 source v4-mapped by the dual-stack socket: recorded as IPv4, as the IPv4 socket would.
          uint32_t src = from.sin6_family == AF_INET6 ? be32(from.sin6_addr.s6_addr + 12)
                                                      : ntohl(reinterpret_cast<const sockaddr_in&>(from).sin_addr.s_addr);
          add(b, src, dst, nullptr, nullptr, ntohs(from.sin6_port), o.port, pay, std::min(realLen, slot), realLen, ts, ts);
        }
      }
      if (unsigned(n) < VLEN) break;
    }
  }
  readSocketDrops();
  handOver(b);
  delete b;  // handOver returned a fresh, empty one
}

void Engine::readCaptureStats() {
  pcap_stat st;
  if (pcap_stats(p, &st) == 0) {
    c.captured.store(double(st.ps_recv));
    c.ownDrops.store(double(st.ps_drop));
    c.ifDrops.store(double(st.ps_ifdrop));
  }
}

struct CaptureCtx {
  Engine* e;
  Batch** b;
  int linktype;
};

// IPv4: the rules of wire/udpframe.ts's locateUdp: Ethernet, at most one 802.1Q tag, IPv4 with IHL >= 5 and a total
// length within the frame, not a fragment beyond the first, protocol UDP with a length that fits the IP payload.
// IPv6 (RFC 8200 §4): a payload length within the frame (0, a jumbogram, is not ours), then the extension headers a
// router may leave in front of UDP — Hop-by-Hop (0), Routing (43), Destination Options (60), each (len + 1) × 8 bytes
// — up to UDP (17). A Fragment header (44) means a datagram we would have to reassemble: counted, skipped (as the
// IPv4 path skips later fragments).
const unsigned MAX_EXT_HEADERS = 8;

void OnFrame(u_char* user, const pcap_pkthdr* h, const u_char* f) {
  CaptureCtx* cx = reinterpret_cast<CaptureCtx*>(user);
  Engine* e = cx->e;
  uint32_t cap = h->caplen;
  uint32_t l3 = 14;
  if (cap < 14) return;
  uint16_t et = be16(f + 12);
  if (et == 0x8100) {
    if (cap < 18) return;
    et = be16(f + 16);
    l3 = 18;
  }
  const uint8_t* ip = f + l3;
  const uint8_t* udp;
  uint32_t room;  // bytes from the UDP header to the end of the IP payload
  if (et == 0x0800) {
    if (cap < l3 + 20) return;
    uint32_t ihl = (ip[0] & 15) * 4;
    if ((ip[0] >> 4) != 4 || ihl < 20 || ip[9] != 17) return;
    uint32_t total = be16(ip + 2);
    if (total < ihl + 8 || l3 + total > h->len) return;
    if (be16(ip + 6) & 0x1fff) return;  // a later fragment: no UDP header here
    if (cap < l3 + ihl + 8) return;
    udp = ip + ihl;
    room = total - ihl;
  } else if (et == 0x86dd) {
    if (cap < l3 + 40 || (ip[0] >> 4) != 6) return;
    uint32_t plen = be16(ip + 4);
    if (plen == 0 || l3 + 40 + plen > h->len) return;
    uint8_t next = ip[6];
    uint32_t off = 40;  // from the IPv6 header
    for (unsigned k = 0; next != 17; k++) {
      if (next == 44) {
        bump(e->c.fragments, 1);
        return;
      }
      if ((next != 0 && next != 43 && next != 60) || k >= MAX_EXT_HEADERS || cap < l3 + off + 8) return;
      next = ip[off];
      off += (uint32_t(ip[off + 1]) + 1) * 8;
      if (off > 40 + plen) return;
    }
    if (off + 8 > 40 + plen || cap < l3 + off + 8) return;
    udp = ip + off;
    room = 40 + plen - off;
  } else {
    return;
  }
  uint16_t dport = be16(udp + 2);
  uint32_t ulen = be16(udp + 4);
  if (dport != e->o.port || ulen < 8 || ulen > room) return;
  uint32_t payOff = uint32_t(udp - f) + 8;
  uint32_t have = cap > payOff ? cap - payOff : 0;
  uint64_t ts = uint64_t(h->ts.tv_sec) * 1000000000ull + uint64_t(h->ts.tv_usec);  // nanosecond precision handle
  if (e->o.clock == USER) ts = realtime_ns();
  if ((*cx->b)->n >= e->o.batchRecords) *cx->b = e->handOver(*cx->b);  // one block can hold more than a batch
  if (et == 0x0800) e->add(*cx->b, be32(ip + 12), be32(ip + 16), nullptr, nullptr, be16(udp), dport, f + payOff, have, ulen - 8, ts, ts);
  else e->add(*cx->b, 0, 0, ip + 8, ip + 24, be16(udp), dport, f + payOff, have, ulen - 8, ts, ts);
}

void Engine::RunCapture() {
  Batch* b = fresh();
  CaptureCtx cx{this, &b, pcap_datalink(p)};
  int cfd = pcap_get_selectable_fd(p);
  pollfd pf[2] = {{cfd, POLLIN, 0}, {stopFd, POLLIN, 0}};
  int sfd = socket(AF_INET, SOCK_DGRAM, 0);  // for the link-state ioctls
  uint64_t downSince = 0;
  int errorsUp = 0;  // receive errors in a row with the link up
  while (!stop.load()) {
    uint64_t now = mono_ns();
    if (due(b, now)) {
      readCaptureStats();
      b = handOver(b);
      continue;
    }
    if (downSince) {  // the link is down: wait for it, the socket stays bound (frames after NETDEV_UP are kept)
      rawpoll_link::State st;
      int err = rawpoll_link::read_state(sfd, iface.c_str(), &st);
      if (err == ENODEV) { finish("interface " + iface + " disappeared", "ENODEV"); break; }
      if (!err && st.up && st.carrier) {
        bump(c.linkDownMs, double(now - downSince) / 1e6);
        downSince = 0;
      } else {
        poll(pf + 1, 1, 50);
        continue;
      }
    }
    int pr = poll(pf, 2, std::min(timeoutMs(b, now) < 0 ? 100 : timeoutMs(b, now), 100));
    if (pr < 0 && errno != EINTR) { finish(std::string("poll: ") + strerror(errno), ""); break; }
    if (pr <= 0 || !(pf[0].revents & (POLLIN | POLLERR))) {
      // TPACKET_V3 hands over a block when it is full or its timeout passed; a partly filled block waits for poll.
      if (pr == 0) pcap_dispatch(p, -1, OnFrame, reinterpret_cast<u_char*>(&cx));
      continue;
    }
    int n = pcap_dispatch(p, -1, OnFrame, reinterpret_cast<u_char*>(&cx));
    if (n != PCAP_ERROR) {
      errorsUp = 0;
      continue;
    }
    // libpcap reports a link taken down and an interface deleted alike (SO_ERROR ENETDOWN): the link state tells.
    std::string m = pcap_geterr(p);
    int soErr = 0;
    socklen_t sl = sizeof soErr;
    getsockopt(cfd, SOL_SOCKET, SO_ERROR, &soErr, &sl);  // clears it: the next poll waits for frames again
    rawpoll_link::State st;
    int err = rawpoll_link::read_state(sfd, iface.c_str(), &st);
    if (err == ENODEV) { finish("interface " + iface + " disappeared", "ENODEV"); break; }
    if (!err && !(st.up && st.carrier)) {
      downSince = mono_ns();
      continue;
    }
    if (++errorsUp >= 3) { finish("capture on " + iface + " failed: " + m, ""); break; }
  }
  if (downSince) bump(c.linkDownMs, double(mono_ns() - downSince) / 1e6);
  if (sfd >= 0) close(sfd);
  readCaptureStats();
  handOver(b);
  delete b;
}

template <typename T>
Napi::TypedArray column(Napi::Env env, const std::vector<T>& v, uint32_t n);

template <>
Napi::TypedArray column(Napi::Env env, const std::vector<uint32_t>& v, uint32_t n) {
  auto a = Napi::Uint32Array::New(env, n);
  if (n) memcpy(a.Data(), v.data(), n * sizeof(uint32_t));
  return a;
}
template <>
Napi::TypedArray column(Napi::Env env, const std::vector<uint16_t>& v, uint32_t n) {
  auto a = Napi::Uint16Array::New(env, n);
  if (n) memcpy(a.Data(), v.data(), n * sizeof(uint16_t));
  return a;
}
// Bytes: `n` is the byte count (af: n records; srcIp6/dstIp6: 16 n).
template <>
Napi::TypedArray column(Napi::Env env, const std::vector<uint8_t>& v, uint32_t n) {
  auto a = Napi::Uint8Array::New(env, n);
  if (n) memcpy(a.Data(), v.data(), n);
  return a;
}
template <>
Napi::TypedArray column(Napi::Env env, const std::vector<double>& v, uint32_t n) {
  auto a = Napi::Float64Array::New(env, n);
  if (n) memcpy(a.Data(), v.data(), n * sizeof(double));
  return a;
}

void CallJs(Napi::Env env, Napi::Function fn, Engine* e, Batch* b) {
  if (env == nullptr || fn.IsEmpty()) {
    delete b;
    return;
  }
  Napi::Object o = Napi::Object::New(env);
  uint32_t n = b->n;
  o.Set("n", n);
  o.Set("srcIp", column(env, b->srcIp, n));
  o.Set("dstIp", column(env, b->dstIp, n));
  o.Set("af", column(env, b->af, n));
  o.Set("srcIp6", column(env, b->srcIp6, n * 16));
  o.Set("dstIp6", column(env, b->dstIp6, n * 16));
  o.Set("srcPort", column(env, b->srcPort, n));
  o.Set("dstPort", column(env, b->dstPort, n));
  o.Set("len", column(env, b->len, n));
  o.Set("rxNs", column(env, b->rxNs, n));
  if (e->o.mode == PKTGEN) {
    o.Set("nonPktgen", b->nonPktgen);
    o.Set("seq", column(env, b->seq, n));
    o.Set("latencyNs", column(env, b->latencyNs, n));
  } else {
    o.Set("off", column(env, b->off, n));
    o.Set("data", Napi::Buffer<uint8_t>::Copy(env, b->data.data(), b->data.size()));
  }
  delete b;
  fn.Call({o});  // a throw in the handler is an uncaught exception in JavaScript, as in any event handler
}

class Handle : public Napi::ObjectWrap<Handle> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "RxEngine", {
      InstanceMethod("stats", &Handle::Stats),
      InstanceMethod("stop", &Handle::Stop),
    });
  }
  explicit Handle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Handle>(info) {}
  ~Handle() override {
    if (e_ && e_->th.joinable()) {
      e_->stop.store(true);
      uint64_t one = 1;
      (void)!write(e_->stopFd, &one, sizeof one);
      e_->th.join();
    }
  }
  Engine* e_ = nullptr;  // owned by the thread-safe function's finalizer once started
  std::shared_ptr<Engine> keep_;

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object r = Napi::Object::New(env);
    Counters& c = e_->c;
    r.Set("datagrams", c.datagrams.load());
    r.Set("ownDrops", c.ownDrops.load());
    r.Set("ifDrops", c.ifDrops.load());
    r.Set("captured", c.captured.load());
    r.Set("truncated", c.truncated.load());
    r.Set("noTimestamp", c.noTimestamp.load());
    r.Set("batches", c.batches.load());
    r.Set("queueWaits", c.queueWaits.load());
    r.Set("linkDownMs", c.linkDownMs.load());
    r.Set("fragments", c.fragments.load());
    return r;
  }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    if (!e_->stop.exchange(true)) {
      uint64_t one = 1;
      (void)!write(e_->stopFd, &one, sizeof one);
    }
    return info.Env().Undefined();
  }
};

Napi::FunctionReference handleCtor;

std::string errnoCode(int e) {
  const char* g = strerrorname_np(e);
  return g ? g : "";
}

Napi::Error coded(Napi::Env env, const std::string& msg, const std::string& code) {
  Napi::Error err = Napi::Error::New(env, msg);
  if (!code.empty()) err.Set("code", Napi::String::New(env, code));
  return err;
}

// Whether IF can stamp received frames in hardware (ethtool -T: SOF_TIMESTAMPING_RAW_HARDWARE and an rx filter
// that takes every frame or PTP-less UDP); `why` says what it lacks.
bool hwRxTimestamps(const std::string& iface, std::string* why) {
  int s = socket(AF_INET, SOCK_DGRAM, 0);
  ethtool_ts_info ti;
  memset(&ti, 0, sizeof ti);
  ti.cmd = ETHTOOL_GET_TS_INFO;
  ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  memcpy(ifr.ifr_name, iface.c_str(), std::min(iface.size(), size_t(IFNAMSIZ - 1)));
  ifr.ifr_data = reinterpret_cast<char*>(&ti);
  int rc = ioctl(s, SIOCETHTOOL, &ifr);
  int err = errno;
  if (rc != 0) {
    close(s);
    *why = iface + " does not report timestamping capabilities (" + strerror(err) + ")";
    return false;
  }
  bool raw = ti.so_timestamping & SOF_TIMESTAMPING_RAW_HARDWARE;
  bool all = ti.rx_filters & (1u << HWTSTAMP_FILTER_ALL);
  if (!raw || !all || ti.phc_index < 0) {
    close(s);
    *why = iface + " has no hardware receive timestamps for every frame (ethtool -T " + iface + ")";
    return false;
  }
  hwtstamp_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.tx_type = HWTSTAMP_TX_OFF;
  cfg.rx_filter = HWTSTAMP_FILTER_ALL;
  ifr.ifr_data = reinterpret_cast<char*>(&cfg);
  rc = ioctl(s, SIOCSHWTSTAMP, &ifr);
  err = errno;
  close(s);
  if (rc != 0) {
    *why = "enabling hardware receive timestamps on " + iface + " failed (SIOCSHWTSTAMP: " + strerror(err) + ")";
    return false;
  }
  *why = "/dev/ptp" + std::to_string(ti.phc_index);
  return true;
}

template <typename T>
T num(Napi::Object o, const char* k, T dflt) {
  Napi::Value v = o.Get(k);
  return v.IsNumber() ? T(v.As<Napi::Number>().DoubleValue()) : dflt;
}

std::string str(Napi::Object o, const char* k) {
  Napi::Value v = o.Get(k);
  return v.IsString() ? std::string(v.As<Napi::String>()) : std::string();
}

// Opens the socket; throws a coded Error. Sets `clockName`, `warning` and the granted buffer.
// family 'dual' (e->o.dual): AF_INET6, IPV6_V6ONLY off; a kernel without IPv6 falls back to AF_INET, saying so in
// `familyWarning` (unless an IPv6 address was asked for: then there is nothing to fall back to).
void OpenSocket(Napi::Env env, Engine* e, Napi::Object o, std::string* clockName, std::string* warning, double* rcvbuf,
                bool* forced, std::string* familyWarning) {
  std::string bind6 = str(o, "bind6");
  in6_addr a6 = in6addr_any;
  if (!bind6.empty() && inet_pton(AF_INET6, bind6.c_str(), &a6) != 1) {
    throw Napi::RangeError::New(env, "rxOpen: bind6 '" + bind6 + "' is not an IPv6 address");
  }
  int fd = -1;
  if (e->o.dual) {
    fd = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0 && errno == EAFNOSUPPORT && bind6.empty()) {
      *familyWarning = "this kernel has no IPv6 (socket(AF_INET6): " + std::string(strerror(errno)) + "): listening on IPv4 only";
      e->o.dual = false;
    } else if (fd < 0) {
      throw coded(env, std::string("UDP socket (IPv6): ") + strerror(errno), errnoCode(errno));
    }
  }
  if (!e->o.dual) {
    fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) throw coded(env, std::string("UDP socket: ") + strerror(errno), errnoCode(errno));
  }
  e->fd = fd;
  int want = num<int>(o, "rcvbuf", 32 << 20);
  // SO_RCVBUFFORCE passes net.core.rmem_max with CAP_NET_ADMIN; without it, SO_RCVBUF gets at most rmem_max.
  *forced = setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &want, sizeof want) == 0;
  if (!*forced) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &want, sizeof want);
  int got = 0;
  socklen_t gl = sizeof got;
  getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &got, &gl);
  *rcvbuf = got;
  int one = 1, zero = 0;
  if (e->o.dual) {
    // Off explicitly: net.ipv6.bindv6only may default it on. IPV6_RECVPKTINFO reports IPv4 destinations v4-mapped.
    if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero) != 0) {
      int err = errno;
      throw coded(env, std::string("IPV6_V6ONLY off: ") + strerror(err), errnoCode(err));
    }
    setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof one);
  } else {
    setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof one);
  }
  setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof one);
  std::string iface = str(o, "iface");
  if (e->o.clock == HW) {
    std::string why;
    if (!iface.empty() && hwRxTimestamps(iface, &why)) {
      int flags = SOF_TIMESTAMPING_RX_HARDWARE | SOF_TIMESTAMPING_RAW_HARDWARE;
      setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPING, &flags, sizeof flags);
      *clockName = "hw (" + iface + "'s hardware clock " + why + "; one-way latency needs it synced to the system clock, e.g. phc2sys)";
    } else {
      if (iface.empty()) why = "hardware timestamps need the receiving interface (-i IF)";
      *warning = why + "; fell back to kernel software timestamps (CLOCK_REALTIME, taken as each datagram entered the stack)";
      e->o.clock = KERNEL;
    }
  }
  if (e->o.clock == KERNEL) {
    setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
    *clockName = "kernel (CLOCK_REALTIME, SO_TIMESTAMPNS: taken as each datagram entered the stack)";
  } else if (e->o.clock == USER) {
    *clockName = "user (CLOCK_REALTIME, read by the receive thread after each recvmmsg)";
  }
  if (!iface.empty() && setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, iface.c_str(), iface.size()) != 0) {
    int err = errno;
    throw coded(env, "cannot bind the UDP socket to " + iface + ": " + strerror(err), errnoCode(err));
  }
  uint32_t bind4 = num<uint32_t>(o, "bind", 0);
  sockaddr_in6 sa;  // room for either family's address
  memset(&sa, 0, sizeof sa);
  socklen_t sl;
  if (e->o.dual) {
    sa.sin6_family = AF_INET6;
    sa.sin6_port = htons(e->o.port);
    if (bind6.empty() && bind4) {  // an IPv4 address on the dual-stack socket: ::ffff:a.b.c.d
      a6.s6_addr[10] = a6.s6_addr[11] = 0xff;
      uint32_t nb = htonl(bind4);
      memcpy(a6.s6_addr + 12, &nb, 4);
    }
    sa.sin6_addr = a6;
    if (IN6_IS_ADDR_LINKLOCAL(&a6) && !iface.empty()) sa.sin6_scope_id = if_nametoindex(iface.c_str());
    sl = sizeof(sockaddr_in6);
  } else {
    sockaddr_in& s4 = reinterpret_cast<sockaddr_in&>(sa);
    s4.sin_family = AF_INET;
    s4.sin_port = htons(e->o.port);
    s4.sin_addr.s_addr = htonl(bind4);
    sl = sizeof(sockaddr_in);
  }
  if (bind(fd, reinterpret_cast<sockaddr*>(&sa), sl) != 0) {
    int err = errno;
    Napi::Error x = coded(env, std::string("bind: ") + strerror(err), errnoCode(err));
    if (err == EADDRINUSE && e->o.dual && bind6.empty() && !bind4) {
      // Which half is taken: an IPv4 socket on 0.0.0.0:PORT also blocks [::]:PORT with IPV6_V6ONLY off, and the user
      // should hear about the socket they can find (ss -uln).
      int p4 = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      sockaddr_in s4;
      memset(&s4, 0, sizeof s4);
      s4.sin_family = AF_INET;
      s4.sin_port = htons(e->o.port);
      bool taken4 = p4 >= 0 && bind(p4, reinterpret_cast<sockaddr*>(&s4), sizeof s4) != 0 && errno == EADDRINUSE;
      if (p4 >= 0) close(p4);
      x.Set("inUse", Napi::String::New(env, taken4 ? "ipv4" : "ipv6"));
    }
    throw x;
  }
  sl = sizeof sa;
  getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &sl);
  e->o.port = ntohs(sa.sin6_port);  // port 0 asked the kernel for a free one (sin_port sits at the same offset)
}

void OpenCapture(Napi::Env env, Engine* e, Napi::Object o, std::string* clockName, std::string* warning) {
  std::string iface = str(o, "iface");
  e->iface = iface;
  char errbuf[PCAP_ERRBUF_SIZE] = {0};
  pcap_t* p = pcap_create(iface.c_str(), errbuf);
  if (!p) throw coded(env, std::string("pcap_create: ") + errbuf, "");
  e->p = p;
  pcap_set_snaplen(p, num<int>(o, "snaplen", 256));
  pcap_set_promisc(p, 1);
  pcap_set_immediate_mode(p, 0);
  pcap_set_timeout(p, 10);
  int bufsize = num<int>(o, "bufferSize", 64 << 20);
  pcap_set_buffer_size(p, bufsize);
  if (pcap_set_tstamp_precision(p, PCAP_TSTAMP_PRECISION_NANO) != 0) throw coded(env, "nanosecond timestamps are not supported on " + iface, "ENOTSUP");
  if (e->o.clock == HW) {
    int* types = nullptr;
    int nt = pcap_list_tstamp_types(p, &types);
    bool have = false;
    for (int i = 0; i < nt; i++) have = have || types[i] == PCAP_TSTAMP_ADAPTER_UNSYNCED;
    if (nt > 0) pcap_free_tstamp_types(types);
    if (have && pcap_set_tstamp_type(p, PCAP_TSTAMP_ADAPTER_UNSYNCED) == 0) {
      *clockName = "hw (" + iface + "'s hardware clock, libpcap adapter_unsynced; one-way latency needs it synced to the system clock, e.g. phc2sys)";
    } else {
      *warning = iface + " offers libpcap no adapter timestamps (host only); fell back to kernel software timestamps (CLOCK_REALTIME, taken as each frame reached the capture)";
      e->o.clock = KERNEL;
    }
  }
  if (e->o.clock == KERNEL) *clockName = "kernel (CLOCK_REALTIME, libpcap host timestamps in ns: taken as each frame reached the capture)";
  if (e->o.clock == USER) *clockName = "user (CLOCK_REALTIME, read by the receive thread as it walks each block)";
  int rc = pcap_activate(p);
  if (rc < 0) {
    std::string m = rc == PCAP_ERROR_IFACE_NOT_UP ? iface + " is not up" : std::string(pcap_geterr(p));
    if (m.empty()) m = pcap_statustostr(rc);
    std::string code = rc == PCAP_ERROR_NO_SUCH_DEVICE ? "ENODEV" : rc == PCAP_ERROR_PERM_DENIED ? "EPERM" : rc == PCAP_ERROR_IFACE_NOT_UP ? "ENETDOWN" : "";
    throw coded(env, m, code);
  }
  if (rc > 0 && warning->empty()) *warning = std::string(pcap_statustostr(rc)) + ": " + pcap_geterr(p);
  if (pcap_datalink(p) != DLT_EN10MB) throw coded(env, iface + " is not an Ethernet link", "EPROTONOSUPPORT");
  if (pcap_setnonblock(p, 1, errbuf) != 0) throw coded(env, std::string("pcap_setnonblock: ") + errbuf, "");
  std::string filter = str(o, "filter");
  bpf_program prog;
  if (pcap_compile(p, &prog, filter.c_str(), 1, PCAP_NETMASK_UNKNOWN) != 0) throw coded(env, "bad capture filter '" + filter + "': " + pcap_geterr(p), "EINVAL");
  rc = pcap_setfilter(p, &prog);
  pcap_freecode(&prog);
  if (rc != 0) throw coded(env, std::string("pcap_setfilter: ") + pcap_geterr(p), "");
}

void Finalize(Napi::Env env, void*, Engine* e) {
  if (e->th.joinable()) e->th.join();
  // The port or the capture is free again as soon as the engine ended (its counts stay readable).
  if (e->fd >= 0) close(e->fd);
  e->fd = -1;
  if (e->p) pcap_close(e->p);
  e->p = nullptr;
  if (!e->onEnd.IsEmpty() && env != nullptr) {
    Napi::HandleScope scope(env);
    Napi::Value err = env.Null();
    if (!e->endMsg.empty()) {
      Napi::Object x = Napi::Object::New(env);
      x.Set("message", e->endMsg);
      x.Set("code", e->endCode);
      err = x;
    }
    try {
      e->onEnd.Call({err});
    } catch (const Napi::Error& x) {
      x.ThrowAsJavaScriptException();
    }
  }
  e->self.Reset();
  e->onEnd.Reset();
}

Napi::Value RxOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsObject() || !info[1].IsFunction() || !info[2].IsFunction()) {
    throw Napi::TypeError::New(env, "rxOpen(opts, onBatch(batch), onEnd(error|null))");
  }
  Napi::Object o = info[0].As<Napi::Object>();
  auto e = std::make_shared<Engine>();
  std::string kind = str(o, "kind"), mode = str(o, "mode"), clock = str(o, "timestamp");
  if (kind != "socket" && kind != "capture") throw Napi::TypeError::New(env, "rxOpen: kind must be 'socket' or 'capture'");
  if (mode != "pktgen" && mode != "payload") throw Napi::TypeError::New(env, "rxOpen: mode must be 'pktgen' or 'payload'");
  if (clock != "kernel" && clock != "hw" && clock != "user") throw Napi::TypeError::New(env, "rxOpen: timestamp must be 'kernel', 'hw' or 'user'");
  e->o.mode = mode == "pktgen" ? PKTGEN : PAYLOAD;
  e->o.clock = clock == "kernel" ? KERNEL : clock == "hw" ? HW : USER;
  e->o.batchRecords = std::max(64u, std::min(num<uint32_t>(o, "batchRecords", 4096), 1u << 20));
  e->o.flushMs = std::max(1u, std::min(num<uint32_t>(o, "flushMs", 5), 1000u));
  e->o.queue = std::max(1u, std::min(num<uint32_t>(o, "queue", 16), 4096u));
  // At least two full recvmmsg vectors of 64 KiB datagrams: a drain takes one only while it still fits.
  e->o.payloadBytes = std::max(num<uint32_t>(o, "payloadBytes", 8 << 20), 2u * VLEN * 65536u);
  uint32_t port = num<uint32_t>(o, "port", 0);
  if (port > 65535 || (port == 0 && kind == "capture")) throw Napi::RangeError::New(env, "rxOpen: port must be 1-65535 (0: a free one, socket only)");
  e->o.port = uint16_t(port);
  std::string family = str(o, "family");
  if (family.empty()) family = "ipv4";
  if (family != "ipv4" && family != "dual") throw Napi::TypeError::New(env, "rxOpen: family must be 'ipv4' or 'dual'");
  e->o.dual = kind == "socket" && family == "dual";
  std::string clockName, warning, familyWarning;
  double rcvbuf = 0;
  bool forced = false;
  if (kind == "socket") OpenSocket(env, e.get(), o, &clockName, &warning, &rcvbuf, &forced, &familyWarning);
  else OpenCapture(env, e.get(), o, &clockName, &warning);
  e->stopFd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (e->o.clock != HW) {  // the system clock: rxNs counts from now, so intervals line up with the wall clock
    e->epochNs = realtime_ns() / 1000 * 1000;
    e->epochSet = true;
  }

  Napi::Object h = handleCtor.New({});
  Handle* hd = Handle::Unwrap(h);
  Engine* raw = e.get();
  hd->e_ = raw;
  hd->keep_ = e;
  raw->onEnd = Napi::Persistent(info[2].As<Napi::Function>());
  raw->self = Napi::Persistent(h);  // the handle lives while the thread runs
  raw->tsfn = Tsfn::New(env, info[1].As<Napi::Function>(), "rawpoll.rx", raw->o.queue, 1, raw, Finalize, static_cast<void*>(nullptr));
  bool socketEngine = kind == "socket";
  raw->th = std::thread([raw, socketEngine]() {
    if (socketEngine) raw->RunSocket();
    else raw->RunCapture();
    raw->tsfn.Release();
  });
  h.Set("port", raw->o.port);
  h.Set("clock", clockName);
  h.Set("timestamp", raw->o.clock == KERNEL ? "kernel" : raw->o.clock == HW ? "hw" : "user");
  h.Set("warning", warning.empty() ? env.Null() : Napi::Value(Napi::String::New(env, warning)));
  h.Set("rcvbuf", socketEngine ? Napi::Value(Napi::Number::New(env, rcvbuf)) : env.Null());
  h.Set("rcvbufForced", forced);
  // What the socket receives: 'dual' (IPv6 and IPv4), 'ipv4'; a capture sees both (null).
  h.Set("family", socketEngine ? Napi::Value(Napi::String::New(env, raw->o.dual ? "dual" : "ipv4")) : env.Null());
  h.Set("familyWarning", familyWarning.empty() ? env.Null() : Napi::Value(Napi::String::New(env, familyWarning)));
  h.Set("epochUs", raw->epochSet ? double(raw->epochNs / 1000) : 0.0);
  return h;
}

void RegisterRx(Napi::Env env, Napi::Object exports) {
  handleCtor = Napi::Persistent(Handle::Define(env));
  handleCtor.SuppressDestruct();
  exports.Set("rxOpen", Napi::Function::New(env, RxOpen, "rxOpen"));
}

}  // namespace rawpoll_rx
