/* SPDX-License-Identifier: MIT */
/*
 * cmd_pubsub.c - ringbus pub and ringbus sub: a channel as a pipe between
 * shell commands.
 *
 *   producer | ringbus pub [OPTIONS] CHANNEL
 *   ringbus sub [OPTIONS] CHANNEL | consumer
 *
 * Framing.  --lines (one message per line), --binary (4-byte little-endian
 * length, then the bytes; sub writes the same framing back) and --raw
 * (pub cuts its input as read into messages of at most max_msg bytes, sub
 * writes payloads back to back).
 *
 * Starting order does not matter.  The library waits on a fresh channel
 * whose other role has never been opened, but gives -EPIPE ("the peer hung
 * up") as soon as the other role was opened once and is not attached now,
 * e.g. on a persistent channel a previous consumer left.  So each side
 * keeps a flag, "peer seen": the other role was attached (producers or
 * consumers > 0 in rbus_region_info()) or its ring index moved since we
 * opened, or (sub) we created the channel.  -EPIPE before the peer was seen means "nobody yet": poll for one
 * every POLL_NS; -EPIPE after it means "the peer hung up": the end of the
 * stream for sub, a quiet stop for pub.  While both sides are attached,
 * only the library's blocking _wait calls are used.
 *
 * The data path.  pub reads standard input into a large buffer, points
 * iovecs at the messages in it and sends them with rbus_send_batch_wait()
 * (one index update per batch) before it reads again: a message is sent as
 * soon as its end has been read, so interactive use is line by line.  sub
 * takes messages with rbus_peek_batch() (zero-copy: straight from the ring
 * into the output buffer), releases them once copied, and flushes its
 * output before it blocks on an empty ring.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/uio.h>

#include "cli.h"

#define BATCH     256u                  /* messages per index update */
/* Lines of logs and text often pass the library's 256-byte default: the
 * command creates channels for 4 KiB messages (4 MiB with 1024 slots). */
#define PUBSUB_DEFAULT_MAX_MSG 4096u
#define IN_CHUNK  (1u << 20)            /* pub: bytes asked of each read() */
#define OUT_BUF   (256u << 10)          /* sub: output buffer */
#define POLL_NS   (10 * 1000000LL)      /* waiting for the other side to appear */
/* pub: how far past max_msg a too-long line is measured before giving up */
#define MEASURE_MAX (16u << 20)

enum framing { FRAME_LINES, FRAME_BINARY, FRAME_RAW };

static const char *const framing_name[] = { "--lines", "--binary", "--raw" };

/* Creation options given on the command line (to warn when an existing
 * channel differs from them). */
enum {
	SET_KIND = 1u << 0,
	SET_CAPACITY = 1u << 1,
	SET_MAX_MSG = 1u << 2,
	SET_WAKEUP = 1u << 3,
	SET_MODE = 1u << 4,
	SET_PERSISTENT = 1u << 5,
};

struct opts {
	const char *socket;
	const char *channel;
	enum framing framing;
	bool framing_set;
	uint64_t count;             /* 0: no limit */
	int64_t timeout_ns;         /* < 0: wait forever */
	bool no_create;
	unsigned set;               /* SET_* */
	struct rbus_broker_create_opts create;
};

enum {
	OPT_SOCKET = 256,
	OPT_LINES,
	OPT_BINARY,
	OPT_RAW,
	OPT_COUNT,
	OPT_TIMEOUT,
	OPT_NO_CREATE,
	OPT_KIND,
	OPT_CAPACITY,
	OPT_MAX_MSG,
	OPT_WAKEUP,
	OPT_MODE,
	OPT_PERSISTENT,
};

