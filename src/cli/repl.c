/* repl.c - the interactive session: libedit prompt, streaming, slash commands, tool loop. */
#include "cli/repl.h"

#include <editline/readline.h>
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/paths.h"
#include "base/status.h"
#include "cli/cliutil.h"
#include "cli/commands.h"
#include "cli/direct.h"
#include "cli/tools.h"
#include "client/client.h"
#include "proto/conv.h"

/* ---- signals: Ctrl-C cancels what runs (generation, tool), or the line being typed ---- */

static volatile sig_atomic_t g_cancel;

static void on_sigint(int sig) {
    (void)sig;
    g_cancel = 1;
}

static void install_sigint(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: a blocked read returns so the flag is seen */
    sigaction(SIGINT, &sa, NULL);
}

/* libedit reads through this: an interrupted read ends the line, which is then dropped. */
static int repl_getc(FILE *f) {
    for (;;) {
        unsigned char ch;
        ssize_t n = read(fileno(f), &ch, 1);
        if (n == 1) return ch;
        if (n < 0 && errno == EINTR) {
            if (g_cancel) return '\n';
            continue;
        }
        return EOF;
    }
}

/* ---- the session ---- */

typedef struct {
    client *cl;
    void *cfg;
    char home[PATHS_MAX];
    char history[PATHS_MAX];
    tools_patterns pats;
    conv_request conv; /* the conversation so far (its arena owns every string) */
    int cap_messages;
    int tty_in, tty_out;
    int plan_mode;
    long long max_tokens;
    const char *system;
    /* the last exchange, for /feedback (also in last_exchange.json, for `shammah feedback`) */
    char *last_question, *last_answer;
    /* direct mode: the engine in this process answers instead of the daemon */
    int direct_mode;
    const char *model_name; /* -m NAME; NULL: direct_pick_model's default */
    direct *dr;             /* loaded on first use, kept when switching back to the daemon */
} repl;

