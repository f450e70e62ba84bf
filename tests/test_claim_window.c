/* SPDX-License-Identifier: MIT */
/*
 * test_claim_window.c - deaths inside an MPMC claim, against a real ringbusd
 * and the library built with RBUS_TEST_HOOKS.
 *
 * A claim notes its intent in the handle's claim record, makes its CAS, and
 * marks the record held (ring_mpmc.c, doc/design.md §3.9).  A process
 * killed at random lands between those steps too rarely to test by chance
 * (make chaos does, thousands of kills at a time), so the holder here stops
 * itself there with the claim hook, says so on a pipe, and waits to be
 * killed.  The tests then check what ringbusd made of the record it left:
 * an intent whose CAS won is finished, one that a live handle's claim
 * covers is left alone, and so is every intent on a side where a handle
 * without a record has claimed.  Nothing sleeps: pipes say where the
 * holder is, and STAT says when ringbusd has recovered it.
 */
#include "config.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker_fixture.h"
#include "helpers.h"
#include "internal.h"
#include "layout.h"

/* The side's flag: has a handle without a record of its own claimed? */
static uint32_t unrecorded(struct rbus_channel *ch)
{
	return atomic_load(&ch->my_side->unrecorded);
}

/* ---- the holder ---------------------------------------------------------- */

static enum rbus_claim_point stop_point;
static int stop_pipes[2];
static bool stop_goes_on;       /* on a byte from the test, else only dies */

/* At stop_point: say 'R', and wait to be killed (or told to go on). */
static void stop_in_claim(enum rbus_claim_point where)
{
	char c = 'R';

	if (where != stop_point)
		return;
	rbus_test_claim = NULL;
	if (write(stop_pipes[1], &c, 1) != 1)
		_exit(6);
	if (read(stop_pipes[0], &c, 1) == 1 && stop_goes_on)
		return;
	_exit(7);
}

/* Open a handle on "window" and stop inside the claim of a send or a
 * receive: pipes[2] is the role, plus 256 times the messages a producer
 * sends in one batch (0: one). */
static int window_holder(void *arg)
{
	int *pipes = arg;
	const enum rbus_role role = (enum rbus_role)(pipes[2] & 0xff);
	const unsigned n = (unsigned)pipes[2] >> 8 ? (unsigned)pipes[2] >> 8 : 1;
	struct rbus_broker *b = NULL;
	struct rbus_channel *ch = NULL;
	struct iovec iov[8];
	char buf[8];

	if (n > 8 || rbus_broker_connect(D.sock, &b) ||
	    rbus_broker_open(b, "window", role, 0, &ch))
		return 1;
	rbus_broker_close(b);
	stop_pipes[0] = pipes[0];
	stop_pipes[1] = pipes[1];
	for (unsigned i = 0; i < n; i++)
		iov[i] = (struct iovec){ .iov_base = "D", .iov_len = 1 };
	rbus_test_claim = stop_in_claim;
	if (role == RBUS_PRODUCER)
		(void)rbus_send_batch(ch, iov, n);
	else
		(void)rbus_recv(ch, buf, sizeof(buf));
	return 2;   /* the hook never returned */
}

/* Start the holder of role, stopping at point. */
static void window_start(struct holder *h, enum rbus_role role, enum rbus_claim_point point)
{
	stop_point = point;
	holder_start_arg(h, window_holder, (int)role);
}

/* Until ringbusd has recovered the holder's one handle, with prod
 * producers attached after it (and one consumer). */
static void wait_recovered(struct rbus_broker *b, const char *name, uint32_t prod)
{
	struct rbus_broker_stat st;

	/* STAT reads the shared counts under the lock the recovery holds:
	 * once it shows the death, it shows the role released. */
	do {
		stat_polled(b, name, &st);
		sched_yield();
	} while (st.deaths == 0);
	ck_assert_uint_eq(st.deaths, 1);
	ck_assert_uint_eq(st.recovered, 1);
	ck_assert_uint_eq(st.prod_attached, prod);
	ck_assert_uint_eq(st.cons_attached, 1);
}

/* "window", 16 slots, and a broker consumer and producer; for a consumer
 * holder, "B" at index 0 for it to take. */
static void window_open(struct rbus_broker *b, enum rbus_role role, struct rbus_channel **c,
			struct rbus_channel **p)
{
	create(b, "window", RBUS_KIND_MPMC, 16, 0600, 0);
	ck_assert_rbus(rbus_broker_open(b, "window", RBUS_CONSUMER, 0, c), 0);
	ck_assert_rbus(rbus_broker_open(b, "window", RBUS_PRODUCER, 0, p), 0);
	if (role == RBUS_CONSUMER)
		ck_assert_rbus(rbus_send(*p, "B", 1), 0);
}

/* The ring is empty and goes on, and every claim on it was recorded. */
static void window_end(struct rbus_broker *b, struct rbus_channel *c, struct rbus_channel *p,
		       struct holder *h)
{
	char buf[8];

	ck_assert_rbus(rbus_recv(c, buf, sizeof(buf)), -EAGAIN);
	full_laps(p, c, 2);
	ck_assert_uint_eq(unrecorded(p), 0);
	ck_assert_uint_eq(unrecorded(c), 0);
	rbus_channel_close(p);
	rbus_channel_close(c);
	holder_end(h);
	rbus_broker_close(b);
}

