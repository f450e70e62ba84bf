/* SPDX-License-Identifier: MIT */
/*
 * ring_cases.h - the ring contract of include/ringbus/channel.h, tested the
 * same way for both kinds.  Included by test_spsc.c and test_mpmc.c, which
 * set `ring_kind` before running and add their own cases.
 */
#ifndef RINGBUS_TEST_RING_CASES_H
#define RINGBUS_TEST_RING_CASES_H

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "helpers.h"
#include "layout.h"

static enum rbus_kind ring_kind;
static int fds_at_setup;

struct ring {
	struct rbus_region *r;
	struct rbus_channel *p, *c;
};

static void fd_setup(void)
{
	fds_at_setup = th_count_fds();
}

static void fd_teardown(void)
{
	ck_assert_int_eq(th_count_fds(), fds_at_setup);
}

static void ring_open(struct ring *g, uint32_t capacity, uint32_t max_msg,
		      uint64_t start)
{
	struct rbus_region_opts o;

	rbus_region_opts_init(&o);
	o.kind = ring_kind;
	o.capacity = capacity;
	o.max_msg = max_msg;
	o.start_index = start;
	ck_assert_rbus(rbus_region_create(&o, &g->r), 0);
	ck_assert_rbus(rbus_channel_open(g->r, RBUS_PRODUCER, 0, &g->p), 0);
	ck_assert_rbus(rbus_channel_open(g->r, RBUS_CONSUMER, 0, &g->c), 0);
}

static void ring_close(struct ring *g)
{
	rbus_channel_close(g->p);
	rbus_channel_close(g->c);
	rbus_region_close(g->r);
}

/* Message i of a simple stream: length i % (max+1), bytes (i + k) & 0xff. */
static size_t pattern(unsigned char *buf, uint64_t i, size_t max)
{
	size_t len = max ? (size_t)(i % (max + 1)) : 0;

	for (size_t k = 0; k < len; k++)
		buf[k] = (unsigned char)(i + k);
	return len;
}

static void expect_pattern(const unsigned char *buf, size_t len, uint64_t i, size_t max)
{
	unsigned char want[4096];
	size_t wlen = pattern(want, i, max);

	ck_assert_uint_eq(len, wlen);
	ck_assert_msg(memcmp(buf, want, len) == 0, "message %llu corrupt",
		      (unsigned long long)i);
}

START_TEST(ring_empty)
{
	struct ring g;
	unsigned char buf[64];
	const void *p;
	struct iovec iov[4] = { { buf, sizeof(buf) } };

	ring_open(&g, 8, 64, 0);
	ck_assert_rbus(rbus_recv(g.c, buf, sizeof(buf)), -EAGAIN);
	ck_assert_rbus(rbus_peek(g.c, &p), -EAGAIN);
	ck_assert_rbus(rbus_recv_batch(g.c, iov, 1), -EAGAIN);
	ck_assert_rbus(rbus_peek_batch(g.c, iov, 4), -EAGAIN);
	/* A failed peek leaves nothing outstanding. */
	ck_assert_rbus(rbus_release(g.c), -EINVAL);
	ring_close(&g);
}
END_TEST

START_TEST(ring_full)
{
	struct ring g;
	unsigned char buf[64];
	void *w;
	uint64_t i;

	ring_open(&g, 16, 64, 0);
	for (i = 0; i < 16; i++)
		ck_assert_rbus(rbus_send(g.p, buf, pattern(buf, i, 64)), 0);
	ck_assert_rbus(rbus_send(g.p, buf, 1), -EAGAIN);
	ck_assert_rbus(rbus_reserve(g.p, &w), -EAGAIN);
	/* One slot freed, one message fits, then full again. */
	ck_assert_rbus(rbus_recv(g.c, buf, sizeof(buf)), pattern(buf, 0, 64));
	ck_assert_rbus(rbus_send(g.p, buf, pattern(buf, 16, 64)), 0);
	ck_assert_rbus(rbus_send(g.p, buf, 1), -EAGAIN);
	for (i = 1; i <= 16; i++) {
		ssize_t n = rbus_recv(g.c, buf, sizeof(buf));
		ck_assert_int_ge(n, 0);
		expect_pattern(buf, (size_t)n, i, 64);
	}
	ck_assert_rbus(rbus_recv(g.c, buf, sizeof(buf)), -EAGAIN);
	ring_close(&g);
}
END_TEST

