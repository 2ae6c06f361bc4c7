#!/bin/bash
# run_results.sh - runs the amsibench scenarios that bench/RESULTS.md reports and writes that file
# anew, with the plots in bench/results/. Run it on a quiet machine, from a Release or
# RelWithDebInfo build:
#
#   bench/run_results.sh [--build DIR] [--quick] [--note TEXT] [--out FILE]
#
#   --build DIR   the build directory (default: build)
#   --quick       short runs (2 rounds of 1 s) to try the script; not for the results
#   --note TEXT   a paragraph put at the top (e.g. what else ran on the machine)
#   --out FILE    where to write (default: bench/RESULTS.md; the plots go beside it in results/)
#
# Every scenario is one amsibench invocation, so everything it compares ran interleaved in the
# same minutes. A scenario that fails is reported as such in the file; the script goes on.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build=$root/build
quick=0
note=""
out=$here/RESULTS.md
while [ $# -gt 0 ]; do
    case $1 in
    --build) build=$(cd "$2" && pwd) && shift ;;
    --quick) quick=1 ;;
    --note) note=$2 && shift ;;
    --out) out=$2 && shift ;;
    *) echo "usage: $0 [--build DIR] [--quick] [--note TEXT] [--out FILE]" >&2 && exit 2 ;;
    esac
    shift
done
bench=$build/bench/amsibench
[ -x "$bench" ] || { echo "run_results.sh: no $bench (build it first)" >&2; exit 2; }
plots=$(dirname "$out")/results
mkdir -p "$plots"
work=$(mktemp -d /tmp/amsibench-results.XXXXXX)
lttng_session=""
cleanup() {
    [ -n "$lttng_session" ] && lttng destroy "$lttng_session" >/dev/null 2>&1
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ $quick = 1 ]; then
    rounds=(--repeat 2 --duration 1 --warmup 0.3)
else
    # Many short rounds: see bench/README.md, "A trustworthy comparison".
    rounds=(--repeat 20 --duration 1.5 --warmup 0.3)
fi

