/* synthutil.h - a temporary directory and model files made by `$BUILD/shammah model synth`,
 * for the unit tests that need whole models (test_model, test_train, test_full_train).
 *
 * Use as the group fixtures: cmocka_run_group_tests(tests, setup, su_teardown) with
 * setup calling su_setup("test_NAME"). Each including test has its own copy of the state. */
#ifndef SH_SYNTHUTIL_H
#define SH_SYNTHUTIL_H
#include "testutil.h"

#include <unistd.h>

static char su_tmpdir[256];
static char su_bin[512];

/* Finds $BUILD/shammah (BUILD defaults to build) and makes the temporary directory; test names
 * the test in the message when the binary is missing. 0, or -1 to fail the group. */
static inline int su_setup(const char *test) {
    const char *b = getenv("BUILD");
    snprintf(su_bin, sizeof su_bin, "%s/shammah", b && *b ? b : "build");
    if (access(su_bin, X_OK) != 0) {
        fprintf(stderr, "%s: %s not built\n", test, su_bin);
        return -1;
    }
    snprintf(su_tmpdir, sizeof su_tmpdir, "/tmp/sh_%s.XXXXXX", test);
    return mkdtemp(su_tmpdir) ? 0 : -1;
}

/* Removes the temporary directory and all in it (a cmocka group teardown). */
static inline int su_teardown(void **state) {
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", su_tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* The path of NAME in the temporary directory. Borrowed: one of 4 rotating buffers, so it
 * stays valid for the next 3 calls only. */
static inline const char *su_path(const char *name) {
    static char p[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", su_tmpdir, name);
    return p[k];
}

/* Makes NAME in the temporary directory with `shammah model synth ARGS`, unless it is there
 * already (a name stands for one model in a run); fails the test if it cannot. Returns its
 * path, borrowed: one of 8 rotating buffers, valid for the next 7 calls (su_path's own
 * rotation does not touch it). */
static inline const char *su_synth(const char *name, const char *args) {
    static char outs[8][512];
    static int k;
    k = (k + 1) % 8;
    char *out = outs[k];
    snprintf(out, sizeof outs[0], "%s", su_path(name));
    if (access(out, R_OK) != 0) {
        char cmd[2048];
        snprintf(cmd, sizeof cmd, "'%s' model synth --out '%s' %s >/dev/null", su_bin, out, args);
        if (system(cmd) != 0) fail_msg("failed: %s", cmd);
    }
    return out;
}
#endif
