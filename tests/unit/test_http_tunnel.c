/*
 * test_http_tunnel.c - HTTP CONNECT through a web proxy (http_tunnel.c):
 * the settings (URL, user, password file and its permissions), the
 * request with and without Proxy-Authorization, and the web proxy's answer
 * fed whole and byte by byte: 2xx opens the tunnel with the bytes after
 * the head left for TLS, 1xx is skipped, refusals and garbage say why.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "http_tunnel.h"
#include "suites.h"

/* A password file with the given content and mode; returns its path (static buffer). */
static const char *pw_file(const char *content, mode_t mode)
{
	static char path[64];
	snprintf(path, sizeof(path), "/tmp/pimap-unit-pw.%ld", (long)getpid());
	unlink(path);
	FILE *f = fopen(path, "w");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	fputs(content, f);
	fclose(f);
	chmod(path, mode);
	return path;
}

static void test_settings(void)
{
	struct http_proxy px;
	char err[300];
	CU_ASSERT_EQUAL(http_proxy_init(&px, "http://127.0.0.1:3128", "", "", err, sizeof(err)), 0);
	CU_ASSERT_STRING_EQUAL(px.host, "127.0.0.1");
	CU_ASSERT_STRING_EQUAL(px.port, "3128");
	CU_ASSERT_PTR_NULL(px.authorization);
	http_proxy_clear(&px);

	/* "bob:s3cret" in base64; the line end is not part of the password */
	CU_ASSERT_EQUAL(http_proxy_init(&px, "http://p:8080", "bob", pw_file("s3cret\r\nignored\n", 0600), err,
	                                sizeof(err)), 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(px.authorization);
	CU_ASSERT_STRING_EQUAL(px.authorization, "Basic Ym9iOnMzY3JldA==");
	http_proxy_clear(&px);
	CU_ASSERT_PTR_NULL(px.authorization);

	static const struct {
		const char *url, *user, *content;
		mode_t mode;
		const char *msg;
	} bad[] = {
		{"http://p", "", NULL, 0, "missing port"},
		{"http://p:1", "bob", NULL, 0, "go together"},
		{"http://p:1", "bo:b", "x\n", 0600, "no colon"},
		{"http://p:1", "bob", "s3cret\n", 0644, "readable by group or others"},
		{"http://p:1", "bob", "s3cret\n", 0640, "readable by group or others"},
		{"http://p:1", "bob", "\n", 0600, "empty first line"},
		{"http://p:1", "bob", "", 0600, "empty first line"},
		{"http://p:1", "bob", "a\tb\n", 0600, "control character"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *file = bad[i].content ? pw_file(bad[i].content, bad[i].mode) : "";
		err[0] = '\0';
		CU_ASSERT_EQUAL(http_proxy_init(&px, bad[i].url, bad[i].user, file, err, sizeof(err)), -1);
		CU_ASSERT_PTR_NOT_NULL(strstr(err, bad[i].msg));
		if (!strstr(err, bad[i].msg))
			fprintf(stderr, "\n  case %zu: got '%s'\n", i, err);
		CU_ASSERT_PTR_NULL(px.authorization);
	}
	/* a password longer than the limit */
	char *big = malloc(HTTP_PROXY_MAX_PASSWORD + 10);
	memset(big, 'x', HTTP_PROXY_MAX_PASSWORD + 5);
	big[HTTP_PROXY_MAX_PASSWORD + 5] = '\0';
	CU_ASSERT_EQUAL(http_proxy_init(&px, "http://p:1", "bob", pw_file(big, 0600), err, sizeof(err)), -1);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "longer than"));
	big[HTTP_PROXY_MAX_PASSWORD] = '\0';
	CU_ASSERT_EQUAL(http_proxy_init(&px, "http://p:1", "bob", pw_file(big, 0600), err, sizeof(err)), 0);
	http_proxy_clear(&px);
	free(big);
	CU_ASSERT_EQUAL(http_proxy_init(&px, "http://p:1", "bob", "/nonexistent/pw", err, sizeof(err)), -1);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "No such file"));
	unlink(pw_file("", 0600));
}

