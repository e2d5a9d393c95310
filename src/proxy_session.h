/*
 * proxy_session.h - pimap-proxy's server and session objects, shared by the
 * relay (proxy.c) and the gateway link (proxy_link.c). Private to the proxy.
 *
 * A session is one client connection. It owns its client stream, its
 * upstream stream (replaced when a gateway link is re-established), both
 * parsers, its timers, and in gateway mode its struct link.
 */
#ifndef PIMAP_PROXY_SESSION_H
#define PIMAP_PROXY_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "buf.h"
#include "imap_parse.h"
#include "log.h"
#include "proxy_config.h"
#include "stream.h"
#include "tlsio.h"
#include "url.h"

struct link;
struct pview;
struct macro_set;
struct smtp_service;
struct filter_set;
struct status_server;

/* Longest login name a status report shows. */
#define PROXY_STATUS_USER_MAX 128

#define SESSION_MAGIC 0x53455353u /* "SESS" */

/* Upstream responses are trusted more than clients, but still bounded:
 * a SEARCH over a large mailbox is one long line, a FETCH BODY[] one big literal. */
#define UPSTREAM_MAX_LINE_LENGTH  (16u * 1024 * 1024)
#define UPSTREAM_MAX_LITERAL_SIZE (1024u * 1024 * 1024)
#define UPSTREAM_MAX_ARGS         4000000u
#define UPSTREAM_MAX_LIST_DEPTH   64u
/* RFC 7888 LITERAL-: non-synchronising literals only up to this size. */
#define LITERAL_MINUS_MAX 4096
/* Sync literal segments of one client command forwarded step by step. */
#define MAX_LITERAL_SEGMENTS IMAP_MAX_LITERAL_SEGMENTS
#define INTERNAL_TAG_PREFIX "pimap-proxy-"
/* Longer client tags get "* BAD": a server may answer them untagged (Dovecot
 * does from 127 bytes), and a blocking command must see its tagged reply. */
#define MAX_CLIENT_TAG 64
/* Before login nobody needs big literals (a password is small); a stranger
 * must not make the proxy buffer max_command_size (Dovecot's login process
 * limits the same way). */
#define PRELOGIN_MAX_LITERAL 8192
#define PRELOGIN_MAX_COMMAND 65536

enum up_state {
	UP_CONNECTING,   /* TCP connect in progress */
	UP_TLS,          /* implicit TLS handshake */
	UP_GREETING,     /* waiting for the server greeting */
	UP_CAPABILITY,   /* our CAPABILITY in flight (before STARTTLS or greeting the client) */
	UP_STARTTLS,     /* our STARTTLS in flight */
	UP_STARTTLS_HS,  /* STARTTLS handshake */
	UP_READY,        /* relaying */
};

/* Client commands after which the proxy must see the outcome before relaying more. */
enum block_kind {
	BLOCK_NONE,
	BLOCK_LOGIN,        /* LOGIN / AUTHENTICATE: may switch on upstream COMPRESS after it */
	BLOCK_IDLE,         /* IDLE: "+" then a raw "DONE" line */
	BLOCK_LITERALS,     /* sending a command's sync literals one upstream "+" at a time */
	BLOCK_INTERNAL,     /* our own CAPABILITY/COMPRESS after login */
};

enum internal_cmd { INT_NONE, INT_CAPABILITY, INT_COMPRESS };

struct inflight {
	char *tag;
	bool  login;    /* LOGIN/AUTHENTICATE: its reply decides the login */
	bool  idle;     /* IDLE */
	bool  stepping; /* its sync literals are being sent one "+" at a time */
};

struct proxy_server {
	struct ev_loop            *loop;
	const struct proxy_config *cfg;          /* borrowed */
	/* Restart-only settings, fixed at start so a reload cannot half-apply them. */
	struct upstream_url        upstream;
	char                      *upstream_name;     /* verified name / SNI */
	bool                       allow_plaintext;
	bool                       compress_upstream;
	double                     connect_timeout;
	struct tls_creds          *upstream_creds;
	struct tls_creds          *local_creds;  /* NULL in stdio mode */
	struct listener          **listeners;
	size_t                     nlisteners;
	struct session            *sessions;
	unsigned                   nsessions;
	uint64_t                   next_id;
	bool                       stdio_mode;
	bool                       draining;
	ev_timer                   drain_timer;
	/* Gateway mode (pimaps:// or pimap:// upstream; proxy_link.c). */
	bool                       gateway;
	char                      *device_id;         /* fixed at start */
	struct macro_set          *macros;            /* NULL: none loaded */
	struct status_cache       *status;            /* folder STATUS pushed by the gateway (NULL until used) */
	struct http_client        *https;             /* the gateway's HTTPS binding (http_link.c), else NULL */
	struct smtp_service       *smtp;              /* the SMTP listener (proxy_smtp.c), or NULL */
	struct filter_set         *filters;           /* filters.file (proxy_filter.c); NULL: none */
	struct status_server      *status_report;     /* pimap-proxy --status (status_socket.c), NULL: off;
	                                               * a module adds its section with status_add() */
};

