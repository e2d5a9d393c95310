/*
 * gateway.c - pimap-gateway: P-IMAP sessions in front of an IMAP store.
 *
 * Objects:
 *   gateway_server   listeners, TLS credentials, state database, the lists below
 *   gw_conn          one client connection; after login it owns one store_conn
 *                    and relays commands with the store connection's own tags
 *   device_session   the P-IMAP session of (user, device): preferences, the
 *                    session id, and the parked store connections
 *   parked           a store connection kept logged in and IDLE on the folder a
 *                    vanished client connection had selected, counting events
 *
 * How events reach a client (docs/PROTOCOL.md section 2): while a connection
 * is attached, the store's untagged responses on its own store connection
 * are the events, already in the client's sequence numbers; the gateway only
 * decides when to pass them on (push, hold, NEW_FORMAT). When a client
 * leaves a folder or goes away, the gateway saves the UID list the client
 * had (a "view"); on return it diffs that view against the store
 * (folder_sync.c: syncdiff, CONDSTORE or a flags comparison) and sends the EXPUNGE/EXISTS/FETCH that
 * lead the client from its view to the store's. That one mechanism serves
 * resume with a parked connection, resume after a gateway restart, and the
 * return to another folder.
 *
 * A folder with a view or notification filter (XFILTER) is relayed through
 * a vrelay (vrelay.c): it rewrites commands and responses between the
 * client's view and the store, and keeps the view's events until they may
 * be told. The "view filters" section below is its host; the hooks in the
 * relay, the event path, parking and resume are one-line calls into it.
 */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/crypto.h>

#include "buf.h"
#include "daemon.h"
#include "folder_count.h"
#include "folder_sync.h"
#include "gateway.h"
#include "gw_deliver.h"
#include "gw_state.h"
#include "http_binding.h"
#include "imap_parse.h"
#include "imap_write.h"
#include "listener.h"
#include "login_throttle.h"
#include "log.h"
#include "outband.h"
#include "pimap_cmd.h"
#include "sasl.h"
#include "store_conn.h"
#include "stream.h"
#include "syncdiff.h"
#include "uidset.h"
#include "url.h"
#include "xdeliver.h"
#include "vrelay.h"
#include "xfilter.h"
#include "zio.h"

/* Before login nobody needs big commands: a LOGIN or an AUTHENTICATE line. */
#define PRELOGIN_MAX_LITERAL 8192
#define PRELOGIN_MAX_COMMAND 65536
#define MAX_CLIENT_TAG 64
#define THROTTLE_WINDOW 60.0     /* seconds over which failed logins are counted */
#define THROTTLE_MAX_ADDRESSES 4096 /* client addresses (IPv6: /64s) tracked at once */
#define EXPIRY_CHECK_INTERVAL 30.0
#define CRED_HASH_LEN SASL_CRED_HASH_LEN
/*
 * How long a store-verified password may take back a parked connection
 * without asking the store again. Bounds how long an old password keeps
 * working after a change at the store (the store is the authority).
 */
#define CRED_REVERIFY_AFTER 900.0

struct gateway_server;
struct device_session;
struct gw_conn;
struct leave_ctx;
struct db_resume;
struct gw_view;
struct view_part;

/* ------------------------------------------------------------------------ */
/* data                                                                      */

/* Save the client's view of the folder it is leaving (the SELECT that leaves it is pipelined behind). */
struct leave_ctx {
	struct gw_conn *c;
	struct folder_state sel;
};

/* Longest x-pimap-resume value kept (see client_id). */
#define RESUME_TOKEN_MAX 64

/* view_parked_*: does new mail in a parked folder pass the device's filters? */
struct parked_push {
	bool wanted;       /* new mail came: search before the next IDLE */
	bool running;
	bool failed;       /* the store refused the search: wake (a wake-up too many, not one lost) */
	uint32_t from;     /* the first UID not yet checked (0: not known yet) */
	char tag[2][16];   /* the searches: new mail that passes, the highest UID */
	uint32_t min, max; /* their answers */
};

struct parked {
	struct parked *next;
	struct device_session *ds;
	struct store_conn *sc;
	struct folder_state sel;
	struct gw_folder_rec view;  /* the client's view when it went away */
	bool have_view;
	struct snapshot *snap;      /* taking the view */
	long long events;           /* events the store reported since */
	bool overflow;
	bool idling;
	const char *idle_tag_ptr;
	char idle_tag[16];
	ev_timer refresh;
	bool taken;                 /* resumed: owned by a gw_conn now */
	bool close_after_snapshot;  /* over the parking limit: save the view, then let go */
	bool await_plus;            /* parked while an IDLE was starting: wait for its "+" */
	bool view_trusted;          /* the client had seen all the store had said when it went away */
	int idle_in_flight;         /* 1 while the client's ended IDLE is still in flight (no FETCH answers) */
	bool notify_wanted;         /* carry the session's NOTIFY for the other subscribed folders */
	bool notify_on;             /* NOTIFY SET is in force on this connection */
	char resume_token[RESUME_TOKEN_MAX + 1]; /* the client's x-pimap-resume ID field, "" if none */
	struct parked_push push;    /* new mail checked against XFILTER before an out-band wake-up */
};

/*
 * What the store told a detached session about a subscribed folder other
 * than the parked ones (NOTIFY STATUS), measured against the view the client
 * saved of it: how many events are pending there.
 */
struct folder_watch {
	struct folder_watch *next;
	char *mailbox;
	bool have_base;       /* a saved view to count from */
	uint32_t uidvalidity;
	uint32_t uidnext0;    /* the view's UIDNEXT and message count */
	uint32_t count0;
	long long pending;
	bool overflow;
};

struct device_session {
	struct device_session *next;
	struct gateway_server *srv;
	char *user;    /* store user name */
	char *device;
	char session_id[33];
	struct pimap_prefs prefs;
	unsigned attached;
	struct parked *parked;      /* FIFO: oldest first */
	uint8_t cred_hash[CRED_HASH_LEN];
	bool have_hash;
	double hash_verified_at;    /* mono_now() of the store login that last proved these credentials */
	double detached_at;         /* wall clock, when attached dropped to 0 */
	char *last_selected;        /* folder of the most recently parked connection */
	bool last_readonly;
	struct parked *watcher;     /* the parked connection carrying NOTIFY, if any */
	struct folder_watch *watches;
	struct xfilter_set filters; /* XFILTER view and notification filters (persistent) */
	struct folder_count *counter; /* STATUS of filtered folders that are not selected (while attached) */
};

enum conn_state {
	C_PRELOGIN,
	C_AUTH_PLAIN,    /* waiting for the AUTHENTICATE PLAIN response line */
	C_LOGGING_IN,    /* store login or resume in progress */
	C_AUTHED,
	C_CLOSED,
};

enum cmd_kind {
	CMD_RELAY,       /* relayed; the store's tagged reply is the client's */
	CMD_SELECT,      /* SELECT/EXAMINE relayed: tracks the folder */
	CMD_UNSELECT,    /* CLOSE/UNSELECT relayed */
	CMD_IDLE,        /* client IDLE: answered by the gateway at DONE */
	CMD_LOCAL,       /* answered locally, kept in order behind earlier ones */
	CMD_LOGOUT,      /* relayed; the connection ends after the reply */
};

struct client_cmd {
	struct client_cmd *next;
	struct gw_conn *conn;
	enum cmd_kind kind;
	char tag[MAX_CLIENT_TAG + 1];
	char *mailbox;        /* SELECT/EXAMINE */
	bool readonly;
	bool done;            /* store answered; waiting for earlier commands */
	struct buf reply;     /* tagged reply to send when it is this command's turn */
	bool xzip;            /* the inner command of an XZIP */
	char outer_tag[MAX_CLIENT_TAG + 1];
	/* SELECT of a folder with a saved view: its responses are held, then told as the saved view + events */
	struct gw_folder_rec *saved;
	struct buf sel_raw;       /* the store's responses as they came */
	struct buf sel_rewritten; /* the same, describing the saved view */
	char store_tag[16];       /* the tag it has at the store (relayed commands), "" until sent */
	struct deliver_job *job;  /* XDELIVER in progress (gw_deliver.c) */
	bool view_seq;            /* a filtered folder's command with sequence numbers: no EXPUNGE before its reply */
	bool view_open;           /* SELECT of a filtered folder: answered when the view is open */
	uint64_t view_mark;       /* vrelay_reply_waits: the reply waits until the new mail before it is decided */
};

enum store_idle_state { SI_NONE, SI_STARTING, SI_ACTIVE, SI_ENDING };

/* A command waiting for the store's IDLE to end. */
struct queued_send {
	struct queued_send *next;
	struct buf text;
	store_done_cb done;
	void *ctx;
	char *tag_out;   /* where to copy the tag (16 bytes), if anyone cares */
};

struct gw_conn {
	struct gw_conn *next;
	struct gateway_server *srv;
	struct stream *client;
	struct imap_parser *parser;
	char peer[128];
	char prefix[160];
	char resume_token[RESUME_TOKEN_MAX + 1]; /* from ID before login: which parked connection is ours */
	bool loopback;
	unsigned long id;    /* for front ends that name a connection (gateway_conn_set_quiet) */
	bool outer_tls;      /* the HTTPS binding's TLS protects this leg: no STARTTLS, no COMPRESS */
	bool in_response;    /* HTTPS in-response session: watch the store between requests */
	bool quiet;          /* in-response with no request open: not a live in-band connection */
	bool tls_ready;      /* implicit TLS done or plaintext leg ready for greeting */
	bool greeted;
	enum conn_state state;
	bool closing;
	ev_timer activity;

	/* login */
	struct pimap_login login;
	char *password;
	char *send_secret;   /* the password, kept in memory while logged in: XDELIVER's SMTP AUTH, and in
	                      * P-IMAP sessions the folder counter (view_counter_ready) */
	char login_tag[MAX_CLIENT_TAG + 1];

	struct store_conn *sc;
	struct device_session *ds;  /* NULL: plain session */
	struct folder_state sel;

	/* commands */
	struct client_cmd *cmds, *cmds_tail;
	unsigned ncmds;
	bool serial;         /* an internal sequence runs: hold client input */
	struct client_cmd *idle_cmd;
	bool idle_done_pending;
	bool idle_bad;       /* the client ended IDLE with something other than DONE */

	bool in_input;       /* process_client_input is on the stack */
	struct login_throttle_slot *throttle_slot; /* our store login, counted as under way there */
	bool logging_out;    /* LOGOUT sent: nothing more is read from the client */
	bool logout_done;    /* its reply is written: close after this flush */
	bool store_no_idle;  /* the store refused IDLE: never ask again */

	/* store IDLE that the gateway drives */
	enum store_idle_state sidle;
	bool sidle_done_wanted;
	bool sidle_started_ok;
	struct queued_send *sendq, *sendq_tail;

	/* events not pushed (EVENT_FILTER), delivered before the next tagged reply */
	struct buf held;
	long long nheld;

	/* NEW_FORMAT: messages above this count are being fetched to be pushed */
	uint32_t newfetch_from;
	bool newfetch_active;

	/* XZIP: the client output of the inner command is captured here */
	struct buf *capture;
	bool capture_overflow;

	/* internal sequences */
	struct client_cmd *select_hold; /* a SELECT whose responses describe a saved view */
	struct leave_ctx *leave;        /* context of c->snap when it saves a folder being left */
	struct db_resume *db_resume;    /* a resume SELECT in flight */
	struct snapshot *snap;
	struct catchup *cu;
	struct parked *resume_from;

	/* view filters: the selected folder's view, and one being left */
	struct gw_view *view, *view_old;
	unsigned view_gen;
	struct view_part *view_parts;   /* commands of the views in flight */
	struct imap_parser *vparser;    /* re-reads a view's rewritten events */
	bool view_lost;
	struct view_recount *recounts;  /* pushed STATUS of filtered folders being counted again */
};

struct gateway_server {
	struct ev_loop *loop;
	const struct gateway_config *cfg;
	struct upstream_url store_url;
	struct store_target target;        /* plain sessions */
	struct store_target target_pimap;  /* P-IMAP sessions: CONDSTORE enabled */
	struct tls_creds *store_creds;
	struct tls_creds *server_creds;
	struct listener **listeners;
	size_t nlisteners;
	struct gw_state *db;
	struct gw_deliver *deliver;        /* NULL: no submission.url, no XDELIVER */
	struct gw_conn *conns;
	unsigned nconns;
	struct device_session *sessions;
	struct login_throttle *throttle; /* failed logins per client address */
	ev_timer expiry;
	ev_timer drain_timer;
	bool draining;
	unsigned long next_conn_id;
	struct http_binding *http;    /* the HTTPS binding's listeners (http_binding.c) */
	struct outband *outband;      /* out-band notifications (outband.c) */
	uint8_t hash_key[32];
	struct imap_limits limits;
	struct imap_limits prelogin_limits;
};

/* ------------------------------------------------------------------------ */
/* small helpers                                                             */

