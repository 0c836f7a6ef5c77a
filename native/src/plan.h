// The per-frame patch plan of a blast, as the C loops walk it. Built once in TS (src/tx/plan.ts planFor) with every
// offset taken from src/wire and src/proto/pktgen, and handed over flat (encodePlan):
//
//   [nChecksums, nPatches,
//    nChecksums x (offset, rule: 0 ipv4 | 1 udp, corrupt: 0 | 1),
//    nPatches   x (offset, width: 2 | 4, source: 0 ipId | 1 flowSeq | 2 tvSec | 3 tvUsec, checksum index | -1)]
//
// This file knows no header offsets. A frame is its template with each patch's field set to its source's value, and
// each checksum field updated by RFC 1624 eqn 3 (HC' = ~(~HC + ~m + m')) from the template's own value: partials()
// sums the constant part (~HC + ~m) once per template, apply() adds the new words per frame. The model is trafgen's
// packet_dyn (netsniff-ng trafgen.c apply_counter / apply_csum16), without re-summing the checksum's whole range.
//
// The two checksum rules below are src/wire's, restated here because C cannot import TS; test/unit/plan.test.ts and
// test/integration/blast.test.ts compare frames of this loop with frames of src/tx/plan.ts byte for byte.

#ifndef RAWPOLL_PLAN_H
#define RAWPOLL_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include <string.h>

#include <algorithm>
#include <string>
#include <vector>

namespace rawpoll_plan {

enum Source { IP_ID = 0, FLOW_SEQ = 1, TV_SEC = 2, TV_USEC = 3, N_SOURCES = 4 };
constexpr unsigned MAX_CHECKSUMS = 4;
constexpr unsigned MAX_PATCHES = 16;

struct Checksum {
  uint32_t off;
  bool udp;      // finish as UDP: a computed 0 goes out as 0xffff
  bool corrupt;  // --bad-*-checksum: goes out as corrupt(value)
};

struct Patch {
  uint32_t off;
  uint8_t width;  // 2 or 4 bytes, big-endian
  uint8_t source;
  int8_t csum;    // index into Plan::cs, or -1
};

struct Plan {
  unsigned nc = 0, np = 0;
  Checksum cs[MAX_CHECKSUMS];
  Patch p[MAX_PATCHES];
  uint32_t extent = 0;             // bytes a frame needs for every field of the plan
  bool uses[N_SOURCES] = {};       // which counters advance per frame
};

inline uint16_t rd16(const uint8_t* p) { return uint16_t((p[0] << 8) | p[1]); }
inline void wr16(uint8_t* p, uint16_t v) { p[0] = uint8_t(v >> 8); p[1] = uint8_t(v); }
inline void wr32(uint8_t* p, uint32_t v) { wr16(p, uint16_t(v >> 16)); wr16(p + 2, uint16_t(v)); }
inline uint32_t fold(uint32_t s) {
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return s;
}

// wire/udp.ts finishUdpChecksum: 0 on the wire means "no checksum" (RFC 768), so a computed 0 goes out as 0xffff.
inline uint16_t finish_udp(uint16_t c) { return c ? c : 0xffff; }
// wire/checksum.ts corruptChecksum: the right value plus 1 in ones'-complement arithmetic (0xffff wraps to 0x0001).
inline uint16_t corrupt(uint16_t c) { return c == 0xffff ? 1 : uint16_t(c + 1); }

// Reads the flat plan. Returns "" or what is wrong with it.
inline std::string parse(const int32_t* a, size_t n, Plan* out) {
  Plan p;
  if (n < 2 || a[0] < 0 || a[1] < 0) return "plan must start with the checksum and patch counts";
  if (unsigned(a[0]) > MAX_CHECKSUMS || unsigned(a[1]) > MAX_PATCHES)
    return "plan has more than " + std::to_string(MAX_CHECKSUMS) + " checksums or " + std::to_string(MAX_PATCHES) + " patches";
  p.nc = unsigned(a[0]);
  p.np = unsigned(a[1]);
  if (n != 2 + 3 * size_t(p.nc) + 4 * size_t(p.np)) return "plan length does not match its counts";
  size_t k = 2;
  for (unsigned c = 0; c < p.nc; c++, k += 3) {
    if (a[k] < 0 || (a[k + 1] != 0 && a[k + 1] != 1) || (a[k + 2] != 0 && a[k + 2] != 1)) return "plan checksum " + std::to_string(c) + " is malformed";
    p.cs[c] = Checksum{uint32_t(a[k]), a[k + 1] == 1, a[k + 2] == 1};
    if (p.cs[c].off + 2 > p.extent) p.extent = p.cs[c].off + 2;
  }
  for (unsigned i = 0; i < p.np; i++, k += 4) {
    if (a[k] < 0 || (a[k + 1] != 2 && a[k + 1] != 4) || a[k + 2] < 0 || a[k + 2] >= N_SOURCES || a[k + 3] < -1 || a[k + 3] >= int32_t(p.nc))
      return "plan patch " + std::to_string(i) + " is malformed";
    p.p[i] = Patch{uint32_t(a[k]), uint8_t(a[k + 1]), uint8_t(a[k + 2]), int8_t(a[k + 3])};
    p.uses[a[k + 2]] = true;
    if (p.p[i].off + p.p[i].width > p.extent) p.extent = p.p[i].off + p.p[i].width;
  }
  *out = p;
  return "";
}

// The constant part of each checksum's update for one template (len >= plan.extent): ~HC + ~m of every word fed to it.
inline void partials(const Plan& p, const uint8_t* tpl, uint32_t* out) {
  for (unsigned c = 0; c < p.nc; c++) {
    uint32_t s = uint16_t(~rd16(tpl + p.cs[c].off));
    for (unsigned i = 0; i < p.np; i++) {
      if (p.p[i].csum != int8_t(c)) continue;
      for (unsigned w = 0; w < p.p[i].width; w += 2) s += uint16_t(~rd16(tpl + p.p[i].off + w));
    }
    out[c] = s;
  }
}

// Turns `f`, a copy of its template, into the frame carrying values v[source]; `partial` is partials() of the template.
inline void apply(const Plan& p, const uint32_t* partial, uint8_t* f, const uint32_t* v) {
  uint32_t s[MAX_CHECKSUMS];
  for (unsigned c = 0; c < p.nc; c++) s[c] = partial[c];
  for (unsigned i = 0; i < p.np; i++) {
    const Patch& x = p.p[i];
    const uint32_t val = v[x.source];
    if (x.width == 4) {
      wr32(f + x.off, val);
      if (x.csum >= 0) s[x.csum] += (val >> 16) + (val & 0xffff);
    } else {
      wr16(f + x.off, uint16_t(val));
      if (x.csum >= 0) s[x.csum] += val & 0xffff;
    }
  }
  for (unsigned c = 0; c < p.nc; c++) {
    uint16_t r = uint16_t(~fold(s[c]));
    if (p.cs[c].udp) r = finish_udp(r);
    if (p.cs[c].corrupt) r = corrupt(r);
    wr16(f + p.cs[c].off, r);
  }
}

struct Template {
  uint32_t off, len, flow;
  uint32_t partial[MAX_CHECKSUMS];  // partials() of this template
};

// A run's frames: the templates, the order a run cycles through them, the plan, and the counters the plan's values
// come from. Shared by the native engine's send loop (rawpoll_native.cc) and the pcap engine's PlanWriter
// (planwriter.cc), so both make a frame the same way.
struct Frames {
  std::vector<uint8_t> data;
  std::vector<Template> tpl;
  std::vector<uint32_t> order;
  Plan plan;
  uint32_t maxLen = 0;
  uint32_t nFlows = 1;
  uint32_t ipId = 0;          // next IP ID, if the plan has an ipId patch
  std::vector<uint32_t> seq;  // next pktgen seq of each flow, if the plan has a flowSeq patch

