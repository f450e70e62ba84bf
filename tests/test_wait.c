/* SPDX-License-Identifier: MIT */
/*
 * test_wait.c - blocking and timed calls (include/ringbus/wait.h), across
 * processes, for both wakeup backends and both ring kinds.
 *
 * Synchronisation is by pipes and by watching the waiter itself: a test that
 * needs a process asleep waits until the region's sleep counter has moved
 * and /proc says the process is sleeping in the kernel.  Nothing here sleeps
 * to let another process get somewhere.  A lost wakeup shows as a hang,
 * which the tcase timeout turns into a failure.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

static int fds_at_setup;

static void fd_setup(void)
{
	fds_at_setup = th_count_fds();
}

static void fd_teardown(void)
{
	ck_assert_int_eq(th_count_fds(), fds_at_setup);
}

/* Loop index -> (kind, backend): the four combinations. */
static enum rbus_kind kind_of(int i) { return (i & 1) ? RBUS_KIND_MPMC : RBUS_KIND_SPSC; }
static uint32_t wake_of(int i) { return (i & 2) ? RBUS_WAKE_EVENTFD : RBUS_WAKE_FUTEX; }

static struct rbus_region *make(int combo, uint32_t capacity, uint64_t start)
{
	struct rbus_region_opts o;
	struct rbus_region *r = NULL;

	rbus_region_opts_init(&o);
	o.kind = kind_of(combo);
	o.wakeup = wake_of(combo);
	o.capacity = capacity;
	o.max_msg = 64;
	o.start_index = start;
	ck_assert_rbus(rbus_region_create(&o, &r), 0);
	return r;
}

static struct rbus_channel *open_ch(struct rbus_region *r, enum rbus_role role,
				    uint32_t flags, uint32_t spin)
{
	struct rbus_channel *ch = NULL;

	ck_assert_rbus(rbus_channel_open(r, role, flags, &ch), 0);
	ck_assert_rbus(rbus_channel_set_spin(ch, spin), 0);
	return ch;
}

static uint64_t sleeps(struct rbus_region *r, bool data)
{
	struct rbus_wait_stats st;

	rbus_region_wait_stats(r, &st);
	return data ? st.data_sleeps : st.space_sleeps;
}

/*
 * Wait until task tid of pid is asleep in a wait of ours: the queue's sleep
 * counter reached `min`, and the task is in state S.  Polls with
 * sched_yield(); the tcase timeout bounds it.
 */
static void until_asleep(struct rbus_region *r, bool data, uint64_t min, pid_t pid,
			 pid_t tid)
{
	for (;;) {
		if (sleeps(r, data) >= min && th_task_state(pid, tid) == 'S')
			return;
		sched_yield();
	}
}

/* A probe sleep (10 ms) comes first; the long sleep is the second. */
#define LONG_SLEEP 2

static int put_byte(int fd, unsigned char b) { return write(fd, &b, 1) == 1 ? 0 : -1; }
static int get_byte(int fd)
{
	unsigned char b;

	return read(fd, &b, 1) == 1 ? b : -1;
}

/* ======================================================================= */
/* Wakeups                                                                  */
/* ======================================================================= */

struct sleeper_arg {
	struct rbus_region *r;
	int report;              /* pipe: result bytes */
	uint32_t flags;
	int64_t rel_timeout;     /* < 0: RBUS_FOREVER */
	int count;               /* messages to take, then the final result */
};

/* A consumer that sleeps at once (spin 0) and reports each result. */
static int consumer_child(void *varg)
{
	struct sleeper_arg *a = varg;
	struct rbus_channel *c = NULL;
	unsigned char buf[64];

	if (rbus_channel_open(a->r, RBUS_CONSUMER, a->flags, &c) || rbus_channel_set_spin(c, 0))
		return 10;
	if (put_byte(a->report, 0))
		return 11;
	for (int i = 0; i <= a->count; i++) {
		int64_t dl = a->rel_timeout < 0 ? RBUS_FOREVER : rbus_deadline_in(a->rel_timeout);
		ssize_t n = rbus_recv_wait(c, buf, sizeof(buf), dl);

		/* One byte per result: the message's first byte, or 200 + errno. */
		if (put_byte(a->report, n >= 0 ? (n ? buf[0] : 0) : (unsigned char)(200 - n)))
			return 12;
		if (n < 0)
			break;
	}
	rbus_channel_close(c);
	return 0;
}

#define RESULT_ERR(e) (200 + (e))

