/* SPDX-License-Identifier: MIT */
/*
 * broker_fixture.c - see broker_fixture.h.  The daemon's stderr comes back
 * through a pipe that a thread drains into a buffer, so that a test can wait
 * for a log line (wait_log()).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "broker_fixture.h"
#include "helpers.h"


struct daemon D;

static void *drain(void *arg)
{
	struct daemon *d = arg;
	char buf[4096];

	for (;;) {
		ssize_t n = read(d->log_fd, buf, sizeof(buf));

		if (n < 0 && errno == EINTR)
			continue;
		pthread_mutex_lock(&d->lock);
		if (n <= 0) {
			d->eof = 1;
		} else {
			if (d->len + (size_t)n + 1 > d->cap) {
				d->cap = (d->len + (size_t)n + 1) * 2;
				d->log = realloc(d->log, d->cap);
			}
			memcpy(d->log + d->len, buf, (size_t)n);
			d->len += (size_t)n;
			d->log[d->len] = 0;
		}
		pthread_cond_broadcast(&d->grew);
		pthread_mutex_unlock(&d->lock);
		if (n <= 0)
			return NULL;
	}
}

/* Wait until the daemon's log holds @what @count times after offset @from,
 * or fail after 20 s (a hang is a failure, not a wait). */
void wait_log_n(const char *what, size_t from, int count)
{
	struct timespec until;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 20;
	pthread_mutex_lock(&D.lock);
	for (;;) {
		int seen = 0;

		for (const char *p = D.log ? D.log + from : NULL; p && (p = strstr(p, what));
		     p += strlen(what))
			seen++;
		if (seen >= count)
			break;
		ck_assert_msg(!D.eof, "daemon log ended without \"%s\":\n%s", what,
			      D.log ? D.log : "");
		ck_assert_msg(pthread_cond_timedwait(&D.grew, &D.lock, &until) == 0,
			      "no \"%s\" in the daemon log after 20 s:\n%s", what,
			      D.log ? D.log : "");
	}
	pthread_mutex_unlock(&D.lock);
}

void wait_log(const char *what) { wait_log_n(what, 0, 1); }

size_t log_len(void)
{
	size_t n;

	pthread_mutex_lock(&D.lock);
	n = D.len;
	pthread_mutex_unlock(&D.lock);
	return n;
}

void stat_polled(struct rbus_broker *b, const char *name, struct rbus_broker_stat *st)
{
	int r;

	while ((r = rbus_broker_stat(b, name, st)) == -EAGAIN)
		sched_yield();
	ck_assert_rbus(r, 0);
}

bool log_has(const char *what)
{
	return log_count(what) > 0;
}

int log_count(const char *what)
{
	int n = 0;

	pthread_mutex_lock(&D.lock);
	for (const char *p = D.log; p && (p = strstr(p, what)); p += strlen(what))
		n++;
	pthread_mutex_unlock(&D.lock);
	return n;
}

/* Start ringbusd on D.sock with @extra options; returns once it listens. */
void daemon_start_args(const char *const *extra)
{
	const char *path = D.path ? D.path : DAEMON_PATH;
	const char *argv[24] = { path, "--socket", D.sock, "--log-level", "debug" };
	int p[2], i = 5;
	size_t from = log_len();

	for (; extra && *extra; extra++)
		argv[i++] = *extra;
	argv[i] = NULL;
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	D.pid = fork();
	ck_assert_int_ge(D.pid, 0);
	if (D.pid == 0) {
		dup2(p[1], STDERR_FILENO);
		execv(path, (char *const *)argv);
		_exit(127);
	}
	close(p[1]);
	if (D.drainer) {
		pthread_join(D.drainer, NULL);
		close(D.log_fd);
	}
	D.eof = 0;
	D.log_fd = p[0];
	ck_assert_int_eq(pthread_create(&D.drainer, NULL, drain, &D), 0);
	wait_log_n("listening on", from, 1);
}

void daemon_start(void) { daemon_start_args(NULL); }

