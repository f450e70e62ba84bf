/* SPDX-License-Identifier: MIT */
/*
 * cmd_stress.c - `ringbus stress`: a wakeup stress that verifies.
 *
 * Unlike stress-ng --futex or perf bench futex, which count operations,
 * every message and every generation is checked: lost, duplicated,
 * reordered, corrupt, and every wait is bounded, so that a lost wakeup shows
 * as a stall instead of a hang.  The engine is stress_engine.c; this file
 * parses the options and reports.
 */
#include "config.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "stress_engine.h"

#define DEFAULT_WAIT_NS  1000000000LL
#define DEFAULT_DURATION 10000000000LL
#define DEFAULT_WRAP     1000u

static void usage(FILE *f)
{
	fprintf(f,
"Usage: ringbus stress [OPTIONS]\n"
"\n"
"Stress the sleep/wake handshake of ringbus and verify every result: N producer\n"
"and M consumer processes on a fresh region (memfd, no broker), or N sleepers\n"
"on one futex word, with jitter injected into the race windows of the\n"
"handshake, bursts and pauses in the traffic, and optionally signal storms.\n"
"\n"
"Channel mode (the default):\n"
"      --kind spsc|mpmc       ring kind (default mpmc; spsc is 1 producer, 1 consumer)\n"
"      --producers N          producer processes, 1-64 (default 2; spsc 1)\n"
"      --consumers M          consumer processes, 1-64 (default 2; spsc 1)\n"
"      --wakeup futex|eventfd wakeup backend (default futex)\n"
"      --capacity N           slots, a power of two (default 64)\n"
"      --max-msg BYTES        largest message, 32 B-1 MiB (default 256); lengths\n"
"                             vary from 32 (the header) to BYTES\n"
"      --traffic bursts|steady|sparse|sparse-room\n"
"                             bursts: pauses up to 1.5 ms and yields (default);\n"
"                             steady: no pauses; sparse: each message followed by\n"
"                             a 50-500 us pause, one in four by 1.5 x the wait\n"
"                             timeout, so that a lost wakeup is not healed by the\n"
"                             next message; sparse-room: the same pauses in the\n"
"                             consumers after each message taken, so that\n"
"                             producers wait on a full ring\n"
"Sleepers mode:\n"
"      --sleepers N           N sleeper processes (1-4096) on one futex word; a\n"
"                             waker bumps a generation and wakes all, and waits\n"
"                             for every sleeper to see it before the next\n"
"Both modes:\n"
"      --duration SECONDS     how long (default 10 s; none when --count is given\n"
"                             alone); suffixes ms, s, m\n"
"      --count N              messages per producer, or generations, then stop\n"
"      --wait-timeout SECONDS the bound W of every wait (default 1 s, at least 50 ms)\n"
"      --jitter none|light|heavy\n"
"                             in the handshake's race windows (default light):\n"
"                             light: now and then a spin, yield or nap of up to\n"
"                             100 us; heavy: also 50-500 us naps before the\n"
"                             sleeper registers\n"
"      --wrap[=N]             start the futex words N below 2^32 (default %u), so\n"
"                             that the run crosses their wrap\n"
"      --signals              a signaller sends SIGUSR1 storms at every process\n"
"                             (half with SA_RESTART, half without and with\n"
"                             RBUS_CHANNEL_EINTR) and stops one now and then with\n"
"                             SIGSTOP for min(2 ms, W/20) before SIGCONT\n"
"      --stop-at-stall        end the run at the first stall\n"
"      --seed N               seed of every random choice (default: from the clock)\n"
"      --json                 print one JSON object instead of the summary\n"
"  -h, --help                 this text\n"
"\n"
"A STALL is a wait whose last sleep (not a 10 ms probe) ran out its own timer\n"
"although the work it waited for was over, the wake it owed included, more than\n"
"W/2 (in channel mode at most 500 ms) before that timer's deadline: a message\n"
"sent, room freed, a generation published, every acknowledgement in; and, in\n"
"channel mode, no other process that might owe the wake was busy since.  A\n"
"delayed process makes no stall; such waits are counted as excused.\n"
"\n"
"Exit status: 0 when there was no stall, lost, duplicated, reordered or corrupt\n"
"message (or generation) and no error; 1 otherwise (the summary says which);\n"
"2 bad usage.\n", DEFAULT_WRAP);
}

