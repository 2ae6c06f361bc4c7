# AMSI_SANITIZE=asan builds everything with AddressSanitizer and UBSan;
# AMSI_SANITIZE=tsan with ThreadSanitizer. Both keep frame pointers for readable reports.
set(AMSI_SANITIZE "" CACHE STRING "Sanitizer build: empty, asan or tsan")
if(AMSI_SANITIZE STREQUAL "asan")
    add_compile_options(-fsanitize=address,undefined -fno-sanitize-recover=undefined
                        -fno-omit-frame-pointer)
    add_link_options(-fsanitize=address,undefined)
elseif(AMSI_SANITIZE STREQUAL "tsan")
    add_compile_options(-fsanitize=thread -fno-omit-frame-pointer)
    add_link_options(-fsanitize=thread)
elseif(NOT AMSI_SANITIZE STREQUAL "")
    message(FATAL_ERROR "AMSI_SANITIZE must be empty, asan or tsan")
endif()
