/* SPDX-License-Identifier: MIT */
/*
 * cmd_bench.c - ringbus bench: throughput, round trips and wakeups of the
 * rings, with baselines (pipe, AF_UNIX stream socketpair, a bare SPSC ring,
 * a bare shared cache line, bare futex and eventfd ping-pongs) measured in
 * the same run, and the performance targets checked at the end.
 *
 * Every repetition of a test forks its processes, pinned to the two CPUs of
 * --cpus, which meet in a MAP_SHARED control block; a figure is the median
 * of the repetitions, min..max its spread.  The header of the text output
 * describes the method, --help the options, ringbus(1) both.  Exit status:
 * 0 when everything ran (a missed target is a FAIL line, not an error), 1
 * when something broke (a failed call, a verification mismatch), 2 on bad
 * usage.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE  /* clock_getcpuclockid, syscall */
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

#include "cli.h"

#define BATCH       32
#define MAXPROC     4
#define RMAX        99              /* --repeat */
#define MAXSIZES    16              /* --sizes */
#define SIZE_MIN    8               /* the sequence word */
#define SIZE_MAX_   (1u << 20)
#define WSIZE       64              /* message size of the wakeup tests */
#define PP_CAPACITY 1024u           /* slots of each ping-pong ring (at most) */
#define CAPACITY_BYTES_MAX (1ull << 30) /* --capacity: slots times (size + 8), at most */
#define STREAM_BUF  (64u * 1024)    /* read() size of the stream consumers */
#define SEQ_BITS    48              /* message word: producer << 48 | seq */
#define SEQ_MASK    ((UINT64_C(1) << SEQ_BITS) - 1)
#define STOP        UINT64_MAX      /* ping-pong: the pinger is done */

static const size_t default_sizes[] = { 8, 64, 1024, 65536 };

/* T_FUTEX, T_EVENTFD: the bare wakeup primitives (baselines); T_BRING: the
 * bare SPSC ring (baseline, see struct bring). */
enum transport { T_PIPE, T_UNIX, T_SPSC, T_MPMC, T_LINE, T_FUTEX, T_EVENTFD, T_BRING };
enum mode { M_COPY, M_ZC };
/* What to run (--only): ring or baseline, throughput, round trips or
 * wakeups. */
enum { SEL_RING_TP = 1, SEL_BASE_TP = 2, SEL_RING_RT = 4, SEL_BASE_RT = 8,
       SEL_RING_WAKE = 16, SEL_BASE_WAKE = 32, SEL_ALL = 63 };
/* --kind, --wakeup (of the wakeup tests) as bits. */
enum { K_SPSC = 1, K_MPMC = 2 };
enum { W_FUTEX_BIT = 1, W_EVENTFD_BIT = 2 };

static struct {
	int reps;
	bool quick, json;
	unsigned sel;                   /* SEL_* */
	unsigned kinds;                 /* K_* */
	unsigned modes;                 /* 1 << M_COPY | 1 << M_ZC */
	unsigned wakeups;               /* W_*_BIT: backends of the wakeup tests */
	uint32_t wakeup;                /* rings of the other tests: RBUS_WAKE_*, 0 default */
	bool shm;                       /* --backend shm */
	uint32_t spin;                  /* spin budget of the waiting calls, ns */
	uint32_t capacity;              /* --capacity: streaming rings' slots; 0 default */
	size_t sizes[MAXSIZES];
	int nsizes;
	int cpus[2];
	uint64_t dur_ns;                /* streaming time and round-trip time */
	uint64_t idle_ns;               /* idle consumer: the measured window */
} opt;

/* ---- the tests -------------------------------------------------------- */

/* Each test runs at every size of --sizes, but the bare cache line (an 8-byte
 * word), which runs once.  Within a size, baselines come first. */
static const struct tcase {
	bool rtt;                       /* round trips, else throughput */
	enum transport tr;
	int np, nc;                     /* producers, consumers */
	enum mode mode;
	unsigned batch;                 /* 1 or BATCH; T_LINE: cache lines used */
} tcases[] = {
	{ 0, T_PIPE, 1, 1, M_COPY, 1 },     { 0, T_UNIX, 1, 1, M_COPY, 1 },
	{ 0, T_BRING, 1, 1, M_COPY, 1 },
	{ 0, T_SPSC, 1, 1, M_COPY, 1 },     { 0, T_SPSC, 1, 1, M_ZC, 1 },
	{ 0, T_SPSC, 1, 1, M_COPY, BATCH }, { 0, T_SPSC, 1, 1, M_ZC, BATCH },
	{ 0, T_MPMC, 1, 1, M_COPY, 1 },     { 0, T_MPMC, 1, 1, M_ZC, 1 },
	{ 0, T_MPMC, 1, 1, M_COPY, BATCH }, { 0, T_MPMC, 1, 1, M_ZC, BATCH },
	{ 0, T_MPMC, 2, 2, M_COPY, 1 },     { 0, T_MPMC, 2, 2, M_COPY, BATCH },
	{ 1, T_LINE, 1, 1, M_COPY, 2 },     { 1, T_LINE, 1, 1, M_COPY, 1 },
	{ 1, T_PIPE, 1, 1, M_COPY, 1 },     { 1, T_UNIX, 1, 1, M_COPY, 1 },
	{ 1, T_SPSC, 1, 1, M_COPY, 1 },     { 1, T_SPSC, 1, 1, M_ZC, 1 },
	{ 1, T_MPMC, 1, 1, M_COPY, 1 },     { 1, T_MPMC, 1, 1, M_ZC, 1 },
};
#define NTC (sizeof(tcases) / sizeof(tcases[0]))

/*
 * The values of a figure.  Throughput: msg/s, messages per repetition, and
 * (rings) the producers' looks that found the ring full and the consumers'
 * that found it empty, per message: which side waited for the other.
 * Round trips: the percentiles of each repetition's histogram (V_MAX: its
 * maximum; reported is the largest of the repetitions), round trips timed;
 * blocking ones also sleeps and wake system calls per round trip and the
 * pinger's CPU time in % of the time; busy-polling ring ones also the p50 of
 * the bare cache line bounced by the same two processes just before (V_REF)
 * and the ratio of the two p50s (V_VSREF).  Streaming with the waiting calls:
 * msg/s, messages, then wake system calls, blind wakes and sleeps per 1000
 * messages.  Idle: ms of CPU time per 5 s, sleeps in the window.
 */
/* Throughput and streaming share the first two; then each has its own. */
enum { V_RATE = 0, V_MSGS = 1, V_WAKES1K = 2, V_BLIND1K = 3, V_SLEEPS1K = 4,
       V_FULL = 2, V_EMPTY = 3 };
enum { V_P50 = 0, V_P90, V_P99, V_P999, V_MAX, V_ROUNDS, V_SLEEPS, V_WAKES, V_CPU,
       V_REF, V_VSREF, NVAL };
enum { V_IDLE_CPU = 0, V_IDLE_SLEEPS = 1 };

/* Each value: the median of the repetitions, and min, max. */
static struct fig {
	bool ran;
	double med[NVAL], min[NVAL], max[NVAL];
} figs[NTC][MAXSIZES];

/* The values of every repetition, in the order of the rounds (bench()). */
static double vals[NTC][MAXSIZES][NVAL][RMAX];

/*
 * The wakeup tests, all SPSC with WSIZE-byte messages and the waiting calls
 * (rbus_send_wait, rbus_recv_wait with RBUS_FOREVER): blocking round trips
 * with either backend, spinning (--spin) or not at all, next to the bare
 * primitive of the backend and to busy polling; streaming, counting system
 * calls; and a consumer blocked on an empty ring, measuring its CPU time.
 * Their repetitions are interleaved (bench_wakeups()).
 */
enum wkind { W_RTT, W_STREAM, W_IDLE };
/* How a ring round trip waits: the waiting calls with the --spin budget or
 * with none, or busy polling with rbus_send / rbus_recv (the reference). */
enum wspin { S_SPIN, S_ZERO, S_POLL };

static const struct wcase {
	enum wkind kind;
	enum transport tr;              /* T_SPSC, or T_FUTEX / T_EVENTFD (bare) */
	uint32_t wakeup;                /* the backend: RBUS_WAKE_*; S_POLL: any */
	enum wspin spin;                /* rings; S_SPIN for the others */
} wcases[] = {
	{ W_RTT, T_SPSC, RBUS_WAKE_FUTEX, S_POLL },
	{ W_RTT, T_SPSC, RBUS_WAKE_FUTEX, S_SPIN },
	{ W_RTT, T_SPSC, RBUS_WAKE_FUTEX, S_ZERO },
	{ W_RTT, T_FUTEX, RBUS_WAKE_FUTEX, S_SPIN },
	{ W_RTT, T_SPSC, RBUS_WAKE_EVENTFD, S_SPIN },
	{ W_RTT, T_SPSC, RBUS_WAKE_EVENTFD, S_ZERO },
	{ W_RTT, T_EVENTFD, RBUS_WAKE_EVENTFD, S_SPIN },
	{ W_STREAM, T_SPSC, RBUS_WAKE_FUTEX, S_SPIN },
	{ W_STREAM, T_SPSC, RBUS_WAKE_EVENTFD, S_SPIN },
	{ W_IDLE, T_SPSC, RBUS_WAKE_FUTEX, S_SPIN },
	{ W_IDLE, T_SPSC, RBUS_WAKE_EVENTFD, S_SPIN },
};
#define NWC (sizeof(wcases) / sizeof(wcases[0]))

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
	/* The bare futex ping-pong: A's word and B's word, a line each; stop:
	 * A's last post ends the run (published by the store to fping). */
	_Alignas(128) _Atomic uint32_t fping;
	_Atomic int stop;
	_Alignas(128) _Atomic uint32_t fpong;
	_Alignas(128) struct proc_res {         /* one per process */
		_Alignas(64) uint64_t t_start, t_end;   /* CLOCK_MONOTONIC ns */
		uint64_t count;         /* sent (producer), received (consumer) */
		uint64_t sum;           /* consumer: sum of sequence numbers */
		uint64_t sink;          /* sum of payload words read in place */
		/* Rings, in the timed loop: calls that found nothing to do
		 * (producer: full, consumer: empty or hung up). */
		uint64_t idle;
		/* Waiting calls, in the measured part: sleeps, wake system
		 * calls, blind wakes (pinger, producer, idle waker). */
		uint64_t waits[3];
		/* Idle waker: the consumer's CPU time in a window of
		 * wall_ns.  Pinger (wakeups): its own, over the timed rounds. */
		uint64_t cpu_ns, wall_ns;
		pid_t pid;              /* idle consumer: for its CPU clock */
	} res[MAXPROC];
	/* The pinger's round trips, copied here when it is done; href: the
	 * bare cache line's, bounced just before (run.ref_ticks). */
	struct rb_hist hist, href;
} *shc;

/* One repetition of one test, as the children see it. */
struct run {
	char name[80];
	enum transport tr;
	enum mode mode;
	unsigned batch;
	size_t size;
	int np, nc;
	bool oversub;                   /* more processes than CPUs */
	bool block;                     /* rings: the waiting calls (ep.block) */
	uint32_t spin;                  /* rings with block: rbus_channel_set_spin() */
	uint32_t wakeup;                /* rings: backend, RBUS_WAKE_*; 0: default */
	uint64_t warm_ticks, dur_ticks; /* ping-pong: warm-up, then timed */
	/* Rings' busy-polling ping-pong: time the bare cache line for this
	 * long first, in the same two processes (shc->href); 0: not. */
	uint64_t ref_ticks;
	uint32_t capacity;              /* slots of each ring */
	struct rbus_region *r[2];       /* ring A->B, ring B->A */
	struct bring *br;               /* T_BRING: MAP_SHARED, br_len bytes */
	size_t br_len;
	int fd[4];                      /* A->B read, write; B->A read, write */
};
typedef int (*child_fn)(const struct run *ru, int idx);

/* ---- helpers ---------------------------------------------------------- */

/* The live line on stderr (a terminal only), which the children inherit. */
static struct rb_live live;

/* An error message, on a line of its own even while the live line is
 * drawn: it takes the live line's place. */
