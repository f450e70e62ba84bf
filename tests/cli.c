/* SPDX-License-Identifier: MIT */
/*
 * cli.c - see cli.h.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <check.h>

#include "cli.h"
#include "helpers.h"

extern char **environ;

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int decode(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return -1;
}

static void child_exec(const char *const *argv, const char *const *env)
{
	/* The test ignores SIGPIPE (cli_run_env()); the command must not. */
	signal(SIGPIPE, SIG_DFL);
	if (env)
		for (; *env; env++)
			putenv((char *)*env);
	execv(argv[0], (char *const *)argv);
	fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
	_exit(127);
}

struct sink {
	int fd;
	char *buf;
	size_t len, cap;
};

static bool sink_read(struct sink *s)
{
	char tmp[65536];
	ssize_t n = read(s->fd, tmp, sizeof(tmp));

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return true;
	if (n <= 0) {
		close(s->fd);
		s->fd = -1;
		return false;
	}
	if (s->len + (size_t)n + 1 > s->cap) {
		s->cap = (s->len + (size_t)n + 1) * 2;
		s->buf = realloc(s->buf, s->cap);
		ck_assert_ptr_nonnull(s->buf);
	}
	memcpy(s->buf + s->len, tmp, (size_t)n);
	s->len += (size_t)n;
	s->buf[s->len] = 0;
	return true;
}

void cli_run_env(const char *const *argv, const char *const *env,
		 const void *in, size_t in_len, int limit_s, struct cli_result *res)
{
	int pin[2], pout[2], perr[2], status;
	struct sink out = { .fd = -1 }, err = { .fd = -1 };
	const unsigned char *inp = in;
	size_t in_off = 0;
	int64_t until = mono_ms() + (int64_t)limit_s * 1000;
	pid_t pid;

	memset(res, 0, sizeof(*res));
	/* A command that exits before reading all its input: EPIPE, not death. */
	signal(SIGPIPE, SIG_IGN);
	ck_assert_int_eq(pipe2(pin, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(pout, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(perr, O_CLOEXEC), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		dup2(in ? pin[0] : open("/dev/null", O_RDONLY), STDIN_FILENO);
		dup2(pout[1], STDOUT_FILENO);
		dup2(perr[1], STDERR_FILENO);
		child_exec(argv, env);
	}
	close(pin[0]);
	close(pout[1]);
	close(perr[1]);
	if (!in || in_len == 0) {
		close(pin[1]);
		pin[1] = -1;
	} else {
		fcntl(pin[1], F_SETFL, O_NONBLOCK);
	}
	out.fd = pout[0];
	err.fd = perr[0];
	while (out.fd >= 0 || err.fd >= 0) {
		struct pollfd pf[3];
		nfds_t n = 0;
		int64_t left = until - mono_ms();

		if (left <= 0) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			ck_abort_msg("%s %s did not finish within %d s; stderr:\n%s",
				     argv[0], argv[1] ? argv[1] : "", limit_s,
				     err.buf ? err.buf : "");
		}
		if (out.fd >= 0)
			pf[n++] = (struct pollfd){ .fd = out.fd, .events = POLLIN };
		if (err.fd >= 0)
			pf[n++] = (struct pollfd){ .fd = err.fd, .events = POLLIN };
		if (pin[1] >= 0)
			pf[n++] = (struct pollfd){ .fd = pin[1], .events = POLLOUT };
		if (poll(pf, n, (int)left) < 0 && errno != EINTR)
			ck_abort_msg("poll: %s", strerror(errno));
		for (nfds_t i = 0; i < n; i++) {
			if (!pf[i].revents)
				continue;
			if (pf[i].fd == out.fd)
				sink_read(&out);
			else if (pf[i].fd == err.fd)
				sink_read(&err);
			else if (pf[i].fd == pin[1]) {
				ssize_t w = write(pin[1], inp + in_off, in_len - in_off);

				if (w > 0)
					in_off += (size_t)w;
				/* EPIPE: the command stopped reading; fine. */
				if ((w < 0 && errno != EAGAIN && errno != EINTR) ||
				    in_off == in_len) {
					close(pin[1]);
					pin[1] = -1;
				}
			}
		}
	}
	if (pin[1] >= 0)
		close(pin[1]);
	{
		int64_t left = until - mono_ms();

		res->status = cli_wait(pid, left > 1000 ? (int)(left / 1000) : 1);
	}
	res->out = out.buf ? out.buf : calloc(1, 1);
	res->out_len = out.len;
	res->err = err.buf ? err.buf : calloc(1, 1);
	res->err_len = err.len;
}

void cli_run(const char *const *argv, const void *in, size_t in_len,
	     int limit_s, struct cli_result *res)
{
	cli_run_env(argv, NULL, in, in_len, limit_s, res);
}

void cli_free(struct cli_result *res)
{
	free(res->out);
	free(res->err);
	memset(res, 0, sizeof(*res));
}

pid_t cli_spawn(const char *const *argv, int in_fd, int out_fd, int err_fd)
{
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);

		dup2(in_fd >= 0 ? in_fd : null, STDIN_FILENO);
		dup2(out_fd >= 0 ? out_fd : null, STDOUT_FILENO);
		dup2(err_fd >= 0 ? err_fd : null, STDERR_FILENO);
		child_exec(argv, NULL);
	}
	return pid;
}