  // Copies the templates, order and plan in (JS may reuse its buffers). Returns "" or what is wrong.
  std::string load(const uint8_t* frames, size_t size, const uint32_t* offs, const uint32_t* lens, const uint32_t* flows,
                   size_t nt, const uint32_t* ord, size_t no, const int32_t* planFlat, size_t planLen, uint32_t flowsN,
                   uint32_t ipIdStart, uint32_t seqStart) {
    std::string bad = parse(planFlat, planLen, &plan);
    if (!bad.empty()) return bad;
    if (!nt) return "no templates";
    if (!no) return "order must not be empty";
    nFlows = flowsN ? flowsN : 1;
    data.assign(frames, frames + size);
    tpl.clear();
    for (size_t i = 0; i < nt; i++) {
      Template t{};
      t.off = offs[i];
      t.len = lens[i];
      t.flow = flows[i];
      if (size_t(t.off) + t.len > size) return "template " + std::to_string(i) + " lies outside frames";
      if (t.len < plan.extent)
        return "template " + std::to_string(i) + " has " + std::to_string(t.len) + " bytes, the plan needs " + std::to_string(plan.extent);
      if (t.flow >= nFlows) return "template " + std::to_string(i) + " has flow >= nFlows";
      maxLen = std::max(maxLen, t.len);
      partials(plan, data.data() + t.off, t.partial);
      tpl.push_back(t);
    }
    order.resize(no);
    for (size_t i = 0; i < no; i++) {
      if (ord[i] >= nt) return "order[" + std::to_string(i) + "] is not a template index";
      order[i] = ord[i];
    }
    ipId = ipIdStart;
    seq.assign(nFlows, seqStart);
    return "";
  }

  // Template t copied into `slot` and made the frame with these values (multi-thread senders compute their own).
  void write(const Template& t, uint8_t* slot, uint32_t id, uint32_t sq, uint32_t tvSec, uint32_t tvUsec) const {
    memcpy(slot, data.data() + t.off, t.len);
    uint32_t v[N_SOURCES] = {id, sq, tvSec, tvUsec};
    apply(plan, t.partial, slot, v);
  }

  // The next frame of template t into `slot`: the counters it uses advance.
  void next(const Template& t, uint8_t* slot, uint32_t tvSec, uint32_t tvUsec) {
    write(t, slot, plan.uses[IP_ID] ? ipId++ : 0, plan.uses[FLOW_SEQ] ? seq[t.flow]++ : 0, tvSec, tvUsec);
  }

  // Takes back the counters of a frame of template t that did not go out: the next frame carries its numbers.
  void unwrite(const Template& t) {
    if (plan.uses[IP_ID]) ipId--;
    if (plan.uses[FLOW_SEQ]) seq[t.flow]--;
  }
};

}  // namespace rawpoll_plan

#endif
