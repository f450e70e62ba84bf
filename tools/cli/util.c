/* SPDX-License-Identifier: MIT */
/*
 * util.c - the pieces the subcommands of ringbus(1) share (cli.h).
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE  /* sched_setaffinity, CPU_SET */
#endif

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

const char *rb_prog = "ringbus";
const char *rb_cmd;

static void vmsg(const char *fmt, va_list ap)
{
	/* One fprintf per part; stderr is unbuffered, so build the line first
	 * to keep it whole when several processes write. */
	char line[1024];
	int n;

	if (rb_cmd)
		n = snprintf(line, sizeof(line), "%s %s: ", rb_prog, rb_cmd);
	else
		n = snprintf(line, sizeof(line), "%s: ", rb_prog);
	if (n < 0 || (size_t)n >= sizeof(line))
		n = 0;
	vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	strcat(line, "\n");
	fputs(line, stderr);
}

void rb_err(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vmsg(fmt, ap);
	va_end(ap);
}

int rb_usage_err(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vmsg(fmt, ap);
	va_end(ap);
	if (rb_cmd)
		fprintf(stderr, "Try '%s %s --help'.\n", rb_prog, rb_cmd);
	else
		fprintf(stderr, "Try '%s --help'.\n", rb_prog);
	return RB_EXIT_USAGE;
}

int rb_broker_exit(int err)
{
	switch (err) {
	case 0:
		return RB_EXIT_OK;
	case -ENOENT:
		return RB_EXIT_NOCHAN;
	case -EACCES:
	case -EPERM:
		return RB_EXIT_PERM;
	case -ECONNREFUSED:
	case -ECONNRESET:
	case -ETIMEDOUT:   /* the broker did not answer: not our --timeout */
	case -EPROTO:
		return RB_EXIT_NODAEMON;
	default:
		return RB_EXIT_FAIL;
	}
}

/* ---- option values -------------------------------------------------------- */

int rb_bad_option(const struct option *longopts, const char *arg)
{
	const char *eq = strchr(arg, '=');

	/* "-x", or "-ab" whose "b" is unknown: getopt put it in optopt. */
	if (strncmp(arg, "--", 2) && optopt > ' ' && optopt < 127)
		return rb_usage_err("unknown option '-%c'", optopt);
	if (!strncmp(arg, "--", 2) && eq)
		for (const struct option *o = longopts; o->name; o++)
			if (o->has_arg == no_argument &&
			    strlen(o->name) == (size_t)(eq - arg - 2) &&
			    !strncmp(o->name, arg + 2, (size_t)(eq - arg - 2)))
				return rb_usage_err("option '--%s' takes no value", o->name);
	return rb_usage_err("unknown option '%s'", arg);
}

int rb_parse_u64(const char *opt, const char *s, uint64_t min, uint64_t max,
		 uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	if (!*s || *s == '-' || isspace((unsigned char)*s))
		goto bad;
	/* Decimal, or hexadecimal after 0x: never octal ("08", "010"). */
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		v = strtoull(s + 2, &end, 16);
		if (end == s + 2 || !isxdigit((unsigned char)s[2]))
			goto bad;
	} else {
		v = strtoull(s, &end, 10);
	}
	if (errno || *end)
		goto bad;
	if (v < min || v > max) {
		rb_usage_err("%s: %s is out of range [%" PRIu64 ", %" PRIu64 "]",
			     opt, s, min, max);
		return -1;
	}
	*out = v;
	return 0;
bad:
	rb_usage_err("%s: '%s' is not a number", opt, s);
	return -1;
}

int rb_parse_pow2(const char *opt, const char *s, uint64_t min, uint64_t max,
		  uint64_t *out)
{
	uint64_t v;

	if (rb_parse_u64(opt, s, min, max, &v))
		return -1;
	if (v & (v - 1)) {
		rb_usage_err("%s: %s is not a power of two", opt, s);
		return -1;
	}
	*out = v;
	return 0;
}

int rb_parse_size(const char *opt, const char *s, uint64_t min, uint64_t max,
		  uint64_t *out)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	errno = 0;
	if (!*s || *s == '-' || isspace((unsigned char)*s))
		goto bad;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		goto bad;
	switch (*end) {
	case 0:
		break;
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	default:
		goto bad;
	}
	if (*end == 'i' && shift)  /* "KiB" */
		end++;
	if (*end == 'B' || *end == 'b')
		end++;
	if (*end)
		goto bad;
	if (shift && v > (UINT64_MAX >> shift))
		v = UINT64_MAX;
	else
		v <<= shift;
	if (v < min || v > max) {
		rb_usage_err("%s: %s is out of range [%" PRIu64 ", %" PRIu64 "] bytes",
			     opt, s, min, max);
		return -1;
	}
	*out = v;
	return 0;
