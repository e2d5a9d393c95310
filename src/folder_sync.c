/*
 * folder_sync.c - saved views and catch-ups (see folder_sync.h).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "folder_sync.h"
#include "log.h"

/* Track what a client sees of the selected folder from one store response. */
void folder_state_track(struct folder_state *sel, const struct imap_msg *m)
{
	uint32_t n;
	const char *v;
	size_t vl;
	if (imap_untagged_num(m, "EXISTS", &n)) {
		sel->exists = n;
		return;
	}
	if (imap_untagged_num(m, "EXPUNGE", &n)) {
		if (sel->exists)
			sel->exists--;
		return;
	}
	if (m->kind == IMAP_MSG_UNTAGGED && m->status == IMAP_STATUS_OK && m->code) {
		if (imap_code_value(m, "UIDVALIDITY", &v, &vl))
			imap_parse_u32(v, vl, &sel->uidvalidity);
		else if (imap_code_value(m, "UIDNEXT", &v, &vl))
			imap_parse_u32(v, vl, &sel->uidnext);
		else if (imap_code_value(m, "HIGHESTMODSEQ", &v, &vl))
			imap_parse_u64(v, vl, &sel->modseq);
		return;
	}
	/* "* n FETCH (... MODSEQ (m) ...)" moves HIGHESTMODSEQ forward. */
	if (m->kind == IMAP_MSG_UNTAGGED && m->nargs >= 3 && imap_arg_is_atom(&m->args[1], "FETCH") &&
	    m->args[2].type == IMAP_ARG_LIST) {
		const struct imap_arg *l = m->args[2].list;
		for (size_t i = 0; i + 1 < m->args[2].list_count; i++) {
			if (imap_arg_is_atom(&l[i], "MODSEQ") && l[i + 1].type == IMAP_ARG_LIST &&
			    l[i + 1].list_count == 1) {
				uint64_t ms;
				if (imap_parse_u64(l[i + 1].list[0].str, l[i + 1].list[0].len, &ms) && ms > sel->modseq)
					sel->modseq = ms;
			}
			if (imap_arg_is_atom(&l[i], "UID") && l[i + 1].type == IMAP_ARG_ATOM) {
				uint32_t uid;
				if (imap_parse_u32(l[i + 1].str, l[i + 1].len, &uid) && uid >= sel->uidnext)
					sel->uidnext = uid + 1;
			}
		}
	}
}

void folder_state_clear(struct folder_state *sel)
{
	free(sel->mailbox);
	memset(sel, 0, sizeof(*sel));
}

void folder_state_copy(struct folder_state *dst, const struct folder_state *src)
{
	*dst = *src;
	dst->mailbox = src->mailbox ? xstrdup(src->mailbox) : NULL;
}

/* ESEARCH "(TAG "x") UID ALL set" for our tag: adds the set to uids. Returns true if it was ours. */
bool esearch_collect(const struct imap_msg *m, const char *tag, struct uidset *uids)
{
	if (m->kind != IMAP_MSG_UNTAGGED || m->nargs < 2 || !imap_arg_is_atom(&m->args[0], "ESEARCH"))
		return false;
	const struct imap_arg *corr = &m->args[1];
	if (corr->type != IMAP_ARG_LIST || corr->list_count != 2 || !imap_arg_is_atom(&corr->list[0], "TAG") ||
	    corr->list[1].len != strlen(tag) || memcmp(corr->list[1].str, tag, corr->list[1].len) != 0)
		return false;
	for (size_t i = 2; i + 1 < m->nargs; i++) {
		if (imap_arg_is_atom(&m->args[i], "ALL")) {
			char err[128];
			if (uidset_parse(uids, m->args[i + 1].str, m->args[i + 1].len, err, sizeof(err)) < 0)
				log_warn("store sent a bad ESEARCH set: %s", err);
		}
	}
	return true;
}

/* ------------------------------------------------------------------------ */
/* flags of a view, for stores without CONDSTORE                              */

static int flag_cmp(const void *a, const void *b)
{
	const struct imap_arg *x = *(const struct imap_arg *const *)a, *y = *(const struct imap_arg *const *)b;
	size_t n = x->len < y->len ? x->len : y->len;
	int d = strncasecmp(x->str, y->str, n);
	return d ? d : (x->len > y->len) - (x->len < y->len);
}

/*
 * A FLAGS list as "(\\Flagged \\Seen $Label1)": sorted, without \\Recent (which
 * belongs to a connection, not to the message), so two lists compare as text.
 */
