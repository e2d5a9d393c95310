/*
 * Unit tests for netaddr.c and outband_policy.c: address parsing and
 * networks, the special-purpose blocks, and where out-band notifications
 * may go (webhook allow list, UDP to the device's own address).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include <CUnit/CUnit.h>

#include "netaddr.h"
#include "outband_policy.h"
#include "suites.h"

static struct netaddr addr(const char *text)
{
	struct netaddr a;
	memset(&a, 0, sizeof(a));
	CU_ASSERT_TRUE(netaddr_parse(text, &a));
	return a;
}

static void test_parse_format(void)
{
	struct netaddr a, b;
	char text[NETADDR_TEXT_MAX];

	a = addr("192.0.2.1");
	CU_ASSERT_EQUAL(a.family, AF_INET);
	netaddr_format(&a, text, sizeof(text));
	CU_ASSERT_STRING_EQUAL(text, "192.0.2.1");
	a = addr("[2001:db8::1]");
	CU_ASSERT_EQUAL(a.family, AF_INET6);
	netaddr_format(&a, text, sizeof(text));
	CU_ASSERT_STRING_EQUAL(text, "2001:db8::1");
	/* a dual-stack socket's spelling of an IPv4 peer is the IPv4 address */
	a = addr("::ffff:198.51.100.7");
	b = addr("198.51.100.7");
	CU_ASSERT_EQUAL(a.family, AF_INET);
	CU_ASSERT_TRUE(netaddr_equal(&a, &b));
	CU_ASSERT_FALSE(netaddr_equal(&b, &(struct netaddr){.family = AF_INET6}));
	a = addr("2001:DB8:0::1");
	b = addr("2001:db8::1");
	CU_ASSERT_TRUE(netaddr_equal(&a, &b));

	CU_ASSERT_FALSE(netaddr_parse("", &a));
	CU_ASSERT_FALSE(netaddr_parse("example.org", &a));
	CU_ASSERT_FALSE(netaddr_parse("10.0.0.256", &a));
	CU_ASSERT_FALSE(netaddr_parse("fe80::1%eth0", &a));
	CU_ASSERT_FALSE(netaddr_parse("192.0.2.1:80", &a));
	CU_ASSERT_FALSE(netaddr_parse("[::1", &a));

	struct sockaddr_in6 in6 = {.sin6_family = AF_INET6};
	inet_pton(AF_INET6, "::ffff:127.0.0.1", &in6.sin6_addr);
	CU_ASSERT_TRUE(netaddr_from_sockaddr((struct sockaddr *)&in6, &a));
	b = addr("127.0.0.1");
	CU_ASSERT_TRUE(netaddr_equal(&a, &b));
	struct sockaddr_in in = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x0a000001)};
	CU_ASSERT_TRUE(netaddr_from_sockaddr((struct sockaddr *)&in, &a));
	b = addr("10.0.0.1");
	CU_ASSERT_TRUE(netaddr_equal(&a, &b));
}

static bool in_net(const char *a_text, const char *net_text)
{
	struct netaddr_net net;
	char err[200];
	struct netaddr a = addr(a_text);
	CU_ASSERT_EQUAL_FATAL(netaddr_net_parse(net_text, &net, err, sizeof(err)), 0);
	return netaddr_in_net(&a, &net);
}

static void net_error(const char *text, const char *why)
{
	struct netaddr_net net;
	char err[200] = "";
	CU_ASSERT_EQUAL(netaddr_net_parse(text, &net, err, sizeof(err)), -1);
	if (!strstr(err, why))
		fprintf(stderr, "\n  %s: \"%s\", expected \"%s\"\n", text, err, why);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, why));
}

static void test_networks(void)
{
	CU_ASSERT_TRUE(in_net("10.1.2.3", "10.0.0.0/8"));
	CU_ASSERT_FALSE(in_net("11.1.2.3", "10.0.0.0/8"));
	CU_ASSERT_TRUE(in_net("172.31.255.255", "172.16.0.0/12"));
	CU_ASSERT_FALSE(in_net("172.32.0.0", "172.16.0.0/12"));
	CU_ASSERT_TRUE(in_net("203.0.113.9", "203.0.113.9"));      /* one address */
	CU_ASSERT_FALSE(in_net("203.0.113.10", "203.0.113.9"));
	CU_ASSERT_TRUE(in_net("8.8.8.8", "0.0.0.0/0"));
	CU_ASSERT_FALSE(in_net("2001:db8::1", "0.0.0.0/0"));        /* families never mix */
	CU_ASSERT_TRUE(in_net("2001:db8:1::5", "2001:db8::/32"));
	CU_ASSERT_FALSE(in_net("2001:db9::5", "2001:db8::/32"));
	CU_ASSERT_TRUE(in_net("2001:db8::5", "::/0"));
	CU_ASSERT_TRUE(in_net("192.0.2.200", "192.0.2.128/25"));
	CU_ASSERT_FALSE(in_net("192.0.2.100", "192.0.2.128/25"));
	/* a mapped network is the IPv4 one, its prefix counted from the 96 bits of ::ffff: */
	CU_ASSERT_TRUE(in_net("10.9.9.9", "::ffff:10.0.0.0/104"));

	net_error("10.0.0.0/33", "must be 0..32");
	net_error("2001:db8::/129", "must be 0..128");
	net_error("10.0.0.0/", "bad prefix length");
	net_error("10.0.0.0/8x", "bad prefix length");
	net_error("10.0.0.0/0008", "bad prefix length");
	net_error("10.1.2.3/8", "host bits set");
	net_error("::ffff:10.0.0.0/64", "must be 96..128");
	net_error("example.org/8", "is not an IP address");
	net_error("any", "is not an IP address");
}

