/* SPDX-License-Identifier: MIT */
/*
 * ringbus-bench - throughput, round trips and wakeups of libringbus, with
 * baselines (pipe, AF_UNIX stream socketpair, a bare shared cache line, bare
 * futex and eventfd ping-pongs) measured in the same run, and the
 * performance targets checked at the end.  The header it prints describes
 * the method, --help the options.  Exit status: 0 when everything ran (a
 * missed target is a FAIL line, not an error), 1 when something broke (a
 * failed call, a verification mismatch), 2 on bad usage.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ringbus.h>

#define BATCH       32
#define MAXPROC     4
#define RMAX        99
#define NSIZES      4
#define NVAL        5              /* values per figure */
#define WSIZE       64             /* message size of the wakeup tests */
#define PP_CAPACITY 1024u          /* slots of each ping-pong ring */
#define STREAM_BUF  (64u * 1024)   /* read() size of the stream consumers */
#define SEQ_BITS    48             /* message word: producer << 48 | seq */
#define SEQ_MASK    ((UINT64_C(1) << SEQ_BITS) - 1)
#define WATCHDOG_S  120            /* a child still running then dies */

static const size_t sizes[NSIZES] = { 8, 64, 1024, 65536 };
static const uint32_t capacities[NSIZES] = { 4096, 4096, 1024, 64 };

/* T_FUTEX, T_EVENTFD: the bare wakeup primitives (baselines). */
enum transport { T_PIPE, T_UNIX, T_SPSC, T_MPMC, T_LINE, T_FUTEX, T_EVENTFD };
enum mode { M_COPY, M_ZC };
/* What to run (--only): ring or baseline, throughput, round trips or
 * wakeups. */
enum { SEL_RING_TP = 1, SEL_BASE_TP = 2, SEL_RING_RT = 4, SEL_BASE_RT = 8,
       SEL_RING_WAKE = 16, SEL_BASE_WAKE = 32 };

static struct {
	int reps;
	bool quick;
	unsigned sel;                   /* SEL_* */
	uint64_t dur_ns;                /* streaming time per repetition */
	uint64_t rt_shm, rt_sys;        /* round trips: shared memory, syscalls */
	uint64_t idle_ns;               /* idle consumer: the measured window */
} opt;

/* ---- the tests -------------------------------------------------------- */

static const struct tcase {
	bool rtt;                       /* round trips, else throughput */
	enum transport tr;
	int np, nc;                     /* producers, consumers */
	enum mode mode;
	unsigned batch;                 /* 1 or BATCH; T_LINE: cache lines used */
	size_t size;                    /* 0: each of sizes[] */
} tcases[] = {
	{ 0, T_PIPE, 1, 1, M_COPY, 1, 0 },     { 0, T_UNIX, 1, 1, M_COPY, 1, 0 },
	{ 0, T_SPSC, 1, 1, M_COPY, 1, 0 },     { 0, T_SPSC, 1, 1, M_ZC, 1, 0 },
	{ 0, T_SPSC, 1, 1, M_COPY, BATCH, 0 }, { 0, T_SPSC, 1, 1, M_ZC, BATCH, 0 },
	{ 0, T_MPMC, 1, 1, M_COPY, 1, 0 },     { 0, T_MPMC, 1, 1, M_ZC, 1, 0 },
	{ 0, T_MPMC, 1, 1, M_COPY, BATCH, 0 }, { 0, T_MPMC, 1, 1, M_ZC, BATCH, 0 },
	{ 0, T_MPMC, 2, 2, M_COPY, 1, 0 },     { 0, T_MPMC, 2, 2, M_COPY, BATCH, 0 },
	{ 1, T_LINE, 1, 1, M_COPY, 2, 8 },     { 1, T_LINE, 1, 1, M_COPY, 1, 8 },
	{ 1, T_SPSC, 1, 1, M_COPY, 1, 8 },     { 1, T_SPSC, 1, 1, M_COPY, 1, 64 },
	{ 1, T_SPSC, 1, 1, M_ZC, 1, 64 },      { 1, T_MPMC, 1, 1, M_COPY, 1, 64 },
	{ 1, T_PIPE, 1, 1, M_COPY, 1, 64 },    { 1, T_UNIX, 1, 1, M_COPY, 1, 64 },
};
#define NTC (sizeof(tcases) / sizeof(tcases[0]))

/* Throughput: [0] msg/s, [1] messages per repetition.  Round trips: [0]
 * p50, [1] p99 in ns.  Each the median of the repetitions, and min, max.
 * (The wakeup tests use up to NVAL values, listed at wfigs.) */
static struct fig {
	bool ran;
	double med[NVAL], min[NVAL], max[NVAL];
} figs[NTC][NSIZES];

/*
 * The wakeup tests, all SPSC with WSIZE-byte messages and the waiting calls
 * (rbus_send_wait, rbus_recv_wait with RBUS_FOREVER): blocking round trips
 * with either backend, spinning by default or not at all, next to the bare
 * primitive of the backend and to busy polling; streaming, counting system
 * calls; and a consumer blocked on an empty ring, measuring its CPU time.
 * Their repetitions are interleaved (bench_wakeups()).
 */
enum wkind { W_RTT, W_STREAM, W_IDLE };
/* How a ring round trip waits: the waiting calls with the default spin or
 * with none, or busy polling with rbus_send / rbus_recv (the reference). */
enum wspin { S_DEFAULT, S_ZERO, S_POLL };

static const struct wcase {
	enum wkind kind;
	enum transport tr;              /* T_SPSC, or T_FUTEX / T_EVENTFD (bare) */
	uint32_t wakeup;                /* the backend: RBUS_WAKE_* */
	enum wspin spin;                /* rings; S_DEFAULT for the others */
} wcases[] = {
	{ W_RTT, T_SPSC, RBUS_WAKE_FUTEX, S_POLL },
	{ W_RTT, T_SPSC, RBUS_WAKE_FUTEX, S_DEFAULT },
	{ W_RTT, T_SPSC, RBUS_WAKE_FUTEX, S_ZERO },
	{ W_RTT, T_FUTEX, RBUS_WAKE_FUTEX, S_DEFAULT },
	{ W_RTT, T_SPSC, RBUS_WAKE_EVENTFD, S_DEFAULT },
	{ W_RTT, T_SPSC, RBUS_WAKE_EVENTFD, S_ZERO },
	{ W_RTT, T_EVENTFD, RBUS_WAKE_EVENTFD, S_DEFAULT },
	{ W_STREAM, T_SPSC, RBUS_WAKE_FUTEX, S_DEFAULT },
	{ W_STREAM, T_SPSC, RBUS_WAKE_EVENTFD, S_DEFAULT },
	{ W_IDLE, T_SPSC, RBUS_WAKE_FUTEX, S_DEFAULT },
	{ W_IDLE, T_SPSC, RBUS_WAKE_EVENTFD, S_DEFAULT },
};
#define NWC (sizeof(wcases) / sizeof(wcases[0]))

/* Round trips: [0] p50, [1] p99 in ns, [2] sleeps, [3] wake system calls
 * per round trip, [4] the pinger's CPU time in % of the time.  Streaming:
 * [0] msg/s, [1] wake system calls, [2] of which blind, [3] sleeps, each
 * per 1000 messages.  Idle: [0] CPU time in ms per 5 s, [1] sleeps in the
 * window. */
static struct fig wfigs[NWC];

/* ---- shared control block (MAP_SHARED, inherited by every child) ------ */

static struct shctl {
	_Alignas(64) _Atomic int ready;         /* processes at the barrier */
	_Alignas(64) _Atomic int go;
	_Alignas(64) _Atomic int prod_done;     /* producers finished */
	_Atomic uint64_t total_sent;
	_Alignas(64) _Atomic uint64_t total_recv;
	/* The bare cache-line ping-pong: A's word ping, B's word pong in a
	 * 128-byte block of its own (2 lines), or pong1 on A's line (1 line). */
	_Alignas(128) _Atomic uint64_t ping;
	_Atomic uint64_t pong1;
	_Alignas(128) _Atomic uint64_t pong;
	/* The bare futex ping-pong: A's word and B's word, a line each. */
	_Alignas(128) _Atomic uint32_t fping;
	_Alignas(128) _Atomic uint32_t fpong;
	_Alignas(128) struct proc_res {         /* one per process */
		_Alignas(64) uint64_t t_start, t_end;   /* CLOCK_MONOTONIC ns */
		uint64_t count;         /* sent (producer), received (consumer) */
		uint64_t sum;           /* consumer: sum of sequence numbers */
		uint64_t sink;          /* sum of payload words read in place */
		double p50, p99;        /* pinger: round-trip percentiles, ns */
		/* Waiting calls, in the measured part: sleeps, wake system
		 * calls, blind wakes (pinger, producer, idle waker). */
		uint64_t waits[3];
		/* Idle waker: the consumer's CPU time in a window of
		 * wall_ns.  Pinger (wakeups): its own, over the timed rounds. */
		uint64_t cpu_ns, wall_ns;
		pid_t pid;              /* idle consumer: for its CPU clock */
	} res[MAXPROC];
} *shc;

