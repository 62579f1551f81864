/* pidfile.h - the daemon's PID file: holds the pid and stays locked (flock) while the daemon
 * lives, so a second daemon on the same SHAMMAH_HOME fails at once, and a file left by a dead
 * daemon (not locked) is recognised as stale and replaced. */
#ifndef SH_PIDFILE_H
#define SH_PIDFILE_H

#include <sys/types.h>

typedef struct {
    int fd;
    char path[4096];
} pidfile;

/* Creates/locks path and writes our pid. SH_EFULL (with the running pid in *other) when a live
 * daemon holds it; SH_EIO on other failures. */
int pidfile_acquire(pidfile *pf, const char *path, pid_t *other);
/* Removes the file and drops the lock. */
void pidfile_release(pidfile *pf);
/* The pid of the daemon holding path, or 0 when none (no file, stale file). */
pid_t pidfile_running(const char *path);

#endif
