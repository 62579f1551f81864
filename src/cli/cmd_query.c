/* cmd_query.c - `shammah query` (one answer to stdout, fit for pipes) and the daemon life-cycle
 * commands `daemon-start`, `daemon-stop`, `daemon-status`. */
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/paths.h"
#include "base/status.h"
#include "cli/cliutil.h"
#include "cli/commands.h"
#include "cli/direct.h"
#include "client/client.h"
#include "proto/conv.h"
#include "server/pidfile.h"

#define QUERY_MAX_INPUT (4u << 20) /* bytes of a question read from stdin */
#define STOP_GRACE_MS 5000          /* SIGTERM, then SIGKILL after this */
#define QUERY_MAX_ANSWER (1u << 20) /* bytes of the answer kept for last_exchange.json */

/* Opens a client from config.toml; prints "shammah CMD: ..." on failure. Caller frees both. */
static int open_client(const char *cmd, client **c, void **cfg, int quiet) {
    static char home[PATHS_MAX];
    client_opts o;
    *c = NULL;
    if (client_opts_from_config(&o, cfg, home, sizeof home)) {
        fprintf(stderr, "shammah %s: %s\n", cmd, sh_error_last());
        return -1;
    }
    o.quiet = quiet;
    if (client_new(c, &o)) {
        fprintf(stderr, "shammah %s: %s\n", cmd, sh_error_last());
        client_config_free(*cfg);
        *cfg = NULL;
        return -1;
    }
    return 0;
}

/* ---- query ---- */

static void query_usage(FILE *f) {
    fprintf(f,
            "usage: shammah query [options] TEXT...\n"
            "       COMMAND | shammah query [options]\n"
            "Asks the daemon one question and streams the answer to stdout. Errors go to stderr\n"
            "and give a non-zero exit; nothing else is printed. The daemon is started when none\n"
            "runs ([client] auto_spawn in config.toml). The exchange is kept for `shammah feedback`.\n"
            "  --direct           run the model in this process, without a daemon (also\n"
            "                     [client] use_daemon = false in config.toml)\n"
            "  -m NAME            the model: a name of `shammah models` (the daemon loads it on\n"
            "                     demand) or, in direct mode, also a path; direct mode's default:\n"
            "                     [backend] model, else the largest that fits\n"
            "  --system TEXT      system prompt\n"
            "  -n, --max-tokens N tokens to generate at most (default: the daemon's)\n"
            "  --temp T           temperature (0 = greedy)\n"
            "  --seed S           random seed\n"
            "  --local            answer with the local model only\n");
}

typedef struct {
    int any_text;
    int ends_newline;
    int failed;
    char error[512];
    conv_buf answer; /* for last_exchange.json (cut there anyway) */
} query_out;

static int query_event(void *user, const conv_event *ev) {
    query_out *q = user;
    if (ev->kind == CONV_EV_TEXT && ev->len) {
        if (fwrite(ev->text, 1, ev->len, stdout) != ev->len) return SH_EIO;
        fflush(stdout);
        q->any_text = 1;
        q->ends_newline = ev->text[ev->len - 1] == '\n';
        conv_buf_append(&q->answer, ev->text, ev->len); /* over the bound: the rest is dropped */
    } else if (ev->kind == CONV_EV_ERROR) {
        q->failed = 1;
        snprintf(q->error, sizeof q->error, "%.*s", (int)(ev->len < 500 ? ev->len : 500),
                 ev->text ? ev->text : "error");
    }
    return 0;
}

static int read_stdin(char **out) {
    conv_buf b;
    conv_buf_init(&b, QUERY_MAX_INPUT);
    char buf[65536];
    size_t n;
    int st = SH_OK;
    while ((n = fread(buf, 1, sizeof buf, stdin)) > 0)
        if ((st = conv_buf_append(&b, buf, n))) {
            st = sh_error_set(SH_ERANGE, "the question on stdin is over %u bytes", QUERY_MAX_INPUT);
            break;
        }
    if (!st && ferror(stdin)) st = sh_error_set(SH_EIO, "cannot read stdin: %s", strerror(errno));
    if (st) {
        conv_buf_free(&b);
        return st;
    }
    *out = b.p ? b.p : strdup("");
    return *out ? SH_OK : SH_ENOMEM;
}

