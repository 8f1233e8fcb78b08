// xsbench host half (UNTRUSTED): builds the cross-section table and drives lookups.
#pragma once

#include <memory>

#include "host/host_app.h"

namespace xsbench {
std::unique_ptr<constmig::host::HostApp> make_xsbench_app(const constmig::host::AppOptions&);
}
