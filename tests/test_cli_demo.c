/* SPDX-License-Identifier: MIT */
/*
 * test_cli_demo - ringbus demo, run as a user would run it: with its own
 * private ringbusd, against one a test started (--socket), and with bad
 * command lines.  Runs are short (1 or 2 s of sending) and nothing here
 * depends on how fast the machine is: only on counts, which the demo
 * verifies sample by sample.
 */
#include "config.h"

#include <dirent.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>
#include <ringbus.h>

#include "cli.h"
#include "helpers.h"

#define LIMIT 60  /* seconds any one command may take: a loaded machine */

static void run(struct cli_result *r, const char *const *argv)
{
	cli_run(argv, NULL, 0, LIMIT, r);
}

/* ---- reading the output ---------------------------------------------------- */

/* The number after "KEY": at or after @from in the JSON text @s (our
 * output has no spaces); fails the test if there is none. */
static uint64_t json_u64(const char *s, const char *from, const char *key)
{
	char pat[64];
	const char *p;
	char *end;
	uint64_t v;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(from ? from : s, pat);
	ck_assert_msg(p, "no %s in:\n%s", pat, s);
	p += strlen(pat);
	v = strtoull(p, &end, 10);
	ck_assert_msg(end != p, "%s is not a number in:\n%s", pat, s);
	return v;
}

/* Where the @n-th (0-based) consumer's object starts, in the JSON @s. */
static const char *json_consumer(const char *s, int n)
{
	const char *p = strstr(s, "\"consumers\":[");

	ck_assert_msg(p, "no consumers in:\n%s", s);
	for (int i = 0; i <= n; i++) {
		p = strstr(p + 1, "{\"channel\":");
		ck_assert_msg(p, "no consumer %d in:\n%s", n, s);
	}
	return p;
}

/* Check the text summary: "sent N samples ...", then one row per
 * consumer, "I NAME RECEIVED LOST CORRUPT OUT-OF-ORDER ...": every consumer
 * received all N with nothing lost, corrupt or out of order. */
static void check_summary(const char *out)
{
	const char *p = strstr(out, "\nsent ");
	unsigned long long sent;

	ck_assert_msg(p, "no \"sent\" line in:\n%s", out);
	ck_assert_int_eq(sscanf(p, "\nsent %llu samples", &sent), 1);
	ck_assert_msg(sent > 0, "nothing sent:\n%s", out);
	p = strstr(p, "\nconsumer ");
	ck_assert_msg(p, "no table in:\n%s", out);
	for (int i = 0; i < 2; i++) {
		unsigned long long recv, lost, corrupt, ooo;
		char name[80];
		int idx;

		p = strchr(p + 1, '\n');
		ck_assert_ptr_nonnull(p);
		ck_assert_msg(sscanf(p + 1, "%d %79s %llu %llu %llu %llu", &idx, name, &recv,
				     &lost, &corrupt, &ooo) == 6, "row %d unreadable:\n%s", i, out);
		ck_assert_int_eq(idx, i);
		ck_assert_msg(recv == sent && lost == 0 && corrupt == 0 && ooo == 0,
			      "consumer %d: received %llu of %llu, lost %llu, corrupt %llu, "
			      "out of order %llu:\n%s", i, recv, sent, lost, corrupt, ooo, out);
	}
	ck_assert_msg(cli_has(out, "\nOK: "), "no verdict in:\n%s", out);
}

/* Is directory @path empty (the demo cleaned up its own)? */
static bool dir_empty(const char *path, char *first, size_t len)
{
	DIR *d = opendir(path);
	struct dirent *e;
	bool empty = true;

	ck_assert_ptr_nonnull(d);
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(first, len, "%s", e->d_name);
		empty = false;
		break;
	}
	closedir(d);
	return empty;
}

/* ---- runs ------------------------------------------------------------------- */

/* The plain demo with its private broker; TMPDIR points at a directory of
 * our own, so that we can see it remove the broker's directory. */
