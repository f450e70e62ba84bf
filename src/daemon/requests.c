/* SPDX-License-Identifier: MIT */
/*
 * requests.c - CREATE, OPEN, LIST, STAT and UNLINK, and the access rules.
 *
 * server.c has checked the header, the exact length and the fields that
 * must be zero; each handler checks the rest of its request field by
 * field before acting, and answers with a negative errno otherwise.  All
 * run in the main thread, inside an RCU read-side critical section that
 * lasts until the reply is sent: a channel found here, and the region fds
 * a reply borrows from it, stay valid until then.  The one exception is
 * the making of a large CREATE's region, req_create_make(), on the maker
 * thread (maker.c): such a CREATE is checked, made there, and then linked
 * and answered back here (req_create_finish()).  A small one is made here
 * at once.
 *
 * Access, as for a file: root may do anything.  Otherwise the caller's
 * class is owner (its uid is the owner uid), else group (the owner gid is
 * its gid or one of its supplementary groups), else other; the class's
 * read bit (4) allows the consumer role, its write bit (2) the producer.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ringbusd.h"

#define MODE_BITS 0666u
/* Regions up to this size are made on the main thread, at once: 1 MiB
 * takes about 1 ms here (design.md §13.2).  Larger ones go to the maker
 * thread. */
#define CREATE_INLINE_BYTES (UINT64_C(1) << 20)
#define CREATE_FLAGS (RBUS_BROKER_PERSISTENT | RBUS_BROKER_HUGETLB)
/* Pages mincore() reports on per call: the vector stays on the stack. */
#define MINCORE_CHUNK 4096u

/* Tokens are never reused in a run: a reused token could name a live
 * handle's role to the recovery of a dead one.  reg_lock. */
static uint64_t last_token = 1;

static bool in_group(const struct peer *pe, uint32_t gid)
{
	if (pe->gid == gid)
		return true;
	for (unsigned i = 0; i < pe->ngroups; i++)
		if (pe->groups[i] == gid)
			return true;
	return false;
}

/* The rwx bits of @ch's mode that apply to @pe's class. */
static unsigned class_bits(const struct peer *pe, const struct chan *ch)
{
	uint32_t mode = ch->desc.mode;

	if (pe->uid == ch->desc.owner_uid)
		return (mode >> 6) & 7;
	if (in_group(pe, ch->desc.owner_gid))
		return (mode >> 3) & 7;
	return mode & 7;
}

static bool may_take(const struct peer *pe, const struct chan *ch, uint32_t role)
{
	if (pe->uid == 0)
		return true;
	return class_bits(pe, ch) & (role == RBUS_CONSUMER ? 4u : 2u);
}

static bool is_pow2(uint32_t x)
{
	return x && !(x & (x - 1));
}

/* CREATE's geometry and options, each as the library will accept them. */
static int create_args_ok(const struct rbus_req_create *q)
{
	if (rbus_proto_name_ok(q->name) < 0)
		return -EINVAL;
	if (q->kind != RBUS_KIND_SPSC && q->kind != RBUS_KIND_MPMC)
		return -EINVAL;
	if (!is_pow2(q->capacity) || q->capacity < RBUS_CAPACITY_MIN ||
	    q->capacity > RBUS_CAPACITY_MAX)
		return -EINVAL;
	if (q->max_msg > RBUS_MAX_MSG_LIMIT)
		return -EINVAL;
	if (q->wakeup != RBUS_WAKE_FUTEX && q->wakeup != RBUS_WAKE_EVENTFD)
		return -EINVAL;
	if ((q->flags & ~CREATE_FLAGS) || (q->mode & ~MODE_BITS))
		return -EINVAL;
	return 0;
}

/* Resolve CREATE's owner into @uid and @gid; a non-root caller may only
 * name itself and a group it is in. */
static int create_owner(const struct peer *pe, const struct rbus_req_create *q,
			uint32_t *uid, uint32_t *gid)
{
	*uid = q->owner_uid == RBUS_ID_CALLER ? pe->uid : q->owner_uid;
	*gid = q->owner_gid == RBUS_ID_CALLER ? pe->gid : q->owner_gid;
	if (pe->uid == 0)
		return 0;
	if (*uid != pe->uid || !in_group(pe, *gid))
		return -EPERM;
	return 0;
}

