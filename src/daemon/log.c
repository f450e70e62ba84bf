/* SPDX-License-Identifier: MIT */
/*
 * log.c - "ringbusd: LEVEL: message" lines on stderr.
 *
 * No timestamps: under systemd the journal adds them.  Each line goes out
 * in one write(2), so lines of the two threads never interleave.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ringbusd.h"

#define LINE_MAX_BYTES 1024

/* Warnings about clients: a burst of REFUSED_BURST lines, then
 * REFUSED_RATE a second, so that a client flooding malformed requests
 * cannot flood the journal too. */
#define REFUSED_BURST 100
#define REFUSED_RATE  10

enum rbusd_level rbusd_log_level = LVL_INFO;

static const char *const level_names[] = {
	[LVL_ERROR] = "error",
	[LVL_WARN] = "warn",
	[LVL_INFO] = "info",
	[LVL_DEBUG] = "debug",
};

int rbusd_log_parse_level(const char *s, enum rbusd_level *out)
{
	for (unsigned i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcmp(s, level_names[i]) == 0) {
			*out = (enum rbusd_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

static __attribute__((format(printf, 2, 0)))
void log_line(enum rbusd_level level, const char *fmt, va_list ap)
{
	char line[LINE_MAX_BYTES];
	int n, m;
	int saved = errno;

	n = snprintf(line, sizeof(line), "ringbusd: %s: ", level_names[level]);
	m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	if (m < 0)
		m = 0;
	n += m;
	if ((size_t)n > sizeof(line) - 2)
		n = sizeof(line) - 2;   /* truncated: keep room for the newline */
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, (size_t)n) < 0) {
		/* Nowhere left to report it. */
	}
	errno = saved;
}

void rbusd_log(enum rbusd_level level, const char *fmt, ...)
{
	va_list ap;

	if (level > rbusd_log_level)
		return;
	va_start(ap, fmt);
	log_line(level, fmt, ap);
	va_end(ap);
}

static pthread_mutex_t refused_lock = PTHREAD_MUTEX_INITIALIZER;
static int64_t refused_credit_ms = REFUSED_BURST * 1000; /* lines * 1000 */
static int64_t refused_last_ms;
static unsigned long refused_dropped;

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Take one line's credit from the bucket; returns the lines suppressed
 * since the last that passed (+1), or 0 if this one is suppressed too. */
static unsigned long refused_take(void)
{
	int64_t now = now_ms();
	unsigned long passed = 0;

	pthread_mutex_lock(&refused_lock);
	refused_credit_ms += (now - refused_last_ms) * REFUSED_RATE;
	if (refused_credit_ms > REFUSED_BURST * 1000)
		refused_credit_ms = REFUSED_BURST * 1000;
	refused_last_ms = now;
	if (refused_credit_ms >= 1000) {
		refused_credit_ms -= 1000;
		passed = refused_dropped + 1;
		refused_dropped = 0;
	} else {
		refused_dropped++;
	}
	pthread_mutex_unlock(&refused_lock);
	return passed;
}

void rbusd_log_refused(const char *fmt, ...)
{
	unsigned long passed;
	va_list ap;

	if (LVL_WARN > rbusd_log_level)
		return;
	passed = refused_take();
	if (!passed)
		return;
	if (passed > 1)
		log_warn("%lu warnings about clients suppressed", passed - 1);
	va_start(ap, fmt);
	log_line(LVL_WARN, fmt, ap);
	va_end(ap);
}
