; A check dominated by a check of the same pointer with the same or a wider range is dropped;
; checks on sibling paths (neither dominates the other) both stay.

target datalayout = "e-m:e-p270:32:32-p271:32:32-p272:64:64-i64:64-f80:128-n8:16:32:64-S128"
target triple = "x86_64-unknown-linux-gnu"

declare void @work()

; Load of p[0..1] in entry dominates the load of p[1] in %then: one check (16 bytes).
define i64 @dominated(i64* %p, i1 %c) {
; CHECK-LABEL: define i64 @dominated(
; CHECK:         call preserve_mostcc void @__constmig_at_check(i8* %{{.*}}, i64 16)
; CHECK-NOT:     call {{.*}}@__constmig_at_{{fetch|check}}
; CHECK:       then:
; CHECK-NOT:     @__constmig_at
; CHECK:         ret i64
entry:
  %p1 = getelementptr inbounds i64, i64* %p, i64 1
  %a = load i64, i64* %p, align 8
  %b = load i64, i64* %p1, align 8
  call void @work()
  br i1 %c, label %then, label %exit
then:
  %q1 = getelementptr inbounds i64, i64* %p, i64 1
  %d = load i64, i64* %q1, align 8
  br label %exit
exit:
  %r = phi i64 [ %d, %then ], [ %b, %entry ]
  %s = add i64 %a, %r
  ret i64 %s
}

; Sibling paths: each branch keeps its check; the join's check is not dominated by either.
define i64 @siblings(i64* %p, i1 %c) {
; CHECK-LABEL: define i64 @siblings(
; CHECK:       left:
; CHECK:         call preserve_mostcc void @__constmig_at_check(i8* %{{.*}}, i64 8)
; CHECK:       right:
; CHECK:         call preserve_mostcc void @__constmig_at_check(i8* %{{.*}}, i64 8)
; CHECK:       join:
; CHECK:         call preserve_mostcc void @__constmig_at_check(i8* %{{.*}}, i64 8)
; CHECK:         ret i64
entry:
  br i1 %c, label %left, label %right
left:
  %a = load i64, i64* %p, align 8
  br label %join
right:
  store i64 1, i64* %p, align 8
  br label %join
join:
  %x = phi i64 [ %a, %left ], [ 1, %right ]
  %y = load i64, i64* %p, align 8
  %s = add i64 %x, %y
  ret i64 %s
}

; A wider later access is not covered by a narrower earlier check: both stay.
define i64 @wider_later(i8* %p) {
; CHECK-LABEL: define i64 @wider_later(
; CHECK:         call preserve_mostcc void @__constmig_at_check(i8* %p, i64 1)
; CHECK:       next:
; CHECK:         call preserve_mostcc void @__constmig_at_check(i8* %{{.*}}, i64 8)
; CHECK:         ret i64
entry:
  %b = load i8, i8* %p, align 1
  br label %next
next:
  %w = bitcast i8* %p to i64*
  %v = load i64, i64* %w, align 1
  %z = zext i8 %b to i64
  %s = add i64 %v, %z
  ret i64 %s
}
