/*
 * proxy_count.c - STATUS of filtered folders in compatibility mode, on a
 * helper connection per client session (see proxy_count.h).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <gnutls/gnutls.h>

#include "imap_write.h"
#include "log.h"
#include "proxy_count.h"
#include "proxy_session.h"
#include "sasl.h"
#include "xfilter.h"

/* One request waiting for the helper connection. */
struct pc_req {
	struct pc_req *next;
	struct pcount *pc;
	folder_count_cb cb;
	void *ctx;
};

struct pcount {
	struct session *s;          /* borrowed: the owner */
	char *user, *password;      /* the client's credentials (memory only, wiped) */
	bool sasl_pending;          /* AUTHENTICATE PLAIN without an initial response */
	struct store_target target; /* must outlive the helper connection */
	char server_name[256];
	struct folder_count *fc;    /* NULL until needed, and after PCOUNT_IDLE_CLOSE */
	struct pc_req *reqs;
	ev_timer idle;
};

static void wipe_free(char **p)
{
	if (*p) {
		gnutls_memset(*p, 0, strlen(*p));
		free(*p);
		*p = NULL;
	}
}

static void idle_close(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct pcount *pc = w->data;
	(void)revents;
	ev_timer_stop(loop, w);
	if (pc->reqs || !pc->fc)
		return;
	slog(pc->s, LOG_LEVEL_DEBUG, "counter: closing the helper connection (idle)");
	folder_count_free(pc->fc);
	pc->fc = NULL;
}

struct pcount *pcount_new(struct session *s)
{
	struct pcount *pc = xcalloc(1, sizeof(*pc));
	struct proxy_server *srv = s->srv;
	pc->s = s;
	ev_timer_init(&pc->idle, idle_close, 0., PCOUNT_IDLE_CLOSE); /* armed by ev_timer_again */
	pc->idle.data = pc;
	snprintf(pc->target.host, sizeof(pc->target.host), "%s", srv->upstream.host);
	snprintf(pc->target.port, sizeof(pc->target.port), "%s", srv->upstream.port);
	snprintf(pc->server_name, sizeof(pc->server_name), "%s", srv->upstream_name ? srv->upstream_name : "");
	pc->target.implicit_tls = srv->upstream.implicit_tls;
	pc->target.allow_plaintext = srv->allow_plaintext;
	pc->target.server_name = pc->server_name;
	pc->target.creds = srv->upstream_creds;
	pc->target.compress = srv->compress_upstream;
	pc->target.enable_condstore = true; /* HIGHESTMODSEQ in EXAMINE's answer */
	pc->target.connect_timeout = srv->connect_timeout;
	pc->target.out_limit = srv->cfg->max_output_queue;
	pc->target.limits = (struct imap_limits){UPSTREAM_MAX_LINE_LENGTH, UPSTREAM_MAX_LITERAL_SIZE,
	                                         UPSTREAM_MAX_LIST_DEPTH, UPSTREAM_MAX_ARGS, 0};
	return pc;
}

void pcount_free(struct pcount *pc)
{
	if (!pc)
		return;
	ev_timer_stop(pc->s->srv->loop, &pc->idle);
	folder_count_free(pc->fc); /* no callback runs any more */
	while (pc->reqs) {
		struct pc_req *r = pc->reqs;
		pc->reqs = r->next;
		free(r);
	}
	wipe_free(&pc->user);
	wipe_free(&pc->password);
	free(pc);
}

/* ------------------------------------------------------------------------ */
/* the client's credentials                                                  */

static void note(struct pcount *pc, const char *user, size_t ulen, const char *password, size_t plen)
{
	wipe_free(&pc->user);
	wipe_free(&pc->password);
	if (!ulen || memchr(user, '\0', ulen) || memchr(password, '\0', plen))
		return; /* no LOGIN could carry them */
	pc->user = xstrndup(user, ulen);
	pc->password = xstrndup(password, plen);
}

static void note_plain(void *ctx, const struct sasl_plain *plain)
{
	note(ctx, plain->user, plain->user_len, plain->password, plain->password_len);
}

static void note_sasl(struct pcount *pc, const char *b64, size_t len)
{
	sasl_plain_peek(b64, len, note_plain, pc);
}

void pcount_login_command(struct pcount *pc, const struct imap_msg *m)
{
	/* a new attempt: what an earlier one said no longer counts */
	wipe_free(&pc->user);
	wipe_free(&pc->password);
	pc->sasl_pending = false;
	if (m->nargs == 3 && imap_arg_is_atom(&m->args[0], "LOGIN") && imap_arg_is_string(&m->args[1]) &&
	    imap_arg_is_string(&m->args[2]))
		note(pc, m->args[1].str, m->args[1].len, m->args[2].str, m->args[2].len);
	else if (m->nargs >= 2 && imap_arg_is_atom(&m->args[0], "AUTHENTICATE") && imap_arg_is_atom(&m->args[1], "PLAIN")) {
		if (m->nargs == 3 && imap_arg_is_string(&m->args[2]))
			note_sasl(pc, m->args[2].str, m->args[2].len);
		else
			pc->sasl_pending = m->nargs == 2;
	}
}

