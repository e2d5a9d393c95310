/*
 * client_view.h - what one client has been told about its selected mailbox,
 * and the untagged responses that bring it up to date.
 *
 * pimap-proxy relays a mail client to a P-IMAP gateway over a link that can
 * drop. When the link returns, or the gateway says "* RESYNC" (events were
 * lost), the proxy must tell the client what changed in its selected mailbox
 * with ordinary untagged responses whose sequence numbers are right for what
 * that client has seen. To do that it tracks, per client connection, the
 * client's picture of the mailbox from the responses the client receives
 * (struct client_view), collects the server's current state from its own
 * "UID FETCH 1:* (FLAGS)" (struct view_snapshot), and diffs the two
 * (client_view_diff_apply).
 *
 * Both structures hold, per message, a UID (0 = unknown) and an interned
 * flag set (unknown, or one of a few distinct sets shared by many messages):
 * about 8 bytes a message, so 100,000 messages cost under 1 MB.
 *
 * Flags compare as sets: order does not matter, system flags (\Seen ...)
 * compare case-insensitively, keywords exactly, and \Recent is ignored (it
 * is session-specific) and never written back.
 *
 * A view that has seen something it cannot follow exactly (an EXPUNGE out of
 * range, a UID out of order, VANISHED, a malformed FETCH, more messages or
 * distinct flag sets than the limits below) is "broken": it still counts
 * EXISTS/EXPUNGE as well as it can, but no diff is made from it until the
 * next client_view_reset().
 *
 * Pure: no I/O, no libev, no logging. Allocation failure aborts (xmalloc).
 */
#ifndef PIMAP_CLIENT_VIEW_H
#define PIMAP_CLIENT_VIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "imap_parse.h"

/* "* n EXISTS" above this marks the view broken instead of allocating
 * 8 bytes for each of up to 4 billion messages a hostile peer announces. */
#define CLIENT_VIEW_MAX_MESSAGES 10000000u
/* Distinct flag sets one view keeps, and the bytes their text may take.
 * Sets no message uses any more are dropped when a limit is reached; a view
 * whose messages really carry more than this is marked broken. */
#define CLIENT_VIEW_MAX_FLAGSETS   16384u
#define CLIENT_VIEW_MAX_FLAG_BYTES (1024u * 1024)

struct client_view;   /* what one client has been told about its selected mailbox */

/* A new, empty view (never NULL). Free with client_view_free(). */
struct client_view *client_view_new(void);
void client_view_free(struct client_view *v);

/* The client selected a mailbox (its SELECT/EXAMINE is being answered):
 * forget everything, start empty and not broken. */
void client_view_reset(struct client_view *v);

/*
 * Feed every untagged response the client receives, in order (messages of
 * kind IMAP_MSG_UNTAGGED from a response parser; other kinds are ignored):
 *  "* n EXISTS"  grow to n (new slots: UID and flags unknown); n below the
 *                current count is an inconsistency: broken;
 *  "* n EXPUNGE" remove slot n; n out of range: broken;
 *  "* n FETCH (... UID u ... FLAGS (...) ...)"  learn the UID and/or flags
 *                of slot n; other items (BODY[...] literals, ENVELOPE ...)
 *                are skipped. n out of range, a UID that contradicts the
 *                known one or breaks ascending order, or a malformed UID or
 *                FLAGS item: broken;
 *  "* OK [UIDVALIDITY v]"  remember v (a different v while UIDs are known
 *                is an inconsistency: broken);
 *  "* VANISHED ..."  cannot be applied without more state: broken;
 *  anything else is ignored.
 * m is only read during the call.
 */
void client_view_apply(struct client_view *v, const struct imap_msg *m);

