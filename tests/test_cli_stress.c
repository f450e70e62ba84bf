/* SPDX-License-Identifier: MIT */
/*
 * test_cli_stress - `ringbus stress`, run as a user would run it: short
 * channel runs of every kind and backend, sleepers mode across the 32-bit
 * wrap of its futex word, signal storms, usage errors, and the detector:
 * the same command linked with the library without the sleeper's re-check
 * (tests/ringbus-norecheck) must find stalls and fail.
 *
 * Outcomes only, no timing: a run passes or fails, counts are zero or not.
 * Every run is bounded by cli_run()'s limit.
 */
#include "config.h"

#include <linux/membarrier.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <check.h>

#include "cli.h"
#include "helpers.h"

#define LIMIT 60           /* seconds any one run may take */
#define DETECTOR_LIMIT 90  /* the detector's own bound is 60 s */

static void run(struct cli_result *r, const char *const *argv, int limit)
{
	cli_run(argv, NULL, 0, limit, r);
}

/* The number after "key": in the command's one-line JSON object. */
static uint64_t jnum(const struct cli_result *r, const char *key)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(r->out, pat);
	ck_assert_msg(p != NULL, "no \"%s\" in the output:\n%s\nstderr:\n%s", key, r->out, r->err);
	return strtoull(p + strlen(pat), NULL, 10);
}

