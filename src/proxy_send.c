/*
 * proxy_send.c - accounts, sending and the outbox of pimap-proxy's SMTP
 * listener (see proxy_send.h).
 *
 * Objects:
 *   sender      the outbox, the accounts, the operations in flight
 *   account     one user: the credential HMAC, the password while it is
 *               needed, one IMAP connection (XDELIVER through the gateway,
 *               reports and copies appended to the store), the outbox
 *               drain and its backoff
 *   sender_op   one AUTH check, one message being sent, or one drain pass
 *
 * A message's way: submitted -> [gateway: XDELIVER on the account's
 * connection | compatibility: an SMTP transaction] -> the client gets the
 * server's reply. When the upstream cannot be reached (no connection, the
 * connection breaks, the gateway says UNAVAILABLE, or smtp.deliver_timeout
 * passes) the message is written to the outbox first and the client gets
 * 250 "queued". The drain then tries the account's queued messages in
 * order, one at a time; a temporary failure stops the pass and arms the
 * backoff; a permanent one (or outbox_max_age passing) replaces the entry
 * by a report that is appended to INBOX (after checking by its Message-ID
 * that an earlier attempt did not already put it there).
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <gnutls/crypto.h>

#include "clock.h"
#include "dsn.h"
#include "imap_write.h"
#include "log.h"
#include "msg_header.h"
#include "outbox.h"
#include "proxy_send.h"
#include "sasl.h"
#include "status_socket.h"
#include "stream.h"
#include "xdeliver.h"

enum op_kind { OP_AUTH, OP_SUBMIT, OP_DRAIN };

/* Where a drain pass is with its current entry. */
enum drain_step {
	DR_IDLE,        /* between entries */
	DR_SEND,        /* sending a queued message */
	DR_DSN_EXAMINE, /* a report: is it in INBOX already? */
	DR_DSN_SEARCH,
	DR_DSN_APPEND,  /* appending it */
	DR_COPY,        /* compatibility mode: appending the sent copy (SAVETO) */
};

struct account;

struct sender_op {
	struct sender_op   *next;
	struct sender      *s;
	struct account     *acct;
	enum op_kind        kind;
	bool                cancelled;    /* the owner is gone: no callback */
	bool                done;         /* answered (or given up); freed when nothing is in flight */
	bool                on_conn;      /* a command of ours is in flight on acct->conn */
	bool                waiting_conn; /* waiting for acct->conn to log in */
	/* OP_AUTH */
	char               *password;
	struct store_conn  *sc;
	sender_auth_cb      auth_cb;
	/* OP_SUBMIT, and the entry a drain works on */
	struct outbox_entry e;
	sender_send_cb      send_cb;
	void               *ctx;
	ev_timer            timer;        /* OP_SUBMIT: smtp.deliver_timeout */
	struct smtp_client *smtp;
	/* an answer found while sender_auth/sender_submit still runs waits for the loop */
	bool                starting;
	bool                deferred;
	enum smtp_auth_result d_auth;
	int                 d_code;
	char                d_enh[16];
	char                d_text[700];
	/* OP_DRAIN */
	enum drain_step     step;
	bool                dsn_present;
	char              **names;        /* the outbox entries of the pass */
	size_t              nnames, next_name;
};

struct account {
	struct account     *next;
	struct sender      *s;
	char               *user;
	uint8_t             hash[SENDER_CRED_HASH_LEN];
	bool                verified;     /* hash holds credentials the upstream accepted in this process */
	char               *password;     /* while needed: sessions or queued messages */
	unsigned            sessions;     /* authenticated SMTP sessions */
	unsigned            queued;       /* entries in the outbox */
	struct store_conn  *conn;         /* IMAP: gateway (plain) or the IMAP server */
	bool                conn_ready;
	ev_timer            conn_idle;
	double              backoff;      /* the next delay before a drain pass; 0 = not failing */
	ev_timer            retry;
	struct sender_op   *drain;        /* the running pass, if any */
};

struct sender {
	struct ev_loop             *loop;
	const struct proxy_config  *cfg;
	struct sender_setup         setup;
	char                        state_dir[4096];
	char                        hostname[256];
	struct outbox              *outbox;   /* NULL: held by another process, nothing can be queued */
	struct account             *accounts;
	struct sender_op           *ops;
	uint8_t                     hash_key[SASL_CRED_KEY_LEN];
	bool                        winding_down;
};

