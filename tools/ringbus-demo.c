/* SPDX-License-Identifier: MIT */
/*
 * ringbus-demo - a sensor pipeline on one SPSC ring, every message verified.
 *
 * The parent creates an SPSC region (a sealed memfd) whose messages are
 * sensor samples, then forks two processes that attach to it through its
 * fd, as unrelated processes would after receiving the fd:
 *
 *   producer  (first allowed CPU)   stamps each sample with CLOCK_MONOTONIC,
 *                                   a sequence number, four readings and a
 *                                   CRC-32, and sends it, as fast as the ring
 *                                   takes it or at --rate samples/s;
 *   consumer  (second allowed CPU)  receives each sample, checks its length,
 *                                   checksum and sequence (contiguous), and
 *                                   records its end-to-end latency.
 *
 * The parent prints a line every 0.5 s (rate, bandwidth, latency p50/p99
 * over the interval, lost and corrupt samples) and a summary at the end.
 * The three processes share their counters through anonymous MAP_SHARED
 * memory: each counter has exactly one writer.
 *
 * Both sides try the non-blocking call first and count the times they found
 * the ring full or empty; then they wait in rbus_send_wait/rbus_recv_wait
 * (spin briefly, then sleep on the region's futex word), with a 100 ms
 * deadline so that they notice the parent's stop flag.  The consumer knows
 * the stream has ended when its receive says -EPIPE: the producer closed
 * and the ring is drained.
 *
 * Exit status: 0 when every sample sent was received once, in order and
 * intact; 1 when one was not, or something failed; 2 on bad usage.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE  /* sched_setaffinity, CPU_SET, strsignal */
#endif

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ringbus.h>

#define PROG "ringbus-demo"

#define TICK_NS        500000000ull  /* live line period */
#define WAIT_NS        100000000     /* longest single wait: stop is seen in time */
#define SHUTDOWN_S     10            /* children still running then are killed */
#define MAX_DURATION_S 86400.0
#define MAX_RATE       1e9

/* --- the message -------------------------------------------------------- */

/* One sensor sample, sent as the bytes of this struct.  Producer and
 * consumer are the same binary on the same machine, so the layout and byte
 * order are shared; a real protocol would fix both. */
struct sample {
	uint64_t t_ns;    /* CLOCK_MONOTONIC when the sample was taken */
	uint64_t seq;     /* 0, 1, 2 ... with no gaps */
	float value[4];   /* acceleration x, y, z (m/s^2), temperature (C) */
	uint32_t crc;     /* CRC-32 of every byte before this field */
	uint32_t zero;    /* explicit padding, always 0 (checked) */
};
_Static_assert(sizeof(struct sample) == 40, "struct sample has no hidden padding");

/* CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), one table lookup
 * per byte.  The table is filled by the parent before it forks. */
static uint32_t crc_table[256];

static void crc32_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
		crc_table[i] = c;
	}
}

static uint32_t crc32_of(const void *buf, size_t len)
{
	const unsigned char *p = buf;
	uint32_t c = 0xFFFFFFFFu;

	while (len--)
		c = crc_table[(c ^ *p++) & 0xFF] ^ (c >> 8);
	return c ^ 0xFFFFFFFFu;
}

/* A plausible reading for sample seq: a slow wave plus deterministic
 * noise, so that consecutive samples differ in every field. */
static void sample_fill(struct sample *s, uint64_t seq, uint64_t t_ns)
{
	uint64_t x = seq * UINT64_C(0x9E3779B97F4A7C15);
	float phase = (float)(seq % 1000) / 1000.0f;

	x ^= x >> 29;
	s->t_ns = t_ns;
	s->seq = seq;
	s->value[0] = 0.05f * (float)(int)(x & 0xFF) / 255.0f - 0.025f;
	s->value[1] = 0.05f * (float)(int)((x >> 8) & 0xFF) / 255.0f - 0.025f;
	s->value[2] = 9.81f + (phase < 0.5f ? phase : 1.0f - phase) * 0.1f;
	s->value[3] = 21.5f + (float)(int)((x >> 16) & 0x3F) / 100.0f;
	s->zero = 0;
	s->crc = crc32_of(s, offsetof(struct sample, crc));
}

