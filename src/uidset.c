/*
 * uidset.c - a set of IMAP UIDs kept as a sorted array (see uidset.h).
 *
 * The array is the gateway's picture of a folder: position n holds the UID
 * of message sequence number n, so lookups are binary searches and the
 * common cases (the store reports UIDs in ascending order, new mail gets a
 * higher UID) are appends. Pure: no I/O, no logging.
 */
#include "config.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uidset.h"

/* First allocation; later growth doubles, so n appends cost O(n) in total. */
#define UIDSET_MIN_CAP 16u

static void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* Make room for at least `want` members in total. */
static void reserve(struct uidset *set, size_t want)
{
	size_t cap;

	if (want <= set->cap)
		return;
	cap = set->cap ? set->cap : UIDSET_MIN_CAP;
	while (cap < want)
		cap *= 2;
	set->uids = xrealloc(set->uids, cap * sizeof(set->uids[0]));
	set->cap = cap;
}

/* Index of the first member >= uid (set->count if there is none). */
static size_t lower_bound(const struct uidset *set, uint32_t uid)
{
	size_t lo = 0, hi = set->count;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (set->uids[mid] < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

void uidset_init(struct uidset *set)
{
	set->uids = NULL;
	set->count = 0;
	set->cap = 0;
}

void uidset_free(struct uidset *set)
{
	free(set->uids);
	uidset_init(set);
}

/* Keeps the allocation: a set that is refilled (every resync) does not churn. */
void uidset_clear(struct uidset *set)
{
	set->count = 0;
}

/* dst must be initialised; its old members are replaced (its allocation reused). */
void uidset_copy(struct uidset *dst, const struct uidset *src)
{
	if (dst == src)
		return;
	dst->count = 0;
	reserve(dst, src->count);
	if (src->count)
		memcpy(dst->uids, src->uids, src->count * sizeof(src->uids[0]));
	dst->count = src->count;
}

void uidset_add(struct uidset *set, uint32_t uid)
{
	size_t pos;

	assert(uid > 0);
	/* the common case: UIDs arrive in ascending order */
	if (set->count == 0 || uid > set->uids[set->count - 1]) {
		reserve(set, set->count + 1);
		set->uids[set->count++] = uid;
		return;
	}
	pos = lower_bound(set, uid);
	if (set->uids[pos] == uid)
		return;
	reserve(set, set->count + 1);
	memmove(&set->uids[pos + 1], &set->uids[pos], (set->count - pos) * sizeof(set->uids[0]));
	set->uids[pos] = uid;
	set->count++;
}

/*
 * Members below first stay, members inside [first, last] are replaced by the
 * whole range, members above last move up: one memmove, however many of the
 * range's UIDs were already present.
 */
void uidset_add_range(struct uidset *set, uint32_t first, uint32_t last)
{
	size_t lo, hi, span, newcount;
	uint32_t *dst;

	assert(first > 0 && first <= last);
	span = (size_t)(last - first) + 1;
	lo = lower_bound(set, first);
	hi = last == UINT32_MAX ? set->count : lower_bound(set, last + 1);
	newcount = lo + span + (set->count - hi);
	reserve(set, newcount);
	memmove(&set->uids[lo + span], &set->uids[hi], (set->count - hi) * sizeof(set->uids[0]));
	dst = &set->uids[lo];
	for (size_t i = 0; i < span; i++)
		dst[i] = first + (uint32_t)i;
	set->count = newcount;
}

bool uidset_remove(struct uidset *set, uint32_t uid)
{
	size_t pos = lower_bound(set, uid);

	if (pos == set->count || set->uids[pos] != uid)
		return false;
	memmove(&set->uids[pos], &set->uids[pos + 1], (set->count - pos - 1) * sizeof(set->uids[0]));
	set->count--;
	return true;
}

bool uidset_contains(const struct uidset *set, uint32_t uid)
{
	return uidset_seq_of(set, uid) != 0;
}

size_t uidset_seq_of(const struct uidset *set, uint32_t uid)
{
	size_t pos = lower_bound(set, uid);

	if (pos == set->count || set->uids[pos] != uid)
		return 0;
	return pos + 1;
}

uint32_t uidset_max(const struct uidset *set)
{
	return set->count ? set->uids[set->count - 1] : 0;
}

/* ---- parsing -------------------------------------------------------------- */

struct uid_range {
	uint32_t first;
	uint32_t last;
};

static int range_cmp(const void *a, const void *b)
{
	const struct uid_range *x = a, *y = b;

	if (x->first != y->first)
		return x->first < y->first ? -1 : 1;
	return 0;
}

/*
 * Read one nz-number at text[*pos]: 1..4294967295 without a leading zero
 * (RFC 3501 nz-number). Returns 0 and advances *pos, or -1 with err.
 */
static int parse_uid(const char *text, size_t len, size_t *pos, uint32_t *out, char *err, size_t errlen)
{
	size_t i = *pos;
	uint64_t v = 0;

	if (i >= len || text[i] < '0' || text[i] > '9') {
		if (i >= len)
			set_err(err, errlen, "invalid UID set: missing number at the end");
		else if (text[i] == ',')
			set_err(err, errlen, "invalid UID set: empty element at offset %zu", i);
		else if (text[i] == ':')
			set_err(err, errlen, "invalid UID set: missing number before \":\" at offset %zu", i);
		else if (text[i] == '*')
			set_err(err, errlen, "invalid UID set: \"*\" is not accepted here");
		else
			set_err(err, errlen, "invalid UID set: unexpected character at offset %zu", i);
		return -1;
	}
	if (text[i] == '0') {
		set_err(err, errlen, "invalid UID set: UIDs start at 1 and have no leading zero (offset %zu)", i);
		return -1;
	}
	while (i < len && text[i] >= '0' && text[i] <= '9') {
		v = v * 10 + (uint64_t)(text[i] - '0');
		if (v > UINT32_MAX) {
			set_err(err, errlen, "invalid UID set: number at offset %zu exceeds 4294967295", *pos);
			return -1;
		}
		i++;
	}
	*pos = i;
	*out = (uint32_t)v;
	return 0;
}

/* One element of a sequence set that may be "*" (star). */
static int parse_seq_elem(const char *text, size_t len, size_t *pos, uint32_t star, uint32_t *out, char *err,
                          size_t errlen)
{
	if (*pos < len && text[*pos] == '*') {
		(*pos)++;
		*out = star;
		return 0;
	}
	return parse_uid(text, len, pos, out, err, errlen);
}

/* Sort and coalesce ranges in place; returns how many remain. */
static size_t coalesce_ranges(struct uid_range *ranges, size_t nranges)
{
	if (!nranges)
		return 0;
	qsort(ranges, nranges, sizeof(ranges[0]), range_cmp);
	size_t n = 0;
	for (size_t i = 1; i < nranges; i++) {
		/* overlapping or adjacent: widen; last + 1 cannot overflow when last < first - 1 */
		if (ranges[i].first <= ranges[n].last || ranges[i].first - 1 == ranges[n].last) {
			if (ranges[i].last > ranges[n].last)
				ranges[n].last = ranges[i].last;
		} else {
			ranges[++n] = ranges[i];
		}
	}
	return n + 1;
}

int uidset_parse_ranges(const char *text, size_t len, uint32_t star, struct seq_range **out, size_t *nout,
                        char *err, size_t errlen)
{
	struct uid_range *ranges = NULL;
	size_t nranges = 0, rcap = 0, pos = 0;

	*out = NULL;
	*nout = 0;
	if (len == 0) {
		set_err(err, errlen, "empty sequence set");
		return -1;
	}
	for (;;) {
		struct uid_range r;
		if (parse_seq_elem(text, len, &pos, star, &r.first, err, errlen) < 0)
			goto fail;
		r.last = r.first;
		if (pos < len && text[pos] == ':') {
			pos++;
			if (parse_seq_elem(text, len, &pos, star, &r.last, err, errlen) < 0)
				goto fail;
		}
		if (r.last < r.first) { /* "9:7" and "n:*" below n mean 7:9 (RFC 9051) */
			uint32_t t = r.first;
			r.first = r.last;
			r.last = t;
		}
		if (r.first == 0) { /* "*" of an empty mailbox matches nothing */
			if (r.last == 0)
				goto next;
			r.first = 1;
		}
		if (nranges == rcap) {
			rcap = rcap ? rcap * 2 : 8;
			ranges = xrealloc(ranges, rcap * sizeof(ranges[0]));
		}
		ranges[nranges++] = r;
	next:
		if (pos == len)
			break;
		if (text[pos] != ',') {
			set_err(err, errlen, "invalid sequence set: unexpected character at offset %zu", pos);
			goto fail;
		}
		if (++pos == len) {
			set_err(err, errlen, "invalid sequence set: trailing \",\"");
			goto fail;
		}
	}
	nranges = coalesce_ranges(ranges, nranges);
	*out = xmalloc((nranges ? nranges : 1) * sizeof(**out));
	for (size_t i = 0; i < nranges; i++)
		(*out)[i] = (struct seq_range){ranges[i].first, ranges[i].last};
	*nout = nranges;
	free(ranges);
	return 0;
fail:
	free(ranges);
	return -1;
}

bool seq_ranges_contain(const struct seq_range *r, size_t n, uint32_t v)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (r[mid].last < v)
			lo = mid + 1;
		else if (r[mid].first > v)
			hi = mid;
		else
			return true;
	}
	return false;
}

