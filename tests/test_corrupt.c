/* SPDX-License-Identifier: MIT */
/*
 * test_corrupt.c - hostile or corrupt shared memory gives errors, never a
 * crash, an out-of-bounds access or an endless loop: every header field
 * flipped or rewritten (with and without a fixed checksum), absurd slot
 * lengths, impossible ring indices, random stamps, a hostile peer writing
 * garbage concurrently, and a header rewritten after attach.
 *
 * The tests corrupt a region through a mapping of their own of the region's
 * fd (MAP_SHARED), laid out as src/lib/layout.h says.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"
#include "layout.h"

static const enum rbus_kind kinds[2] = { RBUS_KIND_SPSC, RBUS_KIND_MPMC };

static const char *kind_name(enum rbus_kind k)
{
	return k == RBUS_KIND_SPSC ? "spsc" : "mpmc";
}

/* --- fixture ------------------------------------------------------------- */

static int fds_at_setup;

static void fd_setup(void)
{
	fds_at_setup = th_count_fds();
}

static void fd_teardown(void)
{
	ck_assert_int_eq(th_count_fds(), fds_at_setup);
}

/* --- a region and the test's own view of its bytes ----------------------- */

struct view {
	struct rbus_region *r;
	unsigned char *base;     /* our own MAP_SHARED mapping */
	size_t size;
	struct rbus_hdr *hdr;
	struct rbus_side *prod, *cons;
	uint32_t capacity, max_msg, slot_size;
	uint64_t start;
	enum rbus_kind kind;
};

static void view_make(struct view *v, enum rbus_kind kind, uint32_t capacity,
		      uint32_t max_msg, uint64_t start)
{
	struct rbus_region_opts o;
	struct rbus_region_info info;

	memset(v, 0, sizeof(*v));
	rbus_region_opts_init(&o);
	o.kind = kind;
	o.capacity = capacity;
	o.max_msg = max_msg;
	o.start_index = start;
	ck_assert_rbus(rbus_region_create(&o, &v->r), 0);
	rbus_region_info(v->r, &info);
	v->size = info.size;
	v->base = mmap(NULL, v->size, PROT_READ | PROT_WRITE, MAP_SHARED,
		       rbus_region_fd(v->r), 0);
	ck_assert_ptr_ne(v->base, MAP_FAILED);
	/* Everything from the layout, nothing from the (corruptible) header. */
	v->hdr = (struct rbus_hdr *)v->base;
	v->prod = (struct rbus_side *)(v->base + rbus_layout_prod_off());
	v->cons = (struct rbus_side *)(v->base + rbus_layout_cursors_off());
	v->capacity = capacity;
	v->max_msg = max_msg;
	v->slot_size = rbus_layout_slot_size(max_msg);
	v->start = start;
	v->kind = kind;
	ck_assert_uint_eq(info.slot_size, v->slot_size);
	ck_assert_uint_le(rbus_layout_slots_off(1) + (uint64_t)capacity * v->slot_size,
			  v->size);
}

static void view_free(struct view *v)
{
	munmap(v->base, v->size);
	rbus_region_close(v->r);
}

static struct rbus_slot *view_slot(const struct view *v, uint64_t idx)
{
	return (struct rbus_slot *)(v->base + rbus_layout_slots_off(1) +
				    (idx & (v->capacity - 1)) * v->slot_size);
}

static struct rbus_channel *open_role(struct rbus_region *r, enum rbus_role role)
{
	struct rbus_channel *ch = NULL;

	ck_assert_rbus(rbus_channel_open(r, role, 0, &ch), 0);
	ck_assert_ptr_nonnull(ch);
	return ch;
}

/* Attach to fd; close what attached.  Returns attach's result. */
static int attach_result(int fd, uint32_t flags)
{
	struct rbus_region *a = NULL;
	int err = rbus_region_attach_fd(fd, flags, &a);

	if (err == 0) {
		ck_assert_ptr_nonnull(a);
		rbus_region_close(a);
	}
	return err;
}

static void send_msg(struct rbus_channel *p, size_t max_msg, uint32_t producer,
		     uint64_t seq)
{
	unsigned char buf[4096];
	size_t len = th_msg_make(buf, max_msg, producer, seq);

	ck_assert_rbus(rbus_send(p, buf, len), 0);
}

static void recv_msg(struct rbus_channel *c, size_t max_msg, uint32_t producer,
		     uint64_t seq)
{
	unsigned char buf[4096];
	ssize_t n = rbus_recv(c, buf, sizeof(buf));
	uint32_t gp;
	uint64_t gs;

	ck_assert_msg(n >= 0, "rbus_recv returned %zd (%s)", n,
		      n < 0 ? rbus_errname((int)n) : "-");
	ck_assert_msg(th_msg_check(buf, (size_t)n, max_msg, &gp, &gs) == 0,
		      "message (%u, %llu) corrupt", producer, (unsigned long long)seq);
	ck_assert_uint_eq(gp, producer);
	ck_assert_uint_eq(gs, seq);
}

/* xorshift64*: deterministic garbage. */
static uint64_t rng_next(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * UINT64_C(0x2545f4914f6cdd1d);
}

/* Field access by offset and width (1, 4 or 8 bytes, little-endian host). */
static uint64_t field_get(const struct rbus_hdr *h, size_t off, size_t size)
{
	uint64_t v = 0;

	memcpy(&v, (const unsigned char *)h + off, size);
	return v;
}

static void field_set(struct rbus_hdr *h, size_t off, size_t size, uint64_t v)
{
	memcpy((unsigned char *)h + off, &v, size);
}

/* ======================================================================= */
/* 1. Header fields                                                         */
/* ======================================================================= */

/* Geometry of the regions whose headers are corrupted: small, and chosen so
 * that a quarter or twice the capacity, and max_msg 8 or 200, change the
 * page-rounded size of both kinds.  Slot 120: SPSC 896 + 7680 -> 12288
 * bytes; MPMC, with its claim records (2 * 27 * 128 after the slots),
 * 16384. */
#define HC_CAPACITY 64u
#define HC_MAX_MSG  112u
#define HC_SIZE(kind) ((kind) == RBUS_KIND_MPMC ? 16384u : 12288u)

struct field {
	const char *name;
	size_t off, size;
};

#define FIELD(m) { #m, offsetof(struct rbus_hdr, m), sizeof(((struct rbus_hdr *)0)->m) }
#define RESERVED(i) { "reserved[" #i "]", offsetof(struct rbus_hdr, reserved) + (i), 1 }

static const struct field fields[] = {
	FIELD(magic), FIELD(abi_version), FIELD(hdr_size), FIELD(kind),
	FIELD(flags), FIELD(capacity), FIELD(max_msg), FIELD(slot_size),
	FIELD(page_size), FIELD(region_size), FIELD(prod_off),
	FIELD(cursors_off), FIELD(ncursors), FIELD(creator_pid),
	FIELD(slots_off), FIELD(start_index), FIELD(created_ns),
	FIELD(wait_off), FIELD(wakeup), FIELD(nclaims), FIELD(claims_off),
	RESERVED(0), RESERVED(1), RESERVED(76), RESERVED(126), RESERVED(127),
	FIELD(checksum),
};
#define N_FIELDS (sizeof(fields) / sizeof(fields[0]))

/* What a header corrupted at byte `off` without a fixed checksum gives. */
static int unchecksummed_error(size_t off)
{
	if (off < offsetof(struct rbus_hdr, abi_version))
		return -EPROTO;
	if (off < offsetof(struct rbus_hdr, hdr_size))
		return -EPROTONOSUPPORT;
	return -EBADMSG;
}

/*
 * (a) One bit of a field flipped, checksum left alone: bit 0 of the field,
 * and its top bit, for both kinds.  Loop index: the field.
 */