static void slog_(struct account *a, enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void slog_(struct account *a, enum log_level lvl, const char *fmt, ...)
{
	char prefix[300];
	snprintf(prefix, sizeof(prefix), "smtp %s", a ? a->user : "-");
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(lvl, prefix, fmt, ap);
	va_end(ap);
}

static void cred_hash(const struct sender *s, const char *user, const char *password, uint8_t out[SENDER_CRED_HASH_LEN])
{
	sasl_cred_hash(s->hash_key, user, password, out);
}

/* The age of an outbox entry from its name: 16 hex digits of microseconds first. */
static double entry_age(const char *name, double now)
{
	char *end;
	unsigned long long us = strtoull(name, &end, 16);
	return end == name + 16 && us ? now - (double)us / 1e6 : -1;
}

void sender_status(void *sender, struct buf *out)
{
	const struct sender *s = sender;
	char d[32];

	if (!s->outbox) {
		buf_append_str(out, "outbox: held by another process (nothing can be queued here)\n");
		return;
	}
	size_t n;
	char **names = outbox_list(s->outbox, &n);
	if (n == 0) {
		buf_append_str(out, "outbox: empty\n");
	} else {
		double age = entry_age(names[0], clock_wall());
		buf_printf(out, "outbox: %zu queued (%zu bytes)", n, outbox_bytes(s->outbox));
		if (age >= 0) {
			status_duration(age, d, sizeof(d));
			buf_printf(out, ", oldest %s", d);
		}
		buf_append_str(out, "\n");
	}
	outbox_names_free(names, n);
	for (const struct account *a = s->accounts; a; a = a->next) {
		if (!a->queued)
			continue;
		buf_printf(out, "outbox %s: %u queued", a->user, a->queued);
		if (ev_is_active(&a->retry)) {
			status_duration(ev_timer_remaining(s->loop, (ev_timer *)&a->retry), d, sizeof(d));
			buf_printf(out, ", next try in %s", d);
		} else if (a->drain) {
			buf_append_str(out, ", sending");
		}
		buf_append_str(out, "\n");
	}
}

/* ------------------------------------------------------------------------ */
/* accounts                                                                  */

static void account_conn_close(struct account *a);
static void drain_start(struct account *a);
static void on_retry(struct ev_loop *loop, ev_timer *w, int revents);
static void on_conn_idle(struct ev_loop *loop, ev_timer *w, int revents);

static struct account *account_get(struct sender *s, const char *user, bool create)
{
	for (struct account *a = s->accounts; a; a = a->next)
		if (strcmp(a->user, user) == 0)
			return a;
	if (!create)
		return NULL;
	struct account *a = xcalloc(1, sizeof(*a));
	a->s = s;
	a->user = xstrdup(user);
	ev_init(&a->retry, on_retry);
	a->retry.data = a;
	ev_init(&a->conn_idle, on_conn_idle);
	a->conn_idle.data = a;
	a->next = s->accounts;
	s->accounts = a;
	return a;
}

/* Forget the password once nothing needs it (the HMAC stays for offline checks). */
static void account_maybe_forget(struct account *a)
{
	if (a->sessions == 0 && a->queued == 0 && !a->drain && a->password) {
		secret_free(&a->password);
		slog_(a, LOG_LEVEL_DEBUG, "password forgotten (no session, nothing queued)");
	}
}

static void account_set_password(struct account *a, const char *password)
{
	if (a->password && strcmp(a->password, password) == 0)
		return;
	secret_free(&a->password);
	a->password = xstrdup(password);
	cred_hash(a->s, a->user, password, a->hash);
	a->verified = true;
}

/* The password stopped working at the upstream: nothing is sent until the next good login. */
static void account_password_refused(struct account *a)
{
	secret_free(&a->password);
	a->verified = false;
	account_conn_close(a);
}

static void schedule_retry(struct account *a, bool failed)
{
	const struct proxy_config *cfg = a->s->cfg;
	if (a->s->winding_down || !a->queued)
		return;
	if (failed)
		a->backoff = a->backoff <= 0 ? cfg->smtp_retry_min : a->backoff * 2;
	if (a->backoff > cfg->smtp_retry_max)
		a->backoff = cfg->smtp_retry_max;
	double delay = a->backoff > 0 ? a->backoff : cfg->smtp_retry_min;
	ev_timer_stop(a->s->loop, &a->retry);
	ev_timer_set(&a->retry, delay, 0.);
	ev_timer_start(a->s->loop, &a->retry);
	slog_(a, LOG_LEVEL_DEBUG, "%u queued message(s); next try in %.1f s", a->queued, delay);
}

static void on_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct account *a = w->data;
	(void)loop;
	(void)revents;
	drain_start(a);
}

/* ------------------------------------------------------------------------ */
/* operations                                                                */

static struct sender_op *op_new(struct sender *s, struct account *a, enum op_kind kind)
{
	struct sender_op *op = xcalloc(1, sizeof(*op));
	op->s = s;
	op->acct = a;
	op->kind = kind;
	outbox_entry_init(&op->e);
	ev_init(&op->timer, NULL);
	op->next = s->ops;
	s->ops = op;
	return op;
}

static void op_free(struct sender_op *op)
{
	struct sender *s = op->s;
	for (struct sender_op **pp = &s->ops; *pp; pp = &(*pp)->next)
		if (*pp == op) {
			*pp = op->next;
			break;
		}
	ev_timer_stop(s->loop, &op->timer);
	if (op->smtp)
		smtp_client_cancel(op->smtp);
	if (op->sc) {
		store_conn_set_owner(op->sc, NULL, NULL);
		store_conn_close(op->sc);
	}
	secret_free(&op->password);
	outbox_entry_free(&op->e);
	outbox_names_free(op->names, op->nnames);
	free(op);
}

static void wind_down_check(struct sender *s);

/* Free the op if nothing of it is in flight any more. */
static void op_reap(struct sender_op *op)
{
	if (op->done && !op->on_conn && !op->smtp && !op->waiting_conn && !op->deferred) {
		struct sender *s = op->s;
		op_free(op);
		wind_down_check(s);
	}
}

/* The owner's callback, never from inside sender_auth/sender_submit (the owner has no handle yet). */
static void op_callback(struct sender_op *op)
{
	if (op->kind == OP_AUTH && op->auth_cb)
		op->auth_cb(op->d_auth, op->ctx);
	else if (op->kind == OP_SUBMIT && op->send_cb)
		op->send_cb(op->d_code, op->d_enh, op->d_text, op->ctx);
}

static void on_deferred(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct sender_op *op = w->data;
	(void)loop;
	(void)revents;
	op->deferred = false;
	op_callback(op);
	op_reap(op);
}

static void op_answer(struct sender_op *op)
{
	if (!op->starting) {
		op_callback(op);
		return;
	}
	op->deferred = true;
	ev_timer_stop(op->s->loop, &op->timer);
	ev_timer_init(&op->timer, on_deferred, 0., 0.);
	op->timer.data = op;
	ev_timer_start(op->s->loop, &op->timer);
}

void sender_cancel(struct sender_op *op)
{
	if (!op)
		return;
	op->cancelled = true;
	op->auth_cb = NULL;
	op->send_cb = NULL;
	if (op->kind == OP_AUTH && !op->done) {
		op->done = true;
		if (op->sc) {
			store_conn_set_owner(op->sc, NULL, NULL);
			store_conn_close(op->sc);
			op->sc = NULL;
		}
	}
	if (op->kind == OP_SUBMIT && op->smtp && !op->done) {
		/* Compatibility mode: before the final dot the server drops the transaction. */
		smtp_client_cancel(op->smtp);
		op->smtp = NULL;
		op->done = true;
	}
	op_reap(op);
}

/* ------------------------------------------------------------------------ */
/* the account's IMAP connection                                             */

static void conn_login_done(struct store_conn *sc, enum store_login_result r, const char *text, void *ctx);
static void conn_untagged(struct store_conn *sc, const struct imap_msg *m, void *ctx);
static void conn_closed(struct store_conn *sc, const char *reason, void *ctx);

