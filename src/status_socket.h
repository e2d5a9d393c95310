/*
 * status_socket.h - a daemon's status report on a local Unix socket.
 *
 * The daemon listens on a stream socket in its private state directory
 * (mode 0600, and the peer's uid is checked: only the same user or root).
 * Whoever connects gets the report, one "key: value" line after another,
 * and the connection is closed; nothing is read. `pimap-proxy --status`
 * connects and prints it.
 *
 * The report is made of sections, each a function that appends its lines,
 * called in the order of their rank. A module with something to show (the
 * outbox of queued messages, say) adds one section with status_add() at
 * its own rank; nothing else changes.
 */
#ifndef PIMAP_STATUS_SOCKET_H
#define PIMAP_STATUS_SOCKET_H

#include <stdbool.h>
#include <stddef.h>

#include <ev.h>

#include "buf.h"

/* Readers served at once; more are closed at once. */
#define STATUS_MAX_CLIENTS 8
/* Longest report; the rest is cut with a last line saying so. */
#define STATUS_REPORT_MAX (1024 * 1024)
/* A reader that does not take its report within this time is closed. */
#define STATUS_WRITE_TIMEOUT 5.0

/* Where sections go; ranks between them are free for new sections. */
enum status_rank {
	STATUS_RANK_DAEMON = 100,     /* version, pid, uptime, mode, listeners */
	STATUS_RANK_ACCOUNTS = 200,   /* users, their connections and links */
	STATUS_RANK_OUTBOX = 300,     /* messages queued for sending */
	STATUS_RANK_LAST_ERROR = 900, /* the last warning or error */
};

/* Append this section's lines ("key: value\n") to out. */
typedef void (*status_fn)(void *data, struct buf *out);

struct status_server;

/*
 * Listen on path. A stale socket there (nobody answers) is replaced; one
 * a running daemon answers is an error. Returns NULL with err filled.
 */
struct status_server *status_server_new(struct ev_loop *loop, const char *path, char *err, size_t errlen);
/*
 * The socket does not keep the loop alive (for a daemon whose loop must end
 * when its one client leaves, pimap-proxy --stdio).
 */
void status_server_weak(struct status_server *st);
/* Closes every reader, the socket, and removes the socket file. NULL is fine. */
void status_server_free(struct status_server *st);

/* Add a section; sections of the same rank keep the order they were added in. */
void status_add(struct status_server *st, int rank, status_fn fn, void *data);

/* The whole report, as a reader would get it. */
void status_report(const struct status_server *st, struct buf *out);

/*
 * The client side: connect to path, read the report until the daemon
 * closes (at most STATUS_REPORT_MAX bytes, within timeout seconds).
 * Returns 0, or -1 with err filled ("no daemon answers on PATH: ...").
 */
int status_fetch(const char *path, double timeout, struct buf *out, char *err, size_t errlen);

/* "45s", "3m12s", "2h05m", "3d04h": a duration for a report line. */
void status_duration(double seconds, char *out, size_t outlen);

#endif
