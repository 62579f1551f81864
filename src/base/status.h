/* status.h - the one status type of shammah.
 *
 * Every fallible function returns int: 0 (SH_OK) on success, a negative SH_E* code on failure.
 * The code says what kind of failure; sh_error_set() records a one-line detail (thread-local)
 * that the caller may print with sh_error_last(). */
#ifndef SH_STATUS_H
#define SH_STATUS_H

#include <stddef.h>

/* ---- codes ---- */
enum {
    SH_OK = 0,
    SH_ENOMEM = -1,       /* allocation failed */
    SH_EIO = -2,          /* read/write/open/mmap failed */
    SH_EFORMAT = -3,      /* malformed input file or data */
    SH_EUNSUPPORTED = -4, /* valid but not supported (version, arch, type) */
    SH_EINVAL = -5,       /* bad argument */
    SH_ERANGE = -6,       /* value or size out of bounds */
    SH_ENOTFOUND = -7,    /* missing key, tensor, token, file */
    SH_ECANCELED = -8,    /* stopped on request */
    SH_EFULL = -9,        /* a bounded buffer or cache is full */
    SH_ECOUNT_ = 10
};

/* ---- messages ---- */
const char *sh_strerror(int status); /* static string; never NULL */

/* Record the detail of the current error for this thread (printf format), returns status so
 * callers can write `return sh_error_set(SH_EFORMAT, "...")`. */
int sh_error_set(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *sh_error_last(void); /* detail of the last error on this thread, or its code's text */
void sh_error_clear(void);

#endif