static const struct store_conn_ops conn_ops = {
	.login_done = conn_login_done,
	.untagged = conn_untagged,
	.closed = conn_closed,
};

static void op_conn_ready(struct sender_op *op);
static void op_conn_failed(struct sender_op *op, bool refused, const char *why);

static void account_conn_close(struct account *a)
{
	ev_timer_stop(a->s->loop, &a->conn_idle);
	if (!a->conn)
		return;
	struct store_conn *sc = a->conn;
	a->conn = NULL;
	a->conn_ready = false;
	store_conn_set_owner(sc, NULL, NULL);
	store_conn_close(sc);
	/* Whoever waited or had a command in flight learns of it now. */
	for (struct sender_op *op = a->s->ops, *next; op; op = next) {
		next = op->next;
		if (op->acct == a && (op->on_conn || op->waiting_conn)) {
			op->on_conn = op->waiting_conn = false;
			op_conn_failed(op, false, "the connection to the server was closed");
		}
	}
}

static void conn_touch(struct account *a)
{
	ev_timer_stop(a->s->loop, &a->conn_idle);
	if (a->s->winding_down)
		return; /* closed by wind_down_check once nothing is in flight */
	ev_timer_set(&a->conn_idle, SENDER_CONN_IDLE, 0.);
	ev_timer_start(a->s->loop, &a->conn_idle);
}

static void on_conn_idle(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct account *a = w->data;
	(void)loop;
	(void)revents;
	if (a->conn && store_conn_in_flight(a->conn) == 0 && !a->drain) {
		slog_(a, LOG_LEVEL_DEBUG, "closing the idle connection");
		account_conn_close(a);
	} else if (a->conn) {
		conn_touch(a);
	}
}

/* Run op once the account's connection is logged in (now if it is). */
static void with_conn(struct sender_op *op)
{
	struct account *a = op->acct;
	if (a->conn && a->conn_ready) {
		conn_touch(a);
		op_conn_ready(op);
		return;
	}
	op->waiting_conn = true;
	if (a->conn)
		return; /* logging in already */
	if (!a->password) {
		op->waiting_conn = false;
		op_conn_failed(op, true, "no password known for this account (log in again)");
		return;
	}
	char prefix[300];
	snprintf(prefix, sizeof(prefix), "smtp %s upstream", a->user);
	a->conn = store_conn_open(a->s->loop, &a->s->setup.imap, a->user, a->password, prefix, &conn_ops, a);
	if (!a->conn) {
		op->waiting_conn = false;
		op_conn_failed(op, false, "cannot connect to the server");
	}
}

static void conn_login_done(struct store_conn *sc, enum store_login_result r, const char *text, void *ctx)
{
	struct account *a = ctx;
	(void)sc;
	if (r == STORE_LOGIN_OK) {
		a->conn_ready = true;
		conn_touch(a);
		slog_(a, LOG_LEVEL_DEBUG, "connected to the server");
		for (struct sender_op *op = a->s->ops, *next; op; op = next) {
			next = op->next;
			if (op->acct == a && op->waiting_conn) {
				op->waiting_conn = false;
				op_conn_ready(op);
			}
		}
		return;
	}
	a->conn = NULL;
	a->conn_ready = false;
	slog_(a, LOG_LEVEL_INFO, "server %s: %s", r == STORE_LOGIN_REFUSED ? "refused the login" : "not reachable",
	      text);
	if (r == STORE_LOGIN_REFUSED)
		account_password_refused(a);
	for (struct sender_op *op = a->s->ops, *next; op; op = next) {
		next = op->next;
		if (op->acct == a && op->waiting_conn) {
			op->waiting_conn = false;
			op_conn_failed(op, r == STORE_LOGIN_REFUSED, text);
		}
	}
}

static void conn_closed(struct store_conn *sc, const char *reason, void *ctx)
{
	struct account *a = ctx;
	(void)sc;
	slog_(a, LOG_LEVEL_INFO, "connection to the server lost: %s", reason);
	a->conn = NULL; /* store_conn frees itself after this callback */
	a->conn_ready = false;
	ev_timer_stop(a->s->loop, &a->conn_idle);
	for (struct sender_op *op = a->s->ops, *next; op; op = next) {
		next = op->next;
		if (op->acct == a && (op->on_conn || op->waiting_conn)) {
			op->on_conn = op->waiting_conn = false;
			op_conn_failed(op, false, reason);
		}
	}
}

static void conn_untagged(struct store_conn *sc, const struct imap_msg *m, void *ctx)
{
	struct account *a = ctx;
	(void)sc;
	/* "* SEARCH n" for the report a drain looks for in INBOX */
	if (a->drain && a->drain->step == DR_DSN_SEARCH && m->nargs >= 2 && imap_arg_is_atom(&m->args[0], "SEARCH"))
		a->drain->dsn_present = true;
}

/* ------------------------------------------------------------------------ */
/* AUTH                                                                      */

static void auth_answer(struct sender_op *op, enum smtp_auth_result r)
{
	if (op->done)
		return;
	op->done = true;
	if (r == SMTP_AUTH_OK) {
		struct account *a = op->acct;
		account_set_password(a, op->password);
		a->sessions++;
		if (a->queued && !a->drain)
			drain_start(a);
	}
	secret_free(&op->password);
	op->d_auth = r;
	op_answer(op);
	op_reap(op);
}