/* Wrap-around of the 64-bit indices and the 32-bit stamps: several laps
 * from start indices just below 2^32 and 2^64, moving messages with every
 * API and batch sizes that do not divide the capacity. */
static const uint64_t wrap_starts[] = {
	0,
	UINT64_C(0xffffffff) - 3,          /* stamps wrap 2^32 mid-lap */
	UINT64_C(0x100000000) - 16,        /* a lap ends exactly at 2^32 */
	UINT64_MAX - 16 + 1,               /* 2^64 - capacity */
	UINT64_MAX - 5,                    /* indices wrap to 0 mid-lap */
};

START_TEST(ring_wrap)
{
	const uint32_t cap = 16, max = 40;
	uint64_t start = wrap_starts[_i], sent = 0, got = 0;
	struct ring g;
	struct rbus_region_info info;
	unsigned char buf[64];
	struct iovec iov[7];
	unsigned char bufs[7][64];

	ring_open(&g, cap, max, start);
	rbus_region_info(g.r, &info);
	ck_assert_uint_eq(info.head, start);
	ck_assert_uint_eq(info.tail, start);
	while (got < 10 * cap) {
		unsigned mode = (unsigned)(sent % 5), n;
		int k;

		/* Producer: fill what fits with one of the APIs. */
		for (;;) {
			if (mode == 0) {
				k = rbus_send(g.p, buf, pattern(buf, sent, max));
				k = k == 0 ? 1 : k;
			} else if (mode == 1) {
				n = 1 + (unsigned)(sent % 7);
				for (unsigned j = 0; j < n; j++) {
					iov[j].iov_base = bufs[j];
					iov[j].iov_len = pattern(bufs[j], sent + j, max);
				}
				k = rbus_send_batch(g.p, iov, n);
			} else {
				n = 1 + (unsigned)(sent % 5);
				k = rbus_reserve_batch(g.p, iov, n);
				if (k > 0) {
					for (int j = 0; j < k; j++)
						iov[j].iov_len = pattern(iov[j].iov_base, sent + (uint64_t)j, max);
					ck_assert_rbus(rbus_commit_batch(g.p, iov, (unsigned)k), k);
				}
			}
			if (k == -EAGAIN)
				break;
			ck_assert_int_gt(k, 0);
			sent += (uint64_t)k;
			mode = (unsigned)(sent % 3);
		}
		ck_assert_uint_eq(sent - got, cap);
		/* Consumer: drain with one of the APIs. */
		for (;;) {
			if (got % 2) {
				for (unsigned j = 0; j < 7; j++)
					iov[j] = (struct iovec){ bufs[j], sizeof(bufs[j]) };
				k = rbus_recv_batch(g.c, iov, 1 + (unsigned)(got % 7));
				for (int j = 0; j < k; j++)
					expect_pattern(bufs[j], iov[j].iov_len, got + (uint64_t)j, max);
			} else {
				k = rbus_peek_batch(g.c, iov, 1 + (unsigned)(got % 4));
				for (int j = 0; j < k; j++)
					expect_pattern(iov[j].iov_base, iov[j].iov_len, got + (uint64_t)j, max);
				if (k > 0)
					ck_assert_rbus(rbus_release(g.c), k);
			}
			if (k == -EAGAIN)
				break;
			ck_assert_int_gt(k, 0);
			got += (uint64_t)k;
		}
		ck_assert_uint_eq(got, sent);
	}
	rbus_region_info(g.r, &info);
	ck_assert_uint_eq(info.head, start + got);
	ck_assert_uint_eq(info.tail, start + sent);
	ring_close(&g);
}
END_TEST

