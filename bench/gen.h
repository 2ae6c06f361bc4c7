/*
 * gen.h - generated PowerShell-like script blocks, shared by the broker benchmarks: the same seed
 * gives the same text, and every block starts with a stamp line that a benchmark rewrites to make
 * each request unique (so the broker's verdict cache cannot answer).
 */
#ifndef BENCH_GEN_H
#define BENCH_GEN_H

#include <stddef.h>
#include <stdint.h>

/* The first line of every block: this prefix, BENCH_STAMP_DIGITS hex digits, a newline. */
#define BENCH_STAMP_PREFIX "# bench-block "
#define BENCH_STAMP_DIGITS 16
/* The smallest block bench_gen_script() fills (the stamp line and one statement's start). */
#define BENCH_GEN_MIN_SIZE 64

/* Fills block with exactly size (>= BENCH_GEN_MIN_SIZE) bytes of benign script. Can't fail. */
void bench_gen_script(uint64_t *rng, uint8_t *block, size_t size);
/* Writes stamp as hex digits into the stamp line of a generated block. Can't fail. */
void bench_gen_stamp(uint8_t *block, uint64_t stamp);
/* Writes the UTF-16LE form of n bytes of ASCII into out (2n bytes; out may equal in). */
void bench_gen_widen(const uint8_t *in, size_t n, uint8_t *out);

#endif
