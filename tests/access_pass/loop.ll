; Loops over a heap array: loop-invariant addresses are checked once in the preheader; an
; unrolled body's accesses a constant distance apart share one check per iteration; the
; per-iteration check of a[i] stays inside the loop.

target datalayout = "e-m:e-p270:32:32-p271:32:32-p272:64:64-i64:64-f80:128-n8:16:32:64-S128"
target triple = "x86_64-unknown-linux-gnu"

; for (i = 0; i != n; ++i) a[i] = *p;   (p may alias a: *p is reloaded every iteration)
define void @invariant_in_loop(i64* %a, i64* %p, i64 %n) {
; CHECK-LABEL: define void @invariant_in_loop(
; CHECK-NEXT:  entry:
; CHECK-NEXT:    load i8, i8* @__constmig_at_active
; The hoisted check of *p, before the loop (outside loops: the shared helper's call):
; CHECK:         call preserve_mostcc void @__constmig_at_check(i8* %{{.*}}, i64 8)
; CHECK:       loop:
; CHECK-NEXT:    %i = phi i64
; CHECK-NEXT:    %v = load i64, i64* %p, align 8
; CHECK-NEXT:    %slot = getelementptr inbounds i64, i64* %a, i64 %i
; In the loop: the inline test (range, bitmap word) and the fetch.
; CHECK-NEXT:    load i8, i8* @__constmig_at_active
; CHECK:         load i64*, i64** @__constmig_at_bitmap
; CHECK:         call void @__constmig_at_fetch(i8* %{{.*}}, i64 8)
; CHECK:       cm.at.cont{{[0-9]*}}:
; CHECK-NEXT:    store i64 %v, i64* %slot, align 8
; CHECK-NOT:     call {{.*}}@__constmig_at_{{fetch|check}}
; CHECK:         ret void
entry:
  br label %loop
loop:
  %i = phi i64 [ 0, %entry ], [ %i.next, %loop ]
  %v = load i64, i64* %p, align 8
  %slot = getelementptr inbounds i64, i64* %a, i64 %i
  store i64 %v, i64* %slot, align 8
  %i.next = add nuw i64 %i, 1
  %done = icmp eq i64 %i.next, %n
  br i1 %done, label %exit, label %loop
exit:
  ret void
}

; Nested loops, address invariant in both: the check goes to the outer preheader.
define i64 @invariant_nested(i64* %p, i64 %n, i64 %m) {
; CHECK-LABEL: define i64 @invariant_nested(
; CHECK-NEXT:  entry:
; CHECK-NEXT:    load i8, i8* @__constmig_at_active
; CHECK:         call preserve_mostcc void @__constmig_at_check(i8* %{{.*}}, i64 8)
; CHECK:       outer:
; CHECK-NOT:     @__constmig_at
; CHECK:         ret i64
entry:
  br label %outer
outer:
  %i = phi i64 [ 0, %entry ], [ %i.next, %outer.latch ]
  %s0 = phi i64 [ 0, %entry ], [ %s2, %outer.latch ]
  br label %inner
inner:
  %j = phi i64 [ 0, %outer ], [ %j.next, %inner ]
  %s1 = phi i64 [ %s0, %outer ], [ %s.add, %inner ]
  %v = load volatile i64, i64* %p, align 8
  %s.add = add i64 %s1, %v
  %j.next = add nuw i64 %j, 1
  %j.done = icmp eq i64 %j.next, %m
  br i1 %j.done, label %outer.latch, label %inner
outer.latch:
  %s2 = phi i64 [ %s.add, %inner ]
  %i.next = add nuw i64 %i, 1
  %i.done = icmp eq i64 %i.next, %n
  br i1 %i.done, label %exit, label %outer
exit:
  ret i64 %s2
}

; An unrolled (by 4) loop over a[i]: one 32-byte check per iteration, before the first load.
define i64 @sum_unrolled(i64* %a, i64 %n4) {
; CHECK-LABEL: define i64 @sum_unrolled(
; CHECK:       loop:
; CHECK-NEXT:    %i = phi
; CHECK-NEXT:    %s = phi
; CHECK-NEXT:    %p0 = getelementptr inbounds i64, i64* %a, i64 %i
; CHECK-NEXT:    load i8, i8* @__constmig_at_active
; CHECK:         load i64*, i64** @__constmig_at_bitmap
; CHECK:         call void @__constmig_at_fetch(i8* %{{.*}}, i64 32)
; CHECK:       cm.at.cont:
; CHECK-NEXT:    %v0 = load i64, i64* %p0
; CHECK-NOT:     @__constmig_at
; CHECK:         ret i64
entry:
  br label %loop
loop:
  %i = phi i64 [ 0, %entry ], [ %i.next, %loop ]
  %s = phi i64 [ 0, %entry ], [ %s4, %loop ]
  %p0 = getelementptr inbounds i64, i64* %a, i64 %i
  %v0 = load i64, i64* %p0, align 8
  %i1 = or i64 %i, 1
  %p1 = getelementptr inbounds i64, i64* %a, i64 %i1
  %v1 = load i64, i64* %p1, align 8
  %i2 = or i64 %i, 2
  %p2 = getelementptr inbounds i64, i64* %a, i64 %i2
  %v2 = load i64, i64* %p2, align 8
  %p3 = getelementptr inbounds i64, i64* %p0, i64 3
  %v3 = load i64, i64* %p3, align 8
  %s1 = add i64 %s, %v0
  %s2 = add i64 %s1, %v1
  %s3 = add i64 %s2, %v2
  %s4 = add i64 %s3, %v3
  %i.next = add nuw i64 %i, 4
  %done = icmp uge i64 %i.next, %n4
  br i1 %done, label %exit, label %loop
exit:
  ret i64 %s4
}
