// Enclave measurement (MRENCLAVE analogue).

#include <elf.h>
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "common/enclave_abi.h"
#include "platform/host_elf.h"
#include "platform/host_measure.h"
#include "test_util.h"

namespace constmig::platform {
namespace {

using testing::read_file;

Measurement measure(const std::vector<uint8_t>& bytes, uint32_t slots = 4) {
  auto info = parse_elf_image(bytes);
  EXPECT_TRUE(info.ok()) << info.error().message;
  auto m = measure_image(bytes, *info, slots);
  EXPECT_TRUE(m.ok()) << m.error().message;
  return m.ok() ? *m : Measurement{};
}

TEST(Sha256, KnownAnswer) {
  auto m = sha256(as_bytes_view("abc"));
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(to_hex(*m), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  auto e = sha256({});
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(to_hex(*e), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(ToHex, LowerCase) {
  const uint8_t b[] = {0x00, 0x0f, 0xa5, 0xff};
  EXPECT_EQ(to_hex(b), "000fa5ff");
  EXPECT_EQ(to_hex({}), "");
}

TEST(Measure, IdenticalBytesGiveIdenticalMeasurements) {
  auto a = read_file(TINY_IMAGE_PATH);
  auto b = read_file(TINY_IMAGE_PATH);
  EXPECT_EQ(measure(a), measure(b));
}

TEST(Measure, ChangesWhenAnyLoadedSegmentByteChanges) {
  auto image = read_file(TINY_IMAGE_PATH);
  Measurement base = measure(image);
  auto info = parse_elf_image(image);
  ASSERT_TRUE(info.ok());
  for (const ElfSegment& s : info->loads) {
    ASSERT_GT(s.filesz, 0u);
    for (uint64_t at : {s.offset, s.offset + s.filesz / 2, s.offset + s.filesz - 1}) {
      auto b = image;
      b[at] ^= 0x01;
      auto i2 = parse_elf_image(b);
      if (!i2.ok()) continue;  // the flip broke a table the parser reads: also a refusal
      auto m = measure_image(b, *i2, 4);
      ASSERT_TRUE(m.ok());
      EXPECT_NE(*m, base) << "byte at file offset " << at << " is not measured";
    }
  }
}

TEST(Measure, IgnoresBytesTheLoaderDoesNotMap) {
  auto image = read_file(TINY_IMAGE_PATH);
  Measurement base = measure(image);
  auto info = parse_elf_image(image);
  ASSERT_TRUE(info.ok());
  uint64_t loaded_end = 0;
  for (const ElfSegment& s : info->loads) loaded_end = std::max(loaded_end, s.offset + s.filesz);
  ASSERT_LT(loaded_end, image.size());  // section headers and .symtab follow the loaded part
  auto b = image;
  b.back() ^= 0xff;
  EXPECT_EQ(measure(b), base);
}

TEST(Measure, ChangesWithThreadSlotsAndImage) {
  auto image = read_file(TINY_IMAGE_PATH);
  EXPECT_NE(measure(image, 1), measure(image, 2));
  EXPECT_NE(measure(image, 4), measure(read_file(MALLOC_IMAGE_PATH), 4));
}

TEST(Measure, RejectsBadSlotCountsAndForeignInfo) {
  auto image = read_file(TINY_IMAGE_PATH);
  auto info = parse_elf_image(image);
  ASSERT_TRUE(info.ok());
  for (uint32_t slots : {0u, abi::kMaxThreadSlots + 1}) {
    auto m = measure_image(image, *info, slots);
    ASSERT_FALSE(m.ok());
    EXPECT_EQ(m.error().code, Errc::kInvalidArgument);
  }
  EXPECT_TRUE(measure_image(image, *info, abi::kMaxThreadSlots).ok());
  // Info that does not describe these bytes.
  std::vector<uint8_t> small(image.begin(), image.begin() + 100);
  auto m = measure_image(small, *info, 1);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.error().code, Errc::kFormat);
  ElfImageInfo bad = *info;
  bad.loads.back().offset = ~uint64_t{0} - 2;
  auto m2 = measure_image(image, bad, 1);
  ASSERT_FALSE(m2.ok());
  EXPECT_NE(m2.error().message.find("does not belong to this file"), std::string::npos)
      << m2.error().message;
}

}  // namespace
}  // namespace constmig::platform
