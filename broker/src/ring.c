/*
 * ring.c - the broker's bounded lock-free MPMC queue (see ring.h): a Vyukov-style ring of void
 * pointers between the I/O threads, which push compound and large scan requests, and the scan
 * pool, which pops them.
 *
 * HOW IT WORKS
 *
 * Two counters, enqueue_pos and dequeue_pos, count the pushes and pops made since init; each lives
 * alone on its cache line, so producers and consumers do not fight over one line. They count in
 * steps of 2: bit 0 of enqueue_pos is the "closed" flag and bit 0 of dequeue_pos is always 0.
 * Position p (an even number) belongs to slot (p / 2) & mask. Each slot holds the item and a
 * sequence number, seq, that says which position the slot is ready for:
 *
 *   seq == p            free, waiting for the producer of position p;
 *   seq == p + 2        full, holding the item of position p, waiting for its consumer;
 *   seq == p + 2 * cap  free again, waiting for the producer of position p + 2 * cap (next lap).
 *
 * Initially slot i has seq == 2 * i. A push reads enqueue_pos (p) and the seq of p's slot. If
 * seq == p, the slot is free for this lap and the producer claims position p with a CAS of
 * enqueue_pos from p to p + 2; the one thread whose CAS succeeds owns the slot, writes the item and
 * then publishes it by storing seq = p + 2. If seq < p (compared as a signed difference, so that
 * the counters may wrap), the slot still holds the item of the previous lap: the ring is full and
 * the push answers -EAGAIN at once. If seq > p, another producer took p first; reread and retry.
 * A pop is the mirror image: it expects seq == p + 2 at dequeue_pos, claims p with a CAS of
 * dequeue_pos, reads the item and frees the slot for the next lap by storing seq = p + 2 * cap;
 * seq < p + 2 means empty (-EAGAIN). Both sides retry only when another thread made progress.
 * The capacity must be at least 2, or "full at p" (p + 2) and "free for the next lap" (p + 2 * cap)
 * would be the same number.
 *
 * WHY ABA CANNOT BITE
 *
 * ABA hurts a CAS that compares a value which can leave and come back (a pointer to a freed and
 * reused node, an index into a recycled array). Here the CAS targets are counters that only grow:
 * they come back to an old value only after wrapping, 2^63 operations on a 64-bit machine
 * (centuries at a billion operations a second), and a thread would have to be stalled for exactly
 * that long between its read and its CAS. Slots are reused every lap, but a slot's seq names the
 * position (and so the lap) it is ready for: a thread holding a stale position p finds seq != p
 * (or != p + 2) and rereads instead of writing into a slot another lap owns. Nothing is freed
 * while the ring lives: slots stay allocated until cleanup, and the ring never touches an item.
 *
 * MEMORY ORDER
 *
 * The item is handed over through the slot's seq, never through the counters: a producer writes
 * the item, then stores seq with release; a consumer loads seq with acquire, so it sees the item;
 * it reads the item and frees the slot with a release store of seq, which the next lap's producer
 * loads with acquire, so the consumer's read happens before the producer's overwrite. The CASes on
 * the counters only decide which thread owns a position, which the atomicity of the read-modify-
 * write settles by itself: they are relaxed.
 *
 * WHAT IS LINEARIZABLE
 *
 * A successful push takes effect at its CAS on enqueue_pos and a successful pop at its CAS on
 * dequeue_pos; the pop of position p returns the item of the push of position p. So successful
 * operations behave as one FIFO queue: if a push returns before another starts, its item is popped
 * first, and every consumer sees each producer's items in the order they were pushed. Closing takes
 * effect at a fetch_or on enqueue_pos, the very word every push CASes: a push is ordered either
 * before the close (it succeeds, and its item is popped before anyone is told -ECANCELED) or after
 * it (-EPIPE). The -EAGAIN answers are NOT linearizable: a pop can see "empty" while a later item
 * is ready, if the producer of the oldest position has claimed it but not yet published it, and a
 * push can see "full" while the consumer of the oldest slot is between its CAS and its release.
 * Such an answer costs one retry, or one BUSY reply, never an item. For the same reason the ring
 * is not lock-free in the strict sense: a producer preempted between its CAS and its publishing
 * store holds up the consumers of that one position until it runs again (and a preempted consumer
 * holds up the producers of its slot one lap later). The window is a handful of instructions.
 *
 * WHO FREES WHAT
 *
 * broker_ring_init() allocates the aligned block of counters and slots; broker_ring_cleanup() frees
 * it, once no thread uses the ring any more. Items are the callers' business: a pushed item
 * belongs to the ring until it is popped, then to the consumer. The ring never frees an item;
 * items still inside at cleanup must be drained by the caller, or they leak.
 *
 * THE WAITING PROTOCOL
 *
 * A consumer with nothing to pop first spins a bounded number of rounds (BROKER_RING_SPIN_ROUNDS,
 * with a CPU pause), because waking a sleeping thread costs far more than a short spin. Then it
 * sleeps on a 32-bit futex word, epoch, which lives with a count of sleepers, waiters, on a third
 * cache line. Pushes must stay cheap when nobody sleeps, so a producer makes the futex system call
 * only when waiters is non-zero. The two sides run:
 *
 *   consumer                               producer
 *   waiters += 1                           store slot.seq = p + 2    (publish, release)
 *   fence(seq_cst)              [Y]        fence(seq_cst)            [X]
 *   seen = epoch        (acquire)          if waiters != 0:
 *   try to pop; on success, waiters -= 1       epoch += 1            (release)
 *   else FUTEX_WAIT(epoch, seen)               FUTEX_WAKE(epoch, 1)
 *   waiters -= 1, try to pop, loop
 *
 * Why a sleeper cannot miss a push: the two seq_cst fences X and Y are ordered one way or the
 * other in the single total order of seq_cst operations. If X comes first, the consumer's pop,
 * which runs after Y, must see the published seq (C11 7.17.3: a store before fence X is visible to
 * a load after a later fence Y), so it takes the item, or finds that another consumer took it. If Y
 * comes first, the producer's load of waiters, after X, must see the consumer's increment (or a
 * later value of the counter; a later value that already counts this consumer out means it left its
 * sleep meanwhile, and its next registration falls under the same argument), so the producer bumps
 * epoch and calls FUTEX_WAKE, which wakes this consumer or another sleeper, who tries again. And
 * the consumer's seen cannot already include that bump: had its acquire load read the release
 * increment, X would happen before Y, contradicting "Y first". So seen is stale: either FUTEX_WAIT
 * finds epoch != seen and returns at once, or the consumer is already queued in the kernel (which
 * compares and queues under one lock) when the wake arrives. A pop that fails because an earlier
 * position is claimed but not yet published is covered too: the producer of that position runs the
 * same protocol when it publishes.
 *
 * A push wakes one sleeper, not all, to avoid a thundering herd. A woken consumer that finds the
 * head item still unpublished goes back to sleep, and the wake meant for a later item may then be
 * spent; so a consumer that slept and then pops an item looks once more, and if another item is
 * ready and somebody sleeps it passes the baton with one more wake. This is about keeping the pool
 * busy; correctness does not depend on it, since every push that finds a sleeper wakes one.
 *
 * broker_ring_close() sets the closed bit, bumps epoch and wakes every sleeper, unconditionally
 * (close is rare). A consumer that reads seen after the bump also sees the bit (the bump is a
 * release that follows the fetch_or), so it does not sleep; one that read seen before the bump is
 * woken or finds epoch changed. A closed ring whose pushed items are not all popped yet (a
 * producer claimed a position before the close and has not published it) does not sleep either:
 * the consumer yields the CPU and retries until the ring is drained, then answers -ECANCELED. That
 * state lasts as long as a producer takes to finish one push.
 *
 * FAILURE MODES
 *
 *  - Full: try_push answers -EAGAIN at once; the broker replies BUSY. Nothing ever blocks a push.
 *  - Spurious -EAGAIN: see "linearizable" above; a retry or a BUSY, never a lost item.
 *  - A preempted producer or consumer stalls its one position until it runs again; others that
 *    need that position see empty (or full) meanwhile. No deadlock: nobody waits for a lock.
 *  - Pushes after close fail with -EPIPE; pops drain, then -ECANCELED.
 *  - Items left in the ring at cleanup are not freed (the ring cannot know how).
 *  - If the kernel refuses futex (a seccomp filter), pop_wait returns that error instead of
 *    spinning for ever.
 *  - epoch is 32 bits: a sleeper that read seen and was stalled for exactly 2^32 wakes before
 *    calling FUTEX_WAIT would sleep through one wake, until the next push. Practically impossible.
 *  - The counters wrap modulo 2^N (N = bits in size_t); the signed differences stay correct as
 *    long as the capacity is far below 2^(N-2), which BROKER_RING_MAX_CAPACITY ensures.
 *  - The futex is process-private: the ring must not live in memory shared between processes.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* syscall() */
