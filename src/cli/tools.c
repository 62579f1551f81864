/* tools.c - client-side tools (read, write, edit, glob, grep, bash), approvals, hard denies. */
#include "cli/tools.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <jansson.h>
#include <pcre2.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/status.h"

#define LINE_SHOW_MAX 2000 /* characters of one line shown by read/grep */
#define WALK_MAX_DEPTH 64

/* ---- descriptions ---- */

static const conv_tool k_tools[] = {
    {"read", "Read a text file. Lines are numbered from 1; use offset/limit for large files.",
     "{\"type\":\"object\",\"properties\":{\"file_path\":{\"type\":\"string\",\"description\":\"path of the file\"},"
     "\"offset\":{\"type\":\"integer\",\"description\":\"first line to read, from 1\"},"
     "\"limit\":{\"type\":\"integer\",\"description\":\"number of lines (default 2000)\"}},\"required\":[\"file_path\"]}"},
    {"write", "Create or overwrite a file with the given content.",
     "{\"type\":\"object\",\"properties\":{\"file_path\":{\"type\":\"string\"},\"content\":{\"type\":\"string\"}},"
     "\"required\":[\"file_path\",\"content\"]}"},
    {"edit", "Replace an exact string in a file. old_string must occur exactly once unless replace_all is true.",
     "{\"type\":\"object\",\"properties\":{\"file_path\":{\"type\":\"string\"},\"old_string\":{\"type\":\"string\"},"
     "\"new_string\":{\"type\":\"string\"},\"replace_all\":{\"type\":\"boolean\"}},"
     "\"required\":[\"file_path\",\"old_string\",\"new_string\"]}"},
    {"glob", "List files whose path matches a glob pattern (** matches any folders), sorted.",
     "{\"type\":\"object\",\"properties\":{\"pattern\":{\"type\":\"string\",\"description\":\"e.g. src/**/*.c\"},"
     "\"path\":{\"type\":\"string\",\"description\":\"folder to search (default .)\"}},\"required\":[\"pattern\"]}"},
    {"grep", "Search file contents with a regular expression (PCRE2); prints file:line:text.",
     "{\"type\":\"object\",\"properties\":{\"pattern\":{\"type\":\"string\"},"
     "\"path\":{\"type\":\"string\",\"description\":\"file or folder (default .)\"},"
     "\"include\":{\"type\":\"string\",\"description\":\"glob on file names, e.g. *.c\"},"
     "\"ignore_case\":{\"type\":\"boolean\"}},\"required\":[\"pattern\"]}"},
    {"bash", "Run a shell command (/bin/sh -c) in the current folder; returns its output and exit code.",
     "{\"type\":\"object\",\"properties\":{\"command\":{\"type\":\"string\"},"
     "\"timeout\":{\"type\":\"integer\",\"description\":\"seconds (default 120, at most 600)\"}},"
     "\"required\":[\"command\"]}"},
};

const conv_tool *tools_all(int *n) {
    *n = (int)(sizeof k_tools / sizeof k_tools[0]);
    return k_tools;
}

int tools_is_read_only(const char *name) {
    return !strcmp(name, "read") || !strcmp(name, "glob") || !strcmp(name, "grep");
}

/* ---- bounded output ---- */

typedef struct {
    conv_buf b;
    size_t max;
    size_t dropped; /* bytes not kept */
    int failed;     /* ENOMEM */
} out_t;

static void out_init(out_t *o, size_t max) {
    conv_buf_init(&o->b, max + 1024);
    o->max = max;
    o->dropped = 0;
    o->failed = 0;
}

static void out_add(out_t *o, const char *s, size_t n) {
    if (o->dropped || o->b.len + n > o->max) {
        size_t room = o->b.len < o->max ? o->max - o->b.len : 0;
        if (room && !o->dropped) {
            room = conv_utf8_whole(s, room);
            if (conv_buf_append(&o->b, s, room)) o->failed = 1;
            s += room;
            n -= room;
        }
        o->dropped += n;
        return;
    }
    if (conv_buf_append(&o->b, s, n)) o->failed = 1;
}

