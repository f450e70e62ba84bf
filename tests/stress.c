/* SPDX-License-Identifier: MIT */
/*
 * stress.c - producers and consumers in separate processes exchanging
 * verified messages through waiting calls, with jitter injected at every
 * step of the sleep/wake handshake (the library's RBUS_JITTER points) and
 * bursts and pauses in the traffic, so that both sides keep going to sleep
 * and being woken at the worst moments.
 *
 * Messages: producer id, 64-bit sequence, the CLOCK_MONOTONIC time taken
 * just before the commit, and a check word over the three.  A consumer
 * checks each message, per-producer order (exact +1 when it is the only
 * consumer, strictly increasing otherwise), and marks it in a shared bitmap:
 * a second mark is a duplicate, a mark never made is a loss.
 *
 * Stalls.  Every wait has a timeout W.  A consumer stall is a wait that
 * ended at its deadline (timed out, or took a message only at the last
 * try) while a message committed before deadline - W/2 was there to take:
 * a working wakeup would have delivered it within the 10 ms probe.  A
 * producer stall is a wait for room that ran into W: consumers never pause
 * longer than a few milliseconds, so room was pending.  The threshold W/2
 * leaves room for scheduling delays of this machine, not for lost wakeups.
 */
#include "config.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "stress.h"

#define MSG_SIZE 32u
#define MAX_PROCS 16

struct msg {
	uint32_t producer;
	uint32_t check;
	uint64_t seq;
	int64_t t_commit;
	uint64_t pad;
};
_Static_assert(sizeof(struct msg) == MSG_SIZE, "message size");

static uint32_t msg_check(const struct msg *m)
{
	uint64_t x = m->seq * UINT64_C(0x9e3779b97f4a7c15) ^ (uint64_t)m->t_commit ^
		     ((uint64_t)m->producer << 40);

	x ^= x >> 29;
	x *= UINT64_C(0xbf58476d1ce4e5b9);
	return (uint32_t)(x ^ (x >> 32));
}

/* Shared by all the processes of a run (MAP_SHARED, inherited). */
struct shared {
	_Atomic unsigned ready, go;
	_Atomic unsigned prod_done;
	_Atomic bool stop;
	_Atomic uint64_t sent, received, duplicated, reordered, corrupt;
	_Atomic uint64_t stalls, timeouts, errors;
	_Atomic uint8_t seen[];      /* nprod * per_producer bits, as bytes */
};

/* ---- jitter ---------------------------------------------------------- */

static __thread uint64_t rng;
static int jitter_heavy;

static uint32_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng >> 16);
}

static void nap_ns(long ns)
{
	struct timespec ts = { .tv_sec = 0, .tv_nsec = ns };

	nanosleep(&ts, NULL);
}

static void spin_for(uint32_t n)
{
	for (volatile uint32_t i = 0; i < n; i++)
		;
}

/* The library calls this at each step of the handshake. */
static void jitter(enum rbus_jitter_point where)
{
	uint32_t r = rnd();

	if (jitter_heavy && (where == RBUS_J_SLEEPER_SEQ || where == RBUS_J_SLEEPER_REGISTER)) {
		if (r % 4 == 0)
			nap_ns(50000 + (long)(rnd() % 450000));
		return;
	}
	if (r % 64 == 0)
		spin_for(rnd() % 2000);
	else if (r % 256 == 1)
		sched_yield();
	else if (r % 2048 == 2)
		nap_ns(1000 + (long)(rnd() % 100000));
}

/* Bursts and pauses in the traffic: now and then, pause up to 1.5 ms. */
static void traffic_pause(void)
{
	uint32_t r = rnd();

	if (r % 1024 == 0)
		nap_ns((long)(rnd() % 1500000));
	else if (r % 128 == 1)
		sched_yield();
}

/* ---- processes ------------------------------------------------------- */

struct proc {
	const struct stress_cfg *cfg;
	struct shared *sh;
	struct rbus_region *r;
	unsigned id;
	int64_t t_end;           /* max_ns deadline, or RBUS_FOREVER */
};

static bool should_stop(const struct proc *p)
{
	/* Relaxed: a hint to end early; nothing is read through it. */
	return atomic_load_explicit(&p->sh->stop, memory_order_relaxed) ||
	       (p->t_end != RBUS_FOREVER && rbus_now() > p->t_end);
}

static void start_barrier(struct shared *sh, unsigned n)
{
	atomic_fetch_add(&sh->ready, 1);
	while (atomic_load(&sh->ready) < n)
		sched_yield();
}

static void stall(const struct proc *p)
{
	atomic_fetch_add(&p->sh->stalls, 1);
	if (p->cfg->stop_at_stall)
		atomic_store(&p->sh->stop, true);
}

