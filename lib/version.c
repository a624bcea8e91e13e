/* SPDX-License-Identifier: MIT */
/*
 * The library's version at run time, to compare with the header's
 * CFD_VERSION_* a program was built with.
 */
#include "cancelfd.h"
#include "common.h"

#define STR_(x) #x
#define STR(x) STR_(x)

CFD_EXPORT unsigned cfd_version(void)
{
	return CFD_VERSION_NUMBER;
}

CFD_EXPORT const char *cfd_version_string(void)
{
	return STR(CFD_VERSION_MAJOR) "." STR(CFD_VERSION_MINOR) "." STR(
	    CFD_VERSION_PATCH);
}
