/* SPDX-License-Identifier: MIT */
/*
 * test_cli_pubsub - ringbus pub and ringbus sub, run as a user would run
 * them, against a private ringbusd (one per test case).
 *
 * Synchronisation: a command's end is waited for (cli_run, cli_wait); where
 * one side must be attached before the other starts, the test asks the
 * broker (rbus_broker_stat) until it says so, within a bound.  Nothing
 * sleeps for a fixed time hoping the other side is ready.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <check.h>
#include <ringbus.h>

#include "cli.h"
#include "helpers.h"

#define LIMIT 30  /* seconds any one command may take */

static struct cli_daemon d;

static void setup(void)
{
	cli_daemon_start(&d, NULL);
}

static void teardown(void)
{
	cli_daemon_stop(&d);
}

/* argv of ringbus with the private daemon's socket: RB("pub", "x"). */
#define RB(cmd, ...) ((const char *[]){ CLI_PATH, cmd, "--socket", d.sock, __VA_ARGS__, NULL })

/* A file in the daemon's directory (removed with it: see drop()). */
static char *tmpfile_in(const char *name)
{
	static char paths[8][128];
	static unsigned next;
	char *p = paths[next++ % 8];

	snprintf(p, sizeof(paths[0]), "%s/%s", d.dir, name);
	return p;
}

static int open_w(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	ck_assert_msg(fd >= 0, "%s: %s", path, strerror(errno));
	return fd;
}

static int open_r(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	ck_assert_msg(fd >= 0, "%s: %s", path, strerror(errno));
	return fd;
}

static void write_file(const char *path, const void *buf, size_t len)
{
	int fd = open_w(path);

	ck_assert_int_eq(write(fd, buf, len), (ssize_t)len);
	close(fd);
}

/* The test directory must be empty for cli_daemon_stop() to remove it. */
static void drop(const char *path)
{
	unlink(path);
}

/* Wait until the broker says @name has a producer (@role RBUS_PRODUCER) or
 * a consumer attached.  Polls the broker's state, every millisecond, for
 * LIMIT seconds at most. */
static void wait_attached(const char *name, enum rbus_role role)
{
	struct rbus_broker *b;
	struct rbus_broker_stat st;
	struct timespec ms = { 0, 1000000 };
	int64_t until = rbus_now() + (int64_t)LIMIT * 1000000000;

	ck_assert_int_eq(rbus_broker_connect(d.sock, &b), 0);
	for (;;) {
		int r = rbus_broker_stat(b, name, &st);

		ck_assert_msg(r == 0 || r == -ENOENT, "stat %s: %s", name, rbus_strerror(r));
		if (r == 0 && (role == RBUS_PRODUCER ? st.prod_attached : st.cons_attached))
			break;
		ck_assert_msg(rbus_now() < until, "%s never got a %s", name,
			      role == RBUS_PRODUCER ? "producer" : "consumer");
		nanosleep(&ms, NULL);
	}
	rbus_broker_close(b);
}

/* Spawn a command with stdin from @in (NULL: /dev/null), stdout and stderr
 * to files. */
static pid_t spawn_files(const char *const *argv, const char *in, const char *out,
			 const char *err)
{
	int ifd = in ? open_r(in) : -1, ofd = out ? open_w(out) : -1;
	int efd = err ? open_w(err) : -1;
	pid_t pid = cli_spawn(argv, ifd, ofd, efd);

	if (ifd >= 0)
		close(ifd);
	if (ofd >= 0)
		close(ofd);
	if (efd >= 0)
		close(efd);
	return pid;
}

static void assert_file(const char *path, const void *want, size_t want_len)
{
	size_t len;
	char *got = cli_slurp(path, &len);

	ck_assert_msg(len == want_len, "%s: %zu bytes, want %zu", path, len, want_len);
	for (size_t i = 0; i < len; i++)
		if (got[i] != ((const char *)want)[i])
			ck_abort_msg("%s: differs at byte %zu of %zu", path, i, len);
	free(got);
}