static const char *special(const char *text)
{
	struct netaddr a = addr(text);
	return netaddr_special(&a);
}

static void test_special(void)
{
	static const struct {
		const char *addr, *what;
	} cases[] = {
		{"127.0.0.1", "loopback"},
		{"127.255.0.9", "loopback"},
		{"::1", "loopback"},
		{"::ffff:127.0.0.1", "loopback"},
		{"10.0.0.1", "private"},
		{"172.16.5.4", "private"},
		{"192.168.1.1", "private"},
		{"fd12:3456::1", "private"},
		{"fec0::1", "private"},
		{"169.254.169.254", "link-local"}, /* cloud metadata services live here */
		{"fe80::1", "link-local"},
		{"0.0.0.0", "unspecified"},
		{"::", "unspecified"},
		{"224.0.0.1", "multicast"},
		{"ff02::1", "multicast"},
		{"255.255.255.255", "reserved"},
		{"100.64.0.1", "reserved"},
		{"192.0.2.1", "reserved"},
		{"198.18.0.1", "reserved"},
		{"2001:db8::1", "reserved"},
		{"::10.0.0.1", "reserved"},
		{"64:ff9b::7f00:1", "loopback"},  /* NAT64 of 127.0.0.1 */
		{"64:ff9b::a00:1", "private"},    /* NAT64 of 10.0.0.1 */
		{"2002:c0a8:101::1", "private"},  /* 6to4 of 192.168.1.1 */
		{"2002:7f00:1::1", "loopback"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *got = special(cases[i].addr);
		if (!got || strcmp(got, cases[i].what) != 0)
			fprintf(stderr, "\n  %s: %s, expected %s\n", cases[i].addr, got ? got : "public", cases[i].what);
		CU_ASSERT_PTR_NOT_NULL(got);
		if (got)
			CU_ASSERT_STRING_EQUAL(got, cases[i].what);
	}
	static const char *const public[] = {"8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "192.88.98.1",
	                                     "2606:4700::1111", "2001:4860:4860::8888", "64:ff9b::808:808",
	                                     "2002:808:808::1"};
	for (size_t i = 0; i < sizeof(public) / sizeof(public[0]); i++) {
		if (special(public[i]))
			fprintf(stderr, "\n  %s: %s, expected public\n", public[i], special(public[i]));
		CU_ASSERT_PTR_NULL(special(public[i]));
	}
}

/* ---- policy ---------------------------------------------------------------- */

static char *no_list[] = {NULL};
static char *hooks[] = {"https://ntfy.example.org/", "https://push.example.net:8443/up/", "https://127.0.0.1:9443/",
                        "https://[::1]:9443/h", NULL};

static void webhook_ok(const char *url, bool want_literal)
{
	struct upstream_url u;
	bool literal = !want_literal;
	char err[300] = "";
	int rc = outband_policy_webhook(hooks, url, &u, &literal, err, sizeof(err));
	if (rc != 0)
		fprintf(stderr, "\n  %s: %s\n", url, err);
	CU_ASSERT_EQUAL(rc, 0);
	CU_ASSERT_EQUAL(literal, want_literal);
}

static void webhook_refused(char **list, const char *url, const char *why)
{
	struct upstream_url u;
	bool literal;
	char err[300] = "";
	CU_ASSERT_EQUAL(outband_policy_webhook(list, url, &u, &literal, err, sizeof(err)), -1);
	if (!strstr(err, why))
		fprintf(stderr, "\n  %s: \"%s\", expected \"%s\"\n", url, err, why);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, why));
}