static int producer(struct proc *p)
{
	const struct stress_cfg *cfg = p->cfg;
	struct rbus_channel *ch;
	uint64_t seq = 0;

	if (rbus_channel_open(p->r, RBUS_PRODUCER, 0, &ch))
		return 10;
	rbus_channel_set_spin(ch, rnd() % 2 ? 0 : RBUS_SPIN_DEFAULT_NS);
	start_barrier(p->sh, cfg->nprod + cfg->ncons);
	while (seq < cfg->per_producer && !should_stop(p)) {
		int64_t dl;
		void *buf;
		int err;

		traffic_pause();
		dl = rbus_now() + cfg->wait_ns;
		err = rbus_reserve_wait(ch, &buf, dl);
		if (err == -ETIMEDOUT) {
			atomic_fetch_add(&p->sh->timeouts, 1);
			stall(p);
			continue;
		}
		if (err) {
			atomic_fetch_add(&p->sh->errors, 1);
			break;
		}
		struct msg m = { .producer = p->id, .seq = seq, .t_commit = rbus_now() };

		m.check = msg_check(&m);
		memcpy(buf, &m, sizeof(m));
		if (rbus_commit(ch, sizeof(m))) {
			atomic_fetch_add(&p->sh->errors, 1);
			break;
		}
		seq++;
		/* Detector traffic: single messages, each followed by a pause,
		 * a quarter of them longer than W, so that a lost wakeup is
		 * not healed by the next message and shows as a stall. */
		if (cfg->heavy)
			nap_ns(rnd() % 4 ? 50000 + (long)(rnd() % 450000)
					 : (long)(cfg->wait_ns + cfg->wait_ns / 2));
	}
	atomic_fetch_add(&p->sh->sent, seq);
	rbus_channel_close(ch);
	atomic_fetch_add(&p->sh->prod_done, 1);
	return 0;
}

/* Check and record one message; late: the wait that produced it ended at
 * its deadline, which makes it a stall if the message was old by then. */
static void take(struct proc *p, const unsigned char *buf, ssize_t len, uint64_t *next,
		 int64_t late_dl)
{
	const struct stress_cfg *cfg = p->cfg;
	struct shared *sh = p->sh;
	struct msg m;

	if (len != (ssize_t)sizeof(m)) {
		atomic_fetch_add(&sh->corrupt, 1);
		return;
	}
	memcpy(&m, buf, sizeof(m));
	if (m.producer >= cfg->nprod || m.seq >= cfg->per_producer || m.check != msg_check(&m)) {
		atomic_fetch_add(&sh->corrupt, 1);
		return;
	}
	if (late_dl && m.t_commit < late_dl - cfg->wait_ns / 2)
		stall(p);
	if (cfg->ncons == 1 ? m.seq != next[m.producer] : m.seq < next[m.producer])
		atomic_fetch_add(&sh->reordered, 1);
	next[m.producer] = m.seq + 1;
	if (atomic_exchange(&sh->seen[m.producer * cfg->per_producer + m.seq], 1))
		atomic_fetch_add(&sh->duplicated, 1);
	atomic_fetch_add_explicit(&sh->received, 1, memory_order_relaxed);
}

static int consumer(struct proc *p)
{
	const struct stress_cfg *cfg = p->cfg;
	struct rbus_channel *ch;
	uint64_t next[MAX_PROCS] = { 0 };
	unsigned char buf[64];

	if (rbus_channel_open(p->r, RBUS_CONSUMER, 0, &ch))
		return 10;
	rbus_channel_set_spin(ch, rnd() % 2 ? 0 : RBUS_SPIN_DEFAULT_NS);
	start_barrier(p->sh, cfg->nprod + cfg->ncons);
	for (;;) {
		int64_t dl;
		ssize_t n;

		traffic_pause();
		dl = rbus_now() + cfg->wait_ns;
		n = rbus_recv_wait(ch, buf, sizeof(buf), dl);
		if (n >= 0) {
			take(p, buf, n, next, rbus_now() >= dl ? dl : 0);
			continue;
		}
		if (n == -ETIMEDOUT) {
			atomic_fetch_add(&p->sh->timeouts, 1);
			/* Was a message waiting all along?  Take it and see. */
			n = rbus_recv(ch, buf, sizeof(buf));
			if (n >= 0)
				take(p, buf, n, next, dl);
			else if (should_stop(p))
				break;
			continue;
		}
		if (n == -EPIPE)        /* every producer has closed */
			break;
		atomic_fetch_add(&p->sh->errors, 1);
		break;
	}
	rbus_channel_close(ch);
	return 0;
}

