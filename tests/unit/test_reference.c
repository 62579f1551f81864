/* test_reference.c - the engine against llama.cpp, from stored fixtures.
 *
 * For each case of tests/reference/cases.txt: make the model with `shammah model synth`,
 * check it is byte-identical to the one llama.cpp ran (sha256), run `shammah run --temp 0
 * --kv (f32 unless the case says) --json --dump-logits`, and require the same prompt tokens, the same 24 greedy
 * tokens, and last-position logits within 2e-3 relative (max |d| / max |logit|). */
#include "testutil.h"

#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_CASES 128
#define REL_TOL 2e-3

typedef struct {
    char name[64];
    char args[512];
    char prompt[512];
    char kv[8];
    char lora[256]; /* synth-lora arguments, or "" */
} ref_case;

static char bin[512], tmpdir[256];
static const char *ref_dir;

static char *trim(char *s) {
    while (*s == ' ') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\n')) s[--n] = 0;
    return s;
}

/* Runs argv, returns its stdout (caller frees) or NULL; *status gets the exit status. */
static char *run_capture(char *const argv[], int *status) {
    int fds[2];
    if (pipe(fds)) return NULL;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execv(argv[0], argv);
        _exit(127);
    }
    close(fds[1]);
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    ssize_t r;
    while (buf && (r = read(fds[0], buf + len, cap - len - 1)) > 0) {
        len += (size_t)r;
        if (cap - len < 4096) buf = realloc(buf, cap *= 2);
    }
    close(fds[0]);
    waitpid(pid, status, 0);
    if (buf) buf[len] = 0;
    return buf;
}

static int read_ids(const char *line, const char *tag, int32_t *ids, int cap) {
    size_t tl = strlen(tag);
    if (strncmp(line, tag, tl) != 0) return -1;
    int n = 0;
    const char *p = line + tl;
    char *end;
    for (;;) {
        long v = strtol(p, &end, 10);
        if (end == p || n == cap) break;
        ids[n++] = (int32_t)v;
        p = end;
    }
    return n;
}

static void run_case(void **state) {
    const ref_case *rc = *state;
    char path[1024], model[512], logits[512], cmd[2048];
    int32_t want_prompt[512], want_greedy[64];
    int n_wp = -1, n_wg = -1, status;
    char want_sha[80] = "";

    snprintf(path, sizeof path, "%s/%s.txt", ref_dir, rc->name);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[8192];
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "sha256 ", 7)) sscanf(line + 7, "%64s", want_sha);
        if (!strncmp(line, "prompt ", 7)) n_wp = read_ids(line, "prompt ", want_prompt, 512);
        if (!strncmp(line, "greedy ", 7)) n_wg = read_ids(line, "greedy ", want_greedy, 64);
    }
    fclose(f);
    assert_true(n_wp > 0 && n_wg == 24);

    snprintf(model, sizeof model, "%s/%s.gguf", tmpdir, rc->name);
    snprintf(cmd, sizeof cmd, "%s model synth %s --out %s", bin, rc->args, model);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "sha256sum %s", model);
    FILE *p = popen(cmd, "r");
    char got_sha[80] = "";
    assert_non_null(p);
    assert_int_equal(fscanf(p, "%64s", got_sha), 1);
    pclose(p);
    if (strcmp(got_sha, want_sha) != 0) {
        print_error("model generator output changed (sha256 %s, fixture %s): run `make fixtures`\n",
                    got_sha, want_sha);
        fail();
    }

    char adapter[600] = "";
    if (rc->lora[0]) {
        snprintf(adapter, sizeof adapter, "%s/%s.lora.gguf", tmpdir, rc->name);
        snprintf(cmd, sizeof cmd, "%s model synth-lora -m %s %s --out %s", bin, model, rc->lora, adapter);
        assert_int_equal(system(cmd), 0);
    }
    snprintf(logits, sizeof logits, "%s/%s.logits", tmpdir, rc->name);
    char prompt[512];
    snprintf(prompt, sizeof prompt, "%s", rc->prompt);
    char *argv[] = {bin, "run", "-m", model, "-p", prompt, "-n", "24", "--temp", "0", "--kv", (char *)rc->kv,
                    "-t", "2", "--ignore-eos", "--json", "--dump-logits", logits,
                    adapter[0] ? "--lora" : NULL, adapter, NULL};
    char *out = run_capture(argv, &status);
    assert_non_null(out);
    assert_int_equal(status, 0);
    json_error_t err;
    json_t *j = json_loads(out, 0, &err);
    free(out);
    assert_non_null(j);
    json_t *pt = json_object_get(j, "prompt_tokens"), *gt = json_object_get(j, "tokens");
    assert_int_equal((int)json_array_size(pt), n_wp);
    for (int i = 0; i < n_wp; i++)
        assert_int_equal(json_integer_value(json_array_get(pt, (size_t)i)), want_prompt[i]);
    size_t ng = json_array_size(gt);
    assert_int_equal(ng, 24);
    for (size_t i = 0; i < ng; i++) {
        if (json_integer_value(json_array_get(gt, i)) != want_greedy[i])
            print_error("%s: greedy token %zu differs: %lld vs llama.cpp %d\n", rc->name, i,
                        (long long)json_integer_value(json_array_get(gt, i)), want_greedy[i]);
        assert_int_equal(json_integer_value(json_array_get(gt, i)), want_greedy[i]);
    }
    json_decref(j);

    snprintf(path, sizeof path, "%s/%s.logits", ref_dir, rc->name);
    FILE *fa = fopen(path, "rb"), *fb = fopen(logits, "rb");
    assert_non_null(fa);
    assert_non_null(fb);
    double maxd = 0, maxr = 0;
    size_t n = 0;
    float a[1024], b[1024];
    for (;;) {
        size_t na = fread(a, 4, 1024, fa), nb = fread(b, 4, 1024, fb);
        assert_int_equal(na, nb);
        if (!na) break;
        for (size_t i = 0; i < na; i++) {
            double d = fabs((double)a[i] - b[i]);
            if (d > maxd) maxd = d;
            if (fabs(a[i]) > maxr) maxr = fabs(a[i]);
        }
        n += na;
    }
    fclose(fa);
    fclose(fb);
    assert_true(n > 0);
    double rel = maxd / (maxr > 0 ? maxr : 1);
    printf("%-24s %zu prompt + %zu greedy tokens identical; logits rel err %.2e (n_vocab %zu)\n",
           rc->name, (size_t)n_wp, ng, rel, n);
    assert_true(rel <= REL_TOL);
    unlink(model);
    unlink(logits);
    if (adapter[0]) unlink(adapter);
}

