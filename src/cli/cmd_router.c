/* cmd_router.c - `shammah router stats`: the router's learned state (per-category local
 * success counts, the forwarding threshold, decisions by route) from SHAMMAH_HOME/shammah.db. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/config.h"
#include "base/paths.h"
#include "base/status.h"
#include "cli/commands.h"
#include "router/router.h"

int cmd_router(int argc, char **argv) {
    if (argc != 2 || strcmp(argv[1], "stats") != 0) {
        fprintf(stderr, "usage: shammah router stats\n");
        return 2;
    }
    char home[4096], cfg_path[4096], db[4096];
    sh_config cfg;
    router *r = NULL;
    int rc = 1;
    if (paths_home(home, sizeof home) || paths_join(cfg_path, sizeof cfg_path, home, "config.toml") ||
        paths_join(db, sizeof db, home, "shammah.db")) {
        fprintf(stderr, "shammah router: %s\n", sh_error_last());
        return 1;
    }
    if (config_load(&cfg, cfg_path)) {
        fprintf(stderr, "shammah router: %s\n", sh_error_last());
        return 1;
    }
    if (router_open(&r, cfg.teachers, cfg.n_teachers, db, NULL)) {
        fprintf(stderr, "shammah router: %s: %s\n", db, sh_error_last());
    } else {
        json_t *j = router_stats_json(r);
        char *s = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
        if (s) {
            printf("%s\n", s);
            rc = 0;
        }
        free(s);
        json_decref(j);
        router_close(r);
    }
    config_free(&cfg);
    return rc;
}
