/* SPDX-License-Identifier: MIT */
/*
 * channel.c - the public handle: role and state checks, then the ring.
 *
 * Everything the ring algorithms may assume is checked here once: the role,
 * n >= 1, the zero-copy state machine (nothing outstanding, or exactly the
 * reservation/peek being finished), and commit lengths against max_msg
 * (send lengths are checked by the rings, which stop a batch there).
 *
 * Every call is built from a try-once operation (try_*), which runs the
 * ring algorithm and then wakes the peers if it published or freed
 * anything (rbus_wake_peer()).  The non-blocking calls run it once and turn
 * -EAGAIN into -EPIPE when the peer role has hung up; the _wait forms hand
 * it to rbus_wait_loop() (wait.c), which retries it while spinning and as
 * the re-check of the sleep handshake.  The one-message calls make their
 * first try without it, through the SPSC ring's inlined calls
 * (ring_spsc.h), and use it only from a first -EAGAIN on.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "internal.h"
#include "ring_spsc.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

RBUS_EXPORT int rbus_channel_open(struct rbus_region *r, enum rbus_role role,
				  uint32_t flags, struct rbus_channel **out)
{
	return rbus_channel_open_token(r, role, flags, RBUS_TOKEN_LOCAL, out);
}

int rbus_channel_open_token(struct rbus_region *r, enum rbus_role role,
			    uint32_t flags, uint32_t token,
			    struct rbus_channel **out)
{
	struct rbus_channel *ch;
	int err;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!r || (flags & ~RBUS_CHANNEL_EINTR) || token == 0 ||
	    (role != RBUS_PRODUCER && role != RBUS_CONSUMER))
		return -EINVAL;
	ch = calloc(1, sizeof(*ch));
	if (!ch)
		return -ENOMEM;
	ch->region = r;
	ch->role = role;
	ch->flags = flags;
	ch->token = token;
	ch->lease = -1;
	ch->slots = r->slots;
	ch->capacity = r->hdr.capacity;
	ch->mask = (uint64_t)r->hdr.capacity - 1;
	ch->slot_size = r->hdr.slot_size;
	ch->max_msg = r->hdr.max_msg;
	ch->ops = r->hdr.kind == RBUS_HDR_KIND_SPSC ? &rbus_spsc_ops : &rbus_mpmc_ops;
	ch->my_side = role == RBUS_PRODUCER ? r->prod : r->cons;
	ch->my_index = role == RBUS_PRODUCER ? &r->prod->index : &r->cons->index;
	ch->peer_index = role == RBUS_PRODUCER ? &r->cons->index : &r->prod->index;
	err = rbus_wait_open(ch);
	if (!err) {
		err = ch->ops->open(ch);
		if (err && ch->cancel_efd >= 0)
			close(ch->cancel_efd);
	}
	if (err) {
		free(ch);
		return err;
	}
	rbus_region_ref(r);
	*out = ch;
	return 0;
}

/* Drop a reference; the last one releases the role and frees the handle. */
static void channel_unref(struct rbus_channel *ch)
{
	/* acq_rel: the waiting call's uses of the handle happen before the
	 * release of the role and the free by whoever drops the last one. */
	if (atomic_fetch_sub_explicit(&ch->refs, 1, memory_order_acq_rel) != 1)
		return;
	ch->ops->close(ch);
	rbus_wait_close(ch);
	rbus_region_close(ch->region);
	free(ch);
}

RBUS_EXPORT void rbus_channel_close(struct rbus_channel *ch)
{
	if (!ch)
		return;
	/* Relaxed: only this thread and waiting calls of this process
	 * touch refs; a waiter took its reference before waiting. */
	if (atomic_load_explicit(&ch->refs, memory_order_relaxed) > 1)
		rbus_wait_cancel(ch);
	channel_unref(ch);
}

RBUS_EXPORT struct rbus_region *rbus_channel_region(const struct rbus_channel *ch)
{
	return ch->region;
}

RBUS_EXPORT enum rbus_role rbus_channel_role(const struct rbus_channel *ch)
{
	return ch->role;
}