static void flip_one(const struct field *f, enum rbus_kind kind, bool top)
{
	struct view v;
	uint64_t old, flipped;
	int got, want = unchecksummed_error(f->off);

	view_make(&v, kind, HC_CAPACITY, HC_MAX_MSG, 0);
	ck_assert_rbus(attach_result(rbus_region_fd(v.r), 0), 0);
	old = field_get(v.hdr, f->off, f->size);
	flipped = old ^ (top ? UINT64_C(1) << (f->size * 8 - 1) : 1);
	field_set(v.hdr, f->off, f->size, flipped);
	got = attach_result(rbus_region_fd(v.r), 0);
	ck_assert_msg(got == want, "%s %s: %s bit flipped (0x%llx -> 0x%llx): attach "
		      "returned %d (%s), want %s", kind_name(kind), f->name,
		      top ? "top" : "low", (unsigned long long)old,
		      (unsigned long long)flipped, got, got < 0 ? rbus_errname(got) : "-",
		      rbus_errname(want));
	/* Repaired, it attaches again: the flip was the cause. */
	field_set(v.hdr, f->off, f->size, old);
	ck_assert_rbus(attach_result(rbus_region_fd(v.r), 0), 0);
	view_free(&v);
}

START_TEST(header_field_bit_flip)
{
	for (int k = 0; k < 2; k++) {
		flip_one(&fields[_i], kinds[k], false);
		flip_one(&fields[_i], kinds[k], true);
	}
}
END_TEST

/*
 * (b) A field set to a hostile value and the checksum recomputed, so only
 * the field checks stand between it and this process.
 */
enum { H_SET, H_ADD };          /* field = value, or field += value */
enum { FIX_NONE, FIX_GEOMETRY };  /* recompute slot_size and region_size too */
#define ANY_ERROR 1             /* -EBADMSG, -EPROTONOSUPPORT or -ENODATA */

struct hostile {
	const char *name;
	size_t off, size;
	int mode;
	uint64_t value;
	int fix;
	int want;
};

#define HOSTILE(m, mode, val, fix, want)                                       \
	{ #m " " #mode " " #val, offsetof(struct rbus_hdr, m),                  \
	  sizeof(((struct rbus_hdr *)0)->m), mode, (uint64_t)(val), fix, want }
#define HOSTILE_RES(i, val)                                                    \
	{ "reserved[" #i "] = " #val, offsetof(struct rbus_hdr, reserved) + (i), \
	  1, H_SET, val, FIX_NONE, ANY_ERROR }

static const struct hostile hostiles[] = {
	/* Identity: its own errors, checksum or not. */
	HOSTILE(magic, H_SET, 0, FIX_NONE, -EPROTO),
	HOSTILE(magic, H_ADD, 1, FIX_NONE, -EPROTO),
	HOSTILE(abi_version, H_SET, 0, FIX_NONE, -EPROTONOSUPPORT),
	HOSTILE(abi_version, H_SET, 1, FIX_NONE, -EPROTONOSUPPORT),
	HOSTILE(abi_version, H_SET, RBUS_ABI_VERSION - 1, FIX_NONE, -EPROTONOSUPPORT),
	HOSTILE(abi_version, H_SET, RBUS_ABI_VERSION + 1, FIX_NONE, -EPROTONOSUPPORT),
	HOSTILE(abi_version, H_SET, UINT32_MAX, FIX_NONE, -EPROTONOSUPPORT),
	/* Structure. */
	HOSTILE(hdr_size, H_SET, 0, FIX_NONE, ANY_ERROR),
	HOSTILE(hdr_size, H_SET, 255, FIX_NONE, ANY_ERROR),
	HOSTILE(hdr_size, H_SET, 257, FIX_NONE, ANY_ERROR),
	HOSTILE(hdr_size, H_SET, 512, FIX_NONE, ANY_ERROR),
	HOSTILE(hdr_size, H_SET, UINT32_MAX, FIX_NONE, ANY_ERROR),
	HOSTILE(kind, H_SET, 0, FIX_NONE, ANY_ERROR),
	HOSTILE(kind, H_SET, 3, FIX_NONE, ANY_ERROR),
	HOSTILE(kind, H_SET, 4, FIX_NONE, ANY_ERROR),
	HOSTILE(kind, H_SET, UINT32_MAX, FIX_NONE, ANY_ERROR),
	HOSTILE(flags, H_SET, 1u << 3, FIX_NONE, ANY_ERROR),
	HOSTILE(flags, H_SET, 1u << 17, FIX_NONE, ANY_ERROR),
	HOSTILE(flags, H_SET, 1u << 31, FIX_NONE, ANY_ERROR),
	HOSTILE(flags, H_SET, UINT32_MAX, FIX_NONE, ANY_ERROR),
	HOSTILE(capacity, H_SET, 0, FIX_NONE, ANY_ERROR),
	HOSTILE(capacity, H_SET, 1, FIX_NONE, ANY_ERROR),
	HOSTILE(capacity, H_SET, 3, FIX_NONE, ANY_ERROR),
	HOSTILE(capacity, H_SET, 63, FIX_NONE, ANY_ERROR),
	HOSTILE(capacity, H_SET, 1000, FIX_NONE, ANY_ERROR),
	HOSTILE(capacity, H_SET, HC_CAPACITY * 2, FIX_NONE, ANY_ERROR),
	HOSTILE(capacity, H_SET, HC_CAPACITY / 2, FIX_NONE, ANY_ERROR),
	HOSTILE(capacity, H_SET, RBUS_CAPACITY_MAX, FIX_NONE, ANY_ERROR),
	HOSTILE(capacity, H_SET, RBUS_CAPACITY_MAX * 2, FIX_NONE, ANY_ERROR),
	HOSTILE(capacity, H_SET, 1u << 31, FIX_NONE, ANY_ERROR),
	HOSTILE(capacity, H_SET, UINT32_MAX, FIX_NONE, ANY_ERROR),
	HOSTILE(max_msg, H_SET, RBUS_MAX_MSG_LIMIT + 1, FIX_NONE, ANY_ERROR),
	HOSTILE(max_msg, H_SET, 1u << 31, FIX_NONE, ANY_ERROR),
	HOSTILE(max_msg, H_SET, UINT32_MAX, FIX_NONE, ANY_ERROR),
	HOSTILE(max_msg, H_ADD, 1, FIX_NONE, ANY_ERROR),     /* slot_size stale */
	HOSTILE(max_msg, H_ADD, 8, FIX_NONE, ANY_ERROR),
	HOSTILE(max_msg, H_SET, 0, FIX_NONE, ANY_ERROR),
	HOSTILE(slot_size, H_SET, 0, FIX_NONE, ANY_ERROR),
	HOSTILE(slot_size, H_SET, 8, FIX_NONE, ANY_ERROR),
	HOSTILE(slot_size, H_ADD, 8, FIX_NONE, ANY_ERROR),
	HOSTILE(slot_size, H_ADD, -8, FIX_NONE, ANY_ERROR),
	HOSTILE(slot_size, H_ADD, 1, FIX_NONE, ANY_ERROR),
	HOSTILE(slot_size, H_SET, 1u << 31, FIX_NONE, ANY_ERROR),
	HOSTILE(slot_size, H_SET, UINT32_MAX, FIX_NONE, ANY_ERROR),
	HOSTILE(page_size, H_SET, 0, FIX_NONE, ANY_ERROR),
	HOSTILE(page_size, H_SET, 1, FIX_NONE, ANY_ERROR),
	HOSTILE(page_size, H_SET, 4095, FIX_NONE, ANY_ERROR),
	HOSTILE(page_size, H_SET, 8192, FIX_NONE, ANY_ERROR),
	HOSTILE(page_size, H_SET, 2u << 20, FIX_NONE, ANY_ERROR),
	HOSTILE(page_size, H_SET, 1u << 31, FIX_NONE, ANY_ERROR),
	HOSTILE(page_size, H_SET, UINT32_MAX, FIX_NONE, ANY_ERROR),
	HOSTILE(region_size, H_SET, 0, FIX_NONE, ANY_ERROR),
	HOSTILE(region_size, H_SET, 4096, FIX_NONE, ANY_ERROR),
	HOSTILE(region_size, H_ADD, -4096, FIX_NONE, ANY_ERROR),
	HOSTILE(region_size, H_ADD, 4096, FIX_NONE, ANY_ERROR),
	HOSTILE(region_size, H_ADD, 1, FIX_NONE, ANY_ERROR),
	HOSTILE(region_size, H_SET, UINT64_C(1) << 63, FIX_NONE, ANY_ERROR),
	HOSTILE(region_size, H_SET, UINT64_MAX, FIX_NONE, ANY_ERROR),
	HOSTILE(prod_off, H_SET, 0, FIX_NONE, ANY_ERROR),
	HOSTILE(prod_off, H_SET, 128, FIX_NONE, ANY_ERROR),
	HOSTILE(prod_off, H_SET, 384, FIX_NONE, ANY_ERROR),
	HOSTILE(prod_off, H_SET, 8192, FIX_NONE, ANY_ERROR),
	HOSTILE(prod_off, H_SET, UINT64_MAX, FIX_NONE, ANY_ERROR),
	HOSTILE(cursors_off, H_SET, 0, FIX_NONE, ANY_ERROR),
	HOSTILE(cursors_off, H_SET, 256, FIX_NONE, ANY_ERROR),
	HOSTILE(cursors_off, H_SET, 384, FIX_NONE, ANY_ERROR), /* v2 offset */
	HOSTILE(cursors_off, H_SET, 8192 - 64, FIX_NONE, ANY_ERROR),
	HOSTILE(cursors_off, H_SET, UINT64_MAX, FIX_NONE, ANY_ERROR),
	HOSTILE(ncursors, H_SET, 0, FIX_NONE, ANY_ERROR),
	HOSTILE(ncursors, H_SET, 2, FIX_NONE, ANY_ERROR),
	HOSTILE(ncursors, H_SET, UINT32_MAX, FIX_NONE, ANY_ERROR),
	HOSTILE(slots_off, H_SET, 0, FIX_NONE, ANY_ERROR),
	HOSTILE(slots_off, H_SET, 384, FIX_NONE, ANY_ERROR),
	HOSTILE(slots_off, H_SET, 520, FIX_NONE, ANY_ERROR),
	HOSTILE(slots_off, H_SET, 8192, FIX_NONE, ANY_ERROR),
	HOSTILE(slots_off, H_SET, UINT64_MAX, FIX_NONE, ANY_ERROR),
	HOSTILE(creator_pid, H_SET, 0, FIX_NONE, ANY_ERROR),
	HOSTILE(creator_pid, H_SET, (uint32_t)-1, FIX_NONE, ANY_ERROR),
	HOSTILE(creator_pid, H_SET, (uint32_t)INT32_MIN, FIX_NONE, ANY_ERROR),
	HOSTILE_RES(0, 1),
	HOSTILE_RES(1, 0x80),
	HOSTILE_RES(76, 1),
	HOSTILE_RES(127, 0xff),
	/* Claim records: 27 for MPMC, none for SPSC, right after the slots. */
	HOSTILE(nclaims, H_SET, 1, FIX_NONE, ANY_ERROR),
	HOSTILE(nclaims, H_SET, UINT32_MAX, FIX_NONE, ANY_ERROR),
	HOSTILE(claims_off, H_ADD, 128, FIX_NONE, ANY_ERROR),
	HOSTILE(claims_off, H_SET, UINT64_MAX, FIX_NONE, ANY_ERROR),
	HOSTILE(wakeup, H_SET, 0, FIX_NONE, -EPROTONOSUPPORT),
	HOSTILE(wakeup, H_SET, 3, FIX_NONE, -EPROTONOSUPPORT),
	HOSTILE(wakeup, H_SET, UINT32_MAX, FIX_NONE, -EPROTONOSUPPORT),
	/* The eventfd backend without its eventfds: attach_fd refuses. */
	HOSTILE(wakeup, H_SET, 2, FIX_NONE, -EINVAL),
	HOSTILE(wait_off, H_SET, 0, FIX_NONE, ANY_ERROR),
	HOSTILE(wait_off, H_ADD, 8, FIX_NONE, ANY_ERROR),
	HOSTILE(wait_off, H_SET, UINT64_MAX, FIX_NONE, ANY_ERROR),
	/* Geometry changed consistently (slot_size and region_size follow):
	 * a header describing more than the object holds is a truncation. */
	HOSTILE(capacity, H_SET, HC_CAPACITY * 2, FIX_GEOMETRY, -ENODATA),
	HOSTILE(capacity, H_SET, RBUS_CAPACITY_MAX, FIX_GEOMETRY, -ENODATA),
	HOSTILE(max_msg, H_SET, 200, FIX_GEOMETRY, -ENODATA),
	HOSTILE(max_msg, H_SET, RBUS_MAX_MSG_LIMIT, FIX_GEOMETRY, -ENODATA),
	/* ... and less than it holds: the size does not match. */
	HOSTILE(capacity, H_SET, HC_CAPACITY / 4, FIX_GEOMETRY, ANY_ERROR),
	HOSTILE(max_msg, H_SET, 8, FIX_GEOMETRY, ANY_ERROR),
	/* No structural constraint: legitimately accepted, documented here. */
	HOSTILE(start_index, H_SET, 12345, FIX_NONE, 0),
	HOSTILE(start_index, H_SET, UINT64_MAX, FIX_NONE, 0),
	HOSTILE(created_ns, H_SET, 0, FIX_NONE, 0),
	HOSTILE(created_ns, H_SET, UINT64_MAX, FIX_NONE, 0),
	/* Any live or dead process may have created it. */
	HOSTILE(creator_pid, H_SET, 1, FIX_NONE, 0),
	HOSTILE(creator_pid, H_SET, INT32_MAX, FIX_NONE, 0),
};
#define N_HOSTILES (sizeof(hostiles) / sizeof(hostiles[0]))

