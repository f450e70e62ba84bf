/* SPDX-License-Identifier: MIT */
/*
 * cli.h - what the subcommands of ringbus(1) share: exit codes, error
 * reporting, option parsing, the broker connection, JSON output, the live
 * progress line, CRC-32C and a latency histogram.
 *
 * Each subcommand is a function cmd_NAME(argc, argv) with argv[0] the
 * subcommand's name; it parses its own options with getopt_long and returns
 * the process's exit status.
 */
#ifndef RINGBUS_CLI_H
#define RINGBUS_CLI_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <ringbus.h>

/* Exit statuses, the same for every subcommand (ringbus(1), EXIT STATUS). */
enum {
	RB_EXIT_OK = 0,        /* done, and everything verified */
	RB_EXIT_FAIL = 1,      /* an operation failed, or a check found a fault */
	RB_EXIT_USAGE = 2,     /* bad command line */
	RB_EXIT_NODAEMON = 3,  /* no broker to talk to (or it hung up) */
	RB_EXIT_NOCHAN = 4,    /* no such channel */
	RB_EXIT_PERM = 5,      /* the broker refused: permission */
	RB_EXIT_TIMEOUT = 6,   /* --timeout ran out */
};

/* The program's name in messages ("ringbus"), and the subcommand's. */
extern const char *rb_prog;
extern const char *rb_cmd;

/* "ringbus CMD: MESSAGE\n" on stderr. */
void rb_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The same, and "Try 'ringbus CMD --help'."; returns RB_EXIT_USAGE. */
int rb_usage_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

struct option;
/* After getopt_long() returned '?' for @arg (argv[optind - 1]): say what
 * was wrong with it ("unknown option '-x'", "option '--json' takes no
 * value", ...) and return RB_EXIT_USAGE. */
int rb_bad_option(const struct option *longopts, const char *arg);

/* The exit status for a negative errno of a broker call: -ENOENT 4, -EACCES
 * and -EPERM 5; no broker, or one that hung up, timed out or broke the
 * protocol, 3 (not a --timeout); anything else 1. */
int rb_broker_exit(int err);

/*
 * Option values.  Each returns 0, or prints an error naming @opt and the
 * value and returns -1.
 *   rb_parse_u64:      a decimal (never octal) or 0x number in [min, max].
 *   rb_parse_size:     bytes, with an optional k/K, m/M, g/G suffix (powers
 *                      of 1024), in [min, max].
 *   rb_parse_seconds:  a duration in seconds: "5", "0.5", "250ms", "2s",
 *                      "1m", at least @min_ns, in nanoseconds.
 *   rb_parse_cpu:      a CPU number the process may run on.
 */
int rb_parse_u64(const char *opt, const char *s, uint64_t min, uint64_t max,
		 uint64_t *out);
/* As rb_parse_u64, and a power of two (a ring's capacity). */
int rb_parse_pow2(const char *opt, const char *s, uint64_t min, uint64_t max,
		  uint64_t *out);
int rb_parse_size(const char *opt, const char *s, uint64_t min, uint64_t max,
		  uint64_t *out);
int rb_parse_seconds(const char *opt, const char *s, int64_t min_ns,
		     int64_t *out_ns);
int rb_parse_cpu(const char *opt, const char *s, int *out);
/* "spsc" / "mpmc"; "futex" / "eventfd". */
int rb_parse_kind(const char *opt, const char *s, enum rbus_kind *out);
int rb_parse_wakeup(const char *opt, const char *s, uint32_t *out);

const char *rb_kind_name(enum rbus_kind k);
const char *rb_wakeup_name(uint32_t w);

/* Is @name a channel name (broker.h: 1 to 63 bytes of [A-Za-z0-9._-], not
 * starting with '.' or '-')?  Returns 0, or prints why not and returns -1. */
int rb_check_name(const char *name);

/* Connect to the broker at @socket (NULL: the usual lookup); on failure
 * print why, naming the socket, and return the exit status (> 0). */
