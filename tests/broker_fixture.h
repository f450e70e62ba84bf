/* SPDX-License-Identifier: MIT */
/*
 * broker_fixture.h - a private ringbusd for each test, and the processes the
 * death tests kill (test_broker.c, test_claim_window.c).
 */
#ifndef RINGBUS_TESTS_BROKER_FIXTURE_H
#define RINGBUS_TESTS_BROKER_FIXTURE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ringbus.h"

#ifndef RBUS_BUILDDIR
#error "RBUS_BUILDDIR must name the build directory"
#endif
#define DAEMON_PATH RBUS_BUILDDIR "/src/daemon/ringbusd"
/* The same daemon with its test hooks (src/daemon/maker.c, procs.c). */
#define DAEMON_HOOKS_PATH RBUS_BUILDDIR "/tests/ringbusd-hooks"

struct daemon {
	const char *path;           /* the program, NULL: DAEMON_PATH */
	pid_t pid;
	char dir[64];
	char sock[96];
	int log_fd;                 /* read end of its stderr */
	pthread_t drainer;
	pthread_mutex_t lock;
	pthread_cond_t grew;
	char *log;                  /* everything it wrote, NUL-terminated */
	size_t len, cap;
	int eof;
};

/* The daemon of the running test: D.sock is its socket. */
extern struct daemon D;

/* Wait until the daemon's log holds @what @count times after offset @from,
 * or fail after 20 s (a hang is a failure, not a wait). */
void wait_log_n(const char *what, size_t from, int count);
void wait_log(const char *what);
size_t log_len(void);
/* STAT @name in a loop that polls for a change: a refusal by the daemon's
 * rate limit (-EAGAIN), which a tight loop can run into while the daemon
 * is slow, is asked again; any other result must be 0. */
void stat_polled(struct rbus_broker *b, const char *name, struct rbus_broker_stat *st);
/* Does the daemon's log hold @what so far?  How many times? */
bool log_has(const char *what);
int log_count(const char *what);
/* Start ringbusd on D.sock with @extra options (NULL-terminated); returns
 * once it listens. */
void daemon_start_args(const char *const *extra);
void daemon_start(void);
/* Stop the daemon with @sig and return its wait status. */
int daemon_stop(int sig);
/* The checked fixture: a fresh directory and daemon per test, and a clean
 * shutdown checked at the end. */
void setup(void);
void teardown(void);

struct rbus_broker *conn(void);
void create(struct rbus_broker *b, const char *name, enum rbus_kind kind,
	    uint32_t capacity, uint32_t mode, uint32_t flags);

/* A child process that opens what it holds, says so on a pipe, and waits
 * to be killed (the holders of the death tests). */
struct holder {
	pid_t pid;
	int to_child[2], from_child[2];
};

/* Fork fn(pipes) with pipes = { read end of to_child, write end of
 * from_child }, and wait until it has written its byte; fail if it ends
 * without.  holder_start_arg() passes @extra as pipes[2]. */
void holder_start(struct holder *h, int (*fn)(void *));
void holder_start_arg(struct holder *h, int (*fn)(void *), int extra);
/* SIGKILL it and reap it. */
void holder_kill(struct holder *h);
void holder_end(struct holder *h);

/* After a recovery: laps of a 16-slot ring, sent by p and received by c in
 * order, one byte each, with the ring found full after each fill. */
void full_laps(struct rbus_channel *p, struct rbus_channel *c, int laps);

#endif
