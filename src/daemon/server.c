/* SPDX-License-Identifier: MIT */
/*
 * server.c - the listening socket, connections, and the checks every
 * datagram passes before a handler sees it.
 *
 * One epoll loop in the main thread: the listening socket, a signalfd for
 * SIGTERM and SIGINT, and the connections.  Each datagram is one request;
 * it is checked in the order doc/protocol.md gives (fds, size, magic,
 * length, version, HELLO first, type, exact size, zero fields, rate), and
 * answered with one datagram, sent without blocking: a client that does not
 * read its replies is disconnected rather than allowed to stall the daemon.
 *
 * A CREATE of a region over 1 MiB is answered later: its region is made
 * on the maker thread (maker.c), whose eventfd is in the loop too.  Until then its connection
 * is out of the loop: the client waits for that reply before it sends
 * anything else, and every other connection is served meanwhile.  A
 * request that names the channel of a CREATE in flight (RBUSD_WAIT) is
 * set aside the same way and handled again once the CREATE is answered.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ringbusd.h"

#define NSEC_PER_SEC    UINT64_C(1000000000)
#define EVENTS_BATCH    64
#define ACCEPT_BATCH    64      /* connections accepted per wakeup */
#define REQUESTS_BATCH  16      /* requests of one connection per wakeup */
#define ACCEPT_PAUSE_MS 100     /* after EMFILE and the like */
#define FDS_ROOM        8       /* fds a request may bring (all refused) */

/* Returned by check_request(): hang up without a reply. */
#define DROP_SILENTLY 1
/* Returned by dispatch(): the client hung up; the request was not handled. */
#define HUNG_UP 4

struct conn {
	struct conn *prev, *next;
	int fd;
	bool hello;
	bool waiting;           /* for a CREATE's answer; out of the loop */
	struct conn *wnext;     /* in the waiters of a CREATE in flight */
	void *parked;           /* a request to ask again (RBUSD_WAIT), or NULL */
	uint64_t credit;        /* rate limit: requests * NSEC_PER_SEC */
	uint64_t last_ns;
	struct peer pe;
};

static char sock_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
static char lock_path[sizeof(sock_path) + 8];
static int lock_fd = -1, listen_fd = -1, sig_fd = -1, ep_fd = -1, maker_fd = -1;
static bool bound;
static struct conn *conns;
static uint64_t conn_ids;             /* the last struct peer.id given */
static int64_t accept_paused_until;   /* ms, CLOCK_MONOTONIC; 0: accepting */
/* epoll tags of the fds that are not connections. */
static char tag_listen, tag_signal, tag_maker;
/* The reply being built: one at a time, on the main thread. */
static struct reply answer;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

/* --- the socket ----------------------------------------------------------- */

/* Create the socket's directory if it is missing (one level). */
static int make_parent(const char *path)
{
	char dir[sizeof(sock_path)];
	char *slash;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return 0;
	*slash = 0;
	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		log_error("cannot create %s: %s", dir, strerror(errno));
		return -errno;
	}
	return 0;
}

/*
 * Take the lock file beside the socket.  Who holds it owns the socket
 * path.  The file is unlinked at exit, so a lock taken on a file that
 * has just been unlinked (or replaced) is worthless: retry until the
 * locked file is the one the path names.
 */
static int take_lock(void)
{
	for (;;) {
		struct stat a, b;

		lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
		if (lock_fd < 0) {
			log_error("cannot open %s: %s", lock_path, strerror(errno));
			return -errno;
		}
		if (flock(lock_fd, LOCK_EX | LOCK_NB) < 0) {
			int err = errno;

			if (err == EWOULDBLOCK)
				log_error("another ringbusd owns %s", sock_path);
			else
				log_error("cannot lock %s: %s", lock_path, strerror(err));
			/* Not ours: server_fini() must not remove it. */
			close(lock_fd);
			lock_fd = -1;
			return -err;
		}
		if (fstat(lock_fd, &a) == 0 && stat(lock_path, &b) == 0 &&
		    a.st_dev == b.st_dev && a.st_ino == b.st_ino)
			return 0;
		close(lock_fd);
	}
}