# scenario NAME TITLE ARGS...: one amsibench run; its Markdown summary goes into the file.
scenario() {
    local name=$1 title=$2
    shift 2
    local args=("$@" "${rounds[@]}")
    echo "run_results.sh: $title" >&2
    {
        echo "## $title"
        echo
        echo '```'
        echo "amsibench ${args[*]}"
        echo '```'
        echo
    } >>"$work/body.md"
    if "$bench" "${args[@]}" --json "$work/$name.json" --markdown "$work/$name.md" \
        --plot "$plots/$name.png" >"$work/$name.txt" 2>"$work/$name.log"; then
        cat "$work/$name.md" >>"$work/body.md"
        echo "![$title](results/$name.png)" >>"$work/body.md"
    else
        {
            echo "**The run failed** (exit status $?):"
            echo
            echo '```'
            tail -5 "$work/$name.log"
            echo '```'
        } >>"$work/body.md"
    fi
    echo >>"$work/body.md"
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
scenario one-client "4 KiB scripts, one client (closed loop) against the floor" \
    --workload scripts --size 4096 --clients 1 --closed --floor
scenario eight-clients "4 KiB scripts, 8 client processes, closed loop (throughput)" \
    --workload scripts --size 4096 --clients 8 --closed --floor
scenario open-half "4 KiB scripts, open loop at 50 % of the broker's capacity, 4 processes" \
    --workload scripts --size 4096 --clients 4 --floor
scenario notify "Notify storm: AmsiNotifyOperation, 256 bytes, 4 processes, closed loop" \
    --workload notify --clients 4 --closed --floor
scenario mixed "Mixed sizes: small-block p99 with and without large scans (open loop, 4 processes)" \
    --workload mixed --clients 4 --floor
scenario flood "One process flooding past its limit while 3 polite processes scan (default limits)" \
    --workload scripts --size 4096 --clients 3 --flood
scenario peers "Per-file latency against the peers: same rules, same buffers (1 client, closed loop)" \
    --workload scripts --size 4096 --clients 1 --closed --signed 10 --floor \
    --peer hyperscan --peer yara --peer clamd
scenario peers-64k "Per-file latency against the peers, 64 KiB scripts (1 client, closed loop)" \
    --workload scripts --size 65536 --clients 1 --closed --signed 10 --floor \
    --peer yara --peer clamd

# Tracing: LTTng recording every event against tracing off (one amsid with trace.backend=lttng,
# level verbose, while an LTTng session records every amsi_broker event), and tracing off (backend
# none) against a build without tracing (-DAMSI_TRACE=OFF, built here into build/notrace).
# Throughput with 8 client processes in closed loop.
export LTTNG_HOME=$work/lttng-home
mkdir -p "$LTTNG_HOME"
sessiond=""
if command -v lttng >/dev/null; then
    if ! lttng list >/dev/null 2>&1 && lttng-sessiond --daemonize --no-kernel >/dev/null 2>&1; then
        sessiond=started
    fi
    if lttng create amsibench-results --output="$work/trace" >/dev/null 2>&1 &&
        lttng enable-channel --userspace --session=amsibench-results --subbuf-size=4M \
            --num-subbuf=8 chan >/dev/null 2>&1 &&
        lttng enable-event --userspace --session=amsibench-results --channel=chan \
            'amsi_broker:*' >/dev/null 2>&1 &&
        lttng start amsibench-results >/dev/null 2>&1; then
        lttng_session=amsibench-results
        # Both amsids with amsid's default verdict cache (every request is stamped, so every one
        # misses and is scanned, and its SHA-256 is taken for the cache key as in production), then
        # both with the cache off as the other scenarios run them: there the trace's hash field
        # costs a SHA-256 of the content that only tracing needs.
        scenario lttng "Tracing: LTTng recording every event against tracing off, 8 clients closed loop" \
            --workload scripts --size 4096 --clients 8 --closed \
            --set broker.cache_entries=4096 \
            --variant 'trace.backend=lttng;trace.level=verbose' --variant-goal 95
        scenario lttng-nocache "Tracing: the same with the verdict cache off" \
            --workload scripts --size 4096 --clients 8 --closed \
            --variant 'trace.backend=lttng;trace.level=verbose' --variant-goal 95
        lttng stop "$lttng_session" >/dev/null 2>&1
        lttng list "$lttng_session" 2>/dev/null | grep -i 'discarded' >>"$work/body.md"
        lttng destroy "$lttng_session" >/dev/null 2>&1
        lttng_session=""
    else
        echo "## Tracing: LTTng" >>"$work/body.md"
        echo "Not available: no LTTng session could be created (lttng-tools, lttng-sessiond)." >>"$work/body.md"
    fi
    [ -n "$sessiond" ] && pkill -x lttng-sessiond
fi
notrace=$root/build/notrace
if cmake -S "$root" -B "$notrace" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAMSI_TRACE=OFF \
    -DAMSI_BUILD_TESTS=OFF -DAMSI_BUILD_BENCH=OFF >/dev/null 2>&1 &&
    cmake --build "$notrace" -j"$(nproc)" --target amsid >/dev/null 2>&1; then
    scenario notrace "Tracing off (backend none) against a build without tracing, 8 clients closed loop" \
        --workload scripts --size 4096 --clients 8 --closed --amsid "$notrace/broker/amsid" \
        --variant-amsid "$build/broker/amsid" --variant-goal 99
else
    echo "## Tracing off against a build without tracing" >>"$work/body.md"
    echo "Not available: the build without tracing failed." >>"$work/body.md"
fi
echo >>"$work/body.md"
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
{
    echo "# amsibench results"
    echo
    echo "Written by \`bench/run_results.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'), commit $commit."
    echo "Machine: $cpu, $(nproc) cores, $(free -g | awk '/^Mem:/{print $2}') GiB, Linux $(uname -r)."
    echo "Load average before and after: $load_before / $load_after."
    [ $quick = 1 ] && echo "**--quick run: short runs, indicative only.**"
    echo
    [ -n "$note" ] && echo "$note" && echo
    echo "How to read these tables: bench/README.md (section amsibench). Each figure is the median"
    echo "over rounds with [min..max]; every goal is computed within each round (the broker and"
    echo "what it is compared with ran in the same minutes) and judged on the median. *noise %* is"
    echo "the CPU time other processes took during a run, in % of all cores: above a few %, the"
    echo "tails say more about the machine than about the broker."
    echo
    echo "## Goals at a glance"
    echo
    echo "| goal | value | verdict |"
    echo "|---|---|---|"
    # Each goal from the first scenario that measured it.
    for f in one-client eight-clients open-half notify mixed flood peers lttng lttng-nocache notrace; do
        [ -f "$work/$f.md" ] || continue
        if [ $f = lttng-nocache ]; then
            grep -h '\*\*\(PASS\|MISS\)\*\*' "$work/$f.md" | sed 's/throughput |/throughput, verdict cache off |/'
        else
            grep -h '\*\*\(PASS\|MISS\)\*\*' "$work/$f.md"
        fi
    done | awk -F'|' '!seen[$2]++'
    echo
    cat "$work/body.md"
} >"$out"
echo "run_results.sh: wrote $out" >&2
