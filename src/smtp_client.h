/*
 * smtp_client.h - one SMTP submission transaction, asynchronous under libev.
 *
 * Connects to a submission server (implicit TLS, or STARTTLS which is
 * required unless the target allows plaintext; the certificate is always
 * verified), says EHLO, authenticates with the user's own credentials
 * (AUTH PLAIN, or LOGIN when PLAIN is not offered), sends MAIL FROM, the
 * RCPT TOs and DATA (pipelined when the server offers PIPELINING), the
 * message, and reports the outcome once. Replies are read with the pure
 * parser of smtp_reply.h.
 *
 * All or nothing: if any recipient is refused the message is not sent to
 * the others either (the transaction is abandoned before the final dot),
 * so the one outcome describes the whole message.
 */
#ifndef PIMAP_SMTP_CLIENT_H
#define PIMAP_SMTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "tlsio.h"
#include "xdeliver.h"

/* How long the server may take to answer DATA's final dot (RFC 5321 4.5.3.2.6: 10 minutes). */
#define SMTP_CLIENT_DATA_END_FACTOR 2.0 /* times the reply timeout */

/* Where the submission server is; borrowed, must outlive the transactions. */
struct smtp_target {
	char              host[256];
	char              port[8];
	bool              implicit_tls;     /* smtps:// */
	bool              allow_plaintext;  /* smtp:// may go on without STARTTLS */
	const char       *server_name;      /* to verify; host when NULL/"" */
	struct tls_creds *creds;            /* client credentials (trust anchors) */
	double            connect_timeout;  /* TCP, TLS and the greeting */
	double            reply_timeout;    /* each later reply (the final dot gets twice this) */
	const char       *helo_name;        /* our EHLO name */
};

enum smtp_send_status {
	SMTP_SEND_OK,        /* the server accepted the message (2xx after the final dot) */
	SMTP_SEND_REJECTED,  /* the server refused (4xx/5xx, see reply): nothing was delivered */
	SMTP_SEND_FAILED,    /* no connection, TLS, AUTH mechanism or protocol failure before the
	                        final dot: nothing was delivered (why says what) */
	SMTP_SEND_UNKNOWN,   /* the connection broke after the final dot was written and before
	                        the server answered: it may or may not have accepted the message */
};

struct smtp_send_result {
	enum smtp_send_status status;
	struct smtp_outcome   reply;   /* OK, REJECTED: the server's reply */
	char                  why[256];/* FAILED, UNKNOWN: what went wrong */
};

struct smtp_send_req {
	const char        *user;       /* AUTH as this user (NULL: no AUTH) */
	const char        *password;
	const char        *mail_from;  /* reverse path without <>; "" = null sender */
	const char *const *rcpts;      /* forward paths without <> */
	size_t             nrcpts;
	const uint8_t     *msg;        /* the message (any line ends; made CRLF and dot-stuffed) */
	size_t             msg_len;
};

struct smtp_client;

/* The outcome, once. The client is freed after this returns. */
typedef void (*smtp_send_cb)(struct smtp_client *c, const struct smtp_send_result *r, void *ctx);
/* Called right before the final dot is written (the message may be accepted from then on). */
typedef void (*smtp_before_dot_cb)(void *ctx);

/*
 * Start one transaction. Everything in req is copied (the password is
 * wiped after AUTH). before_dot may be NULL. Never NULL: an immediate
 * failure is reported through done from the loop.
 */
struct smtp_client *smtp_client_send(struct ev_loop *loop, const struct smtp_target *target,
                                     const struct smtp_send_req *req, const char *log_prefix,
                                     smtp_before_dot_cb before_dot, smtp_send_cb done, void *ctx);

/* Abandon the transaction (before the final dot the server discards it); no callback after this. */
void smtp_client_cancel(struct smtp_client *c);

/* "smtp://host:port" or "smtps://host:port" into target's host, port and implicit_tls. 0 or -1 with err. */
int smtp_target_from_url(const char *url, struct smtp_target *target, char *err, size_t errlen);

#endif
