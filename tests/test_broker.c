/* SPDX-License-Identifier: MIT */
/*
 * test_broker.c - ringbusd and the client API (ringbus/broker.h), against a
 * real daemon that each test starts on a socket of its own.
 *
 * Synchronisation.  The daemon's stderr comes back through a pipe that a
 * thread of the test drains into a buffer; a test that must know the daemon
 * has done something it does not answer for (noticed a death, removed a
 * channel, is listening) waits for its log line.  Peers report over pipes.
 * Process deaths are seen through the rings themselves: a producer blocked
 * on a full ring gets -EPIPE exactly when the daemon has released the dead
 * consumer's role.  Nothing sleeps to let another process get somewhere.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "broker_fixture.h"
#include "helpers.h"
#include "internal.h"
#include "layout.h"
#include "proto.h"

#define PEER_PATH   RBUS_BUILDDIR "/tests/broker-peer"
#define NOBODY      65534

static int count_cb(const struct rbus_broker_entry *e, void *arg)
{
	(void)e;
	(*(int *)arg)++;
	return 0;
}

static int has_cb(const struct rbus_broker_entry *e, void *arg)
{
	return strcmp(e->name, arg) == 0;
}

static int listed(struct rbus_broker *b, const char *name)
{
	int r = rbus_broker_list(b, has_cb, (void *)name);

	ck_assert_int_ge(r, 0);
	return r;
}

/* Spawn broker-peer with @args; its stdout comes back on *out. */
static pid_t peer(int *out, const char *name, const char *mode, const char *count)
{
	const char *argv[] = { PEER_PATH, D.sock, name, mode, count, NULL };
	int p[2];
	pid_t pid;

	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		dup2(p[1], STDOUT_FILENO);
		execv(PEER_PATH, (char *const *)argv);
		_exit(127);
	}
	close(p[1]);
	*out = p[0];
	return pid;
}

static void read_exact(int fd, void *buf, size_t n)
{
	char *c = buf;

	while (n) {
		ssize_t k = read(fd, c, n);

		ck_assert_msg(k > 0, "peer pipe: %s", k ? strerror(errno) : "EOF");
		c += k;
		n -= (size_t)k;
	}
}

static void wait_ready(int fd)
{
	char c;

	read_exact(fd, &c, 1);
	ck_assert_int_eq(c, 'R');
}

/* ---- basics --------------------------------------------------------------- */

START_TEST(create_list_stat_unlink)
{
	struct rbus_broker *b = conn();
	struct rbus_broker_stat st;
	struct rbus_region *r = NULL;
	struct rbus_broker_create_opts o;
	struct rbus_region_info info;
	int n = 0;

	rbus_broker_create_opts_init(&o);
	o.capacity = 64;
	o.max_msg = 100;
	ck_assert_rbus(rbus_broker_create(b, "alpha", &o, &r), 0);
	ck_assert_rbus(rbus_region_info(r, &info), 0);
	ck_assert_uint_eq(info.capacity, 64);
	ck_assert_uint_eq(info.max_msg, 100);
	rbus_region_close(r);
	ck_assert_rbus(rbus_broker_create(b, "alpha", &o, NULL), -EEXIST);
	create(b, "beta.2_x-y", RBUS_KIND_MPMC, 8, 0640, 0);

	ck_assert_rbus(rbus_broker_list(b, count_cb, &n), 0);
	ck_assert_int_eq(n, 2);
	ck_assert_int_eq(listed(b, "alpha"), 1);

	ck_assert_rbus(rbus_broker_stat(b, "beta.2_x-y", &st), 0);
	ck_assert_str_eq(st.chan.name, "beta.2_x-y");
	ck_assert_int_eq(st.chan.kind, RBUS_KIND_MPMC);
	ck_assert_uint_eq(st.chan.capacity, 8);
	ck_assert_uint_eq(st.chan.mode, 0640);
	ck_assert_uint_eq(st.chan.owner_uid, getuid());
	ck_assert_uint_eq(st.nholders, 0);
	ck_assert_uint_eq(st.head, st.tail);
	ck_assert_uint_gt(st.chan.region_size, 0);

	ck_assert_rbus(rbus_broker_unlink(b, "alpha"), 0);
	ck_assert_rbus(rbus_broker_unlink(b, "alpha"), -ENOENT);
	ck_assert_int_eq(listed(b, "alpha"), 0);
	ck_assert_rbus(rbus_broker_stat(b, "alpha", &st), -ENOENT);
	/* The name is free again at once. */
	create(b, "alpha", RBUS_KIND_SPSC, 16, 0600, 0);
	rbus_broker_close(b);
}
END_TEST

START_TEST(bad_names_and_options)
{
	static const char *const bad[] = {
		"", ".hidden", "-dash", "a/b", "sp ace", "tab\t", "\xc3\xa9",
		"0123456789012345678901234567890123456789012345678901234567890123",
	};
	struct rbus_broker *b = conn();
	struct rbus_broker_create_opts o;
	struct rbus_channel *ch = NULL;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_rbus(rbus_broker_create(b, bad[i], NULL, NULL), -EINVAL);
		ck_assert_rbus(rbus_broker_open(b, bad[i], RBUS_CONSUMER, 0, &ch), -EINVAL);
	}
	/* 63 bytes is the longest name. */
	create(b, "012345678901234567890123456789012345678901234567890123456789012",
	       RBUS_KIND_SPSC, 2, 0600, 0);

	rbus_broker_create_opts_init(&o);
	o.capacity = 3;
	ck_assert_rbus(rbus_broker_create(b, "x", &o, NULL), -EINVAL);
	rbus_broker_create_opts_init(&o);
	o.mode = 0700;  /* execute bits mean nothing here: refused */
	ck_assert_rbus(rbus_broker_create(b, "x", &o, NULL), -EINVAL);
	rbus_broker_create_opts_init(&o);
	o.kind = 7;
	ck_assert_rbus(rbus_broker_create(b, "x", &o, NULL), -EINVAL);
	rbus_broker_create_opts_init(&o);
	o.wakeup = 9;
	ck_assert_rbus(rbus_broker_create(b, "x", &o, NULL), -EINVAL);
	rbus_broker_create_opts_init(&o);
	o.flags = 1u << 9;
	ck_assert_rbus(rbus_broker_create(b, "x", &o, NULL), -EINVAL);
	ck_assert_rbus(rbus_broker_open(b, "nope", RBUS_CONSUMER, 0, &ch), -ENOENT);
	ck_assert_rbus(rbus_broker_open(b, "x", 3, 0, &ch), -EINVAL);
	ck_assert_ptr_null(ch);
	/* None of it left a channel behind. */
	ck_assert_int_eq(listed(b, "x"), 0);
	rbus_broker_close(b);
}
END_TEST

START_TEST(both_roles_both_backends)
{
	struct rbus_broker *b = conn();

	for (int i = 0; i < 4; i++) {
		struct rbus_broker_create_opts o;
		struct rbus_channel *p = NULL, *c = NULL, *p2 = NULL;
		struct rbus_broker_stat st;
		char name[16], buf[64];

		snprintf(name, sizeof(name), "ch%d", i);
		rbus_broker_create_opts_init(&o);
		o.kind = (i & 1) ? RBUS_KIND_MPMC : RBUS_KIND_SPSC;
		o.wakeup = (i & 2) ? RBUS_WAKE_EVENTFD : RBUS_WAKE_FUTEX;
		o.capacity = 16;
		ck_assert_rbus(rbus_broker_create(b, name, &o, NULL), 0);
		ck_assert_rbus(rbus_broker_open(b, name, RBUS_PRODUCER, 0, &p), 0);
		ck_assert_rbus(rbus_broker_open(b, name, RBUS_CONSUMER, 0, &c), 0);
		/* SPSC: the role is taken; the daemon says so at once. */
		ck_assert_rbus(rbus_broker_open(b, name, RBUS_PRODUCER, 0, &p2),
			       (i & 1) ? 0 : -EBUSY);
		ck_assert_rbus(rbus_send(p, "hello", 5), 0);
		ck_assert_rbus(rbus_recv_wait(c, buf, sizeof(buf), rbus_deadline_in(5000000000)), 5);
		ck_assert_int_eq(memcmp(buf, "hello", 5), 0);

		ck_assert_rbus(rbus_broker_stat(b, name, &st), 0);
		ck_assert_uint_eq(st.chan.wakeup, o.wakeup);
		ck_assert_uint_eq(st.tail - st.head, 0);
		ck_assert_uint_eq(st.prod_attached, (i & 1) ? 2 : 1);
		ck_assert_uint_eq(st.cons_attached, 1);
		ck_assert_uint_eq(st.opens, (i & 1) ? 3 : 2);
		ck_assert_uint_eq(st.chan.producers, 1);  /* processes, not handles */
		ck_assert_uint_eq(st.chan.consumers, 1);
		ck_assert_uint_eq(st.holders_total, (i & 1) ? 3 : 2);
		for (uint32_t h = 0; h < st.nholders; h++)
			ck_assert_int_eq(st.holders[h].pid, getpid());
		rbus_channel_close(p2);
		rbus_channel_close(p);
		rbus_channel_close(c);
	}
	rbus_broker_close(b);
}
END_TEST

/* The channel handle outlives the connection, and the region is sealed. */
START_TEST(handle_outlives_connection)
{
	struct rbus_broker *b = conn();
	struct rbus_channel *p = NULL, *c = NULL;
	int fd, seals;
	char buf[8];

	create(b, "solo", RBUS_KIND_SPSC, 8, 0600, 0);
	ck_assert_rbus(rbus_broker_open(b, "solo", RBUS_PRODUCER, 0, &p), 0);
	ck_assert_rbus(rbus_broker_open(b, "solo", RBUS_CONSUMER, 0, &c), 0);
	rbus_broker_close(b);
	fd = rbus_region_fd(rbus_channel_region(p));
	seals = fcntl(fd, F_GET_SEALS);
	ck_assert_int_eq(seals & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL),
			 F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
	ck_assert_int_ne(ftruncate(fd, 0), 0);
	ck_assert_rbus(rbus_send(p, "abc", 3), 0);
	ck_assert_rbus(rbus_recv(c, buf, sizeof(buf)), 3);
	rbus_channel_close(p);
	rbus_channel_close(c);
}
END_TEST

/* ---- unrelated processes -------------------------------------------------- */

/* Two exec'd peers streaming 10^6 verified messages through a new SPSC
 * channel @name; returns once both hold their roles. */
struct pair { pid_t prod, cons; int prod_out, cons_out; };

static struct pair start_pair(struct rbus_broker *b, const char *name, uint32_t capacity)
{
	struct pair pr;
	char count[32];

	snprintf(count, sizeof(count), "%llu", (unsigned long long)th_scaled(1000000));
	create(b, name, RBUS_KIND_SPSC, capacity, 0600, 0);
	pr.cons = peer(&pr.cons_out, name, "consume", count);
	pr.prod = peer(&pr.prod_out, name, "produce", count);
	wait_ready(pr.cons_out);
	wait_ready(pr.prod_out);
	return pr;
}

/* Both peers must end with every message verified. */
static void finish_pair(struct pair pr)
{
	th_wait_ok(pr.prod);
	th_wait_ok(pr.cons);
	close(pr.prod_out);
	close(pr.cons_out);
}

START_TEST(exec_peers_exchange)
{
	struct rbus_broker *b = conn();

	finish_pair(start_pair(b, "stream", 1024));
	rbus_broker_close(b);
}
END_TEST

