// hashjoin host half (UNTRUSTED): generates the relations and drives partition joins.
#pragma once

#include <memory>

#include "host/host_app.h"

namespace hashjoin {
std::unique_ptr<constmig::host::HostApp> make_hashjoin_app(const constmig::host::AppOptions&);
}
