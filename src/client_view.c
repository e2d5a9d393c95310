/*
 * client_view.c - a client's picture of its selected mailbox, the server's
 * current state, and the untagged responses between them (see client_view.h).
 *
 * Both sides are a "msgtab": parallel arrays of UIDs (0 = unknown) and flag
 * set ids (0 = unknown) indexed by sequence number - 1, plus a small intern
 * table of the distinct flag sets. Most mailboxes use a handful of flag
 * combinations, so 100,000 messages cost 800 KB of arrays and a few hundred
 * bytes of flag text.
 *
 * Ascending UID order is checked in O(1) for the common case (UIDs learned in
 * sequence order, e.g. the answer to "UID FETCH 1:*"); a UID learned below
 * the highest known slot marks the table "dirty" and one linear pass checks
 * the order before anything could hide a violation (an EXPUNGE) or a caller
 * asks. Pure: no I/O, no logging.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "client_view.h"
#include "syncdiff.h"
#include "uidset.h"

/* First allocation of the per-message arrays. */
#define MSGTAB_MIN_CAP 64u
/* Flag lists shorter than this are assembled on the stack. */
#define FLAGS_STACK_BYTES 256u

/* One distinct flag set. Both strings live in one allocation (spelled first). */
struct flagset {
	char    *spelled; /* as the server wrote it, \Recent dropped, single spaces; NUL-terminated */
	char    *norm;    /* sorted, de-duplicated, system flags lower-cased; NUL-terminated */
	uint32_t slen;    /* strlen(spelled) */
	uint32_t hash;    /* of spelled */
};

/* Intern table: id n (>= 1) is sets[n - 1]; looked up by spelling. */
struct flagtab {
	struct flagset *sets;
	uint32_t        n;     /* sets in use */
	uint32_t        cap;   /* sets allocated */
	uint32_t       *slots; /* open addressing over ids; 0 = empty */
	uint32_t        hcap;  /* power of two, at least 2 * n; 0 before the first set */
	size_t          bytes; /* text bytes held (both strings with NULs) */
};

struct msgtab {
	uint32_t      *uids;        /* count entries; 0 = unknown */
	uint32_t      *flags;       /* count entries; flagtab id, 0 = unknown */
	uint8_t       *recent;      /* count entries; 1 = its last FLAGS had \Recent */
	uint32_t       count;       /* messages */
	uint32_t       cap;         /* entries allocated in both arrays */
	uint32_t       nknown;      /* slots with a known UID */
	uint32_t       hi;          /* 1 + index of the highest slot with a known UID; 0 if none */
	uint32_t       uidvalidity; /* 0 = unknown */
	bool           broken;      /* saw something it cannot follow exactly */
	bool           dirty;       /* a UID was learned below slot hi: order not yet checked */
	struct flagtab ft;
	char          *mbox_flags;  /* the last "* FLAGS (...)" list as spelled, NULL if none */
};

struct client_view {
	struct msgtab t;
};

struct view_snapshot {
	struct msgtab t;
};

/* --- flag sets ---------------------------------------------------------- */

static uint32_t fnv1a(const char *s, size_t len)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < len; i++) {
		h ^= (uint8_t)s[i];
		h *= 16777619u;
	}
	return h;
}

static bool is_recent(const struct imap_arg *a)
{
	return imap_arg_is_atom(a, "\\Recent");
}

static void flagtab_free(struct flagtab *ft)
{
	for (uint32_t i = 0; i < ft->n; i++)
		free(ft->sets[i].spelled);
	free(ft->sets);
	free(ft->slots);
	memset(ft, 0, sizeof(*ft));
}

/* Put id into the hash (the table has room). */
static void flagtab_slot_insert(struct flagtab *ft, uint32_t id)
{
	uint32_t mask = ft->hcap - 1;
	uint32_t i = ft->sets[id - 1].hash & mask;
	while (ft->slots[i])
		i = (i + 1) & mask;
	ft->slots[i] = id;
}

