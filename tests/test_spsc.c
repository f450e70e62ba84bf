/* SPDX-License-Identifier: MIT */
/*
 * test_spsc.c - the single-producer single-consumer ring: the common ring
 * contract (ring_cases.h), its SPSC-only rules, and verified streams across
 * threads and processes over memfd and POSIX shm.
 */
#include "config.h"

#include "ring_cases.h"
#include "internal.h"

/* The slot of index idx, through the test's own view of the layout. */
static struct rbus_slot *slot_of(struct rbus_region *r, uint64_t idx)
{
	struct rbus_region_info info;
	unsigned char *base;

	rbus_region_info(r, &info);
	base = mmap(NULL, info.size, PROT_READ | PROT_WRITE, MAP_SHARED,
		    rbus_region_fd(r), 0);
	ck_assert_ptr_ne(base, MAP_FAILED);
	return (struct rbus_slot *)(base + rbus_layout_slots_off(1) +
				    (idx & (info.capacity - 1)) * info.slot_size);
}

static struct rbus_side *side_of(struct rbus_region *r, bool producer)
{
	struct rbus_region_info info;
	unsigned char *base;

	rbus_region_info(r, &info);
	base = mmap(NULL, info.size, PROT_READ | PROT_WRITE, MAP_SHARED,
		    rbus_region_fd(r), 0);
	ck_assert_ptr_ne(base, MAP_FAILED);
	return (struct rbus_side *)(base + (producer ? rbus_layout_prod_off()
						     : rbus_layout_cursors_off()));
}

/* SPSC roles are exclusive, and free again once closed. */
START_TEST(spsc_roles_exclusive)
{
	struct ring g;
	struct rbus_channel *x;
	struct rbus_region_info info;

	ring_open(&g, 8, 8, 0);
	ck_assert_rbus(rbus_channel_open(g.r, RBUS_PRODUCER, 0, &x), -EBUSY);
	ck_assert_ptr_null(x);
	ck_assert_rbus(rbus_channel_open(g.r, RBUS_CONSUMER, 0, &x), -EBUSY);
	rbus_region_info(g.r, &info);
	ck_assert_uint_eq(info.producers, 1);
	ck_assert_uint_eq(info.consumers, 1);
	rbus_channel_close(g.p);
	ck_assert_rbus(rbus_channel_open(g.r, RBUS_PRODUCER, 0, &g.p), 0);
	ring_close(&g);
}
END_TEST

/*
 * A producer that died between stamping slots and publishing its tail
 * leaves the tail behind the stamps.  A new producer must start after the
 * stamped slots: the consumer may already have taken them (then the head
 * leads the tail), or not yet (then they must not be overwritten).
 */
START_TEST(spsc_producer_resume_after_lost_tail)
{
	struct ring g;
	unsigned char buf[16];
	struct rbus_side *prod;
	uint64_t start = UINT64_C(0xfffffffe);

	ring_open(&g, 8, 16, start);
	prod = side_of(g.r, true);
	for (uint64_t i = 0; i < 5; i++)
		ck_assert_rbus(rbus_send(g.p, buf, pattern(buf, i, 16)), 0);
	rbus_channel_close(g.p);
	/* The tail as if the last three stamps had not been counted. */
	atomic_store(&prod->index, start + 2);
	/* Case 1: the consumer has not taken them; they must survive. */
	ck_assert_rbus(rbus_channel_open(g.r, RBUS_PRODUCER, 0, &g.p), 0);
	ck_assert_rbus(rbus_send(g.p, buf, pattern(buf, 5, 16)), 0);
	for (uint64_t i = 0; i < 6; i++) {
		ssize_t n = rbus_recv(g.c, buf, sizeof(buf));
		ck_assert_int_ge(n, 0);
		expect_pattern(buf, (size_t)n, i, 16);
	}
	rbus_channel_close(g.p);
	/* Case 2: the consumer took everything, the tail lags the head. */
	atomic_store(&prod->index, start + 3);
	ck_assert_rbus(rbus_channel_open(g.r, RBUS_PRODUCER, 0, &g.p), 0);
	ck_assert_rbus(rbus_send(g.p, buf, pattern(buf, 6, 16)), 0);
	ck_assert_rbus(rbus_recv(g.c, buf, sizeof(buf)), pattern(buf, 6, 16));
	ck_assert_rbus(rbus_recv(g.c, buf, sizeof(buf)), -EAGAIN);
	ring_close(&g);
}
END_TEST

