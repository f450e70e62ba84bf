/* SPDX-License-Identifier: MIT */
/*
 * region.c - create, attach and validate shared-memory regions.
 *
 * Creation: memfd (or shm object) -> fallocate (reserves every page, so a
 * full tmpfs is -ENOSPC now, not SIGBUS later) -> seals -> mmap -> header,
 * sides and slot stamps initialised.  The header is built in the private
 * copy and written once, before the fd can reach anyone.
 *
 * Attach: seals -> size -> pread of the header into a private copy ->
 * validation of the copy -> mmap of exactly the validated size -> ring index
 * sanity.  After that, geometry is only ever taken from the private copy.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008U /* Linux 6.3; Debian 12's headers lack it */
#endif
#ifndef MFD_HUGETLB
#define MFD_HUGETLB 0x0004U
#endif

#define RBUS_SEALS_REQUIRED (F_SEAL_SHRINK | F_SEAL_GROW)
#define RBUS_CREATE_FLAGS   (RBUS_REGION_HUGETLB | RBUS_REGION_PREFAULT | RBUS_REGION_MLOCK)
#define RBUS_ATTACH_FLAGS   (RBUS_REGION_PREFAULT | RBUS_REGION_MLOCK | RBUS_ATTACH_UNSEALED)

static bool is_pow2(uint64_t x) { return x && !(x & (x - 1)); }

static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) & ~(a - 1); }

RBUS_EXPORT void rbus_region_opts_init(struct rbus_region_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->kind = RBUS_KIND_SPSC;
	o->capacity = RBUS_DEFAULT_CAPACITY;
	o->max_msg = RBUS_DEFAULT_MAX_MSG;
	o->shm_mode = 0600;
	o->wakeup = RBUS_WAKE_FUTEX;
}

/* The default huge page size, from /proc/meminfo; 2 MiB if unreadable. */
static uint64_t huge_page_size(void)
{
	uint64_t kb = 2048;
	char line[128];
	FILE *f = fopen("/proc/meminfo", "re");

	if (!f)
		return kb << 10;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long v;
		if (sscanf(line, "Hugepagesize: %llu kB", &v) == 1) {
			kb = v;
			break;
		}
	}
	fclose(f);
	return kb << 10;
}

/* A POSIX shm name: "/" then 1..NAME_MAX-1 characters, none of them '/'. */
static int check_shm_name(const char *name)
{
	size_t len;

	if (!name || name[0] != '/')
		return -EINVAL;
	len = strlen(name);
	if (len < 2)
		return -EINVAL;
	if (len > NAME_MAX)
		return -ENAMETOOLONG;
	if (strchr(name + 1, '/'))
		return -EINVAL;
	return 0;
}

/*
 * Validate a header copy.  The order fixes which error a corruption gets:
 * foreign magic (-EPROTO), then version (-EPROTONOSUPPORT), then checksum
 * and every field (-EBADMSG).  The field checks matter even with a good
 * checksum: a hostile peer can recompute it.
 */
static int validate_hdr(const struct rbus_hdr *h, uint64_t file_size)
{
	uint64_t want;

	if (h->magic != RBUS_MAGIC)
		return -EPROTO;
	if (h->abi_version != RBUS_ABI_VERSION)
		return -EPROTONOSUPPORT;
	if (h->checksum != rbus_hdr_checksum(h))
		return -EBADMSG;
	if (h->hdr_size != RBUS_HDR_SIZE)
		return -EBADMSG;
	if (h->kind != RBUS_HDR_KIND_SPSC && h->kind != RBUS_HDR_KIND_MPMC)
		return -EPROTONOSUPPORT;
	if (h->flags & ~RBUS_HDR_F_KNOWN)
		return -EPROTONOSUPPORT;
	if (h->wakeup != RBUS_HDR_WAKE_FUTEX && h->wakeup != RBUS_HDR_WAKE_EVENTFD)
		return -EPROTONOSUPPORT;
	if (!is_pow2(h->capacity) || h->capacity < RBUS_CAPACITY_MIN ||
	    h->capacity > RBUS_CAPACITY_MAX)
		return -EBADMSG;
	if (h->max_msg > RBUS_MAX_MSG_LIMIT)
		return -EBADMSG;
	if (h->slot_size != rbus_layout_slot_size(h->max_msg))
		return -EBADMSG;
	if (h->ncursors != 1)
		return -EBADMSG;
	if (h->prod_off != rbus_layout_prod_off() ||
	    h->cursors_off != rbus_layout_cursors_off() ||
	    h->wait_off != rbus_layout_wait_off(h->ncursors) ||
	    h->slots_off != rbus_layout_slots_off(h->ncursors))
		return -EBADMSG;
	/* capacity <= 2^28 and slot_size < 2^29: no overflow below. */
	if (h->kind == RBUS_HDR_KIND_MPMC
	    ? h->nclaims != RBUS_SIDE_LEASES ||
	      h->claims_off != rbus_layout_claims_off(h->slots_off, h->capacity, h->slot_size)
	    : h->nclaims != 0 || h->claims_off != 0)
		return -EBADMSG;
	if (!is_pow2(h->page_size) || h->page_size < RBUS_PAGE_SIZE ||
	    h->page_size > (1u << 30) ||
	    (h->page_size != RBUS_PAGE_SIZE && !(h->flags & RBUS_REGION_HUGETLB)))
		return -EBADMSG;
	if (h->creator_pid <= 0)
		return -EBADMSG;
	for (size_t i = 0; i < sizeof(h->reserved); i++)
		if (h->reserved[i])
			return -EBADMSG;
	want = align_up(rbus_layout_used(h->kind, h->slots_off, h->capacity, h->slot_size),
			h->page_size);
	if (h->region_size != want)
		return -EBADMSG;
	if (file_size < h->region_size)
		return -ENODATA;
	if (file_size > h->region_size)
		return -EBADMSG;
	return 0;
}

