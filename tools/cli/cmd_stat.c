/* SPDX-License-Identifier: MIT */
/*
 * cmd_stat.c - ringbus ls and ringbus stat: what the broker knows of its
 * channels, and what a channel's shared memory says.
 *
 * stat reads a channel through the broker (rbus_broker_stat(): the daemon's
 * records plus its reading of the region), or, without a broker, from a
 * region the caller hands over: an inherited fd (--fd; a memfd of another
 * process can be opened, read-write, as /proc/PID/fd/N) or a POSIX shm name (--shm).
 * Such a region is attached without taking a role, so stat never disturbs
 * the rings; its live fields are relaxed loads, a hint rather than a
 * consistent snapshot.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

/* ---- ls ------------------------------------------------------------------ */

static void ls_usage(FILE *f)
{
	fprintf(f,
		"Usage: ringbus ls [OPTIONS]\n"
		"List the channels of the broker, in the order they were created.\n"
		"\n"
		"  -s, --socket PATH  the broker's socket (default: $RINGBUS_SOCKET,\n"
		"                     $XDG_RUNTIME_DIR/ringbus/ringbusd.sock,\n"
		"                     /run/ringbus/ringbusd.sock)\n"
		"  -j, --json         one JSON object: {\"channels\": [...]}\n"
		"  -h, --help         this text\n"
		"\n"
		"Columns: NAME, KIND (spsc or mpmc), WAKEUP (futex or eventfd), CAPACITY\n"
		"(slots), MAXMSG (bytes), SIZE (of the region), PROD and CONS (processes\n"
		"holding a role), OWNER (uid:gid), MODE (r = may consume, w = may produce).\n"
		"\n"
		"Exit status: 0 listed (also when there is no channel); 2 bad usage;\n"
		"3 no broker.\n");
}

struct ls_state {
	struct rb_json *json;
	unsigned n;
};

static void mode_string(uint32_t mode, char out[10])
{
	static const char rw[] = "rwxrwxrwx";

	for (int i = 0; i < 9; i++)
		out[i] = mode & (0400u >> i) ? rw[i] : '-';
	out[9] = 0;
}

static void json_entry(struct rb_json *j, const struct rbus_broker_entry *e)
{
	char mode[8];

	snprintf(mode, sizeof(mode), "%04o", e->mode);
	rb_json_str(j, "name", e->name);
	rb_json_u64(j, "id", e->id);
	rb_json_str(j, "kind", rb_kind_name(e->kind));
	rb_json_str(j, "wakeup", rb_wakeup_name(e->wakeup));
	rb_json_u64(j, "capacity", e->capacity);
	rb_json_u64(j, "max_msg", e->max_msg);
	rb_json_u64(j, "region_size", e->region_size);
	rb_json_bool(j, "persistent", e->flags & RBUS_BROKER_PERSISTENT);
	rb_json_bool(j, "hugetlb", e->flags & RBUS_BROKER_HUGETLB);
	rb_json_u64(j, "owner_uid", e->owner_uid);
	rb_json_u64(j, "owner_gid", e->owner_gid);
	rb_json_str(j, "mode", mode);
	rb_json_u64(j, "created_ns", e->created_ns);
	rb_json_u64(j, "producers", e->producers);
	rb_json_u64(j, "consumers", e->consumers);
}

static int ls_one(const struct rbus_broker_entry *e, void *arg)
{
	struct ls_state *st = arg;
	char size[24], mode[10], owner[24];

	if (st->json) {
		rb_json_open(st->json, NULL, '{');
		json_entry(st->json, e);
		rb_json_close(st->json, '}');
	} else {
		if (st->n == 0)
			printf("%-24s %-4s %-7s %9s %8s %10s %4s %4s %-11s %s\n", "NAME",
			       "KIND", "WAKEUP", "CAPACITY", "MAXMSG", "SIZE", "PROD",
			       "CONS", "OWNER", "MODE");
		mode_string(e->mode, mode);
		snprintf(owner, sizeof(owner), "%u:%u", e->owner_uid, e->owner_gid);
		printf("%-24s %-4s %-7s %9u %8u %10s %4u %4u %-11s %s\n", e->name,
		       rb_kind_name(e->kind), rb_wakeup_name(e->wakeup), e->capacity,
		       e->max_msg, rb_fmt_bytes(size, sizeof(size), e->region_size),
		       e->producers, e->consumers, owner, mode);
	}
	st->n++;
	return 0;
}

