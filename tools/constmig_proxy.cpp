// constmig-proxy: a MALICIOUS HOST between a migration's source and its target (UNTRUSTED tool,
// for tests and demonstrations; docs/proxy.md).
//
// It accepts any number of TCP connections on --listen, opens one connection to --to for each,
// and forwards both directions FRAME BY FRAME: it finds frame boundaries with the wire format's
// header decoder (src/common/wire_format.h) and applies the --rule list to each frame: drop,
// delay, reorder, duplicate, replay (from this connection or from a capture file of an earlier
// migration), bit flips in the payload or the header, truncation, and cuts of the whole link (at
// a frame, or after a share of the heap stream). It is what the adversary of docs/security.md §3
// can do: everything outside the enclaves.
//
// Sequence numbers: by default (--seq fix) the proxy keeps each direction's header sequence
// numbers consecutive (it rewrites seq and the header CRC, which protect nothing), so that a
// dropped, duplicated, reordered or replayed frame reaches the enclaves' AEAD and bitmap checks
// instead of being stopped by the framing layer. --seq keep forwards headers as they are.
//
// Connections are numbered per migration: a connection accepted while no other one is open is
// index 0 (the main connection); the next ones, while it is open, 1, 2, ... (1 = the urgent
// page connection of live mode). Rules select by that index with conn=N.
//
// This is host code: it includes no src/trusted header and knows no key. It never decrypts.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/wire_format.h"
#include "host/host_control.h"

