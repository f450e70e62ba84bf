/* SPDX-License-Identifier: MIT */
/*
 * ringbus/region.h - shared-memory regions that hold one ring each.
 *
 * A region is a shared-memory object (a sealed memfd, or a named POSIX shm
 * object) laid out as: a header (magic, ABI version, kind, geometry, creation
 * parameters, checksum), the producer's and the consumer's state on cache
 * lines of their own, the wait block (futex words, sleepers), and the slots.
 * doc/design.md has the exact layout.  A region made with the eventfd
 * wakeup backend (ringbus/wait.h) also owns two eventfds, which travel with
 * the region fd: rbus_region_fds() and rbus_region_attach_fds().
 *
 * Memory is reserved at creation with fallocate(), so a full tmpfs fails the
 * creation with -ENOSPC instead of raising SIGBUS on a later write.  A memfd
 * is sealed with F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL, so nobody can
 * truncate it under the processes that map it.  A POSIX shm object cannot be
 * sealed: any process that can open it can truncate it, and every process
 * mapping it would then get SIGBUS.  Use shm only among trusted processes.
 *
 * Attaching validates the header against the fd's size and seals, and keeps
 * a private copy of the validated geometry: a peer that rewrites the header
 * later cannot change what this process believes the geometry to be.
 *
 * Thread-safety: a struct rbus_region may be shared by the threads of a
 * process; creation, attach and the accessors are thread-safe.  Its reference
 * count is atomic.  rbus_region_close() must be called once per reference
 * obtained from create or attach; channels hold references of their own.
 */
#ifndef RINGBUS_REGION_H
#define RINGBUS_REGION_H

#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

struct rbus_region;

/* The ring algorithm a region holds. */
enum rbus_kind {
	RBUS_KIND_SPSC = 1, /* one producer, one consumer; wait-free */
	RBUS_KIND_MPMC = 2, /* any number of producers and consumers */
};

/* Region flags, for rbus_region_opts.flags and rbus_region_attach_*(). */
#define RBUS_REGION_HUGETLB  (1u << 0) /* back by huge pages (create only) */
#define RBUS_REGION_PREFAULT (1u << 1) /* MAP_POPULATE the mapping */
#define RBUS_REGION_MLOCK    (1u << 2) /* mlock() the mapping */
/* Attach only: accept an fd that is not sealed against shrink and grow.
 * Implied by rbus_region_attach_shm(), since shm objects cannot be sealed. */
#define RBUS_ATTACH_UNSEALED (1u << 8)

/* Limits of the geometry. */
#define RBUS_CAPACITY_MIN     2u
#define RBUS_CAPACITY_MAX     (1u << 28)
#define RBUS_MAX_MSG_LIMIT    (1u << 28)   /* 256 MiB */
#define RBUS_DEFAULT_CAPACITY 1024u
#define RBUS_DEFAULT_MAX_MSG  256u

/*
 * Creation options.  Initialise with rbus_region_opts_init(), then set what
 * differs from the defaults.  Fields not listed are reserved and must be 0.
 */
struct rbus_region_opts {
	enum rbus_kind kind;   /* default RBUS_KIND_SPSC */
	uint32_t capacity;     /* slots (messages); a power of two in
				  [RBUS_CAPACITY_MIN, RBUS_CAPACITY_MAX];
				  default RBUS_DEFAULT_CAPACITY */
	uint32_t max_msg;      /* largest message in bytes, 0 allowed, at
				  most RBUS_MAX_MSG_LIMIT;
				  default RBUS_DEFAULT_MAX_MSG */
	uint32_t flags;        /* RBUS_REGION_HUGETLB | _PREFAULT | _MLOCK */
	const char *shm_name;  /* NULL: an anonymous sealed memfd (default).
				  Else a POSIX shm name ("/name"), created
				  exclusively with mode shm_mode; the caller
				  unlinks it with shm_unlink(3). */
	mode_t shm_mode;       /* default 0600 */
	/* First message index.  Indices are 64-bit and never wrap in
	 * practice; this lets tests start near 2^32 or 2^64 to prove that
	 * wrap-around arithmetic is right.  Default 0. */
	uint64_t start_index;
	/* Wakeup backend: RBUS_WAKE_FUTEX (default) or RBUS_WAKE_EVENTFD, see
	 * ringbus/wait.h. */
	uint32_t wakeup;
	uint32_t reserved32;
	uint64_t reserved[4];
};

/*
 * rbus_region_opts_init - fill @o with the defaults listed above.
 * Thread-safe.
 */
void rbus_region_opts_init(struct rbus_region_opts *o);

/*
 * rbus_region_create - create, reserve, initialise and map a new region.
 * @o:   options (see struct rbus_region_opts); NULL means all defaults.
 * @out: on success, the new region, with one reference for the caller.
 *
 * The memfd (or shm object) is created close-on-exec.  The memory is
 * reserved with fallocate() before use, so the call fails rather than a later
 * write raising SIGBUS.  Thread-safe.
 *
 * Returns 0, or:
 *   -EINVAL   an option out of range (capacity not a power of two, unknown
 *             flag or wakeup backend, non-zero reserved field, bad shm
 *             name ...).
 *   -EEXIST   the shm name exists already.
 *   -ENOSPC   the memory could not be reserved (tmpfs full, or no huge pages
 *             reserved when RBUS_REGION_HUGETLB is set).
 *   -ENOMEM   out of memory (mapping, or mlock over RLIMIT_MEMLOCK).
 *   -EPERM, -EACCES, -EMFILE, -ENFILE  from the system calls.
 */