static void region_free(struct rbus_region *r)
{
	if (r->base && r->base != MAP_FAILED)
		munmap(r->base, r->map_size);
	if (r->fd >= 0)
		close(r->fd);
	for (int i = 0; i < 2; i++)
		if (r->efd[i] >= 0)
			close(r->efd[i]);
	free(r);
}

/*
 * Map the validated region r->hdr describes from r->fd, then check that the
 * ring indices are possible.  On failure the caller frees r.
 */
static int region_map(struct rbus_region *r, uint32_t flags)
{
	const struct rbus_hdr *h = &r->hdr;
	int mflags = MAP_SHARED;
	uint64_t head, tail;

	if (flags & RBUS_REGION_PREFAULT)
		mflags |= MAP_POPULATE;
	r->map_size = h->region_size;
	r->base = mmap(NULL, r->map_size, PROT_READ | PROT_WRITE, mflags, r->fd, 0);
	if (r->base == MAP_FAILED) {
		r->base = NULL;
		/* EPERM: a memfd sealed against writes (F_SEAL_WRITE) cannot
		 * be mapped writable.  -EPERM means "not sealed" here, so
		 * report it as the access problem it is. */
		return errno == EPERM ? -EACCES : -errno;
	}
	/* mlock() says EAGAIN or ENOMEM over RLIMIT_MEMLOCK, and EPERM when
	 * that limit is 0 without CAP_IPC_LOCK; all three mean "not allowed
	 * to lock this much", and -EPERM is taken (unsealed fd). */
	if ((flags & RBUS_REGION_MLOCK) && mlock(r->base, r->map_size) < 0)
		return (errno == EAGAIN || errno == EPERM) ? -ENOMEM : -errno;

	r->prod = (struct rbus_side *)(r->base + h->prod_off);
	r->cons = (struct rbus_side *)(r->base + h->cursors_off);
	r->wait = (struct rbus_wait *)(r->base + h->wait_off);
	r->slots = r->base + h->slots_off;
	r->claims = h->claims_off ? (struct rbus_claim *)(r->base + h->claims_off) : NULL;

	/* Producer and consumer indices are never more than a ring apart.
	 * The SPSC tail is a hint published after the stamps, so the head may
	 * lead it by up to a batch; allow either order.  Relaxed: a sanity
	 * check of two words, no data is read through them here. */
	head = atomic_load_explicit(&r->cons->index, memory_order_relaxed);
	tail = atomic_load_explicit(&r->prod->index, memory_order_relaxed);
	if (tail - head > h->capacity && head - tail > h->capacity)
		return -EBADMSG;
	return 0;
}

static struct rbus_region *region_alloc(void)
{
	struct rbus_region *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	atomic_init(&r->refs, 1);
	r->fd = -1;
	r->efd[0] = r->efd[1] = -1;
	return r;
}

/*
 * Is fd an eventfd of the kind region_create() makes?  Its fdinfo says it
 * is an eventfd; kernels since 6.5 also say whether it is in semaphore
 * mode, which the wake protocol needs (older ones do not: accepted).
 * Needs /proc; without it, attach refuses eventfd regions.
 */
