// rawpoll's own libpcap binding (replaces npm `cap`).
//
// Why our own: cap 0.2.1 asserts `status == 0` in its uv_poll callback, so the first POLLERR on the capture socket
// (the link went down, the interface vanished) aborts the whole process (mscdex/cap#82); it also offers no pcap_stats,
// no timestamp types or nanosecond precision, no non-promiscuous capture, and one JS call per captured frame.
//
// Here every libpcap or socket error reaches JS as a thrown Error (open, filter, inject, stats) or as one call of the
// handle's onError(message, errnoName) (receive side) — after which the handle pauses until JS calls resume() or close().
// Nothing in any link state aborts the process. Received frames are delivered in batches: pcap_dispatch copies
// frames back to back into a Buffer that JS owns, with five u32 per frame in a Uint32Array
// [offset, caplen, wirelen, tv_sec, tv_frac] (tv_frac in ns or µs, as the handle's precision says), and JS is
// called once per batch with the frame count.
//
// Exports (added to the addon's exports by RegisterPcap):
//   pcapOpen(ifname, opts, onBatch(n), onError(msg, code)) -> handle
//     opts: {snaplen, bufferSize, promisc, immediate, timeoutMs, tstampType, nanosecond, filter, data: Buffer,
//            meta: Uint32Array}
//     handle: {linktype, linktypeName, nanosecond, snaplen, fd, warning, setFilter(expr), inject(buf) -> bytes,
//              injectBatch(buf, offsets, lengths, n) -> {sent, waits, code, error},
//              stats() -> {received, dropped, ifdropped}, resume() (poll again after onError), close()}
//   injectBatch: pcap_inject for frames 0..n-1 (frame i = buf[offsets[i], offsets[i] + lengths[i]); offsets and
//     lengths are Uint32Arrays), in one JS call: the per-frame N-API crossing of inject() cost half the pcap engine's
//     rate. A full queue (EAGAIN/ENOBUFS) is waited out and the same frame retried, as PcapLink.send does: EAGAIN
//     (socket send buffer full) waits for POLLOUT, ENOBUFS (the qdisc dropped it) sleeps — both for 50 µs doubling
//     to 10 ms, each wait counted in `waits`; a frame whose queue stayed full for 2 s ends the batch with code
//     EAGAIN/ENOBUFS. Any other error ends it at once. `sent` frames (0..sent-1) went out; code is the errno name of
//     the failure (ENETDOWN, ENXIO, ...; glibc's name for others) and error libpcap's message, both '' when all
//     n were sent. A send error never throws; bad arguments (a frame outside buf, n beyond the arrays) throw
//     TypeError/RangeError before anything is sent.
//   pcapTstampTypes(ifname) -> string[]          (what pcap_set_tstamp_type accepts on this interface)
//   linkState(ifname) -> {index, up, running, carrier}  (index 0: no such interface; ioctls in this netns)
//   pcapLibVersion() -> string

#include <napi.h>
#include <pcap/pcap.h>
#include <uv.h>

#include <errno.h>
#include <net/if.h>
#include <poll.h>
#include <string.h>
#include <time.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "linkstate.h"

