// Migration Manager (UNTRUSTED). See host_migration.h.
#include "host/host_migration.h"

#include "host/host_control.h"
#include "platform/host_fault_tracker.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <fstream>
#include <mutex>
#include <random>
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

struct FdCloser {
  int fd = -1;
  FdCloser() = default;
  FdCloser(const FdCloser&) = delete;
  FdCloser& operator=(const FdCloser&) = delete;
  ~FdCloser() {
    if (fd >= 0) ::close(fd);
  }
};

// A send that cannot progress for `t` fails (EAGAIN) instead of blocking forever on a
// connection that went silent: the migration then notices the lost link (and may recover).
void set_send_timeout(int fd, std::chrono::milliseconds t) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(t.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((t.count() % 1000) * 1000);
  (void)::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

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
    wait_for_urgent();
    std::lock_guard lk(send_mu_);
    buf_.clear();
    CM_TRY(enc_.append(type, flags, payload, buf_));
    if (frame_copy) *frame_copy = buf_;
    return write_locked(buf_);
  }
  // Live mode: urgent frames (answers to page requests, the requests themselves) go before any
  // ordinary frame that has not started yet: ordinary senders wait while one is pending.
  Status send_urgent(FrameType type, ByteView payload, uint16_t flags = 0) {
    {
      std::lock_guard lk(prio_mu_);
      ++urgent_waiting_;
    }
    Status s;
    {
      std::lock_guard lk(send_mu_);
      std::vector<uint8_t> frame;
      s = enc_.append(type, flags, payload, frame);
      if (s.ok()) s = write_locked(frame);
    }
    {
      std::lock_guard lk(prio_mu_);
      --urgent_waiting_;
    }
    prio_cv_.notify_all();
    return s;
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
  // The link is lost: wakes every thread blocked on this connection (their calls fail).
  void shutdown_all() { ::shutdown(fd_, SHUT_RDWR); }
  // Wakes a thread blocked in recv() (it sees the connection end); sending still works.
  void shutdown_read() { ::shutdown(fd_, SHUT_RD); }
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
  void wait_for_urgent() {
    std::unique_lock lk(prio_mu_);
    prio_cv_.wait(lk, [&] { return urgent_waiting_ == 0; });
  }
  int fd_;
  std::mutex prio_mu_;
  std::condition_variable prio_cv_;
  int urgent_waiting_ = 0;
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

// Handshake common to both roles. The source sends its HELLO first; the target reads it first
// and runs the mode the source asked for (`mode` is set to it; the enclaves check both agree).
Status handshake(platform::Enclave& e, const platform::Platform& plat, HostApp& app, Channel& ch,
                 wire::Role role, wire::Mode& mode, std::chrono::milliseconds to) {
  std::optional<OwnedFrame> early_peer;
  if (role == wire::Role::kTarget) {
    CM_ASSIGN_OR_RETURN(OwnedFrame f, expect(ch, FrameType::kHello, to));
    CM_ASSIGN_OR_RETURN(wire::Hello ph, wire::decode_hello(f.payload));
    mode = ph.mode;
    early_peer = std::move(f);
  }
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
  if (!early_peer) {
    CM_ASSIGN_OR_RETURN(OwnedFrame f, expect(ch, FrameType::kHello, to));
    early_peer = std::move(f);
  }
  OwnedFrame& peer = *early_peer;
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

// Source, live mode: opens the urgent connection the target offered with `token`.
Status open_urgent(const MigrateOptions& o, const std::string& token, const std::string& capture,
                   FdCloser& fd, std::unique_ptr<Channel>& uch) {
  if (o.urgent_to.empty()) {
    return make_error(Errc::kInvalidArgument,
                      "the target asked for an urgent connection but no address was given "
                      "for it (MigrateOptions::urgent_to)");
  }
  auto c = tcp_connect(o.urgent_to, 10000);
  if (!c.ok())
    return make_error(Errc::kIo, "cannot open the urgent connection: " + c.error().message);
  uch.reset();
  if (fd.fd >= 0) ::close(fd.fd);
  fd.fd = *c;
  set_send_timeout(*c, o.io_timeout);
  uch = std::make_unique<Channel>(*c, capture.empty() ? std::string() : capture + ".urgent",
                                  wire::Direction::kSourceToTarget);
  std::string uj = nlohmann::json{{"urgent-channel", token}}.dump(
      -1, ' ', false, nlohmann::json::error_handler_t::replace);
  return uch->send(FrameType::kStats, as_bytes_view(uj));
}

// Source, live mode, on a new connection after the old one was lost: RESUME exchange (both
// enclaves move to the next epoch's keys), the target's page bitmap, a new urgent connection.
// Returns the number of pages the source must send again (claimed but never arrived).
Result<uint64_t> resume_handshake(platform::Enclave& e, const MigrateOptions& o, Channel& ch,
                                  const std::string& capture, FdCloser& urgent_fd,
                                  std::unique_ptr<Channel>& uch) {
  CM_ASSIGN_OR_RETURN(auto hello, e.call(abi::kEcallMigResumeHello, {}, 1024));
  CM_TRY(ch.send(FrameType::kResume, hello));
  std::string token;
  std::optional<OwnedFrame> resume, state;
  while (!state) {
    CM_ASSIGN_OR_RETURN(OwnedFrame f, ch.recv(o.io_timeout));
    FrameType t = f.header.type;
    if (t == FrameType::kStats) {
      token = stats_json(f).value("urgent-token", token);
    } else if (t == FrameType::kError) {
      auto er = wire::decode_error(f.payload);
      return make_error(Errc::kState, "the target refused the recovery: " +
                                          (er.ok() ? er->message : std::string("?")));
    } else if (t == FrameType::kResume && !resume) {
      resume = std::move(f);
    } else if (t == FrameType::kResumeState && resume) {
      state = std::move(f);
    } else {
      return make_error(Errc::kFormat, "recovery: unexpected " + wire::frame_type_name(t));
    }
  }
  std::vector<uint8_t> in;
  ByteWriter w(in);
  w.u32(static_cast<uint32_t>(resume->payload.size()));
  w.bytes(resume->payload);
  w.bytes(state->payload);
  CM_ASSIGN_OR_RETURN(auto out, e.call(abi::kEcallMigResumeConfirm, in, 64));
  ByteReader r(out);
  uint64_t resend = r.u64();
  if (!r.at_end()) return make_error(Errc::kInternal, "MigResumeConfirm: malformed output");
  if (!token.empty()) {
    CM_TRY(open_urgent(o, token, capture, urgent_fd, uch));
  } else {
    uch.reset();
    if (urgent_fd.fd >= 0) ::close(urgent_fd.fd);
    urgent_fd.fd = -1;
  }
  return resend;
}

// Source, live mode, after a lost connection: connect to the target again (backoff 0.1..2 s,
// for at most o.resume_timeout) and run the RESUME exchange. On success `main` (and `uch`) are
// the new connections. Returns the pages to send again.
Result<uint64_t> reconnect_source(platform::Enclave& e, const MigrateOptions& o, int epoch,
                                  FdCloser& main_fd, std::unique_ptr<Channel>& main,
                                  FdCloser& urgent_fd, std::unique_ptr<Channel>& uch) {
  auto deadline = Clock::now() + o.resume_timeout;
  auto backoff = std::chrono::milliseconds(100);
  std::string last = "no attempt";
  while (Clock::now() < deadline) {
    auto c = tcp_connect(o.urgent_to, 3000);
    if (c.ok()) {
      FdCloser fd;
      fd.fd = *c;
      set_send_timeout(*c, o.io_timeout);
      std::string cap =
          o.capture_path.empty() ? std::string() : o.capture_path + ".e" + std::to_string(epoch);
      auto nch = std::make_unique<Channel>(*c, cap, wire::Direction::kSourceToTarget);
      auto r = resume_handshake(e, o, *nch, cap, urgent_fd, uch);
      if (r.ok()) {
        main.reset();
        if (main_fd.fd >= 0) ::close(main_fd.fd);
        main_fd.fd = fd.fd;
        fd.fd = -1;
        main = std::move(nch);
        return *r;
      }
      last = r.error().message;
    } else {
      last = c.error().message;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) break;
    std::this_thread::sleep_for(std::min(backoff, left));
    backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
  }
  return make_error(Errc::kTimeout, "last attempt: " + last);
}

// Live mode: the heap stream is background work. Its threads run at a lower priority (nice +10,
// this thread only) so that, where cores are scarce, the app's threads and the urgent path
// (page requests and their answers) get the CPU first.
void background_priority() {
  (void)::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), 10);
}