static void flagtab_rehash(struct flagtab *ft, uint32_t hcap)
{
	free(ft->slots);
	ft->hcap = hcap;
	ft->slots = xcalloc(hcap, sizeof(ft->slots[0]));
	for (uint32_t id = 1; id <= ft->n; id++)
		flagtab_slot_insert(ft, id);
}

/* Id of the set spelled exactly so, or 0. */
static uint32_t flagtab_find(const struct flagtab *ft, const char *spelled, size_t slen, uint32_t hash)
{
	if (!ft->hcap)
		return 0;
	uint32_t mask = ft->hcap - 1;
	for (uint32_t i = hash & mask; ft->slots[i]; i = (i + 1) & mask) {
		const struct flagset *fs = &ft->sets[ft->slots[i] - 1];
		if (fs->hash == hash && fs->slen == slen && memcmp(fs->spelled, spelled, slen) == 0)
			return ft->slots[i];
	}
	return 0;
}

/* Add a set (not present yet); returns its id. */
static uint32_t flagtab_add(struct flagtab *ft, const char *spelled, size_t slen, const char *norm, size_t nlen,
                            uint32_t hash)
{
	if (ft->n == ft->cap) {
		ft->cap = ft->cap ? ft->cap * 2 : 8;
		ft->sets = xrealloc(ft->sets, ft->cap * sizeof(ft->sets[0]));
	}
	char *mem = xmalloc(slen + 1 + nlen + 1);
	memcpy(mem, spelled, slen);
	mem[slen] = '\0';
	memcpy(mem + slen + 1, norm, nlen);
	mem[slen + 1 + nlen] = '\0';
	ft->sets[ft->n] = (struct flagset){mem, mem + slen + 1, (uint32_t)slen, hash};
	ft->n++;
	ft->bytes += slen + nlen + 2;
	if ((uint64_t)ft->n * 2 > ft->hcap)
		flagtab_rehash(ft, ft->hcap ? ft->hcap * 2 : 16);
	else
		flagtab_slot_insert(ft, ft->n);
	return ft->n;
}

/* A flag token for sorting; system flags are lower-cased copies. */
struct flagtok {
	const char *s;
	size_t      len;
};

static int flagtok_cmp(const void *a, const void *b)
{
	const struct flagtok *x = a, *y = b;
	size_t n = x->len < y->len ? x->len : y->len;
	int c = memcmp(x->s, y->s, n);
	if (c)
		return c;
	return x->len < y->len ? -1 : x->len > y->len;
}

/*
 * Write the normalised form of the atoms in list (\Recent left out) to norm,
 * which has room for total bytes (the spelled length); returns its length.
 */
static size_t normalise(const struct imap_arg *list, size_t total, char *norm)
{
	struct flagtok *toks = xmalloc((list->list_count ? list->list_count : 1) * sizeof(*toks));
	char *lower = xmalloc(total + 1);
	size_t ntok = 0, off = 0, len = 0;

	for (size_t i = 0; i < list->list_count; i++) {
		const struct imap_arg *a = &list->list[i];
		if (is_recent(a))
			continue;
		memcpy(lower + off, a->str, a->len);
		if (a->str[0] == '\\')
			for (size_t k = 1; k < a->len; k++)
				if (lower[off + k] >= 'A' && lower[off + k] <= 'Z')
					lower[off + k] = (char)(lower[off + k] - 'A' + 'a');
		toks[ntok++] = (struct flagtok){lower + off, a->len};
		off += a->len;
	}
	qsort(toks, ntok, sizeof(*toks), flagtok_cmp);
	for (size_t i = 0; i < ntok; i++) {
		if (i && flagtok_cmp(&toks[i - 1], &toks[i]) == 0)
			continue;
		if (len)
			norm[len++] = ' ';
		memcpy(norm + len, toks[i].s, toks[i].len);
		len += toks[i].len;
	}
	free(lower);
	free(toks);
	return len;
}