bad:
	rb_usage_err("%s: '%s' is not a size (bytes, or with a k, M or G suffix)", opt, s);
	return -1;
}

int rb_parse_seconds(const char *opt, const char *s, int64_t min_ns,
		     int64_t *out_ns)
{
	char *end;
	double v, unit = 1e9;

	errno = 0;
	if (!*s || isspace((unsigned char)*s))
		goto bad;
	v = strtod(s, &end);
	if (errno || end == s || !isfinite(v) || v < 0)
		goto bad;
	if (!strcmp(end, "ms"))
		unit = 1e6;
	else if (!strcmp(end, "us"))
		unit = 1e3;
	else if (!strcmp(end, "s") || !*end)
		unit = 1e9;
	else if (!strcmp(end, "m"))
		unit = 60e9;
	else
		goto bad;
	v *= unit;
	if (v > 365.0 * 86400e9) {
		rb_usage_err("%s: %s is longer than a year", opt, s);
		return -1;
	}
	if ((int64_t)v < min_ns) {
		rb_usage_err("%s: %s is too short (at least %.3f s)", opt, s,
			     (double)min_ns / 1e9);
		return -1;
	}
	*out_ns = (int64_t)v;
	return 0;
bad:
	rb_usage_err("%s: '%s' is not a duration (seconds, or with ms, s or m)", opt, s);
	return -1;
}

int rb_parse_cpu(const char *opt, const char *s, int *out)
{
	uint64_t v;
	cpu_set_t set;

	if (rb_parse_u64(opt, s, 0, CPU_SETSIZE - 1, &v))
		return -1;
	if (sched_getaffinity(0, sizeof(set), &set) == 0 && !CPU_ISSET((int)v, &set)) {
		rb_usage_err("%s: this process may not run on CPU %s", opt, s);
		return -1;
	}
	*out = (int)v;
	return 0;
}

int rb_parse_kind(const char *opt, const char *s, enum rbus_kind *out)
{
	if (!strcasecmp(s, "spsc"))
		*out = RBUS_KIND_SPSC;
	else if (!strcasecmp(s, "mpmc"))
		*out = RBUS_KIND_MPMC;
	else
		return rb_usage_err("%s: '%s' is not a kind (spsc or mpmc)", opt, s), -1;
	return 0;
}

int rb_parse_wakeup(const char *opt, const char *s, uint32_t *out)
{
	if (!strcasecmp(s, "futex"))
		*out = RBUS_WAKE_FUTEX;
	else if (!strcasecmp(s, "eventfd"))
		*out = RBUS_WAKE_EVENTFD;
	else
		return rb_usage_err("%s: '%s' is not a wakeup backend (futex or eventfd)",
				    opt, s), -1;
	return 0;
}

const char *rb_kind_name(enum rbus_kind k)
{
	return k == RBUS_KIND_SPSC ? "spsc" : k == RBUS_KIND_MPMC ? "mpmc" : "?";
}

const char *rb_wakeup_name(uint32_t w)
{
	return w == RBUS_WAKE_FUTEX ? "futex" : w == RBUS_WAKE_EVENTFD ? "eventfd" : "?";
}

int rb_check_name(const char *name)
{
	size_t n = strlen(name);
	bool ok = n >= 1 && n <= RBUS_NAME_MAX && name[0] != '.' && name[0] != '-';

	for (size_t i = 0; ok && i < n; i++)
		ok = isalnum((unsigned char)name[i]) || strchr("._-", name[i]);
	if (ok)
		return 0;
	rb_usage_err("'%s' is not a channel name (1 to %u bytes of A-Z a-z 0-9 . _ -, "
		     "not starting with . or -)", name, RBUS_NAME_MAX);
	return -1;
}

int rb_connect(const char *socket, struct rbus_broker **out)
{
	char path[128];
	int r = rbus_broker_socket_path(socket, path, sizeof(path));

	if (r < 0) {
		rb_err("broker socket %s: %s", socket ? socket : "(default)",
		       rbus_strerror(r));
		return RB_EXIT_USAGE;
	}
	r = rbus_broker_connect(path, out);
	if (r == 0)
		return RB_EXIT_OK;
	switch (r) {
	case -ENOENT:
	case -ECONNREFUSED:
		rb_err("no broker at %s: %s (is ringbusd running? see --socket)",
		       path, rbus_strerror(r));
		return RB_EXIT_NODAEMON;
	case -EACCES:
		rb_err("broker at %s: %s", path, rbus_strerror(r));
		return RB_EXIT_PERM;
	default:
		rb_err("broker at %s: %s", path, rbus_strerror(r));
		return RB_EXIT_NODAEMON;
	}
}

/* ---- time and CPUs ---------------------------------------------------------- */

