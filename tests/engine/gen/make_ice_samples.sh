#!/bin/sh
# make_ice_samples.sh - rebuilds the committed ICE samples in tests/engine/data/lha/: LHA archives
# with level 0 headers whose members are compressed with -lh1- (what the ICE archiver wrote).
# No free tool writes -lh1- from the command line, so MakeIce.java drives the jLHA library
# (Debian: jlha-utils, plus a JDK); each archive is then checked with lhasa's `lha t` (Debian:
# lhasa), an independent decoder. Only needed when the samples change; tests read the files.
#
#   ice.lzh       script.ps1 (4 KiB, SIG in the middle) and big.ps1 (216 KiB, SIG at the end)
#   ice_clean.lzh the same without SIG
set -eu
SIG=AMSI-UNPACK-SIGNATURE-41c7
here=$(cd "$(dirname "$0")" && pwd)
out="$here/../data/lha"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$out"
cd "$tmp"

# Deterministic script-like text: $1 lines, the signature after line $2 (0: none).
lines() {
    awk -v n="$1" -v at="$2" -v sig="$3" 'BEGIN {
        split("Get-ChildItem Set-Content Write-Host $env:TEMP -Recurse Where-Object ForEach-Object", w, " ");
        s = 7;
        for (i = 1; i <= n; i++) {
            line = "";
            for (k = 0; k < 6; k++) { s = (s * 1103515245 + 12345) % 2147483648; line = line w[1 + int(s / 65536) % 7] " "; }
            print line;
            if (i == at) print "Invoke-Expression " sig;
        }
    }'
}
mkdir ice clean
lines 60 30 "$SIG" > ice/script.ps1
lines 3000 3000 "$SIG" > ice/big.ps1
lines 60 0 "" > clean/script.ps1
lines 3000 0 "" > clean/big.ps1

jar=/usr/share/java/jlha.jar
(cd ice && java -cp "$jar" "$here/MakeIce.java" "$out/ice.lzh" -lh1- script.ps1 big.ps1)
(cd clean && java -cp "$jar" "$here/MakeIce.java" "$out/ice_clean.lzh" -lh1- script.ps1 big.ps1)
for f in ice ice_clean; do
    lha t "$out/$f.lzh" >/dev/null
    lha v "$out/$f.lzh" | grep -c -- -lh1- | grep -qx 2
done
echo "wrote $out/ice.lzh $out/ice_clean.lzh"
