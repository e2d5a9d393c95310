/*
 * url.c - upstream URLs and listen addresses.
 *
 * Both parsers are strict on purpose: a config typo should fail at startup
 * with a message naming the problem, not turn into a DNS lookup for
 * "mail.example.com:993x" at the first client connection.
 */
#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "url.h"

/* Longest host name or address accepted; host[] in struct upstream_url is one more. */
#define URL_MAX_HOST 255

/* Longest HTTPS path accepted; path[] in struct upstream_url is one more. */
#define URL_MAX_PATH 255

static const struct {
	const char     *name;
	enum url_scheme scheme;
	const char     *port;         /* default port */
	bool            implicit_tls;
	bool            is_gateway;
} schemes[] = {
	{"imaps", URL_IMAPS, "993", true, false},
	{"imap", URL_IMAP, "143", false, false},
	{"pimaps", URL_PIMAPS, "2993", true, true},
	{"pimap", URL_PIMAP, "2143", false, true},
	{"https", URL_HTTPS, "443", true, true},
};

#define NSCHEMES (sizeof(schemes) / sizeof(schemes[0]))

/* Write a message into err (may be NULL or errlen 0: the caller does not want it). */
static void url_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void url_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

const char *url_scheme_name(enum url_scheme scheme)
{
	for (size_t i = 0; i < NSCHEMES; i++)
		if (schemes[i].scheme == scheme)
			return schemes[i].name;
	return "unknown";
}

/*
 * Decimal port in p[0..n) into out (normalised: "0993" -> "993").
 * Returns 0, or -1 with err set. Port 0 only when allow_zero (listeners:
 * "pick any", used by tests); an upstream on port 0 is always a mistake.
 */
static int parse_port(const char *p, size_t n, bool allow_zero, char *out, size_t outlen,
                      char *err, size_t errlen)
{
	unsigned long v = 0;

	if (n == 0) {
		url_err(err, errlen, "missing port after ':'");
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9') {
			url_err(err, errlen, "invalid port '%.*s'", (int)n, p);
			return -1;
		}
		/* Checked per digit so "99999999999999999999" cannot wrap around. */
		v = v * 10 + (unsigned long)(p[i] - '0');
		if (v > 65535)
			break;
	}
	if (v > 65535 || (v == 0 && !allow_zero)) {
		url_err(err, errlen, "port '%.*s' out of range (%s..65535)", (int)n, p,
		        allow_zero ? "0" : "1");
		return -1;
	}
	if ((size_t)snprintf(out, outlen, "%lu", v) >= outlen) {
		url_err(err, errlen, "port buffer too small");
		return -1;
	}
	return 0;
}

/*
 * Check and copy a host p[0..n): a bracketed IPv6 literal ("[::1]", copied
 * without brackets), an IPv4 literal, or a DNS name. Returns 0, or -1 with
 * err set.
 */