static void assert_empty_file(const char *path)
{
	char *s = cli_slurp(path, NULL);

	ck_assert_msg(!*s, "%s is not empty:\n%s", path, s);
	free(s);
}

/* "1\n2\n...", @n lines, the last one without its newline if @open_end. */
static char *numbered_lines(unsigned n, bool open_end, size_t *len)
{
	size_t cap = (size_t)n * 12 + 1, k = 0;
	char *s = malloc(cap);

	ck_assert_ptr_nonnull(s);
	for (unsigned i = 1; i <= n; i++)
		k += (size_t)snprintf(s + k, cap - k, "line %u\n", i);
	if (open_end && k)
		k--;
	*len = k;
	return s;
}

/* xorshift: the same bytes on every run. */
static uint64_t rnd_state = 0x9E3779B97F4A7C15u;
static uint64_t rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return rnd_state;
}

/* ---- round trips ---------------------------------------------------------- */

/* sub attached first, then pub with N lines (the last unterminated). */
START_TEST(lines_sub_first)
{
	const char *out = tmpfile_in("out"), *err = tmpfile_in("err");
	struct cli_result r;
	size_t len;
	char *in = numbered_lines(20000, true, &len);
	pid_t sub = spawn_files(RB("sub", "ch"), NULL, out, err);

	wait_attached("ch", RBUS_CONSUMER);
	cli_run(RB("pub", "ch"), in, len, LIMIT, &r);
	ck_assert_msg(r.status == 0, "pub exit %d:\n%s", r.status, r.err);
	ck_assert_str_eq(r.err, "");
	ck_assert_str_eq(r.out, "");
	cli_free(&r);
	ck_assert_int_eq(cli_wait(sub, LIMIT), 0);
	assert_empty_file(err);
	/* sub ends every message with a newline, the last one too. */
	in[len] = '\n';
	assert_file(out, in, len + 1);
	free(in);
	drop(out);
	drop(err);
}
END_TEST

/* pub attached first and blocked on a full ring; sub --count takes the
 * first lines and leaves; pub sees the hang-up and exits 0 quietly. */
START_TEST(pub_first_count)
{
	const char *in = tmpfile_in("in"), *perr = tmpfile_in("perr");
	struct cli_result r;
	size_t len, want_len;
	char *data = numbered_lines(5000, false, &len);
	char *want = numbered_lines(100, false, &want_len);
	pid_t pub;

	write_file(in, data, len);
	pub = spawn_files(RB("pub", "ch"), in, NULL, perr);
	wait_attached("ch", RBUS_PRODUCER);
	cli_run(RB("sub", "--count", "100", "ch"), NULL, 0, LIMIT, &r);
	ck_assert_msg(r.status == 0, "sub exit %d:\n%s", r.status, r.err);
	ck_assert_str_eq(r.err, "");
	ck_assert_uint_eq(r.out_len, want_len);
	ck_assert_int_eq(memcmp(r.out, want, want_len), 0);
	cli_free(&r);
	ck_assert_int_eq(cli_wait(pub, LIMIT), 0);
	assert_empty_file(perr);
	free(data);
	free(want);
	drop(in);
	drop(perr);
}
END_TEST

/* pub --count: only the first N lines are sent; sub ends at the hang-up. */
START_TEST(pub_count)
{
	const char *out = tmpfile_in("out");
	struct cli_result r;
	size_t len, want_len;
	char *data = numbered_lines(100, false, &len);
	char *want = numbered_lines(7, false, &want_len);
	pid_t sub = spawn_files(RB("sub", "ch"), NULL, out, NULL);

	wait_attached("ch", RBUS_CONSUMER);
	cli_run(RB("pub", "--count", "7", "ch"), data, len, LIMIT, &r);
	ck_assert_msg(r.status == 0, "pub exit %d:\n%s", r.status, r.err);
	cli_free(&r);
	ck_assert_int_eq(cli_wait(sub, LIMIT), 0);
	assert_file(out, want, want_len);
	free(data);
	free(want);
	drop(out);
}
END_TEST

/* A producer that sends nothing (an empty input) and leaves still ends sub:
 * it came and went, even though the ring never moved. */
