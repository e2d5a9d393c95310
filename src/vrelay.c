/*
 * vrelay.c - relaying one selected mailbox through a view filter (see
 * vrelay.h).
 *
 * Every command vrelay sends is a "part" with a cookie (for the host's
 * completion) and the tag the host wrote (for ESEARCH answers, which carry
 * it). A client command may need several parts (a long UID set split; the
 * pieces of a STATUS); it finishes when the last one is answered.
 *
 * The view goes through these phases:
 *   OPENING  the SELECT's answer and our two searches are on their way;
 *            the store's events before the search answers are part of
 *            them and are not applied;
 *   LOADING  the map is loaded; with a saved view, new mail is decided,
 *            then the difference, the new messages' items and the flag
 *            changes since are fetched;
 *   OPEN     the client has the view; events flow;
 *   DEAD     failed or lost: nothing more is done.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap_write.h"
#include "vrelay.h"
#include "xfilter.h"

#define MAX_CLIENT_TAG 64
/* Nesting of a client's search keys we follow. */
#define MAX_SEARCH_DEPTH 64

enum phase { PH_OPENING, PH_LOADING, PH_OPEN, PH_DEAD };

enum part_kind {
	P_OPEN_MATCH,  /* UID SEARCH <view criteria> */
	P_OPEN_ALL,    /* UID SEARCH ALL */
	P_ROUND_ALL,   /* new mail: UID SEARCH UID n:* */
	P_ROUND_MATCH, /* new mail: which match the view */
	P_ROUND_NOTIFY,/* new mail: which pass the notification filter too */
	P_AGE,         /* ageing: who left the view */
	P_NEWFETCH,    /* saved view: the NEW_FORMAT items of arrivals */
	P_FLAGS,       /* saved view: flags changed since */
	P_CMD,         /* part of a client command */
	P_CLOSE,       /* UID EXPUNGE before UNSELECT (CLOSE) */
};

enum ccmd_kind { CC_FETCH, CC_STORE, CC_COPY, CC_MOVE, CC_EXPUNGE, CC_SEARCH, CC_SORT, CC_THREAD, CC_STATUS };

/* What a client's SEARCH RETURN (...) asks for. */
struct search_ret {
	bool esearch; /* RETURN given: answer with ESEARCH */
	bool min, max, count, all, save, partial;
	uint32_t plo, phi;
};

/* STATUS items the view answers itself. */
enum { ST_MESSAGES = 1, ST_UNSEEN = 2, ST_RECENT = 4 };

struct ccmd {
	struct ccmd *next;
	void *host_cmd;
	char tag[MAX_CLIENT_TAG + 1];
	enum ccmd_kind kind;
	bool uid;
	unsigned parts_left;
	bool decided;          /* status below is a failure that decides the outcome */
	enum imap_status status;
	struct buf tagged;     /* "[code] text" of the deciding part */
	struct buf copy_src, copy_dst;
	char copy_uv[16];
	unsigned copyuid_parts;
	struct uidset modified;
	bool have_modified;
	struct uidset found;   /* SEARCH, STATUS UNSEEN */
	struct uidset found2;  /* STATUS RECENT */
	struct search_ret ret;
	struct buf out;        /* SORT/THREAD rendered answers */
	/* STATUS */
	char *mailbox;
	unsigned items;
	struct buf items_list; /* the client's item names in order */
	struct buf store_status; /* "NAME value " pairs from the store's STATUS */
};

struct part {
	struct part *next;
	uint32_t cookie;
	enum part_kind kind;
	char tag[VRELAY_TAG_MAX];
	struct ccmd *cmd;
	bool esearch;          /* its ESEARCH answer came */
	struct uidset result;
	uint32_t from;         /* rounds: the first UID asked about */
	bool sort;             /* P_CMD of SORT/THREAD: collects * SORT / * THREAD */
};

/* One untagged response of the SELECT answer, kept to be rewritten. */
enum cap_kind { CAP_RAW, CAP_EXISTS, CAP_RECENT, CAP_UIDNEXT, CAP_MODSEQ };

struct vrelay {
	struct vrelay_host host;
	void *ctx;
	char *mailbox;
	char *view, *notify;     /* canonical */
	long day;
	char *vkeys, *nkeys;     /* resolved for day */
	bool utf8;
	bool days;
	char *new_items;
	long long max_events;
	bool condstore;

	enum phase phase;
	enum vrelay_open_mode mode;
	bool have_saved;
	struct vrelay_saved saved;
	bool select_done, select_ok;
	struct buf sel_raw;       /* the store's SELECT answer, as it came */
	struct buf sel_kinds;     /* one cap_kind byte per captured response */
	struct buf sel_offsets;   /* size_t start offsets into sel_raw */
	struct buf post;          /* other untagged responses while opening */
	uint32_t sel_uidnext;
	struct uidset open_match, open_all;
	bool loaded;
	bool diff_done, flags_sent;
	struct buf events;

	struct fview *v;
	struct part *parts, *parts_tail;
	uint32_t next_cookie;
	unsigned round_parts;     /* parts of the running new-mail round */
	uint64_t exists_seen;     /* EXISTS responses from the store so far */
	uint64_t round_covers;    /* exists_seen when the running round was sent */
	uint64_t decided_upto;    /* every EXISTS up to this one is decided */
	uint32_t round_max;       /* highest UID known when the round was sent */
	struct uidset notify_hits;
	bool notify_pending;
	bool age_running;
	bool closing;
	struct uidset searchres;  /* SEARCH RETURN (SAVE) */
	struct ccmd *cmds;
};

/* ------------------------------------------------------------------------ */
/* small helpers                                                             */

static bool word_is(const struct imap_arg *a, const char *w)
{
	return imap_arg_is_atom(a, w);
}

static void lost(struct vrelay *vr, const char *why)
{
	if (vr->phase == PH_DEAD)
		return;
	vr->phase = PH_DEAD;
	vr->host.lost(vr->ctx, why);
}

/* Criteria for the store on the current day. */
static void resolve_keys(struct vrelay *vr)
{
	struct buf b;
	buf_init(&b, 0);
	xfilter_resolve(vr->view, vr->day, &b);
	buf_append(&b, "", 1);
	free(vr->vkeys);
	vr->vkeys = xstrdup((const char *)buf_head(&b));
	buf_clear(&b);
	xfilter_resolve(vr->notify, vr->day, &b);
	buf_append(&b, "", 1);
	free(vr->nkeys);
	vr->nkeys = xstrdup((const char *)buf_head(&b));
	buf_free(&b);
}

static struct part *part_new(struct vrelay *vr, enum part_kind kind, struct ccmd *cmd)
{
	struct part *p = xcalloc(1, sizeof(*p));
	p->cookie = ++vr->next_cookie;
	p->kind = kind;
	p->cmd = cmd;
	uidset_init(&p->result);
	if (vr->parts_tail)
		vr->parts_tail->next = p;
	else
		vr->parts = p;
	vr->parts_tail = p;
	if (cmd)
		cmd->parts_left++;
	return p;
}

/* Send a command as a new part. text: everything after the tag, CRLF included. */
static struct part *send_part(struct vrelay *vr, enum part_kind kind, struct ccmd *cmd, const struct buf *text)
{
	struct part *p = part_new(vr, kind, cmd);
	vr->host.send(vr->ctx, buf_head(text), buf_len(text), p->cookie, p->tag);
	return p;
}

