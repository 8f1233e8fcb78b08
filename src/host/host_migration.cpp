// Migration Manager (UNTRUSTED). See host_migration.h.
#include "host/host_migration.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <fstream>
#include <mutex>
#include <thread>

namespace constmig::host {
namespace {

namespace abi = constmig::abi;
using Clock = std::chrono::steady_clock;
using wire::FrameType;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// ---- channel ----------------------------------------------------------------------------------

struct OwnedFrame {
  wire::FrameHeader header;
  std::vector<uint8_t> payload;
};

class Channel {
 public:
  Channel(int fd, const std::string& capture, wire::Direction dir) : fd_(fd) {
    if (!capture.empty()) {
      cap_.open(capture, std::ios::binary | std::ios::trunc);
      auto h = wire::encode_capture_header(dir);
      cap_.write(reinterpret_cast<const char*>(h.data()), static_cast<std::streamsize>(h.size()));
    }
  }
  // Thread-safe. Builds the frame (header + payload), records it, writes it.
  Status send(FrameType type, ByteView payload, uint16_t flags = 0,
              std::vector<uint8_t>* frame_copy = nullptr) {
    std::lock_guard lk(send_mu_);
    buf_.clear();
    CM_TRY(enc_.append(type, flags, payload, buf_));
    if (frame_copy) *frame_copy = buf_;
    return write_locked(buf_);
  }
  // Raw bytes (fault injection: replays, forged headers, truncation). Does not touch seq.
  Status send_raw(ByteView bytes) {
    std::lock_guard lk(send_mu_);
    return write_locked(bytes);
  }
  // Build a frame with the next sequence number without sending it.
  Status build(FrameType type, ByteView payload, std::vector<uint8_t>& out) {
    std::lock_guard lk(send_mu_);
    out.clear();
    return enc_.append(type, 0, payload, out);
  }
  void shutdown_write() { ::shutdown(fd_, SHUT_WR); }
  // After our last frame: half-close and read until the peer closes (or `limit`), so that the
  // kernel does not answer the peer's unread data with a RST, which would destroy the frames
  // we just sent (an ABORT token!) before the peer reads them.
  void drain(std::chrono::milliseconds limit) {
    ::shutdown(fd_, SHUT_WR);
    auto deadline = Clock::now() + limit;
    char buf[65536];
    while (Clock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      ssize_t n = ::read(fd_, buf, sizeof buf);
      if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) return;
    }
  }

  Result<OwnedFrame> recv(std::chrono::milliseconds timeout) {
    auto deadline = Clock::now() + timeout;
    for (;;) {
      wire::Frame f;
      auto got = reader_.next(f);
      if (!got.ok()) return got.take_error();
      if (*got) {
        OwnedFrame o{f.header, std::vector<uint8_t>(f.payload.begin(), f.payload.end())};
        bytes_received_ += wire::kHeaderSize + o.payload.size();
        return o;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) {
        return make_error(Errc::kTimeout, "no data from the peer for " +
                                              std::to_string(timeout.count() / 1000) + " s");
      }
      pollfd p{fd_, POLLIN, 0};
      int pr = ::poll(&p, 1, static_cast<int>(std::min<long>(left.count(), 1000)));
      if (pr < 0 && errno != EINTR)
        return make_error(Errc::kIo, std::string("poll: ") + std::strerror(errno));
      if (pr <= 0) continue;
      size_t want = std::min<size_t>(reader_.wanted(), 1 << 20);
      rbuf_.resize(std::max<size_t>(want, 1));
      ssize_t n = ::read(fd_, rbuf_.data(), rbuf_.size());
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n < 0)
        return make_error(Errc::kIo, std::string("reading from peer: ") + std::strerror(errno));
      if (n == 0) {
        CM_TRY(reader_.finish());
        return make_error(Errc::kIo, "the peer closed the connection");
      }
      reader_.feed(ByteView(rbuf_.data(), static_cast<size_t>(n)));
    }
  }
  uint64_t bytes_sent() const { return bytes_sent_; }
  uint64_t bytes_received() const { return bytes_received_; }

