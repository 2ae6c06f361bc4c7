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
#include <sys/mman.h>
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

void engine__db_free(engine__db *db)
{
    if (db->mapped > 0)
        munmap(db->db, db->mapped);
    else
        hs_free_database(db->db);
    db->db = NULL;
    db->mapped = 0;
}

/*
 * Deserializes one database into a fresh anonymous mapping populated in one system call: a
 * database is megabytes, and faulting it in page by page is most of a warm start's cost.
 * Returns 0, 1 (unusable bytes: a cache miss) or ENGINE_ENOMEM.
 */
static int deserialize(const char *bytes, size_t len, engine__db *out)
{
    size_t size = 0;
    if (hs_serialized_database_size(bytes, len, &size) != HS_SUCCESS || size == 0)
        return 1;
    void *mem =
        mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (mem == MAP_FAILED)
        return ENGINE_ENOMEM;
    if (hs_deserialize_database_at(bytes, len, mem) != HS_SUCCESS) {
        munmap(mem, size);
        return 1;
    }
    out->db = mem;
    out->mapped = size;
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
    if (fstat(fd, &st) != 0 || st.st_size < 40 + 8 * ENGINE__DB_COUNT) {
        close(fd);
        return 1;
    }
    /* Mapped rather than read: the entry is copied once, by hs_deserialize_database. */
    size_t size = (size_t)st.st_size;
    const uint8_t *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return 1;
    int rc = 1;
    engine__db dbs[ENGINE__DB_COUNT] = {0};
    size_t off = 40;
    if (memcmp(map, CACHE_MAGIC, 8) != 0 || memcmp(map + 8, key, 32) != 0)
        goto out;
    for (int i = 0; i < ENGINE__DB_COUNT; i++) {
        uint64_t len;
        if (size - off < sizeof(len))
            goto out;
        memcpy(&len, map + off, sizeof(len));
        off += sizeof(len);
        if (len > size - off)
            goto out;
        /* An empty database was empty when stored: the key covers the plan. */
        if (len > 0) {
            int drc = deserialize((const char *)map + off, len, &dbs[i]);
            if (drc != 0) {
                rc = drc;
                goto out;
            }
        }
        off += len;
    }
    if (off != size)
        goto out;
    for (int i = 0; i < ENGINE__DB_COUNT; i++) {
        rules->dbs[i].db = dbs[i].db;
        rules->dbs[i].mapped = dbs[i].mapped;
        dbs[i].db = NULL;
    }
    rc = 0;
out:
    for (int i = 0; i < ENGINE__DB_COUNT; i++)
        engine__db_free(&dbs[i]);
    munmap((void *)(uintptr_t)map, size);
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