#endif

#include "ring.h"

#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <linux/futex.h>
#include <sys/syscall.h>

/* Destructive interference size on x86-64 and most arm64 cores. */
#define BROKER_RING_CACHE_LINE 64

/*
 * Rounds a waiting consumer spins (each one CPU pause plus one pop attempt: about 20 ns on AMD
 * Zen, about 50 ns on Intel since Skylake, whose pause is slower) before it sleeps: 2-5 us, well
 * below the 10-40 us a futex wake costs.
 */
#define BROKER_RING_SPIN_ROUNDS 100

/* Bit 0 of enqueue_pos: set once the ring is closed. Positions step by 2 and never touch it. */
#define BROKER_RING_CLOSED ((size_t)1)
#define BROKER_RING_STEP   ((size_t)2)

typedef struct broker_ring_slot {
    _Atomic size_t seq; /* the position this slot is ready for; see the essay */
    void *item;         /* written by the owning producer, read by the owning consumer */
} broker_ring_slot;

struct broker_ring_shared {
    /* Written by producers (CAS) and by close; read by consumers only to decide "drained". */
    alignas(BROKER_RING_CACHE_LINE) _Atomic size_t enqueue_pos;
    char pad_enqueue[BROKER_RING_CACHE_LINE - sizeof(size_t)];
    /* Written by consumers (CAS). */
    alignas(BROKER_RING_CACHE_LINE) _Atomic size_t dequeue_pos;
    char pad_dequeue[BROKER_RING_CACHE_LINE - sizeof(size_t)];
    /* Written by sleeping consumers and by wakers; producers only read waiters while none sleep. */
    alignas(BROKER_RING_CACHE_LINE) _Atomic uint32_t epoch; /* the futex word */
    _Atomic uint32_t waiters;                               /* consumers that may sleep */
    char pad_wait[BROKER_RING_CACHE_LINE - 2 * sizeof(uint32_t)];
    /* The slots start on a fresh cache line. */
    broker_ring_slot slots[];
};