/* The SPSC consumer never writes a slot: the producer's lines only move
 * one way.  (The stamp of a consumed slot keeps its committed value.) */
START_TEST(spsc_consumer_leaves_slots_alone)
{
	struct ring g;
	unsigned char buf[16];
	struct rbus_slot *s;

	ring_open(&g, 4, 16, 100);
	s = slot_of(g.r, 100);
	ck_assert_rbus(rbus_send(g.p, "abc", 3), 0);
	ck_assert_uint_eq(atomic_load(&s->stamp), 101);
	ck_assert_rbus(rbus_recv(g.c, buf, sizeof(buf)), 3);
	ck_assert_uint_eq(atomic_load(&s->stamp), 101);
	ck_assert_uint_eq(atomic_load(&s->len), 3);
	ring_close(&g);
}
END_TEST

/*
 * A consumer that finds its slot empty reads the slot's second line while
 * it waits (spsc_await_slot()): only for a slot that ends in the line
 * after its first, and only that line.
 */
START_TEST(spsc_slot_line2)
{
	const uintptr_t base = 64 * 1000;       /* a line boundary */

	/* 8 B messages, 16 B slots: never across a line. */
	for (unsigned i = 0; i < 8; i++)
		ck_assert_uint_eq(rbus_slot_line2(base + 16 * i, 16), 0);
	/* 64 B messages, 72 B slots: always into the next line, and no further. */
	for (unsigned i = 0; i < 8; i++) {
		uintptr_t s = base + 72 * i;

		ck_assert_uint_eq(rbus_slot_line2(s, 72), (s & ~(uintptr_t)63) + 64);
	}
	ck_assert_uint_eq(rbus_slot_line2(base, 64), 0);        /* one line, full */
	ck_assert_uint_eq(rbus_slot_line2(base + 8, 64), base + 64);
	ck_assert_uint_eq(rbus_slot_line2(base + 48, 24), base + 64);
	ck_assert_uint_eq(rbus_slot_line2(base, 128), base + 64); /* ends on line 2's last byte */
	ck_assert_uint_eq(rbus_slot_line2(base + 8, 128), 0);   /* three lines */
	ck_assert_uint_eq(rbus_slot_line2(base, 1032), 0);
}
END_TEST

static const struct stream_cfg spsc_streams[] = {
	/* threads of one process */
	{ .nprod = 1, .ncons = 1, .per_producer = 1000000, .capacity = 256, .max_msg = 64, .threads = true },
	/* processes over a memfd; a small ring forces constant wrap and full */
	{ .nprod = 1, .ncons = 1, .per_producer = 1000000, .capacity = 16, .max_msg = 200 },
	/* processes attached by POSIX shm name */
	{ .nprod = 1, .ncons = 1, .per_producer = 1000000, .capacity = 1024, .max_msg = 1000, .shm = true },
};

START_TEST(spsc_stream)
{
	struct stream_cfg cfg = spsc_streams[_i];

	cfg.per_producer = th_scaled(cfg.per_producer);
	run_stream(&cfg);
}
END_TEST

/* The long variant: 10^7 verified messages between two processes. */
START_TEST(spsc_stream_long)
{
	struct stream_cfg cfg = { .nprod = 1, .ncons = 1, .capacity = 4096, .max_msg = 64 };

	cfg.per_producer = th_scaled(10000000);
	run_stream(&cfg);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("spsc");
	TCase *tc;

	ring_kind = RBUS_KIND_SPSC;
	suite_add_tcase(s, ring_semantics_tcase());

	tc = tcase_create("spsc-rules");
	tcase_add_checked_fixture(tc, fd_setup, fd_teardown);
	tcase_add_test(tc, spsc_roles_exclusive);
	tcase_add_test(tc, spsc_producer_resume_after_lost_tail);
	tcase_add_test(tc, spsc_consumer_leaves_slots_alone);
	tcase_add_test(tc, spsc_slot_line2);
	suite_add_tcase(s, tc);

	tc = tcase_create("stream");
	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, spsc_stream, 0,
			    (int)(sizeof(spsc_streams) / sizeof(spsc_streams[0])));
	suite_add_tcase(s, tc);

	tc = tcase_create("stream-long");
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, spsc_stream_long);
	suite_add_tcase(s, tc);

	return run_suite(s);
}
