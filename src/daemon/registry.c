/* SPDX-License-Identifier: MIT */
/*
 * registry.c - the channels the daemon knows by name.
 *
 * Two indexes of the linked channels, both read lock-free under RCU: a
 * liburcu lock-free hash table by name (lookups for OPEN, STAT, UNLINK,
 * CREATE), and an RCU list in increasing id order (LIST pages through it).
 * Ids come from a counter and channels are appended under reg_lock, so the
 * list stays sorted without searching.  Writers hold reg_lock; a channel
 * unlinked from both is freed by call_rcu() once its last reference goes,
 * so a reader that found it may use it until rcu_read_unlock().
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "ringbusd.h"

#define HT_INIT_BUCKETS 64

static pthread_mutex_t reg_mutex = PTHREAD_MUTEX_INITIALIZER;
static struct cds_lfht *by_name;
static CDS_LIST_HEAD(by_id);
static uint64_t next_id;                 /* last id given; under reg_lock */
static _Atomic unsigned long nlinked;    /* written under reg_lock */

/* The channels counted in region_bytes (below) and their bytes by creator
 * uid, for the per-user limits (reg_user_usage()), so that a CREATE does
 * not walk every channel alive under reg_lock, which a client could have
 * ringbusd do thousands of times a second: a table by uid, chained, with
 * an entry for each uid that has a counted channel, freed with its last.
 * reg_lock. */
struct user_use {
	struct user_use *next;
	uint32_t uid;
	uint32_t chans;
	uint64_t bytes;
};

#define USER_BUCKETS 256
static struct user_use *user_table[USER_BUCKETS];

/* Where @uid's entry is, or would be linked. */
static struct user_use **user_find(uint32_t uid)
{
	struct user_use **up = &user_table[uid % USER_BUCKETS];

	while (*up && (*up)->uid != uid)
		up = &(*up)->next;
	return up;
}

/* Per-run key of the name hash, so that clients cannot precompute names
 * that all fall in one bucket. */
static uint64_t hash_key;

void reg_lock(void)
{
	pthread_mutex_lock(&reg_mutex);
}

void reg_unlock(void)
{
	pthread_mutex_unlock(&reg_mutex);
}

/* FNV-1a over the name field, started from the per-run key. */
static unsigned long name_hash(const char *name)
{
	uint64_t x = UINT64_C(0xcbf29ce484222325) ^ hash_key;

	for (size_t i = 0; i < RBUS_PROTO_NAME && name[i]; i++) {
		x ^= (unsigned char)name[i];
		x *= UINT64_C(0x100000001b3);
	}
	return (unsigned long)(x ^ (x >> 29));
}

static int name_match(struct cds_lfht_node *node, const void *key)
{
	const struct chan *ch = caa_container_of(node, struct chan, node);

	return memcmp(ch->desc.name, key, RBUS_PROTO_NAME) == 0;
}

int reg_init(void)
{
	if (getrandom(&hash_key, sizeof(hash_key), GRND_NONBLOCK) != sizeof(hash_key))
		hash_key = (uint64_t)(uintptr_t)&hash_key ^ (uint64_t)getpid();
	by_name = cds_lfht_new(HT_INIT_BUCKETS, HT_INIT_BUCKETS, 0,
			       CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING, NULL);
	return by_name ? 0 : -ENOMEM;
}

void reg_fini(void)
{
	struct chan *ch, *tmp;

	reg_lock();
	rcu_read_lock();
	cds_list_for_each_entry_safe(ch, tmp, &by_id, order)
		reg_unlink(ch);
	rcu_read_unlock();
	reg_unlock();
	/* Every channel's last reference is gone (procs_fini() ran): wait
	 * for the call_rcu() callbacks that free them. */
	rcu_barrier();
	if (cds_lfht_destroy(by_name, NULL))
		log_error("the channel table was not empty at exit");
	by_name = NULL;
	for (unsigned i = 0; i < USER_BUCKETS; i++)
		while (user_table[i]) {
			struct user_use *u = user_table[i];

			log_error("uid %u still had %u channels counted at exit",
				  (unsigned)u->uid, (unsigned)u->chans);
			user_table[i] = u->next;
			free(u);
		}
}

struct chan *reg_lookup(const char *name)
{
	struct cds_lfht_iter it;
	struct cds_lfht_node *node;

	cds_lfht_lookup(by_name, name_hash(name), name_match, name, &it);
	node = cds_lfht_iter_get_node(&it);
	return node ? caa_container_of(node, struct chan, node) : NULL;
}

