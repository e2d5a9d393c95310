/*
 * proxy_smtp.h - pimap-proxy's SMTP submission listener: sockets (plain
 * with STARTTLS, implicit TLS) or stdin/stdout (--smtp-stdio), one
 * connection object per client driving the pure state machine of
 * smtp_server.h, and proxy_send.h behind it for credentials, sending and
 * the outbox.
 *
 * proxy.c creates it next to the IMAP listeners (a narrow hook); its
 * connections are counted apart from the IMAP sessions.
 */
#ifndef PIMAP_PROXY_SMTP_H
#define PIMAP_PROXY_SMTP_H

#include <stdbool.h>
#include <stddef.h>

#include <ev.h>

#include "http_link.h"
#include "proxy_config.h"
#include "tlsio.h"
#include "url.h"

/* How long an SMTP client may be silent between commands (RFC 5321 4.5.3.2.7: at least 5 minutes). */
#define SMTP_COMMAND_TIMEOUT 300.0

struct smtp_service;

struct smtp_service_setup {
	struct ev_loop            *loop;
	const struct upstream_url *upstream;        /* the proxy's upstream (gateway or IMAP server) */
	const char                *upstream_name;   /* name to verify */
	struct tls_creds          *upstream_creds;  /* borrowed (a reference is taken) */
	bool                       allow_plaintext; /* upstream.allow_plaintext */
	double                     connect_timeout;
	struct tls_creds          *local_creds;     /* for STARTTLS and the TLS port; NULL in stdio mode */
	const char                *state_dir;
	bool                       listen;          /* bind smtp.listen / smtp.listen_tls */
	struct http_client        *https;           /* the gateway's HTTPS binding (borrowed), or NULL */
};

/*
 * NULL without error (*err = '\0') when sending is not possible in this
 * configuration (compatibility mode without smtp.submission_url, or an
 * upstream the listener cannot use): the listener is then off, and the
 * reason is logged. NULL with err when the configuration is wrong or a
 * socket cannot be bound.
 */
struct smtp_service *smtp_service_new(const struct smtp_service_setup *setup, const struct proxy_config *cfg,
                                      char *err, size_t errlen);
void smtp_service_free(struct smtp_service *svc);
void smtp_service_reconfigure(struct smtp_service *svc, const struct proxy_config *cfg);
/* SIGTERM: stop accepting; 421 to every client; the loop may end once none is left. */
void smtp_service_drain(struct smtp_service *svc);
/* The outbox's lines of the status report (a status_fn, data = svc). */
void smtp_service_status(void *svc, struct buf *out);
unsigned smtp_service_connection_count(const struct smtp_service *svc);

/* Serve one SMTP client on stdin/stdout; the loop ends when it is done and nothing is in flight. */
int smtp_service_start_stdio(struct smtp_service *svc, char *err, size_t errlen);

/* An IMAP client logged in through the proxy as user with password (queued mail may go now). */
void smtp_service_login_seen(struct smtp_service *svc, const char *user, const char *password);

/*
 * Compatibility mode relays LOGIN and AUTHENTICATE byte for byte: proxy.c
 * shows the login command (or an AUTHENTICATE PLAIN response line) of an
 * IMAP session (key) here, and its outcome later; on success it is
 * login_seen. All accept a NULL svc.
 */
struct imap_msg;
void smtp_service_login_command(struct smtp_service *svc, const void *key, const struct imap_msg *m);
void smtp_service_login_line(struct smtp_service *svc, const void *key, const char *b64, size_t len);
void smtp_service_login_result(struct smtp_service *svc, const void *key, bool ok);

#endif
