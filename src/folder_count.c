/*
 * folder_count.c - STATUS of a filtered folder that is not selected, on a
 * helper store connection (see folder_count.h).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "folder_count.h"
#include "imap_write.h"
#include "log.h"
#include "xfilter.h"

enum { IT_MESSAGES, IT_UNSEEN, IT_RECENT, IT_UIDNEXT, IT_UIDVALIDITY, IT_HIGHESTMODSEQ, IT__COUNT };
static const char *const item_names[IT__COUNT] = {"MESSAGES", "UNSEEN", "RECENT", "UIDNEXT", "UIDVALIDITY",
                                                  "HIGHESTMODSEQ"};

struct fc_req {
	struct fc_req *next;
	char *mailbox;
	char *keys;        /* the view for the store */
	bool utf8;
	int order[IT__COUNT]; /* the client's items, in its order */
	size_t nitems;
	folder_count_cb cb;
	void *ctx;
	unsigned long long value[IT__COUNT];
	bool have[IT__COUNT];
	char tag[3][16];   /* MESSAGES, UNSEEN, RECENT searches */
	bool failed;
	bool push;         /* folder_count_push: leave out what the store did not say */
	char why[200];
};

struct folder_count {
	struct store_conn *sc;
	bool ready, dead;
	struct fc_req *q, *cur;
	size_t nq;
};

static void fc_next(struct folder_count *fc);

static void req_free(struct fc_req *r)
{
	free(r->mailbox);
	free(r->keys);
	free(r);
}

static void req_answer(struct fc_req *r, const struct buf *untagged, const char *tagged)
{
	if (r->cb)
		r->cb(r->ctx, untagged, tagged);
}

/* ------------------------------------------------------------------------ */
/* the store connection                                                      */

/* The connection is gone (or never logged in): every request gets NO. */
static void fc_dead(struct folder_count *fc)
{
	fc->sc = NULL;
	fc->dead = true;
	if (fc->cur) {
		req_answer(fc->cur, NULL, "NO [UNAVAILABLE] the filtered folder cannot be counted now");
		req_free(fc->cur);
		fc->cur = NULL;
	}
	while (fc->q) {
		struct fc_req *r = fc->q;
		fc->q = r->next;
		fc->nq--;
		req_answer(r, NULL, "NO [UNAVAILABLE] the filtered folder cannot be counted now");
		req_free(r);
	}
}

static void fc_login_done(struct store_conn *sc, enum store_login_result result, const char *text, void *ctx)
{
	struct folder_count *fc = ctx;
	(void)sc;
	if (result != STORE_LOGIN_OK) {
		log_msg(LOG_LEVEL_WARN, NULL, "folder counter: store login failed: %s", text);
		fc_dead(fc);
		return;
	}
	fc->ready = true;
	fc_next(fc);
}

static void fc_untagged(struct store_conn *sc, const struct imap_msg *m, void *ctx)
{
	struct folder_count *fc = ctx;
	struct fc_req *r = fc->cur;
	(void)sc;
	if (!r)
		return;
	const char *v;
	size_t vl;
	if (m->status == IMAP_STATUS_OK && m->code) {
		static const int codes[] = {IT_UIDNEXT, IT_UIDVALIDITY, IT_HIGHESTMODSEQ};
		for (size_t i = 0; i < 3; i++) {
			if (imap_code_value(m, item_names[codes[i]], &v, &vl)) {
				uint64_t n;
				if (imap_parse_u64(v, vl, &n)) {
					r->value[codes[i]] = n;
					r->have[codes[i]] = true;
				}
			}
		}
		return;
	}
	/* "* ESEARCH (TAG "x") UID COUNT n" */
	if (m->nargs < 2 || !imap_arg_is_atom(&m->args[0], "ESEARCH") || m->args[1].type != IMAP_ARG_LIST ||
	    m->args[1].list_count != 2)
		return;
	const struct imap_arg *tag = &m->args[1].list[1];
	for (int k = 0; k < 3; k++) {
		if (tag->len != strlen(r->tag[k]) || memcmp(tag->str, r->tag[k], tag->len) != 0)
			continue;
		r->have[k] = true; /* no COUNT in the answer would mean 0 */
		for (size_t i = 2; i + 1 < m->nargs; i++)
			if (imap_arg_is_atom(&m->args[i], "COUNT"))
				imap_parse_u64(m->args[i + 1].str, m->args[i + 1].len, (uint64_t *)&r->value[k]);
	}
}

