/* SPDX-License-Identifier: MIT */
/*
 * ring_mpmc.c - the multi-producer multi-consumer ring.
 *
 * A bounded queue with a sequence stamp per slot (the scheme of D. Vyukov's
 * bounded MPMC queue), extended to variable-size messages, batches and
 * zero-copy.  Producers claim indices with a CAS on the tail, consumers with
 * a CAS on the head; the stamp of each slot says whether it is free for index
 * i (stamp == i) or holds the message of index i (stamp == i + 1), and a
 * consumer frees it for the next lap by storing i + capacity.
 *
 * Progress.  Lock-free for claiming: a CAS fails only because another handle
 * claimed.  Between its claim and its stamp, a producer (or consumer) holds
 * its slot; a peer that reaches that slot gets -EAGAIN and never spins on it.
 * So a preempted holder delays the others, it cannot livelock them, and with
 * more runnable threads than cores everyone still moves: the calls return
 * instead of burning the holder's CPU.  A holder that dies between claim and
 * stamp leaves its slot held; recovering it is the broker's job (see
 * doc/design.md, "Death of a peer").  For that, a handle with a lease
 * entry notes in the entry's claim record (layout.h) the slots it is about
 * to claim, [first, first + k), before each claim's CAS; marks the record
 * held (RBUS_CLAIM_HELD) once the CAS succeeded; and clears it once the
 * slots are published or freed, or the claim failed.  So from before the
 * CAS until after the last publish or free, the record covers every slot
 * the handle holds, and a process killed anywhere leaves a record that
 * does.  A record without the mark is only an intent: its CAS may have
 * failed, and the slots it names may be another handle's.  ringbusd
 * finishes such slots only when every handle that claimed on the side had
 * a record of its own and no other record covers them (finish_claim()
 * below); where only a live handle's intent covers them, it looks again
 * later.
 *
 * Ordering edges (doc/design.md has the table):
 *   R4/A4  producer's release store of stamp i+1   ->  consumer's acquire
 *          load of it: len and bytes are visible to the consumer.
 *   R5/A5  consumer's release store of stamp i+cap ->  producer's acquire
 *          load of it: the consumer's reads happen before the rewrite.
 *   R7/A7  a claim's CAS of head or tail (release on success) -> ringbusd's
 *          acquire load of that index in finish_claim(): the claim
 *          record's intent, stored before the CAS, is visible to a
 *          recovery that sees the index moved past the claimed slots.
 *   R8/A8  the claim record's stores (release) -> ringbusd's acquire loads
 *          of a live handle's record: a recovery that finds the record no
 *          longer covering a slot sees the slot published or freed.
 *   Otherwise the CASes on head and tail arbitrate who owns an index; all
 *   data is ordered by the stamps.
 *
 * Taking lines ahead.  A consumer reads a slot's stamp and then rewrites it
 * (R5); read first, the line arrives shared with the producer that wrote it
 * and the rewrite waits for the producer's copy to be invalidated, and so
 * does the consumer's next CAS, which cannot pass a store still waiting for
 * its line.  So a consumer asks for the line of the slot
 * MPMC_CONSUMER_AHEAD bytes on for writing (rbus_prefetch_w()) while it
 * works on this one.  Measured (doc/performance.md, "Taking lines ahead"):
 * with 8-byte messages, 128 bytes ahead did best of 64-512; reading ahead
 * instead of taking the line did nothing.  Producers do not: a slot ahead
 * of the tail may still hold a message a consumer is about to read.
 *
 * Untrusted memory: stamps compare by int32 difference and every outcome
 * other than "mine" is -EAGAIN or a retry, retries are bounded by
 * RBUS_CAS_RETRIES, lengths are checked against max_msg, slot addresses are
 * index & mask.
 */
#include "config.h"

#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

/* Bytes ahead of the head a consumer takes slot lines for writing. */
#define MPMC_CONSUMER_AHEAD 128

static inline int32_t stamp_diff(uint32_t stamp, uint64_t want)
{
	return (int32_t)(stamp - (uint32_t)want);
}

/*
 * Which process may write a handle's claim record: the one that opened it.
 * A child that goes on using a handle it inherited through fork() holds
 * claims under its parent's token, and ringbusd recovers that token when
 * the parent exits (protocol.md, "One connection, one process"): were the
 * child's claims in the record, ringbusd would finish them under it, and
 * the child's own publish or free after that would leave a stamp a lap
 * behind, which stops the ring for everyone.  So a handle notes only in the
 * process that opened it.  Telling which process that is costs no system
 * call: `incarnation` points at a private page that fork() wipes in the
 * child (MADV_WIPEONFORK); the first broker handle a process opens stamps
 * the page with a value of its own (its pid mixed with the clock: a pid
 * alone can repeat in a child in a new pid namespace), and each handle
 * keeps the value it found.  In a child the page reads 0, or the child's
 * own value once it opens a handle of its own: not the value an inherited
 * handle kept (but for a 1 in 2^32 chance).  Without MADV_WIPEONFORK
 * (Linux before 4.14) every process notes, and the open marks the side
 * (see mpmc_open()).  This pointer and membarrier_state in wait.c are the library's
 * only process-wide state; the page is mapped once and never freed.
 */
