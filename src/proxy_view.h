/*
 * proxy_view.h - the filter file in pimap-proxy's compatibility mode.
 *
 * Without a gateway the proxy applies the filter file itself, with the
 * gateway's view engine (vrelay.c):
 *  - a SELECT of a folder with a view is answered
 *    with the view, the client's sequence numbers and UID sets are
 *    translated, new mail enters only if it matches, and the client's IDLE
 *    there is answered by the proxy (it ends the server's IDLE to search
 *    for new mail, and starts it again);
 *  - STATUS of a filtered folder that is not selected, and the STATUS lines
 *    of a LIST ... RETURN (STATUS ...), are counted through the view on a
 *    helper connection (proxy_count.c); the selected folder's by its view.
 * Notification rules and event kinds are not applied (the server pushes
 * what it pushes). QRESYNC is not enabled while views are in force (ENABLE QRESYNC
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
