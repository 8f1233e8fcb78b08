# constmig_add_enclave(<name> SOURCES <src>... [LIBS <lib>...] [BASE <hex address>] [NO_CHECK]
#                      [TRACKER access|none] [PLAIN_VARIANT])
# (NO_CHECK: skip the build-time import check; only for tests of the loader's refusals.)
#
# TRACKER access compiles the image's sources, the trusted runtime and every LIBS entry made by
# constmig_trusted_library() (their <lib>_at variants) with the Access Tracker pass
# (src/compiler/access_tracker, docs/access_tracker.md): such an image can be migrated with
# `--tracker access`, and also with fault/uffd. PLAIN_VARIANT also builds <name>_plain, the
# same image without the pass (for overhead benchmarks; a different measurement).
#
# Builds an enclave image: a self-contained shared object linked at a FIXED base address
# (the ELRANGE analogue of the EMULATED SGX platform), so that it lands at the same address
# on every host and pointers kept in a migrated heap (vtables, function pointers, literals)
# stay valid. The image:
#   * links the ConstMigLib trusted runtime: malloc/new inside it come from the enclave heap;
#   * links libstdc++/libgcc statically and binds its own symbols (-Bsymbolic), so it never
#     allocates from the host's libc;
#   * exports only the two entry points (cmake/enclave.version);
#   * is checked after linking by constmig-image-check (forbidden imports fail the build,
#     naming the symbol) -- the loader repeats the same check at load time.
# Enclave code is never built with sanitizers: their runtimes would replace the enclave heap.
set(CONSTMIG_ENCLAVE_BASE "0x200000000000" CACHE STRING "Default enclave image base (ELRANGE)")
set(_CONSTMIG_ENCLAVE_VERSION_SCRIPT ${CMAKE_CURRENT_LIST_DIR}/enclave.version)
set(_CONSTMIG_ENCLAVE_SECTIONS ${CMAKE_CURRENT_LIST_DIR}/enclave_sections.ld)
set(_CONSTMIG_ACCESS_MARKER ${CMAKE_CURRENT_LIST_DIR}/access_tracker_marker.cpp)

# Compiles <target> with the Access Tracker pass plugin.
function(constmig_use_access_pass target)
  target_compile_options(${target} PRIVATE "-fpass-plugin=${CONSTMIG_ACCESS_PASS_PLUGIN}")
  add_dependencies(${target} constmig_access_pass)
  # A file dependency of every object on the plugin: Ninja links the plugin before compiling
  # (add_dependencies only orders the plugin's own objects), and a changed pass recompiles.
  get_target_property(srcs ${target} SOURCES)
  set_property(SOURCE ${srcs} APPEND PROPERTY OBJECT_DEPENDS ${CONSTMIG_ACCESS_PASS_PLUGIN})
endfunction()

# constmig_trusted_library(<name> SOURCES <src>... [LIBS <lib>...] [TRUSTED_LIBS <lib>...])
# Trusted code that runs inside app ECALLs (the heap, the runtime, an app's engine): builds
# <name> (plain, also linkable into host tests) and <name>_at (compiled with the Access Tracker
# pass). <name>_at links the _at variants of TRUSTED_LIBS (other such libraries).
function(constmig_trusted_library name)
  cmake_parse_arguments(T "" "" "SOURCES;LIBS;TRUSTED_LIBS" ${ARGN})
  foreach(variant "" "_at")
    set(t ${name}${variant})
    if(variant STREQUAL "_at" AND NOT TARGET constmig_access_pass)
      break()  # no pass in this build: plain only (constmig_add_enclave says so)
    endif()
    add_library(${t} STATIC ${T_SOURCES})
    target_include_directories(${t} PUBLIC ${CMAKE_SOURCE_DIR}/src ${CMAKE_SOURCE_DIR}/apps)
    set_target_properties(${t} PROPERTIES POSITION_INDEPENDENT_CODE ON)
    target_compile_options(${t} PRIVATE -ffunction-sections -fdata-sections)
    set(trusted)
    foreach(l ${T_TRUSTED_LIBS})
      list(APPEND trusted ${l}${variant})
    endforeach()
    target_link_libraries(${t} PUBLIC ${T_LIBS} ${trusted})
    if(variant STREQUAL "_at")
      constmig_use_access_pass(${t})
    endif()
  endforeach()
endfunction()

