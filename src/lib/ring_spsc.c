/* SPDX-License-Identifier: MIT */
/*
 * ring_spsc.c - the single-producer single-consumer ring.  Wait-free: every
 * call finishes in a bounded number of its own steps, whatever the peer does.
 *
 * Who writes what:
 *   producer: slot bytes, slot len, slot stamp (publishes), prod->index
 *             (tail; a hint for observers and for a reopening producer)
 *   consumer: cons->index (head; frees slots)
 * The consumer never writes a slot, so a hand-off moves each slot's cache
 * line one way only.  The consumer learns that index i is committed from the
 * stamp on the slot's own line (see layout.h), not from the tail: in a
 * ping-pong that saves one cache-line transfer per message.  The producer
 * learns of free slots from the head, read only when its cached limit runs
 * out.
 *
 * Ordering edges (doc/design.md has the table):
 *   R1/A1  producer's release store of the stamp  ->  consumer's acquire
 *          load of it: the consumer sees len and bytes written before R1.
 *   R2/A2  consumer's release store of the head   ->  producer's acquire
 *          load of it: the consumer's reads of a slot happen before the
 *          producer's rewrite of it.
 *   R3/A3  close's release store of `owner` 0  ->  open's acquire CAS of
 *          it: the next holder of the role sees its predecessor's index.
 *          ringbusd's rbus_region_recover() gives a dead holder's role
 *          back with the same release store.
 *
 * Taking lines ahead.  The consumer reads each slot's line, so the line
 * is shared when the producer comes back to it a lap later, and the store
 * must first have the consumer's copy invalidated.  The producer asks for
 * the line of the slot SPSC_PRODUCER_AHEAD bytes on for writing
 * (rbus_prefetch_w()) when that whole line is below its cached limit, i.e.
 * known to be free, so the transfer overlaps the messages in between.
 * Measured (doc/performance.md, "Taking lines ahead"): with 8-byte messages
 * it took the host's slow state from a median of 37 to 77 M msg/s, and cost
 * 4-10% in the faster states.
 *
 * Waiting on a slot of two lines.  A ring made with max_msg 64 has 72-byte
 * slots, each running from its stamp's line into the next; the consumer
 * sees the stamp and only then loads the rest, two line transfers in a
 * row.  A consumer that finds its slot not committed reads that second
 * line while it waits (spsc_await_slot()), when the slot ends in it: the
 * read may overlap the stamp's transfer, or bring the payload along.
 * Measured (doc/performance.md, "Waiting on a slot of two lines"): the
 * 64 B busy-polling round trip from 456-504 to 376-408 ns.  Not for slots
 * of three lines or more, where 1 KiB round trips read ~60 ns slower with
 * it (design.md, 5.7).
 *
 * Batches.  A consumer asking for n messages, if its last batch call
 * filled its batch (or it has made none), first loads the stamp of the
 * last slot it could take (A1).  If that slot is committed, so is every
 * slot before it (the producer stamps in index order, each R1 after the
 * bytes and stamps before it), and it takes them without loading their
 * stamps: per message a length check and the copy.  Otherwise, and from
 * wherever that run stops, it goes slot by slot.  Measured
 * (doc/performance.md, "Batches from a backlog"): 8-byte batches of 32
 * went from ~165 to ~200 M msg/s between two processes.  A consumer that
 * keeps up would load the stamp of a line the producer is about to write
 * and slow it down (zero-copy batches ~13%), hence the condition.  For the
 * same reason there is no read prefetch of the lines ahead: it added ~10%
 * to copy batches in a probe, and took zero-copy batches in `ringbus
 * bench` from ~110 to ~85 M msg/s.
 *
 * Untrusted memory: the producer checks that the head it reads is within a
 * ring of its tail; the consumer checks every len against max_msg and never
 * takes more than capacity slots in a call.  Slot addresses are always
 * index & mask, inside the region.  A producer that stamps out of order
 * gains nothing from the batch path: a slot below a committed one is read
 * as a message whatever its stamp says, and its length is still checked.
 */
#include "config.h"

#include <errno.h>

#include "internal.h"
#include "ring_spsc.h"

/* Bytes ahead of pos the producer takes free slot lines for writing. */
#define SPSC_PRODUCER_AHEAD 512

int64_t rbus_spsc_refresh(struct rbus_channel *ch)
{
	/* A2 (acquire): pairs with R2 in spsc_publish_head(); the consumer's
	 * reads of every slot below head are done before we rewrite them. */
	uint64_t head = atomic_load_explicit(ch->peer_index, memory_order_acquire);

	if (unlikely(ch->pos - head > ch->capacity))
		return -EBADMSG;
	ch->limit = head + ch->capacity;
	return (int64_t)(ch->limit - ch->pos);
}

