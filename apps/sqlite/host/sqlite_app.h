// sqlite host half (UNTRUSTED): builds the in-memory database in the enclave and drives its SQL
// load (workload suite).
#pragma once

#include <memory>

#include "host/host_app.h"

namespace sqlitewl {
std::unique_ptr<constmig::host::HostApp> make_sqlite_app(const constmig::host::AppOptions&);
}