namespace rawpoll_pcap {

// The errno names JS classifies by (link down, interface gone, queue full, permission).
const char* errnoName(int e) {
  switch (e) {
    case EAGAIN: return "EAGAIN";
    case ENOBUFS: return "ENOBUFS";
    case ENETDOWN: return "ENETDOWN";
    case ENXIO: return "ENXIO";
    case ENODEV: return "ENODEV";
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case EMSGSIZE: return "EMSGSIZE";
    case EINVAL: return "EINVAL";
    default: return "";
  }
}

// injectBatch's code: never '' for a failure (that means all sent); glibc names the errnos errnoName does not.
std::string batchCode(int e) {
  const char* n = errnoName(e);
  if (*n) return n;
  const char* g = strerrorname_np(e);  // glibc >= 2.32
  return g ? g : "errno " + std::to_string(e);
}

Napi::Error codedError(Napi::Env env, const std::string& msg, const char* code) {
  Napi::Error e = Napi::Error::New(env, msg);
  if (code && *code) e.Set("code", Napi::String::New(env, code));
  return e;
}

// pcap_activate's warnings and errors in words a user can act on, with a code JS can branch on.
const char* activateCode(int rc) {
  switch (rc) {
    case PCAP_ERROR_NO_SUCH_DEVICE: return "ENODEV";
    case PCAP_ERROR_PERM_DENIED: return "EPERM";
    case PCAP_ERROR_PROMISC_PERM_DENIED: return "EPERM";
    case PCAP_ERROR_IFACE_NOT_UP: return "ENETDOWN";
    default: return "";
  }
}

class Handle : public Napi::ObjectWrap<Handle> {
 public:
  static Napi::FunctionReference ctor;

  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "PcapHandle", {
      InstanceMethod("setFilter", &Handle::SetFilter),
      InstanceMethod("inject", &Handle::Inject),
      InstanceMethod("injectBatch", &Handle::InjectBatch),
      InstanceMethod("stats", &Handle::Stats),
      InstanceMethod("resume", &Handle::Resume),
      InstanceMethod("close", &Handle::Close),
    });
  }

  explicit Handle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Handle>(info) {}

  ~Handle() override {
    Shutdown();
    delete async_;  // not in Shutdown: close() may be called from inside a callback made in this context
  }

  // Opens and activates; throws a coded Error on failure (and then owns nothing).
  void Open(Napi::Env env, const std::string& ifname, Napi::Object o, Napi::Function onBatch, Napi::Function onError) {
    char errbuf[PCAP_ERRBUF_SIZE] = {0};
    p_ = pcap_create(ifname.c_str(), errbuf);
    if (!p_) throw codedError(env, std::string("pcap_create: ") + errbuf, "");
    auto num = [&](const char* k, int dflt) {
      Napi::Value v = o.Get(k);
      return v.IsNumber() ? v.As<Napi::Number>().Int32Value() : dflt;
    };
    auto flag = [&](const char* k, bool dflt) {
      Napi::Value v = o.Get(k);
      return v.IsBoolean() ? v.As<Napi::Boolean>().Value() : dflt;
    };
    snaplen_ = num("snaplen", 65535);
    pcap_set_snaplen(p_, snaplen_);
    pcap_set_promisc(p_, flag("promisc", false) ? 1 : 0);
    pcap_set_immediate_mode(p_, flag("immediate", true) ? 1 : 0);
    pcap_set_timeout(p_, num("timeoutMs", 10));
    int bufsize = num("bufferSize", 0);
    if (bufsize > 0) pcap_set_buffer_size(p_, bufsize);
    if (flag("nanosecond", false) && pcap_set_tstamp_precision(p_, PCAP_TSTAMP_PRECISION_NANO) != 0) {
      std::string m = "nanosecond timestamps are not supported on " + ifname;
      Shutdown();
      throw codedError(env, m, "ENOTSUP");
    }
    Napi::Value tt = o.Get("tstampType");
    if (tt.IsString()) {
      std::string name = tt.As<Napi::String>();
      int v = pcap_tstamp_type_name_to_val(name.c_str());
      int rc = v == PCAP_ERROR ? PCAP_ERROR : pcap_set_tstamp_type(p_, v);
      // PCAP_WARNING_TSTAMP_TYPE_NOTSUP too: libpcap would fall back to another type, but the user asked for this one.
      if (rc != 0) {
        std::string m = "timestamp type '" + name + "' is not supported on " + ifname;
        Shutdown();
        throw codedError(env, m, "ENOTSUP");
      }
    }
    int rc = pcap_activate(p_);
    if (rc < 0) {
      std::string m = rc == PCAP_ERROR_IFACE_NOT_UP ? ifname + " is not up" : std::string(pcap_geterr(p_));
      if (m.empty()) m = pcap_statustostr(rc);
      const char* code = activateCode(rc);
      Shutdown();
      throw codedError(env, m, code);
    }
    // rc > 0 is a warning (e.g. PCAP_WARNING_TSTAMP_TYPE_NOTSUP): the handle works; say it once to JS.
    if (rc > 0) warning_ = std::string(pcap_statustostr(rc)) + ": " + pcap_geterr(p_);
    if (pcap_setnonblock(p_, 1, errbuf) != 0) {
      std::string m = std::string("pcap_setnonblock: ") + errbuf;
      Shutdown();
      throw codedError(env, m, "");
    }
    Napi::Value f = o.Get("filter");
    if (f.IsString()) ApplyFilter(env, f.As<Napi::String>());

    Napi::Value d = o.Get("data");
    Napi::Value m = o.Get("meta");
    if (d.IsBuffer() && m.IsTypedArray()) {
      auto data = d.As<Napi::Buffer<uint8_t>>();
      auto meta = m.As<Napi::Uint32Array>();
      if (data.Length() < size_t(snaplen_)) {
        Shutdown();
        throw Napi::RangeError::New(env, "pcapOpen: opts.data must hold at least one snaplen-sized frame");
      }
      dataRef_ = Napi::Persistent(d.As<Napi::Object>());
      metaRef_ = Napi::Persistent(m.As<Napi::Object>());
      data_ = data.Data();
      dataLen_ = data.Length();
      meta_ = meta.Data();
      metaFrames_ = meta.ElementLength() / 5;
      onBatch_ = Napi::Persistent(onBatch);
      onError_ = Napi::Persistent(onError);
      async_ = new Napi::AsyncContext(env, "rawpoll.pcap");
      uv_loop_t* loop = nullptr;
      napi_get_uv_event_loop(env, &loop);
      poll_ = new uv_poll_t;
      if (uv_poll_init(loop, poll_, pcap_get_selectable_fd(p_)) != 0) {
        delete poll_;
        poll_ = nullptr;
        Shutdown();
        throw codedError(env, "cannot watch the capture socket of " + ifname, "");
      }
      poll_->data = this;
      uv_poll_start(poll_, UV_READABLE, OnPoll);
      Ref();  // alive while it polls, even if JS drops it; Close() unrefs
      polling_ = true;
    }
  }

  Napi::Object Describe(Napi::Env env, Napi::Object self) {
    int lt = pcap_datalink(p_);
    const char* ltn = pcap_datalink_val_to_name(lt);
    self.Set("linktype", lt);
    self.Set("linktypeName", ltn ? ltn : "");
    self.Set("nanosecond", pcap_get_tstamp_precision(p_) == PCAP_TSTAMP_PRECISION_NANO);
    self.Set("snaplen", pcap_snapshot(p_));
    self.Set("fd", pcap_get_selectable_fd(p_));
    self.Set("warning", warning_.empty() ? env.Null() : Napi::Value(Napi::String::New(env, warning_)));
    return self;
  }

 private:
  pcap_t* p_ = nullptr;
  int snaplen_ = 65535;
  std::string warning_;
  uv_poll_t* poll_ = nullptr;
  bool polling_ = false;
  bool paused_ = false;
  Napi::ObjectReference dataRef_, metaRef_;
  Napi::FunctionReference onBatch_, onError_;
  Napi::AsyncContext* async_ = nullptr;
  uint8_t* data_ = nullptr;
  size_t dataLen_ = 0;
  uint32_t* meta_ = nullptr;
  size_t metaFrames_ = 0;
  // The batch being filled by pcap_dispatch's callback.
  size_t nFrames_ = 0;
  size_t used_ = 0;

  void ApplyFilter(Napi::Env env, const std::string& expr) {
    struct bpf_program prog;
    // PCAP_NETMASK_UNKNOWN: rawpoll's filters never test broadcast addresses, and a link with no IPv4 address
    // (netdump's case) has no netmask to look up — cap printed a warning for that; there is nothing to warn about.
    if (pcap_compile(p_, &prog, expr.c_str(), 1, PCAP_NETMASK_UNKNOWN) != 0) {
      throw codedError(env, "bad capture filter '" + expr + "': " + pcap_geterr(p_), "EINVAL");
    }
    int rc = pcap_setfilter(p_, &prog);
    pcap_freecode(&prog);
    if (rc != 0) throw codedError(env, std::string("pcap_setfilter: ") + pcap_geterr(p_), "");
  }

  void CheckOpen(Napi::Env env) {
    if (!p_) throw codedError(env, "the capture handle is closed", "EBADF");
  }

  Napi::Value SetFilter(const Napi::CallbackInfo& info) {
    CheckOpen(info.Env());
    if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(info.Env(), "setFilter(expr: string)");
    ApplyFilter(info.Env(), info[0].As<Napi::String>());
    return info.Env().Undefined();
  }

  // pcap_inject: returns the bytes sent, or throws an Error whose `code` is the errno name (EAGAIN, ENOBUFS,
  // ENETDOWN, ENXIO, ...) so JS can wait out a full queue and tell a down link from a vanished one.
  Napi::Value Inject(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    if (info.Length() < 1 || !info[0].IsTypedArray()) throw Napi::TypeError::New(env, "inject(frame: Uint8Array)");
    auto a = info[0].As<Napi::Uint8Array>();
    errno = 0;
    int n = pcap_inject(p_, a.Data(), a.ByteLength());
    if (n < 0) {
      int e = errno;
      throw codedError(env, pcap_geterr(p_), errnoName(e));
    }
    return Napi::Number::New(env, n);
  }

  // See the header comment. The wait rule is PcapLink.send's (src/link/pcap.ts), moved under the loop.
  Napi::Value InjectBatch(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    auto isU32 = [](const Napi::Value& v) {
      return v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_uint32_array;
    };
    if (info.Length() < 4 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array ||
        !isU32(info[1]) || !isU32(info[2]) || !info[3].IsNumber()) {
      throw Napi::TypeError::New(env, "injectBatch(buf: Uint8Array, offsets: Uint32Array, lengths: Uint32Array, n: number)");
    }
    auto buf = info[0].As<Napi::Uint8Array>();
    auto offs = info[1].As<Napi::Uint32Array>();
    auto lens = info[2].As<Napi::Uint32Array>();
    double nd = info[3].As<Napi::Number>().DoubleValue();
    size_t cap = std::min(offs.ElementLength(), lens.ElementLength());
    if (!(nd >= 0) || nd > double(cap) || nd != std::floor(nd)) {
      throw Napi::RangeError::New(env, "injectBatch: n " + Napi::Number::New(env, nd).ToString().Utf8Value() +
                                           " must be an integer 0-" + std::to_string(cap) + " (the shorter of offsets and lengths)");
    }
    size_t n = size_t(nd);
    const uint8_t* data = buf.Data();
    const uint64_t size = buf.ByteLength();
    const uint32_t* off = offs.Data();
    const uint32_t* len = lens.Data();
    for (size_t i = 0; i < n; i++) {
      if (uint64_t(off[i]) + len[i] > size) {
        throw Napi::RangeError::New(env, "injectBatch: frame " + std::to_string(i) + " (offset " + std::to_string(off[i]) +
                                             ", length " + std::to_string(len[i]) + ") ends beyond the buffer's " +
                                             std::to_string(size) + " bytes");
      }
    }
    const int fd = pcap_get_selectable_fd(p_);
    // The capture side of this socket sits in the event loop's epoll set: every frame the kernel frees after sending
    // then walks the socket's wait queue to wake it (sock_wfree -> sk_write_space), a cost a send-only loop does not
    // pay. Out of the set while the batch goes out; frames that arrive meanwhile wait in the ring and are read after.
    struct PollPause {
      uv_poll_t* poll;
      ~PollPause() { if (poll) uv_poll_start(poll, UV_READABLE, OnPoll); }
    } pause{poll_ && !paused_ && n > 1 ? poll_ : nullptr};
    if (pause.poll) uv_poll_stop(pause.poll);
    const long kLimitNs = 2000L * 1000 * 1000;  // PcapLink's SEND_RETRY_LIMIT_MS
    size_t sent = 0;
    double waits = 0;
    bool failed = false;
    int failErr = 0;  // 0: libpcap refused without an errno
    std::string failMsg;
    // The current frame met a full queue at fullSince (ns) and waits backoffNs before its next try.
    bool full = false;
    long fullSince = 0, backoffNs = 0;
    while (sent < n) {
      errno = 0;
      if (pcap_inject(p_, data + off[sent], len[sent]) >= 0) {
        sent++;
        full = false;
        continue;
      }
      int e = errno;
      if (e != EAGAIN && e != ENOBUFS) {
        failed = true;
        failErr = e;
        failMsg = pcap_geterr(p_);
        break;
      }
      long now = monoNs();
      if (!full) {
        full = true;
        fullSince = now;
        backoffNs = 50 * 1000;
      } else if (now - fullSince > kLimitNs) {
        failed = true;
        failErr = e;
        failMsg = std::string("the device queue stayed full for 2000 ms (") + pcap_geterr(p_) + ")";
        break;
      }
      waits++;
      struct timespec ts = {backoffNs / 1000000000L, backoffNs % 1000000000L};
      if (e == EAGAIN) {
        // The socket's send buffer is full: POLLOUT comes when the kernel frees some of it (sock_writeable).
        struct pollfd pfd = {fd, POLLOUT, 0};
        ppoll(&pfd, 1, &ts, nullptr);
      } else {
        // ENOBUFS: the qdisc dropped the frame (net_xmit_errno); the socket stays writable, so poll would not wait.
        nanosleep(&ts, nullptr);
      }
      backoffNs = std::min(backoffNs * 2, 10L * 1000 * 1000);
    }
    Napi::Object r = Napi::Object::New(env);
    r.Set("sent", double(sent));
    r.Set("waits", waits);
    r.Set("code", !failed ? std::string() : failErr ? batchCode(failErr) : std::string("PCAP_ERROR"));
    r.Set("error", failMsg);
    return r;
  }

  static long monoNs() {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000L + t.tv_nsec;
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    struct pcap_stat st;
    if (pcap_stats(p_, &st) != 0) throw codedError(env, std::string("pcap_stats: ") + pcap_geterr(p_), "");
    Napi::Object r = Napi::Object::New(env);
    r.Set("received", double(st.ps_recv));
    r.Set("dropped", double(st.ps_drop));
    r.Set("ifdropped", double(st.ps_ifdrop));
    return r;
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    bool wasPolling = polling_;
    Shutdown();
    if (wasPolling) Unref();
    return info.Env().Undefined();
  }

  void StopPolling() {
    if (!poll_) return;
    uv_poll_stop(poll_);
    poll_->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(poll_), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
    poll_ = nullptr;
  }

  void Shutdown() {
    StopPolling();
    if (p_) {
      pcap_close(p_);
      p_ = nullptr;
    }
    polling_ = false;
  }

  static void OnFrame(u_char* user, const struct pcap_pkthdr* h, const u_char* bytes) {
    auto* self = reinterpret_cast<Handle*>(user);
    uint32_t len = h->caplen;
    uint32_t* m = self->meta_ + 5 * self->nFrames_;
    m[0] = uint32_t(self->used_);
    m[1] = len;
    m[2] = h->len;
    m[3] = uint32_t(h->ts.tv_sec);
    m[4] = uint32_t(h->ts.tv_usec);  // ns with nanosecond precision: libpcap keeps them in tv_usec
    memcpy(self->data_ + self->used_, bytes, len);
    self->used_ += (len + 7) & ~size_t(7);
    self->nFrames_++;
    // Stop this dispatch before a frame could fail to fit (the next one may be a whole snaplen).
    if (self->nFrames_ == self->metaFrames_ || self->dataLen_ - std::min(self->dataLen_, self->used_) < size_t(self->snaplen_)) {
      pcap_breakloop(self->p_);
    }
  }

  // Readable (or an error) on the capture socket: drain it in batches, one JS call per batch; a bounded number of
  // batches per wake-up so a flood cannot starve the rest of the event loop (the kernel ring holds the rest).
  static void OnPoll(uv_poll_t* h, int status, int /*events*/) {
    auto* self = reinterpret_cast<Handle*>(h->data);
    if (!self) return;
    Napi::Env env = self->Env();
    Napi::HandleScope scope(env);
    if (status < 0) {
      // libuv saw POLLERR (or EBADF): ask libpcap what it was — it reads SO_ERROR and names it.
      std::string msg;
      int e = 0;
      if (self->p_) {
        errno = 0;
        int rc = pcap_dispatch(self->p_, 1, OnFrame, reinterpret_cast<u_char*>(self));
        e = errno;
        if (rc < 0) msg = pcap_geterr(self->p_);
      }
      if (msg.empty()) {
        // libuv reports POLLERR as EBADF; the socket's own error says what happened (ENETDOWN: link down or gone).
        int err = 0;
        socklen_t len = sizeof err;
        if (self->p_ && getsockopt(pcap_get_selectable_fd(self->p_), SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err) {
          e = err;
          msg = std::string("capture socket error: ") + strerror(err);
        } else {
          msg = std::string("capture socket error: ") + uv_strerror(status);
        }
      }
      self->Fail(env, msg, e);
      return;
    }
    for (int round = 0; round < 64 && self->p_ && self->polling_; round++) {
      self->nFrames_ = 0;
      self->used_ = 0;
      errno = 0;
      int rc = pcap_dispatch(self->p_, -1, OnFrame, reinterpret_cast<u_char*>(self));
      int e = errno;
      size_t n = self->nFrames_;
      if (n > 0) {
        try {
          self->onBatch_.MakeCallback(env.Global(), {Napi::Number::New(env, double(n))}, *self->async_);
        } catch (const Napi::Error& err) {
          napi_fatal_exception(env, err.Value());
          return;
        }
      }
      if (rc == PCAP_ERROR) {
        if (self->p_) self->Fail(env, pcap_geterr(self->p_), e);
        return;
      }
      if (rc == 0 || (rc != PCAP_ERROR_BREAK && n == 0)) return;
    }
  }

  // After an error: poll again. The socket stays bound through a link outage (the kernel unhooks it on NETDEV_DOWN
  // and hooks it again on NETDEV_UP), and what arrived since is in its ring; clear the pending socket error first.
  Napi::Value Resume(const Napi::CallbackInfo& info) {
    CheckOpen(info.Env());
    if (poll_ && paused_) {
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(pcap_get_selectable_fd(p_), SOL_SOCKET, SO_ERROR, &err, &len);
      paused_ = false;
      uv_poll_start(poll_, UV_READABLE, OnPoll);
    }
    return info.Env().Undefined();
  }

  void Fail(Napi::Env env, const std::string& msg, int e) {
    // Pause polling but keep the pcap handle: JS decides (resume when the link is back, reopen, or close).
    if (poll_) uv_poll_stop(poll_);
    paused_ = true;
    // libpcap reports a link taken down and an interface deleted alike (SO_ERROR is ENETDOWN for both): JS tells
    // them apart with linkState().
    const char* code = errnoName(e);
    try {
      onError_.MakeCallback(env.Global(), {Napi::String::New(env, msg), Napi::String::New(env, code)}, *async_);
    } catch (const Napi::Error& err) {
      napi_fatal_exception(env, err.Value());
    }
  }
};

