/* SPDX-License-Identifier: MIT */
/*
 * test_mpmc.c - the multi-producer multi-consumer ring: the common ring
 * contract (ring_cases.h), MPMC-only rules, and verified streams with many
 * producers and consumers, more of them than this machine has cores.
 */
#include "config.h"

#include "ring_cases.h"

START_TEST(mpmc_many_handles)
{
	struct ring g;
	struct rbus_channel *p[3], *c[3];
	struct rbus_region_info info;
	unsigned char buf[8];

	ring_open(&g, 8, 8, 0);
	for (int i = 0; i < 3; i++) {
		ck_assert_rbus(rbus_channel_open(g.r, RBUS_PRODUCER, 0, &p[i]), 0);
		ck_assert_rbus(rbus_channel_open(g.r, RBUS_CONSUMER, 0, &c[i]), 0);
	}
	rbus_region_info(g.r, &info);
	ck_assert_uint_eq(info.producers, 4);
	ck_assert_uint_eq(info.consumers, 4);
	/* Any producer's message reaches any consumer, once. */
	for (int i = 0; i < 3; i++)
		ck_assert_rbus(rbus_send(p[i], &i, sizeof(i)), 0);
	for (int i = 0; i < 3; i++) {
		int v;
		ck_assert_rbus(rbus_recv(c[2 - i], &v, sizeof(v)), sizeof(v));
		ck_assert_int_eq(v, i);
	}
	ck_assert_rbus(rbus_recv(g.c, buf, sizeof(buf)), -EAGAIN);
	for (int i = 0; i < 3; i++) {
		rbus_channel_close(p[i]);
		rbus_channel_close(c[i]);
	}
	rbus_region_info(g.r, &info);
	ck_assert_uint_eq(info.producers, 1);
	ck_assert_uint_eq(info.consumers, 1);
	ring_close(&g);
}
END_TEST

/*
 * A reservation claims its slots: a consumer reaching them waits (-EAGAIN)
 * even if later slots are committed, and never spins.  Once the holder
 * commits, or closes (abandoning the slots as skipped), everything flows in
 * index order.
 */
START_TEST(mpmc_claimed_slot_holds_consumers)
{
	struct ring g;
	struct rbus_channel *p2;
	unsigned char buf[8];
	void *w;

	ring_open(&g, 8, 8, 0);
	ck_assert_rbus(rbus_channel_open(g.r, RBUS_PRODUCER, 0, &p2), 0);
	ck_assert_rbus(rbus_reserve(g.p, &w), 0);       /* index 0, held */
	ck_assert_rbus(rbus_send(p2, "B", 1), 0);       /* index 1 */
	ck_assert_rbus(rbus_recv(g.c, buf, sizeof(buf)), -EAGAIN);
	memcpy(w, "A", 1);
	ck_assert_rbus(rbus_commit(g.p, 1), 0);
	ck_assert_rbus(rbus_recv(g.c, buf, sizeof(buf)), 1);
	ck_assert_int_eq(buf[0], 'A');
	ck_assert_rbus(rbus_recv(g.c, buf, sizeof(buf)), 1);
	ck_assert_int_eq(buf[0], 'B');

	/* Abandoned by close: passed over, not delivered. */
	ck_assert_rbus(rbus_reserve(g.p, &w), 0);
	ck_assert_rbus(rbus_send(p2, "C", 1), 0);
	ck_assert_rbus(rbus_recv(g.c, buf, sizeof(buf)), -EAGAIN);
	rbus_channel_close(g.p);
	g.p = p2;
	ck_assert_rbus(rbus_recv(g.c, buf, sizeof(buf)), 1);
	ck_assert_int_eq(buf[0], 'C');
	ck_assert_rbus(rbus_recv(g.c, buf, sizeof(buf)), -EAGAIN);
	ring_close(&g);
}
END_TEST

/* A peek claims its messages: another consumer cannot take them, and gets
 * the ones after them. */
