; Functions excluded from instrumentation: __attribute__((annotate("constmig_no_access_check")))
; (llvm.global.annotations), the "constmig-no-access-check" attribute, the runtime's own
; __constmig_at_* functions, naked functions. A plain function in the same module is checked.

target datalayout = "e-m:e-p270:32:32-p271:32:32-p272:64:64-i64:64-f80:128-n8:16:32:64-S128"
target triple = "x86_64-unknown-linux-gnu"

@.str = private unnamed_addr constant [25 x i8] c"constmig_no_access_check\00", section "llvm.metadata"
@.str.other = private unnamed_addr constant [6 x i8] c"other\00", section "llvm.metadata"
@.file = private unnamed_addr constant [8 x i8] c"fake.cc\00", section "llvm.metadata"
@llvm.global.annotations = appending global [2 x { i8*, i8*, i8*, i32, i8* }] [
  { i8*, i8*, i8*, i32, i8* } { i8* bitcast (i64 (i64*)* @annotated to i8*), i8* getelementptr inbounds ([25 x i8], [25 x i8]* @.str, i32 0, i32 0), i8* getelementptr inbounds ([8 x i8], [8 x i8]* @.file, i32 0, i32 0), i32 3, i8* null },
  { i8*, i8*, i8*, i32, i8* } { i8* bitcast (i64 (i64*)* @other_annotation to i8*), i8* getelementptr inbounds ([6 x i8], [6 x i8]* @.str.other, i32 0, i32 0), i8* getelementptr inbounds ([8 x i8], [8 x i8]* @.file, i32 0, i32 0), i32 9, i8* null }
], section "llvm.metadata"

; CHECK-LABEL: define i64 @annotated(
; CHECK-NOT:   @__constmig_at
; CHECK:       ret i64
define i64 @annotated(i64* %p) {
entry:
  %v = load i64, i64* %p, align 8
  store i64 0, i64* %p, align 8
  ret i64 %v
}

; CHECK-LABEL: define i64 @by_attribute(
; CHECK-NOT:   @__constmig_at
; CHECK:       ret i64
define i64 @by_attribute(i64* %p) #0 {
entry:
  %v = load i64, i64* %p, align 8
  ret i64 %v
}

; CHECK-LABEL: define void @__constmig_at_helper(
; CHECK-NOT:   @__constmig_at
; CHECK:       ret void
define void @__constmig_at_helper(i64* %p) {
entry:
  store i64 1, i64* %p, align 8
  ret void
}

; CHECK-LABEL: define void @naked(
; CHECK-NOT:   @__constmig_at
; CHECK:       unreachable
define void @naked(i64* %p) #1 {
entry:
  call void asm sideeffect "movq $$0, (%rdi)\0Aret", ""()
  unreachable
}

; Some other annotation: instrumented.
; CHECK-LABEL: define i64 @other_annotation(
; CHECK:       call {{.*}}@__constmig_at_{{fetch|check}}
; CHECK:       ret i64
define i64 @other_annotation(i64* %p) {
entry:
  %v = load i64, i64* %p, align 8
  ret i64 %v
}

; CHECK-LABEL: define i64 @plain(
; CHECK:       call {{.*}}@__constmig_at_{{fetch|check}}
; CHECK:       ret i64
define i64 @plain(i64* %p) {
entry:
  %v = load i64, i64* %p, align 8
  ret i64 %v
}

attributes #0 = { "constmig-no-access-check" }
attributes #1 = { naked noinline nounwind }
