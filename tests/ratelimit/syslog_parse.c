/*
 * syslog_parse.c - the RFC 5424 parser of the reporter's tests (see syslog_parse.h).
 */
#include "syslog_parse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Copies the token at *p (up to a space) into out; fails when empty or longer than max. */
static bool token(const char **p, const char *end, char *out, size_t max)
{
    size_t n = 0;
    while (*p < end && **p != ' ') {
        if (n + 1 >= max || (unsigned char)**p < 33 || (unsigned char)**p > 126)
            return false;
        out[n++] = *(*p)++;
    }
    out[n] = '\0';
    if (n == 0 || *p >= end)
        return false;
    (*p)++; /* the space */
    return true;
}

/* Parses one SD-NAME into out (1-32 printable characters but '=', ' ', ']', '"'). */
static bool sd_name(const char **p, const char *end, char *out)
{
    size_t n = 0;
    while (*p<end &&* * p> 32 && **p < 127 && **p != '=' && **p != ']' && **p != '"' &&
           **p != ' ') {
        if (n == 32)
            return false;
        out[n++] = *(*p)++;
    }
    out[n] = '\0';
    return n > 0;
}

/* Parses SD elements at *p; fills the first element's id and params. */
static bool parse_elements(const char **p, const char *end, syslog_msg *m)
{
    bool first = true;
    if (*p >= end || **p != '[')
        return false;
    while (*p < end && **p == '[') {
        (*p)++;
        char id[33];
        if (!sd_name(p, end, id))
            return false;
        if (first)
            memcpy(m->sd_id, id, sizeof(id));
        while (*p < end && **p == ' ') {
            (*p)++;
            syslog_param tmp,
                *prm = first && m->nparams < SYSLOG_MAX_PARAMS ? &m->params[m->nparams] : &tmp;
            if (!sd_name(p, end, prm->name) || *p + 2 > end || (*p)[0] != '=' || (*p)[1] != '"')
                return false;
            *p += 2;
            size_t n = 0;
            for (;;) {
                if (*p >= end)
                    return false;
                char c = *(*p)++;
                if (c == '"')
                    break;
                if (c == ']')
                    return false; /* must be escaped */
                if (c == '\\' && *p < end && (**p == '"' || **p == '\\' || **p == ']'))
                    c = *(*p)++;
                if (n + 1 >= sizeof(prm->value))
                    return false;
                prm->value[n++] = c;
            }
            prm->value[n] = '\0';
            if (prm != &tmp)
                m->nparams++;
        }
        if (*p >= end || **p != ']')
            return false;
        (*p)++;
        first = false;
    }
    return true;
}

bool syslog_parse_sd(const char *buf, size_t len, syslog_msg *m)
{
    memset(m, 0, sizeof(*m));
    const char *p = buf, *end = buf + len;
    return parse_elements(&p, end, m) && p == end;
}

bool syslog_parse(const char *buf, size_t len, syslog_msg *m)
{
    memset(m, 0, sizeof(*m));
    const char *p = buf, *end = buf + len;
    if (p >= end || *p++ != '<')
        return false;
    int pri = 0, digits = 0;
    while (p < end && *p >= '0' && *p <= '9' && digits < 3) {
        pri = pri * 10 + (*p++ - '0');
        digits++;
    }
    if (digits == 0 || pri > 191 || p >= end || *p++ != '>')
        return false;
    m->pri = pri;
    if (p + 2 > end || p[0] != '1' || p[1] != ' ')
        return false;
    m->version = 1;
    p += 2;
    if (!token(&p, end, m->timestamp, sizeof(m->timestamp)) ||
        !token(&p, end, m->hostname, sizeof(m->hostname)) ||
        !token(&p, end, m->app, sizeof(m->app)) || !token(&p, end, m->procid, sizeof(m->procid)) ||
        !token(&p, end, m->msgid, sizeof(m->msgid)))
        return false;
    if (p < end && *p == '-') {
        p++;
    } else if (!parse_elements(&p, end, m)) {
        return false;
    }
    if (p == end)
        return true;
    if (*p++ != ' ')
        return false;
    size_t n = (size_t)(end - p);
    if (n >= sizeof(m->msg))
        return false;
    memcpy(m->msg, p, n);
    m->msg[n] = '\0';
    return true;
}

const char *syslog_param_get(const syslog_msg *m, const char *name)
{
    for (int i = 0; i < m->nparams; i++)
        if (strcmp(m->params[i].name, name) == 0)
            return m->params[i].value;
    return NULL;
}

bool syslog_rfc3339_us(const char *s, uint64_t *ns)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:dd.ddddddZ";
    if (strlen(s) != sizeof(shape) - 1)
        return false;
    for (size_t i = 0; shape[i] != '\0'; i++) {
        if (shape[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != shape[i])
            return false;
    }
    struct tm tm = {0};
    unsigned us;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d.%6uZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec, &us) != 7)
        return false;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    if (tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 ||
        tm.tm_min > 59 || tm.tm_sec > 60)
        return false;
    time_t t = timegm(&tm);
    *ns = (uint64_t)t * 1000000000u + (uint64_t)us * 1000u;
    return true;
}
