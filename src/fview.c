/*
 * fview.c - the map of a filtered view (see fview.h).
 *
 * Positions: every message the store has reported with a known UID has a
 * position, in UID order; new messages get positions at the end, so the
 * UID array stays sorted and a UID is found by binary search. A position
 * keeps its place after an expunge until a compaction removes it, so that
 * Fenwick trees over "alive" and "told" give the store's and the client's
 * sequence numbers as prefix sums.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fview.h"

enum {
	B_ALIVE = 1,   /* the store has it */
	B_MATCH = 2,   /* in the view */
	B_TOLD = 4,    /* the client knows it */
	B_DECIDED = 8, /* membership known */
};

struct fview {
	uint32_t *uid;      /* per position, ascending */
	uint8_t  *bits;
	uint32_t *f_alive;  /* Fenwick trees, 1-based, n entries */
	uint32_t *f_told;
	size_t    n, cap;
	uint32_t  n_alive, n_told;
	size_t    n_dead;   /* positions neither alive nor told (compaction drops them) */
	uint32_t  unknown;  /* store messages after the last position, UIDs not yet known */
	size_t    scan;     /* positions before this one hold no arrival */
	struct uidset zombies; /* told UIDs to remove from the client's view */
};

/* ------------------------------------------------------------------------ */
/* Fenwick trees                                                             */

static void fw_add(uint32_t *f, size_t n, size_t i, int delta)
{
	for (; i <= n; i += i & (~i + 1))
		f[i] = (uint32_t)((int64_t)f[i] + delta);
}

static uint32_t fw_prefix(const uint32_t *f, size_t i)
{
	uint32_t s = 0;
	for (; i > 0; i -= i & (~i + 1))
		s += f[i];
	return s;
}

/* The smallest i with prefix(i) >= k (1 <= k <= total). */
static size_t fw_find(const uint32_t *f, size_t n, uint32_t k)
{
	size_t pos = 0, step = 1;
	while (step * 2 <= n)
		step *= 2;
	for (; step; step /= 2) {
		if (pos + step <= n && f[pos + step] < k) {
			pos += step;
			k -= f[pos];
		}
	}
	return pos + 1;
}

/* Fenwick entry for a new last index i whose own value is v. */
static uint32_t fw_append_value(const uint32_t *f, size_t i, uint32_t v)
{
	size_t low = i & (~i + 1);
	return v + fw_prefix(f, i - 1) - fw_prefix(f, i - low);
}

static void fw_rebuild(uint32_t *f, size_t n, const uint8_t *bits, uint8_t mask)
{
	for (size_t i = 1; i <= n; i++)
		f[i] = (bits[i - 1] & mask) ? 1 : 0;
	for (size_t i = 1; i <= n; i++) {
		size_t j = i + (i & (~i + 1));
		if (j <= n)
			f[j] += f[i];
	}
}

/* ------------------------------------------------------------------------ */
/* positions                                                                 */

static void reserve(struct fview *v, size_t want)
{
	if (want <= v->cap)
		return;
	size_t cap = v->cap ? v->cap : 64;
	while (cap < want)
		cap *= 2;
	v->uid = xrealloc(v->uid, cap * sizeof(*v->uid));
	v->bits = xrealloc(v->bits, cap);
	v->f_alive = xrealloc(v->f_alive, (cap + 1) * sizeof(*v->f_alive));
	v->f_told = xrealloc(v->f_told, (cap + 1) * sizeof(*v->f_told));
	v->cap = cap;
}

static void append_pos(struct fview *v, uint32_t uid, uint8_t bits)
{
	reserve(v, v->n + 1);
	v->uid[v->n] = uid;
	v->bits[v->n] = bits;
	v->n++;
	v->f_alive[0] = v->f_told[0] = 0;
	v->f_alive[v->n] = fw_append_value(v->f_alive, v->n, (bits & B_ALIVE) ? 1 : 0);
	v->f_told[v->n] = fw_append_value(v->f_told, v->n, (bits & B_TOLD) ? 1 : 0);
	if (bits & B_ALIVE)
		v->n_alive++;
	if (bits & B_TOLD)
		v->n_told++;
}

