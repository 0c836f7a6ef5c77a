// The pcap engine's frame writer: the patch plan (plan.h) walked in C for a group of frames at a time, so the engine's
// JS loop does nothing per frame — it asks the schedule how many, has them written here into its batch buffer, and
// hands the buffer to Link.sendBatch (for a PcapLink, pcap_inject per frame in C). The native engine's send loop
// (rawpoll_native.cc) makes its frames with the same rawpoll_plan::Frames.
//
// Exports (added by RegisterPlanWriter):
//   planWriter(params) -> writer
//     params: {frames: Buffer, offsets, lengths, flows, order: Uint32Array, nFlows, plan: Int32Array, ipId, seqStart}
//     writer.fill(buf: Uint8Array, offsets: Uint32Array, lengths: Uint32Array, pos, m, tvSec, tvUsec) -> bytes:
//       the frames of order positions pos .. pos+m-1 (mod the order's length), back to back from buf[0]; offsets[i] and
//       lengths[i] say where frame i is. The IP ID and seq counters advance by those frames.
//     writer.rewind(pos, k): the frames of order positions pos .. pos+k-1 did not go out; their numbers go to the next.
//     writer.counters() -> {ipId, seq: number[]}: the next IP ID (mod 2^16) and the next seq of each flow.

#include <napi.h>

#include <cmath>
#include <string>

#include "plan.h"

