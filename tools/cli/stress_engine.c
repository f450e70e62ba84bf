/* SPDX-License-Identifier: MIT */
/*
 * stress_engine.c - the verifying wakeup stress (stress_engine.h).
 *
 * Processes.  The caller supervises; it forks the workers (producers then
 * consumers, or sleepers then the waker) and, with signals, a signaller.
 * They share, in MAP_SHARED memory made before the fork: a control block
 * (start barrier, stop flags, the sleepers' futex words), one block of
 * counters per process (written by that process only, read by the
 * supervisor for the live line and the summary), and in channel mode a
 * bitmap of every (producer, sequence) received.
 *
 * Messages (channel mode): a 32-byte header - producer id, total length,
 * 64-bit sequence, CLOCK_MONOTONIC time the header was written (a record
 * only), and a CRC-32C over the payload, then the header without the CRC
 * field - and a pseudo-random payload; lengths vary from the header alone to max_msg.
 * Producers alternate every 64 messages between the copy path
 * (rbus_send_wait) and the zero-copy path (rbus_reserve_wait, written in
 * place, rbus_commit); consumers between rbus_recv_wait and rbus_peek_wait
 * + rbus_release.  A consumer checks length and CRC (corrupt), marks the
 * message in the shared bitmap (a second mark is a duplicate, a mark never
 * made a loss) and checks that each producer's sequence goes up in what it
 * alone sees (reordered).
 *
 * The sleepers' handshake mirrors the library's (wait.c, doc/design.md §7),
 * on one word: the waker publishes generation g in the futex word itself
 * (W1), fences (F2), and if any sleeper is registered (W3) takes the
 * registrations (W4) and FUTEX_WAKEs everyone (W5); a sleeper loads the word
 * (S1), registers once per value (S2), fences (F1), re-checks the word (S4)
 * and sleeps on the value it loaded (S5).  Each sleeper acknowledges each
 * generation; the last to do so wakes the waker, which publishes the next
 * generation only then.  So every sleeper must see every generation, in
 * order, and none can be skipped.
 *
 * One departure from the library: registrations are counted apart by the
 * parity of the generation they wait for.  A sleeper may see g, acknowledge
 * it and register for g + 1 while the waker, late, has yet to take the
 * registrations for g (W4).  In the library that waker bumps the word after
 * taking them, so the sleeper sees it move and registers afresh; here the
 * word moves only with the generation, so the waker of g would take the
 * registration for g + 1, and the sleeper, believing it pending, would
 * sleep through g + 1 (seen in a test with the waker stopped before W4).
 * With the counts apart, the waker of g takes only registrations for g.
 *
 * Signals.  Workers of even index install the SIGUSR1 handler with
 * SA_RESTART, those of odd index without it and open their channels with
 * RBUS_CHANNEL_EINTR, retrying each -EINTR with the same deadline.  The
 * signaller sends SIGUSR1 to random workers in bursts, and one time in 64
 * stops one with SIGSTOP for min(2 ms, W/20) before SIGCONT: a delay, which
 * the stall rules never count, kept short so that runs stay fast.  It stops
 * before the supervisor reaps anyone (it watches with WNOWAIT), so it never
 * signals a recycled pid.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "layout.h"
#include "cli.h"
#include "stress_engine.h"

#ifndef RBUS_TEST_HOOKS
#error "the stress engine needs a library built with RBUS_TEST_HOOKS"
#endif

#define MS 1000000LL

/* ---- shared memory ------------------------------------------------------ */

/* One process's counters: only that process writes them (its signal
 * handler only `sigs`); the supervisor reads them, a hint until the
 * process has exited. */
struct pstats {
	_Atomic uint64_t ops;      /* producer: sent; consumer: received;
				      sleeper: generations seen; waker:
				      generations done (every ack in) */
	_Atomic uint64_t bytes;    /* consumer: message bytes; waker:
				      generations published */
	_Atomic uint64_t dup, reord, corrupt, lost;
	_Atomic uint64_t stalls, timeouts, eintr, errors;
	_Atomic uint64_t sleeps, wakes, woken, blind;
	_Atomic uint64_t sigs;
	_Atomic uint64_t pauses;   /* cfg->pauses: stops made */
	_Atomic uint64_t excused;  /* timers run out with the work there,
				      which the stall rules cleared */
	/* What the stall rules (stress_engine.h) read of another process.
	 * phase: PH_*, of a producer or consumer.  done: a producer's sends
	 * that returned (its next sequence); a consumer's slots freed; the
	 * waker's last generation whose wake is over; a sleeper's last
	 * generation whose ack is over, wake included.  done_ns: when the
	 * last of them was over.  woke_ns: when a sleep of a producer or
	 * consumer last ended other than by its timer.  idle_ns: when it
	 * last went PH_IDLE.  All are stored before done and phase
	 * (release), so a reader that acquires either finds those times or
	 * later ones. */
	_Atomic int phase;
	_Atomic uint64_t done;
	_Atomic int64_t done_ns, woke_ns, idle_ns;
} __attribute__((aligned(128)));

/* Where a producer or consumer is.  PH_CALL: in a ring call and awake, so
 * perhaps between a publish and its wake; PH_ASLEEP: asleep in the
 * library, which publishes nothing in a call before its sleeps. */
enum { PH_IDLE, PH_CALL, PH_ASLEEP };

struct ctl {
	/* Start barrier: every process arrives, the last sets go and wakes
	 * the others (futex word). */
	_Atomic uint32_t arrived;
	_Atomic uint32_t go;
	_Atomic int64_t t_start;
	_Atomic bool stop;         /* end now (stop_at_stall, or abort) */
	_Atomic bool abort;        /* a process died or the run hung:
				      wait for nobody */
	_Atomic bool quiesce;      /* the workers are done: signaller, stop */
	_Atomic bool cut;          /* a producer reached the bitmap's end */
	_Atomic uint64_t signals_sent, stops;
	_Atomic int err_claimed;
	char err[200];

	/* Sleepers mode.  The generation word and the registrations, as a
	 * region's struct rbus_waitq holds its seq and sleepers; on lines of
	 * their own, apart from the acknowledgements. */
	struct {
		_Atomic uint32_t word;     /* futex word: (u32)generation */
		_Atomic uint32_t sleepers[2]; /* registrations for the next
						 generation, by its parity */
		_Atomic uint64_t gen;      /* 64-bit generation */
		_Atomic bool last;         /* the final generation */
	} __attribute__((aligned(128))) g;
	struct {
		_Atomic uint32_t acks;     /* futex word of the waker */
	} __attribute__((aligned(128))) a;

	struct pstats st[];        /* workers, then the signaller */
};

struct msg_hdr {
	uint32_t producer;
	uint32_t len;              /* header + payload */
	uint64_t seq;
	int64_t t_commit;          /* when the header was written: a record */
	uint32_t crc;              /* CRC-32C: payload, then bytes 0-23, 28-31 */
	uint32_t zero;
};
_Static_assert(sizeof(struct msg_hdr) == RB_STRESS_MSG_HDR, "message header size");

/* ---- one run, as every process sees it ------------------------------------ */

struct run {
	const struct rb_stress_cfg *cfg;
	struct ctl *ctl;
	size_t ctl_size;
	unsigned nworkers;         /* producers + consumers, or sleepers + waker */
	unsigned nprocs;           /* nworkers (+ 1 with the signaller) */
	pid_t *pids;               /* of the workers, then the signaller */
	/* Channel mode. */
	struct rbus_region *r;
	unsigned char *map;        /* our own mapping of the region ... */
	size_t map_size;
	struct rbus_wait *wait;    /* ... for its wait block (layout.h) */
	_Atomic uint64_t *bitmap;  /* nprod * cap bits */
	size_t bitmap_size;
	uint64_t cap;              /* messages per producer it can mark */
	/* In a child: */
	unsigned index;
	struct pstats *me;
	int64_t t_end;             /* end of the traffic, or RBUS_FOREVER */
	/* In the supervisor: errors it found itself (dead processes, a hang,
	 * a failed fork). */
	uint64_t sup_errors;
};

