/* SPDX-License-Identifier: MIT */
/*
 * main.c - ringbusd(8): options, signals, start and orderly stop.
 *
 * Exit status: 0 after SIGTERM or SIGINT, 1 on a runtime error (including
 * another daemon owning the socket), 2 on a usage error.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "ringbusd.h"

#define EXIT_USAGE 2
#define RATE_MAX   UINT64_C(1000000000)

struct rbusd_config rbusd_cfg = {
	.socket = NULL,
	.max_channels = 65536,
	.max_client_channels = 1024,
	.max_client_conns = 64,
	.max_rate = 10000,
	.max_region_size = UINT64_C(1) << 30,
	.max_total_size = 0,          /* set in main(): half the memory */
	.ready_fd = -1,
};

enum {
	OPT_SOCKET = 256, OPT_LOG_LEVEL, OPT_MAX_CHANNELS, OPT_MAX_CLIENT_CHANNELS,
	OPT_MAX_CLIENT_CONNS, OPT_MAX_RATE, OPT_MAX_REGION_SIZE, OPT_LEASE_SETTLE,
	OPT_MAX_TOTAL_SIZE, OPT_MAX_USER_CHANNELS, OPT_MAX_USER_SIZE, OPT_READY_FD,
	OPT_HELP,
	OPT_VERSION,
};

static const struct option long_opts[] = {
	{ "socket", required_argument, NULL, OPT_SOCKET },
	{ "log-level", required_argument, NULL, OPT_LOG_LEVEL },
	{ "max-channels", required_argument, NULL, OPT_MAX_CHANNELS },
	{ "max-client-channels", required_argument, NULL, OPT_MAX_CLIENT_CHANNELS },
	{ "max-client-conns", required_argument, NULL, OPT_MAX_CLIENT_CONNS },
	{ "max-rate", required_argument, NULL, OPT_MAX_RATE },
	{ "max-region-size", required_argument, NULL, OPT_MAX_REGION_SIZE },
	{ "lease-settle-ms", required_argument, NULL, OPT_LEASE_SETTLE },
	{ "max-total-size", required_argument, NULL, OPT_MAX_TOTAL_SIZE },
	{ "max-user-channels", required_argument, NULL, OPT_MAX_USER_CHANNELS },
	{ "max-user-size", required_argument, NULL, OPT_MAX_USER_SIZE },
	{ "ready-fd", required_argument, NULL, OPT_READY_FD },
	{ "help", no_argument, NULL, OPT_HELP },
	{ "version", no_argument, NULL, OPT_VERSION },
	{ NULL, 0, NULL, 0 },
};

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: ringbusd [OPTION]...\n"
		"The ringbus broker: creates shared-memory channels and hands them\n"
		"to local processes by name.  Runs in the foreground, logs to stderr.\n"
		"\n"
		"  --socket PATH               listen on PATH (default: $RINGBUS_SOCKET,\n"
		"                              $XDG_RUNTIME_DIR/ringbus/ringbusd.sock,\n"
		"                              /run/ringbus/ringbusd.sock)\n"
		"  --log-level LEVEL           error, warn, info (default) or debug\n"
		"  --max-channels N            channels in the daemon (default 65536)\n"
		"  --max-client-channels N     channels one process may use (default 1024)\n"
		"  --max-client-conns N        connections of one process (default 64)\n"
		"  --max-rate N                requests a second per connection, in\n"
		"                              bursts of N (default 10000, 0: no limit)\n"
		"  --max-region-size BYTES     largest region of a channel (default 1 GiB)\n"
		"  --max-total-size BYTES      all regions together (default: half of\n"
		"                              the machine's memory)\n"
		"  --max-user-channels N       channels one uid other than root may have\n"
		"                              created and alive (default 0: no limit)\n"
		"  --max-user-size BYTES       their regions together (default 0: no limit)\n"
		"  --ready-fd FD               once listening, write \"ready\\n\" to FD\n"
		"                              and close it (for a parent that waits)\n"
		"  --help                      show this help and exit\n"
		"  --version                   show the version and exit\n"
		"\n"
		"See ringbusd(8).\n");
}

static void bad_usage(void)
{
	fprintf(stderr, "Try 'ringbusd --help'.\n");
	exit(EXIT_USAGE);
}

/* The decimal number @s in [@min, @max] for option @opt, or exit 2. */
static uint64_t parse_num(const char *opt, const char *s, uint64_t min, uint64_t max)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (*s < '0' || *s > '9' || *end || errno || v < min || v > max) {
		fprintf(stderr, "ringbusd: invalid value '%s' for --%s "
			"(a number from %" PRIu64 " to %" PRIu64 ")\n", s, opt, min, max);
		bad_usage();
	}
	return v;
}

