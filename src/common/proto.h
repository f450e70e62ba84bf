/* SPDX-License-Identifier: MIT */
/*
 * proto.h - the ringbusd wire protocol, version 1 (doc/protocol.md).
 *
 * Shared by the daemon (src/daemon) and the client (src/lib/broker.c).
 * Transport: an AF_UNIX SOCK_SEQPACKET socket; one request or reply per
 * datagram, at most RBUS_PROTO_MSG_MAX bytes.  Both ends are on one
 * machine, so integers are in host byte order; every struct has a fixed
 * size, explicit padding and natural alignment (asserted below).
 *
 * Every datagram starts with struct rbus_proto_hdr.  `len` is the whole
 * datagram's length and must equal the size of the request's struct
 * (exact: no short or long requests).  A reply repeats the request's `seq`
 * and has type (request type | RBUS_PROTO_REPLY), and starts with
 * struct rbus_proto_reply; `status` is 0 or a negative errno; `nfds` fds
 * come with it in one SCM_RIGHTS message.  Replies with status < 0 carry
 * no body beyond struct rbus_proto_reply.
 *
 * The first request on a connection must be HELLO; any other request
 * before it closes the connection.
 */
#ifndef RINGBUS_PROTO_H
#define RINGBUS_PROTO_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#define RBUS_PROTO_MAGIC    UINT32_C(0x50534252) /* "RBSP" little-endian */
#define RBUS_PROTO_VERSION  1u    /* the only version today */
#define RBUS_PROTO_MSG_MAX  4096u /* longest datagram either side sends */
#define RBUS_PROTO_FDS_MAX  3u    /* region + data and space eventfds */
#define RBUS_PROTO_NAME     64u   /* name field: name, NUL, zero padding */
#define RBUS_PROTO_LIST_MAX 30u   /* entries per LIST reply */
#define RBUS_PROTO_HOLDERS  64u   /* holders per STAT reply */

enum rbus_proto_type {
	RBUS_REQ_HELLO  = 1,
	RBUS_REQ_CREATE = 2,
	RBUS_REQ_OPEN   = 3,
	RBUS_REQ_LIST   = 4,
	RBUS_REQ_STAT   = 5,
	RBUS_REQ_UNLINK = 6,
	RBUS_PROTO_REPLY = 0x8000,
};

struct rbus_proto_hdr {
	uint32_t magic;    /* RBUS_PROTO_MAGIC */
	uint16_t version;  /* RBUS_PROTO_VERSION; HELLO: the highest the
			      sender speaks */
	uint16_t type;     /* enum rbus_proto_type */
	uint32_t seq;      /* chosen by the client, echoed in the reply */
	uint32_t len;      /* bytes of the whole datagram */
};

struct rbus_proto_reply {
	struct rbus_proto_hdr h;
	int32_t status;    /* 0 or -errno */
	uint32_t nfds;     /* fds attached (SCM_RIGHTS) */
};

/* A channel's description: in CREATE, OPEN and STAT replies and LIST. */
struct rbus_proto_chan {
	char name[RBUS_PROTO_NAME];
	uint64_t id;
	uint32_t kind;         /* RBUS_KIND_* */
	uint32_t capacity;
	uint32_t max_msg;
	uint32_t wakeup;       /* RBUS_WAKE_* */
	uint32_t flags;        /* RBUS_BROKER_* */
	uint32_t owner_uid;
	uint32_t owner_gid;
	uint32_t mode;
	uint64_t region_size;
	uint64_t created_ns;
	uint32_t producers;    /* processes holding a producer role */
	uint32_t consumers;
};

/* HELLO: the client names the versions it speaks. */
struct rbus_req_hello {
	struct rbus_proto_hdr h;
	uint16_t min_version;
	uint16_t max_version;
	uint32_t flags;        /* 0 */
	uint64_t reserved;     /* 0 */
};

struct rbus_rep_hello {
	struct rbus_proto_reply r;
	uint16_t version;      /* chosen: highest both speak */
	uint16_t reserved16;
	uint32_t name_max;     /* RBUS_NAME_MAX */
	uint32_t msg_max;      /* RBUS_PROTO_MSG_MAX */
	int32_t daemon_pid;
	uint64_t reserved;
};

struct rbus_req_create {
	struct rbus_proto_hdr h;
	char name[RBUS_PROTO_NAME];
	uint32_t kind;
	uint32_t capacity;
	uint32_t max_msg;
	uint32_t wakeup;
	uint32_t flags;        /* RBUS_BROKER_PERSISTENT | _HUGETLB */
	uint32_t owner_uid;    /* RBUS_ID_CALLER or a uid */
	uint32_t owner_gid;    /* RBUS_ID_CALLER or a gid */
	uint32_t mode;         /* & ~0666 must be 0 */
	uint64_t reserved[2];  /* 0 */
};

