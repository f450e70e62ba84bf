/* SPDX-License-Identifier: MIT */
/*
 * cmd_demo.c - ringbus demo: what ringbus is for, in one command.
 *
 * Five processes:
 *
 *   this one   starts a private ringbusd (unless --socket names a running
 *              one), has it create two SPSC channels, forks the three below,
 *              prints a live line every 0.5 s and the summary, and cleans up;
 *   ringbusd   the broker: a socket in a fresh directory, its log beside it;
 *   producer   connects to the broker and takes the producer role on both
 *              channels by name, as an unrelated process would; sends every
 *              sensor sample (CLOCK_MONOTONIC time stamp, 64-bit sequence
 *              number, four readings, CRC-32C) to both channels, as fast as
 *              the rings take them or at --rate samples/s, until --duration
 *              has passed; then closes its handles (the hang-up);
 *   consumer 0 and 1, one per channel, connected the same way: each checks
 *              every sample (length, CRC, sequence contiguous) and records
 *              its end-to-end latency, until the ring is drained and the
 *              producer has hung up (-EPIPE).
 *
 * The run passes when each consumer verified exactly the samples the
 * producer sent: that is the fan-out, every consumer sees every sample.
 *
 * The children share their counters with this process through anonymous
 * MAP_SHARED memory (struct shared); each counter has one writer.  Start and
 * readiness go through pipes, child exits and signals arrive in ppoll()
 * (SIGCHLD, SIGINT, SIGTERM are blocked outside it): this process never
 * sleeps to synchronise, its only timer is the live line's.  The children
 * wait at most WAIT_NS at a time, to notice a run called off.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE  /* ppoll, pipe2, strsignal */
#endif

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#ifndef RBUS_SBINDIR
#define RBUS_SBINDIR "/usr/local/sbin"
#endif

#define NCONS           2                /* consumers, one channel each */
#define TICK_NS         500000000ull     /* live line period */
#define WAIT_NS         100000000        /* longest single wait of a child */
#define START_LIMIT_NS  10000000000ull   /* ringbusd and children must be up by then */
#define STOP_LIMIT_NS   10000000000ull   /* after the end: then children are killed */
#define BATCH           64               /* samples a consumer takes at once */
/* How long a consumer spins on an empty ring before it sleeps.  The two
 * consumers share a CPU: while one spins the other cannot run, so the
 * library's default (RBUS_SPIN_DEFAULT_NS, 20 us) costs its peer.  On a
 * 2-CPU VM shared with other work, 5 us gave both a lower median latency
 * (p50 56 vs 71 us, p99 167 vs 268 us at full speed; 24 vs 32 us p50 at
 * 100000 samples/s) and more throughput (6.9 vs 5.0 M samples/s, medians of
 * 6 runs); 1 us and 0 were worse again (a sleep and a wake-up per batch). */
#define CONSUMER_SPIN_NS 5000u
#define DEFAULT_CAPACITY 1024u
#define MAX_CAPACITY    (1u << 20)
#define MAX_RATE        1000000000ull

/* ---- the message ---------------------------------------------------------- */

/* One sensor sample, sent as the bytes of this struct.  Producer and
 * consumers are one binary on one machine, so they share its layout and
 * byte order; a protocol between strangers would fix both. */
struct sample {
	uint64_t t_ns;    /* CLOCK_MONOTONIC when the sample was taken */
	uint64_t seq;     /* 0, 1, 2 ... with no gaps */
	float value[4];   /* acceleration x, y, z (m/s^2), temperature (C) */
	uint32_t crc;     /* CRC-32C of every byte before this field */
	uint32_t zero;    /* explicit padding, always 0 (checked) */
};
_Static_assert(sizeof(struct sample) == 40, "struct sample has no hidden padding");

/* A plausible reading for sample @seq: a slow wave plus deterministic
 * noise, so that consecutive samples differ in every field. */
static void sample_fill(struct sample *s, uint64_t seq, uint64_t t_ns)
{
	uint64_t x = seq * UINT64_C(0x9E3779B97F4A7C15);
	float phase = (float)(seq % 1000) / 1000.0f;

	x ^= x >> 29;
	s->t_ns = t_ns;
	s->seq = seq;
	s->value[0] = 0.05f * (float)(x & 0xFF) / 255.0f - 0.025f;
	s->value[1] = 0.05f * (float)((x >> 8) & 0xFF) / 255.0f - 0.025f;
	s->value[2] = 9.81f + (phase < 0.5f ? phase : 1.0f - phase) * 0.1f;
	s->value[3] = 21.5f + (float)((x >> 16) & 0x3F) / 100.0f;
	s->zero = 0;
	s->crc = rb_crc32c(0, s, offsetof(struct sample, crc));
}

/* ---- state shared with the children -----------------------------------------
 * Each block has one writer and cache lines of its own, so that the three
 * children do not slow each other down through it.  Counters are single-
 * writer: a relaxed load and store update them (no locked instruction on
 * the data path); this process reads them during the run for display only.
 * For its verdict it reads them after the writer's `done' (release/acquire,
 * below); a child without `done' failed the run anyway.  The other flags
 * carry no data (relaxed): the reader only has to notice them soon. */
struct producer_stats {
	_Atomic uint64_t sent;            /* samples in every channel */
	_Atomic uint64_t sent_to[NCONS];  /* samples in channel i */
	_Atomic uint64_t full[NCONS];     /* sends that found ring i full */
	_Atomic uint64_t start_ns, end_ns;
	atomic_int done;                  /* closed its handles normally */
};

struct consumer_stats {
	_Atomic uint64_t received;    /* every message taken */
	_Atomic uint64_t verified;    /* intact and next in sequence */
	_Atomic uint64_t gaps;        /* sequence numbers skipped */
	_Atomic uint64_t corrupt;     /* wrong length, CRC or padding */
	_Atomic uint64_t disordered;  /* intact but repeated or backwards */
	_Atomic uint64_t next_seq;    /* the sequence number expected next */
	_Atomic uint64_t empty;       /* receives that found the ring empty */
	_Atomic uint64_t last_ns;     /* when the last sample came */
	atomic_int done;              /* saw the hang-up, closed normally */
	/* Plain counters (cli.h): read during the run they are a hint. */
	struct rb_hist hist;
};

struct shared {
	/* Written by this process. */
	_Alignas(64) atomic_int stop;    /* producer: send no further sample */
	atomic_int abort_run;            /* all: give up waiting, a peer is gone */
	_Alignas(64) struct producer_stats prod;
	struct {
		_Alignas(64) struct consumer_stats s;
	} cons[NCONS];
};

/* Single-writer increment: no other process writes @p. */
static inline void bump(_Atomic uint64_t *p, uint64_t n)
{
	atomic_store_explicit(p, atomic_load_explicit(p, memory_order_relaxed) + n,
			      memory_order_relaxed);
}

static inline uint64_t peek64(_Atomic uint64_t *p)
{
	return atomic_load_explicit(p, memory_order_relaxed);
}

static inline void set_flag(atomic_int *f)
{
	atomic_store_explicit(f, 1, memory_order_relaxed);
}

static inline bool flag(atomic_int *f)
{
	return atomic_load_explicit(f, memory_order_relaxed) != 0;
}

/* D1 (release): a child's last word; every counter update it made happens
 * before.  Pairs with D2. */
