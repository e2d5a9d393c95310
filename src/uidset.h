/*
 * uidset.h - a set of IMAP UIDs kept as a sorted array.
 *
 * The gateway's picture of what a client has seen in a folder is the ordered
 * list of UIDs (message sequence number n is the n-th UID). A sorted array
 * makes "sequence number of UID u" a binary search, and serialises to the
 * compact IMAP form "1:500,502,510:900" for the state database and for
 * commands sent to the store. Pure: no I/O.
 */
#ifndef PIMAP_UIDSET_H
#define PIMAP_UIDSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

struct uidset {
	uint32_t *uids;  /* ascending, no duplicates, no 0 */
	size_t    count;
	size_t    cap;
};

void uidset_init(struct uidset *set);
void uidset_free(struct uidset *set);
void uidset_clear(struct uidset *set);
void uidset_copy(struct uidset *dst, const struct uidset *src);

/* Insert uid (> 0) keeping order; no-op if present. Appending in ascending order is O(1). */
void uidset_add(struct uidset *set, uint32_t uid);
/* Add first..last inclusive (first <= last, both > 0). */
void uidset_add_range(struct uidset *set, uint32_t first, uint32_t last);
/* Remove uid if present; returns true if it was. */
bool uidset_remove(struct uidset *set, uint32_t uid);

bool uidset_contains(const struct uidset *set, uint32_t uid);
/* 1-based position of uid (its sequence number in a view of exactly this set), or 0. */
size_t uidset_seq_of(const struct uidset *set, uint32_t uid);
/* Largest UID, or 0 when empty. */
uint32_t uidset_max(const struct uidset *set);

/*
 * Parse an IMAP sequence-set of UIDs ("1:5,7,9:8"; ranges may be reversed;
 * "*" is refused; "" is the empty set) and add it to set. Returns 0, or -1
 * with a message in err (set unchanged on error). Ranges larger than
 * UIDSET_MAX_PARSE_COUNT members in total are refused (a hostile "1:4294967295").
 */
#define UIDSET_MAX_PARSE_COUNT 10000000u
int uidset_parse(struct uidset *set, const char *text, size_t len, char *err, size_t errlen);

/*
 * A message sequence set or UID set as sorted, coalesced ranges, "*" standing
 * for star (the largest number in use; 0 for an empty mailbox, where "*"
 * alone matches nothing). Reversed ranges are turned around ("n:*" with n
 * above star is star:n, RFC 9051). Members are not materialised, so
 * "1:4294967295" costs one range. Returns 0 with a malloc'd array in *out
 * (free it), or -1 with a message in err.
 */
struct seq_range {
	uint32_t first, last;
};
int uidset_parse_ranges(const char *text, size_t len, uint32_t star, struct seq_range **out, size_t *nout,
                        char *err, size_t errlen);
bool seq_ranges_contain(const struct seq_range *r, size_t n, uint32_t v);

/* Append the compact form ("1:3,5") to out; nothing for the empty set. */
void uidset_format(const struct uidset *set, struct buf *out);

/* out = a minus b (out must be distinct from a and b; it is cleared first). */
void uidset_difference(const struct uidset *a, const struct uidset *b, struct uidset *out);
/* out = a intersect b. */
void uidset_intersection(const struct uidset *a, const struct uidset *b, struct uidset *out);

#endif
