/*
 * netaddr.c - IP addresses as values (see netaddr.h).
 */
#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "netaddr.h"

/* Longest text netaddr_parse looks at: an IPv6 address in brackets. */
#define NETADDR_PARSE_MAX 64

static const uint8_t v4_mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* ::ffff:a.b.c.d -> a.b.c.d */
static void unmap(struct netaddr *a)
{
	if (a->family == AF_INET6 && memcmp(a->a, v4_mapped_prefix, sizeof(v4_mapped_prefix)) == 0) {
		uint8_t v4[4];
		memcpy(v4, a->a + 12, 4);
		memset(a->a, 0, sizeof(a->a));
		memcpy(a->a, v4, 4);
		a->family = AF_INET;
	}
}

bool netaddr_parse(const char *text, struct netaddr *out)
{
	char tmp[NETADDR_PARSE_MAX];
	size_t n = strlen(text);
	if (n >= sizeof(tmp))
		return false;
	if (n >= 2 && text[0] == '[' && text[n - 1] == ']') {
		memcpy(tmp, text + 1, n - 2);
		tmp[n - 2] = '\0';
	} else {
		memcpy(tmp, text, n + 1);
	}
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, tmp, out->a) == 1) {
		out->family = AF_INET;
		return true;
	}
	if (inet_pton(AF_INET6, tmp, out->a) == 1) {
		out->family = AF_INET6;
		unmap(out);
		return true;
	}
	return false;
}

bool netaddr_from_sockaddr(const struct sockaddr *sa, struct netaddr *out)
{
	memset(out, 0, sizeof(*out));
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
		memcpy(out->a, &in->sin_addr, 4);
		out->family = AF_INET;
		return true;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
		memcpy(out->a, &in6->sin6_addr, 16);
		out->family = AF_INET6;
		unmap(out);
		return true;
	}
	return false;
}

void netaddr_format(const struct netaddr *a, char *out, size_t outlen)
{
	char text[NETADDR_TEXT_MAX] = "?";
	inet_ntop(a->family, a->a, text, sizeof(text));
	snprintf(out, outlen, "%s", text);
}

bool netaddr_equal(const struct netaddr *x, const struct netaddr *y)
{
	return x->family == y->family && memcmp(x->a, y->a, x->family == AF_INET ? 4 : 16) == 0;
}

static unsigned family_bits(int family)
{
	return family == AF_INET ? 32 : 128;
}

/* The first prefix bits of x and y agree. */
static bool prefix_equal(const uint8_t *x, const uint8_t *y, unsigned prefix)
{
	unsigned bytes = prefix / 8, bits = prefix % 8;
	if (memcmp(x, y, bytes) != 0)
		return false;
	if (bits == 0)
		return true;
	uint8_t mask = (uint8_t)(0xff << (8 - bits));
	return (x[bytes] & mask) == (y[bytes] & mask);
}

int netaddr_net_parse(const char *text, struct netaddr_net *out, char *err, size_t errlen)
{
	char tmp[NETADDR_PARSE_MAX];
	const char *slash = strchr(text, '/');
	size_t n = slash ? (size_t)(slash - text) : strlen(text);
	if (n >= sizeof(tmp)) {
		set_errmsg(err, errlen, "'%.64s...' is not an IP address or network", text);
		return -1;
	}
	memcpy(tmp, text, n);
	tmp[n] = '\0';
	memset(out, 0, sizeof(*out));
	if (!netaddr_parse(tmp, &out->addr)) {
		set_errmsg(err, errlen, "'%s' is not an IP address (a network is address/prefix, e.g. 10.0.0.0/8)", tmp);
		return -1;
	}
	/* A mapped address was written as IPv6: its prefix counts the 96 bits of ::ffff:. */
	bool mapped = out->addr.family == AF_INET && strchr(tmp, ':') != NULL;
	unsigned max = family_bits(out->addr.family);
	out->prefix = max;
	if (slash) {
		const char *p = slash + 1;
		unsigned long v = 0;
		if (!*p || strlen(p) > 3) {
			set_errmsg(err, errlen, "bad prefix length in '%s'", text);
			return -1;
		}
		for (; *p; p++) {
			if (*p < '0' || *p > '9') {
				set_errmsg(err, errlen, "bad prefix length in '%s'", text);
				return -1;
			}
			v = v * 10 + (unsigned long)(*p - '0');
		}
		if (mapped) {
			if (v < 96 || v > 128) {
				set_errmsg(err, errlen, "prefix length of '%s' must be 96..128", text);
				return -1;
			}
			v -= 96;
		}
		if (v > max) {
			set_errmsg(err, errlen, "prefix length of '%s' must be 0..%u", text, max);
			return -1;
		}
		out->prefix = (unsigned)v;
	}
	struct netaddr masked = out->addr;
	for (unsigned bit = out->prefix; bit < max; bit++)
		masked.a[bit / 8] &= (uint8_t) ~(0x80u >> (bit % 8));
	if (!netaddr_equal(&masked, &out->addr)) {
		set_errmsg(err, errlen, "'%s' has host bits set under its prefix (the network is %s/%u?)", text,
		        inet_ntop(masked.family, masked.a, tmp, sizeof(tmp)) ? tmp : "?", out->prefix);
		return -1;
	}
	return 0;
}

