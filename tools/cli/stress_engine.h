/* SPDX-License-Identifier: MIT */
/*
 * stress_engine.h - the verifying wakeup stress behind `ringbus stress`,
 * also run by tests/test_stress (make check), tests/test_detector (against
 * the library without the sleeper's re-check) and tests/ringbus-stress-wait
 * (make stress).
 *
 * Two modes, each in processes forked from the caller, which supervises:
 *
 *   channel   N producers and M consumers on a fresh region move verified
 *             messages through the waiting calls of wait.h only.
 *   sleepers  N sleepers on one futex word in shared memory; a waker bumps
 *             a generation and wakes them all, and every sleeper must see
 *             every generation.
 *
 * Link with a library built with RBUS_TEST_HOOKS: jitter is injected into
 * the sleep/wake handshake through its rbus_test_jitter hook.  Only one run
 * at a time per process (the hook and the signal handler are global).
 *
 * A STALL is a wait, bounded by the timeout W, whose last sleep (not a
 * probe) ran out its own timer although the work it waited for was over,
 * the wake it owed included, more than a margin M before that timer's
 * deadline D (M = W/2; in channel mode at most 500 ms, half the library's
 * longest sleep):
 *   - consumer: it then took a message whose send had returned before
 *     D - M, and no other producer (it may hold the registrations, owing
 *     their wake) nor other consumer (it may hold the eventfd token, or be
 *     stuck between calls) was in a call, done with one or woken since;
 *   - producer: it got room after that sleep (at the wait's last try, the
 *     re-check after a sleep cut at the library's 1 s cap, or a try right
 *     after -ETIMEDOUT), and no consumer (the one that freed the room may
 *     be between its free and its wake) nor other producer was in a call,
 *     done with one or woken since D - M;
 *   - sleeper: the waker was done with the next generation, wake
 *     included, before D - M;
 *   - waker: every sleeper was done acknowledging, the last one's wake of
 *     the waker included, before D - M.
 * Whether the timer ended the sleep is the library's word (its
 * rbus_test_sleep hook), or the futex call's in sleepers mode; when work
 * was over, its process's record.  No delay of a process, however long,
 * makes a stall: a working handshake never lets a sleep other than a probe
 * run to its timer after its wake was issued, except that an eventfd token
 * may go to another sleeper of the role, which then owes the work.  A
 * probe (10 ms) may rightly miss a publish in flight, so it is not judged.
 * The margin is slack.
 */
#ifndef RINGBUS_CLI_STRESS_ENGINE_H
#define RINGBUS_CLI_STRESS_ENGINE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <ringbus.h>

/* Jitter in the race windows of the handshake (the hook's six points). */
enum rb_stress_jitter {
	RB_STRESS_JITTER_NONE,   /* no hook */
	RB_STRESS_JITTER_LIGHT,  /* now and then a spin, a yield or a nap of up
				    to 100 us, at every point */
	RB_STRESS_JITTER_HEAVY,  /* light, and a nap of 50-500 us in a quarter
				    of the sleepers' first two steps (S1, S2),
				    where a missing re-check loses the wakeup */
};

/* Shape of the traffic (channel mode). */
enum rb_stress_traffic {
	RB_STRESS_BURSTS,        /* bursts, with pauses of up to 1.5 ms and
				    yields on both sides, so both sleep */
	RB_STRESS_STEADY,        /* no pauses: as fast as it goes */
	RB_STRESS_SPARSE,        /* bursts' pauses, and each message followed
				    by a producer pause of 50-500 us or, one
				    time in four, 1.5 W: a lost wakeup is not
				    healed by the next message (the detector) */
	RB_STRESS_SPARSE_ROOM,   /* the same pauses in the consumers, after
				    each message taken: producers wait on a
				    full ring, and a lost wakeup of theirs is
				    not healed by the next free */
};

#define RB_STRESS_MSG_HDR     32u    /* bytes of a message's header */
#define RB_STRESS_MAX_SIDE    64u    /* producers, and consumers, at most */
#define RB_STRESS_MAX_SLEEPERS 4096u
#define RB_STRESS_WAIT_MIN_NS 50000000  /* W at least 50 ms: 5 probes */

struct rb_stress_result;

