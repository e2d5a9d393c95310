/*
 * msgcache.c - message data the proxy holds to answer FETCH locally (see
 * msgcache.h).
 *
 * Messages are kept in an array sorted by UID (pushes arrive in ascending
 * UID order, so inserting is an append); each holds up to
 * MSGCACHE_MAX_ITEMS items, each a normalised name ("BODY[HEADER.FIELDS
 * (FROM TO)]", "RFC822.SIZE") and the value exactly as the response will
 * carry it ("1234", "\"07-Dec-2026 12:42:05 +0000\"", "{330}\r\n<330
 * bytes>"). Eviction drops the message learnt longest ago.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "msgcache.h"
#include "uidset.h"

struct mc_item {
	char    *name;   /* normalised, NUL-terminated */
	uint8_t *value;  /* as written in a response */
	size_t   vlen;
	size_t   lit_off; /* value is a literal: data starts here (after "{n}\r\n"), else 0 */
	bool     literal;
};

struct mc_msg {
	uint32_t       uid;
	uint64_t       gen;      /* learn order, for eviction */
	char          *flags;    /* as pushed (spelled, \Recent dropped), NULL if none */
	bool           recent;
	struct mc_item items[MSGCACHE_MAX_ITEMS];
	size_t         nitems;
	size_t         bytes;
};

struct msgcache {
	struct mc_msg *msgs;   /* ascending UID */
	size_t         n, cap;
	size_t         bytes, max_bytes;
	uint64_t       gen;
};

struct msgcache *msgcache_new(size_t max_bytes)
{
	struct msgcache *mc = xcalloc(1, sizeof(*mc));
	mc->max_bytes = max_bytes ? max_bytes : MSGCACHE_MAX_BYTES;
	return mc;
}

static void msg_clear(struct mc_msg *m)
{
	for (size_t i = 0; i < m->nitems; i++) {
		free(m->items[i].name);
		free(m->items[i].value);
	}
	free(m->flags);
	m->flags = NULL;
	m->nitems = 0;
	m->bytes = 0;
}

void msgcache_clear(struct msgcache *mc)
{
	for (size_t i = 0; i < mc->n; i++)
		msg_clear(&mc->msgs[i]);
	mc->n = 0;
	mc->bytes = 0;
}

void msgcache_free(struct msgcache *mc)
{
	if (!mc)
		return;
	msgcache_clear(mc);
	free(mc->msgs);
	free(mc);
}

size_t msgcache_bytes(const struct msgcache *mc)
{
	return mc->bytes;
}

size_t msgcache_count(const struct msgcache *mc)
{
	return mc->n;
}