/* Remove a socket left by a daemon that did not exit cleanly.  We hold
 * the lock, so nobody serves on it.  Anything but a socket stays. */
static int remove_stale(void)
{
	struct stat st;

	if (lstat(sock_path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode)) {
		log_error("%s exists and is not a socket", sock_path);
		return -EEXIST;
	}
	if (unlink(sock_path) < 0) {
		log_error("cannot remove the stale socket %s: %s", sock_path,
			  strerror(errno));
		return -errno;
	}
	log_info("removed a stale socket %s", sock_path);
	return 0;
}

/* Bind and listen; the socket is non-blocking, like every connection. */
static int open_listener(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	memcpy(sa.sun_path, sock_path, strlen(sock_path) + 1);
	listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		log_error("cannot bind %s: %s", sock_path, strerror(errno));
		return -errno;
	}
	bound = true;
	/* Anyone may connect: each request is judged by SO_PEERCRED. */
	if (chmod(sock_path, 0666) < 0 || listen(listen_fd, SOMAXCONN) < 0) {
		log_error("cannot listen on %s: %s", sock_path, strerror(errno));
		return -errno;
	}
	return 0;
}

static int epoll_add(int fd, void *ptr)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = ptr };

	return epoll_ctl(ep_fd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

/* SIGTERM and SIGINT arrive through a signalfd; main() blocked them. */
static int open_signals(void)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sig_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	return sig_fd < 0 ? -errno : 0;
}

int server_init(const char *path)
{
	int err = rbus_broker_socket_path(path, sock_path, sizeof(sock_path));

	if (err < 0) {
		log_error("socket path too long");
		return err;
	}
	snprintf(lock_path, sizeof(lock_path), "%s.lock", sock_path);
	err = make_parent(sock_path);
	if (!err)
		err = take_lock();
	if (!err)
		err = remove_stale();
	if (!err)
		err = open_listener();
	if (err)
		return err;
	ep_fd = epoll_create1(EPOLL_CLOEXEC);
	if (ep_fd < 0 || open_signals() < 0 ||
	    epoll_add(listen_fd, &tag_listen) < 0 || epoll_add(sig_fd, &tag_signal) < 0) {
		log_error("cannot set up the event loop: %s", strerror(errno));
		return -errno;
	}
	err = maker_start(&maker_fd);
	if (!err)
		err = epoll_add(maker_fd, &tag_maker);
	if (err)
		log_error("cannot start the thread that makes regions: %s", strerror(-err));
	return err;
}

/* --- connections ---------------------------------------------------------- */

/* @c sent a datagram or hung up: whatever the OPEN before it handed out is
 * claimed by now, or never will be through it (use_prune_leases()). */
static void conn_settle(struct conn *c)
{
	if (!c->pe.unsettled)
		return;
	reg_lock();
	proc_settle_leases(c->pe.proc, c->pe.id);
	reg_unlock();
	c->pe.unsettled = false;
}

/* Close @c and forget it; its process may go with it (procs.c). */
static void conn_drop(struct conn *c)
{
	epoll_ctl(ep_fd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	reg_lock();
	if (c->pe.unsettled)
		proc_settle_leases(c->pe.proc, c->pe.id);
	proc_disconnect(c->pe.proc);
	reg_unlock();
	free(c->parked);
	free(c->pe.groups);
	if (c->prev)
		c->prev->next = c->next;
	else
		conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	free(c);
}

/* The supplementary groups of @fd's peer as the kernel recorded them at
 * connect() (SO_PEERGROUPS), into a new array: the same instant as
 * SO_PEERCRED, so no later process can lend the connection its groups. */
static int peer_groups(int fd, gid_t **groups, unsigned *n)
{
	socklen_t len = 16 * sizeof(gid_t);

	*groups = NULL;
	*n = 0;
	for (int tries = 0; tries < 4; tries++) {
		gid_t *g = malloc(len ? len : sizeof(gid_t));

		if (!g)
			return -ENOMEM;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, g, &len) == 0) {
			*groups = g;
			*n = (unsigned)(len / sizeof(gid_t));
			return 0;
		}
		free(g);
		/* ERANGE: len now says how much is needed. */
		if (errno != ERANGE)
			return -errno;
	}
	return -EAGAIN;
}

