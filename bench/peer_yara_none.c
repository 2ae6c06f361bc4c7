/*
 * peer_yara_none.c - the libyara peer in a build without libyara: never available.
 */
#include "peers.h"

#include <stdio.h>

int bench__yara_create(const char *rules, bench__yara **out, char *why, size_t cap)
{
    (void)rules;
    *out = NULL;
    snprintf(why, cap, "not built with libyara (install libyara-dev and reconfigure)");
    return 1;
}

void bench__yara_destroy(bench__yara *y)
{
    (void)y;
}

void *bench__yara_worker(bench__yara *y)
{
    (void)y;
    return NULL;
}

void bench__yara_worker_destroy(void *w)
{
    (void)w;
}

int bench__yara_scan(void *w, const void *data, size_t len, bool *detected)
{
    (void)w;
    (void)data;
    (void)len;
    *detected = false;
    return -1;
}
