/* SPDX-License-Identifier: MIT */
/* PLACEHOLDER of the skeleton branch: replaced before main. */
#include "config.h"
#include "cli.h"
int cmd_bench(int argc, char **argv)
{
	(void)argc, (void)argv;
	rb_err("not in this build");
	return RB_EXIT_FAIL;
}