static int parse_host(const char *p, size_t n, char *out, size_t outlen, char *err, size_t errlen)
{
	char tmp[URL_MAX_HOST + 1];
	struct in6_addr a6;
	struct in_addr a4;
	bool numeric = true;

	if (n && p[0] == '[') {
		if (n < 2 || p[n - 1] != ']') {
			url_err(err, errlen, "missing ']' after IPv6 address");
			return -1;
		}
		p++;
		n -= 2;
		if (n == 0 || n > URL_MAX_HOST) {
			url_err(err, errlen, "invalid IPv6 address '[%.*s]'", (int)n, p);
			return -1;
		}
		memcpy(tmp, p, n);
		tmp[n] = '\0';
		/* inet_pton also refuses zone ids ("%eth0"), which we cannot carry to connect(). */
		if (inet_pton(AF_INET6, tmp, &a6) != 1) {
			url_err(err, errlen, "invalid IPv6 address '[%s]'", tmp);
			return -1;
		}
	} else {
		if (n == 0) {
			url_err(err, errlen, "empty host");
			return -1;
		}
		if (n > URL_MAX_HOST) {
			url_err(err, errlen, "host name too long");
			return -1;
		}
		for (size_t i = 0; i < n; i++) {
			char c = p[i];

			if (c == ':') {
				url_err(err, errlen, "IPv6 addresses must be in brackets ([::1])");
				return -1;
			}
			if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			      (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_')) {
				url_err(err, errlen, "invalid character '%c' in host '%.*s'",
				        (c >= 0x20 && c < 0x7f) ? c : '?', (int)n, p);
				return -1;
			}
			if (c != '.' && (c < '0' || c > '9'))
				numeric = false;
		}
		memcpy(tmp, p, n);
		tmp[n] = '\0';
		/* All digits and dots is meant as an address: "10.0.0.256" must not go to DNS. */
		if (numeric && inet_pton(AF_INET, tmp, &a4) != 1) {
			url_err(err, errlen, "invalid IPv4 address '%s'", tmp);
			return -1;
		}
	}
	if (n + 1 > outlen) {
		url_err(err, errlen, "host name too long");
		return -1;
	}
	memcpy(out, tmp, n + 1);
	return 0;
}

/*
 * Split "host[:port]" / "[v6][:port]" at the port colon. Sets *hostlen to the
 * length of the host part (with brackets) and *port to the text after ':' or
 * NULL. Returns 0, or -1 with err set for junk after ']'.
 */
static int split_host_port(const char *s, size_t n, size_t *hostlen, const char **port,
                           size_t *portlen, char *err, size_t errlen)
{
	const char *colon;

	if (n && s[0] == '[') {
		const char *close = memchr(s, ']', n);

		if (!close) {
			url_err(err, errlen, "missing ']' after IPv6 address");
			return -1;
		}
		*hostlen = (size_t)(close - s) + 1;
		if (*hostlen == n) {
			*port = NULL;
			return 0;
		}
		if (s[*hostlen] != ':') {
			url_err(err, errlen, "unexpected '%.*s' after ']'", (int)(n - *hostlen), s + *hostlen);
			return -1;
		}
		*port = s + *hostlen + 1;
		*portlen = n - *hostlen - 1;
		return 0;
	}
	/* The last colon: a bare IPv6 address then fails in parse_host with a clear message. */
	colon = NULL;
	for (size_t i = n; i > 0; i--) {
		if (s[i - 1] == ':') {
			colon = s + i - 1;
			break;
		}
	}
	if (!colon) {
		*hostlen = n;
		*port = NULL;
		return 0;
	}
	*hostlen = (size_t)(colon - s);
	*port = colon + 1;
	*portlen = n - *hostlen - 1;
	return 0;
}

