; Loop versioning on the flag: a loop whose checks would run every iteration is cloned; its
; preheader tests __constmig_at_active once: clear -> the unchecked clone (*.cm.at.plain), set ->
; the checked original (*.cm.at.checked.ph, then the loop with its checks). Both leave through
; the original exits, whose LCSSA phis take either version's value.

target datalayout = "e-m:e-p270:32:32-p271:32:32-p272:64:64-i64:64-f80:128-n8:16:32:64-S128"
target triple = "x86_64-unknown-linux-gnu"

; for (i = 0; i != n; ++i) s += a[i]; return s;
define i64 @sum(i64* %a, i64 %n) {
; CHECK-LABEL: define i64 @sum(
; CHECK-NEXT:  entry:
; CHECK-NEXT:    %[[A:.+]] = load i8, i8* @__constmig_at_active, align 1
; CHECK-NEXT:    %[[ON:.+]] = icmp ne i8 %[[A]], 0
; No branch weights on the dispatch: both copies are compiled as hot code (a checked copy marked
; cold would get its registers spilled inside its loop).
; CHECK-NEXT:    br i1 %[[ON]], label %loop.cm.at.checked.ph, label %loop.cm.at.plain.ph{{$}}
; The unchecked clone: the original loop, not a single check in it.
; CHECK:       loop.cm.at.plain:
; CHECK-NOT:     @__constmig_at
; CHECK:         br i1 %done.cm.at.plain, label %exit, label %loop.cm.at.plain
; The checked version (its range check is in loop_range.ll).
; CHECK:       loop.cm.at.checked.ph:
; CHECK:       loop:
; CHECK:         load i8, i8* @__constmig_at_active
; CHECK:         call void @__constmig_at_fetch(
; CHECK:         %v = load i64, i64* %p, align 8
; CHECK:         br i1 %done, label %exit, label %loop
; CHECK:       exit:
; CHECK-NEXT:    %s.next.lcssa = phi i64 [ %s.next, %{{.+}} ], [ %s.next.cm.at.plain, %loop.cm.at.plain ]
; CHECK-NEXT:    ret i64 %s.next.lcssa
entry:
  br label %loop
loop:
  %i = phi i64 [ 0, %entry ], [ %i.next, %loop ]
  %s = phi i64 [ 0, %entry ], [ %s.next, %loop ]
  %p = getelementptr inbounds i64, i64* %a, i64 %i
  %v = load i64, i64* %p, align 8
  %s.next = add i64 %s, %v
  %i.next = add nuw i64 %i, 1
  %done = icmp eq i64 %i.next, %n
  br i1 %done, label %exit, label %loop
exit:
  ret i64 %s.next
}

; for (i = 0; i != n; ++i) s += a[b[i]];   (b[i] affine: ranged; a[b[i]] indirect: per access)
define i64 @indirect(i64* %a, i32* %b, i64 %n) {
; CHECK-LABEL: define i64 @indirect(
; CHECK:         br i1 %{{.+}}, label %loop.cm.at.checked.ph, label %loop.cm.at.plain.ph{{$}}
; CHECK:       loop.cm.at.plain:
; CHECK-NOT:     @__constmig_at
; CHECK:         br i1 %done.cm.at.plain, label %exit, label %loop.cm.at.plain
; b[i] is covered by a range check before the loop (guarded per-iteration check over the cap):
; CHECK:       loop.cm.at.checked.ph:
; CHECK:         %cm.at.overcap = icmp ugt i64 %{{.+}}, 1048575
; CHECK:         call void @__constmig_at_fetch(i8* %{{.+}}, i64 %cm.at.len)
; CHECK:       loop:
; CHECK:         br i1 %cm.at.overcap, label %cm.at.guarded{{[0-9]*}}, label
; CHECK:         %k = load i32, i32* %pb, align 4
; a[b[i]] is not affine: an unconditional per-access check (flag only) right before the load.
; CHECK:         %pa = getelementptr inbounds i64, i64* %a, i64 %k64
; CHECK-NEXT:    %[[A2:.+]] = load i8, i8* @__constmig_at_active, align 1
; CHECK-NEXT:    %[[ON2:.+]] = icmp ne i8 %[[A2]], 0
; CHECK-NEXT:    br i1 %[[ON2]], label %cm.at.check{{[0-9]+}}, label %cm.at.cont{{[0-9]+}}, !prof ![[UNLIKELY:[0-9]+]]
; CHECK:         call void @__constmig_at_fetch(i8* %{{.+}}, i64 8)
; CHECK:         %v = load i64, i64* %pa, align 8
; CHECK:       exit:
entry:
  br label %loop
loop:
  %i = phi i64 [ 0, %entry ], [ %i.next, %loop ]
  %s = phi i64 [ 0, %entry ], [ %s.next, %loop ]
  %pb = getelementptr inbounds i32, i32* %b, i64 %i
  %k = load i32, i32* %pb, align 4
  %k64 = zext i32 %k to i64
  %pa = getelementptr inbounds i64, i64* %a, i64 %k64
  %v = load i64, i64* %pa, align 8
  %s.next = add i64 %s, %v
  %i.next = add nuw i64 %i, 1
  %done = icmp eq i64 %i.next, %n
  br i1 %done, label %exit, label %loop
exit:
  ret i64 %s.next
}

; A loop whose only heap access is loop-invariant: checked once before it, not versioned.
define i64 @invariant_only(i64* %p, i64 %n) {
; CHECK-LABEL: define i64 @invariant_only(
; CHECK-NOT:     cm.at.plain
; CHECK:         call preserve_mostcc void @__constmig_at_check(i8* %{{.*}}, i64 8)
; CHECK:       loop:
; CHECK-NOT:     @__constmig_at
; CHECK:         ret i64
entry:
  br label %loop
loop:
  %i = phi i64 [ 0, %entry ], [ %i.next, %loop ]
  %s = phi i64 [ 0, %entry ], [ %s.next, %loop ]
  %v = load volatile i64, i64* %p, align 8
  %s.next = add i64 %s, %v
  %i.next = add nuw i64 %i, 1
  %done = icmp eq i64 %i.next, %n
  br i1 %done, label %exit, label %loop
exit:
  ret i64 %s.next
}

; Two exits (a search): both versions leave through the same exit blocks, whose phis get the
; clone's values.
define i64 @find(i64* %a, i64 %n, i64 %x) {
; CHECK-LABEL: define i64 @find(
; CHECK:         br i1 %{{.+}}, label %loop.cm.at.checked.ph, label %loop.cm.at.plain.ph
; CHECK:       loop.cm.at.plain:
; CHECK-NOT:     @__constmig_at
; CHECK:         br i1 %done.cm.at.plain, label %notfound, label %loop.cm.at.plain
; CHECK:       found:
; CHECK-NEXT:    %i.lcssa = phi i64 [ %i, %{{.+}} ], [ %i.cm.at.plain, %loop.cm.at.plain ]
; CHECK:       notfound:
; CHECK-NEXT:    ret i64 -1
entry:
  br label %loop
loop:
  %i = phi i64 [ 0, %entry ], [ %i.next, %latch ]
  %p = getelementptr inbounds i64, i64* %a, i64 %i
  %v = load i64, i64* %p, align 8
  %hit = icmp eq i64 %v, %x
  br i1 %hit, label %found, label %latch
latch:
  %i.next = add nuw i64 %i, 1
  %done = icmp eq i64 %i.next, %n
  br i1 %done, label %notfound, label %loop
found:
  ret i64 %i
notfound:
  ret i64 -1
}

; A small nest is versioned as a whole: one flag test before the outer loop, both loops cloned,
; and the checked nest's inner loop is not versioned again.
; CHECK-LABEL: define i64 @nest(
; CHECK:         br i1 %{{.+}}, label %outer.cm.at.checked.ph, label %outer.cm.at.plain.ph
; CHECK:       outer.cm.at.plain:
; CHECK-NOT:     @__constmig_at
; CHECK:       inner.cm.at.plain:
; CHECK-NOT:     @__constmig_at
; CHECK:       outer.cm.at.checked.ph:
; CHECK-NOT:     label %inner.cm.at.plain.ph
; CHECK:       inner:
; CHECK:         call void @__constmig_at_fetch(
; CHECK:         ret i64
define i64 @nest(i64* %a, i64 %n, i64 %m) {
entry:
  br label %outer
outer:
  %i = phi i64 [ 0, %entry ], [ %i.next, %outer.latch ]
  %s0 = phi i64 [ 0, %entry ], [ %s.add, %outer.latch ]
  %row = mul i64 %i, %m
  br label %inner
inner:
  %j = phi i64 [ 0, %outer ], [ %j.next, %inner ]
  %s1 = phi i64 [ %s0, %outer ], [ %s.add, %inner ]
  %k = add i64 %row, %j
  %p = getelementptr inbounds i64, i64* %a, i64 %k
  %v = load i64, i64* %p, align 8
  %s.add = add i64 %s1, %v
  %j.next = add nuw i64 %j, 1
  %j.done = icmp eq i64 %j.next, %m
  br i1 %j.done, label %outer.latch, label %inner
outer.latch:
  %i.next = add nuw i64 %i, 1
  %i.done = icmp eq i64 %i.next, %n
  br i1 %i.done, label %exit, label %outer
exit:
  ret i64 %s.add
}

; CHECK: ![[UNLIKELY]] = !{!"branch_weights", i32 1, i32 1048576}
