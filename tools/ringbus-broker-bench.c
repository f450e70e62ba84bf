/* SPDX-License-Identifier: MIT */
/*
 * ringbus-broker-bench - what the broker costs: opening a channel by name,
 * creating channels, and the daemon's memory with many channels open.
 *
 *   open      connect + HELLO + OPEN + fds + attach (map) + close, end to
 *             end, p50/p90/p99/max over many iterations, repeated; the
 *             median of the repetitions' percentiles is reported.
 *   baseline  in the same run, the same socket dance with a trivial server:
 *             connect + two request/reply round trips on AF_UNIX
 *             SOCK_SEQPACKET, the floor any broker of this shape pays.
 *   create    channels created per second over one connection, then each
 *             of them opened and held, then the daemon's memory: VmRSS,
 *             and RssAnon (its own heap and stacks: RSS without the
 *             regions, which are shared memory, RssShmem).
 *
 * The daemon (a private one, unless --socket names a running one) is
 * pinned to CPU 0 and this process to CPU 1, so every request pays the
 * cross-CPU wakes a real client pays; the trivial server likewise.
 *
 * Targets (issue 4): open p50 < 200 us, p99 < 500 us; 1000 channels open at
 * once with the daemon's RSS under 10 MiB plus the regions.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ringbus.h"

#ifndef RBUS_BUILDDIR
#define RBUS_BUILDDIR "."
#endif

struct opts {
	const char *socket;      /* a running daemon, or NULL: start one */
	const char *daemon;      /* the ringbusd to start */
	unsigned iters;          /* opens per repetition */
	unsigned reps;
	unsigned channels;       /* for create and hold */
	int quick;
};

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void pin(pid_t pid, int cpu)
{
	cpu_set_t set;
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	CPU_ZERO(&set);
	CPU_SET(cpu % (n > 0 ? n : 1), &set);
	(void)sched_setaffinity(pid, sizeof(set), &set);
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

/* Nearest-rank percentile of n sorted values. */
static int64_t pct(const int64_t *v, unsigned n, double p)
{
	unsigned k = (unsigned)(p * n + 0.999999);

	return v[(k ? k : 1) - 1];
}

struct lat { int64_t p50, p90, p99, max; };

static struct lat summarize(int64_t *v, unsigned n)
{
	qsort(v, n, sizeof(*v), cmp_i64);
	return (struct lat){ pct(v, n, .50), pct(v, n, .90), pct(v, n, .99), v[n - 1] };
}

/* Median of each percentile over the repetitions. */
static struct lat median_lat(struct lat *r, unsigned n)
{
	int64_t v[4][64];
	struct lat m;

	for (unsigned i = 0; i < n; i++) {
		v[0][i] = r[i].p50;
		v[1][i] = r[i].p90;
		v[2][i] = r[i].p99;
		v[3][i] = r[i].max;
	}
	for (int k = 0; k < 4; k++)
		qsort(v[k], n, sizeof(int64_t), cmp_i64);
	m.p50 = v[0][n / 2];
	m.p90 = v[1][n / 2];
	m.p99 = v[2][n / 2];
	m.max = v[3][n / 2];
	return m;
}

static void die(const char *what, int err)
{
	fprintf(stderr, "ringbus-broker-bench: %s: %s\n", what, rbus_strerror(err));
	exit(1);
}

/* ---- the daemon -------------------------------------------------------------- */

static pid_t daemon_pid;
static char sock_path[100], tmp_dir[64];

static void start_daemon(const struct opts *o)
{
	const char *argv[] = { o->daemon, "--socket", sock_path, "--log-level", "warn",
			       "--max-rate", "0", "--max-client-channels", "100000",
			       NULL };
	strcpy(tmp_dir, "/tmp/rbus-bbench-XXXXXX");
	if (!mkdtemp(tmp_dir))
		die("mkdtemp", -errno);
	snprintf(sock_path, sizeof(sock_path), "%s/d.sock", tmp_dir);
	daemon_pid = fork();
	if (daemon_pid < 0)
		die("fork", -errno);
	if (daemon_pid == 0) {
		pin(0, 0);
		execv(o->daemon, (char *const *)argv);
		fprintf(stderr, "ringbus-broker-bench: exec %s: %s\n", o->daemon,
			strerror(errno));
		_exit(127);
	}
	/* Wait for it to listen (--log-level warn prints no ready line):
	 * connect until it answers, for at most 5 s. */
	for (int i = 0; i < 5000; i++) {
		struct timespec ms = { 0, 1000000 };
		struct rbus_broker *b;

		if (rbus_broker_connect(sock_path, &b) == 0) {
			rbus_broker_close(b);
			return;
		}
		nanosleep(&ms, NULL);
	}
	die("the daemon did not start listening", -ETIMEDOUT);
}

static void stop_daemon(void)
{
	if (daemon_pid > 0) {
		kill(daemon_pid, SIGTERM);
		waitpid(daemon_pid, NULL, 0);
		rmdir(tmp_dir);
	}
}

/* kB of a /proc/PID/status field, or -1. */
static long status_kb(pid_t pid, const char *field)
{
	char path[64], line[256];
	size_t fl = strlen(field);
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, field, fl) && line[fl] == ':')
			kb = strtol(line + fl + 1, NULL, 10);
	fclose(f);
	return kb;
}