Napi::FunctionReference Handle::ctor;

Napi::Value PcapOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsString() || !info[1].IsObject() || !info[2].IsFunction() || !info[3].IsFunction()) {
    throw Napi::TypeError::New(env, "pcapOpen(ifname, opts, onBatch, onError)");
  }
  Napi::Object obj = Handle::ctor.New({});
  Handle* h = Handle::Unwrap(obj);
  h->Open(env, info[0].As<Napi::String>(), info[1].As<Napi::Object>(), info[2].As<Napi::Function>(), info[3].As<Napi::Function>());
  return h->Describe(env, obj);
}

Napi::Value PcapTstampTypes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "pcapTstampTypes(ifname)");
  std::string ifname = info[0].As<Napi::String>();
  char errbuf[PCAP_ERRBUF_SIZE] = {0};
  pcap_t* p = pcap_create(ifname.c_str(), errbuf);
  if (!p) throw codedError(env, std::string("pcap_create: ") + errbuf, "");
  int* types = nullptr;
  int n = pcap_list_tstamp_types(p, &types);
  Napi::Array out = Napi::Array::New(env);
  for (int i = 0; i < n; i++) {
    const char* name = pcap_tstamp_type_val_to_name(types[i]);
    if (name) out.Set(out.Length(), name);
  }
  if (types) pcap_free_tstamp_types(types);
  pcap_close(p);
  return out;
}

