/*
 * fview.h - a filtered view of one selected mailbox: the map between the
 * client's sequence numbers, UIDs and the store's sequence numbers.
 *
 * A view filter (XFILTER ... V) makes a folder show only the messages that
 * match. The client gets its own sequence numbers; UIDs and UIDVALIDITY
 * stay the store's. This module keeps, for every message the store has
 * reported, its UID and three facts:
 *
 *   alive  the store still has it (no EXPUNGE from the store yet);
 *   match  it is in the view (decided once, when it arrived: criteria are
 *          immutable; only DAYSBEFORETODAY ageing takes it out later);
 *   told   the client has been told of it: its sequence number n is the
 *          n-th told message.
 *
 * What the client has not been told yet is pending: arrivals (alive,
 * matching, not told) and removals (told, but no longer alive or no longer
 * matching: "zombies"). They reach the client only when the caller flushes
 * them, at a point where that is safe (an EXPUNGE renumbers the folder, so
 * never while the client has a command with sequence numbers in flight).
 * Until then a zombie keeps its sequence number and the client's commands
 * are translated with the numbering the client knows.
 *
 * Sequence numbers are ranks among told (or alive) positions, kept in two
 * Fenwick trees: a lookup, an arrival, an expunge or an ageing costs
 * O(log n) whatever the folder's size; expunged positions are dropped in an
 * occasional compaction whose cost is paid for by the expunges before it.
 * 13 bytes a message, more while the arrays have room to grow: 100,000
 * messages take 1.3 to 1.7 MB (fview_memory).
 *
 * New messages arrive in two steps: "* n EXISTS" from the store adds
 * messages whose UIDs are not known yet (fview_store_exists); a search then
 * gives their UIDs (fview_learn) and another which of them match
 * (fview_decide). Arrivals are announced in UID order, so an undecided
 * message holds back the ones after it.
 *
 * Pure: no I/O. Allocation failure aborts (xmalloc).
 */
#ifndef PIMAP_FVIEW_H
#define PIMAP_FVIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "imap_parse.h"
#include "uidset.h"

/* Expunged positions kept before a compaction is considered. */
#define FVIEW_COMPACT_MIN 4096

struct fview;

struct fview *fview_new(void);
void fview_free(struct fview *v);

/*
 * Start over from the store's state: all = every UID of the folder, match =
 * those in the view (members of all; others are ignored). Every match is
 * told: the caller describes this view to the client (SELECT).
 */
void fview_load(struct fview *v, const struct uidset *all, const struct uidset *match);
/*
 * The same, for a client that already has a view: told = the UIDs it has
 * (those the store no longer has, or that no longer match, become pending
 * removals); members of all from `undecided_from` up are left undecided
 * (a search decides them, fview_decide). Arrivals are what matches and the
 * client lacks. Returns 0, or -1 if an arrival would come before a UID the
 * client keeps (no EXPUNGE/EXISTS sequence can say that; v is loaded anyway).
 */
int fview_load_told(struct fview *v, const struct uidset *all, const struct uidset *match, uint32_t undecided_from,
                    const struct uidset *told);
/* An arrival (decided) lies below a message the client keeps: see fview_load_told. */
bool fview_reordered(const struct fview *v);
/* Forget what the client was told: it is told the view as it is now (every
 * decided match alive), nothing pending (a fresh SELECT, a RESYNC). */
void fview_reset_told(struct fview *v);
/* The lowest UID whose membership is not decided, 0 if none. */
uint32_t fview_first_undecided(const struct fview *v);