/* --- latency histogram ---------------------------------------------------
 * Log-linear buckets: values below 2^SUB_BITS ns have a bucket each; above,
 * every power of two [2^e, 2^(e+1)) is split into 2^SUB_BITS buckets of
 * equal width, so a bucket is at most 1/16 (6.25 %) of its value wide.
 * Values are capped just below 2^MAX_BITS ns (about 18 minutes). */
#define SUB_BITS  4
#define SUB       (1u << SUB_BITS)
#define MAX_BITS  40
#define NBUCKETS  ((MAX_BITS - SUB_BITS + 1) * SUB)

static unsigned bucket_of(uint64_t ns)
{
	unsigned e;

	if (ns >= (UINT64_C(1) << MAX_BITS))
		ns = (UINT64_C(1) << MAX_BITS) - 1;
	if (ns < SUB)
		return (unsigned)ns;
	e = 63u - (unsigned)__builtin_clzll(ns);   /* 2^e <= ns < 2^(e+1) */
	return (e - SUB_BITS + 1) * SUB + (unsigned)(ns >> (e - SUB_BITS)) - SUB;
}

/* The middle of bucket b, in ns: what a percentile falling in b reports. */
static uint64_t bucket_mid(unsigned b)
{
	unsigned shift;

	if (b < SUB)
		return b;
	shift = b / SUB - 1;
	return ((uint64_t)(SUB + b % SUB) << shift) + ((UINT64_C(1) << shift) >> 1);
}

/* The value below which a fraction q of the n samples in h[] lie. */
static uint64_t percentile(const uint64_t *h, uint64_t n, double q)
{
	double want = q * (double)n;
	uint64_t rank = (uint64_t)want, seen = 0;

	if ((double)rank < want)
		rank++;  /* the rank is ceil(q * n), at least 1 */
	if (rank < 1)
		rank = 1;
	for (unsigned b = 0; b < NBUCKETS; b++) {
		seen += h[b];
		if (seen >= rank)
			return bucket_mid(b);
	}
	return bucket_mid(NBUCKETS - 1);
}

/* --- shared state ----------------------------------------------------------
 * Anonymous MAP_SHARED memory, inherited by both children.  Each group of
 * fields has one writer and sits on cache lines of its own, so that the
 * producer and the consumer do not slow each other down through it.
 * Counters are updated with relaxed load + store (single writer: no
 * read-modify-write needed) and read by the parent for display only; the
 * orderings that matter are on producer_done and consumer_done.  The
 * flags with no data behind them (ready, go, stop, abort_run) are relaxed:
 * the reader only needs to see them soon. */
struct shared {
	/* Written by the parent. */
	_Alignas(64) atomic_int go;     /* producer: both sides are ready, start */
	atomic_int stop;                /* producer: stop sending */
	atomic_int abort_run;           /* consumer: give up, the producer died */

	/* Written by the producer. */
	_Alignas(64) _Atomic uint64_t sent;
	_Atomic uint64_t full_waits;    /* sends that found the ring full */
	atomic_int producer_ready;      /* attached, waiting for go */
	atomic_int producer_done;

	/* Written by the consumer. */
	_Alignas(64) _Atomic uint64_t received;  /* every message taken */
	_Atomic uint64_t verified;      /* intact and next in sequence */
	_Atomic uint64_t lost;          /* sequence numbers skipped */
	_Atomic uint64_t corrupt;       /* wrong length, checksum or padding */
	_Atomic uint64_t disordered;    /* intact but repeated or backwards */
	_Atomic uint64_t empty_waits;   /* receives that found the ring empty */
	_Atomic uint64_t lat_max;       /* ns */
	atomic_int consumer_ready;      /* attached, receiving */
	atomic_int consumer_done;
	_Alignas(64) _Atomic uint64_t hist[NBUCKETS];
};

/* Single-writer increment: no other process writes p, so a relaxed load and
 * store suffice (and cost no locked instruction on the data path). */
static inline void bump(_Atomic uint64_t *p, uint64_t n)
{
	atomic_store_explicit(p, atomic_load_explicit(p, memory_order_relaxed) + n,
			      memory_order_relaxed);
}