// One MigExportPages call: the PAGES payload (in `buf`) of the pages of [first, first + count)
// the enclave had not sent yet (empty: all of them had been), and how many pages it carries.
struct Exported {
  MutableByteView payload;
  uint64_t pages = 0, zero_pages = 0;
};
Result<Exported> export_pages(platform::Enclave& e, uint64_t first, uint32_t count,
                              std::vector<uint8_t>& buf) {
  std::vector<uint8_t> in;
  ByteWriter w(in);
  w.u64(first);
  w.u32(count);
  CM_ASSIGN_OR_RETURN(size_t n, e.ecall(abi::kEcallMigExportPages, in, buf));
  Exported x;
  x.payload = MutableByteView(buf.data(), n);
  std::vector<wire::PageRecord> recs;
  if (n > 0 && wire::decode_pages(x.payload, recs).ok()) {
    for (auto& r : recs) {
      x.pages += r.run;
      if (r.kind == wire::PageKind::kZero) x.zero_pages += r.run;
    }
  }
  return x;
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
      {"corrupt-urgent", Fault::kCorruptUrgent},
      {"old-epoch-replay", Fault::kOldEpochReplay},
  };
  for (auto& [name, f] : kAll) {
    if (n == name) return f;
  }
  return make_error(Errc::kInvalidArgument,
                    "unknown fault '" + n + "' (known: " + fault_names() + ")");
}

std::string fault_names() {
  return "none, corrupt-ciphertext, corrupt-tag, duplicate-page, replay-frame, reorder-frames, "
         "drop-page, truncate, forge-manifest, oversize-length, earlier-migration, "
         "corrupt-urgent, old-epoch-replay";
}

Result<Tracker> parse_tracker(const std::string& n) {
  if (n == "fault" || n == "mprotect") return Tracker::kFault;
  if (n == "uffd" || n == "userfaultfd") return Tracker::kUffd;
  if (n == "access") return Tracker::kAccess;
  return make_error(Errc::kInvalidArgument,
                    "unknown tracker '" + n + "' (known: fault, uffd, access)");
}

