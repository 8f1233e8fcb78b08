// `constmig inspect FILE`: decodes a captured migration stream (docs/format.md) frame by frame.
//
// UNTRUSTED tool. It shows framing only: offsets, sequence numbers, types, lengths and each
// frame's framing fields (page indices and kinds, nonce counters, record sizes). It never
// prints ciphertext or tag bytes (and cannot decrypt: keys never leave the enclaves). The plain
// informational frames (ERROR message, STATS JSON) are shown escaped.
#pragma once

#include <cstdio>
#include <string>

namespace constmig::tools {

struct InspectOptions {
  bool json = false;     // one JSON document instead of the text listing
  bool records = false;  // also list every PAGES record (index, kind, run, nonce)
  std::FILE* out = stdout;
  std::FILE* err = stderr;
};

// Exit status: 0 the whole file decoded; 1 a bad or truncated frame (frames before it are
// listed, the error names its offset); 2 the file could not be read.
int inspect_capture(const std::string& path, const InspectOptions& opts);

}  // namespace constmig::tools

// Entry point for the `constmig` tool's `inspect` verb and the standalone `constmig-inspect`.
int constmig_inspect_main(const std::string& path, bool json, std::FILE* out = stdout,
                          std::FILE* err = stderr);
