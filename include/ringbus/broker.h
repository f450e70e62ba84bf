/* SPDX-License-Identifier: MIT */
/*
 * ringbus/broker.h - find channels by name through ringbusd.
 *
 * ringbusd(8) creates regions (sealed memfds) and hands their fds to
 * unrelated processes over a Unix socket, after checking who they are
 * (SO_PEERCRED) against the channel's owner and mode.  It is not on the
 * data path: the channel handle rbus_broker_open() returns is the same kind
 * of handle rbus_channel_open() makes, and keeps working if the daemon or
 * the connection goes away.
 *
 * Socket path, first that applies: the @path argument; $RINGBUS_SOCKET;
 * $XDG_RUNTIME_DIR/ringbus/ringbusd.sock; /run/ringbus/ringbusd.sock.
 *
 * Names are 1 to RBUS_NAME_MAX bytes of [A-Za-z0-9._-], not starting with
 * '.' or '-'.
 *
 * Access.  A channel has an owner uid and gid and a mode like a file's:
 * the read bit (4) of a class lets it consume, the write bit (2) lets it
 * produce; any other bit (execute, setuid, sticky) is refused.  Root may do anything; the owner and
 * root may unlink.  Creating needs no permission, but a non-root caller may
 * only make itself the owner, and only give the channel a group it is in.
 *
 * Roles and death.  rbus_broker_open() hands out a role under a token, a
 * lease the daemon keeps with the process's pid.  The daemon watches every
 * process it gave a role to (a pidfd each).  When one exits without closing
 * its handle, the daemon releases the role in shared memory by its token:
 * an SPSC channel then accepts a new producer or consumer, which resumes
 * where the dead one stopped (a new consumer gets every message the dead
 * one had not released: with rbus_peek()/rbus_release() that is
 * at-least-once delivery, with rbus_recv() a message taken but not yet used
 * is lost with its process), and the peers of the dead role see the
 * hang-up.  MPMC records up to 27 broker handles per role in shared memory;
 * a handle beyond those cannot be recovered.  A channel with no user
 * process left is removed, unless created with RBUS_BROKER_PERSISTENT (then
 * only rbus_broker_unlink() removes it).
 *
 * What recovery cannot see.  Roles taken with rbus_channel_open() on a
 * region from rbus_broker_create() or on fds passed on by hand are not
 * leased: nobody releases them if their process dies, and an SPSC role so
 * taken stays busy.  Use rbus_broker_open() for roles.  A connection used
 * after fork() acts for the process that connected, and so does a handle
 * inherited through fork(): connect and open again in the child.  An MPMC
 * handle's claimed slots (a reservation not committed, a peek not
 * released, a send under way) are finished when its process dies: passed
 * over, or freed and their messages lost (doc/design.md, "Death of a
 * peer").  The exceptions, where the ring stops at the slot: the handles
 * of a side beyond its 27 lease entries, whose claims nobody records; and
 * a claim its process died while making (between noting it and knowing it
 * won), which is finished only if no other handle could hold those slots.
 * That is not the case on a channel where a handle without a record of its
 * own has claimed (one opened with rbus_channel_open(), one beyond the 27,
 * or one used in a process that did not open it), or where a handle was
 * opened through a connection another process made, or on a kernel without
 * MADV_WIPEONFORK; nor for a slot that a live handle is itself trying to
 * claim while it stays stopped for over 60 s (ringbusd looks again until the
 * live handle's claim has failed or succeeded).
 *
 * A connection (struct rbus_broker) is not thread-safe: one thread at a time
 * per connection.  Every call is a blocking request/reply round trip; none
 * starts a thread or touches signal handlers.  If the daemon hangs up, calls
 * return -ECONNRESET and the connection must be closed and made again.
 */
#ifndef RINGBUS_BROKER_H
#define RINGBUS_BROKER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <ringbus/channel.h>
#include <ringbus/region.h>