const char* tracker_name(Tracker t) {
  switch (t) {
    case Tracker::kUffd:
      return "uffd";
    case Tracker::kAccess:
      return "access";
    case Tracker::kFault:
      break;
  }
  return "fault";
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
  wire::Mode mode = o.mode;
  FdCloser urgent_fd;  // live mode: the urgent connection (after `uch`, which uses it)
  std::unique_ptr<Channel> uch;
  if (o.mode == wire::Mode::kConstMig) {
    st["tracker"] = tracker_name(o.tracker);
    st["granule-bytes"] = static_cast<uint64_t>(o.granule_pages) * abi::kPageSize;
  }
  if (auto h = handshake(e, plat, app, ch, wire::Role::kSource, mode, o.io_timeout); !h.ok()) {
    (void)mcall(e, abi::kEcallMigReset, {});
    return failed(h.error(), false);
  }
  // Prepare (app still running): tell the target how much heap to populate, wait until it has.
  {
    auto hs = e.heap_stats();
    uint64_t top = hs.ok() ? hs->top : 0;
    std::string j = nlohmann::json{{"prepare-heap-top", top},
                                   {"tracker", tracker_name(o.tracker)},
                                   {"granule-pages", o.granule_pages}}
                        .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    Status ps = ch.send(FrameType::kStats, as_bytes_view(j));
    nlohmann::json ready;
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
      ready = stats_json(*f);
      if (ready.value("ready", false)) break;
    }
    // Live mode: the target offers the urgent connection with a token in its ready STATS; open it
    // now (before the stop phase, so it costs no downtime) and name the migration with the token.
    std::string token = ready.value("urgent-token", std::string());
    if (ps.ok() && mode == wire::Mode::kConstMig && !token.empty()) {
      ps = open_urgent(o, token, o.capture_path, urgent_fd, uch);
      if (!ps.ok()) send_error(ch, ps.error());
    }
    if (!ps.ok()) {
      (void)mcall(e, abi::kEcallMigReset, {});
      return failed(ps.error(), false);
    }
  }
  st["urgent-connection"] = uch != nullptr;
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
  std::string src_json = src_info.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
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
  st["state-sent-ns"] = platform::realtime_ns();  // stop-phase breakdown (docs/stats.md)

  // ---- heap stream: workers encrypt batches inside the enclave and send them. In live mode the
  // target already runs the app: a receiver thread answers its page requests on the urgent path
  // (they pre-empt the stream), and the stream's chunks shrink on a request and grow again while
  // nobody faults (CRIU's adaptive transfer). Every page is claimed once inside the enclave, so a
  // page sent urgently is skipped by the stream and vice versa.
  const bool live = o.mode == wire::Mode::kConstMig;
  // The connection in use: `ch` until a live-mode recovery replaces it (docs/format.md).
  Channel* cur = &ch;
  std::unique_ptr<Channel> cur_owned;
  FdCloser cur_fd;
  if (live) {
    // The target resumes on what was sent so far.
    downtime_bytes = ch.bytes_sent() + (uch ? uch->bytes_sent() : 0);
    // Keep at most this much unsent stream data in the kernel (progress and the stream's
    // adaptive chunks react sooner).
    int lowat = 128 << 10;
    (void)::setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof lowat);
    set_send_timeout(fd, o.io_timeout);
  }
  std::atomic<uint64_t> cursor{0}, pushed{0}, zero_pages{0}, batches{0};
  std::mutex err_mu;
  std::optional<Error> worker_err;
  std::vector<uint8_t> first_frame;    // for replay/duplicate faults
  std::vector<uint8_t> first_payload;  // old-epoch-replay fault
  std::atomic<int> recoveries{0};
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
  const uint32_t min_chunk = live ? std::min<uint32_t>(16, batch) : batch;
  std::atomic<uint32_t> chunk{min_chunk};
  st["batch-pages"] = batch;
  st["buffer-bytes"] = static_cast<uint64_t>(std::max(1, o.workers)) *
                       (wire::kPagesHeaderSize + batch * wire::kDataRecordSize);

  // ---- receiver: everything the target sends from here on (page requests, stats, verdict).
  std::atomic<bool> stop_stream{false}, stream_over{false}, link_lost{false};
  std::atomic<bool> cut_done{false};  // --cut-at (tests)
  std::atomic<uint64_t> requests{0}, urgent_pages{0}, urgent_bytes{0}, urgent_frames{0};
  std::mutex urgent_mu;  // held while an urgent answer is exported and sent
  bool manifest_sent = false;
  std::atomic<bool> target_live{false};
  nlohmann::json target_stats = nlohmann::json::object();
  std::optional<OwnedFrame> verdict;
  Error verdict_err{Errc::kIo, "no verdict from the target"};
  std::vector<uint8_t> ubuf(wire::kPagesHeaderSize +
                            wire::kMaxPagesPerRequest * wire::kDataRecordSize + 64);
  // The link is gone (a send or receive failed on either connection): stop the stream and wake
  // every thread blocked in a send. Reading goes on: a target that refused has sent its ERROR
  // and ABORT before it closed, and the receiver must still get them.
  auto lose_link = [&] {
    link_lost = true;
    stop_stream = true;
    cur->shutdown_write();
    if (uch) uch->shutdown_write();
  };
  // A PAGE_REQUEST from the target: export the pages (claimed once inside the enclave) and send
  // them at once on `out` (the urgent connection, or the main one where there is none).
  auto answer = [&](const OwnedFrame& f, Channel& out) {
    auto q = wire::decode_page_request(f.payload);
    if (!q.ok() || q->first >= pages) return;  // nothing we could answer
    uint32_t count = static_cast<uint32_t>(std::min<uint64_t>(q->count, pages - q->first));
    chunk = min_chunk;
    ++requests;
    std::lock_guard ul(urgent_mu);
    if (manifest_sent) return;  // everything was sent already; it is on its way
    auto x = export_pages(e, q->first, count, ubuf);
    Status us = x.ok() ? ok_status() : Status(x.error());
    if (us.ok() && !x->payload.empty()) {
      MutableByteView payload = x->payload;
      urgent_pages += x->pages;
      if (urgent_frames == 0 && o.fault == Fault::kCorruptUrgent) {
        flip(payload, payload.size() - 1);  // the last record's tag (DATA or ZERO)
      }
      us = out.send_urgent(FrameType::kPages, payload, wire::kFlagUrgent);
      urgent_bytes += payload.size() + wire::kHeaderSize;
      ++urgent_frames;
    }
    if (!us.ok()) {
      if (us.error().code == Errc::kIo) lose_link();
      std::lock_guard lk(err_mu);
      if (!worker_err) worker_err = us.take_error();
      stop_stream = true;
    }
  };

  auto worker = [&]() {
    if (live) background_priority();
    std::vector<uint8_t> buf(wire::kPagesHeaderSize + batch * wire::kDataRecordSize + 64);
    while (!stop_stream) {
      {
        std::lock_guard lk(err_mu);
        if (worker_err) return;
      }
      uint32_t ck = chunk.load();
      uint64_t first = cursor.fetch_add(ck);
      if (first >= pages) return;
      uint32_t count = static_cast<uint32_t>(std::min<uint64_t>(ck, pages - first));
      uint64_t req_before = requests.load();
      auto x = export_pages(e, first, count, buf);
      Status ws = x.ok() ? ok_status() : Status(x.error());
      if (ws.ok() && x->payload.empty()) continue;  // every page of the range went out already
      uint64_t b = ws.ok() ? batches.fetch_add(1) : 0;
      uint64_t sent_pages = 0;
      if (ws.ok()) {
        MutableByteView payload = x->payload;
        sent_pages = x->pages;
        zero_pages += x->zero_pages;
        std::lock_guard fl(fault_mu);
        if (b == 0 && o.fault == Fault::kCorruptCiphertext) flip(payload, 8 + 8 + 1 + 8 + 100);
        if (b == 0 && o.fault == Fault::kCorruptTag) flip(payload, 8 + 8 + 1 + 8 + 4096 + 3);
        if (b == 0 && o.fault == Fault::kDropPage) {
          pushed += sent_pages;
          continue;
        }
        if (o.fault == Fault::kReorderFrames && b < 2) {
          // Build both frames with consecutive seq numbers, send the second first.
          std::vector<uint8_t> frame;
          ws = cur->build(FrameType::kPages, payload, frame);
          held_back.push_back(std::move(frame));
          if (held_back.size() == 2) {
            ws = cur->send_raw(held_back[1]);
            if (ws.ok()) ws = cur->send_raw(held_back[0]);
          }
        } else {
          if (b == 0) first_payload.assign(payload.begin(), payload.end());
          if (o.fault == Fault::kOldEpochReplay && recoveries > 0 && !first_payload.empty()) {
            ws = cur->send(FrameType::kPages, first_payload);  // sealed in epoch 1
            first_payload.clear();
          }
          if (ws.ok())
            ws = cur->send(FrameType::kPages, payload, 0, b == 0 ? &first_frame : nullptr);
          if (ws.ok() && b == 0 && o.fault == Fault::kDuplicatePage) {
            ws = cur->send(FrameType::kPages, payload);
          }
          if (ws.ok() && b == 0 && o.fault == Fault::kReplayFrame) ws = cur->send_raw(first_frame);
          if (ws.ok() && b == 0 && o.fault == Fault::kEarlierMigration) {
            ws = cur->send(FrameType::kPages, earlier);
          }
          if (ws.ok() && b == 0 && o.fault == Fault::kOversizeLength) {
            std::array<uint8_t, wire::kHeaderSize> h{};
            wire::FrameHeader fh;
            fh.type = FrameType::kPages;
            fh.payload_len = 1u << 30;
            fh.seq = 1ull << 40;
            wire::encode_header(fh, h);
            ws = cur->send_raw(h);
          }
          if (ws.ok() && b == 0 && o.fault == Fault::kTruncate) {
            std::vector<uint8_t> frame;
            ws = cur->build(FrameType::kPages, payload, frame);
            if (ws.ok()) ws = cur->send_raw(ByteView(frame).subspan(0, frame.size() / 2));
            cur->shutdown_write();
            ws = make_error(Errc::kIo, "stream truncated (fault injection)");
          }
        }
      }
      if (!ws.ok()) {
        if (ws.error().code == Errc::kIo && o.fault != Fault::kTruncate) lose_link();
        std::lock_guard lk(err_mu);
        if (!worker_err) worker_err = ws.take_error();
        return;
      }
      // Adaptive chunks: double while no page request came in during this batch.
      if (live && requests.load() == req_before) chunk = std::min(ck * 2, batch);
      uint64_t done = pushed.fetch_add(sent_pages) + sent_pages;
      if (b % 64 == 0) report("heap-stream", pages, done + urgent_pages.load());
      // TESTING ONLY: the network drops both connections once this share of the heap went out.
      if (o.cut_at_percent > 0 && live &&
          (done + urgent_pages.load()) * 100 >= pages * o.cut_at_percent &&
          !cut_done.exchange(true)) {
        std::fprintf(stderr, "constmig: TEST: cutting both connections at %llu of %llu pages\n",
                     static_cast<unsigned long long>(done + urgent_pages.load()),
                     static_cast<unsigned long long>(pages));
        cur->shutdown_all();
        if (uch) uch->shutdown_all();
      }
    }
  };

  uint64_t earlier_bytes = 0;  // sent on connections a recovery replaced
  for (;;) {
    std::thread receiver([&] {
      auto quiet_since = Clock::now();
      for (;;) {
        auto f = cur->recv(std::chrono::milliseconds(1000));
        if (!f.ok()) {
          // Silence is normal while the stream runs; after it, the verdict must come in time.
          if (f.error().code == Errc::kTimeout && !link_lost &&
              (!stream_over || Clock::now() - quiet_since < o.io_timeout)) {
            if (!stream_over) quiet_since = Clock::now();
            continue;
          }
          verdict_err = f.take_error();
          lose_link();
          break;
        }
        quiet_since = Clock::now();
        FrameType t = f->header.type;
        if (t == FrameType::kStats) {
          nlohmann::json j = stats_json(*f);
          if (live && j.value("live", false)) {
            // The service now runs on the target. Our held app ECALLs go in and are refused by
            // the FROZEN enclave, so clients learn at once to go there (instead of waiting here
            // until the commit); after an abort, ECALLs run here again.
            e.release_app_ecalls();
            target_live = true;
          } else {
            target_stats = std::move(j);
          }
        } else if (t == FrameType::kError) {
          auto er = wire::decode_error(f->payload);
          verdict_err = make_error(
              Errc::kState, "target reported: " + (er.ok() ? er->message : std::string("?")));
          stop_stream = true;  // an ABORT usually follows
        } else if (t == FrameType::kCommit || t == FrameType::kAbort) {
          verdict = std::move(f).value();
          break;
        } else if (t == FrameType::kPageRequest && live) {
          answer(*f, *cur);  // one connection for all (the target offered no urgent connection)
        }
        // Anything else (a PAGE_REQUEST in stop-and-copy mode, ...) is ignored: the target's
        // enclave decides, and nothing here is trusted.
      }
      stop_stream = true;  // a verdict or a dead connection: streaming on is pointless
    });

    // Live mode: the urgent connection's receiver (page requests only). Its loss is the link's.
    std::atomic<bool> urgent_stop{false};
    std::thread urgent_rx;
    if (uch) {
      urgent_rx = std::thread([&] {
        while (!urgent_stop) {
          auto f = uch->recv(std::chrono::milliseconds(1000));
          if (urgent_stop) break;
          if (f.ok()) {
            if (f->header.type == FrameType::kPageRequest) answer(*f, *uch);
            continue;  // anything else is informational here
          }
          if (f.error().code == Errc::kTimeout) continue;
          {
            std::lock_guard ul(urgent_mu);
            if (manifest_sent) break;  // the target may close it once it has what it needs
          }
          lose_link();
          std::lock_guard lk(err_mu);
          if (!worker_err)
            worker_err = make_error(f.error().code, "urgent connection: " + f.error().message);
          break;
        }
      });
    }

    if (s.ok()) {
      std::vector<std::thread> ts;
      for (int i = 0; i < std::max(1, o.workers); ++i) ts.emplace_back(worker);
      for (auto& t : ts) t.join();
      std::lock_guard lk(err_mu);
      if (worker_err) s = *worker_err;
    }
    st["pages-time"] = ms_since(t_pages);

    if (s.ok() && !stop_stream) {
      std::lock_guard ul(urgent_mu);  // no urgent answer may follow the manifest
      auto man = mcall(e, abi::kEcallMigManifest, {});
      if (man.ok() && uch) {
        // Marks the end of the urgent answers: the target imports all of them before it checks
        // the manifest (they travel on another connection and may arrive after it).
        std::string ej = nlohmann::json{{"urgent-end", true}}.dump(
            -1, ' ', false, nlohmann::json::error_handler_t::replace);
        if (Status es = uch->send(FrameType::kStats, as_bytes_view(ej)); !es.ok()) {
          man = make_error(es.error().code, "urgent connection: " + es.error().message);
        }
      }
      if (!man.ok()) {
        s = man.take_error();
      } else {
        std::vector<uint8_t> m = std::move(*man);
        if (o.fault == Fault::kForgeManifest) flip(m, m.size() - 20);
        s = cur->send(FrameType::kManifest, m);
      }
      manifest_sent = true;
      if (!s.ok() && s.error().code == Errc::kIo) lose_link();
    }
    // A local failure (not the link): tell the target, whose abort token then lets us resume.
    if (!s.ok() && s.error().code != Errc::kIo) send_error(*cur, s.error());
    if (!live) downtime_bytes = cur->bytes_sent();
    stream_over = true;
    report("commit", pages, pushed.load() + urgent_pages.load());

    // ---- verdict from the target: COMMIT (we die), ABORT (we resume), or nothing (we stay
    // frozen) — or, live mode, a lost link after the target went live: recover (below).
    receiver.join();
    if (urgent_rx.joinable()) {
      urgent_stop = true;
      uch->shutdown_read();
      urgent_rx.join();
    }
    // Recover even if the target's "live" message was not seen: it may have gone live just as
    // the link broke (and then waits for us); a target that did not go live refuses and ends,
    // so the attempts time out and this source stays FROZEN, as without recovery.
    const bool recover = !verdict && live && link_lost && o.resume_timeout.count() > 0 &&
                         o.fault != Fault::kTruncate;
    if (!recover && live && link_lost && !verdict) {
      std::fprintf(stderr, "constmig: connection lost; no recovery (%s)\n",
                   o.resume_timeout.count() == 0 ? "--resume-timeout 0" : "fault injection");
    }
    if (!recover) break;
    // ---- recovery: same migration, next epoch, fresh keys; the target keeps serving meanwhile.
    earlier_bytes += cur->bytes_sent() + (uch ? uch->bytes_sent() : 0);
    std::string why = s.ok() ? verdict_err.message : s.error().message;
    std::fprintf(stderr,
                 "constmig: connection to the target lost (%s); reconnecting for up to %lld s\n",
                 why.c_str(), static_cast<long long>(o.resume_timeout.count() / 1000));
    report("reconnecting", pages, pushed.load() + urgent_pages.load());
    auto rec = reconnect_source(e, o, recoveries.load() + 2, cur_fd, cur_owned, urgent_fd, uch);
    if (!rec.ok()) {
      s = make_error(Errc::kIo, "the connection to the target was lost (" + why +
                                    ") and could not be re-established within " +
                                    std::to_string(o.resume_timeout.count() / 1000) +
                                    " s: " + rec.error().message);
      break;
    }
    cur = cur_owned.get();
    ++recoveries;
    std::fprintf(stderr,
                 "constmig: connection re-established (epoch %d): %llu pages to send again\n",
                 recoveries.load() + 1, static_cast<unsigned long long>(*rec));
    // The stream starts over at page 0: pages the target has stay claimed and are skipped.
    s = ok_status();
    worker_err.reset();
    verdict_err = Error{Errc::kIo, "no verdict from the target"};
    stop_stream = false;
    stream_over = false;
    link_lost = false;
    manifest_sent = false;
    cursor = 0;
    chunk = min_chunk;
    pushed -= std::min<uint64_t>(pushed.load(), *rec);
  }
  st["pages-pushed"] = pushed.load();
  st["zero-pages"] = zero_pages.load();
  const uint64_t sent = earlier_bytes + cur->bytes_sent() + (uch ? uch->bytes_sent() : 0);
  st["transferred"] = sent;
  st["precopy-bytes"] = 0;
  st["downtime-bytes"] = downtime_bytes;
  st["postcopy-bytes"] = live ? sent - downtime_bytes : 0;
  st["urgent-bytes"] = urgent_bytes.load();
  st["postcopy-requests"] = requests.load();
  st["postcopy-pages"] = urgent_pages.load();
  st["urgent-frames"] = urgent_frames.load();
  if (live) {
    st["target-went-live"] = target_live.load();
    st["recoveries"] = recoveries.load();
  }
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