/* A consumer asleep on an empty ring wakes for one message. */
START_TEST(consumer_wakes_for_one_message)
{
	struct rbus_region *r = make(_i, 16, 0);
	struct rbus_channel *p = open_ch(r, RBUS_PRODUCER, 0, 0);
	struct sleeper_arg a = { .r = r, .rel_timeout = -1, .count = 1 };
	struct rbus_wait_stats st;
	int rep[2];
	pid_t pid;

	ck_assert_int_eq(pipe(rep), 0);
	a.report = rep[1];
	pid = th_fork(consumer_child, &a);
	ck_assert_int_eq(get_byte(rep[0]), 0);
	until_asleep(r, true, LONG_SLEEP, pid, pid);
	ck_assert_rbus(rbus_send(p, "\x2a", 1), 0);
	ck_assert_int_eq(get_byte(rep[0]), 0x2a);
	rbus_region_wait_stats(r, &st);
	ck_assert_uint_ge(st.data_wakes, 1);
	/* Then the producer closes: the sleeping consumer gets -EPIPE.
	 * (Counts are cumulative: each wait from empty probes, then sleeps
	 * long; a spurious wake only adds.) */
	until_asleep(r, true, 2 * LONG_SLEEP, pid, pid);
	rbus_channel_close(p);
	ck_assert_int_eq(get_byte(rep[0]), RESULT_ERR(EPIPE));
	th_wait_ok(pid);
	close(rep[0]);
	close(rep[1]);
	rbus_region_close(r);
}
END_TEST

struct producer_arg {
	struct rbus_region *r;
	int report;
	int count;
};

static int producer_child(void *varg)
{
	struct producer_arg *a = varg;
	struct rbus_channel *p = NULL;

	if (rbus_channel_open(a->r, RBUS_PRODUCER, 0, &p) || rbus_channel_set_spin(p, 0))
		return 10;
	if (put_byte(a->report, 0))
		return 11;
	for (int i = 0; i <= a->count; i++) {
		unsigned char b = (unsigned char)(100 + i);
		int err = rbus_send_wait(p, &b, 1, RBUS_FOREVER);

		if (put_byte(a->report, err ? (unsigned char)(200 - err) : b))
			return 12;
		if (err)
			break;
	}
	rbus_channel_close(p);
	return 0;
}

/* A producer asleep on a full ring wakes when one slot frees. */
START_TEST(producer_wakes_for_one_slot)
{
	struct rbus_region *r = make(_i, 2, 0);
	struct rbus_channel *c = open_ch(r, RBUS_CONSUMER, 0, 0);
	struct producer_arg a = { .r = r, .count = 2 };
	unsigned char buf[64];
	int rep[2];
	pid_t pid;

	ck_assert_int_eq(pipe(rep), 0);
	a.report = rep[1];
	pid = th_fork(producer_child, &a);
	ck_assert_int_eq(get_byte(rep[0]), 0);
	/* Two sends fill the ring; the third sleeps. */
	ck_assert_int_eq(get_byte(rep[0]), 100);
	ck_assert_int_eq(get_byte(rep[0]), 101);
	until_asleep(r, false, LONG_SLEEP, pid, pid);
	ck_assert_rbus(rbus_recv(c, buf, sizeof(buf)), 1);
	ck_assert_int_eq(buf[0], 100);
	ck_assert_int_eq(get_byte(rep[0]), 102);
	/* The producer is done (count + 1 sends); drain, it has closed. */
	th_wait_ok(pid);
	ck_assert_rbus(rbus_recv(c, buf, sizeof(buf)), 1);
	ck_assert_rbus(rbus_recv(c, buf, sizeof(buf)), 1);
	ck_assert_int_eq(buf[0], 102);
	ck_assert_rbus(rbus_recv(c, buf, sizeof(buf)), -EPIPE);
	rbus_channel_close(c);
	close(rep[0]);
	close(rep[1]);
	rbus_region_close(r);
}
END_TEST

/* The consumer of producer_backs_off_full_ring: takes `count` messages
 * with the waiting call and checks that each carries the next index. */
struct backoff_arg {
	struct rbus_region *r;
	uint32_t count;
};

static int backoff_consumer(void *varg)
{
	struct backoff_arg *a = varg;
	struct rbus_channel *c = NULL;

	if (rbus_channel_open(a->r, RBUS_CONSUMER, 0, &c))
		return 10;
	for (uint32_t i = 0; i < a->count; i++) {
		uint32_t v = UINT32_MAX;
		ssize_t n = rbus_recv_wait(c, &v, sizeof(v), RBUS_FOREVER);

		if (n != (ssize_t)sizeof(v))
			return 11;
		if (v != i)
			return 12;
	}
	rbus_channel_close(c);
	return 0;
}

/*
 * A producer backs off a full ring while it spins (capacity 4096: 64 pauses
 * between tries, the most there is).  A timed send on a ring nobody empties
 * still ends at its deadline, never before it; and a producer that streams
 * into a full ring with the waiting call gets every message through, in
 * order, while a consumer in another process drains it.
 */
