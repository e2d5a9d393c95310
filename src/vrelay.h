/*
 * vrelay.h - relaying one selected mailbox through a view filter.
 *
 * The view engine between a client and an IMAP server (the store behind
 * pimap-gateway, or the server behind pimap-proxy in compatibility mode).
 * It owns the folder's fview (fview.h) and does everything a view needs on
 * the wire, without doing any I/O itself: it asks its host to send
 * commands and is given their answers.
 *
 *  - Opening: after SELECT it asks the server for the matching UIDs and for
 *    every UID (UID SEARCH RETURN (ALL), so a 100,000-message folder costs
 *    two compact answers, never a FETCH of each message), and describes
 *    the view instead of the folder (EXISTS, no RECENT, no UNSEEN). With a
 *    saved view (the client's UIDs when it last left the folder, or when
 *    its connection went away) it describes that and adds the EXPUNGE /
 *    EXISTS / FETCH events that lead to the view now.
 *  - Commands: sequence numbers and UID sets of FETCH, STORE, COPY, MOVE,
 *    SEARCH, SORT, THREAD, EXPUNGE and the UID forms become UID sets of
 *    messages in the view (long sets are split over several commands);
 *    CLOSE expunges only messages in the view; STATUS of the folder counts
 *    the view. SEARCH, SORT and THREAD answers are computed in view terms.
 *  - Responses: FETCH gets the client's number or is dropped for a hidden
 *    message; EXISTS and EXPUNGE from the server change the map, and the
 *    client learns of them as pending events, flushed by the host at a safe
 *    point (an EXPUNGE never while a command with sequence numbers is in
 *    flight). New messages enter the view only if they match: a search per
 *    burst of new mail, proportional to the burst.
 *  - The notification filter: the same search tells whether new mail
 *    passes it; the host pushes only then.
 *  - DAYSBEFORETODAY: on a new day (vrelay_tick) one search finds the
 *    messages that aged out; they leave as pending removals.
 *
 * The server must offer ESEARCH (answers tagged to our commands), UIDPLUS
 * (UID EXPUNGE, so that CLOSE and EXPUNGE spare hidden messages) and
 * UNSELECT; vrelay_server_ok() says so.
 *
 * Pure: no sockets, no libev, no logging; the host does all of that.
 */
#ifndef PIMAP_VRELAY_H
#define PIMAP_VRELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "fview.h"
#include "imap_parse.h"
#include "uidset.h"

/* Longest tag a host may use for vrelay's commands (with the NUL). */
#define VRELAY_TAG_MAX 80
/* A UID set longer than this is split over several commands (Dovecot reads
 * lines of up to 64 KiB; other servers less). */
#define VRELAY_MAX_SET_TEXT 8000

struct vrelay;

/* What opening a view produced (host->opened). */
enum vrelay_opened {
	VR_OPENED,  /* the view is open; response describes it (or the saved view, then events) */
	VR_FAILED,  /* the server refused the SELECT (or the view could not be built): no view */
	VR_RESYNC,  /* resume: the saved view cannot be caught up; the view is open and fresh */
};

struct vrelay_host {
	/*
	 * Send one command: text is everything after the tag, CRLF included,
	 * literals non-synchronising. tag_out (VRELAY_TAG_MAX bytes, owned by
	 * vrelay) must hold the tag by the time the server can answer. The host
	 * calls vrelay_done(vr, cookie, m) with the tagged reply.
	 */
	void (*send)(void *ctx, const uint8_t *text, size_t len, uint32_t cookie, char *tag_out);
	/* A client command taken by vrelay_command finished: data is its last
	 * untagged lines (if any) and the tagged line, with the client's tag. */
	void (*finished)(void *ctx, void *cmd, const uint8_t *data, size_t len);
	/*
	 * vrelay_open finished. response: the untagged part of the SELECT
	 * response for the client (SELECT mode; the host adds the tagged line),
	 * or nothing (resume mode). events: what the client must be told after
	 * it (saved views), in order.
	 */
	void (*opened)(void *ctx, enum vrelay_opened result, const struct buf *response, const struct buf *events);
	/* New pending events (vrelay_pending says which): the host pushes or waits. */
	void (*pending)(void *ctx);
	/* The server's numbers went out of step with the view: the host must end
	 * the client's session (the view cannot be trusted any more). */
	void (*lost)(void *ctx, const char *why);
};

struct vrelay_saved {
	struct uidset uids;   /* the client's view */
	uint64_t modseq;      /* HIGHESTMODSEQ then, 0 if unknown (flags not compared: resync) */
	uint32_t uidnext;     /* the client's UIDNEXT then */
};