START_TEST(ring_sizes)
{
	struct ring g;
	unsigned char out[200], in[200];
	void *w;
	const void *p;

	memset(out, 0xa5, sizeof(out));
	ring_open(&g, 8, 100, 0);
	ck_assert_uint_eq(rbus_channel_max_msg(g.p), 100);
	/* Zero-length messages are messages. */
	ck_assert_rbus(rbus_send(g.p, NULL, 0), 0);
	ck_assert_rbus(rbus_recv(g.c, in, sizeof(in)), 0);
	ck_assert_rbus(rbus_recv(g.c, in, sizeof(in)), -EAGAIN);
	/* The maximum fits, one more byte does not. */
	ck_assert_rbus(rbus_send(g.p, out, 100), 0);
	ck_assert_rbus(rbus_send(g.p, out, 101), -EMSGSIZE);
	ck_assert_rbus(rbus_send(g.p, out, SIZE_MAX), -EMSGSIZE);
	/* A short buffer leaves the message where it is. */
	ck_assert_rbus(rbus_recv(g.c, in, 99), -EMSGSIZE);
	ck_assert_rbus(rbus_recv(g.c, in, sizeof(in)), 100);
	ck_assert_int_eq(memcmp(in, out, 100), 0);
	/* Same through zero-copy. */
	ck_assert_rbus(rbus_reserve(g.p, &w), 0);
	ck_assert_rbus(rbus_commit(g.p, 101), -EMSGSIZE);
	memcpy(w, out, 100);
	ck_assert_rbus(rbus_commit(g.p, 100), 0);
	ck_assert_rbus(rbus_reserve(g.p, &w), 0);
	ck_assert_rbus(rbus_commit(g.p, 0), 0);
	ck_assert_rbus(rbus_peek(g.c, &p), 100);
	ck_assert_int_eq(memcmp(p, out, 100), 0);
	ck_assert_rbus(rbus_release(g.c), 1);
	ck_assert_rbus(rbus_peek(g.c, &p), 0);
	ck_assert_rbus(rbus_release(g.c), 1);
	ring_close(&g);

	/* A channel whose maximum is 0 carries only empty messages. */
	ring_open(&g, 2, 0, 0);
	ck_assert_rbus(rbus_send(g.p, out, 1), -EMSGSIZE);
	ck_assert_rbus(rbus_send(g.p, out, 0), 0);
	ck_assert_rbus(rbus_recv(g.c, in, 0), 0);
	ring_close(&g);
}
END_TEST

START_TEST(ring_batches)
{
	struct ring g;
	unsigned char out[8][32], in[8][32];
	struct iovec iov[8];

	ring_open(&g, 8, 32, 0);
	ck_assert_rbus(rbus_send_batch(g.p, iov, 0), -EINVAL);
	ck_assert_rbus(rbus_recv_batch(g.c, iov, 0), -EINVAL);
	ck_assert_rbus(rbus_reserve_batch(g.p, iov, 0), -EINVAL);
	ck_assert_rbus(rbus_peek_batch(g.c, iov, 0), -EINVAL);

	/* An oversize first message fails the batch; a later one ends it. */
	for (int i = 0; i < 8; i++) {
		memset(out[i], i, sizeof(out[i]));
		iov[i] = (struct iovec){ out[i], (size_t)i + 1 };
	}
	iov[0].iov_len = 33;
	ck_assert_rbus(rbus_send_batch(g.p, iov, 3), -EMSGSIZE);
	iov[0].iov_len = 1;
	iov[3].iov_len = 33;
	ck_assert_rbus(rbus_send_batch(g.p, iov, 8), 3);
	iov[3].iov_len = 4;
	/* Only what fits is sent: 5 of 6. */
	ck_assert_rbus(rbus_send_batch(g.p, iov + 3, 5), 5);
	ck_assert_rbus(rbus_send_batch(g.p, iov, 1), -EAGAIN);

	/* recv_batch stops before a message longer than its buffer. */
	for (int i = 0; i < 8; i++)
		iov[i] = (struct iovec){ in[i], sizeof(in[i]) };
	iov[2].iov_len = 2; /* message 2 is 3 bytes */
	ck_assert_rbus(rbus_recv_batch(g.c, iov, 8), 2);
	ck_assert_uint_eq(iov[0].iov_len, 1);
	ck_assert_uint_eq(iov[1].iov_len, 2);
	ck_assert_int_eq(in[1][1], 1);
	iov[0] = (struct iovec){ in[0], 2 };
	ck_assert_rbus(rbus_recv_batch(g.c, iov, 8), -EMSGSIZE);
	for (int i = 0; i < 8; i++)
		iov[i] = (struct iovec){ in[i], sizeof(in[i]) };
	ck_assert_rbus(rbus_recv_batch(g.c, iov, 8), 6);
	for (int i = 0; i < 6; i++) {
		ck_assert_uint_eq(iov[i].iov_len, (size_t)i + 3);
		ck_assert_int_eq(in[i][0], i + 2);
	}
	ring_close(&g);
}
END_TEST