int cmd_query(int argc, char **argv) {
    const char *system = NULL, *model_name = NULL;
    long long max_tokens = -1, seed = -1;
    float temp = -1;
    int local = 0, rc = 1, use_direct = direct_configured();
    direct *dr = NULL;
    query_out q = {0};
    conv_buf_init(&q.answer, QUERY_MAX_ANSWER);
    conv_buf text;
    conv_buf_init(&text, QUERY_MAX_INPUT);
    char *input = NULL;
    client *c = NULL;
    void *cfg = NULL;
    conv_request r;
    conv_request_zero(&r);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            query_usage(stdout);
            rc = 0;
            goto out;
        }
        if (!strcmp(a, "--local")) {
            local = 1;
            continue;
        }
        if (!strcmp(a, "--direct")) {
            use_direct = 1;
            continue;
        }
        if (!strcmp(a, "--")) {
            for (i++; i < argc; i++)
                if ((text.len && conv_buf_puts(&text, " ")) || conv_buf_puts(&text, argv[i])) goto too_long;
            break;
        }
        if (a[0] == '-' && a[1]) {
            int bad = 0;
            if (!v) {
                fprintf(stderr, "shammah query: %s needs a value (or is unknown; see --help)\n", a);
                rc = 2;
                goto out;
            }
            i++;
            if (!strcmp(a, "--system")) system = v;
            else if (!strcmp(a, "-m") || !strcmp(a, "--model")) model_name = v;
            else if (!strcmp(a, "-n") || !strcmp(a, "--max-tokens"))
                bad = cli_int("query", a, v, 1, 1 << 24, &max_tokens);
            else if (!strcmp(a, "--temp")) bad = cli_float("query", a, v, 0, 2, &temp);
            else if (!strcmp(a, "--seed")) bad = cli_int("query", a, v, 0, INT64_MAX, &seed);
            else {
                fprintf(stderr, "shammah query: unknown option '%s' (see --help)\n", a);
                bad = -1;
            }
            if (bad) {
                rc = 2;
                goto out;
            }
            continue;
        }
        if ((text.len && conv_buf_puts(&text, " ")) || conv_buf_puts(&text, a)) goto too_long;
    }
    const char *question = text.p;
    if (!text.len) {
        if (isatty(0)) {
            fprintf(stderr, "shammah query: no question (give TEXT or pipe it on stdin; see --help)\n");
            rc = 2;
            goto out;
        }
        if (read_stdin(&input)) {
            fprintf(stderr, "shammah query: %s\n", sh_error_last());
            goto out;
        }
        question = input;
    }
    if (!question || !*question || strspn(question, " \t\r\n") == strlen(question)) {
        fprintf(stderr, "shammah query: the question is empty\n");
        rc = 2;
        goto out;
    }
    if (use_direct) {
        char path[PATHS_MAX];
        if (direct_pick_model("query", model_name, path, sizeof path)) goto out;
        if (direct_new(&dr, path)) {
            fprintf(stderr, "shammah query: %s\n", sh_error_last());
            goto out;
        }
    } else {
        if (open_client("query", &c, &cfg, 0)) goto out;
        if (client_ensure_daemon(c)) {
            fprintf(stderr, "shammah query: %s\n", sh_error_last());
            goto out;
        }
    }
    size_t qlen = strlen(question);
    if (conv_request_init(&r, qlen * 2 + (system ? strlen(system) * 2 : 0) + 65536)) goto oom;
    conv_message *m = conv_alloc(r.arena, sizeof *m);
    conv_block *b = conv_alloc(r.arena, sizeof *b);
    if (!m || !b) goto oom;
    memset(b, 0, sizeof *b);
    b->kind = CONV_TEXT;
    if (!(b->text = conv_strdup(r.arena, question))) goto oom;
    m->role = CONV_USER;
    m->blocks = b;
    m->n_blocks = 1;
    r.messages = m;
    r.n_messages = 1;
    if (system && !(r.system = conv_strdup(r.arena, system))) goto oom;
    if (model_name && !use_direct && !(r.model = conv_strdup(r.arena, model_name))) goto oom;
    r.max_tokens = max_tokens;
    r.seed = seed;
    if (temp >= 0) r.temperature = temp;
    r.local_only = local;
    r.stream = 1;
    /* Ctrl-C ends the process: the daemon sees the connection go; direct mode goes with it */
    int st = dr ? direct_stream(dr, &r, NULL, query_event, &q) : client_stream(c, &r, NULL, query_event, &q);
    if (q.any_text && !q.ends_newline) fputc('\n', stdout);
    fflush(stdout);
    if (st) {
        fprintf(stderr, "shammah query: %s\n", sh_error_last());
        goto out;
    }
    if (q.failed) {
        fprintf(stderr, "shammah query: %s\n", q.error);
        goto out;
    }
    if (cli_exchange_save(question, q.answer.p ? q.answer.p : ""))
        fprintf(stderr, "shammah query: warning: %s\n", sh_error_last());
    rc = 0;
    goto out;