struct vrelay_config {
	const char *mailbox;      /* the selected mailbox (for STATUS) */
	const char *view;         /* xfilter canonical view value ("ALL" for none) */
	const char *notify;       /* xfilter canonical notification value */
	long today;               /* xfilter_today() */
	const char *new_items;    /* PIMAP_INBAND_NEW_FORMAT fetch items for saved-view arrivals, or NULL */
	long long max_events;     /* more pending events than this after a saved view: fresh / RESYNC */
	bool condstore;           /* the server offers CONDSTORE (flag changes of a saved view) */
};

/* True if the server's capabilities allow views; else why not in why. */
bool vrelay_server_ok(const char *caps, char *why, size_t whylen);

/* A relay for one selected mailbox. cfg is copied. NULL if the criteria are not valid. */
struct vrelay *vrelay_new(const struct vrelay_host *host, void *ctx, const struct vrelay_config *cfg);
void vrelay_free(struct vrelay *vr);

enum vrelay_open_mode {
	VR_OPEN_SELECT, /* the client's SELECT/EXAMINE was just sent: rewrite its response */
	VR_OPEN_RESUME, /* the mailbox is selected on the connection already: events only */
};
/* Start: send the searches (SELECT mode: right behind the SELECT). saved may be NULL (copied). */
void vrelay_open(struct vrelay *vr, enum vrelay_open_mode mode, const struct vrelay_saved *saved);
/* SELECT mode: the SELECT's tagged reply. */
void vrelay_select_done(struct vrelay *vr, const struct imap_msg *m);
bool vrelay_is_open(const struct vrelay *vr);
/* Commands of vrelay's own are still waiting for their answers. */
bool vrelay_busy(const struct vrelay *vr);

/* The tagged reply of a command vrelay sent. */
void vrelay_done(struct vrelay *vr, uint32_t cookie, const struct imap_msg *m);

/*
 * Every untagged response the server sends while the mailbox is selected,
 * in order, before anything else looks at it.
 */
enum vrelay_untagged {
	VRU_PASS,     /* not the view's business: handle it as usual */
	VRU_OUT,      /* give out (the rewritten response) instead */
	VRU_CONSUMED, /* nothing for the client (now) */
};
enum vrelay_untagged vrelay_untagged(struct vrelay *vr, const struct imap_msg *m, struct buf *out);

/*
 * A client command in the selected mailbox. VR_PASS: relay it as usual
 * (its answers still go through vrelay_untagged). VR_TAKEN: vrelay sends
 * what is needed and calls host->finished(cmd) (possibly before this
 * returns). *seqnums: the command uses the client's sequence numbers (no
 * EXPUNGE may reach the client while it is in flight).
 */
enum vrelay_take { VR_PASS, VR_TAKEN };
enum vrelay_take vrelay_command(struct vrelay *vr, const struct imap_msg *m, void *cmd, bool *seqnums);
/*
 * The client leaves the folder (CLOSE, UNSELECT, SELECT of another): no more
 * events are started or announced. For CLOSE on a read-write view
 * (readonly false) the view's own messages are expunged first (UID EXPUNGE
 * host->send'ed now) and the host relays "UNSELECT" in place of CLOSE, so
 * that hidden \Deleted messages stay: returns true then.
 */
bool vrelay_close(struct vrelay *vr, bool readonly);

/*
 * Replies wait for new mail to be decided: the first call for a reply
 * that is ready takes a mark (every EXISTS the store sent before it has
 * been seen) in *mark, which the host keeps with the reply, 0 until then;
 * true while the search covering those EXISTS is not answered. The host
 * holds the reply until false, so that a NOOP tells of the new mail the
 * store had reported by then (one more round trip to the store, never
 * more: later mail does not hold it). host->pending is called when a
 * round ends.
 */
bool vrelay_reply_waits(const struct vrelay *vr, uint64_t *mark);

/* What is pending for the client. */
struct vrelay_pending {
	uint32_t arrivals;   /* new messages ready to announce */
	bool     notify;     /* one of them passes the notification filter */
	bool     removals;   /* EXPUNGEs to tell */
};
void vrelay_pending(const struct vrelay *vr, struct vrelay_pending *p);
/* Tell the client: removals (if allowed) as EXPUNGE, then arrivals as one EXISTS. */
void vrelay_flush(struct vrelay *vr, bool removals, bool arrivals, struct buf *out);
/* Announce the arrivals without EXISTS (the host pushes them as FETCH:
 * PIMAP_INBAND_NEW_FORMAT); their UIDs to uids. Returns the client's count before. */
uint32_t vrelay_take_arrivals(struct vrelay *vr, struct uidset *uids);

/* A new day: start the ageing search if the view uses DAYSBEFORETODAY. */
void vrelay_tick(struct vrelay *vr, long today);

/* The client's view now (for saving it): UIDs as told. */
void vrelay_told(const struct vrelay *vr, struct uidset *out);
const struct fview *vrelay_view(const struct vrelay *vr);

#endif
