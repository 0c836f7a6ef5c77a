// A connected AF_UNIX SOCK_DGRAM socket, which Node lacks (its dgram module is UDP only, net is stream only): what
// `collect --syslog` writes RFC 5424 messages to (/dev/log of rsyslog's imuxsock or journald's dev-log socket).
//
// Non-blocking on purpose: a syslog daemon that falls behind fills its socket's receive queue (net.unix.max_dgram_qlen
// datagrams) and send() says EAGAIN; the caller counts that message as dropped and goes on receiving, it never waits.
//
// Exports:
//   unixDgramOpen(path) -> fd           socket + connect; throws an Error whose `code` is the errno name: ENOENT (no
//                                       such socket), ECONNREFUSED (nobody bound to it), EPROTOTYPE (a SOCK_STREAM
//                                       socket), EACCES, ENAMETOOLONG (more than sun_path's 107 bytes)
//   unixDgramSend(fd, buf) -> string    '' when the datagram went out whole, else the errno name (EAGAIN, ECONNREFUSED
//                                       when the daemon went away, EMSGSIZE, …); never throws for a send error
//   unixDgramClose(fd)

#include <napi.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <string>

namespace rawpoll_unixdgram {

namespace {

std::string errnoName(int e) {
  const char* g = strerrorname_np(e);  // glibc >= 2.32
  return g ? g : std::to_string(e);
}

Napi::Error coded(Napi::Env env, const std::string& msg, int e) {
  Napi::Error err = Napi::Error::New(env, msg + ": " + strerror(e));
  err.Set("code", Napi::String::New(env, errnoName(e)));
  return err;
}

Napi::Value Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "unixDgramOpen(path): path must be a string");
  std::string path = info[0].As<Napi::String>().Utf8Value();
  sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof sa.sun_path) {
    throw coded(env, "unix socket path '" + path + "' must be 1-" + std::to_string(sizeof sa.sun_path - 1) + " bytes", ENAMETOOLONG);
  }
  memcpy(sa.sun_path, path.data(), path.size());
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw coded(env, "socket(AF_UNIX, SOCK_DGRAM)", errno);
  // connect() on a datagram socket only fixes the peer: it fails at once when there is no socket file (ENOENT),
  // nobody bound to it (ECONNREFUSED) or the socket is of another type (EPROTOTYPE), which is what start-up checks.
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0) {
    int e = errno;
    close(fd);
    throw coded(env, "connect " + path, e);
  }
  return Napi::Number::New(env, fd);
}

Napi::Value Send(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsTypedArray()) {
    throw Napi::TypeError::New(env, "unixDgramSend(fd, buf): fd must be a number, buf a Buffer");
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  Napi::Uint8Array b = info[1].As<Napi::Uint8Array>();
  ssize_t n;
  do {
    n = send(fd, b.Data(), b.ByteLength(), MSG_DONTWAIT | MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return Napi::String::New(env, errnoName(errno));
  return Napi::String::New(env, "");
}

Napi::Value Close(const Napi::CallbackInfo& info) {
  if (info.Length() >= 1 && info[0].IsNumber()) close(info[0].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}

}  // namespace

void RegisterUnixDgram(Napi::Env env, Napi::Object exports) {
  exports.Set("unixDgramOpen", Napi::Function::New(env, Open, "unixDgramOpen"));
  exports.Set("unixDgramSend", Napi::Function::New(env, Send, "unixDgramSend"));
  exports.Set("unixDgramClose", Napi::Function::New(env, Close, "unixDgramClose"));
}

}  // namespace rawpoll_unixdgram
