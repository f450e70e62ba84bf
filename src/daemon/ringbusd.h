/* SPDX-License-Identifier: MIT */
/*
 * ringbusd.h - the broker daemon's modules and the state they share.
 *
 *   main.c      options, signals, start and orderly stop
 *   log.c       one line per event on stderr, levels, a limiter for warnings
 *   server.c    the socket, connections, datagram checks, replies
 *   requests.c  what each request does, and who may do it
 *   registry.c  channels: the RCU hash table by name, an RCU list by id
 *   procs.c     client processes: pidfds, leases, the reaper thread
 *   maker.c     the large regions of CREATEs, made on a thread of their own
 *
 * Threads.  The main thread accepts connections and answers requests; the
 * reaper thread waits on the pidfds of client processes and cleans up
 * after those that exit; the maker thread makes the regions over 1 MiB of
 * CREATEs (it touches nothing shared but its own queues).  The main
 * thread and the reaper are registered RCU readers.  Lookups in the
 * registry run under rcu_read_lock() alone; every change of the registry,
 * of a channel's users and leases, and of the process records is made with
 * reg_lock() held.  Nobody calls synchronize_rcu() with reg_lock() held
 * (memory is given back with call_rcu()), so taking reg_lock() inside a
 * read-side critical section cannot deadlock.
 */
#ifndef RINGBUSD_H
#define RINGBUSD_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <urcu.h>
#include <urcu/rculfhash.h>
#include <urcu/rculist.h>

#include "internal.h"
#include "proto.h"

/* --- configuration (main.c) ---------------------------------------------- */

struct rbusd_config {
	const char *socket;          /* --socket, or NULL for the lookup */
	uint32_t max_channels;       /* named channels in the daemon */
	uint32_t max_client_channels; /* channels one process uses */
	uint32_t max_client_conns;   /* connections of one process */
	uint32_t max_rate;           /* requests/s per connection, 0: no limit */
	uint64_t max_region_size;    /* bytes */
	uint64_t max_total_size;     /* bytes of all regions together */
	uint32_t max_user_channels;  /* channels one uid created, 0: no limit */
	uint64_t max_user_size;      /* bytes of them, 0: no limit */
	bool lease_settle_given;     /* --lease-settle-ms: ignored, warned */
	int ready_fd;                /* --ready-fd: told when listening, or -1 */
};

extern struct rbusd_config rbusd_cfg;

/* Leases (OPENs) one process may hold at once: a client that opens and
 * closes handles in a loop must not grow the daemon without bound. */
#define RBUSD_MAX_CLIENT_LEASES 16384u

/* --- logging (log.c) ------------------------------------------------------ */

enum rbusd_level { LVL_ERROR, LVL_WARN, LVL_INFO, LVL_DEBUG };

extern enum rbusd_level rbusd_log_level;

