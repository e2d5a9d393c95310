/*
 * outband_policy.h - where pimap-gateway may send out-band notifications.
 *
 * Any user who can log in chooses PIMAP_OUTBAND_ADDRESS; without limits
 * the gateway would POST to any URL or send datagrams to any host on their
 * behalf (server-side request forgery, a reflector). The safe thing is the
 * default:
 *
 *   WEBHOOK  only URLs under a prefix in outband.webhook_allow (empty by
 *            default: WEBHOOK is then not offered at all). A host name's
 *            addresses are used only when they are globally reachable; a
 *            loopback, private or link-local target must be named by an
 *            allow-list entry as an IP literal (https://10.1.2.3:8443/).
 *   UDP      only to the address the device's own last in-band connection
 *            came from (the wake-up goes back to where the device is), or
 *            into a network of outband.udp_allow ("any" lifts the limit).
 *
 * Checked when a client sets the address (XSETPIMAPPREF answers NO) and
 * again before every send (the configuration or the device's address may
 * have changed since). Pure functions over the configuration values.
 */
#ifndef PIMAP_OUTBAND_POLICY_H
#define PIMAP_OUTBAND_POLICY_H

#include <stdbool.h>
#include <stddef.h>

#include <sys/socket.h>

#include "netaddr.h"
#include "url.h"

/* The outband.udp_allow entry that allows every address. */
#define OUTBAND_UDP_ALLOW_ANY "any"

/* Out-band channels offered with this allow list (XPROVISION, XSETPIMAPPREF): WEBHOOK only if it names a URL. */
const char *const *outband_policy_channels(char *const *webhook_allow);

/* Config validators (struct cfg_key.validate) for one list item. */
int outband_policy_webhook_entry_valid(const char *value, char *msg, size_t msglen);
int outband_policy_udp_entry_valid(const char *value, char *msg, size_t msglen);

/*
 * A WEBHOOK address: an https:// URL under an allow-list prefix (same host,
 * same port, path starting with the entry's path; no "." or ".." path
 * segments, which a server would resolve past the prefix). On success *url
 * is the parsed URL and *literal_ok tells that its host is an IP literal the
 * allow list names, which may then be loopback or private. Returns 0, or -1
 * with err (a sentence for a tagged NO or the log).
 */
int outband_policy_webhook(char *const *webhook_allow, const char *address, struct upstream_url *url,
                           bool *literal_ok, char *err, size_t errlen);

/*
 * A UDP address "IP:port" / "[IPv6]:port" (numeric: no lookups), allowed if
 * outband.udp_allow says so or its IP is device_peer (the device's last
 * in-band address; NULL if unknown). *to is where to send. Returns 0, or -1
 * with err.
 */
int outband_policy_udp(char *const *udp_allow, const char *address, const struct netaddr *device_peer,
                       struct sockaddr_storage *to, socklen_t *tolen, char *err, size_t errlen);

/*
 * XSETPIMAPPREF PIMAP_OUTBAND_ADDRESS, judged by its form ("" is always
 * fine: nothing is sent): a value with "://" must pass
 * outband_policy_webhook, anything else outband_policy_udp with the asking
 * connection's address as the device's. Returns 0, or -1 with err.
 */
int outband_policy_address(char *const *webhook_allow, char *const *udp_allow, const char *address,
                           const struct netaddr *peer, char *err, size_t errlen);

/* The address part of a peer name "addr:port" / "[v6]:port" (as listeners print it). */
bool outband_policy_peer_addr(const char *peer, struct netaddr *out);

#endif
