/* cmd_feedback.c - `shammah feedback`: rate an exchange, sent to the daemon's POST /v1/feedback
 * (stored durably there, a training example for the next LoRA run); and the record of the last
 * exchange of `shammah query` and the REPL (SHAMMAH_HOME/last_exchange.json) it rates by
 * default. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/paths.h"
#include "base/status.h"
#include "cli/commands.h"
#include "client/client.h"
#include "proto/conv.h"

#define EXCHANGE_FILE "last_exchange.json"
#define EXCHANGE_FIELD_MAX (512u << 10) /* bytes kept of the query and of the answer each */
#define EXCHANGE_FILE_MAX (8u << 20)    /* escaping may grow the fields: \u0001 is 6 bytes */
#define FEEDBACK_WEIGHT_MAX 1000        /* the daemon's bound (server/feedback.h) */
#define FEEDBACK_NOTE_MAX (64u << 10)

/* ---- the last exchange ---- */

static int exchange_path(char *out, size_t cap) {
    char home[PATHS_MAX];
    int st = paths_ensure_home(home, sizeof home);
    return st ? st : paths_join(out, cap, home, EXCHANGE_FILE);
}

/* s cut to EXCHANGE_FIELD_MAX bytes on a character boundary, as a JSON string */
static int put_field(conv_buf *b, const char *key, const char *s) {
    size_t n = strlen(s);
    if (n > EXCHANGE_FIELD_MAX) n = conv_utf8_whole(s, EXCHANGE_FIELD_MAX);
    int st = conv_buf_printf(b, "\"%s\":", key);
    return st ? st : conv_buf_json_str(b, s, n);
}

int cli_exchange_save(const char *query, const char *response) {
    char path[PATHS_MAX], tmp[PATHS_MAX + 32];
    conv_buf b;
    conv_buf_init(&b, EXCHANGE_FILE_MAX);
    FILE *f = NULL;
    int st = exchange_path(path, sizeof path);
    if (st) goto out;
    if ((st = conv_buf_puts(&b, "{")) || (st = put_field(&b, "query", query ? query : "")) ||
        (st = conv_buf_puts(&b, ",")) || (st = put_field(&b, "response", response ? response : "")) ||
        (st = conv_buf_printf(&b, ",\"time\":%lld}\n", (long long)time(NULL)))) {
        st = sh_error_set(st, "the last exchange does not fit in %u bytes", EXCHANGE_FILE_MAX);
        goto out;
    }
    /* a reader (shammah feedback) sees the old file or the new one, never half of one */
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    if (!(f = fopen(tmp, "w"))) {
        st = sh_error_set(SH_EIO, "cannot write %s: %s", tmp, strerror(errno));
        goto out;
    }
    int bad = fwrite(b.p, 1, b.len, f) != b.len;
    bad |= fclose(f) != 0;
    f = NULL;
    if (bad || rename(tmp, path) != 0) {
        st = sh_error_set(SH_EIO, "cannot write %s: %s", path, strerror(errno));
        unlink(tmp);
    }
out:
    conv_buf_free(&b);
    return st;
}

int cli_exchange_load(char **query, char **response) {
    char path[PATHS_MAX];
    *query = *response = NULL;
    json_t *j = NULL;
    FILE *f = NULL;
    char *text = NULL;
    int st = exchange_path(path, sizeof path);
    if (st) return st;
    if (!(f = fopen(path, "r"))) {
        if (errno == ENOENT)
            return sh_error_set(SH_ENOTFOUND, "no last exchange: ask something first (shammah query "
                                              "or the REPL), or give --query and --response");
        return sh_error_set(SH_EIO, "cannot read %s: %s", path, strerror(errno));
    }
    if (!(text = malloc(EXCHANGE_FILE_MAX + 1))) {
        st = sh_error_set(SH_ENOMEM, "out of memory");
        goto out;
    }
    size_t n = fread(text, 1, EXCHANGE_FILE_MAX + 1, f);
    if (n > EXCHANGE_FILE_MAX) {
        st = sh_error_set(SH_EFORMAT, "%s is over %u bytes", path, EXCHANGE_FILE_MAX);
        goto out;
    }
    j = json_loadb(text, n, 0, NULL);
    const char *q = json_string_value(json_object_get(j, "query"));
    const char *r = json_string_value(json_object_get(j, "response"));
    if (!q || !r) {
        st = sh_error_set(SH_EFORMAT, "%s is not a saved exchange (remove it)", path);
        goto out;
    }
    *query = strdup(q);
    *response = strdup(r);
    if (!*query || !*response) {
        free(*query);
        free(*response);
        *query = *response = NULL;
        st = sh_error_set(SH_ENOMEM, "out of memory");
    }
out:
    json_decref(j);
    free(text);
    fclose(f);
    return st;
}

/* ---- sending ---- */

int cli_feedback_weight(const char *s, double *weight) {
    static const struct {
        const char *name;
        double weight;
    } k[] = {{"critical", 10}, {"medium", 3}, {"good", 1}};
    for (size_t i = 0; i < sizeof k / sizeof *k; i++)
        if (!strcmp(s, k[i].name)) {
            *weight = k[i].weight;
            return 0;
        }
    char *end;
    errno = 0;
    double w = strtod(s, &end);
    if (end == s || *end || errno || !isfinite(w) || w <= 0 || w > FEEDBACK_WEIGHT_MAX) return -1;
    *weight = w;
    return 0;
}

