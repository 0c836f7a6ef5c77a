--[[
rawpoll.lua: Wireshark/tshark dissectors for the crash and log protocols rawpoll speaks (Wireshark 3.6 to 4.x: Lua 5.2 or 5.4).

  debugnet   FreeBSD netdump over debugnet: HERALD, VMCORE, KDH, FINISHED, EKCD_KEY and the 4-byte ACK
             (sys/net/debugnet.h, sys/netinet/netdump/netdump.h; UDP 20023 herald port, 20024 client/ACK port).
             Named "debugnet", not "netdump": Wireshark already has a built-in "netdump" (Red Hat's Linux netdump,
             a different protocol), and two protocols cannot share a filter name.
  kdh        struct kerneldumpheader version 4 (sys/sys/kerneldump.h), the payload of a KDH message, with its
             parity check (the XOR of the 128 big-endian 32-bit words is 0).
  netoops    Google's netoops v2/v3 (the never-merged drivers/net/netoops.c series; UDP 2004), little-endian.
  netconsole Linux netconsole (drivers/net/netconsole.c; UDP 6666, plus a heuristic for the extended format):
             `[release,]prio,seq,usec,flag[,ncfrag=off/len];text` and trailing ` key=value` lines.

Use:   tshark -X lua_script:contrib/wireshark/rawpoll.lua -r dump.pcap
  or   copy it into ~/.local/lib/wireshark/plugins/ (Help > About > Folders shows where).
Another port: Decode As (UDP port) -> DEBUGNET / NETOOPS / NETCONSOLE.
Filters: debugnet.type == 4, kdh.parity.bad, netoops.packet_no, netconsole.seq, netconsole.frag.offset ...
Expert infos (filter `_ws.expert`) mark what a receiver would refuse; traffic rawpoll sends raises none.

Wire facts are those of rawpoll's src/proto/{netdump,netoops,netconsole}.ts; keep the two in step.
]]

-- XOR of two u32: bit32 in Lua 5.2 (Wireshark <= 4.2); Lua 5.4 (Wireshark 4.4+) has the operator instead, which 5.2
-- cannot even parse, hence load().
local bxor = bit32 and bit32.bxor or load("return function(a, b) return a ~ b end")()

-- Expert info severities/groups, spelled once.
local WARN, ERR, NOTE = expert.severity.WARN, expert.severity.ERROR, expert.severity.NOTE
local MALFORMED, PROTOCOL = expert.group.MALFORMED, expert.group.PROTOCOL

--------------------------------------------------------------------------------------------------------------------
-- debugnet / FreeBSD netdump

local NETDUMP_PORT = 20023     -- the server's herald port
local NETDUMP_ACKPORT = 20024  -- the client sends from and takes ACKs on this port
local HDR_LEN = 24             -- struct debugnet_msg_hdr
local DATASIZE = 4096          -- NETDUMP_DATASIZE: the server's buffer holds one header plus this
local KDH_LEN = 512

local T_HERALD, T_FINISHED, T_VMCORE, T_KDH, T_EKCD_KEY = 1, 2, 3, 4, 5
local type_names = {
  [T_HERALD] = "HERALD", [T_FINISHED] = "FINISHED", [T_VMCORE] = "VMCORE", [T_KDH] = "KDH", [T_EKCD_KEY] = "EKCD_KEY",
}

local p_dn = Proto("debugnet", "FreeBSD netdump (debugnet)")
local f_dn = {
  type = ProtoField.uint32("debugnet.type", "Type", base.DEC, type_names),
  seq = ProtoField.uint32("debugnet.seq", "Sequence number", base.DEC),
  offset = ProtoField.uint64("debugnet.offset", "Offset", base.DEC),
  len = ProtoField.uint32("debugnet.len", "Length", base.DEC),
  aux2 = ProtoField.uint32("debugnet.aux2", "Aux data 2", base.HEX),
  herald_path = ProtoField.string("debugnet.herald.path", "Herald path"),
  data = ProtoField.bytes("debugnet.data", "Data"),
  ekcd_key = ProtoField.bytes("debugnet.ekcd_key", "EKCD key"),
  ack_seq = ProtoField.uint32("debugnet.ack.seq", "ACK of sequence number", base.DEC),
}
p_dn.fields = f_dn

