/*
 * http_tunnel.c - HTTP CONNECT through a web proxy (see http_tunnel.h).
 *
 * The answer is read with http_wire's reader (Node's http-parser) in its
 * head-only mode: a 2xx to CONNECT has no body (RFC 9110 9.3.6), and the
 * bytes after its head are the tunnel's.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gnutls/gnutls.h>

#include "http_tunnel.h"
#include "http_wire.h"
#include "url.h"

struct http_tunnel {
	const struct http_proxy *px; /* borrowed */
	char target[300];            /* host:port as the request line names it */
	struct http_reader *rd;
};

/* ------------------------------------------------------------------------ */
/* settings                                                                  */

static bool printable(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

/* The password file's first line into pw (NUL-terminated). 0, or -1 with err. */
static int read_password(const char *path, char *pw, size_t pwlen, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		set_errmsg(err, errlen, "upstream.http_proxy_password_file %s: %s", path, strerror(errno));
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		set_errmsg(err, errlen, "upstream.http_proxy_password_file %s: not a regular file", path);
		close(fd);
		return -1;
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		/* As ssh does with keys: a secret others can read is a mistake to fix, not to use. */
		set_errmsg(err, errlen, "upstream.http_proxy_password_file %s: readable by group or others (chmod 600 it)",
		           path);
		close(fd);
		return -1;
	}
	size_t n = 0;
	for (;;) {
		ssize_t r = read(fd, pw + n, pwlen - 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			set_errmsg(err, errlen, "upstream.http_proxy_password_file %s: %s", path, strerror(errno));
			close(fd);
			return -1;
		}
		if (r == 0 || memchr(pw + n, '\n', (size_t)r)) {
			n += (size_t)r;
			break;
		}
		n += (size_t)r;
		if (n == pwlen - 1) {
			set_errmsg(err, errlen, "upstream.http_proxy_password_file %s: password longer than %d bytes",
			           path, HTTP_PROXY_MAX_PASSWORD);
			close(fd);
			return -1;
		}
	}
	close(fd);
	pw[n] = '\0';
	pw[strcspn(pw, "\r\n")] = '\0';
	if (!*pw || !printable(pw)) {
		set_errmsg(err, errlen, "upstream.http_proxy_password_file %s: %s", path,
		           *pw ? "control character in the password" : "empty first line");
		return -1;
	}
	return 0;
}

int http_proxy_init(struct http_proxy *px, const char *url, const char *user, const char *password_file, char *err,
                    size_t errlen)
{
	memset(px, 0, sizeof(*px));
	char uerr[200];
	if (url_parse_http_proxy(url, px->host, sizeof(px->host), px->port, sizeof(px->port), uerr, sizeof(uerr)) < 0) {
		set_errmsg(err, errlen, "upstream.http_proxy: %s", uerr);
		return -1;
	}
	if (!*user && !*password_file)
		return 0;
	if (!*user || !*password_file) {
		set_errmsg(err, errlen, "upstream.http_proxy_user and upstream.http_proxy_password_file go together");
		return -1;
	}
	/* RFC 7617 2: the user-id cannot contain a colon. */
	if (strlen(user) > HTTP_PROXY_MAX_USER || strchr(user, ':') || !printable(user)) {
		set_errmsg(err, errlen, "upstream.http_proxy_user: at most %d characters, no colon, no control character",
		           HTTP_PROXY_MAX_USER);
		return -1;
	}
	char pw[HTTP_PROXY_MAX_PASSWORD + 2];
	if (read_password(password_file, pw, sizeof(pw), err, errlen) < 0) {
		gnutls_memset(pw, 0, sizeof(pw));
		return -1;
	}
	char plain[HTTP_PROXY_MAX_USER + 1 + sizeof(pw)];
	size_t ulen = strlen(user), plen = strlen(pw);
	memcpy(plain, user, ulen);
	plain[ulen] = ':';
	memcpy(plain + ulen + 1, pw, plen);
	gnutls_datum_t in = {(unsigned char *)plain, (unsigned)(ulen + 1 + plen)};
	gnutls_datum_t b64 = {NULL, 0};
	int rc = gnutls_base64_encode2(&in, &b64);
	gnutls_memset(pw, 0, sizeof(pw));
	gnutls_memset(plain, 0, sizeof(plain));
	if (rc < 0) {
		set_errmsg(err, errlen, "upstream.http_proxy_user: cannot encode the credentials: %s", gnutls_strerror(rc));
		return -1;
	}
	size_t n = strlen("Basic ") + b64.size + 1;
	px->authorization = xmalloc(n);
	snprintf(px->authorization, n, "Basic %.*s", (int)b64.size, (const char *)b64.data);
	gnutls_memset(b64.data, 0, b64.size);
	gnutls_free(b64.data);
	return 0;
}

