/* driver.c - the libFuzzer driver: one binary per target, chosen at compile time with
 * -DFZ_NAME="\"name\"" (see mk/reliability.mk). */
#include "entries.c"

#ifndef FZ_NAME
#error "build with -DFZ_NAME=\"target\""
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int idx = -1;
    if (idx < 0) {
        for (int i = 0; i < FZ_N_TARGETS; i++)
            if (!strcmp(fz_targets[i].name, FZ_NAME)) idx = i;
        if (idx < 0) abort();
    }
    fz_targets[idx].fn(data, size);
    sh_error_clear();
    return 0;
}