START_TEST(mpmc_peek_claims)
{
	struct ring g;
	struct rbus_channel *c2;
	unsigned char buf[8];
	const void *p;

	ring_open(&g, 8, 8, 0);
	ck_assert_rbus(rbus_channel_open(g.r, RBUS_CONSUMER, 0, &c2), 0);
	ck_assert_rbus(rbus_send(g.p, "1", 1), 0);
	ck_assert_rbus(rbus_send(g.p, "2", 1), 0);
	ck_assert_rbus(rbus_peek(g.c, &p), 1);
	ck_assert_int_eq(*(const char *)p, '1');
	ck_assert_rbus(rbus_recv(c2, buf, sizeof(buf)), 1);
	ck_assert_int_eq(buf[0], '2');
	ck_assert_rbus(rbus_recv(c2, buf, sizeof(buf)), -EAGAIN);
	ck_assert_rbus(rbus_release(g.c), 1);
	rbus_channel_close(c2);
	ring_close(&g);
}
END_TEST

static const struct stream_cfg mpmc_streams[] = {
	/* threads: 4 producers and 4 consumers on 2 cores */
	{ .nprod = 4, .ncons = 4, .per_producer = 250000, .capacity = 64, .max_msg = 64, .threads = true },
	/* processes: 1:1, the MPMC code path with no contention */
	{ .nprod = 1, .ncons = 1, .per_producer = 1000000, .capacity = 256, .max_msg = 128 },
	/* processes: 2 producers, 2 consumers, a tiny ring: always contended */
	{ .nprod = 2, .ncons = 2, .per_producer = 500000, .capacity = 8, .max_msg = 64 },
	/* processes: 3 producers, 1 consumer (per-producer order checked) */
	{ .nprod = 3, .ncons = 1, .per_producer = 300000, .capacity = 128, .max_msg = 300 },
	/* processes attached by shm name: 1 producer, 3 consumers */
	{ .nprod = 1, .ncons = 3, .per_producer = 900000, .capacity = 512, .max_msg = 1000, .shm = true },
	/* oversubscribed: 8 producer and 8 consumer processes on 2 cores */
	{ .nprod = 8, .ncons = 8, .per_producer = 50000, .capacity = 32, .max_msg = 48 },
};

START_TEST(mpmc_stream)
{
	struct stream_cfg cfg = mpmc_streams[_i];

	cfg.per_producer = th_scaled(cfg.per_producer);
	run_stream(&cfg);
}
END_TEST

/* The long variant: 10^7 verified messages, 2 producer and 2 consumer
 * processes on 2 cores. */
START_TEST(mpmc_stream_long)
{
	struct stream_cfg cfg = { .nprod = 2, .ncons = 2, .capacity = 1024, .max_msg = 64 };

	cfg.per_producer = th_scaled(5000000);
	run_stream(&cfg);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("mpmc");
	TCase *tc;

	ring_kind = RBUS_KIND_MPMC;
	suite_add_tcase(s, ring_semantics_tcase());

	tc = tcase_create("mpmc-rules");
	tcase_add_checked_fixture(tc, fd_setup, fd_teardown);
	tcase_add_test(tc, mpmc_many_handles);
	tcase_add_test(tc, mpmc_claimed_slot_holds_consumers);
	tcase_add_test(tc, mpmc_peek_claims);
	suite_add_tcase(s, tc);

	tc = tcase_create("stream");
	tcase_set_timeout(tc, 180);
	tcase_add_loop_test(tc, mpmc_stream, 0,
			    (int)(sizeof(mpmc_streams) / sizeof(mpmc_streams[0])));
	suite_add_tcase(s, tc);

	tc = tcase_create("stream-long");
	tcase_set_timeout(tc, 400);
	tcase_add_test(tc, mpmc_stream_long);
	suite_add_tcase(s, tc);

	return run_suite(s);
}
