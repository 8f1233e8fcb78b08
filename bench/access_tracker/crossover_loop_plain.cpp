// The same loop WITHOUT the pass: the baseline, and the Fault Tracker's loop.
#define XOVER_NAME(mode) xover_plain_##mode
#include "crossover_loop.inc"
