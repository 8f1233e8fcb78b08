#include "xsbench/trusted/xsbench_engine.h"

#include <algorithm>
#include <cstring>

namespace xsbench {

using workload::mix64;
using workload::pair_term;
using workload::splitmix;

namespace {

double unit(uint64_t& rng) {
  return static_cast<double>(splitmix(rng) >> 11) * (1.0 / 9007199254740992.0);  // [0, 1)
}
uint64_t bits(double d) {
  uint64_t b;
  std::memcpy(&b, &d, 8);
  return b;
}
uint64_t grid_digest(uint32_t nuc, const GridPoint* g, uint64_t n) {
  uint64_t d = 0;
  for (uint64_t i = 0; i < n; ++i) {
    const double* f = &g[i].energy;
    uint64_t h = 0;
    for (int k = 0; k < 6; ++k) h = mix64(h ^ bits(f[k]));
    d += pair_term((static_cast<uint64_t>(nuc) << 40) | i, h);
  }
  return d;
}

}  // namespace

uint64_t macro_term(uint64_t i, const Macro& m) {
  uint64_t h = 0;
  for (double x : m.xs) h = mix64(h ^ bits(x));
  return pair_term(i, h);
}

bool XsStore::init(uint64_t seed, uint64_t gridpoints, std::string* err) {
  if (n_ != 0) {
    *err = "xsbench already initialised";
    return false;
  }
  seed_ = seed;
  n_ = gridpoints;
  grids_.assign(kNuclides, nullptr);
  return true;
}

workload::BuildStep XsStore::build_step(uint64_t budget_points) {
  uint64_t done = 0;
  while (built_ < kNuclides && (done == 0 || done + n_ <= budget_points)) {
    uint64_t rng = mix64(seed_ ^ (static_cast<uint64_t>(built_) * 0xa0761d6478bd642full));
    auto* g = new GridPoint[n_];
    for (uint64_t j = 0; j < n_; ++j) {
      // Sorted energies without a sort: one point in each 1/n slot.
      g[j].energy = (static_cast<double>(j) + unit(rng)) / static_cast<double>(n_);
      g[j].total = unit(rng);
      g[j].elastic = unit(rng);
      g[j].absorption = unit(rng);
      g[j].fission = unit(rng);
      g[j].nu_fission = unit(rng);
    }
    grids_[built_++] = g;
    done += n_;
  }
  if (built_ == kNuclides) {
    uint64_t rng = mix64(seed_ ^ 0x6d617465726961ull);
    mats_.assign(kMaterials, {});
    conc_.assign(kMaterials, {});
    for (uint32_t m = 0; m < kMaterials; ++m) {
      for (uint32_t k = 0; k < kNuclidesPerMaterial[m]; ++k) {
        // Material 0 (fuel) holds the first 321 nuclides; the others a random pick.
        uint32_t nuc = m == 0 ? k : static_cast<uint32_t>(splitmix(rng) % kNuclides);
        mats_[m].push_back(nuc);
        conc_[m].push_back(unit(rng));
      }
    }
    built_ = kNuclides + 1;
  }
  workload::BuildStep st;
  st.phase = "nuclide grids";
  st.progress = std::min<uint64_t>(built_, kNuclides);
  st.total = kNuclides;
  st.done = ready();
  return st;
}

void XsStore::pick(uint64_t seed, uint64_t i, uint32_t* mat, double* energy) {
  uint64_t rng = mix64(seed ^ (i * 0x9e3779b97f4a7c15ull));
  uint32_t r = static_cast<uint32_t>(splitmix(rng) % 1001);
  uint32_t m = 0;
  while (m + 1 < kMaterials && r >= kMaterialCdf[m]) ++m;
  *mat = m;
  *energy = unit(rng);
}

Macro XsStore::lookup(uint32_t mat, double e) const {
  Macro out{};
  const auto& nucs = mats_[mat];
  const auto& conc = conc_[mat];
  for (size_t k = 0; k < nucs.size(); ++k) {
    const GridPoint* g = grids_[nucs[k]];
    // Binary search: the last grid point with energy <= e (clamped to [0, n - 2]).
    uint64_t lo = 0, hi = n_ - 1;
    while (hi - lo > 1) {
      uint64_t mid = lo + (hi - lo) / 2;
      if (g[mid].energy > e) {
        hi = mid;
      } else {
        lo = mid;
      }
    }
    const GridPoint& a = g[lo];
    const GridPoint& b = g[lo + 1];
    double f = (b.energy - e) / (b.energy - a.energy);
    const double* av = &a.total;
    const double* bv = &b.total;
    for (int x = 0; x < 5; ++x) out.xs[x] += conc[k] * (bv[x] - f * (bv[x] - av[x]));
  }
  return out;
}

uint64_t XsStore::lookups(uint64_t seed, uint64_t first, uint64_t count) const {
  uint64_t sum = 0;
  for (uint64_t i = first; i < first + count; ++i) {
    uint32_t m;
    double e;
    pick(seed, i, &m, &e);
    sum += macro_term(i, lookup(m, e));
  }
  return sum;
}

void XsStore::verify_begin() {
  std::lock_guard lk(verify_mu_);
  vnuc_ = 0;
  vlookup_ = 0;
  vdigest_ = 0;
  vsum_ = 0;
}

workload::VerifyStep XsStore::verify_step(uint64_t budget_points) {
  std::lock_guard lk(verify_mu_);
  uint64_t done = 0;
  while (vnuc_ < kNuclides && (done == 0 || done + n_ <= budget_points)) {
    vdigest_ += grid_digest(vnuc_, grids_[vnuc_], n_);
    ++vnuc_;
    done += n_;
  }
  if (vnuc_ == kNuclides && done == 0) {
    uint64_t n = std::min<uint64_t>(256, kVerifyLookups - vlookup_);
    vsum_ += lookups(kVerifySeed, vlookup_, n);
    vlookup_ += n;
  }
  workload::VerifyStep st;
  st.total = kNuclides * n_ + kVerifyLookups;
  st.progress = vnuc_ * n_ + vlookup_;
  st.done = vlookup_ == kVerifyLookups;
  st.digest = pair_term(vdigest_, vsum_);
  if (st.done) {
    st.detail = "xsbench: " + std::to_string(kNuclides) + " nuclides x " + std::to_string(n_) +
                " grid points, grid digest " + std::to_string(vdigest_) + ", checksum of " +
                std::to_string(kVerifyLookups) + " fixed lookups " + std::to_string(vsum_);
  }
  return st;
}

void XsStore::corrupt() {
  if (grids_.empty() || grids_[0] == nullptr) return;
  grids_[0][n_ / 2].total += 1.0;
}

}  // namespace xsbench