/* Counters of our own process: a load and a store, no locked operation
 * (only we write them; relaxed: the supervisor's figures are hints). */
static inline void bump(_Atomic uint64_t *c, uint64_t n)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
			      memory_order_relaxed);
}

static inline uint64_t get(const _Atomic uint64_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

static bool flag(const _Atomic bool *b)
{
	/* Relaxed: flags end loops; nothing is read through them. */
	return atomic_load_explicit(b, memory_order_relaxed);
}

static void set_flag(_Atomic bool *b)
{
	atomic_store_explicit(b, true, memory_order_relaxed);
}

/* The first error of the run, for the summary; every error is counted. */
static void fail(struct run *R, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct run *R, const char *fmt, ...)
{
	va_list ap;

	bump(&R->me->errors, 1);
	/* seq_cst exchange: one process claims the message; nothing else is
	 * published through it (ctl->err is read after every child exited). */
	if (atomic_exchange(&R->ctl->err_claimed, 1))
		return;
	va_start(ap, fmt);
	vsnprintf(R->ctl->err, sizeof(R->ctl->err), fmt, ap);
	va_end(ap);
}

static void stall(struct run *R)
{
	bump(&R->me->stalls, 1);
	if (R->cfg->stop_at_stall)
		set_flag(&R->ctl->stop);
}

/* ---- futexes (never FUTEX_PRIVATE_FLAG: the words are shared) -------------- */

/* Sleep while *w == val, until the absolute CLOCK_MONOTONIC @deadline (0:
 * none).  Returns 0 (woken, or the word differed), -ETIMEDOUT or -EINTR. */
static int futex_wait_until(_Atomic uint32_t *w, uint32_t val, int64_t deadline)
{
	struct timespec ts = { .tv_sec = deadline / 1000000000, .tv_nsec = deadline % 1000000000 };
	long rc = syscall(SYS_futex, w, FUTEX_WAIT_BITSET, val, deadline ? &ts : NULL,
			  NULL, FUTEX_BITSET_MATCH_ANY);

	if (rc < 0 && (errno == ETIMEDOUT || errno == EINTR))
		return -errno;
	return 0;
}

static long futex_wake(_Atomic uint32_t *w, int n)
{
	return syscall(SYS_futex, w, FUTEX_WAKE, n, NULL, NULL, 0);
}

/* ---- randomness, jitter, traffic ------------------------------------------ */

static uint64_t rng;                   /* per process: seeded after fork */
static enum rb_stress_jitter jitter_level;
static struct pstats *sig_stats;       /* the handler's counter */
static struct pstats *self;            /* this process's block */
static int64_t pause_ns;               /* cfg->pauses: 1.5 W; else 0 */
/* The last sleep of the wait in progress, as rbus_test_sleep reports it:
 * did its timer end it, and its deadline.  Cleared before each wait. */
static bool slept_out;
static int64_t slept_until;

static uint32_t rnd(void)
{
	/* xorshift64* */
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return (uint32_t)((rng * UINT64_C(0x2545F4914F6CDD1D)) >> 32);
}

static void nap_ns(int64_t ns)
{
	struct timespec ts = { .tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000 };

	nanosleep(&ts, NULL);  /* a signal may cut it short: fine */
}

static void spin_for(uint32_t n)
{
	for (volatile uint32_t i = 0; i < n; i++)
		;
}

/* cfg->pauses: one time in 4, stop here for 1.5 W, as a process does
 * when its host stops the virtual CPU or its scheduler runs others. */
static void maybe_pause(void)
{
	if (pause_ns && rnd() % 4 == 0) {
		nap_ns(pause_ns);
		bump(&self->pauses, 1);
	}
}

/* The library calls this at each step of the handshake (and the sleepers
 * mode at the same steps of its own). */
static void jitter(enum rbus_jitter_point where)
{
	uint32_t r;

	if (where == RBUS_J_WAKER_SLEEPERS)
		maybe_pause();     /* published, saw sleepers, not woken yet */
	if (jitter_level == RB_STRESS_JITTER_NONE)
		return;
	r = rnd();
	if (jitter_level == RB_STRESS_JITTER_HEAVY &&
	    (where == RBUS_J_SLEEPER_SEQ || where == RBUS_J_SLEEPER_REGISTER)) {
		/* The window between the sleeper's last look and its
		 * registration: a publish here is seen only by a re-check. */
		if (r % 4 == 0)
			nap_ns(50000 + (int64_t)(rnd() % 450000));
		return;
	}
	if (r % 64 == 0)
		spin_for(rnd() % 2000);
	else if (r % 256 == 1)
		sched_yield();
	else if (r % 2048 == 2)
		nap_ns(1000 + (int64_t)(rnd() % 100000));
}

static inline void jit(enum rbus_jitter_point where)
{
	if (jitter_level != RB_STRESS_JITTER_NONE || pause_ns)
		jitter(where);
}

/* A producer's or consumer's phase.  Release: a peer that acquires it
 * finds done_ns as new as when it was stored (pstats). */
static void set_phase(int ph)
{
	/* Relaxed: published by the release store of phase just below. */
	if (ph == PH_IDLE)
		atomic_store_explicit(&self->idle_ns, rbus_now(), memory_order_relaxed);
	atomic_store_explicit(&self->phase, ph, memory_order_release);
}

/* Where this process's last call (or ack) was over: done_ns, then done. */
static void set_done(uint64_t done)
{
	atomic_store_explicit(&self->done_ns, rbus_now(), memory_order_relaxed);
	/* Release: pairs with the acquire loads of done in the stall
	 * rules, which then read this done_ns or a later one. */
	atomic_store_explicit(&self->done, done, memory_order_release);
}

/* The library calls this as each sleep of a wait begins and ends.  A probe
 * that runs out is not judged: it may rightly miss a publish in flight as
 * the sleeper re-checked, and it may have begun any time after that. */
static void on_sleep(enum rbus_sleep_event ev, int64_t until, bool probe)
{
	if (ev == RBUS_SLEEP_BEGIN) {
		set_phase(PH_ASLEEP);
		return;
	}
	/* Relaxed: published by set_phase()'s release just below. */
	if (ev == RBUS_SLEEP_WOKEN)
		atomic_store_explicit(&self->woke_ns, rbus_now(), memory_order_relaxed);
	set_phase(PH_CALL);
	slept_out = ev == RBUS_SLEEP_EXPIRED && !probe;
	slept_until = until;
	if (ev == RBUS_SLEEP_WOKEN)
		maybe_pause();     /* woken, and slow to run on */
}

/* Bursts and pauses: now and then a pause of up to 1.5 ms, or a yield, so
 * that both sides go to sleep and are woken. */
static void traffic_pause(const struct rb_stress_cfg *cfg)
{
	uint32_t r;

	if (cfg->traffic == RB_STRESS_STEADY)
		return;
	r = rnd();
	if (r % 1024 == 0)
		nap_ns((int64_t)(rnd() % 1500000));
	else if (r % 128 == 1)
		sched_yield();
}

/* Sparse traffic, after each message sent (SPARSE) or taken (SPARSE_ROOM):
 * a pause, a quarter of them longer than W, so that a lost wakeup is not
 * healed by the next message or free and shows as a stall. */
static void sparse_pause(const struct rb_stress_cfg *cfg)
{
	nap_ns(rnd() % 4 ? 50000 + (int64_t)(rnd() % 450000) : cfg->wait_ns + cfg->wait_ns / 2);
}

static void on_sigusr1(int sig)
{
	(void)sig;
	/* Lock-free, so async-signal-safe; only this handler writes it. */
	atomic_fetch_add_explicit(&sig_stats->sigs, 1, memory_order_relaxed);
}

/* ---- stalls (stress_engine.h) ------------------------------------------------
 *
 * A wait stalled if its last sleep ran to its own timer although what it
 * waited for was done - published, and the wake that publish owed issued
 * or rightly skipped - before that timer's deadline less a margin (W/2, at
 * most 500 ms: margin()).  Both halves are facts, not guesses from how
 * late something came: the library's rbus_test_sleep hook says whether the
 * timer ended the sleep, and the process that did the work records when
 * it was over (pstats done, done_ns).  A working handshake never lets a
 * sleep other than a probe run to its timer after such a wake: FUTEX_WAKE
 * takes a waiter off the queue before its timer can, and a token written
 * into an eventfd is there when poll() looks again - unless another
 * sleeper of the same role took it, which then owes the work.  So the
 * rules also clear a wait while any other process that might owe the wake
 * or the work (a waker between taking registrations and waking, a sleeper
 * holding a token, a consumer stuck between calls) is in a call, or has
 * been woken or done with one since then.  A process delayed anywhere
 * therefore makes no stall, however long the delay.  Probes are not judged
 * (on_sleep()); the margin is slack, and lets a sleep cut at the library's
 * 1 s cap be judged.
 *
 * The records that convict are at least the margin old, so long visible
 * even where nothing orders them for us; fresher ones can only clear.
 */

/* Might process st owe the wake or the work judged: in a call now, or
 * done with one, or woken, since @before?  With @stuck, also when it has
 * been idle since before then: a consumer between calls is gone for at
 * most a traffic pause (1.5 ms) unless delayed, and one that took a token
 * and the message it was for, then was delayed, owes the next. */
static bool busy_since(const struct pstats *st, int64_t before, bool stuck)
{
	/* Acquire: pairs with set_phase(), for the times. */
	int ph = atomic_load_explicit(&st->phase, memory_order_acquire);

	return ph == PH_CALL ||
	       atomic_load_explicit(&st->done_ns, memory_order_relaxed) >= before ||
	       atomic_load_explicit(&st->woke_ns, memory_order_relaxed) >= before ||
	       (stuck && ph == PH_IDLE &&
		atomic_load_explicit(&st->idle_ns, memory_order_relaxed) < before);
}

/* Is any of the n processes from st, but @skip, busy since @before? */
static bool any_busy(const struct pstats *st, unsigned n, const struct pstats *skip,
		     int64_t before, bool stuck)
{
	for (unsigned i = 0; i < n; i++)
		if (&st[i] != skip && busy_since(&st[i], before, stuck))
			return true;
	return false;
}

/* The margin before the deadline: W/2, but at most half the library's
 * longest sleep (1 s), so that a sleep cut at that cap can be judged. */
static int64_t margin(const struct rb_stress_cfg *cfg)
{
	return cfg->wait_ns / 2 < 500 * MS ? cfg->wait_ns / 2 : 500 * MS;
}

/* A consumer took message h after a wait whose last sleep ran out.  A
 * stall if the send of h had returned before the deadline less the
 * margin, and no other producer (one that took the registrations at W4
 * owes their wake until W5, and the send of h, finding none, made no wake)
 * nor other consumer (one may hold the eventfd token meant for us, or be
 * stuck between calls) was busy since. */
static bool msg_stall_rule(const struct run *R, const struct msg_hdr *h)
{
	const struct rb_stress_cfg *cfg = R->cfg;
	const struct pstats *st = R->ctl->st;
	const int64_t before = slept_until - margin(cfg);

	/* Acquire: pairs with the producer's release of done (set_done()). */
	if (atomic_load_explicit(&st[h->producer].done, memory_order_acquire) <= h->seq ||
	    atomic_load_explicit(&st[h->producer].done_ns, memory_order_relaxed) >= before)
		return false;
	return !any_busy(st, cfg->nprod, &st[h->producer], before, false) &&
	       !any_busy(st + cfg->nprod, cfg->ncons, R->me, before, true);
}

/* A producer's wait ran out and then got room: at the wait's last try, or
 * the re-check after a long sleep's period, or a try right after
 * -ETIMEDOUT.  A stall if no consumer (the one whose free made the room
 * may be between that free and its wake) nor other producer (one may hold
 * the token meant for us) was busy since the deadline less the margin.
 * The try acquired the free that made the room, and with it the PH_CALL
 * stored before that free, so that consumer's phase read is that one or
 * later. */
static bool room_stall_rule(const struct run *R)
{
	const struct rb_stress_cfg *cfg = R->cfg;
	const struct pstats *st = R->ctl->st;
	const int64_t before = slept_until - margin(cfg);

	/* Producers nap on purpose (sparse traffic), so an idle one is not
	 * taken for a stuck one.  A producer that took the token meant for us
	 * and then napped left us robbed, which the library notices within a
	 * slice (10 ms, design.md §7.3), inside the margin (25 ms at least):
	 * beyond it, it is counted. */
	return !any_busy(st + cfg->nprod, cfg->ncons, NULL, before, false) &&
	       !any_busy(st, cfg->nprod, R->me, before, false);
}

/* A wait's last sleep ran out its timer with the work there: a stall, or
 * excused by the rules above (the wake was still owed, or its work came
 * within the margin of the timer), and counted as such. */
static bool judged(struct run *R, bool stalled)
{
	if (!stalled)
		bump(&R->me->excused, 1);
	return stalled;
}

static bool msg_stall(struct run *R, const struct msg_hdr *h)
{
	return slept_out && judged(R, msg_stall_rule(R, h));
}

static bool room_stall(struct run *R)
{
	return slept_out && judged(R, room_stall_rule(R));
}

/* ---- the start barrier ------------------------------------------------------ */

/* Wait until every process has arrived; false if the run was aborted
 * first.  Sets R->t_end. */
static bool barrier(struct run *R)
{
	struct ctl *c = R->ctl;

	/* seq_cst: the last arrival sees every other; pairs with itself. */
	if (atomic_fetch_add(&c->arrived, 1) + 1 == R->nprocs) {
		atomic_store(&c->t_start, rbus_now());
		/* seq_cst store: t_start and the arrivals before it. */
		atomic_store(&c->go, 1);
		futex_wake(&c->go, INT_MAX);
	}
	/* seq_cst load: pairs with the store of go above; t_start is read
	 * after it. */
	while (!atomic_load(&c->go)) {
		if (flag(&c->abort))
			return false;
		futex_wait_until(&c->go, 0, rbus_now() + 100 * MS);
	}
	R->t_end = R->cfg->duration_ns ? atomic_load(&c->t_start) + R->cfg->duration_ns
				       : RBUS_FOREVER;
	return true;
}

static bool time_up(const struct run *R)
{
	return flag(&R->ctl->stop) || (R->t_end != RBUS_FOREVER && rbus_now() >= R->t_end);
}

/* ---- messages ---------------------------------------------------------------- */

static uint32_t msg_crc(const unsigned char *m, size_t len)
{
	uint32_t c = rb_crc32c(0, m + RB_STRESS_MSG_HDR, len - RB_STRESS_MSG_HDR);

	c = rb_crc32c(c, m, offsetof(struct msg_hdr, crc));
	return rb_crc32c(c, m + offsetof(struct msg_hdr, zero), sizeof(uint32_t));
}

/* Write message (producer, seq) of @len bytes at @m, stamped now. */
static void msg_fill(unsigned char *m, uint32_t producer, uint64_t seq, uint32_t len)
{
	struct msg_hdr h = { .producer = producer, .len = len, .seq = seq };
	uint64_t x = (seq + 1) * UINT64_C(0x9E3779B97F4A7C15) ^ ((uint64_t)producer << 48);

	for (uint32_t i = RB_STRESS_MSG_HDR; i < len; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(m + i, &x, len - i < 8 ? len - i : 8);
	}
	h.t_commit = rbus_now();
	memcpy(m, &h, sizeof(h));
	h.crc = msg_crc(m, len);
	memcpy(m + offsetof(struct msg_hdr, crc), &h.crc, sizeof(h.crc));
}

/* ---- producers ---------------------------------------------------------------- */

/* Send message @seq.  Returns 1 sent, 0 not sent (the wait ran out and the
 * ring is still full: the consumers' stall, not ours), -1 error. */
static int send_one(struct run *R, struct rbus_channel *ch, unsigned id, uint64_t seq,
		    uint32_t len, bool zero_copy, unsigned char *buf)
{
	const struct rb_stress_cfg *cfg = R->cfg;
	int64_t dl = rbus_now() + cfg->wait_ns;
	bool reserved = false;     /* slot is ours, to fill and commit */
	const char *what;
	void *slot;
	int r;

	set_phase(PH_CALL);
	slept_out = false;
	if (zero_copy) {
		what = "rbus_reserve_wait";
		while ((r = rbus_reserve_wait(ch, &slot, dl)) == -EINTR)
			bump(&R->me->eintr, 1);
		reserved = r == 0;
	} else {
		what = "rbus_send_wait";
		msg_fill(buf, id, seq, len);
		while ((r = rbus_send_wait(ch, buf, len, dl)) == -EINTR)
			bump(&R->me->eintr, 1);
	}
	if (r == -ETIMEDOUT) {
		bump(&R->me->timeouts, 1);
		/* Was there room all along?  Asked with a reservation in both
		 * paths: the stall rule reads the consumers before a publish
		 * of ours can wake them. */
		what = "rbus_reserve";
		r = rbus_reserve(ch, &slot);
		if (r == -EAGAIN) {
			set_phase(PH_IDLE);
			return 0;
		}
		reserved = r == 0;
	}
	/* Room, perhaps only at the wait's last try after its timer ran out,
	 * or after the timeout.  (A copy path that got room in the wait has
	 * published already and may have woken a consumer before the rule
	 * reads it, which can only clear, never convict.) */
	if (r == 0 && room_stall(R))
		stall(R);
	if (reserved) {
		if (zero_copy)
			msg_fill(slot, id, seq, len);
		else
			memcpy(slot, buf, len);     /* filled before the wait */
		what = "rbus_commit";
		r = rbus_commit(ch, len);
	}
	if (r) {
		fail(R, "producer %u: %s: %s", id, what, rbus_strerror(r));
		return -1;
	}
	set_done(seq + 1);
	set_phase(PH_IDLE);
	return 1;
}

static int producer(struct run *R, unsigned id)
{
	const struct rb_stress_cfg *cfg = R->cfg;
	uint32_t flags = cfg->signals && (R->index & 1) ? RBUS_CHANNEL_EINTR : 0;
	unsigned char *buf = malloc(cfg->max_msg);
	struct rbus_channel *ch = NULL;
	uint64_t seq = 0;
	int err = buf ? rbus_channel_open(R->r, RBUS_PRODUCER, flags, &ch) : -ENOMEM;

	if (err)
		fail(R, "producer %u: rbus_channel_open: %s", id, rbus_strerror(err));
	else
		rbus_channel_set_spin(ch, rnd() % 2 ? 0 : RBUS_SPIN_DEFAULT_NS);
	if (!barrier(R) || err)
		goto out;
	while (!time_up(R)) {
		uint32_t len;
		int r;

		if (cfg->count && seq >= cfg->count)
			break;
		if (seq >= R->cap) {
			set_flag(&R->ctl->cut);
			break;
		}
		traffic_pause(cfg);
		len = RB_STRESS_MSG_HDR + rnd() % (cfg->max_msg - RB_STRESS_MSG_HDR + 1);
		r = send_one(R, ch, id, seq, len, (seq >> 6) & 1, buf);
		if (r < 0)
			break;
		if (r == 0)
			continue;
		seq++;
		bump(&R->me->ops, 1);
		if (cfg->traffic == RB_STRESS_SPARSE)
			sparse_pause(cfg);
	}
out:
	/* The close is the hang-up the consumers end on.  It wakes the
	 * consumers like a send (it may take their registrations), so it is
	 * a call for the stall rules. */
	set_phase(PH_CALL);
	rbus_channel_close(ch);
	set_done(seq);
	set_phase(PH_IDLE);
	free(buf);
	return err ? 1 : 0;
}

/* ---- consumers ------------------------------------------------------------------ */

/* Check and record one message, brought by the wait just made. */
static void take(struct run *R, const unsigned char *m, ssize_t n, uint64_t *last)
{
	const struct rb_stress_cfg *cfg = R->cfg;
	struct msg_hdr h;
	_Atomic uint64_t *word;
	uint64_t bit, old;

	if (n < (ssize_t)RB_STRESS_MSG_HDR) {
		bump(&R->me->corrupt, 1);
		return;
	}
	memcpy(&h, m, sizeof(h));
	if (h.len != (uint64_t)n || h.producer >= cfg->nprod || h.seq >= R->cap ||
	    h.zero != 0 || h.crc != msg_crc(m, (size_t)n)) {
		bump(&R->me->corrupt, 1);
		return;
	}
	if (msg_stall(R, &h))
		stall(R);
	word = &R->bitmap[h.producer * (R->cap / 64) + h.seq / 64];
	bit = UINT64_C(1) << (h.seq % 64);
	/* Relaxed: the bit is its own record; the supervisor reads the
	 * bitmap after reaping us. */
	old = atomic_fetch_or_explicit(word, bit, memory_order_relaxed);
	if (old & bit) {
		bump(&R->me->dup, 1);
		return;
	}
	if (last[h.producer] != UINT64_MAX && h.seq < last[h.producer])
		bump(&R->me->reord, 1);
	last[h.producer] = h.seq;
	bump(&R->me->ops, 1);
	bump(&R->me->bytes, (uint64_t)n);
}

static int consumer(struct run *R, unsigned id)
{
	const struct rb_stress_cfg *cfg = R->cfg;
	uint32_t flags = cfg->signals && (R->index & 1) ? RBUS_CHANNEL_EINTR : 0;
	unsigned char *buf = malloc(cfg->max_msg);
	uint64_t *last = malloc(cfg->nprod * sizeof(*last));
	struct rbus_channel *ch = NULL;
	int err = buf && last ? rbus_channel_open(R->r, RBUS_CONSUMER, flags, &ch) : -ENOMEM;

	if (err)
		fail(R, "consumer %u: rbus_channel_open: %s", id, rbus_strerror(err));
	else
		rbus_channel_set_spin(ch, rnd() % 2 ? 0 : RBUS_SPIN_DEFAULT_NS);
	if (!barrier(R) || err)
		goto out;
	for (unsigned p = 0; p < cfg->nprod; p++)
		last[p] = UINT64_MAX;
	for (uint64_t k = 0, freed = 0;; k++) {
		bool zero_copy = (k >> 6) & 1;
		const void *p = buf;
		int64_t dl;
		ssize_t n;

		traffic_pause(cfg);
		set_phase(PH_CALL);
		slept_out = false;
		dl = rbus_now() + cfg->wait_ns;
		if (zero_copy)
			while ((n = rbus_peek_wait(ch, &p, dl)) == -EINTR)
				bump(&R->me->eintr, 1);
		else
			while ((n = rbus_recv_wait(ch, buf, cfg->max_msg, dl)) == -EINTR)
				bump(&R->me->eintr, 1);
		if (n == -ETIMEDOUT) {
			bump(&R->me->timeouts, 1);
			/* Was a message there all along? */
			n = zero_copy ? rbus_peek(ch, &p) : rbus_recv(ch, buf, cfg->max_msg);
			if (n == -EAGAIN) {
				set_phase(PH_IDLE);
				if (flag(&R->ctl->abort))
					break;
				continue;
			}
		}
		if (n == -EPIPE)        /* every producer has closed, ring drained */
			break;
		if (n < 0) {
			fail(R, "consumer %u: %s: %s", id,
			     zero_copy ? "rbus_peek_wait" : "rbus_recv_wait", rbus_strerror((int)n));
			break;
		}
		take(R, p, n, last);
		if (zero_copy) {
			int rel = rbus_release(ch);

			if (rel != 1) {
				fail(R, "consumer %u: rbus_release: %s", id, rel < 0 ?
				     rbus_strerror(rel) : "released more than one message");
				break;
			}
		}
		set_done(++freed);      /* the slot is free, its wake over */
		set_phase(PH_IDLE);
		if (cfg->traffic == RB_STRESS_SPARSE_ROOM)
			sparse_pause(cfg);
	}
out:
	rbus_channel_close(ch);
	free(buf);
	free(last);
	return err ? 1 : 0;
}

/* ---- sleepers mode ------------------------------------------------------------------ */

/* Acknowledge generation g; the last to do so wakes the waker. */
static void ack(struct run *R, uint64_t g)
{
	struct ctl *c = R->ctl;

	/* Release: pairs with the waker's acquire load of the count, so our
	 * reads of gen and last come before it overwrites them for g + 1. */
	if (atomic_fetch_add_explicit(&c->a.acks, 1, memory_order_release) + 1 ==
	    R->cfg->sleepers) {
		maybe_pause();     /* the last ack in, the waker not woken */
		futex_wake(&c->a.acks, 1);
	}
	set_done(g);
}

static int sleeper(struct run *R, unsigned id)
{
	struct ctl *c = R->ctl;
	const int64_t W = R->cfg->wait_ns;
	uint64_t seen = atomic_load(&c->g.gen);   /* set before the fork: no pair */
	bool registered = false;
	uint32_t s = 0;
	int64_t dl = 0;         /* deadline of the wait in progress, or 0 */

	if (!barrier(R))
		return 0;
	for (;;) {
		/* S1.  Acquire: pairs with the waker's release publish; we
		 * read gen, last and the reset acks through it. */
		uint32_t cur = atomic_load_explicit(&c->g.word, memory_order_acquire);
		int r;

		jit(RBUS_J_SLEEPER_SEQ);
		if (cur != (uint32_t)seen) {
			uint64_t g = atomic_load_explicit(&c->g.gen, memory_order_relaxed);
			bool last = flag(&c->g.last);

			/* The waker publishes g + 1 only when all of us have
			 * acknowledged g: anything but seen + 1 is a skip. */
			if (cur != (uint32_t)(seen + 1) || g != seen + 1) {
				fail(R, "sleeper %u: saw generation %llu (word %u) after %llu",
				     id, (unsigned long long)g, cur, (unsigned long long)seen);
				if (g > seen + 1)
					bump(&R->me->lost, g - seen - 1);
			}
			seen = g;
			bump(&R->me->ops, 1);
			dl = 0;
			registered = false;
			ack(R, g);
			if (last)
				break;
			continue;
		}
		if (!dl)
			dl = rbus_now() + W;
		if (!registered || cur != s) {
			s = cur;
			registered = true;
			/* S2 (release, as R6): pairs with the waker's acquire W4. */
			atomic_fetch_add_explicit(&c->g.sleepers[(cur + 1) & 1], 1,
						  memory_order_release);
			jit(RBUS_J_SLEEPER_REGISTER);
		}
		/* S3, F1: pairs with the waker's F2: the re-check below sees
		 * its publish, or the waker sees our registration. */
		atomic_thread_fence(memory_order_seq_cst);
		/* S4 */
		if (atomic_load_explicit(&c->g.word, memory_order_relaxed) != cur)
			continue;
		jit(RBUS_J_SLEEPER_RECHECK);
		if (flag(&c->abort))
			break;
		/* S5 */
		bump(&R->me->sleeps, 1);
		r = futex_wait_until(&c->g.word, cur, dl);
		if (r == -EINTR) {
			bump(&R->me->eintr, 1);
			continue;          /* the deadline stays */
		}
		if (r == -ETIMEDOUT) {
			const struct pstats *wk = &c->st[R->cfg->sleepers];

			bump(&R->me->timeouts, 1);
			/* A stall if the waker was done with the next
			 * generation, wake included, W/2 before our timer ran
			 * out ("Stalls" above).  Acquire: pairs with the
			 * waker's set_done(). */
			/* Relaxed: only whether a generation is out; the
			 * acquire of done orders what convicts. */
			if (atomic_load_explicit(&c->g.word, memory_order_relaxed) != (uint32_t)seen &&
			    judged(R, atomic_load_explicit(&wk->done, memory_order_acquire) > seen &&
				      atomic_load_explicit(&wk->done_ns, memory_order_relaxed) <
					      dl - W / 2))
				stall(R);
			dl = 0;            /* a new wait */
			if (flag(&c->abort))
				break;
		} else {
			maybe_pause();     /* woken, and slow to run on */
		}
	}
	return 0;
}

/* The waker's wait for the acks of generation g ran out its timer: a stall
 * if every sleeper was done acknowledging, the last one's wake included,
 * before @before. */
static bool acks_stall(const struct run *R, uint64_t g, int64_t before)
{
	for (unsigned i = 0; i < R->cfg->sleepers; i++) {
		const struct pstats *st = &R->ctl->st[i];

		/* Acquire: pairs with the sleeper's set_done(). */
		if (atomic_load_explicit(&st->done, memory_order_acquire) < g ||
		    atomic_load_explicit(&st->done_ns, memory_order_relaxed) >= before)
			return false;
	}
	return true;
}

/* Wait until every sleeper has acknowledged generation g; -1 if the run
 * was aborted. */
static int wait_acks(struct run *R, uint64_t g)
{
	struct ctl *c = R->ctl;
	const int64_t W = R->cfg->wait_ns;
	int64_t dl = rbus_now() + W;

	for (;;) {
		/* Acquire: pairs with the sleepers' release fetch_add. */
		uint32_t a = atomic_load_explicit(&c->a.acks, memory_order_acquire);
		int r;

		if (a >= R->cfg->sleepers)
			return 0;
		if (flag(&c->abort))
			return -1;
		r = futex_wait_until(&c->a.acks, a, dl);
		if (r == -EINTR) {
			bump(&R->me->eintr, 1);
		} else if (r == -ETIMEDOUT) {
			bump(&R->me->timeouts, 1);
			/* Our own wakeup, lost?  Else a sleeper is late: its
			 * stall, if any, is its own to count. */
			/* Relaxed: only whether the acks are in; the acquires
			 * in acks_stall() order what convicts. */
			if (atomic_load_explicit(&c->a.acks, memory_order_relaxed) >= R->cfg->sleepers &&
			    judged(R, acks_stall(R, g, dl - W / 2)))
				stall(R);
			dl = rbus_now() + W;
		}
	}
}

static int waker(struct run *R)
{
	const struct rb_stress_cfg *cfg = R->cfg;
	struct ctl *c = R->ctl;
	uint64_t g, n = 0;

	if (!barrier(R))
		return 0;
	g = atomic_load(&c->g.gen);   /* set before the fork: no pair */
	for (;;) {
		bool last = time_up(R) || (cfg->count && n + 1 >= cfg->count);
		uint32_t taken;

		traffic_pause(cfg);
		/* Every sleeper acknowledged g: nobody reads these now. */
		atomic_store_explicit(&c->a.acks, 0, memory_order_relaxed);
		atomic_store_explicit(&c->g.last, last, memory_order_relaxed);
		atomic_store_explicit(&c->g.gen, ++g, memory_order_relaxed);
		/* W1 (release): publishes the generation and the fields above;
		 * pairs with the sleepers' acquire S1. */
		atomic_store_explicit(&c->g.word, (uint32_t)g, memory_order_release);
		bump(&R->me->bytes, 1);
		jit(RBUS_J_WAKER_PUBLISH);
		/* W2, F2: pairs with the sleepers' F1. */
		atomic_thread_fence(memory_order_seq_cst);
		/* W3 */
		if (atomic_load_explicit(&c->g.sleepers[g & 1], memory_order_relaxed)) {
			jit(RBUS_J_WAKER_SLEEPERS);
			/* W4 (acquire): pairs with the sleepers' S2. */
			taken = atomic_exchange_explicit(&c->g.sleepers[g & 1], 0,
							 memory_order_acquire);
			if (taken) {
				long woke;

				jit(RBUS_J_WAKER_SEQ);
				/* W5 */
				woke = futex_wake(&c->g.word, INT_MAX);
				bump(&R->me->wakes, 1);
				if (woke > 0)
					bump(&R->me->woken, (uint64_t)woke);
				else if (woke == 0)
					bump(&R->me->blind, 1);
			}
		}
		set_done(g);       /* the wake of g is over */
		if (wait_acks(R, g))
			break;
		n++;
		bump(&R->me->ops, 1);
		if (last)
			break;
	}
	return 0;
}

/* ---- the signaller ------------------------------------------------------------------ */

static int signaller(struct run *R)
{
	struct ctl *c = R->ctl;
	int64_t stop_ns = R->cfg->wait_ns / 20 < 2 * MS ? R->cfg->wait_ns / 20 : 2 * MS;

	if (!barrier(R))
		return 0;
	while (!time_up(R) && !flag(&c->quiesce) && !flag(&c->abort)) {
		/* A burst of four, then a short nap: some 10^4 signals/s. */
		for (int i = 0; i < 4; i++) {
			pid_t pid = R->pids[rnd() % R->nworkers];

			if (rnd() % 64 == 0) {
				if (kill(pid, SIGSTOP) == 0) {
					nap_ns(stop_ns);
					kill(pid, SIGCONT);
					atomic_fetch_add_explicit(&c->stops, 1, memory_order_relaxed);
				}
			} else if (kill(pid, SIGUSR1) == 0) {
				atomic_fetch_add_explicit(&c->signals_sent, 1, memory_order_relaxed);
			}
		}
		nap_ns(20000 + (int64_t)(rnd() % 60000));
	}
	return 0;
}

/* ---- a child ---------------------------------------------------------------------------- */

static int child_main(struct run *R, unsigned index, const sigset_t *oldmask)
{
	const struct rb_stress_cfg *cfg = R->cfg;
	bool is_signaller = index == R->nworkers;

	sigprocmask(SIG_SETMASK, oldmask, NULL);
	R->index = index;
	R->me = &R->ctl->st[index];
	rng = (cfg->seed + 1) * UINT64_C(0x9E3779B97F4A7C15) ^ ((uint64_t)(index + 1) << 32 | 1);
	for (int i = 0; i < 8; i++)
		rnd();
	jitter_level = cfg->jitter;
	self = R->me;
	pause_ns = cfg->pauses && !is_signaller ? cfg->wait_ns + cfg->wait_ns / 2 : 0;
	if (!cfg->sleepers && (cfg->jitter != RB_STRESS_JITTER_NONE || pause_ns))
		rbus_test_jitter = jitter;
	if (!cfg->sleepers)
		rbus_test_sleep = on_sleep;
	if (cfg->signals && !is_signaller) {
		struct sigaction sa = { .sa_handler = on_sigusr1 };

		sig_stats = R->me;
		sigemptyset(&sa.sa_mask);
		sa.sa_flags = index % 2 ? 0 : SA_RESTART;
		sigaction(SIGUSR1, &sa, NULL);
	}
	if (is_signaller)
		return signaller(R);
	if (cfg->sleepers)
		return index < cfg->sleepers ? sleeper(R, index) : waker(R);
	return index < cfg->nprod ? producer(R, index) : consumer(R, index - cfg->nprod);
}

/* ---- setup, supervision, results --------------------------------------------------------- */

static int check_cfg(const struct rb_stress_cfg *cfg, struct rb_stress_result *res)
{
	const char *why = NULL;

	if (cfg->sleepers > RB_STRESS_MAX_SLEEPERS)
		why = "too many sleepers";
	else if (!cfg->sleepers && (!cfg->nprod || !cfg->ncons || cfg->nprod > RB_STRESS_MAX_SIDE ||
				    cfg->ncons > RB_STRESS_MAX_SIDE))
		why = "producers and consumers must be 1 to 64";
	else if (!cfg->sleepers && cfg->kind == RBUS_KIND_SPSC && (cfg->nprod != 1 || cfg->ncons != 1))
		why = "SPSC takes one producer and one consumer";
	else if (!cfg->sleepers && (cfg->max_msg < RB_STRESS_MSG_HDR || cfg->max_msg > (1u << 20)))
		why = "max_msg must be 32 bytes to 1 MiB";
	else if (cfg->wait_ns < RB_STRESS_WAIT_MIN_NS)
		why = "the wait timeout must be at least 50 ms";
	else if (!cfg->count && !cfg->duration_ns)
		why = "neither a count nor a duration: the run would not end";
	if (!why)
		return 0;
	snprintf(res->error, sizeof(res->error), "%s", why);
	return -EINVAL;
}

/* The bitmap: one bit per message a producer may send, MAP_NORESERVE so
 * that only the pages reached are allocated.  Without a count, 2^32 bits in
 * all (512 MiB of address space); a producer stops at the end of its part
 * (the run is then cut short). */
static int bitmap_alloc(struct run *R)
{
	const struct rb_stress_cfg *cfg = R->cfg;
	uint64_t cap = cfg->count ? (cfg->count + 63) / 64 * 64
				  : ((UINT64_C(1) << 32) / cfg->nprod) / 64 * 64;

	for (; cap >= 64; cap = cap / 2 / 64 * 64) {
		size_t size = (size_t)(cap / 8 * cfg->nprod);
		void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
			       MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

		if (p != MAP_FAILED) {
			R->bitmap = p;
			R->bitmap_size = size;
			R->cap = cap;
			return 0;
		}
		if (cfg->count)
			break;
	}
	return -ENOMEM;
}

static int setup_channel(struct run *R, struct rb_stress_result *res)
{
	const struct rb_stress_cfg *cfg = R->cfg;
	struct rbus_region_opts o;
	struct rbus_region_info info;
	const struct rbus_hdr *h;
	int err;

	rbus_region_opts_init(&o);
	o.kind = cfg->kind;
	o.wakeup = cfg->wakeup;
	o.capacity = cfg->capacity;
	o.max_msg = cfg->max_msg;
	err = rbus_region_create(&o, &R->r);
	if (err) {
		snprintf(res->error, sizeof(res->error), "rbus_region_create: %s", rbus_strerror(err));
		return err;
	}
	/* Our own mapping, for the wait block's futex words (layout.h): the
	 * region is fresh and ours, so its header needs no validation. */
	rbus_region_info(R->r, &info);
	R->map_size = (size_t)info.size;
	R->map = mmap(NULL, R->map_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		      rbus_region_fd(R->r), 0);
	if (R->map == MAP_FAILED) {
		err = -errno;
		R->map = NULL;
		snprintf(res->error, sizeof(res->error), "mmap of the region: %s", strerror(-err));
		return err;
	}
	h = (const struct rbus_hdr *)R->map;
	R->wait = (struct rbus_wait *)(R->map + h->wait_off);
	if (cfg->wrap) {
		/* Before any process uses the region: relaxed stores, and
		 * fork() orders them before everything the children do. */
		uint32_t v = (uint32_t)(0 - cfg->wrap);

		atomic_store_explicit(&R->wait->data.seq, v, memory_order_relaxed);
		atomic_store_explicit(&R->wait->space.seq, v, memory_order_relaxed);
	}
	res->nwords = 2;
	res->word_start[0] = atomic_load_explicit(&R->wait->data.seq, memory_order_relaxed);
	res->word_start[1] = atomic_load_explicit(&R->wait->space.seq, memory_order_relaxed);
	if (bitmap_alloc(R)) {
		snprintf(res->error, sizeof(res->error), "no memory for the bitmap of %llu messages",
			 (unsigned long long)cfg->count);
		return -ENOMEM;
	}
	return 0;
}

/* Sum the processes' counters into *res (a hint while they run). */
static void collect(const struct run *R, struct rb_stress_result *res)
{
	const struct rb_stress_cfg *cfg = R->cfg;
	struct ctl *c = R->ctl;
	uint64_t ops = 0, sent = 0;

	res->bytes = res->duplicated = res->reordered = res->corrupt = res->lost = 0;
	res->stalls = res->send_stalls = res->timeouts = res->eintr = res->errors = 0;
	res->signals_handled = 0;
	res->sleeps = res->wakes = res->woken = res->blind = res->pauses = res->excused = 0;
	for (unsigned i = 0; i < R->nworkers; i++) {
		const struct pstats *s = &c->st[i];
		bool sends = cfg->sleepers ? i == cfg->sleepers : i < cfg->nprod;

		if (cfg->sleepers && i == cfg->sleepers) {
			ops = get(&s->ops);
			sent = get(&s->bytes);
		} else if (sends) {
			sent += get(&s->ops);
		} else if (!cfg->sleepers) {
			ops += get(&s->ops);
			res->bytes += get(&s->bytes);
		}
		res->duplicated += get(&s->dup);
		res->reordered += get(&s->reord);
		res->corrupt += get(&s->corrupt);
		res->lost += get(&s->lost);
		res->stalls += get(&s->stalls);
		if (sends)
			res->send_stalls += get(&s->stalls);
		res->timeouts += get(&s->timeouts);
		res->eintr += get(&s->eintr);
		res->errors += get(&s->errors);
		res->signals_handled += get(&s->sigs);
		res->sleeps += get(&s->sleeps);
		res->wakes += get(&s->wakes);
		res->woken += get(&s->woken);
		res->blind += get(&s->blind);
		res->pauses += get(&s->pauses);
		res->excused += get(&s->excused);
	}
	res->ops = ops;
	res->sent = sent;
	res->errors += R->sup_errors;
	res->signals_sent = atomic_load_explicit(&c->signals_sent, memory_order_relaxed);
	res->stops = atomic_load_explicit(&c->stops, memory_order_relaxed);
	if (cfg->sleepers) {
		res->gen_end = atomic_load_explicit(&c->g.gen, memory_order_relaxed);
		res->word_end[0] = atomic_load_explicit(&c->g.word, memory_order_relaxed);
	} else {
		struct rbus_wait_stats ws;

		rbus_region_wait_stats(R->r, &ws);
		res->sleeps = ws.data_sleeps + ws.space_sleeps;
		res->wakes = ws.data_wakes + ws.space_wakes;
		res->blind = ws.data_blind + ws.space_blind;
		res->word_end[0] = atomic_load_explicit(&R->wait->data.seq, memory_order_relaxed);
		res->word_end[1] = atomic_load_explicit(&R->wait->space.seq, memory_order_relaxed);
	}
	for (unsigned i = 0; i < res->nwords; i++)
		res->word_moves[i] = (uint32_t)(res->word_end[i] - res->word_start[i]);
	/* seq_cst: pairs with the barrier's store of go, after t_start. */
	if (atomic_load(&c->go))
		res->elapsed_ns = rbus_now() - atomic_load(&c->t_start);
}

/* After every process has exited: what the bitmap and the tallies say. */
static void final_checks(const struct run *R, struct rb_stress_result *res)
{
	const struct rb_stress_cfg *cfg = R->cfg;
	struct ctl *c = R->ctl;

	if (cfg->sleepers) {
		/* Every sleeper saw every generation published. */
		for (unsigned i = 0; i < cfg->sleepers; i++) {
			uint64_t seen = get(&c->st[i].ops);

			if (seen < res->sent)
				res->lost += res->sent - seen;
		}
		return;
	}
	for (unsigned p = 0; p < cfg->nprod; p++) {
		uint64_t sent = get(&c->st[p].ops), marked = 0;
		const _Atomic uint64_t *bm = R->bitmap + p * (R->cap / 64);

		for (uint64_t w = 0; w < sent / 64; w++)
			marked += (uint64_t)__builtin_popcountll(
				atomic_load_explicit(&bm[w], memory_order_relaxed));
		if (sent % 64)
			marked += (uint64_t)__builtin_popcountll(
				atomic_load_explicit(&bm[sent / 64], memory_order_relaxed) &
				((UINT64_C(1) << (sent % 64)) - 1));
		res->lost += sent - marked;
		if (cfg->count && sent < cfg->count)
			res->cut_short = true;
	}
}

struct child {
	pid_t pid;
	bool exited;
	int status;     /* exit status, or 128 + signal */
};

/* Has @ch exited?  Looks without reaping (WNOWAIT): while the signaller
 * runs, no worker's pid may be freed for reuse. */
static bool child_peek(struct child *ch)
{
	siginfo_t si;

	if (ch->exited || ch->pid <= 0)
		return true;
	memset(&si, 0, sizeof(si));
	if (waitid(P_PID, (id_t)ch->pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 &&
	    si.si_pid == ch->pid) {
		ch->exited = true;
		ch->status = si.si_code == CLD_EXITED ? si.si_status : 128 + si.si_status;
	}
	return ch->exited;
}

static void supervise(struct run *R, struct child *kids, unsigned nkids,
		      struct rb_stress_result *res)
{
	const struct rb_stress_cfg *cfg = R->cfg;
	struct ctl *c = R->ctl;
	/* No progress for this long: something hangs (a wait is bounded by
	 * W, so even stalls progress). */
	const int64_t guard = 10 * cfg->wait_ns + 10000 * MS;
	int64_t last_tick = rbus_now(), last_move = last_tick, aborted = 0;
	uint64_t last_ops = 0;
	bool reported = false;
	sigset_t chld;

	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	for (;;) {
		struct timespec ts = { 0, 100 * MS };
		bool workers_done = true, others_done = true;
		int64_t now;

		sigtimedwait(&chld, NULL, &ts);
		for (unsigned i = 0; i < nkids; i++) {
			bool worker = i < R->nworkers;

			if (!child_peek(&kids[i]))
				*(worker ? &workers_done : &others_done) = false;
			else if (kids[i].status && !reported) {
				reported = true;
				R->sup_errors++;
				if (!res->error[0] && !c->err_claimed)
					snprintf(res->error, sizeof(res->error),
						 "a process of the run (pid %d) %s %d", (int)kids[i].pid,
						 kids[i].status > 128 ? "died of signal" : "exited with",
						 kids[i].status > 128 ? kids[i].status - 128
								      : kids[i].status);
				set_flag(&c->abort);
				set_flag(&c->stop);
			}
		}
		if (workers_done)
			set_flag(&c->quiesce);
		if (workers_done && others_done)
			break;
		now = rbus_now();
		collect(R, res);
		if (res->ops + res->sent != last_ops || !atomic_load(&c->go)) {
			last_ops = res->ops + res->sent;
			last_move = now;
		}
		if (!aborted && now - last_move > guard) {
			R->sup_errors++;
			snprintf(res->error, sizeof(res->error),
				 "no progress for %.1f s: the run hangs", (double)guard / 1e9);
			set_flag(&c->abort);
			set_flag(&c->stop);
			set_flag(&c->quiesce);
		}
		if (flag(&c->abort) && !aborted)
			aborted = now;
		if (aborted && now - aborted > 2 * cfg->wait_ns + 3000 * MS) {
			for (unsigned i = 0; i < nkids; i++)
				if (!kids[i].exited && kids[i].pid > 0)
					kill(kids[i].pid, SIGKILL);
		}
		if (cfg->progress && now - last_tick >= 200 * MS) {
			last_tick = now;
			cfg->progress(cfg->progress_arg, res);
		}
	}
	collect(R, res);
	for (unsigned i = 0; i < nkids; i++) {
		int status;

		if (kids[i].pid > 0) {
			kill(kids[i].pid, SIGCONT);  /* cannot be stopped now; cheap */
			waitpid(kids[i].pid, &status, 0);
		}
	}
}

int rb_stress_run(const struct rb_stress_cfg *cfg, struct rb_stress_result *res)
{
	struct run R = { .cfg = cfg };
	struct child *kids = NULL;
	sigset_t chld, oldmask;
	unsigned nkids = 0;
	int err;

	memset(res, 0, sizeof(*res));
	err = check_cfg(cfg, res);
	if (err)
		return err;
	R.nworkers = cfg->sleepers ? cfg->sleepers + 1 : cfg->nprod + cfg->ncons;
	R.nprocs = R.nworkers + (cfg->signals ? 1 : 0);
	R.ctl_size = sizeof(struct ctl) + R.nprocs * sizeof(struct pstats);
	R.ctl = mmap(NULL, R.ctl_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	R.pids = calloc(R.nprocs, sizeof(*R.pids));
	kids = calloc(R.nprocs, sizeof(*kids));
	if (R.ctl == MAP_FAILED || !R.pids || !kids) {
		if (R.ctl == MAP_FAILED)
			R.ctl = NULL;
		snprintf(res->error, sizeof(res->error), "out of memory");
		err = -ENOMEM;
		goto out;
	}
	if (cfg->sleepers) {
		uint64_t g0 = cfg->wrap ? (UINT64_C(1) << 32) - cfg->wrap : 0;

		atomic_init(&R.ctl->g.gen, g0);
		atomic_init(&R.ctl->g.word, (uint32_t)g0);
		res->nwords = 1;
		res->word_start[0] = (uint32_t)g0;
		res->gen_start = g0;
	} else if ((err = setup_channel(&R, res))) {
		goto out;
	}

	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, &oldmask);
	fflush(NULL);  /* nothing buffered is written twice */
	for (unsigned i = 0; i < R.nprocs; i++) {
		pid_t pid = fork();

		if (pid == 0)
			_exit(child_main(&R, i, &oldmask));
		if (pid < 0) {
			err = -errno;
			snprintf(res->error, sizeof(res->error), "fork: %s", strerror(errno));
			R.sup_errors++;
			set_flag(&R.ctl->abort);
			break;
		}
		R.pids[i] = pid;
		kids[i].pid = pid;
		nkids++;
	}
	supervise(&R, kids, nkids, res);
	sigprocmask(SIG_SETMASK, &oldmask, NULL);
	final_checks(&R, res);
	if (R.ctl->err_claimed && !res->error[0])
		snprintf(res->error, sizeof(res->error), "%s", R.ctl->err);
	if (flag(&R.ctl->stop) || flag(&R.ctl->abort) || flag(&R.ctl->cut) ||
	    (cfg->count && res->sent < (cfg->sleepers ? cfg->count : cfg->count * cfg->nprod)))
		res->cut_short = true;
	err = err == -EAGAIN || err == -ENOMEM ? 0 : err;  /* it ran, partly */
out:
	if (R.bitmap)
		munmap(R.bitmap, R.bitmap_size);
	if (R.map)
		munmap(R.map, R.map_size);
	rbus_region_close(R.r);
	if (R.ctl)
		munmap(R.ctl, R.ctl_size);
	free(R.pids);
	free(kids);
	return err;
}

bool rb_stress_passed(const struct rb_stress_result *res)
{
	return !res->stalls && !res->lost && !res->duplicated && !res->reordered &&
	       !res->corrupt && !res->errors;
}

bool rb_stress_can_judge(void)
{
	long q = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);

	return q >= 0 && (q & MEMBARRIER_CMD_GLOBAL_EXPEDITED) &&
	       syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0, 0) == 0;
}