static void parse_args(int argc, char **argv)
{
	int c;

	while ((c = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
		switch (c) {
		case OPT_SOCKET:
			rbusd_cfg.socket = optarg;
			break;
		case OPT_LOG_LEVEL:
			if (rbusd_log_parse_level(optarg, &rbusd_log_level) < 0) {
				fprintf(stderr, "ringbusd: invalid value '%s' for "
					"--log-level (error, warn, info or debug)\n",
					optarg);
				bad_usage();
			}
			break;
		case OPT_MAX_CHANNELS:
			rbusd_cfg.max_channels =
				(uint32_t)parse_num("max-channels", optarg, 1, UINT32_MAX);
			break;
		case OPT_MAX_CLIENT_CHANNELS:
			rbusd_cfg.max_client_channels =
				(uint32_t)parse_num("max-client-channels", optarg, 1, UINT32_MAX);
			break;
		case OPT_MAX_CLIENT_CONNS:
			rbusd_cfg.max_client_conns =
				(uint32_t)parse_num("max-client-conns", optarg, 1, UINT32_MAX);
			break;
		case OPT_MAX_RATE:
			rbusd_cfg.max_rate =
				(uint32_t)parse_num("max-rate", optarg, 0, RATE_MAX);
			break;
		case OPT_MAX_REGION_SIZE:
			rbusd_cfg.max_region_size =
				parse_num("max-region-size", optarg, 1, UINT64_MAX);
			break;
		case OPT_MAX_TOTAL_SIZE:
			rbusd_cfg.max_total_size =
				parse_num("max-total-size", optarg, 1, UINT64_MAX);
			break;
		case OPT_MAX_USER_CHANNELS:
			rbusd_cfg.max_user_channels = (uint32_t)parse_num("max-user-channels",
					optarg, 0, UINT32_MAX);
			break;
		case OPT_MAX_USER_SIZE:
			rbusd_cfg.max_user_size = parse_num("max-user-size", optarg, 0,
							    UINT64_MAX);
			break;
		case OPT_LEASE_SETTLE:
			/* Before leases settled by their connection (ringbusd.h,
			 * use_prune_leases()): still a valid option, now without
			 * effect, so that command lines that give it still work. */
			(void)parse_num("lease-settle-ms", optarg, 0, 3600000);
			rbusd_cfg.lease_settle_given = true;
			break;
		case OPT_READY_FD:
			/* Not a standard stream: it is closed once written. */
			rbusd_cfg.ready_fd = (int)parse_num("ready-fd", optarg, 3, INT32_MAX);
			if (fcntl(rbusd_cfg.ready_fd, F_GETFD) < 0) {
				fprintf(stderr, "ringbusd: --ready-fd %s: %s\n", optarg,
					strerror(errno));
				bad_usage();
			}
			break;
		case OPT_HELP:
			usage(stdout);
			exit(0);
		case OPT_VERSION:
			printf("ringbusd (%s) %s\n", PACKAGE_NAME, PACKAGE_VERSION);
			exit(0);
		default:
			/* getopt_long() named the option already. */
			bad_usage();
		}
	}
	if (optind < argc) {
		fprintf(stderr, "ringbusd: unexpected argument '%s'\n", argv[optind]);
		bad_usage();
	}
}

/* Before any thread starts (liburcu's included), so that every thread
 * inherits the mask: SIGTERM and SIGINT are read from a signalfd, and
 * SIGPIPE is ignored (replies are sent with MSG_NOSIGNAL anyway). */
static int setup_signals(void)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
		return -errno;
	return -pthread_sigmask(SIG_BLOCK, &set, NULL);
}

/* Every connection costs an fd, and so does every region being passed:
 * use all the fds the hard limit allows. */
static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			log_warn("cannot raise the fd limit: %s", strerror(errno));
	}
}

/* Set up, serve, tear down.  Returns the exit status. */
static int run(void)
{
	int err;

	err = reg_init();
	if (!err)
		err = procs_init();
	if (err) {
		log_error("cannot start: %s", strerror(-err));
		return 1;
	}
	err = server_init(rbusd_cfg.socket);
	if (!err) {
		err = procs_start_reaper();
		if (err)
			log_error("cannot start the reaper thread: %s", strerror(-err));
	}
	if (!err)
		err = server_run();
	procs_stop_reaper();
	server_fini();
	procs_fini();
	reg_fini();
	if (!err)
		log_info("exited cleanly");
	return err ? 1 : 0;
}

int main(int argc, char **argv)
{
	int status, err;

	parse_args(argc, argv);
	if (!rbusd_cfg.max_total_size) {
		long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);

		/* A client must not be able to make the daemon pin all of
		 * the machine's memory in regions. */
		rbusd_cfg.max_total_size = pages > 0 && psz > 0 ?
			(uint64_t)pages * (uint64_t)psz / 2 : UINT64_C(1) << 32;
	}
	err = setup_signals();
	if (err) {
		log_error("cannot set up signals: %s", strerror(-err));
		return 1;
	}
	raise_fd_limit();
	if (rbusd_cfg.lease_settle_given)
		log_warn("--lease-settle-ms has no effect any more: a lease is kept until "
			 "the connection that asked for it sends anything more or closes");
	rcu_register_thread();
	status = run();
	rcu_unregister_thread();
	return status;
}
