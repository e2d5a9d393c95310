/*
 * proxy_filter.h - pimap-proxy and the user's filter file (filters.c).
 *
 * Loading: the file named by filters.file is read at start (an error stops
 * the start and --check-config), and again on SIGHUP, where an error keeps
 * the previous filters in force.
 *
 * Gateway mode: each link makes the gateway hold what the file says. After
 * login it reads the gateway's table (XFILTER ALL V GET, XFILTER ALL N GET)
 * and sends what differs (filters.c: ALL, the named folders, stale ones),
 * and PIMAP_EVENT_FILTER if the file names the event kinds; before a SELECT
 * it makes sure the folder's own values are right (a glob can only be
 * resolved once a name is known). Only what differs is sent: a device whose
 * gateway holds the file's rules costs two GETs per login.
 *
 * Compatibility mode: the proxy applies the file's views itself, through the
 * same view engine as the gateway (vrelay.c): see proxy_view.c.
 *
 * filters.file "" means the proxy does not manage filters: a gateway keeps
 * what it holds (to remove filters, point filters.file to an empty file).
 */
#ifndef PIMAP_PROXY_FILTER_H
#define PIMAP_PROXY_FILTER_H

#include <stdbool.h>
#include <stddef.h>

#include "imap_parse.h"
#include "proxy_config.h"

struct session;
struct filter_set;
struct pfilter_link;

/* Load cfg's filters.file into *set (NULL when none is named). -1 with "file:line:column: message" in err. */
int proxy_filters_load(const struct proxy_config *cfg, struct filter_set **set, char *err, size_t errlen);
void proxy_filters_free(struct filter_set *set);

/* ---- gateway mode (called by proxy_link.c) -------------------------------- */

/* Logged in (again): read the gateway's table; the differences follow when it is in. */
void pfilter_after_login(struct session *s);
/* A client SELECT/EXAMINE of mailbox is about to be sent. */
void pfilter_before_select(struct session *s, const char *mailbox);
/* An untagged response while one of our filter commands is the oldest on the link. */
void pfilter_untagged(struct session *s, const struct imap_msg *m);
/* The tagged reply of one of our filter commands. */
void pfilter_done(struct session *s, const struct imap_msg *m);
void pfilter_link_free(struct pfilter_link *pf);

#endif