/* Room for up to n slots: returns how many (>= 1), -EAGAIN or -EBADMSG. */
static inline int64_t spsc_room(struct rbus_channel *ch, unsigned n)
{
	int64_t avail = (int64_t)(ch->limit - ch->pos);

	if (unlikely(avail < (int64_t)n)) {
		avail = rbus_spsc_refresh(ch);
		if (avail <= 0)
			return avail < 0 ? avail : -EAGAIN;
	}
	if (avail > (int64_t)n)
		avail = n;
	spsc_take_ahead(ch, ch->pos + (uint64_t)avail - 1);
	return avail;
}

static int spsc_send(struct rbus_channel *ch, const struct iovec *iov, unsigned n)
{
	int64_t room = spsc_room(ch, n);
	/* The geometry in locals: the compiler must otherwise reload it
	 * after every byte stored into a slot, which may alias *ch. */
	unsigned char *const slots = ch->slots;
	const uint64_t mask = ch->mask, pos = ch->pos;
	const uint32_t slot_size = ch->slot_size, max_msg = ch->max_msg;
	unsigned i;

	if (unlikely(room < 0))
		return (int)room;
	for (i = 0; i < (unsigned)room; i++) {
		size_t len = iov[i].iov_len;
		struct rbus_slot *s = rbus_slot_in(slots, mask, slot_size, pos + i);

		if (unlikely(len > max_msg)) {
			if (i == 0)
				return -EMSGSIZE;
			break;
		}
		rbus_copy(s->data, iov[i].iov_base, len);
		spsc_publish_slot(s, pos + i, (uint32_t)len);
	}
	ch->pos = pos + i;
	spsc_publish_tail(ch);
	return (int)i;
}

static int spsc_reserve(struct rbus_channel *ch, struct iovec *iov, unsigned n)
{
	int64_t room = spsc_room(ch, n);

	if (unlikely(room < 0))
		return (int)room;
	for (unsigned i = 0; i < (unsigned)room; i++) {
		iov[i].iov_base = rbus_slot_at(ch, ch->pos + i)->data;
		iov[i].iov_len = ch->max_msg;
	}
	ch->pending = PENDING_RESERVE;
	ch->pending_pos = ch->pos;
	ch->npending = (uint32_t)room;
	return (int)room;
}

static int spsc_commit(struct rbus_channel *ch, const struct iovec *iov, unsigned n)
{
	/* Slots beyond n are abandoned: never stamped, the next reserve or
	 * send reuses them. */
	for (unsigned i = 0; i < n; i++)
		spsc_publish_slot(rbus_slot_at(ch, ch->pos + i), ch->pos + i,
				  (uint32_t)iov[i].iov_len);
	ch->pos += n;
	ch->pending = PENDING_NONE;
	ch->npending = 0;
	spsc_publish_tail(ch);
	return (int)n;
}

/*
 * spsc_take()'s common case: `room` slots from p on, which do not wrap and
 * are known to be committed (spsc_take() checked the last one's stamp).
 * Takes messages until a slot is not a message that fits in its iovec,
 * which the general loop then looks at.
 */
static RBUS_ALWAYS_INLINE unsigned spsc_take_run(const unsigned char *p, unsigned room,
						uint32_t slot_size, uint32_t max_msg,
						struct iovec *iov, bool copy)
{
	struct iovec *v = iov, *const vend = iov + room;

	for (; v != vend; v++, p += slot_size) {
		const struct rbus_slot *s = (const struct rbus_slot *)p;
		/* Relaxed, read once, as in spsc_take(). */
		uint32_t len = atomic_load_explicit(&s->len, memory_order_relaxed);

		if (unlikely(len > max_msg))
			break;
		if (copy) {
			if (unlikely(len > v->iov_len))
				break;
			rbus_copy(v->iov_base, s->data, len);
		} else {
			v->iov_base = (void *)s->data;
		}
		v->iov_len = len;
	}
	return (unsigned)(v - iov);
}

/*
 * Walk the committed slots from ch->pos: up to n messages, never more than
 * capacity slots.  With copy set, copy each into iov[] (stopping before one
 * that does not fit); else point iov[] at them.  Skipped slots are passed
 * over.  Returns messages found; *slots_out the slots walked; *err why it
 * stopped early (0 if the ring was simply empty or n was reached).
 *
 * After a call that filled its batch, if the ring holds a whole batch
 * again (the last slot it would take is committed), the slots before that
 * one are taken without reading their stamps (spsc_take_run()):
 * ring_spsc.c's header, "Batches".
 */
