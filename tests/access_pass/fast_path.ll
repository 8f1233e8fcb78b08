; The shape of a check. Fast path: one load of __constmig_at_active and one branch weighted
; unlikely. In loops the slow side is inline: heap range, the first (and, when the range may
; cross a page, the last) page's bit, the fetch (cold). Outside loops the slow side is one call
; of the module's shared helper @__constmig_at_check (preserve_most), which does the same test.

target datalayout = "e-m:e-p270:32:32-p271:32:32-p272:64:64-i64:64-f80:128-n8:16:32:64-S128"
target triple = "x86_64-unknown-linux-gnu"

; CHECK-DAG: @__constmig_at_active = external hidden global i8
; CHECK-DAG: @__constmig_at_heap_base = external hidden global i64
; CHECK-DAG: @__constmig_at_heap_size = external hidden global i64
; CHECK-DAG: @__constmig_at_bitmap = external hidden global i64*

; An 8-byte load aligned to 8 cannot cross a page: one bit only.
define i64 @load_in_loop(i64* %p, i64 %n) {
; CHECK-LABEL: define i64 @load_in_loop(
; CHECK:       loop:
; CHECK-NEXT:    %i = phi i64
; CHECK-NEXT:    %s = phi i64
; CHECK-NEXT:    %q = getelementptr inbounds i64, i64* %p, i64 %i
; CHECK-NEXT:    %[[ACT:.*]] = load i8, i8* @__constmig_at_active, align 1
; CHECK-NEXT:    %[[ON:.*]] = icmp ne i8 %[[ACT]], 0
; CHECK-NEXT:    br i1 %[[ON]], label %cm.at.check, label %cm.at.cont, !prof ![[UNLIKELY:[0-9]+]]
; CHECK:       cm.at.check:
; CHECK-NEXT:    %[[P8:.*]] = bitcast i64* %q to i8*
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
; CHECK-NEXT:    %v = load i64, i64* %q, align 8
entry:
  br label %loop
loop:
  %i = phi i64 [ 0, %entry ], [ %i.next, %loop ]
  %s = phi i64 [ 0, %entry ], [ %s.next, %loop ]
  %q = getelementptr inbounds i64, i64* %p, i64 %i
  %v = load i64, i64* %q, align 8
  %s.next = add i64 %s, %v
  %i.next = add nuw i64 %i, 1
  %done = icmp eq i64 %i.next, %n
  br i1 %done, label %exit, label %loop
exit:
  ret i64 %s.next
}

; A 4-byte store with alignment 1 may cross a page: the last byte's page is tested too (clamped
; to the heap's end, so the bitmap is never read past it).
define void @store_unaligned_in_loop(i32* %p, i32 %v, i64 %n) {
; CHECK-LABEL: define void @store_unaligned_in_loop(
; CHECK:       cm.at.inheap:
; CHECK:         %[[LAST:.*]] = add i64 %[[OFF2:.*]], 3
; CHECK-NEXT:    %[[INLAST:.*]] = icmp ult i64 %[[LAST]], %{{.*}}
; CHECK-NEXT:    %{{.*}} = select i1 %[[INLAST]], i64 %[[LAST]], i64 %[[OFF2]]
; CHECK:         and i1
; CHECK:       cm.at.fetch:
; CHECK-NEXT:    call void @__constmig_at_fetch(i8* %{{.*}}, i64 4)
; CHECK:       cm.at.cont:
; CHECK-NEXT:    store i32 %v, i32* %q, align 1
entry:
  br label %loop
loop:
  %i = phi i64 [ 0, %entry ], [ %i.next, %loop ]
  %q = getelementptr inbounds i32, i32* %p, i64 %i
  store i32 %v, i32* %q, align 1
  %i.next = add nuw i64 %i, 1
  %done = icmp eq i64 %i.next, %n
  br i1 %done, label %exit, label %loop
exit:
  ret void
}

; Outside loops: flag test, then the helper's call on the cold side.
define i64 @load_outside_loop(i64* %p) {
; CHECK-LABEL: define i64 @load_outside_loop(
; CHECK-NEXT:  entry:
; CHECK-NEXT:    %[[ACT2:.*]] = load i8, i8* @__constmig_at_active, align 1
; CHECK-NEXT:    %[[ON2:.*]] = icmp ne i8 %[[ACT2]], 0
; CHECK-NEXT:    br i1 %[[ON2]], label %cm.at.check, label %cm.at.cont, !prof ![[UNLIKELY]]
; CHECK:       cm.at.check:
; CHECK-NEXT:    %[[PP:.*]] = bitcast i64* %p to i8*
; CHECK-NEXT:    call preserve_mostcc void @__constmig_at_check(i8* %[[PP]], i64 8)
; CHECK-NEXT:    br label %cm.at.cont
; CHECK:       cm.at.cont:
; CHECK-NEXT:    %v = load i64, i64* %p, align 8
; CHECK-NEXT:    ret i64 %v
entry:
  %v = load i64, i64* %p, align 8
  ret i64 %v
}

; The call site and the declaration are both cold and nounwind.
; CHECK: declare hidden void @__constmig_at_fetch(i8*, i64) #[[COLD]]

; The helper: one copy per image (linkonce_odr in a comdat, hidden), never instrumented itself.
; CHECK-LABEL: define linkonce_odr hidden preserve_mostcc void @__constmig_at_check(i8* %0, i64 %1) #{{[0-9]+}} comdat {
; CHECK:         %[[HINT:.*]] = ptrtoint i8* %0 to i64
; CHECK:         %[[HOFF:.*]] = sub i64 %[[HINT]], %base
; CHECK:         icmp ult i64 %[[HOFF]], %size
; CHECK:       inheap:
; CHECK:         %[[HLEN:.*]] = sub i64 %1, 1
; CHECK-NEXT:    %last = add i64 %[[HOFF]], %[[HLEN]]
; CHECK:         load atomic i64, i64* %{{.*}} acquire
; CHECK:         load atomic i64, i64* %{{.*}} acquire
; CHECK:       fetch:
; CHECK-NEXT:    call void @__constmig_at_fetch(i8* %0, i64 %1) #[[COLD]]
; CHECK:         ret void

; CHECK: attributes #[[COLD]] = { cold nounwind }
; CHECK: ![[UNLIKELY]] = !{!"branch_weights", i32 1, i32 1048576}
