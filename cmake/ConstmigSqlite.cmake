# The SQLite amalgamation for the `sqlite` workload (apps/sqlite), taken from the npm package
# better-sqlite3 at a pinned version and verified by SHA-256 before anything is extracted.
#
#   -DCONSTMIG_SQLITE=AUTO (default)  download; if that fails (offline), skip the app with a WARNING
#   -DCONSTMIG_SQLITE=ON              the app is required: configure fails without the amalgamation
#   -DCONSTMIG_SQLITE=OFF             no download, no sqlite app
#   -DCONSTMIG_SQLITE_TARBALL=<file>  use this better-sqlite3-<version>.tgz instead of downloading
#                                     (offline boxes: `npm pack better-sqlite3@<version>` elsewhere)
#   -DCONSTMIG_SQLITE_MIRROR=<url>    download the tarball from there instead of the npm registry
# A tarball whose SHA-256 is not the pinned one fails configure in every mode but OFF.
#
# Sets CONSTMIG_SQLITE_AVAILABLE (TRUE/FALSE) and CONSTMIG_SQLITE_DIR (holds sqlite3.c, sqlite3.h),
# and the global property CONSTMIG_SQLITE_TGZ (the verified tarball, for tests/workloads).
set(CONSTMIG_SQLITE "AUTO" CACHE STRING
    "SQLite workload (downloads the amalgamation from the npm registry): ON, OFF or AUTO")
set_property(CACHE CONSTMIG_SQLITE PROPERTY STRINGS ON OFF AUTO)
set(CONSTMIG_SQLITE_TARBALL "" CACHE FILEPATH
    "A local better-sqlite3 tarball to use instead of downloading it (checked against the pin)")
set(CONSTMIG_SQLITE_MIRROR "" CACHE STRING
    "URL of the better-sqlite3 tarball instead of the npm registry (checked against the pin)")

# The pin: better-sqlite3 12.5.0 ships the SQLite 3.51.1 amalgamation in deps/sqlite3/.
set(CONSTMIG_SQLITE_NPM_VERSION "12.5.0")
set(CONSTMIG_SQLITE_VERSION "3.51.1")
set(CONSTMIG_SQLITE_SHA256 "0a3cd0554b063c3185b9912ef7059b84455a2e411d637faa0166fef9fefa04c2")
set(CONSTMIG_SQLITE_URL
    "https://registry.npmjs.org/better-sqlite3/-/better-sqlite3-${CONSTMIG_SQLITE_NPM_VERSION}.tgz")
if(CONSTMIG_SQLITE_MIRROR)
  set(CONSTMIG_SQLITE_URL "${CONSTMIG_SQLITE_MIRROR}")
endif()

set(CONSTMIG_SQLITE_AVAILABLE FALSE)
set(CONSTMIG_SQLITE_DIR "")

