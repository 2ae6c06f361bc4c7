#!/usr/bin/env bash
# Quick start: installs what is missing, builds, and starts the broker (amsid) in the foreground on
# the bundled configuration (broker/amsid.conf) and rules (engine/rules/default.yar).
# Stop it with Ctrl-C (SIGTERM/SIGINT drain in-flight scans and exit 0).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DAMSI_BUILD_TESTS=OFF >/dev/null
cmake --build build -j"$(nproc)" --target amsid amsictl amsiscan

cat <<'MSG'
== amsid is starting on /run/amsi-broker/scan.sock. In another terminal:
   ./build/broker/amsiscan -r engine/samples          # scan the bundled samples through it
   ./build/broker/amsictl stats                        # counters and latency percentiles
   ./build/broker/amsictl reload                       # recompile rules without dropping scans
MSG
exec ./build/broker/amsid --foreground --config broker/amsid.conf
