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
/* For the few hot-path helpers the compiler would otherwise call. */
#define RBUS_ALWAYS_INLINE inline __attribute__((always_inline))

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
	struct rbus_wait *wait;
	unsigned char *slots;
	/* MPMC: the claim records, RBUS_SIDE_LEASES of the producers', then
	 * the consumers'; SPSC: NULL. */
	struct rbus_claim *claims;
	int efd[2];                 /* eventfd backend: data, space; else -1 */
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
	/* Could the handle's next call make progress (a message to take, a
	 * slot to fill)?  A hint for rbus_channel_arm(); 1, 0 or -EBADMSG. */
	int (*ready)(struct rbus_channel *ch);
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
	/* How far ahead of pos this handle takes slot lines for writing
	 * (rbus_prefetch_w()), in slots; 0: never.  Set by ops->open. */
	uint32_t ahead;
	_Atomic uint64_t *my_index;   /* the shared index this role writes */
	_Atomic uint64_t *peer_index; /* the shared index of the other role */
	const struct rbus_ring_ops *ops;
	struct rbus_region *region;
	struct rbus_side *my_side;
	/* Waiting (wait.c).  my_q: where this handle sleeps (consumer: data,
	 * producer: space); peer_q: where it wakes its peers.  The efds are
	 * the region's eventfds (eventfd backend) or -1. */
	struct rbus_waitq *my_q;
	struct rbus_waitq *peer_q;
	struct rbus_side *peer_side;
	int my_efd;
	int peer_efd;
	int cancel_efd;             /* eventfd backend: close() wakes a waiter */
	uint32_t spin_ns;
	/* Pauses between tries while spinning: 1, or for a producer the
	 * back-off of a full ring (wait.c, rbus_wait_open()). */
	uint32_t spin_pauses;
	uint32_t flags;             /* RBUS_CHANNEL_* */
	/* This process could not register for membarrier: its publishes
	 * need a real fence before the sleepers load (wait.c). */
	bool fence_publish;
	/* Eventfd backend, MPMC: the handles of this role share one token
	 * pool, so a sleep looks at seq every RBUS_SLICE_NS (wait.c). */
	bool shared_tokens;
	/* A consumer op freed skipped slots without taking a message (it
	 * returns -EAGAIN, but producers may have room now). */
	bool freed;
	/* SPSC consumer: its last batch call filled its batch (spsc_take()). */
	bool backlog;
	/* rbus_channel_arm(): registered while my_q->seq == arm_seq. */
	bool armed;
	uint32_t arm_seq;
	/* 1 + waiting calls in flight; the last to drop it frees the handle,
	 * so close() is safe while another thread waits (wait.h). */
	_Atomic unsigned refs;
	_Atomic bool closing;
	/* The token the role was taken with (layout.h, rbus_side.owner), and
	 * for MPMC the lease entry it is recorded in, or -1. */
	uint32_t token;
	int lease;
	/* MPMC, with a lease entry: the claim record of that entry, where the
	 * handle notes what it holds claimed (ring_mpmc.c); else NULL. */
	struct rbus_claim *claim;
	/* The process that opened it, as ring_mpmc.c tells (0: cannot). */
	uint32_t incarnation;
	/* MPMC, without a record of its own to note claims in: the side's
	 * `unrecorded` flag is set (ring_mpmc.c, claim_record()). */
	bool told_unrecorded;
};

/* channel.c: rbus_channel_open() with the token the broker handed out
 * (RBUS_TOKEN_LOCAL without a broker). */
int rbus_channel_open_token(struct rbus_region *r, enum rbus_role role,
			    uint32_t flags, uint32_t token,
			    struct rbus_channel **out);

/* ring_spsc.c: give an SPSC role back (close, failed open, recovery). */
void rbus_spsc_drop_role(struct rbus_side *side);
/* The part of a dead MPMC handle's intent that a recovery left for later,
 * because only live handles' intents covered those slots (ring_mpmc.c,
 * finish_claim()): the run of indices [first, first + count). */
struct rbus_claim_left {
	uint64_t first;
	uint32_t count;
};

/* ring_mpmc.c: finish the claims of @token's handles of @role (publish
 * their claimed slots as skipped, or free them), clear their lease entries
 * and drop the count for each; returns how many.  The intents it left for
 * later go into @left (RBUS_SIDE_LEASES entries), *nleft of them. */