/*
 * Adding the ranges member by member in input order would be quadratic for
 * an unsorted set; instead the ranges are sorted and coalesced (the number of
 * ranges is bounded by the text length), then merged with the existing
 * members in one linear pass into a fresh array.
 */
int uidset_parse(struct uidset *set, const char *text, size_t len, char *err, size_t errlen)
{
	struct uid_range *ranges = NULL;
	size_t nranges = 0, rcap = 0, pos = 0, out, si, merged_cap;
	uint64_t members = 0;
	uint32_t *merged;

	if (len == 0)
		return 0;
	for (;;) {
		struct uid_range r;

		if (parse_uid(text, len, &pos, &r.first, err, errlen) < 0)
			goto fail;
		r.last = r.first;
		if (pos < len && text[pos] == ':') {
			pos++;
			if (parse_uid(text, len, &pos, &r.last, err, errlen) < 0)
				goto fail;
			if (r.last < r.first) { /* "9:7" means 7:9 (RFC 3501 seq-range) */
				uint32_t t = r.first;
				r.first = r.last;
				r.last = t;
			}
		}
		members += (uint64_t)(r.last - r.first) + 1;
		if (members > UIDSET_MAX_PARSE_COUNT) {
			set_err(err, errlen, "invalid UID set: more than %u UIDs", UIDSET_MAX_PARSE_COUNT);
			goto fail;
		}
		if (nranges == rcap) {
			rcap = rcap ? rcap * 2 : 16;
			ranges = xrealloc(ranges, rcap * sizeof(ranges[0]));
		}
		ranges[nranges++] = r;
		if (pos == len)
			break;
		if (text[pos] != ',') {
			set_err(err, errlen, "invalid UID set: unexpected character at offset %zu", pos);
			goto fail;
		}
		pos++;
		if (pos == len) {
			set_err(err, errlen, "invalid UID set: trailing \",\"");
			goto fail;
		}
	}

	nranges = coalesce_ranges(ranges, nranges);

	/* the union is at most both sizes (members counts before dedupe) */
	merged_cap = set->count + (size_t)members;
	merged = xmalloc(merged_cap * sizeof(merged[0]));
	out = 0;
	si = 0;
	for (size_t ri = 0; ri < nranges; ri++) {
		while (si < set->count && set->uids[si] < ranges[ri].first)
			merged[out++] = set->uids[si++];
		for (uint64_t u = ranges[ri].first; u <= ranges[ri].last; u++)
			merged[out++] = (uint32_t)u;
		while (si < set->count && set->uids[si] <= ranges[ri].last)
			si++; /* already covered by the range */
	}
	while (si < set->count)
		merged[out++] = set->uids[si++];
	free(set->uids);
	free(ranges);
	set->uids = merged;
	set->count = out;
	set->cap = merged_cap;
	return 0;

fail:
	free(ranges);
	return -1;
}