/* Killed after its CAS won a slot, before it marked the claim held: the
 * record is an intent, nobody else's record covers the slot, so ringbusd
 * finishes it.  Before intents were noted (the record was written after the
 * CAS), the ring stopped there for good.  _i: 0 producer, 1 consumer. */
START_TEST(death_after_claim_cas)
{
	const enum rbus_role role = _i ? RBUS_CONSUMER : RBUS_PRODUCER;
	struct rbus_broker *b = conn();
	struct rbus_channel *c = NULL, *p = NULL;
	struct holder h;
	char buf[8];

	window_open(b, role, &c, &p);
	window_start(&h, role, RBUS_CLAIM_WON);
	/* The holder owns index 0, and nobody can pass it. */
	if (role == RBUS_PRODUCER) {
		ck_assert_rbus(rbus_send(p, "A", 1), 0);
		ck_assert_rbus(rbus_recv(c, buf, sizeof(buf)), -EAGAIN);
	} else {
		ck_assert_rbus(rbus_recv(c, buf, sizeof(buf)), -EAGAIN);
	}
	holder_kill(&h);
	wait_recovered(b, "window", 1);
	if (role == RBUS_PRODUCER) {
		/* Its slot was passed over as skipped. */
		ck_assert_rbus(rbus_recv(c, buf, sizeof(buf)), 1);
		ck_assert_int_eq(buf[0], 'A');
	}
	/* "B" was lost with the consumer that took it; slot 0 is free for
	 * its next lap either way. */
	window_end(b, c, p, &h);
}
END_TEST

/* Killed after noting its intent, before its CAS, while a live handle
 * claims the same slot: ringbusd must leave the live handle's slot alone,
 * which it tells from the live handle's record.  Finishing it would have the
 * consumers pass over the producer's reservation (its commit then lost, and
 * the ring stopped a lap later), or let a producer overwrite the message
 * under the consumer's peek.  _i: 0 producer, 1 consumer. */
START_TEST(death_before_claim_cas)
{
	const enum rbus_role role = _i ? RBUS_CONSUMER : RBUS_PRODUCER;
	struct rbus_broker *b = conn();
	struct rbus_channel *c = NULL, *p = NULL;
	struct holder h;
	const void *msg;
	void *slot;
	char buf[8];

	window_open(b, role, &c, &p);
	window_start(&h, role, RBUS_CLAIM_NOTED);
	/* The holder's intent names index 0; the live handle takes it. */
	if (role == RBUS_PRODUCER)
		ck_assert_rbus(rbus_reserve(p, &slot), 0);
	else
		ck_assert_rbus(rbus_peek(c, &msg), 1);
	holder_kill(&h);
	wait_recovered(b, "window", 1);
	if (role == RBUS_PRODUCER) {
		/* Index 0 is still the reservation's: nothing to read. */
		ck_assert_rbus(rbus_recv(c, buf, sizeof(buf)), -EAGAIN);
		memset(slot, 'P', 1);
		ck_assert_rbus(rbus_commit(p, 1), 0);
		ck_assert_rbus(rbus_recv(c, buf, sizeof(buf)), 1);
		ck_assert_int_eq(buf[0], 'P');
	} else {
		/* Index 0 is still the peek's: a lap of sends stops before
		 * its slot, and the message is intact. */
		for (int i = 1; i < 16; i++)
			ck_assert_rbus(rbus_send(p, &(char){ (char)('a' + i) }, 1), 0);
		ck_assert_rbus(rbus_send(p, "x", 1), -EAGAIN);
		ck_assert_int_eq(*(const char *)msg, 'B');
		ck_assert_rbus(rbus_release(c), 1);
		for (int i = 1; i < 16; i++) {
			ck_assert_rbus(rbus_recv(c, buf, sizeof(buf)), 1);
			ck_assert_int_eq(buf[0], 'a' + i);
		}
	}
	window_end(b, c, p, &h);
}
END_TEST

/* As death_before_claim_cas, but the live handle claiming the slot has no
 * record: it was opened without the broker, on the broker's region.  Its
 * first claim sets the side's `unrecorded` flag, and ringbusd then leaves
 * every intent alone. */
START_TEST(unrecorded_claim_left_alone)
{
	struct rbus_broker *b = conn();
	struct rbus_channel *c = NULL, *p = NULL, *local = NULL;
	struct holder h;
	void *slot;
	char buf[8];

	create(b, "window", RBUS_KIND_MPMC, 16, 0600, 0);
	ck_assert_rbus(rbus_broker_open(b, "window", RBUS_CONSUMER, 0, &c), 0);
	ck_assert_rbus(rbus_broker_open(b, "window", RBUS_PRODUCER, 0, &p), 0);
	ck_assert_rbus(rbus_channel_open(rbus_channel_region(p), RBUS_PRODUCER, 0, &local), 0);
	window_start(&h, RBUS_PRODUCER, RBUS_CLAIM_NOTED);
	ck_assert_uint_eq(unrecorded(p), 0);
	ck_assert_rbus(rbus_reserve(local, &slot), 0);
	ck_assert_uint_eq(unrecorded(p), 1);
	holder_kill(&h);
	/* The local handle counts among the attached producers. */
	wait_recovered(b, "window", 2);
	ck_assert_rbus(rbus_recv(c, buf, sizeof(buf)), -EAGAIN);
	memset(slot, 'L', 1);
	ck_assert_rbus(rbus_commit(local, 1), 0);
	ck_assert_rbus(rbus_recv(c, buf, sizeof(buf)), 1);
	ck_assert_int_eq(buf[0], 'L');
	rbus_channel_close(local);
	full_laps(p, c, 2);
	rbus_channel_close(p);
	rbus_channel_close(c);
	holder_end(&h);
	rbus_broker_close(b);
}
END_TEST