static void auth_login_done(struct store_conn *sc, enum store_login_result r, const char *text, void *ctx)
{
	struct sender_op *op = ctx;
	struct account *a = op->acct;
	if (r == STORE_LOGIN_OK) {
		op->sc = NULL;
		/* Keep the connection for this account's work, unless it has one already. */
		if (!a->conn) {
			a->conn = sc;
			a->conn_ready = true;
			store_conn_set_owner(sc, &conn_ops, a);
			conn_touch(a);
		} else {
			store_conn_set_owner(sc, NULL, NULL);
			store_conn_close(sc);
		}
		slog_(a, LOG_LEVEL_INFO, "authenticated (checked with the server)");
		auth_answer(op, SMTP_AUTH_OK);
		return;
	}
	op->sc = NULL;
	if (r == STORE_LOGIN_REFUSED) {
		slog_(a, LOG_LEVEL_INFO, "authentication refused by the server");
		if (a->verified) {
			uint8_t h[SENDER_CRED_HASH_LEN];
			cred_hash(a->s, a->user, op->password, h);
			if (sasl_cred_equal(h, a->hash)) /* the password was changed at the server */
				account_password_refused(a);
		}
		auth_answer(op, SMTP_AUTH_INVALID);
		return;
	}
	/* The upstream cannot be reached: only credentials proved earlier in this process pass. */
	uint8_t h[SENDER_CRED_HASH_LEN];
	cred_hash(a->s, a->user, op->password, h);
	if (a->verified && sasl_cred_equal(h, a->hash)) {
		slog_(a, LOG_LEVEL_INFO, "authenticated offline (server not reachable: %s)", text);
		auth_answer(op, SMTP_AUTH_OK);
	} else {
		slog_(a, LOG_LEVEL_INFO, "cannot check the credentials now: %s", text);
		auth_answer(op, SMTP_AUTH_TEMPFAIL);
	}
}

static const struct store_conn_ops auth_ops = {.login_done = auth_login_done};

struct sender_op *sender_auth(struct sender *s, const char *user, const char *password, sender_auth_cb cb,
                              void *ctx)
{
	struct account *a = account_get(s, user, true);
	struct sender_op *op = op_new(s, a, OP_AUTH);
	op->auth_cb = cb;
	op->ctx = ctx;
	op->password = xstrdup(password);
	char prefix[300];
	snprintf(prefix, sizeof(prefix), "smtp %s auth", user);
	op->starting = true;
	op->sc = store_conn_open(s->loop, &s->setup.imap, user, password, prefix, &auth_ops, op);
	if (!op->sc)
		auth_login_done(NULL, STORE_LOGIN_FAILED, "cannot connect", op);
	op->starting = false;
	return op;
}

void sender_session_end(struct sender *s, const char *user)
{
	struct account *a = account_get(s, user, false);
	if (!a || !a->sessions)
		return;
	a->sessions--;
	account_maybe_forget(a);
}

void sender_login_seen(struct sender *s, const char *user, const char *password)
{
	struct account *a = account_get(s, user, false);
	if (!a || !a->queued)
		return; /* nothing waits for this user: no need to keep the password */
	account_set_password(a, password);
	slog_(a, LOG_LEVEL_INFO, "IMAP login seen: sending %u queued message(s)", a->queued);
	a->backoff = 0;
	if (!a->drain)
		drain_start(a);
}

/* ------------------------------------------------------------------------ */
/* sending one message                                                       */

static void submit_answer(struct sender_op *op, int code, const char *enh, const char *text)
{
	if (op->done)
		return;
	op->done = true;
	ev_timer_stop(op->s->loop, &op->timer);
	op->d_code = code;
	snprintf(op->d_enh, sizeof(op->d_enh), "%s", enh ? enh : "");
	snprintf(op->d_text, sizeof(op->d_text), "%s", text ? text : "");
	op_answer(op);
	op_reap(op);
}

/* Put the message in the outbox and tell the client it is queued (or why it cannot be). */
static void submit_queue(struct sender_op *op, const char *why)
{
	struct sender *s = op->s;
	struct account *a = op->acct;
	char err[512], text[700];
	bool full = false;
	if (op->done)
		return;
	if (op->cancelled) {
		/* The client left before it was answered: it never handed the message over and
		 * sends it again itself. Queueing it too could send it twice. */
		slog_(a, LOG_LEVEL_INFO, "%s not queued: its client is gone (%s)", op->e.message_id, why);
		submit_answer(op, 451, "4.3.0", "not queued");
		return;
	}
	if (!s->outbox) {
		snprintf(text, sizeof(text), "Cannot send now (%s) and the outbox is held by another pimap-proxy", why);
		submit_answer(op, 451, "4.3.0", text);
		return;
	}
	if (outbox_add(s->outbox, &op->e, &full, err, sizeof(err)) < 0) {
		slog_(a, LOG_LEVEL_ERROR, "cannot queue %s: %s", op->e.message_id, err);
		snprintf(text, sizeof(text), "Cannot send now (%s) and cannot queue: %s", why, err);
		submit_answer(op, full ? 452 : 451, full ? "4.3.1" : "4.3.0", text);
		return;
	}
	a->queued++;
	slog_(a, LOG_LEVEL_INFO, "queued %s as %s: %s", op->e.message_id, op->e.name, why);
	snprintf(text, sizeof(text), "Queued as %s: the server cannot be reached now (%s); pimap-proxy will send it",
	         op->e.name, why);
	submit_answer(op, 250, "2.0.0", text);
	schedule_retry(a, a->backoff <= 0); /* start the backoff if it is not running */
}

static void submit_outcome(struct sender_op *op, const struct smtp_outcome *o)
{
	char text[XDELIVER_MAX_TEXT + 1];
	snprintf(text, sizeof(text), "%s", o->text);
	submit_answer(op, o->code, o->enhanced, text);
}

/* The XDELIVER command for an entry (SAVETO from the entry). */
static int xdeliver_text(const struct outbox_entry *e, struct buf *out)
{
	struct xdeliver_cmd c = {
		.kind = XDELIVER_NEW,
		.saveto = e->saveto,
		.rcpts = e->rcpts,
		.nrcpts = e->nrcpts,
		.msg = buf_head(&e->msg),
		.msg_len = buf_len(&e->msg),
	};
	return xdeliver_format(out, &c);
}

static void submit_xdeliver_done(struct store_conn *sc, const struct imap_msg *m, void *ctx)
{
	struct sender_op *op = ctx;
	(void)sc;
	op->on_conn = false;
	if (op->done) { /* queued after deliver_timeout: the outbox's retry learns the outcome */
		op_reap(op);
		return;
	}
	struct smtp_outcome o;
	enum xdeliver_status st = xdeliver_result_parse(m, &o);
	slog_(op->acct, LOG_LEVEL_INFO, "XDELIVER %s: %d %s %s", op->e.message_id, o.code, o.enhanced, o.text);
	if (st == XDELIVER_UNAVAILABLE) {
		char why[XDELIVER_MAX_TEXT + 40];
		snprintf(why, sizeof(why), "%d %s %s", o.code, o.enhanced, o.text);
		submit_queue(op, why);
		return;
	}
	submit_outcome(op, &o);
}