int cmd_ls(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *socket = NULL;
	bool json = false;
	struct rbus_broker *b;
	struct rb_json j;
	struct ls_state st = { 0 };
	char *out = NULL;
	size_t out_len = 0;
	FILE *f = stdout;
	int c, r;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":s:jh", opts, NULL)) != -1) {
		switch (c) {
		case 's': socket = optarg; break;
		case 'j': json = true; break;
		case 'h': ls_usage(stdout); return RB_EXIT_OK;
		case ':': return rb_usage_err("option '%s' needs a value", argv[optind - 1]);
		default: return rb_bad_option(opts, argv[optind - 1]);
		}
	}
	if (optind < argc)
		return rb_usage_err("unexpected argument '%s'", argv[optind]);
	r = rb_connect(socket, &b);
	if (r)
		return r;
	/* The JSON goes to memory first: a listing that fails halfway must
	 * not leave half an object on stdout. */
	if (json) {
		f = open_memstream(&out, &out_len);
		if (!f) {
			rbus_broker_close(b);
			rb_err("no memory for the listing");
			return RB_EXIT_FAIL;
		}
		rb_json_init(&j, f);
		rb_json_open(&j, NULL, '{');
		rb_json_open(&j, "channels", '[');
		st.json = &j;
	}
	r = rbus_broker_list(b, ls_one, &st);
	rbus_broker_close(b);
	if (json) {
		rb_json_close(&j, ']');
		rb_json_close(&j, '}');
		rb_json_end(&j);
		fclose(f);
		if (r == 0)
			fwrite(out, 1, out_len, stdout);
		free(out);
	}
	if (r < 0) {
		rb_err("listing the broker's channels: %s", rbus_strerror(r));
		return rb_broker_exit(r) == RB_EXIT_NOCHAN ? RB_EXIT_FAIL : rb_broker_exit(r);
	}
	return fflush(stdout) ? RB_EXIT_FAIL : RB_EXIT_OK;
}

/* ---- stat ---------------------------------------------------------------- */

static void stat_usage(FILE *f)
{
	fprintf(f,
		"Usage: ringbus stat [OPTIONS] CHANNEL\n"
		"       ringbus stat [OPTIONS] --fd FD | --shm NAME\n"
		"Show one channel: kind, geometry, backend, fill level, messages in and\n"
		"out, the processes holding its roles, sleepers, wake system calls,\n"
		"deaths recovered, memory used and resident.\n"
		"\n"
		"CHANNEL is asked of the broker.  Without a broker, stat reads a region\n"
		"directly, without taking a role: --fd FD, an inherited file descriptor\n"
		"(another process's memfd: 'ringbus stat --fd 3 3<>/proc/PID/fd/N'), or\n"
		"--shm NAME, a POSIX shm object ('/name').  Then the holders are counts,\n"
		"without pids, and the broker's counters (opens, deaths) are absent.\n"
		"A region of the eventfd backend can only be read through the broker.\n"
		"\n"
		"  -s, --socket PATH      the broker's socket (see ringbus ls --help)\n"
		"      --fd FD            read the region behind FD\n"
		"      --shm NAME         read the POSIX shm region NAME\n"
		"  -j, --json             one JSON object\n"
		"  -w, --watch            refresh until interrupted, like top, with rates\n"
		"  -i, --interval SECS    time between refreshes (default 1)\n"
		"  -n, --count N          stop after N refreshes (default: with --watch,\n"
		"                         until interrupted; else 1)\n"
		"  -h, --help             this text\n"
		"\n"
		"Messages in and out count from the region's first index; a ring never\n"
		"drops a message (a full ring blocks or refuses the sender: see 'space\n"
		"sleeps').  Live figures are read without locks: a hint, not a snapshot.\n"
		"\n"
		"Exit status: 0 shown; 1 the region is unreadable (corrupt, not a\n"
		"ringbus region); 2 bad usage; 3 no broker; 4 no such channel;\n"
		"5 permission refused.\n");
}

/* Everything stat shows, from either source. */
struct view {
	bool broker;                 /* from the broker, else from a region */
	struct rbus_broker_stat st;  /* broker: all of it; region: a subset */
	uint64_t start_index;        /* region only (the broker's start at 0) */
	uint32_t slot_size;          /* region only */
	uint32_t abi_version;        /* region only */
	int32_t creator_pid;         /* region only */
	const char *source;          /* "broker", "fd 3", "shm /x" */
};

