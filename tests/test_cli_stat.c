/* SPDX-License-Identifier: MIT */
/*
 * test_cli_stat - ringbus(1) itself (--help, --version, usage errors) and
 * its ls and stat subcommands, run as a user would run them, against a
 * private ringbusd.
 */
#include "config.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <check.h>

#include "cli.h"
#include "helpers.h"

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
		const char *cmd = cases[i].argv[1];

		if (!cmd || (strcmp(cmd, "ls") && strcmp(cmd, "stat")))
			cmd = NULL;  /* the command's own usage */
		cli_usage_error(cases[i].argv, cases[i].says, cmd);
	}
}
END_TEST

/* ---- ls and stat through the broker ------------------------------------- */

static struct cli_daemon D;

static void setup(void) { cli_daemon_start(&D, NULL); }
static void teardown(void) { cli_daemon_stop(&D); }

/* Create a persistent channel @name as root, mode @mode. */
static void create(struct rbus_broker *b, const char *name, enum rbus_kind kind,
		   uint32_t mode)
{
	struct rbus_broker_create_opts o;

	rbus_broker_create_opts_init(&o);
	o.kind = kind;
	o.capacity = 64;
	o.max_msg = 100;
	o.mode = mode;
	o.flags = RBUS_BROKER_PERSISTENT;
	ck_assert_rbus(rbus_broker_create(b, name, &o, NULL), 0);
}

START_TEST(ls_empty)
{
	struct cli_result r;

	run(&r, (const char *[]){ CLI_PATH, "ls", "--socket", D.sock, NULL });
	ck_assert_int_eq(r.status, 0);
	ck_assert_str_eq(r.out, "");
	ck_assert_str_eq(r.err, "");
	cli_free(&r);
	run(&r, (const char *[]){ CLI_PATH, "ls", "--socket", D.sock, "--json", NULL });
	ck_assert_int_eq(r.status, 0);
	cli_assert_json(r.out, r.out_len, false);
	ck_assert_str_eq(r.out, "{\"channels\":[]}\n");
	cli_free(&r);
}
END_TEST

