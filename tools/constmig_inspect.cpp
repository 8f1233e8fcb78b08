// `constmig inspect`: frame-by-frame decoder of captured migration streams. See
// constmig_inspect.h and docs/format.md. UNTRUSTED tool: prints framing only, never ciphertext.
#include "constmig_inspect.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/wire_format.h"

namespace constmig::tools {
namespace {

using nlohmann::json;
using namespace constmig::wire;

constexpr size_t kReadChunk = 1u << 20;

std::string hex(ByteView b) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (uint8_t x : b) {
    s.push_back(d[x >> 4]);
    s.push_back(d[x & 15]);
  }
  return s;
}

// Printable ASCII as is, everything else as \xNN: safe for any terminal.
std::string escape(std::string_view s, size_t limit) {
  std::string o;
  for (size_t i = 0; i < s.size() && i < limit; ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c == '\\' || c == '"') {
      o.push_back('\\');
      o.push_back(static_cast<char>(c));
    } else if (c >= 0x20 && c < 0x7F) {
      o.push_back(static_cast<char>(c));
    } else {
      static const char* d = "0123456789abcdef";
      o += "\\x";
      o.push_back(d[c >> 4]);
      o.push_back(d[c & 15]);
    }
  }
  if (s.size() > limit) o += "...";
  return o;
}

std::string flags_text(uint16_t f) {
  if (f == 0) return "-";
  std::string s;
  if (f & kFlagUrgent) s += "urgent";
  if (f & ~kFlagUrgent) s += (s.empty() ? "" : ",") + std::to_string(f & ~kFlagUrgent);
  return s;
}

struct Range {
  uint64_t first;
  uint64_t count;
  PageKind kind;
};

// Consecutive records of one kind are merged into ranges.
std::vector<Range> page_ranges(const std::vector<PageRecord>& recs) {
  std::vector<Range> out;
  for (const PageRecord& p : recs) {
    if (!out.empty() && out.back().kind == p.kind &&
        out.back().first + out.back().count == p.index) {
      out.back().count += p.run;
    } else {
      out.push_back(Range{p.index, p.run, p.kind});
    }
  }
  return out;
}

struct Summary {
  uint64_t frames = 0;
  uint64_t bytes = 0;  // stream bytes in complete frames
  std::map<std::string, uint64_t> by_type;
  std::map<std::string, uint64_t> payload_bytes;
  uint64_t urgent_batches = 0;
  uint64_t page_records = 0;
  uint64_t data_pages = 0;
  uint64_t zero_pages = 0;
  uint64_t zero_runs = 0;
  uint64_t requested_pages = 0;
  uint64_t duplicate_pages = 0;
  std::string first_duplicate;  // "page N at offset M"
  std::vector<bool> seen;       // page bitmap (allocated on the first PAGES frame)
};

class Inspector {
 public:
  explicit Inspector(const InspectOptions& o) : o_(o) {}

  void capture(const std::optional<CaptureHeader>& c) {
    capture_ = c;
    if (o_.json) return;
    if (c) {
      std::fprintf(o_.out, "capture header: version %u, direction %s (16 bytes)\n", c->version,
                   std::string(direction_name(c->direction)).c_str());
    } else {
      std::fprintf(o_.out, "no capture header: raw stream\n");
    }
    std::fprintf(o_.out, "%12s %8s  %-12s %-7s %9s  %s\n", "offset", "seq", "type", "flags",
                 "payload", "details");
  }

  // Returns an error message if the frame is not allowed here.
  std::optional<std::string> frame(uint64_t file_offset, const Frame& f) {
    const FrameHeader& h = f.header;
    const std::string name = frame_type_name(h.type);
    if (capture_ && !frame_allowed(h.type, capture_->direction)) {
      return name + " frames are never sent " + std::string(direction_name(capture_->direction));
    }
    json j;
    std::string details;
    describe(h, f.payload, file_offset, j, details);
    s_.frames++;
    s_.bytes += kHeaderSize + h.payload_len;
    s_.by_type[name]++;
    s_.payload_bytes[name] += h.payload_len;
    if (o_.json) {
      json fj = {{"offset", file_offset},
                 {"seq", h.seq},
                 {"type", name},
                 {"flags", h.flags},
                 {"payload_len", h.payload_len}};
      if (h.flags & kFlagUrgent) fj["urgent"] = true;
      fj.update(j);
      frames_.push_back(std::move(fj));
    } else {
      std::fprintf(o_.out, "%12llu %8llu  %-12s %-7s %9u  %s\n",
                   static_cast<unsigned long long>(file_offset),
                   static_cast<unsigned long long>(h.seq), name.c_str(),
                   flags_text(h.flags).c_str(), h.payload_len, details.c_str());
      if (!record_lines_.empty()) std::fputs(record_lines_.c_str(), o_.out);
    }
    record_lines_.clear();
    return std::nullopt;
  }