/* ---- a claim that loses its CAS ------------------------------------------ */

static struct rbus_channel *rival;
static void *rival_slot;

/* Called as p has noted its intent: p2 takes the slot first. */
static void rival_reserves(enum rbus_claim_point where)
{
	if (where != RBUS_CLAIM_NOTED)
		return;
	rbus_test_claim = NULL;
	ck_assert_rbus(rbus_reserve(rival, &rival_slot), 0);
}

/* A claim whose CAS fails clears its intent at once: left in place, it
 * would cover the winner's slot until this handle's next claim, and a
 * recovery meanwhile would leave a dead claimant's slot there alone for
 * good (design.md §6.5).  p notes index 15 of 16, p2 takes it, p's CAS
 * fails and its retry finds the ring full. */
START_TEST(lost_cas_clears_intent)
{
	struct rbus_broker *b = conn();
	struct rbus_channel *c = NULL, *p = NULL, *p2 = NULL;
	uint64_t first;
	uint32_t count;
	char buf[8];

	create(b, "window", RBUS_KIND_MPMC, 16, 0600, 0);
	ck_assert_rbus(rbus_broker_open(b, "window", RBUS_CONSUMER, 0, &c), 0);
	ck_assert_rbus(rbus_broker_open(b, "window", RBUS_PRODUCER, 0, &p), 0);
	ck_assert_rbus(rbus_broker_open(b, "window", RBUS_PRODUCER, 0, &p2), 0);
	ck_assert_ptr_nonnull(p->claim);
	ck_assert_ptr_nonnull(p2->claim);
	for (int i = 0; i < 15; i++)
		ck_assert_rbus(rbus_send(p, &(char){ (char)('a' + i) }, 1), 0);
	rival = p2;
	rbus_test_claim = rival_reserves;
	ck_assert_rbus(rbus_send(p, "x", 1), -EAGAIN);
	ck_assert_ptr_null(rbus_test_claim);
	/* p holds nothing and says so; p2 holds index 15. */
	count = atomic_load(&p->claim->count);
	ck_assert_uint_eq(count, 0);
	count = atomic_load(&p2->claim->count);
	ck_assert_uint_eq(count, 1 | RBUS_CLAIM_HELD);
	first = atomic_load(&p2->claim->first);
	ck_assert_uint_eq(first, 15);
	memset(rival_slot, 'R', 1);
	ck_assert_rbus(rbus_commit(p2, 1), 0);
	count = atomic_load(&p2->claim->count);
	ck_assert_uint_eq(count, 0);
	for (int i = 0; i < 15; i++) {
		ck_assert_rbus(rbus_recv(c, buf, sizeof(buf)), 1);
		ck_assert_int_eq(buf[0], 'a' + i);
	}
	ck_assert_rbus(rbus_recv(c, buf, sizeof(buf)), 1);
	ck_assert_int_eq(buf[0], 'R');
	ck_assert_uint_eq(unrecorded(p), 0);
	rbus_channel_close(p2);
	rbus_channel_close(p);
	rbus_channel_close(c);
	rbus_broker_close(b);
}
END_TEST

/* ---- the covers and the gaps between them --------------------------------- */

static const struct rbus_slot *slot_of(struct rbus_channel *ch, uint64_t idx)
{
	struct rbus_region *r = rbus_channel_region(ch);

	return (const struct rbus_slot *)(r->slots + (idx & (r->hdr.capacity - 1)) *
					  r->hdr.slot_size);
}

/* A dead intent over indices 0-2, whose CAS won them, with the live
 * records of p and p2 covering 2 and 0: ringbusd finishes index 1 alone.
 * (Honest records would not leave such a gap, since claims are runs of
 * indices: the test writes p's and p2's records itself, to reach the part
 * of the recovery that sorts the covers and walks the gaps.) */
