/*
 * http_tunnel.h - reaching the gateway's HTTPS binding through a web proxy
 * with HTTP CONNECT (RFC 9110 9.3.6), for networks that let only web
 * traffic out (upstream.http_proxy).
 *
 * The web proxy only relays bytes: the TLS session to the gateway runs
 * inside the tunnel, end to end, and the gateway's certificate is verified
 * exactly as without a proxy. The optional Proxy-Authorization (Basic,
 * RFC 7617) is the one secret here: built once from
 * upstream.http_proxy_user and the password file, never logged, wiped
 * when the settings are cleared.
 *
 * The tunnel itself is pure: the CONNECT request to write, then the web
 * proxy's answer fed in any split until the tunnel is open or refused. No
 * sockets, no libev, no logging (http_link.c drives it).
 */
#ifndef PIMAP_HTTP_TUNNEL_H
#define PIMAP_HTTP_TUNNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* The web proxy's answer to CONNECT: head bytes and header lines. */
#define HTTP_TUNNEL_MAX_HEAD 16384
#define HTTP_TUNNEL_MAX_HEADERS 100
/* Longest proxy user name and password (the password file's first line). */
#define HTTP_PROXY_MAX_USER 256
#define HTTP_PROXY_MAX_PASSWORD 1024

/* upstream.http_proxy and its credentials, read once at startup. */
struct http_proxy {
	char host[256];
	char port[8];
	char *authorization; /* "Basic <base64(user:password)>", or NULL: secret */
};

/*
 * url: http://host:port. user and password_file: both "" (no
 * Proxy-Authorization) or both set; the file's first line is the password
 * (a final CR LF or LF is not part of it) and the file must not be
 * readable by group or others. 0, or -1 with err (px is then clear).
 */
int http_proxy_init(struct http_proxy *px, const char *url, const char *user, const char *password_file, char *err,
                    size_t errlen);
/* Wipe and free the credentials. */
void http_proxy_clear(struct http_proxy *px);

enum http_tunnel_result {
	HTTP_TUNNEL_NEED_MORE, /* all input taken; the answer's head is not complete */
	HTTP_TUNNEL_OPEN,      /* 2xx: bytes after *used belong to the tunnel */
	HTTP_TUNNEL_REFUSED,   /* another status, or not HTTP: why says so */
};

struct http_tunnel;

/* One CONNECT to host:port (the gateway) through px (borrowed: outlives the tunnel). */
struct http_tunnel *http_tunnel_new(const struct http_proxy *px, const char *host, const char *port);
void http_tunnel_free(struct http_tunnel *t);
/*
 * Append the CONNECT request to out. It may hold the credentials: the
 * caller writes it to the socket only and frees out with buf_free_secret.
 */
void http_tunnel_request(const struct http_tunnel *t, struct buf *out);
/* Feed the web proxy's answer; *used is what was taken. */
enum http_tunnel_result http_tunnel_feed(struct http_tunnel *t, const uint8_t *data, size_t len, size_t *used,
                                         char *why, size_t whylen);

#endif