uint64_t rb_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int rb_pin(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof(set), &set) ? -errno : 0;
}

int rb_allowed_cpus(int *cpus, int n)
{
	cpu_set_t set;
	int k = 0;

	if (sched_getaffinity(0, sizeof(set), &set))
		return 0;
	for (int c = 0; c < CPU_SETSIZE && k < n; c++)
		if (CPU_ISSET(c, &set))
			cpus[k++] = c;
	return k;
}

/* ---- CRC-32C ---------------------------------------------------------------
 * Reflected polynomial 0x82F63B78, one table lookup per byte.  The table is
 * built on first use; building it twice (two threads at once) writes the
 * same values. */
static uint32_t crc32c_table[256];
static volatile int crc32c_ready;

uint32_t rb_crc32c(uint32_t crc, const void *buf, size_t len)
{
	const unsigned char *p = buf;

	if (!crc32c_ready) {
		for (uint32_t i = 0; i < 256; i++) {
			uint32_t c = i;

			for (int k = 0; k < 8; k++)
				c = c & 1 ? 0x82F63B78u ^ (c >> 1) : c >> 1;
			crc32c_table[i] = c;
		}
		__atomic_store_n(&crc32c_ready, 1, __ATOMIC_RELEASE);
	}
	crc = ~crc;
	while (len--)
		crc = crc32c_table[(crc ^ *p++) & 0xFF] ^ (crc >> 8);
	return ~crc;
}

/* ---- JSON ------------------------------------------------------------------- */

void rb_json_init(struct rb_json *j, FILE *f)
{
	memset(j, 0, sizeof(*j));
	j->f = f;
	j->first[0] = true;
}

static void json_key(struct rb_json *j, const char *key)
{
	if (!j->first[j->depth])
		fputc(',', j->f);
	j->first[j->depth] = false;
	if (key) {
		fputc('"', j->f);
		for (const char *p = key; *p; p++)
			fputc(*p, j->f);  /* keys are ours: plain ASCII */
		fputs("\":", j->f);
	}
}

void rb_json_open(struct rb_json *j, const char *key, char bracket)
{
	json_key(j, key);
	fputc(bracket, j->f);
	if (j->depth + 1 < (int)(sizeof(j->first) / sizeof(j->first[0])))
		j->depth++;
	j->first[j->depth] = true;
}

void rb_json_close(struct rb_json *j, char bracket)
{
	fputc(bracket, j->f);
	if (j->depth > 0)
		j->depth--;
}

/* Length of the valid UTF-8 sequence at @p (1 to 4), or 0 if it is not one
 * (overlong forms, surrogates and values past U+10FFFF are not). */
static size_t utf8_len(const unsigned char *p)
{
	size_t n;
	uint32_t c;

	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xC2 && p[0] <= 0xDF)
		n = 2, c = p[0] & 0x1F;
	else if (p[0] >= 0xE0 && p[0] <= 0xEF)
		n = 3, c = p[0] & 0x0F;
	else if (p[0] >= 0xF0 && p[0] <= 0xF4)
		n = 4, c = p[0] & 0x07;
	else
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xC0) != 0x80)
			return 0;  /* also stops at the NUL */
		c = c << 6 | (p[i] & 0x3F);
	}
	if ((n == 3 && c < 0x800) || (n == 4 && (c < 0x10000 || c > 0x10FFFF)) ||
	    (c >= 0xD800 && c <= 0xDFFF))
		return 0;
	return n;
}

void rb_json_str(struct rb_json *j, const char *key, const char *v)
{
	json_key(j, key);
	fputc('"', j->f);
	for (const unsigned char *p = (const unsigned char *)v; *p;) {
		size_t n = utf8_len(p);

		if (*p == '"' || *p == '\\')
			fprintf(j->f, "\\%c", *p);
		else if (*p < 0x20 || *p == 0x7f)
			fprintf(j->f, "\\u%04x", *p);
		else if (n == 0)
			fputs("\\ufffd", j->f);  /* not UTF-8: the replacement character */
		else
			fwrite(p, 1, n, j->f);
		p += n ? n : 1;
	}
	fputc('"', j->f);
}

void rb_json_u64(struct rb_json *j, const char *key, uint64_t v)
{
	json_key(j, key);
	fprintf(j->f, "%" PRIu64, v);
}

void rb_json_i64(struct rb_json *j, const char *key, int64_t v)
{
	json_key(j, key);
	fprintf(j->f, "%" PRId64, v);
}

void rb_json_f64(struct rb_json *j, const char *key, double v)
{
	json_key(j, key);
	if (isfinite(v))
		fprintf(j->f, "%.6g", v);
	else
		fputs("null", j->f);
}

void rb_json_bool(struct rb_json *j, const char *key, bool v)
{
	json_key(j, key);
	fputs(v ? "true" : "false", j->f);
}