void http_proxy_clear(struct http_proxy *px)
{
	secret_free(&px->authorization);
	memset(px, 0, sizeof(*px));
}

/* ------------------------------------------------------------------------ */
/* one CONNECT                                                               */

struct http_tunnel *http_tunnel_new(const struct http_proxy *px, const char *host, const char *port)
{
	struct http_tunnel *t = xcalloc(1, sizeof(*t));
	t->px = px;
	bool v6 = strchr(host, ':') != NULL;
	snprintf(t->target, sizeof(t->target), "%s%s%s:%s", v6 ? "[" : "", host, v6 ? "]" : "", port);
	struct http_limits lim = {
		.max_header_bytes = HTTP_TUNNEL_MAX_HEAD,
		.max_headers = HTTP_TUNNEL_MAX_HEADERS,
		.head_only = true,
	};
	t->rd = http_reader_new(HTTP_READER_RESPONSE, &lim);
	return t;
}

void http_tunnel_free(struct http_tunnel *t)
{
	if (!t)
		return;
	http_reader_free(t->rd);
	free(t);
}

void http_tunnel_request(const struct http_tunnel *t, struct buf *out)
{
	/* Room first, so the credentials are never left behind by a realloc. */
	buf_reserve(out, 1024 + (t->px->authorization ? strlen(t->px->authorization) : 0));
	buf_printf(out, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: pimap-proxy/" PACKAGE_VERSION "\r\n", t->target,
	           t->target);
	if (t->px->authorization)
		buf_printf(out, "Proxy-Authorization: %s\r\n", t->px->authorization);
	buf_append_str(out, "\r\n");
}

static void refused(const struct http_tunnel *t, const struct http_head *h, char *why, size_t whylen)
{
	const char *hint = "";
	if (h->status == 407 || h->status == 401) /* 401: what some proxies (tinyproxy) say to wrong credentials */
		hint = t->px->authorization ? " (it did not accept upstream.http_proxy_user and its password)"
		                            : " (set upstream.http_proxy_user and upstream.http_proxy_password_file)";
	else if (h->status == 403 || h->status == 405)
		hint = " (the web proxy does not allow CONNECT to this host and port)";
	else if (h->status >= 500)
		hint = " (the web proxy could not reach the gateway)";
	set_errmsg(why, whylen, "HTTP proxy %s:%s refused CONNECT to %s: %u %s%s", t->px->host, t->px->port, t->target,
	           h->status, h->reason, hint);
}

enum http_tunnel_result http_tunnel_feed(struct http_tunnel *t, const uint8_t *data, size_t len, size_t *used,
                                         char *why, size_t whylen)
{
	*used = 0;
	for (;;) {
		size_t n = 0;
		enum http_read_result r = http_reader_feed(t->rd, data + *used, len - *used, &n, NULL);
		*used += n;
		switch (r) {
		case HTTP_READ_NEED_MORE:
			return HTTP_TUNNEL_NEED_MORE;
		case HTTP_READ_ERROR:
			set_errmsg(why, whylen, "HTTP proxy %s:%s: bad answer to CONNECT: %s", t->px->host, t->px->port,
			           http_reader_error(t->rd));
			return HTTP_TUNNEL_REFUSED;
		case HTTP_READ_HEAD: {
			const struct http_head *h = http_reader_head(t->rd);
			if (h->status >= 200 && h->status < 300)
				return HTTP_TUNNEL_OPEN;
			if (h->status >= 200) {
				refused(t, h, why, whylen);
				return HTTP_TUNNEL_REFUSED;
			}
			continue; /* 1xx: interim; DONE follows at once (no body), then the real answer */
		}
		case HTTP_READ_DONE:
			http_reader_next(t->rd); /* the end of a 1xx */
			continue;
		}
	}
}