_Static_assert(sizeof(_Atomic uint32_t) == sizeof(uint32_t), "the futex word must be 32 bits");
_Static_assert(sizeof(_Atomic size_t) == sizeof(size_t), "atomic size_t must be a plain word");
_Static_assert(sizeof(struct broker_ring_shared) % BROKER_RING_CACHE_LINE == 0,
               "the slots must start on their own cache line");

/* A hint to the CPU that this thread is spinning (lets the sibling hyperthread run). */
static inline void ring_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#else
    atomic_signal_fence(memory_order_seq_cst);
#endif
}

/* Signed distance a - b of two positions, correct across wraparound of the counters. */
static inline intptr_t ring_diff(size_t a, size_t b)
{
    /* Out-of-range unsigned-to-signed conversion is modular on every compiler we build with. */
    return (intptr_t)(a - b);
}

static inline broker_ring_slot *ring_slot(const broker_ring *r, size_t pos)
{
    return &r->shared->slots[(pos / BROKER_RING_STEP) & r->mask];
}

/*
 * Sleeps while *word == expected, until woken, the absolute CLOCK_MONOTONIC deadline (NULL = none)
 * passes or a signal arrives. Returns 0 for all of those (the caller rechecks everything), or the
 * negative errno of a refused call.
 */
static int ring_futex_wait(_Atomic uint32_t *word, uint32_t expected,
                           const struct timespec *deadline)
{
    /* FUTEX_WAIT_BITSET takes an absolute timeout on CLOCK_MONOTONIC; plain FUTEX_WAIT a relative
     * one, which would drift over repeated sleeps. */
    long rc = syscall(SYS_futex, word, FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, expected, deadline,
                      NULL, FUTEX_BITSET_MATCH_ANY);
    if (rc == 0 || errno == EAGAIN || errno == EINTR || errno == ETIMEDOUT)
        return 0;
    return -errno;
}

