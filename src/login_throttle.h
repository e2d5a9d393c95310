/*
 * login_throttle.h - failed logins counted per client address, so that a
 * stranger cannot guess passwords through the gateway (which would ask the
 * store for each guess).
 *
 * An address may have at most `limit` failures plus logins still being
 * decided (parallel guesses count before they fail) in a window of
 * `window` seconds. Addresses are keyed so that one client cannot escape
 * by changing address: IPv4 as is, IPv6 by its /64 (one customer's
 * prefix), IPv4-mapped IPv6 as the IPv4 address. The table is bounded;
 * when every slot is taken by an address with failures in its window, the
 * addresses that find no slot share one overflow slot, which throttles
 * them together (a full table never means "not throttled").
 * Pure: the caller passes the time.
 */
#ifndef PIMAP_LOGIN_THROTTLE_H
#define PIMAP_LOGIN_THROTTLE_H

#include <stdbool.h>
#include <stddef.h>

struct login_throttle;
struct login_throttle_slot;

/* window: seconds over which failures count; max_addresses: slots (>= 1). */
struct login_throttle *login_throttle_new(double window, size_t max_addresses);
void login_throttle_free(struct login_throttle *t);

/*
 * The key of a peer address: "192.0.2.1", "2001:db8:1:2::" (the /64), with
 * brackets and a ":port" suffix removed ("[::1]:143", "192.0.2.1:143").
 * Writes at most keylen bytes (NUL-terminated); an unparsable address is
 * its own key.
 */
void login_throttle_key(const char *peer, char *key, size_t keylen);

/* Refuse a login from peer now? (failures + logins under way >= limit) */
bool login_throttle_refuses(struct login_throttle *t, const char *peer, double now, long long limit);

/*
 * A store login for peer starts: it counts as under way until
 * login_throttle_end() with the returned slot (stable until then).
 */
struct login_throttle_slot *login_throttle_begin(struct login_throttle *t, const char *peer, double now);
/* The login of slot is decided (failed: a wrong password) or abandoned. */
void login_throttle_end(struct login_throttle *t, struct login_throttle_slot *slot, double now, bool failed);

#endif