/* One repetition of one test, as the children see it. */
struct run {
	char name[64];
	enum transport tr;
	enum mode mode;
	unsigned batch;
	size_t size;
	int np, nc;
	bool oversub;                   /* more processes than CPUs */
	bool block;                     /* rings: the waiting calls (ep.block) */
	bool nospin;                    /* rings: rbus_channel_set_spin(ch, 0) */
	uint32_t wakeup;                /* rings: backend, RBUS_WAKE_*; 0: default */
	uint64_t rounds, warm;          /* ping-pong */
	struct rbus_region *r[2];       /* ring A->B, ring B->A */
	int fd[4];                      /* A->B read, write; B->A read, write */
};
typedef int (*child_fn)(const struct run *ru, int idx);

/* ---- helpers ---------------------------------------------------------- */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* *ns = the CPU time (user + sys) on a process CPU clock; 0 or an errno.
 * Nanoseconds of scheduler time: /proc/PID/stat's ticks are too coarse. */
static int cpu_time(clockid_t clk, uint64_t *ns)
{
	struct timespec ts;

	*ns = 0;
	if (clock_gettime(clk, &ts) < 0)
		return errno;
	*ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	return 0;
}

#if defined(__x86_64__) || defined(__i386__)
static inline uint64_t ticks(void) { return __builtin_ia32_rdtsc(); }
static inline void cpu_relax(void) { __builtin_ia32_pause(); }
#else
static inline uint64_t ticks(void) { return now_ns(); }
static inline void cpu_relax(void) { }
#endif

static double ns_per_tick = 1.0;

static void calibrate_ticks(void)
{
	uint64_t t0 = now_ns(), c0 = ticks(), t1;

	while ((t1 = now_ns()) - t0 < 50000000u)
		;
	ns_per_tick = (double)(t1 - t0) / (double)(ticks() - c0);
}

static inline uint64_t get64(const void *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

static inline void put64(void *p, uint64_t v) { memcpy(p, &v, 8); }

/* Read every word of a message in place (a zero-copy consumer's work). */
static inline uint64_t touch(const void *p, size_t size)
{
	uint64_t x = 0;

	for (size_t i = 0; i < size; i += 8)
		x += get64((const unsigned char *)p + i);
	return x;
}

static unsigned char *alloc_buf(size_t n)
{
	unsigned char *b = aligned_alloc(64, (n + 63) & ~(size_t)63);

	for (size_t i = 0; b && i < n; i++)
		b[i] = (unsigned char)(i * 31 + 7);
	return b;
}

static bool is_ring(enum transport tr) { return tr == T_SPSC || tr == T_MPMC; }

/* write() or read() all n bytes: 0, or a negative errno (-EPIPE: EOF). */
static int xfer(int fd, unsigned char *b, size_t n, bool wr)
{
	for (ssize_t r; n; b += r, n -= (size_t)r)
		if ((r = wr ? write(fd, b, n) : read(fd, b, n)) <= 0) {
			if (r == 0 || errno != EINTR)
				return r ? -errno : -EPIPE;
			r = 0;
		}
	return 0;
}

/* Report a failure in a child; returns -1 for the child's exit path. */
static int cfail(const struct run *ru, const char *what, const char *why)
{
	fprintf(stderr, "ringbus-bench: %s: %s: %s\n", ru->name, what, why);
	return -1;
}

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Median, min and max of n values (n >= 1); sorts v. */
static double stats(double *v, int n, double *min, double *max)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_dbl);
	*min = v[0];
	*max = v[n - 1];
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Nearest-rank percentile p (0 < p <= 1) of n >= 1 sorted values. */
static double percentile(const double *sorted, uint64_t n, double p)
{
	uint64_t rank = (uint64_t)(p * (double)n + 0.999999);

	return sorted[rank < 1 ? 0 : rank > n ? n - 1 : rank - 1];
}

/* All processes of a run wait here for each other; returns the time. */
static uint64_t barrier(int n)
{
	if (atomic_fetch_add(&shc->ready, 1) + 1 == n)
		atomic_store_explicit(&shc->go, 1, memory_order_release);
	while (!atomic_load_explicit(&shc->go, memory_order_acquire))
		sched_yield();
	return now_ns();
}

/* Nothing to do (-EAGAIN): spin; with more processes than CPUs, let a
 * preempted peer have the CPU now and then. */
static inline void idle(bool oversub, unsigned *spins)
{
	if (oversub && (++*spins & 63) == 0)
		sched_yield();
	else
		cpu_relax();
}

/* Sleeps, wake system calls and blind wakes so far on the rings of ru, both
 * wait queues of each ring summed (rbus_region_wait_stats()). */
static void wait_counts(const struct run *ru, uint64_t c[3])
{
	struct rbus_wait_stats st;

	c[0] = c[1] = c[2] = 0;
	for (int i = 0; i < 2 && ru->r[i]; i++) {
		rbus_region_wait_stats(ru->r[i], &st);
		c[0] += st.data_sleeps + st.space_sleeps;
		c[1] += st.data_wakes + st.space_wakes;
		c[2] += st.data_blind + st.space_blind;
	}
}

/* Store what the rings of ru counted since wait_counts() gave c0. */
static void waits_since(const struct run *ru, const uint64_t c0[3], int idx)
{
	uint64_t c1[3];

	wait_counts(ru, c1);
	for (int i = 0; i < 3; i++)
		shc->res[idx].waits[i] = c1[i] - c0[i];
}

/* ---- one process's end of a ring, pipe or socket ---------------------- */

struct ep {
	struct rbus_channel *ch;        /* NULL: the stream fd */
	int fd;
	unsigned char *buf;             /* nb messages: source or destination */
	struct iovec iov[BATCH];        /* the messages of the last call */
	size_t size;
	unsigned nb;
	bool zc;
	/* rbus_send_wait / rbus_recv_wait with RBUS_FOREVER instead of
	 * rbus_send / rbus_recv (copy, one at a time only): never -EAGAIN. */
	bool block;
	const char *what;               /* the call that failed */
};

/* which: the index in run.fd; the ring is which / 2. */
static int ep_open(struct ep *e, const struct run *ru, int which, enum rbus_role role)
{
	int err;

	*e = (struct ep){ .fd = ru->fd[which], .size = ru->size, .nb = ru->batch,
			  .zc = ru->mode == M_ZC, .block = ru->block };
	if (is_ring(ru->tr) && (err = rbus_channel_open(ru->r[which / 2], role, 0, &e->ch)))
		return cfail(ru, "rbus_channel_open", rbus_strerror(err));
	if (e->ch && ru->nospin && (err = rbus_channel_set_spin(e->ch, 0)))
		return cfail(ru, "rbus_channel_set_spin", rbus_strerror(err));
	if (!(e->buf = alloc_buf(e->nb * e->size)))
		return cfail(ru, "malloc", strerror(ENOMEM));
	for (unsigned j = 0; j < e->nb; j++)
		e->iov[j] = (struct iovec){ e->buf + j * e->size, e->size };
	return 0;
}

static void ep_close(struct ep *e)
{
	rbus_channel_close(e->ch);
	free(e->buf);
}

static int ep_fail(const struct run *ru, const struct ep *e, int err)
{
	return cfail(ru, e->what, e->ch ? rbus_strerror(err) : strerror(-err));
}

/* Send up to nb messages whose first words are w, w + 1, ...  Returns how
 * many were sent, or a negative errno (-EAGAIN: the ring is full). */
static int ep_put(struct ep *e, uint64_t w)
{
	const bool one = e->nb == 1;
	void *p = NULL;
	int k, c;

	if (!e->zc) {
		for (unsigned j = 0; j < e->nb; j++)
			put64(e->buf + j * e->size, w + j);
		e->what = !e->ch ? "write" : !one ? "rbus_send_batch" :
			  e->block ? "rbus_send_wait" : "rbus_send";
		if (!e->ch)
			return (k = xfer(e->fd, e->buf, e->size, true)) ? k : 1;
		if (!one)
			return rbus_send_batch(e->ch, e->iov, e->nb);
		k = e->block ? rbus_send_wait(e->ch, e->buf, e->size, RBUS_FOREVER)
			     : rbus_send(e->ch, e->buf, e->size);
		return k ? k : 1;
	}
	e->what = one ? "rbus_reserve" : "rbus_reserve_batch";
	if ((k = one ? rbus_reserve(e->ch, &p) : rbus_reserve_batch(e->ch, e->iov, e->nb)) < 0)
		return k;
	if (one) {
		e->iov[0].iov_base = p;
		k = 1;
	}
	for (int j = 0; j < k; j++) {   /* write each message in place */
		if (e->size > 8)
			memcpy((char *)e->iov[j].iov_base + 8, e->buf + 8, e->size - 8);
		put64(e->iov[j].iov_base, w + (unsigned)j);
		e->iov[j].iov_len = e->size;
	}
	e->what = one ? "rbus_commit" : "rbus_commit_batch";
	c = one ? rbus_commit(e->ch, e->size) : rbus_commit_batch(e->ch, e->iov, (unsigned)k);
	return c < 0 ? c : k;
}

/* Take up to nb messages into iov[] (copied into buf, or in place).
 * Returns how many, or a negative errno (-EAGAIN: the ring is empty). */