/* Stop the daemon with @sig and return its wait status. */
int daemon_stop(int sig)
{
	int status;

	if (D.pid <= 0)
		return 0;
	kill(D.pid, sig);
	ck_assert_int_eq(waitpid(D.pid, &status, 0), D.pid);
	D.pid = 0;
	pthread_join(D.drainer, NULL);
	D.drainer = 0;
	close(D.log_fd);
	return status;
}

void setup(void)
{
	memset(&D, 0, sizeof(D));
	pthread_mutex_init(&D.lock, NULL);
	pthread_cond_init(&D.grew, NULL);
	snprintf(D.dir, sizeof(D.dir), "%s/rbus-broker-XXXXXX", th_tmpdir());
	ck_assert_ptr_nonnull(mkdtemp(D.dir));
	/* Other uids (nobody) must reach the socket. */
	ck_assert_int_eq(chmod(D.dir, 0755), 0);
	snprintf(D.sock, sizeof(D.sock), "%s/d.sock", D.dir);
	daemon_start();
}

void teardown(void)
{
	int status = daemon_stop(SIGTERM);

	/* A clean shutdown: exit 0, and (under ASan) no leak report. */
	if (status) {
		fprintf(stderr, "daemon log:\n%s", D.log ? D.log : "");
		ck_abort_msg("ringbusd exited with status 0x%x on SIGTERM", status);
	}
	ck_assert_msg(access(D.sock, F_OK) != 0, "the socket outlived the daemon");
	rmdir(D.dir);
	free(D.log);
}

struct rbus_broker *conn(void)
{
	struct rbus_broker *b = NULL;

	ck_assert_rbus(rbus_broker_connect(D.sock, &b), 0);
	return b;
}

void create(struct rbus_broker *b, const char *name, enum rbus_kind kind,
		   uint32_t capacity, uint32_t mode, uint32_t flags)
{
	struct rbus_broker_create_opts o;

	rbus_broker_create_opts_init(&o);
	o.kind = kind;
	o.capacity = capacity;
	o.mode = mode;
	o.flags = flags;
	ck_assert_rbus(rbus_broker_create(b, name, &o, NULL), 0);
}

void holder_start_arg(struct holder *h, int (*fn)(void *), int extra)
{
	static int args[3];
	char c;

	ck_assert_int_eq(pipe(h->to_child), 0);
	ck_assert_int_eq(pipe(h->from_child), 0);
	args[0] = h->to_child[0];
	args[1] = h->from_child[1];
	args[2] = extra;
	h->pid = th_fork(fn, args);
	/* Only the child writes: if it ends without its byte, the read
	 * sees the end at once. */
	close(h->from_child[1]);
	h->from_child[1] = -1;
	ck_assert_msg(read(h->from_child[0], &c, 1) == 1,
		      "the holder ended before it held what it holds");
}

void holder_start(struct holder *h, int (*fn)(void *))
{
	holder_start_arg(h, fn, 0);
}

void holder_kill(struct holder *h)
{
	int status;

	ck_assert_int_eq(kill(h->pid, SIGKILL), 0);
	ck_assert_int_eq(waitpid(h->pid, &status, 0), h->pid);
	ck_assert(WIFSIGNALED(status));
}

void holder_end(struct holder *h)
{
	for (int i = 0; i < 2; i++) {
		close(h->to_child[i]);
		if (h->from_child[i] >= 0)
			close(h->from_child[i]);
	}
}

void full_laps(struct rbus_channel *p, struct rbus_channel *c, int laps)
{
	char buf[8];

	for (int lap = 0; lap < laps; lap++) {
		for (int i = 0; i < 16; i++)
			ck_assert_rbus(rbus_send(p, &(char){ (char)i }, 1), 0);
		ck_assert_rbus(rbus_send(p, "x", 1), -EAGAIN);
		for (int i = 0; i < 16; i++) {
			ck_assert_rbus(rbus_recv(c, buf, sizeof(buf)), 1);
			ck_assert_int_eq(buf[0], i);
		}
	}
}