uint32_t client_view_count(const struct client_view *v);
uint32_t client_view_uidvalidity(const struct client_view *v);  /* 0 if unknown */
bool client_view_broken(const struct client_view *v);
/* Every slot's UID is known (so a diff is possible). */
bool client_view_uids_known(const struct client_view *v);
/* UID of sequence number seq (1-based); 0 if unknown or out of range. */
uint32_t client_view_uid_at(const struct client_view *v, uint32_t seq);
/* Flags of sequence number seq in normalised form (sorted, space-joined,
 * system flags lower-cased, \Recent left out; "" for none), or NULL if
 * unknown or out of range. Owned by v; valid until v next changes. */
const char *client_view_flags_at(const struct client_view *v, uint32_t seq);
/* Flags of sequence number seq as the server spelled them (without
 * \Recent; single spaces), or NULL if unknown or out of range; *recent (if
 * not NULL) says whether the last FLAGS seen for it carried \Recent. Owned
 * by v; valid until v next changes. */
const char *client_view_flags_spelled_at(const struct client_view *v, uint32_t seq, bool *recent);
/* Slot seq is the message with this UID (the proxy knows it from data the
 * client was not shown, e.g. a pushed new message); a contradiction with a
 * known UID or the ascending order marks the view broken. */
void client_view_learn_uid(struct client_view *v, uint32_t seq, uint32_t uid);
/* Sequence number of a UID in the view, 0 if not there (or the view is broken). */
uint32_t client_view_seq_of(const struct client_view *v, uint32_t uid);
/* The mailbox's flag list from the last "* FLAGS (...)" (as spelled, space
 * separated), or NULL if the client was not told one since the reset. */
const char *client_view_mailbox_flags(const struct client_view *v);
/* Bytes of heap v holds (for memory budgets and tests). */
size_t client_view_memory(const struct client_view *v);

/*
 * The server's current state, collected from the untagged responses to our
 * own "UID FETCH 1:* (FLAGS)" (and any EXISTS/EXPUNGE/FETCH that arrive with
 * them, in order). Start it with the server's current message count (from
 * the SELECT response or the count the server last reported).
 */
struct view_snapshot;

/* A snapshot of count messages, all unknown (never NULL). */
struct view_snapshot *view_snapshot_new(uint32_t count);
/* Same rules as client_view_apply(). */
void view_snapshot_apply(struct view_snapshot *s, const struct imap_msg *m);
void view_snapshot_free(struct view_snapshot *s);
/* s's UIDVALIDITY; 0 = unknown = assume the client's. An "* OK
 * [UIDVALIDITY v]" fed to view_snapshot_apply() sets it too. */
void view_snapshot_set_uidvalidity(struct view_snapshot *s, uint32_t uidvalidity);

/*
 * Append to out the untagged responses that move the client from v to s,
 * then make v equal s:
 *   "* n EXPUNGE\r\n" for every UID of v missing from s, highest sequence
 *       number first (each number valid when the client reads it);
 *   "* N EXISTS\r\n" once if messages were added (N = s's count);
 *   "* n FETCH (UID u FLAGS (...))\r\n" for every message of s whose flags
 *       differ from what v knew, or that v did not know (a new message only
 *       if s knows its flags), in ascending n, flags spelled as the server
 *       spelled them in s, without \Recent. A trailing message of s whose
 *       UID is unknown but whose flags are known gets "(FLAGS (...))".
 * Afterwards v holds exactly s's knowledge: a message whose flags s does not
 * know has unknown flags in v too (a later diff re-sends them), and v takes
 * s's UIDVALIDITY if s knows it.
 * Returns 0, or -1 with out untouched and v unchanged when it cannot be done
 * exactly: v broken or with unknown UIDs; s broken; s has a slot with an
 * unknown UID that is not at the end (messages appended after the FETCH ran
 * are fine at the end); a UID new in s is below a UID v holds that s still
 * holds (syncdiff's REORDERED); or both UIDVALIDITYs are known and differ.
 */
int client_view_diff_apply(struct client_view *v, const struct view_snapshot *s, struct buf *out);

#endif