namespace {

// Live (ConstMig) restore on a target: counts the pages the enclave installed per Fault Tracker
// granule, opens a granule for the app once all its pages are in, and serves the tracker's fetches
// (a thread touched a granule that is not in) with an urgent PAGE_REQUEST to the source.
// With the Access Tracker there is no host tracker: the enclave's checks ask for pages by OCALL
// (Enclave::set_page_fetcher), served the same way; granules need no opening.
class LiveRestore {
 public:
  LiveRestore(Channel& ch, uint64_t pages, uint32_t granule_pages)
      : ch_(&ch),
        pages_(pages),
        gpages_(granule_pages),
        granules_((pages + granule_pages - 1) / granule_pages),
        count_(new std::atomic<uint32_t>[granules_ ? granules_ : 1]()),
        requested_(new std::atomic<uint8_t>[granules_ ? granules_ : 1]()) {}

  ~LiveRestore() {
    if (enclave_) enclave_->set_page_fetcher(nullptr);
  }

  Status start(platform::Enclave& e, Tracker kind, std::function<void(const Error&)> on_fatal) {
    const platform::EnclaveRanges& r = e.ranges();
    window_ = reinterpret_cast<uint8_t*>(r.restore_base);
    if (kind == Tracker::kAccess) {
      enclave_ = &e;
      e.set_page_fetcher([this](uint64_t first, uint32_t count) { return access(first, count); });
      return ok_status();
    }
    platform::TrackerOptions t;
    t.kind =
        kind == Tracker::kUffd ? platform::TrackerKind::kUffd : platform::TrackerKind::kMprotect;
    t.base = r.heap_base;
    t.len = pages_ * abi::kPageSize;
    t.granule = static_cast<size_t>(gpages_) * abi::kPageSize;
    if (kind == Tracker::kFault) {
      t.memfd = r.heap_fd;
      t.memfd_offset = 0;
      t.restorer_view = window_;
    }
    t.on_fatal = std::move(on_fatal);
    CM_ASSIGN_OR_RETURN(tracker_,
                        platform::FaultTracker::create(
                            t, [this](uint64_t g, platform::FetchReason why, MutableByteView dst) {
                              return fetch(g, why, dst);
                            }));
    return tracker_->arm();
  }

  // Page requests go on `ch` from now on (the urgent connection; or a recovery's new one).
  void use_channel(Channel& ch) { ch_ = &ch; }

  // After a recovery: the requests sent on the lost connection may never have arrived; asks
  // again for every granule requested and not complete (the source answers each page once).
  void resend_requests() {
    for (uint64_t g = 0; g < granules_; ++g) {
      if (!requested_[g].load() || complete(g)) continue;
      std::vector<uint8_t> p;
      if (!wire::encode_page_request({g * gpages_, pages_in(g)}, p).ok()) continue;
      (void)ch_.load()->send_urgent(FrameType::kPageRequest, p);
    }
  }

  // The output of MigImportPages: u32 installed, u32 n, n x (u64 first, u32 run).
  Status installed(ByteView out) {
    ByteReader r(out);
    (void)r.u32();
    uint32_t n = r.u32();
    for (uint32_t i = 0; i < n && r.ok(); ++i) {
      uint64_t first = r.u64();
      uint32_t run = r.u32();
      if (!r.ok() || first >= pages_ || run > pages_ - first) break;
      CM_TRY(add_pages(first, first + run, [this](uint64_t g) { return open(g); }));
    }
    if (!r.ok()) return make_error(Errc::kInternal, "MigImportPages: malformed enclave output");
    return ok_status();
  }

  // The source's heap has `pages` pages; every page above them is not migrated and counts as
  // restored now (a granule entirely above opens on its first touch without a fetch).
  void set_source_pages(uint64_t pages) {
    (void)add_pages(pages, pages_, [](uint64_t) { return ok_status(); });
  }

