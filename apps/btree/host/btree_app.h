// btree host half (UNTRUSTED): builds the B+-tree and drives lookups/upserts (workload suite).
#pragma once

#include <memory>

#include "host/host_app.h"

namespace btree {
std::unique_ptr<constmig::host::HostApp> make_btree_app(const constmig::host::AppOptions&);
}