int rbusd_log_parse_level(const char *s, enum rbusd_level *out);
void rbusd_log(enum rbusd_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* A warning about what a client sent: at most a burst of these, then a
 * steady rate; the suppressed ones are counted in the next that passes. */
void rbusd_log_refused(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define log_error(...) rbusd_log(LVL_ERROR, __VA_ARGS__)
#define log_warn(...)  rbusd_log(LVL_WARN, __VA_ARGS__)
#define log_info(...)  rbusd_log(LVL_INFO, __VA_ARGS__)
#define log_debug(...) rbusd_log(LVL_DEBUG, __VA_ARGS__)

/* --- the registry (registry.c) ------------------------------------------- */

struct proc;
struct make_job;
struct conn;                     /* server.c's */

/*
 * A channel.  `desc` is fixed at creation but for its producers and
 * consumers, which chan_describe() fills in.  The registry (while the name
 * is linked) and every process using the channel (struct use) hold one
 * reference each; the last one frees the channel and closes the daemon's
 * region after a grace period.
 */
struct chan {
	struct cds_lfht_node node;   /* registry by name, while linked */
	struct cds_list_head order;  /* registry by id, while linked */
	struct rcu_head rcu;
	struct rbus_proto_chan desc;
	struct rbus_region *region;
	uint32_t creator_uid;        /* of the connection that created it */
	/* Under reg_lock: */
	unsigned refs;
	bool linked;
	bool counted;                /* its region is in reg_bytes() and its
					creator's reg_user_usage() */
	struct cds_list_head uses;   /* struct use.in_chan */
	uint32_t nleases;            /* leases of all users */
	/* Written under reg_lock, read by lock-free readers (relaxed): */
	_Atomic uint64_t opens, deaths, recovered;
};

void reg_lock(void);
void reg_unlock(void);
int reg_init(void);
/* Remove every channel and wait for their memory to be freed. */
void reg_fini(void);
/* The linked channel named @name (a valid name field), or NULL.  Call
 * under rcu_read_lock(). */
struct chan *reg_lookup(const char *name);
/* Named channels now (a hint without reg_lock). */
unsigned long reg_count(void);
/* Bytes of the regions of all channels alive, linked or not.  reg_lock. */
uint64_t reg_bytes(void);
/* The channels alive, linked or not, that uid @uid created, and the bytes
 * of their regions.  reg_lock. */
void reg_user_usage(uint32_t uid, uint32_t *chans, uint64_t *bytes);
/* A new channel around @region (its reference passes to the channel),
 * created by a connection of uid @creator_uid, with one reference for the
 * caller; not linked yet. */
struct chan *chan_new(const char *name, struct rbus_region *region,
		      const struct rbus_proto_chan *desc, uint32_t creator_uid);
/* Link @ch under its name and the next id.  reg_lock, rcu_read_lock.
 * Returns 0 or -EEXIST. */
int reg_link(struct chan *ch);
/* Unlink @ch's name (it stays alive while referenced).  reg_lock,
 * rcu_read_lock. */
void reg_unlink(struct chan *ch);
void chan_ref(struct chan *ch);
/* Drop a reference; the last frees @ch after a grace period.  reg_lock. */
void chan_unref(struct chan *ch);
/* @ch's description, with producers and consumers: the processes with a
 * lease that shared memory says is held now.  reg_lock. */
void chan_describe(const struct chan *ch, struct rbus_proto_chan *out);
/* Up to @max descriptions of channels with id > @after, in id order, into
 * @out; *@more = 1 if there are more.  Returns the count.  reg_lock,
 * rcu_read_lock. */
unsigned reg_list(uint64_t after, unsigned max, struct rbus_proto_chan *out,
		  uint32_t *more);

/* --- client processes (procs.c) ------------------------------------------ */

/* One OPEN: the role a process may hold under a token. */
struct lease {
	struct lease *next;
	uint32_t token;
	uint32_t role;               /* RBUS_PRODUCER or RBUS_CONSUMER */
	uint32_t uid;                /* of the connection that asked */
	/* The id of the connection whose OPEN made it (struct peer) until
	 * that connection sends its next datagram or closes; then 0,
	 * "settled": see use_prune_leases(). */
	uint64_t conn;
	/* In proc->unsettled while conn is not 0. */
	struct lease *unext;
};



/* A process's use of a channel: it created it, holds leases on it, or
 * both.  Holds a reference on the channel.  Under reg_lock. */
struct use {
	struct use *next;            /* in proc->uses */
	struct cds_list_head in_chan; /* in chan->uses */
	struct proc *proc;
	struct chan *chan;
	struct lease *leases;
	uint32_t nprod, ncons;       /* leases of each role */
	bool creator;
};

/* A client process, by pid, while it has connections, uses or leases.
 * Under reg_lock. */
struct proc {
	struct proc *hnext;          /* hash chain, while live */
	pid_t pid;
	uint32_t gen;                /* tells this record from a later one
					with the same pid */
	int pidfd;
	uid_t uid;                   /* at first contact, for the logs */
	unsigned nconns;
	unsigned nuses;
	unsigned nleases;
	struct use *uses;
	/* Its leases not settled yet: at most one per connection, so that
	 * settling does not walk all its leases (up to 16384). */
	struct lease *unsettled;
	unsigned ncreating;          /* its CREATEs being made (maker.c) */
	bool dead;                   /* reaped: no more uses or leases */
};

int procs_init(void);
int procs_start_reaper(void);
void procs_stop_reaper(void);
/* Forget every process (at exit, after the reaper stopped). */
void procs_fini(void);
/*
 * The live record of process @pid for a new connection of it (nconns
 * counted), made at its first contact: its pidfd is then watched.  @uid
 * is the connection's SO_PEERCRED uid.  Returns 0, -ESRCH (the process is
 * gone, or its pid now names another process), -ENOMEM, -EMFILE.  reg_lock.
 */
int proc_connect(pid_t pid, uid_t uid, struct proc **out);
/* A connection of @p closed.  reg_lock. */
void proc_disconnect(struct proc *p);
/* Has @p exited?  If so, reap it now (the reaper may not have yet) and
 * return true.  reg_lock, rcu_read_lock. */
bool proc_check_dead(struct proc *p);
/* @p's use of @ch; made (a channel reference taken) if @make.  NULL if
 * none, or no memory.  reg_lock. */
struct use *proc_use(struct proc *p, struct chan *ch, bool make);
/* Record a lease on @u.  Returns 0 or -ENOMEM.  reg_lock. */
int use_add_lease(struct use *u, uint32_t token, uint32_t role, uint32_t uid,
		  uint64_t conn);
/* Drop @u if it has no leases and is not a creator's.  reg_lock. */
void use_drop_if_idle(struct use *u);
/* Forget @u's settled leases that no handle holds: handles closed by
 * processes that live on.  A lease settles when the connection whose OPEN
 * made it sends its next datagram or closes (proc_settle_leases()): the
 * library claims the role inside rbus_broker_open(), before it returns,
 * and a connection is used by one thread at a time, so by then the claim
 * is made or has failed.  Until then the lease is kept whatever shared
 * memory says, so that a client stopped between the reply and its claim,
 * for however long, still has its role released when it dies.
 * Never drops @u itself.  reg_lock. */
void use_prune_leases(struct use *u);
/* The leases @p's connection @conn made settle: it sent another datagram,
 * or closed.  reg_lock. */
void proc_settle_leases(struct proc *p, uint64_t conn);
/* use_prune_leases() for every use of @p.  reg_lock. */
void proc_prune_leases(struct proc *p);
/* Does @u hold a lease of @role that shared memory says is held? */
bool use_holds(const struct use *u, uint32_t role);

/* --- requests (requests.c) and the server (server.c) --------------------- */

/* A connection's peer, as SO_PEERCRED and /proc told at accept. */
struct peer {
	uint64_t id;                 /* this connection's, unique in the run */
	bool unsettled;              /* an OPEN of it made a lease not yet
					settled (struct lease) */
	pid_t pid;
	uid_t uid;
	gid_t gid;
	gid_t *groups;               /* supplementary groups */
	unsigned ngroups;
	struct proc *proc;
};

/* A reply being built: the body after struct rbus_proto_reply, the fds
 * to pass (borrowed from a region kept alive by the caller's read-side
 * critical section), and whether to hang up after sending it. */
struct reply {
	union {
		struct rbus_proto_reply r;
		uint64_t align;
		unsigned char buf[RBUS_PROTO_MSG_MAX];
	} u;
	size_t len;                  /* of the whole reply, on success */
	int fds[RBUS_PROTO_FDS_MAX];
	unsigned nfds;
	bool drop;
	struct make_job *job;        /* RBUSD_LATER, RBUSD_WAIT: see there */
	char why[128];               /* a refusal's reason for the log, or "" */
};

/* A handler's status for "answered later": rep->job is a new job for the
 * maker thread, which server.c submits and answers when it is made. */
#define RBUSD_LATER 2
/* And for "asked again later": the request names the channel of CREATE
 * rep->job, which is in flight; server.c sets the request aside and hands
 * it to its handler again once that CREATE is answered, so that nobody
 * sees the name taken (CREATE) but not there (OPEN, STAT, UNLINK). */
#define RBUSD_WAIT 3

/* Handle a request whose header, length and reserved fields are checked.
 * Returns 0 (rep filled) or a negative errno for the reply's status; the
 * handlers that take a name (CREATE, OPEN, STAT, UNLINK) return RBUSD_WAIT
 * when a CREATE of it is in flight, and CREATE of a region over 1 MiB
 * returns RBUSD_LATER with rep->job set (the region is made on the maker
 * thread) instead of 0.
 * Runs under rcu_read_lock(). */
int req_create(struct peer *pe, const struct rbus_req_create *q, struct reply *rep);
/* Make the region and the unlinked channel of CREATE @j into j->ch, or
 * set j->err: on the maker thread, or at once in req_create() for a
 * region up to 1 MiB.  Touches nothing shared. */
void req_create_make(struct make_job *j);
/* The main thread's last part of a CREATE whose region was made (by the
 * maker, or at once): link the channel for @pe's process and fill @rep.
 * Returns 0 or a negative errno.  Runs under rcu_read_lock(). */
int req_create_finish(struct peer *pe, struct make_job *j, struct reply *rep);
int req_open(struct peer *pe, const struct rbus_req_open *q, struct reply *rep);
int req_list(struct peer *pe, const struct rbus_req_list *q, struct reply *rep);
int req_stat(struct peer *pe, const struct rbus_req_name *q, struct reply *rep);
int req_unlink(struct peer *pe, const struct rbus_req_name *q, struct reply *rep);

/* Name of a request type for the logs ("CREATE", or "type 77"). */
const char *req_name(uint16_t type, char buf[16]);

/* --- CREATEs made in the background (maker.c) -------------------------- */

/* One CREATE between its checks and its reply. */
struct make_job {
	struct make_job *next;       /* in the maker's queue, or its done list */
	struct make_job *inext;      /* in the list of jobs in flight */
	/* Set by the main thread before maker_submit(): */
	struct rbus_req_create q;    /* the request, checked */
	uint32_t uid, gid;           /* its owner, resolved */
	uint32_t creator_uid;        /* the uid of the connection */
	uint64_t bytes;              /* its region's size */
	struct proc *proc;           /* the creator */
	struct conn *conn;           /* the connection to answer on */
	struct conn *waiters;        /* connections whose requests name this
					channel (RBUSD_WAIT), in order */
	struct conn **waiters_tail;  /* NULL, or where the next goes */
	/* Set by the maker thread: */
	struct chan *ch;             /* the channel, unlinked, or NULL */
	int err;                     /* 0, or why it was not made */
	int64_t make_ns;             /* how long making it took */
};

/* Start the maker thread.  *@fd is an eventfd that becomes readable when
 * a job is done (maker_take()).  Returns 0 or a negative errno. */
int maker_start(int *fd);
/* Stop the thread once the job being made (if any) is done, and drop
 * every job not answered: channels made are freed, nothing is linked.
 * Main thread, before the connections are closed. */
void maker_stop(void);
/* The CREATE of @name (a valid name field) in flight, or NULL.  Main
 * thread. */
struct make_job *maker_job_of(const char *name);
/* Jobs in flight and the bytes of their regions.  Main thread. */
unsigned maker_count(void);
uint64_t maker_bytes(void);
/* The same for the jobs of connections of uid @uid.  Main thread. */
void maker_user(uint32_t uid, uint32_t *count, uint64_t *bytes);
/* Queue @j, whose name and room now count as taken until maker_done().
 * reg_lock must not be held.  Main thread. */
void maker_submit(struct make_job *j);
/* A job the maker thread is done with, in the order submitted, or NULL.
 * Read the eventfd first.  Main thread. */
struct make_job *maker_take(void);
/* Release @j's reservations and free it (j->ch must have been dealt
 * with).  Main thread. */
void maker_done(struct make_job *j);
/* maker_done() for a job whose channel, if made, is not to be linked: it
 * is freed first.  reg_lock must not be held.  Main thread. */
void maker_discard(struct make_job *j);

int server_init(const char *path);
/* Serve until SIGTERM or SIGINT (0), or a fatal error (-errno). */
int server_run(void);
/* Close every connection, the socket, and remove the socket and lock files. */
void server_fini(void);

#endif /* RINGBUSD_H */