static void say(repl *r, const char *color, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(repl *r, const char *color, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (r->tty_out && color) printf("\033[%sm", color);
    vprintf(fmt, ap);
    if (r->tty_out && color) printf("\033[0m");
    va_end(ap);
    fflush(stdout);
}

#define DIM "2"
#define RED "31"
#define YELLOW "33"
#define CYAN "36"

static int conv_reset(repl *r) {
    conv_request_free(&r->conv);
    r->cap_messages = 0;
    int st = conv_request_init(&r->conv, REPL_CONV_BYTES);
    if (st) return st;
    r->conv.stream = 1;
    r->conv.max_tokens = r->max_tokens;
    if (r->system && !(r->conv.system = conv_strdup(r->conv.arena, r->system))) return SH_ENOMEM;
    /* -m NAME: the daemon loads a model it lists on demand (direct mode loaded it already) */
    if (r->model_name && !(r->conv.model = conv_strdup(r->conv.arena, r->model_name))) return SH_ENOMEM;
    int n;
    r->conv.tools = (conv_tool *)tools_all(&n);
    r->conv.n_tools = n;
    return SH_OK;
}

/* A new message at the end of the conversation; its blocks live in the arena. */
static conv_message *conv_push(repl *r, conv_role role, int n_blocks) {
    conv_request *c = &r->conv;
    if (c->n_messages == r->cap_messages) {
        int cap = r->cap_messages ? r->cap_messages * 2 : 16;
        conv_message *m = conv_alloc(c->arena, (size_t)cap * sizeof *m);
        if (!m) return NULL;
        if (c->n_messages) memcpy(m, c->messages, (size_t)c->n_messages * sizeof *m);
        c->messages = m;
        r->cap_messages = cap;
    }
    conv_block *b = conv_alloc(c->arena, (size_t)(n_blocks ? n_blocks : 1) * sizeof *b);
    if (!b) return NULL;
    memset(b, 0, (size_t)(n_blocks ? n_blocks : 1) * sizeof *b);
    conv_message *m = &c->messages[c->n_messages++];
    m->role = role;
    m->blocks = b;
    m->n_blocks = n_blocks;
    return m;
}

static int conv_add_text(repl *r, conv_role role, const char *text) {
    conv_message *m = conv_push(r, role, 1);
    if (!m) return SH_ENOMEM;
    m->blocks[0].kind = CONV_TEXT;
    return (m->blocks[0].text = conv_strdup(r->conv.arena, text)) ? SH_OK : SH_ENOMEM;
}

/* ---- one model turn ---- */

/* Loads the direct-mode model if not yet; prints why not. 0 when ready. */
static int direct_ready(repl *r) {
    if (r->dr) return 0;
    char path[PATHS_MAX];
    if (direct_pick_model("repl", r->model_name, path, sizeof path)) return -1;
    if (direct_new(&r->dr, path)) {
        say(r, RED, "error: %s\n", sh_error_last());
        return -1;
    }
    return 0;
}

/* The chat call: the daemon, or the engine in this process; the same events either way. */
static int chat_stream(repl *r, conv_event_fn fn, void *user) {
    if (r->direct_mode) return direct_stream(r->dr, &r->conv, &g_cancel, fn, user);
    return client_stream(r->cl, &r->conv, &g_cancel, fn, user);
}

typedef struct {
    repl *r;
    conv_accum acc;
    int printed, ends_newline;
} turn;

static int turn_event(void *user, const conv_event *ev) {
    turn *t = user;
    int st = conv_accum_event(&t->acc, ev);
    if (ev->kind == CONV_EV_TEXT && ev->len) {
        fwrite(ev->text, 1, ev->len, stdout);
        fflush(stdout);
        t->printed = 1;
        t->ends_newline = ev->text[ev->len - 1] == '\n';
    }
    return st;
}

/* Adds what the model said (text and tool calls) as an assistant message. */
static int add_assistant(repl *r, const conv_accum *a, int with_tools) {
    int n = 0;
    for (int i = 0; i < a->n_blocks; i++)
        if ((with_tools && a->blocks[i].kind == CONV_TOOL_USE) || (a->blocks[i].kind == CONV_TEXT && a->blocks[i].text.len)) n++;
    if (!n) return SH_OK;
    conv_message *m = conv_push(r, CONV_ASSISTANT, n);
    if (!m) return SH_ENOMEM;
    int k = 0;
    for (int i = 0; i < a->n_blocks; i++) {
        const conv_accum_block *b = &a->blocks[i];
        if (b->kind == CONV_TOOL_USE ? !with_tools : !b->text.len) continue;
        conv_block *o = &m->blocks[k++];
        o->kind = b->kind;
        if (b->kind == CONV_TEXT) {
            o->text = conv_strndup(r->conv.arena, b->text.p, b->text.len);
            if (!o->text) return SH_ENOMEM;
        } else {
            o->id = conv_strdup(r->conv.arena, b->id ? b->id : "call");
            o->name = conv_strdup(r->conv.arena, b->name ? b->name : "");
            /* arguments that are not a JSON object go back as {} (the API needs an object) */
            json_t *j = b->text.len ? json_loadb(b->text.p, b->text.len, 0, NULL) : NULL;
            o->input_json = conv_strdup(r->conv.arena, json_is_object(j) ? b->text.p : "{}");
            json_decref(j);
            if (!o->id || !o->name || !o->input_json) return SH_ENOMEM;
        }
    }
    return SH_OK;
}

/* Reads one answer line for a question asked mid-turn (approval prompts). NULL on EOF. */
static char *ask_line(repl *r, const char *prompt) {
    if (!r->tty_in) return NULL; /* scripted input cannot approve anything */
    g_cancel = 0;
    char *l = readline(prompt);
    if (g_cancel) {
        free(l);
        return NULL;
    }
    return l;
}

/* The pattern suggested for "always calls like this": the program for bash, the folder for
 * paths. Caller frees. */
static char *suggest_pattern(const char *tool, const char *subject) {
    char buf[1024];
    if (!strcmp(tool, "bash")) {
        size_t n = strcspn(subject, " \t");
        snprintf(buf, sizeof buf, "%.*s *", (int)(n < 512 ? n : 512), subject);
    } else {
        const char *slash = strrchr(subject, '/');
        if (slash) snprintf(buf, sizeof buf, "%.*s/*", (int)(slash - subject < 900 ? slash - subject : 900), subject);
        else snprintf(buf, sizeof buf, "*");
    }
    return strdup(buf);
}

/* Decides, asking when needed. Returns 1 to run, 0 to deny (why filled). */
static int approve(repl *r, const char *name, const char *input, char *why, size_t why_cap) {
    tools_decision d = tools_check(&r->pats, r->plan_mode, name, input, why, why_cap);
    if (d == TOOLS_ALLOW) return 1;
    if (d == TOOLS_HARD_DENY || d == TOOLS_DENY) return 0;
    if (!r->tty_in) {
        snprintf(why, why_cap, "the user could not be asked (input is not a terminal)");
        return 0;
    }
    char *subject = tools_subject(name, input);
    for (;;) {
        char *l = ask_line(r, "  allow? [y]es once / [a]lways this call / [p]attern / [n]o: ");
        if (!l) {
            snprintf(why, why_cap, "denied by the user");
            free(subject);
            return 0;
        }
        char ch = l[strspn(l, " \t")];
        free(l);
        if (ch == 'y' || ch == 'Y') break;
        if (ch == 'n' || ch == 'N') {
            snprintf(why, why_cap, "denied by the user");
            free(subject);
            return 0;
        }
        if (ch == 'a' || ch == 'A') {
            if (tools_patterns_add(&r->pats, name, TOOLS_EXACT, input))
                say(r, RED, "  cannot save the approval: %s\n", sh_error_last());
            break;
        }
        if (ch == 'p' || ch == 'P') {
            char *sug = suggest_pattern(name, subject ? subject : "");
            char prompt[1200];
            snprintf(prompt, sizeof prompt, "  pattern for %s (Enter for \"%s\"): ", name, sug ? sug : "*");
            char *pl = ask_line(r, prompt);
            const char *pat = pl && *pl ? pl : sug;
            if (pat && tools_patterns_add(&r->pats, name, TOOLS_PATTERN, pat))
                say(r, RED, "  cannot save the approval: %s\n", sh_error_last());
            else if (pat)
                say(r, DIM, "  always allowed: %s %s\n", name, pat);
            free(pl);
            free(sug);
            break;
        }
    }
    free(subject);
    return 1;
}

/* Shows a result's first lines, so the user sees what the model sees. */
static void show_result(repl *r, const char *text, int is_error) {
    int lines = 0;
    const char *p = text;
    while (*p && lines < 6) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        say(r, is_error ? RED : DIM, "  │ %.*s\n", (int)(n > 200 ? 200 : n), p);
        lines++;
        p = nl ? nl + 1 : p + n;
    }
    if (*p) say(r, DIM, "  │ …\n");
}