/* ---- the baseline server: echo on SOCK_SEQPACKET ------------------------------- */

static pid_t echo_pid;
static char echo_path[100];

static void start_echo(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int l = socket(AF_UNIX, SOCK_SEQPACKET, 0);

	snprintf(echo_path, sizeof(echo_path), "%s/echo.sock", tmp_dir[0] ? tmp_dir : "/tmp");
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", echo_path);
	unlink(echo_path);
	if (l < 0 || bind(l, (struct sockaddr *)&sa, sizeof(sa)) || listen(l, 64))
		die("echo socket", -errno);
	echo_pid = fork();
	if (echo_pid == 0) {
		pin(0, 0);
		for (;;) {
			char buf[4096];
			int c = accept(l, NULL, NULL);
			ssize_t n;

			if (c < 0)
				_exit(0);
			while ((n = recv(c, buf, sizeof(buf), 0)) > 0)
				if (send(c, buf, (size_t)n, MSG_NOSIGNAL) != n)
					break;
			close(c);
		}
	}
	close(l);
}

static void stop_echo(void)
{
	kill(echo_pid, SIGKILL);
	waitpid(echo_pid, NULL, 0);
	unlink(echo_path);
}

/* connect + HELLO-sized and OPEN-sized round trips, as the client does. */
static int64_t echo_once(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char buf[256] = { 0 };
	int64_t t0 = now_ns();
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", echo_path);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
		die("echo connect", -errno);
	if (send(fd, buf, 32, 0) != 32 || recv(fd, buf, sizeof(buf), 0) != 32 ||
	    send(fd, buf, 96, 0) != 96 || recv(fd, buf, sizeof(buf), 0) != 96)
		die("echo", -EPROTO);
	close(fd);
	return now_ns() - t0;
}

/* ---- measurements ------------------------------------------------------------ */

static int64_t open_once(const char *name)
{
	struct rbus_broker *b;
	struct rbus_channel *ch;
	int64_t t0 = now_ns(), t;
	int err;

	err = rbus_broker_connect(sock_path, &b);
	if (err)
		die("connect", err);
	err = rbus_broker_open(b, name, RBUS_CONSUMER, 0, &ch);
	if (err)
		die("open", err);
	t = now_ns() - t0;
	rbus_channel_close(ch);
	rbus_broker_close(b);
	return t;
}

static void print_lat(const char *what, struct lat l)
{
	printf("  %-34s %8.1f %8.1f %8.1f %9.1f\n", what, l.p50 / 1e3, l.p90 / 1e3,
	       l.p99 / 1e3, l.max / 1e3);
}