/* The process record and groups of a new connection's peer.  A process
 * with max_client_conns connections already gets no more: -EMFILE (a
 * client that connects and never says HELLO must not use up the daemon's
 * fds either). */
static int conn_identify(struct conn *c)
{
	int err = peer_groups(c->fd, &c->pe.groups, &c->pe.ngroups);

	if (err)
		return err;
	reg_lock();
	rcu_read_lock();
	err = proc_connect(c->pe.pid, c->pe.uid, &c->pe.proc);
	if (!err && c->pe.proc->nconns > rbusd_cfg.max_client_conns) {
		proc_disconnect(c->pe.proc);
		c->pe.proc = NULL;
		err = -EMFILE;
	}
	rcu_read_unlock();
	reg_unlock();
	return err;
}

/* Take connection @fd into the loop, or close it. */
static void conn_new(int fd)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);
	struct conn *c;
	int err;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0 || cr.pid <= 0) {
		log_warn("connection without a peer pid refused");
		close(fd);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		log_warn("out of memory: connection of pid %d refused", (int)cr.pid);
		close(fd);
		return;
	}
	c->fd = fd;
	c->pe.id = ++conn_ids;
	c->pe.pid = cr.pid;
	c->pe.uid = cr.uid;
	c->pe.gid = cr.gid;
	c->credit = (uint64_t)rbusd_cfg.max_rate * NSEC_PER_SEC;
	c->last_ns = now_ns();
	err = conn_identify(c);
	if (!err)
		err = epoll_add(fd, c);
	if (err) {
		if (c->pe.proc) {
			reg_lock();
			proc_disconnect(c->pe.proc);
			reg_unlock();
		}
		log_warn("connection of pid %d (uid %u) refused: %s", (int)cr.pid,
			 (unsigned)cr.uid, strerror(-err));
		free(c->pe.groups);
		free(c);
		close(fd);
		return;
	}
	c->next = conns;
	if (conns)
		conns->prev = c;
	conns = c;
	log_debug("pid %d (uid %u) connected", (int)cr.pid, (unsigned)cr.uid);
}

static int64_t now_ms(void)
{
	return (int64_t)(now_ns() / 1000000);
}

/* Stop accepting for a while: out of fds or memory, the pending
 * connections would wake us up in a loop. */
static void accept_pause(int err)
{
	struct epoll_event ev = { .events = 0, .data.ptr = &tag_listen };

	log_warn("cannot accept connections for now: %s", strerror(err));
	epoll_ctl(ep_fd, EPOLL_CTL_MOD, listen_fd, &ev);
	accept_paused_until = now_ms() + ACCEPT_PAUSE_MS;
}

static void accept_resume(void)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &tag_listen };

	epoll_ctl(ep_fd, EPOLL_CTL_MOD, listen_fd, &ev);
	accept_paused_until = 0;
}

/* Accept what is pending, a batch at a time so requests are not starved. */
static void do_accept(void)
{
	for (int i = 0; i < ACCEPT_BATCH; i++) {
		int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

		if (fd >= 0) {
			conn_new(fd);
			continue;
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
		    errno == ENOMEM)
			accept_pause(errno);
		else if (errno != EAGAIN)
			log_error("accept: %s", strerror(errno));
		return;
	}
}

/* --- requests ------------------------------------------------------------- */

/* The exact size of a request of @type, 0 if the type is unknown. */
static size_t req_size(uint16_t type)
{
	switch (type) {
	case RBUS_REQ_HELLO:  return sizeof(struct rbus_req_hello);
	case RBUS_REQ_CREATE: return sizeof(struct rbus_req_create);
	case RBUS_REQ_OPEN:   return sizeof(struct rbus_req_open);
	case RBUS_REQ_LIST:   return sizeof(struct rbus_req_list);
	case RBUS_REQ_STAT:
	case RBUS_REQ_UNLINK: return sizeof(struct rbus_req_name);
	default:              return 0;
	}
}

