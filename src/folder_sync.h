/*
 * folder_sync.h - what a client has seen of a folder, and how the gateway
 * brings it up to date.
 *
 * A folder_state is tracked from the store's responses on a connection. A
 * snapshot saves the client's view of the selected folder (the UID list,
 * plus every message's flags when the store has no CONDSTORE/ESEARCH); a
 * catch-up runs on a store connection where that folder is selected and
 * turns a saved view into the EXPUNGE/EXISTS/FETCH events that lead the
 * client to the store's state (syncdiff.c for the UIDs, CHANGEDSINCE or a
 * flags comparison for the flags, a FETCH of the new messages under
 * PIMAP_INBAND_NEW_FORMAT). The owner of the store connection passes every
 * untagged response to snapshot_offer/catchup_offer first; the command
 * completions come back through store_conn's callbacks.
 * docs/PROTOCOL.md section 2 describes the result on the wire.
 */
#ifndef PIMAP_FOLDER_SYNC_H
#define PIMAP_FOLDER_SYNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "gw_state.h"
#include "imap_parse.h"
#include "pimap_cmd.h"
#include "store_conn.h"
#include "syncdiff.h"
#include "uidset.h"

/* What the client sees of its selected folder (tracked from the store's responses). */
struct folder_state {
	char    *mailbox;   /* NULL: not selected */
	bool     readonly;
	uint32_t uidvalidity;
	uint32_t uidnext;
	uint64_t modseq;
	uint32_t exists;
};

/* The flags of a saved view, looked up by UID. */
struct uid_flags {
	uint32_t uid;
	const char *flags; /* canonical "(...)" */
};

struct flag_table {
	struct uid_flags *v;
	size_t n;
	char *text; /* the parsed copy the entries point into */
};

/*
 * Catch-up: the internal command sequence that turns a saved view into
 * events (UID SEARCH, then UID FETCH for new messages' NEW_FORMAT items and
 * for flags changed since the saved HIGHESTMODSEQ).
 */
struct catchup;
typedef void (*catchup_done_cb)(struct catchup *cu, bool resync, struct buf *events, void *ctx);

struct catchup {
	struct store_conn *sc;
	struct gw_folder_rec saved;
	struct uidset now;
	struct sync_diff diff;
	bool have_diff;
	struct buf fetch_new;   /* raw "* n FETCH" for new messages (NEW_FORMAT) */
	struct buf fetch_flags; /* raw "* n FETCH" for changed flags */
	struct buf post;        /* EXISTS/RECENT that raced with the catch-up */
	bool race;              /* an EXPUNGE arrived meanwhile: sequence numbers are unsure */
	int step;
	char tag[16];
	char *new_items;        /* NEW_FORMAT fetch items or NULL */
	bool flags_mode;        /* the saved view has flags (no CONDSTORE): compare them */
	struct flag_table saved_flags;
	long long max_events;
	catchup_done_cb done;
	void *ctx;
};

/* Snapshot: the view the client has now (UID SEARCH RETURN (ALL) ALL). */
struct snapshot;
typedef void (*snapshot_done_cb)(struct snapshot *sn, bool ok, void *ctx);
struct snapshot {
	struct store_conn *sc;
	char tag[16];
	struct uidset uids;
	bool with_flags;        /* no CONDSTORE or ESEARCH: UID FETCH 1:* (FLAGS), flags kept */
	struct buf flags;       /* "uid (flags)\n" per message, flags canonical (flag_list_canonical) */
	snapshot_done_cb done;
	void *ctx;
};

enum { CU_SEARCH = 1, CU_FETCH_NEW, CU_FETCH_FLAGS, CU_DONE }; /* catchup.step */

/* Update from one store response (EXISTS, EXPUNGE, OK [UIDVALIDITY|UIDNEXT|HIGHESTMODSEQ], FETCH MODSEQ/UID). */
void folder_state_track(struct folder_state *st, const struct imap_msg *m);
void folder_state_clear(struct folder_state *st);
void folder_state_copy(struct folder_state *dst, const struct folder_state *src);

/* "* ESEARCH (TAG "tag") UID ALL set": adds the set to uids; true if it answered tag. */
bool esearch_collect(const struct imap_msg *m, const char *tag, struct uidset *uids);

/* Snapshots. snapshot_start sends at once (NULL when the flags form is needed but
 * other commands are in flight, whose untagged FETCH answers could be mistaken for
 * ours); an owner with a send queue uses snapshot_new + snapshot_command and sends
 * it itself with snapshot_cmd_done as the callback, filling sn->tag when sent. */
bool snapshot_needs_flags(struct store_conn *sc);
const char *snapshot_command(const struct snapshot *sn);
struct snapshot *snapshot_new(struct store_conn *sc, snapshot_done_cb done, void *ctx);
struct snapshot *snapshot_start(struct store_conn *sc, snapshot_done_cb done, void *ctx);
/* The same when `quiet` of the commands in flight are known to bring no FETCH answers (an ending IDLE). */
struct snapshot *snapshot_start_ignoring(struct store_conn *sc, snapshot_done_cb done, void *ctx, unsigned quiet);
void snapshot_cmd_done(struct store_conn *sc, const struct imap_msg *m, void *ctx);
/* An untagged response: true if it was part of the snapshot's answer (consumed). */
bool snapshot_offer(struct snapshot *sn, const struct imap_msg *m);
void snapshot_free(struct snapshot *sn);
/* The record to save for the folder st describes, from a finished snapshot. */
void folder_rec_from_snapshot(struct gw_folder_rec *rec, const struct folder_state *st, const struct snapshot *sn);

/*
 * Start a catch-up from view `saved` (copied) on sc, where the folder is
 * selected. done gets resync=true when the events cannot be told (more than
 * max_events, UIDs reordered, flags not comparable, an EXPUNGE racing the
 * catch-up), else the events, in order. If the view cannot even be compared
 * (no ESEARCH for a CONDSTORE view) the returned catch-up has step CU_DONE
 * and done is never called.
 */
struct catchup *catchup_start(struct store_conn *sc, const struct gw_folder_rec *saved,
                              const struct pimap_prefs *prefs, long long max_events, catchup_done_cb done,
                              void *ctx);
/* An untagged response during the catch-up: true if consumed. */
bool catchup_offer(struct catchup *cu, const struct imap_msg *m);
void catchup_free(struct catchup *cu);

#endif