START_TEST(private_broker)
{
	struct cli_result r;
	char tmp[64], env[96], left[256];

	snprintf(tmp, sizeof(tmp), "%s/rbus-demo-test-XXXXXX", th_tmpdir());
	ck_assert_ptr_nonnull(mkdtemp(tmp));
	snprintf(env, sizeof(env), "TMPDIR=%s", tmp);
	cli_run_env((const char *[]){ CLI_PATH, "demo", "--duration", "2", NULL },
		    (const char *[]){ env, NULL }, NULL, 0, LIMIT, &r);
	ck_assert_msg(r.status == 0, "exit %d; stdout:\n%s\nstderr:\n%s", r.status, r.out,
		      r.err);
	ck_assert_msg(cli_has(r.out, "private ringbusd"), "%s", r.out);
	check_summary(r.out);
	ck_assert_msg(!strcmp(r.err, ""), "stderr:\n%s", r.err);
	ck_assert_msg(dir_empty(tmp, left, sizeof(left)), "%s/%s left behind", tmp, left);
	ck_assert_int_eq(rmdir(tmp), 0);
	cli_free(&r);
}
END_TEST

/* --json at a fixed rate: the keys ringbus(1) documents, and fan-out:
 * each consumer received what the producer sent, which at 20000 samples/s
 * for 1 s is 20000 (the producer sends every sample due before the end,
 * however late it wakes up). */
START_TEST(json_at_rate)
{
	static const char *const keys[] = {
		"\"ok\":true", "\"interrupted\":false", "\"socket\":", "\"private_broker\":true",
		"\"duration_s\":1", "\"rate\":20000", "\"capacity\":1024", "\"sample_bytes\":40",
		"\"producer\":{", "\"cpu\":", "\"sent\":", "\"seconds\":", "\"samples_per_s\":",
		"\"full_waits\":[", "\"consumers\":[", "\"channel\":\"demo-", "\"received\":",
		"\"verified\":", "\"lost\":0", "\"corrupt\":0", "\"out_of_order\":0",
		"\"empty_waits\":", "\"msgs_per_s\":", "\"mb_per_s\":", "\"latency_ns\":{",
		"\"p50\":", "\"p90\":", "\"p99\":", "\"max\":", "\"mean\":",
	};
	struct cli_result r;
	uint64_t sent;

	run(&r, (const char *[]){ CLI_PATH, "demo", "--duration", "1", "--rate", "20000",
				  "--json", NULL });
	ck_assert_msg(r.status == 0, "exit %d; stdout:\n%s\nstderr:\n%s", r.status, r.out,
		      r.err);
	cli_assert_json(r.out, r.out_len, false);
	ck_assert_msg(!strcmp(r.err, ""), "stderr:\n%s", r.err);
	/* One object on one line, and nothing else. */
	ck_assert_msg(r.out[0] == '{' && r.out_len > 2 && r.out[r.out_len - 2] == '}' &&
		      r.out[r.out_len - 1] == '\n' && !memchr(r.out, '\n', r.out_len - 1),
		      "not one JSON line:\n%s", r.out);
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		ck_assert_msg(cli_has(r.out, keys[i]), "no %s in:\n%s", keys[i], r.out);

	sent = json_u64(r.out, strstr(r.out, "\"producer\":{"), "sent");
	ck_assert_uint_eq(sent, 20000);
	for (int i = 0; i < 2; i++) {
		const char *c = json_consumer(r.out, i);

		ck_assert_uint_eq(json_u64(r.out, c, "sent"), sent);
		ck_assert_uint_eq(json_u64(r.out, c, "received"), sent);
		ck_assert_uint_eq(json_u64(r.out, c, "verified"), sent);
		ck_assert_uint_eq(json_u64(r.out, c, "lost"), 0);
	}
	cli_free(&r);
}
END_TEST

static int count_channel(const struct rbus_broker_entry *e, void *arg)
{
	(*(int *)arg)++;
	return 0;
}

/* With --socket: the demo uses the broker it is given, and leaves it as
 * it found it: no channel of its own left over. */