uint32_t fview_count(const struct fview *v);        /* messages the client sees */
uint32_t fview_store_count(const struct fview *v);  /* messages the store reported, unknown ones included */
uint32_t fview_unknown(const struct fview *v);      /* reported new messages whose UIDs are not known */
uint32_t fview_undecided(const struct fview *v);    /* known new messages not yet decided */
uint32_t fview_max_uid(const struct fview *v);      /* highest UID known (0 if none) */
uint32_t fview_uid_at(const struct fview *v, uint32_t seq);     /* client seq -> UID; 0 if out of range */
uint32_t fview_seq_of(const struct fview *v, uint32_t uid);     /* UID -> client seq; 0 if not told */
uint32_t fview_store_uid(const struct fview *v, uint32_t sseq); /* store seq -> UID; 0 if unknown or out of range */
bool fview_is_alive(const struct fview *v, uint32_t uid);
/* Every told UID (the client's view), ascending; out is cleared first. */
void fview_told(const struct fview *v, struct uidset *out);

/* ---- the store's events ------------------------------------------------- */

/* "* n EXISTS": n above the store count adds unknown new messages. False if n is below it (inconsistent). */
bool fview_store_exists(struct fview *v, uint32_t n);
/* "* n EXPUNGE". False if n is out of range (inconsistent). */
bool fview_store_expunge(struct fview *v, uint32_t sseq);
/* The UIDs of the unknown new messages (all above fview_max_uid, as many as
 * fview_unknown). Returns 0, or -1 (nothing changed) if they do not fit. */
int fview_learn(struct fview *v, const struct uidset *uids);
/* Which undecided messages with UID <= upto match (members of match). */
void fview_decide(struct fview *v, const struct uidset *match, uint32_t upto);
/* Told, matching messages that leave the view (DAYSBEFORETODAY ageing). */
void fview_age(struct fview *v, const struct uidset *leaving);

/* ---- telling the client --------------------------------------------------- */

bool fview_has_removals(const struct fview *v);
uint32_t fview_removals(const struct fview *v);
/* Decided arrivals ready to announce (in order, up to the first undecided one). */
uint32_t fview_arrivals_ready(const struct fview *v);
/* "* n EXPUNGE" for every removal, highest number first; they are no longer told. */
void fview_flush_removals(struct fview *v, struct buf *out);
/* Announce the ready arrivals: they become told; "* n EXISTS" to out (if not NULL)
 * and their UIDs to uids (if not NULL). Returns how many. */
uint32_t fview_flush_arrivals(struct fview *v, struct buf *out, struct uidset *uids);

/* ---- the client's sets ---------------------------------------------------- */

/*
 * A client's sequence set (view numbers, "*" = the last told message) as the
 * UIDs it names. A number above the count is an error (BAD), except in a
 * range ending in "*" ("5:*" with 3 messages is 3). Returns 0, or -1 with err.
 */
int fview_seqset(const struct fview *v, const char *text, size_t len, struct uidset *out, char *err, size_t errlen);
/* A client's UID set: the told UIDs within it ("*" = the highest told UID). */
int fview_uidset(const struct fview *v, const char *text, size_t len, struct uidset *out, char *err, size_t errlen);
/* Keep only the told members of set (in place). */
void fview_keep_told(const struct fview *v, struct uidset *set);

/* ---- the store's responses -------------------------------------------------- */

/*
 * "* n FETCH (...)" from the store: the client's sequence number for it, or
 * 0 when the client does not see the message (drop the response). A UID
 * item, when present, is trusted over the store number.
 */
uint32_t fview_fetch_seq(const struct fview *v, const struct imap_msg *m);
/* m with its leading number replaced by seq (the rest byte for byte). */
void fview_renumber(const struct imap_msg *m, uint32_t seq, struct buf *out);
/* "* SORT u1 u2 ..." (UIDs from a UID SORT) for the client: told ones only, as UIDs or sequence numbers. */
void fview_render_sort(const struct fview *v, const struct imap_msg *m, bool as_uids, struct buf *out);
/* "* THREAD (...)..." (UIDs): hidden messages taken out of the trees (their
 * children move up), as UIDs or sequence numbers. */
void fview_render_thread(const struct fview *v, const struct imap_msg *m, bool as_uids, struct buf *out);

/* Bytes of heap the view holds. */
size_t fview_memory(const struct fview *v);

#endif
