/*
 * proxy_send.h - how pimap-proxy sends what its SMTP listener accepts:
 * checking the account's credentials, handing each message to the
 * gateway as XDELIVER (or, in compatibility mode, to the submission
 * server directly), and the durable outbox for when that cannot be done
 * now, drained with backoff and turned into a bounce (RFC 3464) in the
 * user's INBOX when a queued message fails for good.
 *
 * Credentials. An AUTH is checked by logging in to the upstream (the
 * gateway as a plain session, never user#P<device>, so the device's
 * P-IMAP session is never touched; in compatibility mode the IMAP
 * server). When the upstream cannot be reached, only credentials that the
 * upstream accepted earlier in this process are taken, compared with an
 * HMAC under a random per-process key; anything else gets 454 (try later).
 * The password stays in memory while the user has an SMTP session or
 * queued messages, never on disk. After a restart the outbox of a user is
 * sent once that user logs in again through this proxy, by SMTP AUTH or an
 * IMAP login (sender_login_seen).
 *
 * Exactly once. Every message gets a Message-ID when it is accepted (if
 * it has none). With a gateway, a message sent again after a proxy crash
 * between the gateway's OK and the outbox update is recognised by the
 * gateway's memory of sent Message-IDs. In compatibility mode there is no
 * such memory: see docs/PROTOCOL.md section 7.
 */
#ifndef PIMAP_PROXY_SEND_H
#define PIMAP_PROXY_SEND_H

#include <stdbool.h>
#include <stddef.h>

#include <ev.h>

#include "buf.h"
#include "proxy_config.h"
#include "smtp_client.h"
#include "smtp_server.h"
#include "store_conn.h"

/* An account's IMAP connection (XDELIVER, reports, copies) is closed after this long unused. */
#define SENDER_CONN_IDLE 30.0
/* Bytes of the HMAC of credentials kept for offline checks (sasl_cred_hash). */
#define SENDER_CRED_HASH_LEN 32

struct sender;
struct sender_op;

struct sender_setup {
	struct ev_loop      *loop;
	bool                 gateway;     /* XDELIVER through the gateway; else the submission server directly */
	struct store_target  imap;        /* gateway (plain sessions) or the IMAP server; borrowed */
	struct smtp_target   submission;  /* compatibility mode; borrowed */
	const char          *state_dir;   /* the outbox lives in state_dir/outbox */
	const char          *hostname;    /* for Message-IDs and reports */
};

/*
 * Open the outbox and count what is queued. If another process holds the
 * outbox, sending still works but nothing can be queued (*err says so,
 * and a warning is logged). NULL with err on a real failure.
 */
struct sender *sender_new(const struct sender_setup *setup, const struct proxy_config *cfg, char *err,
                          size_t errlen);
void sender_reconfigure(struct sender *s, const struct proxy_config *cfg);
void sender_free(struct sender *s);
/*
 * The outbox's lines of pimap-proxy --status (a status_fn, data = the
 * sender): "outbox: N queued (B bytes), oldest AGE" or "outbox: empty",
 * then one line per account with queued messages and its next try.
 */
void sender_status(void *sender, struct buf *out);
/* Nothing in flight (no check, no message, no drain running). */
bool sender_idle(const struct sender *s);
/* Stop timers and idle connections so that the loop can end once in-flight work is done (--smtp-stdio). */
void sender_wind_down(struct sender *s);

/* Check user/password (see above). cb runs once, from the loop, unless cancelled. */
typedef void (*sender_auth_cb)(enum smtp_auth_result r, void *ctx);
struct sender_op *sender_auth(struct sender *s, const char *user, const char *password, sender_auth_cb cb,
                              void *ctx);
/* An SMTP session of user ends (it had authenticated). */
void sender_session_end(struct sender *s, const char *user);

/* An IMAP login through the proxy succeeded: the credentials are good; send the user's queue. */
void sender_login_seen(struct sender *s, const char *user, const char *password);

/*
 * Send one message for user (authenticated). msg's bytes are taken (msg is
 * left empty). cb gets the SMTP reply for the client's DATA: the server's
 * own, "250 ... queued" when it went to the outbox, or a refusal.
 */
typedef void (*sender_send_cb)(int code, const char *enhanced, const char *text, void *ctx);
struct sender_op *sender_submit(struct sender *s, const char *user, const char *from, char *const *rcpts,
                                size_t nrcpts, struct buf *msg, sender_send_cb cb, void *ctx);

/* The owner goes away: no callback. Work that matters (a message being sent or queued) goes on. */
void sender_cancel(struct sender_op *op);

#endif