static struct part *sendf_part(struct vrelay *vr, enum part_kind kind, struct ccmd *cmd, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static struct part *sendf_part(struct vrelay *vr, enum part_kind kind, struct ccmd *cmd, const char *fmt, ...)
{
	struct buf b;
	buf_init(&b, 0);
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	buf_append_str(&b, "\r\n");
	struct part *p = send_part(vr, kind, cmd, &b);
	buf_free(&b);
	return p;
}

static struct part *part_by_cookie(struct vrelay *vr, uint32_t cookie)
{
	for (struct part *p = vr->parts; p; p = p->next)
		if (p->cookie == cookie)
			return p;
	return NULL;
}

static struct part *part_by_tag(struct vrelay *vr, const char *tag, size_t len)
{
	for (struct part *p = vr->parts; p; p = p->next)
		if (p->tag[0] && strlen(p->tag) == len && memcmp(p->tag, tag, len) == 0)
			return p;
	return NULL;
}

static void part_unlink_free(struct vrelay *vr, struct part *p)
{
	struct part *prev = NULL;
	for (struct part *q = vr->parts; q; prev = q, q = q->next) {
		if (q != p)
			continue;
		if (prev)
			prev->next = q->next;
		else
			vr->parts = q->next;
		if (vr->parts_tail == q)
			vr->parts_tail = prev;
		break;
	}
	uidset_free(&p->result);
	free(p);
}

static bool parts_of_kind(const struct vrelay *vr, enum part_kind kind)
{
	for (const struct part *p = vr->parts; p; p = p->next)
		if (p->kind == kind)
			return true;
	return false;
}

/*
 * Split set into command texts "<prefix><chunk><suffix>" with each chunk's
 * text at most VRELAY_MAX_SET_TEXT bytes; send each as a part.
 */
static unsigned send_chunked(struct vrelay *vr, enum part_kind kind, struct ccmd *cmd, const char *prefix,
                             const struct uidset *set, const uint8_t *suffix, size_t suffix_len)
{
	unsigned n = 0;
	size_t i = 0;
	struct buf text;
	buf_init(&text, 0);
	while (i < set->count) {
		buf_clear(&text);
		buf_append_str(&text, prefix);
		size_t start = buf_len(&text);
		bool first = true;
		while (i < set->count && buf_len(&text) - start < VRELAY_MAX_SET_TEXT) {
			uint32_t a = set->uids[i], b = a;
			while (i + 1 < set->count && set->uids[i + 1] == b + 1)
				b = set->uids[++i];
			i++;
			if (a == b)
				buf_printf(&text, "%s%u", first ? "" : ",", a);
			else
				buf_printf(&text, "%s%u:%u", first ? "" : ",", a, b);
			first = false;
		}
		/* Sync literals in the rest of a client command ("{n}") become
		 * LITERAL+: the host already answered the client's "+". */
		struct buf full;
		buf_init(&full, 0);
		buf_append(&text, suffix, suffix_len);
		imap_write_retagged(&full, "", buf_head(&text), buf_len(&text), 0);
		send_part(vr, kind, cmd, &full);
		buf_free(&full);
		n++;
	}
	buf_free(&text);
	return n;
}

/* ------------------------------------------------------------------------ */
/* life cycle                                                                */

bool vrelay_server_ok(const char *caps, char *why, size_t whylen)
{
	static const char *const need[] = {"ESEARCH", "UIDPLUS", "UNSELECT", NULL};
	for (const char *const *n = need; *n; n++) {
		size_t nl = strlen(*n);
		bool found = false;
		for (const char *p = caps; p && *p && !found;) {
			while (*p == ' ')
				p++;
			const char *e = p;
			while (*e && *e != ' ')
				e++;
			found = (size_t)(e - p) == nl && strncasecmp(p, *n, nl) == 0;
			p = e;
		}
		if (!found) {
			snprintf(why, whylen, "the mail store does not offer %s, which view filters need", *n);
			return false;
		}
	}
	return true;
}

struct vrelay *vrelay_new(const struct vrelay_host *host, void *ctx, const struct vrelay_config *cfg)
{
	char err[256];
	if (xfilter_check_text(cfg->view, err, sizeof(err)) != XFILTER_OK ||
	    xfilter_check_text(cfg->notify, err, sizeof(err)) != XFILTER_OK)
		return NULL;
	struct vrelay *vr = xcalloc(1, sizeof(*vr));
	vr->host = *host;
	vr->ctx = ctx;
	vr->mailbox = xstrdup(cfg->mailbox ? cfg->mailbox : "");
	vr->view = xstrdup(cfg->view);
	vr->notify = xstrdup(cfg->notify);
	vr->day = cfg->today;
	vr->days = xfilter_uses_days(cfg->view);
	vr->utf8 = xfilter_needs_utf8(cfg->view) || xfilter_needs_utf8(cfg->notify);
	vr->new_items = cfg->new_items ? xstrdup(cfg->new_items) : NULL;
	vr->max_events = cfg->max_events;
	vr->condstore = cfg->condstore;
	resolve_keys(vr);
	vr->v = fview_new();
	buf_init(&vr->sel_raw, 0);
	buf_init(&vr->sel_kinds, 0);
	buf_init(&vr->sel_offsets, 0);
	buf_init(&vr->post, 0);
	buf_init(&vr->events, 0);
	uidset_init(&vr->saved.uids);
	uidset_init(&vr->open_match);
	uidset_init(&vr->open_all);
	uidset_init(&vr->notify_hits);
	uidset_init(&vr->searchres);
	return vr;
}

static void ccmd_free(struct ccmd *c)
{
	buf_free(&c->tagged);
	buf_free(&c->copy_src);
	buf_free(&c->copy_dst);
	uidset_free(&c->modified);
	uidset_free(&c->found);
	uidset_free(&c->found2);
	buf_free(&c->out);
	buf_free(&c->items_list);
	buf_free(&c->store_status);
	free(c->mailbox);
	free(c);
}

void vrelay_free(struct vrelay *vr)
{
	if (!vr)
		return;
	while (vr->parts)
		part_unlink_free(vr, vr->parts);
	while (vr->cmds) {
		struct ccmd *c = vr->cmds;
		vr->cmds = c->next;
		ccmd_free(c);
	}
	fview_free(vr->v);
	buf_free(&vr->sel_raw);
	buf_free(&vr->sel_kinds);
	buf_free(&vr->sel_offsets);
	buf_free(&vr->post);
	buf_free(&vr->events);
	uidset_free(&vr->saved.uids);
	uidset_free(&vr->open_match);
	uidset_free(&vr->open_all);
	uidset_free(&vr->notify_hits);
	uidset_free(&vr->searchres);
	free(vr->mailbox);
	free(vr->view);
	free(vr->notify);
	free(vr->vkeys);
	free(vr->nkeys);
	free(vr->new_items);
	free(vr);
}

bool vrelay_is_open(const struct vrelay *vr)
{
	return vr->phase == PH_OPEN;
}

bool vrelay_busy(const struct vrelay *vr)
{
	return vr->parts != NULL;
}

const struct fview *vrelay_view(const struct vrelay *vr)
{
	return vr->v;
}

void vrelay_told(const struct vrelay *vr, struct uidset *out)
{
	fview_told(vr->v, out);
}

/* ------------------------------------------------------------------------ */
/* new mail: learning UIDs and deciding membership                            */

static void open_progress(struct vrelay *vr);

static const char *charset(const struct vrelay *vr)
{
	return vr->utf8 ? "CHARSET UTF-8 " : "";
}

/* Start a round for unknown or undecided messages, unless one runs. */
static void round_maybe_start(struct vrelay *vr)
{
	if (vr->phase == PH_DEAD || vr->phase == PH_OPENING || vr->round_parts || vr->closing)
		return;
	bool need_all = fview_unknown(vr->v) > 0;
	uint32_t from = fview_first_undecided(vr->v);
	if (!need_all && !from) {
		vr->decided_upto = vr->exists_seen;
		return;
	}
	vr->round_covers = vr->exists_seen;
	vr->round_max = fview_max_uid(vr->v);
	if (!from || (need_all && vr->round_max + 1 < from))
		from = vr->round_max + 1;
	if (need_all) {
		struct part *p = sendf_part(vr, P_ROUND_ALL, NULL, "UID SEARCH RETURN (ALL) UID %u:*", vr->round_max + 1);
		p->from = vr->round_max + 1;
		vr->round_parts++;
	}
	struct part *p = sendf_part(vr, P_ROUND_MATCH, NULL, "UID SEARCH RETURN (ALL) %sUID %u:* %s", charset(vr), from,
	                            vr->vkeys);
	p->from = from;
	vr->round_parts++;
	if (!xfilter_is_all(vr->notify) && !xfilter_is_none(vr->notify)) {
		p = sendf_part(vr, P_ROUND_NOTIFY, NULL, "UID SEARCH RETURN (ALL) %sUID %u:* (%s) (%s)", charset(vr), from,
		               vr->vkeys, vr->nkeys);
		p->from = from;
		vr->round_parts++;
	}
}

static void tell_pending(struct vrelay *vr)
{
	if (vr->phase != PH_OPEN || vr->closing)
		return;
	struct vrelay_pending pd;
	vrelay_pending(vr, &pd);
	if (pd.arrivals || pd.removals)
		vr->host.pending(vr->ctx);
}

/* The round's UIDs of new messages (ESEARCH, or an empty answer). */
static void round_learn(struct vrelay *vr, struct part *p)
{
	struct uidset fresh;
	uidset_init(&fresh);
	/* "UID n:*" also names the last message when none is above n */
	for (size_t i = 0; i < p->result.count; i++)
		if (p->result.uids[i] >= p->from)
			uidset_add(&fresh, p->result.uids[i]);
	if (fview_learn(vr->v, &fresh) < 0) {
		char why[160];
		snprintf(why, sizeof(why), "the store reported %u new message(s) but listed %zu", fview_unknown(vr->v),
		         fresh.count);
		uidset_free(&fresh);
		lost(vr, why);
		return;
	}
	uidset_free(&fresh);
}

static void round_part_done(struct vrelay *vr, struct part *p)
{
	switch (p->kind) {
	case P_ROUND_ALL:
		if (!p->esearch)
			round_learn(vr, p);
		break;
	case P_ROUND_MATCH:
		/* Decided: everything known up to now; later UIDs wait for the next round. */
		fview_decide(vr->v, &p->result, fview_max_uid(vr->v));
		break;
	case P_ROUND_NOTIFY:
		for (size_t i = 0; i < p->result.count; i++) {
			uint32_t u = p->result.uids[i];
			if (u <= fview_max_uid(vr->v) && fview_is_alive(vr->v, u) && !fview_seq_of(vr->v, u))
				vr->notify_pending = true;
		}
		break;
	default:
		break;
	}
	if (vr->round_parts)
		vr->round_parts--;
	if (vr->round_parts)
		return;
	vr->decided_upto = vr->round_covers;
	if (vr->phase == PH_LOADING) {
		open_progress(vr);
		return;
	}
	round_maybe_start(vr);
	/* also when nothing is pending: replies may wait for this round */
	if (vr->phase == PH_OPEN && !vr->closing)
		vr->host.pending(vr->ctx);
}

/* ------------------------------------------------------------------------ */
/* opening                                                                   */

void vrelay_open(struct vrelay *vr, enum vrelay_open_mode mode, const struct vrelay_saved *saved)
{
	vr->mode = mode;
	vr->phase = PH_OPENING;
	vr->select_done = mode == VR_OPEN_RESUME;
	vr->select_ok = mode == VR_OPEN_RESUME;
	if (saved) {
		vr->have_saved = true;
		uidset_copy(&vr->saved.uids, &saved->uids);
		vr->saved.modseq = saved->modseq;
		vr->saved.uidnext = saved->uidnext;
	}
	/* The matching messages first, then all: a message in all but not in
	 * match that arrived between the two is left undecided (vrelay.h). */
	sendf_part(vr, P_OPEN_MATCH, NULL, "UID SEARCH RETURN (ALL) %s%s", charset(vr), vr->vkeys);
	sendf_part(vr, P_OPEN_ALL, NULL, "UID SEARCH RETURN (ALL) ALL");
}

void vrelay_select_done(struct vrelay *vr, const struct imap_msg *m)
{
	vr->select_done = true;
	vr->select_ok = m->status == IMAP_STATUS_OK;
	open_progress(vr);
}

/* Load the map from the opening searches. */
static void open_load(struct vrelay *vr)
{
	if (vr->loaded)
		return;
	vr->loaded = true;
	vr->phase = PH_LOADING;
	uint32_t mmax = uidset_max(&vr->open_match);
	uint32_t from = mmax + 1;
	if (vr->sel_uidnext > from)
		from = vr->sel_uidnext;
	fview_load_told(vr->v, &vr->open_all, &vr->open_match, from, vr->have_saved ? &vr->saved.uids : NULL);
}

static void capture(struct vrelay *vr, enum cap_kind kind, const struct imap_msg *m)
{
	size_t off = buf_len(&vr->sel_raw);
	uint8_t k = (uint8_t)kind;
	buf_append(&vr->sel_offsets, &off, sizeof(off));
	buf_append(&vr->sel_kinds, &k, 1);
	buf_append(&vr->sel_raw, m->raw, m->raw_len);
}

/* The SELECT answer as the client gets it: describing the view (fresh) or the saved view. */
static void render_select(struct vrelay *vr, bool fresh, struct buf *out)
{
	size_t n = buf_len(&vr->sel_kinds);
	const uint8_t *kinds = buf_head(&vr->sel_kinds);
	const size_t *offs = (const size_t *)buf_head(&vr->sel_offsets);
	for (size_t i = 0; i < n; i++) {
		size_t from = offs[i], to = i + 1 < n ? offs[i + 1] : buf_len(&vr->sel_raw);
		const uint8_t *raw = buf_head(&vr->sel_raw) + from;
		switch ((enum cap_kind)kinds[i]) {
		case CAP_EXISTS:
			buf_printf(out, "* %u EXISTS\r\n", fresh ? fview_count(vr->v) : (uint32_t)vr->saved.uids.count);
			break;
		case CAP_RECENT:
			buf_append_str(out, "* 0 RECENT\r\n");
			break;
		case CAP_UIDNEXT:
			if (!fresh && vr->saved.uidnext)
				buf_printf(out, "* OK [UIDNEXT %u] Predicted next UID\r\n", vr->saved.uidnext);
			else
				buf_append(out, raw, to - from);
			break;
		case CAP_MODSEQ:
			/* A view the client has not seen: messages older than its HIGHESTMODSEQ
			 * may have entered it, which no CHANGEDSINCE would report. NOMODSEQ
			 * (RFC 7162 3.1.2.2) makes a CONDSTORE client compare the whole view;
			 * its next SELECT, from the saved view, has a HIGHESTMODSEQ again. */
			if (!fresh && vr->saved.modseq)
				buf_printf(out, "* OK [HIGHESTMODSEQ %llu] Highest\r\n", (unsigned long long)vr->saved.modseq);
			else
				buf_append_str(out, "* OK [NOMODSEQ] A new view: compare all of it\r\n");
			break;
		case CAP_RAW:
			buf_append(out, raw, to - from);
			break;
		}
	}
}

static void open_finish(struct vrelay *vr, enum vrelay_opened result, bool fresh)
{
	struct buf resp;
	buf_init(&resp, 0);
	if (vr->mode == VR_OPEN_SELECT)
		render_select(vr, fresh, &resp);
	if (fresh)
		buf_clear(&vr->events);
	buf_append(&vr->events, buf_head(&vr->post), buf_len(&vr->post));
	buf_clear(&vr->post);
	vr->phase = PH_OPEN;
	uidset_free(&vr->open_all);
	uidset_free(&vr->open_match);
	vr->host.opened(vr->ctx, result, &resp, &vr->events);
	buf_free(&resp);
	buf_clear(&vr->events);
	if (vr->phase != PH_OPEN)
		return;
	round_maybe_start(vr);
	tell_pending(vr);
}

/* The saved view cannot be caught up: the client gets the view as it is. */
static void open_fresh(struct vrelay *vr)
{
	fview_reset_told(vr->v);
	vr->notify_pending = false;
	open_finish(vr, vr->mode == VR_OPEN_SELECT ? VR_OPENED : VR_RESYNC, true);
}

/* Saved view: removals and arrivals as events (arrivals as NEW_FORMAT FETCH when asked). */
static void open_diff(struct vrelay *vr)
{
	vr->diff_done = true;
	if (fview_reordered(vr->v) ||
	    (long long)fview_removals(vr->v) + fview_arrivals_ready(vr->v) > vr->max_events) {
		open_fresh(vr);
		return;
	}
	fview_flush_removals(vr->v, &vr->events);
	if (vr->new_items && fview_arrivals_ready(vr->v)) {
		struct uidset uids;
		uidset_init(&uids);
		fview_flush_arrivals(vr->v, NULL, &uids);
		struct buf suffix;
		buf_init(&suffix, 0);
		buf_printf(&suffix, " %s\r\n", vr->new_items);
		send_chunked(vr, P_NEWFETCH, NULL, "UID FETCH ", &uids, buf_head(&suffix), buf_len(&suffix));
		buf_free(&suffix);
		uidset_free(&uids);
	} else {
		fview_flush_arrivals(vr->v, &vr->events, NULL);
	}
	vr->notify_pending = false;
}

static void open_progress(struct vrelay *vr)
{
	if (vr->phase != PH_OPENING && vr->phase != PH_LOADING)
		return;
	if (!vr->select_done || parts_of_kind(vr, P_OPEN_MATCH) || parts_of_kind(vr, P_OPEN_ALL))
		return;
	if (!vr->select_ok) {
		/* The store refused the SELECT: its own answer, no view. */
		vr->phase = PH_DEAD;
		vr->host.opened(vr->ctx, VR_FAILED, &vr->sel_raw, &vr->post);
		return;
	}
	open_load(vr);
	if (!vr->have_saved) {
		open_finish(vr, VR_OPENED, true);
		return;
	}
	/* A saved view: first decide what arrived, so that the events are complete. */
	if (vr->round_parts || fview_unknown(vr->v) || fview_first_undecided(vr->v)) {
		round_maybe_start(vr);
		return;
	}
	if (!vr->diff_done) {
		open_diff(vr);
		if (vr->phase != PH_LOADING)
			return;
	}
	if (parts_of_kind(vr, P_NEWFETCH))
		return;
	if (!vr->flags_sent) {
		vr->flags_sent = true;
		struct uidset both;
		uidset_init(&both);
		fview_told(vr->v, &both);
		struct uidset keep;
		uidset_init(&keep);
		uidset_intersection(&both, &vr->saved.uids, &keep);
		bool sent = false;
		if (keep.count && vr->saved.modseq && vr->condstore) {
			char suffix[96];
			snprintf(suffix, sizeof(suffix), " (UID FLAGS) (CHANGEDSINCE %llu)\r\n",
			         (unsigned long long)vr->saved.modseq);
			sent = send_chunked(vr, P_FLAGS, NULL, "UID FETCH ", &keep, (const uint8_t *)suffix,
			                    strlen(suffix)) > 0;
		}
		bool cannot = keep.count && (!vr->saved.modseq || !vr->condstore);
		uidset_free(&both);
		uidset_free(&keep);
		if (cannot) {
			/* Without modification sequences the flag changes cannot be known. */
			open_fresh(vr);
			return;
		}
		if (sent)
			return;
	}
	if (parts_of_kind(vr, P_FLAGS))
		return;
	open_finish(vr, VR_OPENED, false);
}

/* ------------------------------------------------------------------------ */
/* DAYSBEFORETODAY                                                           */

void vrelay_tick(struct vrelay *vr, long today)
{
	if (!vr->days || today <= vr->day || vr->phase != PH_OPEN || vr->age_running)
		return;
	struct buf keys;
	buf_init(&keys, 0);
	int rc = xfilter_aging_keys(vr->view, vr->day, today, &keys);
	vr->day = today;
	resolve_keys(vr);
	if (rc == 0 && buf_len(&keys)) {
		buf_append(&keys, "", 1);
		sendf_part(vr, P_AGE, NULL, "UID SEARCH RETURN (ALL) %s%s", charset(vr), (const char *)buf_head(&keys));
		vr->age_running = true;
	}
	buf_free(&keys);
}

/* ------------------------------------------------------------------------ */
/* pending events                                                            */

bool vrelay_reply_waits(const struct vrelay *vr, uint64_t *mark)
{
	if (!*mark)
		*mark = vr->exists_seen + 1; /* 0 stays "not taken" */
	return vr->phase == PH_OPEN && !vr->closing && vr->decided_upto < *mark - 1;
}

void vrelay_pending(const struct vrelay *vr, struct vrelay_pending *p)
{
	memset(p, 0, sizeof(*p));
	if (vr->phase != PH_OPEN)
		return;
	p->arrivals = fview_arrivals_ready(vr->v);
	p->notify = p->arrivals && (xfilter_is_all(vr->notify) || vr->notify_pending);
	p->removals = fview_has_removals(vr->v);
}

void vrelay_flush(struct vrelay *vr, bool removals, bool arrivals, struct buf *out)
{
	if (vr->phase != PH_OPEN)
		return;
	if (removals)
		fview_flush_removals(vr->v, out);
	if (arrivals && fview_flush_arrivals(vr->v, out, NULL))
		vr->notify_pending = false;
}

uint32_t vrelay_take_arrivals(struct vrelay *vr, struct uidset *uids)
{
	uint32_t before = fview_count(vr->v);
	if (vr->phase == PH_OPEN && fview_flush_arrivals(vr->v, NULL, uids))
		vr->notify_pending = false;
	return before;
}

/* ------------------------------------------------------------------------ */
/* client commands                                                           */

static struct ccmd *ccmd_new(struct vrelay *vr, void *host_cmd, const char *tag, enum ccmd_kind kind, bool uid)
{
	struct ccmd *c = xcalloc(1, sizeof(*c));
	c->host_cmd = host_cmd;
	snprintf(c->tag, sizeof(c->tag), "%s", tag);
	c->kind = kind;
	c->uid = uid;
	c->status = IMAP_STATUS_OK;
	buf_init(&c->tagged, 0);
	buf_init(&c->copy_src, 0);
	buf_init(&c->copy_dst, 0);
	uidset_init(&c->modified);
	uidset_init(&c->found);
	uidset_init(&c->found2);
	buf_init(&c->out, 0);
	buf_init(&c->items_list, 0);
	buf_init(&c->store_status, 0);
	c->next = vr->cmds;
	vr->cmds = c;
	return c;
}

static void ccmd_unlink(struct vrelay *vr, struct ccmd *c)
{
	for (struct ccmd **pp = &vr->cmds; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
}

/* Finish a command with data (untagged lines) and "<tag> <line>". */
static void ccmd_finish(struct vrelay *vr, struct ccmd *c, const struct buf *data, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void ccmd_finish(struct vrelay *vr, struct ccmd *c, const struct buf *data, const char *fmt, ...)
{
	struct buf out;
	buf_init(&out, 0);
	if (data)
		buf_append(&out, buf_head(data), buf_len(data));
	buf_printf(&out, "%s ", c->tag);
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&out, fmt, ap);
	va_end(ap);
	buf_append_str(&out, "\r\n");
	ccmd_unlink(vr, c);
	void *hc = c->host_cmd;
	ccmd_free(c);
	vr->host.finished(vr->ctx, hc, buf_head(&out), buf_len(&out));
	buf_free(&out);
}

/* Numbers of the told members of uids, as sequence numbers or UIDs, ascending. */
static void to_client_numbers(const struct vrelay *vr, const struct uidset *uids, bool as_uids, struct uidset *out)
{
	uidset_clear(out);
	for (size_t i = 0; i < uids->count; i++) {
		uint32_t seq = fview_seq_of(vr->v, uids->uids[i]);
		if (seq)
			uidset_add(out, as_uids ? uids->uids[i] : seq);
	}
}

static void render_search(struct vrelay *vr, struct ccmd *c, struct buf *out)
{
	struct uidset nums;
	uidset_init(&nums);
	to_client_numbers(vr, &c->found, c->uid, &nums);
	if (c->ret.save) {
		uidset_clear(&vr->searchres);
		for (size_t i = 0; i < c->found.count; i++)
			if (fview_seq_of(vr->v, c->found.uids[i]))
				uidset_add(&vr->searchres, c->found.uids[i]);
	}
	if (!c->ret.esearch) {
		buf_append_str(out, "* SEARCH");
		for (size_t i = 0; i < nums.count; i++)
			buf_printf(out, " %u", nums.uids[i]);
		buf_append_str(out, "\r\n");
		uidset_free(&nums);
		return;
	}
	bool only_save = c->ret.save && !c->ret.min && !c->ret.max && !c->ret.count && !c->ret.all && !c->ret.partial;
	if (!only_save) {
		buf_append_str(out, "* ESEARCH (TAG ");
		imap_write_astring(out, c->tag, strlen(c->tag));
		buf_append_str(out, ")");
		if (c->uid)
			buf_append_str(out, " UID");
		if (c->ret.min && nums.count)
			buf_printf(out, " MIN %u", nums.uids[0]);
		if (c->ret.max && nums.count)
			buf_printf(out, " MAX %u", nums.uids[nums.count - 1]);
		if (c->ret.count)
			buf_printf(out, " COUNT %zu", nums.count);
		if (c->ret.all && nums.count) {
			buf_append_str(out, " ALL ");
			uidset_format(&nums, out);
		}
		if (c->ret.partial) {
			struct uidset part;
			uidset_init(&part);
			for (uint32_t k = c->ret.plo; k <= c->ret.phi && k <= nums.count; k++)
				uidset_add(&part, nums.uids[k - 1]);
			buf_printf(out, " PARTIAL (%u:%u ", c->ret.plo, c->ret.phi);
			if (part.count)
				uidset_format(&part, out);
			else
				buf_append_str(out, "NIL");
			buf_append_str(out, ")");
			uidset_free(&part);
		}
		buf_append_str(out, "\r\n");
	}
	uidset_free(&nums);
}

/* "NAME value" of the store's STATUS answer for one item, or NULL. */
static const char *store_item(const struct ccmd *c, const char *name, size_t *len)
{
	const char *p = (const char *)buf_head(&c->store_status);
	const char *end = p + buf_len(&c->store_status);
	size_t nl = strlen(name);
	while (p < end) {
		const char *sp = memchr(p, ' ', (size_t)(end - p));
		if (!sp)
			break;
		const char *val = sp + 1;
		const char *ve = memchr(val, '\n', (size_t)(end - val));
		if (!ve)
			ve = end;
		if ((size_t)(sp - p) == nl && strncasecmp(p, name, nl) == 0) {
			*len = (size_t)(ve - val);
			return val;
		}
		p = ve + 1;
	}
	return NULL;
}

static void render_status(struct vrelay *vr, struct ccmd *c, struct buf *out)
{
	struct uidset nums;
	uidset_init(&nums);
	buf_append_str(out, "* STATUS ");
	imap_write_mailbox(out, c->mailbox, true);
	buf_append_str(out, " (");
	const char *p = (const char *)buf_head(&c->items_list), *end = p + buf_len(&c->items_list);
	bool first = true;
	while (p < end) {
		const char *e = memchr(p, ' ', (size_t)(end - p));
		if (!e)
			e = end;
		char name[32];
		snprintf(name, sizeof(name), "%.*s", (int)(e - p), p);
		size_t vlen = 0;
		const char *val = NULL;
		char num[24];
		if (strcasecmp(name, "MESSAGES") == 0) {
			snprintf(num, sizeof(num), "%u", fview_count(vr->v));
			val = num;
			vlen = strlen(num);
		} else if (strcasecmp(name, "UNSEEN") == 0 || strcasecmp(name, "RECENT") == 0) {
			to_client_numbers(vr, strcasecmp(name, "UNSEEN") == 0 ? &c->found : &c->found2, false, &nums);
			snprintf(num, sizeof(num), "%zu", nums.count);
			val = num;
			vlen = strlen(num);
		} else {
			val = store_item(c, name, &vlen);
		}
		if (val) {
			buf_printf(out, "%s%s %.*s", first ? "" : " ", name, (int)vlen, val);
			first = false;
		}
		p = e + 1;
	}
	buf_append_str(out, ")\r\n");
	uidset_free(&nums);
}

/* The last part of a client command answered: tell the client. */
static void ccmd_complete(struct vrelay *vr, struct ccmd *c)
{
	struct buf data;
	buf_init(&data, 0);
	if (c->kind == CC_STATUS && c->status == IMAP_STATUS_OK) {
		buf_clear(&c->tagged);
		buf_append_str(&c->tagged, " STATUS completed.");
	}
	if (c->status == IMAP_STATUS_OK) {
		if (c->kind == CC_SEARCH)
			render_search(vr, c, &data);
		else if (c->kind == CC_SORT || c->kind == CC_THREAD)
			buf_append(&data, buf_head(&c->out), buf_len(&c->out));
		else if (c->kind == CC_STATUS)
			render_status(vr, c, &data);
	}
	struct buf line;
	buf_init(&line, 0);
	buf_append_str(&line, imap_status_name(c->status));
	if (c->copyuid_parts && c->status == IMAP_STATUS_OK) {
		buf_printf(&line, " [COPYUID %s %.*s %.*s]", c->copy_uv, (int)buf_len(&c->copy_src),
		           (const char *)buf_head(&c->copy_src), (int)buf_len(&c->copy_dst),
		           (const char *)buf_head(&c->copy_dst));
		/* the text of the deciding part, without its code (" [code] text") */
		const char *t = (const char *)buf_head(&c->tagged);
		size_t tl = buf_len(&c->tagged);
		const char *close = tl > 1 && t[1] == '[' ? memchr(t, ']', tl) : NULL;
		if (close) {
			tl -= (size_t)(close + 1 - t);
			t = close + 1;
		}
		buf_append(&line, t, tl);
	} else if (c->have_modified) {
		struct uidset nums;
		uidset_init(&nums);
		if (c->uid)
			uidset_copy(&nums, &c->modified);
		else
			to_client_numbers(vr, &c->modified, false, &nums);
		buf_append_str(&line, " [MODIFIED ");
		uidset_format(&nums, &line);
		buf_append_str(&line, "] Conditional STORE failed");
		uidset_free(&nums);
	} else {
		buf_append(&line, buf_head(&c->tagged), buf_len(&c->tagged));
	}
	buf_append(&line, "", 1);
	ccmd_finish(vr, c, &data, "%s", (const char *)buf_head(&line));
	buf_free(&line);
	buf_free(&data);
}

/* A part of a client command got its tagged reply. */
static void cmd_part_done(struct vrelay *vr, struct part *p, const struct imap_msg *m)
{
	struct ccmd *c = p->cmd;
	if (c->kind == CC_SEARCH)
		for (size_t i = 0; i < p->result.count; i++)
			uidset_add(&c->found, p->result.uids[i]);
	if (!c->decided) {
		/* The first failure decides; otherwise the last part's text (and merged codes). */
		buf_clear(&c->tagged);
		if (m->code)
			buf_printf(&c->tagged, " [%.*s]", (int)m->code_len, m->code);
		if (m->text_len)
			buf_printf(&c->tagged, " %.*s", (int)m->text_len, m->text);
		c->status = m->status;
		c->decided = m->status != IMAP_STATUS_OK;
	}
	if (m->status == IMAP_STATUS_OK && m->code) {
		const char *v;
		size_t vl;
		if (imap_code_value(m, "COPYUID", &v, &vl)) {
			/* "uidvalidity src dst": merged over the parts */
			char copy[256];
			snprintf(copy, sizeof(copy), "%.*s", (int)(vl < sizeof(copy) ? vl : sizeof(copy) - 1), v);
			char *uv = strtok(copy, " "), *src = strtok(NULL, " "), *dst = strtok(NULL, " ");
			if (uv && src && dst) {
				snprintf(c->copy_uv, sizeof(c->copy_uv), "%s", uv);
				buf_printf(&c->copy_src, "%s%s", c->copyuid_parts ? "," : "", src);
				buf_printf(&c->copy_dst, "%s%s", c->copyuid_parts ? "," : "", dst);
				c->copyuid_parts++;
			}
		}
		if (imap_code_value(m, "MODIFIED", &v, &vl)) {
			char err[64];
			uidset_parse(&c->modified, v, vl, err, sizeof(err));
			c->have_modified = true;
		}
	}
	if (c->parts_left)
		c->parts_left--;
	if (c->parts_left == 0)
		ccmd_complete(vr, c);
}

/* The raw bytes of m after its argument at index idx (the command's rest, CRLF and literals included). */
static bool raw_after_arg(const struct imap_msg *m, size_t idx, const uint8_t **rest, size_t *rest_len)
{
	/* "tag SP arg0 SP arg1 ...": atoms only up to idx, so their text is in raw as parsed */
	size_t off = strlen(m->tag) + 1;
	for (size_t i = 0; i <= idx; i++) {
		const struct imap_arg *a = &m->args[i];
		if (a->type != IMAP_ARG_ATOM || off + a->len > m->raw_len || memcmp(m->raw + off, a->str, a->len) != 0)
			return false;
		off += a->len;
		if (i < idx) {
			if (off >= m->raw_len || m->raw[off] != ' ')
				return false;
			off++;
		}
	}
	*rest = m->raw + off;
	*rest_len = m->raw_len - off;
	return true;
}

static bool set_arg(struct vrelay *vr, const struct imap_arg *a, bool uid, struct uidset *out, char *err, size_t errlen)
{
	if (a->type != IMAP_ARG_ATOM) {
		snprintf(err, errlen, "expected a message set");
		return false;
	}
	if (a->len == 1 && a->str[0] == '$') {
		/* RFC 5182: the saved search result, or the empty set */
		uidset_copy(out, &vr->searchres);
		fview_keep_told(vr->v, out);
		return true;
	}
	int rc = uid ? fview_uidset(vr->v, a->str, a->len, out, err, errlen)
	             : fview_seqset(vr->v, a->str, a->len, out, err, errlen);
	return rc == 0;
}

/* A sequence set (uid: a UID set) as a search key: the view's UIDs in it, "(NOT ALL)" for none. */
static bool set_key(struct vrelay *vr, const struct imap_arg *a, bool uid, size_t *i, struct buf *out, char *err,
                    size_t errlen)
{
	struct uidset set;
	uidset_init(&set);
	bool ok = set_arg(vr, a, uid, &set, err, errlen);
	if (ok && set.count) {
		buf_append_str(out, "UID ");
		uidset_format(&set, out);
	} else if (ok) {
		buf_append_str(out, "(NOT ALL)");
	}
	uidset_free(&set);
	(*i)++;
	return ok;
}

/* Append a client's search keys, sequence sets as UID sets; false with err for what cannot be relayed. */
static bool search_keys(struct vrelay *vr, const struct imap_arg *args, size_t n, size_t *i, struct buf *out,
                        unsigned depth, char *err, size_t errlen);

static bool search_key(struct vrelay *vr, const struct imap_arg *args, size_t n, size_t *i, struct buf *out,
                       unsigned depth, char *err, size_t errlen)
{
	const struct imap_arg *a = &args[*i];
	if (depth > MAX_SEARCH_DEPTH) {
		snprintf(err, errlen, "search keys nested too deeply");
		return false;
	}
	if (a->type == IMAP_ARG_LIST) {
		buf_append_str(out, "(");
		size_t j = 0;
		bool ok = a->list_count && search_keys(vr, a->list, a->list_count, &j, out, depth + 1, err, errlen);
		if (!a->list_count)
			snprintf(err, errlen, "empty search key list");
		buf_append_str(out, ")");
		(*i)++;
		return ok;
	}
	if (xfilter_is_sequence_set(a))
		return set_key(vr, a, false, i, out, err, errlen);
	const struct xfilter_key *k = xfilter_key_lookup(a);
	if (!k) {
		snprintf(err, errlen, "search key %.*s is not supported in a filtered folder", (int)(a->len > 40 ? 40 : a->len),
		         a->str);
		return false;
	}
	(*i)++;
	if (k->cls == XFK_LOGIC) {
		buf_append_str(out, k->name);
		unsigned operands = strcmp(k->name, "NOT") == 0 ? 1 : 2;
		for (unsigned o = 0; o < operands; o++) {
			if (*i >= n) {
				snprintf(err, errlen, "%s needs more search keys", k->name);
				return false;
			}
			buf_append_str(out, " ");
			if (!search_key(vr, args, n, i, out, depth + 1, err, errlen))
				return false;
		}
		return true;
	}
	unsigned nargs = k->nargs;
	if (strcmp(k->name, "MODSEQ") == 0 && *i < n && args[*i].type == IMAP_ARG_QUOTED)
		nargs = 3; /* MODSEQ "entry" type value */
	if (*i + nargs > n) {
		snprintf(err, errlen, "%s needs %u argument%s", k->name, nargs, nargs > 1 ? "s" : "");
		return false;
	}
	if (k->nargs == 1 && k->arg[0] == XFA_SET)
		return set_key(vr, &args[*i], true, i, out, err, errlen);
	buf_append_str(out, k->name);
	for (unsigned j = 0; j < nargs; j++) {
		const struct imap_arg *v = &args[*i + j];
		buf_append_str(out, " ");
		if (v->type == IMAP_ARG_LIST) {
			snprintf(err, errlen, "%s: unexpected list", k->name);
			return false;
		}
		bool string = nargs == 3 ? j == 0 : k->arg[j] == XFA_STRING;
		if (string || v->type != IMAP_ARG_ATOM)
			imap_write_astring(out, v->str, v->len);
		else
			buf_append(out, v->str, v->len);
	}
	*i += nargs;
	return true;
}

static bool search_keys(struct vrelay *vr, const struct imap_arg *args, size_t n, size_t *i, struct buf *out,
                        unsigned depth, char *err, size_t errlen)
{
	bool first = true;
	while (*i < n) {
		if (!first)
			buf_append_str(out, " ");
		first = false;
		if (!search_key(vr, args, n, i, out, depth, err, errlen))
			return false;
	}
	return true;
}

/* RETURN (...) of SEARCH. */
static bool search_return(const struct imap_arg *list, struct search_ret *r, char *err, size_t errlen)
{
	r->esearch = true;
	if (list->list_count == 0)
		r->all = true;
	for (size_t i = 0; i < list->list_count; i++) {
		const struct imap_arg *a = &list->list[i];
		if (word_is(a, "MIN"))
			r->min = true;
		else if (word_is(a, "MAX"))
			r->max = true;
		else if (word_is(a, "COUNT"))
			r->count = true;
		else if (word_is(a, "ALL"))
			r->all = true;
		else if (word_is(a, "SAVE"))
			r->save = true;
		else if (word_is(a, "PARTIAL") && i + 1 < list->list_count && list->list[i + 1].type == IMAP_ARG_ATOM) {
			unsigned lo, hi;
			char tail;
			const struct imap_arg *rg = &list->list[++i];
			char text[32];
			snprintf(text, sizeof(text), "%.*s", (int)(rg->len > 30 ? 30 : rg->len), rg->str);
			if (sscanf(text, "%u:%u%c", &lo, &hi, &tail) != 2 || lo == 0 || hi < lo) {
				snprintf(err, errlen, "PARTIAL takes a range like 1:100 in a filtered folder");
				return false;
			}
			r->partial = true;
			r->plo = lo;
			r->phi = hi;
		} else {
			snprintf(err, errlen, "SEARCH RETURN option %.*s is not supported in a filtered folder",
			         (int)(a->len > 30 ? 30 : a->len), a->str);
			return false;
		}
	}
	return true;
}

/* Refuse a command in view terms: BAD with the reason. */
static enum vrelay_take refuse(struct vrelay *vr, void *cmd, const char *tag, const char *status, const char *why)
{
	struct ccmd *c = ccmd_new(vr, cmd, tag, CC_FETCH, false);
	ccmd_finish(vr, c, NULL, "%s %s", status, why);
	return VR_TAKEN;
}

static enum vrelay_take cmd_set_command(struct vrelay *vr, const struct imap_msg *m, void *cmd, bool uid,
                                        const char *name, enum ccmd_kind kind)
{
	char err[200];
	size_t idx = uid ? 2 : 1; /* the set */
	const uint8_t *rest;
	size_t rest_len;
	if (m->nargs <= idx || (kind != CC_EXPUNGE && m->nargs <= idx + 1)) {
		if (!(kind == CC_EXPUNGE && !uid))
			return refuse(vr, cmd, m->tag, "BAD", "Missing arguments");
	}
	struct uidset set;
	uidset_init(&set);
	if (kind == CC_EXPUNGE && !uid) {
		/* every told message the store still has; \Deleted ones among them go */
		struct uidset told;
		uidset_init(&told);
		fview_told(vr->v, &told);
		for (size_t i = 0; i < told.count; i++)
			if (fview_is_alive(vr->v, told.uids[i]))
				uidset_add(&set, told.uids[i]);
		uidset_free(&told);
		rest = (const uint8_t *)"\r\n";
		rest_len = 2;
	} else {
		if (!set_arg(vr, &m->args[idx], uid, &set, err, sizeof(err))) {
			uidset_free(&set);
			return refuse(vr, cmd, m->tag, "BAD", err);
		}
		if (!raw_after_arg(m, idx, &rest, &rest_len)) {
			uidset_free(&set);
			return refuse(vr, cmd, m->tag, "BAD", "Cannot relay this command in a filtered folder");
		}
	}
	/* Messages the store no longer has need not be asked for. */
	size_t k = 0;
	for (size_t i = 0; i < set.count; i++)
		if (fview_is_alive(vr->v, set.uids[i]))
			set.uids[k++] = set.uids[i];
	set.count = k;
	struct ccmd *c = ccmd_new(vr, cmd, m->tag, kind, uid);
	if (set.count == 0) {
		/* nothing the client can see: the store need not be asked */
		uidset_free(&set);
		ccmd_finish(vr, c, NULL, "OK %s completed (no messages)", name);
		return VR_TAKEN;
	}
	char prefix[32];
	snprintf(prefix, sizeof(prefix), "UID %s ", name);
	send_chunked(vr, P_CMD, c, prefix, &set, rest, rest_len);
	uidset_free(&set);
	return VR_TAKEN;
}

static enum vrelay_take cmd_search(struct vrelay *vr, const struct imap_msg *m, void *cmd, bool uid,
                                   enum ccmd_kind kind)
{
	char err[200];
	size_t i = uid ? 2 : 1;
	struct buf text;
	buf_init(&text, 0);
	struct search_ret ret;
	memset(&ret, 0, sizeof(ret));
	if (kind == CC_SEARCH) {
		if (i < m->nargs && word_is(&m->args[i], "RETURN")) {
			if (i + 1 >= m->nargs || m->args[i + 1].type != IMAP_ARG_LIST) {
				buf_free(&text);
				return refuse(vr, cmd, m->tag, "BAD", "RETURN needs a list of options");
			}
			if (!search_return(&m->args[i + 1], &ret, err, sizeof(err))) {
				buf_free(&text);
				return refuse(vr, cmd, m->tag, "BAD", err);
			}
			i += 2;
		}
		buf_append_str(&text, "UID SEARCH RETURN (ALL) ");
		if (i + 1 < m->nargs && word_is(&m->args[i], "CHARSET")) {
			buf_append_str(&text, "CHARSET ");
			imap_write_astring(&text, m->args[i + 1].str, m->args[i + 1].len);
			buf_append_str(&text, " ");
			i += 2;
		}
	} else if (kind == CC_SORT) {
		if (i + 2 >= m->nargs || m->args[i].type != IMAP_ARG_LIST) {
			buf_free(&text);
			return refuse(vr, cmd, m->tag, "BAD",
			              i < m->nargs && word_is(&m->args[i], "RETURN")
			                  ? "SORT RETURN is not supported in a filtered folder"
			                  : "SORT needs sort criteria, a charset and search keys");
		}
		buf_append_str(&text, "UID SORT (");
		for (size_t j = 0; j < m->args[i].list_count; j++) {
			const struct imap_arg *a = &m->args[i].list[j];
			if (a->type != IMAP_ARG_ATOM) {
				buf_free(&text);
				return refuse(vr, cmd, m->tag, "BAD", "bad sort criteria");
			}
			buf_printf(&text, "%s%.*s", j ? " " : "", (int)a->len, a->str);
		}
		buf_append_str(&text, ") ");
		imap_write_astring(&text, m->args[i + 1].str, m->args[i + 1].len);
		buf_append_str(&text, " ");
		i += 2;
	} else {
		if (i + 2 >= m->nargs || m->args[i].type != IMAP_ARG_ATOM) {
			buf_free(&text);
			return refuse(vr, cmd, m->tag, "BAD", "THREAD needs an algorithm, a charset and search keys");
		}
		buf_printf(&text, "UID THREAD %.*s ", (int)m->args[i].len, m->args[i].str);
		imap_write_astring(&text, m->args[i + 1].str, m->args[i + 1].len);
		buf_append_str(&text, " ");
		i += 2;
	}
	if (i >= m->nargs) {
		buf_free(&text);
		return refuse(vr, cmd, m->tag, "BAD", "Missing search keys");
	}
	if (!search_keys(vr, m->args, m->nargs, &i, &text, 0, err, sizeof(err))) {
		buf_free(&text);
		return refuse(vr, cmd, m->tag, "BAD", err);
	}
	buf_append_str(&text, "\r\n");
	struct ccmd *c = ccmd_new(vr, cmd, m->tag, kind, uid);
	c->ret = ret;
	struct part *p = send_part(vr, P_CMD, c, &text);
	p->sort = kind != CC_SEARCH;
	buf_free(&text);
	return VR_TAKEN;
}

static bool mailbox_is(const struct vrelay *vr, const struct imap_arg *a)
{
	if (!imap_arg_is_string(a))
		return false;
	if (a->len == 5 && strncasecmp(a->str, "INBOX", 5) == 0)
		return strcmp(vr->mailbox, "INBOX") == 0;
	return a->len == strlen(vr->mailbox) && memcmp(a->str, vr->mailbox, a->len) == 0;
}

static enum vrelay_take cmd_status(struct vrelay *vr, const struct imap_msg *m, void *cmd)
{
	if (m->nargs != 3 || !mailbox_is(vr, &m->args[1]) || m->args[2].type != IMAP_ARG_LIST)
		return VR_PASS;
	const struct imap_arg *l = &m->args[2];
	struct buf other;
	buf_init(&other, 0);
	unsigned items = 0;
	for (size_t i = 0; i < l->list_count; i++) {
		const struct imap_arg *a = &l->list[i];
		if (a->type != IMAP_ARG_ATOM || a->len > 30) {
			buf_free(&other);
			return VR_PASS; /* let the store say BAD */
		}
		if (word_is(a, "MESSAGES"))
			items |= ST_MESSAGES;
		else if (word_is(a, "UNSEEN"))
			items |= ST_UNSEEN;
		else if (word_is(a, "RECENT"))
			items |= ST_RECENT;
		else if (word_is(a, "SIZE") || word_is(a, "DELETED") || word_is(a, "DELETED-STORAGE")) {
			buf_free(&other);
			char why[80];
			snprintf(why, sizeof(why), "STATUS %.*s is not counted in a filtered folder", (int)a->len, a->str);
			return refuse(vr, cmd, m->tag, "NO [CANNOT]", why);
		} else
			buf_printf(&other, "%s%.*s", buf_len(&other) ? " " : "", (int)a->len, a->str);
	}
	struct ccmd *c = ccmd_new(vr, cmd, m->tag, CC_STATUS, false);
	c->mailbox = xstrdup(vr->mailbox);
	c->items = items;
	for (size_t i = 0; i < l->list_count; i++)
		buf_printf(&c->items_list, "%s%.*s", i ? " " : "", (int)l->list[i].len, l->list[i].str);
	struct buf name;
	buf_init(&name, 0);
	imap_write_mailbox(&name, vr->mailbox, false);
	buf_append(&name, "", 1);
	if (buf_len(&other)) {
		buf_append(&other, "", 1);
		sendf_part(vr, P_CMD, c, "STATUS %s (%s)", (const char *)buf_head(&name), (const char *)buf_head(&other));
	}
	/* UNSEEN and RECENT are counted among the messages the client sees */
	if (items & ST_UNSEEN)
		sendf_part(vr, P_CMD, c, "UID SEARCH RETURN (ALL) UNSEEN")->sort = false;
	if (items & ST_RECENT)
		sendf_part(vr, P_CMD, c, "UID SEARCH RETURN (ALL) RECENT")->from = 1; /* from=1: the RECENT part */
	buf_free(&name);
	buf_free(&other);
	if (c->parts_left == 0) {
		ccmd_complete(vr, c);
	}
	return VR_TAKEN;
}

enum vrelay_take vrelay_command(struct vrelay *vr, const struct imap_msg *m, void *cmd, bool *seqnums)
{
	*seqnums = false;
	if (vr->phase != PH_OPEN || m->nargs < 1 || m->args[0].type != IMAP_ARG_ATOM)
		return VR_PASS;
	bool uid = word_is(&m->args[0], "UID");
	const struct imap_arg *name = &m->args[uid ? 1 : 0];
	if (uid && (m->nargs < 2 || name->type != IMAP_ARG_ATOM))
		return VR_PASS;
	static const struct {
		const char *name;
		enum ccmd_kind kind;
	} set_cmds[] = {{"FETCH", CC_FETCH}, {"STORE", CC_STORE}, {"COPY", CC_COPY}, {"MOVE", CC_MOVE},
	                {"EXPUNGE", CC_EXPUNGE}};
	for (size_t i = 0; i < sizeof(set_cmds) / sizeof(set_cmds[0]); i++) {
		if (!word_is(name, set_cmds[i].name))
			continue;
		if (set_cmds[i].kind == CC_EXPUNGE && !uid && m->nargs != 1)
			return VR_PASS; /* let the store say BAD */
		*seqnums = !uid && set_cmds[i].kind != CC_EXPUNGE;
		return cmd_set_command(vr, m, cmd, uid, set_cmds[i].name, set_cmds[i].kind);
	}
	if (word_is(name, "SEARCH") || word_is(name, "SORT") || word_is(name, "THREAD")) {
		*seqnums = !uid;
		return cmd_search(vr, m, cmd, uid,
		                  word_is(name, "SEARCH") ? CC_SEARCH : word_is(name, "SORT") ? CC_SORT : CC_THREAD);
	}
	if (!uid && word_is(name, "STATUS"))
		return cmd_status(vr, m, cmd);
	return VR_PASS;
}

bool vrelay_close(struct vrelay *vr, bool readonly)
{
	vr->closing = true;
	if (readonly)
		return false;
	if (vr->phase != PH_OPEN)
		return true;
	struct uidset set, told;
	uidset_init(&set);
	uidset_init(&told);
	fview_told(vr->v, &told);
	for (size_t i = 0; i < told.count; i++)
		if (fview_is_alive(vr->v, told.uids[i]))
			uidset_add(&set, told.uids[i]);
	send_chunked(vr, P_CLOSE, NULL, "UID EXPUNGE ", &set, (const uint8_t *)"\r\n", 2);
	uidset_free(&set);
	uidset_free(&told);
	return true;
}

/* ------------------------------------------------------------------------ */
/* answers                                                                   */

void vrelay_done(struct vrelay *vr, uint32_t cookie, const struct imap_msg *m)
{
	struct part *p = part_by_cookie(vr, cookie);
	if (!p)
		return;
	/* unlink first: the handlers look at what is still outstanding */
	struct part copy = *p;
	uidset_init(&p->result);
	part_unlink_free(vr, p);
	p = &copy;
	switch (p->kind) {
	case P_OPEN_MATCH:
		uidset_copy(&vr->open_match, &p->result);
		open_progress(vr);
		break;
	case P_OPEN_ALL:
		if (!p->esearch)
			uidset_copy(&vr->open_all, &p->result);
		open_progress(vr);
		break;
	case P_ROUND_ALL:
	case P_ROUND_MATCH:
	case P_ROUND_NOTIFY:
		if (m->status != IMAP_STATUS_OK && vr->phase != PH_DEAD) {
			uidset_free(&p->result);
			lost(vr, "the store refused a search for new messages");
			return;
		}
		round_part_done(vr, p);
		break;
	case P_AGE:
		vr->age_running = false;
		if (m->status == IMAP_STATUS_OK) {
			struct uidset leaving;
			uidset_init(&leaving);
			for (size_t i = 0; i < p->result.count; i++)
				if (fview_seq_of(vr->v, p->result.uids[i]) || fview_is_alive(vr->v, p->result.uids[i]))
					uidset_add(&leaving, p->result.uids[i]);
			fview_age(vr->v, &leaving);
			uidset_free(&leaving);
			tell_pending(vr);
		}
		break;
	case P_NEWFETCH:
	case P_FLAGS:
		open_progress(vr);
		break;
	case P_CMD:
		cmd_part_done(vr, p, m);
		break;
	case P_CLOSE:
		break;
	}
	uidset_free(&p->result);
}

/* "* ESEARCH (TAG "x") UID ALL set" for one of our parts. */
static bool esearch(struct vrelay *vr, const struct imap_msg *m)
{
	if (m->nargs < 2 || !word_is(&m->args[0], "ESEARCH"))
		return false;
	const struct imap_arg *corr = &m->args[1];
	if (corr->type != IMAP_ARG_LIST || corr->list_count != 2 || !word_is(&corr->list[0], "TAG"))
		return false;
	struct part *p = part_by_tag(vr, corr->list[1].str, corr->list[1].len);
	if (!p)
		return false;
	p->esearch = true;
	for (size_t i = 2; i + 1 < m->nargs; i++) {
		if (word_is(&m->args[i], "ALL")) {
			char err[128];
			if (uidset_parse(&p->result, m->args[i + 1].str, m->args[i + 1].len, err, sizeof(err)) < 0) {
				lost(vr, "the store sent an unreadable search answer");
				return true;
			}
		}
	}
	/* What must happen exactly where the answer is in the stream. */
	if (p->kind == P_OPEN_ALL) {
		/* Load now: what the store says after this answer changes the map. */
		uidset_copy(&vr->open_all, &p->result);
		if (vr->select_done && vr->select_ok && !parts_of_kind(vr, P_OPEN_MATCH))
			open_load(vr);
	} else if (p->kind == P_ROUND_ALL) {
		round_learn(vr, p);
	} else if (p->kind == P_CMD && p->cmd && p->cmd->kind == CC_STATUS) {
		/* UNSEEN (from == 0) or RECENT (from == 1) among what the client sees */
		struct uidset *into = p->from ? &p->cmd->found2 : &p->cmd->found;
		for (size_t i = 0; i < p->result.count; i++)
			uidset_add(into, p->result.uids[i]);
	}
	return true;
}

/* "* n FETCH (... UID u FLAGS (...) MODSEQ (...))" as the profile's flag event (no MODSEQ). */
static void flag_event(const struct imap_msg *m, uint32_t seq, struct buf *out)
{
	const struct imap_arg *uid = NULL, *flags = NULL;
	if (m->args[2].type == IMAP_ARG_LIST) {
		const struct imap_arg *l = m->args[2].list;
		for (size_t i = 0; i + 1 < m->args[2].list_count; i += 2) {
			if (word_is(&l[i], "UID"))
				uid = &l[i + 1];
			else if (word_is(&l[i], "FLAGS"))
				flags = &l[i + 1];
		}
	}
	if (!uid || !flags || flags->type != IMAP_ARG_LIST) {
		fview_renumber(m, seq, out);
		return;
	}
	buf_printf(out, "* %u FETCH (UID %.*s FLAGS (", seq, (int)uid->len, uid->str);
	for (size_t i = 0; i < flags->list_count; i++)
		buf_printf(out, "%s%.*s", i ? " " : "", (int)flags->list[i].len, flags->list[i].str);
	buf_append_str(out, "))\r\n");
}

static struct part *oldest_sort_part(struct vrelay *vr, enum ccmd_kind kind)
{
	for (struct part *p = vr->parts; p; p = p->next)
		if (p->kind == P_CMD && p->sort && p->cmd && p->cmd->kind == kind)
			return p;
	return NULL;
}

static struct part *status_part(struct vrelay *vr)
{
	for (struct part *p = vr->parts; p; p = p->next)
		if (p->kind == P_CMD && p->cmd && p->cmd->kind == CC_STATUS)
			return p;
	return NULL;
}

/* "* STATUS mailbox (NAME value ...)" for a STATUS of ours: keep the values. */
static bool status_answer(struct vrelay *vr, const struct imap_msg *m)
{
	if (m->nargs < 3 || !word_is(&m->args[0], "STATUS") || !mailbox_is(vr, &m->args[1]) ||
	    m->args[2].type != IMAP_ARG_LIST)
		return false;
	struct part *p = status_part(vr);
	if (!p)
		return false;
	const struct imap_arg *l = m->args[2].list;
	for (size_t i = 0; i + 1 < m->args[2].list_count; i += 2)
		buf_printf(&p->cmd->store_status, "%.*s %.*s\n", (int)l[i].len, l[i].str, (int)l[i + 1].len, l[i + 1].str);
	return true;
}

enum vrelay_untagged vrelay_untagged(struct vrelay *vr, const struct imap_msg *m, struct buf *out)
{
	if (m->kind != IMAP_MSG_UNTAGGED || vr->phase == PH_DEAD)
		return VRU_PASS;
	if (esearch(vr, m))
		return VRU_CONSUMED;
	if (m->nargs >= 1 && (word_is(&m->args[0], "SORT") || word_is(&m->args[0], "THREAD"))) {
		bool sort = word_is(&m->args[0], "SORT");
		struct part *p = oldest_sort_part(vr, sort ? CC_SORT : CC_THREAD);
		if (!p)
			return VRU_PASS;
		if (sort)
			fview_render_sort(vr->v, m, p->cmd->uid, &p->cmd->out);
		else
			fview_render_thread(vr->v, m, p->cmd->uid, &p->cmd->out);
		p->sort = false; /* one answer per command */
		return VRU_CONSUMED;
	}
	if (status_answer(vr, m))
		return VRU_CONSUMED;
	uint32_t n;
	bool exists = imap_untagged_num(m, "EXISTS", &n);
	bool expunge = !exists && imap_untagged_num(m, "EXPUNGE", &n);
	bool recent = !exists && !expunge && imap_untagged_num(m, "RECENT", &n);
	bool fetch = m->nargs >= 2 && word_is(&m->args[1], "FETCH");
	const char *cv;
	size_t cvl;
	if (vr->phase == PH_OPENING) {
		/* The SELECT's answer is kept to be rewritten; anything after it, until
		 * the searches answer, is covered by their answers. */
		if (vr->mode == VR_OPEN_SELECT && !vr->select_done) {
			if (exists)
				capture(vr, CAP_EXISTS, m);
			else if (recent)
				capture(vr, CAP_RECENT, m);
			else if (m->status == IMAP_STATUS_OK && imap_code_value(m, "UNSEEN", &cv, &cvl))
				; /* a store number: not the client's */
			else if (m->status == IMAP_STATUS_OK && imap_code_value(m, "UIDNEXT", &cv, &cvl)) {
				imap_parse_u32(cv, cvl, &vr->sel_uidnext);
				capture(vr, CAP_UIDNEXT, m);
			} else if (m->status == IMAP_STATUS_OK && imap_code_value(m, "HIGHESTMODSEQ", &cv, &cvl))
				capture(vr, CAP_MODSEQ, m);
			else if (!expunge && !fetch)
				capture(vr, CAP_RAW, m);
			return VRU_CONSUMED;
		}
		if (!exists && !expunge && !recent && !fetch && vr->mode == VR_OPEN_SELECT)
			buf_append(&vr->post, m->raw, m->raw_len);
		return VRU_CONSUMED;
	}
	if (m->nargs >= 1 && word_is(&m->args[0], "VANISHED")) {
		lost(vr, "the store reported VANISHED, which a filtered view does not follow");
		return VRU_CONSUMED;
	}
	if (exists) {
		vr->exists_seen++;
		if (!fview_store_exists(vr->v, n)) {
			lost(vr, "the store's message count went backwards");
			return VRU_CONSUMED;
		}
		round_maybe_start(vr);
		return VRU_CONSUMED;
	}
	if (expunge) {
		if (!fview_store_expunge(vr->v, n)) {
			lost(vr, "the store expunged a message it did not have");
			return VRU_CONSUMED;
		}
		tell_pending(vr);
		return VRU_CONSUMED;
	}
	if (recent)
		return VRU_CONSUMED;
	if (fetch) {
		uint32_t seq = fview_fetch_seq(vr->v, m);
		if (!seq)
			return VRU_CONSUMED;
		if (vr->phase == PH_LOADING) {
			/* a saved view's catch-up: flag changes and new messages' items become events */
			if (parts_of_kind(vr, P_FLAGS))
				flag_event(m, seq, &vr->events);
			else if (parts_of_kind(vr, P_NEWFETCH))
				fview_renumber(m, seq, &vr->events);
			return VRU_CONSUMED; /* other flag changes: the CHANGEDSINCE fetch covers them */
		}
		fview_renumber(m, seq, out);
		return VRU_OUT;
	}
	if (m->status == IMAP_STATUS_OK && imap_code_value(m, "UNSEEN", &cv, &cvl))
		return VRU_CONSUMED;
	if (vr->phase == PH_LOADING && vr->mode == VR_OPEN_SELECT) {
		buf_append(&vr->post, m->raw, m->raw_len);
		return VRU_CONSUMED;
	}
	return VRU_PASS;
}