START_TEST(given_broker)
{
	struct cli_daemon d;
	struct cli_result r;
	struct rbus_broker *b;
	int n = 0;

	cli_daemon_start(&d, NULL);
	run(&r, (const char *[]){ CLI_PATH, "demo", "--socket", d.sock, "--duration", "1",
				  "--json", NULL });
	ck_assert_msg(r.status == 0, "exit %d; stdout:\n%s\nstderr:\n%s", r.status, r.out,
		      r.err);
	cli_assert_json(r.out, r.out_len, false);
	ck_assert_msg(cli_has(r.out, "\"private_broker\":false"), "%s", r.out);
	ck_assert_msg(cli_has(r.out, d.sock), "socket not named:\n%s", r.out);
	ck_assert_msg(!strcmp(r.err, ""), "stderr:\n%s", r.err);
	for (int i = 0; i < 2; i++) {
		const char *c = json_consumer(r.out, i);

		ck_assert_uint_eq(json_u64(r.out, c, "received"),
				  json_u64(r.out, strstr(r.out, "\"producer\":{"), "sent"));
	}
	cli_free(&r);

	ck_assert_int_eq(rbus_broker_connect(d.sock, &b), 0);
	ck_assert_int_eq(rbus_broker_list(b, count_channel, &n), 0);
	ck_assert_msg(n == 0, "%d channel(s) left in the broker", n);
	rbus_broker_close(b);
	cli_daemon_stop(&d);
}
END_TEST

/* ---- failures ---------------------------------------------------------------- */

/* A consumer that dies mid-run is a failure the demo names, and the run
 * ends at once, not at --duration: the header tells us the consumers'
 * pids (read through the pipe: no sleeping), and we kill one. */
START_TEST(consumer_killed)
{
	const char *argv[] = { CLI_PATH, "demo", "--duration", "60", "--rate", "1000", NULL };
	int out[2], err[2];
	char buf[4096], want[80], *errtext;
	size_t len = 0;
	int b, status;
	pid_t pid;
	FILE *f;

	ck_assert_int_eq(pipe(out), 0);
	ck_assert_int_eq(pipe(err), 0);
	pid = cli_spawn(argv, -1, out[1], err[1]);
	close(out[1]);
	close(err[1]);
	f = fdopen(out[0], "r");
	ck_assert_ptr_nonnull(f);
	for (;;) {
		const char *p;

		ck_assert_msg(fgets(buf + len, (int)(sizeof(buf) - len), f),
			      "no consumer pids in:\n%s", buf);
		p = strstr(buf + len, "consumers pid ");
		len += strlen(buf + len);
		if (p) {
			ck_assert_int_eq(sscanf(p, "consumers pid %*d and %d", &b), 1);
			break;
		}
	}
	ck_assert_int_eq(kill(b, SIGKILL), 0);
	status = cli_wait(pid, LIMIT);
	while (len < sizeof(buf) - 1 && fgets(buf + len, (int)(sizeof(buf) - len), f))
		len += strlen(buf + len);
	fclose(f);
	errtext = malloc(65536);
	ck_assert_ptr_nonnull(errtext);
	len = 0;
	for (ssize_t n; (n = read(err[0], errtext + len, 65535 - len)) > 0;)
		len += (size_t)n;
	errtext[len] = 0;
	close(err[0]);
	ck_assert_msg(status == 1, "exit %d; stdout:\n%s\nstderr:\n%s", status, buf, errtext);
	/* Whether it lost samples depends on when it died; its death, with
	 * the channel it served, is always told. */
	snprintf(want, sizeof(want), "consumer 1 (pid %d, channel demo-", b);
	ck_assert_msg(cli_has(errtext, want), "%s", errtext);
	ck_assert_msg(cli_has(errtext, ") was killed by signal 9"), "%s", errtext);
	ck_assert_msg(cli_has(buf, "FAILED: "), "%s", buf);
	free(errtext);
}
END_TEST

START_TEST(no_broker)
{
	struct cli_result r;

	run(&r, (const char *[]){ CLI_PATH, "demo", "--socket", "/nonexistent/x.sock", NULL });
	ck_assert_msg(r.status == 3, "exit %d; stderr:\n%s", r.status, r.err);
	ck_assert_msg(cli_has(r.err, "/nonexistent/x.sock"), "socket not named:\n%s", r.err);
	ck_assert_str_eq(r.out, "");
	cli_free(&r);
}
END_TEST

