// constmig Access Tracker: an LLVM 14 new-pass-manager plugin (untrusted build tooling).
//
// Instruments every memory access of enclave code that may touch the enclave heap with a check
// of the in-enclave restored-bitmap, so that a live-migration target can run before its heap
// has arrived: a missing page is fetched (via the runtime's __constmig_at_fetch) before the
// access happens. Loops with per-iteration checks are versioned on the flag (an unchecked clone
// runs when no migration is pending), and affine accesses in the checked copy are checked once
// per loop over their whole range (capped). See docs/access_tracker.md for the check's shape,
// the versioning, range, hoisting and merging rules and why they are safe.
//
// Runtime contract (C linkage, hidden visibility, defined by the enclave runtime):
//   uint8_t   __constmig_at_active;     only ever 1 -> 0 while app code runs
//   uint64_t  __constmig_at_heap_base;  heap = [base, base + size)
//   uint64_t  __constmig_at_heap_size;
//   uint64_t* __constmig_at_bitmap;     page p restored iff bit (p & 63) of word p >> 6 is set;
//                                       bits only go 0 -> 1 while app code runs
//   void      __constmig_at_fetch(const void* addr, uint64_t len);
//                                       returns once every heap page of the range is restored

#include <cstdint>
#include <cstdlib>
#include <functional>
#include <map>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/PostOrderIterator.h"
#include "llvm/ADT/SmallPtrSet.h"
#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/ADT/Triple.h"
#include "llvm/Analysis/LoopInfo.h"
#include "llvm/Analysis/ScalarEvolution.h"
#include "llvm/Analysis/ScalarEvolutionExpressions.h"
#include "llvm/Analysis/TargetLibraryInfo.h"
#include "llvm/Analysis/ValueTracking.h"
#include "llvm/IR/Constants.h"
#include "llvm/IR/DataLayout.h"
#include "llvm/IR/Dominators.h"
#include "llvm/IR/Function.h"
#include "llvm/IR/GlobalAlias.h"
#include "llvm/IR/GlobalVariable.h"
#include "llvm/IR/IRBuilder.h"
#include "llvm/IR/Instructions.h"
#include "llvm/IR/IntrinsicInst.h"
#include "llvm/IR/MDBuilder.h"
#include "llvm/IR/Module.h"
#include "llvm/IR/PassManager.h"
#include "llvm/Passes/PassBuilder.h"
#include "llvm/Passes/PassPlugin.h"
#include "llvm/Support/MathExtras.h"
#include "llvm/Support/raw_ostream.h"
#include "llvm/Transforms/Utils/BasicBlockUtils.h"
#include "llvm/Transforms/Utils/Cloning.h"
#include "llvm/Transforms/Utils/LoopUtils.h"
#include "llvm/Transforms/Utils/ScalarEvolutionExpander.h"
#include "llvm/Transforms/Utils/ValueMapper.h"

using namespace llvm;

namespace {

constexpr char kPassName[] = "constmig-access-tracker";
constexpr char kRuntimePrefix[] = "__constmig_at_";
constexpr char kNoCheckAnnotation[] = "constmig_no_access_check";
constexpr char kNoCheckAttr[] = "constmig-no-access-check";
// Set on every function this pass has processed, so that running the pass twice (opt on already
// instrumented IR, LTO) never instruments twice.
constexpr char kDoneAttr[] = "constmig-at-done";

constexpr uint64_t kPageSize = 4096;
constexpr unsigned kPageShift = 12;
// A constant range at most this long touches at most two pages: the inline check tests the
// first and the last. Longer (or dynamic) ranges go to the runtime's fetch, which tests the
// bitmap itself before doing anything slow.
constexpr uint64_t kMaxInlineRange = kPageSize;
// Accesses off one base in one block share a check when their combined span is below this.
constexpr uint64_t kMaxMergedSpan = kPageSize;
// Loop versioning: a loop (nest) with per-iteration checks is cloned, and its preheader tests
// the flag once: clear, the unchecked clone runs; set, the checked loop. Only loops of at most
// this many instructions are cloned (else their subloops are tried), to cap code growth.
constexpr unsigned kMaxVersionedInsts = 400;
// Range checks: an affine access in a loop with a computable trip count is checked once, for
// its whole range, before the loop, if that range is at most this long (64 granules of
// 64 KiB): a loop over a larger array falls back to per-iteration checks instead of waiting for
// all of it before its first iteration. CONSTMIG_AT_RANGE_CAP (bytes, environment, read by the
// pass) overrides it; 0 turns range checks off.
constexpr uint64_t kDefaultRangeCap = 64 * 64 * 1024;
// Accesses of one loop whose starts are a constant distance apart share one range when their
// per-iteration span is at most this.
constexpr int64_t kMaxRangeGroupSpan = 4096;

struct Stats {
  uint64_t Functions = 0;          // functions instrumented
  uint64_t SkippedFunctions = 0;   // excluded by name, annotation or attribute (with bodies)
  uint64_t Accesses = 0;           // memory operands seen in instrumented functions
  uint64_t SkippedStack = 0;       // underlying object is an alloca / byval argument
  uint64_t SkippedGlobal = 0;      // underlying object is a global (or code, or null)
  uint64_t SkippedAddrSpace = 0;   // non-zero address space (segment-relative on x86)
  uint64_t Instrumented = 0;       // accesses covered by a check
  uint64_t Hoisted = 0;            // accesses whose check moved to a loop preheader
  uint64_t Merged = 0;             // accesses sharing another access's check (same block)
  uint64_t Dominated = 0;          // checks dropped: an identical or wider check dominates
  uint64_t Checks = 0;             // checks emitted
  uint64_t InlineChecks = 0;       //   of which test the bitmap inline
  uint64_t HelperChecks = 0;       //   of which call the shared __constmig_at_check
  uint64_t RangeChecks = 0;        //   of which hand a dynamic / long range to fetch
  uint64_t VersionedLoops = 0;     // loops cloned into a checked and an unchecked version
  uint64_t UnversionedLoops = 0;   // innermost loops with checks left unversioned (size, shape)
  uint64_t LoopRanges = 0;         // whole-loop range checks emitted in preheaders
  uint64_t LoopRanged = 0;         // accesses covered by them (no check left in the loop)
  uint64_t LoopRangedGuarded = 0;  // ... and those that keep a check for trip counts over the cap
  uint64_t LoopRangeOverCap = 0;   // affine accesses whose (constant) range exceeds the cap
};

// One memory operand of one instruction.
struct Access {
  Instruction* Inst = nullptr;
  Value* Ptr = nullptr;  // pointer (or vector of pointers when PerLane)
  uint64_t Size = 0;     // constant length in bytes, when Len == nullptr
  Value* Len = nullptr;  // dynamic length (integer), or nullptr
  bool PerLane = false;  // gather/scatter: each lane of Ptr is accessed with Size bytes
  uint64_t Align = 1;    // known alignment of Ptr
};

// One check to emit: the range [Base + Lo, Base + Hi) (or Base + Lo with dynamic Len).
struct Check {
  Instruction* InsertPt = nullptr;
  BasicBlock* Block = nullptr;  // InsertPt's block
  Value* Base = nullptr;
  int64_t Lo = 0;
  int64_t Hi = 0;
  Value* Len = nullptr;
  bool PerLane = false;
  uint64_t LaneSize = 0;
  uint64_t BaseAlign = 1;  // known alignment of Base + Lo
  DebugLoc Loc;
  unsigned Accesses = 1;
  bool Dead = false;
  bool InLoop = false;     // in a loop (after hoisting): gets the inline bitmap test
  bool LoopRange = false;  // a whole-loop range (Len, constant or not): emitLoopRangeTest
  // When set, the check runs only if this i1 (defined before InsertPt) is true as well as the
  // flag: a range check in a preheader runs for trip counts under the cap, and the accesses it
  // covers keep a per-iteration check guarded by the opposite. A guarded check never covers
  // (rule c) or absorbs (rule b) an unguarded one.
  Value* Guard = nullptr;
};

// Where the range/bitmap test of a short constant range goes (CONSTMIG_AT_INLINE_CHECKS):
//   loops (default): inline in loops, a call to the shared helper elsewhere
//   all:             inline everywhere (fastest during a migration, largest code)
//   none:            always the helper (smallest code)
enum class InlineMode { Loops, All, None };
InlineMode inlineMode() {
  const char* Env = std::getenv("CONSTMIG_AT_INLINE_CHECKS");
  if (!Env) return InlineMode::Loops;
  StringRef V(Env);
  if (V == "all") return InlineMode::All;
  if (V == "none") return InlineMode::None;
  return InlineMode::Loops;
}

// CONSTMIG_AT_LOOP_VERSIONING=0 (environment, read by the pass) turns loop versioning off.
bool loopVersioningEnabled() {
  const char* Env = std::getenv("CONSTMIG_AT_LOOP_VERSIONING");
  return !Env || StringRef(Env) != "0";
}

// CONSTMIG_AT_REPORT: 1 prints one line of figures per module, 2 also names each innermost loop
// that keeps per-iteration checks without being versioned.
int reportLevel() {
  const char* Env = std::getenv("CONSTMIG_AT_REPORT");
  if (!Env || !*Env || StringRef(Env) == "0") return 0;
  return StringRef(Env) == "2" ? 2 : 1;
}

uint64_t rangeCap() {
  const char* Env = std::getenv("CONSTMIG_AT_RANGE_CAP");
  if (!Env || !*Env) return kDefaultRangeCap;
  char* End = nullptr;
  unsigned long long V = std::strtoull(Env, &End, 0);
  if (End == Env || *End != 0) return kDefaultRangeCap;
  return static_cast<uint64_t>(V);
}

class AccessTracker {
 public:
  explicit AccessTracker(Module& M) : M(M), DL(M.getDataLayout()), Ctx(M.getContext()) {}

