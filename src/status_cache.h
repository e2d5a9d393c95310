/*
 * status_cache.h - STATUS of a user's folders as a gateway keeps telling
 * pimap-proxy, to answer a client's STATUS without a round trip.
 *
 * With PIMAP_FOLDER_STATUS ON, the gateway watches the user's subscribed
 * folders (NOTIFY, RFC 5465) on each of the proxy's links and pushes
 * "* STATUS folder (MESSAGES UIDNEXT UIDVALIDITY UNSEEN HIGHESTMODSEQ)"
 * whenever one changes (UNSEEN and HIGHESTMODSEQ alone for a flag change).
 * A folder's values are known to be current while at least one link that
 * receives those pushes "covers" it: the link saw a complete STATUS of the
 * folder since the watch began and has not selected the folder since (the
 * store does not report a folder's changes as STATUS to a connection that
 * has it selected). A link that goes down, or selects the folder, stops
 * covering it; the values stay, but answer nothing until a link covers the
 * folder again.
 *
 * RECENT is never pushed: it changes without notice when another session
 * selects the folder. It is answered only when it must be 0: the folder is
 * empty, or a STATUS the client received said RECENT 0 and no message has
 * arrived since (same UIDNEXT). SIZE and other items go upstream.
 *
 * Pushes from several links can arrive in any order; HIGHESTMODSEQ (always
 * present: the gateway's store connections use CONDSTORE) orders them, so a
 * late push never overwrites a newer value.
 *
 * Pure: no I/O. Allocation failure aborts (xmalloc).
 */
#ifndef PIMAP_STATUS_CACHE_H
#define PIMAP_STATUS_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "imap_parse.h"

/* Folders kept per proxy (all users): a bound against a server that invents
 * folders; past it the least recently updated folder is forgotten. */
#define STATUS_CACHE_MAX_FOLDERS 4096u
/* Links that may cover one folder at once (a client opens a few connections). */
#define STATUS_CACHE_MAX_SOURCES 32u

struct status_cache;

struct status_cache *status_cache_new(void);
void status_cache_free(struct status_cache *sc);

/*
 * An untagged "* STATUS folder (...)" seen on link `source` (a number
 * unique to the link) of `user`. pushed: the link receives the gateway's
 * folder pushes, so a complete STATUS (MESSAGES, UIDNEXT, UIDVALIDITY) of
 * a folder other than `selected` (the link's selected folder, NULL if none)
 * makes the link cover the folder. Returns false if m is not a STATUS
 * response.
 */
bool status_cache_learn(struct status_cache *sc, const char *user, uint64_t source, const char *selected,
                        bool pushed, const struct imap_msg *m);
/* The link selected (or is selecting) a folder: it no longer covers it. */
void status_cache_selected(struct status_cache *sc, const char *user, uint64_t source, const char *mailbox);
/* The link no longer receives pushes (down, closed, watch refused). */
void status_cache_source_gone(struct status_cache *sc, uint64_t source);

/*
 * A client's "STATUS folder (items)" (cmd: a parsed command) for user:
 * appends "* STATUS folder (...)" (items in the server's order: MESSAGES
 * RECENT UIDNEXT UIDVALIDITY UNSEEN HIGHESTMODSEQ; the folder name as the
 * client wrote it) and "tag OK Status completed.\r\n" to out and returns
 * true when every item is known to be current; false, out untouched,
 * otherwise.
 */
bool status_cache_answer(const struct status_cache *sc, const char *user, const struct imap_msg *cmd,
                         const char *tag, struct buf *out);

/* Folders held (for tests and SIGUSR1 dumps). */
size_t status_cache_count(const struct status_cache *sc);

#endif