int cli_wait(pid_t pid, int limit_s)
{
	int64_t until = mono_ms() + (int64_t)limit_s * 1000;
	sigset_t chld, old;
	int status, ret;

	/* Wait for SIGCHLD, 100 ms at a time, rather than block in waitpid():
	 * a hung child must fail the test, not hang it.  SIGCHLD is blocked
	 * (so that it stays pending) only in here: commands started later
	 * must not inherit a blocked SIGCHLD. */
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, &old);
	for (;;) {
		struct timespec ts = { 0, 100000000 };
		pid_t w = waitpid(pid, &status, WNOHANG);

		if (w == pid) {
			ret = decode(status);
			break;
		}
		ck_assert_int_eq(w, 0);
		if (mono_ms() > until) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			sigprocmask(SIG_SETMASK, &old, NULL);
			ck_abort_msg("pid %d did not exit within %d s", (int)pid, limit_s);
		}
		sigtimedwait(&chld, NULL, &ts);
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	return ret;
}

void cli_daemon_start(struct cli_daemon *d, const char *const *extra)
{
	const char *argv[32] = { CLI_DAEMON_PATH, "--socket", d->sock,
				 "--log-level", "debug", "--ready-fd" };
	char fdbuf[16], buf[16];
	int p[2], logfd, i = 7;
	ssize_t n;

	snprintf(d->dir, sizeof(d->dir), "%s/rbus-cli-XXXXXX", th_tmpdir());
	ck_assert_ptr_nonnull(mkdtemp(d->dir));
	ck_assert_int_eq(chmod(d->dir, 0755), 0);
	snprintf(d->sock, sizeof(d->sock), "%s/d.sock", d->dir);
	snprintf(d->log, sizeof(d->log), "%s/d.log", d->dir);
	argv[2] = d->sock;
	ck_assert_int_eq(pipe(p), 0);  /* the write end is inherited */
	snprintf(fdbuf, sizeof(fdbuf), "%d", p[1]);
	argv[6] = fdbuf;
	for (; extra && *extra && i < 31; extra++)
		argv[i++] = *extra;
	argv[i] = NULL;
	logfd = open(d->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	ck_assert_int_ge(logfd, 0);
	d->pid = fork();
	ck_assert_int_ge(d->pid, 0);
	if (d->pid == 0) {
		close(p[0]);
		dup2(logfd, STDERR_FILENO);
		child_exec(argv, NULL);
	}
	close(p[1]);
	close(logfd);
	/* Bounded: a daemon that neither says "ready" nor exits fails the test. */
	n = -1;
	if (poll(&(struct pollfd){ .fd = p[0], .events = POLLIN }, 1, 20000) == 1)
		n = read(p[0], buf, sizeof(buf));
	close(p[0]);
	if (n != 6 || memcmp(buf, "ready\n", 6)) {
		char *log = cli_slurp(d->log, NULL);

		ck_abort_msg("ringbusd did not start; its log:\n%s", log);
	}
}

void cli_daemon_stop(struct cli_daemon *d)
{
	int status;
	char path[128];

	if (d->pid <= 0)
		return;
	kill(d->pid, SIGTERM);
	ck_assert_int_eq(waitpid(d->pid, &status, 0), d->pid);
	d->pid = 0;
	if (status) {
		char *log = cli_slurp(d->log, NULL);

		ck_abort_msg("ringbusd exited with status 0x%x on SIGTERM; its log:\n%s",
			     status, log);
	}
	unlink(d->log);
	snprintf(path, sizeof(path), "%s/d.sock.lock", d->dir);
	unlink(path);
	rmdir(d->dir);
}

void cli_usage_error(const char *const *argv, const char *says, const char *cmd)
{
	struct cli_result r;
	char hint[64], line[256] = "";

	for (const char *const *a = argv + 1; *a && strlen(line) < 200; a++)
		snprintf(line + strlen(line), sizeof(line) - strlen(line), " %s", *a);
	if (cmd)
		snprintf(hint, sizeof(hint), "Try 'ringbus %s --help'.", cmd);
	else
		snprintf(hint, sizeof(hint), "Try 'ringbus --help'.");
	cli_run(argv, NULL, 0, 30, &r);
	ck_assert_msg(r.status == 2, "ringbus%s: exit %d, want 2; stderr:\n%s", line,
		      r.status, r.err);
	ck_assert_msg(cli_has(r.err, says), "ringbus%s: stderr lacks \"%s\":\n%s", line,
		      says, r.err);
	ck_assert_msg(cli_has(r.err, hint), "ringbus%s: no \"%s\":\n%s", line, hint, r.err);
	ck_assert_msg(r.out_len == 0, "ringbus%s: wrote to stdout:\n%s", line, r.out);
	cli_free(&r);
}

char *cli_slurp(const char *path, size_t *len)
{
	struct sink s = { .fd = open(path, O_RDONLY | O_CLOEXEC) };

	if (s.fd < 0)
		return strdup("");
	while (s.fd >= 0)
		sink_read(&s);
	if (len)
		*len = s.len;
	return s.buf ? s.buf : calloc(1, 1);
}

bool cli_has(const char *hay, const char *needle)
{
	return hay && strstr(hay, needle) != NULL;
}

/* ---- a strict JSON checker ------------------------------------------------
 * A recursive descent over RFC 8259's grammar that only says yes or no: the
 * tests look up values by key themselves, and need to know that what they
 * look in is JSON a parser would take. */

struct json_in {
	const char *s, *p;
	const char *err;
	int depth;
};

static bool json_fail(struct json_in *in, const char *what)
{
	if (!in->err)
		in->err = what;
	return false;
}

static void json_ws(struct json_in *in, bool newline_ok)
{
	while (*in->p == ' ' || *in->p == '\t' || *in->p == '\r' ||
	       (newline_ok && *in->p == '\n'))
		in->p++;
}

static bool json_value(struct json_in *in, bool nl);

/* The UTF-8 sequence at in->p (a lead byte >= 0x80): leaves in->p on its
 * last byte. */
static bool json_utf8(struct json_in *in)
{
	const unsigned char *u = (const unsigned char *)in->p;
	unsigned n, cp;

	if (u[0] >= 0xc2 && u[0] <= 0xdf)
		n = 1, cp = u[0] & 0x1f;
	else if (u[0] >= 0xe0 && u[0] <= 0xef)
		n = 2, cp = u[0] & 0x0f;
	else if (u[0] >= 0xf0 && u[0] <= 0xf4)
		n = 3, cp = u[0] & 0x07;
	else
		return json_fail(in, "a byte that starts no UTF-8 sequence");
	for (unsigned i = 1; i <= n; i++) {
		if ((u[i] & 0xc0) != 0x80)  /* a NUL ends it here too */
			return json_fail(in, "a UTF-8 sequence cut short");
		cp = cp << 6 | (u[i] & 0x3f);
	}
	if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)))
		return json_fail(in, "an overlong or out-of-range UTF-8 sequence");
	if (cp >= 0xd800 && cp <= 0xdfff)
		return json_fail(in, "a UTF-16 surrogate in UTF-8");
	in->p += n;
	return true;
}

