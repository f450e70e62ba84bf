/* SPDX-License-Identifier: MIT */
/* helpers.c - see helpers.h. */
#include "config.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

uint64_t th_scaled(uint64_t n)
{
	const char *s = getenv("RBUS_TEST_SCALE");
	unsigned long scale = s ? strtoul(s, NULL, 10) : 1;

	if (scale < 1)
		scale = 1;
	return n / scale ? n / scale : 1;
}

/* splitmix64: the payload bytes and the checksum mixer. */
static uint64_t mix(uint64_t x)
{
	x += UINT64_C(0x9e3779b97f4a7c15);
	x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
	return x ^ (x >> 31);
}

size_t th_msg_len(size_t max_len, uint32_t producer, uint64_t seq)
{
	if (max_len <= TH_MSG_MIN)
		return max_len;
	/* Mostly short, sometimes the maximum, sometimes in between. */
	switch ((seq + producer) % 8) {
	case 0:
		return max_len;
	case 1:
		return TH_MSG_MIN;
	default:
		return TH_MSG_MIN + mix(seq ^ ((uint64_t)producer << 40)) % (max_len - TH_MSG_MIN + 1);
	}
}

static uint64_t checksum(const unsigned char *p, size_t len)
{
	uint64_t h = UINT64_C(0x84222325cbf29ce4);
	size_t i;

	/* Bytes 16..23 hold the checksum itself and are left out. */
	for (i = 0; i < len; i++)
		if (i < 16 || i >= 24)
			h = (h ^ p[i]) * UINT64_C(0x100000001b3);
	return mix(h);
}

size_t th_msg_make(void *buf, size_t max_len, uint32_t producer, uint64_t seq)
{
	unsigned char *p = buf;
	size_t len = th_msg_len(max_len, producer, seq);
	uint32_t l32 = (uint32_t)len;
	uint64_t x = mix(seq * 31 + producer), sum;

	if (len < TH_MSG_MIN)
		return 0;
	memcpy(p, &producer, 4);
	memcpy(p + 4, &l32, 4);
	memcpy(p + 8, &seq, 8);
	for (size_t i = 24; i < len; i += 8) {
		size_t n = len - i < 8 ? len - i : 8;
		memcpy(p + i, &x, n);
		x = mix(x);
	}
	sum = checksum(p, len);
	memcpy(p + 16, &sum, 8);
	return len;
}

int th_msg_check(const void *buf, size_t len, size_t max_len,
		 uint32_t *producer, uint64_t *seq)
{
	const unsigned char *p = buf;
	uint32_t l32;
	uint64_t sum;

	if (len < TH_MSG_MIN || len > max_len)
		return -1;
	memcpy(producer, p, 4);
	memcpy(&l32, p + 4, 4);
	memcpy(seq, p + 8, 8);
	memcpy(&sum, p + 16, 8);
	if (l32 != len || th_msg_len(max_len, *producer, *seq) != len)
		return -1;
	return sum == checksum(p, len) ? 0 : -1;
}

void th_tally_init(struct th_tally *t, unsigned nproducers, uint64_t per_producer,
		   bool shared)
{
	size_t bits = ((size_t)nproducers * per_producer + 7) / 8;

	memset(t, 0, sizeof(*t));
	t->nproducers = nproducers;
	t->per_producer = per_producer;
	/* next[] is per consumer (a forked child gets its own copy); seen[]
	 * is one bitmap for all consumers when shared. */
	t->next = calloc(nproducers, sizeof(uint64_t));
	t->seen = shared ? th_shared_alloc(bits) : calloc(bits ? bits : 1, 1);
	ck_assert_ptr_nonnull(t->next);
	ck_assert_ptr_nonnull(t->seen);
}

