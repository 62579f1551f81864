/* cmd_models.c - `shammah models`: the models this machine has (engine/registry.h), and the
 * resolution of `-m NAME` shared by the subcommands that load a model. */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/config.h"
#include "base/paths.h"
#include "base/status.h"
#include "cli/commands.h"
#include "client/pull.h"
#include "engine/builtin.h"
#include "engine/registry.h"

/* The configured model ([backend] model, or "" when none / unreadable config), into out. */
static void configured_model(const char *home, char *out, size_t cap) {
    char path[PATHS_MAX];
    sh_config cfg;
    out[0] = 0;
    if (paths_join(path, sizeof path, home, PATHS_CONFIG)) return;
    if (config_load(&cfg, path)) return; /* the daemon reports a broken config; not our job */
    if (cfg.backend.enabled) snprintf(out, cap, "%s", cfg.backend.model);
    config_free(&cfg);
}

int cli_resolve_model(const char *cmd, const char *name, char *out, size_t cap) {
    char home[PATHS_MAX], conf[PATHS_MAX];
    if (paths_home(home, sizeof home)) {
        home[0] = 0;
        conf[0] = 0;
    } else {
        configured_model(home, conf, sizeof conf);
    }
    const char *extra[1] = {conf};
    reg_opts o = {.home = home[0] ? home : NULL, .extra = extra, .n_extra = conf[0] ? 1 : 0};
    if (!home[0]) {
        /* without a home only paths and Ollama names can be meant */
        o.home = "/nonexistent";
    }
    int st = reg_resolve(name, &o, out, cap);
    if (st == SH_ENOTFOUND && strncmp(name, "ollama:", 7)) {
        /* a pull alias or hf: name stands for the file it downloads */
        char why[512];
        snprintf(why, sizeof why, "%s", sh_error_last());
        pull_spec ps;
        char path[PATHS_MAX];
        struct stat sb;
        if (home[0] && pull_parse(name, &ps) == SH_OK &&
            snprintf(path, sizeof path, "%s/%s/%s", home, PATHS_MODELS, ps.file) <
                (int)sizeof path) {
            if (stat(path, &sb) == 0) {
                if (snprintf(out, cap, "%s", path) < (int)cap) return 0;
            } else {
                fprintf(stderr, "shammah %s: model '%s' is not downloaded: run `shammah pull %s`\n",
                        cmd, name, name);
                return -1;
            }
        }
        fprintf(stderr, "shammah %s: %s\n", cmd, why);
        return -1;
    }
    if (st) {
        fprintf(stderr, "shammah %s: %s\n", cmd, sh_error_last());
        return -1;
    }
    return 0;
}

static void fmt_params(char *out, size_t cap, uint64_t n) {
    if (n >= 1000000000ull) snprintf(out, cap, "%.1fB", n / 1e9);
    else if (n >= 1000000ull) snprintf(out, cap, "%.0fM", n / 1e6);
    else if (n >= 1000ull) snprintf(out, cap, "%.0fK", n / 1e3);
    else snprintf(out, cap, "%" PRIu64, n);
}

static void fmt_size(char *out, size_t cap, uint64_t b) {
    if (b >= (1ull << 30)) snprintf(out, cap, "%.1f GiB", b / 1073741824.0);
    else if (b >= (1ull << 20)) snprintf(out, cap, "%.1f MiB", b / 1048576.0);
    else snprintf(out, cap, "%.1f KiB", b / 1024.0);
}