START_TEST(pub_empty_input)
{
	const char *out = tmpfile_in("out");
	struct cli_result r;
	pid_t sub = spawn_files(RB("sub", "ch"), NULL, out, NULL);

	wait_attached("ch", RBUS_CONSUMER);
	cli_run(RB("pub", "ch"), "", 0, LIMIT, &r);
	ck_assert_msg(r.status == 0, "pub exit %d:\n%s", r.status, r.err);
	cli_free(&r);
	ck_assert_int_eq(cli_wait(sub, LIMIT), 0);
	assert_empty_file(out);
	drop(out);
}
END_TEST

/* sub started first, then pub with @in: sub's output is @in, byte for byte;
 * both exit 0 and say nothing.  @framing and @max_msg for both, @v the
 * channel's variant. */
static void round_trip(const char *framing, const char *max_msg, const char *const *v,
		       const void *in, size_t len)
{
	const char *out = tmpfile_in("out"), *err = tmpfile_in("err");
	struct cli_result r;
	pid_t sub;

	sub = spawn_files(RB("sub", framing, "--max-msg", max_msg, v[0], v[1], v[2], v[3],
			     "ch"), NULL, out, err);
	wait_attached("ch", RBUS_CONSUMER);
	cli_run(RB("pub", framing, "--max-msg", max_msg, v[0], v[1], v[2], v[3], "ch"),
		in, len, LIMIT, &r);
	ck_assert_msg(r.status == 0, "pub exit %d:\n%s", r.status, r.err);
	ck_assert_str_eq(r.err, "");
	cli_free(&r);
	ck_assert_int_eq(cli_wait(sub, LIMIT), 0);
	assert_empty_file(err);
	assert_file(out, in, len);
	drop(out);
	drop(err);
}

/* The channel's variants for the binary round trips. */
static const char *const variants[][4] = {
	{ "--kind", "spsc", "--wakeup", "futex" },
	{ "--kind", "mpmc", "--wakeup", "eventfd" },
};

/* Framed random messages, zero-length and max-size ones among them. */
START_TEST(binary_round_trip)
{
	const char *const *v = variants[_i];
	const uint32_t max = 4096;
	size_t cap = 3000 * (4 + max), len = 0;
	unsigned char *in = malloc(cap);

	ck_assert_ptr_nonnull(in);
	for (unsigned i = 0; i < 3000; i++) {
		uint32_t n = i % 7 == 0 ? 0 : i % 7 == 1 ? max : (uint32_t)(rnd() % (max + 1));

		for (int k = 0; k < 4; k++)
			in[len++] = (unsigned char)(n >> (8 * k));
		for (uint32_t k = 0; k < n; k++)
			in[len++] = (unsigned char)rnd();
	}
	round_trip("--binary", "4k", v, in, len);
	free(in);
}
END_TEST

/* A few MiB of random bytes, any cut: the same bytes come out. */
START_TEST(raw_round_trip)
{
	const char *const *v = variants[_i];
	size_t len = (3u << 20) + 12345;
	unsigned char *in = malloc(len);

	ck_assert_ptr_nonnull(in);
	for (size_t i = 0; i < len; i++)
		in[i] = (unsigned char)rnd();
	round_trip("--raw", "64k", v, in, len);
	free(in);
}
END_TEST

/* `yes | ringbus pub ch` and `ringbus sub ch | head -n 5`: both end
 * promptly, with status 0 and nothing on stderr. */
