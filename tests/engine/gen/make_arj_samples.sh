#!/bin/sh
# make_arj_samples.sh - regenerates the ARJ fixtures used by tests/engine/test_arj.c and the seed
# corpus of tests/fuzz/fuzz_arj.c, with Debian's arj (apt-get install arj) and a C compiler.
#
# The member contents are deterministic (the generator below is mirrored by gen_big() in
# test_arj.c, which rebuilds the 200 KiB file and compares it byte for byte) and every file's time
# is fixed; only the creation time in each archive's main header changes from run to run.
#
# Usage: sh tests/engine/gen/make_arj_samples.sh   (from anywhere; writes into the source tree)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
data="$root/tests/engine/data/arj"
corpus="$root/tests/fuzz/corpus/arj"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM

command -v arj >/dev/null || { echo "make_arj_samples.sh: needs arj (apt-get install arj)" >&2; exit 1; }

# The content generator: a xorshift32 stream; each 4096-byte block is 64 random bytes followed by
# numbered lines of six words from a 16-word list, cut at the block's end.
cat > "$work/gen.c" <<'CEOF'
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static uint32_t gen_next(uint32_t *s)
{
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *s = x;
    return x;
}

int main(int argc, char **argv)
{
    static const char *const words[16] = {"alpha", "bravo",  "charlie", "delta", "echo", "foxtrot",
                                          "golf",  "hotel",  "india",   "juliet", "kilo", "lima",
                                          "mike",  "november", "oscar", "papa"};
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 0;
    uint32_t s = 0x2545F491u;
    size_t pos = 0;
    unsigned line = 0;
    while (pos < n) {
        size_t end = n - pos > 4096 ? pos + 4096 : n;
        for (int i = 0; i < 64 && pos < end; i++, pos++)
            putchar((int)(gen_next(&s) & 0xFF));
        while (pos < end) {
            char tmp[128];
            int k = snprintf(tmp, sizeof(tmp), "%06u", line++);
            for (int w = 0; w < 6; w++)
                k += snprintf(tmp + k, sizeof(tmp) - (size_t)k, " %s", words[gen_next(&s) & 15]);
            tmp[k++] = '\n';
            for (int i = 0; i < k && pos < end; i++, pos++)
                putchar(tmp[i]);
        }
    }
    return 0;
}
CEOF
${CC:-cc} -O2 -o "$work/gen" "$work/gen.c"

mkdir -p "$work/in/multi/docs" "$data" "$corpus"
cd "$work/in"
"$work/gen" 204800 > big.txt
"$work/gen" 3000 > small.txt
printf 'hello world\n' > hello.txt
: > empty
"$work/gen" 2048 | tail -c 1024 > multi/docs/readme.txt
{
    "$work/gen" 1500 | tail -c 700
    printf '\nAMSI-BROKER-ARJ-PLANTED-MARKER\n'
    "$work/gen" 1500 | tail -c 700
} > multi/planted.txt
cp hello.txt empty multi/
find . -exec touch -d '2020-01-02 03:04:06' {} +

# arj a: -y assume yes, -m<n> method, -a1 include directories, -r recurse, -g<pw> garble.
mk() { out=$1; shift; rm -f "$out"; arj a -y "$@" >/dev/null; }

mk "$data/stored.arj" "$data/stored.arj" -m0 hello.txt multi/docs/readme.txt
for m in 1 2 3 4; do
    mk "$data/big_m$m.arj" "$data/big_m$m.arj" -m$m big.txt
done
# -a1 -r with a wildcard stores the directory "docs" as a member of its own.
(cd multi && mk "$data/multi.arj" "$data/multi.arj" -m1 -a1 -r '*')
mk "$data/garbled.arj" "$data/garbled.arj" -m1 -gsecret multi/planted.txt
# The first volume of a two-volume archive: its member carries the VOLUME flag.
rm -f "$work/vol.a"*
arj a -y -m1 -v12k "$work/vol.arj" big.txt >/dev/null
cp "$work/vol.arj" "$data/volume1.arj"

for m in 0 1 3 4; do
    mk "$corpus/small_m$m.arj" "$corpus/small_m$m.arj" -m$m small.txt
done
cp "$data/multi.arj" "$data/garbled.arj" "$data/stored.arj" "$corpus/"

ls -l "$data" "$corpus"