static int print_json(const reg_models *m, int def, const char *def_why) {
    json_t *arr = json_array();
    for (int i = 0; arr && i < m->n; i++) {
        const reg_entry *e = &m->v[i];
        json_t *o = json_pack("{s:s,s:s,s:s,s:I,s:b}", "name", e->name, "path", e->path, "source",
                              reg_source_name(e->source), "size", (json_int_t)e->file_size,
                              "default", i == def);
        if (!o) continue;
        if (e->error[0]) {
            json_object_set_new(o, "error", json_string(e->error));
        } else {
            json_object_set_new(o, "arch", json_string(e->arch));
            json_object_set_new(o, "params", json_integer((json_int_t)e->n_params));
            json_object_set_new(o, "quant", json_string(e->quant));
            json_object_set_new(o, "context", json_integer((json_int_t)e->n_ctx_train));
            json_object_set_new(o, "memory_estimate",
                                json_integer((json_int_t)reg_need_bytes(e, 0)));
        }
        json_array_append_new(arr, o);
    }
    json_t *root = json_pack("{s:o,s:o,s:s}", "models", arr ? arr : json_array(), "default",
                             def >= 0 ? json_string(m->v[def].name) : json_null(), "default_rule",
                             def_why);
    char *s = root ? json_dumps(root, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
    if (s) printf("%s\n", s);
    free(s);
    json_decref(root);
    return s ? 0 : 1;
}

static void print_table(const reg_models *m, int def, const char *def_why) {
    int w = 4;
    for (int i = 0; i < m->n; i++) {
        int l = (int)strlen(m->v[i].name);
        if (l > w) w = l < 60 ? l : 60;
    }
    printf("  %-*s  %-8s  %7s  %-7s  %10s  %s\n", w, "NAME", "ARCH", "PARAMS", "QUANT", "SIZE",
           "SOURCE");
    for (int i = 0; i < m->n; i++) {
        const reg_entry *e = &m->v[i];
        char p[32], s[32];
        fmt_size(s, sizeof s, e->file_size);
        if (e->error[0]) {
            printf("%s %-*s  %-8s  %7s  %-7s  %10s  %s  (unusable: %s)\n", i == def ? "*" : " ", w,
                   e->name, "-", "-", "-", s, reg_source_name(e->source), e->error);
            continue;
        }
        fmt_params(p, sizeof p, e->n_params);
        printf("%s %-*s  %-8s  %7s  %-7s  %10s  %s\n", i == def ? "*" : " ", w, e->name, e->arch,
               p, e->quant, s, reg_source_name(e->source));
    }
    if (m->n_dropped) printf("(%d more not listed)\n", m->n_dropped);
    if (def >= 0) printf("* %s\n", def_why);
}

int cmd_models(int argc, char **argv) {
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: shammah models [--json]\n"
                   "Lists the models in SHAMMAH_HOME/models, the one config.toml names, and\n"
                   "Ollama's ($OLLAMA_MODELS or ~/.ollama/models, read-only). Any NAME works as\n"
                   "`-m NAME`. * marks the default: the configured model, else the largest that\n"
                   "fits in available memory with its KV cache (see engine/registry.h).\n");
            return 0;
        } else {
            fprintf(stderr, "shammah models: unknown option '%s' (see --help)\n", argv[i]);
            return 2;
        }
    }
    char home[PATHS_MAX], conf[PATHS_MAX], conf_path[PATHS_MAX], chosen[PATHS_MAX];
    if (paths_home(home, sizeof home)) {
        fprintf(stderr, "shammah models: %s\n", sh_error_last());
        return 1;
    }
    configured_model(home, conf, sizeof conf);
    const char *env = getenv("SHAMMAH_MODEL");
    if (env && *env) snprintf(conf, sizeof conf, "%s", env);
    /* a configured name is listed under its own source; only a path adds an entry */
    const char *extra[1] = {conf};
    reg_opts o = {.home = home, .extra = extra, .n_extra = conf[0] ? 1 : 0};
    reg_models m;
    if (reg_list(&m, &o)) {
        fprintf(stderr, "shammah models: %s\n", sh_error_last());
        return 1;
    }
    int def = -1;
    char why[160] = "";
    if (conf[0] && reg_resolve(conf, &o, conf_path, sizeof conf_path) == SH_OK) {
        struct stat a, b;
        for (int i = 0; i < m.n && def < 0; i++)
            if (stat(m.v[i].path, &a) == 0 && stat(conf_path, &b) == 0 && a.st_dev == b.st_dev &&
                a.st_ino == b.st_ino)
                def = i;
        snprintf(why, sizeof why, "the configured model (%s)",
                 env && *env ? "SHAMMAH_MODEL" : "config.toml [backend] model");
    }
    if (def < 0 && m.n) {
        uint64_t avail = reg_mem_available(NULL);
        if (reg_pick_default(&m, NULL, chosen, sizeof chosen, &def) == SH_OK)
            snprintf(why, sizeof why,
                     "the default: the largest model that fits in %.1f GiB of available memory "
                     "with a %d-token KV cache",
                     avail / 1073741824.0, REG_DEFAULT_CTX);
    }
    int rc = 0;
    if (json) {
        rc = print_json(&m, def, why);
    } else if (!m.n) {
        printf("no models: `shammah pull qwen2.5-coder:1.5b` downloads one (see shammah pull "
               "--help)\n");
    } else {
        print_table(&m, def, why);
    }
    reg_models_free(&m);
    return rc;
}

int cli_default_model(const char *cmd, const char *home, char *out, size_t cap) {
    char dir[PATHS_MAX], builtin[PATHS_MAX] = "";
    reg_models all;
    reg_opts ro = {.home = home};
    int idx = -1;
    if (paths_join(dir, sizeof dir, home, "models")) goto fail;
    if (builtin_model_size() && builtin_model_extract(dir, builtin, sizeof builtin) != SH_OK) {
        fprintf(stderr, "shammah %s: warning: the embedded model: %s\n", cmd, sh_error_last());
        builtin[0] = 0;
    }
    if (reg_list(&all, &ro)) goto fail;
    reg_pick_opts po = {.builtin = builtin[0] ? builtin : NULL};
    int st = reg_pick_default(&all, &po, out, cap, &idx);
    if (!st && idx >= 0)
        fprintf(stderr, "shammah %s: no model configured: using %s (%s, the largest that fits in "
                        "memory of %d found; `shammah models` lists them)\n",
                cmd, all.v[idx].name, all.v[idx].source == REG_SRC_OLLAMA ? "Ollama" : "local",
                all.n);
    reg_models_free(&all);
    if (!st) return 0;
fail:
    fprintf(stderr, "shammah %s: no model: %s\n", cmd, sh_error_last());
    return -1;
}
