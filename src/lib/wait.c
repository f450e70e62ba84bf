/* SPDX-License-Identifier: MIT */
/*
 * wait.c - sleeping until a ring call can make progress, and waking.
 *
 * Two wait queues live in the region's wait block (layout.h): `data`, where
 * consumers sleep until a message arrives, and `space`, where producers
 * sleep until a slot frees.  Each has a 32-bit futex word `seq` and a count
 * of registered `sleepers`.
 *
 * The handshake (labels as in doc/design.md, "Waiting"):
 *
 *   sleeper (rbus_wait_loop)              waker (rbus_wake_peer, after a publish)
 *   S1  s = seq                           W1  publish (stamp / index / attached)
 *   S2  sleepers += 1        (R6)         W2  barrier                      (F2)
 *   S3  seq_cst fence        (F1)         W3  if sleepers == 0: done
 *   S3' membarrier (long sleeps only, M1) W4  n = exchange(sleepers, 0)   (A6)
 *   S4  retry the call: done if it moves  W5  seq += 1; futex_wake(all) / write(efd, n)
 *   S5  futex_wait(seq, s) / poll(efd)
 *
 * S2-S4 against W1-W3 is a Dekker pattern: with a full fence on both sides,
 * either S4 sees the publish or W3 sees the registration.  In the second
 * case the waker bumps seq after taking the registration (A6 pairs with R6,
 * so S1 happened before the bump): futex_wait(seq, s) then finds seq != s
 * and returns at once, or is asleep already and is woken.  With the eventfd
 * backend, W5 writes one token per registration into a semaphore-mode
 * eventfd; tokens stay until read, so a token written before the sleeper
 * polls is not lost either.  But in an MPMC region the handles of a role
 * share the eventfd, and a fellow sleeper may read the token meant for us:
 * so such a sleeper looks at seq before it polls and every RBUS_SLICE_NS
 * while it polls, and a seq that moved ends its sleep (sleep_on()).
 *
 * The waker's fence.  A seq_cst fence at W2 costs little alone, but it waits
 * for the slot's store to leave the store buffer, and a publish to a line
 * the consumer just read waits for that line: measured here, it cut SPSC
 * throughput by 3-10x.  So in a process registered for membarrier(2) W2 is
 * only a compiler barrier, and the sleeper pays instead, in two steps:
 *   - The first sleep after a registration is a probe, bounded by
 *     RBUS_PROBE_NS (10 ms).  Without the waker's fence, W3 can miss a
 *     registration only if the publish was in flight at that very moment (a
 *     store-buffer window of ~100 ns); the message is then found when the
 *     probe ends.
 *   - A sleeper whose probe ran out goes to long sleeps: S3' calls
 *     membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED), which runs a full fence
 *     on every CPU running a registered process.  That fence stands in for
 *     W2 in every waker: publishes before it are visible to S4, sleepers
 *     loads after it see S2.  Then it sleeps until its deadline, in
 *     periods of at most RBUS_LONG_SLEEP_NS.
 * A process that cannot register (old kernel, seccomp) fences at W2 itself
 * (ch->fence_publish), and its sleepers, which cannot issue M1, keep
 * sleeping in probes: slower, but never a lost wakeup.
 *
 * No needless syscalls: a waker makes one only when W3 sees a registration,
 * and W4 takes all registrations at once, so of several wakers only one
 * calls the kernel.  Only wakers clear registrations: a sleeper whose S4
 * succeeds leaves its registration behind, and costs at most one later wake
 * that wakes nobody (counted as `blind`).  A sleeper never decrements, so
 * it can never cancel another sleeper's registration.
 *
 * Futex words are compared for equality only (by the kernel, S5): the wrap
 * of seq from 2^32-1 to 0 is an increment like any other.  The futex calls
 * are never FUTEX_PRIVATE_FLAG: the word is shared between processes.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#ifdef RBUS_TEST_HOOKS
void (*rbus_test_jitter)(enum rbus_jitter_point where);
void (*rbus_test_sleep)(enum rbus_sleep_event ev, int64_t until, bool probe);
void (*rbus_test_slice)(bool sliced, int64_t deadline, int64_t *now);
#endif

/* How long the first sleep after a registration lasts (see above): the
 * worst extra latency of a wake raced away by a publish in flight.  At
 * least one scheduler tick (4 ms at HZ=250, 10 ms at HZ=100): a shorter
 * timer is the CPU's earliest, and arming and cancelling it reprograms the
 * timer device, a VM exit each way.  Measured here with spinning off: a
 * 1 ms probe made the round trip 1.17-1.29x a bare futex ping-pong, 10 ms
 * 1.01-1.05x. */