/* Runs the tool calls of the last answer and adds their results as one CONV_TOOL message. */
static int run_tools(repl *r) {
    /* the assistant message just added holds the calls */
    int n = 0, ai = r->conv.n_messages - 1;
    for (int i = 0; i < r->conv.messages[ai].n_blocks; i++) n += r->conv.messages[ai].blocks[i].kind == CONV_TOOL_USE;
    conv_message *m = conv_push(r, CONV_TOOL, n);
    if (!m) return SH_ENOMEM;
    int k = 0;
    const conv_message *am = &r->conv.messages[ai]; /* after the push: the array may have moved */
    for (int i = 0; i < am->n_blocks; i++) {
        const conv_block *call = &am->blocks[i];
        if (call->kind != CONV_TOOL_USE) continue;
        char *subject = tools_subject(call->name, call->input_json);
        say(r, CYAN, "● %s", call->name);
        say(r, NULL, " %s\n", subject && *subject ? subject : call->input_json);
        free(subject);
        char why[512] = "", *out = NULL;
        int is_error = 1;
        if (approve(r, call->name, call->input_json, why, sizeof why)) {
            g_cancel = 0;
            tools_opts o = {.cancel = &g_cancel};
            if (tools_run(call->name, call->input_json, &o, &out, &is_error)) return SH_ENOMEM;
        } else {
            say(r, YELLOW, "  denied: %s\n", why);
            size_t len = strlen(why) + 64;
            out = malloc(len);
            if (!out) return SH_ENOMEM;
            snprintf(out, len, "the call was not run: %s", why);
        }
        if (out && *out && !strstr(out, "the call was not run")) show_result(r, out, is_error);
        conv_block *b = &m->blocks[k++];
        b->kind = CONV_TOOL_RESULT;
        b->id = call->id;
        b->name = call->name;
        b->is_error = is_error;
        b->text = conv_strdup(r->conv.arena, out ? out : "");
        free(out);
        if (!b->text) return SH_ENOMEM;
    }
    m->n_blocks = k;
    return SH_OK;
}