START_TEST(producer_backs_off_full_ring)
{
	const uint32_t cap = 4096, extra = 1024;
	struct rbus_region *r = make(_i, cap, 0);
	struct rbus_channel *p = open_ch(r, RBUS_PRODUCER, 0, RBUS_SPIN_DEFAULT_NS);
	struct backoff_arg a = { .r = r, .count = cap + extra };
	int64_t dl;
	pid_t pid;

	for (uint32_t i = 0; i < cap; i++)
		ck_assert_rbus(rbus_send(p, &i, sizeof(i)), 0);
	ck_assert_rbus(rbus_send(p, &cap, sizeof(cap)), -EAGAIN);
	/* Longer than the spin budget: spins backing off, then sleeps. */
	dl = rbus_deadline_in(2 * RBUS_SPIN_DEFAULT_NS);
	ck_assert_rbus(rbus_send_wait(p, &cap, sizeof(cap), dl), -ETIMEDOUT);
	ck_assert(rbus_now() >= dl);
	pid = th_fork(backoff_consumer, &a);
	/* A deadline, not RBUS_FOREVER: a consumer that failed and left
	 * without closing must fail the test here, not hang it. */
	dl = rbus_deadline_in(INT64_C(5000000000));
	for (uint32_t i = cap; i < cap + extra; i++)
		ck_assert_rbus(rbus_send_wait(p, &i, sizeof(i), dl), 0);
	th_wait_ok(pid);
	rbus_channel_close(p);
	rbus_region_close(r);
}
END_TEST

/* ======================================================================= */
/* Timeouts                                                                 */
/* ======================================================================= */

struct timed_arg {
	struct rbus_region *r;
	int64_t timeout;
	uint32_t spin;
	int64_t elapsed;         /* out, shared memory */
	int result;
};

static int timed_child(void *varg)
{
	struct timed_arg *a = varg;
	struct rbus_channel *c = NULL;
	unsigned char buf[64];
	int64_t t0, dl;

	if (rbus_channel_open(a->r, RBUS_CONSUMER, 0, &c) || rbus_channel_set_spin(c, a->spin))
		return 10;
	t0 = rbus_now();
	dl = t0 + a->timeout;
	a->result = (int)rbus_recv_wait(c, buf, sizeof(buf), dl);
	a->elapsed = rbus_now() - t0;
	/* Never before the deadline. */
	if (a->result == -ETIMEDOUT && rbus_now() < dl)
		return 13;
	rbus_channel_close(c);
	return 0;
}

/* A timed wait on an empty ring returns -ETIMEDOUT, never early; with and
 * without spinning, and with a timeout shorter than the spin budget. */
START_TEST(timeouts_never_early)
{
	static const struct { int64_t timeout; uint32_t spin; } cases[] = {
		{ 20000000, 0 }, { 20000000, RBUS_SPIN_DEFAULT_NS }, { 5000, 100000 },
		{ 12500000, 0 }, /* just past one probe */
	};
	struct rbus_region *r = make(_i, 16, 0);
	struct rbus_channel *p = open_ch(r, RBUS_PRODUCER, 0, 0);
	struct timed_arg *a = th_shared_alloc(sizeof(*a));

	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		a->r = r;
		a->timeout = cases[k].timeout;
		a->spin = cases[k].spin;
		th_wait_ok(th_fork(timed_child, a));
		ck_assert_msg(a->result == -ETIMEDOUT, "case %zu: %d (%s)", k, a->result,
			      rbus_errname(a->result));
		ck_assert_msg(a->elapsed >= cases[k].timeout, "case %zu: returned after "
			      "%lld ns, timeout %lld ns", k, (long long)a->elapsed,
			      (long long)cases[k].timeout);
	}
	th_shared_free(a, sizeof(*a));
	rbus_channel_close(p);
	rbus_region_close(r);
}
END_TEST

/* Deadlines: RBUS_NOWAIT tries once, a past deadline times out, < 0 is
 * invalid; every waiting form moves data when it can. */
