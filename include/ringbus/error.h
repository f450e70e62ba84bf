/* SPDX-License-Identifier: MIT */
/*
 * ringbus/error.h - error convention of libringbus.
 *
 * Every function of libringbus that can fail returns 0 (or a non-negative
 * count or length) on success and a negative errno value on failure, e.g.
 * -EAGAIN.  errno itself is never the channel of an error and its value
 * after a call is unspecified.  The library never prints, aborts or exits.
 *
 * The errno values carry these ringbus meanings wherever they appear:
 *
 *   -EAGAIN          nothing to do now: the ring is full (producer) or empty
 *                    (consumer); try again later.
 *   -EMSGSIZE        a message is larger than the channel's maximum (send), or
 *                    the next message is larger than the caller's buffer
 *                    (recv; the message stays in the ring).
 *   -EBADF           the handle's role does not allow the call (recv on a
 *                    producer, send on a consumer); from the region calls,
 *                    an fd that is not open.
 *   -EBUSY           a zero-copy reservation or peek is outstanding on the
 *                    handle, or an SPSC role is already taken.
 *   -EPROTO          the object is not a ringbus region (foreign magic).
 *   -EPROTONOSUPPORT a ringbus region of an ABI version or kind this library
 *                    does not speak.
 *   -EBADMSG         the region's header or ring state is inconsistent
 *                    (corrupt shared memory, or a hostile peer).
 *   -ENODATA         the object is smaller than a region header, or than the
 *                    size its header declares (truncated).
 *   -EPERM           the fd is not sealed against shrinking and growing, and
 *                    the caller did not accept an unsealed region.
 *   -ENOSPC          no memory to reserve the region (tmpfs full, or no huge
 *                    pages reserved in /proc/sys/vm/nr_hugepages).
 *   -ETIMEDOUT       a waiting call's deadline passed (ringbus/wait.h).
 *   -EPIPE           the call cannot make progress and the peer role has
 *                    hung up: its last handle closed (a new one may come).
 *   -ECANCELED       the handle was closed by another thread while the
 *                    call waited on it.
 *   -EOPNOTSUPP      the call needs the eventfd wakeup backend.
 */
#ifndef RINGBUS_ERROR_H
#define RINGBUS_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

/*
 * rbus_strerror - describe a libringbus return value.
 * @err: a value returned by a libringbus function (negative errno), or a
 *       positive errno value; 0 gives "success".
 *
 * Returns a static, constant, NUL-terminated string describing @err with the
 * ringbus meaning listed above where there is one, and strerror()'s text
 * otherwise.  Never returns NULL.  Thread-safe.
 */
const char *rbus_strerror(int err);

/*
 * rbus_errname - the symbolic name of a libringbus return value.
 * @err: as for rbus_strerror().
 *
 * Returns a static string such as "EAGAIN", or "E?" for an unknown value.
 * Thread-safe.
 */
const char *rbus_errname(int err);

#ifdef __cplusplus
}
#endif
#endif /* RINGBUS_ERROR_H */