  bool run(ModuleAnalysisManager& MAM);
  const Stats& stats() const { return S; }

 private:
  void collectNoCheckAnnotations();
  bool shouldSkip(const Function& F) const;
  bool instrumentFunction(Function& F, FunctionAnalysisManager& FAM);
  void collectAccesses(Instruction& I, const TargetLibraryInfo& TLI, SmallVectorImpl<Access>& Out);
  void addAccess(Instruction& I, Value* Ptr, uint64_t Size, Value* Len, uint64_t Align,
                 SmallVectorImpl<Access>& Out);
  // 0: may be heap; otherwise which kind of provably-not-heap memory.
  enum class NotHeap { No, Stack, Global, AddrSpace };
  NotHeap classify(const Access& A, LoopInfo& LI) const;
  void emit(const Check& C);
  Value* testPage(IRBuilder<>& B, Value* Bitmap, Value* Off);
  // Emits the heap-range and bitmap test of [Addr, Addr + Size) at B, and the fetch of that
  // range if a page is missing; B ends up in the block after it.
  void emitRangeTest(IRBuilder<>& B, Instruction* Term, Value* Addr, uint64_t Size, bool OnePage);
  // A loop's whole range [Addr, Addr + Len): nothing if it misses the heap or lies in at most two
  // restored pages, else the runtime's fetch. Its start need not be an accessed address (a
  // conditional access's first iteration), so it may start below the heap: it is clipped.
  void emitLoopRangeTest(IRBuilder<>& B, Instruction* Term, Value* Addr, Value* Len);
  Function* checkHelper();
  void declareRuntime();
  // Loop versioning on the flag (see instrumentFunction); returns true if a loop was cloned.
  bool versionLoops(Function& F, DominatorTree& DT, LoopInfo& LI, const TargetLibraryInfo& TLI,
                    SmallPtrSetImpl<const BasicBlock*>& Unchecked);
  bool loopNeedsChecks(Loop& L, LoopInfo& LI, const TargetLibraryInfo& TLI);
  static bool canVersion(const Loop& L);
  bool versionLoop(Function& F, Loop& L, DominatorTree& DT, LoopInfo& LI,
                   SmallPtrSetImpl<const BasicBlock*>& Unchecked);

  Module& M;
  const DataLayout& DL;
  LLVMContext& Ctx;
  Stats S;
  SmallPtrSet<const Function*, 8> NoCheck;