int rbus_mpmc_recover(struct rbus_region *r, enum rbus_role role, uint32_t token,
		      struct rbus_claim_left *left, unsigned *nleft);
/* ring_mpmc.c: look at an intent rbus_mpmc_recover() left again, and finish
 * what no live intent covers now.  Returns 1 if some is still left for
 * later (*left narrowed to it), 2 if it can never be finished (the side's
 * `unrecorded` flag is set now, or the indices are corrupt), else 0;
 * *finished the slots it finished. */
int rbus_mpmc_retry_intent(struct rbus_region *r, enum rbus_role role,
			   struct rbus_claim_left *left, uint64_t *finished);
/* ring_mpmc.c: set the side's `unrecorded` flag for ch, whose lease entry
 * ringbusd may clear while it lives (opened through a connection another
 * process made): its record will not be looked at. */
void rbus_mpmc_mark_unrecorded(struct rbus_channel *ch);

/* region.c, for ringbusd: release the role(s) that the handle(s) opened with
 * @token held, as if closed, and wake both sides' sleepers so that they
 * see the hang-up.  Call only when every process that could use @token is
 * dead.  Returns the number of handles released (0: it held none).  MPMC:
 * the intents it had to leave for later, because a live handle's intent
 * covered their slots too, go into @left (RBUS_SIDE_LEASES entries), *nleft
 * of them, for rbus_region_retry_intent(); SPSC: *nleft is 0. */
int rbus_region_recover(struct rbus_region *r, enum rbus_role role,
			uint32_t token, struct rbus_claim_left *left, unsigned *nleft);
/* region.c, for ringbusd: retry an intent rbus_region_recover() left in
 * @left (MPMC), some time later: finish the slots no live handle's intent
 * covers now, and wake both sides' sleepers if it finished any.  Returns 1
 * while some is still left (call again later, with @left as narrowed), 0
 * once none is, 2 if it can never be finished (see
 * rbus_mpmc_retry_intent()), or -EINVAL (not MPMC, bad role). */
int rbus_region_retry_intent(struct rbus_region *r, enum rbus_role role,
			     struct rbus_claim_left *left);

/* region.c, for ringbusd: the size in bytes rbus_region_create(@o) would
 * give the region (@o valid), to refuse an oversized one before making it. */
uint64_t rbus_region_size_for(const struct rbus_region_opts *o);
/* broker.c, for itself and ringbusd: the region options CREATE @q asks
 * for, as the daemon makes them (the client sizes its wait by them). */
struct rbus_req_create;
void rbus_create_opts(const struct rbus_req_create *q, struct rbus_region_opts *o);
/* region.c, for ringbusd: does a handle opened with @token hold @role now,
 * as far as shared memory tells (SPSC: it owns the role; MPMC: a lease
 * entry holds the token)?  A hint: the handle may close the next moment. */
bool rbus_region_token_live(const struct rbus_region *r, enum rbus_role role,
			    uint32_t token);

/* region.c, for ringbusd: the token holding SPSC role @role (the side's
 * owner word), 0 when the role is free or the region is MPMC. */
uint32_t rbus_region_role_owner(const struct rbus_region *r, enum rbus_role role);

/* wait.c */
/* A try-once operation of a handle, as the waiting loop retries it. */
typedef int (*rbus_try_fn)(struct rbus_channel *ch, struct iovec *iov, unsigned n);
void rbus_wake_slow(struct rbus_waitq *q, int efd);
/* The call could not move (err: -EAGAIN or -ETIMEDOUT): if the peer role
 * has hung up, retry once (its acquire makes everything the peer published
 * visible) and turn a second -EAGAIN into -EPIPE; else return err. */
int rbus_hangup_or(struct rbus_channel *ch, rbus_try_fn op, struct iovec *iov,
		   unsigned n, int err);
/* Wait until op moves or the deadline (> 0) passes; the caller's first
 * try of op has already returned -EAGAIN. */
int rbus_wait_loop(struct rbus_channel *ch, rbus_try_fn op, struct iovec *iov,
		   unsigned n, int64_t deadline);
int rbus_wait_open(struct rbus_channel *ch);
void rbus_wait_close(struct rbus_channel *ch);
void rbus_wait_cancel(struct rbus_channel *ch);

