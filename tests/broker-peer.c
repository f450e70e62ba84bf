/* SPDX-License-Identifier: MIT */
/*
 * broker-peer - a client of ringbusd that test_broker execs, so that the
 * processes exchanging messages are unrelated (no inherited fds or memory):
 * everything they share comes through the daemon.
 *
 *   broker-peer SOCKET NAME produce COUNT [PRODUCER]
 *       Open NAME as producer, send COUNT verified messages (th_msg_make,
 *       producer id PRODUCER, default 0), close.
 *   broker-peer SOCKET NAME consume COUNT
 *       Open NAME as consumer, receive until COUNT messages or the producer
 *       hangs up; every message must check out and come in order.
 *   broker-peer SOCKET NAME report
 *       Open NAME as consumer; for each message: peek it, check it, write
 *       its 8-byte sequence number to stdout, then release it.  Ends when
 *       the producer hangs up.  What was written was received at least
 *       once; a kill between the write and the release repeats one message.
 *
 * Every mode writes "R" to stdout once its role is open (report mode
 * before the first sequence number), so that the test knows the handle is
 * attached and the daemon no longer needed.  Exit status: 0 when all went
 * as described, 1 on a failed call (named on stderr), 2 on bad usage,
 * 3 on a message that was corrupt, out of order or missing.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

#define PEER_MAX_MSG 256u

static int peer_fail(const char *what, const char *name, int err)
{
	fprintf(stderr, "broker-peer: %s %s: %s\n", what, name, rbus_strerror(err));
	return 1;
}

static int write_all(const void *p, size_t n)
{
	const char *c = p;

	while (n) {
		ssize_t k = write(STDOUT_FILENO, c, n);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		c += k;
		n -= (size_t)k;
	}
	return 0;
}

static int open_role(const char *sock, const char *name, enum rbus_role role,
		     struct rbus_channel **ch)
{
	struct rbus_broker *b;
	int err = rbus_broker_connect(sock, &b);

	if (err)
		return peer_fail("connect", sock, err);
	err = rbus_broker_open(b, name, role, 0, ch);
	rbus_broker_close(b);
	if (err)
		return peer_fail("open", name, err);
	if (write_all("R", 1))
		return peer_fail("write", "stdout", -errno);
	return 0;
}

static int produce(struct rbus_channel *ch, uint64_t count, uint32_t id)
{
	unsigned char buf[PEER_MAX_MSG];

	for (uint64_t seq = 0; seq < count; seq++) {
		size_t len = th_msg_make(buf, PEER_MAX_MSG, id, seq);
		int err = rbus_send_wait(ch, buf, len, RBUS_FOREVER);

		if (err)
			return peer_fail("send", "message", err);
	}
	return 0;
}

static int consume(struct rbus_channel *ch, uint64_t count)
{
	unsigned char buf[PEER_MAX_MSG];
	uint64_t next = 0;

	while (next < count) {
		ssize_t n = rbus_recv_wait(ch, buf, sizeof(buf), RBUS_FOREVER);
		uint32_t id;
		uint64_t seq;

		if (n == -EPIPE)
			break;
		if (n < 0)
			return peer_fail("recv", "message", (int)n);
		if (th_msg_check(buf, (size_t)n, PEER_MAX_MSG, &id, &seq) || seq != next) {
			fprintf(stderr, "broker-peer: message %" PRIu64 " corrupt or out of order\n",
				next);
			return 3;
		}
		next++;
	}
	if (next != count) {
		fprintf(stderr, "broker-peer: got %" PRIu64 " of %" PRIu64 " messages\n",
			next, count);
		return 3;
	}
	return 0;
}

static int report(struct rbus_channel *ch)
{
	for (;;) {
		const void *m;
		uint32_t id;
		uint64_t seq;
		ssize_t n = rbus_peek_wait(ch, &m, RBUS_FOREVER);

		if (n == -EPIPE)
			return 0;
		if (n < 0)
			return peer_fail("peek", "message", (int)n);
		if (th_msg_check(m, (size_t)n, PEER_MAX_MSG, &id, &seq)) {
			fprintf(stderr, "broker-peer: corrupt message\n");
			return 3;
		}
		if (write_all(&seq, sizeof(seq)))
			return peer_fail("write", "stdout", -errno);
		n = rbus_release(ch);
		if (n < 0)
			return peer_fail("release", "message", (int)n);
	}
}

int main(int argc, char **argv)
{
	struct rbus_channel *ch = NULL;
	uint64_t count = 0;
	int ret;

	if (argc < 4)
		goto usage;
	if (argc >= 5)
		count = strtoull(argv[4], NULL, 10);
	if (!strcmp(argv[3], "produce") && (argc == 5 || argc == 6)) {
		uint32_t id = argc == 6 ? (uint32_t)strtoul(argv[5], NULL, 10) : 0;

		ret = open_role(argv[1], argv[2], RBUS_PRODUCER, &ch);
		if (!ret)
			ret = produce(ch, count, id);
	} else if (!strcmp(argv[3], "consume") && argc == 5) {
		ret = open_role(argv[1], argv[2], RBUS_CONSUMER, &ch);
		if (!ret)
			ret = consume(ch, count);
	} else if (!strcmp(argv[3], "report") && argc == 4) {
		ret = open_role(argv[1], argv[2], RBUS_CONSUMER, &ch);
		if (!ret)
			ret = report(ch);
	} else {
		goto usage;
	}
	rbus_channel_close(ch);
	return ret;
usage:
	fprintf(stderr, "usage: broker-peer SOCKET NAME produce|consume COUNT [ID] | report\n");
	return 2;
}