local e_dn = {
  truncated = ProtoExpert.new("debugnet.truncated", "Message shorter than the 24-byte header", MALFORMED, ERR),
  len_mismatch = ProtoExpert.new("debugnet.len.mismatch",
    "Length field differs from the payload (netdumpd drops it without an ACK)", MALFORMED, ERR),
  too_big = ProtoExpert.new("debugnet.len.too_big",
    "Payload above NETDUMP_DATASIZE (4096): netdumpd's buffer cannot hold it", PROTOCOL, WARN),
  unknown_type = ProtoExpert.new("debugnet.type.unknown", "Unknown message type", PROTOCOL, WARN),
  herald_path = ProtoExpert.new("debugnet.herald.path.bad",
    "Herald path not NUL-terminated (netdumpd ignores it)", PROTOCOL, WARN),
  finished_data = ProtoExpert.new("debugnet.finished.data", "FINISHED carries data", PROTOCOL, WARN),
  kdh_len = ProtoExpert.new("debugnet.kdh.len", "KDH message is not 512 bytes", MALFORMED, ERR),
}
p_dn.experts = e_dn

--------------------------------------------------------------------------------------------------------------------
-- struct kerneldumpheader, version 4 (all integers big-endian: "dump byte order")

local KDH_MAGICS = { ["FreeBSD Kernel Dump"] = true, ["FreeBSD Text Dump"] = true }
local KERNELDUMPVERSION = 4

local p_kdh = Proto("kdh", "FreeBSD Kernel Dump Header")
local f_kdh = {
  magic = ProtoField.string("kdh.magic", "Magic"),
  architecture = ProtoField.string("kdh.architecture", "Architecture"),
  version = ProtoField.uint32("kdh.version", "Version", base.DEC),
  architectureversion = ProtoField.uint32("kdh.architectureversion", "Architecture version", base.DEC),
  dumplength = ProtoField.uint64("kdh.dumplength", "Dump length", base.DEC),
  dumptime = ProtoField.uint64("kdh.dumptime", "Dump time (seconds since the epoch)", base.DEC),
  dumpkeysize = ProtoField.uint32("kdh.dumpkeysize", "Dump key size", base.DEC),
  blocksize = ProtoField.uint32("kdh.blocksize", "Block size", base.DEC),
  hostname = ProtoField.string("kdh.hostname", "Hostname"),
  versionstring = ProtoField.string("kdh.versionstring", "Version string"),
  panicstring = ProtoField.string("kdh.panicstring", "Panic string"),
  compression = ProtoField.uint8("kdh.compression", "Compression", base.DEC, { [0] = "none", [1] = "gzip", [2] = "zstd" }),
  dumpextent = ProtoField.uint64("kdh.dumpextent", "Dump extent", base.DEC),
  unused = ProtoField.uint32("kdh.unused", "Unused", base.HEX),
  parity = ProtoField.uint32("kdh.parity", "Parity", base.HEX),
  parity_xor = ProtoField.uint32("kdh.parity.xor", "XOR of all words (0 when intact)", base.HEX),
  parity_ok = ProtoField.bool("kdh.parity.ok", "Parity check passed"),
}
p_kdh.fields = f_kdh

local e_kdh = {
  parity = ProtoExpert.new("kdh.parity.bad", "Kernel dump header parity check failed", PROTOCOL, ERR),
  magic = ProtoExpert.new("kdh.magic.unknown", "Unknown kernel dump header magic", PROTOCOL, WARN),
  version = ProtoExpert.new("kdh.version.unknown", "Kernel dump header version is not 4", PROTOCOL, WARN),
  truncated = ProtoExpert.new("kdh.truncated", "Kernel dump header shorter than 512 bytes", MALFORMED, ERR),
}
p_kdh.experts = e_kdh