 private:
  Status write_locked(ByteView b) {
    if (cap_.is_open())
      cap_.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
    size_t done = 0;
    while (done < b.size()) {
      ssize_t n = ::send(fd_, b.data() + done, b.size() - done, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0)
        return make_error(Errc::kIo, std::string("sending to peer: ") + std::strerror(errno));
      done += static_cast<size_t>(n);
    }
    bytes_sent_ += b.size();
    return ok_status();
  }
  int fd_;
  std::mutex send_mu_;
  wire::FrameEncoder enc_;
  wire::FrameReader reader_;
  std::vector<uint8_t> buf_, rbuf_;
  std::ofstream cap_;
  std::atomic<uint64_t> bytes_sent_{0};
  uint64_t bytes_received_ = 0;
};

// ---- enclave calls ---------------------------------------------------------------------------

Result<std::vector<uint8_t>> mcall(platform::Enclave& e, uint32_t id, ByteView in,
                                   size_t out_hint = 64 << 10) {
  return e.call(id, in, out_hint);
}

Result<OwnedFrame> expect(Channel& ch, FrameType type, std::chrono::milliseconds timeout) {
  for (;;) {
    CM_ASSIGN_OR_RETURN(OwnedFrame f, ch.recv(timeout));
    if (f.header.type == FrameType::kStats) continue;  // informational, handled by callers
    if (f.header.type == FrameType::kError) {
      auto e = wire::decode_error(f.payload);
      return make_error(Errc::kState, "peer reported: " + (e.ok() ? e->message : std::string("?")));
    }
    if (f.header.type != type) {
      return make_error(Errc::kFormat, "expected " + wire::frame_type_name(type) + ", got " +
                                           wire::frame_type_name(f.header.type));
    }
    return f;
  }
}

// Progress callback shared by the manager and its workers: one line at a time.
class Reporter {
 public:
  explicit Reporter(const ProgressFn& fn) : fn_(fn) {}
  void operator()(const std::string& phase, uint64_t total, uint64_t done) {
    std::lock_guard lk(mu_);
    if (fn_) fn_({{"phase", phase}, {"pages_total", total}, {"pages_done", done}});
  }

 private:
  const ProgressFn& fn_;
  std::mutex mu_;
};

// The JSON object of a STATS frame (an empty object if it is not valid JSON: STATS is
// informational and never trusted).
nlohmann::json stats_json(const OwnedFrame& f) {
  auto text = wire::decode_stats(f.payload);
  auto j = text.ok() ? nlohmann::json::parse(*text, nullptr, false) : nlohmann::json();
  return j.is_object() ? j : nlohmann::json::object();
}

void send_error(Channel& ch, const Error& e) {
  std::vector<uint8_t> p;
  wire::encode_error({static_cast<uint32_t>(e.code), e.message}, p);
  (void)ch.send(FrameType::kError, p);
}

// Handshake common to both roles. Returns the peer's HELLO.
Status handshake(platform::Enclave& e, const platform::Platform& plat, HostApp& app, Channel& ch,
                 wire::Role role, wire::Mode mode, std::chrono::milliseconds to) {
  std::vector<uint8_t> in;
  ByteWriter w(in);
  w.u8(static_cast<uint8_t>(role));
  w.u8(static_cast<uint8_t>(mode));
  w.str32(app.name());
  CM_ASSIGN_OR_RETURN(auto hello_out, mcall(e, abi::kEcallMigHello, in));
  ByteReader r(hello_out);
  uint32_t n = r.u32();
  ByteView hello_bytes = r.bytes(n);
  ByteView rd = r.bytes(64);
  if (!r.at_end()) return make_error(Errc::kInternal, "MigHello: malformed enclave output");
  CM_ASSIGN_OR_RETURN(wire::Hello hello, wire::decode_hello(hello_bytes));
  std::array<uint8_t, 64> report{};
  std::memcpy(report.data(), rd.data(), 64);
  CM_ASSIGN_OR_RETURN(platform::Quote q, e.quote(report));
  auto qb = platform::encode_quote(q);
  std::memcpy(hello.quote.data(), qb.data(), qb.size());
  std::vector<uint8_t> payload;
  CM_TRY(wire::encode_hello(hello, payload));
  CM_TRY(ch.send(FrameType::kHello, payload));
  CM_ASSIGN_OR_RETURN(OwnedFrame peer, expect(ch, FrameType::kHello, to));
  std::vector<uint8_t> pin;
  ByteWriter pw(pin);
  pw.u32(static_cast<uint32_t>(peer.payload.size()));
  pw.bytes(peer.payload);
  auto keys = plat.trust_store().raw_public_keys();
  pw.u32(static_cast<uint32_t>(keys.size()));
  for (auto& k : keys) pw.bytes(k);
  auto confirm = mcall(e, abi::kEcallMigPeer, pin);
  if (!confirm.ok()) {
    send_error(ch, confirm.error());
    return confirm.take_error();
  }
  wire::KeyConfirm kc;
  if (confirm->size() != kc.mac.size()) return make_error(Errc::kInternal, "bad key confirmation");
  std::memcpy(kc.mac.data(), confirm->data(), kc.mac.size());
  std::vector<uint8_t> kcp;
  wire::encode_key_confirm(kc, kcp);
  CM_TRY(ch.send(FrameType::kKeyConfirm, kcp));
  CM_ASSIGN_OR_RETURN(OwnedFrame pk, expect(ch, FrameType::kKeyConfirm, to));
  CM_ASSIGN_OR_RETURN(wire::KeyConfirm pkc, wire::decode_key_confirm(pk.payload));
  auto ok = mcall(e, abi::kEcallMigConfirm, pkc.mac);
  if (!ok.ok()) {
    send_error(ch, ok.error());
    return ok.take_error();
  }
  return ok_status();
}