START_TEST(partial_cover_finishes_the_gap)
{
	struct rbus_broker *b = conn();
	struct rbus_channel *c = NULL, *p = NULL, *p2 = NULL;
	struct holder h;
	uint32_t stamp[3], len[3];
	char buf[8];

	window_open(b, RBUS_PRODUCER, &c, &p);
	ck_assert_rbus(rbus_broker_open(b, "window", RBUS_PRODUCER, 0, &p2), 0);
	stop_point = RBUS_CLAIM_WON;
	holder_start_arg(&h, window_holder, RBUS_PRODUCER | 3 << 8);
	/* p has the lease entry before p2's: p's cover is found first, and
	 * it is the later one, so the covers must be sorted. */
	ck_assert_int_lt(p->lease, p2->lease);
	atomic_store(&p->claim->first, 2);
	atomic_store(&p->claim->count, 1 | RBUS_CLAIM_HELD);
	atomic_store(&p2->claim->first, 0);
	atomic_store(&p2->claim->count, 1);
	holder_kill(&h);
	wait_recovered(b, "window", 2);
	for (int i = 0; i < 3; i++) {
		stamp[i] = atomic_load(&slot_of(p, (uint64_t)i)->stamp);
		len[i] = atomic_load(&slot_of(p, (uint64_t)i)->len);
	}
	/* 0 and 2 still claimed (stamp i), 1 published as skipped. */
	ck_assert_uint_eq(stamp[0], 0);
	ck_assert_uint_eq(stamp[1], 2);
	ck_assert_uint_eq(len[1], RBUS_SLOT_SKIP);
	ck_assert_uint_eq(stamp[2], 2);
	ck_assert_uint_ne(len[2], RBUS_SLOT_SKIP);
	ck_assert_rbus(rbus_recv(c, buf, sizeof(buf)), -EAGAIN);
	atomic_store(&p->claim->count, 0);
	atomic_store(&p2->claim->count, 0);
	rbus_channel_close(p2);
	rbus_channel_close(p);
	rbus_channel_close(c);
	holder_end(&h);
	rbus_broker_close(b);
}
END_TEST

/* ---- a live handle's intent over a dead claim ---------------------------- */

/* The live handle p2's CAS lost: it clears its record.  ringbusd's next
 * look publishes index 0 as skipped, and "A", sent behind it, arrives. */
static void intent_cleared_a_arrives(struct rbus_channel *c, struct rbus_channel *p,
				     struct rbus_channel *p2)
{
	uint32_t len;
	char buf[8];

	atomic_store(&p2->claim->count, 0);
	ck_assert_rbus(rbus_recv_wait(c, buf, sizeof(buf), rbus_deadline_in(INT64_C(20000000000))),
		       1);
	ck_assert_int_eq(buf[0], 'A');
	len = atomic_load(&slot_of(p, 0)->len);
	ck_assert_uint_eq(len, RBUS_SLOT_SKIP);
	wait_log("looked at again after");
}

/* Killed after its CAS won index 0, before it marked the claim held, while
 * a live handle's record is an intent naming index 0 too: the record that
 * handle leaves between noting its claim and clearing it after losing the
 * CAS.  ringbusd cannot tell it from the intent of a handle that won, so it
 * leaves index 0 alone for now and looks again; once the live record is
 * cleared, the retry finishes index 0 and the consumer gets what follows
 * it.  Without the retry, the ring stopped at index 0 for good.  (The test
 * writes the live record itself: the real one lasts a few instructions.) */
START_TEST(stale_live_intent_retried)
{
	struct rbus_broker *b = conn();
	struct rbus_channel *c = NULL, *p = NULL, *p2 = NULL;
	struct holder h;
	uint32_t stamp;
	char buf[8];

	window_open(b, RBUS_PRODUCER, &c, &p);
	ck_assert_rbus(rbus_broker_open(b, "window", RBUS_PRODUCER, 0, &p2), 0);
	window_start(&h, RBUS_PRODUCER, RBUS_CLAIM_WON);
	atomic_store(&p2->claim->first, 0);
	atomic_store(&p2->claim->count, 1);
	holder_kill(&h);
	wait_recovered(b, "window", 2);
	wait_log("looking again shortly");
	/* Left alone so far: index 0 still claimed. */
	stamp = atomic_load(&slot_of(p, 0)->stamp);
	ck_assert_uint_eq(stamp, 0);
	ck_assert_rbus(rbus_send(p, "A", 1), 0);
	ck_assert_rbus(rbus_recv(c, buf, sizeof(buf)), -EAGAIN);
	intent_cleared_a_arrives(c, p, p2);
	rbus_channel_close(p2);
	window_end(b, c, p, &h);
}
END_TEST

/* Killed after noting index 0, before its CAS, while a live handle has won
 * index 0 and not yet marked its record held: ringbusd finds only an
 * intent over the dead one's, and looks again.  By then the live handle
 * has marked it held, which is for good: the retry leaves index 0 alone,
 * and the live handle's commit arrives.  Finishing it would have had the
 * consumer pass over index 0 and the commit lost. */