static bool is_ringbus_eventfd(int fd)
{
	char path[64], line[128];
	bool efd = false, not_sem = false;
	unsigned v;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	f = fopen(path, "re");
	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "eventfd-count:", 14) == 0)
			efd = true;
		if (sscanf(line, "eventfd-semaphore: %u", &v) == 1 && v != 1)
			not_sem = true;
	}
	fclose(f);
	return efd && !not_sem;
}

RBUS_EXPORT int rbus_region_attach_fd(int fd, uint32_t flags,
				      struct rbus_region **out)
{
	return rbus_region_attach_fds(&fd, 1, flags, out);
}

RBUS_EXPORT int rbus_region_attach_fds(const int *fds, unsigned nfds,
				       uint32_t flags, struct rbus_region **out)
{
	struct rbus_region *r;
	int fd;
	struct stat st;
	ssize_t n;
	int seals, err, fl;

	if (!out || (flags & ~RBUS_ATTACH_FLAGS))
		return -EINVAL;
	*out = NULL;
	if (!fds || (nfds != 1 && nfds != 3))
		return -EINVAL;
	fd = fds[0];
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	/* Both sides write shared memory (indices, stamps): a read-only or
	 * write-only fd cannot be mapped shared and writable. */
	fl = fcntl(fd, F_GETFL);
	if (fl < 0)
		return -errno;
	if ((fl & O_ACCMODE) != O_RDWR)
		return -EACCES;

	/* Seals first: without F_SEAL_SHRINK a peer can truncate the object
	 * and every access would raise SIGBUS.  Objects that cannot be sealed
	 * (shm, files) fail F_GET_SEALS with EINVAL or report F_SEAL_SEAL
	 * alone: both count as unsealed. */
	seals = fcntl(fd, F_GET_SEALS);
	if (seals < 0)
		seals = 0;
	if ((seals & RBUS_SEALS_REQUIRED) != RBUS_SEALS_REQUIRED &&
	    !(flags & RBUS_ATTACH_UNSEALED))
		return -EPERM;

	if (st.st_size < (off_t)RBUS_HDR_SIZE)
		return -ENODATA;

	r = region_alloc();
	if (!r)
		return -ENOMEM;
	n = pread(fd, &r->hdr, sizeof(r->hdr), 0);
	if (n != (ssize_t)sizeof(r->hdr)) {
		err = n < 0 ? -errno : -ENODATA;
		goto fail;
	}
	err = validate_hdr(&r->hdr, (uint64_t)st.st_size);
	if (err)
		goto fail;
	err = -EINVAL;
	if (nfds != (r->hdr.wakeup == RBUS_HDR_WAKE_EVENTFD ? 3u : 1u))
		goto fail;
	for (unsigned i = 1; i < nfds; i++) {
		if (!is_ringbus_eventfd(fds[i]))
			goto fail;
		r->efd[i - 1] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
		if (r->efd[i - 1] < 0) {
			err = -errno;
			goto fail;
		}
		/* The protocol reads tokens without blocking.  O_NONBLOCK is
		 * a property of the open file, shared with the sender's fd,
		 * which ringbus made non-blocking too. */
		fl = fcntl(r->efd[i - 1], F_GETFL);
		if (fl < 0 || fcntl(r->efd[i - 1], F_SETFL, fl | O_NONBLOCK) < 0) {
			err = -errno;
			goto fail;
		}
	}
	r->fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (r->fd < 0) {
		err = -errno;
		goto fail;
	}
	err = region_map(r, flags);
	if (err)
		goto fail;
	*out = r;
	return 0;
fail:
	region_free(r);
	return err;
}

RBUS_EXPORT int rbus_region_attach_shm(const char *name, uint32_t flags,
				       struct rbus_region **out)
{
	int fd, err;

