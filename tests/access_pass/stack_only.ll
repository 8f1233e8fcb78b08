; Memory that provably is not the heap is never checked: allocas (through GEPs, bitcasts,
; phis and selects), byval arguments. CHECK-NOT below covers the whole function bodies.

target datalayout = "e-m:e-p270:32:32-p271:32:32-p272:64:64-i64:64-f80:128-n8:16:32:64-S128"
target triple = "x86_64-unknown-linux-gnu"

%struct.pair = type { i64, i64 }

declare void @llvm.memset.p0i8.i64(i8* nocapture writeonly, i8, i64, i1 immarg)

; CHECK-LABEL: define i32 @stack_only(
; CHECK-NOT:   @__constmig_at
; CHECK:       ret i32
define i32 @stack_only(i32 %n, i1 %c) {
entry:
  %a = alloca [16 x i32], align 16
  %b = alloca [16 x i32], align 16
  %a8 = bitcast [16 x i32]* %a to i8*
  call void @llvm.memset.p0i8.i64(i8* %a8, i8 0, i64 64, i1 false)
  br label %loop
loop:
  %i = phi i64 [ 0, %entry ], [ %i.next, %loop ]
  %pa = getelementptr inbounds [16 x i32], [16 x i32]* %a, i64 0, i64 %i
  %pb = getelementptr inbounds [16 x i32], [16 x i32]* %b, i64 0, i64 %i
  %v = load volatile i32, i32* %pa, align 4
  %x = mul i32 %v, %n
  store volatile i32 %x, i32* %pb, align 4
  %i.next = add nuw i64 %i, 1
  %done = icmp eq i64 %i.next, 16
  br i1 %done, label %pick, label %loop
pick:
  %sel = select i1 %c, i32* %pa, i32* %pb
  %r = load i32, i32* %sel, align 4
  br i1 %c, label %left, label %right
left:
  %l = getelementptr inbounds [16 x i32], [16 x i32]* %a, i64 0, i64 3
  br label %join
right:
  %rr = getelementptr inbounds [16 x i32], [16 x i32]* %b, i64 0, i64 5
  br label %join
join:
  %phi = phi i32* [ %l, %left ], [ %rr, %right ]
  store i32 %r, i32* %phi, align 4
  %out = load i32, i32* %phi, align 4
  ret i32 %out
}

; CHECK-LABEL: define i64 @byval_arg(
; CHECK-NOT:   @__constmig_at
; CHECK:       ret i64
define i64 @byval_arg(%struct.pair* byval(%struct.pair) align 8 %p) {
entry:
  %f0 = getelementptr inbounds %struct.pair, %struct.pair* %p, i64 0, i32 0
  %f1 = getelementptr inbounds %struct.pair, %struct.pair* %p, i64 0, i32 1
  %v0 = load i64, i64* %f0, align 8
  %v1 = load i64, i64* %f1, align 8
  %s = add i64 %v0, %v1
  ret i64 %s
}

; Nothing was instrumented, so the runtime is not even declared.
; CHECK-NOT: @__constmig_at