START_TEST(live_intent_that_won_left_alone)
{
	struct rbus_broker *b = conn();
	struct rbus_channel *c = NULL, *p = NULL, *p2 = NULL;
	struct holder h;
	uint32_t count, stamp, len;
	void *slot;
	char buf[8];

	window_open(b, RBUS_PRODUCER, &c, &p);
	ck_assert_rbus(rbus_broker_open(b, "window", RBUS_PRODUCER, 0, &p2), 0);
	window_start(&h, RBUS_PRODUCER, RBUS_CLAIM_NOTED);
	ck_assert_rbus(rbus_reserve(p2, &slot), 0);
	count = atomic_load(&p2->claim->count);
	ck_assert_uint_eq(count, 1 | RBUS_CLAIM_HELD);
	/* As between its CAS and its mark. */
	atomic_store(&p2->claim->count, 1);
	holder_kill(&h);
	wait_recovered(b, "window", 2);
	wait_log("looking again shortly");
	atomic_store(&p2->claim->count, 1 | RBUS_CLAIM_HELD);
	wait_log("looked at again after");
	stamp = atomic_load(&slot_of(p, 0)->stamp);
	len = atomic_load(&slot_of(p, 0)->len);
	ck_assert_uint_eq(stamp, 0);
	ck_assert_uint_ne(len, RBUS_SLOT_SKIP);
	ck_assert_rbus(rbus_recv(c, buf, sizeof(buf)), -EAGAIN);
	memset(slot, 'P', 1);
	ck_assert_rbus(rbus_commit(p2, 1), 0);
	ck_assert_rbus(rbus_recv(c, buf, sizeof(buf)), 1);
	ck_assert_int_eq(buf[0], 'P');
	rbus_channel_close(p2);
	window_end(b, c, p, &h);
}
END_TEST

/* The two-deaths tests: restart the daemon as tests/ringbusd-hooks (its list
 * of runs to look at again holds one), open "window" with *c, *p and a
 * second producer *p2, start @first and then @second stopping at @fp and
 * @sp, and write *p2's record as a live intent over [0, @span). */
static struct rbus_broker *two_holders(struct rbus_channel **c, struct rbus_channel **p,
				       struct rbus_channel **p2, struct holder *first,
				       enum rbus_claim_point fp, struct holder *second,
				       enum rbus_claim_point sp, uint32_t span)
{
	struct rbus_broker *b;

	ck_assert_int_eq(daemon_stop(SIGTERM), 0);
	D.path = DAEMON_HOOKS_PATH;
	daemon_start();
	b = conn();
	window_open(b, RBUS_PRODUCER, c, p);
	ck_assert_rbus(rbus_broker_open(b, "window", RBUS_PRODUCER, 0, p2), 0);
	window_start(first, RBUS_PRODUCER, fp);
	window_start(second, RBUS_PRODUCER, sp);
	atomic_store(&(*p2)->claim->first, 0);
	atomic_store(&(*p2)->claim->count, span);
	return b;
}

/*
 * The list of claims to look at again is bounded (LATER_MAX; 1 in
 * tests/ringbusd-hooks, the daemon this test runs): a death that would
 * add past it leaves its slots held, with a warning naming them, and
 * the ones already waiting are still looked at.  Two holders killed
 * after winning indices 0 and 1, both covered by a live handle's stale
 * intent over [0, 2): 0 waits, 1 is refused; once the intent is gone, 0
 * is finished and 1 stays held.  Without the bound, 1 was taken into the
 * list too.
 */
START_TEST(later_list_full)
{
	struct rbus_channel *c = NULL, *p = NULL, *p2 = NULL;
	struct holder h1, h2;
	struct rbus_broker *b;
	uint32_t len;
	char buf[8];

	b = two_holders(&c, &p, &p2, &h1, RBUS_CLAIM_WON, &h2, RBUS_CLAIM_WON, 2);
	holder_kill(&h1);
	wait_log("slots 0..0 of window, which a live handle's intent also names: "
		 "looking again shortly");
	holder_kill(&h2);
	wait_log("slots 1..1 of window, which a live handle's intent also names: "
		 "too many such claims waiting; they stay held");
	/* The live handle's CAS lost: it clears its record. */
	atomic_store(&p2->claim->count, 0);
	wait_log("slots 0..0 of window, claimed by pid");
	wait_log("looked at again after");
	len = atomic_load(&slot_of(p, 0)->len);
	ck_assert_uint_eq(len, RBUS_SLOT_SKIP);
	/* Index 1 is held for good: nothing gets past it. */
	ck_assert_rbus(rbus_send(p, "A", 1), 0);
	ck_assert_rbus(rbus_recv(c, buf, sizeof(buf)), -EAGAIN);
	rbus_channel_close(p2);
	rbus_channel_close(p);
	rbus_channel_close(c);
	holder_end(&h1);
	holder_end(&h2);
	rbus_broker_close(b);
}
END_TEST

/*
 * A run already waiting to be looked at again is not added twice: a second
 * death with the same run gives the waiting one its time afresh.  h2 notes
 * index 0 and stops before its CAS; h1 notes index 0 too, wins it, and
 * stops before its mark; a live handle's stale intent names index 0 as
 * well.  h1's death leaves 0..0 to look at again (h2's intent and the live
 * one cover it), and h2's death, whose own intent covers the same slot,
 * finds that run waiting.  In tests/ringbusd-hooks the list holds one run:
 * added again, h2's run was refused with the "too many" warning.  Once the
 * live intent is gone, index 0 is published as skipped and the message
 * behind it arrives.
 */
