/*
 * folder_count.h - STATUS of a filtered folder that is not selected.
 *
 * A view filter changes what STATUS must count (MESSAGES, UNSEEN, RECENT of
 * the view, not of the folder), and IMAP cannot search a folder without
 * selecting it. A helper connection therefore EXAMINEs the folder, counts
 * with UID SEARCH RETURN (COUNT) and leaves it again (UNSELECT). Requests
 * are served one at a time, in order. Its owners: pimap-gateway, one per
 * device session with view filters (opened when first needed; the
 * password is kept in memory while a connection of the session is logged
 * in, never on disk), and pimap-proxy in compatibility mode, one per
 * client session (proxy_count.c).
 *
 * The folder selected on the client's own connection is counted by its
 * vrelay instead (vrelay.c), from the view the client has.
 */
#ifndef PIMAP_FOLDER_COUNT_H
#define PIMAP_FOLDER_COUNT_H

#include <stdbool.h>
#include <stddef.h>

#include <ev.h>

#include "buf.h"
#include "imap_parse.h"
#include "store_conn.h"

/* STATUS requests one counter keeps waiting; more get NO [LIMIT]. */
#define FOLDER_COUNT_MAX_QUEUED 64

struct folder_count;

/* answer: "* STATUS ..." line(s) and the status text for the tagged reply ("OK ...", "NO ..."). */
typedef void (*folder_count_cb)(void *ctx, const struct buf *untagged, const char *tagged);

/* Open the helper connection (logs in with user/password, copied and wiped after use). NULL if it cannot start. */
struct folder_count *folder_count_open(struct ev_loop *loop, const struct store_target *target, const char *user,
                                       const char *password, const char *log_prefix);
void folder_count_free(struct folder_count *fc);
/* The helper connection is gone (the store closed it): the owner should free it. */
bool folder_count_dead(const struct folder_count *fc);

/*
 * Count mailbox (as the client wrote it) through view (xfilter canonical
 * value) for today; items: the client's STATUS item list. cb is called
 * once: later, or from inside this call for what is refused at once (an
 * item a view does not count, a full queue, a dead connection).
 */
void folder_count_status(struct folder_count *fc, const char *mailbox, const char *view, long today,
                         const struct imap_arg *items, folder_count_cb cb, void *ctx);
/* The same with the items as names separated by spaces ("MESSAGES UNSEEN"): a LIST-STATUS's. */
void folder_count_status_names(struct folder_count *fc, const char *mailbox, const char *view, long today,
                               const char *names, folder_count_cb cb, void *ctx);
/*
 * The same for a STATUS the gateway pushes (PIMAP_FOLDER_STATUS): the items
 * the store's own pushes carry, MESSAGES UIDNEXT UIDVALIDITY UNSEEN
 * HIGHESTMODSEQ, those the store did not tell left out. cb as above.
 */
void folder_count_push(struct folder_count *fc, const char *mailbox, const char *view, long today,
                       folder_count_cb cb, void *ctx);
/* Forget the requests of ctx (its connection went away): their cb is not called. */
void folder_count_cancel(struct folder_count *fc, void *ctx);

#endif
