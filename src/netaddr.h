/*
 * netaddr.h - IP addresses as values: parse, compare, match against
 * networks (CIDR), and tell globally reachable unicast addresses from the
 * special-purpose ones (loopback, private, link-local, ...).
 *
 * An IPv4-mapped IPv6 address (::ffff:a.b.c.d, what a dual-stack socket
 * reports for an IPv4 peer) is the IPv4 address: both spellings compare
 * equal and match the same networks. Pure functions, no I/O.
 */
#ifndef PIMAP_NETADDR_H
#define PIMAP_NETADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/socket.h>

struct netaddr {
	int family;    /* AF_INET or AF_INET6 */
	uint8_t a[16]; /* network order; IPv4 in a[0..3] */
};

struct netaddr_net {
	struct netaddr addr; /* bits past the prefix are zero */
	unsigned prefix;     /* 0..32 or 0..128 */
};

/* Longest text netaddr_format writes, NUL included. */
#define NETADDR_TEXT_MAX 46

/* A numeric address, IPv6 with or without brackets; no zone id, no port. */
bool netaddr_parse(const char *text, struct netaddr *out);
/* From a socket address (AF_INET, AF_INET6); false for other families. */
bool netaddr_from_sockaddr(const struct sockaddr *sa, struct netaddr *out);
void netaddr_format(const struct netaddr *a, char *out, size_t outlen);
bool netaddr_equal(const struct netaddr *x, const struct netaddr *y);

/*
 * "10.0.0.0/8", "2001:db8::/32", or an address alone (one host). Host bits
 * set under the prefix ("10.1.2.3/8") are refused: a typo more often than
 * not. Returns 0, or -1 with err.
 */
int netaddr_net_parse(const char *text, struct netaddr_net *out, char *err, size_t errlen);
bool netaddr_in_net(const struct netaddr *a, const struct netaddr_net *net);

/*
 * NULL for a globally reachable unicast address; otherwise what it is, for
 * messages: "loopback", "private", "link-local", "unspecified",
 * "multicast", "reserved" (documentation, benchmarking, shared address
 * space and the other IANA special-purpose blocks). IPv6 forms that embed
 * an IPv4 address (NAT64 64:ff9b::/96, 6to4 2002::/16) are judged by it.
 */
const char *netaddr_special(const struct netaddr *a);

#endif