/* CREATE reply: the region's fds (1, or 3 for eventfd) follow. */
struct rbus_rep_create {
	struct rbus_proto_reply r;
	struct rbus_proto_chan chan;
};

struct rbus_req_open {
	struct rbus_proto_hdr h;
	char name[RBUS_PROTO_NAME];
	uint32_t role;         /* RBUS_PRODUCER or RBUS_CONSUMER */
	uint32_t flags;        /* 0 */
	uint64_t reserved;     /* 0 */
};

/* OPEN reply: the region's fds follow.  The client opens its handle with
 * `token` (>= 2, unique in the daemon's run), by which the daemon finds
 * and releases the role if the process dies holding it. */
struct rbus_rep_open {
	struct rbus_proto_reply r;
	uint32_t token;
	uint32_t reserved;
	struct rbus_proto_chan chan;
};

/* LIST: channels with id > after, in id order, at most `max` (1 ..
 * RBUS_PROTO_LIST_MAX). */
struct rbus_req_list {
	struct rbus_proto_hdr h;
	uint64_t after;
	uint32_t max;
	uint32_t reserved;     /* 0 */
};

/* LIST reply: `count` entries; `more` is 1 if channels with a larger id
 * than the last entry's exist.  len = sizeof + count * sizeof(chan). */
struct rbus_rep_list {
	struct rbus_proto_reply r;
	uint32_t count;
	uint32_t more;
	struct rbus_proto_chan chan[];
};

/* STAT and UNLINK. */
struct rbus_req_name {
	struct rbus_proto_hdr h;
	char name[RBUS_PROTO_NAME];
	uint64_t reserved;     /* 0 */
};

struct rbus_proto_holder {
	int32_t pid;
	uint32_t uid;
	uint32_t role;
	uint32_t token;
};

/* STAT reply: len = offsetof(holders) + nholders * sizeof(holder). */
struct rbus_rep_stat {
	struct rbus_proto_reply r;
	struct rbus_proto_chan chan;
	uint64_t head, tail;
	uint64_t resident;
	uint32_t prod_attached, cons_attached;
	uint32_t data_sleepers, space_sleepers;
	uint64_t data_sleeps, data_wakes, data_blind;
	uint64_t space_sleeps, space_wakes, space_blind;
	uint64_t opens, deaths, recovered;
	uint32_t nholders;
	uint32_t holders_total;
	struct rbus_proto_holder holders[];
};

_Static_assert(sizeof(struct rbus_proto_hdr) == 16, "proto ABI");
_Static_assert(sizeof(struct rbus_proto_reply) == 24, "proto ABI");
_Static_assert(sizeof(struct rbus_proto_chan) == 128, "proto ABI");
_Static_assert(sizeof(struct rbus_req_hello) == 32, "proto ABI");
_Static_assert(sizeof(struct rbus_rep_hello) == 48, "proto ABI");
_Static_assert(sizeof(struct rbus_req_create) == 128, "proto ABI");
_Static_assert(sizeof(struct rbus_rep_create) == 152, "proto ABI");
_Static_assert(sizeof(struct rbus_req_open) == 96, "proto ABI");
_Static_assert(sizeof(struct rbus_rep_open) == 160, "proto ABI");
_Static_assert(sizeof(struct rbus_req_list) == 32, "proto ABI");
_Static_assert(sizeof(struct rbus_rep_list) == 32, "proto ABI");
_Static_assert(sizeof(struct rbus_req_name) == 88, "proto ABI");
_Static_assert(sizeof(struct rbus_proto_holder) == 16, "proto ABI");
_Static_assert(sizeof(struct rbus_rep_stat) == 272, "proto ABI");
_Static_assert(sizeof(struct rbus_rep_list) +
	       RBUS_PROTO_LIST_MAX * sizeof(struct rbus_proto_chan) <=
	       RBUS_PROTO_MSG_MAX, "a full LIST reply fits a datagram");
_Static_assert(sizeof(struct rbus_rep_stat) +
	       RBUS_PROTO_HOLDERS * sizeof(struct rbus_proto_holder) <=
	       RBUS_PROTO_MSG_MAX, "a full STAT reply fits a datagram");

/*
 * rbus_proto_name_ok - is the RBUS_PROTO_NAME-byte field @f a valid name:
 * 1..63 bytes of [A-Za-z0-9._-], not starting with '.' or '-', then a NUL,
 * then only NULs?  Returns the name's length, or -EINVAL.
 */
static inline int rbus_proto_name_ok(const char *f)
{
	size_t n = 0;

	while (n < RBUS_PROTO_NAME && f[n])
		n++;
	if (n == 0 || n >= RBUS_PROTO_NAME)
		return -EINVAL;
	for (size_t i = n; i < RBUS_PROTO_NAME; i++)
		if (f[i])
			return -EINVAL;
	if (f[0] == '.' || f[0] == '-')
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		char c = f[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
			return -EINVAL;
	}
	return (int)n;
}

#endif /* RINGBUS_PROTO_H */