static unsigned count_of(const char *hay, const char *needle)
{
	unsigned n = 0;

	for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

/* Exit 0 and every verification count zero. */
static void assert_clean(const struct cli_result *r)
{
	ck_assert_msg(r->status == 0, "exit %d; stdout:\n%s\nstderr:\n%s", r->status, r->out, r->err);
	cli_assert_json(r->out, r->out_len, false);
	ck_assert_uint_eq(jnum(r, "stalls"), 0);
	ck_assert_uint_eq(jnum(r, "lost"), 0);
	ck_assert_uint_eq(jnum(r, "duplicated"), 0);
	ck_assert_uint_eq(jnum(r, "reordered"), 0);
	ck_assert_uint_eq(jnum(r, "corrupt"), 0);
	ck_assert_uint_eq(jnum(r, "errors"), 0);
	ck_assert_msg(cli_has(r->out, "\"pass\":true"), "%s", r->out);
	ck_assert_uint_gt(jnum(r, "ops"), 0);
}

/* ---- help and usage ---------------------------------------------------- */

START_TEST(help)
{
	static const char *const must[] = {
		"Usage: ringbus stress [OPTIONS]", "--kind", "--producers", "--consumers",
		"--wakeup", "--capacity", "--max-msg", "--traffic", "--sleepers", "--duration",
		"--count", "--wait-timeout", "--jitter", "--wrap", "--signals", "--stop-at-stall",
		"--seed", "--json", "--help", "STALL", "Exit status", "default 10 s",
		"default 1 s",
	};
	struct cli_result r;

	run(&r, (const char *[]){ CLI_PATH, "stress", "--help", NULL }, LIMIT);
	ck_assert_int_eq(r.status, 0);
	ck_assert_str_eq(r.err, "");
	ck_assert_msg(strncmp(r.out, must[0], strlen(must[0])) == 0, "%s", r.out);
	for (size_t i = 0; i < sizeof(must) / sizeof(must[0]); i++)
		ck_assert_msg(cli_has(r.out, must[i]), "--help lacks \"%s\":\n%s", must[i], r.out);
	cli_free(&r);
}
END_TEST

START_TEST(usage_errors)
{
	static const struct {
		const char *argv[8];
		const char *says;
	} cases[] = {
		{ { "--frob" }, "unknown option '--frob'" },
		{ { "extra" }, "unexpected argument 'extra'" },
		{ { "--duration" }, "needs a value" },
		{ { "--duration", "soon" }, "'soon' is not a duration" },
		{ { "--duration", "10ms" }, "too short" },
		{ { "--wait-timeout", "10ms" }, "too short" },
		{ { "--kind", "ring" }, "'ring' is not a kind" },
		{ { "--wakeup", "pipe" }, "'pipe' is not a wakeup backend" },
		{ { "--jitter", "some" }, "'some' is not none, light or heavy" },
		{ { "--traffic", "lots" }, "'lots' is not bursts, steady, sparse or sparse-room" },
		{ { "--producers", "0" }, "out of range" },
		{ { "--consumers", "65" }, "out of range" },
		{ { "--producers", "x" }, "'x' is not a number" },
		{ { "--kind", "spsc", "--producers", "2" }, "one producer and one consumer" },
		{ { "--capacity", "100" }, "not a power of two" },
		{ { "--capacity", "1" }, "out of range" },
		{ { "--max-msg", "16" }, "out of range" },
		{ { "--max-msg", "2M" }, "out of range" },
		{ { "--sleepers", "0" }, "out of range" },
		{ { "--sleepers", "5000" }, "out of range" },
		{ { "--sleepers", "4", "--producers", "2" }, "--producers does not apply" },
		{ { "--sleepers", "4", "--wakeup", "eventfd" }, "--wakeup does not apply" },
		{ { "--wrap=0" }, "out of range" },
		{ { "--wrap=lots" }, "'lots' is not a number" },
		{ { "--count", "0" }, "out of range" },
		{ { "--seed", "-1" }, "'-1' is not a number" },
		{ { "--signals=yes" }, "--signals" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *argv[12] = { CLI_PATH, "stress" };
		size_t n = 2;

		for (size_t k = 0; k < 8 && cases[i].argv[k]; k++)
			argv[n++] = cases[i].argv[k];
		argv[n] = NULL;
		cli_usage_error(argv, cases[i].says, "stress");
	}
}
END_TEST

/* ---- channel mode ----------------------------------------------------- */

static const struct {
	const char *kind, *wakeup;
} channels[] = {
	{ "spsc", "futex" }, { "spsc", "eventfd" }, { "mpmc", "futex" }, { "mpmc", "eventfd" },
};

/* 1.5 s of each, 2 + 2 processes for MPMC, with the futex words started
 * 100 below their wrap: clean, and both words crossed 2^32. */
START_TEST(channel_runs_pass)
{
	struct cli_result r;
	char seed[16];

	snprintf(seed, sizeof(seed), "%d", _i + 1);
	run(&r, (const char *[]){ CLI_PATH, "stress", "--kind", channels[_i].kind, "--wakeup",
				  channels[_i].wakeup, "--duration", "1.5", "--wrap=100",
				  "--seed", seed, "--json", NULL }, LIMIT);
	assert_clean(&r);
	ck_assert_uint_eq(jnum(&r, "producers"), _i < 2 ? 1 : 2);
	ck_assert_uint_eq(jnum(&r, "consumers"), _i < 2 ? 1 : 2);
	ck_assert_uint_eq(jnum(&r, "ops"), jnum(&r, "sent"));
	ck_assert_uint_gt(jnum(&r, "sleeps"), 0);
	ck_assert_uint_gt(jnum(&r, "wakes"), 0);
	(void)jnum(&r, "excused");      /* the key is there */
	ck_assert_msg(count_of(r.out, "\"start\":4294967196") == 2, "%s", r.out);
	ck_assert_msg(count_of(r.out, "\"crossed_2_32\":true") == 2, "%s", r.out);
	ck_assert_str_eq(r.err, "");
	cli_free(&r);
}
END_TEST

/* The human summary: its zeros and its verdict. */
START_TEST(channel_summary)
{
	struct cli_result r;

	run(&r, (const char *[]){ CLI_PATH, "stress", "--producers", "2", "--consumers", "1",
				  "--count", "20000", "--max-msg", "1k", "--capacity", "16",
				  "--traffic", "steady", "--jitter", "none", NULL }, LIMIT);
	ck_assert_msg(r.status == 0, "exit %d:\n%s\n%s", r.status, r.out, r.err);
	ck_assert_msg(cli_has(r.out, "ringbus stress: channel mode, mpmc, futex, 2 producers, "
				     "1 consumer, capacity 16, max-msg 1024 B, traffic steady"),
		      "%s", r.out);
	ck_assert_msg(cli_has(r.out, "40000 messages received"), "%s", r.out);
	ck_assert_msg(cli_has(r.out, "\n  timeouts ") && cli_has(r.out, ", excused "), "%s", r.out);
	ck_assert_msg(cli_has(r.out, "stalls 0, lost 0, duplicated 0, reordered 0, corrupt 0, "
				     "errors 0\n"), "%s", r.out);
	ck_assert_msg(cli_has(r.out, "\nPASS\n"), "%s", r.out);
	cli_free(&r);
}
END_TEST

/* ---- sleepers mode ----------------------------------------------------- */

static const char *const sleeper_counts[] = { "8", "64", "256" };

/* 1500 generations from 1000 below 2^32: every sleeper saw each one, and
 * the generation crossed the wrap of its 32-bit futex word. */
START_TEST(sleepers_cross_the_wrap)
{
	const uint64_t start = (UINT64_C(1) << 32) - 1000;
	struct cli_result r;

	run(&r, (const char *[]){ CLI_PATH, "stress", "--sleepers", sleeper_counts[_i], "--wrap",
				  "--count", "1500", "--seed", "3", "--json", NULL }, LIMIT);
	assert_clean(&r);
	ck_assert_uint_eq(jnum(&r, "sleepers"), strtoull(sleeper_counts[_i], NULL, 10));
	ck_assert_uint_eq(jnum(&r, "ops"), 1500);
	ck_assert_uint_eq(jnum(&r, "generation_start"), start);
	ck_assert_uint_eq(jnum(&r, "generation_end"), start + 1500);
	ck_assert_msg(cli_has(r.out, "\"start\":4294966296,\"end\":500,\"bumps\":1500,"
				     "\"crossed_2_32\":true"), "%s", r.out);
	ck_assert_uint_gt(jnum(&r, "wakes"), 0);
	cli_free(&r);
}
END_TEST

START_TEST(sleepers_summary)
{
	struct cli_result r;

	run(&r, (const char *[]){ CLI_PATH, "stress", "--sleepers", "8", "--wrap=10", "--count",
				  "100", NULL }, LIMIT);
	ck_assert_msg(r.status == 0, "exit %d:\n%s\n%s", r.status, r.out, r.err);
	ck_assert_msg(cli_has(r.out, "sleepers mode, 8 sleepers on one futex word"), "%s", r.out);
	ck_assert_msg(cli_has(r.out, "100 generations"), "%s", r.out);
	ck_assert_msg(cli_has(r.out, "generation 4294967286 -> 4294967386, futex word "
				     "4294967286 -> 90 (100 bumps, crossed 2^32)"), "%s", r.out);
	ck_assert_msg(cli_has(r.out, "\nPASS\n"), "%s", r.out);
	cli_free(&r);
}
END_TEST

/* ---- signals ------------------------------------------------------------- */

START_TEST(signal_storms)
{
	struct cli_result r;

	if (_i == 0)
		run(&r, (const char *[]){ CLI_PATH, "stress", "--signals", "--duration", "2",
					  "--seed", "5", "--json", NULL }, LIMIT);
	else
		run(&r, (const char *[]){ CLI_PATH, "stress", "--sleepers", "16", "--signals",
					  "--wrap", "--duration", "1.5", "--seed", "5", "--json",
					  NULL }, LIMIT);
	assert_clean(&r);
	ck_assert_uint_gt(jnum(&r, "signals_sent"), 0);
	cli_free(&r);
}
END_TEST

/* ---- the detector -------------------------------------------------------- */

/* Without the re-check (the textbook lost wakeup), heavy jitter before the
 * registration and sparse traffic make a stall: the command must fail,
 * and say so.  One producer and one consumer: a second consumer would
 * often take the message a lost wakeup left behind, and heal the stall
 * before it can be seen (doc/design.md, 11.2). */
START_TEST(detector_fails_without_recheck)
{
	long q = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
	struct cli_result r;

	/* Without it every sleep is a probe, which the detector does not
	 * judge (doc/stress.md): say so now, not after a 60 s run. */
	ck_assert_msg(q >= 0 && (q & MEMBARRIER_CMD_GLOBAL_EXPEDITED),
		      "cannot run here: membarrier(2) MEMBARRIER_CMD_GLOBAL_EXPEDITED is not "
		      "available, so no sleep is long and the detector judges none");
	run(&r, (const char *[]){ CLI_NORECHECK, "stress", "--kind", (_i & 1) ? "mpmc" : "spsc",
				  "--producers", "1", "--consumers", "1", "--jitter", "heavy",
				  "--traffic", (_i & 2) ? "sparse-room" : "sparse", "--wait-timeout", "100ms",
				  "--stop-at-stall", "--duration", "60", "--seed", "7", NULL },
	    DETECTOR_LIMIT);
	ck_assert_msg(r.status == 1, "exit %d, want 1 (a stall); stdout:\n%s\nstderr:\n%s",
		      r.status, r.out, r.err);
	ck_assert_msg(cli_has(r.out, "\nFAIL: stalls "), "%s", r.out);
	ck_assert_msg(cli_has(r.out, "\n  of the stalls, producers' "), "%s", r.out);
	/* Stalls, not damage: the bug delays messages, it loses none. */
	ck_assert_msg(cli_has(r.out, ", lost 0, duplicated 0, reordered 0, corrupt 0, errors 0"),
		      "%s", r.out);
	cli_free(&r);
}
END_TEST

/* The detector's options against the real library: no stall, although
 * waits do run into W, so the detector's stalls are the bug's. */
START_TEST(detector_options_pass_with_recheck)
{
	struct cli_result r;

	run(&r, (const char *[]){ CLI_PATH, "stress", "--kind", (_i & 1) ? "mpmc" : "spsc",
				  "--producers", "1", "--consumers", "1", "--jitter", "heavy",
				  "--traffic", (_i & 2) ? "sparse-room" : "sparse",
				  "--wait-timeout", "100ms",
				  "--stop-at-stall", "--duration", "3", "--seed", "7", "--json",
				  NULL }, LIMIT);
	assert_clean(&r);
	ck_assert_uint_gt(jnum(&r, "timeouts"), 0);
	ck_assert_uint_eq(jnum(&r, "send_stalls"), 0);
	ck_assert_msg(cli_has(r.out, (_i & 2) ? "\"traffic\":\"sparse-room\""
					      : "\"traffic\":\"sparse\""), "%s", r.out);
	cli_free(&r);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("cli-stress");
	TCase *tc;
	SRunner *sr;
	int failed;

	tc = tcase_create("usage");
	tcase_add_test(tc, help);
	tcase_add_test(tc, usage_errors);
	suite_add_tcase(s, tc);

	tc = tcase_create("runs");
	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, channel_runs_pass, 0, (int)(sizeof(channels) / sizeof(channels[0])));
	tcase_add_test(tc, channel_summary);
	tcase_add_loop_test(tc, sleepers_cross_the_wrap, 0,
			    (int)(sizeof(sleeper_counts) / sizeof(sleeper_counts[0])));
	tcase_add_test(tc, sleepers_summary);
	tcase_add_loop_test(tc, signal_storms, 0, 2);
	suite_add_tcase(s, tc);

	tc = tcase_create("detector");
	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, detector_fails_without_recheck, 0, 4);
	tcase_add_loop_test(tc, detector_options_pass_with_recheck, 0, 4);
	suite_add_tcase(s, tc);

	th_tmpdir_init();
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
