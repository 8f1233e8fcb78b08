# constmig_add_enclave(<name> SOURCES <src>... [LIBS <lib>...] [BASE <hex address>] [NO_CHECK])
# (NO_CHECK: skip the build-time import check; only for tests of the loader's refusals.)
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

function(constmig_add_enclave name)
  cmake_parse_arguments(E "NO_CHECK" "BASE" "SOURCES;LIBS" ${ARGN})
  if(NOT E_BASE)
    set(E_BASE ${CONSTMIG_ENCLAVE_BASE})
  endif()
  add_library(${name} SHARED ${E_SOURCES})
  set_target_properties(${name} PROPERTIES PREFIX "" SUFFIX ".enclave.so")
  # The runtime, the crypto library and its libc shims reference each other: one link group.
  target_link_libraries(${name} PRIVATE ${E_LIBS}
    "$<LINK_GROUP:RESCAN,constmig_trusted_runtime,constmig_trusted_crypto,constmig_trusted_libc_shims,constmig_libcrypto_static>")
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