/* --- per-message arrays --------------------------------------------------- */

static void msgtab_init(struct msgtab *t)
{
	memset(t, 0, sizeof(*t));
}

static void msgtab_free(struct msgtab *t)
{
	free(t->uids);
	free(t->flags);
	free(t->recent);
	free(t->mbox_flags);
	flagtab_free(&t->ft);
	memset(t, 0, sizeof(*t));
}

static void msgtab_reserve(struct msgtab *t, uint32_t want)
{
	if (want <= t->cap)
		return;
	uint64_t cap = t->cap ? t->cap : MSGTAB_MIN_CAP;
	while (cap < want)
		cap *= 2;
	if (cap > CLIENT_VIEW_MAX_MESSAGES)
		cap = want;
	t->uids = xrealloc(t->uids, cap * sizeof(t->uids[0]));
	t->flags = xrealloc(t->flags, cap * sizeof(t->flags[0]));
	t->recent = xrealloc(t->recent, cap * sizeof(t->recent[0]));
	t->cap = (uint32_t)cap;
}

/* Set count to n (>= count): new slots unknown. */
static void msgtab_grow(struct msgtab *t, uint32_t n)
{
	if (n == t->count)
		return;
	msgtab_reserve(t, n);
	memset(t->uids + t->count, 0, (size_t)(n - t->count) * sizeof(t->uids[0]));
	memset(t->flags + t->count, 0, (size_t)(n - t->count) * sizeof(t->flags[0]));
	memset(t->recent + t->count, 0, (size_t)(n - t->count) * sizeof(t->recent[0]));
	t->count = n;
}

/* Known UIDs strictly ascending? */
static bool msgtab_ordered(const struct msgtab *t)
{
	uint32_t last = 0;
	for (uint32_t i = 0; i < t->count; i++) {
		if (!t->uids[i])
			continue;
		if (t->uids[i] <= last)
			return false;
		last = t->uids[i];
	}
	return true;
}

static bool msgtab_broken(const struct msgtab *t)
{
	return t->broken || (t->dirty && !msgtab_ordered(t));
}

/* Settle a pending order check (sticky: a violation stays broken). */
static void msgtab_check(struct msgtab *t)
{
	if (t->dirty) {
		if (!msgtab_ordered(t))
			t->broken = true;
		t->dirty = false;
	}
}

/* Drop flag sets no message uses; false if the table is still over a limit. */
static bool msgtab_compact(struct msgtab *t, size_t need_bytes)
{
	struct flagtab *ft = &t->ft;
	uint32_t *map = xcalloc((size_t)ft->n + 1, sizeof(map[0]));
	uint32_t k = 0;

	for (uint32_t i = 0; i < t->count; i++)
		map[t->flags[i]] = 1;
	ft->bytes = 0;
	for (uint32_t id = 1; id <= ft->n; id++) {
		struct flagset fs = ft->sets[id - 1];
		if (!map[id]) {
			free(fs.spelled);
			continue;
		}
		ft->sets[k++] = fs;
		map[id] = k;
		ft->bytes += fs.slen + strlen(fs.norm) + 2;
	}
	map[0] = 0;
	ft->n = k;
	for (uint32_t i = 0; i < t->count; i++)
		t->flags[i] = map[t->flags[i]];
	free(map);
	/* give back what a burst of short-lived sets made the table grow to */
	uint32_t cap = 8, hcap = 16;
	while (cap < k + 1)
		cap *= 2;
	while (hcap < 2 * cap)
		hcap *= 2;
	ft->cap = cap;
	ft->sets = xrealloc(ft->sets, cap * sizeof(ft->sets[0]));
	flagtab_rehash(ft, hcap);
	return ft->n < CLIENT_VIEW_MAX_FLAGSETS && ft->bytes + need_bytes <= CLIENT_VIEW_MAX_FLAG_BYTES;
}

