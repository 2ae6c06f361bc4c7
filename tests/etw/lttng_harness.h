/*
 * lttng_harness.h - the tests' LTTng session daemon: the one that already answers, or one started
 * for the test (as root that is the machine's global daemon, so such tests run one at a time).
 */
#ifndef AMSI_TEST_LTTNG_HARNESS_H
#define AMSI_TEST_LTTNG_HARNESS_H

#include <sys/types.h>

/*
 * Sets LTTNG_HOME to home (an existing directory), then makes sure a session daemon answers:
 * leaves a running one alone (*started = 0) or starts one and waits for its pid file (*started =
 * its pid). Returns 0, or -1 when no daemon could be started (said on stderr).
 */
int lttng_harness_start(const char *home, pid_t *started);

/* Runs a shell command made from fmt; a failure is said on stderr. Returns system()'s status. */
#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
int lttng_harness_run(const char *fmt, ...);

/* Stops the daemon lttng_harness_start() started (started > 0), waiting up to 5 s for it. */
void lttng_harness_stop(pid_t started);

#endif