START_TEST(later_run_taken_once)
{
	struct rbus_channel *c = NULL, *p = NULL, *p2 = NULL;
	struct holder h1, h2;
	struct rbus_broker *b;

	b = two_holders(&c, &p, &p2, &h2, RBUS_CLAIM_NOTED, &h1, RBUS_CLAIM_WON, 1);
	holder_kill(&h1);
	wait_log("slots 0..0 of window, which a live handle's intent also names: "
		 "looking again shortly");
	holder_kill(&h2);
	wait_log("slots 0..0 of window, already waiting to be looked at again");
	ck_assert_msg(!log_has("too many such claims waiting"),
		      "the same run was taken for a second one");
	ck_assert_rbus(rbus_send(p, "A", 1), 0);
	intent_cleared_a_arrives(c, p, p2);
	rbus_channel_close(p2);
	window_end(b, c, p, &h1);
	holder_end(&h2);
}
END_TEST

/* ---- the retry's arithmetic, without a daemon ------------------------------ */

/* The recovery and its retry called in-process on a ring whose records the
 * test writes: a dead intent over [0, 8), whose CAS won (the tail is 8); a
 * live intent over [5, 7) and a live held record over [6, 9).  The recovery
 * finishes 0-4, leaves 5 for later (only an intent covers it) and 6-7 for
 * good (held), and hands back the span of the intent that held records do
 * not wholly cover, [5, 7).  A retry while the intent stands says "later"
 * again; one after the side was marked unrecorded says "never"; one after
 * the intent was cleared finishes 5 and leaves 6 and 7.  (The daemon's
 * timer and list are what stale_live_intent_retried covers.) */
START_TEST(retry_narrows_and_stops)
{
	struct rbus_region_opts o;
	struct rbus_region *r;
	struct rbus_channel *dead, *live, *held;
	struct rbus_claim_left left[RBUS_SIDE_LEASES], keep;
	struct iovec iov[8];
	unsigned nleft;
	uint32_t stamp[8], len;

	rbus_region_opts_init(&o);
	o.kind = RBUS_KIND_MPMC;
	o.capacity = 16;
	ck_assert_rbus(rbus_region_create(&o, &r), 0);
	ck_assert_rbus(rbus_channel_open_token(r, RBUS_PRODUCER, 0, 2, &dead), 0);
	ck_assert_rbus(rbus_channel_open_token(r, RBUS_PRODUCER, 0, 3, &live), 0);
	ck_assert_rbus(rbus_channel_open_token(r, RBUS_PRODUCER, 0, 4, &held), 0);
	ck_assert_rbus(rbus_reserve_batch(dead, iov, 8), 8);
	atomic_store(&dead->claim->count, 8);                  /* not marked */
	atomic_store(&live->claim->first, 5);
	atomic_store(&live->claim->count, 2);
	atomic_store(&held->claim->first, 6);
	atomic_store(&held->claim->count, 3 | RBUS_CLAIM_HELD);

	ck_assert_int_eq(rbus_region_recover(r, RBUS_PRODUCER, 2, left, &nleft), 1);
	ck_assert_uint_eq(nleft, 1);
	ck_assert_uint_eq(left[0].first, 5);
	ck_assert_uint_eq(left[0].count, 2);
	for (int i = 0; i < 8; i++)
		stamp[i] = atomic_load(&slot_of(held, (uint64_t)i)->stamp);
	for (int i = 0; i < 5; i++) {
		len = atomic_load(&slot_of(held, (uint64_t)i)->len);
		ck_assert_uint_eq(stamp[i], (uint32_t)i + 1);
		ck_assert_uint_eq(len, RBUS_SLOT_SKIP);
	}
	for (int i = 5; i < 8; i++)
		ck_assert_uint_eq(stamp[i], (uint32_t)i);

	keep = left[0];
	ck_assert_int_eq(rbus_region_retry_intent(r, RBUS_PRODUCER, &left[0]), 1);
	ck_assert_uint_eq(left[0].first, 5);
	ck_assert_uint_eq(left[0].count, 2);
	atomic_store(&r->prod->unrecorded, 1);
	ck_assert_int_eq(rbus_region_retry_intent(r, RBUS_PRODUCER, &left[0]), 2);
	stamp[5] = atomic_load(&slot_of(held, 5)->stamp);
	ck_assert_uint_eq(stamp[5], 5);
	atomic_store(&r->prod->unrecorded, 0);

	atomic_store(&live->claim->count, 0);                  /* its CAS lost */
	left[0] = keep;
	ck_assert_int_eq(rbus_region_retry_intent(r, RBUS_PRODUCER, &left[0]), 0);
	for (int i = 5; i < 8; i++)
		stamp[i] = atomic_load(&slot_of(held, (uint64_t)i)->stamp);
	len = atomic_load(&slot_of(held, 5)->len);
	ck_assert_uint_eq(stamp[5], 6);
	ck_assert_uint_eq(len, RBUS_SLOT_SKIP);
	ck_assert_uint_eq(stamp[6], 6);
	ck_assert_uint_eq(stamp[7], 7);
	/* A role that is neither. */
	ck_assert_int_eq(rbus_region_retry_intent(r, (enum rbus_role)0, &left[0]), -EINVAL);
	/* The dead one's close abandons its reservation: its slots are
	 * finished already, or now published as skipped. */
	atomic_store(&held->claim->count, 0);
	rbus_channel_close(dead);
	rbus_channel_close(live);
	rbus_channel_close(held);
	rbus_region_close(r);
}
END_TEST

