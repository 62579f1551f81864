/* cmd_tokenize.c - `shammah tokenize` (not yet written). */
#include <stdio.h>

#include "cli/commands.h"

int cmd_tokenize(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "shammah tokenize: not implemented yet\n");
    return 1;
}
