/*
 * amsi_spin.h - when a side of the socket should poll for the next frame instead of sleeping.
 *
 * On this class of machine (a VM with 2 vCPUs) a thread parked in poll() or epoll_wait() takes
 * about 8-10 µs to run again once its frame arrives: the idle vCPU halts and must be woken by an
 * interrupt. A 4 KiB request and its reply pay that twice, which is most of a 25 µs round trip;
 * polling the socket without sleeping brings the same round trip to about 9 µs. Polling costs CPU,
 * so it is worth it only when the frame usually comes within a short budget: one client waiting
 * for a small scan, or a broker thread between the requests of a busy client. It is not worth it
 * when frames come seldom (an idle host) or late (a client among many, queued behind the others),
 * and there it would take the CPU from the threads doing the work.
 *
 * So each waiter keeps a moving average of how long its waits took, blocked or not, and polls only
 * while that average is under its budget; once the waits grow, it sleeps at once, and the waits it
 * keeps measuring bring polling back when they shrink again. Nothing is shared: one amsi_spin per
 * connection (client) or per thread (broker), used by one thread at a time.
 */
#ifndef AMSI_SPIN_H
#define AMSI_SPIN_H

#include <stdbool.h>
#include <stdint.h>

#include <sched.h>
#include <time.h>

/* A yield that takes longer than this ran another thread (a bare yield takes about 1 µs). */
#define AMSI_SPIN_YIELD_NS 5000
/* After polling found the core busy, no polling for this many budgets (500 µs at 50 µs). */
#define AMSI_SPIN_CALM 10

typedef struct amsi_spin {
    uint64_t budget_ns; /* 0: never poll */
    uint64_t avg_ns;    /* moving average of the waits, 1/8 weight to the newest */
    uint64_t calm_ns;   /* no polling before this time: polling last found the core busy */
} amsi_spin;

/* CLOCK_MONOTONIC in ns. */
static inline uint64_t amsi_spin_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* True when a wait starting at now should poll for up to budget_ns before sleeping. */
static inline bool amsi_spin_worth(const amsi_spin *s, uint64_t now)
{
    return s->budget_ns != 0 && s->avg_ns < s->budget_ns && now >= s->calm_ns;
}

/* Records how long a wait took, from its start to its frame. */
static inline void amsi_spin_observe(amsi_spin *s, uint64_t waited_ns)
{
    /* A wait that slept counts as at most 4 budgets: one long pause must not stop polling long. */
    uint64_t cap = s->budget_ns * 4;
    uint64_t w = waited_ns < cap ? waited_ns : cap;
    s->avg_ns = s->avg_ns - s->avg_ns / 8 + w / 8;
}

/*
 * Between two polls: yields the core, and says whether to go on polling. A yield that comes back
 * at once found no other thread waiting for this core, so polling costs nothing but idle time. A
 * yield that took a while ran another thread: the core has work (a busy broker among its clients),
 * and polling would only take turns from it. Then the waiter sleeps, and does not poll again for
 * AMSI_SPIN_CALM budgets.
 */
static inline bool amsi_spin_relax(amsi_spin *s)
{
    uint64_t a = amsi_spin_now_ns();
    (void)sched_yield();
    uint64_t b = amsi_spin_now_ns();
    if (b - a < AMSI_SPIN_YIELD_NS)
        return true;
    s->calm_ns = b + s->budget_ns * AMSI_SPIN_CALM;
    return false;
}

#if defined(__linux__)
#include <sys/epoll.h>

/*
 * epoll_wait() with the polling above: while s says it is worth it, polls ep for up to the budget,
 * then sleeps for up to timeout_ms (-1: no limit). The wait of amsid's I/O threads, and of the
 * benchmarks' echo floor, which must wait as amsid does. Returns epoll_wait's.
 */
static inline int amsi_spin_epoll_wait(amsi_spin *s, int ep, struct epoll_event *events, int max,
                                       int timeout_ms)
{
    uint64_t start = amsi_spin_now_ns();
    int n = 0;
    if (amsi_spin_worth(s, start)) {
        while ((n = epoll_wait(ep, events, max, 0)) == 0 &&
               amsi_spin_now_ns() - start < s->budget_ns && amsi_spin_relax(s))
            ;
    }
    if (n == 0)
        n = epoll_wait(ep, events, max, timeout_ms);
    if (n > 0)
        amsi_spin_observe(s, amsi_spin_now_ns() - start);
    return n;
}
#endif

#endif
