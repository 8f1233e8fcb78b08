#include "graph/trusted/graph_engine.h"

#include <algorithm>
#include <climits>

namespace graph {

using workload::mix64;
using workload::pair_term;
using workload::splitmix;

void rmat_edge(uint64_t seed, uint64_t i, uint64_t vertices, uint32_t* u, uint32_t* v) {
  int scale = 1;
  while ((1ull << scale) < vertices) ++scale;
  uint64_t rng = mix64(seed ^ (i * 0x9e3779b97f4a7c15ull));
  uint64_t a = 0, b = 0, r = 0;
  for (int level = 0; level < scale; ++level) {
    if (level % 4 == 0) r = splitmix(rng);
    uint32_t q = static_cast<uint32_t>((r >> (16 * (level % 4))) & 0xffff);
    uint64_t bit = 1ull << (scale - 1 - level);
    if (q < kRmatA) {
    } else if (q < kRmatAB) {
      b |= bit;
    } else if (q < kRmatABC) {
      a |= bit;
    } else {
      a |= bit;
      b |= bit;
    }
  }
  *u = static_cast<uint32_t>(a % vertices);
  *v = static_cast<uint32_t>(b % vertices);
}

bool GraphStore::init(uint64_t seed, uint64_t vertices, uint32_t slots, std::string* err) {
  if (n_ != 0) {
    *err = "graph already initialised";
    return false;
  }
  if (vertices < 2 || vertices >= (1ull << 32) - 1 || slots == 0 || slots > kMaxSlots) {
    *err = "graph: 2..2^32-2 vertices and 1..16 BFS slots";
    return false;
  }
  seed_ = seed;
  n_ = vertices;
  m_ = vertices * kEdgeFactor;
  off_.reset(new uint64_t[n_ + 2]);
  adj_.reset(new uint32_t[2 * m_]);
  for (uint32_t s = 0; s < slots; ++s) {
    auto b = std::make_unique<Bfs>();
    b->state.reset(new uint64_t[n_]);
    b->queue.reset(new uint32_t[n_]);
    slots_.push_back(std::move(b));
  }
  vbfs_.state.reset(new uint64_t[n_]);
  vbfs_.queue.reset(new uint32_t[n_]);
  pr_cur_.reset(new uint64_t[n_]);
  pr_next_.reset(new uint64_t[n_]);
  vr_cur_.reset(new uint64_t[n_]);
  vr_next_.reset(new uint64_t[n_]);
  return true;
}

workload::BuildStep GraphStore::build_step(uint64_t budget) {
  workload::BuildStep st;
  switch (phase_) {
    case kZero: {
      uint64_t end = std::min(n_, cursor_ + budget);
      for (uint64_t i = cursor_; i < end; ++i) {
        off_[i] = 0;
        for (auto& s : slots_) s->state[i] = 0;
        vbfs_.state[i] = 0;
        pr_cur_[i] = kOne / n_;
      }
      cursor_ = end;
      st.phase = "clear";
      st.progress = cursor_;
      st.total = n_;
      if (cursor_ == n_) {
        off_[n_] = off_[n_ + 1] = 0;
        phase_ = kCount;
        cursor_ = 0;
      }
      break;
    }
    case kCount: {
      uint64_t end = std::min(m_, cursor_ + budget);
      for (uint64_t i = cursor_; i < end; ++i) {
        uint32_t u, v;
        rmat_edge(seed_, i, n_, &u, &v);
        ++off_[u + 2];
        ++off_[v + 2];
      }
      cursor_ = end;
      st.phase = "count degrees (edges)";
      st.progress = cursor_;
      st.total = m_;
      if (cursor_ == m_) {
        phase_ = kPrefix;
        cursor_ = 2;
      }
      break;
    }
    case kPrefix: {
      uint64_t end = std::min(n_ + 2, cursor_ + budget);
      for (uint64_t i = cursor_; i < end; ++i) off_[i] += off_[i - 1];
      cursor_ = end;
      st.phase = "prefix sums (vertices)";
      st.progress = cursor_;
      st.total = n_ + 2;
      if (cursor_ == n_ + 2) {
        phase_ = kFill;
        cursor_ = 0;
      }
      break;
    }
    case kFill: {
      uint64_t end = std::min(m_, cursor_ + budget);
      for (uint64_t i = cursor_; i < end; ++i) {
        uint32_t u, v;
        rmat_edge(seed_, i, n_, &u, &v);
        adj_[off_[u + 1]++] = v;
        adj_[off_[v + 1]++] = u;
      }
      cursor_ = end;
      st.phase = "fill adjacency (edges)";
      st.progress = cursor_;
      st.total = m_;
      if (cursor_ == m_) phase_ = kDone;
      break;
    }
    case kDone:
      st.phase = "done";
      st.progress = st.total = m_;
      break;
  }
  st.done = phase_ == kDone;
  return st;
}

uint64_t GraphStore::slice_end(uint64_t v0, uint64_t budget) const {
  const uint64_t* p = std::upper_bound(off_.get() + v0 + 1, off_.get() + n_, off_[v0] + budget);
  return std::max<uint64_t>(v0 + 1, static_cast<uint64_t>(p - off_.get()));
}

uint64_t GraphStore::gather(const uint64_t* cur, uint64_t* next, uint64_t v0, uint64_t v1) const {
  const uint64_t* off = off_.get();
  const uint32_t* adj = adj_.get();
  for (uint64_t v = v0; v < v1; ++v) {
    uint64_t s = 0;
    for (uint64_t e = off[v]; e < off[v + 1]; ++e) {
      uint32_t u = adj[e];
      uint64_t deg = off[u + 1] - off[u];  // > 0 in a sound graph (u has v as a neighbour)
      s += cur[u] / (deg ? deg : 1);       // a corrupted graph must fail verification, not trap
    }
    next[v] = pr_value(n_, s);
  }
  return off[v1] - off[v0];
}

void GraphStore::bfs_start(Bfs& b, uint64_t root) {
  ++b.epoch;
  b.state[root] = static_cast<uint64_t>(b.epoch) << 32;
  b.queue[0] = static_cast<uint32_t>(root);
  b.head = 0;
  b.tail = 1;
  b.edge = off_[root];
  b.reached = 1;
  b.active = true;
}

uint64_t GraphStore::bfs_advance(Bfs& b, uint64_t budget) {
  const uint64_t* off = off_.get();
  const uint32_t* adj = adj_.get();
  uint64_t edges = 0;
  const uint64_t tag = static_cast<uint64_t>(b.epoch) << 32;
  while (b.head < b.tail && edges < budget) {
    uint32_t u = b.queue[b.head];
    uint64_t end = off[u + 1];
    uint64_t d = (b.state[u] & 0xffffffffull) + 1;
    while (b.edge < end && edges < budget) {
      uint32_t w = adj[b.edge++];
      ++edges;
      if ((b.state[w] >> 32) != b.epoch) {
        b.state[w] = tag | d;
        b.queue[b.tail++] = w;
        ++b.reached;
      }
    }
    if (b.edge == end) {
      ++b.head;
      if (b.head < b.tail) b.edge = off[b.queue[b.head]];
    }
  }
  if (b.head == b.tail) b.active = false;
  return edges;
}

BfsResult GraphStore::bfs_step(uint32_t slot, uint64_t root_seed, uint64_t budget) {
  Bfs& b = *slots_[slot % slots_.size()];
  std::lock_guard lk(b.mu);
  BfsResult r;
  if (!b.active) bfs_start(b, root_seed % n_);
  r.edges = bfs_advance(b, budget);
  r.finished = !b.active;
  r.reached = b.reached;
  return r;
}

uint64_t GraphStore::pr_step(uint64_t budget, uint64_t* iterations) {
  uint64_t v0, v1;
  {
    std::lock_guard lk(pr_mu_);
    *iterations = pr_iterations_;
    if (pr_claim_ >= n_) return 0;  // every slice of this iteration is taken
    v0 = pr_claim_;
    v1 = slice_end(v0, budget);
    pr_claim_ = v1;
  }
  // cur/next swap only once every claimed slice is done, so this slice's view is stable.
  uint64_t edges = gather(pr_cur_.get(), pr_next_.get(), v0, v1);
  std::lock_guard lk(pr_mu_);
  pr_done_ += v1 - v0;
  if (pr_done_ == n_) {
    std::swap(pr_cur_, pr_next_);
    pr_claim_ = 0;
    pr_done_ = 0;
    ++pr_iterations_;
  }
  *iterations = pr_iterations_;
  return edges;
}

void GraphStore::verify_begin() {
  std::lock_guard lk(verify_mu_);
  vphase_ = kVDigest;
  vcursor_ = 0;
  viter_ = 0;
  v_csr_ = v_bfs_ = v_reached_ = v_maxd_ = v_pr_ = v_prsum_ = 0;
  vbfs_.active = false;
}

workload::VerifyStep GraphStore::verify_step(uint64_t budget) {
  std::lock_guard lk(verify_mu_);
  workload::VerifyStep st;
  switch (vphase_) {
    case kVDigest: {
      uint64_t total = n_ + 1 + 2 * m_;
      uint64_t end = std::min(total, vcursor_ + budget);
      for (uint64_t i = vcursor_; i < end; ++i) {
        if (i <= n_) {
          v_csr_ += pair_term(i, off_[i]);
        } else {
          uint64_t j = i - n_ - 1;
          v_csr_ += pair_term(j | (1ull << 63), adj_[j]);
        }
      }
      vcursor_ = end;
      if (vcursor_ == total) {
        vphase_ = kVBfs;
        vcursor_ = 0;
      }
      break;
    }
    case kVBfs:
      if (vcursor_ == 0) {
        bfs_start(vbfs_, 0);
        vcursor_ = 1;
      }
      bfs_advance(vbfs_, budget);
      if (!vbfs_.active) {
        vphase_ = kVBfsDigest;
        vcursor_ = 0;
      }
      break;
    case kVBfsDigest: {
      uint64_t end = std::min(n_, vcursor_ + budget);
      for (uint64_t v = vcursor_; v < end; ++v) {
        if ((vbfs_.state[v] >> 32) != vbfs_.epoch) continue;
        uint64_t d = vbfs_.state[v] & 0xffffffffull;
        v_bfs_ += pair_term(v, d);
        ++v_reached_;
        v_maxd_ = std::max(v_maxd_, d);
      }
      vcursor_ = end;
      if (vcursor_ == n_) {
        vphase_ = kVPrInit;
        vcursor_ = 0;
      }
      break;
    }
    case kVPrInit: {
      uint64_t end = std::min(n_, vcursor_ + budget);
      for (uint64_t v = vcursor_; v < end; ++v) vr_cur_[v] = kOne / n_;
      vcursor_ = end;
      if (vcursor_ == n_) {
        vphase_ = kVPr;
        vcursor_ = 0;
      }
      break;
    }
    case kVPr: {
      uint64_t v1 = slice_end(vcursor_, budget);
      gather(vr_cur_.get(), vr_next_.get(), vcursor_, v1);
      vcursor_ = v1;
      if (vcursor_ == n_) {
        std::swap(vr_cur_, vr_next_);
        vcursor_ = 0;
        if (++viter_ == kVerifyIterations) vphase_ = kVPrDigest;
      }
      break;
    }
    case kVPrDigest: {
      uint64_t end = std::min(n_, vcursor_ + budget);
      for (uint64_t v = vcursor_; v < end; ++v) {
        v_pr_ += pair_term(v, vr_cur_[v]);
        v_prsum_ += vr_cur_[v];
      }
      vcursor_ = end;
      if (vcursor_ == n_) vphase_ = kVDone;
      break;
    }
    case kVDone:
      break;
  }
  st.progress = static_cast<uint64_t>(vphase_);
  st.total = static_cast<uint64_t>(kVDone);
  st.done = vphase_ == kVDone;
  st.digest = pair_term(v_csr_, pair_term(v_bfs_, v_pr_));
  if (st.done) {
    st.detail = "graph: " + std::to_string(n_) + " vertices, " + std::to_string(m_) +
                " R-MAT edges, CSR digest " + std::to_string(v_csr_) + "; BFS from 0 reached " +
                std::to_string(v_reached_) + " vertices, depth " + std::to_string(v_maxd_) +
                ", digest " + std::to_string(v_bfs_) + "; PageRank after " +
                std::to_string(kVerifyIterations) + " iterations: digest " + std::to_string(v_pr_) +
                ", mass " +
                std::to_string(static_cast<double>(v_prsum_) / static_cast<double>(kOne));
  }
  return st;
}

uint32_t GraphStore::verified_distance(uint64_t v) const {
  if ((vbfs_.state[v] >> 32) != vbfs_.epoch) return UINT32_MAX;
  return static_cast<uint32_t>(vbfs_.state[v] & 0xffffffffull);
}

void GraphStore::corrupt() {
  if (m_ > 0) adj_[0] = static_cast<uint32_t>((adj_[0] + 1) % n_);
}

}  // namespace graph