namespace {

using namespace constmig;
using Clock = std::chrono::steady_clock;
using wire::FrameHeader;
using wire::FrameType;

// ---- rules --------------------------------------------------------------------------------------

enum class Dir { kS2T = 0, kT2S = 1 };
const char* dir_name(Dir d) {
  return d == Dir::kS2T ? "s2t" : "t2s";
}

enum class Act { kDrop, kDelay, kReorder, kDuplicate, kReplay, kFlip, kTruncate, kCut };
const char* act_name(Act a) {
  switch (a) {
    case Act::kDrop:
      return "drop";
    case Act::kDelay:
      return "delay";
    case Act::kReorder:
      return "reorder";
    case Act::kDuplicate:
      return "duplicate";
    case Act::kReplay:
      return "replay";
    case Act::kFlip:
      return "flip";
    case Act::kTruncate:
      return "truncate";
    case Act::kCut:
      return "cut";
  }
  return "?";
}

enum class FlagSel { kAny, kUrgent, kNone, kExact };

struct Rule {
  size_t id = 0;  // 1-based, in command-line order
  std::string text;
  // Selectors.
  std::optional<Dir> dir;
  std::optional<uint64_t> conn;
  std::optional<uint8_t> type;
  FlagSel flag_sel = FlagSel::kAny;
  uint16_t flags = 0;
  uint64_t nth = 1;
  uint64_t count = 1;  // 0 = every match from the nth on
  bool nth_given = false, count_given = false;
  // Action and its parameters.
  Act act = Act::kDrop;
  uint64_t ms = 0;                    // delay; reorder: how long to wait for a following frame
  uint64_t times = 1;                 // duplicate: extra copies
  std::optional<uint64_t> seq;        // replay: the frame of this direction with this seq
  std::string file;                   // replay: capture file of an earlier migration
  uint64_t pick = 1;                  // replay:file: the pick-th frame of pick_type in it
  std::optional<uint8_t> pick_type;   // replay:file
  bool replace = false;               // replay: send the replayed frame INSTEAD of the matched one
  bool header = false;                // flip: offset into the 24-byte header (else the payload)
  int64_t offset = 0;                 // flip: byte offset (negative: from the end)
  uint8_t mask = 0x01;                // flip: XOR mask
  bool fixcrc = false;                // flip (header): recompute the header CRC afterwards
  std::optional<uint64_t> cut_bytes;  // truncate: bytes of the frame sent; cut: PAGES bytes
  double pct = -1;                    // truncate: share of the frame; cut: share of heap pages
  bool scope_conn = false;            // cut: only this connection (default: every connection)
  // Runtime state (under g_mu).
  uint64_t matched = 0, applied = 0;
  uint64_t progress = 0;  // cut:pct (pages) / cut:bytes (PAGES bytes) passed so far
  bool fired = false;
  std::vector<uint8_t> file_frame;  // replay:file, loaded at startup
};

bool progress_cut(const Rule& r) {
  return r.act == Act::kCut && (r.pct >= 0 || r.cut_bytes.has_value());
}

struct RuleError {
  std::string msg;
};

uint64_t parse_u64(const std::string& key, const std::string& v) {
  if (v.empty() || v[0] == '-' || v[0] == '+')
    throw RuleError{key + "=" + v + ": expected a non-negative integer"};
  size_t used = 0;
  uint64_t x = 0;
  try {
    x = std::stoull(v, &used, 0);
  } catch (const std::exception&) {
    throw RuleError{key + "=" + v + ": expected a non-negative integer"};
  }
  if (used != v.size()) throw RuleError{key + "=" + v + ": expected a non-negative integer"};
  return x;
}

int64_t parse_i64(const std::string& key, const std::string& v) {
  size_t used = 0;
  int64_t x = 0;
  try {
    x = std::stoll(v, &used, 0);
  } catch (const std::exception&) {
    throw RuleError{key + "=" + v + ": expected an integer"};
  }
  if (v.empty() || used != v.size()) throw RuleError{key + "=" + v + ": expected an integer"};
  return x;
}

double parse_pct(const std::string& key, const std::string& v) {
  size_t used = 0;
  double x = 0;
  try {
    x = std::stod(v, &used);
  } catch (const std::exception&) {
    throw RuleError{key + "=" + v + ": expected a percentage (0 < P <= 100)"};
  }
  if (used != v.size() || !(x > 0) || x > 100)
    throw RuleError{key + "=" + v + ": expected a percentage (0 < P <= 100)"};
  return x;
}

std::string upper(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

std::string type_list() {
  std::string s;
  for (int t = wire::kFirstFrameType; t <= wire::kLastFrameType; ++t)
    s += (s.empty() ? "" : " ") + wire::frame_type_name(static_cast<FrameType>(t));
  return s;
}

uint8_t parse_type(const std::string& key, const std::string& v) {
  for (int t = wire::kFirstFrameType; t <= wire::kLastFrameType; ++t) {
    if (upper(v) == wire::frame_type_name(static_cast<FrameType>(t)))
      return static_cast<uint8_t>(t);
  }
  if (!v.empty() && std::isdigit(static_cast<unsigned char>(v[0]))) {
    uint64_t n = parse_u64(key, v);
    if (n >= wire::kFirstFrameType && n <= wire::kLastFrameType) return static_cast<uint8_t>(n);
  }
  throw RuleError{key + "=" + v + ": unknown frame type (known: " + type_list() +
                  ", or their numbers " + std::to_string(wire::kFirstFrameType) + ".." +
                  std::to_string(wire::kLastFrameType) + ")"};
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    size_t p = s.find(sep, start);
    out.push_back(s.substr(start, p == std::string::npos ? std::string::npos : p - start));
    if (p == std::string::npos) return out;
    start = p + 1;
  }
}

std::pair<std::string, std::string> key_value(const std::string& part) {
  auto eq = part.find('=');
  if (eq == std::string::npos) return {part, ""};
  return {part.substr(0, eq), part.substr(eq + 1)};
}

void parse_action(Rule& r, const std::string& v) {
  auto parts = split(v, ':');
  const std::string name = parts[0];
  static const std::map<std::string, Act> acts = {
      {"drop", Act::kDrop},           {"delay", Act::kDelay},   {"reorder", Act::kReorder},
      {"duplicate", Act::kDuplicate}, {"replay", Act::kReplay}, {"flip", Act::kFlip},
      {"truncate", Act::kTruncate},   {"cut", Act::kCut}};
  auto it = acts.find(name);
  if (it == acts.end()) {
    throw RuleError{"unknown action '" + name +
                    "' (known: drop, delay, reorder, duplicate, replay, flip, truncate, cut)"};
  }
  r.act = it->second;
  bool have_offset = false, have_ms = false;
  if (r.act == Act::kReorder) r.ms = 1000;
  for (size_t i = 1; i < parts.size(); ++i) {
    auto [k, val] = key_value(parts[i]);
    auto bad = [&] {
      return RuleError{"action " + name + ": unknown or misplaced parameter '" + parts[i] +
                       "' (see constmig-proxy --help)"};
    };
    switch (r.act) {
      case Act::kDrop:
        throw bad();
      case Act::kDelay:
        if (k == "ms") {
          r.ms = parse_u64("ms", val);
        } else if (val.empty() && !k.empty() && std::isdigit(static_cast<unsigned char>(k[0]))) {
          r.ms = parse_u64("delay", k);  // delay:500
        } else {
          throw bad();
        }
        have_ms = true;
        break;
      case Act::kReorder:
        if (k != "wait") throw bad();
        r.ms = parse_u64("wait", val);
        break;
      case Act::kDuplicate:
        if (k != "times") throw bad();
        r.times = parse_u64("times", val);
        if (r.times == 0 || r.times > 1000) throw RuleError{"duplicate:times must be 1..1000"};
        break;
      case Act::kReplay:
        if (k == "seq") {
          r.seq = parse_u64("seq", val);
        } else if (k == "file") {
          if (val.empty()) throw RuleError{"replay:file= needs a capture file path"};
          r.file = val;
        } else if (k == "pick") {
          r.pick = parse_u64("pick", val);
          if (r.pick == 0) throw RuleError{"replay:pick counts from 1"};
        } else if (k == "type") {
          r.pick_type = parse_type("replay:type", val);
        } else if (k == "replace" && val.empty()) {
          r.replace = true;
        } else {
          throw bad();
        }
        break;
      case Act::kFlip:
        if (k == "byte" || k == "hdr") {
          if (have_offset) throw RuleError{"flip: give one of byte= or hdr=, once"};
          have_offset = true;
          r.header = k == "hdr";
          r.offset = parse_i64(k, val);
          if (r.header && (r.offset < 0 || r.offset >= static_cast<int64_t>(wire::kHeaderSize)))
            throw RuleError{"flip:hdr=" + val + ": the header has bytes 0..23"};
        } else if (k == "mask") {
          uint64_t m = parse_u64("mask", val);
          if (m == 0 || m > 0xFF) throw RuleError{"flip:mask must be 1..0xff"};
          r.mask = static_cast<uint8_t>(m);
        } else if (k == "fixcrc" && val.empty()) {
          r.fixcrc = true;
        } else {
          throw bad();
        }
        break;
      case Act::kTruncate:
        if (k == "bytes") {
          r.cut_bytes = parse_u64("bytes", val);
        } else if (k == "pct") {
          r.pct = parse_pct("pct", val);
        } else {
          throw bad();
        }
        break;
      case Act::kCut:
        if (k == "pct") {
          r.pct = parse_pct("pct", val);
        } else if (k == "bytes") {
          r.cut_bytes = parse_u64("bytes", val);
          if (*r.cut_bytes == 0) throw RuleError{"cut:bytes must be at least 1"};
        } else if (k == "scope") {
          if (val != "all" && val != "conn") throw RuleError{"cut:scope is all or conn"};
          r.scope_conn = val == "conn";
        } else {
          throw bad();
        }
        break;
    }
  }
  if (r.act == Act::kDelay && !have_ms) throw RuleError{"delay needs a time: delay:ms=N"};
  if (r.act == Act::kFlip && !have_offset)
    throw RuleError{"flip needs an offset: flip:byte=N (payload) or flip:hdr=N (header)"};
  if (r.act == Act::kFlip && r.fixcrc && !r.header)
    throw RuleError{"flip:fixcrc only applies to header flips (hdr=N)"};
  if (r.act == Act::kReplay && r.seq && !r.file.empty())
    throw RuleError{"replay: give seq= (this connection) or file= (a capture), not both"};
  if (r.act == Act::kReplay && r.file.empty() && (r.pick_type || r.pick != 1))
    throw RuleError{"replay: pick= and type= select a frame of a capture file (file=)"};
  if (r.act == Act::kTruncate && r.pct >= 0 && r.cut_bytes)
    throw RuleError{"truncate: give bytes= or pct=, not both"};
  if (r.act == Act::kTruncate && r.pct < 0 && !r.cut_bytes) r.pct = 50;
  if (r.act == Act::kCut && r.pct >= 0 && r.cut_bytes)
    throw RuleError{"cut: give pct= or bytes=, not both"};
}

Rule parse_rule(const std::string& text, size_t id) {
  Rule r;
  r.id = id;
  r.text = text;
  bool have_action = false;
  std::set<std::string> seen;
  for (const std::string& part : split(text, ',')) {
    auto [k, v] = key_value(part);
    if (k.empty() || part.find('=') == std::string::npos)
      throw RuleError{"'" + part + "' is not KEY=VALUE"};
    if (!seen.insert(k).second) throw RuleError{"'" + k + "' given twice"};
    if (k == "dir") {
      if (v == "s2t")
        r.dir = Dir::kS2T;
      else if (v == "t2s")
        r.dir = Dir::kT2S;
      else if (v != "any")
        throw RuleError{"dir=" + v + ": expected s2t (source to target), t2s or any"};
    } else if (k == "conn") {
      if (v != "any") r.conn = parse_u64("conn", v);
    } else if (k == "type") {
      if (v != "any") r.type = parse_type("type", v);
    } else if (k == "flags") {
      if (v == "urgent") {
        r.flag_sel = FlagSel::kUrgent;
      } else if (v == "none") {
        r.flag_sel = FlagSel::kNone;
      } else if (v != "any") {
        uint64_t f = parse_u64("flags", v);
        if (f > 0xFFFF) throw RuleError{"flags=" + v + ": flags are 16 bits"};
        r.flag_sel = FlagSel::kExact;
        r.flags = static_cast<uint16_t>(f);
      }
    } else if (k == "nth") {
      r.nth = parse_u64("nth", v);
      if (r.nth == 0) throw RuleError{"nth counts from 1 (the first matching frame)"};
      r.nth_given = true;
    } else if (k == "count") {
      r.count = v == "all" ? 0 : parse_u64("count", v);
      if (v != "all" && r.count == 0) throw RuleError{"count is 1.. or all"};
      r.count_given = true;
    } else if (k == "action") {
      parse_action(r, v);
      have_action = true;
    } else {
      throw RuleError{"unknown key '" + k + "' (keys: dir, conn, type, flags, nth, count, action)"};
    }
  }
  if (!have_action) throw RuleError{"no action= (e.g. action=drop)"};
  if (progress_cut(r)) {
    if (r.nth_given || r.count_given)
      throw RuleError{"cut:pct=/bytes= fires once on the heap stream's progress: no nth/count"};
    if (r.type && *r.type != static_cast<uint8_t>(FrameType::kPages))
      throw RuleError{"cut:pct=/bytes= counts PAGES frames: leave type out or use type=PAGES"};
    if (r.dir && *r.dir != Dir::kS2T)
      throw RuleError{"cut:pct=/bytes= counts the source's PAGES frames: dir=s2t"};
    r.type = static_cast<uint8_t>(FrameType::kPages);
    r.dir = Dir::kS2T;
  }
  if ((r.act == Act::kTruncate || r.act == Act::kCut) && r.count != 1)
    throw RuleError{std::string(act_name(r.act)) + " ends the stream: count must be 1"};
  return r;
}

std::string pct_text(double p) {
  char b[32];
  std::snprintf(b, sizeof b, "%g%%", p);
  return b;
}

// What a rule does, in words (--dry-run, logs).
std::string describe(const Rule& r) {
  std::string sel;
  sel += r.dir ? dir_name(*r.dir) : "either direction";
  sel += r.conn ? ", connection " + std::to_string(*r.conn) : ", any connection";
  sel += r.type ? ", " + wire::frame_type_name(static_cast<FrameType>(*r.type)) + " frames"
                : ", any frame type";
  if (r.flag_sel == FlagSel::kUrgent) sel += " with the URGENT flag";
  if (r.flag_sel == FlagSel::kNone) sel += " without flags";
  if (r.flag_sel == FlagSel::kExact) sel += " with flags == " + std::to_string(r.flags);
  std::string when;
  if (progress_cut(r)) {
    when = r.pct >= 0 ? "once " + pct_text(r.pct) + " of the heap's pages would have passed"
                      : "once " + std::to_string(*r.cut_bytes) + " PAGES bytes would have passed";
  } else {
    when = "match " + std::to_string(r.nth) +
           (r.count == 0   ? " and every later one"
            : r.count == 1 ? ""
                           : " and the next " + std::to_string(r.count - 1));
  }
  std::string what;
  switch (r.act) {
    case Act::kDrop:
      what = "drop the frame";
      break;
    case Act::kDelay:
      what = "hold the frame (and this direction) " + std::to_string(r.ms) + " ms";
      break;
    case Act::kReorder:
      what = "hold the frame and send it after the next one (or after " + std::to_string(r.ms) +
             " ms if none follows)";
      break;
    case Act::kDuplicate:
      what = "send the frame " + std::to_string(r.times + 1) + " times";
      break;
    case Act::kReplay:
      if (!r.file.empty()) {
        what = std::string(r.replace ? "replace the frame by" : "send after the frame") +
               " frame #" + std::to_string(r.pick) + " of type " +
               (r.pick_type ? wire::frame_type_name(static_cast<FrameType>(*r.pick_type))
                            : std::string("(the matched frame's)")) +
               " from capture " + r.file;
      } else if (r.seq) {
        what = std::string(r.replace ? "replace the frame by" : "send after the frame") +
               " this direction's earlier frame with seq " + std::to_string(*r.seq);
      } else {
        what = std::string(r.replace ? "replace the frame by" : "send after the frame") +
               " the previous frame of the same type on this connection and direction";
      }
      break;
    case Act::kFlip: {
      char m[8];
      std::snprintf(m, sizeof m, "0x%02x", r.mask);
      what = std::string("XOR ") + m + " into " + (r.header ? "header" : "payload") + " byte " +
             std::to_string(r.offset) + (r.fixcrc ? " and recompute the header CRC" : "");
      break;
    }
    case Act::kTruncate:
      what = "send " + (r.cut_bytes ? std::to_string(*r.cut_bytes) + " bytes" : pct_text(r.pct)) +
             " of the frame, then close this direction (the other keeps flowing)";
      break;
    case Act::kCut:
      what = std::string("close ") + (r.scope_conn ? "this connection" : "every open connection") +
             " in both directions instead of sending the frame";
      break;
  }
  return sel + ", " + when + ": " + what;
}

// ---- frames -------------------------------------------------------------------------------------

// Splits a byte stream into frames. The header is checked with the wire format's decoder (magic,
// CRC, version, type, flags, length bounds) against its OWN sequence number: the proxy does not
// enforce ordering (the endpoints do), it only needs the boundaries.
class Framer {
 public:
  enum class Got { kFrame, kMore, kBad };
  void feed(const uint8_t* p, size_t n) { buf_.insert(buf_.end(), p, p + n); }
  Got next(std::vector<uint8_t>& frame, FrameHeader& h, std::string& err) {
    if (pos_ > (1u << 20) && pos_ * 2 > buf_.size()) {
      buf_.erase(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(pos_));
      pos_ = 0;
    }
    size_t have = buf_.size() - pos_;
    if (have < wire::kHeaderSize) return Got::kMore;
    ByteView hv(buf_.data() + pos_, wire::kHeaderSize);
    uint64_t seq = 0;
    std::memcpy(&seq, hv.data() + 12, 8);
    auto d = wire::decode_header(hv, seq);
    if (!d.ok()) {
      err = d.error().message;
      return Got::kBad;
    }
    size_t total = wire::kHeaderSize + d->payload_len;
    if (have < total) return Got::kMore;
    h = *d;
    frame.assign(buf_.begin() + static_cast<std::ptrdiff_t>(pos_),
                 buf_.begin() + static_cast<std::ptrdiff_t>(pos_ + total));
    pos_ += total;
    offset_ += total;
    return Got::kFrame;
  }
  std::vector<uint8_t> take_rest() {
    std::vector<uint8_t> r(buf_.begin() + static_cast<std::ptrdiff_t>(pos_), buf_.end());
    buf_.clear();
    pos_ = 0;
    return r;
  }
  size_t buffered() const { return buf_.size() - pos_; }
  uint64_t offset() const { return offset_; }  // stream offset of the next frame