START_TEST(ls_and_stat)
{
	struct rbus_broker *b;
	struct rbus_channel *p;
	struct cli_result r;
	char want[128];

	ck_assert_rbus(rbus_broker_connect(D.sock, &b), 0);
	create(b, "sensors.imu", RBUS_KIND_SPSC, 0640);
	create(b, "jobs", RBUS_KIND_MPMC, 0600);
	ck_assert_rbus(rbus_broker_open(b, "sensors.imu", RBUS_PRODUCER, 0, &p), 0);
	for (int i = 0; i < 3; i++)
		ck_assert_rbus(rbus_send(p, "abc", 3), 0);

	run(&r, (const char *[]){ CLI_PATH, "ls", "--socket", D.sock, NULL });
	ck_assert_int_eq(r.status, 0);
	ck_assert_msg(cli_has(r.out, "NAME"), "%s", r.out);
	ck_assert_msg(cli_has(r.out, "sensors.imu") && cli_has(r.out, "jobs"), "%s", r.out);
	/* In creation order, with kind, capacity, the producer and the mode. */
	ck_assert_msg(strstr(r.out, "sensors.imu") < strstr(r.out, "jobs"), "%s", r.out);
	{
		char kind[8], wake[8], mode[12];
		unsigned cap, max;
		const char *line = strstr(r.out, "sensors.imu");

		ck_assert_int_eq(sscanf(line, "sensors.imu %7s %7s %u %u %*s %*s %*s %*s %*s %11s",
					kind, wake, &cap, &max, mode), 5);
		ck_assert_str_eq(kind, "spsc");
		ck_assert_str_eq(wake, "futex");
		ck_assert_uint_eq(cap, 64);
		ck_assert_uint_eq(max, 100);
		ck_assert_str_eq(mode, "rw-r-----");
	}
	cli_free(&r);

	run(&r, (const char *[]){ CLI_PATH, "ls", "-s", D.sock, "-j", NULL });
	ck_assert_int_eq(r.status, 0);
	cli_assert_json(r.out, r.out_len, false);
	ck_assert_msg(cli_has(r.out, "{\"name\":\"sensors.imu\",\"id\":"), "%s", r.out);
	ck_assert_msg(cli_has(r.out, "\"kind\":\"mpmc\""), "%s", r.out);
	ck_assert_msg(cli_has(r.out, "\"mode\":\"0640\""), "%s", r.out);
	ck_assert_msg(cli_has(r.out, "\"producers\":1,\"consumers\":0"), "%s", r.out);
	cli_free(&r);

	run(&r, (const char *[]){ CLI_PATH, "stat", "--socket", D.sock, "sensors.imu", NULL });
	ck_assert_int_eq(r.status, 0);
	ck_assert_msg(cli_has(r.out, "fill      3 of 64"), "%s", r.out);
	ck_assert_msg(cli_has(r.out, "messages  in 3, out 0"), "%s", r.out);
	ck_assert_msg(cli_has(r.out, "attached  1 producer, 0 consumers"), "%s", r.out);
	snprintf(want, sizeof(want), "pid %-8d uid %-6u producer", (int)getpid(),
		 (unsigned)getuid());
	ck_assert_msg(cli_has(r.out, want), "no \"%s\" in:\n%s", want, r.out);
	ck_assert_msg(cli_has(r.out, "resident"), "%s", r.out);
	cli_free(&r);

	run(&r, (const char *[]){ CLI_PATH, "stat", "-s", D.sock, "--json", "sensors.imu",
				  NULL });
	ck_assert_int_eq(r.status, 0);
	cli_assert_json(r.out, r.out_len, false);
	ck_assert_msg(cli_has(r.out, "\"fill\":3,\"messages_in\":3,\"messages_out\":0"),
		      "%s", r.out);
	snprintf(want, sizeof(want), "{\"pid\":%d,\"uid\":%u,\"role\":\"producer\"}",
		 (int)getpid(), (unsigned)getuid());
	ck_assert_msg(cli_has(r.out, want), "no %s in:\n%s", want, r.out);
	cli_free(&r);

	/* --watch: refreshes, the second with rates. */
	for (int i = 0; i < 5; i++)
		ck_assert_rbus(rbus_send(p, "abc", 3), 0);
	run(&r, (const char *[]){ CLI_PATH, "stat", "-s", D.sock, "--watch", "--count", "2",
				  "--interval", "20ms", "--json", "sensors.imu", NULL });
	ck_assert_int_eq(r.status, 0);
	cli_assert_json(r.out, r.out_len, true);
	ck_assert_msg(cli_has(r.out, "\"fill\":8"), "%s", r.out);
	ck_assert_ptr_nonnull(strchr(r.out, '\n'));
	ck_assert_msg(cli_has(strchr(r.out, '\n') + 1, "\"rates\":{\"in_per_s\":0"),
		      "the second refresh has no rates:\n%s", r.out);
	cli_free(&r);

	rbus_channel_close(p);
	rbus_broker_close(b);
}
END_TEST

START_TEST(stat_errors)
{
	struct rbus_broker *b;
	struct cli_result r;

	/* No such channel: 4. */
	run(&r, (const char *[]){ CLI_PATH, "stat", "-s", D.sock, "nope", NULL });
	ck_assert_int_eq(r.status, 4);
	ck_assert_msg(cli_has(r.err, "no channel 'nope'"), "%s", r.err);
	cli_free(&r);

	/* Permission: uid nobody may neither consume nor produce on 0600.
	 * Becoming nobody takes root (CI runs as root). */
	if (geteuid() == 0) {
		ck_assert_rbus(rbus_broker_connect(D.sock, &b), 0);
		create(b, "private", RBUS_KIND_SPSC, 0600);
		rbus_broker_close(b);
		run(&r, (const char *[]){ "/usr/bin/setpriv", "--reuid=65534", "--regid=65534",
					  "--clear-groups", CLI_PATH, "stat", "-s", D.sock,
					  "private", NULL });
		ck_assert_msg(r.status == 5, "exit %d; stderr:\n%s", r.status, r.err);
		ck_assert_msg(cli_has(r.err, "channel 'private': permission refused"), "%s", r.err);
		cli_free(&r);
	}

	/* No broker: 3, for ls and stat, naming the socket. */
	for (int i = 0; i < 2; i++) {
		run(&r, (const char *[]){ CLI_PATH, i ? "stat" : "ls", "-s",
					  "/nonexistent/ringbusd.sock", i ? "x" : NULL, NULL });
		ck_assert_int_eq(r.status, 3);
		ck_assert_msg(cli_has(r.err, "no broker at /nonexistent/ringbusd.sock"),
			      "%s", r.err);
		cli_free(&r);
	}
}
END_TEST

/* ---- stat without a broker ------------------------------------------------ */

