// btree engine (TRUSTED, also compiled into host unit tests): a B+-tree of u64 -> u64 whose nodes
// come from the enclave heap (new/delete), plus the store around it: deterministic bulk load in
// bounded steps, batches of lookups and upserts, a running order-independent checksum over all
// (key, value) pairs with a history ring, and a resumable verifier (checksum + structure).
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include "workload_common/workload_util.h"

namespace btree {

inline constexpr int kLeafCap = 64;
inline constexpr int kInnerCap = 64;  // keys; children = keys + 1
inline constexpr int kBulkLeafFill = 48;
inline constexpr int kBulkInnerFill = 48;
inline constexpr uint64_t kKeyStride = 16;  // bulk key i lies in [i * 16, i * 16 + 16)

struct Node {
  bool leaf;
  uint16_t n;  // keys in use
};
struct Leaf : Node {
  uint64_t keys[kLeafCap];
  uint64_t vals[kLeafCap];
  Leaf* next;
};
struct Inner : Node {
  uint64_t keys[kInnerCap];  // keys[j] = smallest key under child[j + 1]
  Node* child[kInnerCap + 1];
};

// The tree itself: not thread-safe (BtreeStore locks).
class BTree {
 public:
  BTree();
  ~BTree();
  BTree(const BTree&) = delete;
  BTree& operator=(const BTree&) = delete;

  bool find(uint64_t key, uint64_t* val) const;
  // Insert or update; true if the key is new (then *old is untouched).
  bool upsert(uint64_t key, uint64_t val, uint64_t* old);
  // Bulk load: keys strictly increasing, on a tree that only ever got bulk_append calls.
  void bulk_append(uint64_t key, uint64_t val);
  uint64_t size() const { return size_; }
  int depth() const;
  Node* root() const { return root_; }
  Leaf* first_leaf() const;

 private:
  struct Split {
    bool happened = false;
    uint64_t sep = 0;
    Node* right = nullptr;
  };
  Split insert_rec(Node* n, uint64_t key, uint64_t val, bool* inserted, uint64_t* old);
  void push_up(size_t level, uint64_t sep, Node* right);
  static void free_rec(Node* n);

  Node* root_;
  uint64_t size_ = 0;
  std::vector<Node*> rightmost_;  // bulk load: the rightmost node of each level (0 = leaves)
};

// Resumable verification walk (depth-first, explicit stack): checksum, count and invariants.
struct VerifyWalk {
  struct Frame {
    Node* node;
    int next_child;
    uint64_t lo, hi;  // keys under node lie in [lo, hi]; hi inclusive (UINT64_MAX = open)
    bool has_lo;
    int depth;
  };
  std::vector<Frame> stack;
  uint64_t count = 0, sum = 0, leaves = 0, inners = 0, leaf_keys = 0;
  int leaf_depth = -1;
  uint64_t prev_key = 0;
  bool have_prev = false;
  Leaf* prev_leaf = nullptr;
  int min_leaf_fill = kLeafCap + 1;
  std::string error;
  bool started = false;
};

// Begin (reset) a walk over `t`.
void walk_begin(const BTree& t, VerifyWalk& w);
// Advance by about `budget` keys/nodes; true when finished (check w.error).
bool walk_step(const BTree& t, VerifyWalk& w, uint64_t budget);

struct BatchResult {
  uint64_t lookups = 0, found = 0, writes = 0, inserted = 0;
  uint64_t seq = 0, sum = 0, count = 0;  // after this batch
};

// The store behind the btree ECALLs: thread-safe.
class BtreeStore {
 public:
  static constexpr size_t kRing = 256;
  // Bulk key i and its value (deterministic from the seed).
  static uint64_t bulk_key(uint64_t seed, uint64_t i) {
    return i * kKeyStride + (workload::mix64(seed ^ (i * 0x9e3779b97f4a7c15ull)) % kKeyStride);
  }
  static uint64_t bulk_val(uint64_t seed, uint64_t key) { return workload::mix64(seed + key); }

  // Plan a bulk load of nkeys keys; false if already initialised.
  bool init(uint64_t seed, uint64_t nkeys, std::string* err);
  // Append up to `budget` keys; done when all nkeys are in.
  workload::BuildStep build_step(uint64_t budget);
  // ops operations from the generator seeded by `seed`: lookups of existing keys, and with
  // probability write_permille/1000 an upsert (update of an existing key or insert of a new one).
  BatchResult run_batch(uint64_t seed, uint32_t ops, uint32_t write_permille);
  // Is (seq, sum) the store's state after batch `seq`? (the host's carried view)
  bool anchor(uint64_t seq, uint64_t sum, uint64_t* cur_seq, uint64_t* cur_sum, std::string* err);
  // Verification in steps (the caller keeps the load away meanwhile). host_seq/host_sum: what
  // the host saw last; checked at the end against the running checksum and the walk.
  void verify_begin();
  workload::VerifyStep verify_step(uint64_t budget, uint64_t host_seq, uint64_t host_sum);
  // TESTING ONLY: change one value without updating the checksum.
  void corrupt();
  void info(uint64_t* count, uint64_t* seq, uint64_t* sum, int* depth);
  bool ready() const { return built_; }

 private:
  void record(uint64_t seq, uint64_t sum) { ring_[seq % kRing] = {seq, sum}; }

  mutable std::shared_mutex mu_;
  BTree tree_;
  uint64_t seed_ = 0, nkeys_ = 0, appended_ = 0;
  bool planned_ = false, built_ = false;
  uint64_t seq_ = 0, sum_ = 0;
  std::array<std::pair<uint64_t, uint64_t>, kRing> ring_{};
  std::mutex verify_mu_;
  VerifyWalk walk_;
};

inline uint64_t kv_term(uint64_t k, uint64_t v) {
  return workload::pair_term(k, v);
}

}  // namespace btree