bool netaddr_in_net(const struct netaddr *a, const struct netaddr_net *net)
{
	return a->family == net->addr.family && prefix_equal(a->a, net->addr.a, net->prefix);
}

/* ---- special-purpose blocks (IANA IPv4/IPv6 Special-Purpose Address Registries) ---- */

struct special_block {
	uint8_t a[16];
	unsigned prefix;
	const char *what;
};

static const struct special_block special4[] = {
	{{0}, 8, "unspecified"},                 /* 0.0.0.0/8 "this network" */
	{{10}, 8, "private"},                    /* RFC 1918 */
	{{100, 64}, 10, "reserved"},             /* RFC 6598 shared address space (carrier-grade NAT) */
	{{127}, 8, "loopback"},
	{{169, 254}, 16, "link-local"},
	{{172, 16}, 12, "private"},
	{{192, 0, 0}, 24, "reserved"},           /* IETF protocol assignments */
	{{192, 0, 2}, 24, "reserved"},           /* TEST-NET-1 */
	{{192, 88, 99}, 24, "reserved"},         /* 6to4 relay anycast (deprecated) */
	{{192, 168}, 16, "private"},
	{{198, 18}, 15, "reserved"},             /* benchmarking */
	{{198, 51, 100}, 24, "reserved"},        /* TEST-NET-2 */
	{{203, 0, 113}, 24, "reserved"},         /* TEST-NET-3 */
	{{224}, 4, "multicast"},
	{{240}, 4, "reserved"},                  /* and 255.255.255.255 */
};

static const struct special_block special6[] = {
	{{0}, 128, "unspecified"},
	{{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 128, "loopback"},
	{{0}, 96, "reserved"},                                 /* IPv4-compatible (deprecated) */
	{{0, 0x64, 0xff, 0x9b, 0, 1}, 48, "private"},          /* local-use NAT64 (RFC 8215) */
	{{0x01, 0x00}, 64, "reserved"},                        /* discard-only */
	{{0x20, 0x01, 0x0d, 0xb8}, 32, "reserved"},            /* documentation */
	{{0xfc}, 7, "private"},                                /* unique local */
	{{0xfe, 0x80}, 10, "link-local"},
	{{0xfe, 0xc0}, 10, "private"},                         /* site-local (deprecated) */
	{{0xff}, 8, "multicast"},
};

static const char *special_in(const struct special_block *blocks, size_t n, const uint8_t *a)
{
	for (size_t i = 0; i < n; i++)
		if (prefix_equal(a, blocks[i].a, blocks[i].prefix))
			return blocks[i].what;
	return NULL;
}

static const uint8_t nat64_prefix[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};

const char *netaddr_special(const struct netaddr *a)
{
	if (a->family == AF_INET)
		return special_in(special4, sizeof(special4) / sizeof(special4[0]), a->a);
	const char *what = special_in(special6, sizeof(special6) / sizeof(special6[0]), a->a);
	if (what)
		return what;
	/* An IPv4 address inside: the NAT64 or 6to4 gateway would carry us to it. */
	struct netaddr inner = {.family = AF_INET};
	if (memcmp(a->a, nat64_prefix, sizeof(nat64_prefix)) == 0)
		memcpy(inner.a, a->a + 12, 4);
	else if (a->a[0] == 0x20 && a->a[1] == 0x02)
		memcpy(inner.a, a->a + 2, 4);
	else
		return NULL;
	return netaddr_special(&inner);
}
