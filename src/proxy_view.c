/*
 * proxy_view.c - view filters in pimap-proxy's compatibility mode (see
 * proxy_view.h).
 *
 * While a filtered folder is selected (or being left), or a command is
 * answered out of the server's order (a STATUS counted on the helper
 * connection, a LIST-STATUS whose counts are replaced, an IDLE whose
 * events are held), every client command is tracked in order (struct
 * pv_cmd), whether the view answers it (taken by vrelay, the proxy's own
 * IDLE, the counter) or the server does (relayed as usual): replies then
 * reach the client in the order of the commands, and held events and the
 * view's pending EXISTS/EXPUNGE go out before a reply where that is safe.
 * Commands of the view's own (searches) carry the proxy's internal tags
 * and are answered to the view.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "caps.h"
#include "filters.h"
#include "imap_write.h"
#include "log.h"
#include "proxy_count.h"
#include "proxy_session.h"
#include "proxy_view.h"
#include "vrelay.h"
#include "xfilter.h"

enum pv_kind {
	PC_PASS,   /* relayed to the server; its tagged reply is the client's */
	PC_TAKEN,  /* answered by the view (vrelay_command) */
	PC_SELECT, /* SELECT of a filtered folder: answered when the view is open */
	PC_IDLE,   /* the client's IDLE, answered by the proxy */
	PC_LISTPART, /* the count of one STATUS line of a LIST-STATUS (never in the command list) */
};

struct pv_cmd {
	struct pv_cmd *next;
	struct pview *pv;
	char tag[MAX_CLIENT_TAG + 1];
	enum pv_kind kind;
	bool seq;         /* uses the client's sequence numbers */
	bool done;
	struct buf out;   /* the answer, once done (PC_PASS: the server's tagged line, relayed in turn) */
	uint64_t mark;    /* vrelay_reply_waits: the reply waits until new mail reported before it is decided */
	struct pcount_hold *list; /* LIST ... RETURN (STATUS ...): its answer, held in order while counts run */
	char *list_items;         /* ...the STATUS items it asks for ("MESSAGES UNSEEN") */
	struct pv_cmd *owner;     /* PC_LISTPART: the LIST it counts for, and its place there */
	size_t slot;
};

/* One filtered folder's engine. */
struct pv_view {
	struct pview *pv;
	struct vrelay *vr;
	char mailbox[1024];     /* as vrelay has it (INBOX in capitals) */
	bool readonly;          /* EXAMINE, or the server said READ-ONLY */
	struct pv_cmd *leaving; /* the command that leaves it (when it is pv->old) */
};

/* A command of the proxy's own on the server connection. */
struct pv_part {
	struct pv_part *next;
	char tag[VRELAY_TAG_MAX];
	struct pv_view *view; /* NULL: the view is gone, the answer is dropped */
	uint32_t cookie;
	bool idle;            /* the proxy's IDLE */
};

struct pview {
	struct session *s;
	struct imap_parser *reparse; /* re-reads a held tagged reply */
	struct pv_view *cur, *old;
	struct pv_cmd *cmds;
	struct pv_part *parts;
	unsigned seq;
	bool in_command;          /* vrelay_command is on the stack */
	struct pv_cmd *select;    /* the view's SELECT */
	struct buf select_tagged; /* its tagged line, once the server answered */
	bool select_answered;
	/* the client's IDLE in a filtered folder */
	struct pv_cmd *idle;
	bool idle_done;           /* the client said DONE */
	struct pv_part *up_idle;  /* the proxy's IDLE at the server */
	bool up_plus, up_ending, up_end_wanted;
	struct buf queued;        /* commands waiting for that IDLE to end */
	/* the filter file's event kinds: what an IDLE may not be told yet waits for the next reply */
	struct pv_cmd *relayed_idle; /* the client's IDLE in an unfiltered folder, answered by the server */
	struct buf held;
	unsigned nheld;
	/* STATUS of filtered folders */
	struct pcount *count;        /* the helper connection and the login's credentials */
	struct pv_cmd *lparts;       /* PC_LISTPARTs being counted */
	struct imap_parser *cmdparse; /* builds the view's STATUS for a LIST-STATUS line */
};

static void release(struct pview *pv);
static void maybe_idle(struct pview *pv);

/* ------------------------------------------------------------------------ */

static struct pview *pview_of(struct session *s)
{
	if (!s->pview) {
		s->pview = xcalloc(1, sizeof(*s->pview));
		s->pview->s = s;
		buf_init(&s->pview->select_tagged, 0);
		buf_init(&s->pview->queued, 0);
		buf_init(&s->pview->held, 0);
		s->pview->count = pcount_new(s);
	}
	return s->pview;
}

/* The filter file asks the proxy for something: views, notification rules or event kinds. */
static bool filters_apply(const struct filter_set *set)
{
	const char *events = filter_set_events(set);
	return filter_set_has_views(set) || filter_set_has_notify(set) || (events && strcmp(events, "ALL") != 0);
}

/* The file's event kinds (PIMAP_EVENT_FILTER's meaning): may a new message (or another change) be pushed? */
static bool events_allow(const struct pview *pv, bool new_mail)
{
	const char *events = filter_set_events(pv->s->srv->filters);
	if (!events || strcmp(events, "ALL") == 0)
		return true;
	return strcmp(events, "NEW") == 0 && new_mail;
}