START_TEST(yes_head)
{
	const char *perr = tmpfile_in("perr"), *serr = tmpfile_in("serr");
	char cmd[512], buf[64];
	size_t got = 0;
	int p1[2], p2[2], efd;
	pid_t pub, sub, head;
	ssize_t n;

	snprintf(cmd, sizeof(cmd), "yes | '%s' pub --socket '%s' ch", CLI_PATH, d.sock);
	efd = open_w(perr);
	pub = cli_spawn((const char *[]){ "/bin/sh", "-c", cmd, NULL }, -1, -1, efd);
	close(efd);

	ck_assert_int_eq(pipe2(p1, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(p2, O_CLOEXEC), 0);
	efd = open_w(serr);
	sub = cli_spawn(RB("sub", "ch"), -1, p1[1], efd);
	close(efd);
	close(p1[1]);
	head = cli_spawn((const char *[]){ "/usr/bin/head", "-n", "5", NULL }, p1[0], p2[1], -1);
	close(p1[0]);
	close(p2[1]);
	while ((n = read(p2[0], buf + got, sizeof(buf) - 1 - got)) > 0)
		got += (size_t)n;
	close(p2[0]);
	buf[got] = 0;
	ck_assert_str_eq(buf, "y\ny\ny\ny\ny\n");
	ck_assert_int_eq(cli_wait(head, LIMIT), 0);
	ck_assert_int_eq(cli_wait(sub, LIMIT), 0);
	ck_assert_int_eq(cli_wait(pub, LIMIT), 0);
	assert_empty_file(perr);
	assert_empty_file(serr);
	drop(perr);
	drop(serr);
}
END_TEST

/* ---- errors ---------------------------------------------------------------- */

START_TEST(no_daemon)
{
	char sock[128];
	struct cli_result r;

	snprintf(sock, sizeof(sock), "%s/nobody.sock", d.dir);
	for (const char *const *c = (const char *[]){ "pub", "sub", NULL }; *c; c++) {
		cli_run((const char *[]){ CLI_PATH, *c, "--socket", sock, "ch", NULL },
			NULL, 0, LIMIT, &r);
		ck_assert_msg(r.status == 3, "%s: exit %d:\n%s", *c, r.status, r.err);
		ck_assert_msg(cli_has(r.err, "no broker"), "%s", r.err);
		cli_free(&r);
	}
}
END_TEST

START_TEST(no_create)
{
	struct cli_result r;

	for (const char *const *c = (const char *[]){ "pub", "sub", NULL }; *c; c++) {
		cli_run(RB(*c, "--no-create", "missing"), "x\n", 2, LIMIT, &r);
		ck_assert_msg(r.status == 4, "%s: exit %d:\n%s", *c, r.status, r.err);
		ck_assert_msg(cli_has(r.err, "channel missing: no such channel"), "%s", r.err);
		cli_free(&r);
	}
}
END_TEST

/* A channel only root may use: nobody is refused, exit 5. */
START_TEST(permission)
{
	struct cli_result r;
	int p[2];
	pid_t pid;
	char err[512];
	size_t got = 0;
	ssize_t n;

	if (geteuid() != 0) {
		fprintf(stderr, "permission: skipped (needs root to become nobody)\n");
		return;
	}
	cli_run(RB("pub", "--persistent", "--mode", "600", "priv"), NULL, 0, LIMIT, &r);
	ck_assert_msg(r.status == 0, "pub exit %d:\n%s", r.status, r.err);
	cli_free(&r);

	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);

		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
		dup2(p[1], STDERR_FILENO);
		if (setgroups(0, NULL) || setgid(65534) || setuid(65534))
			_exit(120);
		execv(CLI_PATH, (char *const *)RB("sub", "priv"));
		_exit(127);
	}
	close(p[1]);
	while ((n = read(p[0], err + got, sizeof(err) - 1 - got)) > 0)
		got += (size_t)n;
	close(p[0]);
	err[got] = 0;
	ck_assert_msg(cli_wait(pid, LIMIT) == 5, "sub as nobody: %s", err);
	ck_assert_msg(cli_has(err, "channel priv: permission denied"), "%s", err);
}
END_TEST