/* ---- identity and access -------------------------------------------------- */

/* Drop root for nobody (user, group, no supplementary groups). */
static int become_nobody(void)
{
	return setgroups(0, NULL) || setgid(NOBODY) || setuid(NOBODY) ? -1 : 0;
}

/* Run as nobody: each check's number is the exit status if it fails. */
static int as_nobody(void *arg)
{
	struct rbus_broker_create_opts o;
	struct rbus_broker_stat st;
	struct rbus_channel *ch = NULL;
	struct rbus_broker *b = NULL;
	int check = 0;

	(void)arg;
	if (become_nobody())
		return 100;
#define EXPECT(call, want) do { check++; if ((call) != (want)) return check; \
	rbus_channel_close(ch); ch = NULL; } while (0)
	EXPECT(rbus_broker_connect(D.sock, &b), 0);
	EXPECT(rbus_broker_open(b, "m600", RBUS_CONSUMER, 0, &ch), -EACCES);
	EXPECT(rbus_broker_open(b, "m600", RBUS_PRODUCER, 0, &ch), -EACCES);
	EXPECT(rbus_broker_open(b, "m644", RBUS_CONSUMER, 0, &ch), 0);
	EXPECT(rbus_broker_open(b, "m644", RBUS_PRODUCER, 0, &ch), -EACCES);
	EXPECT(rbus_broker_open(b, "m602", RBUS_PRODUCER, 0, &ch), 0);
	EXPECT(rbus_broker_open(b, "m602", RBUS_CONSUMER, 0, &ch), -EACCES);
	/* The group class: the channel's group is nobody's group. */
	EXPECT(rbus_broker_open(b, "g640", RBUS_CONSUMER, 0, &ch), 0);
	EXPECT(rbus_broker_open(b, "g640", RBUS_PRODUCER, 0, &ch), -EACCES);
	EXPECT(rbus_broker_stat(b, "m600", &st), -EACCES);
	EXPECT(rbus_broker_stat(b, "m644", &st), 0);
	EXPECT(rbus_broker_unlink(b, "m644"), -EPERM);
	/* Only root may give a channel away. */
	rbus_broker_create_opts_init(&o);
	o.owner_uid = 0;
	EXPECT(rbus_broker_create(b, "theirs", &o, NULL), -EPERM);
	rbus_broker_create_opts_init(&o);
	o.owner_gid = 0;
	EXPECT(rbus_broker_create(b, "theirs", &o, NULL), -EPERM);
	EXPECT(rbus_broker_create(b, "mine", NULL, NULL), 0);
	EXPECT(rbus_broker_stat(b, "mine", &st), 0);
	check++;
	if (st.chan.owner_uid != NOBODY || st.chan.owner_gid != NOBODY)
		return check;
	EXPECT(rbus_broker_unlink(b, "mine"), 0);
	/* Names are not secret. */
	EXPECT(rbus_broker_list(b, has_cb, (void *)"m600"), 1);
#undef EXPECT
	rbus_broker_close(b);
	return 0;
}

START_TEST(access_by_uid)
{
	struct rbus_broker *b = conn();
	struct rbus_broker_create_opts o;
	int status;
	pid_t pid;

	if (geteuid() != 0) {
		/* Not skipped silently: this test needs root to become nobody. */
		ck_abort_msg("access_by_uid needs root (setuid to nobody)");
	}
	create(b, "m600", RBUS_KIND_SPSC, 8, 0600, 0);
	create(b, "m644", RBUS_KIND_MPMC, 8, 0644, 0);
	create(b, "m602", RBUS_KIND_MPMC, 8, 0602, 0);
	rbus_broker_create_opts_init(&o);
	o.kind = RBUS_KIND_MPMC;
	o.owner_gid = NOBODY;
	o.mode = 0640;
	ck_assert_rbus(rbus_broker_create(b, "g640", &o, NULL), 0);

	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(as_nobody(NULL));
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "check %d as nobody failed (status 0x%x)", WEXITSTATUS(status), status);
	/* Each refusal is logged with the uid and the channel. */
	wait_log("65534");
	pthread_mutex_lock(&D.lock);
	ck_assert_msg(strstr(D.log, "m600") && strstr(D.log, "m602"),
		      "refusals not logged by channel:\n%s", D.log);
	pthread_mutex_unlock(&D.lock);
	rbus_broker_close(b);
}
END_TEST

/* Per-user limits, as nobody: 3 channels and 600000 bytes (two regions
 * of the default geometry, ~271 KB each, but not three).  Each check's
 * number is the exit status if it fails. */
static int as_nobody_limited(void *arg)
{
	struct rbus_broker_create_opts small;
	struct rbus_channel *ch = NULL;
	struct rbus_broker *b = NULL;
	int check = 0;

	(void)arg;
	if (become_nobody())
		return 100;
	rbus_broker_create_opts_init(&small);
	small.capacity = 8;
#define EXPECT(call, want) do { check++; if ((call) != (want)) return check; } while (0)
	EXPECT(rbus_broker_connect(D.sock, &b), 0);
	EXPECT(rbus_broker_create(b, "u1", NULL, NULL), 0);
	EXPECT(rbus_broker_create(b, "u2", NULL, NULL), 0);
	/* A third of the default size: over the bytes, not the count. */
	EXPECT(rbus_broker_create(b, "u3", NULL, NULL), -EDQUOT);
	EXPECT(rbus_broker_create(b, "u3", &small, NULL), 0);
	/* The count. */
	EXPECT(rbus_broker_create(b, "u4", &small, NULL), -EDQUOT);
	/* An unlinked channel this process still uses (it created it)
	 * still counts: unlinking does not make room. */
	EXPECT(rbus_broker_open(b, "u1", RBUS_CONSUMER, 0, &ch), 0);
	EXPECT(rbus_broker_unlink(b, "u1"), 0);
	EXPECT(rbus_broker_create(b, "u4", &small, NULL), -EDQUOT);
#undef EXPECT
	rbus_channel_close(ch);
	rbus_broker_close(b);
	return 0;
}

/* Fork a process that runs as_nobody_limited() and check that it passed. */
static void run_as_nobody_limited(void)
{
	int status;
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(as_nobody_limited(NULL));
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "check %d as nobody failed (status 0x%x)", WEXITSTATUS(status), status);
}

/*
 * --max-user-channels and --max-user-size hold a uid to its channels
 * alive, linked or not; root has no per-user limit; and the room comes
 * back when the channels go with the process that created them.
 */
START_TEST(per_user_limits)
{
	static const char *const opts[] = {
		"--max-user-channels", "3", "--max-user-size", "600000", NULL
	};
	struct rbus_broker *b;

	if (geteuid() != 0)
		ck_abort_msg("per_user_limits needs root (setuid to nobody)");
	ck_assert_int_eq(daemon_stop(SIGTERM), 0);
	daemon_start_args(opts);
	run_as_nobody_limited();
	/* The refusals say which limit, on the refusal's own line. */
	wait_log("CREATE u4 refused: Disk quota exceeded (uid 65534 has 3 channels "
		 "alive or being made, --max-user-channels 3)");
	wait_log("CREATE u3 refused: Disk quota exceeded (uid 65534 has ");
	wait_log("more, --max-user-size 600000)");
	/* Root has no per-user limit. */
	b = conn();
	for (int i = 0; i < 4; i++) {
		char name[8];

		snprintf(name, sizeof(name), "r%d", i);
		create(b, name, RBUS_KIND_SPSC, 8, 0600, 0);
	}
	/* The channels went with the process that made them: the next
	 * process of the uid has the room again.  The reaper drops all of a
	 * dead process's uses in one hold of reg_lock, so once u2 and u3
	 * are logged removed, the unlinked u1 is gone too. */
	wait_log("channel u2 removed");
	wait_log("channel u3 removed");
	run_as_nobody_limited();
	rbus_broker_close(b);
}
END_TEST

/* ---- malformed requests --------------------------------------------------- */

static int raw_connect(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

	ck_assert_int_ge(fd, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", D.sock);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

static void hdr(void *buf, uint16_t type, uint32_t len)
{
	struct rbus_proto_hdr *h = buf;

	h->magic = RBUS_PROTO_MAGIC;
	h->version = RBUS_PROTO_VERSION;
	h->type = type;
	h->seq = 77;
	h->len = len;
}

/* Send @len bytes (with @nfds fds if > 0); return the reply's status, or
 * 1 if the daemon closed the connection instead.  No fds may come back. */
static int raw_send(int fd, const void *buf, size_t len, int nfds)
{
	union {
		struct cmsghdr c;
		char b[CMSG_SPACE(sizeof(int) * 24)];
	} ctl;
	struct iovec iov = { (void *)buf, len };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	char rep[RBUS_PROTO_MSG_MAX];
	struct rbus_proto_reply *r = (void *)rep;
	ssize_t n;

	if (nfds > 0) {
		int fds[24], canary = memfd_create("rbus-test-canary", MFD_CLOEXEC);

		ck_assert_int_ge(canary, 0);
		for (int i = 0; i < nfds; i++)
			fds[i] = canary;
		memset(&ctl, 0, sizeof(ctl));
		m.msg_control = ctl.b;
		m.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		ctl.c.cmsg_level = SOL_SOCKET;
		ctl.c.cmsg_type = SCM_RIGHTS;
		ctl.c.cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		memcpy(CMSG_DATA(&ctl.c), fds, sizeof(int) * (size_t)nfds);
	}
	n = sendmsg(fd, &m, MSG_NOSIGNAL);
	if (nfds > 0)
		close(*(int *)CMSG_DATA(&ctl.c));
	if (n < 0)
		return 1;   /* already closed by the daemon */
	ck_assert_int_eq(n, (ssize_t)len);
	n = recv(fd, rep, sizeof(rep), 0);
	if (n <= 0)
		return 1;
	ck_assert_int_eq(n, sizeof(*r));
	ck_assert_uint_eq(r->h.magic, RBUS_PROTO_MAGIC);
	ck_assert_uint_eq(r->h.len, sizeof(*r));
	ck_assert_uint_eq(r->nfds, 0);
	ck_assert_int_lt(r->status, 0);
	return r->status;
}

static int hello(int fd)
{
	struct rbus_req_hello h = { .min_version = 1, .max_version = 1 };
	struct rbus_rep_hello rep;

	hdr(&h, RBUS_REQ_HELLO, sizeof(h));
	ck_assert_int_eq(send(fd, &h, sizeof(h), MSG_NOSIGNAL), sizeof(h));
	ck_assert_int_eq(recv(fd, &rep, sizeof(rep), 0), sizeof(rep));
	ck_assert_int_eq(rep.r.status, 0);
	ck_assert_uint_eq(rep.version, 1);
	ck_assert_uint_eq(rep.name_max, RBUS_NAME_MAX);
	return fd;
}

/* The daemon still serves: a new client lists and finds "good". */
static void still_serving(void)
{
	struct rbus_broker *b = conn();

	ck_assert_int_eq(listed(b, "good"), 1);
	rbus_broker_close(b);
	ck_assert_int_eq(kill(D.pid, 0), 0);
}

enum corrupt_what { C_CREATE, C_OPEN, C_LIST, C_NAME, C_HELLO };

struct corrupt {
	const char *what;
	enum corrupt_what kind;
	size_t off;       /* byte to set */
	size_t width;     /* 1, 2, 4 or 8 */
	uint64_t val;
	int want;         /* status, or 1 for "connection closed" */
};

#define CR(k, type, field, v, w) { #type "." #field " = " #v, k, \
	offsetof(struct type, field), sizeof(((struct type *)0)->field), v, w }
#define CRB(k, type, field, i, v, w) { #type "." #field "[" #i "] = " #v, k, \
	offsetof(struct type, field) + (i), 1, v, w }

