/*
 * ring.h - the broker's bounded lock-free MPMC queue (private to the broker library): a
 * Vyukov-style ring of void pointers that hands compound and large scan requests from the I/O
 * threads to the scan pool (DESIGN.md §3). A full ring answers -EAGAIN at once, so the caller can
 * reply BUSY instead of queueing without bound; consumers may poll (broker_ring_try_pop) or spin
 * briefly and then sleep on a futex (broker_ring_pop_wait). How it works, and why it is correct,
 * is explained at the top of ring.c.
 *
 * Ownership: the ring stores pointers and never dereferences or frees them. Whoever pops an item
 * owns it; items still in the ring at cleanup belong to the caller, who drains them first.
 *
 * Errors are negative errno values: -EINVAL, -ENOMEM, -EAGAIN, -EPIPE, -ETIMEDOUT, -ECANCELED,
 * plus whatever the kernel's futex call may refuse with (see broker_ring_pop_wait()).
 */
#ifndef BROKER_RING_H
#define BROKER_RING_H

#include <stddef.h>

/* The shared, cache-line aligned part of a ring (indices, wait state, slots); private to ring.c. */
struct broker_ring_shared;

/*
 * A ring. The caller owns this small handle (embed it anywhere: it has no alignment demands of its
 * own); broker_ring_init() allocates the cache-line aligned indices and slots it points to. The
 * fields are read-only after init; treat them as private.
 */
typedef struct broker_ring {
    struct broker_ring_shared *shared;
    size_t mask; /* capacity - 1; the capacity is a power of two */
} broker_ring;

/*
 * Initialises r as an empty, open ring with room for at least capacity items.
 *
 * r:        the handle to fill; the caller owns its memory.
 * capacity: the wanted number of items; rounded up to a power of two, and to at least 2.
 *
 * Returns 0; -EINVAL if r is NULL, capacity is 0 or capacity is above BROKER_RING_MAX_CAPACITY;
 * -ENOMEM if the slots cannot be allocated (r is then left zeroed, and cleanup is harmless).
 * Thread safety: none; no other thread may use r until this returns.
 */
int broker_ring_init(broker_ring *r, size_t capacity);

/* The largest capacity broker_ring_init() accepts: 2^(bits in size_t - 8), 2^56 on 64 bits. */
#define BROKER_RING_MAX_CAPACITY ((size_t)1 << (sizeof(size_t) * 8 - 8))

/*
 * Frees the ring's memory and zeroes r. Items still in the ring are not touched: drain them with
 * broker_ring_try_pop() first if they need freeing. Accepts NULL and an already cleaned ring.
 * Thread safety: none; every other thread must be done with r (consumers returned, producers
 * stopped). Can't fail.
 */
void broker_ring_cleanup(broker_ring *r);

/*
 * Appends item without ever blocking or sleeping.
 *
 * r:    an initialised ring.
 * item: any pointer, NULL included; the ring does not look at it. On success ownership passes to
 *       the ring until a consumer pops it.
 *
 * Returns 0; -EAGAIN if the ring is full (the caller answers BUSY); -EPIPE once the ring is closed;
 * -EINVAL if r is NULL or not initialised.
 * Thread safety: any number of threads may push and pop concurrently. Wakes one sleeping consumer,
 * if there is one (a system call only when someone sleeps).
 */
int broker_ring_try_push(broker_ring *r, void *item);

/*
 * Takes the oldest item without ever blocking or sleeping.
 *
 * r:    an initialised ring.
 * item: receives the item on success; untouched otherwise. The caller owns the item.
 *
 * Returns 0; -EAGAIN if the ring is empty (or its oldest item is still being written by its
 * producer); -ECANCELED once the ring is closed and every pushed item has been popped; -EINVAL if
 * r or item is NULL or r is not initialised.
 * Thread safety: any number of threads may push and pop concurrently.
 */
int broker_ring_try_pop(broker_ring *r, void **item);

/*
 * Takes the oldest item, waiting for one if the ring is empty: tries, spins briefly (a bounded
 * number of rounds with a CPU pause), then sleeps on a futex until a push or broker_ring_close()
 * wakes it, or the timeout passes.
 *
 * r:          an initialised ring.
 * item:       receives the item on success; untouched otherwise. The caller owns the item.
 * timeout_ms: how long to wait at most, in milliseconds (measured on CLOCK_MONOTONIC); 0 = do not
 *             wait; negative = wait for ever.
 *
 * Returns 0; -ETIMEDOUT if no item came in time (never earlier than timeout_ms); -ECANCELED once
 * the ring is closed and every pushed item has been popped; -EINVAL if r or item is NULL or r is
 * not initialised; another negative errno (-ENOSYS, -EPERM) only if the kernel refuses the futex
 * call, e.g. under a seccomp filter.
 * Thread safety: any number of threads may push, pop and wait concurrently. The ring must not be
 * shared between processes (the futex is process-private).
 */
int broker_ring_pop_wait(broker_ring *r, void **item, int timeout_ms);

/*
 * Closes the ring: every later push fails with -EPIPE, pops drain the items already pushed and
 * then answer -ECANCELED, and every sleeping consumer is woken. Idempotent. A push that races with
 * close either succeeds (and its item will be popped before anyone sees -ECANCELED) or fails with
 * -EPIPE. Accepts NULL and an uninitialised (zeroed) ring.
 * Thread safety: may be called from any thread, concurrently with everything but cleanup. Can't
 * fail.
 */
void broker_ring_close(broker_ring *r);

/*
 * The number of items in the ring: exact when no other thread is pushing or popping, otherwise an
 * estimate (the two counters are read one after the other), clamped to 0..capacity. For
 * statistics and logs, never a basis for decisions. Returns 0 for NULL or an uninitialised ring.
 * Thread safety: any thread, any time before cleanup. Can't fail.
 */
size_t broker_ring_size_approx(const broker_ring *r);

/* The ring's capacity (the requested one rounded up), or 0 for NULL. Can't fail. */
size_t broker_ring_capacity(const broker_ring *r);

#endif