static void flag_list_canonical(const struct imap_arg *list, struct buf *out)
{
	const struct imap_arg **v = xcalloc(list->list_count + 1, sizeof(*v));
	size_t n = 0;
	for (size_t i = 0; i < list->list_count; i++)
		if (list->list[i].type == IMAP_ARG_ATOM && !imap_arg_is_atom(&list->list[i], "\\Recent"))
			v[n++] = &list->list[i];
	qsort(v, n, sizeof(*v), flag_cmp);
	buf_append(out, "(", 1);
	for (size_t i = 0; i < n; i++)
		buf_printf(out, "%s%.*s", i ? " " : "", (int)v[i]->len, v[i]->str);
	buf_append(out, ")", 1);
	free(v);
}

/* "* n FETCH (... UID u ... FLAGS (...) ...)": n, u and the FLAGS list, if all are there. */
static bool fetch_uid_flags(const struct imap_msg *m, uint32_t *seq, uint32_t *uid, const struct imap_arg **flags)
{
	if (m->kind != IMAP_MSG_UNTAGGED || m->nargs < 3 || !imap_arg_is_atom(&m->args[1], "FETCH") ||
	    m->args[2].type != IMAP_ARG_LIST || !imap_parse_u32(m->args[0].str, m->args[0].len, seq))
		return false;
	const struct imap_arg *l = m->args[2].list;
	bool have_uid = false;
	*flags = NULL;
	for (size_t i = 0; i + 1 < m->args[2].list_count; i += 2) {
		if (imap_arg_is_atom(&l[i], "UID"))
			have_uid = imap_parse_u32(l[i + 1].str, l[i + 1].len, uid);
		else if (imap_arg_is_atom(&l[i], "FLAGS") && l[i + 1].type == IMAP_ARG_LIST)
			*flags = &l[i + 1];
	}
	return have_uid && *flags;
}

static int uid_flags_cmp(const void *a, const void *b)
{
	uint32_t x = ((const struct uid_flags *)a)->uid, y = ((const struct uid_flags *)b)->uid;
	return (x > y) - (x < y);
}

/* Parse "uid (flags)\n" lines (what a snapshot saved). Unparsable lines are skipped. */
static void flag_table_parse(struct flag_table *t, const char *text)
{
	memset(t, 0, sizeof(*t));
	if (!text)
		return;
	t->text = xstrdup(text);
	size_t cap = 0;
	for (char *line = t->text, *next; line && *line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		char *sp = strchr(line, ' ');
		uint32_t uid;
		if (!sp || !imap_parse_u32(line, (size_t)(sp - line), &uid))
			continue;
		if (t->n == cap) {
			cap = cap ? 2 * cap : 64;
			t->v = xrealloc(t->v, cap * sizeof(*t->v));
		}
		t->v[t->n].uid = uid;
		t->v[t->n].flags = sp + 1;
		t->n++;
	}
	if (t->n)
		qsort(t->v, t->n, sizeof(*t->v), uid_flags_cmp);
}

static const char *flag_table_get(const struct flag_table *t, uint32_t uid)
{
	struct uid_flags key = {uid, NULL};
	const struct uid_flags *f = t->n ? bsearch(&key, t->v, t->n, sizeof(*t->v), uid_flags_cmp) : NULL;
	return f ? f->flags : NULL;
}

static void flag_table_free(struct flag_table *t)
{
	free(t->v);
	free(t->text);
	memset(t, 0, sizeof(*t));
}

/* ------------------------------------------------------------------------ */
/* snapshot: the client's view of the selected folder, now                   */

void snapshot_cmd_done(struct store_conn *sc, const struct imap_msg *m, void *ctx)
{
	struct snapshot *sn = ctx;
	(void)sc;
	bool ok = m->status == IMAP_STATUS_OK;
	sn->done(sn, ok, sn->ctx);
}

/*
 * With CONDSTORE the UID list is enough (flags come from CHANGEDSINCE
 * later); ESEARCH tags its answer, so it cannot be mistaken for anyone
 * else's. Otherwise the view keeps every message's flags, fetched with
 * UID FETCH 1:* (FLAGS): that answer is not tagged, so it is only taken
 * when nothing else is in flight on the connection.
 */
bool snapshot_needs_flags(struct store_conn *sc)
{
	return !store_conn_has_cap(sc, "ESEARCH") || !store_conn_has_cap(sc, "CONDSTORE");
}

const char *snapshot_command(const struct snapshot *sn)
{
	return sn->with_flags ? "UID FETCH 1:* (FLAGS)" : "UID SEARCH RETURN (ALL) ALL";
}