#define RBUS_PROBE_NS 10000000
/* With the eventfd backend and an MPMC ring, the longest a sleeper polls
 * before it looks whether a wake took its registration (sleep_on()): a
 * fellow sleeper of its role may have read that wake's token (design.md
 * §7.3), so this bounds how late such a wake comes, as the probe bounds a
 * wake raced away.  An idle waiter pays one wakeup per slice. */
#define RBUS_SLICE_NS RBUS_PROBE_NS
/* The longest a long sleep lasts before the sleeper looks again.  A waker
 * that dies between taking the registrations (W4) and waking (W5) leaves
 * its sleepers registered nowhere and seq unbumped: a sleeper that finds
 * nobody registered at the cap registers afresh, so this bounds how long
 * they stay stranded.  An idle waiter pays one wakeup per period. */
#define RBUS_LONG_SLEEP_NS 1000000000
/* The most pauses a spinning producer makes between tries on a full ring
 * (rbus_wait_open()). */
#define RBUS_FULL_PAUSES 64

/* Registration of this process for membarrier(2): 0 not tried yet, 1 done,
 * -1 impossible.  Process-wide because the kernel's registration is; it is
 * one of the library's two pieces of global state (the other is
 * `incarnation` in ring_mpmc.c); it is only ever set once. */
static _Atomic int membarrier_state;

static long membarrier(int cmd)
{
	return syscall(SYS_membarrier, cmd, 0, 0);
}

/* Register once; returns whether this process's publishes may skip the
 * fence.  Racing first calls both register, which is harmless. */
static bool membarrier_ready(void)
{
	/* Relaxed: the state is only a cache of the kernel's answer. */
	int st = atomic_load_explicit(&membarrier_state, memory_order_relaxed);

	if (st == 0) {
		long q = membarrier(MEMBARRIER_CMD_QUERY);

		st = q >= 0 && (q & MEMBARRIER_CMD_GLOBAL_EXPEDITED) &&
		     membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) == 0 ? 1 : -1;
		atomic_store_explicit(&membarrier_state, st, memory_order_relaxed);
	}
	return st > 0;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#endif
}

RBUS_EXPORT int64_t rbus_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

RBUS_EXPORT int64_t rbus_deadline_in(int64_t ns)
{
	int64_t now = rbus_now();

	if (ns < 0 || ns > RBUS_FOREVER - now)
		return RBUS_FOREVER;
	/* ns == 0: now, which has passed by the time anyone compares. */
	return now + ns;
}

static struct timespec ns_to_ts(int64_t ns)
{
	return (struct timespec){ .tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000 };
}