/* SPSC: a second producer or consumer is refused, exit 1. */
START_TEST(role_busy)
{
	struct rbus_broker *b;
	struct rbus_channel *prod, *cons;
	struct cli_result r;

	ck_assert_int_eq(rbus_broker_connect(d.sock, &b), 0);
	ck_assert_int_eq(rbus_broker_create(b, "busy", NULL, NULL), 0);
	ck_assert_int_eq(rbus_broker_open(b, "busy", RBUS_PRODUCER, 0, &prod), 0);
	ck_assert_int_eq(rbus_broker_open(b, "busy", RBUS_CONSUMER, 0, &cons), 0);

	cli_run(RB("pub", "busy"), "x\n", 2, LIMIT, &r);
	ck_assert_msg(r.status == 1, "pub exit %d:\n%s", r.status, r.err);
	ck_assert_msg(cli_has(r.err, "channel busy already has a producer"), "%s", r.err);
	cli_free(&r);
	cli_run(RB("sub", "busy"), NULL, 0, LIMIT, &r);
	ck_assert_msg(r.status == 1, "sub exit %d:\n%s", r.status, r.err);
	ck_assert_msg(cli_has(r.err, "channel busy already has a consumer"), "%s", r.err);
	cli_free(&r);

	rbus_channel_close(prod);
	rbus_channel_close(cons);
	rbus_broker_close(b);
}
END_TEST

START_TEST(timeouts)
{
	struct cli_result r;
	size_t len;
	char *in = numbered_lines(10, false, &len);

	/* sub: no producer, so no message. */
	cli_run(RB("sub", "--timeout", "100ms", "t1"), NULL, 0, LIMIT, &r);
	ck_assert_msg(r.status == 6, "sub exit %d:\n%s", r.status, r.err);
	ck_assert_msg(cli_has(r.err, "channel t1: no message for"), "%s", r.err);
	cli_free(&r);
	/* pub: 10 lines into 2 slots, and no consumer. */
	cli_run(RB("pub", "--timeout", "100ms", "--capacity", "2", "t2"), in, len, LIMIT, &r);
	ck_assert_msg(r.status == 6, "pub exit %d:\n%s", r.status, r.err);
	ck_assert_msg(cli_has(r.err, "channel t2: no consumer came within"), "%s", r.err);
	cli_free(&r);
	free(in);
}
END_TEST