/*
 * The id of a FLAGS list, interning it if new. Returns false if the list is
 * malformed (not all non-empty atoms) or the table is full; *id is then 0.
 */
static bool msgtab_intern(struct msgtab *t, const struct imap_arg *list, uint32_t *id)
{
	char stackbuf[FLAGS_STACK_BYTES];
	size_t slen = 0;

	*id = 0;
	for (size_t i = 0; i < list->list_count; i++) {
		const struct imap_arg *a = &list->list[i];
		if (a->type != IMAP_ARG_ATOM || a->len == 0)
			return false;
		if (!is_recent(a))
			slen += (slen ? 1 : 0) + a->len;
	}
	char *sp = slen < sizeof(stackbuf) ? stackbuf : xmalloc(slen + 1);
	size_t off = 0;
	for (size_t i = 0; i < list->list_count; i++) {
		const struct imap_arg *a = &list->list[i];
		if (is_recent(a))
			continue;
		if (off)
			sp[off++] = ' ';
		memcpy(sp + off, a->str, a->len);
		off += a->len;
	}
	sp[off] = '\0';

	uint32_t hash = fnv1a(sp, slen);
	bool ok = true;
	*id = flagtab_find(&t->ft, sp, slen, hash);
	if (!*id) {
		size_t need = 2 * slen + 2;
		if ((t->ft.n >= CLIENT_VIEW_MAX_FLAGSETS || t->ft.bytes + need > CLIENT_VIEW_MAX_FLAG_BYTES) &&
		    !msgtab_compact(t, need)) {
			ok = false;
		} else {
			char *norm = xmalloc(slen + 1);
			size_t nlen = normalise(list, slen, norm);
			*id = flagtab_add(&t->ft, sp, slen, norm, nlen, hash);
			free(norm);
		}
	}
	if (sp != stackbuf)
		free(sp);
	return ok;
}

/* Slot i (0-based) has UID u (> 0). */
static void msgtab_learn_uid(struct msgtab *t, uint32_t i, uint32_t u)
{
	if (t->uids[i]) {
		if (t->uids[i] != u)
			t->broken = true;
		return;
	}
	if (i >= t->hi) {
		/* the common case: the nearest known UID below is slot hi - 1 and
		 * none is known above, so one comparison settles the order */
		if (t->hi && t->uids[t->hi - 1] >= u) {
			t->broken = true;
			return;
		}
		t->hi = i + 1;
	} else {
		t->dirty = true;
	}
	t->uids[i] = u;
	t->nknown++;
}

static void msgtab_expunge(struct msgtab *t, uint32_t i)
{
	/* removing a slot could hide a UID that was out of order */
	msgtab_check(t);
	if (t->uids[i])
		t->nknown--;
	memmove(t->uids + i, t->uids + i + 1, (size_t)(t->count - i - 1) * sizeof(t->uids[0]));
	memmove(t->flags + i, t->flags + i + 1, (size_t)(t->count - i - 1) * sizeof(t->flags[0]));
	memmove(t->recent + i, t->recent + i + 1, (size_t)(t->count - i - 1) * sizeof(t->recent[0]));
	t->count--;
	if (i + 1 < t->hi) {
		t->hi--;
	} else if (i + 1 == t->hi) {
		while (i > 0 && !t->uids[i - 1])
			i--;
		t->hi = i;
	}
}

