/* SPDX-License-Identifier: MIT */
/* error.c - rbus_strerror() and rbus_errname(). */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "internal.h"

struct errdesc {
	int err;
	const char *name;
	const char *text; /* NULL: use strerror()'s */
};

static const struct errdesc errtab[] = {
	{ 0, "OK", "success" },
	{ EAGAIN, "EAGAIN", "ring is full or empty; try again" },
	{ EMSGSIZE, "EMSGSIZE", "message too long for the channel or the buffer" },
	{ EBADF, "EBADF", "bad fd, or the handle's role does not allow this call" },
	{ EBUSY, "EBUSY", "busy: a reservation or peek is outstanding, or the role is taken" },
	{ EPROTO, "EPROTO", "not a ringbus region (foreign magic)" },
	{ EPROTONOSUPPORT, "EPROTONOSUPPORT", "unsupported ringbus region version or kind" },
	{ EBADMSG, "EBADMSG", "corrupt region: inconsistent header or ring state" },
	{ ENODATA, "ENODATA", "region is truncated" },
	{ EPERM, "EPERM", "operation not permitted (region fd not sealed?)" },
	{ ENOSPC, "ENOSPC", "no memory to reserve the region (tmpfs full, or no huge pages reserved)" },
	{ EINVAL, "EINVAL", NULL },
	{ EEXIST, "EEXIST", NULL },
	{ ENOENT, "ENOENT", NULL },
	{ EACCES, "EACCES", NULL },
	{ ENOMEM, "ENOMEM", NULL },
	{ EMFILE, "EMFILE", NULL },
	{ ENFILE, "ENFILE", NULL },
	{ ETIMEDOUT, "ETIMEDOUT", "timed out waiting for the ring" },
	{ EPIPE, "EPIPE", "the peer hung up: no handle of the other role is attached" },
	{ ECANCELED, "ECANCELED", "the handle was closed while the call waited" },
	{ EOPNOTSUPP, "EOPNOTSUPP", "not supported by this channel's wakeup backend" },
	{ EINTR, "EINTR", NULL },
	{ EFBIG, "EFBIG", NULL },
	{ ENAMETOOLONG, "ENAMETOOLONG", NULL },
};

static const struct errdesc *lookup(int err)
{
	if (err < 0)
		err = -err;
	for (size_t i = 0; i < sizeof(errtab) / sizeof(errtab[0]); i++)
		if (errtab[i].err == err)
			return &errtab[i];
	return NULL;
}

RBUS_EXPORT const char *rbus_strerror(int err)
{
	const struct errdesc *d = lookup(err);

	if (d && d->text)
		return d->text;
	/* strerrordesc_np() (glibc >= 2.32) is thread-safe, unlike strerror(). */
	const char *s = strerrordesc_np(err < 0 ? -err : err);

	return s ? s : "unknown error";
}

RBUS_EXPORT const char *rbus_errname(int err)
{
	const struct errdesc *d = lookup(err);

	return d ? d->name : "E?";
}
