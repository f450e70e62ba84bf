/* SPDX-License-Identifier: MIT */
/*
 * test_cli_bench - ringbus bench, run as a user would run it: tiny runs (one
 * size, one repetition, 50 ms per measurement) that must finish, verify
 * and report every figure with its baselines, in text and in JSON; and the
 * usage errors.  No timing is asserted: the figures only have to be there
 * and be positive.
 */
#include "config.h"

#include <ctype.h>
#include <dirent.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "cli.h"
#include "helpers.h"

#define LIMIT 60  /* seconds any one command may take */

/* The smallest run that still runs every group of tests. */
#define TINY "bench", "--quick", "--kind", "spsc", "--sizes", "64", "--duration", "0.05", \
	     "--repeat", "1"

static void run(struct cli_result *r, const char *const *argv)
{
	cli_run(argv, NULL, 0, LIMIT, r);
}

/* The benchmark pins its two sides to two CPUs; with fewer it refuses. */
static bool two_cpus(void)
{
	cpu_set_t set;

	return sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) >= 2;
}

/* ---- a minimal look at JSON --------------------------------------------- */

/* The number after "key": in [s, end), or -1 if the key is not there. */
static double json_num(const char *s, const char *end, const char *key)
{
	char pat[64];
	const char *p;
	double v;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(s, pat);
	if (!p || p >= end || sscanf(p + strlen(pat), "%lf", &v) != 1)
		return -1;
	return v;
}

/* Does [s, end) hold needle? */
static bool within(const char *s, const char *end, const char *needle)
{
	const char *p = strstr(s, needle);

	return p && p < end;
}

/* Call fn on every test object of the "tests" array: [start, end). */
static int each_test(const char *json, void (*fn)(const char *s, const char *end))
{
	const char *p = strstr(json, "\"tests\":["), *stop = strstr(json, "],\"targets\":");
	int n = 0;

	ck_assert_msg(p && stop && p < stop, "no tests array:\n%.2000s", json);
	for (p = strstr(p, "{\"name\":"); p && p < stop; n++) {
		const char *next = strstr(p + 1, "{\"name\":");
		const char *end = next && next < stop ? next : stop;

		fn(p, end);
		p = next;
	}
	return n;
}

/* Every test has its keys, and positive figures for its group. */
static void check_test(const char *s, const char *end)
{
	const int len = (int)(end - s);
	const bool tput = within(s, end, "\"group\":\"throughput\"");

	for (const char *const *k = (const char *[]){ "\"name\":\"", "\"group\":\"",
			"\"transport\":\"", "\"size\":", "\"mode\":\"", NULL }; *k; k++)
		ck_assert_msg(within(s, end, *k), "test lacks %s: %.*s", *k, len, s);
	if (tput || within(s, end, "\"group\":\"streaming\"")) {
		ck_assert_msg(json_num(s, end, "msgs_per_s") > 0, "%.*s", len, s);
		ck_assert_msg(json_num(s, end, "gb_per_s") > 0, "%.*s", len, s);
		ck_assert_msg(json_num(s, end, "msgs_per_rep") > 0, "%.*s", len, s);
	} else if (within(s, end, "round_trip\"")) {
		for (const char *const *k = (const char *[]){ "p50", "p90", "p99", "p999",
				"max", "round_trips", NULL }; *k; k++)
			ck_assert_msg(json_num(s, end, *k) > 0, "no positive %s: %.*s", *k,
				      len, s);
		ck_assert_msg(json_num(s, end, "p50") <= json_num(s, end, "p99") &&
			      json_num(s, end, "p99") <= json_num(s, end, "max"),
			      "percentiles out of order: %.*s", len, s);
	} else {
		ck_assert_msg(within(s, end, "\"group\":\"idle\""), "unknown group: %.*s", len, s);
		ck_assert_msg(json_num(s, end, "cpu_ms_per_5s") >= 0, "%.*s", len, s);
	}
	/* Which side waited: counted for the rings and the bare ring, whose
	 * consumers count at least the look that found the ring drained;
	 * the streams block in the kernel and have neither. */
	if (tput && (within(s, end, "\"transport\":\"pipe\"") ||
		     within(s, end, "\"transport\":\"af_unix\"")))
		ck_assert_msg(!within(s, end, "_per_msg\""), "%.*s", len, s);
	else if (tput)
		ck_assert_msg(json_num(s, end, "full_per_msg") >= 0 &&
			      json_num(s, end, "empty_per_msg") > 0, "%.*s", len, s);
	/* A ring's figure comes with its ratio to a baseline of the run. */
	if (within(s, end, "\"transport\":\"spsc\"") && !within(s, end, "busy polling") &&
	    !within(s, end, "\"group\":\"idle\""))
		ck_assert_msg(json_num(s, end, "ratio") > 0 && within(s, end, "\"vs\":{"),
			      "no ratio to a baseline: %.*s", len, s);
}