static void berr(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void berr(const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (live.drawn) {
		fputs("\r\033[K", live.f);
		live.drawn = false;
	}
	rb_err("%s", msg);
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
static inline uint64_t ticks(void) { return rb_now_ns(); }
static inline void cpu_relax(void) { }
#endif

static double ns_per_tick = 1.0;

static void calibrate_ticks(void)
{
	uint64_t t0 = rb_now_ns(), c0 = ticks(), t1;

	while ((t1 = rb_now_ns()) - t0 < 50000000u)
		;
	ns_per_tick = (double)(t1 - t0) / (double)(ticks() - c0);
}

static inline uint64_t tick_ns(uint64_t t) { return (uint64_t)((double)t * ns_per_tick + 0.5); }
static inline uint64_t ns_ticks(uint64_t ns) { return (uint64_t)((double)ns / ns_per_tick); }

static inline uint64_t get64(const void *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

static inline void put64(void *p, uint64_t v) { memcpy(p, &v, 8); }

/* Copy the bytes of a bare ring's message after its sequence word: 8 to
 * 16 bytes as two words, as the library copies small messages, so that
 * neither side of a comparison pays for a call into memcpy the other does
 * not make. */
static inline void copy_msg(void *dst, const void *src, size_t n)
{
	if (n >= 8 && n <= 16) {
		put64(dst, get64(src));
		put64((char *)dst + n - 8, get64((const char *)src + n - 8));
	} else {
		memcpy(dst, src, n);
	}
}

/* Read every byte of a message in place (a zero-copy consumer's work): by
 * words, and the tail of a size that is not a multiple of 8 by bytes. */
static inline uint64_t touch(const void *p, size_t size)
{
	const unsigned char *b = p;
	uint64_t x = 0;
	size_t i = 0;

	for (; i + 8 <= size; i += 8)
		x += get64(b + i);
	for (; i < size; i++)
		x += b[i];
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
static bool is_stream(enum transport tr) { return tr == T_PIPE || tr == T_UNIX; }

/* Slots of a streaming ring by default: 4096, halved while they would hold
 * more than 1 MiB of messages, 64 at least (the sizes 8, 64, 1024 and 65536
 * get 4096, 4096, 1024 and 64). */
static uint32_t default_capacity(size_t size)
{
	uint32_t c = 4096;

	while (c > 64 && (size_t)c * size > (1u << 20))
		c /= 2;
	return c;
}

/* Slots of a streaming ring (throughput, the wakeup tests' streaming):
 * --capacity, or the default above. */
static uint32_t capacity_for(size_t size)
{
	return opt.capacity ? opt.capacity : default_capacity(size);
}

/* Slots of a ping-pong ring: PP_CAPACITY, fewer for large messages. */
static uint32_t pp_capacity(size_t size)
{
	uint32_t c = default_capacity(size);

	return c < PP_CAPACITY ? c : PP_CAPACITY;
}

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
	berr("%s: %s: %s", ru->name, what, why);
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

/* All processes of a run wait here for each other; returns the time. */
static uint64_t barrier(int n)
{
	/* Acq_rel: each arrival releases what it stored before the barrier
	 * (res[].pid), and the last one acquires it all (the increments form
	 * one release sequence) to pass it on with go: its release store
	 * pairs with the acquire load below. */
	if (atomic_fetch_add_explicit(&shc->ready, 1, memory_order_acq_rel) + 1 == n)
		atomic_store_explicit(&shc->go, 1, memory_order_release);
	while (!atomic_load_explicit(&shc->go, memory_order_acquire))
		sched_yield();
	return rb_now_ns();
}

/* Nothing to do (-EAGAIN): spin `pauses` pauses; with more processes than
 * CPUs, one pause and now and then let a preempted peer have the CPU. */
static inline void idle(bool oversub, unsigned *spins, unsigned pauses)
{
	if (oversub && (++*spins & 63) == 0)
		sched_yield();
	else if (oversub)
		cpu_relax();
	else
		while (pauses--)
			cpu_relax();
}

/* A producer that finds a ring full pauses this often before it tries
 * again, the rule of the library's own waiting calls (rbus_wait_open()):
 * capacity / 8, 1 to 64.  Trying again after one pause keeps it writing
 * the line the consumer is reading (doc/performance.md, "Backing off a
 * full ring"). */
static unsigned full_pauses(const struct run *ru)
{
	unsigned p = ru->capacity / 8;

	return p < 1 ? 1 : p > 64 ? 64 : p;
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
	/* A ring, one message a call, copied, not blocking: rbus_send() or
	 * rbus_recv() and nothing else.  The throughput loops have their own
	 * (put_one_copy(), get_one_copy()); ep_put() and ep_get() take it
	 * before any other test. */
	bool one_copy;
	/* The same, zero-copy: rbus_reserve() and rbus_commit(), or
	 * rbus_peek() and rbus_release() (put_one_zc(), get_one_zc()). */
	bool one_zc;
	const char *what;               /* the call that failed */
	/* T_BRING: the ring and its geometry (put_bare(), get_bare()). */
	struct bring *br;
	uint32_t bmask;
	size_t bslot;
};

/*
 * The bare SPSC ring (T_BRING): the reference for the absolute throughput
 * targets, what two CPUs move through shared memory with nothing but the
 * essentials of a ring.  Slots of the message size rounded up to 8 bytes;
 * no lengths, stamps, bounds checks, roles or wakeups; the tail and the head
 * on lines of their own, each stored (release) after every message; each
 * side caches the other's index and loads it only when its cache runs out.
 * Its loops (put_bare(), get_bare()) keep the indices in registers; the
 * producer writes each message's sequence word straight into the slot and
 * copies the rest in from a private buffer, the consumer checks the word
 * in the slot and copies the rest out.  Staging the word in a private
 * buffer as well (as the ringbus loops must, to hand it to rbus_send())
 * made this ring's consumer the faster side, and a consumer that keeps up
 * polls the tail line the producer stores after every message: the ring
 * then read 15-36 M msg/s at 64 B against ~100 this way
 * (doc/performance.md, "The bare ring's reference").
 */
struct bring {
	_Alignas(128) _Atomic uint64_t tail;
	_Alignas(128) _Atomic uint64_t head;
	_Alignas(128) unsigned char slots[];
};

static size_t bring_slot(size_t size) { return (size + 7) & ~(size_t)7; }

/* which: the index in run.fd; the ring is which / 2. */
static int ep_open(struct ep *e, const struct run *ru, int which, enum rbus_role role)
{
	int err;

	*e = (struct ep){ .fd = ru->fd[which], .size = ru->size, .nb = ru->batch,
			  .zc = ru->mode == M_ZC, .block = ru->block };
	if (is_ring(ru->tr) && (err = rbus_channel_open(ru->r[which / 2], role, 0, &e->ch)))
		return cfail(ru, "rbus_channel_open", rbus_strerror(err));
	e->one_copy = e->ch && e->nb == 1 && !e->zc && !e->block;
	e->one_zc = e->ch && e->nb == 1 && e->zc && !e->block;
	e->what = role == RBUS_PRODUCER ? "rbus_send" : "rbus_recv";
	if (e->ch && ru->block && (err = rbus_channel_set_spin(e->ch, ru->spin)))
		return cfail(ru, "rbus_channel_set_spin", rbus_strerror(err));
	if (ru->tr == T_BRING) {
		e->br = ru->br;
		e->bmask = ru->capacity - 1;
		e->bslot = bring_slot(ru->size);
	}
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
static inline int ep_put(struct ep *e, uint64_t w)
{
	const bool one = e->nb == 1;
	void *p = NULL;
	int k, c;

	if (e->one_copy) {              /* e->what says "rbus_send" */
		put64(e->buf, w);
		k = rbus_send(e->ch, e->buf, e->size);
		return k ? k : 1;
	}
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
static inline int ep_get(struct ep *e)
{
	const void *p = NULL;
	ssize_t n;

	if (e->one_copy) {              /* e->what says "rbus_recv" */
		n = rbus_recv(e->ch, e->buf, e->size);
		e->iov[0].iov_len = (size_t)n;  /* iov_base is e->buf */
		return n < 0 ? (int)n : 1;
	}
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
static inline int ep_release(struct ep *e)
{
	int k;

	if (!e->zc)
		return 0;
	e->what = "rbus_release";
	k = rbus_release(e->ch);
	return k < 0 ? k : 0;
}

/* ---- throughput ------------------------------------------------------- */

/* A producer of one copied message a call (ep.one_copy) until the
 * deadline, its clock read every check + 1 messages: *seq messages sent,
 * *idles times the ring was full.  0, or -1 after reporting a failure. */
static int put_one_copy(const struct run *ru, struct ep *e, int idx, uint64_t deadline,
			unsigned check, uint64_t *seq_out, uint64_t *idles_out)
{
	const uint64_t from = (uint64_t)idx << SEQ_BITS;
	const unsigned pauses = full_pauses(ru);
	uint64_t seq = 0, idles = 0;
	unsigned spins = 0, iter = 0;
	int k;

	while ((++iter & check) || rb_now_ns() < deadline) {
		put64(e->buf, from | seq);
		if ((k = rbus_send(e->ch, e->buf, e->size)) == 0) {
			seq++;
		} else if (k == -EAGAIN) {
			idles++;
			idle(ru->oversub, &spins, pauses);
		} else {
			return ep_fail(ru, e, k);
		}
	}
	*seq_out = seq;
	*idles_out = idles;
	return 0;
}

/* A producer of one zero-copy message a call (ep.one_zc), as
 * put_one_copy(): each message written in its slot, its sequence word and
 * the rest copied in from e->buf, as ep_put() does. */
static int put_one_zc(const struct run *ru, struct ep *e, int idx, uint64_t deadline,
		      unsigned check, uint64_t *seq_out, uint64_t *idles_out)
{
	const uint64_t from = (uint64_t)idx << SEQ_BITS;
	const unsigned pauses = full_pauses(ru);
	const size_t size = e->size;
	uint64_t seq = 0, idles = 0;
	unsigned spins = 0, iter = 0;
	void *p;
	int k;

	while ((++iter & check) || rb_now_ns() < deadline) {
		if ((k = rbus_reserve(e->ch, &p)) == 0) {
			put64(p, from | seq);
			if (size > 8)
				copy_msg((char *)p + 8, e->buf + 8, size - 8);
			if ((k = rbus_commit(e->ch, size)) < 0) {
				e->what = "rbus_commit";
				return ep_fail(ru, e, k);
			}
			seq++;
		} else if (k == -EAGAIN) {
			idles++;
			idle(ru->oversub, &spins, pauses);
		} else {
			e->what = "rbus_reserve";
			return ep_fail(ru, e, k);
		}
	}
	*seq_out = seq;
	*idles_out = idles;
	return 0;
}

/* The bare ring's producer (T_BRING): each message's sequence word written
 * into its slot, the rest of it copied in from e->buf.  Nothing in it can
 * fail. */
static void put_bare(const struct run *ru, const struct ep *e, int idx, uint64_t deadline,
		     unsigned check, uint64_t *seq_out, uint64_t *idles_out)
{
	struct bring *const br = e->br;
	unsigned char *const buf = e->buf;
	const uint64_t from = (uint64_t)idx << SEQ_BITS, mask = e->bmask;
	const size_t size = e->size, slot = e->bslot;
	const unsigned pauses = full_pauses(ru);
	uint64_t seq = 0, idles = 0, pos = 0, limit = mask + 1;
	unsigned spins = 0, iter = 0;

	while ((++iter & check) || rb_now_ns() < deadline) {
		if (pos == limit) {
			/* Acquire: pairs with get_bare()'s release store of
			 * head: the consumer's reads of the slots below it are
			 * done. */
			limit = atomic_load_explicit(&br->head, memory_order_acquire) + mask + 1;
			if (pos == limit) {
				idles++;
				idle(ru->oversub, &spins, pauses);
				continue;
			}
		}
		unsigned char *const s = br->slots + (pos & mask) * slot;

		put64(s, from | seq);
		if (size > 8)
			copy_msg(s + 8, buf + 8, size - 8);
		/* Release: publishes the slot; pairs with get_bare()'s acquire
		 * load of tail. */
		atomic_store_explicit(&br->tail, ++pos, memory_order_release);
		seq++;
	}
	*seq_out = seq;
	*idles_out = idles;
}

/* Ring or stream (one write() per message; closing it ends the stream). */
static int producer(const struct run *ru, int idx)
{
	const unsigned check = ru->size >= 1024 ? 0 : 63;  /* clock every n+1 */
	uint64_t seq = 0, idles = 0, t0, deadline, w0[3];
	unsigned spins = 0, iter = 0, pauses = full_pauses(ru);
	struct ep e;
	int k;

	if (is_stream(ru->tr))
		close(ru->fd[0]);
	if (ep_open(&e, ru, 1, RBUS_PRODUCER))
		return -1;
	t0 = barrier(ru->np + ru->nc);
	deadline = t0 + opt.dur_ns;
	wait_counts(ru, w0);
	if (e.one_copy || e.one_zc) {
		if ((e.one_copy ? put_one_copy : put_one_zc)(ru, &e, idx, deadline, check,
							     &seq, &idles))
			return -1;
	} else if (e.br) {
		put_bare(ru, &e, idx, deadline, check, &seq, &idles);
	} else {
		while ((++iter & check) || rb_now_ns() < deadline) {
			if ((k = ep_put(&e, (uint64_t)idx << SEQ_BITS | seq)) == -EAGAIN) {
				idles++;
				idle(ru->oversub, &spins, pauses);
			} else if (k < 0) {
				return ep_fail(ru, &e, k);
			} else {
				seq += (unsigned)k;
			}
		}
	}
	waits_since(ru, w0, idx);       /* before our close wakes the consumers */
	shc->res[idx].t_start = t0;
	shc->res[idx].count = seq;
	shc->res[idx].idle = idles;
	/* Relaxed: published by the release increment of prod_done. */
	atomic_fetch_add_explicit(&shc->total_sent, seq, memory_order_relaxed);
	/* Release: publishes total_sent above; pairs with the acquire load
	 * in drained(). */
	atomic_fetch_add_explicit(&shc->prod_done, 1, memory_order_release);
	ep_close(&e);
	if (is_stream(ru->tr) && close(ru->fd[1]) < 0)
		return cfail(ru, "close", strerror(errno));
	return 0;
}

/* The ring is empty: are we done?  Yes once every producer has finished
 * and the consumers together have received what they sent. */
static bool drained(int np, uint64_t got, uint64_t *flushed)
{
	uint64_t sent, all;

	/* Acquire: pairs with the producers' release increments. */
	if (atomic_load_explicit(&shc->prod_done, memory_order_acquire) < np)
		return false;
	/* Relaxed: ordered after the acquire load above. */
	sent = atomic_load_explicit(&shc->total_sent, memory_order_relaxed);
	/* Relaxed: a sum; the increments of one word are totally ordered. */
	all = atomic_fetch_add_explicit(&shc->total_recv, got - *flushed,
					memory_order_relaxed) + (got - *flushed);
	*flushed = got;
	return all >= sent;             /* the parent compares the counts */
}

/*
 * A consumer checks every message: its length, and the sequence number in
 * its first word (+1 per message per producer with one consumer; strictly
 * increasing per producer with several).  It counts them and sums the
 * sequence numbers; the parent compares both with what was sent.
 *
 * verify_other(): any message but the successor of the last one (another
 * producer's, or a wrong one): 0, or -1 after reporting it.  next[p]:
 * producer p's next sequence number, as far as this consumer knows.
 */
static int verify_other(uint64_t *next, uint64_t expect, const struct run *ru, int idx,
			uint64_t w, size_t len)
{
	uint64_t p = w >> SEQ_BITS, s = w & SEQ_MASK;

	next[expect >> SEQ_BITS] = expect & SEQ_MASK;
	if (len == ru->size && p < (uint64_t)ru->np &&
	    (ru->nc == 1 ? s == next[p] : s >= next[p]))
		return 0;
	berr("%s: consumer %d: %zu bytes from producer %" PRIu64 " seq %" PRIu64
	     "; want %zu bytes, seq %s%" PRIu64,
	     ru->name, idx, len, p, s, ru->size, ru->nc == 1 ? "" : ">= ", next[p % MAXPROC]);
	return -1;
}

/* Check one message, inlined into the loops (*expect and *sum are their
 * locals, kept in registers): 0, or -1 after reporting it. */
static inline int verify(uint64_t *next, uint64_t *expect, uint64_t *sum,
			 const struct run *ru, int idx, uint64_t w, size_t len)
{
	if ((w != *expect || len != ru->size) && verify_other(next, *expect, ru, idx, w, len))
		return -1;
	*expect = w + 1;
	*sum += w & SEQ_MASK;
	return 0;
}

/* What a consumer found: counted and summed for the parent to compare. */
struct got {
	uint64_t count, sum, sink, idles;
};

/* A consumer of one copied message a call (ep.one_copy) until the ring is
 * drained.  0, or -1 after reporting a failure. */
static int get_one_copy(const struct run *ru, struct ep *e, int idx, struct got *g)
{
	uint64_t next[MAXPROC] = { 0 }, expect = 0, sum = 0, got = 0, flushed = 0, idles = 0;
	unsigned spins = 0;
	ssize_t n;

	for (;;) {
		if ((n = rbus_recv(e->ch, e->buf, e->size)) >= 0) {
			if (verify(next, &expect, &sum, ru, idx, get64(e->buf), (size_t)n))
				return -1;
			got++;
			continue;
		}
		/* -EPIPE: empty with no producer attached; the counts
		 * decide. */
		if (n != -EAGAIN && n != -EPIPE)
			return ep_fail(ru, e, (int)n);
		idles++;        /* as in get_any() */
		if (drained(ru->np, got, &flushed))
			break;
		idle(ru->oversub, &spins, 1);
	}
	*g = (struct got){ .count = got, .sum = sum, .idles = idles };
	return 0;
}

/* A consumer of one zero-copy message a call (ep.one_zc), as
 * get_one_copy(): each message read in place, every word of it, as
 * get_any() does. */
static int get_one_zc(const struct run *ru, struct ep *e, int idx, struct got *g)
{
	uint64_t next[MAXPROC] = { 0 }, expect = 0, sum = 0, got = 0, flushed = 0, idles = 0;
	uint64_t sink = 0, w;
	unsigned spins = 0;
	const void *p;
	ssize_t n;
	int k;

	for (;;) {
		if ((n = rbus_peek(e->ch, &p)) >= 0) {
			w = get64(p);
			sink += touch(p, (size_t)n);
			if ((k = rbus_release(e->ch)) < 0) {
				e->what = "rbus_release";
				return ep_fail(ru, e, k);
			}
			if (verify(next, &expect, &sum, ru, idx, w, (size_t)n))
				return -1;
			got++;
			continue;
		}
		/* -EPIPE: empty with no producer attached; the counts
		 * decide. */
		if (n != -EAGAIN && n != -EPIPE) {
			e->what = "rbus_peek";
			return ep_fail(ru, e, (int)n);
		}
		idles++;        /* as in get_any() */
		if (drained(ru->np, got, &flushed))
			break;
		idle(ru->oversub, &spins, 1);
	}
	*g = (struct got){ .count = got, .sum = sum, .sink = sink, .idles = idles };
	return 0;
}

/* The bare ring's consumer (T_BRING): each message's sequence word checked
 * as read from its slot, the rest of it copied out into e->buf.  As
 * get_one_copy(). */
static int get_bare(const struct run *ru, const struct ep *e, int idx, struct got *g)
{
	struct bring *const br = e->br;
	unsigned char *const buf = e->buf;
	const uint64_t mask = e->bmask;
	const size_t size = e->size, slot = e->bslot;
	uint64_t next[MAXPROC] = { 0 }, expect = 0, sum = 0, got = 0, flushed = 0, idles = 0;
	uint64_t pos = 0, limit = 0;
	unsigned spins = 0;

	for (;;) {
		if (pos == limit) {
			/* Acquire: pairs with put_bare()'s release store of
			 * tail: the slots below it are written. */
			limit = atomic_load_explicit(&br->tail, memory_order_acquire);
			if (pos == limit) {
				idles++;        /* as in get_any() */
				if (drained(ru->np, got, &flushed))
					break;
				idle(ru->oversub, &spins, 1);
				continue;
			}
		}
		const unsigned char *const s = br->slots + (pos & mask) * slot;
		const uint64_t w = get64(s);

		if (size > 8)
			copy_msg(buf + 8, s + 8, size - 8);
		/* Release: our reads of the slot are done; pairs with
		 * put_bare()'s acquire load of head. */
		atomic_store_explicit(&br->head, ++pos, memory_order_release);
		if (verify(next, &expect, &sum, ru, idx, w, size))
			return -1;
		got++;
	}
	*g = (struct got){ .count = got, .sum = sum, .idles = idles };
	return 0;
}

/* A consumer of anything else (batches, copied or zero-copy, and blocking
 * calls), through ep_get(), until the ring is drained.  As above. */
static int get_any(const struct run *ru, struct ep *e, int idx, struct got *g)
{
	uint64_t next[MAXPROC] = { 0 }, expect = 0, sum = 0, got = 0, flushed = 0, idles = 0;
	uint64_t sink = 0;
	unsigned spins = 0;
	int k;

	/* -EPIPE: empty with no producer attached; the counts decide. */
	while ((k = ep_get(e)) >= 0 || k == -EAGAIN || k == -EPIPE) {
		if (k < 0) {
			/* Counted before the drained check, so the last
			 * look counts too: every ring's count is >= 1. */
			idles++;
			if (drained(ru->np, got, &flushed))
				break;
			idle(ru->oversub, &spins, 1);
			continue;
		}
		for (int j = 0; j < k; j++)
			if (verify(next, &expect, &sum, ru, idx, get64(e->iov[j].iov_base),
				   e->iov[j].iov_len))
				return -1;
		for (int j = 0; e->zc && j < k; j++)
			sink += touch(e->iov[j].iov_base, ru->size);
		got += (unsigned)k;
		if ((k = ep_release(e)) < 0)
			break;
	}
	if (k < 0 && k != -EAGAIN && k != -EPIPE)
		return ep_fail(ru, e, k);
	*g = (struct got){ .count = got, .sum = sum, .sink = sink, .idles = idles };
	return 0;
}

static int ring_consumer(const struct run *ru, int idx)
{
	struct got g;
	struct ep e;

	if (ep_open(&e, ru, 0, RBUS_CONSUMER))
		return -1;
	barrier(ru->np + ru->nc);
	if (e.one_copy ? get_one_copy(ru, &e, idx, &g) :
	    e.one_zc ? get_one_zc(ru, &e, idx, &g) :
	    e.br ? get_bare(ru, &e, idx, &g) : get_any(ru, &e, idx, &g))
		return -1;
	shc->res[idx] = (struct proc_res){ .t_end = rb_now_ns(), .count = g.count, .sum = g.sum,
					   .sink = g.sink, .idle = g.idles };
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
	shc->res[idx] = (struct proc_res){ .t_end = rb_now_ns(), .count = seq, .sum = sum };
	free(buf);
	return 0;
}

/* ---- round trips ------------------------------------------------------ */

/*
 * The pinger's clock.  Round trips run for warm ticks untimed, then for dur
 * ticks timed: the TSC is read at the start of every round trip,
 * and the difference to the previous reading goes into the histogram (the
 * same for every transport: the loop's own cost is in each figure).
 */
struct pclock {
	struct rb_hist *h;
	uint64_t warm, dur;             /* ticks: warm-up, then timed */
	uint64_t until, prev;
	bool timed;
};

static int pclock_init(const struct run *ru, struct pclock *pc, uint64_t warm, uint64_t dur)
{
	*pc = (struct pclock){ .h = calloc(1, sizeof(*pc->h)), .warm = warm, .dur = dur };
	if (!pc->h)
		return cfail(ru, "malloc", strerror(ENOMEM));
	return 0;
}

/* Called at the start of each round trip.  Returns 1 when the time is up,
 * 2 when the warm-up just ended (the timed part starts now), 0 else. */
static int pclock_tick(struct pclock *pc, bool started)
{
	uint64_t t = ticks();
	int r = 0;

	if (!started) {
		pc->until = t + pc->warm;
		pc->prev = t;
		return 0;
	}
	if (pc->timed)
		rb_hist_add(pc->h, tick_ns(t - pc->prev));
	if (t >= pc->until) {
		if (pc->timed)
			return 1;
		pc->timed = true;
		pc->until = t + pc->dur;
		r = 2;
	}
	pc->prev = t;
	return r;
}

/* Hand the histogram to the parent. */
static void pclock_done(struct pclock *pc, struct rb_hist *to)
{
	*to = *pc->h;
	free(pc->h);
}

/* The reference: A stores i in its word, B spins until it sees i and stores
 * i in its own word (pong), A spins until it sees that.  Nothing else.  A
 * times it with pc, then ends it by storing STOP; B returns when it sees
 * that.  Once per run: the words start at 0. */
static int line_bounce(const struct run *ru, int idx, _Atomic uint64_t *pong,
		       struct pclock *pc)
{
	uint64_t i, v;

	if (idx == 1) {
		for (i = 1;; i++) {
			/* Acquire: pairs with A's release store of ping (a
			 * payload written before it would be visible). */
			while ((v = atomic_load_explicit(&shc->ping, memory_order_acquire)) == i - 1)
				cpu_relax();
			if (v == STOP)
				return 0;
			if (v != i)
				return cfail(ru, "ping", "wrong sequence number");
			/* Release: pairs with A's acquire load of pong. */
			atomic_store_explicit(pong, i, memory_order_release);
		}
	}
	pclock_tick(pc, false);
	for (i = 1; pclock_tick(pc, true) != 1; i++) {
		/* Release: pairs with B's acquire load of ping. */
		atomic_store_explicit(&shc->ping, i, memory_order_release);
		/* Acquire: pairs with B's release store of pong. */
		while (atomic_load_explicit(pong, memory_order_acquire) != i)
			cpu_relax();
	}
	atomic_store_explicit(&shc->ping, STOP, memory_order_release);
	return 0;
}

static int line_pingpong(const struct run *ru, int idx)
{
	struct pclock pc;

	if (idx == 0 && pclock_init(ru, &pc, ru->warm_ticks, ru->dur_ticks))
		return -1;
	barrier(2);
	if (line_bounce(ru, idx, ru->batch == 1 ? &shc->pong1 : &shc->pong, &pc))
		return -1;
	if (idx == 0)
		pclock_done(&pc, &shc->hist);
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
 * CPU time over the timed part.  A ends the run with a STOP message. */
static int pingpong(const struct run *ru, int idx)
{
	uint64_t sink = 0, w0[3] = { 0 }, c0 = 0, c1 = 0, t0 = 0, w;
	struct pclock pc = { 0 };
	struct ep tx, rx;
	int k;

	if (ep_open(&tx, ru, idx ? 3 : 1, RBUS_PRODUCER) ||
	    ep_open(&rx, ru, idx ? 0 : 2, RBUS_CONSUMER))
		return -1;
	if (!idx && pclock_init(ru, &pc, ru->warm_ticks, ru->dur_ticks))
		return -1;
	barrier(2);
	if (ru->ref_ticks) {
		/* The reference of this repetition, at the same moment on the
		 * same CPUs: the host may move the vCPUs between repetitions. */
		struct pclock rc;

		if (!idx && pclock_init(ru, &rc, ru->warm_ticks, ru->ref_ticks))
			return -1;
		if (line_bounce(ru, idx, &shc->pong, &rc))
			return -1;
		if (!idx)
			pclock_done(&rc, &shc->href);
	}
	if (!idx)
		pclock_tick(&pc, false);
	for (uint64_t i = 0;; i++) {
		if (idx == 0) {
			if ((k = pclock_tick(&pc, true)) == 1)
				break;
			if (k == 2 && ru->block) {
				wait_counts(ru, w0);
				if ((k = cpu_time(CLOCK_PROCESS_CPUTIME_ID, &c0)))
					return cfail(ru, "clock_gettime", strerror(k));
				t0 = rb_now_ns();
			}
			if (send_wait(ru, &tx, i))
				return -1;
		}
		while ((k = ep_get(&rx)) == -EAGAIN)
			cpu_relax();
		if (k < 0)
			return ep_fail(ru, &rx, k);
		w = get64(rx.iov[0].iov_base);
		if (idx == 1 && w == STOP && rx.iov[0].iov_len == ru->size) {
			if ((k = ep_release(&rx)) < 0)
				return ep_fail(ru, &rx, k);
			break;
		}
		if (rx.iov[0].iov_len != ru->size || w != i)
			return cfail(ru, rx.what, "wrong message (length or sequence number)");
		if (rx.zc)
			sink += touch(rx.iov[0].iov_base, ru->size);
		if ((k = ep_release(&rx)) < 0)
			return ep_fail(ru, &rx, k);
		if (idx == 1 && send_wait(ru, &tx, i))
			return -1;
	}
	if (idx == 0) {
		if (ru->block) {
			if ((k = cpu_time(CLOCK_PROCESS_CPUTIME_ID, &c1)))
				return cfail(ru, "clock_gettime", strerror(k));
			shc->res[0].cpu_ns = c1 - c0;
			shc->res[0].wall_ns = rb_now_ns() - t0;
			waits_since(ru, w0, 0);
		}
		if (send_wait(ru, &tx, STOP))
			return -1;
		pclock_done(&pc, &shc->hist);
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
 * Bare baselines, one message: tell the peer that round trip i is here, or
 * (A, stop) that the run is over.
 * Futex: store i in our word and wake the peer, always (no waiter count);
 * the word is shared between processes, so no FUTEX_PRIVATE_FLAG.
 * Eventfd: write 1 (stop: 2) to the eventfd towards the peer (fd[0] A->B,
 * fd[2] B->A).
 */
static int bare_post(const struct run *ru, int idx, uint64_t i, bool stop)
{
	const uint64_t n = stop ? 2 : 1;
	int k;

	if (ru->tr == T_FUTEX) {
		_Atomic uint32_t *w = idx ? &shc->fpong : &shc->fping;

		if (stop)
			atomic_store_explicit(&shc->stop, 1, memory_order_relaxed);
		/* Release: publishes stop (and a payload, would there be
		 * one); pairs with the acquire load in the peer's
		 * bare_wait(). */
		atomic_store_explicit(w, (uint32_t)i, memory_order_release);
		if (futex(w, FUTEX_WAKE, 1) < 0)
			return cfail(ru, "FUTEX_WAKE", strerror(errno));
		return 0;
	}
	if ((k = xfer(ru->fd[idx ? 2 : 0], (unsigned char *)&n, sizeof(n), true)))
		return cfail(ru, "write", strerror(-k));
	return 0;
}

/* ... and wait until the peer says round trip i is back (or here).  Returns
 * 0, 1 if the peer said stop, or -1. */
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
		/* Relaxed: ordered by the acquire load above. */
		return atomic_load_explicit(&shc->stop, memory_order_relaxed) ? 1 : 0;
	}
	/* A blocking read takes the whole count, which is 1 (or 2, stop):
	 * one message is in flight at a time. */
	if ((k = xfer(ru->fd[idx ? 0 : 2], (unsigned char *)&n, sizeof(n), false)))
		return cfail(ru, "read", strerror(-k));
	if (n != 1 && n != 2)
		return cfail(ru, "read", "eventfd count is neither 1 nor 2");
	return n == 2;
}

/* The bare futex or eventfd ping-pong: A posts i and waits for B's i; B
 * waits for A's i and posts its own.  Nothing else.  The pinger measures
 * its CPU time over the timed part, as pingpong() does. */
static int bare_pingpong(const struct run *ru, int idx)
{
	uint64_t c0 = 0, c1 = 0, t0 = 0, i;
	struct pclock pc;
	int k;

	if (idx == 1) {
		barrier(2);
		for (i = 1;; i++) {
			if ((k = bare_wait(ru, 1, i)) != 0)
				return k < 0 ? -1 : 0;
			if (bare_post(ru, 1, i, false))
				return -1;
		}
	}
	if (pclock_init(ru, &pc, ru->warm_ticks, ru->dur_ticks))
		return -1;
	barrier(2);
	pclock_tick(&pc, false);
	for (i = 1; (k = pclock_tick(&pc, true)) != 1; i++) {
		if (k == 2) {
			if ((k = cpu_time(CLOCK_PROCESS_CPUTIME_ID, &c0)))
				return cfail(ru, "clock_gettime", strerror(k));
			t0 = rb_now_ns();
		}
		if (bare_post(ru, 0, i, false) || bare_wait(ru, 0, i))
			return -1;
	}
	if ((k = cpu_time(CLOCK_PROCESS_CPUTIME_ID, &c1)))
		return cfail(ru, "clock_gettime", strerror(k));
	shc->res[0].cpu_ns = c1 - c0;
	shc->res[0].wall_ns = rb_now_ns() - t0;
	if (bare_post(ru, 0, i, true))
		return -1;
	pclock_done(&pc, &shc->hist);
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
	t0 = rb_now_ns();
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
	t1 = rb_now_ns();
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

/* A ring: a memfd region, or with --backend shm a POSIX shm object, whose
 * name is unlinked at once (the mapping, which the children inherit, stays;
 * nothing is left behind if the run dies). */
static int ring_create(const struct rbus_region_opts *o0, struct rbus_region **r)
{
	static unsigned seq;
	struct rbus_region_opts o = *o0;
	char name[64];
	int err;

	if (!opt.shm)
		return rbus_region_create(&o, r);
	snprintf(name, sizeof(name), "/ringbus-bench-%ld-%u", (long)getpid(), seq++);
	o.shm_name = name;
	if ((err = rbus_region_create(&o, r)) == 0 && shm_unlink(name) < 0) {
		err = -errno;
		rbus_region_close(*r);
		*r = NULL;
	}
	return err;
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
	ru->capacity = capacity;
	ru->br = NULL;
	if (ru->tr == T_BRING) {
		/* Populated before the fork: every page is there when they
		 * start, as a region's are (rbus_region_create() reserves them). */
		ru->br_len = sizeof(struct bring) + capacity * bring_slot(ru->size);
		ru->br = mmap(NULL, ru->br_len, PROT_READ | PROT_WRITE,
			      MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
		if (ru->br == MAP_FAILED) {
			ru->br = NULL;
			berr("%s: mmap: %s", ru->name, strerror(errno));
			return -1;
		}
		return 0;
	}
	for (int i = 0; i < nrings && ru->tr != T_LINE && ru->tr != T_FUTEX; i++) {
		rbus_region_opts_init(&o);
		o.kind = ru->tr == T_SPSC ? RBUS_KIND_SPSC : RBUS_KIND_MPMC;
		o.capacity = capacity;
		o.max_msg = (uint32_t)ru->size;
		if (ru->wakeup)
			o.wakeup = ru->wakeup;
		if (ru->tr == T_EVENTFD)
			err = (ru->fd[2 * i] = eventfd(0, EFD_CLOEXEC)) < 0 ? -errno : 0;
		else if (is_ring(ru->tr))
			err = ring_create(&o, &ru->r[i]);
		else
			err = (ru->tr == T_PIPE ? pipe(ru->fd + 2 * i) :
			       socketpair(AF_UNIX, SOCK_STREAM, 0, ru->fd + 2 * i)) < 0 ? -errno : 0;
		if (err) {
			berr("%s: %s: %s", ru->name, is_ring(ru->tr) ? "rbus_region_create" :
			       ru->tr == T_PIPE ? "pipe" : ru->tr == T_UNIX ? "socketpair" :
			       "eventfd", rbus_strerror(err));
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
 * idx pinned to opt.cpus[idx % 2]), wait for them all, killing the others
 * when one fails.  A child still running long after its time (a minute
 * plus four times the longest measurement) dies of SIGALRM.  Returns 0 if
 * all exited with status 0.
 */
static int run_procs(struct run *ru, int nrings, uint32_t capacity, int n, int na,
		     child_fn fa, child_fn fb)
{
	const uint64_t longest = opt.dur_ns > opt.idle_ns ? opt.dur_ns : opt.idle_ns;
	const unsigned watchdog = 60 + (unsigned)(4 * longest / 1000000000u);
	pid_t pids[MAXPROC];
	int started = 0, bad = setup(ru, nrings, capacity), st, i, err;

	memset(shc, 0, sizeof(*shc));
	fflush(NULL);
	for (; started < n && !bad; started++) {
		if ((pids[started] = fork()) < 0) {
			berr("fork: %s", strerror(errno));
			kill_left(pids, started);
			bad = 1;
			break;
		}
		if (pids[started] == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			alarm(watchdog);
			if ((err = rb_pin(opt.cpus[started % 2])) < 0)
				_exit(cfail(ru, "sched_setaffinity", strerror(-err)) ? 1 : 0);
			_exit((started < na ? fa : fb)(ru, started) ? 1 : 0);
		}
	}
	close_fds(ru);                  /* the stream consumers wait for EOF */
	for (int left = started; left > 0; left--) {
		pid_t pid = waitpid(-1, &st, 0);

		if (pid < 0) {
			berr("waitpid: %s", strerror(errno));
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
			berr("%s: process %d %s %d", ru->name, i,
			       WIFEXITED(st) ? "exited with status" : "killed by signal",
			       WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
		bad = 1;
		kill_left(pids, started);
	}
	rbus_region_close(ru->r[0]);
	rbus_region_close(ru->r[1]);
	if (ru->br)
		munmap(ru->br, ru->br_len);
	return bad ? -1 : 0;
}

/* ---- the benchmark ---------------------------------------------------- */

static int step, nsteps;                /* progress: repetitions run, to run */

static const char *tr_name(enum transport tr, int np)
{
	static const char *const names[] = { "pipe", "AF_UNIX stream", "ringbus SPSC",
					     "ringbus MPMC 1p1c", "bare cache line",
					     "bare futex", "bare eventfd", "bare SPSC ring" };

	return tr == T_MPMC && np > 1 ? "ringbus MPMC 2p2c" : names[tr];
}

/* For --json. */
static const char *tr_key(enum transport tr)
{
	static const char *const keys[] = { "pipe", "af_unix", "spsc", "mpmc", "line",
					     "futex", "eventfd", "bare_ring" };

	return keys[tr];
}

static const char *mode_name(const struct tcase *c)
{
	if (c->tr == T_BRING)
		return "copy";
	if (!is_ring(c->tr))
		return c->tr != T_LINE ? "write/read" : c->batch == 1 ? "1 line" : "2 lines";
	if (c->batch > 1)
		return c->mode == M_ZC ? "zc b32" : "copy b32";
	return c->mode == M_ZC ? "zc" : "copy";
}

/* The message size of test t at size index si. */
static size_t tc_size(const struct tcase *c, int si)
{
	return c->tr == T_LINE ? 8 : opt.sizes[si];
}

/* Does test t run at size index si (--only, --kind, --mode)? */
static bool tc_selected(size_t t, int si)
{
	const struct tcase *c = &tcases[t];
	unsigned sel = (c->rtt ? SEL_RING_RT : SEL_RING_TP) << !is_ring(c->tr);

	if (!(opt.sel & sel))
		return false;
	if (c->tr == T_LINE)
		return si == 0;
	if (!is_ring(c->tr))
		return true;
	return (opt.kinds & (c->tr == T_SPSC ? K_SPSC : K_MPMC)) &&
	       (opt.modes & (1u << c->mode));
}

/* Does wakeup test c run (--only, --wakeup; the rings' tests are SPSC copy:
 * --kind and --mode)? */
static bool wc_selected(const struct wcase *c)
{
	if (!(opt.sel & (is_ring(c->tr) ? SEL_RING_WAKE : SEL_BASE_WAKE)))
		return false;
	if (c->spin != S_POLL &&
	    !(opt.wakeups & (c->wakeup == RBUS_WAKE_EVENTFD ? W_EVENTFD_BIT : W_FUTEX_BIT)))
		return false;
	return !is_ring(c->tr) || ((opt.kinds & K_SPSC) && (opt.modes & (1u << M_COPY)));
}

static void progress(const char *name, int rep)
{
	step++;
	rb_live(&live, "bench [%d/%d] %s, repetition %d of %d", step, nsteps, name, rep + 1,
		opt.reps);
}

/* Verify one throughput repetition and compute its rate. */
static int tp_collect(const struct run *ru, double *rate, double *msgs, double *full,
		      double *empty)
{
	uint64_t sent = 0, recv = 0, sum = 0, want = 0, t0 = UINT64_MAX, t1 = 0;
	uint64_t pidle = 0, cidle = 0;

	for (int i = 0; i < ru->np + ru->nc; i++) {
		const struct proc_res *p = &shc->res[i];

		if (i < ru->np) {
			sent += p->count;
			pidle += p->idle;
			want += p->count ? p->count * (p->count - 1) / 2 : 0;
			t0 = p->t_start < t0 ? p->t_start : t0;
		} else {
			recv += p->count;
			cidle += p->idle;
			sum += p->sum;
			t1 = p->t_end > t1 ? p->t_end : t1;
		}
	}
	if (recv != sent || sum != want || !sent || t1 <= t0) {
		berr("%s: verification failed: sent %" PRIu64 ", received %" PRIu64
		       ", sum of sequence numbers %" PRIu64 " (want %" PRIu64 ")",
		       ru->name, sent, recv, sum, want);
		return -1;
	}
	*rate = (double)recv * 1e9 / (double)(t1 - t0);
	*msgs = (double)recv;
	if (full)
		*full = (double)pidle / (double)sent;
	if (empty)
		*empty = (double)cidle / (double)recv;
	return 0;
}

/* The percentiles of one repetition's round trips into v[V_P50..V_ROUNDS][rep]. */
static int rt_collect(const struct run *ru, double v[NVAL][RMAX], int rep)
{
	static const double q[] = { [V_P50] = 0.50, [V_P90] = 0.90, [V_P99] = 0.99,
				    [V_P999] = 0.999, [V_MAX] = 1.0 };
	const struct rb_hist *h = &shc->hist;

	if (!h->n) {
		berr("%s: no round trip was timed", ru->name);
		return -1;
	}
	for (int i = V_P50; i <= V_MAX; i++)
		v[i][rep] = (double)rb_hist_pct(h, q[i]);
	v[V_ROUNDS][rep] = (double)h->n;
	return 0;
}

/* One repetition of test t at size index si; its values go to vals[t][si][.][rep]. */
static int bench_rep(size_t t, int si, int rep)
{
	const struct tcase *c = &tcases[t];
	child_fn pp = c->tr == T_LINE ? line_pingpong : pingpong;
	child_fn fa = c->rtt ? pp : producer;
	child_fn fb = c->rtt ? pp : is_stream(c->tr) ? stream_consumer : ring_consumer;
	const size_t size = tc_size(c, si);
	double (*v)[RMAX] = vals[t][si];
	struct run ru = { .tr = c->tr, .mode = c->mode, .batch = c->batch, .size = size,
			  .np = c->np, .nc = c->nc, .oversub = c->np + c->nc > 2,
			  .wakeup = opt.wakeup, .warm_ticks = ns_ticks(opt.dur_ns / 10),
			  .dur_ticks = ns_ticks(opt.dur_ns),
			  .ref_ticks = c->rtt && is_ring(c->tr) ? ns_ticks(opt.dur_ns / 3) : 0 };

	snprintf(ru.name, sizeof(ru.name), "%s%s %zu B %s", c->rtt ? "round trip " : "",
		 tr_name(c->tr, c->np), size, mode_name(c));
	progress(ru.name, rep);
	if (run_procs(&ru, c->rtt ? 2 : 1, c->rtt ? pp_capacity(size) : capacity_for(size),
		      c->np + c->nc, c->np, fa, fb))
		return -1;
	if (!c->rtt)
		return tp_collect(&ru, &v[V_RATE][rep], &v[V_MSGS][rep], &v[V_FULL][rep],
				  &v[V_EMPTY][rep]);
	if (rt_collect(&ru, v, rep))
		return -1;
	if (ru.ref_ticks) {
		if (!shc->href.n) {
			berr("%s: no round trip of the bare cache line was timed", ru.name);
			return -1;
		}
		v[V_REF][rep] = (double)rb_hist_pct(&shc->href, 0.5);
		v[V_VSREF][rep] = v[V_P50][rep] / v[V_REF][rep];
	}
	return 0;
}

/*
 * Run every selected test opt.reps times, in rounds: every test once (size
 * by size, baselines first), then every test again ...  On these VMs the
 * host moves the two vCPUs now and then, and a cache line's round trip
 * between them goes from ~110 ns to ~450 ns for seconds or minutes; run
 * back to back, all repetitions of one figure could land in one state and
 * those of the figure it is compared with in the other.  In rounds, every
 * figure samples the same stretch of time.
 */
static int bench(void)
{
	for (int rep = 0; rep < opt.reps; rep++)
		for (int si = 0; si < opt.nsizes; si++)
			for (size_t t = 0; t < NTC; t++)
				if (tc_selected(t, si) && bench_rep(t, si, rep))
					return -1;
	for (int si = 0; si < opt.nsizes; si++)
		for (size_t t = 0; t < NTC; t++) {
			struct fig *f = &figs[t][si];
			double tmp[RMAX];

			if (!tc_selected(t, si))
				continue;
			f->ran = true;
			for (int i = 0; i < NVAL; i++) {
				/* stats() sorts: keep vals[] in the order of the rounds. */
				memcpy(tmp, vals[t][si][i], sizeof(tmp));
				f->med[i] = stats(tmp, opt.reps, &f->min[i], &f->max[i]);
			}
		}
	return 0;
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
			 rb_wakeup_name(c->wakeup), c->spin == S_ZERO ? " spin 0" : "");
}

/* One repetition of wakeup test c; its values go to v[i][rep]. */
static int wake_rep(const struct wcase *c, double v[NVAL][RMAX], int rep)
{
	const bool bare = !is_ring(c->tr);
	const struct proc_res *p = &shc->res[0];
	child_fn fa = bare ? bare_pingpong : pingpong, fb = fa;
	uint32_t capacity = PP_CAPACITY;
	int nrings = 2;
	struct run ru = { .tr = c->tr, .mode = M_COPY, .batch = 1, .size = WSIZE,
			  .np = 1, .nc = 1, .block = c->spin != S_POLL,
			  .spin = c->spin == S_ZERO ? 0 : opt.spin,
			  .wakeup = c->spin == S_POLL ? opt.wakeup : c->wakeup,
			  .warm_ticks = ns_ticks(opt.dur_ns / 10),
			  .dur_ticks = ns_ticks(opt.dur_ns) };

	wake_test_name(c, ru.name, sizeof(ru.name));
	if (c->kind == W_STREAM) {
		fa = producer;
		fb = ring_consumer;
		nrings = 1;
		capacity = capacity_for(WSIZE);
	} else if (c->kind == W_IDLE) {
		fa = idle_waker;
		fb = idle_consumer;
		nrings = 1;
	}
	progress(ru.name, rep);
	if (run_procs(&ru, nrings, capacity, 2, 1, fa, fb))
		return -1;
	if (c->kind == W_RTT) {
		if (rt_collect(&ru, v, rep))
			return -1;
		v[V_SLEEPS][rep] = (double)p->waits[0] / v[V_ROUNDS][rep];
		v[V_WAKES][rep] = (double)p->waits[1] / v[V_ROUNDS][rep];
		/* Busy polling spins all the time: 100 %, not measured. */
		v[V_CPU][rep] = ru.block ? (double)p->cpu_ns * 100 / (double)p->wall_ns : 100;
	} else if (c->kind == W_STREAM) {
		if (tp_collect(&ru, &v[V_RATE][rep], &v[V_MSGS][rep], NULL, NULL))
			return -1;
		/* Per message sent in the producer's timed loop, the window
		 * of its counts. */
		v[V_WAKES1K][rep] = (double)p->waits[1] * 1000 / (double)p->count;
		v[V_BLIND1K][rep] = (double)p->waits[2] * 1000 / (double)p->count;
		v[V_SLEEPS1K][rep] = (double)p->waits[0] * 1000 / (double)p->count;
	} else {
		v[V_IDLE_CPU][rep] = (double)p->cpu_ns / 1e6 * 5e9 / (double)p->wall_ns;
		v[V_IDLE_SLEEPS][rep] = (double)p->waits[0];
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
	static const int nval[] = { [W_RTT] = NVAL, [W_STREAM] = 5, [W_IDLE] = 2 };
	static double v[NWC][NVAL][RMAX];

	for (int rep = 0; rep < opt.reps; rep++)
		for (size_t t = 0; t < NWC; t++) {
			const struct wcase *c = &wcases[t];
			struct fig *f = &wfigs[t];

			if (!wc_selected(c))
				continue;
			if (wake_rep(c, v[t], rep))
				return -1;
			if (rep < opt.reps - 1)
				continue;
			f->ran = true;
			for (int i = 0; i < nval[c->kind]; i++)
				f->med[i] = stats(v[t][i], opt.reps, &f->min[i], &f->max[i]);
		}
	return 0;
}

/* How many repetitions the run has, for the progress line. */
static int count_steps(void)
{
	int n = 0;

	for (int si = 0; si < opt.nsizes; si++)
		for (size_t t = 0; t < NTC; t++)
			n += tc_selected(t, si);
	for (size_t t = 0; t < NWC; t++)
		n += wc_selected(&wcases[t]);
	return n * opt.reps;
}

/* ---- figures and targets -------------------------------------------------- */

/* The figure of a test, or NULL if it did not run. */
static const struct fig *find(bool rtt, enum transport tr, int np, enum mode mode,
			      unsigned batch, size_t size)
{
	for (size_t t = 0; t < NTC; t++)
		for (int si = 0; si < opt.nsizes; si++)
			if (tcases[t].rtt == rtt && tcases[t].tr == tr && tcases[t].np == np &&
			    tcases[t].mode == mode && tcases[t].batch == batch &&
			    tc_size(&tcases[t], si) == size && figs[t][si].ran)
				return &figs[t][si];
	return NULL;
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

/* The reference of a round trip: the bare cache line (2 lines). */
static const struct fig *rt_ref(void)
{
	return find(1, T_LINE, 1, M_COPY, 2, 8);
}

/* The bare line's p50 of every round (where the host stood), or NULL if
 * it did not run. */
static const double *rt_ref_rounds(void)
{
	for (size_t t = 0; t < NTC; t++)
		if (tcases[t].tr == T_LINE && tcases[t].batch == 2 && figs[t][0].ran)
			return vals[t][0][V_P50];
	return NULL;
}

/* What a blocking round trip is compared with: busy polling when it spins,
 * the bare primitive of its backend when it does not. */
static const struct fig *wref(const struct wcase *c, const char **name)
{
	*name = NULL;
	if (!is_ring(c->tr) || c->spin == S_POLL)
		return NULL;
	if (c->spin == S_ZERO) {
		*name = c->wakeup == RBUS_WAKE_EVENTFD ? "bare_eventfd" : "bare_futex";
		return wfind(W_RTT, c->wakeup == RBUS_WAKE_EVENTFD ? T_EVENTFD : T_FUTEX,
			     c->wakeup, S_SPIN);
	}
	*name = "poll";
	return wfind(W_RTT, T_SPSC, RBUS_WAKE_FUTEX, S_POLL);
}

/* "x.xx" of a / b, or "-" without b. */
static const char *ratio(char *buf, size_t len, const struct fig *a, const struct fig *b,
			 int prec)
{
	if (b)
		snprintf(buf, len, "%.*fx", prec, a->med[0] / b->med[0]);
	return b ? buf : "-";
}

enum cmp { AT_LEAST, AT_MOST, BELOW };  /* >=, <=, < */
enum { T_PASS, T_FAIL, T_SKIP };

/* The targets' outcomes, printed at the end (text or JSON). */
static struct target_res {
	char what[160];
	char note[160];                 /* a second line instead of the values, or "" */
	char ctx[160];                  /* a line after the values, or "" */
	int result;                     /* T_PASS, T_FAIL, T_SKIP */
	bool rel;
	double ratio;                   /* rel: what is compared with k */
	double scale;
	const char *unit;
	struct fig a, b;
} tres[24];
static int ntres;

/* The next target's entry, cleared, named what; skipped until decided. */
static struct target_res *new_target(const char *what)
{
	struct target_res *t = &tres[ntres < 24 ? ntres++ : 23];

	*t = (struct target_res){ .result = T_SKIP };
	snprintf(t->what, sizeof(t->what), "%s", what);
	return t;
}

/*
 * One target: a's median >= k x b's median (or <=, <: cmp), or >= k when
 * !rel.  Values are shown divided by scale.  Returns 1 if it failed.
 */
static int target(const char *what, const struct fig *a, const struct fig *b, bool rel,
		  double k, enum cmp cmp, double scale, const char *unit)
{
	struct target_res *t = new_target(what);
	double x = a ? a->med[0] : 0, y = rel ? (b ? b->med[0] * k : 0) : k;
	bool pass = cmp == AT_LEAST ? x >= y : cmp == AT_MOST ? x <= y : x < y;

	t->rel = rel;
	t->scale = scale;
	t->unit = unit;
	if (!a || (rel && !b)) {
		t->result = T_SKIP;
		return 0;
	}
	t->result = pass ? T_PASS : T_FAIL;
	t->a = *a;
	if (b) {
		t->b = *b;
		t->ratio = x / b->med[0];
	}
	return !pass;
}

/* A round-trip target: the p50 of ring round trip f <= k x the p50 of the
 * bare cache line bounced by the same processes just before, as the median
 * of the repetitions' ratios (V_VSREF).  Returns 1 if it failed. */
static int target_paired(const char *what, const struct fig *f, double k)
{
	struct target_res *t = new_target(what);

	t->rel = true;
	t->scale = 1;
	t->unit = "ns";
	if (!f)
		return 0;
	t->a = *f;
	t->b = (struct fig){ .ran = true, .med[0] = f->med[V_REF], .min[0] = f->min[V_REF],
			     .max[0] = f->max[V_REF] };
	t->ratio = f->med[V_VSREF];
	t->result = t->ratio <= k ? T_PASS : T_FAIL;
	snprintf(t->ctx, sizeof(t->ctx), "ratio: the median of the repetitions' ratios "
		 "(spread %.2f..%.2f)", f->min[V_VSREF], f->max[V_VSREF]);
	return t->result == T_FAIL;
}

/* The last target's context: the bare SPSC ring of that size, if it ran. */
static void ctx_bare_ring(size_t size)
{
	const struct fig *b = find(0, T_BRING, 1, M_COPY, 1, size);

	if (b && ntres)
		snprintf(tres[ntres - 1].ctx, sizeof(tres[0].ctx), "the bare SPSC ring, %zu B, "
			 "in this run: %.4g msg/s (spread %.4g..%.4g)", size, b->med[V_RATE],
			 b->min[V_RATE], b->max[V_RATE]);
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

/* The spin budget in words: "default spin" or "spin N ns". */
static const char *spin_words(char *buf, size_t len)
{
	if (opt.spin == RBUS_SPIN_DEFAULT_NS)
		snprintf(buf, len, "default spin");
	else
		snprintf(buf, len, "spin %" PRIu32 " ns", opt.spin);
	return buf;
}

/* The wakeup targets of one backend; returns how many failed. */
static int wake_targets(uint32_t wakeup)
{
	const char *w = rb_wakeup_name(wakeup);
	const enum transport bare = wakeup == RBUS_WAKE_EVENTFD ? T_EVENTFD : T_FUTEX;
	char what[4][160], spin[32];
	struct fig tmp;
	int fails = 0;

	snprintf(what[0], sizeof(what[0]), "blocking ping-pong SPSC 64 B %s, %s: RTT p50 <= 2x "
		 "busy-polling SPSC 64 B p50", w, spin_words(spin, sizeof(spin)));
	snprintf(what[1], sizeof(what[1]), "blocking ping-pong SPSC 64 B %s, spin 0: RTT p50 "
		 "<= 1.2x bare %s ping-pong p50", w, w);
	snprintf(what[2], sizeof(what[2]), "streaming SPSC 64 B %s, waiting calls: < 1 wake "
		 "system call per 1000 messages", w);
	snprintf(what[3], sizeof(what[3]), "idle consumer blocked (%s): < 1 ms CPU in 5 s", w);
	fails += target(what[0], wfind(W_RTT, T_SPSC, wakeup, S_SPIN),
			wfind(W_RTT, T_SPSC, RBUS_WAKE_FUTEX, S_POLL), true, 2, AT_MOST, 1, "ns");
	fails += target(what[1], wfind(W_RTT, T_SPSC, wakeup, S_ZERO),
			wfind(W_RTT, bare, wakeup, S_SPIN), true, 1.2, AT_MOST, 1, "ns");
	fails += target(what[2], nth(wfind(W_STREAM, T_SPSC, wakeup, S_SPIN), V_WAKES1K, &tmp),
			NULL, false, 1, BELOW, 1, "per 1000 msg");
	fails += target(what[3], wfind(W_IDLE, T_SPSC, wakeup, S_SPIN), NULL, false, 1,
			BELOW, 1, "ms per 5 s");
	return fails;
}

/* Check every target; returns how many failed. */
static int check_targets(void)
{
	const struct fig *s8 = find(0, T_SPSC, 1, M_COPY, 1, 8);
	struct target_res *t;
	int fails = 0, n = 0, ran = 0;

	fails += target("SPSC 64 B copy one-at-a-time >= 20x AF_UNIX stream 64 B",
			find(0, T_SPSC, 1, M_COPY, 1, 64), find(0, T_UNIX, 1, M_COPY, 1, 64),
			true, 20, AT_LEAST, 1e6, "Mmsg/s");
	fails += target("SPSC 8 B copy one-at-a-time >= 7.0e7 msg/s", s8, NULL, false, 7.0e7,
			AT_LEAST, 1, "msg/s");
	ctx_bare_ring(8);
	fails += target("SPSC 8 B copy, batches of 32 >= 2.5e8 msg/s",
			find(0, T_SPSC, 1, M_COPY, BATCH, 8), NULL, false, 2.5e8, AT_LEAST, 1,
			"msg/s");
	ctx_bare_ring(8);
	fails += target_paired("ping-pong SPSC 64 B copy RTT p50 <= 1.6x bare cache line (2 lines) "
			       "p50", find(1, T_SPSC, 1, M_COPY, 1, 64), 1.6);
	fails += target("SPSC 64 KiB copy >= 1.3x AF_UNIX stream 64 KiB (GB/s)",
			find(0, T_SPSC, 1, M_COPY, 1, 65536), find(0, T_UNIX, 1, M_COPY, 1, 65536),
			true, 1.3, AT_LEAST, 1e9 / 65536, "GB/s");
	fails += target("MPMC 1p1c 8 B copy >= 0.25x SPSC 8 B copy",
			find(0, T_MPMC, 1, M_COPY, 1, 8), s8, true, 0.25, AT_LEAST, 1e6, "Mmsg/s");
	/* Every 2p2c test that was selected ran (a failed one ends the run). */
	for (size_t i = 0; i < NTC; i++)
		for (int si = 0; si < opt.nsizes && tcases[i].np == 2; si++) {
			n += tc_selected(i, si);
			ran += figs[i][si].ran;
		}
	t = &tres[ntres++];
	*t = (struct target_res){ .result = !ran ? T_SKIP : ran == n ? T_PASS : T_FAIL };
	snprintf(t->what, sizeof(t->what), "MPMC 2p2c completes with all messages received");
	if (ran)
		snprintf(t->note, sizeof(t->note), "%d of %d tests x %d repetitions: received == "
			 "sent, every sequence number once, in order per producer", ran, n,
			 opt.reps);
	fails += ran && ran != n;
	fails += wake_targets(RBUS_WAKE_FUTEX);
	fails += wake_targets(RBUS_WAKE_EVENTFD);
	return fails;
}

/* ---- text output ---------------------------------------------------------- */

/* The machine, for the header and --json. */
static struct machine {
	char date[64], kernel[128], model[128];
	long online;
} mach;

static void read_machine(void)
{
	char line[256];
	time_t now = time(NULL);
	struct utsname u;
	FILE *f = fopen("/proc/cpuinfo", "re");

	snprintf(mach.model, sizeof(mach.model), "unknown");
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "model name", 10) && strchr(line, ':')) {
			snprintf(mach.model, sizeof(mach.model), "%s", strchr(line, ':') + 2);
			mach.model[strcspn(mach.model, "\n")] = '\0';
			break;
		}
	if (f)
		fclose(f);
	strftime(mach.date, sizeof(mach.date), "%Y-%m-%d %H:%M:%S %z", localtime(&now));
	snprintf(mach.kernel, sizeof(mach.kernel), "%s", uname(&u) == 0 ? u.release : "unknown");
	mach.online = sysconf(_SC_NPROCESSORS_ONLN);
}

static void print_header(void)
{
	const int a = opt.cpus[0], b = opt.cpus[1];
	char spin[32];

	printf("ringbus bench: libringbus throughput, round trips and wakeups, with baselines\n"
	       "date:        %s\nkernel:      %s\ncpu:         %s (%ld CPUs online), TSC %.4f "
	       "ns/tick\npinning:     producer/pinger on CPU %d, consumer/ponger on CPU %d; MPMC "
	       "2p2c: producer i and consumer i\n             on CPU %d for i = 0, %d for i = 1\n"
	       "repetitions: %d per figure%s, in rounds (every test once, then again ...); "
	       "a figure\n             is their median, spread = min..max\n", mach.date, mach.kernel,
	       mach.model, mach.online, ns_per_tick, a, b, a, b, opt.reps,
	       opt.quick ? " (quick)" : "");
	printf("selection:   %s%s%s; %s%s%s; %s regions; rings wake by %s\n",
	       opt.kinds & K_SPSC ? "SPSC" : "", opt.kinds == (K_SPSC | K_MPMC) ? " and " : "",
	       opt.kinds & K_MPMC ? "MPMC" : "", opt.modes & 1 ? "copy" : "",
	       opt.modes == 3 ? " and " : "", opt.modes & 2 ? "zero-copy" : "",
	       opt.shm ? "POSIX shm" : "memfd", rb_wakeup_name(opt.wakeup ? opt.wakeup :
								RBUS_WAKE_FUTEX));
	printf("throughput:  time-based: producers stream for %.2f s, then the consumers drain;\n"
	       "             rate = messages received / (last consumer end - first producer "
	       "start)\nrings:      ", (double)opt.dur_ns / 1e9);
	for (int i = 0; i < opt.nsizes; i++) {
		struct rbus_region_opts o;
		struct rbus_region *r = NULL;
		struct rbus_region_info in;
		int err;

		rbus_region_opts_init(&o);
		o.capacity = capacity_for(opt.sizes[i]);
		o.max_msg = (uint32_t)opt.sizes[i];
		if ((err = rbus_region_create(&o, &r)) == 0 && (err = rbus_region_info(r, &in)) == 0)
			printf(" %zu B: %u slots of %u B (%.2f MiB)", opt.sizes[i], in.capacity,
			       in.slot_size, (double)in.size / 1048576);
		else
			printf(" %zu B: %u slots: %s", opt.sizes[i], o.capacity, rbus_strerror(err));
		fputs(i < opt.nsizes - 1 ? ";" : "\n", stdout);
		rbus_region_close(r);
	}
	printf("             ping-pong: two rings of %u slots (fewer for messages over "
	       "1 KiB),\n             max_msg = message size\n"
	       "work:        copy: rbus_send from / rbus_recv into private buffers; zc: the "
	       "producer writes\n             the whole payload in place, the consumer reads "
	       "every word in place; b32: batches\n             of %d.  Every message's length "
	       "and sequence number are checked; counts, sums verified.\n"
	       "             A producer (rings, bare ring) that finds the ring full pauses "
	       "capacity/8 times\n             (1 to 64) before it tries again, a consumer "
	       "that finds it empty once.\n"
	       "baselines:   one write() per message, reads of up to %u KiB, default buffers; "
	       "ping-pong\n             over two pipes / two socketpairs.  Bare cache line: "
	       "\"2 lines\" = each side's word\n             on a line of its own (the rings' "
	       "pattern: the reference), \"1 line\" = one line.  Bare SPSC ring: slots of the\n"
	       "             message size, a tail and a head (a line each, stored after every "
	       "message)\n             that each side caches; the sequence word written and "
	       "checked in the slot, the\n             rest copied in and out; nothing else\n"
	       "round trips: %.3f s warm-up, then %.2f s timed per repetition; busy polling "
	       "with pause, pipe and\n             AF_UNIX blocking.  The pinger reads the TSC "
	       "at the start of every round trip;\n             each difference goes into a "
	       "log-linear histogram (buckets <= 6.25 %% wide,\n             a percentile is "
	       "its bucket's middle).  A ring's repetition first bounces the\n             bare "
	       "cache line (2 lines) between the same processes for %.2f s: its reference.\n",
	       PP_CAPACITY, BATCH, STREAM_BUF / 1024, (double)opt.dur_ns / 1e10,
	       (double)opt.dur_ns / 1e9, (double)opt.dur_ns / 3e9);
	printf("wakeups:     SPSC, %d B copy, rbus_send_wait / rbus_recv_wait(RBUS_FOREVER), one "
	       "region per\n             ring, futex or eventfd backend, %s or spin 0 "
	       "(rbus_channel_set_spin).\n             Blocking round trips: timed as above; "
	       "sleeps and wakes per round trip from\n             rbus_region_wait_stats() of "
	       "both rings; a busy-polling SPSC round trip again as\n             their "
	       "reference.  Bare futex: one 32-bit shared word each way, FUTEX_WAKE\n"
	       "             always, FUTEX_WAIT (not private); bare eventfd: two eventfds, "
	       "blocking\n             write/read.  Streaming: as throughput (%u slots); wakes, "
	       "blind wakes and\n             sleeps of both wait queues per 1000 messages, "
	       "counted over the producer's\n             timed loop.\n", WSIZE,
	       spin_words(spin, sizeof(spin)), capacity_for(WSIZE));
	printf("             Idle: a consumer blocked on an empty ring; its CPU time (user+sys, "
	       "its CPU\n             clock read by a waker process) over %.2f s, then one "
	       "message wakes it%s\n             The repetitions of the wakeup tests are "
	       "interleaved.\n", (double)opt.idle_ns / 1e9, opt.idle_ns != 5000000000u ?
	       ";\n             reported scaled to 5 s." : ".");
}

/* A table starts here: a blank line before each. */
static void table_gap(void)
{
	putchar('\n');
}

static void print_throughput(void)
{
	const struct fig *un, *pi, *br;
	char s1[64], r1[32], r2[32], r3[32], fu[16], em[16];
	bool shown = false;

	for (int si = 0; si < opt.nsizes; si++)
		for (size_t t = 0; t < NTC; t++) {
			const struct tcase *c = &tcases[t];
			const struct fig *f = &figs[t][si];
			const size_t size = opt.sizes[si];

			if (!f->ran || c->rtt)
				continue;
			if (!shown) {
				table_gap();
				printf("Throughput (msg/s, GB/s = 10^9 payload bytes/s): median of %d, "
				       "spread min..max; a ring's rate\nnext to the pipe, AF_UNIX "
				       "stream and bare SPSC ring of its size (rows above it).  "
				       "full, empty:\nper message, the producers' calls that found "
				       "the ring full, the consumers' that found\nit empty (medians): "
				       "which side waited for the other\n%-18s "
				       "%6s %-10s %9s %-21s %8s %11s %6s %6s %10s %8s %8s\n", opt.reps,
				       "test", "size", "mode", "Mmsg/s", "  spread (Mmsg/s)", "GB/s",
				       "msgs/rep", "full", "empty", "vs AF_UNIX", "vs pipe",
				       "vs bare");
				shown = true;
			}
			un = is_ring(c->tr) ? find(0, T_UNIX, 1, M_COPY, 1, size) : NULL;
			pi = is_ring(c->tr) ? find(0, T_PIPE, 1, M_COPY, 1, size) : NULL;
			br = is_ring(c->tr) ? find(0, T_BRING, 1, M_COPY, 1, size) : NULL;
			snprintf(s1, sizeof(s1), "  %.3f..%.3f", f->min[V_RATE] / 1e6,
				 f->max[V_RATE] / 1e6);
			/* Streams block in the kernel: nothing counted. */
			snprintf(fu, sizeof(fu), is_stream(c->tr) ? "-" : "%.3f", f->med[V_FULL]);
			snprintf(em, sizeof(em), is_stream(c->tr) ? "-" : "%.3f", f->med[V_EMPTY]);
			printf("%-18s %6zu %-10s %9.3f %-21s %8.3f %11.0f %6s %6s %10s %8s %8s\n",
			       tr_name(c->tr, c->np), size, mode_name(c), f->med[V_RATE] / 1e6, s1,
			       f->med[V_RATE] * (double)size / 1e9, f->med[V_MSGS], fu, em,
			       ratio(r1, sizeof(r1), f, un, 1), ratio(r2, sizeof(r2), f, pi, 1),
			       ratio(r3, sizeof(r3), f, br, 2));
		}
}

/* The latency columns of a round trip: p50 p90 p99 p99.9 max, p50 spread. */
static void print_lat(const struct fig *f)
{
	char s[64];

	snprintf(s, sizeof(s), "  %.0f..%.0f", f->min[V_P50], f->max[V_P50]);
	printf("%8.0f %8.0f %8.0f %8.0f %9.0f %-17s", f->med[V_P50], f->med[V_P90],
	       f->med[V_P99], f->med[V_P999], f->max[V_MAX], s);
}

static void print_round_trips(void)
{
	const struct fig *bare = rt_ref();
	const double *rounds = rt_ref_rounds();
	char r1[32], b[32];
	bool shown = false;

	for (int si = 0; si < opt.nsizes; si++)
		for (size_t t = 0; t < NTC; t++) {
			const struct fig *f = &figs[t][si];
			const bool ring = is_ring(tcases[t].tr);

			if (!f->ran || !tcases[t].rtt)
				continue;
			if (!shown) {
				table_gap();
				printf("Round trip (ns): the percentiles of each repetition's "
				       "histogram, median over %d repetitions\n(max: the largest "
				       "of all).  bare p50, the reference of a ring round trip: the "
				       "bare cache\nline (2 lines) bounced by the same two "
				       "processes just before each repetition,\nthe median of "
				       "those, and vs bare the median of the repetitions' ratios; "
				       "for the\nothers, the bare cache line (2 lines) row\n%-18s "
				       "%6s %-10s %8s %8s %8s %8s %9s %-17s %10s %9s %8s\n", opt.reps,
				       "test", "size", "mode", "p50", "p90", "p99", "p99.9", "max",
				       "  spread p50", "rt/rep", "bare p50", "vs bare");
				shown = true;
			}
			/* A ring: its own reference (V_REF); the others: the
			 * bare line's row. */
			if (ring) {
				snprintf(b, sizeof(b), "%.0f", f->med[V_REF]);
				snprintf(r1, sizeof(r1), "%.2fx", f->med[V_VSREF]);
			} else if (bare) {
				snprintf(b, sizeof(b), "%.0f", bare->med[V_P50]);
			}
			printf("%-18s %6zu %-10s ", tr_name(tcases[t].tr, 1),
			       tc_size(&tcases[t], si), mode_name(&tcases[t]));
			print_lat(f);
			printf(" %10.0f %9s %8s\n", f->med[V_ROUNDS], ring || bare ? b : "-",
			       ring ? r1 : ratio(r1, sizeof(r1), f, bare, 2));
		}
	/* Where the host was, round by round: the bare line's p50. */
	for (int rep = 0; rounds && rep < opt.reps; rep++)
		printf("%s%.0f%s", rep ? " " : "bare cache line (2 lines) p50, round by round "
		       "(ns): ", rounds[rep], rep == opt.reps - 1 ? "\n" : "");
}

/* The wakeup tables: blocking round trips, streaming, idle consumer. */
static void print_wakeups(void)
{
	const struct fig *poll = find(0, T_SPSC, 1, M_COPY, 1, WSIZE);
	char s1[64], s2[64], s3[64], r1[32], r2[48], ref_p50[32], spin[16];
	int shown[3] = { 0 };

	for (size_t t = 0; t < NWC; t++)
		shown[wcases[t].kind] += wfigs[t].ran;
	if (shown[W_RTT]) {
		table_gap();
		printf("Blocking round trip (ns), %d B copy, rbus_send_wait / rbus_recv_wait"
		       "(RBUS_FOREVER): percentiles as\nabove; sleeps and wake system calls "
		       "(both sides) per round trip; CPU: the pinger's CPU time\nin %% of the "
		       "time; ref: spinning vs busy polling (poll: rbus_send / rbus_recv), spin 0 "
		       "vs\nthe bare primitive of the backend (bare); repetitions interleaved "
		       "with those of every\nwakeup test\n%-18s %-7s %-5s %8s %8s %8s %8s %9s "
		       "%-17s %9s %8s %5s %8s %s\n", WSIZE, "test", "wakeup", "spin", "p50",
		       "p90", "p99", "p99.9", "max", "  spread p50", "sleeps/rt", "wakes/rt",
		       "CPU", "ref p50", "p50 vs ref");
	}
	for (size_t t = 0; t < NWC; t++) {
		const struct wcase *c = &wcases[t];
		const char *rname;
		const struct fig *f = &wfigs[t], *ref = wref(c, &rname);
		const bool ring = is_ring(c->tr) && c->spin != S_POLL;

		if (!f->ran || c->kind != W_RTT)
			continue;
		snprintf(r2, sizeof(r2), "%s %s", ratio(r1, sizeof(r1), f, ref, 2),
			 !ref ? "" : c->spin == S_ZERO ? "bare" : "poll");
		snprintf(ref_p50, sizeof(ref_p50), "%.0f", ref ? ref->med[V_P50] : 0);
		snprintf(spin, sizeof(spin), "%" PRIu32, c->spin == S_ZERO ? 0 : opt.spin);
		printf("%-18s %-7s %-5s ", tr_name(c->tr, 1),
		       is_ring(c->tr) && c->spin == S_POLL ? "-" : rb_wakeup_name(c->wakeup),
		       !is_ring(c->tr) ? "-" : c->spin == S_POLL ? "poll" : spin);
		print_lat(f);
		snprintf(s1, sizeof(s1), "%.3f", f->med[V_SLEEPS]);
		snprintf(s2, sizeof(s2), "%.3f", f->med[V_WAKES]);
		printf(" %9s %8s %4.0f%% %8s %s\n", ring ? s1 : "-", ring ? s2 : "-",
		       f->med[V_CPU], ref ? ref_p50 : "-", ref ? r2 : "-");
	}
	if (shown[W_STREAM]) {
		table_gap();
		printf("Streaming with the waiting calls (SPSC %d B copy, %s): median of %d, "
		       "spread min..max;\nwake system calls, blind wakes (counted for futex only) "
		       "and sleeps per 1000 messages;\nvs poll: vs the busy-polling SPSC %d B copy "
		       "throughput (throughput table)\n%-18s %-7s %9s %-21s %8s %10s %-15s %10s "
		       "%11s %s\n", WSIZE, spin_words(s1, sizeof(s1)), opt.reps, WSIZE, "test",
		       "wakeup", "Mmsg/s", "  spread (Mmsg/s)", "vs poll", "wakes", "  spread",
		       "blind", "sleeps", "  spread");
	}
	for (size_t t = 0; t < NWC; t++) {
		const struct wcase *c = &wcases[t];
		const struct fig *f = &wfigs[t];

		if (!f->ran || c->kind != W_STREAM)
			continue;
		snprintf(s1, sizeof(s1), "  %.3f..%.3f", f->min[V_RATE] / 1e6, f->max[V_RATE] / 1e6);
		snprintf(s2, sizeof(s2), "  %.3g..%.3g", f->min[V_WAKES1K], f->max[V_WAKES1K]);
		snprintf(s3, sizeof(s3), "  %.3g..%.3g", f->min[V_SLEEPS1K], f->max[V_SLEEPS1K]);
		snprintf(r2, sizeof(r2), "%.4f", f->med[V_BLIND1K]);
		printf("%-18s %-7s %9.3f %-21s %8s %10.4f %-15s %10s %11.4f %s\n",
		       tr_name(c->tr, 1), rb_wakeup_name(c->wakeup), f->med[V_RATE] / 1e6, s1,
		       ratio(r1, sizeof(r1), f, poll, 2), f->med[V_WAKES1K], s2,
		       c->wakeup == RBUS_WAKE_FUTEX ? r2 : "-", f->med[V_SLEEPS1K], s3);
	}
	if (shown[W_IDLE]) {
		table_gap();
		printf("Idle blocked consumer: CPU time (user+sys) in rbus_recv_wait(RBUS_FOREVER) "
		       "on an empty ring,\nms per 5 s (measured over %.2f s): median of %d, spread "
		       "min..max; sleeps in the window\n%-18s %-7s %10s %-19s %8s %s\n",
		       (double)opt.idle_ns / 1e9, opt.reps, "test", "wakeup", "CPU ms",
		       "  spread", "sleeps", "  spread");
	}
	for (size_t t = 0; t < NWC; t++) {
		const struct wcase *c = &wcases[t];
		const struct fig *f = &wfigs[t];

		if (!f->ran || c->kind != W_IDLE)
			continue;
		snprintf(s1, sizeof(s1), "  %.3f..%.3f", f->min[V_IDLE_CPU], f->max[V_IDLE_CPU]);
		snprintf(s2, sizeof(s2), "  %.0f..%.0f", f->min[V_IDLE_SLEEPS],
			 f->max[V_IDLE_SLEEPS]);
		printf("%-18s %-7s %10.3f %-19s %8.0f %s\n", tr_name(c->tr, 1),
		       rb_wakeup_name(c->wakeup), f->med[V_IDLE_CPU], s1, f->med[V_IDLE_SLEEPS],
		       s2);
	}
}

static void print_targets(int fails)
{
	static const char *const words[] = { "PASS", "FAIL", "SKIP" };

	printf("\nTargets (figures of this run)\n");
	for (int i = 0; i < ntres; i++) {
		const struct target_res *t = &tres[i];
		const struct fig *a = &t->a, *b = &t->b;

		printf("  %s  %s\n", words[t->result], t->what);
		if (t->result == T_SKIP) {
			printf("        not measured in this run (--only, --kind, --mode, --sizes, "
			       "--wakeup)\n");
			continue;
		}
		if (t->note[0]) {
			printf("        %s\n", t->note);
			continue;
		}
		printf("        %.4g %s (spread %.4g..%.4g)", a->med[0] / t->scale, t->unit,
		       a->min[0] / t->scale, a->max[0] / t->scale);
		if (t->rel)
			printf(" vs %.4g %s (spread %.4g..%.4g): %.2fx", b->med[0] / t->scale,
			       t->unit, b->min[0] / t->scale, b->max[0] / t->scale, t->ratio);
		printf("\n");
		if (t->ctx[0])
			printf("        %s\n", t->ctx);
	}
	printf("  %d target(s) failed\n", fails);
}

/* ---- JSON output ---------------------------------------------------------- */

static void json_spread(struct rb_json *j, const struct fig *f, int i)
{
	rb_json_open(j, "spread", '[');
	rb_json_f64(j, NULL, f->min[i]);
	rb_json_f64(j, NULL, f->max[i]);
	rb_json_close(j, ']');
}

static void json_latency(struct rb_json *j, const struct fig *f)
{
	rb_json_open(j, "latency_ns", '{');
	rb_json_f64(j, "p50", f->med[V_P50]);
	rb_json_f64(j, "p90", f->med[V_P90]);
	rb_json_f64(j, "p99", f->med[V_P99]);
	rb_json_f64(j, "p999", f->med[V_P999]);
	rb_json_f64(j, "max", f->max[V_MAX]);
	rb_json_close(j, '}');
	json_spread(j, f, V_P50);
	rb_json_f64(j, "round_trips", f->med[V_ROUNDS]);
}

/* "baseline", "ratio" (to the first baseline that ran) and "vs": every
 * baseline's ratio. */
static void json_vs(struct rb_json *j, const struct fig *f, const char *const *names,
		    const struct fig *const *base, int n)
{
	int first = -1;

	for (int i = 0; i < n; i++)
		if (base[i] && first < 0)
			first = i;
	if (first < 0)
		return;
	rb_json_str(j, "baseline", names[first]);
	rb_json_f64(j, "ratio", f->med[0] / base[first]->med[0]);
	rb_json_open(j, "vs", '{');
	for (int i = 0; i < n; i++)
		if (base[i])
			rb_json_f64(j, names[i], f->med[0] / base[i]->med[0]);
	rb_json_close(j, '}');
}

static const char *json_mode(const struct tcase *c)
{
	if (is_ring(c->tr))
		return c->mode == M_ZC ? "zerocopy" : "copy";
	return c->tr == T_LINE ? (c->batch == 1 ? "1_line" : "2_lines") : "stream";
}

static void json_tests(struct rb_json *j)
{
	static const char *const tp_names[] = { "af_unix", "pipe", "bare_ring" };
	static const char *const rt_names[] = { "bare_line" };
	char name[96];

	for (int si = 0; si < opt.nsizes; si++)
		for (size_t t = 0; t < NTC; t++) {
			const struct tcase *c = &tcases[t];
			const struct fig *f = &figs[t][si];
			const size_t size = tc_size(c, si);

			if (!f->ran)
				continue;
			snprintf(name, sizeof(name), "%s%s %zu B %s", c->rtt ? "round trip " : "",
				 tr_name(c->tr, c->np), size, mode_name(c));
			rb_json_open(j, NULL, '{');
			rb_json_str(j, "name", name);
			rb_json_str(j, "group", c->rtt ? "round_trip" : "throughput");
			rb_json_str(j, "transport", tr_key(c->tr));
			rb_json_u64(j, "size", size);
			rb_json_str(j, "mode", json_mode(c));
			if (is_ring(c->tr)) {
				rb_json_u64(j, "batch", c->batch);
				rb_json_u64(j, "producers", (uint64_t)c->np);
				rb_json_u64(j, "consumers", (uint64_t)c->nc);
			}
			if (c->rtt) {
				const struct fig *base[] = { rt_ref() };

				json_latency(j, f);
				if (is_ring(c->tr)) {
					/* The reference of each repetition (bench_rep()). */
					rb_json_str(j, "baseline", "bare_line_same_repetition");
					rb_json_f64(j, "ref_p50", f->med[V_REF]);
					rb_json_f64(j, "ratio", f->med[V_VSREF]);
					rb_json_open(j, "vs", '{');
					if (base[0])
						rb_json_f64(j, "bare_line",
							    f->med[V_P50] / base[0]->med[V_P50]);
					rb_json_close(j, '}');
				} else if (c->tr != T_LINE || c->batch != 2) {
					json_vs(j, f, rt_names, base, 1);
				}
			} else {
				const struct fig *base[] = {
					is_ring(c->tr) ? find(0, T_UNIX, 1, M_COPY, 1, size) : NULL,
					is_ring(c->tr) ? find(0, T_PIPE, 1, M_COPY, 1, size) : NULL,
					is_ring(c->tr) ? find(0, T_BRING, 1, M_COPY, 1, size) : NULL };

				rb_json_f64(j, "msgs_per_s", f->med[V_RATE]);
				json_spread(j, f, V_RATE);
				rb_json_f64(j, "gb_per_s", f->med[V_RATE] * (double)size / 1e9);
				rb_json_f64(j, "msgs_per_rep", f->med[V_MSGS]);
				if (!is_stream(c->tr)) {
					rb_json_f64(j, "full_per_msg", f->med[V_FULL]);
					rb_json_f64(j, "empty_per_msg", f->med[V_EMPTY]);
				}
				json_vs(j, f, tp_names, base, 3);
			}
			rb_json_close(j, '}');
		}
	for (size_t t = 0; t < NWC; t++) {
		const struct wcase *c = &wcases[t];
		const struct fig *f = &wfigs[t];
		const char *rname;
		const struct fig *ref = wref(c, &rname);
		static const char *const kinds[] = { "blocking_round_trip", "streaming", "idle" };

		if (!f->ran)
			continue;
		wake_test_name(c, name, sizeof(name));
		rb_json_open(j, NULL, '{');
		rb_json_str(j, "name", name);
		rb_json_str(j, "group", c->spin == S_POLL ? "round_trip" : kinds[c->kind]);
		rb_json_str(j, "transport", tr_key(c->tr));
		rb_json_u64(j, "size", WSIZE);
		rb_json_str(j, "mode", is_ring(c->tr) ? "copy" : "post_wait");
		if (c->spin != S_POLL)
			rb_json_str(j, "wakeup", rb_wakeup_name(c->wakeup));
		if (is_ring(c->tr) && c->spin != S_POLL)
			rb_json_u64(j, "spin_ns", c->spin == S_ZERO ? 0 : opt.spin);
		if (c->kind == W_RTT) {
			json_latency(j, f);
			if (is_ring(c->tr) && c->spin != S_POLL) {
				rb_json_f64(j, "sleeps_per_rt", f->med[V_SLEEPS]);
				rb_json_f64(j, "wakes_per_rt", f->med[V_WAKES]);
			}
			rb_json_f64(j, "cpu_pct", f->med[V_CPU]);
			json_vs(j, f, &rname, &ref, 1);
		} else if (c->kind == W_STREAM) {
			const struct fig *poll = find(0, T_SPSC, 1, M_COPY, 1, WSIZE);
			static const char *const pname[] = { "poll" };

			rb_json_f64(j, "msgs_per_s", f->med[V_RATE]);
			json_spread(j, f, V_RATE);
			rb_json_f64(j, "gb_per_s", f->med[V_RATE] * WSIZE / 1e9);
			rb_json_f64(j, "msgs_per_rep", f->med[V_MSGS]);
			rb_json_f64(j, "wakes_per_1000", f->med[V_WAKES1K]);
			if (c->wakeup == RBUS_WAKE_FUTEX)
				rb_json_f64(j, "blind_per_1000", f->med[V_BLIND1K]);
			rb_json_f64(j, "sleeps_per_1000", f->med[V_SLEEPS1K]);
			json_vs(j, f, pname, &poll, 1);
		} else {
			rb_json_f64(j, "cpu_ms_per_5s", f->med[V_IDLE_CPU]);
			json_spread(j, f, V_IDLE_CPU);
			rb_json_f64(j, "sleeps", f->med[V_IDLE_SLEEPS]);
		}
		rb_json_close(j, '}');
	}
}

static void print_json(int fails, uint64_t t_begin)
{
	static const char *const words[] = { "PASS", "FAIL", "SKIP" };
	static const char *const only[] = { "throughput", "pingpong", "baselines", "wakeups" };
	const double *rounds;
	struct rb_json j;

	rb_json_init(&j, stdout);
	rb_json_open(&j, NULL, '{');
	rb_json_str(&j, "command", "bench");
	rb_json_str(&j, "version", PACKAGE_VERSION);
	rb_json_open(&j, "machine", '{');
	rb_json_str(&j, "date", mach.date);
	rb_json_str(&j, "kernel", mach.kernel);
	rb_json_str(&j, "cpu_model", mach.model);
	rb_json_i64(&j, "cpus_online", mach.online);
	rb_json_f64(&j, "ns_per_tick", ns_per_tick);
	rb_json_close(&j, '}');

	rb_json_open(&j, "parameters", '{');
	rb_json_open(&j, "kinds", '[');
	if (opt.kinds & K_SPSC)
		rb_json_str(&j, NULL, "spsc");
	if (opt.kinds & K_MPMC)
		rb_json_str(&j, NULL, "mpmc");
	rb_json_close(&j, ']');
	rb_json_open(&j, "sizes", '[');
	for (int i = 0; i < opt.nsizes; i++)
		rb_json_u64(&j, NULL, opt.sizes[i]);
	rb_json_close(&j, ']');
	rb_json_open(&j, "modes", '[');
	if (opt.modes & (1u << M_COPY))
		rb_json_str(&j, NULL, "copy");
	if (opt.modes & (1u << M_ZC))
		rb_json_str(&j, NULL, "zerocopy");
	rb_json_close(&j, ']');
	rb_json_str(&j, "backend", opt.shm ? "shm" : "memfd");
	rb_json_str(&j, "wakeup", rb_wakeup_name(opt.wakeup ? opt.wakeup : RBUS_WAKE_FUTEX));
	rb_json_open(&j, "wakeup_tests", '[');
	if (opt.wakeups & W_FUTEX_BIT)
		rb_json_str(&j, NULL, "futex");
	if (opt.wakeups & W_EVENTFD_BIT)
		rb_json_str(&j, NULL, "eventfd");
	rb_json_close(&j, ']');
	rb_json_u64(&j, "spin_ns", opt.spin);
	if (opt.capacity)
		rb_json_u64(&j, "capacity", opt.capacity);
	rb_json_f64(&j, "duration_s", (double)opt.dur_ns / 1e9);
	rb_json_f64(&j, "idle_s", (double)opt.idle_ns / 1e9);
	rb_json_i64(&j, "repeat", opt.reps);
	rb_json_bool(&j, "quick", opt.quick);
	rb_json_open(&j, "cpus", '[');
	rb_json_i64(&j, NULL, opt.cpus[0]);
	rb_json_i64(&j, NULL, opt.cpus[1]);
	rb_json_close(&j, ']');
	rb_json_open(&j, "only", '[');
	for (int i = 0; i < 4; i++) {
		static const unsigned bits[] = { SEL_RING_TP | SEL_BASE_TP,
						 SEL_RING_RT | SEL_BASE_RT,
						 SEL_BASE_TP | SEL_BASE_RT | SEL_BASE_WAKE,
						 SEL_RING_WAKE | SEL_BASE_WAKE };

		if (opt.sel != SEL_ALL && (opt.sel & bits[i]) == bits[i])
			rb_json_str(&j, NULL, only[i]);
	}
	rb_json_close(&j, ']');
	rb_json_close(&j, '}');

	rb_json_open(&j, "tests", '[');
	json_tests(&j);
	rb_json_close(&j, ']');
	if ((rounds = rt_ref_rounds())) {
		rb_json_open(&j, "bare_line_p50_by_round", '[');
		for (int rep = 0; rep < opt.reps; rep++)
			rb_json_f64(&j, NULL, rounds[rep]);
		rb_json_close(&j, ']');
	}

	rb_json_open(&j, "targets", '[');
	for (int i = 0; i < ntres; i++) {
		const struct target_res *t = &tres[i];

		rb_json_open(&j, NULL, '{');
		rb_json_str(&j, "target", t->what);
		rb_json_str(&j, "result", words[t->result]);
		if (t->result != T_SKIP && !t->note[0]) {
			rb_json_f64(&j, "value", t->a.med[0] / t->scale);
			rb_json_str(&j, "unit", t->unit);
			rb_json_open(&j, "spread", '[');
			rb_json_f64(&j, NULL, t->a.min[0] / t->scale);
			rb_json_f64(&j, NULL, t->a.max[0] / t->scale);
			rb_json_close(&j, ']');
			if (t->rel) {
				rb_json_f64(&j, "ref", t->b.med[0] / t->scale);
				rb_json_f64(&j, "ratio", t->ratio);
			}
		}
		if (t->note[0])
			rb_json_str(&j, "note", t->note);
		if (t->ctx[0])
			rb_json_str(&j, "context", t->ctx);
		rb_json_close(&j, '}');
	}
	rb_json_close(&j, ']');
	rb_json_i64(&j, "targets_failed", fails);
	rb_json_f64(&j, "run_time_s", (double)(rb_now_ns() - t_begin) / 1e9);
	rb_json_close(&j, '}');
	rb_json_end(&j);
}

/* ---- options ---------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f, "Usage: %s bench [OPTIONS]\n"
		"Measure the rings (throughput, round trips) and the wakeups against pipe,\n"
		"AF_UNIX stream, a bare SPSC ring, a bare shared cache line and bare futex /\n"
		"eventfd ping-pongs run in the same process tree, in rounds, and check the\n"
		"performance targets.\n"
		"\n"
		"  -k, --kind KIND       spsc, mpmc or all (default all)\n"
		"  -s, --sizes LIST      message sizes in bytes, comma-separated, each 8 B to\n"
		"                        1 MiB (k, M suffixes; default 8,64,1024,65536); the\n"
		"                        wakeup tests always use 64 B\n"
		"  -m, --mode MODE       copy, zerocopy (zc) or all (default all)\n"
		"  -b, --backend B       memfd (default) or shm: POSIX shm regions, unlinked\n"
		"                        as soon as they are created\n"
		"  -w, --wakeup W        futex or eventfd: the rings' wakeup backend, and the\n"
		"                        only one the wakeup tests measure (default: rings\n"
		"                        futex, wakeup tests both)\n"
		"      --spin NS         spin budget of the waiting calls before they sleep\n"
		"                        (rbus_channel_set_spin; default %u ns)\n"
		"      --capacity N      slots of each streaming ring (throughput, bare ring,\n"
		"                        wakeup streaming), a power of two from %u to\n"
		"                        %u, at most %u MiB of ring a size (default:\n"
		"                        4096, halved while they would hold over 1 MiB of\n"
		"                        messages, 64 at least); ping-pong rings keep theirs\n"
		"  -d, --duration SECS   time of each measurement: streaming, and round trips\n"
		"                        after a tenth of it as warm-up (default 0.3 s,\n"
		"                        --quick 0.05 s); the idle window is 5 s (--quick 1 s)\n"
		"                        or 20 times SECS if that is shorter\n"
		"  -r, --repeat N        repetitions per figure, 1 to %d; a figure is their\n"
		"                        median (default 5, --quick 3)\n"
		"  -c, --cpus A,B        the two CPUs to pin the two sides to (default: the\n"
		"                        first two this process may run on)\n"
		"  -q, --quick           a short run, for smoke tests\n"
		"      --only WHAT       comma-separated: throughput; pingpong (busy-polling\n"
		"                        round trips); baselines (pipe, AF_UNIX, bare SPSC\n"
		"                        ring, cache line, bare futex and eventfd); wakeups\n"
		"                        (blocking round trips, with the bare futex / eventfd\n"
		"                        ping-pongs and the busy-polling SPSC 64 B round trip\n"
		"                        they are compared with, wait counts while streaming,\n"
		"                        CPU time of an idle blocked consumer)\n"
		"  -j, --json            the whole result as one JSON object on stdout\n"
		"  -h, --help            this text\n"
		"\n"
		"On a terminal a live line on stderr names the test running.  Exit status:\n"
		"0 when everything ran (a missed target is a FAIL line, not an error), 1 when\n"
		"something broke (a failed call, a verification mismatch), 2 bad usage.\n",
		rb_prog, RBUS_SPIN_DEFAULT_NS, RBUS_CAPACITY_MIN, RBUS_CAPACITY_MAX,
		(unsigned)(CAPACITY_BYTES_MAX >> 20), RMAX);
}

static int cmp_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;

	return x < y ? -1 : x > y;
}

/* The next comma-separated item of *s (s advances), into buf; "" at the
 * end of an item list that ends with a comma. */
static const char *next_item(const char **s, char *buf, size_t len)
{
	size_t n = strcspn(*s, ",");

	snprintf(buf, len, "%.*s", (int)(n < len ? n : len - 1), *s);
	*s += n + ((*s)[n] == ',');
	return buf;
}

static int parse_sizes(const char *arg)
{
	const char *s = arg;
	char item[64];
	uint64_t v;

	opt.nsizes = 0;
	do {
		next_item(&s, item, sizeof(item));
		if (opt.nsizes == MAXSIZES)
			return rb_usage_err("--sizes: more than %d sizes", MAXSIZES), -1;
		if (!item[0])
			return rb_usage_err("--sizes: '%s' has an empty item", arg), -1;
		if (rb_parse_size("--sizes", item, SIZE_MIN, SIZE_MAX_, &v))
			return -1;
		for (int i = 0; i < opt.nsizes; i++)
			if (opt.sizes[i] == v)
				return rb_usage_err("--sizes: %" PRIu64 " is listed twice", v), -1;
		opt.sizes[opt.nsizes++] = (size_t)v;
	} while (*s || (s > arg && s[-1] == ','));
	qsort(opt.sizes, (size_t)opt.nsizes, sizeof(opt.sizes[0]), cmp_size);
	return 0;
}

static int parse_cpus(const char *arg)
{
	const char *s = arg;
	char item[2][32];

	next_item(&s, item[0], sizeof(item[0]));
	if (!*s || strchr(s, ','))
		return rb_usage_err("--cpus: '%s' is not two CPUs (A,B)", arg), -1;
	next_item(&s, item[1], sizeof(item[1]));
	if (rb_parse_cpu("--cpus", item[0], &opt.cpus[0]) ||
	    rb_parse_cpu("--cpus", item[1], &opt.cpus[1]))
		return -1;
	if (opt.cpus[0] == opt.cpus[1])
		return rb_usage_err("--cpus: give two different CPUs, not %d twice", opt.cpus[0]), -1;
	return 0;
}

static int parse_only(const char *arg, unsigned *sel)
{
	static const char *const only[] = { "throughput", "pingpong", "baselines", "wakeups" };
	static const unsigned only_sel[] = { SEL_RING_TP | SEL_BASE_TP,
					     SEL_RING_RT | SEL_BASE_RT,
					     SEL_BASE_TP | SEL_BASE_RT | SEL_BASE_WAKE,
					     SEL_RING_WAKE | SEL_BASE_WAKE };
	const char *s = arg;
	char item[32];
	size_t i;

	do {
		next_item(&s, item, sizeof(item));
		for (i = 0; i < 4 && strcmp(item, only[i]); i++)
			;
		if (i == 4)
			return rb_usage_err("--only: '%s' is not one of throughput, pingpong, "
					    "baselines, wakeups", item), -1;
		*sel |= only_sel[i];
	} while (*s);
	return 0;
}

/* Parse the command line into opt; returns -1 after a usage error, 1 for
 * --help, 0 to run. */
static int parse_args(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "kind", required_argument, NULL, 'k' },
		{ "sizes", required_argument, NULL, 's' },
		{ "mode", required_argument, NULL, 'm' },
		{ "backend", required_argument, NULL, 'b' },
		{ "wakeup", required_argument, NULL, 'w' },
		{ "spin", required_argument, NULL, 'S' },
		{ "capacity", required_argument, NULL, 'C' },
		{ "duration", required_argument, NULL, 'd' },
		{ "repeat", required_argument, NULL, 'r' },
		{ "cpus", required_argument, NULL, 'c' },
		{ "quick", no_argument, NULL, 'q' },
		{ "only", required_argument, NULL, 'o' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool have_dur = false, have_cpus = false;
	unsigned only = 0;
	uint64_t v;
	int64_t ns;
	int c;

	memset(&opt, 0, sizeof(opt));
	opt.kinds = K_SPSC | K_MPMC;
	opt.modes = 1u << M_COPY | 1u << M_ZC;
	opt.wakeups = W_FUTEX_BIT | W_EVENTFD_BIT;
	opt.spin = RBUS_SPIN_DEFAULT_NS;
	opt.nsizes = (int)(sizeof(default_sizes) / sizeof(default_sizes[0]));
	memcpy(opt.sizes, default_sizes, sizeof(default_sizes));
	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":k:s:m:b:w:d:r:c:qjh", longopts, NULL)) != -1) {
		switch (c) {
		case 'k':
			/* Not rb_parse_kind(): its message would not offer "all". */
			if (!strcasecmp(optarg, "all"))
				opt.kinds = K_SPSC | K_MPMC;
			else if (!strcasecmp(optarg, "spsc"))
				opt.kinds = K_SPSC;
			else if (!strcasecmp(optarg, "mpmc"))
				opt.kinds = K_MPMC;
			else
				return rb_usage_err("--kind: '%s' is not a kind (spsc, mpmc or all)",
						    optarg), -1;
			break;
		case 's':
			if (parse_sizes(optarg))
				return -1;
			break;
		case 'm':
			if (!strcasecmp(optarg, "all"))
				opt.modes = 1u << M_COPY | 1u << M_ZC;
			else if (!strcasecmp(optarg, "copy"))
				opt.modes = 1u << M_COPY;
			else if (!strcasecmp(optarg, "zerocopy") || !strcasecmp(optarg, "zc"))
				opt.modes = 1u << M_ZC;
			else
				return rb_usage_err("--mode: '%s' is not a mode (copy, zerocopy or "
						    "all)", optarg), -1;
			break;
		case 'b':
			if (strcasecmp(optarg, "memfd") && strcasecmp(optarg, "shm"))
				return rb_usage_err("--backend: '%s' is not a backend (memfd or "
						    "shm)", optarg), -1;
			opt.shm = !strcasecmp(optarg, "shm");
			break;
		case 'w':
			if (rb_parse_wakeup("--wakeup", optarg, &opt.wakeup))
				return -1;
			opt.wakeups = opt.wakeup == RBUS_WAKE_EVENTFD ? W_EVENTFD_BIT : W_FUTEX_BIT;
			break;
		case 'S':
			if (rb_parse_u64("--spin", optarg, 0, RBUS_SPIN_MAX_NS, &v))
				return -1;
			opt.spin = (uint32_t)v;
			break;
		case 'C':
			if (rb_parse_pow2("--capacity", optarg, RBUS_CAPACITY_MIN,
					  RBUS_CAPACITY_MAX, &v))
				return -1;
			opt.capacity = (uint32_t)v;
			break;
		case 'd':
			if (rb_parse_seconds("--duration", optarg, 1000000, &ns))
				return -1;
			opt.dur_ns = (uint64_t)ns;
			have_dur = true;
			break;
		case 'r':
			if (rb_parse_u64("--repeat", optarg, 1, RMAX, &v))
				return -1;
			opt.reps = (int)v;
			break;
		case 'c':
			if (parse_cpus(optarg))
				return -1;
			have_cpus = true;
			break;
		case 'q':
			opt.quick = true;
			break;
		case 'o':
			if (parse_only(optarg, &only))
				return -1;
			break;
		case 'j':
			opt.json = true;
			break;
		case 'h':
			usage(stdout);
			return 1;
		case ':':
			return rb_usage_err("option '%s' needs a value", argv[optind - 1]), -1;
		default:
			return rb_usage_err("unknown option '%s'", argv[optind - 1]), -1;
		}
	}
	if (optind < argc)
		return rb_usage_err("unexpected argument '%s'", argv[optind]), -1;
	/* Each ring reserves all its memory at creation (the bare ring
	 * touches it): a bound, checked against every size, the wakeup
	 * tests' included. */
	for (int i = 0; opt.capacity && i <= opt.nsizes; i++) {
		size_t size = i < opt.nsizes ? opt.sizes[i] : WSIZE;

		if ((uint64_t)opt.capacity * (size + 8) > CAPACITY_BYTES_MAX)
			return rb_usage_err("--capacity: %" PRIu32 " slots of %zu B messages "
					    "take over %u MiB of ring (fewer slots, or "
					    "--sizes)", opt.capacity, size,
					    (unsigned)(CAPACITY_BYTES_MAX >> 20)), -1;
	}
	opt.sel = only ? only : SEL_ALL;
	if (!opt.reps)
		opt.reps = opt.quick ? 3 : 5;
	if (!have_dur)
		opt.dur_ns = opt.quick ? 50000000u : 300000000u;
	/* The idle window is long: it measures a rate of wakes per second.
	 * A short --duration shortens it, to 20 times its value at least. */
	opt.idle_ns = opt.quick ? 1000000000u : 5000000000u;
	if (have_dur && opt.idle_ns > 20 * opt.dur_ns)
		opt.idle_ns = 20 * opt.dur_ns;
	if (!have_cpus && rb_allowed_cpus(opt.cpus, 2) < 2) {
		berr("needs two CPUs to pin the two sides of each test to, and this process "
		       "may run on one only (see taskset(1), --cpus)");
		return -2;
	}
	return 0;
}

/* ---- main ----------------------------------------------------------------- */

int cmd_bench(int argc, char **argv)
{
	uint64_t t_begin = rb_now_ns();
	int r = parse_args(argc, argv), fails;

	if (r)
		return r == 1 ? RB_EXIT_OK : r == -1 ? RB_EXIT_USAGE : RB_EXIT_FAIL;
	shc = mmap(NULL, sizeof(*shc), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (shc == MAP_FAILED) {
		berr("mmap: %s", strerror(errno));
		return RB_EXIT_FAIL;
	}
	signal(SIGPIPE, SIG_IGN);       /* a dead peer gives EPIPE, reported */
	rb_live_init(&live, stderr);
	nsteps = count_steps();
	rb_live(&live, "bench: calibrating the TSC");
	calibrate_ticks();
	read_machine();
	if (!opt.json) {
		print_header();
		fflush(stdout);
	}
	if (bench() || bench_wakeups()) {
		rb_live_done(&live);
		berr("aborted");
		return RB_EXIT_FAIL;
	}
	rb_live(&live, "bench: %d repetitions in %.1f s", nsteps,
		(double)(rb_now_ns() - t_begin) / 1e9);
	rb_live_done(&live);
	fails = check_targets();
	if (opt.json) {
		print_json(fails, t_begin);
		return RB_EXIT_OK;
	}
	print_throughput();
	print_round_trips();
	print_wakeups();
	print_targets(fails);
	printf("\ntotal run time: %.1f s\n", (double)(rb_now_ns() - t_begin) / 1e9);
	return RB_EXIT_OK;
}
