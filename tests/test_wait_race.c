/* SPDX-License-Identifier: MIT */
/*
 * test_wait_race.c - races of the wait handshake that only a test hook can
 * line up, run against the library built with RBUS_TEST_HOOKS.
 *
 * With the eventfd backend, the handles of one MPMC role sleep on one
 * eventfd, and a token is anybody's: a fellow sleeper can read the token
 * of the wake that took another sleeper's registration (doc/design.md
 * §7.3).  The one robbed sleeps on with nothing registered, so a later
 * wake that brings more work than there are registrations leaves it work
 * and no wake.  The library bounds that: an MPMC eventfd sleeper looks at
 * the queue's word before it polls and every RBUS_SLICE_NS while it polls,
 * and goes back to the ring when a wake has taken its registration.
 *
 * The tests build the robbed state for real (stolen_token_*), or play the
 * fellow sleeper that read the token (taken_while_polling), and then check
 * that the robbed sleeper took its work without its sleep running out.
 * Nothing here sleeps to let a thread get somewhere: the sleep hook parks
 * and counts, /proc tells when a thread is asleep in the kernel.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "helpers.h"
#include "internal.h"

/* Which of the test's threads a hook call comes from. */
enum who { W_OTHER, W_VICTIM, W_FELLOW };
static _Thread_local enum who me;

/* What the hook saw, and the victim's park. */
static struct {
	_Atomic int victim_begins;      /* the victim's sleeps begun */
	_Atomic int victim_expired;     /* ... run out, since `watch` was set */
	_Atomic int64_t victim_until;   /* the `until` of the last one run out */
	_Atomic bool victim_probe;      /* ... and whether it was a probe */
	_Atomic bool watch;
	_Atomic int park_at;            /* park the victim at this sleep (0: never) */
	_Atomic bool parked, released;
	_Atomic int fellow_begins;
	_Atomic pid_t victim_tid, fellow_tid;
} hs;

static void sleep_hook(enum rbus_sleep_event ev, int64_t until, bool probe)
{
	if (me == W_FELLOW && ev == RBUS_SLEEP_BEGIN)
		atomic_fetch_add(&hs.fellow_begins, 1);
	if (me != W_VICTIM)
		return;
	if (ev == RBUS_SLEEP_BEGIN) {
		int n = atomic_fetch_add(&hs.victim_begins, 1) + 1;

		if (n == atomic_load(&hs.park_at)) {
			atomic_store(&hs.parked, true);
			while (!atomic_load(&hs.released))
				sched_yield();
		}
	} else if (ev == RBUS_SLEEP_EXPIRED && atomic_load(&hs.watch)) {
		atomic_store(&hs.victim_until, until);
		atomic_store(&hs.victim_probe, probe);
		atomic_fetch_add(&hs.victim_expired, 1);
	}
}

static void hooks_setup(void)
{
	memset(&hs, 0, sizeof(hs));
	rbus_test_sleep = sleep_hook;
}

static void hooks_teardown(void)
{
	rbus_test_sleep = NULL;
}

/* Until *counter reaches min and thread tid is asleep in the kernel. */
static void until_asleep(_Atomic int *counter, int min, pid_t tid)
{
	while (atomic_load(counter) < min || th_task_state(getpid(), tid) != 'S')
		sched_yield();
}

static struct rbus_region *make_mpmc_eventfd(uint32_t capacity)
{
	struct rbus_region_opts o;
	struct rbus_region *r = NULL;

	rbus_region_opts_init(&o);
	o.kind = RBUS_KIND_MPMC;
	o.wakeup = RBUS_WAKE_EVENTFD;
	o.capacity = capacity;
	o.max_msg = 16;
	ck_assert_rbus(rbus_region_create(&o, &r), 0);
	return r;
}

static struct rbus_channel *open_ch(struct rbus_region *r, enum rbus_role role)
{
	struct rbus_channel *ch = NULL;

	ck_assert_rbus(rbus_channel_open(r, role, 0, &ch), 0);
	ck_assert_rbus(rbus_channel_set_spin(ch, 0), 0);
	return ch;
}

/* The eventfd the sleepers of `role` poll: fds are region, data, space. */
static int sleepers_efd(struct rbus_region *r, enum rbus_role role)
{
	int fds[3];

	ck_assert_rbus(rbus_region_fds(r, fds, 3), 3);
	return role == RBUS_CONSUMER ? fds[1] : fds[2];
}

/* Read every token left in efd (non-blocking, semaphore mode). */
static int drain_tokens(int efd)
{
	uint64_t t;
	int n = 0;

	while (read(efd, &t, sizeof(t)) == sizeof(t))
		n++;
	ck_assert_int_eq(errno, EAGAIN);
	return n;
}

