/* cmd_daemon.c - `shammah daemon`: the HTTP API in the foreground.
 * Settings: flag > environment (SHAMMAH_HOST, SHAMMAH_MODEL) > config.toml > default. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/config.h"
#include "base/paths.h"
#include "base/status.h"
#include "cli/cliutil.h"
#include "cli/commands.h"
#include "engine/model.h"
#include "server/server.h"

static void daemon_usage(FILE *f) {
    fprintf(f,
            "usage: shammah daemon [--bind HOST:PORT] [-m MODEL.gguf] [-t THREADS] [--ctx N]\n"
            "                      [--parallel K] [--kv f16|f32] [--insecure-no-auth]\n"
            "Serves the OpenAI- and Anthropic-compatible API (default 127.0.0.1:11434).\n"
            "Precedence: flag > env SHAMMAH_HOST / SHAMMAH_MODEL > SHAMMAH_HOME/config.toml.\n");
}

int cmd_daemon(int argc, char **argv) {
    const char *bind = NULL, *model = NULL, *kv = NULL;
    long long threads = -1, ctx = -1, parallel = -1;
    int insecure = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            daemon_usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--insecure-no-auth")) {
            insecure = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "shammah daemon: %s needs a value (or is unknown; see --help)\n", a);
            return 2;
        }
        i++;
        int bad = 0;
        if (!strcmp(a, "--bind")) bind = v;
        else if (!strcmp(a, "-m")) model = v;
        else if (!strcmp(a, "--kv")) kv = v;
        else if (!strcmp(a, "-t")) bad = cli_int("daemon", a, v, 1, 256, &threads);
        else if (!strcmp(a, "--ctx")) bad = cli_int("daemon", a, v, 16, 1 << 24, &ctx);
        else if (!strcmp(a, "--parallel")) bad = cli_int("daemon", a, v, 1, 64, &parallel);
        else {
            fprintf(stderr, "shammah daemon: unknown option '%s' (see --help)\n", a);
            bad = -1;
        }
        if (bad) return 2;
    }
    char home[4096], cfg_path[4096];
    if (paths_ensure_home(home, sizeof home) || paths_join(cfg_path, sizeof cfg_path, home, "config.toml")) {
        fprintf(stderr, "shammah daemon: %s\n", sh_error_last());
        return 1;
    }
    sh_config cfg;
    if (config_load(&cfg, cfg_path)) {
        fprintf(stderr, "shammah daemon: %s\n", sh_error_last());
        return 1;
    }
    for (int i = 0; i < config_warning_count(&cfg); i++)
        fprintf(stderr, "shammah daemon: warning: %s\n", config_warning(&cfg, i));
    if (!bind) bind = getenv("SHAMMAH_HOST");
    if (!bind || !*bind) bind = cfg.server.bind;
    char host[256];
    int port = 0;
    if (config_split_address(bind, host, sizeof host, &port)) {
        fprintf(stderr, "shammah daemon: bad bind address '%s': %s\n", bind, sh_error_last());
        config_free(&cfg);
        return 2;
    }
    if (!model) model = getenv("SHAMMAH_MODEL");
    if (!model || !*model) model = cfg.backend.enabled ? cfg.backend.model : "";
    char model_path[PATHS_MAX]; /* a name through the registry; unresolved, the load reports it */
    if (*model && cli_resolve_model("daemon", model, model_path, sizeof model_path) == 0)
        model = model_path;
    else if (!*model && cfg.backend.enabled && cli_default_model("daemon", home, model_path, sizeof model_path) == 0)
        model = model_path;
    if (!kv) kv = cfg.backend.kv_type;
    if (strcmp(kv, "f16") && strcmp(kv, "f32")) {
        fprintf(stderr, "shammah daemon: --kv must be f16 or f32\n");
        config_free(&cfg);
        return 2;
    }
    server_opts o = {.home = home,
                     .bind_host = host,
                     .bind_port = port,
                     .model_path = model,
                     .threads = threads > 0 ? (int)threads : cfg.backend.threads,
                     .ctx = (int32_t)(ctx > 0 ? ctx : cfg.backend.ctx),
                     .kv_type = !strcmp(kv, "f32") ? KV_F32 : KV_F16,
                     .parallel = parallel > 0 ? (int)parallel : cfg.backend.parallel,
                     .max_body_bytes = cfg.server.max_body_bytes,
                     .api_keys = cfg.server.api_keys,
                     .n_api_keys = cfg.server.n_api_keys,
                     .cors_origins = cfg.server.cors_origins,
                     .n_cors_origins = cfg.server.n_cors_origins,
                     .max_messages = cfg.server.max_messages,
                     .max_sessions = cfg.server.max_sessions,
                     .session_idle_minutes = cfg.server.session_idle_minutes,
                     .insecure_no_auth = insecure,
                     .backend_disabled = !cfg.backend.enabled,
                     .teachers = cfg.teachers,
                     .n_teachers = cfg.n_teachers,
                     .train_auto = cfg.training.enabled,
                     .train_threshold = cfg.training.min_examples,
                     .distill = cfg.training.distill,
                     .training = &cfg.training,
                     .max_loaded_models = cfg.backend.max_loaded_models,
                     .keep_alive_seconds = cfg.backend.keep_alive};
    if (!*model) fprintf(stderr, "shammah daemon: no model configured: requests will get 503\n");
    int rc = server_run(&o);
    config_free(&cfg);
    return rc;
}
