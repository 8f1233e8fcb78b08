; Running the pass twice (opt on instrumented IR, LTO) instruments once: processed functions
; carry "constmig-at-done". This test runs the pipeline constmig-access-tracker twice.

target datalayout = "e-m:e-p270:32:32-p271:32:32-p272:64:64-i64:64-f80:128-n8:16:32:64-S128"
target triple = "x86_64-unknown-linux-gnu"

; CHECK-LABEL: define i64 @once(
; CHECK-COUNT-1: call {{.*}}@__constmig_at_{{fetch|check}}
; CHECK-NOT:     call {{.*}}@__constmig_at_{{fetch|check}}
; CHECK:         ret i64
; CHECK-LABEL: define linkonce_odr hidden preserve_mostcc void @__constmig_at_check(
define i64 @once(i64* %p) {
entry:
  %v = load i64, i64* %p, align 8
  ret i64 %v
}
; CHECK: attributes #{{[0-9]+}} = { "constmig-at-done" }
