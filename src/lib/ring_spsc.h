/* SPDX-License-Identifier: MIT */
/*
 * ring_spsc.h - the SPSC ring's steps that are shared by ring_spsc.c and
 * channel.c, and its one-message calls, which channel.c inlines into
 * rbus_send(), rbus_recv(), rbus_reserve(), rbus_commit(), rbus_peek() and
 * rbus_release().
 *
 * One message at a time is the common case (a sensor pipeline sends each
 * reading as it comes), and through the general path (iovec, ops table,
 * the batch loop) a send and a receive cost ~25 ns of instructions between
 * them, about 5x a bare ring's, which capped 8-byte throughput below the
 * cache lines' rate (doc/performance.md, "The one-message path").  The
 * calls here are the same algorithm with the loop and the indirection taken
 * out; ring_spsc.c has the protocol and the ordering edges they take part
 * in (R1/A1, R2/A2).
 */
#ifndef RINGBUS_RING_SPSC_H
#define RINGBUS_RING_SPSC_H

#include <errno.h>

#include "internal.h"

/* ring_spsc.c: refresh the producer's cached limit from the head.  Returns
 * free slots, or -EBADMSG. */
int64_t rbus_spsc_refresh(struct rbus_channel *ch);

static inline void spsc_publish_slot(struct rbus_slot *s, uint64_t idx, uint32_t len)
{
	/* Relaxed: ordered before the consumer's read by R1 below. */
	atomic_store_explicit(&s->len, len, memory_order_relaxed);
	/* R1 (release): publishes len and the bytes written before it;
	 * pairs with A1 in spsc_take() and rbus_spsc_recv1(). */
	atomic_store_explicit(&s->stamp, (uint32_t)(idx + 1), memory_order_release);
}

static inline void spsc_publish_tail(struct rbus_channel *ch)
{
	/* Relaxed: the tail is a hint (statistics, reopen); no consumer reads
	 * data through it, the stamps carry the data (R1). */
	atomic_store_explicit(ch->my_index, ch->pos, memory_order_relaxed);
}

static inline void spsc_publish_head(struct rbus_channel *ch, uint64_t pos)
{
	ch->pos = pos;
	/* R2 (release): our reads of the slots below pos are done before the
	 * producer may rewrite them; pairs with A2 in rbus_spsc_refresh(). */
	atomic_store_explicit(ch->my_index, pos, memory_order_release);
}

/* The producer is about to write up to index last: take the line of the
 * slot `ahead` on for writing, if the consumer is known to be done with it
 * (ring_spsc.c, "Taking lines ahead"). */
static inline void spsc_take_ahead(struct rbus_channel *ch, uint64_t last)
{
	if (ch->ahead) {
		uint64_t next = last + ch->ahead;

		/* Only a line the consumer is known to be done with: the
		 * slot and the `ahead` after it are below limit (A2), and
		 * ahead covers a line.  Taking it now costs the consumer
		 * nothing, and our stores to it will find it here. */
		if ((int64_t)(ch->limit - next) > (int64_t)ch->ahead)
			rbus_prefetch_w(rbus_slot_at(ch, next));
	}
}

/* The consumer found slot s not committed yet.  If the slot runs into the
 * line after its stamp's, and ends there, read that line now, while we
 * wait (ring_spsc.c, "Waiting on a slot of two lines"). */
static RBUS_ALWAYS_INLINE void spsc_await_slot(const struct rbus_channel *ch,
					       const struct rbus_slot *s)
{
	const uintptr_t line2 = rbus_slot_line2((uintptr_t)s, ch->slot_size);

	if (line2)
		rbus_prefetch_r((const void *)line2);
}

/* Room for one message at ch->pos: 0, -EAGAIN (full) or -EBADMSG. */
static RBUS_ALWAYS_INLINE int spsc_room1(struct rbus_channel *ch)
{
	if (unlikely(ch->pos == ch->limit)) {
		int64_t room = rbus_spsc_refresh(ch);

		if (room <= 0)
			return room < 0 ? (int)room : -EAGAIN;
	}
	return 0;
}

/* rbus_send() on an SPSC producer with nothing outstanding: 0, -EAGAIN
 * (full), -EMSGSIZE or -EBADMSG, as ops->send with one message.  The
 * caller wakes the consumer. */
static RBUS_ALWAYS_INLINE int rbus_spsc_send1(struct rbus_channel *ch, const void *buf, size_t len)
{
	uint64_t pos = ch->pos;
	struct rbus_slot *s;
	int err = spsc_room1(ch);

	if (unlikely(err))
		return err;
	if (unlikely(len > ch->max_msg))
		return -EMSGSIZE;
	spsc_take_ahead(ch, pos);
	s = rbus_slot_at(ch, pos);
	rbus_copy(s->data, buf, len);
	spsc_publish_slot(s, pos, (uint32_t)len);
	ch->pos = pos + 1;
	spsc_publish_tail(ch);
	return 0;
}

