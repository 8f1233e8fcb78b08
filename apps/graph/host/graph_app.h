// graph host half (UNTRUSTED): builds the R-MAT graph and drives BFS and PageRank steps.
#pragma once

#include <memory>

#include "host/host_app.h"

namespace graph {
std::unique_ptr<constmig::host::HostApp> make_graph_app(const constmig::host::AppOptions&);
}