  int finish(std::optional<std::pair<uint64_t, std::string>> error, uint64_t trailing_bytes) {
    if (o_.json) {
      json doc;
      doc["capture"] = capture_
                           ? json{{"version", capture_->version},
                                  {"direction", std::string(direction_name(capture_->direction))}}
                           : json(nullptr);
      doc["frames"] = std::move(frames_);
      doc["summary"] = summary_json();
      doc["ok"] = !error.has_value();
      doc["error"] =
          error ? json{{"offset", error->first}, {"message", error->second}} : json(nullptr);
      std::string text = doc.dump(2, ' ', false, json::error_handler_t::replace);
      std::fprintf(o_.out, "%s\n", text.c_str());
    } else {
      print_summary();
      if (error) {
        std::fprintf(o_.out, "ERROR at offset %llu: %s\n",
                     static_cast<unsigned long long>(error->first), error->second.c_str());
      }
    }
    (void)trailing_bytes;
    if (error) {
      std::fprintf(o_.err, "constmig inspect: bad stream at offset %llu: %s\n",
                   static_cast<unsigned long long>(error->first), error->second.c_str());
      return 1;
    }
    return 0;
  }

 private:
  void note_pages(uint64_t first, uint64_t count, uint64_t file_offset) {
    if (s_.seen.empty()) s_.seen.assign(kMaxHeapPages, false);
    for (uint64_t i = first; i < first + count && i < kMaxHeapPages; ++i) {
      if (s_.seen[i]) {
        if (s_.duplicate_pages++ == 0) {
          s_.first_duplicate = "page " + std::to_string(i) + " again in the frame at offset " +
                               std::to_string(file_offset);
        }
      } else {
        s_.seen[i] = true;
      }
    }
  }

