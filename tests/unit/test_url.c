/*
 * test_url.c - upstream URL and listen address parsing (url.c).
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "suites.h"
#include "url.h"

static void test_url_good(void)
{
	static const struct {
		const char     *in;
		enum url_scheme scheme;
		const char     *host, *port, *path;
		bool            tls, gateway;
	} cases[] = {
		{"imaps://mail.example.com", URL_IMAPS, "mail.example.com", "993", "", true, false},
		{"imap://mail.example.com", URL_IMAP, "mail.example.com", "143", "", false, false},
		{"pimaps://gw.example.com", URL_PIMAPS, "gw.example.com", "2993", "", true, true},
		{"pimap://gw.example.com", URL_PIMAP, "gw.example.com", "2143", "", false, true},
		{"https://gw.example.com", URL_HTTPS, "gw.example.com", "443", "/", true, true},
		{"imaps://mail.example.com:10993", URL_IMAPS, "mail.example.com", "10993", "", true, false},
		{"imaps://mail.example.com/", URL_IMAPS, "mail.example.com", "993", "", true, false},
		{"IMAPS://Mail.Example.COM", URL_IMAPS, "Mail.Example.COM", "993", "", true, false},
		{"imap://127.0.0.1:1143", URL_IMAP, "127.0.0.1", "1143", "", false, false},
		{"imaps://[::1]", URL_IMAPS, "::1", "993", "", true, false},
		{"imaps://[2001:db8::1]:9993", URL_IMAPS, "2001:db8::1", "9993", "", true, false},
		{"imaps://host:0993", URL_IMAPS, "host", "993", "", true, false},
		{"imaps://under_score-host", URL_IMAPS, "under_score-host", "993", "", true, false},
		{"https://gw.example.com:8443/pimap/v1", URL_HTTPS, "gw.example.com", "8443", "/pimap/v1", true, true},
		{"https://[::1]/x?y=1", URL_HTTPS, "::1", "443", "/x?y=1", true, true},
		{"pimaps://gw:65535", URL_PIMAPS, "gw", "65535", "", true, true},
	};
	struct upstream_url u;
	char err[128];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		err[0] = '\0';
		int rc = url_parse(cases[i].in, &u, err, sizeof(err));
		CU_ASSERT_EQUAL(rc, 0);
		if (rc != 0) {
			fprintf(stderr, "\n  %s: %s\n", cases[i].in, err);
			continue;
		}
		CU_ASSERT_EQUAL(u.scheme, cases[i].scheme);
		CU_ASSERT_STRING_EQUAL(u.host, cases[i].host);
		CU_ASSERT_STRING_EQUAL(u.port, cases[i].port);
		CU_ASSERT_STRING_EQUAL(u.path, cases[i].path);
		CU_ASSERT_EQUAL(u.implicit_tls, cases[i].tls);
		CU_ASSERT_EQUAL(u.is_gateway, cases[i].gateway);
	}
}

static void test_url_bad(void)
{
	static const struct {
		const char *in, *msg; /* msg: expected substring of the error */
	} cases[] = {
		{"", "empty URL"},
		{"mail.example.com", "missing scheme"},
		{"mail.example.com:993", "missing scheme"},
		{"ftp://mail.example.com", "unknown scheme 'ftp'"},
		{"imapx://h", "unknown scheme 'imapx'"},
		{"://h", "unknown scheme ''"},
		{"imaps://user@mail.example.com", "user info (user@) is not allowed"},
		{"imaps://user:pass@mail.example.com:993", "user info (user@) is not allowed"},
		{"imaps://@h", "user info"},
		{"imaps://", "empty host"},
		{"imaps://:993", "empty host"},
		{"imaps:///path", "empty host"},
		{"imaps://host:", "missing port"},
		{"imaps://host:0", "out of range"},
		{"imaps://host:65536", "out of range"},
		{"imaps://host:99999999999999999999", "out of range"},
		{"imaps://host:99x", "invalid port '99x'"},
		{"imaps://host:-1", "invalid port"},
		{"imaps://host:993/inbox", "only https:// URLs have a path"},
		{"imaps://host?x", "unexpected '?x' after host"},
		{"imaps://host#frag", "unexpected '#frag'"},
		{"imaps://ho st", "invalid character ' '"},
		{"imaps://host!", "invalid character '!'"},
		{"imaps://::1", "IPv6 addresses must be in brackets"},
		{"imaps://[::1", "missing ']'"},
		{"imaps://[::1]x", "unexpected 'x' after ']'"},
		{"imaps://[::1]:", "missing port"},
		{"imaps://[]", "invalid IPv6 address"},
		{"imaps://[mail.example.com]", "invalid IPv6 address"},
		{"imaps://[fe80::1%eth0]", "invalid IPv6 address"},
		{"imaps://10.0.0.256", "invalid IPv4 address"},
		{"imaps://1.2.3", "invalid IPv4 address"},
		{"https://h/a b", "invalid character in URL path"},
		{"https://h/a#b", "invalid character in URL path"},
		{"https://h?x", "unexpected '?x' after host"},
	};
	struct upstream_url u;
	char err[160];

	memset(&u, 0x5a, sizeof(u));
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		err[0] = '\0';
		CU_ASSERT_EQUAL(url_parse(cases[i].in, &u, err, sizeof(err)), -1);
		CU_ASSERT_PTR_NOT_NULL(strstr(err, cases[i].msg));
		if (!strstr(err, cases[i].msg))
			fprintf(stderr, "\n  %s: got '%s'\n", cases[i].in, err);
	}
	/* Failure leaves *out alone. */
	CU_ASSERT_EQUAL(u.host[0], 0x5a);
	CU_ASSERT_EQUAL(url_parse(NULL, &u, err, sizeof(err)), -1);
}

