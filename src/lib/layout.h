/* SPDX-License-Identifier: MIT */
/*
 * layout.h - the shared-memory format of a ringbus region (ABI version 4).
 *
 * This file is the single definition of what lies in shared memory.  Nothing
 * here is a pointer: every reference is an offset from the start of the
 * region, so every process may map it at any address.  Every field written
 * after creation is an atomic; the header is written once, before the fd is
 * handed to anyone, and is read only through a private copy that attach
 * validates (see region.c).
 *
 *   offset  size            what
 *   0       256             struct rbus_hdr: identity, geometry, checksum
 *   256     256             struct rbus_side: producer side (tail ...)
 *   512     256 * ncursors  struct rbus_side: consumer cursor(s) (head ...)
 *   wait    128             struct rbus_wait: futex words, sleepers, counters
 *   slots   capacity*slot   the slots, slots_off = 896 for ncursors == 1
 *   claims  2 * 27 * 128    MPMC only: struct rbus_claim per lease entry,
 *                           producers' then consumers', at the end of the
 *                           slots rounded up to 128 (0 for SPSC)
 *   ...     padding up to a whole page (4 KiB, or the huge page size)
 *
 * Each side block is two 128-byte blocks, so the producer's and the
 * consumer's hot words never share a cache line, nor the pair of lines the
 * adjacent-line prefetcher fetches together.  The first block holds the
 * index alone: the words a peer reads when it finds nothing to do
 * (`attached`, `opened`) are in the second, so that reading them does not
 * take the line an MPMC side writes with a CAS for every message.  The
 * wait block is read by both sides after every publish but written only
 * when someone sleeps or wakes, so it stays shared in both caches: reading
 * it costs a hit.
 *
 * Indices.  A message's index is a 64-bit counter that starts at the
 * region's start_index and grows by one per slot.  Slot of index i is
 * i & (capacity - 1).  All index arithmetic is unsigned and modulo 2^64:
 * "tail - head" is the fill level even across the wrap from 2^64-1 to 0,
 * as long as the true distance is < 2^63, which capacity <= 2^28 assures.
 *
 * Slot stamps.  A slot begins with a 32-bit stamp; it holds the low 32 bits
 * of an index and tells the slot's state without the index words:
 *   stamp == (u32)i          slot is free to be written as index i
 *   stamp == (u32)(i + 1)    slot holds the committed message of index i
 * A consumer of index i that finds stamp (u32)(i+1) may read the message
 * (SPSC and MPMC).  MPMC consumers then store (u32)(i + capacity), freeing the
 * slot for index i + capacity; SPSC needs no such store (its producer learns
 * of free slots from the head index) and the consumer never writes a slot.
 * Stamps compare as int32 differences; 32 bits are enough because the states
 * a slot can be in at once differ by at most 2*capacity <= 2^29.  At
 * creation, slot s gets the stamp of the first index that maps to it, so no
 * slot looks committed, whatever start_index is (including near 2^32).
 */
#ifndef RINGBUS_LAYOUT_H
#define RINGBUS_LAYOUT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define RBUS_MAGIC        UINT64_C(0x0031305355424752) /* "RGBUS01\0" LE */
#define RBUS_ABI_VERSION  5u
#define RBUS_HDR_SIZE     256u
#define RBUS_SIDE_SIZE    256u
#define RBUS_WAIT_SIZE    128u
#define RBUS_SLOT_HDR     8u   /* stamp + len; payload is 8-byte aligned */
#define RBUS_SLOT_ALIGN   8u
#define RBUS_PAGE_SIZE    4096u
#define RBUS_SIDE_LEASES  27u  /* MPMC lease entries per side block */
#define RBUS_CLAIM_SIZE   128u /* one claim record: a pair of lines alone */
#define RBUS_CLAIM_HELD   0x80000000u /* claim record: its CAS succeeded */
#define RBUS_TOKEN_LOCAL  1u   /* owner token of a handle opened without
				  the broker; the broker's tokens are >= 2 */

/* Kinds in the header.  3 and 4 are reserved for the broadcast ring (one
 * producer, one cursor per consumer in the cursor array) and future kinds;
 * today's library refuses them with -EPROTONOSUPPORT. */
#define RBUS_HDR_KIND_SPSC 1u
#define RBUS_HDR_KIND_MPMC 2u

/* Header flags: the RBUS_REGION_* creation flags (bits 0..2), plus: */
#define RBUS_HDR_F_SHM     (1u << 16) /* a POSIX shm object, not a memfd */
/* Bit 17 is reserved for lossy channels (keep newest); refused today. */
#define RBUS_HDR_F_KNOWN   (0x7u | RBUS_HDR_F_SHM)

/* Wakeup backends in the header. */
#define RBUS_HDR_WAKE_FUTEX   1u  /* futex words in the wait block */
#define RBUS_HDR_WAKE_EVENTFD 2u  /* two eventfds passed beside the region fd */

/* Slot length word: the low 31 bits are the message length.  The top bit
 * marks a skipped slot, published by a producer that gave up a claimed MPMC
 * slot (abandoned reservation); consumers pass over it. */