/* ---- the live line ------------------------------------------------------- */

struct live {
	struct rb_live l;
	bool sleepers;
	uint64_t last_ops;
	int64_t last_ns;
};

static void on_progress(void *arg, const struct rb_stress_result *r)
{
	struct live *lv = arg;
	char rate[32];
	double dt = (double)(r->elapsed_ns - lv->last_ns) / 1e9;

	rb_fmt_count(rate, sizeof(rate), dt > 0 ? (double)(r->ops - lv->last_ops) / dt : 0.0);
	lv->last_ops = r->ops;
	lv->last_ns = r->elapsed_ns;
	rb_live(&lv->l, "%6.1f s  %" PRIu64 " %s (%s/s)  sleeps %" PRIu64 "  wakes %" PRIu64
		"  stalls %" PRIu64 "  errors %" PRIu64,
		(double)r->elapsed_ns / 1e9, r->ops, lv->sleepers ? "generations" : "messages",
		rate, r->sleeps, r->wakes, r->stalls, r->errors);
}

/* ---- the report ----------------------------------------------------------- */

static const char *jitter_name(enum rb_stress_jitter j)
{
	return j == RB_STRESS_JITTER_NONE ? "none" : j == RB_STRESS_JITTER_HEAVY ? "heavy" : "light";
}

static const char *traffic_name(enum rb_stress_traffic t)
{
	return t == RB_STRESS_STEADY ? "steady" : t == RB_STRESS_SPARSE ? "sparse" :
	       t == RB_STRESS_SPARSE_ROOM ? "sparse-room" : "bursts";
}

static double per_s(uint64_t n, int64_t ns)
{
	return ns > 0 ? (double)n / ((double)ns / 1e9) : 0.0;
}

static void print_word(const char *name, const struct rb_stress_result *r, unsigned i)
{
	printf("%s %" PRIu32 " -> %" PRIu32 " (%" PRIu64 " bumps%s)", name, r->word_start[i],
	       r->word_end[i], r->word_moves[i], rb_stress_crossed(r, i) ? ", crossed 2^32" : "");
}