too_long:
    fprintf(stderr, "shammah query: the question is over %u bytes\n", QUERY_MAX_INPUT);
    rc = 2;
    goto out;
oom:
    fprintf(stderr, "shammah query: out of memory\n");
out:
    conv_request_free(&r);
    conv_buf_free(&q.answer);
    direct_free(dr);
    client_free(c);
    client_config_free(cfg);
    conv_buf_free(&text);
    free(input);
    return rc;
}

/* ---- daemon-start ---- */

int cmd_daemon_start(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: shammah daemon-start\n"
                   "Starts the daemon in the background (output appended to SHAMMAH_HOME/daemon.log),\n"
                   "waits until it is ready and prints its pid. Address and model come from\n"
                   "config.toml ([client] daemon_address, [backend] model) or SHAMMAH_MODEL.\n");
            return 0;
        }
        fprintf(stderr, "shammah daemon-start: unknown argument '%s' (see --help)\n", argv[i]);
        return 2;
    }
    client *c = NULL;
    void *cfg = NULL;
    int rc = 1;
    if (open_client("daemon-start", &c, &cfg, 1)) return 1;
    char pp[PATHS_MAX];
    pid_t pid = 0;
    if (paths_file(pp, sizeof pp, PATHS_PIDFILE)) goto fail;
    if ((pid = pidfile_running(pp))) {
        fprintf(stderr, "shammah daemon-start: a daemon is already running (pid %d)\n", (int)pid);
        goto out;
    }
    if (client_health(c, CLIENT_HEALTH_TIMEOUT_MS) >= 0) {
        fprintf(stderr, "shammah daemon-start: something already answers at %s\n", client_address(c));
        goto out;
    }
    if (client_spawn(c, &pid)) goto fail;
    /* ready = answers /health with 200; loading a model can take longer: ensure waits 10 s */
    if (client_ensure_daemon(c)) goto fail;
    /* the spawner detaches through an intermediate process: the PID file names the daemon */
    pid_t running = pidfile_running(pp);
    printf("%d\n", (int)(running ? running : pid));
    rc = 0;
    goto out;
fail:
    fprintf(stderr, "shammah daemon-start: %s\n", sh_error_last());
out:
    client_free(c);
    client_config_free(cfg);
    return rc;
}

/* ---- daemon-stop ---- */