START_TEST(deadline_edges)
{
	struct rbus_region *r = make(_i, 16, 0);
	struct rbus_channel *p = open_ch(r, RBUS_PRODUCER, 0, 0);
	struct rbus_channel *c = open_ch(r, RBUS_CONSUMER, 0, RBUS_SPIN_DEFAULT_NS);
	unsigned char buf[64];
	struct iovec v = { buf, sizeof(buf) };
	const void *pk;
	void *rs;

	ck_assert_rbus(rbus_recv_wait(c, buf, sizeof(buf), RBUS_NOWAIT), -EAGAIN);
	/* A deadline long past: one try, then a timeout. */
	ck_assert_rbus(rbus_recv_wait(c, buf, sizeof(buf), 1), -ETIMEDOUT);
	ck_assert_rbus(rbus_recv_wait(c, buf, sizeof(buf), -1), -EINVAL);
	ck_assert_rbus(rbus_peek_wait(c, &pk, RBUS_NOWAIT), -EAGAIN);
	ck_assert_rbus(rbus_recv_batch_wait(c, &v, 0, RBUS_FOREVER), -EINVAL);
	ck_assert_rbus(rbus_send_wait(c, buf, 1, RBUS_FOREVER), -EBADF);
	ck_assert_rbus(rbus_recv_wait(p, buf, 1, RBUS_FOREVER), -EBADF);
	ck_assert_int_ge(rbus_deadline_in(0), 0);
	ck_assert_int_eq(rbus_deadline_in(-1), RBUS_FOREVER);
	ck_assert_int_eq(rbus_deadline_in(INT64_MAX), RBUS_FOREVER);
	/* Every waiting form moves data when it can. */
	ck_assert_rbus(rbus_send_wait(p, "a", 1, RBUS_FOREVER), 0);
	ck_assert_rbus(rbus_reserve_wait(p, &rs, RBUS_FOREVER), 0);
	memcpy(rs, "b", 1);
	ck_assert_rbus(rbus_commit(p, 1), 0);
	v.iov_base = (void *)"c";
	v.iov_len = 1;
	ck_assert_rbus(rbus_send_batch_wait(p, &v, 1, RBUS_FOREVER), 1);
	ck_assert_rbus(rbus_reserve_batch_wait(p, &v, 1, RBUS_FOREVER), 1);
	memcpy(v.iov_base, "d", 1);
	v.iov_len = 1;
	ck_assert_rbus(rbus_commit_batch(p, &v, 1), 1);
	ck_assert_rbus(rbus_recv_wait(c, buf, sizeof(buf), RBUS_FOREVER), 1);
	ck_assert_int_eq(buf[0], 'a');
	ck_assert_rbus(rbus_peek_wait(c, &pk, RBUS_FOREVER), 1);
	ck_assert_int_eq(*(const char *)pk, 'b');
	ck_assert_rbus(rbus_release(c), 1);
	v = (struct iovec){ buf, sizeof(buf) };
	ck_assert_rbus(rbus_recv_batch_wait(c, &v, 1, RBUS_FOREVER), 1);
	ck_assert_int_eq(buf[0], 'c');
	ck_assert_rbus(rbus_peek_batch_wait(c, &v, 1, RBUS_FOREVER), 1);
	ck_assert_int_eq(*(const char *)v.iov_base, 'd');
	ck_assert_rbus(rbus_release(c), 1);
	ck_assert_rbus(rbus_channel_set_spin(c, RBUS_SPIN_MAX_NS + 1), -EINVAL);
	rbus_channel_close(p);
	rbus_channel_close(c);
	rbus_region_close(r);
}
END_TEST

/* ======================================================================= */
/* Shutdown                                                                 */
/* ======================================================================= */

#define NSLEEPERS 4

/* MPMC: every sleeping consumer wakes when the last producer closes; the
 * messages left are taken once each, then everyone gets -EPIPE. */
START_TEST(shutdown_wakes_every_consumer)
{
	int combo = _i | 1;     /* MPMC: several consumers */
	struct rbus_region *r = make(combo, 16, 0);
	struct rbus_channel *p = open_ch(r, RBUS_PRODUCER, 0, 0);
	struct rbus_channel *p2 = open_ch(r, RBUS_PRODUCER, 0, 0);
	struct sleeper_arg a[NSLEEPERS];
	pid_t pids[NSLEEPERS];
	int rep[NSLEEPERS][2], got = 0, pipes = 0;

	for (int i = 0; i < NSLEEPERS; i++) {
		ck_assert_int_eq(pipe(rep[i]), 0);
		a[i] = (struct sleeper_arg){ .r = r, .report = rep[i][1], .rel_timeout = -1,
					     .count = 3 };
		pids[i] = th_fork(consumer_child, &a[i]);
		ck_assert_int_eq(get_byte(rep[i][0]), 0);
	}
	for (int i = 0; i < NSLEEPERS; i++)
		until_asleep(r, true, (uint64_t)(i + 1) * LONG_SLEEP, pids[i], pids[i]);
	/* One producer leaving is no hang-up while another is attached. */
	rbus_channel_close(p2);
	ck_assert_rbus(rbus_send(p, "\x07", 1), 0);
	ck_assert_rbus(rbus_send(p, "\x07", 1), 0);
	rbus_channel_close(p);
	for (int i = 0; i < NSLEEPERS; i++) {
		int b;

		while ((b = get_byte(rep[i][0])) == 7)
			got++;
		ck_assert_int_eq(b, RESULT_ERR(EPIPE));
		pipes++;
		th_wait_ok(pids[i]);
		close(rep[i][0]);
		close(rep[i][1]);
	}
	ck_assert_int_eq(got, 2);
	ck_assert_int_eq(pipes, NSLEEPERS);
	rbus_region_close(r);
}
END_TEST