static void out_printf(out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out_printf(out_t *o, const char *fmt, ...) {
    char tmp[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    out_add(o, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* Hands the text to the caller; a note tells the model what was cut. */
static int out_finish(out_t *o, char **res) {
    if (o->dropped) {
        char note[128];
        int n = snprintf(note, sizeof note, "\n[output truncated: %zu more bytes]", o->dropped);
        if (conv_buf_append(&o->b, note, (size_t)n)) o->failed = 1;
    }
    if (!o->b.p && conv_buf_append(&o->b, "", 0) == 0 && !o->b.p) *res = strdup("");
    else *res = o->b.p;
    o->b.p = NULL;
    conv_buf_free(&o->b);
    if (o->failed || !*res) {
        free(*res);
        *res = NULL;
        return SH_ENOMEM;
    }
    return SH_OK;
}

static int result_msg(char **res, int *is_error, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int result_msg(char **res, int *is_error, int err, const char *fmt, ...) {
    char tmp[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    *is_error = err;
    *res = strdup(tmp);
    return *res ? SH_OK : SH_ENOMEM;
}

/* ---- arguments ---- */

static const char *arg_str(json_t *a, const char *key) {
    return json_string_value(json_object_get(a, key));
}

static const char *arg_path(json_t *a) {
    const char *p = arg_str(a, "file_path");
    return p ? p : arg_str(a, "path"); /* small models often say "path" */
}

/* Integer argument; also accepts a numeric string (models emit both). def when absent. */
static long long arg_int(json_t *a, const char *key, long long def) {
    json_t *v = json_object_get(a, key);
    if (json_is_integer(v)) return json_integer_value(v);
    if (json_is_real(v)) return (long long)json_real_value(v);
    if (json_is_string(v)) {
        char *end;
        long long x = strtoll(json_string_value(v), &end, 10);
        if (end != json_string_value(v) && !*end) return x;
    }
    return def;
}

static int arg_bool(json_t *a, const char *key) {
    json_t *v = json_object_get(a, key);
    return json_is_true(v) || (json_is_string(v) && !strcmp(json_string_value(v), "true"));
}

/* ---- read ---- */

static int tool_read(json_t *a, const tools_opts *o, char **res, int *is_error) {
    const char *path = arg_path(a);
    if (!path || !*path) return result_msg(res, is_error, 1, "read: file_path is required");
    long long offset = arg_int(a, "offset", 1), limit = arg_int(a, "limit", TOOLS_READ_DEFAULT_LIMIT);
    if (offset < 1) offset = 1;
    if (limit < 1) limit = TOOLS_READ_DEFAULT_LIMIT;
    struct stat sb;
    if (stat(path, &sb) != 0) return result_msg(res, is_error, 1, "read: %s: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) return result_msg(res, is_error, 1, "read: %s is a folder (use glob)", path);
    FILE *f = fopen(path, "rb");
    if (!f) return result_msg(res, is_error, 1, "read: %s: %s", path, strerror(errno));
    out_t out;
    out_init(&out, o->max_output);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long long ln = 0, shown = 0;
    int binary = 0;
    while ((n = getline(&line, &cap, f)) >= 0) {
        ln++;
        if (memchr(line, 0, (size_t)n)) {
            binary = 1;
            break;
        }
        if (ln < offset) continue;
        if (shown >= limit) break;
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) n--;
        out_printf(&out, "%6lld\t", ln);
        if (n > LINE_SHOW_MAX) {
            out_add(&out, line, conv_utf8_whole(line, LINE_SHOW_MAX));
            out_add(&out, " [line cut]", 11);
        } else {
            out_add(&out, line, (size_t)n);
        }
        out_add(&out, "\n", 1);
        shown++;
        if (out.dropped) break;
    }
    free(line);
    int had_more = n >= 0 && !binary;
    fclose(f);
    if (binary) {
        conv_buf_free(&out.b);
        return result_msg(res, is_error, 1, "read: %s is a binary file", path);
    }
    if (shown == 0 && ln < offset) out_printf(&out, "(the file has %lld lines; offset %lld is past the end)", ln, offset);
    else if (had_more && shown >= limit) out_printf(&out, "[more lines after %lld: use offset]", offset + shown - 1);
    *is_error = 0;
    return out_finish(&out, res);
}

/* ---- write / edit ---- */

/* Writes data to path through a temporary file and rename, keeping the old file's mode. */
static int write_file(const char *path, const char *data, size_t len, char *err, size_t err_cap) {
    struct stat sb;
    mode_t mode = 0644;
    if (stat(path, &sb) == 0) {
        if (!S_ISREG(sb.st_mode)) {
            snprintf(err, err_cap, "%s is not a regular file", path);
            return -1;
        }
        mode = sb.st_mode & 07777;
    }
    char tmp[4200];
    if (snprintf(tmp, sizeof tmp, "%s.shammah-tmp.%d", path, (int)getpid()) >= (int)sizeof tmp) {
        snprintf(err, err_cap, "path too long");
        return -1;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) {
        snprintf(err, err_cap, "%s: %s", path, strerror(errno));
        return -1;
    }
    size_t done = 0;
    while (done < len) {
        ssize_t w = write(fd, data + done, len - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            snprintf(err, err_cap, "%s: %s", path, strerror(errno));
            close(fd);
            unlink(tmp);
            return -1;
        }
        done += (size_t)w;
    }
    fchmod(fd, mode);
    if (close(fd) != 0 || rename(tmp, path) != 0) {
        snprintf(err, err_cap, "%s: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

static int dev_path(const char *path) { return !strncmp(path, "/dev/", 5) || !strcmp(path, "/dev"); }

static int tool_write(json_t *a, char **res, int *is_error) {
    const char *path = arg_path(a);
    json_t *cv = json_object_get(a, "content");
    if (!path || !*path) return result_msg(res, is_error, 1, "write: file_path is required");
    if (!json_is_string(cv)) return result_msg(res, is_error, 1, "write: content (a string) is required");
    if (dev_path(path)) return result_msg(res, is_error, 1, "write: refusing to write to a device (%s)", path);
    size_t len = json_string_length(cv);
    char err[512];
    if (write_file(path, json_string_value(cv), len, err, sizeof err))
        return result_msg(res, is_error, 1, "write: %s", err);
    return result_msg(res, is_error, 0, "wrote %zu bytes to %s", len, path);
}

static int read_whole(const char *path, char **data, size_t *len, char *err, size_t err_cap) {
    *data = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, err_cap, "%s: %s", path, strerror(errno));
        return -1;
    }
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        snprintf(err, err_cap, "%s is not a regular file", path);
        fclose(f);
        return -1;
    }
    if ((unsigned long long)sb.st_size > TOOLS_MAX_FILE) {
        snprintf(err, err_cap, "%s is over %u bytes", path, TOOLS_MAX_FILE);
        fclose(f);
        return -1;
    }
    char *p = malloc((size_t)sb.st_size + 1);
    size_t n = p ? fread(p, 1, (size_t)sb.st_size, f) : 0;
    fclose(f);
    if (!p) {
        snprintf(err, err_cap, "out of memory");
        return -1;
    }
    p[n] = 0;
    *data = p;
    *len = n;
    return 0;
}

static int tool_edit(json_t *a, char **res, int *is_error) {
    const char *path = arg_path(a);
    json_t *ov = json_object_get(a, "old_string"), *nv = json_object_get(a, "new_string");
    if (!path || !*path) return result_msg(res, is_error, 1, "edit: file_path is required");
    if (!json_is_string(ov) || !json_is_string(nv))
        return result_msg(res, is_error, 1, "edit: old_string and new_string (strings) are required");
    if (dev_path(path)) return result_msg(res, is_error, 1, "edit: refusing to edit a device (%s)", path);
    const char *old = json_string_value(ov), *new_s = json_string_value(nv);
    size_t olen = json_string_length(ov), nlen = json_string_length(nv);
    if (olen == 0) return result_msg(res, is_error, 1, "edit: old_string is empty");
    int all = arg_bool(a, "replace_all");
    char *data = NULL, err[512];
    size_t len = 0;
    if (read_whole(path, &data, &len, err, sizeof err)) return result_msg(res, is_error, 1, "edit: %s", err);
    size_t count = 0;
    for (const char *p = data; (p = memmem(p, len - (size_t)(p - data), old, olen)); p += olen) count++;
    int st;
    if (count == 0) {
        st = result_msg(res, is_error, 1, "edit: old_string not found in %s", path);
    } else if (count > 1 && !all) {
        st = result_msg(res, is_error, 1, "edit: old_string is not unique in %s (%zu matches): give more "
                        "context or set replace_all", path, count);
    } else {
        size_t out_len = len - count * olen + count * nlen;
        if (out_len > TOOLS_MAX_FILE) {
            free(data);
            return result_msg(res, is_error, 1, "edit: the result would be over %u bytes", TOOLS_MAX_FILE);
        }
        char *o = malloc(out_len + 1), *w = o;
        if (!o) {
            free(data);
            return SH_ENOMEM;
        }
        const char *r = data, *p;
        while ((p = memmem(r, len - (size_t)(r - data), old, olen))) {
            memcpy(w, r, (size_t)(p - r));
            w += p - r;
            memcpy(w, new_s, nlen);
            w += nlen;
            r = p + olen;
        }
        memcpy(w, r, len - (size_t)(r - data));
        if (write_file(path, o, out_len, err, sizeof err))
            st = result_msg(res, is_error, 1, "edit: %s", err);
        else
            st = result_msg(res, is_error, 0, "replaced %zu occurrence%s in %s", count, count > 1 ? "s" : "", path);
        free(o);
    }
    free(data);
    return st;
}

/* ---- walking folders (glob, grep) ---- */

typedef int (*walk_fn)(void *user, const char *path, const char *rel);

typedef struct {
    walk_fn fn;
    void *user;
    long visited;
    int stop;
} walker;

/* Depth-first, names sorted, .git skipped, symlinked folders not followed. */
static int name_cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void walk_dir(walker *w, const char *dir, const char *rel, int depth) {
    if (w->stop || depth > WALK_MAX_DEPTH) return;
    DIR *d = opendir(dir);
    if (!d) return;
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || !strcmp(e->d_name, ".git")) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **nn = realloc(names, cap * sizeof *nn);
            if (!nn) break;
            names = nn;
        }
        if (!(names[n] = strdup(e->d_name))) break;
        n++;
    }
    closedir(d);
    if (n) qsort(names, n, sizeof *names, name_cmp);
    for (size_t i = 0; i < n; i++) {
        char path[4096], r[4096];
        int pl = snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        int rl = *rel ? snprintf(r, sizeof r, "%s/%s", rel, names[i]) : snprintf(r, sizeof r, "%s", names[i]);
        if (w->stop || pl >= (int)sizeof path || rl >= (int)sizeof r) continue;
        struct stat sb;
        if (lstat(path, &sb) != 0) continue;
        if (S_ISDIR(sb.st_mode)) {
            walk_dir(w, path, r, depth + 1);
        } else if (S_ISREG(sb.st_mode) || S_ISLNK(sb.st_mode)) {
            if (++w->visited > TOOLS_WALK_MAX) {
                w->stop = 1;
                continue;
            }
            if (w->fn(w->user, path, r)) w->stop = 1;
        }
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
}

/* Glob over '/'-separated segments; "**" matches any number of folders. */
static int seg_match(const char *pat, const char *path) {
    if (!strncmp(pat, "**", 2) && (pat[2] == '/' || !pat[2])) {
        const char *rest = pat[2] ? pat + 3 : pat + 2;
        if (!*rest) return 1;
        for (const char *p = path;; ) {
            if (seg_match(rest, p)) return 1;
            p = strchr(p, '/');
            if (!p) return 0;
            p++;
        }
    }
    const char *ps = strchr(pat, '/'), *xs = strchr(path, '/');
    char pseg[1024], xseg[1024];
    size_t pl = ps ? (size_t)(ps - pat) : strlen(pat), xl = xs ? (size_t)(xs - path) : strlen(path);
    if (pl >= sizeof pseg || xl >= sizeof xseg) return 0;
    memcpy(pseg, pat, pl);
    pseg[pl] = 0;
    memcpy(xseg, path, xl);
    xseg[xl] = 0;
    if (fnmatch(pseg, xseg, FNM_PERIOD) != 0) return 0;
    if (!ps && !xs) return 1;
    if (!ps || !xs) return 0;
    return seg_match(ps + 1, xs + 1);
}

static int glob_matches(const char *pattern, const char *rel) {
    if (!strchr(pattern, '/')) {
        const char *base = strrchr(rel, '/');
        return fnmatch(pattern, base ? base + 1 : rel, FNM_PERIOD) == 0;
    }
    return seg_match(pattern, rel);
}

typedef struct {
    const char *pattern;
    char **paths;
    size_t n, cap;
    int more;
} glob_ctx;

static int glob_visit(void *user, const char *path, const char *rel) {
    glob_ctx *g = user;
    if (!glob_matches(g->pattern, rel)) return 0;
    if (g->n >= TOOLS_GLOB_MAX) {
        g->more = 1;
        return 1;
    }
    if (g->n == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 64;
        char **nn = realloc(g->paths, cap * sizeof *nn);
        if (!nn) return 1;
        g->paths = nn;
        g->cap = cap;
    }
    if ((g->paths[g->n] = strdup(path))) g->n++;
    return 0;
}

/* "./x" -> "x" for the folder ".", so results read as the user would type them. */
static const char *shown_path(const char *p) { return !strncmp(p, "./", 2) ? p + 2 : p; }

static int tool_glob(json_t *a, const tools_opts *o, char **res, int *is_error) {
    const char *pattern = arg_str(a, "pattern"), *dir = arg_str(a, "path");
    if (!pattern || !*pattern) return result_msg(res, is_error, 1, "glob: pattern is required");
    if (!dir || !*dir) dir = ".";
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return result_msg(res, is_error, 1, "glob: %s is not a folder", dir);
    glob_ctx g = {.pattern = pattern};
    walker w = {.fn = glob_visit, .user = &g};
    walk_dir(&w, dir, "", 0);
    out_t out;
    out_init(&out, o->max_output);
    for (size_t i = 0; i < g.n; i++) {
        out_printf(&out, "%s\n", shown_path(g.paths[i]));
        free(g.paths[i]);
    }
    free(g.paths);
    if (!g.n) out_printf(&out, "no files match %s under %s", pattern, dir);
    if (g.more) out_printf(&out, "[more than %d matches: narrow the pattern]", TOOLS_GLOB_MAX);
    if (w.visited > TOOLS_WALK_MAX) out_printf(&out, "[stopped after %d files]", TOOLS_WALK_MAX);
    *is_error = 0;
    return out_finish(&out, res);
}

/* ---- grep ---- */

typedef struct {
    pcre2_code *re;
    pcre2_match_data *md;
    const char *include;
    out_t *out;
    long matches;
    int more;
} grep_ctx;

static void grep_file(grep_ctx *g, const char *path) {
    char *data = NULL, err[256];
    size_t len = 0;
    if (read_whole(path, &data, &len, err, sizeof err)) return;
    if (memchr(data, 0, len < 8192 ? len : 8192)) { /* binary */
        free(data);
        return;
    }
    long ln = 0;
    for (size_t pos = 0; pos < len && !g->more;) {
        const char *line = data + pos, *nl = memchr(line, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - line) : len - pos;
        pos += n + 1;
        ln++;
        size_t show = n && line[n - 1] == '\r' ? n - 1 : n;
        if (pcre2_match(g->re, (PCRE2_SPTR)line, n, 0, 0, g->md, NULL) < 0) continue;
        if (g->matches >= TOOLS_GREP_MAX) {
            g->more = 1;
            break;
        }
        g->matches++;
        out_printf(g->out, "%s:%ld:", shown_path(path), ln);
        out_add(g->out, line, show > LINE_SHOW_MAX ? conv_utf8_whole(line, LINE_SHOW_MAX) : show);
        out_add(g->out, "\n", 1);
    }
    free(data);
}

static int grep_visit(void *user, const char *path, const char *rel) {
    grep_ctx *g = user;
    const char *base = strrchr(rel, '/');
    if (g->include && fnmatch(g->include, base ? base + 1 : rel, 0) != 0) return 0;
    grep_file(g, path);
    return g->more || g->out->dropped;
}

static int tool_grep(json_t *a, const tools_opts *o, char **res, int *is_error) {
    const char *pattern = arg_str(a, "pattern"), *path = arg_str(a, "path");
    if (!pattern || !*pattern) return result_msg(res, is_error, 1, "grep: pattern is required");
    if (!path || !*path) path = ".";
    int errcode;
    PCRE2_SIZE erroff;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                                   arg_bool(a, "ignore_case") ? PCRE2_CASELESS : 0, &errcode, &erroff, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(errcode, msg, sizeof msg);
        return result_msg(res, is_error, 1, "grep: bad regular expression at %zu: %s", (size_t)erroff, (char *)msg);
    }
    out_t out;
    out_init(&out, o->max_output);
    grep_ctx g = {.re = re, .md = pcre2_match_data_create_from_pattern(re, NULL), .out = &out};
    const char *inc = arg_str(a, "include");
    g.include = inc && *inc ? inc : NULL;
    struct stat sb;
    int st;
    if (!g.md) {
        st = SH_ENOMEM;
        conv_buf_free(&out.b);
        goto done;
    }
    if (stat(path, &sb) != 0) {
        conv_buf_free(&out.b);
        st = result_msg(res, is_error, 1, "grep: %s: %s", path, strerror(errno));
        goto done;
    }
    if (S_ISDIR(sb.st_mode)) {
        walker w = {.fn = grep_visit, .user = &g};
        walk_dir(&w, path, "", 0);
    } else {
        grep_file(&g, path);
    }
    if (!g.matches) out_printf(&out, "no matches for /%s/ in %s", pattern, path);
    if (g.more) out_printf(&out, "[more than %d matching lines: narrow the search]", TOOLS_GREP_MAX);
    *is_error = 0;
    st = out_finish(&out, res);
done:
    pcre2_match_data_free(g.md);
    pcre2_code_free(re);
    return st;
}

/* ---- bash ---- */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int tool_bash(json_t *a, const tools_opts *o, char **res, int *is_error) {
    const char *cmd = arg_str(a, "command");
    if (!cmd || !*cmd) return result_msg(res, is_error, 1, "bash: command is required");
    char why[256];
    if (tools_bash_denied(cmd, why, sizeof why))
        return result_msg(res, is_error, 1, "bash: refused: %s", why);
    long long timeout = arg_int(a, "timeout", o->bash_timeout > 0 ? o->bash_timeout : TOOLS_BASH_TIMEOUT);
    if (timeout < 1) timeout = 1;
    if (timeout > TOOLS_BASH_MAX_TIMEOUT) timeout = TOOLS_BASH_MAX_TIMEOUT;
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0) return result_msg(res, is_error, 1, "bash: pipe: %s", strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(pfd[0]);
        close(pfd[1]);
        return result_msg(res, is_error, 1, "bash: fork: %s", strerror(errno));
    }
    if (pid == 0) {
        /* its own process group: a timeout kills the whole pipeline, and the terminal's Ctrl-C
         * stays with the REPL */
        setpgid(0, 0);
        int nul = open("/dev/null", O_RDONLY);
        if (nul >= 0) dup2(nul, 0);
        dup2(pfd[1], 1);
        dup2(pfd[1], 2);
        signal(SIGPIPE, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    setpgid(pid, pid);
    close(pfd[1]);
    out_t out;
    out_init(&out, o->max_output);
    double deadline = now_s() + (double)timeout;
    int timed_out = 0, canceled = 0;
    char buf[8192];
    for (;;) {
        if (o->cancel && *o->cancel) {
            canceled = 1;
            break;
        }
        double left = deadline - now_s();
        if (left <= 0) {
            timed_out = 1;
            break;
        }
        struct pollfd p = {.fd = pfd[0], .events = POLLIN};
        int pr = poll(&p, 1, left > 0.1 ? 100 : (int)(left * 1000) + 1);
        if (pr < 0 && errno != EINTR) break;
        if (pr <= 0) continue;
        ssize_t n = read(pfd[0], buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break; /* EOF: every writer is gone */
        out_add(&out, buf, (size_t)n);
    }
    close(pfd[0]);
    if (timed_out || canceled) kill(-pid, SIGKILL);
    int ws = 0;
    while (waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
    }
    if (out.b.len && out.b.p[out.b.len - 1] != '\n' && !out.dropped) out_add(&out, "\n", 1);
    *is_error = 1;
    size_t kept_dropped = out.dropped;
    out.dropped = 0; /* the status line always fits */
    out.max = out.b.len + 256;
    if (kept_dropped) out_printf(&out, "[output truncated: %zu more bytes]\n", kept_dropped);
    if (timed_out) out_printf(&out, "[timed out after %lld s; killed]", timeout);
    else if (canceled) out_printf(&out, "[canceled by the user; killed]");
    else if (WIFEXITED(ws)) {
        out_printf(&out, "[exit code %d]", WEXITSTATUS(ws));
        *is_error = WEXITSTATUS(ws) != 0;
    } else if (WIFSIGNALED(ws)) out_printf(&out, "[killed by signal %d]", WTERMSIG(ws));
    return out_finish(&out, res);
}

/* ---- dispatch ---- */

int tools_run(const char *name, const char *input_json, const tools_opts *o, char **out,
              int *is_error) {
    tools_opts def = {0};
    if (!o) o = &def;
    tools_opts eff = *o;
    if (!eff.max_output) eff.max_output = TOOLS_MAX_OUTPUT;
    *out = NULL;
    json_error_t je;
    json_t *a = json_loads(input_json && *input_json ? input_json : "{}", 0, &je);
    if (!json_is_object(a)) {
        json_decref(a);
        return result_msg(out, is_error, 1, "%s: the arguments are not a JSON object", name);
    }
    int st;
    if (!strcmp(name, "read")) st = tool_read(a, &eff, out, is_error);
    else if (!strcmp(name, "write")) st = tool_write(a, out, is_error);
    else if (!strcmp(name, "edit")) st = tool_edit(a, out, is_error);
    else if (!strcmp(name, "glob")) st = tool_glob(a, &eff, out, is_error);
    else if (!strcmp(name, "grep")) st = tool_grep(a, &eff, out, is_error);
    else if (!strcmp(name, "bash")) st = tool_bash(a, &eff, out, is_error);
    else st = result_msg(out, is_error, 1, "unknown tool '%s' (tools: read, write, edit, glob, grep, bash)", name);
    json_decref(a);
    return st;
}

/* ---- hard-deny rules ---- */

/* Targets whose recursive removal is never what the user wants: /, top-level folders, home. */
static int precious_target(const char *w) {
    static const char *const home[] = {"~", "~/", "~/*", "$HOME", "$HOME/", "$HOME/*", "${HOME}",
                                       "${HOME}/", "${HOME}/*", "/*"};
    for (size_t i = 0; i < sizeof home / sizeof *home; i++)
        if (!strcmp(w, home[i])) return 1;
    if (w[0] != '/') return 0;
    const char *p = w;
    while (*p == '/') p++;
    /* "/", "/usr", "/usr/" and "/usr" followed by a star */
    const char *slash = strchr(p, '/');
    if (!slash) return 1;
    const char *rest = slash;
    while (*rest == '/') rest++;
    return !*rest || !strcmp(rest, "*");
}

/* Splits a command into words per simple command, quotes removed, and checks each one. */
static int check_simple(char **words, int n, char *why, size_t cap) {
    int i = 0;
    while (i < n && strchr(words[i], '=') && words[i][0] != '=' && words[i][0] != '-') i++; /* VAR=x */
    static const char *const wrappers[] = {"sudo", "doas", "command", "exec", "nohup", "time", "env", "nice", "xargs"};
    for (int again = 1; again && i < n;) {
        again = 0;
        const char *b = strrchr(words[i], '/') ? strrchr(words[i], '/') + 1 : words[i];
        for (size_t k = 0; k < sizeof wrappers / sizeof *wrappers; k++)
            if (!strcmp(b, wrappers[k])) {
                i++;
                while (i < n && words[i][0] == '-') i++; /* the wrapper's options */
                again = 1;
                break;
            }
    }
    if (i >= n) return 0;
    const char *prog = strrchr(words[i], '/') ? strrchr(words[i], '/') + 1 : words[i];
    if (!strncmp(prog, "mkfs", 4) || !strcmp(prog, "wipefs") || !strcmp(prog, "mkswap")) {
        snprintf(why, cap, "%s formats or wipes a file system", prog);
        return 1;
    }
    int rec = 0, is_rm = !strcmp(prog, "rm"), is_ch = !strcmp(prog, "chmod") || !strcmp(prog, "chown");
    if (!is_rm && !is_ch) return 0;
    for (int k = i + 1; k < n; k++) {
        const char *w = words[k];
        if (!strcmp(w, "--no-preserve-root")) {
            snprintf(why, cap, "%s --no-preserve-root", prog);
            return 1;
        }
        if (!strcmp(w, "--recursive")) rec = 1;
        else if (w[0] == '-' && w[1] != '-' && (strchr(w, 'r') || strchr(w, 'R'))) rec = 1;
    }
    for (int k = i + 1; k < n && rec; k++)
        if (words[k][0] != '-' && precious_target(words[k])) {
            snprintf(why, cap, "recursive %s of %s", prog, words[k]);
            return 1;
        }
    return 0;
}

#define DENY_MAX_WORDS 256

static int check_words(const char *cmd, char *why, size_t cap) {
    size_t len = strlen(cmd);
    char *buf = malloc(len + 1);
    if (!buf) return 0;
    char *words[DENY_MAX_WORDS];
    int n = 0, denied = 0;
    size_t bl = 0;
    char quote = 0;
    int in_word = 0;
    for (size_t i = 0; i <= len && !denied; i++) {
        char ch = cmd[i];
        if (quote) {
            if (ch == quote) quote = 0;
            else if (ch) buf[bl++] = ch;
            continue;
        }
        int sep = !ch || ch == ';' || ch == '&' || ch == '|' || ch == '\n' || ch == '(' || ch == ')' ||
                  ch == '`' || ch == '{' || ch == '}';
        int space = ch == ' ' || ch == '\t';
        if (ch == '\'' || ch == '"') {
            quote = ch;
            if (!in_word) {
                if (n < DENY_MAX_WORDS) words[n++] = buf + bl;
                in_word = 1;
            }
            continue;
        }
        if (ch == '\\' && cmd[i + 1]) {
            ch = cmd[++i];
        } else if (sep || space) {
            if (in_word) {
                buf[bl++] = 0;
                in_word = 0;
            }
            if (sep) {
                denied = check_simple(words, n, why, cap);
                n = 0;
            }
            continue;
        }
        if (!in_word) {
            if (n < DENY_MAX_WORDS) words[n++] = buf + bl;
            in_word = 1;
        }
        buf[bl++] = ch;
    }
    if (!denied && n) {
        buf[bl] = 0;
        denied = check_simple(words, n, why, cap);
    }
    free(buf);
    return denied;
}

static int regex_hit(const char *re_text, const char *subject) {
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)re_text, PCRE2_ZERO_TERMINATED, 0, &ec, &eo, NULL);
    if (!re) return 0;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    int hit = md && pcre2_match(re, (PCRE2_SPTR)subject, PCRE2_ZERO_TERMINATED, 0, 0, md, NULL) >= 0;
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    return hit;
}

int tools_bash_denied(const char *cmd, char *why, size_t why_cap) {
    char dummy[8];
    if (!why) {
        why = dummy;
        why_cap = sizeof dummy;
    }
    /* writes onto devices: redirections, tee, dd of= (the harmless pseudo-devices excepted) */
    if (regex_hit("(>|\\btee\\s+(-\\S+\\s+)*|\\bof=)\\s*[\"']?/dev/(?!(null|zero|full|stdout|stderr|tty|fd/\\d+)\\b)",
                  cmd)) {
        snprintf(why, why_cap, "writes to a device under /dev");
        return 1;
    }
    /* fork bombs: a function that pipes into itself in the background, e.g. :(){ :|:& };: */
    if (regex_hit("([\\w:.]+)\\s*\\(\\s*\\)\\s*\\{[^}]*\\1\\s*\\|\\s*\\1\\s*&", cmd)) {
        snprintf(why, why_cap, "a fork bomb");
        return 1;
    }
    return check_words(cmd, why, why_cap);
}

/* ---- approvals ---- */

static char *canonical_json(const char *input_json) {
    json_t *a = json_loads(input_json && *input_json ? input_json : "{}", 0, NULL);
    if (!a) return NULL;
    char *s = json_dumps(a, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(a);
    return s;
}

char *tools_subject(const char *name, const char *input_json) {
    json_t *a = json_loads(input_json && *input_json ? input_json : "{}", 0, NULL);
    if (!json_is_object(a)) {
        json_decref(a);
        return NULL;
    }
    const char *s = NULL;
    if (!strcmp(name, "bash")) s = arg_str(a, "command");
    else if (!strcmp(name, "read") || !strcmp(name, "write") || !strcmp(name, "edit")) s = arg_path(a);
    else if (!strcmp(name, "glob") || !strcmp(name, "grep")) s = arg_str(a, "pattern");
    char *r = strdup(s ? s : "");
    json_decref(a);
    return r;
}

/* A bash pattern approval never covers a compound command: "git *" must not approve
 * "git status; rm -rf ~" */
static int shell_compound(const char *cmd) { return strpbrk(cmd, ";&|`$<>\n()") != NULL; }

tools_decision tools_check(const tools_patterns *p, int plan_mode, const char *name,
                           const char *input_json, char *why, size_t why_cap) {
    char dummy[8];
    if (!why) {
        why = dummy;
        why_cap = sizeof dummy;
    }
    why[0] = 0;
    char *subject = tools_subject(name, input_json);
    tools_decision d = TOOLS_ASK;
    if (!subject) return TOOLS_ASK; /* malformed: the tool itself reports it */
    if (!strcmp(name, "bash") && tools_bash_denied(subject, why, why_cap)) {
        d = TOOLS_HARD_DENY;
        goto out;
    }
    if ((!strcmp(name, "write") || !strcmp(name, "edit")) && dev_path(subject)) {
        snprintf(why, why_cap, "writes to a device under /dev");
        d = TOOLS_HARD_DENY;
        goto out;
    }
    if (plan_mode && !tools_is_read_only(name)) {
        snprintf(why, why_cap, "plan mode allows only read-only tools (read, glob, grep)");
        d = TOOLS_DENY;
        goto out;
    }
    if (p) {
        char *canon = canonical_json(input_json);
        for (int i = 0; i < p->n && d == TOOLS_ASK; i++) {
            const tools_approval *ap = &p->items[i];
            if (strcmp(ap->tool, name)) continue;
            if (ap->kind == TOOLS_EXACT) {
                if (canon && !strcmp(canon, ap->value)) d = TOOLS_ALLOW;
            } else if (fnmatch(ap->value, subject, 0) == 0 &&
                       !(!strcmp(name, "bash") && shell_compound(subject))) {
                d = TOOLS_ALLOW;
            }
        }
        free(canon);
    }
out:
    free(subject);
    return d;
}

void tools_patterns_free(tools_patterns *p) {
    for (int i = 0; i < p->n; i++) {
        free(p->items[i].tool);
        free(p->items[i].value);
    }
    free(p->items);
    p->items = NULL;
    p->n = p->cap = 0;
}

static int push(tools_patterns *p, const char *tool, tools_approval_kind kind, const char *value) {
    if (p->n >= TOOLS_MAX_APPROVALS) return sh_error_set(SH_EFULL, "at most %d tool approvals", TOOLS_MAX_APPROVALS);
    if (p->n == p->cap) {
        int cap = p->cap ? p->cap * 2 : 16;
        tools_approval *it = realloc(p->items, (size_t)cap * sizeof *it);
        if (!it) return sh_error_set(SH_ENOMEM, "out of memory");
        p->items = it;
        p->cap = cap;
    }
    tools_approval *a = &p->items[p->n];
    a->tool = strdup(tool);
    a->value = strdup(value);
    a->kind = kind;
    if (!a->tool || !a->value) {
        free(a->tool);
        free(a->value);
        return sh_error_set(SH_ENOMEM, "out of memory");
    }
    p->n++;
    return SH_OK;
}

int tools_patterns_load(tools_patterns *p, const char *path) {
    memset(p, 0, sizeof *p);
    if (path && snprintf(p->path, sizeof p->path, "%s", path) >= (int)sizeof p->path)
        return sh_error_set(SH_ERANGE, "path too long");
    if (!path) return SH_OK;
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j) {
        if (access(path, F_OK) != 0) return SH_OK;
        return sh_error_set(SH_EFORMAT, "%s:%d: %s", path, je.line, je.text);
    }
    int st = SH_OK;
    json_t *arr = json_object_get(j, "approvals");
    if (!json_is_array(arr)) {
        st = sh_error_set(SH_EFORMAT, "%s: no \"approvals\" array", path);
        goto out;
    }
    size_t i;
    json_t *e;
    json_array_foreach(arr, i, e) {
        const char *tool = arg_str(e, "tool"), *kind = arg_str(e, "kind"), *value = arg_str(e, "value");
        if (!tool || !kind || !value || (strcmp(kind, "exact") && strcmp(kind, "pattern"))) {
            st = sh_error_set(SH_EFORMAT, "%s: approval %zu needs tool, kind (exact|pattern), value", path, i);
            break;
        }
        if ((st = push(p, tool, !strcmp(kind, "exact") ? TOOLS_EXACT : TOOLS_PATTERN, value))) break;
    }
    if (st) {
        char keep[sizeof p->path];
        memcpy(keep, p->path, sizeof keep);
        tools_patterns_free(p);
        memcpy(p->path, keep, sizeof keep);
    }
out:
    json_decref(j);
    return st;
}

int tools_patterns_save(const tools_patterns *p) {
    if (!p->path[0]) return SH_OK;
    json_t *arr = json_array();
    for (int i = 0; i < p->n; i++)
        json_array_append_new(arr, json_pack("{s:s,s:s,s:s}", "tool", p->items[i].tool, "kind",
                                             p->items[i].kind == TOOLS_EXACT ? "exact" : "pattern",
                                             "value", p->items[i].value));
    json_t *j = json_pack("{s:i,s:o}", "version", 1, "approvals", arr);
    char *text = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
    json_decref(j);
    if (!text) return sh_error_set(SH_ENOMEM, "out of memory");
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", p->path, (int)getpid());
    int st = SH_OK, fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    size_t len = strlen(text);
    if (fd < 0 || write(fd, text, len) != (ssize_t)len || write(fd, "\n", 1) != 1 || fsync(fd) != 0) {
        st = sh_error_set(SH_EIO, "cannot write %s: %s", tmp, strerror(errno));
    }
    if (fd >= 0 && close(fd) != 0 && !st) st = sh_error_set(SH_EIO, "cannot write %s: %s", tmp, strerror(errno));
    if (!st && rename(tmp, p->path) != 0) st = sh_error_set(SH_EIO, "cannot replace %s: %s", p->path, strerror(errno));
    if (st) unlink(tmp);
    free(text);
    return st;
}

int tools_patterns_add(tools_patterns *p, const char *tool, tools_approval_kind kind, const char *value) {
    char *v = kind == TOOLS_EXACT ? canonical_json(value) : strdup(value);
    if (!v) return sh_error_set(kind == TOOLS_EXACT ? SH_EINVAL : SH_ENOMEM, "bad approval value");
    int st = SH_OK;
    for (int i = 0; i < p->n; i++)
        if (p->items[i].kind == kind && !strcmp(p->items[i].tool, tool) && !strcmp(p->items[i].value, v))
            goto out; /* already there */
    if ((st = push(p, tool, kind, v))) goto out;
    st = tools_patterns_save(p);
out:
    free(v);
    return st;
}

int tools_patterns_remove(tools_patterns *p, int index) {
    if (index < 0 || index >= p->n) return sh_error_set(SH_ERANGE, "no approval #%d", index + 1);
    free(p->items[index].tool);
    free(p->items[index].value);
    memmove(&p->items[index], &p->items[index + 1], (size_t)(p->n - index - 1) * sizeof *p->items);
    p->n--;
    return tools_patterns_save(p);
}