START_TEST(ring_zero_copy_states)
{
	struct ring g;
	unsigned char buf[16];
	struct iovec iov[4];
	void *w;
	const void *p;

	ring_open(&g, 8, 16, 0);
	/* Nothing outstanding: commit and release have nothing to finish. */
	ck_assert_rbus(rbus_commit(g.p, 1), -EINVAL);
	ck_assert_rbus(rbus_release(g.c), -EINVAL);
	/* A reservation blocks every other producer call until committed. */
	ck_assert_rbus(rbus_reserve(g.p, &w), 0);
	ck_assert_rbus(rbus_reserve(g.p, &w), -EBUSY);
	ck_assert_rbus(rbus_send(g.p, buf, 1), -EBUSY);
	ck_assert_rbus(rbus_send_batch(g.p, iov, 1), -EBUSY);
	memcpy(w, "hello", 5);
	ck_assert_rbus(rbus_commit(g.p, 5), 0);
	ck_assert_rbus(rbus_commit(g.p, 5), -EINVAL);
	/* Committing more than was reserved is refused. */
	ck_assert_rbus(rbus_reserve_batch(g.p, iov, 2), 2);
	ck_assert_rbus(rbus_commit_batch(g.p, iov, 3), -EINVAL);
	iov[0].iov_len = 17;
	iov[1].iov_len = 1;
	/* A bad length publishes nothing and keeps the reservation. */
	ck_assert_rbus(rbus_commit_batch(g.p, iov, 2), -EMSGSIZE);
	iov[0].iov_len = 2;
	memcpy(iov[0].iov_base, "ab", 2);
	memcpy(iov[1].iov_base, "c", 1);
	ck_assert_rbus(rbus_commit_batch(g.p, iov, 2), 2);

	/* A peek blocks every other consumer call until released. */
	ck_assert_rbus(rbus_peek(g.c, &p), 5);
	ck_assert_int_eq(memcmp(p, "hello", 5), 0);
	ck_assert_rbus(rbus_peek(g.c, &p), -EBUSY);
	ck_assert_rbus(rbus_recv(g.c, buf, sizeof(buf)), -EBUSY);
	ck_assert_rbus(rbus_recv_batch(g.c, iov, 1), -EBUSY);
	ck_assert_rbus(rbus_release(g.c), 1);
	ck_assert_rbus(rbus_release(g.c), -EINVAL);
	ck_assert_rbus(rbus_peek_batch(g.c, iov, 4), 2);
	ck_assert_uint_eq(iov[0].iov_len, 2);
	ck_assert_int_eq(memcmp(iov[0].iov_base, "ab", 2), 0);
	ck_assert_uint_eq(iov[1].iov_len, 1);
	ck_assert_rbus(rbus_release(g.c), 2);
	ck_assert_rbus(rbus_recv(g.c, buf, sizeof(buf)), -EAGAIN);
	ring_close(&g);
}
END_TEST

/* commit_batch of fewer than reserved, or rbus_commit() of the first of
 * several: only those are delivered, and the ring goes on (the rest are
 * dropped, or for MPMC passed over). */
START_TEST(ring_partial_commit)
{
	struct ring g;
	unsigned char buf[16];
	struct iovec iov[8];

	ring_open(&g, 8, 16, 0);
	for (int round = 0; round < 6; round++) {
		ck_assert_rbus(rbus_reserve_batch(g.p, iov, 5), 5);
		for (int i = 0; i < 2; i++) {
			memset(iov[i].iov_base, round * 10 + i, 3);
			iov[i].iov_len = 3;
		}
		ck_assert_rbus(rbus_commit_batch(g.p, iov, 2), 2);
		for (int i = 0; i < 2; i++) {
			ck_assert_rbus(rbus_recv(g.c, buf, sizeof(buf)), 3);
			ck_assert_int_eq(buf[0], round * 10 + i);
		}
		ck_assert_rbus(rbus_recv(g.c, buf, sizeof(buf)), -EAGAIN);
	}
	/* rbus_commit() after a batch reservation: the first slot only.
	 * Six rounds of three reserved lap the 8-slot ring twice. */
	for (int round = 0; round < 6; round++) {
		ck_assert_rbus(rbus_reserve_batch(g.p, iov, 3), 3);
		memset(iov[0].iov_base, 100 + round, 4);
		ck_assert_rbus(rbus_commit(g.p, 4), 0);
		ck_assert_rbus(rbus_commit(g.p, 4), -EINVAL);
		ck_assert_rbus(rbus_recv(g.c, buf, sizeof(buf)), 4);
		ck_assert_int_eq(buf[0], 100 + round);
		ck_assert_int_eq(buf[3], 100 + round);
		ck_assert_rbus(rbus_recv(g.c, buf, sizeof(buf)), -EAGAIN);
	}
	ring_close(&g);
}
END_TEST

