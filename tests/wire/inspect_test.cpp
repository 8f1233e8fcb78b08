// Tests of `constmig inspect` (tools/constmig_inspect.cpp) on generated captures.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "common/wire_format.h"
#include "constmig_inspect.h"
#include "wire_test_util.h"

namespace constmig::wire {
namespace {

namespace fs = std::filesystem;

class InspectTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("constmig-inspect-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::string& name, ByteView a, ByteView b = {}) {
    std::string p = (dir_ / name).string();
    std::ofstream f(p, std::ios::binary);
    f.write(reinterpret_cast<const char*>(a.data()), static_cast<std::streamsize>(a.size()));
    f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
    return p;
  }

  struct Run {
    int rc;
    std::string out, err;
  };
  Run run(const std::string& path, bool json, bool records = false) {
    std::FILE* out = std::tmpfile();
    std::FILE* err = std::tmpfile();
    tools::InspectOptions o;
    o.json = json;
    o.records = records;
    o.out = out;
    o.err = err;
    Run r;
    r.rc = tools::inspect_capture(path, o);
    r.out = slurp(out);
    r.err = slurp(err);
    return r;
  }
  static std::string slurp(std::FILE* f) {
    std::fflush(f);
    std::rewind(f);
    std::string s;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
    std::fclose(f);
    return s;
  }
  fs::path dir_;
};

TEST_F(InspectTest, CaptureSummaryCountsEveryFrameAndPage) {
  auto s = testing::make_stream();
  auto cap = encode_capture_header(Direction::kSourceToTarget);
  std::string path = write("s2t.cap", cap, s.bytes);

  Run t = run(path, false);
  ASSERT_EQ(t.rc, 0) << t.out << t.err;
  EXPECT_NE(t.out.find("direction source->target"), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("summary: 11 frames, " + std::to_string(s.bytes.size()) + " bytes"),
            std::string::npos)
      << t.out;
  EXPECT_NE(t.out.find("app=\"kvstore\""), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("pages: 182 (data 18, zero 164 in 2 runs), 20 records, 1 urgent"),
            std::string::npos)
      << t.out;
  EXPECT_NE(t.out.find("0..9:data 10..109:zero 110:data"), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("section=11 record=1/2 ciphertext=1000B"), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("tag mismatch on page 5"), std::string::npos) << t.out;
  // The first frame is listed at file offset 16 (after the capture header).
  EXPECT_NE(t.out.find("          16        0  HELLO"), std::string::npos) << t.out;
  EXPECT_TRUE(t.err.empty()) << t.err;

  Run j = run(path, true);
  ASSERT_EQ(j.rc, 0) << j.out << j.err;
  auto doc = nlohmann::json::parse(j.out);
  EXPECT_TRUE(doc["ok"].get<bool>());
  EXPECT_EQ(doc["capture"]["direction"], "source->target");
  const auto& sum = doc["summary"];
  EXPECT_EQ(sum["frames"], 11);
  EXPECT_EQ(sum["bytes"], s.bytes.size());
  EXPECT_EQ(sum["by_type"]["PAGES"], 3);
  EXPECT_EQ(sum["by_type"]["SMALL_STATE"], 2);
  EXPECT_EQ(sum["by_type"]["HELLO"], 1);
  EXPECT_EQ(sum["data_pages"], s.data_pages);
  EXPECT_EQ(sum["zero_pages"], s.zero_pages);
  EXPECT_EQ(sum["zero_runs"], s.zero_runs);
  EXPECT_EQ(sum["page_records"], s.page_records);
  EXPECT_EQ(sum["urgent_batches"], 1);
  EXPECT_EQ(sum["duplicate_pages"], 0);
  ASSERT_EQ(doc["frames"].size(), 11u);
  EXPECT_EQ(doc["frames"][0]["offset"], 16);
  EXPECT_EQ(doc["frames"][0]["quote_measurement"], std::string(64, '1'));
  EXPECT_EQ(doc["frames"][6]["urgent"], true);
  EXPECT_EQ(doc["frames"][6]["ranges"][0]["first"], 500);
  EXPECT_EQ(doc["frames"][6]["ranges"][0]["count"], 4);
  EXPECT_FALSE(doc["frames"][5].contains("pages")) << "per-record lists only with records";

  Run jr = run(path, true, /*records=*/true);
  auto doc2 = nlohmann::json::parse(jr.out);
  ASSERT_EQ(doc2["frames"][5]["pages"].size(), 12u);
  EXPECT_EQ(doc2["frames"][5]["pages"][10]["kind"], "zero");
  EXPECT_EQ(doc2["frames"][5]["pages"][10]["run"], 100);
  EXPECT_EQ(doc2["frames"][5]["pages"][10]["nonce"], 13);
}

TEST_F(InspectTest, NeverPrintsCiphertextBytes) {
  // Ciphertexts made of a marker the output must not contain, in hex or raw.
  FrameEncoder enc;
  std::vector<uint8_t> stream, p;
  ASSERT_TRUE(encode_hello(testing::sample_hello(Role::kSource), p).ok());
  ASSERT_TRUE(enc.append(FrameType::kHello, 0, p, stream).ok());
  std::vector<uint8_t> ct(kPageSize, 0xEB), tag(16, 0xEB);
  std::vector<PageRecord> recs = {{1, PageKind::kData, 1, 0, ct, tag}};
  p.clear();
  ASSERT_TRUE(encode_pages(recs, p).ok());
  ASSERT_TRUE(enc.append(FrameType::kPages, 0, p, stream).ok());
  p.clear();
  ASSERT_TRUE(
      encode_sealed(FrameType::kHostState, SealedRecord{.ciphertext = ct, .tag = tag}, p).ok());
  ASSERT_TRUE(enc.append(FrameType::kHostState, 0, p, stream).ok());
  std::string path = write("raw.bin", stream);
  for (bool json : {false, true}) {
    Run r = run(path, json, true);
    ASSERT_EQ(r.rc, 0) << r.out;
    EXPECT_EQ(r.out.find("ebeb"), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("EBEB"), std::string::npos);
    EXPECT_EQ(r.out.find("\xEB\xEB"), std::string::npos);
  }
  Run r = run(path, false);
  EXPECT_NE(r.out.find("no capture header: raw stream"), std::string::npos) << r.out;
}

TEST_F(InspectTest, BadFrameIsReportedWithItsOffset) {
  auto s = testing::make_stream();
  auto cap = encode_capture_header(Direction::kSourceToTarget);
  // Truncated in the middle of the 4th frame.
  std::string trunc = write("trunc.cap", cap, ByteView(s.bytes).first(s.frame_offsets[3] + 40));
  Run t = run(trunc, false);
  EXPECT_EQ(t.rc, 1);
  EXPECT_NE(t.out.find("summary: 3 frames"), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("ERROR at offset " + std::to_string(16 + s.frame_offsets[3])),
            std::string::npos)
      << t.out;
  EXPECT_NE(t.out.find("truncated"), std::string::npos) << t.out;
  EXPECT_NE(t.err.find("bad stream at offset"), std::string::npos) << t.err;

  Run j = run(trunc, true);
  EXPECT_EQ(j.rc, 1);
  auto doc = nlohmann::json::parse(j.out);
  EXPECT_FALSE(doc["ok"].get<bool>());
  EXPECT_EQ(doc["error"]["offset"], 16 + s.frame_offsets[3]);
  EXPECT_EQ(doc["summary"]["frames"], 3);

  // A corrupted header in frame 2.
  auto bad = s.bytes;
  bad[s.frame_offsets[2] + 9] ^= 0x40;
  Run c = run(write("crc.bin", bad), false);
  EXPECT_EQ(c.rc, 1);
  EXPECT_NE(c.out.find("ERROR at offset " + std::to_string(s.frame_offsets[2]) + ":"),
            std::string::npos)
      << c.out;
  EXPECT_NE(c.out.find("CRC32C mismatch"), std::string::npos) << c.out;
}

TEST_F(InspectTest, FrameInTheWrongDirectionIsRefused) {
  auto s = testing::make_stream(/*both_directions=*/true);  // has COMMIT/ABORT/PAGE_REQUEST
  auto cap = encode_capture_header(Direction::kSourceToTarget);
  Run r = run(write("mixed.cap", cap, s.bytes), false);
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.out.find("PAGE_REQUEST frames are never sent source->target"), std::string::npos)
      << r.out;
  // Without a direction the same stream is fine.
  Run ok = run(write("mixed.bin", s.bytes), false);
  EXPECT_EQ(ok.rc, 0) << ok.out;
}

