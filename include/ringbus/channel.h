/* SPDX-License-Identifier: MIT */
/*
 * ringbus/channel.h - producer and consumer handles on a region's ring.
 *
 * A channel is a region plus a role.  Producers put messages in, consumers
 * take them out, each message whole, in order, once.  Messages are byte
 * strings of 0 to max_msg bytes.  Two APIs move them:
 *
 *   copy       rbus_send() / rbus_recv() and their _batch forms.
 *   zero-copy  rbus_reserve() + rbus_commit() write a message in place in
 *              the ring; rbus_peek() + rbus_release() read it in place.
 *
 * The batch forms move many messages with one update of the shared index.
 * All calls here are non-blocking: an empty or full ring gives -EAGAIN, or
 * -EPIPE when the peer role has hung up (no handle of it attached any more,
 * after one was; ringbus/wait.h).  ringbus/wait.h has the forms that wait.
 *
 * Synchronization table (who may run concurrently):
 *
 *                      | same handle  | two handles, same region
 *   -------------------+--------------+---------------------------------------
 *   SPSC producer ops  | one thread   | only one producer handle may exist;
 *   SPSC consumer ops  | at a time    | only one consumer handle may exist;
 *                      |              | producer and consumer run concurrently
 *   MPMC any op        | one thread   | any number of producers and consumers,
 *                      | at a time    | in any threads and processes
 *
 * A handle is not thread-safe: use one per thread, or serialise.  Handles
 * in different processes on the same region need no coordination beyond
 * the table.
 *
 * Memory ordering.  A successful send/commit is a release of the message's
 * bytes; the recv/peek that returns the message is an acquire of them:
 * everything the producer wrote before sending is visible to the consumer
 * after it received.  A successful recv/release is a release of the slot;
 * the send/reserve that reuses it is an acquire: the consumer's reads of the
 * message happen before the producer overwrites it.  No other ordering is
 * provided (in particular, two producers' messages are ordered only as their
 * slots are).
 *
 * Ordering of messages.  SPSC: FIFO.  MPMC: FIFO per producer handle; the
 * messages of different producers are interleaved.
 *
 * Untrusted peers.  Everything read from shared memory is validated: a
 * corrupt or hostile peer can make a call fail with -EBADMSG or see wrong
 * message bytes, but never make this process access memory outside the
 * region, loop without bound, or crash.  Bytes seen through rbus_peek() live
 * in shared memory: a hostile producer can change them while you read them,
 * so copy before validating if the producer is not trusted.
 */
#ifndef RINGBUS_CHANNEL_H
#define RINGBUS_CHANNEL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <ringbus/region.h>

