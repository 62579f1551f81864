/* paths.c - SHAMMAH_HOME resolution, folder creation and bounded path joining. */
#include "base/paths.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "base/status.h"

static size_t limit_of(size_t cap) {
    return cap < PATHS_MAX ? cap : PATHS_MAX;
}

/* Copies s[0..n) into out with a terminator; SH_ERANGE when it does not fit. */
static int put(char *out, size_t cap, const char *s, size_t n) {
    if (n >= limit_of(cap)) return sh_error_set(SH_ERANGE, "path too long (%zu bytes)", n);
    memcpy(out, s, n);
    out[n] = 0;
    return SH_OK;
}

/* Trailing slashes would make joins produce "//" and stat() results differ for symlinks. */
static void strip_trailing_slashes(char *p) {
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/') p[--n] = 0;
}

int paths_join(char *out, size_t cap, const char *dir, const char *name) {
    if (!out || !dir || !name || cap == 0) return sh_error_set(SH_EINVAL, "paths_join: NULL");
    if (!name[0]) return sh_error_set(SH_EINVAL, "paths_join: empty name");
    if (name[0] == '/') return sh_error_set(SH_EINVAL, "paths_join: '%s' is absolute", name);
    size_t nd = strlen(dir), nn = strlen(name);
    int slash = nd > 0 && dir[nd - 1] != '/';
    size_t total = nd + (size_t)slash + nn;
    if (total >= limit_of(cap))
        return sh_error_set(SH_ERANGE, "path too long: %s/%s (%zu bytes)", dir, name, total);
    memcpy(out, dir, nd);
    if (slash) out[nd] = '/';
    memcpy(out + nd + (size_t)slash, name, nn);
    out[total] = 0;
    return SH_OK;
}

int paths_home(char *out, size_t cap) {
    if (!out || cap == 0) return sh_error_set(SH_EINVAL, "paths_home: NULL");
    int rc;
    const char *env = getenv("SHAMMAH_HOME");
    if (env && env[0]) {
        if (env[0] == '/') {
            rc = put(out, cap, env, strlen(env));
        } else {
            char cwd[PATHS_MAX];
            if (!getcwd(cwd, sizeof cwd))
                return sh_error_set(SH_EIO, "getcwd: %s", strerror(errno));
            rc = paths_join(out, cap, cwd, env);
        }
    } else {
        const char *home = getenv("HOME");
        if (!home || !home[0])
            return sh_error_set(SH_ENOTFOUND, "neither SHAMMAH_HOME nor HOME is set");
        rc = paths_join(out, cap, home, ".shammah");
    }
    if (rc == SH_OK) strip_trailing_slashes(out);
    return rc;
}

/* mkdir that accepts an existing directory. */
static int mkdir_one(const char *p, unsigned mode) {
    if (mkdir(p, (mode_t)mode) == 0) return SH_OK;
    int e = errno;
    struct stat st;
    if (e == EEXIST && stat(p, &st) == 0) {
        if (S_ISDIR(st.st_mode)) return SH_OK;
        return sh_error_set(SH_EIO, "%s exists and is not a directory", p);
    }
    return sh_error_set(SH_EIO, "mkdir %s: %s", p, strerror(e));
}

int paths_mkdirs(const char *dir, unsigned mode) {
    if (!dir || !dir[0]) return sh_error_set(SH_EINVAL, "paths_mkdirs: empty path");
    char buf[PATHS_MAX];
    int rc = put(buf, sizeof buf, dir, strlen(dir));
    if (rc) return rc;
    strip_trailing_slashes(buf);
    /* Walk the prefixes so that missing parents are created too; "/" itself always exists. */
    for (char *s = buf + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        rc = mkdir_one(buf, mode);
        *s = '/';
        if (rc) return rc;
    }
    return mkdir_one(buf, mode);
}

int paths_ensure_home(char *out, size_t cap) {
    int rc = paths_home(out, cap);
    if (rc) return rc;
    return paths_mkdirs(out, 0700);
}

int paths_file(char *out, size_t cap, const char *name) {
    char home[PATHS_MAX];
    int rc = paths_ensure_home(home, sizeof home);
    if (rc) return rc;
    return paths_join(out, cap, home, name);
}

int paths_dir(char *out, size_t cap, const char *name) {
    int rc = paths_file(out, cap, name);
    if (rc) return rc;
    return paths_mkdirs(out, 0700);
}
