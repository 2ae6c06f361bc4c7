/*
 * etw_schema - prints what the trace schema says, for the docs and for operators:
 *
 *   etw_schema --markdown                  the events table of etw/README.md
 *   etw_schema --lttng-events KEYWORDS [LEVEL]
 *                                          the LTTng event names enabled by these keywords (and
 *                                          level, default verbose), comma-separated, to pass to
 *                                          `lttng enable-event -u`: ETW-style keyword filtering
 *
 * KEYWORDS and LEVEL take the same values as trace.keywords and trace.level in amsid.conf.
 */
#include "etw/etw.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int usage(void)
{
    fputs("usage: etw_schema --markdown\n"
          "       etw_schema --lttng-events KEYWORDS [LEVEL]\n",
          stderr);
    return 2;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--markdown") == 0) {
        size_t n = etw_schema_markdown(NULL, 0);
        char *buf = malloc(n + 1);
        if (buf == NULL)
            return 1;
        etw_schema_markdown(buf, n + 1);
        fputs(buf, stdout);
        free(buf);
        return 0;
    }
    if ((argc == 3 || argc == 4) && strcmp(argv[1], "--lttng-events") == 0) {
        etw_config cfg;
        char err[256];
        etw_config_init(&cfg);
        if (etw_config_set(&cfg, "keywords", argv[2], err, sizeof(err)) != 0 ||
            etw_config_set(&cfg, "level", argc == 4 ? argv[3] : "verbose", err, sizeof(err)) != 0) {
            fprintf(stderr, "etw_schema: %s\n", err);
            return 2;
        }
        const char *sep = "";
        for (int i = 0; i < ETW_NEVENTS; i++) {
            const etw_event_info *e = etw_event_describe((etw_event)i);
            if (e->level <= cfg.level && (e->keyword & cfg.keywords)) {
                printf("%s%s:%s", sep, ETW_PROVIDER_NAME, e->name);
                sep = ",";
            }
        }
        putchar('\n');
        etw_config_cleanup(&cfg);
        return 0;
    }
    return usage();
}
