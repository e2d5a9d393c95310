/*
 * outband_policy.c - where pimap-gateway may send out-band notifications
 * (see outband_policy.h).
 */
#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "outband_policy.h"

/* Client text quoted back in a refusal is cut to this many bytes (the NO line stays short). */
#define POLICY_ECHO_MAX 100

static const char *const channels_all[] = {"UDP", "WEBHOOK", "NONE", NULL};
static const char *const channels_no_webhook[] = {"UDP", "NONE", NULL};

static bool list_empty(char *const *list)
{
	return !list || !list[0];
}

const char *const *outband_policy_channels(char *const *webhook_allow)
{
	return list_empty(webhook_allow) ? channels_no_webhook : channels_all;
}

/* ---- webhooks ---------------------------------------------------------------- */

/*
 * A path a server could resolve to something outside the prefix it seems
 * to be under: "." or ".." segments, spelt out or percent-encoded, or an
 * encoded slash or backslash (some servers decode them before routing).
 */
static bool path_escapes(const char *path)
{
	size_t n = strcspn(path, "?");
	for (size_t i = 0; i < n; i++) {
		if (path[i] == '\\')
			return true;
		if (path[i] == '%' &&
		    (strncasecmp(path + i, "%2e", 3) == 0 || strncasecmp(path + i, "%2f", 3) == 0 ||
		     strncasecmp(path + i, "%5c", 3) == 0))
			return true;
	}
	const char *seg = path;
	while (seg < path + n) {
		const char *end = seg + strcspn(seg, "/?");
		if (end > path + n)
			end = path + n;
		size_t len = (size_t)(end - seg);
		if ((len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.'))
			return true;
		seg = end + 1;
	}
	return false;
}

static int parse_https(const char *value, struct upstream_url *url, char *err, size_t errlen)
{
	char why[200];
	/* Before url_parse, whose message would list the IMAP schemes. */
	if (strncasecmp(value, "https://", 8) != 0) {
		set_errmsg(err, errlen, "webhooks are https:// URLs");
		return -1;
	}
	if (url_parse(value, url, why, sizeof(why)) < 0) {
		set_errmsg(err, errlen, "not a URL: %s", why);
		return -1;
	}
	if (path_escapes(url->path)) {
		set_errmsg(err, errlen, "a webhook URL's path may not have \".\" or \"..\" segments or encoded dots and slashes");
		return -1;
	}
	return 0;
}

int outband_policy_webhook_entry_valid(const char *value, char *msg, size_t msglen)
{
	struct upstream_url url;
	return parse_https(value, &url, msg, msglen);
}

static bool same_host(const char *x, const char *y)
{
	struct netaddr ax, ay;
	bool lx = netaddr_parse(x, &ax), ly = netaddr_parse(y, &ay);
	if (lx || ly)
		return lx && ly && netaddr_equal(&ax, &ay);
	size_t nx = strlen(x), ny = strlen(y);
	/* A trailing dot names the same host ("example.org." is "example.org"). */
	if (nx && x[nx - 1] == '.')
		nx--;
	if (ny && y[ny - 1] == '.')
		ny--;
	return nx == ny && strncasecmp(x, y, nx) == 0;
}

int outband_policy_webhook(char *const *webhook_allow, const char *address, struct upstream_url *url,
                           bool *literal_ok, char *err, size_t errlen)
{
	char why[200];
	*literal_ok = false;
	if (list_empty(webhook_allow)) {
		set_errmsg(err, errlen, "WEBHOOK is not offered by this server (see XPROVISION)");
		return -1;
	}
	if (parse_https(address, url, why, sizeof(why)) < 0) {
		set_errmsg(err, errlen, "PIMAP_OUTBAND_ADDRESS: %s", why);
		return -1;
	}
	for (char *const *e = webhook_allow; *e; e++) {
		struct upstream_url allowed;
		if (parse_https(*e, &allowed, NULL, 0) < 0)
			continue; /* the config loader refused it already */
		if (!same_host(url->host, allowed.host) || strcmp(url->port, allowed.port) != 0 ||
		    strncmp(url->path, allowed.path, strlen(allowed.path)) != 0)
			continue;
		struct netaddr lit;
		*literal_ok = netaddr_parse(url->host, &lit);
		return 0;
	}
	set_errmsg(err, errlen, "%.*s is not under a webhook URL this server allows (outband.webhook_allow)",
	        POLICY_ECHO_MAX, address);
	return -1;
}

/* ---- UDP -------------------------------------------------------------------- */

int outband_policy_udp_entry_valid(const char *value, char *msg, size_t msglen)
{
	struct netaddr_net net;
	if (strcasecmp(value, OUTBAND_UDP_ALLOW_ANY) == 0)
		return 0;
	return netaddr_net_parse(value, &net, msg, msglen);
}

static bool udp_allowed(char *const *udp_allow, const struct netaddr *a)
{
	for (char *const *e = udp_allow; e && *e; e++) {
		struct netaddr_net net;
		if (strcasecmp(*e, OUTBAND_UDP_ALLOW_ANY) == 0)
			return true;
		if (netaddr_net_parse(*e, &net, NULL, 0) == 0 && netaddr_in_net(a, &net))
			return true;
	}
	return false;
}

/* "IP:port" / "[v6]:port" with a numeric address and a port 1..65535. */
static bool parse_udp_address(const char *address, struct netaddr *a, unsigned *port)
{
	char host[256], portstr[16];
	if (address[0] == ':' || listen_addr_parse(address, host, sizeof(host), portstr, sizeof(portstr), NULL, 0) < 0)
		return false;
	*port = (unsigned)strtoul(portstr, NULL, 10);
	return *port != 0 && netaddr_parse(host, a);
}

int outband_policy_udp(char *const *udp_allow, const char *address, const struct netaddr *device_peer,
                       struct sockaddr_storage *to, socklen_t *tolen, char *err, size_t errlen)
{
	struct netaddr a;
	unsigned port;
	if (!parse_udp_address(address, &a, &port)) {
		set_errmsg(err, errlen, "PIMAP_OUTBAND_ADDRESS must be IP:port, [IPv6]:port or an https:// URL, not %.*s",
		        POLICY_ECHO_MAX, address);
		return -1;
	}
	if (!udp_allowed(udp_allow, &a) && !(device_peer && netaddr_equal(&a, device_peer))) {
		char peer[NETADDR_TEXT_MAX] = "unknown";
		if (device_peer)
			netaddr_format(device_peer, peer, sizeof(peer));
		set_errmsg(err, errlen,
		        "UDP wake-ups go only to the address this device connects from (%s), not to %.*s "
		        "(outband.udp_allow widens this)",
		        peer, POLICY_ECHO_MAX, address);
		return -1;
	}
	memset(to, 0, sizeof(*to));
	if (a.family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)to;
		in->sin_family = AF_INET;
		in->sin_port = htons((uint16_t)port);
		memcpy(&in->sin_addr, a.a, 4);
		*tolen = sizeof(*in);
	} else {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)to;
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		memcpy(&in6->sin6_addr, a.a, 16);
		*tolen = sizeof(*in6);
	}
	return 0;
}

/* ---- the address a client sets ------------------------------------------------ */

int outband_policy_address(char *const *webhook_allow, char *const *udp_allow, const char *address,
                           const struct netaddr *peer, char *err, size_t errlen)
{
	if (!*address)
		return 0;
	if (strstr(address, "://")) {
		struct upstream_url url;
		bool literal_ok;
		return outband_policy_webhook(webhook_allow, address, &url, &literal_ok, err, errlen);
	}
	struct sockaddr_storage to;
	socklen_t tolen;
	return outband_policy_udp(udp_allow, address, peer, &to, &tolen, err, errlen);
}

bool outband_policy_peer_addr(const char *peer, struct netaddr *out)
{
	char host[256], port[16];
	return listen_addr_parse(peer, host, sizeof(host), port, sizeof(port), NULL, 0) == 0 &&
	       netaddr_parse(host, out);
}
