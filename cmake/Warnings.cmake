# One INTERFACE target carries the project's warning set; every target links it.
add_library(amsi_warnings INTERFACE)
target_compile_options(amsi_warnings INTERFACE
    -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes
    -Wformat=2 -Wvla -Wcast-align -Wpointer-arith -Wundef -Wwrite-strings
    -Wold-style-definition -Wnull-dereference -Wdouble-promotion)
if(AMSI_WERROR)
    target_compile_options(amsi_warnings INTERFACE -Werror)
endif()