	if (!out)
		return -EINVAL;
	*out = NULL;
	err = check_shm_name(name);
	if (err)
		return err;
	fd = shm_open(name, O_RDWR | O_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	err = rbus_region_attach_fd(fd, flags | RBUS_ATTACH_UNSEALED, out);
	close(fd);
	return err;
}

static int check_opts(const struct rbus_region_opts *o)
{
	if (o->kind != RBUS_KIND_SPSC && o->kind != RBUS_KIND_MPMC)
		return -EINVAL;
	if (!is_pow2(o->capacity) || o->capacity < RBUS_CAPACITY_MIN ||
	    o->capacity > RBUS_CAPACITY_MAX)
		return -EINVAL;
	if (o->max_msg > RBUS_MAX_MSG_LIMIT)
		return -EINVAL;
	if (o->flags & ~RBUS_CREATE_FLAGS)
		return -EINVAL;
	if (o->wakeup != RBUS_WAKE_FUTEX && o->wakeup != RBUS_WAKE_EVENTFD)
		return -EINVAL;
	if (o->reserved32)
		return -EINVAL;
	for (size_t i = 0; i < sizeof(o->reserved) / sizeof(o->reserved[0]); i++)
		if (o->reserved[i])
			return -EINVAL;
	if (o->shm_name) {
		int err = check_shm_name(o->shm_name);
		if (err)
			return err;
		/* hugetlbfs is not where shm_open() creates objects. */
		if (o->flags & RBUS_REGION_HUGETLB)
			return -EINVAL;
	}
	return 0;
}

static int create_fd(const struct rbus_region_opts *o)
{
	unsigned mfd = MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_NOEXEC_SEAL;
	int fd;

	if (o->shm_name) {
		fd = shm_open(o->shm_name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC,
			      o->shm_mode);
		return fd < 0 ? -errno : fd;
	}
	if (o->flags & RBUS_REGION_HUGETLB)
		mfd |= MFD_HUGETLB;
	fd = memfd_create("ringbus", mfd);
	if (fd < 0 && errno == EINVAL) {
		/* Kernels before 6.3 do not know MFD_NOEXEC_SEAL. */
		mfd &= ~MFD_NOEXEC_SEAL;
		fd = memfd_create("ringbus", mfd);
	}
	return fd < 0 ? -errno : fd;
}

/* Write the header, the sides and the slot stamps of a new region. */
static void region_init(struct rbus_region *r, const struct rbus_region_opts *o)
{
	struct rbus_hdr *h = &r->hdr;
	uint64_t mask = o->capacity - 1;
	unsigned char *slots;
	struct rbus_side *prod, *cons;
	struct rbus_wait *w;

	memcpy(r->base, h, sizeof(*h));
	prod = (struct rbus_side *)(r->base + h->prod_off);
	cons = (struct rbus_side *)(r->base + h->cursors_off);
	/* Nobody else maps the region yet: relaxed stores, published to
	 * other processes by the fd passing (a syscall) that follows. */
	atomic_store_explicit(&prod->index, o->start_index, memory_order_relaxed);
	atomic_store_explicit(&cons->index, o->start_index, memory_order_relaxed);
	/* The futex words start at the low half of start_index, so the tests
	 * that start the indices near 2^32 also cross the wrap of the words
	 * slept on. */
	w = (struct rbus_wait *)(r->base + h->wait_off);
	atomic_store_explicit(&w->data.seq, (uint32_t)o->start_index, memory_order_relaxed);
	atomic_store_explicit(&w->space.seq, (uint32_t)o->start_index, memory_order_relaxed);
	slots = r->base + h->slots_off;
	for (uint64_t s = 0; s < o->capacity; s++) {
		struct rbus_slot *sl = (struct rbus_slot *)(slots + s * h->slot_size);
		/* The first index >= start_index that maps to slot s. */
		uint64_t first = o->start_index + ((s - o->start_index) & mask);
		atomic_store_explicit(&sl->stamp, (uint32_t)first, memory_order_relaxed);
		atomic_store_explicit(&sl->len, 0, memory_order_relaxed);
	}
}

RBUS_EXPORT int rbus_region_create(const struct rbus_region_opts *opts,
				   struct rbus_region **out)
{
	struct rbus_region_opts defaults;
	const struct rbus_region_opts *o = opts;
	struct rbus_region *r;
	struct rbus_hdr *h;
	struct timespec now;
	int err;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!o) {
		rbus_region_opts_init(&defaults);
		o = &defaults;
	}
	err = check_opts(o);
	if (err)
		return err;