/* Is there room for one more channel of @size bytes for @pe's uid, under
 * the per-user limits, if any is set (root has none)?  A refusal names the
 * limit in rep->why: -EDQUOT alone does not say which.  reg_lock. */
static int create_user_quota(const struct peer *pe, uint64_t size, struct reply *rep)
{
	uint32_t n, nf, maxn = rbusd_cfg.max_user_channels;
	uint64_t b, bf, maxb = rbusd_cfg.max_user_size;

	if (pe->uid == 0 || (!maxn && !maxb))
		return 0;
	reg_user_usage(pe->uid, &n, &b);
	maker_user(pe->uid, &nf, &bf);
	n += nf;
	b += bf;
	if (maxn && n >= maxn) {
		snprintf(rep->why, sizeof(rep->why),
			 "uid %u has %u channels alive or being made, --max-user-channels %u",
			 (unsigned)pe->uid, n, maxn);
		return -EDQUOT;
	}
	if (maxb && (b > maxb || size > maxb - b)) {
		snprintf(rep->why, sizeof(rep->why),
			 "uid %u has %llu bytes in channels, asks for %llu more, "
			 "--max-user-size %llu", (unsigned)pe->uid, (unsigned long long)b,
			 (unsigned long long)size, (unsigned long long)maxb);
		return -EDQUOT;
	}
	return 0;
}

/* Is there room for one more channel of @size bytes, in the daemon, for
 * @pe's uid and for its process?  The CREATEs in flight count as made.
 * reg_lock. */
static int create_quota(const struct peer *pe, uint64_t size, struct reply *rep)
{
	const struct proc *p = pe->proc;

	if (reg_count() + maker_count() >= rbusd_cfg.max_channels ||
	    p->nuses + p->ncreating >= rbusd_cfg.max_client_channels ||
	    reg_bytes() + maker_bytes() + size > rbusd_cfg.max_total_size)
		return -EDQUOT;
	return create_user_quota(pe, size, rep);
}

void req_create_make(struct make_job *j)
{
	const struct rbus_req_create *q = &j->q;
	struct rbus_region_opts o;
	struct rbus_region_info info;
	struct rbus_proto_chan desc = { 0 };
	struct rbus_region *r;
	int64_t t0 = rbus_now();

	rbus_create_opts(q, &o);
	j->err = rbus_region_create(&o, &r);
	j->make_ns = rbus_now() - t0;
	if (j->err)
		return;
	rbus_region_info(r, &info);
	desc.kind = q->kind;
	desc.capacity = q->capacity;
	desc.max_msg = q->max_msg;
	desc.wakeup = q->wakeup;
	desc.flags = q->flags;
	desc.owner_uid = j->uid;
	desc.owner_gid = j->gid;
	desc.mode = q->mode;
	desc.region_size = info.size;
	desc.created_ns = info.created_ns;
	j->ch = chan_new(q->name, r, &desc, j->creator_uid);
	if (!j->ch) {
		rbus_region_close(r);
		j->err = -ENOMEM;
	}
}

/* No channel is named @name: -ENOENT, or RBUSD_WAIT if a CREATE of it is
 * in flight (the request is handled again once that is answered). */
static int no_such(const char *name, struct reply *rep)
{
	rep->job = maker_job_of(name);
	return rep->job ? RBUSD_WAIT : -ENOENT;
}

/* Pass @ch's region fds with the reply. */
static void reply_fds(struct reply *rep, const struct chan *ch)
{
	int n = rbus_region_fds(ch->region, rep->fds, RBUS_PROTO_FDS_MAX);

	rep->nfds = (unsigned)n;
}

