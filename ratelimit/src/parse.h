/*
 * parse.h - what the ratelimit module's two configuration sections share (private).
 */
#ifndef RATELIMIT_PARSE_H
#define RATELIMIT_PARSE_H

#include <stdbool.h>
#include <stdint.h>

/*
 * Parses s as a decimal number within [min, max] (digits only, nothing after them). Returns
 * false, leaving *out alone, when it is not one. Can't fail.
 */
bool ratelimit__parse_number(const char *s, uint64_t min, uint64_t max, uint64_t *out);

#endif