void pcount_login_line(struct pcount *pc, const uint8_t *line, size_t len)
{
	if (!pc->sasl_pending)
		return;
	pc->sasl_pending = false;
	while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		len--;
	note_sasl(pc, (const char *)line, len);
}

/* ------------------------------------------------------------------------ */
/* counting                                                                  */

static void req_done(void *ctx, const struct buf *untagged, const char *tagged)
{
	struct pc_req *r = ctx;
	struct pcount *pc = r->pc;
	for (struct pc_req **pp = &pc->reqs; *pp; pp = &(*pp)->next)
		if (*pp == r) {
			*pp = r->next;
			break;
		}
	if (!pc->reqs && pc->fc)
		ev_timer_again(pc->s->srv->loop, &pc->idle);
	folder_count_cb cb = r->cb;
	void *cb_ctx = r->ctx;
	free(r);
	cb(cb_ctx, untagged, tagged);
}

/* The helper connection, opened (again) if needed; NULL with why if it cannot be. */
static struct folder_count *helper(struct pcount *pc, const char **why)
{
	if (pc->fc && folder_count_dead(pc->fc)) {
		/* deferred: its last answers may be on the stack */
		loop_defer_free((void (*)(void *))folder_count_free, pc->fc);
		pc->fc = NULL;
	}
	if (pc->fc)
		return pc->fc;
	if (!pc->user || !pc->password) {
		*why = "NO [UNAVAILABLE] a filtered folder is counted on a second connection with the login's password; "
		       "log in with LOGIN or AUTHENTICATE PLAIN, or select the folder";
		return NULL;
	}
	pc->fc = folder_count_open(pc->s->srv->loop, &pc->target, pc->user, pc->password, pc->s->prefix);
	if (!pc->fc)
		*why = "NO [UNAVAILABLE] the filtered folder cannot be counted now";
	else
		slog(pc->s, LOG_LEVEL_DEBUG, "counter: opening a helper connection to count filtered folders");
	return pc->fc;
}

void pcount_status(struct pcount *pc, const char *mailbox, const char *view, const struct imap_arg *items,
                   const char *names, folder_count_cb cb, void *ctx)
{
	const char *why = NULL;
	struct folder_count *fc = helper(pc, &why);
	if (!fc) {
		cb(ctx, NULL, why);
		return;
	}
	ev_timer_stop(pc->s->srv->loop, &pc->idle);
	struct pc_req *r = xcalloc(1, sizeof(*r));
	r->pc = pc;
	r->cb = cb;
	r->ctx = ctx;
	r->next = pc->reqs;
	pc->reqs = r;
	long today = xfilter_today(time(NULL));
	if (items)
		folder_count_status(fc, mailbox, view, today, items, req_done, r);
	else
		folder_count_status_names(fc, mailbox, view, today, names, req_done, r);
}

/* ------------------------------------------------------------------------ */
/* a LIST-STATUS answer held in order                                         */

struct hold_part {
	struct buf data;
	bool waiting; /* a place for a count not in yet */
};

struct pcount_hold {
	struct hold_part *parts;
	size_t n, cap;
	size_t first; /* parts before it have gone out */
};

struct pcount_hold *pcount_hold_new(void)
{
	return xcalloc(1, sizeof(struct pcount_hold));
}

void pcount_hold_free(struct pcount_hold *h)
{
	if (!h)
		return;
	for (size_t i = 0; i < h->n; i++)
		buf_free(&h->parts[i].data);
	free(h->parts);
	free(h);
}

bool pcount_hold_active(const struct pcount_hold *h)
{
	return h->first < h->n;
}

bool pcount_hold_waiting(const struct pcount_hold *h)
{
	for (size_t i = h->first; i < h->n; i++)
		if (h->parts[i].waiting)
			return true;
	return false;
}

static struct hold_part *hold_add(struct pcount_hold *h)
{
	if (h->n == h->cap) {
		h->cap = h->cap ? 2 * h->cap : 8;
		h->parts = xrealloc(h->parts, h->cap * sizeof(*h->parts));
	}
	struct hold_part *p = &h->parts[h->n++];
	buf_init(&p->data, 0);
	p->waiting = false;
	return p;
}

void pcount_hold_raw(struct pcount_hold *h, const uint8_t *data, size_t len)
{
	struct hold_part *last = h->n > h->first ? &h->parts[h->n - 1] : NULL;
	if (!last || last->waiting)
		last = hold_add(h);
	buf_append(&last->data, data, len);
}

size_t pcount_hold_slot(struct pcount_hold *h)
{
	hold_add(h)->waiting = true;
	return h->n - 1;
}

void pcount_hold_fill(struct pcount_hold *h, size_t slot, const uint8_t *data, size_t len)
{
	if (slot >= h->n || !h->parts[slot].waiting)
		return;
	h->parts[slot].waiting = false;
	if (data)
		buf_append(&h->parts[slot].data, data, len);
}

void pcount_hold_drain(struct pcount_hold *h, struct buf *out)
{
	while (h->first < h->n && !h->parts[h->first].waiting) {
		struct hold_part *p = &h->parts[h->first++];
		buf_append(out, buf_head(&p->data), buf_len(&p->data));
		buf_free(&p->data);
	}
}