int url_parse(const char *s, struct upstream_url *out, char *err, size_t errlen)
{
	struct upstream_url u;
	const char *sep, *auth, *end, *port;
	size_t i, slen, authlen, hostlen, portlen = 0;

	memset(&u, 0, sizeof(u));
	if (!s || !*s) {
		url_err(err, errlen, "empty URL");
		return -1;
	}
	sep = strstr(s, "://");
	if (!sep) {
		url_err(err, errlen, "missing scheme in '%s' (expected e.g. imaps://host)", s);
		return -1;
	}
	slen = (size_t)(sep - s);
	for (i = 0; i < NSCHEMES; i++)
		if (strlen(schemes[i].name) == slen && strncasecmp(s, schemes[i].name, slen) == 0)
			break;
	if (i == NSCHEMES) {
		url_err(err, errlen, "unknown scheme '%.*s' (expected imaps, imap, pimaps, pimap or https)",
		        (int)slen, s);
		return -1;
	}
	u.scheme = schemes[i].scheme;
	u.implicit_tls = schemes[i].implicit_tls;
	u.is_gateway = schemes[i].is_gateway;

	auth = sep + 3;
	end = auth + strcspn(auth, "/?#");
	authlen = (size_t)(end - auth);
	if (memchr(auth, '@', authlen)) {
		url_err(err, errlen, "user info (user@) is not allowed in URLs: credentials never go in URLs");
		return -1;
	}
	if (split_host_port(auth, authlen, &hostlen, &port, &portlen, err, errlen) < 0)
		return -1;
	if (parse_host(auth, hostlen, u.host, sizeof(u.host), err, errlen) < 0)
		return -1;
	if (port) {
		if (parse_port(port, portlen, false, u.port, sizeof(u.port), err, errlen) < 0)
			return -1;
	} else {
		snprintf(u.port, sizeof(u.port), "%s", schemes[i].port);
	}

	if (u.scheme == URL_HTTPS) {
		if (*end == '\0') {
			strcpy(u.path, "/");
		} else if (*end != '/') {
			url_err(err, errlen, "unexpected '%s' after host", end);
			return -1;
		} else {
			/* The path goes verbatim into a request line: no blanks or controls. */
			for (const char *p = end; *p; p++) {
				if ((unsigned char)*p <= 0x20 || *p == 0x7f || *p == '#') {
					url_err(err, errlen, "invalid character in URL path");
					return -1;
				}
			}
			if (strlen(end) > URL_MAX_PATH) {
				url_err(err, errlen, "URL path too long");
				return -1;
			}
			snprintf(u.path, sizeof(u.path), "%s", end);
		}
	} else if (*end && strcmp(end, "/") != 0) {
		/* A trailing "/" is harmless habit; anything else means the URL is not what the user thinks. */
		url_err(err, errlen, "unexpected '%s' after host (only https:// URLs have a path)", end);
		return -1;
	}
	*out = u;
	return 0;
}

int listen_addr_parse(const char *s, char *host, size_t hostlen, char *port, size_t portlen,
                      char *err, size_t errlen)
{
	char h[URL_MAX_HOST + 1], pt[8];
	const char *portstr;
	size_t n, hlen, plen = 0;

	if (!s || !*s) {
		url_err(err, errlen, "empty listen address");
		return -1;
	}
	if (strstr(s, "://")) {
		url_err(err, errlen, "listen address '%s' is a URL; expected host:port", s);
		return -1;
	}
	n = strlen(s);
	if (split_host_port(s, n, &hlen, &portstr, &plen, err, errlen) < 0)
		return -1;
	if (!portstr) {
		url_err(err, errlen, "missing port in listen address '%s' (expected host:port)", s);
		return -1;
	}
	if (hlen == 0) {
		/* ":port" means loopback: listening on every interface must be asked for. */
		strcpy(h, "127.0.0.1");
	} else if (parse_host(s, hlen, h, sizeof(h), err, errlen) < 0) {
		return -1;
	}
	if (parse_port(portstr, plen, true, pt, sizeof(pt), err, errlen) < 0)
		return -1;
	if (strlen(h) + 1 > hostlen || strlen(pt) + 1 > portlen) {
		url_err(err, errlen, "listen address buffer too small");
		return -1;
	}
	strcpy(host, h);
	strcpy(port, pt);
	return 0;
}

bool host_is_ip_literal(const char *host)
{
	unsigned char addr[sizeof(struct in6_addr)];
	char tmp[URL_MAX_HOST + 1];
	size_t n;

	if (!host || !*host)
		return false;
	n = strlen(host);
	/* Accept "[::1]" too, in case a caller kept the URL spelling. */
	if (host[0] == '[' && n >= 2 && host[n - 1] == ']' && n - 2 <= URL_MAX_HOST) {
		memcpy(tmp, host + 1, n - 2);
		tmp[n - 2] = '\0';
		host = tmp;
	}
	return inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
}

/*
 * "host[:port][/]" after a scheme's "://" (rest points there; submission servers, web proxies):
 * no user info, no path. Without a port, default_port is used, or, when it
 * is NULL, the URL is refused. 0, or -1 with err.
 */