static RBUS_ALWAYS_INLINE unsigned spsc_take(struct rbus_channel *ch, struct iovec *iov,
					    unsigned n, bool copy, uint64_t *slots_out,
					    int *err)
{
	/* Locals, as in spsc_send(): stores to iov[] may alias *ch. */
	const unsigned char *const slots = ch->slots;
	const uint64_t mask = ch->mask, pos = ch->pos, end = pos + ch->capacity;
	const uint32_t slot_size = ch->slot_size, max_msg = ch->max_msg;
	const unsigned most = n < ch->capacity ? n : ch->capacity;
	const struct rbus_slot *last = rbus_slot_in(slots, mask, slot_size, pos + most - 1);
	uint64_t i = pos;
	unsigned got = 0;

	*err = 0;
	/* Only after a call that filled its batch (ch->backlog): a consumer
	 * that keeps up would load the stamp of a line the producer is about
	 * to write, and slow it down.
	 *
	 * A1 (acquire), on the last slot of the batch: pairs with R1 in
	 * spsc_publish_slot().  The producer stamps slots in index order, so
	 * every slot before a committed one is committed too, and its bytes
	 * are visible after this load. */
	if (ch->backlog &&
	    atomic_load_explicit(&last->stamp, memory_order_acquire) == (uint32_t)(pos + most)) {
		const unsigned to_end = (unsigned)(ch->capacity - (pos & mask));
		const unsigned run = most < to_end ? most : to_end;

		got = spsc_take_run((const unsigned char *)rbus_slot_in(slots, mask, slot_size, pos),
				    run, slot_size, max_msg, iov, copy);
		if (got == run && got < most)   /* the rest, from the ring's start */
			got += spsc_take_run(slots, most - got, slot_size, max_msg,
					     iov + got, copy);
		i = pos + got;
	}
	/* One slot at a time: a ring that holds less than a batch, and
	 * whatever stopped the run above (a skipped slot, a corrupt length, a
	 * message that does not fit), looked at again here. */
	while (got < n && i != end) {
		const struct rbus_slot *s = rbus_slot_in(slots, mask, slot_size, i);
		/* A1 (acquire): pairs with R1 in spsc_publish_slot(); len and
		 * bytes of a committed slot are visible after this load. */
		uint32_t stamp = atomic_load_explicit(&s->stamp, memory_order_acquire);
		uint32_t len;

		if (stamp != (uint32_t)(i + 1))
			break;
		/* Relaxed, read once: the local copy is what we check and use,
		 * whatever a hostile peer writes afterwards. */
		len = atomic_load_explicit(&s->len, memory_order_relaxed);
		if (unlikely(len > max_msg)) {
			if (len & RBUS_SLOT_SKIP) {
				i++;
				continue;
			}
			*err = -EBADMSG;
			break;
		}
		if (copy) {
			if (unlikely(len > iov[got].iov_len)) {
				*err = -EMSGSIZE;
				break;
			}
			rbus_copy(iov[got].iov_base, s->data, len);
		} else {
			iov[got].iov_base = (void *)s->data;
		}
		iov[got].iov_len = len;
		got++;
		i++;
	}
	/* Nothing there: the caller will look at this slot again. */
	if (i == pos && !*err)
		spsc_await_slot(ch, rbus_slot_in(slots, mask, slot_size, pos));
	ch->backlog = got == most;
	*slots_out = i - pos;
	return got;
}

static int spsc_recv(struct rbus_channel *ch, struct iovec *iov, unsigned n)
{
	uint64_t walked;
	int err;
	unsigned got = spsc_take(ch, iov, n, true, &walked, &err);

	if (walked) {
		spsc_publish_head(ch, ch->pos + walked);
		/* Only skipped slots: freed, yet -EAGAIN (channel.c wakes). */
		if (!got)
			ch->freed = true;
	}
	if (got)
		return (int)got;
	return err ? err : -EAGAIN;
}

static int spsc_peek(struct rbus_channel *ch, struct iovec *iov, unsigned n)
{
	uint64_t walked;
	int err;
	unsigned got = spsc_take(ch, iov, n, false, &walked, &err);

	if (!got) {
		/* Only skipped slots (if any): pass them now. */
		if (walked) {
			spsc_publish_head(ch, ch->pos + walked);
			ch->freed = true;
		}
		return err ? err : -EAGAIN;
	}
	ch->pending = PENDING_PEEK;
	ch->pending_pos = ch->pos;
	ch->npending = (uint32_t)walked;
	ch->pending_msgs = got;
	return (int)got;
}

static int spsc_release(struct rbus_channel *ch)
{
	return rbus_spsc_release(ch);
}