static int ep_get(struct ep *e)
{
	const void *p = NULL;
	ssize_t n;

	if (!e->ch) {                   /* one whole message */
		e->what = "read";
		e->iov[0] = (struct iovec){ e->buf, e->size };
		return (n = xfer(e->fd, e->buf, e->size, false)) ? (int)n : 1;
	}
	if (e->nb > 1) {
		/* recv_batch sets iov_len to each message's length: the
		 * consumers fail on any length but size, so it stays size. */
		e->what = e->zc ? "rbus_peek_batch" : "rbus_recv_batch";
		return e->zc ? rbus_peek_batch(e->ch, e->iov, e->nb)
			     : rbus_recv_batch(e->ch, e->iov, e->nb);
	}
	e->what = e->zc ? "rbus_peek" : e->block ? "rbus_recv_wait" : "rbus_recv";
	n = e->zc ? rbus_peek(e->ch, &p) :
	    e->block ? rbus_recv_wait(e->ch, e->buf, e->size, RBUS_FOREVER) :
	    rbus_recv(e->ch, e->buf, e->size);
	e->iov[0] = (struct iovec){ e->zc ? (void *)p : e->buf, (size_t)n };
	return n < 0 ? (int)n : 1;
}

/* Give back what the last ep_get() peeked at (zero-copy only). */
static int ep_release(struct ep *e)
{
	int k = e->zc ? rbus_release(e->ch) : 0;

	e->what = "rbus_release";
	return k < 0 ? k : 0;
}

/* ---- throughput ------------------------------------------------------- */

/* Ring or stream (one write() per message; closing it ends the stream). */
static int producer(const struct run *ru, int idx)
{
	const unsigned check = ru->size >= 1024 ? 0 : 63;  /* clock every n+1 */
	uint64_t seq = 0, t0, deadline, w0[3];
	unsigned spins = 0, iter = 0;
	struct ep e;
	int k;

	if (!is_ring(ru->tr))
		close(ru->fd[0]);
	if (ep_open(&e, ru, 1, RBUS_PRODUCER))
		return -1;
	t0 = barrier(ru->np + ru->nc);
	deadline = t0 + opt.dur_ns;
	wait_counts(ru, w0);
	while ((++iter & check) || now_ns() < deadline) {
		if ((k = ep_put(&e, (uint64_t)idx << SEQ_BITS | seq)) == -EAGAIN)
			idle(ru->oversub, &spins);
		else if (k < 0)
			return ep_fail(ru, &e, k);
		else
			seq += (unsigned)k;
	}
	waits_since(ru, w0, idx);       /* before our close wakes the consumers */
	shc->res[idx].t_start = t0;
	shc->res[idx].count = seq;
	atomic_fetch_add(&shc->total_sent, seq);
	atomic_fetch_add_explicit(&shc->prod_done, 1, memory_order_release);
	ep_close(&e);
	if (!is_ring(ru->tr) && close(ru->fd[1]) < 0)
		return cfail(ru, "close", strerror(errno));
	return 0;
}

/* The ring is empty: are we done?  Yes once every producer has finished
 * and the consumers together have received what they sent. */
static bool drained(int np, uint64_t got, uint64_t *flushed)
{
	uint64_t sent, all;

	if (atomic_load_explicit(&shc->prod_done, memory_order_acquire) < np)
		return false;
	sent = atomic_load(&shc->total_sent);
	all = atomic_fetch_add(&shc->total_recv, got - *flushed) + (got - *flushed);
	*flushed = got;
	return all >= sent;             /* the parent compares the counts */
}

/*
 * A consumer checks every message: its length, and the sequence number in
 * its first word (+1 per message per producer with one consumer; strictly
 * increasing per producer with several).  It counts them and sums the
 * sequence numbers; the parent compares both with what was sent.
 */
static int ring_consumer(const struct run *ru, int idx)
{
	uint64_t next[MAXPROC] = { 0 }, expect = 0, got = 0, flushed = 0, sum = 0, sink = 0;
	unsigned spins = 0;
	struct ep e;
	int k;

	if (ep_open(&e, ru, 0, RBUS_CONSUMER))
		return -1;
	barrier(ru->np + ru->nc);
	/* -EPIPE: empty with no producer attached; the counts decide. */
	while ((k = ep_get(&e)) >= 0 || k == -EAGAIN || k == -EPIPE) {
		if (k < 0) {
			if (drained(ru->np, got, &flushed))
				break;
			idle(ru->oversub, &spins);
			continue;
		}
		for (int j = 0; j < k; j++) {
			uint64_t w = get64(e.iov[j].iov_base), p = w >> SEQ_BITS, s = w & SEQ_MASK;
			size_t len = e.iov[j].iov_len;
			bool ok = w == expect && len == ru->size;       /* the successor */

			if (!ok) {
				next[expect >> SEQ_BITS] = expect & SEQ_MASK;
				ok = len == ru->size && p < (uint64_t)ru->np &&
				     (ru->nc == 1 ? s == next[p] : s >= next[p]);
			}
			if (!ok) {
				fprintf(stderr, "ringbus-bench: %s: consumer %d: %zu bytes from "
					"producer %" PRIu64 " seq %" PRIu64 "; want %zu bytes, "
					"seq %s%" PRIu64 "\n", ru->name, idx, len, p, s, ru->size,
					ru->nc == 1 ? "" : ">= ", next[p % MAXPROC]);
				return -1;
			}
			expect = w + 1;
			sum += s;
			if (e.zc)
				sink += touch(e.iov[j].iov_base, ru->size);
		}
		got += (unsigned)k;
		if ((k = ep_release(&e)) < 0)
			break;
	}
	if (k < 0 && k != -EAGAIN && k != -EPIPE)
		return ep_fail(ru, &e, k);
	shc->res[idx] = (struct proc_res){ .t_end = now_ns(), .count = got, .sum = sum,
					   .sink = sink };
	ep_close(&e);
	return 0;
}

/* Reads what the stream has (up to 64 KiB per read()), then checks the
 * sequence word of every whole message in the buffer. */
