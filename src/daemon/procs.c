/* SPDX-License-Identifier: MIT */
/*
 * procs.c - client processes, their uses of channels and their leases, and
 * the reaper thread that cleans up after the ones that exit.
 *
 * A process is known by the pid SO_PEERCRED gives for its connection.  At
 * its first contact the daemon opens a pidfd for it, and the reaper waits
 * on all of them with epoll: a pidfd becomes readable when its process
 * exits, whether or not it still had a connection.  Then every lease it
 * held is released in shared memory by its token (rbus_region_recover()),
 * its uses of channels are dropped, and channels left without users are
 * removed unless persistent.
 *
 * The pid-reuse window.  SO_PEERCRED records the pid at connect(); the
 * pidfd is opened later, at accept.  If in between the client exited and
 * the kernel handed its pid to a new process, the pidfd names that new
 * process: the dead client's leases would then be released when the new
 * process exits, not when the client did (and its connection, already
 * closed, would carry no more requests).  Reuse needs the pid counter to
 * wrap (pid_max values) within that interval, which a client can only
 * arrange on purpose, and it gains nothing by it: the roles it holds are
 * its own.  Linux 6.5 closes the window with SO_PEERPIDFD; Debian 12's
 * kernel (6.1) lacks it.  No rights come from the pid: uid, gid and
 * supplementary groups are the socket's (SO_PEERCRED, SO_PEERGROUPS, both
 * recorded at connect()), and a record whose pidfd has fired is reaped
 * before a new connection or lease can join it.
 *
 * Records are found by the reaper through (pid, generation), never by
 * pointer, since the main thread may free a record (last connection gone,
 * no uses) while the reaper holds an event for it.
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "ringbusd.h"

#define PROC_BUCKETS 1024u          /* power of two */
#define REAP_BATCH   16

/*
 * Intents left for later.  A recovery finishes a dead MPMC handle's intent
 * (a claim noted, its CAS perhaps won) only where no other record covers
 * its slots (ring_mpmc.c, finish_claim()).  A live handle's record that is
 * only an intent may cover them for a moment and no more: it noted the
 * same slots and its CAS lost, and it clears the record right after.  So
 * the slots such intents covered are looked at again, by the reaper, 1 ms
 * later, then at four times the delay each time up to 1 s, until nothing
 * but held records covers them (rbus_region_retry_intent() says 0), for up
 * to LATER_GIVE_UP_NS: a client stopped for longer between its note and its
 * clear leaves the slots held, as before this retry.  Each entry holds a
 * reference to its channel.  Under reg_lock; the reaper's timerfd fires at
 * the earliest due time.  A retry scans only the slots that only intents
 * covered, and only those it finds no longer covered; at most LATER_MAX
 * entries wait at once (each death adds at most one per lease entry), so
 * clients that die over and over with such claims cannot grow the list or
 * the work under the lock without bound: past it, slots stay held as they
 * did before, with a warning.
 */
struct later {
	struct later *next;
	struct chan *ch;
	uint32_t role;
	pid_t pid;                  /* the dead client, for the log */
	struct rbus_claim_left left;
	int64_t since, due;
	unsigned tries;
};

#define LATER_KEY        UINT64_MAX        /* never a proc_key(): pid -1 */
#define LATER_FIRST_NS   INT64_C(1000000)
#define LATER_MAX_NS     INT64_C(1000000000)
#define LATER_GIVE_UP_NS INT64_C(60000000000)
#ifdef RBUSD_TEST_HOOKS
/* tests/ringbusd-hooks: one, so that a test can fill the list with two
 * deaths (test_claim_window's later_list_full). */
#define LATER_MAX        1u
#else
#define LATER_MAX        1024u
#endif

static struct later *laters;                /* reg_lock */
static unsigned nlaters;                    /* reg_lock */
static int64_t later_armed = INT64_MAX;     /* the timer's due time, reg_lock */
static int later_tfd = -1;

static struct proc *table[PROC_BUCKETS];   /* live records, reg_lock */
static uint32_t last_gen;                   /* reg_lock */
static int reap_epfd = -1;
static int reap_stopfd = -1;                /* eventfd: stop the reaper */
static pthread_t reaper;
static bool reaper_started;

static struct proc **bucket(pid_t pid)
{
	return &table[(uint32_t)pid & (PROC_BUCKETS - 1)];
}

