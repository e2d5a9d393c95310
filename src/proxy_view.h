/*
 * proxy_view.h - the filter file in pimap-proxy's compatibility mode.
 *
 * Without a gateway the proxy applies the filter file itself, with the
 * gateway's view engine (vrelay.c):
 *  - a SELECT of a folder with a view (or a notification rule) is answered
 *    with the view, the client's sequence numbers and UID sets are
 *    translated, new mail enters only if it matches, and the client's IDLE
 *    there is answered by the proxy (it ends the server's IDLE to search
 *    for new mail, and starts it again);
 *  - in that IDLE only new mail that passes the notification rule is
 *    pushed, and only the kinds of change the file's `events` allow; the
 *    rest goes out before the reply to the client's next command (the end
 *    of the IDLE included). In a folder without view or rule the server
 *    answers the IDLE and the proxy holds the events `events` leaves out;
 *  - STATUS of a filtered folder that is not selected, and the STATUS lines
 *    of a LIST ... RETURN (STATUS ...), are counted through the view on a
 *    helper connection (proxy_count.c); the selected folder's by its view.
 * QRESYNC is not enabled while views or rules are in force (ENABLE QRESYNC
 * is answered without it).
 *
 * proxy.c calls these hooks in compatibility mode only (no link).
 */
#ifndef PIMAP_PROXY_VIEW_H
#define PIMAP_PROXY_VIEW_H

#include <stdbool.h>

#include "imap_parse.h"

struct session;
struct pview;

/* Events an IDLE is not told (the file's events) held for the next reply; past this many they are
 * delivered rather than held without bound. */
#define PVIEW_MAX_HELD_EVENTS 1000

/* The client's LOGIN / AUTHENTICATE, and its SASL response line: the credentials the helper
 * connection logs in with (proxy_count.h). */
void pview_login_command(struct session *s, const struct imap_msg *m);
void pview_login_line(struct session *s, const struct imap_msg *m);
/* A client command after login: true if the view took it (answered or sent). */
bool pview_client_command(struct session *s, const struct imap_msg *m);
/* A raw client line (DONE for an IDLE the proxy answers): true if taken. */
bool pview_client_raw(struct session *s, const struct imap_msg *m);
/* A server message once the relay runs: true if the view consumed it. */
bool pview_upstream(struct session *s, const struct imap_msg *m);
/* Nothing of the view's is in flight (a drain may say BYE). */
bool pview_quiescent(const struct session *s);
void pview_free(struct pview *pv);

#endif
