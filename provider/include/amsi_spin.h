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

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

typedef struct amsi_spin {
    uint64_t budget_ns; /* 0: never poll */
    uint64_t avg_ns;    /* moving average of the waits, 1/8 weight to the newest */
} amsi_spin;

/* True when the next wait should poll for up to budget_ns before sleeping. */
static inline bool amsi_spin_worth(const amsi_spin *s)
{
    return s->budget_ns != 0 && s->avg_ns < s->budget_ns;
}

/* Records how long a wait took, from its start to its frame. */
static inline void amsi_spin_observe(amsi_spin *s, uint64_t waited_ns)
{
    /* A wait that slept is counted up to 4 budgets: one long pause must not stop polling for long.
     */
    uint64_t cap = s->budget_ns * 4;
    uint64_t w = waited_ns < cap ? waited_ns : cap;
    s->avg_ns = s->avg_ns - s->avg_ns / 8 + w / 8;
}

/* A short pause between two polls, easing the sibling hyperthread and the memory bus. */
static inline void amsi_spin_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    for (int i = 0; i < 8; i++)
        _mm_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

#endif