TEST_F(InspectTest, DuplicatePagesAreCounted) {
  FrameEncoder enc;
  std::vector<uint8_t> stream, p;
  std::vector<uint8_t> ct(kPageSize, 1), tag(16, 2);
  for (int i = 0; i < 2; ++i) {
    std::vector<PageRecord> recs = {{7, PageKind::kData, 1, static_cast<uint64_t>(i), ct, tag}};
    p.clear();
    ASSERT_TRUE(encode_pages(recs, p).ok());
    ASSERT_TRUE(enc.append(FrameType::kPages, 0, p, stream).ok());
  }
  Run r = run(write("dup.bin", stream), true);
  ASSERT_EQ(r.rc, 0);
  auto doc = nlohmann::json::parse(r.out);
  EXPECT_EQ(doc["summary"]["duplicate_pages"], 1);
}

TEST_F(InspectTest, UnreadableAndEmptyFiles) {
  Run missing = run((dir_ / "nope").string(), false);
  EXPECT_EQ(missing.rc, 2);
  EXPECT_NE(missing.err.find("cannot open"), std::string::npos);
  Run empty = run(write("empty.bin", {}), false);
  EXPECT_EQ(empty.rc, 1);
  EXPECT_NE(empty.out.find("empty stream"), std::string::npos) << empty.out;
  auto cap = encode_capture_header(Direction::kUnknown);
  Run hdr_only = run(write("hdr.cap", cap), false);
  EXPECT_EQ(hdr_only.rc, 1);
  Run tiny = run(write("tiny.bin", as_bytes_view("CMG")), false);
  EXPECT_EQ(tiny.rc, 1);
  EXPECT_NE(tiny.out.find("truncated"), std::string::npos) << tiny.out;
  Run badcap = run(write("badcap.cap", ByteView(cap).first(10)), false);
  EXPECT_EQ(badcap.rc, 1);
  EXPECT_NE(badcap.out.find("capture header truncated"), std::string::npos) << badcap.out;

  // The entry point the constmig tool calls.
  std::FILE* out = std::tmpfile();
  std::FILE* err = std::tmpfile();
  auto s = testing::make_stream();
  EXPECT_EQ(constmig_inspect_main(write("main.bin", s.bytes), true, out, err), 0);
  std::fclose(out);
  std::fclose(err);
}

}  // namespace
}  // namespace constmig::wire