/* Bumps epoch and wakes up to n sleepers. Can't fail (FUTEX_WAKE on a valid word does not). */
static void ring_wake(struct broker_ring_shared *s, int n)
{
    /* Release: a consumer whose acquire load of epoch sees this bump also sees everything before
     * it (the published slot, the closed bit); the lost-wakeup argument in the essay uses it. */
    atomic_fetch_add_explicit(&s->epoch, 1, memory_order_release);
    (void)syscall(SYS_futex, &s->epoch, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, n, NULL, NULL, 0);
}

/* One pop attempt. Returns 0 with *item set, or -EAGAIN if the head position is not ready. */
static int ring_pop(const broker_ring *r, void **item)
{
    struct broker_ring_shared *s = r->shared;
    /* Relaxed: the position is only a guess that the slot's seq confirms or refutes. */
    size_t pos = atomic_load_explicit(&s->dequeue_pos, memory_order_relaxed);
    for (;;) {
        broker_ring_slot *slot = ring_slot(r, pos);
        /* Acquire: pairs with the producer's release store of seq, so its item is visible. */
        size_t seq = atomic_load_explicit(&slot->seq, memory_order_acquire);
        intptr_t dif = ring_diff(seq, pos + BROKER_RING_STEP);
        if (dif == 0) {
            /* Relaxed: the CAS only decides which consumer owns pos; the data rides on seq. On
             * failure pos is reloaded with the current value. */
            if (atomic_compare_exchange_weak_explicit(&s->dequeue_pos, &pos, pos + BROKER_RING_STEP,
                                                      memory_order_relaxed, memory_order_relaxed))
                break;
        } else if (dif < 0) {
            return -EAGAIN;
        } else {
            /* Another consumer took pos already. Relaxed, as above. */
            pos = atomic_load_explicit(&s->dequeue_pos, memory_order_relaxed);
        }
    }
    broker_ring_slot *slot = ring_slot(r, pos);
    *item = slot->item;
    /* Release: our read of item happens before the next lap's producer overwrites it. */
    atomic_store_explicit(&slot->seq, pos + BROKER_RING_STEP * (r->mask + 1), memory_order_release);
    return 0;
}

static bool ring_is_closed(const struct broker_ring_shared *s)
{
    /* Acquire: pairs with the release fetch_or in close, so whatever the closer wrote before
     * closing is visible to a consumer that sees the ring closed. */
    return (atomic_load_explicit(&s->enqueue_pos, memory_order_acquire) & BROKER_RING_CLOSED) != 0;
}

/*
 * True if the ring is closed and every pushed item has been popped (claimed by a consumer). Once
 * the closed bit is set enqueue_pos never changes again, and dequeue_pos never passes it, so a
 * dequeue_pos equal to it means nothing is left, for good.
 */
static bool ring_closed_and_drained(const struct broker_ring_shared *s)
{
    /* Acquire: as in ring_is_closed(). */
    size_t enq = atomic_load_explicit(&s->enqueue_pos, memory_order_acquire);
    if ((enq & BROKER_RING_CLOSED) == 0)
        return false;
    /* Relaxed: any value read is <= the final enqueue position; equality is final. */
    size_t deq = atomic_load_explicit(&s->dequeue_pos, memory_order_relaxed);
    return deq == (enq & ~BROKER_RING_CLOSED);
}

/* After a consumer that slept took an item: wake one more sleeper if another item is ready. */
static void ring_pass_baton(const broker_ring *r)
{
    struct broker_ring_shared *s = r->shared;
    /* Relaxed loads throughout: this is a heuristic for throughput, not needed for correctness. */
    if (atomic_load_explicit(&s->waiters, memory_order_relaxed) == 0)
        return;
    size_t pos = atomic_load_explicit(&s->dequeue_pos, memory_order_relaxed);
    size_t seq = atomic_load_explicit(&ring_slot(r, pos)->seq, memory_order_relaxed);
    if (seq == pos + BROKER_RING_STEP)
        ring_wake(s, 1);
}