static int stream_consumer(const struct run *ru, int idx)
{
	const size_t size = ru->size, cap = size > STREAM_BUF ? size : STREAM_BUF;
	unsigned char *buf = alloc_buf(cap);
	uint64_t seq = 0, sum = 0;
	size_t have = 0, off;
	ssize_t n;

	close(ru->fd[1]);
	if (!buf)
		return cfail(ru, "malloc", strerror(ENOMEM));
	barrier(2);
	while ((n = read(ru->fd[0], buf + have, cap - have)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return cfail(ru, "read", strerror(errno));
		have += (size_t)n;
		for (off = 0; have - off >= size; off += size, sum += seq++)
			if (get64(buf + off) != seq)
				return cfail(ru, "read", "sequence error");
		memmove(buf, buf + off, have - off);
		have -= off;
	}
	if (have)
		return cfail(ru, "read", "the stream ended inside a message");
	shc->res[idx] = (struct proc_res){ .t_end = now_ns(), .count = seq, .sum = sum };
	free(buf);
	return 0;
}

/* ---- round trips ------------------------------------------------------ */

/* ts[i] is the TSC at the start of round trip i, ts[rounds] at the end
 * (exact in a double up to 2^53 ticks). */
static void pp_report(double *ts, uint64_t rounds)
{
	for (uint64_t i = 0; i < rounds; i++)
		ts[i] = (ts[i + 1] - ts[i]) * ns_per_tick;
	qsort(ts, rounds, sizeof(*ts), cmp_dbl);
	shc->res[0].p50 = percentile(ts, rounds, 0.50);
	shc->res[0].p99 = percentile(ts, rounds, 0.99);
	free(ts);
}

/* The reference: A stores i in its word, B spins until it sees i and stores
 * i in its own word, A spins until it sees that.  Nothing else. */
static int line_pingpong(const struct run *ru, int idx)
{
	double *ts = idx ? NULL : calloc(ru->rounds + 1, sizeof(*ts));
	_Atomic uint64_t *pong = ru->batch == 1 ? &shc->pong1 : &shc->pong;

	if (!idx && !ts)
		return cfail(ru, "malloc", strerror(ENOMEM));
	barrier(2);
	for (uint64_t i = 1; i <= ru->warm + ru->rounds; i++) {
		if (idx == 0) {
			double t = (double)ticks();

			if (i > ru->warm)
				ts[i - 1 - ru->warm] = t;
			atomic_store_explicit(&shc->ping, i, memory_order_release);
			while (atomic_load_explicit(pong, memory_order_acquire) != i)
				cpu_relax();
		} else {
			while (atomic_load_explicit(&shc->ping, memory_order_acquire) != i)
				cpu_relax();
			atomic_store_explicit(pong, i, memory_order_release);
		}
	}
	if (idx == 0) {
		ts[ru->rounds] = (double)ticks();
		pp_report(ts, ru->rounds);
	}
	return 0;
}

static int send_wait(const struct run *ru, struct ep *e, uint64_t w)
{
	int k;

	while ((k = ep_put(e, w)) == -EAGAIN)
		cpu_relax();
	return k < 0 ? ep_fail(ru, e, k) : 0;
}

/* Rings (A->B, B->A; busy polling, or the waiting calls with ru->block) or
 * streams (blocking write() of the message, read() of the whole reply).
 * With ru->block the pinger counts the rings' sleeps and wakes and its own
 * CPU time after the warm-up. */
static int pingpong(const struct run *ru, int idx)
{
	double *ts = idx ? NULL : calloc(ru->rounds + 1, sizeof(*ts));
	uint64_t sink = 0, w0[3] = { 0 }, c0 = 0, c1 = 0, t0 = 0;
	struct ep tx, rx;
	int k;

	if (ep_open(&tx, ru, idx ? 3 : 1, RBUS_PRODUCER) ||
	    ep_open(&rx, ru, idx ? 0 : 2, RBUS_CONSUMER))
		return -1;
	if (!idx && !ts)
		return cfail(ru, "malloc", strerror(ENOMEM));
	barrier(2);
	for (uint64_t i = 0; i < ru->warm + ru->rounds; i++) {
		if (idx == 0) {
			double t;

			if (i == ru->warm && ru->block) {
				wait_counts(ru, w0);
				if ((k = cpu_time(CLOCK_PROCESS_CPUTIME_ID, &c0)))
					return cfail(ru, "clock_gettime", strerror(k));
				t0 = now_ns();
			}
			t = (double)ticks();
			if (i >= ru->warm)
				ts[i - ru->warm] = t;
			if (send_wait(ru, &tx, i))
				return -1;
		}
		while ((k = ep_get(&rx)) == -EAGAIN)
			cpu_relax();
		if (k < 0)
			return ep_fail(ru, &rx, k);
		if (rx.iov[0].iov_len != ru->size || get64(rx.iov[0].iov_base) != i)
			return cfail(ru, rx.what, "wrong message (length or sequence number)");
		if (rx.zc)
			sink += touch(rx.iov[0].iov_base, ru->size);
		if ((k = ep_release(&rx)) < 0)
			return ep_fail(ru, &rx, k);
		if (idx == 1 && send_wait(ru, &tx, i))
			return -1;
	}
	if (idx == 0) {
		ts[ru->rounds] = (double)ticks();
		if (ru->block) {
			if ((k = cpu_time(CLOCK_PROCESS_CPUTIME_ID, &c1)))
				return cfail(ru, "clock_gettime", strerror(k));
			shc->res[0].cpu_ns = c1 - c0;
			shc->res[0].wall_ns = now_ns() - t0;
			waits_since(ru, w0, 0);
		}
		pp_report(ts, ru->rounds);
	}
	shc->res[idx].sink = sink;
	ep_close(&tx);
	ep_close(&rx);
	return 0;
}

/* ---- wakeups ---------------------------------------------------------- */

/* The rings' wakeup tests reuse pingpong(), producer() and ring_consumer()
 * with ru->block; here are the bare baselines and the idle consumer. */

static long futex(_Atomic uint32_t *word, int op, uint32_t val)
{
	return syscall(SYS_futex, word, op, val, NULL, NULL, 0);
}

/*
 * Bare baselines, one message: tell the peer that round trip i is here.
 * Futex: store i in our word and wake the peer, always (no waiter count);
 * the word is shared between processes, so no FUTEX_PRIVATE_FLAG.
 * Eventfd: write 1 to the eventfd towards the peer (fd[0] A->B, fd[2] B->A).
 */
static int bare_post(const struct run *ru, int idx, uint64_t i)
{
	const uint64_t one = 1;
	int k;

	if (ru->tr == T_FUTEX) {
		_Atomic uint32_t *w = idx ? &shc->fpong : &shc->fping;

		/* Release: pairs with the acquire load in the peer's
		 * bare_wait() (a payload would be published with it). */
		atomic_store_explicit(w, (uint32_t)i, memory_order_release);
		if (futex(w, FUTEX_WAKE, 1) < 0)
			return cfail(ru, "FUTEX_WAKE", strerror(errno));
		return 0;
	}
	if ((k = xfer(ru->fd[idx ? 2 : 0], (unsigned char *)&one, sizeof(one), true)))
		return cfail(ru, "write", strerror(-k));
	return 0;
}

/* ... and wait until the peer says round trip i is back (or here). */
static int bare_wait(const struct run *ru, int idx, uint64_t i)
{
	uint64_t n = 0;
	uint32_t v;
	int k;

	if (ru->tr == T_FUTEX) {
		_Atomic uint32_t *w = idx ? &shc->fping : &shc->fpong;

		/* Acquire: pairs with the release store in the peer's
		 * bare_post().  FUTEX_WAIT sleeps only while the word still
		 * holds v: EAGAIN means it moved, EINTR a signal; look again. */
		while ((v = atomic_load_explicit(w, memory_order_acquire)) != (uint32_t)i)
			if (futex(w, FUTEX_WAIT, v) < 0 && errno != EAGAIN && errno != EINTR)
				return cfail(ru, "FUTEX_WAIT", strerror(errno));
		return 0;
	}
	/* A blocking read takes the whole count, which is 1: one message is
	 * in flight at a time. */
	if ((k = xfer(ru->fd[idx ? 0 : 2], (unsigned char *)&n, sizeof(n), false)))
		return cfail(ru, "read", strerror(-k));
	if (n != 1)
		return cfail(ru, "read", "eventfd count is not 1");
	return 0;
}

/* The bare futex or eventfd ping-pong: A posts i and waits for B's i; B
 * waits for A's i and posts its own.  Nothing else.  The pinger measures
 * its CPU time after the warm-up, as pingpong() does. */
static int bare_pingpong(const struct run *ru, int idx)
{
	double *ts = idx ? NULL : calloc(ru->rounds + 1, sizeof(*ts));
	uint64_t c0 = 0, c1 = 0, t0 = 0;
	int k;

	if (!idx && !ts)
		return cfail(ru, "malloc", strerror(ENOMEM));
	barrier(2);
	for (uint64_t i = 1; i <= ru->warm + ru->rounds; i++) {
		if (idx == 0) {
			double t;

			if (i == ru->warm + 1) {
				if ((k = cpu_time(CLOCK_PROCESS_CPUTIME_ID, &c0)))
					return cfail(ru, "clock_gettime", strerror(k));
				t0 = now_ns();
			}
			t = (double)ticks();
			if (i > ru->warm)
				ts[i - 1 - ru->warm] = t;
			if (bare_post(ru, 0, i))
				return -1;
		}
		if (bare_wait(ru, idx, i) || (idx == 1 && bare_post(ru, 1, i)))
			return -1;
	}
	if (idx == 0) {
		ts[ru->rounds] = (double)ticks();
		if ((k = cpu_time(CLOCK_PROCESS_CPUTIME_ID, &c1)))
			return cfail(ru, "clock_gettime", strerror(k));
		shc->res[0].cpu_ns = c1 - c0;
		shc->res[0].wall_ns = now_ns() - t0;
		pp_report(ts, ru->rounds);
	}
	return 0;
}

/* The idle consumer: one rbus_recv_wait(RBUS_FOREVER) on an empty ring,
 * which the waker ends after its window by sending message 0. */
static int idle_consumer(const struct run *ru, int idx)
{
	struct ep e;
	int k;

	if (ep_open(&e, ru, 0, RBUS_CONSUMER))
		return -1;
	shc->res[idx].pid = getpid();   /* published by the barrier */
	barrier(2);
	if ((k = ep_get(&e)) < 0)
		return ep_fail(ru, &e, k);
	if (e.iov[0].iov_len != ru->size || get64(e.iov[0].iov_base) != 0)
		return cfail(ru, e.what, "wrong message (length or sequence number)");
	ep_close(&e);
	return 0;
}

/*
 * The idle waker: reads the consumer's CPU clock (clock_getcpuclockid(),
 * user + sys) at the start and the end of a window of opt.idle_ns in which
 * it sleeps, then wakes the consumer.
 */
static int idle_waker(const struct run *ru, int idx)
{
	uint64_t t0, t1, w0[3], c0, c1;
	struct timespec until;
	clockid_t clk;
	struct ep e;
	int k;

	if (ep_open(&e, ru, 1, RBUS_PRODUCER))
		return -1;
	barrier(2);
	if ((k = clock_getcpuclockid(shc->res[1].pid, &clk)))
		return cfail(ru, "clock_getcpuclockid", strerror(k));
	wait_counts(ru, w0);
	t0 = now_ns();
	if ((k = cpu_time(clk, &c0)))
		return cfail(ru, "clock_gettime", strerror(k));
	until = (struct timespec){ .tv_sec = (time_t)((t0 + opt.idle_ns) / 1000000000u),
				   .tv_nsec = (long)((t0 + opt.idle_ns) % 1000000000u) };
	while ((k = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL)) == EINTR)
		;
	if (k)
		return cfail(ru, "clock_nanosleep", strerror(k));
	if ((k = cpu_time(clk, &c1)))
		return cfail(ru, "clock_gettime", strerror(k));
	t1 = now_ns();
	waits_since(ru, w0, idx);
	shc->res[idx].cpu_ns = c1 - c0;
	shc->res[idx].wall_ns = t1 - t0;
	if ((k = ep_put(&e, 0)) < 0)
		return ep_fail(ru, &e, k);
	ep_close(&e);
	return 0;
}

/* ---- running a repetition in child processes -------------------------- */

static void close_fds(struct run *ru)
{
	for (int i = 0; i < 4; i++)
		if (ru->fd[i] >= 0)
			close(ru->fd[i]);
}

/* Create the rings (regions), pipes, socketpairs or eventfds of one
 * repetition: nrings of them, A->B then B->A.  An eventfd is both ends of
 * its direction: fd[0] A->B, fd[2] B->A. */
