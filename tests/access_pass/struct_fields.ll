; Field accesses off one struct pointer in one block share one range check; fields more than a
; page apart get separate checks.

target datalayout = "e-m:e-p270:32:32-p271:32:32-p272:64:64-i64:64-f80:128-n8:16:32:64-S128"
target triple = "x86_64-unknown-linux-gnu"

%struct.entry = type { i64, i32, i32, i8*, i64 }
%struct.big = type { i64, [8192 x i8], i64 }

; Reads fields 0..4 (bytes 0..32; %f4 is at 24) and writes field 1: one check of 32 bytes, at the first access.
define i64 @fields(%struct.entry* %e) {
; CHECK-LABEL: define i64 @fields(
; CHECK-NEXT:  entry:
; CHECK-NEXT:    %f4 = getelementptr inbounds %struct.entry, %struct.entry* %e, i64 0, i32 4
; CHECK-NEXT:    load i8, i8* @__constmig_at_active
; The range starts at field 0, 24 bytes below %f4: the merged check is addressed off the first
; access's pointer with a negative offset.
; CHECK:         %[[ADDR:.*]] = getelementptr i8, i8* %{{.*}}, i64 -24
; CHECK:         call preserve_mostcc void @__constmig_at_check(i8* %[[ADDR]], i64 32)
; CHECK:       cm.at.cont:
; CHECK-NEXT:    %v4 = load i64, i64* %f4, align 8
; CHECK-NOT:     @__constmig_at
; CHECK:         ret i64
entry:
  %f4 = getelementptr inbounds %struct.entry, %struct.entry* %e, i64 0, i32 4
  %v4 = load i64, i64* %f4, align 8
  %f0 = getelementptr inbounds %struct.entry, %struct.entry* %e, i64 0, i32 0
  %v0 = load i64, i64* %f0, align 8
  %f1 = getelementptr inbounds %struct.entry, %struct.entry* %e, i64 0, i32 1
  %v1 = load i32, i32* %f1, align 8
  %f2 = getelementptr inbounds %struct.entry, %struct.entry* %e, i64 0, i32 2
  %v2 = load i32, i32* %f2, align 4
  %f3 = getelementptr inbounds %struct.entry, %struct.entry* %e, i64 0, i32 3
  %v3 = load i8*, i8** %f3, align 8
  %inc = add i32 %v1, 1
  store i32 %inc, i32* %f1, align 8
  %x1 = zext i32 %v1 to i64
  %x2 = zext i32 %v2 to i64
  %x3 = ptrtoint i8* %v3 to i64
  %s1 = add i64 %v0, %x1
  %s2 = add i64 %s1, %x2
  %s3 = add i64 %s2, %x3
  %s4 = add i64 %s3, %v4
  ret i64 %s4
}

; Fields 8200 bytes apart: two checks.
define i64 @far_fields(%struct.big* %b) {
; CHECK-LABEL: define i64 @far_fields(
; CHECK:         call preserve_mostcc void @__constmig_at_check(i8* %{{.*}}, i64 8)
; CHECK:         call preserve_mostcc void @__constmig_at_check(i8* %{{.*}}, i64 8)
; CHECK:         ret i64
entry:
  %f0 = getelementptr inbounds %struct.big, %struct.big* %b, i64 0, i32 0
  %f2 = getelementptr inbounds %struct.big, %struct.big* %b, i64 0, i32 2
  %v0 = load i64, i64* %f0, align 8
  %v2 = load i64, i64* %f2, align 8
  %s = add i64 %v0, %v2
  ret i64 %s
}