static void test_webhook_allow(void)
{
	CU_ASSERT_STRING_EQUAL(outband_policy_channels(no_list)[1], "NONE");
	CU_ASSERT_PTR_NULL(outband_policy_channels(no_list)[2]);
	CU_ASSERT_STRING_EQUAL(outband_policy_channels(no_list)[0], "UDP");
	CU_ASSERT_STRING_EQUAL(outband_policy_channels(hooks)[1], "WEBHOOK");
	CU_ASSERT_STRING_EQUAL(outband_policy_channels(NULL)[0], "UDP");

	webhook_ok("https://ntfy.example.org/mytopic", false);
	webhook_ok("https://NTFY.example.org:443/mytopic?x=1", false);
	webhook_ok("https://ntfy.example.org./a", false);
	webhook_ok("https://ntfy.example.org", false);
	webhook_ok("https://push.example.net:8443/up/abc", false);
	webhook_ok("https://127.0.0.1:9443/anything", true);
	webhook_ok("https://[0:0::1]:9443/h/x", true);

	webhook_refused(no_list, "https://ntfy.example.org/t", "WEBHOOK is not offered by this server");
	webhook_refused(hooks, "https://ntfy.example.org.evil.example/t", "not under a webhook URL this server allows");
	webhook_refused(hooks, "https://evil.example/ntfy.example.org/", "not under a webhook URL");
	webhook_refused(hooks, "https://ntfy.example.org:8443/t", "not under a webhook URL");
	webhook_refused(hooks, "https://push.example.net:8443/upx", "not under a webhook URL");
	webhook_refused(hooks, "https://push.example.net/up/x", "not under a webhook URL");
	webhook_refused(hooks, "https://127.0.0.2:9443/", "not under a webhook URL");
	webhook_refused(hooks, "https://localhost:9443/", "not under a webhook URL");
	webhook_refused(hooks, "https://[::1]:9443/", "not under a webhook URL");
	webhook_refused(hooks, "https://push.example.net:8443/up/../admin", "\"..\" segments");
	webhook_refused(hooks, "https://push.example.net:8443/up/%2e%2E/admin", "encoded dots");
	webhook_refused(hooks, "https://push.example.net:8443/up/.", "\".\" or");
	webhook_refused(hooks, "https://push.example.net:8443/up/a%2fb", "encoded dots and slashes");
	webhook_refused(hooks, "https://push.example.net:8443/up/a\\b", "segments");
	webhook_refused(hooks, "http://ntfy.example.org/t", "webhooks are https:// URLs");
	webhook_refused(hooks, "https://user@ntfy.example.org/t", "user info");
	webhook_refused(hooks, "https://ntfy.example.org/t#frag", "not a URL");
	/* a long refused URL is cut in the message */
	char long_url[600], err[300];
	snprintf(long_url, sizeof(long_url), "https://x.example/%0400d", 0);
	struct upstream_url u;
	bool literal;
	CU_ASSERT_EQUAL(outband_policy_webhook(hooks, long_url, &u, &literal, err, sizeof(err)), -1);
	CU_ASSERT(strlen(err) < 200);

	char msg[200];
	CU_ASSERT_EQUAL(outband_policy_webhook_entry_valid("https://ntfy.example.org/", msg, sizeof(msg)), 0);
	CU_ASSERT_EQUAL(outband_policy_webhook_entry_valid("imaps://ntfy.example.org", msg, sizeof(msg)), -1);
	CU_ASSERT_EQUAL(outband_policy_webhook_entry_valid("https://a.example/x/../", msg, sizeof(msg)), -1);
	CU_ASSERT_EQUAL(outband_policy_webhook_entry_valid("ntfy.example.org", msg, sizeof(msg)), -1);
}