int cmd_daemon_stop(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: shammah daemon-stop\n"
                   "Stops the daemon of this SHAMMAH_HOME: SIGTERM, then SIGKILL after %d s.\n"
                   "Removes a PID file left by a daemon that died.\n", STOP_GRACE_MS / 1000);
            return 0;
        }
        fprintf(stderr, "shammah daemon-stop: unknown argument '%s' (see --help)\n", argv[i]);
        return 2;
    }
    char pp[PATHS_MAX];
    if (paths_file(pp, sizeof pp, PATHS_PIDFILE)) {
        fprintf(stderr, "shammah daemon-stop: %s\n", sh_error_last());
        return 1;
    }
    pid_t pid = pidfile_running(pp);
    if (!pid) {
        if (access(pp, F_OK) == 0) {
            unlink(pp);
            fprintf(stderr, "shammah daemon-stop: no daemon running (removed a stale PID file)\n");
        } else {
            fprintf(stderr, "shammah daemon-stop: no daemon running\n");
        }
        return 0;
    }
    if (kill(pid, SIGTERM) != 0 && errno != ESRCH) {
        fprintf(stderr, "shammah daemon-stop: cannot signal pid %d: %s\n", (int)pid, strerror(errno));
        return 1;
    }
    double t0 = cli_now_ms();
    while (pidfile_running(pp) == pid) {
        if (cli_now_ms() - t0 > STOP_GRACE_MS) {
            fprintf(stderr, "shammah daemon-stop: pid %d ignored SIGTERM for %d s: SIGKILL\n", (int)pid,
                    STOP_GRACE_MS / 1000);
            kill(pid, SIGKILL);
            for (int i = 0; i < 50 && pidfile_running(pp) == pid; i++) usleep(20000);
            unlink(pp); /* a killed daemon cannot remove its own file */
            break;
        }
        usleep(20000);
    }
    printf("stopped %d\n", (int)pid);
    return 0;
}

/* ---- daemon-status ---- */

static const char *jstr(json_t *o, const char *key) {
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "?";
}

int cmd_daemon_status(int argc, char **argv) {
    int json_out = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: shammah daemon-status [--json]\n"
                   "Prints the daemon's pid, address, model and its state, uptime and sessions.\n"
                   "Exit 0 only when a daemon answers. Never starts one.\n");
            return 0;
        }
        if (!strcmp(argv[i], "--json")) {
            json_out = 1;
            continue;
        }
        fprintf(stderr, "shammah daemon-status: unknown argument '%s' (see --help)\n", argv[i]);
        return 2;
    }
    client *c = NULL;
    void *cfg = NULL;
    char *body = NULL;
    json_t *j = NULL;
    int rc = 1;
    if (open_client("daemon-status", &c, &cfg, 1)) return 1;
    char pp[PATHS_MAX];
    pid_t pid = paths_file(pp, sizeof pp, PATHS_PIDFILE) ? 0 : pidfile_running(pp);
    long status = 0;
    if (client_get(c, "/v1/status", &status, &body)) {
        printf("daemon: not running at %s%s\n", client_address(c),
               pid ? " (but its PID file is held: starting?)" : "");
        goto out;
    }
    if (json_out) {
        printf("%s\n", body);
        rc = status == 200 ? 0 : 1;
        goto out;
    }
    j = json_loads(body, 0, NULL);
    if (status != 200 || !json_is_object(j)) {
        printf("daemon: answers at %s with HTTP %ld\n", client_address(c), status);
        goto out;
    }
    json_t *m = json_object_get(j, "model");
    long long up = json_integer_value(json_object_get(j, "uptime_seconds"));
    printf("daemon:   running (pid %s%d) at %s, version %s\n", pid ? "" : "?", (int)pid,
           client_address(c), jstr(j, "version"));
    printf("model:    %s (%s)", jstr(m, "name"),
           jstr(m, "state"));
    if (json_string_value(json_object_get(m, "architecture")))
        printf(", %s, %lld parameters, context %lld",
               json_string_value(json_object_get(m, "architecture")),
               (long long)json_integer_value(json_object_get(m, "parameters")),
               (long long)json_integer_value(json_object_get(m, "context")));
    if (json_string_value(json_object_get(m, "error")))
        printf(": %s", json_string_value(json_object_get(m, "error")));
    printf("\nuptime:   %lldh %02lldm %02llds\n", up / 3600, up / 60 % 60, up % 60);
    printf("sessions: %lld active; generations %lld active, %lld queued\n",
           (long long)json_integer_value(json_object_get(json_object_get(j, "sessions"), "active")),
           (long long)json_integer_value(json_object_get(j, "active_generations")),
           (long long)json_integer_value(json_object_get(j, "queue_depth")));
    rc = 0;
out:
    json_decref(j);
    free(body);
    client_free(c);
    client_config_free(cfg);
    return rc;
}