static struct proc *proc_find(pid_t pid)
{
	struct proc *p;

	for (p = *bucket(pid); p; p = p->hnext)
		if (p->pid == pid)
			return p;
	return NULL;
}

static void proc_unhash(struct proc *p)
{
	struct proc **pp;

	for (pp = bucket(p->pid); *pp; pp = &(*pp)->hnext) {
		if (*pp == p) {
			*pp = p->hnext;
			return;
		}
	}
}

/* The key of @p's pidfd in the reaper's epoll: never 0 (gen >= 1), which
 * is the stop eventfd's. */
static uint64_t proc_key(const struct proc *p)
{
	return (uint64_t)p->gen << 32 | (uint32_t)p->pid;
}

/* Stop watching @p and forget its pid: it is dead, or about to be freed. */
static void proc_unwatch(struct proc *p)
{
	proc_unhash(p);
	epoll_ctl(reap_epfd, EPOLL_CTL_DEL, p->pidfd, NULL);
	close(p->pidfd);
	p->pidfd = -1;
}

/* Free @p if nothing keeps it: no connection, no use of a channel. */
static void proc_maybe_free(struct proc *p)
{
	if (p->nconns || p->uses)
		return;
	if (!p->dead)
		proc_unwatch(p);
	free(p);
}

static const char *role_name(uint32_t role)
{
	return role == RBUS_PRODUCER ? "producer" : "consumer";
}

/* Take unsettled lease @l off @p's list of them. */
static void unsettled_forget(struct proc *p, const struct lease *l)
{
	struct lease **lp = &p->unsettled;

	while (*lp && *lp != l)
		lp = &(*lp)->unext;
	if (*lp)
		*lp = l->unext;
}

/* Take @u off its channel and its process and free it, with its leases.
 * With @prune, a channel left without users is unlinked unless
 * persistent.  reg_lock, rcu_read_lock. */
static void use_drop(struct use *u, bool prune)
{
	struct chan *ch = u->chan;
	struct proc *p = u->proc;
	struct use **pp;

	for (pp = &p->uses; *pp != u; pp = &(*pp)->next)
		;
	*pp = u->next;
	p->nuses--;
	cds_list_del(&u->in_chan);
	while (u->leases) {
		struct lease *l = u->leases;

		u->leases = l->next;
		if (l->conn)
			unsettled_forget(p, l);
		ch->nleases--;
		p->nleases--;
		free(l);
	}
	if (prune && ch->linked && cds_list_empty(&ch->uses) &&
	    !(ch->desc.flags & RBUS_BROKER_PERSISTENT)) {
		log_info("channel %s removed: no user left", ch->desc.name);
		reg_unlink(ch);
	}
	chan_unref(ch);
	free(u);
}