static void compat_copy(struct account *a, const struct outbox_entry *e);

/* Compatibility mode: send op's entry to the submission server as the account's user. */
static struct smtp_client *compat_send(struct sender_op *op, smtp_send_cb done)
{
	struct account *a = op->acct;
	struct smtp_send_req req = {
		.user = a->user,
		.password = a->password ? a->password : "",
		.mail_from = op->e.from,
		.rcpts = (const char *const *)op->e.rcpts,
		.nrcpts = op->e.nrcpts,
		.msg = buf_head(&op->e.msg),
		.msg_len = buf_len(&op->e.msg),
	};
	char prefix[300];
	snprintf(prefix, sizeof(prefix), "smtp %s submission", a->user);
	return smtp_client_send(op->s->loop, &op->s->setup.submission, &req, prefix, NULL, done, op);
}

static void submit_smtp_done(struct smtp_client *c, const struct smtp_send_result *r, void *ctx)
{
	struct sender_op *op = ctx;
	(void)c;
	op->smtp = NULL;
	switch (r->status) {
	case SMTP_SEND_OK:
		if (op->e.saveto)
			compat_copy(op->acct, &op->e);
		submit_outcome(op, &r->reply);
		return;
	case SMTP_SEND_REJECTED:
		submit_outcome(op, &r->reply);
		return;
	case SMTP_SEND_FAILED:
		submit_queue(op, r->why);
		return;
	case SMTP_SEND_UNKNOWN: {
		char text[400];
		snprintf(text, sizeof(text), "Delivery status unknown (%s); not sent again", r->why);
		submit_answer(op, 554, "5.4.0", text);
		return;
	}
	}
}

static void on_submit_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct sender_op *op = w->data;
	(void)loop;
	(void)revents;
	char why[64];
	snprintf(why, sizeof(why), "no answer within %.0f s", op->s->cfg->smtp_deliver_timeout);
	/* Gateway mode only: the outbox's retry carries the same Message-ID, which the
	 * gateway recognises. A connection that stays silent this long is not trusted
	 * any more: the retry makes a new one. */
	submit_queue(op, why);
	if (op->acct->conn && (op->on_conn || op->waiting_conn))
		account_conn_close(op->acct);
}

/* A drain step's command got no answer within smtp.deliver_timeout: the connection is dropped, the pass stops. */
static void on_drain_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct sender_op *op = w->data;
	(void)loop;
	(void)revents;
	slog_(op->acct, LOG_LEVEL_INFO, "no answer from the server within %.0f s", op->s->cfg->smtp_deliver_timeout);
	account_conn_close(op->acct); /* fails this op's command: drain_conn_failed */
}

/* Arm (or disarm) the drain's timeout around one command on the account's connection. */
static void drain_timer(struct sender_op *op, bool on)
{
	ev_timer_stop(op->s->loop, &op->timer);
	if (!on)
		return;
	ev_timer_init(&op->timer, on_drain_timeout, op->s->cfg->smtp_deliver_timeout, 0.);
	op->timer.data = op;
	ev_timer_start(op->s->loop, &op->timer);
}

static void submit_start_xdeliver(struct sender_op *op)
{
	struct buf b;
	buf_init(&b, 0);
	if (xdeliver_text(&op->e, &b) < 0) {
		buf_free(&b);
		submit_answer(op, 554, "5.1.3", "A recipient address cannot be carried in XDELIVER");
		return;
	}
	if (!store_conn_has_cap(op->acct->conn, "XDELIVER")) {
		buf_free(&b);
		submit_answer(op, 451, "4.3.5", "The gateway does not offer XDELIVER (no submission server configured)");
		return;
	}
	op->on_conn = true;
	store_conn_send(op->acct->conn, buf_head(&b), buf_len(&b), false, submit_xdeliver_done, op);
	buf_free(&b);
}

static void drain_conn_ready(struct sender_op *op);
static void drain_conn_failed(struct sender_op *op, bool refused, const char *why);

static void op_conn_ready(struct sender_op *op)
{
	if (op->kind == OP_DRAIN) {
		drain_conn_ready(op);
		return;
	}
	if (op->done) {
		op_reap(op);
		return;
	}
	if (op->cancelled) { /* its client left before anything was sent: it sends the message again itself */
		submit_answer(op, 451, "4.3.0", "not sent");
		return;
	}
	submit_start_xdeliver(op);
}

static void op_conn_failed(struct sender_op *op, bool refused, const char *why)
{
	if (op->kind == OP_DRAIN) {
		drain_conn_failed(op, refused, why);
		return;
	}
	if (op->done) {
		op_reap(op);
		return;
	}
	submit_queue(op, why);
}

/* The folder for the sent copy of user's messages (smtp.save_sent), or NULL. */
static const char *save_sent_folder(const struct proxy_config *cfg, const char *user)
{
	const char *any = NULL;
	for (char **p = cfg->smtp_save_sent; p && *p; p++) {
		const char *eq = strchr(*p, '=');
		if (!eq)
			continue;
		size_t ul = (size_t)(eq - *p);
		if (ul == 1 && **p == '*')
			any = eq + 1;
		else if (ul == strlen(user) && strncmp(*p, user, ul) == 0)
			return eq + 1;
	}
	return any;
}

/* Give the message a Message-ID when it has no Message-ID field (so a resend can be recognised). */
static void ensure_message_id(struct sender *s, struct outbox_entry *e)
{
	char id[MSG_ID_MAX + 1];
	const uint8_t *m = buf_head(&e->msg);
	size_t len = buf_len(&e->msg);
	if (msg_message_id(m, len, id, sizeof(id))) {
		e->message_id = xstrdup(id);
		return;
	}
	if (msg_header_has(m, len, "Message-ID")) {
		e->message_id = xstrdup("<unusable-message-id>");
		return; /* sent as it is: it cannot be recognised when sent twice */
	}
	msg_new_message_id(s->hostname, id, sizeof(id));
	e->message_id = xstrdup(id);
	struct buf b;
	buf_init(&b, 0);
	buf_printf(&b, "Message-ID: %s\r\n", id);
	buf_append(&b, m, len);
	buf_free(&e->msg);
	e->msg = b;
}