START_TEST(bad_daemon)
{
	struct cli_result r;

	run(&r, (const char *[]){ CLI_PATH, "demo", "--daemon", "/nonexistent", NULL });
	ck_assert_msg(r.status == 1, "exit %d; stderr:\n%s", r.status, r.err);
	ck_assert_msg(cli_has(r.err, "cannot start ringbusd /nonexistent (--daemon)"),
		      "%s", r.err);
	ck_assert_str_eq(r.out, "");
	cli_free(&r);

	/* A program that exits without saying "ready": its log is shown. */
	run(&r, (const char *[]){ CLI_PATH, "demo", "--daemon", "/bin/false", NULL });
	ck_assert_msg(r.status == 1, "exit %d; stderr:\n%s", r.status, r.err);
	ck_assert_msg(cli_has(r.err, "/bin/false did not start (exited with status 1)"),
		      "%s", r.err);
	ck_assert_str_eq(r.out, "");
	cli_free(&r);
}
END_TEST

START_TEST(usage_errors)
{
	static const struct {
		const char *argv[8];
		const char *says;
	} cases[] = {
		{ { CLI_PATH, "demo", "--duration", "x", NULL }, "'x' is not a duration" },
		{ { CLI_PATH, "demo", "--duration", "0", NULL }, "too short" },
		{ { CLI_PATH, "demo", "--rate", "-1", NULL }, "'-1' is not a number" },
		{ { CLI_PATH, "demo", "--rate", "2000000000", NULL }, "out of range" },
		{ { CLI_PATH, "demo", "--capacity", "1000", NULL }, "not a power of two" },
		{ { CLI_PATH, "demo", "--frob", NULL }, "unknown option '--frob'" },
		{ { CLI_PATH, "demo", "-x", NULL }, "unknown option '-x'" },
		{ { CLI_PATH, "demo", "--duration", NULL }, "'--duration' needs a value" },
		{ { CLI_PATH, "demo", "extra", NULL }, "unexpected argument 'extra'" },
		{ { CLI_PATH, "demo", "--socket", "a", "--daemon", "b", NULL },
		  "--socket and --daemon exclude each other" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cli_usage_error(cases[i].argv, cases[i].says, "demo");
}
END_TEST

START_TEST(help)
{
	static const char *const says[] = {
		"Usage: ringbus demo [OPTIONS]", "--duration", "--rate", "--capacity", "--socket",
		"--daemon", "--no-pin", "--json", "--help", "(default 5)", "(default 0)",
		"(default 1024)", "Exit status", "2 bad usage", "3 no broker",
	};
	struct cli_result r;

	run(&r, (const char *[]){ CLI_PATH, "demo", "--help", NULL });
	ck_assert_int_eq(r.status, 0);
	for (size_t i = 0; i < sizeof(says) / sizeof(says[0]); i++)
		ck_assert_msg(cli_has(r.out, says[i]), "--help lacks \"%s\":\n%s", says[i], r.out);
	ck_assert_str_eq(r.err, "");
	cli_free(&r);
}
END_TEST

static Suite *demo_suite(void)
{
	Suite *s = suite_create("cli_demo");
	TCase *runs = tcase_create("runs"), *fails = tcase_create("failures");

	tcase_set_timeout(runs, 2 * LIMIT);
	tcase_add_test(runs, private_broker);
	tcase_add_test(runs, json_at_rate);
	tcase_add_test(runs, given_broker);
	suite_add_tcase(s, runs);
	tcase_set_timeout(fails, 2 * LIMIT);
	tcase_add_test(fails, consumer_killed);
	tcase_add_test(fails, no_broker);
	tcase_add_test(fails, bad_daemon);
	tcase_add_test(fails, usage_errors);
	tcase_add_test(fails, help);
	suite_add_tcase(s, fails);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(demo_suite());
	int failed;

	th_tmpdir_init();
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