static _Atomic(_Atomic uint32_t *) incarnation;

#ifdef RBUS_TEST_HOOKS
bool rbus_test_no_wipeonfork;
#endif

static uint32_t incarnation_get(void)
{
	/* Acquire: pairs with the release CAS below, for the page's
	 * contents (zero) and its wipe-on-fork advice. */
	_Atomic uint32_t *page = atomic_load_explicit(&incarnation, memory_order_acquire);
	uint32_t v;

#ifdef RBUS_TEST_HOOKS
	if (rbus_test_no_wipeonfork)
		return 0;       /* as on a kernel before 4.14 */
#endif
	if (!page) {
		_Atomic uint32_t *none = NULL;
		void *p = mmap(NULL, RBUS_PAGE_SIZE, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (p == MAP_FAILED)
			return 0;
		if (madvise(p, RBUS_PAGE_SIZE, MADV_WIPEONFORK) < 0) {
			munmap(p, RBUS_PAGE_SIZE);
			return 0;
		}
		/* Release: see above.  A thread that lost the race frees
		 * its page and takes the winner's. */
		if (atomic_compare_exchange_strong_explicit(&incarnation, &none, p,
							    memory_order_acq_rel,
							    memory_order_acquire))
			page = p;
		else {
			munmap(p, RBUS_PAGE_SIZE);
			page = none;
		}
	}
	/* Relaxed: private to this process.  Racing first opens make
	 * different values: the CAS keeps one, and all take it. */
	v = atomic_load_explicit(page, memory_order_relaxed);
	if (!v) {
		uint32_t mine = (uint32_t)getpid() ^
				(uint32_t)(((uint64_t)rbus_now() * UINT64_C(0x9e3779b97f4a7c15)) >> 32);

		mine += !mine;
		if (atomic_compare_exchange_strong_explicit(page, &v, mine, memory_order_relaxed,
							    memory_order_relaxed))
			v = mine;
	}
	return v;
}

/* Is this the process that opened ch?  0 in ch->incarnation: no
 * MADV_WIPEONFORK, so it cannot tell, and says yes. */
static inline bool claim_mine(const struct rbus_channel *ch)
{
	_Atomic uint32_t *page;

	if (!ch->incarnation)
		return true;
	/* Relaxed: the pointer was published to this thread by the open
	 * (or by fork()), and the page is private. */
	page = atomic_load_explicit(&incarnation, memory_order_relaxed);
	return atomic_load_explicit(page, memory_order_relaxed) == ch->incarnation;
}

#ifdef RBUS_TEST_HOOKS
void (*rbus_test_claim)(enum rbus_claim_point where);
void (*rbus_test_indices)(void);
#endif

/*
 * The record a claim of ch is noted in: ch->claim in the process that opened
 * ch, else NULL.  A process that claims through a handle without a record of
 * its own (opened without the broker, the 28th and later of a side, or
 * inherited through fork()) says so once in the side's `unrecorded` flag,
 * before its first CAS: from then on, ringbusd cannot take the records for
 * all the claims there are (see the top of this file).
 */
static inline struct rbus_claim *claim_record(struct rbus_channel *ch)
{
	if (likely(ch->claim && claim_mine(ch)))
		return ch->claim;
	if (unlikely(!ch->told_unrecorded)) {
		/* Relaxed: ordered before our CAS, which carries it (R7). */
		atomic_store_explicit(&ch->my_side->unrecorded, 1, memory_order_relaxed);
		ch->told_unrecorded = true;
	}
	return NULL;
}

void rbus_mpmc_mark_unrecorded(struct rbus_channel *ch)
{
	/* Relaxed: carried by the handle's first CAS (R7), as in
	 * claim_record(). */
	atomic_store_explicit(&ch->my_side->unrecorded, 1, memory_order_relaxed);
	ch->told_unrecorded = true;
}

/* Before the CAS: this handle is about to claim [first, first + k). */
static inline void claim_intent(struct rbus_claim *c, uint64_t first, unsigned k)
{
	/* R8 (release), both: after the publishes or frees of the claim
	 * before (pairs with A8 in finish_claim()).  The CAS after them is
	 * R7. */
	atomic_store_explicit(&c->first, first, memory_order_release);
	atomic_store_explicit(&c->count, k, memory_order_release);
	RBUS_CLAIM_HOOK(RBUS_CLAIM_NOTED);
}

/* After the CAS succeeded: the k slots are this handle's. */
static inline void claim_held(struct rbus_claim *c, unsigned k)
{
	RBUS_CLAIM_HOOK(RBUS_CLAIM_WON);
	/* R8 (release), as in claim_intent(). */
	atomic_store_explicit(&c->count, k | RBUS_CLAIM_HELD, memory_order_release);
	/* Not after the slot stores that follow, in program order: a death
	 * among them must find the claim marked held. */
	atomic_signal_fence(memory_order_seq_cst);
}

/* The claim failed, or every slot of it is published or freed. */
static inline void claim_clear(struct rbus_claim *c)
{
	/* R8 (release): not before the publishes or frees of the claim,
	 * whose slots a recovery that reads 0 here must find finished. */
	atomic_store_explicit(&c->count, 0, memory_order_release);
}

/* Every slot ch claimed is published or freed: for a commit or release,
 * whose claim was made by an earlier call. */
static inline void claim_done(struct rbus_channel *ch)
{
	if (ch->claim && claim_mine(ch))
		claim_clear(ch->claim);
}

/*
 * Claim up to n free slots at the tail, noting the claim in rec (from
 * claim_record(), or NULL).  With iov set (send), stop before a message
 * longer than max_msg.  Returns the number claimed and their first
 * index in *first, or -EAGAIN (full, or contention past the retry bound),
 * -EMSGSIZE (iov[0] too long).
 */
static int mpmc_claim_free(struct rbus_channel *ch, struct rbus_claim *rec,
			   const struct iovec *iov, unsigned n, uint64_t *first)
{
	_Atomic uint64_t *tail = ch->my_index;

	if (n > ch->capacity)
		n = ch->capacity;
	for (int tries = 0; tries < RBUS_CAS_RETRIES; tries++) {
		/* Relaxed: the CAS below validates pos; slot state comes
		 * from the stamps. */
		uint64_t pos = atomic_load_explicit(tail, memory_order_relaxed);
		int32_t d = 0;
		unsigned k;

		for (k = 0; k < n; k++) {
			if (iov && unlikely(iov[k].iov_len > ch->max_msg)) {
				if (k == 0)
					return -EMSGSIZE;
				break;
			}
			/* A5 (acquire): pairs with R5 in mpmc_free_slots();
			 * the last lap's reader is done with the slot. */
			d = stamp_diff(atomic_load_explicit(&rbus_slot_at(ch, pos + k)->stamp,
							    memory_order_acquire),
				       pos + k);
			if (d != 0)
				break;
		}
		if (k == 0) {
			if (d < 0)
				return -EAGAIN; /* last lap's message still there */
			continue;               /* tail moved on: reload */
		}
		if (rec)
			claim_intent(rec, pos, k);
		/* R7 (release) on success: our intent, noted above, before
		 * the tail moves past the slots (pairs with A7 in
		 * finish_claim()).  Otherwise the CAS only decides who owns
		 * [pos, pos+k); the slot contents are ordered by A5/R4 on the
		 * stamps. */
		if (atomic_compare_exchange_weak_explicit(tail, &pos, pos + k,
							  memory_order_release,
							  memory_order_relaxed)) {
			if (rec)
				claim_held(rec, k);
			*first = pos;
			return (int)k;
		}
		/* Lost: at once, not at the next intent, which the walk may
		 * put off (see finish_claim(), "A live handle's intent").
		 * So every way out of this function leaves the record clear
		 * or held. */
		if (rec)
			claim_clear(rec);
	}
	return -EAGAIN;
}

static inline void mpmc_publish(struct rbus_channel *ch, uint64_t idx, uint32_t len)
{
	struct rbus_slot *s = rbus_slot_at(ch, idx);

	/* Relaxed: ordered before the consumer's read by R4 below. */
	atomic_store_explicit(&s->len, len, memory_order_relaxed);
	/* R4 (release): publishes len and bytes; pairs with A4 in
	 * mpmc_claim_full(). */
	atomic_store_explicit(&s->stamp, (uint32_t)(idx + 1), memory_order_release);
}

static int mpmc_send(struct rbus_channel *ch, const struct iovec *iov, unsigned n)
{
	struct rbus_claim *rec = claim_record(ch);
	uint64_t first;
	int k = mpmc_claim_free(ch, rec, iov, n, &first);

	if (k <= 0)
		return k;
	for (int i = 0; i < k; i++) {
		rbus_copy(rbus_slot_at(ch, first + i)->data, iov[i].iov_base,
			  iov[i].iov_len);
		mpmc_publish(ch, first + i, (uint32_t)iov[i].iov_len);
	}
	if (rec)
		claim_clear(rec);
	return k;
}

static int mpmc_reserve(struct rbus_channel *ch, struct iovec *iov, unsigned n)
{
	uint64_t first;
	int k = mpmc_claim_free(ch, claim_record(ch), NULL, n, &first);

	if (k <= 0)
		return k;
	for (int i = 0; i < k; i++) {
		iov[i].iov_base = rbus_slot_at(ch, first + i)->data;
		iov[i].iov_len = ch->max_msg;
	}
	ch->pending = PENDING_RESERVE;
	ch->pending_pos = first;
	ch->npending = (uint32_t)k;
	return k;
}

static int mpmc_commit(struct rbus_channel *ch, const struct iovec *iov, unsigned n)
{
	/* Claimed slots cannot be given back: the ones not committed are
	 * published as skipped, so consumers pass over them. */
	for (unsigned i = 0; i < ch->npending; i++)
		mpmc_publish(ch, ch->pending_pos + i,
			     i < n ? (uint32_t)iov[i].iov_len : RBUS_SLOT_SKIP);
	claim_done(ch);
	ch->pending = PENDING_NONE;
	ch->npending = 0;
	return (int)n;
}

/*
 * Claim up to n committed slots at the head, noting the claim in rec (as
 * mpmc_claim_free()).  With iov set (recv), stop
 * before a message longer than its buffer: iov[m] for the m-th message.
 * Returns the number of slots claimed and their first index, or -EAGAIN
 * (empty, or contention past the retry bound), -EMSGSIZE (the first message
 * is longer than iov[0]), -EBADMSG (the first slot's length is impossible).
 */
static int mpmc_claim_full(struct rbus_channel *ch, struct rbus_claim *rec,
			   const struct iovec *iov, unsigned n, uint64_t *first)
{
	_Atomic uint64_t *head = ch->my_index;

	if (n > ch->capacity)
		n = ch->capacity;
	for (int tries = 0; tries < RBUS_CAS_RETRIES; tries++) {
		/* Relaxed: the CAS below validates pos. */
		uint64_t pos = atomic_load_explicit(head, memory_order_relaxed);
		unsigned k = 0, msgs = 0;
		int32_t d = 0;
		int err = 0;

		/* The slot a few calls on: its stamp is ours to rewrite (R5)
		 * once we have read it, so take the line in the state that
		 * allows it now (see the top of this file). */
		if (ch->ahead)
			rbus_prefetch_w(rbus_slot_at(ch, pos + ch->ahead));

		while (msgs < n && k < ch->capacity) {
			struct rbus_slot *s = rbus_slot_at(ch, pos + k);
			/* A4 (acquire): pairs with R4 in mpmc_publish(). */
			uint32_t stamp = atomic_load_explicit(&s->stamp,
							      memory_order_acquire);
			uint32_t len;

			d = stamp_diff(stamp, pos + k + 1);
			if (d != 0)
				break;
			/* Relaxed: ordered after A4; stable while the slot is
			 * committed and unclaimed. */
			len = atomic_load_explicit(&s->len, memory_order_relaxed);
			if (len & RBUS_SLOT_SKIP) {
				k++;
				continue;
			}
			if (unlikely(len > ch->max_msg)) {
				err = -EBADMSG;
				break;
			}
			if (iov && len > iov[msgs].iov_len) {
				/* Re-read the stamp: if it still says
				 * committed, len was this message's.  The
				 * acquire fence keeps the re-read after the
				 * len load (a relaxed pair may be reordered
				 * on weakly ordered CPUs); pairs with R5 of
				 * the consumer that may have taken it. */
				atomic_thread_fence(memory_order_acquire);
				if (atomic_load_explicit(&s->stamp, memory_order_relaxed) != stamp)
					d = 1; /* consumed under us: reload */
				else
					err = -EMSGSIZE;
				break;
			}
			k++;
			msgs++;
		}
		if (k == 0) {
			if (err)
				return err;
			if (d < 0)
				return -EAGAIN; /* not committed yet: empty */
			continue;               /* head moved on: reload */
		}
		if (rec)
			claim_intent(rec, pos, k);
		/* R7 (release) on success, as in mpmc_claim_free().
		 * Otherwise ownership only; A4/R5 order the contents. */
		if (atomic_compare_exchange_weak_explicit(head, &pos, pos + k,
							  memory_order_release,
							  memory_order_relaxed)) {
			if (rec)
				claim_held(rec, k);
			*first = pos;
			return (int)k;
		}
		/* Lost: at once, as in mpmc_claim_free(). */
		if (rec)
			claim_clear(rec);
	}
	return -EAGAIN;
}

static void mpmc_free_slots(struct rbus_channel *ch, uint64_t first, unsigned k)
{
	for (unsigned i = 0; i < k; i++)
		/* R5 (release): our reads of the slot are done before a
		 * producer of the next lap writes it; pairs with A5. */
		atomic_store_explicit(&rbus_slot_at(ch, first + i)->stamp,
				      (uint32_t)(first + i + ch->capacity),
				      memory_order_release);
}

/*
 * Walk k claimed slots from first: skip the skipped, re-check every length
 * (a hostile peer may have changed it since the claim), then copy it into
 * iov[m] or point iov[m] at it.  Returns the number of messages.
 */
static unsigned mpmc_gather(struct rbus_channel *ch, uint64_t first, unsigned k,
			    struct iovec *iov, unsigned n, bool copy, bool *corrupt)
{
	unsigned m = 0;

	for (unsigned i = 0; i < k; i++) {
		struct rbus_slot *s = rbus_slot_at(ch, first + i);
		/* Relaxed: we own the slot; A4 ordered its contents. */
		uint32_t len = atomic_load_explicit(&s->len, memory_order_relaxed);

		if (len & RBUS_SLOT_SKIP)
			continue;
		/* m == n: a slot seen as skipped at the claim is not any more. */
		if (unlikely(m == n || len > ch->max_msg ||
			     (copy && len > iov[m].iov_len))) {
			*corrupt = true;
			continue;
		}
		if (copy)
			rbus_copy(iov[m].iov_base, s->data, len);
		else
			iov[m].iov_base = s->data;
		iov[m].iov_len = len;
		m++;
	}
	return m;
}

static int mpmc_recv(struct rbus_channel *ch, struct iovec *iov, unsigned n)
{
	struct rbus_claim *rec = claim_record(ch);

	for (int tries = 0; tries < RBUS_CAS_RETRIES; tries++) {
		bool corrupt = false;
		uint64_t first;
		int k = mpmc_claim_full(ch, rec, iov, n, &first);
		unsigned m;

		if (k < 0)
			return k;
		m = mpmc_gather(ch, first, (unsigned)k, iov, n, true, &corrupt);
		mpmc_free_slots(ch, first, (unsigned)k);
		if (rec)
			claim_clear(rec);
		if (m)
			return (int)m;
		/* Only skipped slots: freed, yet no message (channel.c wakes). */
		ch->freed = true;
		if (corrupt)
			return -EBADMSG;
		/* Only skipped slots: look again. */
	}
	return -EAGAIN;
}

static int mpmc_peek(struct rbus_channel *ch, struct iovec *iov, unsigned n)
{
	struct rbus_claim *rec = claim_record(ch);

	for (int tries = 0; tries < RBUS_CAS_RETRIES; tries++) {
		bool corrupt = false;
		uint64_t first;
		int k = mpmc_claim_full(ch, rec, NULL, n, &first);
		unsigned m;

		if (k < 0)
			return k;
		m = mpmc_gather(ch, first, (unsigned)k, iov, n, false, &corrupt);
		if (m) {
			ch->pending = PENDING_PEEK;
			ch->pending_pos = first;
			ch->npending = (uint32_t)k;
			ch->pending_msgs = m;
			return (int)m;
		}
		mpmc_free_slots(ch, first, (unsigned)k);
		if (rec)
			claim_clear(rec);
		ch->freed = true;
		if (corrupt)
			return -EBADMSG;
	}
	return -EAGAIN;
}

static int mpmc_release(struct rbus_channel *ch)
{
	int msgs = (int)ch->pending_msgs;

	mpmc_free_slots(ch, ch->pending_pos, ch->npending);
	claim_done(ch);
	ch->pending = PENDING_NONE;
	ch->npending = 0;
	ch->pending_msgs = 0;
	return msgs;
}

static int mpmc_ready(struct rbus_channel *ch)
{
	/* Relaxed: a hint; the call that follows claims with the CAS and
	 * loads the stamp with A4 or A5. */
	uint64_t pos = atomic_load_explicit(ch->my_index, memory_order_relaxed);
	uint32_t stamp = atomic_load_explicit(&rbus_slot_at(ch, pos)->stamp,
					      memory_order_relaxed);

	return stamp_diff(stamp, ch->role == RBUS_CONSUMER ? pos + 1 : pos) >= 0;
}

static int mpmc_open(struct rbus_channel *ch)
{
	if (ch->role == RBUS_CONSUMER)
		ch->ahead = rbus_ahead_slots(ch, MPMC_CONSUMER_AHEAD);
	/* Relaxed: a count for observers and for hang-up; opening orders
	 * nothing else (a peer that sees it acts on nothing we wrote). */
	atomic_fetch_add_explicit(&ch->my_side->attached, 1, memory_order_relaxed);
	/* Release, after the count: see spsc_open(). */
	atomic_store_explicit(&ch->my_side->opened, 1, memory_order_release);
	if (ch->token == RBUS_TOKEN_LOCAL)
		return 0;
	/* A broker handle records its token, so that ringbusd can take the
	 * count back if this process dies.  The count goes up before the
	 * record and (in close) down after it: a death between the two
	 * leaves the count one too high (a hang-up not seen), never too low
	 * (a hang-up seen while a producer lives).  Relaxed: the CAS
	 * continues the release sequence of the close that freed the entry
	 * (R9 in mpmc_close()), whatever its own order. */
	for (unsigned i = 0; i < RBUS_SIDE_LEASES; i++) {
		uint32_t none = 0;

		if (atomic_compare_exchange_strong_explicit(&ch->my_side->leases[i],
							    &none, ch->token,
							    memory_order_relaxed,
							    memory_order_relaxed)) {
			ch->lease = (int)i;
			ch->claim = &ch->region->claims[(ch->role == RBUS_CONSUMER ?
							 RBUS_SIDE_LEASES : 0) + i];
			ch->incarnation = incarnation_get();
			/* Release: R8, as in claim_clear(). */
			claim_clear(ch->claim);
			/* Without a way to tell a forked child (no
			 * MADV_WIPEONFORK), a child would note its claims in
			 * this record, over ours: no record could be taken
			 * for the whole truth.  Relaxed: carried by our
			 * claims' CASes (R7), as in claim_record(). */
			if (!ch->incarnation)
				atomic_store_explicit(&ch->my_side->unrecorded, 1,
						      memory_order_relaxed);
			break;
		}
	}
	return 0;
}

static void mpmc_close(struct rbus_channel *ch)
{
	if (ch->pending == PENDING_RESERVE)
		mpmc_commit(ch, NULL, 0);
	else if (ch->pending == PENDING_PEEK)
		mpmc_release(ch);
	/* A handle inherited through fork() closed in the child: the lease
	 * entry and the count are the opener's, which still uses them (or
	 * gave them back when it closed or died).  Only its copy goes. */
	if (ch->lease >= 0 && !claim_mine(ch)) {
		ch->claim = NULL;
		return;
	}
	if (ch->lease >= 0) {
		uint32_t mine = ch->token;

		ch->claim = NULL;

		/* R9 (release) on success: our publishes and frees, and the
		 * clear of our record, before a recovery that finds the entry
		 * free and so does not look at the record (pairs with A9 in
		 * finish_claim()).  A CAS, not a store: a hostile peer may
		 * have rewritten the entry; we clear only ours. */
		atomic_compare_exchange_strong_explicit(&ch->my_side->leases[ch->lease],
							&mine, 0,
							memory_order_release,
							memory_order_relaxed);
	}
	/* Release: our slot stores above happen before a peer that sees
	 * the count drop to 0; pairs with the acquire in
	 * rbus_peer_hung_up(), whose retry then sees them. */
	atomic_fetch_sub_explicit(&ch->my_side->attached, 1, memory_order_release);
}

/* Finish [start, start + n), as the dead claimant's call would have: the
 * slots whose stamps say the claim is still open.  Nobody else writes such
 * a slot: its claimant is dead, and the peers wait for its stamp to
 * change.  Returns how many it finished. */
static uint64_t finish_slots(struct rbus_region *r, enum rbus_role role, uint64_t start,
			     uint64_t n)
{
	const uint64_t cap = r->hdr.capacity, mask = cap - 1;
	uint64_t done = 0;

	for (uint64_t i = 0; i < n; i++) {
		uint64_t idx = start + i;
		struct rbus_slot *s = (struct rbus_slot *)(r->slots +
							   (idx & mask) * r->hdr.slot_size);
		/* Relaxed: the claimant is dead; nobody else writes the slot
		 * while its stamp says claimed. */
		uint32_t stamp = atomic_load_explicit(&s->stamp, memory_order_relaxed);

		if (role == RBUS_PRODUCER) {
			if (stamp != (uint32_t)idx)
				continue;
			/* Relaxed: ordered before the consumers' read by R4. */
			atomic_store_explicit(&s->len, RBUS_SLOT_SKIP, memory_order_relaxed);
			/* R4 (release), as mpmc_publish() does; pairs with A4. */
			atomic_store_explicit(&s->stamp, (uint32_t)(idx + 1), memory_order_release);
		} else {
			if (stamp != (uint32_t)(idx + 1))
				continue;
			/* R5 (release), as mpmc_free_slots() does; pairs with A5. */
			atomic_store_explicit(&s->stamp, (uint32_t)(idx + cap), memory_order_release);
		}
		done++;
	}
	return done;
}

/* The part of [first, first + k) in [lo, lo + len), as offsets [*b, *e)
 * from lo; false if none.  All lengths are at most capacity, far below
 * 2^63, so the unsigned differences tell. */
static bool overlap(uint64_t first, uint64_t k, uint64_t lo, uint64_t len, uint64_t *b,
		    uint64_t *e)
{
	if (first - lo < len) {
		*b = first - lo;
		*e = k < len - *b ? *b + k : len;
		return true;
	}
	if (lo - first < k) {
		*b = 0;
		*e = k - (lo - first) < len ? k - (lo - first) : len;
		return true;
	}
	return false;
}

/* A part [b, e) of the window that another token's record covers; held: the
 * record is marked held (or cannot be honest), so the slots are that
 * handle's for sure. */
struct cover {
	uint64_t b, e;
	bool held;
};

/* Is [b, e) inside the held covers of c[0..n), sorted by start? */
static bool held_covers(const struct cover *c, unsigned n, uint64_t b, uint64_t e)
{
	for (unsigned i = 0; i < n && b < e; i++)
		if (c[i].held && c[i].b <= b && c[i].e > b)
			b = c[i].e;
	return b >= e;
}

/*
 * Finish what a dead handle (of token) held claimed, from what its record
 * said: [first, first + k), marked held or not.  As its call would have: a
 * producer's slots still unpublished are published as skipped (consumers
 * pass over them, as over an abandoned reservation); a consumer's slots
 * still committed are freed (the messages in them are lost: the consumer
 * had taken them).  The record is a hint from shared memory.  Only the part
 * of it inside the window the indices allow is looked at: a producer's open
 * claim lies in [head, tail), as consumers cannot pass it; a consumer's in
 * [tail - capacity, head), as it took them and producers cannot lap them.
 * Of those slots, only one whose stamp says exactly that the claim is still
 * open is written (finish_slots()).
 *
 * A record marked held names slots the handle won.  One not marked is an
 * intent: the handle died between noting it and marking it, and its CAS may
 * have failed, the slots being another handle's.  Those are finished only
 * if that other handle cannot be alive and holding them: every handle of the
 * side that ever claimed had a record of its own (the side's `unrecorded`
 * flag is clear), and no record but those of this token covers the slot.
 * A live claimant noted its intent before its CAS (R7/A7 below), and keeps
 * its record covering the slot until it has published or freed it
 * (R8/A8); a record of another dead token that covers it leaves it for
 * that token's recovery, which then finds this record cleared.  An entry
 * found free was freed by a close after its handle's last publish or free
 * (R9/A9).
 *
 * A live handle's intent, unlike a held record, may cover slots it has not
 * won: from noting it to failing its CAS and clearing it, a few
 * instructions (longer if the process is stopped there).  Slots that only
 * such intents cover are left alone now, and the result says so:
 * CLAIM_LATER, with a run of indices in *later that holds them (the span
 * of the intents that do not lie wholly under held records; it may take
 * in held slots too, which a look leaves alone), for ringbusd to look at
 * again through rbus_mpmc_retry_intent().  A held record's cover is for
 * good.  CLAIM_UNKNOWABLE: the side's `unrecorded` flag is set, or the
 * indices are impossible (head and tail more than capacity apart, with
 * the head still), or the record's count is; nothing of the claim can be
 * finished now or later.  Else CLAIM_DONE.
 *
 * Each record of another token is read count, first, count: a count that
 * changed in between is taken for an intent, whatever it says, so that a
 * held mark read with the first index of the handle's next claim is not
 * taken for a cover of that claim's slots (the next claim's intent may be
 * one its CAS lost).
 *
 * The work is bounded by *budget, shared by the records of the side: honest
 * claims never overlap, so capacity slots in all.  Addresses come from
 * index & mask, so no record can make this write outside the slots.
 */
enum claim_result { CLAIM_DONE, CLAIM_LATER, CLAIM_UNKNOWABLE };

static enum claim_result finish_claim(struct rbus_region *r, enum rbus_role role,
				      uint64_t first, uint32_t raw, uint32_t token,
				      uint64_t *budget, uint64_t *finished,
				      struct rbus_claim_left *later)
{
	struct rbus_side *side = role == RBUS_PRODUCER ? r->prod : r->cons;
	struct rbus_claim *claims = r->claims + (role == RBUS_CONSUMER ? RBUS_SIDE_LEASES : 0);
	const uint64_t cap = r->hdr.capacity;
	uint64_t k = raw & ~RBUS_CLAIM_HELD;
	uint64_t head, tail, lo, len, b = 0, end = 0, amb_b = UINT64_MAX, amb_e = 0;
	struct cover cover[RBUS_SIDE_LEASES];
	unsigned ncover = 0;

	if (k > cap)
		return CLAIM_UNKNOWABLE;
	/* A7 (acquire), each: pairs with R7, the claims' CASes: every claim
	 * of the slots below these indices has its intent in its record.
	 * And bounds for the hint; the stamps decide.  A consumer's claim
	 * and a producer's between the two loads can make tail - head read
	 * capacity + 1 on a full ring: only a head that held still across
	 * the tail's load makes a gap above capacity impossible (corrupt). */
	for (int tries = 0;; tries++) {
		head = atomic_load_explicit(&r->cons->index, memory_order_acquire);
		RBUS_INDICES_HOOK();
		tail = atomic_load_explicit(&r->prod->index, memory_order_acquire);
		if (tail - head <= cap)
			break;
		/* Relaxed: only whether head moved matters; a moved head is
		 * loaded again above, with A7. */
		if (atomic_load_explicit(&r->cons->index, memory_order_relaxed) == head ||
		    tries == RBUS_CAS_RETRIES)
			return CLAIM_UNKNOWABLE;
	}
	lo = role == RBUS_PRODUCER ? head : tail - cap;
	len = role == RBUS_PRODUCER ? tail - head : cap - (tail - head);
	if (!overlap(first, k, lo, len, &b, &end))
		return CLAIM_DONE;      /* nothing of it left open */
	lo += b;                        /* now [lo, lo + len) */
	len = end - b;
	if (len > *budget)
		len = *budget;
	*budget -= len;
	if (raw & RBUS_CLAIM_HELD) {
		*finished += finish_slots(r, role, lo, len);
		return CLAIM_DONE;
	}

	/* An intent.  After A7: a handle without a record that claimed in
	 * the window had set `unrecorded` before its CAS.  Relaxed: the
	 * acquire above orders it.  The flag is never cleared: for good. */
	if (atomic_load_explicit(&side->unrecorded, memory_order_relaxed))
		return CLAIM_UNKNOWABLE;
	/* The parts of the window the other tokens' records cover. */
	for (unsigned i = 0; i < RBUS_SIDE_LEASES; i++) {
		/* A9 (acquire): pairs with R9 in mpmc_close(); a free entry
		 * (or one a later open took) comes after the last publish
		 * or free of the handle that held it. */
		uint32_t t = atomic_load_explicit(&side->leases[i], memory_order_acquire);
		uint32_t rc, rc2;
		uint64_t f, c;

		if (t == 0 || t == token)
			continue;
		/* A8 (acquire), all three: pairs with R8 in claim_intent(),
		 * claim_held() and claim_clear(): a record that no longer
		 * covers a slot it held comes after that slot's publish or
		 * free, which finish_slots() then sees in its stamp. */
		rc = atomic_load_explicit(&claims[i].count, memory_order_acquire);
		f = atomic_load_explicit(&claims[i].first, memory_order_acquire);
		rc2 = atomic_load_explicit(&claims[i].count, memory_order_acquire);
		if (rc2 != rc)
			rc = rc2 & ~RBUS_CLAIM_HELD;    /* moved: an intent */
		c = rc & ~RBUS_CLAIM_HELD;
		/* A count above capacity cannot be honest: take it as
		 * covering the whole window, for good, which leaves the
		 * slots alone. */
		if (c > cap) {
			cover[ncover++] = (struct cover){ .b = 0, .e = len, .held = true };
		} else if (c && overlap(f, c, lo, len, &cover[ncover].b, &cover[ncover].e)) {
			cover[ncover++].held = (rc & RBUS_CLAIM_HELD) != 0;
		}
	}
	/* By start, then the gaps between them. */
	for (unsigned i = 1; i < ncover; i++)
		for (unsigned j = i; j > 0 && cover[j - 1].b > cover[j].b; j--) {
			struct cover t = cover[j];

			cover[j] = cover[j - 1];
			cover[j - 1] = t;
		}
	b = 0;
	for (unsigned i = 0; i < ncover; i++) {
		if (cover[i].b > b)
			*finished += finish_slots(r, role, lo + b, cover[i].b - b);
		if (cover[i].e > b)
			b = cover[i].e;
		/* Slots only a live intent covers: perhaps later. */
		if (!cover[i].held && !held_covers(cover, ncover, cover[i].b, cover[i].e)) {
			if (cover[i].b < amb_b)
				amb_b = cover[i].b;
			if (cover[i].e > amb_e)
				amb_e = cover[i].e;
		}
	}
	if (len > b)
		*finished += finish_slots(r, role, lo + b, len - b);
	if (amb_e == 0)
		return CLAIM_DONE;
	/* Only that run is looked at again: the rest is finished or held
	 * for good, and a retry then scans no slot twice but these. */
	later->first = lo + amb_b;
	later->count = (uint32_t)(amb_e - amb_b);
	return CLAIM_LATER;
}

/* Finish the claim of the dead handle of lease entry e (holding token),
 * from its record (finish_claim()), and clear the record.  If finish_claim()
 * left part of an intent for later, that part goes into *left (else its
 * count is 0). */
static void recover_claim(struct rbus_region *r, enum rbus_role role, unsigned e,
			  uint32_t token, uint64_t *budget, struct rbus_claim_left *left,
			  uint64_t *finished)
{
	struct rbus_claim *claims = r->claims + (role == RBUS_CONSUMER ? RBUS_SIDE_LEASES : 0);
	/* Relaxed: written by a process now dead. */
	uint32_t raw = atomic_load_explicit(&claims[e].count, memory_order_relaxed);
	uint64_t first = atomic_load_explicit(&claims[e].first, memory_order_relaxed);

	if (finish_claim(r, role, first, raw, token, budget, finished, left) != CLAIM_LATER)
		left->count = 0;
	/* Relaxed: the entry is cleared next; a new holder clears it too. */
	atomic_store_explicit(&claims[e].count, 0, memory_order_relaxed);
}

int rbus_mpmc_recover(struct rbus_region *r, enum rbus_role role, uint32_t token,
		      struct rbus_claim_left *left, unsigned *nleft)
{
	struct rbus_side *side = role == RBUS_PRODUCER ? r->prod : r->cons;
	/* Honest claims of one side never overlap and lie in a window of at
	 * most capacity slots: that bounds the work for all records. */
	uint64_t budget = r->hdr.capacity, finished = 0;
	int n = 0;

	*nleft = 0;
	for (unsigned i = 0; i < RBUS_SIDE_LEASES; i++) {
		uint32_t t = token;

		/* Relaxed: as in mpmc_open(). */
		if (atomic_load_explicit(&side->leases[i], memory_order_relaxed) != token)
			continue;
		/* Its slots first, then the entry and the count, as a close
		 * does: a peer that sees the hang-up finds them finished. */
		recover_claim(r, role, i, token, &budget, &left[*nleft], &finished);
		if (left[*nleft].count)
			++*nleft;
		if (!atomic_compare_exchange_strong_explicit(&side->leases[i], &t, 0,
							     memory_order_relaxed,
							     memory_order_relaxed))
			continue;
		/* Drop the count, never below 0 (a hostile or confused
		 * peer may have lowered it).  Release: as in mpmc_close(),
		 * and for the slot stores above. */
		uint32_t c = atomic_load_explicit(&side->attached, memory_order_relaxed);

		for (int tries = 0; c > 0 && tries < RBUS_CAS_RETRIES; tries++)
			if (atomic_compare_exchange_weak_explicit(&side->attached, &c, c - 1,
								  memory_order_release,
								  memory_order_relaxed))
				break;
		n++;
	}
	return n;
}

int rbus_mpmc_retry_intent(struct rbus_region *r, enum rbus_role role,
			   struct rbus_claim_left *left, uint64_t *finished)
{
	uint64_t budget = r->hdr.capacity;
	struct rbus_claim_left rest;

	/* Its lease entry was cleared at the recovery: token 0 names no
	 * entry, so every record with a token is looked at. */
	*finished = 0;
	/* A run is never marked held (at most capacity): an intent. */
	switch (finish_claim(r, role, left->first, left->count, 0, &budget,
			     finished, &rest)) {
	case CLAIM_LATER:
		*left = rest;
		return 1;
	case CLAIM_UNKNOWABLE:
		return 2;
	default:
		return 0;
	}
}

const struct rbus_ring_ops rbus_mpmc_ops = {
	.send = mpmc_send,
	.recv = mpmc_recv,
	.reserve = mpmc_reserve,
	.commit = mpmc_commit,
	.peek = mpmc_peek,
	.release = mpmc_release,
	.ready = mpmc_ready,
	.open = mpmc_open,
	.close = mpmc_close,
};