static const struct option long_opts[] = {
	{ "socket", required_argument, NULL, OPT_SOCKET },
	{ "lines", no_argument, NULL, OPT_LINES },
	{ "binary", no_argument, NULL, OPT_BINARY },
	{ "raw", no_argument, NULL, OPT_RAW },
	{ "count", required_argument, NULL, OPT_COUNT },
	{ "timeout", required_argument, NULL, OPT_TIMEOUT },
	{ "no-create", no_argument, NULL, OPT_NO_CREATE },
	{ "kind", required_argument, NULL, OPT_KIND },
	{ "capacity", required_argument, NULL, OPT_CAPACITY },
	{ "max-msg", required_argument, NULL, OPT_MAX_MSG },
	{ "wakeup", required_argument, NULL, OPT_WAKEUP },
	{ "mode", required_argument, NULL, OPT_MODE },
	{ "persistent", no_argument, NULL, OPT_PERSISTENT },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/* ---- help ----------------------------------------------------------------- */

static void help_common(FILE *f)
{
	fprintf(f,
		"  --socket PATH        the broker's socket (default: $RINGBUS_SOCKET, else\n"
		"                       $XDG_RUNTIME_DIR/ringbus/ringbusd.sock, else\n"
		"                       /run/ringbus/ringbusd.sock)\n"
		"  --no-create          do not create CHANNEL: exit 4 if it does not exist\n"
		"  -h, --help           show this help and exit\n"
		"\n"
		"Creating CHANNEL.  If it does not exist, pub and sub create it (either may\n"
		"win the race; the other opens it).  These apply only then; if CHANNEL exists\n"
		"with a different kind, capacity, max message or wakeup, a warning says so and\n"
		"the channel is used as it is:\n"
		"  --kind spsc|mpmc     one producer and one consumer at a time, or any\n"
		"                       number of each (default: spsc)\n"
		"  --capacity N         slots (messages), a power of two in [%u, %u]\n"
		"                       (default: %u)\n"
		"  --max-msg BYTES      largest message, with an optional k, M or G suffix,\n"
		"                       at most %u MiB (default: %u)\n"
		"  --wakeup futex|eventfd  how sleepers are woken (default: futex)\n"
		"  --mode OCTAL         who may produce (2) and consume (4), for the owner,\n"
		"                       the group and others, as a file's mode (default: 600)\n"
		"  --persistent         keep the channel when no process uses it.  Without\n"
		"                       it the broker removes the channel, with any message\n"
		"                       still in it, when its last user process exits\n"
		"\n",
		RBUS_CAPACITY_MIN, RBUS_CAPACITY_MAX, RBUS_DEFAULT_CAPACITY,
		RBUS_MAX_MSG_LIMIT >> 20, PUBSUB_DEFAULT_MAX_MSG);
}

static void help_pub(FILE *f)
{
	fprintf(f,
		"Usage: ringbus pub [OPTIONS] CHANNEL\n"
		"Send standard input to CHANNEL, one message at a time, as soon as each\n"
		"message has been read.\n"
		"\n"
		"Framing of standard input (one of):\n"
		"  --lines              one message per line, without its newline; a last\n"
		"                       line without a newline is a message too (default)\n"
		"  --binary             frames: a 4-byte little-endian length, then that many\n"
		"                       bytes (what 'ringbus sub --binary' writes)\n"
		"  --raw                the bytes as read, cut into messages of at most the\n"
		"                       channel's max message size (any file round-trips\n"
		"                       through 'ringbus sub --raw')\n"
		"\n"
		"Options:\n"
		"  --count N            send at most N messages, then exit 0 (default: all)\n"
		"  --timeout SECONDS    give up (exit 6) after waiting that long for room in\n"
		"                       the ring or for a consumer to come (\"5\", \"0.5\",\n"
		"                       \"250ms\", \"1m\"; default: wait forever)\n");
	help_common(f);
	fprintf(f,
		"Either side may start first: when the ring is full and no consumer has come\n"
		"yet, pub waits for one.  At the end of its input pub exits 0; its consumers\n"
		"still get every message in the ring, then see the hang-up.  When the\n"
		"consumer side hangs up (after one was attached), pub stops quietly and\n"
		"exits 0, even with input left, as 'yes' stops in 'yes | head'.\n"
		"A message longer than the channel's max message, or a truncated frame at the\n"
		"end of --binary input, is an error (exit 1), reported after every message\n"
		"before it was sent.\n"
		"\n"
		"Exit status: 0 end of input, --count reached, or the consumers hung up;\n"
		"1 failed (message too long, truncated frame, the SPSC producer role taken,\n"
		"a read error); 2 bad usage; 3 no broker; 4 no such channel (--no-create);\n"
		"5 permission refused; 6 --timeout ran out.\n");
}

static void help_sub(FILE *f)
{
	fprintf(f,
		"Usage: ringbus sub [OPTIONS] CHANNEL\n"
		"Write the messages of CHANNEL to standard output, until its producers hang\n"
		"up and the ring is drained.\n"
		"\n"
		"Framing of standard output (one of):\n"
		"  --lines              each message, then a newline (default)\n"
		"  --binary             frames: a 4-byte little-endian length, then the\n"
		"                       message (what 'ringbus pub --binary' reads)\n"
		"  --raw                the messages back to back, nothing between them\n"
		"\n"
		"Options:\n"
		"  --count N            exit 0 after N messages (default: no limit)\n"
		"  --timeout SECONDS    exit 6 when no message came for that long (\"5\",\n"
		"                       \"0.5\", \"250ms\", \"1m\"; default: wait forever)\n");
	help_common(f);
	fprintf(f,
		"Either side may start first: when the ring is empty and no producer has been\n"
		"attached since sub started, sub waits for one; messages a producer left in\n"
		"a persistent channel are delivered, then sub waits for the next producer.\n"
		"sub exits 0 when the producer side hangs up (the last producer exits or\n"
		"closes) and every message is written.  Output is buffered and flushed\n"
		"whenever the ring is empty.  If standard output is closed (as by\n"
		"'ringbus sub CHANNEL | head'), sub exits 0 quietly; messages it had taken\n"
		"but not yet written are lost.\n"
		"\n"
		"Exit status: 0 the producers hung up and the ring is drained, --count\n"
		"reached, or standard output closed; 1 failed (the SPSC consumer role taken,\n"
		"a write error); 2 bad usage; 3 no broker; 4 no such channel (--no-create);\n"
		"5 permission refused; 6 --timeout ran out.\n");
}

/* ---- options -------------------------------------------------------------- */

static bool valid_name(const char *s)
{
	size_t n = strlen(s);

	if (n < 1 || n > RBUS_NAME_MAX || s[0] == '.' || s[0] == '-')
		return false;
	for (const char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' || *p == '-'))
			return false;
	return true;
}

static int parse_mode(const char *opt, const char *s, uint32_t *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	if (!*s || *s == '-' || *s == '+')
		goto bad;
	v = strtoul(s, &end, 8);
	if (errno || *end)
		goto bad;
	if (v & ~0666ul) {
		rb_usage_err("%s: %s has bits other than read (4) and write (2)", opt, s);
		return -1;
	}
	*out = (uint32_t)v;
	return 0;
bad:
	rb_usage_err("%s: '%s' is not an octal mode (like 600 or 660)", opt, s);
	return -1;
}

static int set_framing(struct opts *o, enum framing f)
{
	if (o->framing_set && o->framing != f)
		return rb_usage_err("%s and %s exclude each other", framing_name[o->framing],
				    framing_name[f]);
	o->framing = f;
	o->framing_set = true;
	return 0;
}

/* Returns -1 to go on, or the exit status. */
static int parse_args(int argc, char **argv, struct opts *o,
		      void (*help)(FILE *))
{
	uint64_t v;
	int c;

	memset(o, 0, sizeof(*o));
	o->timeout_ns = -1;
	rbus_broker_create_opts_init(&o->create);
	o->create.max_msg = PUBSUB_DEFAULT_MAX_MSG;
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, ":h", long_opts, NULL)) != -1) {
		const char *name = argv[optind - 1];

		switch (c) {
		case 'h':
			help(stdout);
			return RB_EXIT_OK;
		case OPT_SOCKET:
			o->socket = optarg;
			break;
		case OPT_LINES:
		case OPT_BINARY:
		case OPT_RAW:
			if (set_framing(o, c == OPT_LINES ? FRAME_LINES :
					c == OPT_BINARY ? FRAME_BINARY : FRAME_RAW))
				return RB_EXIT_USAGE;
			break;
		case OPT_COUNT:
			if (rb_parse_u64("--count", optarg, 1, UINT64_MAX, &o->count))
				return RB_EXIT_USAGE;
			break;
		case OPT_TIMEOUT:
			if (rb_parse_seconds("--timeout", optarg, 1000000, &o->timeout_ns))
				return RB_EXIT_USAGE;
			break;
		case OPT_NO_CREATE:
			o->no_create = true;
			break;
		case OPT_KIND:
			if (rb_parse_kind("--kind", optarg, &o->create.kind))
				return RB_EXIT_USAGE;
			o->set |= SET_KIND;
			break;
		case OPT_CAPACITY:
			if (rb_parse_pow2("--capacity", optarg, RBUS_CAPACITY_MIN,
					  RBUS_CAPACITY_MAX, &v))
				return RB_EXIT_USAGE;
			o->create.capacity = (uint32_t)v;
			o->set |= SET_CAPACITY;
			break;
		case OPT_MAX_MSG:
			if (rb_parse_size("--max-msg", optarg, 0, RBUS_MAX_MSG_LIMIT, &v))
				return RB_EXIT_USAGE;
			o->create.max_msg = (uint32_t)v;
			o->set |= SET_MAX_MSG;
			break;
		case OPT_WAKEUP:
			if (rb_parse_wakeup("--wakeup", optarg, &o->create.wakeup))
				return RB_EXIT_USAGE;
			o->set |= SET_WAKEUP;
			break;
		case OPT_MODE:
			if (parse_mode("--mode", optarg, &o->create.mode))
				return RB_EXIT_USAGE;
			o->set |= SET_MODE;
			break;
		case OPT_PERSISTENT:
			o->create.flags |= RBUS_BROKER_PERSISTENT;
			o->set |= SET_PERSISTENT;
			break;
		case ':':
			return rb_usage_err("option '%s' needs an argument", name);
		default:
			if (optopt && optopt < 256)
				return rb_usage_err("unknown option '-%c'", optopt);
			return rb_usage_err("unknown option '%s'", name);
		}
	}
	if (optind >= argc)
		return rb_usage_err("no channel given");
	if (optind + 1 < argc)
		return rb_usage_err("unexpected argument '%s'", argv[optind + 1]);
	o->channel = argv[optind];
	if (!valid_name(o->channel))
		return rb_usage_err("'%s' is not a channel name (1 to %u of A-Z a-z 0-9 . _ -, "
				    "not starting with . or -)", o->channel, RBUS_NAME_MAX);
	return -1;
}