static void fc_closed(struct store_conn *sc, const char *reason, void *ctx)
{
	struct folder_count *fc = ctx;
	(void)sc;
	log_msg(LOG_LEVEL_INFO, NULL, "folder counter: store connection lost (%s)", reason);
	fc_dead(fc);
}

static const struct store_conn_ops fc_ops = {
	.login_done = fc_login_done,
	.untagged = fc_untagged,
	.closed = fc_closed,
};

static void examine_done(struct store_conn *sc, const struct imap_msg *m, void *ctx)
{
	struct folder_count *fc = ctx;
	(void)sc;
	if (fc->cur && m->status != IMAP_STATUS_OK) {
		fc->cur->failed = true;
		snprintf(fc->cur->why, sizeof(fc->cur->why), "%s %.*s", imap_status_name(m->status), (int)m->text_len,
		         m->text);
	}
}

static void search_done(struct store_conn *sc, const struct imap_msg *m, void *ctx)
{
	struct folder_count *fc = ctx;
	(void)sc;
	if (fc->cur && m->status != IMAP_STATUS_OK && !fc->cur->failed) {
		fc->cur->failed = true;
		snprintf(fc->cur->why, sizeof(fc->cur->why), "NO [UNAVAILABLE] the filtered folder cannot be counted");
	}
}

static void unselect_done(struct store_conn *sc, const struct imap_msg *m, void *ctx)
{
	struct folder_count *fc = ctx;
	struct fc_req *r = fc->cur;
	(void)sc;
	(void)m;
	fc->cur = NULL;
	if (!r)
		return;
	if (r->failed) {
		req_answer(r, NULL, r->why);
	} else {
		struct buf out;
		buf_init(&out, 0);
		buf_append_str(&out, "* STATUS ");
		imap_write_mailbox(&out, r->mailbox, true);
		buf_append_str(&out, " (");
		const char *sep = "";
		for (size_t i = 0; i < r->nitems; i++) {
			int it = r->order[i];
			if (r->push && !r->have[it])
				continue;
			buf_printf(&out, "%s%s %llu", sep, item_names[it], r->value[it]);
			sep = " ";
		}
		buf_append_str(&out, ")\r\n");
		req_answer(r, &out, "OK STATUS completed (filtered).");
		buf_free(&out);
	}
	req_free(r);
	fc_next(fc);
}

/* Serve the next request: EXAMINE, the counts, UNSELECT, in one batch. */
static void fc_next(struct folder_count *fc)
{
	if (!fc->ready || fc->dead || fc->cur || !fc->q)
		return;
	struct fc_req *r = fc->q;
	fc->q = r->next;
	fc->nq--;
	fc->cur = r;
	struct buf cmd;
	buf_init(&cmd, 0);
	buf_append_str(&cmd, "EXAMINE ");
	imap_write_mailbox(&cmd, r->mailbox, false);
	buf_append_str(&cmd, "\r\n");
	store_conn_send(fc->sc, buf_head(&cmd), buf_len(&cmd), false, examine_done, fc);
	static const char *const extra[3] = {"", " UNSEEN", " RECENT"};
	for (int k = 0; k < 3; k++) {
		buf_clear(&cmd);
		buf_printf(&cmd, "UID SEARCH RETURN (COUNT) %s(%s)%s\r\n", r->utf8 ? "CHARSET UTF-8 " : "", r->keys, extra[k]);
		snprintf(r->tag[k], sizeof(r->tag[k]), "%s",
		         store_conn_send(fc->sc, buf_head(&cmd), buf_len(&cmd), false, search_done, fc));
	}
	store_conn_sendf(fc->sc, unselect_done, fc, "UNSELECT");
	buf_free(&cmd);
}

/* ------------------------------------------------------------------------ */

struct folder_count *folder_count_open(struct ev_loop *loop, const struct store_target *target, const char *user,
                                       const char *password, const char *log_prefix)
{
	struct folder_count *fc = xcalloc(1, sizeof(*fc));
	char prefix[300];
	snprintf(prefix, sizeof(prefix), "%s counter", log_prefix);
	fc->sc = store_conn_open(loop, target, user, password, prefix, &fc_ops, fc);
	if (!fc->sc) {
		free(fc);
		return NULL;
	}
	return fc;
}