static inline uint64_t peek64(_Atomic uint64_t *p)
{
	return atomic_load_explicit(p, memory_order_relaxed);
}

/* --- small helpers ------------------------------------------------------- */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_until(uint64_t t_ns)
{
	struct timespec ts = {
		.tv_sec = (time_t)(t_ns / 1000000000u),
		.tv_nsec = (long)(t_ns % 1000000000u),
	};

	/* EINTR (a signal for the parent) returns early; callers re-check. */
	clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
}

/* A CPU pause, for the pacer's short spins. */
static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
	__asm__ __volatile__("yield" ::: "memory");
#else
	atomic_signal_fence(memory_order_seq_cst);
#endif
}

/* ns as a short human string in buf. */
static const char *fmt_ns(char *buf, size_t len, uint64_t ns)
{
	if (ns < 1000)
		snprintf(buf, len, "%" PRIu64 " ns", ns);
	else if (ns < 1000000)
		snprintf(buf, len, "%.1f us", (double)ns / 1e3);
	else if (ns < 1000000000)
		snprintf(buf, len, "%.2f ms", (double)ns / 1e6);
	else
		snprintf(buf, len, "%.2f s", (double)ns / 1e9);
	return buf;
}

/* --- options -------------------------------------------------------------- */

struct options {
	double duration_s;  /* how long the producer sends */
	double rate;        /* samples per second; 0 = as fast as possible */
	uint32_t capacity;  /* ring slots */
};

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: " PROG " [OPTION]...\n"
		"Stream sensor samples through a ringbus SPSC ring from a producer process to a\n"
		"consumer process, verifying every sample and measuring its end-to-end latency.\n"
		"\n"
		"  -d, --duration S   send for S seconds (default 3)\n"
		"  -r, --rate N       send N samples per second (default: as fast as the ring\n"
		"                     takes them; then the ring stays full and the latency is\n"
		"                     mostly the time a sample waits in it)\n"
		"  -c, --capacity N   ring slots, a power of two in [%u, %u] (default %u)\n"
		"  -h, --help         show this help and exit\n"
		"\n"
		"Every 0.5 s a line shows the interval's rate, bandwidth, latency percentiles\n"
		"and lost/corrupt counts; a summary follows the run.  Exit status: 0 if every\n"
		"sample sent arrived once, in order and intact; 1 if not, or on an error;\n"
		"2 on bad usage.\n",
		RBUS_CAPACITY_MIN, RBUS_CAPACITY_MAX, RBUS_DEFAULT_CAPACITY);
}

static int parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "duration", required_argument, NULL, 'd' },
		{ "rate",     required_argument, NULL, 'r' },
		{ "capacity", required_argument, NULL, 'c' },
		{ "help",     no_argument,       NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	o->duration_s = 3.0;
	o->rate = 0;
	o->capacity = RBUS_DEFAULT_CAPACITY;
	opterr = 0;

	while ((c = getopt_long(argc, argv, "d:r:c:h", longopts, NULL)) != -1) {
		char *end;
		unsigned long long n;

		errno = 0;
		switch (c) {
		case 'd':
			o->duration_s = strtod(optarg, &end);
			if (errno || end == optarg || *end || !(o->duration_s > 0) ||
			    o->duration_s > MAX_DURATION_S) {
				fprintf(stderr, PROG ": --duration '%s': want seconds, more than 0 and at most %.0f\n",
					optarg, MAX_DURATION_S);
				return -1;
			}
			break;
		case 'r':
			o->rate = strtod(optarg, &end);
			if (errno || end == optarg || *end || !(o->rate >= 1) || o->rate > MAX_RATE) {
				fprintf(stderr, PROG ": --rate '%s': want samples per second, from 1 to %.0f\n",
					optarg, MAX_RATE);
				return -1;
			}
			break;
		case 'c':
			n = strtoull(optarg, &end, 0);
			if (errno || end == optarg || *end || n < RBUS_CAPACITY_MIN ||
			    n > RBUS_CAPACITY_MAX || (n & (n - 1))) {
				fprintf(stderr, PROG ": --capacity '%s': want a power of two from %u to %u\n",
					optarg, RBUS_CAPACITY_MIN, RBUS_CAPACITY_MAX);
				return -1;
			}
			o->capacity = (uint32_t)n;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			/* opterr is 0: name the problem ourselves, without the
			 * path of the binary (a libtool wrapper's, in-tree). */
			fprintf(stderr, PROG ": unknown option or missing argument: '%s'\n",
				argv[optind - 1]);
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, PROG ": unexpected argument '%s'\n", argv[optind]);
		return -1;
	}
	return 0;
}