static void keep_last(char **slot, const char *s) {
    free(*slot);
    *slot = s ? strdup(s) : NULL;
}

/* Asks a question and runs the tool loop until the model answers without tools. */
static void ask_rounds(repl *r, const char *question, int local_only) {
    if (r->direct_mode ? direct_ready(r) != 0 : client_ensure_daemon(r->cl) != SH_OK) {
        if (!r->direct_mode) say(r, RED, "error: %s\n", sh_error_last());
        return;
    }
    if (conv_add_text(r, CONV_USER, question)) {
        say(r, RED, "error: out of memory (try /clear)\n");
        return;
    }
    keep_last(&r->last_question, question);
    keep_last(&r->last_answer, NULL);
    r->conv.local_only = local_only;
    for (int round = 0; round <= REPL_MAX_TOOL_TURNS; round++) {
        /* the last round may not call tools: the model must answer with what it has */
        r->conv.tool_choice = round == REPL_MAX_TOOL_TURNS ? CONV_TOOLS_NONE : CONV_TOOLS_AUTO;
        turn t = {.r = r};
        conv_accum_init(&t.acc);
        g_cancel = 0;
        int st = chat_stream(r, turn_event, &t);
        if (t.printed && !t.ends_newline) fputc('\n', stdout);
        int calls = 0;
        for (int i = 0; i < t.acc.n_blocks; i++) calls += t.acc.blocks[i].kind == CONV_TOOL_USE;
        if (st == SH_ECANCELED) {
            say(r, YELLOW, "[canceled]\n");
            calls = 0; /* calls cut short are not run */
        } else if (st) {
            say(r, RED, "error: %s\n", sh_error_last());
        } else if (t.acc.failed) {
            say(r, RED, "error: %.*s\n", (int)t.acc.error_text.len, t.acc.error_text.p ? t.acc.error_text.p : "");
        }
        int ok = add_assistant(r, &t.acc, calls > 0 && !st && !t.acc.failed) == SH_OK;
        for (int i = 0; i < t.acc.n_blocks; i++)
            if (t.acc.blocks[i].kind == CONV_TEXT && t.acc.blocks[i].text.p)
                keep_last(&r->last_answer, t.acc.blocks[i].text.p);
        int more = ok && !st && !t.acc.failed && calls > 0;
        conv_accum_free(&t.acc);
        if (!ok) {
            say(r, RED, "error: out of memory (try /clear)\n");
            return;
        }
        if (!more) return;
        if (run_tools(r) != SH_OK) {
            say(r, RED, "error: out of memory (try /clear)\n");
            return;
        }
        if (g_cancel) {
            say(r, YELLOW, "[canceled]\n");
            return;
        }
    }
}

static void ask(repl *r, const char *question, int local_only) {
    ask_rounds(r, question, local_only);
    if (r->last_question && r->last_answer && cli_exchange_save(r->last_question, r->last_answer))
        say(r, YELLOW, "warning: %s\n", sh_error_last());
}

/* ---- slash commands ---- */

static void slash_help(repl *r) {
    say(r, NULL,
        "Type a question; a line ending in \\ continues on the next line.\n"
        "Ctrl-C cancels the answer (or the line being typed); Ctrl-D quits.\n"
        "  /help                 this help\n"
        "  /quit                 leave (also /exit, Ctrl-D)\n"
        "  /clear                start a new conversation\n"
        "  /model                the model and its state\n"
        "  /daemon               daemon status; /daemon direct: run the model in this process,\n"
        "                        /daemon daemon: back to the daemon\n"
        "  /local QUESTION       ask the local model only\n"
        "  /feedback critical|medium|good|WEIGHT [note]   rate the last answer (for training)\n"
        "  /training             training status\n"
        "  /patterns             tool approvals: /patterns, /patterns add TOOL GLOB, /patterns remove N\n"
        "  /plan                 plan mode on/off (only read-only tools: read, glob, grep)\n"
        "  /metrics              the daemon's counters\n");
}