static const struct corrupt corpus[] = {
	/* header, on a request that is otherwise valid */
	CR(C_LIST, rbus_req_list, h.magic, 0x12345678, -EPROTO),
	CR(C_LIST, rbus_req_list, h.version, 0, -EPROTO),
	CR(C_LIST, rbus_req_list, h.version, 2, -EPROTO),
	CR(C_LIST, rbus_req_list, h.version, 0xffff, -EPROTO),
	CR(C_LIST, rbus_req_list, h.type, 0, -EOPNOTSUPP),
	CR(C_LIST, rbus_req_list, h.type, 99, -EOPNOTSUPP),
	CR(C_LIST, rbus_req_list, h.type, RBUS_REQ_LIST | RBUS_PROTO_REPLY, -EOPNOTSUPP),
	CR(C_LIST, rbus_req_list, h.type, 0xffff, -EOPNOTSUPP),
	CR(C_LIST, rbus_req_list, h.len, 0, -EBADMSG),
	CR(C_LIST, rbus_req_list, h.len, 31, -EBADMSG),
	CR(C_LIST, rbus_req_list, h.len, 33, -EBADMSG),
	CR(C_LIST, rbus_req_list, h.len, 0xffffffff, -EBADMSG),
	/* a second HELLO */
	CR(C_HELLO, rbus_req_hello, reserved, 0, -EALREADY),
	/* CREATE: every field out of range */
	CR(C_CREATE, rbus_req_create, kind, 0, -EINVAL),
	CR(C_CREATE, rbus_req_create, kind, 3, -EINVAL),
	CR(C_CREATE, rbus_req_create, kind, 0xffffffff, -EINVAL),
	CR(C_CREATE, rbus_req_create, capacity, 0, -EINVAL),
	CR(C_CREATE, rbus_req_create, capacity, 1, -EINVAL),
	CR(C_CREATE, rbus_req_create, capacity, 6, -EINVAL),
	CR(C_CREATE, rbus_req_create, capacity, 1u << 29, -EINVAL),
	CR(C_CREATE, rbus_req_create, capacity, 0x80000000u, -EINVAL),
	CR(C_CREATE, rbus_req_create, max_msg, (1u << 28) + 1, -EINVAL),
	CR(C_CREATE, rbus_req_create, max_msg, 0xffffffff, -EINVAL),
	CR(C_CREATE, rbus_req_create, wakeup, 0, -EINVAL),
	CR(C_CREATE, rbus_req_create, wakeup, 3, -EINVAL),
	CR(C_CREATE, rbus_req_create, flags, 4, -EINVAL),
	CR(C_CREATE, rbus_req_create, flags, 0x80000000u, -EINVAL),
	CR(C_CREATE, rbus_req_create, mode, 0700, -EINVAL),
	CR(C_CREATE, rbus_req_create, mode, 01000, -EINVAL),
	CR(C_CREATE, rbus_req_create, mode, 0xffffffff, -EINVAL),
	CR(C_CREATE, rbus_req_create, reserved[0], 1, -EINVAL),
	CR(C_CREATE, rbus_req_create, reserved[1], 1ull << 63, -EINVAL),
	CRB(C_CREATE, rbus_req_create, name, 0, 0, -EINVAL),
	CRB(C_CREATE, rbus_req_create, name, 0, '.', -EINVAL),
	CRB(C_CREATE, rbus_req_create, name, 0, '/', -EINVAL),
	CRB(C_CREATE, rbus_req_create, name, 1, 0xff, -EINVAL),
	CRB(C_CREATE, rbus_req_create, name, 6, 'x', -EINVAL),   /* junk after the NUL */
	CRB(C_CREATE, rbus_req_create, name, 63, 'x', -EINVAL),  /* no NUL at all */
	/* too large a region: 2^28 slots of 2^28 bytes */
	{ "create 2^28 x 2^28", C_CREATE, SIZE_MAX, 0, 0, -EFBIG },
	/* OPEN */
	CR(C_OPEN, rbus_req_open, role, 0, -EINVAL),
	CR(C_OPEN, rbus_req_open, role, 3, -EINVAL),
	CR(C_OPEN, rbus_req_open, role, 0xffffffff, -EINVAL),
	CR(C_OPEN, rbus_req_open, flags, 1, -EINVAL),
	CR(C_OPEN, rbus_req_open, reserved, 1, -EINVAL),
	CRB(C_OPEN, rbus_req_open, name, 0, 'z', -ENOENT),
	CRB(C_OPEN, rbus_req_open, name, 4, '!', -EINVAL),
	CRB(C_OPEN, rbus_req_open, name, 63, 'x', -EINVAL),
	/* LIST */
	CR(C_LIST, rbus_req_list, max, 0, -EINVAL),
	CR(C_LIST, rbus_req_list, max, RBUS_PROTO_LIST_MAX + 1, -EINVAL),
	CR(C_LIST, rbus_req_list, max, 0xffffffff, -EINVAL),
	CR(C_LIST, rbus_req_list, reserved, 1, -EINVAL),
	/* STAT / UNLINK */
	CR(C_NAME, rbus_req_name, reserved, 1, -EINVAL),
	CRB(C_NAME, rbus_req_name, name, 0, 0, -EINVAL),
	CRB(C_NAME, rbus_req_name, name, 10, 'q', -EINVAL),
};

/* A valid request of @kind in @buf; returns its length. */
static size_t valid_request(enum corrupt_what kind, void *buf)
{
	switch (kind) {
	case C_CREATE: {
		struct rbus_req_create *c = buf;

		memset(c, 0, sizeof(*c));
		hdr(c, RBUS_REQ_CREATE, sizeof(*c));
		strcpy(c->name, "newch");
		c->kind = RBUS_KIND_SPSC;
		c->capacity = 16;
		c->max_msg = 64;
		c->wakeup = RBUS_WAKE_FUTEX;
		c->owner_uid = RBUS_ID_CALLER;
		c->owner_gid = RBUS_ID_CALLER;
		c->mode = 0600;
		return sizeof(*c);
	}
	case C_OPEN: {
		struct rbus_req_open *o = buf;

		memset(o, 0, sizeof(*o));
		hdr(o, RBUS_REQ_OPEN, sizeof(*o));
		strcpy(o->name, "good");
		o->role = RBUS_CONSUMER;
		return sizeof(*o);
	}
	case C_LIST: {
		struct rbus_req_list *l = buf;

		memset(l, 0, sizeof(*l));
		hdr(l, RBUS_REQ_LIST, sizeof(*l));
		l->max = 4;
		return sizeof(*l);
	}
	case C_NAME: {
		struct rbus_req_name *n = buf;

		memset(n, 0, sizeof(*n));
		hdr(n, RBUS_REQ_STAT, sizeof(*n));
		strcpy(n->name, "good");
		return sizeof(*n);
	}
	case C_HELLO: {
		struct rbus_req_hello *h = buf;

		memset(h, 0, sizeof(*h));
		hdr(h, RBUS_REQ_HELLO, sizeof(*h));
		h->min_version = h->max_version = 1;
		return sizeof(*h);
	}
	}
	return 0;
}

START_TEST(malformed_corpus)
{
	const struct corrupt *c = &corpus[_i];
	unsigned char buf[RBUS_PROTO_MSG_MAX];
	struct rbus_broker *b = conn();
	size_t len;
	int fd;

	create(b, "good", RBUS_KIND_SPSC, 8, 0600, RBUS_BROKER_PERSISTENT);
	rbus_broker_close(b);
	fd = hello(raw_connect());
	len = valid_request(c->kind, buf);
	if (c->off == SIZE_MAX) {
		struct rbus_req_create *cr = (void *)buf;

		cr->capacity = 1u << 28;
		cr->max_msg = 1u << 28;
	} else {
		memcpy(buf + c->off, &c->val, c->width);  /* little-endian host */
	}
	ck_assert_msg(raw_send(fd, buf, len, 0) == c->want, "%s: want %d", c->what, c->want);
	/* A foreign magic or version: the daemon answers, then hangs up. */
	if (c->want == -EPROTO)
		ck_assert_int_eq(recv(fd, buf, sizeof(buf), 0), 0);
	close(fd);
	still_serving();
	/* A corrupt CREATE made no channel. */
	b = conn();
	ck_assert_int_eq(listed(b, "newch"), 0);
	rbus_broker_close(b);
}
END_TEST

START_TEST(malformed_framing)
{
	unsigned char buf[RBUS_PROTO_MSG_MAX + 512];
	struct rbus_broker *b = conn();
	size_t len;
	int fd;

	create(b, "good", RBUS_KIND_SPSC, 8, 0600, RBUS_BROKER_PERSISTENT);
	rbus_broker_close(b);

	/* Not HELLO first: closed. */
	fd = raw_connect();
	len = valid_request(C_LIST, buf);
	ck_assert_int_eq(raw_send(fd, buf, len, 0), 1);
	close(fd);
	/* HELLO with no common version: refused, closed. */
	fd = raw_connect();
	len = valid_request(C_HELLO, buf);
	((struct rbus_req_hello *)buf)->min_version = 2;
	((struct rbus_req_hello *)buf)->max_version = 5;
	ck_assert_int_eq(raw_send(fd, buf, len, 0), -EPROTONOSUPPORT);
	ck_assert_int_eq(recv(fd, buf, sizeof(buf), 0), 0);
	close(fd);
	/* HELLO with min > max. */
	fd = raw_connect();
	len = valid_request(C_HELLO, buf);
	((struct rbus_req_hello *)buf)->min_version = 3;
	ck_assert_int_eq(raw_send(fd, buf, len, 0), -EINVAL);
	close(fd);
	/* A future client offering 1..9 gets 1. */
	fd = raw_connect();
	len = valid_request(C_HELLO, buf);
	((struct rbus_proto_hdr *)buf)->version = 9;
	((struct rbus_req_hello *)buf)->max_version = 9;
	ck_assert_int_eq(send(fd, buf, len, 0), (ssize_t)len);
	ck_assert_int_eq(recv(fd, buf, sizeof(buf), 0), sizeof(struct rbus_rep_hello));
	ck_assert_int_eq(((struct rbus_rep_hello *)buf)->r.status, 0);
	ck_assert_uint_eq(((struct rbus_rep_hello *)buf)->version, 1);
	close(fd);

	fd = hello(raw_connect());
	/* Truncated: every length short of a LIST request. */
	for (size_t n = 16; n < sizeof(struct rbus_req_list); n++) {
		len = valid_request(C_LIST, buf);
		((struct rbus_proto_hdr *)buf)->len = (uint32_t)n;
		ck_assert_int_eq(raw_send(fd, buf, n, 0), -EBADMSG);
	}
	/* Oversized: longer than any datagram the protocol allows. */
	len = valid_request(C_LIST, buf);
	memset(buf + len, 0, sizeof(buf) - len);
	((struct rbus_proto_hdr *)buf)->len = sizeof(buf);
	ck_assert_int_eq(raw_send(fd, buf, sizeof(buf), 0), -EMSGSIZE);
	/* Right length in the header, longer datagram. */
	len = valid_request(C_LIST, buf);
	ck_assert_int_eq(raw_send(fd, buf, len + 8, 0), -EBADMSG);
	/* Fds where none are expected: refused, and not leaked. */
	len = valid_request(C_LIST, buf);
	ck_assert_int_eq(raw_send(fd, buf, len, 1), -EBADMSG);
	ck_assert_int_eq(raw_send(fd, buf, len, 3), -EBADMSG);
	/* More fds than the daemon makes room for (MSG_CTRUNC): those that
	 * came are closed, and the peer is dropped. */
	ck_assert_int_eq(raw_send(fd, buf, len, 24), 1);
	close(fd);
	fd = hello(raw_connect());
	/* Fds on a datagram too short to answer: closed, peer dropped. */
	ck_assert_int_eq(raw_send(fd, buf, 8, 2), 1);
	close(fd);
	fd = hello(raw_connect());
	/* The connection still works after all of that. */
	len = valid_request(C_NAME, buf);
	{
		struct rbus_rep_stat *st = (void *)buf;

		ck_assert_int_eq(send(fd, buf, len, 0), (ssize_t)len);
		ck_assert_int_ge(recv(fd, buf, sizeof(buf), 0), (ssize_t)sizeof(*st));
		ck_assert_int_eq(st->r.status, 0);
	}
	close(fd);
	/* Shorter than a header: closed. */
	fd = hello(raw_connect());
	ck_assert_int_eq(raw_send(fd, "abc", 3, 0), 1);
	close(fd);
	/* An empty datagram: closed or refused, never a crash. */
	fd = hello(raw_connect());
	ck_assert_int_ne(raw_send(fd, "", 0, 0), 0);
	close(fd);
	/* Half a request, then hang up. */
	fd = hello(raw_connect());
	len = valid_request(C_CREATE, buf);
	ck_assert_int_eq(send(fd, buf, 20, 0), 20);
	close(fd);
	still_serving();
	/* The daemon leaked none of the fds it was sent. */
	for (int i = 0; i < 4096; i++) {
		char path[64], link[256];
		ssize_t n;

		snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)D.pid, i);
		n = readlink(path, link, sizeof(link) - 1);
		if (n <= 0)
			continue;
		link[n] = 0;
		ck_assert_msg(!strstr(link, "rbus-test-canary"), "daemon fd %d leaked: %s",
			      i, link);
	}
}
END_TEST