static bool json_string(struct json_in *in)
{
	if (*in->p != '"')
		return json_fail(in, "a string expected");
	for (in->p++; *in->p != '"'; in->p++) {
		unsigned char c = (unsigned char)*in->p;

		if (c == 0)
			return json_fail(in, "the string does not end");
		if (c < 0x20)
			return json_fail(in, "a control character in a string");
		if (c >= 0x80) {
			if (!json_utf8(in))
				return false;
			continue;
		}
		if (c != '\\')
			continue;
		c = (unsigned char)*++in->p;
		if (c == 'u') {
			for (int i = 0; i < 4; i++)
				if (!isxdigit((unsigned char)*++in->p))
					return json_fail(in, "a bad \\u escape");
		} else if (!strchr("\"\\/bfnrt", c) || c == 0) {
			return json_fail(in, "a bad escape");
		}
	}
	in->p++;
	return true;
}

static bool json_number(struct json_in *in)
{
	if (*in->p == '-')
		in->p++;
	if (*in->p == '0')
		in->p++;
	else if (*in->p >= '1' && *in->p <= '9')
		while (isdigit((unsigned char)*in->p))
			in->p++;
	else
		return json_fail(in, "a value expected");
	if (*in->p == '.') {
		if (!isdigit((unsigned char)*++in->p))
			return json_fail(in, "a digit expected after the point");
		while (isdigit((unsigned char)*in->p))
			in->p++;
	}
	if (*in->p == 'e' || *in->p == 'E') {
		in->p++;
		if (*in->p == '+' || *in->p == '-')
			in->p++;
		if (!isdigit((unsigned char)*in->p))
			return json_fail(in, "a digit expected in the exponent");
		while (isdigit((unsigned char)*in->p))
			in->p++;
	}
	return true;
}

