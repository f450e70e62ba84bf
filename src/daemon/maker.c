/* SPDX-License-Identifier: MIT */
/*
 * maker.c - the regions of CREATEs, made on a thread of their own.
 *
 * Making a region reserves and zeroes its memory (fallocate): seconds for
 * a region of a GiB.  On the main thread that would hold up every other
 * client's requests for as long (design.md §13.2).  So for a region over
 * 1 MiB (smaller ones are made at once, requests.c) the main thread
 * checks a CREATE, takes its name and its room, and queues a job
 * (maker_submit()); this thread makes the region and the unlinked channel
 * around it (req_create_make()), puts the job on the done list, and
 * writes to an eventfd the main loop polls; the main thread then links the
 * channel and replies (server.c), and gives back what the job held
 * (maker_done()).  Jobs are made one at a time, in the order they came:
 * a CREATE waits only for the CREATEs before it.
 *
 * What a job holds while in flight, from maker_submit() to maker_done():
 * its name (maker_job_of(): requests that name it wait for the answer), its
 * region's bytes and a channel slot (maker_bytes(), maker_count(), in the
 * daemon's quotas) and one of its process's channels (proc->ncreating).
 * The list of jobs in flight and those figures are the main thread's
 * alone; the two queues between the threads are under `lock`, which is
 * never held with reg_lock or across a system call but the eventfd's.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#ifdef RBUSD_TEST_HOOKS
#include <fcntl.h>
#endif

#include "ringbusd.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t more = PTHREAD_COND_INITIALIZER;
/* Under lock: jobs to make (FIFO), jobs made (FIFO), the thread's stop. */
static struct make_job *queue, **queue_tail = &queue;
static struct make_job *done, **done_tail = &done;
static struct make_job *making;      /* the job being made, or NULL */
static bool stopping;

static pthread_t thread;
static bool started;
static int done_fd = -1;

/* The main thread's: jobs in flight, and what they hold. */
static struct make_job *inflight;
static unsigned inflight_count;
static uint64_t inflight_bytes;

#ifdef RBUSD_TEST_HOOKS
/*
 * Tests only (the tests/ringbusd-hooks build): with RINGBUSD_TEST_CREATE_GATE
 * naming a FIFO, each job waits before it is made until a byte can be read
 * from it, so a test can hold a CREATE in flight for as long as it needs.
 * The FIFO is opened once, for reading and writing, and kept: each byte a
 * test writes lets one job through, and a read never sees end of file.
 * (Opened for each job, a reader could take a writer's late close for a
 * byte, or close a FIFO holding the next byte, which went with it.)
 */
static void test_gate(const struct make_job *j)
{
	static int fd = -1;
	const char *path = getenv("RINGBUSD_TEST_CREATE_GATE");
	char byte;

	if (!path)
		return;
	log_info("CREATE of %s held at the test gate", j->q.name);
	if (fd < 0)
		fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return;
	while (read(fd, &byte, 1) < 0 && errno == EINTR)
		;
}
#endif

static void *maker_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&lock);
	for (;;) {
		struct make_job *j;
		uint64_t one = 1;
		ssize_t w;

		while (!queue && !stopping)
			pthread_cond_wait(&more, &lock);
		/* Jobs not begun are left for maker_stop() to drop. */
		if (stopping)
			break;
		j = queue;
		queue = j->next;
		if (!queue)
			queue_tail = &queue;
		making = j;
		pthread_mutex_unlock(&lock);
#ifdef RBUSD_TEST_HOOKS
		test_gate(j);
#endif
		req_create_make(j);
		pthread_mutex_lock(&lock);
		making = NULL;
		j->next = NULL;
		*done_tail = j;
		done_tail = &j->next;
		/* Cannot fail but by overflow, which 2^64 - 1 jobs would take:
		 * the main thread reads it on every wakeup. */
		w = write(done_fd, &one, sizeof(one));
		(void)w;
	}
	pthread_mutex_unlock(&lock);
	return NULL;
}

int maker_start(int *fd)
{
	int err;

	done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (done_fd < 0)
		return -errno;
	err = pthread_create(&thread, NULL, maker_main, NULL);
	if (err) {
		close(done_fd);
		done_fd = -1;
		return -err;
	}
	started = true;
	*fd = done_fd;
	return 0;
}

/* Free @j's channel, if it has one, and @j: a CREATE never answered.
 * @made: the maker was done with it. */
static void drop_job(struct make_job *j, bool made)
{
	log_info("CREATE of %s dropped at shutdown: %s", j->q.name,
		 !made ? "its region was not made" :
		 j->ch ? "its channel was made but not linked" :
		 "its region could not be made");
	maker_discard(j);
}

void maker_stop(void)
{
	char name[RBUS_PROTO_NAME] = "";
	struct make_job *j;

	if (!started)
		return;
	pthread_mutex_lock(&lock);
	stopping = true;
	pthread_cond_signal(&more);
	if (making)
		memcpy(name, making->q.name, sizeof(name));
	pthread_mutex_unlock(&lock);
	if (name[0])
		log_info("waiting for the region of the CREATE of %s to be made", name);
	pthread_join(thread, NULL);
	started = false;
	/* The thread is gone: the queues are the main thread's now. */
	while ((j = queue)) {
		queue = j->next;
		drop_job(j, false);
	}
	queue_tail = &queue;
	while ((j = done)) {
		done = j->next;
		drop_job(j, true);
	}
	done_tail = &done;
	close(done_fd);
	done_fd = -1;
}

struct make_job *maker_job_of(const char *name)
{
	for (struct make_job *j = inflight; j; j = j->inext)
		if (!strncmp(j->q.name, name, RBUS_PROTO_NAME))
			return j;
	return NULL;
}

unsigned maker_count(void)
{
	return inflight_count;
}

uint64_t maker_bytes(void)
{
	return inflight_bytes;
}

void maker_user(uint32_t uid, uint32_t *count, uint64_t *bytes)
{
	*count = 0;
	*bytes = 0;
	for (const struct make_job *j = inflight; j; j = j->inext)
		if (j->creator_uid == uid) {
			(*count)++;
			*bytes += j->bytes;
		}
}

void maker_submit(struct make_job *j)
{
	j->inext = inflight;
	inflight = j;
	inflight_count++;
	inflight_bytes += j->bytes;
	reg_lock();
	j->proc->ncreating++;
	reg_unlock();
	j->next = NULL;
	pthread_mutex_lock(&lock);
	*queue_tail = j;
	queue_tail = &j->next;
	pthread_cond_signal(&more);
	pthread_mutex_unlock(&lock);
}

struct make_job *maker_take(void)
{
	struct make_job *j;

	pthread_mutex_lock(&lock);
	j = done;
	if (j) {
		done = j->next;
		if (!done)
			done_tail = &done;
	}
	pthread_mutex_unlock(&lock);
	return j;
}

void maker_discard(struct make_job *j)
{
	if (j->ch) {
		reg_lock();
		chan_unref(j->ch);
		reg_unlock();
		j->ch = NULL;
	}
	maker_done(j);
}

void maker_done(struct make_job *j)
{
	struct make_job **pp = &inflight;

	while (*pp != j)
		pp = &(*pp)->inext;
	*pp = j->inext;
	inflight_count--;
	inflight_bytes -= j->bytes;
	reg_lock();
	j->proc->ncreating--;
	reg_unlock();
	free(j);
}