static long sleepers_registered(struct rbus_region *r, enum rbus_role role)
{
	struct rbus_wait_stats st;

	ck_assert_rbus(rbus_region_wait_stats(r, &st), 0);
	return role == RBUS_CONSUMER ? (long)st.data_sleepers : (long)st.space_sleepers;
}

/* --- one wait of a sleeper of either role ---------------------------------- */

struct waiter {
	struct rbus_channel *ch;
	enum who who;
	enum rbus_role role;
	int64_t result;
	unsigned char byte;     /* the message's byte (consumers) */
};

static void *waiter_main(void *varg)
{
	struct waiter *w = varg;
	unsigned char b = 0xee;

	me = w->who;
	atomic_store(w->who == W_VICTIM ? &hs.victim_tid : &hs.fellow_tid,
		     (pid_t)syscall(SYS_gettid));
	if (w->role == RBUS_CONSUMER) {
		w->result = rbus_recv_wait(w->ch, &b, 1, RBUS_FOREVER);
		w->byte = b;
	} else {
		w->result = rbus_send_wait(w->ch, &b, 1, RBUS_FOREVER);
	}
	return NULL;
}

/* The peer's side of the scenario, done by the test's own thread with a
 * handle of the other role, never waiting: give the sleepers k units of
 * work in one call, so one wake (consumers: publish k messages; producers:
 * free k slots). */
static void give(struct rbus_channel *peer, enum rbus_role sleepers, unsigned k,
		 unsigned char first)
{
	unsigned char b[8];
	struct iovec v[8];

	ck_assert_uint_le(k, 8);
	for (unsigned i = 0; i < k; i++) {
		b[i] = (unsigned char)(first + i);
		v[i] = (struct iovec){ .iov_base = &b[i], .iov_len = 1 };
	}
	if (sleepers == RBUS_CONSUMER)
		ck_assert_rbus(rbus_send_batch(peer, v, k), k);
	else
		ck_assert_rbus(rbus_recv_batch(peer, v, k), k);
}

/* A non-waiting call of a sleeper's role, by the fellow before it waits:
 * it takes the unit the first wake was for, so that wake's token is left
 * for nobody in particular. */
static void take_one(struct rbus_channel *ch, enum rbus_role role)
{
	unsigned char b = 0x55;

	if (role == RBUS_CONSUMER)
		ck_assert_rbus(rbus_recv(ch, &b, 1), 1);
	else
		ck_assert_rbus(rbus_send(ch, &b, 1), 0);
}

/*
 * A fellow sleeper reads the token of the wake that took the victim's
 * registration, and a later wake brings two units of work with one token.
 *
 *  1. The victim waits (spin 0): it registers, its first sleep (a probe)
 *     runs out, and it is parked by the hook as its second sleep begins:
 *     registered, re-checked, not yet polling.
 *  2. The peer gives one unit: the wake takes the victim's registration
 *     and writes one token.
 *  3. The fellow takes that unit without waiting, then waits: it
 *     registers, polls, reads the token (the victim's), finds nothing,
 *     and sleeps again with its own registration pending.
 *  4. The peer gives two units in one call: one wake, which takes the one
 *     registration there is (the fellow's) and writes one token.  The
 *     fellow takes one unit and returns.  A token it left (it may have
 *     found its unit before reading) is read by the test, as another
 *     fellow's poll would.
 *  5. The victim is let go.  One unit is there for it, nobody is
 *     registered, and no token is coming.  Before the fix it polled until
 *     its sleep ran out (1 s); now it sees the word moved and takes it.
 */
