/* SPDX-License-Identifier: MIT */
/*
 * channel.c - the public handle: role and state checks, then the ring.
 *
 * Everything the ring algorithms may assume is checked here once: the role,
 * n >= 1, the zero-copy state machine (nothing outstanding, or exactly the
 * reservation/peek being finished), and message lengths against max_msg.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>

#include "internal.h"

RBUS_EXPORT int rbus_channel_open(struct rbus_region *r, enum rbus_role role,
				  uint32_t flags, struct rbus_channel **out)
{
	struct rbus_channel *ch;
	int err;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!r || flags || (role != RBUS_PRODUCER && role != RBUS_CONSUMER))
		return -EINVAL;
	ch = calloc(1, sizeof(*ch));
	if (!ch)
		return -ENOMEM;
	ch->region = r;
	ch->role = role;
	ch->slots = r->slots;
	ch->capacity = r->hdr.capacity;
	ch->mask = (uint64_t)r->hdr.capacity - 1;
	ch->slot_size = r->hdr.slot_size;
	ch->max_msg = r->hdr.max_msg;
	ch->ops = r->hdr.kind == RBUS_HDR_KIND_SPSC ? &rbus_spsc_ops : &rbus_mpmc_ops;
	ch->my_side = role == RBUS_PRODUCER ? r->prod : r->cons;
	ch->my_index = role == RBUS_PRODUCER ? &r->prod->index : &r->cons->index;
	ch->peer_index = role == RBUS_PRODUCER ? &r->cons->index : &r->prod->index;
	err = ch->ops->open(ch);
	if (err) {
		free(ch);
		return err;
	}
	rbus_region_ref(r);
	*out = ch;
	return 0;
}

RBUS_EXPORT void rbus_channel_close(struct rbus_channel *ch)
{
	if (!ch)
		return;
	ch->ops->close(ch);
	rbus_region_close(ch->region);
	free(ch);
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

/* The checks every data-path call starts with. */
static inline int check_idle(const struct rbus_channel *ch, enum rbus_role role)
{
	if (unlikely(ch->role != role))
		return -EBADF;
	if (unlikely(ch->pending != PENDING_NONE))
		return -EBUSY;
	return 0;
}

RBUS_EXPORT int rbus_send(struct rbus_channel *ch, const void *buf, size_t len)
{
	struct iovec v = { .iov_base = (void *)buf, .iov_len = len };
	int n = check_idle(ch, RBUS_PRODUCER);

	if (unlikely(n))
		return n;
	n = ch->ops->send(ch, &v, 1);
	return n < 0 ? n : 0;
}

RBUS_EXPORT ssize_t rbus_recv(struct rbus_channel *ch, void *buf, size_t cap)
{
	struct iovec v = { .iov_base = buf, .iov_len = cap };
	int n = check_idle(ch, RBUS_CONSUMER);

	if (unlikely(n))
		return n;
	n = ch->ops->recv(ch, &v, 1);
	return n < 0 ? n : (ssize_t)v.iov_len;
}

RBUS_EXPORT int rbus_send_batch(struct rbus_channel *ch, const struct iovec *iov,
				unsigned n)
{
	int err = check_idle(ch, RBUS_PRODUCER);

	if (unlikely(err))
		return err;
	if (unlikely(!n))
		return -EINVAL;
	return ch->ops->send(ch, iov, n);
}

RBUS_EXPORT int rbus_recv_batch(struct rbus_channel *ch, struct iovec *iov,
				unsigned n)
{
	int err = check_idle(ch, RBUS_CONSUMER);

	if (unlikely(err))
		return err;
	if (unlikely(!n))
		return -EINVAL;
	return ch->ops->recv(ch, iov, n);
}

RBUS_EXPORT int rbus_reserve(struct rbus_channel *ch, void **buf)
{
	struct iovec v;
	int n = check_idle(ch, RBUS_PRODUCER);

	if (unlikely(n))
		return n;
	n = ch->ops->reserve(ch, &v, 1);
	if (n < 0)
		return n;
	*buf = v.iov_base;
	return 0;
}

RBUS_EXPORT int rbus_reserve_batch(struct rbus_channel *ch, struct iovec *iov,
				   unsigned n)
{
	int err = check_idle(ch, RBUS_PRODUCER);

	if (unlikely(err))
		return err;
	if (unlikely(!n))
		return -EINVAL;
	return ch->ops->reserve(ch, iov, n);
}

RBUS_EXPORT int rbus_commit_batch(struct rbus_channel *ch, const struct iovec *iov,
				  unsigned n)
{
	if (unlikely(ch->role != RBUS_PRODUCER))
		return -EBADF;
	if (unlikely(ch->pending != PENDING_RESERVE || n > ch->npending))
		return -EINVAL;
	/* All lengths first: an error publishes nothing. */
	for (unsigned i = 0; i < n; i++)
		if (unlikely(iov[i].iov_len > ch->max_msg))
			return -EMSGSIZE;
	return ch->ops->commit(ch, iov, n);
}

RBUS_EXPORT int rbus_commit(struct rbus_channel *ch, size_t len)
{
	struct iovec v = { .iov_base = NULL, .iov_len = len };
	int n = rbus_commit_batch(ch, &v, 1);

	return n < 0 ? n : 0;
}

RBUS_EXPORT int rbus_peek_batch(struct rbus_channel *ch, struct iovec *iov,
				unsigned n)
{
	int err = check_idle(ch, RBUS_CONSUMER);

	if (unlikely(err))
		return err;
	if (unlikely(!n))
		return -EINVAL;
	return ch->ops->peek(ch, iov, n);
}

RBUS_EXPORT ssize_t rbus_peek(struct rbus_channel *ch, const void **buf)
{
	struct iovec v;
	int n = rbus_peek_batch(ch, &v, 1);

	if (n < 0)
		return n;
	*buf = v.iov_base;
	return (ssize_t)v.iov_len;
}

RBUS_EXPORT int rbus_release(struct rbus_channel *ch)
{
	if (unlikely(ch->role != RBUS_CONSUMER))
		return -EBADF;
	if (unlikely(ch->pending != PENDING_PEEK))
		return -EINVAL;
	return ch->ops->release(ch);
}