/* The test named @name, or NULL. */
static const char *find_test(const char *json, const char *name)
{
	char pat[128];

	snprintf(pat, sizeof(pat), "{\"name\":\"%s\",", name);
	return strstr(json, pat);
}

START_TEST(json_tiny)
{
	struct cli_result r;
	const char *t, *end;

	run(&r, (const char *[]){ CLI_PATH, TINY, "--json", NULL });
	if (!two_cpus()) {
		ck_assert_int_eq(r.status, 1);
		ck_assert_msg(cli_has(r.err, "needs two CPUs"), "%s", r.err);
		cli_free(&r);
		return;
	}
	ck_assert_msg(r.status == 0, "exit %d; stderr:\n%s", r.status, r.err);
	ck_assert_msg(r.err_len == 0, "stderr is not empty (no terminal):\n%s", r.err);
	ck_assert_msg(r.out[0] == '{', "not a JSON object:\n%.2000s", r.out);
	cli_assert_json(r.out, r.out_len, false);
	for (const char *const *k = (const char *[]){ "\"command\":\"bench\"", "\"machine\":{",
			"\"kernel\":", "\"cpu_model\":", "\"parameters\":{",
			"\"kinds\":[\"spsc\"]", "\"sizes\":[64]", "\"backend\":\"memfd\"",
			"\"repeat\":1", "\"duration_s\":0.05", "\"tests\":[", "\"targets\":[",
			"\"targets_failed\":", "\"run_time_s\":", NULL }; *k; k++)
		ck_assert_msg(cli_has(r.out, *k), "no %s in:\n%s", *k, r.out);
	ck_assert_int_ge(each_test(r.out, check_test), 20);

	/* The ring next to both stream baselines and the bare ring, with
	 * every ratio. */
	t = find_test(r.out, "ringbus SPSC 64 B copy");
	ck_assert_msg(t, "no SPSC 64 B copy throughput:\n%.2000s", r.out);
	end = strchr(t, '}');
	ck_assert_msg(within(t, end, "\"baseline\":\"af_unix\"") &&
		      json_num(t, end, "af_unix") > 0 && json_num(t, end, "pipe") > 0 &&
		      json_num(t, end, "bare_ring") > 0, "%.*s", (int)(end - t), t);
	/* A ring's round trip: its own reference, bounced by the same
	 * processes just before; with one repetition the ratio is exactly
	 * p50 / ref_p50. */
	t = find_test(r.out, "round trip ringbus SPSC 64 B copy");
	ck_assert_msg(t, "no SPSC 64 B round trip:\n%.2000s", r.out);
	end = strstr(t, "}}") ? strstr(t, "}}") + 2 : t + strlen(t);
	end = strchr(end, '}') ? strchr(end, '}') : end;
	ck_assert_msg(within(t, end, "\"baseline\":\"bare_line_same_repetition\"") &&
		      json_num(t, end, "ref_p50") > 0, "%.*s", (int)(end - t), t);
	{
		double ratio = json_num(t, end, "ratio"), want;

		want = json_num(t, end, "p50") / json_num(t, end, "ref_p50");
		ck_assert_msg(ratio > want * 0.999 && ratio < want * 1.001,
			      "ratio %g, p50 / ref_p50 %g: %.*s", ratio, want, (int)(end - t), t);
	}
	/* The bare line's p50 of each round (one round here). */
	t = strstr(r.out, "\"bare_line_p50_by_round\":[");
	ck_assert_msg(t && strchr(t, ']') && !memchr(t, ',', (size_t)(strchr(t, ']') - t)) &&
		      isdigit((unsigned char)t[strlen("\"bare_line_p50_by_round\":[")]),
		      "not one round: %.200s", t ? t : r.out);
	/* Every baseline of the round trips was measured in the same run. */
	for (const char *const *n = (const char *[]){ "pipe 64 B write/read",
			"AF_UNIX stream 64 B write/read", "bare SPSC ring 64 B copy",
			"round trip bare cache line 8 B 2 lines",
			"round trip pipe 64 B write/read",
			"round trip AF_UNIX stream 64 B write/read",
			"round trip ringbus SPSC 64 B copy",
			"blocking round trip bare futex", "blocking round trip bare eventfd",
			"blocking round trip ringbus SPSC futex spin 0",
			"streaming ringbus SPSC eventfd", "idle ringbus SPSC futex", NULL }; *n; n++)
		ck_assert_msg(find_test(r.out, *n), "no test \"%s\" in:\n%s", *n, r.out);
	ck_assert_msg(!cli_has(r.out, "\"transport\":\"mpmc\""), "--kind spsc ran MPMC tests:\n%.2000s", r.out);
	/* Targets whose tests did not run are skipped, not failed. */
	ck_assert_msg(cli_has(r.out, "{\"target\":\"SPSC 8 B copy one-at-a-time >= 7.0e7 "
			      "msg/s\",\"result\":\"SKIP\"}"), "%.2000s", r.out);
	cli_free(&r);
}
END_TEST