#ifdef __cplusplus
extern "C" {
#endif

struct rbus_broker;

#define RBUS_NAME_MAX 63u          /* bytes in a channel name */
#define RBUS_ID_CALLER UINT32_MAX  /* owner_uid / owner_gid: the caller's */

/* Creation flags (rbus_broker_create_opts.flags). */
#define RBUS_BROKER_PERSISTENT (1u << 0) /* keep when no user is left */
#define RBUS_BROKER_HUGETLB    (1u << 1) /* huge pages (RBUS_REGION_HUGETLB) */

struct rbus_broker_create_opts {
	enum rbus_kind kind;   /* default RBUS_KIND_SPSC */
	uint32_t capacity;     /* default RBUS_DEFAULT_CAPACITY */
	uint32_t max_msg;      /* default RBUS_DEFAULT_MAX_MSG */
	uint32_t wakeup;       /* default RBUS_WAKE_FUTEX */
	uint32_t flags;        /* RBUS_BROKER_* */
	uint32_t owner_uid;    /* default RBUS_ID_CALLER */
	uint32_t owner_gid;    /* default RBUS_ID_CALLER */
	uint32_t mode;         /* default 0600: only the owner, both roles */
	uint64_t reserved[2];  /* zero */
};

/* A channel as the daemon describes it (list, stat). */
struct rbus_broker_entry {
	char name[RBUS_NAME_MAX + 1];
	uint64_t id;           /* unique per daemon run, increasing */
	enum rbus_kind kind;
	uint32_t capacity;
	uint32_t max_msg;
	uint32_t wakeup;
	uint32_t flags;        /* RBUS_BROKER_* */
	uint32_t owner_uid;
	uint32_t owner_gid;
	uint32_t mode;
	uint64_t region_size;  /* bytes of the memfd */
	uint64_t created_ns;   /* CLOCK_REALTIME */
	/* Live processes the daemon gave a producer (consumer) role, and
	 * which hold it still as far as shared memory tells. */
	uint32_t producers;
	uint32_t consumers;
};

/* One lease: a process given a role (stat). */
struct rbus_broker_holder {
	pid_t pid;             /* in the daemon's pid namespace */
	uint32_t uid;
	enum rbus_role role;
	uint32_t token;        /* the lease's token (doc/protocol.md) */
};

#define RBUS_BROKER_STAT_HOLDERS 64u

struct rbus_broker_stat {
	struct rbus_broker_entry chan;
	uint64_t head, tail;        /* ring indices: tail - head is the fill */
	uint64_t resident;          /* bytes of the region in memory */
	uint32_t prod_attached;     /* producer handles attached (shared memory) */
	uint32_t cons_attached;     /* consumer handles attached */
	uint32_t data_sleepers, space_sleepers;
	uint64_t data_sleeps, data_wakes, data_blind;
	uint64_t space_sleeps, space_wakes, space_blind;
	uint64_t opens;             /* roles handed out */
	uint64_t deaths;            /* holder processes that exited holding a role */
	uint64_t recovered;         /* roles the daemon released for them */
	uint32_t nholders;          /* entries in holders[] */
	uint32_t holders_total;     /* holders, also those that did not fit */
	struct rbus_broker_holder holders[RBUS_BROKER_STAT_HOLDERS];
};

/*
 * rbus_broker_socket_path - write the socket path to use into @buf (@len
 * bytes), by the lookup above (@path first if not NULL).
 * Returns the length, or -ENAMETOOLONG (does not fit @buf or a sockaddr_un),
 * -ENOENT (no rule applies: never, since the last is a fixed path).
 */
int rbus_broker_socket_path(const char *path, char *buf, size_t len);

/*
 * rbus_broker_connect - connect to ringbusd and negotiate the protocol.
 * @path: the socket, or NULL for the lookup above.
 * Returns 0, or -ENOENT / -ECONNREFUSED (no daemon listening there, or the
 * daemon refused the connection: this process has too many already),
 * -EACCES (socket not accessible), -EPROTO (not a ringbusd, or no common
 * protocol version), -ENAMETOOLONG, -ETIMEDOUT (no reply within 5 s),
 * -ENOMEM, -EMFILE.
 */
int rbus_broker_connect(const char *path, struct rbus_broker **out);

/* rbus_broker_close - hang up.  Handles opened through it stay valid. */
void rbus_broker_close(struct rbus_broker *b);

/* rbus_broker_create_opts_init - the defaults listed above. */
void rbus_broker_create_opts_init(struct rbus_broker_create_opts *o);

/*
 * rbus_broker_create - have the daemon create channel @name.
 * @o:   options, NULL for the defaults.
 * @out: if not NULL, the new region (one reference, for rbus_region_info()
 *       and the like; take roles with rbus_broker_open(), see "What
 *       recovery cannot see").  The caller counts as a user of the channel
 *       until it exits.
 * Returns once the daemon has made the region: reserving and zeroing a
 * large one takes seconds (the daemon serves other clients meanwhile,
 * and the daemon makes large regions one at a time), so this call waits for the
 * reply 30 s plus 10 s per GiB of its region, not 5 s.  If it times out,
 * the connection is shut down at once, and the daemon, finding it so
 * before it links the channel, makes none.
 * A CREATE, OPEN, STAT or UNLINK of @name from anyone waits for this
 * reply, then sees its outcome (doc/protocol.md, CREATE).
 * Returns 0, or -EINVAL (bad name or option), -EEXIST (name taken), -EPERM
 * (owner not allowed), -EFBIG (region larger than the daemon allows),
 * -ENOSPC (no memory for the region), -EDQUOT (a limit of the daemon's:
 * its channels or bytes in all, this process's channels, or this uid's
 * channels or bytes; its log says which), -EAGAIN (request rate limit),
 * and the connection errors below.
 *
 * Connection errors, for every call on a connection: -ECONNRESET (the
 * daemon hung up), -ETIMEDOUT (no reply in 5 s; for CREATE, see above; the
 * connection is shut down at once), -EPROTO (a reply that breaks the
 * protocol; fds received with it are closed).  After any of them the
 * connection is broken: every later call fails; close and reconnect.
 */
int rbus_broker_create(struct rbus_broker *b, const char *name,
		       const struct rbus_broker_create_opts *o,
		       struct rbus_region **out);

/*
 * rbus_broker_open - take @role on channel @name.
 * @flags: rbus_channel_open() flags (RBUS_CHANNEL_EINTR).
 * Returns 0, or -ENOENT (no such channel), -EACCES (mode refuses this
 * uid/gid the role), -EBUSY (SPSC role taken: by a live handle, or by a
 * dead one not yet recovered), -EINVAL, the errors of
 * rbus_region_attach_fds() (the library refuses an unsealed or corrupt
 * region), -EDQUOT, -EAGAIN and the connection errors.
 */
int rbus_broker_open(struct rbus_broker *b, const char *name,
		     enum rbus_role role, uint32_t flags,
		     struct rbus_channel **out);

/*
 * rbus_broker_list - call @fn for each channel, in id order, until it
 * returns non-zero (which rbus_broker_list() then returns).  Channels made
 * or removed during the walk may or may not be seen; none is seen twice.
 * Returns 0, the non-zero value of @fn, or a negative errno.
 */
int rbus_broker_list(struct rbus_broker *b,
		     int (*fn)(const struct rbus_broker_entry *e, void *arg),
		     void *arg);

/*
 * rbus_broker_stat - figures of channel @name: the daemon's records and a
 * reading of its shared memory.  Returns 0, -ENOENT, -EACCES (neither
 * role allowed and not owner or root), -EINVAL, -EAGAIN and the connection
 * errors.
 */
int rbus_broker_stat(struct rbus_broker *b, const char *name,
		     struct rbus_broker_stat *st);

/*
 * rbus_broker_unlink - remove @name from the daemon.  Processes that hold
 * its fds keep them and keep exchanging messages; the name is free at once.
 * Returns 0, -ENOENT, -EPERM (not the owner or root), -EINVAL, -EAGAIN and
 * the connection errors.
 */
int rbus_broker_unlink(struct rbus_broker *b, const char *name);

#ifdef __cplusplus
}
#endif
#endif /* RINGBUS_BROKER_H */