/* Bytes of @fd's object in memory (mincore over a mapping of our own). */
static int64_t resident_of(int fd, uint64_t size)
{
	long page = sysconf(_SC_PAGESIZE);
	size_t pages = (size_t)((size + (uint64_t)page - 1) / (uint64_t)page);
	unsigned char *vec;
	void *m;
	int64_t n = 0;

	if (!size)
		return 0;
	m = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED)
		return -errno;
	vec = malloc(pages);
	if (!vec) {
		munmap(m, (size_t)size);
		return -ENOMEM;
	}
	if (mincore(m, (size_t)size, vec) == 0) {
		for (size_t i = 0; i < pages; i++)
			n += vec[i] & 1;
		n *= page;
	} else {
		n = -errno;
	}
	free(vec);
	munmap(m, (size_t)size);
	return n;
}

static int view_region(struct rbus_region *r, struct view *v)
{
	struct rbus_region_info info;
	struct rbus_wait_stats ws;
	struct rbus_broker_stat *st = &v->st;
	int64_t res;

	rbus_region_info(r, &info);
	rbus_region_wait_stats(r, &ws);
	memset(st, 0, sizeof(*st));
	st->chan.kind = info.kind;
	st->chan.capacity = info.capacity;
	st->chan.max_msg = info.max_msg;
	st->chan.wakeup = info.wakeup;
	st->chan.flags = info.flags & RBUS_REGION_HUGETLB ? RBUS_BROKER_HUGETLB : 0;
	st->chan.region_size = info.size;
	st->chan.created_ns = info.created_ns;
	st->head = info.head;
	st->tail = info.tail;
	st->prod_attached = info.producers;
	st->cons_attached = info.consumers;
	st->data_sleepers = ws.data_sleepers;
	st->space_sleepers = ws.space_sleepers;
	st->data_sleeps = ws.data_sleeps;
	st->data_wakes = ws.data_wakes;
	st->data_blind = ws.data_blind;
	st->space_sleeps = ws.space_sleeps;
	st->space_wakes = ws.space_wakes;
	st->space_blind = ws.space_blind;
	res = resident_of(rbus_region_fd(r), info.size);
	st->resident = res > 0 ? (uint64_t)res : 0;
	v->start_index = info.start_index;
	v->slot_size = info.slot_size;
	v->abi_version = info.abi_version;
	v->creator_pid = info.creator_pid;
	return 0;
}

static const char *role_name(enum rbus_role r)
{
	return r == RBUS_PRODUCER ? "producer" : r == RBUS_CONSUMER ? "consumer" : "?";
}

static void fmt_time(char *buf, size_t len, uint64_t ns)
{
	time_t t = (time_t)(ns / 1000000000u);
	struct tm tm;

	if (!ns || !localtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm))
		snprintf(buf, len, "-");
}

/* Rates between two views @dt_ns apart (both from the same source). */
struct rates {
	bool have;
	double in, out, wakes, sleeps;
};