struct session {
	unsigned             magic;
	struct proxy_server *srv;
	struct session      *prev, *next;
	char                 prefix[96];        /* "c7 127.0.0.1:50312" for logs */

	struct stream       *client, *upstream;
	struct imap_parser  *cparser, *uparser;
	struct imap_limits   climits;            /* copied from config at accept, used after login */
	struct imap_limits   active_limits;      /* what the client parser enforces now */
	size_t               out_limit;

	enum up_state        up_state;
	bool                 client_ready;      /* client TLS done (implicit TLS listener) */
	bool                 greeted;
	bool                 client_tls;
	bool                 client_loopback;   /* the peer is 127.0.0.0/8 or ::1 */
	bool                 authenticated;
	bool                 upstream_bye;      /* upstream said BYE: close after relaying it */
	bool                 closing;
	bool                 bye_sent;          /* drain: BYE already sent to the client */
	char                *upstream_caps;     /* latest capability list from upstream */

	enum block_kind      block;
	bool                 raw_line_ok;       /* one raw client line may be parsed now */
	bool                 raw_secret;        /* ...and it is an AUTHENTICATE response */
	bool                 authenticate;      /* the LOGIN block is an AUTHENTICATE */
	bool                 skipping;          /* discarding the rest of a bad client line */
	bool                 login_done;        /* post-login work (upstream COMPRESS) started */

	/* BLOCK_LITERALS: the command's bytes and where each segment ends */
	struct buf           lit_cmd;
	size_t               lit_ends[MAX_LITERAL_SEGMENTS];
	size_t               lit_nsegs, lit_next;

	enum internal_cmd    internal;
	unsigned             internal_seq;
	char                 internal_tag[32];

	/* Client commands forwarded and not yet completed, oldest first. A tagged
	 * reply completes the oldest entry with its tag (clients may reuse tags). */
	struct inflight     *inflight;
	size_t               ninflight, inflight_cap;
	ev_timer             activity;          /* preauth / idle timeout */

	struct link         *link;              /* gateway mode only (proxy_link.c), else NULL */
	struct pview        *pview;             /* compatibility mode: filtered folders (proxy_view.c) */
	char                 login_user[PROXY_STATUS_USER_MAX]; /* compatibility mode: the name of the
	                                                            * last login attempt (proxy_status.c) */
	bool                 login_sasl_pending; /* ...an AUTHENTICATE PLAIN waits for its response line */
	char                 listener[64];      /* the listener's address, or "stdio" (macros) */
};


/* proxy.c helpers used by proxy_link.c */
void slog(const struct session *s, enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void client_say(struct session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void client_caps(const struct session *s, struct buf *out);
void forward_to_client(struct session *s, const uint8_t *data, size_t len);
void forward_to_upstream(struct session *s, const uint8_t *data, size_t len, bool secret);
/* Relay one upstream response to the client as the compatibility relay does
 * (capability lists rewritten for the client leg). */
void relay_response(struct session *s, const struct imap_msg *m);
/* The tagged reply of a relayed client command: completes it, forwards it. */
void relay_tagged_reply(struct session *s, const struct imap_msg *m);
/* Relay a command the proxy wrote for the client's tag (text: tag, command, CRLF). */
void relay_command_text(struct session *s, const char *tag, const uint8_t *text, size_t len);
/* Rewrite sync literal headers {n} as {n+} (the upstream offers LITERAL+). */
void literals_to_nonsync(const struct imap_msg *m, struct buf *out);
void session_close(struct session *s, const char *why);
void session_bye(struct session *s, const char *code, const char *why);
void activity_arm(struct session *s);
void process_client_input(struct session *s);
int session_connect_upstream(struct session *s);
/* The client logged in: lift the pre-login limits, arm the idle timeout. */
void session_logged_in(struct session *s);

#endif
