/*
 * outband.h - pimap-gateway's out-band notifications.
 *
 * When a device has no live in-band connection (its session is parked, or
 * an in-response HTTPS session has no request open) and the store reports
 * an event, gateway.c calls outband_device_event(). This module applies
 * the device's PIMAP_EVENT_FILTER, limits the rate per device
 * (outband.min_interval, coalescing what comes in between), and sends on
 * the device's PIMAP_OUTBAND_CHANNEL:
 *
 *   UDP      one datagram to PIMAP_OUTBAND_ADDRESS ("IP:port" or "[v6]:port")
 *   WEBHOOK  an HTTPS POST to PIMAP_OUTBAND_ADDRESS (an https:// URL), the
 *            server's certificate verified (ntfy, UnifiedPush distributors);
 *            the host name is looked up on a helper thread (resolver.h)
 *   NONE     nothing
 *
 * if outband_policy.h allows the address (UDP: by default only the
 * device's own address; WEBHOOK: only under outband.webhook_allow)
 *
 * in PIMAP_OUTBAND_FORMAT: EMN (XML, no secret) or EXTENDED (sealed with
 * the device's key, outband_msg.h). The key is made on the device's first
 * XPROVISION over TLS and kept in the state database.
 */
#ifndef PIMAP_OUTBAND_H
#define PIMAP_OUTBAND_H

#include <stddef.h>

#include <ev.h>

#include "buf.h"
#include "gateway_config.h"
#include "gw_state.h"
#include "outband_msg.h"
#include "pimap_cmd.h"

/* Webhook POSTs under way at once; more are dropped with a warning (a wake-up is only a hint). */
#define OUTBAND_MAX_WEBHOOKS 64
/* Devices whose rate-limit state is kept; the least recently notified are forgotten first. */
#define OUTBAND_MAX_DEVICES 65536

struct outband;

/* cfg is borrowed (outband_reconfigure on reload); db too. NULL with err. */
struct outband *outband_new(struct ev_loop *loop, const struct gateway_config *cfg, struct gw_state *db,
                            char *err, size_t errlen);
void outband_reconfigure(struct outband *ob, const struct gateway_config *cfg);
void outband_free(struct outband *ob);

/*
 * An event for (user, device), which has no live in-band connection.
 * prefs are read now (channel, format, address, event filter); mailbox may
 * be NULL. Sends at once, or later within the rate limit, or not at all.
 */
void outband_device_event(struct outband *ob, const char *user, const char *device,
                          const struct pimap_prefs *prefs, enum outband_event ev, const char *mailbox);

/*
 * XPROVISION lines for the device, appended to out:
 *   * XPROVISION PIMAP_ENC_KEY (<base64 of 32 octets>)
 *   * XPROVISION PIMAP_ENC_CIPHER (AES-256-GCM)
 * The key is created on first use. Only call over TLS.
 */
void outband_provision(struct outband *ob, const char *user, const char *device, struct buf *out);

/*
 * A device's connection has logged in or (in-response HTTPS) sent a
 * request from peer ("addr:port"): UDP wake-ups may go back to that
 * address (outband_policy.h). Remembered in the state database when it
 * changes.
 */
void outband_device_seen(struct outband *ob, const char *user, const char *device, const char *peer);

/* The out-band channels offered now (XPROVISION): WEBHOOK only with an outband.webhook_allow list. */
const char *const *outband_channels(const struct outband *ob);

/*
 * What XSETPIMAPPREF may set for a device on a connection from peer
 * ("addr:port"): the offered channels and the address check. Valid while
 * ob and peer are.
 */
struct pimap_pref_policy outband_pref_policy(const struct outband *ob, const char *peer);

/* "user#Pdevice[@domain]" from the store user and the device (the account the payloads name). */
void outband_account(const char *user, const char *device, char *out, size_t outlen);

#endif