/* --- the two children ------------------------------------------------------ */

/* Attach to the region behind fd and take `role` on its ring, as a process
 * that received the fd from elsewhere would.  On failure, names it and
 * exits the child with status 1. */
static void child_open(int fd, enum rbus_role role, const char *who,
		       struct rbus_region **r, struct rbus_channel **ch)
{
	int err = rbus_region_attach_fd(fd, RBUS_REGION_PREFAULT, r);

	if (err < 0) {
		fprintf(stderr, PROG ": %s: attaching to the region: %s\n", who, rbus_strerror(err));
		_exit(1);
	}
	err = rbus_channel_open(*r, role, 0, ch);
	if (err < 0) {
		fprintf(stderr, PROG ": %s: opening the channel: %s\n", who, rbus_strerror(err));
		_exit(1);
	}
}

/* Common set-up of a child: die with the parent, leave Ctrl-C to the
 * parent (which stops the run cleanly), and run on `cpu` if >= 0. */
static void child_setup(int cpu, const char *who)
{
	signal(SIGINT, SIG_IGN);
	signal(SIGTERM, SIG_DFL);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (cpu >= 0) {
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET(cpu, &set);
		if (sched_setaffinity(0, sizeof(set), &set) < 0)
			fprintf(stderr, PROG ": %s: cannot pin to CPU %d: %s (running unpinned)\n",
				who, cpu, strerror(errno));
	}
}

/* Wait until due_ns or until told to stop; false if told to stop. */
static bool pace(struct shared *sh, uint64_t due_ns)
{
	for (;;) {
		uint64_t now = now_ns();

		if (now >= due_ns)
			return true;
		if (atomic_load_explicit(&sh->stop, memory_order_relaxed))
			return false;
		/* Sleep through long gaps (in slices, to notice `stop`), spin
		 * through short ones: the kernel's wake-up is not precise. */
		if (due_ns - now > 200000)
			sleep_until(now + (due_ns - now - 100000 < 10000000 ?
					   due_ns - now - 100000 : 10000000));
		else
			cpu_relax();
	}
}

static int run_producer(int fd, struct shared *sh, const struct options *o)
{
	struct rbus_region *r;
	struct rbus_channel *ch;
	struct sample s;
	uint64_t seq, t0;
	int status = 0;

	child_open(fd, RBUS_PRODUCER, "producer", &r, &ch);
	/* Start only once the consumer is receiving too, so that the time
	 * it takes to start is not counted as the first samples' latency. */
	atomic_store_explicit(&sh->producer_ready, 1, memory_order_relaxed);
	while (!atomic_load_explicit(&sh->go, memory_order_relaxed)) {
		if (atomic_load_explicit(&sh->stop, memory_order_relaxed))
			goto out;
		usleep(100);
	}
	t0 = now_ns();
	for (seq = 0;; seq++) {
		bool waited = false;
		int err;

		/* stop (relaxed): a flag with no data behind it; the parent
		 * only needs the producer to notice it soon. */
		if (atomic_load_explicit(&sh->stop, memory_order_relaxed))
			break;
		if (o->rate > 0 && !pace(sh, t0 + (uint64_t)((double)seq * 1e9 / o->rate)))
			break;
		/* The sample is taken now: time spent waiting for room in
		 * the ring counts in its end-to-end latency. */
		sample_fill(&s, seq, now_ns());
		err = rbus_send(ch, &s, sizeof(s));
		if (err == -EAGAIN) {
			waited = true;
			do {
				if (atomic_load_explicit(&sh->stop, memory_order_relaxed))
					goto out;
				err = rbus_send_wait(ch, &s, sizeof(s), rbus_deadline_in(WAIT_NS));
			} while (err == -ETIMEDOUT);
		}
		if (err < 0) {
			fprintf(stderr, PROG ": producer: rbus_send of sample %" PRIu64 ": %s\n",
				seq, rbus_strerror(err));
			status = 1;
			break;
		}
		if (waited)
			bump(&sh->full_waits, 1);
		atomic_store_explicit(&sh->sent, seq + 1, memory_order_relaxed);
	}
out:
	/* producer_done (release): every rbus_send and counter update above
	 * happens before it; pairs with the consumer's acquire load (its last
	 * receives then see every sample sent) and the parent's (`sent` is
	 * then final). */
	atomic_store_explicit(&sh->producer_done, 1, memory_order_release);
	rbus_channel_close(ch);
	rbus_region_close(r);
	return status;
}

