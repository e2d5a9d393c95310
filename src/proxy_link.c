/*
 * proxy_link.c - the P-IMAP link from pimap-proxy to a pimap-gateway (see
 * proxy_link.h).
 *
 * Every command written to the gateway is a struct upcmd in the `sent`
 * queue, oldest first. The gateway answers in order, so untagged responses
 * belong to the oldest command still open: a client command's go to the
 * client, those of the proxy's own commands (login, COMPRESS, the state
 * comparison, heartbeats) are consumed here, and those arriving during an
 * upstream IDLE are pushed events for the client.
 *
 * While the link is down, client commands wait in the `held` queue (up to
 * link.outage_wait). Commands that were in flight when it broke are sent
 * again after the resume if repeating them cannot change anything (FETCH,
 * SEARCH, STORE of flags, ...); the others are answered NO [UNAVAILABLE],
 * since the proxy cannot know whether the gateway executed them.
 *
 * Resume: the proxy logs in again with the same device id and a per-client
 * token (ID "x-pimap-resume") so that the gateway hands back this client's
 * own parked connection; the gateway then reports `* SESSION`, `* FOLDER`
 * and the folder's pending events with sequence numbers of the client's
 * view. Those events go to the client as they are. When the gateway cannot
 * (RESYNC, a different folder, a new session), the proxy compares itself:
 * it selects the client's folder, fetches every UID and flag, and diffs that
 * with what it saw the client being told (client_view.c). If even that
 * cannot be exact, the client gets `* BYE` with the reason: it then
 * resynchronises by itself rather than keep a wrong view.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include "client_view.h"
#include "daemon.h"
#include "imap_write.h"
#include "log.h"
#include "macros.h"
#include "msgcache.h"
#include "status_cache.h"
#include "prefetch.h"
#include "proxy_filter.h"
#include "proxy_link.h"
#include "proxy_session.h"
#include "proxy_smtp.h"
#include "sasl.h"

/* Tags of the proxy's own commands on the link. */
#define LINK_TAG_PREFIX "pimap-link-"
/* A command is sent again after a link loss at most this often: a command
 * that itself breaks the link must not loop. */
#define LINK_MAX_RESENDS 1
/* For this long after an upstream IDLE ended, the gateway is known to have
 * had nothing more to say: a client's NOOP then is answered by the proxy
 * (Thunderbird sends DONE, NOOP, then its fetches). Anything the store
 * learns meanwhile comes with the client's next command, as from a server
 * that had nothing new at the NOOP. */
#define LINK_NOOP_FRESH 1.0
/* A link up this long has proved itself: the reconnect backoff starts over. */
#define LINK_STABLE_AFTER 30.0
/* Random bytes in a generated device id and in a resume token. */
#define DEVICE_ID_RANDOM 6
#define RESUME_TOKEN_RANDOM 8

enum link_state {
	LINK_PRELOGIN,   /* the client has not logged in; the upstream is connected */
	LINK_LOGIN,      /* the client's login and our COMPRESS are in flight */
	LINK_UP,         /* relaying */
	LINK_DOWN,       /* lost; waiting for the next reconnect attempt */
	LINK_CONNECTING, /* reconnecting: TCP, TLS, greeting */
	LINK_RESUMING,   /* reconnected: login, COMPRESS, state comparison */
};

enum upcmd_kind {
	UPC_CLIENT,   /* a client command, relayed */
	UPC_LOGIN,    /* the client's LOGIN/AUTHENTICATE, sent as AUTHENTICATE PLAIN user#P<device> */
	UPC_ID,       /* our ID with the resume token */
	UPC_RELOGIN,  /* our login after a reconnect */
	UPC_COMPRESS, /* COMPRESS DEFLATE */
	UPC_UNSELECT, /* leave a folder the gateway resumed that the client never selected */
	UPC_SELECT,   /* state comparison: select the client's folder */
	UPC_SNAPSHOT, /* state comparison: UID FETCH 1:* (FLAGS) */
	UPC_IDLE,     /* an upstream IDLE while the client waits */
	UPC_PROBE,    /* heartbeat */
	UPC_LOGOUT,   /* ours, when the client went away without LOGOUT */
	UPC_PREFETCH, /* a macro's command, sent with its trigger */
	UPC_PREF,     /* XSETPIMAPPREF PIMAP_INBAND_NEW_FORMAT, for the client's macros */
	UPC_WBSTORE,  /* a client's flag STORE already answered by the proxy (write-behind) */
	UPC_WBFIX,    /* the gateway refused a write-behind STORE: UID FETCH of the real flags */
	UPC_FSTATUS,  /* XSETPIMAPPREF PIMAP_FOLDER_STATUS ON: the other folders' STATUS pushed */
	UPC_FILTER,   /* proxy_filter.c's XFILTER / XSETPIMAPPREF PIMAP_EVENT_FILTER */
};

/* A prefetched command: in flight (cmd) or finished, maybe claimed by a
 * client command that waits for it (waiter). */
struct pfentry {
	struct pfentry    *next;
	struct prefetch   *pf;
	struct upcmd      *cmd;
	bool               stale;   /* something changed since: it answers nothing */
	bool               closed;  /* takes no new claims; still answers the one that waits */
	bool               flags;   /* its command asks for FLAGS */
	struct upcmd      *waiter;
	struct macro_claim claim;   /* the waiter's */
};

enum sel_kind { SEL_NONE, SEL_SELECT, SEL_EXAMINE, SEL_LEAVE };

struct upcmd {
	struct upcmd   *next;
	enum upcmd_kind kind;
	char            tag[80];
	struct buf      raw;        /* UPC_CLIENT: the command as sent (literals non-synchronising) */
	bool            retry_safe; /* may be sent again after a link loss */
	bool            seqnums;    /* uses message sequence numbers */
	bool            logout;     /* the client's LOGOUT */
	enum sel_kind   sel;
	char           *mailbox;    /* SEL_SELECT / SEL_EXAMINE */
	bool            started;    /* its first response arrived (the client's view was reset) */
	bool            ending;     /* UPC_IDLE: DONE written */
	bool            plus;       /* UPC_IDLE: the gateway said "+" */
	unsigned        resends;    /* UPC_CLIENT: times sent again after a link loss */
	bool            fetch;      /* UPC_CLIENT: a FETCH or UID FETCH */
	struct pfentry *pfe;        /* UPC_PREFETCH */
	char           *uids;       /* UPC_WBSTORE: the UID set it changes */
	char           *status_of;  /* UPC_CLIENT STATUS: its mailbox */
	bool            list;       /* UPC_CLIENT LIST/LSUB: may return STATUS data */
};

struct cmdq {
	struct upcmd *head, *tail;
	size_t        n;
};

struct link {
	struct session *s;
	enum link_state state;
	struct cmdq     sent;   /* written to the gateway, oldest first */
	struct cmdq     held;   /* waiting for the link */
	unsigned        seq;
	char            token[2 * RESUME_TOKEN_RANDOM + 1];

	/* The client's credentials, kept while it is logged in to log in again
	 * after a loss; wiped when the session ends. */
	char           *user, *pass;

	/* The client's selected mailbox and what it was told about it. */
	char               *selected;
	bool                examined;
	struct client_view *view;

	/* The client's IDLE (answered by the proxy) and the upstream one. */
	bool            client_idle;
	char            idle_tag[80];
	bool            idle_done_wait; /* the client's DONE waits for the upstream IDLE's end */
	struct upcmd   *up_idle;
	bool            idle_refused;   /* the gateway refused IDLE: do not ask again */
	/* The client's DONE was answered at once while the upstream IDLE ends:
	 * until the gateway's tagged OK, events it sent before our DONE may
	 * still arrive. Commands with sequence numbers wait for that OK, and get
	 * NO if an EXPUNGE arrived meanwhile (their numbers then name other
	 * messages). */
	bool            idle_window;
	bool            window_expunged;

	/* AUTHENTICATE PLAIN without an initial response: its tag. */
	bool            auth_pending;
	char            auth_tag[80];

	/* What the gateway said while logging in (again). */
	bool                  sess_selected;
	char                 *sess_folder;
	bool                  resync;
	bool                  forward_events;  /* resumed in the client's folder: its events are the client's */
	bool                  resume_expunged; /* the client was told of expunges during the resume */
	struct client_view   *srv_view;        /* the comparison's SELECT response */
	struct view_snapshot *snap;            /* the comparison's UID FETCH */
	uint32_t              srv_uidvalidity;

	ev_timer        heartbeat;
	bool            probe_out;
	ev_timer        reconnect;
	double          backoff;
	unsigned        attempts;
	ev_tstamp       up_since;
	ev_tstamp       idle_ended_at;  /* the last upstream IDLE's tagged OK */
	ev_timer        outage;

	/* Macros: the client's ID fields (for macro_client_find), prefetches. */
	char              **id_kv;
	struct pfentry     *pfs;
	struct imap_parser *replay_parser; /* re-reads replayed responses for the client's view */
	char               *nf_items;      /* PIMAP_INBAND_NEW_FORMAT set on this link, NULL if none */
	struct pfilter_link *pf;           /* the filter file's state on this link (proxy_filter.c) */
	bool                queue_internal; /* send_internal: wait in `held` behind a blocked client command */
	struct buf          after_idle;     /* answers from prefetches held until the upstream IDLE's end */
	struct msgcache    *cache;          /* message data held to answer FETCH locally (pushes) */
	bool                client_condstore; /* the client uses CONDSTORE: no write-behind (MODSEQ unknown) */
	uint64_t            source;           /* this link in the status cache */
	bool                status_armed;     /* the gateway pushes the other folders' STATUS on this link */
};

static void link_write(struct link *l, struct upcmd *c, bool secret);

/* An upstream IDLE runs until its DONE is written: nothing may go before. */
static bool up_idle_blocks(const struct link *l)
{
	return l->up_idle && !l->up_idle->ending;
}
static void up_flush(struct link *l);
static void link_idle_update(struct link *l);
static void link_up(struct link *l);
static void link_submit(struct link *l, struct upcmd *c);
static void view_apply_bytes(struct link *l, const struct buf *b);

/* Answers kept while an upstream IDLE ended go to the client now. */
static void release_after_idle(struct link *l)
{
	if (!buf_len(&l->after_idle))
		return;
	view_apply_bytes(l, &l->after_idle);
	forward_to_client(l->s, buf_head(&l->after_idle), buf_len(&l->after_idle));
	buf_clear(&l->after_idle);
}
static void prefetch_drop_all(struct link *l);

/* ------------------------------------------------------------------------ */
/* small helpers                                                             */

static struct ev_loop *loop_of(const struct link *l)
{
	return l->s->srv->loop;
}

static const struct proxy_config *cfg_of(const struct link *l)
{
	return l->s->srv->cfg;
}

static void wipe_free(char **p)
{
	if (*p) {
		gnutls_memset(*p, 0, strlen(*p));
		free(*p);
		*p = NULL;
	}
}