/* Link @ch and make @pe's process its creator.  reg_lock. */
static int create_link(struct peer *pe, struct chan *ch, struct reply *rep)
{
	struct use *u;
	int err;

	if (proc_check_dead(pe->proc)) {
		rep->drop = true;
		return -ESRCH;
	}
	err = reg_link(ch);
	if (err)
		return err;
	u = proc_use(pe->proc, ch, true);
	if (!u) {
		reg_unlink(ch);
		return -ENOMEM;
	}
	u->creator = true;
	return 0;
}

int req_create(struct peer *pe, const struct rbus_req_create *q, struct reply *rep)
{
	struct rbus_region_opts o;
	struct make_job *job;
	uint32_t uid, gid;
	uint64_t size;
	int err;

	err = create_args_ok(q);
	if (!err)
		err = create_owner(pe, q, &uid, &gid);
	if (err)
		return err;
	/* Only this thread links names and submits CREATEs, so a name free
	 * now stays free until the job comes back (maker.c). */
	if (reg_lookup(q->name))
		return -EEXIST;
	/* Its answer, -EEXIST or not, once the CREATE in flight has one. */
	rep->job = maker_job_of(q->name);
	if (rep->job)
		return RBUSD_WAIT;
	rbus_create_opts(q, &o);
	size = rbus_region_size_for(&o);
	if (size > rbusd_cfg.max_region_size)
		return -EFBIG;
	reg_lock();
	/* A creator gone already would cost the maker seconds for nothing. */
	if (proc_check_dead(pe->proc)) {
		rep->drop = true;
		err = -ESRCH;
	} else {
		err = create_quota(pe, size, rep);
	}
	reg_unlock();
	if (err)
		return err;
	job = calloc(1, sizeof(*job));
	if (!job)
		return -ENOMEM;
	job->q = *q;
	job->uid = uid;
	job->gid = gid;
	job->creator_uid = pe->uid;
	job->bytes = size;
	job->proc = pe->proc;
	if (size <= CREATE_INLINE_BYTES) {
		/* Made here and now: it would not be worth the hand-off, and
		 * must not wait behind the large regions in the maker's
		 * queue. */
		req_create_make(job);
		err = req_create_finish(pe, job, rep);
		free(job);
		return err;
	}
	rep->job = job;
	return RBUSD_LATER;
}

int req_create_finish(struct peer *pe, struct make_job *j, struct reply *rep)
{
	struct rbus_rep_create *body = (struct rbus_rep_create *)rep->u.buf;
	int err = j->err;

	if (err)
		return err;
	reg_lock();
	err = create_link(pe, j->ch, rep);
	if (!err) {
		chan_describe(j->ch, &body->chan);
		reply_fds(rep, j->ch);
		rep->len = sizeof(*body);
	}
	/* Linked, the registry and the creator hold it; if not, it goes. */
	chan_unref(j->ch);
	j->ch = NULL;
	reg_unlock();
	if (!err)
		log_debug("pid %d (uid %u) created %s (id %llu), its region made in %.3f s",
			  (int)pe->pid, (unsigned)pe->uid, body->chan.name,
			  (unsigned long long)body->chan.id, (double)j->make_ns / 1e9);
	return err;
}

/* A new lease token: >= 2 (0 means free, 1 is a handle opened without
 * the broker), unique in the run until the counter wraps.  reg_lock. */
/* The next token, or 0 when all 2^32 - 2 have been handed out. */
static uint32_t next_token(void)
{
	if (last_token >= UINT32_MAX)
		return 0;
	return (uint32_t)++last_token;
}

/* Record a lease of @role on @ch for @pe's process.  reg_lock. */
static int open_lease(struct peer *pe, struct chan *ch, uint32_t role,
		      struct reply *rep, uint32_t *token)
{
	struct proc *p = pe->proc;
	struct use *u;
	int err;