/* Check one received sample against the sequence number expected next;
 * returns the next expected sequence number. */
static uint64_t verify(struct shared *sh, const struct sample *s, ssize_t len,
		       uint64_t expect)
{
	uint64_t lat, t = now_ns();
	unsigned b;

	bump(&sh->received, 1);
	if (len != (ssize_t)sizeof(*s) || s->zero != 0 ||
	    s->crc != crc32_of(s, offsetof(struct sample, crc))) {
		bump(&sh->corrupt, 1);
		return expect;
	}
	if (s->seq < expect) {
		/* Seen already (or older than one seen): a duplicate or a
		 * reordering, which an SPSC ring must never produce. */
		bump(&sh->disordered, 1);
		return expect;
	}
	if (s->seq > expect)
		bump(&sh->lost, s->seq - expect);
	bump(&sh->verified, 1);

	lat = t > s->t_ns ? t - s->t_ns : 0;
	b = bucket_of(lat);
	bump(&sh->hist[b], 1);
	if (lat > peek64(&sh->lat_max))
		atomic_store_explicit(&sh->lat_max, lat, memory_order_relaxed);
	return s->seq + 1;
}

static int run_consumer(int fd, struct shared *sh)
{
	struct rbus_region *r;
	struct rbus_channel *ch;
	struct sample s;
	uint64_t expect = 0;
	int status = 0;

	child_open(fd, RBUS_CONSUMER, "consumer", &r, &ch);
	atomic_store_explicit(&sh->consumer_ready, 1, memory_order_relaxed);
	for (;;) {
		/* A buffer the size of a sample: the region's max_msg is
		 * that size, so a longer message cannot be in the ring. */
		ssize_t n = rbus_recv(ch, &s, sizeof(s));

		if (n == -EAGAIN) {
			bump(&sh->empty_waits, 1);
			n = rbus_recv_wait(ch, &s, sizeof(s), rbus_deadline_in(WAIT_NS));
		}
		if (n >= 0) {
			expect = verify(sh, &s, n, expect);
			continue;
		}
		/* The producer closed and everything it sent has been taken. */
		if (n == -EPIPE)
			break;
		if (n == -ETIMEDOUT) {
			if (atomic_load_explicit(&sh->abort_run, memory_order_relaxed))
				break;
			continue;
		}
		{
			fprintf(stderr, PROG ": consumer: rbus_recv after sample %" PRIu64 ": %s\n",
				expect, rbus_strerror((int)n));
			status = 1;
			break;
		}
	}
	/* consumer_done (release): the counter updates above happen before
	 * it; pairs with the parent's acquire load before its verdict. */
	atomic_store_explicit(&sh->consumer_done, 1, memory_order_release);
	rbus_channel_close(ch);
	rbus_region_close(r);
	return status;
}

/* --- the parent ------------------------------------------------------------ */

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

/* The first two CPUs this process may run on, or -1 each if fewer than
 * two (then nothing is pinned: two spinning processes on one CPU must be
 * free to be scheduled anywhere). */
static void pick_cpus(int *a, int *b)
{
	cpu_set_t set;
	int found = 0;

	*a = *b = -1;
	if (sched_getaffinity(0, sizeof(set), &set) < 0 || CPU_COUNT(&set) < 2)
		return;
	for (int c = 0; c < CPU_SETSIZE && found < 2; c++) {
		if (CPU_ISSET(c, &set)) {
			if (found++ == 0)
				*a = c;
			else
				*b = c;
		}
	}
}