static int setup(struct run *ru, int nrings, uint32_t capacity)
{
	struct rbus_region_opts o;
	int err;

	ru->r[0] = ru->r[1] = NULL;
	ru->fd[0] = ru->fd[1] = ru->fd[2] = ru->fd[3] = -1;
	for (int i = 0; i < nrings && ru->tr != T_LINE && ru->tr != T_FUTEX; i++) {
		rbus_region_opts_init(&o);
		o.kind = ru->tr == T_SPSC ? RBUS_KIND_SPSC : RBUS_KIND_MPMC;
		o.capacity = capacity;
		o.max_msg = (uint32_t)ru->size;
		if (ru->wakeup)
			o.wakeup = ru->wakeup;
		if (ru->tr == T_EVENTFD)
			err = (ru->fd[2 * i] = eventfd(0, EFD_CLOEXEC)) < 0;
		else
			err = is_ring(ru->tr) ? rbus_region_create(&o, &ru->r[i]) :
			      ru->tr == T_PIPE ? pipe(ru->fd + 2 * i) :
			      socketpair(AF_UNIX, SOCK_STREAM, 0, ru->fd + 2 * i);
		if (err) {
			fprintf(stderr, "ringbus-bench: %s: %s\n", is_ring(ru->tr) ?
				"rbus_region_create" : ru->tr == T_PIPE ? "pipe" :
				ru->tr == T_UNIX ? "socketpair" : "eventfd",
				is_ring(ru->tr) ? rbus_strerror(err) : strerror(errno));
			return -1;
		}
	}
	return 0;
}

/* Kill the processes not reaped yet (pid > 0). */
static void kill_left(const pid_t *pids, int n)
{
	for (int i = 0; i < n; i++)
		if (pids[i] > 0)
			kill(pids[i], SIGKILL);
}

/*
 * One repetition: set up, fork n processes (idx < na run fa, the others fb;
 * idx pinned to CPU idx % 2), wait for them all, killing the others when
 * one fails.  A child still running after WATCHDOG_S seconds dies of
 * SIGALRM.  Returns 0 if all exited with status 0.
 */
static int run_procs(struct run *ru, int nrings, uint32_t capacity, int n, int na,
		     child_fn fa, child_fn fb)
{
	pid_t pids[MAXPROC];
	int started = 0, bad = setup(ru, nrings, capacity), st, i;
	cpu_set_t set;

	memset(shc, 0, sizeof(*shc));
	fflush(NULL);
	for (; started < n && !bad; started++) {
		if ((pids[started] = fork()) < 0) {
			fprintf(stderr, "ringbus-bench: fork: %s\n", strerror(errno));
			kill_left(pids, started);
			bad = 1;
			break;
		}
		if (pids[started] == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			alarm(WATCHDOG_S);
			CPU_ZERO(&set);
			CPU_SET(started % 2, &set);
			if (sched_setaffinity(0, sizeof(set), &set) < 0)
				_exit(cfail(ru, "sched_setaffinity", strerror(errno)) ? 1 : 0);
			_exit((started < na ? fa : fb)(ru, started) ? 1 : 0);
		}
	}
	close_fds(ru);                  /* the stream consumers wait for EOF */
	for (int left = started; left > 0; left--) {
		pid_t pid = waitpid(-1, &st, 0);

		if (pid < 0) {
			fprintf(stderr, "ringbus-bench: waitpid: %s\n", strerror(errno));
			bad = 1;
			break;
		}
		for (i = 0; i < started && pids[i] != pid; i++)
			;
		if (i < started)
			pids[i] = -1;
		if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
			continue;
		if (!bad)
			fprintf(stderr, "ringbus-bench: %s: process %d %s %d\n", ru->name, i,
				WIFEXITED(st) ? "exited with status" : "killed by signal",
				WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
		bad = 1;
		kill_left(pids, started);
	}
	rbus_region_close(ru->r[0]);
	rbus_region_close(ru->r[1]);
	return bad ? -1 : 0;
}

/* ---- the benchmark ---------------------------------------------------- */

static const char *tr_name(enum transport tr, int np)
{
	static const char *const names[] = { "pipe", "AF_UNIX stream", "ringbus SPSC",
					     "ringbus MPMC 1p1c", "bare cache line",
					     "bare futex", "bare eventfd" };

	return tr == T_MPMC && np > 1 ? "ringbus MPMC 2p2c" : names[tr];
}

static const char *mode_name(const struct tcase *c)
{
	if (!is_ring(c->tr))
		return c->tr != T_LINE ? "write/read" : c->batch == 1 ? "1 line" : "2 lines";
	if (c->batch > 1)
		return c->mode == M_ZC ? "zc b32" : "copy b32";
	return c->mode == M_ZC ? "zc" : "copy";
}

/* Verify one throughput repetition and compute its rate. */
static int tp_collect(const struct run *ru, double *rate, double *msgs)
{
	uint64_t sent = 0, recv = 0, sum = 0, want = 0, t0 = UINT64_MAX, t1 = 0;

	for (int i = 0; i < ru->np + ru->nc; i++) {
		const struct proc_res *p = &shc->res[i];

		if (i < ru->np) {
			sent += p->count;
			want += p->count ? p->count * (p->count - 1) / 2 : 0;
			t0 = p->t_start < t0 ? p->t_start : t0;
		} else {
			recv += p->count;
			sum += p->sum;
			t1 = p->t_end > t1 ? p->t_end : t1;
		}
	}
	if (recv != sent || sum != want || !sent || t1 <= t0) {
		fprintf(stderr, "ringbus-bench: %s: verification failed: sent %" PRIu64
			", received %" PRIu64 ", sum of sequence numbers %" PRIu64 " (want %"
			PRIu64 ")\n", ru->name, sent, recv, sum, want);
		return -1;
	}
	*rate = (double)recv * 1e9 / (double)(t1 - t0);
	*msgs = (double)recv;
	return 0;
}

/* Run every selected test, size by size, opt.reps times each. */
static int bench(void)
{
	for (int si = 0; si < NSIZES; si++)
		for (size_t t = 0; t < NTC; t++) {
			const struct tcase *c = &tcases[t];
			const bool sys = c->tr == T_PIPE || c->tr == T_UNIX;
			unsigned sel = (c->rtt ? SEL_RING_RT : SEL_RING_TP) << !is_ring(c->tr);
			child_fn pp = c->tr == T_LINE ? line_pingpong : pingpong;
			child_fn fa = c->rtt ? pp : producer;
			child_fn fb = c->rtt ? pp : sys ? stream_consumer : ring_consumer;
			struct fig *f = &figs[t][si];
			double v[2][RMAX];
			struct run ru = { .tr = c->tr, .mode = c->mode, .batch = c->batch,
					  .size = sizes[si], .np = c->np, .nc = c->nc,
					  .oversub = c->np + c->nc > 2,
					  .rounds = sys ? opt.rt_sys : opt.rt_shm };

			if ((c->size && c->size != sizes[si]) || !(opt.sel & sel))
				continue;
			ru.warm = ru.rounds / 10;
			snprintf(ru.name, sizeof(ru.name), "%s%s %zu B %s",
				 c->rtt ? "round trip " : "", tr_name(c->tr, c->np), ru.size,
				 mode_name(c));
			for (int rep = 0; rep < opt.reps; rep++) {
				if (run_procs(&ru, c->rtt ? 2 : 1,
					      c->rtt ? PP_CAPACITY : capacities[si],
					      c->np + c->nc, c->np, fa, fb))
					return -1;
				v[0][rep] = shc->res[0].p50;
				v[1][rep] = shc->res[0].p99;
				if (!c->rtt && tp_collect(&ru, &v[0][rep], &v[1][rep]))
					return -1;
			}
			f->ran = true;
			for (int i = 0; i < 2; i++)
				f->med[i] = stats(v[i], opt.reps, &f->min[i], &f->max[i]);
			fprintf(stderr, "%-40s %12.3f %s\n", ru.name,
				f->med[0] / (c->rtt ? 1 : 1e6), c->rtt ? "ns p50" : "Mmsg/s");
		}
	return 0;
}

static const char *wake_name(uint32_t wakeup)
{
	return wakeup == RBUS_WAKE_EVENTFD ? "eventfd" : "futex";
}

/* The name of wakeup test c, for progress and errors. */
static void wake_test_name(const struct wcase *c, char *buf, size_t size)
{
	static const char *const kinds[] = { "blocking round trip", "streaming", "idle" };

	if (c->spin == S_POLL)
		snprintf(buf, size, "round trip %s busy polling", tr_name(c->tr, 1));
	else if (!is_ring(c->tr))
		snprintf(buf, size, "%s %s", kinds[c->kind], tr_name(c->tr, 1));
	else
		snprintf(buf, size, "%s %s %s%s", kinds[c->kind], tr_name(c->tr, 1),
			 wake_name(c->wakeup), c->spin == S_ZERO ? " spin 0" : "");
}

/* One repetition of wakeup test c; its values go to v[i][rep]. */
static int wake_rep(const struct wcase *c, double v[NVAL][RMAX], int rep)
{
	const bool bare = !is_ring(c->tr), sys = bare || c->spin == S_ZERO;
	const struct proc_res *p = &shc->res[0];
	child_fn fa = bare ? bare_pingpong : pingpong, fb = fa;
	uint32_t capacity = PP_CAPACITY;
	int nrings = 2;
	double msgs;
	struct run ru = { .tr = c->tr, .mode = M_COPY, .batch = 1, .size = WSIZE,
			  .np = 1, .nc = 1, .block = c->spin != S_POLL,
			  .nospin = c->spin == S_ZERO, .wakeup = c->wakeup,
			  .rounds = sys ? opt.rt_sys : opt.rt_shm };

	ru.warm = ru.rounds / 10;
	wake_test_name(c, ru.name, sizeof(ru.name));
	if (c->kind == W_STREAM) {
		fa = producer;
		fb = ring_consumer;
		nrings = 1;
		capacity = capacities[1];
	} else if (c->kind == W_IDLE) {
		fa = idle_waker;
		fb = idle_consumer;
		nrings = 1;
	}
	if (run_procs(&ru, nrings, capacity, 2, 1, fa, fb))
		return -1;
	if (c->kind == W_RTT) {
		v[0][rep] = p->p50;
		v[1][rep] = p->p99;
		v[2][rep] = (double)p->waits[0] / (double)ru.rounds;
		v[3][rep] = (double)p->waits[1] / (double)ru.rounds;
		/* Busy polling spins all the time: 100 %, not measured. */
		v[4][rep] = ru.block ? (double)p->cpu_ns * 100 / (double)p->wall_ns : 100;
	} else if (c->kind == W_STREAM) {
		if (tp_collect(&ru, &v[0][rep], &msgs))
			return -1;
		/* Per message sent in the producer's timed loop, the window
		 * of its counts. */
		v[1][rep] = (double)p->waits[1] * 1000 / (double)p->count;
		v[2][rep] = (double)p->waits[2] * 1000 / (double)p->count;
		v[3][rep] = (double)p->waits[0] * 1000 / (double)p->count;
	} else {
		v[0][rep] = (double)p->cpu_ns / 1e6 * 5e9 / (double)p->wall_ns;
		v[1][rep] = (double)p->waits[0];
	}
	return 0;
}

/*
 * Run every selected wakeup test opt.reps times.  The repetitions are
 * interleaved (all tests once, then all again ...), so that each test and
 * the reference it is compared with see the same state of the machine: on
 * a VM, cross-CPU latency can drift by 3x over a run.
 */
static int bench_wakeups(void)
{
	static const int nval[] = { [W_RTT] = 5, [W_STREAM] = 4, [W_IDLE] = 2 };
	static double v[NWC][NVAL][RMAX];
	char name[64];

	for (int rep = 0; rep < opt.reps; rep++)
		for (size_t t = 0; t < NWC; t++) {
			const struct wcase *c = &wcases[t];
			struct fig *f = &wfigs[t];

			if (t == 0 && rep < opt.reps - 1 &&
			    (opt.sel & (SEL_RING_WAKE | SEL_BASE_WAKE)))
				fprintf(stderr, "wakeup tests: repetition %d of %d\n", rep + 1,
					opt.reps);

			if (!(opt.sel & (is_ring(c->tr) ? SEL_RING_WAKE : SEL_BASE_WAKE)))
				continue;
			if (wake_rep(c, v[t], rep))
				return -1;
			if (rep < opt.reps - 1)
				continue;
			f->ran = true;
			for (int i = 0; i < nval[c->kind]; i++)
				f->med[i] = stats(v[t][i], opt.reps, &f->min[i], &f->max[i]);
			wake_test_name(c, name, sizeof(name));
			fprintf(stderr, "%-40s %12.3f %s\n", name,
				f->med[0] / (c->kind == W_STREAM ? 1e6 : 1),
				c->kind == W_RTT ? "ns p50" : c->kind == W_STREAM ? "Mmsg/s" :
				"ms CPU/5 s");
		}
	return 0;
}

/* ---- output ----------------------------------------------------------- */

static void print_header(void)
{
	char date[64], model[128] = "unknown", line[256];
	time_t now = time(NULL);
	struct utsname u = { .release = "unknown" };
	FILE *f = fopen("/proc/cpuinfo", "re");

	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "model name", 10) && strchr(line, ':')) {
			snprintf(model, sizeof(model), "%s", strchr(line, ':') + 2);
			model[strcspn(model, "\n")] = '\0';
			break;
		}
	if (f)
		fclose(f);
	strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S %z", localtime(&now));
	uname(&u);
	printf("ringbus-bench: libringbus throughput, round trips and wakeups, with baselines\n"
	       "date:        %s\nkernel:      %s\ncpu:         %s (%ld CPUs online), TSC %.4f "
	       "ns/tick\npinning:     producer/pinger on CPU 0, consumer/ponger on CPU 1; MPMC "
	       "2p2c: producer i and consumer i on CPU i%%2\nrepetitions: %d per figure%s; a "
	       "figure is their median, spread = min..max\n", date, u.release, model,
	       sysconf(_SC_NPROCESSORS_ONLN), ns_per_tick, opt.reps, opt.quick ? " (quick)" : "");
	printf("throughput:  time-based: producers stream for %.2f s, then the consumers drain;\n"
	       "             rate = messages received / (last consumer end - first producer "
	       "start)\nrings:      ", (double)opt.dur_ns / 1e9);
	for (int i = 0; i < NSIZES; i++) {
		struct rbus_region_opts o;
		struct rbus_region *r = NULL;
		struct rbus_region_info in;

		rbus_region_opts_init(&o);
		o.capacity = capacities[i];
		o.max_msg = (uint32_t)sizes[i];
		if (rbus_region_create(&o, &r) == 0 && rbus_region_info(r, &in) == 0)
			printf(" %zu B: %u slots of %u B (%.2f MiB)%s", sizes[i], in.capacity,
			       in.slot_size, (double)in.size / 1048576, i < 3 ? ";" : "\n");
		rbus_region_close(r);
	}
	printf("             ping-pong: two rings of %u slots, max_msg = message size\n"
	       "work:        copy: rbus_send from / rbus_recv into private buffers; zc: the "
	       "producer writes\n             the whole payload in place, the consumer reads "
	       "every word in place; b32: batches\n             of %d.  Every message's length "
	       "and sequence number are checked; counts, sums verified.\n"
	       "baselines:   one write() per message, reads of up to %u KiB, default buffers; "
	       "ping-pong\n             over two pipes / two socketpairs.  Bare cache line: "
	       "\"2 lines\" = each side's word\n             on a line of its own (the rings' "
	       "pattern: the reference), \"1 line\" = one line\n"
	       "round trips: %" PRIu64 " per repetition (+10%% warm-up), busy polling with "
	       "pause; pipe and\n             AF_UNIX (blocking): %" PRIu64 "\n", PP_CAPACITY,
	       BATCH, STREAM_BUF / 1024, opt.rt_shm, opt.rt_sys);
	printf("wakeups:     SPSC, %d B copy, rbus_send_wait / rbus_recv_wait(RBUS_FOREVER), one "
	       "region per\n             ring, futex or eventfd backend, spin default (%u ns) or "
	       "0 (rbus_channel_set_spin).\n             Blocking round trips: as above, %" PRIu64
	       " per repetition (spin 0: %" PRIu64 ");\n             sleeps and wakes per round "
	       "trip from rbus_region_wait_stats() of both rings;\n             a busy-polling "
	       "SPSC round trip again as their reference.  Bare futex: one\n             "
	       "32-bit shared word each way, FUTEX_WAKE always, FUTEX_WAIT (not private);\n"
	       "             bare eventfd: two eventfds, blocking write/read; %" PRIu64 " round "
	       "trips.\n             Streaming: as throughput (%u slots); wakes, blind wakes and "
	       "sleeps of\n             both wait queues per 1000 messages, counted over the "
	       "producer's timed loop.\n", WSIZE, RBUS_SPIN_DEFAULT_NS, opt.rt_shm, opt.rt_sys,
	       opt.rt_sys, capacities[1]);
	printf("             Idle: a consumer blocked on an empty ring; its CPU time (user+sys, "
	       "its CPU\n             clock read by a waker process) over %.0f s, then one "
	       "message wakes it%s\n             The repetitions of the wakeup tests are "
	       "interleaved.\n\n", (double)opt.idle_ns / 1e9, opt.quick ?
	       ";\n             reported scaled to 5 s (quick)." : ".");
}

