/* SPDX-License-Identifier: MIT */
/*
 * stress.h - the lost-wakeup stress run, shared by test_stress (make check),
 * test_detector (the same run against a library without the re-check) and
 * ringbus-stress-wait (make stress).  Link with a library built with
 * RBUS_TEST_HOOKS, so that jitter can be injected between the steps of the
 * sleep/wake handshake.
 */
#ifndef RINGBUS_TEST_STRESS_H
#define RINGBUS_TEST_STRESS_H

#include <stdbool.h>
#include <stdint.h>

#include "ringbus.h"

struct stress_cfg {
	enum rbus_kind kind;
	uint32_t wakeup;          /* RBUS_WAKE_* */
	unsigned nprod, ncons;    /* processes; SPSC: 1 and 1 */
	uint64_t per_producer;    /* messages each producer sends */
	uint32_t capacity;
	int64_t wait_ns;          /* timeout of every wait (W) */
	int heavy;                /* 0: normal jitter and traffic.  1 (the
				     detector): long pauses in the sleeper's
				     handshake, and single messages with
				     pauses, some longer than wait_ns */
	bool stop_at_stall;       /* end the run at the first stall */
	int64_t max_ns;           /* end the run after this long (0: never) */
	unsigned seed;
};

struct stress_result {
	uint64_t sent, received;
	uint64_t lost, duplicated, reordered, corrupt;
	uint64_t stalls;          /* waits that outlived W with work pending */
	uint64_t timeouts;        /* waits that ran into W at all */
	uint64_t sleeps, wakes, blind;
	uint64_t errors;          /* unexpected return values */
	int64_t elapsed_ns;
	bool cut_short;           /* stop_at_stall or max_ns ended it */
};

/* Run the stress; fills *res.  Returns 0 if it ran (whatever it found),
 * -1 if it could not be set up. */
int stress_run(const struct stress_cfg *cfg, struct stress_result *res);

/* One line describing a result, for logs. */
void stress_print(const char *name, const struct stress_cfg *cfg,
		  const struct stress_result *res);

#endif /* RINGBUS_TEST_STRESS_H */