/* Are the fields of request @q (of its exact size) that must be 0, 0?
 * The flags of CREATE are checked by its handler: some bits are valid. */
static bool req_zero_ok(const void *q, uint16_t type)
{
	const struct rbus_req_hello *h = q;
	const struct rbus_req_create *c = q;
	const struct rbus_req_open *o = q;
	const struct rbus_req_list *l = q;
	const struct rbus_req_name *n = q;

	switch (type) {
	case RBUS_REQ_HELLO:  return !h->flags && !h->reserved;
	case RBUS_REQ_CREATE: return !c->reserved[0] && !c->reserved[1];
	case RBUS_REQ_OPEN:   return !o->flags && !o->reserved;
	case RBUS_REQ_LIST:   return !l->reserved;
	default:              return !n->reserved;
	}
}

/* Token bucket: max_rate requests a second, bursts of max_rate. */
static bool rate_ok(struct conn *c)
{
	uint64_t rate = rbusd_cfg.max_rate;
	uint64_t full = rate * NSEC_PER_SEC;
	uint64_t now = now_ns();
	uint64_t dt = now - c->last_ns;

	if (!rate)
		return true;
	/* A second refills the bucket; capping dt keeps dt * rate small. */
	if (dt > NSEC_PER_SEC)
		dt = NSEC_PER_SEC;
	c->last_ns = now;
	c->credit += dt * rate;
	if (c->credit > full)
		c->credit = full;
	if (c->credit < NSEC_PER_SEC)
		return false;
	c->credit -= NSEC_PER_SEC;
	return true;
}

/* HELLO: agree on version 1, once per connection, within the process's
 * connection limit; the checks in the order of doc/protocol.md. */
static int do_hello(struct conn *c, const struct rbus_req_hello *q,
		    struct reply *rep)
{
	struct rbus_rep_hello *body = (struct rbus_rep_hello *)rep->u.buf;

	if (q->min_version > q->max_version)
		return -EINVAL;
	if (q->min_version > RBUS_PROTO_VERSION || q->max_version < RBUS_PROTO_VERSION) {
		rep->drop = true;
		return -EPROTONOSUPPORT;
	}
	if (c->hello)
		return -EALREADY;
	c->hello = true;
	body->version = RBUS_PROTO_VERSION;
	body->reserved16 = 0;
	body->name_max = RBUS_NAME_MAX;
	body->msg_max = RBUS_PROTO_MSG_MAX;
	body->daemon_pid = (int32_t)getpid();
	body->reserved = 0;
	rep->len = sizeof(*body);
	return 0;
}

/* Has @c's client closed its end, or shut it both ways (the library does
 * when a request times out)?  Then nobody will read a reply. */
static bool conn_hung_up(const struct conn *c)
{
	struct pollfd p = { .fd = c->fd };

	return poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR));
}

static int dispatch(struct conn *c, const void *q, uint16_t type, struct reply *rep)
{
	switch (type) {
	case RBUS_REQ_HELLO:  return do_hello(c, q, rep);
	case RBUS_REQ_CREATE:
		/* A CREATE read (or asked again, after waiting for another)
		 * when its client has given up: a channel made now would be
		 * one it never hears of, whose name its retry finds taken. */
		if (conn_hung_up(c))
			return HUNG_UP;
		return req_create(&c->pe, q, rep);
	case RBUS_REQ_OPEN:   return req_open(&c->pe, q, rep);
	case RBUS_REQ_LIST:   return req_list(&c->pe, q, rep);
	case RBUS_REQ_STAT:   return req_stat(&c->pe, q, rep);
	default:              return req_unlink(&c->pe, q, rep);
	}
}

/*
 * Check datagram @q of @n bytes (at least a header; @fds: it brought fds,
 * @trunc: it was longer than RBUS_PROTO_MSG_MAX) and hand it to its
 * handler.  Returns the reply's status, RBUSD_LATER or RBUSD_WAIT (see
 * ringbusd.h), or DROP_SILENTLY.
 */
