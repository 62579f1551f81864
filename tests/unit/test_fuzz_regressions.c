/* test_fuzz_regressions.c - replays every committed fuzz input (fuzz/corpus/<target>/ and
 * fuzz/regressions/<target>/) through the same entry points as the libFuzzer targets, in the
 * normal gcc build: an input that once crashed a parser keeps being tested without clang. */
#include "testutil.h"

#include <dirent.h>
#include <sys/stat.h>

#include "../../fuzz/entries.c"

/* Runs every file of dir through fn; returns the number of files (0 if dir is absent). */
static int replay_dir(const char *dir, int (*fn)(const uint8_t *, size_t)) {
    DIR *dp = opendir(dir);
    if (!dp) return 0;
    int count = 0;
    struct dirent *e;
    while ((e = readdir(dp)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        size_t n = (size_t)sb.st_size;
        uint8_t *buf = malloc(n ? n : 1);
        assert_non_null(buf);
        assert_int_equal(fread(buf, 1, n, f), n);
        fclose(f);
        fn(buf, n);
        free(buf);
        count++;
    }
    closedir(dp);
    return count;
}

static void test_replay_all(void **state) {
    (void)state;
    int total = 0;
    for (int i = 0; i < FZ_N_TARGETS; i++) {
        char dir[512];
        snprintf(dir, sizeof dir, "fuzz/corpus/%s", fz_targets[i].name);
        int nc = replay_dir(dir, fz_targets[i].fn);
        snprintf(dir, sizeof dir, "fuzz/regressions/%s", fz_targets[i].name);
        int nr = replay_dir(dir, fz_targets[i].fn);
        /* every target has a committed seed corpus: an empty one means the tree is broken */
        assert_true(nc > 0);
        total += nc + nr;
    }
    assert_true(total > 0);
}

/* The entries themselves on degenerate inputs (empty, one byte, all NULs). */
static void test_degenerate(void **state) {
    (void)state;
    static const uint8_t zeros[256];
    uint8_t ones[256];
    memset(ones, 0xff, sizeof ones);
    for (int i = 0; i < FZ_N_TARGETS; i++) {
        fz_targets[i].fn(zeros, 0);
        fz_targets[i].fn(zeros, 1);
        fz_targets[i].fn(zeros, sizeof zeros);
        fz_targets[i].fn(ones, sizeof ones);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replay_all),
        cmocka_unit_test(test_degenerate),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    for (int i = 0; i < 4; i++) tok_free(fz_vocabs[i]);
    return rc;
}