static int parse_host_port_url(const char *s, const char *rest, const char *userinfo_msg, const char *default_port,
                               char *host, size_t hostlen, char *port, size_t portlen, char *err, size_t errlen)
{
	const char *portstr = NULL;
	size_t n, hlen, plen = 0;
	char h[URL_MAX_HOST + 1], pt[8];

	n = strcspn(rest, "/?#");
	if (memchr(rest, '@', n)) {
		url_err(err, errlen, "%s", userinfo_msg);
		return -1;
	}
	if (rest[n] && strcmp(rest + n, "/") != 0) {
		url_err(err, errlen, "unexpected '%s' after host", rest + n);
		return -1;
	}
	if (split_host_port(rest, n, &hlen, &portstr, &plen, err, errlen) < 0 ||
	    parse_host(rest, hlen, h, sizeof(h), err, errlen) < 0)
		return -1;
	if (portstr) {
		if (parse_port(portstr, plen, false, pt, sizeof(pt), err, errlen) < 0)
			return -1;
	} else if (default_port) {
		snprintf(pt, sizeof(pt), "%s", default_port);
	} else {
		url_err(err, errlen, "missing port in '%s' (expected %.*s://host:port)", s, (int)(rest - 3 - s), s);
		return -1;
	}
	if (strlen(h) + 1 > hostlen || strlen(pt) + 1 > portlen) {
		url_err(err, errlen, "host name too long");
		return -1;
	}
	strcpy(host, h);
	strcpy(port, pt);
	return 0;
}

int url_parse_submission(const char *s, char *host, size_t hostlen, char *port, size_t portlen, bool *implicit_tls,
                         char *err, size_t errlen)
{
	const char *rest;

	if (!s || !*s) {
		url_err(err, errlen, "empty URL");
		return -1;
	}
	if (strncasecmp(s, "smtps://", 8) == 0) {
		*implicit_tls = true;
		rest = s + 8;
	} else if (strncasecmp(s, "smtp://", 7) == 0) {
		*implicit_tls = false;
		rest = s + 7;
	} else {
		url_err(err, errlen, "a submission server URL is smtp://host[:587] (STARTTLS) or smtps://host[:465]");
		return -1;
	}
	return parse_host_port_url(s, rest, "user info (user@) is not allowed in URLs: credentials never go in URLs",
	                           *implicit_tls ? "465" : "587", host, hostlen, port, portlen, err, errlen);
}

int url_validate_submission(const char *value, char *msg, size_t msglen)
{
	char host[URL_MAX_HOST + 1], port[8];
	bool implicit_tls;

	if (*value == '\0')
		return 0;
	return url_parse_submission(value, host, sizeof(host), port, sizeof(port), &implicit_tls, msg, msglen);
}

int url_parse_http_proxy(const char *s, char *host, size_t hostlen, char *port, size_t portlen, char *err,
                         size_t errlen)
{
	if (!s || !*s) {
		url_err(err, errlen, "empty URL");
		return -1;
	}
	if (strncasecmp(s, "https://", 8) == 0) {
		/* TLS to the web proxy itself, inside which the TLS to the gateway would run: rare, not done. */
		url_err(err, errlen, "a TLS connection to the web proxy (https://) is not supported: use http://host:port");
		return -1;
	}
	if (strncasecmp(s, "http://", 7) != 0) {
		url_err(err, errlen, "a web proxy is http://host:port");
		return -1;
	}
	/* Web proxies listen on 3128, 8080, 8888 ...: no default is right often enough to guess. */
	return parse_host_port_url(s, s + 7,
	                           "user info (user@) is not allowed in URLs: use upstream.http_proxy_user and "
	                           "upstream.http_proxy_password_file",
	                           NULL, host, hostlen, port, portlen, err, errlen);
}

int url_validate_http_proxy(const char *value, char *msg, size_t msglen)
{
	char host[URL_MAX_HOST + 1], port[8];

	if (*value == '\0')
		return 0;
	return url_parse_http_proxy(value, host, sizeof(host), port, sizeof(port), msg, msglen);
}