RBUS_EXPORT size_t rbus_channel_max_msg(const struct rbus_channel *ch)
{
	return ch->max_msg;
}

static bool prefetch_w_works(void)
{
#if defined(__x86_64__) || defined(__i386__)
	unsigned a, b, c, d;

	/* PRFCHW (AMD: 3DNowPrefetch): CPUID 0x80000001, ECX bit 8. */
	return __get_cpuid(0x80000001, &a, &b, &c, &d) && (c & (1u << 8));
#else
	return true;
#endif
}

uint32_t rbus_ahead_slots(const struct rbus_channel *ch, uint32_t bytes)
{
	uint32_t n = bytes / ch->slot_size;

	if (!prefetch_w_works())
		return 0;
	if (n == 0)
		n = 1;
	return n < ch->capacity ? n : ch->capacity - 1;
}

/* ---- try-once operations (a handle of the right role, n >= 1) ---------- */

static int try_send(struct rbus_channel *ch, struct iovec *iov, unsigned n)
{
	int k = ch->ops->send(ch, iov, n);

	if (k > 0)
		rbus_wake_peer(ch);
	return k;
}

static int try_recv(struct rbus_channel *ch, struct iovec *iov, unsigned n)
{
	int k = ch->ops->recv(ch, iov, n);

	if (k > 0 || unlikely(ch->freed)) {
		ch->freed = false;
		rbus_wake_peer(ch);
	}
	return k;
}

static int try_reserve(struct rbus_channel *ch, struct iovec *iov, unsigned n)
{
	return ch->ops->reserve(ch, iov, n);
}

static int try_peek(struct rbus_channel *ch, struct iovec *iov, unsigned n)
{
	int k = ch->ops->peek(ch, iov, n);

	if (unlikely(ch->freed)) {
		ch->freed = false;
		rbus_wake_peer(ch);
	}
	return k;
}

/* The first try of a call found nothing to do (-EAGAIN): a non-blocking
 * call (deadline RBUS_NOWAIT) tells a hung-up peer apart; a waiting call
 * waits, holding a reference, so that close() from another thread only
 * marks the handle and wakes it (wait.h). */
static int wait_more(struct rbus_channel *ch, rbus_try_fn op, struct iovec *iov,
		     unsigned n, int64_t deadline)
{
	int k;

	if (deadline == RBUS_NOWAIT)
		return rbus_hangup_or(ch, op, iov, n, -EAGAIN);
	/* Relaxed: see rbus_channel_close(); dropped with acq_rel. */
	atomic_fetch_add_explicit(&ch->refs, 1, memory_order_relaxed);
	k = rbus_wait_loop(ch, op, iov, n, deadline);
	channel_unref(ch);
	return k;
}

/* Run op once; at -EAGAIN, tell a hung-up peer apart. */
static int try_once(struct rbus_channel *ch, rbus_try_fn op, struct iovec *iov,
		    unsigned n)
{
	int k = op(ch, iov, n);

	return unlikely(k == -EAGAIN) ? wait_more(ch, op, iov, n, RBUS_NOWAIT) : k;
}

/* A waiting call.  One that moves at once is not waiting: it takes no
 * reference (two locked operations, measured at ~20 ns a call), and
 * close() may only cancel a call known to be waiting (wait.h), i.e. one in
 * wait_more(). */
static int wait_call(struct rbus_channel *ch, rbus_try_fn op, struct iovec *iov,
		     unsigned n, int64_t deadline)
{
	int k;

	if (unlikely(deadline < 0))
		return -EINVAL;
	k = op(ch, iov, n);
	if (likely(k != -EAGAIN))
		return k;
	return wait_more(ch, op, iov, n, deadline);
}

/* The checks every data-path call starts with. */
static inline int check_idle(const struct rbus_channel *ch, enum rbus_role role)
{
	if (unlikely(ch->role != role))
		return -EBADF;
	if (unlikely(ch->pending != PENDING_NONE))
		return -EBUSY;
	return 0;
}

static inline int check_batch(const struct rbus_channel *ch, enum rbus_role role,
			      unsigned n)
{
	int err = check_idle(ch, role);

	if (unlikely(err))
		return err;
	return unlikely(!n) ? -EINVAL : 0;
}