static int check_request(struct conn *c, const struct rbus_proto_hdr *h,
			 size_t n, bool fds, bool trunc, struct reply *rep)
{
	if (fds)
		return -EBADMSG;
	if (trunc)
		return -EMSGSIZE;
	if (h->magic != RBUS_PROTO_MAGIC) {
		rep->drop = true;
		return -EPROTO;
	}
	if (h->len != n)
		return -EBADMSG;
	if (h->type != RBUS_REQ_HELLO && h->version != RBUS_PROTO_VERSION) {
		rep->drop = true;
		return -EPROTO;
	}
	if (!c->hello && h->type != RBUS_REQ_HELLO)
		return DROP_SILENTLY;
	if (!req_size(h->type))
		return -EOPNOTSUPP;
	if (n != req_size(h->type))
		return -EBADMSG;
	if (!req_zero_ok(h, h->type))
		return -EINVAL;
	if (!rate_ok(c))
		return -EAGAIN;
	return dispatch(c, h, h->type, rep);
}

/* The name field of request @h (@n bytes), if it has one and it is valid
 * (client bytes go to the log only as a checked name). */
static const char *request_name(const struct rbus_proto_hdr *h, size_t n)
{
	const char *name;

	if (h->type == RBUS_REQ_CREATE && n == sizeof(struct rbus_req_create))
		name = ((const struct rbus_req_create *)h)->name;
	else if (h->type == RBUS_REQ_OPEN && n == sizeof(struct rbus_req_open))
		name = ((const struct rbus_req_open *)h)->name;
	else if ((h->type == RBUS_REQ_STAT || h->type == RBUS_REQ_UNLINK) &&
		 n == sizeof(struct rbus_req_name))
		name = ((const struct rbus_req_name *)h)->name;
	else
		return NULL;
	return rbus_proto_name_ok(name) < 0 ? "(invalid name)" : name;
}

/* What a refused request asked for, for the log: its type, and the name
 * (and role) it names. */
static void describe_request(const struct rbus_proto_hdr *h, size_t n,
			     char *buf, size_t len)
{
	char tbuf[16];
	const char *name = request_name(h, n);
	uint32_t role;

	if (h->type == RBUS_REQ_OPEN && name) {
		role = ((const struct rbus_req_open *)h)->role;
		snprintf(buf, len, "OPEN %s of %s",
			 role == RBUS_PRODUCER ? "producer" :
			 role == RBUS_CONSUMER ? "consumer" : "(invalid role)",
			 name);
	} else if (name) {
		snprintf(buf, len, "%s %s", req_name(h->type, tbuf), name);
	} else {
		snprintf(buf, len, "%s", req_name(h->type, tbuf));
	}
}

static void log_refusal(const struct conn *c, const struct rbus_proto_hdr *h,
			size_t n, int status, const struct reply *rep)
{
	char what[128];

	describe_request(h, n, what, sizeof(what));
	rbusd_log_refused("pid %d (uid %u): %s refused: %s%s%s%s%s", (int)c->pe.pid,
			  (unsigned)c->pe.uid, what, strerror(-status),
			  rep->why[0] ? " (" : "", rep->why, rep->why[0] ? ")" : "",
			  rep->drop ? "; connection closed" : "");
}

/* Send the reply to request @h.  Returns 0, or -1 if the client does not
 * take it (gone, or not reading: its socket buffer is full). */
