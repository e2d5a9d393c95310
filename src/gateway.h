/*
 * gateway.h - pimap-gateway: the P-IMAP server in front of an IMAP store.
 *
 * The server object owns the listeners, TLS credentials, the state database,
 * the device sessions and the client connections; gateway_main.c owns the
 * loop, signals and configuration loading (the same split as proxy.h).
 */
#ifndef PIMAP_GATEWAY_H
#define PIMAP_GATEWAY_H

#include <stdbool.h>

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

/*
 * A client connection that reaches the gateway through another front end
 * (the HTTPS binding, http_binding.c): fd is one end of a socketpair whose
 * other end carries what that front end took from a TLS connection. peer is
 * the real client ("addr:port", for logs and the failed-login throttle).
 * The leg counts as protected by TLS: no STARTTLS, logins allowed, never
 * PREAUTH. in_response: the store is watched between requests and the
 * events wait in the socket (gateway_conn_set_quiet). Returns the
 * connection's id, or 0 if refused (fd closed then).
 */
unsigned long gateway_attach_secured(struct gateway_server *srv, int fd, const char *peer, bool loopback,
                                     bool in_response);
/* In-response: quiet = no request open, so the device may get out-band wake-ups. Unknown ids are ignored. */
void gateway_conn_set_quiet(struct gateway_server *srv, unsigned long id, bool quiet);
/* An in-response request of connection id came from peer ("addr:port"): the device's address now. */
void gateway_conn_set_peer(struct gateway_server *srv, unsigned long id, const char *peer);

unsigned gateway_server_connection_count(const struct gateway_server *srv);
void gateway_server_dump(const struct gateway_server *srv); /* SIGUSR1: one log line per session/connection */
void gateway_server_free(struct gateway_server *srv);

#endif