static void summary(const struct rb_stress_cfg *c, const struct rb_stress_result *r)
{
	char b1[32], b2[32], b3[32];
	bool ok = rb_stress_passed(r);
	double per_op = r->ops ? (double)r->wakes / (double)r->ops : 0.0;

	if (c->sleepers)
		printf("ringbus stress: sleepers mode, %u sleeper%s on one futex word, 1 waker\n",
		       c->sleepers, c->sleepers == 1 ? "" : "s");
	else
		printf("ringbus stress: channel mode, %s, %s, %u producer%s, %u consumer%s, "
		       "capacity %" PRIu32 ", max-msg %" PRIu32 " B, traffic %s\n",
		       rb_kind_name(c->kind), rb_wakeup_name(c->wakeup), c->nprod,
		       c->nprod == 1 ? "" : "s", c->ncons, c->ncons == 1 ? "" : "s", c->capacity,
		       c->max_msg, traffic_name(c->traffic));
	printf("  jitter %s, wait timeout %s", jitter_name(c->jitter),
	       rb_fmt_ns(b1, sizeof(b1), (uint64_t)c->wait_ns));
	if (c->duration_ns)
		printf(", duration %s", rb_fmt_ns(b2, sizeof(b2), (uint64_t)c->duration_ns));
	if (c->count)
		printf(", count %" PRIu64, c->count);
	printf(", seed %" PRIu64 "%s%s\n", c->seed, c->signals ? ", signals" : "",
	       c->stop_at_stall ? ", stop at stall" : "");
	if (c->sleepers) {
		printf("  ran %.2f s: %" PRIu64 " generations (%.1f/s), %" PRIu64 " published\n",
		       (double)r->elapsed_ns / 1e9, r->ops, per_s(r->ops, r->elapsed_ns), r->sent);
		printf("  sleeps %" PRIu64 ", wakes %" PRIu64 " (%.2f per generation), woke %" PRIu64
		       " sleepers, blind %" PRIu64 "\n", r->sleeps, r->wakes, per_op, r->woken,
		       r->blind);
		printf("  generation %" PRIu64 " -> %" PRIu64 ", ", r->gen_start, r->gen_end);
		print_word("futex word", r, 0);
		printf("\n");
	} else {
		printf("  ran %.2f s: %" PRIu64 " messages received (%s/s), %" PRIu64 " sent, %s\n",
		       (double)r->elapsed_ns / 1e9, r->ops,
		       rb_fmt_count(b2, sizeof(b2), per_s(r->ops, r->elapsed_ns)), r->sent,
		       rb_fmt_bytes(b3, sizeof(b3), r->bytes));
		printf("  sleeps %" PRIu64 ", wakes %" PRIu64 " (%.4f per message), blind %" PRIu64
		       "\n", r->sleeps, r->wakes, per_op, r->blind);
		printf("  futex words: ");
		print_word("data", r, 0);
		printf(", ");
		print_word("space", r, 1);
		printf("\n");
	}
	printf("  timeouts %" PRIu64 ", excused %" PRIu64 ", EINTR %" PRIu64 "; signals sent %"
	       PRIu64 ", handled %" PRIu64 ", stops %" PRIu64 "\n", r->timeouts, r->excused,
	       r->eintr, r->signals_sent, r->signals_handled, r->stops);
	printf("  stalls %" PRIu64 ", lost %" PRIu64 ", duplicated %" PRIu64 ", reordered %" PRIu64
	       ", corrupt %" PRIu64 ", errors %" PRIu64 "%s\n", r->stalls, r->lost, r->duplicated,
	       r->reordered, r->corrupt, r->errors, r->cut_short ? " (cut short)" : "");
	if (r->stalls)
		printf("  of the stalls, %s %" PRIu64 ", %s %" PRIu64 "\n",
		       c->sleepers ? "the waker's" : "producers'", r->send_stalls,
		       c->sleepers ? "sleepers'" : "consumers'", r->stalls - r->send_stalls);
	if (r->error[0])
		printf("  first error: %s\n", r->error);
	if (ok) {
		printf("PASS\n");
		return;
	}
	printf("FAIL:");
	{
		const struct { const char *what; uint64_t n; } f[] = {
			{ "stalls", r->stalls }, { "lost", r->lost },
			{ "duplicated", r->duplicated }, { "reordered", r->reordered },
			{ "corrupt", r->corrupt }, { "errors", r->errors },
		};
		const char *sep = " ";

		for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
			if (f[i].n) {
				printf("%s%s %" PRIu64, sep, f[i].what, f[i].n);
				sep = ", ";
			}
	}
	printf("\n");
}

static void json_word(struct rb_json *j, const char *name, const struct rb_stress_result *r,
		      unsigned i)
{
	rb_json_open(j, NULL, '{');
	rb_json_str(j, "name", name);
	rb_json_u64(j, "start", r->word_start[i]);
	rb_json_u64(j, "end", r->word_end[i]);
	rb_json_u64(j, "bumps", r->word_moves[i]);
	rb_json_bool(j, "crossed_2_32", rb_stress_crossed(r, i));
	rb_json_close(j, '}');
}