 private:
  std::vector<uint8_t> buf_;
  size_t pos_ = 0;
  uint64_t offset_ = 0;
};

void put_seq_and_crc(std::vector<uint8_t>& f, uint64_t seq) {
  std::memcpy(f.data() + 12, &seq, 8);
  uint32_t crc = wire::crc32c(ByteView(f.data(), 20));
  std::memcpy(f.data() + 20, &crc, 4);
}

uint64_t frame_seq(const std::vector<uint8_t>& f) {
  uint64_t s = 0;
  std::memcpy(&s, f.data() + 12, 8);
  return s;
}

// The pick-th frame of `type` in a capture file (with or without its 16-byte header).
Result<std::vector<uint8_t>> load_capture_frame(const std::string& path, uint8_t type,
                                                uint64_t pick) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return make_error(Errc::kNotFound, "cannot open capture " + path + ": " + std::strerror(errno));
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), {});
  auto ch = wire::decode_capture_header(bytes);
  if (!ch.ok()) return make_error(Errc::kFormat, path + ": " + ch.error().message);
  size_t skip = ch->has_value() ? wire::kCaptureHeaderSize : 0;
  Framer fr;
  fr.feed(bytes.data() + skip, bytes.size() - skip);
  std::vector<uint8_t> f;
  FrameHeader h;
  std::string err;
  uint64_t seen = 0;
  for (;;) {
    auto g = fr.next(f, h, err);
    if (g == Framer::Got::kBad)
      return make_error(Errc::kFormat, path + ": bad frame at offset " +
                                           std::to_string(skip + fr.offset()) + ": " + err);
    if (g == Framer::Got::kMore) break;
    if (static_cast<uint8_t>(h.type) == type && ++seen == pick) return f;
  }
  return make_error(Errc::kNotFound, path + " has " + std::to_string(seen) + " " +
                                         wire::frame_type_name(static_cast<FrameType>(type)) +
                                         " frame(s), rule asks for #" + std::to_string(pick) +
                                         " (constmig inspect " + path + " lists them)");
}