/* The line of the section starting at @sec that starts with @row and has
 * @has in it, or NULL. */
static const char *row(const char *out, const char *sec, const char *rowstart,
		       const char *has)
{
	const char *s = strstr(out, sec), *e;

	if (!s)
		return NULL;
	e = strstr(s, "\n\n");
	for (const char *p = strchr(s, '\n'); p && (!e || p < e); p = strchr(p + 1, '\n')) {
		const char *eol = strchr(p + 1, '\n');

		if (!strncmp(p + 1, rowstart, strlen(rowstart)) &&
		    within(p + 1, eol ? eol : p + strlen(p), has))
			return p + 1;
	}
	return NULL;
}

/* The @n-th (from 0) blank-separated field of the line at @line, from the
 * right (@n = 0: the last). */
static void field_r(const char *line, int n, char *buf, size_t len)
{
	const char *eol = strchr(line, '\n'), *p;

	p = eol ? eol : line + strlen(line);
	for (int i = 0;; i++) {
		const char *end;

		while (p > line && p[-1] == ' ')
			p--;
		end = p;
		while (p > line && p[-1] != ' ')
			p--;
		if (i == n || p == line) {
			snprintf(buf, len, "%.*s", i == n ? (int)(end - p) : 0, p);
			return;
		}
	}
}

