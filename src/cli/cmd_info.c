/* cmd_info.c - `shammah info` (not yet written). */
#include <stdio.h>

#include "cli/commands.h"

int cmd_info(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "shammah info: not implemented yet\n");
    return 1;
}
