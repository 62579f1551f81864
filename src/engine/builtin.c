/* builtin.c - the embedded default model (see builtin.h). */
#include "engine/builtin.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/status.h"

#ifdef SH_BUILTIN_MODEL_FILE
/* The assembler copies the file into .rodata: no generated sources, no size limit of a C
 * array initializer, and the linker keeps it out of the heap. */
__asm__(".section .rodata\n"
        ".balign 64\n"
        "sh_builtin_model_start:\n"
        ".incbin \"" SH_BUILTIN_MODEL_FILE "\"\n"
        "sh_builtin_model_end:\n"
        ".previous\n");
extern const unsigned char sh_builtin_model_start[], sh_builtin_model_end[];
static const unsigned char *model_bytes(void) { return sh_builtin_model_start; }
size_t builtin_model_size(void) { return (size_t)(sh_builtin_model_end - sh_builtin_model_start); }
#else
static const unsigned char *model_bytes(void) { return NULL; }
size_t builtin_model_size(void) { return 0; }
#endif

/* 1 when path holds exactly the embedded bytes */
static int same_file(const char *path, const unsigned char *bytes, size_t n) {
    struct stat sb;
    if (stat(path, &sb) != 0 || (size_t)sb.st_size != n) return 0;
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    unsigned char buf[1 << 16];
    size_t off = 0, got;
    int same = 1;
    while (same && (got = fread(buf, 1, sizeof buf, f)) > 0) {
        if (off + got > n || memcmp(buf, bytes + off, got)) same = 0;
        off += got;
    }
    fclose(f);
    return same && off == n;
}

int builtin_model_extract(const char *models_dir, char *path, size_t cap) {
    size_t n = builtin_model_size();
    const unsigned char *bytes = model_bytes();
    char tmp[4096];
    int fd = -1, st = SH_OK;
    if (!n || !bytes)
        return sh_error_set(SH_ENOTFOUND, "this build has no embedded model (models/%s.gguf was "
                                          "missing when it was built)", BUILTIN_MODEL_NAME);
    if ((size_t)snprintf(path, cap, "%s/%s.gguf", models_dir, BUILTIN_MODEL_NAME) >= cap ||
        (size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= sizeof tmp)
        return sh_error_set(SH_ERANGE, "models directory path too long");
    if (same_file(path, bytes, n)) return SH_OK;
    if (mkdir(models_dir, 0755) != 0 && errno != EEXIST)
        return sh_error_set(SH_EIO, "%s: %s", models_dir, strerror(errno));
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return sh_error_set(SH_EIO, "%s: %s", tmp, strerror(errno));
    for (size_t off = 0; off < n;) {
        ssize_t w = write(fd, bytes + off, n - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            st = sh_error_set(SH_EIO, "writing %s: %s", tmp, w < 0 ? strerror(errno) : "short write");
            goto out;
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0) {
        st = sh_error_set(SH_EIO, "writing %s: %s", tmp, strerror(errno));
        goto out;
    }
    if (close(fd) != 0) {
        fd = -1;
        st = sh_error_set(SH_EIO, "writing %s: %s", tmp, strerror(errno));
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) != 0) st = sh_error_set(SH_EIO, "%s: %s", path, strerror(errno));
out:
    if (fd >= 0) close(fd);
    if (st) unlink(tmp);
    return st;
}
