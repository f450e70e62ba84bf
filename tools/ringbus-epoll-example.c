/* SPDX-License-Identifier: MIT */
/*
 * ringbus-epoll-example - a ringbus consumer inside an epoll loop.
 *
 * How a service that already runs an event loop takes messages from a
 * ringbus channel without a thread of its own:
 *
 *   - The region is created with the eventfd wakeup backend
 *     (opts.wakeup = RBUS_WAKE_EVENTFD), so a consumer handle has a pollable
 *     fd, rbus_channel_fd().
 *   - A forked child is the producer.  It sends --count messages with
 *     rbus_send_wait(..., RBUS_FOREVER), in bursts with short pauses, so that
 *     the consumer keeps going to sleep and being woken.  Each message carries
 *     its sequence number and a payload derived from it.
 *   - The parent's epoll set holds the channel's fd and a timerfd ticking
 *     every 200 ms (standing for the other fds of a real service; each tick
 *     prints a progress line).  On EPOLLIN of the channel it drains with
 *     rbus_recv() until -EAGAIN and re-arms with rbus_channel_arm(), exactly
 *     as include/ringbus/wait.h documents; every message is verified.
 *   - When the producer has closed its handle and the ring is empty,
 *     rbus_recv() returns -EPIPE: the stream is over.
 *
 * The timer tick also drains the channel.  An armed handle is woken by its
 * producer reliably (rbus_channel_arm() issues the membarrier a long sleep
 * does), but a producer that dies between taking the registrations and
 * writing the eventfd would leave it unwoken (ringbus/wait.h), and a loop
 * that serves other fds is cheap to make robust against that.
 *
 * Exit status: 0 when every message arrived once, in order and intact, and
 * the producer then hung up; 1 when something failed (the message on
 * stderr names the call); 2 on a usage error.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ringbus.h>

#define PROG         "ringbus-epoll-example"
#define CAPACITY     256u       /* slots: small, so the producer waits too */
#define MAX_MSG      64u
#define HDR_LEN      8u         /* the sequence number, then the payload */
#define BURST        1000u      /* messages per burst of the producer */
#define PAUSE_NS     4000000L   /* pause between bursts: 4 ms */
#define TICK_NS      200000000L /* the timerfd period: 200 ms */
#define COUNT_DEFAULT 100000u

/* ---- messages ------------------------------------------------------------ */

/* Length of message seq: 8 to MAX_MSG bytes, varying. */
static size_t msg_len(uint64_t seq)
{
	return HDR_LEN + (size_t)(seq % (MAX_MSG - HDR_LEN + 1));
}

static unsigned char msg_byte(uint64_t seq, size_t i)
{
	return (unsigned char)(seq * 131 + i * 7 + 1);
}

static size_t msg_make(unsigned char *buf, uint64_t seq)
{
	size_t len = msg_len(seq);

	memcpy(buf, &seq, HDR_LEN);
	for (size_t i = HDR_LEN; i < len; i++)
		buf[i] = msg_byte(seq, i);
	return len;
}

/* 0 if buf/len is message want; else -1 with the reason on stderr. */
static int msg_check(const unsigned char *buf, size_t len, uint64_t want)
{
	uint64_t seq;

	if (len < HDR_LEN) {
		fprintf(stderr, PROG ": message %" PRIu64 ": %zu bytes, too short\n",
			want, len);
		return -1;
	}
	memcpy(&seq, buf, HDR_LEN);
	if (seq != want) {
		fprintf(stderr, PROG ": expected message %" PRIu64 ", got %" PRIu64
			" (lost, duplicated or reordered)\n", want, seq);
		return -1;
	}
	if (len != msg_len(seq)) {
		fprintf(stderr, PROG ": message %" PRIu64 ": %zu bytes, expected %zu\n",
			seq, len, msg_len(seq));
		return -1;
	}
	for (size_t i = HDR_LEN; i < len; i++) {
		if (buf[i] != msg_byte(seq, i)) {
			fprintf(stderr, PROG ": message %" PRIu64 ": byte %zu corrupt\n",
				seq, i);
			return -1;
		}
	}
	return 0;
}