/* Free the handle of a "dead" holder whose role the recovery released: its
 * reservation is the recovery's to finish (or leave), not its close's,
 * which would publish it over whatever the ring has put there since.  (The
 * close drops the producers' count a second time.) */
static void dead_close(struct rbus_channel *dead)
{
	dead->pending = PENDING_NONE;
	dead->npending = 0;
	rbus_channel_close(dead);
}

/* The test's live peers for indices_move(): a claim on each side. */
static struct rbus_channel *mover_c, *mover_p;

static void indices_move(void)
{
	void *slot;
	char buf[8];

	rbus_test_indices = NULL;
	ck_assert_rbus(rbus_recv(mover_c, buf, sizeof(buf)), 1);
	ck_assert_rbus(rbus_reserve(mover_p, &slot), 0);
	memset(slot, 'Z', 1);
	ck_assert_rbus(rbus_commit(mover_p, 1), 0);
}

/*
 * The recovery loads the head, the tail, and the head again.  On a full
 * ring, a consumer's claim and then a producer's between its first two
 * loads make tail - head read capacity + 1: not corruption, since the
 * head moved.  Here a dead handle holds index 15 of a full 16-slot ring
 * (reserved, marked held), and the indices hook has a live consumer take
 * index 0 and a live producer send index 16 between the loads: the
 * recovery must still publish index 15 as skipped.  Taking that reading
 * for corrupt indices, as before the second load of the head, left it
 * held.  With the indices really more than a ring apart and the head
 * still, nothing is finished.
 */
START_TEST(head_moved_under_recovery)
{
	struct rbus_region_opts o;
	struct rbus_region *r;
	struct rbus_channel *dead;
	struct rbus_claim_left left[RBUS_SIDE_LEASES];
	unsigned nleft;
	uint32_t stamp, len;
	void *slot;
	char buf[8];

	rbus_region_opts_init(&o);
	o.kind = RBUS_KIND_MPMC;
	o.capacity = 16;
	ck_assert_rbus(rbus_region_create(&o, &r), 0);
	ck_assert_rbus(rbus_channel_open_token(r, RBUS_PRODUCER, 0, 2, &dead), 0);
	ck_assert_rbus(rbus_channel_open_token(r, RBUS_PRODUCER, 0, 3, &mover_p), 0);
	ck_assert_rbus(rbus_channel_open_token(r, RBUS_CONSUMER, 0, 4, &mover_c), 0);
	for (int i = 0; i < 15; i++)
		ck_assert_rbus(rbus_send(mover_p, "M", 1), 0);
	ck_assert_rbus(rbus_reserve(dead, &slot), 0);           /* index 15 */
	len = atomic_load(&dead->claim->count);
	ck_assert_uint_eq(len, 1 | RBUS_CLAIM_HELD);

	rbus_test_indices = indices_move;
	ck_assert_int_eq(rbus_region_recover(r, RBUS_PRODUCER, 2, left, &nleft), 1);
	ck_assert_ptr_null(rbus_test_indices);
	ck_assert_uint_eq(nleft, 0);
	stamp = atomic_load(&slot_of(mover_p, 15)->stamp);
	len = atomic_load(&slot_of(mover_p, 15)->len);
	ck_assert_uint_eq(stamp, 16);
	ck_assert_uint_eq(len, RBUS_SLOT_SKIP);
	/* 1-14, then 16: index 15 is passed over. */
	for (int i = 1; i < 15; i++) {
		ck_assert_rbus(rbus_recv(mover_c, buf, sizeof(buf)), 1);
		ck_assert_int_eq(buf[0], 'M');
	}
	ck_assert_rbus(rbus_recv(mover_c, buf, sizeof(buf)), 1);
	ck_assert_int_eq(buf[0], 'Z');
	ck_assert_rbus(rbus_recv(mover_c, buf, sizeof(buf)), -EAGAIN);
	dead_close(dead);

	/* A tail more than a ring above a head that holds still: corrupt,
	 * and the dead handle's reservation (index 17) is left as it is. */
	ck_assert_rbus(rbus_channel_open_token(r, RBUS_PRODUCER, 0, 5, &dead), 0);
	ck_assert_rbus(rbus_reserve(dead, &slot), 0);
	atomic_store(&r->prod->index, 17 + 16 + 1);
	ck_assert_int_eq(rbus_region_recover(r, RBUS_PRODUCER, 5, left, &nleft), 1);
	ck_assert_uint_eq(nleft, 0);
	stamp = atomic_load(&slot_of(mover_p, 17)->stamp);
	ck_assert_uint_eq(stamp, 17);
	dead_close(dead);
	rbus_channel_close(mover_c);
	rbus_channel_close(mover_p);
	rbus_region_close(r);
}
END_TEST

/* ---- between an OPEN's reply and the claim ------------------------------- */

/* Open the producer of "lease", pausing between the reply and the claim;
 * then say 'H' and wait to be killed. */