static int send_reply(struct conn *c, const struct rbus_proto_hdr *h,
		      int status, struct reply *rep)
{
	union {
		struct cmsghdr c;
		char buf[CMSG_SPACE(sizeof(int) * RBUS_PROTO_FDS_MAX)];
	} ctl;
	struct rbus_proto_reply *r = &rep->u.r;
	size_t len = status < 0 ? sizeof(*r) : rep->len;
	unsigned nfds = status < 0 ? 0 : rep->nfds;
	struct iovec iov = { r, len };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t sent;

	r->h.magic = RBUS_PROTO_MAGIC;
	r->h.version = RBUS_PROTO_VERSION;
	r->h.type = (uint16_t)(h->type | RBUS_PROTO_REPLY);
	r->h.seq = h->seq;
	r->h.len = (uint32_t)len;
	r->status = status;
	r->nfds = nfds;
	if (nfds) {
		struct cmsghdr *cm;

		memset(&ctl, 0, sizeof(ctl));
		m.msg_control = ctl.buf;
		m.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		cm = CMSG_FIRSTHDR(&m);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(cm), rep->fds, sizeof(int) * nfds);
	}
	do
		sent = sendmsg(c->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
	while (sent < 0 && errno == EINTR);
	if (sent == (ssize_t)len)
		return 0;
	log_debug("pid %d (uid %u): reply not taken (%s): connection closed",
		  (int)c->pe.pid, (unsigned)c->pe.uid,
		  sent < 0 ? strerror(errno) : "short send");
	return -1;
}

/* Close every fd of SCM_RIGHTS messages in @m; returns how many. */
static unsigned close_passed_fds(struct msghdr *m)
{
	unsigned n = 0;

	for (struct cmsghdr *cm = CMSG_FIRSTHDR(m); cm; cm = CMSG_NXTHDR(m, cm)) {
		size_t k;

		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS ||
		    cm->cmsg_len < CMSG_LEN(0))
			continue;
		k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(fd));
			close(fd);
			n++;
		}
	}
	return n;
}

static void answer_reset(void)
{
	memset(&answer.u.r, 0, sizeof(answer.u.r));
	answer.len = 0;
	answer.nfds = 0;
	answer.drop = false;
	answer.job = NULL;
	answer.why[0] = '\0';
}

/* Take @c out of the loop: it waits for a CREATE's answer. */
static void conn_park(struct conn *c)
{
	if (c->waiting)
		return;
	epoll_ctl(ep_fd, EPOLL_CTL_DEL, c->fd, NULL);
	c->waiting = true;
}

/* Take @c back into the loop (level-triggered: requests that came
 * meanwhile wake it at once).  Returns 0, or -1 if @c was dropped. */
static int conn_unpark(struct conn *c)
{
	if (!c->waiting)
		return 0;
	c->waiting = false;
	free(c->parked);
	c->parked = NULL;
	if (epoll_add(c->fd, c) < 0) {
		log_warn("pid %d (uid %u): cannot watch its connection again: %s",
			 (int)c->pe.pid, (unsigned)c->pe.uid, strerror(errno));
		conn_drop(c);
		return -1;
	}
	return 0;
}

/*
 * Act on the @status a handler gave request @h (@n bytes) of @c, with
 * `answer` filled, inside the read-side critical section the caller
 * began (ended here): reply, or set the request aside for a CREATE in
 * flight (RBUSD_LATER, RBUSD_WAIT).  Returns 0 (answered), 1 (set aside:
 * @c is out of the loop), or -1 (@c dropped).
 */
static int conclude(struct conn *c, const struct rbus_proto_hdr *h, size_t n,
		    int status)
{
	struct reply *rep = &answer;
	int err = 0;

	/* To be asked again, the request needs a copy: @h is the receive
	 * buffer.  A resumed request has one already. */
	if (status == RBUSD_WAIT && !c->parked) {
		c->parked = malloc(n);
		if (c->parked)
			memcpy(c->parked, h, n);
		else
			status = -ENOMEM;
	}
	if (status == RBUSD_LATER || status == RBUSD_WAIT) {
		struct make_job *j = rep->job;

		rcu_read_unlock();
		conn_park(c);
		if (status == RBUSD_LATER) {
			j->conn = c;
			maker_submit(j);
		} else {
			char what[128];

			describe_request(h, n, what, sizeof(what));
			log_debug("pid %d (uid %u): %s waits for the CREATE in flight",
				  (int)c->pe.pid, (unsigned)c->pe.uid, what);
			/* In the order they came. */
			if (!j->waiters_tail)
				j->waiters_tail = &j->waiters;
			c->wnext = NULL;
			*j->waiters_tail = c;
			j->waiters_tail = &c->wnext;
		}
		return 1;
	}
	if (status == DROP_SILENTLY) {
		rbusd_log_refused("pid %d (uid %u): %s before HELLO: connection closed",
				  (int)c->pe.pid, (unsigned)c->pe.uid,
				  req_name(h->type, (char[16]){ 0 }));
		rep->drop = true;
	} else if (status == HUNG_UP) {
		char what[128];

		describe_request(h, n, what, sizeof(what));
		/* Rate-limited: any client can have this logged. */
		rbusd_log_refused("pid %d (uid %u) hung up before its %s was handled: not done",
				  (int)c->pe.pid, (unsigned)c->pe.uid, what);
		rep->drop = true;
	} else {
		if (status < 0)
			log_refusal(c, h, n, status, rep);
		err = send_reply(c, h, status, rep);
	}
	rcu_read_unlock();
	if (err || rep->drop) {
		conn_drop(c);
		return -1;
	}
	return conn_unpark(c);
}