  void describe(const FrameHeader& h, ByteView payload, uint64_t file_offset, json& j,
                std::string& d) {
    switch (h.type) {
      case FrameType::kHello: {
        auto r = decode_hello(payload);
        if (!r.ok()) return;  // validated already by the reader
        const Hello& x = *r;
        // Public values only: the quote's measurement and platform key id help to match the
        // two sides of a migration. The quote is not verified here (the enclave does that).
        auto q = quote::decode_quote(x.quote);
        j = {{"role", std::string(role_name(x.role))},
             {"mode", std::string(mode_name(x.mode))},
             {"app", x.app_name},
             {"thread_slots", x.thread_slots},
             {"heap_limit", x.heap_limit},
             {"x25519_public", hex(x.x25519_public)},
             {"nonce", hex(x.nonce)}};
        d = "role=" + std::string(role_name(x.role)) + " mode=" + std::string(mode_name(x.mode)) +
            " app=\"" + escape(x.app_name, kMaxAppName) +
            "\" slots=" + std::to_string(x.thread_slots) +
            " heap_limit=" + std::to_string(x.heap_limit) +
            " key=" + hex(ByteView(x.x25519_public).first(8)) + "..";
        if (q.ok()) {
          j["quote_measurement"] = hex(q->measurement);
          j["quote_platform_key_id"] = hex(q->platform_key_id);
          d += " measurement=" + hex(ByteView(q->measurement).first(8)) +
               ".. platform=" + hex(ByteView(q->platform_key_id).first(8)) + "..";
        } else {
          j["quote_error"] = q.error().message;
          d += " quote=undecodable";
        }
        return;
      }
      case FrameType::kKeyConfirm:
        j = {{"mac_bytes", kMacSize}};
        d = "mac=32B";
        return;
      case FrameType::kSmallState:
      case FrameType::kHostState:
      case FrameType::kManifest:
      case FrameType::kCommit:
      case FrameType::kAbort:
      case FrameType::kResumeState: {
        auto r = decode_sealed(h.type, payload);
        if (!r.ok()) return;
        j = {{"nonce", r->nonce},
             {"section", r->section},
             {"index", r->index},
             {"count", r->count},
             {"ciphertext_bytes", r->ciphertext.size()}};
        d = "nonce=" + std::to_string(r->nonce) +
            (h.type == FrameType::kSmallState ? " section=" + std::to_string(r->section) : "") +
            " record=" + std::to_string(r->index) + "/" + std::to_string(r->count) +
            " ciphertext=" + std::to_string(r->ciphertext.size()) + "B tag=16B";
        return;
      }
      case FrameType::kPages: {
        if (decode_pages(payload, recs_).ok()) pages(h, file_offset, j, d);
        return;
      }
      case FrameType::kPageRequest: {
        auto r = decode_page_request(payload);
        if (!r.ok()) return;
        s_.requested_pages += r->count;
        j = {{"first", r->first}, {"count", r->count}};
        d = "pages " + std::to_string(r->first) + ".." + std::to_string(r->first + r->count - 1) +
            " (" + std::to_string(r->count) + ")";
        return;
      }
      case FrameType::kError: {
        auto r = decode_error(payload);
        if (!r.ok()) return;
        j = {{"code", r->code},
             {"code_name", errc_name(static_cast<Errc>(r->code))},
             {"message", r->message}};
        d = "code=" + std::to_string(r->code) + " (" + errc_name(static_cast<Errc>(r->code)) +
            ") message=\"" + escape(r->message, kMaxErrorMessage) + "\"";
        return;
      }
      case FrameType::kStats: {
        auto r = decode_stats(payload);
        if (!r.ok()) return;
        j = {{"text", std::string(*r)}};
        d = "json=" + std::to_string(r->size()) + "B \"" + escape(*r, 120) + "\"";
        return;
      }
      case FrameType::kResume: {
        auto r = decode_resume(payload);
        if (!r.ok()) return;
        j = {{"role", std::string(role_name(r->role))},
             {"migration_id", hex(r->mig_id)},
             {"epoch", r->epoch},
             {"key", hex(r->x25519_public)}};
        d = std::string(role_name(r->role)) + " migration=" + hex(r->mig_id) +
            " epoch=" + std::to_string(r->epoch) +
            " key=" + hex(ByteView(r->x25519_public).first(8)) + ".. mac=32B";
        return;
      }
    }
  }

  void pages(const FrameHeader& h, uint64_t file_offset, json& j, std::string& d) {
    uint64_t data = 0, zero_pages = 0, zero_runs = 0;
    uint64_t nmin = UINT64_MAX, nmax = 0;
    json recs = json::array();
    for (const PageRecord& p : recs_) {
      if (p.kind == PageKind::kData) {
        ++data;
      } else {
        ++zero_runs;
        zero_pages += p.run;
      }
      nmin = std::min(nmin, p.nonce);
      nmax = std::max(nmax, p.nonce);
      note_pages(p.index, p.run, file_offset);
      if (o_.records) {
        if (o_.json) {
          recs.push_back({{"index", p.index},
                          {"kind", std::string(page_kind_name(p.kind))},
                          {"run", p.run},
                          {"nonce", p.nonce}});
        } else {
          record_lines_ += "      " + std::string(page_kind_name(p.kind)) + " page " +
                           std::to_string(p.index) +
                           (p.kind == PageKind::kZero ? " run=" + std::to_string(p.run) : "") +
                           " nonce=" + std::to_string(p.nonce) + "\n";
        }
      }
    }
    s_.page_records += recs_.size();
    s_.data_pages += data;
    s_.zero_pages += zero_pages;
    s_.zero_runs += zero_runs;
    if (h.flags & kFlagUrgent) s_.urgent_batches++;
    std::vector<Range> ranges = page_ranges(recs_);
    json jr = json::array();
    std::string rs;
    for (size_t i = 0; i < ranges.size(); ++i) {
      const Range& r = ranges[i];
      jr.push_back(
          {{"first", r.first}, {"count", r.count}, {"kind", std::string(page_kind_name(r.kind))}});
      if (i < 6) {
        rs += (i ? " " : "") + std::to_string(r.first) +
              (r.count > 1 ? ".." + std::to_string(r.first + r.count - 1) : "") + ":" +
              std::string(page_kind_name(r.kind));
      }
    }
    if (ranges.size() > 6) rs += " (+" + std::to_string(ranges.size() - 6) + " ranges)";
    j = {{"records", recs_.size()},
         {"data_pages", data},
         {"zero_pages", zero_pages},
         {"zero_runs", zero_runs},
         {"nonce_min", nmin},
         {"nonce_max", nmax},
         {"ranges", jr}};
    if (o_.records) j["pages"] = std::move(recs);
    d = "records=" + std::to_string(recs_.size()) + " data=" + std::to_string(data) +
        " zero=" + std::to_string(zero_pages) + " (" + std::to_string(zero_runs) +
        " runs) nonces=" + std::to_string(nmin) + ".." + std::to_string(nmax) + " pages " + rs;
  }