void rb_json_end(struct rb_json *j)
{
	fputc('\n', j->f);
	fflush(j->f);
}

/* ---- the live line ------------------------------------------------------------ */

void rb_live_init(struct rb_live *l, FILE *f)
{
	l->f = f;
	l->tty = isatty(fileno(f)) == 1;
	l->drawn = false;
}

void rb_live(struct rb_live *l, const char *fmt, ...)
{
	va_list ap;

	if (!l->tty)
		return;
	fputc('\r', l->f);
	va_start(ap, fmt);
	vfprintf(l->f, fmt, ap);
	va_end(ap);
	fputs("\033[K", l->f);
	fflush(l->f);
	l->drawn = true;
}

void rb_live_done(struct rb_live *l)
{
	if (l->drawn) {
		fputc('\n', l->f);
		fflush(l->f);
	}
	l->drawn = false;
}

/* ---- histogram ------------------------------------------------------------------ */

#define SUB_BITS 4
#define SUB      (1u << SUB_BITS)
#define MAX_BITS 40

static unsigned bucket_of(uint64_t ns)
{
	unsigned e;

	if (ns >= (UINT64_C(1) << MAX_BITS))
		ns = (UINT64_C(1) << MAX_BITS) - 1;
	if (ns < SUB)
		return (unsigned)ns;
	e = 63u - (unsigned)__builtin_clzll(ns);  /* ns in [2^e, 2^(e+1)) */
	return (e - SUB_BITS + 1) * SUB + (unsigned)((ns >> (e - SUB_BITS)) & (SUB - 1));
}

static uint64_t bucket_mid(unsigned b)
{
	unsigned e;
	uint64_t lo, width;

	if (b < SUB)
		return b;
	e = b / SUB + SUB_BITS - 1;
	width = UINT64_C(1) << (e - SUB_BITS);
	lo = (UINT64_C(1) << e) + (uint64_t)(b % SUB) * width;
	return lo + width / 2;
}

void rb_hist_add(struct rb_hist *h, uint64_t ns)
{
	h->b[bucket_of(ns)]++;
	h->n++;
	h->sum_ns += ns;
	if (ns > h->max_ns)
		h->max_ns = ns;
}

uint64_t rb_hist_pct(const struct rb_hist *h, double q)
{
	uint64_t rank, seen = 0;

	if (!h->n)
		return 0;
	if (q >= 1.0)
		return h->max_ns;
	rank = (uint64_t)ceil(q * (double)h->n);
	if (rank < 1)
		rank = 1;
	for (unsigned b = 0; b < RB_HIST_BUCKETS; b++) {
		seen += h->b[b];
		if (seen >= rank) {
			uint64_t mid = bucket_mid(b);

			return mid > h->max_ns ? h->max_ns : mid;
		}
	}
	return h->max_ns;
}

void rb_hist_merge(struct rb_hist *into, const struct rb_hist *from)
{
	for (unsigned b = 0; b < RB_HIST_BUCKETS; b++)
		into->b[b] += from->b[b];
	into->n += from->n;
	into->sum_ns += from->sum_ns;
	if (from->max_ns > into->max_ns)
		into->max_ns = from->max_ns;
}

const char *rb_fmt_ns(char *buf, size_t len, uint64_t ns)
{
	if (ns < 1000)
		snprintf(buf, len, "%" PRIu64 " ns", ns);
	else if (ns < 1000000)
		snprintf(buf, len, "%.1f us", (double)ns / 1e3);
	else if (ns < 1000000000)
		snprintf(buf, len, "%.2f ms", (double)ns / 1e6);
	else
		snprintf(buf, len, "%.2f s", (double)ns / 1e9);
	return buf;
}

const char *rb_fmt_count(char *buf, size_t len, double v)
{
	if (v >= 1e9)
		snprintf(buf, len, "%.2f G", v / 1e9);
	else if (v >= 1e6)
		snprintf(buf, len, "%.2f M", v / 1e6);
	else if (v >= 1e3)
		snprintf(buf, len, "%.1f k", v / 1e3);
	else
		snprintf(buf, len, "%.0f", v);
	return buf;
}

const char *rb_fmt_bytes(char *buf, size_t len, uint64_t bytes)
{
	if (bytes >= (UINT64_C(1) << 30))
		snprintf(buf, len, "%.2f GiB", (double)bytes / (double)(1u << 30));
	else if (bytes >= (1u << 20))
		snprintf(buf, len, "%.2f MiB", (double)bytes / (double)(1u << 20));
	else if (bytes >= (1u << 10))
		snprintf(buf, len, "%.1f KiB", (double)bytes / 1024.0);
	else
		snprintf(buf, len, "%" PRIu64 " B", bytes);
	return buf;
}