/* ---- the channel ---------------------------------------------------------- */

static int64_t deadline(const struct opts *o)
{
	return o->timeout_ns < 0 ? RBUS_FOREVER : rbus_deadline_in(o->timeout_ns);
}

static const char *fmt_timeout(const struct opts *o, char *buf, size_t len)
{
	return rb_fmt_ns(buf, len, (uint64_t)o->timeout_ns);
}

/* Sleep POLL_NS, or until @dl if that comes first.  Returns -ETIMEDOUT when
 * @dl has passed. */
static int poll_pause(int64_t dl)
{
	int64_t now = rbus_now(), ns = POLL_NS;
	struct timespec ts;

	if (now >= dl)
		return -ETIMEDOUT;
	if (dl - now < ns)
		ns = dl - now;
	ts.tv_sec = ns / 1000000000;
	ts.tv_nsec = ns % 1000000000;
	nanosleep(&ts, NULL);  /* EINTR: just look again */
	return 0;
}

/* The channel existed: say which of the creation options given it does not
 * match (they were not applied). */
static void warn_differs(const struct opts *o, const struct rbus_broker_entry *e)
{
	const struct rbus_broker_create_opts *c = &o->create;

	if ((o->set & SET_KIND) && e->kind != c->kind)
		rb_err("channel %s exists as %s, not %s: --kind ignored", o->channel,
		       rb_kind_name(e->kind), rb_kind_name(c->kind));
	if ((o->set & SET_CAPACITY) && e->capacity != c->capacity)
		rb_err("channel %s exists with capacity %u, not %u: --capacity ignored",
		       o->channel, e->capacity, c->capacity);
	if ((o->set & SET_MAX_MSG) && e->max_msg != c->max_msg)
		rb_err("channel %s exists with max message %u bytes, not %u: --max-msg ignored",
		       o->channel, e->max_msg, c->max_msg);
	if ((o->set & SET_WAKEUP) && e->wakeup != c->wakeup)
		rb_err("channel %s exists with wakeup %s, not %s: --wakeup ignored",
		       o->channel, rb_wakeup_name(e->wakeup), rb_wakeup_name(c->wakeup));
	if ((o->set & SET_MODE) && e->mode != c->mode)
		rb_err("channel %s exists with mode %03o, not %03o: --mode ignored",
		       o->channel, e->mode, c->mode);
	if ((o->set & SET_PERSISTENT) && !(e->flags & RBUS_BROKER_PERSISTENT))
		rb_err("channel %s exists and is not persistent: --persistent ignored",
		       o->channel);
}