#ifdef __cplusplus
extern "C" {
#endif

struct rbus_channel;

enum rbus_role {
	RBUS_PRODUCER = 1,
	RBUS_CONSUMER = 2,
};

/*
 * rbus_channel_open - take a role on a region's ring.
 * @r:     the region; the channel takes a reference of its own.
 * @role:  RBUS_PRODUCER or RBUS_CONSUMER.
 * @flags: 0, or RBUS_CHANNEL_EINTR (ringbus/wait.h).
 * @out:   on success, the new handle.
 *
 * SPSC: the role is claimed in shared memory; a second producer or consumer
 * gets -EBUSY until the first closes.  A producer starts at the first free
 * index, a consumer at the first message not yet released, so a role closed
 * (or, with the broker's help, lost to a dead process) resumes where it
 * stopped: a new consumer gets every message its predecessor did not
 * release.  MPMC: any number of handles of each role.  Thread-safe.
 *
 * Returns 0, or -EINVAL (bad role or flags), -EBUSY (SPSC role taken),
 * -EBADMSG (ring indices impossible), -ENOMEM, and for eventfd regions
 * -EMFILE or -ENFILE (each handle has an eventfd of its own, for close()
 * to wake a waiting thread).
 */
int rbus_channel_open(struct rbus_region *r, enum rbus_role role,
		      uint32_t flags, struct rbus_channel **out);

/*
 * rbus_channel_close - release the role and free the handle.  NULL is
 * ignored.  A reservation still outstanding is abandoned: SPSC drops it
 * unpublished; MPMC publishes its slots as skipped (consumers pass over
 * them).  Messages still held by a peek are: SPSC, left in the ring for the
 * next consumer; MPMC, released (they count as consumed).  Not thread-safe
 * with other calls on the same handle, except that it may cancel a thread
 * waiting in one of the _wait calls (ringbus/wait.h).  If this was the last
 * handle of its role, the peers' sleepers are woken to see the hang-up.
 *
 * After fork(), the child's copy of a handle is a full handle: closing it
 * there gives back the role even while the parent still uses it, and
 * finishes an MPMC reservation or peek the parent had outstanding at the
 * fork (only an MPMC broker handle's lease stays the parent's).  Open
 * handles after fork(), and do not close a parent's handle in a child that
 * lives on beside it (doc/design.md, section 12).
 */
void rbus_channel_close(struct rbus_channel *ch);

/* The region of @ch (no new reference), its role, and its max message. */
struct rbus_region *rbus_channel_region(const struct rbus_channel *ch);
enum rbus_role rbus_channel_role(const struct rbus_channel *ch);
size_t rbus_channel_max_msg(const struct rbus_channel *ch);

/*
 * rbus_send - copy one message of @len bytes into the ring.  Producer only.
 * Returns 0, or -EAGAIN (full), -EPIPE (full, and no consumer attached),
 * -EMSGSIZE (@len > max_msg), -EBADF (not a producer), -EBUSY (a
 * reservation is outstanding), -EBADMSG (corrupt ring).
 *
 * On -EAGAIN, do not try again at once: the next slot to free is on the
 * line the consumer is reading, and a producer that writes it as soon as it
 * is free moves that line at every message, which slows the consumer and
 * keeps the ring full.  Pause for a while first; rbus_send_wait() and the
 * other producer calls of wait.h pause capacity / 8 times (1 to 64), which
 * here raised MPMC 1p1c throughput with 8-byte messages from a median of
 * 36 to 54 M msg/s (doc/performance.md, "Backing off a full ring").
 * The same holds for every producer call below.
 */
int rbus_send(struct rbus_channel *ch, const void *buf, size_t len);

/*
 * rbus_recv - take the next message and copy it into @buf (@cap bytes).
 * Consumer only.  Returns the message length (possibly 0), or -EAGAIN
 * (empty), -EPIPE (empty, and no producer attached), -EMSGSIZE (the next
 * message is longer than @cap; it stays in the
 * ring), -EBADF (not a consumer), -EBUSY (a peek is outstanding), -EBADMSG
 * (corrupt ring: a slot's length is impossible).
 */
ssize_t rbus_recv(struct rbus_channel *ch, void *buf, size_t cap);

/*
 * rbus_send_batch - copy up to @n messages (@iov[i] = bytes, length) in.
 * Producer only.  Sends as many as fit, in order, with one index update.
 * Returns the number sent (>= 1), or -EAGAIN (full), -EMSGSIZE (@iov[0] is
 * too long; a later too-long message ends the batch before it), -EINVAL
 * (@n == 0), and the errors of rbus_send().
 */
int rbus_send_batch(struct rbus_channel *ch, const struct iovec *iov,
		    unsigned n);

/*
 * rbus_recv_batch - take up to @n messages.  Consumer only.  @iov[i] gives
 * a buffer and its capacity; on return iov[i].iov_len of each message taken
 * is its length.  Stops early at an empty ring, or before a message longer
 * than its buffer.  One index update.  Returns the number taken (>= 1), or
 * -EAGAIN (empty), -EMSGSIZE (the first message does not fit @iov[0]),
 * -EINVAL (@n == 0), and the errors of rbus_recv().
 */
int rbus_recv_batch(struct rbus_channel *ch, struct iovec *iov, unsigned n);

/*
 * rbus_reserve - reserve the next slot for writing in place.  Producer only.
 * On success *@buf points to max_msg writable bytes in shared memory, valid
 * until rbus_commit() or rbus_channel_close().  MPMC: the slot is claimed
 * and consumers wait at it until it is committed, so commit promptly.
 * Returns 0, or -EAGAIN (full), -EBUSY (a reservation is outstanding),
 * -EBADF, -EBADMSG.
 */
int rbus_reserve(struct rbus_channel *ch, void **buf);

/*
 * rbus_commit - publish the reserved slot as a message of @len bytes.
 * Returns 0, or -EINVAL (nothing reserved), -EMSGSIZE (@len > max_msg; the
 * reservation stays outstanding), -EBADF.
 */
int rbus_commit(struct rbus_channel *ch, size_t len);

/*
 * rbus_reserve_batch - reserve up to @n consecutive slots.  On return
 * iov[i].iov_base points to slot i's payload and iov[i].iov_len is max_msg.
 * Returns the number reserved (>= 1), or -EINVAL (@n == 0) and the errors
 * of rbus_reserve().
 */
int rbus_reserve_batch(struct rbus_channel *ch, struct iovec *iov, unsigned n);

/*
 * rbus_commit_batch - publish the first @n reserved slots as messages of
 * iov[i].iov_len bytes (iov_base is ignored), with one index update.  @n may
 * be smaller than the number reserved, even 0: the remaining reservations
 * are abandoned (SPSC: never published; MPMC: published as skipped slots).
 * Returns @n, or -EINVAL (nothing reserved, or @n larger than reserved),
 * -EMSGSIZE (a length > max_msg; nothing is published, the reservation
 * stays outstanding), -EBADF.
 */
int rbus_commit_batch(struct rbus_channel *ch, const struct iovec *iov,
		      unsigned n);

/*
 * rbus_peek - acquire the next message for reading in place.  Consumer only.
 * On success *@buf points to the message in shared memory, valid until
 * rbus_release() or rbus_channel_close(), and the length is returned.
 * Returns the length, or -EAGAIN (empty), -EBUSY (a peek is outstanding),
 * -EBADF, -EBADMSG.
 */
ssize_t rbus_peek(struct rbus_channel *ch, const void **buf);

/*
 * rbus_peek_batch - acquire up to @n messages; iov[i] is set to each one's
 * bytes and length.  Returns the number acquired (>= 1), or -EINVAL (@n ==
 * 0) and the errors of rbus_peek().
 */
int rbus_peek_batch(struct rbus_channel *ch, struct iovec *iov, unsigned n);

/*
 * rbus_release - release every message acquired by the last peek or
 * peek_batch, with one index update; their slots become free for producers.
 * Returns the number released, or -EINVAL (nothing acquired), -EBADF.
 */
int rbus_release(struct rbus_channel *ch);

#ifdef __cplusplus
}
#endif
#endif /* RINGBUS_CHANNEL_H */