#define RBUS_SLOT_SKIP     UINT32_C(0x80000000)

/*
 * The header: written once by the creator before the region is shared,
 * never modified afterwards.  Readers copy it, then validate the copy.
 */
struct rbus_hdr {
	uint64_t magic;          /* RBUS_MAGIC */
	uint32_t abi_version;    /* RBUS_ABI_VERSION */
	uint32_t hdr_size;       /* RBUS_HDR_SIZE */
	uint32_t kind;           /* RBUS_HDR_KIND_* */
	uint32_t flags;          /* RBUS_HDR_F_* */
	uint32_t capacity;       /* slots, power of two */
	uint32_t max_msg;        /* bytes */
	uint32_t slot_size;      /* RBUS_SLOT_HDR + max_msg, rounded up to 8 */
	uint32_t page_size;      /* granule region_size is a multiple of */
	uint64_t region_size;    /* bytes of the object */
	uint64_t prod_off;       /* struct rbus_side of the producers */
	uint64_t cursors_off;    /* first consumer struct rbus_side */
	uint32_t ncursors;       /* 1 for SPSC and MPMC */
	int32_t creator_pid;
	uint64_t slots_off;
	uint64_t start_index;    /* first index ever used */
	uint64_t created_ns;     /* CLOCK_REALTIME */
	uint64_t wait_off;       /* struct rbus_wait */
	uint32_t wakeup;         /* RBUS_HDR_WAKE_* */
	uint32_t nclaims;        /* claim records per side: RBUS_SIDE_LEASES
				    for MPMC, 0 for SPSC */
	uint64_t claims_off;     /* the claim records (MPMC), or 0 */
	uint8_t reserved[128];   /* zero */
	uint64_t checksum;       /* rbus_hdr_checksum() of all bytes above */
};

/*
 * One side of the ring: the producers' state or one consumer cursor.  Only
 * the side it belongs to writes `index`; the other side reads it.
 */
struct rbus_side {
	/* Producer side: tail, the next index to be written (MPMC producers
	 * claim indices by CAS on it).  Consumer side: head, the next index
	 * to be read (MPMC consumers claim by CAS).  An SPSC producer's tail
	 * is a hint for observers and for reopening; the slot stamps are the
	 * truth. */
	_Atomic uint64_t index;
	uint8_t reserved0[120];    /* zero: the index has its 128 bytes alone */
	/* Handles of this role attached now (SPSC: 0 or 1, claimed by CAS). */
	_Atomic uint32_t attached;
	/* 1 once a handle of this role has ever been opened: with attached
	 * == 0 it means the role hung up, and the peer gets -EPIPE instead of
	 * waiting for it (see wait.c). */
	_Atomic uint32_t opened;
	/* SPSC: the token of the handle holding the role, 0 when free.  The
	 * role is claimed by a CAS 0 -> token, and given back by a store of
	 * 0 after `attached` dropped; ringbusd releases the role of a dead
	 * process by its token (rbus_region_recover()).  Handles opened
	 * without the broker use RBUS_TOKEN_LOCAL (1); the broker's are >= 2.
	 * MPMC: unused (0). */
	_Atomic uint32_t owner;
	/* MPMC: tokens of broker-opened handles attached now, 0 = free entry;
	 * a handle that finds no free entry is not recorded (and cannot be
	 * recovered).  SPSC: unused (0). */
	_Atomic uint32_t leases[RBUS_SIDE_LEASES];
	/* MPMC: 1 once a process claimed slots of this side through a handle
	 * without a claim record of its own (opened without the broker, past
	 * the lease entries, or inherited through fork()), or opened a handle
	 * whose record may go unread (through another process's connection,
	 * or where fork() cannot be told, without MADV_WIPEONFORK); never
	 * cleared.  ringbusd then leaves alone the records of claims whose
	 * CAS it cannot tell succeeded (rbus_mpmc_recover()).  SPSC: 0. */
	_Atomic uint32_t unrecorded;
	uint8_t reserved1[4];      /* zero */
};

/*
 * A wait queue: where one kind of waiter sleeps (consumers waiting for data,
 * or producers waiting for room).  See wait.c for the protocol.
 */
struct rbus_waitq {
	/* The futex word (futex backend): bumped by every wake, so a sleeper
	 * that loaded it before re-checking the ring cannot miss a wake.
	 * Compared for equality only, so its 32-bit wrap is harmless. */
	_Atomic uint32_t seq;
	/* Sleepers registered since the last wake.  Sleepers add; only
	 * wakers take away (exchange to 0). */
	_Atomic uint32_t sleepers;
	_Atomic uint64_t sleeps;   /* times a waiter went to sleep */
	_Atomic uint64_t wakes;    /* wake system calls made */
	_Atomic uint64_t blind;    /* of those, futex wakes that woke nobody */
};

struct rbus_wait {
	struct rbus_waitq data;    /* consumers sleep here; producers wake */
	struct rbus_waitq space;   /* producers sleep here; consumers wake */
	uint8_t reserved[RBUS_WAIT_SIZE - 2 * sizeof(struct rbus_waitq)];
};

