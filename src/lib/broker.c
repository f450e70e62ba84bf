/* SPDX-License-Identifier: MIT */
/*
 * broker.c - the client side of the ringbusd protocol (src/common/proto.h,
 * doc/protocol.md).
 *
 * One blocking request/reply round trip per call, on a SOCK_SEQPACKET
 * connection.  The daemon is trusted to be the daemon (the socket lookup
 * decides that), but what it sends is still checked: a reply of the wrong
 * size, type or sequence, or with fds where none belong, is -EPROTO and
 * its fds are closed; the region fds it sends go through the same attach
 * checks as any other (sealed, header valid).
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"
#include "proto.h"

/* How long a request waits for its reply.  A CREATE waits longer: the
 * daemon reserves and zeroes the region before it replies, measured at up
 * to 4.1 s for 1 GiB on a 2-CPU VM (design.md §13.2), and makes regions
 * over 1 MiB one at a time, so those queued before this one add theirs (two of
 * ringbusd's default largest, 1 GiB, fit in the base).  Then 10 s for each
 * GiB of its own region. */
#define BROKER_TIMEOUT_MS 5000
#define CREATE_TIMEOUT_MS 30000
#define CREATE_MS_PER_GIB 10000

struct rbus_broker {
	int fd;
	uint32_t seq;
	int broken;   /* the daemon hung up or broke the protocol */
	pid_t pid;    /* the process that connected, which the daemon holds
			 responsible for every lease taken through it */
};

RBUS_EXPORT int rbus_broker_socket_path(const char *path, char *buf, size_t len)
{
	const char *env = getenv("RINGBUS_SOCKET");
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	int n;

	if (path && *path)
		n = snprintf(buf, len, "%s", path);
	else if (env && *env)
		n = snprintf(buf, len, "%s", env);
	else if (xdg && *xdg)
		n = snprintf(buf, len, "%s/ringbus/ringbusd.sock", xdg);
	else
		n = snprintf(buf, len, "/run/ringbus/ringbusd.sock");
	if (n < 0 || (size_t)n >= len ||
	    (size_t)n >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return -ENAMETOOLONG;
	return n;
}

static void close_fds(int *fds, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

/*
 * Send @req (its header filled here but for type) and receive the reply
 * into @rep (@cap bytes), waiting @timeout_ms at most.  @fds receives up
 * to RBUS_PROTO_FDS_MAX fds, and *@nfds how many came.  Returns the
 * reply's length (>= its header, the header checked), or a negative
 * errno; on error no fd is left open.
 */
static ssize_t roundtrip_in(struct rbus_broker *b, void *req, size_t len,
			    void *rep, size_t cap, int *fds, unsigned *nfds,
			    int64_t timeout_ms)
{
	struct rbus_proto_hdr *h = req;
	struct rbus_proto_reply *r = rep;
	union {
		struct cmsghdr c;
		char buf[CMSG_SPACE(sizeof(int) * RBUS_PROTO_FDS_MAX)];
	} ctl;
	struct iovec iov = { rep, cap };
	struct msghdr m = { 0 };
	unsigned got = 0;
	ssize_t n;

	*nfds = 0;
	if (b->broken)
		return -ECONNRESET;
	h->magic = RBUS_PROTO_MAGIC;
	h->version = RBUS_PROTO_VERSION;
	h->seq = ++b->seq;
	h->len = (uint32_t)len;
	do
		n = send(b->fd, req, len, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		b->broken = 1;
		return errno == EPIPE ? -ECONNRESET : -errno;
	}
	/* Wait for the reply; signals neither end the wait nor stretch it. */
	for (int64_t until = rbus_now() + timeout_ms * 1000000;;) {
		struct pollfd p = { .fd = b->fd, .events = POLLIN };
		int64_t left = until - rbus_now();
		int k = poll(&p, 1, left > 0 ? (int)((left + 999999) / 1000000) : 0);

		if (k > 0)
			break;
		if (k == 0 || errno != EINTR) {
			/* A late reply would be taken for the next one's.
			 * Shut down at once, not at rbus_broker_close(): the
			 * daemon sees the hang-up, and does not link a channel
			 * whose CREATE we gave up on. */
			b->broken = 1;
			shutdown(b->fd, SHUT_RDWR);
			return k == 0 ? -ETIMEDOUT : -errno;
		}
	}
	m.msg_iov = &iov;
	m.msg_iovlen = 1;
	m.msg_control = ctl.buf;
	m.msg_controllen = sizeof(ctl.buf);
	do
		n = recvmsg(b->fd, &m, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		b->broken = 1;
		return errno == EAGAIN ? -EPROTO : -errno;
	}
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		unsigned k = (unsigned)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));

		for (unsigned i = 0; i < k; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(fd));
			if (got < RBUS_PROTO_FDS_MAX)
				fds[got++] = fd;
			else
				close(fd);
		}
	}
	if (n == 0) {
		b->broken = 1;
		close_fds(fds, got);
		return -ECONNRESET;
	}
	if ((m.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) ||
	    (size_t)n < sizeof(*r) || r->h.magic != RBUS_PROTO_MAGIC ||
	    r->h.version != RBUS_PROTO_VERSION ||
	    r->h.type != (h->type | RBUS_PROTO_REPLY) || r->h.seq != h->seq ||
	    r->h.len != (uint32_t)n || r->nfds != got ||
	    (r->status < 0 && (got || (size_t)n != sizeof(*r))) ||
	    r->status > 0) {
		b->broken = 1;
		close_fds(fds, got);
		return -EPROTO;
	}
	*nfds = got;
	return n;
}

