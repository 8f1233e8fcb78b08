# placeholder, filled in below
function(constmig_add_enclave)
endfunction()
