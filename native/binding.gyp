{
  # rawpoll's native addon: the AF_PACKET batch sender (rawpoll_native.cc), our libpcap binding (pcap.cc), and the
  # patch-plan writer of the pcap engine (planwriter.cc; the plan itself is plan.h, shared with the sender), and the
  # receive engines (rx.cc: recvmmsg or libpcap on a thread of their own, batches of records to JS), and a
  # non-blocking AF_UNIX datagram socket for collect --syslog (unixdgram.cc; Node has none).
  # Linux only (AF_PACKET); the pcap engine stays the portable path.
  "targets": [
    {
      "target_name": "rawpoll_native",
      "sources": ["src/rawpoll_native.cc", "src/pcap.cc", "src/planwriter.cc", "src/rx.cc", "src/unixdgram.cc"],
      "libraries": ["-lpcap"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-O2", "-fexceptions", "-Wall", "-Wextra"]
    }
  ]
}