struct snapshot *snapshot_new(struct store_conn *sc, snapshot_done_cb done, void *ctx)
{
	struct snapshot *sn = xcalloc(1, sizeof(*sn));
	sn->sc = sc;
	sn->done = done;
	sn->ctx = ctx;
	sn->with_flags = snapshot_needs_flags(sc);
	uidset_init(&sn->uids);
	buf_init(&sn->flags, 0);
	return sn;
}

struct snapshot *snapshot_start(struct store_conn *sc, snapshot_done_cb done, void *ctx)
{
	return snapshot_start_ignoring(sc, done, ctx, 0);
}

struct snapshot *snapshot_start_ignoring(struct store_conn *sc, snapshot_done_cb done, void *ctx, unsigned quiet)
{
	if (snapshot_needs_flags(sc) && store_conn_in_flight(sc) > quiet)
		return NULL; /* untagged FETCH answers could not be told apart */
	struct snapshot *sn = snapshot_new(sc, done, ctx);
	const char *tag = store_conn_sendf(sc, snapshot_cmd_done, sn, "%s", snapshot_command(sn));
	snprintf(sn->tag, sizeof(sn->tag), "%s", tag);
	return sn;
}

bool snapshot_offer(struct snapshot *sn, const struct imap_msg *m)
{
	if (!sn || !sn->tag[0])
		return false;
	if (!sn->with_flags)
		return esearch_collect(m, sn->tag, &sn->uids);
	uint32_t seq, uid;
	const struct imap_arg *flags;
	if (!fetch_uid_flags(m, &seq, &uid, &flags))
		return false; /* an unsolicited FETCH carries no UID: not ours */
	uidset_add(&sn->uids, uid);
	buf_printf(&sn->flags, "%u ", uid);
	flag_list_canonical(flags, &sn->flags);
	buf_append(&sn->flags, "\n", 1);
	return true;
}

void snapshot_free(struct snapshot *sn)
{
	if (!sn)
		return;
	uidset_free(&sn->uids);
	buf_free(&sn->flags);
	free(sn);
}

void folder_rec_from_snapshot(struct gw_folder_rec *rec, const struct folder_state *sel, const struct snapshot *sn)
{
	gw_folder_rec_init(rec);
	rec->uidvalidity = sel->uidvalidity;
	rec->uidnext = sel->uidnext;
	if (uidset_max(&sn->uids) >= rec->uidnext)
		rec->uidnext = uidset_max(&sn->uids) + 1;
	uidset_copy(&rec->uids, &sn->uids);
	if (sn->with_flags) {
		/* The flags are the reference: no modification sequence to count from. */
		rec->highestmodseq = 0;
		rec->flags = xmalloc(buf_len(&sn->flags) + 1);
		memcpy(rec->flags, buf_head(&sn->flags), buf_len(&sn->flags));
		rec->flags[buf_len(&sn->flags)] = '\0';
	} else {
		rec->highestmodseq = sel->modseq;
	}
}

/* ------------------------------------------------------------------------ */
/* catch-up: saved view -> events                                            */

static void catchup_step(struct catchup *cu);

static void catchup_finish(struct catchup *cu, bool resync)
{
	struct buf events;
	buf_init(&events, 0);
	if (!resync && cu->race)
		resync = true;
	if (!resync) {
		/* 1. EXPUNGEs (highest first) and 2. EXISTS or NEW_FORMAT FETCH per new message. */
		const uint8_t *nf = buf_head(&cu->fetch_new);
		size_t nf_len = buf_len(&cu->fetch_new);
		bool use_nf = cu->new_items && nf_len > 0;
		for (size_t i = 0; i < cu->diff.count; i++) {
			const struct sync_event *e = &cu->diff.events[i];
			if (e->kind == SYNC_EXPUNGE)
				buf_printf(&events, "* %u EXPUNGE\r\n", e->seq);
			else if (!use_nf)
				buf_printf(&events, "* %u EXISTS\r\n", e->seq);
		}
		if (use_nf)
			buf_append(&events, nf, nf_len);
		/* 3. flags changed since the saved HIGHESTMODSEQ. */
		buf_append(&events, buf_head(&cu->fetch_flags), buf_len(&cu->fetch_flags));
		buf_append(&events, buf_head(&cu->post), buf_len(&cu->post));
	}
	cu->step = CU_DONE;
	cu->done(cu, resync, &events, cu->ctx);
	buf_free(&events);
}