void folder_count_free(struct folder_count *fc)
{
	if (!fc)
		return;
	if (fc->sc)
		store_conn_close(fc->sc);
	if (fc->cur)
		req_free(fc->cur);
	while (fc->q) {
		struct fc_req *r = fc->q;
		fc->q = r->next;
		req_free(r);
	}
	free(fc);
}

bool folder_count_dead(const struct folder_count *fc)
{
	return fc->dead;
}

/* Queue r for mailbox through view, or answer it at once if it cannot be served. */
static void fc_queue(struct folder_count *fc, struct fc_req *r, const char *mailbox, const char *view, long today)
{
	r->mailbox = xstrdup(mailbox);
	if (fc->dead || fc->nq >= FOLDER_COUNT_MAX_QUEUED) {
		req_answer(r, NULL, fc->dead ? "NO [UNAVAILABLE] the filtered folder cannot be counted now"
		                             : "NO [LIMIT] too many STATUS of filtered folders at once");
		req_free(r);
		return;
	}
	struct buf keys;
	buf_init(&keys, 0);
	xfilter_resolve(view, today, &keys);
	buf_append(&keys, "", 1);
	r->keys = xstrdup((const char *)buf_head(&keys));
	buf_free(&keys);
	r->utf8 = xfilter_needs_utf8(view);
	struct fc_req **pp = &fc->q;
	while (*pp)
		pp = &(*pp)->next;
	*pp = r;
	fc->nq++;
	fc_next(fc);
}

/* Add one STATUS item to r's list; false (and r answered and freed) if a view does not count it. */
static bool req_item(struct fc_req *r, const char *name, size_t len)
{
	int found = -1;
	for (int k = 0; k < IT__COUNT; k++)
		if (len == strlen(item_names[k]) && strncasecmp(name, item_names[k], len) == 0)
			found = k;
	if (found < 0 || r->nitems == IT__COUNT) {
		char why[160];
		snprintf(why, sizeof(why), "NO [CANNOT] STATUS %.*s is not counted in a filtered folder",
		         (int)(len > 40 ? 40 : len), name);
		req_answer(r, NULL, why);
		req_free(r);
		return false;
	}
	r->order[r->nitems++] = found;
	return true;
}

void folder_count_status(struct folder_count *fc, const char *mailbox, const char *view, long today,
                         const struct imap_arg *items, folder_count_cb cb, void *ctx)
{
	struct fc_req *r = xcalloc(1, sizeof(*r));
	r->cb = cb;
	r->ctx = ctx;
	for (size_t i = 0; items->type == IMAP_ARG_LIST && i < items->list_count; i++) {
		const struct imap_arg *a = &items->list[i];
		if (!req_item(r, a->type == IMAP_ARG_ATOM ? a->str : "", a->type == IMAP_ARG_ATOM ? a->len : 0))
			return;
	}
	fc_queue(fc, r, mailbox, view, today);
}

void folder_count_status_names(struct folder_count *fc, const char *mailbox, const char *view, long today,
                               const char *names, folder_count_cb cb, void *ctx)
{
	struct fc_req *r = xcalloc(1, sizeof(*r));
	r->cb = cb;
	r->ctx = ctx;
	for (const char *p = names; *p;) {
		size_t n = strcspn(p, " ");
		if (n && !req_item(r, p, n))
			return;
		p += n;
		p += strspn(p, " ");
	}
	fc_queue(fc, r, mailbox, view, today);
}

void folder_count_push(struct folder_count *fc, const char *mailbox, const char *view, long today,
                       folder_count_cb cb, void *ctx)
{
	static const int items[] = {IT_MESSAGES, IT_UIDNEXT, IT_UIDVALIDITY, IT_UNSEEN, IT_HIGHESTMODSEQ};
	struct fc_req *r = xcalloc(1, sizeof(*r));
	r->cb = cb;
	r->ctx = ctx;
	r->push = true;
	for (size_t i = 0; i < sizeof(items) / sizeof(items[0]); i++)
		r->order[r->nitems++] = items[i];
	fc_queue(fc, r, mailbox, view, today);
}

void folder_count_cancel(struct folder_count *fc, void *ctx)
{
	if (!fc)
		return;
	if (fc->cur && fc->cur->ctx == ctx)
		fc->cur->cb = NULL;
	for (struct fc_req *r = fc->q; r; r = r->next)
		if (r->ctx == ctx)
			r->cb = NULL;
}