/* SPSC: the consumer drains what the closed producer left, then -EPIPE. */
START_TEST(shutdown_consumer_drains_first)
{
	struct rbus_region *r = make(_i & 2, 16, 0);
	struct rbus_channel *p = open_ch(r, RBUS_PRODUCER, 0, 0);
	struct sleeper_arg a = { .r = r, .rel_timeout = -1, .count = 5 };
	int rep[2];
	pid_t pid;

	ck_assert_int_eq(pipe(rep), 0);
	a.report = rep[1];
	for (unsigned char i = 1; i <= 3; i++)
		ck_assert_rbus(rbus_send(p, &i, 1), 0);
	rbus_channel_close(p);
	pid = th_fork(consumer_child, &a);
	ck_assert_int_eq(get_byte(rep[0]), 0);
	for (int i = 1; i <= 3; i++)
		ck_assert_int_eq(get_byte(rep[0]), i);
	ck_assert_int_eq(get_byte(rep[0]), RESULT_ERR(EPIPE));
	th_wait_ok(pid);
	close(rep[0]);
	close(rep[1]);
	rbus_region_close(r);
}
END_TEST

/* Producers asleep on a full ring get -EPIPE when the last consumer closes. */
START_TEST(shutdown_wakes_every_producer)
{
	int combo = _i | 1;
	struct rbus_region *r = make(combo, 2, 0);
	struct rbus_channel *c = open_ch(r, RBUS_CONSUMER, 0, 0);
	struct rbus_channel *p = open_ch(r, RBUS_PRODUCER, 0, 0);
	struct producer_arg a[NSLEEPERS];
	pid_t pids[NSLEEPERS];
	int rep[NSLEEPERS][2];

	ck_assert_rbus(rbus_send(p, "x", 1), 0);
	ck_assert_rbus(rbus_send(p, "x", 1), 0);
	rbus_channel_close(p);
	for (int i = 0; i < NSLEEPERS; i++) {
		ck_assert_int_eq(pipe(rep[i]), 0);
		a[i] = (struct producer_arg){ .r = r, .report = rep[i][1], .count = 0 };
		pids[i] = th_fork(producer_child, &a[i]);
		ck_assert_int_eq(get_byte(rep[i][0]), 0);
	}
	for (int i = 0; i < NSLEEPERS; i++)
		until_asleep(r, false, (uint64_t)(i + 1) * LONG_SLEEP, pids[i], pids[i]);
	rbus_channel_close(c);
	for (int i = 0; i < NSLEEPERS; i++) {
		ck_assert_int_eq(get_byte(rep[i][0]), RESULT_ERR(EPIPE));
		th_wait_ok(pids[i]);
		close(rep[i][0]);
		close(rep[i][1]);
	}
	rbus_region_close(r);
}
END_TEST

/* ======================================================================= */
/* Signals                                                                  */
/* ======================================================================= */

/* The handler tells the parent it ran, through a non-blocking pipe (a
 * storm of signals must not block in it). */
static int sig_pipe[2] = { -1, -1 };

static void on_usr1(int sig)
{
	unsigned char b = (unsigned char)sig;

	if (write(sig_pipe[1], &b, 1) < 0) {
		/* full: the parent has enough to go on */
	}
}

static void uninstall_usr1(void)
{
	signal(SIGUSR1, SIG_DFL);
	close(sig_pipe[0]);
	close(sig_pipe[1]);
	sig_pipe[0] = sig_pipe[1] = -1;
}

static void install_usr1(bool restart)
{
	struct sigaction sa;

	if (sig_pipe[0] < 0) {
		ck_assert_int_eq(pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK), 0);
		/* The parent reads it blocking. */
		ck_assert_int_eq(fcntl(sig_pipe[0], F_SETFL, 0), 0);
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sa.sa_flags = restart ? SA_RESTART : 0;
	sigemptyset(&sa.sa_mask);
	ck_assert_int_eq(sigaction(SIGUSR1, &sa, NULL), 0);
}

/* Without RBUS_CHANNEL_EINTR a signal never ends a wait (with or without
 * SA_RESTART); with it, a sleeping wait returns -EINTR. */