/* Index of uid, or where it would go (*found false). */
static size_t find(const struct msgcache *mc, uint32_t uid, bool *found)
{
	size_t lo = 0, hi = mc->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (mc->msgs[mid].uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = lo < mc->n && mc->msgs[lo].uid == uid;
	return lo;
}

static const struct mc_msg *lookup(const struct msgcache *mc, uint32_t uid)
{
	bool found;
	size_t i = find(mc, uid, &found);
	return found ? &mc->msgs[i] : NULL;
}

bool msgcache_has(const struct msgcache *mc, uint32_t uid)
{
	return lookup(mc, uid) != NULL;
}

static void remove_at(struct msgcache *mc, size_t i)
{
	mc->bytes -= mc->msgs[i].bytes;
	msg_clear(&mc->msgs[i]);
	memmove(mc->msgs + i, mc->msgs + i + 1, (mc->n - i - 1) * sizeof(mc->msgs[0]));
	mc->n--;
}

void msgcache_forget(struct msgcache *mc, uint32_t uid)
{
	bool found;
	size_t i = find(mc, uid, &found);
	if (found)
		remove_at(mc, i);
}

/* Drop the oldest messages until there is room for need more bytes and one more message. */
static void make_room(struct msgcache *mc, size_t need, uint32_t keep_uid)
{
	while (mc->n && (mc->bytes + need > mc->max_bytes || mc->n >= MSGCACHE_MAX_MESSAGES)) {
		size_t oldest = SIZE_MAX;
		for (size_t i = 0; i < mc->n; i++)
			if (mc->msgs[i].uid != keep_uid && (oldest == SIZE_MAX || mc->msgs[i].gen < mc->msgs[oldest].gen))
				oldest = i;
		if (oldest == SIZE_MAX)
			break;
		remove_at(mc, oldest);
	}
}

static char upper(char c)
{
	return c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
}

/*
 * The name a response gives a fetch item: upper-cased, ".PEEK" dropped, a
 * partial "<a.b>" cut off (into *partial, *start, *len). NULL for an item
 * with a side effect (BODY[...] without PEEK, RFC822, RFC822.TEXT) or one
 * this cache never answers; the caller frees the result.
 */
static char *item_key(const char *s, size_t len, bool *partial, uint32_t *start, uint32_t *plen, bool *body)
{
	*partial = false;
	*body = false;
	char *k = xmalloc(len + 1);
	size_t o = 0;
	const char *bracket = memchr(s, '[', len);
	size_t nlen = bracket ? (size_t)(bracket - s) : len;
	for (size_t i = 0; i < nlen; i++)
		k[o++] = upper(s[i]);
	k[o] = '\0';
	if (!bracket) {
		static const char *const plain[] = {"UID", "FLAGS", "RFC822.SIZE", "INTERNALDATE", NULL};
		for (const char *const *p = plain; *p; p++)
			if (strcmp(k, *p) == 0)
				return k;
		if (strcmp(k, "RFC822.HEADER") == 0) {
			*body = true;
			return k;
		}
		free(k);
		return NULL;
	}
	if (strcmp(k, "BODY.PEEK") == 0) {
		o = 4;
	} else if (strcmp(k, "BINARY.PEEK") == 0) {
		o = 6;
	} else if (strcmp(k, "BINARY.SIZE") != 0) {
		free(k); /* BODY[...] / BINARY[...] set \Seen */
		return NULL;
	}
	*body = strncmp(k, "BINARY.SIZE", 11) != 0;
	/* the section, up to its closing bracket, upper-cased */
	size_t i = nlen, depth = 0;
	for (; i < len; i++) {
		char c = s[i];
		k[o++] = upper(c);
		if (c == '[')
			depth++;
		else if (c == ']' && --depth == 0) {
			i++;
			break;
		}
	}
	k[o] = '\0';
	if (depth) {
		free(k);
		return NULL;
	}
	if (i < len) {
		/* "<start.len>" */
		uint64_t a = 0, b = 0;
		size_t j = i + 1;
		if (s[i] != '<' || j >= len)
			goto bad;
		for (; j < len && s[j] >= '0' && s[j] <= '9'; j++)
			a = a * 10 + (uint64_t)(s[j] - '0');
		if (j >= len || s[j] != '.' || a > UINT32_MAX)
			goto bad;
		for (j++; j < len && s[j] >= '0' && s[j] <= '9'; j++)
			b = b * 10 + (uint64_t)(s[j] - '0');
		if (j + 1 != len || s[j] != '>' || b == 0 || b > UINT32_MAX)
			goto bad;
		*partial = true;
		*start = (uint32_t)a;
		*plen = (uint32_t)b;
	}
	return k;
bad:
	free(k);
	return NULL;
}

/* The value of a response item as written on the wire. */
static void write_value(struct buf *out, const struct imap_arg *v, size_t *lit_off)
{
	*lit_off = 0;
	switch (v->type) {
	case IMAP_ARG_ATOM:
		buf_append(out, v->str, v->len);
		break;
	case IMAP_ARG_QUOTED:
		buf_append(out, "\"", 1);
		for (size_t i = 0; i < v->len; i++) {
			if (v->str[i] == '"' || v->str[i] == '\\')
				buf_append(out, "\\", 1);
			buf_append(out, v->str + i, 1);
		}
		buf_append(out, "\"", 1);
		break;
	case IMAP_ARG_LITERAL:
		buf_printf(out, "%s{%zu}\r\n", v->lit_kind == IMAP_LITERAL_BINARY ? "~" : "", v->len);
		*lit_off = buf_len(out);
		buf_append(out, v->str, v->len);
		break;
	case IMAP_ARG_LIST:
		break;
	}
}

/* The atoms of a FLAGS list, single spaces, \Recent left out. */
static char *flags_text(const struct imap_arg *list, bool *recent)
{
	struct buf b;
	buf_init(&b, 0);
	*recent = false;
	for (size_t i = 0; i < list->list_count; i++) {
		const struct imap_arg *a = &list->list[i];
		if (a->type != IMAP_ARG_ATOM)
			continue;
		if (imap_arg_is_atom(a, "\\Recent")) {
			*recent = true;
			continue;
		}
		if (buf_len(&b))
			buf_append(&b, " ", 1);
		buf_append(&b, a->str, a->len);
	}
	buf_append(&b, "", 1);
	char *s = xstrdup((const char *)buf_head(&b));
	buf_free(&b);
	return s;
}

bool msgcache_learn(struct msgcache *mc, const struct imap_msg *m)
{
	uint32_t n, uid = 0;
	if (m->kind != IMAP_MSG_UNTAGGED || !imap_untagged_num(m, "FETCH", &n) || m->nargs != 3 ||
	    m->args[2].type != IMAP_ARG_LIST || m->args[2].list_count % 2)
		return false;
	const struct imap_arg *it = m->args[2].list;
	size_t cnt = m->args[2].list_count;
	for (size_t k = 0; k < cnt; k += 2)
		if (imap_arg_is_atom(&it[k], "UID") && it[k + 1].type == IMAP_ARG_ATOM)
			imap_parse_u32(it[k + 1].str, it[k + 1].len, &uid);
	if (!uid)
		return false;
	size_t need = 0;
	for (size_t k = 0; k < cnt; k += 2)
		need += it[k].len + it[k + 1].len + 32;
	const struct mc_msg *old = lookup(mc, uid);
	make_room(mc, old && old->bytes < need ? need - old->bytes : (old ? 0 : need), uid);
	bool found;
	size_t i = find(mc, uid, &found);
	if (!found) {
		if (mc->n == mc->cap) {
			mc->cap = mc->cap ? mc->cap * 2 : 16;
			mc->msgs = xrealloc(mc->msgs, mc->cap * sizeof(mc->msgs[0]));
		}
		memmove(mc->msgs + i + 1, mc->msgs + i, (mc->n - i) * sizeof(mc->msgs[0]));
		memset(&mc->msgs[i], 0, sizeof(mc->msgs[i]));
		mc->msgs[i].uid = uid;
		mc->n++;
	}
	struct mc_msg *msg = &mc->msgs[i];
	msg->gen = ++mc->gen;
	mc->bytes -= msg->bytes;
	for (size_t k = 0; k < cnt; k += 2) {
		const struct imap_arg *name = &it[k], *val = &it[k + 1];
		if (name->type != IMAP_ARG_ATOM)
			continue;
		if (imap_arg_is_atom(name, "FLAGS")) {
			if (val->type == IMAP_ARG_LIST) {
				free(msg->flags);
				msg->flags = flags_text(val, &msg->recent);
			}
			continue;
		}
		if (imap_arg_is_atom(name, "UID") || imap_arg_is_atom(name, "MODSEQ") || val->type == IMAP_ARG_LIST ||
		    memchr(name->str, '<', name->len))
			continue;
		char *key = xmalloc(name->len + 1);
		for (size_t c = 0; c < name->len; c++)
			key[c] = upper(name->str[c]);
		key[name->len] = '\0';
		struct mc_item *slot = NULL;
		for (size_t j = 0; j < msg->nitems; j++)
			if (strcmp(msg->items[j].name, key) == 0)
				slot = &msg->items[j];
		if (slot) {
			free(slot->name);
			free(slot->value);
		} else if (msg->nitems < MSGCACHE_MAX_ITEMS) {
			slot = &msg->items[msg->nitems++];
		} else {
			free(key);
			continue;
		}
		struct buf v;
		buf_init(&v, 0);
		write_value(&v, val, &slot->lit_off);
		slot->name = key;
		slot->literal = val->type == IMAP_ARG_LITERAL;
		slot->vlen = buf_len(&v);
		slot->value = xmalloc(slot->vlen ? slot->vlen : 1);
		memcpy(slot->value, buf_head(&v), slot->vlen);
		buf_free(&v);
	}
	msg->bytes = msg->flags ? strlen(msg->flags) : 0;
	for (size_t j = 0; j < msg->nitems; j++)
		msg->bytes += strlen(msg->items[j].name) + msg->items[j].vlen;
	mc->bytes += msg->bytes;
	return true;
}

/* ---- answering -------------------------------------------------------- */

static const char *const system_flags[] = {"\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"};

void msgcache_write_flags(struct buf *out, const char *const *flags, size_t n, bool recent)
{
	bool first = true;
	for (size_t s = 0; s < sizeof(system_flags) / sizeof(system_flags[0]); s++)
		for (size_t i = 0; i < n; i++)
			if (strcasecmp(flags[i], system_flags[s]) == 0) {
				buf_printf(out, "%s%s", first ? "" : " ", flags[i]);
				first = false;
				break;
			}
	for (size_t i = 0; i < n; i++) {
		bool sys = false;
		for (size_t s = 0; s < sizeof(system_flags) / sizeof(system_flags[0]); s++)
			sys = sys || strcasecmp(flags[i], system_flags[s]) == 0;
		if (sys || strcasecmp(flags[i], "\\Recent") == 0)
			continue;
		buf_printf(out, "%s%s", first ? "" : " ", flags[i]);
		first = false;
	}
	if (recent)
		buf_printf(out, "%s\\Recent", first ? "" : " ");
}

struct want {
	char    *key;
	bool     partial, body;
	uint32_t start, len;
};

static void wants_free(struct want *w, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(w[i].key);
	free(w);
}

static const struct mc_item *item_of(const struct mc_msg *msg, const char *key)
{
	for (size_t i = 0; msg && i < msg->nitems; i++)
		if (strcmp(msg->items[i].name, key) == 0)
			return &msg->items[i];
	return NULL;
}

/* Can message seq (UID uid) answer every wanted item? */
static bool answerable(const struct msgcache *mc, const struct client_view *v, uint32_t seq, uint32_t uid,
                       const struct want *w, size_t nw)
{
	const struct mc_msg *msg = uid ? lookup(mc, uid) : NULL;
	for (size_t i = 0; i < nw; i++) {
		if (strcmp(w[i].key, "UID") == 0) {
			if (!uid)
				return false;
		} else if (strcmp(w[i].key, "FLAGS") == 0) {
			if (!client_view_flags_spelled_at(v, seq, NULL) && !(msg && msg->flags))
				return false;
		} else {
			const struct mc_item *it = item_of(msg, w[i].key);
			if (!it)
				return false;
			/* a range of a section needs its data, and a start inside it */
			if (w[i].partial && (!it->literal || w[i].start >= it->vlen - it->lit_off))
				return false;
		}
	}
	return true;
}

static void write_flags_item(struct buf *out, const struct msgcache *mc, const struct client_view *v, uint32_t seq,
                             uint32_t uid)
{
	bool recent = false;
	const char *spelled = client_view_flags_spelled_at(v, seq, &recent);
	if (!spelled) {
		const struct mc_msg *msg = lookup(mc, uid);
		spelled = msg->flags;
		recent = msg->recent;
	}
	buf_append_str(out, "FLAGS (");
	buf_append_str(out, spelled);
	if (recent)
		buf_append_str(out, *spelled ? " \\Recent" : "\\Recent");
	buf_append_str(out, ")");
}

static void write_item(struct buf *out, const struct msgcache *mc, const struct client_view *v, uint32_t seq,
                       uint32_t uid, const struct want *w)
{
	if (strcmp(w->key, "UID") == 0) {
		buf_printf(out, "UID %u", uid);
		return;
	}
	if (strcmp(w->key, "FLAGS") == 0) {
		write_flags_item(out, mc, v, seq, uid);
		return;
	}
	const struct mc_item *it = item_of(lookup(mc, uid), w->key);
	if (!w->partial) {
		buf_printf(out, "%s ", w->key);
		buf_append(out, it->value, it->vlen);
		return;
	}
	size_t dlen = it->vlen - it->lit_off;
	size_t take = dlen - w->start < w->len ? dlen - w->start : w->len;
	buf_printf(out, "%s<%u> {%zu}\r\n", w->key, w->start, take);
	buf_append(out, it->value + it->lit_off + w->start, take);
}

/* The client's fetch items: one atom, or a list of atoms. */
static struct want *parse_wants(const struct imap_arg *a, size_t *n)
{
	const struct imap_arg *items = a->type == IMAP_ARG_LIST ? a->list : a;
	size_t cnt = a->type == IMAP_ARG_LIST ? a->list_count : 1;
	if (!cnt)
		return NULL;
	struct want *w = xcalloc(cnt, sizeof(*w));
	for (size_t i = 0; i < cnt; i++) {
		if (items[i].type != IMAP_ARG_ATOM ||
		    !(w[i].key = item_key(items[i].str, items[i].len, &w[i].partial, &w[i].start, &w[i].len, &w[i].body))) {
			wants_free(w, cnt);
			return NULL;
		}
	}
	*n = cnt;
	return w;
}

bool msgcache_answer(const struct msgcache *mc, const struct client_view *v, const struct imap_msg *cmd,
                     const char *tag, struct buf *out)
{
	size_t a0 = 0;
	bool uid_cmd = false;
	if (cmd->nargs >= 1 && imap_arg_is_atom(&cmd->args[0], "UID")) {
		uid_cmd = true;
		a0 = 1;
	}
	/* [UID] FETCH set items, nothing after (modifiers such as CHANGEDSINCE go upstream) */
	if (cmd->nargs != a0 + 3 || !imap_arg_is_atom(&cmd->args[a0], "FETCH") ||
	    cmd->args[a0 + 1].type != IMAP_ARG_ATOM || client_view_broken(v))
		return false;
	uint32_t count = client_view_count(v);
	if (uid_cmd && !client_view_uids_known(v))
		return false; /* a UID set could name a message whose UID the proxy does not know */
	uint32_t star = uid_cmd ? client_view_uid_at(v, count) : count;
	struct seq_range *ranges;
	size_t nranges;
	if (uidset_parse_ranges(cmd->args[a0 + 1].str, cmd->args[a0 + 1].len, star, &ranges, &nranges, NULL, 0) < 0)
		return false;
	size_t nw = 0;
	struct want *w = parse_wants(&cmd->args[a0 + 2], &nw);
	bool ok = w != NULL;
	/* the messages, in sequence order */
	uint32_t *seqs = NULL;
	size_t nseq = 0;
	if (ok && !uid_cmd) {
		for (size_t r = 0; ok && r < nranges; r++) {
			if (ranges[r].last > count || (uint64_t)nseq + (ranges[r].last - ranges[r].first) + 1 > MSGCACHE_MAX_ANSWER) {
				ok = false; /* beyond the mailbox: the server's answer (BAD) is not ours to give */
				break;
			}
			seqs = xrealloc(seqs, (nseq + (ranges[r].last - ranges[r].first) + 1) * sizeof(*seqs));
			for (uint32_t s = ranges[r].first; s <= ranges[r].last; s++)
				seqs[nseq++] = s;
			if (ranges[r].last == UINT32_MAX)
				break;
		}
	} else if (ok) {
		for (uint32_t s = 1; ok && s <= count; s++) {
			if (!seq_ranges_contain(ranges, nranges, client_view_uid_at(v, s)))
				continue;
			if (nseq == MSGCACHE_MAX_ANSWER) {
				ok = false;
				break;
			}
			seqs = xrealloc(seqs, (nseq + 1) * sizeof(*seqs));
			seqs[nseq++] = s;
		}
	}
	for (size_t i = 0; ok && i < nseq; i++)
		ok = answerable(mc, v, seqs[i], client_view_uid_at(v, seqs[i]), w, nw);
	if (ok) {
		for (size_t i = 0; i < nseq; i++) {
			uint32_t s = seqs[i], u = client_view_uid_at(v, s);
			bool first = true;
			buf_printf(out, "* %u FETCH (", s);
			if (uid_cmd) {
				buf_printf(out, "UID %u", u);
				first = false;
			}
			for (int pass = 0; pass < 2; pass++)
				for (size_t k = 0; k < nw; k++) {
					if (w[k].body != (pass == 1) || (uid_cmd && strcmp(w[k].key, "UID") == 0))
						continue;
					bool dup = false; /* an item asked for twice is answered once */
					for (size_t j = 0; j < k; j++)
						dup = dup || (strcmp(w[j].key, w[k].key) == 0 && w[j].partial == w[k].partial &&
						              w[j].start == w[k].start && w[j].len == w[k].len);
					if (dup)
						continue;
					if (!first)
						buf_append(out, " ", 1);
					write_item(out, mc, v, s, u, &w[k]);
					first = false;
				}
			buf_append_str(out, ")\r\n");
		}
		buf_printf(out, "%s OK Fetch completed.\r\n", tag);
	}
	free(seqs);
	free(ranges);
	if (w)
		wants_free(w, nw);
	return ok;
}
