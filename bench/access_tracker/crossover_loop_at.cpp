// Compiled WITH the Access Tracker pass (-fpass-plugin): every possibly-heap access of the loop
// gets its check (docs/access_tracker.md). Runtime: crossover_fake_runtime.cpp.
#define XOVER_NAME(mode) xover_at_##mode
#include "crossover_loop.inc"