  // All pages are in (the manifest checked): everything accessible, tracker gone.
  Status finish() {
    if (enclave_) {
      enclave_->set_page_fetcher(nullptr);
      enclave_ = nullptr;
    }
    if (!tracker_) return ok_status();
    Status s = tracker_->disarm();
    {
      std::lock_guard lk(lat_mu_);
      stats_ = tracker_->stats();
      latencies_ = tracker_->fault_latencies_ns();
    }
    tracker_.reset();
    return s;
  }
  // The migration failed: fetches never return (this process is about to end).
  void fail() {
    failed_ = true;
    std::lock_guard lk(mu_);
    cv_.notify_all();
  }

  uint64_t requests() const { return requests_; }
  uint64_t complete_granules() const { return complete_; }
  platform::FaultTracker::Stats stats() const {
    if (tracker_) return tracker_->stats();
    std::lock_guard lk(lat_mu_);
    return stats_;
  }
  std::vector<uint64_t> latencies() const {
    if (tracker_) return tracker_->fault_latencies_ns();
    std::lock_guard lk(lat_mu_);
    return latencies_;
  }

 private:
  // Counts pages [lo, hi) as in; `complete(g)` runs for each granule this completes.
  template <typename F>
  Status add_pages(uint64_t lo, uint64_t hi, F&& complete) {
    for (uint64_t g = lo / gpages_; g * gpages_ < hi; ++g) {
      uint64_t a = std::max<uint64_t>(lo, g * gpages_);
      uint64_t b = std::min<uint64_t>(hi, (g + 1) * gpages_);
      auto add = static_cast<uint32_t>(b - a);
      if (count_[g].fetch_add(add, std::memory_order_acq_rel) + add == pages_in(g)) {
        CM_TRY(complete(g));
      }
    }
    return ok_status();
  }
  uint32_t pages_in(uint64_t g) const {
    return static_cast<uint32_t>(std::min<uint64_t>(gpages_, pages_ - g * gpages_));
  }
  bool complete(uint64_t g) const {
    return count_[g].load(std::memory_order_acquire) == pages_in(g);
  }

  // Asks the source for granule g once (urgent PAGE_REQUEST) and waits until it is complete.
  Status await_granule(uint64_t g) {
    if (complete(g)) return ok_status();
    if (requested_[g].exchange(1) == 0) {
      std::vector<uint8_t> p;
      CM_TRY(wire::encode_page_request({g * gpages_, pages_in(g)}, p));
      ++requests_;
      // If the link is down the migration fails on the receiving side and the process ends;
      // until then this thread waits like the faulting one.
      (void)ch_.load()->send_urgent(FrameType::kPageRequest, p);
    }
    std::unique_lock lk(mu_);
    cv_.wait(lk, [&] { return complete(g) || failed_.load(); });
    while (failed_) cv_.wait(lk);  // never resume a thread on pages that did not arrive
    return ok_status();
  }

  // Access Tracker OCALL (an app thread inside the enclave): pages [first, first + count) were
  // not restored when its check ran. Returns once their granules are in; the enclave re-checks.
  int32_t access(uint64_t first, uint32_t count) {
    if (first >= pages_ || count > pages_ - first) return abi::kEcallBadInput;
    auto t0 = Clock::now();
    uint64_t fetched = 0;
    for (uint64_t g = first / gpages_; g * gpages_ < first + count; ++g) {
      if (complete(g)) continue;
      if (!await_granule(g).ok()) return abi::kEcallInternal;
      ++fetched;
    }
    auto ns = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count());
    std::lock_guard lk(lat_mu_);
    ++stats_.faults;
    stats_.fetched_on_demand += fetched;
    stats_.blocktime_ns += ns;
    if (latencies_.size() < (1u << 20)) latencies_.push_back(ns);
    return abi::kEcallOk;
  }

  // Tracker thread: a thread touched granule g, which is not open.
  Status fetch(uint64_t g, platform::FetchReason, MutableByteView dst) {
    CM_TRY(await_granule(g));
    // kMprotect: dst IS the restore window (the enclave decrypted into it). kUffd: a staging
    // buffer that the tracker copies into the app's anonymous memory.
    if (dst.data() != window_ + g * gpages_ * abi::kPageSize) {
      std::memcpy(dst.data(), window_ + g * gpages_ * abi::kPageSize, dst.size());
    }
    return ok_status();
  }

  Status open(uint64_t g) {
    ++complete_;
    Status s;
    if (!tracker_) {
      // Access Tracker: nothing to open (the enclave's bitmap guards); wake waiting fetches.
    } else if (tracker_->kind() == platform::TrackerKind::kMprotect) {
      s = tracker_->install_with(g, [](MutableByteView) { return ok_status(); });
    } else {
      s = tracker_->install(
          g, ByteView(window_ + g * gpages_ * abi::kPageSize, tracker_->granule_bytes(g)));
    }
    if (!s.ok() && s.error().code == Errc::kState) s = ok_status();  // a fetch holds it
    { std::lock_guard lk(mu_); }
    cv_.notify_all();
    return s;
  }

  std::atomic<Channel*> ch_;  // where page requests go: the urgent connection once there is one
  uint64_t pages_;
  uint32_t gpages_;
  uint64_t granules_;
  std::unique_ptr<std::atomic<uint32_t>[]> count_;
  std::unique_ptr<std::atomic<uint8_t>[]> requested_;
  uint8_t* window_ = nullptr;
  std::unique_ptr<platform::FaultTracker> tracker_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<bool> failed_{false};
  std::atomic<uint64_t> requests_{0}, complete_{0};
  // The host tracker's figures once it is gone; with the Access Tracker, the fetch OCALLs'.
  mutable std::mutex lat_mu_;
  platform::FaultTracker::Stats stats_;
  std::vector<uint64_t> latencies_;
  platform::Enclave* enclave_ = nullptr;  // Access Tracker: whose fetch OCALLs this serves
};

double percentile_us(std::vector<uint64_t> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())));
  return static_cast<double>(v[i]) / 1000.0;
}

// Prepare phase of a target: populate the heap the source announced (first touch of secret
// memory is the slow EAUG analogue), in parallel, before the source stops.
void prefault(platform::Enclave& e, uint64_t pages_to_touch, int workers, bool app_view,
              bool window) {
  std::atomic<uint64_t> next{0};
  std::vector<std::thread> ts;
  const auto* win = reinterpret_cast<const volatile uint8_t*>(e.ranges().restore_base);
  for (int i = 0; i < std::max(1, workers); ++i) {
    ts.emplace_back([&] {
      constexpr uint64_t kChunk = 4096;  // pages
      std::vector<uint8_t> in;
      for (;;) {
        uint64_t first = next.fetch_add(kChunk);
        if (first >= pages_to_touch) return;
        uint64_t n = std::min(kChunk, pages_to_touch - first);
        in.clear();
        ByteWriter w(in);
        w.u64(first);
        w.u64(n);
        if (app_view) (void)e.call(abi::kEcallPrefault, in, 64);
        // Live mode: the restore window's page tables too (the enclave decrypts through it).
        if (window) {
          uint8_t sum = 0;
          for (uint64_t p = first; p < first + n; ++p) sum += win[p * abi::kPageSize];
          (void)sum;
        }
      }
    });
  }
  for (auto& t : ts) t.join();
}

}  // namespace

// Target, live mode: accepts the source's urgent connection on `listen_fd`; its first frame must be
// a STATS naming this migration's token. Other connections (a second source, a port scanner) are
// closed and waiting goes on until `timeout`.
Result<std::pair<int, std::unique_ptr<Channel>>> accept_urgent(int listen_fd,
                                                               const std::string& token,
                                                               const std::string& capture,
                                                               std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      return make_error(Errc::kTimeout,
                        "the source did not open the urgent connection within " +
                            std::to_string(timeout.count() / 1000) +
                            " s (a firewall or proxy that passes only one connection to the "
                            "listen port?)");
    }
    pollfd p{listen_fd, POLLIN, 0};
    int pr = ::poll(&p, 1, static_cast<int>(std::min<long>(left.count(), 1000)));
    if (pr <= 0) continue;
    int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    int one = 1;
    (void)::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    auto ch = std::make_unique<Channel>(fd, capture.empty() ? std::string() : capture + ".urgent",
                                        wire::Direction::kTargetToSource);
    auto f = ch->recv(std::min(left, std::chrono::milliseconds(5000)));
    if (f.ok() && f->header.type == FrameType::kStats &&
        stats_json(*f).value("urgent-channel", std::string()) == token) {
      return std::make_pair(fd, std::move(ch));
    }
    ch.reset();
    ::close(fd);
  }
}