/* "* n FETCH (...)": only UID and FLAGS matter; other items are skipped. */
static void msgtab_fetch(struct msgtab *t, const struct imap_msg *m, uint32_t n)
{
	if (n == 0 || n > t->count || m->nargs != 3 || m->args[2].type != IMAP_ARG_LIST ||
	    m->args[2].list_count % 2) {
		t->broken = true;
		return;
	}
	const struct imap_arg *items = m->args[2].list;
	for (size_t k = 0; k < m->args[2].list_count; k += 2) {
		const struct imap_arg *name = &items[k], *val = &items[k + 1];
		if (imap_arg_is_atom(name, "UID")) {
			uint32_t u;
			if (val->type != IMAP_ARG_ATOM || !imap_parse_u32(val->str, val->len, &u) || u == 0) {
				t->broken = true;
				continue;
			}
			msgtab_learn_uid(t, n - 1, u);
		} else if (imap_arg_is_atom(name, "FLAGS")) {
			uint32_t id = 0;
			if (val->type != IMAP_ARG_LIST || !msgtab_intern(t, val, &id))
				t->broken = true;
			t->flags[n - 1] = id;
			t->recent[n - 1] = 0;
			for (size_t r = 0; val->type == IMAP_ARG_LIST && r < val->list_count; r++)
				if (is_recent(&val->list[r]))
					t->recent[n - 1] = 1;
		}
	}
}

/* "* FLAGS (...)": the flags the mailbox knows, kept as spelled. */
static void msgtab_mailbox_flags(struct msgtab *t, const struct imap_arg *list)
{
	struct buf b;
	buf_init(&b, 0);
	for (size_t i = 0; i < list->list_count; i++) {
		const struct imap_arg *a = &list->list[i];
		if (a->type != IMAP_ARG_ATOM)
			continue;
		if (buf_len(&b))
			buf_append(&b, " ", 1);
		buf_append(&b, a->str, a->len);
	}
	buf_append(&b, "", 1);
	free(t->mbox_flags);
	t->mbox_flags = xstrdup((const char *)buf_head(&b));
	buf_free(&b);
}

static void msgtab_apply(struct msgtab *t, const struct imap_msg *m)
{
	uint32_t n;
	const char *val;
	size_t vlen;

	if (m->kind != IMAP_MSG_UNTAGGED)
		return;
	if (m->status != IMAP_STATUS_NONE) {
		if (m->status == IMAP_STATUS_OK && imap_code_value(m, "UIDVALIDITY", &val, &vlen) &&
		    imap_parse_u32(val, vlen, &n) && n) {
			/* a new UIDVALIDITY makes every known UID meaningless */
			if (t->uidvalidity && t->uidvalidity != n && t->nknown)
				t->broken = true;
			t->uidvalidity = n;
		}
		return;
	}
	if (imap_untagged_num(m, "EXISTS", &n)) {
		if (n < t->count || n > CLIENT_VIEW_MAX_MESSAGES)
			t->broken = true;
		else
			msgtab_grow(t, n);
	} else if (imap_untagged_num(m, "EXPUNGE", &n)) {
		if (n == 0 || n > t->count)
			t->broken = true;
		else
			msgtab_expunge(t, n - 1);
	} else if (imap_untagged_num(m, "FETCH", &n)) {
		msgtab_fetch(t, m, n);
	} else if (m->nargs >= 1 && imap_arg_is_atom(&m->args[0], "VANISHED")) {
		t->broken = true;
	} else if (m->nargs == 2 && imap_arg_is_atom(&m->args[0], "FLAGS") && m->args[1].type == IMAP_ARG_LIST) {
		msgtab_mailbox_flags(t, &m->args[1]);
	}
}

/* --- client view ---------------------------------------------------------- */

struct client_view *client_view_new(void)
{
	struct client_view *v = xmalloc(sizeof(*v));
	msgtab_init(&v->t);
	return v;
}

void client_view_free(struct client_view *v)
{
	if (!v)
		return;
	msgtab_free(&v->t);
	free(v);
}

void client_view_reset(struct client_view *v)
{
	msgtab_free(&v->t);
}

void client_view_apply(struct client_view *v, const struct imap_msg *m)
{
	msgtab_apply(&v->t, m);
}

uint32_t client_view_count(const struct client_view *v)
{
	return v->t.count;
}