/* An object or array; nl: newlines count as white space inside. */
static bool json_compound(struct json_in *in, bool nl)
{
	const char close = *in->p == '{' ? '}' : ']';
	bool obj = close == '}';

	if (++in->depth > 64)
		return json_fail(in, "nested too deep");
	in->p++;
	json_ws(in, nl);
	if (*in->p == close) {
		in->p++;
		in->depth--;
		return true;
	}
	for (;;) {
		if (obj) {
			if (!json_string(in))
				return false;
			json_ws(in, nl);
			if (*in->p != ':')
				return json_fail(in, "':' expected after a key");
			in->p++;
			json_ws(in, nl);
		}
		if (!json_value(in, nl))
			return false;
		json_ws(in, nl);
		if (*in->p == ',') {
			in->p++;
			json_ws(in, nl);
			continue;
		}
		if (*in->p != close)
			return json_fail(in, obj ? "',' or '}' expected" : "',' or ']' expected");
		in->p++;
		in->depth--;
		return true;
	}
}

static bool json_value(struct json_in *in, bool nl)
{
	static const char *const words[] = { "true", "false", "null" };

	if (*in->p == '{' || *in->p == '[')
		return json_compound(in, nl);
	if (*in->p == '"')
		return json_string(in);
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (!strncmp(in->p, words[i], strlen(words[i]))) {
			in->p += strlen(words[i]);
			return true;
		}
	return json_number(in);
}

bool cli_json_valid(const char *s, bool lines, char *why, size_t n)
{
	struct json_in in = { .s = s, .p = s };
	bool ok;

	do {
		json_ws(&in, false);
		ok = json_value(&in, !lines);
		if (ok) {
			json_ws(&in, false);
			if (*in.p != '\n')
				ok = json_fail(&in, "a newline expected after the value");
			else
				in.p++;
		}
	} while (ok && lines && *in.p);
	if (ok && *in.p)
		ok = json_fail(&in, "more after the value");
	if (!ok && why)
		snprintf(why, n, "%s at byte %zu", in.err, (size_t)(in.p - s));
	return ok;
}

void cli_assert_json(const char *s, size_t len, bool lines)
{
	char why[128];

	ck_assert_msg(strlen(s) == len, "a NUL byte in the output at byte %zu of %zu:\n%.4000s",
		      strlen(s), len, s);
	ck_assert_msg(cli_json_valid(s, lines, why, sizeof(why)), "not %s: %s:\n%.4000s",
		      lines ? "JSON Lines" : "one JSON value", why, s);
}