static uint64_t align_up(uint64_t x, uint64_t a)
{
	return (x + a - 1) & ~(a - 1);
}

static void hostile_one(const struct hostile *h, enum rbus_kind kind)
{
	struct view v;
	struct rbus_hdr saved;
	uint64_t val;
	int got;

	view_make(&v, kind, HC_CAPACITY, HC_MAX_MSG, 0);
	ck_assert_uint_eq(v.size, HC_SIZE(kind));
	memcpy(&saved, v.hdr, sizeof(saved));
	val = h->mode == H_SET ? h->value : field_get(v.hdr, h->off, h->size) + h->value;
	field_set(v.hdr, h->off, h->size, val);
	if (h->fix == FIX_GEOMETRY) {
		v.hdr->slot_size = rbus_layout_slot_size(v.hdr->max_msg);
		if (v.hdr->kind == RBUS_HDR_KIND_MPMC)
			v.hdr->claims_off = rbus_layout_claims_off(v.hdr->slots_off,
								   v.hdr->capacity,
								   v.hdr->slot_size);
		v.hdr->region_size = align_up(rbus_layout_used(v.hdr->kind, v.hdr->slots_off,
							       v.hdr->capacity, v.hdr->slot_size),
					      v.hdr->page_size);
	}
	v.hdr->checksum = rbus_hdr_checksum(v.hdr);
	got = attach_result(rbus_region_fd(v.r), 0);
	if (h->want == ANY_ERROR)
		ck_assert_msg(got == -EBADMSG || got == -EPROTONOSUPPORT || got == -ENODATA,
			      "%s %s (checksum fixed): attach returned %d (%s), want an error "
			      "(EBADMSG, EPROTONOSUPPORT or ENODATA)", kind_name(kind),
			      h->name, got, got < 0 ? rbus_errname(got) : "-");
	else
		ck_assert_msg(got == h->want, "%s %s (checksum fixed): attach returned %d (%s), "
			      "want %d (%s)", kind_name(kind), h->name, got,
			      got < 0 ? rbus_errname(got) : "-", h->want,
			      h->want < 0 ? rbus_errname(h->want) : "-");

	/* The creator's view was validated before and is not affected. */
	{
		struct rbus_channel *p = open_role(v.r, RBUS_PRODUCER);
		struct rbus_channel *c = open_role(v.r, RBUS_CONSUMER);
		for (uint64_t i = 0; i < 2 * HC_CAPACITY; i++) {
			send_msg(p, HC_MAX_MSG, 0, i);
			recv_msg(c, HC_MAX_MSG, 0, i);
		}
		rbus_channel_close(p);
		rbus_channel_close(c);
	}
	memcpy(v.hdr, &saved, sizeof(saved));
	ck_assert_rbus(attach_result(rbus_region_fd(v.r), 0), 0);
	view_free(&v);
}

/* Loop index: the hostile value; both kinds. */
START_TEST(header_field_hostile_checksummed)
{
	hostile_one(&hostiles[_i], RBUS_KIND_SPSC);
	hostile_one(&hostiles[_i], RBUS_KIND_MPMC);
}
END_TEST

/*
 * Every byte of the header, one at a time, three ways (all bits, bit 0,
 * bit 7), checksum not fixed.  The loop test takes the header 8 bytes (one
 * word) at a time, to keep the number of forked test processes down.
 */