/* ---- formatting and set algebra ------------------------------------------- */

void uidset_format(const struct uidset *set, struct buf *out)
{
	size_t i = 0;

	while (i < set->count) {
		size_t j = i;
		while (j + 1 < set->count && set->uids[j + 1] == set->uids[j] + 1)
			j++;
		if (j == i)
			buf_printf(out, "%s%u", i ? "," : "", (unsigned)set->uids[i]);
		else
			buf_printf(out, "%s%u:%u", i ? "," : "", (unsigned)set->uids[i], (unsigned)set->uids[j]);
		i = j + 1;
	}
}

void uidset_difference(const struct uidset *a, const struct uidset *b, struct uidset *out)
{
	size_t i = 0, j = 0;

	assert(out != a && out != b);
	uidset_clear(out);
	reserve(out, a->count);
	while (i < a->count) {
		while (j < b->count && b->uids[j] < a->uids[i])
			j++;
		if (j == b->count || b->uids[j] != a->uids[i])
			out->uids[out->count++] = a->uids[i];
		i++;
	}
}

void uidset_intersection(const struct uidset *a, const struct uidset *b, struct uidset *out)
{
	size_t i = 0, j = 0;

	assert(out != a && out != b);
	uidset_clear(out);
	reserve(out, a->count < b->count ? a->count : b->count);
	while (i < a->count && j < b->count) {
		if (a->uids[i] < b->uids[j]) {
			i++;
		} else if (a->uids[i] > b->uids[j]) {
			j++;
		} else {
			out->uids[out->count++] = a->uids[i];
			i++;
			j++;
		}
	}
}