static void test_url_limits(void)
{
	struct upstream_url u;
	char in[600], err[16];
	char host[300];

	/* 255 bytes of host fit; 256 do not. */
	memset(host, 'a', 255);
	host[255] = '\0';
	snprintf(in, sizeof(in), "imaps://%s", host);
	CU_ASSERT_EQUAL(url_parse(in, &u, NULL, 0), 0);
	CU_ASSERT_EQUAL(strlen(u.host), 255);
	snprintf(in, sizeof(in), "imaps://%sa", host);
	CU_ASSERT_EQUAL(url_parse(in, &u, NULL, 0), -1);

	/* Long path: 255 bytes fit. */
	memset(host, 'p', 254);
	host[254] = '\0';
	snprintf(in, sizeof(in), "https://h/%s", host);
	CU_ASSERT_EQUAL(url_parse(in, &u, NULL, 0), 0);
	CU_ASSERT_EQUAL(strlen(u.path), 255);
	snprintf(in, sizeof(in), "https://h/%sp", host);
	CU_ASSERT_EQUAL(url_parse(in, &u, NULL, 0), -1);

	/* A small error buffer is truncated, not overrun. */
	CU_ASSERT_EQUAL(url_parse("ftp://x", &u, err, sizeof(err)), -1);
	CU_ASSERT_EQUAL(strlen(err), sizeof(err) - 1);
}

static void test_scheme_name(void)
{
	CU_ASSERT_STRING_EQUAL(url_scheme_name(URL_IMAPS), "imaps");
	CU_ASSERT_STRING_EQUAL(url_scheme_name(URL_IMAP), "imap");
	CU_ASSERT_STRING_EQUAL(url_scheme_name(URL_PIMAPS), "pimaps");
	CU_ASSERT_STRING_EQUAL(url_scheme_name(URL_PIMAP), "pimap");
	CU_ASSERT_STRING_EQUAL(url_scheme_name(URL_HTTPS), "https");
	CU_ASSERT_STRING_EQUAL(url_scheme_name((enum url_scheme)99), "unknown");
}

static void test_listen_good(void)
{
	static const struct {
		const char *in, *host, *port;
	} cases[] = {
		{"127.0.0.1:1143", "127.0.0.1", "1143"},
		{"0.0.0.0:143", "0.0.0.0", "143"},
		{":1993", "127.0.0.1", "1993"},
		{"[::1]:1143", "::1", "1143"},
		{"[::]:993", "::", "993"},
		{"localhost:0", "localhost", "0"},
		{"127.0.0.1:65535", "127.0.0.1", "65535"},
		{"host:00143", "host", "143"},
	};
	char host[64], port[8], err[128];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		err[0] = '\0';
		int rc = listen_addr_parse(cases[i].in, host, sizeof(host), port, sizeof(port), err,
		                           sizeof(err));
		CU_ASSERT_EQUAL(rc, 0);
		if (rc != 0) {
			fprintf(stderr, "\n  %s: %s\n", cases[i].in, err);
			continue;
		}
		CU_ASSERT_STRING_EQUAL(host, cases[i].host);
		CU_ASSERT_STRING_EQUAL(port, cases[i].port);
	}
}