static ssize_t roundtrip(struct rbus_broker *b, void *req, size_t len,
			 void *rep, size_t cap, int *fds, unsigned *nfds)
{
	return roundtrip_in(b, req, len, rep, cap, fds, nfds, BROKER_TIMEOUT_MS);
}

/* The reply timeout of CREATE @q: CREATE_TIMEOUT_MS, and
 * CREATE_MS_PER_GIB for each GiB of its region (pro rata). */
void rbus_create_opts(const struct rbus_req_create *q, struct rbus_region_opts *o)
{
	rbus_region_opts_init(o);
	o->kind = (enum rbus_kind)q->kind;
	o->capacity = q->capacity;
	o->max_msg = q->max_msg;
	o->wakeup = q->wakeup;
	o->flags = (q->flags & RBUS_BROKER_HUGETLB) ? RBUS_REGION_HUGETLB : 0;
}

static int64_t create_timeout_ms(const struct rbus_req_create *q)
{
	struct rbus_region_opts o;
	uint64_t size;

	/* Geometry the daemon refuses at once: the base is enough. */
	if (q->capacity < RBUS_CAPACITY_MIN || q->capacity > RBUS_CAPACITY_MAX ||
	    q->max_msg > RBUS_MAX_MSG_LIMIT)
		return CREATE_TIMEOUT_MS;
	rbus_create_opts(q, &o);
	size = rbus_region_size_for(&o);
	/* At most 64 GiB's worth: 670 s in all. */
	if (size > (UINT64_C(64) << 30))
		size = UINT64_C(64) << 30;
	return CREATE_TIMEOUT_MS +
	       (int64_t)(size * CREATE_MS_PER_GIB / (UINT64_C(1) << 30));
}

/* Set @field from @name; -EINVAL unless a valid channel name. */
static int put_name(char field[RBUS_PROTO_NAME], const char *name)
{
	if (!name)
		return -EINVAL;
	memset(field, 0, RBUS_PROTO_NAME);
	if (strlen(name) >= RBUS_PROTO_NAME)
		return -EINVAL;
	memcpy(field, name, strlen(name));
	return rbus_proto_name_ok(field) < 0 ? -EINVAL : 0;
}