/* ---- the producer (child process) --------------------------------------- */

/* Take the producer role, tell the parent (one byte on ready_w), send count
 * messages in bursts, and hang up by closing the handle.  Returns the exit
 * status of the child. */
static int producer(struct rbus_region *r, int ready_w, uint64_t count)
{
	const struct timespec pause = { .tv_sec = 0, .tv_nsec = PAUSE_NS };
	unsigned char buf[MAX_MSG];
	struct rbus_channel *p;
	int err;

	err = rbus_channel_open(r, RBUS_PRODUCER, 0, &p);
	if (err) {
		fprintf(stderr, PROG ": producer: rbus_channel_open: %s\n",
			rbus_strerror(err));
		return 1;
	}
	if (write(ready_w, "", 1) != 1) {
		fprintf(stderr, PROG ": producer: write: %s\n", strerror(errno));
		return 1;
	}
	close(ready_w);

	for (uint64_t seq = 0; seq < count; seq++) {
		size_t len = msg_make(buf, seq);

		/* Blocks while the ring is full: the consumer's rbus_recv()
		 * wakes us through the region's other eventfd. */
		err = rbus_send_wait(p, buf, len, RBUS_FOREVER);
		if (err) {
			fprintf(stderr, PROG ": producer: rbus_send_wait of message %"
				PRIu64 ": %s\n", seq, rbus_strerror(err));
			return 1;
		}
		if ((seq + 1) % BURST == 0 && seq + 1 < count)
			nanosleep(&pause, NULL);
	}
	/* The hang-up: the consumer gets -EPIPE once it has taken the rest. */
	rbus_channel_close(p);
	rbus_region_close(r);
	return 0;
}

/* ---- the consumer (parent process) -------------------------------------- */

struct consumer {
	struct rbus_channel *ch;
	pid_t child;            /* the producer */
	bool reaped;            /* ... has exited and been waited for */
	uint64_t count;         /* messages expected */
	uint64_t next;          /* sequence number of the next message */
	bool hung_up;           /* rbus_recv() said -EPIPE */
	/* What the loop did, for the progress lines. */
	uint64_t fd_events, empty_events, ticks, by_tick;
};

/*
 * Take every message that is there, then arm the fd: the loop of wait.h.
 * rbus_channel_arm() returning 1 means something arrived (or the producer
 * hung up) while we armed, so drain again before waiting for the fd.
 * Returns how many messages were taken, or -1 on a failure (reported).
 */
static int64_t drain(struct consumer *c)
{
	unsigned char buf[MAX_MSG];
	int64_t got = 0;
	ssize_t n;
	int armed;

	do {
		while ((n = rbus_recv(c->ch, buf, sizeof(buf))) >= 0) {
			if (msg_check(buf, (size_t)n, c->next) < 0)
				return -1;
			c->next++;
			got++;
		}
		if (n == -EPIPE) {
			/* Empty, and no producer is attached: ours closed its
			 * handle, and this program starts no other, so nothing
			 * more will come (-EPIPE alone does not promise that). */
			c->hung_up = true;
			return got;
		}
		if (n != -EAGAIN) {
			fprintf(stderr, PROG ": rbus_recv: %s\n", rbus_strerror((int)n));
			return -1;
		}
		armed = rbus_channel_arm(c->ch);
		if (armed < 0) {
			fprintf(stderr, PROG ": rbus_channel_arm: %s\n", rbus_strerror(armed));
			return -1;
		}
	} while (armed > 0);
	return got;
}

/* Has the producer died or failed?  Reaps it if it exited (block: wait for
 * that).  Returns 1 if it exited with status 0, 0 if it still runs, -1
 * (reported) otherwise. */
static int check_child(struct consumer *c, bool block)
{
	int st;
	pid_t w;

	if (c->reaped)
		return 1;
	do
		w = waitpid(c->child, &st, block ? 0 : WNOHANG);
	while (w < 0 && errno == EINTR);
	if (w < 0) {
		fprintf(stderr, PROG ": waitpid: %s\n", strerror(errno));
		return -1;
	}
	if (w == 0)
		return 0;
	c->reaped = true;
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 1;
	if (WIFSIGNALED(st))
		fprintf(stderr, PROG ": the producer was killed by signal %d\n",
			WTERMSIG(st));
	else
		fprintf(stderr, PROG ": the producer failed (exit status %d)\n",
			WEXITSTATUS(st));
	return -1;
}