void flip(MutableByteView v, size_t at) {
  if (at < v.size()) v[at] ^= 0x01;
}

}  // namespace

uint32_t auto_batch_pages(uint64_t heap_bytes, int workers) {
  // Frames in flight: source: one per worker; target: queue (2 x workers) + one per worker +
  // the reader's frame. Keep them all within 1% of the heap, between 16 and 1024 pages.
  uint64_t frames = 2 * static_cast<uint64_t>(std::max(1, workers)) +
                    3 * static_cast<uint64_t>(std::max(1, workers)) + 1;
  uint64_t pages = heap_bytes / 100 / (frames * wire::kDataRecordSize);
  return static_cast<uint32_t>(std::clamp<uint64_t>(pages, 16, wire::kMaxPagesPerBatch));
}

namespace {}  // namespace

Result<Fault> parse_fault(const std::string& n) {
  static const std::pair<const char*, Fault> kAll[] = {
      {"none", Fault::kNone},
      {"corrupt-ciphertext", Fault::kCorruptCiphertext},
      {"corrupt-tag", Fault::kCorruptTag},
      {"duplicate-page", Fault::kDuplicatePage},
      {"replay-frame", Fault::kReplayFrame},
      {"reorder-frames", Fault::kReorderFrames},
      {"drop-page", Fault::kDropPage},
      {"truncate", Fault::kTruncate},
      {"forge-manifest", Fault::kForgeManifest},
      {"oversize-length", Fault::kOversizeLength},
      {"earlier-migration", Fault::kEarlierMigration},
  };
  for (auto& [name, f] : kAll) {
    if (n == name) return f;
  }
  return make_error(Errc::kInvalidArgument,
                    "unknown fault '" + n + "' (known: " + fault_names() + ")");
}

std::string fault_names() {
  return "none, corrupt-ciphertext, corrupt-tag, duplicate-page, replay-frame, reorder-frames, "
         "drop-page, truncate, forge-manifest, oversize-length, earlier-migration";
}

// ---- source -------------------------------------------------------------------------------------