RBUS_EXPORT int rbus_broker_connect(const char *path, struct rbus_broker **out)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct rbus_req_hello req = { .h.type = RBUS_REQ_HELLO };
	struct rbus_rep_hello rep;
	struct rbus_broker *b;
	unsigned nfds;
	int fds[RBUS_PROTO_FDS_MAX];
	ssize_t n;
	int err;

	if (!out)
		return -EINVAL;
	*out = NULL;
	err = rbus_broker_socket_path(path, sa.sun_path, sizeof(sa.sun_path));
	if (err < 0)
		return err;
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->pid = getpid();
	b->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (b->fd < 0) {
		err = -errno;
		free(b);
		return err;
	}
	do
		err = connect(b->fd, (struct sockaddr *)&sa, sizeof(sa));
	while (err < 0 && errno == EINTR);
	if (err < 0) {
		err = -errno;
		goto fail;
	}
	req.min_version = RBUS_PROTO_VERSION;
	req.max_version = RBUS_PROTO_VERSION;
	n = roundtrip(b, &req, sizeof(req), &rep, sizeof(rep), fds, &nfds);
	if (n < 0) {
		/* Hung up before HELLO's reply: the daemon refused the
		 * connection (ringbusd does, over its per-process limit). */
		err = n == -ECONNRESET ? -ECONNREFUSED : (int)n;
		goto fail;
	}
	if (rep.r.status < 0) {
		err = rep.r.status == -EPROTONOSUPPORT ? -EPROTO : rep.r.status;
		goto fail;
	}
	if (n != sizeof(rep) || nfds || rep.version != RBUS_PROTO_VERSION) {
		close_fds(fds, nfds);
		err = -EPROTO;
		goto fail;
	}
	*out = b;
	return 0;
fail:
	close(b->fd);
	free(b);
	return err;
}

RBUS_EXPORT void rbus_broker_close(struct rbus_broker *b)
{
	if (!b)
		return;
	close(b->fd);
	free(b);
}

RBUS_EXPORT void rbus_broker_create_opts_init(struct rbus_broker_create_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->kind = RBUS_KIND_SPSC;
	o->capacity = RBUS_DEFAULT_CAPACITY;
	o->max_msg = RBUS_DEFAULT_MAX_MSG;
	o->wakeup = RBUS_WAKE_FUTEX;
	o->owner_uid = RBUS_ID_CALLER;
	o->owner_gid = RBUS_ID_CALLER;
	o->mode = 0600;
}

static void entry_from(struct rbus_broker_entry *e, const struct rbus_proto_chan *c)
{
	memset(e, 0, sizeof(*e));
	memcpy(e->name, c->name, RBUS_NAME_MAX);
	e->name[RBUS_NAME_MAX] = 0;
	e->id = c->id;
	e->kind = (enum rbus_kind)c->kind;
	e->capacity = c->capacity;
	e->max_msg = c->max_msg;
	e->wakeup = c->wakeup;
	e->flags = c->flags;
	e->owner_uid = c->owner_uid;
	e->owner_gid = c->owner_gid;
	e->mode = c->mode;
	e->region_size = c->region_size;
	e->created_ns = c->created_ns;
	e->producers = c->producers;
	e->consumers = c->consumers;
}

/* Attach the region fds a CREATE or OPEN reply brought, and check that it
 * is the channel the reply describes.  Closes the fds either way. */
static int attach_reply(int *fds, unsigned nfds, const struct rbus_proto_chan *c,
			struct rbus_region **out)
{
	struct rbus_region_info info;
	int err;

	if (nfds == 0)
		return -EPROTO;
	err = rbus_region_attach_fds(fds, nfds, 0, out);
	close_fds(fds, nfds);
	if (err)
		return err;
	err = rbus_region_info(*out, &info);
	if (err || (uint32_t)info.kind != c->kind || info.capacity != c->capacity ||
	    info.max_msg != c->max_msg || info.wakeup != c->wakeup) {
		rbus_region_close(*out);
		*out = NULL;
		return err ? err : -EPROTO;
	}
	return 0;
}

RBUS_EXPORT int rbus_broker_create(struct rbus_broker *b, const char *name,
				   const struct rbus_broker_create_opts *o,
				   struct rbus_region **out)
{
	struct rbus_broker_create_opts def;
	struct rbus_req_create req = { .h.type = RBUS_REQ_CREATE };
	struct rbus_rep_create rep;
	int fds[RBUS_PROTO_FDS_MAX];
	unsigned nfds;
	ssize_t n;

