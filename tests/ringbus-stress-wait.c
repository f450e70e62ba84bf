/* SPDX-License-Identifier: MIT */
/*
 * ringbus-stress-wait - the lost-wakeup stress (the engine of `ringbus
 * stress`, tools/cli/stress_engine.c) at length, for make stress: every
 * backend and kind, N messages each (default 10^8 in all, split across the
 * configurations).  Exit 0 only if every run had no stall, loss, duplicate,
 * reorder, corruption or error.
 */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "stress_engine.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: ringbus-stress-wait [-n MESSAGES] [-w WAIT_MS]\n"
		"  -n, --messages N  messages per configuration (default 25000000: 10^8 in all)\n"
		"  -w, --wait MS     timeout of every wait, at least 50 (default 1000)\n"
		"  -h, --help        this text\n"
		"Exit status: 0 when nothing was stalled, lost, duplicated, reordered or corrupt;\n"
		"1 otherwise; 2 on a usage error.\n");
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "messages", required_argument, NULL, 'n' },
		{ "wait", required_argument, NULL, 'w' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static const struct { enum rbus_kind kind; uint32_t wakeup; unsigned np, nc; } runs[] = {
		{ RBUS_KIND_SPSC, RBUS_WAKE_FUTEX, 1, 1 },
		{ RBUS_KIND_SPSC, RBUS_WAKE_EVENTFD, 1, 1 },
		{ RBUS_KIND_MPMC, RBUS_WAKE_FUTEX, 2, 2 },
		{ RBUS_KIND_MPMC, RBUS_WAKE_EVENTFD, 2, 2 },
	};
	unsigned long long n = 25000000, wait_ms = 1000;
	int c, bad = 0;

	while ((c = getopt_long(argc, argv, "n:w:h", longopts, NULL)) != -1) {
		char *end;

		switch (c) {
		case 'n':
		case 'w': {
			unsigned long long v = strtoull(optarg, &end, 10);

			if (*end || !v) {
				fprintf(stderr, "ringbus-stress-wait: --%s: want a positive number, "
					"not '%s'\n", c == 'n' ? "messages" : "wait", optarg);
				return 2;
			}
			*(c == 'n' ? &n : &wait_ms) = v;
			break;
		}
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	for (size_t i = 0; i < sizeof(runs) / sizeof(runs[0]); i++) {
		struct rb_stress_cfg cfg = {
			.kind = runs[i].kind, .wakeup = runs[i].wakeup, .nprod = runs[i].np,
			.ncons = runs[i].nc, .count = n / runs[i].np, .capacity = 64,
			.max_msg = 64, .traffic = RB_STRESS_BURSTS,
			.jitter = RB_STRESS_JITTER_LIGHT,
			.wait_ns = (int64_t)wait_ms * 1000000, .seed = (unsigned)i + 11,
		};
		struct rb_stress_result res;

		if (rb_stress_run(&cfg, &res)) {
			fprintf(stderr, "ringbus-stress-wait: could not set up run %zu: %s\n", i,
				res.error);
			return 1;
		}
		rb_stress_print_line(stdout, "stress", &cfg, &res);
		if (!rb_stress_passed(&res) || res.ops != res.sent || res.cut_short)
			bad = 1;
	}
	printf("%s\n", bad ? "FAIL" : "PASS");
	return bad;
}