  json summary_json() const {
    return {{"frames", s_.frames},
            {"bytes", s_.bytes},
            {"by_type", s_.by_type},
            {"payload_bytes", s_.payload_bytes},
            {"urgent_batches", s_.urgent_batches},
            {"page_records", s_.page_records},
            {"data_pages", s_.data_pages},
            {"zero_pages", s_.zero_pages},
            {"zero_runs", s_.zero_runs},
            {"pages", s_.data_pages + s_.zero_pages},
            {"requested_pages", s_.requested_pages},
            {"duplicate_pages", s_.duplicate_pages}};
  }

  void print_summary() const {
    std::fprintf(o_.out, "summary: %llu frames, %llu bytes\n",
                 static_cast<unsigned long long>(s_.frames),
                 static_cast<unsigned long long>(s_.bytes));
    for (const auto& [name, n] : s_.by_type) {
      std::fprintf(o_.out, "  %-12s %8llu frames %12llu payload bytes\n", name.c_str(),
                   static_cast<unsigned long long>(n),
                   static_cast<unsigned long long>(s_.payload_bytes.at(name)));
    }
    if (s_.page_records || s_.requested_pages) {
      std::fprintf(o_.out,
                   "  pages: %llu (data %llu, zero %llu in %llu runs), %llu records, %llu urgent "
                   "batches, %llu requested, %llu duplicates%s%s\n",
                   static_cast<unsigned long long>(s_.data_pages + s_.zero_pages),
                   static_cast<unsigned long long>(s_.data_pages),
                   static_cast<unsigned long long>(s_.zero_pages),
                   static_cast<unsigned long long>(s_.zero_runs),
                   static_cast<unsigned long long>(s_.page_records),
                   static_cast<unsigned long long>(s_.urgent_batches),
                   static_cast<unsigned long long>(s_.requested_pages),
                   static_cast<unsigned long long>(s_.duplicate_pages),
                   s_.duplicate_pages ? ": first " : "", s_.first_duplicate.c_str());
    }
  }

  const InspectOptions& o_;
  std::optional<CaptureHeader> capture_;
  Summary s_;
  json frames_ = json::array();
  std::vector<PageRecord> recs_;
  std::string record_lines_;
};

}  // namespace