/*
 * Take @role on the channel, creating it first if needed (and allowed).
 * The connection is closed again: the handle does not need it, and the
 * broker watches this process, not the connection.  Returns 0 or the exit
 * status, having said why.
 */
/* Open CHANNEL as role, creating it unless --no-create; *created_out (if
 * not NULL) says whether this call created it. */
static int open_channel(const struct opts *o, enum rbus_role role,
			struct rbus_channel **out, bool *created_out)
{
	const char *what = role == RBUS_PRODUCER ? "producer" : "consumer";
	struct rbus_broker *b;
	struct rbus_broker_stat *st;
	bool created = false;
	int rc, r;

	rc = rb_connect(o->socket, &b);
	if (rc)
		return rc;
	/* A non-persistent channel someone else created can vanish between
	 * our -EEXIST and our open (its users all exited): try again. */
	for (int attempt = 0;; attempt++) {
		r = rbus_broker_open(b, o->channel, role, 0, out);
		if (r != -ENOENT || o->no_create || attempt == 3)
			break;
		r = rbus_broker_create(b, o->channel, &o->create, NULL);
		if (r == 0) {
			created = true;
		} else if (r != -EEXIST) {
			rb_err("channel %s: cannot create it: %s", o->channel, rbus_strerror(r));
			rbus_broker_close(b);
			return r == -EINVAL ? RB_EXIT_FAIL : rb_broker_exit(r);
		}
	}
	/* Only when options were given: a stat is a round trip and a few KiB.
	 * Best effort: a channel gone meanwhile needs no warning. */
	if (r == 0 && !created && o->set && (st = malloc(sizeof(*st)))) {
		if (rbus_broker_stat(b, o->channel, st) == 0)
			warn_differs(o, &st->chan);
		free(st);
	}
	rbus_broker_close(b);
	if (created_out)
		*created_out = created;
	switch (r) {
	case 0:
		break;
	case -ENOENT:
		rb_err("channel %s: no such channel%s", o->channel,
		       o->no_create ? " (--no-create)" : "");
		return RB_EXIT_NOCHAN;
	case -EBUSY:
		rb_err("channel %s already has a %s (an spsc channel takes one at a time)",
		       o->channel, what);
		return RB_EXIT_FAIL;
	case -EACCES:
	case -EPERM:
		rb_err("channel %s: permission denied: the channel's mode does not let "
		       "this user be a %s", o->channel, what);
		return RB_EXIT_PERM;
	default:
		rb_err("channel %s: cannot open it as %s: %s", o->channel, what,
		       rbus_strerror(r));
		return rb_broker_exit(r);
	}
	return 0;
}

