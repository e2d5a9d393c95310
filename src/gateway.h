/*
 * gateway.h - pimap-gateway: the P-IMAP server in front of an IMAP store.
 *
 * The server object owns the listeners, TLS credentials, the state database,
 * the device sessions and the client connections; gateway_main.c owns the
 * loop, signals and configuration loading (the same split as proxy.h).
 */
#ifndef PIMAP_GATEWAY_H
#define PIMAP_GATEWAY_H

#include <ev.h>

#include "gateway_config.h"

struct gateway_server;

/*
 * Create the server from a validated config: parses the store URL, opens the
 * state database, loads or generates TLS material, binds the listeners.
 * cfg is borrowed and must outlive the server (or be replaced through
 * gateway_server_reconfigure). NULL with err.
 */
struct gateway_server *gateway_server_new(struct ev_loop *loop, const struct gateway_config *cfg,
                                          char *err, size_t errlen);

/* SIGHUP: reloadable settings (limits, logging, session lifetime) apply; a warning names each other change. */
void gateway_server_reconfigure(struct gateway_server *srv, const struct gateway_config *cfg);

/*
 * SIGTERM: stop accepting, save every session's views (so that devices resume
 * without RESYNC after the restart), say BYE to clients when they have no
 * command in flight, and break the loop when all are gone or after drain_timeout.
 */
void gateway_server_drain(struct gateway_server *srv);

unsigned gateway_server_connection_count(const struct gateway_server *srv);
void gateway_server_dump(const struct gateway_server *srv); /* SIGUSR1: one log line per session/connection */
void gateway_server_free(struct gateway_server *srv);

#endif
