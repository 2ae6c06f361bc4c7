#!/bin/bash
# trace_cost.sh - what tracing costs amsid per request, in instructions (valgrind's callgrind
# counts them exactly, whatever else the machine is doing, so two builds or settings compare to
# the instruction). Counted: the I/O-and-scan threads (worker_main and below) while one client
# process (tests' amsi_flood) sends N scans; startup and rule compilation are not counted.
#
#   bench/trace_cost.sh [--build DIR] [--requests N]
#
# Rows: a build without tracing (-DAMSI_TRACE=OFF, built into DIR/notrace), tracing compiled in
# with backend none, and backend lttng at level verbose while an LTTng session records every
# amsi_broker event; each with the verdict cache on (the default: the content hash is computed
# anyway) and off (the ScanDecision hash is computed for the trace alone). The ratio column is
# instructions of the row against the build without tracing, cache alike: the throughput a
# CPU-bound broker keeps.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build=$root/build
requests=2000
while [ $# -gt 0 ]; do
    case $1 in
    --build) build=$(cd "$2" && pwd) && shift ;;
    --requests) requests=$2 && shift ;;
    *) echo "usage: $0 [--build DIR] [--requests N]" >&2 && exit 2 ;;
    esac
    shift
done
command -v valgrind >/dev/null || { echo "trace_cost.sh: valgrind is needed" >&2; exit 2; }
flood=$build/tests/amsi_flood
[ -x "$flood" ] || { echo "trace_cost.sh: no $flood (build the tests)" >&2; exit 2; }
notrace=$build/notrace
cmake -S "$root" -B "$notrace" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAMSI_TRACE=OFF \
    -DAMSI_BUILD_TESTS=OFF -DAMSI_BUILD_BENCH=OFF >/dev/null &&
    cmake --build "$notrace" -j"$(nproc)" --target amsid >/dev/null || exit 1
work=$(mktemp -d /tmp/trace-cost.XXXXXX)
export LTTNG_HOME=$work/lttng-home
mkdir -p "$LTTNG_HOME"
sessiond=""
cleanup() {
    lttng destroy tracecost >/dev/null 2>&1
    [ -n "$sessiond" ] && kill -TERM "$sessiond" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

# count AMSID CACHE [--set ...]: instructions per request of the worker threads.
count() {
    local amsid=$1 cache=$2
    shift 2
    local d
    d=$(mktemp -d "$work/run.XXXXXX")
    valgrind --tool=callgrind --callgrind-out-file="$d/cg.out" --toggle-collect=worker_main \
        "$amsid" --foreground --socket "$d/s.sock" --set "broker.control_socket=$d/c.sock" \
        --set ratelimit.enabled=0 --set "broker.cache_entries=$cache" --set engine.cache_dir= \
        "$@" >"$d/log" 2>&1 &
    local pid=$!
    # Rule compilation under valgrind takes tens of seconds, minutes on a busy machine.
    for _ in $(seq 1 3000); do [ -S "$d/s.sock" ] && break; sleep 0.1; done
    if [ ! -S "$d/s.sock" ]; then
        echo "trace_cost.sh: $amsid did not start; its log:" >&2
        cat "$d/log" >&2
        kill -TERM "$pid" 2>/dev/null
        return 1
    fi
    AMSI_BROKER_SOCKET=$d/s.sock AMSI_TIMEOUT_MS=30000 "$flood" --rate 400 \
        --seconds "$((requests / 400))" >"$d/flood.out"
    kill -TERM "$pid"
    wait "$pid"
    local ir
    ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$d/cg.out")
    echo $((ir / requests))
}

lttng_ok=0
if command -v lttng >/dev/null; then
    # Start a session daemon only when none answers, and stop only that one (by its pid file:
    # the global daemon's as root, else the private LTTNG_HOME's), never another one.
    if ! lttng list >/dev/null 2>&1 && lttng-sessiond --daemonize --no-kernel >/dev/null 2>&1; then
        pidfile=$LTTNG_HOME/.lttng/lttng-sessiond.pid
        [ "$(id -u)" = 0 ] && pidfile=/var/run/lttng/lttng-sessiond.pid
        for _ in $(seq 1 100); do [ -s "$pidfile" ] && break; sleep 0.05; done
        sessiond=$(cat "$pidfile" 2>/dev/null)
    fi
    lttng create tracecost --output="$work/trace" >/dev/null 2>&1 &&
        lttng enable-channel --userspace --session=tracecost --subbuf-size=4M --num-subbuf=8 \
            chan >/dev/null 2>&1 &&
        lttng enable-event --userspace --session=tracecost --channel=chan 'amsi_broker:*' \
            >/dev/null 2>&1 &&
        lttng start tracecost >/dev/null 2>&1 && lttng_ok=1
fi

printf '%-44s %-6s %14s %8s\n' "amsid" "cache" "instr/request" "ratio"
for cache in 4096 0; do
    base=$(count "$notrace/broker/amsid" $cache) || exit 1
    printf '%-44s %-6s %14d %7s%%\n' "build without tracing" $cache "$base" 100.0
    none=$(count "$build/broker/amsid" $cache) || exit 1
    printf '%-44s %-6s %14d %7.1f%%\n' "tracing compiled in, backend none" $cache "$none" \
        "$(echo "100 * $base / $none" | bc -l)"
    if [ $lttng_ok = 1 ]; then
        on=$(count "$build/broker/amsid" $cache --set trace.backend=lttng \
            --set trace.level=verbose --set "trace.lttng_library=$build/etw/libamsi-lttng.so") || exit 1
        printf '%-44s %-6s %14d %7.1f%%\n' "backend lttng, every event recorded" $cache "$on" \
            "$(echo "100 * $base / $on" | bc -l)"
    fi
done
echo "($requests requests of a one-line script each, from one process; callgrind instruction counts)"
