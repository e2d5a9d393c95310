/*
 * proxy.h - pimap-proxy's relay: one session per client connection, each
 * with its own upstream IMAP connection (compatibility mode of the design).
 *
 * The server object owns the listeners, the TLS credentials and the list of
 * live sessions; main.c owns the loop, signals and configuration loading.
 */
#ifndef PIMAP_PROXY_H
#define PIMAP_PROXY_H

#include <stdbool.h>

#include <ev.h>

#include "proxy_config.h"

struct proxy_server;

/*
 * Create the server from a validated config: parses the upstream URL, loads
 * or generates TLS material, binds the listeners (none in stdio mode).
 * The config is borrowed and must outlive the server (or be replaced with
 * proxy_server_reconfigure). Returns NULL with err filled.
 */
struct proxy_server *proxy_server_new(struct ev_loop *loop, const struct proxy_config *cfg,
                                      bool stdio_mode, char *err, size_t errlen);

/* Serve one client on stdin/stdout (stdio mode); the loop ends when it does. */
int proxy_server_start_stdio(struct proxy_server *srv, char *err, size_t errlen);
/* The same for one SMTP client (--smtp-stdio; the server was made in stdio mode). */
int proxy_server_start_smtp_stdio(struct proxy_server *srv, char *err, size_t errlen);

/*
 * Switch to a freshly loaded config (SIGHUP). Reloadable settings (limits,
 * logging) apply to new connections; others are compared and a warning names
 * each one that needs a restart. cfg is borrowed.
 */
void proxy_server_reconfigure(struct proxy_server *srv, const struct proxy_config *cfg);

/*
 * Stop accepting, say BYE to every client as soon as it has no command in
 * flight, and break the loop when the last session is gone or after
 * drain_timeout seconds.
 */
void proxy_server_drain(struct proxy_server *srv);

unsigned proxy_server_session_count(const struct proxy_server *srv);

/* Log one line per live session (SIGUSR1). */
void proxy_server_dump(const struct proxy_server *srv);
/* state_dir, or its default under $XDG_STATE_HOME or $HOME (malloc'd). */
char *proxy_state_dir(const struct proxy_config *cfg);

void proxy_server_free(struct proxy_server *srv);

#endif