	if (out)
		*out = NULL;
	if (!b || put_name(req.name, name))
		return -EINVAL;
	if (!o) {
		rbus_broker_create_opts_init(&def);
		o = &def;
	}
	if (o->reserved[0] || o->reserved[1])
		return -EINVAL;
	req.kind = (uint32_t)o->kind;
	req.capacity = o->capacity;
	req.max_msg = o->max_msg;
	req.wakeup = o->wakeup;
	req.flags = o->flags;
	req.owner_uid = o->owner_uid;
	req.owner_gid = o->owner_gid;
	req.mode = o->mode;
	n = roundtrip_in(b, &req, sizeof(req), &rep, sizeof(rep), fds, &nfds,
			 create_timeout_ms(&req));
	if (n < 0)
		return (int)n;
	if (rep.r.status < 0)
		return rep.r.status;
	if (n != sizeof(rep)) {
		close_fds(fds, nfds);
		b->broken = 1;
		return -EPROTO;
	}
	if (!out) {
		close_fds(fds, nfds);
		if (nfds != (rep.chan.wakeup == RBUS_WAKE_EVENTFD ? 3u : 1u)) {
			b->broken = 1;
			return -EPROTO;
		}
		return 0;
	}
	return attach_reply(fds, nfds, &rep.chan, out);
}

RBUS_EXPORT int rbus_broker_open(struct rbus_broker *b, const char *name,
				 enum rbus_role role, uint32_t flags,
				 struct rbus_channel **out)
{
	struct rbus_req_open req = { .h.type = RBUS_REQ_OPEN };
	struct rbus_rep_open rep;
	struct rbus_region *r;
	int fds[RBUS_PROTO_FDS_MAX];
	unsigned nfds;
	ssize_t n;
	int err;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!b || put_name(req.name, name) ||
	    (role != RBUS_PRODUCER && role != RBUS_CONSUMER) ||
	    (flags & ~RBUS_CHANNEL_EINTR))
		return -EINVAL;
	req.role = (uint32_t)role;
	n = roundtrip(b, &req, sizeof(req), &rep, sizeof(rep), fds, &nfds);
	if (n < 0)
		return (int)n;
	if (rep.r.status < 0)
		return rep.r.status;
	if (n != sizeof(rep) || rep.token < 2) {
		close_fds(fds, nfds);
		b->broken = 1;
		return -EPROTO;
	}
	err = attach_reply(fds, nfds, &rep.chan, &r);
	if (err)
		return err;
	RBUS_CLAIM_HOOK(RBUS_CLAIM_REPLY);
	/* Before this call returns, and so before any other request on
	 * this connection: ringbusd keeps the lease until then, however
	 * long that takes (it settles with the next datagram). */
	err = rbus_channel_open_token(r, role, flags, rep.token, out);
	/* Through a connection another process made (a child using its
	 * parent's, after fork()): ringbusd takes the lease for that
	 * process, and clears it when that one exits, while this handle may
	 * live on.  Its claim record is then not looked at, so say the side
	 * has claims no record shows (ring_mpmc.c). */
	if (!err && r->hdr.kind != RBUS_HDR_KIND_SPSC && getpid() != b->pid)
		rbus_mpmc_mark_unrecorded(*out);
	rbus_region_close(r);
	return err;
}

RBUS_EXPORT int rbus_broker_list(struct rbus_broker *b,
				 int (*fn)(const struct rbus_broker_entry *e, void *arg),
				 void *arg)
{
	union {
		struct rbus_rep_list rep;
		char buf[RBUS_PROTO_MSG_MAX];
	} u;
	struct rbus_req_list req;
	uint64_t after = 0;
	int fds[RBUS_PROTO_FDS_MAX];
	unsigned nfds;

	if (!b || !fn)
		return -EINVAL;
	for (;;) {
		ssize_t n;

		memset(&req, 0, sizeof(req));
		req.h.type = RBUS_REQ_LIST;
		req.after = after;
		req.max = RBUS_PROTO_LIST_MAX;
		n = roundtrip(b, &req, sizeof(req), &u, sizeof(u), fds, &nfds);
		if (n < 0)
			return (int)n;
		if (u.rep.r.status < 0)
			return u.rep.r.status;
		if (nfds || (size_t)n < sizeof(u.rep) ||
		    u.rep.count > RBUS_PROTO_LIST_MAX || u.rep.more > 1 ||
		    (size_t)n != sizeof(u.rep) + u.rep.count * sizeof(u.rep.chan[0]) ||
		    (u.rep.more && !u.rep.count)) {
			close_fds(fds, nfds);
			b->broken = 1;
			return -EPROTO;
		}
		for (uint32_t i = 0; i < u.rep.count; i++) {
			struct rbus_broker_entry e;
			int ret;

			/* Ids increase: a daemon that repeats one would
			 * make this loop forever. */
			if (u.rep.chan[i].id <= after) {
				b->broken = 1;
				return -EPROTO;
			}
			after = u.rep.chan[i].id;
			entry_from(&e, &u.rep.chan[i]);
			ret = fn(&e, arg);
			if (ret)
				return ret;
		}
		if (!u.rep.more)
			return 0;
	}
}