	r = region_alloc();
	if (!r)
		return -ENOMEM;
	h = &r->hdr;
	h->magic = RBUS_MAGIC;
	h->abi_version = RBUS_ABI_VERSION;
	h->hdr_size = RBUS_HDR_SIZE;
	h->kind = o->kind == RBUS_KIND_SPSC ? RBUS_HDR_KIND_SPSC : RBUS_HDR_KIND_MPMC;
	h->flags = o->flags | (o->shm_name ? RBUS_HDR_F_SHM : 0);
	h->capacity = o->capacity;
	h->max_msg = o->max_msg;
	h->slot_size = rbus_layout_slot_size(o->max_msg);
	h->page_size = (o->flags & RBUS_REGION_HUGETLB) ? (uint32_t)huge_page_size()
							: RBUS_PAGE_SIZE;
	h->ncursors = 1;
	h->prod_off = rbus_layout_prod_off();
	h->cursors_off = rbus_layout_cursors_off();
	h->wait_off = rbus_layout_wait_off(h->ncursors);
	h->wakeup = o->wakeup == RBUS_WAKE_EVENTFD ? RBUS_HDR_WAKE_EVENTFD
						    : RBUS_HDR_WAKE_FUTEX;
	h->slots_off = rbus_layout_slots_off(h->ncursors);
	if (h->kind == RBUS_HDR_KIND_MPMC) {
		h->nclaims = RBUS_SIDE_LEASES;
		h->claims_off = rbus_layout_claims_off(h->slots_off, h->capacity, h->slot_size);
	}
	h->region_size = align_up(rbus_layout_used(h->kind, h->slots_off, h->capacity,
						   h->slot_size), h->page_size);
	h->creator_pid = (int32_t)getpid();
	h->start_index = o->start_index;
	clock_gettime(CLOCK_REALTIME, &now);
	h->created_ns = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
	h->checksum = rbus_hdr_checksum(h);

	r->fd = create_fd(o);
	if (r->fd < 0) {
		err = r->fd;
		r->fd = -1;
		goto fail;
	}
	/* Reserve every page now.  fallocate() also sets the size. */
	err = fallocate(r->fd, 0, 0, (off_t)h->region_size);
	if (err < 0) {
		err = -errno;
		goto fail_unlink;
	}
	if (!o->shm_name &&
	    fcntl(r->fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
		err = -errno;
		goto fail;
	}
	if (h->wakeup == RBUS_HDR_WAKE_EVENTFD) {
		/* Semaphore mode: a wake writes one token per registered
		 * sleeper and each sleeper takes one, so one sleeper cannot
		 * swallow another's wake (see wait.c). */
		for (int i = 0; i < 2; i++) {
			r->efd[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK | EFD_SEMAPHORE);
			if (r->efd[i] < 0) {
				err = -errno;
				goto fail_unlink;
			}
		}
	}
	err = region_map(r, o->flags);
	if (err)
		goto fail_unlink;
	region_init(r, o);
	*out = r;
	return 0;
fail_unlink:
	if (o->shm_name)
		shm_unlink(o->shm_name);
fail:
	region_free(r);
	return err;
}

void rbus_region_ref(struct rbus_region *r)
{
	/* Relaxed: taking a reference orders nothing; the caller already
	 * holds one, so the count cannot reach 0 concurrently. */
	atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed);
}

RBUS_EXPORT void rbus_region_close(struct rbus_region *r)
{
	if (!r)
		return;
	/* acq_rel: every use of the region by this reference happens before
	 * the unmap done by whichever thread drops the last one. */
	if (atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) == 1)
		region_free(r);
}

RBUS_EXPORT int rbus_region_fd(const struct rbus_region *r)
{
	return r->fd;
}

RBUS_EXPORT int rbus_region_fds(const struct rbus_region *r, int *fds, unsigned max)
{
	int all[3] = { r->fd, r->efd[0], r->efd[1] };
	unsigned n = r->hdr.wakeup == RBUS_HDR_WAKE_EVENTFD ? 3 : 1;

	for (unsigned i = 0; i < n && i < max; i++)
		fds[i] = all[i];
	return (int)n;
}

RBUS_EXPORT int rbus_region_info(const struct rbus_region *r,
				 struct rbus_region_info *info)
{
	const struct rbus_hdr *h = &r->hdr;

	memset(info, 0, sizeof(*info));
	info->kind = h->kind == RBUS_HDR_KIND_SPSC ? RBUS_KIND_SPSC : RBUS_KIND_MPMC;
	info->capacity = h->capacity;
	info->max_msg = h->max_msg;
	info->slot_size = h->slot_size;
	info->flags = h->flags & RBUS_CREATE_FLAGS;
	info->abi_version = h->abi_version;
	info->size = h->region_size;
	info->start_index = h->start_index;
	info->creator_pid = h->creator_pid;
	info->created_ns = h->created_ns;
	info->wakeup = h->wakeup == RBUS_HDR_WAKE_EVENTFD ? RBUS_WAKE_EVENTFD
							 : RBUS_WAKE_FUTEX;
	/* Relaxed: a statistics snapshot, documented as not consistent. */
	info->head = atomic_load_explicit(&r->cons->index, memory_order_relaxed);
	info->tail = atomic_load_explicit(&r->prod->index, memory_order_relaxed);
	info->producers = atomic_load_explicit(&r->prod->attached, memory_order_relaxed);
	info->consumers = atomic_load_explicit(&r->cons->attached, memory_order_relaxed);
	return 0;
}