/* ---- pub ------------------------------------------------------------------- */

/* Besides exit statuses (>= 0): go on, or stop with status 0. */
enum { PUB_GO = -1, PUB_STOP = -2 };

struct pub {
	const struct opts *o;
	struct rbus_channel *ch;
	size_t max_msg;
	uint64_t head0;             /* consumer index when we opened */
	bool peer_seen;
	uint64_t sent;              /* messages sent, and counted in n */
	uint64_t limit;             /* --count, or UINT64_MAX */
	uint64_t msgno;             /* number of the last message framed */
	struct iovec iov[BATCH];
	unsigned n;
	char *buf;                  /* input: [0, len) read, [off, len) not framed */
	size_t cap, len, off;
	bool eof;
};

static bool consumer_seen(struct pub *p)
{
	struct rbus_region_info in;

	if (!p->peer_seen) {
		rbus_region_info(rbus_channel_region(p->ch), &in);
		p->peer_seen = in.consumers > 0 || in.head != p->head0;
	}
	return p->peer_seen;
}

/* Send the batch.  Returns PUB_GO, PUB_STOP (the consumers hung up), or an
 * exit status. */
static int pub_flush(struct pub *p)
{
	char tb[32];
	unsigned done = 0;
	int64_t dl = deadline(p->o);

	while (done < p->n) {
		int r = rbus_send_batch_wait(p->ch, p->iov + done, p->n - done, dl);

		if (r > 0) {
			done += (unsigned)r;
			dl = deadline(p->o);
			continue;
		}
		if (r == -EPIPE) {
			if (consumer_seen(p)) {
				p->n = 0;
				return PUB_STOP;
			}
			/* A consumer was attached once, before we came, and is
			 * gone: wait for the next. */
			while (!consumer_seen(p))
				if (poll_pause(dl)) {
					rb_err("channel %s: no consumer came within %s (--timeout)",
					       p->o->channel, fmt_timeout(p->o, tb, sizeof(tb)));
					return RB_EXIT_TIMEOUT;
				}
			continue;
		}
		if (r == -ETIMEDOUT) {
			rb_err("channel %s: %s within %s (--timeout)", p->o->channel,
			       consumer_seen(p) ? "no room in the ring" : "no consumer came",
			       fmt_timeout(p->o, tb, sizeof(tb)));
			return RB_EXIT_TIMEOUT;
		}
		rb_err("channel %s: sending: %s", p->o->channel, rbus_strerror(r));
		return RB_EXIT_FAIL;
	}
	p->n = 0;
	return PUB_GO;
}

/* Queue one message (flushing a full batch).  Returns PUB_GO, PUB_STOP
 * (also when --count is reached) or an exit status. */
static int pub_add(struct pub *p, const void *base, size_t len)
{
	int r;

	p->iov[p->n++] = (struct iovec){ .iov_base = (void *)base, .iov_len = len };
	p->sent++;
	if (p->sent == p->limit)
		return (r = pub_flush(p)) == PUB_GO ? PUB_STOP : r;
	if (p->n == BATCH)
		return pub_flush(p);
	return PUB_GO;
}

/* Read more input after [off, len), moving that to the front first.
 * Returns the bytes read (0 at the end of input), or -1 (said why). */
static ssize_t pub_read(struct pub *p)
{
	ssize_t r;

	if (p->off) {
		memmove(p->buf, p->buf + p->off, p->len - p->off);
		p->len -= p->off;
		p->off = 0;
	}
	do
		r = read(STDIN_FILENO, p->buf + p->len, p->cap - p->len);
	while (r < 0 && errno == EINTR);
	if (r < 0) {
		rb_err("channel %s: reading standard input: %s", p->o->channel, strerror(errno));
		return -1;
	}
	if (r == 0)
		p->eof = true;
	p->len += (size_t)r;
	return r;
}

