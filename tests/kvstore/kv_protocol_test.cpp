// kv_batch encoding: round trips, the incremental builder, and hostile encodings.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "kvstore/kvstore_protocol.h"

namespace {

using namespace constmig;
using namespace constmig::kvstore;

using Commands = std::vector<std::vector<std::string>>;

Result<Commands> decode_all(ByteView in, const BatchLimits& lim = {}) {
  Commands got;
  Status st = decode_batch(in, lim, [&](uint32_t i, const std::vector<std::string_view>& argv) {
    EXPECT_EQ(i, got.size());
    got.emplace_back(argv.begin(), argv.end());
  });
  if (!st.ok()) return st.take_error();
  return got;
}

ByteView view(const std::vector<uint8_t>& v) {
  return ByteView(v.data(), v.size());
}

const Commands kSample = {{"SET", "k", std::string("v\0\r\n", 4)},
                          {"GET", "k"},
                          {"PING"},
                          {"ECHO", ""},
                          {"DEL", "a", "b", "c"}};

TEST(KvProtocol, RoundTrip) {
  std::vector<uint8_t> buf;
  encode_batch(kSample, buf);
  EXPECT_EQ(std::memcmp(buf.data(), "KVB1", 4), 0);
  auto got = decode_all(view(buf));
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(*got, kSample);

  std::vector<uint8_t> empty;
  encode_batch({}, empty);
  auto e = decode_all(view(empty));
  ASSERT_TRUE(e.ok());
  EXPECT_TRUE(e->empty());
}

TEST(KvProtocol, BuilderMatchesEncoderAndDropsFront) {
  BatchBuilder b;
  for (const auto& c : kSample) b.add(c);
  std::vector<uint8_t> ref;
  encode_batch(kSample, ref);
  EXPECT_EQ(std::vector<uint8_t>(b.view().begin(), b.view().end()), ref);
  for (uint32_t drop = 1; drop <= kSample.size(); ++drop) {
    BatchBuilder c;
    for (const auto& cmd : kSample) c.add(cmd);
    c.drop_front(drop);
    Commands tail(kSample.begin() + drop, kSample.end());
    std::vector<uint8_t> want;
    encode_batch(tail, want);
    EXPECT_EQ(std::vector<uint8_t>(c.view().begin(), c.view().end()), want) << drop;
    EXPECT_EQ(c.count(), tail.size());
    // and adding after a drop still works
    c.add(std::vector<std::string>{"PING"});
    auto got = decode_all(c.view());
    ASSERT_TRUE(got.ok());
    EXPECT_EQ(got->size(), tail.size() + 1);
  }
}

TEST(KvProtocol, CallbackCanStopEarly) {
  std::vector<uint8_t> buf;
  encode_batch(kSample, buf);
  int seen = 0;
  Status st =
      decode_batch(view(buf), BatchLimits{},
                   [&](uint32_t, const std::vector<std::string_view>&) { return ++seen < 2; });
  EXPECT_TRUE(st.ok());
  EXPECT_EQ(seen, 2);
}

void put32(std::vector<uint8_t>& b, uint32_t v) {
  ByteWriter w(b);
  w.u32(v);
}

void expect_rejected(const std::vector<uint8_t>& b, const BatchLimits& lim, const char* what) {
  int calls = 0;
  Status st =
      decode_batch(view(b), lim, [&](uint32_t, const std::vector<std::string_view>&) { ++calls; });
  EXPECT_FALSE(st.ok()) << what;
  if (!st.ok()) {
    EXPECT_EQ(st.error().code, Errc::kFormat) << what;
  }
  EXPECT_EQ(calls, 0) << what << ": a malformed batch must run nothing";
}

TEST(KvProtocol, HostileEncodingsRejected) {
  BatchLimits lim;
  lim.max_commands = 10;
  lim.max_args = 4;
  lim.max_arg_len = 16;
  std::vector<uint8_t> b;

  b.clear();
  put32(b, 0x12345678);
  put32(b, 0);
  expect_rejected(b, lim, "bad magic");

  b.clear();
  put32(b, kBatchMagic);
  put32(b, 11);
  expect_rejected(b, lim, "count over limit");

  b.clear();
  put32(b, kBatchMagic);
  put32(b, 0xffffffffu);
  expect_rejected(b, BatchLimits{}, "count 2^32-1");

  b.clear();
  put32(b, kBatchMagic);
  put32(b, 3);  // claims 3, holds 1
  put32(b, 1);
  put32(b, 4);
  b.insert(b.end(), {'P', 'I', 'N', 'G'});
  expect_rejected(b, lim, "count larger than data");

  b.clear();
  put32(b, kBatchMagic);
  put32(b, 1);
  put32(b, 0);
  put32(b, 0);
  expect_rejected(b, lim, "argc 0");

  b.clear();
  put32(b, kBatchMagic);
  put32(b, 1);
  put32(b, 5);
  for (int i = 0; i < 5; ++i) put32(b, 0);
  expect_rejected(b, lim, "argc over limit");

  b.clear();
  put32(b, kBatchMagic);
  put32(b, 1);
  put32(b, 0x40000000u);
  put32(b, 0);
  expect_rejected(b, BatchLimits{}, "argc larger than data");

  b.clear();
  put32(b, kBatchMagic);
  put32(b, 1);
  put32(b, 1);
  put32(b, 17);
  b.insert(b.end(), 17, 'x');
  expect_rejected(b, lim, "arg over limit");

  b.clear();
  put32(b, kBatchMagic);
  put32(b, 1);
  put32(b, 1);
  put32(b, 0xfffffff0u);
  b.insert(b.end(), 8, 'x');
  expect_rejected(b, BatchLimits{}, "arg length larger than data");

  b.clear();
  encode_batch({{"PING"}}, b);
  b.push_back(0);
  expect_rejected(b, lim, "trailing byte");

  // Two commands where the second is bad: the first must not run either.
  b.clear();
  encode_batch({{"SET", "a", "b"}, {"GET", std::string(17, 'k')}}, b);
  expect_rejected(b, lim, "second command over the argument limit");

  // Every strict prefix of a valid batch is rejected.
  std::vector<uint8_t> full;
  encode_batch(kSample, full);
  for (size_t n = 0; n < full.size(); ++n) {
    std::vector<uint8_t> prefix(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n));
    expect_rejected(prefix, BatchLimits{}, "prefix");
  }
}