static json_t *get_json(repl *r, const char *path, long *status) {
    char *body = NULL;
    if (client_get(r->cl, path, status, &body)) {
        say(r, RED, "error: %s\n", sh_error_last());
        return NULL;
    }
    json_t *j = json_loads(body, 0, NULL);
    free(body);
    return j;
}

static const char *jstr(json_t *o, const char *key) {
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "?";
}

static void slash_model(repl *r) {
    if (r->direct_mode) {
        char d[1024];
        if (direct_ready(r)) return;
        direct_describe(r->dr, d, sizeof d);
        say(r, NULL, "model: %s, in this process (direct mode)\n  path: %s\n", d, direct_model_path(r->dr));
        return;
    }
    long status = 0;
    json_t *j = get_json(r, "/v1/status", &status);
    if (!j) return;
    json_t *m = json_object_get(j, "model");
    say(r, NULL, "model: %s (%s)", jstr(m, "name"), jstr(m, "state"));
    if (json_object_get(m, "architecture"))
        say(r, NULL, ", %s, %lld parameters, context %lld, template %s", jstr(m, "architecture"),
            (long long)json_integer_value(json_object_get(m, "parameters")),
            (long long)json_integer_value(json_object_get(m, "context")), jstr(m, "chat_template"));
    say(r, NULL, "\n  path: %s\n", jstr(m, "path"));
    json_decref(j);
}

static void cmd_daemon_info(repl *r, const char *arg) {
    if (*arg) {
        if (!strcmp(arg, "direct") || !strcmp(arg, "local")) {
            if (r->direct_mode) {
                say(r, NULL, "already in direct mode\n");
            } else if (direct_ready(r) == 0) {
                char d[1024];
                direct_describe(r->dr, d, sizeof d);
                r->direct_mode = 1;
                say(r, NULL, "direct mode: %s answers in this process\n", d);
            }
        } else if (!strcmp(arg, "daemon")) {
            if (!r->direct_mode) {
                say(r, NULL, "already talking to the daemon at %s\n", client_address(r->cl));
            } else {
                r->direct_mode = 0;
                say(r, NULL, "talking to the daemon at %s (started when needed)\n", client_address(r->cl));
            }
        } else {
            say(r, RED, "usage: /daemon [daemon|direct]\n");
        }
        return;
    }
    if (r->direct_mode) {
        char d[1024] = "(not loaded yet)";
        if (r->dr) direct_describe(r->dr, d, sizeof d);
        say(r, NULL, "direct mode: the model runs in this process, no daemon: %s\n"
                     "(/daemon daemon switches to the daemon at %s)\n", d, client_address(r->cl));
        return;
    }
    long status = 0;
    json_t *j = get_json(r, "/v1/status", &status);
    if (!j) return;
    long long up = json_integer_value(json_object_get(j, "uptime_seconds"));
    say(r, NULL, "daemon at %s, version %s, up %lldh %02lldm %02llds\n", client_address(r->cl),
        jstr(j, "version"), up / 3600, up / 60 % 60, up % 60);
    say(r, NULL, "model %s (%s); generations %lld active, %lld queued; sessions %lld\n",
        jstr(json_object_get(j, "model"), "name"), jstr(json_object_get(j, "model"), "state"),
        (long long)json_integer_value(json_object_get(j, "active_generations")),
        (long long)json_integer_value(json_object_get(j, "queue_depth")),
        (long long)json_integer_value(json_object_get(json_object_get(j, "sessions"), "active")));
    json_decref(j);
}

static void slash_feedback(repl *r, const char *arg) {
    char w[64];
    size_t n = strcspn(arg, " \t");
    double weight = 0;
    snprintf(w, sizeof w, "%.*s", (int)(n < sizeof w - 1 ? n : sizeof w - 1), arg);
    if (!n || n >= sizeof w || cli_feedback_weight(w, &weight)) {
        say(r, RED, "usage: /feedback critical|medium|good|WEIGHT [note]  (WEIGHT a number in (0, 1000])\n");
        return;
    }
    if (!r->last_question || !r->last_answer) {
        say(r, RED, "nothing to rate yet: ask something first\n");
        return;
    }
    const char *note = arg + n;
    note += strspn(note, " \t");
    long long id = 0;
    if (cli_feedback_send(r->cl, r->last_question, r->last_answer, weight, note, &id))
        say(r, RED, "error: %s\n", sh_error_last());
    else
        say(r, NULL, "feedback queued (id %lld, weight %g)\n", id, weight);
}