struct sender_op *sender_submit(struct sender *s, const char *user, const char *from, char *const *rcpts,
                                size_t nrcpts, struct buf *msg, sender_send_cb cb, void *ctx)
{
	struct account *a = account_get(s, user, true);
	struct sender_op *op = op_new(s, a, OP_SUBMIT);
	op->send_cb = cb;
	op->ctx = ctx;
	op->e.kind = OUTBOX_SEND;
	op->e.user = xstrdup(user);
	op->e.from = xstrdup(from);
	op->e.rcpts = xcalloc(nrcpts ? nrcpts : 1, sizeof(char *));
	for (size_t i = 0; i < nrcpts; i++)
		op->e.rcpts[op->e.nrcpts++] = xstrdup(rcpts[i]);
	op->e.created = clock_wall();
	op->e.msg = *msg;
	buf_init(msg, 0);
	ensure_message_id(s, &op->e);
	const char *save = save_sent_folder(s->cfg, user);
	op->e.saveto = save ? xstrdup(save) : NULL;
	slog_(a, LOG_LEVEL_INFO, "message %s from <%s> to %zu recipient(s), %zu bytes", op->e.message_id, from, nrcpts,
	      buf_len(&op->e.msg));
	op->starting = true;
	if (a->queued) {
		/* Older messages wait in the outbox: this one goes behind them, so they stay in order. */
		submit_queue(op, "older messages are still queued");
		op->starting = false;
		return op;
	}
	if (s->setup.gateway) {
		ev_timer_init(&op->timer, on_submit_timeout, s->cfg->smtp_deliver_timeout, 0.);
		op->timer.data = op;
		ev_timer_start(s->loop, &op->timer);
		with_conn(op);
		op->starting = false;
		return op;
	}
	op->starting = false;
	op->smtp = compat_send(op, submit_smtp_done);
	return op;
}

/* ------------------------------------------------------------------------ */
/* compatibility mode: the sent copy                                         */

static void copy_done(struct store_conn *sc, const struct imap_msg *m, void *ctx)
{
	struct account *a = ctx;
	(void)sc;
	if (m->status != IMAP_STATUS_OK)
		slog_(a, LOG_LEVEL_WARN, "the sent copy was not saved: %.*s", (int)m->text_len, m->text);
}

/* Best effort: APPEND the sent copy when the account's connection is up. */
static void compat_copy(struct account *a, const struct outbox_entry *e)
{
	if (!a->conn || !a->conn_ready) {
		slog_(a, LOG_LEVEL_WARN, "sent copy of %s not saved to %s: no connection to the IMAP server",
		      e->message_id, e->saveto);
		return;
	}
	struct buf b;
	buf_init(&b, 0);
	buf_append_str(&b, "APPEND ");
	imap_write_mailbox(&b, e->saveto, false);
	buf_printf(&b, " (\\Seen) {%zu+}\r\n", buf_len(&e->msg));
	buf_append(&b, buf_head(&e->msg), buf_len(&e->msg));
	buf_append(&b, "\r\n", 2);
	store_conn_send(a->conn, buf_head(&b), buf_len(&b), false, copy_done, a);
	buf_free(&b);
}

/* ------------------------------------------------------------------------ */
/* the outbox drain                                                          */

static void drain_next(struct sender_op *op);

static void drain_finish(struct sender_op *op, bool failed)
{
	struct account *a = op->acct;
	if (a->drain == op)
		a->drain = NULL;
	op->done = true;
	if (failed) {
		schedule_retry(a, true);
	} else {
		a->backoff = 0;
		/* Entries queued while this pass ran are not in its list (taken at
		 * its start), and the retry their queueing armed found the pass
		 * still running: go round again for them, or they would wait for
		 * the user's next message or login (found by t_faults). */
		schedule_retry(a, false);
	}
	account_maybe_forget(a);
	op_reap(op);
}

static void entry_remove(struct sender_op *op)
{
	struct account *a = op->acct;
	char err[512];
	if (outbox_remove(op->s->outbox, op->e.name, err, sizeof(err)) < 0) {
		slog_(a, LOG_LEVEL_ERROR, "%s", err);
		return;
	}
	if (a->queued)
		a->queued--;
}

/* A queued message failed for good: the entry becomes a report for INBOX (one rename). */
static void entry_to_dsn(struct sender_op *op, const struct smtp_outcome *o, const char *remote)
{
	struct sender *s = op->s;
	struct account *a = op->acct;
	char notify[MSG_ADDR_MAX + 1] = "", id[MSG_ID_MAX + 1], seed[33], err[512];
	struct buf v;
	buf_init(&v, 0);
	if (!msg_header_get(buf_head(&op->e.msg), buf_len(&op->e.msg), "From", &v) ||
	    !msg_first_address((const char *)buf_head(&v), buf_len(&v), notify, sizeof(notify)))
		snprintf(notify, sizeof(notify), "%s", *op->e.from ? op->e.from : a->user);
	buf_free(&v);
	msg_new_message_id(s->hostname, id, sizeof(id));
	msg_random_hex(seed, 16);
	struct dsn_info info = {
		.reporting_host = s->hostname,
		.notify = notify,
		.message_id = id,
		.arrival = (time_t)op->e.created,
		.now = time(NULL),
		.rcpts = (const char *const *)op->e.rcpts,
		.nrcpts = op->e.nrcpts,
		.reply = o,
		.remote = remote,
		.original = buf_head(&op->e.msg),
		.original_len = buf_len(&op->e.msg),
		.boundary_seed = seed,
	};
	struct buf report;
	buf_init(&report, 0);
	dsn_build(&info, &report);
	slog_(a, LOG_LEVEL_INFO, "%s failed for good (%d %s %s): a report goes to INBOX", op->e.message_id, o->code,
	      o->enhanced, o->text);
	buf_free(&op->e.msg);
	op->e.msg = report;
	op->e.kind = OUTBOX_DSN;
	free(op->e.message_id);
	op->e.message_id = xstrdup(id);
	if (outbox_replace(s->outbox, &op->e, err, sizeof(err)) < 0)
		slog_(a, LOG_LEVEL_ERROR, "cannot turn the entry into a report: %s", err);
}