START_TEST(signals)
{
	struct rbus_region *r = make(_i, 16, 0);
	struct rbus_channel *p = open_ch(r, RBUS_PRODUCER, 0, 0);
	int rep[2];

	ck_assert_int_eq(pipe(rep), 0);
	for (int mode = 0; mode < 3; mode++) {
		struct sleeper_arg a = { .r = r, .report = rep[1], .rel_timeout = -1,
					 .count = 1, .flags = mode == 2 ? RBUS_CHANNEL_EINTR : 0 };
		uint64_t before = sleeps(r, true);
		pid_t pid;

		install_usr1(mode == 1);
		pid = th_fork(consumer_child, &a);
		ck_assert_int_eq(get_byte(rep[0]), 0);
		until_asleep(r, true, before + LONG_SLEEP, pid, pid);
		ck_assert_int_eq(kill(pid, SIGUSR1), 0);
		if (mode == 2) {
			ck_assert_int_eq(get_byte(rep[0]), RESULT_ERR(EINTR));
		} else {
			/* The handler ran, and the wait went on: asleep again
			 * (with SA_RESTART the futex wait restarts inside the
			 * kernel, so the sleep count need not move). */
			ck_assert_int_eq(get_byte(sig_pipe[0]), SIGUSR1);
			until_asleep(r, true, before + LONG_SLEEP, pid, pid);
			ck_assert_int_eq(kill(pid, SIGUSR1), 0);
			ck_assert_int_eq(get_byte(sig_pipe[0]), SIGUSR1);
			until_asleep(r, true, before + LONG_SLEEP, pid, pid);
			ck_assert_rbus(rbus_send(p, "\x33", 1), 0);
			ck_assert_int_eq(get_byte(rep[0]), 0x33);
			/* The second wait: end it with a message too. */
			ck_assert_rbus(rbus_send(p, "\x34", 1), 0);
			ck_assert_int_eq(get_byte(rep[0]), 0x34);
		}
		th_wait_ok(pid);
	}
	uninstall_usr1();
	close(rep[0]);
	close(rep[1]);
	rbus_channel_close(p);
	rbus_region_close(r);
}
END_TEST

/* A timed wait under a storm of signals keeps its deadline. */
START_TEST(signal_storm_keeps_deadline)
{
	struct rbus_region *r = make(_i, 16, 0);
	struct rbus_channel *p = open_ch(r, RBUS_PRODUCER, 0, 0);
	struct timed_arg *a = th_shared_alloc(sizeof(*a));
	pid_t pid;
	int status;

	install_usr1(false);
	a->r = r;
	a->timeout = 30000000;
	a->spin = 0;
	pid = th_fork(timed_child, a);
	/* Signal it until it exits; it must not return early. */
	while (waitpid(pid, &status, WNOHANG) == 0) {
		kill(pid, SIGUSR1);
		sched_yield();
	}
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	ck_assert_rbus(a->result, -ETIMEDOUT);
	ck_assert_int_ge(a->elapsed, a->timeout);
	uninstall_usr1();
	th_shared_free(a, sizeof(*a));
	rbus_channel_close(p);
	rbus_region_close(r);
}
END_TEST

/* ======================================================================= */
/* Closing a handle another thread waits on                                 */
/* ======================================================================= */

struct closer {
	struct rbus_channel *c;
	_Atomic pid_t tid;
	ssize_t result;
};

static void *waiting_thread(void *arg)
{
	struct closer *x = arg;
	unsigned char buf[64];

	atomic_store(&x->tid, (pid_t)syscall(SYS_gettid));
	x->result = rbus_recv_wait(x->c, buf, sizeof(buf), RBUS_FOREVER);
	return NULL;
}

START_TEST(close_while_waiting)
{
	struct rbus_region *r = make(_i, 16, 0);
	struct rbus_channel *p = open_ch(r, RBUS_PRODUCER, 0, 0);
	struct closer x = { .c = open_ch(r, RBUS_CONSUMER, 0, 0) };
	struct rbus_region_info info;
	pthread_t t;

	ck_assert_int_eq(pthread_create(&t, NULL, waiting_thread, &x), 0);
	while (!atomic_load(&x.tid))
		sched_yield();
	until_asleep(r, true, LONG_SLEEP, getpid(), atomic_load(&x.tid));
	rbus_channel_close(x.c);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_rbus(x.result, -ECANCELED);
	/* The role was given back. */
	rbus_region_info(r, &info);
	ck_assert_uint_eq(info.consumers, 0);
	rbus_channel_close(p);
	rbus_region_close(r);
}
END_TEST

/* ======================================================================= */
/* No needless system calls; futex word wrap                                */
/* ======================================================================= */

/* While nobody waits, nobody wakes: 10^5 messages moved by non-blocking
 * calls across processes make no wake system call. */
static int busy_consumer(void *varg)
{
	struct rbus_region *r = varg;
	struct rbus_channel *c = NULL;
	unsigned char buf[64];
	uint64_t got = 0;
	ssize_t n;

	if (rbus_channel_open(r, RBUS_CONSUMER, 0, &c))
		return 10;
	while ((n = rbus_recv(c, buf, sizeof(buf))) != -EPIPE) {
		if (n >= 0 && (n != 8 || memcmp(buf, &got, 8)))
			return 11;
		got += n >= 0;
	}
	rbus_channel_close(c);
	return got == 100000 ? 0 : 12;
}

