/*
 * syncdiff.h - turn "what the client saw" and "what the store has now" into
 * the ordinary IMAP events that move the client from one to the other.
 *
 * This is how the gateway delivers a folder's pending changes after a
 * resume, a gateway restart or a return to a folder: it does not replay a
 * log, it diffs two UID lists (plus CONDSTORE or flag comparison for flags,
 * done by the caller) and emits EXPUNGE and EXISTS responses whose sequence
 * numbers are right at the moment each one is read. Pure: no I/O.
 */
#ifndef PIMAP_SYNCDIFF_H
#define PIMAP_SYNCDIFF_H

#include <stddef.h>
#include <stdint.h>

#include "uidset.h"

enum sync_event_kind {
	SYNC_EXPUNGE, /* "* seq EXPUNGE": seq in the view as it is just before this event */
	SYNC_EXISTS,  /* "* seq EXISTS": the new message count; uid is the message added */
};

struct sync_event {
	enum sync_event_kind kind;
	uint32_t seq;
	uint32_t uid;
};

struct sync_diff {
	struct sync_event *events;
	size_t count;
	size_t expunged;   /* number of SYNC_EXPUNGE events */
	size_t added;      /* number of SYNC_EXISTS events */
};

enum syncdiff_result {
	SYNCDIFF_OK,
	SYNCDIFF_REORDERED, /* a new UID is below a UID the client still holds: no
	                       sequence of EXPUNGE/EXISTS can express it (RESYNC) */
};

/*
 * Compute the events from view `seen` to view `now`. EXPUNGEs come first,
 * highest sequence number first (so each number is still valid when read),
 * then one EXISTS per new message in ascending UID order. The caller frees
 * with syncdiff_free. Applying the events to `seen` yields exactly `now`.
 */
enum syncdiff_result syncdiff_compute(const struct uidset *seen, const struct uidset *now, struct sync_diff *out);
void syncdiff_free(struct sync_diff *diff);

#endif