START_TEST(stat_fd_and_shm)
{
	struct rbus_region_opts o;
	struct rbus_region *reg;
	struct rbus_channel *p, *c;
	struct cli_result r;
	char redirect[128], shm[64];
	char buf[16];

	rbus_region_opts_init(&o);
	o.kind = RBUS_KIND_MPMC;
	o.capacity = 16;
	o.max_msg = 32;
	ck_assert_rbus(rbus_region_create(&o, &reg), 0);
	ck_assert_rbus(rbus_channel_open(reg, RBUS_PRODUCER, 0, &p), 0);
	ck_assert_rbus(rbus_channel_open(reg, RBUS_CONSUMER, 0, &c), 0);
	for (int i = 0; i < 7; i++)
		ck_assert_rbus(rbus_send(p, "x", 1), 0);
	ck_assert_rbus(rbus_recv(c, buf, sizeof(buf)), 1);

	/* Another process's memfd, through /proc, as ringbus(1) documents. */
	snprintf(redirect, sizeof(redirect), "exec %s stat --fd 3 3<>/proc/%d/fd/%d",
		 CLI_PATH, (int)getpid(), rbus_region_fd(reg));
	run(&r, (const char *[]){ "/bin/sh", "-c", redirect, NULL });
	ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
	ck_assert_msg(cli_has(r.out, "kind      mpmc"), "%s", r.out);
	ck_assert_msg(cli_has(r.out, "fill      6 of 16"), "%s", r.out);
	ck_assert_msg(cli_has(r.out, "messages  in 7, out 1"), "%s", r.out);
	ck_assert_msg(cli_has(r.out, "attached  1 producer, 1 consumer"), "%s", r.out);
	cli_free(&r);
	rbus_channel_close(p);
	rbus_channel_close(c);
	rbus_region_close(reg);

	/* A POSIX shm region, by name, --json. */
	snprintf(shm, sizeof(shm), "/rbus-cli-test-%d", (int)getpid());
	rbus_region_opts_init(&o);
	o.shm_name = shm;
	o.capacity = 8;
	o.start_index = UINT64_C(1) << 32;
	ck_assert_rbus(rbus_region_create(&o, &reg), 0);
	ck_assert_rbus(rbus_channel_open(reg, RBUS_PRODUCER, 0, &p), 0);
	ck_assert_rbus(rbus_send(p, "y", 1), 0);
	run(&r, (const char *[]){ CLI_PATH, "stat", "--shm", shm, "--json", NULL });
	ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
	cli_assert_json(r.out, r.out_len, false);
	ck_assert_msg(cli_has(r.out, "\"kind\":\"spsc\""), "%s", r.out);
	ck_assert_msg(cli_has(r.out, "\"fill\":1,\"messages_in\":1,\"messages_out\":0"),
		      "%s", r.out);
	cli_free(&r);
	rbus_channel_close(p);
	rbus_region_close(reg);
	ck_assert_int_eq(shm_unlink(shm), 0);

	/* Gone now: 4.  And an fd that is no region: 1. */
	run(&r, (const char *[]){ CLI_PATH, "stat", "--shm", shm, NULL });
	ck_assert_msg(r.status == 4, "exit %d: %s", r.status, r.err);
	ck_assert_msg(cli_has(r.err, shm), "%s", r.err);
	cli_free(&r);
	{
		char junk[64], cmd[192], page[8192];
		int fd;

		snprintf(junk, sizeof(junk), "%s/rbus-cli-junk-XXXXXX", th_tmpdir());
		fd = mkstemp(junk);

		ck_assert_int_ge(fd, 0);
		memset(page, 'x', sizeof(page));
		ck_assert_int_eq(write(fd, page, sizeof(page)), (int)sizeof(page));
		close(fd);
		snprintf(cmd, sizeof(cmd), "exec %s stat --fd 3 3<>%s", CLI_PATH, junk);
		run(&r, (const char *[]){ "/bin/sh", "-c", cmd, NULL });
		unlink(junk);
	}
	ck_assert_msg(r.status == 1, "exit %d: %s", r.status, r.err);
	ck_assert_msg(cli_has(r.err, "ringbus stat: fd 3: "), "%s", r.err);
	cli_free(&r);

	/* Numbers are decimal: 0300 is fd 300 (closed), not fd 192. */
	run(&r, (const char *[]){ CLI_PATH, "stat", "--fd", "0300", NULL });
	ck_assert_msg(r.status == 1, "exit %d: %s", r.status, r.err);
	ck_assert_msg(cli_has(r.err, "fd 300: not an open file descriptor"), "%s", r.err);
	cli_free(&r);
}
END_TEST

