/* SPDX-License-Identifier: MIT */
#ifndef CFD_COMMON_H
#define CFD_COMMON_H

/*
 * What every file of lib/ uses, whichever library it goes into: the
 * export marker (the libraries are built with -fvisibility=hidden and a
 * version script) and container_of.
 */

#include <stdatomic.h>
#include <stddef.h>

#define CFD_EXPORT __attribute__((visibility("default")))

#define container_of(ptr, type, member) \
	((type *)(void *)((char *)(ptr)-offsetof(type, member)))

#endif