static int too_long(struct pub *p, const char *unit, uint64_t no, uint64_t len,
		    bool at_least)
{
	rb_err("channel %s: %s %" PRIu64 " is %s%" PRIu64 " bytes, longer than the "
	       "channel's max message of %zu bytes (see --max-msg)", p->o->channel, unit,
	       no, at_least ? "more than " : "", len, p->max_msg);
	return RB_EXIT_FAIL;
}

/* Line @no at [off, len) has no newline yet and is longer than max_msg:
 * read on to its end to say how long it is, up to MEASURE_MAX bytes. */
static int line_too_long(struct pub *p, uint64_t no)
{
	uint64_t len = p->len - p->off;

	p->off = p->len;
	while (len <= p->max_msg + (uint64_t)MEASURE_MAX) {
		char *nl;
		ssize_t r = pub_read(p);

		if (r < 0)
			return RB_EXIT_FAIL;
		if (r == 0)
			return too_long(p, "line", no, len, false);
		nl = memchr(p->buf, '\n', p->len);
		if (nl)
			return too_long(p, "line", no, len + (uint64_t)(nl - p->buf), false);
		len += p->len;
		p->off = p->len;
	}
	return too_long(p, "line", no, len, true);
}

/* Frame the messages in [off, len); at the end of input also the last,
 * unterminated one.  Returns PUB_GO, PUB_STOP or an exit status. */
static int pub_lines(struct pub *p)
{
	int r;

	while (p->off < p->len) {
		char *s = p->buf + p->off;
		char *nl = memchr(s, '\n', p->len - p->off);
		size_t n = nl ? (size_t)(nl - s) : p->len - p->off;

		if (n > p->max_msg) {
			if ((r = pub_flush(p)) != PUB_GO)
				return r;
			if (nl || p->eof)
				return too_long(p, "line", p->msgno + 1, n, false);
			return line_too_long(p, p->msgno + 1);
		}
		if (!nl && !p->eof)
			break;
		p->msgno++;
		p->off += n + (nl ? 1 : 0);
		if ((r = pub_add(p, s, n)) != PUB_GO)
			return r;
	}
	return PUB_GO;
}