int rbus_region_create(const struct rbus_region_opts *o,
		       struct rbus_region **out);

/*
 * rbus_region_attach_fds - map and validate the region behind @fds[0], with
 * its eventfds @fds[1] (data) and @fds[2] (space) if it uses the eventfd
 * wakeup backend.
 * @fds:   the fds, as rbus_region_fds() gives them in any process.  The
 *         region keeps duplicates (close-on-exec); the caller still owns
 *         its fds.
 * @nfds:  1 for a futex-backend region, 3 for an eventfd-backend one.
 * @flags, @out: as rbus_region_attach_fd().
 *
 * Returns what rbus_region_attach_fd() returns, and -EINVAL when @nfds does
 * not match the region's backend or @fds[1] / @fds[2] are not eventfds in
 * semaphore mode (told by /proc/self/fdinfo, which must be mounted).  The
 * eventfds are made non-blocking (a property they share with the fds of
 * the process that sent them).
 */
int rbus_region_attach_fds(const int *fds, unsigned nfds, uint32_t flags,
			   struct rbus_region **out);

/*
 * rbus_region_attach_fd - map and validate the region behind @fd.
 * @fd:    an fd of a region made by rbus_region_create() in any process.
 *         The region keeps a duplicate (close-on-exec); the caller still
 *         owns @fd.
 * @flags: RBUS_REGION_PREFAULT, RBUS_REGION_MLOCK, RBUS_ATTACH_UNSEALED.
 * @out:   on success, the region, with one reference for the caller.
 *
 * Validates the seals (F_SEAL_SHRINK and F_SEAL_GROW are required unless
 * RBUS_ATTACH_UNSEALED is given), the size, and every header field, and
 * checks the ring indices for consistency.  A region of the eventfd backend
 * needs its eventfds: use rbus_region_attach_fds() (this call gives -EINVAL).
 * Thread-safe.
 *
 * Returns 0, or:
 *   -EPERM            the fd is not sealed and RBUS_ATTACH_UNSEALED is unset.
 *   -ENODATA          the object is truncated (smaller than a header, or than
 *                     its header says).
 *   -EPROTO           not a ringbus region (foreign magic).
 *   -EPROTONOSUPPORT  a ringbus ABI version or kind this library lacks.
 *   -EBADMSG          header fields inconsistent, checksum wrong, or the
 *                     ring indices are impossible.
 *   -EACCES           @fd is not open for reading and writing (O_RDWR), or
 *                     the object cannot be mapped writable (F_SEAL_WRITE).
 *   -EINVAL           unknown flag, or @fd is not a mappable file.
 *   -ENOMEM           out of memory, or RBUS_REGION_MLOCK asked to lock
 *                     more than RLIMIT_MEMLOCK allows.
 *   -EBADF            @fd is not an open fd.
 */
int rbus_region_attach_fd(int fd, uint32_t flags, struct rbus_region **out);

/*
 * rbus_region_attach_shm - open the POSIX shm object @name read-write and
 * attach to it as rbus_region_attach_fd() does, with RBUS_ATTACH_UNSEALED
 * implied.  Returns what rbus_region_attach_fd() returns, and -ENOENT or
 * -EACCES from shm_open(3), -EINVAL for a malformed name.  Thread-safe.
 */
int rbus_region_attach_shm(const char *name, uint32_t flags,
			   struct rbus_region **out);

/*
 * rbus_region_close - drop one reference; the last one unmaps the region and
 * closes its fd.  NULL is ignored.  Thread-safe.
 */
void rbus_region_close(struct rbus_region *r);

/*
 * rbus_region_fd - the region's fd, owned by the region (do not close it);
 * pass it to another process (SCM_RIGHTS, fork) to let it attach.
 */
int rbus_region_fd(const struct rbus_region *r);

/*
 * rbus_region_fds - every fd another process needs to attach: the region fd,
 * then (eventfd backend) the data and space eventfds.  Copies up to @max of
 * them into @fds and returns how many there are (1 or 3).  The fds are owned
 * by the region.  Thread-safe.
 */
int rbus_region_fds(const struct rbus_region *r, int *fds, unsigned max);

/* A snapshot of a region.  Geometry comes from the validated private copy;
 * the live fields are read from shared memory and are only a hint. */
struct rbus_region_info {
	enum rbus_kind kind;
	uint32_t capacity;
	uint32_t max_msg;
	uint32_t slot_size;      /* bytes per slot, header included */
	uint32_t flags;          /* RBUS_REGION_* it was created with */
	uint32_t abi_version;
	uint64_t size;           /* bytes of the shared-memory object */
	uint64_t start_index;
	int32_t creator_pid;
	uint64_t created_ns;     /* CLOCK_REALTIME at creation */
	uint32_t wakeup;         /* RBUS_WAKE_FUTEX or RBUS_WAKE_EVENTFD */
	/* live */
	uint64_t head;           /* next index a consumer takes */
	uint64_t tail;           /* next index a producer takes */
	uint32_t producers;      /* producer handles attached */
	uint32_t consumers;      /* consumer handles attached */
};

/*
 * rbus_region_info - fill @info.  Returns 0.  Thread-safe; the live fields
 * are read with relaxed loads and are not a consistent snapshot.
 */
int rbus_region_info(const struct rbus_region *r,
		     struct rbus_region_info *info);

#ifdef __cplusplus
}
#endif
#endif /* RINGBUS_REGION_H */