/* Arm the timerfd for @due (INT64_MAX: disarm).  reg_lock. */
static void later_arm_at(int64_t due)
{
	struct itimerspec its = { 0 };

	if (due != INT64_MAX) {
		if (due < 1)
			due = 1;        /* 0 would disarm it */
		its.it_value.tv_sec = due / 1000000000;
		its.it_value.tv_nsec = due % 1000000000;
	}
	if (timerfd_settime(later_tfd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
		log_error("reaper: timerfd_settime: %s", strerror(errno));
	later_armed = due;
}

static const char *role_name(uint32_t role);

/* The last index of @left's run, for the log. */
static unsigned long long later_last(const struct rbus_claim_left *left)
{
	return (unsigned long long)(left->first + left->count - 1);
}

/* Retry @left of @ch's @role later.  reg_lock. */
static void later_add(struct chan *ch, uint32_t role, pid_t pid,
		      const struct rbus_claim_left *left)
{
	int64_t now = rbus_now();
	struct later *x;

	for (x = laters; x; x = x->next)
		if (x->ch == ch && x->role == role && x->left.first == left->first &&
		    x->left.count == left->count) {
			/* Already waiting: this death gets its full time. */
			x->since = now;
			log_debug("pid %d exited claiming %s slots %llu..%llu of %s, "
				  "already waiting to be looked at again",
				  (int)pid, role_name(role),
				  (unsigned long long)left->first, later_last(left),
				  ch->desc.name);
			return;
		}
	x = nlaters < LATER_MAX ? calloc(1, sizeof(*x)) : NULL;
	if (!x) {
		log_warn("pid %d exited claiming %s slots %llu..%llu of %s, which a live "
			 "handle's intent also names: %s; they stay held",
			 (int)pid, role_name(role), (unsigned long long)left->first,
			 later_last(left), ch->desc.name,
			 nlaters < LATER_MAX ? "out of memory" : "too many such claims waiting");
		return;
	}
	chan_ref(ch);
	x->ch = ch;
	x->role = role;
	x->pid = pid;
	x->left = *left;
	x->since = now;
	x->due = now + LATER_FIRST_NS;
	x->next = laters;
	laters = x;
	nlaters++;
	log_info("pid %d exited claiming %s slots %llu..%llu of %s, which a live "
		 "handle's intent also names: looking again shortly",
		 (int)pid, role_name(role), (unsigned long long)left->first,
		 later_last(left), ch->desc.name);
	if (x->due < later_armed)
		later_arm_at(x->due);
}

/* Run the retries that are due, and arm the timer for the next.  reg_lock. */
static void later_run(void)
{
	int64_t now = rbus_now(), next = INT64_MAX;

	for (struct later **xp = &laters; *xp;) {
		struct later *x = *xp;
		int more;

		if (x->due > now) {
			if (x->due < next)
				next = x->due;
			xp = &x->next;
			continue;
		}
		more = rbus_region_retry_intent(x->ch->region, (enum rbus_role)x->role,
						&x->left);
		if (more == 1 && now - x->since < LATER_GIVE_UP_NS) {
			int64_t delay = LATER_FIRST_NS;

			for (unsigned i = 0; i <= x->tries && delay < LATER_MAX_NS; i++)
				delay *= 4;
			x->tries++;
			x->due = now + (delay < LATER_MAX_NS ? delay : LATER_MAX_NS);
			if (x->due < next)
				next = x->due;
			xp = &x->next;
			continue;
		}
		if (more == 1)
			log_warn("%s slots %llu..%llu of %s, claimed by pid %d when it "
				 "exited: a live handle's intent still names them after %d s; "
				 "left held", role_name(x->role),
				 (unsigned long long)x->left.first, later_last(&x->left),
				 x->ch->desc.name, (int)x->pid,
				 (int)(LATER_GIVE_UP_NS / 1000000000));
		else if (more == 0)
			log_info("%s slots %llu..%llu of %s, claimed by pid %d when it "
				 "exited: looked at again after %u tries",
				 role_name(x->role), (unsigned long long)x->left.first,
				 later_last(&x->left), x->ch->desc.name, (int)x->pid,
				 x->tries + 1);
		else    /* 2; -EINVAL cannot be: only MPMC leaves runs */
			log_warn("%s slots %llu..%llu of %s, claimed by pid %d when it "
				 "exited: a handle without a claim record has claimed there "
				 "since, or the ring's indices are corrupt; left held",
				 role_name(x->role), (unsigned long long)x->left.first,
				 later_last(&x->left), x->ch->desc.name, (int)x->pid);
		*xp = x->next;
		nlaters--;
		chan_unref(x->ch);
		free(x);
	}
	later_arm_at(next);
}

/* Release in shared memory every role @u's process held on its channel
 * under its leases, and count the death.  reg_lock. */
static void use_recover(struct use *u)
{
	struct chan *ch = u->chan;
	bool released = false;

	for (struct lease *l = u->leases; l; l = l->next) {
		struct rbus_claim_left left[RBUS_SIDE_LEASES];
		unsigned nleft;
		int n = rbus_region_recover(ch->region, (enum rbus_role)l->role,
					    l->token, left, &nleft);

		for (unsigned i = 0; i < nleft; i++)
			later_add(ch, l->role, u->proc->pid, &left[i]);
		if (n <= 0)
			continue;
		released = true;
		/* Relaxed: a figure; written under reg_lock, read without. */
		atomic_fetch_add_explicit(&ch->recovered, (uint64_t)n,
					  memory_order_relaxed);
		log_info("pid %d (uid %u) exited holding %s of %s: released",
			 (int)u->proc->pid, l->uid, role_name(l->role),
			 ch->desc.name);
	}
	if (released)
		atomic_fetch_add_explicit(&ch->deaths, 1, memory_order_relaxed);
}

/* @p has exited: give back its roles, drop its uses, stop watching it.
 * The record itself lives on while connections point to it.  reg_lock,
 * rcu_read_lock. */
static void proc_reap(struct proc *p)
{
	log_debug("pid %d exited", (int)p->pid);
	while (p->uses) {
		use_recover(p->uses);
		use_drop(p->uses, true);
	}
	proc_unwatch(p);
	p->dead = true;
	proc_maybe_free(p);
}

/* Has the process behind @pidfd exited?  (A pidfd polls readable then.) */
static bool pidfd_exited(int pidfd)
{
	struct pollfd pfd = { .fd = pidfd, .events = POLLIN };

	return poll(&pfd, 1, 0) > 0;
}

bool proc_check_dead(struct proc *p)
{
	if (p->dead)
		return true;
	if (!pidfd_exited(p->pidfd))
		return false;
	/* Frees @p unless a connection holds it. */
	proc_reap(p);
	return true;
}

/* A new record for @pid, its pidfd watched by the reaper. */
static int proc_new(pid_t pid, uid_t uid, struct proc **out)
{
	struct epoll_event ev = { .events = EPOLLIN };
	struct proc *p = calloc(1, sizeof(*p));
	int err;

	if (!p)
		return -ENOMEM;
	p->pid = pid;
	p->uid = uid;
	if (++last_gen == 0)
		last_gen = 1;
	p->gen = last_gen;
	p->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (p->pidfd < 0) {
		err = errno == ESRCH ? -ESRCH : -errno;
		free(p);
		return err;
	}
	ev.data.u64 = proc_key(p);
	if (epoll_ctl(reap_epfd, EPOLL_CTL_ADD, p->pidfd, &ev) < 0) {
		err = -errno;
		close(p->pidfd);
		free(p);
		return err;
	}
	p->hnext = *bucket(pid);
	*bucket(pid) = p;
	*out = p;
	return 0;
}

int proc_connect(pid_t pid, uid_t uid, struct proc **out)
{
	struct proc *p = proc_find(pid);
	int err;

	/* A record whose process exited is reaped first: its pid may now
	 * name the process connecting. */
	if (p && proc_check_dead(p))
		p = NULL;
	if (!p) {
		err = proc_new(pid, uid, &p);
		if (err)
			return err;
	}
	p->nconns++;
	*out = p;
	return 0;
}

void proc_disconnect(struct proc *p)
{
	p->nconns--;
	proc_maybe_free(p);
}

struct use *proc_use(struct proc *p, struct chan *ch, bool make)
{
	struct use *u;

	for (u = p->uses; u; u = u->next)
		if (u->chan == ch)
			return u;
	if (!make)
		return NULL;
	u = calloc(1, sizeof(*u));
	if (!u)
		return NULL;
	u->proc = p;
	u->chan = ch;
	chan_ref(ch);
	cds_list_add_tail(&u->in_chan, &ch->uses);
	u->next = p->uses;
	p->uses = u;
	p->nuses++;
	return u;
}

int use_add_lease(struct use *u, uint32_t token, uint32_t role, uint32_t uid,
		  uint64_t conn)
{
	struct lease *l = calloc(1, sizeof(*l));

	if (!l)
		return -ENOMEM;
	l->token = token;
	l->role = role;
	l->uid = uid;
	l->conn = conn;
	if (conn) {
		l->unext = u->proc->unsettled;
		u->proc->unsettled = l;
	}
	l->next = u->leases;
	u->leases = l;
	u->chan->nleases++;
	u->proc->nleases++;
	if (role == RBUS_PRODUCER)
		u->nprod++;
	else
		u->ncons++;
	return 0;
}

void use_prune_leases(struct use *u)
{
	struct lease **lp = &u->leases;

	while (*lp) {
		struct lease *l = *lp;

		if (l->conn || rbus_region_token_live(u->chan->region, (enum rbus_role)l->role,
						      l->token)) {
			lp = &l->next;
			continue;
		}
		log_debug("pid %d: %s lease %u of %s forgotten: no handle holds it",
			  (int)u->proc->pid, role_name(l->role), (unsigned)l->token,
			  u->chan->desc.name);
		*lp = l->next;
		if (l->role == RBUS_PRODUCER)
			u->nprod--;
		else
			u->ncons--;
		u->chan->nleases--;
		u->proc->nleases--;
		free(l);
	}
}

void proc_prune_leases(struct proc *p)
{
	for (struct use *u = p->uses; u; u = u->next)
		use_prune_leases(u);
}

void proc_settle_leases(struct proc *p, uint64_t conn)
{
	for (struct lease **lp = &p->unsettled; *lp;) {
		struct lease *l = *lp;

		if (l->conn != conn) {
			lp = &l->unext;
			continue;
		}
		l->conn = 0;
		*lp = l->unext;
	}
}

bool use_holds(const struct use *u, uint32_t role)
{
	for (const struct lease *l = u->leases; l; l = l->next)
		if (l->role == role &&
		    rbus_region_token_live(u->chan->region, (enum rbus_role)role, l->token))
			return true;
	return false;
}

void use_drop_if_idle(struct use *u)
{
	if (!u->leases && !u->creator)
		use_drop(u, true);
}

/* Handle the reaper's event for key @key: reap the record if it is still
 * the one the pidfd was registered for. */
static void reap_key(uint64_t key)
{
	pid_t pid = (pid_t)(uint32_t)key;
	uint32_t gen = (uint32_t)(key >> 32);
	struct proc *p;

	reg_lock();
	rcu_read_lock();
	p = proc_find(pid);
	if (p && p->gen == gen)
		proc_reap(p);
	rcu_read_unlock();
	reg_unlock();
}

static void *reaper_main(void *arg)
{
	struct epoll_event ev[REAP_BATCH];

	rcu_register_thread();
	for (;;) {
		int n = epoll_wait(reap_epfd, ev, REAP_BATCH, -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_error("reaper: epoll_wait: %s", strerror(errno));
			break;
		}
		for (int i = 0; i < n; i++) {
			if (ev[i].data.u64 == 0)
				goto out;
			if (ev[i].data.u64 == LATER_KEY) {
				uint64_t ticks;

				/* Nonblocking: a re-arm may have reset it. */
				(void)!read(later_tfd, &ticks, sizeof(ticks));
				reg_lock();
				later_run();
				reg_unlock();
				continue;
			}
			reap_key(ev[i].data.u64);
		}
	}
out:
	rcu_unregister_thread();
	return NULL;
}

int procs_init(void)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 0 };

	reap_epfd = epoll_create1(EPOLL_CLOEXEC);
	if (reap_epfd < 0)
		return -errno;
	reap_stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (reap_stopfd < 0 ||
	    epoll_ctl(reap_epfd, EPOLL_CTL_ADD, reap_stopfd, &ev) < 0)
		return -errno;
	later_tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	ev.data.u64 = LATER_KEY;
	if (later_tfd < 0 || epoll_ctl(reap_epfd, EPOLL_CTL_ADD, later_tfd, &ev) < 0)
		return -errno;
	return 0;
}

