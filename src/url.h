/*
 * url.h - upstream URLs and listen addresses.
 *
 *   imaps://host[:993]   IMAP over implicit TLS
 *   imap://host[:143]    IMAP with STARTTLS (plaintext only if explicitly allowed)
 *   pimaps://host[:2993] P-IMAP gateway over implicit TLS
 *   pimap://host[:2143]  P-IMAP gateway with STARTTLS
 *   https://host[:443][/path]  P-IMAP HTTPS binding
 * host may be a name, an IPv4 address or a bracketed IPv6 address ([::1]).
 * Listen addresses are "host:port", "[v6]:port" or ":port" (loopback).
 */
#ifndef PIMAP_URL_H
#define PIMAP_URL_H

#include <stdbool.h>
#include <stddef.h>

enum url_scheme {
	URL_IMAPS,  /* implicit TLS */
	URL_IMAP,   /* STARTTLS */
	URL_PIMAPS, /* gateway, implicit TLS */
	URL_PIMAP,  /* gateway, STARTTLS */
	URL_HTTPS,  /* gateway, HTTPS binding */
};

struct upstream_url {
	enum url_scheme scheme;
	char host[256];  /* without brackets for IPv6 */
	char port[8];    /* decimal, default filled in per scheme */
	char path[256];  /* HTTPS only; "/" when absent */
	bool implicit_tls; /* imaps, pimaps, https */
	bool is_gateway;   /* pimap, pimaps, https */
};

/* Parse s. Returns 0, or -1 with a message in err. User info (user@) is refused: credentials never go in URLs. */
int url_parse(const char *s, struct upstream_url *out, char *err, size_t errlen);

/* "imaps", "imap", ... */
const char *url_scheme_name(enum url_scheme scheme);

/*
 * Parse a listen address "host:port" / "[v6]:port" / ":port" (host defaults to
 * 127.0.0.1). Port 0..65535. Returns 0 or -1 with a message in err.
 */
int listen_addr_parse(const char *s, char *host, size_t hostlen, char *port, size_t portlen,
                      char *err, size_t errlen);

/*
 * A submission server: smtp://host[:587] (STARTTLS) or smtps://host[:465]
 * (implicit TLS). Same host syntax and checks as url_parse. 0, or -1 with err.
 */
int url_parse_submission(const char *s, char *host, size_t hostlen, char *port, size_t portlen, bool *implicit_tls,
                         char *err, size_t errlen);
/* For the config tables: "" (none) or a valid submission URL. 0, or -1 with msg. */
int url_validate_submission(const char *value, char *msg, size_t msglen);

/*
 * A web proxy for HTTP CONNECT: http://host:port (the port is required; no
 * user info, no path). 0, or -1 with err.
 */
int url_parse_http_proxy(const char *s, char *host, size_t hostlen, char *port, size_t portlen, char *err,
                         size_t errlen);
/* For the config tables: "" (none) or a valid web proxy URL. 0, or -1 with msg. */
int url_validate_http_proxy(const char *value, char *msg, size_t msglen);

/* True for an IPv4 or IPv6 address literal (used to skip SNI, which must be a name). */
bool host_is_ip_literal(const char *host);

#endif