/* Position of uid, or SIZE_MAX. */
static size_t find_pos(const struct fview *v, uint32_t uid)
{
	size_t lo = 0, hi = v->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (v->uid[mid] < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < v->n && v->uid[lo] == uid ? lo : SIZE_MAX;
}

/* First position with uid >= u. */
static size_t lower_pos(const struct fview *v, uint32_t u)
{
	size_t lo = 0, hi = v->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (v->uid[mid] < u)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void set_bit(struct fview *v, size_t pos, uint8_t bit, bool on)
{
	bool was = (v->bits[pos] & bit) != 0;
	if (was == on)
		return;
	bool was_dead = !(v->bits[pos] & (B_ALIVE | B_TOLD));
	if (on)
		v->bits[pos] |= bit;
	else
		v->bits[pos] &= (uint8_t)~bit;
	if (bit == B_ALIVE) {
		fw_add(v->f_alive, v->n, pos + 1, on ? 1 : -1);
		v->n_alive += on ? 1 : (uint32_t)-1;
	} else if (bit == B_TOLD) {
		fw_add(v->f_told, v->n, pos + 1, on ? 1 : -1);
		v->n_told += on ? 1 : (uint32_t)-1;
	}
	bool is_dead = !(v->bits[pos] & (B_ALIVE | B_TOLD));
	if (is_dead && !was_dead)
		v->n_dead++;
	else if (!is_dead && was_dead)
		v->n_dead--;
}

/*
 * Drop positions that are neither alive nor told, once they are many: each
 * compaction is O(n) and follows at least n/2 expunges, so its cost is
 * spread over them.
 */
static void maybe_compact(struct fview *v)
{
	if (v->n_dead < FVIEW_COMPACT_MIN || v->n_dead * 2 < v->n)
		return;
	size_t k = 0, scan = v->n;
	for (size_t i = 0; i < v->n; i++) {
		if (i == v->scan)
			scan = k;
		if (!(v->bits[i] & (B_ALIVE | B_TOLD)))
			continue;
		v->uid[k] = v->uid[i];
		v->bits[k] = v->bits[i];
		k++;
	}
	v->scan = v->scan >= v->n ? k : scan;
	v->n = k;
	v->n_dead = 0;
	fw_rebuild(v->f_alive, v->n, v->bits, B_ALIVE);
	fw_rebuild(v->f_told, v->n, v->bits, B_TOLD);
}

/* ------------------------------------------------------------------------ */
/* life cycle and queries                                                    */

struct fview *fview_new(void)
{
	struct fview *v = xcalloc(1, sizeof(*v));
	uidset_init(&v->zombies);
	reserve(v, 64);
	return v;
}

void fview_free(struct fview *v)
{
	if (!v)
		return;
	free(v->uid);
	free(v->bits);
	free(v->f_alive);
	free(v->f_told);
	uidset_free(&v->zombies);
	free(v);
}

void fview_load(struct fview *v, const struct uidset *all, const struct uidset *match)
{
	fview_load_told(v, all, match, UINT32_MAX, NULL);
}

int fview_load_told(struct fview *v, const struct uidset *all, const struct uidset *match, uint32_t undecided_from,
                    const struct uidset *told)
{
	v->n = 0;
	v->n_alive = v->n_told = 0;
	v->n_dead = 0;
	v->unknown = 0;
	uidset_clear(&v->zombies);
	reserve(v, all->count + (told ? told->count : 0) + 1);
	size_t i = 0, j = 0, k = 0;
	size_t nt = told ? told->count : 0;
	while (i < all->count || k < nt) {
		/* merge all and told: a told UID the store lost is kept as a removal */
		uint32_t u;
		bool alive;
		if (k >= nt || (i < all->count && all->uids[i] <= told->uids[k])) {
			u = all->uids[i++];
			alive = true;
			if (k < nt && told->uids[k] == u)
				k++;
		} else {
			u = told->uids[k++];
			alive = false;
		}
		while (j < match->count && match->uids[j] < u)
			j++;
		bool m = j < match->count && match->uids[j] == u;
		uint8_t b = alive ? B_ALIVE : 0;
		if (!alive || u < undecided_from)
			b |= B_DECIDED | (m && alive ? B_MATCH : 0);
		bool t = told ? uidset_contains(told, u) : (b & B_MATCH) != 0;
		if (t)
			b |= B_TOLD;
		v->uid[v->n] = u;
		v->bits[v->n] = b;
		v->n++;
		if (alive)
			v->n_alive++;
		if (t)
			v->n_told++;
		if (!alive && !t)
			v->n_dead++;
		if (t && !(b & B_MATCH) && (b & B_DECIDED))
			uidset_add(&v->zombies, u);
	}
	fw_rebuild(v->f_alive, v->n, v->bits, B_ALIVE);
	fw_rebuild(v->f_told, v->n, v->bits, B_TOLD);
	/* arrivals (and undecided messages) are looked for from the first
	 * undecided position or the one after the last told, whichever is first */
	v->scan = 0;
	for (size_t p = v->n; p-- > 0;)
		if (v->bits[p] & B_TOLD) {
			v->scan = p + 1;
			break;
		}
	for (size_t p = 0; p < v->scan; p++)
		if ((v->bits[p] & B_ALIVE) && !(v->bits[p] & B_DECIDED)) {
			v->scan = p;
			break;
		}
	return fview_reordered(v) ? -1 : 0;
}

bool fview_reordered(const struct fview *v)
{
	size_t last = SIZE_MAX;
	for (size_t p = v->n; p-- > 0;)
		if (v->bits[p] & B_TOLD) {
			last = p;
			break;
		}
	for (size_t p = 0; last != SIZE_MAX && p < last; p++) {
		uint8_t b = v->bits[p];
		if ((b & B_ALIVE) && (b & B_DECIDED) && (b & B_MATCH) && !(b & B_TOLD))
			return true;
	}
	return false;
}

void fview_reset_told(struct fview *v)
{
	v->n_told = 0;
	v->n_dead = 0;
	size_t last_told = 0;
	for (size_t p = 0; p < v->n; p++) {
		uint8_t b = v->bits[p];
		bool t = (b & B_ALIVE) && (b & B_DECIDED) && (b & B_MATCH);
		v->bits[p] = (uint8_t)(t ? (b | B_TOLD) : (b & ~B_TOLD));
		if (t) {
			v->n_told++;
			last_told = p + 1;
		}
		if (!(v->bits[p] & (B_ALIVE | B_TOLD)))
			v->n_dead++;
	}
	fw_rebuild(v->f_told, v->n, v->bits, B_TOLD);
	uidset_clear(&v->zombies);
	v->scan = last_told;
	for (size_t p = 0; p < last_told; p++)
		if ((v->bits[p] & B_ALIVE) && !(v->bits[p] & B_DECIDED)) {
			v->scan = p;
			break;
		}
}

uint32_t fview_first_undecided(const struct fview *v)
{
	for (size_t i = v->scan; i < v->n; i++)
		if ((v->bits[i] & B_ALIVE) && !(v->bits[i] & B_DECIDED))
			return v->uid[i];
	return 0;
}

uint32_t fview_count(const struct fview *v)
{
	return v->n_told;
}

uint32_t fview_store_count(const struct fview *v)
{
	return v->n_alive + v->unknown;
}

uint32_t fview_unknown(const struct fview *v)
{
	return v->unknown;
}

uint32_t fview_undecided(const struct fview *v)
{
	uint32_t k = 0;
	for (size_t i = v->scan; i < v->n; i++)
		if ((v->bits[i] & B_ALIVE) && !(v->bits[i] & B_DECIDED))
			k++;
	return k;
}

uint32_t fview_max_uid(const struct fview *v)
{
	return v->n ? v->uid[v->n - 1] : 0;
}

/* The UID of the seq-th message counted by tree (n_counted of them), or 0. */
static uint32_t uid_of_rank(const struct fview *v, const uint32_t *tree, uint32_t n_counted, uint32_t seq)
{
	if (seq == 0 || seq > n_counted)
		return 0;
	return v->uid[fw_find(tree, v->n, seq) - 1];
}

uint32_t fview_uid_at(const struct fview *v, uint32_t seq)
{
	return uid_of_rank(v, v->f_told, v->n_told, seq);
}

uint32_t fview_seq_of(const struct fview *v, uint32_t uid)
{
	size_t pos = find_pos(v, uid);
	if (pos == SIZE_MAX || !(v->bits[pos] & B_TOLD))
		return 0;
	return fw_prefix(v->f_told, pos + 1);
}

uint32_t fview_store_uid(const struct fview *v, uint32_t sseq)
{
	return uid_of_rank(v, v->f_alive, v->n_alive, sseq);
}

bool fview_is_alive(const struct fview *v, uint32_t uid)
{
	size_t pos = find_pos(v, uid);
	return pos != SIZE_MAX && (v->bits[pos] & B_ALIVE);
}

void fview_told(const struct fview *v, struct uidset *out)
{
	uidset_clear(out);
	for (size_t i = 0; i < v->n; i++)
		if (v->bits[i] & B_TOLD)
			uidset_add(out, v->uid[i]);
}

/* ------------------------------------------------------------------------ */
/* the store's events                                                        */

bool fview_store_exists(struct fview *v, uint32_t n)
{
	uint32_t have = fview_store_count(v);
	if (n < have)
		return false;
	v->unknown += n - have;
	return true;
}

bool fview_store_expunge(struct fview *v, uint32_t sseq)
{
	if (sseq == 0)
		return false;
	if (sseq <= v->n_alive) {
		size_t pos = fw_find(v->f_alive, v->n, sseq) - 1;
		set_bit(v, pos, B_ALIVE, false);
		if (v->bits[pos] & B_TOLD)
			uidset_add(&v->zombies, v->uid[pos]);
		maybe_compact(v);
		return true;
	}
	if (sseq <= v->n_alive + v->unknown) {
		v->unknown--;
		return true;
	}
	return false;
}

int fview_learn(struct fview *v, const struct uidset *uids)
{
	if (uids->count != v->unknown || (uids->count && uids->uids[0] <= fview_max_uid(v)))
		return -1;
	for (size_t i = 0; i < uids->count; i++)
		append_pos(v, uids->uids[i], B_ALIVE);
	v->unknown = 0;
	return 0;
}

void fview_decide(struct fview *v, const struct uidset *match, uint32_t upto)
{
	size_t j = 0;
	for (size_t i = v->scan; i < v->n && v->uid[i] <= upto; i++) {
		if (v->bits[i] & B_DECIDED)
			continue;
		uint32_t u = v->uid[i];
		while (j < match->count && match->uids[j] < u)
			j++;
		v->bits[i] |= B_DECIDED;
		if (j < match->count && match->uids[j] == u)
			v->bits[i] |= B_MATCH;
	}
}

void fview_age(struct fview *v, const struct uidset *leaving)
{
	for (size_t i = 0; i < leaving->count; i++) {
		size_t pos = find_pos(v, leaving->uids[i]);
		if (pos == SIZE_MAX || !(v->bits[pos] & B_MATCH))
			continue;
		v->bits[pos] &= (uint8_t)~B_MATCH;
		if ((v->bits[pos] & B_TOLD) && (v->bits[pos] & B_ALIVE))
			uidset_add(&v->zombies, v->uid[pos]);
	}
}

/* ------------------------------------------------------------------------ */
/* telling the client                                                        */

bool fview_has_removals(const struct fview *v)
{
	return v->zombies.count > 0;
}

uint32_t fview_removals(const struct fview *v)
{
	return (uint32_t)v->zombies.count;
}

uint32_t fview_arrivals_ready(const struct fview *v)
{
	uint32_t k = 0;
	for (size_t i = v->scan; i < v->n; i++) {
		uint8_t b = v->bits[i];
		if (!(b & B_ALIVE))
			continue;
		if (!(b & B_DECIDED))
			break;
		if ((b & B_MATCH) && !(b & B_TOLD))
			k++;
	}
	return k;
}

void fview_flush_removals(struct fview *v, struct buf *out)
{
	for (size_t i = v->zombies.count; i-- > 0;) {
		size_t pos = find_pos(v, v->zombies.uids[i]);
		if (pos == SIZE_MAX || !(v->bits[pos] & B_TOLD))
			continue;
		buf_printf(out, "* %u EXPUNGE\r\n", fw_prefix(v->f_told, pos + 1));
		set_bit(v, pos, B_TOLD, false);
	}
	uidset_clear(&v->zombies);
	maybe_compact(v);
}

uint32_t fview_flush_arrivals(struct fview *v, struct buf *out, struct uidset *uids)
{
	uint32_t k = 0;
	size_t i = v->scan;
	for (; i < v->n; i++) {
		uint8_t b = v->bits[i];
		if (!(b & B_ALIVE))
			continue;
		if (!(b & B_DECIDED))
			break;
		if ((b & B_MATCH) && !(b & B_TOLD)) {
			set_bit(v, i, B_TOLD, true);
			if (uids)
				uidset_add(uids, v->uid[i]);
			k++;
		}
	}
	v->scan = i;
	if (k && out)
		buf_printf(out, "* %u EXISTS\r\n", v->n_told);
	return k;
}

/* ------------------------------------------------------------------------ */
/* the client's sets                                                         */

/* One element of a set: a number or "*" (star); false on bad syntax. */
static bool set_number(const char **p, const char *end, uint32_t star, uint32_t *out, bool *is_star)
{
	*is_star = false;
	if (*p < end && **p == '*') {
		(*p)++;
		*is_star = true;
		*out = star;
		return true;
	}
	uint64_t n = 0;
	const char *start = *p;
	while (*p < end && **p >= '0' && **p <= '9') {
		n = n * 10 + (uint64_t)(**p - '0');
		if (n > UINT32_MAX)
			return false;
		(*p)++;
	}
	if (*p == start || n == 0)
		return false;
	*out = (uint32_t)n;
	return true;
}

typedef int (*range_cb)(const struct fview *v, uint32_t lo, uint32_t hi, bool star, struct uidset *out, char *err,
                        size_t errlen);

static int walk_set(const struct fview *v, const char *text, size_t len, uint32_t star, range_cb cb,
                    struct uidset *out, char *err, size_t errlen)
{
	const char *p = text, *end = text + len;
	if (len == 0) {
		snprintf(err, errlen, "empty sequence set");
		return -1;
	}
	while (p < end) {
		uint32_t a, b;
		bool sa, sb = false;
		if (!set_number(&p, end, star, &a, &sa)) {
			snprintf(err, errlen, "invalid sequence set");
			return -1;
		}
		b = a;
		sb = sa;
		if (p < end && *p == ':') {
			p++;
			if (!set_number(&p, end, star, &b, &sb)) {
				snprintf(err, errlen, "invalid sequence set");
				return -1;
			}
		}
		if (p < end && *p != ',') {
			snprintf(err, errlen, "invalid sequence set");
			return -1;
		}
		if (p < end)
			p++;
		uint32_t lo = a < b ? a : b, hi = a < b ? b : a;
		if (cb(v, lo, hi, sa || sb, out, err, errlen) < 0)
			return -1;
	}
	return 0;
}

static int seq_range(const struct fview *v, uint32_t lo, uint32_t hi, bool star, struct uidset *out, char *err,
                     size_t errlen)
{
	uint32_t count = v->n_told;
	if (star) {
		if (count == 0)
			return 0;
		if (hi > count)
			hi = count;
		if (lo > count)
			lo = count;
		if (lo == 0)
			return 0;
	} else if (hi > count || lo == 0) {
		snprintf(err, errlen, "invalid message sequence number (the folder shows %u message%s)", count,
		         count == 1 ? "" : "s");
		return -1;
	}
	if (lo > hi)
		return 0;
	size_t pos = fw_find(v->f_told, v->n, lo) - 1;
	uint32_t k = lo;
	for (; pos < v->n && k <= hi; pos++) {
		if (v->bits[pos] & B_TOLD) {
			uidset_add(out, v->uid[pos]);
			k++;
		}
	}
	return 0;
}

static int uid_range(const struct fview *v, uint32_t lo, uint32_t hi, bool star, struct uidset *out, char *err,
                     size_t errlen)
{
	(void)star;
	(void)err;
	(void)errlen;
	for (size_t pos = lower_pos(v, lo); pos < v->n && v->uid[pos] <= hi; pos++)
		if (v->bits[pos] & B_TOLD)
			uidset_add(out, v->uid[pos]);
	return 0;
}

int fview_seqset(const struct fview *v, const char *text, size_t len, struct uidset *out, char *err, size_t errlen)
{
	return walk_set(v, text, len, v->n_told, seq_range, out, err, errlen);
}

int fview_uidset(const struct fview *v, const char *text, size_t len, struct uidset *out, char *err, size_t errlen)
{
	/* Nothing told: "*" is 0 and names nothing. */
	uint32_t star = v->n_told ? fview_uid_at(v, v->n_told) : 0;
	return walk_set(v, text, len, star, uid_range, out, err, errlen);
}

void fview_keep_told(const struct fview *v, struct uidset *set)
{
	size_t k = 0;
	for (size_t i = 0; i < set->count; i++) {
		size_t pos = find_pos(v, set->uids[i]);
		if (pos != SIZE_MAX && (v->bits[pos] & B_TOLD))
			set->uids[k++] = set->uids[i];
	}
	set->count = k;
}

/* ------------------------------------------------------------------------ */
/* the store's responses                                                     */

uint32_t fview_fetch_seq(const struct fview *v, const struct imap_msg *m)
{
	uint32_t sseq, uid = 0;
	if (m->kind != IMAP_MSG_UNTAGGED || m->nargs < 3 || !imap_arg_is_atom(&m->args[1], "FETCH") ||
	    !imap_parse_u32(m->args[0].str, m->args[0].len, &sseq))
		return 0;
	if (m->args[2].type == IMAP_ARG_LIST) {
		const struct imap_arg *l = m->args[2].list;
		for (size_t i = 0; i + 1 < m->args[2].list_count; i += 2)
			if (imap_arg_is_atom(&l[i], "UID") && imap_parse_u32(l[i + 1].str, l[i + 1].len, &uid))
				break;
	}
	if (!uid)
		uid = fview_store_uid(v, sseq);
	return uid ? fview_seq_of(v, uid) : 0;
}

void fview_renumber(const struct imap_msg *m, uint32_t seq, struct buf *out)
{
	/* "* 123 FETCH ...": the number starts after "* " */
	size_t i = 2;
	while (i < m->raw_len && m->raw[i] >= '0' && m->raw[i] <= '9')
		i++;
	buf_printf(out, "* %u", seq);
	buf_append(out, m->raw + i, m->raw_len - i);
}

static bool told_number(const struct fview *v, const struct imap_arg *a, bool as_uids, uint32_t *out)
{
	uint32_t uid;
	if (a->type != IMAP_ARG_ATOM || !imap_parse_u32(a->str, a->len, &uid))
		return false;
	uint32_t seq = fview_seq_of(v, uid);
	if (!seq)
		return false;
	*out = as_uids ? uid : seq;
	return true;
}

void fview_render_sort(const struct fview *v, const struct imap_msg *m, bool as_uids, struct buf *out)
{
	buf_append_str(out, "* SORT");
	for (size_t i = 1; i < m->nargs; i++) {
		uint32_t n;
		if (told_number(v, &m->args[i], as_uids, &n))
			buf_printf(out, " %u", n);
	}
	buf_append_str(out, "\r\n");
}

/* A thread tree with hidden messages taken out (RFC 5256 thread-list). */
struct tnode {
	uint32_t *members;
	size_t nm;
	struct tnode **subs;
	size_t ns;
};

static void tnode_free(struct tnode *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->ns; i++)
		tnode_free(t->subs[i]);
	free(t->subs);
	free(t->members);
	free(t);
}

/* Filter one thread-list; NULL when nothing of it is left. */
static struct tnode *thread_filter(const struct fview *v, const struct imap_arg *list, bool as_uids, unsigned depth)
{
	if (depth > 1000)
		return NULL;
	struct tnode *t = xcalloc(1, sizeof(*t));
	for (size_t i = 0; i < list->list_count; i++) {
		const struct imap_arg *a = &list->list[i];
		if (a->type == IMAP_ARG_LIST) {
			struct tnode *s = thread_filter(v, a, as_uids, depth + 1);
			if (s) {
				t->subs = xrealloc(t->subs, (t->ns + 1) * sizeof(*t->subs));
				t->subs[t->ns++] = s;
			}
			continue;
		}
		uint32_t n;
		if (told_number(v, a, as_uids, &n)) {
			t->members = xrealloc(t->members, (t->nm + 1) * sizeof(*t->members));
			t->members[t->nm++] = n;
		}
	}
	if (t->ns == 1) {
		/* One branch left: it continues this chain. */
		struct tnode *s = t->subs[0];
		t->members = xrealloc(t->members, (t->nm + s->nm + 1) * sizeof(*t->members));
		memcpy(t->members + t->nm, s->members, s->nm * sizeof(*s->members));
		t->nm += s->nm;
		free(t->subs);
		t->subs = s->subs;
		t->ns = s->ns;
		free(s->members);
		free(s);
	}
	if (t->nm == 0 && t->ns == 0) {
		tnode_free(t);
		return NULL;
	}
	return t;
}

static void thread_write(const struct tnode *t, struct buf *out)
{
	buf_append(out, "(", 1);
	for (size_t i = 0; i < t->nm; i++)
		buf_printf(out, "%s%u", i ? " " : "", t->members[i]);
	for (size_t i = 0; i < t->ns; i++) {
		if (i == 0 && t->nm)
			buf_append(out, " ", 1);
		thread_write(t->subs[i], out);
	}
	buf_append(out, ")", 1);
}

void fview_render_thread(const struct fview *v, const struct imap_msg *m, bool as_uids, struct buf *out)
{
	buf_append_str(out, "* THREAD");
	bool first = true;
	for (size_t i = 1; i < m->nargs; i++) {
		if (m->args[i].type != IMAP_ARG_LIST)
			continue;
		struct tnode *t = thread_filter(v, &m->args[i], as_uids, 0);
		if (!t)
			continue;
		if (first)
			buf_append(out, " ", 1);
		first = false;
		thread_write(t, out);
		tnode_free(t);
	}
	buf_append_str(out, "\r\n");
}

size_t fview_memory(const struct fview *v)
{
	return sizeof(*v) + v->cap * (sizeof(*v->uid) + 1 + 2 * sizeof(uint32_t)) +
	       v->zombies.cap * sizeof(uint32_t);
}