MigrationOutcome run_source(platform::Enclave& e, const platform::Platform& plat, HostApp& app,
                            int fd, const MigrateOptions& o, const ProgressFn& progress) {
  MigrationOutcome out;
  nlohmann::json& st = out.stats;
  st["mode"] = std::string(wire::mode_name(o.mode));
  st["role"] = "source";
  auto t_start = Clock::now();
  Channel ch(fd, o.capture_path, wire::Direction::kSourceToTarget);
  Reporter report(progress);
  auto failed = [&](const Error& err, bool frozen) {
    out.kind = MigrationOutcome::kFailed;
    out.error = err.message;
    st["status"] = "failed";
    st["error"] = err.message;
    st["source-frozen"] = frozen;
    return out;
  };

  report("setup", 0, 0);
  if (auto h = handshake(e, plat, app, ch, wire::Role::kSource, o.mode, o.io_timeout); !h.ok()) {
    (void)mcall(e, abi::kEcallMigReset, {});
    return failed(h.error(), false);
  }
  // Prepare (app still running): tell the target how much heap to populate, wait until it has.
  {
    auto hs = e.heap_stats();
    uint64_t top = hs.ok() ? hs->top : 0;
    std::string j = nlohmann::json{{"prepare-heap-top", top}}.dump();
    Status ps = ch.send(FrameType::kStats, as_bytes_view(j));
    while (ps.ok()) {
      auto f = ch.recv(o.io_timeout);
      if (!f.ok()) {
        ps = f.take_error();
        break;
      }
      if (f->header.type == FrameType::kError) {
        auto er = wire::decode_error(f->payload);
        ps = make_error(Errc::kState,
                        "target reported: " + (er.ok() ? er->message : std::string("?")));
        break;
      }
      if (f->header.type != FrameType::kStats) {
        ps = make_error(Errc::kFormat, "expected the target's STATS (ready), got " +
                                           wire::frame_type_name(f->header.type));
        break;
      }
      if (stats_json(*f).value("ready", false)) break;
    }
    if (!ps.ok()) {
      (void)mcall(e, abi::kEcallMigReset, {});
      return failed(ps.error(), false);
    }
  }
  st["setup-time"] = ms_since(t_start);

  // ---- stop phase: downtime starts at the first held ECALL.
  auto t_stop = Clock::now();
  if (auto h = e.hold_app_ecalls(o.quiesce_timeout); !h.ok()) {
    e.release_app_ecalls();
    (void)mcall(e, abi::kEcallMigReset, {});
    send_error(ch, h.error());
    return failed(h.error(), false);
  }
  uint64_t hold_ns = e.hold_started_ns();
  st["quiesce-time"] = ms_since(t_stop);
  auto freeze = mcall(e, abi::kEcallMigFreeze, {}, 1 << 20);
  if (!freeze.ok()) {
    e.release_app_ecalls();
    (void)mcall(e, abi::kEcallMigReset, {});
    send_error(ch, freeze.error());
    return failed(freeze.error(), false);
  }
  ByteReader fr(*freeze);
  uint64_t pages = fr.u64(), heap_top = fr.u64();
  ByteView small = ByteView(*freeze).subspan(16);
  st["heap-bytes"] = heap_top;
  nlohmann::json src_info = {{"hold-ns", hold_ns}, {"pages", pages}, {"heap-top", heap_top}};
  std::string src_json = src_info.dump();
  Status s = ch.send(FrameType::kStats, as_bytes_view(src_json));
  if (s.ok()) s = ch.send(FrameType::kSmallState, small);
  uint64_t downtime_bytes = 0;
  if (s.ok()) {
    auto hs = app.save_state();
    if (!hs.ok()) {
      s = hs.take_error();
    } else {
      auto sealed = mcall(e, abi::kEcallMigSealHostState, *hs, hs->size() + 256);
      if (!sealed.ok())
        s = sealed.take_error();
      else
        s = ch.send(FrameType::kHostState, *sealed);
    }
  }
  st["freeze-time"] = ms_since(t_stop);

  // ---- heap stream: workers encrypt batches inside the enclave and send them.
  std::atomic<uint64_t> cursor{0}, pushed{0}, zero_pages{0}, batches{0};
  std::mutex err_mu;
  std::optional<Error> worker_err;
  std::vector<uint8_t> first_frame;  // for replay/duplicate faults
  std::mutex fault_mu;
  std::vector<std::vector<uint8_t>> held_back;  // reorder fault
  std::vector<uint8_t> earlier;
  if (o.fault == Fault::kEarlierMigration) {
    // A PAGES payload from an earlier migration's capture (its first PAGES frame).
    std::ifstream in(o.replay_capture, std::ios::binary);
    std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), {});
    wire::FrameReader rd(0, true);
    size_t skip = bytes.size() >= wire::kCaptureHeaderSize ? wire::kCaptureHeaderSize : 0;
    rd.feed(ByteView(bytes).subspan(skip));
    wire::Frame f;
    while (true) {
      auto g = rd.next(f);
      if (!g.ok() || !*g) break;
      if (f.header.type == FrameType::kPages) {
        earlier.assign(f.payload.begin(), f.payload.end());
        break;
      }
    }
    if (earlier.empty())
      s = make_error(Errc::kInvalidArgument, "no PAGES frame in " + o.replay_capture);
  }
  auto t_pages = Clock::now();
  // Buffers: each source worker holds one frame (its output buffer); each frame is at most
  // batch_pages DATA records. batch_pages defaults so that source and target buffers together
  // stay within 1% of the heap (see auto_batch_pages).
  const uint32_t batch = o.batch_pages ? o.batch_pages : auto_batch_pages(heap_top, o.workers);
  st["batch-pages"] = batch;
  st["buffer-bytes"] = static_cast<uint64_t>(std::max(1, o.workers)) *
                       (wire::kPagesHeaderSize + batch * wire::kDataRecordSize);
  auto worker = [&]() {
    std::vector<uint8_t> buf(wire::kPagesHeaderSize + batch * wire::kDataRecordSize + 64);
    std::vector<uint8_t> in;
    while (true) {
      {
        std::lock_guard lk(err_mu);
        if (worker_err) return;
      }
      uint64_t first = cursor.fetch_add(batch);
      if (first >= pages) return;
      uint32_t count = static_cast<uint32_t>(std::min<uint64_t>(batch, pages - first));
      in.clear();
      ByteWriter w(in);
      w.u64(first);
      w.u32(count);
      auto n = e.ecall(abi::kEcallMigExportPages, in, buf);
      Status ws = n.ok() ? ok_status() : Status(n.take_error());
      uint64_t b = batches.fetch_add(1);
      if (ws.ok()) {
        MutableByteView payload(buf.data(), *n);
        // Count kinds for stats.
        std::vector<wire::PageRecord> recs;
        if (wire::decode_pages(payload, recs).ok()) {
          for (auto& r : recs) {
            if (r.kind == wire::PageKind::kZero) zero_pages += r.run;
          }
        }
        std::lock_guard fl(fault_mu);
        if (b == 0 && o.fault == Fault::kCorruptCiphertext) flip(payload, 8 + 8 + 1 + 8 + 100);
        if (b == 0 && o.fault == Fault::kCorruptTag) flip(payload, 8 + 8 + 1 + 8 + 4096 + 3);
        if (b == 0 && o.fault == Fault::kDropPage) {
          pushed += count;
          continue;
        }
        if (o.fault == Fault::kReorderFrames && b < 2) {
          // Build both frames with consecutive seq numbers, send the second first.
          std::vector<uint8_t> frame;
          ws = ch.build(FrameType::kPages, payload, frame);
          held_back.push_back(std::move(frame));
          if (held_back.size() == 2) {
            ws = ch.send_raw(held_back[1]);
            if (ws.ok()) ws = ch.send_raw(held_back[0]);
          }
        } else {
          ws = ch.send(FrameType::kPages, payload, 0, b == 0 ? &first_frame : nullptr);
          if (ws.ok() && b == 0 && o.fault == Fault::kDuplicatePage) {
            ws = ch.send(FrameType::kPages, payload);
          }
          if (ws.ok() && b == 0 && o.fault == Fault::kReplayFrame) ws = ch.send_raw(first_frame);
          if (ws.ok() && b == 0 && o.fault == Fault::kEarlierMigration) {
            ws = ch.send(FrameType::kPages, earlier);
          }
          if (ws.ok() && b == 0 && o.fault == Fault::kOversizeLength) {
            std::array<uint8_t, wire::kHeaderSize> h{};
            wire::FrameHeader fh;
            fh.type = FrameType::kPages;
            fh.payload_len = 1u << 30;
            fh.seq = 1ull << 40;
            wire::encode_header(fh, h);
            ws = ch.send_raw(h);
          }
          if (ws.ok() && b == 0 && o.fault == Fault::kTruncate) {
            std::vector<uint8_t> frame;
            ws = ch.build(FrameType::kPages, payload, frame);
            if (ws.ok()) ws = ch.send_raw(ByteView(frame).subspan(0, frame.size() / 2));
            ch.shutdown_write();
            ws = make_error(Errc::kIo, "stream truncated (fault injection)");
          }
        }
      }
      if (!ws.ok()) {
        std::lock_guard lk(err_mu);
        if (!worker_err) worker_err = ws.take_error();
        return;
      }
      uint64_t done = pushed.fetch_add(count) + count;
      if (b % 64 == 0) report("heap-stream", pages, done);
    }
  };
  if (s.ok()) {
    std::vector<std::thread> ts;
    for (int i = 0; i < std::max(1, o.workers); ++i) ts.emplace_back(worker);
    for (auto& t : ts) t.join();
    if (worker_err) s = *worker_err;
  }
  st["pages-time"] = ms_since(t_pages);
  st["pages-pushed"] = pushed.load();
  st["zero-pages"] = zero_pages.load();

  if (s.ok()) {
    auto man = mcall(e, abi::kEcallMigManifest, {});
    if (!man.ok()) {
      s = man.take_error();
    } else {
      std::vector<uint8_t> m = std::move(*man);
      if (o.fault == Fault::kForgeManifest) flip(m, m.size() - 20);
      s = ch.send(FrameType::kManifest, m);
    }
  }
  downtime_bytes = ch.bytes_sent();
  report("commit", pages, pushed.load());

  // ---- verdict from the target: COMMIT (we die), ABORT (we resume), or nothing (we stay frozen).
  nlohmann::json target_stats = nlohmann::json::object();
  std::optional<OwnedFrame> verdict;
  Error verdict_err{Errc::kIo, "no verdict from the target"};
  for (;;) {
    auto f = ch.recv(o.io_timeout);
    if (!f.ok()) {
      verdict_err = f.take_error();
      break;
    }
    if (f->header.type == FrameType::kStats) {
      target_stats = stats_json(*f);
      continue;
    }
    if (f->header.type == FrameType::kError) {
      auto er = wire::decode_error(f->payload);
      verdict_err = make_error(Errc::kState,
                               "target reported: " + (er.ok() ? er->message : std::string("?")));
      continue;  // an ABORT usually follows
    }
    if (f->header.type == FrameType::kCommit || f->header.type == FrameType::kAbort) {
      verdict = std::move(f).value();
      break;
    }
  }
  st["transferred"] = ch.bytes_sent();
  st["precopy-bytes"] = 0;
  st["downtime-bytes"] = downtime_bytes;
  st["postcopy-bytes"] = 0;
  st["postcopy-requests"] = 0;
  if (!target_stats.empty()) st["target"] = target_stats;

  if (verdict && verdict->header.type == FrameType::kCommit) {
    auto c = mcall(e, abi::kEcallMigCommit, verdict->payload);
    if (!c.ok())
      return failed(make_error(Errc::kSecurity, "commit token rejected: " + c.error().message),
                    true);
    out.kind = MigrationOutcome::kCommitted;
    st["status"] = "completed";
    st["total-time"] = ms_since(t_start);
    if (uint64_t fs = target_stats.value("first-served-ns", 0ull); fs != 0) {
      st["downtime"] = fs > hold_ns ? static_cast<double>(fs - hold_ns) / 1e6 : 0.0;
    }
    if (target_stats.contains("population-time"))
      st["population-time"] = target_stats["population-time"];
    // Held ECALLs go in now and are refused by the DEAD enclave (clients see an error and
    // reconnect to the target) instead of waiting forever.
    e.release_app_ecalls();
    double secs = st["pages-time"].get<double>() / 1000.0;
    if (secs > 0) st["throughput-mbps"] = static_cast<double>(heap_top) / (1 << 20) / secs;
    app.stop();
    report("completed", pages, pushed.load());
    return out;
  }
  if (verdict && verdict->header.type == FrameType::kAbort) {
    auto a = mcall(e, abi::kEcallMigAbort, verdict->payload);
    if (a.ok()) {
      e.release_app_ecalls();
      out.kind = MigrationOutcome::kAborted;
      out.error = s.ok() ? verdict_err.message : s.error().message;
      st["status"] = "aborted";
      st["error"] = out.error;
      st["total-time"] = ms_since(t_start);
      report("aborted", pages, pushed.load());
      return out;
    }
    return failed(make_error(Errc::kSecurity, "abort token rejected: " + a.error().message), true);
  }
  return failed(s.ok() ? verdict_err : s.error(), true);
}

