// Link state as rawpoll reads it everywhere (pcap.cc's linkState for JS, the blast send loop in C): one definition.
#pragma once

#include <errno.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <string.h>
#include <sys/ioctl.h>

namespace rawpoll_link {

struct State {
  bool up = false;       // IFF_UP: administratively up
  bool running = false;  // IFF_RUNNING: operstate up — the kernel's linkwatch sets it up to ~1 s after the carrier
  bool carrier = false;  // netif_carrier_ok now (ETHTOOL_GLINK; IFF_RUNNING where the driver cannot say)
};

// Reads IF's flags and carrier through any socket `fd` of this network namespace. Returns 0, or the errno of
// SIOCGIFFLAGS (ENODEV: no such interface).
inline int read_state(int fd, const char* ifname, State* st) {
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  memcpy(ifr.ifr_name, ifname, strnlen(ifname, IFNAMSIZ - 1));  // zero-filled above: always terminated
  if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0) return errno;
  st->up = ifr.ifr_flags & IFF_UP;
  st->running = ifr.ifr_flags & IFF_RUNNING;
  struct ethtool_value ev;
  memset(&ev, 0, sizeof ev);
  ev.cmd = ETHTOOL_GLINK;
  ifr.ifr_data = reinterpret_cast<char*>(&ev);
  st->carrier = ioctl(fd, SIOCETHTOOL, &ifr) == 0 ? (st->up && ev.data != 0) : st->running;
  return 0;
}

}  // namespace rawpoll_link
