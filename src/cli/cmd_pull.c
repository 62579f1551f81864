/* cmd_pull.c - `shammah pull`: download a GGUF model into SHAMMAH_HOME/models. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/paths.h"
#include "base/status.h"
#include "cli/cliutil.h"
#include "cli/commands.h"
#include "client/pull.h"

static void pull_usage(FILE *f) {
    int n;
    const pull_alias *a = pull_aliases(&n);
    fprintf(f,
            "usage: shammah pull [--retries N] [--quiet] MODEL\n"
            "MODEL is hf:OWNER/REPO/FILE.gguf (or hf:OWNER/REPO/PATH/FILE.gguf, "
            "hf:OWNER/REPO:FILE.gguf) or an alias:\n");
    for (int i = 0; i < n; i++) fprintf(f, "  %-20s hf:%s/%s\n", a[i].alias, a[i].repo, a[i].path);
    fprintf(f,
            "Downloads ${HF_ENDPOINT:-%s}/OWNER/REPO/resolve/main/FILE into\n"
            "SHAMMAH_HOME/models/FILE (via FILE.part: an interrupted pull resumes when re-run),\n"
            "checks its size, sha256 (when the server gives it) and GGUF magic, and prints the\n"
            "path. Token: $HF_TOKEN, else $HF_HOME/token, else ~/.cache/huggingface/token.\n"
            "--retries N: automatic resumes after a dropped connection (default %d).\n"
            "The file is then usable as `-m NAME` (its stem) and listed by `shammah models`.\n",
            PULL_DEFAULT_ENDPOINT, PULL_DEFAULT_RETRIES);
}

int cmd_pull(int argc, char **argv) {
    const char *spec = NULL;
    long long retries = -1;
    int quiet = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            pull_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            quiet = 1;
        } else if (!strcmp(a, "--retries")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "shammah pull: --retries needs a value\n");
                return 2;
            }
            if (cli_int("pull", a, argv[++i], 0, PULL_MAX_RETRIES, &retries)) return 2;
        } else if (a[0] == '-') {
            fprintf(stderr, "shammah pull: unknown option '%s' (see --help)\n", a);
            return 2;
        } else if (spec) {
            fprintf(stderr, "shammah pull: one MODEL at a time\n");
            return 2;
        } else {
            spec = a;
        }
    }
    if (!spec) {
        fprintf(stderr, "shammah pull: which model? (shammah pull --help lists the aliases)\n");
        return 2;
    }
    pull_spec ps;
    if (pull_parse(spec, &ps)) {
        fprintf(stderr, "shammah pull: %s\n", sh_error_last());
        return 2;
    }
    char dir[PATHS_MAX], path[PATHS_MAX];
    if (paths_dir(dir, sizeof dir, PATHS_MODELS)) {
        fprintf(stderr, "shammah pull: %s\n", sh_error_last());
        return 1;
    }
    pull_opts o = {.models_dir = dir,
                   .retries = (int)retries,
                   .progress = !quiet && isatty(STDERR_FILENO),
                   .quiet = quiet};
    int already = 0;
    if (pull_run(spec, &o, path, sizeof path, &already)) {
        fprintf(stderr, "shammah pull: %s\n", sh_error_last());
        return 1;
    }
    if (already && !quiet) fprintf(stderr, "shammah pull: already present: %s\n", path);
    printf("%s\n", path);
    return 0;
}