static void json(const struct rb_stress_cfg *c, const struct rb_stress_result *r)
{
	struct rb_json j;

	rb_json_init(&j, stdout);
	rb_json_open(&j, NULL, '{');
	rb_json_str(&j, "mode", c->sleepers ? "sleepers" : "channel");
	if (c->sleepers) {
		rb_json_u64(&j, "sleepers", c->sleepers);
	} else {
		rb_json_str(&j, "kind", rb_kind_name(c->kind));
		rb_json_str(&j, "wakeup", rb_wakeup_name(c->wakeup));
		rb_json_u64(&j, "producers", c->nprod);
		rb_json_u64(&j, "consumers", c->ncons);
		rb_json_u64(&j, "capacity", c->capacity);
		rb_json_u64(&j, "max_msg", c->max_msg);
		rb_json_str(&j, "traffic", traffic_name(c->traffic));
	}
	rb_json_str(&j, "jitter", jitter_name(c->jitter));
	rb_json_f64(&j, "wait_timeout_s", (double)c->wait_ns / 1e9);
	rb_json_f64(&j, "duration_s", (double)c->duration_ns / 1e9);
	rb_json_u64(&j, "count", c->count);
	rb_json_u64(&j, "seed", c->seed);
	rb_json_bool(&j, "signals", c->signals);
	rb_json_u64(&j, "wrap", c->wrap);
	rb_json_bool(&j, "stop_at_stall", c->stop_at_stall);

	rb_json_f64(&j, "elapsed_s", (double)r->elapsed_ns / 1e9);
	rb_json_u64(&j, "ops", r->ops);
	rb_json_f64(&j, "ops_per_s", per_s(r->ops, r->elapsed_ns));
	rb_json_u64(&j, "sent", r->sent);
	if (!c->sleepers)
		rb_json_u64(&j, "bytes", r->bytes);
	rb_json_u64(&j, "sleeps", r->sleeps);
	rb_json_u64(&j, "wakes", r->wakes);
	rb_json_f64(&j, "wakes_per_op", r->ops ? (double)r->wakes / (double)r->ops : 0.0);
	rb_json_u64(&j, "blind", r->blind);
	if (c->sleepers) {
		rb_json_u64(&j, "woken", r->woken);
		rb_json_u64(&j, "generation_start", r->gen_start);
		rb_json_u64(&j, "generation_end", r->gen_end);
	}
	rb_json_open(&j, "futex_words", '[');
	if (c->sleepers) {
		json_word(&j, "generation", r, 0);
	} else {
		json_word(&j, "data", r, 0);
		json_word(&j, "space", r, 1);
	}
	rb_json_close(&j, ']');
	rb_json_u64(&j, "timeouts", r->timeouts);
	rb_json_u64(&j, "excused", r->excused);
	rb_json_u64(&j, "eintr", r->eintr);
	rb_json_u64(&j, "signals_sent", r->signals_sent);
	rb_json_u64(&j, "signals_handled", r->signals_handled);
	rb_json_u64(&j, "stops", r->stops);
	rb_json_u64(&j, "stalls", r->stalls);
	rb_json_u64(&j, "send_stalls", r->send_stalls);
	rb_json_u64(&j, "lost", r->lost);
	rb_json_u64(&j, "duplicated", r->duplicated);
	rb_json_u64(&j, "reordered", r->reordered);
	rb_json_u64(&j, "corrupt", r->corrupt);
	rb_json_u64(&j, "errors", r->errors);
	rb_json_bool(&j, "cut_short", r->cut_short);
	rb_json_str(&j, "error", r->error);
	rb_json_bool(&j, "pass", rb_stress_passed(r));
	rb_json_close(&j, '}');
	rb_json_end(&j);
}

/* ---- options ----------------------------------------------------------------- */

enum {
	OPT_PRODUCERS = 256, OPT_CONSUMERS, OPT_KIND, OPT_WAKEUP, OPT_DURATION, OPT_COUNT,
	OPT_CAPACITY, OPT_MAX_MSG, OPT_WAIT, OPT_JITTER, OPT_TRAFFIC, OPT_SLEEPERS, OPT_WRAP,
	OPT_SIGNALS, OPT_STOP, OPT_SEED, OPT_JSON,
};