/* ---- death of a client ----------------------------------------------------- */

/* Reads a report peer's sequence numbers into seen[] until EOF. */
struct reports {
	int fd;
	uint64_t total, first, next, count;
	uint8_t *seen;
	int bad;                    /* a number out of range or out of order */
};

static void *read_reports(void *arg)
{
	struct reports *r = arg;
	uint64_t s;

	r->first = UINT64_MAX;
	for (;;) {
		ssize_t n = read(r->fd, &s, sizeof(s));

		if (n == 0)
			return NULL;
		if (n != sizeof(s) || s >= r->total ||
		    (r->first != UINT64_MAX && s != r->next)) {
			r->bad = 1;
			return NULL;
		}
		if (r->first == UINT64_MAX)
			r->first = s;
		r->seen[s] = 1;
		r->next = s + 1;
		r->count++;
	}
}

static void send_seq(struct rbus_channel *p, uint64_t seq)
{
	unsigned char msg[256];

	ck_assert_rbus(rbus_send_wait(p, msg, th_msg_make(msg, 256, 0, seq),
				      rbus_deadline_in(20000000000)), 0);
}

START_TEST(kill_consumer_resumes)
{
	/* Phase 1 fits the report pipe (64 KiB = 8192 reports) and the ring,
	 * so the producer never waits for the test to read. */
	const uint64_t phase1 = 4000, total = phase1 + th_scaled(200000);
	struct rbus_broker *b = conn();
	struct rbus_channel *p = NULL;
	struct rbus_broker_stat st;
	unsigned char msg[256];
	uint8_t *seen = calloc(total, 1);
	struct reports r1 = { .total = total, .seen = seen };
	struct reports r2 = { .total = total, .seen = seen };
	pthread_t reader;
	uint64_t seq;
	int status, err;
	pid_t c1, c2;

	ck_assert_ptr_nonnull(seen);
	create(b, "resume", RBUS_KIND_SPSC, 256, 0600, 0);
	ck_assert_rbus(rbus_broker_open(b, "resume", RBUS_PRODUCER, 0, &p), 0);

	/* Consumer 1 reports each message it takes; kill it mid-stream,
	 * once it has taken 1000 (we have read 1000 reports). */
	c1 = peer(&r1.fd, "resume", "report", NULL);
	wait_ready(r1.fd);
	for (seq = 0; seq < phase1; seq++)
		send_seq(p, seq);
	for (uint64_t i = 0; i < 1000; i++) {
		uint64_t s;

		read_exact(r1.fd, &s, sizeof(s));
		ck_assert_uint_eq(s, i);
	}
	ck_assert_int_eq(kill(c1, SIGKILL), 0);
	ck_assert_int_eq(waitpid(c1, &status, 0), c1);
	ck_assert(WIFSIGNALED(status));
	/* Everything it reported, the 1000 read above included. */
	memset(seen, 1, 1000);
	r1.first = 0;
	r1.next = 1000;
	r1.count = 1000;
	for (;;) {
		uint64_t s;
		ssize_t n = read(r1.fd, &s, sizeof(s));

		if (n == 0)
			break;
		ck_assert_int_eq(n, sizeof(s));
		ck_assert_uint_eq(s, r1.next);
		seen[s] = 1;
		r1.next++;
	}
	close(r1.fd);

	/* The producer fills the ring, then waits: it gets -EPIPE exactly
	 * when the daemon has released the dead consumer's role (the
	 * recovery wakes it). */
	for (;;) {
		ck_assert_uint_lt(seq, total);
		err = rbus_send_wait(p, msg, th_msg_make(msg, 256, 0, seq),
				     rbus_deadline_in(20000000000));
		if (err == -EPIPE)
			break;
		ck_assert_rbus(err, 0);
		seq++;
	}
	wait_log("released");
	ck_assert_rbus(rbus_broker_stat(b, "resume", &st), 0);
	ck_assert_uint_eq(st.deaths, 1);
	ck_assert_uint_eq(st.recovered, 1);
	ck_assert_uint_eq(st.cons_attached, 0);
	ck_assert_uint_eq(st.chan.consumers, 0);

	/* Consumer 2 gets every message consumer 1 did not release. */
	c2 = peer(&r2.fd, "resume", "report", NULL);
	wait_ready(r2.fd);
	ck_assert_int_eq(pthread_create(&reader, NULL, read_reports, &r2), 0);
	for (; seq < total; seq++)
		send_seq(p, seq);
	rbus_channel_close(p);  /* consumer 2 ends on the hang-up */
	pthread_join(reader, NULL);
	close(r2.fd);
	th_wait_ok(c2);
	ck_assert_msg(!r2.bad, "consumer 2 reported out of order");
	/* At least once: a kill between report and release repeats exactly
	 * that one message; nothing is missing, and consumer 2 ran to the
	 * end. */
	ck_assert_uint_le(r2.first, r1.next);
	ck_assert_uint_ge(r2.first + 1, r1.next);
	ck_assert_uint_eq(r2.next, total);
	for (uint64_t i = 0; i < total; i++)
		ck_assert_msg(seen[i], "message %llu lost", (unsigned long long)i);
	free(seen);
	rbus_broker_close(b);
}
END_TEST

/* An MPMC producer that dies: the count drops, the consumer sees the hang-up. */
static int mpmc_holder(void *arg)
{
	int *pipes = arg;
	struct rbus_broker *b = NULL;
	struct rbus_channel *ch = NULL, *ch2 = NULL;
	char c = 'R';

	if (rbus_broker_connect(D.sock, &b) ||
	    rbus_broker_open(b, "many", RBUS_PRODUCER, 0, &ch) ||
	    rbus_broker_open(b, "many", RBUS_PRODUCER, 0, &ch2) ||
	    rbus_send(ch, "x", 1))
		return 1;
	rbus_broker_close(b);
	if (write(pipes[1], &c, 1) != 1)
		return 1;
	/* Wait to be killed. */
	(void)read(pipes[0], &c, 1);
	return 1;
}

START_TEST(kill_mpmc_producer)
{
	struct rbus_broker *b = conn();
	struct rbus_channel *c = NULL, *p = NULL;
	struct rbus_broker_stat st;
	struct holder h;
	char buf[8];

	create(b, "many", RBUS_KIND_MPMC, 16, 0600, 0);
	ck_assert_rbus(rbus_broker_open(b, "many", RBUS_CONSUMER, 0, &c), 0);
	/* A producer that opens and closes cleanly leaves the count alone. */
	ck_assert_rbus(rbus_broker_open(b, "many", RBUS_PRODUCER, 0, &p), 0);
	rbus_channel_close(p);

	holder_start(&h, mpmc_holder);
	ck_assert_rbus(rbus_broker_stat(b, "many", &st), 0);
	ck_assert_uint_eq(st.prod_attached, 2);
	/* Processes holding the role: the test's own handle is closed, and
	 * shared memory says so (its lease entry is clear). */
	ck_assert_uint_eq(st.chan.producers, 1);
	holder_kill(&h);

	/* Its message is there; after it, the hang-up. */
	ck_assert_rbus(rbus_recv_wait(c, buf, sizeof(buf), rbus_deadline_in(20000000000)), 1);
	ck_assert_rbus(rbus_recv_wait(c, buf, sizeof(buf), rbus_deadline_in(20000000000)),
		       -EPIPE);
	ck_assert_rbus(rbus_broker_stat(b, "many", &st), 0);
	ck_assert_uint_eq(st.prod_attached, 0);
	ck_assert_uint_eq(st.deaths, 1);
	ck_assert_uint_eq(st.recovered, 2);
	rbus_channel_close(c);
	holder_end(&h);
	rbus_broker_close(b);
}
END_TEST

/* MPMC handles that die holding slots: a producer with a reservation it
 * never committed, a consumer with a message it peeked and never released.
 * ringbusd finishes both claims (rbus_mpmc_recover()): the first is passed
 * over as skipped, the second freed (its message is lost with the consumer
 * that had taken it), and the ring moves on.  Without that, the consumers
 * would stop for good at the unpublished slot, and the producers a lap
 * later at the unfreed one.
 * _i 1: handles without a record of their own (opened without the broker)
 * have tried to claim on both sides first, which turns off the recovery of
 * claims not known to be won; these claims were won, and are recovered
 * still. */
static int slot_holder(void *arg)
{
	int *pipes = arg;
	struct rbus_broker *b = NULL;
	struct rbus_channel *p = NULL, *c = NULL;
	const void *msg;
	void *slot;
	char ch = 'R';

	if (rbus_broker_connect(D.sock, &b) ||
	    rbus_broker_open(b, "held", RBUS_PRODUCER, 0, &p) ||
	    rbus_broker_open(b, "held", RBUS_CONSUMER, 0, &c))
		return 1;
	rbus_broker_close(b);
	/* Index 0: the parent's "B", peeked and held. */
	if (rbus_peek(c, &msg) != 1 || *(const char *)msg != 'B')
		return 2;
	/* Index 1: reserved, written, never committed. */
	if (rbus_reserve(p, &slot))
		return 3;
	memset(slot, 'X', 1);
	if (write(pipes[1], &ch, 1) != 1)
		return 4;
	/* Wait to be killed. */
	(void)read(pipes[0], &ch, 1);
	return 5;
}