TEST(KvProtocol, RandomMutationsNeverReadOutOfBounds) {
  std::vector<uint8_t> full;
  encode_batch(kSample, full);
  std::mt19937 rng(7);
  for (int iter = 0; iter < 20000; ++iter) {
    std::vector<uint8_t> b = full;
    int muts = 1 + static_cast<int>(rng() % 3);
    for (int m = 0; m < muts; ++m) b[rng() % b.size()] = static_cast<uint8_t>(rng());
    const uint8_t* lo = b.data();
    const uint8_t* hi = b.data() + b.size();
    Status st = decode_batch(view(b), BatchLimits{},
                             [&](uint32_t, const std::vector<std::string_view>& argv) {
                               for (auto a : argv) {
                                 auto* p = reinterpret_cast<const uint8_t*>(a.data());
                                 ASSERT_TRUE(a.empty() || (p >= lo && p + a.size() <= hi));
                               }
                             });
    (void)st;
  }
}

TEST(KvProtocol, ReplyWritersAndIntParsing) {
  std::string o;
  resp::simple(o, "OK");
  resp::error(o, "ERR x\ny");
  resp::integer(o, 7);
  resp::bulk(o, "ab");
  resp::null_bulk(o);
  resp::array_header(o, 0);
  EXPECT_EQ(o, "+OK\r\n-ERR x y\r\n:7\r\n$2\r\nab\r\n$-1\r\n*0\r\n");
  int64_t v = 0;
  EXPECT_TRUE(resp::parse_int64("-123", &v));
  EXPECT_EQ(v, -123);
  EXPECT_FALSE(resp::parse_int64("012", &v));
  EXPECT_FALSE(resp::parse_int64("+1", &v));
  EXPECT_FALSE(resp::parse_int64("-", &v));
  EXPECT_FALSE(resp::parse_int64("99999999999999999999", &v));
}

}  // namespace
