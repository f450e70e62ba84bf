/* SPDX-License-Identifier: MIT */
/*
 * test_cli_stat - ringbus(1) itself (--help, --version, usage errors) and
 * its ls and stat subcommands, run as a user would run them, against a
 * private ringbusd.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "cli.h"

#define LIMIT 30  /* seconds any one command may take */

static void run(struct cli_result *r, const char *const *argv)
{
	cli_run(argv, NULL, 0, LIMIT, r);
}

/* ---- the command itself ----------------------------------------------- */

START_TEST(version_and_help)
{
	struct cli_result r;

	run(&r, (const char *[]){ CLI_PATH, "--version", NULL });
	ck_assert_int_eq(r.status, 0);
	ck_assert_msg(cli_has(r.out, "ringbus (ringbus) " PACKAGE_VERSION), "%s", r.out);
	cli_free(&r);

	run(&r, (const char *[]){ CLI_PATH, "--help", NULL });
	ck_assert_int_eq(r.status, 0);
	for (const char *const *c = (const char *[]){ "demo", "ls", "stat", "pub", "sub",
			"bench", "stress", NULL }; *c; c++)
		ck_assert_msg(cli_has(r.out, *c), "--help does not list %s:\n%s", *c, r.out);
	ck_assert_str_eq(r.err, "");
	cli_free(&r);

	/* "help CMD" is "CMD --help". */
	run(&r, (const char *[]){ CLI_PATH, "help", "stat", NULL });
	ck_assert_int_eq(r.status, 0);
	ck_assert_msg(cli_has(r.out, "Usage: ringbus stat"), "%s", r.out);
	cli_free(&r);
}
END_TEST

START_TEST(usage_errors)
{
	static const struct {
		const char *argv[6];
		const char *says;
	} cases[] = {
		{ { CLI_PATH, NULL }, "no command given" },
		{ { CLI_PATH, "frobnicate", NULL }, "'frobnicate' is not a command" },
		{ { CLI_PATH, "--frob", NULL }, "unknown option '--frob'" },
		{ { CLI_PATH, "help", "frob", NULL }, "'frob' is not a command" },
		{ { CLI_PATH, "ls", "--frob", NULL }, "--frob" },
		{ { CLI_PATH, "ls", "extra", NULL }, "unexpected argument 'extra'" },
		{ { CLI_PATH, "stat", NULL }, "no channel given" },
		{ { CLI_PATH, "stat", "a", "b", NULL }, "unexpected argument 'b'" },
		{ { CLI_PATH, "stat", "--interval", "x", "a", NULL }, "'x' is not a duration" },
		{ { CLI_PATH, "stat", "--fd", "x", NULL }, "'x' is not a number" },
		{ { CLI_PATH, "stat", "--fd", "0", "a", NULL }, "either a CHANNEL or --fd" },
		{ { CLI_PATH, "stat", "bad/name", NULL }, "'bad/name' is not a channel name" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct cli_result r;

		run(&r, cases[i].argv);
		ck_assert_msg(r.status == 2, "case %zu: exit %d, want 2; stderr:\n%s",
			      i, r.status, r.err);
		ck_assert_msg(cli_has(r.err, cases[i].says), "case %zu: stderr lacks \"%s\":\n%s",
			      i, cases[i].says, r.err);
		ck_assert_msg(cli_has(r.err, "Try 'ringbus"), "case %zu: no hint:\n%s", i, r.err);
		ck_assert_str_eq(r.out, "");
		cli_free(&r);
	}
}
END_TEST

static Suite *cli_suite(void)
{
	Suite *s = suite_create("cli_stat");
	TCase *tc = tcase_create("command");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, version_and_help);
	tcase_add_test(tc, usage_errors);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(cli_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