static void test_request(void)
{
	struct http_proxy px = {.host = "p", .port = "1", .authorization = NULL};
	struct buf b;
	buf_init(&b, 0);
	struct http_tunnel *t = http_tunnel_new(&px, "gw.example", "443");
	http_tunnel_request(t, &b);
	char *s = buf_str(&b);
	CU_ASSERT_STRING_EQUAL(s, "CONNECT gw.example:443 HTTP/1.1\r\nHost: gw.example:443\r\n"
	                          "User-Agent: pimap-proxy/" PACKAGE_VERSION "\r\n\r\n");
	free(s);
	http_tunnel_free(t);

	char auth[] = "Basic Ym9iOnMzY3JldA==";
	px.authorization = auth;
	buf_clear(&b);
	t = http_tunnel_new(&px, "::1", "8443");
	http_tunnel_request(t, &b);
	s = buf_str(&b);
	CU_ASSERT_PTR_NOT_NULL(strstr(s, "CONNECT [::1]:8443 HTTP/1.1\r\nHost: [::1]:8443\r\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(s, "\r\nProxy-Authorization: Basic Ym9iOnMzY3JldA==\r\n\r\n"));
	free(s);
	http_tunnel_free(t);
	buf_free_secret(&b);
}

/* Feed answer whole (bytewise false) or byte by byte; returns the result and the bytes taken. */
static enum http_tunnel_result feed(const struct http_proxy *px, const char *answer, bool bytewise, size_t *taken,
                                   char *why, size_t whylen)
{
	struct http_tunnel *t = http_tunnel_new(px, "gw", "443");
	size_t len = strlen(answer), off = 0;
	enum http_tunnel_result r = HTTP_TUNNEL_NEED_MORE;
	while (off < len) {
		size_t give = bytewise ? 1 : len - off, used = 0;
		r = http_tunnel_feed(t, (const uint8_t *)answer + off, give, &used, why, whylen);
		off += used;
		if (r != HTTP_TUNNEL_NEED_MORE)
			break;
		CU_ASSERT_EQUAL(used, give); /* nothing is left behind while waiting */
	}
	http_tunnel_free(t);
	*taken = off;
	return r;
}

static void test_answers(void)
{
	struct http_proxy px = {.host = "127.0.0.1", .port = "3128", .authorization = NULL};
	static const struct {
		const char *answer;
		enum http_tunnel_result result;
		size_t head;     /* OPEN: bytes of the head */
		const char *why; /* REFUSED: a part of the reason */
	} cases[] = {
		{"HTTP/1.1 200 Connection established\r\n\r\n\x16\x03\x01 tls", HTTP_TUNNEL_OPEN, 39, NULL},
		{"HTTP/1.0 200 OK\r\nContent-Length: 0\r\nProxy-Agent: x\r\n\r\nXYZ", HTTP_TUNNEL_OPEN, 54, NULL},
		{"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\nrest", HTTP_TUNNEL_OPEN, 44, NULL},
		{"HTTP/1.1 200 OK\r\n", HTTP_TUNNEL_NEED_MORE, 0, NULL},
		{"HTTP/1.0 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"x\"\r\n\r\n<html>",
		 HTTP_TUNNEL_REFUSED, 0,
		 "refused CONNECT to gw:443: 407 Proxy Authentication Required (set upstream.http_proxy_user"},
		{"HTTP/1.1 403 Access violation\r\nContent-Length: 5\r\n\r\nnope!", HTTP_TUNNEL_REFUSED, 0,
		 "HTTP proxy 127.0.0.1:3128 refused CONNECT to gw:443: 403 Access violation (the web proxy does not allow"},
		{"HTTP/1.1 502 Bad Gateway\r\n\r\n", HTTP_TUNNEL_REFUSED, 0, "502 Bad Gateway (the web proxy could not reach"},
		{"HTTP/1.1 500 Unable to connect\r\n\r\n", HTTP_TUNNEL_REFUSED, 0, "500 Unable to connect"},
		{"HTTP/1.1 302 Found\r\nLocation: http://login/\r\n\r\n", HTTP_TUNNEL_REFUSED, 0, "302 Found"},
		{"SSH-2.0-OpenSSH_9.2\r\n", HTTP_TUNNEL_REFUSED, 0, "bad answer to CONNECT"},
		{"HTTP/2.0 200 OK\r\n\r\n", HTTP_TUNNEL_REFUSED, 0, "bad answer to CONNECT"},
	};
	char why[400];
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		for (int bytewise = 0; bytewise < 2; bytewise++) {
			size_t taken = 0;
			why[0] = '\0';
			enum http_tunnel_result r = feed(&px, cases[i].answer, bytewise, &taken, why, sizeof(why));
			CU_ASSERT_EQUAL(r, cases[i].result);
			if (r != cases[i].result)
				fprintf(stderr, "\n  case %zu (%s): got %d: %s\n", i, bytewise ? "bytewise" : "whole", (int)r, why);
			if (cases[i].result == HTTP_TUNNEL_OPEN)
				CU_ASSERT_EQUAL(taken, cases[i].head);
			if (cases[i].why) {
				CU_ASSERT_PTR_NOT_NULL(strstr(why, cases[i].why));
				if (!strstr(why, cases[i].why))
					fprintf(stderr, "\n  case %zu: why '%s'\n", i, why);
			}
		}
	}
	/* 407 with credentials configured: they were not accepted */
	char auth[] = "Basic eDp5";
	px.authorization = auth;
	size_t taken;
	CU_ASSERT_EQUAL(feed(&px, "HTTP/1.1 407 Proxy Authentication Required\r\n\r\n", false, &taken, why, sizeof(why)),
	                HTTP_TUNNEL_REFUSED);
	CU_ASSERT_PTR_NOT_NULL(strstr(why, "did not accept upstream.http_proxy_user"));
	CU_ASSERT_EQUAL(feed(&px, "HTTP/1.1 401 Unauthorized\r\n\r\n", true, &taken, why, sizeof(why)), HTTP_TUNNEL_REFUSED);
	CU_ASSERT_PTR_NOT_NULL(strstr(why, "401 Unauthorized (it did not accept upstream.http_proxy_user"));
	CU_ASSERT_PTR_NULL(strstr(why, "eDp5")); /* the credentials are in no message */
	/* a header flood ends at the head limit */
	struct buf big;
	buf_init(&big, 0);
	buf_append_str(&big, "HTTP/1.1 200 OK\r\n");
	while (buf_len(&big) < HTTP_TUNNEL_MAX_HEAD + 100)
		buf_append_str(&big, "X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
	char *s = buf_str(&big);
	CU_ASSERT_EQUAL(feed(&px, s, false, &taken, why, sizeof(why)), HTTP_TUNNEL_REFUSED);
	free(s);
	buf_free(&big);
}

void suite_http_tunnel(void)
{
	ADD_SUITE("http_tunnel",
	          {"settings", test_settings},
	          {"request", test_request},
	          {"answers", test_answers});
}
