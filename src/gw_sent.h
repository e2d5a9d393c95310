/*
 * gw_sent.h - the gateway's memory of recent deliveries, so that a
 * client's retry of an XDELIVER whose answer it lost is not sent twice.
 *
 * Keyed by (user, Message-ID). A row is written as SENDING right before
 * the message's final dot goes to the submission server, and becomes SENT
 * when the server accepts it; a refusal deletes it (nothing was sent, a
 * retry may send). A SENDING row that outlives its transaction (the
 * gateway was killed, or the connection broke after the final dot) means
 * "may have been sent": a retry is not sent again.
 *
 * Bounded: rows older than the window go, and only the newest
 * max_per_user rows of a user are kept. SQLite in state_dir/sent.db,
 * synchronous=FULL: the SENDING row is on disk before the dot is written,
 * so the memory survives a gateway crash or restart. Never message
 * content: the Message-ID, times and the APPENDUID of the saved copy.
 */
#ifndef PIMAP_GW_SENT_H
#define PIMAP_GW_SENT_H

#include <stdbool.h>
#include <stddef.h>

#define GW_SENT_FILE "sent.db"
/* Longest "uidvalidity uid" text kept for a saved copy. */
#define GW_SENT_APPENDUID_MAX 40

struct gw_sent;

enum gw_sent_state {
	GW_SENT_NONE,    /* not in the memory */
	GW_SENT_SENDING, /* the final dot may have gone out; outcome not recorded */
	GW_SENT_SENT,    /* the submission server accepted it */
};

/* Open or create state_dir/sent.db. NULL with err. */
struct gw_sent *gw_sent_open(const char *state_dir, double window, long long max_per_user, char *err,
                             size_t errlen);
void gw_sent_close(struct gw_sent *st);
/* New bounds (SIGHUP); applied at the next write. */
void gw_sent_set_limits(struct gw_sent *st, double window, long long max_per_user);

/* What is known of (user, message_id) within the window. appenduid (cap >= GW_SENT_APPENDUID_MAX + 1)
 * gets the saved copy's "v u" or "". 0, or -1 on a database error (logged). */
int gw_sent_lookup(struct gw_sent *st, const char *user, const char *message_id, enum gw_sent_state *state,
                   double *at, char *appenduid, size_t cap);
/* Record a state (and prune what is past the bounds). appenduid may be NULL. 0 or -1. */
int gw_sent_mark(struct gw_sent *st, const char *user, const char *message_id, enum gw_sent_state state,
                 const char *appenduid);
/* Forget (user, message_id): nothing was sent. 0 or -1. */
int gw_sent_forget(struct gw_sent *st, const char *user, const char *message_id);

#endif