START_TEST(usage_errors)
{
	static const struct {
		const char *argv[8];
		const char *says;
	} cases[] = {
		{ { "pub", NULL }, "no channel given" },
		{ { "sub", "a", "b", NULL }, "unexpected argument 'b'" },
		{ { "pub", "--frob", "a", NULL }, "unknown option '--frob'" },
		{ { "sub", "-x", "a", NULL }, "unknown option '-x'" },
		{ { "pub", "--count", NULL }, "'--count' needs an argument" },
		{ { "sub", "--count", "0", "a", NULL }, "--count: 0 is out of range" },
		{ { "pub", "--count", "x", "a", NULL }, "'x' is not a number" },
		{ { "sub", "--timeout", "soon", "a", NULL }, "'soon' is not a duration" },
		{ { "pub", "--lines", "--binary", "a", NULL }, "--lines and --binary exclude" },
		{ { "sub", "--raw", "--binary", "a", NULL }, "--raw and --binary exclude" },
		{ { "pub", "--kind", "ring", "a", NULL }, "'ring' is not a kind" },
		{ { "sub", "--capacity", "1000", "a", NULL }, "1000 is not a power of two" },
		{ { "pub", "--capacity", "1", "a", NULL }, "out of range" },
		{ { "sub", "--max-msg", "1T", "a", NULL }, "'1T' is not a size" },
		{ { "pub", "--max-msg", "1G", "a", NULL }, "out of range" },
		{ { "sub", "--wakeup", "bell", "a", NULL }, "'bell' is not a wakeup" },
		{ { "pub", "--mode", "9", "a", NULL }, "'9' is not an octal mode" },
		{ { "sub", "--mode", "755", "a", NULL }, "755 has bits other than" },
		{ { "pub", "bad/name", NULL }, "'bad/name' is not a channel name" },
		{ { "sub", "-dash", NULL }, "unknown option '-d'" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *argv[12] = { CLI_PATH };

		for (int k = 0; cases[i].argv[k]; k++)
			argv[k + 1] = cases[i].argv[k];
		cli_usage_error(argv, cases[i].says, cases[i].argv[0]);
	}
}
END_TEST

START_TEST(help)
{
	for (const char *const *c = (const char *[]){ "pub", "sub", NULL }; *c; c++) {
		struct cli_result r;
		char usage[64];

		cli_run((const char *[]){ CLI_PATH, *c, "--help", NULL }, NULL, 0, LIMIT, &r);
		ck_assert_int_eq(r.status, 0);
		snprintf(usage, sizeof(usage), "Usage: ringbus %s [OPTIONS] CHANNEL", *c);
		ck_assert_msg(cli_has(r.out, usage), "%s", r.out);
		for (const char *const *o = (const char *[]){ "--socket", "--lines", "--binary",
				"--raw", "--count", "--timeout", "--no-create", "--kind",
				"--capacity", "--max-msg", "--wakeup", "--mode", "--persistent",
				"Exit status", NULL }; *o; o++)
			ck_assert_msg(cli_has(r.out, *o), "%s --help lacks %s", *c, *o);
		ck_assert_str_eq(r.err, "");
		cli_free(&r);
	}
}
END_TEST

/* A line longer than max_msg: exit 1 with line number and both sizes, after
 * the lines before it were sent. */
START_TEST(line_too_long)
{
	static const char in[] = "short\n0123456789012345678901234567890123456789\nafter\n";
	const char *out = tmpfile_in("out");
	struct cli_result r;
	pid_t sub = spawn_files(RB("sub", "--max-msg", "16", "ch"), NULL, out, NULL);

	wait_attached("ch", RBUS_CONSUMER);
	cli_run(RB("pub", "--max-msg", "16", "ch"), in, sizeof(in) - 1, LIMIT, &r);
	ck_assert_msg(r.status == 1, "pub exit %d:\n%s", r.status, r.err);
	ck_assert_msg(cli_has(r.err, "channel ch: line 2 is 40 bytes, longer than the "
			      "channel's max message of 16 bytes"), "%s", r.err);
	cli_free(&r);
	ck_assert_int_eq(cli_wait(sub, LIMIT), 0);
	assert_file(out, "short\n", 6);
	drop(out);
}
END_TEST

/* A binary frame cut short by the end of input: exit 1, the frames before
 * it delivered. */
START_TEST(binary_truncated)
{
	static const char in[] = "\3\0\0\0abc" "\0\0\0\0" "\5\0\0\0xy";
	const char *out = tmpfile_in("out");
	struct cli_result r;
	pid_t sub = spawn_files(RB("sub", "--binary", "ch"), NULL, out, NULL);

	wait_attached("ch", RBUS_CONSUMER);
	cli_run(RB("pub", "--binary", "ch"), in, sizeof(in) - 1, LIMIT, &r);
	ck_assert_msg(r.status == 1, "pub exit %d:\n%s", r.status, r.err);
	ck_assert_msg(cli_has(r.err, "channel ch: frame 3 is truncated"), "%s", r.err);
	cli_free(&r);
	ck_assert_int_eq(cli_wait(sub, LIMIT), 0);
	assert_file(out, in, 11);
	drop(out);
}
END_TEST

static Suite *pubsub_suite(void)
{
	Suite *s = suite_create("cli_pubsub");
	TCase *tc = tcase_create("round trips");
	const int nvariants = (int)(sizeof(variants) / sizeof(variants[0]));

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, lines_sub_first);
	tcase_add_test(tc, pub_first_count);
	tcase_add_test(tc, pub_count);
	tcase_add_test(tc, pub_empty_input);
	tcase_add_loop_test(tc, binary_round_trip, 0, nvariants);
	tcase_add_loop_test(tc, raw_round_trip, 0, nvariants);
	tcase_add_test(tc, yes_head);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, no_daemon);
	tcase_add_test(tc, no_create);
	tcase_add_test(tc, permission);
	tcase_add_test(tc, role_busy);
	tcase_add_test(tc, timeouts);
	tcase_add_test(tc, usage_errors);
	tcase_add_test(tc, help);
	tcase_add_test(tc, line_too_long);
	tcase_add_test(tc, binary_truncated);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(pubsub_suite());
	int failed;

	th_tmpdir_init();
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