  // Runtime symbols (created lazily, once per module).
  Constant* Active = nullptr;
  Constant* HeapBase = nullptr;
  Constant* HeapSize = nullptr;
  Constant* Bitmap = nullptr;
  FunctionCallee Fetch;
  Function* Helper = nullptr;
  const InlineMode Mode = inlineMode();
  const uint64_t RangeCap = rangeCap();
  const bool Versioning = loopVersioningEnabled();
  MDNode* Unlikely = nullptr;
};

void AccessTracker::collectNoCheckAnnotations() {
  // __attribute__((annotate("..."))) on a function lands in llvm.global.annotations as
  // { fn, string, file, line, args } structs.
  GlobalVariable* GA = M.getNamedGlobal("llvm.global.annotations");
  if (!GA || !GA->hasInitializer()) return;
  auto* Arr = dyn_cast<ConstantArray>(GA->getInitializer());
  if (!Arr) return;
  for (Value* Op : Arr->operands()) {
    auto* Entry = dyn_cast<ConstantStruct>(Op);
    if (!Entry || Entry->getNumOperands() < 2) continue;
    auto* Fn = dyn_cast<Function>(Entry->getOperand(0)->stripPointerCasts());
    auto* Str = dyn_cast<GlobalVariable>(Entry->getOperand(1)->stripPointerCasts());
    if (!Fn || !Str || !Str->hasInitializer()) continue;
    auto* Data = dyn_cast<ConstantDataSequential>(Str->getInitializer());
    if (Data && Data->isCString() && Data->getAsCString() == kNoCheckAnnotation) {
      NoCheck.insert(Fn);
    }
  }
}

bool AccessTracker::shouldSkip(const Function& F) const {
  return F.getName().startswith(kRuntimePrefix) || NoCheck.count(&F) != 0 ||
         F.hasFnAttribute(kNoCheckAttr) || F.hasFnAttribute(Attribute::Naked) ||
         F.hasFnAttribute(kDoneAttr);
}

void AccessTracker::declareRuntime() {
  if (Active) return;
  auto global = [&](StringRef Name, Type* Ty) {
    return M.getOrInsertGlobal(Name, Ty, [&] {
      auto* GV = new GlobalVariable(M, Ty, /*isConstant=*/false, GlobalValue::ExternalLinkage,
                                    nullptr, Name);
      GV->setVisibility(GlobalValue::HiddenVisibility);
      return GV;
    });
  };
  Type* I8 = Type::getInt8Ty(Ctx);
  Type* I64 = Type::getInt64Ty(Ctx);
  Active = global("__constmig_at_active", I8);
  HeapBase = global("__constmig_at_heap_base", I64);
  HeapSize = global("__constmig_at_heap_size", I64);
  Bitmap = global("__constmig_at_bitmap", I64->getPointerTo());

  const bool Existed = M.getFunction("__constmig_at_fetch") != nullptr;
  Fetch = M.getOrInsertFunction(
      "__constmig_at_fetch",
      FunctionType::get(Type::getVoidTy(Ctx), {Type::getInt8PtrTy(Ctx), I64}, false));
  if (auto* F = dyn_cast<Function>(Fetch.getCallee()); F && !Existed) {
    F->setVisibility(GlobalValue::HiddenVisibility);
    F->addFnAttr(Attribute::Cold);
    F->addFnAttr(Attribute::NoUnwind);
  }
  // The slow side of every branch the pass adds: taken about once per page per migration.
  Unlikely = MDBuilder(Ctx).createBranchWeights(1, 1 << 20);
}

void AccessTracker::addAccess(Instruction& I, Value* Ptr, uint64_t Size, Value* Len, uint64_t Align,
                              SmallVectorImpl<Access>& Out) {
  if (!Len && Size == 0) return;  // touches nothing
  if (auto* C = dyn_cast_or_null<ConstantInt>(Len)) {
    if (C->isZero()) return;
    if (C->getValue().getActiveBits() <= 63) {
      Size = C->getZExtValue();
      Len = nullptr;
    }
  }
  Access A;
  A.Inst = &I;
  A.Ptr = Ptr;
  A.Size = Size;
  A.Len = Len;
  A.Align = std::max<uint64_t>(Align, 1);
  Out.push_back(A);
}

void AccessTracker::collectAccesses(Instruction& I, const TargetLibraryInfo& TLI,
                                    SmallVectorImpl<Access>& Out) {
  // Scalable vectors (not produced for x86) get a dynamic length vscale * min size.
  auto size = [&](Type* Ty, Value*& Len) -> uint64_t {
    TypeSize TS = DL.getTypeStoreSize(Ty);
    if (!TS.isScalable()) return TS.getFixedSize();
    IRBuilder<> B(&I);
    Len = B.CreateVScale(ConstantInt::get(Type::getInt64Ty(Ctx), TS.getKnownMinSize()));
    return 0;
  };
  Value* Len = nullptr;
  if (auto* L = dyn_cast<LoadInst>(&I)) {
    uint64_t N = size(L->getType(), Len);
    addAccess(I, L->getPointerOperand(), N, Len, L->getAlign().value(), Out);
  } else if (auto* St = dyn_cast<StoreInst>(&I)) {
    uint64_t N = size(St->getValueOperand()->getType(), Len);
    addAccess(I, St->getPointerOperand(), N, Len, St->getAlign().value(), Out);
  } else if (auto* RMW = dyn_cast<AtomicRMWInst>(&I)) {
    uint64_t N = size(RMW->getValOperand()->getType(), Len);
    addAccess(I, RMW->getPointerOperand(), N, Len, RMW->getAlign().value(), Out);
  } else if (auto* CX = dyn_cast<AtomicCmpXchgInst>(&I)) {
    uint64_t N = size(CX->getCompareOperand()->getType(), Len);
    addAccess(I, CX->getPointerOperand(), N, Len, CX->getAlign().value(), Out);
  } else if (auto* MI = dyn_cast<AnyMemIntrinsic>(&I)) {
    // memcpy/memmove/memset (plain, .inline, element-wise atomic): destination and source.
    addAccess(I, MI->getRawDest(), 0, MI->getLength(), MI->getDestAlign().valueOrOne().value(),
              Out);
    if (auto* MT = dyn_cast<AnyMemTransferInst>(MI)) {
      addAccess(I, MT->getRawSource(), 0, MT->getLength(),
                MT->getSourceAlign().valueOrOne().value(), Out);
    }
  } else if (auto* II = dyn_cast<IntrinsicInst>(&I)) {
    switch (II->getIntrinsicID()) {
      case Intrinsic::masked_load:  // (ptr, align, mask, passthru): whole vector as bound
        addAccess(I, II->getArgOperand(0), size(II->getType(), Len), Len, 1, Out);
        break;
      case Intrinsic::masked_store:  // (val, ptr, align, mask)
        addAccess(I, II->getArgOperand(1), size(II->getArgOperand(0)->getType(), Len), Len, 1, Out);
        break;
      case Intrinsic::masked_expandload:  // (ptr, mask, passthru): at most the whole vector
        addAccess(I, II->getArgOperand(0), size(II->getType(), Len), Len, 1, Out);
        break;
      case Intrinsic::masked_compressstore:  // (val, ptr, mask)
        addAccess(I, II->getArgOperand(1), size(II->getArgOperand(0)->getType(), Len), Len, 1, Out);
        break;
      case Intrinsic::masked_gather:     // (ptrs, align, mask, passthru)
      case Intrinsic::masked_scatter: {  // (val, ptrs, align, mask)
        const bool Gather = II->getIntrinsicID() == Intrinsic::masked_gather;
        Value* Ptrs = II->getArgOperand(Gather ? 0 : 1);
        Type* Elt = (Gather ? II->getType() : II->getArgOperand(0)->getType())->getScalarType();
        TypeSize TS = DL.getTypeStoreSize(Elt);
        if (isa<FixedVectorType>(Ptrs->getType()) && !TS.isScalable()) {
          Access A;
          A.Inst = &I;
          A.Ptr = Ptrs;
          A.Size = TS.getFixedSize();
          A.PerLane = true;
          Out.push_back(A);
        }
        break;
      }
      default:
        break;  // other intrinsics do not access memory the way a program does
    }
  } else if (auto* CB = dyn_cast<CallBase>(&I)) {
    // Arguments passed by value are copied out of the caller's memory at the call.
    for (unsigned Arg = 0; Arg < CB->arg_size(); ++Arg) {
      if (Type* ByVal = CB->getParamByValType(Arg)) {
        addAccess(I, CB->getArgOperand(Arg), DL.getTypeAllocSize(ByVal).getKnownMinSize(), nullptr,
                  1, Out);
      }
    }
    // Library functions with a known range, called as functions (not as intrinsics): the libc
    // inside the image is not compiled with this pass, so check the range at the call.
    // (memchr, strlen & co. are left out: their length is an upper bound that can be huge.)
    LibFunc LF;
    Function* Callee = CB->getCalledFunction();
    if (Callee && TLI.getLibFunc(*Callee, LF) && TLI.has(LF)) {
      switch (LF) {
        case LibFunc_memcpy:
        case LibFunc_mempcpy:
        case LibFunc_memmove:
        case LibFunc_memcmp:
        case LibFunc_bcmp:
          addAccess(I, CB->getArgOperand(0), 0, CB->getArgOperand(2), 1, Out);
          addAccess(I, CB->getArgOperand(1), 0, CB->getArgOperand(2), 1, Out);
          break;
        case LibFunc_memset:
          addAccess(I, CB->getArgOperand(0), 0, CB->getArgOperand(2), 1, Out);
          break;
        default:
          break;
      }
    }
  }
}

AccessTracker::NotHeap AccessTracker::classify(const Access& A, LoopInfo& LI) const {
  Type* PtrTy = A.Ptr->getType()->getScalarType();
  if (!PtrTy->isPointerTy()) return NotHeap::No;
  // Non-zero address spaces are segment-relative on x86 (fs/gs): never the enclave heap, and
  // their integer value is not a linear address the bitmap could be indexed with.
  if (PtrTy->getPointerAddressSpace() != 0) return NotHeap::AddrSpace;
  if (A.PerLane) return NotHeap::No;
  SmallVector<const Value*, 4> Objects;
  getUnderlyingObjects(A.Ptr, Objects, &LI, /*MaxLookup=*/8);
  bool SawStack = false;
  for (const Value* O : Objects) {
    if (isa<AllocaInst>(O)) {
      SawStack = true;
      continue;
    }
    if (const auto* Arg = dyn_cast<Argument>(O)) {
      // A byval / inalloca / preallocated argument is a copy in the callee's frame.
      if (Arg->hasPassPointeeByValueCopyAttr()) {
        SawStack = true;
        continue;
      }
      return NotHeap::No;
    }
    if (const auto* GA = dyn_cast<GlobalAlias>(O)) {
      if (isa_and_nonnull<GlobalVariable>(GA->getAliaseeObject())) continue;
      return NotHeap::No;
    }
    // Globals live in the image's .data/.bss (or TLS), functions in its text; a null pointer
    // is never the heap (the heap starts at base + 1 GiB).
    if (isa<GlobalVariable>(O) || isa<Function>(O) || isa<ConstantPointerNull>(O) ||
        isa<UndefValue>(O)) {
      continue;
    }
    return NotHeap::No;
  }
  if (Objects.empty()) return NotHeap::No;
  return SawStack ? NotHeap::Stack : NotHeap::Global;
}

Value* AccessTracker::testPage(IRBuilder<>& B, Value* BitmapPtr, Value* Off) {
  Type* I64 = B.getInt64Ty();
  Value* Page = B.CreateLShr(Off, kPageShift, "cm.at.page");
  Value* WordPtr = B.CreateInBoundsGEP(I64, BitmapPtr, B.CreateLShr(Page, 6));
  // Acquire: a set bit must make the restored page's contents visible (a plain mov on x86).
  LoadInst* Word = B.CreateAlignedLoad(I64, WordPtr, MaybeAlign(8), "cm.at.word");
  Word->setAtomic(AtomicOrdering::Acquire);
  Value* Bit = B.CreateLShr(Word, B.CreateAnd(Page, 63));
  return B.CreateTrunc(Bit, B.getInt1Ty());
}

void AccessTracker::emit(const Check& C) {
  Type* I8 = Type::getInt8Ty(Ctx);
  Type* I64 = Type::getInt64Ty(Ctx);
  Type* I8Ptr = Type::getInt8PtrTy(Ctx);
  auto fetch = [&](IRBuilder<>& B, Value* Addr, Value* Len) {
    CallInst* Call = B.CreateCall(Fetch, {Addr, Len});
    Call->addFnAttr(Attribute::Cold);
    Call->addFnAttr(Attribute::NoUnwind);
  };

  // Fast path: one load of the flag and one branch that is never taken outside a migration.
  IRBuilder<> B(C.InsertPt);
  B.SetCurrentDebugLocation(C.Loc);
  LoadInst* Act = B.CreateAlignedLoad(I8, ConstantExpr::getPointerCast(Active, I8Ptr),
                                      MaybeAlign(1), "cm.at.active");
  // A plain load (the contract allows it: the flag only falls): the backend folds it into
  // `cmpb $0, __constmig_at_active(%rip)`. Ordering after commit: no IR pass runs after this
  // one, and x86 never reorders a load with a later load.
  Instruction* ActiveT =
      SplitBlockAndInsertIfThen(B.CreateICmpNE(Act, ConstantInt::get(I8, 0)), C.InsertPt,
                                /*Unreachable=*/false, Unlikely);
  ActiveT->getParent()->setName("cm.at.check");
  C.InsertPt->getParent()->setName("cm.at.cont");
  if (C.Guard) {
    // A second branch inside the cold block (not an `and` of both): the backend then sees the
    // rest as rarely run as an unguarded check's, and keeps the loop's registers out of it.
    ActiveT = SplitBlockAndInsertIfThen(C.Guard, ActiveT, /*Unreachable=*/false);
    ActiveT->getParent()->setName("cm.at.guarded");
  }
  B.SetInsertPoint(ActiveT);

  if (C.PerLane) {
    // Gather/scatter: the runtime's fetch tests each lane's page itself.
    auto* VT = cast<FixedVectorType>(C.Base->getType());
    for (unsigned Lane = 0; Lane < VT->getNumElements(); ++Lane) {
      Value* P = B.CreatePointerCast(B.CreateExtractElement(C.Base, Lane), I8Ptr);
      fetch(B, P, ConstantInt::get(I64, C.LaneSize));
    }
    return;
  }

  Value* Addr = B.CreatePointerCast(C.Base, I8Ptr);
  if (C.Lo != 0) Addr = B.CreateGEP(I8, Addr, ConstantInt::get(I64, C.Lo), "cm.at.addr");
  if (C.LoopRange) {
    emitLoopRangeTest(B, ActiveT, Addr, B.CreateZExtOrTrunc(C.Len, I64));
    return;
  }
  if (C.Len) {
    // Dynamic length (memcpy/memmove/memset and friends): the runtime's fetch tests the range
    // against the bitmap itself, cheaply, before doing anything slow, and is a no-op for a
    // range outside the heap or of length 0, so the inline part is only the flag test.
    fetch(B, Addr, B.CreateZExtOrTrunc(C.Len, I64));
    return;
  }
  const uint64_t Size = static_cast<uint64_t>(C.Hi - C.Lo);
  if (Size > kMaxInlineRange) {
    fetch(B, Addr, ConstantInt::get(I64, Size));
    return;
  }

  // An access aligned to its power-of-two size cannot cross a page: one bit is enough.
  const bool OnePage = isPowerOf2_64(Size) && C.BaseAlign >= Size;
  if (Mode == InlineMode::All || (Mode == InlineMode::Loops && C.InLoop)) {
    emitRangeTest(B, ActiveT, Addr, Size, OnePage);
    return;
  }
  // Out of loops: the cold side is just a call of the module's shared helper, whose
  // preserve_most convention keeps the caller's registers (the call site stays tiny).
  CallInst* Call = B.CreateCall(checkHelper(), {Addr, ConstantInt::get(I64, Size)});
  Call->setCallingConv(CallingConv::PreserveMost);
}

void AccessTracker::emitRangeTest(IRBuilder<>& B, Instruction* Term, Value* Addr, uint64_t Size,
                                  bool OnePage) {
  Type* I64 = Type::getInt64Ty(Ctx);
  auto load = [&](Type* Ty, Constant* G, const char* Name) {
    return B.CreateLoad(Ty, ConstantExpr::getPointerCast(G, Ty->getPointerTo()), Name);
  };
  // Migration pending: is the range in the heap, and are its first and last pages restored?
  Value* Off =
      B.CreateSub(B.CreatePtrToInt(Addr, I64), load(I64, HeapBase, "cm.at.base"), "cm.at.off");
  Value* HeapSz = load(I64, HeapSize, "cm.at.size");
  Instruction* InHeapT =
      SplitBlockAndInsertIfThen(B.CreateICmpULT(Off, HeapSz), Term, /*Unreachable=*/false);
  InHeapT->getParent()->setName("cm.at.inheap");
  B.SetInsertPoint(InHeapT);
  Value* Bits = load(I64->getPointerTo(), Bitmap, "cm.at.bitmap");
  Value* Ok = testPage(B, Bits, Off);
  if (!OnePage) {
    // Last byte's page; a range running past the heap's end is tested up to the end only
    // (the bitmap has no bits beyond it, and the runtime ignores what lies outside the heap).
    Value* Last = B.CreateAdd(Off, ConstantInt::get(I64, Size - 1), "cm.at.last");
    Last = B.CreateSelect(B.CreateICmpULT(Last, HeapSz), Last, Off);
    Ok = B.CreateAnd(Ok, testPage(B, Bits, Last));
  }
  Instruction* SlowT =
      SplitBlockAndInsertIfThen(B.CreateNot(Ok), InHeapT, /*Unreachable=*/false, Unlikely);
  SlowT->getParent()->setName("cm.at.fetch");
  B.SetInsertPoint(SlowT);
  CallInst* Call = B.CreateCall(Fetch, {Addr, ConstantInt::get(I64, Size)});
  Call->addFnAttr(Attribute::Cold);
  Call->addFnAttr(Attribute::NoUnwind);
}

void AccessTracker::emitLoopRangeTest(IRBuilder<>& B, Instruction* Term, Value* Addr, Value* Len) {
  Type* I64 = Type::getInt64Ty(Ctx);
  auto load = [&](Type* Ty, Constant* G, const char* Name) {
    return B.CreateLoad(Ty, ConstantExpr::getPointerCast(G, Ty->getPointerTo()), Name);
  };
  Value* A = B.CreatePtrToInt(Addr, I64);
  Value* E = B.CreateAdd(A, Len, "cm.at.end");
  Value* Base = load(I64, HeapBase, "cm.at.base");
  Value* HeapEnd = B.CreateAdd(Base, load(I64, HeapSize, "cm.at.size"), "cm.at.heapend");
  Value* Meets = B.CreateAnd(B.CreateICmpUGT(E, Base), B.CreateICmpULT(A, HeapEnd));
  Instruction* InHeapT = SplitBlockAndInsertIfThen(Meets, Term, /*Unreachable=*/false);
  InHeapT->getParent()->setName("cm.at.inheap");
  B.SetInsertPoint(InHeapT);
  // The part inside the heap, as offsets: first byte and last byte.
  Value* First = B.CreateSub(B.CreateSelect(B.CreateICmpULT(A, Base), Base, A), Base, "cm.at.off");
  Value* Last =
      B.CreateSub(B.CreateSub(B.CreateSelect(B.CreateICmpUGT(E, HeapEnd), HeapEnd, E), Base),
                  ConstantInt::get(I64, 1), "cm.at.last");
  Value* Pages = B.CreateSub(B.CreateLShr(Last, kPageShift), B.CreateLShr(First, kPageShift));
  Value* Bits = load(I64->getPointerTo(), Bitmap, "cm.at.bitmap");
  Value* Ok = B.CreateAnd(B.CreateICmpULE(Pages, ConstantInt::get(I64, 1)),
                          B.CreateAnd(testPage(B, Bits, First), testPage(B, Bits, Last)));
  Instruction* SlowT =
      SplitBlockAndInsertIfThen(B.CreateNot(Ok), InHeapT, /*Unreachable=*/false, Unlikely);
  SlowT->getParent()->setName("cm.at.fetch");
  B.SetInsertPoint(SlowT);
  CallInst* Call = B.CreateCall(Fetch, {Addr, Len});
  Call->addFnAttr(Attribute::Cold);
  Call->addFnAttr(Attribute::NoUnwind);
}

// void __constmig_at_check(const void* addr, uint64_t len), 0 < len <= 4096: the range test
// for checks outside loops, one copy per image (linkonce_odr, hidden, in a comdat).
Function* AccessTracker::checkHelper() {
  if (Helper) return Helper;
  constexpr char Name[] = "__constmig_at_check";
  Type* I64 = Type::getInt64Ty(Ctx);
  auto* FT = FunctionType::get(Type::getVoidTy(Ctx), {Type::getInt8PtrTy(Ctx), I64}, false);
  if (Function* Existing = M.getFunction(Name);
      Existing && Existing->getFunctionType() == FT &&
      Existing->getCallingConv() == CallingConv::PreserveMost) {
    return Helper = Existing;
  }
  Helper = Function::Create(FT, GlobalValue::LinkOnceODRLinkage, Name, M);
  Helper->setVisibility(GlobalValue::HiddenVisibility);
  Helper->setCallingConv(CallingConv::PreserveMost);
  if (Triple(M.getTargetTriple()).supportsCOMDAT()) {
    Helper->setComdat(M.getOrInsertComdat(Helper->getName()));
  }
  Helper->addFnAttr(Attribute::NoInline);
  Helper->addFnAttr(Attribute::NoUnwind);
  Helper->addFnAttr(kDoneAttr);
  BasicBlock* Entry = BasicBlock::Create(Ctx, "entry", Helper);
  ReturnInst* Ret = ReturnInst::Create(Ctx, Entry);
  IRBuilder<> B(Ret);
  // len <= 4096: the range touches at most two pages; test both (no alignment is known).
  Value* Addr = Helper->getArg(0);
  Value* Len = Helper->getArg(1);
  Type* I64T = I64;
  auto load = [&](Type* Ty, Constant* G, const char* N) {
    return B.CreateLoad(Ty, ConstantExpr::getPointerCast(G, Ty->getPointerTo()), N);
  };
  Value* Off = B.CreateSub(B.CreatePtrToInt(Addr, I64T), load(I64T, HeapBase, "base"), "off");
  Value* HeapSz = load(I64T, HeapSize, "size");
  Instruction* InHeapT =
      SplitBlockAndInsertIfThen(B.CreateICmpULT(Off, HeapSz), Ret, /*Unreachable=*/false);
  InHeapT->getParent()->setName("inheap");
  B.SetInsertPoint(InHeapT);
  Value* Bits = load(I64T->getPointerTo(), Bitmap, "bitmap");
  Value* Last = B.CreateAdd(Off, B.CreateSub(Len, ConstantInt::get(I64T, 1)), "last");
  Last = B.CreateSelect(B.CreateICmpULT(Last, HeapSz), Last, Off);
  Value* Ok = B.CreateAnd(testPage(B, Bits, Off), testPage(B, Bits, Last));
  Instruction* SlowT =
      SplitBlockAndInsertIfThen(B.CreateNot(Ok), InHeapT, /*Unreachable=*/false, Unlikely);
  SlowT->getParent()->setName("fetch");
  B.SetInsertPoint(SlowT);
  CallInst* Call = B.CreateCall(Fetch, {Addr, Len});
  Call->addFnAttr(Attribute::Cold);
  Call->addFnAttr(Attribute::NoUnwind);
  return Helper;
}

// True if L (with its subloops) holds an access that may be the heap and whose check would stay
// inside L (its address, or length, varies in L): a check would run on every iteration.
bool AccessTracker::loopNeedsChecks(Loop& L, LoopInfo& LI, const TargetLibraryInfo& TLI) {
  SmallVector<Access, 8> Found;
  for (BasicBlock* BB : L.blocks()) {
    for (Instruction& I : *BB) {
      Found.clear();
      collectAccesses(I, TLI, Found);
      for (const Access& A : Found) {
        if (classify(A, LI) != NotHeap::No) continue;
        if (!L.isLoopInvariant(A.Ptr) || (A.Len && !L.isLoopInvariant(A.Len))) return true;
      }
    }
  }
  return false;
}

bool AccessTracker::canVersion(const Loop& L) {
  if (!L.isSafeToClone()) return false;
  unsigned Insts = 0;
  for (const BasicBlock* BB : L.blocks()) {
    // A block whose address is taken (blockaddress) cannot be duplicated faithfully; a token
    // cannot flow through the phis the clone needs at the exits; an EH pad other than a
    // landingpad (funclets) is not handled.
    if (BB->hasAddressTaken() || (BB->isEHPad() && !BB->isLandingPad())) return false;
    for (const Instruction& I : *BB) {
      if (I.getType()->isTokenTy()) return false;
      if (++Insts > kMaxVersionedInsts) return false;
    }
  }
  return true;
}

// Clones L (loop-simplify's preheader, LCSSA) and makes its preheader dispatch on the flag:
//
//   pre:          %a = load i8 @__constmig_at_active ; br (%a != 0), checked.ph, plain.ph
//   plain.ph:     the clone (in Unchecked: never instrumented)
//   checked.ph:   the original loop (instrumented as usual)
//
// Both versions leave to the original exit blocks, whose LCSSA phis get the clone's values.
bool AccessTracker::versionLoop(Function& F, Loop& L, DominatorTree& DT, LoopInfo& LI,
                                SmallPtrSetImpl<const BasicBlock*>& Unchecked) {
  // The optimizer's last passes (SimplifyCFG) may have folded a preheader away: make one.
  BasicBlock* Pre = L.getLoopPreheader();
  if (!Pre) Pre = InsertPreheaderForLoop(&L, &DT, &LI, /*MSSAU=*/nullptr, /*PreserveLCSSA=*/false);
  if (!Pre) return false;  // the header is entered through an indirectbr or callbr
  formLCSSARecursively(L, DT, &LI, /*SE=*/nullptr);
  BasicBlock* CheckedPH = SplitBlock(Pre, Pre->getTerminator(), &DT, &LI, nullptr,
                                     L.getHeader()->getName() + ".cm.at.checked.ph");
  SmallVector<BasicBlock*, 4> Exits;
  L.getUniqueExitBlocks(Exits);
  ValueToValueMapTy VMap;
  SmallVector<BasicBlock*, 16> Blocks;
  cloneLoopWithPreheader(CheckedPH, Pre, &L, VMap, ".cm.at.plain", &LI, &DT, Blocks);
  remapInstructionsInBlocks(Blocks, VMap);
  // After LCSSA every use of a loop value outside the loop is a phi in an exit block: give each
  // such phi the clone's value on the clone's edge.
  for (BasicBlock* Exit : Exits) {
    for (PHINode& PN : Exit->phis()) {
      const unsigned N = PN.getNumIncomingValues();
      for (unsigned I = 0; I < N; ++I) {
        BasicBlock* In = PN.getIncomingBlock(I);
        if (!L.contains(In)) continue;
        Value* V = PN.getIncomingValue(I);
        auto It = VMap.find(V);
        Value* NewV = It != VMap.end() ? static_cast<Value*>(It->second) : V;
        PN.addIncoming(NewV, cast<BasicBlock>(VMap[In]));
      }
    }
  }
  auto* PlainPH = cast<BasicBlock>(VMap[CheckedPH]);
  PlainPH->setName(L.getHeader()->getName() + ".cm.at.plain.ph");
  Instruction* OldTerm = Pre->getTerminator();
  IRBuilder<> B(OldTerm);
  B.SetCurrentDebugLocation(OldTerm->getDebugLoc());
  Type* I8 = Type::getInt8Ty(Ctx);
  LoadInst* Act =
      B.CreateAlignedLoad(I8, ConstantExpr::getPointerCast(Active, Type::getInt8PtrTy(Ctx)),
                          MaybeAlign(1), "cm.at.active");
  // No branch weights: "unlikely" would make the backend treat the checked copy as cold code
  // (spills inside its loop), and that copy is what runs during a migration.
  B.CreateCondBr(B.CreateICmpNE(Act, ConstantInt::get(I8, 0)), CheckedPH, PlainPH);
  OldTerm->eraseFromParent();
  for (BasicBlock* BB : Blocks) Unchecked.insert(BB);
  DT.recalculate(F);
  ++S.VersionedLoops;
  return true;
}

// Picks, outermost first, loops that would keep checks per iteration and are small enough to
// clone; a loop too large (or not clonable) has its subloops tried instead.
bool AccessTracker::versionLoops(Function& F, DominatorTree& DT, LoopInfo& LI,
                                 const TargetLibraryInfo& TLI,
                                 SmallPtrSetImpl<const BasicBlock*>& Unchecked) {
  SmallVector<Loop*, 8> Chosen;
  std::function<void(Loop*)> Pick = [&](Loop* L) {
    if (!loopNeedsChecks(*L, LI, TLI)) return;  // then none of its subloops needs them either
    if (canVersion(*L)) {
      Chosen.push_back(L);
      return;
    }
    if (L->isInnermost()) {
      ++S.UnversionedLoops;
      if (reportLevel() >= 2) {
        unsigned Insts = 0;
        for (const BasicBlock* BB : L->blocks()) Insts += static_cast<unsigned>(BB->size());
        errs() << kPassName << ": " << F.getName() << ": loop " << L->getHeader()->getName()
               << " not versioned (" << Insts << " instructions"
               << (L->isSafeToClone() ? "" : ", not clonable") << ")\n";
      }
    }
    for (Loop* Sub : *L) Pick(Sub);
  };
  for (Loop* L : LI) Pick(L);
  if (Chosen.empty()) return false;
  declareRuntime();
  bool Changed = false;
  for (Loop* L : Chosen) Changed |= versionLoop(F, *L, DT, LI, Unchecked);
  return Changed;
}

bool AccessTracker::instrumentFunction(Function& F, FunctionAnalysisManager& FAM) {
  // Loop versioning on the flag. Sound because the flag goes 0 -> 1 only at MigGoLive, while no
  // app code runs in the instance (app ECALLs are refused until LIVE), and 1 -> 0 at commit: a
  // loop entered with the flag clear can run unchecked to its end, and a checked loop that runs
  // on after commit is merely conservative. At -O0 (optnone) loops are left as they are.
  SmallPtrSet<const BasicBlock*, 32> Unchecked;
  const bool Optimize = !F.hasOptNone();
  if (Optimize && Versioning) {
    auto& DT0 = FAM.getResult<DominatorTreeAnalysis>(F);
    auto& LI0 = FAM.getResult<LoopAnalysis>(F);
    auto& TLI0 = FAM.getResult<TargetLibraryAnalysis>(F);
    if (versionLoops(F, DT0, LI0, TLI0, Unchecked)) FAM.invalidate(F, PreservedAnalyses::none());
  }
  auto& DT = FAM.getResult<DominatorTreeAnalysis>(F);
  auto& LI = FAM.getResult<LoopAnalysis>(F);
  auto& TLI = FAM.getResult<TargetLibraryAnalysis>(F);
  auto& SE = FAM.getResult<ScalarEvolutionAnalysis>(F);

  // Blocks in reverse post-order: a dominator comes before the blocks it dominates.
  DenseMap<const BasicBlock*, unsigned> Order;
  SmallVector<BasicBlock*, 32> RPO;
  for (BasicBlock* BB : ReversePostOrderTraversal<Function*>(&F)) {
    Order[BB] = static_cast<unsigned>(RPO.size());
    RPO.push_back(BB);
  }

  SmallVector<Access, 64> Accesses;
  for (BasicBlock* BB : RPO) {
    if (Unchecked.count(BB)) continue;  // the unchecked clone of a versioned loop
    for (Instruction& I : *BB) collectAccesses(I, TLI, Accesses);
  }
  S.Accesses += Accesses.size();

  // The constant byte distance P - Q, when scalar evolution can prove one. Both values are
  // SSA values whose definitions dominate the point where the distance is used, so the
  // relation holds there (and, for (c), at the dominating check's last execution too).
  auto distance = [&](Value* P, Value* Q) -> Optional<int64_t> {
    if (P == Q) return 0;
    if (!SE.isSCEVable(P->getType()) || !SE.isSCEVable(Q->getType())) return None;
    const SCEV* SP = SE.getSCEV(P);
    const SCEV* SQ = SE.getSCEV(Q);
    if (SE.getPointerBase(SP) != SE.getPointerBase(SQ)) return None;
    const auto* D = dyn_cast<SCEVConstant>(SE.getMinusSCEV(SP, SQ));
    if (!D || D->getAPInt().getMinSignedBits() > 40) return None;
    return D->getAPInt().getSExtValue();
  };
  auto baseKey = [&](const Check& C) -> const void* {
    if (C.PerLane || !SE.isSCEVable(C.Base->getType())) return C.Base;
    return SE.getPointerBase(SE.getSCEV(C.Base));
  };
  auto before = [](const Instruction* X, const Instruction* Y) {
    if (X == Y || X->isTerminator()) return false;
    return Y->isTerminator() || X->comesBefore(Y);
  };
  auto isInline = [](const Check& C) {
    return !C.PerLane && !C.Len && C.Hi - C.Lo <= static_cast<int64_t>(kMaxInlineRange);
  };

  std::vector<Check> Checks;
  for (const Access& A : Accesses) {
    switch (classify(A, LI)) {
      case NotHeap::Stack:
        ++S.SkippedStack;
        continue;
      case NotHeap::Global:
        ++S.SkippedGlobal;
        continue;
      case NotHeap::AddrSpace:
        ++S.SkippedAddrSpace;
        continue;
      case NotHeap::No:
        break;
    }
    ++S.Instrumented;
    Check C;
    C.InsertPt = A.Inst;
    C.Loc = A.Inst->getDebugLoc();
    C.Base = A.Ptr;  // dominates the access, hence every place its check may go
    C.PerLane = A.PerLane;
    C.LaneSize = A.Size;
    C.Len = A.Len;
    C.Hi = A.Len || A.PerLane ? 0 : static_cast<int64_t>(A.Size);
    if (!A.PerLane) {
      C.BaseAlign = std::max<uint64_t>(A.Align, A.Ptr->getPointerAlignment(DL).value());
    }
    // (a) Loop-invariant address (and length): check once, in the preheader of the outermost
    // loop the address is invariant in. The flag only falls and the bits only rise while app
    // code runs, so a check before the loop covers every iteration.
    bool Hoisted = false;
    for (Loop* L = LI.getLoopFor(A.Inst->getParent()); L; L = L->getParentLoop()) {
      BasicBlock* Pre = L->getLoopPreheader();
      if (!Pre || !L->isLoopInvariant(A.Ptr) || (C.Len && !L->isLoopInvariant(C.Len))) break;
      auto* PI = dyn_cast<Instruction>(A.Ptr);
      auto* LenI = dyn_cast_or_null<Instruction>(C.Len);
      if ((PI && !DT.dominates(PI, Pre->getTerminator())) ||
          (LenI && !DT.dominates(LenI, Pre->getTerminator()))) {
        break;
      }
      C.InsertPt = Pre->getTerminator();
      Hoisted = true;
    }
    if (Hoisted) ++S.Hoisted;
    C.Block = C.InsertPt->getParent();
    Checks.push_back(C);
  }
  if (Checks.empty()) return !Unchecked.empty();

  // (d) Range checks. A check in loop L (its innermost loop, after hoisting) whose address is
  // an affine {start,+,step} of L, where scalar evolution bounds the iterations (symbolic max
  // backedge-taken count BTC: the check runs in iterations 0..BTC at most), is replaced by one
  // check of [start, start + step * BTC + size) in L's preheader: every address it would have
  // seen lies in that range, the flag only falls and the bits only rise while app code runs, and
  // fetching a page of an iteration that does not happen is harmless. Checks of one loop a
  // constant distance apart with the same step share one range. The range is capped
  // (RangeCap): a constant trip count over it keeps the per-iteration checks; a symbolic one is
  // tested in the preheader, and the per-iteration checks stay, guarded by "over the cap".
  if (Optimize && RangeCap > 0) {
    struct Range {
      Loop* L;
      const SCEV* Start;  // of the anchor member
      int64_t Step;
      int64_t Lo, Hi;  // span of one iteration's accesses, relative to Start
      std::vector<size_t> Members;
    };
    std::vector<Range> Ranges;
    for (size_t I = 0; I < Checks.size(); ++I) {
      Check& C = Checks[I];
      if (C.PerLane || C.Len || !SE.isSCEVable(C.Base->getType())) continue;
      Loop* L = LI.getLoopFor(C.Block);
      if (!L || !L->getLoopPreheader()) continue;
      const auto* AR = dyn_cast<SCEVAddRecExpr>(SE.getSCEV(C.Base));
      if (!AR || AR->getLoop() != L || !AR->isAffine()) continue;
      const auto* StepC = dyn_cast<SCEVConstant>(AR->getStepRecurrence(SE));
      if (!StepC || StepC->getAPInt().getMinSignedBits() > 32 || StepC->getAPInt().isZero()) {
        continue;
      }
      const int64_t Step = StepC->getAPInt().getSExtValue();
      const SCEV* Start = AR->getStart();
      bool Placed = false;
      for (Range& R : Ranges) {
        if (R.L != L || R.Step != Step) continue;
        Optional<int64_t> D;
        if (SE.getPointerBase(Start) == SE.getPointerBase(R.Start)) {
          if (const auto* DC = dyn_cast<SCEVConstant>(SE.getMinusSCEV(Start, R.Start));
              DC && DC->getAPInt().getMinSignedBits() <= 32) {
            D = DC->getAPInt().getSExtValue();
          }
        }
        if (!D) continue;
        const int64_t Lo = std::min(R.Lo, *D + C.Lo);
        const int64_t Hi = std::max(R.Hi, *D + C.Hi);
        if (Hi - Lo > kMaxRangeGroupSpan) continue;
        R.Lo = Lo;
        R.Hi = Hi;
        R.Members.push_back(I);
        Placed = true;
        break;
      }
      if (!Placed) Ranges.push_back(Range{L, Start, Step, C.Lo, C.Hi, {I}});
    }
    Type* I64 = Type::getInt64Ty(Ctx);
    Type* I8 = Type::getInt8Ty(Ctx);
    for (Range& R : Ranges) {
      BasicBlock* Pre = R.L->getLoopPreheader();
      Instruction* IP = Pre->getTerminator();
      const SCEV* BTC = SE.getSymbolicMaxBackedgeTakenCount(R.L);
      if (isa<SCEVCouldNotCompute>(BTC) || !BTC->getType()->isIntegerTy() ||
          BTC->getType()->getIntegerBitWidth() > 64) {
        continue;
      }
      BTC = SE.getNoopOrZeroExtend(BTC, I64);
      const uint64_t Span = static_cast<uint64_t>(R.Hi - R.Lo);
      const uint64_t Stride = static_cast<uint64_t>(R.Step < 0 ? -R.Step : R.Step);
      if (Span > RangeCap) continue;
      // BTC <= Limit  <=>  Stride * BTC + Span <= RangeCap (no overflow either way).
      const uint64_t Limit = (RangeCap - Span) / Stride;
      const auto* BTCC = dyn_cast<SCEVConstant>(BTC);
      if (BTCC && BTCC->getAPInt().ugt(Limit)) {
        S.LoopRangeOverCap += R.Members.size();
        continue;
      }
      if (!isSafeToExpandAt(R.Start, IP, SE) || !isSafeToExpandAt(BTC, IP, SE) ||
          R.Start->getExpressionSize() > 64 || BTC->getExpressionSize() > 64) {
        continue;
      }
      SCEVExpander Exp(SE, DL, "cm.at.range");
      Value* StartV = Exp.expandCodeFor(R.Start, R.Start->getType(), IP);
      Value* Count = Exp.expandCodeFor(BTC, I64, IP);
      IRBuilder<> B(IP);
      B.SetCurrentDebugLocation(Checks[R.Members.front()].Loc);
      // [lo, lo + len): step > 0 starts at the first iteration, step < 0 at the last.
      Value* Lo = B.CreatePointerCast(StartV, Type::getInt8PtrTy(Ctx));
      Value* Walk = B.CreateMul(Count, ConstantInt::get(I64, Stride), "cm.at.walk");
      int64_t LoOff = R.Lo;
      if (R.Step < 0) Lo = B.CreateGEP(I8, Lo, B.CreateNeg(Walk), "cm.at.first");
      Check RC;
      RC.InsertPt = IP;
      RC.Block = Pre;
      RC.Base = Lo;
      RC.Lo = LoOff;
      RC.Loc = Checks[R.Members.front()].Loc;
      RC.Accesses = static_cast<unsigned>(R.Members.size());
      RC.LoopRange = true;
      if (BTCC) {
        RC.Len = ConstantInt::get(I64, Stride * BTCC->getAPInt().getZExtValue() + Span);
      } else {
        RC.Len = B.CreateAdd(Walk, ConstantInt::get(I64, Span), "cm.at.len");
        Value* Over = B.CreateICmpUGT(Count, ConstantInt::get(I64, Limit), "cm.at.overcap");
        RC.Guard = B.CreateNot(Over, "cm.at.undercap");
        for (size_t M : R.Members) Checks[M].Guard = Over;
        S.LoopRangedGuarded += R.Members.size();
      }
      if (BTCC) {
        for (size_t M : R.Members) Checks[M].Dead = true;
      }
      S.LoopRanged += R.Members.size();
      ++S.LoopRanges;
      Checks.push_back(RC);
    }
  }

  // (b) In one block, accesses a constant distance apart whose combined span stays below a
  // page share one range check, placed at the first of them and addressed off its pointer.
  // The range is checked before any of them runs; a member that then does not run (a call
  // in between does not return) only means a page was fetched early, which is harmless.
  std::map<std::tuple<unsigned, const void*, const Value*>, std::vector<size_t>> Groups;
  for (size_t I = 0; I < Checks.size(); ++I) {
    if (!Checks[I].Dead && isInline(Checks[I])) {
      Groups[{Order.lookup(Checks[I].Block), baseKey(Checks[I]), Checks[I].Guard}].push_back(I);
    }
  }
  for (auto& Entry : Groups) {
    std::vector<size_t>& Members = Entry.second;
    if (Members.size() < 2) continue;
    std::stable_sort(Members.begin(), Members.end(), [&](size_t X, size_t Y) {
      return before(Checks[X].InsertPt, Checks[Y].InsertPt);
    });
    std::vector<size_t> Clusters;  // anchors: the first (earliest) member of each cluster
    for (size_t M : Members) {
      Check& N = Checks[M];
      bool Placed = false;
      for (size_t K = Clusters.size(); K-- > 0 && Clusters.size() - K <= 16;) {
        Check& Cl = Checks[Clusters[K]];
        Optional<int64_t> D = distance(N.Base, Cl.Base);
        if (!D) continue;
        const int64_t Lo = std::min(Cl.Lo, *D + N.Lo);
        const int64_t Hi = std::max(Cl.Hi, *D + N.Hi);
        if (static_cast<uint64_t>(Hi - Lo) >= kMaxMergedSpan) continue;
        if (Lo != Cl.Lo) {
          Cl.BaseAlign =
              commonAlignment(Align(Cl.BaseAlign), static_cast<uint64_t>(Lo - Cl.Lo)).value();
        }
        Cl.Lo = Lo;
        Cl.Hi = Hi;
        Cl.Accesses += N.Accesses;
        N.Dead = true;
        ++S.Merged;
        Placed = true;
        break;
      }
      if (!Placed) Clusters.push_back(M);
    }
  }

  // (c) Drop a check dominated by one that covers its range (the bits it saw set stay set;
  // if it saw the flag clear, it stays clear). Both checks' pointers are SSA values whose
  // definitions dominate the dominating check, so the later check sees the same pointer value
  // as the dominating check's last execution. Checks are visited dominators first.
  std::vector<size_t> Live;
  for (size_t I = 0; I < Checks.size(); ++I) {
    if (!Checks[I].Dead) Live.push_back(I);
  }
  std::stable_sort(Live.begin(), Live.end(), [&](size_t X, size_t Y) {
    const Check& A = Checks[X];
    const Check& B = Checks[Y];
    if (A.Block != B.Block) return Order.lookup(A.Block) < Order.lookup(B.Block);
    return before(A.InsertPt, B.InsertPt);
  });
  DenseMap<const void*, SmallVector<size_t, 4>> Kept;
  for (size_t I : Live) {
    Check& C = Checks[I];
    const void* Key = baseKey(C);
    bool Covered = false;
    for (size_t J : Kept.lookup(Key)) {
      const Check& D = Checks[J];
      if (D.PerLane != C.PerLane || D.Len != C.Len || D.InsertPt == C.InsertPt) continue;
      if (D.Guard && D.Guard != C.Guard) continue;  // D may not have run
      bool Same = false;
      if (C.PerLane) {
        Same = D.Base == C.Base && D.LaneSize >= C.LaneSize;
      } else if (Optional<int64_t> Dist = distance(C.Base, D.Base)) {
        Same = C.Len ? D.Lo == *Dist + C.Lo : D.Lo <= *Dist + C.Lo && *Dist + C.Hi <= D.Hi;
      }
      if (Same && DT.dominates(D.InsertPt, C.InsertPt)) {
        Covered = true;
        break;
      }
    }
    if (Covered) {
      C.Dead = true;
      ++S.Dominated;
      continue;
    }
    Kept[Key].push_back(I);
  }

  declareRuntime();
  for (size_t I : Live) {
    const Check& C = Checks[I];
    if (C.Dead) continue;
    Checks[I].InLoop = LI.getLoopFor(C.Block) != nullptr;
    emit(Checks[I]);
    ++S.Checks;
    if (!isInline(C)) {
      ++S.RangeChecks;
    } else if (Mode == InlineMode::All || (Mode == InlineMode::Loops && Checks[I].InLoop)) {
      ++S.InlineChecks;
    } else {
      ++S.HelperChecks;
    }
  }
  return true;
}

bool AccessTracker::run(ModuleAnalysisManager& MAM) {
  collectNoCheckAnnotations();
  auto& FAM = MAM.getResult<FunctionAnalysisManagerModuleProxy>(M).getManager();
  bool Changed = false;
  for (Function& F : M) {
    if (F.isDeclaration()) continue;
    if (shouldSkip(F)) {
      if (!F.hasFnAttribute(kDoneAttr)) ++S.SkippedFunctions;
      continue;
    }
    ++S.Functions;
    if (instrumentFunction(F, FAM)) {
      Changed = true;
      FAM.invalidate(F, PreservedAnalyses::none());
    }
    F.addFnAttr(kDoneAttr);
  }
  return Changed;
}

class AccessTrackerPass : public PassInfoMixin<AccessTrackerPass> {
 public:
  PreservedAnalyses run(Module& M, ModuleAnalysisManager& MAM) {
    AccessTracker T(M);
    const bool Changed = T.run(MAM);
    if (reportLevel() > 0) {
      const Stats& S = T.stats();
      errs() << kPassName << ": " << M.getModuleIdentifier() << ": functions=" << S.Functions
             << " skipped-functions=" << S.SkippedFunctions << " accesses=" << S.Accesses
             << " instrumented=" << S.Instrumented << " skipped-stack=" << S.SkippedStack
             << " skipped-global=" << S.SkippedGlobal << " skipped-addrspace=" << S.SkippedAddrSpace
             << " hoisted=" << S.Hoisted << " merged=" << S.Merged << " dominated=" << S.Dominated
             << " checks=" << S.Checks << " (inline=" << S.InlineChecks
             << " helper=" << S.HelperChecks << " range=" << S.RangeChecks << ")"
             << " versioned-loops=" << S.VersionedLoops
             << " unversioned-loops=" << S.UnversionedLoops << " loop-ranges=" << S.LoopRanges
             << " loop-ranged=" << S.LoopRanged << " (guarded=" << S.LoopRangedGuarded
             << ") over-cap=" << S.LoopRangeOverCap << "\n";
    }
    // Setting the done attribute alone changes nothing any analysis computes.
    return Changed ? PreservedAnalyses::none() : PreservedAnalyses::all();
  }
  static bool isRequired() { return true; }  // run at -O0 and on optnone functions too
};

}  // namespace

extern "C" LLVM_ATTRIBUTE_WEAK PassPluginLibraryInfo llvmGetPassPluginInfo() {
  return {LLVM_PLUGIN_API_VERSION, "ConstmigAccessTracker", "0.1", [](PassBuilder& PB) {
            PB.registerPipelineParsingCallback(
                [](StringRef Name, ModulePassManager& MPM, ArrayRef<PassBuilder::PipelineElement>) {
                  if (Name != kPassName) return false;
                  MPM.addPass(AccessTrackerPass());
                  return true;
                });
            // Runs at -O1..-O3 after every optimisation (so checks see the final accesses and
            // are not themselves reordered), and in LLVM 14 also at the end of the -O0
            // pipeline (buildO0DefaultPipeline runs the OptimizerLast callbacks).
            PB.registerOptimizerLastEPCallback([](ModulePassManager& MPM, OptimizationLevel) {
              MPM.addPass(AccessTrackerPass());
            });
          }};
}