/* The figure of a test, or NULL if it did not run. */
static const struct fig *find(bool rtt, enum transport tr, int np, enum mode mode,
			      unsigned batch, size_t size)
{
	for (size_t t = 0; t < NTC; t++)
		for (int si = 0; si < NSIZES; si++)
			if (tcases[t].rtt == rtt && tcases[t].tr == tr && tcases[t].np == np &&
			    tcases[t].mode == mode && tcases[t].batch == batch &&
			    sizes[si] == size && figs[t][si].ran)
				return &figs[t][si];
	return NULL;
}

/* "x.xx" of a / b, or "-" without b. */
static const char *ratio(char *buf, const struct fig *a, const struct fig *b, int prec)
{
	if (b)
		sprintf(buf, "%.*fx", prec, a->med[0] / b->med[0]);
	return b ? buf : "-";
}

/* A table starts here: a blank line before all but the first. */
static void table_gap(void)
{
	static bool first = true;

	if (!first)
		putchar('\n');
	first = false;
}

static void print_results(void)
{
	const struct fig *bare = find(1, T_LINE, 1, M_COPY, 2, 8), *un, *pi;
	char s1[64], s2[64], r1[32], r2[32];
	int shown[2] = { 0 };           /* throughput, round trips */

	for (size_t t = 0; t < NTC; t++)
		for (int si = 0; si < NSIZES; si++)
			shown[tcases[t].rtt] += figs[t][si].ran;
	if (shown[0]) {
		table_gap();
		printf("Throughput (msg/s, GB/s = 10^9 payload bytes/s): median of %d, spread "
		       "min..max\n%-18s %6s %-10s %9s %-21s %8s %11s %10s %8s\n", opt.reps, "test",
		       "size", "mode", "Mmsg/s", "  spread (Mmsg/s)", "GB/s", "msgs/rep",
		       "vs AF_UNIX", "vs pipe");
	}
	for (int si = 0; si < NSIZES; si++)
		for (size_t t = 0; t < NTC; t++) {
			const struct tcase *c = &tcases[t];
			const struct fig *f = &figs[t][si];

			if (!f->ran || c->rtt)
				continue;
			un = is_ring(c->tr) ? find(0, T_UNIX, 1, M_COPY, 1, sizes[si]) : NULL;
			pi = is_ring(c->tr) ? find(0, T_PIPE, 1, M_COPY, 1, sizes[si]) : NULL;
			snprintf(s1, sizeof(s1), "  %.3f..%.3f", f->min[0] / 1e6, f->max[0] / 1e6);
			printf("%-18s %6zu %-10s %9.3f %-21s %8.3f %11.0f %10s %8s\n",
			       tr_name(c->tr, c->np), sizes[si], mode_name(c), f->med[0] / 1e6, s1,
			       f->med[0] * (double)sizes[si] / 1e9, f->med[1], ratio(r1, f, un, 1),
			       ratio(r2, f, pi, 1));
		}
	if (shown[1]) {
		table_gap();
		printf("Round trip (ns): median over %d repetitions of each repetition's p50 and "
		       "p99\n%-18s %6s %-10s %8s %-19s %8s %-19s %9s\n", opt.reps, "test", "size",
		       "mode", "p50", "  spread", "p99", "  spread", "p50/bare");
	}
	for (size_t t = 0; t < NTC; t++)
		for (int si = 0; si < NSIZES; si++) {
			const struct fig *f = &figs[t][si];

			if (!f->ran || !tcases[t].rtt)
				continue;
			snprintf(s1, sizeof(s1), "  %.0f..%.0f", f->min[0], f->max[0]);
			snprintf(s2, sizeof(s2), "  %.0f..%.0f", f->min[1], f->max[1]);
			printf("%-18s %6zu %-10s %8.0f %-19s %8.0f %-19s %9s\n",
			       tr_name(tcases[t].tr, 1), sizes[si], mode_name(&tcases[t]),
			       f->med[0], s1, f->med[1], s2, ratio(r1, f, bare, 2));
		}
}

