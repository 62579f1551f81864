/* cmd_model.c - `shammah model` (not yet written). */
#include <stdio.h>

#include "cli/commands.h"

int cmd_model(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "shammah model: not implemented yet\n");
    return 1;
}