struct rb_stress_cfg {
	unsigned sleepers;        /* > 0: sleepers mode, with that many */
	/* Channel mode. */
	enum rbus_kind kind;
	uint32_t wakeup;          /* RBUS_WAKE_* */
	unsigned nprod, ncons;    /* SPSC: 1 and 1 */
	uint32_t capacity;
	uint32_t max_msg;         /* >= RB_STRESS_MSG_HDR; lengths vary in
				     [RB_STRESS_MSG_HDR, max_msg] */
	enum rb_stress_traffic traffic;
	/* Both modes. */
	uint64_t count;           /* messages per producer, or generations;
				     0: no limit */
	int64_t duration_ns;      /* 0: no limit (then count must be set) */
	int64_t wait_ns;          /* W, the bound of every wait */
	enum rb_stress_jitter jitter;
	bool signals;             /* a signaller process: SIGUSR1 storms and
				     short SIGSTOP/SIGCONT pairs */
	uint32_t wrap;            /* 0, or start the futex words this far
				     below 2^32 */
	bool stop_at_stall;       /* end the run at the first stall */
	bool pauses;              /* tests: one time in 4, a waker that found
				     sleepers, a sleeper just woken, or the
				     last ack stops for 1.5 W before going
				     on, as on a host that stops a CPU: none
				     of these is a stall */
	uint64_t seed;            /* of every random choice */
	/* Called by the supervising process about every 200 ms with the
	 * figures so far (a hint: read while the run goes on), or NULL. */
	void (*progress)(void *arg, const struct rb_stress_result *sofar);
	void *progress_arg;
};

struct rb_stress_result {
	int64_t elapsed_ns;       /* from the start of the run to its end */
	uint64_t ops;             /* messages received, or generations done */
	uint64_t sent;            /* messages sent, or generations published */
	uint64_t bytes;           /* message bytes received */
	/* Verification.  Channel: lost = sent but never received (a corrupt
	 * message also counts as lost); duplicated = received twice;
	 * reordered = a consumer saw a producer's sequence go back.
	 * Sleepers: lost = generations a sleeper skipped or never saw. */
	uint64_t lost, duplicated, reordered, corrupt;
	uint64_t stalls;          /* see the top of this file */
	uint64_t send_stalls;     /* of those, the producers' (channel) or
				     the waker's (sleepers) */
	uint64_t timeouts;        /* waits that ran into W at all */
	uint64_t eintr;           /* waits that returned -EINTR (retried) */
	/* Channel: the region's wait statistics (rbus_region_wait_stats()).
	 * Sleepers: sleeps = the sleepers' futex waits; wakes = the waker's
	 * FUTEX_WAKE calls; woken = the sleepers they woke; blind = wakes
	 * that woke nobody. */
	uint64_t sleeps, wakes, blind, woken;
	uint64_t signals_sent;    /* SIGUSR1 sent by the signaller */
	uint64_t signals_handled; /* handler runs (pending ones coalesce) */
	uint64_t stops;           /* SIGSTOP/SIGCONT pairs */
	uint64_t pauses;          /* cfg->pauses: the stops made */
	uint64_t excused;         /* waits whose last sleep (not a probe) ran
				     out its timer with the work there, which
				     the rules cleared: a delayed process, or
				     work within M of the timer */
	uint64_t errors;          /* unexpected results, dead processes */
	bool cut_short;           /* ended before its count: a stall with
				     stop_at_stall, an error, the bitmap full */
	/* The futex words.  Channel: [0] the data queue's seq, [1] the space
	 * queue's.  Sleepers: [0] the generation word; gen_start and gen_end
	 * are the 64-bit generations whose low halves it holds. */
	unsigned nwords;
	uint32_t word_start[2], word_end[2];
	uint64_t word_moves[2];   /* (end - start) mod 2^32 */
	uint64_t gen_start, gen_end;
	char error[200];          /* the first error, or "" */
};

/* Run; fills *res.  Returns 0 if it ran (whatever it found), or a negative
 * errno if it could not be set up (res->error says why). */
int rb_stress_run(const struct rb_stress_cfg *cfg, struct rb_stress_result *res);

/* No stall, loss, duplicate, reorder, corruption or error. */
bool rb_stress_passed(const struct rb_stress_result *res);

/* Can channel mode judge sleeps in this process?  The library sleeps long
 * only where membarrier(2) works (MEMBARRIER_CMD_GLOBAL_EXPEDITED,
 * registered as the library does); otherwise every sleep is a 10 ms probe,
 * and probes are not judged. */
bool rb_stress_can_judge(void);

/* Did futex word i cross 2^32 (start + moves >= 2^32)? */
bool rb_stress_crossed(const struct rb_stress_result *res, unsigned i);

/* One line describing a run, for test logs. */
void rb_stress_print_line(FILE *f, const char *name, const struct rb_stress_cfg *cfg,
			  const struct rb_stress_result *res);

#endif /* RINGBUS_CLI_STRESS_ENGINE_H */
