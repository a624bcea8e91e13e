/* SPDX-License-Identifier: MIT */
#ifndef CFD_EXPORT_H
#define CFD_EXPORT_H

/* Between export.c and import.c. */

#include <sys/types.h>

#include "watcher.h"

/* In a child made by fork(): the deadline, as it was at the fork, of the
 * token whose watch-only export is the pipe with inode ino; INT64_MAX when
 * the parent exported no such pipe. */
int64_t exports_inherited_deadline(ino_t ino);

#endif