/* ---- the calls ----------------------------------------------------------- */

/* ---- one message: send, recv, reserve, peek and their _wait forms ----------
 *
 * The first try of these is the hot path of a pipeline that sends each
 * message as it comes: for an SPSC handle it is the ring's inlined
 * one-message call (ring_spsc.h), with no iovec, loop or indirect call.
 * Whatever follows a first -EAGAIN is out of line (send_more() and the
 * like), so the hot path needs no stack frame to speak of.  rbus_commit()
 * and rbus_release() take the same calls below.
 */

/* Send once; wake the consumers if it did.  0 or a negative errno. */
static RBUS_ALWAYS_INLINE int send_one(struct rbus_channel *ch, const void *buf, size_t len)
{
	int k;

	if (ch->ops == &rbus_spsc_ops) {
		k = rbus_spsc_send1(ch, buf, len);
	} else {
		struct iovec v = { .iov_base = (void *)buf, .iov_len = len };

		k = ch->ops->send(ch, &v, 1);
		k = k < 0 ? k : 0;
	}
	if (likely(k == 0))
		rbus_wake_peer(ch);
	return k;
}

/* Receive once; wake the producers if it freed slots.  The length or a
 * negative errno. */
static RBUS_ALWAYS_INLINE ssize_t recv_one(struct rbus_channel *ch, void *buf, size_t cap)
{
	ssize_t k;

	if (ch->ops == &rbus_spsc_ops) {
		k = rbus_spsc_recv1(ch, buf, cap);
	} else {
		struct iovec v = { .iov_base = buf, .iov_len = cap };
		int n = ch->ops->recv(ch, &v, 1);

		k = n < 0 ? n : (ssize_t)v.iov_len;
	}
	if (k >= 0 || unlikely(ch->freed)) {
		ch->freed = false;
		rbus_wake_peer(ch);
	}
	return k;
}

static __attribute__((noinline)) int send_more(struct rbus_channel *ch, const void *buf,
					       size_t len, int64_t deadline)
{
	struct iovec v = { .iov_base = (void *)buf, .iov_len = len };
	int n = wait_more(ch, try_send, &v, 1, deadline);

	return n < 0 ? n : 0;
}

static __attribute__((noinline)) ssize_t recv_more(struct rbus_channel *ch, void *buf,
						   size_t cap, int64_t deadline)
{
	struct iovec v = { .iov_base = buf, .iov_len = cap };
	int n = wait_more(ch, try_recv, &v, 1, deadline);

	return n < 0 ? n : (ssize_t)v.iov_len;
}

/* The one-message calls: the role and state, the deadline, the first try
 * inline, then the rest out of line.  RBUS_NOWAIT for the non-blocking
 * forms, where the deadline check folds away. */
static RBUS_ALWAYS_INLINE int send_call(struct rbus_channel *ch, const void *buf, size_t len,
					int64_t deadline)
{
	int k = check_idle(ch, RBUS_PRODUCER);

	if (unlikely(k))
		return k;
	if (unlikely(deadline < 0))
		return -EINVAL;
	k = send_one(ch, buf, len);
	return likely(k != -EAGAIN) ? k : send_more(ch, buf, len, deadline);
}

static RBUS_ALWAYS_INLINE ssize_t recv_call(struct rbus_channel *ch, void *buf, size_t cap,
					    int64_t deadline)
{
	ssize_t k = check_idle(ch, RBUS_CONSUMER);

	if (unlikely(k))
		return k;
	if (unlikely(deadline < 0))
		return -EINVAL;
	k = recv_one(ch, buf, cap);
	return likely(k != -EAGAIN) ? k : recv_more(ch, buf, cap, deadline);
}

RBUS_EXPORT int rbus_send(struct rbus_channel *ch, const void *buf, size_t len)
{
	return send_call(ch, buf, len, RBUS_NOWAIT);
}

RBUS_EXPORT int rbus_send_wait(struct rbus_channel *ch, const void *buf, size_t len,
			       int64_t deadline)
{
	return send_call(ch, buf, len, deadline);
}