static int proc_main(struct proc *p, bool is_producer)
{
	rng = (uint64_t)p->cfg->seed * 0x9e3779b97f4a7c15u + (uint64_t)getpid() * 2654435761u + 1;
	jitter_heavy = p->cfg->heavy;
	rbus_test_jitter = jitter;
	return is_producer ? producer(p) : consumer(p);
}

int stress_run(const struct stress_cfg *cfg, struct stress_result *res)
{
	uint64_t total = (uint64_t)cfg->nprod * cfg->per_producer;
	size_t shsize = sizeof(struct shared) + total;
	struct rbus_region_opts o;
	struct rbus_wait_stats st;
	struct rbus_region *r;
	struct shared *sh;
	pid_t pids[2 * MAX_PROCS];
	unsigned n = 0;
	int64_t t0;
	int bad = 0;

	memset(res, 0, sizeof(*res));
	if (cfg->nprod == 0 || cfg->ncons == 0 || cfg->nprod > MAX_PROCS || cfg->ncons > MAX_PROCS)
		return -1;
	rbus_region_opts_init(&o);
	o.kind = cfg->kind;
	o.wakeup = cfg->wakeup;
	o.capacity = cfg->capacity;
	o.max_msg = MSG_SIZE;
	if (rbus_region_create(&o, &r))
		return -1;
	sh = mmap(NULL, shsize, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED) {
		rbus_region_close(r);
		return -1;
	}
	t0 = rbus_now();
	for (unsigned i = 0; i < cfg->nprod + cfg->ncons; i++) {
		bool prod = i < cfg->nprod;
		struct proc p = { .cfg = cfg, .sh = sh, .r = r, .id = prod ? i : i - cfg->nprod,
				  .t_end = cfg->max_ns ? t0 + cfg->max_ns : RBUS_FOREVER };
		pid_t pid = fork();

		if (pid == 0)
			_exit(proc_main(&p, prod));
		if (pid < 0) {
			bad = 1;
			break;
		}
		pids[n++] = pid;
	}
	for (unsigned i = 0; i < n; i++) {
		int status;

		if (waitpid(pids[i], &status, 0) != pids[i] || !WIFEXITED(status) ||
		    WEXITSTATUS(status))
			bad = 1;
	}
	res->elapsed_ns = rbus_now() - t0;
	res->sent = atomic_load(&sh->sent);
	res->received = atomic_load(&sh->received);
	res->duplicated = atomic_load(&sh->duplicated);
	res->reordered = atomic_load(&sh->reordered);
	res->corrupt = atomic_load(&sh->corrupt);
	res->stalls = atomic_load(&sh->stalls);
	res->timeouts = atomic_load(&sh->timeouts);
	res->errors = atomic_load(&sh->errors) + (uint64_t)bad;
	res->cut_short = res->sent < total;
	/* Lost: sent but never seen.  Producers send seq 0.. in order, so
	 * producer p sent exactly the sequence numbers below its count;
	 * those are recounted from the bitmap. */
	{
		uint64_t seen = 0;

		for (uint64_t i = 0; i < total; i++)
			seen += atomic_load_explicit(&sh->seen[i], memory_order_relaxed);
		res->lost = res->sent > seen ? res->sent - seen : 0;
	}
	rbus_region_wait_stats(r, &st);
	res->sleeps = st.data_sleeps + st.space_sleeps;
	res->wakes = st.data_wakes + st.space_wakes;
	res->blind = st.data_blind + st.space_blind;
	munmap(sh, shsize);
	rbus_region_close(r);
	return 0;
}

void stress_print(const char *name, const struct stress_cfg *cfg,
		  const struct stress_result *res)
{
	double s = (double)res->elapsed_ns / 1e9;

	printf("%s: %s %s %up%uc: sent %llu received %llu in %.2f s (%.0f msg/s); "
	       "sleeps %llu wakes %llu blind %llu timeouts %llu; stalls %llu lost %llu "
	       "dup %llu reordered %llu corrupt %llu errors %llu%s\n",
	       name, cfg->kind == RBUS_KIND_SPSC ? "SPSC" : "MPMC",
	       cfg->wakeup == RBUS_WAKE_EVENTFD ? "eventfd" : "futex", cfg->nprod, cfg->ncons,
	       (unsigned long long)res->sent, (unsigned long long)res->received, s,
	       s > 0 ? (double)res->received / s : 0.0, (unsigned long long)res->sleeps,
	       (unsigned long long)res->wakes, (unsigned long long)res->blind,
	       (unsigned long long)res->timeouts, (unsigned long long)res->stalls,
	       (unsigned long long)res->lost, (unsigned long long)res->duplicated,
	       (unsigned long long)res->reordered, (unsigned long long)res->corrupt,
	       (unsigned long long)res->errors, res->cut_short ? " (cut short)" : "");
	fflush(stdout);
}