/* The daemon's error message out of an error body, else the body's start. */
static void error_detail(const char *body, char *out, size_t cap) {
    json_t *j = json_loads(body ? body : "", 0, NULL);
    const char *m = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
    snprintf(out, cap, "%.300s", m ? m : body ? body : "");
    json_decref(j);
}

int cli_feedback_send(struct client *c, const char *query, const char *response, double weight,
                      const char *note, long long *id) {
    char *body = NULL, *resp = NULL;
    json_t *j = NULL;
    long status = 0;
    int st = SH_OK;
    /* the feedback store needs a daemon, not a model: one that answers without a model will do */
    int h = client_health(c, CLIENT_HEALTH_TIMEOUT_MS);
    if (h < 0 && h != SH_EUNSUPPORTED && (st = client_ensure_daemon(c)) && st != SH_EUNSUPPORTED) goto out;
    st = SH_OK;
    j = json_pack("{s:s,s:s,s:f}", "query", query, "response", response, "weight", weight);
    if (j && note && *note) json_object_set_new(j, "feedback", json_string(note));
    if (!j || !(body = json_dumps(j, JSON_COMPACT))) {
        st = sh_error_set(SH_EINVAL, "the exchange is not valid UTF-8 text");
        goto out;
    }
    if ((st = client_post_json(c, "/v1/feedback", body, &status, &resp))) goto out;
    if (status / 100 != 2) {
        char why[400];
        error_detail(resp, why, sizeof why);
        st = status == 404 ? sh_error_set(SH_EUNSUPPORTED, "this daemon has no /v1/feedback")
                           : sh_error_set(SH_EINVAL, "the daemon refused the feedback (HTTP %ld): %s", status, why);
        goto out;
    }
    json_decref(j);
    j = json_loads(resp ? resp : "", 0, NULL);
    *id = (long long)json_integer_value(json_object_get(j, "id"));
out:
    json_decref(j);
    free(body);
    free(resp);
    return st;
}

/* ---- the command ---- */

static void feedback_usage(FILE *f) {
    fprintf(f,
            "usage: shammah feedback critical|medium|good|WEIGHT [NOTE...] [--query TEXT --response TEXT]\n"
            "Rates an exchange for training: the daemon queues it (POST /v1/feedback) and the next\n"
            "LoRA run learns from it. The weight is a number in (0, %d] or critical (10), medium (3),\n"
            "good (1); heavier means a correction that matters more. NOTE says what was wrong.\n"
            "Without --query/--response it rates the last exchange of `shammah query` or the REPL\n"
            "(SHAMMAH_HOME/%s). The daemon is started when none runs, as for query.\n",
            FEEDBACK_WEIGHT_MAX, EXCHANGE_FILE);
}

int cmd_feedback(int argc, char **argv) {
    const char *weight_s = NULL, *query = NULL, *response = NULL;
    char *fq = NULL, *fr = NULL;
    conv_buf note;
    conv_buf_init(&note, FEEDBACK_NOTE_MAX);
    client *c = NULL;
    void *cfg = NULL;
    int rc = 2;
    double weight = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            feedback_usage(stdout);
            rc = 0;
            goto out;
        }
        if (!strcmp(a, "--query") || !strcmp(a, "--response")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "shammah feedback: %s needs a value\n", a);
                goto out;
            }
            *(a[2] == 'q' ? &query : &response) = argv[++i];
            continue;
        }
        /* "-1" is a (bad) weight; other words starting with - are options */
        if (a[0] == '-' && a[1] && (weight_s ? a[1] == '-' : !strchr("0123456789.", a[1]))) {
            fprintf(stderr, "shammah feedback: unknown option '%s' (see --help)\n", a);
            goto out;
        }
        if (!weight_s) {
            weight_s = a;
        } else if ((note.len && conv_buf_puts(&note, " ")) || conv_buf_puts(&note, a)) {
            fprintf(stderr, "shammah feedback: the note is over %u bytes\n", FEEDBACK_NOTE_MAX);
            goto out;
        }
    }
    if (!weight_s) {
        fprintf(stderr, "shammah feedback: give a weight: critical, medium, good or a number (see --help)\n");
        goto out;
    }
    if (cli_feedback_weight(weight_s, &weight)) {
        fprintf(stderr, "shammah feedback: bad weight '%s': critical, medium, good or a number in (0, %d]\n",
                weight_s, FEEDBACK_WEIGHT_MAX);
        goto out;
    }
    if (!query != !response) {
        fprintf(stderr, "shammah feedback: --query and --response go together\n");
        goto out;
    }
    rc = 1;
    if (!query) {
        if (cli_exchange_load(&fq, &fr)) {
            fprintf(stderr, "shammah feedback: %s\n", sh_error_last());
            goto out;
        }
        query = fq;
        response = fr;
    }
    char home[PATHS_MAX];
    client_opts o;
    if (client_opts_from_config(&o, &cfg, home, sizeof home) || client_new(&c, &o)) {
        fprintf(stderr, "shammah feedback: %s\n", sh_error_last());
        goto out;
    }
    long long id = 0;
    if (cli_feedback_send(c, query, response, weight, note.p, &id)) {
        fprintf(stderr, "shammah feedback: %s\n", sh_error_last());
        goto out;
    }
    printf("feedback queued (id %lld, weight %g)\n", id, weight);
    rc = 0;
out:
    client_free(c);
    client_config_free(cfg);
    conv_buf_free(&note);
    free(fq);
    free(fr);
    return rc;
}