START_TEST(no_syscalls_while_awake)
{
	struct rbus_region *r = make(_i, 64, 0);
	struct rbus_channel *p = open_ch(r, RBUS_PRODUCER, 0, 0);
	struct rbus_wait_stats st;
	pid_t pid = th_fork(busy_consumer, r);

	for (uint64_t i = 0; i < 100000;) {
		int err = rbus_send(p, &i, 8);

		ck_assert(err == 0 || err == -EAGAIN);
		if (!err)
			i++;
		else
			sched_yield();
	}
	rbus_channel_close(p);
	th_wait_ok(pid);
	rbus_region_wait_stats(r, &st);
	ck_assert_uint_eq(st.data_wakes + st.space_wakes, 0);
	ck_assert_uint_eq(st.data_sleeps + st.space_sleeps, 0);
	rbus_region_close(r);
}
END_TEST

/* Ping-pong with a sleeping consumer across the futex word's wrap: the
 * words start at the low half of start_index (2^32 - 3). */
START_TEST(futex_word_wrap)
{
	struct rbus_region *r = make(_i, 16, UINT64_C(0x100000000) - 3);
	struct rbus_channel *p = open_ch(r, RBUS_PRODUCER, 0, 0);
	struct sleeper_arg a = { .r = r, .rel_timeout = -1, .count = 8 };
	struct rbus_wait_stats st;
	int rep[2];
	pid_t pid;

	ck_assert_int_eq(pipe(rep), 0);
	a.report = rep[1];
	pid = th_fork(consumer_child, &a);
	ck_assert_int_eq(get_byte(rep[0]), 0);
	for (unsigned char i = 1; i <= 8; i++) {
		/* In its long sleep: only a wake can end it. */
		until_asleep(r, true, i * LONG_SLEEP, pid, pid);
		ck_assert_rbus(rbus_send(p, &i, 1), 0);
		ck_assert_int_eq(get_byte(rep[0]), i);
	}
	rbus_region_wait_stats(r, &st);
	/* At least 4 wakes happened, so the word crossed 2^32 -> 0. */
	ck_assert_uint_ge(st.data_wakes, 4);
	rbus_channel_close(p);
	ck_assert_int_eq(get_byte(rep[0]), RESULT_ERR(EPIPE));
	th_wait_ok(pid);
	close(rep[0]);
	close(rep[1]);
	rbus_region_close(r);
}
END_TEST

/* ======================================================================= */
/* The eventfd backend in an epoll loop                                     */
/* ======================================================================= */

#define EPOLL_N 20000

static int burst_producer(void *varg)
{
	struct rbus_region *r = varg;
	struct rbus_channel *p = NULL;

	if (rbus_channel_open(r, RBUS_PRODUCER, 0, &p))
		return 10;
	for (uint32_t i = 0; i < EPOLL_N; i++) {
		if (rbus_send_wait(p, &i, 4, RBUS_FOREVER))
			return 11;
		/* Pauses now and then, so the consumer empties the ring and
		 * goes back to epoll_wait. */
		if (i % 1000 == 999)
			sched_yield();
	}
	rbus_channel_close(p);
	return 0;
}

START_TEST(epoll_consumer)
{
	struct rbus_region *r = make(2 | (_i & 1), 64, 0);
	struct rbus_channel *c = open_ch(r, RBUS_CONSUMER, 0, 0);
	struct epoll_event ev = { .events = EPOLLIN | (_i & 2 ? EPOLLET : 0) };
	uint32_t next = 0, buf[16];
	int ep = epoll_create1(EPOLL_CLOEXEC), fd = rbus_channel_fd(c);
	pid_t pid;

	ck_assert_int_ge(ep, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev), 0);
	pid = th_fork(burst_producer, r);
	for (;;) {
		ssize_t n;

		do {
			while ((n = rbus_recv(c, buf, sizeof(buf))) >= 0) {
				ck_assert_int_eq(n, 4);
				ck_assert_uint_eq(buf[0], next);
				next++;
			}
		} while (n == -EAGAIN && rbus_channel_arm(c) > 0);
		if (n == -EPIPE)
			break;
		ck_assert_rbus(n, -EAGAIN);
		/* Armed: the fd will say when to look again. */
		ck_assert_int_eq(epoll_wait(ep, &ev, 1, -1), 1);
	}
	ck_assert_uint_eq(next, EPOLL_N);
	th_wait_ok(pid);
	close(ep);
	rbus_channel_close(c);
	rbus_region_close(r);
	/* The futex backend has no fd to poll. */
	r = make(0, 16, 0);
	c = open_ch(r, RBUS_CONSUMER, 0, 0);
	ck_assert_rbus(rbus_channel_fd(c), -EOPNOTSUPP);
	ck_assert_rbus(rbus_channel_arm(c), -EOPNOTSUPP);
	rbus_channel_close(c);
	rbus_region_close(r);
}
END_TEST

