// A FIXED Ed25519 platform key for the fuzz targets and the corpus generator only: the seed
// corpus holds quotes signed by it, so that fuzz_quote reaches TrustStore::verify's signature
// and measurement checks. It protects nothing; never use it for anything else.
#pragma once

namespace constmig::fuzz {

inline constexpr char kFuzzPlatformKeyPem[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIIEdDENZ8Ns4k3YScSaaS2HrS725VJzwH55iz3kQCZ3C\n"
    "-----END PRIVATE KEY-----\n";

inline constexpr char kFuzzPlatformPublicPem[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MCowBQYDK2VwAyEADsjd1p7HNUa71U5Qck0shKKFOfMxo9cj8+dY7hA+mRY=\n"
    "-----END PUBLIC KEY-----\n";

// The measurement the generator's quotes carry and fuzz_quote expects.
inline constexpr unsigned char kFuzzMeasurementByte = 0x11;

}  // namespace constmig::fuzz