bool rb_stress_crossed(const struct rb_stress_result *res, unsigned i)
{
	return i < res->nwords && (uint64_t)res->word_start[i] + res->word_moves[i] >= (UINT64_C(1) << 32);
}

void rb_stress_print_line(FILE *f, const char *name, const struct rb_stress_cfg *cfg,
			  const struct rb_stress_result *res)
{
	double s = (double)res->elapsed_ns / 1e9;

	if (cfg->sleepers)
		fprintf(f, "%s: %u sleepers: %llu generations in %.2f s (%.0f/s); ", name,
			cfg->sleepers, (unsigned long long)res->ops, s,
			s > 0 ? (double)res->ops / s : 0.0);
	else
		fprintf(f, "%s: %s %s %up%uc: sent %llu received %llu in %.2f s (%.0f msg/s); ",
			name, rb_kind_name(cfg->kind), rb_wakeup_name(cfg->wakeup), cfg->nprod,
			cfg->ncons, (unsigned long long)res->sent, (unsigned long long)res->ops, s,
			s > 0 ? (double)res->ops / s : 0.0);
	fprintf(f, "sleeps %llu wakes %llu blind %llu timeouts %llu eintr %llu; stalls %llu "
		"lost %llu dup %llu reordered %llu corrupt %llu errors %llu%s%s%s\n",
		(unsigned long long)res->sleeps, (unsigned long long)res->wakes,
		(unsigned long long)res->blind, (unsigned long long)res->timeouts,
		(unsigned long long)res->eintr, (unsigned long long)res->stalls,
		(unsigned long long)res->lost, (unsigned long long)res->duplicated,
		(unsigned long long)res->reordered, (unsigned long long)res->corrupt,
		(unsigned long long)res->errors, res->cut_short ? " (cut short)" : "",
		res->error[0] ? ": " : "", res->error);
	if (cfg->pauses)
		fprintf(f, "%s: pauses %llu excused %llu\n", name,
			(unsigned long long)res->pauses, (unsigned long long)res->excused);
	fflush(f);
}