// A random host-level token naming one migration's urgent connection on the listening socket
// (what arrives on that connection is verified by the enclave like everything else).
std::string urgent_token() {
  std::random_device rd;
  char hex[33];
  std::snprintf(hex, sizeof hex, "%08x%08x%08x%08x", rd(), rd(), rd(), rd());
  return hex;
}

// A lost link (as opposed to bad data): what a live migration may recover from.
bool link_error(const Error& e) {
  return e.code == Errc::kIo || e.code == Errc::kTimeout;
}

// Target, live mode, after the link was lost: waits on o.listen_fd (up to o.resume_timeout) for
// the source's new connection, whose first frame must be RESUME; the enclave moves to the next
// epoch's keys and seals the bitmap of the pages it has; then a new urgent connection.
Status await_resume(platform::Enclave& e, const MigrateOptions& o, uint64_t pages, int epoch,
                    FdCloser& main_fd, std::unique_ptr<Channel>& main, FdCloser& urgent_fd,
                    std::unique_ptr<Channel>& uch) {
  auto deadline = Clock::now() + o.resume_timeout;
  std::string last = "no connection arrived";
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return make_error(Errc::kTimeout, last);
    pollfd p{o.listen_fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(std::min<long>(left.count(), 1000))) <= 0) continue;
    int fd = ::accept4(o.listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    auto fc = std::make_unique<FdCloser>();
    fc->fd = fd;
    int one = 1;
    (void)::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    set_send_timeout(fd, o.io_timeout);
    std::string cap =
        o.capture_path.empty() ? std::string() : o.capture_path + ".e" + std::to_string(epoch);
    auto nch = std::make_unique<Channel>(fd, cap, wire::Direction::kTargetToSource);
    auto f = nch->recv(std::min(left, std::chrono::milliseconds(5000)));
    if (!f.ok() || f->header.type != FrameType::kResume) {
      last = f.ok() ? "a connection that did not start with RESUME" : f.error().message;
      continue;
    }
    auto out = e.call(abi::kEcallMigResumeAccept, f->payload, 4096 + pages / 8);
    if (!out.ok()) {
      last = "recovery refused: " + out.error().message;
      send_error(*nch, out.error());
      nch->drain(std::chrono::milliseconds(500));
      continue;
    }
    ByteReader r(*out);
    uint32_t n = r.u32();
    ByteView resume = r.bytes(n);
    ByteView state = r.bytes(r.ok() ? r.remaining() : 0);
    if (!r.ok() || n != wire::kResumeSize) {
      return make_error(Errc::kInternal, "MigResumeAccept: malformed enclave output");
    }
    std::string token = urgent_token();
    std::string tj = nlohmann::json{{"urgent-token", token}}.dump(
        -1, ' ', false, nlohmann::json::error_handler_t::replace);
    Status ss = nch->send(FrameType::kStats, as_bytes_view(tj));
    if (ss.ok()) ss = nch->send(FrameType::kResume, resume);
    if (ss.ok()) ss = nch->send(FrameType::kResumeState, state);
    if (!ss.ok()) {
      last = ss.error().message;
      continue;
    }
    auto u = accept_urgent(o.listen_fd, token, cap, o.io_timeout);
    if (!u.ok()) {
      last = u.error().message;
      continue;
    }
    urgent_fd.fd = u->first;
    uch = std::move(u->second);
    main_fd.fd = fc->fd;
    fc->fd = -1;
    main = std::move(nch);
    return ok_status();
  }
}