static void print_text(const char *name, const struct view *v, const struct rates *rt)
{
	const struct rbus_broker_stat *st = &v->st;
	const struct rbus_broker_entry *e = &st->chan;
	uint64_t fill = st->tail - st->head;
	char a[32], b[32], t[32], mode[10];

	printf("channel   %s (%s)\n", name, v->source);
	printf("kind      %s, wakeup %s%s%s\n", rb_kind_name(e->kind),
	       rb_wakeup_name(e->wakeup), e->flags & RBUS_BROKER_HUGETLB ? ", huge pages" : "",
	       e->flags & RBUS_BROKER_PERSISTENT ? ", persistent" : "");
	printf("geometry  %u slots of up to %u bytes", e->capacity, e->max_msg);
	if (v->slot_size)
		printf(" (slot %u bytes)", v->slot_size);
	printf("\n");
	if (v->broker) {
		mode_string(e->mode, mode);
		fmt_time(t, sizeof(t), e->created_ns);
		printf("backend   memfd from ringbusd, id %" PRIu64 ", created %s\n", e->id, t);
		printf("owner     uid %u gid %u mode %s (%04o)\n", e->owner_uid, e->owner_gid,
		       mode, e->mode);
	} else {
		fmt_time(t, sizeof(t), e->created_ns);
		printf("backend   %s, ABI %u, created %s by pid %d\n", v->source,
		       v->abi_version, t, (int)v->creator_pid);
	}
	printf("fill      %" PRIu64 " of %u (%.1f %%)\n", fill, e->capacity,
	       e->capacity ? 100.0 * (double)fill / e->capacity : 0.0);
	printf("messages  in %" PRIu64 ", out %" PRIu64, st->tail - v->start_index,
	       st->head - v->start_index);
	if (rt->have)
		printf("  (%s/s in, %s/s out)", rb_fmt_count(a, sizeof(a), rt->in),
		       rb_fmt_count(b, sizeof(b), rt->out));
	printf("\n");
	printf("attached  %u producer%s, %u consumer%s\n", st->prod_attached,
	       st->prod_attached == 1 ? "" : "s", st->cons_attached,
	       st->cons_attached == 1 ? "" : "s");
	if (v->broker) {
		printf("holders   %u", st->holders_total);
		if (st->holders_total > st->nholders)
			printf(" (first %u shown)", st->nholders);
		printf("\n");
		for (uint32_t i = 0; i < st->nholders; i++)
			printf("          pid %-8d uid %-6u %s\n", (int)st->holders[i].pid,
			       st->holders[i].uid, role_name(st->holders[i].role));
	}
	printf("sleepers  %u consumers, %u producers now\n", st->data_sleepers,
	       st->space_sleepers);
	printf("wakeups   consumers: %" PRIu64 " sleeps, %" PRIu64 " wake calls (%" PRIu64
	       " blind)\n", st->data_sleeps, st->data_wakes, st->data_blind);
	printf("          producers: %" PRIu64 " sleeps, %" PRIu64 " wake calls (%" PRIu64
	       " blind)\n", st->space_sleeps, st->space_wakes, st->space_blind);
	if (rt->have)
		printf("          %s sleeps/s, %s wake calls/s\n",
		       rb_fmt_count(a, sizeof(a), rt->sleeps),
		       rb_fmt_count(b, sizeof(b), rt->wakes));
	if (v->broker)
		printf("roles     %" PRIu64 " opened, %" PRIu64 " holders died, %" PRIu64
		       " roles recovered\n", st->opens, st->deaths, st->recovered);
	printf("memory    %s, %s resident\n", rb_fmt_bytes(a, sizeof(a), e->region_size),
	       rb_fmt_bytes(b, sizeof(b), st->resident));
}

static void print_json(const char *name, const struct view *v, const struct rates *rt)
{
	const struct rbus_broker_stat *st = &v->st;
	struct rb_json j;

	rb_json_init(&j, stdout);
	rb_json_open(&j, NULL, '{');
	if (v->broker) {
		json_entry(&j, &st->chan);
		rb_json_str(&j, "source", "broker");
	} else {
		rb_json_str(&j, "name", name);
		rb_json_str(&j, "source", v->source);
		rb_json_str(&j, "kind", rb_kind_name(st->chan.kind));
		rb_json_str(&j, "wakeup", rb_wakeup_name(st->chan.wakeup));
		rb_json_u64(&j, "capacity", st->chan.capacity);
		rb_json_u64(&j, "max_msg", st->chan.max_msg);
		rb_json_u64(&j, "slot_size", v->slot_size);
		rb_json_u64(&j, "region_size", st->chan.region_size);
		rb_json_u64(&j, "abi_version", v->abi_version);
		rb_json_i64(&j, "creator_pid", v->creator_pid);
		rb_json_u64(&j, "created_ns", st->chan.created_ns);
	}
	rb_json_u64(&j, "head", st->head);
	rb_json_u64(&j, "tail", st->tail);
	rb_json_u64(&j, "fill", st->tail - st->head);
	rb_json_u64(&j, "messages_in", st->tail - v->start_index);
	rb_json_u64(&j, "messages_out", st->head - v->start_index);
	rb_json_u64(&j, "producers_attached", st->prod_attached);
	rb_json_u64(&j, "consumers_attached", st->cons_attached);
	rb_json_u64(&j, "data_sleepers", st->data_sleepers);
	rb_json_u64(&j, "space_sleepers", st->space_sleepers);
	rb_json_u64(&j, "data_sleeps", st->data_sleeps);
	rb_json_u64(&j, "data_wakes", st->data_wakes);
	rb_json_u64(&j, "data_blind", st->data_blind);
	rb_json_u64(&j, "space_sleeps", st->space_sleeps);
	rb_json_u64(&j, "space_wakes", st->space_wakes);
	rb_json_u64(&j, "space_blind", st->space_blind);
	rb_json_u64(&j, "resident", st->resident);
	if (v->broker) {
		rb_json_u64(&j, "opens", st->opens);
		rb_json_u64(&j, "deaths", st->deaths);
		rb_json_u64(&j, "recovered", st->recovered);
		rb_json_u64(&j, "holders_total", st->holders_total);
		rb_json_open(&j, "holders", '[');
		for (uint32_t i = 0; i < st->nholders; i++) {
			rb_json_open(&j, NULL, '{');
			rb_json_i64(&j, "pid", st->holders[i].pid);
			rb_json_u64(&j, "uid", st->holders[i].uid);
			rb_json_str(&j, "role", role_name(st->holders[i].role));
			rb_json_close(&j, '}');
		}
		rb_json_close(&j, ']');
	}
	if (rt->have) {
		rb_json_open(&j, "rates", '{');
		rb_json_f64(&j, "in_per_s", rt->in);
		rb_json_f64(&j, "out_per_s", rt->out);
		rb_json_f64(&j, "sleeps_per_s", rt->sleeps);
		rb_json_f64(&j, "wakes_per_s", rt->wakes);
		rb_json_close(&j, '}');
	}
	rb_json_close(&j, '}');
	rb_json_end(&j);
}