RBUS_EXPORT int rbus_broker_stat(struct rbus_broker *b, const char *name,
				 struct rbus_broker_stat *st)
{
	union {
		struct rbus_rep_stat rep;
		char buf[RBUS_PROTO_MSG_MAX];
	} u;
	struct rbus_req_name req = { .h.type = RBUS_REQ_STAT };
	int fds[RBUS_PROTO_FDS_MAX];
	unsigned nfds;
	ssize_t n;

	if (!b || !st || put_name(req.name, name))
		return -EINVAL;
	n = roundtrip(b, &req, sizeof(req), &u, sizeof(u), fds, &nfds);
	if (n < 0)
		return (int)n;
	if (u.rep.r.status < 0)
		return u.rep.r.status;
	if (nfds || (size_t)n < sizeof(u.rep) ||
	    u.rep.nholders > RBUS_PROTO_HOLDERS ||
	    u.rep.nholders > u.rep.holders_total ||
	    (size_t)n != sizeof(u.rep) + u.rep.nholders * sizeof(u.rep.holders[0])) {
		close_fds(fds, nfds);
		b->broken = 1;
		return -EPROTO;
	}
	memset(st, 0, sizeof(*st));
	entry_from(&st->chan, &u.rep.chan);
	st->head = u.rep.head;
	st->tail = u.rep.tail;
	st->resident = u.rep.resident;
	st->prod_attached = u.rep.prod_attached;
	st->cons_attached = u.rep.cons_attached;
	st->data_sleepers = u.rep.data_sleepers;
	st->space_sleepers = u.rep.space_sleepers;
	st->data_sleeps = u.rep.data_sleeps;
	st->data_wakes = u.rep.data_wakes;
	st->data_blind = u.rep.data_blind;
	st->space_sleeps = u.rep.space_sleeps;
	st->space_wakes = u.rep.space_wakes;
	st->space_blind = u.rep.space_blind;
	st->opens = u.rep.opens;
	st->deaths = u.rep.deaths;
	st->recovered = u.rep.recovered;
	st->nholders = u.rep.nholders;
	st->holders_total = u.rep.holders_total;
	for (uint32_t i = 0; i < u.rep.nholders; i++) {
		st->holders[i].pid = u.rep.holders[i].pid;
		st->holders[i].uid = u.rep.holders[i].uid;
		st->holders[i].role = (enum rbus_role)u.rep.holders[i].role;
		st->holders[i].token = u.rep.holders[i].token;
	}
	return 0;
}

RBUS_EXPORT int rbus_broker_unlink(struct rbus_broker *b, const char *name)
{
	struct rbus_req_name req = { .h.type = RBUS_REQ_UNLINK };
	struct rbus_proto_reply rep;
	int fds[RBUS_PROTO_FDS_MAX];
	unsigned nfds;
	ssize_t n;

	if (!b || put_name(req.name, name))
		return -EINVAL;
	n = roundtrip(b, &req, sizeof(req), &rep, sizeof(rep), fds, &nfds);
	if (n < 0)
		return (int)n;
	if (n != sizeof(rep) || nfds) {
		close_fds(fds, nfds);
		b->broken = 1;
		return -EPROTO;
	}
	return rep.status;
}
