/*
 * smtp_server.h - the SMTP submission server as a pure state machine
 * (RFC 5321, 6409, 4954, 3207, 2920, 1870, 6152, 2034).
 *
 * Bytes from the client go in; replies come out in an output buffer; what
 * needs the world outside (TLS, checking credentials, sending a message)
 * comes out as an action, and the machine reads no further input until the
 * owner reports the outcome. No sockets, no timers, no logging: testable
 * with scripted sessions and fuzzable. The owner (proxy_smtp.c) does the
 * I/O.
 *
 * What it enforces: EHLO/HELO before mail, AUTH before mail, AUTH only
 * over TLS unless the configuration allows it in clear (loopback peers),
 * the order MAIL, RCPT..., DATA (503 otherwise), the size limit (552, from
 * the SIZE parameter or counting the data), the recipient limit (452),
 * CRLF line ends (a bare LF in a command is 500; in DATA it ends the
 * session with 521 and nothing is sent), command line length (500), and at
 * most SMTP_SERVER_MAX_ERRORS errors per session.
 */
#ifndef PIMAP_SMTP_SERVER_H
#define PIMAP_SMTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* Errors (5xx replies to commands) tolerated in one session before it is closed (421). */
#define SMTP_SERVER_MAX_ERRORS 10
/* Authentication attempts that fail per session before it is closed. */
#define SMTP_SERVER_MAX_AUTH_FAILURES 3

struct smtp_server_config {
	const char *hostname;       /* in the greeting and EHLO */
	size_t      max_message;    /* SIZE: bytes of one message */
	size_t      max_recipients; /* RCPTs per message */
	bool        tls_offered;    /* STARTTLS can be offered on this connection */
	bool        tls_active;     /* the connection is protected already (implicit TLS, a pipe) */
	bool        auth_in_clear;  /* AUTH may be used without TLS (listen.plaintext_login allows this peer) */
};

enum smtp_action {
	SMTP_ACTION_NONE,     /* all input taken: write the output and wait for more */
	SMTP_ACTION_STARTTLS, /* write the output, start TLS (dropping buffered input), then smtp_server_tls_started */
	SMTP_ACTION_AUTH,     /* check smtp_server_auth_user/password, then smtp_server_auth_done */
	SMTP_ACTION_DELIVER,  /* a message is complete: send it, then smtp_server_deliver_done */
	SMTP_ACTION_CLOSE,    /* write the output and close the connection */
};

enum smtp_auth_result {
	SMTP_AUTH_OK,       /* 235 */
	SMTP_AUTH_INVALID,  /* 535 5.7.8 */
	SMTP_AUTH_TEMPFAIL, /* 454 4.7.0: could not be checked now */
};

struct smtp_server;

struct smtp_server *smtp_server_new(const struct smtp_server_config *cfg);
void smtp_server_free(struct smtp_server *s);

/* The 220 greeting (into the output). */
void smtp_server_greet(struct smtp_server *s);
/*
 * Process client bytes until an action is needed or all are taken
 * (*consumed says how many). While an action is pending it takes nothing
 * and returns SMTP_ACTION_NONE.
 */
enum smtp_action smtp_server_input(struct smtp_server *s, const uint8_t *data, size_t len, size_t *consumed);
/* Replies to write, in order. The owner writes and clears it. */
struct buf *smtp_server_output(struct smtp_server *s);

/* TLS is up: the session starts over (RFC 3207 4.2: EHLO again, no AUTH kept). */
void smtp_server_tls_started(struct smtp_server *s);

/* SMTP_ACTION_AUTH: the credentials (NUL-terminated; wiped by auth_done). */
const char *smtp_server_auth_user(const struct smtp_server *s);
const char *smtp_server_auth_password(const struct smtp_server *s);
void smtp_server_auth_done(struct smtp_server *s, enum smtp_auth_result r);
/* The authenticated user, or NULL. */
const char *smtp_server_user(const struct smtp_server *s);

/* SMTP_ACTION_DELIVER: the envelope and the message (CRLF lines, dots unstuffed; the owner may take its bytes). */
const char *smtp_server_mail_from(const struct smtp_server *s);
char *const *smtp_server_rcpts(const struct smtp_server *s, size_t *n);
struct buf *smtp_server_message(struct smtp_server *s);
/* The reply to the message's DATA ("250", "2.0.0", text). The transaction ends either way. */
void smtp_server_deliver_done(struct smtp_server *s, int code, const char *enhanced, const char *text);

/* Say 421 with text and stop (the next input call returns SMTP_ACTION_CLOSE). */
void smtp_server_shutdown(struct smtp_server *s, const char *text);
/* In a mail transaction, in DATA or waiting for an action's outcome. */
bool smtp_server_busy(const struct smtp_server *s);

#endif
