/* SPDX-License-Identifier: MIT */
/*
 * ringbus-chaos - kill MPMC producers and consumers at random, through a
 * private ringbusd, and see whether the channel still flows (make chaos).
 *
 * Three producer and three consumer processes share one 64-slot MPMC
 * channel opened through the broker.  Producers send 16-byte messages
 * (producer id, sequence, a check word), half with rbus_send(), half with
 * reserve/commit; consumers take them with rbus_recv() or peek/release and
 * record each in a shared bitmap.  Every 2-22 ms one of them (of the kind
 * --kill names) is killed with SIGKILL and replaced.  Afterwards every
 * producer is killed, and a fresh one must get 10 000 messages through to
 * the consumers left, each within 5 s.
 *
 * It reports the kills, the deaths and recoveries ringbusd counted, the
 * messages seen, duplicates and damaged messages (both must be 0), and
 * whether the channel still flowed.  A channel that stopped is a slot a
 * dead handle held that ringbusd did not finish (design.md 3.9 and 6.5:
 * with layout version 4, a death between a claim's CAS and its note, which
 * stopped the channel in most runs; version 5 notes before the CAS).  Exit
 * 0 if the channel flowed and nothing was duplicated or damaged, 1
 * otherwise, 2 for bad usage.  Not part of make check: it kills processes
 * at random, so no two runs are alike.
 */
#include "config.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ringbus.h"

#define NP 3
#define NC 3
#define CAPACITY 64
#define MAX_PRODUCERS 1024             /* producer ids, the final one included */
#define MAX_SEQ (1u << 20)             /* messages recorded per producer */
#define FINAL 10000
#define MAGIC UINT64_C(0x9e3779b97f4a7c15)

struct shared {
	_Atomic uint64_t seen[MAX_PRODUCERS][MAX_SEQ / 64];
	_Atomic uint64_t dup, corrupt, got;
};

static struct shared *sh;
static char sock[256];

static struct rbus_channel *open_role(enum rbus_role role)
{
	struct rbus_broker *b = NULL;
	struct rbus_channel *ch = NULL;

	if (rbus_broker_connect(sock, &b) || rbus_broker_open(b, "chaos", role, 0, &ch))
		_exit(20);
	rbus_broker_close(b);
	return ch;
}

/* Send until killed; the last producer stops after FINAL messages. */
static int producer(unsigned id, uint64_t count, int64_t patience_ns)
{
	struct rbus_channel *p = open_role(RBUS_PRODUCER);

	srand((unsigned)getpid());
	for (uint64_t seq = 0; seq < count; seq++) {
		uint64_t m[2] = { ((uint64_t)id << 48) | seq, 0 };
		void *slot;
		int r;

		m[1] = m[0] * MAGIC;
		if (patience_ns) {
			r = rbus_send_wait(p, m, sizeof(m), rbus_deadline_in(patience_ns));
			if (r) {
				fprintf(stderr, "ringbus-chaos: the last producer, message %llu: %s\n",
					(unsigned long long)seq, rbus_strerror(r));
				return 1;
			}
		} else if (rand() & 1) {
			while ((r = rbus_reserve(p, &slot)) == -EAGAIN)
				;
			if (r)
				return 2;
			memcpy(slot, m, sizeof(m));
			if (rbus_commit(p, sizeof(m)))
				return 3;
		} else {
			while ((r = rbus_send(p, m, sizeof(m))) == -EAGAIN)
				;
			if (r)
				return 4;
		}
	}
	rbus_channel_close(p);
	return 0;
}

static void record(const uint64_t m[2])
{
	unsigned id = (unsigned)(m[0] >> 48);
	uint64_t seq = m[0] & ((UINT64_C(1) << 48) - 1), bit;

	if (m[1] != m[0] * MAGIC || id >= MAX_PRODUCERS) {
		atomic_fetch_add(&sh->corrupt, 1);
		return;
	}
	atomic_fetch_add(&sh->got, 1);
	if (seq >= MAX_SEQ)
		return;
	bit = UINT64_C(1) << (seq % 64);
	if (atomic_fetch_or(&sh->seen[id][seq / 64], bit) & bit)
		atomic_fetch_add(&sh->dup, 1);
}

