/*
 * proxy_count.h - STATUS of filtered folders in pimap-proxy's compatibility
 * mode, for folders the client has not selected.
 *
 * A view changes what STATUS must count (MESSAGES, UNSEEN, RECENT of the
 * view), and IMAP cannot search a folder without selecting it; the
 * client's own connection has its folder selected. So, as pimap-gateway
 * does per device session, each client session of the proxy counts on a
 * helper connection to the server (folder_count.c: EXAMINE, UID SEARCH
 * RETURN (COUNT), UNSELECT), logged in with the client's own credentials.
 * It is opened when first needed and closed after PCOUNT_IDLE_CLOSE
 * seconds without a request, so that a client's five connections do not
 * hold five more at the server.
 *
 * The credentials are those of the client's LOGIN or AUTHENTICATE PLAIN
 * (the last attempt; once the session is logged in it is the one that
 * succeeded), kept in memory while the session lasts and wiped at its end,
 * as the proxy keeps them in gateway mode to log in again. A client that
 * logged in another way (another SASL mechanism) cannot be counted: its
 * STATUS of a filtered folder gets NO [UNAVAILABLE].
 *
 * pcount_hold: the answer of a LIST ... RETURN (STATUS ...) in order, with
 * places for STATUS lines still being counted (RFC 5819: each STATUS
 * follows its LIST line).
 */
#ifndef PIMAP_PROXY_COUNT_H
#define PIMAP_PROXY_COUNT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "folder_count.h"
#include "imap_parse.h"

/* Seconds without a request after which the helper connection is closed. */
#define PCOUNT_IDLE_CLOSE 60.0

struct session;
struct pcount;

struct pcount *pcount_new(struct session *s);
void pcount_free(struct pcount *pc);

/* The client's LOGIN or AUTHENTICATE (PLAIN with an initial response), and its SASL response line. */
void pcount_login_command(struct pcount *pc, const struct imap_msg *m);
void pcount_login_line(struct pcount *pc, const uint8_t *line, size_t len);

/*
 * Count mailbox through view (xfilter canonical value) for today. The items
 * are a STATUS item list (items, an IMAP_ARG_LIST) or, when items is NULL,
 * names separated by spaces. cb as folder_count_cb: called once, maybe
 * from inside this call.
 */
void pcount_status(struct pcount *pc, const char *mailbox, const char *view, const struct imap_arg *items,
                   const char *names, folder_count_cb cb, void *ctx);

/* ---- the held answer of one LIST-STATUS ----------------------------------- */

struct pcount_hold;

struct pcount_hold *pcount_hold_new(void);
void pcount_hold_free(struct pcount_hold *h);
/* Something is held (what follows must queue behind it). */
bool pcount_hold_active(const struct pcount_hold *h);
/* A place still waits for its count. */
bool pcount_hold_waiting(const struct pcount_hold *h);
/* Queue a response behind what is held. */
void pcount_hold_raw(struct pcount_hold *h, const uint8_t *data, size_t len);
/* Queue a place for a count; its number for pcount_hold_fill. */
size_t pcount_hold_slot(struct pcount_hold *h);
/* The count for a place (NULL or empty: the STATUS line is left out, as RFC 5819 allows). */
void pcount_hold_fill(struct pcount_hold *h, size_t slot, const uint8_t *data, size_t len);
/* Move what can go now (up to the first place still waiting) to out. */
void pcount_hold_drain(struct pcount_hold *h, struct buf *out);

#endif
