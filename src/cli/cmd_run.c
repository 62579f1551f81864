/* cmd_run.c - `shammah run` (not yet written). */
#include <stdio.h>

#include "cli/commands.h"

int cmd_run(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "shammah run: not implemented yet\n");
    return 1;
}
