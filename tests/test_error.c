/* SPDX-License-Identifier: MIT */
/* test_error.c - rbus_strerror() and rbus_errname(). */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "helpers.h"

static const int ringbus_errors[] = {
	EAGAIN, EMSGSIZE, EBADF, EBUSY, EPROTO, EPROTONOSUPPORT, EBADMSG,
	ENODATA, EPERM, ENOSPC,
};

START_TEST(test_ringbus_meanings)
{
	const char *seen[sizeof(ringbus_errors) / sizeof(ringbus_errors[0])];

	for (size_t i = 0; i < sizeof(ringbus_errors) / sizeof(ringbus_errors[0]); i++) {
		const char *s = rbus_strerror(-ringbus_errors[i]);
		ck_assert_ptr_nonnull(s);
		ck_assert_str_eq(s, rbus_strerror(ringbus_errors[i]));
		/* Each ringbus error has its own text. */
		for (size_t j = 0; j < i; j++)
			ck_assert_str_ne(s, seen[j]);
		seen[i] = s;
		ck_assert_str_ne(rbus_errname(-ringbus_errors[i]), "E?");
	}
	ck_assert_str_eq(rbus_errname(-EBADMSG), "EBADMSG");
	ck_assert_str_eq(rbus_errname(-EPROTO), "EPROTO");
	ck_assert_str_eq(rbus_strerror(0), "success");
}
END_TEST

START_TEST(test_other_errors)
{
	/* Errors without a ringbus meaning fall back to the system's text. */
	ck_assert_str_eq(rbus_strerror(-ECONNREFUSED), strerror(ECONNREFUSED));
	ck_assert_str_eq(rbus_errname(-ECONNREFUSED), "E?");
	ck_assert_ptr_nonnull(rbus_strerror(-99999));
	ck_assert_str_eq(rbus_strerror(-99999), "unknown error");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("error");
	TCase *tc = tcase_create("strerror");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_ringbus_meanings);
	tcase_add_test(tc, test_other_errors);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
