#include "btree/trusted/btree_engine.h"

#include <algorithm>
#include <climits>

namespace btree {

using workload::BuildStep;
using workload::VerifyStep;

namespace {

Leaf* new_leaf() {
  auto* l = new Leaf;
  l->leaf = true;
  l->n = 0;
  l->next = nullptr;
  return l;
}
Inner* new_inner() {
  auto* in = new Inner;
  in->leaf = false;
  in->n = 0;
  return in;
}
// Child index for key in an inner node: the number of separators <= key.
int child_index(const Inner* in, uint64_t key) {
  return static_cast<int>(std::upper_bound(in->keys, in->keys + in->n, key) - in->keys);
}

}  // namespace

BTree::BTree() : root_(new_leaf()) {
  rightmost_.push_back(root_);
}

BTree::~BTree() {
  free_rec(root_);
}

void BTree::free_rec(Node* n) {
  if (!n->leaf) {
    auto* in = static_cast<Inner*>(n);
    for (int i = 0; i <= in->n; ++i) free_rec(in->child[i]);
    delete in;
  } else {
    delete static_cast<Leaf*>(n);
  }
}

int BTree::depth() const {
  int d = 1;
  for (Node* n = root_; !n->leaf; n = static_cast<Inner*>(n)->child[0]) ++d;
  return d;
}

Leaf* BTree::first_leaf() const {
  Node* n = root_;
  while (!n->leaf) n = static_cast<Inner*>(n)->child[0];
  return static_cast<Leaf*>(n);
}

bool BTree::find(uint64_t key, uint64_t* val) const {
  const Node* n = root_;
  while (!n->leaf) {
    auto* in = static_cast<const Inner*>(n);
    n = in->child[child_index(in, key)];
  }
  auto* l = static_cast<const Leaf*>(n);
  const uint64_t* p = std::lower_bound(l->keys, l->keys + l->n, key);
  if (p == l->keys + l->n || *p != key) return false;
  if (val) *val = l->vals[p - l->keys];
  return true;
}

bool BTree::upsert(uint64_t key, uint64_t val, uint64_t* old) {
  bool inserted = false;
  Split s = insert_rec(root_, key, val, &inserted, old);
  if (s.happened) {
    Inner* r = new_inner();
    r->child[0] = root_;
    r->keys[0] = s.sep;
    r->child[1] = s.right;
    r->n = 1;
    root_ = r;
  }
  if (inserted) ++size_;
  rightmost_.clear();  // no more bulk appends after a random insert
  return inserted;
}

BTree::Split BTree::insert_rec(Node* n, uint64_t key, uint64_t val, bool* inserted, uint64_t* old) {
  if (n->leaf) {
    auto* l = static_cast<Leaf*>(n);
    int pos = static_cast<int>(std::lower_bound(l->keys, l->keys + l->n, key) - l->keys);
    if (pos < l->n && l->keys[pos] == key) {
      if (old) *old = l->vals[pos];
      l->vals[pos] = val;
      return {};
    }
    *inserted = true;
    if (l->n < kLeafCap) {
      std::copy_backward(l->keys + pos, l->keys + l->n, l->keys + l->n + 1);
      std::copy_backward(l->vals + pos, l->vals + l->n, l->vals + l->n + 1);
      l->keys[pos] = key;
      l->vals[pos] = val;
      ++l->n;
      return {};
    }
    // Split a full leaf: right half moves to a new leaf, then insert into the proper half.
    Leaf* r = new_leaf();
    int half = kLeafCap / 2;
    std::copy(l->keys + half, l->keys + kLeafCap, r->keys);
    std::copy(l->vals + half, l->vals + kLeafCap, r->vals);
    r->n = static_cast<uint16_t>(kLeafCap - half);
    l->n = static_cast<uint16_t>(half);
    r->next = l->next;
    l->next = r;
    Leaf* dst = key < r->keys[0] ? l : r;
    int p = static_cast<int>(std::lower_bound(dst->keys, dst->keys + dst->n, key) - dst->keys);
    std::copy_backward(dst->keys + p, dst->keys + dst->n, dst->keys + dst->n + 1);
    std::copy_backward(dst->vals + p, dst->vals + dst->n, dst->vals + dst->n + 1);
    dst->keys[p] = key;
    dst->vals[p] = val;
    ++dst->n;
    return {true, r->keys[0], r};
  }
  auto* in = static_cast<Inner*>(n);
  int ci = child_index(in, key);
  Split s = insert_rec(in->child[ci], key, val, inserted, old);
  if (!s.happened) return {};
  if (in->n < kInnerCap) {
    std::copy_backward(in->keys + ci, in->keys + in->n, in->keys + in->n + 1);
    std::copy_backward(in->child + ci + 1, in->child + in->n + 1, in->child + in->n + 2);
    in->keys[ci] = s.sep;
    in->child[ci + 1] = s.right;
    ++in->n;
    return {};
  }
  // Split a full inner node around its middle separator, which moves up.
  uint64_t keys[kInnerCap + 1];
  Node* kids[kInnerCap + 2];
  std::copy(in->keys, in->keys + ci, keys);
  keys[ci] = s.sep;
  std::copy(in->keys + ci, in->keys + kInnerCap, keys + ci + 1);
  std::copy(in->child, in->child + ci + 1, kids);
  kids[ci + 1] = s.right;
  std::copy(in->child + ci + 1, in->child + kInnerCap + 1, kids + ci + 2);
  int mid = (kInnerCap + 1) / 2;
  Inner* r = new_inner();
  in->n = static_cast<uint16_t>(mid);
  std::copy(keys, keys + mid, in->keys);
  std::copy(kids, kids + mid + 1, in->child);
  r->n = static_cast<uint16_t>(kInnerCap - mid);
  std::copy(keys + mid + 1, keys + kInnerCap + 1, r->keys);
  std::copy(kids + mid + 1, kids + kInnerCap + 2, r->child);
  return {true, keys[mid], r};
}

void BTree::bulk_append(uint64_t key, uint64_t val) {
  auto* l = static_cast<Leaf*>(rightmost_[0]);
  if (l->n < kBulkLeafFill) {
    l->keys[l->n] = key;
    l->vals[l->n] = val;
    ++l->n;
  } else {
    Leaf* nl = new_leaf();
    nl->keys[0] = key;
    nl->vals[0] = val;
    nl->n = 1;
    l->next = nl;
    rightmost_[0] = nl;
    push_up(1, key, nl);
  }
  ++size_;
}

// `right` is a new node at level-1 whose smallest key is sep; hang it under level `level`.
void BTree::push_up(size_t level, uint64_t sep, Node* right) {
  if (level == rightmost_.size()) {  // the old root got a right sibling: a new root
    Inner* r = new_inner();
    r->child[0] = root_;
    r->keys[0] = sep;
    r->child[1] = right;
    r->n = 1;
    rightmost_.push_back(r);
    root_ = r;
    return;
  }
  auto* in = static_cast<Inner*>(rightmost_[level]);
  if (in->n < kBulkInnerFill) {
    in->keys[in->n] = sep;
    in->child[in->n + 1] = right;
    ++in->n;
    return;
  }
  Inner* nin = new_inner();
  nin->child[0] = right;
  rightmost_[level] = nin;
  push_up(level + 1, sep, nin);
}

void walk_begin(const BTree& t, VerifyWalk& w) {
  w = VerifyWalk{};
  w.stack.push_back({t.root(), 0, 0, UINT64_MAX, false, 1});
  w.started = true;
}

bool walk_step(const BTree& t, VerifyWalk& w, uint64_t budget) {
  auto fail = [&](const std::string& e) {
    w.error = e;
    w.stack.clear();
    return true;
  };
  while (!w.stack.empty()) {
    if (budget == 0) return false;
    VerifyWalk::Frame f = w.stack.back();
    if (f.node->leaf) {
      w.stack.pop_back();
      auto* l = static_cast<Leaf*>(f.node);
      ++w.leaves;
      budget = budget > l->n ? budget - l->n : 0;
      if (l->n > kLeafCap) return fail("leaf with " + std::to_string(l->n) + " keys (capacity 64)");
      if (l->n == 0 && f.node != t.root()) return fail("empty leaf below the root");
      if (w.leaf_depth < 0) w.leaf_depth = f.depth;
      if (f.depth != w.leaf_depth) {
        return fail("leaves at depths " + std::to_string(w.leaf_depth) + " and " +
                    std::to_string(f.depth) + " (the tree is not balanced)");
      }
      if (w.prev_leaf != nullptr && w.prev_leaf->next != l) {
        return fail("leaf chain broken after leaf " + std::to_string(w.leaves - 1));
      }
      w.prev_leaf = l;
      w.min_leaf_fill = std::min<int>(w.min_leaf_fill, l->n);
      for (int i = 0; i < l->n; ++i) {
        uint64_t k = l->keys[i];
        if (w.have_prev && k <= w.prev_key) {
          return fail("keys out of order: " + std::to_string(k) + " after " +
                      std::to_string(w.prev_key));
        }
        if ((f.has_lo && k < f.lo) || k > f.hi) {
          return fail("key " + std::to_string(k) + " outside its parent's separator range");
        }
        w.prev_key = k;
        w.have_prev = true;
        w.sum += kv_term(k, l->vals[i]);
        ++w.count;
      }
      continue;
    }
    auto* in = static_cast<Inner*>(f.node);
    if (budget > 0) --budget;
    if (f.next_child == 0) {
      ++w.inners;
      if (in->n > kInnerCap) return fail("inner node with " + std::to_string(in->n) + " keys");
      for (int i = 0; i < in->n; ++i) {
        if (i > 0 && in->keys[i] <= in->keys[i - 1]) return fail("inner separators out of order");
        if ((f.has_lo && in->keys[i] < f.lo) || in->keys[i] > f.hi) {
          return fail("separator outside its parent's range");
        }
      }
    }
    int c = f.next_child;
    if (c > in->n) {
      w.stack.pop_back();
      continue;
    }
    w.stack.back().next_child = c + 1;
    uint64_t lo = c == 0 ? f.lo : in->keys[c - 1];
    bool has_lo = c == 0 ? f.has_lo : true;
    uint64_t hi = c == in->n ? f.hi : in->keys[c] - 1;
    w.stack.push_back({in->child[c], 0, lo, hi, has_lo, f.depth + 1});
  }
  if (w.error.empty() && w.prev_leaf != nullptr && w.prev_leaf->next != nullptr) {
    w.error = "the last leaf links to another leaf";
  }
  return true;
}

bool BtreeStore::init(uint64_t seed, uint64_t nkeys, std::string* err) {
  std::unique_lock lk(mu_);
  if (planned_) {
    *err = "btree already initialised";
    return false;
  }
  seed_ = seed;
  nkeys_ = nkeys;
  planned_ = true;
  return true;
}

BuildStep BtreeStore::build_step(uint64_t budget) {
  std::unique_lock lk(mu_);
  BuildStep s;
  s.phase = "bulk load";
  uint64_t end = std::min(nkeys_, appended_ + budget);
  for (; appended_ < end; ++appended_) {
    uint64_t k = bulk_key(seed_, appended_);
    uint64_t v = bulk_val(seed_, k);
    tree_.bulk_append(k, v);
    sum_ += kv_term(k, v);
  }
  if (appended_ == nkeys_ && !built_) {
    built_ = true;
    seq_ = 0;
    record(0, sum_);
  }
  s.done = built_;
  s.progress = appended_;
  s.total = nkeys_;
  return s;
}

BatchResult BtreeStore::run_batch(uint64_t seed, uint32_t ops, uint32_t write_permille) {
  BatchResult r;
  struct Write {
    uint64_t k, v;
    bool fresh;
  };
  std::vector<Write> writes;
  uint64_t rng = seed;
  {
    std::shared_lock lk(mu_);
    for (uint32_t i = 0; i < ops; ++i) {
      uint64_t x = workload::splitmix(rng);
      uint64_t idx = (x >> 11) % nkeys_;
      if (x % 1000 < write_permille) {
        bool fresh = (x >> 8) & 1;
        uint64_t k = fresh ? workload::splitmix(rng) % (nkeys_ * kKeyStride) : bulk_key(seed_, idx);
        writes.push_back({k, workload::splitmix(rng), fresh});
        continue;
      }
      uint64_t v;
      ++r.lookups;
      if (tree_.find(bulk_key(seed_, idx), &v)) ++r.found;
    }
  }
  std::unique_lock lk(mu_);
  uint64_t cap = nkeys_ + nkeys_ / 4;  // bounded growth: at most 25% more keys than loaded
  for (auto& w : writes) {
    uint64_t old = 0;
    if (w.fresh && tree_.size() >= cap) continue;
    if (tree_.upsert(w.k, w.v, &old)) {
      ++r.inserted;
      sum_ += kv_term(w.k, w.v);
    } else {
      sum_ += kv_term(w.k, w.v) - kv_term(w.k, old);
    }
    ++r.writes;
  }
  if (r.writes > 0) {
    ++seq_;
    record(seq_, sum_);
  }
  r.seq = seq_;
  r.sum = sum_;
  r.count = tree_.size();
  return r;
}

bool BtreeStore::anchor(uint64_t seq, uint64_t sum, uint64_t* cur_seq, uint64_t* cur_sum,
                        std::string* err) {
  std::shared_lock lk(mu_);
  *cur_seq = seq_;
  *cur_sum = sum_;
  if (seq > seq_ || seq + kRing <= seq_) {
    *err = "the host saw batch " + std::to_string(seq) + " but the enclave is at batch " +
           std::to_string(seq_) + " (state from another point in time)";
    return false;
  }
  auto e = ring_[seq % kRing];
  if (e.first != seq || e.second != sum) {
    *err = "checksum after batch " + std::to_string(seq) + " differs from what the host saw";
    return false;
  }
  return true;
}

void BtreeStore::verify_begin() {
  std::lock_guard vl(verify_mu_);
  std::shared_lock lk(mu_);
  walk_begin(tree_, walk_);
}

VerifyStep BtreeStore::verify_step(uint64_t budget, uint64_t host_seq, uint64_t host_sum) {
  std::lock_guard vl(verify_mu_);
  std::shared_lock lk(mu_);
  VerifyStep s;
  s.total = tree_.size();
  if (!walk_.started) {
    s.failed = true;
    s.detail = "verification not begun";
    return s;
  }
  bool fin = walk_step(tree_, walk_, budget);
  s.progress = walk_.count;
  s.digest = walk_.sum;
  if (!fin) return s;
  walk_.started = false;
  s.done = true;
  std::string e = walk_.error;
  if (e.empty() && walk_.count != tree_.size()) {
    e = "walk found " + std::to_string(walk_.count) + " keys, the tree counts " +
        std::to_string(tree_.size());
  }
  if (e.empty() && walk_.sum != sum_) {
    e = "checksum over all (key, value) pairs differs from the running checksum";
  }
  if (e.empty() && (host_seq != seq_ || host_sum != sum_)) {
    e = "the enclave is at batch " + std::to_string(seq_) + ", the host saw batch " +
        std::to_string(host_seq) + " with " + (host_sum == sum_ ? "the same" : "another") +
        " checksum";
  }
  if (!e.empty()) {
    s.failed = true;
    s.detail = "btree: " + e;
    return s;
  }
  s.detail = "btree: " + std::to_string(walk_.count) + " keys, " + std::to_string(walk_.leaves) +
             " leaves, " + std::to_string(walk_.inners) + " inner nodes, depth " +
             std::to_string(walk_.leaf_depth) + ", min leaf fill " +
             std::to_string(walk_.count ? walk_.min_leaf_fill : 0) + ", batch " +
             std::to_string(seq_);
  return s;
}

void BtreeStore::corrupt() {
  std::unique_lock lk(mu_);
  Leaf* l = tree_.first_leaf();
  if (l->n > 0) l->vals[0] ^= 1;
}

void BtreeStore::info(uint64_t* count, uint64_t* seq, uint64_t* sum, int* depth) {
  std::shared_lock lk(mu_);
  *count = tree_.size();
  *seq = seq_;
  *sum = sum_;
  *depth = tree_.depth();
}

}  // namespace btree