START_TEST(text_tiny)
{
	struct cli_result r;
	const char *ring, *pipe_, *unix_, *bare;
	char bare_p50[32], col[32];

	if (!two_cpus())
		return;
	run(&r, (const char *[]){ CLI_PATH, TINY, "--only", "throughput,pingpong", NULL });
	ck_assert_msg(r.status == 0, "exit %d; stderr:\n%s", r.status, r.err);
	ck_assert_msg(cli_has(r.out, "ringbus bench: libringbus throughput"), "%.2000s", r.out);

	/* Throughput: the pipe, AF_UNIX and bare ring rows of the size, then
	 * the ring's with its ratio to each. */
	pipe_ = row(r.out, "\nThroughput", "pipe  ", " 64 ");
	unix_ = row(r.out, "\nThroughput", "AF_UNIX stream", " 64 ");
	bare = row(r.out, "\nThroughput", "bare SPSC ring", " 64 ");
	ring = row(r.out, "\nThroughput", "ringbus SPSC", " copy  ");
	ck_assert_msg(pipe_ && unix_ && bare && ring && pipe_ < ring && unix_ < ring &&
		      bare < ring, "no baseline rows before the ring's:\n%.2000s", r.out);
	ck_assert_msg(cli_has(r.out, "vs AF_UNIX  vs pipe  vs bare"), "%.2000s", r.out);
	for (int i = 0; i < 3; i++) {
		field_r(ring, i, col, sizeof(col));
		ck_assert_msg(col[strlen(col) - 1] == 'x', "no ratio %d from the right: %s", i,
			      ring);
	}
	/* Then, left of the ratios, which side waited: numbers for the rings
	 * (the consumer's look that found the ring drained counts, so its
	 * column is never blank), "-" for the streams. */
	ck_assert_msg(cli_has(r.out, "msgs/rep   full  empty vs AF_UNIX"), "%.2000s", r.out);
	for (int i = 3; i < 5; i++) {
		char *endp;

		field_r(ring, i, col, sizeof(col));
		ck_assert_msg(strtod(col, &endp) >= 0 && endp != col && !*endp,
			      "column %d from the right is not a count: %s", i, ring);
		field_r(pipe_, i, col, sizeof(col));
		ck_assert_msg(!strcmp(col, "-"), "column %d of the pipe: %s", i, pipe_);
	}

	/* Round trips: a ring's row carries the p50 of the bare cache line
	 * bounced just before (one repetition: its ratio is p50 / that); the
	 * others the bare line row's p50. */
	bare = row(r.out, "\nRound trip (ns)", "bare cache line", "2 lines");
	ring = row(r.out, "\nRound trip (ns)", "ringbus SPSC", " copy ");
	ck_assert_msg(bare && ring, "no round-trip rows:\n%.2000s", r.out);
	ck_assert_msg(row(r.out, "\nRound trip (ns)", "pipe  ", "write/read") &&
		      row(r.out, "\nRound trip (ns)", "AF_UNIX stream", "write/read"),
		      "no pipe / AF_UNIX round trips:\n%.2000s", r.out);
	ck_assert_msg(cli_has(r.out, "p90      p99    p99.9       max"), "%.2000s", r.out);
	field_r(bare, 1, bare_p50, sizeof(bare_p50));
	field_r(row(r.out, "\nRound trip (ns)", "pipe  ", "write/read"), 1, col, sizeof(col));
	ck_assert_msg(isdigit((unsigned char)bare_p50[0]) && !strcmp(col, bare_p50),
		      "the pipe's row lacks the bare p50 %s:\n%.2000s", bare_p50, r.out);
	{
		char ref[32];
		double p50 = 0, x, want;

		ck_assert_int_eq(sscanf(ring, "%*s %*s %*s %*s %lf", &p50), 1);
		field_r(ring, 1, ref, sizeof(ref));
		field_r(ring, 0, col, sizeof(col));
		x = strtod(col, NULL);
		want = atof(ref) > 0 ? p50 / atof(ref) : -1;
		ck_assert_msg(col[strlen(col) - 1] == 'x' && want > 0 && x - want < 0.006 &&
			      want - x < 0.006,
			      "ratio %s is not p50 %g / bare p50 %s: %s", col, p50, ref, ring);
	}
	/* Where the host stood, round by round: the bare row's p50. */
	ck_assert_msg(cli_has(r.out, "bare cache line (2 lines) p50, round by round (ns): ") &&
		      !strncmp(strstr(r.out, "round by round (ns): ") + 21, bare_p50,
			       strlen(bare_p50)), "%.3000s", r.out);

	ck_assert_msg(cli_has(r.out, "\nTargets (figures of this run)\n") &&
		      cli_has(r.out, "target(s) failed\n"), "%.2000s", r.out);
	ck_assert_msg(!cli_has(r.out, "\nBlocking round trip (ns)"), "--only ran wakeups:\n%.2000s", r.out);
	cli_free(&r);
}
END_TEST