/* Stats of the wait block: relaxed, they order nothing. */
static inline void count(_Atomic uint64_t *c)
{
	atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

void rbus_wake_slow(struct rbus_waitq *q, int efd)
{
	uint32_t n;

	RBUS_JITTER(RBUS_J_WAKER_SLEEPERS);
	/* A6 (acquire): pairs with R6 in register_and_recheck() and
	 * rbus_channel_arm(); the sleeper's
	 * load of seq (S1) happens before our bump below, so its futex_wait
	 * cannot sleep on a value older than the bump. */
	n = atomic_exchange_explicit(&q->sleepers, 0, memory_order_acquire);
	if (!n)
		return;         /* another waker took them */
	/* W5.  Release: orders nothing the sleepers read (they re-check the
	 * ring, ordered by F1/F2); it keeps the bump after the exchange
	 * above.  Both backends bump: sleepers tell from seq whether their
	 * registration is still pending (register_and_recheck()). */
	atomic_fetch_add_explicit(&q->seq, 1, memory_order_release);
	RBUS_JITTER(RBUS_J_WAKER_SEQ);
	if (efd >= 0) {
		uint64_t tokens = n;

		/* write() on an eventfd fails only if the counter would
		 * overflow (EAGAIN at 2^64-2 tokens): then the fd is readable
		 * already, and every sleeper wakes anyway. */
		if (write(efd, &tokens, sizeof(tokens)) == sizeof(tokens))
			count(&q->wakes);
		return;
	}
	count(&q->wakes);
	if (syscall(SYS_futex, &q->seq, FUTEX_WAKE, INT_MAX, NULL, NULL, 0) == 0)
		count(&q->blind);
}

/* Wake everyone sleeping on q, registered or not: close() uses it so that
 * a thread of this process waiting on a closing handle notices. */
static void wake_all(struct rbus_waitq *q)
{
	/* Release: keeps the bump after the caller's store of `closing`,
	 * which the woken thread reads after futex_wait returns (the
	 * futex syscalls order them; nothing else pairs with it). */
	atomic_fetch_add_explicit(&q->seq, 1, memory_order_release);
	syscall(SYS_futex, &q->seq, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

static bool rbus_peer_hung_up(const struct rbus_channel *ch)
{
	/* `opened` first.  Acquire: pairs with its release store in the
	 * peer's open, made after it raised `attached`; so a first open in
	 * progress is never taken for a hang-up. */
	if (!atomic_load_explicit(&ch->peer_side->opened, memory_order_acquire))
		return false;
	/* Acquire: pairs with the release drop of `attached` in the peer's
	 * close (R3 in ring_spsc.c, mpmc_close()); every message the peer
	 * published before closing is visible to the retry that follows. */
	return atomic_load_explicit(&ch->peer_side->attached, memory_order_acquire) == 0;
}

/*
 * Sleep on q until woken, the deadline, a signal, or (eventfd) close.
 * Returns 0 (woken, or a spurious or stale wakeup: the caller re-checks),
 * -ETIMEDOUT, or -EINTR.  An MPMC sleeper with the eventfd backend polls
 * in slices of RBUS_SLICE_NS and returns 0 as soon as seq differs from s
 * (design.md §7.3).  The test hook hears whether the timer ended the sleep
 * (a deadline that had passed before the first poll() is not the timer's
 * doing: a token may be waiting, so it counts as woken; one that passed
 * during the slices is), and whether the sleep was a probe; nothing else
 * uses @probe.
 */
static int sleep_on(struct rbus_channel *ch, uint32_t s, int64_t deadline, bool probe)
{
	struct rbus_waitq *q = ch->my_q;
	bool expired = false;
	int r = 0;
	long rc;

	count(&q->sleeps);
	RBUS_SLEEP_HOOK(RBUS_SLEEP_BEGIN, deadline, probe);
	if (ch->my_efd < 0) {
		struct timespec ts = ns_to_ts(deadline);

		/* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC time,
		 * so the deadline survives every restart.  EAGAIN: seq moved
		 * before we slept, i.e. a wake came in.  A waiter that a
		 * FUTEX_WAKE took off the queue gets 0, even if its timer
		 * fired before it ran. */
		rc = syscall(SYS_futex, &q->seq, FUTEX_WAIT_BITSET, s,
			     deadline == RBUS_FOREVER ? NULL : &ts, NULL,
			     FUTEX_BITSET_MATCH_ANY);
		if (rc < 0 && errno == ETIMEDOUT) {
			r = -ETIMEDOUT;
			expired = true;
		} else if (rc < 0 && errno == EINTR) {
			r = -EINTR;
		}
		goto out;
	}

	struct pollfd p[2] = {
		{ .fd = ch->my_efd, .events = POLLIN },
		{ .fd = ch->cancel_efd, .events = POLLIN },
	};

	for (bool sliced = false;; sliced = true) {
		int64_t now = rbus_now(), end = deadline, left;
		int timeout_ms = -1;

		RBUS_SLICE_HOOK(sliced, deadline, &now);
		if (ch->shared_tokens) {
			/* MPMC: a fellow sleeper of our role may have read
			 * the token of the wake that took our registration
			 * (design.md §7.3).  That wake bumped seq, so look
			 * before each slice.  Relaxed: only whether it moved
			 * matters; the re-check that follows is ordered by
			 * F1/F2 as every other. */
			if (atomic_load_explicit(&q->seq, memory_order_relaxed) != s)
				goto out;
			if (deadline - now > RBUS_SLICE_NS)
				end = now + RBUS_SLICE_NS;
		}
		if (end != RBUS_FOREVER) {
			left = end - now;
			if (left <= 0) {
				/* Past the deadline before the first poll: not
				 * the timer's doing, a token may be waiting.
				 * After a slice: the slices' timers ran it out. */
				r = -ETIMEDOUT;
				expired = sliced;
				goto out;
			}
			/* Round up: poll() may wake early by less than a
			 * tick, and a timed call must not report a timeout
			 * before its deadline. */
			left = (left + 999999) / 1000000;
			timeout_ms = left > INT_MAX ? INT_MAX : (int)left;
		}
		/* poll() looks at the fds once more after its timer fires: a
		 * token written before then makes it return 1, not 0. */
		rc = poll(p, 2, timeout_ms);
		if (rc != 0)
			break;
		if (end == deadline) {
			r = -ETIMEDOUT;
			expired = true;
			goto out;
		}
		/* A slice ended: look at seq again. */
	}
	if (rc < 0) {
		r = errno == EINTR ? -EINTR : 0;
	} else if (p[0].revents & POLLIN) {
		uint64_t token;
		ssize_t got;

		/* The hook hears of the wake before the token is taken: from
		 * the read on, this sleeper owes the work the token was for. */
		RBUS_SLEEP_HOOK(RBUS_SLEEP_WOKEN, deadline, probe);
		/* Take one token (semaphore mode).  It fails with EAGAIN if
		 * another sleeper took it first; we re-check either way. */
		got = read(ch->my_efd, &token, sizeof(token));
		(void)got;
		return 0;
	}
out:
	RBUS_SLEEP_HOOK(expired ? RBUS_SLEEP_EXPIRED : RBUS_SLEEP_WOKEN, deadline, probe);
	(void)expired, (void)probe;
	return r;
}

/* The call could not move: has the peer role hung up for good?  Then one
 * more try sees everything it published (rbus_peer_hung_up()'s acquire). */
int rbus_hangup_or(struct rbus_channel *ch, rbus_try_fn op, struct iovec *iov,
		   unsigned n, int err)
{
	int r;

	if (!rbus_peer_hung_up(ch))
		return err;
	r = op(ch, iov, n);
	return r == -EAGAIN ? -EPIPE : r;
}

/*
 * S1-S4 of the handshake: register on q (unless our registration is still
 * pending) and re-check with op.  Returns the op's result, or -EAGAIN
 * (registered; nothing to do yet) with the futex word's value in *s.
 * long_sleep: issue M1 first.
 *
 * *registered and *s persist across the caller's iterations: while seq
 * still equals the *s of our registration, no waker has taken it (a waker
 * bumps seq after every exchange), so we do not add another.  A waker that
 * has taken it but not yet bumped seq is about to wake us: futex_wait(s)
 * fails once it bumps, and its eventfd token is on the way.  So every
 * sleeper has at most one registration outstanding, and leftover ones cost
 * at most one blind wake (one stale eventfd token) per wait.
 */
static int register_and_recheck(struct rbus_channel *ch, rbus_try_fn op,
				struct iovec *iov, unsigned n, bool long_sleep,
				bool *registered, uint32_t *s)
{
	struct rbus_waitq *q = ch->my_q;
	/* S1.  Relaxed: R6/A6 order it before the waker's bump. */
	uint32_t cur = atomic_load_explicit(&q->seq, memory_order_relaxed);

	RBUS_JITTER(RBUS_J_SLEEPER_SEQ);
	if (!*registered || cur != *s) {
		*s = cur;
		*registered = true;
		/* S2, R6 (release): pairs with A6 in rbus_wake_slow(). */
		atomic_fetch_add_explicit(&q->sleepers, 1, memory_order_release);
		RBUS_JITTER(RBUS_J_SLEEPER_REGISTER);
	}
	/* S3, F1 (seq_cst fence): pairs with F2 in rbus_wake_peer(): the
	 * re-check below sees the waker's publish, or the waker sees our
	 * registration (fully so when the waker fences, or after M1). */
	atomic_thread_fence(memory_order_seq_cst);
	/* S3', M1: a full fence on every CPU running a registered process,
	 * standing in for their F2.  It cannot fail once the process is
	 * registered (membarrier_ready()), which long sleeps require. */
	if (long_sleep)
		membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED);
#ifndef RBUS_TEST_NO_RECHECK
	/* S4: the re-check is the call itself. */
	return op(ch, iov, n);
#else
	(void)op, (void)iov, (void)n;
	return -EAGAIN;
#endif
}

int rbus_wait_loop(struct rbus_channel *ch, rbus_try_fn op, struct iovec *iov,
		   unsigned n, int64_t deadline)
{
	/* Long sleeps need M1 (see the top of this file). */
	const bool can_long = membarrier_ready();
#ifndef RBUS_TEST_NO_RECHECK
	bool long_sleep = false, registered = false;
#else
	/* The broken build sleeps long at once: with no probe either, a lost
	 * wakeup stays lost, as in the textbook bug the detector must see. */
	bool long_sleep = can_long, registered = false;
#endif
	int64_t now, spin_end;
	uint32_t s = 0;
	int r;

	/* Spin: the peer is likely awake and about to act. */
	now = rbus_now();
	spin_end = now + ch->spin_ns;
	if (spin_end > deadline)
		spin_end = deadline;
	for (unsigned i = 1; now < spin_end; i++) {
		for (uint32_t p = 0; p < ch->spin_pauses; p++)
			cpu_relax();
		r = op(ch, iov, n);
		if (r != -EAGAIN)
			return r;
		/* Every 32 tries, or every try of a backing-off producer:
		 * the clock, close, hang-up. */
		if (!(i & 31) || ch->spin_pauses > 1) {
			/* Relaxed: our own thread's flag, set by close() in
			 * another thread; acted on after its wake. */
			if (atomic_load_explicit(&ch->closing, memory_order_relaxed))
				return -ECANCELED;
			if (rbus_peer_hung_up(ch))
				return rbus_hangup_or(ch, op, iov, n, -EAGAIN);
			now = rbus_now();
		}
	}

	for (;;) {
		int64_t until;

		r = register_and_recheck(ch, op, iov, n, long_sleep, &registered, &s);
		if (r != -EAGAIN)
			return r;
		RBUS_JITTER(RBUS_J_SLEEPER_RECHECK);
		if (atomic_load_explicit(&ch->closing, memory_order_relaxed))
			return -ECANCELED;
		if (rbus_peer_hung_up(ch))
			return rbus_hangup_or(ch, op, iov, n, -EAGAIN);
		now = rbus_now();
		if (now >= deadline)
			return -ETIMEDOUT;
		until = deadline;
		if (deadline - now > (long_sleep ? RBUS_LONG_SLEEP_NS : RBUS_PROBE_NS))
			until = now + (long_sleep ? RBUS_LONG_SLEEP_NS : RBUS_PROBE_NS);
		/* S5 */
		r = sleep_on(ch, s, until, !long_sleep);
		if (r == -EINTR && (ch->flags & RBUS_CHANNEL_EINTR))
			return -EINTR;
		now = rbus_now();
		if (now >= deadline) {
			/* A last try: a message that arrived by the deadline
			 * is a result, not a timeout. */
			r = op(ch, iov, n);
			if (r != -EAGAIN)
				return r;
			return rbus_hangup_or(ch, op, iov, n, -ETIMEDOUT);
		}
		if (r == -ETIMEDOUT) {
			/* A long sleep ran into its cap.  If nobody is
			 * registered, a waker took ours and never woke us
			 * (it died): register afresh.  Otherwise ours is
			 * pending still, or another's wake will bump seq. */
			if (long_sleep && !atomic_load_explicit(&ch->my_q->sleepers,
								 memory_order_relaxed))
				registered = false;
			long_sleep = can_long;  /* the probe ran out */
		}
		r = op(ch, iov, n);
		if (r != -EAGAIN)
			return r;
	}
}

int rbus_wait_open(struct rbus_channel *ch)
{
	struct rbus_region *r = ch->region;
	bool consumer = ch->role == RBUS_CONSUMER;

	ch->my_q = consumer ? &r->wait->data : &r->wait->space;
	ch->peer_q = consumer ? &r->wait->space : &r->wait->data;
	ch->peer_side = consumer ? r->prod : r->cons;
	ch->my_efd = consumer ? r->efd[0] : r->efd[1];
	ch->peer_efd = consumer ? r->efd[1] : r->efd[0];
	ch->spin_ns = RBUS_SPIN_DEFAULT_NS;
	/* A producer that finds the ring full and tries again at once writes
	 * the slot the consumer has just freed, on the line the consumer is
	 * reading: the line then moves at every message and both sides slow
	 * down, so the ring stays full.  Pausing longer lets the consumer get
	 * lines ahead first.  Capacity/8 pauses (~25-40 ns each) is well
	 * under the time a full ring takes to drain, so the consumer never
	 * runs dry for it; 64 was the smallest of 16, 64 and 256 that helped
	 * (doc/performance.md, "Backing off a full ring"). */
	ch->spin_pauses = 1;
	if (!consumer) {
		uint32_t p = r->hdr.capacity / 8;

		ch->spin_pauses = p < 1 ? 1 : p > RBUS_FULL_PAUSES ? RBUS_FULL_PAUSES : p;
	}
	ch->fence_publish = !membarrier_ready();
	/* Several handles may sleep on one eventfd only in MPMC rings. */
	ch->shared_tokens = ch->my_efd >= 0 && r->hdr.kind == RBUS_HDR_KIND_MPMC;
	ch->cancel_efd = -1;
	atomic_init(&ch->refs, 1);
	atomic_init(&ch->closing, false);
	if (ch->my_efd >= 0) {
		ch->cancel_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (ch->cancel_efd < 0)
			return -errno;
	}
	return 0;
}

/* After the ring has released the role: wake the peers, so that they see
 * the hang-up (if this was the last handle of the role) or the slots a
 * close published or freed (MPMC). */
void rbus_wait_close(struct rbus_channel *ch)
{
	rbus_wake_peer(ch);
	if (ch->cancel_efd >= 0)
		close(ch->cancel_efd);
}

/* Tell a thread of this process waiting on ch that the handle is closing. */
void rbus_wait_cancel(struct rbus_channel *ch)
{
	/* Relaxed: the wake below is what the waiter acts on; it re-reads
	 * the flag after every wake, and every 32 spins. */
	atomic_store_explicit(&ch->closing, true, memory_order_relaxed);
	if (ch->cancel_efd >= 0) {
		uint64_t one = 1;

		if (write(ch->cancel_efd, &one, sizeof(one)) < 0) {
			/* Only on counter overflow: readable already. */
		}
	} else {
		/* Wakes the other sleepers of the queue too, in every
		 * process: they re-check and sleep again. */
		wake_all(ch->my_q);
	}
}

RBUS_EXPORT int rbus_channel_set_spin(struct rbus_channel *ch, uint32_t ns)
{
	if (ns > RBUS_SPIN_MAX_NS)
		return -EINVAL;
	ch->spin_ns = ns;
	return 0;
}

RBUS_EXPORT int rbus_channel_fd(const struct rbus_channel *ch)
{
	return ch->my_efd >= 0 ? ch->my_efd : -EOPNOTSUPP;
}

RBUS_EXPORT int rbus_channel_arm(struct rbus_channel *ch)
{
	struct rbus_waitq *q = ch->my_q;
	uint64_t token;
	uint32_t cur;
	int ready;

	if (ch->my_efd < 0)
		return -EOPNOTSUPP;
	/* Take one pending wakeup, so a level-triggered fd quiets down.
	 * EAGAIN: there was none. */
	if (read(ch->my_efd, &token, sizeof(token)) < 0 && errno != EAGAIN)
		return -errno;
	/* S1-S3' as in register_and_recheck(), including its rule of one
	 * registration outstanding per sleeper: an armed handle whose seq
	 * has not moved is registered still.  An armed handle waits in epoll
	 * for as long as it takes, so this is a long sleep and needs M1 (or
	 * this process's wakers fence). */
	cur = atomic_load_explicit(&q->seq, memory_order_relaxed);
	if (!ch->armed || cur != ch->arm_seq) {
		ch->arm_seq = cur;
		ch->armed = true;
		/* R6 (release): pairs with A6 in rbus_wake_slow(). */
		atomic_fetch_add_explicit(&q->sleepers, 1, memory_order_release);
	}
	/* F1: pairs with F2 in rbus_wake_peer(). */
	atomic_thread_fence(memory_order_seq_cst);
	if (membarrier_ready())
		membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED);
	/* S4, without consuming: the caller makes the call. */
	ready = ch->ops->ready(ch);
	if (ready)
		return ready;
	return rbus_peer_hung_up(ch) ? 1 : 0;
}

RBUS_EXPORT int rbus_region_wait_stats(const struct rbus_region *r,
				       struct rbus_wait_stats *st)
{
	const struct rbus_wait *w = r->wait;

	/* Relaxed: statistics, documented as a hint. */
	st->data_sleepers = atomic_load_explicit(&w->data.sleepers, memory_order_relaxed);
	st->space_sleepers = atomic_load_explicit(&w->space.sleepers, memory_order_relaxed);
	st->data_sleeps = atomic_load_explicit(&w->data.sleeps, memory_order_relaxed);
	st->space_sleeps = atomic_load_explicit(&w->space.sleeps, memory_order_relaxed);
	st->data_wakes = atomic_load_explicit(&w->data.wakes, memory_order_relaxed);
	st->space_wakes = atomic_load_explicit(&w->space.wakes, memory_order_relaxed);
	st->data_blind = atomic_load_explicit(&w->data.blind, memory_order_relaxed);
	st->space_blind = atomic_load_explicit(&w->space.blind, memory_order_relaxed);
	return 0;
}
