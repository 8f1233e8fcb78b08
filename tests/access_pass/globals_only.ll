; Globals (the image's .data/.bss, TLS) are never the heap: no check, even through constant
; GEPs, selects and phis of globals, or atomics on them.

target datalayout = "e-m:e-p270:32:32-p271:32:32-p272:64:64-i64:64-f80:128-n8:16:32:64-S128"
target triple = "x86_64-unknown-linux-gnu"

@table = global [16 x i32] zeroinitializer, align 16
@other = internal global [16 x i32] zeroinitializer, align 16
@counter = global i64 0, align 8
@tls = thread_local global i64 0, align 8
@alias = alias [16 x i32], [16 x i32]* @other

; CHECK-LABEL: define i32 @globals_only(
; CHECK-NOT:   @__constmig_at
; CHECK:       ret i32
define i32 @globals_only(i64 %i, i1 %c) {
entry:
  %p = getelementptr inbounds [16 x i32], [16 x i32]* @table, i64 0, i64 %i
  %v = load i32, i32* %p, align 4
  %q = getelementptr inbounds [16 x i32], [16 x i32]* @other, i64 0, i64 %i
  store i32 %v, i32* %q, align 4
  %sel = select i1 %c, i32* %p, i32* %q
  %w = load i32, i32* %sel, align 4
  %old = atomicrmw add i64* @counter, i64 1 seq_cst
  %t = load i64, i64* @tls, align 8
  %t1 = add i64 %t, %old
  store i64 %t1, i64* @tls, align 8
  %fixed = load i32, i32* getelementptr inbounds ([16 x i32], [16 x i32]* @table, i64 0, i64 7), align 4
  %viaalias = getelementptr inbounds [16 x i32], [16 x i32]* @alias, i64 0, i64 %i
  store i32 %fixed, i32* %viaalias, align 4
  br i1 %c, label %a, label %b
a:
  br label %j
b:
  br label %j
j:
  %phi = phi i32* [ %p, %a ], [ %q, %b ]
  %x = load i32, i32* %phi, align 4
  %s = add i32 %w, %x
  ret i32 %s
}

; CHECK-NOT: @__constmig_at
