/* SPDX-License-Identifier: MIT */
/*
 * cli.h - running the ringbus(1) command and a private ringbusd from the
 * Check tests of the command (tests/test_cli_*.c).
 *
 * Every run is bounded: cli_run() kills the command if it has not exited
 * within its time limit and fails the test case; the daemon is started with
 * --ready-fd, so nothing sleeps waiting for it.
 */
#ifndef RINGBUS_TEST_CLI_H
#define RINGBUS_TEST_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#ifndef RBUS_BUILDDIR
#error "RBUS_BUILDDIR must name the build directory"
#endif
#define CLI_PATH        RBUS_BUILDDIR "/tools/ringbus"
#define CLI_NORECHECK   RBUS_BUILDDIR "/tests/ringbus-norecheck"
#define CLI_DAEMON_PATH RBUS_BUILDDIR "/src/daemon/ringbusd"

/* What a finished command left behind. */
struct cli_result {
	int status;        /* exit status, or 128 + signal if killed by one */
	char *out;         /* all of its stdout, NUL-terminated (also binary) */
	size_t out_len;
	char *err;         /* all of its stderr, NUL-terminated */
	size_t err_len;
};

/*
 * Run @argv (argv[0] a path; NULL-terminated) with @in_len bytes of @in on
 * its stdin (NULL: /dev/null), collect stdout and stderr, and wait for it.
 * @limit_s: kill it (SIGKILL) and fail the test if it runs longer.
 * @env: "NAME=value" strings added to the environment, NULL-terminated, or
 * NULL.  Free the result with cli_free().
 */
void cli_run_env(const char *const *argv, const char *const *env,
		 const void *in, size_t in_len, int limit_s, struct cli_result *res);
void cli_run(const char *const *argv, const void *in, size_t in_len,
	     int limit_s, struct cli_result *res);
void cli_free(struct cli_result *res);

/* Start @argv in the background with stdin, stdout and stderr from/to the
 * given fds (-1: /dev/null); returns its pid.  Reap it with
 * cli_wait(pid, limit_s), which kills it after @limit_s and fails. */
pid_t cli_spawn(const char *const *argv, int in_fd, int out_fd, int err_fd);
int cli_wait(pid_t pid, int limit_s);

/* A private ringbusd on a socket in a fresh directory. */
struct cli_daemon {
	pid_t pid;
	char dir[64];
	char sock[96];
	char log[96];      /* its stderr */
};
/* Start it with optional extra options (NULL-terminated, or NULL); returns
 * when it listens (its --ready-fd said so), or fails the test. */
void cli_daemon_start(struct cli_daemon *d, const char *const *extra);
/* SIGTERM it, check it exited 0, remove its directory. */
void cli_daemon_stop(struct cli_daemon *d);

/* Run @argv (no stdin) and check that it is a usage error: exit status 2,
 * @says on stderr, then the hint "Try 'ringbus @cmd --help'." ("Try
 * 'ringbus --help'." for a NULL @cmd), and nothing on stdout. */
void cli_usage_error(const char *const *argv, const char *says, const char *cmd);

/* Read the whole file @path (NUL-terminated) into a malloc'd buffer. */
char *cli_slurp(const char *path, size_t *len);
/* Does @hay contain @needle? */
bool cli_has(const char *hay, const char *needle);

/* Is @s exactly JSON text as RFC 8259 has it: one value per line with
 * @lines (JSON Lines: each line one value, every line ended by a newline),
 * else one value then one newline?  Strict: no control characters in
 * strings, no leading zeros, no NaN or Infinity, no trailing commas, text
 * in UTF-8 (no overlong forms, no surrogates, nothing past U+10FFFF), no
 * bytes after the last newline.  On false, @why (@n bytes) says where and
 * what. */
bool cli_json_valid(const char *s, bool lines, char *why, size_t n);
/* Fail the test unless the @len bytes at @s hold no NUL and
 * cli_json_valid(@s, @lines). */
void cli_assert_json(const char *s, size_t len, bool lines);

#endif /* RINGBUS_TEST_CLI_H */