#define EB_BYTES 8

START_TEST(header_every_byte)
{
	static const unsigned char masks[] = { 0xff, 0x01, 0x80 };

	for (int k = 0; k < 2; k++) {
		struct view v;

		view_make(&v, kinds[k], HC_CAPACITY, HC_MAX_MSG, 0);
		for (size_t off = (size_t)_i * EB_BYTES; off < (size_t)(_i + 1) * EB_BYTES; off++) {
			int want = unchecksummed_error(off);
			unsigned char old = v.base[off];

			for (size_t m = 0; m < sizeof(masks); m++) {
				int got;

				v.base[off] = old ^ masks[m];
				got = attach_result(rbus_region_fd(v.r), 0);
				ck_assert_msg(got == want, "%s: header byte %zu ^ 0x%02x: attach "
					      "returned %d (%s), want %s", kind_name(kinds[k]),
					      off, masks[m], got, got < 0 ? rbus_errname(got) : "-",
					      rbus_errname(want));
				/* Also for a caller that accepts unsealed fds. */
				ck_assert_rbus(attach_result(rbus_region_fd(v.r),
							     RBUS_ATTACH_UNSEALED), want);
			}
			v.base[off] = old;
		}
		/* Control: repaired, it attaches. */
		ck_assert_rbus(attach_result(rbus_region_fd(v.r), 0), 0);
		view_free(&v);
	}
}
END_TEST

/* ======================================================================= */
/* 2. Absurd slot lengths                                                   */
/* ======================================================================= */

#define SL_CAPACITY 8u
#define SL_MAX_MSG  64u

enum { LEN_BAD, LEN_SKIP };

static const struct {
	uint32_t len;
	int kind;
} slot_lens[] = {
	{ SL_MAX_MSG + 1, LEN_BAD },
	{ SL_MAX_MSG + 8, LEN_BAD },
	{ 4096, LEN_BAD },
	{ RBUS_MAX_MSG_LIMIT, LEN_BAD },
	{ 0x7fffffff, LEN_BAD },
	/* The skip bit set: passed over, whatever the low bits say. */
	{ RBUS_SLOT_SKIP, LEN_SKIP },
	{ RBUS_SLOT_SKIP | 1, LEN_SKIP },
	{ RBUS_SLOT_SKIP | (SL_MAX_MSG + 1), LEN_SKIP },
	{ 0xffffffff, LEN_SKIP },
};
#define N_SLOT_LENS (sizeof(slot_lens) / sizeof(slot_lens[0]))

START_TEST(slot_len_absurd)
{
	enum rbus_kind kind = kinds[_i % 2];
	uint32_t bad = slot_lens[_i / 2].len;
	uint64_t start = UINT64_C(0xfffffffd);
	struct view v;
	struct rbus_channel *p, *c;
	/* Exactly max_msg bytes: a copy of the bogus length would overflow
	 * it, which ASan reports. */
	unsigned char *buf = malloc(SL_MAX_MSG), *big = malloc(1u << 16);
	unsigned char *b2 = malloc(SL_MAX_MSG);
	struct iovec iov[2];
	const void *pb;

	ck_assert_ptr_nonnull(buf);
	ck_assert_ptr_nonnull(big);
	ck_assert_ptr_nonnull(b2);
	ck_assert_int_eq(slot_lens[_i / 2].kind, LEN_BAD);
	view_make(&v, kind, SL_CAPACITY, SL_MAX_MSG, start);
	p = open_role(v.r, RBUS_PRODUCER);
	c = open_role(v.r, RBUS_CONSUMER);
	send_msg(p, SL_MAX_MSG, 0, 0);
	send_msg(p, SL_MAX_MSG, 0, 1);
	atomic_store(&view_slot(&v, start)->len, bad);

	ck_assert_rbus(rbus_recv(c, buf, SL_MAX_MSG), -EBADMSG);
	ck_assert_rbus(rbus_recv(c, big, 1u << 16), -EBADMSG);
	ck_assert_rbus(rbus_peek(c, &pb), -EBADMSG);
	iov[0].iov_base = buf;
	iov[0].iov_len = SL_MAX_MSG;
	iov[1].iov_base = b2;
	iov[1].iov_len = SL_MAX_MSG;
	ck_assert_rbus(rbus_recv_batch(c, iov, 2), -EBADMSG);
	ck_assert_rbus(rbus_peek_batch(c, iov, 2), -EBADMSG);
	/* The handle is still usable (not left with a peek outstanding). */
	ck_assert_rbus(rbus_release(c), -EINVAL);
	ck_assert_rbus(rbus_recv(c, buf, SL_MAX_MSG), -EBADMSG);

	rbus_channel_close(p);
	rbus_channel_close(c);
	view_free(&v);
	free(buf);
	free(big);
	free(b2);
}
END_TEST

START_TEST(slot_len_skip_marked)
{
	enum rbus_kind kind = kinds[_i % 2];
	uint32_t skip = slot_lens[_i / 2].len;
	uint64_t start = UINT64_C(0xfffffffd);
	struct view v;
	struct rbus_channel *p, *c;
	unsigned char *buf = malloc(SL_MAX_MSG);
	const void *pb;
	ssize_t n;
	uint32_t gp;
	uint64_t gs;

	ck_assert_ptr_nonnull(buf);
	ck_assert_int_eq(slot_lens[_i / 2].kind, LEN_SKIP);
	view_make(&v, kind, SL_CAPACITY, SL_MAX_MSG, start);
	p = open_role(v.r, RBUS_PRODUCER);
	c = open_role(v.r, RBUS_CONSUMER);

	/* recv: a skip-marked slot, then a real message. */
	send_msg(p, SL_MAX_MSG, 0, 0);
	atomic_store(&view_slot(&v, start)->len, skip);
	send_msg(p, SL_MAX_MSG, 0, 1);
	n = rbus_recv(c, buf, SL_MAX_MSG);
	ck_assert_msg(n >= 0, "recv after a skip slot (len 0x%x): %zd (%s)", skip, n,
		      n < 0 ? rbus_errname((int)n) : "-");
	ck_assert_int_eq(th_msg_check(buf, (size_t)n, SL_MAX_MSG, &gp, &gs), 0);
	ck_assert_uint_eq(gs, 1);
	ck_assert_rbus(rbus_recv(c, buf, SL_MAX_MSG), -EAGAIN);

	/* peek: the same. */
	send_msg(p, SL_MAX_MSG, 0, 2);
	atomic_store(&view_slot(&v, start + 2)->len, skip);
	send_msg(p, SL_MAX_MSG, 0, 3);
	n = rbus_peek(c, &pb);
	ck_assert_msg(n >= 0, "peek after a skip slot (len 0x%x): %zd (%s)", skip, n,
		      n < 0 ? rbus_errname((int)n) : "-");
	ck_assert_int_eq(th_msg_check(pb, (size_t)n, SL_MAX_MSG, &gp, &gs), 0);
	ck_assert_uint_eq(gs, 3);
	ck_assert_rbus(rbus_release(c), 1);

	/* A skip slot alone: nothing to take; the next message comes. */
	send_msg(p, SL_MAX_MSG, 0, 4);
	atomic_store(&view_slot(&v, start + 4)->len, skip);
	ck_assert_rbus(rbus_recv(c, buf, SL_MAX_MSG), -EAGAIN);
	send_msg(p, SL_MAX_MSG, 0, 5);
	recv_msg(c, SL_MAX_MSG, 0, 5);
	ck_assert_rbus(rbus_recv(c, buf, SL_MAX_MSG), -EAGAIN);

	rbus_channel_close(p);
	rbus_channel_close(c);
	view_free(&v);
	free(buf);
}
END_TEST

/* Take up to n messages with recv_batch (copy) or peek_batch (zero-copy,
 * released at once); no more than nfrom may come, each intact and carrying
 * seq from[0], from[1], ...  Returns what the call returned. */