static void drain_dsn_step(struct sender_op *op);

static void drain_send_result(struct sender_op *op, enum xdeliver_status st, const struct smtp_outcome *o,
                              const char *remote)
{
	switch (st) {
	case XDELIVER_SENT:
		slog_(op->acct, LOG_LEVEL_INFO, "queued %s sent: %d %s %s", op->e.message_id, o->code, o->enhanced,
		      o->text);
		entry_remove(op);
		drain_next(op);
		return;
	case XDELIVER_REJECTED:
		if (o->code < 500)
			break; /* temporary */
		/* fall through */
	case XDELIVER_UNKNOWN:
	case XDELIVER_REFUSED:
		entry_to_dsn(op, o, remote);
		drain_dsn_step(op);
		return;
	case XDELIVER_UNAVAILABLE:
		break;
	}
	/* Temporary: stop here (order is kept), unless the message is too old now. */
	if (clock_wall() - op->e.created > op->s->cfg->smtp_outbox_max_age) {
		struct smtp_outcome gave_up;
		char text[XDELIVER_MAX_TEXT + 80];
		snprintf(text, sizeof(text), "5.4.7 Could not be sent for %.0f hours; last: %d %s %s",
		         op->s->cfg->smtp_outbox_max_age / 3600, o->code, o->enhanced, o->text);
		smtp_outcome_set(&gave_up, 554, text, strlen(text));
		entry_to_dsn(op, &gave_up, "");
		drain_dsn_step(op);
		return;
	}
	slog_(op->acct, LOG_LEVEL_INFO, "queued %s not sent yet: %d %s %s", op->e.message_id, o->code, o->enhanced,
	      o->text);
	drain_finish(op, true);
}

static void drain_xdeliver_done(struct store_conn *sc, const struct imap_msg *m, void *ctx)
{
	struct sender_op *op = ctx;
	(void)sc;
	op->on_conn = false;
	drain_timer(op, false);
	struct smtp_outcome o;
	enum xdeliver_status st = xdeliver_result_parse(m, &o);
	drain_send_result(op, st, &o, "the gateway's submission server");
}

static void drain_smtp_done(struct smtp_client *c, const struct smtp_send_result *r, void *ctx)
{
	struct sender_op *op = ctx;
	(void)c;
	op->smtp = NULL;
	struct smtp_outcome o = r->reply;
	switch (r->status) {
	case SMTP_SEND_OK:
		if (op->e.saveto)
			compat_copy(op->acct, &op->e);
		drain_send_result(op, XDELIVER_SENT, &o, op->s->setup.submission.host);
		return;
	case SMTP_SEND_REJECTED:
		drain_send_result(op, XDELIVER_REJECTED, &o, op->s->setup.submission.host);
		return;
	case SMTP_SEND_FAILED:
		smtp_outcome_set(&o, 451, r->why, strlen(r->why));
		drain_send_result(op, XDELIVER_UNAVAILABLE, &o, "");
		return;
	case SMTP_SEND_UNKNOWN: {
		char text[300];
		snprintf(text, sizeof(text), "5.4.0 Status unknown (%s); not sent again", r->why);
		smtp_outcome_set(&o, 554, text, strlen(text));
		drain_send_result(op, XDELIVER_UNKNOWN, &o, op->s->setup.submission.host);
		return;
	}
	}
}

static void drain_dsn_done(struct store_conn *sc, const struct imap_msg *m, void *ctx)
{
	struct sender_op *op = ctx;
	(void)sc;
	op->on_conn = false;
	drain_timer(op, false);
	if (m->status != IMAP_STATUS_OK) {
		slog_(op->acct, LOG_LEVEL_WARN, "report %s: %.*s", op->e.message_id, (int)m->text_len, m->text);
		drain_finish(op, true);
		return;
	}
	switch (op->step) {
	case DR_DSN_EXAMINE:
		op->step = DR_DSN_SEARCH;
		op->dsn_present = false;
		op->on_conn = true;
		drain_timer(op, true);
		store_conn_sendf(op->acct->conn, drain_dsn_done, op, "UID SEARCH HEADER Message-ID \"%s\"", op->e.message_id);
		return;
	case DR_DSN_SEARCH:
		if (op->dsn_present) {
			/* An earlier attempt appended it and then stopped before removing the entry. */
			slog_(op->acct, LOG_LEVEL_INFO, "report %s is in INBOX already", op->e.message_id);
			entry_remove(op);
			drain_next(op);
			return;
		}
		op->step = DR_DSN_APPEND;
		struct buf b;
		buf_init(&b, 0);
		buf_printf(&b, "APPEND INBOX {%zu+}\r\n", buf_len(&op->e.msg));
		buf_append(&b, buf_head(&op->e.msg), buf_len(&op->e.msg));
		buf_append(&b, "\r\n", 2);
		op->on_conn = true;
		drain_timer(op, true);
		store_conn_send(op->acct->conn, buf_head(&b), buf_len(&b), false, drain_dsn_done, op);
		buf_free(&b);
		return;
	case DR_DSN_APPEND:
		slog_(op->acct, LOG_LEVEL_INFO, "report %s appended to INBOX", op->e.message_id);
		entry_remove(op);
		drain_next(op);
		return;
	default:
		drain_finish(op, true);
		return;
	}
}

static void drain_dsn_step(struct sender_op *op)
{
	op->step = DR_DSN_EXAMINE;
	with_conn(op);
}

static void drain_conn_ready(struct sender_op *op)
{
	struct account *a = op->acct;
	if (op->step == DR_SEND) {
		struct buf b;
		buf_init(&b, 0);
		if (xdeliver_text(&op->e, &b) < 0 || !store_conn_has_cap(a->conn, "XDELIVER")) {
			buf_free(&b);
			struct smtp_outcome o;
			const char *t = "4.3.5 The gateway does not offer XDELIVER now";
			smtp_outcome_set(&o, 451, t, strlen(t));
			drain_send_result(op, XDELIVER_UNAVAILABLE, &o, "");
			return;
		}
		op->on_conn = true;
		drain_timer(op, true);
		store_conn_send(a->conn, buf_head(&b), buf_len(&b), false, drain_xdeliver_done, op);
		buf_free(&b);
		return;
	}
	if (op->step == DR_DSN_EXAMINE) {
		op->on_conn = true;
		drain_timer(op, true);
		store_conn_sendf(a->conn, drain_dsn_done, op, "EXAMINE INBOX");
		return;
	}
	drain_finish(op, true);
}