START_TEST(ring_role_misuse)
{
	struct ring g;
	unsigned char buf[8];
	struct iovec iov[1] = { { buf, sizeof(buf) } };
	void *w;
	const void *p;

	ring_open(&g, 4, 8, 0);
	ck_assert_rbus(rbus_recv(g.p, buf, sizeof(buf)), -EBADF);
	ck_assert_rbus(rbus_recv_batch(g.p, iov, 1), -EBADF);
	ck_assert_rbus(rbus_peek(g.p, &p), -EBADF);
	ck_assert_rbus(rbus_peek_batch(g.p, iov, 1), -EBADF);
	ck_assert_rbus(rbus_release(g.p), -EBADF);
	ck_assert_rbus(rbus_send(g.c, buf, 1), -EBADF);
	ck_assert_rbus(rbus_send_batch(g.c, iov, 1), -EBADF);
	ck_assert_rbus(rbus_reserve(g.c, &w), -EBADF);
	ck_assert_rbus(rbus_reserve_batch(g.c, iov, 1), -EBADF);
	ck_assert_rbus(rbus_commit(g.c, 1), -EBADF);
	ck_assert_int_eq(rbus_channel_role(g.p), RBUS_PRODUCER);
	ck_assert_int_eq(rbus_channel_role(g.c), RBUS_CONSUMER);
	ck_assert_ptr_eq(rbus_channel_region(g.c), g.r);
	ring_close(&g);
}
END_TEST

/* A consumer that goes away resumes where it stopped: the next consumer
 * gets every message not released, including those held by an unreleased
 * peek (SPSC) -- and for MPMC the peeked ones count as consumed. */
START_TEST(ring_consumer_resume)
{
	struct ring g;
	unsigned char buf[16];
	const void *p;
	struct rbus_channel *c2;
	uint64_t i, next;

	ring_open(&g, 16, 16, 0);
	for (i = 0; i < 10; i++)
		ck_assert_rbus(rbus_send(g.p, buf, pattern(buf, i, 16)), 0);
	for (i = 0; i < 3; i++) {
		ssize_t n = rbus_recv(g.c, buf, sizeof(buf));
		ck_assert_int_ge(n, 0);
		expect_pattern(buf, (size_t)n, i, 16);
	}
	ck_assert_rbus(rbus_peek(g.c, &p), pattern(buf, 3, 16));
	rbus_channel_close(g.c);
	g.c = NULL;
	ck_assert_rbus(rbus_channel_open(g.r, RBUS_CONSUMER, 0, &c2), 0);
	next = ring_kind == RBUS_KIND_SPSC ? 3 : 4;
	for (i = next; i < 10; i++) {
		ssize_t n = rbus_recv(c2, buf, sizeof(buf));
		ck_assert_int_ge(n, 0);
		expect_pattern(buf, (size_t)n, i, 16);
	}
	ck_assert_rbus(rbus_recv(c2, buf, sizeof(buf)), -EAGAIN);
	rbus_channel_close(c2);
	ring_close(&g);
}
END_TEST

/* A producer closed with a reservation outstanding publishes nothing that
 * a consumer would see, and the ring goes on. */
START_TEST(ring_close_with_reservation)
{
	struct ring g;
	unsigned char buf[16];
	struct iovec iov[4];
	struct rbus_channel *p2;

	ring_open(&g, 8, 16, 0);
	ck_assert_rbus(rbus_send(g.p, "a", 1), 0);
	ck_assert_rbus(rbus_reserve_batch(g.p, iov, 3), 3);
	memset(iov[0].iov_base, 'x', 16);
	rbus_channel_close(g.p);
	ck_assert_rbus(rbus_channel_open(g.r, RBUS_PRODUCER, 0, &p2), 0);
	g.p = p2;
	ck_assert_rbus(rbus_send(g.p, "b", 1), 0);
	ck_assert_rbus(rbus_recv(g.c, buf, sizeof(buf)), 1);
	ck_assert_int_eq(buf[0], 'a');
	ck_assert_rbus(rbus_recv(g.c, buf, sizeof(buf)), 1);
	ck_assert_int_eq(buf[0], 'b');
	ck_assert_rbus(rbus_recv(g.c, buf, sizeof(buf)), -EAGAIN);
	ring_close(&g);
}
END_TEST

/* --- verified streams across threads and processes ------------------------
 * nprod producers each send per_producer messages made by th_msg_make();
 * ncons consumers take them until the shared count reaches the total.  Each
 * side rotates through every API (copy, batch, zero-copy, zero-copy batch)
 * every 64 messages.  Consumers record every message in a shared bitmap:
 * nothing may be missing, duplicated, corrupt, or out of per-producer order.
 */