/* Answer one received datagram.  Returns 0, 1 if it was set aside (@c
 * is out of the loop until it is answered), or -1 if @c was dropped. */
static int handle_datagram(struct conn *c, const struct rbus_proto_hdr *h,
			   size_t n, bool fds, bool trunc)
{
	answer_reset();
	/* Until the reply is sent: a channel found by the handler, whose
	 * region's fds the reply borrows, cannot be freed before. */
	rcu_read_lock();
	return conclude(c, h, n, check_request(c, h, n, fds, trunc, &answer));
}

/* Hand @c's request set aside (RBUSD_WAIT) to its handler again: the
 * CREATE it waited for has been answered.  Its checks up to the handler
 * were passed when it came. */
static void conn_resume(struct conn *c)
{
	const struct rbus_proto_hdr *h = c->parked;

	answer_reset();
	rcu_read_lock();
	conclude(c, h, h->len, dispatch(c, h, h->type, &answer));
}

/* Answer the CREATE of job @j, whose region the maker thread has made
 * (or failed to), take its connection back into the loop, and ask again
 * the requests that waited for it. */
static void create_answer(struct make_job *j)
{
	struct conn *c = j->conn, *w = j->waiters;
	struct rbus_req_create q = j->q;
	int status;

	/* A client that gave up (its CREATE timed out, or it closed the
	 * connection) would otherwise get a channel it never heard of,
	 * whose name its retry then finds taken: it is not linked. */
	if (j->ch && conn_hung_up(c)) {
		log_info("pid %d (uid %u) hung up while the region of %s was made: "
			 "channel not created", (int)c->pe.pid, (unsigned)c->pe.uid,
			 q.name);
		maker_discard(j);
		conn_drop(c);
		goto resume;
	}
	answer_reset();
	rcu_read_lock();
	status = req_create_finish(&c->pe, j, &answer);
	/* Released before the reply may drop @c, and its process record
	 * with it, which the job counts in. */
	maker_done(j);
	/* Nothing to set aside: the status is 0 or an error. */
	conclude(c, &q.h, sizeof(q), status);
resume:
	while (w) {
		struct conn *next = w->wnext;

		w->wnext = NULL;
		conn_resume(w);
		w = next;
	}
}