int inspect_capture(const std::string& path, const InspectOptions& opts) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) {
    std::fprintf(opts.err, "constmig inspect: cannot open %s: %s\n", path.c_str(),
                 std::strerror(errno));
    return 2;
  }
  std::vector<uint8_t> chunk(kReadChunk);
  Inspector ins(opts);
  FrameReader reader;
  uint64_t stream_base = 0;  // file offset of stream byte 0 (16 with a capture header)
  bool started = false;
  std::optional<std::pair<uint64_t, std::string>> error;
  uint64_t file_bytes = 0;
  std::vector<uint8_t> head;  // the first bytes, until we know whether there is a capture header

  auto pump = [&](ByteView data) -> bool {
    reader.feed(data);
    for (;;) {
      Frame fr;
      auto r = reader.next(fr);
      if (!r.ok()) {
        error = std::make_pair(reader.offset(), r.error().message);
        return false;
      }
      if (!*r) return true;
      if (auto bad = ins.frame(fr.offset, fr)) {
        error = std::make_pair(fr.offset, *bad);
        return false;
      }
    }
  };

  bool io_error = false;
  for (;;) {
    size_t n = std::fread(chunk.data(), 1, chunk.size(), f);
    if (n == 0) {
      io_error = std::ferror(f) != 0;
      break;
    }
    file_bytes += n;
    ByteView data(chunk.data(), n);
    if (!started) {
      head.insert(head.end(), data.begin(), data.end());
      if (head.size() < kCaptureHeaderSize) continue;
      auto cap = decode_capture_header(head);
      if (!cap.ok()) {
        error = std::make_pair(uint64_t{0}, cap.error().message);
        break;
      }
      started = true;
      ins.capture(*cap);
      stream_base = cap->has_value() ? kCaptureHeaderSize : 0;
      reader.set_start_offset(stream_base);  // offsets below are file offsets
      std::vector<uint8_t> rest(head.begin() + static_cast<std::ptrdiff_t>(stream_base),
                                head.end());
      head.clear();
      if (!pump(rest)) break;
      continue;
    }
    if (!pump(data)) break;
  }
  if (io_error) {
    std::fprintf(opts.err, "constmig inspect: read error on %s: %s\n", path.c_str(),
                 std::strerror(errno));
    std::fclose(f);
    return 2;
  }
  std::fclose(f);
  if (!started && !error) {
    // A file shorter than a capture header.
    auto cap = decode_capture_header(head);
    if (!cap.ok()) {
      error = std::make_pair(uint64_t{0}, cap.error().message);
    } else {
      started = true;
      ins.capture(*cap);
      stream_base = cap->has_value() ? kCaptureHeaderSize : 0;
      reader.set_start_offset(stream_base);
      std::vector<uint8_t> rest(head.begin() + static_cast<std::ptrdiff_t>(stream_base),
                                head.end());
      pump(rest);
    }
  }
  if (!error) {
    Status st = reader.finish();
    if (!st.ok()) error = std::make_pair(reader.offset(), st.error().message);
  }
  if (!error && file_bytes == stream_base) {
    error = std::make_pair(stream_base, std::string("empty stream: no frames"));
  }
  return ins.finish(error, 0);
}

}  // namespace constmig::tools

int constmig_inspect_main(const std::string& path, bool json, std::FILE* out, std::FILE* err) {
  constmig::tools::InspectOptions o;
  o.json = json;
  o.out = out;
  o.err = err;
  return constmig::tools::inspect_capture(path, o);
}

#ifdef CONSTMIG_INSPECT_STANDALONE
int main(int argc, char** argv) {
  constmig::tools::InspectOptions o;
  std::string path;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--json") {
      o.json = true;
    } else if (a == "--records") {
      o.records = true;
    } else if (a == "-h" || a == "--help") {
      std::printf(
          "usage: constmig-inspect [--json] [--records] FILE\n"
          "Decodes a captured constmig migration stream (one direction, optionally after a\n"
          "16-byte CMGCAP01 capture header; docs/format.md) frame by frame and prints a\n"
          "summary. Shows framing only, never ciphertext.\n"
          "  --json     one JSON document (frames, summary, error)\n"
          "  --records  list every PAGES record\n"
          "exit: 0 ok, 1 bad or truncated stream (the error names the offset), 2 unreadable\n");
      return 0;
    } else if (!a.empty() && a[0] == '-') {
      std::fprintf(stderr, "constmig-inspect: unknown option %s (try --help)\n", a.c_str());
      return 2;
    } else if (path.empty()) {
      path = a;
    } else {
      std::fprintf(stderr, "constmig-inspect: one FILE expected (try --help)\n");
      return 2;
    }
  }
  if (path.empty()) {
    std::fprintf(stderr, "constmig-inspect: missing FILE (try --help)\n");
    return 2;
  }
  return constmig::tools::inspect_capture(path, o);
}
#endif
