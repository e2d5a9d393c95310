/*
 * proxy_link.h - pimap-proxy's P-IMAP link to a pimap-gateway.
 *
 * In gateway mode every client connection has its own link: a connection to
 * the gateway logged in as user#P<device-id>, always compressed, pipelined,
 * kept alive with heartbeats, and re-established after a loss without the
 * client noticing. The gateway keeps the session; on return the link maps
 * the gateway's resume output (or, when events were lost, its own state
 * comparison) back into the plain IMAP responses the client expects, with
 * sequence numbers right for what that client has seen. The client's IDLE
 * is the proxy's to answer; it runs an IDLE upstream whenever the client
 * waits, and turns DONE into the upstream IDLE's end.
 *
 * proxy.c calls these hooks only when session->link is set.
 */
#ifndef PIMAP_PROXY_LINK_H
#define PIMAP_PROXY_LINK_H

#include <stdbool.h>
#include <stddef.h>

#include "imap_parse.h"
#include "proxy_config.h"

struct session;
struct link;
struct macro_set;

/* Commands a client may have waiting for the link at once before the proxy
 * stops reading from it. */
#define LINK_MAX_HELD 64

struct link *link_new(struct session *s);
void link_free(struct link *l);

/*
 * The device id: the configured one, else the one kept in
 * state_dir/device-id, else a new random one written there (0600).
 * Returns a malloc'd string, or NULL with err filled.
 */
char *link_device_id(const char *configured, const char *state_dir, char *err, size_t errlen);

/*
 * Load the macros cfg names (macros.enabled, macros.dir) into *set (NULL:
 * none; macros.dir "" and nothing installed is no error). Returns -1 with
 * "file:line:column: message" in err when a file is wrong.
 */
int link_load_macros(const struct proxy_config *cfg, struct macro_set **set, char *err, size_t errlen);
void link_free_macros(struct macro_set *set);

/* proxy_filter.c's commands on the link (XFILTER, XSETPIMAPPREF): written like
 * the proxy's own; their answers go to pfilter_untagged / pfilter_done. */
void link_send_filter(struct session *s, const char *text);
/* proxy_filter.c's state of this link (NULL until it makes one). */
struct pfilter_link **link_pfilter(struct session *s);

/* Nothing the client waits for is in flight (a drain may say BYE now). */
bool link_quiescent(const struct session *s);
/* The session is closing: log out upstream when that is possible, stop timers. */
void link_session_closing(struct session *s);

/* The upstream connection failed or ended: keep the client, reconnect. */
void link_upstream_lost(struct session *s, const char *why);
/* A reconnected upstream finished TLS and greeting: log in and resume. */
void link_upstream_ready(struct session *s);
/* Bytes arrived from the upstream: the link is alive. */
void link_upstream_heard(struct session *s);
/* One upstream message once the connection is set up. */
void link_upstream_message(struct session *s, const struct imap_msg *m);

/* One client command (after STARTTLS/COMPRESS and the tag check). */
void link_client_command(struct session *s, const struct imap_msg *m);
/* A raw client line: DONE after IDLE, or an AUTHENTICATE response. */
void link_client_raw_line(struct session *s, const struct imap_msg *m);
/* May proxy.c parse the next client message now? */
bool link_client_may_proceed(const struct session *s);

/* What pimap-proxy --status shows of a client's link; pointers borrowed. */
struct link_report {
	const char *state;    /* "up", "down", "reconnecting", ...; NULL: no link */
	bool        up;
	const char *user;     /* the client's login name, NULL before login */
	const char *mailbox;  /* the client's selected mailbox, or NULL */
	bool        idle;     /* the client waits in IDLE */
	double      up_for;   /* seconds since the link came up (when up) */
	unsigned    attempts; /* reconnect attempts since it was last stable */
};
void link_report(const struct session *s, struct link_report *r);

#endif