static void cmd_training(repl *r) {
    char *body = NULL;
    long status = 0;
    if (client_get(r->cl, "/v1/training/status", &status, &body)) {
        say(r, RED, "error: %s\n", sh_error_last());
        return;
    }
    json_t *j = status == 200 ? json_loads(body ? body : "", 0, NULL) : NULL;
    if (!j) {
        say(r, RED, "the daemon answered HTTP %ld: %.300s\n", status, body ? body : "");
        free(body);
        return;
    }
    json_t *pr = json_object_get(j, "progress"), *last = json_object_get(j, "last_run");
    say(r, NULL, "training: %s; %lld example(s) pending\n",
        json_is_true(json_object_get(j, "enabled")) ? "automatic ([training] enabled)"
                                                    : "on request (/v1/training/run)",
        (long long)json_integer_value(json_object_get(j, "pending")));
    if (json_is_true(json_object_get(j, "active")))
        say(r, NULL, "  running: step %lld/%lld, loss %.4f\n",
            (long long)json_integer_value(json_object_get(pr, "step")),
            (long long)json_integer_value(json_object_get(pr, "steps")),
            json_number_value(json_object_get(pr, "loss")));
    const char *ad = json_string_value(json_object_get(last, "adapter"));
    const char *le = json_string_value(json_object_get(last, "error"));
    if (ad && *ad)
        say(r, NULL, "  last run: %lld example(s), loss %.4f -> %.4f, adapter %s\n",
            (long long)json_integer_value(json_object_get(last, "examples")),
            json_number_value(json_object_get(last, "loss_before")),
            json_number_value(json_object_get(last, "loss_after")), ad);
    if (le && *le) say(r, YELLOW, "  last error: %s\n", le);
    json_decref(j);
    free(body);
}

static void cmd_patterns(repl *r, const char *arg) {
    if (!*arg) {
        if (!r->pats.n) say(r, NULL, "no tool approvals (they are added when you answer a or p)\n");
        for (int i = 0; i < r->pats.n; i++)
            say(r, NULL, "%3d  %-6s %-7s %s\n", i + 1, r->pats.items[i].tool,
                r->pats.items[i].kind == TOOLS_EXACT ? "exact" : "pattern", r->pats.items[i].value);
        say(r, DIM, "(%s; plan mode %s)\n", r->pats.path, r->plan_mode ? "on" : "off");
        return;
    }
    if (!strncmp(arg, "add ", 4)) {
        const char *tool = arg + 4;
        tool += strspn(tool, " ");
        size_t tl = strcspn(tool, " ");
        const char *pat = tool + tl;
        pat += strspn(pat, " ");
        char name[32];
        int n_tools;
        const conv_tool *all = tools_all(&n_tools);
        int known = 0;
        snprintf(name, sizeof name, "%.*s", (int)(tl < 31 ? tl : 31), tool);
        for (int i = 0; i < n_tools; i++) known |= !strcmp(all[i].name, name);
        if (!known || !*pat) {
            say(r, RED, "usage: /patterns add read|write|edit|glob|grep|bash GLOB\n");
            return;
        }
        if (tools_patterns_add(&r->pats, name, TOOLS_PATTERN, pat)) say(r, RED, "error: %s\n", sh_error_last());
        else say(r, NULL, "always allowed: %s %s\n", name, pat);
        return;
    }
    if (!strncmp(arg, "remove ", 7)) {
        char *end;
        long i = strtol(arg + 7, &end, 10);
        if (end == arg + 7 || tools_patterns_remove(&r->pats, (int)i - 1))
            say(r, RED, "no approval #%s (see /patterns)\n", arg + 7);
        else
            say(r, NULL, "removed #%ld\n", i);
        return;
    }
    say(r, RED, "usage: /patterns [add TOOL GLOB | remove N]\n");
}

