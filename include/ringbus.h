/* SPDX-License-Identifier: MIT */
/*
 * ringbus.h - lock-free shared-memory messaging.  Umbrella header: includes
 * the per-concern headers under ringbus/ and nothing else.  See ringbus(7)
 * and doc/design.md.
 */
#ifndef RINGBUS_H
#define RINGBUS_H

#include <ringbus/error.h>
#include <ringbus/region.h>
#include <ringbus/channel.h>
#include <ringbus/wait.h>
#include <ringbus/broker.h>

#endif /* RINGBUS_H */