/* Builds with RBUS_TEST_HOOKS only (Makefile.am: tests/libringbus-hooks.la,
 * and tools/libringbus-tool.la, the copy ringbus(1) carries): a hook called at each step of the sleep/wake handshake,
 * where the stress engine (tools/cli/stress_engine.c) injects pauses, yields
 * and sleeps. */
enum rbus_jitter_point {
	RBUS_J_SLEEPER_SEQ,       /* after loading the futex word */
	RBUS_J_SLEEPER_REGISTER,  /* after registering as a sleeper */
	RBUS_J_SLEEPER_RECHECK,   /* after the re-check, before sleeping */
	RBUS_J_WAKER_PUBLISH,     /* after publishing, before the fence */
	RBUS_J_WAKER_SLEEPERS,    /* after seeing sleepers, before taking them */
	RBUS_J_WAKER_SEQ,         /* after bumping the futex word, before waking */
};
/* And a hook called as each sleep of rbus_wait_loop() begins and ends, with
 * the deadline it was given and whether it is a probe (wait.c): the stress
 * engine's stall rule needs to know whether a wait's last sleep ran out its
 * own timer or was woken, and a probe may rightly run out with work there. */
enum rbus_sleep_event {
	RBUS_SLEEP_BEGIN,         /* about to sleep until `until` */
	RBUS_SLEEP_WOKEN,         /* woken, interrupted, or the word had moved:
				     anything but the timer */
	RBUS_SLEEP_EXPIRED,       /* slept until `until` and nothing woke it */
};
/* And a hook called inside an MPMC claim of a handle with a claim record
 * (ring_mpmc.c), and between an OPEN's reply and the claim of its role
 * (broker.c): test_claim_window stops a process at these points. */
enum rbus_claim_point {
	RBUS_CLAIM_NOTED,         /* the intent noted, before the CAS */
	RBUS_CLAIM_WON,           /* the CAS succeeded, not yet marked held */
	RBUS_CLAIM_REPLY,         /* rbus_broker_open(): the reply is in, the
				     role not claimed yet */
};
/* And a hook the recovery of a dead MPMC handle's claim calls between its
 * loads of the head and the tail (ring_mpmc.c, finish_claim()):
 * test_claim_window moves both indices there, as live peers may. */
#ifdef RBUS_TEST_HOOKS
extern void (*rbus_test_jitter)(enum rbus_jitter_point where);
extern void (*rbus_test_claim)(enum rbus_claim_point where);
extern void (*rbus_test_indices)(void);
#define RBUS_INDICES_HOOK()                                                    \
	do {                                                                   \
		if (rbus_test_indices)                                         \
			rbus_test_indices();                                   \
	} while (0)
/* Set: ring_mpmc.c behaves as without MADV_WIPEONFORK. */
extern bool rbus_test_no_wipeonfork;
#define RBUS_CLAIM_HOOK(w)                                                     \
	do {                                                                   \
		if (rbus_test_claim)                                           \
			rbus_test_claim(w);                                    \
	} while (0)
extern void (*rbus_test_sleep)(enum rbus_sleep_event ev, int64_t until, bool probe);
/* And one called with the clock an eventfd sleep has just read, at each of
 * its looks at the deadline (@sliced: after a slice), which may move it
 * (test_wait_race: a slice that overshoots its deadline). */
extern void (*rbus_test_slice)(bool sliced, int64_t deadline, int64_t *now);
#define RBUS_SLICE_HOOK(sliced, deadline, now)                                 \
	do {                                                                   \
		if (rbus_test_slice)                                           \
			rbus_test_slice(sliced, deadline, now);                \
	} while (0)
#define RBUS_JITTER(w)                                                         \
	do {                                                                   \
		if (rbus_test_jitter)                                          \
			rbus_test_jitter(w);                                   \
	} while (0)
#define RBUS_SLEEP_HOOK(ev, until, probe)                                      \
	do {                                                                   \
		if (rbus_test_sleep)                                           \
			rbus_test_sleep(ev, until, probe);                     \
	} while (0)
#else
#define RBUS_JITTER(w) ((void)0)
#define RBUS_CLAIM_HOOK(w) ((void)0)
#define RBUS_INDICES_HOOK() ((void)0)
#define RBUS_SLEEP_HOOK(ev, until, probe) ((void)0)
#define RBUS_SLICE_HOOK(sliced, deadline, now) ((void)0)
#endif

