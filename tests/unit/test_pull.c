/* test_pull.c - the offline parts of `shammah pull`: SHA-256 against the FIPS 180-4 / NIST
 * vectors (whole and fed in odd pieces), name parsing and its refusals, URLs, tokens. The
 * network side is tests/integration/pull.sh. */
#include "testutil.h"

#include <unistd.h>

#include "base/status.h"
#include "client/pull.h"

static void hex(const uint8_t d[32], char out[65]) {
    for (int i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void sha_of(const void *data, size_t n, char out[65]) {
    pull_sha256 s;
    uint8_t d[32];
    pull_sha256_init(&s);
    pull_sha256_update(&s, data, n);
    pull_sha256_final(&s, d);
    hex(d, out);
}

static void test_sha256_vectors(void **state) {
    char h[65];
    sha_of("", 0, h);
    assert_string_equal(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    sha_of("abc", 3, h);
    assert_string_equal(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sha_of(m448, strlen(m448), h);
    assert_string_equal(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    const char *m896 = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
                       "ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
    sha_of(m896, strlen(m896), h);
    assert_string_equal(h, "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
    /* a million 'a', fed in pieces of awkward sizes */
    static char a[1000000];
    memset(a, 'a', sizeof a);
    pull_sha256 s;
    uint8_t d[32];
    pull_sha256_init(&s);
    size_t off = 0, step = 1;
    while (off < sizeof a) {
        size_t n = step < sizeof a - off ? step : sizeof a - off;
        pull_sha256_update(&s, a + off, n);
        off += n;
        step = step * 7 % 997 + 1;
    }
    pull_sha256_final(&s, d);
    hex(d, h);
    assert_string_equal(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    /* every length around the padding boundaries: pieces agree with one call */
    uint8_t buf[200];
    for (int i = 0; i < 200; i++) buf[i] = (uint8_t)(i * 31 + 7);
    for (size_t n = 0; n <= 200; n++) {
        char one[65], two[65];
        sha_of(buf, n, one);
        pull_sha256_init(&s);
        pull_sha256_update(&s, buf, n / 3);
        pull_sha256_update(&s, buf + n / 3, n - n / 3);
        pull_sha256_final(&s, d);
        hex(d, two);
        assert_string_equal(one, two);
    }
}

static void test_sha256_file(void **state) {
    char path[] = "/tmp/sh_test_pull.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "abc", 3), 3);
    close(fd);
    char h[65];
    assert_int_equal(pull_sha256_file(path, h), SH_OK);
    assert_string_equal(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    unlink(path);
    assert_int_equal(pull_sha256_file(path, h), SH_EIO);
}

static void expect_spec(const char *spec, const char *repo, const char *path, const char *file) {
    pull_spec s;
    int st = pull_parse(spec, &s);
    if (st) fail_msg("pull_parse(%s) = %d (%s)", spec, st, sh_error_last());
    assert_string_equal(s.repo, repo);
    assert_string_equal(s.path, path);
    assert_string_equal(s.file, file);
}

static void expect_bad(const char *spec, const char *sub) {
    pull_spec s;
    sh_error_clear();
    int st = pull_parse(spec, &s);
    if (st != SH_EINVAL || !strstr(sh_error_last(), sub))
        fail_msg("pull_parse(%s) = %d (%s), want EINVAL with '%s'", spec, st, sh_error_last(), sub);
}

static void test_parse(void **state) {
    expect_spec("hf:acme/repo-GGUF/m.gguf", "acme/repo-GGUF", "m.gguf", "m.gguf");
    expect_spec("hf:acme/repo/sub/dir/m-Q4_K_M.gguf", "acme/repo", "sub/dir/m-Q4_K_M.gguf",
                "m-Q4_K_M.gguf");
    expect_spec("hf:acme/repo:m.gguf", "acme/repo", "m.gguf", "m.gguf");
    expect_spec("hf:acme/repo:sub/m.gguf", "acme/repo", "sub/m.gguf", "m.gguf");
    expect_spec("qwen2.5-coder:1.5b", "Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF",
                "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf");
    expect_spec("qwen3:0.6b", "Qwen/Qwen3-0.6B-GGUF", "Qwen3-0.6B-Q8_0.gguf", "Qwen3-0.6B-Q8_0.gguf");
    /* every alias is itself well-formed */
    int n;
    const pull_alias *a = pull_aliases(&n);
    assert_true(n >= 12);
    for (int i = 0; i < n; i++) {
        pull_spec s;
        assert_int_equal(pull_parse(a[i].alias, &s), SH_OK);
        assert_string_equal(s.repo, a[i].repo);
    }
    expect_bad("", "nothing");
    expect_bad("llama9:1t", "unknown model");
    expect_bad("hf:acme", "name the file");
    expect_bad("hf:acme/repo", "name the file");
    expect_bad("hf:acme/repo/", "bad file path");
    expect_bad("hf:acme/repo/m.bin", "not a .gguf");
    expect_bad("hf:acme/repo/../../etc/x.gguf", "bad file path");
    expect_bad("hf:acme/repo/./x.gguf", "bad file path");
    expect_bad("hf:acme/repo/a b.gguf", "bad file path");
    expect_bad("hf:acme/repo/x.gguf?download=1", "bad file path");
    expect_bad("hf:../repo/x.gguf", "OWNER/REPO");
    expect_bad("hf:a%2F/repo/x.gguf", "OWNER/REPO");
    expect_bad("hf:acme/repo/.gguf", "not a .gguf");
    char longname[400];
    memset(longname, 'x', sizeof longname);
    memcpy(longname, "hf:a/b/", 7);
    memcpy(longname + sizeof longname - 6, ".gguf", 6);
    expect_bad(longname, "too long");
}

static void test_url(void **state) {
    pull_spec s;
    char url[256];
    assert_int_equal(pull_parse("hf:acme/r/sub/m.gguf", &s), SH_OK);
    assert_int_equal(pull_url(&s, "http://127.0.0.1:9/", url, sizeof url), SH_OK);
    assert_string_equal(url, "http://127.0.0.1:9/acme/r/resolve/main/sub/m.gguf");
    unsetenv("HF_ENDPOINT");
    assert_int_equal(pull_url(&s, NULL, url, sizeof url), SH_OK);
    assert_string_equal(url, "https://huggingface.co/acme/r/resolve/main/sub/m.gguf");
    setenv("HF_ENDPOINT", "https://mirror.example", 1);
    assert_int_equal(pull_url(&s, NULL, url, sizeof url), SH_OK);
    assert_string_equal(url, "https://mirror.example/acme/r/resolve/main/sub/m.gguf");
    unsetenv("HF_ENDPOINT");
    assert_int_equal(pull_url(&s, NULL, url, 20), SH_ERANGE);
}

static void test_token(void **state) {
    char dir[] = "/tmp/sh_test_pull_tok.XXXXXX", path[128], tok[PULL_TOKEN_MAX];
    assert_non_null(mkdtemp(dir));
    setenv("HF_TOKEN", "  hf_abc123\n", 1);
    pull_token(tok, sizeof tok);
    assert_string_equal(tok, "hf_abc123");
    setenv("HF_TOKEN", "bad\ttoken", 1);
    pull_token(tok, sizeof tok);
    assert_string_equal(tok, "");
    unsetenv("HF_TOKEN");
    setenv("HF_HOME", dir, 1);
    pull_token(tok, sizeof tok);
    assert_string_equal(tok, ""); /* no file */
    snprintf(path, sizeof path, "%s/token", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("hf_fromfile\n", f);
    fclose(f);
    pull_token(tok, sizeof tok);
    assert_string_equal(tok, "hf_fromfile");
    unsetenv("HF_HOME");
    /* ~/.cache/huggingface/token */
    char cache[512];
    snprintf(cache, sizeof cache, "mkdir -p %s/.cache/huggingface && mv %s %s/.cache/huggingface/token",
             dir, path, dir);
    assert_int_equal(system(cache), 0);
    const char *old = getenv("HOME");
    char *saved = old ? strdup(old) : NULL;
    setenv("HOME", dir, 1);
    pull_token(tok, sizeof tok);
    assert_string_equal(tok, "hf_fromfile");
    if (saved) setenv("HOME", saved, 1);
    free(saved);
    snprintf(cache, sizeof cache, "rm -rf %s", dir);
    assert_int_equal(system(cache), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_vectors),
        cmocka_unit_test(test_sha256_file),
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_url),
        cmocka_unit_test(test_token),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