static const struct option longopts[] = {
	{ "producers", required_argument, NULL, OPT_PRODUCERS },
	{ "consumers", required_argument, NULL, OPT_CONSUMERS },
	{ "kind", required_argument, NULL, OPT_KIND },
	{ "wakeup", required_argument, NULL, OPT_WAKEUP },
	{ "duration", required_argument, NULL, OPT_DURATION },
	{ "count", required_argument, NULL, OPT_COUNT },
	{ "capacity", required_argument, NULL, OPT_CAPACITY },
	{ "max-msg", required_argument, NULL, OPT_MAX_MSG },
	{ "wait-timeout", required_argument, NULL, OPT_WAIT },
	{ "jitter", required_argument, NULL, OPT_JITTER },
	{ "traffic", required_argument, NULL, OPT_TRAFFIC },
	{ "sleepers", required_argument, NULL, OPT_SLEEPERS },
	{ "wrap", optional_argument, NULL, OPT_WRAP },
	{ "signals", no_argument, NULL, OPT_SIGNALS },
	{ "stop-at-stall", no_argument, NULL, OPT_STOP },
	{ "seed", required_argument, NULL, OPT_SEED },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/* The name of long option @val, for messages. */
static const char *optname(int val)
{
	for (const struct option *o = longopts; o->name; o++)
		if (o->val == val)
			return o->name;
	return "?";
}

/* getopt_long() refused @arg: an unknown option, or a value given to one
 * that takes none ("--signals=yes"). */
static int unknown_option(const char *arg)
{
	const char *eq = strchr(arg, '=');

	if (optopt && optopt < OPT_PRODUCERS)
		return rb_usage_err("unknown option '-%c'", optopt);
	if (!strncmp(arg, "--", 2) && eq)
		for (const struct option *o = longopts; o->name; o++)
			if (strlen(o->name) == (size_t)(eq - arg - 2) &&
			    !strncmp(o->name, arg + 2, (size_t)(eq - arg - 2)))
				return rb_usage_err("option '--%s' takes no value", o->name);
	return rb_usage_err("unknown option '%s'", arg);
}

int cmd_stress(int argc, char **argv)
{
	struct rb_stress_cfg cfg = {
		.kind = RBUS_KIND_MPMC, .wakeup = RBUS_WAKE_FUTEX, .capacity = 64,
		.max_msg = RBUS_DEFAULT_MAX_MSG, .traffic = RB_STRESS_BURSTS,
		.wait_ns = DEFAULT_WAIT_NS, .jitter = RB_STRESS_JITTER_LIGHT,
	};
	struct rb_stress_result res;
	struct live lv = { 0 };
	bool given[OPT_JSON + 1] = { false };
	bool want_json = false;
	uint64_t v, np = 0, nc = 0;
	int64_t ns;
	int c, err;

	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		if (c >= OPT_PRODUCERS && c <= OPT_JSON)
			given[c] = true;
		switch (c) {
		case OPT_PRODUCERS:
		case OPT_CONSUMERS:
			if (rb_parse_u64(c == OPT_PRODUCERS ? "--producers" : "--consumers", optarg,
					 1, RB_STRESS_MAX_SIDE, c == OPT_PRODUCERS ? &np : &nc))
				return RB_EXIT_USAGE;
			break;
		case OPT_KIND:
			if (rb_parse_kind("--kind", optarg, &cfg.kind))
				return RB_EXIT_USAGE;
			break;
		case OPT_WAKEUP:
			if (rb_parse_wakeup("--wakeup", optarg, &cfg.wakeup))
				return RB_EXIT_USAGE;
			break;
		case OPT_DURATION:
			if (rb_parse_seconds("--duration", optarg, 100000000, &ns))
				return RB_EXIT_USAGE;
			cfg.duration_ns = ns;
			break;
		case OPT_COUNT:
			if (rb_parse_u64("--count", optarg, 1, UINT64_C(1) << 40, &cfg.count))
				return RB_EXIT_USAGE;
			break;
		case OPT_CAPACITY:
			if (rb_parse_pow2("--capacity", optarg, RBUS_CAPACITY_MIN, 1u << 20, &v))
				return RB_EXIT_USAGE;
			cfg.capacity = (uint32_t)v;
			break;
		case OPT_MAX_MSG:
			if (rb_parse_size("--max-msg", optarg, RB_STRESS_MSG_HDR, 1u << 20, &v))
				return RB_EXIT_USAGE;
			cfg.max_msg = (uint32_t)v;
			break;
		case OPT_WAIT:
			if (rb_parse_seconds("--wait-timeout", optarg, RB_STRESS_WAIT_MIN_NS, &ns))
				return RB_EXIT_USAGE;
			cfg.wait_ns = ns;
			break;
		case OPT_JITTER:
			if (!strcmp(optarg, "none"))
				cfg.jitter = RB_STRESS_JITTER_NONE;
			else if (!strcmp(optarg, "light"))
				cfg.jitter = RB_STRESS_JITTER_LIGHT;
			else if (!strcmp(optarg, "heavy"))
				cfg.jitter = RB_STRESS_JITTER_HEAVY;
			else
				return rb_usage_err("--jitter: '%s' is not none, light or heavy",
						    optarg);
			break;
		case OPT_TRAFFIC:
			if (!strcmp(optarg, "bursts"))
				cfg.traffic = RB_STRESS_BURSTS;
			else if (!strcmp(optarg, "steady"))
				cfg.traffic = RB_STRESS_STEADY;
			else if (!strcmp(optarg, "sparse"))
				cfg.traffic = RB_STRESS_SPARSE;
			else if (!strcmp(optarg, "sparse-room"))
				cfg.traffic = RB_STRESS_SPARSE_ROOM;
			else
				return rb_usage_err("--traffic: '%s' is not bursts, steady, sparse "
						    "or sparse-room", optarg);
			break;
		case OPT_SLEEPERS:
			if (rb_parse_u64("--sleepers", optarg, 1, RB_STRESS_MAX_SLEEPERS, &v))
				return RB_EXIT_USAGE;
			cfg.sleepers = (unsigned)v;
			break;
		case OPT_WRAP:
			v = DEFAULT_WRAP;
			if (optarg && rb_parse_u64("--wrap", optarg, 1, UINT32_C(1) << 31, &v))
				return RB_EXIT_USAGE;
			cfg.wrap = (uint32_t)v;
			break;
		case OPT_SIGNALS:
			cfg.signals = true;
			break;
		case OPT_STOP:
			cfg.stop_at_stall = true;
			break;
		case OPT_SEED:
			if (rb_parse_u64("--seed", optarg, 0, UINT64_MAX, &cfg.seed))
				return RB_EXIT_USAGE;
			break;
		case OPT_JSON:
			want_json = true;
			break;
		case 'h':
			usage(stdout);
			return RB_EXIT_OK;
		case ':':
			return rb_usage_err("option '%s' needs a value", argv[optind - 1]);
		default:
			return unknown_option(argv[optind - 1]);
		}
	}
	if (optind < argc)
		return rb_usage_err("unexpected argument '%s'", argv[optind]);

	if (cfg.sleepers) {
		static const int channel_only[] = { OPT_PRODUCERS, OPT_CONSUMERS, OPT_KIND,
						    OPT_WAKEUP, OPT_CAPACITY, OPT_MAX_MSG,
						    OPT_TRAFFIC };

		for (size_t i = 0; i < sizeof(channel_only) / sizeof(channel_only[0]); i++)
			if (given[channel_only[i]])
				return rb_usage_err("--%s does not apply to --sleepers (no channel)",
						    optname(channel_only[i]));
	} else if (cfg.kind == RBUS_KIND_SPSC) {
		if ((np && np != 1) || (nc && nc != 1))
			return rb_usage_err("--kind spsc has one producer and one consumer");
		cfg.nprod = cfg.ncons = 1;
	} else {
		cfg.nprod = np ? (unsigned)np : 2;
		cfg.ncons = nc ? (unsigned)nc : 2;
	}
	if (!given[OPT_DURATION] && !cfg.count)
		cfg.duration_ns = DEFAULT_DURATION;
	if (!given[OPT_SEED])
		cfg.seed = rb_now_ns() ^ ((uint64_t)getpid() << 32);

	if (!cfg.sleepers && !rb_stress_can_judge())
		rb_err("warning: membarrier(2) is not available to this process: every sleep "
			"of the library is a 10 ms probe, and channel mode judges no "
			"probe, so this run can find no stall");
	rb_live_init(&lv.l, stderr);
	lv.sleepers = cfg.sleepers > 0;
	cfg.progress = on_progress;
	cfg.progress_arg = &lv;
	err = rb_stress_run(&cfg, &res);
	rb_live_done(&lv.l);
	if (err) {
		rb_err("%s", res.error[0] ? res.error : "could not set up the run");
		return RB_EXIT_FAIL;
	}
	if (want_json)
		json(&cfg, &res);
	else
		summary(&cfg, &res);
	fflush(stdout);
	return rb_stress_passed(&res) ? RB_EXIT_OK : RB_EXIT_FAIL;
}