int main(void) {
    static ref_case cases[MAX_CASES];
    static struct CMUnitTest tests[MAX_CASES];
    const char *b = getenv("BUILD");
    snprintf(bin, sizeof bin, "%s/shammah", b ? b : "build");
    ref_dir = getenv("SHAMMAH_REF_DIR");
    if (!ref_dir) ref_dir = FIXTURES "/ref";
    snprintf(tmpdir, sizeof tmpdir, "/tmp/shammah-ref-XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    FILE *f = fopen("tests/reference/cases.txt", "r");
    if (!f) return 1;
    char line[2048];
    int n = 0;
    while (n < MAX_CASES && fgets(line, sizeof line, f)) {
        if (line[0] == '#' || line[0] == '\n') continue;
        char *p1 = strchr(line, '|'), *p2 = p1 ? strchr(p1 + 1, '|') : NULL;
        if (!p2) continue;
        char *p3 = strchr(p2 + 1, '|'), *p4 = p3 ? strchr(p3 + 1, '|') : NULL;
        *p1 = *p2 = 0;
        if (p3) *p3 = 0;
        if (p4) *p4 = 0;
        snprintf(cases[n].kv, sizeof cases[n].kv, "%s", p3 ? trim(p3 + 1) : "f32");
        if (!cases[n].kv[0]) snprintf(cases[n].kv, sizeof cases[n].kv, "f32");
        snprintf(cases[n].lora, sizeof cases[n].lora, "%s", p4 ? trim(p4 + 1) : "");
        snprintf(cases[n].name, sizeof cases[n].name, "%s", trim(line));
        snprintf(cases[n].args, sizeof cases[n].args, "%s", trim(p1 + 1));
        snprintf(cases[n].prompt, sizeof cases[n].prompt, "%s", trim(p2 + 1));
        tests[n] = (struct CMUnitTest){cases[n].name, run_case, NULL, NULL, &cases[n]};
        n++;
    }
    fclose(f);
    int rc = _cmocka_run_group_tests("reference", tests, (size_t)n, NULL, NULL);
    rmdir(tmpdir);
    return rc;
}