static uint32_t le32(const char *b)
{
	const unsigned char *u = (const unsigned char *)b;

	return (uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 |
	       (uint32_t)u[3] << 24;
}

static void le32_put(unsigned char *b, uint32_t v)
{
	b[0] = (unsigned char)v;
	b[1] = (unsigned char)(v >> 8);
	b[2] = (unsigned char)(v >> 16);
	b[3] = (unsigned char)(v >> 24);
}

/* Frame the complete frames in [off, len); at the end of input, a partial
 * one is an error. */
static int pub_binary(struct pub *p)
{
	int r;

	while (p->len - p->off >= 4) {
		const char *h = p->buf + p->off;
		uint32_t n = le32(h);

		if (n > p->max_msg) {
			if ((r = pub_flush(p)) != PUB_GO)
				return r;
			return too_long(p, "frame", p->msgno + 1, n, false);
		}
		if (p->len - p->off - 4 < n)
			break;
		p->msgno++;
		p->off += 4 + (size_t)n;
		if ((r = pub_add(p, h + 4, n)) != PUB_GO)
			return r;
	}
	if (p->eof && p->off < p->len) {
		size_t have = p->len - p->off;

		if ((r = pub_flush(p)) != PUB_GO)
			return r;
		if (have < 4)
			rb_err("channel %s: frame %" PRIu64 " is truncated: the input ends "
			       "after %zu of the 4 bytes of its length", p->o->channel,
			       p->msgno + 1, have);
		else
			rb_err("channel %s: frame %" PRIu64 " is truncated: the input ends "
			       "after %zu of its %" PRIu32 " bytes", p->o->channel,
			       p->msgno + 1, have - 4, le32(p->buf + p->off));
		return RB_EXIT_FAIL;
	}
	return PUB_GO;
}

/* Cut [off, len) into messages of at most max_msg bytes, as read. */
static int pub_raw(struct pub *p)
{
	int r;

	while (p->off < p->len) {
		size_t n = p->len - p->off;

		if (n > p->max_msg)
			n = p->max_msg;
		p->msgno++;
		if ((r = pub_add(p, p->buf + p->off, n)) != PUB_GO) {
			p->off += n;
			return r;
		}
		p->off += n;
	}
	return PUB_GO;
}

int cmd_pub(int argc, char **argv)
{
	struct opts o;
	struct pub p = { .o = &o };
	struct rbus_region_info in;
	int rc = parse_args(argc, argv, &o, help_pub);

	if (rc >= 0)
		return rc;
	rc = open_channel(&o, RBUS_PRODUCER, &p.ch, NULL);
	if (rc)
		return rc;
	p.max_msg = rbus_channel_max_msg(p.ch);
	rbus_region_info(rbus_channel_region(p.ch), &in);
	p.head0 = in.head;
	p.peer_seen = in.consumers > 0;
	p.limit = o.count ? o.count : UINT64_MAX;
	if (o.framing == FRAME_RAW && p.max_msg == 0) {
		rb_err("channel %s: its max message is 0 bytes: --raw cannot send anything",
		       o.channel);
		rbus_channel_close(p.ch);
		return RB_EXIT_FAIL;
	}
	/* Room for a whole message (and its length or newline) after the
	 * partial one the last read left, and IN_CHUNK bytes to read. */
	p.cap = IN_CHUNK + p.max_msg + 8;
	p.buf = malloc(p.cap);
	if (!p.buf) {
		rb_err("channel %s: no memory for a %zu-byte input buffer", o.channel, p.cap);
		rbus_channel_close(p.ch);
		return RB_EXIT_FAIL;
	}
	rc = PUB_GO;
	while (rc == PUB_GO && !p.eof) {
		/* Every message read so far has been sent (the batch is
		 * flushed below before each read). */
		if (pub_read(&p) < 0) {
			rc = RB_EXIT_FAIL;
			break;
		}
		rc = o.framing == FRAME_LINES ? pub_lines(&p) :
		     o.framing == FRAME_BINARY ? pub_binary(&p) : pub_raw(&p);
		if (rc == PUB_GO)
			rc = pub_flush(&p);
	}
	if (rc == PUB_GO || rc == PUB_STOP)
		rc = RB_EXIT_OK;
	free(p.buf);
	/* The consumers drain the ring and then see the hang-up. */
	rbus_channel_close(p.ch);
	return rc;
}

/* ---- sub ------------------------------------------------------------------- */

struct sub {
	const struct opts *o;
	struct rbus_channel *ch;
	uint64_t tail0;             /* producer index when we opened */
	bool peer_seen;
	char *buf;                  /* output, [0, len) not yet written */
	size_t len;
	bool out_closed;            /* standard output hung up (EPIPE) */
};

static bool producer_seen(struct sub *s)
{
	struct rbus_region_info in;

	if (!s->peer_seen) {
		rbus_region_info(rbus_channel_region(s->ch), &in);
		s->peer_seen = in.producers > 0 || in.tail != s->tail0;
	}
	return s->peer_seen;
}

/* write(2) all of @iov.  Returns 0, or -1 with out_closed set (EPIPE) or
 * the error said. */
static int write_all(struct sub *s, struct iovec *iov, int n)
{
	while (n > 0) {
		ssize_t w = writev(STDOUT_FILENO, iov, n);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EPIPE)
				s->out_closed = true;
			else
				rb_err("channel %s: writing standard output: %s", s->o->channel,
				       strerror(errno));
			return -1;
		}
		while (n > 0 && (size_t)w >= iov->iov_len) {
			w -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (char *)iov->iov_base + w;
			iov->iov_len -= (size_t)w;
		}
	}
	return 0;
}

static int out_flush(struct sub *s)
{
	struct iovec v = { .iov_base = s->buf, .iov_len = s->len };

	if (!s->len)
		return 0;
	s->len = 0;
	return write_all(s, &v, 1);
}

/* Put @pre (@npre bytes), the payload and @post (@npost bytes) out. */
static int out_msg(struct sub *s, const void *pre, size_t npre, const void *msg,
		   size_t len, const void *post, size_t npost)
{
	size_t all = npre + len + npost;

	if (all > OUT_BUF - s->len && out_flush(s))
		return -1;
	if (all >= OUT_BUF / 2) {
		struct iovec v[3] = {
			{ .iov_base = (void *)pre, .iov_len = npre },
			{ .iov_base = (void *)msg, .iov_len = len },
			{ .iov_base = (void *)post, .iov_len = npost },
		};

		return write_all(s, v, 3);
	}
	/* Each part may be empty, with a NULL pointer: memcpy() must not see it. */
	if (npre)
		memcpy(s->buf + s->len, pre, npre);
	if (len)
		memcpy(s->buf + s->len + npre, msg, len);
	if (npost)
		memcpy(s->buf + s->len + npre + len, post, npost);
	s->len += all;
	return 0;
}

/* Put the @n messages of a peek out in the framing asked for.  A batch of
 * many bytes goes from the ring to write(2) directly, which saves copying it
 * into the buffer; small ones are gathered in the buffer. */