/* The other region and wakeup backends; nothing left in /dev/shm. */
START_TEST(shm_eventfd)
{
	const char *argv[] = { CLI_PATH, TINY, "--backend", "shm", "--wakeup", "eventfd",
			       "--json", NULL };
	char path[64], prefix[64];
	size_t out_len;
	int fd, status;
	struct dirent *d;
	char *out;
	DIR *dir;
	pid_t pid;

	if (!two_cpus())
		return;
	snprintf(path, sizeof(path), "%s/rbus-cli-bench-XXXXXX", th_tmpdir());
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	/* cli_spawn, not cli_run: the shm names carry the command's pid. */
	pid = cli_spawn(argv, -1, fd, STDERR_FILENO);
	status = cli_wait(pid, LIMIT);
	close(fd);
	out = cli_slurp(path, &out_len);
	unlink(path);
	ck_assert_msg(status == 0, "exit %d; stdout:\n%s", status, out);
	cli_assert_json(out, out_len, false);
	ck_assert_msg(cli_has(out, "\"backend\":\"shm\"") && cli_has(out, "\"wakeup\":\"eventfd\"") &&
		      cli_has(out, "\"wakeup_tests\":[\"eventfd\"]"), "%.2000s", out);
	each_test(out, check_test);
	ck_assert_msg(find_test(out, "blocking round trip ringbus SPSC eventfd") &&
		      find_test(out, "blocking round trip bare eventfd"), "%.2000s", out);
	ck_assert_msg(!find_test(out, "blocking round trip bare futex"),
		      "--wakeup eventfd ran the futex tests:\n%.2000s", out);
	free(out);

	snprintf(prefix, sizeof(prefix), "ringbus-bench-%ld-", (long)pid);
	dir = opendir("/dev/shm");
	while (dir && (d = readdir(dir)))
		ck_assert_msg(strncmp(d->d_name, prefix, strlen(prefix)),
			      "/dev/shm/%s left behind", d->d_name);
	if (dir)
		closedir(dir);
}
END_TEST

/* --capacity sizes the streaming rings (and the bare ring): the header
 * names the slots of each size's ring and the JSON echoes it.  16 slots,
 * fewer than a batch: the batch tests still run and verify every message. */
START_TEST(capacity)
{
	const char *base[] = { CLI_PATH, "bench", "--only", "throughput", "--kind", "spsc",
			       "--mode", "copy", "--sizes", "8,64", "--duration", "0.05",
			       "--repeat", "1", "--capacity", "16", NULL, NULL };
	struct cli_result r;

	if (!two_cpus())
		return;
	run(&r, base);
	ck_assert_msg(r.status == 0, "exit %d; stderr:\n%s", r.status, r.err);
	ck_assert_msg(cli_has(r.out, "8 B: 16 slots of ") &&
		      cli_has(r.out, "64 B: 16 slots of "), "%.2000s", r.out);
	ck_assert_msg(row(r.out, "Throughput (msg/s", "ringbus SPSC", " 8 copy b32") &&
		      row(r.out, "Throughput (msg/s", "bare SPSC ring", " 64 copy"),
		      "%.3000s", r.out);
	cli_free(&r);

	base[16] = "--json";
	run(&r, base);
	ck_assert_msg(r.status == 0, "exit %d; stderr:\n%s", r.status, r.err);
	cli_assert_json(r.out, r.out_len, false);
	ck_assert_msg(cli_has(r.out, "\"capacity\":16,") || cli_has(r.out, "\"capacity\":16}"),
		      "%.2000s", r.out);
	ck_assert_int_ge(each_test(r.out, check_test), 4);
	ck_assert_msg(find_test(r.out, "ringbus SPSC 8 B copy") &&
		      find_test(r.out, "bare SPSC ring 8 B copy"), "%.2000s", r.out);
	cli_free(&r);
}
END_TEST