static void cmd_metrics(repl *r) {
    char *body = NULL;
    long status = 0;
    if (client_get(r->cl, "/metrics", &status, &body)) {
        say(r, RED, "error: %s\n", sh_error_last());
        return;
    }
    /* the counters, without comments and histogram buckets (sums and counts stay) */
    for (char *line = strtok(body, "\n"); line; line = strtok(NULL, "\n"))
        if (line[0] != '#' && !strstr(line, "_bucket{")) say(r, NULL, "%s\n", line);
    free(body);
}

/* Returns 1 to quit. */
static int slash(repl *r, char *line) {
    char *cmd = line + 1, *arg = cmd + strcspn(cmd, " \t");
    if (*arg) *arg++ = 0;
    arg += strspn(arg, " \t");
    if (!strcmp(cmd, "quit") || !strcmp(cmd, "exit") || !strcmp(cmd, "q")) return 1;
    if (!strcmp(cmd, "help") || !strcmp(cmd, "?")) slash_help(r);
    else if (!strcmp(cmd, "clear")) {
        if (conv_reset(r)) say(r, RED, "error: out of memory\n");
        else say(r, DIM, "(new conversation)\n");
    } else if (!strcmp(cmd, "model")) slash_model(r);
    else if (!strcmp(cmd, "daemon")) cmd_daemon_info(r, arg);
    else if (!strcmp(cmd, "local")) {
        if (!*arg) say(r, RED, "usage: /local QUESTION\n");
        else ask(r, arg, 1);
    } else if (!strcmp(cmd, "feedback")) slash_feedback(r, arg);
    else if (!strcmp(cmd, "training")) cmd_training(r);
    else if (!strcmp(cmd, "patterns")) cmd_patterns(r, arg);
    else if (!strcmp(cmd, "plan")) {
        r->plan_mode = !r->plan_mode;
        say(r, NULL, "plan mode %s\n", r->plan_mode ? "on: only read, glob and grep may run" : "off");
    } else if (!strcmp(cmd, "metrics")) cmd_metrics(r);
    else say(r, RED, "unknown command /%s (see /help)\n", cmd);
    return 0;
}

/* ---- input ---- */

/* One logical input (a trailing backslash continues it). NULL at end of input. *interrupted:
 * Ctrl-C dropped the line. Caller frees. */
static char *read_input(repl *r, int *interrupted) {
    conv_buf b;
    conv_buf_init(&b, REPL_MAX_INPUT);
    *interrupted = 0;
    for (int first = 1;; first = 0) {
        char *l = NULL;
        if (r->tty_in) {
            g_cancel = 0;
            l = readline(first ? (r->plan_mode ? "plan> " : "> ") : ". ");
            if (g_cancel) {
                free(l);
                conv_buf_free(&b);
                *interrupted = 1;
                return NULL;
            }
        } else {
            size_t cap = 0;
            ssize_t n = getline(&l, &cap, stdin);
            if (n < 0) {
                free(l);
                l = NULL;
            } else if (n && l[n - 1] == '\n') {
                l[n - 1] = 0;
            }
        }
        if (!l) {
            if (b.len) break; /* end of input after a continued line: use what we have */
            conv_buf_free(&b);
            return NULL;
        }
        size_t n = strlen(l);
        int more = n && l[n - 1] == '\\';
        if (more) l[--n] = 0;
        int st = conv_buf_append(&b, l, n);
        if (!st && more) st = conv_buf_append(&b, "\n", 1);
        free(l);
        if (st) {
            say(r, RED, "error: input over %u bytes\n", REPL_MAX_INPUT);
            conv_buf_free(&b);
            *interrupted = 1;
            return NULL;
        }
        if (!more) break;
    }
    if (!b.p) conv_buf_append(&b, "", 0);
    return b.p ? b.p : strdup("");
}