static int hold_cb(const struct rbus_broker_entry *e, void *arg)
{
	(*(unsigned *)arg)++;
	(void)e;
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "daemon", required_argument, NULL, 'd' },
		{ "iterations", required_argument, NULL, 'n' },
		{ "repeat", required_argument, NULL, 'r' },
		{ "channels", required_argument, NULL, 'c' },
		{ "quick", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct opts o = { .daemon = RBUS_BUILDDIR "/src/daemon/ringbusd",
			  .iters = 2000, .reps = 5, .channels = 1000 };
	struct lat rep_open[64], rep_echo[64], mo, me;
	struct rbus_broker *b;
	struct rbus_broker_create_opts co;
	struct rbus_channel **held;
	int64_t *v, t0, t_create, t_open, t_unlink;
	long rss, anon, shmem;
	unsigned listed = 0;
	int c, err, pass = 1;

	while ((c = getopt_long(argc, argv, "s:d:n:r:c:qh", lo, NULL)) != -1) {
		switch (c) {
		case 's': o.socket = optarg; break;
		case 'd': o.daemon = optarg; break;
		case 'n': o.iters = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'r': o.reps = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'c': o.channels = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'q': o.quick = 1; break;
		case 'h':
			printf("usage: ringbus-broker-bench [--socket PATH | --daemon RINGBUSD]\n"
			       "       [--iterations N] [--repeat N] [--channels N] [--quick]\n"
			       "Opens per second, open latency, creates per second and the\n"
			       "daemon's memory with N channels open (default 1000).\n");
			return 0;
		default:
			return 2;
		}
	}
	if (o.quick) {
		o.iters = 300;
		o.reps = 3;
	}
	if (!o.iters || !o.reps || o.reps > 64 || !o.channels) {
		fprintf(stderr, "ringbus-broker-bench: bad --iterations, --repeat (1..64) or --channels\n");
		return 2;
	}
	if (o.socket) {
		snprintf(sock_path, sizeof(sock_path), "%s", o.socket);
	} else {
		start_daemon(&o);
		atexit(stop_daemon);
	}
	pin(0, 1);
	start_echo();

	err = rbus_broker_connect(sock_path, &b);
	if (err)
		die("connect", err);
	rbus_broker_create_opts_init(&co);
	co.capacity = 64;
	co.max_msg = 64;
	err = rbus_broker_create(b, "bench-open", &co, NULL);
	if (err)
		die("create bench-open", err);

	v = calloc(o.iters, sizeof(*v));
	for (unsigned i = 0; i < o.iters / 10; i++) {  /* warm up */
		open_once("bench-open");
		echo_once();
	}
	for (unsigned r = 0; r < o.reps; r++) {
		for (unsigned i = 0; i < o.iters; i++)
			v[i] = open_once("bench-open");
		rep_open[r] = summarize(v, o.iters);
		for (unsigned i = 0; i < o.iters; i++)
			v[i] = echo_once();
		rep_echo[r] = summarize(v, o.iters);
	}
	mo = median_lat(rep_open, o.reps);
	me = median_lat(rep_echo, o.reps);
	stop_echo();

	/* Create, open and hold o.channels channels. */
	held = calloc(o.channels, sizeof(*held));
	t0 = now_ns();
	for (unsigned i = 0; i < o.channels; i++) {
		char name[32];

		snprintf(name, sizeof(name), "bench-%u", i);
		err = rbus_broker_create(b, name, &co, NULL);
		if (err)
			die("create", err);
	}
	t_create = now_ns() - t0;
	t0 = now_ns();
	for (unsigned i = 0; i < o.channels; i++) {
		char name[32];

		snprintf(name, sizeof(name), "bench-%u", i);
		err = rbus_broker_open(b, name, RBUS_CONSUMER, 0, &held[i]);
		if (err)
			die("open", err);
	}
	t_open = now_ns() - t0;
	err = rbus_broker_list(b, hold_cb, &listed);
	if (err)
		die("list", err);
	rss = daemon_pid > 0 ? status_kb(daemon_pid, "VmRSS") : -1;
	anon = daemon_pid > 0 ? status_kb(daemon_pid, "RssAnon") : -1;
	shmem = daemon_pid > 0 ? status_kb(daemon_pid, "RssShmem") : -1;
	t0 = now_ns();
	for (unsigned i = 0; i < o.channels; i++) {
		char name[32];

		rbus_channel_close(held[i]);
		snprintf(name, sizeof(name), "bench-%u", i);
		err = rbus_broker_unlink(b, name);
		if (err)
			die("unlink", err);
	}
	t_unlink = now_ns() - t0;
	rbus_broker_close(b);

	printf("ringbus-broker-bench: daemon on CPU 0, client on CPU 1; %u opens x %u "
	       "repetitions, medians of the repetitions' percentiles\n\n", o.iters, o.reps);
	printf("  %-34s %8s %8s %8s %9s\n", "open, end to end (us)", "p50", "p90", "p99", "max");
	print_lat("ringbus: connect+hello+open+map", mo);
	print_lat("baseline: connect + 2 round trips", me);
	printf("  %-34s %8.2fx %7.2fx\n\n", "ratio ringbus / baseline",
	       (double)mo.p50 / (double)me.p50, (double)mo.p99 / (double)me.p99);
	printf("  %u channels: %.0f creates/s, %.0f opens/s on one connection, "
	       "%.0f unlinks/s; %u listed\n", o.channels,
	       o.channels / (t_create / 1e9), o.channels / (t_open / 1e9),
	       o.channels / (t_unlink / 1e9), listed);
	if (rss >= 0)
		printf("  daemon with %u channels open: VmRSS %.1f MiB = RssAnon %.1f MiB "
		       "+ RssShmem (regions) %.1f MiB + file %.1f MiB\n", o.channels,
		       rss / 1024.0, anon / 1024.0, shmem / 1024.0,
		       (rss - anon - shmem) / 1024.0);
	printf("\n  targets:\n");
	printf("    open p50 < 200 us: %.1f us  %s\n", mo.p50 / 1e3,
	       mo.p50 < 200000 ? "PASS" : (pass = 0, "FAIL"));
	printf("    open p99 < 500 us: %.1f us  %s\n", mo.p99 / 1e3,
	       mo.p99 < 500000 ? "PASS" : (pass = 0, "FAIL"));
	if (rss >= 0)
		printf("    %u channels open, daemon RSS without regions < 10 MiB: "
		       "%.1f MiB  %s\n", o.channels, (rss - shmem) / 1024.0,
		       listed >= o.channels && rss - shmem < 10 * 1024 ? "PASS" :
		       (pass = 0, "FAIL"));
	free(v);
	free(held);
	return pass ? 0 : 1;
}