/* The figure of a wakeup test, or NULL if it did not run. */
static const struct fig *wfind(enum wkind kind, enum transport tr, uint32_t wakeup,
			       enum wspin spin)
{
	for (size_t t = 0; t < NWC; t++)
		if (wcases[t].kind == kind && wcases[t].tr == tr && wcases[t].wakeup == wakeup &&
		    wcases[t].spin == spin && wfigs[t].ran)
			return &wfigs[t];
	return NULL;
}

/* What a blocking round trip is compared with: busy polling when it spins,
 * the bare primitive of its backend when it does not. */
static const struct fig *wref(const struct wcase *c)
{
	if (!is_ring(c->tr) || c->spin == S_POLL)
		return NULL;
	if (c->spin == S_ZERO)
		return wfind(W_RTT, c->wakeup == RBUS_WAKE_EVENTFD ? T_EVENTFD : T_FUTEX,
			     c->wakeup, S_DEFAULT);
	return wfind(W_RTT, T_SPSC, RBUS_WAKE_FUTEX, S_POLL);
}

/* The wakeup tables: blocking round trips, streaming, idle consumer. */
static void print_wakeups(void)
{
	const struct fig *poll = find(0, T_SPSC, 1, M_COPY, 1, WSIZE);
	char s1[64], s2[64], s3[64], r1[32], r2[48];
	int shown[3] = { 0 };

	for (size_t t = 0; t < NWC; t++)
		shown[wcases[t].kind] += wfigs[t].ran;
	if (shown[W_RTT]) {
		table_gap();
		printf("Blocking round trip (ns), %d B copy, rbus_send_wait / rbus_recv_wait"
		       "(RBUS_FOREVER): median over %d\nrepetitions of each repetition's p50 "
		       "and p99; sleeps and wake system calls (both sides) per round\ntrip; CPU: "
		       "the pinger's CPU time in %% of the time; p50 vs ref: spinning vs busy "
		       "polling\n(poll: rbus_send / rbus_recv), spin 0 vs the bare primitive of the "
		       "backend (bare);\nrepetitions interleaved with those of every wakeup test\n"
		       "%-18s %-7s %-5s %8s %-19s %8s %-19s %9s %8s %5s %s\n", WSIZE, opt.reps,
		       "test", "wakeup", "spin", "p50", "  spread", "p99", "  spread", "sleeps/rt",
		       "wakes/rt", "CPU", "p50 vs ref");
	}
	for (size_t t = 0; t < NWC; t++) {
		const struct wcase *c = &wcases[t];
		const struct fig *f = &wfigs[t], *ref = wref(c);

		if (!f->ran || c->kind != W_RTT)
			continue;
		snprintf(s1, sizeof(s1), "  %.0f..%.0f", f->min[0], f->max[0]);
		snprintf(s2, sizeof(s2), "  %.0f..%.0f", f->min[1], f->max[1]);
		snprintf(r2, sizeof(r2), "%s %s", ratio(r1, f, ref, 2),
			 !ref ? "" : c->spin == S_ZERO ? "bare" : "poll");
		if (is_ring(c->tr) && c->spin != S_POLL)
			printf("%-18s %-7s %-5s %8.0f %-19s %8.0f %-19s %9.3f %8.3f %4.0f%% %s\n",
			       tr_name(c->tr, 1), wake_name(c->wakeup),
			       c->spin == S_ZERO ? "0" : "dflt", f->med[0], s1, f->med[1], s2,
			       f->med[2], f->med[3], f->med[4], r2);
		else
			printf("%-18s %-7s %-5s %8.0f %-19s %8.0f %-19s %9s %8s %4.0f%% %s\n",
			       tr_name(c->tr, 1), is_ring(c->tr) ? "-" : wake_name(c->wakeup),
			       is_ring(c->tr) ? "poll" : "-", f->med[0], s1, f->med[1], s2, "-",
			       "-", f->med[4], "-");
	}
	if (shown[W_STREAM]) {
		table_gap();
		printf("Streaming with the waiting calls (SPSC %d B copy, spin default): median "
		       "of %d, spread min..max;\nwake system calls, blind wakes (counted for futex "
		       "only) and sleeps per 1000 messages;\nvs poll: vs the busy-polling SPSC %d "
		       "B copy throughput (throughput table)\n%-18s %-7s %9s %-21s %8s %10s %-15s %10s %11s %s\n", WSIZE, opt.reps, WSIZE, "test", "wakeup",
		       "Mmsg/s", "  spread (Mmsg/s)", "vs poll", "wakes", "  spread", "blind",
		       "sleeps", "  spread");
	}
	for (size_t t = 0; t < NWC; t++) {
		const struct wcase *c = &wcases[t];
		const struct fig *f = &wfigs[t];

		if (!f->ran || c->kind != W_STREAM)
			continue;
		snprintf(s1, sizeof(s1), "  %.3f..%.3f", f->min[0] / 1e6, f->max[0] / 1e6);
		snprintf(s2, sizeof(s2), "  %.3g..%.3g", f->min[1], f->max[1]);
		snprintf(s3, sizeof(s3), "  %.3g..%.3g", f->min[3], f->max[3]);
		if (c->wakeup == RBUS_WAKE_FUTEX)
			snprintf(r2, sizeof(r2), "%.4f", f->med[2]);
		printf("%-18s %-7s %9.3f %-21s %8s %10.4f %-15s %10s %11.4f %s\n",
		       tr_name(c->tr, 1), wake_name(c->wakeup), f->med[0] / 1e6, s1,
		       ratio(r1, f, poll, 2), f->med[1], s2,
		       c->wakeup == RBUS_WAKE_FUTEX ? r2 : "-", f->med[3], s3);
	}
	if (shown[W_IDLE]) {
		table_gap();
		printf("Idle blocked consumer: CPU time (user+sys) in rbus_recv_wait(RBUS_FOREVER) "
		       "on an empty ring,\nms per 5 s%s: median of %d, spread min..max; sleeps "
		       "in the window\n%-18s %-7s %10s %-19s %8s %s\n",
		       opt.quick ? " (quick: measured over 1 s, x 5)" : "", opt.reps,
		       "test", "wakeup", "CPU ms", "  spread", "sleeps", "  spread");
	}
	for (size_t t = 0; t < NWC; t++) {
		const struct wcase *c = &wcases[t];
		const struct fig *f = &wfigs[t];

		if (!f->ran || c->kind != W_IDLE)
			continue;
		snprintf(s1, sizeof(s1), "  %.3f..%.3f", f->min[0], f->max[0]);
		snprintf(s2, sizeof(s2), "  %.0f..%.0f", f->min[1], f->max[1]);
		printf("%-18s %-7s %10.3f %-19s %8.0f %s\n", tr_name(c->tr, 1),
		       wake_name(c->wakeup), f->med[0], s1, f->med[1], s2);
	}
}

enum cmp { AT_LEAST, AT_MOST, BELOW };  /* >=, <=, < */

/*
 * One target: a's median >= k x b's median (or <=, <: cmp), or >= k when
 * !rel.  Values are printed divided by scale.  Returns 1 if it failed.
 */