static pid_t spawn(int (*fn)(int, struct shared *, const struct options *),
		   int fd, struct shared *sh, const struct options *o, int cpu,
		   const char *who)
{
	pid_t pid, parent = getpid();

	fflush(NULL);  /* or the children would print the parent's buffer */
	pid = fork();
	if (pid < 0) {
		fprintf(stderr, PROG ": fork (%s): %s\n", who, strerror(errno));
		return -1;
	}
	if (pid == 0) {
		child_setup(cpu, who);
		/* The parent may have died before PR_SET_PDEATHSIG took. */
		if (getppid() != parent)
			_exit(1);
		_exit(fn(fd, sh, o));
	}
	return pid;
}

static int producer_main(int fd, struct shared *sh, const struct options *o)
{
	return run_producer(fd, sh, o);
}

static int consumer_main(int fd, struct shared *sh, const struct options *o)
{
	(void)o;
	return run_consumer(fd, sh);
}

/* Reap pid if it has exited; true if it has (status in *status). */
static bool reaped(pid_t pid, int *status)
{
	pid_t got;

	do
		got = waitpid(pid, status, WNOHANG);
	while (got < 0 && errno == EINTR);
	return got == pid;
}

static bool exited_ok(int status)
{
	return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* True if the child ended well; else names how it ended, on stderr. */
static bool child_ok(const char *who, int status)
{
	if (exited_ok(status))
		return true;
	if (WIFSIGNALED(status))
		fprintf(stderr, PROG ": the %s was killed by signal %d (%s)\n", who,
			WTERMSIG(status), strsignal(WTERMSIG(status)));
	else
		fprintf(stderr, PROG ": the %s exited with status %d\n", who,
			WEXITSTATUS(status));
	return false;
}

/* What the parent remembers between two live lines. */
struct snapshot {
	uint64_t t_ns, verified;
	uint64_t hist[NBUCKETS];
};

static void take_snapshot(struct shared *sh, struct snapshot *s)
{
	s->t_ns = now_ns();
	s->verified = peek64(&sh->verified);
	for (unsigned b = 0; b < NBUCKETS; b++)
		s->hist[b] = peek64(&sh->hist[b]);
}

static void live_line(struct shared *sh, const struct snapshot *prev,
		      const struct snapshot *cur, uint64_t t0, bool tty)
{
	uint64_t d[NBUCKETS], n = 0;
	double dt = (double)(cur->t_ns - prev->t_ns) / 1e9;
	double rate = dt > 0 ? (double)(cur->verified - prev->verified) / dt : 0;
	char p50[32] = "-", p99[32] = "-";

	/* "corrupt" on the live line counts every sample that failed its
	 * checks but a gap: bad bytes, and repeated or backward sequence
	 * numbers; the summary tells them apart.
	 *
	 * Latency over this interval only: the difference of two snapshots
	 * of the cumulative histogram.  The consumer updates it while we
	 * read, so a bucket may be a few samples ahead of `verified`. */
	for (unsigned b = 0; b < NBUCKETS; b++) {
		d[b] = cur->hist[b] - prev->hist[b];
		n += d[b];
	}
	if (n) {
		fmt_ns(p50, sizeof(p50), percentile(d, n, 0.50));
		fmt_ns(p99, sizeof(p99), percentile(d, n, 0.99));
	}
	printf("%s%5.1f s  %8.3f M msg/s  %8.1f MB/s  latency p50 %-9s p99 %-9s  lost %" PRIu64
	       "  corrupt %" PRIu64 "%s",
	       tty ? "\r" : "", (double)(cur->t_ns - t0) / 1e9, rate / 1e6,
	       rate * (double)sizeof(struct sample) / 1e6, p50, p99, peek64(&sh->lost),
	       peek64(&sh->corrupt) + peek64(&sh->disordered), tty ? "\033[K" : "\n");
	fflush(stdout);
}

static void summary(struct shared *sh, uint64_t run_ns, bool ok)
{
	static uint64_t hist[NBUCKETS];
	uint64_t sent = peek64(&sh->sent), verified = peek64(&sh->verified), n = 0;
	double secs = run_ns ? (double)run_ns / 1e9 : 1e-9;
	char a[32], b[32], c[32], d[32];

	for (unsigned i = 0; i < NBUCKETS; i++) {
		hist[i] = peek64(&sh->hist[i]);
		n += hist[i];
	}
	printf("\nsent %" PRIu64 " samples in %.2f s (%.3f M msg/s, %.1f MB/s); "
	       "received %" PRIu64 ", verified %" PRIu64 "\n",
	       sent, secs, (double)sent / secs / 1e6,
	       (double)sent * (double)sizeof(struct sample) / secs / 1e6,
	       peek64(&sh->received), verified);
	if (n)
		printf("latency: p50 %s, p99 %s, p99.9 %s, max %s\n",
		       fmt_ns(a, sizeof(a), percentile(hist, n, 0.50)),
		       fmt_ns(b, sizeof(b), percentile(hist, n, 0.99)),
		       fmt_ns(c, sizeof(c), percentile(hist, n, 0.999)),
		       fmt_ns(d, sizeof(d), peek64(&sh->lat_max)));
	printf("lost %" PRIu64 ", corrupt %" PRIu64 ", duplicated or out of order %" PRIu64
	       "; ring found full by %" PRIu64 " sends, empty %" PRIu64 " times by the consumer\n",
	       peek64(&sh->lost), peek64(&sh->corrupt), peek64(&sh->disordered),
	       peek64(&sh->full_waits), peek64(&sh->empty_waits));
	if (ok)
		printf("OK: every sample sent arrived once, in order and intact\n");
	else
		printf("FAILED: not every sample sent was verified (see above)\n");
}

int main(int argc, char **argv)
{
	struct options o;
	struct rbus_region_opts ro;
	struct rbus_region_info info;
	struct rbus_region *r;
	struct shared *sh;
	struct sigaction sa;
	static struct snapshot snap[2];
	pid_t prod, cons;
	int pstat = 0, cstat = 0, cpu_p, cpu_c, err, cur = 0;
	bool prod_gone = false, cons_gone = false, started = false, ok;
	bool tty = isatty(STDOUT_FILENO);
	uint64_t t0, t_end, next_tick, deadline, expected;

	if (parse_options(argc, argv, &o) < 0) {
		fprintf(stderr, "Try '" PROG " --help'.\n");
		return 2;
	}
	crc32_init();

	rbus_region_opts_init(&ro);
	ro.kind = RBUS_KIND_SPSC;
	ro.capacity = o.capacity;
	ro.max_msg = sizeof(struct sample);
	ro.flags = RBUS_REGION_PREFAULT;
	err = rbus_region_create(&ro, &r);
	if (err < 0) {
		fprintf(stderr, PROG ": creating an SPSC region of %u slots of %zu bytes: %s\n",
			o.capacity, sizeof(struct sample), rbus_strerror(err));
		return 1;
	}
	rbus_region_info(r, &info);

	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED) {
		fprintf(stderr, PROG ": mapping the shared counters: %s\n", strerror(errno));
		rbus_region_close(r);
		return 1;
	}

	/* Ctrl-C or SIGTERM ends the run early, with a summary. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	pick_cpus(&cpu_p, &cpu_c);
	printf(PROG ": SPSC ring in a sealed memfd of %" PRIu64 " KiB, %u slots of %u bytes, "
	       "%zu-byte samples\n", info.size / 1024, info.capacity, info.slot_size,
	       sizeof(struct sample));
	if (cpu_p >= 0)
		printf("producer on CPU %d, consumer on CPU %d; ", cpu_p, cpu_c);
	else
		printf("producer and consumer unpinned (fewer than 2 CPUs); ");
	printf("%.1f s at ", o.duration_s);
	if (o.rate > 0)
		printf("%.0f samples/s\n", o.rate);
	else
		printf("full speed\n");

	/* Consumer first, so that it is waiting when the first sample
	 * comes; the ring holds samples until it is there anyway. */
	cons = spawn(consumer_main, rbus_region_fd(r), sh, &o, cpu_c, "consumer");
	if (cons < 0) {
		rbus_region_close(r);
		return 1;
	}
	prod = spawn(producer_main, rbus_region_fd(r), sh, &o, cpu_p, "producer");
	if (prod < 0) {
		atomic_store_explicit(&sh->abort_run, 1, memory_order_relaxed);
		waitpid(cons, &cstat, 0);
		rbus_region_close(r);
		return 1;
	}

	/* Wait for both children to attach, then start the clock. */
	for (int waited = 0; !interrupted; waited++) {
		if (atomic_load_explicit(&sh->producer_ready, memory_order_relaxed) &&
		    atomic_load_explicit(&sh->consumer_ready, memory_order_relaxed)) {
			started = true;
			break;
		}
		if ((prod_gone = reaped(prod, &pstat)) || (cons_gone = reaped(cons, &cstat)))
			break;
		if (waited == SHUTDOWN_S * 1000) {
			fprintf(stderr, PROG ": the producer and consumer did not start within %d s\n",
				SHUTDOWN_S);
			break;
		}
		usleep(1000);
	}
	t0 = now_ns();
	if (started)
		atomic_store_explicit(&sh->go, 1, memory_order_relaxed);
	deadline = t0 + (uint64_t)(o.duration_s * 1e9);
	next_tick = t0 + TICK_NS;
	take_snapshot(sh, &snap[cur]);
	snap[cur].t_ns = t0;
	while (started && !interrupted) {
		uint64_t now;

		sleep_until(next_tick < deadline ? next_tick : deadline);
		now = now_ns();
		if (interrupted || now >= deadline)
			break;
		if ((prod_gone = reaped(prod, &pstat)) || (cons_gone = reaped(cons, &cstat)))
			break;  /* a child ended before its time: stop the run */
		if (now >= next_tick) {
			take_snapshot(sh, &snap[!cur]);
			live_line(sh, &snap[cur], &snap[!cur], t0, tty);
			cur = !cur;
			next_tick += TICK_NS;
		}
	}
	t_end = now_ns();

	/* stop (relaxed): the producer's own release of producer_done is
	 * what orders the end of the stream for the consumer. */
	atomic_store_explicit(&sh->stop, 1, memory_order_relaxed);
	for (int waited = 0;; waited++) {
		if (!prod_gone)
			prod_gone = reaped(prod, &pstat);
		if (!cons_gone)
			cons_gone = reaped(cons, &cstat);
		/* A producer that died never set producer_done: tell the
		 * consumer not to wait for it. */
		if (prod_gone && !exited_ok(pstat))
			atomic_store_explicit(&sh->abort_run, 1, memory_order_relaxed);
		if (prod_gone && cons_gone)
			break;
		if (waited == SHUTDOWN_S * 100) {
			fprintf(stderr, PROG ": the %s did not stop within %d s: killing it\n",
				!prod_gone ? "producer" : "consumer", SHUTDOWN_S);
			if (!prod_gone)
				kill(prod, SIGKILL);
			if (!cons_gone)
				kill(cons, SIGKILL);
		}
		usleep(10000);
	}
	if (tty)
		printf("\n");

	/* The verdict.  The producer counts what it sent; the consumer must
	 * have verified exactly that many, each the next in sequence, with
	 * nothing corrupt, repeated or skipped. */
	ok = started;
	ok = child_ok("producer", pstat) && ok;
	ok = child_ok("consumer", cstat) && ok;
	/* producer_done and consumer_done (acquire): pair with the release
	 * stores each child makes after its last counter update, so the
	 * counters read below are final. */
	ok = atomic_load_explicit(&sh->producer_done, memory_order_acquire) && ok;
	ok = atomic_load_explicit(&sh->consumer_done, memory_order_acquire) && ok;
	expected = peek64(&sh->sent);
	ok = ok && peek64(&sh->verified) == expected && peek64(&sh->received) == expected &&
	     peek64(&sh->lost) == 0 && peek64(&sh->corrupt) == 0 &&
	     peek64(&sh->disordered) == 0 && expected > 0;
	if (expected == 0)
		fprintf(stderr, PROG ": no sample was sent\n");
	summary(sh, t_end - t0, ok);
	if (interrupted)
		printf("(interrupted after %.1f s)\n", (double)(t_end - t0) / 1e9);

	munmap(sh, sizeof(*sh));
	rbus_region_close(r);
	return ok ? 0 : 1;
}