static void catchup_cmd_done(struct store_conn *sc, const struct imap_msg *m, void *ctx)
{
	struct catchup *cu = ctx;
	(void)sc;
	if (m->status != IMAP_STATUS_OK) {
		log_warn("catch-up command failed: %.*s", (int)m->text_len, m->text);
		catchup_finish(cu, true);
		return;
	}
	catchup_step(cu);
}

static void catchup_step(struct catchup *cu)
{
	struct buf cmd;
	buf_init(&cmd, 0);
	switch (cu->step) {
	case 0:
		cu->step = CU_SEARCH;
		/* flags_mode: the UIDs and the flags of every message, compared in catchup_offer */
		snprintf(cu->tag, sizeof(cu->tag), "%s",
		         store_conn_sendf(cu->sc, catchup_cmd_done, cu, "%s",
		                          cu->flags_mode ? "UID FETCH 1:* (FLAGS)" : "UID SEARCH RETURN (ALL) ALL"));
		break;
	case CU_SEARCH: {
		if (syncdiff_compute(&cu->saved.uids, &cu->now, &cu->diff) != SYNCDIFF_OK) {
			cu->have_diff = true;
			buf_free(&cmd);
			catchup_finish(cu, true);
			return;
		}
		cu->have_diff = true;
		if ((long long)cu->diff.count > cu->max_events) {
			buf_free(&cmd);
			catchup_finish(cu, true);
			return;
		}
		cu->step = CU_FETCH_NEW;
		if (cu->new_items && cu->diff.added) {
			struct uidset added;
			uidset_init(&added);
			uidset_difference(&cu->now, &cu->saved.uids, &added);
			buf_append_str(&cmd, "UID FETCH ");
			uidset_format(&added, &cmd);
			buf_printf(&cmd, " %s\r\n", cu->new_items);
			uidset_free(&added);
			snprintf(cu->tag, sizeof(cu->tag), "%s",
			         store_conn_send(cu->sc, buf_head(&cmd), buf_len(&cmd), false, catchup_cmd_done, cu));
			break;
		}
	}
		/* fall through */
	case CU_FETCH_NEW: {
		cu->step = CU_FETCH_FLAGS;
		if (cu->flags_mode) {
			/* The flag changes were found while the UIDs came in. */
			buf_free(&cmd);
			catchup_finish(cu, false);
			return;
		}
		struct uidset both;
		uidset_init(&both);
		uidset_intersection(&cu->now, &cu->saved.uids, &both);
		if (both.count && cu->saved.highestmodseq && store_conn_has_cap(cu->sc, "CONDSTORE")) {
			buf_append_str(&cmd, "UID FETCH ");
			uidset_format(&both, &cmd);
			buf_printf(&cmd, " (UID FLAGS) (CHANGEDSINCE %llu)\r\n",
			           (unsigned long long)cu->saved.highestmodseq);
			uidset_free(&both);
			snprintf(cu->tag, sizeof(cu->tag), "%s",
			         store_conn_send(cu->sc, buf_head(&cmd), buf_len(&cmd), false, catchup_cmd_done, cu));
			break;
		}
		bool cannot = both.count && !cu->saved.highestmodseq;
		uidset_free(&both);
		buf_free(&cmd);
		/* Without modification sequences the flag changes cannot be known. */
		catchup_finish(cu, cannot);
		return;
	}
	case CU_FETCH_FLAGS:
		buf_free(&cmd);
		catchup_finish(cu, false);
		return;
	}
	buf_free(&cmd);
}

/*
 * "* n FETCH (UID u FLAGS (...))" from the store's answer to the catch-up's
 * CHANGEDSINCE fetch: only what the profile promises, without the MODSEQ
 * the store adds.
 */
static void fetch_flags_event(struct buf *out, const struct imap_msg *m)
{
	if (m->nargs < 3 || m->args[2].type != IMAP_ARG_LIST) {
		buf_append(out, m->raw, m->raw_len);
		return;
	}
	const struct imap_arg *l = m->args[2].list;
	const struct imap_arg *uid = NULL, *flags = NULL;
	for (size_t i = 0; i + 1 < m->args[2].list_count; i += 2) {
		if (imap_arg_is_atom(&l[i], "UID"))
			uid = &l[i + 1];
		else if (imap_arg_is_atom(&l[i], "FLAGS"))
			flags = &l[i + 1];
	}
	if (!uid || !flags || flags->type != IMAP_ARG_LIST) {
		buf_append(out, m->raw, m->raw_len);
		return;
	}
	buf_printf(out, "* %.*s FETCH (UID %.*s FLAGS (", (int)m->args[0].len, m->args[0].str, (int)uid->len, uid->str);
	for (size_t i = 0; i < flags->list_count; i++)
		buf_printf(out, "%s%.*s", i ? " " : "", (int)flags->list[i].len, flags->list[i].str);
	buf_append_str(out, "))\r\n");
}

