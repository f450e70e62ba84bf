/* SPDX-License-Identifier: MIT */
/*
 * ringbus - the command for the people who run ringbus: see it work
 * (demo), inspect channels (ls, stat), move data from and to a shell (pub,
 * sub), measure (bench) and stress the machine's wakeups (stress).
 *
 *   ringbus [--version | --help] COMMAND [OPTIONS] [ARGS]
 *   ringbus help COMMAND        the same as ringbus COMMAND --help
 *
 * Each subcommand lives in its own file and parses its own options; this
 * file only finds it.  Exit statuses are shared (cli.h, ringbus(1)).
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <string.h>

#include "cli.h"

static const struct command {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *what;
} commands[] = {
	{ "demo", cmd_demo, "a private broker, a producer, two consumers, live figures" },
	{ "ls", cmd_ls, "list the broker's channels" },
	{ "stat", cmd_stat, "show one channel: geometry, fill, holders, wakeups" },
	{ "pub", cmd_pub, "send standard input to a channel" },
	{ "sub", cmd_sub, "write a channel's messages to standard output" },
	{ "bench", cmd_bench, "measure throughput and latency against pipe, AF_UNIX, futex" },
	{ "stress", cmd_stress, "verify wakeups under N producers, M consumers and jitter" },
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *f)
{
	fprintf(f, "Usage: %s [--version | --help] COMMAND [OPTIONS] [ARGS]\n"
		"\nCommands:\n", rb_prog);
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].what);
	fprintf(f, "\n'%s COMMAND --help' describes a command's options; ringbus(1) has it all.\n"
		"\nExit status: 0 done and verified; 1 failed; 2 bad usage; 3 no broker;\n"
		"4 no such channel; 5 permission refused; 6 timed out.\n", rb_prog);
}

static const struct command *find(const char *name)
{
	for (size_t i = 0; i < NCOMMANDS; i++)
		if (!strcmp(commands[i].name, name))
			return &commands[i];
	return NULL;
}

int main(int argc, char **argv)
{
	const struct command *c;

	if (argc < 2)
		return rb_usage_err("no command given");
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(stdout);
		return RB_EXIT_OK;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
		printf("%s (%s) %s\n", rb_prog, PACKAGE_NAME, PACKAGE_VERSION);
		return RB_EXIT_OK;
	}
	if (!strcmp(argv[1], "help")) {
		if (argc < 3) {
			usage(stdout);
			return RB_EXIT_OK;
		}
		c = find(argv[2]);
		if (!c)
			return rb_usage_err("'%s' is not a command", argv[2]);
		rb_cmd = c->name;
		return c->fn(2, (char *[]){ argv[2], "--help", NULL });
	}
	if (argv[1][0] == '-')
		return rb_usage_err("unknown option '%s' (options follow the command)", argv[1]);
	c = find(argv[1]);
	if (!c)
		return rb_usage_err("'%s' is not a command", argv[1]);
	rb_cmd = c->name;
	return c->fn(argc - 1, argv + 1);
}