/* Events held back go out now (before a reply, or before a pushed event: never reordered). */
static void flush_held(struct pview *pv)
{
	if (!buf_len(&pv->held))
		return;
	if (!pv->s->closing)
		forward_to_client(pv->s, buf_head(&pv->held), buf_len(&pv->held));
	buf_clear(&pv->held);
	pv->nheld = 0;
}

static void hold_event(struct pview *pv, const uint8_t *data, size_t len)
{
	buf_append(&pv->held, data, len);
	pv->nheld++;
	slog(pv->s, LOG_LEVEL_DEBUG, "event held for the client's next command (events: %s; %u held)",
	     filter_set_events(pv->s->srv->filters) ? filter_set_events(pv->s->srv->filters) : "ALL", pv->nheld);
	/* bounded: past the limit they are delivered rather than dropped */
	if (pv->nheld >= PVIEW_MAX_HELD_EVENTS)
		flush_held(pv);
}

static bool tracking(const struct pview *pv)
{
	return pv->cur || pv->old || pv->cmds;
}

static struct pv_cmd *track(struct pview *pv, const char *tag, enum pv_kind kind)
{
	struct pv_cmd *c = xcalloc(1, sizeof(*c));
	c->pv = pv;
	snprintf(c->tag, sizeof(c->tag), "%s", tag);
	c->kind = kind;
	buf_init(&c->out, 0);
	struct pv_cmd **pp = &pv->cmds;
	while (*pp)
		pp = &(*pp)->next;
	*pp = c;
	return c;
}