uint32_t client_view_uidvalidity(const struct client_view *v)
{
	return v->t.uidvalidity;
}

bool client_view_broken(const struct client_view *v)
{
	return msgtab_broken(&v->t);
}

bool client_view_uids_known(const struct client_view *v)
{
	return v->t.nknown == v->t.count;
}

uint32_t client_view_uid_at(const struct client_view *v, uint32_t seq)
{
	return seq >= 1 && seq <= v->t.count ? v->t.uids[seq - 1] : 0;
}

const char *client_view_flags_at(const struct client_view *v, uint32_t seq)
{
	if (seq < 1 || seq > v->t.count || !v->t.flags[seq - 1])
		return NULL;
	return v->t.ft.sets[v->t.flags[seq - 1] - 1].norm;
}

const char *client_view_flags_spelled_at(const struct client_view *v, uint32_t seq, bool *recent)
{
	if (seq < 1 || seq > v->t.count || !v->t.flags[seq - 1])
		return NULL;
	if (recent)
		*recent = v->t.recent[seq - 1] != 0;
	return v->t.ft.sets[v->t.flags[seq - 1] - 1].spelled;
}

void client_view_learn_uid(struct client_view *v, uint32_t seq, uint32_t uid)
{
	if (seq >= 1 && seq <= v->t.count && uid)
		msgtab_learn_uid(&v->t, seq - 1, uid);
}

uint32_t client_view_seq_of(const struct client_view *v, uint32_t uid)
{
	const struct msgtab *t = &v->t;
	if (!uid || msgtab_broken(t))
		return 0;
	if (t->nknown == t->count) {
		/* every slot known and ascending: a binary search */
		uint32_t lo = 0, hi = t->count;
		while (lo < hi) {
			uint32_t mid = lo + (hi - lo) / 2;
			if (t->uids[mid] < uid)
				lo = mid + 1;
			else
				hi = mid;
		}
		return lo < t->count && t->uids[lo] == uid ? lo + 1 : 0;
	}
	for (uint32_t i = 0; i < t->count; i++)
		if (t->uids[i] == uid)
			return i + 1;
	return 0;
}

const char *client_view_mailbox_flags(const struct client_view *v)
{
	return v->t.mbox_flags;
}

size_t client_view_memory(const struct client_view *v)
{
	const struct msgtab *t = &v->t;
	return sizeof(*v) + (size_t)t->cap * (sizeof(t->uids[0]) + sizeof(t->flags[0]) + sizeof(t->recent[0])) +
	       (size_t)t->ft.cap * sizeof(t->ft.sets[0]) + (size_t)t->ft.hcap * sizeof(t->ft.slots[0]) + t->ft.bytes;
}

/* --- snapshot ------------------------------------------------------------- */

struct view_snapshot *view_snapshot_new(uint32_t count)
{
	struct view_snapshot *s = xmalloc(sizeof(*s));
	msgtab_init(&s->t);
	if (count > CLIENT_VIEW_MAX_MESSAGES)
		s->t.broken = true;
	else
		msgtab_grow(&s->t, count);
	return s;
}

void view_snapshot_apply(struct view_snapshot *s, const struct imap_msg *m)
{
	msgtab_apply(&s->t, m);
}

void view_snapshot_free(struct view_snapshot *s)
{
	if (!s)
		return;
	msgtab_free(&s->t);
	free(s);
}

void view_snapshot_set_uidvalidity(struct view_snapshot *s, uint32_t uidvalidity)
{
	s->t.uidvalidity = uidvalidity;
}

/* --- diff ----------------------------------------------------------------- */

static void put_u32(struct buf *out, uint32_t n)
{
	char tmp[10];
	size_t i = sizeof(tmp);
	do {
		tmp[--i] = (char)('0' + n % 10);
		n /= 10;
	} while (n);
	buf_append(out, tmp + i, sizeof(tmp) - i);
}

