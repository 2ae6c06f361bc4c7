#!/bin/bash
# test_amsibench.sh - amsibench runs end to end against its own amsid (with the echo floor and the
# raw Hyperscan peer) and writes every documented JSON key and CSV column; bad options and a
# broker that cannot start end with a nonzero status and a message, not a hang. No timing is
# asserted: the figures are whatever this machine gives.
#
#   test_amsibench.sh AMSIBENCH
set -u
bench=$1
tmp=$(mktemp -d /tmp/test-amsibench.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { # check DESCRIPTION COMMAND...
    local what=$1
    shift
    if "$@"; then echo "ok   $what"; else echo "FAIL $what"; fail=1; fi
}

before=$(ls -d /tmp/amsibench.* 2>/dev/null | sort)
ulimit -f 100000 # whatever happens, the outputs stay small
timeout 120 "$bench" --quick --duration 0.3 --warmup 0.1 --repeat 1 --items 16 --floor \
    --peer hyperscan --json "$tmp/out.json" --csv "$tmp/out.csv" >"$tmp/stdout" 2>"$tmp/stderr"
rc=$?
check "amsibench --quick exits 0" test $rc -eq 0
[ $rc -eq 0 ] || cat "$tmp/stderr"
check "the table has a goals section" grep -q '^Goals' "$tmp/stdout"
for key in target workload mode clients size offered_rps achieved_rps count p50_ns p90_ns p99_ns \
    p999_ns max_ns errors declined busy detections; do
    check "every JSON run row has \"$key\"" \
        test "$(grep -c "\"$key\": " "$tmp/out.json")" -ge 3
    check "the CSV header has $key" grep -q "\(^\|,\)$key\(,\|$\)" <(head -1 "$tmp/out.csv")
done
for target in broker floor hyperscan; do
    check "a JSON row for $target" grep -q "\"target\": \"$target\"" "$tmp/out.json"
done
check "the CSV has a header and three rows" test "$(wc -l <"$tmp/out.csv")" -eq 4
check "no temporary directory left behind" test "$(ls -d /tmp/amsibench.* 2>/dev/null | sort)" = "$before"

timeout 20 "$bench" --clients 0 >/dev/null 2>"$tmp/err"
check "a bad option exits 2" test $? -eq 2
check "a bad option is explained" grep -q "bad value" "$tmp/err"
timeout 20 "$bench" --rate 100 --closed >/dev/null 2>&1
check "--rate with --closed is refused" test $? -eq 2
timeout 60 "$bench" --amsid /nonexistent/amsid --quick >/dev/null 2>"$tmp/err"
check "a broker that cannot start exits 1" test $? -eq 1
check "and says so" grep -q "cannot run amsid" "$tmp/err"
timeout 60 "$bench" --socket "$tmp/none.sock" --quick >/dev/null 2>"$tmp/err"
check "no broker at --socket exits 1" test $? -eq 1
exit $fail