RBUS_EXPORT ssize_t rbus_recv(struct rbus_channel *ch, void *buf, size_t cap)
{
	return recv_call(ch, buf, cap, RBUS_NOWAIT);
}

RBUS_EXPORT ssize_t rbus_recv_wait(struct rbus_channel *ch, void *buf, size_t cap,
				   int64_t deadline)
{
	return recv_call(ch, buf, cap, deadline);
}

/* Reserve one slot once; a reservation publishes nothing, so nobody to
 * wake.  0 or a negative errno. */
static RBUS_ALWAYS_INLINE int reserve_one(struct rbus_channel *ch, void **buf)
{
	struct iovec v;
	int k;

	if (ch->ops == &rbus_spsc_ops)
		return rbus_spsc_reserve1(ch, buf);
	k = ch->ops->reserve(ch, &v, 1);
	if (k < 0)
		return k;
	*buf = v.iov_base;
	return 0;
}

/* Peek at one message once; wake the producers if skipped slots were
 * freed on the way.  The length or a negative errno. */
static RBUS_ALWAYS_INLINE ssize_t peek_one(struct rbus_channel *ch, const void **buf)
{
	ssize_t k;

	if (ch->ops == &rbus_spsc_ops) {
		k = rbus_spsc_peek1(ch, buf);
	} else {
		struct iovec v;
		int n = ch->ops->peek(ch, &v, 1);

		if (n >= 0)
			*buf = v.iov_base;
		k = n < 0 ? n : (ssize_t)v.iov_len;
	}
	if (unlikely(ch->freed)) {
		ch->freed = false;
		rbus_wake_peer(ch);
	}
	return k;
}

static __attribute__((noinline)) int reserve_more(struct rbus_channel *ch, void **buf,
						  int64_t deadline)
{
	struct iovec v;
	int n = wait_more(ch, try_reserve, &v, 1, deadline);

	if (n < 0)
		return n;
	*buf = v.iov_base;
	return 0;
}

static __attribute__((noinline)) ssize_t peek_more(struct rbus_channel *ch, const void **buf,
						   int64_t deadline)
{
	struct iovec v;
	int n = wait_more(ch, try_peek, &v, 1, deadline);

	if (n < 0)
		return n;
	*buf = v.iov_base;
	return (ssize_t)v.iov_len;
}

static RBUS_ALWAYS_INLINE int reserve_call(struct rbus_channel *ch, void **buf,
					   int64_t deadline)
{
	int k = check_idle(ch, RBUS_PRODUCER);

	if (unlikely(k))
		return k;
	if (unlikely(deadline < 0))
		return -EINVAL;
	k = reserve_one(ch, buf);
	return likely(k != -EAGAIN) ? k : reserve_more(ch, buf, deadline);
}

static RBUS_ALWAYS_INLINE ssize_t peek_call(struct rbus_channel *ch, const void **buf,
					    int64_t deadline)
{
	ssize_t k = check_idle(ch, RBUS_CONSUMER);

	if (unlikely(k))
		return k;
	if (unlikely(deadline < 0))
		return -EINVAL;
	k = peek_one(ch, buf);
	return likely(k != -EAGAIN) ? k : peek_more(ch, buf, deadline);
}

RBUS_EXPORT int rbus_reserve(struct rbus_channel *ch, void **buf)
{
	return reserve_call(ch, buf, RBUS_NOWAIT);
}

RBUS_EXPORT int rbus_reserve_wait(struct rbus_channel *ch, void **buf, int64_t deadline)
{
	return reserve_call(ch, buf, deadline);
}

RBUS_EXPORT ssize_t rbus_peek(struct rbus_channel *ch, const void **buf)
{
	return peek_call(ch, buf, RBUS_NOWAIT);
}

RBUS_EXPORT ssize_t rbus_peek_wait(struct rbus_channel *ch, const void **buf,
				   int64_t deadline)
{
	return peek_call(ch, buf, deadline);
}

RBUS_EXPORT int rbus_send_batch(struct rbus_channel *ch, const struct iovec *iov,
				unsigned n)
{
	int err = check_batch(ch, RBUS_PRODUCER, n);

	/* The ring reads the iovecs only. */
	return err ? err : try_once(ch, try_send, (struct iovec *)iov, n);
}