static void repl_usage(FILE *f) {
    fprintf(f,
            "usage: shammah [repl] [--direct] [-m MODEL] [--plan] [-n MAX_TOKENS] [--system TEXT]\n"
            "An interactive session with the daemon (started when none runs). Type /help inside.\n"
            "  --direct           run the model in this process, without a daemon (also\n"
            "                     [client] use_daemon = false in config.toml)\n"
            "  -m NAME            the model: a name of `shammah models` (the daemon loads it on\n"
            "                     demand) or, in direct mode, also a path; direct mode's default:\n"
            "                     [backend] model, else the largest that fits\n"
            "  --plan             plan mode: the model may only use read-only tools\n"
            "  -n, --max-tokens N tokens per answer at most\n"
            "  --system TEXT      system prompt\n");
}

int repl_main(int argc, char **argv) {
    repl r;
    memset(&r, 0, sizeof r);
    conv_request_zero(&r.conv);
    r.max_tokens = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            repl_usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--plan")) {
            r.plan_mode = 1;
            continue;
        }
        if (!strcmp(a, "--direct")) {
            r.direct_mode = 1;
            continue;
        }
        if (v && (!strcmp(a, "-m") || !strcmp(a, "--model"))) {
            r.model_name = v;
            i++;
            continue;
        }
        if (v && (!strcmp(a, "-n") || !strcmp(a, "--max-tokens"))) {
            if (cli_int("repl", a, v, 1, 1 << 24, &r.max_tokens)) return 2;
            i++;
            continue;
        }
        if (v && !strcmp(a, "--system")) {
            r.system = v;
            i++;
            continue;
        }
        fprintf(stderr, "shammah: unknown option '%s' (see shammah repl --help)\n", a);
        return 2;
    }
    int rc = 1;
    if (direct_configured()) r.direct_mode = 1;
    client_opts o;
    if (client_opts_from_config(&o, &r.cfg, r.home, sizeof r.home) || client_new(&r.cl, &o)) {
        fprintf(stderr, "shammah: %s\n", sh_error_last());
        goto out;
    }
    char pats_path[PATHS_MAX];
    if (paths_join(pats_path, sizeof pats_path, r.home, PATHS_TOOL_PATTERNS) ||
        paths_join(r.history, sizeof r.history, r.home, PATHS_HISTORY)) {
        fprintf(stderr, "shammah: %s\n", sh_error_last());
        goto out;
    }
    if (tools_patterns_load(&r.pats, pats_path))
        fprintf(stderr, "shammah: warning: %s (no approvals loaded)\n", sh_error_last());
    if (conv_reset(&r)) {
        fprintf(stderr, "shammah: out of memory\n");
        goto out;
    }
    if (r.direct_mode) { /* a missing model is said before the first question */
        char path[PATHS_MAX];
        if (direct_pick_model("repl", r.model_name, path, sizeof path)) goto out;
        if (direct_new(&r.dr, path)) {
            fprintf(stderr, "shammah: %s\n", sh_error_last());
            goto out;
        }
    }
    r.tty_in = isatty(0);
    r.tty_out = isatty(1);
    install_sigint();
    signal(SIGPIPE, SIG_IGN);
    if (r.tty_in) {
        rl_readline_name = "shammah";
        rl_catch_signals = 0;
        rl_getc_function = repl_getc;
        using_history();
        stifle_history(REPL_HISTORY_LINES);
        read_history(r.history);
        say(&r, DIM, "shammah %s — /help for commands, Ctrl-D to quit%s\n", SHAMMAH_VERSION,
            r.direct_mode ? " (direct mode: no daemon)" : "");
    }
    for (;;) {
        int interrupted = 0;
        char *line = read_input(&r, &interrupted);
        if (!line) {
            if (interrupted) {
                if (r.tty_out) printf("\n");
                continue;
            }
            if (r.tty_in) printf("\n");
            break;
        }
        const char *t = line + strspn(line, " \t\n");
        if (!*t) {
            free(line);
            continue;
        }
        if (r.tty_in) {
            add_history(line);
            write_history(r.history);
        }
        int quit = 0;
        if (t[0] == '/') quit = slash(&r, (char *)t);
        else ask(&r, t, 0);
        free(line);
        if (quit) break;
    }
    rc = 0;
out:
    conv_request_free(&r.conv);
    tools_patterns_free(&r.pats);
    client_free(r.cl);
    client_config_free(r.cfg);
    direct_free(r.dr);
    free(r.last_question);
    free(r.last_answer);
    return rc;
}

int cmd_repl(int argc, char **argv) { return repl_main(argc, argv); }