static int batch_take(struct rbus_channel *c, bool zc, unsigned n, const uint64_t *from,
		      unsigned nfrom)
{
	static unsigned char bufs[SL_CAPACITY][SL_MAX_MSG];
	struct iovec iov[SL_CAPACITY];
	uint32_t gp;
	uint64_t gs;
	int k;

	ck_assert_uint_le(n, SL_CAPACITY);
	for (unsigned j = 0; j < n; j++)
		iov[j] = (struct iovec){ bufs[j], SL_MAX_MSG };
	k = zc ? rbus_peek_batch(c, iov, n) : rbus_recv_batch(c, iov, n);
	ck_assert_int_le(k, (int)nfrom);
	for (int j = 0; j < k; j++) {
		ck_assert_int_eq(th_msg_check(iov[j].iov_base, iov[j].iov_len, SL_MAX_MSG,
					      &gp, &gs), 0);
		ck_assert_uint_eq(gs, from[j]);
	}
	if (zc && k > 0)
		ck_assert_rbus(rbus_release(c), k);
	return k;
}

/*
 * A batch the ring holds whole, after a batch call that got all it asked
 * for (SPSC then takes it without reading the stamps below the last,
 * ring_spsc.c, "Batches"): a corrupt length in the middle still ends the
 * batch before it and then fails with -EBADMSG, and a skip-marked one is
 * passed over.  Both kinds, copy and zero-copy.
 */
START_TEST(slot_len_mid_batch)
{
	enum rbus_kind kind = kinds[_i % 2];
	bool zc = _i / 2;
	static const uint64_t first[] = { 0, 1 }, rest[] = { 4, 6, 7 };
	uint64_t start = UINT64_C(0xfffffffd);
	struct view v;
	struct rbus_channel *p, *c;
	uint32_t len2;

	view_make(&v, kind, SL_CAPACITY, SL_MAX_MSG, start);
	p = open_role(v.r, RBUS_PRODUCER);
	c = open_role(v.r, RBUS_CONSUMER);
	for (uint64_t i = 0; i < SL_CAPACITY; i++)
		send_msg(p, SL_MAX_MSG, 0, i);
	len2 = atomic_load(&view_slot(&v, start + 2)->len);
	atomic_store(&view_slot(&v, start + 2)->len, SL_MAX_MSG + 1);
	atomic_store(&view_slot(&v, start + 5)->len, RBUS_SLOT_SKIP);
	ck_assert_int_eq(batch_take(c, zc, 1, first, 1), 1);       /* a full batch */
	ck_assert_int_eq(batch_take(c, zc, 4, first + 1, 1), 1);
	ck_assert_int_eq(batch_take(c, zc, 4, first, 0), -EBADMSG);
	ck_assert_int_eq(batch_take(c, zc, 4, first, 0), -EBADMSG);
	/* Repaired (as the producer's next lap would), the rest comes. */
	atomic_store(&view_slot(&v, start + 2)->len, len2);
	ck_assert_int_eq(batch_take(c, zc, 1, (const uint64_t[]){ 2 }, 1), 1);
	ck_assert_int_eq(batch_take(c, zc, 1, (const uint64_t[]){ 3 }, 1), 1);
	ck_assert_int_eq(batch_take(c, zc, 4, rest, 3), 3);        /* past the skip */
	ck_assert_int_eq(batch_take(c, zc, 4, rest, 0), -EAGAIN);
	rbus_channel_close(p);
	rbus_channel_close(c);
	view_free(&v);
}
END_TEST

/*
 * SPSC: a stamp corrupted below a committed slot.  A batch that reaches
 * the committed slot, after a batch call that got all it asked for, reads
 * only that slot's stamp and takes the one below as the message it still
 * is; one message at a time stops at it, and so does a batch after one
 * that came up short.  Either way nothing is read out of bounds and every
 * length is checked.
 */
START_TEST(spsc_stamp_below_committed)
{
	bool zc = _i;
	static const uint64_t all[] = { 0, 1, 2, 3, 4, 5, 6, 7 };
	struct view v;
	struct rbus_channel *p, *c;
	unsigned char buf[SL_MAX_MSG];

	view_make(&v, RBUS_KIND_SPSC, SL_CAPACITY, SL_MAX_MSG, 0);
	p = open_role(v.r, RBUS_PRODUCER);
	c = open_role(v.r, RBUS_CONSUMER);
	for (uint64_t i = 0; i < 4; i++)
		send_msg(p, SL_MAX_MSG, 0, i);
	atomic_store(&view_slot(&v, 1)->stamp, 77);
	ck_assert_int_eq(batch_take(c, zc, 1, all, 1), 1);         /* a full batch */
	ck_assert_rbus(rbus_recv(c, buf, sizeof(buf)), -EAGAIN);
	ck_assert_int_eq(batch_take(c, zc, 3, all + 1, 3), 3);
	ck_assert_int_eq(batch_take(c, zc, 3, all + 1, 0), -EAGAIN);
	/* Short of its batch: slot by slot, which stops at the stamp. */
	for (uint64_t i = 4; i < 8; i++)
		send_msg(p, SL_MAX_MSG, 0, i);
	atomic_store(&view_slot(&v, 5)->stamp, 77);
	ck_assert_int_eq(batch_take(c, zc, 3, all + 4, 1), 1);
	ck_assert_int_eq(batch_take(c, zc, 3, all + 5, 0), -EAGAIN);
	rbus_channel_close(p);
	rbus_channel_close(c);
	view_free(&v);
}
END_TEST

/* ======================================================================= */
/* 3. Corrupt indices and stamps                                            */
/* ======================================================================= */

START_TEST(spsc_impossible_head)
{
	const uint32_t cap = 16;
	uint64_t start = UINT64_C(0) - 7; /* across the 64-bit wrap */
	struct view v;
	struct rbus_channel *p, *c, *x = NULL;
	struct rbus_region_info info;
	unsigned char buf[64] = { 0 };
	int rc = 0;
	uint32_t sent = 0;

	view_make(&v, RBUS_KIND_SPSC, cap, 64, start);
	p = open_role(v.r, RBUS_PRODUCER);
	c = open_role(v.r, RBUS_CONSUMER);
	/* Head a ring and 5 beyond the tail: impossible. */
	atomic_store(&v.cons->index, start + cap + 5);
	/* The producer finds out when it must re-read the head. */
	for (uint32_t i = 0; i <= cap; i++) {
		rc = rbus_send(p, buf, 8);
		if (rc)
			break;
		sent++;
	}
	ck_assert_msg(rc == -EBADMSG, "send with the head a ring ahead returned %d (%s) "
		      "after %u sends, want -EBADMSG", rc, rc < 0 ? rbus_errname(rc) : "-",
		      sent);
	ck_assert_uint_le(sent, cap);
	ck_assert_rbus(rbus_send(p, buf, 8), -EBADMSG);

	/* New producer or consumer on impossible indices: refused, role free. */
	rbus_channel_close(p);
	rbus_channel_close(c);
	rbus_region_info(v.r, &info);
	atomic_store(&v.cons->index, info.tail + cap + 5);
	ck_assert_rbus(rbus_channel_open(v.r, RBUS_PRODUCER, 0, &x), -EBADMSG);
	ck_assert_ptr_null(x);
	ck_assert_rbus(rbus_channel_open(v.r, RBUS_CONSUMER, 0, &x), -EBADMSG);
	ck_assert_ptr_null(x);
	atomic_store(&v.cons->index, info.tail - cap - 1);
	ck_assert_rbus(rbus_channel_open(v.r, RBUS_PRODUCER, 0, &x), -EBADMSG);
	ck_assert_rbus(rbus_channel_open(v.r, RBUS_CONSUMER, 0, &x), -EBADMSG);
	rbus_region_info(v.r, &info);
	ck_assert_uint_eq(info.producers, 0);
	ck_assert_uint_eq(info.consumers, 0);

	/* A head behind the producer by more than a ring, found on refresh. */
	atomic_store(&v.cons->index, info.tail);
	p = open_role(v.r, RBUS_PRODUCER);
	atomic_store(&v.cons->index, info.tail - cap - 1);
	rc = 0;
	for (uint32_t i = 0; i <= cap && rc == 0; i++)
		rc = rbus_send(p, buf, 8);
	ck_assert_rbus(rc, -EBADMSG);
	rbus_channel_close(p);
	view_free(&v);
}
END_TEST