// ---- proxy state --------------------------------------------------------------------------------

std::mutex g_mu;  // rules, connections, log
std::vector<Rule> g_rules;
bool g_fix_seq = true;
std::FILE* g_log = nullptr;
Clock::time_point g_t0;
uint64_t g_heap_pages = 0;  // from the source's STATS ("pages", else "prepare-heap-top" / 4096)
bool g_need_history = false;
std::set<uint64_t> g_seq_wanted;
std::atomic<bool> g_stop{false};

double now_s() {
  return std::chrono::duration<double>(Clock::now() - g_t0).count();
}

// Under g_mu. One stderr line, and one JSON line in --log.
void log_event(const nlohmann::json& j, const std::string& line) {
  std::fprintf(stderr, "constmig-proxy: %s\n", line.c_str());
  std::fflush(stderr);
  if (g_log) {
    nlohmann::json e = j;
    e["t"] = now_s();
    std::string s = e.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    std::fprintf(g_log, "%s\n", s.c_str());
    std::fflush(g_log);
  }
}

struct Conn {
  uint64_t id = 0;     // accept order
  uint64_t index = 0;  // 0 = main connection of a migration, 1 = the next one (urgent), ...
  uint64_t migration = 0;
  int fd[2] = {-1, -1};  // [0] source side (accepted), [1] target side
  std::atomic<int> pumps_left{2};
  std::atomic<bool> cut{false};
  uint64_t frames[2] = {0, 0}, bytes[2] = {0, 0};
};
std::vector<std::shared_ptr<Conn>> g_conns;  // open connections
uint64_t g_accepted = 0, g_migrations = 0, g_since_main = 0;

std::string frame_desc(const Conn& c, Dir d, const FrameHeader& h) {
  std::string s =
      "conn " + std::to_string(c.index) + " " + dir_name(d) + " " + wire::frame_type_name(h.type);
  if (h.flags & wire::kFlagUrgent) s += " (urgent)";
  s += " seq " + std::to_string(h.seq) + ", " + std::to_string(h.payload_len) + " payload bytes";
  return s;
}

nlohmann::json frame_json(const Conn& c, Dir d, const FrameHeader& h) {
  return {{"conn", c.index},
          {"conn_id", c.id},
          {"migration", c.migration},
          {"dir", dir_name(d)},
          {"type", wire::frame_type_name(h.type)},
          {"flags", h.flags},
          {"seq", h.seq},
          {"payload_len", h.payload_len}};
}

// Cut: close connections in both directions. Under g_mu. The sockets get SO_LINGER 0, so the
// close that follows when their pumps end resets them (a peer blocked in send() fails at once).
void cut_locked(const std::shared_ptr<Conn>& only) {
  for (auto& c : g_conns) {
    if (only && c != only) continue;
    c->cut = true;
    for (int fd : c->fd) {
      linger l{1, 0};
      (void)::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
      (void)::shutdown(fd, SHUT_RDWR);
    }
  }
}

bool matches(const Rule& r, const Conn& c, Dir d, const FrameHeader& h) {
  if (r.dir && *r.dir != d) return false;
  if (r.conn && *r.conn != c.index) return false;
  if (r.type && *r.type != static_cast<uint8_t>(h.type)) return false;
  switch (r.flag_sel) {
    case FlagSel::kAny:
      return true;
    case FlagSel::kUrgent:
      return (h.flags & wire::kFlagUrgent) != 0;
    case FlagSel::kNone:
      return h.flags == 0;
    case FlagSel::kExact:
      return h.flags == r.flags;
  }
  return true;
}

uint64_t pages_in(ByteView payload) {
  std::vector<wire::PageRecord> recs;
  if (!wire::decode_pages(payload, recs).ok()) return 0;
  uint64_t n = 0;
  for (const auto& rec : recs) n += rec.run;
  return n;
}

// ---- one direction of one connection ------------------------------------------------------------

class Pump {
 public:
  Pump(std::shared_ptr<Conn> c, Dir d)
      : c_(std::move(c)),
        d_(d),
        in_(c_->fd[d == Dir::kS2T ? 0 : 1]),
        out_(c_->fd[d == Dir::kS2T ? 1 : 0]) {}