	if (proc_check_dead(p)) {
		rep->drop = true;
		return -ESRCH;
	}
	if (!ch->linked)
		return -ENOENT;
	u = proc_use(p, ch, false);
	if (u)
		use_prune_leases(u);
	if (p->nleases >= RBUSD_MAX_CLIENT_LEASES)
		proc_prune_leases(p);
	/* Its CREATEs in flight count as channels it uses (maker.c). */
	if ((!u && p->nuses + p->ncreating >= rbusd_cfg.max_client_channels) ||
	    p->nleases >= RBUSD_MAX_CLIENT_LEASES)
		return -EDQUOT;
	if (!u)
		u = proc_use(p, ch, true);
	if (!u)
		return -ENOMEM;
	*token = next_token();
	if (!*token) {
		log_error("all 2^32 - 2 role tokens of this run are spent: OPEN refused; "
			  "restart ringbusd");
		use_drop_if_idle(u);
		return -EDQUOT;
	}
	err = use_add_lease(u, *token, role, pe->uid, pe->id);
	if (err) {
		use_drop_if_idle(u);
		return err;
	}
	pe->unsettled = true;
	/* Relaxed: a figure; written under reg_lock, read without it. */
	atomic_fetch_add_explicit(&ch->opens, 1, memory_order_relaxed);
	return 0;
}

int req_open(struct peer *pe, const struct rbus_req_open *q, struct reply *rep)
{
	struct rbus_rep_open *body = (struct rbus_rep_open *)rep->u.buf;
	struct chan *ch;
	uint32_t token;
	int err;

	if (rbus_proto_name_ok(q->name) < 0 ||
	    (q->role != RBUS_PRODUCER && q->role != RBUS_CONSUMER))
		return -EINVAL;
	ch = reg_lookup(q->name);
	if (!ch)
		return no_such(q->name, rep);
	if (!may_take(pe, ch, q->role))
		return -EACCES;
	if (ch->desc.kind == RBUS_KIND_SPSC &&
	    rbus_region_role_owner(ch->region, (enum rbus_role)q->role))
		return -EBUSY;
	reg_lock();
	err = open_lease(pe, ch, q->role, rep, &token);
	if (!err) {
		body->token = token;
		body->reserved = 0;
		chan_describe(ch, &body->chan);
		reply_fds(rep, ch);
		rep->len = sizeof(*body);
	}
	reg_unlock();
	return err;
}

int req_list(struct peer *pe, const struct rbus_req_list *q, struct reply *rep)
{
	struct rbus_rep_list *body = (struct rbus_rep_list *)rep->u.buf;

	if (q->max < 1 || q->max > RBUS_PROTO_LIST_MAX)
		return -EINVAL;
	reg_lock();
	body->count = reg_list(q->after, q->max, body->chan, &body->more);
	reg_unlock();
	rep->len = sizeof(*body) + body->count * sizeof(body->chan[0]);
	return 0;
}

/* Bytes of @r's mapping in the daemon that are in memory. */
static uint64_t region_resident(const struct rbus_region *r)
{
	unsigned char vec[MINCORE_CHUNK];
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
	uint64_t pages = (r->map_size + page - 1) / page;
	uint64_t in = 0;

	for (uint64_t off = 0; off < pages; off += MINCORE_CHUNK) {
		uint64_t n = pages - off < MINCORE_CHUNK ? pages - off : MINCORE_CHUNK;
		uint64_t len = n * page;

		if (off * page + len > r->map_size)
			len = r->map_size - off * page;
		if (mincore(r->base + off * page, len, vec) < 0)
			return 0;
		for (uint64_t i = 0; i < n; i++)
			in += vec[i] & 1;
	}
	return in * page;
}

/* The shared-memory figures of STAT, read through the library. */
static void stat_region(const struct chan *ch, struct rbus_rep_stat *s)
{
	struct rbus_region_info info;
	struct rbus_wait_stats w;

	rbus_region_info(ch->region, &info);
	rbus_region_wait_stats(ch->region, &w);
	s->head = info.head;
	s->tail = info.tail;
	s->prod_attached = info.producers;
	s->cons_attached = info.consumers;
	s->data_sleepers = w.data_sleepers;
	s->space_sleepers = w.space_sleepers;
	s->data_sleeps = w.data_sleeps;
	s->data_wakes = w.data_wakes;
	s->data_blind = w.data_blind;
	s->space_sleeps = w.space_sleeps;
	s->space_wakes = w.space_wakes;
	s->space_blind = w.space_blind;
}

