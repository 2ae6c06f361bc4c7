#!/usr/bin/env bash
# Installs the Debian packages amsi-broker needs to build, run and test (Debian 12, as root or
# with sudo). Does nothing when they are all present already.
set -euo pipefail

packages=(
    build-essential cmake pkg-config
    libhyperscan-dev zlib1g-dev liblzma-dev libbz2-dev libarchive-dev libssl-dev libinih-dev
    # Office documents (OLE2) and LHA methods libarchive lacks (ICE's -lh1-)
    libgsf-1-dev liblhasa-dev
    # tests and checks: cmocka, the libyara peer, formatting, and the tools that build the
    # containers the unpacking tests read
    libcmocka-dev libyara-dev clang-format
    zip bzip2 xz-utils cpio binutils p7zip-full gcab genisoimage libarchive-tools arj python3
    # a real syslog collector for the declined-request reports (started privately by the tests)
    rsyslog
    # tracing: the LTTng provider and a real session daemon and reader for its tests; the Windows
    # TraceLogging backend is cross-compiled with mingw-w64 as a compile-and-link check
    lttng-tools liblttng-ust-dev babeltrace2 mingw-w64
    # amsibench: plots, and clamd as a peer (amsibench runs its own, with a private config)
    gnuplot-nox clamav-daemon
    # bench/trace_cost.sh: instruction counts
    valgrind bc
)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
echo "deps: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
