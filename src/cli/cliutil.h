/* cliutil.h - small helpers shared by the subcommands: strict number parsing, clocks. */
#ifndef SH_CLIUTIL_H
#define SH_CLIUTIL_H

#include <stdint.h>

/* Parse the whole string as a number in [lo, hi]; on failure print
 * "shammah CMD: bad value for OPT: 'S'" and return -1. */
int cli_int(const char *cmd, const char *opt, const char *s, long long lo, long long hi,
            long long *out);
int cli_float(const char *cmd, const char *opt, const char *s, double lo, double hi, float *out);
double cli_now_ms(void); /* monotonic clock */
int cli_default_threads(void); /* online cores, at most 8 */

#endif