START_TEST(kill_mpmc_slot_holders)
{
	struct rbus_broker *b = conn();
	struct rbus_channel *c = NULL, *p = NULL, *lp = NULL, *lc = NULL;
	struct rbus_broker_stat st;
	struct holder h;
	char buf[8];

	create(b, "held", RBUS_KIND_MPMC, 16, 0600, 0);
	ck_assert_rbus(rbus_broker_open(b, "held", RBUS_CONSUMER, 0, &c), 0);
	ck_assert_rbus(rbus_broker_open(b, "held", RBUS_PRODUCER, 0, &p), 0);
	if (_i) {
		struct rbus_region *r = rbus_channel_region(p);

		ck_assert_rbus(rbus_channel_open(r, RBUS_CONSUMER, 0, &lc), 0);
		ck_assert_rbus(rbus_channel_open(r, RBUS_PRODUCER, 0, &lp), 0);
		ck_assert_rbus(rbus_recv(lc, buf, sizeof(buf)), -EAGAIN);
		ck_assert_rbus(rbus_send(lp, "B", 1), 0);
		ck_assert_uint_eq(atomic_load(&r->prod->unrecorded), 1);
		ck_assert_uint_eq(atomic_load(&r->cons->unrecorded), 1);
	} else {
		ck_assert_rbus(rbus_send(p, "B", 1), 0);
	}

	holder_start(&h, slot_holder);
	/* Index 2; the consumers stop at index 1, claimed and unpublished. */
	ck_assert_rbus(rbus_send(p, "A", 1), 0);
	ck_assert_rbus(rbus_recv(c, buf, sizeof(buf)), -EAGAIN);

	holder_kill(&h);

	/* The reservation is passed over... */
	ck_assert_rbus(rbus_recv_wait(c, buf, sizeof(buf), rbus_deadline_in(20000000000)), 1);
	ck_assert_int_eq(buf[0], 'A');
	/* ... and a full lap later the peeked slot is free again: index 16
	 * is slot 0's next lap. */
	for (int i = 0; i < 16; i++) {
		char m = (char)('a' + i);

		ck_assert_rbus(rbus_send_wait(p, &m, 1, rbus_deadline_in(20000000000)), 0);
	}
	for (int i = 0; i < 16; i++) {
		ck_assert_rbus(rbus_recv(c, buf, sizeof(buf)), 1);
		ck_assert_int_eq(buf[0], 'a' + i);
	}
	ck_assert_rbus(rbus_recv(c, buf, sizeof(buf)), -EAGAIN);
	/* The slot stores we saw come before the daemon counts the death;
	 * STAT reads the shared counts under the same lock as the count,
	 * so once it shows the death, it shows the roles dropped. */
	do {
		stat_polled(b, "held", &st);
		sched_yield();
	} while (st.deaths == 0);
	ck_assert_uint_eq(st.deaths, 1);
	ck_assert_uint_eq(st.recovered, 2);
	ck_assert_uint_eq(st.prod_attached, 1u + _i);
	ck_assert_uint_eq(st.cons_attached, 1u + _i);
	if (_i) {
		rbus_channel_close(lp);
		rbus_channel_close(lc);
	}
	rbus_channel_close(p);
	rbus_channel_close(c);
	holder_end(&h);
	rbus_broker_close(b);
}
END_TEST

/* A child that goes on using an MPMC handle its parent opened, through
 * fork(), holds its claims under the parent's token; ringbusd recovers that
 * token when the parent exits.  The child's claims must not be finished
 * under it: its own commit afterwards would leave a stamp a lap behind and
 * stop the ring.  The library notes claims only in the process that opened
 * the handle (MADV_WIPEONFORK, ring_mpmc.c).  Process A opens and forks B;
 * B reserves a slot; A exits and is recovered; B then commits. */
static int fork_user(void *arg)
{
	int *pipes = arg;       /* go (test -> B), done (B -> test) */
	struct rbus_broker *b = NULL;
	struct rbus_channel *p = NULL;
	int ab[2];
	void *slot;
	char ch;

	if (rbus_broker_connect(D.sock, &b) ||
	    rbus_broker_open(b, "forked", RBUS_PRODUCER, 0, &p) || pipe(ab))
		return 1;
	rbus_broker_close(b);
	switch (fork()) {
	case -1:
		return 2;
	case 0:
		/* B: the parent's handle, in the child. */
		if (rbus_reserve(p, &slot))
			_exit(3);
		memset(slot, 'F', 1);
		if (write(ab[1], "r", 1) != 1 || read(pipes[0], &ch, 1) != 1 ||
		    rbus_commit(p, 1) || write(pipes[1], "c", 1) != 1)
			_exit(4);
		_exit(0);
	default:
		/* A: exit once B holds its claim. */
		return read(ab[0], &ch, 1) == 1 ? 0 : 5;
	}
}

START_TEST(fork_child_keeps_its_claims)
{
	struct rbus_broker *b = conn();
	struct rbus_channel *c = NULL, *p = NULL;
	struct rbus_broker_stat st;
	int go[2], done[2], args[2];
	char buf[8];

	create(b, "forked", RBUS_KIND_MPMC, 16, 0600, 0);
	ck_assert_rbus(rbus_broker_open(b, "forked", RBUS_CONSUMER, 0, &c), 0);
	ck_assert_rbus(rbus_broker_open(b, "forked", RBUS_PRODUCER, 0, &p), 0);
	ck_assert_int_eq(pipe(go), 0);
	ck_assert_int_eq(pipe(done), 0);
	args[0] = go[0];
	args[1] = done[1];
	th_wait_ok(th_fork(fork_user, args));
	/* A has exited; wait until ringbusd has recovered its lease. */
	do {
		stat_polled(b, "forked", &st);
		sched_yield();
	} while (st.deaths == 0);
	ck_assert_uint_eq(st.recovered, 1);
	ck_assert_uint_eq(st.prod_attached, 1);
	/* B's slot is still B's: nothing to read yet.  B claimed without a
	 * record of its own, and said so. */
	ck_assert_rbus(rbus_recv(c, buf, sizeof(buf)), -EAGAIN);
	ck_assert_uint_eq(atomic_load(&rbus_channel_region(p)->prod->unrecorded), 1);
	ck_assert_uint_eq(atomic_load(&rbus_channel_region(p)->cons->unrecorded), 0);
	ck_assert_int_eq(write(go[1], "g", 1), 1);
	ck_assert_int_eq(read(done[0], buf, 1), 1);
	ck_assert_int_eq(buf[0], 'c');
	ck_assert_rbus(rbus_recv(c, buf, sizeof(buf)), 1);
	ck_assert_int_eq(buf[0], 'F');
	/* And the ring goes on, through B's slot's next lap. */
	full_laps(p, c, 2);
	rbus_channel_close(p);
	rbus_channel_close(c);
	close(go[0]);
	close(go[1]);
	close(done[0]);
	close(done[1]);
	rbus_broker_close(b);
}
END_TEST

/* A child that closes an MPMC handle it inherited leaves the opener's lease
 * entry and count alone: the parent goes on using the handle, and a
 * recovery must go on seeing its claim record (design.md §3.9).  Before,
 * the child's close freed the entry and dropped the count. */
static int close_inherited(void *arg)
{
	rbus_channel_close(arg);
	return 0;
}

START_TEST(fork_child_close_keeps_lease)
{
	struct rbus_broker *b = conn();
	struct rbus_channel *c = NULL, *p = NULL;
	struct rbus_side *side;
	uint32_t lease, attached, unrecorded;

	create(b, "forked", RBUS_KIND_MPMC, 16, 0600, 0);
	ck_assert_rbus(rbus_broker_open(b, "forked", RBUS_CONSUMER, 0, &c), 0);
	ck_assert_rbus(rbus_broker_open(b, "forked", RBUS_PRODUCER, 0, &p), 0);
	side = rbus_channel_region(p)->prod;
	ck_assert_int_ge(p->lease, 0);
	th_wait_ok(th_fork(close_inherited, p));
	lease = atomic_load(&side->leases[p->lease]);
	attached = atomic_load(&side->attached);
	unrecorded = atomic_load(&side->unrecorded);
	ck_assert_uint_eq(lease, p->token);
	ck_assert_uint_eq(attached, 1);
	ck_assert_uint_eq(unrecorded, 0);
	full_laps(p, c, 1);
	rbus_channel_close(p);
	rbus_channel_close(c);
	rbus_broker_close(b);
}
END_TEST

/* A handle opened through a connection another process made (a parent's,
 * after fork()) has its lease taken for that process, which ringbusd
 * recovers when that one exits, perhaps while the handle lives on: the
 * open marks the side as having claims no record shows. */
static int open_through_parent(void *arg)
{
	struct rbus_channel *ch = NULL;

	if (rbus_broker_open(arg, "borrowed", RBUS_PRODUCER, 0, &ch))
		return 1;
	if (atomic_load(&rbus_channel_region(ch)->prod->unrecorded) != 1)
		return 2;
	if (atomic_load(&rbus_channel_region(ch)->cons->unrecorded) != 0)
		return 3;
	rbus_channel_close(ch);
	return 0;
}

START_TEST(open_through_parents_connection)
{
	struct rbus_broker *b = conn();
	struct rbus_channel *p = NULL;

	create(b, "borrowed", RBUS_KIND_MPMC, 16, 0600, 0);
	/* The process that connected: no mark. */
	ck_assert_rbus(rbus_broker_open(b, "borrowed", RBUS_PRODUCER, 0, &p), 0);
	ck_assert_uint_eq(atomic_load(&rbus_channel_region(p)->prod->unrecorded), 0);
	th_wait_ok(th_fork(open_through_parent, b));
	rbus_channel_close(p);
	rbus_broker_close(b);
}
END_TEST

/* A process that dies after writing nonsense into every claim record of
 * both sides (a hostile or broken peer): ringbusd recovers its handles and
 * touches no slot it should not.  The records cover the parent's committed,
 * unread messages from every angle a bounds check could get wrong. */
static int record_vandal(void *arg)
{
	int *pipes = arg;
	struct rbus_broker *b = NULL;
	struct rbus_channel *p = NULL, *more = NULL;
	struct rbus_region_info info;
	struct rbus_claim *rec;
	unsigned char *base;
	int fd;
	char ch = 'R';

	/* Six handles of each role, six lease entries and records each. */
	if (rbus_broker_connect(D.sock, &b) ||
	    rbus_broker_open(b, "vandal", RBUS_PRODUCER, 0, &p))
		return 1;
	for (int i = 0; i < 11; i++)
		if (rbus_broker_open(b, "vandal", i < 5 ? RBUS_PRODUCER : RBUS_CONSUMER, 0, &more))
			return 1;
	rbus_broker_close(b);
	fd = rbus_region_fd(rbus_channel_region(p));
	if (rbus_region_info(rbus_channel_region(p), &info))
		return 2;
	base = mmap(NULL, info.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED)
		return 3;
	rec = (struct rbus_claim *)(base + ((struct rbus_hdr *)base)->claims_off);
	for (unsigned i = 0; i < 2 * RBUS_SIDE_LEASES; i++) {
		static const uint64_t firsts[] = { 0, 1, 4, 15, 16, UINT64_MAX - 3 };
		static const uint32_t counts[] = { 16, 4, UINT32_MAX, 1, 1u << 28, 8 };

		atomic_store(&rec[i].first, firsts[i % 6]);
		/* Half as intents, half as claims known to be won. */
		atomic_store(&rec[i].count, counts[i % 6] | (i % 12 < 6 ? RBUS_CLAIM_HELD : 0));
	}
	if (write(pipes[1], &ch, 1) != 1)
		return 4;
	(void)read(pipes[0], &ch, 1);
	return 5;
}

