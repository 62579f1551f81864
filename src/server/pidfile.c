/* pidfile.c - PID file with an flock held for the daemon's life. */
#include "server/pidfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "base/status.h"

static pid_t read_pid(int fd) {
    char buf[32] = {0};
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n <= 0) return 0;
    long v = strtol(buf, NULL, 10);
    return v > 0 ? (pid_t)v : 0;
}

int pidfile_acquire(pidfile *pf, const char *path, pid_t *other) {
    *other = 0;
    pf->fd = -1;
    if (snprintf(pf->path, sizeof pf->path, "%s", path) >= (int)sizeof pf->path)
        return sh_error_set(SH_ERANGE, "PID file path too long");
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return sh_error_set(SH_EIO, "cannot open %s: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        *other = read_pid(fd);
        close(fd);
        return sh_error_set(SH_EFULL, "another daemon (pid %d) is running on this SHAMMAH_HOME",
                            (int)*other);
    }
    /* ours now: whatever was there was stale */
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%d\n", (int)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)n, 0) != n) {
        close(fd);
        return sh_error_set(SH_EIO, "cannot write %s: %s", path, strerror(errno));
    }
    fsync(fd);
    pf->fd = fd;
    return SH_OK;
}

void pidfile_release(pidfile *pf) {
    if (pf->fd < 0) return;
    unlink(pf->path);
    close(pf->fd); /* drops the lock */
    pf->fd = -1;
}

pid_t pidfile_running(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    pid_t pid = 0;
    if (flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK) pid = read_pid(fd);
    close(fd);
    return pid;
}