/* Untagged responses while a catch-up runs: ours, or races. Returns true if consumed. */
bool catchup_offer(struct catchup *cu, const struct imap_msg *m)
{
	if (!cu || cu->step == CU_DONE)
		return false;
	uint32_t n;
	if (cu->step == CU_SEARCH && !cu->flags_mode && esearch_collect(m, cu->tag, &cu->now))
		return true;
	uint32_t seq, uid;
	const struct imap_arg *flags;
	if (cu->step == CU_SEARCH && cu->flags_mode && fetch_uid_flags(m, &seq, &uid, &flags)) {
		uidset_add(&cu->now, uid);
		const char *was = flag_table_get(&cu->saved_flags, uid);
		struct buf now;
		buf_init(&now, 0);
		flag_list_canonical(flags, &now);
		buf_append(&now, "", 1);
		/* seq is the store's number now, which is the client's once the events are applied */
		if (was && strcmp(was, (const char *)buf_head(&now)) != 0)
			buf_printf(&cu->fetch_flags, "* %u FETCH (UID %u FLAGS %s)\r\n", seq, uid, (const char *)buf_head(&now));
		buf_free(&now);
		return true;
	}
	if (m->kind == IMAP_MSG_UNTAGGED && m->nargs >= 2 && imap_arg_is_atom(&m->args[1], "FETCH")) {
		if (cu->step == CU_FETCH_NEW)
			buf_append(&cu->fetch_new, m->raw, m->raw_len);
		else if (cu->step == CU_FETCH_FLAGS)
			fetch_flags_event(&cu->fetch_flags, m);
		else
			buf_append(&cu->post, m->raw, m->raw_len); /* a live flag change: after the diff */
		return true;
	}
	if (imap_untagged_num(m, "EXPUNGE", &n)) {
		cu->race = true;
		return true;
	}
	if (imap_untagged_num(m, "EXISTS", &n) || imap_untagged_num(m, "RECENT", &n)) {
		if (cu->step > CU_SEARCH)
			buf_append(&cu->post, m->raw, m->raw_len);
		/* before the SEARCH answered, the SEARCH itself includes the message */
		return true;
	}
	return false;
}

struct catchup *catchup_start(struct store_conn *sc, const struct gw_folder_rec *saved,
                                     const struct pimap_prefs *prefs, long long max_events, catchup_done_cb done,
                                     void *ctx)
{
	struct catchup *cu = xcalloc(1, sizeof(*cu));
	cu->sc = sc;
	gw_folder_rec_init(&cu->saved);
	cu->saved.uidvalidity = saved->uidvalidity;
	cu->saved.uidnext = saved->uidnext;
	cu->saved.highestmodseq = saved->highestmodseq;
	uidset_copy(&cu->saved.uids, &saved->uids);
	uidset_init(&cu->now);
	buf_init(&cu->fetch_new, 0);
	buf_init(&cu->fetch_flags, 0);
	buf_init(&cu->post, 0);
	cu->max_events = max_events;
	cu->done = done;
	cu->ctx = ctx;
	cu->flags_mode = !saved->highestmodseq && saved->flags;
	if (cu->flags_mode)
		flag_table_parse(&cu->saved_flags, saved->flags);
	struct buf items;
	buf_init(&items, 0);
	if (prefs && pimap_new_format_fetch_items(prefs, &items)) {
		buf_append(&items, "", 1);
		cu->new_items = xstrdup((const char *)buf_head(&items));
	}
	buf_free(&items);
	if (!cu->flags_mode && !store_conn_has_cap(sc, "ESEARCH")) {
		cu->step = CU_DONE;
		return cu; /* the caller sees CU_DONE: nothing can be reconstructed */
	}
	catchup_step(cu);
	return cu;
}

void catchup_free(struct catchup *cu)
{
	if (!cu)
		return;
	gw_folder_rec_free(&cu->saved);
	uidset_free(&cu->now);
	if (cu->have_diff)
		syncdiff_free(&cu->diff);
	buf_free(&cu->fetch_new);
	buf_free(&cu->fetch_flags);
	buf_free(&cu->post);
	free(cu->new_items);
	flag_table_free(&cu->saved_flags);
	free(cu);
}