/* The maker thread is done with jobs: answer them. */
static void maker_event(void)
{
	struct make_job *j;
	uint64_t n;

	/* Read before taking: a job put on the done list after the take
	 * writes the eventfd after this read. */
	if (read(maker_fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		log_error("reading the maker's eventfd: %s", strerror(errno));
	while ((j = maker_take()))
		create_answer(j);
}

/* Receive and answer one request of @c.  Returns 1 if there may be more,
 * 0 if none is waiting, -1 if @c was dropped. */
static int conn_recv(struct conn *c)
{
	static union {
		struct rbus_proto_hdr h;
		uint64_t align;
		unsigned char buf[RBUS_PROTO_MSG_MAX + 1];
	} in;
	union {
		struct cmsghdr c;
		char buf[CMSG_SPACE(sizeof(int) * FDS_ROOM)];
	} ctl;
	struct iovec iov = { in.buf, sizeof(in.buf) };
	struct msghdr m = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf),
	};
	ssize_t n = recvmsg(c->fd, &m, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	unsigned nfds;

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return errno == EINTR;
	conn_settle(c);
	nfds = n < 0 ? 0 : close_passed_fds(&m);
	if (n >= 0 && (m.msg_flags & MSG_CTRUNC)) {
		rbusd_log_refused("pid %d (uid %u): too many fds with a request: "
				  "connection closed", (int)c->pe.pid,
				  (unsigned)c->pe.uid);
		conn_drop(c);
		return -1;
	}
	if (n < (ssize_t)sizeof(struct rbus_proto_hdr)) {
		/* Hang-up, error, or a datagram without a seq to answer. */
		if (n > 0 || (n == 0 && nfds))
			rbusd_log_refused("pid %d (uid %u): runt datagram of %zd "
					  "bytes: connection closed",
					  (int)c->pe.pid, (unsigned)c->pe.uid, n);
		conn_drop(c);
		return -1;
	}
	switch (handle_datagram(c, &in.h, (size_t)n, nfds > 0,
				(m.msg_flags & MSG_TRUNC) || n > RBUS_PROTO_MSG_MAX)) {
	case 0:  return 1;
	case 1:  return 0;       /* set aside: read no more for now */
	default: return -1;
	}
}

/* @c is readable or hung up: answer a batch of its requests. */
static void conn_event(struct conn *c, uint32_t events)
{
	for (int i = 0; i < REQUESTS_BATCH; i++) {
		int r = conn_recv(c);

		if (r < 0 || c->waiting)
			return;
		if (r == 0)
			break;
	}
	/* Hang-up or error with nothing left to read: recv said EAGAIN. */
	if ((events & (EPOLLHUP | EPOLLERR)) && !(events & EPOLLIN))
		conn_drop(c);
}

/* A signal arrived on the signalfd: is it one to stop on? */
static bool stop_signal(void)
{
	struct signalfd_siginfo si;

	if (read(sig_fd, &si, sizeof(si)) != sizeof(si))
		return false;
	log_info("caught %s, exiting", si.ssi_signo == SIGINT ? "SIGINT" : "SIGTERM");
	return true;
}

int server_run(void)
{
	struct epoll_event ev[EVENTS_BATCH];

	log_info("listening on %s (pid %d)", sock_path, (int)getpid());
	if (rbusd_cfg.ready_fd >= 0) {
		/* Best effort: a parent that went away does not stop us. */
		ssize_t w = write(rbusd_cfg.ready_fd, "ready\n", 6);

		(void)w;
		close(rbusd_cfg.ready_fd);
		rbusd_cfg.ready_fd = -1;
	}
	for (;;) {
		int timeout = -1, n;

		if (accept_paused_until) {
			int64_t left = accept_paused_until - now_ms();

			if (left <= 0)
				accept_resume();
			else
				timeout = (int)left;
		}
		n = epoll_wait(ep_fd, ev, EVENTS_BATCH, timeout);
		if (n < 0 && errno != EINTR) {
			log_error("epoll_wait: %s", strerror(errno));
			return -errno;
		}
		for (int i = 0; i < n; i++) {
			void *p = ev[i].data.ptr;

			if (p == &tag_listen)
				do_accept();
			else if (p == &tag_signal && stop_signal())
				return 0;
			else if (p == &tag_maker)
				maker_event();
			else if (p != &tag_signal)
				conn_event(p, ev[i].events);
		}
	}
}

void server_fini(void)
{
	/* First: jobs in flight point at their connections. */
	maker_stop();
	while (conns)
		conn_drop(conns);
	if (listen_fd >= 0)
		close(listen_fd);
	if (bound)
		unlink(sock_path);
	if (lock_fd >= 0) {
		/* Unlinked while locked: see take_lock(). */
		unlink(lock_path);
		close(lock_fd);
	}
	if (sig_fd >= 0)
		close(sig_fd);
	if (ep_fd >= 0)
		close(ep_fd);
}
