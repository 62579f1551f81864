/* status.c - status code messages and the per-thread error detail. */
#include "base/status.h"

#include <stdarg.h>
#include <stdio.h>

static const char *const messages[SH_ECOUNT_] = {
    "ok",
    "out of memory",
    "input/output error",
    "malformed data",
    "not supported",
    "invalid argument",
    "value out of range",
    "not found",
    "canceled",
    "buffer full",
};

static _Thread_local char last_detail[512];
static _Thread_local int last_status;

const char *sh_strerror(int status) {
    int i = -status;
    if (i < 0 || i >= SH_ECOUNT_) return "unknown error";
    return messages[i];
}

int sh_error_set(int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_detail, sizeof last_detail, fmt, ap);
    va_end(ap);
    last_status = status;
    return status;
}

const char *sh_error_last(void) {
    if (last_detail[0]) return last_detail;
    return sh_strerror(last_status);
}

void sh_error_clear(void) {
    last_detail[0] = 0;
    last_status = 0;
}
