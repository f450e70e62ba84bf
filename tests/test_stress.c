/* SPDX-License-Identifier: MIT */
/*
 * test_stress.c - the lost-wakeup stress in make check: the engine of
 * `ringbus stress` (tools/cli/stress_engine.c), 10^6 verified messages per
 * configuration through waiting calls, with jitter in the handshake, for
 * both backends and kinds.  Zero stalls, losses, duplicates, reorders and
 * corruptions required.  RBUS_TEST_SCALE divides the count (the sanitizer
 * build); make stress runs 10^8.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>

#include "helpers.h"
#include "stress_engine.h"

static const struct {
	enum rbus_kind kind;
	uint32_t wakeup;
	unsigned nprod, ncons;
} configs[] = {
	{ RBUS_KIND_SPSC, RBUS_WAKE_FUTEX, 1, 1 },
	{ RBUS_KIND_SPSC, RBUS_WAKE_EVENTFD, 1, 1 },
	{ RBUS_KIND_MPMC, RBUS_WAKE_FUTEX, 2, 2 },
	{ RBUS_KIND_MPMC, RBUS_WAKE_EVENTFD, 2, 2 },
};

START_TEST(no_lost_wakeups)
{
	struct rb_stress_cfg cfg = {
		.kind = configs[_i].kind, .wakeup = configs[_i].wakeup,
		.nprod = configs[_i].nprod, .ncons = configs[_i].ncons,
		.count = th_scaled(1000000) / configs[_i].nprod,
		.capacity = 64, .max_msg = 64, .traffic = RB_STRESS_BURSTS,
		.jitter = RB_STRESS_JITTER_LIGHT, .wait_ns = 1000000000,
		.seed = (unsigned)_i + 1,
	};
	struct rb_stress_result res;

	ck_assert_int_eq(rb_stress_run(&cfg, &res), 0);
	rb_stress_print_line(stdout, "stress", &cfg, &res);
	ck_assert_msg(res.errors == 0, "errors: %s", res.error);
	ck_assert_uint_eq(res.sent, cfg.count * cfg.nprod);
	ck_assert_uint_eq(res.ops, res.sent);
	ck_assert_uint_eq(res.lost, 0);
	ck_assert_uint_eq(res.duplicated, 0);
	ck_assert_uint_eq(res.reordered, 0);
	ck_assert_uint_eq(res.corrupt, 0);
	ck_assert_msg(res.stalls == 0, "%llu stalls", (unsigned long long)res.stalls);
	ck_assert(!res.cut_short);
	/* It did exercise the sleep path. */
	ck_assert_uint_gt(res.sleeps, 0);
	ck_assert_uint_gt(res.wakes, 0);
}
END_TEST

/* The detector's traffic (test_detector.c) against the real handshake: the
 * same criterion finds no stall, so the detector's stalls are the bug's.
 * Loop index: bit 0 the kind, bit 1 the consumers' (sparse-room) traffic. */
START_TEST(detector_traffic_no_stalls)
{
	struct rb_stress_cfg cfg = {
		.kind = (_i & 1) ? RBUS_KIND_MPMC : RBUS_KIND_SPSC, .wakeup = RBUS_WAKE_FUTEX,
		.nprod = 1, .ncons = 1, .count = 100000, .capacity = 16, .max_msg = 64,
		.traffic = (_i & 2) ? RB_STRESS_SPARSE_ROOM : RB_STRESS_SPARSE,
		.jitter = RB_STRESS_JITTER_HEAVY,
		.wait_ns = 100000000, .duration_ns = 6000000000, .seed = 7,
	};
	struct rb_stress_result res;

	ck_assert_int_eq(rb_stress_run(&cfg, &res), 0);
	rb_stress_print_line(stdout, "detector traffic", &cfg, &res);
	ck_assert_msg(res.errors == 0, "errors: %s", res.error);
	ck_assert_uint_gt(res.sent, 0);
	ck_assert_uint_eq(res.ops, res.sent);
	ck_assert_uint_eq(res.lost + res.duplicated + res.reordered + res.corrupt, 0);
	ck_assert_msg(res.stalls == 0, "%llu stalls", (unsigned long long)res.stalls);
	/* The waits did run into W (the long pauses): the criterion, not a
	 * lack of timeouts, is what tells a stall. */
	ck_assert_uint_gt(res.timeouts, 0);
}
END_TEST