START_TEST(help)
{
	struct cli_result r;

	run(&r, (const char *[]){ CLI_PATH, "bench", "--help", NULL });
	ck_assert_int_eq(r.status, 0);
	ck_assert_msg(cli_has(r.out, "Usage: ringbus bench"), "%.2000s", r.out);
	for (const char *const *o = (const char *[]){ "--kind", "--sizes", "--mode", "--backend",
			"--wakeup", "--spin", "--capacity", "--duration", "--repeat", "--cpus", "--quick",
			"--only", "--json", "--help", NULL }; *o; o++)
		ck_assert_msg(cli_has(r.out, *o), "--help does not describe %s:\n%s", *o, r.out);
	ck_assert_str_eq(r.err, "");
	cli_free(&r);
}
END_TEST

START_TEST(usage_errors)
{
	static const struct {
		const char *argv[5];
		const char *says;
	} cases[] = {
		{ { CLI_PATH, "bench", "--kind", "ring", NULL }, "--kind: 'ring'" },
		{ { CLI_PATH, "bench", "--sizes", "0", NULL }, "--sizes: 0 is out of range" },
		{ { CLI_PATH, "bench", "--sizes", "8,x", NULL }, "--sizes: 'x' is not a size" },
		{ { CLI_PATH, "bench", "--sizes", "8,,64", NULL }, "--sizes" },
		{ { CLI_PATH, "bench", "--cpus", "0,0", NULL }, "--cpus" },
		{ { CLI_PATH, "bench", "--cpus", "0", NULL }, "--cpus" },
		{ { CLI_PATH, "bench", "--repeat", "0", NULL }, "--repeat: 0 is out of range" },
		{ { CLI_PATH, "bench", "--mode", "fast", NULL }, "--mode: 'fast'" },
		{ { CLI_PATH, "bench", "--backend", "tmpfs", NULL }, "--backend: 'tmpfs'" },
		{ { CLI_PATH, "bench", "--wakeup", "poll", NULL }, "--wakeup: 'poll'" },
		{ { CLI_PATH, "bench", "--duration", "x", NULL }, "--duration: 'x'" },
		{ { CLI_PATH, "bench", "--spin", "x", NULL }, "--spin: 'x'" },
		{ { CLI_PATH, "bench", "--capacity", "1000", NULL },
		  "--capacity: 1000 is not a power of two" },
		{ { CLI_PATH, "bench", "--capacity", "1", NULL }, "--capacity: 1 is out of range" },
		{ { CLI_PATH, "bench", "--capacity", "536870912", NULL },
		  "--capacity: 536870912 is out of range" },
		/* 65536 slots of the default 64 KiB messages: 4 GiB. */
		{ { CLI_PATH, "bench", "--capacity", "65536", NULL },
		  "--capacity: 65536 slots of 65536 B messages take over 1024 MiB" },
		{ { CLI_PATH, "bench", "--only", "latency", NULL }, "--only: 'latency'" },
		{ { CLI_PATH, "bench", "--frob", NULL }, "--frob" },
		{ { CLI_PATH, "bench", "extra", NULL }, "unexpected argument 'extra'" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cli_usage_error(cases[i].argv, cases[i].says, "bench");
}
END_TEST

static Suite *cli_suite(void)
{
	Suite *s = suite_create("cli_bench");
	TCase *tc = tcase_create("options");
	TCase *runs = tcase_create("runs");

	tcase_add_test(tc, help);
	tcase_add_test(tc, usage_errors);
	suite_add_tcase(s, tc);
	/* Each run takes a few seconds (1 s of it an idle window per wakeup
	 * backend); a loaded machine stretches the busy-polling tests. */
	tcase_set_timeout(runs, 120);
	tcase_add_test(runs, json_tiny);
	tcase_add_test(runs, text_tiny);
	tcase_add_test(runs, shm_eventfd);
	tcase_add_test(runs, capacity);
	suite_add_tcase(s, runs);
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
