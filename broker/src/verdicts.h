/*
 * verdicts.h - the broker's verdict cache: the answer for content already scanned, keyed by the
 * SHA-256 of the content and the rule-set generation (so a reload invalidates everything at
 * once). Bounded (LRU per shard); only clean and detected verdicts are kept, never errors or
 * limits, whose next attempt may differ.
 */
#ifndef BROKER_VERDICTS_H
#define BROKER_VERDICTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct broker_verdicts broker_verdicts;

typedef struct broker_verdict {
    uint32_t amsi_result;
    char rule[128];
    char object[256];
} broker_verdict;

/* Creates a cache of about `entries` entries (0: a cache that never holds anything). Returns
 * NULL when memory ran out. */
broker_verdicts *broker_verdicts_create(size_t entries);
void broker_verdicts_destroy(broker_verdicts *vc);

/* Looks up key; on a hit copies the verdict into *out and returns true. Thread-safe. */
bool broker_verdicts_get(broker_verdicts *vc, const uint8_t key[32], uint64_t generation,
                         broker_verdict *out);

/* Stores a verdict (replacing the least recently used entry of its shard). Thread-safe. */
void broker_verdicts_put(broker_verdicts *vc, const uint8_t key[32], uint64_t generation,
                         const broker_verdict *v);

#endif
