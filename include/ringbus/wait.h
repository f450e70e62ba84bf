/* SPDX-License-Identifier: MIT */
/*
 * ringbus/wait.h - blocking and timed calls, wakeup backends, pollable fds.
 *
 * Every data-path call of channel.h has a form here that waits: it returns
 * as soon as the call can make progress, or when its deadline passes.
 *
 * Deadlines.  A deadline is an absolute time on CLOCK_MONOTONIC in
 * nanoseconds (the clock of clock_gettime(CLOCK_MONOTONIC), as a single
 * int64_t).  Two values are special:
 *   RBUS_NOWAIT   (0)          try once, like the calls of channel.h
 *                              (-EAGAIN).
 *   RBUS_FOREVER  (INT64_MAX)  wait as long as it takes.
 * Any other deadline makes a timed call: one that has passed already is
 * tried, then gets -ETIMEDOUT.
 * For a relative timeout use rbus_deadline_in(ns).  A timed call never
 * returns -ETIMEDOUT before its deadline: signals and spurious wakeups are
 * absorbed inside, and the deadline is kept across them.
 *
 * How a call waits.  First it spins, retrying the call with a CPU pause,
 * for the handle's spin budget (rbus_channel_set_spin(); default
 * RBUS_SPIN_DEFAULT_NS, 0 = sleep at once).  A producer on a full ring
 * pauses longer between tries, capacity / 8 pauses (1 to 64): trying again
 * at once would have it write, message after message, on the cache line
 * the consumer is reading, and slow both down (see rbus_send()).  Then it
 * sleeps: it registers as a sleeper in the region, issues a full fence,
 * retries the call (the re-check), and only then sleeps on the futex word
 * (or eventfd) it read before registering.  Producers wake consumers (and consumers producers)
 * after each publish only if a sleeper is registered: while both sides are
 * awake, nobody makes a system call.  doc/design.md ("Waiting") gives the
 * protocol and its ordering in full.
 *
 * Backends, chosen per region at creation (rbus_region_opts.wakeup):
 *   RBUS_WAKE_FUTEX    futex words in the shared region (default).  Works
 *                      across processes with nothing but the region fd.
 *   RBUS_WAKE_EVENTFD  two eventfds, created with the region and passed
 *                      with it (rbus_region_fds(), rbus_region_attach_fds()).
 *                      Slightly slower to wake, but pollable:
 *                      rbus_channel_fd() returns an fd for epoll/poll.
 *                      In an MPMC region, where every handle of a role
 *                      sleeps on the same eventfd, a waiting call also
 *                      looks up every 10 ms, so that a wakeup read by
 *                      another handle delays it by 10 ms at most; an idle
 *                      waiter costs ~100 wakeups/s.
 *
 * Hang-up.  When a role's last handle closes (having been opened at least
 * once), the peers' sleepers are woken.  A consumer still gets every
 * message left in the ring, then -EPIPE; a producer gets -EPIPE when the
 * ring is full.  Calls that can make progress are not affected: a producer
 * may fill the ring while no consumer is attached.  A process that dies
 * does not close its handles: its roles stay taken until released (the
 * broker, when it comes, will do that).
 *
 * Closing a handle while another thread waits on it.  Handles are not
 * thread-safe (channel.h), with one exception: rbus_channel_close() may be
 * called while another thread of the process is waiting in one of the calls
 * below on the same handle.  That call returns -ECANCELED promptly (if it
 * was sleeping it is woken), and the handle is freed only when both have
 * returned.  The waiting thread must not touch the handle again.  The
 * caller of close() must know the other thread is inside the call (e.g.
 * it saw it block), or keep it from starting one: a close() racing with
 * the start of a call is a use after free, as any other concurrent use.
 *
 * Errors of every call below, in addition to those of its channel.h form
 * (with which it shares -EMSGSIZE, -EBADF, -EBUSY, -EBADMSG):
 *   -EAGAIN      the deadline was RBUS_NOWAIT and the call could not make
 *                progress.
 *   -ETIMEDOUT   the deadline passed while waiting.
 *   -EPIPE       the call cannot make progress and the peer role has hung
 *                up (see above): no handle of it is attached now.  Not
 *                necessarily final: an SPSC role can be reopened, MPMC
 *                producers can come later.
 *   -EINTR       a signal was handled while the call slept and the handle
 *                was opened with RBUS_CHANNEL_EINTR (with or without
 *                SA_RESTART: every sleep is a timed one).  Without the
 *                flag, signals never interrupt a call.
 *   -ECANCELED   the handle was closed by another thread (see above).
 *   -EINVAL      @n == 0 for the batch forms, or @deadline < 0.
 *
 * Memory ordering: as the channel.h forms.  Thread-safety: as channel.h.
 */
#ifndef RINGBUS_WAIT_H
#define RINGBUS_WAIT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <ringbus/channel.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Wakeup backends (rbus_region_opts.wakeup). */
enum rbus_wakeup {
	RBUS_WAKE_FUTEX = 1,
	RBUS_WAKE_EVENTFD = 2,
};

#define RBUS_NOWAIT  INT64_C(0)
#define RBUS_FOREVER INT64_MAX

/* Default spin budget of a handle, in nanoseconds.  About a quarter of
 * what a cross-CPU futex wake costs on a typical VM: a peer that answers
 * within it is caught without a system call on either side. */
#define RBUS_SPIN_DEFAULT_NS 20000u
/* Largest spin budget accepted. */
#define RBUS_SPIN_MAX_NS     1000000000u

