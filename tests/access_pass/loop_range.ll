; Whole-loop range checks (run with loop versioning off, to show only the checked loop): an
; affine access {start,+,step} with a computable trip count is checked once, in the preheader,
; over every address it takes; the loop keeps no check for it. Up to 4 MiB (64 granules of
; 64 KiB): a known trip count over it keeps the per-iteration check, an unknown one is tested in
; the preheader and the per-iteration check stays, guarded by "over the cap".

target datalayout = "e-m:e-p270:32:32-p271:32:32-p272:64:64-i64:64-f80:128-n8:16:32:64-S128"
target triple = "x86_64-unknown-linux-gnu"

; for (i = 0; i < 1000; i += 2) s += a[i];   500 iterations, 16-byte stride: one fetch of
; [a, a + 499 * 16 + 8) if the part of it inside the heap is not two restored pages at most.
; CHECK-LABEL: define i64 @strided_known(
; CHECK-NEXT:  entry:
; CHECK-NEXT:    %[[P:.+]] = bitcast i64* %a to i8*
; CHECK-NEXT:    %[[A:.+]] = load i8, i8* @__constmig_at_active, align 1
; CHECK-NEXT:    %[[ON:.+]] = icmp ne i8 %[[A]], 0
; CHECK-NEXT:    br i1 %[[ON]], label %cm.at.check, label %cm.at.cont
; CHECK:       cm.at.check:
; CHECK-NEXT:    %[[I:.+]] = ptrtoint i8* %[[P]] to i64
; CHECK-NEXT:    %cm.at.end = add i64 %[[I]], 7992
; The range may start below the heap (a conditional access's first iteration): clipped to it.
; CHECK:         %cm.at.heapend = add i64 %cm.at.base, %cm.at.size
; CHECK:       cm.at.inheap:
; CHECK:         %cm.at.off = sub i64
; CHECK:         %cm.at.last = sub i64
; CHECK:         icmp ule i64 %{{.+}}, 1
; CHECK:         load atomic i64, i64* %{{.+}} acquire
; CHECK:         load atomic i64, i64* %{{.+}} acquire
; CHECK:       cm.at.fetch:
; CHECK-NEXT:    call void @__constmig_at_fetch(i8* %[[P]], i64 7992)
; CHECK:       loop:
; CHECK-NOT:     @__constmig_at
; CHECK:         ret i64
define i64 @strided_known(i64* %a) {
entry:
  br label %loop
loop:
  %i = phi i64 [ 0, %entry ], [ %i.next, %loop ]
  %s = phi i64 [ 0, %entry ], [ %s.next, %loop ]
  %p = getelementptr inbounds i64, i64* %a, i64 %i
  %v = load i64, i64* %p, align 8
  %s.next = add i64 %s, %v
  %i.next = add nuw i64 %i, 2
  %done = icmp ult i64 %i.next, 1000
  br i1 %done, label %loop, label %exit
exit:
  ret i64 %s.next
}

; Two accesses per iteration (a[i], a[i+1], i += 2, 100 iterations) share one range of
; 99 * 16 + 16 bytes.
; CHECK-LABEL: define i64 @pair_known(
; CHECK:         call void @__constmig_at_fetch(i8* %{{.+}}, i64 1600)
; CHECK:       loop:
; CHECK-NOT:     @__constmig_at
; CHECK:         ret i64
define i64 @pair_known(i64* %a) {
entry:
  br label %loop
loop:
  %i = phi i64 [ 0, %entry ], [ %i.next, %loop ]
  %s = phi i64 [ 0, %entry ], [ %s.next, %loop ]
  %p0 = getelementptr inbounds i64, i64* %a, i64 %i
  %v0 = load i64, i64* %p0, align 8
  %p1 = getelementptr inbounds i64, i64* %p0, i64 1
  %v1 = load i64, i64* %p1, align 8
  %s1 = add i64 %s, %v0
  %s.next = add i64 %s1, %v1
  %i.next = add nuw i64 %i, 2
  %done = icmp ult i64 %i.next, 200
  br i1 %done, label %loop, label %exit
exit:
  ret i64 %s.next
}

; for (i = 99; i >= 0; --i) a[i] = 0;   a negative step: the range starts at the last
; iteration's address, &a[99] - 99 * 8.
; CHECK-LABEL: define void @backwards_known(
; CHECK:         %[[START:.+]] = getelementptr i64, i64* %a, i64 99
; CHECK:         %[[S8:.+]] = bitcast i64* %[[START]] to i8*
; CHECK:         %cm.at.first = getelementptr i8, i8* %[[S8]], i64 -792
; CHECK:         call void @__constmig_at_fetch(i8* %cm.at.first, i64 800)
; CHECK:       loop:
; CHECK-NOT:     @__constmig_at
; CHECK:         ret void
define void @backwards_known(i64* %a) {
entry:
  br label %loop
loop:
  %i = phi i64 [ 99, %entry ], [ %i.next, %loop ]
  %p = getelementptr inbounds i64, i64* %a, i64 %i
  store i64 0, i64* %p, align 8
  %i.next = add nsw i64 %i, -1
  %done = icmp slt i64 %i.next, 0
  br i1 %done, label %exit, label %loop
exit:
  ret void
}

; 2^20 iterations over 8-byte elements (8 MiB, over the cap): no range check, the per-iteration
; check stays, unguarded.
; CHECK-LABEL: define i64 @over_cap_known(
; CHECK-NEXT:  entry:
; CHECK-NEXT:    br label %loop
; CHECK:       loop:
; CHECK:         %p = getelementptr inbounds i64, i64* %a, i64 %i
; CHECK-NEXT:    %[[A:.+]] = load i8, i8* @__constmig_at_active, align 1
; CHECK-NEXT:    %[[ON:.+]] = icmp ne i8 %[[A]], 0
; CHECK-NEXT:    br i1 %[[ON]], label %cm.at.check, label %cm.at.cont
; CHECK:         call void @__constmig_at_fetch(i8* %{{.+}}, i64 8)
; CHECK:         %v = load i64, i64* %p, align 8
define i64 @over_cap_known(i64* %a) {
entry:
  br label %loop
loop:
  %i = phi i64 [ 0, %entry ], [ %i.next, %loop ]
  %s = phi i64 [ 0, %entry ], [ %s.next, %loop ]
  %p = getelementptr inbounds i64, i64* %a, i64 %i
  %v = load i64, i64* %p, align 8
  %s.next = add i64 %s, %v
  %i.next = add nuw i64 %i, 1
  %done = icmp ult i64 %i.next, 1048576
  br i1 %done, label %loop, label %exit
exit:
  ret i64 %s.next
}

; for (i = 0; i != n; ++i) a[i] += 1;   n unknown. The preheader computes the range and whether
; the trip count is over the cap ((4 MiB - 8) / 8 = 524287 backedges); under it, one fetch of
; [a, a + (n - 1) * 8 + 8); over it, each iteration checks (the load and the store share it).
; CHECK-LABEL: define void @symbolic(
; CHECK-NEXT:  entry:
; CHECK-NEXT:    %[[BTC:.+]] = add i64 %n, -1
; CHECK-NEXT:    %[[P:.+]] = bitcast i64* %a to i8*
; CHECK-NEXT:    %cm.at.walk = mul i64 %[[BTC]], 8
; CHECK-NEXT:    %cm.at.len = add i64 %cm.at.walk, 8
; CHECK-NEXT:    %cm.at.overcap = icmp ugt i64 %[[BTC]], 524287
; CHECK-NEXT:    %cm.at.undercap = xor i1 %cm.at.overcap, true
; CHECK-NEXT:    %[[A:.+]] = load i8, i8* @__constmig_at_active, align 1
; CHECK-NEXT:    %[[ON:.+]] = icmp ne i8 %[[A]], 0
; CHECK-NEXT:    br i1 %[[ON]], label %cm.at.check, label %cm.at.cont
; The guard is a second branch in the cold block:
; CHECK:       cm.at.check:
; CHECK-NEXT:    br i1 %cm.at.undercap, label %cm.at.guarded, label %{{.+}}
; CHECK:       cm.at.guarded:
; CHECK:       cm.at.fetch:
; CHECK-NEXT:    call void @__constmig_at_fetch(i8* %[[P]], i64 %cm.at.len)
; CHECK:       loop:
; CHECK:         %p = getelementptr inbounds i64, i64* %a, i64 %i
; CHECK-NEXT:    %[[A2:.+]] = load i8, i8* @__constmig_at_active, align 1
; CHECK-NEXT:    %[[ON2:.+]] = icmp ne i8 %[[A2]], 0
; CHECK-NEXT:    br i1 %[[ON2]], label %[[CHK:cm.at.check[0-9]+]], label %cm.at.cont
; CHECK:       [[CHK]]:
; CHECK-NEXT:    br i1 %cm.at.overcap, label %cm.at.guarded{{[0-9]+}}, label %{{.+}}
; CHECK:         call void @__constmig_at_fetch(i8* %{{.+}}, i64 8)
; CHECK:         %v = load i64, i64* %p, align 8
; CHECK-NOT:     @__constmig_at
; CHECK:         ret void
define void @symbolic(i64* %a, i64 %n) {
entry:
  br label %loop
loop:
  %i = phi i64 [ 0, %entry ], [ %i.next, %loop ]
  %p = getelementptr inbounds i64, i64* %a, i64 %i
  %v = load i64, i64* %p, align 8
  %v1 = add i64 %v, 1
  store i64 %v1, i64* %p, align 8
  %i.next = add nuw i64 %i, 1
  %done = icmp eq i64 %i.next, %n
  br i1 %done, label %exit, label %loop
exit:
  ret void
}

; A chased pointer (p = p->next) is not affine: checked per access.
; CHECK-LABEL: define i64 @chase(
; CHECK:       loop:
; CHECK:         load i8, i8* @__constmig_at_active
; CHECK:         call void @__constmig_at_fetch(i8* %{{.+}}, i64 8)
; CHECK:         %next = load i64*, i64** %slot, align 8
define i64 @chase(i64* %head) {
entry:
  br label %loop
loop:
  %p = phi i64* [ %head, %entry ], [ %nextp, %loop ]
  %n = phi i64 [ 0, %entry ], [ %n.next, %loop ]
  %slot = bitcast i64* %p to i64**
  %next = load i64*, i64** %slot, align 8
  %nextp = bitcast i64* %next to i64*
  %n.next = add i64 %n, 1
  %end = icmp eq i64* %next, null
  br i1 %end, label %exit, label %loop
exit:
  ret i64 %n.next
}