int procs_start_reaper(void)
{
	int err = pthread_create(&reaper, NULL, reaper_main, NULL);

	if (err)
		return -err;
	reaper_started = true;
	return 0;
}

void procs_stop_reaper(void)
{
	uint64_t one = 1;

	if (!reaper_started)
		return;
	if (write(reap_stopfd, &one, sizeof(one)) != sizeof(one))
		log_error("cannot stop the reaper: %s", strerror(errno));
	pthread_join(reaper, NULL);
	reaper_started = false;
}

void procs_fini(void)
{
	reg_lock();
	rcu_read_lock();
	for (unsigned i = 0; i < PROC_BUCKETS; i++) {
		while (table[i]) {
			struct proc *p = table[i];

			/* The daemon stops, the clients do not: their roles
			 * stay theirs, and no channel is "left unused". */
			while (p->uses)
				use_drop(p->uses, false);
			proc_unwatch(p);
			free(p);
		}
	}
	if (nlaters)
		log_warn("stopping with %u dead claims not looked at again: their "
			 "slots stay held", nlaters);
	while (laters) {
		struct later *x = laters;

		laters = x->next;
		nlaters--;
		chan_unref(x->ch);
		free(x);
	}
	rcu_read_unlock();
	reg_unlock();
	if (later_tfd >= 0)
		close(later_tfd);
	if (reap_stopfd >= 0)
		close(reap_stopfd);
	if (reap_epfd >= 0)
		close(reap_epfd);
}
