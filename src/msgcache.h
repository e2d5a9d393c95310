/*
 * msgcache.h - message data pimap-proxy already holds, to answer a client's
 * FETCH without a round trip on the link.
 *
 * A gateway pushes new mail with the items the client is known to ask for
 * next (PIMAP_INBAND_NEW_FORMAT: flags, size, header fields, the body). The
 * proxy tells the client "* n EXISTS" and keeps the data here, keyed by
 * UID; when the client then fetches any of those items for those messages,
 * in any combination, the answer is built here: every item the client asks
 * for, as the server spelled it, in the order Dovecot writes them (UID first
 * for UID FETCH, then the other non-body items in the client's order, then
 * the body sections in the client's order). FLAGS come from what the client
 * was told (client_view), which every forwarded change updates, or else from
 * the pushed data itself.
 *
 * Only items without side effects are answered: BODY.PEEK[...] (a BODY[...]
 * without PEEK would set \Seen), BINARY.PEEK[...], partial ranges of a
 * cached section, RFC822.SIZE, INTERNALDATE, RFC822.HEADER, BINARY.SIZE,
 * UID and FLAGS. Anything else, a message the cache lacks, a sequence number
 * beyond the mailbox, or a view that does not know every UID it would need,
 * and the command goes upstream as usual.
 *
 * Pure: no I/O, no libev, no logging. Allocation failure aborts (xmalloc).
 */
#ifndef PIMAP_MSGCACHE_H
#define PIMAP_MSGCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "client_view.h"
#include "imap_parse.h"

/* Bytes of item data one cache holds (per client connection); past it the
 * oldest messages are dropped (their fetches then go upstream). */
#define MSGCACHE_MAX_BYTES (16u * 1024 * 1024)
/* Messages one cache holds. */
#define MSGCACHE_MAX_MESSAGES 4096u
/* Items kept per message; a push with more is kept up to this many. */
#define MSGCACHE_MAX_ITEMS 16u
/* Messages one client FETCH may ask for and still be answered here. */
#define MSGCACHE_MAX_ANSWER 10000u

struct msgcache;

struct msgcache *msgcache_new(size_t max_bytes);
void msgcache_free(struct msgcache *mc);
/* Forget everything (another mailbox was selected). */
void msgcache_clear(struct msgcache *mc);

/*
 * Keep the data of an untagged "* n FETCH (... UID u ...)" under UID u:
 * every item whose value is an atom, a string or NIL (lists such as
 * ENVELOPE are not kept), except UID, MODSEQ and partial sections; FLAGS
 * are kept as the flags the message had then. Items already held for u
 * are replaced. Returns true if u is now in the cache.
 */
bool msgcache_learn(struct msgcache *mc, const struct imap_msg *m);
/* The message is gone (expunged). */
void msgcache_forget(struct msgcache *mc, uint32_t uid);
bool msgcache_has(const struct msgcache *mc, uint32_t uid);
size_t msgcache_bytes(const struct msgcache *mc);
size_t msgcache_count(const struct msgcache *mc);

/*
 * Answer a client's FETCH or UID FETCH (cmd: a parsed command, args[0] the
 * command name) from the cache and the client's view v: appends the
 * untagged FETCH responses and "tag OK Fetch completed.\r\n" to out and
 * returns true; returns false with out untouched when it cannot answer
 * exactly as the server would (see above).
 */
bool msgcache_answer(const struct msgcache *mc, const struct client_view *v, const struct imap_msg *cmd,
                     const char *tag, struct buf *out);

/* Flags in the order Dovecot writes them (system flags \Answered \Flagged
 * \Deleted \Seen \Draft, then keywords as given), "\Recent" last if recent:
 * the text between the parentheses of a FLAGS item. Shared with the
 * write-behind STORE, whose answers must look like the store's. */
void msgcache_write_flags(struct buf *out, const char *const *flags, size_t n, bool recent);

#endif