/* Take messages until killed. */
static int consumer(void)
{
	struct rbus_channel *c = open_role(RBUS_CONSUMER);

	srand((unsigned)getpid());
	for (;;) {
		uint64_t m[2];
		const void *q;
		ssize_t n;

		if (rand() & 1) {
			n = rbus_peek(c, &q);
			if (n == sizeof(m)) {
				memcpy(m, q, sizeof(m));
				record(m);
			}
			if (n >= 0 && rbus_release(c) < 0)
				return 5;
		} else {
			n = rbus_recv(c, m, sizeof(m));
			if (n == sizeof(m))
				record(m);
		}
		if (n >= 0 && n != sizeof(m))
			atomic_fetch_add(&sh->corrupt, 1);
		else if (n < 0 && n != -EAGAIN && n != -EPIPE)
			return 6;
	}
}

static pid_t spawn_producer(unsigned id, uint64_t count, int64_t patience_ns)
{
	pid_t pid = fork();

	if (pid == 0)
		_exit(producer(id, count, patience_ns));
	return pid;
}

static pid_t spawn_consumer(void)
{
	pid_t pid = fork();

	if (pid == 0)
		_exit(consumer());
	return pid;
}

static void kill_wait(pid_t pid)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

/* Start ringbusd on a socket in a fresh directory; returns its pid. */
static pid_t start_daemon(const char *path)
{
	char dir[] = "/tmp/ringbus-chaos.XXXXXX", ready[16];
	int fds[2];
	pid_t pid;

	if (!mkdtemp(dir) || pipe(fds))
		return -1;
	snprintf(sock, sizeof(sock), "%s/ringbusd.sock", dir);
	pid = fork();
	if (pid == 0) {
		char fd[16];

		close(fds[0]);
		snprintf(fd, sizeof(fd), "%d", fds[1]);
		execl(path, path, "--socket", sock, "--log-level", "warn", "--ready-fd", fd,
		      (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	if (pid < 0 || read(fds[0], ready, sizeof(ready)) <= 0) {
		close(fds[0]);
		if (pid > 0)
			kill_wait(pid);
		rmdir(dir);
		return -1;
	}
	close(fds[0]);
	return pid;
}

/* Stop it with SIGTERM, so that it removes its socket and lock file, and
 * remove the directory start_daemon() made. */
static void stop_daemon(pid_t pid)
{
	char dir[sizeof(sock)];

	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
	snprintf(dir, sizeof(dir), "%s", sock);
	*strrchr(dir, '/') = '\0';
	rmdir(dir);
}

static void usage(FILE *f)
{
	fprintf(f, "Usage: ringbus-chaos [--seconds N] [--kill producers|consumers|both]\n"
		   "                     [--ringbusd PATH]\n"
		   "Kill MPMC producers and consumers at random for N seconds (default 6),\n"
		   "then check that a fresh producer gets %d messages through.  The kills\n"
		   "end sooner if the %d producer ids run out.\n", FINAL, MAX_PRODUCERS - 1);
}

int main(int argc, char **argv)
{
	const char *daemon = RBUS_BUILDDIR "/src/daemon/ringbusd";
	struct rbus_broker_create_opts o;
	struct rbus_broker_stat st;
	struct rbus_broker *b = NULL;
	pid_t pp[NP], cc[NC], dpid, last;
	unsigned next_id = 0, kills = 0, final_seen = 0;
	int seconds = 6, which = 2, status, flowed;
	int64_t start, stopped;
	int64_t end;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
			seconds = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--kill") && i + 1 < argc) {
			i++;
			which = !strcmp(argv[i], "producers") ? 0 : !strcmp(argv[i], "consumers") ? 1 :
				!strcmp(argv[i], "both") ? 2 : -1;
		} else if (!strcmp(argv[i], "--ringbusd") && i + 1 < argc) {
			daemon = argv[++i];
		} else if (!strcmp(argv[i], "--help")) {
			usage(stdout);
			return 0;
		} else {
			which = -1;
		}
		if (which < 0 || seconds <= 0) {
			usage(stderr);
			return 2;
		}
	}
	/* 128 MiB of bitmaps, of which a run touches a few pages per
	 * producer: reserve nothing up front. */
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
		  MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (sh == MAP_FAILED)
		return 1;
	dpid = start_daemon(daemon);
	if (dpid < 0) {
		fprintf(stderr, "ringbus-chaos: cannot start %s\n", daemon);
		return 1;
	}
	rbus_broker_create_opts_init(&o);
	o.kind = RBUS_KIND_MPMC;
	o.capacity = CAPACITY;
	o.max_msg = 16;
	o.flags = RBUS_BROKER_PERSISTENT;
	if (rbus_broker_connect(sock, &b) || rbus_broker_create(b, "chaos", &o, NULL)) {
		fprintf(stderr, "ringbus-chaos: cannot create the channel at %s\n", sock);
		stop_daemon(dpid);
		return 1;
	}
	for (int i = 0; i < NP; i++)
		pp[i] = spawn_producer(next_id++, UINT64_MAX, 0);
	for (int i = 0; i < NC; i++)
		cc[i] = spawn_consumer();
	srand(1);
	start = rbus_now();
	end = start + (int64_t)seconds * 1000000000;
	while (rbus_now() < end && next_id < MAX_PRODUCERS - 1) {
		struct timespec nap = { 0, (2000 + rand() % 20000) * 1000L };
		int who = which == 0 ? rand() % NP : which == 1 ? NP + rand() % NC
							: rand() % (NP + NC);

		nanosleep(&nap, NULL);
		if (who < NP) {
			kill_wait(pp[who]);
			pp[who] = spawn_producer(next_id++, UINT64_MAX, 0);
		} else {
			kill_wait(cc[who - NP]);
			cc[who - NP] = spawn_consumer();
		}
		kills++;
	}
	stopped = rbus_now();
	for (int i = 0; i < NP; i++)
		kill_wait(pp[i]);
	/* The last producer: every message within 5 s, to the consumers left. */
	last = spawn_producer(next_id, FINAL, 5000000000);
	waitpid(last, &status, 0);
	/* Let the consumers take what is left: until every message of the
	 * last producer is seen, it gave up, or 5 s passed. */
	for (int64_t give_up = rbus_now() + 5000000000; rbus_now() < give_up;) {
		final_seen = 0;
		for (unsigned w = 0; w < (FINAL + 63) / 64; w++)
			final_seen += (unsigned)__builtin_popcountll(atomic_load(&sh->seen[next_id][w]));
		if (final_seen == FINAL || !WIFEXITED(status) || WEXITSTATUS(status))
			break;
		sched_yield();
	}
	for (int i = 0; i < NC; i++)
		kill_wait(cc[i]);
	memset(&st, 0, sizeof(st));
	rbus_broker_stat(b, "chaos", &st);
	rbus_broker_close(b);
	stop_daemon(dpid);

	flowed = WIFEXITED(status) && WEXITSTATUS(status) == 0 && final_seen == FINAL;
	printf("ringbus-chaos: %u kills (%s) in %.1f s%s, %llu deaths and %llu roles recovered by ringbusd\n",
	       kills, which == 0 ? "producers" : which == 1 ? "consumers" : "both",
	       (double)(stopped - start) / 1e9,
	       next_id >= MAX_PRODUCERS - 1 ? " (producer ids ran out)" : "",
	       (unsigned long long)st.deaths, (unsigned long long)st.recovered);
	printf("  %llu messages seen, %llu duplicated, %llu damaged\n",
	       (unsigned long long)atomic_load(&sh->got), (unsigned long long)atomic_load(&sh->dup),
	       (unsigned long long)atomic_load(&sh->corrupt));
	printf("  the last producer got %u of %d through: the channel %s\n", final_seen, FINAL,
	       flowed ? "still flows" : "STOPPED");
	return flowed && !atomic_load(&sh->dup) && !atomic_load(&sh->corrupt) ? 0 : 1;
}