struct stream_cfg {
	unsigned nprod, ncons;
	uint64_t per_producer;
	uint32_t capacity, max_msg;
	bool shm;      /* POSIX shm region, attached by name in each child */
	bool threads;  /* threads of this process instead of processes */
};

struct stream_shared {
	_Atomic uint64_t taken;          /* messages taken by all consumers */
	_Atomic unsigned prod_done;      /* producers that sent everything */
	struct {
		uint64_t received, corrupt, duplicate, reordered, foreign, errors;
	} cons[16];
	uint64_t prod_errors[16];
};

struct stream_ctx {
	const struct stream_cfg *cfg;
	struct stream_shared *sh;
	struct rbus_region *r;
	const char *shm_name;
	struct th_tally tally;       /* seen[] shared, next[] per consumer */
	unsigned id;
};

#define STREAM_BATCH 8

/* Back off while the ring is full or empty: yield now and then, so that a
 * peer preempted on our CPU (more threads than cores) gets to run. */
static void stream_backoff(unsigned *spins)
{
	if (++*spins % 64 == 0)
		sched_yield();
}

static struct rbus_region *stream_region(struct stream_ctx *x)
{
	struct rbus_region *r;

	if (!x->shm_name || x->cfg->threads)
		return x->r;
	/* A child of a shm stream attaches by name, as an unrelated process
	 * would. */
	if (rbus_region_attach_shm(x->shm_name, 0, &r) < 0)
		return NULL;
	return r;
}

static int stream_producer(void *arg)
{
	struct stream_ctx *x = arg;
	const struct stream_cfg *cfg = x->cfg;
	struct rbus_region *r = stream_region(x);
	struct rbus_channel *ch;
	unsigned char bufs[STREAM_BATCH][4096];
	struct iovec iov[STREAM_BATCH];
	uint64_t seq = 0;
	unsigned spins = 0;
	int k;

	if (!r || rbus_channel_open(r, RBUS_PRODUCER, 0, &ch) < 0)
		return 10;
	while (seq < cfg->per_producer) {
		uint64_t left = cfg->per_producer - seq;
		unsigned n = left < STREAM_BATCH ? (unsigned)left : STREAM_BATCH;

		switch ((seq / 64) % 4) {
		case 0:
			k = rbus_send(ch, bufs[0], th_msg_make(bufs[0], cfg->max_msg, x->id, seq));
			k = k == 0 ? 1 : k;
			break;
		case 1:
			for (unsigned j = 0; j < n; j++)
				iov[j] = (struct iovec){ bufs[j],
					th_msg_make(bufs[j], cfg->max_msg, x->id, seq + j) };
			k = rbus_send_batch(ch, iov, n);
			break;
		case 2: {
			void *w;
			k = rbus_reserve(ch, &w);
			if (k == 0) {
				k = rbus_commit(ch, th_msg_make(w, cfg->max_msg, x->id, seq));
				k = k == 0 ? 1 : -1000;
			}
			break;
		}
		default:
			k = rbus_reserve_batch(ch, iov, n);
			if (k > 0) {
				for (int j = 0; j < k; j++)
					iov[j].iov_len = th_msg_make(iov[j].iov_base, cfg->max_msg,
								     x->id, seq + (uint64_t)j);
				if (rbus_commit_batch(ch, iov, (unsigned)k) != k)
					k = -1000;
			}
			break;
		}
		if (k == -EAGAIN) {
			stream_backoff(&spins);
			continue;
		}
		if (k <= 0) {
			x->sh->prod_errors[x->id]++;
			break;
		}
		seq += (uint64_t)k;
	}
	rbus_channel_close(ch);
	/* Release: our last commit happens before a consumer that sees the
	 * count; pairs with the acquire in stream_consumer(). */
	atomic_fetch_add_explicit(&x->sh->prod_done, 1, memory_order_release);
	if (r != x->r)
		rbus_region_close(r);
	return x->sh->prod_errors[x->id] ? 11 : 0;
}