/* A process stopped for longer than W (1.5 W) where a delay is not a lost
 * wakeup - a waker that found sleepers and has not yet woken them, a
 * sleeper just woken, the last ack before it wakes the waker - makes its
 * peers' waits run out with the work waiting; the stall rule must see that
 * the wake was still owed, or had come, and count no stall.  The stops
 * stand in for a host that pauses a virtual CPU, which made this suite's
 * detector traffic report a stall under the earlier rule (the age of the
 * message at the deadline).  Channel runs take the detector's traffic, and
 * bursts into a small ring, so that producers wait for room too. */
static const struct {
	unsigned sleepers, nprod, ncons;
	enum rbus_kind kind;
	uint32_t wakeup;
	enum rb_stress_traffic traffic;
	uint32_t capacity;
} paused[] = {
	{ 0, 1, 1, RBUS_KIND_SPSC, RBUS_WAKE_FUTEX, RB_STRESS_SPARSE, 16 },
	{ 0, 1, 1, RBUS_KIND_MPMC, RBUS_WAKE_EVENTFD, RB_STRESS_SPARSE, 16 },
	{ 0, 1, 1, RBUS_KIND_SPSC, RBUS_WAKE_FUTEX, RB_STRESS_BURSTS, 4 },
	{ 0, 1, 1, RBUS_KIND_MPMC, RBUS_WAKE_EVENTFD, RB_STRESS_BURSTS, 4 },
	/* Two of each: an eventfd token may go to the other sleeper. */
	{ 0, 2, 2, RBUS_KIND_MPMC, RBUS_WAKE_EVENTFD, RB_STRESS_BURSTS, 4 },
	{ 2, 1, 1, 0, 0, RB_STRESS_BURSTS, 0 },
};

START_TEST(pauses_are_not_stalls)
{
	struct rb_stress_cfg cfg = {
		.sleepers = paused[_i].sleepers, .kind = paused[_i].kind,
		.wakeup = paused[_i].wakeup, .nprod = paused[_i].nprod,
		.ncons = paused[_i].ncons, .count = 100000,
		.capacity = paused[_i].capacity, .max_msg = 64, .traffic = paused[_i].traffic,
		.jitter = RB_STRESS_JITTER_HEAVY, .wait_ns = 100000000,
		.duration_ns = 4000000000, .pauses = true, .seed = (unsigned)_i + 11,
	};
	struct rb_stress_result res;

	ck_assert_int_eq(rb_stress_run(&cfg, &res), 0);
	rb_stress_print_line(stdout, "pauses", &cfg, &res);
	ck_assert_msg(res.errors == 0, "errors: %s", res.error);
	ck_assert_uint_gt(res.ops, 0);
	ck_assert_uint_eq(res.lost + res.duplicated + res.reordered + res.corrupt, 0);
	ck_assert_msg(res.stalls == 0, "%llu stalls", (unsigned long long)res.stalls);
	/* The stops were made, and waits did run out. */
	ck_assert_uint_gt(res.pauses, 0);
	ck_assert_uint_gt(res.timeouts, 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("stress");
	TCase *tc = tcase_create("lost-wakeups");
	SRunner *sr;
	int failed;

	tcase_set_timeout(tc, 300);
	tcase_add_loop_test(tc, no_lost_wakeups, 0, (int)(sizeof(configs) / sizeof(configs[0])));
	tcase_add_loop_test(tc, detector_traffic_no_stalls, 0, 4);
	tcase_add_loop_test(tc, pauses_are_not_stalls, 0, (int)(sizeof(paused) / sizeof(paused[0])));
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
