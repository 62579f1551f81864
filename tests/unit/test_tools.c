/* test_tools.c - the client's tools in a temporary folder: read/write/edit/glob/grep/bash,
 * hard-deny rules, approvals (exact, pattern, persistence) and plan mode. */
#include "testutil.h"

#include <sys/stat.h>
#include <unistd.h>

#include "base/status.h"
#include "cli/tools.h"

static char g_dir[256];
static char g_cwd[4096];

static int setup(void **state) {
    (void)state;
    if (!getcwd(g_cwd, sizeof g_cwd)) return -1;
    snprintf(g_dir, sizeof g_dir, "/tmp/shammah_tools_XXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    return chdir(g_dir);
}

static int teardown(void **state) {
    (void)state;
    if (chdir(g_cwd) != 0) return -1;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void put(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

/* Runs a tool; returns its text (caller frees) and checks the error flag. */
static char *run(const char *name, const char *json, int want_error) {
    char *out = NULL;
    int is_error = -1;
    assert_int_equal(tools_run(name, json, NULL, &out, &is_error), 0);
    assert_non_null(out);
    if (is_error != want_error) fail_msg("%s %s: is_error %d, want %d: %s", name, json, is_error, want_error, out);
    return out;
}

static void test_read(void **state) {
    (void)state;
    put("r.txt", "one\ntwo\nthree\nfour\nfive\n");
    char *o = run("read", "{\"file_path\":\"r.txt\"}", 0);
    assert_non_null(strstr(o, "     1\tone\n"));
    assert_non_null(strstr(o, "     5\tfive\n"));
    free(o);
    o = run("read", "{\"file_path\":\"r.txt\",\"offset\":2,\"limit\":2}", 0);
    assert_non_null(strstr(o, "     2\ttwo\n     3\tthree\n"));
    assert_null(strstr(o, "one"));
    assert_null(strstr(o, "four\n"));
    assert_non_null(strstr(o, "use offset"));
    free(o);
    o = run("read", "{\"path\":\"r.txt\",\"offset\":\"5\"}", 0); /* alias and string number */
    assert_non_null(strstr(o, "five"));
    free(o);
    o = run("read", "{\"file_path\":\"missing.txt\"}", 1);
    assert_non_null(strstr(o, "No such file"));
    free(o);
    o = run("read", "{\"file_path\":\".\"}", 1);
    assert_non_null(strstr(o, "folder"));
    free(o);
    o = run("read", "{}", 1);
    free(o);
    o = run("read", "[1,2]", 1);
    assert_non_null(strstr(o, "not a JSON object"));
    free(o);
}

static void test_write_edit(void **state) {
    (void)state;
    char *o = run("write", "{\"file_path\":\"w.txt\",\"content\":\"alpha beta\\nalpha gamma\\n\"}", 0);
    assert_non_null(strstr(o, "wrote 23 bytes"));
    free(o);
    assert_string_equal(slurp("w.txt"), "alpha beta\nalpha gamma\n");
    o = run("edit", "{\"file_path\":\"w.txt\",\"old_string\":\"beta\",\"new_string\":\"BETA\"}", 0);
    assert_non_null(strstr(o, "replaced 1 occurrence"));
    free(o);
    assert_string_equal(slurp("w.txt"), "alpha BETA\nalpha gamma\n");
    o = run("edit", "{\"file_path\":\"w.txt\",\"old_string\":\"alpha\",\"new_string\":\"A\"}", 1);
    assert_non_null(strstr(o, "not unique"));
    assert_non_null(strstr(o, "2 matches"));
    free(o);
    assert_string_equal(slurp("w.txt"), "alpha BETA\nalpha gamma\n"); /* untouched */
    o = run("edit", "{\"file_path\":\"w.txt\",\"old_string\":\"delta\",\"new_string\":\"D\"}", 1);
    assert_non_null(strstr(o, "not found"));
    free(o);
    o = run("edit", "{\"file_path\":\"w.txt\",\"old_string\":\"alpha\",\"new_string\":\"A\",\"replace_all\":true}", 0);
    free(o);
    assert_string_equal(slurp("w.txt"), "A BETA\nA gamma\n");
    o = run("edit", "{\"file_path\":\"w.txt\",\"old_string\":\"\",\"new_string\":\"x\"}", 1);
    free(o);
    /* the file's mode survives an edit */
    chmod("w.txt", 0751);
    o = run("edit", "{\"file_path\":\"w.txt\",\"old_string\":\"BETA\",\"new_string\":\"b\"}", 0);
    free(o);
    struct stat sb;
    assert_int_equal(stat("w.txt", &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0751);
    o = run("write", "{\"file_path\":\"/dev/null\",\"content\":\"x\"}", 1);
    assert_non_null(strstr(o, "device"));
    free(o);
    o = run("write", "{\"file_path\":\"nodir/x.txt\",\"content\":\"x\"}", 1);
    free(o);
}

static void test_glob_grep(void **state) {
    (void)state;
    assert_int_equal(mkdir("g", 0755), 0);
    assert_int_equal(mkdir("g/sub", 0755), 0);
    assert_int_equal(mkdir("g/sub/deep", 0755), 0);
    assert_int_equal(mkdir("g/.git", 0755), 0);
    put("g/a.c", "int main(void) { return 0; }\n// TODO: fix\n");
    put("g/b.h", "#define X 1\n");
    put("g/sub/c.c", "static int todo_count;\nint f(void) { return 1; }\n");
    put("g/sub/deep/d.c", "/* todo */\n");
    put("g/.git/e.c", "TODO hidden\n");
    char *o = run("glob", "{\"pattern\":\"*.c\",\"path\":\"g\"}", 0);
    assert_string_equal(o, "g/a.c\ng/sub/c.c\ng/sub/deep/d.c\n");
    free(o);
    o = run("glob", "{\"pattern\":\"sub/**/*.c\",\"path\":\"g\"}", 0);
    assert_string_equal(o, "g/sub/c.c\ng/sub/deep/d.c\n");
    free(o);
    o = run("glob", "{\"pattern\":\"**/*.h\",\"path\":\"g\"}", 0);
    assert_string_equal(o, "g/b.h\n");
    free(o);
    o = run("glob", "{\"pattern\":\"*.rs\",\"path\":\"g\"}", 0);
    assert_non_null(strstr(o, "no files match"));
    free(o);
    o = run("glob", "{\"pattern\":\"*.c\",\"path\":\"nope\"}", 1);
    free(o);

    o = run("grep", "{\"pattern\":\"TODO\",\"path\":\"g\"}", 0);
    assert_string_equal(o, "g/a.c:2:// TODO: fix\n");
    free(o);
    o = run("grep", "{\"pattern\":\"todo\",\"path\":\"g\",\"ignore_case\":true,\"include\":\"*.c\"}", 0);
    assert_string_equal(o, "g/a.c:2:// TODO: fix\ng/sub/c.c:1:static int todo_count;\ng/sub/deep/d.c:1:/* todo */\n");
    free(o);
    o = run("grep", "{\"pattern\":\"return \\\\d;\",\"path\":\"g/sub/c.c\"}", 0);
    assert_string_equal(o, "g/sub/c.c:2:int f(void) { return 1; }\n");
    free(o);
    o = run("grep", "{\"pattern\":\"(unclosed\"}", 1);
    assert_non_null(strstr(o, "bad regular expression"));
    free(o);
    o = run("grep", "{\"pattern\":\"zzzz\",\"path\":\"g\"}", 0);
    assert_non_null(strstr(o, "no matches"));
    free(o);
}

static void test_bash(void **state) {
    (void)state;
    char *o = run("bash", "{\"command\":\"echo hello; echo err >&2\"}", 0);
    assert_non_null(strstr(o, "hello\n"));
    assert_non_null(strstr(o, "err\n"));
    assert_non_null(strstr(o, "[exit code 0]"));
    free(o);
    o = run("bash", "{\"command\":\"exit 3\"}", 1);
    assert_non_null(strstr(o, "[exit code 3]"));
    free(o);
    o = run("bash", "{\"command\":\"sleep 5; echo never\",\"timeout\":1}", 1);
    assert_non_null(strstr(o, "timed out after 1 s"));
    assert_null(strstr(o, "never"));
    free(o);
    /* output cap: the note says how much was cut, the exit code still shows */
    char *out = NULL;
    int is_error = 0;
    tools_opts opts = {.max_output = 1000};
    assert_int_equal(tools_run("bash", "{\"command\":\"yes abcdefghi | head -c 100000\"}", &opts, &out, &is_error), 0);
    assert_true(strlen(out) < 1200);
    assert_non_null(strstr(out, "[output truncated: 99000 more bytes]"));
    assert_non_null(strstr(out, "[exit code 0]"));
    free(out);
    /* hard-denied commands never run, whatever the caller did */
    o = run("bash", "{\"command\":\"rm -rf / \"}", 1);
    assert_non_null(strstr(o, "refused"));
    free(o);
    o = run("bash", "{\"command\":\"pwd\"}", 0);
    assert_non_null(strstr(o, g_dir));
    free(o);
}

static void test_hard_deny(void **state) {
    (void)state;
    static const char *const denied[] = {
        "rm -rf /", "rm -rf /*", "sudo rm -rf /", "rm -fr ~", "rm -r -f $HOME", "rm -rf --no-preserve-root /",
        "cd /tmp && rm -Rf /usr", "echo x; rm --recursive --force /etc/", "rm -rf \"/\"", "rm -rf '~/'",
        "mkfs.ext4 /dev/sda1", "sudo mkfs -t ext4 /dev/sdb", "/sbin/mkfs /dev/sda", "wipefs -a /dev/sda",
        "dd if=/dev/zero of=/dev/sda bs=1M", "dd if=x.img of=/dev/nvme0n1", "echo x > /dev/sda",
        "cat img >/dev/mmcblk0", "echo 1 | sudo tee /dev/sda", ":(){ :|:& };:", "bomb() { bomb | bomb & }; bomb",
        "chmod -R 777 /", "chown -R me /usr",
    };
    static const char *const allowed[] = {
        "rm -rf build", "rm -rf ./node_modules", "rm -f /tmp/x", "rm -rf /tmp/shammah_x", "ls /",
        "echo hi > /dev/null", "cmd 2>/dev/null", "dd if=/dev/zero of=disk.img bs=1M count=1",
        "echo rm -rf / is bad", "grep -r mkfs .", "cat /dev/sda | head -c 10 >/dev/null", "chmod -R 755 build",
        "echo '>' /dev/sda",
    };
    char why[256];
    for (size_t i = 0; i < sizeof denied / sizeof *denied; i++)
        if (!tools_bash_denied(denied[i], why, sizeof why)) fail_msg("not denied: %s", denied[i]);
    for (size_t i = 0; i < sizeof allowed / sizeof *allowed; i++)
        if (tools_bash_denied(allowed[i], why, sizeof why)) fail_msg("denied: %s (%s)", allowed[i], why);
    /* "echo rm -rf / is bad" is allowed because echo is the program; quoted separators too */
}

static void test_approvals(void **state) {
    (void)state;
    tools_patterns p;
    assert_int_equal(tools_patterns_load(&p, "patterns.json"), 0); /* missing = empty */
    assert_int_equal(p.n, 0);
    char why[256];
    assert_int_equal(tools_check(&p, 0, "bash", "{\"command\":\"git status\"}", why, sizeof why), TOOLS_ASK);
    assert_int_equal(tools_patterns_add(&p, "bash", TOOLS_PATTERN, "git *"), 0);
    assert_int_equal(tools_patterns_add(&p, "read", TOOLS_EXACT, "{ \"limit\": 5, \"file_path\": \"a.txt\" }"), 0);
    assert_int_equal(tools_patterns_add(&p, "bash", TOOLS_PATTERN, "git *"), 0); /* deduplicated */
    assert_int_equal(p.n, 2);
    assert_int_equal(tools_check(&p, 0, "bash", "{\"command\":\"git status\"}", why, sizeof why), TOOLS_ALLOW);
    assert_int_equal(tools_check(&p, 0, "bash", "{\"command\":\"git log -1\"}", why, sizeof why), TOOLS_ALLOW);
    /* a pattern never covers a compound command */
    assert_int_equal(tools_check(&p, 0, "bash", "{\"command\":\"git status; curl x | sh\"}", why, sizeof why), TOOLS_ASK);
    assert_int_equal(tools_check(&p, 0, "bash", "{\"command\":\"ls\"}", why, sizeof why), TOOLS_ASK);
    /* exact: same arguments in any key order */
    assert_int_equal(tools_check(&p, 0, "read", "{\"file_path\":\"a.txt\",\"limit\":5}", why, sizeof why), TOOLS_ALLOW);
    assert_int_equal(tools_check(&p, 0, "read", "{\"file_path\":\"a.txt\",\"limit\":6}", why, sizeof why), TOOLS_ASK);
    /* no approval overrides a hard deny */
    assert_int_equal(tools_patterns_add(&p, "bash", TOOLS_PATTERN, "*"), 0);
    assert_int_equal(tools_check(&p, 0, "bash", "{\"command\":\"rm -rf /\"}", why, sizeof why), TOOLS_HARD_DENY);
    assert_non_null(strstr(why, "recursive rm"));
    assert_int_equal(tools_patterns_add(&p, "write", TOOLS_PATTERN, "*"), 0);
    assert_int_equal(tools_check(&p, 0, "write", "{\"file_path\":\"/dev/sda\",\"content\":\"\"}", why, sizeof why),
                     TOOLS_HARD_DENY);
    /* plan mode: only read-only tools, even when approved */
    assert_int_equal(tools_check(&p, 1, "bash", "{\"command\":\"ls\"}", why, sizeof why), TOOLS_DENY);
    assert_non_null(strstr(why, "plan mode"));
    assert_int_equal(tools_check(&p, 1, "read", "{\"file_path\":\"a.txt\",\"limit\":5}", why, sizeof why), TOOLS_ALLOW);
    assert_int_equal(tools_check(&p, 1, "grep", "{\"pattern\":\"x\"}", why, sizeof why), TOOLS_ASK);
    assert_true(tools_is_read_only("glob") && !tools_is_read_only("edit"));

    /* persisted: a fresh load sees the same approvals; removal persists too */
    tools_patterns q;
    assert_int_equal(tools_patterns_load(&q, "patterns.json"), 0);
    assert_int_equal(q.n, 4);
    assert_string_equal(q.items[0].tool, "bash");
    assert_int_equal(q.items[0].kind, TOOLS_PATTERN);
    assert_string_equal(q.items[0].value, "git *");
    assert_int_equal(q.items[1].kind, TOOLS_EXACT);
    assert_string_equal(q.items[1].value, "{\"file_path\":\"a.txt\",\"limit\":5}");
    assert_int_equal(tools_patterns_remove(&q, 0), 0);
    assert_int_equal(tools_patterns_remove(&q, 7), SH_ERANGE);
    tools_patterns_free(&q);
    assert_int_equal(tools_patterns_load(&q, "patterns.json"), 0);
    assert_int_equal(q.n, 3);
    assert_int_equal(tools_check(&q, 0, "bash", "{\"command\":\"git status\"}", why, sizeof why), TOOLS_ALLOW); /* "*" */
    tools_patterns_free(&q);
    struct stat sb;
    assert_int_equal(stat("patterns.json", &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    /* a malformed file is an error, not a crash, and leaves no approvals */
    put("bad.json", "{\"approvals\":[{\"tool\":\"bash\"}]}");
    assert_int_equal(tools_patterns_load(&q, "bad.json"), SH_EFORMAT);
    assert_int_equal(q.n, 0);
    tools_patterns_free(&q);
    tools_patterns_free(&p);
}

static void test_schemas(void **state) {
    (void)state;
    int n = 0;
    const conv_tool *t = tools_all(&n);
    assert_int_equal(n, 6);
    for (int i = 0; i < n; i++) {
        assert_non_null(t[i].description);
        char *subject = tools_subject(t[i].name, "{}");
        assert_non_null(subject);
        free(subject);
        /* every schema is a JSON object with required properties */
        assert_non_null(strstr(t[i].schema_json, "\"type\":\"object\""));
        assert_non_null(strstr(t[i].schema_json, "\"required\""));
    }
    char *o = run("nope", "{}", 1);
    assert_non_null(strstr(o, "unknown tool"));
    free(o);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read),      cmocka_unit_test(test_write_edit), cmocka_unit_test(test_glob_grep),
        cmocka_unit_test(test_bash),      cmocka_unit_test(test_hard_deny),  cmocka_unit_test(test_approvals),
        cmocka_unit_test(test_schemas),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
