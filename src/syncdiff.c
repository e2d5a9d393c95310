/*
 * syncdiff.c - the EXPUNGE/EXISTS events that move a client from the UID
 * list it saw to the UID list the store has now (see syncdiff.h).
 *
 * Both lists are sorted, so one merge pass finds what left and what came;
 * a second pass writes the events with the sequence numbers each one has at
 * the moment the client reads it. Pure: no I/O.
 */
#include "config.h"

#include <stdlib.h>

#include "syncdiff.h"

/*
 * On SYNCDIFF_REORDERED, *out is left empty (no events) so that
 * syncdiff_free() is always safe; the caller sends RESYNC instead.
 */
enum syncdiff_result syncdiff_compute(const struct uidset *seen, const struct uidset *now, struct sync_diff *out)
{
	size_t i = 0, j = 0, expunged = 0, added = 0, kept = 0;
	uint32_t max_kept = 0, min_added = 0;
	size_t e, a, count;

	out->events = NULL;
	out->count = 0;
	out->expunged = 0;
	out->added = 0;

	/* pass 1: count, and find the highest UID both views hold */
	while (i < seen->count || j < now->count) {
		if (j == now->count || (i < seen->count && seen->uids[i] < now->uids[j])) {
			expunged++;
			i++;
		} else if (i == seen->count || now->uids[j] < seen->uids[i]) {
			if (added == 0)
				min_added = now->uids[j];
			added++;
			j++;
		} else {
			max_kept = seen->uids[i];
			kept++;
			i++;
			j++;
		}
	}
	/* EXISTS only ever appends at the end of the view: a new message that
	 * sorts before a kept one would land at the wrong sequence number.
	 * (max_kept is 0 when nothing is kept.) */
	if (added && min_added < max_kept)
		return SYNCDIFF_REORDERED;
	if (expunged + added == 0)
		return SYNCDIFF_OK;

	out->events = xcalloc(expunged + added, sizeof(out->events[0]));
	out->count = expunged + added;
	out->expunged = expunged;
	out->added = added;

	/* pass 2: expunges fill the array from the back, so the highest sequence
	 * number comes first and lower ones stay valid as each is applied;
	 * additions follow in ascending UID order */
	i = 0;
	j = 0;
	e = expunged;
	a = expunged;
	count = kept;
	while (i < seen->count || j < now->count) {
		if (j == now->count || (i < seen->count && seen->uids[i] < now->uids[j])) {
			out->events[--e] = (struct sync_event){SYNC_EXPUNGE, (uint32_t)(i + 1), seen->uids[i]};
			i++;
		} else if (i == seen->count || now->uids[j] < seen->uids[i]) {
			count++;
			out->events[a++] = (struct sync_event){SYNC_EXISTS, (uint32_t)count, now->uids[j]};
			j++;
		} else {
			i++;
			j++;
		}
	}
	return SYNCDIFF_OK;
}

void syncdiff_free(struct sync_diff *diff)
{
	free(diff->events);
	diff->events = NULL;
	diff->count = 0;
	diff->expunged = 0;
	diff->added = 0;
}
