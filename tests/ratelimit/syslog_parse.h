/*
 * syslog_parse.h - a strict little parser of RFC 5424 messages for the reporter's tests: it
 * splits the header, one or more SD elements (unescaping PARAM-VALUEs) and the MSG, and fails on
 * anything that does not follow the grammar, so a test that parses a message also checks its form.
 */
#ifndef TESTS_RATELIMIT_SYSLOG_PARSE_H
#define TESTS_RATELIMIT_SYSLOG_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SYSLOG_MAX_PARAMS 32

typedef struct syslog_param {
    char name[33];
    char value[8192]; /* unescaped */
} syslog_param;

typedef struct syslog_msg {
    int pri;
    int version;
    char timestamp[64];
    char hostname[256];
    char app[49];
    char procid[129];
    char msgid[33];
    char sd_id[33]; /* of the first SD element */
    syslog_param params[SYSLOG_MAX_PARAMS];
    int nparams;
    char msg[8192];
} syslog_msg;

/* Parses an RFC 5424 message of len bytes. Returns false when it does not follow the grammar. */
bool syslog_parse(const char *buf, size_t len, syslog_msg *m);

/*
 * Parses STRUCTURED-DATA alone (as rsyslog's %structured-data% prints it) into m's sd_id and
 * params. Returns false on a syntax error.
 */
bool syslog_parse_sd(const char *buf, size_t len, syslog_msg *m);

/* The value of param name, or NULL. */
const char *syslog_param_get(const syslog_msg *m, const char *name);

/* True when s is an RFC 3339 UTC time with exactly six fractional digits; *ns gets its value. */
bool syslog_rfc3339_us(const char *s, uint64_t *ns);

#endif