static void put_lit(struct buf *out, const char *s)
{
	buf_append(out, s, strlen(s));
}

/* v := s (v's flag table is rebuilt from the sets s's messages use). */
static void msgtab_copy(struct msgtab *v, const struct msgtab *s)
{
	uint32_t *map = xcalloc((size_t)s->ft.n + 1, sizeof(map[0]));
	uint32_t uidvalidity = s->uidvalidity ? s->uidvalidity : v->uidvalidity;

	flagtab_free(&v->ft);
	v->count = 0;
	msgtab_grow(v, s->count);
	if (s->count) {
		memcpy(v->uids, s->uids, (size_t)s->count * sizeof(v->uids[0]));
		memcpy(v->recent, s->recent, (size_t)s->count * sizeof(v->recent[0]));
	}
	for (uint32_t i = 0; i < s->count; i++) {
		uint32_t f = s->flags[i];
		if (f && !map[f]) {
			const struct flagset *fs = &s->ft.sets[f - 1];
			map[f] = flagtab_add(&v->ft, fs->spelled, fs->slen, fs->norm, strlen(fs->norm), fs->hash);
		}
		v->flags[i] = map[f];
	}
	free(map);
	v->nknown = s->nknown;
	v->hi = s->hi;
	v->uidvalidity = uidvalidity;
	v->broken = false;
	v->dirty = false;
}

int client_view_diff_apply(struct client_view *cv, const struct view_snapshot *snap, struct buf *out)
{
	struct msgtab *v = &cv->t;
	const struct msgtab *s = &snap->t;
	struct sync_diff diff;

	msgtab_check(v);
	if (v->broken || v->nknown != v->count || msgtab_broken(s))
		return -1;
	/* known UIDs of s must be a prefix: slot hi - 1 is the highest known,
	 * so they are exactly slots 0..hi-1 when there are hi of them */
	if (s->hi != s->nknown)
		return -1;
	if (v->uidvalidity && s->uidvalidity && v->uidvalidity != s->uidvalidity)
		return -1;

	/* syncdiff only reads the arrays; these borrow them */
	struct uidset seen = {v->uids, v->count, v->count};
	struct uidset now = {s->uids, s->nknown, s->nknown};
	if (syncdiff_compute(&seen, &now, &diff) != SYNCDIFF_OK)
		return -1;

	for (size_t k = 0; k < diff.expunged; k++) {
		put_lit(out, "* ");
		put_u32(out, diff.events[k].seq);
		put_lit(out, " EXPUNGE\r\n");
	}
	if (s->count > v->count - diff.expunged) {
		put_lit(out, "* ");
		put_u32(out, s->count);
		put_lit(out, " EXISTS\r\n");
	}
	syncdiff_free(&diff);

	/* after the EXPUNGEs and EXISTS the client's sequence numbers are s's */
	uint32_t i = 0;
	for (uint32_t j = 0; j < s->count; j++) {
		uint32_t u = s->uids[j], f = s->flags[j], vf = 0;
		bool kept = false;
		if (u) {
			while (i < v->count && v->uids[i] < u)
				i++;
			if (i < v->count && v->uids[i] == u) {
				kept = true;
				vf = v->flags[i];
			}
		}
		if (!f)
			continue;
		const struct flagset *fs = &s->ft.sets[f - 1];
		if (kept && vf && strcmp(v->ft.sets[vf - 1].norm, fs->norm) == 0)
			continue;
		put_lit(out, "* ");
		put_u32(out, j + 1);
		put_lit(out, " FETCH (");
		if (u) {
			put_lit(out, "UID ");
			put_u32(out, u);
			put_lit(out, " ");
		}
		put_lit(out, "FLAGS (");
		buf_append(out, fs->spelled, fs->slen);
		put_lit(out, "))\r\n");
	}

	msgtab_copy(v, s);
	return 0;
}