// The interface's index and flags as this process's network namespace sees them (not /sys, which shows the
// namespace of whoever mounted it). index 0: there is no interface of that name.
Napi::Value LinkState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "linkState(ifname)");
  std::string ifname = info[0].As<Napi::String>();
  Napi::Object r = Napi::Object::New(env);
  unsigned index = ifname.size() < IFNAMSIZ ? if_nametoindex(ifname.c_str()) : 0;
  rawpoll_link::State st;
  if (index) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) s = socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s >= 0) {
      if (rawpoll_link::read_state(s, ifname.c_str(), &st) == ENODEV) index = 0;
      close(s);
    }
  }
  r.Set("index", index);
  r.Set("up", st.up);
  r.Set("running", st.running);
  r.Set("carrier", st.carrier);
  return r;
}

Napi::Value PcapLibVersion(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), pcap_lib_version());
}

void RegisterPcap(Napi::Env env, Napi::Object exports) {
  Handle::ctor = Napi::Persistent(Handle::Define(env));
  Handle::ctor.SuppressDestruct();
  exports.Set("pcapOpen", Napi::Function::New(env, PcapOpen, "pcapOpen"));
  exports.Set("pcapTstampTypes", Napi::Function::New(env, PcapTstampTypes, "pcapTstampTypes"));
  exports.Set("linkState", Napi::Function::New(env, LinkState, "linkState"));
  exports.Set("pcapLibVersion", Napi::Function::New(env, PcapLibVersion, "pcapLibVersion"));
}

}  // namespace rawpoll_pcap