  void run() {
    std::vector<uint8_t> rbuf(1 << 20);
    for (;;) {
      int timeout = -1;
      if (!held_.empty()) {
        auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(held_deadline_ - Clock::now());
        timeout = static_cast<int>(std::max<int64_t>(0, left.count()));
      }
      pollfd p{in_, POLLIN, 0};
      int pr = ::poll(&p, 1, timeout);
      if (pr < 0 && errno == EINTR) continue;
      if (pr == 0) {
        release_held("nothing followed within the reorder wait; released in order");
        continue;
      }
      ssize_t n = ::read(in_, rbuf.data(), rbuf.size());
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n <= 0) break;
      if (discard_) continue;
      if (raw_) {
        write_out(rbuf.data(), static_cast<size_t>(n));
        continue;
      }
      framer_.feed(rbuf.data(), static_cast<size_t>(n));
      for (;;) {
        std::vector<uint8_t> f;
        FrameHeader h;
        std::string err;
        auto g = framer_.next(f, h, err);
        if (g == Framer::Got::kMore) break;
        if (g == Framer::Got::kBad) {
          {
            std::lock_guard lk(g_mu);
            log_event({{"event", "unframed"},
                       {"conn", c_->index},
                       {"dir", dir_name(d_)},
                       {"offset", framer_.offset()},
                       {"error", err}},
                      "conn " + std::to_string(c_->index) + " " + dir_name(d_) +
                          ": not a frame at stream offset " + std::to_string(framer_.offset()) +
                          " (" + err + "); forwarding the rest of this direction unchanged");
          }
          release_held("the stream lost its framing");
          raw_ = true;
          auto rest = framer_.take_rest();
          write_out(rest.data(), rest.size());
          break;
        }
        process(std::move(f), h);
        if (discard_) break;
      }
    }
    // End of this direction: pending frames go out, then the half-close travels on.
    if (!discard_) {
      release_held("the sender closed its side");
      if (!raw_ && framer_.buffered() > 0) {
        auto rest = framer_.take_rest();
        std::unique_lock lk(g_mu);
        log_event({{"event", "partial-frame"},
                   {"conn", c_->index},
                   {"dir", dir_name(d_)},
                   {"bytes", rest.size()}},
                  "conn " + std::to_string(c_->index) + " " + dir_name(d_) + ": sender closed " +
                      std::to_string(rest.size()) + " bytes into a frame; forwarded as they are");
        lk.unlock();  // write_out logs under g_mu itself
        write_out(rest.data(), rest.size());
      }
    }
    if (!c_->cut) (void)::shutdown(out_, SHUT_WR);
  }

 private:
  struct Pending {
    std::vector<uint8_t> bytes;
    std::vector<const Rule*> header_flips;  // applied after renumbering
  };

  // Applies the rules to one frame and forwards what they leave.
  void process(std::vector<uint8_t> f, const FrameHeader& h) {
    struct Apply {
      Rule* r;
      uint64_t match;
    };
    std::vector<Apply> todo;
    std::vector<uint8_t> replayed;  // replay: the frame to send after (or instead of) this one
    {
      std::lock_guard lk(g_mu);
      c_->frames[static_cast<int>(d_)]++;
      c_->bytes[static_cast<int>(d_)] += f.size();
      if (d_ == Dir::kS2T && h.type == FrameType::kStats) note_stats(f);
      uint64_t pages = 0;
      bool pages_counted = false;
      for (auto& r : g_rules) {
        if (!matches(r, *c_, d_, h)) continue;
        if (progress_cut(r)) {
          if (r.fired) continue;
          uint64_t add = h.payload_len;
          uint64_t limit = r.cut_bytes ? *r.cut_bytes : 0;
          if (!r.cut_bytes) {
            if (!pages_counted) {
              pages = pages_in(ByteView(f).subspan(wire::kHeaderSize));
              pages_counted = true;
            }
            add = pages;
            if (g_heap_pages == 0) continue;  // no STATS seen: the share is unknown
            limit =
                static_cast<uint64_t>(std::ceil(r.pct / 100.0 * static_cast<double>(g_heap_pages)));
          }
          ++r.matched;
          if (r.progress + add >= limit) {
            r.fired = true;
            ++r.applied;
            todo.push_back({&r, r.matched});
          } else {
            r.progress += add;
          }
          continue;
        }
        uint64_t m = ++r.matched;
        if (m < r.nth || (r.count != 0 && m >= r.nth + r.count)) continue;
        ++r.applied;
        todo.push_back({&r, m});
      }
    }

    const uint64_t orig_seq = h.seq;
    std::vector<uint8_t> orig;
    if (g_need_history || g_seq_wanted.count(orig_seq)) orig = f;
    Pending cur{std::move(f), {}};
    bool send = true, hold = false;
    uint64_t extra_copies = 0;
    bool replay_after = false;
    for (const Apply& a : todo) {
      const Rule& r = *a.r;
      std::string detail;
      bool end_here = false;
      switch (r.act) {
        case Act::kDrop:
          send = false;
          detail = "dropped";
          break;
        case Act::kDelay:
          detail = "held " + std::to_string(r.ms) + " ms";
          break;
        case Act::kReorder:
          hold = true;
          detail = "held back until the next frame of this direction has gone";
          break;
        case Act::kDuplicate:
          extra_copies += r.times;
          detail = "sent " + std::to_string(r.times + 1) + " times";
          break;
        case Act::kReplay: {
          std::lock_guard lk(g_mu);
          if (!r.file.empty()) {
            replayed = r.file_frame;
            detail = "frame #" + std::to_string(r.pick) + " of " + r.file;
          } else if (r.seq) {
            auto it = by_seq_.find(*r.seq);
            if (it != by_seq_.end()) {
              replayed = it->second;
              detail = "earlier frame with seq " + std::to_string(*r.seq);
            } else {
              detail = "no earlier frame with seq " + std::to_string(*r.seq) +
                       " on this connection and direction: nothing replayed";
            }
          } else {
            auto it = last_by_type_.find(static_cast<uint8_t>(h.type));
            if (it != last_by_type_.end()) {
              replayed = it->second;
              detail = "previous " + wire::frame_type_name(h.type) + " frame (seq " +
                       std::to_string(frame_seq(replayed)) + ")";
            } else {
              replayed = cur.bytes;
              detail = "no earlier " + wire::frame_type_name(h.type) +
                       " frame on this connection: this frame re-sent";
            }
          }
          if (!replayed.empty()) {
            replay_after = true;
            if (r.replace) {
              send = false;
              detail += ", sent instead of the frame";
            } else {
              detail += ", sent after the frame";
            }
          }
          break;
        }
        case Act::kFlip: {
          size_t len = r.header ? wire::kHeaderSize : cur.bytes.size() - wire::kHeaderSize;
          int64_t off = r.offset < 0 ? static_cast<int64_t>(len) + r.offset : r.offset;
          if (off < 0 || static_cast<size_t>(off) >= len) {
            detail = "offset " + std::to_string(r.offset) + " is outside the " +
                     std::to_string(len) + "-byte " + (r.header ? "header" : "payload") +
                     ": not flipped";
          } else if (r.header) {
            cur.header_flips.push_back(&r);
            detail = "header byte " + std::to_string(off) + " flipped" +
                     (r.fixcrc ? " (CRC recomputed)" : "");
          } else {
            uint8_t& b = cur.bytes[wire::kHeaderSize + static_cast<size_t>(off)];
            char buf[64];
            std::snprintf(buf, sizeof buf, "payload byte %lld: 0x%02x -> 0x%02x",
                          static_cast<long long>(off), b, b ^ r.mask);
            b ^= r.mask;
            detail = buf;
          }
          break;
        }
        case Act::kTruncate:
        case Act::kCut:
          end_here = true;
          break;
      }
      if (end_here) {
        finish_with(r, a.match, h, cur);
        return;
      }
      {
        std::lock_guard lk(g_mu);
        nlohmann::json j = frame_json(*c_, d_, h);
        j.update({{"event", "rule"},
                  {"rule", r.id},
                  {"spec", r.text},
                  {"action", act_name(r.act)},
                  {"match", a.match},
                  {"detail", detail}});
        log_event(j, "rule " + std::to_string(r.id) + " (" + r.text + ") on " +
                         frame_desc(*c_, d_, h) + " [match " + std::to_string(a.match) +
                         "]: " + detail);
      }
      if (r.act == Act::kDelay) std::this_thread::sleep_for(std::chrono::milliseconds(r.ms));
    }

    // History for replay: the frame as it arrived, before anything was changed.
    if (g_need_history) last_by_type_[static_cast<uint8_t>(h.type)] = orig;
    if (g_seq_wanted.count(orig_seq)) by_seq_[orig_seq] = std::move(orig);

    if (hold) {
      if (held_.empty()) {
        uint64_t ms = 1000;
        for (const Apply& a : todo)
          if (a.r->act == Act::kReorder) ms = a.r->ms;
        held_deadline_ = Clock::now() + std::chrono::milliseconds(ms);
      }
      held_.push_back(std::move(cur));
      return;
    }
    if (send) {
      for (uint64_t i = 0; i <= extra_copies; ++i) send_pending(cur);
    }
    if (replay_after) send_pending(Pending{std::move(replayed), {}});
    if (send || replay_after) release_held("");
  }

  // Truncate or cut at this frame.
  void finish_with(const Rule& r, uint64_t match, const FrameHeader& h, Pending& cur) {
    std::unique_lock lk(g_mu);
    nlohmann::json j = frame_json(*c_, d_, h);
    j.update({{"event", "rule"},
              {"rule", r.id},
              {"spec", r.text},
              {"action", act_name(r.act)},
              {"match", match}});
    if (r.act == Act::kCut) {
      std::string detail = std::string("link cut before this frame: ") +
                           (r.scope_conn ? "this connection" : "every open connection") +
                           " closed in both directions";
      if (progress_cut(r)) {
        detail +=
            " (" + std::to_string(r.progress) +
            (r.cut_bytes ? " PAGES bytes" : " of " + std::to_string(g_heap_pages) + " pages") +
            " had passed)";
        j["passed"] = r.progress;
        if (!r.cut_bytes) j["heap_pages"] = g_heap_pages;
      }
      j["detail"] = detail;
      log_event(j, "rule " + std::to_string(r.id) + " (" + r.text + ") on " +
                       frame_desc(*c_, d_, h) + ": " + detail);
      cut_locked(r.scope_conn ? c_ : nullptr);
      discard_ = true;
      return;
    }
    // Truncate: part of the frame, then this direction ends (the peer sees a truncated stream);
    // what the sender writes afterwards is read and dropped so that it never blocks.
    size_t n = r.cut_bytes
                   ? std::min<size_t>(*r.cut_bytes, cur.bytes.size())
                   : static_cast<size_t>(static_cast<double>(cur.bytes.size()) * r.pct / 100);
    n = std::min(n, cur.bytes.size() - 1);
    std::string detail = "sent " + std::to_string(n) + " of " + std::to_string(cur.bytes.size()) +
                         " bytes, then closed " + dir_name(d_);
    j["detail"] = detail;
    log_event(j, "rule " + std::to_string(r.id) + " (" + r.text + ") on " + frame_desc(*c_, d_, h) +
                     ": " + detail);
    lk.unlock();  // write_out logs under g_mu itself
    prepare(cur);
    write_out(cur.bytes.data(), n);
    (void)::shutdown(out_, SHUT_WR);
    discard_ = true;
  }

  // Renumbers (--seq fix) and applies header flips.
  void prepare(Pending& p) {
    if (g_fix_seq) put_seq_and_crc(p.bytes, out_seq_);
    ++out_seq_;
    for (const Rule* r : p.header_flips) {
      p.bytes[static_cast<size_t>(r->offset)] ^= r->mask;
      if (r->fixcrc) {
        uint32_t crc = wire::crc32c(ByteView(p.bytes.data(), 20));
        std::memcpy(p.bytes.data() + 20, &crc, 4);
      }
    }
  }

  void send_pending(Pending p) {
    prepare(p);
    write_out(p.bytes.data(), p.bytes.size());
  }

  void release_held(const std::string& why) {
    if (held_.empty()) return;
    if (!why.empty()) {
      std::lock_guard lk(g_mu);
      log_event({{"event", "reorder-release"},
                 {"conn", c_->index},
                 {"dir", dir_name(d_)},
                 {"frames", held_.size()},
                 {"why", why}},
                "conn " + std::to_string(c_->index) + " " + dir_name(d_) + ": " +
                    std::to_string(held_.size()) + " held frame(s): " + why);
    }
    auto h = std::move(held_);
    held_.clear();
    for (auto& p : h) send_pending(std::move(p));
  }

  void write_out(const uint8_t* p, size_t n) {
    size_t done = 0;
    while (done < n && !discard_) {
      ssize_t w = ::send(out_, p + done, n - done, MSG_NOSIGNAL);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        if (!c_->cut) {
          std::lock_guard lk(g_mu);
          log_event({{"event", "peer-gone"},
                     {"conn", c_->index},
                     {"dir", dir_name(d_)},
                     {"error", std::strerror(errno)}},
                    "conn " + std::to_string(c_->index) + " " + dir_name(d_) +
                        ": the receiver is gone (" + std::strerror(errno) +
                        "); discarding what the sender still writes");
        }
        discard_ = true;
        return;
      }
      done += static_cast<size_t>(w);
    }
  }

  void note_stats(const std::vector<uint8_t>& f) {  // under g_mu
    auto text = as_string_view(ByteView(f).subspan(wire::kHeaderSize));
    auto j = nlohmann::json::parse(text, nullptr, false);
    if (!j.is_object()) return;
    if (j.contains("pages") && j["pages"].is_number_unsigned()) {
      g_heap_pages = j["pages"].get<uint64_t>();
    } else if (j.contains("prepare-heap-top") && j["prepare-heap-top"].is_number_unsigned()) {
      g_heap_pages = j["prepare-heap-top"].get<uint64_t>() / wire::kPageSize;
    }
  }

 private:
  std::shared_ptr<Conn> c_;
  Dir d_;
  int in_, out_;
  Framer framer_;
  bool raw_ = false, discard_ = false;
  uint64_t out_seq_ = 0;
  std::vector<Pending> held_;
  Clock::time_point held_deadline_;
  std::map<uint8_t, std::vector<uint8_t>> last_by_type_;
  std::map<uint64_t, std::vector<uint8_t>> by_seq_;
};

