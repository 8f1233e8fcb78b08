// pagecounter host half (UNTRUSTED): initialises the oracle pages and keeps stepping them.
#pragma once

#include <memory>

#include "host/host_app.h"

namespace pagecounter {
std::unique_ptr<constmig::host::HostApp> make_pagecounter_app(const constmig::host::AppOptions&);
}