function(constmig_add_enclave name)
  cmake_parse_arguments(E "NO_CHECK;PLAIN_VARIANT;_PLAIN" "BASE;TRACKER" "SOURCES;LIBS" ${ARGN})
  if(NOT E_BASE)
    set(E_BASE ${CONSTMIG_ENCLAVE_BASE})
  endif()
  if(E_TRACKER AND NOT E_TRACKER MATCHES "^(access|none)$")
    message(FATAL_ERROR "constmig_add_enclave(${name}): TRACKER is access or none")
  endif()
  if(E_PLAIN_VARIANT)
    set(pass_on ${ARGN})
    list(REMOVE_ITEM pass_on PLAIN_VARIANT)
    constmig_add_enclave(${name}_plain ${pass_on} _PLAIN)
  endif()
  set(runtime constmig_trusted_runtime)
  set(libs ${E_LIBS})
  if(E_TRACKER STREQUAL "access" AND NOT TARGET constmig_access_pass AND NOT E__PLAIN)
    message(WARNING "${name}: built WITHOUT the Access Tracker (no constmig_access_pass target: "
                    "the pass needs clang-14 and llvm-14-dev, which scripts/setup.sh --deps "
                    "installs); `--tracker access` will refuse this image")
    set(E_TRACKER none)
  endif()
  if(E_TRACKER STREQUAL "access" AND NOT E__PLAIN)
    set(runtime constmig_trusted_runtime_at)
    set(libs)
    foreach(l ${E_LIBS})
      if(TARGET ${l}_at)
        list(APPEND libs ${l}_at)
      else()
        list(APPEND libs ${l})
      endif()
    endforeach()
    # The marker the runtime looks for (trusted/access): this image went through the pass.
    list(APPEND E_SOURCES ${_CONSTMIG_ACCESS_MARKER})
  endif()
  add_library(${name} SHARED ${E_SOURCES})
  if(E_TRACKER STREQUAL "access" AND NOT E__PLAIN)
    constmig_use_access_pass(${name})
    # Library functions the pass cannot instrument go through checked wrappers
    # (src/trusted/access/enclave_access_wraps.cpp).
    target_link_libraries(${name} PRIVATE constmig_trusted_access_wraps)
    target_link_options(${name} PRIVATE
      "LINKER:--wrap=memcpy,--wrap=memmove,--wrap=memset,--wrap=memcmp,--wrap=bcmp"
      "LINKER:--wrap=memchr,--wrap=strlen,--wrap=strcmp,--wrap=strncmp"
      "LINKER:--wrap=_ZSt11_Hash_bytesPKvmm")
  endif()
  set_target_properties(${name} PROPERTIES PREFIX "" SUFFIX ".enclave.so")
  # The runtime, the crypto library and its libc shims reference each other: one link group.
  target_link_libraries(${name} PRIVATE ${libs}
    "$<LINK_GROUP:RESCAN,${runtime},constmig_trusted_access,constmig_trusted_crypto,constmig_trusted_libc_shims,constmig_libcrypto_static>")
  target_compile_options(${name} PRIVATE -fPIC -ffunction-sections -fdata-sections
                                         -fvisibility=hidden -fvisibility-inlines-hidden)
  target_link_options(${name} PRIVATE
    -Wl,-Ttext-segment=${E_BASE}
    -static-libstdc++ -static-libgcc
    -Wl,-Bsymbolic -Wl,-z,now -Wl,-z,relro
    -Wl,--gc-sections
    -Wl,--undefined=constmig_enclave_ecall -Wl,--undefined=constmig_enclave_info
    -Wl,--version-script=${_CONSTMIG_ENCLAVE_VERSION_SCRIPT}
    -Wl,-T,${_CONSTMIG_ENCLAVE_SECTIONS})
  set_property(TARGET ${name} APPEND PROPERTY LINK_DEPENDS ${_CONSTMIG_ENCLAVE_VERSION_SCRIPT}
                                                        ${_CONSTMIG_ENCLAVE_SECTIONS})
  if(NOT E_NO_CHECK)
    add_dependencies(${name} constmig-image-check)
    add_custom_command(TARGET ${name} POST_BUILD
      COMMAND $<TARGET_FILE:constmig-image-check> $<TARGET_FILE:${name}>
      COMMENT "Checking enclave image ${name} (imports, base, entry points)" VERBATIM)
  endif()
endfunction()
