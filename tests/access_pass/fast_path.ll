; The shape of a check: fast path = one load of __constmig_at_active and one branch weighted
; unlikely; the slow side tests the heap range, then the first and last page's bits, then
; calls the fetch (cold). An 8-byte load aligned to 8 cannot cross a page: one bit only.

target datalayout = "e-m:e-p270:32:32-p271:32:32-p272:64:64-i64:64-f80:128-n8:16:32:64-S128"
target triple = "x86_64-unknown-linux-gnu"

; CHECK-DAG: @__constmig_at_active = external hidden global i8
; CHECK-DAG: @__constmig_at_heap_base = external hidden global i64
; CHECK-DAG: @__constmig_at_heap_size = external hidden global i64
; CHECK-DAG: @__constmig_at_bitmap = external hidden global i64*

define i64 @load_aligned(i64* %p) {
; CHECK-LABEL: define i64 @load_aligned(
; CHECK-NEXT:  entry:
; CHECK-NEXT:    %[[ACT:.*]] = load i8, i8* @__constmig_at_active, align 1
; CHECK-NEXT:    %[[ON:.*]] = icmp ne i8 %[[ACT]], 0
; CHECK-NEXT:    br i1 %[[ON]], label %cm.at.check, label %cm.at.cont, !prof ![[UNLIKELY:[0-9]+]]
; CHECK:       cm.at.check:
; CHECK-NEXT:    %[[P8:.*]] = bitcast i64* %p to i8*
; CHECK-NEXT:    %[[INT:.*]] = ptrtoint i8* %[[P8]] to i64
; CHECK-NEXT:    %[[BASE:.*]] = load i64, i64* @__constmig_at_heap_base
; CHECK-NEXT:    %[[OFF:.*]] = sub i64 %[[INT]], %[[BASE]]
; CHECK-NEXT:    %[[SIZE:.*]] = load i64, i64* @__constmig_at_heap_size
; CHECK-NEXT:    %[[IN:.*]] = icmp ult i64 %[[OFF]], %[[SIZE]]
; CHECK-NEXT:    br i1 %[[IN]], label %cm.at.inheap, label
; CHECK:       cm.at.inheap:
; CHECK-NEXT:    %[[BM:.*]] = load i64*, i64** @__constmig_at_bitmap
; CHECK-NEXT:    %[[PAGE:.*]] = lshr i64 %[[OFF]], 12
; CHECK-NEXT:    %[[WIDX:.*]] = lshr i64 %[[PAGE]], 6
; CHECK-NEXT:    %[[WPTR:.*]] = getelementptr inbounds i64, i64* %[[BM]], i64 %[[WIDX]]
; CHECK-NEXT:    %[[WORD:.*]] = load atomic i64, i64* %[[WPTR]] acquire, align 8
; CHECK-NEXT:    %[[BIT:.*]] = and i64 %[[PAGE]], 63
; CHECK-NEXT:    %[[SH:.*]] = lshr i64 %[[WORD]], %[[BIT]]
; CHECK-NEXT:    %[[OK:.*]] = trunc i64 %[[SH]] to i1
; CHECK-NEXT:    %[[MISS:.*]] = xor i1 %[[OK]], true
; CHECK-NEXT:    br i1 %[[MISS]], label %cm.at.fetch, label %{{.*}}, !prof ![[UNLIKELY]]
; CHECK:       cm.at.fetch:
; CHECK-NEXT:    call void @__constmig_at_fetch(i8* %[[P8]], i64 8) #[[COLD:[0-9]+]]
; CHECK:       cm.at.cont:
; CHECK-NEXT:    %v = load i64, i64* %p, align 8
; CHECK-NEXT:    ret i64 %v
entry:
  %v = load i64, i64* %p, align 8
  ret i64 %v
}

; A 4-byte store with alignment 1 may cross a page: the last byte's page is tested too (clamped
; to the heap's end, so the bitmap is never read past it).
define void @store_unaligned(i32* %p, i32 %v) {
; CHECK-LABEL: define void @store_unaligned(
; CHECK:       cm.at.inheap:
; CHECK:         %[[LAST:.*]] = add i64 %[[OFF2:.*]], 3
; CHECK-NEXT:    %[[INLAST:.*]] = icmp ult i64 %[[LAST]], %{{.*}}
; CHECK-NEXT:    %{{.*}} = select i1 %[[INLAST]], i64 %[[LAST]], i64 %[[OFF2]]
; CHECK:         and i1
; CHECK:       cm.at.fetch:
; CHECK-NEXT:    call void @__constmig_at_fetch(i8* %{{.*}}, i64 4)
; CHECK:       cm.at.cont:
; CHECK-NEXT:    store i32 %v, i32* %p, align 1
entry:
  store i32 %v, i32* %p, align 1
  ret void
}

; The call site and the declaration are both cold and nounwind.
; CHECK: declare hidden void @__constmig_at_fetch(i8*, i64) #[[COLD]]
; CHECK: attributes #[[COLD]] = { cold nounwind }
; CHECK: ![[UNLIKELY]] = !{!"branch_weights", i32 1, i32 1048576}