/* ringbusd --ready-fd, which every test here relies on, refuses a closed fd. */
START_TEST(daemon_ready_fd_closed)
{
	struct cli_result r;
	char sock[96];

	snprintf(sock, sizeof(sock), "%s/unused.sock", th_tmpdir());
	run(&r, (const char *[]){ CLI_DAEMON_PATH, "--socket", sock, "--ready-fd", "99", NULL });
	ck_assert_int_eq(r.status, 2);
	ck_assert_msg(cli_has(r.err, "--ready-fd 99: Bad file descriptor"), "%s", r.err);
	cli_free(&r);
	/* Nor a standard stream, which it would close. */
	run(&r, (const char *[]){ CLI_DAEMON_PATH, "--socket", sock, "--ready-fd", "2", NULL });
	ck_assert_int_eq(r.status, 2);
	ck_assert_msg(cli_has(r.err, "invalid value '2' for --ready-fd"), "%s", r.err);
	cli_free(&r);
}
END_TEST

/* The JSON checker the CLI tests rely on says no where a parser would. */
START_TEST(json_checker)
{
	static const char *const good[] = {
		"{}\n", "[]\n", "0\n", "\"\"\n", " { \"a\" : [ 1 , -0.5e+3 , 2E-2 ] } \n",
		"{\"a\":[true,false,null,{\"b\":\"x\\u00e9\\n\\\"\\\\\\/\"}]}\n",
		"{\"s\":\"caf\xc3\xa9\"}\n", "\"\xe2\x82\xac \xf0\x9f\x98\x80\"\n", "-0\n",
		"0.0e-0\n", "1E+2\n",
	};
	static const char *const bad[] = {
		"", "{}", "{}\n\n", "{}\nx", "{\"a\":1,}\n", "[1,]\n", "[1 2]\n",
		"{\"a\" 1}\n", "{a:1}\n", "{\"a\":01}\n", "{\"a\":1.}\n", "{\"a\":.5}\n",
		"{\"a\":1e}\n", "{\"a\":NaN}\n", "{\"a\":inf}\n", "{\"a\":-}\n",
		"{\"a\":\"\t\"}\n", "{\"a\":\"\\x\"}\n", "{\"a\":\"\\u12\"}\n",
		"{\"a\":\"x}\n", "{\"a\":tru}\n", "{\"a\":1}}\n", "{\"a\":[1}\n",
		"{}\n{}\n", "\"\\\"\n", "\"\\u00\"\n", "-01\n", "+1\n",
		"\"\xff\"\n", "\"\xc0\xaf\"\n", "\"\xe2\x82\"\n", "\"\xed\xa0\x80\"\n",
		"\"\xf4\x90\x80\x80\"\n",
	};
	char why[128];

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		ck_assert_msg(cli_json_valid(good[i], false, why, sizeof(why)), "%s: %s", good[i],
			      why);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(!cli_json_valid(bad[i], false, why, sizeof(why)),
			      "took \"%s\" for JSON", bad[i]);
	/* Nesting: 64 levels pass, 65 do not. */
	for (int d = 64; d <= 65; d++) {
		char deep[2 * 65 + 2];

		memset(deep, '[', (size_t)d);
		memset(deep + d, ']', (size_t)d);
		deep[2 * d] = '\n';
		deep[2 * d + 1] = 0;
		ck_assert_int_eq(cli_json_valid(deep, false, why, sizeof(why)), d == 64);
	}
	/* JSON Lines: every line a value; a value may not span lines. */
	ck_assert(cli_json_valid("{}\n[1]\n", true, why, sizeof(why)));
	ck_assert(!cli_json_valid("{}\n[1,\n2]\n", true, why, sizeof(why)));
	ck_assert(!cli_json_valid("{}\n\n", true, why, sizeof(why)));
	ck_assert(cli_json_valid("[1,\n2]\n", false, why, sizeof(why)));
}
END_TEST

static Suite *cli_suite(void)
{
	Suite *s = suite_create("cli_stat");
	TCase *tc = tcase_create("command");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, version_and_help);
	tcase_add_test(tc, json_checker);
	tcase_add_test(tc, usage_errors);
	tcase_add_test(tc, daemon_ready_fd_closed);
	suite_add_tcase(s, tc);

	tc = tcase_create("broker");
	tcase_set_timeout(tc, 120);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, ls_empty);
	tcase_add_test(tc, ls_and_stat);
	tcase_add_test(tc, stat_errors);
	suite_add_tcase(s, tc);

	tc = tcase_create("region");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, stat_fd_and_shm);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(cli_suite());
	int failed;

	th_tmpdir_init();
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
