/* cmd_bench.c - `shammah bench` (not yet written). */
#include <stdio.h>

#include "cli/commands.h"

int cmd_bench(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "shammah bench: not implemented yet\n");
    return 1;
}
