// xsbench engine (TRUSTED, also compiled into host unit tests): an XSBench-like macroscopic
// cross-section lookup kernel (nuclide-grid mode). Each of kNuclides nuclides has an energy grid
// of n grid points (energy + 5 micro cross-sections), sorted by energy; 12 materials mix
// nuclides with concentrations (XSBench "large" composition and material distribution). A lookup
// picks a material and an energy, binary-searches every nuclide grid of the material,
// interpolates and accumulates the 5 macroscopic cross-sections.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "workload_common/workload_util.h"

namespace xsbench {

inline constexpr uint32_t kNuclides = 355;
inline constexpr uint32_t kMaterials = 12;
inline constexpr uint32_t kNuclidesPerMaterial[kMaterials] = {321, 5,  4,  4,  27, 21,
                                                              21,  21, 21, 21, 9,  9};
// Material probabilities in per mille, as cumulative thresholds (XSBench's distribution).
inline constexpr uint32_t kMaterialCdf[kMaterials] = {140, 192, 467, 601, 755, 819,
                                                      885, 940, 948, 963, 988, 1001};
inline constexpr uint64_t kVerifyLookups = 8192;
inline constexpr uint64_t kVerifySeed = 0x5eedf00dull;

struct GridPoint {
  double energy, total, elastic, absorption, fission, nu_fission;
};

// Macroscopic cross-sections of one lookup.
struct Macro {
  double xs[5];
};

// One lookup's contribution to a checksum (the bits of the 5 results).
uint64_t macro_term(uint64_t i, const Macro& m);

class XsStore {
 public:
  static uint64_t gridpoints_for(uint64_t bytes) {
    uint64_t n = bytes / (kNuclides * sizeof(GridPoint));
    return n < 16 ? 16 : n;
  }
  bool init(uint64_t seed, uint64_t gridpoints, std::string* err);
  workload::BuildStep build_step(uint64_t budget_points);
  // Lookup i of the sequence seeded by `seed`: material and energy, deterministic.
  static void pick(uint64_t seed, uint64_t i, uint32_t* mat, double* energy);
  Macro lookup(uint32_t mat, double energy) const;
  // count lookups of the sequence `seed`, from index first; returns the checksum of their terms.
  uint64_t lookups(uint64_t seed, uint64_t first, uint64_t count) const;
  // Verification: digest of every grid, then the checksum of kVerifyLookups fixed lookups.
  void verify_begin();
  workload::VerifyStep verify_step(uint64_t budget_points);
  void corrupt();  // TESTING ONLY
  bool ready() const { return built_ == kNuclides + 1; }
  uint64_t gridpoints() const { return n_; }
  const GridPoint* grid(uint32_t nuclide) const { return grids_[nuclide]; }
  const std::vector<uint32_t>& material(uint32_t m) const { return mats_[m]; }
  const std::vector<double>& concentrations(uint32_t m) const { return conc_[m]; }

 private:
  uint64_t seed_ = 0, n_ = 0;
  uint32_t built_ = 0;  // nuclides generated; kNuclides + 1 once materials are made too
  std::vector<GridPoint*> grids_;
  std::vector<std::vector<uint32_t>> mats_;
  std::vector<std::vector<double>> conc_;
  std::mutex verify_mu_;
  uint32_t vnuc_ = 0;
  uint64_t vlookup_ = 0, vdigest_ = 0, vsum_ = 0;
};

}  // namespace xsbench