RBUS_EXPORT int rbus_send_batch_wait(struct rbus_channel *ch, const struct iovec *iov,
				     unsigned n, int64_t deadline)
{
	int err = check_batch(ch, RBUS_PRODUCER, n);

	return err ? err : wait_call(ch, try_send, (struct iovec *)iov, n, deadline);
}

RBUS_EXPORT int rbus_recv_batch(struct rbus_channel *ch, struct iovec *iov,
				unsigned n)
{
	int err = check_batch(ch, RBUS_CONSUMER, n);

	return err ? err : try_once(ch, try_recv, iov, n);
}

RBUS_EXPORT int rbus_recv_batch_wait(struct rbus_channel *ch, struct iovec *iov,
				     unsigned n, int64_t deadline)
{
	int err = check_batch(ch, RBUS_CONSUMER, n);

	return err ? err : wait_call(ch, try_recv, iov, n, deadline);
}

RBUS_EXPORT int rbus_reserve_batch(struct rbus_channel *ch, struct iovec *iov,
				   unsigned n)
{
	int err = check_batch(ch, RBUS_PRODUCER, n);

	return err ? err : try_once(ch, try_reserve, iov, n);
}

RBUS_EXPORT int rbus_reserve_batch_wait(struct rbus_channel *ch, struct iovec *iov,
					unsigned n, int64_t deadline)
{
	int err = check_batch(ch, RBUS_PRODUCER, n);

	return err ? err : wait_call(ch, try_reserve, iov, n, deadline);
}

/* What a commit of n messages must pass before it publishes anything. */
static RBUS_ALWAYS_INLINE int check_commit(const struct rbus_channel *ch,
					   const struct iovec *iov, unsigned n)
{
	if (unlikely(ch->role != RBUS_PRODUCER))
		return -EBADF;
	if (unlikely(ch->pending != PENDING_RESERVE || n > ch->npending))
		return -EINVAL;
	/* All lengths first: an error publishes nothing. */
	for (unsigned i = 0; i < n; i++)
		if (unlikely(iov[i].iov_len > ch->max_msg))
			return -EMSGSIZE;
	return 0;
}

RBUS_EXPORT int rbus_commit_batch(struct rbus_channel *ch, const struct iovec *iov,
				  unsigned n)
{
	int k = check_commit(ch, iov, n);

	if (unlikely(k))
		return k;
	k = ch->ops->commit(ch, iov, n);
	/* Even n == 0 may publish (MPMC: abandoned slots as skipped). */
	rbus_wake_peer(ch);
	return k;
}

RBUS_EXPORT int rbus_commit(struct rbus_channel *ch, size_t len)
{
	struct iovec v = { .iov_base = NULL, .iov_len = len };
	int err = check_commit(ch, &v, 1);

	if (unlikely(err))
		return err;
	if (ch->ops == &rbus_spsc_ops)
		rbus_spsc_commit1(ch, len);
	else
		ch->ops->commit(ch, &v, 1);
	rbus_wake_peer(ch);
	return 0;
}

RBUS_EXPORT int rbus_peek_batch(struct rbus_channel *ch, struct iovec *iov,
				unsigned n)
{
	int err = check_batch(ch, RBUS_CONSUMER, n);

	return err ? err : try_once(ch, try_peek, iov, n);
}

RBUS_EXPORT int rbus_peek_batch_wait(struct rbus_channel *ch, struct iovec *iov,
				     unsigned n, int64_t deadline)
{
	int err = check_batch(ch, RBUS_CONSUMER, n);

	return err ? err : wait_call(ch, try_peek, iov, n, deadline);
}

RBUS_EXPORT int rbus_release(struct rbus_channel *ch)
{
	int k;

	if (unlikely(ch->role != RBUS_CONSUMER))
		return -EBADF;
	if (unlikely(ch->pending != PENDING_PEEK))
		return -EINVAL;
	k = ch->ops == &rbus_spsc_ops ? rbus_spsc_release(ch) : ch->ops->release(ch);
	rbus_wake_peer(ch);
	return k;
}