static int out_batch(struct sub *s, const struct iovec *m, int n)
{
	static const size_t extra[] = { [FRAME_LINES] = 1, [FRAME_BINARY] = 4, [FRAME_RAW] = 0 };
	const enum framing f = s->o->framing;
	unsigned char hdr[BATCH][4];
	struct iovec v[2 * BATCH];
	size_t total = 0;
	int k = 0;

	for (int i = 0; i < n; i++)
		total += m[i].iov_len + extra[f];
	if (total < OUT_BUF / 2) {
		for (int i = 0; i < n; i++) {
			const void *pre = NULL, *post = NULL;
			size_t len = m[i].iov_len;

			if (f == FRAME_LINES) {
				post = "\n";
			} else if (f == FRAME_BINARY) {
				le32_put(hdr[i], (uint32_t)len);
				pre = hdr[i];
			}
			if (out_msg(s, pre, pre ? 4 : 0, m[i].iov_base, len, post, post ? 1 : 0))
				return -1;
		}
		return 0;
	}
	if (out_flush(s))
		return -1;
	for (int i = 0; i < n; i++) {
		if (f == FRAME_BINARY) {
			le32_put(hdr[i], (uint32_t)m[i].iov_len);
			v[k++] = (struct iovec){ .iov_base = hdr[i], .iov_len = 4 };
		}
		v[k++] = m[i];
		if (f == FRAME_LINES)
			v[k++] = (struct iovec){ .iov_base = (void *)"\n", .iov_len = 1 };
	}
	return write_all(s, v, k);
}

int cmd_sub(int argc, char **argv)
{
	struct opts o;
	struct sub s = { .o = &o };
	struct rbus_region_info in;
	struct iovec iov[BATCH];
	uint64_t got = 0;
	bool first, created = false;
	int64_t dl;
	char tb[32];
	int rc = parse_args(argc, argv, &o, help_sub);

	if (rc >= 0)
		return rc;
	/* A closed standard output is the reader saying "enough": EPIPE from
	 * write(), not death by SIGPIPE. */
	signal(SIGPIPE, SIG_IGN);
	s.buf = malloc(OUT_BUF);
	if (!s.buf) {
		rb_err("channel %s: no memory for the output buffer", o.channel);
		return RB_EXIT_FAIL;
	}
	rc = open_channel(&o, RBUS_CONSUMER, &s.ch, &created);
	if (rc) {
		free(s.buf);
		return rc;
	}
	rbus_region_info(rbus_channel_region(s.ch), &in);
	s.tail0 = in.tail;
	/* A channel we created had no producer before us, so the flag
	 * starts set: a producer that came and went between our open and
	 * the look above leaves no trace in it (its messages are below
	 * tail0).  On a channel that existed, that window stays open: such
	 * a producer is taken for one that left before we came. */
	s.peer_seen = in.producers > 0 || created;
	first = true;
	dl = deadline(&o);
	rc = -1;
	while (rc < 0) {
		unsigned want = BATCH;
		int n;

		if (o.count && o.count - got < want)
			want = (unsigned)(o.count - got);
		n = rbus_peek_batch(s.ch, iov, want);
		/* The first look tells a fresh channel from one whose
		 * producers left before we came: the library says -EPIPE
		 * for an empty ring only once a producer has been attached
		 * and none is now.  -EAGAIN at first means none has been, or
		 * one is attached now; either way an -EPIPE later means a
		 * producer came and went, even one that sent nothing. */
		if (first && n == -EAGAIN)
			s.peer_seen = true;
		first = false;
		if (n == -EAGAIN) {
			/* About to block: what we have is shown now. */
			if (out_flush(&s))
				goto out;
			n = rbus_peek_batch_wait(s.ch, iov, want, dl);
		}
		if (n > 0) {
			if (out_batch(&s, iov, n))
				goto out;
			rbus_release(s.ch);
			got += (uint64_t)n;
			if (o.count && got == o.count)
				rc = RB_EXIT_OK;
			dl = deadline(&o);
			continue;
		}
		switch (n) {
		case -EPIPE:
			if (producer_seen(&s)) {
				rc = RB_EXIT_OK;  /* hung up, and drained */
				break;
			}
			/* A producer was attached once, before we came, and
			 * is gone: wait for the next. */
			if (out_flush(&s))
				goto out;
			while (!producer_seen(&s))
				if (poll_pause(dl)) {
					n = -ETIMEDOUT;
					break;
				}
			if (n != -ETIMEDOUT)
				break;
			/* fall through */
		case -ETIMEDOUT:
			rb_err("channel %s: no message for %s (--timeout)", o.channel,
			       fmt_timeout(&o, tb, sizeof(tb)));
			rc = RB_EXIT_TIMEOUT;
			break;
		default:
			rb_err("channel %s: receiving: %s", o.channel, rbus_strerror(n));
			rc = RB_EXIT_FAIL;
			break;
		}
	}
	if (out_flush(&s) == 0 || s.out_closed)
		goto done;
	rc = RB_EXIT_FAIL;
	goto done;
out:
	/* Standard output failed: closed (quietly done) or an error (said). */
	rc = s.out_closed ? RB_EXIT_OK : RB_EXIT_FAIL;
done:
	rbus_channel_close(s.ch);
	free(s.buf);
	return rc;
}
