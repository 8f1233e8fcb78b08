; memcpy/memmove/memset intrinsics (and the same functions called as library functions):
; dynamic or long ranges go to the runtime's fetch behind the flag test alone; short constant
; ranges get the inline range check; a global or stack side is never checked.

target datalayout = "e-m:e-p270:32:32-p271:32:32-p272:64:64-i64:64-f80:128-n8:16:32:64-S128"
target triple = "x86_64-unknown-linux-gnu"

@g = global [256 x i8] zeroinitializer

declare void @llvm.memcpy.p0i8.p0i8.i64(i8* nocapture writeonly, i8* nocapture readonly, i64, i1 immarg)
declare void @llvm.memmove.p0i8.p0i8.i64(i8* nocapture, i8* nocapture readonly, i64, i1 immarg)
declare void @llvm.memset.p0i8.i64(i8* nocapture writeonly, i8, i64, i1 immarg)
declare i32 @memcmp(i8* nocapture, i8* nocapture, i64)

define void @copy_dynamic(i8* %d, i8* %s, i64 %n) {
; CHECK-LABEL: define void @copy_dynamic(
; CHECK-NEXT:  entry:
; CHECK-NEXT:    %[[A1:.*]] = load i8, i8* @__constmig_at_active
; CHECK-NEXT:    %[[C1:.*]] = icmp ne i8 %[[A1]], 0
; CHECK-NEXT:    br i1 %[[C1]], label %cm.at.check, label %cm.at.cont, !prof
; CHECK:       cm.at.check:
; CHECK-NEXT:    call void @__constmig_at_fetch(i8* %d, i64 %n)
; CHECK:       cm.at.cont:
; CHECK-NEXT:    load i8, i8* @__constmig_at_active
; CHECK:         call void @__constmig_at_fetch(i8* %s, i64 %n)
; CHECK:         call void @llvm.memcpy.p0i8.p0i8.i64(i8* %d, i8* %s, i64 %n, i1 false)
entry:
  call void @llvm.memcpy.p0i8.p0i8.i64(i8* %d, i8* %s, i64 %n, i1 false)
  ret void
}

; A constant range longer than a page: to the runtime's fetch, which tests the bitmap itself.
define void @move_long(i8* %d, i8* %s) {
; CHECK-LABEL: define void @move_long(
; CHECK:         call void @__constmig_at_fetch(i8* %d, i64 10000)
; CHECK:         call void @__constmig_at_fetch(i8* %s, i64 10000)
; CHECK:         call void @llvm.memmove.p0i8.p0i8.i64(i8* %d, i8* %s, i64 10000, i1 false)
entry:
  call void @llvm.memmove.p0i8.p0i8.i64(i8* %d, i8* %s, i64 10000, i1 false)
  ret void
}

; A short constant memset outside a loop: the call of the shared range-test helper, length 100.
define void @set_short(i8* %d) {
; CHECK-LABEL: define void @set_short(
; CHECK:       cm.at.check:
; CHECK-NEXT:    call preserve_mostcc void @__constmig_at_check(i8* %d, i64 100)
; CHECK:       cm.at.cont:
; CHECK-NEXT:    call void @llvm.memset.p0i8.i64(i8* %d, i8 0, i64 100, i1 false)
entry:
  call void @llvm.memset.p0i8.i64(i8* %d, i8 0, i64 100, i1 false)
  ret void
}

; Global source, heap destination: only the destination is checked. A zero length: nothing.
define void @from_global(i8* %d, i64 %n) {
; CHECK-LABEL: define void @from_global(
; CHECK:         call void @__constmig_at_fetch(i8* %d, i64 %n)
; CHECK-NOT:     call {{.*}}@__constmig_at_{{fetch|check}}
; CHECK:         call void @llvm.memcpy.p0i8.p0i8.i64(i8* %d, i8* getelementptr
; CHECK-NEXT:    call void @llvm.memcpy.p0i8.p0i8.i64(i8* %d, i8* %d, i64 0, i1 false)
; CHECK-NEXT:    ret void
entry:
  call void @llvm.memcpy.p0i8.p0i8.i64(i8* %d, i8* getelementptr ([256 x i8], [256 x i8]* @g, i64 0, i64 0), i64 %n, i1 false)
  call void @llvm.memcpy.p0i8.p0i8.i64(i8* %d, i8* %d, i64 0, i1 false)
  ret void
}

; Stack destination, heap source: only the source is checked.
define i8 @to_stack(i8* %s) {
; CHECK-LABEL: define i8 @to_stack(
; CHECK:         call preserve_mostcc void @__constmig_at_check(i8* %s, i64 64)
; CHECK-NOT:     call {{.*}}@__constmig_at_{{fetch|check}}
; CHECK:         ret i8
entry:
  %buf = alloca [64 x i8], align 16
  %b = getelementptr inbounds [64 x i8], [64 x i8]* %buf, i64 0, i64 0
  call void @llvm.memcpy.p0i8.p0i8.i64(i8* %b, i8* %s, i64 64, i1 false)
  %v = load i8, i8* %b, align 16
  ret i8 %v
}

; memcmp called as a library function: both ranges checked at the call.
define i32 @compare(i8* %a, i8* %b, i64 %n) {
; CHECK-LABEL: define i32 @compare(
; CHECK:         call void @__constmig_at_fetch(i8* %a, i64 %n)
; CHECK:         call void @__constmig_at_fetch(i8* %b, i64 %n)
; CHECK:         call i32 @memcmp(i8* %a, i8* %b, i64 %n)
entry:
  %r = call i32 @memcmp(i8* %a, i8* %b, i64 %n)
  ret i32 %r
}