void th_tally_add(struct th_tally *t, const void *buf, size_t len, size_t max_len,
		  bool ordered)
{
	uint32_t producer;
	uint64_t seq, bit;

	t->received++;
	if (th_msg_check(buf, len, max_len, &producer, &seq) < 0) {
		t->corrupt++;
		return;
	}
	if (producer >= t->nproducers || seq >= t->per_producer) {
		t->foreign++;
		return;
	}
	bit = (uint64_t)producer * t->per_producer + seq;
	/* Atomic: with `shared`, several consumer processes record into one
	 * bitmap. */
	if (__atomic_fetch_or(&t->seen[bit / 8], (uint8_t)(1u << (bit % 8)),
			      __ATOMIC_RELAXED) & (1u << (bit % 8)))
		t->duplicate++;
	if (ordered) {
		if (seq != t->next[producer])
			t->reordered++;
		t->next[producer] = seq + 1;
	} else if (seq < t->next[producer]) {
		/* Per-producer FIFO holds per consumer too: one consumer
		 * never sees a producer's messages step back. */
		t->reordered++;
	} else {
		t->next[producer] = seq + 1;
	}
}

uint64_t th_tally_missing(const struct th_tally *t)
{
	uint64_t missing = 0, total = (uint64_t)t->nproducers * t->per_producer;

	for (uint64_t b = 0; b < total; b++)
		if (!(t->seen[b / 8] & (1u << (b % 8))))
			missing++;
	return missing;
}

void th_tally_free(struct th_tally *t, bool shared)
{
	free(t->next);
	if (shared)
		th_shared_free(t->seen, ((size_t)t->nproducers * t->per_producer + 7) / 8);
	else
		free(t->seen);
}

int th_count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	ck_assert_ptr_nonnull(d);
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the directory's own fd */
}

char th_task_state(pid_t pid, pid_t tid)
{
	char path[96], buf[512], *p;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", (int)pid, (int)tid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return '?';
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return '?';
	buf[n] = '\0';
	p = strrchr(buf, ')');
	return p && p[1] == ' ' ? p[2] : '?';
}

pid_t th_fork(int (*fn)(void *), void *arg)
{
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(fn(arg));
	return pid;
}

void th_wait_ok(pid_t pid)
{
	int status;

	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status), "child %d died with signal %d", (int)pid,
		      WIFSIGNALED(status) ? WTERMSIG(status) : 0);
	ck_assert_msg(WEXITSTATUS(status) == 0, "child %d exited with %d", (int)pid,
		      WEXITSTATUS(status));
}

void th_pin(int cpu)
{
	cpu_set_t set;
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	CPU_ZERO(&set);
	CPU_SET(cpu % (n > 0 ? n : 1), &set);
	(void)sched_setaffinity(0, sizeof(set), &set);
}

void *th_shared_alloc(size_t size)
{
	void *p = mmap(NULL, size ? size : 1, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	ck_assert_ptr_ne(p, MAP_FAILED);
	return p;
}

void th_shared_free(void *p, size_t size)
{
	munmap(p, size ? size : 1);
}

/* ---- the program's temporary directory ------------------------------------ */

static char tmp_base[32];
static pid_t tmp_owner;

static int tmp_remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	remove(path);
	return 0;       /* go on whatever one removal did */
}

/* Only the process that made it: a forked test that exits normally runs
 * this too, and must leave the directory to the others. */
static void tmp_remove(void)
{
	if (tmp_owner == getpid())
		nftw(tmp_base, tmp_remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

void th_tmpdir_init(void)
{
	strcpy(tmp_base, "/tmp/rbus-test-XXXXXX");
	if (!mkdtemp(tmp_base)) {
		tmp_base[0] = 0;
		return;
	}
	if (chmod(tmp_base, 0755) < 0 || atexit(tmp_remove) ||
	    setenv("TMPDIR", tmp_base, 1) < 0) {
		rmdir(tmp_base);
		tmp_base[0] = 0;
		return;
	}
	tmp_owner = getpid();
}

const char *th_tmpdir(void)
{
	return tmp_base[0] ? tmp_base : "/tmp";
}