uint64_t rbus_region_size_for(const struct rbus_region_opts *o)
{
	uint64_t page = (o->flags & RBUS_REGION_HUGETLB) ? huge_page_size()
							: RBUS_PAGE_SIZE;

	/* The arithmetic of rbus_region_create(), which makes one cursor. */
	return align_up(rbus_layout_used(o->kind == RBUS_KIND_SPSC ? RBUS_HDR_KIND_SPSC
								   : RBUS_HDR_KIND_MPMC,
					 rbus_layout_slots_off(1), o->capacity,
					 rbus_layout_slot_size(o->max_msg)),
			page);
}

uint32_t rbus_region_role_owner(const struct rbus_region *r, enum rbus_role role)
{
	const struct rbus_side *side = role == RBUS_PRODUCER ? r->prod : r->cons;

	if (r->hdr.kind != RBUS_HDR_KIND_SPSC)
		return 0;
	/* Relaxed: a hint for ringbusd's -EBUSY; the claim itself is the
	 * CAS in spsc_open(), which a stale reading cannot defeat. */
	return atomic_load_explicit(&side->owner, memory_order_relaxed);
}

int rbus_region_recover(struct rbus_region *r, enum rbus_role role,
			uint32_t token, struct rbus_claim_left *left, unsigned *nleft)
{
	struct rbus_side *side = role == RBUS_PRODUCER ? r->prod : r->cons;
	int n;

	*nleft = 0;
	if (token < 2 || (role != RBUS_PRODUCER && role != RBUS_CONSUMER))
		return -EINVAL;
	if (r->hdr.kind == RBUS_HDR_KIND_SPSC) {
		/* Relaxed: the token names a dead process's handle; if it is
		 * the owner, nobody else can change the owner word until we
		 * give the role back below. */
		if (atomic_load_explicit(&side->owner, memory_order_relaxed) != token)
			return 0;
		/* The dead holder's stores happened before its exit, which
		 * happened before the pidfd told us of it (both are system
		 * calls): our release stores pass them on as its close would
		 * have. */
		rbus_spsc_drop_role(side);
		n = 1;
	} else {
		n = rbus_mpmc_recover(r, role, token, left, nleft);
	}
	if (n) {
		/* Both queues: the peers of the dead role see the hang-up,
		 * and its fellows (MPMC) lose nothing by a spurious wake. */
		rbus_wake_slow(&r->wait->data, r->efd[0]);
		rbus_wake_slow(&r->wait->space, r->efd[1]);
	}
	return n;
}

int rbus_region_retry_intent(struct rbus_region *r, enum rbus_role role,
			     struct rbus_claim_left *left)
{
	uint64_t finished;
	int more;

	if (r->hdr.kind != RBUS_HDR_KIND_MPMC ||
	    (role != RBUS_PRODUCER && role != RBUS_CONSUMER))
		return -EINVAL;
	more = rbus_mpmc_retry_intent(r, role, left, &finished);
	if (finished) {
		/* As rbus_region_recover(): the peers waiting at those
		 * slots. */
		rbus_wake_slow(&r->wait->data, r->efd[0]);
		rbus_wake_slow(&r->wait->space, r->efd[1]);
	}
	return more;
}

bool rbus_region_token_live(const struct rbus_region *r, enum rbus_role role,
			    uint32_t token)
{
	const struct rbus_side *side = role == RBUS_PRODUCER ? r->prod : r->cons;

	/* Relaxed: figures and housekeeping for ringbusd, which acts on
	 * nothing it reads through them. */
	if (r->hdr.kind == RBUS_HDR_KIND_SPSC)
		return atomic_load_explicit(&side->owner, memory_order_relaxed) == token;
	for (unsigned i = 0; i < RBUS_SIDE_LEASES; i++)
		if (atomic_load_explicit(&side->leases[i], memory_order_relaxed) == token)
			return true;
	return false;
}