/* attach checks the distance of head and tail (either may lead by a ring). */
START_TEST(attach_impossible_indices)
{
	enum rbus_kind kind = kinds[_i];
	const uint32_t cap = 16;
	uint64_t base = UINT64_C(0xfffffff0);
	struct view v;
	int fd;

	view_make(&v, kind, cap, 64, 0);
	fd = rbus_region_fd(v.r);

	atomic_store(&v.cons->index, base);
	atomic_store(&v.prod->index, base + cap);           /* full: fine */
	ck_assert_rbus(attach_result(fd, 0), 0);
	atomic_store(&v.prod->index, base - cap);           /* head leads by a ring */
	ck_assert_rbus(attach_result(fd, 0), 0);
	atomic_store(&v.prod->index, base + cap + 1);
	ck_assert_rbus(attach_result(fd, 0), -EBADMSG);
	atomic_store(&v.prod->index, base - cap - 1);
	ck_assert_rbus(attach_result(fd, 0), -EBADMSG);
	atomic_store(&v.prod->index, base + (UINT64_C(1) << 63));
	ck_assert_rbus(attach_result(fd, 0), -EBADMSG);
	atomic_store(&v.prod->index, UINT64_C(0x0123456789abcdef));
	atomic_store(&v.cons->index, UINT64_C(0xfedcba9876543210));
	ck_assert_rbus(attach_result(fd, 0), -EBADMSG);
	ck_assert_rbus(attach_result(fd, RBUS_ATTACH_UNSEALED), -EBADMSG);
	view_free(&v);
}
END_TEST

/* Is rc a documented result of a data call, with a length <= max? */
static bool rc_ok(long long rc, long long max)
{
	return (rc >= 0 && rc <= max) || rc == -EAGAIN || rc == -EBADMSG ||
	       rc == -EMSGSIZE || rc == -EBUSY;
}

#define CHECK_RC(what, rc, max)                                                \
	do {                                                                   \
		long long rc_ = (long long)(rc);                               \
		if (!rc_ok(rc_, (long long)(max)))                              \
			ck_abort_msg("%s returned %lld (%s), not a documented result", \
				     what, rc_, rc_ < 0 ? rbus_errname((int)rc_) : "-"); \
	} while (0)

#define EX_BATCH 4

/* Buffers for exercise(): heap, exact sizes, so ASan sees any overrun. */
struct ex_bufs {
	unsigned char *msg;          /* max_msg bytes to send */
	unsigned char *in[EX_BATCH]; /* max_msg bytes each */
	unsigned char *small;        /* 16 bytes */
};

static void ex_bufs_init(struct ex_bufs *b, uint32_t max_msg)
{
	size_t sz = max_msg ? max_msg : 1;

	b->msg = malloc(sz);
	ck_assert_ptr_nonnull(b->msg);
	memset(b->msg, 0x5a, sz);
	for (int i = 0; i < EX_BATCH; i++) {
		b->in[i] = malloc(sz);
		ck_assert_ptr_nonnull(b->in[i]);
	}
	b->small = malloc(16);
	ck_assert_ptr_nonnull(b->small);
}

static void ex_bufs_free(struct ex_bufs *b)
{
	free(b->msg);
	for (int i = 0; i < EX_BATCH; i++)
		free(b->in[i]);
	free(b->small);
}

/*
 * Run `iters` calls on producer p and consumer c, cycling through every data
 * call, and assert each result is documented and each length <= max_msg.
 * Peeked and reserved bytes are touched, so a pointer outside the region
 * would fault.  Counts calls in *progress if set.  Returns how many calls
 * succeeded.
 */
static uint64_t exercise(struct rbus_channel *p, struct rbus_channel *c,
			 uint32_t max_msg, uint64_t iters, uint64_t seed,
			 struct ex_bufs *b, _Atomic uint64_t *progress)
{
	uint64_t ok = 0, s = seed | 1;
	volatile unsigned sink = 0;

	for (uint64_t i = 0; i < iters; i++) {
		uint64_t r = rng_next(&s);
		size_t len = max_msg ? (size_t)(r >> 32) % (max_msg + 1) : 0;
		struct iovec iov[EX_BATCH];
		const void *pb;
		void *wb;
		long long rc;
		unsigned n = 1 + (unsigned)(r >> 8) % EX_BATCH;

		switch (i % 9) {
		case 0:
			rc = rbus_send(p, b->msg, len);
			CHECK_RC("rbus_send", rc, 0);
			break;
		case 1:
			rc = rbus_recv(c, b->in[0], max_msg);
			CHECK_RC("rbus_recv", rc, max_msg);
			break;
		case 2:
			rc = rbus_peek(c, &pb);
			CHECK_RC("rbus_peek", rc, max_msg);
			if (rc >= 0) {
				for (long long k = 0; k < rc; k++)
					sink += ((const volatile unsigned char *)pb)[k];
				ck_assert_rbus(rbus_release(c), 1);
			}
			break;
		case 3:
			for (unsigned k = 0; k < n; k++) {
				iov[k].iov_base = b->msg;
				iov[k].iov_len = (len + k) % (max_msg + 1);
			}
			rc = rbus_send_batch(p, iov, n);
			CHECK_RC("rbus_send_batch", rc, n);
			ck_assert_int_ne(rc, 0);
			break;
		case 4:
			for (unsigned k = 0; k < n; k++) {
				iov[k].iov_base = b->in[k];
				iov[k].iov_len = max_msg;
			}
			rc = rbus_recv_batch(c, iov, n);
			CHECK_RC("rbus_recv_batch", rc, n);
			ck_assert_int_ne(rc, 0);
			for (long long k = 0; k < rc; k++)
				ck_assert_uint_le(iov[k].iov_len, max_msg);
			break;
		case 5:
			rc = rbus_reserve(p, &wb);
			CHECK_RC("rbus_reserve", rc, 0);
			if (rc == 0) {
				memset(wb, (int)i, max_msg);
				ck_assert_rbus(rbus_commit(p, len), 0);
			}
			break;
		case 6:
			rc = rbus_peek_batch(c, iov, n);
			CHECK_RC("rbus_peek_batch", rc, n);
			ck_assert_int_ne(rc, 0);
			if (rc > 0) {
				for (long long k = 0; k < rc; k++) {
					ck_assert_uint_le(iov[k].iov_len, max_msg);
					for (size_t j = 0; j < iov[k].iov_len; j++)
						sink += ((const volatile unsigned char *)
							 iov[k].iov_base)[j];
				}
				ck_assert_rbus(rbus_release(c), rc);
			}
			break;
		case 7:
			/* A small buffer: -EMSGSIZE for longer messages. */
			rc = rbus_recv(c, b->small, 16);
			CHECK_RC("rbus_recv(cap 16)", rc, 16);
			break;
		default:
			rc = rbus_reserve_batch(p, iov, n);
			CHECK_RC("rbus_reserve_batch", rc, n);
			ck_assert_int_ne(rc, 0);
			if (rc > 0) {
				for (long long k = 0; k < rc; k++) {
					ck_assert_uint_eq(iov[k].iov_len, max_msg);
					memset(iov[k].iov_base, (int)k, max_msg);
					iov[k].iov_len = len;
				}
				/* Commit some, abandon the rest. */
				ck_assert_rbus(rbus_commit_batch(p, iov, (unsigned)rc - (rc > 1)),
					       rc - (rc > 1));
			}
			break;
		}
		if (rc >= 0)
			ok++;
		if (progress)
			atomic_fetch_add_explicit(progress, 1, memory_order_relaxed);
	}
	(void)sink;
	return ok;
}

/* Calls of each of exercise()'s 9 kinds per round. */
#define GI_PER_OP 10000
#define GI_OPS    9

/* Garbage head and tail: every call returns, with a documented result. */
START_TEST(garbage_indices)
{
	enum rbus_kind kind = kinds[_i % 2];
	uint64_t seed = UINT64_C(0x1234567) * (uint64_t)(_i + 1), s = seed;
	struct view v;
	struct rbus_channel *p, *c;
	struct ex_bufs b;

	ex_bufs_init(&b, 48);
	view_make(&v, kind, 16, 48, 0);
	p = open_role(v.r, RBUS_PRODUCER);
	c = open_role(v.r, RBUS_CONSUMER);
	exercise(p, c, 48, 100, seed, &b, NULL); /* some honest traffic first */
	for (int round = 0; round < 3; round++) {
		uint64_t tail = rng_next(&s), d = rng_next(&s) & 63;

		/* Both random; the head ahead of the tail; the head behind it
		 * (by up to 4 rings: some possible, most not). */
		atomic_store(&v.prod->index, tail);
		atomic_store(&v.cons->index, round == 0 ? rng_next(&s) :
					     round == 1 ? tail + d : tail - d);
		exercise(p, c, 48, th_scaled(GI_OPS * GI_PER_OP), seed + (uint64_t)round, &b, NULL);
	}
	rbus_channel_close(p);
	rbus_channel_close(c);
	view_free(&v);
	ex_bufs_free(&b);
}
END_TEST