-- A char[] field up to its first NUL (strlcpy'd by the kernel; the magic and strings need not fill the field).
local function cstring(range)
  local s = range:raw()
  local nul = s:find("\0", 1, true)
  if nul then s = s:sub(1, nul - 1) end
  return s
end

local function dissect_kdh(tvb, tree)
  local t = tree:add(p_kdh, tvb())
  if tvb:len() < KDH_LEN then
    t:add_proto_expert_info(e_kdh.truncated, string.format("Kernel dump header of %d bytes, needs %d", tvb:len(), KDH_LEN))
    return
  end
  local magic = cstring(tvb(0, 20))
  local mi = t:add(f_kdh.magic, tvb(0, 20), magic)
  if not KDH_MAGICS[magic] then mi:add_proto_expert_info(e_kdh.magic) end
  t:add(f_kdh.architecture, tvb(20, 12), cstring(tvb(20, 12)))
  local vi = t:add(f_kdh.version, tvb(32, 4))
  if tvb(32, 4):uint() ~= KERNELDUMPVERSION then vi:add_proto_expert_info(e_kdh.version) end
  t:add(f_kdh.architectureversion, tvb(36, 4))
  t:add(f_kdh.dumplength, tvb(40, 8))
  local ti = t:add(f_kdh.dumptime, tvb(48, 8))
  -- A date only for a time os.date can show (a corrupt header may hold any u64).
  local secs = tonumber(tostring(tvb(48, 8):uint64()))
  local when = secs and secs < 2 ^ 40 and os.date("!%Y-%m-%d %H:%M:%S UTC", secs)
  if when then ti:append_text(" (" .. when .. ")") end
  t:add(f_kdh.dumpkeysize, tvb(56, 4))
  t:add(f_kdh.blocksize, tvb(60, 4))
  t:add(f_kdh.hostname, tvb(64, 64), cstring(tvb(64, 64)))
  t:add(f_kdh.versionstring, tvb(128, 192), cstring(tvb(128, 192)))
  t:add(f_kdh.panicstring, tvb(320, 175), cstring(tvb(320, 175)))
  t:add(f_kdh.compression, tvb(495, 1))
  t:add(f_kdh.dumpextent, tvb(496, 8))
  t:add(f_kdh.unused, tvb(504, 4))
  -- kerneldump_parity(): XOR of the 128 words; mkdumpheader() stores the parity so that the total is 0.
  local x = 0
  for i = 0, KDH_LEN - 4, 4 do x = bxor(x, tvb(i, 4):uint()) end
  local pi = t:add(f_kdh.parity, tvb(508, 4))
  local pt = pi:add(f_kdh.parity_xor, tvb(0, KDH_LEN), x)
  pt:set_generated()
  local ok = pi:add(f_kdh.parity_ok, tvb(508, 4), x == 0)
  ok:set_generated()
  if x ~= 0 then
    pi:add_proto_expert_info(e_kdh.parity,
      string.format("Kernel dump header parity check failed: the XOR of its words is 0x%08x, not 0", x))
  end
  t:append_text(string.format(", %s, %s, %s bytes, parity %s", cstring(tvb(64, 64)), magic,
    tostring(tvb(40, 8):uint64()), x == 0 and "ok" or "BAD"))
end

function p_dn.dissector(tvb, pinfo, tree)
  local n = tvb:len()
  -- struct debugnet_ack: a UDP payload of exactly 4 bytes (debugnet only treats that as an ACK), to port 20024.
  if n == 4 then
    pinfo.cols.protocol = "DEBUGNET"
    local t = tree:add(p_dn, tvb())
    local seq = tvb(0, 4):uint()
    t:add(f_dn.ack_seq, tvb(0, 4))
    t:append_text(", ACK " .. seq)
    pinfo.cols.info = "ACK seq=" .. seq
    return n
  end
  if n == 0 then return 0 end
  pinfo.cols.protocol = "DEBUGNET"
  local t = tree:add(p_dn, tvb())
  if n < HDR_LEN then
    t:add_proto_expert_info(e_dn.truncated, string.format("Message of %d bytes, shorter than the %d-byte header", n, HDR_LEN))
    pinfo.cols.info = "Truncated debugnet message"
    return n
  end
  local typ = tvb(0, 4):uint()
  local seq = tvb(4, 4):uint()
  local len = tvb(16, 4):uint()
  local ti = t:add(f_dn.type, tvb(0, 4))
  local name = type_names[typ]
  if not name then
    ti:add_proto_expert_info(e_dn.unknown_type, "Unknown debugnet message type " .. typ)
    name = "type " .. typ
  end
  t:add(f_dn.seq, tvb(4, 4))
  t:add(f_dn.offset, tvb(8, 8))
  local li = t:add(f_dn.len, tvb(16, 4))
  t:add(f_dn.aux2, tvb(20, 4))
  local have = n - HDR_LEN
  if len ~= have then
    li:add_proto_expert_info(e_dn.len_mismatch, string.format("Length field %d, but %d payload bytes", len, have))
  end
  if len > DATASIZE then li:add_proto_expert_info(e_dn.too_big) end
  local info = string.format("%s seq=%d offset=%s len=%d", name, seq, tostring(tvb(8, 8):uint64()), len)
  t:append_text(", " .. info)
  pinfo.cols.info = info
  if have > 0 then
    local pay = tvb(HDR_LEN, have)
    if typ == T_HERALD then
      -- netdump_start: the path with its NUL (strlen + 1), or no payload at all.
      local s = pay:raw()
      local pi = t:add(f_dn.herald_path, pay, cstring(pay))
      if s:byte(#s) ~= 0 then pi:add_proto_expert_info(e_dn.herald_path) end
    elseif typ == T_KDH then
      if have ~= KDH_LEN then t:add_proto_expert_info(e_dn.kdh_len, string.format("KDH of %d bytes, expected %d", have, KDH_LEN)) end
      dissect_kdh(pay:tvb(), tree)
    elseif typ == T_EKCD_KEY then
      t:add(f_dn.ekcd_key, pay)
    elseif typ == T_FINISHED then
      t:add(f_dn.data, pay):add_proto_expert_info(e_dn.finished_data)
    else
      t:add(f_dn.data, pay)
    end
  end
  return n
end

--------------------------------------------------------------------------------------------------------------------
-- netoops (little-endian; a receiver must honour data_offset/arch_offset, not fixed offsets)

local NETOOPS_PORT = 2004
local NETOOPS_DATA_BYTES = 1024
local V3_FIXED_LEN, USER_BLOB_OFFSET, V3_ARCH_OFFSET = 24, 88, 216
local V2_KERNEL, V2_BIOS, V2_BOARD, V2_REGS = 27, 91, 155, 219

local p_no = Proto("netoops", "netoops crash report")
local oops_types = { [1] = "oops/panic", [3] = "soft dump" }
local oops_archs = { [0] = "other", [2] = "x86/x86-64" }
local x86_vendors = {
  [0] = "Intel", [1] = "Cyrix", [2] = "AMD", [3] = "UMC", [5] = "Centaur", [7] = "Transmeta", [8] = "NSC",
  [9] = "Hygon", [10] = "Zhaoxin", [11] = "Vortex", [0xff] = "unknown",
}
local f_no = {
  version = ProtoField.uint16("netoops.version", "Version", base.DEC),
  dump_id = ProtoField.uint16("netoops.dump_id", "Dump ID", base.DEC),
  data_offset = ProtoField.uint16("netoops.data_offset", "Data offset", base.DEC),
  arch = ProtoField.uint16("netoops.arch", "Architecture", base.DEC, oops_archs),
  arch_offset = ProtoField.uint16("netoops.arch_offset", "Arch data offset", base.DEC),
  type = ProtoField.uint16("netoops.type", "Type", base.DEC, oops_types),
  packet_count = ProtoField.uint32("netoops.packet_count", "Packet count", base.DEC),
  packet_no = ProtoField.uint32("netoops.packet_no", "Packet number (0 = newest)", base.DEC),
  boot_id = ProtoField.uint32("netoops.boot_id", "Boot ID", base.HEX),
  kernel_version = ProtoField.string("netoops.kernel_version", "Kernel version"),
  user_blob = ProtoField.string("netoops.user_blob", "User blob"),
  user_key = ProtoField.string("netoops.user.key", "User blob key"),
  user_value = ProtoField.string("netoops.user.value", "User blob value"),
  bios_version = ProtoField.string("netoops.bios_version", "BIOS version"),
  board_name = ProtoField.string("netoops.board_name", "Motherboard type"),
  x86_vendor = ProtoField.uint8("netoops.x86.vendor", "x86 vendor", base.DEC, x86_vendors),
  x86_family = ProtoField.uint8("netoops.x86.family", "x86 family", base.DEC),
  x86_model = ProtoField.uint8("netoops.x86.model", "x86 model", base.DEC),
  x86_stepping = ProtoField.uint8("netoops.x86.stepping", "x86 stepping", base.DEC),
  regs = ProtoField.bytes("netoops.regs", "Saved registers"),
  arch_data = ProtoField.bytes("netoops.arch_data", "Arch data"),
  data = ProtoField.bytes("netoops.data", "Log chunk"),
  text = ProtoField.string("netoops.text", "Log text"),
}
p_no.fields = f_no

local e_no = {
  truncated = ProtoExpert.new("netoops.truncated", "Truncated netoops datagram", MALFORMED, ERR),
  version = ProtoExpert.new("netoops.version.unknown", "Unknown netoops version (expected 2 or 3)", PROTOCOL, WARN),
  offsets = ProtoExpert.new("netoops.offsets.bad", "Inconsistent arch_offset/data_offset", MALFORMED, ERR),
  packet_no = ProtoExpert.new("netoops.packet_no.bad", "packet_no outside 0 .. packet_count-1", PROTOCOL, WARN),
  type = ProtoExpert.new("netoops.type.unknown", "Unknown netoops report type", PROTOCOL, WARN),
}
p_no.experts = e_no

function p_no.dissector(tvb, pinfo, tree)
  local n = tvb:len()
  if n == 0 then return 0 end
  pinfo.cols.protocol = "NETOOPS"
  local t = tree:add(p_no, tvb())
  if n < V3_FIXED_LEN then
    t:add_proto_expert_info(e_no.truncated, string.format("%d bytes, the header needs %d", n, V3_FIXED_LEN))
    pinfo.cols.info = "Truncated netoops datagram"
    return n
  end
  local version = tvb(0, 2):le_uint()
  local vi = t:add_le(f_no.version, tvb(0, 2))
  t:add_le(f_no.dump_id, tvb(2, 2))
  local di = t:add_le(f_no.data_offset, tvb(4, 2))
  local arch = tvb(6, 2):le_uint()
  t:add_le(f_no.arch, tvb(6, 2))
  t:add_le(f_no.arch_offset, tvb(8, 2))
  local typ = tvb(10, 2):le_uint()
  local ti = t:add_le(f_no.type, tvb(10, 2))
  if not oops_types[typ] then ti:add_proto_expert_info(e_no.type, "Unknown netoops report type " .. typ) end
  local count = tvb(12, 4):le_uint()
  local pno = tvb(16, 4):le_uint()
  t:add_le(f_no.packet_count, tvb(12, 4))
  local pi = t:add_le(f_no.packet_no, tvb(16, 4))
  if pno >= count then
    pi:add_proto_expert_info(e_no.packet_no, string.format("packet_no %d of packet_count %d", pno, count))
  end
  t:add_le(f_no.boot_id, tvb(20, 4))
  local info = string.format("netoops v%d %s dump %d packet %d/%d", version, oops_types[typ] or ("type " .. typ),
    tvb(2, 2):le_uint(), pno, count)
  pinfo.cols.info = info
  t:append_text(", " .. info)
  if version ~= 2 and version ~= 3 then
    vi:add_proto_expert_info(e_no.version, "Unknown netoops version " .. version)
    return n
  end
  local data_off = tvb(4, 2):le_uint()
  local arch_off = tvb(8, 2):le_uint()
  local min_arch = version == 3 and V3_FIXED_LEN or V2_REGS
  if arch_off < min_arch or data_off < arch_off then
    di:add_proto_expert_info(e_no.offsets,
      string.format("arch_offset %d, data_offset %d: need %d <= arch_offset <= data_offset", arch_off, data_off, min_arch))
    return n
  end
  if n < data_off + NETOOPS_DATA_BYTES then
    t:add_proto_expert_info(e_no.truncated,
      string.format("%d bytes, data_offset %d + %d data bytes", n, data_off, NETOOPS_DATA_BYTES))
    if n <= data_off then return n end
  end
  if version == 3 then
    local kv_end = math.min(USER_BLOB_OFFSET, arch_off)
    -- strncpy'd: not necessarily NUL-terminated when the release fills all 64 bytes.
    t:add(f_no.kernel_version, tvb(V3_FIXED_LEN, kv_end - V3_FIXED_LEN), cstring(tvb(V3_FIXED_LEN, kv_end - V3_FIXED_LEN)))
    if arch_off >= V3_ARCH_OFFSET then
      local blob_r = tvb(USER_BLOB_OFFSET, V3_ARCH_OFFSET - USER_BLOB_OFFSET)
      local blob = cstring(blob_r)
      local bi = t:add(f_no.user_blob, blob_r, blob)
      -- rawpoll's blob: `key=value\n` lines (board, firmware).
      local pos = 0
      for line in (blob .. "\n"):gmatch("([^\n]*)\n") do
        local k, v = line:match("^([%w_.-]+)=(.*)$")
        if k then
          bi:add(f_no.user_key, tvb(USER_BLOB_OFFSET + pos, #k), k)
          bi:add(f_no.user_value, tvb(USER_BLOB_OFFSET + pos + #k + 1, math.max(#v, 0)), v)
        end
        pos = pos + #line + 1
      end
    end
    if arch_off < data_off then
      local ai = t:add(f_no.arch_data, tvb(arch_off, data_off - arch_off))
      if arch == 2 and data_off - arch_off >= 4 then
        ai:add(f_no.x86_vendor, tvb(arch_off, 1))
        ai:add(f_no.x86_family, tvb(arch_off + 1, 1))
        ai:add(f_no.x86_model, tvb(arch_off + 2, 1))
        ai:add(f_no.x86_stepping, tvb(arch_off + 3, 1))
        if data_off - arch_off > 4 then ai:add(f_no.regs, tvb(arch_off + 4, data_off - arch_off - 4)) end
      end
    end
  else
    if arch == 2 then
      t:add(f_no.x86_family, tvb(24, 1))
      t:add(f_no.x86_model, tvb(25, 1))
      t:add(f_no.x86_stepping, tvb(26, 1))
    end
    t:add(f_no.kernel_version, tvb(V2_KERNEL, 64), cstring(tvb(V2_KERNEL, 64)))
    t:add(f_no.bios_version, tvb(V2_BIOS, 64), cstring(tvb(V2_BIOS, 64)))
    t:add(f_no.board_name, tvb(V2_BOARD, 64), cstring(tvb(V2_BOARD, 64)))
    if arch_off < data_off then t:add(f_no.regs, tvb(arch_off, data_off - arch_off)) end
  end
  local dlen = math.min(NETOOPS_DATA_BYTES, n - data_off)
  local dr = tvb(data_off, dlen)
  local di2 = t:add(f_no.data, dr)
  -- The last chunk is zero-padded: the text is what comes before the padding.
  di2:add(f_no.text, dr, cstring(dr))
  return n
end

--------------------------------------------------------------------------------------------------------------------
-- netconsole (basic: bare text; extended: /dev/kmsg records, ncfrag fragments, release prefix, extradata)

local NETCONSOLE_PORT = 6666
local MAX_PRINT_CHUNK = 1000
local MAX_HEADER = 512

local p_nc = Proto("netconsole", "Linux netconsole")
local f_nc = {
  extended = ProtoField.bool("netconsole.extended", "Extended format"),
  release = ProtoField.string("netconsole.release", "Kernel release"),
  prio = ProtoField.uint32("netconsole.prio", "Priority", base.DEC),
  facility = ProtoField.uint32("netconsole.facility", "Facility", base.DEC),
  level = ProtoField.uint8("netconsole.level", "Level", base.DEC, {
    [0] = "emerg", [1] = "alert", [2] = "crit", [3] = "err", [4] = "warning", [5] = "notice", [6] = "info", [7] = "debug",
  }),
  seq = ProtoField.uint64("netconsole.seq", "Sequence number", base.DEC),
  timestamp = ProtoField.uint64("netconsole.timestamp", "Timestamp (microseconds since boot)", base.DEC),
  flags = ProtoField.string("netconsole.flags", "Flags"),
  cont = ProtoField.bool("netconsole.cont", "Continuation"),
  header_extra = ProtoField.string("netconsole.header.extra", "Other header field"),
  frag = ProtoField.string("netconsole.frag", "Fragment (ncfrag)"),
  frag_offset = ProtoField.uint32("netconsole.frag.offset", "Fragment offset", base.DEC),
  frag_total = ProtoField.uint32("netconsole.frag.total", "Record data length", base.DEC),
  frag_len = ProtoField.uint32("netconsole.frag.len", "Fragment length", base.DEC),
  body = ProtoField.string("netconsole.body", "Body"),
  text = ProtoField.string("netconsole.text", "Message"),
  kv = ProtoField.string("netconsole.kv", "Dictionary/userdata/sysdata line"),
  kv_key = ProtoField.string("netconsole.kv.key", "Key"),
  kv_value = ProtoField.string("netconsole.kv.value", "Value"),
  sys_cpu = ProtoField.uint32("netconsole.sysdata.cpu", "CPU", base.DEC),
  sys_taskname = ProtoField.string("netconsole.sysdata.taskname", "Task name"),
  sys_release = ProtoField.string("netconsole.sysdata.release", "Kernel release"),
  sys_msgid = ProtoField.uint32("netconsole.sysdata.msgid", "Message ID", base.DEC),
}
p_nc.fields = f_nc

local e_nc = {
  too_big = ProtoExpert.new("netconsole.too_big",
    "Datagram larger than MAX_PRINT_CHUNK (1000 bytes)", PROTOCOL, WARN),
  frag_range = ProtoExpert.new("netconsole.frag.bad",
    "ncfrag fragment outside its record (offset >= total, or offset + length > total)", MALFORMED, ERR),
  frag_dup = ProtoExpert.new("netconsole.frag.duplicate", "More than one ncfrag field", MALFORMED, ERR),
}
p_nc.experts = e_nc

-- A decimal that fits a u64 (the kernel prints seq and usec as u64).
local function is_digits(s)
  if s == nil or #s == 0 or #s > 20 or not s:match("^%d+$") then return false end
  return #s < 20 or s <= "18446744073709551615"
end

-- The extended header, as rawpoll's parseExtDatagram reads it; nil if the datagram is not one.
-- Returns { semi = index of ';' (1-based), fields = { {s, start0}... }, release = field or nil }.
local function parse_ext_header(tvb)
  local n = tvb:len()
  local head_raw = tvb(0, math.min(n, MAX_HEADER)):raw()
  local semi = head_raw:find(";", 1, true)
  if not semi then return nil end
  local head = head_raw:sub(1, semi - 1)
  if head:find("[%s%c\128-\255]") then return nil end
  local fields, pos = {}, 0
  for s in (head .. ","):gmatch("([^,]*),") do
    fields[#fields + 1] = { s = s, at = pos }
    pos = pos + #s + 1
  end
  local first = 1
  local release = nil
  if #fields > 0 and not is_digits(fields[1].s) then release = fields[1]; first = 2 end
  if #fields - first + 1 < 4 then return nil end
  if not (is_digits(fields[first].s) and is_digits(fields[first + 1].s) and is_digits(fields[first + 2].s)) then return nil end
  if not fields[first + 3].s:match("^[-c]") then return nil end
  -- A prio is facility << 3 | level with facility < 24 (LOG_NFACILITIES): a bigger one is not a kernel record.
  if tonumber(fields[first].s) > 191 then return nil end
  return { semi = semi, fields = fields, first = first, release = release }
end

-- Decimal digits to UInt64 exactly (a Lua 5.2 number is a double; UInt64.fromdecimal is not in Wireshark 4.0).
local function u64_decimal(s)
  local v = UInt64(0)
  for i = 1, #s do v = v * 10 + (s:byte(i) - 48) end
  return v
end

local function add_u64_text(tree, field, range, s)
  return tree:add(field, range, u64_decimal(s))
end

local function dissect_extended(tvb, pinfo, tree, h)
  local n = tvb:len()
  local t = tree:add(p_nc, tvb())
  t:add(f_nc.extended, tvb(0, h.semi), true):set_generated()
  if n > MAX_PRINT_CHUNK then t:add_proto_expert_info(e_nc.too_big, string.format("Datagram of %d bytes, more than %d", n, MAX_PRINT_CHUNK)) end
  local F, i0 = h.fields, h.first
  local function r(f) return tvb(f.at, math.max(#f.s, 0)) end
  if h.release then t:add(f_nc.release, r(h.release), h.release.s) end
  local prio = tonumber(F[i0].s)
  local pi = t:add(f_nc.prio, r(F[i0]), prio)
  local level = prio % 8
  pi:add(f_nc.facility, r(F[i0]), (prio - level) / 8):set_generated()
  pi:add(f_nc.level, r(F[i0]), level):set_generated()
  add_u64_text(t, f_nc.seq, r(F[i0 + 1]), F[i0 + 1].s)
  local usec = F[i0 + 2].s
  add_u64_text(t, f_nc.timestamp, r(F[i0 + 2]), usec):append_text(string.format(" (%d.%06d s)",
    math.floor(tonumber(usec) / 1e6), tonumber(usec) % 1e6))
  local fi = t:add(f_nc.flags, r(F[i0 + 3]), F[i0 + 3].s)
  local cont = F[i0 + 3].s:sub(1, 1) == "c"
  fi:add(f_nc.cont, r(F[i0 + 3]), cont):set_generated()
  local frag = nil
  local body_len = n - h.semi
  for k = i0 + 4, #F do
    local f = F[k]
    local off, total = f.s:match("^ncfrag=(%d+)/(%d+)$")
    if off then
      local gi = t:add(f_nc.frag, r(f), f.s)
      if frag then gi:add_proto_expert_info(e_nc.frag_dup) end
      off, total = tonumber(off), tonumber(total)
      frag = { offset = off, total = total }
      gi:add(f_nc.frag_offset, tvb(f.at + 7, #tostring(off)), off)
      gi:add(f_nc.frag_total, tvb(f.at + 8 + #tostring(off), #tostring(total)), total)
      gi:add(f_nc.frag_len, tvb(h.semi, body_len), body_len):set_generated()
      if total == 0 or off >= total or off + body_len > total then
        gi:add_proto_expert_info(e_nc.frag_range,
          string.format("ncfrag %d/%d with %d bytes: outside the record", off, total, body_len))
      end
    else
      t:add(f_nc.header_extra, r(f), f.s)
    end
  end
  -- Body: the escaped text, '\n', then ` key=value\n` lines (dictionary, userdata, sysdata). In a fragment, the
  -- piece may start or end anywhere in that; lines are only recognised after the first '\n' of the piece.
  if body_len > 0 then
    local br = tvb(h.semi, body_len)
    local body = br:raw()
    local bi = t:add(f_nc.body, br, body)
    local nl = body:find("\n", 1, true)
    local text_len = nl and nl - 1 or #body
    if text_len > 0 then bi:add(f_nc.text, tvb(h.semi, text_len), body:sub(1, text_len)) end
    if nl then
      local pos = nl  -- 0-based offset in body of the byte after the first '\n'
      for line in body:sub(nl + 1):gmatch("([^\n]*)\n?") do
        if pos >= #body then break end
        local lr = tvb(h.semi + pos, math.max(#line, 0))
        local k, v = line:match("^ ([^=]+)=(.*)$")
        if k then
          local li = bi:add(f_nc.kv, lr, line:sub(2))
          li:add(f_nc.kv_key, tvb(h.semi + pos + 1, #k), k)
          li:add(f_nc.kv_value, tvb(h.semi + pos + 2 + #k, #v), v)
          local vr = tvb(h.semi + pos + 2 + #k, #v)
          if k == "cpu" and v:match("^%d+$") then li:add(f_nc.sys_cpu, vr, tonumber(v)):set_generated()
          elseif k == "taskname" then li:add(f_nc.sys_taskname, vr, v):set_generated()
          elseif k == "release" then li:add(f_nc.sys_release, vr, v):set_generated()
          elseif k == "msgid" and v:match("^%d+$") then li:add(f_nc.sys_msgid, vr, tonumber(v)):set_generated()
          end
        end
        pos = pos + #line + 1
      end
    end
  end
  local info = string.format("seq=%s level=%d", F[i0 + 1].s, level)
  if frag then info = info .. string.format(" ncfrag=%d/%d", frag.offset, frag.total) end
  local preview = tvb(h.semi, body_len):raw():match("^[^\n]*") or ""
  if #preview > 60 then preview = preview:sub(1, 60) .. "..." end
  pinfo.cols.info = info .. " " .. preview
  t:append_text(", extended, " .. info)
  return n
end

function p_nc.dissector(tvb, pinfo, tree)
  local n = tvb:len()
  if n == 0 then return 0 end
  pinfo.cols.protocol = "NETCONSOLE"
  local h = parse_ext_header(tvb)
  if h then return dissect_extended(tvb, pinfo, tree, h) end
  -- Basic format: the console text itself, no header.
  local t = tree:add(p_nc, tvb())
  if n > MAX_PRINT_CHUNK then t:add_proto_expert_info(e_nc.too_big, string.format("Datagram of %d bytes, more than %d", n, MAX_PRINT_CHUNK)) end
  t:add(f_nc.extended, tvb(), false):set_generated()
  local s = tvb():raw()
  t:add(f_nc.text, tvb(), s)
  t:append_text(", basic")
  pinfo.cols.info = (s:gsub("[\r\n]+$", ""):gsub("%c", " "))
  return n
end

-- Extended netconsole on any UDP port: claim it only when the header is well-formed (numbers where numbers go).
local function heur_nc(tvb, pinfo, tree)
  if tvb:len() < 8 then return false end
  local h = parse_ext_header(tvb)
  if not h then return false end
  pinfo.cols.protocol = "NETCONSOLE"
  dissect_extended(tvb, pinfo, tree, h)
  return true
end

--------------------------------------------------------------------------------------------------------------------
-- Registration on the ports rawpoll's tools use by default (src/proto/*.ts).

local udp_port = DissectorTable.get("udp.port")
udp_port:add(NETDUMP_PORT, p_dn)
udp_port:add(NETDUMP_ACKPORT, p_dn)
udp_port:add(NETOOPS_PORT, p_no)
udp_port:add(NETCONSOLE_PORT, p_nc)   -- replaces SigComp's registration of 6666
p_nc:register_heuristic("udp", heur_nc)