/* The daemon's records of STAT: counters and holders.  reg_lock. */
static void stat_records(struct chan *ch, struct rbus_rep_stat *s)
{
	struct use *u;
	uint32_t n = 0, total = 0;

	cds_list_for_each_entry(u, &ch->uses, in_chan)
		use_prune_leases(u);
	/* Relaxed: written under reg_lock, which we hold, by other threads. */
	s->opens = atomic_load_explicit(&ch->opens, memory_order_relaxed);
	s->deaths = atomic_load_explicit(&ch->deaths, memory_order_relaxed);
	s->recovered = atomic_load_explicit(&ch->recovered, memory_order_relaxed);
	chan_describe(ch, &s->chan);
	cds_list_for_each_entry(u, &ch->uses, in_chan) {
		for (const struct lease *l = u->leases; l; l = l->next) {
			/* Held ones only.  Pruning left those and the unsettled;
			 * an unsettled lease nothing holds is a claim about to
			 * be made, or a handle closed since: no holder now. */
			if (l->conn && !rbus_region_token_live(ch->region, (enum rbus_role)l->role,
							       l->token))
				continue;
			total++;
			if (n == RBUS_PROTO_HOLDERS)
				continue;
			s->holders[n].pid = (int32_t)u->proc->pid;
			s->holders[n].uid = l->uid;
			s->holders[n].role = l->role;
			s->holders[n].token = l->token;
			n++;
		}
	}
	s->nholders = n;
	s->holders_total = total;
}

int req_stat(struct peer *pe, const struct rbus_req_name *q, struct reply *rep)
{
	struct rbus_rep_stat *body = (struct rbus_rep_stat *)rep->u.buf;
	struct chan *ch;

	if (rbus_proto_name_ok(q->name) < 0)
		return -EINVAL;
	ch = reg_lookup(q->name);
	if (!ch)
		return no_such(q->name, rep);
	if (pe->uid != 0 && pe->uid != ch->desc.owner_uid &&
	    !may_take(pe, ch, RBUS_PRODUCER) && !may_take(pe, ch, RBUS_CONSUMER))
		return -EACCES;
	/* mincore() of the whole mapping: not under the lock. */
	body->resident = region_resident(ch->region);
	/* The shared counts under the lock too: a recovery (procs.c) drops
	 * them and counts itself in one hold of it, so a reply that shows a
	 * death and its recovery shows the counts dropped. */
	reg_lock();
	stat_region(ch, body);
	stat_records(ch, body);
	reg_unlock();
	rep->len = sizeof(*body) + body->nholders * sizeof(body->holders[0]);
	return 0;
}

int req_unlink(struct peer *pe, const struct rbus_req_name *q, struct reply *rep)
{
	struct rbus_proto_reply *body = &rep->u.r;
	struct chan *ch;

	if (rbus_proto_name_ok(q->name) < 0)
		return -EINVAL;
	ch = reg_lookup(q->name);
	if (!ch)
		return no_such(q->name, rep);
	if (pe->uid != 0 && pe->uid != ch->desc.owner_uid)
		return -EPERM;
	reg_lock();
	/* Unlinked meanwhile by the reaper (its last user died)? */
	if (!ch->linked) {
		reg_unlock();
		return -ENOENT;
	}
	reg_unlink(ch);
	reg_unlock();
	log_info("channel %s unlinked by pid %d (uid %u)", q->name, (int)pe->pid,
		 (unsigned)pe->uid);
	rep->len = sizeof(*body);
	return 0;
}

const char *req_name(uint16_t type, char buf[16])
{
	static const char *const names[] = {
		[RBUS_REQ_HELLO] = "HELLO", [RBUS_REQ_CREATE] = "CREATE",
		[RBUS_REQ_OPEN] = "OPEN",   [RBUS_REQ_LIST] = "LIST",
		[RBUS_REQ_STAT] = "STAT",   [RBUS_REQ_UNLINK] = "UNLINK",
	};

	if (type < sizeof(names) / sizeof(names[0]) && names[type])
		return names[type];
	snprintf(buf, 16, "type %u", (unsigned)type);
	return buf;
}