static inline void done_set(atomic_int *f)
{
	atomic_store_explicit(f, 1, memory_order_release);
}

/* D2 (acquire): pairs with D1, so the counters read after it are final. */
static inline bool done_seen(atomic_int *f)
{
	return atomic_load_explicit(f, memory_order_acquire) != 0;
}

/* ---- options ----------------------------------------------------------------- */

struct options {
	int64_t duration_ns;
	uint64_t rate;          /* samples/s; 0: as fast as the rings take them */
	uint32_t capacity;      /* slots per ring */
	const char *socket;     /* a running broker, or NULL: start one */
	const char *daemon;     /* the ringbusd to start, or NULL: look for it */
	bool json, pin;
};

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: ringbus demo [OPTIONS]\n"
		"Start a private ringbusd, create two SPSC channels through it, and run a\n"
		"producer process that sends sensor samples to both (fan-out) and two consumer\n"
		"processes, one per channel, that verify every sample (length, CRC-32C, sequence)\n"
		"and measure its end-to-end latency.  On a terminal a live line shows the rate,\n"
		"bandwidth, latency and losses every 0.5 s; a summary follows the run.\n"
		"\n"
		"Options:\n"
		"  -d, --duration SECONDS  how long the producer sends: 5, 0.5, 250ms, 1m\n"
		"                          (default 5)\n"
		"  -r, --rate N            samples per second, to each channel; 0: as fast as\n"
		"                          the rings take them, and then the latency is mostly\n"
		"                          the time a sample waits in a full ring (default 0)\n"
		"  -c, --capacity N        slots of each ring, a power of two in [2, %u]\n"
		"                          (default %u)\n"
		"      --socket PATH       use the ringbusd listening on PATH instead of starting\n"
		"                          one; the demo's channels are removed at the end\n"
		"      --daemon PATH       the ringbusd to start (default: the build tree's\n"
		"                          src/daemon/ringbusd beside this program, else\n"
		"                          %s/ringbusd)\n"
		"      --no-pin            let the processes run on any CPU (default: the\n"
		"                          producer on the first CPU this process may use, the\n"
		"                          consumers on the second, if there are two)\n"
		"  -j, --json              print the summary as one JSON object\n"
		"  -h, --help              show this help and exit\n"
		"\n"
		"Ctrl-C ends the run early; the samples sent until then are still verified.\n"
		"\n"
		"Exit status: 0 every consumer received every sample sent, once, in order and\n"
		"intact; 1 a sample was lost or damaged, or something failed; 2 bad usage;\n"
		"3 no broker at --socket.\n",
		MAX_CAPACITY, DEFAULT_CAPACITY, RBUS_SBINDIR);
}

enum { OPT_SOCKET = 256, OPT_DAEMON, OPT_NO_PIN };

/* Returns -1 to go on, or the exit status. */
static int parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "duration", required_argument, NULL, 'd' },
		{ "rate",     required_argument, NULL, 'r' },
		{ "capacity", required_argument, NULL, 'c' },
		{ "socket",   required_argument, NULL, OPT_SOCKET },
		{ "daemon",   required_argument, NULL, OPT_DAEMON },
		{ "no-pin",   no_argument,       NULL, OPT_NO_PIN },
		{ "json",     no_argument,       NULL, 'j' },
		{ "help",     no_argument,       NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t v;
	int c;

	*o = (struct options){
		.duration_ns = 5000000000,
		.capacity = DEFAULT_CAPACITY,
		.pin = true,
	};
	opterr = 0;  /* we say what is wrong, in our words */
	while ((c = getopt_long(argc, argv, ":d:r:c:jh", longopts, NULL)) != -1) {
		switch (c) {
		case 'd':
			if (rb_parse_seconds("--duration", optarg, 1000000, &o->duration_ns))
				return RB_EXIT_USAGE;
			break;
		case 'r':
			if (rb_parse_u64("--rate", optarg, 0, MAX_RATE, &o->rate))
				return RB_EXIT_USAGE;
			break;
		case 'c':
			if (rb_parse_pow2("--capacity", optarg, 2, MAX_CAPACITY, &v))
				return RB_EXIT_USAGE;
			o->capacity = (uint32_t)v;
			break;
		case OPT_SOCKET:
			o->socket = optarg;
			break;
		case OPT_DAEMON:
			o->daemon = optarg;
			break;
		case OPT_NO_PIN:
			o->pin = false;
			break;
		case 'j':
			o->json = true;
			break;
		case 'h':
			usage(stdout);
			return RB_EXIT_OK;
		case ':':
			return rb_usage_err("option '%s' needs a value", argv[optind - 1]);
		default:
			return rb_bad_option(longopts, argv[optind - 1]);
		}
	}
	if (optind < argc)
		return rb_usage_err("unexpected argument '%s'", argv[optind]);
	if (o->socket && o->daemon)
		return rb_usage_err("--socket and --daemon exclude each other");
	return -1;
}

/* ---- the demo's state (this process; the children get copies) ------------- */

struct demo {
	struct options o;
	char name[NCONS][RBUS_NAME_MAX + 1];
	bool created[NCONS];
	char sock[108];           /* sizeof(sockaddr_un.sun_path) */
	/* The private broker: its directory ("" if none), binary and pid. */
	char dir[PATH_MAX / 2];
	char log[PATH_MAX];
	char daemon[PATH_MAX];
	pid_t daemon_pid;
	int daemon_status;
	struct rbus_broker *b;    /* this process's connection */
	struct shared *sh;
	int cpu_prod, cpu_cons;   /* -1: not pinned */
	pid_t parent;
	/* Children: producer, then consumers; status once reaped. */
	pid_t pid[1 + NCONS];
	int status[1 + NCONS];
	bool reaped[1 + NCONS];
	int ready[2];             /* children -> this process: one byte each */
	int go[2];                /* this process -> producer: 'g', or EOF */
	uint64_t t0;              /* when the producer was told to go */
	uint64_t t_end;           /* when the last child was reaped */
};

static const char *child_name(int k)
{
	static const char *const names[] = { "producer", "consumer 0", "consumer 1" };

	return names[k];
}

/* "consumer 1 (pid 123, channel demo-99-1)", for messages about child @k. */
static const char *child_label(const struct demo *d, int k, char *buf, size_t len)
{
	if (k == 0)
		snprintf(buf, len, "producer (pid %d, channels %s and %s)", (int)d->pid[0],
			 d->name[0], d->name[1]);
	else
		snprintf(buf, len, "%s (pid %d, channel %s)", child_name(k), (int)d->pid[k],
			 d->name[k - 1]);
	return buf;
}

/* ---- signals -------------------------------------------------------------------
 * SIGINT and SIGTERM end the run early; SIGCHLD only has to interrupt
 * ppoll().  The three are blocked except inside ppoll(), so none can
 * arrive between a check and the sleep that follows it. */
static volatile sig_atomic_t interrupted;
static sigset_t wait_mask;   /* the mask during ppoll() */
static sigset_t saved_mask;  /* the mask we were started with */
static struct sigaction saved_action[3];
static const int handled[3] = { SIGINT, SIGTERM, SIGCHLD };

static void on_signal(int sig)
{
	if (sig != SIGCHLD)
		interrupted++;
}