function(_constmig_sqlite_fetch)
  string(TOUPPER "${CONSTMIG_SQLITE}" mode)
  if(mode STREQUAL "OFF")
    message(STATUS "SQLite workload: off (CONSTMIG_SQLITE=OFF)")
    return()
  endif()
  if(NOT mode MATCHES "^(ON|AUTO)$")
    message(FATAL_ERROR "CONSTMIG_SQLITE is ON, OFF or AUTO (got '${CONSTMIG_SQLITE}')")
  endif()
  set(name "better-sqlite3-${CONSTMIG_SQLITE_NPM_VERSION}.tgz")
  set(work "${CMAKE_BINARY_DIR}/_deps/sqlite")
  set(out "${work}/sqlite-${CONSTMIG_SQLITE_VERSION}")
  set(stamp "${out}/.sha256")
  string(CONCAT how "re-run with -DCONSTMIG_SQLITE_TARBALL=<path to ${name}> (made with `npm pack "
          "better-sqlite3@${CONSTMIG_SQLITE_NPM_VERSION}` on a connected box), or with "
          "-DCONSTMIG_SQLITE=OFF to build without the sqlite workload")

  # Already extracted from the pinned tarball (the stamp holds its hash): nothing to do.
  if(EXISTS "${stamp}" AND EXISTS "${out}/sqlite3.c" AND EXISTS "${out}/sqlite3.h")
    file(READ "${stamp}" have)
    string(STRIP "${have}" have)
    if(have STREQUAL CONSTMIG_SQLITE_SHA256)
      message(STATUS "SQLite workload: SQLite ${CONSTMIG_SQLITE_VERSION} from better-sqlite3 "
                     "${CONSTMIG_SQLITE_NPM_VERSION} (SHA-256 verified when extracted) in ${out}")
      set(CONSTMIG_SQLITE_AVAILABLE TRUE PARENT_SCOPE)
      set(CONSTMIG_SQLITE_DIR "${out}" PARENT_SCOPE)
      foreach(t "${CONSTMIG_SQLITE_TARBALL}" "${work}/${name}")
        if(t AND EXISTS "${t}")
          set_property(GLOBAL PROPERTY CONSTMIG_SQLITE_TGZ "${t}")
          break()
        endif()
      endforeach()
      return()
    endif()
  endif()

  if(CONSTMIG_SQLITE_TARBALL)
    set(tgz "${CONSTMIG_SQLITE_TARBALL}")
    if(NOT EXISTS "${tgz}")
      message(FATAL_ERROR "CONSTMIG_SQLITE_TARBALL=${tgz} does not exist: ${how}")
    endif()
  else()
    set(tgz "${work}/${name}")
    if(EXISTS "${tgz}")
      file(SHA256 "${tgz}" got)
      if(NOT got STREQUAL CONSTMIG_SQLITE_SHA256)
        file(REMOVE "${tgz}")  # a cached file we made ourselves: fetch it again
      endif()
    endif()
    if(NOT EXISTS "${tgz}")
      message(STATUS "SQLite workload: downloading ${CONSTMIG_SQLITE_URL}")
      # The download runs in a child cmake so that a hash mismatch (fatal, whatever the mode) can
      # be told apart from a network failure (AUTO: skip the app). file(DOWNLOAD) checks the hash.
      file(MAKE_DIRECTORY "${work}")
      set(part "${tgz}.part")
      file(REMOVE "${part}")
      file(WRITE "${work}/download.cmake"
           "file(DOWNLOAD \"${CONSTMIG_SQLITE_URL}\" \"${part}\" STATUS st TLS_VERIFY ON\n"
           "     TIMEOUT 300 INACTIVITY_TIMEOUT 60\n"
           "     EXPECTED_HASH SHA256=${CONSTMIG_SQLITE_SHA256})\n"
           "list(GET st 0 code)\n"
           "if(NOT code EQUAL 0)\n"
           "  message(FATAL_ERROR \"DOWNLOAD FAILED: \${st}\")\n"
           "endif()\n")
      execute_process(COMMAND ${CMAKE_COMMAND} -P "${work}/download.cmake"
                      RESULT_VARIABLE rc OUTPUT_VARIABLE log ERROR_VARIABLE log)
      if(NOT rc EQUAL 0)
        file(REMOVE "${part}")
        string(STRIP "${log}" log)
        # CMake reports a failed transfer as a mismatch too (the hash of an empty file): only a
        # transfer that succeeded (curl status 0) and still mismatched is a wrong file.
        set(curl_status 0)
        set(why "${log}")
        if(log MATCHES "status: \\[([0-9]+);\"([^\"]*)\"")
          set(curl_status ${CMAKE_MATCH_1})
          set(why "${CMAKE_MATCH_2} (curl error ${CMAKE_MATCH_1})")
        endif()
        if(log MATCHES "HASH mismatch" AND curl_status EQUAL 0)
          message(FATAL_ERROR
            "SQLite workload: ${CONSTMIG_SQLITE_URL} does NOT have the pinned SHA-256 "
            "${CONSTMIG_SQLITE_SHA256} (cmake/ConstmigSqlite.cmake). The registry served another "
            "file, or the download was altered: nothing from it is used. Do not just update the "
            "pin: find out why it changed (a new pin is a reviewed change). Details:\n${log}")
        endif()
        if(mode STREQUAL "ON")
          message(FATAL_ERROR "SQLite workload: could not download ${CONSTMIG_SQLITE_URL} "
                              "(CONSTMIG_SQLITE=ON requires it): ${why}.\nOffline? ${how}")
        endif()
        message(WARNING "SQLite workload SKIPPED: could not download ${CONSTMIG_SQLITE_URL} "
                        "(${why}). The other apps build as usual. Offline? ${how}")
        return()
      endif()
      file(RENAME "${part}" "${tgz}")
    endif()
  endif()

  # Every path to here checks the hash of the file that is about to be extracted.
  file(SHA256 "${tgz}" got)
  if(NOT got STREQUAL CONSTMIG_SQLITE_SHA256)
    message(FATAL_ERROR
      "SQLite workload: ${tgz} has SHA-256 ${got}, not the pinned ${CONSTMIG_SQLITE_SHA256} "
      "(better-sqlite3 ${CONSTMIG_SQLITE_NPM_VERSION}, cmake/ConstmigSqlite.cmake): refusing to "
      "build from it. Use the tarball of exactly that version, or -DCONSTMIG_SQLITE=OFF.")
  endif()
  # Only the two files of the amalgamation come out of the tarball.
  set(tmp "${work}/extract")
  file(REMOVE_RECURSE "${tmp}" "${out}")
  file(ARCHIVE_EXTRACT INPUT "${tgz}" DESTINATION "${tmp}"
       PATTERNS package/deps/sqlite3/sqlite3.c package/deps/sqlite3/sqlite3.h)
  foreach(f sqlite3.c sqlite3.h)
    if(NOT EXISTS "${tmp}/package/deps/sqlite3/${f}")
      message(FATAL_ERROR "SQLite workload: ${tgz} has no package/deps/sqlite3/${f}")
    endif()
  endforeach()
  file(STRINGS "${tmp}/package/deps/sqlite3/sqlite3.h" ver
       REGEX "^#define SQLITE_VERSION +\"[0-9.]+\"" LIMIT_COUNT 1)
  if(NOT ver MATCHES "\"${CONSTMIG_SQLITE_VERSION}\"")
    message(FATAL_ERROR "SQLite workload: ${tgz} holds '${ver}', expected SQLite "
                        "${CONSTMIG_SQLITE_VERSION}")
  endif()
  file(MAKE_DIRECTORY "${out}")
  file(RENAME "${tmp}/package/deps/sqlite3/sqlite3.c" "${out}/sqlite3.c")
  file(RENAME "${tmp}/package/deps/sqlite3/sqlite3.h" "${out}/sqlite3.h")
  file(REMOVE_RECURSE "${tmp}")
  file(WRITE "${stamp}" "${CONSTMIG_SQLITE_SHA256}\n")
  message(STATUS "SQLite workload: SQLite ${CONSTMIG_SQLITE_VERSION} amalgamation from "
                 "better-sqlite3 ${CONSTMIG_SQLITE_NPM_VERSION} (SHA-256 verified) in ${out}")
  set(CONSTMIG_SQLITE_AVAILABLE TRUE PARENT_SCOPE)
  set(CONSTMIG_SQLITE_DIR "${out}" PARENT_SCOPE)
  set_property(GLOBAL PROPERTY CONSTMIG_SQLITE_TGZ "${tgz}")
endfunction()

_constmig_sqlite_fetch()