MigrationOutcome run_target(platform::Enclave& e, const platform::Platform& plat, HostApp& app,
                            int fd, const MigrateOptions& o, const ProgressFn& progress) {
  MigrationOutcome out;
  nlohmann::json& st = out.stats;
  st["role"] = "target";
  auto t_start = Clock::now();
  Channel ch(fd, o.capture_path, wire::Direction::kTargetToSource);
  // The main connection in use: `ch` until a live-mode recovery replaces it. Replaced channels
  // (and their sockets) stay alive until the end: a waiting fetch may still hold one.
  std::atomic<Channel*> cur{&ch};
  std::vector<std::unique_ptr<Channel>> retired;
  std::vector<std::unique_ptr<FdCloser>> retired_fds;
  Reporter report(progress);
  FdCloser urgent_fd;  // live mode: the urgent connection (after `uch`, which uses it)
  std::unique_ptr<Channel> uch;
  std::unique_ptr<LiveRestore> lr;
  std::thread urgent_rx;  // live mode: imports the answers that arrive on the urgent connection
  std::atomic<bool> urgent_stop{false};
  auto stop_urgent = [&] {
    if (!urgent_rx.joinable()) return;
    urgent_stop = true;
    uch->shutdown_read();
    urgent_rx.join();
  };
  bool app_resumed = false;  // live mode: the app has run on this state
  // A tracker thread that cannot go on: give the source its abort token before the process dies.
  auto on_fatal = [&](const Error& err) {
    auto tok = mcall(e, abi::kEcallMigMakeAbort, {});
    send_error(*cur, err);
    if (tok.ok()) (void)cur.load()->send(FrameType::kAbort, *tok);
  };

  // Any failure: the enclave refuses to run; give the source an abort token if we can.
  auto refuse = [&](const Error& err) {
    if (!app_resumed) stop_urgent();  // (after the app resumed, this process ends below)
    auto tok = mcall(e, abi::kEcallMigMakeAbort, {});
    send_error(*cur, err);
    if (tok.ok()) (void)cur.load()->send(FrameType::kAbort, *tok);
    if (app_resumed) {
      // The app already ran here and threads may wait for pages that will never come. They must
      // not run on, so this process ends now; the source resumes from its frozen state with the
      // abort token (what the app did here since the stop is lost with it).
      if (lr) lr->fail();
      cur.load()->drain(std::chrono::seconds(2));
      std::fprintf(stderr,
                   "constmig: the live migration was refused after the target resumed the app: "
                   "%s\n"
                   "constmig: the source got the abort token and resumes; this process stops\n",
                   err.message.c_str());
      std::fflush(stderr);
      std::_Exit(3);
    }
    ch.drain(std::chrono::seconds(10));
    out.kind = MigrationOutcome::kFailed;
    out.error = err.message;
    st["status"] = "failed";
    st["error"] = err.message;
    return out;
  };

  wire::Mode mode = o.mode;
  if (auto h = handshake(e, plat, app, ch, wire::Role::kTarget, mode, o.io_timeout); !h.ok()) {
    out.error = h.error().message;
    st["status"] = "failed";
    st["error"] = out.error;
    return out;
  }
  const bool live = mode == wire::Mode::kConstMig;
  if (live) set_send_timeout(fd, o.io_timeout);
  st["mode"] = std::string(wire::mode_name(mode));
  Tracker tracker = Tracker::kFault;
  uint32_t granule_pages = 16;
  {
    auto f = ch.recv(o.io_timeout);
    if (!f.ok()) return refuse(f.error());
    if (f->header.type != FrameType::kStats) {
      return refuse(make_error(Errc::kFormat, "expected the source's STATS (prepare), got " +
                                                  wire::frame_type_name(f->header.type)));
    }
    nlohmann::json pj = stats_json(*f);
    uint64_t top = pj.value("prepare-heap-top", 0ull);
    if (live) {
      auto tk = parse_tracker(pj.value("tracker", std::string("fault")));
      if (!tk.ok()) return refuse(tk.error());
      tracker = *tk;
      granule_pages = pj.value("granule-pages", 16u);
      if (granule_pages == 0 || granule_pages > wire::kMaxPagesPerRequest ||
          (granule_pages & (granule_pages - 1)) != 0) {
        return refuse(
            make_error(Errc::kInvalidArgument, "granule of " + std::to_string(granule_pages) +
                                                   " pages: use a power of two from 1 to " +
                                                   std::to_string(wire::kMaxPagesPerRequest)));
      }
      st["tracker"] = tracker_name(tracker);
      st["granule-bytes"] = static_cast<uint64_t>(granule_pages) * abi::kPageSize;
      if (tracker == Tracker::kUffd) {
        if (auto us = platform::FaultTracker::uffd_supported(); !us.ok()) return refuse(us.error());
      }
    }
    auto t_pre = Clock::now();
    uint64_t pages_to_touch = std::min<uint64_t>(top / abi::kPageSize + (top / abi::kPageSize) / 8,
                                                 e.ranges().heap_reserve / abi::kPageSize);
    auto hs = e.heap_stats();
    if (hs.ok()) pages_to_touch = std::min<uint64_t>(pages_to_touch, hs->limit / abi::kPageSize);
    if (live && tracker == Tracker::kUffd) {
      // The heap view becomes anonymous memory (this instance's own heap contents go: nothing
      // reads them before the source's state replaces them); UFFDIO_COPY brings its own fresh
      // pages there. The restore window (secret memory the enclave decrypts into) is populated.
      if (auto us = e.use_anonymous_heap(); !us.ok()) return refuse(us.error());
      prefault(e, pages_to_touch, o.workers, /*app_view=*/false, /*window=*/true);
    } else {
      prefault(e, pages_to_touch, o.workers, /*app_view=*/true, /*window=*/live);
    }
    st["prefault-time"] = ms_since(t_pre);
    st["prefault-bytes"] = pages_to_touch * abi::kPageSize;
    if (live) {
      // Arm the Fault Tracker now, over the whole heap this target may hold, not in the stop
      // phase: making gigabytes of populated pages inaccessible costs ~20 ms/GiB of page-table
      // work, which must not count as downtime. Nothing touches the heap until the app goes live.
      uint64_t limit_pages = (hs.ok() ? hs->limit : e.ranges().heap_reserve) / abi::kPageSize;
      lr = std::make_unique<LiveRestore>(ch, limit_pages, granule_pages);
      auto t_arm = Clock::now();
      if (auto ts = lr->start(e, tracker, on_fatal); !ts.ok()) return refuse(ts.error());
      st["arm-time"] = ms_since(t_arm);
    }
    nlohmann::json rj = {{"ready", true}};
    // Live mode: offer the urgent connection (a host-level token only names this migration on
    // the listening socket; what arrives on it is verified by the enclave like everything else).
    std::string token;
    if (live && o.listen_fd >= 0) {
      token = urgent_token();
      rj["urgent-token"] = token;
    }
    std::string j = rj.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    if (auto s2 = ch.send(FrameType::kStats, as_bytes_view(j)); !s2.ok()) return refuse(s2.error());
    if (!token.empty()) {
      auto u = accept_urgent(o.listen_fd, token, o.capture_path, o.io_timeout);
      if (!u.ok()) return refuse(u.error());
      urgent_fd.fd = u->first;
      uch = std::move(u->second);
      lr->use_channel(*uch);
    }
  }
  st["urgent-connection"] = uch != nullptr;
  st["setup-time"] = ms_since(t_start);
  report("waiting for the stop phase", 0, 0);

  uint64_t hold_ns = 0, pages = 0;
  // Small state (after the source's STATS), then host state.
  bool have_small = false;
  auto t_small = Clock::now();
  while (true) {
    auto f = ch.recv(o.io_timeout);
    if (!f.ok()) return refuse(f.error());
    FrameType t = f->header.type;
    if (t == FrameType::kStats) {
      hold_ns = stats_json(*f).value("hold-ns", hold_ns);
      st["hold-stats-arrived-ns"] = platform::realtime_ns();
      continue;
    }
    if (t == FrameType::kError) {
      auto er = wire::decode_error(f->payload);
      return refuse(make_error(Errc::kState,
                               "source reported: " + (er.ok() ? er->message : std::string("?"))));
    }
    if (!have_small && t == FrameType::kSmallState) {
      st["small-state-arrived-ns"] = platform::realtime_ns();
      auto r = mcall(e, abi::kEcallMigImportSmall, f->payload);
      if (!r.ok()) return refuse(r.error());
      ByteReader rr(*r);
      pages = rr.u64();
      st["heap-bytes"] = rr.u64();
      have_small = true;
      t_small = Clock::now();
      continue;
    }
    if (have_small && t == FrameType::kHostState) {
      auto r = mcall(e, abi::kEcallMigOpenHostState, f->payload, f->payload.size() + 64);
      if (!r.ok()) return refuse(r.error());
      if (auto rs = app.restore_state(*r); !rs.ok()) return refuse(rs.error());
      break;
    }
    return refuse(make_error(Errc::kFormat, std::string("expected ") +
                                                (have_small ? "HOST_STATE" : "SMALL_STATE") +
                                                ", got " + wire::frame_type_name(t)));
  }
  auto t_stream = t_small;

  // Live: arm the tracker over the source's heap layout, go live, let app ECALLs in. The first
  // one served ends the downtime; it may already fault and fetch pages, so it runs on its own
  // thread while this one receives.
  std::thread prober;
  std::atomic<uint64_t> probe_done_ns{0};
  std::atomic<bool> stream_done{false};
  std::thread sampler;
  nlohmann::json timeline = nlohmann::json::array();
  std::atomic<uint64_t> installed{0};
  std::mutex tl_mu;  // timeline, probe_error
  std::string probe_error;
  if (live) {
    // Pages beyond the source's heap never arrive: they count as restored (opened when touched).
    lr->set_source_pages(pages);
    std::vector<uint8_t> go;
    if (tracker == Tracker::kAccess) go.push_back(1);  // the enclave's checks guard the heap
    if (auto gl = mcall(e, abi::kEcallMigGoLive, go); !gl.ok()) return refuse(gl.error());
    app_resumed = true;
    e.release_app_ecalls();
    st["released-ns"] = platform::realtime_ns();
    st["resume-time"] = ms_since(t_stream);  // small state in -> app ECALLs released
    std::string lj = nlohmann::json{{"live", true}}.dump(-1, ' ', false,
                                                         nlohmann::json::error_handler_t::replace);
    (void)ch.send(FrameType::kStats, as_bytes_view(lj));  // the source lets its clients go
    prober = std::thread([&] {
      Status rs = app.probe(e);
      probe_done_ns = platform::realtime_ns();
      if (!rs.ok()) {
        std::lock_guard lk(tl_mu);
        probe_error = rs.error().message;
      }
    });
    sampler = std::thread([&] {
      auto t0 = Clock::now();
      while (!stream_done) {
        {
          std::lock_guard lk(tl_mu);
          timeline.push_back({{"t-ms", ms_since(t0)},
                              {"pages-installed", installed.load()},
                              {"postcopy-requests", lr->requests()}});
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    });
    report("live: app resumed, heap streaming", pages, 0);
  }
  auto stop_live_threads = [&] {
    stream_done = true;
    if (sampler.joinable()) sampler.join();
    if (prober.joinable()) prober.join();
  };

  // Pages and manifest. PAGES go to decrypt workers through a bounded queue; urgent ones (answers
  // to page requests) are imported at once on this thread.
  std::mutex qmu;
  std::condition_variable qcv;
  std::deque<std::vector<uint8_t>> queue;
  bool closing = false;
  std::optional<Error> werr;
  auto import = [&](ByteView payload) -> Status {
    CM_ASSIGN_OR_RETURN(auto r, mcall(e, abi::kEcallMigImportPages, payload, 64 << 10));
    ByteReader rr(r);
    installed += rr.u32();
    if (lr) CM_TRY(lr->installed(r));
    return ok_status();
  };
  const size_t qcap = static_cast<size_t>(std::max(2, 2 * o.workers));
  auto worker = [&] {
    if (live) background_priority();
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
      if (Status r = import(p); !r.ok()) {
        std::lock_guard lk(qmu);
        if (!werr) werr = r.take_error();
        closing = true;
        qcv.notify_all();
        return;
      }
    }
  };
  std::vector<std::thread> ts;
  auto start_workers = [&] {
    closing = false;
    ts.clear();
    for (int i = 0; i < std::max(1, o.workers); ++i) ts.emplace_back(worker);
  };
  auto stop_workers = [&] {
    {
      std::lock_guard lk(qmu);
      closing = true;
    }
    qcv.notify_all();
    for (auto& t : ts)
      if (t.joinable()) t.join();
  };
  // Live mode: the urgent connection's answers are imported on their own thread at once (they
  // never wait behind the stream, here or in the kernel's buffers). It ends at the source's
  // "urgent-end" mark, sent just before the manifest; its failure stops the main receiver.
  std::atomic<uint64_t> urgent_frames{0};
  std::mutex umu;
  std::condition_variable ucv;
  bool urgent_done = false;
  std::optional<Error> uerr;
  std::atomic<bool> urgent_lost{false};
  auto start_urgent = [&] {
    urgent_done = false;
    uerr.reset();
    urgent_stop = false;
    urgent_lost = false;
    urgent_rx = std::thread([&] {
      Status us;
      while (!urgent_stop) {
        auto f = uch->recv(std::chrono::milliseconds(1000));
        if (!f.ok()) {
          if (f.error().code == Errc::kTimeout) continue;  // no faults for a while: normal
          if (!urgent_stop)
            us = make_error(f.error().code, "urgent connection: " + f.error().message);
          break;
        }
        if (urgent_stop) break;
        FrameType t = f->header.type;
        if (t == FrameType::kPages && (f->header.flags & wire::kFlagUrgent)) {
          ++urgent_frames;
          us = import(f->payload);
          if (!us.ok()) break;
        } else if (t == FrameType::kStats) {
          if (stats_json(*f).value("urgent-end", false)) break;
        } else if (t == FrameType::kError) {
          auto er = wire::decode_error(f->payload);
          us = make_error(Errc::kState,
                          "source reported: " + (er.ok() ? er->message : std::string("?")));
          break;
        } else {
          us = make_error(Errc::kFormat,
                          "unexpected " + wire::frame_type_name(t) + " on the urgent connection");
          break;
        }
      }
      {
        std::lock_guard lk(umu);
        urgent_done = true;
        if (!us.ok()) uerr = us.error();
      }
      ucv.notify_all();
      if (!us.ok()) {
        if (link_error(us.error())) {
          urgent_lost = true;  // the main receiver wakes up and waits for the source to return
        } else {
          std::lock_guard lk(qmu);
          if (!werr) werr = us.take_error();
          closing = true;
        }
        qcv.notify_all();
        cur.load()->shutdown_read();  // wakes the main receiver; it can still send (ABORT)
      }
    });
  };
  std::optional<OwnedFrame> manifest;
  Status s;
  uint64_t frames = 0;
  int recoveries = 0;
  for (;;) {
    start_workers();
    if (uch) start_urgent();
    while (s.ok()) {
      auto f = cur.load()->recv(o.io_timeout);
      if (!f.ok()) {
        s = f.take_error();
        break;
      }
      {
        std::lock_guard lk(qmu);
        if (werr) break;
      }
      FrameType t = f->header.type;
      if (t == FrameType::kPages && (f->header.flags & wire::kFlagUrgent)) {
        ++urgent_frames;
        s = import(f->payload);
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
    // Live mode: a lost connection (either one) after the app resumed is not the end: the app
    // keeps running (threads that need a missing page wait) while the source reconnects.
    bool lost = !manifest && live && app_resumed && o.listen_fd >= 0 &&
                o.resume_timeout.count() > 0 && (urgent_lost || (!s.ok() && link_error(s.error())));
    {
      std::lock_guard lk(qmu);
      if (werr) lost = false;
    }
    if (lost) {
      stop_urgent();
      std::string why = s.ok() ? std::string("urgent connection lost") : s.error().message;
      std::fprintf(
          stderr,
          "constmig: connection to the source lost (%s); the app keeps running, waiting up "
          "to %lld s for the source to reconnect\n",
          why.c_str(), static_cast<long long>(o.resume_timeout.count() / 1000));
      report("waiting for the source to reconnect", pages, installed.load());
      std::unique_ptr<Channel> nmain, nurg;
      auto nmain_fd = std::make_unique<FdCloser>(), nurg_fd = std::make_unique<FdCloser>();
      Status rs = await_resume(e, o, pages, recoveries + 2, *nmain_fd, nmain, *nurg_fd, nurg);
      if (!rs.ok()) {
        // No source, no abort token to give: this process ends with the app, serving nothing
        // built on a partial heap; the source (if alive) stays FROZEN for the operator.
        if (lr) lr->fail();
        std::fprintf(stderr,
                     "constmig: the source did not come back within %lld s after the connection "
                     "was lost (%s): stopping the app; nothing built on the partial heap is "
                     "served\n",
                     static_cast<long long>(o.resume_timeout.count() / 1000),
                     rs.error().message.c_str());
        std::fflush(stderr);
        std::_Exit(4);
      }
      if (uch) retired.push_back(std::move(uch));
      retired_fds.push_back(std::make_unique<FdCloser>());
      std::swap(retired_fds.back()->fd, urgent_fd.fd);
      retired_fds.push_back(std::move(nmain_fd));  // closed at the end, after the channels
      retired_fds.push_back(std::move(nurg_fd));
      Channel* nm = nmain.get();
      retired.push_back(std::move(nmain));
      cur = nm;
      uch = std::move(nurg);
      if (lr) {
        lr->use_channel(uch ? *uch : *nm);
        lr->resend_requests();
      }
      ++recoveries;
      std::fprintf(stderr, "constmig: the source reconnected (epoch %d); the heap stream goes on\n",
                   recoveries + 1);
      s = ok_status();
      continue;
    }
    break;
  }  // recovery loop
  st["recoveries"] = recoveries;
  if (s.ok() && manifest && uch) {
    // Every urgent answer the source sent before the manifest must be in before it is checked.
    std::unique_lock lk(umu);
    if (!ucv.wait_for(lk, o.io_timeout, [&] { return urgent_done; })) {
      s = make_error(Errc::kTimeout, "the urgent connection did not end after the manifest");
    } else if (uerr) {
      s = *uerr;
    }
  }
  {
    std::lock_guard lk(qmu);
    if (werr) s = *werr;
  }
  if (!s.ok()) return refuse(s.error());
  stop_urgent();
  if (!manifest) return refuse(make_error(Errc::kFormat, "stream ended without a manifest"));
  auto commit = mcall(e, abi::kEcallMigFinish, manifest->payload);
  if (!commit.ok()) return refuse(commit.error());
  st["population-time"] = ms_since(t_stream);
  st["pages-installed"] = installed.load();

  if (live) {
    // (lr exists in live mode from the prepare phase on.)
    if (Status fs = lr->finish(); !fs.ok()) st["tracker-error"] = fs.error().message;
    auto ts2 = lr->stats();
    auto lat = lr->latencies();
    st["postcopy-requests"] = lr->requests();
    st["faults"] = ts2.faults;
    st["fetched-on-demand"] = ts2.fetched_on_demand;
    st["postcopy-blocktime"] = static_cast<double>(ts2.blocktime_ns) / 1e6;
    st["fault-latency-p50-us"] = percentile_us(lat, 0.50);
    st["fault-latency-p99-us"] = percentile_us(lat, 0.99);
    st["fault-latency-max-us"] = percentile_us(lat, 1.0);
    st["max-open-runs"] = ts2.max_open_runs_seen;
    st["host-tracker"] = tracker == Tracker::kAccess ? "none"
                         : tracker == Tracker::kUffd ? "uffd"
                                                     : "mprotect";
    st["urgent-frames"] = urgent_frames.load();
    stop_live_threads();
    std::lock_guard lk(tl_mu);
    timeline.push_back({{"t-ms", ms_since(t_stream)},
                        {"pages-installed", installed.load()},
                        {"postcopy-requests", lr->requests()}});
    st["population-timeline"] = timeline;
    if (!probe_error.empty()) st["resume-error"] = probe_error;
    st["probe-done-ns"] = probe_done_ns.load();
  } else {
    // Resume: release app ECALLs (the host half was resumed by the caller and waits at the
    // gate) and serve the first ECALL: downtime ends.
    e.release_app_ecalls();
    Status rs = app.probe(e);
    if (!rs.ok()) st["resume-error"] = rs.error().message;
  }
  uint64_t first_served = e.first_served_after_release_ns();
  st["first-served-ns"] = first_served;
  if (hold_ns && first_served > hold_ns)
    st["downtime"] = static_cast<double>(first_served - hold_ns) / 1e6;
  st["total-time"] = ms_since(t_start);
  st["status"] = "completed";
  std::string js = st.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (js.size() > wire::kMaxStatsText) {  // a long timeline: keep the summary
    nlohmann::json small = st;
    small.erase("population-timeline");
    js = small.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
  (void)cur.load()->send(FrameType::kStats, as_bytes_view(js));
  Status cs = cur.load()->send(FrameType::kCommit, *commit);
  if (!cs.ok()) st["commit-send-error"] = cs.error().message;  // source stays frozen, never resumes
  out.kind = MigrationOutcome::kCommitted;
  report("completed", pages, installed.load());
  return out;
}

}  // namespace constmig::host