/* Every slot's stamp and length set to garbage, some of it plausible. */
static void scribble_slots(struct view *v, uint64_t *s)
{
	uint64_t head = atomic_load(&v->cons->index);
	uint64_t tail = atomic_load(&v->prod->index);

	for (uint64_t k = 0; k < v->capacity; k++) {
		struct rbus_slot *sl = view_slot(v, head + k);
		uint64_t r = rng_next(s);
		uint32_t stamp, len;

		switch (r % 6) {
		case 0: stamp = (uint32_t)(r >> 32); break;          /* random */
		case 1: stamp = (uint32_t)(head + k + 1); break;     /* committed */
		case 2: stamp = (uint32_t)(tail + k); break;         /* free */
		case 3: stamp = (uint32_t)(head + k + v->capacity); break;
		case 4: stamp = (uint32_t)(head + k - v->capacity); break;
		default: stamp = (uint32_t)(head + k + 1 + (r >> 60)); break;
		}
		switch ((r >> 8) % 6) {
		case 0: len = (uint32_t)(r >> 16); break;
		case 1: len = v->max_msg + 1; break;
		case 2: len = RBUS_SLOT_SKIP | (uint32_t)(r >> 40); break;
		case 3: len = 0x7fffffff; break;
		default: len = (uint32_t)((r >> 20) % (v->max_msg + 1)); break;
		}
		atomic_store(&sl->stamp, stamp);
		atomic_store(&sl->len, len);
	}
}

START_TEST(garbage_stamps)
{
	enum rbus_kind kind = kinds[_i % 2];
	uint64_t seed = UINT64_C(0xabcdef) * (uint64_t)(_i + 3), s = seed;
	struct view v;
	struct rbus_channel *p, *c;
	struct ex_bufs b;

	ex_bufs_init(&b, 48);
	view_make(&v, kind, 16, 48, UINT64_C(0xfffffff8));
	p = open_role(v.r, RBUS_PRODUCER);
	c = open_role(v.r, RBUS_CONSUMER);
	exercise(p, c, 48, 100, seed, &b, NULL);
	for (int round = 0; round < 4; round++) {
		scribble_slots(&v, &s);
		exercise(p, c, 48, th_scaled(GI_OPS * GI_PER_OP / 4), seed + (uint64_t)round,
			 &b, NULL);
	}
	rbus_channel_close(p);
	rbus_channel_close(c);
	view_free(&v);
	ex_bufs_free(&b);
}
END_TEST

/* ======================================================================= */
/* 4. A hostile peer, concurrently                                          */
/* ======================================================================= */

#define HP_CAPACITY 16u
#define HP_MAX_MSG  64u
#define HP_PACE     3u     /* one hostile write per this many parent calls */
#define HP_CHUNK    4096u  /* parent calls between repairs of the ring */

/* Shared between the parent and the hostile child (MAP_SHARED). */
struct hostile_shared {
	_Atomic uint64_t progress;   /* parent calls done */
	_Atomic int stop;            /* the parent is done */
	_Atomic uint64_t actions;    /* hostile writes done */
};

struct hostile_arg {
	struct view *v;
	uint64_t iters, seed;
	int ready_w;
	pid_t parent;
	struct hostile_shared *sh;
};

/*
 * The hostile peer: up to `iters` writes of garbage, or plausible but wrong
 * values, into the indices, stamps, lengths and bytes.  Paced by the
 * parent's progress counter (no sleeping), so the garbage keeps coming for
 * the whole of the parent's loop instead of all at its start.
 */
static int hostile_child(void *varg)
{
	struct hostile_arg *a = varg;
	struct view *v = a->v;
	uint64_t s = a->seed | 1, i, last = 0;

	if (write(a->ready_w, "r", 1) != 1)
		return 10;
	for (i = 0; i < a->iters; i++) {
		uint64_t r = rng_next(&s), head, tail, k, spins = 0;
		struct rbus_slot *sl;

		for (;;) {
			uint64_t now = atomic_load_explicit(&a->sh->progress,
							    memory_order_relaxed);
			if (now - last >= HP_PACE) {
				last = now;
				break;
			}
			if (atomic_load_explicit(&a->sh->stop, memory_order_relaxed))
				return 0;
			/* Leave the CPU to the parent if it needs it. */
			if ((++spins & 63) == 0)
				sched_yield();
			/* Never outlive the test process (Check's timeout). */
			if ((spins & 0xffff) == 0 && getppid() != a->parent)
				return 11;
		}
		head = atomic_load_explicit(&v->cons->index, memory_order_relaxed);
		tail = atomic_load_explicit(&v->prod->index, memory_order_relaxed);
		k = (r >> 8) % v->capacity;
		sl = view_slot(v, head + k);
		switch (r % 16) {
		case 0: /* indices: random, or plausible but wrong */
			atomic_store_explicit(&v->prod->index, (r & 0x100) ? r * 7 :
					      head + (r >> 40) % (2 * v->capacity),
					      memory_order_relaxed);
			break;
		case 1:
			atomic_store_explicit(&v->cons->index, (r & 0x100) ? r * 13 :
					      tail - (r >> 40) % (2 * v->capacity),
					      memory_order_relaxed);
			break;
		case 2: /* stamps: random */
			atomic_store_explicit(&sl->stamp, (uint32_t)(r >> 32), memory_order_relaxed);
			break;
		case 3: case 4: case 5: /* stamps: "committed" at the head */
			atomic_store_explicit(&sl->stamp, (uint32_t)(head + k + 1),
					      memory_order_release);
			break;
		case 6: case 7: /* stamps: "free" at the tail */
			atomic_store_explicit(&view_slot(v, tail + k)->stamp,
					      (uint32_t)(tail + k), memory_order_release);
			break;
		case 8: /* stamps: a lap ahead or behind */
			atomic_store_explicit(&sl->stamp, (uint32_t)(head + k + ((r & 0x100) ?
					      v->capacity : -v->capacity)), memory_order_relaxed);
			break;
		case 9: /* lengths: random */
			atomic_store_explicit(&sl->len, (uint32_t)(r >> 32), memory_order_relaxed);
			break;
		case 10: case 11: /* lengths: just too long, or huge */
			atomic_store_explicit(&sl->len, (r & 0x100) ? v->max_msg + 1 : 0x7fffffff,
					      memory_order_relaxed);
			break;
		case 12: /* lengths: skipped */
			atomic_store_explicit(&sl->len, RBUS_SLOT_SKIP | (uint32_t)(r >> 48),
					      memory_order_relaxed);
			break;
		case 13: case 14: /* lengths: plausible */
			atomic_store_explicit(&sl->len, (uint32_t)((r >> 32) % (v->max_msg + 1)),
					      memory_order_relaxed);
			break;
		default: /* payload bytes */
			sl->data[(r >> 16) % v->max_msg] = (unsigned char)r;
			break;
		}
		atomic_fetch_add_explicit(&a->sh->actions, 1, memory_order_relaxed);
	}
	return 0;
}

/* Make the ring sane again at index x (as a fresh region would be), and
 * reopen the handles, so that honest traffic flows until the peer breaks
 * it again.  The peer may write once meanwhile: opening is retried. */
static void repair(struct view *v, struct rbus_channel **p, struct rbus_channel **c,
		   uint64_t x)
{
	int err = -1;

	for (int tries = 0; tries < 100 && err; tries++) {
		rbus_channel_close(*p);
		rbus_channel_close(*c);
		*p = *c = NULL;
		atomic_store(&v->prod->index, x);
		atomic_store(&v->cons->index, x);
		for (uint64_t k = 0; k < v->capacity; k++) {
			atomic_store(&view_slot(v, x + k)->stamp, (uint32_t)(x + k));
			atomic_store(&view_slot(v, x + k)->len, 0);
		}
		err = rbus_channel_open(v->r, RBUS_PRODUCER, 0, p);
		if (!err)
			err = rbus_channel_open(v->r, RBUS_CONSUMER, 0, c);
		ck_assert_msg(err == 0 || err == -EBADMSG, "open during repair: %d (%s)",
			      err, rbus_errname(err));
	}
	ck_assert_msg(err == 0, "could not reopen the ring after repairing it");
}

