/*
 * prefetch.c - captured responses of prefetched commands (see prefetch.h).
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "prefetch.h"

struct item {
	size_t   off, len; /* in captured */
	uint32_t seq;      /* "* seq FETCH"; 0 for other responses */
	uint32_t uid;      /* its UID item, 0 if none */
};

struct prefetch {
	char        *text;
	struct buf   captured;
	struct item *items;
	size_t       nitems, cap;
	bool         finished, ok, dropped;
	char        *status;   /* the tagged reply after the tag: "OK Fetch completed." */
	uint32_t     max_seq, max_uid;
};

struct prefetch *prefetch_new(const char *text)
{
	struct prefetch *pf = xcalloc(1, sizeof(*pf));
	pf->text = xstrdup(text);
	buf_init(&pf->captured, 0);
	return pf;
}

void prefetch_free(struct prefetch *pf)
{
	if (!pf)
		return;
	free(pf->text);
	buf_free(&pf->captured);
	free(pf->items);
	free(pf->status);
	free(pf);
}

const char *prefetch_text(const struct prefetch *pf)
{
	return pf->text;
}

uint32_t prefetch_last_seq(const struct prefetch *pf)
{
	for (size_t i = pf->nitems; i > 0; i--)
		if (pf->items[i - 1].seq)
			return pf->items[i - 1].seq;
	return 0;
}

size_t prefetch_bytes(const struct prefetch *pf)
{
	return buf_len(&pf->captured);
}

/* The UID item of "* n FETCH (...)", or 0. */
static uint32_t fetch_uid(const struct imap_msg *m)
{
	if (m->nargs < 3 || m->args[2].type != IMAP_ARG_LIST)
		return 0;
	const struct imap_arg *it = m->args[2].list;
	for (size_t i = 0; i + 1 < m->args[2].list_count; i += 2) {
		uint32_t uid;
		if (imap_arg_is_atom(&it[i], "UID") && it[i + 1].type == IMAP_ARG_ATOM &&
		    imap_parse_u32(it[i + 1].str, it[i + 1].len, &uid))
			return uid;
	}
	return 0;
}

bool prefetch_capture(struct prefetch *pf, const struct imap_msg *m)
{
	if (pf->dropped)
		return false;
	if (buf_len(&pf->captured) + m->raw_len > PREFETCH_MAX_BYTES) {
		pf->dropped = true;
		buf_free(&pf->captured);
		buf_init(&pf->captured, 0);
		pf->nitems = 0;
		return false;
	}
	if (pf->nitems == pf->cap) {
		pf->cap = pf->cap ? 2 * pf->cap : 64;
		pf->items = xrealloc(pf->items, pf->cap * sizeof(*pf->items));
	}
	struct item *it = &pf->items[pf->nitems++];
	it->off = buf_len(&pf->captured);
	it->len = m->raw_len;
	it->seq = 0;
	it->uid = 0;
	uint32_t n;
	if (imap_untagged_num(m, "FETCH", &n)) {
		it->seq = n;
		it->uid = fetch_uid(m);
		if (n > pf->max_seq)
			pf->max_seq = n;
		if (it->uid > pf->max_uid)
			pf->max_uid = it->uid;
	}
	buf_append(&pf->captured, m->raw, m->raw_len);
	return true;
}

void prefetch_finish(struct prefetch *pf, const struct imap_msg *tagged)
{
	pf->finished = true;
	pf->ok = tagged->status == IMAP_STATUS_OK;
	size_t taglen = tagged->tag ? strlen(tagged->tag) : 0;
	/* Keep " OK ...\r\n" as the server wrote it; the client's tag goes in front. */
	size_t n = tagged->raw_len - taglen;
	pf->status = xmalloc(n + 1);
	memcpy(pf->status, tagged->raw + taglen, n);
	pf->status[n] = '\0';
}

bool prefetch_finished(const struct prefetch *pf)
{
	return pf->finished;
}

bool prefetch_usable(const struct prefetch *pf)
{
	return pf->finished && pf->ok && !pf->dropped;
}

/* Is number n in the client's set (with "*" standing for max)? */
static bool wanted(const struct macro_claim *cl, uint32_t n, uint32_t max)
{
	if (uidset_contains(&cl->want, n))
		return true;
	if (!cl->want_star)
		return false;
	if (cl->star_from == 0)
		return n == max;
	uint32_t lo = cl->star_from < max ? cl->star_from : max;
	uint32_t hi = cl->star_from < max ? max : cl->star_from;
	return n >= lo && n <= hi;
}

bool prefetch_reply(const struct prefetch *pf, const struct macro_claim *cl, const char *tag, uint32_t seq_count,
                    struct buf *out)
{
	if (!prefetch_usable(pf))
		return false;
	if (cl->kind == MACRO_CLAIM_EXACT) {
		/* "FETCH 1:*" answers the same command only for the same message count. */
		if (pf->max_seq && seq_count != pf->max_seq && strncasecmp(pf->text, "UID ", 4) != 0 &&
		    strchr(pf->text, '*'))
			return false;
		buf_append(out, buf_head(&pf->captured), buf_len(&pf->captured));
	} else if (cl->kind == MACRO_CLAIM_FETCH) {
		/* Only a prefetch that asked for every UID up to "*" knows the largest. */
		if (cl->uid && cl->want_star && !cl->have_star)
			return false;
		uint32_t have_max = cl->uid ? pf->max_uid : pf->max_seq;
		uint32_t want_max = cl->uid ? pf->max_uid : seq_count;
		if (!cl->uid && cl->have_star && seq_count != pf->max_seq)
			return false; /* its "*" stood for another message count */
		if (!macro_claim_covers(cl, want_max, have_max))
			return false;
		for (size_t i = 0; i < pf->nitems; i++) {
			const struct item *it = &pf->items[i];
			uint32_t num = cl->uid ? it->uid : it->seq;
			if (it->seq == 0)
				continue; /* not a FETCH response: not asked for */
			if (num && wanted(cl, num, want_max))
				buf_append(out, buf_head(&pf->captured) + it->off, it->len);
		}
	} else {
		return false;
	}
	buf_append_str(out, tag);
	buf_append_str(out, pf->status);
	return true;
}