static void drain_conn_failed(struct sender_op *op, bool refused, const char *why)
{
	drain_timer(op, false);
	slog_(op->acct, LOG_LEVEL_INFO, "outbox not sent now: %s%s", why, refused ? " (login refused)" : "");
	if (op->step == DR_SEND) {
		struct smtp_outcome o;
		smtp_outcome_set(&o, 451, why, strlen(why));
		drain_send_result(op, XDELIVER_UNAVAILABLE, &o, "");
		return;
	}
	drain_finish(op, true);
}

/* The next of this pass's entries that belongs to the account. */
static void drain_next(struct sender_op *op)
{
	struct sender *s = op->s;
	struct account *a = op->acct;
	char err[512];
	op->step = DR_IDLE;
	while (op->next_name < op->nnames) {
		const char *name = op->names[op->next_name++];
		outbox_entry_free(&op->e);
		int rc = outbox_load(s->outbox, name, &op->e, err, sizeof(err));
		if (rc == 1)
			continue;
		if (rc < 0) {
			slog_(a, LOG_LEVEL_ERROR, "skipping an outbox entry: %s", err);
			continue;
		}
		if (strcmp(op->e.user, a->user) != 0)
			continue;
		if (op->e.kind == OUTBOX_DSN) {
			drain_dsn_step(op);
			return;
		}
		op->step = DR_SEND;
		slog_(a, LOG_LEVEL_INFO, "sending queued %s (%s)", op->e.message_id, op->e.name);
		if (s->setup.gateway) {
			with_conn(op);
			return;
		}
		op->smtp = compat_send(op, drain_smtp_done);
		return;
	}
	drain_finish(op, false);
}

static void drain_start(struct account *a)
{
	struct sender *s = a->s;
	ev_timer_stop(s->loop, &a->retry);
	if (a->drain || !s->outbox || s->winding_down)
		return;
	if (!a->password) {
		slog_(a, LOG_LEVEL_INFO, "%u message(s) queued; they are sent at this user's next login", a->queued);
		return;
	}
	struct sender_op *op = op_new(s, a, OP_DRAIN);
	a->drain = op;
	op->names = outbox_list(s->outbox, &op->nnames);
	drain_next(op);
}

/* ------------------------------------------------------------------------ */
/* the module                                                                */

struct sender *sender_new(const struct sender_setup *setup, const struct proxy_config *cfg, char *err,
                          size_t errlen)
{
	struct sender *s = xcalloc(1, sizeof(*s));
	s->loop = setup->loop;
	s->cfg = cfg;
	s->setup = *setup;
	snprintf(s->state_dir, sizeof(s->state_dir), "%s", setup->state_dir);
	s->setup.state_dir = s->state_dir;
	snprintf(s->hostname, sizeof(s->hostname), "%s", setup->hostname && *setup->hostname ? setup->hostname
	                                                                                      : "localhost");
	gnutls_rnd(GNUTLS_RND_KEY, s->hash_key, sizeof(s->hash_key));
	bool busy = false;
	*err = '\0';
	s->outbox = outbox_open(s->state_dir, cfg->smtp_outbox_max_size, &busy, err, errlen);
	if (!s->outbox && !busy) {
		free(s);
		return NULL;
	}
	if (!s->outbox) {
		log_warn("smtp: %s: messages that cannot be sent at once are refused (451), not queued", err);
		return s;
	}
	*err = '\0';
	/* Count what earlier runs left, per user: it is sent at each user's next login. */
	size_t n;
	char **names = outbox_list(s->outbox, &n);
	for (size_t i = 0; i < n; i++) {
		struct outbox_entry e;
		char lerr[512];
		if (outbox_load(s->outbox, names[i], &e, lerr, sizeof(lerr)) != 0) {
			log_warn("smtp: outbox: %s", lerr);
			outbox_entry_free(&e);
			continue;
		}
		struct account *a = account_get(s, e.user, true);
		a->queued++;
		outbox_entry_free(&e);
	}
	outbox_names_free(names, n);
	for (struct account *a = s->accounts; a; a = a->next)
		log_info("smtp: %u message(s) of %s in the outbox; sent at that user's next login", a->queued, a->user);
	return s;
}

void sender_reconfigure(struct sender *s, const struct proxy_config *cfg)
{
	s->cfg = cfg;
	s->setup.submission.reply_timeout = cfg->smtp_submission_timeout;
	if (s->outbox)
		outbox_set_max(s->outbox, cfg->smtp_outbox_max_size);
}

bool sender_idle(const struct sender *s)
{
	for (const struct sender_op *op = s->ops; op; op = op->next)
		if (!op->done || op->on_conn || op->smtp)
			return false;
	return true;
}

static void wind_down_check(struct sender *s)
{
	if (!s->winding_down)
		return;
	for (struct account *a = s->accounts; a; a = a->next) {
		ev_timer_stop(s->loop, &a->retry);
		ev_timer_stop(s->loop, &a->conn_idle);
		if (a->conn && store_conn_in_flight(a->conn) == 0 && !a->drain)
			account_conn_close(a);
	}
}

void sender_wind_down(struct sender *s)
{
	s->winding_down = true;
	wind_down_check(s);
}

void sender_free(struct sender *s)
{
	if (!s)
		return;
	while (s->ops) {
		struct sender_op *op = s->ops;
		op->auth_cb = NULL;
		op->send_cb = NULL;
		if (op->acct && op->acct->drain == op)
			op->acct->drain = NULL;
		op_free(op);
	}
	while (s->accounts) {
		struct account *a = s->accounts;
		s->accounts = a->next;
		ev_timer_stop(s->loop, &a->retry);
		ev_timer_stop(s->loop, &a->conn_idle);
		if (a->conn) {
			store_conn_set_owner(a->conn, NULL, NULL);
			store_conn_close(a->conn);
		}
		secret_free(&a->password);
		free(a->user);
		free(a);
	}
	outbox_close(s->outbox);
	free(s);
}