static char *dup_n(const char *s, size_t n)
{
	char *d = xmalloc(n + 1);
	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

static bool mailbox_equal(const char *a, const char *b)
{
	if (strcasecmp(a, "INBOX") == 0 && strcasecmp(b, "INBOX") == 0)
		return true;
	return strcmp(a, b) == 0;
}

static bool arg_is(const struct imap_arg *a, const char *word)
{
	return imap_arg_is_atom(a, word);
}

static struct upcmd *upcmd_new(enum upcmd_kind kind)
{
	struct upcmd *c = xcalloc(1, sizeof(*c));
	c->kind = kind;
	buf_init(&c->raw, 0);
	return c;
}

static void upcmd_free(struct upcmd *c)
{
	buf_free(&c->raw);
	free(c->mailbox);
	free(c->uids);
	free(c->status_of);
	free(c);
}

static void q_push(struct cmdq *q, struct upcmd *c)
{
	c->next = NULL;
	if (q->tail)
		q->tail->next = c;
	else
		q->head = c;
	q->tail = c;
	q->n++;
}

static struct upcmd *q_pop(struct cmdq *q)
{
	struct upcmd *c = q->head;
	if (!c)
		return NULL;
	q->head = c->next;
	if (!q->head)
		q->tail = NULL;
	q->n--;
	c->next = NULL;
	return c;
}

static void q_remove(struct cmdq *q, struct upcmd *c)
{
	struct upcmd *prev = NULL;
	for (struct upcmd *p = q->head; p; prev = p, p = p->next) {
		if (p != c)
			continue;
		if (prev)
			prev->next = p->next;
		else
			q->head = p->next;
		if (q->tail == p)
			q->tail = prev;
		q->n--;
		p->next = NULL;
		return;
	}
}

static void q_clear(struct cmdq *q)
{
	struct upcmd *c;
	while ((c = q_pop(q)) != NULL)
		upcmd_free(c);
}

static struct upcmd *q_find_tag(const struct cmdq *q, const char *tag)
{
	for (struct upcmd *c = q->head; c; c = c->next)
		if (strcmp(c->tag, tag) == 0)
			return c;
	return NULL;
}

/* Hex of n random bytes into out (2n+1 bytes). */
static void random_hex(char *out, size_t n)
{
	uint8_t b[32];
	if (n > sizeof(b))
		n = sizeof(b);
	if (gnutls_rnd(GNUTLS_RND_NONCE, b, n) < 0) {
		/* Not a secret: uniqueness is all that matters. */
		for (size_t i = 0; i < n; i++)
			b[i] = (uint8_t)rand();
	}
	for (size_t i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", b[i]);
}

/* ------------------------------------------------------------------------ */
/* device id                                                                 */

static bool device_id_valid(const char *id)
{
	size_t n = strlen(id);
	if (n == 0 || n > DEVICE_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((id[i] >= 'a' && id[i] <= 'z') || (id[i] >= 'A' && id[i] <= 'Z') || (id[i] >= '0' && id[i] <= '9') ||
		      strchr("._-", id[i])))
			return false;
	return true;
}

char *link_device_id(const char *configured, const char *state_dir, char *err, size_t errlen)
{
	if (configured && *configured)
		return xstrdup(configured);
	char path[4096], line[128];
	snprintf(path, sizeof(path), "%s/device-id", state_dir);
	FILE *f = fopen(path, "r");
	if (f) {
		bool got = fgets(line, sizeof(line), f) != NULL;
		fclose(f);
		line[strcspn(line, "\r\n")] = '\0';
		if (got && device_id_valid(line))
			return xstrdup(line);
		snprintf(err, errlen, "%s does not hold a valid device id (A-Z a-z 0-9 . _ -, 1 to %d)", path,
		         DEVICE_ID_MAX);
		return NULL;
	}
	if (errno != ENOENT) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	if (daemon_make_dirs(state_dir, err, errlen) < 0)
		return NULL;
	/* Generated once and kept: the gateway knows the device by this name
	 * (its session, preferences and filters). */
	char id[16 + 2 * DEVICE_ID_RANDOM];
	memcpy(id, "pimap-", 6);
	random_hex(id + 6, DEVICE_ID_RANDOM);
	char tmp[4200];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
		return NULL;
	}
	snprintf(line, sizeof(line), "%s\n", id);
	bool ok = write(fd, line, strlen(line)) == (ssize_t)strlen(line) && fsync(fd) == 0;
	ok = close(fd) == 0 && ok;
	if (!ok || rename(tmp, path) < 0) {
		snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
		unlink(tmp);
		return NULL;
	}
	log_info("generated device id %s (kept in %s)", id, path);
	return xstrdup(id);
}

/* ------------------------------------------------------------------------ */
/* macros: loading (the prefetch engine is further down)                      */

int link_load_macros(const struct proxy_config *cfg, struct macro_set **set, char *err, size_t errlen)
{
	*set = NULL;
	if (!cfg->macros_enabled)
		return 0;
	bool installed = !*cfg->macros_dir;
	const char *dir = installed ? PIMAP_MACROS_DIR : cfg->macros_dir;
	if (installed && access(dir, F_OK) != 0) {
		log_debug("no macros installed in %s", dir);
		return 0;
	}
	*set = macro_set_load_dir(dir, err, errlen);
	if (!*set)
		return -1;
	log_info("loaded %zu macro(s) from %s", macro_set_count(*set), dir);
	return 0;
}

void link_free_macros(struct macro_set *set)
{
	macro_set_free(set);
}

static struct upcmd *send_internal(struct link *l, enum upcmd_kind kind, bool secret, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

void link_send_filter(struct session *s, const char *text)
{
	struct link *l = s->link;
	l->queue_internal = true;
	send_internal(l, UPC_FILTER, false, "%s", text);
	l->queue_internal = false;
}

struct pfilter_link **link_pfilter(struct session *s)
{
	return &s->link->pf;
}

/* ------------------------------------------------------------------------ */
/* lifecycle                                                                 */

static void on_heartbeat(struct ev_loop *loop, ev_timer *w, int revents);
static void on_reconnect(struct ev_loop *loop, ev_timer *w, int revents);
static void on_outage(struct ev_loop *loop, ev_timer *w, int revents);

struct link *link_new(struct session *s)
{
	struct link *l = xcalloc(1, sizeof(*l));
	l->s = s;
	l->state = LINK_PRELOGIN;
	l->view = client_view_new();
	l->cache = msgcache_new(0);
	static uint64_t next_source;
	l->source = ++next_source;
	buf_init(&l->after_idle, 0);
	struct imap_limits lim = {.max_line_length = 16u * 1024 * 1024, .max_literal_size = PREFETCH_MAX_BYTES,
	                          .max_list_depth = 64, .max_args = 4000000};
	l->replay_parser = imap_parser_new(IMAP_PARSE_RESPONSES, &lim);
	random_hex(l->token, RESUME_TOKEN_RANDOM);
	ev_init(&l->heartbeat, on_heartbeat);
	l->heartbeat.data = l;
	ev_init(&l->reconnect, on_reconnect);
	l->reconnect.data = l;
	ev_init(&l->outage, on_outage);
	l->outage.data = l;
	return l;
}

static void resume_state_clear(struct link *l)
{
	l->sess_selected = false;
	free(l->sess_folder);
	l->sess_folder = NULL;
	l->resync = false;
	l->forward_events = false;
	if (l->srv_view)
		client_view_free(l->srv_view);
	l->srv_view = NULL;
	if (l->snap)
		view_snapshot_free(l->snap);
	l->snap = NULL;
	l->srv_uidvalidity = 0;
}

static void stop_timers(struct link *l)
{
	ev_timer_stop(loop_of(l), &l->heartbeat);
	ev_timer_stop(loop_of(l), &l->reconnect);
	ev_timer_stop(loop_of(l), &l->outage);
}

void link_free(struct link *l)
{
	if (!l)
		return;
	stop_timers(l);
	wipe_free(&l->user);
	wipe_free(&l->pass);
	prefetch_drop_all(l);
	q_clear(&l->sent);
	q_clear(&l->held);
	imap_parser_free(l->replay_parser);
	buf_free(&l->after_idle);
	free(l->nf_items);
	if (l->id_kv) {
		for (char **p = l->id_kv; *p; p++)
			free(*p);
		free(l->id_kv);
	}
	free(l->selected);
	client_view_free(l->view);
	msgcache_free(l->cache);
	if (l->s->srv->status)
		status_cache_source_gone(l->s->srv->status, l->source);
	resume_state_clear(l);
	pfilter_link_free(l->pf);
	free(l);
}

bool link_quiescent(const struct session *s)
{
	const struct link *l = s->link;
	if (l->held.n || l->auth_pending || l->state == LINK_LOGIN || l->idle_done_wait)
		return false;
	for (const struct upcmd *c = l->sent.head; c; c = c->next)
		if (c->kind == UPC_CLIENT || c->kind == UPC_LOGIN)
			return false;
	return true;
}

void link_session_closing(struct session *s)
{
	struct link *l = s->link;
	stop_timers(l);
	wipe_free(&l->user);
	wipe_free(&l->pass);
	if (!s->upstream)
		return;
	bool logging_out = false;
	for (const struct upcmd *c = l->sent.head; c; c = c->next)
		logging_out = logging_out || c->logout || c->kind == UPC_LOGOUT;
	bool idle_unanswered = l->up_idle && !l->up_idle->plus; /* a LOGOUT now would be taken for DONE */
	if (s->authenticated && l->state == LINK_UP && !logging_out && !idle_unanswered) {
		/* The client went away (or the proxy stops): end this connection
		 * of the device at the gateway rather than leave it parked for a
		 * resume that will never come. */
		if (l->up_idle && l->up_idle->plus && !l->up_idle->ending)
			forward_to_upstream(s, (const uint8_t *)"DONE\r\n", 6, false);
		char line[64];
		int n = snprintf(line, sizeof(line), LINK_TAG_PREFIX "%u LOGOUT\r\n", ++l->seq);
		forward_to_upstream(s, (const uint8_t *)line, (size_t)n, false);
		stream_set_deadline(s->upstream, 5.0);
		stream_close_after_flush(s->upstream);
		return;
	}
	stream_close(s->upstream);
}

/* ------------------------------------------------------------------------ */
/* writing to the gateway                                                    */

/*
 * Send what is queued to the gateway. A failing write is reported from
 * inside the flush, so the link may be down (s->upstream NULL, the sent
 * queue gone) when this returns: callers check before going on.
 */
static void up_flush(struct link *l)
{
	if (l->s->upstream)
		stream_flush(l->s->upstream);
}

/* Queue an internal command and write it. */
static struct upcmd *send_internal(struct link *l, enum upcmd_kind kind, bool secret, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static struct upcmd *send_internal(struct link *l, enum upcmd_kind kind, bool secret, const char *fmt, ...)
{
	struct upcmd *c = upcmd_new(kind);
	snprintf(c->tag, sizeof(c->tag), LINK_TAG_PREFIX "%u", ++l->seq);
	buf_printf(&c->raw, "%s ", c->tag);
	va_list ap;
	va_start(ap, fmt);
	char *text = NULL;
	if (vasprintf(&text, fmt, ap) < 0)
		abort();
	va_end(ap);
	buf_append_str(&c->raw, text);
	gnutls_memset(text, 0, strlen(text));
	free(text);
	buf_append_str(&c->raw, "\r\n");
	if (secret) {
		/* no copy of a password stays behind once written */
		link_write(l, c, secret);
		if (!l->s->upstream)
			return NULL;
		gnutls_memset(c->raw.data, 0, c->raw.cap);
		buf_clear(&c->raw);
		return c;
	}
	if (l->queue_internal && (up_idle_blocks(l) || l->held.n)) {
		/* Behind the client's command that waits for the upstream IDLE's end. */
		q_push(&l->held, c);
		return c;
	}
	link_write(l, c, secret);
	/* A failed write (compression) has taken the link down and freed c. */
	return l->s->upstream ? c : NULL;
}

static void link_write(struct link *l, struct upcmd *c, bool secret)
{
	if (c->kind == UPC_CLIENT)
		l->idle_ended_at = 0; /* the gateway may have more to say after this */
	q_push(&l->sent, c);
	forward_to_upstream(l->s, buf_head(&c->raw), buf_len(&c->raw), secret);
}



/* A held command that must go on waiting: one with sequence numbers while
 * the upstream IDLE's last events may still arrive (see idle_window). */
static bool held_for_window(const struct link *l, const struct upcmd *c)
{
	return l->idle_window && c->kind == UPC_CLIENT && c->seqnums;
}

/* A client command goes out now, or waits for the link (or for the end of
 * the upstream IDLE: a client may send DONE and its next command before the
 * gateway's "+" came, and the gateway would take that command for DONE). */
static void link_submit(struct link *l, struct upcmd *c)
{
	if (l->state == LINK_UP && !up_idle_blocks(l) && !l->held.n && !held_for_window(l, c)) {
		link_write(l, c, false);
		return;
	}
	q_push(&l->held, c);
	if (l->state == LINK_UP)
		return;
	if (!ev_is_active(&l->outage) && l->state != LINK_LOGIN && l->state != LINK_PRELOGIN) {
		ev_timer_set(&l->outage, cfg_of(l)->link_outage_wait, 0.);
		ev_timer_start(loop_of(l), &l->outage);
	}
}

/* Send what waited (for DONE, or for the IDLE's end), in order. */
static void write_held(struct link *l)
{
	struct upcmd *c;
	while (l->s->upstream && (c = l->held.head) != NULL && !held_for_window(l, c))
		link_write(l, q_pop(&l->held), false);
}

static void end_up_idle(struct link *l)
{
	l->up_idle->ending = true;
	forward_to_upstream(l->s, (const uint8_t *)"DONE\r\n", 6, false);
	write_held(l);
}

/* The login name at the gateway: user#P<device>[@domain]. */
static void gateway_login_name(const struct link *l, const char *user, struct buf *out)
{
	const char *at = strrchr(user, '@');
	size_t local = at ? (size_t)(at - user) : strlen(user);
	buf_append(out, user, local);
	buf_printf(out, "#P%s", l->s->srv->device_id);
	if (at)
		buf_append_str(out, at);
}

/* ID with our resume token, AUTHENTICATE PLAIN, COMPRESS: one batch. */
static void send_login_batch(struct link *l, enum upcmd_kind kind, const char *client_tag)
{
	struct buf name, b64;
	buf_init(&name, 0);
	buf_init(&b64, 0);
	gateway_login_name(l, l->user, &name);
	sasl_plain_encode((const char *)buf_head(&name), buf_len(&name), l->pass, strlen(l->pass), &b64);
	buf_append(&b64, "", 1);

	send_internal(l, UPC_ID, false, "ID (\"x-pimap-resume\" \"%s\")", l->token);
	if (kind == UPC_LOGIN) {
		struct upcmd *c = upcmd_new(UPC_LOGIN);
		snprintf(c->tag, sizeof(c->tag), "%s", client_tag);
		buf_printf(&c->raw, "%s AUTHENTICATE PLAIN %s\r\n", client_tag, (const char *)buf_head(&b64));
		link_write(l, c, true);
		gnutls_memset(c->raw.data, 0, c->raw.cap);
		buf_clear(&c->raw);
	} else {
		send_internal(l, UPC_RELOGIN, true, "AUTHENTICATE PLAIN %s", (const char *)buf_head(&b64));
	}
	gnutls_memset(b64.data, 0, b64.cap);
	buf_free(&b64);
	buf_free(&name);
	/* COMPRESS rides in the same batch: the gateway reads nothing more
	 * until the login is decided, and refuses it if the login failed. */
	send_internal(l, UPC_COMPRESS, false, "COMPRESS DEFLATE");
	up_flush(l);
}

/* ------------------------------------------------------------------------ */
/* the client's login                                                        */

static void client_login(struct link *l, const char *tag, const char *user, size_t user_len, const char *pass,
                         size_t pass_len)
{
	struct session *s = l->s;
	if (memchr(user, '\0', user_len) || memchr(pass, '\0', pass_len) || memchr(user, '\r', user_len) ||
	    memchr(user, '\n', user_len) || user_len == 0) {
		client_say(s, "%s NO [AUTHENTICATIONFAILED] Authentication failed.", tag);
		return;
	}
	if (l->state != LINK_PRELOGIN) {
		client_say(s, "%s NO [UNAVAILABLE] A login is already in progress", tag);
		return;
	}
	wipe_free(&l->user);
	wipe_free(&l->pass);
	l->user = dup_n(user, user_len);
	l->pass = dup_n(pass, pass_len);
	resume_state_clear(l);
	l->state = LINK_LOGIN;
	send_login_batch(l, UPC_LOGIN, tag);
}

static void client_authenticate_response(struct link *l, const char *tag, const char *b64, size_t len)
{
	uint8_t raw[SASL_PLAIN_MAX + 1];
	struct sasl_plain plain;
	enum sasl_plain_result r = sasl_plain_decode(b64, len, raw, &plain);
	if (r == SASL_PLAIN_OK)
		client_login(l, tag, plain.user, plain.user_len, plain.password, plain.password_len);
	else
		client_say(l->s, "%s %s", tag, sasl_plain_refusal(r));
	gnutls_memset(raw, 0, sizeof(raw));
}

static void client_login_command(struct link *l, const struct imap_msg *m)
{
	struct session *s = l->s;
	if (arg_is(&m->args[0], "LOGIN")) {
		if (m->nargs != 3 || !imap_arg_is_string(&m->args[1]) || !imap_arg_is_string(&m->args[2])) {
			client_say(s, "%s BAD LOGIN needs a user name and a password", m->tag);
			return;
		}
		client_login(l, m->tag, m->args[1].str, m->args[1].len, m->args[2].str, m->args[2].len);
		return;
	}
	/* AUTHENTICATE */
	if (m->nargs < 2 || !arg_is(&m->args[1], "PLAIN")) {
		client_say(s, "%s NO [CANNOT] Only AUTHENTICATE PLAIN is supported", m->tag);
		return;
	}
	if (m->nargs >= 3) {
		const struct imap_arg *ir = &m->args[2];
		if (ir->len == 1 && ir->str[0] == '=')
			client_authenticate_response(l, m->tag, "", 0);
		else
			client_authenticate_response(l, m->tag, ir->str, ir->len);
		return;
	}
	l->auth_pending = true;
	snprintf(l->auth_tag, sizeof(l->auth_tag), "%s", m->tag);
	client_say(s, "+ ");
	imap_parser_expect_raw_line(s->cparser);
	s->raw_line_ok = true;
	s->raw_secret = true;
}

/* ------------------------------------------------------------------------ */
/* the client's IDLE                                                          */

/*
 * Should an IDLE run upstream? Only while the client waits in IDLE and
 * nothing else is in flight: the gateway then pushes the folder's events.
 */
static void link_idle_update(struct link *l)
{
	struct session *s = l->s;
	if (l->state != LINK_UP || s->closing)
		return;
	bool others = false;
	for (const struct upcmd *c = l->sent.head; c; c = c->next)
		others = others || c != l->up_idle;
	bool want = l->client_idle && !others && !l->held.n && !l->idle_refused;
	if (want && !l->up_idle) {
		l->up_idle = send_internal(l, UPC_IDLE, false, "IDLE");
		up_flush(l);
	} else if (!want && l->up_idle && l->up_idle->plus && !l->up_idle->ending) {
		end_up_idle(l);
		up_flush(l);
	}
}

static void client_idle_start(struct link *l, const struct imap_msg *m)
{
	struct session *s = l->s;
	l->client_idle = true;
	snprintf(l->idle_tag, sizeof(l->idle_tag), "%s", m->tag);
	/* Answered at once: the client learns nothing from waiting for the
	 * gateway's "+", and pushes flow once the upstream IDLE runs. */
	client_say(s, "+ idling");
	imap_parser_expect_raw_line(s->cparser);
	s->raw_line_ok = true;
	s->raw_secret = false;
	link_idle_update(l);
}

static void client_idle_done(struct link *l)
{
	struct session *s = l->s;
	l->client_idle = false;
	if (l->up_idle && l->state == LINK_UP) {
		/*
		 * Answered at once: waiting for the gateway's end of IDLE would cost
		 * the client a round trip after every new message. The gateway's
		 * last events may still arrive; they reach the client as unsolicited
		 * data (or with its next command). What must not cross them is a
		 * command with sequence numbers: those wait for the IDLE's end
		 * (held_for_window), and get NO if an EXPUNGE came meanwhile.
		 */
		if (!l->idle_window) {
			/* (a second IDLE and DONE before the first one's end keeps the
			 * first window, and what crossed it) */
			l->idle_window = true;
			l->window_expunged = false;
		}
		client_say(s, "%s OK Idle completed.", l->idle_tag);
		if (l->up_idle->plus && !l->up_idle->ending)
			end_up_idle(l);
		/* before the "+", link_idle_update ends it as soon as it comes */
		return;
	}
	if (l->up_idle) {
		/* Its end must reach the gateway, and the gateway's last events the
		 * client, before the client hears that IDLE is over. */
		l->idle_done_wait = true;
		if (l->up_idle->plus && !l->up_idle->ending)
			end_up_idle(l);
		return;
	}
	client_say(s, "%s OK Idle completed.", l->idle_tag);
}

/*
 * The upstream IDLE whose DONE the client was answered early has ended (or
 * the link was lost): commands with sequence numbers that waited for it go
 * now, or get NO if an EXPUNGE reached the client meanwhile.
 */
static void close_idle_window(struct link *l)
{
	if (!l->idle_window)
		return;
	l->idle_window = false;
	if (!l->window_expunged)
		return;
	l->window_expunged = false;
	struct cmdq keep = {0};
	struct upcmd *c;
	while ((c = q_pop(&l->held)) != NULL) {
		if (c->kind == UPC_CLIENT && c->seqnums) {
			client_say(l->s, "%s NO [UNAVAILABLE] Messages were expunged before this command reached the "
			           "server; repeat it", c->tag);
			upcmd_free(c);
			continue;
		}
		q_push(&keep, c);
	}
	l->held = keep;
}

void link_client_raw_line(struct session *s, const struct imap_msg *m)
{
	struct link *l = s->link;
	s->raw_line_ok = false;
	s->raw_secret = false;
	if (l->auth_pending) {
		l->auth_pending = false;
		client_authenticate_response(l, l->auth_tag, m->text, m->text_len);
		return;
	}
	if (l->client_idle) {
		if (m->text_len == 4 && strncasecmp(m->text, "DONE", 4) == 0) {
			client_idle_done(l);
		} else {
			l->client_idle = false;
			if (l->up_idle)
				l->idle_done_wait = false;
			client_say(s, "%s BAD Expected DONE", l->idle_tag);
			link_idle_update(l);
		}
	}
}

/* ------------------------------------------------------------------------ */
/* the client's other commands                                               */

/* Commands whose second execution changes nothing the first did not. */
static bool retry_safe_command(const char *name, bool uid)
{
	static const char *const safe[] = {
		"FETCH", "SEARCH", "SORT", "THREAD", "STORE", "STATUS", "LIST", "LSUB", "XLIST", "NAMESPACE",
		"NOOP", "CHECK", "SELECT", "EXAMINE", "UNSELECT", "ENABLE", "GETQUOTA", "GETQUOTAROOT",
		"MYRIGHTS", "GETACL", "LISTRIGHTS", "GETMETADATA", "SUBSCRIBE", "UNSUBSCRIBE", NULL,
	};
	if (uid && strcasecmp(name, "EXPUNGE") == 0)
		return true; /* only the given messages, already gone the second time */
	for (const char *const *p = safe; *p; p++)
		if (strcasecmp(name, *p) == 0)
			return true;
	return false;
}

static bool seqnum_command(const char *name, bool uid)
{
	if (uid)
		return false;
	return strcasecmp(name, "FETCH") == 0 || strcasecmp(name, "STORE") == 0 || strcasecmp(name, "COPY") == 0 ||
	       strcasecmp(name, "MOVE") == 0 || strcasecmp(name, "SEARCH") == 0 || strcasecmp(name, "SORT") == 0 ||
	       strcasecmp(name, "THREAD") == 0;
}

/* ------------------------------------------------------------------------ */
/* macros: prefetching and answering from the prefetch                       */

static void pfentry_free(struct pfentry *e)
{
	prefetch_free(e->pf);
	macro_claim_free(&e->claim);
	if (e->waiter)
		upcmd_free(e->waiter);
	free(e);
}

static void pf_unlink(struct link *l, struct pfentry *e)
{
	for (struct pfentry **pp = &l->pfs; *pp; pp = &(*pp)->next)
		if (*pp == e) {
			*pp = e->next;
			return;
		}
}

/*
 * Something changed (an event reached the client, or the client changed
 * state): prefetches whose answers were already taken no longer answer
 * anything. With all, also those still to run (the client changed state).
 * A client command that waited for one goes upstream itself.
 */
static void prefetch_invalidate(struct link *l, bool all)
{
	struct pfentry *e = l->pfs, *next;
	for (; e; e = next) {
		next = e->next;
		bool running = e->cmd && e->cmd == l->sent.head;
		if (!all && !running && !prefetch_finished(e->pf))
			continue;
		if (all && e->waiter && e->cmd) {
			/* The client's command that waits was sent before the one that
			 * invalidates: the prefetch (sent earlier still) answers it
			 * exactly and in order. Nothing else may claim it now. */
			e->closed = true;
			continue;
		}
		e->stale = true;
		if (e->waiter) {
			struct upcmd *w = e->waiter;
			e->waiter = NULL;
			link_submit(l, w);
		}
		if (!e->cmd) {
			pf_unlink(l, e);
			pfentry_free(e);
		}
	}
}

static void prefetch_drop_all(struct link *l)
{
	while (l->pfs) {
		struct pfentry *e = l->pfs;
		l->pfs = e->next;
		if (e->cmd)
			e->cmd->pfe = NULL;
		pfentry_free(e);
	}
}

/* The client selected or left a mailbox: what it knew is gone, and so is
 * the data kept for it. */
static void view_reset(struct link *l)
{
	client_view_reset(l->view);
	msgcache_clear(l->cache);
}

/* Tell the client's view about responses the proxy built or replayed. */
static void view_apply_bytes(struct link *l, const struct buf *b)
{
	const uint8_t *p = buf_head(b);
	size_t left = buf_len(b);
	while (left) {
		size_t used = 0;
		enum imap_parse_result r = imap_parser_feed(l->replay_parser, p, left, &used);
		p += used;
		left -= used;
		if (r == IMAP_PARSE_DONE) {
			const struct imap_msg *m = imap_parser_msg(l->replay_parser);
			if (m->kind == IMAP_MSG_UNTAGGED)
				client_view_apply(l->view, m);
		}
		imap_parser_reset(l->replay_parser);
		if (r != IMAP_PARSE_DONE)
			break;
	}
}

/* Answer a claiming client command from a finished prefetch; false if it cannot. */
static bool prefetch_answer(struct link *l, struct pfentry *e, const char *tag, const struct macro_claim *cl)
{
	struct buf out;
	buf_init(&out, 0);
	if (e->stale || !prefetch_reply(e->pf, cl, tag, client_view_count(l->view), &out)) {
		buf_free(&out);
		return false;
	}
	slog(l->s, LOG_LEVEL_DEBUG, "answered %s from the prefetched %s", tag, prefetch_text(e->pf));
	if (l->up_idle) {
		/* The upstream IDLE is ending: its last events reach the client
		 * first, then this answer (release_after_idle). */
		buf_append(&l->after_idle, buf_head(&out), buf_len(&out));
	} else {
		view_apply_bytes(l, &out);
		forward_to_client(l->s, buf_head(&out), buf_len(&out));
	}
	buf_free(&out);
	return true;
}

/*
 * Can a prefetch answer this client command? Then the command never goes
 * upstream: it is answered now, or when the prefetch's reply is in.
 */
static bool prefetch_try_claim(struct link *l, const struct imap_msg *m, struct upcmd *c)
{
	for (struct pfentry *e = l->pfs; e; e = e->next) {
		if (e->stale || e->waiter || e->closed)
			continue;
		struct macro_claim cl;
		if (macro_claim(prefetch_text(e->pf), m, &cl) == MACRO_CLAIM_NONE) {
			macro_claim_free(&cl);
			continue;
		}
		if (prefetch_finished(e->pf)) {
			bool done = prefetch_answer(l, e, c->tag, &cl);
			macro_claim_free(&cl);
			if (!done)
				continue;
			pf_unlink(l, e);
			pfentry_free(e);
			upcmd_free(c);
			return true;
		}
		e->waiter = c;
		e->claim = cl;
		return true;
	}
	return false;
}

/* The prefetch's tagged reply: answer its waiter, or send the waiter upstream. */
static void prefetch_finished_reply(struct link *l, struct upcmd *c, const struct imap_msg *m)
{
	struct pfentry *e = c->pfe;
	if (!e)
		return;
	e->cmd = NULL;
	c->pfe = NULL;
	prefetch_finish(e->pf, m);
	if (e->waiter) {
		struct upcmd *w = e->waiter;
		e->waiter = NULL;
		if (prefetch_answer(l, e, w->tag, &e->claim)) {
			upcmd_free(w);
			pf_unlink(l, e);
			pfentry_free(e);
			return;
		}
		link_submit(l, w);
	}
	if (e->stale || !prefetch_usable(e->pf)) {
		pf_unlink(l, e);
		pfentry_free(e);
	}
}

/* The client's command triggers a macro: send its commands now, in the same batch. */
static void prefetch_send(struct link *l, const struct imap_msg *m)
{
	struct session *s = l->s;
	const struct macro_set *set = s->srv->macros;
	if (!set || l->state != LINK_UP)
		return;
	const struct macro_client *mc = macro_client_find(set, (const char *const *)l->id_kv, s->listener);
	if (!mc)
		return;
	char **cmds = NULL;
	size_t n = macro_expand(mc, m, &cmds);
	for (size_t i = 0; i < n; i++) {
		struct pfentry *e = xcalloc(1, sizeof(*e));
		e->pf = prefetch_new(cmds[i]);
		e->flags = strcasestr(cmds[i], "FLAGS") != NULL;
		/* Never into an upstream IDLE, never ahead of a waiting trigger. */
		l->queue_internal = true;
		e->cmd = send_internal(l, UPC_PREFETCH, false, "%s", cmds[i]);
		l->queue_internal = false;
		if (!e->cmd) {
			pfentry_free(e);
			break;
		}
		e->cmd->pfe = e;
		e->next = l->pfs;
		l->pfs = e;
	}
	if (n)
		slog(s, LOG_LEVEL_DEBUG, "macro of %s: %zu command(s) prefetched", macro_client_name(mc), n);
	macro_free_commands(cmds, n);
}

/*
 * New mail pushed with the items this client will ask for next
 * (PIMAP_INBAND_NEW_FORMAT), so that its follow-up FETCH needs no round
 * trip. Set before a SELECT, once per link, when the client's macros name
 * such items. The preference is the device's: another client of the same
 * device may change it; pushes are handled whatever their items.
 */
static void new_format_update(struct link *l)
{
	struct session *s = l->s;
	const struct macro_set *set = s->srv->macros;
	if (!set || l->state != LINK_UP)
		return;
	const struct macro_client *mc = macro_client_find(set, (const char *const *)l->id_kv, s->listener);
	const char *items = mc ? macro_client_fetch_items(mc) : NULL;
	if (!items || (l->nf_items && strcmp(l->nf_items, items) == 0))
		return;
	free(l->nf_items);
	l->nf_items = xstrdup(items);
	l->queue_internal = true;
	send_internal(l, UPC_PREF, false, "XSETPIMAPPREF PIMAP_INBAND_NEW_FORMAT %s", items);
	l->queue_internal = false;
}

/* An untagged response while a prefetch is the oldest command on the link. */
static void prefetch_untagged(struct link *l, struct upcmd *c, const struct imap_msg *m);
static void wb_untagged(struct link *l, const struct upcmd *c, const struct imap_msg *m);
static bool folder_status_untagged(struct link *l, const struct upcmd *head, const struct imap_msg *m);

/* The client's ID fields, kept to tell which macros apply. */
static void record_id(struct link *l, const struct imap_msg *m)
{
	if (l->id_kv) {
		for (char **p = l->id_kv; *p; p++)
			free(*p);
		free(l->id_kv);
		l->id_kv = NULL;
	}
	if (m->nargs < 2 || m->args[1].type != IMAP_ARG_LIST)
		return;
	const struct imap_arg *kv = m->args[1].list;
	size_t n = m->args[1].list_count / 2;
	if (n > MACRO_MAX_ID_FIELDS)
		n = MACRO_MAX_ID_FIELDS;
	l->id_kv = xcalloc(2 * n + 1, sizeof(char *));
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		const struct imap_arg *f = &kv[2 * i], *v = &kv[2 * i + 1];
		if (!imap_arg_is_string(f) || !imap_arg_is_string(v) || imap_arg_is_atom(v, "NIL"))
			continue;
		l->id_kv[k++] = dup_n(f->str, f->len);
		l->id_kv[k++] = dup_n(v->str, v->len);
	}
}

/* ------------------------------------------------------------------------ */
/* answers the proxy gives itself: cached data, write-behind flag STOREs       */

/* Does a client command still wait for an answer from the gateway? Then a
 * local answer to a later command could overtake it. */
static bool client_waits_upstream(const struct link *l)
{
	for (const struct upcmd *c = l->sent.head; c; c = c->next)
		if (c->kind == UPC_CLIENT)
			return true;
	for (const struct upcmd *c = l->held.head; c; c = c->next)
		if (c->kind == UPC_CLIENT)
			return true;
	for (const struct pfentry *e = l->pfs; e; e = e->next)
		if (e->waiter)
			return true;
	return buf_len(&l->after_idle) > 0;
}

/* Has the gateway just said all it had? (An upstream IDLE is ending, or
 * ended a moment ago with nothing sent since.) Flags the client was told
 * are then as current as a round trip would make them. */
static bool link_fresh(const struct link *l)
{
	if (l->idle_window)
		return true;
	return !l->sent.head && l->idle_ended_at > 0 && ev_now(loop_of(l)) - l->idle_ended_at < LINK_NOOP_FRESH;
}

static bool fetch_wants_flags(const struct imap_msg *m)
{
	const struct imap_arg *items = &m->args[m->nargs - 1];
	if (items->type == IMAP_ARG_ATOM)
		return imap_arg_is_atom(items, "FLAGS");
	for (size_t i = 0; items->type == IMAP_ARG_LIST && i < items->list_count; i++)
		if (imap_arg_is_atom(&items->list[i], "FLAGS"))
			return true;
	return false;
}

/* A client FETCH answered from pushed data and what the client was told. */
static bool fetch_from_cache(struct link *l, const struct imap_msg *m, struct upcmd *c)
{
	if (l->state != LINK_UP || !l->selected || client_waits_upstream(l) || (fetch_wants_flags(m) && !link_fresh(l)))
		return false;
	struct buf out;
	buf_init(&out, 0);
	if (!msgcache_answer(l->cache, l->view, m, c->tag, &out)) {
		buf_free(&out);
		return false;
	}
	slog(l->s, LOG_LEVEL_DEBUG, "answered %s from the proxy's cache", c->tag);
	view_apply_bytes(l, &out);
	forward_to_client(l->s, buf_head(&out), buf_len(&out));
	buf_free(&out);
	upcmd_free(c);
	return true;
}

/* A client STATUS answered from the folder values the gateway keeps pushing. */
static bool status_from_cache(struct link *l, const struct imap_msg *m, struct upcmd *c)
{
	struct session *s = l->s;
	if (l->state != LINK_UP || !s->srv->status || !l->user || client_waits_upstream(l))
		return false;
	struct buf out;
	buf_init(&out, 0);
	if (!status_cache_answer(s->srv->status, l->user, m, c->tag, &out)) {
		buf_free(&out);
		return false;
	}
	slog(s, LOG_LEVEL_DEBUG, "answered %s from the folder status the gateway pushes", c->tag);
	forward_to_client(s, buf_head(&out), buf_len(&out));
	buf_free(&out);
	upcmd_free(c);
	return true;
}

/* System flags a STORE may name; \Recent cannot be stored. */
static bool system_flag(const char *f, size_t len)
{
	static const char *const sys[] = {"\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft", NULL};
	for (const char *const *p = sys; *p; p++)
		if (strlen(*p) == len && strncasecmp(f, *p, len) == 0)
			return true;
	return false;
}

/* Is the keyword in the mailbox's FLAGS list (so storing it creates nothing)? */
static bool mailbox_knows_flag(const char *list, const char *f, size_t len)
{
	for (const char *p = list; p && *p;) {
		const char *e = strchr(p, ' ');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if (n == len && memcmp(p, f, len) == 0)
			return true;
		p = e ? e + 1 : p + n;
	}
	return false;
}

/* Position of a keyword in the mailbox's FLAGS list (the order the server writes them in). */
static size_t keyword_rank(const char *list, const char *f)
{
	size_t r = 0;
	for (const char *p = list; p && *p; r++) {
		const char *e = strchr(p, ' ');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if (n == strlen(f) && memcmp(p, f, n) == 0)
			return r;
		p = e ? e + 1 : p + n;
	}
	return SIZE_MAX;
}

struct flagvec {
	char  *v[64];
	size_t n;
};

static void flagvec_free(struct flagvec *fv)
{
	for (size_t i = 0; i < fv->n; i++)
		free(fv->v[i]);
	fv->n = 0;
}

static bool flagvec_has(const struct flagvec *fv, const char *f, size_t len, size_t *at)
{
	for (size_t i = 0; i < fv->n; i++)
		if (strlen(fv->v[i]) == len &&
		    (f[0] == '\\' ? strncasecmp(fv->v[i], f, len) == 0 : memcmp(fv->v[i], f, len) == 0)) {
			if (at)
				*at = i;
			return true;
		}
	return false;
}

/* The flags after the STORE, as the server will write them; false if too many. */
static bool store_result(const char *spelled, int op, const struct imap_arg *flags, size_t nflags,
                         const char *mbox_flags, bool recent, struct buf *out)
{
	struct flagvec fv = {.n = 0};
	bool ok = true;
	if (op != 0) {
		for (const char *p = spelled; *p && ok;) {
			const char *e = strchr(p, ' ');
			size_t n = e ? (size_t)(e - p) : strlen(p);
			if (fv.n == 64)
				ok = false;
			else
				fv.v[fv.n++] = dup_n(p, n);
			p = e ? e + 1 : p + n;
		}
	}
	for (size_t i = 0; i < nflags && ok; i++) {
		size_t at;
		bool has = flagvec_has(&fv, flags[i].str, flags[i].len, &at);
		if (op >= 0 && !has) {
			if (fv.n == 64)
				ok = false;
			else
				fv.v[fv.n++] = dup_n(flags[i].str, flags[i].len);
		} else if (op < 0 && has) {
			free(fv.v[at]);
			memmove(fv.v + at, fv.v + at + 1, (fv.n - at - 1) * sizeof(fv.v[0]));
			fv.n--;
		}
	}
	if (ok) {
		/* keywords in the mailbox's order; system flags msgcache_write_flags sorts */
		for (size_t i = 1; i < fv.n; i++)
			for (size_t j = i; j > 0 && fv.v[j][0] != '\\' && fv.v[j - 1][0] != '\\' &&
			                   keyword_rank(mbox_flags, fv.v[j]) < keyword_rank(mbox_flags, fv.v[j - 1]);
			     j--) {
				char *t = fv.v[j];
				fv.v[j] = fv.v[j - 1];
				fv.v[j - 1] = t;
			}
		msgcache_write_flags(out, (const char *const *)fv.v, fv.n, recent);
	}
	flagvec_free(&fv);
	return ok;
}

/* The client now uses CONDSTORE: the proxy cannot make up MODSEQ values. */
static void note_condstore(struct link *l, const struct imap_msg *m)
{
	static const char *const words[] = {"CONDSTORE", "QRESYNC", "MODSEQ", "CHANGEDSINCE", "UNCHANGEDSINCE", NULL};
	for (size_t i = 0; i < m->nargs && !l->client_condstore; i++) {
		const struct imap_arg *a = &m->args[i];
		const struct imap_arg *list = a->type == IMAP_ARG_LIST ? a->list : a;
		size_t n = a->type == IMAP_ARG_LIST ? a->list_count : 1;
		for (size_t k = 0; k < n; k++)
			for (const char *const *w = words; *w; w++)
				if (imap_arg_is_atom(&list[k], *w))
					l->client_condstore = true;
	}
}

/*
 * A flag STORE on messages whose flags the client was told: answered at
 * once with the flags the store will have (as the server would write
 * them), and sent to the gateway behind the answer as a silent UID STORE.
 * The client's later commands go after it, so nothing it does can overtake
 * the change. If the gateway refuses, the client is sent the real flags.
 */
static bool write_behind(struct link *l, const struct imap_msg *m, struct upcmd *c, bool uid)
{
	size_t a0 = uid ? 1 : 0;
	if (!cfg_of(l)->link_write_behind || l->state != LINK_UP || !l->selected || l->examined ||
	    l->client_condstore || m->nargs != a0 + 4 || m->args[a0 + 1].type != IMAP_ARG_ATOM ||
	    m->args[a0 + 2].type != IMAP_ARG_ATOM || client_view_broken(l->view) ||
	    !client_view_uids_known(l->view) || client_waits_upstream(l))
		return false;
	/* FLAGS, +FLAGS, -FLAGS, each optionally .SILENT */
	const struct imap_arg *opa = &m->args[a0 + 2];
	const char *op = opa->str;
	size_t oplen = opa->len;
	bool silent = oplen > 7 && strncasecmp(op + oplen - 7, ".SILENT", 7) == 0;
	if (silent)
		oplen -= 7;
	int sign;
	if (oplen == 5 && strncasecmp(op, "FLAGS", 5) == 0)
		sign = 0;
	else if (oplen == 6 && strncasecmp(op, "+FLAGS", 6) == 0)
		sign = 1;
	else if (oplen == 6 && strncasecmp(op, "-FLAGS", 6) == 0)
		sign = -1;
	else
		return false;
	const struct imap_arg *fa = &m->args[a0 + 3];
	const struct imap_arg *flags = fa->type == IMAP_ARG_LIST ? fa->list : fa;
	size_t nflags = fa->type == IMAP_ARG_LIST ? fa->list_count : 1;
	const char *mbox_flags = client_view_mailbox_flags(l->view);
	if (nflags > 32)
		return false;
	for (size_t i = 0; i < nflags; i++) {
		const struct imap_arg *f = &flags[i];
		if (f->type != IMAP_ARG_ATOM || f->len == 0 || memchr(f->str, '\0', f->len) ||
		    !(system_flag(f->str, f->len) || (f->str[0] != '\\' && mailbox_knows_flag(mbox_flags, f->str, f->len))))
			return false; /* a new keyword changes the mailbox's FLAGS: the server says how */
	}
	/* the messages */
	uint32_t count = client_view_count(l->view);
	struct seq_range *ranges;
	size_t nranges;
	uint32_t star = uid ? client_view_uid_at(l->view, count) : count;
	if (uidset_parse_ranges(m->args[a0 + 1].str, m->args[a0 + 1].len, star, &ranges, &nranges, NULL, 0) < 0)
		return false;
	struct uidset uids;
	uidset_init(&uids);
	struct buf ans, uidtext;
	buf_init(&ans, 0);
	buf_init(&uidtext, 0);
	bool ok = true;
	for (size_t r = 0; ok && !uid && r < nranges; r++)
		ok = ranges[r].last <= count && ranges[r].last - ranges[r].first < MSGCACHE_MAX_ANSWER;
	for (uint32_t seq = 1; ok && seq <= count; seq++) {
		uint32_t u = client_view_uid_at(l->view, seq);
		if (!seq_ranges_contain(ranges, nranges, uid ? u : seq))
			continue;
		bool recent = false;
		const char *spelled = client_view_flags_spelled_at(l->view, seq, &recent);
		if (!spelled || uids.count >= MSGCACHE_MAX_ANSWER) {
			ok = false;
			break;
		}
		uidset_add(&uids, u);
		struct buf now;
		buf_init(&now, 0);
		ok = store_result(spelled, sign, flags, nflags, mbox_flags, false, &now);
		buf_append(&now, "", 1);
		/* Dovecot reports only the messages whose flags changed */
		if (ok && strcmp((const char *)buf_head(&now), spelled) != 0) {
			buf_printf(&ans, "* %u FETCH (", seq);
			if (uid)
				buf_printf(&ans, "UID %u ", u);
			buf_printf(&ans, "FLAGS (%s%s%s))\r\n", (const char *)buf_head(&now),
			           recent && buf_len(&now) > 1 ? " " : "", recent ? "\\Recent" : "");
		}
		buf_free(&now);
	}
	free(ranges);
	if (ok && uids.count) {
		struct upcmd *w = upcmd_new(UPC_WBSTORE);
		snprintf(w->tag, sizeof(w->tag), LINK_TAG_PREFIX "%u", ++l->seq);
		uidset_format(&uids, &uidtext);
		buf_append(&uidtext, "", 1);
		w->uids = xstrdup((const char *)buf_head(&uidtext));
		buf_printf(&w->raw, "%s UID STORE %s %.*s.SILENT (", w->tag, w->uids, (int)oplen, op);
		for (size_t i = 0; i < nflags; i++)
			buf_printf(&w->raw, "%s%.*s", i ? " " : "", (int)flags[i].len, flags[i].str);
		buf_append_str(&w->raw, ")\r\n");
		w->retry_safe = true;
		/* the client's view learns the answer whether or not it is shown */
		view_apply_bytes(l, &ans);
		if (!silent)
			forward_to_client(l->s, buf_head(&ans), buf_len(&ans));
		client_say(l->s, "%s OK Store completed.", c->tag);
		slog(l->s, LOG_LEVEL_DEBUG, "answered %s; its STORE follows on the link", c->tag);
		link_submit(l, w);
		up_flush(l);
	}
	size_t matched = uids.count;
	buf_free(&ans);
	buf_free(&uidtext);
	uidset_free(&uids);
	if (!matched)
		ok = false; /* nothing matched: the server's answer is the right one */
	if (ok)
		upcmd_free(c);
	return ok;
}

static void client_forward(struct link *l, const struct imap_msg *m)
{
	struct upcmd *c = upcmd_new(UPC_CLIENT);
	snprintf(c->tag, sizeof(c->tag), "%s", m->tag);
	literals_to_nonsync(m, &c->raw);
	bool uid = arg_is(&m->args[0], "UID") && m->nargs >= 2;
	const struct imap_arg *name = &m->args[uid ? 1 : 0];
	char word[32] = "";
	if (name->type == IMAP_ARG_ATOM && name->len < sizeof(word))
		memcpy(word, name->str, name->len + 1);
	c->retry_safe = retry_safe_command(word, uid);
	c->seqnums = seqnum_command(word, uid);
	if ((strcasecmp(word, "SELECT") == 0 || strcasecmp(word, "EXAMINE") == 0) && m->nargs >= 2 &&
	    imap_arg_is_string(&m->args[1])) {
		c->sel = strcasecmp(word, "SELECT") == 0 ? SEL_SELECT : SEL_EXAMINE;
		c->mailbox = dup_n(m->args[1].str, m->args[1].len);
	} else if (strcasecmp(word, "CLOSE") == 0 || strcasecmp(word, "UNSELECT") == 0) {
		c->sel = SEL_LEAVE;
	}
	c->logout = strcasecmp(word, "LOGOUT") == 0;
	c->fetch = strcasecmp(word, "FETCH") == 0;
	c->list = strcasecmp(word, "LIST") == 0 || strcasecmp(word, "LSUB") == 0;
	if (strcasecmp(word, "STATUS") == 0 && m->nargs >= 2 && imap_arg_is_string(&m->args[1]))
		c->status_of = dup_n(m->args[1].str, m->args[1].len);
	if (c->mailbox && l->s->srv->status && l->user)
		status_cache_selected(l->s->srv->status, l->user, l->source, c->mailbox);
	if (c->sel == SEL_SELECT || c->sel == SEL_EXAMINE) {
		new_format_update(l);
		pfilter_before_select(l->s, c->mailbox);
	}
	note_condstore(l, m);
	if (c->fetch && fetch_from_cache(l, m, c))
		return;
	if (strcasecmp(word, "STORE") == 0 && write_behind(l, m, c, uid))
		return;
	if (c->status_of && status_from_cache(l, m, c))
		return;
	if (l->pfs && l->state == LINK_UP && prefetch_try_claim(l, m, c))
		return;
	/* A command that may change what the client sees makes every answer
	 * prefetched so far stale. */
	if (l->pfs && !macro_command_is_read_only(m) && !arg_is(&m->args[0], "NOOP") && !arg_is(&m->args[0], "CHECK"))
		prefetch_invalidate(l, true);
	link_submit(l, c);
	prefetch_send(l, m);
}

static void answer_capability(struct session *s, const char *tag)
{
	struct buf caps;
	buf_init(&caps, 0);
	client_caps(s, &caps);
	buf_append(&caps, "", 1);
	client_say(s, "* CAPABILITY %s", (const char *)buf_head(&caps));
	client_say(s, "%s OK Capability completed.", tag);
	buf_free(&caps);
}

void link_client_command(struct session *s, const struct imap_msg *m)
{
	struct link *l = s->link;
	const struct imap_arg *cmd = &m->args[0];
	if (arg_is(cmd, "CAPABILITY")) {
		/* Stable for the session: no round trip. */
		answer_capability(s, m->tag);
		return;
	}
	if (arg_is(cmd, "ID")) {
		record_id(l, m);
		client_say(s, "* ID (\"name\" \"pimap-proxy\" \"version\" \"%s\")", PACKAGE_VERSION);
		client_say(s, "%s OK ID completed.", m->tag);
		/* The client just said who it is: what it sends next (a macro
		 * triggered by "ID") can start now. */
		if (s->authenticated && l->state == LINK_UP) {
			prefetch_send(l, m);
			up_flush(l);
		}
		return;
	}
	/* LOGOUT with the link down: answered here, unless earlier commands
	 * still wait for the link (it then waits behind them). */
	if (arg_is(cmd, "LOGOUT") && (!s->authenticated || (l->state != LINK_UP && !l->held.n))) {
		client_say(s, "* BYE Logging out");
		client_say(s, "%s OK Logout completed.", m->tag);
		session_close(s, "logout");
		return;
	}
	if (!s->authenticated) {
		if (arg_is(cmd, "LOGIN") || arg_is(cmd, "AUTHENTICATE"))
			client_login_command(l, m);
		else if (arg_is(cmd, "NOOP"))
			client_say(s, "%s OK NOOP completed.", m->tag);
		else
			client_say(s, "%s BAD Log in first", m->tag);
		return;
	}
	if (arg_is(cmd, "LOGIN") || arg_is(cmd, "AUTHENTICATE")) {
		client_say(s, "%s BAD Already authenticated", m->tag);
		return;
	}
	if (arg_is(cmd, "IDLE")) {
		client_idle_start(l, m);
		return;
	}
	bool idle_ending_only = l->idle_window && l->sent.head == l->up_idle && l->sent.head && !l->sent.head->next;
	if (arg_is(cmd, "NOOP") && m->nargs == 1 && l->state == LINK_UP && !l->held.n &&
	    ((!l->sent.head && l->idle_ended_at > 0 && ev_now(loop_of(l)) - l->idle_ended_at < LINK_NOOP_FRESH) ||
	     idle_ending_only)) {
		slog(s, LOG_LEVEL_DEBUG, "NOOP answered by the proxy (the gateway's IDLE just ended)");
		client_say(s, "%s OK NOOP completed.", m->tag);
		return;
	}
	client_forward(l, m);
}

bool link_client_may_proceed(const struct session *s)
{
	const struct link *l = s->link;
	if (l->auth_pending || l->client_idle)
		return s->raw_line_ok;
	if (l->state == LINK_LOGIN)
		return false;
	if (l->held.n >= LINK_MAX_HELD)
		return false;
	if (l->state == LINK_UP)
		return !stream_output_full(s->upstream);
	return true;
}

/* ------------------------------------------------------------------------ */
/* link loss and reconnect                                                    */

static double jitter(double d)
{
	/* +-20%: a gateway restart should not see every device at the same instant. */
	return d * (0.8 + 0.4 * ((double)rand() / RAND_MAX));
}

static void schedule_reconnect(struct link *l)
{
	const struct proxy_config *cfg = cfg_of(l);
	double delay = 0;
	if (l->attempts > 0) {
		if (l->backoff < cfg->link_reconnect_min)
			l->backoff = cfg->link_reconnect_min;
		delay = jitter(l->backoff);
		l->backoff *= 2;
		if (l->backoff > cfg->link_reconnect_max)
			l->backoff = cfg->link_reconnect_max;
	}
	l->attempts++;
	ev_timer_stop(loop_of(l), &l->reconnect);
	ev_timer_set(&l->reconnect, delay, 0.);
	ev_timer_start(loop_of(l), &l->reconnect);
}

void link_upstream_lost(struct session *s, const char *why)
{
	struct link *l = s->link;
	if (s->closing)
		return;
	for (const struct upcmd *c = l->sent.head; c; c = c->next)
		if (c->logout) {
			/* The client is leaving anyway: answer what it sent, in order, then go. */
			for (const struct upcmd *e = l->sent.head; e != c; e = e->next)
				if (e->kind == UPC_CLIENT)
					client_say(s, "%s NO [UNAVAILABLE] Connection to the server lost before the reply",
					           e->tag);
			client_say(s, "* BYE Logging out");
			client_say(s, "%s OK Logout completed.", c->tag);
			session_close(s, "upstream closed during LOGOUT");
			return;
		}
	if (l->state == LINK_UP || l->state == LINK_RESUMING || l->state == LINK_LOGIN)
		slog(s, LOG_LEVEL_WARN, "link to the gateway lost: %s; reconnecting", why);
	else
		slog(s, LOG_LEVEL_INFO, "reconnect attempt %u failed: %s", l->attempts, why);
	if (s->upstream) {
		stream_close(s->upstream);
		s->upstream = NULL;
	}
	imap_parser_reset(s->uparser);
	s->up_state = UP_CONNECTING;
	ev_timer_stop(loop_of(l), &l->heartbeat);
	l->probe_out = false;
	l->status_armed = false;
	if (s->srv->status)
		status_cache_source_gone(s->srv->status, l->source);

	/* What was in flight: repeat what is safe to repeat, after the resume,
	 * ahead of what the client sent since. A command waiting for a prefetch
	 * waits for the link like the others. */
	struct cmdq retry = {0}, waiters = {0};
	struct upcmd *c;
	/* Commands waiting for a prefetch were sent after its trigger: they go
	 * after the repeated commands. */
	for (struct pfentry *e = l->pfs; e; e = e->next)
		if (e->waiter) {
			q_push(&waiters, e->waiter);
			e->waiter = NULL;
		}
	prefetch_drop_all(l);
	if (l->state == LINK_UP && ev_now(loop_of(l)) - l->up_since >= LINK_STABLE_AFTER) {
		l->attempts = 0;
		l->backoff = 0;
	}
	while ((c = q_pop(&l->sent)) != NULL) {
		if (c->kind == UPC_CLIENT && c->retry_safe && c->resends < LINK_MAX_RESENDS) {
			c->resends++;
			c->started = false;
			q_push(&retry, c);
			continue;
		}
		if (c->kind == UPC_CLIENT)
			client_say(s, "%s NO [UNAVAILABLE] Connection to the server lost before the reply; "
			           "the command may or may not have been carried out", c->tag);
		if (c == l->up_idle) {
			l->up_idle = NULL;
			close_idle_window(l);
			if (l->idle_done_wait) {
				l->idle_done_wait = false;
				client_say(s, "%s OK Idle completed.", l->idle_tag);
			}
			release_after_idle(l);
		}
		upcmd_free(c);
	}
	while ((c = q_pop(&waiters)) != NULL)
		q_push(&retry, c);
	while ((c = q_pop(&l->held)) != NULL) {
		if (c->kind != UPC_CLIENT) {
			/* A prefetch or preference still waiting: not worth a resume. */
			if (c->kind == UPC_PREF) {
				free(l->nf_items);
				l->nf_items = NULL;
			}
			upcmd_free(c);
			continue;
		}
		q_push(&retry, c);
	}
	l->held = retry;
	resume_state_clear(l);
	l->state = LINK_DOWN;
	if (l->held.n && !ev_is_active(&l->outage)) {
		ev_timer_set(&l->outage, cfg_of(l)->link_outage_wait, 0.);
		ev_timer_start(loop_of(l), &l->outage);
	}
	schedule_reconnect(l);
	stream_flush(s->client);
}

static void on_reconnect(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct link *l = w->data;
	(void)loop;
	(void)revents;
	if (l->state != LINK_DOWN || l->s->closing)
		return;
	l->state = LINK_CONNECTING;
	slog(l->s, LOG_LEVEL_DEBUG, "reconnecting to the gateway (attempt %u)", l->attempts);
	session_connect_upstream(l->s); /* a failure comes back through link_upstream_lost */
}

static void on_outage(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct link *l = w->data;
	struct session *s = l->s;
	(void)loop;
	(void)revents;
	if (l->state == LINK_UP)
		return;
	struct upcmd *c;
	bool logout = false;
	while ((c = q_pop(&l->held)) != NULL) {
		if (c->logout) {
			logout = true;
			client_say(s, "* BYE Logging out");
			client_say(s, "%s OK Logout completed.", c->tag);
		} else {
			client_say(s, "%s NO [UNAVAILABLE] No connection to the server (waited %.0f s)", c->tag,
			           cfg_of(l)->link_outage_wait);
		}
		upcmd_free(c);
	}
	if (logout) {
		session_close(s, "logout while the link was down");
		return;
	}
	stream_flush(s->client);
	process_client_input(s);
}

void link_upstream_ready(struct session *s)
{
	struct link *l = s->link;
	l->state = LINK_RESUMING;
	resume_state_clear(l);
	l->resume_expunged = false;
	slog(s, LOG_LEVEL_INFO, "link to the gateway re-established; resuming");
	link_upstream_heard(s);
	send_login_batch(l, UPC_RELOGIN, NULL);
}

/* ------------------------------------------------------------------------ */
/* heartbeats                                                                 */

void link_upstream_heard(struct session *s)
{
	struct link *l = s->link;
	l->probe_out = false;
	if (!s->authenticated)
		return;
	l->heartbeat.repeat = cfg_of(l)->link_heartbeat;
	ev_timer_again(loop_of(l), &l->heartbeat);
}

static void send_probe(struct link *l)
{
	if (l->up_idle) {
		/* Ending the IDLE is the probe: its OK proves the link, and the IDLE
		 * starts again at once. Until the "+" or while it ends, a reply is
		 * on its way anyway. */
		if (l->up_idle->plus && !l->up_idle->ending)
			end_up_idle(l);
	} else {
		/* Answered by the gateway itself: it makes the store say nothing, so
		 * no EXPUNGE can reach a client that is not waiting for one. */
		send_internal(l, UPC_PROBE, false, "XGETPIMAPPREF PIMAP_EVENT_FILTER");
	}
	up_flush(l);
}

static void on_heartbeat(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct link *l = w->data;
	struct session *s = l->s;
	(void)loop;
	(void)revents;
	if (s->closing || !s->upstream)
		return;
	if (stream_output_full(s->client)) {
		/* The proxy itself stopped reading the gateway (the client reads
		 * slowly): the gateway's silence says nothing about the link. */
		l->probe_out = false;
		l->heartbeat.repeat = cfg_of(l)->link_heartbeat;
		ev_timer_again(loop_of(l), &l->heartbeat);
		return;
	}
	if (l->probe_out || l->state != LINK_UP) {
		char why[128];
		snprintf(why, sizeof(why), "no answer from the gateway for %.0f s", cfg_of(l)->link_dead_timeout);
		link_upstream_lost(s, why);
		return;
	}
	send_probe(l);
	l->probe_out = true;
	l->heartbeat.repeat = cfg_of(l)->link_dead_timeout;
	ev_timer_again(loop_of(l), &l->heartbeat);
}

/* ------------------------------------------------------------------------ */
/* responses                                                                 */

/* An event or a reply for the client: what it is told is what it knows. */
static bool new_mail_push(struct link *l, const struct imap_msg *m);

/* Does "* n FETCH (...)" carry this item? */
static bool fetch_has_item(const struct imap_msg *m, const char *item)
{
	if (m->nargs < 3 || m->args[2].type != IMAP_ARG_LIST)
		return false;
	for (size_t i = 0; i < m->args[2].list_count; i += 2)
		if (imap_arg_is_atom(&m->args[2].list[i], item))
			return true;
	return false;
}

static void to_client(struct link *l, const struct imap_msg *m)
{
	if (new_mail_push(l, m))
		return;
	if (m->kind == IMAP_MSG_UNTAGGED) {
		uint32_t n;
		if (imap_untagged_num(m, "EXPUNGE", &n)) {
			msgcache_forget(l->cache, client_view_uid_at(l->view, n));
			if (l->idle_window)
				l->window_expunged = true;
		}
		client_view_apply(l->view, m);
		const struct upcmd *head = l->sent.head;
		bool fetch_data = head && head->kind == UPC_CLIENT && head->fetch;
		/* A client FETCH's own data does not outdate prefetched answers;
		 * flags (someone else's change, or the client's own) do. */
		bool fetch = imap_untagged_num(m, "FETCH", &n);
		if (l->pfs && (imap_untagged_num(m, "EXISTS", &n) || imap_untagged_num(m, "EXPUNGE", &n) ||
		               (fetch && (!fetch_data || fetch_has_item(m, "FLAGS")))))
			prefetch_invalidate(l, false); /* the prefetched answers no longer hold */
	}
	relay_response(l->s, m);
}

static bool untagged_word(const struct imap_msg *m, const char *word)
{
	return m->kind == IMAP_MSG_UNTAGGED && m->status == IMAP_STATUS_NONE && m->nargs >= 1 &&
	       arg_is(&m->args[0], word);
}

static bool is_event(const struct imap_msg *m)
{
	uint32_t n;
	return imap_untagged_num(m, "EXISTS", &n) || imap_untagged_num(m, "EXPUNGE", &n) ||
	       imap_untagged_num(m, "FETCH", &n) || imap_untagged_num(m, "RECENT", &n);
}

/* What the gateway says while a login is answered: the session's state. */
static void login_untagged(struct link *l, const struct imap_msg *m, bool resuming)
{
	if (untagged_word(m, "SESSION")) {
		l->sess_selected = m->nargs >= 2 && arg_is(&m->args[1], "SELECTED");
		return;
	}
	if (untagged_word(m, "FOLDER")) {
		if (m->nargs >= 2 && imap_arg_is_string(&m->args[1])) {
			free(l->sess_folder);
			l->sess_folder = dup_n(m->args[1].str, m->args[1].len);
		}
		l->forward_events = resuming && l->selected && l->sess_selected && l->sess_folder && !l->resync &&
		                    mailbox_equal(l->sess_folder, l->selected);
		return;
	}
	if (untagged_word(m, "RESYNC")) {
		l->resync = true;
		l->forward_events = false;
		return;
	}
	if (untagged_word(m, "SESSIONID"))
		return;
	if (resuming && l->forward_events && is_event(m)) {
		uint32_t n;
		if (imap_untagged_num(m, "EXPUNGE", &n))
			l->resume_expunged = true;
		to_client(l, m);
	}
	/* Anything else (a fresh login's resumed events, greetings) is not the client's. */
}

/* The comparison's SELECT and UID FETCH: the gateway's current state. */
static void compare_untagged(struct link *l, const struct upcmd *c, const struct imap_msg *m)
{
	if (c->kind == UPC_SELECT) {
		const char *v;
		size_t vlen;
		uint32_t uv;
		if (imap_code_value(m, "UIDVALIDITY", &v, &vlen) && imap_parse_u32(v, vlen, &uv))
			l->srv_uidvalidity = uv;
		if (l->srv_view)
			client_view_apply(l->srv_view, m);
		return;
	}
	if (l->snap)
		view_snapshot_apply(l->snap, m);
}

/* Start the state comparison for the client's folder. */
static void start_compare(struct link *l)
{
	struct session *s = l->s;
	if (!client_view_uids_known(l->view) || client_view_broken(l->view)) {
		session_bye(s, "UNAVAILABLE", "Lost track of the mailbox while the connection to the server was "
		            "down; reconnect to resynchronise");
		return;
	}
	l->srv_view = client_view_new();
	struct buf name;
	buf_init(&name, 0);
	imap_write_mailbox(&name, l->selected, false);
	buf_append(&name, "", 1);
	send_internal(l, UPC_SELECT, false, "%s %s", l->examined ? "EXAMINE" : "SELECT", (const char *)buf_head(&name));
	buf_free(&name);
	send_internal(l, UPC_SNAPSHOT, false, "UID FETCH 1:* (FLAGS)");
	up_flush(l);
}

static void compare_done(struct link *l, const struct imap_msg *m)
{
	struct session *s = l->s;
	if (m->status != IMAP_STATUS_OK || !l->snap) {
		session_bye(s, "UNAVAILABLE", "Could not compare the mailbox with the server after reconnecting; "
		            "reconnect to resynchronise");
		return;
	}
	view_snapshot_set_uidvalidity(l->snap, l->srv_uidvalidity);
	struct buf out;
	buf_init(&out, 0);
	uint32_t before = client_view_count(l->view);
	if (client_view_diff_apply(l->view, l->snap, &out) < 0) {
		buf_free(&out);
		session_bye(s, "UNAVAILABLE", "The mailbox changed in a way the proxy cannot describe; reconnect to "
		            "resynchronise");
		return;
	}
	if (memmem(buf_head(&out), buf_len(&out), " EXPUNGE\r\n", 10) != NULL)
		l->resume_expunged = true;
	slog(s, LOG_LEVEL_INFO, "state comparison: %u -> %u messages, %zu bytes of events", before,
	     client_view_count(l->view), buf_len(&out));
	forward_to_client(s, buf_head(&out), buf_len(&out));
	buf_free(&out);
	resume_state_clear(l);
	link_up(l);
}

/* Logged in (again) and compressed: bring the gateway's state to the client's. */
/* Ask the gateway to push the other folders' STATUS on this link. */
static void folder_status_arm(struct link *l)
{
	if (!cfg_of(l)->link_folder_status)
		return;
	if (!l->s->srv->status)
		l->s->srv->status = status_cache_new();
	send_internal(l, UPC_FSTATUS, false, "XSETPIMAPPREF PIMAP_FOLDER_STATUS ON");
}

static void after_login(struct link *l, bool resuming)
{
	struct session *s = l->s;
	folder_status_arm(l);
	pfilter_after_login(s);
	if (!l->selected) {
		if (l->sess_selected)
			send_internal(l, UPC_UNSELECT, false, "UNSELECT");
		link_up(l);
		return;
	}
	if (resuming && l->forward_events && !client_view_broken(l->view)) {
		slog(s, LOG_LEVEL_INFO, "resumed in %s with the gateway's queued events", l->selected);
		link_up(l);
		return;
	}
	slog(s, LOG_LEVEL_INFO, "resumed %s; comparing %s with the server", l->resync ? "after RESYNC" : "elsewhere",
	     l->selected);
	start_compare(l);
}

static void link_up(struct link *l)
{
	struct session *s = l->s;
	if (s->closing)
		return;
	l->state = LINK_UP;
	/* The backoff starts over only once the link has stayed up a while
	 * (link_upstream_lost): a link that breaks at once must not spin. */
	l->up_since = ev_now(loop_of(l));
	ev_timer_stop(loop_of(l), &l->outage);
	/* Commands the client sent with sequence numbers before it heard of the
	 * expunges just reported would now name other messages. */
	struct cmdq keep = {0};
	struct upcmd *c;
	while ((c = q_pop(&l->held)) != NULL) {
		if (l->resume_expunged && c->seqnums) {
			client_say(s, "%s NO [UNAVAILABLE] Messages were expunged while the connection to the server "
			           "was down; repeat the command", c->tag);
			upcmd_free(c);
			continue;
		}
		q_push(&keep, c);
	}
	l->resume_expunged = false;
	while ((c = q_pop(&keep)) != NULL)
		link_write(l, c, false);
	link_idle_update(l);
	up_flush(l);
	stream_flush(s->client);
}

static void selection_done(struct link *l, struct upcmd *c, const struct imap_msg *m)
{
	if (c->sel == SEL_SELECT || c->sel == SEL_EXAMINE) {
		free(l->selected);
		l->selected = NULL;
		if (m->status == IMAP_STATUS_OK) {
			l->selected = c->mailbox;
			c->mailbox = NULL;
			l->examined = c->sel == SEL_EXAMINE ||
			              (m->code && m->code_len >= 9 && strncasecmp(m->code, "READ-ONLY", 9) == 0);
		}
		if (!c->started || m->status != IMAP_STATUS_OK)
			view_reset(l);
	} else if (c->sel == SEL_LEAVE && m->status == IMAP_STATUS_OK) {
		free(l->selected);
		l->selected = NULL;
		view_reset(l);
	}
}

static void tagged_done(struct link *l, struct upcmd *c, const struct imap_msg *m)
{
	struct session *s = l->s;
	bool ok = m->status == IMAP_STATUS_OK;
	switch (c->kind) {
	case UPC_CLIENT:
		selection_done(l, c, m);
		relay_response(s, m);
		if (c->logout) {
			session_close(s, "logout");
			return;
		}
		break;
	case UPC_LOGIN:
		relay_response(s, m);
		if (ok) {
			s->authenticated = true;
			session_logged_in(s);
			smtp_service_login_seen(s->srv->smtp, l->user, l->pass); /* its queued mail may go now */
			link_upstream_heard(s);
		} else {
			wipe_free(&l->user);
			wipe_free(&l->pass);
		}
		break;
	case UPC_RELOGIN:
		if (!ok) {
			char why[400];
			snprintf(why, sizeof(why), "the gateway refused the login: %.*s%s%.*s", (int)m->code_len,
			         m->code ? m->code : "", m->code ? " " : "", (int)m->text_len, m->text);
			if (m->code && strncasecmp(m->code, "AUTHENTICATIONFAILED", 20) == 0) {
				session_bye(s, "UNAVAILABLE", "The server no longer accepts the password; log in again");
				return;
			}
			link_upstream_lost(s, why);
			return;
		}
		break;
	case UPC_COMPRESS:
		if (ok) {
			if (stream_enable_compress(s->upstream, -1) < 0) {
				link_upstream_lost(s, "compression failed");
				return;
			}
			slog(s, LOG_LEVEL_DEBUG, "link COMPRESS=DEFLATE active");
		} else if (s->authenticated) {
			/* Over HTTPS the gateway always refuses: HTTP compresses there (Content-Encoding). */
			slog(s, s->srv->https ? LOG_LEVEL_DEBUG : LOG_LEVEL_WARN, "the gateway refused COMPRESS: %.*s",
			     (int)m->text_len, m->text);
		}
		if (l->state == LINK_LOGIN) {
			if (s->authenticated)
				after_login(l, false);
			else
				l->state = LINK_PRELOGIN;
		} else if (l->state == LINK_RESUMING) {
			after_login(l, true);
		}
		break;
	case UPC_SELECT:
		if (!ok) {
			char why[600];
			snprintf(why, sizeof(why), "Mailbox %s is not available after reconnecting: %.*s", l->selected,
			         (int)m->text_len, m->text);
			session_bye(s, "UNAVAILABLE", why);
			return;
		}
		l->snap = view_snapshot_new(client_view_count(l->srv_view));
		break;
	case UPC_SNAPSHOT:
		compare_done(l, m);
		break;
	case UPC_IDLE:
		l->up_idle = NULL;
		close_idle_window(l);
		if (ok)
			l->idle_ended_at = ev_now(loop_of(l));
		if (!ok && !c->ending) {
			slog(s, LOG_LEVEL_WARN, "the gateway refused IDLE: %.*s", (int)m->text_len, m->text);
			l->idle_refused = true;
		}
		if (l->idle_done_wait) {
			l->idle_done_wait = false;
			client_say(s, "%s OK Idle completed.", l->idle_tag);
		}
		release_after_idle(l);
		/* Ended without our DONE (refused, or the gateway ended it): what
		 * waited for the DONE goes now. */
		if (l->state == LINK_UP)
			write_held(l);
		break;
	case UPC_PREFETCH:
		prefetch_finished_reply(l, c, m);
		break;
	case UPC_FILTER:
		pfilter_done(s, m);
		break;
	case UPC_PREF:
		if (!ok) {
			slog(s, LOG_LEVEL_INFO, "the gateway refused the new-mail items: %.*s", (int)m->text_len, m->text);
			free(l->nf_items);
			l->nf_items = xstrdup(""); /* do not ask again on this link */
		}
		break;
	case UPC_FSTATUS:
		l->status_armed = ok;
		if (!ok)
			slog(s, LOG_LEVEL_INFO, "the gateway does not push folder STATUS: %.*s", (int)m->text_len, m->text);
		break;
	case UPC_WBSTORE:
		if (!ok) {
			/* The client was told the STORE worked: tell it the real flags. */
			slog(s, LOG_LEVEL_WARN, "the gateway refused a STORE the client was already answered: %.*s; "
			     "sending the client the real flags", (int)m->text_len, m->text);
			send_internal(l, UPC_WBFIX, false, "UID FETCH %s (FLAGS)", c->uids);
			up_flush(l);
		}
		break;
	case UPC_ID:
	case UPC_UNSELECT:
	case UPC_PROBE:
	case UPC_LOGOUT:
	case UPC_WBFIX:
		break;
	}
	link_idle_update(l);
}

void link_upstream_message(struct session *s, const struct imap_msg *m)
{
	struct link *l = s->link;
	struct upcmd *head = l->sent.head;
	switch (m->kind) {
	case IMAP_MSG_CONTINUATION:
		if (head && head->kind == UPC_IDLE && !head->plus) {
			head->plus = true;
			/* The client may have said DONE, or a heartbeat be due, before the "+". */
			if (l->idle_done_wait && !head->ending) {
				end_up_idle(l);
				up_flush(l);
			} else {
				link_idle_update(l);
			}
			return;
		}
		slog(s, LOG_LEVEL_DEBUG, "unexpected continuation from the gateway ignored");
		return;
	case IMAP_MSG_TAGGED: {
		struct upcmd *c = m->tag ? q_find_tag(&l->sent, m->tag) : NULL;
		if (!c) {
			slog(s, LOG_LEVEL_WARN, "reply with an unknown tag from the gateway ignored");
			return;
		}
		q_remove(&l->sent, c);
		tagged_done(l, c, m);
		upcmd_free(c);
		return;
	}
	case IMAP_MSG_UNTAGGED:
		break;
	default:
		return;
	}
	if (m->status == IMAP_STATUS_BYE) {
		bool logout = false;
		for (const struct upcmd *c = l->sent.head; c; c = c->next)
			logout = logout || c->logout;
		if (logout)
			relay_response(s, m);
		else
			slog(s, LOG_LEVEL_INFO, "the gateway says BYE: %.*s", (int)m->text_len, m->text);
		return; /* without a LOGOUT, the close that follows is a link loss */
	}
	if (untagged_word(m, "STATUS") && folder_status_untagged(l, head, m))
		return;
	if (!head) {
		to_client(l, m); /* unsolicited */
		return;
	}
	switch (head->kind) {
	case UPC_CLIENT:
		if (!head->started) {
			head->started = true;
			if (head->sel == SEL_SELECT || head->sel == SEL_EXAMINE)
				view_reset(l);
		}
		to_client(l, m);
		return;
	case UPC_LOGIN:
		login_untagged(l, m, false);
		return;
	case UPC_RELOGIN:
		login_untagged(l, m, true);
		return;
	case UPC_SELECT:
	case UPC_SNAPSHOT:
		compare_untagged(l, head, m);
		return;
	case UPC_IDLE:
		to_client(l, m);
		return;
	case UPC_PREFETCH:
		prefetch_untagged(l, head, m);
		return;
	case UPC_WBSTORE:
	case UPC_WBFIX:
		wb_untagged(l, head, m);
		return;
	case UPC_FILTER:
		pfilter_untagged(s, m);
		if (is_event(m) && l->selected)
			to_client(l, m);
		return;
	case UPC_ID:
	case UPC_COMPRESS:
	case UPC_UNSELECT:
	case UPC_PROBE:
	case UPC_LOGOUT:
	case UPC_PREF:
	case UPC_FSTATUS:
		if (is_event(m) && l->selected)
			to_client(l, m);
		return;
	}
}

/*
 * Untagged data during a write-behind STORE or its repair: the store's
 * answer for a change the client already knows of is dropped (a silent
 * STORE still reports MODSEQ under CONDSTORE); flags that differ from what
 * the client was told (someone else's change, a refused STORE) and every
 * other event reach the client.
 */
static void wb_untagged(struct link *l, const struct upcmd *c, const struct imap_msg *m)
{
	uint32_t n;
	(void)c;
	if (imap_untagged_num(m, "FETCH", &n) && m->nargs == 3 && m->args[2].type == IMAP_ARG_LIST) {
		const struct imap_arg *it = m->args[2].list;
		const struct imap_arg *flags = NULL;
		for (size_t k = 0; k + 1 < m->args[2].list_count; k += 2)
			if (imap_arg_is_atom(&it[k], "FLAGS"))
				flags = &it[k + 1];
		if (!flags)
			return;
		const char *told = client_view_flags_spelled_at(l->view, n, NULL);
		if (told && flags->type == IMAP_ARG_LIST) {
			struct buf have;
			buf_init(&have, 0);
			for (size_t k = 0; k < flags->list_count; k++) {
				if (imap_arg_is_atom(&flags->list[k], "\\Recent"))
					continue;
				if (buf_len(&have))
					buf_append(&have, " ", 1);
				buf_append(&have, flags->list[k].str, flags->list[k].len);
			}
			buf_append(&have, "", 1);
			bool same = strcmp((const char *)buf_head(&have), told) == 0;
			buf_free(&have);
			if (same)
				return;
		}
	}
	if (l->selected)
		to_client(l, m);
}

/*
 * "* STATUS folder (...)": learnt by the status cache, whoever asked. It
 * reaches the client only when the client asked for it (its STATUS of that
 * folder, or a LIST that may return STATUS); the gateway's pushes are the
 * proxy's. A prefetched STATUS or LIST captures it as usual. Returns true if
 * handled here.
 */
static bool folder_status_untagged(struct link *l, const struct upcmd *head, const struct imap_msg *m)
{
	struct session *s = l->s;
	if (s->srv->status && l->user)
		status_cache_learn(s->srv->status, l->user, l->source, l->selected,
		                   l->status_armed || (head && head->kind == UPC_FSTATUS), m);
	if (head && head->kind == UPC_PREFETCH && head->pfe &&
	    (strncasecmp(prefetch_text(head->pfe->pf), "STATUS ", 7) == 0 ||
	     strncasecmp(prefetch_text(head->pfe->pf), "LIST ", 5) == 0))
		return false;
	if (head && head->kind == UPC_CLIENT &&
	    (head->list || (head->status_of && m->nargs >= 2 && imap_arg_is_string(&m->args[1]) &&
	                    strlen(head->status_of) == m->args[1].len &&
	                    mailbox_equal(head->status_of, m->args[1].str))))
		return false;
	return true;
}

static void prefetch_untagged(struct link *l, struct upcmd *c, const struct imap_msg *m)
{
	struct pfentry *e = c->pfe;
	uint32_t n;
	bool fetch = imap_untagged_num(m, "FETCH", &n);
	/* News that the gateway releases before the prefetch's reply: new mail,
	 * a flag change the prefetch did not ask about, a message again. */
	bool news = fetch && (n > client_view_count(l->view) ||
	                      (e && n <= prefetch_last_seq(e->pf)) ||
	                      (e && !e->flags && fetch_has_item(m, "FLAGS")));
	if (news || (!fetch && (is_event(m) || m->status != IMAP_STATUS_NONE || untagged_word(m, "FLAGS")))) {
		/* Not the prefetch's data: what the client must hear anyway. */
		if (l->selected)
			to_client(l, m);
		return;
	}
	if (e && !e->stale && !prefetch_capture(e->pf, m))
		slog(l->s, LOG_LEVEL_DEBUG, "prefetch over %u bytes dropped", PREFETCH_MAX_BYTES);
}

/*
 * "* n FETCH (UID u ...)" for a message the client has not been told of is
 * a new message pushed with data (PIMAP_INBAND_NEW_FORMAT): the client hears
 * "* n EXISTS", and the data is kept (msgcache) to answer the client's next
 * fetches of the message, whatever subset of the pushed items they ask for.
 */
static bool new_mail_push(struct link *l, const struct imap_msg *m)
{
	uint32_t n;
	if (m->kind != IMAP_MSG_UNTAGGED || !imap_untagged_num(m, "FETCH", &n) || n <= client_view_count(l->view))
		return false;
	struct session *s = l->s;
	prefetch_invalidate(l, false);
	char line[64];
	int len = snprintf(line, sizeof(line), "* %u EXISTS\r\n", n);
	struct buf b;
	buf_init(&b, 0);
	buf_append(&b, line, (size_t)len);
	view_apply_bytes(l, &b);
	buf_free(&b);
	forward_to_client(s, (const uint8_t *)line, (size_t)len);
	if (msgcache_learn(l->cache, m)) {
		/* the slot is that message: its later fetches are answered by UID */
		const struct imap_arg *it = &m->args[2];
		for (size_t k = 0; it->type == IMAP_ARG_LIST && k + 1 < it->list_count; k += 2) {
			uint32_t uid;
			if (imap_arg_is_atom(&it->list[k], "UID") && imap_parse_u32(it->list[k + 1].str, it->list[k + 1].len, &uid))
				client_view_learn_uid(l->view, n, uid);
		}
	}
	return true;
}

/* ------------------------------------------------------------------------ */
/* status (pimap-proxy --status, proxy_status.c)                             */

void link_report(const struct session *s, struct link_report *r)
{
	static const char *const names[] = {
		[LINK_PRELOGIN] = "not logged in",
		[LINK_LOGIN] = "logging in",
		[LINK_UP] = "up",
		[LINK_DOWN] = "down",
		[LINK_CONNECTING] = "reconnecting",
		[LINK_RESUMING] = "resuming",
	};
	const struct link *l = s->link;

	memset(r, 0, sizeof(*r));
	if (!l)
		return;
	r->state = (unsigned)l->state < sizeof(names) / sizeof(names[0]) ? names[l->state] : "?";
	r->up = l->state == LINK_UP;
	r->user = l->user;
	r->mailbox = l->selected;
	r->idle = l->client_idle;
	r->up_for = r->up ? ev_now(loop_of(l)) - l->up_since : 0;
	r->attempts = l->attempts;
}