/*
 * Wake the peers sleeping on ch->peer_q, if any, after this handle
 * published messages or freed slots.  The hot path is a barrier (F2) and a
 * load of a line that is written only when someone sleeps or wakes.
 */
static inline void rbus_wake_peer(struct rbus_channel *ch)
{
	RBUS_JITTER(RBUS_J_WAKER_PUBLISH);
	/* F2: our publish (R1, R2, R4 or R5, or the drop of `attached` at
	 * close) before the load of sleepers below.  Pairs with F1 and M1 in
	 * register_and_recheck() and rbus_channel_arm().  In a process registered for membarrier this is
	 * a compiler barrier only: a long sleeper's membarrier (M1) puts a
	 * full fence here for us, and a short sleeper bounds its sleep
	 * instead (wait.c).  Otherwise it is a seq_cst fence, which pairs
	 * with F1 alone. */
	if (unlikely(ch->fence_publish))
		atomic_thread_fence(memory_order_seq_cst);
	else
		atomic_signal_fence(memory_order_seq_cst);
	/* Relaxed: F2 orders it; rbus_wake_slow() takes the sleepers with
	 * an acquire exchange. */
	if (unlikely(atomic_load_explicit(&ch->peer_q->sleepers, memory_order_relaxed)))
		rbus_wake_slow(ch->peer_q, ch->peer_efd);
}

/*
 * Take the cache line at p for writing before the store that needs it, so
 * that the store, and the locked instruction after it that must wait for
 * it, find the line here.  Only a hint: it never faults, orders nothing and
 * changes no byte, so it may point anywhere in the mapping.  Issue it only
 * for a handle whose `ahead` is set (rbus_ahead_slots() checked the CPU).
 */
static inline void rbus_prefetch_w(const void *p)
{
#if defined(__x86_64__) || defined(__i386__)
	__asm__ volatile("prefetchw %0" : : "m"(*(const char *)p));
#else
	__builtin_prefetch(p, 1, 3);
#endif
}

/* The cache line size the ring code plans for: x86-64's, and most arm64
 * cores'.  A wrong guess costs speed, never correctness. */
#define RBUS_LINE 64u

/* The second cache line of a slot of slot_size bytes at address s, if the
 * slot ends in it (two lines in all); else 0. */
static inline uintptr_t rbus_slot_line2(uintptr_t s, uint32_t slot_size)
{
	const uintptr_t line2 = (s | (RBUS_LINE - 1)) + 1, end = s + slot_size;

	return end > line2 && end <= line2 + RBUS_LINE ? line2 : 0;
}

/* Read the cache line at p into this CPU's cache before the loads that need
 * it.  A hint, as rbus_prefetch_w(): it may point anywhere in the mapping. */
static inline void rbus_prefetch_r(const void *p)
{
	__builtin_prefetch(p, 0, 3);
}

/* channel.c: the slots ahead of pos that are about `bytes` ahead, at least
 * one and less than a lap; 0 if this CPU cannot prefetch for writing. */
uint32_t rbus_ahead_slots(const struct rbus_channel *ch, uint32_t bytes);

/* The slot of index idx in a ring of mask + 1 slots of slot_size bytes. */
static inline struct rbus_slot *rbus_slot_in(const unsigned char *slots, uint64_t mask,
					     uint32_t slot_size, uint64_t idx)
{
	return (struct rbus_slot *)(slots + (idx & mask) * slot_size);
}

static inline struct rbus_slot *rbus_slot_at(const struct rbus_channel *ch,
					     uint64_t idx)
{
	return rbus_slot_in(ch->slots, ch->mask, ch->slot_size, idx);
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
	} else if (len) {
		/* len 0 may come with src NULL (rbus_send(ch, NULL, 0)):
		 * memcpy must not see that pointer even for 0 bytes. */
		__builtin_memcpy(dst, src, len);
	}
}

extern const struct rbus_ring_ops rbus_spsc_ops;
extern const struct rbus_ring_ops rbus_mpmc_ops;

/* region.c: take one more reference (a channel holds one). */
void rbus_region_ref(struct rbus_region *r);

#endif /* RINGBUS_INTERNAL_H */