/*
 * MPMC: what the handle of one lease entry (struct rbus_side.leases) holds
 * claimed, or is about to claim, for ringbusd to finish if that handle's
 * process dies (rbus_mpmc_recover()).  Written only by that handle: [first,
 * first + count) before each claim's CAS (an intent: the CAS may yet fail),
 * RBUS_CLAIM_HELD added once the CAS succeeded, count 0 once every slot of
 * it is published (producer) or freed (consumer), or the claim failed.
 * Read by ringbusd: the dead handle's record after its process died, and
 * the live handles' records to see which slots they cover.  Bounds-checked
 * there: an untrusted hint of which slots to look at, never trusted for an
 * address.  Each record has 128 bytes alone, as a side block's index does:
 * every handle writes its own at every call.
 */
struct rbus_claim {
	_Atomic uint64_t first;
	_Atomic uint32_t count;  /* slots | RBUS_CLAIM_HELD, 0: none */
	uint32_t reserved0;
	uint8_t reserved[RBUS_CLAIM_SIZE - 16];
};

struct rbus_slot {
	_Atomic uint32_t stamp;  /* see "Slot stamps" above */
	_Atomic uint32_t len;    /* length | RBUS_SLOT_SKIP */
	unsigned char data[];    /* max_msg bytes, 8-byte aligned */
};

_Static_assert(sizeof(struct rbus_hdr) == RBUS_HDR_SIZE, "header size is ABI");
_Static_assert(offsetof(struct rbus_hdr, checksum) == RBUS_HDR_SIZE - 8,
	       "checksum is the header's last word");
_Static_assert(sizeof(struct rbus_side) == RBUS_SIDE_SIZE, "side size is ABI");
_Static_assert(offsetof(struct rbus_side, attached) == 128,
	       "the index has the first 128 bytes of a side alone");
_Static_assert(sizeof(struct rbus_slot) == RBUS_SLOT_HDR, "slot header is ABI");
_Static_assert(sizeof(struct rbus_wait) == RBUS_WAIT_SIZE, "wait block size is ABI");
_Static_assert(sizeof(struct rbus_claim) == RBUS_CLAIM_SIZE, "claim record size is ABI");
_Static_assert(sizeof(_Atomic uint64_t) == 8 && ATOMIC_LLONG_LOCK_FREE == 2,
	       "64-bit atomics must be lock-free to work across processes");
_Static_assert(ATOMIC_INT_LOCK_FREE == 2,
	       "32-bit atomics must be lock-free to work across processes");

/* Offsets of the fixed parts, for ncursors cursors. */
static inline uint64_t rbus_layout_prod_off(void) { return RBUS_HDR_SIZE; }
static inline uint64_t rbus_layout_cursors_off(void)
{
	return RBUS_HDR_SIZE + RBUS_SIDE_SIZE;
}
static inline uint64_t rbus_layout_wait_off(uint32_t ncursors)
{
	return rbus_layout_cursors_off() + (uint64_t)ncursors * RBUS_SIDE_SIZE;
}
static inline uint64_t rbus_layout_slots_off(uint32_t ncursors)
{
	return rbus_layout_wait_off(ncursors) + RBUS_WAIT_SIZE;
}
/* Where the claim records of an MPMC region begin: the end of its slots,
 * rounded up to a claim record. */
static inline uint64_t rbus_layout_claims_off(uint64_t slots_off, uint32_t capacity,
					      uint32_t slot_size)
{
	return (slots_off + (uint64_t)capacity * slot_size + RBUS_CLAIM_SIZE - 1) &
	       ~(uint64_t)(RBUS_CLAIM_SIZE - 1);
}
/* The bytes a region of this kind and geometry uses, before the padding to
 * a whole page: its slots, and for MPMC its claim records after them. */
static inline uint64_t rbus_layout_used(uint32_t kind, uint64_t slots_off, uint32_t capacity,
					uint32_t slot_size)
{
	if (kind != RBUS_HDR_KIND_MPMC)
		return slots_off + (uint64_t)capacity * slot_size;
	return rbus_layout_claims_off(slots_off, capacity, slot_size) +
	       2 * (uint64_t)RBUS_SIDE_LEASES * RBUS_CLAIM_SIZE;
}
static inline uint32_t rbus_layout_slot_size(uint32_t max_msg)
{
	return (uint32_t)(((uint64_t)RBUS_SLOT_HDR + max_msg + RBUS_SLOT_ALIGN - 1) &
			  ~(uint64_t)(RBUS_SLOT_ALIGN - 1));
}

/* FNV-1a, 64-bit, over the header bytes before the checksum.  Not a defence
 * against a malicious peer (who can recompute it), but every accidental
 * corruption of the header, even of a field no consistency check covers,
 * is refused with -EBADMSG. */
static inline uint64_t rbus_hdr_checksum(const struct rbus_hdr *h)
{
	const unsigned char *p = (const unsigned char *)h;
	uint64_t x = UINT64_C(0xcbf29ce484222325);

	for (size_t i = 0; i < offsetof(struct rbus_hdr, checksum); i++) {
		x ^= p[i];
		x *= UINT64_C(0x100000001b3);
	}
	return x;
}

#endif /* RINGBUS_LAYOUT_H */
