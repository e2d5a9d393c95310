/*
 * http_link.h - pimap-proxy's client side of the gateway's HTTPS binding.
 *
 * The proxy's gateway link (proxy_link.c) speaks P-IMAP over a byte
 * stream; this module gives it one (a socketpair) and carries it over
 * HTTPS, so the link does not know HTTP exists:
 *
 *   persistent   one chunked POST whose body is the link's command stream
 *                and whose chunked response is the gateway's output
 *   in-response  the link's commands go out in batch POSTs with the
 *                session cookie; between batches no connection is open.
 *                The link's IDLE is answered here; events reach it when a
 *                wake-up datagram (outband.listen) or the poll interval says
 *                there are some, through an empty POST.
 *
 * In in-response mode with outband.listen set, the module also asks the
 * gateway for wake-ups right after the link's login: XPROVISION (for the
 * device key), then PIMAP_OUTBAND_ADDRESS/FORMAT EXTENDED/CHANNEL UDP.
 * Their replies never reach the link.
 *
 * With upstream.http_proxy every HTTPS connection first asks that web proxy
 * for a tunnel (HTTP CONNECT, http_tunnel.h); the TLS to the gateway runs
 * inside it. When the HTTPS side fails before the gateway said anything,
 * the link gets "* BYE [UNAVAILABLE] <why>" in place of a greeting.
 */
#ifndef PIMAP_HTTP_LINK_H
#define PIMAP_HTTP_LINK_H

#include <stddef.h>

#include <ev.h>

#include "proxy_config.h"
#include "tlsio.h"
#include "url.h"

/* How much of one response body the module takes (after decoding). */
#define HTTP_LINK_MAX_RESPONSE (64u * 1024 * 1024)

struct http_client;

/*
 * url: the gateway (https://host:port/path, or a pimap(s):// URL with
 * upstream.binding https, path /pimap). server_name and creds as for any
 * upstream. Binds outband.listen when set. cfg is borrowed (reloadable
 * keys are read through it; http_client_reconfigure on reload). NULL with err.
 */
struct http_client *http_client_new(struct ev_loop *loop, const struct proxy_config *cfg,
                                    const struct upstream_url *url, const char *server_name,
                                    struct tls_creds *creds, const char *device_id, char *err, size_t errlen);
void http_client_reconfigure(struct http_client *hc, const struct proxy_config *cfg);
void http_client_free(struct http_client *hc);

/*
 * A new link to the gateway: returns the proxy's end of a socketpair (the
 * gateway's greeting arrives on it, as on a TCP connection), or -1 with err.
 * The module closes its end when the HTTPS side fails or the session ends
 * (401), which the link sees as a lost connection; when the proxy closes
 * its end, the module lets go of everything for it.
 */
int http_client_open(struct http_client *hc, const char *prefix, char *err, size_t errlen);
/*
 * The same for a plain session (a login without #P: the SMTP listener's
 * XDELIVER connection, proxy_send.c): the module adds no out-band setup to
 * it, and in in-response mode it ends the gateway's session with LOGOUT
 * when the proxy closes its end (nothing ever resumes a plain session).
 */
int http_client_open_plain(struct http_client *hc, const char *prefix, char *err, size_t errlen);

#endif