/* After a failure: end the producer if it still runs, and reap it.  Never
 * kill() a reaped pid: it may belong to another process by now. */
static void stop_child(struct consumer *c)
{
	if (!c->reaped) {
		kill(c->child, SIGTERM);
		while (waitpid(c->child, NULL, 0) < 0 && errno == EINTR)
			;
		c->reaped = true;
	}
}

static int add_fd(int ep, int fd)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };

	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
		fprintf(stderr, PROG ": epoll_ctl: %s\n", strerror(errno));
		return -1;
	}
	return 0;
}

static double secs_since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

/*
 * The event loop: the channel's fd and a timerfd.  Returns 0 when all
 * messages arrived and the producer hung up, -1 (reported) otherwise.
 */
static int run_loop(struct consumer *c)
{
	const struct itimerspec tick = {
		.it_interval = { .tv_sec = 0, .tv_nsec = TICK_NS },
		.it_value = { .tv_sec = 0, .tv_nsec = TICK_NS },
	};
	struct timespec t0;
	int ep = -1, tfd = -1, cfd, rc = -1;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	cfd = rbus_channel_fd(c->ch);
	if (cfd < 0) {
		fprintf(stderr, PROG ": rbus_channel_fd: %s\n", rbus_strerror(cfd));
		return -1;
	}
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0) {
		fprintf(stderr, PROG ": epoll_create1: %s\n", strerror(errno));
		goto out;
	}
	tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (tfd < 0) {
		fprintf(stderr, PROG ": timerfd_create: %s\n", strerror(errno));
		goto out;
	}
	if (timerfd_settime(tfd, 0, &tick, NULL) < 0) {
		fprintf(stderr, PROG ": timerfd_settime: %s\n", strerror(errno));
		goto out;
	}
	/* Level-triggered EPOLLIN on the channel's fd (the fd belongs to the
	 * region: we never read or close it ourselves). */
	if (add_fd(ep, cfd) < 0 || add_fd(ep, tfd) < 0)
		goto out;

	/* Once at start: messages may be waiting already, and the handle is
	 * not armed yet. */
	if (drain(c) < 0)
		goto out;

	while (!c->hung_up) {
		struct epoll_event evs[4];
		int n = epoll_wait(ep, evs, 4, -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, PROG ": epoll_wait: %s\n", strerror(errno));
			goto out;
		}
		for (int i = 0; i < n && !c->hung_up; i++) {
			int64_t got;

			if (evs[i].data.fd == cfd) {
				c->fd_events++;
				got = drain(c);
				if (got < 0)
					goto out;
				if (got == 0 && !c->hung_up)
					c->empty_events++;
				continue;
			}

			/* The timer: the "other work" of the service. */
			uint64_t expirations;

			if (read(tfd, &expirations, sizeof(expirations)) < 0 &&
			    errno != EAGAIN) {
				fprintf(stderr, PROG ": read(timerfd): %s\n", strerror(errno));
				goto out;
			}
			c->ticks++;
			printf("%6.2f s  %" PRIu64 " of %" PRIu64 " messages, %" PRIu64
			       " fd events (%" PRIu64 " found nothing)\n",
			       secs_since(&t0), c->next, c->count, c->fd_events,
			       c->empty_events);
			fflush(stdout);
			/* A producer that dies does not hang up (its handle is
			 * never closed): notice it here instead of waiting for
			 * ever.  A clean exit is fine: it closed first. */
			if (check_child(c, false) < 0)
				goto out;
			/* The safety net described at the top. */
			got = drain(c);
			if (got < 0)
				goto out;
			c->by_tick += (uint64_t)got;
		}
	}

	if (c->next != c->count) {
		fprintf(stderr, PROG ": the producer hung up after %" PRIu64 " of %"
			PRIu64 " messages\n", c->next, c->count);
		goto out;
	}
	if (check_child(c, true) < 0)
		goto out;
	printf("%6.2f s  all %" PRIu64 " messages in order; %" PRIu64 " fd events (%"
	       PRIu64 " found nothing), %" PRIu64 " ticks, %" PRIu64
	       " messages taken by a tick\n", secs_since(&t0), c->count,
	       c->fd_events, c->empty_events, c->ticks, c->by_tick);
	rc = 0;