static void signals_install(void)
{
	struct sigaction sa;
	sigset_t block;

	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGCHLD);
	sigprocmask(SIG_BLOCK, &block, &saved_mask);
	wait_mask = saved_mask;
	sigdelset(&wait_mask, SIGINT);
	sigdelset(&wait_mask, SIGTERM);
	sigdelset(&wait_mask, SIGCHLD);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_NOCLDSTOP;
	for (int i = 0; i < 3; i++)
		sigaction(handled[i], &sa, &saved_action[i]);
}

/* Leave the process as we found it: the handlers are this command's. */
static void signals_restore(void)
{
	for (int i = 0; i < 3; i++)
		sigaction(handled[i], &saved_action[i], NULL);
	sigprocmask(SIG_SETMASK, &saved_mask, NULL);
}

/* A child of ours starts with the default handlers and nothing blocked
 * (the ringbusd that exec()s also, since a handler does not survive exec
 * but a blocked mask would). */
static void signals_reset_in_child(void)
{
	sigset_t none;

	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGCHLD, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

/* Sleep until @until_ns, a signal, or @fd readable (-1: no fd).  Returns
 * true if @fd is readable. */
static bool wait_event(int fd, uint64_t until_ns)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	uint64_t now = rb_now_ns(), left = until_ns > now ? until_ns - now : 0;
	struct timespec ts = {
		.tv_sec = (time_t)(left / 1000000000u),
		.tv_nsec = (long)(left % 1000000000u),
	};

	return ppoll(&pfd, fd >= 0 ? 1 : 0, &ts, &wait_mask) > 0 && pfd.revents;
}

/* ---- the private broker ---------------------------------------------------------- */

static bool executable(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

/* Which ringbusd to start: --daemon, else the build tree's (tools/ringbus
 * is a real binary there, not a libtool wrapper, so /proc/self/exe is in
 * tools/), else the installed one. */
static int find_daemon(struct demo *d)
{
	char self[PATH_MAX];
	ssize_t n;

	if (d->o.daemon) {
		if (!executable(d->o.daemon)) {
			rb_err("cannot start ringbusd %s (--daemon): %s", d->o.daemon,
			       access(d->o.daemon, F_OK) ? strerror(errno) :
			       "not an executable file");
			return -1;
		}
		snprintf(d->daemon, sizeof(d->daemon), "%s", d->o.daemon);
		return 0;
	}
	/* The build tree's daemon, only for the build tree's command: an
	 * installed ringbus must not run whatever lies at ../src/daemon. */
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		char *slash, *tools = realpath(RBUS_BUILDDIR "/tools", NULL);

		self[n] = 0;
		slash = strrchr(self, '/');
		if (slash)
			*slash = 0;  /* the directory of this program */
		if (slash && tools && !strcmp(self, tools)) {
			int r = snprintf(d->daemon, sizeof(d->daemon), "%s/../src/daemon/ringbusd",
					 self);

			if (r > 0 && (size_t)r < sizeof(d->daemon) && executable(d->daemon)) {
				free(tools);
				return 0;
			}
		}
		free(tools);
	}
	snprintf(d->daemon, sizeof(d->daemon), "%s", RBUS_SBINDIR "/ringbusd");
	if (executable(d->daemon))
		return 0;
	rb_err("cannot find ringbusd: not beside this program (../src/daemon/ringbusd) "
	       "nor in %s; give --daemon PATH, or --socket PATH of a running broker",
	       RBUS_SBINDIR);
	return -1;
}