/* Sets *deadline to now + ms on CLOCK_MONOTONIC. */
static void ring_deadline(struct timespec *deadline, int ms)
{
    clock_gettime(CLOCK_MONOTONIC, deadline);
    deadline->tv_sec += ms / 1000;
    deadline->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (deadline->tv_nsec >= 1000000000L) {
        deadline->tv_sec++;
        deadline->tv_nsec -= 1000000000L;
    }
}

/* True once CLOCK_MONOTONIC has reached deadline. */
static bool ring_past(const struct timespec *deadline)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec > deadline->tv_sec ||
           (now.tv_sec == deadline->tv_sec && now.tv_nsec >= deadline->tv_nsec);
}

int broker_ring_init(broker_ring *r, size_t capacity)
{
    if (r == NULL)
        return -EINVAL;
    memset(r, 0, sizeof(*r));
    if (capacity == 0 || capacity > BROKER_RING_MAX_CAPACITY)
        return -EINVAL;
    size_t cap = 2;
    while (cap < capacity)
        cap *= 2;
    /* No overflow: cap <= 2^(N-8) and a slot is at most 16 bytes. aligned_alloc wants a size that
     * is a multiple of the alignment. */
    size_t size = sizeof(struct broker_ring_shared) + cap * sizeof(broker_ring_slot);
    size = (size + BROKER_RING_CACHE_LINE - 1) / BROKER_RING_CACHE_LINE * BROKER_RING_CACHE_LINE;
    struct broker_ring_shared *s = aligned_alloc(BROKER_RING_CACHE_LINE, size);
    if (s == NULL)
        return -ENOMEM;
    memset(s, 0, sizeof(*s));
    /* Relaxed throughout: no other thread can see the ring before init returns; whoever hands r
     * to another thread (pthread_create, a mutex, a release store) publishes these stores. */
    atomic_init(&s->enqueue_pos, 0);
    atomic_init(&s->dequeue_pos, 0);
    atomic_init(&s->epoch, 0);
    atomic_init(&s->waiters, 0);
    for (size_t i = 0; i < cap; i++) {
        atomic_init(&s->slots[i].seq, i * BROKER_RING_STEP);
        s->slots[i].item = NULL;
    }
    r->shared = s;
    r->mask = cap - 1;
    return 0;
}

void broker_ring_cleanup(broker_ring *r)
{
    if (r == NULL)
        return;
    free(r->shared);
    memset(r, 0, sizeof(*r));
}

int broker_ring_try_push(broker_ring *r, void *item)
{
    if (r == NULL || r->shared == NULL)
        return -EINVAL;
    struct broker_ring_shared *s = r->shared;
    /* Relaxed: the position is only a guess that the slot's seq and the CAS confirm. */
    size_t pos = atomic_load_explicit(&s->enqueue_pos, memory_order_relaxed);
    for (;;) {
        if (pos & BROKER_RING_CLOSED)
            return -EPIPE;
        broker_ring_slot *slot = ring_slot(r, pos);
        /* Acquire: pairs with the release store of the consumer that freed the slot, so its read
         * of the old item happens before our write of the new one. */
        size_t seq = atomic_load_explicit(&slot->seq, memory_order_acquire);
        intptr_t dif = ring_diff(seq, pos);
        if (dif == 0) {
            /* Relaxed: the CAS only decides which producer owns pos. It fails if another producer
             * took pos or if close set the closed bit; either way pos is reloaded. */
            if (atomic_compare_exchange_weak_explicit(&s->enqueue_pos, &pos, pos + BROKER_RING_STEP,
                                                      memory_order_relaxed, memory_order_relaxed))
                break;
        } else if (dif < 0) {
            return -EAGAIN;
        } else {
            pos = atomic_load_explicit(&s->enqueue_pos, memory_order_relaxed);
        }
    }
    broker_ring_slot *slot = ring_slot(r, pos);
    slot->item = item;
    /* Release: publishes the item to the consumer's acquire load of seq. */
    atomic_store_explicit(&slot->seq, pos + BROKER_RING_STEP, memory_order_release);
    /* Seq_cst fence X of the waiting protocol: orders the publishing store above before the load
     * of waiters below (store-load order, which release/acquire does not give). */
    atomic_thread_fence(memory_order_seq_cst);
    /* Relaxed: the fence does the ordering; a stale non-zero only costs a needless wake. */
    if (atomic_load_explicit(&s->waiters, memory_order_relaxed) != 0)
        ring_wake(s, 1);
    return 0;
}