static void test_listen_bad(void)
{
	static const struct {
		const char *in, *msg;
	} cases[] = {
		{"", "empty listen address"},
		{"127.0.0.1", "missing port"},
		{"[::1]", "missing port"},
		{"127.0.0.1:", "missing port"},
		{"127.0.0.1:65536", "out of range"},
		{"127.0.0.1:http", "invalid port"},
		{"::1:143", "IPv6 addresses must be in brackets"},
		{"[::1]143", "unexpected '143' after ']'"},
		{"[::1:143", "missing ']'"},
		{"[zz]:143", "invalid IPv6 address"},
		{"*:143", "invalid character '*'"},
		{"300.1.1.1:143", "invalid IPv4 address"},
		{"imap://h:143", "is a URL; expected host:port"},
	};
	char host[64], port[8], err[128];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		err[0] = '\0';
		strcpy(host, "unchanged");
		CU_ASSERT_EQUAL(listen_addr_parse(cases[i].in, host, sizeof(host), port, sizeof(port),
		                                  err, sizeof(err)), -1);
		CU_ASSERT_PTR_NOT_NULL(strstr(err, cases[i].msg));
		if (!strstr(err, cases[i].msg))
			fprintf(stderr, "\n  %s: got '%s'\n", cases[i].in, err);
		CU_ASSERT_STRING_EQUAL(host, "unchanged");
	}
	CU_ASSERT_EQUAL(listen_addr_parse(NULL, host, sizeof(host), port, sizeof(port), NULL, 0), -1);
	/* Output buffers too small are an error, not an overrun. */
	CU_ASSERT_EQUAL(listen_addr_parse("localhost:143", host, 5, port, sizeof(port), err,
	                                  sizeof(err)), -1);
	CU_ASSERT_EQUAL(listen_addr_parse("localhost:143", host, sizeof(host), port, 3, err,
	                                  sizeof(err)), -1);
	CU_ASSERT_EQUAL(listen_addr_parse("localhost:143", host, sizeof(host), port, 4, err,
	                                  sizeof(err)), 0);
}

static void test_ip_literal(void)
{
	CU_ASSERT_TRUE(host_is_ip_literal("127.0.0.1"));
	CU_ASSERT_TRUE(host_is_ip_literal("::1"));
	CU_ASSERT_TRUE(host_is_ip_literal("2001:db8::1"));
	CU_ASSERT_TRUE(host_is_ip_literal("::ffff:192.0.2.1"));
	CU_ASSERT_TRUE(host_is_ip_literal("[::1]"));
	CU_ASSERT_FALSE(host_is_ip_literal("mail.example.com"));
	CU_ASSERT_FALSE(host_is_ip_literal("localhost"));
	CU_ASSERT_FALSE(host_is_ip_literal("1.2.3"));
	CU_ASSERT_FALSE(host_is_ip_literal("256.1.1.1"));
	CU_ASSERT_FALSE(host_is_ip_literal(""));
	CU_ASSERT_FALSE(host_is_ip_literal(NULL));
	CU_ASSERT_FALSE(host_is_ip_literal("[]"));
}

static void test_http_proxy(void)
{
	static const struct {
		const char *in, *host, *port;
	} good[] = {
		{"http://proxy.example.com:3128", "proxy.example.com", "3128"},
		{"HTTP://127.0.0.1:8080/", "127.0.0.1", "8080"},
		{"http://[::1]:8888", "::1", "8888"},
	};
	static const struct {
		const char *in, *msg;
	} bad[] = {
		{"", "empty URL"},
		{"proxy:3128", "http://host:port"},
		{"socks5://proxy:1080", "http://host:port"},
		{"https://proxy:3128", "not supported"},
		{"http://proxy", "missing port"},
		{"http://user:pw@proxy:3128", "upstream.http_proxy_user"},
		{"http://proxy:3128/path", "unexpected '/path'"},
		{"http://proxy:0", "out of range"},
		{"http://::1:3128", "brackets"},
	};
	char host[64], port[8], err[160];
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		CU_ASSERT_EQUAL(url_parse_http_proxy(good[i].in, host, sizeof(host), port, sizeof(port), err, sizeof(err)), 0);
		CU_ASSERT_STRING_EQUAL(host, good[i].host);
		CU_ASSERT_STRING_EQUAL(port, good[i].port);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		CU_ASSERT_EQUAL(url_parse_http_proxy(bad[i].in, host, sizeof(host), port, sizeof(port), err, sizeof(err)), -1);
		CU_ASSERT_PTR_NOT_NULL(strstr(err, bad[i].msg));
		if (!strstr(err, bad[i].msg))
			fprintf(stderr, "\n  %s: got '%s'\n", bad[i].in, err);
	}
	CU_ASSERT_EQUAL(url_validate_http_proxy("", err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(url_validate_http_proxy("http://p", err, sizeof(err)), -1);
}

void suite_url(void)
{
	ADD_SUITE("url",
	          {"url good", test_url_good},
	          {"url bad", test_url_bad},
	          {"url limits", test_url_limits},
	          {"scheme names", test_scheme_name},
	          {"listen good", test_listen_good},
	          {"listen bad", test_listen_bad},
	          {"ip literal", test_ip_literal},
	          {"http proxy", test_http_proxy});
}
