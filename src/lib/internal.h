/* SPDX-License-Identifier: MIT */
/*
 * internal.h - process-local state of libringbus (never in shared memory).
 */
#ifndef RINGBUS_INTERNAL_H
#define RINGBUS_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "ringbus.h"
#include "layout.h"

/* Symbols of the public API; everything else is hidden (-fvisibility=hidden,
 * and the version script libringbus.sym). */
#define RBUS_EXPORT __attribute__((visibility("default")))

#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/* Bound on retries of a lock-free CAS loop.  A CAS fails only because
 * another handle made progress, so with honest peers the bound is never
 * reached; with a hostile peer rewriting the index words it turns a
 * would-be endless loop into -EAGAIN. */
#define RBUS_CAS_RETRIES 1024

struct rbus_region {
	_Atomic unsigned refs;
	int fd;
	unsigned char *base;        /* mapping of the whole object */
	uint64_t map_size;
	struct rbus_hdr hdr;        /* validated private copy of the header */
	/* Derived from the validated copy, never re-read from shared memory: */
	struct rbus_side *prod;
	struct rbus_side *cons;
	unsigned char *slots;
};

enum rbus_pending { PENDING_NONE = 0, PENDING_RESERVE, PENDING_PEEK };

struct rbus_channel;

/* The ring algorithm of a channel: ring_spsc.c or ring_mpmc.c.  Every
 * function gets a handle of the right role (checked by channel.c), n >= 1,
 * and no outstanding reservation or peek unless it is commit or release. */
struct rbus_ring_ops {
	int (*send)(struct rbus_channel *ch, const struct iovec *iov, unsigned n);
	int (*recv)(struct rbus_channel *ch, struct iovec *iov, unsigned n);
	int (*reserve)(struct rbus_channel *ch, struct iovec *iov, unsigned n);
	/* Publish the first n of ch->npending reserved slots, abandon the rest. */
	int (*commit)(struct rbus_channel *ch, const struct iovec *iov, unsigned n);
	int (*peek)(struct rbus_channel *ch, struct iovec *iov, unsigned n);
	int (*release)(struct rbus_channel *ch);
	int (*open)(struct rbus_channel *ch);
	void (*close)(struct rbus_channel *ch);
};

struct rbus_channel {
	/* Hot, read on every call: */
	unsigned char *slots;
	uint64_t mask;              /* capacity - 1 */
	uint32_t slot_size;
	uint32_t max_msg;
	enum rbus_role role;
	enum rbus_pending pending;
	/* Producer: next index to write.  Consumer: next index to read. */
	uint64_t pos;
	/* Producer: cached head + capacity, the first index that is not known
	 * to be free (SPSC).  Consumer: unused. */
	uint64_t limit;
	/* Index of the first slot held by the outstanding reservation or
	 * peek, and how many slots it holds (skipped slots included). */
	uint64_t pending_pos;
	uint32_t npending;
	uint32_t pending_msgs;      /* messages among them (peek) */
	uint32_t capacity;
	_Atomic uint64_t *my_index;   /* the shared index this role writes */
	_Atomic uint64_t *peer_index; /* the shared index of the other role */
	const struct rbus_ring_ops *ops;
	struct rbus_region *region;
	struct rbus_side *my_side;
};

static inline struct rbus_slot *rbus_slot_at(const struct rbus_channel *ch,
					     uint64_t idx)
{
	return (struct rbus_slot *)(ch->slots + (idx & ch->mask) * ch->slot_size);
}

/* Copy a message; small ones without a call into memcpy. */
static inline void rbus_copy(void *dst, const void *src, size_t len)
{
	if (len <= 16 && len >= 8) {
		uint64_t a, b;
		__builtin_memcpy(&a, src, 8);
		__builtin_memcpy(&b, (const char *)src + len - 8, 8);
		__builtin_memcpy(dst, &a, 8);
		__builtin_memcpy((char *)dst + len - 8, &b, 8);
	} else {
		__builtin_memcpy(dst, src, len);
	}
}

extern const struct rbus_ring_ops rbus_spsc_ops;
extern const struct rbus_ring_ops rbus_mpmc_ops;

/* region.c: the shared sides, for channel.c. */
void rbus_region_ref(struct rbus_region *r);

#endif /* RINGBUS_INTERNAL_H */
