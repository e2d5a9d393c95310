/*
 * http_binding.h - pimap-gateway's HTTPS binding (draft Appendix A).
 *
 * The binding terminates HTTPS and hands the IMAP byte stream to an
 * ordinary gateway connection through a socketpair
 * (gateway_attach_secured): gateway.c does not know HTTP exists.
 *
 *   persistent   POST with Transfer-Encoding: chunked. The request body is
 *                the client's command stream and the chunked response the
 *                server's, pushed events included (IDLE works). One HTTP
 *                request = one gateway connection.
 *   in-response  POST with Content-Length: one batch of commands. The
 *                response carries their replies and every event pending,
 *                and the gateway connection stays, keyed by a session
 *                cookie, watching the store until the next request.
 *
 * docs/PROTOCOL.md section 7 has the wire rules and status codes.
 */
#ifndef PIMAP_HTTP_BINDING_H
#define PIMAP_HTTP_BINDING_H

#include <stddef.h>

#include <ev.h>

#include "gateway_config.h"
#include "tlsio.h"

/* The session cookie's name. */
#define HTTP_SESSION_COOKIE "PIMAPSESSION"

struct gateway_server;
struct http_binding;

/*
 * Bind listen.https (nothing, *out = NULL, when it is "none"). cfg and
 * creds are borrowed (creds referenced). Returns 0, or -1 with err.
 */
int http_binding_new(struct ev_loop *loop, struct gateway_server *gw, const struct gateway_config *cfg,
                     struct tls_creds *creds, struct http_binding **out, char *err, size_t errlen);
void http_binding_reconfigure(struct http_binding *hb, const struct gateway_config *cfg);
/* SIGTERM: stop accepting; requests in progress end with their gateway connections. */
void http_binding_drain(struct http_binding *hb);
void http_binding_free(struct http_binding *hb);

#endif