/* rbus_channel_open() flag: a signal interrupts a sleeping call with
 * -EINTR instead of being absorbed. */
#define RBUS_CHANNEL_EINTR (1u << 0)

/*
 * rbus_now - the current CLOCK_MONOTONIC time in nanoseconds.  Thread-safe.
 */
int64_t rbus_now(void);

/*
 * rbus_deadline_in - the deadline @ns nanoseconds from now: rbus_now() + @ns,
 * saturating at RBUS_FOREVER.  @ns < 0 gives RBUS_FOREVER; @ns == 0 gives a
 * deadline that has passed (the call tries once).  Thread-safe.
 */
int64_t rbus_deadline_in(int64_t ns);

/*
 * rbus_channel_set_spin - set how long a waiting call of @ch spins before
 * it sleeps, in nanoseconds (0: sleep at once).  Returns 0, or -EINVAL if
 * @ns > RBUS_SPIN_MAX_NS.  Not thread-safe with other calls on @ch.
 */
int rbus_channel_set_spin(struct rbus_channel *ch, uint32_t ns);

/* The waiting forms.  Each behaves as the call of the same name without
 * _wait (channel.h), waiting until @deadline for it to make progress. */
int rbus_send_wait(struct rbus_channel *ch, const void *buf, size_t len,
		   int64_t deadline);
ssize_t rbus_recv_wait(struct rbus_channel *ch, void *buf, size_t cap,
		       int64_t deadline);
int rbus_send_batch_wait(struct rbus_channel *ch, const struct iovec *iov,
			 unsigned n, int64_t deadline);
int rbus_recv_batch_wait(struct rbus_channel *ch, struct iovec *iov, unsigned n,
			 int64_t deadline);
int rbus_reserve_wait(struct rbus_channel *ch, void **buf, int64_t deadline);
int rbus_reserve_batch_wait(struct rbus_channel *ch, struct iovec *iov,
			    unsigned n, int64_t deadline);
ssize_t rbus_peek_wait(struct rbus_channel *ch, const void **buf,
		       int64_t deadline);
int rbus_peek_batch_wait(struct rbus_channel *ch, struct iovec *iov, unsigned n,
			 int64_t deadline);

/*
 * rbus_channel_fd - a pollable fd for an event loop (eventfd backend only).
 *
 * For a consumer, the fd becomes readable when messages may be available
 * (or the producers hung up); for a producer, when room may be available.
 * The fd belongs to the region: do not close it, and do not read it
 * yourself.  Use it level-triggered (EPOLLIN) or edge-triggered alike:
 *
 *     fd = rbus_channel_fd(ch);            add fd to epoll, EPOLLIN
 *     on EPOLLIN (and once at start):
 *         do {
 *             while ((n = rbus_recv(ch, buf, cap)) >= 0)
 *                 handle(buf, n);          stop on -EAGAIN (or -EPIPE ...)
 *         } while (n == -EAGAIN && rbus_channel_arm(ch) > 0);
 *
 * Returns the fd, or -EOPNOTSUPP (futex backend).  Thread-safe.
 */
int rbus_channel_fd(const struct rbus_channel *ch);

/*
 * rbus_channel_arm - ask to be woken through rbus_channel_fd() when the
 * handle's next call can make progress.  Consumes one pending wakeup of the
 * fd (if any), registers as a sleeper, issues a full fence and re-checks.
 *
 * Returns 0 when armed and nothing can be done now: wait for the fd.  Returns
 * 1 when the call can make progress already (messages or room arrived while
 * arming, or the peer hung up): call it again before waiting.  Returns
 * -EOPNOTSUPP (futex backend), -EBADMSG (corrupt ring), or an error of
 * read(2) on the eventfd.  Each call costs a membarrier(2) system call.
 * A waker that dies between taking the registrations and writing the
 * eventfd leaves an armed handle unwoken: an event loop that must survive
 * crashing peers should also wake up now and then (a timeout).  In a
 * process that cannot register for membarrier(2) (seccomp, old kernels),
 * arming cannot make other processes' wakers see the registration at once:
 * there, use an epoll timeout of at most 10 ms.  The same holds for an MPMC
 * role that more than one handle waits on (armed or in the calls above):
 * they share one eventfd, and the wakeup meant for one handle can be read
 * by another (doc/design.md, 7.3); after an epoll timeout, call the handle
 * and arm again.  A handle stays
 * armed until it is woken; arming twice is harmless.  Thread-safety: as the
 * data-path calls of the handle.
 */
int rbus_channel_arm(struct rbus_channel *ch);

/* Statistics of a region's wait queues (read with relaxed loads: a hint,
 * not a consistent snapshot). */
struct rbus_wait_stats {
	uint32_t data_sleepers;   /* registrations of consumers to be woken
				     (a registration can outlive its sleeper) */
	uint32_t space_sleepers;  /* the same for producers */
	uint64_t data_sleeps;     /* times a consumer went to sleep */
	uint64_t space_sleeps;    /* times a producer went to sleep */
	uint64_t data_wakes;      /* wake syscalls made for consumers */
	uint64_t space_wakes;     /* wake syscalls made for producers */
	uint64_t data_blind;      /* of those, wakes that woke nobody */
	uint64_t space_blind;
};

/*
 * rbus_region_wait_stats - fill @st from the region's wait block.
 * Returns 0.  Thread-safe.
 */
int rbus_region_wait_stats(const struct rbus_region *r,
			   struct rbus_wait_stats *st);

#ifdef __cplusplus
}
#endif
#endif /* RINGBUS_WAIT_H */