START_TEST(hostile_claim_records)
{
	struct rbus_broker *b = conn();
	struct rbus_channel *c = NULL, *p = NULL;
	struct rbus_broker_stat st;
	struct holder h;
	char buf[8];

	create(b, "vandal", RBUS_KIND_MPMC, 16, 0600, 0);
	ck_assert_rbus(rbus_broker_open(b, "vandal", RBUS_CONSUMER, 0, &c), 0);
	ck_assert_rbus(rbus_broker_open(b, "vandal", RBUS_PRODUCER, 0, &p), 0);
	/* Indices 0-3 taken, 4-11 committed and unread. */
	for (int i = 0; i < 12; i++)
		ck_assert_rbus(rbus_send(p, &(char){ (char)('a' + i) }, 1), 0);
	for (int i = 0; i < 4; i++)
		ck_assert_rbus(rbus_recv(c, buf, sizeof(buf)), 1);

	holder_start(&h, record_vandal);
	holder_kill(&h);
	/* ringbusd noticed, recovered the twelve handles, and lives.  A
	 * reply that shows the death shows the recovery whole (the shared
	 * counts are read under the lock the recovery holds). */
	do {
		stat_polled(b, "vandal", &st);
		sched_yield();
	} while (st.deaths == 0);
	ck_assert_uint_eq(st.deaths, 1);
	ck_assert_uint_eq(st.recovered, 12);
	ck_assert_uint_eq(st.prod_attached, 1);
	ck_assert_uint_eq(st.cons_attached, 1);
	/* Every message is there, in order, and the ring goes on. */
	for (int i = 4; i < 12; i++) {
		ck_assert_rbus(rbus_recv(c, buf, sizeof(buf)), 1);
		ck_assert_int_eq(buf[0], 'a' + i);
	}
	ck_assert_rbus(rbus_recv(c, buf, sizeof(buf)), -EAGAIN);
	full_laps(p, c, 3);
	rbus_channel_close(p);
	rbus_channel_close(c);
	holder_end(&h);
	rbus_broker_close(b);
}
END_TEST

/* Channels without a user go, unless persistent. */
static int make_two(void *arg)
{
	struct rbus_broker_create_opts o;
	struct rbus_broker *b = NULL;

	(void)arg;
	rbus_broker_create_opts_init(&o);
	if (rbus_broker_connect(D.sock, &b) || rbus_broker_create(b, "passing", &o, NULL))
		return 1;
	o.flags = RBUS_BROKER_PERSISTENT;
	if (rbus_broker_create(b, "lasting", &o, NULL))
		return 2;
	/* Exit without closing: the pidfd, not the connection, tells. */
	return 0;
}

START_TEST(unused_channels_removed)
{
	struct rbus_broker *b = conn();

	th_wait_ok(th_fork(make_two, NULL));
	wait_log("passing");
	wait_log_n("removed", 0, 1);
	ck_assert_int_eq(listed(b, "passing"), 0);
	ck_assert_int_eq(listed(b, "lasting"), 1);
	ck_assert_rbus(rbus_broker_unlink(b, "lasting"), 0);
	rbus_broker_close(b);
}
END_TEST

/* ---- death of the daemon --------------------------------------------------- */

START_TEST(kill_daemon_midstream)
{
	struct rbus_broker *b = conn();
	struct pair pr = start_pair(b, "orphan", 256);

	rbus_broker_close(b);
	/* Both hold their handles: the daemon is not on the data path. */
	ck_assert_int_ne(daemon_stop(SIGKILL), 0);
	finish_pair(pr);

	/* A new daemon takes over the socket the dead one left... */
	ck_assert_int_eq(access(D.sock, F_OK), 0);
	daemon_start();
	/* ...knowing nothing of the old channels, as documented: the name
	 * is free, and a create makes a new channel. */
	b = conn();
	ck_assert_int_eq(listed(b, "orphan"), 0);
	create(b, "orphan", RBUS_KIND_SPSC, 256, 0600, 0);
	ck_assert_int_eq(listed(b, "orphan"), 1);
	rbus_broker_close(b);
}
END_TEST

/* ---- the daemon's process ---------------------------------------------------- */

START_TEST(second_daemon_refused)
{
	const char *argv[] = { DAEMON_PATH, "--socket", D.sock, NULL };
	int status;
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);

		dup2(null, STDERR_FILENO);
		execv(DAEMON_PATH, (char *const *)argv);
		_exit(127);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 1);
	/* The first one still serves. */
	rbus_broker_close(conn());
}
END_TEST

START_TEST(no_daemon)
{
	struct rbus_broker *b = NULL;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char path[100];
	int fd;

	snprintf(path, sizeof(path), "%s/none.sock", D.dir);
	ck_assert_rbus(rbus_broker_connect(path, &b), -ENOENT);
	ck_assert_ptr_null(b);
	/* A socket file nobody listens on. */
	fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	ck_assert_rbus(rbus_broker_connect(path, &b), -ECONNREFUSED);
	unlink(path);
}
END_TEST

