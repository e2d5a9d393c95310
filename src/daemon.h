/*
 * daemon.h - process plumbing shared by the daemons: detaching from the
 * terminal and the PID file.
 */
#ifndef PIMAP_DAEMON_H
#define PIMAP_DAEMON_H

#include <stddef.h>

/*
 * Fork into the background: the parent exits 0 once the child has started,
 * the child gets a new session, cwd "/", and stdin/stdout/stderr on /dev/null
 * (logs must go to a file). Returns 0 in the child, -1 with err on failure.
 */
int daemon_detach(char *err, size_t errlen);

/* Write our PID to path (0644). Returns 0, or -1 with err. */
int daemon_write_pidfile(const char *path, char *err, size_t errlen);
/* Remove the PID file if it still holds our PID. */
void daemon_remove_pidfile(const char *path);

/* mkdir -p path: parents 0755, the leaf 0700 (it holds keys and state). 0, or -1 with err. */
int daemon_make_dirs(const char *path, char *err, size_t errlen);

#endif
