// graph enclave (TRUSTED): the GraphStore behind the graph ECALLs (graph_edl.h).
#include "graph/graph_edl.h"
#include "graph/trusted/graph_engine.h"
#include "trusted/enclave_edl.h"

CONSTMIG_ENCLAVE(graph, GRAPH_EDL)

using constmig::ByteReader;
using constmig::trusted::EcallIo;
namespace abi = constmig::abi;
using workload::put_u64;

namespace {

graph::GraphStore& store() {
  static graph::GraphStore* s = new graph::GraphStore();  // in the enclave heap; migrates
  return *s;
}
std::mutex g_build_mu;

bool ready(EcallIo& io) {
  if (!store().ready()) {
    io.error = "graph not built: call gr_init and gr_build until done";
    return false;
  }
  return true;
}

}  // namespace

int32_t ecall_gr_init(EcallIo& io) {
  ByteReader r(io.in);
  uint64_t seed = r.u64(), vertices = r.u64();
  uint32_t slots = r.u32();
  if (!r.at_end()) {
    io.error = "gr_init expects u64 seed, u64 vertices, u32 bfs_slots";
    return abi::kEcallBadInput;
  }
  std::lock_guard lk(g_build_mu);
  std::string err;
  if (!store().init(seed, vertices, slots, &err)) {
    io.error = err;
    return abi::kEcallBadInput;
  }
  return abi::kEcallOk;
}

int32_t ecall_gr_build(EcallIo& io) {
  ByteReader r(io.in);
  uint64_t budget = r.u64();
  if (!r.at_end() || budget == 0) {
    io.error = "gr_build expects u64 budget (> 0)";
    return abi::kEcallBadInput;
  }
  std::lock_guard lk(g_build_mu);
  if (store().vertices() == 0) {
    io.error = "graph: call gr_init first";
    return abi::kEcallAppError;
  }
  store().build_step(budget).encode(io.out);
  return abi::kEcallOk;
}

int32_t ecall_gr_bfs(EcallIo& io) {
  if (!ready(io)) return abi::kEcallAppError;
  ByteReader r(io.in);
  uint32_t slot = r.u32();
  uint64_t root_seed = r.u64(), budget = r.u64();
  if (!r.at_end() || budget == 0 || budget > (1u << 24)) {
    io.error = "gr_bfs expects u32 slot, u64 root_seed, u64 budget (1..2^24)";
    return abi::kEcallBadInput;
  }
  graph::BfsResult b = store().bfs_step(slot, root_seed, budget);
  put_u64(io.out, b.edges);
  put_u64(io.out, b.reached);
  io.out.push_back(b.finished ? 1 : 0);
  return abi::kEcallOk;
}

int32_t ecall_gr_pagerank(EcallIo& io) {
  if (!ready(io)) return abi::kEcallAppError;
  ByteReader r(io.in);
  uint64_t budget = r.u64();
  if (!r.at_end() || budget == 0 || budget > (1u << 24)) {
    io.error = "gr_pagerank expects u64 budget (1..2^24)";
    return abi::kEcallBadInput;
  }
  uint64_t it = 0;
  put_u64(io.out, store().pr_step(budget, &it));
  put_u64(io.out, it);
  return abi::kEcallOk;
}

int32_t ecall_gr_verify(EcallIo& io) {
  if (!ready(io)) return abi::kEcallAppError;
  ByteReader r(io.in);
  uint8_t begin = r.u8();
  uint64_t budget = r.u64();
  if (!r.at_end() || budget == 0) {
    io.error = "gr_verify expects u8 begin, u64 budget (> 0)";
    return abi::kEcallBadInput;
  }
  if (begin) store().verify_begin();
  store().verify_step(budget).encode(io.out);
  return abi::kEcallOk;
}

int32_t ecall_gr_corrupt(EcallIo& io) {
  if (!ready(io)) return abi::kEcallAppError;
  store().corrupt();
  return abi::kEcallOk;
}

int32_t ecall_gr_info(EcallIo& io) {
  put_u64(io.out, store().vertices());
  put_u64(io.out, store().edges());
  return abi::kEcallOk;
}
