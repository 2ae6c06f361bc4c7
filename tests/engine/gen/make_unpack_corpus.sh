#!/bin/sh
# make_unpack_corpus.sh - regenerates the seed corpus of tests/fuzz/fuzz_unpack.c and
# tests/fuzz/fuzz_detect.c (tests/fuzz/corpus/unpack/): one small container (under 4 KiB) of each
# kind the unpacker reads, each holding a short evil.ps1.
#
# Needs the tools of make_unpack_samples.sh and a C compiler with zlib (for RAR, LHA and the ZIP
# bombs, written by gen_containers.c). Archives made by tools carry the time they were made, so
# the files differ from run to run; any run's output is a valid corpus.
#
# Usage: sh tests/engine/gen/make_unpack_corpus.sh   (from anywhere; writes into the source tree)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
corpus="$root/tests/fuzz/corpus/unpack"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM

for t in zip gzip bzip2 xz tar cpio ar 7z gcab bsdtar arj cc; do
    command -v "$t" >/dev/null 2>&1 || { echo "make_unpack_corpus.sh: missing tool: $t" >&2; exit 1; }
done

mkdir -p "$corpus" "$work/src"
cd "$work/src"
printf "Write-Output 'x' # AMSI-UNPACK-SIGNATURE-41c7\n" > evil.ps1
printf 'hello hello hello hello\n' > a.txt
touch -d '2024-01-02 03:04:05' evil.ps1 a.txt

zip -q -X ../zip_deflate.zip a.txt evil.ps1
zip -q -X -0 ../zip_stored.zip evil.ps1
zip -q -X -Z bzip2 ../zip_bzip2.zip evil.ps1
zip -q -X -fz ../zip_zip64.zip evil.ps1
bsdtar --format zip -cf ../zip_dd.zip evil.ps1
zip -q -X -P secret ../zip_enc.zip evil.ps1
tar -b1 --format=ustar -cf ../a.tar evil.ps1
tar -b1 --format=v7 -cf ../v7.tar evil.ps1
tar -b1 --format=pax -cf ../pax.tar evil.ps1
7z a -bd -y ../a.7z a.txt evil.ps1 >/dev/null
7z a -bd -y -psecret ../enc.7z evil.ps1 >/dev/null
gcab -c -n -z ../a.cab a.txt evil.ps1
for h in newc odc bin; do
    echo evil.ps1 | cpio --quiet -o -H $h > ../$h.cpio
done
bsdtar --format xar -cf ../a.xar evil.ps1
ar rc ../a.ar a.txt evil.ps1
gzip -n -c evil.ps1 > ../evil.gz
bzip2 -c evil.ps1 > ../evil.bz2
xz -c evil.ps1 > ../evil.xz
{ gzip -n -c a.txt; gzip -n -c evil.ps1; } > ../cat.gz
arj a -y ../a.arj a.txt evil.ps1 >/dev/null
arj a -y -m4 ../m4.arj evil.ps1 >/dev/null
tar -b1 -cf payload.tar evil.ps1 && gzip -n -c payload.tar > ../payload.tar.gz

cat > gen_main.c <<'CEOF'
#include "gen_containers.h"
#include <stdio.h>
#include <string.h>

static int save(const char *path, gen_buf *b)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(b->p, 1, b->n, f) != b->n)
        return 1;
    fclose(f);
    gen_buf_free(b);
    return 0;
}

int main(void)
{
    const char *d = "Write-Output 'x' # AMSI-UNPACK-SIGNATURE-41c7\n";
    gen_buf b = {0};
    int e = 0;
    e |= gen_rar4_stored("evil.ps1", d, strlen(d), &b) | save("../a4.rar", &b);
    e |= gen_rar5_stored("evil.ps1", d, strlen(d), &b) | save("../a5.rar", &b);
    e |= gen_lha_stored(0, "evil.ps1", d, strlen(d), &b) | save("../l0.lzh", &b);
    e |= gen_lha_stored(1, "evil.ps1", d, strlen(d), &b) | save("../l1.lzh", &b);
    e |= gen_lha_stored(2, "evil.ps1", d, strlen(d), &b) | save("../l2.lzh", &b);
    e |= gen_zip_overlap(3, 1, &b) | save("../overlap.zip", &b);
    e |= gen_gzip_zeros(2, &b) | save("../zeros.gz", &b);
    return e;
}
CEOF
cc -I"$here" -o gen_main gen_main.c "$here/gen_containers.c" -lz
./gen_main

cd "$work"
{ printf 'MZ'; head -c 510 /dev/zero | tr '\0' 'A'; } > stub
cat stub zip_deflate.zip > sfx_zip.exe
cat stub a.7z > sfx_7z.exe
cat stub a.arj > sfx_arj.exe
cat stub l1.lzh > sfx_lha.exe
rm -f stub

rm -f "$corpus"/*
for f in *; do
    [ -f "$f" ] || continue
    size=$(wc -c < "$f")
    if [ "$size" -lt 4096 ]; then
        cp "$f" "$corpus/$f"
    else
        echo "make_unpack_corpus.sh: skipping $f ($size bytes)" >&2
    fi
done
ls "$corpus" | wc -l
