#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what is missing, checks formatting, builds with
# warnings as errors and runs every test, then does the same under AddressSanitizer + UBSan, and
# runs the threaded parts under ThreadSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh
jobs=$(nproc)
# The collector tests must run here, not be skipped for want of rsyslogd.
export AMSI_REQUIRE_RSYSLOG=1

echo "== clang-format check"
git ls-files '*.c' '*.h' | xargs -r clang-format --dry-run --Werror

echo "== build (warnings are errors) and test"
cmake -S . -B build/ci -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAMSI_WERROR=ON >/dev/null
cmake --build build/ci -j"$jobs"
(cd build/ci && ctest --output-on-failure -j"$jobs")

echo "== ASan + UBSan build and test"
cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=Debug -DAMSI_WERROR=ON -DAMSI_SANITIZE=asan \
    -DAMSI_BUILD_BENCH=OFF >/dev/null
cmake --build build/asan -j"$jobs"
(cd build/asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j"$jobs")

echo "== ThreadSanitizer build of the threaded parts (ring, limits, broker, shared rule sets) and test"
cmake -S . -B build/tsan -DCMAKE_BUILD_TYPE=Debug -DAMSI_WERROR=ON -DAMSI_SANITIZE=tsan \
    -DAMSI_BUILD_BENCH=OFF >/dev/null
cmake --build build/tsan -j"$jobs" --target test_ring test_ring_stress test_verdicts test_scan \
    test_ratelimit test_server test_etw \
    $(test -f tests/broker/test_amsid.c && echo test_amsid) amsid amsictl
(cd build/tsan && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
    ctest --output-on-failure \
    -R '^(test_ring|test_ring_stress|test_verdicts|test_scan|test_ratelimit|test_server|test_etw|test_amsid)$')