/* Read @name (broker) or the region into @v.  Returns 0 or an exit status. */
static int take_view(struct rbus_broker *b, const char *name, struct rbus_region *r,
		     struct view *v)
{
	int e;

	if (!b)
		return view_region(r, v);
	e = rbus_broker_stat(b, name, &v->st);
	if (e == 0)
		return 0;
	switch (e) {
	case -ENOENT:
		rb_err("no channel '%s' in the broker", name);
		break;
	case -EACCES:
		rb_err("channel '%s': permission refused (neither role allowed to uid %u, "
		       "and not its owner)", name, (unsigned)getuid());
		break;
	default:
		rb_err("channel '%s': %s", name, rbus_strerror(e));
	}
	return rb_broker_exit(e);
}

int cmd_stat(int argc, char **argv)
{
	enum { OPT_FD = 256, OPT_SHM };
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "fd", required_argument, NULL, OPT_FD },
		{ "shm", required_argument, NULL, OPT_SHM },
		{ "json", no_argument, NULL, 'j' },
		{ "watch", no_argument, NULL, 'w' },
		{ "interval", required_argument, NULL, 'i' },
		{ "count", required_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *socket = NULL, *shm = NULL, *name = NULL;
	bool json = false, watch = false;
	int64_t interval_ns = 1000000000;
	uint64_t count = 0, fd64 = 0;
	int fd = -1, c, status = RB_EXIT_OK;
	struct rbus_broker *b = NULL;
	struct rbus_region *r = NULL;
	struct view prev = { 0 }, cur;
	sigset_t stop_set;
	uint64_t prev_t = 0;
	char source[96];

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":s:jwi:n:h", opts, NULL)) != -1) {
		switch (c) {
		case 's': socket = optarg; break;
		case OPT_FD:
			if (rb_parse_u64("--fd", optarg, 0, INT32_MAX, &fd64))
				return RB_EXIT_USAGE;
			fd = (int)fd64;
			break;
		case OPT_SHM: shm = optarg; break;
		case 'j': json = true; break;
		case 'w': watch = true; break;
		case 'i':
			if (rb_parse_seconds("--interval", optarg, 10000000, &interval_ns))
				return RB_EXIT_USAGE;
			break;
		case 'n':
			if (rb_parse_u64("--count", optarg, 1, UINT64_MAX, &count))
				return RB_EXIT_USAGE;
			break;
		case 'h': stat_usage(stdout); return RB_EXIT_OK;
		case ':': return rb_usage_err("option '%s' needs a value", argv[optind - 1]);
		default: return rb_bad_option(opts, argv[optind - 1]);
		}
	}
	if (optind < argc)
		name = argv[optind++];
	if (optind < argc)
		return rb_usage_err("unexpected argument '%s'", argv[optind]);
	if ((fd >= 0) + (shm != NULL) + (name != NULL) > 1)
		return rb_usage_err("give either a CHANNEL or --fd or --shm, not several");
	if (fd < 0 && !shm && !name)
		return rb_usage_err("no channel given (CHANNEL, --fd FD or --shm NAME)");
	if (name && rb_check_name(name))
		return RB_EXIT_USAGE;
	if (!count)
		count = watch ? UINT64_MAX : 1;

	memset(&cur, 0, sizeof(cur));
	if (name) {
		status = rb_connect(socket, &b);
		if (status)
			return status;
		cur.broker = true;
		cur.source = "broker";
	} else {
		int e;

		if (fd >= 0) {
			e = rbus_region_attach_fd(fd, RBUS_ATTACH_UNSEALED, &r);
			snprintf(source, sizeof(source), "fd %d", fd);
		} else {
			e = rbus_region_attach_shm(shm, 0, &r);
			snprintf(source, sizeof(source), "shm %s", shm);
		}
		if (e) {
			rb_err("%s: %s%s", source, e == -EBADF ? "not an open file descriptor" :
			       rbus_strerror(e), e == -EACCES && fd >= 0 ?
			       " (the region is mapped read-write: open the fd so, 3<>)" :
			       e == -EINVAL ? " (not a mappable file, or a region of the eventfd"
			       " wakeup backend, which cannot be read without its eventfds: ask"
			       " the broker)" : "");
			return e == -ENOENT ? RB_EXIT_NOCHAN :
			       e == -EACCES || e == -EPERM ? RB_EXIT_PERM : RB_EXIT_FAIL;
		}
		name = source;
		cur.source = source;
	}
	/* --watch: SIGINT and SIGTERM stay blocked and are taken by the
	 * wait between refreshes, so one that comes while a refresh is drawn
	 * is not lost to a whole interval. */
	sigemptyset(&stop_set);
	sigaddset(&stop_set, SIGINT);
	sigaddset(&stop_set, SIGTERM);
	if (watch && count > 1)
		sigprocmask(SIG_BLOCK, &stop_set, NULL);
	for (uint64_t i = 0; i < count; i++) {
		struct rates rt = { 0 };
		uint64_t now;

		status = take_view(b, name, r, &cur);
		if (status)
			break;
		now = rb_now_ns();
		/* A channel removed and made again under the name (a new id) or
		 * counters that went down: no rates across that. */
		if (i > 0 && now > prev_t && cur.st.chan.id == prev.st.chan.id &&
		    cur.st.tail >= prev.st.tail && cur.st.head >= prev.st.head &&
		    cur.st.data_sleeps + cur.st.space_sleeps >=
		    prev.st.data_sleeps + prev.st.space_sleeps &&
		    cur.st.data_wakes + cur.st.space_wakes >=
		    prev.st.data_wakes + prev.st.space_wakes) {
			double dt = (double)(now - prev_t) / 1e9;

			rt.have = true;
			rt.in = (double)(cur.st.tail - prev.st.tail) / dt;
			rt.out = (double)(cur.st.head - prev.st.head) / dt;
			rt.sleeps = (double)(cur.st.data_sleeps + cur.st.space_sleeps -
					     prev.st.data_sleeps - prev.st.space_sleeps) / dt;
			rt.wakes = (double)(cur.st.data_wakes + cur.st.space_wakes -
					    prev.st.data_wakes - prev.st.space_wakes) / dt;
		}
		if (json) {
			print_json(name, &cur, &rt);
		} else {
			if (watch && isatty(STDOUT_FILENO))
				fputs("\033[H\033[2J", stdout);  /* home, clear */
			else if (i > 0)
				putchar('\n');
			print_text(name, &cur, &rt);
			if (watch && isatty(STDOUT_FILENO))
				printf("\n(every %.2g s; Ctrl-C to stop)\n", (double)interval_ns / 1e9);
		}
		if (fflush(stdout)) {
			status = RB_EXIT_FAIL;
			break;
		}
		prev = cur;
		prev_t = now;
		if (i + 1 < count) {
			struct timespec ts = { .tv_sec = interval_ns / 1000000000,
					       .tv_nsec = interval_ns % 1000000000 };

			if (!watch)
				nanosleep(&ts, NULL);
			else if (sigtimedwait(&stop_set, NULL, &ts) > 0)
				break;  /* Ctrl-C: a clean stop */
		}
	}
	rbus_broker_close(b);
	rbus_region_close(r);
	return status;
}