// ---- connections -------------------------------------------------------------------------------

void run_connection(std::shared_ptr<Conn> c) {
  std::thread t2s([c] { Pump(c, Dir::kT2S).run(); });
  Pump(c, Dir::kS2T).run();
  t2s.join();
  std::lock_guard lk(g_mu);
  log_event({{"event", "conn-close"},
             {"conn", c->index},
             {"conn_id", c->id},
             {"migration", c->migration},
             {"cut", c->cut.load()},
             {"s2t_frames", c->frames[0]},
             {"s2t_bytes", c->bytes[0]},
             {"t2s_frames", c->frames[1]},
             {"t2s_bytes", c->bytes[1]}},
            "conn " + std::to_string(c->index) + " (#" + std::to_string(c->id) + ") closed" +
                (c->cut ? " (cut)" : "") + ": s2t " + std::to_string(c->frames[0]) + " frames / " +
                std::to_string(c->bytes[0]) + " bytes, t2s " + std::to_string(c->frames[1]) +
                " frames / " + std::to_string(c->bytes[1]) + " bytes");
  ::close(c->fd[0]);
  ::close(c->fd[1]);
  g_conns.erase(std::remove(g_conns.begin(), g_conns.end(), c), g_conns.end());
}

void accept_one(int lfd, const std::string& to) {
  sockaddr_storage peer{};
  socklen_t pl = sizeof peer;
  int a = ::accept4(lfd, reinterpret_cast<sockaddr*>(&peer), &pl, SOCK_CLOEXEC);
  if (a < 0) return;
  int one = 1;
  (void)::setsockopt(a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  auto t = host::tcp_connect(to, 10000);
  std::lock_guard lk(g_mu);
  if (!t.ok()) {
    log_event({{"event", "connect-failed"}, {"to", to}, {"error", t.error().message}},
              "cannot reach the target " + to + ": " + t.error().message +
                  " (the incoming connection is closed)");
    ::close(a);
    return;
  }
  auto c = std::make_shared<Conn>();
  c->id = g_accepted++;
  if (g_conns.empty()) {
    c->index = 0;
    c->migration = ++g_migrations;
    g_since_main = 0;
  } else {
    c->index = ++g_since_main;
    c->migration = g_migrations;
  }
  c->fd[0] = a;
  c->fd[1] = *t;
  g_conns.push_back(c);
  log_event(
      {{"event", "conn-open"}, {"conn", c->index}, {"conn_id", c->id}, {"migration", c->migration}},
      "conn " + std::to_string(c->index) + " (#" + std::to_string(c->id) + ", migration " +
          std::to_string(c->migration) + ") open, forwarding to " + to);
  std::thread([c] { run_connection(c); }).detach();
}

void summary() {
  std::lock_guard lk(g_mu);
  nlohmann::json rules = nlohmann::json::array();
  for (const auto& r : g_rules) {
    rules.push_back(
        {{"rule", r.id}, {"spec", r.text}, {"matched", r.matched}, {"applied", r.applied}});
    log_event({{"event", "rule-summary"},
               {"rule", r.id},
               {"spec", r.text},
               {"matched", r.matched},
               {"applied", r.applied}},
              "rule " + std::to_string(r.id) + " (" + r.text + "): " + std::to_string(r.matched) +
                  " matching frame(s), applied " + std::to_string(r.applied) + " time(s)" +
                  (r.applied == 0 ? " -- NEVER APPLIED" : ""));
  }
}

void on_signal(int) {
  g_stop = true;
}

const char* kRulesHelp = R"(
RULES (--rule, repeatable; applied in order, every rule sees every frame):
  KEY=VALUE,KEY=VALUE,...,action=ACTION[:PARAM[:PARAM]]
  Selectors (all optional):
    dir=s2t|t2s|any         source->target or target->source (default any)
    conn=N|any              connection index within a migration: 0 = main, 1 = urgent
                            (live mode's second connection), ... (default any)
    type=NAME|N|any         frame type: HELLO KEY_CONFIRM SMALL_STATE HOST_STATE PAGES
                            PAGE_REQUEST MANIFEST COMMIT ABORT ERROR STATS (default any)
    flags=urgent|none|N|any urgent: the URGENT bit is set; none: no flag; N: exactly N
    nth=N                   act on the Nth frame that matches the selectors (default 1)
    count=N|all             ... and on the N-1 matches after it, or on all (default 1)
  Actions:
    drop                    the frame is not sent
    delay:ms=N              the frame (and everything behind it in that direction) waits N ms
    reorder[:wait=MS]       hold the frame, send it right after the next frame of the same
                            direction; if none follows within MS (default 1000) it goes in order
    duplicate[:times=N]     send the frame N+1 times (default twice)
    replay                  after the frame, re-send the previous frame of the same type on
                            this connection and direction (the frame itself if there is none)
    replay:seq=N            ... the earlier frame of this direction whose original seq was N
    replay:file=CAP[:type=NAME][:pick=K]
                            ... the K-th (default 1st) frame of that type (default: the matched
                            frame's type) from a capture of an EARLIER migration
                            (constmig migrate --capture CAP)
      (add :replace to any replay to send the replayed frame INSTEAD of the matched one)
    flip:byte=N[:mask=M]    XOR M (default 0x01) into payload byte N (negative: from the end)
    flip:hdr=N[:mask=M][:fixcrc]
                            ... into header byte N (0..23); fixcrc recomputes the header CRC
    truncate[:bytes=N|:pct=P]
                            send the first N bytes / P% (default 50%) of the frame (header
                            included), then close this direction; the other keeps flowing,
                            later bytes from the sender are read and dropped
    cut                     close every open connection in both directions instead of
                            sending the frame (:scope=conn: only this connection)
    cut:pct=P               cut once P% of the heap's pages (source's STATS) would have passed
                            in PAGES frames: the frame that would reach P% is not sent
    cut:bytes=N             ... once N bytes of PAGES frames would have passed
  Sequence numbers (--seq): fix (default) renumbers each direction consecutively and recomputes
  the header CRC (anyone can), so dropped/duplicated/reordered/replayed frames reach the
  enclaves' checks; keep forwards headers unchanged (the framing layer refuses them first).

EXAMPLES
  constmig-proxy --listen 127.0.0.1:7001 --to 127.0.0.1:7000       --rule 'dir=s2t,type=PAGES,nth=3,action=flip:byte=100'
  --rule 'type=PAGES,action=cut:pct=50'              cut the link in the middle of the heap
  --rule 'dir=t2s,type=COMMIT,action=drop'           the source never learns of the commit
  --rule 'type=PAGES,nth=2,action=replay'            PAGES #1 arrives again after PAGES #2
  --rule 'type=PAGES,action=replay:file=old.cap:replace'
                                                     a page batch of an earlier migration
  --rule 'conn=1,flags=urgent,action=flip:byte=-1'   corrupt an urgent answer's last tag byte
  --rule 'dir=s2t,count=all,action=delay:ms=5'       a slow link
Every applied rule is logged to stderr (and as a JSON line to --log FILE); at exit (SIGINT or
SIGTERM) each rule's match count is printed, and rules that never applied are named.
Invalid rules: a message naming the problem, exit status 2. See docs/proxy.md.
)";

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{
      "constmig-proxy: a malicious host between a migration's source and target (TESTING "
      "ONLY).\nForwards every connection to --to frame by frame and tampers with frames as the "
      "--rule list says."};
  cli.footer(kRulesHelp);
  std::string listen, to, seq = "fix", log_path;
  std::vector<std::string> rule_texts;
  bool dry = false;
  cli.add_option("--listen", listen, "HOST:PORT to accept the source's connections on");
  cli.add_option("--to", to, "HOST:PORT of the target (constmig receive --listen)");
  cli.add_option("--rule", rule_texts, "a tampering rule (repeatable; see RULES below)");
  cli.add_option("--seq", seq, "fix: renumber frames after tampering; keep: forward headers as is")
      ->capture_default_str()
      ->check(CLI::IsMember({"fix", "keep"}));
  cli.add_option("--log", log_path, "also write every event as a JSON line to this file");
  cli.add_flag("--dry-run", dry, "check the rules, print what each does, and exit");
  try {
    cli.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = cli.exit(e);
    return rc == 0 ? 0 : 2;
  }
  for (size_t i = 0; i < rule_texts.size(); ++i) {
    try {
      g_rules.push_back(parse_rule(rule_texts[i], i + 1));
    } catch (const RuleError& e) {
      std::fprintf(stderr,
                   "constmig-proxy: invalid rule %zu '%s': %s\n(constmig-proxy --help lists "
                   "the rule syntax with examples)\n",
                   i + 1, rule_texts[i].c_str(), e.msg.c_str());
      return 2;
    }
  }
  for (auto& r : g_rules) {
    if (r.act != Act::kReplay) continue;
    if (!r.file.empty()) {
      if (!r.pick_type && !r.type) {
        std::fprintf(stderr,
                     "constmig-proxy: invalid rule %zu '%s': replay:file= needs the frame type "
                     "to take from the capture: type= in the rule or :type= in the action\n",
                     r.id, r.text.c_str());
        return 2;
      }
      auto f = load_capture_frame(r.file, r.pick_type ? *r.pick_type : *r.type, r.pick);
      if (!f.ok()) {
        std::fprintf(stderr, "constmig-proxy: invalid rule %zu '%s': %s\n", r.id, r.text.c_str(),
                     f.error().message.c_str());
        return 2;
      }
      r.file_frame = std::move(*f);
    } else if (r.seq) {
      g_seq_wanted.insert(*r.seq);
    } else {
      g_need_history = true;
    }
  }
  g_fix_seq = seq == "fix";
  if (dry) {
    for (const auto& r : g_rules) std::printf("rule %zu: %s\n", r.id, describe(r).c_str());
    std::printf("sequence numbers: %s\n", g_fix_seq ? "renumbered (fix)" : "kept (keep)");
    return 0;
  }
  if (listen.empty() || to.empty()) {
    std::fprintf(stderr, "constmig-proxy: --listen and --to are required (see --help)\n");
    return 2;
  }
  if (!log_path.empty()) {
    g_log = std::fopen(log_path.c_str(), "w");
    if (!g_log) {
      std::fprintf(stderr, "constmig-proxy: cannot write --log %s: %s\n", log_path.c_str(),
                   std::strerror(errno));
      return 2;
    }
  }
  g_t0 = Clock::now();
  auto lfd = host::tcp_listen(listen);
  if (!lfd.ok()) {
    std::fprintf(stderr, "constmig-proxy: %s\n", lfd.error().message.c_str());
    return 1;
  }
  {
    // The address actually bound (--listen HOST:0 picks a free port).
    sockaddr_storage ss{};
    socklen_t sl = sizeof ss;
    char host[INET6_ADDRSTRLEN] = "?";
    if (::getsockname(*lfd, reinterpret_cast<sockaddr*>(&ss), &sl) == 0) {
      uint16_t port = 0;
      if (ss.ss_family == AF_INET) {
        auto* a4 = reinterpret_cast<sockaddr_in*>(&ss);
        ::inet_ntop(AF_INET, &a4->sin_addr, host, sizeof host);
        port = ntohs(a4->sin_port);
        listen = std::string(host) + ":" + std::to_string(port);
      } else if (ss.ss_family == AF_INET6) {
        auto* a6 = reinterpret_cast<sockaddr_in6*>(&ss);
        ::inet_ntop(AF_INET6, &a6->sin6_addr, host, sizeof host);
        port = ntohs(a6->sin6_port);
        listen = "[" + std::string(host) + "]:" + std::to_string(port);
      }
    }
  }
  signal(SIGPIPE, SIG_IGN);
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  {
    std::lock_guard lk(g_mu);
    nlohmann::json rules = nlohmann::json::array();
    for (const auto& r : g_rules) rules.push_back(r.text);
    log_event({{"event", "listen"}, {"listen", listen}, {"to", to}, {"rules", rules}, {"seq", seq}},
              "listening on " + listen + ", forwarding to " + to + ", " +
                  std::to_string(g_rules.size()) + " rule(s), sequence numbers " + seq);
    for (const auto& r : g_rules)
      log_event({{"event", "rule-defined"}, {"rule", r.id}, {"spec", r.text}},
                "rule " + std::to_string(r.id) + ": " + describe(r));
  }
  while (!g_stop) {
    pollfd p{*lfd, POLLIN, 0};
    int pr = ::poll(&p, 1, 200);
    if (pr == 1) accept_one(*lfd, to);
  }
  summary();
  if (g_log) std::fflush(g_log);
  std::fflush(stderr);
  std::_Exit(0);  // connection threads may still be blocked in reads
}