START_TEST(stolen_token)
{
	const enum rbus_role role = _i ? RBUS_PRODUCER : RBUS_CONSUMER;
	const enum rbus_role peer_role = _i ? RBUS_CONSUMER : RBUS_PRODUCER;
	struct rbus_region *r = make_mpmc_eventfd(4);
	struct rbus_channel *peer = open_ch(r, peer_role);
	struct waiter v = { .ch = open_ch(r, role), .who = W_VICTIM, .role = role };
	struct waiter f = { .ch = open_ch(r, role), .who = W_FELLOW, .role = role };
	pthread_t tv, tf;

	if (role == RBUS_PRODUCER) {
		/* Producers sleep on a full ring. */
		for (unsigned char i = 0; i < 4; i++)
			ck_assert_rbus(rbus_send(f.ch, &i, 1), 0);
	}
	atomic_store(&hs.park_at, 2);
	ck_assert_int_eq(pthread_create(&tv, NULL, waiter_main, &v), 0);
	while (!atomic_load(&hs.parked))
		sched_yield();
	ck_assert_int_eq(sleepers_registered(r, role), 1);

	give(peer, role, 1, 10);                          /* 2 */
	ck_assert_int_eq(sleepers_registered(r, role), 0);

	take_one(f.ch, role);                             /* 3 */
	ck_assert_int_eq(pthread_create(&tf, NULL, waiter_main, &f), 0);
	while (!atomic_load(&hs.fellow_tid))
		sched_yield();
	until_asleep(&hs.fellow_begins, 2, atomic_load(&hs.fellow_tid));
	ck_assert_int_eq(sleepers_registered(r, role), 1);

	give(peer, role, 2, 20);                          /* 4 */
	ck_assert_int_eq(pthread_join(tf, NULL), 0);
	ck_assert_rbus(f.result, role == RBUS_CONSUMER ? 1 : 0);
	drain_tokens(sleepers_efd(r, role));
	ck_assert_int_eq(sleepers_registered(r, role), 0);

	atomic_store(&hs.watch, true);                    /* 5 */
	atomic_store(&hs.released, true);
	ck_assert_int_eq(pthread_join(tv, NULL), 0);
	ck_assert_rbus(v.result, role == RBUS_CONSUMER ? 1 : 0);
	if (role == RBUS_CONSUMER)
		ck_assert_int_eq(v.byte + f.byte, 20 + 21);
	ck_assert_msg(atomic_load(&hs.victim_expired) == 0,
		      "the robbed sleeper slept until its timer ran out");

	rbus_channel_close(f.ch);
	rbus_channel_close(v.ch);
	rbus_channel_close(peer);
	rbus_region_close(r);
}
END_TEST

/* The wait block of r, mapped from its fd, to play a waker. */
struct wait_map {
	void *base;
	size_t size;
	struct rbus_waitq *q;
};