int broker_ring_try_pop(broker_ring *r, void **item)
{
    if (r == NULL || r->shared == NULL || item == NULL)
        return -EINVAL;
    if (ring_pop(r, item) == 0)
        return 0;
    return ring_closed_and_drained(r->shared) ? -ECANCELED : -EAGAIN;
}

int broker_ring_pop_wait(broker_ring *r, void **item, int timeout_ms)
{
    if (r == NULL || r->shared == NULL || item == NULL)
        return -EINVAL;
    struct broker_ring_shared *s = r->shared;
    if (ring_pop(r, item) == 0)
        return 0;
    if (ring_closed_and_drained(s))
        return -ECANCELED;
    if (timeout_ms == 0)
        return -ETIMEDOUT;
    for (int i = 0; i < BROKER_RING_SPIN_ROUNDS; i++) {
        ring_cpu_relax();
        if (ring_pop(r, item) == 0)
            return 0;
    }

    bool forever = timeout_ms < 0;
    struct timespec deadline = {0, 0};
    if (!forever)
        ring_deadline(&deadline, timeout_ms);
    bool slept = false;
    for (;;) {
        /* Relaxed: the fence below orders this increment before the pop attempt (store-load),
         * which is all the protocol needs. */
        atomic_fetch_add_explicit(&s->waiters, 1, memory_order_relaxed);
        /* Seq_cst fence Y of the waiting protocol (see the essay). */
        atomic_thread_fence(memory_order_seq_cst);
        /* Acquire: pairs with the release bump in ring_wake(); read before the pop attempt, so
         * a push the attempt misses has not bumped epoch yet. */
        uint32_t seen = atomic_load_explicit(&s->epoch, memory_order_acquire);
        bool got = ring_pop(r, item) == 0;
        int rc = 0;
        if (!got && !ring_is_closed(s) && (forever || !ring_past(&deadline))) {
            rc = ring_futex_wait(&s->epoch, seen, forever ? NULL : &deadline);
            slept = true;
        }
        /* Relaxed: a producer that still sees us counted only makes a needless wake; one that
         * misses us is harmless because we pop again (and re-register) before sleeping again. */
        atomic_fetch_sub_explicit(&s->waiters, 1, memory_order_relaxed);
        if (got || ring_pop(r, item) == 0) {
            if (slept)
                ring_pass_baton(r);
            return 0;
        }
        if (rc < 0)
            return rc;
        if (ring_closed_and_drained(s))
            return -ECANCELED;
        if (!forever && ring_past(&deadline))
            return -ETIMEDOUT;
        if (ring_is_closed(s))
            /* Closed, but a producer has yet to publish an item it claimed before the close:
             * never sleep on a closed ring (nobody would wake us); let that producer run. */
            sched_yield();
    }
}

void broker_ring_close(broker_ring *r)
{
    if (r == NULL || r->shared == NULL)
        return;
    struct broker_ring_shared *s = r->shared;
    /* Release: pairs with the acquire loads in ring_is_closed()/ring_closed_and_drained(). The
     * read-modify-write lands in enqueue_pos's modification order between two pushes' CASes, which
     * is what makes close linearizable with respect to pushes. */
    atomic_fetch_or_explicit(&s->enqueue_pos, BROKER_RING_CLOSED, memory_order_release);
    ring_wake(s, INT_MAX);
}

size_t broker_ring_size_approx(const broker_ring *r)
{
    if (r == NULL || r->shared == NULL)
        return 0;
    const struct broker_ring_shared *s = r->shared;
    /* Relaxed: a statistic; the two loads are not a consistent snapshot, hence the clamping. */
    size_t deq = atomic_load_explicit(&s->dequeue_pos, memory_order_relaxed);
    size_t enq = atomic_load_explicit(&s->enqueue_pos, memory_order_relaxed) & ~BROKER_RING_CLOSED;
    intptr_t n = ring_diff(enq, deq) / (intptr_t)BROKER_RING_STEP;
    if (n <= 0)
        return 0;
    return (size_t)n > r->mask + 1 ? r->mask + 1 : (size_t)n;
}

size_t broker_ring_capacity(const broker_ring *r)
{
    if (r == NULL || r->shared == NULL)
        return 0;
    return r->mask + 1;
}
