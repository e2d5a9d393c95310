/*
 * caps.h - what the client is told the server can do.
 *
 * The proxy relays the upstream's CAPABILITY lists but owns some layers
 * itself on the client leg (STARTTLS, COMPRESS), and some upstream
 * capabilities cannot survive a proxy (SASL channel binding, *-PLUS).
 * Pure functions over space-separated capability strings.
 */
#ifndef PIMAP_CAPS_H
#define PIMAP_CAPS_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

struct caps_client_leg {
	bool tls;           /* the client leg is TLS already */
	bool authenticated; /* the client has logged in */
	bool login_disabled;/* no LOGIN/AUTHENTICATE before STARTTLS on this leg */
	bool gateway;       /* the upstream is a pimap-gateway: its P-IMAP extensions are the proxy's */
};

/*
 * Append to out the list the client should see for the upstream list
 * `upstream` (len bytes, space-separated): drops STARTTLS,
 * COMPRESS=*, and AUTH=*-PLUS; adds STARTTLS before login on a plaintext client
 * leg, and COMPRESS=DEFLATE after login (the proxy implements it itself).
 * With login_disabled: LOGINDISABLED instead of the AUTH= mechanisms (RFC 3501 6.2.3).
 * With gateway: also drops the P-IMAP capabilities (the proxy speaks them on
 * the client's behalf), NOTIFY (refused in P-IMAP sessions), and every AUTH=
 * mechanism but PLAIN (the one the proxy takes from clients).
 */
void caps_for_client(const char *upstream, size_t len, const struct caps_client_leg *leg, struct buf *out);

/* True if the list contains cap (case-insensitive, whole token). */
bool caps_contains(const char *list, size_t len, const char *cap);

#endif