START_TEST(socket_lookup)
{
	char buf[128];

	ck_assert_int_gt(rbus_broker_socket_path("/x/y.sock", buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "/x/y.sock");
	setenv("RINGBUS_SOCKET", "/env/s", 1);
	setenv("XDG_RUNTIME_DIR", "/run/user/7", 1);
	ck_assert_int_gt(rbus_broker_socket_path(NULL, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "/env/s");
	unsetenv("RINGBUS_SOCKET");
	ck_assert_int_gt(rbus_broker_socket_path(NULL, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "/run/user/7/ringbus/ringbusd.sock");
	unsetenv("XDG_RUNTIME_DIR");
	ck_assert_int_gt(rbus_broker_socket_path(NULL, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "/run/ringbus/ringbusd.sock");
	ck_assert_rbus(rbus_broker_socket_path(NULL, buf, 4), -ENAMETOOLONG);
	memset(buf, 'a', sizeof(buf) - 1);
	buf[sizeof(buf) - 1] = 0;
	{
		char out[256];

		ck_assert_rbus(rbus_broker_socket_path(buf, out, sizeof(out)),
			       -ENAMETOOLONG);
	}
	/* The daemon does the same lookup. */
	setenv("RINGBUS_SOCKET", D.sock, 1);
	{
		struct rbus_broker *b = NULL;

		ck_assert_rbus(rbus_broker_connect(NULL, &b), 0);
		rbus_broker_close(b);
	}
}
END_TEST

START_TEST(client_limits)
{
	static const char *const opts[] = {
		"--max-client-channels", "3", "--max-rate", "50", "--max-client-conns", "3",
		"--max-total-size", "200000",
		"--max-region-size", "1048576", NULL
	};
	struct rbus_broker_create_opts o;
	struct rbus_broker *b;
	int refused = 0;

	ck_assert_int_eq(daemon_stop(SIGTERM), 0);
	daemon_start_args(opts);
	b = conn();
	rbus_broker_create_opts_init(&o);
	o.capacity = 8192;
	o.max_msg = 256;   /* > 1 MiB of slots */
	ck_assert_rbus(rbus_broker_create(b, "big", &o, NULL), -EFBIG);
	create(b, "one", RBUS_KIND_SPSC, 8, 0600, 0);
	create(b, "two", RBUS_KIND_SPSC, 8, 0600, 0);
	/* 1024 slots of 264 bytes: more than the 200000 left in total. */
	ck_assert_rbus(rbus_broker_create(b, "three", NULL, NULL), -EDQUOT);
	create(b, "three", RBUS_KIND_SPSC, 8, 0600, 0);
	ck_assert_rbus(rbus_broker_create(b, "four", NULL, NULL), -EDQUOT);
	/* Three connections per process, the first included: a fourth is
	 * refused at once, HELLO or not. */
	{
		struct rbus_broker *b2 = conn(), *b3 = conn(), *b4 = NULL;
		int raw = raw_connect();

		ck_assert_int_eq(recv(raw, &(char){ 0 }, 1, 0), 0);  /* closed */
		close(raw);
		ck_assert_rbus(rbus_broker_connect(D.sock, &b4), -ECONNREFUSED);
		rbus_broker_close(b3);
		/* A freed place can be taken again.  b2's round trip comes
		 * after b3's hang-up in the daemon's event queue. */
		ck_assert_int_eq(listed(b2, "one"), 1);
		b3 = conn();
		rbus_broker_close(b3);
		rbus_broker_close(b2);
	}
	/* 50 requests a second with a burst of 50: 200 at once trip it. */
	for (int i = 0; i < 200; i++) {
		int r = rbus_broker_list(b, count_cb, &(int){ 0 });

		if (r == -EAGAIN)
			refused++;
		else
			ck_assert_rbus(r, 0);
	}
	ck_assert_int_gt(refused, 0);
	rbus_broker_close(b);
}
END_TEST

/* A process that opens and closes handles keeps no lease for them: each
 * lease settles with the next request on its connection, or when the
 * connection closes, and is forgotten once no handle holds it. */
START_TEST(closed_handles_forgotten)
{
	struct rbus_broker *b, *b2;
	struct rbus_broker_stat st;
	struct rbus_channel *ch = NULL, *kept = NULL;

	b = conn();
	create(b, "churn", RBUS_KIND_SPSC, 8, 0600, 0);
	create(b, "mchurn", RBUS_KIND_MPMC, 8, 0600, 0);
	for (int i = 0; i < 50; i++) {
		ck_assert_rbus(rbus_broker_open(b, "churn", RBUS_CONSUMER, 0, &ch), 0);
		rbus_channel_close(ch);
		ck_assert_rbus(rbus_broker_open(b, "mchurn", RBUS_PRODUCER, 0, &ch), 0);
		rbus_channel_close(ch);
	}
	ck_assert_rbus(rbus_broker_open(b, "mchurn", RBUS_PRODUCER, 0, &kept), 0);
	ck_assert_rbus(rbus_broker_stat(b, "churn", &st), 0);
	/* Each OPEN of churn forgot the lease before, and this STAT the
	 * last (STAT lists held leases only: the log shows them gone). */
	wait_log_n(" of churn forgotten: no handle holds it", 0, 50);
	ck_assert_uint_eq(st.opens, 50);
	ck_assert_uint_eq(st.holders_total, 0);
	ck_assert_uint_eq(st.chan.consumers, 0);
	ck_assert_rbus(rbus_broker_stat(b, "mchurn", &st), 0);
	ck_assert_uint_eq(st.opens, 51);
	ck_assert_uint_eq(st.holders_total, 1);   /* the one still open */
	ck_assert_uint_eq(st.holders[0].pid, getpid());
	ck_assert_uint_eq(st.chan.producers, 1);
	rbus_channel_close(kept);
	ck_assert_rbus(rbus_broker_stat(b, "mchurn", &st), 0);
	ck_assert_uint_eq(st.holders_total, 0);
	ck_assert_uint_eq(st.chan.producers, 0);
	/* Through a connection that closes before the handle does: the
	 * lease settles at the close. */
	b2 = conn();
	ck_assert_rbus(rbus_broker_open(b2, "churn", RBUS_PRODUCER, 0, &ch), 0);
	rbus_broker_close(b2);
	ck_assert_rbus(rbus_broker_stat(b, "churn", &st), 0);
	ck_assert_uint_eq(st.holders_total, 1);
	ck_assert_uint_eq(st.chan.producers, 1);
	rbus_channel_close(ch);
	stat_polled(b, "churn", &st);
	ck_assert_uint_eq(st.holders_total, 0);
	ck_assert_uint_eq(st.chan.producers, 0);
	/* Forgotten once ringbusd has seen b2's hang-up, which may come
	 * after a STAT or two. */
	while (log_count(" of churn forgotten: no handle holds it") < 51) {
		stat_polled(b, "churn", &st);
		sched_yield();
	}
	/* Through a connection that stays open and idle: the lease stays
	 * unsettled, but STAT lists held leases only. */
	b2 = conn();
	ck_assert_rbus(rbus_broker_open(b2, "churn", RBUS_PRODUCER, 0, &ch), 0);
	rbus_channel_close(ch);
	ck_assert_rbus(rbus_broker_stat(b, "churn", &st), 0);
	ck_assert_uint_eq(st.holders_total, 0);
	ck_assert_uint_eq(st.nholders, 0);
	rbus_broker_close(b2);
	rbus_broker_close(b);
}
END_TEST

/* An OPEN whose reply cannot be delivered (the client shut its reading side
 * first) leaves a lease the client never saw.  ringbusd drops the
 * connection right there, with no datagram after the OPEN to settle the
 * lease, so the drop must settle it, and STAT then forgets it.  Without
 * that, the lease stayed for as long as the process lived. */
START_TEST(open_reply_not_taken_settles)
{
	struct rbus_broker *b = conn();
	struct rbus_broker_stat st;
	struct rbus_req_open q;
	int fd;

	create(b, "unseen", RBUS_KIND_SPSC, 8, 0600, 0);
	fd = hello(raw_connect());
	memset(&q, 0, sizeof(q));
	hdr(&q, RBUS_REQ_OPEN, sizeof(q));
	strcpy(q.name, "unseen");
	q.role = RBUS_CONSUMER;
	ck_assert_int_eq(shutdown(fd, SHUT_RD), 0);
	ck_assert_int_eq(send(fd, &q, sizeof(q), MSG_NOSIGNAL), (ssize_t)sizeof(q));
	wait_log("reply not taken");
	ck_assert_rbus(rbus_broker_stat(b, "unseen", &st), 0);
	ck_assert_uint_eq(st.opens, 1);
	ck_assert_uint_eq(st.holders_total, 0);
	wait_log(" of unseen forgotten: no handle holds it");
	close(fd);
	rbus_broker_close(b);
}
END_TEST

/* --- CREATEs made in the background (src/daemon/maker.c) ---------------- */

/* The regions of these tests' CREATEs ('c' below: 4096 slots of 264
 * bytes, ~1.1 MB) are over the 1 MiB that ringbusd makes at once, so they
 * go to the maker thread: one fits in this total, two do not. */
#define MAKER_TOTAL "2000000"
#define MAKER_CAPACITY 4096

/* A request on a connection of its own, in a thread, so that the test can
 * pass the gate (below) while it waits for its reply. */
struct bg_req {
	pthread_t thread;
	char op;                     /* 'c' CREATE of MAKER_CAPACITY slots,
					'C' CREATE of 2048 slots of 256 KiB,
					'o' OPEN consumer, 's' STAT, 'u' UNLINK */
	char name[32];
	uint32_t flags;              /* of a CREATE */
	_Atomic int ret;             /* 1 until the call returns */
};

static void *bg_main(void *arg)
{
	struct bg_req *a = arg;
	struct rbus_broker_create_opts o;
	struct rbus_broker_stat st;
	struct rbus_channel *ch = NULL;
	struct rbus_broker *b = NULL;
	int r;

	rbus_broker_create_opts_init(&o);
	o.flags = a->flags;
	o.capacity = MAKER_CAPACITY;
	if (a->op == 'C') {
		o.capacity = 2048;
		o.max_msg = 256 * 1024;
	}
	r = rbus_broker_connect(D.sock, &b);
	if (!r) {
		if (a->op == 'c' || a->op == 'C')
			r = rbus_broker_create(b, a->name, &o, NULL);
		else if (a->op == 'o')
			r = rbus_broker_open(b, a->name, RBUS_CONSUMER, 0, &ch);
		else if (a->op == 's')
			r = rbus_broker_stat(b, a->name, &st);
		else
			r = rbus_broker_unlink(b, a->name);
		rbus_channel_close(ch);
		rbus_broker_close(b);
	}
	atomic_store(&a->ret, r);
	return NULL;
}

static void bg_start(struct bg_req *a, char op, const char *name, uint32_t flags)
{
	a->op = op;
	snprintf(a->name, sizeof(a->name), "%s", name);
	a->flags = flags;
	a->ret = 1;
	ck_assert_int_eq(pthread_create(&a->thread, NULL, bg_main, a), 0);
}

static int bg_join(struct bg_req *a)
{
	ck_assert_int_eq(pthread_join(a->thread, NULL), 0);
	return a->ret;
}

static char gate[128];

/* Restart the daemon as the hooks build, whose maker thread holds each
 * CREATE before making its region until a byte passes the FIFO `gate`,
 * with --max-total-size @total and --max-client-channels @nchan. */
static void maker_daemon_n(const char *total, const char *nchan)
{
	const char *const opts[] = {
		"--max-total-size", total, "--max-client-channels", nchan, NULL
	};

	ck_assert_int_eq(daemon_stop(SIGTERM), 0);
	snprintf(gate, sizeof(gate), "%s/gate", D.dir);
	ck_assert_int_eq(mkfifo(gate, 0600), 0);
	ck_assert_int_eq(setenv("RINGBUSD_TEST_CREATE_GATE", gate, 1), 0);
	D.path = DAEMON_HOOKS_PATH;
	daemon_start_args(opts);
}

static void maker_daemon(void)
{
	maker_daemon_n(MAKER_TOTAL, "1024");
}

/* Let one held CREATE through.  The maker keeps the FIFO open from its
 * first job on, and each byte lets one job through: the tests write only
 * once the job is held ("held at the test gate"). */
static void gate_pass(void)
{
	int fd = open(gate, O_WRONLY | O_CLOEXEC);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "g", 1), 1);
	close(fd);
}

static void maker_teardown(void)
{
	/* A failed test may have left a CREATE at the gate, which the
	 * daemon's SIGTERM would wait for: let it through.  The open fails
	 * (ENXIO) when no job ever came to the gate. */
	int fd = open(gate, O_WRONLY | O_NONBLOCK | O_CLOEXEC);

	if (fd >= 0) {
		ck_assert_int_eq(write(fd, "g", 1), 1);
		close(fd);
	}
	teardown();
	unlink(gate);
	unsetenv("RINGBUSD_TEST_CREATE_GATE");
}

/*
 * While a CREATE's region is being made, the daemon answers everyone
 * else, a CREATE of a small region (made at once, not queued behind the
 * large one) included, and the region's bytes count against the total
 * (-EDQUOT).  The
 * requests that name the channel wait for the CREATE's answer and then
 * see its outcome: a second CREATE gets -EEXIST, an OPEN a handle.  Before
 * maker.c, the first request after the held CREATE was never answered:
 * the daemon made regions on its one thread.  With the name only reserved,
 * an OPEN of it got -ENOENT while a CREATE got -EEXIST, and `ringbus pub`
 * and `ringbus sub` racing to make a channel gave up (test_cli_pubsub's
 * yes_head).
 */
START_TEST(create_held_others_served)
{
	struct bg_req held, create2, open1, stat1;
	struct rbus_broker_create_opts o;
	struct rbus_broker_stat st;
	struct rbus_channel *ch = NULL;
	struct rbus_broker *b;

	maker_daemon();
	bg_start(&held, 'c', "held", RBUS_BROKER_PERSISTENT);
	wait_log("CREATE of held held at the test gate");
	b = conn();
	ck_assert_int_eq(listed(b, "held"), 0);
	ck_assert_rbus(rbus_broker_stat(b, "elsewhere", &st), -ENOENT);
	ck_assert_rbus(rbus_broker_open(b, "elsewhere", RBUS_CONSUMER, 0, &ch), -ENOENT);
	rbus_broker_create_opts_init(&o);
	o.capacity = MAKER_CAPACITY;
	ck_assert_rbus(rbus_broker_create(b, "other", &o, NULL), -EDQUOT);
	create(b, "small", RBUS_KIND_SPSC, 8, 0600, 0);
	bg_start(&create2, 'c', "held", 0);
	bg_start(&open1, 'o', "held", 0);
	bg_start(&stat1, 's', "held", 0);
	wait_log_n("waits for the CREATE in flight", 0, 3);
	ck_assert_int_eq(atomic_load(&held.ret), 1);
	ck_assert_int_eq(atomic_load(&create2.ret), 1);
	ck_assert_int_eq(atomic_load(&open1.ret), 1);
	ck_assert_int_eq(atomic_load(&stat1.ret), 1);
	gate_pass();
	ck_assert_rbus(bg_join(&held), 0);
	ck_assert_rbus(bg_join(&create2), -EEXIST);
	ck_assert_rbus(bg_join(&open1), 0);
	ck_assert_rbus(bg_join(&stat1), 0);
	ck_assert_int_eq(listed(b, "held"), 1);
	ck_assert_rbus(rbus_broker_stat(b, "held", &st), 0);
	ck_assert_uint_eq(st.chan.capacity, MAKER_CAPACITY);
	/* The connections are back in the loop: a second request on one. */
	ck_assert_rbus(rbus_broker_open(b, "held", RBUS_PRODUCER, 0, &ch), 0);
	rbus_channel_close(ch);
	ck_assert_rbus(rbus_broker_unlink(b, "held"), 0);
	rbus_broker_close(b);
}
END_TEST

/* A client that dies while its CREATE is being made gets no channel; a
 * CREATE of the same name that waited for it then makes the channel, in
 * the room the first one held. */
static int create_and_wait(void *arg)
{
	int *pipes = arg;
	struct rbus_broker *b = NULL;
	struct rbus_broker_create_opts o;

	rbus_broker_create_opts_init(&o);
	o.flags = RBUS_BROKER_PERSISTENT;
	o.capacity = MAKER_CAPACITY;
	if (rbus_broker_connect(D.sock, &b) || write(pipes[1], "c", 1) != 1)
		return 1;
	rbus_broker_create(b, "gone", &o, NULL);
	return 0;
}

START_TEST(create_of_dead_client)
{
	struct bg_req again, open1, unlink1;
	struct holder h;
	struct rbus_broker *b;

	maker_daemon();
	/* The holder connects, says so, and is killed with its CREATE held. */
	holder_start(&h, create_and_wait);
	wait_log("CREATE of gone held at the test gate");
	/* One after the other: waiters are asked again in the order they
	 * came, and the OPEN and UNLINK must come first to find nothing. */
	bg_start(&open1, 'o', "gone", 0);
	wait_log_n("waits for the CREATE in flight", 0, 1);
	bg_start(&unlink1, 'u', "gone", 0);
	wait_log_n("waits for the CREATE in flight", 0, 2);
	bg_start(&again, 'c', "gone", 0);
	wait_log_n("waits for the CREATE in flight", 0, 3);
	holder_kill(&h);
	holder_end(&h);
	gate_pass();
	wait_log("hung up while the region of gone was made: channel not created");
	/* The waiting OPEN and UNLINK find nothing; the CREATE is made. */
	ck_assert_rbus(bg_join(&open1), -ENOENT);
	ck_assert_rbus(bg_join(&unlink1), -ENOENT);
	wait_log_n("CREATE of gone held at the test gate", 0, 2);
	b = conn();
	ck_assert_int_eq(listed(b, "gone"), 0);
	gate_pass();
	ck_assert_rbus(bg_join(&again), 0);
	rbus_broker_close(b);
}
END_TEST

/* A channel another process made, for open_counts_creates_in_flight:
 * the holder connects, says so, creates "x" (small: made at once) and
 * waits to be killed. */
static int create_x_and_wait(void *arg)
{
	int *pipes = arg;
	struct rbus_broker *b = NULL;

	if (rbus_broker_connect(D.sock, &b) || write(pipes[1], "c", 1) != 1)
		return 1;
	if (rbus_broker_create(b, "x", NULL, NULL))
		return 1;
	pause();
	return 0;
}

/* A process's CREATEs in flight count against its channels for OPEN as
 * for CREATE: with a limit of 2, one channel made and one being made, an
 * OPEN of a third is refused.  Without it the process ended up using 3. */
START_TEST(open_counts_creates_in_flight)
{
	struct bg_req a, b2;
	struct rbus_channel *ch = NULL;
	struct holder h;
	struct rbus_broker *b;

	maker_daemon_n("10000000", "2");
	holder_start(&h, create_x_and_wait);
	wait_log("created x");
	bg_start(&a, 'c', "a", 0);
	wait_log("CREATE of a held at the test gate");
	gate_pass();
	ck_assert_rbus(bg_join(&a), 0);
	bg_start(&b2, 'c', "b", 0);
	wait_log("CREATE of b held at the test gate");
	b = conn();
	ck_assert_rbus(rbus_broker_open(b, "x", RBUS_CONSUMER, 0, &ch), -EDQUOT);
	gate_pass();
	ck_assert_rbus(bg_join(&b2), 0);
	/* Still two channels: "a" and "b"; "x" stays out of reach. */
	ck_assert_rbus(rbus_broker_open(b, "x", RBUS_CONSUMER, 0, &ch), -EDQUOT);
	rbus_broker_close(b);
	holder_kill(&h);
	holder_end(&h);
}
END_TEST

/*
 * A CREATE's reply can take seconds (the daemon zeroes the region first,
 * and those of the CREATEs before it): the client waits 30 s plus 10 s per
 * GiB of region.  Held at the gate for 6 s, a CREATE of 512 MiB still gets
 * its channel; with the 5 s of other requests it got -ETIMEDOUT.  The hold
 * is the point of the test, so it is a timed wait, the only one here.
 */
START_TEST(create_waits_for_large_region)
{
	struct rbus_broker *b = NULL;
	struct bg_req big;
	struct timespec hold = { 6, 0 };

	maker_daemon_n("2000000000", "1024");
	bg_start(&big, 'C', "big", 0);
	wait_log("CREATE of big held at the test gate");
	while (clock_nanosleep(CLOCK_MONOTONIC, 0, &hold, &hold) == EINTR)
		;
	gate_pass();
	ck_assert_rbus(bg_join(&big), 0);
	b = conn();
	ck_assert_int_eq(listed(b, "big"), 1);
	rbus_broker_close(b);
}
END_TEST

/* A raw CREATE of @name on a new connection: @capacity slots of 256 B. */
static int raw_create(const char *name, uint32_t capacity)
{
	unsigned char buf[RBUS_PROTO_MSG_MAX];
	struct rbus_req_create *q = (void *)buf;
	int fd = hello(raw_connect());

	valid_request(C_CREATE, buf);
	strcpy(q->name, name);
	q->capacity = capacity;
	q->max_msg = 256;
	ck_assert_int_eq(send(fd, buf, sizeof(*q), MSG_NOSIGNAL), (ssize_t)sizeof(*q));
	return fd;
}

/*
 * A client that hangs up while its CREATE's region is being made (its
 * CREATE timed out, or it closed the connection) gets no channel: ringbusd
 * frees the region instead of linking it, and an OPEN that waited for that
 * CREATE finds no channel.  Nor does a small CREATE of the name that waited
 * too, and whose client shut its connection down meanwhile (as the library
 * does when a request times out): asked again, it is not made.  Before,
 * those channels were linked for clients that never heard of them, and the
 * name was taken when they tried again.
 */
START_TEST(create_abandoned_not_linked)
{
	struct rbus_broker *b;
	struct bg_req open1;
	int fd, fd2;

	maker_daemon();
	fd = raw_create("abandoned", MAKER_CAPACITY);
	wait_log("CREATE of abandoned held at the test gate");
	bg_start(&open1, 'o', "abandoned", 0);
	wait_log_n("waits for the CREATE in flight", 0, 1);
	fd2 = raw_create("abandoned", 8);
	wait_log_n("waits for the CREATE in flight", 0, 2);
	close(fd);
	ck_assert_int_eq(shutdown(fd2, SHUT_RDWR), 0);
	gate_pass();
	wait_log("hung up while the region of abandoned was made: channel not created");
	ck_assert_rbus(bg_join(&open1), -ENOENT);
	wait_log("hung up before its CREATE abandoned was handled: not done");
	close(fd2);
	b = conn();
	ck_assert_int_eq(listed(b, "abandoned"), 0);
	create(b, "abandoned", RBUS_KIND_SPSC, 8, 0600, 0);
	rbus_broker_close(b);
}
END_TEST

/* An OPEN in a thread of its own that says on `done` that the call
 * returned, and keeps its connection open until the test writes to `hold`. */
struct kept_open {
	pthread_t thread;
	int hold[2], done[2];
	_Atomic int ret;
};

static void *kept_open_main(void *arg)
{
	struct kept_open *k = arg;
	struct rbus_broker *b = NULL;
	struct rbus_channel *ch = NULL;
	char c;
	int r = rbus_broker_connect(D.sock, &b);

	if (!r)
		r = rbus_broker_open(b, "slow", RBUS_CONSUMER, 0, &ch);
	atomic_store(&k->ret, r);
	(void)!write(k->done[1], "r", 1);
	(void)!read(k->hold[0], &c, 1);
	rbus_channel_close(ch);
	rbus_broker_close(b);
	return NULL;
}

/*
 * A request that times out shuts its connection down there and then, not
 * at rbus_broker_close(), so that ringbusd knows nobody will read the reply
 * (and so does not link a CREATE's channel, above).  An OPEN waits for a
 * CREATE held at the gate, times out after its 5 s, and its thread keeps
 * the connection; once the CREATE is let through and the OPEN asked again,
 * its reply is not taken.  Without the shutdown the reply went into the
 * buffer of a connection nobody reads.  A timed wait, for the timeout.
 */
START_TEST(timed_out_request_hangs_up)
{
	struct kept_open k = { .ret = 1 };
	struct bg_req slow;
	char c;

	maker_daemon();
	ck_assert_int_eq(pipe(k.hold), 0);
	ck_assert_int_eq(pipe(k.done), 0);
	bg_start(&slow, 'c', "slow", 0);
	wait_log("CREATE of slow held at the test gate");
	ck_assert_int_eq(pthread_create(&k.thread, NULL, kept_open_main, &k), 0);
	wait_log("waits for the CREATE in flight");
	ck_assert_int_eq(read(k.done[0], &c, 1), 1);
	ck_assert_rbus(atomic_load(&k.ret), -ETIMEDOUT);
	gate_pass();
	ck_assert_rbus(bg_join(&slow), 0);
	wait_log("reply not taken");
	ck_assert_int_eq(write(k.hold[1], "x", 1), 1);
	ck_assert_int_eq(pthread_join(k.thread, NULL), 0);
	for (int i = 0; i < 2; i++) {
		close(k.hold[i]);
		close(k.done[i]);
	}
}
END_TEST

/* SIGTERM while a region is being made: the daemon waits for it, makes no
 * channel of it, drops the connection, and exits cleanly (no leak under
 * ASan: the teardown checks the exit status). */
START_TEST(shutdown_with_create_in_flight)
{
	struct bg_req late;
	int status;

	maker_daemon();
	bg_start(&late, 'c', "late", RBUS_BROKER_PERSISTENT);
	wait_log("CREATE of late held at the test gate");
	ck_assert_int_eq(kill(D.pid, SIGTERM), 0);
	wait_log("waiting for the region of the CREATE of late to be made");
	gate_pass();
	wait_log("CREATE of late dropped at shutdown");
	ck_assert_rbus(bg_join(&late), -ECONNRESET);
	status = daemon_stop(SIGTERM);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "ringbusd ended with status 0x%x", status);
}
END_TEST

static Suite *broker_suite(void)
{
	Suite *s = suite_create("broker");
	TCase *tc;

	tc = tcase_create("api");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, create_list_stat_unlink);
	tcase_add_test(tc, bad_names_and_options);
	tcase_add_test(tc, both_roles_both_backends);
	tcase_add_test(tc, handle_outlives_connection);
	tcase_add_test(tc, socket_lookup);
	tcase_add_test(tc, no_daemon);
	tcase_add_test(tc, second_daemon_refused);
	tcase_add_test(tc, client_limits);
	tcase_add_test(tc, closed_handles_forgotten);
	tcase_add_test(tc, open_reply_not_taken_settles);
	suite_add_tcase(s, tc);

	tc = tcase_create("access");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, access_by_uid);
	tcase_add_test(tc, per_user_limits);
	suite_add_tcase(s, tc);

	tc = tcase_create("malformed");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, malformed_corpus, 0, (int)(sizeof(corpus) / sizeof(corpus[0])));
	tcase_add_test(tc, malformed_framing);
	suite_add_tcase(s, tc);

	tc = tcase_create("maker");
	tcase_add_checked_fixture(tc, setup, maker_teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, create_held_others_served);
	tcase_add_test(tc, create_of_dead_client);
	tcase_add_test(tc, open_counts_creates_in_flight);
	tcase_add_test(tc, create_waits_for_large_region);
	tcase_add_test(tc, create_abandoned_not_linked);
	tcase_add_test(tc, timed_out_request_hangs_up);
	tcase_add_test(tc, shutdown_with_create_in_flight);
	suite_add_tcase(s, tc);

	tc = tcase_create("death");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, exec_peers_exchange);
	tcase_add_test(tc, kill_consumer_resumes);
	tcase_add_test(tc, kill_mpmc_producer);
	tcase_add_loop_test(tc, kill_mpmc_slot_holders, 0, 2);
	tcase_add_test(tc, hostile_claim_records);
	tcase_add_test(tc, fork_child_keeps_its_claims);
	tcase_add_test(tc, fork_child_close_keeps_lease);
	tcase_add_test(tc, open_through_parents_connection);
	tcase_add_test(tc, unused_channels_removed);
	tcase_add_test(tc, kill_daemon_midstream);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(broker_suite());
	int failed;

	th_tmpdir_init();
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