/* rbus_reserve() on an SPSC producer with nothing outstanding: 0 and the
 * slot's bytes in *buf, or -EAGAIN (full) or -EBADMSG, as ops->reserve
 * with one slot. */
static RBUS_ALWAYS_INLINE int rbus_spsc_reserve1(struct rbus_channel *ch, void **buf)
{
	uint64_t pos = ch->pos;
	int err = spsc_room1(ch);

	if (unlikely(err))
		return err;
	spsc_take_ahead(ch, pos);
	*buf = rbus_slot_at(ch, pos)->data;
	ch->pending = PENDING_RESERVE;
	ch->pending_pos = pos;
	ch->npending = 1;
	return 0;
}

/* rbus_commit() of len (<= max_msg) on an SPSC producer holding a
 * reservation: ops->commit with one message.  Slots reserved beyond the
 * first are abandoned, never stamped.  The caller wakes the consumer. */
static RBUS_ALWAYS_INLINE void rbus_spsc_commit1(struct rbus_channel *ch, size_t len)
{
	uint64_t pos = ch->pos;

	spsc_publish_slot(rbus_slot_at(ch, pos), pos, (uint32_t)len);
	ch->pos = pos + 1;
	ch->pending = PENDING_NONE;
	ch->npending = 0;
	spsc_publish_tail(ch);
}

/* The consumer's next slot: if it is committed, its length (read once:
 * the local copy is what the caller checks and uses, whatever a hostile
 * peer writes afterwards) and the slot in *sp; else -EAGAIN. */
static RBUS_ALWAYS_INLINE int64_t spsc_next(struct rbus_channel *ch, struct rbus_slot **sp)
{
	uint64_t pos = ch->pos;
	struct rbus_slot *s = rbus_slot_at(ch, pos);

	/* A1 (acquire): pairs with R1 in spsc_publish_slot(). */
	if (atomic_load_explicit(&s->stamp, memory_order_acquire) != (uint32_t)(pos + 1)) {
		spsc_await_slot(ch, s);
		return -EAGAIN;
	}
	*sp = s;
	/* Relaxed: ordered after A1. */
	return atomic_load_explicit(&s->len, memory_order_relaxed);
}

/* rbus_recv() on an SPSC consumer with nothing outstanding: the length, or
 * -EAGAIN (empty), -EMSGSIZE or -EBADMSG, as ops->recv with one message.
 * A slot whose length is not a message's (skipped, or corrupt) goes to
 * ops->recv, which knows what to do with it.  The caller wakes the
 * producer (also when ch->freed says skipped slots were freed). */
static RBUS_ALWAYS_INLINE ssize_t rbus_spsc_recv1(struct rbus_channel *ch, void *buf, size_t cap)
{
	struct rbus_slot *s;
	int64_t len = spsc_next(ch, &s);

	if (len < 0)
		return len;
	if (unlikely(len > ch->max_msg)) {
		struct iovec v = { .iov_base = buf, .iov_len = cap };
		int k = ch->ops->recv(ch, &v, 1);

		return k < 0 ? k : (ssize_t)v.iov_len;
	}
	if (unlikely((size_t)len > cap))
		return -EMSGSIZE;
	rbus_copy(buf, s->data, (size_t)len);
	spsc_publish_head(ch, ch->pos + 1);
	return len;
}

/* rbus_peek() on an SPSC consumer with nothing outstanding: the length
 * and the message's bytes in *buf, or -EAGAIN (empty) or -EBADMSG, as
 * ops->peek with one message; a slot whose length is not a message's goes
 * to ops->peek.  The caller wakes the producer if ch->freed says skipped
 * slots were freed. */
static RBUS_ALWAYS_INLINE ssize_t rbus_spsc_peek1(struct rbus_channel *ch, const void **buf)
{
	struct rbus_slot *s;
	int64_t len = spsc_next(ch, &s);

	if (len < 0)
		return len;
	if (unlikely(len > ch->max_msg)) {
		struct iovec v;
		int k = ch->ops->peek(ch, &v, 1);

		if (k < 0)
			return k;
		*buf = v.iov_base;
		return (ssize_t)v.iov_len;
	}
	*buf = s->data;
	ch->pending = PENDING_PEEK;
	ch->pending_pos = ch->pos;
	ch->npending = 1;
	ch->pending_msgs = 1;
	return len;
}

/* rbus_release() on an SPSC consumer holding a peek: free the slots it
 * walked (R2).  Returns the messages among them.  Also ops->release. */
static RBUS_ALWAYS_INLINE int rbus_spsc_release(struct rbus_channel *ch)
{
	int msgs = (int)ch->pending_msgs;

	spsc_publish_head(ch, ch->pending_pos + ch->npending);
	ch->pending = PENDING_NONE;
	ch->npending = 0;
	ch->pending_msgs = 0;
	return msgs;
}

#endif /* RINGBUS_RING_SPSC_H */