unsigned long reg_count(void)
{
	/* Relaxed: a count for a limit; reg_lock orders the writes. */
	return atomic_load_explicit(&nlinked, memory_order_relaxed);
}

struct chan *chan_new(const char *name, struct rbus_region *region,
		      const struct rbus_proto_chan *desc, uint32_t creator_uid)
{
	struct chan *ch = calloc(1, sizeof(*ch));

	if (!ch)
		return NULL;
	cds_lfht_node_init(&ch->node);
	CDS_INIT_LIST_HEAD(&ch->uses);
	ch->desc = *desc;
	memcpy(ch->desc.name, name, RBUS_PROTO_NAME);
	ch->region = region;
	ch->creator_uid = creator_uid;
	ch->refs = 1;
	return ch;
}

/* Bytes of the regions of linked channels and of unlinked ones still
 * alive (held by a user): the channels with `counted` set.  reg_lock. */
static uint64_t region_bytes;

uint64_t reg_bytes(void)
{
	return region_bytes;
}

int reg_link(struct chan *ch)
{
	struct user_use **up = user_find(ch->creator_uid), *u = *up;
	struct cds_lfht_node *got;

	/* The uid's entry first: nothing may fail once the name is in. */
	if (!u && !(u = calloc(1, sizeof(*u))))
		return -ENOMEM;
	/* The id is set before the node is published: the full barrier of
	 * a successful cds_lfht_add_unique() orders it for readers. */
	ch->desc.id = next_id + 1;
	got = cds_lfht_add_unique(by_name, name_hash(ch->desc.name), name_match,
				  ch->desc.name, &ch->node);
	if (got != &ch->node) {
		if (!*up)
			free(u);
		return -EEXIST;
	}
	next_id++;
	cds_list_add_tail_rcu(&ch->order, &by_id);
	ch->linked = true;
	ch->counted = true;
	region_bytes += ch->desc.region_size;
	if (!*up) {
		u->uid = ch->creator_uid;
		*up = u;
	}
	u->chans++;
	u->bytes += ch->desc.region_size;
	ch->refs++;
	atomic_store_explicit(&nlinked, reg_count() + 1, memory_order_relaxed);
	return 0;
}

void reg_unlink(struct chan *ch)
{
	if (!ch->linked)
		return;
	cds_lfht_del(by_name, &ch->node);
	cds_list_del_rcu(&ch->order);
	ch->linked = false;
	atomic_store_explicit(&nlinked, reg_count() - 1, memory_order_relaxed);
	chan_unref(ch);
}

void chan_ref(struct chan *ch)
{
	ch->refs++;
}

static void chan_free_rcu(struct rcu_head *head)
{
	struct chan *ch = caa_container_of(head, struct chan, rcu);

	rbus_region_close(ch->region);
	free(ch);
}

void chan_unref(struct chan *ch)
{
	if (--ch->refs)
		return;
	if (ch->counted) {
		struct user_use **up = user_find(ch->creator_uid), *u = *up;

		region_bytes -= ch->desc.region_size;
		/* Linked with the channel (reg_link()), so it is there. */
		u->bytes -= ch->desc.region_size;
		if (!--u->chans) {
			*up = u->next;
			free(u);
		}
	}
	call_rcu(&ch->rcu, chan_free_rcu);
}

void reg_user_usage(uint32_t uid, uint32_t *chans, uint64_t *bytes)
{
	const struct user_use *u = *user_find(uid);

	*chans = u ? u->chans : 0;
	*bytes = u ? u->bytes : 0;
}

void chan_describe(const struct chan *ch, struct rbus_proto_chan *out)
{
	const struct use *u;

	*out = ch->desc;
	out->producers = 0;
	out->consumers = 0;
	cds_list_for_each_entry(u, &ch->uses, in_chan) {
		out->producers += use_holds(u, RBUS_PRODUCER);
		out->consumers += use_holds(u, RBUS_CONSUMER);
	}
}

unsigned reg_list(uint64_t after, unsigned max, struct rbus_proto_chan *out,
		  uint32_t *more)
{
	struct chan *ch;
	unsigned n = 0;

	*more = 0;
	cds_list_for_each_entry_rcu(ch, &by_id, order) {
		if (ch->desc.id <= after)
			continue;
		if (n == max) {
			*more = 1;
			break;
		}
		chan_describe(ch, &out[n++]);
	}
	return n;
}