static int stream_consumer(void *arg)
{
	struct stream_ctx *x = arg;
	const struct stream_cfg *cfg = x->cfg;
	struct stream_shared *sh = x->sh;
	const uint64_t total = (uint64_t)cfg->nprod * cfg->per_producer;
	struct rbus_region *r = stream_region(x);
	/* One consumer alone sees each producer's whole stream in order. */
	const bool ordered = cfg->ncons == 1;
	struct rbus_channel *ch;
	unsigned char bufs[STREAM_BATCH][4096];
	struct iovec iov[STREAM_BATCH];
	uint64_t mine = 0;
	unsigned spins = 0, drained = 0;
	int k;

	if (!r || rbus_channel_open(r, RBUS_CONSUMER, 0, &ch) < 0)
		return 20;
	/* Relaxed: the count only decides when to stop; the messages are
	 * ordered by the ring. */
	while (atomic_load_explicit(&sh->taken, memory_order_relaxed) < total) {
		switch ((mine / 64) % 4) {
		case 0: {
			ssize_t n = rbus_recv(ch, bufs[0], sizeof(bufs[0]));
			if (n >= 0)
				th_tally_add(&x->tally, bufs[0], (size_t)n, cfg->max_msg, ordered);
			k = n >= 0 ? 1 : (int)n;
			break;
		}
		case 1:
			for (unsigned j = 0; j < STREAM_BATCH; j++)
				iov[j] = (struct iovec){ bufs[j], sizeof(bufs[j]) };
			k = rbus_recv_batch(ch, iov, STREAM_BATCH);
			for (int j = 0; j < k; j++)
				th_tally_add(&x->tally, bufs[j], iov[j].iov_len, cfg->max_msg, ordered);
			break;
		case 2: {
			const void *p;
			ssize_t n = rbus_peek(ch, &p);
			if (n >= 0) {
				th_tally_add(&x->tally, p, (size_t)n, cfg->max_msg, ordered);
				k = rbus_release(ch) == 1 ? 1 : -1000;
			} else {
				k = (int)n;
			}
			break;
		}
		default:
			k = rbus_peek_batch(ch, iov, STREAM_BATCH);
			for (int j = 0; j < k; j++)
				th_tally_add(&x->tally, iov[j].iov_base, iov[j].iov_len,
					     cfg->max_msg, ordered);
			if (k > 0 && rbus_release(ch) != k)
				k = -1000;
			break;
		}
		/* -EPIPE: empty and no producer attached right now; with
		 * several producers opening at different times, another may
		 * still come, so it means no more than -EAGAIN here. */
		if (k == -EAGAIN || k == -EPIPE) {
			/* Empty after every producer finished (acquire: pairs
			 * with the release in stream_producer(), so all their
			 * commits are visible): nothing more will come.  A lost
			 * message then shows as a count, not as a hang. */
			if (atomic_load_explicit(&sh->prod_done, memory_order_acquire) == cfg->nprod &&
			    ++drained > 1)
				break;
			stream_backoff(&spins);
			continue;
		}
		drained = 0;
		if (k <= 0) {
			sh->cons[x->id].errors++;
			break;
		}
		mine += (uint64_t)k;
		atomic_fetch_add_explicit(&sh->taken, (uint64_t)k, memory_order_relaxed);
	}
	sh->cons[x->id].received = x->tally.received;
	sh->cons[x->id].corrupt = x->tally.corrupt;
	sh->cons[x->id].duplicate = x->tally.duplicate;
	sh->cons[x->id].reordered = x->tally.reordered;
	sh->cons[x->id].foreign = x->tally.foreign;
	rbus_channel_close(ch);
	if (r != x->r)
		rbus_region_close(r);
	return sh->cons[x->id].errors ? 21 : 0;
}

struct stream_job {
	int (*fn)(void *);
	struct stream_ctx ctx;
	int rc;
};

static void *stream_job_run(void *arg)
{
	struct stream_job *j = arg;

	j->rc = j->fn(&j->ctx);
	return NULL;
}