static int udp(char **allow, const char *address, const char *peer, char *err, size_t errlen,
               struct sockaddr_storage *to)
{
	struct netaddr p;
	socklen_t tolen = 0;
	if (peer)
		p = addr(peer);
	int rc = outband_policy_udp(allow, address, peer ? &p : NULL, to, &tolen, err, errlen);
	if (rc == 0)
		CU_ASSERT_EQUAL(tolen, to->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
	return rc;
}

static void test_udp(void)
{
	char *nets[] = {"198.51.100.0/24", "2001:db8::/32", NULL};
	char *any[] = {"ANY", NULL};
	struct sockaddr_storage to;
	char err[300];

	/* by default: the device's own address, whatever the port */
	CU_ASSERT_EQUAL(udp(no_list, "203.0.113.5:4000", "203.0.113.5", err, sizeof(err), &to), 0);
	CU_ASSERT_EQUAL(to.ss_family, AF_INET);
	CU_ASSERT_EQUAL(ntohs(((struct sockaddr_in *)&to)->sin_port), 4000);
	CU_ASSERT_EQUAL(udp(no_list, "[::ffff:203.0.113.5]:4000", "203.0.113.5", err, sizeof(err), &to), 0);
	CU_ASSERT_EQUAL(to.ss_family, AF_INET);
	CU_ASSERT_EQUAL(udp(no_list, "127.0.0.1:9", "127.0.0.1", err, sizeof(err), &to), 0);
	CU_ASSERT_EQUAL(udp(no_list, "[2001:db8::7]:9", "2001:db8::7", err, sizeof(err), &to), 0);
	CU_ASSERT_EQUAL(to.ss_family, AF_INET6);

	CU_ASSERT_EQUAL(udp(no_list, "203.0.113.6:4000", "203.0.113.5", err, sizeof(err), &to), -1);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "only to the address this device connects from (203.0.113.5)"));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "outband.udp_allow"));
	CU_ASSERT_EQUAL(udp(no_list, "203.0.113.5:4000", NULL, err, sizeof(err), &to), -1);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "(unknown)"));

	/* outband.udp_allow widens it */
	CU_ASSERT_EQUAL(udp(nets, "198.51.100.9:1", "203.0.113.5", err, sizeof(err), &to), 0);
	CU_ASSERT_EQUAL(udp(nets, "[2001:db8:5::1]:1", NULL, err, sizeof(err), &to), 0);
	CU_ASSERT_EQUAL(udp(nets, "198.51.101.9:1", "203.0.113.5", err, sizeof(err), &to), -1);
	CU_ASSERT_EQUAL(udp(any, "192.0.2.1:7", NULL, err, sizeof(err), &to), 0);

	/* the form: numeric, with a port */
	static const char *const bad[] = {"example.org:53", "203.0.113.5", "203.0.113.5:0", ":4000", "203.0.113.5:x",
	                                  "[::1:4000", "::1:4000", "203.0.113.5:70000"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CU_ASSERT_EQUAL(udp(any, bad[i], "203.0.113.5", err, sizeof(err), &to), -1);
		CU_ASSERT_PTR_NOT_NULL(strstr(err, "must be IP:port, [IPv6]:port or an https:// URL"));
	}

	char msg[200];
	CU_ASSERT_EQUAL(outband_policy_udp_entry_valid("any", msg, sizeof(msg)), 0);
	CU_ASSERT_EQUAL(outband_policy_udp_entry_valid("10.0.0.0/8", msg, sizeof(msg)), 0);
	CU_ASSERT_EQUAL(outband_policy_udp_entry_valid("10.0.0.1/8", msg, sizeof(msg)), -1);
	CU_ASSERT_EQUAL(outband_policy_udp_entry_valid("everywhere", msg, sizeof(msg)), -1);
}

static void test_address(void)
{
	struct netaddr peer = addr("203.0.113.5");
	char err[300];

	CU_ASSERT_EQUAL(outband_policy_address(no_list, no_list, "", &peer, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(outband_policy_address(no_list, no_list, "203.0.113.5:9", &peer, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(outband_policy_address(no_list, no_list, "203.0.113.9:9", &peer, err, sizeof(err)), -1);
	CU_ASSERT_EQUAL(outband_policy_address(no_list, no_list, "https://ntfy.example.org/t", &peer, err, sizeof(err)),
	                -1);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "WEBHOOK is not offered"));
	CU_ASSERT_EQUAL(outband_policy_address(hooks, no_list, "https://ntfy.example.org/t", &peer, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(outband_policy_address(hooks, no_list, "https://other.example/t", &peer, err, sizeof(err)), -1);
	CU_ASSERT_EQUAL(outband_policy_address(hooks, no_list, "ftp://x.example/t", &peer, err, sizeof(err)), -1);
	CU_ASSERT_EQUAL(outband_policy_address(hooks, no_list, "joe@example.org", &peer, err, sizeof(err)), -1);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "must be IP:port"));

	struct netaddr a;
	CU_ASSERT_TRUE(outband_policy_peer_addr("192.0.2.4:5555", &a));
	CU_ASSERT_TRUE(outband_policy_peer_addr("[2001:db8::4]:5555", &a));
	CU_ASSERT_EQUAL(a.family, AF_INET6);
	CU_ASSERT_FALSE(outband_policy_peer_addr("local", &a));
	CU_ASSERT_FALSE(outband_policy_peer_addr("stdio", &a));
}

void suite_outband_policy(void)
{
	ADD_SUITE("outband_policy",
	          {"netaddr: parse and format", test_parse_format},
	          {"netaddr: networks", test_networks},
	          {"netaddr: special-purpose blocks", test_special},
	          {"webhook allow list", test_webhook_allow},
	          {"UDP targets", test_udp},
	          {"XSETPIMAPPREF address", test_address});
}