int rb_connect(const char *socket, struct rbus_broker **out);

/* CLOCK_MONOTONIC in ns. */
uint64_t rb_now_ns(void);
/* Pin the calling process to @cpu; returns 0 or -errno. */
int rb_pin(int cpu);
/* The first @n CPUs this process may run on, in @cpus; returns how many
 * there are (may be fewer than @n). */
int rb_allowed_cpus(int *cpus, int n);

/* CRC-32C (Castagnoli), as used by iSCSI and ext4: rb_crc32c(0, buf, len). */
uint32_t rb_crc32c(uint32_t crc, const void *buf, size_t len);

/* ---- JSON output ----------------------------------------------------------
 * A tiny writer: objects and arrays nest, commas are placed for you.
 *   struct rb_json j; rb_json_init(&j, stdout);
 *   rb_json_open(&j, NULL, '{'); rb_json_u64(&j, "n", 3); rb_json_close(&j, '}');
 *   rb_json_end(&j);      (the final newline) */
struct rb_json {
	FILE *f;
	int depth;
	bool first[16];
};
void rb_json_init(struct rb_json *j, FILE *f);
void rb_json_open(struct rb_json *j, const char *key, char bracket);
void rb_json_close(struct rb_json *j, char bracket);
void rb_json_str(struct rb_json *j, const char *key, const char *v);
void rb_json_u64(struct rb_json *j, const char *key, uint64_t v);
void rb_json_i64(struct rb_json *j, const char *key, int64_t v);
void rb_json_f64(struct rb_json *j, const char *key, double v);
void rb_json_bool(struct rb_json *j, const char *key, bool v);
void rb_json_end(struct rb_json *j);

/* ---- the live progress line -------------------------------------------
 * When @f is a terminal, rb_live() rewrites one line in place ("\r", the
 * text, erase to the end of the line); otherwise it does nothing, so that
 * logs and pipes get only the final summary.  rb_live_done() ends the line
 * (only if one was drawn). */
struct rb_live {
	FILE *f;
	bool tty, drawn;
};
void rb_live_init(struct rb_live *l, FILE *f);
void rb_live(struct rb_live *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void rb_live_done(struct rb_live *l);

/* ---- latency histogram ---------------------------------------------------
 * Log-linear buckets: below 16 ns one bucket per ns; above, each power of
 * two is split into 16 buckets, so a bucket is at most 6.25 % of its value
 * wide.  Values cap just below 2^40 ns (18 minutes).  Plain counters: one
 * writer; put it in MAP_SHARED memory to read it from another process
 * (figures read during a run are a hint). */
#define RB_HIST_BUCKETS ((40 - 4 + 1) * 16)
struct rb_hist {
	uint64_t n, max_ns, sum_ns;
	uint64_t b[RB_HIST_BUCKETS];
};
void rb_hist_add(struct rb_hist *h, uint64_t ns);
/* @q in [0, 1]; the middle of the bucket holding that quantile (max for 1). */
uint64_t rb_hist_pct(const struct rb_hist *h, double q);
/* @into += @from. */
void rb_hist_merge(struct rb_hist *into, const struct rb_hist *from);
/* "812 ns", "14.2 us", "3.10 ms", "1.20 s" into @buf. */
const char *rb_fmt_ns(char *buf, size_t len, uint64_t ns);
/* "1.23 M", "45.6 k" (a count), into @buf. */
const char *rb_fmt_count(char *buf, size_t len, double v);
/* "1.50 MiB" into @buf. */
const char *rb_fmt_bytes(char *buf, size_t len, uint64_t bytes);

/* ---- the subcommands ---------------------------------------------------- */
int cmd_demo(int argc, char **argv);
int cmd_ls(int argc, char **argv);
int cmd_stat(int argc, char **argv);
int cmd_pub(int argc, char **argv);
int cmd_sub(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_stress(int argc, char **argv);

#endif /* RINGBUS_CLI_H */