out:
	if (tfd >= 0)
		close(tfd);
	if (ep >= 0)
		close(ep);
	return rc;
}

/* ---- main ---------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f, "usage: " PROG " [--count N]\n"
		"\n"
		"Fork a producer that sends N messages (default %u) over an SPSC ringbus\n"
		"channel with the eventfd wakeup backend, and take them in an epoll loop\n"
		"that also serves a 200 ms timerfd.  Every message is verified.\n"
		"\n"
		"  -c, --count N   messages to send (1 or more)\n"
		"  -h, --help      show this help\n"
		"\n"
		"Exit status: 0 when all N arrived in order and the producer hung up,\n"
		"1 on a failure (the message names the call), 2 on a usage error.\n",
		COUNT_DEFAULT);
}

static int parse_count(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!s || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v == 0)
		return -1;
	*out = v;
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "count", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct consumer c = { .count = COUNT_DEFAULT };
	struct rbus_region_opts opts;
	struct rbus_region *r;
	int ready[2], err, opt, rc = 1;
	char byte;
	ssize_t n;

	while ((opt = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			if (parse_count(optarg, &c.count) < 0) {
				fprintf(stderr, PROG ": --count: want a number >= 1, not '%s'\n",
					optarg);
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, PROG ": unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}

	rbus_region_opts_init(&opts);
	opts.kind = RBUS_KIND_SPSC;
	opts.capacity = CAPACITY;
	opts.max_msg = MAX_MSG;
	opts.wakeup = RBUS_WAKE_EVENTFD;
	err = rbus_region_create(&opts, &r);
	if (err) {
		fprintf(stderr, PROG ": rbus_region_create: %s\n", rbus_strerror(err));
		return 1;
	}

	/* The child inherits the mapping and the region's three fds.  It
	 * says when it holds the producer role, so that a producer that
	 * fails before that is an error here, not an endless wait. */
	if (pipe2(ready, O_CLOEXEC) < 0) {
		fprintf(stderr, PROG ": pipe2: %s\n", strerror(errno));
		rbus_region_close(r);
		return 1;
	}
	fflush(stdout);
	c.child = fork();
	if (c.child < 0) {
		fprintf(stderr, PROG ": fork: %s\n", strerror(errno));
		rbus_region_close(r);
		return 1;
	}
	if (c.child == 0) {
		/* Do not outlive the parent: a producer blocked on a full
		 * ring whose consumer died without closing would wait for
		 * ever. */
		if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() == 1)
			_exit(1);
		close(ready[0]);
		_exit(producer(r, ready[1], c.count));
	}

	close(ready[1]);
	do
		n = read(ready[0], &byte, 1);
	while (n < 0 && errno == EINTR);
	close(ready[0]);
	if (n != 1) {
		if (n < 0)
			fprintf(stderr, PROG ": read(pipe): %s\n", strerror(errno));
		else
			fprintf(stderr, PROG ": the producer exited before opening its channel\n");
		check_child(&c, true);
		rbus_region_close(r);
		return 1;
	}

	err = rbus_channel_open(r, RBUS_CONSUMER, 0, &c.ch);
	if (err) {
		fprintf(stderr, PROG ": rbus_channel_open: %s\n", rbus_strerror(err));
		stop_child(&c);
		rbus_region_close(r);
		return 1;
	}
	if (run_loop(&c) == 0)
		rc = 0;
	else
		stop_child(&c);
	rbus_channel_close(c.ch);
	rbus_region_close(r);
	if (rc)
		fprintf(stderr, PROG ": FAILED after %" PRIu64 " of %" PRIu64 " messages\n",
			c.next, c.count);
	return rc;
}