static int reply_holder(void *arg)
{
	int *pipes = arg;
	struct rbus_broker *b = NULL;
	struct rbus_channel *ch = NULL;
	char c = 'H';

	stop_pipes[0] = pipes[0];
	stop_pipes[1] = pipes[1];
	stop_point = RBUS_CLAIM_REPLY;
	stop_goes_on = true;
	if (rbus_broker_connect(D.sock, &b))
		return 1;
	rbus_test_claim = stop_in_claim;
	if (rbus_broker_open(b, "lease", RBUS_PRODUCER, 0, &ch))
		return 2;
	if (write(pipes[1], &c, 1) != 1)
		return 3;
	(void)read(pipes[0], &c, 1);
	_exit(7);
}

/*
 * A client stopped between an OPEN's reply and its claim keeps its lease,
 * however long it stays there: ringbusd forgets only leases that shared
 * memory says nobody holds and whose connection has since sent another
 * datagram or closed.  The holder pauses there while STAT (which forgets
 * such leases) runs; it then claims the producer role and is killed, and
 * the role must come back.  The daemon runs with --lease-settle-ms 0,
 * which must now be taken and ignored: before, it had leases forgotten as
 * soon as their OPEN was that old, STAT dropped this one, and the death
 * released nothing.  (With the default of 1 s the old rule would have
 * passed: the pause lasts microseconds.)  STAT lists held leases only, so
 * it shows no holder before the claim either way.
 */
START_TEST(stopped_before_claim_keeps_lease)
{
	static const char *const opts[] = { "--lease-settle-ms", "0", NULL };
	struct rbus_broker *b;
	struct rbus_broker_stat st;
	struct rbus_channel *p = NULL;
	struct holder h;
	char c;

	ck_assert_int_eq(daemon_stop(SIGTERM), 0);
	daemon_start_args(opts);
	wait_log("--lease-settle-ms has no effect any more");
	b = conn();
	create(b, "lease", RBUS_KIND_SPSC, 16, 0600, 0);
	holder_start(&h, reply_holder);
	ck_assert_rbus(rbus_broker_stat(b, "lease", &st), 0);
	ck_assert_uint_eq(st.holders_total, 0);         /* not claimed yet */
	ck_assert_uint_eq(st.chan.producers, 0);
	ck_assert_int_eq(write(h.to_child[1], "g", 1), 1);
	ck_assert_int_eq(read(h.from_child[0], &c, 1), 1);
	ck_assert_int_eq(c, 'H');
	ck_assert_rbus(rbus_broker_stat(b, "lease", &st), 0);
	ck_assert_uint_eq(st.chan.producers, 1);
	ck_assert_uint_eq(st.holders_total, 1);
	ck_assert_int_eq(st.holders[0].pid, h.pid);
	holder_kill(&h);
	wait_log("exited holding producer of lease: released");
	do {
		stat_polled(b, "lease", &st);
		sched_yield();
	} while (st.deaths == 0);
	ck_assert_uint_eq(st.recovered, 1);
	ck_assert_rbus(rbus_broker_open(b, "lease", RBUS_PRODUCER, 0, &p), 0);
	rbus_channel_close(p);
	holder_end(&h);
	rbus_broker_close(b);
}
END_TEST

/* Where the library cannot tell a forked child from the process that
 * opened a handle (no MADV_WIPEONFORK), a child would note its claims in the
 * parent's record, and no record could be taken for the whole truth: the
 * open sets the side's `unrecorded` flag itself. */
START_TEST(no_wipeonfork_no_intents)
{
	struct rbus_broker *b = conn();
	struct rbus_channel *c = NULL, *p = NULL;

	create(b, "window", RBUS_KIND_MPMC, 16, 0600, 0);
	ck_assert_rbus(rbus_broker_open(b, "window", RBUS_CONSUMER, 0, &c), 0);
	ck_assert_uint_eq(unrecorded(c), 0);
	rbus_test_no_wipeonfork = true;
	ck_assert_rbus(rbus_broker_open(b, "window", RBUS_PRODUCER, 0, &p), 0);
	rbus_test_no_wipeonfork = false;
	ck_assert_ptr_nonnull(p->claim);
	ck_assert_uint_eq(unrecorded(p), 1);
	ck_assert_uint_eq(unrecorded(c), 0);
	rbus_channel_close(p);
	rbus_channel_close(c);
	rbus_broker_close(b);
}
END_TEST

static Suite *claim_window_suite(void)
{
	Suite *s = suite_create("claim_window");
	TCase *tc = tcase_create("claim_window");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, death_after_claim_cas, 0, 2);
	tcase_add_loop_test(tc, death_before_claim_cas, 0, 2);
	tcase_add_test(tc, unrecorded_claim_left_alone);
	tcase_add_test(tc, lost_cas_clears_intent);
	tcase_add_test(tc, partial_cover_finishes_the_gap);
	tcase_add_test(tc, stale_live_intent_retried);
	tcase_add_test(tc, live_intent_that_won_left_alone);
	tcase_add_test(tc, later_list_full);
	tcase_add_test(tc, later_run_taken_once);
	tcase_add_test(tc, retry_narrows_and_stops);
	tcase_add_test(tc, head_moved_under_recovery);
	tcase_add_test(tc, no_wipeonfork_no_intents);
	tcase_add_test(tc, stopped_before_claim_keeps_lease);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(claim_window_suite());
	int failed;

	th_tmpdir_init();
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