/* For intervals that must not follow wall-clock steps (the credential re-check window). */
static double mono_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double wall_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void clog_(const struct gw_conn *c, enum log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void clog_(const struct gw_conn *c, enum log_level lvl, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(lvl, c->prefix, fmt, ap);
	va_end(ap);
}

static bool cmd_is(const struct imap_msg *m, const char *name)
{
	return m->nargs >= 1 && imap_arg_is_atom(&m->args[0], name);
}

static char *arg_dup(const struct imap_arg *a)
{
	char *s = xmalloc(a->len + 1);
	memcpy(s, a->str, a->len);
	s[a->len] = '\0';
	return s;
}


/* ------------------------------------------------------------------------ */
/* device sessions                                                           */

static void credential_hash(const struct gateway_server *srv, const char *user, const char *password,
                            uint8_t out[CRED_HASH_LEN])
{
	sasl_cred_hash(srv->hash_key, user, password, out);
}

static bool hash_equal(const uint8_t *a, const uint8_t *b)
{
	return sasl_cred_equal(a, b);
}

static struct device_session *session_find(struct gateway_server *srv, const char *user, const char *device)
{
	for (struct device_session *ds = srv->sessions; ds; ds = ds->next)
		if (strcmp(ds->user, user) == 0 && strcmp(ds->device, device) == 0)
			return ds;
	return NULL;
}

static unsigned sessions_of_user(struct gateway_server *srv, const char *user)
{
	unsigned n = 0;
	for (struct device_session *ds = srv->sessions; ds; ds = ds->next)
		if (strcmp(ds->user, user) == 0)
			n++;
	return n;
}

static void load_pref_cb(const char *name, const char *value, void *ctx)
{
	struct pimap_prefs *p = ctx;
	int id = pimap_pref_lookup(name, strlen(name));
	if (id >= 0 && pimap_pref_set_value(p, (enum pimap_pref_id)id, value) < 0)
		log_warn("stored preference %s has an invalid value; using the default", name);
}

static void load_filter_cb(const char *mailbox, char kind, const char *criteria, void *ctx)
{
	char err[256];
	if (xfilter_check_text(criteria, err, sizeof(err)) != XFILTER_OK) {
		log_warn("stored filter of %s is invalid (%s); ignored", *mailbox ? mailbox : "ALL", err);
		return;
	}
	xfilter_set_put(ctx, mailbox, kind == 'V' ? XFILTER_VIEW : XFILTER_NOTIFY, criteria);
}

static void random_hex(char *out, size_t bytes)
{
	uint8_t raw[32];
	if (bytes > sizeof(raw))
		bytes = sizeof(raw);
	gnutls_rnd(GNUTLS_RND_NONCE, raw, bytes);
	for (size_t i = 0; i < bytes; i++)
		sprintf(out + 2 * i, "%02x", raw[i]);
	out[2 * bytes] = '\0';
}

static struct device_session *session_new(struct gateway_server *srv, const char *user, const char *device,
                                          const char *session_id)
{
	struct device_session *ds = xcalloc(1, sizeof(*ds));
	ds->srv = srv;
	ds->user = xstrdup(user);
	ds->device = xstrdup(device);
	if (session_id && *session_id)
		snprintf(ds->session_id, sizeof(ds->session_id), "%s", session_id);
	else
		random_hex(ds->session_id, 16);
	pimap_prefs_init(&ds->prefs);
	gw_state_prefs_load(srv->db, user, device, load_pref_cb, &ds->prefs);
	xfilter_set_init(&ds->filters);
	gw_state_filters_load(srv->db, user, device, load_filter_cb, &ds->filters);
	ds->next = srv->sessions;
	srv->sessions = ds;
	return ds;
}

static void parked_free(struct parked *p);

static void watches_clear(struct device_session *ds)
{
	while (ds->watches) {
		struct folder_watch *w = ds->watches;
		ds->watches = w->next;
		free(w->mailbox);
		free(w);
	}
}

static void session_unlink_free(struct device_session *ds)
{
	struct gateway_server *srv = ds->srv;
	for (struct device_session **pp = &srv->sessions; *pp; pp = &(*pp)->next) {
		if (*pp == ds) {
			*pp = ds->next;
			break;
		}
	}
	while (ds->parked) {
		struct parked *p = ds->parked;
		ds->parked = p->next;
		parked_free(p);
	}
	watches_clear(ds);
	pimap_prefs_free(&ds->prefs);
	xfilter_set_free(&ds->filters);
	folder_count_free(ds->counter);
	free(ds->last_selected);
	free(ds->user);
	free(ds->device);
	free(ds);
}

static void session_save(struct device_session *ds, int state)
{
	struct gw_session_rec rec;
	memset(&rec, 0, sizeof(rec));
	snprintf(rec.session_id, sizeof(rec.session_id), "%s", ds->session_id);
	rec.state = state;
	rec.selected = ds->last_selected;
	rec.selected_readonly = ds->last_readonly;
	rec.detached_at = ds->detached_at;
	gw_state_session_save(ds->srv->db, ds->user, ds->device, &rec);
	/* Attaching and detaching are both use: a device is idle from its last detach on. */
	if (state != GW_SESSION_EXPIRED)
		gw_state_device_used(ds->srv->db, ds->user, ds->device, wall_now());
}

/* A session with nothing attached or parked stays only in the database. */
static void session_maybe_forget(struct device_session *ds)
{
	if (ds->attached == 0 && ds->parked == NULL)
		session_unlink_free(ds);
}

/*
 * A detached session past session.lifetime ends: its parked connections
 * close and its views go; the record stays, marked expired, so that the
 * device's next login learns of it with RESYNC. Returns true if it expired
 * (ds is freed then).
 */
static bool session_expire_if_due(struct device_session *ds)
{
	struct gateway_server *srv = ds->srv;
	if (ds->attached || !ds->detached_at || ds->detached_at + srv->cfg->session_lifetime >= wall_now())
		return false;
	log_info("session %s of %s#P%s expired", ds->session_id, ds->user, ds->device);
	gw_state_session_delete(srv->db, ds->user, ds->device);
	session_save(ds, GW_SESSION_EXPIRED);
	session_unlink_free(ds);
	return true;
}

/* ------------------------------------------------------------------------ */
/* out-band notifications (outband.c sends them)                             */

/* Reachable in-band: a connection attached and not a quiet in-response session. */
static bool device_live(const struct device_session *ds)
{
	for (const struct gw_conn *c = ds->srv->conns; c; c = c->next)
		if (c->ds == ds && c->state == C_AUTHED && !c->quiet)
			return true;
	return false;
}

/*
 * The view and notification filters (XFILTER, docs/PROTOCOL.md section 10)
 * for an out-band wake-up: whether this event in mailbox may wake the
 * device. m is the store's untagged response (NULL for a NOTIFY STATUS
 * count, or an event a view already decided). A folder the view hides
 * (V NONE) wakes nobody, nor does new mail where N is NONE. Whether a new
 * message matches criteria needs a search: a parked folder makes it first
 * (view_parked_new_mail), a view selected in-response has made it
 * (view_push); elsewhere (NOTIFY STATUS of another folder) the mail wakes
 * the device (a wake-up too many rather than one lost).
 * PIMAP_EVENT_FILTER is applied in outband_device_event.
 */
static bool notification_filter_allows(const struct device_session *ds, const char *mailbox, int ev)
{
	if (!mailbox)
		return true;
	if (xfilter_is_none(xfilter_set_get(&ds->filters, mailbox, XFILTER_VIEW)))
		return false;
	return ev != OB_NEW_MESSAGE || !xfilter_is_none(xfilter_set_get(&ds->filters, mailbox, XFILTER_NOTIFY));
}

/* EXISTS -> NEW_MESSAGE, EXPUNGE -> DELETED_MESSAGE, FETCH -> CHANGED_MESSAGE; -1 for the rest (RECENT too). */
static int outband_event_of(const struct imap_msg *m)
{
	uint32_t n;
	if (imap_untagged_num(m, "EXISTS", &n))
		return OB_NEW_MESSAGE;
	if (imap_untagged_num(m, "EXPUNGE", &n))
		return OB_DELETED_MESSAGE;
	if (m->kind == IMAP_MSG_UNTAGGED && m->nargs >= 2 && imap_arg_is_atom(&m->args[1], "FETCH"))
		return OB_CHANGED_MESSAGE;
	return -1;
}

/* An event of a device no connection listens for in-band: wake it out-band if it asked for that. */
static void outband_on_event(struct device_session *ds, const char *mailbox, int ev, const struct imap_msg *m)
{
	(void)m;
	if (ev < 0 || !ds->srv->outband || device_live(ds) || !notification_filter_allows(ds, mailbox, ev))
		return;
	outband_device_event(ds->srv->outband, ds->user, ds->device, &ds->prefs, (enum outband_event)ev, mailbox);
}

/* ------------------------------------------------------------------------ */
/* parked store connections                                                  */

static void parked_untagged(struct store_conn *sc, const struct imap_msg *m, void *ctx);
static bool view_parked_new_mail(struct parked *p, const struct imap_msg *m);
static bool view_parked_check(struct parked *p);
static bool view_parked_untagged(struct parked *p, const struct imap_msg *m);
static void parked_continuation(struct store_conn *sc, const struct imap_msg *m, void *ctx);
static void parked_closed(struct store_conn *sc, const char *reason, void *ctx);

static const struct store_conn_ops parked_ops = {
	.untagged = parked_untagged,
	.continuation = parked_continuation,
	.closed = parked_closed,
};

static void parked_unlink(struct parked *p)
{
	struct device_session *ds = p->ds;
	for (struct parked **pp = &ds->parked; *pp; pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	}
	p->next = NULL;
}

static void parked_free(struct parked *p)
{
	if (p->ds->watcher == p)
		p->ds->watcher = NULL;
	ev_timer_stop(p->ds->srv->loop, &p->refresh);
	if (p->sc)
		store_conn_close(p->sc);
	snapshot_free(p->snap);
	folder_state_clear(&p->sel);
	gw_folder_rec_free(&p->view);
	free(p);
}

static void parked_idle_done(struct store_conn *sc, const struct imap_msg *m, void *ctx);
static void parked_take_view(struct parked *p);
static void parked_skip_view(struct parked *p);
static bool parked_maybe_notify(struct parked *p);
static void session_arm_watch(struct device_session *ds);

static void parked_start_idle(struct parked *p)
{
	if (!p->sc || p->idling || view_parked_check(p))
		return;
	p->idling = true;
	snprintf(p->idle_tag, sizeof(p->idle_tag), "%s", store_conn_sendf(p->sc, parked_idle_done, p, "IDLE"));
	ev_timer_again(p->ds->srv->loop, &p->refresh);
}

/*
 * While no connection of a session is attached, one parked connection also
 * watches the user's other subscribed folders with NOTIFY (RFC 5465) where
 * the store offers it: their changes arrive as STATUS and are counted per
 * folder against the views the client saved. The events themselves are
 * told when the client selects the folder again (from the view diff), so
 * nothing here can lose one; past limits.max_queued_events the folder's
 * view is dropped and the client gets the store's full state instead.
 */
static void parked_notify_done(struct store_conn *sc, const struct imap_msg *m, void *ctx)
{
	struct parked *p = ctx;
	(void)sc;
	p->notify_on = m->status == IMAP_STATUS_OK;
	if (!p->notify_on) {
		log_msg(LOG_LEVEL_WARN, NULL, "session %s#P%s: store refused NOTIFY: %.*s", p->ds->user, p->ds->device,
		        (int)m->text_len, m->text);
		if (p->ds->watcher == p)
			p->ds->watcher = NULL;
	} else {
		log_msg(LOG_LEVEL_DEBUG, NULL, "session %s#P%s: watching the subscribed folders (NOTIFY)", p->ds->user,
		        p->ds->device);
	}
	if (!p->taken)
		parked_start_idle(p);
}

/* Send NOTIFY SET if this connection is to carry it and does not yet; true if sent (IDLE follows it). */
static bool parked_maybe_notify(struct parked *p)
{
	if (!p->notify_wanted || p->notify_on || !p->sc || p->taken)
		return false;
	p->notify_wanted = false;
	store_conn_sendf(p->sc, parked_notify_done, p,
	                 "NOTIFY SET (selected (MessageNew MessageExpunge FlagChange)) "
	                 "(subscribed (MessageNew MessageExpunge))");
	return true;
}

/* The session has no attached connection: make one parked connection its watcher. */
static void session_arm_watch(struct device_session *ds)
{
	if (ds->attached || ds->watcher)
		return;
	for (struct parked *p = ds->parked; p; p = p->next) {
		if (!p->sc || p->close_after_snapshot || !store_conn_has_cap(p->sc, "NOTIFY"))
			continue;
		ds->watcher = p;
		p->notify_wanted = true;
		if (p->idling)
			store_conn_send_raw(p->sc, "DONE\r\n", 6); /* parked_idle_done sends NOTIFY, then IDLEs */
		/* else the snapshot in progress ends in parked_maybe_notify */
		return;
	}
}

static struct folder_watch *watch_find(struct device_session *ds, const char *mailbox)
{
	for (struct folder_watch *w = ds->watches; w; w = w->next)
		if (strcmp(w->mailbox, mailbox) == 0)
			return w;
	struct folder_watch *w = xcalloc(1, sizeof(*w));
	w->mailbox = xstrdup(mailbox);
	struct gw_folder_rec rec;
	gw_folder_rec_init(&rec);
	if (gw_state_folder_load(ds->srv->db, ds->user, ds->device, mailbox, &rec) == 0) {
		w->have_base = true;
		w->uidvalidity = rec.uidvalidity;
		w->uidnext0 = rec.uidnext;
		w->count0 = (uint32_t)rec.uids.count;
	}
	gw_folder_rec_free(&rec);
	w->next = ds->watches;
	ds->watches = w;
	return w;
}

/* "* STATUS <mailbox> (MESSAGES n UIDNEXT u UIDVALIDITY v ...)" from NOTIFY. */
static void watch_status(struct parked *p, const struct imap_msg *m)
{
	struct device_session *ds = p->ds;
	if (m->nargs < 3 || !imap_arg_is_string(&m->args[1]) || m->args[2].type != IMAP_ARG_LIST)
		return;
	char *mailbox = arg_dup(&m->args[1]);
	if (strcasecmp(mailbox, "INBOX") == 0)
		strcpy(mailbox, "INBOX");
	bool parked_here = false;
	for (struct parked *q = ds->parked; q; q = q->next)
		parked_here = parked_here || (q->sel.mailbox && strcmp(q->sel.mailbox, mailbox) == 0);
	uint32_t messages = 0, uidnext = 0, uidvalidity = 0;
	bool have_messages = false, have_uidnext = false;
	const struct imap_arg *l = m->args[2].list;
	for (size_t i = 0; i + 1 < m->args[2].list_count; i += 2) {
		if (imap_arg_is_atom(&l[i], "MESSAGES"))
			have_messages = imap_parse_u32(l[i + 1].str, l[i + 1].len, &messages);
		else if (imap_arg_is_atom(&l[i], "UIDNEXT"))
			have_uidnext = imap_parse_u32(l[i + 1].str, l[i + 1].len, &uidnext);
		else if (imap_arg_is_atom(&l[i], "UIDVALIDITY"))
			imap_parse_u32(l[i + 1].str, l[i + 1].len, &uidvalidity);
	}
	struct folder_watch *w = parked_here ? NULL : watch_find(ds, mailbox);
	if (!w || !w->have_base || w->overflow || !have_messages || !have_uidnext) {
		free(mailbox);
		return;
	}
	/* At least this many events: each new UID arrived once, and whatever the
	 * count lacks after those arrivals was expunged. */
	long long added = uidnext > w->uidnext0 ? (long long)uidnext - w->uidnext0 : 0;
	long long removed = (long long)w->count0 + added - (long long)messages;
	long long was_pending = w->pending;
	w->pending = added + (removed > 0 ? removed : 0);
	if (w->pending > was_pending)
		outband_on_event(ds, mailbox, added > 0 ? OB_NEW_MESSAGE : OB_DELETED_MESSAGE, NULL);
	bool lost = (uidvalidity && uidvalidity != w->uidvalidity) || w->pending > ds->srv->cfg->max_queued_events;
	log_msg(LOG_LEVEL_DEBUG, NULL, "session %s#P%s: %lld events pending in %s", ds->user, ds->device, w->pending,
	        mailbox);
	if (lost) {
		w->overflow = true;
		/* The events of this folder can no longer be told one by one: the client
		 * gets the store's own SELECT response, a full state, when it comes back. */
		gw_state_folder_delete(ds->srv->db, ds->user, ds->device, mailbox);
		log_msg(LOG_LEVEL_INFO, NULL,
		        "session %s#P%s: more than %lld events pending in %s (limits.max_queued_events): its view is "
		        "dropped", ds->user, ds->device, ds->srv->cfg->max_queued_events, mailbox);
	}
	free(mailbox);
}

static void parked_idle_done(struct store_conn *sc, const struct imap_msg *m, void *ctx)
{
	struct parked *p = ctx;
	(void)sc;
	(void)m;
	p->idling = false;
	p->idle_tag[0] = '\0';
	if (!p->taken && !parked_maybe_notify(p))
		parked_start_idle(p); /* a refresh: IDLE again at once */
}

static void parked_count_event(struct parked *p, const struct imap_msg *m)
{
	uint32_t n;
	bool event = imap_untagged_num(m, "EXISTS", &n) || imap_untagged_num(m, "EXPUNGE", &n) ||
	             (m->kind == IMAP_MSG_UNTAGGED && m->nargs >= 2 && imap_arg_is_atom(&m->args[1], "FETCH"));
	if (!event)
		return;
	folder_state_track(&p->sel, m);
	p->events++;
	if (!view_parked_new_mail(p, m))
		outband_on_event(p->ds, p->sel.mailbox, outband_event_of(m), m);
	if (p->events > p->ds->srv->cfg->max_queued_events && !p->overflow) {
		p->overflow = true;
		log_msg(LOG_LEVEL_INFO, NULL, "session %s#P%s: more than %lld events queued for %s: RESYNC on resume",
		        p->ds->user, p->ds->device, p->ds->srv->cfg->max_queued_events, p->sel.mailbox);
	}
}

static void parked_untagged(struct store_conn *sc, const struct imap_msg *m, void *ctx)
{
	struct parked *p = ctx;
	(void)sc;
	if (snapshot_offer(p->snap, m) || view_parked_untagged(p, m))
		return;
	if (m->kind == IMAP_MSG_UNTAGGED && m->nargs >= 1 && imap_arg_is_atom(&m->args[0], "STATUS")) {
		watch_status(p, m);
		return;
	}
	parked_count_event(p, m);
}

static void parked_continuation(struct store_conn *sc, const struct imap_msg *m, void *ctx)
{
	struct parked *p = ctx;
	(void)m;
	if (p->await_plus) {
		/* The client's IDLE had just been sent when it went away: end it, then take the view. */
		p->await_plus = false;
		store_conn_send_raw(sc, "DONE\r\n", 6);
		if (p->view_trusted)
			parked_take_view(p);
		else
			parked_skip_view(p);
	}
	/* otherwise the "+" of the parked connection's own IDLE: nothing to do */
}

static void parked_closed(struct store_conn *sc, const char *reason, void *ctx)
{
	struct parked *p = ctx;
	(void)sc;
	log_msg(LOG_LEVEL_INFO, NULL, "session %s#P%s: parked store connection lost (%s)", p->ds->user, p->ds->device,
	        reason);
	p->sc = NULL;
	struct device_session *ds = p->ds;
	parked_unlink(p);
	parked_free(p);
	if (ds->parked)
		session_arm_watch(ds);
	else
		session_maybe_forget(ds);
}

static void on_parked_refresh(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct parked *p = (struct parked *)((char *)w - offsetof(struct parked, refresh));
	(void)loop;
	(void)revents;
	/* RFC 2177: re-issue IDLE well within 29 minutes so no middlebox drops the connection. */
	if (p->sc && p->idling)
		store_conn_send_raw(p->sc, "DONE\r\n", 6);
}

static void parked_snapshot_done(struct snapshot *sn, bool ok, void *ctx)
{
	struct parked *p = ctx;
	struct device_session *ds = p->ds;
	if (ok) {
		folder_rec_from_snapshot(&p->view, &p->sel, sn);
		p->have_view = true;
		gw_state_folder_save(ds->srv->db, ds->user, ds->device, p->sel.mailbox, &p->view);
	} else {
		gw_state_folder_delete(ds->srv->db, ds->user, ds->device, p->sel.mailbox);
	}
	snapshot_free(sn);
	p->snap = NULL;
	if (p->close_after_snapshot) {
		parked_unlink(p);
		parked_free(p);
		session_maybe_forget(ds);
		return;
	}
	if (!parked_maybe_notify(p))
		parked_start_idle(p);
	session_arm_watch(ds);
}

/* ------------------------------------------------------------------------ */
/* client output                                                             */

static void conn_close(struct gw_conn *c, const char *why);
static void process_client_input(struct gw_conn *c);
static void process_client_input_loop(struct gw_conn *c);
static void store_idle_update(struct gw_conn *c);
static void complete_ready_commands(struct gw_conn *c);
/* view filters (defined in their section below) */
static void view_before_reply(struct gw_conn *c, struct client_cmd *cmd);
static bool view_untagged(struct gw_conn *c, const struct imap_msg *m);
static void view_push(struct gw_conn *c);
static bool view_select_done(struct gw_conn *c, struct client_cmd *cmd, const struct imap_msg *m);
static void view_maybe_retire(struct gw_conn *c);
static bool view_reply_waits(struct gw_conn *c, struct client_cmd *cmd);
static bool view_select_start(struct gw_conn *c, struct client_cmd *cmd, const struct imap_msg *m,
                              const struct gw_folder_rec *saved);
static const char *view_leaving_folder(const struct gw_conn *c);
static void view_counter_login(struct gw_conn *c, const char *password);
static bool view_status_push(struct gw_conn *c, const struct imap_msg *m);
static void view_detach(struct gw_conn *c, struct device_session *ds);

static void client_write(struct gw_conn *c, const void *data, size_t len)
{
	if (c->closing || !c->client)
		return;
	if (c->capture) {
		/* XZIP answers in one literal: past limits.max_output_queue the rest is
		 * dropped and the XZIP fails, rather than holding a mailbox in memory. */
		if (buf_len(c->capture) + len > c->srv->cfg->max_output_queue)
			c->capture_overflow = true;
		if (!c->capture_overflow)
			buf_append(c->capture, data, len);
		return;
	}
	log_trace_imap(c->prefix, TRACE_CLIENT_OUT, data, len, false);
	stream_write(c->client, data, len);
}

static void client_say(struct gw_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void client_say(struct gw_conn *c, const char *fmt, ...)
{
	struct buf b;
	buf_init(&b, 0);
	va_list ap;
	va_start(ap, fmt);
	char small[1024];
	int n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof(small))
		n = sizeof(small) - 1;
	buf_append(&b, small, (size_t)n);
	buf_append(&b, "\r\n", 2);
	client_write(c, buf_head(&b), buf_len(&b));
	buf_free(&b);
}

static void client_flush(struct gw_conn *c)
{
	if (c->client && !c->closing)
		stream_flush(c->client);
}

static void release_held(struct gw_conn *c)
{
	if (!buf_len(&c->held))
		return;
	client_write(c, buf_head(&c->held), buf_len(&c->held));
	buf_clear(&c->held);
	c->nheld = 0;
}

/* Capabilities for this client, now. */
static void client_caps(struct gw_conn *c, struct buf *out)
{
	const struct gateway_config *cfg = c->srv->cfg;
	bool plain_leg = !stream_is_tls(c->client) && !c->outer_tls;
	buf_append_str(out, "IMAP4rev1");
	if (c->state != C_AUTHED) {
		buf_append_str(out, " LITERAL+ SASL-IR ID ENABLE IDLE");
		bool login_ok = !plain_leg || cfg->plaintext_login == PLAINTEXT_LOGIN_ALWAYS ||
		                (cfg->plaintext_login == PLAINTEXT_LOGIN_LOOPBACK && c->loopback);
		if (plain_leg)
			buf_append_str(out, " STARTTLS");
		buf_append_str(out, login_ok ? " AUTH=PLAIN" : " LOGINDISABLED");
		buf_append_str(out, c->outer_tls ? " XPIMAPv1 XPIMAPPREF XFILTER XPROVISION XZIP"
		                                 : " XPIMAPv1 XPIMAPPREF XFILTER XPROVISION XZIP COMPRESS=DEFLATE");
		if (c->srv->deliver)
			buf_append_str(out, " XDELIVER");
		return;
	}
	/* After login: the store's list minus what does not survive the gateway. */
	/* Entries ending in '=' drop a whole family (COMPRESS=DEFLATE, AUTH=PLAIN, ...). */
	static const char *const dropped[] = {"IMAP4rev1", "STARTTLS", "LOGINDISABLED", "SASL-IR", "LOGIN-REFERRALS",
	                                      "COMPRESS=", "AUTH=", "XPIMAPv1", "XPIMAPPREF", "XZIP", "XPROVISION",
	                                      "XDELIVER", "XFILTER", NULL};
	static const char *const dropped_pimap[] = {"NOTIFY", "QRESYNC", NULL};
	const char *p = c->sc ? store_conn_caps(c->sc) : "";
	while (*p) {
		while (*p == ' ')
			p++;
		const char *e = p;
		while (*e && *e != ' ')
			e++;
		size_t n = (size_t)(e - p);
		bool drop = n == 0;
		for (const char *const *d = dropped; !drop && *d; d++) {
			size_t dl = strlen(*d);
			drop = (*d)[dl - 1] == '=' ? (n >= dl && strncasecmp(p, *d, dl) == 0)
			                           : (n == dl && strncasecmp(p, *d, dl) == 0);
		}
		for (const char *const *d = dropped_pimap; c->ds && !drop && *d; d++)
			drop = n == strlen(*d) && strncasecmp(p, *d, n) == 0;
		/* LIST-STATUS would count filtered folders whole (STATUS is answered in view terms) */
		if (c->ds && !drop && xfilter_set_has_views(&c->ds->filters))
			drop = n == 11 && strncasecmp(p, "LIST-STATUS", n) == 0;
		if (!drop) {
			buf_append(out, " ", 1);
			buf_append(out, p, n);
		}
		p = e;
	}
	/* Over HTTPS, Content-Encoding compresses (http_binding.c). */
	buf_append_str(out, c->outer_tls ? " XPIMAPv1 XPROVISION XZIP" : " XPIMAPv1 XPROVISION XZIP COMPRESS=DEFLATE");
	if (c->ds)
		buf_append_str(out, " XPIMAPPREF XFILTER");
	if (c->srv->deliver)
		buf_append_str(out, " XDELIVER");
}

static void greet(struct gw_conn *c)
{
	if (c->greeted || !c->tls_ready)
		return;
	c->greeted = true;
	struct buf caps;
	buf_init(&caps, 0);
	client_caps(c, &caps);
	buf_append(&caps, "", 1);
	client_say(c, "* OK [CAPABILITY %s] pimap-gateway ready.", (const char *)buf_head(&caps));
	buf_free(&caps);
	client_flush(c);
}

/* ------------------------------------------------------------------------ */
/* command bookkeeping                                                       */

static struct client_cmd *cmd_push(struct gw_conn *c, enum cmd_kind kind, const char *tag)
{
	struct client_cmd *cmd = xcalloc(1, sizeof(*cmd));
	cmd->conn = c;
	cmd->kind = kind;
	snprintf(cmd->tag, sizeof(cmd->tag), "%s", tag);
	buf_init(&cmd->reply, 0);
	buf_init(&cmd->sel_raw, 0);
	buf_init(&cmd->sel_rewritten, 0);
	if (c->cmds_tail)
		c->cmds_tail->next = cmd;
	else
		c->cmds = cmd;
	c->cmds_tail = cmd;
	c->ncmds++;
	return cmd;
}

static void cmd_free(struct client_cmd *cmd)
{
	gw_deliver_detach(cmd->job);
	if (cmd->saved) {
		gw_folder_rec_free(cmd->saved);
		free(cmd->saved);
	}
	buf_free(&cmd->sel_raw);
	buf_free(&cmd->sel_rewritten);
	buf_free(&cmd->reply);
	free(cmd->mailbox);
	free(cmd);
}

/* Commands complete to the client in the order they were sent (a tagged
 * reply never overtakes an earlier command's untagged data). */
/* Send what an XZIP's inner command produced as one DEFLATE literal8. */
static void xzip_emit(struct gw_conn *c, const char *outer_tag)
{
	struct buf *cap = c->capture;
	c->capture = NULL; /* from here on, output goes to the client again */
	struct buf out;
	buf_init(&out, 0);
	if (c->capture_overflow) {
		c->capture_overflow = false;
		client_say(c, "%s NO [TOOBIG] XZIP output over limits.max_output_queue (%zu bytes)", outer_tag,
		           c->srv->cfg->max_output_queue);
	} else if (zio_deflate_complete(buf_head(cap), buf_len(cap), -1, &out) == 0) {
		client_say(c, "* XZIP ~{%zu}", buf_len(&out));
		client_write(c, buf_head(&out), buf_len(&out));
		client_say(c, "%s", "");
		client_say(c, "%s OK XZIP completed", outer_tag);
	} else {
		client_say(c, "%s NO [SERVERBUG] XZIP compression failed", outer_tag);
	}
	buf_free(&out);
	buf_free(cap);
	free(cap);
}

static void complete_ready_commands(struct gw_conn *c)
{
	bool wrote = false;
	while (c->cmds && c->cmds->done && !view_reply_waits(c, c->cmds)) {
		struct client_cmd *cmd = c->cmds;
		c->cmds = cmd->next;
		if (!c->cmds)
			c->cmds_tail = NULL;
		c->ncmds--;
		release_held(c); /* polled events go out with the response to a command */
		view_before_reply(c, cmd);
		client_write(c, buf_head(&cmd->reply), buf_len(&cmd->reply));
		if (cmd->xzip && c->capture) {
			/* The inner command is complete: compress what it produced. */
			xzip_emit(c, cmd->outer_tag);
		}
		cmd_free(cmd);
		wrote = true;
	}
	if (wrote)
		client_flush(c);
	if (c->logout_done && !c->closing) {
		conn_close(c, "logout");
		return;
	}
	if (!c->closing && c->state == C_AUTHED) {
		view_push(c);
		store_idle_update(c);
		process_client_input(c);
	}
}

static void cmd_finish_local(struct gw_conn *c, struct client_cmd *cmd, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void cmd_finish_local(struct gw_conn *c, struct client_cmd *cmd, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	buf_printf(&cmd->reply, "%s %s\r\n", cmd->tag, line);
	cmd->done = true;
	complete_ready_commands(c);
}

/* Answer a command at once, in order: queued behind commands still in flight. */
static void answer(struct gw_conn *c, const char *tag, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void answer(struct gw_conn *c, const char *tag, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	struct client_cmd *cmd = cmd_push(c, CMD_LOCAL, tag);
	buf_printf(&cmd->reply, "%s %s\r\n", tag, line);
	cmd->done = true;
	complete_ready_commands(c);
}

static bool relay_in_flight(const struct gw_conn *c)
{
	for (const struct client_cmd *cmd = c->cmds; cmd; cmd = cmd->next)
		if (cmd->kind != CMD_IDLE && !cmd->done)
			return true;
	return false;
}

/* ------------------------------------------------------------------------ */
/* sending to the store around the gateway's own IDLE                        */

static void store_idle_done(struct store_conn *sc, const struct imap_msg *m, void *ctx);

static void flush_sendq(struct gw_conn *c)
{
	while (c->sendq && c->sc) {
		struct queued_send *q = c->sendq;
		c->sendq = q->next;
		if (!c->sendq)
			c->sendq_tail = NULL;
		const char *tag = store_conn_send(c->sc, buf_head(&q->text), buf_len(&q->text), false, q->done, q->ctx);
		if (q->tag_out)
			snprintf(q->tag_out, 16, "%s", tag);
		buf_free(&q->text);
		free(q);
	}
}

/* Send now, or after the store's IDLE has ended; tag_out (16 bytes) gets the tag once sent. */
static void store_send_tagged(struct gw_conn *c, struct buf *text, store_done_cb done, void *ctx, char *tag_out)
{
	if (c->sidle == SI_NONE && !c->sendq) {
		const char *tag = store_conn_send(c->sc, buf_head(text), buf_len(text), false, done, ctx);
		if (tag_out)
			snprintf(tag_out, 16, "%s", tag);
		return;
	}
	struct queued_send *q = xcalloc(1, sizeof(*q));
	buf_init(&q->text, 0);
	buf_append(&q->text, buf_head(text), buf_len(text));
	q->done = done;
	q->ctx = ctx;
	q->tag_out = tag_out;
	if (c->sendq_tail)
		c->sendq_tail->next = q;
	else
		c->sendq = q;
	c->sendq_tail = q;
	store_idle_update(c);
}

static void store_send(struct gw_conn *c, struct buf *text, store_done_cb done, void *ctx)
{
	store_send_tagged(c, text, done, ctx, NULL);
}

/* A snapshot on an attached connection: through the send queue, so it waits for IDLE to end. */
static struct snapshot *snapshot_start_conn(struct gw_conn *c, snapshot_done_cb done, void *ctx)
{
	if (snapshot_needs_flags(c->sc) && (relay_in_flight(c) || c->sendq))
		return NULL; /* untagged FETCH answers could not be told apart */
	struct snapshot *sn = snapshot_new(c->sc, done, ctx);
	struct buf b;
	buf_init(&b, 0);
	buf_printf(&b, "%s\r\n", snapshot_command(sn));
	store_send_tagged(c, &b, snapshot_cmd_done, sn, sn->tag);
	buf_free(&b);
	return sn;
}

static void store_sendf(struct gw_conn *c, store_done_cb done, void *ctx, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void store_sendf(struct gw_conn *c, store_done_cb done, void *ctx, const char *fmt, ...)
{
	char line[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	struct buf b;
	buf_init(&b, 0);
	buf_printf(&b, "%s\r\n", line);
	store_send(c, &b, done, ctx);
	buf_free(&b);
}

static bool pref_is(const struct gw_conn *c, enum pimap_pref_id id, const char *value)
{
	return c->ds && strcasecmp(c->ds->prefs.value[id], value) == 0;
}

/* The client waits for events: in IDLE, or with PIMAP_INBAND_PUSH ON in a selected folder. */
static bool client_waiting(const struct gw_conn *c)
{
	if (c->idle_cmd && !c->idle_done_pending)
		return true;
	/* An in-response session learns of new mail between requests as if PUSH
	 * were ON; the binding keeps the events for the next response. */
	return c->sel.mailbox && (pref_is(c, PIMAP_PREF_INBAND_PUSH, "ON") || c->in_response) && !relay_in_flight(c);
}

/*
 * Decide whether the store connection should be in IDLE: only when the
 * client waits for events and nothing else needs the connection.
 */
static void store_idle_update(struct gw_conn *c)
{
	if (!c->sc || c->state != C_AUTHED)
		return;
	bool want = client_waiting(c) && !c->sendq && store_conn_in_flight(c->sc) == 0 && !c->serial &&
	            !c->newfetch_active && !c->store_no_idle;
	if (want && c->sidle == SI_NONE) {
		c->sidle = SI_STARTING;
		c->sidle_done_wanted = false;
		store_conn_sendf(c->sc, store_idle_done, c, "IDLE");
		return;
	}
	if (!want && c->sidle == SI_ACTIVE) {
		c->sidle = SI_ENDING;
		store_conn_send_raw(c->sc, "DONE\r\n", 6);
		return;
	}
	if (!want && c->sidle == SI_STARTING)
		c->sidle_done_wanted = true;
}

static void finish_client_idle(struct gw_conn *c)
{
	if (!c->idle_cmd || !c->idle_done_pending || c->sidle != SI_NONE || c->newfetch_active)
		return;
	struct client_cmd *cmd = c->idle_cmd;
	c->idle_cmd = NULL;
	c->idle_done_pending = false;
	if (c->idle_bad)
		buf_printf(&cmd->reply, "%s BAD Expected DONE.\r\n", cmd->tag);
	else
		buf_printf(&cmd->reply, "%s OK Idle completed.\r\n", cmd->tag);
	c->idle_bad = false;
	cmd->done = true;
	complete_ready_commands(c);
}

static void store_idle_done(struct store_conn *sc, const struct imap_msg *m, void *ctx)
{
	struct gw_conn *c = ctx;
	(void)sc;
	bool started = c->sidle == SI_ACTIVE || c->sidle == SI_ENDING;
	c->sidle = SI_NONE;
	c->sidle_started_ok = started;
	if (m->status != IMAP_STATUS_OK && c->sidle_started_ok == false) {
		clog_(c, LOG_LEVEL_WARN, "store refused IDLE: %.*s", (int)m->text_len, m->text);
		c->store_no_idle = true;
	}
	flush_sendq(c);
	finish_client_idle(c);
	store_idle_update(c);
}

/* ------------------------------------------------------------------------ */
/* events                                                                    */

enum event_class { EVC_NONE, EVC_NEW, EVC_OTHER };

static enum event_class classify(const struct imap_msg *m)
{
	uint32_t n;
	if (imap_untagged_num(m, "EXISTS", &n) || imap_untagged_num(m, "RECENT", &n))
		return EVC_NEW;
	if (imap_untagged_num(m, "EXPUNGE", &n))
		return EVC_OTHER;
	if (m->kind == IMAP_MSG_UNTAGGED && m->nargs >= 2 && imap_arg_is_atom(&m->args[1], "FETCH"))
		return EVC_OTHER;
	return EVC_NONE;
}

static bool event_filter_allows(const struct gw_conn *c, enum event_class ec)
{
	if (!c->ds)
		return true;
	const char *f = c->ds->prefs.value[PIMAP_PREF_EVENT_FILTER];
	if (strcasecmp(f, "NONE") == 0)
		return false;
	if (strcasecmp(f, "NEW") == 0)
		return ec == EVC_NEW;
	return true;
}

static void newfetch_done(struct store_conn *sc, const struct imap_msg *m, void *ctx)
{
	struct gw_conn *c = ctx;
	(void)sc;
	(void)m;
	c->newfetch_active = false;
	client_flush(c);
	finish_client_idle(c);
	view_push(c);
	store_idle_update(c);
}

static void hold_event(struct gw_conn *c, const struct imap_msg *m)
{
	buf_append(&c->held, m->raw, m->raw_len);
	c->nheld++;
	clog_(c, LOG_LEVEL_DEBUG, "held event (%lld held)", c->nheld);
	/* Held events are bounded: past the limit they are delivered rather than dropped. */
	if (c->nheld >= c->srv->cfg->max_queued_events) {
		release_held(c);
		client_flush(c);
	}
}

/* An untagged response that no command of the client asked for. */
static void handle_event(struct gw_conn *c, const struct imap_msg *m, uint32_t before)
{
	enum event_class ec = classify(m);
	uint32_t n = 0;
	if (c->quiet && c->ds) /* in-response, no request open: the device may want a wake-up */
		outband_on_event(c->ds, c->sel.mailbox, outband_event_of(m), m);
	if (ec == EVC_NONE) {
		/* Other untagged data (OK [HIGHESTMODSEQ], "Still here"): pass on in order. */
		if (m->status == IMAP_STATUS_OK && m->code == NULL && c->idle_cmd)
			return; /* the store's IDLE keep-alives are the gateway's business */
		if (buf_len(&c->held))
			buf_append(&c->held, m->raw, m->raw_len);
		else
			client_write(c, m->raw, m->raw_len);
		client_flush(c);
		return;
	}
	bool push = client_waiting(c) && event_filter_allows(c, ec);
	if (c->newfetch_active && m->nargs >= 2 && imap_arg_is_atom(&m->args[1], "FETCH") &&
	    imap_parse_u32(m->args[0].str, m->args[0].len, &n) && n >= c->newfetch_from) {
		/* The pushed new-message FETCH of PIMAP_INBAND_NEW_FORMAT. */
		release_held(c);
		client_write(c, m->raw, m->raw_len);
		client_flush(c);
		return;
	}
	if (!push) {
		hold_event(c, m);
		return;
	}
	struct buf items;
	buf_init(&items, 0);
	if (ec == EVC_NEW && c->ds && pimap_new_format_fetch_items(&c->ds->prefs, &items)) {
		if (imap_untagged_num(m, "EXISTS", &n) && n > before) {
			/* Push a FETCH of the new messages instead of EXISTS. */
			buf_append(&items, "", 1);
			c->newfetch_active = true;
			c->newfetch_from = before + 1;
			store_sendf(c, newfetch_done, c, "FETCH %u:%u %s", before + 1, n, (const char *)buf_head(&items));
		}
		/* RECENT, and EXISTS that adds nothing, say nothing a NEW_FORMAT client needs. */
		buf_free(&items);
		return;
	}
	buf_free(&items);
	release_held(c);
	if (imap_untagged_num(m, "EXPUNGE", &n))
		clog_(c, LOG_LEVEL_DEBUG, "pushed * %u EXPUNGE", n);
	client_write(c, m->raw, m->raw_len);
	client_flush(c);
}

/* ------------------------------------------------------------------------ */
/* returning to a folder with a saved view                                   */

/*
 * Keep the store's SELECT response twice: as it came, and rewritten to
 * describe the view the client saved (EXISTS, UIDNEXT, HIGHESTMODSEQ as they
 * were; RECENT and UNSEEN, which name current messages, left out). Which
 * one the client gets is decided at the tagged OK, once UIDVALIDITY is known.
 */
static void select_hold_response(struct client_cmd *cmd, const struct imap_msg *m)
{
	const struct gw_folder_rec *sv = cmd->saved;
	uint32_t n;
	const char *v;
	size_t vl;
	buf_append(&cmd->sel_raw, m->raw, m->raw_len);
	if (imap_untagged_num(m, "EXISTS", &n)) {
		buf_printf(&cmd->sel_rewritten, "* %zu EXISTS\r\n", sv->uids.count);
		return;
	}
	if (imap_untagged_num(m, "RECENT", &n)) {
		buf_append_str(&cmd->sel_rewritten, "* 0 RECENT\r\n");
		return;
	}
	if (m->kind == IMAP_MSG_UNTAGGED && m->status == IMAP_STATUS_OK) {
		if (imap_code_value(m, "UNSEEN", &v, &vl))
			return;
		if (imap_code_value(m, "UIDNEXT", &v, &vl)) {
			buf_printf(&cmd->sel_rewritten, "* OK [UIDNEXT %u] Predicted next UID\r\n", sv->uidnext);
			return;
		}
		if (imap_code_value(m, "HIGHESTMODSEQ", &v, &vl) && sv->highestmodseq) {
			buf_printf(&cmd->sel_rewritten, "* OK [HIGHESTMODSEQ %llu] Highest\r\n",
			           (unsigned long long)sv->highestmodseq);
			return;
		}
	}
	buf_append(&cmd->sel_rewritten, m->raw, m->raw_len);
}

static void select_catchup_done(struct catchup *cu, bool resync, struct buf *events, void *ctx)
{
	struct client_cmd *cmd = ctx;
	struct gw_conn *c = cmd->conn;
	c->cu = NULL;
	c->serial = false;
	if (resync) {
		/* The events cannot be told: give the store's own SELECT response (a fresh start). */
		client_write(c, buf_head(&cmd->sel_raw), buf_len(&cmd->sel_raw));
		clog_(c, LOG_LEVEL_DEBUG, "return to %s: saved view unusable, plain SELECT", c->sel.mailbox);
	} else {
		client_write(c, buf_head(&cmd->sel_rewritten), buf_len(&cmd->sel_rewritten));
		client_write(c, buf_head(events), buf_len(events));
		clog_(c, LOG_LEVEL_DEBUG, "return to %s: %zu events", c->sel.mailbox, cu->diff.count);
	}
	catchup_free(cu);
	if (c->ds)
		gw_state_folder_delete(c->srv->db, c->ds->user, c->ds->device, c->sel.mailbox);
	cmd->done = true;
	complete_ready_commands(c);
}

/* ------------------------------------------------------------------------ */
/* store callbacks for an attached connection                                */

/*
 * "* ESEARCH (TAG "G12") ..." names the command by the tag it has at the
 * store (RFC 4731): the client must see its own tag there. Writes the
 * rewritten response and returns true when m is such a response.
 */
static bool esearch_retagged(struct gw_conn *c, const struct imap_msg *m)
{
	if (m->nargs < 2 || !imap_arg_is_atom(&m->args[0], "ESEARCH") || m->args[1].type != IMAP_ARG_LIST ||
	    m->args[1].list_count != 2 || !imap_arg_is_atom(&m->args[1].list[0], "TAG") ||
	    !imap_arg_is_string(&m->args[1].list[1]))
		return false;
	const struct imap_arg *t = &m->args[1].list[1];
	for (const struct client_cmd *cmd = c->cmds; cmd; cmd = cmd->next) {
		if (!cmd->store_tag[0] || strlen(cmd->store_tag) != t->len || memcmp(cmd->store_tag, t->str, t->len) != 0)
			continue;
		/* the store wrote the tag as a quoted string: "(TAG \"G12\")" */
		char old[32];
		int olen = snprintf(old, sizeof(old), "\"%s\")", cmd->store_tag);
		const uint8_t *at = memmem(m->raw, m->raw_len, old, (size_t)olen);
		if (!at)
			return false;
		struct buf out;
		buf_init(&out, 0);
		buf_append(&out, m->raw, (size_t)(at - m->raw));
		/* a tag-string is a string; a tag holds no quoted-specials (RFC 3501) */
		buf_printf(&out, "\"%s\")", cmd->tag);
		size_t done = (size_t)(at - m->raw) + (size_t)olen;
		buf_append(&out, m->raw + done, m->raw_len - done);
		client_write(c, buf_head(&out), buf_len(&out));
		buf_free(&out);
		return true;
	}
	return false;
}

static void conn_store_untagged(struct store_conn *sc, const struct imap_msg *m, void *ctx)
{
	struct gw_conn *c = ctx;
	(void)sc;
	uint32_t before = c->sel.exists;
	/* Every response moves the client's picture of the folder, whoever consumes it. */
	folder_state_track(&c->sel, m);
	if (snapshot_offer(c->snap, m))
		return;
	if (catchup_offer(c->cu, m))
		return;
	if ((c->view || c->view_old) && view_untagged(c, m))
		return;
	if (view_status_push(c, m))
		return;
	if (c->state != C_AUTHED)
		return; /* during login/resume: nothing for the client yet */
	if (c->select_hold) {
		select_hold_response(c->select_hold, m);
	} else if (relay_in_flight(c)) {
		/* Data for a command of the client, or an event it will see with the reply. */
		release_held(c);
		if (!esearch_retagged(c, m))
			client_write(c, m->raw, m->raw_len);
	} else {
		handle_event(c, m, before);
	}
	if (c->client && stream_output_full(c->client) && c->sc)
		store_conn_pause_reading(c->sc, true);
}

static void conn_store_continuation(struct store_conn *sc, const struct imap_msg *m, void *ctx)
{
	struct gw_conn *c = ctx;
	(void)sc;
	(void)m;
	if (c->sidle == SI_STARTING) {
		c->sidle = SI_ACTIVE;
		if (c->sidle_done_wanted) {
			c->sidle = SI_ENDING;
			store_conn_send_raw(c->sc, "DONE\r\n", 6);
		}
		return;
	}
	/* Commands are sent with LITERAL+; any other "+" is unexpected and ignored. */
}

static void conn_store_closed(struct store_conn *sc, const char *reason, void *ctx)
{
	struct gw_conn *c = ctx;
	(void)sc;
	c->sc = NULL;
	char why[600];
	snprintf(why, sizeof(why), "store connection lost: %s", reason);
	if (c->client && !c->closing) {
		client_say(c, "* BYE [UNAVAILABLE] %s", reason);
		client_flush(c);
	}
	conn_close(c, why);
}

static void conn_store_drained(struct store_conn *sc, void *ctx)
{
	struct gw_conn *c = ctx;
	(void)sc;
	if (c->client)
		stream_pause_reading(c->client, false);
}

static void conn_store_login_done(struct store_conn *sc, enum store_login_result r, const char *text, void *ctx);

static const struct store_conn_ops conn_store_ops = {
	.login_done = conn_store_login_done,
	.untagged = conn_store_untagged,
	.continuation = conn_store_continuation,
	.closed = conn_store_closed,
	.drained = conn_store_drained,
};

/* ------------------------------------------------------------------------ */
/* relaying                                                                  */

static void relay_done(struct store_conn *sc, const struct imap_msg *m, void *ctx)
{
	struct client_cmd *cmd = ctx;
	struct gw_conn *c = cmd->conn;
	(void)sc;
	if (cmd->view_open && view_select_done(c, cmd, m))
		return;
	/* The store's tagged line with the client's tag. */
	size_t taglen = strlen(m->tag);
	buf_append_str(&cmd->reply, cmd->tag);
	buf_append(&cmd->reply, m->raw + taglen, m->raw_len - taglen);
	if (cmd->saved) {
		c->select_hold = NULL;
		bool ok = m->status == IMAP_STATUS_OK;
		if (ok) {
			free(c->sel.mailbox);
			c->sel.mailbox = cmd->mailbox;
			cmd->mailbox = NULL;
			c->sel.readonly = cmd->readonly || (m->code && strncasecmp(m->code, "READ-ONLY", 9) == 0);
		} else {
			folder_state_clear(&c->sel);
		}
		if (ok && c->sel.uidvalidity == cmd->saved->uidvalidity) {
			struct catchup *cu = catchup_start(c->sc, cmd->saved, &c->ds->prefs, c->srv->cfg->max_queued_events,
			                                   select_catchup_done, cmd);
			c->cu = cu;
			if (cu->step != CU_DONE)
				return; /* c->serial stays set until the catch-up is done */
			c->cu = NULL;
			catchup_free(cu);
		}
		c->serial = false;
		client_write(c, buf_head(&cmd->sel_raw), buf_len(&cmd->sel_raw));
		if (ok && c->ds)
			gw_state_folder_delete(c->srv->db, c->ds->user, c->ds->device, c->sel.mailbox);
		cmd->done = true;
		complete_ready_commands(c);
		return;
	}
	if (cmd->kind == CMD_SELECT) {
		if (m->status == IMAP_STATUS_OK) {
			free(c->sel.mailbox);
			c->sel.mailbox = cmd->mailbox;
			cmd->mailbox = NULL;
			/* The client sees the folder as it is now: an older saved view must never be used again. */
			if (c->ds)
				gw_state_folder_delete(c->srv->db, c->ds->user, c->ds->device, c->sel.mailbox);
			c->sel.readonly = cmd->readonly || (m->code && strncasecmp(m->code, "READ-ONLY", 9) == 0);
		} else {
			folder_state_clear(&c->sel);
		}
	} else if (cmd->kind == CMD_UNSELECT && m->status == IMAP_STATUS_OK) {
		folder_state_clear(&c->sel);
	}
	cmd->done = true;
	complete_ready_commands(c);
	view_maybe_retire(c);
}

static void relay_command(struct gw_conn *c, const struct imap_msg *m, enum cmd_kind kind)
{
	struct client_cmd *cmd = cmd_push(c, kind, m->tag);
	/* Literals go as LITERAL+: a store without it would run their bytes as commands. */
	if (!store_conn_takes_literals(c->sc, m->args, m->nargs)) {
		cmd_finish_local(c, cmd, "NO [CANNOT] The store does not accept LITERAL+ literals");
		return;
	}
	struct buf text;
	buf_init(&text, 0);
	/* imap_write_retagged writes "<tag>..."; store_send adds our own tag, so strip the tag entirely. */
	if (imap_write_retagged(&text, "", m->raw, m->raw_len, strlen(m->tag)) < 0) {
		buf_free(&text);
		cmd_finish_local(c, cmd, "BAD Too many literals in one command");
		return;
	}
	/* text now starts with " COMMAND ..."; drop the leading space. */
	struct buf line;
	buf_init(&line, 0);
	buf_append(&line, buf_head(&text) + 1, buf_len(&text) - 1);
	buf_free(&text);
	if (kind == CMD_SELECT || kind == CMD_UNSELECT) {
		/* Held events belong to the folder being left: deliver them before leaving it. */
		release_held(c);
	}
	if (kind == CMD_SELECT) {
		cmd->mailbox = arg_dup(&m->args[1]);
		if (strcasecmp(cmd->mailbox, "INBOX") == 0)
			strcpy(cmd->mailbox, "INBOX"); /* INBOX is case-insensitive: one key for it */
		cmd->readonly = imap_arg_is_atom(&m->args[0], "EXAMINE");
		folder_state_clear(&c->sel);
		/* Returning to a folder whose view was saved: tell the client what changed since. */
		struct gw_folder_rec saved;
		gw_folder_rec_init(&saved);
		bool plain_params = m->nargs == 2; /* SELECT with CONDSTORE/QRESYNC parameters: the client syncs itself */
		/* Re-selecting the folder it is in: the client's view is the live one, not a saved one. */
		bool same_folder = (c->leave && c->leave->sel.mailbox && strcmp(c->leave->sel.mailbox, cmd->mailbox) == 0) ||
		                   (view_leaving_folder(c) && strcmp(view_leaving_folder(c), cmd->mailbox) == 0);
		bool have_saved = c->ds && plain_params && c->ncmds == 1 && !c->capture && !same_folder &&
		                  gw_state_folder_load(c->srv->db, c->ds->user, c->ds->device, cmd->mailbox, &saved) == 0;
		/* A filtered folder: the view engine answers the SELECT (and catches a saved view up). */
		if (view_select_start(c, cmd, m, have_saved ? &saved : NULL)) {
			gw_folder_rec_free(&saved);
			buf_free(&line);
			return;
		}
		if (have_saved) {
			cmd->saved = xmalloc(sizeof(*cmd->saved));
			*cmd->saved = saved;
			c->select_hold = cmd;
			c->serial = true;
		} else {
			gw_folder_rec_free(&saved);
		}
	}
	store_send_tagged(c, &line, relay_done, cmd, cmd->store_tag);
	buf_free(&line);
}


static void leave_snapshot_done(struct snapshot *sn, bool ok, void *ctx)
{
	struct leave_ctx *lc = ctx;
	struct gw_conn *c = lc->c;
	c->leave = NULL;
	if (c->ds && lc->sel.mailbox) {
		if (ok) {
			struct gw_folder_rec rec;
			folder_rec_from_snapshot(&rec, &lc->sel, sn);
			gw_state_folder_save(c->srv->db, c->ds->user, c->ds->device, lc->sel.mailbox, &rec);
			gw_folder_rec_free(&rec);
		} else {
			gw_state_folder_delete(c->srv->db, c->ds->user, c->ds->device, lc->sel.mailbox);
		}
	}
	c->snap = NULL;
	snapshot_free(sn);
	folder_state_clear(&lc->sel);
	/* A SELECT with a saved view may still be running its catch-up: input stays held until it ends. */
	c->serial = c->select_hold != NULL || c->cu != NULL;
	free(lc);
	if (!c->closing)
		process_client_input(c);
}

/* ------------------------------------------------------------------------ */
/* view filters (XFILTER): the host of a connection's vrelay                 */

/*
 * A folder with a view or notification filter is relayed through a vrelay
 * (vrelay.c), which does the protocol work; this section gives it the
 * connection: its sends go through the send queue (so they wait for the
 * store's IDLE to end), its rewritten events go through the ordinary event
 * path (push, hold, NEW_FORMAT), and its pending EXISTS/EXPUNGE are told
 * with the next reply, or pushed while the client waits (PIMAP_EVENT_FILTER
 * and the notification filter decide). An EXPUNGE is never told while a
 * command with the client's sequence numbers is in flight.
 *
 * A view being left (SELECT of another folder, CLOSE, UNSELECT) stays as
 * view_old until everything sent before the leaving command is answered;
 * then the client's UIDs as told are saved like any other saved view.
 */
struct gw_view {
	struct gw_conn *c;
	struct vrelay *vr;
	unsigned gen;
	struct folder_state sel;         /* view_old: the folder being left */
	struct client_cmd *select;       /* the SELECT being answered */
	struct client_cmd *leaving;      /* view_old: the command that leaves */
	bool resume;                     /* opened by a resume: resume_emit when open */
};

/* A command of a view in flight: its completion finds the view by generation. */
struct view_part {
	struct view_part *next;
	struct gw_conn *c;
	unsigned gen;
	uint32_t cookie;
};

static void resume_emit(struct gw_conn *c, bool selected, bool resync, struct buf *events);

static const char *view_value(const struct gw_conn *c, const char *mailbox, enum xfilter_which kind)
{
	return c->ds ? xfilter_set_get(&c->ds->filters, mailbox, kind) : XFILTER_ALL;
}

/* Does this folder get a view: a filter, and a store that allows one? */
static bool view_wanted(struct gw_conn *c, const char *mailbox)
{
	if (!c->ds || !c->sc || !mailbox)
		return false;
	if (xfilter_is_all(view_value(c, mailbox, XFILTER_VIEW)) && xfilter_is_all(view_value(c, mailbox, XFILTER_NOTIFY)))
		return false;
	char why[200];
	if (!vrelay_server_ok(store_conn_caps(c->sc), why, sizeof(why))) {
		clog_(c, LOG_LEVEL_WARN, "filters of %s not applied: %s", mailbox, why);
		return false;
	}
	return true;
}

static struct vrelay *view_vr(struct gw_conn *c, unsigned gen)
{
	if (c->view && c->view->gen == gen)
		return c->view->vr;
	if (c->view_old && c->view_old->gen == gen)
		return c->view_old->vr;
	return NULL;
}

static void vh_part_done(struct store_conn *sc, const struct imap_msg *m, void *ctx)
{
	struct view_part *vp = ctx;
	struct gw_conn *c = vp->c;
	(void)sc;
	for (struct view_part **pp = &c->view_parts; *pp; pp = &(*pp)->next)
		if (*pp == vp) {
			*pp = vp->next;
			break;
		}
	struct vrelay *vr = view_vr(c, vp->gen);
	uint32_t cookie = vp->cookie;
	free(vp);
	if (vr)
		vrelay_done(vr, cookie, m);
	if (c->closing)
		return;
	view_maybe_retire(c);
	store_idle_update(c); /* the store may IDLE again once the view's searches are answered */
}

static void vh_send(void *ctx, const uint8_t *text, size_t len, uint32_t cookie, char *tag_out)
{
	struct gw_view *v = ctx;
	struct gw_conn *c = v->c;
	struct view_part *vp = xcalloc(1, sizeof(*vp));
	vp->c = c;
	vp->gen = v->gen;
	vp->cookie = cookie;
	vp->next = c->view_parts;
	c->view_parts = vp;
	struct buf b;
	buf_init(&b, 0);
	buf_append(&b, text, len);
	store_send_tagged(c, &b, vh_part_done, vp, tag_out);
	buf_free(&b);
}

static bool view_in_command; /* vrelay_command is on the stack: completions wait for it to return */

static void vh_finished(void *ctx, void *cmdp, const uint8_t *data, size_t len)
{
	struct gw_view *v = ctx;
	struct client_cmd *cmd = cmdp;
	buf_append(&cmd->reply, data, len);
	cmd->done = true;
	if (!view_in_command)
		complete_ready_commands(v->c);
}

static void vh_opened(void *ctx, enum vrelay_opened result, const struct buf *response, const struct buf *events)
{
	struct gw_view *v = ctx;
	struct gw_conn *c = v->c;
	c->serial = false;
	if (v->resume) {
		v->resume = false;
		struct buf ev;
		buf_init(&ev, 0);
		buf_append(&ev, buf_head(events), buf_len(events));
		clog_(c, LOG_LEVEL_INFO, "resume of %s (filtered): %s", c->sel.mailbox,
		      result == VR_RESYNC ? "RESYNC (events cannot be reconstructed)" : "events in view numbers");
		gw_state_folder_delete(c->srv->db, c->ds->user, c->ds->device, c->sel.mailbox);
		resume_emit(c, true, result == VR_RESYNC, &ev);
		buf_free(&ev);
		return;
	}
	struct client_cmd *cmd = v->select;
	v->select = NULL;
	if (!cmd)
		return;
	/* The SELECT's answer, its events, then its tagged line (kept in sel_raw), in order. */
	struct buf tagged;
	buf_init(&tagged, 0);
	buf_append(&tagged, buf_head(&cmd->sel_raw), buf_len(&cmd->sel_raw));
	buf_clear(&cmd->reply);
	buf_append(&cmd->reply, buf_head(response), buf_len(response));
	buf_append(&cmd->reply, buf_head(events), buf_len(events));
	buf_append(&cmd->reply, buf_head(&tagged), buf_len(&tagged));
	buf_free(&tagged);
	if (result == VR_FAILED) {
		/* no view: the store's own answer */
		c->view = NULL;
		loop_defer_free((void (*)(void *))vrelay_free, v->vr);
		folder_state_clear(&v->sel);
		free(v);
	} else {
		clog_(c, LOG_LEVEL_DEBUG, "%s opened with a view of %u of %u messages", c->sel.mailbox,
		      fview_count(vrelay_view(v->vr)), fview_store_count(vrelay_view(v->vr)));
	}
	cmd->done = true;
	complete_ready_commands(c);
}

static void vh_pending(void *ctx)
{
	struct gw_view *v = ctx;
	struct gw_conn *c = v->c;
	if (c->view != v)
		return;
	struct vrelay_pending pd;
	vrelay_pending(v->vr, &pd);
	if (pd.arrivals && !pd.notify && client_waiting(c))
		clog_(c, LOG_LEVEL_DEBUG, "new mail not pushed: none passes the notification filter (%u held)", pd.arrivals);
	if (c->cmds && c->cmds->done)
		complete_ready_commands(c); /* replies waiting for new mail to be decided */
	else
		view_push(c);
}

static void vh_lost(void *ctx, const char *why)
{
	struct gw_view *v = ctx;
	struct gw_conn *c = v->c;
	clog_(c, LOG_LEVEL_WARN, "filtered view lost: %s", why);
	c->view_lost = true;
	if (c->closing)
		return;
	client_say(c, "* BYE [UNAVAILABLE] The filtered view of this folder lost track of the store; reconnect");
	client_flush(c);
	conn_close(c, "filtered view lost");
}

static const struct vrelay_host view_host = {vh_send, vh_finished, vh_opened, vh_pending, vh_lost};

static struct gw_view *view_new(struct gw_conn *c, const char *mailbox)
{
	struct buf items;
	buf_init(&items, 0);
	bool nf = pimap_new_format_fetch_items(&c->ds->prefs, &items);
	buf_append(&items, "", 1);
	struct gw_view *v = xcalloc(1, sizeof(*v));
	v->c = c;
	v->gen = ++c->view_gen;
	struct vrelay_config cfg = {
		.mailbox = mailbox,
		.view = view_value(c, mailbox, XFILTER_VIEW),
		.notify = view_value(c, mailbox, XFILTER_NOTIFY),
		.today = xfilter_today(time(NULL)),
		.new_items = nf ? (const char *)buf_head(&items) : NULL,
		.max_events = c->srv->cfg->max_queued_events,
		.condstore = store_conn_has_cap(c->sc, "CONDSTORE"),
	};
	v->vr = vrelay_new(&view_host, v, &cfg);
	buf_free(&items);
	if (!v->vr) {
		free(v);
		return NULL;
	}
	return v;
}

/* Free a view; deferred, since it may be on the stack (a callback of its own). */
static void view_free(struct gw_view *v)
{
	if (!v)
		return;
	loop_defer_free((void (*)(void *))vrelay_free, v->vr);
	folder_state_clear(&v->sel);
	loop_defer_free(free, v);
}

static bool view_resuming(const struct gw_conn *c)
{
	return c->view && c->view->resume;
}

static const char *view_leaving_folder(const struct gw_conn *c)
{
	return c->view_old ? c->view_old->sel.mailbox : NULL;
}

static void view_drop_all(struct gw_conn *c)
{
	view_free(c->view);
	view_free(c->view_old);
	c->view = c->view_old = NULL;
	while (c->view_parts) {
		struct view_part *vp = c->view_parts;
		c->view_parts = vp->next;
		free(vp);
	}
	if (c->vparser)
		imap_parser_free(c->vparser);
	c->vparser = NULL;
}

/* A SELECT/EXAMINE of a filtered folder: relay it with the view's searches behind. */
static bool view_select_start(struct gw_conn *c, struct client_cmd *cmd, const struct imap_msg *m,
                              const struct gw_folder_rec *saved)
{
	/* Parameters other than CONDSTORE ask the store for something the view cannot rewrite (QRESYNC). */
	bool params_ok = m->nargs == 2 || (m->nargs == 3 && m->args[2].type == IMAP_ARG_LIST &&
	                                   m->args[2].list_count == 1 && imap_arg_is_atom(&m->args[2].list[0], "CONDSTORE"));
	if (!params_ok || c->capture || !view_wanted(c, cmd->mailbox))
		return false;
	struct gw_view *v = view_new(c, cmd->mailbox);
	if (!v)
		return false;
	c->view = v;
	v->select = cmd;
	cmd->view_open = true;
	c->serial = true; /* the client's next commands need the view */
	struct buf line;
	buf_init(&line, 0);
	if (imap_write_retagged(&line, "", m->raw, m->raw_len, strlen(m->tag)) < 0) {
		buf_free(&line);
		return false;
	}
	struct buf text;
	buf_init(&text, 0);
	buf_append(&text, buf_head(&line) + 1, buf_len(&line) - 1);
	store_send(c, &text, relay_done, cmd);
	buf_free(&text);
	buf_free(&line);
	struct vrelay_saved sv;
	uidset_init(&sv.uids);
	if (saved) {
		uidset_copy(&sv.uids, &saved->uids);
		sv.modseq = saved->highestmodseq;
		sv.uidnext = saved->uidnext;
	}
	clog_(c, LOG_LEVEL_DEBUG, "%s is filtered (view %s, notification %s)%s", cmd->mailbox,
	      view_value(c, cmd->mailbox, XFILTER_VIEW), view_value(c, cmd->mailbox, XFILTER_NOTIFY),
	      saved ? ", returning to a saved view" : "");
	vrelay_open(v->vr, VR_OPEN_SELECT, saved ? &sv : NULL);
	uidset_free(&sv.uids);
	return true;
}

/* The SELECT's tagged reply: the folder is now selected; the answer waits for the view. */
static bool view_select_done(struct gw_conn *c, struct client_cmd *cmd, const struct imap_msg *m)
{
	if (!c->view || c->view->select != cmd)
		return false;
	size_t taglen = strlen(m->tag);
	buf_append_str(&cmd->sel_raw, cmd->tag);
	buf_append(&cmd->sel_raw, m->raw + taglen, m->raw_len - taglen);
	if (m->status == IMAP_STATUS_OK) {
		free(c->sel.mailbox);
		c->sel.mailbox = cmd->mailbox;
		cmd->mailbox = NULL;
		c->sel.readonly = cmd->readonly || (m->code && strncasecmp(m->code, "READ-ONLY", 9) == 0);
		/* The client sees the folder live from now on: no older saved view may be used again. */
		gw_state_folder_delete(c->srv->db, c->ds->user, c->ds->device, c->sel.mailbox);
	} else {
		folder_state_clear(&c->sel);
	}
	vrelay_select_done(c->view->vr, m);
	return true;
}

/* Resume into a filtered folder that is selected on the store connection. */
static bool view_resume(struct gw_conn *c, const struct gw_folder_rec *saved)
{
	if (!view_wanted(c, c->sel.mailbox))
		return false;
	struct gw_view *v = view_new(c, c->sel.mailbox);
	if (!v)
		return false;
	c->view = v;
	v->resume = true;
	c->serial = true;
	struct vrelay_saved sv;
	uidset_init(&sv.uids);
	uidset_copy(&sv.uids, &saved->uids);
	sv.modseq = saved->highestmodseq;
	sv.uidnext = saved->uidnext;
	vrelay_open(v->vr, VR_OPEN_RESUME, &sv);
	uidset_free(&sv.uids);
	return true;
}

/* An untagged response from the store: true if the view dealt with it. */
static bool view_untagged(struct gw_conn *c, const struct imap_msg *m)
{
	struct gw_view *v = c->view_old ? c->view_old : c->view;
	struct buf out;
	buf_init(&out, 0);
	if (c->view_old)
		folder_state_track(&c->view_old->sel, m);
	enum vrelay_untagged r = vrelay_untagged(v->vr, m, &out);
	if (r == VRU_PASS && v == c->view_old && c->view)
		r = vrelay_untagged(c->view->vr, m, &out);
	if (r == VRU_PASS) {
		buf_free(&out);
		return false;
	}
	if (r == VRU_CONSUMED || c->closing || c->state != C_AUTHED) {
		buf_free(&out);
		return true;
	}
	/* A rewritten FETCH: data for a command, or an event to push or hold. */
	if (relay_in_flight(c)) {
		release_held(c);
		client_write(c, buf_head(&out), buf_len(&out));
	} else {
		if (!c->vparser) {
			struct imap_limits lim = c->srv->target.limits;
			c->vparser = imap_parser_new(IMAP_PARSE_RESPONSES, &lim);
		}
		imap_parser_reset(c->vparser);
		size_t used = 0;
		if (imap_parser_feed(c->vparser, buf_head(&out), buf_len(&out), &used) == IMAP_PARSE_DONE)
			handle_event(c, imap_parser_msg(c->vparser), c->sel.exists);
	}
	buf_free(&out);
	if (c->client && stream_output_full(c->client) && c->sc)
		store_conn_pause_reading(c->sc, true);
	return true;
}

/* A reply waits while new mail the store reported before it is being decided. */
static bool view_reply_waits(struct gw_conn *c, struct client_cmd *cmd)
{
	return c->view && !cmd->view_open && vrelay_reply_waits(c->view->vr, &cmd->view_mark);
}

/* Before a tagged reply: what the view has pending goes first, EXPUNGEs only where safe. */
static void view_before_reply(struct gw_conn *c, struct client_cmd *cmd)
{
	if (!c->view || cmd->view_open || !vrelay_is_open(c->view->vr))
		return;
	bool seq_after = false;
	for (struct client_cmd *q = cmd->next; q; q = q->next)
		seq_after = seq_after || q->view_seq;
	struct buf out;
	buf_init(&out, 0);
	vrelay_flush(c->view->vr, !cmd->view_seq && !seq_after && !c->newfetch_active, true, &out);
	client_write(c, buf_head(&out), buf_len(&out));
	buf_free(&out);
}

/* The client waits for events: push what the event and notification filters allow. */
static void view_push(struct gw_conn *c)
{
	if (!c->view || c->state != C_AUTHED || c->closing || c->serial || c->newfetch_active || relay_in_flight(c) ||
	    !client_waiting(c) || !vrelay_is_open(c->view->vr))
		return;
	struct vrelay_pending pd;
	vrelay_pending(c->view->vr, &pd);
	bool removals = pd.removals && event_filter_allows(c, EVC_OTHER);
	bool arrivals = pd.arrivals && pd.notify && event_filter_allows(c, EVC_NEW);
	if (c->quiet && c->ds) { /* in-response, no request open: what the view decided may wake the device */
		if (arrivals)
			outband_on_event(c->ds, c->sel.mailbox, OB_NEW_MESSAGE, NULL);
		if (removals)
			outband_on_event(c->ds, c->sel.mailbox, OB_DELETED_MESSAGE, NULL);
	}
	if (!removals && !arrivals)
		return;
	release_held(c);
	struct buf out, items;
	buf_init(&out, 0);
	buf_init(&items, 0);
	vrelay_flush(c->view->vr, removals, false, &out);
	if (arrivals && pimap_new_format_fetch_items(&c->ds->prefs, &items)) {
		/* NEW_FORMAT: the new messages pushed as FETCH of the items, not EXISTS */
		struct uidset uids;
		uidset_init(&uids);
		uint32_t before = vrelay_take_arrivals(c->view->vr, &uids);
		struct buf cmd;
		buf_init(&cmd, 0);
		buf_append_str(&cmd, "UID FETCH ");
		uidset_format(&uids, &cmd);
		buf_append(&cmd, " ", 1);
		buf_append(&cmd, buf_head(&items), buf_len(&items));
		buf_append_str(&cmd, "\r\n");
		c->newfetch_active = true;
		c->newfetch_from = before + 1;
		store_send(c, &cmd, newfetch_done, c);
		buf_free(&cmd);
		uidset_free(&uids);
	} else if (arrivals) {
		vrelay_flush(c->view->vr, false, true, &out);
	}
	client_write(c, buf_head(&out), buf_len(&out));
	client_flush(c);
	buf_free(&out);
	buf_free(&items);
}

/* A client command in the filtered folder: true if the view took it. */
static bool view_command(struct gw_conn *c, const struct imap_msg *m)
{
	if (!vrelay_is_open(c->view->vr))
		return false;
	struct client_cmd *cmd = cmd_push(c, CMD_RELAY, m->tag);
	bool seq = false;
	view_in_command = true;
	enum vrelay_take t = vrelay_command(c->view->vr, m, cmd, &seq);
	view_in_command = false;
	if (t == VR_PASS) {
		/* not the view's: take the entry back, the ordinary relay makes its own */
		struct client_cmd **pp = &c->cmds;
		while (*pp && *pp != cmd)
			pp = &(*pp)->next;
		*pp = NULL;
		c->cmds_tail = NULL;
		for (struct client_cmd *q = c->cmds; q; q = q->next)
			c->cmds_tail = q;
		c->ncmds--;
		cmd_free(cmd);
		return false;
	}
	cmd->view_seq = seq;
	if (cmd->done)
		complete_ready_commands(c);
	return true;
}

/* Save the client's view of a folder it leaves or had when its connection went away. */
static void view_save(struct gw_conn *c, struct vrelay *vr, const struct folder_state *sel)
{
	struct gw_folder_rec rec;
	gw_folder_rec_init(&rec);
	rec.uidvalidity = sel->uidvalidity;
	rec.uidnext = sel->uidnext;
	rec.highestmodseq = sel->modseq;
	vrelay_told(vr, &rec.uids);
	if (uidset_max(&rec.uids) >= rec.uidnext)
		rec.uidnext = uidset_max(&rec.uids) + 1;
	gw_state_folder_save(c->srv->db, c->ds->user, c->ds->device, sel->mailbox, &rec);
	gw_folder_rec_free(&rec);
}

/* SELECT/EXAMINE of another folder, CLOSE or UNSELECT in a filtered folder. */
static void view_leave(struct gw_conn *c, const struct imap_msg *m, bool select)
{
	struct gw_view *v = c->view;
	c->view = NULL;
	if (c->view_old)
		view_free(c->view_old); /* not reached: input waits while a view opens */
	c->view_old = v;
	folder_state_copy(&v->sel, &c->sel);
	unsigned before = c->ncmds;
	if (!select && imap_arg_is_atom(&m->args[0], "CLOSE") && vrelay_close(v->vr, c->sel.readonly)) {
		/* CLOSE would expunge hidden messages too: the view's own are expunged, then UNSELECT */
		struct client_cmd *cmd = cmd_push(c, CMD_UNSELECT, m->tag);
		release_held(c);
		store_sendf(c, relay_done, cmd, "UNSELECT");
	} else {
		vrelay_close(v->vr, true);
		relay_command(c, m, select ? CMD_SELECT : CMD_UNSELECT);
	}
	if (c->view_old == v)
		v->leaving = c->ncmds > before ? c->cmds_tail : NULL;
	view_maybe_retire(c);
}

/* The folder being left has had all its answers: save the client's view of it and let go. */
static void view_maybe_retire(struct gw_conn *c)
{
	struct gw_view *v = c->view_old;
	if (!v || vrelay_busy(v->vr))
		return;
	for (struct client_cmd *q = c->cmds; q && q != v->leaving; q = q->next)
		if (!q->done)
			return;
	c->view_old = NULL;
	if (c->ds && v->sel.mailbox && vrelay_is_open(v->vr) && !c->view_lost)
		view_save(c, v->vr, &v->sel);
	view_free(v);
}

/* Parking a filtered folder: the view is what the client was told; no snapshot needed. */
static void view_park(struct gw_conn *c, struct parked *p)
{
	p->view_trusted = vrelay_is_open(c->view->vr) && !c->view_lost && !c->view_old && !buf_len(&c->held) &&
	                  !relay_in_flight(c) && !c->newfetch_active;
	if (!p->view_trusted)
		return;
	p->view.uidvalidity = c->sel.uidvalidity;
	p->view.uidnext = c->sel.uidnext;
	p->view.highestmodseq = c->sel.modseq;
	vrelay_told(c->view->vr, &p->view.uids);
	if (uidset_max(&p->view.uids) >= p->view.uidnext)
		p->view.uidnext = uidset_max(&p->view.uids) + 1;
	p->have_view = true;
	gw_state_folder_save(c->srv->db, p->ds->user, p->ds->device, p->sel.mailbox, &p->view);
}

/*
 * Out-band wake-ups from a parked folder whose filters have criteria (a
 * VIP list, say): new mail wakes the device only if some of it passes the
 * view and the notification filter (xfilter_push_keys). The parked IDLE
 * ends, two searches run (the new messages that pass; the folder's highest
 * UID, where the next check starts) and the IDLE resumes. Without criteria
 * (ALL, NONE) notification_filter_allows decides at once.
 */
static bool view_parked_new_mail(struct parked *p, const struct imap_msg *m)
{
	struct device_session *ds = p->ds;
	uint32_t n;
	if (!imap_untagged_num(m, "EXISTS", &n) || !ds->srv->outband || device_live(ds) || !p->sel.mailbox)
		return false;
	const char *view = xfilter_set_get(&ds->filters, p->sel.mailbox, XFILTER_VIEW);
	const char *notify = xfilter_set_get(&ds->filters, p->sel.mailbox, XFILTER_NOTIFY);
	bool criteria = (!xfilter_is_all(view) && !xfilter_is_none(view)) ||
	                (!xfilter_is_all(notify) && !xfilter_is_none(notify));
	if (!criteria || xfilter_is_none(view) || xfilter_is_none(notify))
		return false;
	p->push.wanted = true;
	if (p->idling && p->sc)
		store_conn_send_raw(p->sc, "DONE\r\n", 6); /* parked_idle_done -> parked_start_idle -> the check */
	return true;
}

static void view_parked_search_done(struct store_conn *sc, const struct imap_msg *m, void *ctx)
{
	struct parked *p = ctx;
	(void)sc;
	p->push.failed = m->status != IMAP_STATUS_OK;
}

static void view_parked_check_done(struct store_conn *sc, const struct imap_msg *m, void *ctx)
{
	struct parked *p = ctx;
	(void)sc;
	p->push.running = false;
	if (p->push.failed) {
		outband_on_event(p->ds, p->sel.mailbox, OB_NEW_MESSAGE, NULL);
	} else if (m->status == IMAP_STATUS_OK && p->push.max) {
		/* "UID n:*" names the last message even below n: only UIDs from n on count. */
		if (p->push.min >= p->push.from) {
			log_msg(LOG_LEVEL_DEBUG, NULL, "session %s#P%s: new mail in %s passes the filters (UID %u)",
			        p->ds->user, p->ds->device, p->sel.mailbox, p->push.min);
			outband_on_event(p->ds, p->sel.mailbox, OB_NEW_MESSAGE, NULL);
		} else {
			log_msg(LOG_LEVEL_DEBUG, NULL, "session %s#P%s: new mail in %s does not pass the filters: no wake-up",
			        p->ds->user, p->ds->device, p->sel.mailbox);
		}
		if (p->push.max >= p->push.from)
			p->push.from = p->push.max + 1;
	}
	if (!p->taken)
		parked_start_idle(p); /* or the next check, if more mail came meanwhile */
}

/* Before IDLE: run the check new mail asked for; true if it runs (IDLE follows it). */
static bool view_parked_check(struct parked *p)
{
	if (!p->push.wanted || p->push.running || !p->sc || p->taken || !p->sel.mailbox)
		return false;
	p->push.wanted = false;
	struct device_session *ds = p->ds;
	struct buf keys;
	buf_init(&keys, 0);
	if (!xfilter_push_keys(&ds->filters, p->sel.mailbox, xfilter_today(time(NULL)), &keys)) {
		buf_free(&keys);
		return false;
	}
	buf_append(&keys, "", 1);
	if (!p->push.from)
		p->push.from = p->have_view && p->view.uids.count ? uidset_max(&p->view.uids) + 1
		                                                  : (p->sel.uidnext ? p->sel.uidnext : 1);
	bool utf8 = xfilter_needs_utf8(xfilter_set_get(&ds->filters, p->sel.mailbox, XFILTER_VIEW)) ||
	            xfilter_needs_utf8(xfilter_set_get(&ds->filters, p->sel.mailbox, XFILTER_NOTIFY));
	p->push.min = p->push.max = 0;
	p->push.failed = false;
	p->push.running = true;
	snprintf(p->push.tag[0], sizeof(p->push.tag[0]), "%s",
	         store_conn_sendf(p->sc, view_parked_search_done, p, "UID SEARCH RETURN (MIN) %sUID %u:* %s", utf8 ? "CHARSET UTF-8 " : "",
	                          p->push.from, (const char *)buf_head(&keys)));
	snprintf(p->push.tag[1], sizeof(p->push.tag[1]), "%s",
	         store_conn_sendf(p->sc, view_parked_check_done, p, "UID SEARCH RETURN (MAX) ALL"));
	buf_free(&keys);
	return true;
}

/* "* ESEARCH (TAG "t") UID MIN n" / "... MAX n" of the check. */
static bool view_parked_untagged(struct parked *p, const struct imap_msg *m)
{
	if (!p->push.running || m->nargs < 2 || !imap_arg_is_atom(&m->args[0], "ESEARCH") ||
	    m->args[1].type != IMAP_ARG_LIST || m->args[1].list_count != 2)
		return false;
	const struct imap_arg *tag = &m->args[1].list[1];
	for (int k = 0; k < 2; k++) {
		if (tag->len != strlen(p->push.tag[k]) || memcmp(tag->str, p->push.tag[k], tag->len) != 0)
			continue;
		for (size_t i = 2; i + 1 < m->nargs; i++)
			if (imap_arg_is_atom(&m->args[i], k == 0 ? "MIN" : "MAX"))
				imap_parse_u32(m->args[i + 1].str, m->args[i + 1].len, k == 0 ? &p->push.min : &p->push.max);
		return true;
	}
	return false;
}

/* SIGTERM: save the view a filtered folder's client has; false if it cannot be trusted. */
static bool view_drain_save(struct gw_conn *c)
{
	if (!vrelay_is_open(c->view->vr) || c->view_lost || c->view_old || relay_in_flight(c) || !c->sel.mailbox)
		return false;
	view_save(c, c->view->vr, &c->sel);
	free(c->ds->last_selected);
	c->ds->last_selected = xstrdup(c->sel.mailbox);
	c->ds->last_readonly = c->sel.readonly;
	return true;
}

/* A new day: views with DAYSBEFORETODAY let aged messages go. */
static void view_tick_all(struct gateway_server *srv)
{
	long today = xfilter_today(time(NULL));
	for (struct gw_conn *c = srv->conns; c; c = c->next)
		if (c->view && !c->closing)
			vrelay_tick(c->view->vr, today);
}

/* At login (the password at hand): the helper connection that counts filtered folders for STATUS. */
static void view_counter_login(struct gw_conn *c, const char *password)
{
	struct device_session *ds = c->ds;
	if (!ds || !password || !xfilter_set_has_views(&ds->filters))
		return;
	if (ds->counter && folder_count_dead(ds->counter)) {
		/* deferred: its last answers may be on the stack */
		loop_defer_free((void (*)(void *))folder_count_free, ds->counter);
		ds->counter = NULL;
	}
	if (!ds->counter)
		ds->counter = folder_count_open(c->srv->loop, &c->srv->target_pimap, c->login.store_user, password, c->prefix);
}

/* The helper connection, opened now if missing or gone: filters first set after
 * the login, or a counter the store closed, need no new login. */
static bool view_counter_ready(struct gw_conn *c)
{
	if (c->ds && (!c->ds->counter || folder_count_dead(c->ds->counter)))
		view_counter_login(c, c->send_secret);
	return c->ds && c->ds->counter && !folder_count_dead(c->ds->counter);
}

/*
 * PIMAP_FOLDER_STATUS: the store's NOTIFY STATUS of a folder with a view
 * counts the whole folder. Such a push is held back and the folder counted
 * again through the view on the helper connection; the client gets that
 * count. Pushes that come while a count runs cost one more count, not one
 * each.
 */
struct view_recount {
	struct view_recount *next;
	struct gw_conn *c;
	char *mailbox;
	bool again; /* another push came while counting */
};

static void view_recount_start(struct view_recount *r);

static void view_recount_free(struct gw_conn *c, struct view_recount *r)
{
	for (struct view_recount **pp = &c->recounts; *pp; pp = &(*pp)->next)
		if (*pp == r) {
			*pp = r->next;
			break;
		}
	free(r->mailbox);
	free(r);
}

static void view_recount_done(void *ctx, const struct buf *untagged, const char *tagged)
{
	struct view_recount *r = ctx;
	struct gw_conn *c = r->c;
	if (untagged && c->client && !c->closing && c->state == C_AUTHED) {
		if (buf_len(&c->held))
			buf_append(&c->held, buf_head(untagged), buf_len(untagged));
		else
			client_write(c, buf_head(untagged), buf_len(untagged));
		client_flush(c);
	} else if (!untagged) {
		clog_(c, LOG_LEVEL_DEBUG, "STATUS of %s not pushed: %s", r->mailbox, tagged);
	}
	if (r->again && c->ds && c->ds->counter && !folder_count_dead(c->ds->counter)) {
		r->again = false;
		view_recount_start(r);
		return;
	}
	view_recount_free(c, r);
}

static void view_recount_start(struct view_recount *r)
{
	struct gw_conn *c = r->c;
	folder_count_push(c->ds->counter, r->mailbox, view_value(c, r->mailbox, XFILTER_VIEW),
	                  xfilter_today(time(NULL)), view_recount_done, r);
}

static bool view_status_push(struct gw_conn *c, const struct imap_msg *m)
{
	if (!c->ds || m->kind != IMAP_MSG_UNTAGGED || m->nargs < 2 || !imap_arg_is_atom(&m->args[0], "STATUS") ||
	    !imap_arg_is_string(&m->args[1]) || !xfilter_set_has_views(&c->ds->filters))
		return false;
	char *mailbox = arg_dup(&m->args[1]);
	if (strcasecmp(mailbox, "INBOX") == 0)
		strcpy(mailbox, "INBOX");
	if (xfilter_is_all(view_value(c, mailbox, XFILTER_VIEW))) {
		free(mailbox);
		return false;
	}
	for (struct view_recount *r = c->recounts; r; r = r->next)
		if (strcmp(r->mailbox, mailbox) == 0) {
			r->again = true;
			free(mailbox);
			return true;
		}
	if (!view_counter_ready(c)) {
		clog_(c, LOG_LEVEL_DEBUG, "STATUS of %s not pushed: no helper connection to count it", mailbox);
		free(mailbox);
		return true;
	}
	struct view_recount *r = xcalloc(1, sizeof(*r));
	r->c = c;
	r->mailbox = mailbox;
	r->next = c->recounts;
	c->recounts = r;
	view_recount_start(r);
	return true;
}

/* The connection leaves its device session: nothing it asked the helper connection for is answered. */
static void view_detach(struct gw_conn *c, struct device_session *ds)
{
	for (struct client_cmd *q = c->cmds; ds->counter && q; q = q->next)
		folder_count_cancel(ds->counter, q);
	while (c->recounts) {
		if (ds->counter)
			folder_count_cancel(ds->counter, c->recounts);
		view_recount_free(c, c->recounts);
	}
}

static void view_status_done(void *ctx, const struct buf *untagged, const char *tagged)
{
	struct client_cmd *cmd = ctx;
	if (untagged)
		buf_append(&cmd->reply, buf_head(untagged), buf_len(untagged));
	buf_printf(&cmd->reply, "%s %s\r\n", cmd->tag, tagged);
	cmd->done = true;
	complete_ready_commands(cmd->conn);
}

/* STATUS of a filtered folder other than the selected one: counted on the helper connection. */
static bool view_status(struct gw_conn *c, const struct imap_msg *m)
{
	if (m->nargs != 3 || !imap_arg_is_string(&m->args[1]) || m->args[2].type != IMAP_ARG_LIST)
		return false;
	char *mailbox = arg_dup(&m->args[1]);
	if (strcasecmp(mailbox, "INBOX") == 0)
		strcpy(mailbox, "INBOX");
	const char *view = view_value(c, mailbox, XFILTER_VIEW);
	if (xfilter_is_all(view) || (c->view && c->sel.mailbox && strcmp(c->sel.mailbox, mailbox) == 0)) {
		free(mailbox);
		return false;
	}
	if (!view_counter_ready(c)) {
		free(mailbox);
		answer(c, m->tag, "NO [UNAVAILABLE] the helper connection that counts a filtered folder cannot be "
		                  "opened now; select the folder");
		return true;
	}
	struct client_cmd *cmd = cmd_push(c, CMD_LOCAL, m->tag);
	folder_count_status(c->ds->counter, mailbox, view, xfilter_today(time(NULL)), &m->args[2], view_status_done, cmd);
	free(mailbox);
	return true;
}

/* XFILTER <mailbox|ALL> <V|N|B> <GET|NONE|ALL|criteria> (docs/PROTOCOL.md section 10). */
static void xfilter_get_line(struct gw_conn *c, const char *mailbox, enum xfilter_which kind, const char *value)
{
	struct buf b;
	buf_init(&b, 0);
	buf_append_str(&b, "* XFILTER ");
	if (mailbox)
		imap_write_mailbox(&b, mailbox, true);
	else
		buf_append_str(&b, "ALL");
	buf_append_str(&b, kind == XFILTER_VIEW ? " V " : " N ");
	xfilter_response_text(value, &b);
	buf_append_str(&b, "\r\n");
	client_write(c, buf_head(&b), buf_len(&b));
	buf_free(&b);
}

static void client_xfilter(struct gw_conn *c, const struct imap_msg *m)
{
	if (!c->ds) {
		answer(c, m->tag, "NO [CANNOT] needs a P-IMAP session (log in as user#P<device-id>)");
		return;
	}
	struct xfilter_cmd x;
	char err[400];
	enum xfilter_result r = xfilter_parse_command(m->args + 1, m->nargs - 1, &x, err, sizeof(err));
	if (r != XFILTER_OK) {
		answer(c, m->tag, r == XFILTER_BAD ? "BAD %s" : "NO [CANNOT] %s", err);
		return;
	}
	const struct xfilter_set *set = &c->ds->filters;
	static const enum xfilter_which kinds[] = {XFILTER_VIEW, XFILTER_NOTIFY};
	if (x.get) {
		for (size_t k = 0; k < 2; k++) {
			if (!(x.which & kinds[k]))
				continue;
			xfilter_get_line(c, x.mailbox, kinds[k], xfilter_set_get(set, x.mailbox ? x.mailbox : "", kinds[k]));
			for (size_t i = 0; !x.mailbox && i < set->n; i++) {
				const char *v = kinds[k] == XFILTER_VIEW ? set->e[i].view : set->e[i].notify;
				if (*set->e[i].mailbox && v)
					xfilter_get_line(c, set->e[i].mailbox, kinds[k], v);
			}
		}
		xfilter_cmd_free(&x);
		answer(c, m->tag, "OK XFILTER completed");
		return;
	}
	char why[200];
	if ((x.which & XFILTER_VIEW) && !xfilter_is_all(x.value) && c->sc &&
	    !vrelay_server_ok(store_conn_caps(c->sc), why, sizeof(why))) {
		xfilter_cmd_free(&x);
		answer(c, m->tag, "NO [CANNOT] %s", why);
		return;
	}
	const char *mailbox = x.mailbox ? x.mailbox : "";
	/* For ALL the value ALL is the default: nothing stored. */
	const char *stored = !x.mailbox && xfilter_is_all(x.value) ? NULL : x.value;
	/* A view that does not change keeps the saved views (pimap-proxy may repeat a folder's values). */
	bool view_changes = (x.which & XFILTER_VIEW) &&
	                    (!x.mailbox || strcmp(xfilter_set_get(set, mailbox, XFILTER_VIEW), x.value) != 0);
	for (size_t k = 0; k < 2; k++) {
		if (!(x.which & kinds[k]))
			continue;
		if (gw_state_filter_save(c->srv->db, c->ds->user, c->ds->device, mailbox, kinds[k] == XFILTER_VIEW ? 'V' : 'N',
		                         stored) < 0) {
			xfilter_cmd_free(&x);
			answer(c, m->tag, "NO [SERVERBUG] cannot save the filter");
			return;
		}
		xfilter_set_put(&c->ds->filters, mailbox, kinds[k], stored);
	}
	if (view_changes) {
		/* Saved views of the folder(s) describe the old view: a new SELECT starts fresh
		 * (the client compares its state, as the draft asks after a view change). */
		if (x.mailbox)
			gw_state_folder_delete(c->srv->db, c->ds->user, c->ds->device, x.mailbox);
		else
			gw_state_folders_delete(c->srv->db, c->ds->user, c->ds->device);
	}
	clog_(c, LOG_LEVEL_INFO, "XFILTER %s %s = %s", x.mailbox ? x.mailbox : "ALL",
	      x.which == XFILTER_BOTH ? "B" : x.which == XFILTER_VIEW ? "V" : "N", x.value);
	xfilter_cmd_free(&x);
	answer(c, m->tag, "OK XFILTER completed");
}

/* ------------------------------------------------------------------------ */
/* P-IMAP commands answered by the gateway                                   */

static void provision(struct gw_conn *c, const struct imap_msg *m)
{
	const struct gateway_config *cfg = c->srv->cfg;
	struct pimap_provision_limit limits[] = {
		{"MAX_QUEUED_EVENTS", (unsigned long long)cfg->max_queued_events},
		{"MAX_CONNECTIONS_PER_DEVICE", (unsigned long long)cfg->max_connections_per_device},
		{"SESSION_LIFETIME", (unsigned long long)cfg->session_lifetime},
		{"MAX_LITERAL_SIZE", (unsigned long long)cfg->max_literal_size},
	};
	struct buf out;
	buf_init(&out, 0);
	pimap_provision_format(limits, sizeof(limits) / sizeof(limits[0]), outband_channels(c->srv->outband), &out);
	/* The device's out-band key: over TLS only (draft -12 6.1). */
	if (c->ds && c->srv->outband && (stream_is_tls(c->client) || c->outer_tls))
		outband_provision(c->srv->outband, c->ds->user, c->ds->device, &out);
	client_write(c, buf_head(&out), buf_len(&out));
	buf_free(&out);
	answer(c, m->tag, "OK XPROVISION completed");
}

/* NOTIFY for PIMAP_FOLDER_STATUS: in force once the store said OK. */
static void folder_status_done(struct store_conn *sc, const struct imap_msg *m, void *ctx)
{
	struct client_cmd *cmd = ctx;
	(void)sc;
	if (m->status == IMAP_STATUS_OK)
		cmd_finish_local(cmd->conn, cmd, "OK XSETPIMAPPREF completed");
	else
		cmd_finish_local(cmd->conn, cmd, "NO [UNAVAILABLE] The store refused NOTIFY: %.*s", (int)m->text_len,
		                 m->text);
}

/*
 * PIMAP_FOLDER_STATUS ON (pimap's extension): this connection's store
 * connection watches the user's subscribed folders with NOTIFY (RFC 5465);
 * their STATUS comes at once (one per folder, before the tagged OK) and
 * again whenever one changes, as untagged data the client may get at any
 * time. The selected folder keeps the ordinary IMAP events
 * (selected-delayed: no EXPUNGE outside a command). OFF narrows NOTIFY to
 * the selected folder again.
 */
static void folder_status_apply(struct gw_conn *c, const char *tag, bool on)
{
	struct client_cmd *cmd = cmd_push(c, CMD_RELAY, tag);
	store_sendf(c, folder_status_done, cmd, "%s",
	            on ? "NOTIFY SET STATUS (selected-delayed (MessageNew MessageExpunge FlagChange)) "
	                 "(subscribed (MessageNew MessageExpunge FlagChange))"
	               : "NOTIFY SET (selected-delayed (MessageNew MessageExpunge FlagChange))");
}

static void set_pref(struct gw_conn *c, const struct imap_msg *m)
{
	char err[256];
	enum pimap_pref_id id;
	char before[8];
	snprintf(before, sizeof(before), "%s", c->ds->prefs.value[PIMAP_PREF_FOLDER_STATUS]);
	struct pimap_pref_policy policy = outband_pref_policy(c->srv->outband, c->peer);
	if (pimap_pref_set_args(&c->ds->prefs, m->args + 1, m->nargs - 1, &policy, &id, err, sizeof(err)) < 0) {
		answer(c, m->tag, "NO %s", err);
		return;
	}
	if (id == PIMAP_PREF_FOLDER_STATUS && (!c->sc || !store_conn_has_cap(c->sc, "NOTIFY"))) {
		pimap_pref_set_value(&c->ds->prefs, id, before);
		answer(c, m->tag, "NO [CANNOT] PIMAP_FOLDER_STATUS needs a store that offers NOTIFY (RFC 5465)");
		return;
	}
	if (gw_state_pref_save(c->srv->db, c->ds->user, c->ds->device, pimap_pref_name(id), c->ds->prefs.value[id]) <
	    0) {
		answer(c, m->tag, "NO [SERVERBUG] cannot save the preference");
		return;
	}
	clog_(c, LOG_LEVEL_DEBUG, "preference %s = %s", pimap_pref_name(id), c->ds->prefs.value[id]);
	if (id == PIMAP_PREF_FOLDER_STATUS) {
		folder_status_apply(c, m->tag, strcmp(c->ds->prefs.value[id], "ON") == 0);
		return;
	}
	answer(c, m->tag, "OK XSETPIMAPPREF completed");
}

static void get_pref(struct gw_conn *c, const struct imap_msg *m)
{
	char err[256];
	char verb[32];
	snprintf(verb, sizeof(verb), "%.*s", (int)m->args[0].len, m->args[0].str);
	for (char *p = verb; *p; p++)
		*p = (char)((*p >= 'a' && *p <= 'z') ? *p - 32 : *p);
	struct buf out;
	buf_init(&out, 0);
	if (pimap_prefs_format_get(&c->ds->prefs, verb, m->args + 1, m->nargs - 1, &out, err, sizeof(err)) < 0) {
		buf_free(&out);
		answer(c, m->tag, "NO %s", err);
		return;
	}
	client_write(c, buf_head(&out), buf_len(&out));
	buf_free(&out);
	answer(c, m->tag, "OK %s completed", verb);
}

/* ------------------------------------------------------------------------ */
/* authenticated commands                                                    */

static void dispatch_authed(struct gw_conn *c, const struct imap_msg *m);


static void client_idle(struct gw_conn *c, const struct imap_msg *m)
{
	struct client_cmd *cmd = cmd_push(c, CMD_IDLE, m->tag);
	c->idle_cmd = cmd;
	c->idle_done_pending = false;
	client_say(c, "+ idling");
	/* Events held so far may all be pushed now, unless the event filter keeps some back. */
	if (event_filter_allows(c, EVC_OTHER) && event_filter_allows(c, EVC_NEW))
		release_held(c);
	client_flush(c);
	imap_parser_expect_raw_line(c->parser);
	view_push(c);
	store_idle_update(c);
}

static void client_done(struct gw_conn *c, const struct imap_msg *m)
{
	if (!(m->text_len == 4 && strncasecmp(m->text, "DONE", 4) == 0)) {
		/* Anything but DONE ends IDLE with BAD, as Dovecot does. */
		c->idle_bad = true;
		clog_(c, LOG_LEVEL_DEBUG, "IDLE ended by something other than DONE");
	}
	c->idle_done_pending = true;
	store_idle_update(c);
	finish_client_idle(c);
}

static void client_compress(struct gw_conn *c, const struct imap_msg *m)
{
	if (m->nargs != 2 || !imap_arg_is_atom(&m->args[1], "DEFLATE")) {
		answer(c, m->tag, "BAD Only COMPRESS DEFLATE is supported");
		return;
	}
	if (stream_is_compressed(c->client)) {
		answer(c, m->tag, "NO [COMPRESSIONACTIVE] Compression is already active");
		return;
	}
	if (c->outer_tls) {
		/* In-response batches are read line by line by the binding; HTTP compresses instead. */
		answer(c, m->tag, "NO [CANNOT] The HTTPS binding compresses with Content-Encoding");
		return;
	}
	if (c->ncmds) {
		answer(c, m->tag, "BAD COMPRESS with commands in flight");
		return;
	}
	client_say(c, "%s OK DEFLATE active", m->tag);
	client_flush(c);
	if (stream_enable_compress(c->client, -1) < 0)
		conn_close(c, "cannot start compression");
}

static void client_xzip(struct gw_conn *c, const struct imap_msg *m)
{
	char err[160];
	/* The inner command, checked for what it may wrap (pimap_cmd.c). */
	struct imap_parser *p = pimap_xzip_parse_inner(m, &c->srv->limits, err, sizeof(err));
	if (!p) {
		answer(c, m->tag, "BAD %s", err);
		return;
	}
	if (c->ncmds) {
		/* Simple and exact: an XZIP runs alone, so its capture holds only its own responses. */
		answer(c, m->tag, "BAD XZIP with commands in flight; send it alone");
		imap_parser_free(p);
		return;
	}
	const struct imap_msg *inner = imap_parser_msg(p);
	c->capture = xcalloc(1, sizeof(*c->capture));
	buf_init(c->capture, 0);
	unsigned before = c->ncmds;
	dispatch_authed(c, inner);
	/* The inner command is the newest one; mark it so its completion compresses the capture. */
	if (c->ncmds > before && c->cmds_tail) {
		c->cmds_tail->xzip = true;
		snprintf(c->cmds_tail->outer_tag, sizeof(c->cmds_tail->outer_tag), "%s", m->tag);
	} else if (c->capture) {
		/* Answered synchronously and already flushed: compress now. */
		xzip_emit(c, m->tag);
		client_flush(c);
	}
	imap_parser_free(p);
}

static void logout_done(struct store_conn *sc, const struct imap_msg *m, void *ctx)
{
	struct client_cmd *cmd = ctx;
	struct gw_conn *c = cmd->conn;
	(void)sc;
	size_t taglen = strlen(m->tag);
	buf_append_str(&cmd->reply, cmd->tag);
	buf_append(&cmd->reply, m->raw + taglen, m->raw_len - taglen);
	cmd->done = true;
	c->logout_done = true;
	complete_ready_commands(c);
}

/* LOGOUT goes to the store, so its answer is the store's own (a plain session relays faithfully). */
static void client_logout(struct gw_conn *c, const struct imap_msg *m)
{
	if (c->ds && c->ds->attached > 1) {
		/* Other connections of the device are still in use: only this one ends. */
		clog_(c, LOG_LEVEL_INFO, "LOGOUT of one of %u connections of session %s", c->ds->attached,
		      c->ds->session_id);
	} else if (c->ds) {
		/* LOGOUT ends the P-IMAP session: its saved state goes, parked connections close. */
		struct device_session *ds = c->ds;
		gw_state_session_delete(c->srv->db, ds->user, ds->device);
		gw_state_device_used(c->srv->db, ds->user, ds->device, wall_now());
		while (ds->parked) {
			struct parked *p = ds->parked;
			ds->parked = p->next;
			parked_free(p);
		}
		clog_(c, LOG_LEVEL_INFO, "session %s ended by LOGOUT", ds->session_id);
	}
	c->logging_out = true;
	struct client_cmd *cmd = cmd_push(c, CMD_LOGOUT, m->tag);
	struct buf line;
	buf_init(&line, 0);
	buf_append_str(&line, "LOGOUT\r\n");
	store_conn_expect_bye(c->sc);
	store_send(c, &line, logout_done, cmd);
	buf_free(&line);
}

/*
 * ENABLE in a P-IMAP session: QRESYNC would turn the store's EXPUNGEs into
 * VANISHED, which the session's event tracking does not speak, so it is
 * not passed on (and not advertised). The rest goes to the store.
 */
static void pimap_enable(struct gw_conn *c, const struct imap_msg *m)
{
	struct buf line;
	buf_init(&line, 0);
	buf_append_str(&line, "ENABLE");
	size_t kept = 0;
	for (size_t i = 1; i < m->nargs; i++) {
		if (m->args[i].type != IMAP_ARG_ATOM) {
			buf_free(&line);
			answer(c, m->tag, "BAD ENABLE takes capability names");
			return;
		}
		if (imap_arg_is_atom(&m->args[i], "QRESYNC"))
			continue;
		buf_printf(&line, " %.*s", (int)m->args[i].len, m->args[i].str);
		kept++;
	}
	if (m->nargs < 2) {
		buf_free(&line);
		answer(c, m->tag, "BAD ENABLE needs a capability name");
		return;
	}
	if (kept == 0) {
		buf_free(&line);
		client_say(c, "* ENABLED");
		answer(c, m->tag, "OK Enabled.");
		return;
	}
	buf_append_str(&line, "\r\n");
	struct client_cmd *cmd = cmd_push(c, CMD_RELAY, m->tag);
	store_send(c, &line, relay_done, cmd);
	buf_free(&line);
}

/* XDELIVER (gw_deliver.c): answered in order like any command, when its job ends. */
static void xdeliver_done(const char *result, void *ctx)
{
	struct client_cmd *cmd = ctx;
	cmd->job = NULL;
	cmd_finish_local(cmd->conn, cmd, "%s", result);
}

static void client_xdeliver(struct gw_conn *c, const struct imap_msg *m)
{
	struct xdeliver_cmd x;
	char err[256];
	if (!c->srv->deliver) {
		answer(c, m->tag, "NO [CANNOT] XDELIVER is not configured on this gateway");
		return;
	}
	if (xdeliver_parse(m, &x, err, sizeof(err)) < 0) {
		answer(c, m->tag, "BAD XDELIVER: %s", err);
		return;
	}
	struct client_cmd *cmd = cmd_push(c, CMD_LOCAL, m->tag);
	cmd->job = gw_deliver_start(c->srv->deliver, c->login.store_user, c->send_secret, &x, c->prefix,
	                            xdeliver_done, cmd);
}

static void dispatch_authed(struct gw_conn *c, const struct imap_msg *m)
{
	if (m->nargs < 1 || m->args[0].type != IMAP_ARG_ATOM) {
		answer(c, m->tag, "BAD Missing command");
		return;
	}
	if (cmd_is(m, "CAPABILITY")) {
		struct buf caps;
		buf_init(&caps, 0);
		client_caps(c, &caps);
		buf_append(&caps, "", 1);
		client_say(c, "* CAPABILITY %s", (const char *)buf_head(&caps));
		buf_free(&caps);
		answer(c, m->tag, "OK Capability completed.");
		return;
	}
	if (cmd_is(m, "LOGOUT")) {
		client_logout(c, m);
		return;
	}
	if (cmd_is(m, "LOGIN") || cmd_is(m, "AUTHENTICATE")) {
		answer(c, m->tag, "BAD Already logged in");
		return;
	}
	if (cmd_is(m, "STARTTLS")) {
		answer(c, m->tag, "BAD STARTTLS is only valid before login");
		return;
	}
	if (cmd_is(m, "COMPRESS")) {
		client_compress(c, m);
		return;
	}
	if (cmd_is(m, "XZIP")) {
		client_xzip(c, m); /* an inner XZIP or IDLE never gets here: client_xzip refuses them */
		return;
	}
	if (cmd_is(m, "XPROVISION")) {
		provision(c, m);
		return;
	}
	if (cmd_is(m, "XDELIVER")) {
		client_xdeliver(c, m);
		return;
	}
	if (cmd_is(m, "XFILTER")) {
		client_xfilter(c, m);
		return;
	}
	if (cmd_is(m, "XSETPIMAPPREF") || cmd_is(m, "XGETPIMAPPREF") || cmd_is(m, "XGETPIMAPPREFS")) {
		if (!c->ds) {
			answer(c, m->tag, "NO [CANNOT] needs a P-IMAP session (log in as user#P<device-id>)");
			return;
		}
		if (cmd_is(m, "XSETPIMAPPREF") && m->nargs < 3)
			answer(c, m->tag, "BAD XSETPIMAPPREF needs a preference name and a value");
		else if (cmd_is(m, "XSETPIMAPPREF"))
			set_pref(c, m);
		else
			get_pref(c, m);
		return;
	}
	if (cmd_is(m, "IDLE")) {
		client_idle(c, m);
		return;
	}
	if (c->ds && cmd_is(m, "NOTIFY")) {
		/* The session's event stream is the gateway's; NOTIFY would bypass it. */
		answer(c, m->tag, "BAD NOTIFY is not offered in a P-IMAP session");
		return;
	}
	if (c->ds && cmd_is(m, "ENABLE")) {
		pimap_enable(c, m);
		return;
	}
	bool select = cmd_is(m, "SELECT") || cmd_is(m, "EXAMINE");
	bool unselect = cmd_is(m, "CLOSE") || cmd_is(m, "UNSELECT");
	if (select && (m->nargs < 2 || !imap_arg_is_string(&m->args[1]))) {
		answer(c, m->tag, "BAD %s needs a mailbox", select ? "SELECT" : "EXAMINE");
		return;
	}
	if (c->view && !select && !unselect && view_command(c, m))
		return;
	if (c->ds && cmd_is(m, "STATUS") && view_status(c, m))
		return;
	if (c->view && (select || unselect)) {
		view_leave(c, m, select);
		return;
	}
	if (c->ds && (select || unselect) && c->sel.mailbox && !c->snap) {
		/* Save the view of the folder being left before the store forgets it. */
		struct leave_ctx *lc = xcalloc(1, sizeof(*lc));
		lc->c = c;
		folder_state_copy(&lc->sel, &c->sel);
		struct snapshot *sn = snapshot_start_conn(c, leave_snapshot_done, lc);
		if (sn) {
			c->snap = sn;
			c->leave = lc;
			c->serial = true;
		} else {
			gw_state_folder_delete(c->srv->db, c->ds->user, c->ds->device, lc->sel.mailbox);
			folder_state_clear(&lc->sel);
			free(lc);
		}
	}
	relay_command(c, m, select ? CMD_SELECT : unselect ? CMD_UNSELECT : CMD_RELAY);
}

/* ------------------------------------------------------------------------ */
/* login                                                                     */

static bool throttled(struct gw_conn *c)
{
	return login_throttle_refuses(c->srv->throttle, c->peer, ev_now(c->srv->loop), c->srv->cfg->max_failed_logins);
}

/* Our store login is decided (failed: the store refused the password) or abandoned. */
static void throttle_end(struct gw_conn *c, bool failed)
{
	login_throttle_end(c->srv->throttle, c->throttle_slot, ev_now(c->srv->loop), failed);
	c->throttle_slot = NULL;
}

static void wipe_free(char **s)
{
	if (!*s)
		return;
	volatile char *p = *s;
	while (*p)
		*p++ = '\0';
	free(*s);
	*s = NULL;
}

/* XDELIVER logs in to the submission server as the user, and a P-IMAP session
 * may need its folder counter after filters are first set: the password stays
 * in memory while the connection is logged in (never on disk), wiped at close. */
static void keep_send_secret(struct gw_conn *c, const char *password, size_t len)
{
	if (!c->srv->deliver && !c->login.device_id)
		return;
	wipe_free(&c->send_secret);
	c->send_secret = xmalloc(len + 1);
	memcpy(c->send_secret, password, len);
	c->send_secret[len] = '\0';
}

static void login_fail(struct gw_conn *c, const char *code_and_text)
{
	wipe_free(&c->password);
	pimap_login_free(&c->login);
	client_say(c, "%s NO %s", c->login_tag, code_and_text);
	client_flush(c);
	c->state = C_PRELOGIN;
	imap_parser_set_limits(c->parser, &c->srv->prelogin_limits);
	process_client_input(c);
}

static void login_complete(struct gw_conn *c, const uint8_t *untagged, size_t untagged_len)
{
	c->state = C_AUTHED;
	c->activity.repeat = c->srv->cfg->idle_timeout;
	ev_timer_again(c->srv->loop, &c->activity);
	imap_parser_set_limits(c->parser, &c->srv->limits);
	if (untagged_len)
		client_write(c, untagged, untagged_len); /* may hold NUL bytes (a NEW_FORMAT literal8) */
	struct buf caps;
	buf_init(&caps, 0);
	client_caps(c, &caps);
	buf_append(&caps, "", 1);
	client_say(c, "%s OK [CAPABILITY %s] Logged in", c->login_tag, (const char *)buf_head(&caps));
	buf_free(&caps);
	client_flush(c);
	clog_(c, LOG_LEVEL_INFO, "logged in as %s%s%s", c->login.store_user, c->ds ? " device " : " (plain IMAP)",
	      c->ds ? c->ds->device : "");
	if (c->ds)
		outband_device_seen(c->srv->outband, c->ds->user, c->ds->device, c->peer);
	process_client_input(c);
}

/* Resume output: "* SESSION ...", "* FOLDER ...", events or RESYNC, "* SESSIONID". */
static void resume_emit(struct gw_conn *c, bool selected, bool resync, struct buf *events)
{
	struct buf out;
	buf_init(&out, 0);
	if (selected) {
		buf_append_str(&out, "* SESSION SELECTED\r\n* FOLDER ");
		imap_write_mailbox(&out, c->sel.mailbox, true);
		buf_append_str(&out, "\r\n");
	} else {
		buf_append_str(&out, "* SESSION AUTHENTICATED\r\n");
	}
	if (resync)
		buf_append_str(&out, "* RESYNC\r\n");
	else if (events)
		buf_append(&out, buf_head(events), buf_len(events));
	buf_printf(&out, "* SESSIONID %s\r\n", c->ds->session_id);
	login_complete(c, buf_head(&out), buf_len(&out));
	buf_free(&out);
}

static void resume_catchup_done(struct catchup *cu, bool resync, struct buf *events, void *ctx)
{
	struct gw_conn *c = ctx;
	c->cu = NULL;
	c->serial = false;
	if (resync)
		clog_(c, LOG_LEVEL_INFO, "resume of %s: RESYNC (events cannot be reconstructed)", c->sel.mailbox);
	else
		clog_(c, LOG_LEVEL_INFO, "resume of %s: %zu events", c->sel.mailbox, cu->diff.count);
	resume_emit(c, true, resync, events);
	/* The saved view is consumed: from now on the client's view is live again. */
	gw_state_folder_delete(c->srv->db, c->ds->user, c->ds->device, c->sel.mailbox);
	catchup_free(cu);
}

static void start_catchup(struct gw_conn *c, const struct gw_folder_rec *saved)
{
	if (view_resume(c, saved))
		return;
	c->serial = true;
	struct catchup *cu = catchup_start(c->sc, saved, &c->ds->prefs, c->srv->cfg->max_queued_events,
	                                   resume_catchup_done, c);
	c->cu = cu;
	if (cu->step == CU_DONE) {
		/* No ESEARCH: nothing can be reconstructed. */
		c->cu = NULL;
		c->serial = false;
		resume_emit(c, true, true, NULL);
		catchup_free(cu);
	}
}

/* Resume into a parked store connection. */
static void resume_parked_idle_done(struct store_conn *sc, const struct imap_msg *m, void *ctx);

static void resume_with_parked(struct gw_conn *c, struct parked *p)
{
	parked_unlink(p);
	p->taken = true;
	ev_timer_stop(c->srv->loop, &p->refresh);
	c->sc = p->sc;
	p->sc = NULL;
	store_conn_set_owner(c->sc, &conn_store_ops, c);
	store_conn_set_prefix(c->sc, c->prefix);
	folder_state_copy(&c->sel, &p->sel);
	c->store_no_idle = !store_conn_has_cap(c->sc, "IDLE");
	c->resume_from = p;
	c->serial = true;
	/* The parked IDLE (and a snapshot still running, whose view is then unusable) end here. */
	store_conn_orphan_commands(c->sc);
	if (p->snap) {
		snapshot_free(p->snap);
		p->snap = NULL;
		p->have_view = false;
	}
	if (p->idling || p->await_plus) {
		/* An IDLE still waiting for its "+" ends as well: the store reads DONE after it. */
		store_conn_send_raw(c->sc, "DONE\r\n", 6);
		p->idling = false;
		p->await_plus = false;
	}
	if (p->notify_on || p->ds->watcher == p) {
		/* The client must not get STATUS for other folders: the watch is the gateway's.
		 * Not "NOTIFY NONE": Dovecot then reports nothing, not even the selected
		 * folder's changes. selected-delayed is RFC 3501's own behaviour (no
		 * EXPUNGE while a command that uses sequence numbers runs). */
		store_conn_sendf(c->sc, NULL, NULL, "NOTIFY SET (selected-delayed (MessageNew MessageExpunge FlagChange))");
		p->notify_on = false;
	}
	watches_clear(p->ds);
	/* A NOOP after DONE: when it completes, IDLE is over and all events are in. */
	store_conn_sendf(c->sc, resume_parked_idle_done, c, "NOOP");
}

static void resume_parked_idle_done(struct store_conn *sc, const struct imap_msg *m, void *ctx)
{
	struct gw_conn *c = ctx;
	(void)sc;
	struct parked *p = c->resume_from;
	c->resume_from = NULL;
	c->serial = false;
	if (p->overflow || !p->have_view) {
		gw_state_folder_delete(c->srv->db, c->ds->user, c->ds->device, c->sel.mailbox);
		resume_emit(c, true, true, NULL);
	} else {
		start_catchup(c, &p->view);
	}
	parked_free(p);
}

/* Resume from the saved session after the store login: SELECT the saved folder, then catch up. */
struct db_resume {
	struct gw_conn *c;
	struct gw_folder_rec saved;
};

static void db_resume_free(struct db_resume *r)
{
	gw_folder_rec_free(&r->saved);
	free(r);
}

static void db_resume_select_done(struct store_conn *sc, const struct imap_msg *m, void *ctx)
{
	struct db_resume *r = ctx;
	struct gw_conn *c = r->c;
	(void)sc;
	c->db_resume = NULL;
	c->serial = false;
	if (m->status != IMAP_STATUS_OK) {
		/* The folder is gone: nothing selected, and the client must look again. */
		folder_state_clear(&c->sel);
		resume_emit(c, false, true, NULL);
	} else if (c->sel.uidvalidity != r->saved.uidvalidity) {
		resume_emit(c, true, true, NULL);
	} else {
		start_catchup(c, &r->saved);
	}
	db_resume_free(r);
}

static void resume_from_db(struct gw_conn *c, const char *mailbox, bool readonly)
{
	struct db_resume *r = xcalloc(1, sizeof(*r));
	r->c = c;
	gw_folder_rec_init(&r->saved);
	int rc = gw_state_folder_load(c->srv->db, c->ds->user, c->ds->device, mailbox, &r->saved);
	c->sel.mailbox = xstrdup(mailbox);
	c->sel.readonly = readonly;
	if (rc != 0) {
		/* No trustworthy view: SELECT anyway so the connection is where the client left it. */
		r->saved.uidvalidity = 0;
	}
	c->serial = true;
	struct buf cmd;
	buf_init(&cmd, 0);
	buf_append_str(&cmd, readonly ? "EXAMINE " : "SELECT ");
	imap_write_mailbox(&cmd, mailbox, false);
	buf_append_str(&cmd, "\r\n");
	/* The SELECT's own responses update c->sel through conn_store_untagged (state is not AUTHED yet). */
	c->db_resume = r;
	store_conn_send(c->sc, buf_head(&cmd), buf_len(&cmd), false, db_resume_select_done, r);
	buf_free(&cmd);
	if (rc != 0)
		r->saved.uidvalidity = UINT32_MAX; /* never equal: forces RESYNC after the SELECT */
}

/* After a successful store login (or a credential match with a parked connection). */
static void open_pimap_session(struct gw_conn *c)
{
	struct gateway_server *srv = c->srv;
	const char *user = c->login.store_user, *device = c->login.device_id;
	struct device_session *ds = session_find(srv, user, device);
	if (ds) {
		c->ds = ds;
		bool first = ds->attached == 0;
		ds->attached++;
		session_save(ds, GW_SESSION_ATTACHED);
		/* Only the first connection back takes the saved folder; others join AUTHENTICATED. */
		if (first && ds->last_selected) {
			resume_from_db(c, ds->last_selected, ds->last_readonly);
			return;
		}
		resume_emit(c, false, false, NULL);
		return;
	}
	struct gw_session_rec rec;
	memset(&rec, 0, sizeof(rec));
	int rc = gw_state_session_load(srv->db, user, device, &rec);
	bool expired = rc == 0 && (rec.state == GW_SESSION_EXPIRED || (rec.state == GW_SESSION_DETACHED &&
	                                              rec.detached_at + srv->cfg->session_lifetime < wall_now()));
	bool crashed = rc == 0 && rec.state == GW_SESSION_ATTACHED;
	if (rc == 0 && !expired && !crashed) {
		ds = session_new(srv, user, device, rec.session_id);
		c->ds = ds;
		ds->attached = 1;
		if (rec.selected) {
			ds->last_selected = xstrdup(rec.selected);
			ds->last_readonly = rec.selected_readonly;
		}
		session_save(ds, GW_SESSION_ATTACHED);
		gw_session_rec_free(&rec);
		if (ds->last_selected) {
			resume_from_db(c, ds->last_selected, ds->last_readonly);
			return;
		}
		resume_emit(c, false, false, NULL);
		return;
	}
	/* A new session; RESYNC if an old one existed whose events are lost. */
	bool resync = expired || crashed;
	if (rc == 0)
		gw_state_session_delete(srv->db, user, device);
	ds = session_new(srv, user, device, crashed ? rec.session_id : NULL);
	gw_session_rec_free(&rec);
	c->ds = ds;
	ds->attached = 1;
	session_save(ds, GW_SESSION_ATTACHED);
	char line[128];
	snprintf(line, sizeof(line), "%s* SESSIONID %s\r\n", resync ? "* RESYNC\r\n" : "", ds->session_id);
	if (resync)
		clog_(c, LOG_LEVEL_INFO, "session of %s#P%s %s: RESYNC", user, device,
		      crashed ? "was attached when the gateway stopped" : "expired");
	login_complete(c, (const uint8_t *)line, strlen(line));
}

static bool session_limits_refuse(struct gw_conn *c, char *why, size_t whylen);
static struct parked *parked_resumable(struct device_session *ds, const char *token);

static void conn_store_login_done(struct store_conn *sc, enum store_login_result r, const char *text, void *ctx)
{
	struct gw_conn *c = ctx;
	throttle_end(c, r == STORE_LOGIN_REFUSED);
	if (r != STORE_LOGIN_OK) {
		c->sc = NULL;
		if (r == STORE_LOGIN_REFUSED) {
			clog_(c, LOG_LEVEL_INFO, "login failed for %s", c->login.store_user);
			login_fail(c, "[AUTHENTICATIONFAILED] Authentication failed.");
		} else {
			clog_(c, LOG_LEVEL_WARN, "store unavailable: %s", text);
			login_fail(c, "[UNAVAILABLE] The mail store is not reachable now.");
		}
		return;
	}
	(void)sc;
	/* Without IDLE at the store, events reach the client with the replies to its commands only. */
	c->store_no_idle = !store_conn_has_cap(c->sc, "IDLE");
	keep_send_secret(c, c->password, strlen(c->password));
	if (!c->login.device_id) {
		wipe_free(&c->password);
		login_complete(c, NULL, 0);
		return;
	}
	char why[256];
	if (session_limits_refuse(c, why, sizeof(why))) {
		store_conn_close(c->sc);
		c->sc = NULL;
		login_fail(c, why);
		return;
	}
	uint8_t h[CRED_HASH_LEN];
	credential_hash(c->srv, c->login.store_user, c->password, h);
	struct device_session *ds = session_find(c->srv, c->login.store_user, c->login.device_id);
	struct parked *p = ds ? parked_resumable(ds, c->resume_token) : NULL;
	if (p) {
		/* The store vouched for the password: take the parked connection back
		 * (it holds the folder and its events); the new one is not needed. */
		store_conn_close(c->sc);
		c->sc = NULL;
		memcpy(ds->cred_hash, h, sizeof(h));
		ds->have_hash = true;
		ds->hash_verified_at = mono_now();
		c->ds = ds;
		ds->attached++;
		session_save(ds, GW_SESSION_ATTACHED);
		clog_(c, LOG_LEVEL_INFO, "resuming session %s with a parked store connection (%s), password verified",
		      ds->session_id, p->sel.mailbox ? p->sel.mailbox : "-");
		view_counter_login(c, c->password);
		wipe_free(&c->password);
		resume_with_parked(c, p);
		return;
	}
	open_pimap_session(c);
	if (c->ds)
		view_counter_login(c, c->password);
	wipe_free(&c->password);
	if (c->ds) {
		/* The password is good (the store said so): remember it for parked resumes. */
		memcpy(c->ds->cred_hash, h, sizeof(h));
		c->ds->have_hash = true;
		c->ds->hash_verified_at = mono_now();
	}
}

/*
 * The per-user and per-device limits, checked only once the credentials are
 * known good (before that, an answer would tell a stranger about the user's
 * devices). Writes "[LIMIT] ..." into why and returns true if refused.
 */
struct evict_ctx {
	struct gateway_server *srv;
	const char *user;
};

/* A device with a session in memory (connections attached or parked) is never forgotten. */
static bool device_in_use(const char *device, void *ctx)
{
	struct evict_ctx *ec = ctx;
	return session_find(ec->srv, ec->user, device) != NULL;
}

static bool session_limits_refuse(struct gw_conn *c, char *why, size_t whylen)
{
	struct gateway_server *srv = c->srv;
	const char *user = c->login.store_user, *device = c->login.device_id;
	struct device_session *ds = session_find(srv, user, device);
	if (ds && (long long)ds->attached >= srv->cfg->max_connections_per_device) {
		snprintf(why, whylen, "[LIMIT] Too many connections for this device (limits.max_connections_per_device = %lld).",
		         srv->cfg->max_connections_per_device);
		return true;
	}
	if (!ds && (long long)sessions_of_user(srv, user) >= srv->cfg->max_sessions_per_user) {
		snprintf(why, whylen, "[LIMIT] Too many sessions for this user (limits.max_sessions_per_user = %lld).",
		         srv->cfg->max_sessions_per_user);
		return true;
	}
	/* Only a device the gateway has never seen counts against the limit. */
	bool known = true;
	unsigned ndev = 0;
	if (!ds && gw_state_device_known(srv->db, user, device, &known) == 0 && !known &&
	    gw_state_device_count(srv->db, user, &ndev) == 0 && (long long)ndev >= srv->cfg->max_devices_per_user) {
		/* Make room by forgetting the device unused longest, if none of its sessions can
		 * still be resumed and it has been idle for a whole session lifetime. */
		char evicted[PIMAP_MAX_DEVICE_ID + 1];
		struct evict_ctx ec = {srv, user};
		if (gw_state_device_evict(srv->db, user, wall_now() - srv->cfg->session_lifetime, device_in_use, &ec,
		                          evicted, sizeof(evicted)) == 0) {
			clog_(c, LOG_LEVEL_INFO, "device %s of %s forgotten (unused longest) to make room for %s", evicted,
			      user, device);
			return false;
		}
		snprintf(why, whylen, "[LIMIT] Too many devices for this user (limits.max_devices_per_user = %lld).",
		         srv->cfg->max_devices_per_user);
		return true;
	}
	return false;
}

/*
 * The parked connection a login of the device takes back. A client that named
 * its connection (ID "x-pimap-resume") gets the one parked under that name or
 * none: taking another connection's folder would hand it a view it never had.
 * Other clients get the oldest that stays.
 */
static struct parked *parked_resumable(struct device_session *ds, const char *token)
{
	for (struct parked *q = ds->parked; q; q = q->next)
		if (!q->close_after_snapshot && q->sc && (!*token || strcmp(q->resume_token, token) == 0))
			return q;
	return NULL;
}

/* Check the login name and throttle; then resume a parked connection or log in to the store. */
static void start_login(struct gw_conn *c, const char *tag, const char *name, size_t name_len,
                        const char *password, size_t pw_len)
{
	struct gateway_server *srv = c->srv;
	char err[256];
	if (tag != c->login_tag) /* AUTHENTICATE without SASL-IR passes c->login_tag itself */
		snprintf(c->login_tag, sizeof(c->login_tag), "%s", tag);
	if (throttled(c)) {
		clog_(c, LOG_LEVEL_WARN, "login throttled: too many failures from this address");
		client_say(c, "%s NO [UNAVAILABLE] Too many failed logins; try again later (throttled).", tag);
		client_flush(c);
		return;
	}
	if (pimap_login_parse(name, name_len, &c->login, err, sizeof(err)) < 0) {
		client_say(c, "%s NO [AUTHENTICATIONFAILED] %s", tag, err);
		client_flush(c);
		return;
	}
	if (memchr(password, '\0', pw_len)) {
		pimap_login_free(&c->login);
		client_say(c, "%s NO [AUTHENTICATIONFAILED] Authentication failed.", tag);
		client_flush(c);
		return;
	}
	const char *user = c->login.store_user, *device = c->login.device_id;
	if (device) {
		struct device_session *ds = session_find(srv, user, device);
		if (ds && session_expire_if_due(ds))
			ds = NULL;
		/* A parked connection and the same credentials, recently proved by the
		 * store: resume without a store round trip. Otherwise the store decides
		 * and conn_store_login_done takes the parked connection back. */
		struct parked *resumable = ds ? parked_resumable(ds, c->resume_token) : NULL;
		if (resumable && ds->have_hash && mono_now() - ds->hash_verified_at < CRED_REVERIFY_AFTER) {
			uint8_t h[CRED_HASH_LEN];
			char *pw = xmalloc(pw_len + 1);
			memcpy(pw, password, pw_len);
			pw[pw_len] = '\0';
			credential_hash(srv, user, pw, h);
			wipe_free(&pw);
			char why[256];
			if (hash_equal(h, ds->cred_hash) && session_limits_refuse(c, why, sizeof(why))) {
				login_fail(c, why);
				return;
			}
			if (hash_equal(h, ds->cred_hash)) {
				keep_send_secret(c, password, pw_len);
				c->state = C_LOGGING_IN;
				c->ds = ds;
				ds->attached++;
				session_save(ds, GW_SESSION_ATTACHED);
				struct parked *p = resumable;
				clog_(c, LOG_LEVEL_INFO, "resuming session %s with a parked store connection (%s)",
				      ds->session_id, p->sel.mailbox ? p->sel.mailbox : "-");
				char *pwc = xmalloc(pw_len + 1);
				memcpy(pwc, password, pw_len);
				pwc[pw_len] = '\0';
				view_counter_login(c, pwc);
				wipe_free(&pwc);
				resume_with_parked(c, p);
				return;
			}
		}
	}
	c->password = xmalloc(pw_len + 1);
	memcpy(c->password, password, pw_len);
	c->password[pw_len] = '\0';
	c->state = C_LOGGING_IN;
	const struct store_target *t = device ? &srv->target_pimap : &srv->target;
	c->sc = store_conn_open(srv->loop, t, user, c->password, c->prefix, &conn_store_ops, c);
	if (!c->sc) {
		login_fail(c, "[UNAVAILABLE] The mail store is not reachable now.");
		return;
	}
	c->throttle_slot = login_throttle_begin(srv->throttle, c->peer, ev_now(srv->loop));
}

static bool login_allowed_here(const struct gw_conn *c)
{
	const struct gateway_config *cfg = c->srv->cfg;
	if (stream_is_tls(c->client) || c->outer_tls)
		return true;
	return cfg->plaintext_login == PLAINTEXT_LOGIN_ALWAYS ||
	       (cfg->plaintext_login == PLAINTEXT_LOGIN_LOOPBACK && c->loopback);
}

static void auth_plain_response(struct gw_conn *c, const char *tag, const char *b64, size_t len)
{
	uint8_t raw[SASL_PLAIN_MAX + 1];
	struct sasl_plain plain;
	enum sasl_plain_result r = sasl_plain_decode(b64, len, raw, &plain);
	if (r == SASL_PLAIN_OK)
		start_login(c, tag, plain.user, plain.user_len, plain.password, plain.password_len);
	else
		client_say(c, "%s %s", tag, sasl_plain_refusal(r));
	gnutls_memset(raw, 0, sizeof(raw));
	if (r != SASL_PLAIN_OK)
		client_flush(c);
}

static void client_starttls(struct gw_conn *c, const struct imap_msg *m)
{
	char err[256];
	if (stream_is_tls(c->client) || c->outer_tls) {
		client_say(c, "%s BAD TLS is already active", m->tag);
		return;
	}
	client_say(c, "%s OK Begin TLS negotiation now", m->tag);
	client_flush(c);
	c->tls_ready = false;
	c->greeted = true; /* no second greeting after STARTTLS */
	/* Nothing learnt before TLS counts after it (RFC 3501 6.2.1): a resume
	 * token sent in plaintext may have been injected. */
	c->resume_token[0] = '\0';
	imap_parser_reset(c->parser);
	if (stream_start_tls_server(c->client, c->srv->server_creds, err, sizeof(err)) < 0)
		conn_close(c, err);
}

/*
 * ID before login (RFC 2971). One field matters: "x-pimap-resume" names the
 * client's connection, so that after a link loss it takes back its own
 * parked store connection (pimap-proxy sends one per client connection).
 * A value that is not a short token is ignored.
 */
static void client_id_fields(struct gw_conn *c, const struct imap_msg *m)
{
	if (m->nargs < 2 || m->args[1].type != IMAP_ARG_LIST)
		return;
	const struct imap_arg *kv = m->args[1].list;
	for (size_t i = 0; i + 1 < m->args[1].list_count; i += 2) {
		if (!imap_arg_is_string(&kv[i]) || !imap_arg_is_string(&kv[i + 1]) ||
		    strcasecmp(kv[i].str, "x-pimap-resume") != 0)
			continue;
		const struct imap_arg *v = &kv[i + 1];
		bool ok = v->len > 0 && v->len <= RESUME_TOKEN_MAX && !imap_arg_is_atom(v, "NIL");
		for (size_t k = 0; ok && k < v->len; k++)
			ok = isalnum((unsigned char)v->str[k]) || strchr("._-", v->str[k]);
		if (ok)
			memcpy(c->resume_token, v->str, v->len + 1);
	}
}

static void dispatch_prelogin(struct gw_conn *c, const struct imap_msg *m)
{
	if (m->nargs < 1 || m->args[0].type != IMAP_ARG_ATOM) {
		client_say(c, "%s BAD Missing command", m->tag);
		return;
	}
	if (cmd_is(m, "CAPABILITY")) {
		struct buf caps;
		buf_init(&caps, 0);
		client_caps(c, &caps);
		buf_append(&caps, "", 1);
		client_say(c, "* CAPABILITY %s", (const char *)buf_head(&caps));
		client_say(c, "%s OK Capability completed.", m->tag);
		buf_free(&caps);
		return;
	}
	if (cmd_is(m, "NOOP")) {
		client_say(c, "%s OK NOOP completed.", m->tag);
		return;
	}
	if (cmd_is(m, "ID")) {
		client_id_fields(c, m);
		client_say(c, "* ID (\"name\" \"pimap-gateway\" \"version\" \"%s\")", PACKAGE_VERSION);
		client_say(c, "%s OK ID completed.", m->tag);
		return;
	}
	if (cmd_is(m, "LOGOUT")) {
		client_say(c, "* BYE Logging out");
		client_say(c, "%s OK Logout completed.", m->tag);
		client_flush(c);
		conn_close(c, "logout");
		return;
	}
	if (cmd_is(m, "STARTTLS")) {
		client_starttls(c, m);
		return;
	}
	if (cmd_is(m, "LOGIN") || cmd_is(m, "AUTHENTICATE")) {
		if (!login_allowed_here(c)) {
			client_say(c, "%s NO [PRIVACYREQUIRED] Use STARTTLS or the TLS port before logging in", m->tag);
			return;
		}
		if (cmd_is(m, "LOGIN")) {
			if (m->nargs != 3 || !imap_arg_is_string(&m->args[1]) || !imap_arg_is_string(&m->args[2])) {
				client_say(c, "%s BAD LOGIN needs a user name and a password", m->tag);
				return;
			}
			start_login(c, m->tag, m->args[1].str, m->args[1].len, m->args[2].str, m->args[2].len);
			return;
		}
		if (m->nargs < 2 || m->nargs > 3 || m->args[1].type != IMAP_ARG_ATOM) {
			client_say(c, "%s BAD AUTHENTICATE needs a mechanism name", m->tag);
			return;
		}
		if (!imap_arg_is_atom(&m->args[1], "PLAIN")) {
			client_say(c, "%s NO [CANNOT] Only AUTHENTICATE PLAIN is supported", m->tag);
			return;
		}
		if (m->nargs == 3) {
			auth_plain_response(c, m->tag, m->args[2].str, m->args[2].len);
			return;
		}
		snprintf(c->login_tag, sizeof(c->login_tag), "%s", m->tag);
		c->state = C_AUTH_PLAIN;
		client_say(c, "+ ");
		imap_parser_expect_raw_line(c->parser);
		return;
	}
	client_say(c, "%s BAD Command unknown or not valid before login", m->tag);
}

/* ------------------------------------------------------------------------ */
/* client input                                                              */

static bool client_may_proceed(const struct gw_conn *c)
{
	if (c->closing || c->logging_out || c->state == C_LOGGING_IN || c->serial || c->capture)
		return false;
	if (c->state == C_AUTHED) {
		if (c->idle_cmd && !c->idle_done_pending)
			return true; /* waiting for DONE */
		if (c->idle_cmd)
			return false;
		if ((long long)c->ncmds >= c->srv->cfg->max_commands_in_flight)
			return false;
		/* A P-IMAP client gets its commands' responses strictly one command
		 * after another (the store may interleave the untagged data of
		 * pipelined commands): the next command starts when the store has
		 * answered this one. The store is near; the client's link is not. */
		if (c->ds && relay_in_flight(c))
			return false;
		if (c->sc && store_conn_output_full(c->sc))
			return false;
	}
	return !stream_output_full(c->client);
}

static void client_parse_error(struct gw_conn *c)
{
	const char *why = imap_parser_error(c->parser);
	const char *tag = imap_parser_tag(c->parser);
	if (!imap_parser_error_recoverable(c->parser)) {
		/* The stream position is unknowable (a literal may follow): the connection cannot go on. */
		const struct imap_limits *lim = c->state == C_AUTHED ? &c->srv->limits : &c->srv->prelogin_limits;
		if (strstr(why, "line too long"))
			client_say(c, "* BYE [TOOBIG] Line too long (limit %zu bytes)", lim->max_line_length);
		else if (strstr(why, "literal too large"))
			client_say(c, "* BYE [TOOBIG] Literal too large (limit %zu bytes)", lim->max_literal_size);
		else if (strstr(why, "message too large"))
			client_say(c, "* BYE [TOOBIG] Command too large (limit %zu bytes)", lim->max_message_size);
		else
			client_say(c, "* BYE Protocol error: %s", why);
		client_flush(c);
		conn_close(c, why);
		return;
	}
	if (tag && strlen(tag) <= MAX_CLIENT_TAG && c->state == C_AUTHED)
		answer(c, tag, "BAD %s", why);
	else if (tag && strlen(tag) <= MAX_CLIENT_TAG)
		client_say(c, "%s BAD %s", tag, why);
	else
		client_say(c, "* BAD %s", why);
	client_flush(c);
	imap_parser_skip_line(c->parser);
}

static void handle_client_message(struct gw_conn *c, const struct imap_msg *m)
{
	if (m->kind == IMAP_MSG_RAW_LINE) {
		if (c->state == C_AUTH_PLAIN) {
			c->state = C_PRELOGIN;
			auth_plain_response(c, c->login_tag, m->text, m->text_len);
			return;
		}
		if (c->idle_cmd) {
			client_done(c, m);
			return;
		}
		return; /* the rest of a skipped bad line */
	}
	if (m->kind != IMAP_MSG_COMMAND)
		return;
	if (strlen(m->tag) > MAX_CLIENT_TAG) {
		client_say(c, "* BAD Tag too long");
		return;
	}
	/* Before login the timer runs from the connection's start: NOOPs must not keep a stranger here. */
	if (c->state == C_AUTHED)
		ev_timer_again(c->srv->loop, &c->activity);
	if (c->state == C_AUTHED)
		dispatch_authed(c, m);
	else
		dispatch_prelogin(c, m);
}

static void process_client_input(struct gw_conn *c)
{
	/* Completing a command can ask for more input from inside the handling
	 * of the current one; the outer loop will get to it. */
	if (c->in_input)
		return;
	c->in_input = true;
	process_client_input_loop(c);
	c->in_input = false;
	if (c->client && !c->closing)
		stream_pause_reading(c->client, !client_may_proceed(c) && c->state == C_AUTHED);
}

static void process_client_input_loop(struct gw_conn *c)
{
	while (c->client && !c->closing && c->greeted && c->tls_ready && client_may_proceed(c)) {
		struct buf *in = stream_input(c->client);
		if (!buf_len(in))
			break;
		size_t used = 0;
		enum imap_parse_result r = imap_parser_feed(c->parser, buf_head(in), buf_len(in), &used);
		if (r == IMAP_PARSE_ERROR) {
			buf_consume(in, used);
			client_parse_error(c);
			continue;
		}
		if (r == IMAP_PARSE_NEED_MORE) {
			buf_consume(in, used);
			if (imap_parser_wants_continuation(c->parser)) {
				client_say(c, "+ OK");
				client_flush(c);
			}
			break;
		}
		const struct imap_msg *m = imap_parser_msg(c->parser);
		log_trace_imap(c->prefix, TRACE_CLIENT_IN, m->raw, m->raw_len, c->state == C_AUTH_PLAIN);
		/* Consume first (m lives in the parser): after COMPRESS or STARTTLS
		 * the bytes behind this command are read differently. */
		buf_consume(in, used);
		handle_client_message(c, m);
		if (c->closing || !c->client)
			return;
		imap_parser_reset(c->parser);
		if (c->tls_ready == false)
			return; /* STARTTLS: the stream discarded the rest */
		if (c->idle_cmd && !c->idle_done_pending)
			imap_parser_expect_raw_line(c->parser);
		if (c->state == C_AUTH_PLAIN)
			imap_parser_expect_raw_line(c->parser);
	}
	client_flush(c);
}

/* ------------------------------------------------------------------------ */
/* connection lifetime                                                       */

static void conn_destroy(void *arg)
{
	struct gw_conn *c = arg;
	imap_parser_free(c->parser);
	buf_free(&c->held);
	free(c);
}

/* Hand the store connection to the session so the device can resume into it. */
static void park_store_conn(struct gw_conn *c)
{
	struct device_session *ds = c->ds;
	struct gateway_server *srv = c->srv;
	unsigned nparked = 0;
	for (struct parked *p = ds->parked; p; p = p->next)
		nparked++;
	bool can_park = c->sc && c->sel.mailbox && !c->cu && !c->resume_from && !srv->draining;
	if (!can_park)
		return;
	struct parked *p = xcalloc(1, sizeof(*p));
	/* Over the limit the connection still stays long enough to save the client's view. */
	p->close_after_snapshot = (long long)nparked >= srv->cfg->max_connections_per_device;
	p->ds = ds;
	p->sc = c->sc;
	c->sc = NULL;
	folder_state_copy(&p->sel, &c->sel);
	memcpy(p->resume_token, c->resume_token, sizeof(p->resume_token));
	gw_folder_rec_init(&p->view);
	ev_init(&p->refresh, on_parked_refresh);
	p->refresh.repeat = srv->cfg->store_idle_refresh;
	char prefix[256];
	snprintf(prefix, sizeof(prefix), "parked %s#P%s", ds->user, ds->device);
	store_conn_set_prefix(p->sc, prefix);
	store_conn_orphan_commands(p->sc);
	store_conn_set_owner(p->sc, &parked_ops, p);
	/* Events held back (EVENT_FILTER), replies still coming and a NEW_FORMAT fetch
	 * are things the client never saw: a view taken now would claim it had. */
	p->view_trusted = !buf_len(&c->held) && !relay_in_flight(c) && !c->newfetch_active && !c->snap && !c->sendq;
	if (c->sidle != SI_NONE)
		p->idle_in_flight = 1; /* its tagged OK is still to come; it brings no FETCH answers */
	if (c->sidle == SI_ACTIVE)
		store_conn_send_raw(p->sc, "DONE\r\n", 6);
	/* The client's view is the store connection's view now; until the snapshot
	 * is saved, no older view of this folder may be trusted. */
	gw_state_folder_delete(srv->db, ds->user, ds->device, p->sel.mailbox);
	if (c->view)
		view_park(c, p); /* a filtered folder: the view is the client's UIDs as told */
	/* append: FIFO; linked first, since taking the view may let go of it */
	struct parked **pp = &ds->parked;
	while (*pp)
		pp = &(*pp)->next;
	*pp = p;
	free(ds->last_selected);
	ds->last_selected = xstrdup(c->sel.mailbox);
	ds->last_readonly = c->sel.readonly;
	if (c->sidle == SI_STARTING) {
		/* IDLE is on its way: its "+" comes first, then DONE, then the snapshot. */
		p->await_plus = true;
	} else if (!p->view_trusted) {
		parked_skip_view(p);
	} else {
		parked_take_view(p);
	}
}

/* The client had not seen everything the store connection had: no view, RESYNC on resume. */
static void parked_skip_view(struct parked *p)
{
	struct device_session *ds = p->ds;
	log_msg(LOG_LEVEL_INFO, NULL, "session %s#P%s: the connection went away with events not yet delivered: "
	        "RESYNC on resume", ds->user, ds->device);
	p->have_view = false;
	if (p->close_after_snapshot) {
		parked_unlink(p);
		parked_free(p);
		session_maybe_forget(ds);
		return;
	}
	if (!parked_maybe_notify(p))
		parked_start_idle(p);
}

/* Snapshot the view, then IDLE; over the parking limit, let go after the snapshot. */
static void parked_take_view(struct parked *p)
{
	if (!p->have_view) /* a filtered folder's view is taken already */
		p->snap = snapshot_start_ignoring(p->sc, parked_snapshot_done, p, (unsigned)p->idle_in_flight);
	if (p->snap)
		return;
	if (p->close_after_snapshot) {
		struct device_session *ds = p->ds;
		parked_unlink(p);
		parked_free(p);
		session_maybe_forget(ds);
		return;
	}
	parked_start_idle(p);
}

static void conn_detach_session(struct gw_conn *c, bool logout, bool resuming)
{
	struct device_session *ds = c->ds;
	if (!ds)
		return;
	c->ds = NULL;
	view_detach(c, ds);
	if (logout) {
		if (ds->attached)
			ds->attached--;
		if (ds->attached == 0 && !ds->parked) {
			/* Several connections that logged out together each ended only
			 * themselves: the last one gone ends the session. */
			gw_state_session_delete(ds->srv->db, ds->user, ds->device);
			session_unlink_free(ds);
		}
		return;
	}
	c->ds = ds;
	if (!resuming)
		park_store_conn(c);
	c->ds = NULL;
	if (ds->attached)
		ds->attached--;
	if (ds->attached == 0) {
		/* nobody to count for until a login */
		folder_count_free(ds->counter);
		ds->counter = NULL;
		ds->detached_at = wall_now();
		session_save(ds, GW_SESSION_DETACHED);
		session_arm_watch(ds);
	}
	session_maybe_forget(ds);
}

static void conn_close(struct gw_conn *c, const char *why)
{
	if (c->closing)
		return;
	struct gateway_server *srv = c->srv;
	bool logout = why && strcmp(why, "logout") == 0;
	/* Mid-resume the client has not seen the events yet: its saved view must stay as it is. */
	bool resuming = c->state == C_LOGGING_IN || c->resume_from || c->cu || view_resuming(c);
	clog_(c, LOG_LEVEL_INFO, "closing: %s", why ? why : "");
	if (c->resume_from) {
		parked_free(c->resume_from);
		c->resume_from = NULL;
	}
	if (c->cu) {
		catchup_free(c->cu);
		c->cu = NULL;
	}
	if (c->snap) {
		snapshot_free(c->snap);
		c->snap = NULL;
	}
	if (c->leave) {
		folder_state_clear(&c->leave->sel);
		free(c->leave);
		c->leave = NULL;
	}
	if (c->db_resume) {
		db_resume_free(c->db_resume);
		c->db_resume = NULL;
	}
	c->select_hold = NULL;
	if (c->state == C_AUTHED || c->state == C_LOGGING_IN)
		conn_detach_session(c, logout, resuming);
	view_drop_all(c);
	c->closing = true;
	c->state = C_CLOSED;
	ev_timer_stop(srv->loop, &c->activity);
	if (c->sc) {
		store_conn_orphan_commands(c->sc);
		store_conn_set_owner(c->sc, NULL, NULL);
		store_conn_close(c->sc);
		c->sc = NULL;
	}
	while (c->cmds) {
		struct client_cmd *cmd = c->cmds;
		c->cmds = cmd->next;
		cmd_free(cmd);
	}
	c->cmds_tail = NULL;
	while (c->sendq) {
		struct queued_send *q = c->sendq;
		c->sendq = q->next;
		buf_free(&q->text);
		free(q);
	}
	if (c->capture) {
		buf_free(c->capture);
		free(c->capture);
		c->capture = NULL;
	}
	wipe_free(&c->password);
	wipe_free(&c->send_secret);
	pimap_login_free(&c->login);
	folder_state_clear(&c->sel);
	throttle_end(c, false);
	if (c->client)
		stream_close_after_flush(c->client);
	c->client = NULL;
	for (struct gw_conn **pp = &srv->conns; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	srv->nconns--;
	loop_defer_free(conn_destroy, c);
	if (srv->draining && srv->nconns == 0)
		ev_break(srv->loop, EVBREAK_ONE);
}

static void on_activity_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct gw_conn *c = (struct gw_conn *)((char *)w - offsetof(struct gw_conn, activity));
	(void)loop;
	(void)revents;
	if (c->state == C_AUTHED && (c->idle_cmd || c->in_response)) {
		/* IDLE is not silence; an in-response session's silence between requests is the binding's to time. */
		ev_timer_again(loop, w);
		return;
	}
	client_say(c, "* BYE %s", c->state == C_AUTHED ? "Autologout; idle for too long" : "Login timed out");
	client_flush(c);
	conn_close(c, "timeout");
}

static void on_client_event(struct stream *st, enum stream_event ev, const char *reason, void *ctx)
{
	struct gw_conn *c = ctx;
	(void)st;
	switch (ev) {
	case STREAM_EV_TLS_READY:
		c->tls_ready = true;
		greet(c);
		process_client_input(c);
		return;
	case STREAM_EV_DATA:
		process_client_input(c);
		return;
	case STREAM_EV_DRAINED:
		if (c->sc)
			store_conn_pause_reading(c->sc, false);
		process_client_input(c);
		return;
	case STREAM_EV_EOF:
		conn_close(c, "client closed the connection");
		return;
	case STREAM_EV_ERROR:
		conn_close(c, reason ? reason : "client connection error");
		return;
	case STREAM_EV_CONNECTED:
		return;
	}
}


/* A new client connection on fd (owned from here on); NULL if refused (fd closed). */
static struct gw_conn *conn_start(struct gateway_server *srv, int fd, const char *peer, bool loopback)
{
	if (srv->draining) {
		close(fd);
		return NULL;
	}
	if ((long long)srv->nconns >= srv->cfg->max_clients) {
		log_warn("refusing %s: limits.max_clients (%lld) reached", peer, srv->cfg->max_clients);
		close(fd);
		return NULL;
	}
	struct gw_conn *c = xcalloc(1, sizeof(*c));
	c->srv = srv;
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	c->id = ++srv->next_conn_id;
	snprintf(c->prefix, sizeof(c->prefix), "c%lu %s", c->id, peer);
	c->loopback = loopback;
	c->parser = imap_parser_new(IMAP_PARSE_COMMANDS, &srv->prelogin_limits);
	buf_init(&c->held, 0);
	c->next = srv->conns;
	srv->conns = c;
	srv->nconns++;
	ev_init(&c->activity, on_activity_timeout);
	c->activity.repeat = srv->cfg->preauth_timeout;
	ev_timer_again(srv->loop, &c->activity);
	c->client = stream_new_fd(srv->loop, fd, c->prefix, srv->cfg->max_output_queue, on_client_event, c);
	return c;
}

static void on_accept(struct listener *l, int fd, const char *peer, void *ctx)
{
	struct gateway_server *srv = ctx;
	char err[256];
	struct gw_conn *c = conn_start(srv, fd, peer, listener_peer_is_loopback(fd));
	if (!c)
		return;
	clog_(c, LOG_LEVEL_INFO, "connected to %s", listener_address(l));
	if (listener_implicit_tls(l)) {
		if (stream_start_tls_server(c->client, srv->server_creds, err, sizeof(err)) < 0)
			conn_close(c, err);
	} else {
		c->tls_ready = true;
		greet(c);
	}
}

unsigned long gateway_attach_secured(struct gateway_server *srv, int fd, const char *peer, bool loopback,
                                     bool in_response)
{
	struct gw_conn *c = conn_start(srv, fd, peer, loopback);
	if (!c)
		return 0;
	c->outer_tls = true;
	c->in_response = in_response;
	clog_(c, LOG_LEVEL_INFO, "connected over HTTPS (%s mode)", in_response ? "in-response" : "persistent");
	c->tls_ready = true;
	greet(c);
	return c->id;
}

void gateway_conn_set_quiet(struct gateway_server *srv, unsigned long id, bool quiet)
{
	for (struct gw_conn *c = srv->conns; c; c = c->next)
		if (c->id == id)
			c->quiet = quiet;
}

void gateway_conn_set_peer(struct gateway_server *srv, unsigned long id, const char *peer)
{
	for (struct gw_conn *c = srv->conns; c; c = c->next) {
		if (c->id != id)
			continue;
		snprintf(c->peer, sizeof(c->peer), "%s", peer);
		if (c->ds && c->state == C_AUTHED)
			outband_device_seen(srv->outband, c->ds->user, c->ds->device, peer);
	}
}

/* ------------------------------------------------------------------------ */
/* server                                                                    */


static void on_expiry(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct gateway_server *srv = w->data;
	(void)loop;
	(void)revents;
	for (struct device_session *ds = srv->sessions, *next; ds; ds = next) {
		next = ds->next;
		session_expire_if_due(ds);
	}
	view_tick_all(srv);
}

static void apply_limits(struct gateway_server *srv)
{
	const struct gateway_config *cfg = srv->cfg;
	srv->limits.max_line_length = cfg->max_line_length;
	srv->limits.max_literal_size = cfg->max_literal_size;
	srv->limits.max_list_depth = (unsigned)cfg->max_list_depth;
	srv->limits.max_args = IMAP_DEFAULT_MAX_ARGS;
	srv->limits.max_message_size = cfg->max_command_size;
	srv->prelogin_limits = srv->limits;
	if (srv->prelogin_limits.max_literal_size > PRELOGIN_MAX_LITERAL)
		srv->prelogin_limits.max_literal_size = PRELOGIN_MAX_LITERAL;
	srv->prelogin_limits.max_message_size = PRELOGIN_MAX_COMMAND;
	/* Store responses: FETCH literals are the store's to size; keep the line limit. */
	srv->target.limits = srv->limits;
	srv->target.limits.max_literal_size = (size_t)1 << 30;
	srv->target.limits.max_message_size = 0;
	srv->target.out_limit = cfg->max_output_queue;
	srv->target.connect_timeout = cfg->store_connect_timeout;
	srv->target_pimap = srv->target;
	srv->target_pimap.enable_condstore = true;
}

static void on_drain_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)w;
	(void)revents;
	log_warn("drain timeout: closing the remaining connections");
	ev_break(loop, EVBREAK_ONE);
}

struct gateway_server *gateway_server_new(struct ev_loop *loop, const struct gateway_config *cfg, char *err,
                                          size_t errlen)
{
	if (!cfg->store_url || !*cfg->store_url) {
		snprintf(err, errlen, "store.url is required");
		return NULL;
	}
	struct gateway_server *srv = xcalloc(1, sizeof(*srv));
	srv->loop = loop;
	srv->cfg = cfg;
	srv->throttle = login_throttle_new(THROTTLE_WINDOW, THROTTLE_MAX_ADDRESSES);
	gnutls_rnd(GNUTLS_RND_KEY, srv->hash_key, sizeof(srv->hash_key));
	if (url_parse(cfg->store_url, &srv->store_url, err, errlen) < 0)
		goto fail;
	if (srv->store_url.is_gateway) {
		snprintf(err, errlen, "store.url must be imaps:// or imap:// (a standard IMAP store)");
		goto fail;
	}
	snprintf(srv->target.host, sizeof(srv->target.host), "%s", srv->store_url.host);
	snprintf(srv->target.port, sizeof(srv->target.port), "%s", srv->store_url.port);
	srv->target.implicit_tls = srv->store_url.implicit_tls;
	srv->target.allow_plaintext = cfg->store_allow_plaintext;
	srv->target.server_name = cfg->store_server_name;
	srv->target.compress = cfg->store_compress;
	srv->store_creds = tlsio_client_creds_new(cfg->store_ca_file, err, errlen);
	if (!srv->store_creds)
		goto fail;
	srv->target.creds = srv->store_creds;
	apply_limits(srv);

	const char *dir = *cfg->state_dir ? cfg->state_dir : "/var/lib/pimap-gateway";
	if (daemon_make_dirs(dir, err, errlen) < 0)
		goto fail;
	char cert[4096], key[4096];
	if (*cfg->tls_cert_file || *cfg->tls_key_file) {
		if (!*cfg->tls_cert_file || !*cfg->tls_key_file) {
			snprintf(err, errlen, "tls.cert and tls.key must be set together");
			goto fail;
		}
		snprintf(cert, sizeof(cert), "%s", cfg->tls_cert_file);
		snprintf(key, sizeof(key), "%s", cfg->tls_key_file);
	} else {
		snprintf(cert, sizeof(cert), "%s/gateway-cert.pem", dir);
		snprintf(key, sizeof(key), "%s/gateway-key.pem", dir);
		if (tlsio_ensure_self_signed(cert, key, err, errlen) < 0)
			goto fail;
	}
	srv->server_creds = tlsio_server_creds_new(cert, key, err, errlen);
	if (!srv->server_creds)
		goto fail;
	srv->db = gw_state_open(dir, err, errlen);
	if (!srv->db)
		goto fail;
	srv->deliver = gw_deliver_new(loop, cfg, &srv->target, dir, err, errlen);
	if (!srv->deliver && *err)
		goto fail;
	for (int pass = 0; pass < 2; pass++) {
		char **addrs = pass == 0 ? cfg->listen_pimaps : cfg->listen_pimap;
		for (char **a = addrs; a && *a; a++) {
			if (strcasecmp(*a, "none") == 0 || **a == '\0')
				continue;
			struct listener *l = listener_new(loop, *a, pass == 0, on_accept, srv, err, errlen);
			if (!l)
				goto fail;
			srv->listeners = xrealloc(srv->listeners, (srv->nlisteners + 1) * sizeof(*srv->listeners));
			srv->listeners[srv->nlisteners++] = l;
			log_info("listening on %s (%s)", *a, pass == 0 ? "P-IMAP over TLS" : "P-IMAP, STARTTLS");
		}
	}
	srv->outband = outband_new(loop, cfg, srv->db, err, errlen);
	if (!srv->outband)
		goto fail;
	if (http_binding_new(loop, srv, cfg, srv->server_creds, &srv->http, err, errlen) < 0)
		goto fail;
	if (srv->nlisteners == 0 && !srv->http) {
		snprintf(err, errlen, "no listener configured (listen.pimaps / listen.pimap / listen.https)");
		goto fail;
	}
	ev_timer_init(&srv->expiry, on_expiry, EXPIRY_CHECK_INTERVAL, EXPIRY_CHECK_INTERVAL);
	srv->expiry.data = srv;
	ev_timer_start(loop, &srv->expiry);
	ev_unref(loop); /* housekeeping must not keep the loop alive */
	ev_init(&srv->drain_timer, on_drain_timeout);
	log_info("store %s://%s:%s, state in %s", url_scheme_name(srv->store_url.scheme), srv->target.host,
	         srv->target.port, dir);
	return srv;
fail:
	gateway_server_free(srv);
	return NULL;
}

void gateway_server_reconfigure(struct gateway_server *srv, const struct gateway_config *cfg)
{
	const struct gateway_config *old = srv->cfg;
	srv->cfg = cfg;
	/* The old config is freed after this call: nothing may keep pointing into it. */
	srv->target.server_name = cfg->store_server_name;
	apply_limits(srv);
	http_binding_reconfigure(srv->http, cfg);
	outband_reconfigure(srv->outband, cfg);
	if (strcmp(old->store_url, cfg->store_url) != 0)
		log_warn("store.url changed: takes effect after a restart");
	if (strcmp(old->state_dir, cfg->state_dir) != 0)
		log_warn("state_dir changed: takes effect after a restart");
	if (strcmp(old->tls_cert_file, cfg->tls_cert_file) != 0 || strcmp(old->tls_key_file, cfg->tls_key_file) != 0)
		log_warn("tls.cert/tls.key changed: take effect after a restart");
	if (strcmp(old->store_ca_file, cfg->store_ca_file) != 0)
		log_warn("store.ca_file changed: takes effect after a restart");
	if (srv->deliver)
		gw_deliver_reconfigure(srv->deliver, cfg);
	if (strcmp(old->submission_url, cfg->submission_url) != 0 ||
	    strcmp(old->submission_ca_file, cfg->submission_ca_file) != 0 ||
	    strcmp(old->submission_server_name, cfg->submission_server_name) != 0 ||
	    old->submission_allow_plaintext != cfg->submission_allow_plaintext)
		log_warn("submission.url/ca_file/server_name/allow_plaintext changed: take effect after a restart");
	/* Existing parked connections keep their refresh interval until they re-IDLE. */
}

/* SIGTERM: save the view of every attached connection, then let them go. */
static void drain_snapshot_done(struct snapshot *sn, bool ok, void *ctx)
{
	struct gw_conn *c = ctx;
	if (c->ds && c->sel.mailbox && ok) {
		struct gw_folder_rec rec;
		folder_rec_from_snapshot(&rec, &c->sel, sn);
		gw_state_folder_save(c->srv->db, c->ds->user, c->ds->device, c->sel.mailbox, &rec);
		gw_folder_rec_free(&rec);
	} else if (c->ds && c->sel.mailbox) {
		gw_state_folder_delete(c->srv->db, c->ds->user, c->ds->device, c->sel.mailbox);
	}
	c->snap = NULL;
	snapshot_free(sn);
	client_say(c, "* BYE [UNAVAILABLE] pimap-gateway is restarting; your session is kept");
	client_flush(c);
	conn_close(c, "drain");
}

void gateway_server_drain(struct gateway_server *srv)
{
	if (srv->draining)
		return;
	srv->draining = true;
	for (size_t i = 0; i < srv->nlisteners; i++)
		listener_pause(srv->listeners[i], true);
	http_binding_drain(srv->http);
	log_info("draining %u connections", srv->nconns);
	for (struct gw_conn *c = srv->conns, *next; c; c = next) {
		next = c->next;
		/* Only a client that has seen everything gets its view saved (no held events, no fetch under way). */
		bool seen_all = !buf_len(&c->held) && !c->newfetch_active;
		if (c->state == C_AUTHED && c->ds && c->view && seen_all && view_drain_save(c)) {
			client_say(c, "* BYE [UNAVAILABLE] pimap-gateway is restarting; your session is kept");
			client_flush(c);
			conn_close(c, "drain");
			continue;
		}
		if (c->state == C_AUTHED && c->ds && c->sc && c->sel.mailbox && !c->snap && !c->cu && seen_all &&
		    c->sidle == SI_NONE && !c->sendq && store_conn_in_flight(c->sc) == 0) {
			/* Record the client's view and where it was, so the device resumes without RESYNC. */
			free(c->ds->last_selected);
			c->ds->last_selected = xstrdup(c->sel.mailbox);
			c->ds->last_readonly = c->sel.readonly;
			c->snap = snapshot_start(c->sc, drain_snapshot_done, c);
			if (c->snap)
				continue;
		}
		if (c->state == C_AUTHED && c->ds && c->sc && c->sel.mailbox && c->sidle == SI_ACTIVE && !c->snap &&
		    seen_all && store_conn_in_flight(c->sc) == 1) {
			/* In IDLE: end it, then snapshot when the store confirms. */
			free(c->ds->last_selected);
			c->ds->last_selected = xstrdup(c->sel.mailbox);
			c->ds->last_readonly = c->sel.readonly;
			c->idle_cmd = NULL; /* the client will get BYE, not an IDLE OK */
			c->serial = true;
			store_conn_orphan_commands(c->sc);
			c->sidle = SI_NONE;
			store_conn_send_raw(c->sc, "DONE\r\n", 6);
			c->snap = snapshot_start_ignoring(c->sc, drain_snapshot_done, c, 1);
			if (c->snap)
				continue;
		}
		client_say(c, "* BYE [UNAVAILABLE] pimap-gateway is shutting down");
		client_flush(c);
		conn_close(c, "drain");
	}
	/* Parked connections: their views were saved when they were parked. */
	for (struct device_session *ds = srv->sessions; ds; ds = ds->next) {
		ds->detached_at = ds->detached_at ? ds->detached_at : wall_now();
	}
	if (srv->nconns == 0) {
		ev_break(srv->loop, EVBREAK_ONE);
		return;
	}
	srv->drain_timer.repeat = srv->cfg->drain_timeout;
	ev_timer_again(srv->loop, &srv->drain_timer);
}

unsigned gateway_server_connection_count(const struct gateway_server *srv)
{
	return srv->nconns;
}

void gateway_server_dump(const struct gateway_server *srv)
{
	log_info("%u connections", srv->nconns);
	for (const struct gw_conn *c = srv->conns; c; c = c->next)
		log_info("  %s: %s %s%s%s, %u commands in flight, folder %s", c->prefix,
		         c->state == C_AUTHED ? "authenticated" : "not authenticated",
		         c->login.store_user ? c->login.store_user : "", c->ds ? " device " : "",
		         c->ds ? c->ds->device : "", c->ncmds, c->sel.mailbox ? c->sel.mailbox : "-");
	for (const struct device_session *ds = srv->sessions; ds; ds = ds->next) {
		unsigned n = 0;
		for (const struct parked *p = ds->parked; p; p = p->next)
			n++;
		log_info("  session %s %s#P%s: %u attached, %u parked", ds->session_id, ds->user, ds->device,
		         ds->attached, n);
	}
}

void gateway_server_free(struct gateway_server *srv)
{
	if (!srv)
		return;
	while (srv->conns)
		conn_close(srv->conns, "shutdown");
	/* Sessions that still have an attached record are saved as detached: a clean stop. */
	while (srv->sessions) {
		struct device_session *ds = srv->sessions;
		if (!ds->detached_at)
			ds->detached_at = wall_now();
		if (srv->db)
			session_save(ds, GW_SESSION_DETACHED);
		session_unlink_free(ds);
	}
	http_binding_free(srv->http);
	for (size_t i = 0; i < srv->nlisteners; i++)
		listener_free(srv->listeners[i]);
	free(srv->listeners);
	outband_free(srv->outband);
	if (ev_is_active(&srv->expiry)) {
		ev_ref(srv->loop);
		ev_timer_stop(srv->loop, &srv->expiry);
	}
	ev_timer_stop(srv->loop, &srv->drain_timer);
	gw_deliver_free(srv->deliver);
	if (srv->db)
		gw_state_close(srv->db);
	if (srv->server_creds)
		tlsio_creds_unref(srv->server_creds);
	if (srv->store_creds)
		tlsio_creds_unref(srv->store_creds);
	login_throttle_free(srv->throttle);
	free(srv);
}