static int spsc_ready(struct rbus_channel *ch)
{
	if (ch->role == RBUS_PRODUCER) {
		int64_t room = rbus_spsc_refresh(ch);

		return room < 0 ? (int)room : room > 0;
	}
	/* Relaxed: a hint; the recv that follows loads it with A1. */
	return atomic_load_explicit(&rbus_slot_at(ch, ch->pos)->stamp,
				    memory_order_relaxed) == (uint32_t)(ch->pos + 1);
}

static int spsc_open(struct rbus_channel *ch)
{
	uint32_t none = 0;
	uint64_t head, pos;

	/* A3 (acquire on success): pairs with R3 in spsc_close() and
	 * rbus_region_recover(); we see the index our predecessor in this
	 * role left.  The owner word is the claim: one CAS, so a process
	 * that dies anywhere in open either holds the role under its token
	 * (and ringbusd can give it back) or does not hold it. */
	if (!atomic_compare_exchange_strong_explicit(&ch->my_side->owner, &none,
						     ch->token,
						     memory_order_acquire,
						     memory_order_relaxed))
		return -EBUSY;
	/* Relaxed: published to the peer by the release store of `opened`
	 * below, and to later holders by R3. */
	atomic_store_explicit(&ch->my_side->attached, 1, memory_order_relaxed);
	/* Release, after raising `attached`: pairs with the acquire load of
	 * `opened` in rbus_peer_hung_up(), which then sees attached >= 1
	 * (or a later close), never the 0 from before this first open. */
	atomic_store_explicit(&ch->my_side->opened, 1, memory_order_release);
	/* Relaxed: A3 above ordered our predecessor's last store of our own
	 * index before this load. */
	pos = atomic_load_explicit(ch->my_index, memory_order_relaxed);
	if (ch->role == RBUS_PRODUCER)
		ch->ahead = rbus_ahead_slots(ch, SPSC_PRODUCER_AHEAD);
	if (ch->role == RBUS_CONSUMER) {
		/* Relaxed: the tail is a hint, used for a sanity check only;
		 * messages are found through the stamps (A1). */
		uint64_t tail = atomic_load_explicit(ch->peer_index, memory_order_relaxed);
		/* Either may lead by up to a ring (see region_map()). */
		if (tail - pos > ch->capacity && pos - tail > ch->capacity)
			goto corrupt;
		ch->pos = pos;
		ch->backlog = true;     /* try the batch run first */
		return 0;
	}

	/* Producer.  A2 as in rbus_spsc_refresh(). */
	head = atomic_load_explicit(ch->peer_index, memory_order_acquire);
	if (pos - head > ch->capacity) {
		/* The tail is behind the head: a predecessor died between
		 * stamping and publishing its tail, and the consumer took
		 * those messages.  Start from the head, if it is sane. */
		if (head - pos > ch->capacity)
			goto corrupt;
		pos = head;
	}
	/* Stamps are the truth: pass committed slots the tail does not
	 * count yet, so they are neither lost nor overwritten.  Relaxed:
	 * we learn which indices are taken and read no data through them. */
	while (pos - head < ch->capacity &&
	       atomic_load_explicit(&rbus_slot_at(ch, pos)->stamp,
				    memory_order_relaxed) == (uint32_t)(pos + 1))
		pos++;
	ch->pos = pos;
	ch->limit = head + ch->capacity;
	spsc_publish_tail(ch);
	return 0;
corrupt:
	/* Give the role back, as spsc_close() does. */
	rbus_spsc_drop_role(ch->my_side);
	return -EBADMSG;
}

void rbus_spsc_drop_role(struct rbus_side *side)
{
	/* Release: pairs with the acquire of `attached` in
	 * rbus_peer_hung_up(), so the peer's last try sees our messages. */
	atomic_store_explicit(&side->attached, 0, memory_order_release);
	/* R3 (release): pairs with A3 in spsc_open(), so our index stores
	 * happen before the next holder's loads of them. */
	atomic_store_explicit(&side->owner, 0, memory_order_release);
}

static void spsc_close(struct rbus_channel *ch)
{
	/* An outstanding reservation was never stamped, an outstanding peek
	 * never moved the head: nothing to undo. */
	rbus_spsc_drop_role(ch->my_side);
}

const struct rbus_ring_ops rbus_spsc_ops = {
	.send = spsc_send,
	.recv = spsc_recv,
	.reserve = spsc_reserve,
	.commit = spsc_commit,
	.peek = spsc_peek,
	.release = spsc_release,
	.ready = spsc_ready,
	.open = spsc_open,
	.close = spsc_close,
};