// ---- target -------------------------------------------------------------------------------------

MigrationOutcome run_target(platform::Enclave& e, const platform::Platform& plat, HostApp& app,
                            int fd, const MigrateOptions& o, const ProgressFn& progress) {
  MigrationOutcome out;
  nlohmann::json& st = out.stats;
  st["mode"] = std::string(wire::mode_name(o.mode));
  st["role"] = "target";
  auto t_start = Clock::now();
  Channel ch(fd, o.capture_path, wire::Direction::kTargetToSource);
  Reporter report(progress);

  // Any failure: the enclave refuses to run; give the source an abort token if we can.
  auto refuse = [&](const Error& err) {
    auto tok = mcall(e, abi::kEcallMigMakeAbort, {});
    send_error(ch, err);
    if (tok.ok()) (void)ch.send(FrameType::kAbort, *tok);
    ch.drain(std::chrono::seconds(10));
    out.kind = MigrationOutcome::kFailed;
    out.error = err.message;
    st["status"] = "failed";
    st["error"] = err.message;
    return out;
  };

  if (auto h = handshake(e, plat, app, ch, wire::Role::kTarget, o.mode, o.io_timeout); !h.ok()) {
    out.error = h.error().message;
    st["status"] = "failed";
    st["error"] = out.error;
    return out;
  }
  // Prepare: populate the heap the source announced (first touch of secret memory is the slow
  // EAUG analogue), in parallel, before the source stops. Then say ready.
  {
    auto f = ch.recv(o.io_timeout);
    if (!f.ok()) return refuse(f.error());
    if (f->header.type != FrameType::kStats) {
      return refuse(make_error(Errc::kFormat, "expected the source's STATS (prepare), got " +
                                                  wire::frame_type_name(f->header.type)));
    }
    uint64_t top = stats_json(*f).value("prepare-heap-top", 0ull);
    auto t_pre = Clock::now();
    uint64_t pages_to_touch = std::min<uint64_t>(top / abi::kPageSize + (top / abi::kPageSize) / 8,
                                                 e.ranges().heap_reserve / abi::kPageSize);
    auto hs = e.heap_stats();
    if (hs.ok()) pages_to_touch = std::min<uint64_t>(pages_to_touch, hs->limit / abi::kPageSize);
    std::atomic<uint64_t> next{0};
    std::vector<std::thread> ts;
    for (int i = 0; i < std::max(1, o.workers); ++i) {
      ts.emplace_back([&] {
        constexpr uint64_t kChunk = 4096;  // pages
        for (;;) {
          uint64_t first = next.fetch_add(kChunk);
          if (first >= pages_to_touch) return;
          std::vector<uint8_t> in;
          ByteWriter w(in);
          w.u64(first);
          w.u64(std::min(kChunk, pages_to_touch - first));
          (void)e.call(abi::kEcallPrefault, in, 64);
        }
      });
    }
    for (auto& t : ts) t.join();
    st["prefault-time"] = ms_since(t_pre);
    st["prefault-bytes"] = pages_to_touch * abi::kPageSize;
    std::string j = nlohmann::json{{"ready", true}}.dump();
    if (auto s2 = ch.send(FrameType::kStats, as_bytes_view(j)); !s2.ok()) return refuse(s2.error());
  }
  st["setup-time"] = ms_since(t_start);
  report("waiting for the stop phase", 0, 0);

  uint64_t hold_ns = 0, pages = 0;
  // Small state (after the source's STATS).
  for (;;) {
    auto f = ch.recv(o.io_timeout);
    if (!f.ok()) return refuse(f.error());
    if (f->header.type == FrameType::kStats) {
      hold_ns = stats_json(*f).value("hold-ns", hold_ns);
      continue;
    }
    if (f->header.type != FrameType::kSmallState) {
      return refuse(make_error(
          Errc::kFormat, "expected SMALL_STATE, got " + wire::frame_type_name(f->header.type)));
    }
    auto r = mcall(e, abi::kEcallMigImportSmall, f->payload);
    if (!r.ok()) return refuse(r.error());
    ByteReader rr(*r);
    pages = rr.u64();
    st["heap-bytes"] = rr.u64();
    break;
  }
  auto t_stream = Clock::now();
  // Host state, pages, manifest. PAGES go to decrypt workers through a bounded queue.
  std::mutex qmu;
  std::condition_variable qcv;
  std::deque<std::vector<uint8_t>> queue;
  bool closing = false;
  std::optional<Error> werr;
  std::atomic<uint64_t> installed{0};
  const size_t qcap = static_cast<size_t>(std::max(2, 2 * o.workers));
  auto worker = [&] {
    for (;;) {
      std::vector<uint8_t> p;
      {
        std::unique_lock lk(qmu);
        qcv.wait(lk, [&] { return !queue.empty() || closing; });
        if (queue.empty()) return;
        p = std::move(queue.front());
        queue.pop_front();
      }
      qcv.notify_all();
      auto r = mcall(e, abi::kEcallMigImportPages, p, 64);
      if (!r.ok()) {
        std::lock_guard lk(qmu);
        if (!werr) werr = r.take_error();
        closing = true;
        qcv.notify_all();
        return;
      }
      ByteReader rr(*r);
      uint64_t done = installed.fetch_add(rr.u32());
      (void)done;
    }
  };
  std::vector<std::thread> ts;
  for (int i = 0; i < std::max(1, o.workers); ++i) ts.emplace_back(worker);
  auto stop_workers = [&] {
    {
      std::lock_guard lk(qmu);
      closing = true;
    }
    qcv.notify_all();
    for (auto& t : ts)
      if (t.joinable()) t.join();
  };
  std::optional<OwnedFrame> manifest;
  Status s;
  uint64_t frames = 0;
  while (s.ok()) {
    auto f = ch.recv(o.io_timeout);
    if (!f.ok()) {
      s = f.take_error();
      break;
    }
    {
      std::lock_guard lk(qmu);
      if (werr) break;
    }
    FrameType t = f->header.type;
    if (t == FrameType::kHostState) {
      auto r = mcall(e, abi::kEcallMigOpenHostState, f->payload, f->payload.size() + 64);
      if (!r.ok())
        s = r.take_error();
      else
        s = app.restore_state(*r);
    } else if (t == FrameType::kPages) {
      std::unique_lock lk(qmu);
      qcv.wait(lk, [&] { return queue.size() < qcap || closing; });
      if (closing) break;
      queue.push_back(std::move(f->payload));
      lk.unlock();
      qcv.notify_all();
      if (++frames % 64 == 0) report("heap-stream", pages, installed.load());
    } else if (t == FrameType::kManifest) {
      manifest = std::move(f).value();
      break;
    } else if (t == FrameType::kStats) {
      continue;
    } else if (t == FrameType::kError) {
      auto er = wire::decode_error(f->payload);
      s = make_error(Errc::kState,
                     "source reported: " + (er.ok() ? er->message : std::string("?")));
    } else {
      s = make_error(Errc::kFormat,
                     "unexpected " + wire::frame_type_name(t) + " during the heap stream");
    }
  }
  stop_workers();
  if (werr) s = *werr;
  if (!s.ok()) return refuse(s.error());
  if (!manifest) return refuse(make_error(Errc::kFormat, "stream ended without a manifest"));
  auto commit = mcall(e, abi::kEcallMigFinish, manifest->payload);
  if (!commit.ok()) return refuse(commit.error());
  st["population-time"] = ms_since(t_stream);
  st["pages-installed"] = installed.load();

  // Resume: release app ECALLs (the host half was resumed by the caller and waits at the
  // gate) and serve the first ECALL: downtime ends.
  e.release_app_ecalls();
  Status rs = app.probe(e);
  uint64_t first_served = e.first_served_after_release_ns();
  if (!rs.ok()) st["resume-error"] = rs.error().message;
  st["first-served-ns"] = first_served;
  if (hold_ns && first_served > hold_ns)
    st["downtime"] = static_cast<double>(first_served - hold_ns) / 1e6;
  st["total-time"] = ms_since(t_start);
  st["status"] = "completed";
  std::string js = st.dump();
  (void)ch.send(FrameType::kStats, as_bytes_view(js));
  Status cs = ch.send(FrameType::kCommit, *commit);
  if (!cs.ok()) st["commit-send-error"] = cs.error().message;  // source stays frozen, never resumes
  out.kind = MigrationOutcome::kCommitted;
  report("completed", pages, installed.load());
  return out;
}

}  // namespace constmig::host