namespace rawpoll_plan {

void LoadFrames(Napi::Env env, Napi::Object p, const char* who, Frames* fr) {
  const std::string w = std::string(who) + ": ";
  if (!p.Get("frames").IsBuffer()) throw Napi::TypeError::New(env, w + "params.frames must be a Buffer");
  auto frames = p.Get("frames").As<Napi::Buffer<uint8_t>>();
  auto u32 = [&](const char* k) {
    Napi::Value v = p.Get(k);
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array)
      throw Napi::TypeError::New(env, w + "params." + k + " must be a Uint32Array");
    return v.As<Napi::Uint32Array>();
  };
  auto offs = u32("offsets"), lens = u32("lengths"), flows = u32("flows"), order = u32("order");
  const size_t nt = offs.ElementLength();
  if (lens.ElementLength() != nt || flows.ElementLength() != nt)
    throw Napi::RangeError::New(env, w + "offsets, lengths and flows must be of one length");
  Napi::Value pv = p.Get("plan");
  if (!pv.IsTypedArray() || pv.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    throw Napi::TypeError::New(env, w + "params.plan must be an Int32Array (src/tx/plan.ts encodePlan)");
  auto plan = pv.As<Napi::Int32Array>();
  auto num = [&](const char* k, double dflt) {
    Napi::Value v = p.Get(k);
    return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : dflt;
  };
  const double ipId = num("ipId", 1);
  std::string bad = fr->load(frames.Data(), frames.Length(), offs.Data(), lens.Data(), flows.Data(), nt, order.Data(),
                             order.ElementLength(), plan.Data(), plan.ElementLength(), uint32_t(num("nFlows", 1)),
                             ipId >= 0 ? uint32_t(ipId) : 0, uint32_t(num("seqStart", 1)));
  if (!bad.empty()) throw Napi::RangeError::New(env, w + bad);
}

namespace {

class PlanWriter : public Napi::ObjectWrap<PlanWriter> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "PlanWriter", {
      InstanceMethod("fill", &PlanWriter::Fill),
      InstanceMethod("rewind", &PlanWriter::Rewind),
      InstanceMethod("counters", &PlanWriter::Counters),
    });
  }

  explicit PlanWriter(const Napi::CallbackInfo& info) : Napi::ObjectWrap<PlanWriter>(info) {
    if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(info.Env(), "planWriter(params)");
    LoadFrames(info.Env(), info[0].As<Napi::Object>(), "planWriter", &fr_);
  }

 private:
  Frames fr_;

  // An order position: a non-negative integer (taken modulo the order's length).
  size_t Pos(Napi::Env env, const Napi::Value& v, const char* what) {
    double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
    if (!(d >= 0) || d != std::floor(d) || d > 9007199254740991.0) throw Napi::RangeError::New(env, std::string(what) + " must be an integer >= 0");
    return size_t(std::fmod(d, double(fr_.order.size())));
  }

  Napi::Value Fill(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto isU32 = [](const Napi::Value& v) { return v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_uint32_array; };
    if (info.Length() < 7 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array ||
        !isU32(info[1]) || !isU32(info[2]) || !info[4].IsNumber() || !info[5].IsNumber() || !info[6].IsNumber())
      throw Napi::TypeError::New(env, "fill(buf: Uint8Array, offsets: Uint32Array, lengths: Uint32Array, pos, m, tvSec, tvUsec)");
    auto buf = info[0].As<Napi::Uint8Array>();
    auto offs = info[1].As<Napi::Uint32Array>();
    auto lens = info[2].As<Napi::Uint32Array>();
    size_t pos = Pos(env, info[3], "fill: pos");
    double md = info[4].As<Napi::Number>().DoubleValue();
    const size_t cap = std::min(offs.ElementLength(), lens.ElementLength());
    if (!(md >= 0) || md != std::floor(md) || md > double(cap))
      throw Napi::RangeError::New(env, "fill: m must be an integer 0-" + std::to_string(cap) + " (the shorter of offsets and lengths)");
    const size_t m = size_t(md);
    const uint32_t tvSec = info[5].As<Napi::Number>().Uint32Value(), tvUsec = info[6].As<Napi::Number>().Uint32Value();
    // Check the room first: a short buffer writes nothing and advances no counter.
    const size_t L = fr_.order.size();
    size_t need = 0;
    for (size_t i = 0, p = pos; i < m; i++, p = p + 1 == L ? 0 : p + 1) need += fr_.tpl[fr_.order[p]].len;
    if (need > buf.ByteLength())
      throw Napi::RangeError::New(env, "fill: " + std::to_string(m) + " frames need " + std::to_string(need) + " bytes, buf has " + std::to_string(buf.ByteLength()));
    uint8_t* out = buf.Data();
    uint32_t* o = offs.Data();
    uint32_t* l = lens.Data();
    size_t at = 0;
    for (size_t i = 0, p = pos; i < m; i++, p = p + 1 == L ? 0 : p + 1) {
      const Template& t = fr_.tpl[fr_.order[p]];
      fr_.next(t, out + at, tvSec, tvUsec);
      o[i] = uint32_t(at);
      l[i] = t.len;
      at += t.len;
    }
    return Napi::Number::New(env, double(at));
  }

  Napi::Value Rewind(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2) throw Napi::TypeError::New(env, "rewind(pos, k)");
    size_t pos = Pos(env, info[0], "rewind: pos");
    double kd = info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : -1;
    if (!(kd >= 0) || kd != std::floor(kd) || kd > 1e9) throw Napi::RangeError::New(env, "rewind: k must be an integer >= 0");
    const size_t L = fr_.order.size();
    for (size_t s = size_t(kd); s-- > 0;) fr_.unwrite(fr_.tpl[fr_.order[(pos + s) % L]]);
    return env.Undefined();
  }

  Napi::Value Counters(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object r = Napi::Object::New(env);
    r.Set("ipId", fr_.ipId & 0xffff);
    Napi::Array seq = Napi::Array::New(env, fr_.seq.size());
    for (size_t i = 0; i < fr_.seq.size(); i++) seq.Set(uint32_t(i), fr_.seq[i]);
    r.Set("seq", seq);
    return r;
  }
};

Napi::FunctionReference writerCtor;

}  // namespace

void RegisterPlanWriter(Napi::Env env, Napi::Object exports) {
  writerCtor = Napi::Persistent(PlanWriter::Define(env));
  // planWriter(params) rather than `new`: a factory, like pcapOpen.
  exports.Set("planWriter", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
    return writerCtor.New({info.Length() ? info[0] : info.Env().Undefined()});
  }, "planWriter"));
}

}  // namespace rawpoll_plan
