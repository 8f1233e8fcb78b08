; Atomic accesses are checked like plain ones: atomicrmw, cmpxchg, atomic load and store.

target datalayout = "e-m:e-p270:32:32-p271:32:32-p272:64:64-i64:64-f80:128-n8:16:32:64-S128"
target triple = "x86_64-unknown-linux-gnu"

define i64 @rmw(i64* %p) {
; CHECK-LABEL: define i64 @rmw(
; CHECK:         load i8, i8* @__constmig_at_active
; CHECK:         call preserve_mostcc void @__constmig_at_check(i8* %{{.*}}, i64 8)
; CHECK:       cm.at.cont:
; CHECK-NEXT:    %old = atomicrmw add i64* %p, i64 1 seq_cst
entry:
  %old = atomicrmw add i64* %p, i64 1 seq_cst
  ret i64 %old
}

define i1 @cas(i32* %p, i32 %e, i32 %n) {
; CHECK-LABEL: define i1 @cas(
; CHECK:         load i8, i8* @__constmig_at_active
; CHECK:         call preserve_mostcc void @__constmig_at_check(i8* %{{.*}}, i64 4)
; CHECK:       cm.at.cont:
; CHECK-NEXT:    %r = cmpxchg i32* %p, i32 %e, i32 %n acq_rel monotonic
entry:
  %r = cmpxchg i32* %p, i32 %e, i32 %n acq_rel monotonic
  %ok = extractvalue { i32, i1 } %r, 1
  ret i1 %ok
}

define i16 @atomic_load(i16* %p) {
; CHECK-LABEL: define i16 @atomic_load(
; CHECK:         call preserve_mostcc void @__constmig_at_check(i8* %{{.*}}, i64 2)
; CHECK:       cm.at.cont:
; CHECK-NEXT:    %v = load atomic i16, i16* %p acquire, align 2
entry:
  %v = load atomic i16, i16* %p acquire, align 2
  ret i16 %v
}

define void @atomic_store(i64* %p, i64 %v) {
; CHECK-LABEL: define void @atomic_store(
; CHECK:         call preserve_mostcc void @__constmig_at_check(i8* %{{.*}}, i64 8)
; CHECK:       cm.at.cont:
; CHECK-NEXT:    store atomic i64 %v, i64* %p release, align 8
entry:
  store atomic i64 %v, i64* %p release, align 8
  ret void
}
