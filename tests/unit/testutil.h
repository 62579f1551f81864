/* testutil.h - common includes for cmocka unit tests. */
#ifndef SH_TESTUTIL_H
#define SH_TESTUTIL_H
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Directory of the stored fixtures, relative to the repository root (tests run from there). */
#define FIXTURES "tests/fixtures"
#endif
