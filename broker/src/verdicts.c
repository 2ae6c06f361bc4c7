/*
 * verdicts.c - the verdict cache (see verdicts.h).
 *
 * 16 shards, each a small open table of entries with a mutex; a lookup locks one shard for a
 * few comparisons, so threads rarely meet. Within a shard an entry's position is chosen by the
 * key, and among the SHARD_WAYS slots of its set the least recently used one is replaced: a
 * set-associative cache, which bounds memory and needs no list surgery.
 */
#include "verdicts.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define SHARDS 16
#define WAYS   4

typedef struct entry {
    uint8_t key[32];
    uint64_t generation;
    uint64_t used; /* shard clock at the last use; 0 = empty */
    broker_verdict v;
} entry;

typedef struct shard {
    pthread_mutex_t lock;
    uint64_t clock;
    size_t sets;
    entry *entries; /* sets * WAYS */
} shard;

struct broker_verdicts {
    shard shards[SHARDS];
};

broker_verdicts *broker_verdicts_create(size_t entries)
{
    broker_verdicts *vc = calloc(1, sizeof(*vc));
    if (vc == NULL)
        return NULL;
    size_t sets = entries / (SHARDS * WAYS);
    for (int i = 0; i < SHARDS; i++) {
        shard *sh = &vc->shards[i];
        pthread_mutex_init(&sh->lock, NULL);
        sh->sets = sets;
        if (sets > 0 && (sh->entries = calloc(sets * WAYS, sizeof(entry))) == NULL) {
            broker_verdicts_destroy(vc);
            return NULL;
        }
    }
    return vc;
}

void broker_verdicts_destroy(broker_verdicts *vc)
{
    if (vc == NULL)
        return;
    for (int i = 0; i < SHARDS; i++) {
        pthread_mutex_destroy(&vc->shards[i].lock);
        free(vc->shards[i].entries);
    }
    free(vc);
}

/* The shard and set of a key: SHA-256 output is uniform, so its bytes index directly. */
static entry *set_of(broker_verdicts *vc, const uint8_t key[32], shard **sh)
{
    *sh = &vc->shards[key[0] % SHARDS];
    if ((*sh)->sets == 0)
        return NULL;
    uint64_t h;
    memcpy(&h, key + 8, sizeof(h));
    return &(*sh)->entries[(h % (*sh)->sets) * WAYS];
}

bool broker_verdicts_get(broker_verdicts *vc, const uint8_t key[32], uint64_t generation,
                         broker_verdict *out)
{
    shard *sh;
    entry *set = vc ? set_of(vc, key, &sh) : NULL;
    if (set == NULL)
        return false;
    bool hit = false;
    pthread_mutex_lock(&sh->lock);
    for (int i = 0; i < WAYS; i++) {
        entry *e = &set[i];
        if (e->used && e->generation == generation && memcmp(e->key, key, 32) == 0) {
            e->used = ++sh->clock;
            *out = e->v;
            hit = true;
            break;
        }
    }
    pthread_mutex_unlock(&sh->lock);
    return hit;
}

void broker_verdicts_put(broker_verdicts *vc, const uint8_t key[32], uint64_t generation,
                         const broker_verdict *v)
{
    shard *sh;
    entry *set = vc ? set_of(vc, key, &sh) : NULL;
    if (set == NULL)
        return;
    pthread_mutex_lock(&sh->lock);
    entry *victim = &set[0];
    for (int i = 0; i < WAYS; i++) {
        entry *e = &set[i];
        if (e->used && memcmp(e->key, key, 32) == 0) {
            victim = e; /* the same content again (an older generation): replace it */
            break;
        }
        if (e->used < victim->used)
            victim = e;
    }
    memcpy(victim->key, key, 32);
    victim->generation = generation;
    victim->v = *v;
    victim->used = ++sh->clock;
    pthread_mutex_unlock(&sh->lock);
}
