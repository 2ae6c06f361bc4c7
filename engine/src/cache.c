/*
 * cache.c - the serialized database cache, so that a restart with unchanged rules takes
 * milliseconds instead of a full Hyperscan compile.
 *
 * One file per key, <dir>/<hex key>.hsc:
 *   "AMSIHSC1" | key (32 bytes) | for each database: u64 size, then size bytes from
 *   hs_serialize_database() (size 0 for a database with no patterns).
 * The key already covers the rule text, the Hyperscan version, the platform and the compile plan
 * (see rules_compile.c), so a file whose key matches holds exactly the databases a compile would
 * produce. Anything unexpected (short file, bad magic, a database Hyperscan refuses) is a miss:
 * the rules are compiled and the entry rewritten. Entries are written to a temporary file and
 * renamed, so readers never see a partial one.
 */
#include "rules.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CACHE_MAGIC "AMSIHSC1"

static void cache_path(char *buf, size_t cap, const char *dir, const uint8_t key[32],
                       const char *suffix)
{
    char hex[65];
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", key[i]);
    snprintf(buf, cap, "%s/%s.hsc%s", dir, hex, suffix);
}

/* Reads exactly n bytes. Returns 0 or -1. */
static int read_all(int fd, void *buf, size_t n)
{
    uint8_t *p = buf;
    while (n > 0) {
        ssize_t got = read(fd, p, n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return -1;
        p += got;
        n -= (size_t)got;
    }
    return 0;
}

static int write_all(int fd, const void *buf, size_t n)
{
    const uint8_t *p = buf;
    while (n > 0) {
        ssize_t put = write(fd, p, n);
        if (put < 0 && errno == EINTR)
            continue;
        if (put <= 0)
            return -1;
        p += put;
        n -= (size_t)put;
    }
    return 0;
}

int engine__cache_load(engine_rules *rules, const char *dir, const uint8_t key[32])
{
    char path[4096];
    cache_path(path, sizeof(path), dir, key, "");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 1;
    struct stat st;
    char magic[8];
    uint8_t got_key[32];
    int rc = 1;
    char *buf = NULL;
    hs_database_t *dbs[ENGINE__DB_COUNT] = {0};
    if (fstat(fd, &st) != 0 || read_all(fd, magic, sizeof(magic)) != 0 ||
        memcmp(magic, CACHE_MAGIC, 8) != 0 || read_all(fd, got_key, 32) != 0 ||
        memcmp(got_key, key, 32) != 0)
        goto out;
    for (int i = 0; i < ENGINE__DB_COUNT; i++) {
        uint64_t size;
        if (read_all(fd, &size, sizeof(size)) != 0 || size > (uint64_t)st.st_size)
            goto out;
        if (size == 0)
            continue; /* the key covers the plan: an empty database was empty when stored */
        buf = malloc(size);
        if (buf == NULL) {
            rc = ENGINE_ENOMEM;
            goto out;
        }
        if (read_all(fd, buf, size) != 0 ||
            hs_deserialize_database(buf, size, &dbs[i]) != HS_SUCCESS)
            goto out;
        free(buf);
        buf = NULL;
    }
    for (int i = 0; i < ENGINE__DB_COUNT; i++) {
        rules->dbs[i].db = dbs[i];
        dbs[i] = NULL;
    }
    rc = 0;
out:
    free(buf);
    for (int i = 0; i < ENGINE__DB_COUNT; i++)
        hs_free_database(dbs[i]);
    close(fd);
    return rc;
}

int engine__cache_store(const engine_rules *rules, const char *dir, const uint8_t key[32])
{
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return ENGINE_EIO;
    char path[4096], tmp[4200];
    cache_path(path, sizeof(path), dir, key, "");
    snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return ENGINE_EIO;
    int rc = write_all(fd, CACHE_MAGIC, 8) || write_all(fd, key, 32) ? ENGINE_EIO : 0;
    for (int i = 0; i < ENGINE__DB_COUNT && rc == 0; i++) {
        char *bytes = NULL;
        size_t len = 0;
        if (rules->dbs[i].db != NULL &&
            hs_serialize_database(rules->dbs[i].db, &bytes, &len) != HS_SUCCESS) {
            rc = ENGINE_EHYPERSCAN;
            break;
        }
        uint64_t size = len;
        if (write_all(fd, &size, sizeof(size)) != 0 || (len && write_all(fd, bytes, len) != 0))
            rc = ENGINE_EIO;
        free(bytes);
    }
    if (close(fd) != 0 && rc == 0)
        rc = ENGINE_EIO;
    if (rc == 0 && rename(tmp, path) != 0)
        rc = ENGINE_EIO;
    if (rc != 0)
        unlink(tmp);
    return rc;
}