START_TEST(hostile_peer_concurrent)
{
	enum rbus_kind kind = kinds[_i];
	struct view v;
	struct rbus_channel *p, *c;
	struct hostile_arg a;
	struct hostile_shared *sh;
	struct ex_bufs b;
	uint64_t total = th_scaled(1000000), done = 0, ok = 0, s = 99, x;
	int ready[2];
	char byte;
	pid_t pid;

	ex_bufs_init(&b, HP_MAX_MSG);
	view_make(&v, kind, HP_CAPACITY, HP_MAX_MSG, 0);
	p = open_role(v.r, RBUS_PRODUCER);
	c = open_role(v.r, RBUS_CONSUMER);
	sh = th_shared_alloc(sizeof(*sh));
	ck_assert_int_eq(pipe2(ready, O_CLOEXEC), 0);
	a.v = &v;
	a.iters = th_scaled(2000000);
	a.seed = UINT64_C(0x5eed) + (uint64_t)_i;
	a.ready_w = ready[1];
	a.parent = getpid();
	a.sh = sh;
	pid = th_fork(hostile_child, &a);
	close(ready[1]);
	ck_assert_int_eq(read(ready[0], &byte, 1), 1);
	close(ready[0]);

	while (done < total) {
		uint64_t n = total - done < HP_CHUNK ? total - done : HP_CHUNK;

		ok += exercise(p, c, HP_MAX_MSG, n, UINT64_C(0xfeed) + done, &b, &sh->progress);
		done += n;
		x = rng_next(&s);
		repair(&v, &p, &c, x >> (x % 64)); /* anywhere, often near 0 */
	}

	atomic_store(&sh->stop, 1);
	th_wait_ok(pid);
	/* The peer did write, and honest traffic went through between the
	 * repairs (how much of each depends on the scheduler, so only "some"
	 * is asserted: this test is about surviving, not about throughput). */
	ck_assert_uint_gt(atomic_load(&sh->actions), 0);
	ck_assert_uint_gt(ok, 0);
	th_shared_free(sh, sizeof(*sh));
	rbus_channel_close(p);
	rbus_channel_close(c);
	view_free(&v);
	ex_bufs_free(&b);
}
END_TEST

/* ======================================================================= */
/* 5. Header rewritten after attach                                         */
/* ======================================================================= */

START_TEST(header_rewritten_after_attach)
{
	enum rbus_kind kind = kinds[_i];
	struct view v;
	struct rbus_region *a = NULL;
	struct rbus_region_info info;
	struct rbus_channel *p, *c;
	unsigned char buf[HC_MAX_MSG + 8] = { 0 };

	view_make(&v, kind, HC_CAPACITY, HC_MAX_MSG, 0);
	ck_assert_rbus(rbus_region_attach_fd(rbus_region_fd(v.r), 0, &a), 0);
	p = open_role(a, RBUS_PRODUCER);

	/* A peer rewrites the geometry, even with a valid checksum. */
	v.hdr->capacity = 1u << 31;
	v.hdr->slot_size = 0xfffffff0u;
	v.hdr->max_msg = 0x7fffffff;
	v.hdr->region_size = UINT64_MAX;
	v.hdr->slots_off = UINT64_C(1) << 40;
	v.hdr->checksum = rbus_hdr_checksum(v.hdr);

	/* Channels opened before and after keep the validated geometry. */
	c = open_role(a, RBUS_CONSUMER);
	ck_assert_uint_eq(rbus_channel_max_msg(c), HC_MAX_MSG);
	ck_assert_uint_eq(rbus_channel_max_msg(p), HC_MAX_MSG);
	rbus_region_info(a, &info);
	ck_assert_uint_eq(info.capacity, HC_CAPACITY);
	ck_assert_uint_eq(info.max_msg, HC_MAX_MSG);
	ck_assert_uint_eq(info.slot_size, rbus_layout_slot_size(HC_MAX_MSG));
	ck_assert_uint_eq(info.size, v.size);
	for (uint64_t i = 0; i < 4 * HC_CAPACITY; i++) {
		send_msg(p, HC_MAX_MSG, 2, i);
		if (i % 3 == 2) {
			recv_msg(c, HC_MAX_MSG, 2, i - 2);
			recv_msg(c, HC_MAX_MSG, 2, i - 1);
			recv_msg(c, HC_MAX_MSG, 2, i);
		}
	}
	recv_msg(c, HC_MAX_MSG, 2, 4 * HC_CAPACITY - 1);
	ck_assert_rbus(rbus_recv(c, buf, sizeof(buf)), -EAGAIN);
	/* The validated max_msg still bounds messages (on a ring with room:
	 * which of -EAGAIN and -EMSGSIZE wins on a full ring is unspecified). */
	ck_assert_rbus(rbus_send(p, buf, HC_MAX_MSG + 1), -EMSGSIZE);
	/* Fill exactly to the validated capacity. */
	for (uint32_t i = 0; i < HC_CAPACITY; i++)
		ck_assert_rbus(rbus_send(p, buf, 1), 0);
	ck_assert_rbus(rbus_send(p, buf, 1), -EAGAIN);
	for (uint32_t i = 0; i < HC_CAPACITY; i++)
		ck_assert_rbus(rbus_recv(c, buf, sizeof(buf)), 1);
	ck_assert_rbus(rbus_recv(c, buf, sizeof(buf)), -EAGAIN);

	/* A new attach sees the hostile header and refuses it. */
	{
		int got = attach_result(rbus_region_fd(v.r), 0);
		ck_assert_msg(got == -EBADMSG || got == -EPROTONOSUPPORT || got == -ENODATA,
			      "attach of the rewritten header returned %d", got);
	}
	rbus_channel_close(p);
	rbus_channel_close(c);
	rbus_region_close(a);
	view_free(&v);
}
END_TEST

/* ======================================================================= */

static Suite *corrupt_suite(void)
{
	Suite *s = suite_create("corrupt");
	TCase *tc;

	tc = tcase_create("header-fields");
	tcase_add_checked_fixture(tc, fd_setup, fd_teardown);
	tcase_add_loop_test(tc, header_field_bit_flip, 0, (int)N_FIELDS);
	tcase_add_loop_test(tc, header_field_hostile_checksummed, 0, (int)N_HOSTILES);
	suite_add_tcase(s, tc);

	tc = tcase_create("header-bytes");
	tcase_add_checked_fixture(tc, fd_setup, fd_teardown);
	tcase_add_loop_test(tc, header_every_byte, 0, RBUS_HDR_SIZE / EB_BYTES);
	suite_add_tcase(s, tc);

	tc = tcase_create("slot-len");
	tcase_add_checked_fixture(tc, fd_setup, fd_teardown);
	for (size_t i = 0; i < N_SLOT_LENS; i++) {
		if (slot_lens[i].kind == LEN_BAD)
			tcase_add_loop_test(tc, slot_len_absurd, (int)i * 2, (int)i * 2 + 2);
		else
			tcase_add_loop_test(tc, slot_len_skip_marked, (int)i * 2, (int)i * 2 + 2);
	}
	tcase_add_loop_test(tc, slot_len_mid_batch, 0, 4);
	tcase_add_loop_test(tc, spsc_stamp_below_committed, 0, 2);
	suite_add_tcase(s, tc);

	tc = tcase_create("indices");
	tcase_set_timeout(tc, 60);
	tcase_add_checked_fixture(tc, fd_setup, fd_teardown);
	tcase_add_test(tc, spsc_impossible_head);
	tcase_add_loop_test(tc, attach_impossible_indices, 0, 2);
	tcase_add_loop_test(tc, garbage_indices, 0, 4);
	tcase_add_loop_test(tc, garbage_stamps, 0, 4);
	suite_add_tcase(s, tc);

	tc = tcase_create("hostile-peer");
	tcase_set_timeout(tc, 60);
	tcase_add_checked_fixture(tc, fd_setup, fd_teardown);
	tcase_add_loop_test(tc, hostile_peer_concurrent, 0, 2);
	suite_add_tcase(s, tc);

	tc = tcase_create("header-rewritten");
	tcase_add_checked_fixture(tc, fd_setup, fd_teardown);
	tcase_add_loop_test(tc, header_rewritten_after_attach, 0, 2);
	suite_add_tcase(s, tc);

	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(corrupt_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