static int target(const char *what, const struct fig *a, const struct fig *b, bool rel,
		  double k, enum cmp cmp, double scale, const char *unit)
{
	double x = a ? a->med[0] : 0, y = rel ? (b ? b->med[0] * k : 0) : k;
	bool pass = cmp == AT_LEAST ? x >= y : cmp == AT_MOST ? x <= y : x < y;

	if (!a || (rel && !b)) {
		printf("  SKIP  %s\n        not measured in this run (--only)\n", what);
		return 0;
	}
	printf("  %s  %s\n        %.4g %s (spread %.4g..%.4g)", pass ? "PASS" : "FAIL", what,
	       x / scale, unit, a->min[0] / scale, a->max[0] / scale);
	if (rel)
		printf(" vs %.4g %s (spread %.4g..%.4g): %.2fx", b->med[0] / scale, unit,
		       b->min[0] / scale, b->max[0] / scale, a->med[0] / b->med[0]);
	printf("\n");
	return !pass;
}

/* f with its value i as its first, for target(); NULL stays NULL. */
static const struct fig *nth(const struct fig *f, int i, struct fig *tmp)
{
	if (!f)
		return NULL;
	*tmp = (struct fig){ .ran = true, .med[0] = f->med[i], .min[0] = f->min[i],
			     .max[0] = f->max[i] };
	return tmp;
}

/* The wakeup targets of one backend; returns how many failed. */
static int wake_targets(uint32_t wakeup)
{
	const char *w = wake_name(wakeup);
	const enum transport bare = wakeup == RBUS_WAKE_EVENTFD ? T_EVENTFD : T_FUTEX;
	char what[4][128];
	struct fig tmp;
	int fails = 0;

	snprintf(what[0], sizeof(what[0]), "blocking ping-pong SPSC 64 B %s, default spin: RTT "
		 "p50 <= 2x busy-polling SPSC 64 B p50", w);
	snprintf(what[1], sizeof(what[1]), "blocking ping-pong SPSC 64 B %s, spin 0: RTT p50 "
		 "<= 1.2x bare %s ping-pong p50", w, w);
	snprintf(what[2], sizeof(what[2]), "streaming SPSC 64 B %s, waiting calls: < 1 wake "
		 "system call per 1000 messages", w);
	snprintf(what[3], sizeof(what[3]), "idle consumer blocked (%s): < 1 ms CPU in 5 s", w);
	fails += target(what[0], wfind(W_RTT, T_SPSC, wakeup, S_DEFAULT),
			wfind(W_RTT, T_SPSC, RBUS_WAKE_FUTEX, S_POLL), true, 2, AT_MOST, 1, "ns");
	fails += target(what[1], wfind(W_RTT, T_SPSC, wakeup, S_ZERO),
			wfind(W_RTT, bare, wakeup, S_DEFAULT), true, 1.2, AT_MOST, 1, "ns");
	fails += target(what[2], nth(wfind(W_STREAM, T_SPSC, wakeup, S_DEFAULT), 1, &tmp),
			NULL, false, 1, BELOW, 1, "per 1000 msg");
	fails += target(what[3], wfind(W_IDLE, T_SPSC, wakeup, S_DEFAULT), NULL, false, 1,
			BELOW, 1, "ms per 5 s");
	return fails;
}

static void print_targets(void)
{
	const struct fig *s8 = find(0, T_SPSC, 1, M_COPY, 1, 8);
	int fails = 0, n = 0, ran = 0;

	printf("\nTargets (figures of this run)\n");
	fails += target("SPSC 64 B copy one-at-a-time >= 20x AF_UNIX stream 64 B",
			find(0, T_SPSC, 1, M_COPY, 1, 64), find(0, T_UNIX, 1, M_COPY, 1, 64),
			true, 20, AT_LEAST, 1e6, "Mmsg/s");
	fails += target("SPSC 8 B copy one-at-a-time >= 7.0e7 msg/s", s8, NULL, false, 7.0e7,
			AT_LEAST, 1, "msg/s");
	fails += target("SPSC 8 B copy, batches of 32 >= 2.5e8 msg/s",
			find(0, T_SPSC, 1, M_COPY, BATCH, 8), NULL, false, 2.5e8, AT_LEAST, 1,
			"msg/s");
	fails += target("ping-pong SPSC 64 B copy RTT p50 <= 1.6x bare cache line (2 lines) p50",
			find(1, T_SPSC, 1, M_COPY, 1, 64), find(1, T_LINE, 1, M_COPY, 2, 8),
			true, 1.6, AT_MOST, 1, "ns");
	fails += target("SPSC 64 KiB copy >= 1.3x AF_UNIX stream 64 KiB (GB/s)",
			find(0, T_SPSC, 1, M_COPY, 1, 65536), find(0, T_UNIX, 1, M_COPY, 1, 65536),
			true, 1.3, AT_LEAST, 1e9 / 65536, "GB/s");
	fails += target("MPMC 1p1c 8 B copy >= 0.25x SPSC 8 B copy",
			find(0, T_MPMC, 1, M_COPY, 1, 8), s8, true, 0.25, AT_LEAST, 1e6, "Mmsg/s");
	for (size_t t = 0; t < NTC; t++)
		for (int si = 0; si < NSIZES && tcases[t].np == 2; si++) {
			n++;
			ran += figs[t][si].ran;
		}
	if (ran)
		printf("  %s  MPMC 2p2c completes with all messages received\n        %d of %d "
		       "tests x %d repetitions: received == sent, every sequence number once, in "
		       "order per producer\n", ran == n ? "PASS" : "FAIL", ran, n, opt.reps);
	else
		printf("  SKIP  MPMC 2p2c completes with all messages received\n");
	fails += wake_targets(RBUS_WAKE_FUTEX);
	fails += wake_targets(RBUS_WAKE_EVENTFD);
	printf("  %d target(s) failed\n", fails + (ran && ran != n));
}

/* ---- main --------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f, "usage: ringbus-bench [-r N] [-q] [--only throughput|pingpong|baselines|"
		"wakeups]\n"
		"  -r, --repeat N   repetitions per figure (default 5, quick 3; median reported)\n"
		"  -q, --quick      short run for CI smoke tests (under ~30 s); the idle consumer\n"
		"                   is measured over 1 s instead of 5 s, and scaled\n"
		"      --only WHAT  throughput; pingpong (busy polling); baselines (pipe, AF_UNIX,\n"
		"                   cache line, bare futex and eventfd); or wakeups: blocking\n"
		"                   round trips (futex, eventfd, spin default and 0) with the bare\n"
		"                   futex / eventfd ping-pongs and the busy-polling SPSC 64 B\n"
		"                   round trip they are compared with, wait counts while\n"
		"                   streaming, CPU time of an idle blocked consumer\n"
		"  -h, --help       this text\n"
		"Pins CPUs 0 and 1.  Exits 0 when everything ran (a missed target is reported as\n"
		"FAIL), 1 when something broke, 2 on a usage error.\n");
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "repeat", required_argument, NULL, 'r' }, { "quick", no_argument, NULL, 'q' },
		{ "only", required_argument, NULL, 'o' },   { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static const char *const only[] = { "throughput", "pingpong", "baselines", "wakeups" };
	static const unsigned only_sel[] = { SEL_RING_TP | SEL_BASE_TP,
					     SEL_RING_RT | SEL_BASE_RT,
					     SEL_BASE_TP | SEL_BASE_RT | SEL_BASE_WAKE,
					     SEL_RING_WAKE | SEL_BASE_WAKE };
	const int nonly = (int)(sizeof(only) / sizeof(only[0]));
	uint64_t t_begin = now_ns();
	char *end = NULL;
	int c, i = 0;

	opt.sel = SEL_RING_TP | SEL_BASE_TP | SEL_RING_RT | SEL_BASE_RT | SEL_RING_WAKE |
		  SEL_BASE_WAKE;
	while ((c = getopt_long(argc, argv, "r:qh", longopts, NULL)) != -1) {
		if (c == 'r')
			opt.reps = (int)strtol(optarg, &end, 10);
		if (c == 'r' && (*end || opt.reps < 1 || opt.reps > RMAX)) {
			fprintf(stderr, "ringbus-bench: --repeat: want 1..%d, not '%s'\n", RMAX,
				optarg);
			return 2;
		}
		for (i = 0; c == 'o' && i < nonly && strcmp(optarg, only[i]); i++)
			;
		if (c == 'o' && i < nonly)
			opt.sel = only_sel[i];
		opt.quick |= c == 'q';
		if (c == 'h' || c == '?' || (c == 'o' && i == nonly)) {
			if (c == 'o')
				fprintf(stderr, "ringbus-bench: --only: unknown '%s'\n", optarg);
			usage(c == 'h' ? stdout : stderr);
			return c == 'h' ? 0 : 2;
		}
	}
	if (optind < argc) {
		usage(stderr);
		return 2;
	}
	opt.reps = opt.reps ? opt.reps : opt.quick ? 3 : 5;
	opt.dur_ns = opt.quick ? 50000000u : 300000000u;
	opt.rt_shm = opt.quick ? 20000 : 200000;
	opt.rt_sys = opt.quick ? 2000 : 20000;
	opt.idle_ns = opt.quick ? 1000000000u : 5000000000u;

	shc = mmap(NULL, sizeof(*shc), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (shc == MAP_FAILED) {
		fprintf(stderr, "ringbus-bench: mmap: %s\n", strerror(errno));
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);       /* a dead peer gives EPIPE, reported */
	calibrate_ticks();
	print_header();
	if (bench() || bench_wakeups()) {
		fprintf(stderr, "ringbus-bench: aborted\n");
		return 1;
	}
	print_results();
	print_wakeups();
	print_targets();
	printf("\ntotal run time: %.1f s\n", (double)(now_ns() - t_begin) / 1e9);
	return 0;
}