/* Eventfd regions travel with their eventfds; attach checks them. */
START_TEST(eventfd_attach)
{
	struct rbus_region *r = make(2, 16, 0), *x = NULL;
	int fds[3], bad[3];

	ck_assert_int_eq(rbus_region_fds(r, fds, 3), 3);
	ck_assert_rbus(rbus_region_attach_fd(fds[0], 0, &x), -EINVAL);
	ck_assert_rbus(rbus_region_attach_fds(fds, 2, 0, &x), -EINVAL);
	memcpy(bad, fds, sizeof(bad));
	bad[2] = fds[0];        /* not an eventfd */
	ck_assert_rbus(rbus_region_attach_fds(bad, 3, 0, &x), -EINVAL);
	ck_assert_ptr_null(x);
	ck_assert_rbus(rbus_region_attach_fds(fds, 3, 0, &x), 0);
	rbus_region_close(x);
	/* An eventfd not in semaphore mode is refused where the kernel says
	 * (fdinfo "eventfd-semaphore:", Linux 6.5); a blocking one in
	 * semaphore mode is accepted and made non-blocking, so arming never
	 * blocks in read(). */
	{
		bool says = false;
		char path[64], line[128];
		FILE *f;

		bad[2] = eventfd(0, EFD_CLOEXEC);
		ck_assert_int_ge(bad[2], 0);
		snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", bad[2]);
		f = fopen(path, "re");
		ck_assert_ptr_nonnull(f);
		while (fgets(line, sizeof(line), f))
			says |= strncmp(line, "eventfd-semaphore:", 18) == 0;
		fclose(f);
		if (says)
			ck_assert_rbus(rbus_region_attach_fds(bad, 3, 0, &x), -EINVAL);
		close(bad[2]);
		bad[2] = eventfd(0, EFD_CLOEXEC | EFD_SEMAPHORE);
		ck_assert_rbus(rbus_region_attach_fds(bad, 3, 0, &x), 0);
		ck_assert_int_ne(fcntl(bad[2], F_GETFL) & O_NONBLOCK, 0);
		{
			struct rbus_channel *p = open_ch(x, RBUS_PRODUCER, 0, 0);

			ck_assert_rbus(rbus_channel_arm(p), 1);  /* room: no block */
			rbus_channel_close(p);
		}
		rbus_region_close(x);
		close(bad[2]);
	}
	rbus_region_close(r);
	/* A futex region has one fd. */
	r = make(0, 16, 0);
	ck_assert_int_eq(rbus_region_fds(r, fds, 3), 1);
	ck_assert_rbus(rbus_region_attach_fds(fds, 3, 0, &x), -EINVAL);
	rbus_region_close(r);
}
END_TEST

static TCase *add_tcase(Suite *s, const char *name, double timeout)
{
	TCase *tc = tcase_create(name);

	tcase_add_checked_fixture(tc, fd_setup, fd_teardown);
	tcase_set_timeout(tc, timeout);
	suite_add_tcase(s, tc);
	return tc;
}

static Suite *wait_suite(void)
{
	Suite *s = suite_create("wait");
	TCase *tc;

	/* Loop index 0..3: kind and backend (kind_of(), wake_of()). */
	tc = add_tcase(s, "wakeups", 30);
	tcase_add_loop_test(tc, consumer_wakes_for_one_message, 0, 4);
	tcase_add_loop_test(tc, producer_wakes_for_one_slot, 0, 4);
	tcase_add_loop_test(tc, producer_backs_off_full_ring, 0, 4);
	tcase_add_loop_test(tc, futex_word_wrap, 0, 4);
	tcase_add_loop_test(tc, no_syscalls_while_awake, 0, 4);
	tc = add_tcase(s, "timeouts", 30);
	tcase_add_loop_test(tc, timeouts_never_early, 0, 4);
	tcase_add_loop_test(tc, deadline_edges, 0, 4);
	tc = add_tcase(s, "shutdown", 30);
	tcase_add_loop_test(tc, shutdown_wakes_every_consumer, 0, 4);
	tcase_add_loop_test(tc, shutdown_consumer_drains_first, 0, 4);
	tcase_add_loop_test(tc, shutdown_wakes_every_producer, 0, 4);
	tcase_add_loop_test(tc, close_while_waiting, 0, 4);
	tc = add_tcase(s, "signals", 30);
	tcase_add_loop_test(tc, signals, 0, 4);
	tcase_add_loop_test(tc, signal_storm_keeps_deadline, 0, 4);
	tc = add_tcase(s, "eventfd", 60);
	tcase_add_loop_test(tc, epoll_consumer, 0, 4);
	tcase_add_test(tc, eventfd_attach);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(wait_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
