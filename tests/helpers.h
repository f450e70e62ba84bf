/* SPDX-License-Identifier: MIT */
/*
 * helpers.h - shared by the Check test programs.
 */
#ifndef RINGBUS_TEST_HELPERS_H
#define RINGBUS_TEST_HELPERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <check.h>

#include "ringbus.h"

#ifdef NDEBUG
#error "the tests must not be built with NDEBUG"
#endif

/* ck_assert that a libringbus call returned exactly `want`, naming both
 * values symbolically on failure. */
#define ck_assert_rbus(call, want)                                             \
	do {                                                                   \
		long long got_ = (long long)(call);                            \
		long long want_ = (long long)(want);                           \
		ck_assert_msg(got_ == want_, "%s returned %lld (%s), want %lld (%s)", \
			      #call, got_, got_ < 0 ? rbus_errname((int)got_) : "-", \
			      want_, want_ < 0 ? rbus_errname((int)want_) : "-"); \
	} while (0)

/* RBUS_TEST_SCALE (default 1) divides the message counts of the long
 * variants; the sanitizer build in .ci/run sets it, since ASan makes the
 * ring ~10x slower.  Returns max(1, n / scale). */
uint64_t th_scaled(uint64_t n);

/* --- verified messages -------------------------------------------------
 * Layout: u32 producer id, u32 length, u64 sequence, u64 checksum, then a
 * payload of bytes derived from (producer, seq).  Lengths vary with seq
 * between TH_MSG_MIN and the given maximum.  The checksum covers the
 * header fields and the payload. */
#define TH_MSG_MIN 24u

/* Fill buf (at least th_msg_len() bytes) with message (producer, seq);
 * returns its length, in [TH_MSG_MIN, max_len]. */
size_t th_msg_make(void *buf, size_t max_len, uint32_t producer, uint64_t seq);
size_t th_msg_len(size_t max_len, uint32_t producer, uint64_t seq);

/* Check a received message.  Returns 0 if intact, else -1; fills
 * producer/seq with what the header says (when len allows). */
int th_msg_check(const void *buf, size_t len, size_t max_len,
		 uint32_t *producer, uint64_t *seq);

/* Per-producer bookkeeping for a consumer (or the union of consumers).
 * next[p] is the next sequence expected from p (per-producer FIFO; private
 * to each consumer), seen[] a bitmap over all (producer, seq) for
 * duplicates, in MAP_SHARED memory (so across forked consumers) if shared. */
struct th_tally {
	unsigned nproducers;
	uint64_t per_producer;  /* messages each producer sends */
	uint64_t *next;
	uint8_t *seen;          /* nproducers * per_producer bits */
	uint64_t received, corrupt, duplicate, reordered, foreign;
};
void th_tally_init(struct th_tally *t, unsigned nproducers, uint64_t per_producer,
		   bool shared);
/* Record one message; `ordered` says whether this consumer alone sees a
 * producer's stream (so a gap or step back is a reorder). */
void th_tally_add(struct th_tally *t, const void *buf, size_t len, size_t max_len,
		  bool ordered);
/* Count (producer, seq) pairs never seen. */
uint64_t th_tally_missing(const struct th_tally *t);
void th_tally_free(struct th_tally *t, bool shared);

/* --- processes and fds --------------------------------------------------*/
/* Number of open fds of this process. */
int th_count_fds(void);
/* The state letter of /proc/PID/task/TID/stat ('S': asleep in the kernel),
 * or '?' if it cannot be read. */
char th_task_state(pid_t pid, pid_t tid);
/* Fork; the child runs fn(arg) and _exit()s with its return value.  Returns
 * the pid (asserting success). */
pid_t th_fork(int (*fn)(void *), void *arg);
/* Wait for pid and assert it exited with status 0. */
void th_wait_ok(pid_t pid);
/* Pin the calling thread to cpu (mod the CPUs online); ignores errors. */
void th_pin(int cpu);
/* A directory of this test program's own under /tmp, made by
 * th_tmpdir_init() in main() before the tests run, and removed with
 * everything in it when the main process exits: Check runs each test in a
 * forked child that ends with _exit() when an assertion fails, so a test's
 * own cleanup does not run then, and without this its directories (a
 * private ringbusd's socket and lock) outlived the run.  Mode 0755, for
 * tests that run clients as another uid.  TMPDIR names it too, for the
 * commands the tests run (ringbus demo makes its private broker's
 * directory there).  th_tmpdir() is "/tmp" without
 * th_tmpdir_init(), or if the directory could not be made. */
void th_tmpdir_init(void);
const char *th_tmpdir(void);
/* Anonymous MAP_SHARED memory, zeroed, visible to forked children. */
void *th_shared_alloc(size_t size);
void th_shared_free(void *p, size_t size);

#endif /* RINGBUS_TEST_HELPERS_H */