static void print_daemon_log(const struct demo *d)
{
	char buf[4096];
	ssize_t n;
	struct stat st;
	int fd = open(d->log, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return;
	if (fstat(fd, &st) == 0 && st.st_size == 0) {
		fputs("(its log is empty)\n", stderr);
		close(fd);
		return;
	}
	/* The directory goes at exit: show the log, not its path. */
	fputs("--- ringbusd's log ---\n", stderr);
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		fwrite(buf, 1, (size_t)n, stderr);
	fputs("--- end of ringbusd's log ---\n", stderr);
	close(fd);
}

static void describe_status(char *buf, size_t len, int status)
{
	if (WIFSIGNALED(status))
		snprintf(buf, len, "was killed by signal %d (%s)", WTERMSIG(status),
			 strsignal(WTERMSIG(status)));
	else
		snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
}

/* Start ringbusd on a socket in a fresh directory and wait until it says
 * it listens.  Returns 0, or -1 having said why. */
static int daemon_start(struct demo *d)
{
	const char *tmp = getenv("TMPDIR");
	char fdarg[16], buf[8];
	int p[2], logfd, r;
	size_t got = 0;
	uint64_t until;

	if (find_daemon(d))
		return -1;
	if (!tmp || !*tmp)
		tmp = "/tmp";
	snprintf(d->dir, sizeof(d->dir), "%s/ringbus-demo-XXXXXX", tmp);
	if (!mkdtemp(d->dir)) {
		rb_err("making a directory for ringbusd in %s: %s", tmp, strerror(errno));
		d->dir[0] = 0;
		return -1;
	}
	snprintf(d->log, sizeof(d->log), "%s/ringbusd.log", d->dir);
	r = snprintf(d->sock, sizeof(d->sock), "%s/ringbusd.sock", d->dir);
	if (r < 0 || (size_t)r >= sizeof(d->sock)) {
		rb_err("socket path %s/ringbusd.sock: too long for a Unix socket (set TMPDIR)",
		       d->dir);
		return -1;
	}
	logfd = open(d->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (logfd < 0) {
		rb_err("%s: %s", d->log, strerror(errno));
		return -1;
	}
	if (pipe2(p, O_CLOEXEC)) {
		rb_err("pipe: %s", strerror(errno));
		close(logfd);
		return -1;
	}
	snprintf(fdarg, sizeof(fdarg), "%d", p[1]);
	fflush(NULL);  /* or the child would inherit our buffered output */
	d->daemon_pid = fork();
	if (d->daemon_pid < 0) {
		rb_err("fork (ringbusd): %s", strerror(errno));
		d->daemon_pid = 0;
		close(p[0]);
		close(p[1]);
		close(logfd);
		return -1;
	}
	if (d->daemon_pid == 0) {
		int null = open("/dev/null", O_RDWR);
		char *argv[] = { d->daemon, "--socket", d->sock, "--ready-fd", fdarg, NULL };

		signals_reset_in_child();
		/* Its own process group: Ctrl-C reaches us, and we stop it
		 * when we are done with it, not before. */
		setpgid(0, 0);
		/* If we are killed (no cleanup), it goes too. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != d->parent)
			_exit(1);
		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
		dup2(logfd, STDERR_FILENO);
		if (null > STDERR_FILENO)
			close(null);
		fcntl(p[1], F_SETFD, 0);  /* the one fd it inherits */
		execv(d->daemon, argv);
		fprintf(stderr, "exec %s: %s\n", d->daemon, strerror(errno));
		_exit(127);
	}
	close(p[1]);
	close(logfd);

	/* "ready\n", or EOF when it exits (its log says why). */
	until = rb_now_ns() + START_LIMIT_NS;
	while (got < 6) {
		ssize_t n;

		if (interrupted) {
			close(p[0]);
			return -1;
		}
		if (rb_now_ns() >= until) {
			rb_err("%s did not start listening on %s within %llu s", d->daemon,
			       d->sock, START_LIMIT_NS / 1000000000ull);
			print_daemon_log(d);
			close(p[0]);
			return -1;
		}
		if (!wait_event(p[0], until))
			continue;
		n = read(p[0], buf + got, sizeof(buf) - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(p[0]);
	if (got != 6 || memcmp(buf, "ready\n", 6)) {
		char how[64] = "";

		/* EOF: it exited, or is about to (if it closed the fd and
		 * lives on, daemon_stop() ends it). */
		until = rb_now_ns() + 2000000000u;
		while (!interrupted && rb_now_ns() < until) {
			if (waitpid(d->daemon_pid, &d->daemon_status, WNOHANG) == d->daemon_pid) {
				describe_status(how, sizeof(how), d->daemon_status);
				d->daemon_pid = 0;
				break;
			}
			wait_event(-1, until);
		}
		rb_err("%s did not start (%s)", d->daemon,
		       how[0] ? how : "no ready message");
		print_daemon_log(d);
		return -1;
	}
	return 0;
}

/* Stop the private broker and remove its directory.  Returns 0, or -1 if
 * it had died or did not exit cleanly (having said so). */
static int daemon_stop(struct demo *d)
{
	int ret = 0;

	if (d->daemon_pid > 0) {
		pid_t w = waitpid(d->daemon_pid, &d->daemon_status, WNOHANG);
		char how[64];

		if (w == d->daemon_pid) {
			describe_status(how, sizeof(how), d->daemon_status);
			rb_err("ringbusd %s during the run", how);
			print_daemon_log(d);
			ret = -1;
		} else {
			uint64_t until = rb_now_ns() + STOP_LIMIT_NS;

			kill(d->daemon_pid, SIGTERM);
			while ((w = waitpid(d->daemon_pid, &d->daemon_status, WNOHANG)) == 0) {
				if (rb_now_ns() >= until) {
					rb_err("ringbusd did not exit on SIGTERM within %llu s: killing it",
					       STOP_LIMIT_NS / 1000000000ull);
					kill(d->daemon_pid, SIGKILL);
					waitpid(d->daemon_pid, &d->daemon_status, 0);
					ret = -1;
					break;
				}
				wait_event(-1, until);
			}
			if (ret == 0 && d->daemon_status != 0) {
				describe_status(how, sizeof(how), d->daemon_status);
				rb_err("ringbusd %s on SIGTERM", how);
				print_daemon_log(d);
				ret = -1;
			}
		}
		d->daemon_pid = 0;
	}
	if (d->dir[0]) {
		/* Our own fresh directory: its socket, lock file and log. */
		DIR *dir = opendir(d->dir);
		struct dirent *e;

		if (dir) {
			while ((e = readdir(dir)))
				if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
					unlinkat(dirfd(dir), e->d_name, 0);
			closedir(dir);
		}
		if (rmdir(d->dir))
			rb_err("removing %s: %s", d->dir, strerror(errno));
		d->dir[0] = 0;
	}
	return ret;
}

/* ---- the children ------------------------------------------------------------------ */

/* Common set-up of a child: leave Ctrl-C and a SIGTERM of the process
 * group to the parent (it stops the run cleanly), die with it, drop what
 * is the parent's, run on @cpu (>= 0). */
static void child_setup(struct demo *d, int k, int cpu)
{
	int r;

	signals_reset_in_child();
	signal(SIGINT, SIG_IGN);
	signal(SIGTERM, SIG_IGN);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != d->parent)
		_exit(1);  /* it died before PR_SET_PDEATHSIG took */
	/* The parent's connection acts for the parent (broker.h): each child
	 * connects for itself.  Closing our copy leaves the parent's open. */
	rbus_broker_close(d->b);
	d->b = NULL;
	close(d->ready[0]);
	close(d->go[1]);
	if (k != 0)
		close(d->go[0]);
	if (cpu >= 0 && (r = rb_pin(cpu)) < 0)
		rb_err("%s: cannot run on CPU %d: %s (running unpinned)", child_name(k), cpu,
		       strerror(-r));
}

/* Connect and take @role on channel @i, as an unrelated process would.
 * Exits the child (status 1) on failure, having said why. */
static struct rbus_channel *child_open(struct demo *d, struct rbus_broker *b, int i,
				       enum rbus_role role, const char *who)
{
	struct rbus_channel *ch;
	int err = rbus_broker_open(b, d->name[i], role, 0, &ch);

	if (err < 0) {
		rb_err("%s: opening channel %s as %s: %s", who, d->name[i],
		       role == RBUS_PRODUCER ? "producer" : "consumer", rbus_strerror(err));
		_exit(RB_EXIT_FAIL);
	}
	return ch;
}

static struct rbus_broker *child_connect(struct demo *d, const char *who)
{
	struct rbus_broker *b;
	int st = rb_connect(d->sock, &b);

	if (st) {
		rb_err("%s: could not connect to the broker", who);
		_exit(st);
	}
	return b;
}

static void tell_ready(struct demo *d)
{
	ssize_t w;

	do
		w = write(d->ready[1], "r", 1);
	while (w < 0 && errno == EINTR);
	close(d->ready[1]);
}

static void sleep_until(uint64_t t_ns)
{
	struct timespec ts = {
		.tv_sec = (time_t)(t_ns / 1000000000u),
		.tv_nsec = (long)(t_ns % 1000000000u),
	};

	/* The children block no signal they handle: EINTR is not expected,
	 * and the caller re-checks the time anyway. */
	clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
}

/* Put @s into channel @i.  Waits for room as long as the consumer is
 * there (also after a stop: a sample sent to one channel goes to the
 * other, or the two consumers would disagree).  Returns 0 or -errno. */
static int send_one(struct shared *sh, struct rbus_channel *ch, int i,
		    const struct sample *s)
{
	int err = rbus_send(ch, s, sizeof(*s));

	if (err == -EAGAIN) {
		bump(&sh->prod.full[i], 1);
		do {
			if (flag(&sh->abort_run))
				return -ECANCELED;
			err = rbus_send_wait(ch, s, sizeof(*s), rbus_deadline_in(WAIT_NS));
		} while (err == -ETIMEDOUT);
	}
	return err;
}

static int producer_main(struct demo *d)
{
	struct shared *sh = d->sh;
	struct rbus_broker *b = child_connect(d, "producer");
	struct rbus_channel *ch[NCONS];
	struct sample s;
	uint64_t seq, start, end;
	int status = 0;
	char go;
	ssize_t n;

	for (int i = 0; i < NCONS; i++)
		ch[i] = child_open(d, b, i, RBUS_PRODUCER, "producer");
	tell_ready(d);
	/* Wait for the word: both consumers are receiving by then, so their
	 * start-up is not counted as the first samples' latency.  EOF: the
	 * run was called off. */
	do
		n = read(d->go[0], &go, 1);
	while (n < 0 && errno == EINTR);
	close(d->go[0]);
	if (n != 1)
		goto out;

	start = rb_now_ns();
	end = start + (uint64_t)d->o.duration_ns;
	atomic_store_explicit(&sh->prod.start_ns, start, memory_order_relaxed);
	for (seq = 0;;) {
		uint64_t now = rb_now_ns();

		if (flag(&sh->stop))
			break;
		if (d->o.rate) {
			/* Sample seq is due at start + seq / rate.  Every sample
			 * due before the end is sent, however late a wake-up
			 * comes (so a run sends rate x duration of them), and
			 * then the producer waits for the end.  It sleeps until
			 * the next is due, never spins (the CPUs are shared);
			 * after a late wake-up what is due goes at once, so that
			 * the rate holds on average. */
			uint64_t due = start + (uint64_t)((unsigned __int128)seq * 1000000000u /
							  d->o.rate);

			if (due >= end) {
				if (now >= end)
					break;
				due = end;
			}
			if (due > now) {
				/* In slices, to notice a stop at low rates. */
				sleep_until(due - now > WAIT_NS ? now + WAIT_NS : due);
				continue;
			}
		} else if (now >= end) {
			break;
		}
		/* The sample is taken now: time spent waiting for room in a
		 * ring counts in its end-to-end latency. */
		sample_fill(&s, seq, now);
		for (int i = 0; i < NCONS; i++) {
			int err = send_one(sh, ch[i], i, &s);

			if (err < 0) {
				if (err != -ECANCELED)
					rb_err("producer: sending sample %" PRIu64 " to %s: %s", seq,
					       d->name[i], rbus_strerror(err));
				status = RB_EXIT_FAIL;
				goto stop;
			}
			bump(&sh->prod.sent_to[i], 1);
		}
		bump(&sh->prod.sent, 1);
		seq++;
	}
stop:
	atomic_store_explicit(&sh->prod.end_ns, rb_now_ns(), memory_order_relaxed);
out:
	/* The hang-up: each consumer drains its ring, then gets -EPIPE. */
	for (int i = 0; i < NCONS; i++)
		rbus_channel_close(ch[i]);
	rbus_broker_close(b);
	if (status == 0)
		done_set(&sh->prod.done);
	return status;
}

/* Check one sample of @len bytes against the sequence number expected
 * next; returns the next expected sequence number. */
static uint64_t verify(struct consumer_stats *cs, const struct sample *s, size_t len,
		       uint64_t expect, uint64_t now)
{
	bump(&cs->received, 1);
	if (len != sizeof(*s) || s->zero != 0 ||
	    s->crc != rb_crc32c(0, s, offsetof(struct sample, crc))) {
		bump(&cs->corrupt, 1);
		return expect;
	}
	if (s->seq < expect) {
		/* Seen already, or older than one seen: a duplicate or a
		 * reordering, which an SPSC ring must never produce. */
		bump(&cs->disordered, 1);
		return expect;
	}
	if (s->seq > expect)
		bump(&cs->gaps, s->seq - expect);
	bump(&cs->verified, 1);
	rb_hist_add(&cs->hist, now > s->t_ns ? now - s->t_ns : 0);
	return s->seq + 1;
}

static int consumer_main(struct demo *d, int i)
{
	struct consumer_stats *cs = &d->sh->cons[i].s;
	char who[16];
	struct rbus_broker *b;
	struct rbus_channel *ch;
	struct sample buf[BATCH];
	struct iovec iov[BATCH];
	uint64_t expect = 0;
	int status = 0;

	snprintf(who, sizeof(who), "consumer %d", i);
	b = child_connect(d, who);
	ch = child_open(d, b, i, RBUS_CONSUMER, who);
	rbus_channel_set_spin(ch, CONSUMER_SPIN_NS);  /* <= RBUS_SPIN_MAX_NS */
	tell_ready(d);
	for (;;) {
		int n;

		for (int k = 0; k < BATCH; k++)
			iov[k] = (struct iovec){ .iov_base = &buf[k], .iov_len = sizeof(buf[k]) };
		n = rbus_recv_batch(ch, iov, BATCH);
		if (n == -EAGAIN) {
			bump(&cs->empty, 1);
			n = rbus_recv_batch_wait(ch, iov, BATCH, rbus_deadline_in(WAIT_NS));
		}
		if (n > 0) {
			/* One clock reading for the batch: the samples were all
			 * in the ring until now. */
			uint64_t now = rb_now_ns();

			for (int k = 0; k < n; k++)
				expect = verify(cs, &buf[k], iov[k].iov_len, expect, now);
			atomic_store_explicit(&cs->next_seq, expect, memory_order_relaxed);
			atomic_store_explicit(&cs->last_ns, now, memory_order_relaxed);
			continue;
		}
		/* The producer hung up and the ring is drained: the end. */
		if (n == -EPIPE) {
			done_set(&cs->done);
			break;
		}
		if (n == -ETIMEDOUT) {
			if (flag(&d->sh->abort_run))
				break;
			continue;
		}
		rb_err("%s: receiving from %s after sample %" PRIu64 ": %s", who, d->name[i],
		       expect, rbus_strerror(n));
		status = RB_EXIT_FAIL;
		break;
	}
	rbus_channel_close(ch);
	rbus_broker_close(b);
	return status;
}

/* Fork child @k (0 producer, 1.. consumers) on @cpu.  Returns 0 or -1. */
static int spawn(struct demo *d, int k, int cpu)
{
	pid_t pid;

	fflush(NULL);  /* or the child would print our buffered output again */
	pid = fork();
	if (pid < 0) {
		rb_err("fork (%s): %s", child_name(k), strerror(errno));
		return -1;
	}
	if (pid == 0) {
		child_setup(d, k, cpu);
		_exit(k == 0 ? producer_main(d) : consumer_main(d, k - 1));
	}
	d->pid[k] = pid;
	return 0;
}

/* Reap the children that have exited.  Returns how many are still alive. */
static int reap(struct demo *d)
{
	int alive = 0;

	for (int k = 0; k < 1 + NCONS; k++) {
		if (!d->pid[k] || d->reaped[k])
			continue;
		if (waitpid(d->pid[k], &d->status[k], WNOHANG) == d->pid[k])
			d->reaped[k] = true;
		else
			alive++;
	}
	return alive;
}

static bool child_failed(const struct demo *d, int k)
{
	return d->reaped[k] && d->status[k] != 0;
}

/* Tell every child to finish without waiting for a peer, and wait for
 * them, killing what is left after STOP_LIMIT_NS. */
static void children_abort(struct demo *d)
{
	uint64_t until = rb_now_ns() + STOP_LIMIT_NS;

	if (!d->sh)
		return;
	set_flag(&d->sh->stop);
	set_flag(&d->sh->abort_run);
	if (d->go[1] >= 0) {
		close(d->go[1]);  /* EOF: the producer will not start */
		d->go[1] = -1;
	}
	while (reap(d)) {
		if (rb_now_ns() >= until || interrupted > 1) {
			for (int k = 0; k < 1 + NCONS; k++)
				if (d->pid[k] && !d->reaped[k])
					kill(d->pid[k], SIGKILL);
			until = UINT64_MAX;
		}
		wait_event(-1, until == UINT64_MAX ? rb_now_ns() + 100000000u : until);
	}
}

/* ---- figures ------------------------------------------------------------------------- */

/* What the live line remembers between two ticks. */
struct snapshot {
	uint64_t t_ns, sent, received;
	struct rb_hist hist;   /* both consumers' */
};

static void take_snapshot(struct demo *d, struct snapshot *s)
{
	s->t_ns = rb_now_ns();
	s->sent = peek64(&d->sh->prod.sent);
	s->received = 0;
	memset(&s->hist, 0, sizeof(s->hist));
	for (int i = 0; i < NCONS; i++) {
		s->received += peek64(&d->sh->cons[i].s.received);
		rb_hist_merge(&s->hist, &d->sh->cons[i].s.hist);
	}
}

static void live_line(struct demo *d, struct rb_live *l, const struct snapshot *a,
		      const struct snapshot *b)
{
	static struct rb_hist delta;
	double dt = (double)(b->t_ns - a->t_ns) / 1e9;
	double sps = dt > 0 ? (double)(b->sent - a->sent) / dt : 0;
	double mps = dt > 0 ? (double)(b->received - a->received) / dt : 0;
	uint64_t lost = 0, bad = 0;
	char r1[24], r2[24], p50[24] = "-", p99[24] = "-";

	/* Latency over this interval only: the difference of two readings
	 * of the cumulative histograms.  Their maximum bounds the interval's
	 * (rb_hist_pct() reports no more than max_ns). */
	memset(&delta, 0, sizeof(delta));
	for (unsigned k = 0; k < RB_HIST_BUCKETS; k++) {
		delta.b[k] = b->hist.b[k] - a->hist.b[k];
		delta.n += delta.b[k];
	}
	delta.max_ns = b->hist.max_ns;
	if (delta.n) {
		rb_fmt_ns(p50, sizeof(p50), rb_hist_pct(&delta, 0.50));
		rb_fmt_ns(p99, sizeof(p99), rb_hist_pct(&delta, 0.99));
	}
	for (int i = 0; i < NCONS; i++) {
		struct consumer_stats *cs = &d->sh->cons[i].s;

		lost += peek64(&cs->gaps);
		bad += peek64(&cs->corrupt) + peek64(&cs->disordered);
	}
	rb_live(l, "%5.1f s  %s samples/s  %s msg/s  %.1f MB/s  latency p50 %s p99 %s  "
		"lost %" PRIu64 "  corrupt %" PRIu64,
		(double)(b->t_ns - d->t0) / 1e9, rb_fmt_count(r1, sizeof(r1), sps),
		rb_fmt_count(r2, sizeof(r2), mps), mps * (double)sizeof(struct sample) / 1e6,
		p50, p99, lost, bad);
}

/* The final figures of consumer @i, read after it was reaped. */
struct result {
	uint64_t sent, received, verified, lost, corrupt, disordered, empty;
	double secs, rate;
	bool done, ok;
};

static void consumer_result(struct demo *d, int i, uint64_t run_ns, struct result *r)
{
	struct consumer_stats *cs = &d->sh->cons[i].s;
	bool done = done_seen(&cs->done);  /* first: then the counters are final */
	uint64_t start = peek64(&d->sh->prod.start_ns), last = peek64(&cs->last_ns);
	uint64_t next = peek64(&cs->next_seq), sent = peek64(&d->sh->prod.sent);

	r->done = done;
	r->sent = peek64(&d->sh->prod.sent_to[i]);
	r->received = peek64(&cs->received);
	r->verified = peek64(&cs->verified);
	/* Skipped inside the stream, and missing at its end. */
	r->lost = peek64(&cs->gaps) + (r->sent > next ? r->sent - next : 0);
	r->corrupt = peek64(&cs->corrupt);
	r->disordered = peek64(&cs->disordered);
	r->empty = peek64(&cs->empty);
	/* Over the run, or longer if the consumer was still draining after
	 * its end. */
	r->secs = (double)(last > start && last - start > run_ns ? last - start : run_ns) / 1e9;
	r->rate = r->secs > 0 ? (double)r->received / r->secs : 0;
	r->ok = !child_failed(d, 1 + i) && d->reaped[1 + i] && done &&
		r->sent == sent && r->received == sent && r->verified == sent &&
		r->lost == 0 && r->corrupt == 0 && r->disordered == 0;
}

/* Say on stderr what went wrong with consumer @i. */
static void consumer_complain(struct demo *d, int i, const struct result *r)
{
	uint64_t sent = peek64(&d->sh->prod.sent);

	if (r->received != sent || r->verified != sent)
		rb_err("consumer %d (%s): verified %" PRIu64 " of %" PRIu64 " samples sent "
		       "(received %" PRIu64 ")", i, d->name[i], r->verified, sent, r->received);
	if (r->lost || r->corrupt || r->disordered)
		rb_err("consumer %d (%s): %" PRIu64 " lost, %" PRIu64 " corrupt, %" PRIu64
		       " out of order", i, d->name[i], r->lost, r->corrupt, r->disordered);
	if (!r->done && !child_failed(d, 1 + i))
		rb_err("consumer %d (%s): did not see the producer hang up", i, d->name[i]);
}

static void print_summary(struct demo *d, const struct result *res, bool ok, uint64_t run_ns)
{
	uint64_t sent = peek64(&d->sh->prod.sent);
	double secs = (double)run_ns / 1e9;
	char a[24], b[24], c[24], e[24], f[24];

	printf("sent %" PRIu64 " samples of %zu bytes in %.2f s (%s/s) to each of %d channels\n",
	       sent, sizeof(struct sample), secs,
	       rb_fmt_count(a, sizeof(a), secs > 0 ? (double)sent / secs : 0), NCONS);
	printf("%-8s  %-*s  %10s  %4s  %7s  %12s  %9s  %9s  %9s  %9s  %8s  %6s\n",
	       "consumer", (int)strlen(d->name[0]), "channel", "received", "lost", "corrupt",
	       "out-of-order", "p50", "p90", "p99", "max", "msg/s", "MB/s");
	for (int i = 0; i < NCONS; i++) {
		const struct rb_hist *h = &d->sh->cons[i].s.hist;

		printf("%-8d  %s  %10" PRIu64 "  %4" PRIu64 "  %7" PRIu64 "  %12" PRIu64
		       "  %9s  %9s  %9s  %9s  %8s  %6.1f\n",
		       i, d->name[i], res[i].received, res[i].lost, res[i].corrupt,
		       res[i].disordered,
		       rb_fmt_ns(a, sizeof(a), rb_hist_pct(h, 0.50)),
		       rb_fmt_ns(b, sizeof(b), rb_hist_pct(h, 0.90)),
		       rb_fmt_ns(c, sizeof(c), rb_hist_pct(h, 0.99)),
		       rb_fmt_ns(e, sizeof(e), h->max_ns),
		       rb_fmt_count(f, sizeof(f), res[i].rate),
		       res[i].rate * (double)sizeof(struct sample) / 1e6);
	}
	printf("rings found full by the producer %" PRIu64, peek64(&d->sh->prod.full[0]));
	for (int i = 1; i < NCONS; i++)
		printf(" and %" PRIu64, peek64(&d->sh->prod.full[i]));
	printf(" times, empty by the consumers %" PRIu64, res[0].empty);
	for (int i = 1; i < NCONS; i++)
		printf(" and %" PRIu64, res[i].empty);
	printf(" times\n");
	if (interrupted)
		printf("interrupted after %.1f s\n", secs);
	if (ok)
		printf("OK: each consumer received every sample sent, once, in order and intact\n");
	else
		printf("FAILED: not every sample sent was verified (see the messages above)\n");
}

/* --json: one object, on one line (ringbus(1) lists the keys):
 *   ok, interrupted, socket, private_broker, duration_s (asked), rate
 *   (asked; 0 full speed), capacity, sample_bytes,
 *   producer {cpu (-1 unpinned), sent, seconds, samples_per_s,
 *             full_waits [per channel]},
 *   consumers [{channel, cpu, ok, sent (to its channel), received,
 *               verified, lost, corrupt, out_of_order, empty_waits,
 *               msgs_per_s, mb_per_s, latency_ns {p50, p90, p99, max, mean}}]
 * New keys may come; these keep their meaning. */
static void print_json(struct demo *d, const struct result *res, bool ok, uint64_t run_ns)
{
	struct rb_json j;
	uint64_t sent = peek64(&d->sh->prod.sent);
	double secs = (double)run_ns / 1e9;

	rb_json_init(&j, stdout);
	rb_json_open(&j, NULL, '{');
	rb_json_bool(&j, "ok", ok);
	rb_json_bool(&j, "interrupted", interrupted != 0);
	rb_json_str(&j, "socket", d->sock);
	rb_json_bool(&j, "private_broker", d->o.socket == NULL);
	rb_json_f64(&j, "duration_s", (double)d->o.duration_ns / 1e9);
	rb_json_u64(&j, "rate", d->o.rate);
	rb_json_u64(&j, "capacity", d->o.capacity);
	rb_json_u64(&j, "sample_bytes", sizeof(struct sample));
	rb_json_open(&j, "producer", '{');
	rb_json_i64(&j, "cpu", d->cpu_prod);
	rb_json_u64(&j, "sent", sent);
	rb_json_f64(&j, "seconds", secs);
	rb_json_f64(&j, "samples_per_s", secs > 0 ? (double)sent / secs : 0);
	rb_json_open(&j, "full_waits", '[');
	for (int i = 0; i < NCONS; i++)
		rb_json_u64(&j, NULL, peek64(&d->sh->prod.full[i]));
	rb_json_close(&j, ']');
	rb_json_close(&j, '}');
	rb_json_open(&j, "consumers", '[');
	for (int i = 0; i < NCONS; i++) {
		const struct rb_hist *h = &d->sh->cons[i].s.hist;

		rb_json_open(&j, NULL, '{');
		rb_json_str(&j, "channel", d->name[i]);
		rb_json_i64(&j, "cpu", d->cpu_cons);
		rb_json_bool(&j, "ok", res[i].ok);
		rb_json_u64(&j, "sent", res[i].sent);
		rb_json_u64(&j, "received", res[i].received);
		rb_json_u64(&j, "verified", res[i].verified);
		rb_json_u64(&j, "lost", res[i].lost);
		rb_json_u64(&j, "corrupt", res[i].corrupt);
		rb_json_u64(&j, "out_of_order", res[i].disordered);
		rb_json_u64(&j, "empty_waits", res[i].empty);
		rb_json_f64(&j, "msgs_per_s", res[i].rate);
		rb_json_f64(&j, "mb_per_s", res[i].rate * (double)sizeof(struct sample) / 1e6);
		rb_json_open(&j, "latency_ns", '{');
		rb_json_u64(&j, "p50", rb_hist_pct(h, 0.50));
		rb_json_u64(&j, "p90", rb_hist_pct(h, 0.90));
		rb_json_u64(&j, "p99", rb_hist_pct(h, 0.99));
		rb_json_u64(&j, "max", h->max_ns);
		rb_json_u64(&j, "mean", h->n ? h->sum_ns / h->n : 0);
		rb_json_close(&j, '}');
		rb_json_close(&j, '}');
	}
	rb_json_close(&j, ']');
	rb_json_close(&j, '}');
	rb_json_end(&j);
}

/* ---- the run ------------------------------------------------------------------------- */

/* Have the broker create the two channels. */
static int create_channels(struct demo *d)
{
	struct rbus_broker_create_opts co;

	rbus_broker_create_opts_init(&co);
	co.kind = RBUS_KIND_SPSC;
	co.capacity = d->o.capacity;
	co.max_msg = sizeof(struct sample);
	for (int i = 0; i < NCONS; i++) {
		int err;

		snprintf(d->name[i], sizeof(d->name[i]), "demo-%d-%d", (int)d->parent, i);
		err = rbus_broker_create(d->b, d->name[i], &co, NULL);
		if (err < 0) {
			rb_err("creating channel %s (SPSC, %u slots of %zu bytes) at %s: %s",
			       d->name[i], co.capacity, sizeof(struct sample), d->sock,
			       rbus_strerror(err));
			return rb_broker_exit(err) == RB_EXIT_NOCHAN ? RB_EXIT_FAIL : rb_broker_exit(err);
		}
		d->created[i] = true;
	}
	return 0;
}

/* Remove the channels from a broker that outlives us.  Returns 0 or -1. */
static int unlink_channels(struct demo *d)
{
	int ret = 0;

	for (int i = 0; i < NCONS; i++) {
		int err;

		if (!d->created[i])
			continue;
		err = rbus_broker_unlink(d->b, d->name[i]);
		if (err < 0) {
			rb_err("removing channel %s from the broker at %s: %s", d->name[i],
			       d->sock, rbus_strerror(err));
			ret = -1;
		}
		d->created[i] = false;
	}
	return ret;
}

/* Producer on the first CPU, both consumers on the second: on two cores
 * the producer never waits for a consumer's time slice, and the consumers,
 * which mostly sleep or take long batches, take turns.  With one CPU
 * nothing is pinned. */
static void pick_cpus(struct demo *d)
{
	int cpus[2];

	d->cpu_prod = d->cpu_cons = -1;
	if (d->o.pin && rb_allowed_cpus(cpus, 2) == 2) {
		d->cpu_prod = cpus[0];
		d->cpu_cons = cpus[1];
	}
}

/* Start the children and wait until the three have their roles.  Returns
 * 0, or -1 having said why. */
static int start_children(struct demo *d)
{
	uint64_t until;
	int got = 0;
	bool eof = false;

	if (pipe2(d->ready, O_CLOEXEC) || pipe2(d->go, O_CLOEXEC)) {
		rb_err("pipe: %s", strerror(errno));
		return -1;
	}
	/* Consumers first: they are waiting when the first sample comes. */
	for (int k = 1; k <= NCONS; k++)
		if (spawn(d, k, d->cpu_cons))
			return -1;
	if (spawn(d, 0, d->cpu_prod))
		return -1;
	close(d->ready[1]);
	d->ready[1] = -1;
	close(d->go[0]);
	d->go[0] = -1;

	until = rb_now_ns() + START_LIMIT_NS;
	while (got < 1 + NCONS) {
		char buf[8];
		ssize_t n;

		if (interrupted)
			return -1;
		if (reap(d) < 1 + NCONS) {
			for (int k = 0; k < 1 + NCONS; k++) {
				char how[64], label[160];

				if (!d->reaped[k])
					continue;
				describe_status(how, sizeof(how), d->status[k]);
				rb_err("%s %s before the start",
				       child_label(d, k, label, sizeof(label)), how);
			}
			return -1;
		}
		if (rb_now_ns() >= until) {
			rb_err("the producer and consumers did not open their channels within %llu s",
			       START_LIMIT_NS / 1000000000ull);
			return -1;
		}
		/* After EOF (every child wrote or died) only SIGCHLD is news. */
		if (!wait_event(eof ? -1 : d->ready[0], until))
			continue;
		n = read(d->ready[0], buf, sizeof(buf));
		if (n > 0)
			got += (int)n;
		else if (n == 0)
			eof = true;
	}
	return 0;
}

/* From the start to the last child's exit: the live line, Ctrl-C, and
 * the end of children that fail. */
static void run(struct demo *d, struct rb_live *live)
{
	static struct snapshot snap[2];
	uint64_t next_tick, kill_at;
	int cur = 0;
	bool stopping = false, aborted = false, killed = false;

	d->t0 = rb_now_ns();
	if (write(d->go[1], "g", 1) != 1)
		rb_err("telling the producer to start: %s", strerror(errno));
	close(d->go[1]);
	d->go[1] = -1;
	next_tick = d->t0 + TICK_NS;
	kill_at = d->t0 + (uint64_t)d->o.duration_ns + STOP_LIMIT_NS;
	take_snapshot(d, &snap[cur]);
	snap[cur].t_ns = d->t0;
	while (reap(d)) {
		uint64_t now = rb_now_ns();

		if (interrupted && !stopping) {
			/* Stop sending; the consumers drain what was sent. */
			set_flag(&d->sh->stop);
			stopping = true;
			kill_at = now + STOP_LIMIT_NS;
		}
		for (int k = 0; k < 1 + NCONS && !aborted; k++) {
			if (!child_failed(d, k))
				continue;
			/* Its peers would wait for it: call the run off. */
			set_flag(&d->sh->stop);
			set_flag(&d->sh->abort_run);
			aborted = true;
			if (!stopping)
				kill_at = now + STOP_LIMIT_NS;
			stopping = true;
		}
		if ((now >= kill_at || interrupted > 1) && !killed) {
			rb_err("the run did not end %s: killing what is left",
			       interrupted > 1 ? "on the second signal" : "in time");
			for (int k = 0; k < 1 + NCONS; k++)
				if (!d->reaped[k])
					kill(d->pid[k], SIGKILL);
			killed = true;
		}
		if (now >= next_tick) {
			take_snapshot(d, &snap[!cur]);
			live_line(d, live, &snap[cur], &snap[!cur]);
			cur = !cur;
			while (next_tick <= now)
				next_tick += TICK_NS;
		}
		wait_event(-1, next_tick < kill_at ? next_tick : kill_at);
	}
	d->t_end = rb_now_ns();
	rb_live_done(live);
}

/* The verdict and the summary; returns the exit status. */
static int finish(struct demo *d)
{
	struct result res[NCONS];
	bool ok = done_seen(&d->sh->prod.done);  /* first: see D2 */
	uint64_t start = peek64(&d->sh->prod.start_ns), end = peek64(&d->sh->prod.end_ns);
	uint64_t sent = peek64(&d->sh->prod.sent), run_ns;

	if (!end) {
		/* The producer did not get to the end: time the run as we saw it. */
		start = start ? start : d->t0;
		end = d->t_end;
	}
	run_ns = end > start ? end - start : 0;
	for (int k = 0; k < 1 + NCONS; k++) {
		char how[64], label[160];

		if (!d->status[k])
			continue;
		describe_status(how, sizeof(how), d->status[k]);
		rb_err("%s %s", child_label(d, k, label, sizeof(label)), how);
		ok = false;
	}
	if (sent == 0) {
		rb_err("no sample was sent");
		ok = false;
	}
	for (int i = 0; i < NCONS; i++) {
		consumer_result(d, i, run_ns, &res[i]);
		if (!res[i].ok) {
			consumer_complain(d, i, &res[i]);
			ok = false;
		}
	}
	if (d->o.json)
		print_json(d, res, ok, run_ns);
	else
		print_summary(d, res, ok, run_ns);
	fflush(stdout);
	return ok ? RB_EXIT_OK : RB_EXIT_FAIL;
}

/* Undo what was done, in reverse; safe at every stage.  Returns -1 if
 * something failed here (said), else 0. */
static int cleanup(struct demo *d)
{
	int ret = 0;

	children_abort(d);
	for (int f = 0; f < 2; f++) {
		if (d->ready[f] >= 0)
			close(d->ready[f]);
		if (d->go[f] >= 0)
			close(d->go[f]);
	}
	if (d->b) {
		/* A private broker goes with its channels. */
		if (d->o.socket && unlink_channels(d))
			ret = -1;
		rbus_broker_close(d->b);
		d->b = NULL;
	}
	if (daemon_stop(d))
		ret = -1;
	if (d->sh)
		munmap(d->sh, sizeof(*d->sh));
	d->sh = NULL;
	return ret;
}

static void print_header(struct demo *d)
{
	if (d->o.socket)
		printf("broker: ringbusd at %s\n", d->sock);
	else
		printf("broker: private ringbusd (pid %d) at %s\n", (int)d->daemon_pid, d->sock);
	printf("channels: %s and %s, SPSC, %u slots each, %zu-byte samples\n", d->name[0],
	       d->name[1], d->o.capacity, sizeof(struct sample));
	printf("producer pid %d", (int)d->pid[0]);
	if (d->cpu_prod >= 0)
		printf(" on CPU %d", d->cpu_prod);
	printf(", consumers pid %d and %d", (int)d->pid[1], (int)d->pid[2]);
	if (d->cpu_cons >= 0)
		printf(" on CPU %d", d->cpu_cons);
	printf("; %g s at ", (double)d->o.duration_ns / 1e9);
	if (d->o.rate)
		printf("%" PRIu64 " samples/s\n", d->o.rate);
	else
		printf("full speed\n");
	fflush(stdout);
}

int cmd_demo(int argc, char **argv)
{
	static struct demo demo;  /* large; and the children get a copy */
	struct demo *d = &demo;
	struct rb_live live;
	int st;

	st = parse_options(argc, argv, &d->o);
	if (st >= 0)
		return st;
	d->parent = getpid();
	d->ready[0] = d->ready[1] = d->go[0] = d->go[1] = -1;
	rb_crc32c(0, NULL, 0);  /* builds its table: once, not in each child */
	signals_install();
	pick_cpus(d);

	if (d->o.socket) {
		int r = rbus_broker_socket_path(d->o.socket, d->sock, sizeof(d->sock));

		if (r < 0) {
			st = rb_usage_err("--socket %s: %s", d->o.socket, rbus_strerror(r));
			goto out;
		}
	} else if (daemon_start(d)) {
		st = RB_EXIT_FAIL;
		goto out;
	}
	st = rb_connect(d->sock, &d->b);
	if (st)
		goto out;
	st = create_channels(d);
	if (st)
		goto out;
	d->sh = mmap(NULL, sizeof(*d->sh), PROT_READ | PROT_WRITE,
		     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (d->sh == MAP_FAILED) {
		rb_err("mapping the shared counters: %s", strerror(errno));
		d->sh = NULL;
		st = RB_EXIT_FAIL;
		goto out;
	}
	if (start_children(d)) {
		st = RB_EXIT_FAIL;
		goto out;
	}
	if (!d->o.json)
		print_header(d);
	/* On a terminal only (ringbus(1)); ended before the summary or JSON. */
	rb_live_init(&live, stdout);
	run(d, &live);
	st = finish(d);
out:
	if (cleanup(d) && st == RB_EXIT_OK)
		st = RB_EXIT_FAIL;
	if (interrupted && !d->t0)
		rb_err("interrupted before the run began");
	signals_restore();
	return st;
}