static void run_stream(const struct stream_cfg *cfg)
{
	const uint64_t total = (uint64_t)cfg->nprod * cfg->per_producer;
	struct rbus_region_opts o;
	struct rbus_region *r;
	struct stream_shared *sh = th_shared_alloc(sizeof(*sh));
	struct stream_job jobs[32];
	pthread_t tids[32];
	pid_t pids[32];
	char name[64];
	struct th_tally all;
	unsigned njobs = cfg->nprod + cfg->ncons;
	uint64_t received = 0;

	ck_assert_uint_le(njobs, 32);
	ck_assert_uint_le(cfg->nprod, 16);
	ck_assert_uint_le(cfg->ncons, 16);
	ck_assert_uint_le(cfg->max_msg, 4096);
	rbus_region_opts_init(&o);
	o.kind = ring_kind;
	o.capacity = cfg->capacity;
	o.max_msg = cfg->max_msg;
	if (cfg->shm) {
		snprintf(name, sizeof(name), "/rbus-test-stream-%d", (int)getpid());
		shm_unlink(name);
		o.shm_name = name;
	}
	ck_assert_rbus(rbus_region_create(&o, &r), 0);
	th_tally_init(&all, cfg->nprod, cfg->per_producer, true);

	for (unsigned i = 0; i < njobs; i++) {
		struct stream_job *j = &jobs[i];
		bool prod = i < cfg->nprod;

		memset(j, 0, sizeof(*j));
		j->fn = prod ? stream_producer : stream_consumer;
		j->ctx.cfg = cfg;
		j->ctx.sh = sh;
		j->ctx.r = r;
		j->ctx.shm_name = cfg->shm ? name : NULL;
		j->ctx.id = prod ? i : i - cfg->nprod;
		j->ctx.tally = all;
		if (!prod) {
			/* Private next[] per consumer. */
			j->ctx.tally.next = calloc(cfg->nprod, sizeof(uint64_t));
			ck_assert_ptr_nonnull(j->ctx.tally.next);
		}
	}
	for (unsigned i = 0; i < njobs; i++) {
		if (cfg->threads)
			ck_assert_int_eq(pthread_create(&tids[i], NULL, stream_job_run, &jobs[i]), 0);
		else
			pids[i] = th_fork(jobs[i].fn, &jobs[i].ctx);
	}
	for (unsigned i = 0; i < njobs; i++) {
		if (cfg->threads) {
			ck_assert_int_eq(pthread_join(tids[i], NULL), 0);
			ck_assert_msg(jobs[i].rc == 0, "job %u failed with %d", i, jobs[i].rc);
		} else {
			th_wait_ok(pids[i]);
		}
	}
	for (unsigned i = 0; i < cfg->nprod; i++)
		ck_assert_uint_eq(sh->prod_errors[i], 0);
	for (unsigned i = 0; i < cfg->ncons; i++) {
		ck_assert_uint_eq(sh->cons[i].errors, 0);
		ck_assert_msg(sh->cons[i].corrupt == 0, "consumer %u: %llu corrupt", i,
			      (unsigned long long)sh->cons[i].corrupt);
		ck_assert_msg(sh->cons[i].duplicate == 0, "consumer %u: %llu duplicated", i,
			      (unsigned long long)sh->cons[i].duplicate);
		ck_assert_msg(sh->cons[i].reordered == 0, "consumer %u: %llu out of order", i,
			      (unsigned long long)sh->cons[i].reordered);
		ck_assert_uint_eq(sh->cons[i].foreign, 0);
		received += sh->cons[i].received;
	}
	ck_assert_uint_eq(received, total);
	ck_assert_uint_eq(th_tally_missing(&all), 0);
	/* No share per consumer is asserted: MPMC promises no fairness, and
	 * a consumer descheduled for the whole stream legitimately gets
	 * nothing (seen on 2 CPUs under make -j2). */

	for (unsigned i = cfg->nprod; i < njobs; i++)
		free(jobs[i].ctx.tally.next);
	th_tally_free(&all, true);
	rbus_region_close(r);
	if (cfg->shm)
		ck_assert_int_eq(shm_unlink(name), 0);
	th_shared_free(sh, sizeof(*sh));
}

/* The semantics cases, in one tcase with the fd-leak fixture. */
static TCase *ring_semantics_tcase(void)
{
	TCase *tc = tcase_create("semantics");

	tcase_add_checked_fixture(tc, fd_setup, fd_teardown);
	tcase_add_test(tc, ring_empty);
	tcase_add_test(tc, ring_full);
	tcase_add_loop_test(tc, ring_wrap, 0,
			    (int)(sizeof(wrap_starts) / sizeof(wrap_starts[0])));
	tcase_add_test(tc, ring_sizes);
	tcase_add_test(tc, ring_batches);
	tcase_add_test(tc, ring_zero_copy_states);
	tcase_add_test(tc, ring_partial_commit);
	tcase_add_test(tc, ring_role_misuse);
	tcase_add_test(tc, ring_consumer_resume);
	tcase_add_test(tc, ring_close_with_reservation);
	return tc;
}

static int run_suite(Suite *s)
{
	SRunner *sr = srunner_create(s);
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}

#endif /* RINGBUS_TEST_RING_CASES_H */