static void cmd_unlink_free(struct pview *pv, struct pv_cmd *c)
{
	for (struct pv_cmd **pp = c->kind == PC_LISTPART ? &pv->lparts : &pv->cmds; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	buf_free(&c->out);
	pcount_hold_free(c->list);
	free(c->list_items);
	free(c);
}

/* The server answers what the client sent before: those commands are tracked too, so that an answer
 * the proxy gives (a STATUS counted elsewhere) does not overtake theirs. */
static void adopt_in_flight(struct pview *pv)
{
	if (pv->cmds)
		return;
	for (size_t i = 0; i < pv->s->ninflight; i++)
		track(pv, pv->s->inflight[i].tag, PC_PASS);
}

static bool parts_of(const struct pview *pv, const struct pv_view *v)
{
	for (const struct pv_part *p = pv->parts; p; p = p->next)
		if (!p->idle && (!v || p->view == v))
			return true;
	return false;
}

static void view_free(struct pview *pv, struct pv_view *v)
{
	if (!v)
		return;
	for (struct pv_part *p = pv->parts; p; p = p->next)
		if (p->view == v)
			p->view = NULL; /* its answers are dropped when they come */
	loop_defer_free((void (*)(void *))vrelay_free, v->vr);
	loop_defer_free(free, v);
}

/* Pending EXPUNGE (if removals) and EXISTS (if arrivals) to the client: before a reply, or pushed. */
static void flush_events(struct pview *pv, bool removals, bool arrivals)
{
	if (!pv->cur || !vrelay_is_open(pv->cur->vr))
		return;
	struct buf out;
	buf_init(&out, 0);
	vrelay_flush(pv->cur->vr, removals, arrivals, &out);
	if (buf_len(&out))
		forward_to_client(pv->s, buf_head(&out), buf_len(&out));
	buf_free(&out);
}

/* May an EXPUNGE go out before the reply of c? Not if c or a later command uses sequence numbers. */
static bool removals_ok(const struct pview *pv, const struct pv_cmd *c)
{
	for (const struct pv_cmd *q = c; q; q = q->next)
		if (q->seq && (q == c || !q->done))
			return false;
	(void)pv;
	return true;
}

/* The folder being left had all its answers: let it go. */
static void maybe_retire(struct pview *pv)
{
	struct pv_view *v = pv->old;
	if (!v || parts_of(pv, v))
		return;
	for (struct pv_cmd *q = pv->cmds; q && q != v->leaving; q = q->next)
		if (!q->done)
			return;
	pv->old = NULL;
	view_free(pv, v);
}

/* A reply waits while new mail the server reported before it is decided, and a LIST-STATUS for its counts. */
static bool reply_waits(struct pview *pv, struct pv_cmd *c)
{
	bool waits = pv->cur && c->kind != PC_SELECT && vrelay_reply_waits(pv->cur->vr, &c->mark);
	return waits || (c->list && pcount_hold_waiting(c->list));
}

/* What a LIST-STATUS holds and can give out now. */
static void list_progress(struct pview *pv, struct pv_cmd *c)
{
	struct buf out;
	buf_init(&out, 0);
	pcount_hold_drain(c->list, &out);
	if (buf_len(&out) && !pv->s->closing)
		forward_to_client(pv->s, buf_head(&out), buf_len(&out));
	buf_free(&out);
}

/* One whole message in data, parsed with *parser (made on first use); NULL if it is not one. */
static const struct imap_msg *parse_whole(struct imap_parser **parser, enum imap_parser_mode mode,
                                          const uint8_t *data, size_t len)
{
	if (!*parser) {
		struct imap_limits lim = {UPSTREAM_MAX_LINE_LENGTH, UPSTREAM_MAX_LITERAL_SIZE, UPSTREAM_MAX_LIST_DEPTH,
		                          UPSTREAM_MAX_ARGS, 0};
		*parser = imap_parser_new(mode, &lim);
	}
	imap_parser_reset(*parser);
	size_t used = 0;
	return imap_parser_feed(*parser, data, len, &used) == IMAP_PARSE_DONE ? imap_parser_msg(*parser) : NULL;
}

/* The server's tagged reply of a relayed command, kept until its turn. */
static void relay_held_reply(struct pview *pv, struct pv_cmd *c)
{
	const struct imap_msg *m = parse_whole(&pv->reparse, IMAP_PARSE_RESPONSES, buf_head(&c->out), buf_len(&c->out));
	if (m)
		relay_tagged_reply(pv->s, m);
}

/* Answers of done commands, in order. */
static void release(struct pview *pv)
{
	while (pv->cmds && pv->cmds->done && !pv->s->closing && !reply_waits(pv, pv->cmds)) {
		struct pv_cmd *c = pv->cmds;
		flush_held(pv);
		if (c->list)
			list_progress(pv, c);
		if (c->kind != PC_SELECT)
			flush_events(pv, removals_ok(pv, c), true);
		if (c->kind == PC_PASS)
			relay_held_reply(pv, c);
		else
			forward_to_client(pv->s, buf_head(&c->out), buf_len(&c->out));
		cmd_unlink_free(pv, c);
	}
	maybe_retire(pv);
}

/* ------------------------------------------------------------------------ */
/* the view's host                                                           */

static void write_part(struct pview *pv, const struct buf *line)
{
	if (pv->up_idle) {
		/* the server is in our IDLE: end it, then send */
		buf_append(&pv->queued, buf_head(line), buf_len(line));
		if (pv->up_plus && !pv->up_ending) {
			pv->up_ending = true;
			forward_to_upstream(pv->s, (const uint8_t *)"DONE\r\n", 6, false);
		} else {
			pv->up_end_wanted = true;
		}
		return;
	}
	forward_to_upstream(pv->s, buf_head(line), buf_len(line), false);
}

static struct pv_part *part_new(struct pview *pv, struct pv_view *v)
{
	struct pv_part *p = xcalloc(1, sizeof(*p));
	p->view = v;
	snprintf(p->tag, sizeof(p->tag), INTERNAL_TAG_PREFIX "v%u", ++pv->seq);
	struct pv_part **pp = &pv->parts;
	while (*pp)
		pp = &(*pp)->next;
	*pp = p;
	return p;
}

static void vh_send(void *ctx, const uint8_t *text, size_t len, uint32_t cookie, char *tag_out)
{
	struct pv_view *v = ctx;
	struct pview *pv = v->pv;
	struct pv_part *p = part_new(pv, v);
	p->cookie = cookie;
	snprintf(tag_out, VRELAY_TAG_MAX, "%s", p->tag);
	struct buf line;
	buf_init(&line, 0);
	buf_printf(&line, "%s ", p->tag);
	buf_append(&line, text, len);
	write_part(pv, &line); /* traced when it goes out */
	buf_free(&line);
}

static void list_part_done(struct pview *pv, struct pv_cmd *part, const uint8_t *data, size_t len, bool ok);

static void vh_finished(void *ctx, void *cmdp, const uint8_t *data, size_t len)
{
	struct pv_view *v = ctx;
	struct pv_cmd *c = cmdp;
	if (c->kind == PC_LISTPART) {
		/* the untagged STATUS, then our tagged line: keep the first */
		size_t end = len;
		while (end > 0 && (data[end - 1] == '\n' || data[end - 1] == '\r'))
			end--;
		while (end > 0 && data[end - 1] != '\n')
			end--;
		bool ok = len - end > strlen(c->tag) + 3 && memcmp(data + end + strlen(c->tag), " OK", 3) == 0;
		list_part_done(v->pv, c, data, end, ok);
		return;
	}
	buf_append(&c->out, data, len);
	c->done = true;
	if (!v->pv->in_command)
		release(v->pv);
}

static void vh_opened(void *ctx, enum vrelay_opened result, const struct buf *response, const struct buf *events)
{
	struct pv_view *v = ctx;
	struct pview *pv = v->pv;
	struct pv_cmd *c = pv->select;
	pv->select = NULL;
	pv->s->block = BLOCK_NONE;
	if (!c)
		return;
	buf_append(&c->out, buf_head(response), buf_len(response));
	buf_append(&c->out, buf_head(events), buf_len(events));
	buf_append(&c->out, buf_head(&pv->select_tagged), buf_len(&pv->select_tagged));
	buf_clear(&pv->select_tagged);
	pv->select_answered = false;
	c->done = true;
	if (result == VR_FAILED && pv->cur == v) {
		pv->cur = NULL;
		view_free(pv, v);
	} else {
		slog(pv->s, LOG_LEVEL_DEBUG, "filtered folder open: %u of %u messages in the view",
		     fview_count(vrelay_view(v->vr)), fview_store_count(vrelay_view(v->vr)));
	}
	release(pv);
}

/* The client waits in IDLE: push what the notification rule and the event kinds allow; the rest goes
 * with the next reply. */
static void push_pending(struct pview *pv)
{
	struct vrelay_pending pd;
	vrelay_pending(pv->cur->vr, &pd);
	bool removals = pd.removals && removals_ok(pv, pv->idle) && events_allow(pv, false);
	bool arrivals = pd.arrivals && pd.notify && events_allow(pv, true);
	if (pd.arrivals && !arrivals)
		slog(pv->s, LOG_LEVEL_DEBUG, "new mail not pushed: %s (%u held)",
		     pd.notify ? "the filter file's events leave it for the next command"
		               : "none passes the notification rule",
		     pd.arrivals);
	if (!removals && !arrivals)
		return;
	flush_held(pv);
	flush_events(pv, removals, arrivals);
}

static void vh_pending(void *ctx)
{
	struct pv_view *v = ctx;
	struct pview *pv = v->pv;
	/* In IDLE the client waits for them; otherwise they go with the next reply. */
	if (pv->cur == v && pv->idle && !pv->idle_done)
		push_pending(pv);
	release(pv); /* replies that waited for new mail to be decided */
	maybe_idle(pv);
}

static void vh_lost(void *ctx, const char *why)
{
	struct pv_view *v = ctx;
	slog(v->pv->s, LOG_LEVEL_WARN, "filtered view lost: %s", why);
	session_bye(v->pv->s, "UNAVAILABLE", "The filtered view of this folder lost track of the server; reconnect");
}

static const struct vrelay_host host = {vh_send, vh_finished, vh_opened, vh_pending, vh_lost};

/* ------------------------------------------------------------------------ */
/* the proxy's IDLE                                                          */

/* The server may IDLE for the client again once the view's searches are answered. */
static void maybe_idle(struct pview *pv)
{
	if (!pv->idle || pv->up_idle || parts_of(pv, NULL) || buf_len(&pv->queued))
		return;
	if (pv->idle_done) {
		struct pv_cmd *c = pv->idle;
		pv->idle = NULL;
		buf_printf(&c->out, "%s OK Idle completed.\r\n", c->tag);
		c->done = true;
		pv->s->block = BLOCK_NONE;
		pv->s->raw_line_ok = false;
		release(pv);
		return;
	}
	struct pv_part *p = part_new(pv, NULL);
	p->idle = true;
	pv->up_idle = p;
	pv->up_plus = pv->up_ending = pv->up_end_wanted = false;
	struct buf line;
	buf_init(&line, 0);
	buf_printf(&line, "%s IDLE\r\n", p->tag);
	forward_to_upstream(pv->s, buf_head(&line), buf_len(&line), false);
	buf_free(&line);
}

static void end_up_idle(struct pview *pv)
{
	if (!pv->up_idle || pv->up_ending)
		return;
	if (!pv->up_plus) {
		pv->up_end_wanted = true;
		return;
	}
	pv->up_ending = true;
	forward_to_upstream(pv->s, (const uint8_t *)"DONE\r\n", 6, false);
}

bool pview_client_raw(struct session *s, const struct imap_msg *m)
{
	struct pview *pv = s->pview;
	if (!pv || !pv->idle || pv->idle_done)
		return false;
	(void)m; /* DONE, or anything else: IDLE ends either way (RFC 2177) */
	pv->idle_done = true;
	s->raw_line_ok = false;
	if (pv->up_idle)
		end_up_idle(pv);
	else
		maybe_idle(pv);
	return true;
}

/* ------------------------------------------------------------------------ */
/* client commands                                                           */

static bool word_is(const struct imap_arg *a, const char *w)
{
	return imap_arg_is_atom(a, w);
}

/* ENABLE without QRESYNC (a view does not follow VANISHED). */
static bool client_enable(struct session *s, struct pview *pv, const struct imap_msg *m)
{
	bool qresync = false;
	struct buf line;
	buf_init(&line, 0);
	buf_printf(&line, "%s ENABLE", m->tag);
	size_t kept = 0;
	for (size_t i = 1; i < m->nargs; i++) {
		if (m->args[i].type != IMAP_ARG_ATOM) {
			buf_free(&line);
			return false; /* the server says BAD */
		}
		if (word_is(&m->args[i], "QRESYNC")) {
			qresync = true;
			continue;
		}
		buf_printf(&line, " %.*s", (int)m->args[i].len, m->args[i].str);
		kept++;
	}
	if (!qresync) {
		buf_free(&line);
		return false;
	}
	slog(s, LOG_LEVEL_DEBUG, "ENABLE QRESYNC not passed on: view filters are in force");
	if (kept == 0) {
		struct pv_cmd *c = track(pv, m->tag, PC_TAKEN);
		buf_printf(&c->out, "* ENABLED\r\n%s OK ENABLE completed\r\n", m->tag);
		c->done = true;
		release(pv);
	} else {
		track(pv, m->tag, PC_PASS);
		buf_append_str(&line, "\r\n");
		relay_command_text(s, m->tag, buf_head(&line), buf_len(&line));
	}
	buf_free(&line);
	return true;
}

/* The server can carry a view (and its literals)? */
static bool server_ok(struct session *s)
{
	char why[200];
	const char *caps = s->upstream_caps ? s->upstream_caps : "";
	if (!vrelay_server_ok(caps, why, sizeof(why))) {
		slog(s, LOG_LEVEL_WARN, "view filters not applied: %s", why);
		return false;
	}
	if (!caps_contains(caps, strlen(caps), "LITERAL+")) {
		slog(s, LOG_LEVEL_WARN, "view filters not applied: the server does not offer LITERAL+");
		return false;
	}
	return true;
}

/* Leave the filtered folder: it stays (pv->old) until what was sent before is answered. */
static void leave(struct pview *pv, struct pv_cmd *leaving)
{
	if (!pv->cur)
		return;
	if (pv->old)
		view_free(pv, pv->old); /* not reached: input waits while a view opens */
	pv->old = pv->cur;
	pv->cur = NULL;
	pv->old->leaving = leaving;
	maybe_retire(pv);
}

static bool client_select(struct session *s, struct pview *pv, const struct imap_msg *m)
{
	char mailbox[1024];
	snprintf(mailbox, sizeof(mailbox), "%.*s", (int)m->args[1].len, m->args[1].str);
	bool params_ok = m->nargs == 2 || (m->nargs == 3 && m->args[2].type == IMAP_ARG_LIST &&
	                                   m->args[2].list_count == 1 && word_is(&m->args[2].list[0], "CONDSTORE"));
	const char *view = filter_set_value(s->srv->filters, mailbox, XFILTER_VIEW);
	const char *notify = filter_set_value(s->srv->filters, mailbox, XFILTER_NOTIFY);
	/* a notification rule needs the view engine too: it decides which new mail is pushed */
	bool filtered = (!xfilter_is_all(view) || !xfilter_is_all(notify)) && params_ok && server_ok(s);
	if (!filtered) {
		if (!tracking(pv))
			return false;
		struct pv_cmd *c = track(pv, m->tag, PC_PASS);
		if (pv->cur) {
			vrelay_close(pv->cur->vr, true);
			leave(pv, c);
		}
		return false; /* relayed as usual */
	}
	struct pv_cmd *c = track(pv, m->tag, PC_SELECT);
	if (pv->cur) {
		vrelay_close(pv->cur->vr, true);
		leave(pv, c);
	}
	struct pv_view *v = xcalloc(1, sizeof(*v));
	v->pv = pv;
	snprintf(v->mailbox, sizeof(v->mailbox), "%s", strcasecmp(mailbox, "INBOX") == 0 ? "INBOX" : mailbox);
	struct vrelay_config cfg = {
		.mailbox = v->mailbox,
		.view = view,
		.notify = notify,
		.today = xfilter_today(time(NULL)),
		.max_events = 0, /* no saved views without a gateway */
		.condstore = caps_contains(s->upstream_caps, strlen(s->upstream_caps), "CONDSTORE"),
	};
	v->vr = vrelay_new(&host, v, &cfg);
	if (!v->vr) {
		free(v);
		c->kind = PC_PASS;
		return false;
	}
	v->readonly = word_is(&m->args[0], "EXAMINE");
	pv->cur = v;
	pv->select = c;
	pv->select_answered = false;
	buf_clear(&pv->select_tagged);
	/* the client's next commands need the view: hold them until it is open */
	s->block = BLOCK_INTERNAL;
	struct buf line;
	buf_init(&line, 0);
	literals_to_nonsync(m, &line);
	forward_to_upstream(s, buf_head(&line), buf_len(&line), false);
	buf_free(&line);
	slog(s, LOG_LEVEL_DEBUG, "%s is filtered (view %s, notification rule %s)", mailbox, view, notify);
	vrelay_open(v->vr, VR_OPEN_SELECT, NULL);
	return true;
}

/* ------------------------------------------------------------------------ */
/* STATUS of filtered folders the view does not count                       */

/* A mailbox argument as a name (INBOX in capitals, as vrelay and the filter file's lookups have it). */
static void mailbox_name(const struct imap_arg *a, char *out, size_t outlen)
{
	snprintf(out, outlen, "%.*s", (int)a->len, a->str);
	if (strcasecmp(out, "INBOX") == 0)
		snprintf(out, outlen, "INBOX");
}

/* The selected view answers for this mailbox itself (vrelay's STATUS). */
static bool view_counts(const struct pview *pv, const char *mailbox)
{
	return pv->cur && vrelay_is_open(pv->cur->vr) && strcmp(pv->cur->mailbox, mailbox) == 0;
}

/* After an answer from the helper connection (outside the relay's batches): send what was queued. */
static void flush_streams(struct session *s)
{
	if (!s->closing)
		stream_flush(s->client);
	if (!s->closing && s->upstream)
		stream_flush(s->upstream);
}

static void status_counted(void *ctx, const struct buf *untagged, const char *tagged)
{
	struct pv_cmd *c = ctx;
	struct pview *pv = c->pv;
	if (untagged)
		buf_append(&c->out, buf_head(untagged), buf_len(untagged));
	buf_printf(&c->out, "%s %s\r\n", c->tag, tagged);
	c->done = true;
	if (!pv->in_command) {
		release(pv);
		flush_streams(pv->s);
	}
}

/* A STATUS item list as names ("MESSAGES UNSEEN"), NUL-terminated in out; "?" for what is no item name
 * (the counter refuses it). */
static void status_names(const struct imap_arg *items, struct buf *out)
{
	for (size_t j = 0; j < items->list_count; j++) {
		const struct imap_arg *a = &items->list[j];
		if (a->type == IMAP_ARG_ATOM && a->len <= 64)
			buf_printf(out, "%s%.*s", j ? " " : "", (int)a->len, a->str);
		else
			buf_printf(out, "%s?", j ? " " : "");
	}
	buf_append(out, "", 1);
}

/* Some item depends on which messages the folder shows (the rest, UIDNEXT and the like, are the server's). */
static bool names_need_view(const char *names)
{
	static const char *const folder_items[] = {"UIDNEXT", "UIDVALIDITY", "HIGHESTMODSEQ", "MAILBOXID",
	                                           "APPENDLIMIT", NULL};
	for (const char *p = names; *p;) {
		size_t n = strcspn(p, " ");
		bool folder = false;
		for (size_t k = 0; folder_items[k]; k++)
			folder = folder || (n == strlen(folder_items[k]) && strncasecmp(p, folder_items[k], n) == 0);
		if (n && !folder)
			return true;
		p += n;
		p += strspn(p, " ");
	}
	return false;
}

/* STATUS of a filtered folder other than the selected view's: counted on the helper connection. */
static bool client_status(struct pview *pv, const struct imap_msg *m)
{
	if (m->nargs != 3 || !imap_arg_is_string(&m->args[1]) || m->args[2].type != IMAP_ARG_LIST)
		return false;
	char mailbox[1024];
	mailbox_name(&m->args[1], mailbox, sizeof(mailbox));
	const char *view = filter_set_value(pv->s->srv->filters, mailbox, XFILTER_VIEW);
	if (xfilter_is_all(view) || view_counts(pv, mailbox))
		return false;
	struct buf names;
	buf_init(&names, 0);
	status_names(&m->args[2], &names);
	bool need = names_need_view((const char *)buf_head(&names));
	buf_free(&names);
	if (!need)
		return false; /* the server's answer is the view's */
	adopt_in_flight(pv);
	struct pv_cmd *c = track(pv, m->tag, PC_TAKEN);
	slog(pv->s, LOG_LEVEL_DEBUG, "STATUS of %s counted through its view (%s)", mailbox, view);
	pv->in_command = true;
	pcount_status(pv->count, mailbox, view, &m->args[2], NULL, status_counted, c);
	pv->in_command = false;
	release(pv);
	return true;
}

/* LIST ... RETURN (... STATUS (items) ...): the items as names ("MESSAGES UNSEEN") if a view changes
 * them, else NULL. */
static char *list_status_items(const struct imap_msg *m)
{
	for (size_t i = 1; i + 1 < m->nargs; i++) {
		if (!word_is(&m->args[i], "RETURN") || m->args[i + 1].type != IMAP_ARG_LIST)
			continue;
		const struct imap_arg *l = &m->args[i + 1];
		for (size_t k = 0; k + 1 < l->list_count; k++) {
			if (!word_is(&l->list[k], "STATUS") || l->list[k + 1].type != IMAP_ARG_LIST)
				continue;
			struct buf b;
			buf_init(&b, 0);
			status_names(&l->list[k + 1], &b);
			char *names = names_need_view((const char *)buf_head(&b)) ? xstrdup((const char *)buf_head(&b)) : NULL;
			buf_free(&b);
			return names;
		}
	}
	return NULL;
}

/* The LIST-STATUS whose answer is coming (its tagged reply not in yet). */
static struct pv_cmd *open_list(struct pview *pv)
{
	for (struct pv_cmd *c = pv->cmds; c; c = c->next)
		if (c->list && !c->done)
			return c;
	return NULL;
}

static void list_part_done(struct pview *pv, struct pv_cmd *part, const uint8_t *data, size_t len, bool ok)
{
	struct pv_cmd *owner = part->owner;
	if (!ok)
		slog(pv->s, LOG_LEVEL_DEBUG, "LIST-STATUS: a filtered folder's STATUS left out (cannot be counted)");
	pcount_hold_fill(owner->list, part->slot, ok ? data : NULL, ok ? len : 0);
	cmd_unlink_free(pv, part);
	list_progress(pv, owner);
	if (!pv->in_command)
		release(pv);
}

static void list_counted(void *ctx, const struct buf *untagged, const char *tagged)
{
	struct pv_cmd *part = ctx;
	struct pview *pv = part->pv;
	bool ok = untagged && strncmp(tagged, "OK", 2) == 0;
	if (!ok)
		slog(pv->s, LOG_LEVEL_DEBUG, "LIST-STATUS: %s", tagged);
	list_part_done(pv, part, ok ? buf_head(untagged) : NULL, ok ? buf_len(untagged) : 0, ok);
	if (!pv->in_command)
		flush_streams(pv->s);
}

/* The selected view counts its own folder, as for the client's STATUS (RECENT as this session sees it). */
static bool list_part_by_view(struct pview *pv, struct pv_cmd *part, const char *items)
{
	struct buf line;
	buf_init(&line, 0);
	buf_printf(&line, "%s STATUS ", part->tag);
	imap_write_mailbox(&line, pv->cur->mailbox, false);
	buf_printf(&line, " (%s)\r\n", items);
	const struct imap_msg *m = parse_whole(&pv->cmdparse, IMAP_PARSE_COMMANDS, buf_head(&line), buf_len(&line));
	bool seq = false;
	bool taken = m && vrelay_command(pv->cur->vr, m, part, &seq) == VR_TAKEN;
	buf_free(&line);
	return taken;
}

/* A "* STATUS" line of a filtered folder in a LIST-STATUS answer: counted again through the view. */
static void list_count(struct pview *pv, struct pv_cmd *owner, const char *mailbox, const char *view)
{
	struct pv_cmd *part = xcalloc(1, sizeof(*part));
	part->pv = pv;
	part->kind = PC_LISTPART;
	snprintf(part->tag, sizeof(part->tag), "L");
	buf_init(&part->out, 0);
	part->owner = owner;
	part->slot = pcount_hold_slot(owner->list);
	part->next = pv->lparts;
	pv->lparts = part;
	bool in = pv->in_command;
	pv->in_command = true;
	if (!view_counts(pv, mailbox) || !list_part_by_view(pv, part, owner->list_items))
		pcount_status(pv->count, mailbox, view, NULL, owner->list_items, list_counted, part);
	pv->in_command = in;
}

/* An untagged response while a LIST-STATUS is answered: true if taken (replaced or held in order). */
static bool list_response(struct pview *pv, const struct imap_msg *m)
{
	struct pv_cmd *owner = open_list(pv);
	if (!owner || m->nargs < 2 || !(word_is(&m->args[0], "LIST") || word_is(&m->args[0], "STATUS")))
		return false;
	if (word_is(&m->args[0], "STATUS") && imap_arg_is_string(&m->args[1])) {
		char mailbox[1024];
		mailbox_name(&m->args[1], mailbox, sizeof(mailbox));
		const char *view = filter_set_value(pv->s->srv->filters, mailbox, XFILTER_VIEW);
		if (!xfilter_is_all(view)) {
			list_count(pv, owner, mailbox, view);
			list_progress(pv, owner);
			return true;
		}
	}
	if (!pcount_hold_active(owner->list))
		return false;
	pcount_hold_raw(owner->list, m->raw, m->raw_len);
	return true;
}

/* An untagged response during an IDLE the server answers: held if the event kinds say not now. */
static bool relayed_idle_event(struct pview *pv, const struct imap_msg *m)
{
	if (!pv->relayed_idle)
		return false;
	uint32_t n;
	bool new_mail = imap_untagged_num(m, "EXISTS", &n) || imap_untagged_num(m, "RECENT", &n);
	bool other = imap_untagged_num(m, "EXPUNGE", &n) || (m->nargs >= 2 && word_is(&m->args[1], "FETCH"));
	if (!new_mail && !other)
		return false;
	if (events_allow(pv, new_mail)) {
		flush_held(pv); /* never reordered */
		return false;
	}
	hold_event(pv, m->raw, m->raw_len);
	return true;
}

bool pview_client_command(struct session *s, const struct imap_msg *m)
{
	if (!filters_apply(s->srv->filters) || m->nargs < 1 || m->args[0].type != IMAP_ARG_ATOM)
		return false;
	struct pview *pv = pview_of(s);
	const struct imap_arg *name = &m->args[0];
	if (word_is(name, "ENABLE") && (filter_set_has_views(s->srv->filters) || filter_set_has_notify(s->srv->filters)))
		return client_enable(s, pv, m);
	if ((word_is(name, "SELECT") || word_is(name, "EXAMINE")) && m->nargs >= 2 && imap_arg_is_string(&m->args[1]))
		return client_select(s, pv, m);
	if (word_is(name, "STATUS") && filter_set_has_views(s->srv->filters) && client_status(pv, m))
		return true;
	if (word_is(name, "LIST") && filter_set_has_views(s->srv->filters)) {
		char *items = list_status_items(m);
		if (items) {
			/* relayed; the STATUS lines of filtered folders are counted again (list_response) */
			struct pv_cmd *c = track(pv, m->tag, PC_PASS);
			c->list = pcount_hold_new();
			c->list_items = items;
			return false;
		}
	}
	if (word_is(name, "IDLE") && (!pv->cur || !vrelay_is_open(pv->cur->vr)) && !events_allow(pv, false)) {
		/* the server answers it; the events the file's kinds leave out wait for the next reply */
		pv->relayed_idle = track(pv, m->tag, PC_PASS);
		return false;
	}
	if (!tracking(pv))
		return false;
	if (!pv->cur) {
		track(pv, m->tag, PC_PASS); /* a folder is being left: keep the order */
		return false;
	}
	if (word_is(name, "CLOSE") || word_is(name, "UNSELECT")) {
		struct pv_cmd *c = track(pv, m->tag, PC_PASS);
		if (word_is(name, "CLOSE") && vrelay_close(pv->cur->vr, pv->cur->readonly)) {
			/* CLOSE would expunge hidden messages too: the view's own go, then UNSELECT */
			leave(pv, c);
			struct buf line;
			buf_init(&line, 0);
			buf_printf(&line, "%s UNSELECT\r\n", m->tag);
			relay_command_text(s, m->tag, buf_head(&line), buf_len(&line));
			buf_free(&line);
			return true;
		}
		vrelay_close(pv->cur->vr, true);
		leave(pv, c);
		return false;
	}
	if (word_is(name, "IDLE") && vrelay_is_open(pv->cur->vr)) {
		struct pv_cmd *c = track(pv, m->tag, PC_IDLE);
		pv->idle = c;
		pv->idle_done = false;
		client_say(s, "+ idling");
		s->block = BLOCK_IDLE;
		s->raw_line_ok = true;
		imap_parser_expect_raw_line(s->cparser);
		/* what waited is the client's now */
		vh_pending(pv->cur);
		return true;
	}
	struct pv_cmd *c = track(pv, m->tag, PC_TAKEN);
	bool seq = false;
	pv->in_command = true;
	enum vrelay_take t = vrelay_command(pv->cur->vr, m, c, &seq);
	pv->in_command = false;
	if (t == VR_PASS) {
		c->kind = PC_PASS;
		return false;
	}
	c->seq = seq;
	release(pv);
	return true;
}

/* ------------------------------------------------------------------------ */
/* the server's answers                                                      */

static struct pv_part *part_take(struct pview *pv, const char *tag)
{
	for (struct pv_part **pp = &pv->parts; *pp; pp = &(*pp)->next)
		if (strcmp((*pp)->tag, tag) == 0) {
			struct pv_part *p = *pp;
			*pp = p->next;
			return p;
		}
	return NULL;
}

static bool upstream_tagged(struct pview *pv, const struct imap_msg *m)
{
	struct session *s = pv->s;
	struct pv_part *p = part_take(pv, m->tag);
	if (p) {
		if (p->idle) {
			pv->up_idle = NULL;
			forward_to_upstream(s, buf_head(&pv->queued), buf_len(&pv->queued), false);
			buf_clear(&pv->queued);
		} else if (p->view) {
			vrelay_done(p->view->vr, p->cookie, m);
		}
		free(p);
		if (!s->closing) {
			maybe_retire(pv);
			maybe_idle(pv);
		}
		return true;
	}
	if (pv->select && !pv->select_answered && strcmp(m->tag, pv->select->tag) == 0 && pv->cur) {
		pv->select_answered = true;
		if (m->code && strncasecmp(m->code, "READ-ONLY", 9) == 0)
			pv->cur->readonly = true;
		buf_append(&pv->select_tagged, m->raw, m->raw_len);
		vrelay_select_done(pv->cur->vr, m);
		return true;
	}
	for (struct pv_cmd *c = pv->cmds; c; c = c->next) {
		if (c->kind != PC_PASS || c->done || strcmp(c->tag, m->tag) != 0)
			continue;
		/* its turn comes once the commands before it are answered and new mail is decided */
		c->done = true;
		if (c == pv->relayed_idle)
			pv->relayed_idle = NULL;
		buf_append(&c->out, m->raw, m->raw_len);
		release(pv);
		return true;
	}
	return false;
}

bool pview_upstream(struct session *s, const struct imap_msg *m)
{
	struct pview *pv = s->pview;
	if (m->kind == IMAP_MSG_CONTINUATION) {
		if (!pv->up_idle || pv->up_plus)
			return false;
		pv->up_plus = true;
		if (pv->up_end_wanted || pv->idle_done)
			end_up_idle(pv);
		return true;
	}
	if (m->kind == IMAP_MSG_TAGGED)
		return m->tag && upstream_tagged(pv, m);
	if (m->kind != IMAP_MSG_UNTAGGED)
		return false;
	struct pv_view *v = pv->old ? pv->old : pv->cur;
	if (v) {
		struct buf out;
		buf_init(&out, 0);
		enum vrelay_untagged r = vrelay_untagged(v->vr, m, &out);
		if (r == VRU_PASS && v == pv->old && pv->cur)
			r = vrelay_untagged(pv->cur->vr, m, &out);
		if (r == VRU_OUT && !s->closing) {
			if (pv->idle && !pv->idle_done && !events_allow(pv, false)) {
				hold_event(pv, buf_head(&out), buf_len(&out)); /* a flag change: not now */
			} else {
				flush_held(pv);
				forward_to_client(s, buf_head(&out), buf_len(&out));
			}
		}
		buf_free(&out);
		if (r != VRU_PASS)
			return true;
	}
	return list_response(pv, m) || relayed_idle_event(pv, m);
}

void pview_login_command(struct session *s, const struct imap_msg *m)
{
	pcount_login_command(pview_of(s)->count, m);
}

void pview_login_line(struct session *s, const struct imap_msg *m)
{
	if (s->pview)
		pcount_login_line(s->pview->count, m->raw, m->raw_len);
}

bool pview_quiescent(const struct session *s)
{
	const struct pview *pv = s->pview;
	if (!pv)
		return true;
	for (const struct pv_cmd *c = pv->cmds; c; c = c->next)
		if ((c->kind != PC_PASS && c->kind != PC_IDLE) || (c->list && pcount_hold_waiting(c->list)))
			return false;
	return !parts_of(pv, NULL);
}

void pview_free(struct pview *pv)
{
	if (!pv)
		return;
	while (pv->cmds)
		cmd_unlink_free(pv, pv->cmds);
	while (pv->lparts)
		cmd_unlink_free(pv, pv->lparts);
	pcount_free(pv->count);
	while (pv->parts) {
		struct pv_part *p = pv->parts;
		pv->parts = p->next;
		free(p);
	}
	if (pv->cur)
		vrelay_free(pv->cur->vr);
	if (pv->old)
		vrelay_free(pv->old->vr);
	free(pv->cur);
	free(pv->old);
	buf_free(&pv->select_tagged);
	buf_free(&pv->queued);
	buf_free(&pv->held);
	if (pv->reparse)
		imap_parser_free(pv->reparse);
	if (pv->cmdparse)
		imap_parser_free(pv->cmdparse);
	free(pv);
}