static void map_waitq(struct rbus_region *r, enum rbus_role role, struct wait_map *m)
{
	const struct rbus_hdr *h;
	struct rbus_wait *w;
	struct stat st;
	int fd;

	fd = rbus_region_fd(r);
	ck_assert_int_eq(fstat(fd, &st), 0);
	m->size = (size_t)st.st_size;
	m->base = mmap(NULL, m->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ck_assert_ptr_ne(m->base, MAP_FAILED);
	h = m->base;
	w = (struct rbus_wait *)((char *)m->base + h->wait_off);
	m->q = role == RBUS_CONSUMER ? &w->data : &w->space;
}

/*
 * The victim is asleep in its poll (a long sleep) when a wake takes its
 * registration, and a fellow's poll reads that wake's token before the
 * victim's does.  That interleaving is a matter of the kernel's timing, so
 * the test plays the wake whose token went elsewhere: it takes the
 * registrations as rbus_wake_slow() does, gives one unit (its own wake
 * finds nobody registered, so it makes none), then bumps the word and
 * writes no token.  Bumping last keeps the victim from registering again
 * before the unit is there, which would let give()'s wake write a token.
 * The victim must see the word move at the end of a slice, not sleep on
 * until its timer runs out (1 s).
 *
 * One case cannot be told apart: the victim's long sleep reaches its 1 s
 * cap within a slice of the bump, which takes this thread being held up
 * for about a second between seeing the victim asleep and the bump.  Then
 * the round is done again.  A process without membarrier(2) never sleeps
 * long, and its probes are the bound already: the test checks nothing
 * there.
 */
START_TEST(taken_while_polling)
{
	const enum rbus_role role = _i ? RBUS_PRODUCER : RBUS_CONSUMER;
	const enum rbus_role peer_role = _i ? RBUS_CONSUMER : RBUS_PRODUCER;
	int round;

	for (round = 0; round < 5; round++) {
		struct rbus_region *r = make_mpmc_eventfd(4);
		struct rbus_channel *peer = open_ch(r, peer_role);
		struct waiter v = { .ch = open_ch(r, role), .who = W_VICTIM, .role = role };
		struct wait_map m;
		int64_t bumped, until;
		bool probe;
		pthread_t tv;
		int expired, tokens;
		long registered;

		hooks_setup();
		map_waitq(r, role, &m);
		if (role == RBUS_PRODUCER) {
			for (unsigned char i = 0; i < 4; i++)
				ck_assert_rbus(rbus_send(v.ch, &i, 1), 0);
		}
		ck_assert_int_eq(pthread_create(&tv, NULL, waiter_main, &v), 0);
		while (!atomic_load(&hs.victim_tid))
			sched_yield();
		/* The second sleep is a long one (the probe ran out). */
		until_asleep(&hs.victim_begins, 2, atomic_load(&hs.victim_tid));
		ck_assert_int_eq(sleepers_registered(r, role), 1);

		atomic_store(&hs.watch, true);
		ck_assert_uint_eq(atomic_exchange(&m.q->sleepers, 0), 1);
		give(peer, role, 1, 30);
		bumped = rbus_now();
		atomic_fetch_add(&m.q->seq, 1);

		ck_assert_int_eq(pthread_join(tv, NULL), 0);
		ck_assert_rbus(v.result, role == RBUS_CONSUMER ? 1 : 0);
		if (role == RBUS_CONSUMER)
			ck_assert_int_eq(v.byte, 30);
		tokens = drain_tokens(sleepers_efd(r, role));
		registered = sleepers_registered(r, role);
		expired = atomic_load(&hs.victim_expired);
		until = atomic_load(&hs.victim_until);
		probe = atomic_load(&hs.victim_probe);

		rbus_channel_close(v.ch);
		rbus_channel_close(peer);
		munmap(m.base, m.size);
		rbus_region_close(r);
		/* A probe that ran out is within the bound by design: this
		 * process has no membarrier(2), so it never sleeps long. */
		if (!expired || probe) {
			/* No wake was made, and the victim took its unit
			 * without registering again. */
			ck_assert_int_eq(tokens, 0);
			ck_assert_int_eq(registered, 0);
			return;
		}
		ck_assert_msg(until - bumped <= 10000000,
			      "the robbed sleeper slept until its timer ran out "
			      "(%.3f s after the bump)", (double)(until - bumped) / 1e9);
	}
	ck_abort_msg("5 rounds ended at the victim's 1 s cap within a slice of the bump; "
		     "none could tell");
}
END_TEST

/* ---- a sliced sleep that runs out ------------------------------------------ */

/* Move the clock to the sleep's deadline at its first look at it (jump_at
 * 0) or at a look after a slice (1), once; then the sleep hook records how
 * that sleep ended. */
static int jump_at;
static _Atomic bool jumped;
static _Atomic int jump_end;    /* the event that ended it; -1: none yet */

static void slice_jump(bool sliced, int64_t deadline, int64_t *now)
{
	if (sliced != (jump_at == 1))
		return;
	rbus_test_slice = NULL;
	*now = deadline;
	atomic_store(&jumped, true);
}

static void jump_sleep_hook(enum rbus_sleep_event ev, int64_t until, bool probe)
{
	(void)until, (void)probe;
	if (ev != RBUS_SLEEP_BEGIN && atomic_load(&jumped) && atomic_load(&jump_end) < 0)
		atomic_store(&jump_end, (int)ev);
}

/*
 * An MPMC eventfd sleep polls in slices.  A deadline found passed at its
 * first look was not run out by its timer (a token may be waiting: WOKEN
 * to the sleep hook, which the stress engine's stall rule reads), but one
 * found passed after a slice was: EXPIRED.  A slice that overshoots the
 * deadline cannot be forced, so the slice hook moves the clock to the
 * deadline at either look.  Before 43cd87b the second case said WOKEN
 * too.  (Long sleeps, which membarrier(2) allows, are what get sliced: a
 * probe's 10 ms is one slice.)
 */
START_TEST(sliced_sleep_run_out)
{
	struct rbus_region *r = make_mpmc_eventfd(8);
	struct rbus_channel *c = open_ch(r, RBUS_CONSUMER);
	struct rbus_channel *p = open_ch(r, RBUS_PRODUCER);
	char buf[16];
	int end;

	ck_assert(c->shared_tokens);
	rbus_test_sleep = jump_sleep_hook;
	for (jump_at = 0; jump_at < 2; jump_at++) {
		atomic_store(&jumped, false);
		atomic_store(&jump_end, -1);
		rbus_test_slice = slice_jump;
		ck_assert_rbus(rbus_recv_wait(c, buf, sizeof(buf),
					      rbus_deadline_in(INT64_C(200000000))), -ETIMEDOUT);
		rbus_test_slice = NULL;
		ck_assert_msg(atomic_load(&jumped), "no sleep looked at its deadline %s",
			      jump_at ? "after a slice (no long sleep: membarrier?)" : "");
		end = atomic_load(&jump_end);
		ck_assert_int_eq(end, jump_at ? RBUS_SLEEP_EXPIRED : RBUS_SLEEP_WOKEN);
	}
	rbus_channel_close(p);
	rbus_channel_close(c);
	rbus_region_close(r);
}
END_TEST

static Suite *race_suite(void)
{
	Suite *s = suite_create("wait_race");
	TCase *tc = tcase_create("stolen_tokens");

	tcase_add_checked_fixture(tc, hooks_setup, hooks_teardown);
	tcase_set_timeout(tc, 30);
	/* Loop index: 0 consumers sleep, 1 producers sleep. */
	tcase_add_loop_test(tc, stolen_token, 0, 2);
	tcase_add_loop_test(tc, taken_while_polling, 0, 2);
	tcase_add_test(tc, sliced_sleep_run_out);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(race_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
