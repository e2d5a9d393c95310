/*
 * gw_deliver.c - the gateway's XDELIVER jobs (see gw_deliver.h).
 *
 * One job: [fetch the original's attachments] -> send -> [save the copy]
 * -> answer. The store work (EXAMINE, UID FETCH, APPEND) runs on a store
 * connection of the job's own, never on the client's: XDELIVER must not
 * change the client's selected folder or make it see responses it did not
 * ask for.
 *
 * Exactly-once bookkeeping (gw_sent): SENDING is written right before the
 * final dot, SENT when the server accepts; a refusal or a failure before
 * the dot forgets the message. Jobs are keyed by (user, Message-ID) in
 * memory too, so a retry that arrives while the first attempt runs waits
 * for its outcome instead of racing it.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "gw_deliver.h"
#include "gw_sent.h"
#include "imap_write.h"
#include "log.h"
#include "mime_attach.h"
#include "msg_header.h"
#include "smtp_client.h"
#include "stream.h"

enum job_step {
	JOB_ORIGINAL,  /* on the store: EXAMINE the original's folder, fetch its attachments */
	JOB_SENDING,   /* the SMTP transaction runs */
	JOB_SAVING,    /* APPEND of the sent copy */
	JOB_WAITING,   /* a retry waiting for the first attempt of the same message */
	JOB_ANSWERED,  /* the result is set; answered from the loop */
};

struct deliver_job {
	struct deliver_job *next;
	struct gw_deliver  *d;
	char                prefix[160];
	char               *user;
	char               *password;
	struct xdeliver_cmd cmd;        /* cmd.msg is not used: the message is in msg */
	struct buf          msg;        /* what is sent: the client's message [+ Message-ID] [+ attachments] */
	char                msgid[MSG_ID_MAX + 1]; /* "" when the message has none usable: no duplicate check */
	char                from[MSG_ADDR_MAX + 1];
	enum job_step       step;
	struct deliver_job *leader;     /* JOB_WAITING: the attempt whose outcome this one takes */

	struct store_conn  *sc;
	bool                sc_ready;
	uint32_t            uidvalidity;   /* seen in EXAMINE */
	unsigned            parts[MIME_MAX_ATTACHMENTS];
	int                 nparts;        /* -1 until the BODYSTRUCTURE is read */
	struct buf          part_hdr[MIME_MAX_ATTACHMENTS];
	struct buf          part_body[MIME_MAX_ATTACHMENTS];

	struct smtp_client *smtp;
	struct smtp_outcome outcome;
	char                appenduid[GW_SENT_APPENDUID_MAX + 1];

	char               *result;        /* the tagged result text, once known */
	gw_deliver_cb       cb;
	void               *ctx;
	ev_idle             answer;        /* answers from the loop, never from inside gw_deliver_start */
};

struct gw_deliver {
	struct ev_loop            *loop;
	const struct gateway_config *cfg;
	const struct store_target *store;
	struct smtp_target         target;
	struct tls_creds          *creds;
	struct gw_sent            *sent;
	char                       helo[256];
	char                       server_name[256]; /* fixed at start (the config may be replaced) */
	struct deliver_job        *jobs;
	unsigned                   njobs;
};

static void jlog(const struct deliver_job *j, enum log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void jlog(const struct deliver_job *j, enum log_level lvl, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(lvl, j->prefix, fmt, ap);
	va_end(ap);
}

static void job_free(struct deliver_job *j)
{
	struct gw_deliver *d = j->d;
	for (struct deliver_job **pp = &d->jobs; *pp; pp = &(*pp)->next) {
		if (*pp == j) {
			*pp = j->next;
			d->njobs--;
			break;
		}
	}
	ev_idle_stop(d->loop, &j->answer);
	if (j->smtp)
		smtp_client_cancel(j->smtp);
	if (j->sc) {
		store_conn_set_owner(j->sc, NULL, NULL);
		store_conn_close(j->sc);
	}
	secret_free(&j->password);
	free(j->user);
	xdeliver_cmd_free(&j->cmd);
	buf_free(&j->msg);
	for (size_t i = 0; i < MIME_MAX_ATTACHMENTS; i++) {
		buf_free(&j->part_hdr[i]);
		buf_free(&j->part_body[i]);
	}
	free(j->result);
	free(j);
}

static void on_answer(struct ev_loop *loop, ev_idle *w, int revents)
{
	struct deliver_job *j = w->data;
	(void)loop;
	(void)revents;
	ev_idle_stop(j->d->loop, w);
	if (j->cb)
		j->cb(j->result, j->ctx);
	job_free(j);
}

static void job_answer(struct deliver_job *j, const char *result);

/* Finish with a result; retries waiting for this job get the same one. */
static void job_answer(struct deliver_job *j, const char *result)
{
	if (j->step == JOB_ANSWERED)
		return;
	j->step = JOB_ANSWERED;
	j->result = xstrdup(result);
	jlog(j, LOG_LEVEL_INFO, "XDELIVER %s: %s", *j->msgid ? j->msgid : "(no Message-ID)", result);
	if (j->smtp) {
		smtp_client_cancel(j->smtp);
		j->smtp = NULL;
	}
	if (j->sc) {
		store_conn_set_owner(j->sc, NULL, NULL);
		store_conn_close(j->sc);
		j->sc = NULL;
	}
	secret_free(&j->password);
	for (struct deliver_job *f = j->d->jobs; f; f = f->next)
		if (f->step == JOB_WAITING && f->leader == j) {
			f->leader = NULL;
			job_answer(f, result);
		}
	ev_idle_start(j->d->loop, &j->answer);
}

static void job_answerf(struct deliver_job *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void job_answerf(struct deliver_job *j, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	job_answer(j, line);
}

/* The result of a successful send, with the saved copy's APPENDUID when there is one. */
static void answer_sent(struct deliver_job *j, const char *note)
{
	struct buf b;
	buf_init(&b, 0);
	xdeliver_result_format(&b, &j->outcome, *j->appenduid ? j->appenduid : NULL, note);
	buf_append(&b, "", 1);
	job_answer(j, (const char *)buf_head(&b));
	buf_free(&b);
}

/* ------------------------------------------------------------------------ */
/* sending                                                                   */

static void save_copy(struct deliver_job *j);

static void before_dot(void *ctx)
{
	struct deliver_job *j = ctx;
	/* From here on the server may accept the message: a retry must not send it again. */
	if (*j->msgid && gw_sent_mark(j->d->sent, j->user, j->msgid, GW_SENT_SENDING, NULL) < 0)
		jlog(j, LOG_LEVEL_ERROR, "cannot record the delivery; a retry could send it twice");
}

static void smtp_done(struct smtp_client *c, const struct smtp_send_result *r, void *ctx)
{
	struct deliver_job *j = ctx;
	(void)c;
	j->smtp = NULL;
	switch (r->status) {
	case SMTP_SEND_OK:
		j->outcome = r->reply;
		if (*j->msgid)
			gw_sent_mark(j->d->sent, j->user, j->msgid, GW_SENT_SENT, NULL);
		if (j->cmd.saveto) {
			save_copy(j);
			return;
		}
		answer_sent(j, NULL);
		return;
	case SMTP_SEND_REJECTED: {
		if (*j->msgid)
			gw_sent_forget(j->d->sent, j->user, j->msgid);
		struct buf b;
		buf_init(&b, 0);
		xdeliver_result_format(&b, &r->reply, NULL, NULL);
		buf_append(&b, "", 1);
		job_answer(j, (const char *)buf_head(&b));
		buf_free(&b);
		return;
	}
	case SMTP_SEND_FAILED:
		if (*j->msgid)
			gw_sent_forget(j->d->sent, j->user, j->msgid);
		job_answerf(j, "NO [UNAVAILABLE] Not sent: %s", r->why);
		return;
	case SMTP_SEND_UNKNOWN:
		/* The SENDING record stays: a retry of this message is answered the same way. */
		job_answerf(j, "NO [DELIVERYUNKNOWN] The connection to the submission server broke after the message "
		               "was sent (%s); it may have been delivered and is not sent again",
		            r->why);
		return;
	}
}

static void start_send(struct deliver_job *j)
{
	struct gw_deliver *d = j->d;
	if (buf_len(&j->msg) > d->cfg->max_literal_size) {
		job_answerf(j, "NO [TOOBIG] The message with its attachments is over %zu bytes",
		            d->cfg->max_literal_size);
		return;
	}
	j->step = JOB_SENDING;
	d->target.connect_timeout = d->cfg->submission_connect_timeout;
	d->target.reply_timeout = d->cfg->submission_timeout;
	struct smtp_send_req req = {
		.user = j->user,
		.password = j->password,
		.mail_from = j->from,
		.rcpts = (const char *const *)j->cmd.rcpts,
		.nrcpts = j->cmd.nrcpts,
		.msg = buf_head(&j->msg),
		.msg_len = buf_len(&j->msg),
	};
	j->smtp = smtp_client_send(d->loop, &d->target, &req, j->prefix, before_dot, smtp_done, j);
	/* The store connection (if any) is still needed for SAVETO; the password is not. */
	if (!j->cmd.saveto || j->sc)
		secret_free(&j->password);
}

/* ------------------------------------------------------------------------ */
/* the store: the original's attachments, the saved copy                     */

static void job_sc_login(struct store_conn *sc, enum store_login_result r, const char *text, void *ctx);
static void job_sc_untagged(struct store_conn *sc, const struct imap_msg *m, void *ctx);
static void job_sc_closed(struct store_conn *sc, const char *reason, void *ctx);

static const struct store_conn_ops job_sc_ops = {
	.login_done = job_sc_login,
	.untagged = job_sc_untagged,
	.closed = job_sc_closed,
};

static void open_store(struct deliver_job *j)
{
	j->sc = store_conn_open(j->d->loop, j->d->store, j->user, j->password, j->prefix, &job_sc_ops, j);
	if (!j->sc) {
		if (j->step == JOB_SAVING)
			answer_sent(j, "Sent, but the copy was not saved: the store is not reachable");
		else
			job_answer(j, "NO [UNAVAILABLE] The store is not reachable now; nothing was sent");
	}
	if (j->step == JOB_SAVING)
		secret_free(&j->password);
}

static void append_done(struct store_conn *sc, const struct imap_msg *m, void *ctx)
{
	struct deliver_job *j = ctx;
	(void)sc;
	const char *v;
	size_t vl;
	if (m->status == IMAP_STATUS_OK && imap_code_value(m, "APPENDUID", &v, &vl) && vl < sizeof(j->appenduid)) {
		memcpy(j->appenduid, v, vl);
		j->appenduid[vl] = '\0';
		if (*j->msgid)
			gw_sent_mark(j->d->sent, j->user, j->msgid, GW_SENT_SENT, j->appenduid);
		answer_sent(j, NULL);
		return;
	}
	char note[400];
	if (m->status == IMAP_STATUS_OK)
		snprintf(note, sizeof(note), "Sent and saved to %s (the store gave no APPENDUID)", j->cmd.saveto);
	else
		snprintf(note, sizeof(note), "Sent, but the copy was not saved to %s (%.*s)", j->cmd.saveto,
		         (int)(m->text_len > 200 ? 200 : m->text_len), m->text);
	answer_sent(j, note);
}

static void send_append(struct deliver_job *j)
{
	struct buf b;
	buf_init(&b, 0);
	buf_append_str(&b, "APPEND ");
	imap_write_mailbox(&b, j->cmd.saveto, false);
	buf_printf(&b, " (\\Seen) {%zu+}\r\n", buf_len(&j->msg));
	buf_append(&b, buf_head(&j->msg), buf_len(&j->msg));
	buf_append(&b, "\r\n", 2);
	store_conn_send(j->sc, buf_head(&b), buf_len(&b), false, append_done, j);
	buf_free(&b);
}

static void save_copy(struct deliver_job *j)
{
	j->step = JOB_SAVING;
	if (j->sc && j->sc_ready) {
		send_append(j);
		return;
	}
	open_store(j);
}

static void fetch_parts_done(struct store_conn *sc, const struct imap_msg *m, void *ctx)
{
	struct deliver_job *j = ctx;
	(void)sc;
	if (m->status != IMAP_STATUS_OK) {
		job_answerf(j, "NO [UNAVAILABLE] Cannot fetch the original's attachments: %.*s", (int)m->text_len,
		            m->text);
		return;
	}
	struct mime_part mp[MIME_MAX_ATTACHMENTS];
	size_t total = buf_len(&j->msg);
	for (int i = 0; i < j->nparts; i++) {
		mp[i].header = buf_head(&j->part_hdr[i]);
		mp[i].header_len = buf_len(&j->part_hdr[i]);
		mp[i].body = buf_head(&j->part_body[i]);
		mp[i].body_len = buf_len(&j->part_body[i]);
		total += mp[i].header_len + mp[i].body_len;
		if (!mp[i].header_len) {
			job_answer(j, "NO [NONEXISTENT] The original message's attachments could not be read");
			return;
		}
	}
	if (total > j->d->cfg->max_literal_size) {
		job_answerf(j, "NO [TOOBIG] The message with its attachments is over %zu bytes",
		            j->d->cfg->max_literal_size);
		return;
	}
	char seed[33];
	msg_random_hex(seed, 16);
	struct buf out;
	buf_init(&out, 0);
	mime_add_parts(buf_head(&j->msg), buf_len(&j->msg), mp, (size_t)j->nparts, seed, &out);
	buf_free(&j->msg);
	j->msg = out;
	jlog(j, LOG_LEVEL_DEBUG, "re-attached %d part(s) of %s UID %u", j->nparts, j->cmd.folder, j->cmd.uid);
	start_send(j);
}

static void fetch_structure_done(struct store_conn *sc, const struct imap_msg *m, void *ctx)
{
	struct deliver_job *j = ctx;
	if (m->status != IMAP_STATUS_OK || j->nparts < 0) {
		job_answerf(j, "NO [NONEXISTENT] The original message (%s UID %u) is not there", j->cmd.folder,
		            j->cmd.uid);
		return;
	}
	if (j->nparts == 0) {
		start_send(j);
		return;
	}
	struct buf b;
	buf_init(&b, 0);
	buf_printf(&b, "UID FETCH %u (", j->cmd.uid);
	for (int i = 0; i < j->nparts; i++)
		buf_printf(&b, "%sBODY.PEEK[%u.MIME] BODY.PEEK[%u]", i ? " " : "", j->parts[i], j->parts[i]);
	buf_append_str(&b, ")");
	buf_append(&b, "", 1);
	store_conn_sendf(sc, fetch_parts_done, j, "%s", (const char *)buf_head(&b));
	buf_free(&b);
}

static void examine_done(struct store_conn *sc, const struct imap_msg *m, void *ctx)
{
	struct deliver_job *j = ctx;
	if (m->status != IMAP_STATUS_OK) {
		job_answerf(j, "NO [NONEXISTENT] Cannot open the original's folder %s: %.*s", j->cmd.folder,
		            (int)m->text_len, m->text);
		return;
	}
	if (j->uidvalidity != j->cmd.uidvalidity) {
		job_answerf(j, "NO [NONEXISTENT] UIDVALIDITY of %s is %u, not %u: the original is gone", j->cmd.folder,
		            j->uidvalidity, j->cmd.uidvalidity);
		return;
	}
	j->nparts = -1;
	store_conn_sendf(sc, fetch_structure_done, j, "UID FETCH %u (BODYSTRUCTURE)", j->cmd.uid);
}

static void job_sc_login(struct store_conn *sc, enum store_login_result r, const char *text, void *ctx)
{
	struct deliver_job *j = ctx;
	if (r != STORE_LOGIN_OK) {
		j->sc = NULL;
		jlog(j, LOG_LEVEL_WARN, "store login for XDELIVER failed: %s", text);
		if (j->step == JOB_SAVING)
			answer_sent(j, "Sent, but the copy was not saved: the store refused the login");
		else
			job_answer(j, "NO [UNAVAILABLE] The store is not reachable now; nothing was sent");
		return;
	}
	j->sc_ready = true;
	if (j->step == JOB_SAVING) {
		send_append(j);
		return;
	}
	struct buf b;
	buf_init(&b, 0);
	buf_append_str(&b, "EXAMINE ");
	imap_write_mailbox(&b, j->cmd.folder, false);
	buf_append_str(&b, "\r\n");
	store_conn_send(sc, buf_head(&b), buf_len(&b), false, examine_done, j);
	buf_free(&b);
}

/* A FETCH item value: a string's bytes (NIL is empty). */
static void take_string(const struct imap_arg *v, struct buf *out)
{
	if (v->type == IMAP_ARG_ATOM && imap_arg_is_atom(v, "NIL"))
		return;
	if (v->type != IMAP_ARG_LIST)
		buf_append(out, v->str, v->len);
}

static void job_sc_untagged(struct store_conn *sc, const struct imap_msg *m, void *ctx)
{
	struct deliver_job *j = ctx;
	(void)sc;
	const char *v;
	size_t vl;
	uint32_t n;
	if (m->status == IMAP_STATUS_OK && imap_code_value(m, "UIDVALIDITY", &v, &vl)) {
		imap_parse_u32(v, vl, &j->uidvalidity);
		return;
	}
	if (!imap_untagged_num(m, "FETCH", &n) || m->nargs < 3 || m->args[2].type != IMAP_ARG_LIST)
		return;
	const struct imap_arg *items = m->args[2].list;
	size_t count = m->args[2].list_count;
	/* Only the original's own FETCH response counts (another message's flags may come along). */
	bool ours = false;
	for (size_t i = 0; i + 1 < count; i += 2) {
		uint32_t uid;
		if (imap_arg_is_atom(&items[i], "UID") && items[i + 1].type == IMAP_ARG_ATOM &&
		    imap_parse_u32(items[i + 1].str, items[i + 1].len, &uid) && uid == j->cmd.uid)
			ours = true;
	}
	if (!ours)
		return;
	for (size_t i = 0; i + 1 < count; i += 2) {
		const struct imap_arg *k = &items[i], *val = &items[i + 1];
		if (imap_arg_is_atom(k, "BODYSTRUCTURE")) {
			j->nparts = mime_attachment_parts(val, j->parts, MIME_MAX_ATTACHMENTS);
			continue;
		}
		if (k->type != IMAP_ARG_ATOM || k->len < 7 || strncasecmp(k->str, "BODY[", 5) != 0)
			continue;
		unsigned part = 0;
		const char *p = k->str + 5;
		while (*p >= '0' && *p <= '9' && part < 100000)
			part = part * 10 + (unsigned)(*p++ - '0');
		bool mime = strncasecmp(p, ".MIME]", 6) == 0;
		if (!mime && *p != ']')
			continue;
		for (int x = 0; x < j->nparts; x++)
			if (j->parts[x] == part)
				take_string(val, mime ? &j->part_hdr[x] : &j->part_body[x]);
	}
}

static void job_sc_closed(struct store_conn *sc, const char *reason, void *ctx)
{
	struct deliver_job *j = ctx;
	(void)sc;
	j->sc = NULL;
	j->sc_ready = false;
	jlog(j, LOG_LEVEL_WARN, "store connection for XDELIVER lost: %s", reason);
	if (j->step == JOB_SAVING)
		answer_sent(j, "Sent, but the copy was not saved: the store connection broke");
	else if (j->step == JOB_ORIGINAL)
		job_answer(j, "NO [UNAVAILABLE] The store connection broke; nothing was sent");
}

/* ------------------------------------------------------------------------ */
/* starting                                                                  */

static struct deliver_job *running_job(struct gw_deliver *d, const struct deliver_job *self)
{
	for (struct deliver_job *j = d->jobs; j; j = j->next)
		if (j != self && j->step != JOB_ANSWERED && j->step != JOB_WAITING && *j->msgid &&
		    strcmp(j->msgid, self->msgid) == 0 && strcmp(j->user, self->user) == 0)
			return j;
	return NULL;
}

/* Give the message a Message-ID when it has no Message-ID field at all. */
static void ensure_message_id(struct deliver_job *j)
{
	const uint8_t *m = buf_head(&j->msg);
	size_t len = buf_len(&j->msg);
	if (msg_message_id(m, len, j->msgid, sizeof(j->msgid)))
		return;
	*j->msgid = '\0';
	if (msg_header_has(m, len, "Message-ID"))
		return; /* one the gateway cannot use: sent as it is, without a duplicate check */
	msg_new_message_id(j->d->helo, j->msgid, sizeof(j->msgid));
	struct buf b;
	buf_init(&b, 0);
	buf_printf(&b, "Message-ID: %s\r\n", j->msgid);
	buf_append(&b, m, len);
	buf_free(&j->msg);
	j->msg = b;
}

/* The envelope sender: the Sender field's address, else the first address of From. */
static bool find_sender(struct deliver_job *j)
{
	struct buf v;
	buf_init(&v, 0);
	bool ok = false;
	const uint8_t *m = buf_head(&j->msg);
	size_t len = buf_len(&j->msg);
	if (msg_header_get(m, len, "Sender", &v))
		ok = msg_first_address((const char *)buf_head(&v), buf_len(&v), j->from, sizeof(j->from));
	if (!ok) {
		buf_clear(&v);
		if (msg_header_get(m, len, "From", &v))
			ok = msg_first_address((const char *)buf_head(&v), buf_len(&v), j->from, sizeof(j->from));
	}
	buf_free(&v);
	return ok;
}

struct deliver_job *gw_deliver_start(struct gw_deliver *d, const char *user, const char *password,
                                     struct xdeliver_cmd *cmd, const char *log_prefix, gw_deliver_cb cb,
                                     void *ctx)
{
	struct deliver_job *j = xcalloc(1, sizeof(*j));
	j->d = d;
	j->cb = cb;
	j->ctx = ctx;
	snprintf(j->prefix, sizeof(j->prefix), "%s xdeliver", log_prefix ? log_prefix : "");
	j->user = xstrdup(user);
	j->password = xstrdup(password ? password : "");
	j->cmd = *cmd;
	memset(cmd, 0, sizeof(*cmd));
	buf_init(&j->msg, 0);
	buf_append(&j->msg, j->cmd.msg, j->cmd.msg_len);
	j->cmd.msg = NULL;
	j->cmd.msg_len = 0;
	j->nparts = 0;
	for (size_t i = 0; i < MIME_MAX_ATTACHMENTS; i++) {
		buf_init(&j->part_hdr[i], 0);
		buf_init(&j->part_body[i], 0);
	}
	ev_idle_init(&j->answer, on_answer);
	j->answer.data = j;
	j->step = JOB_ORIGINAL;
	j->next = d->jobs;
	d->jobs = j;
	d->njobs++;

	if ((long long)d->njobs > d->cfg->submission_max_concurrent) {
		job_answerf(j, "NO [LIMIT] Too many messages being sent at once (submission.max_concurrent = %lld)",
		            d->cfg->submission_max_concurrent);
		return j;
	}
	ensure_message_id(j);
	if (!find_sender(j)) {
		job_answer(j, "NO [CANNOT] The message has no From address to send it from");
		return j;
	}
	if (*j->msgid) {
		struct deliver_job *first = running_job(d, j);
		if (first) {
			jlog(j, LOG_LEVEL_INFO, "%s is being sent already: waiting for that attempt", j->msgid);
			j->step = JOB_WAITING;
			j->leader = first;
			return j;
		}
		enum gw_sent_state st;
		double at;
		char appenduid[GW_SENT_APPENDUID_MAX + 1];
		if (gw_sent_lookup(d->sent, user, j->msgid, &st, &at, appenduid, sizeof(appenduid)) < 0) {
			job_answer(j, "NO [UNAVAILABLE] The gateway cannot check for duplicates now; nothing was sent");
			return j;
		}
		if (st == GW_SENT_SENT) {
			char when[64], note[160];
			time_t t = (time_t)at;
			struct tm tm;
			gmtime_r(&t, &tm);
			strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
			snprintf(note, sizeof(note), "Already sent at %s; not sent again", when);
			smtp_outcome_set(&j->outcome, 250, "2.0.0", 5);
			snprintf(j->appenduid, sizeof(j->appenduid), "%s", j->cmd.saveto ? appenduid : "");
			answer_sent(j, note);
			return j;
		}
		if (st == GW_SENT_SENDING) {
			job_answer(j, "NO [DELIVERYUNKNOWN] An earlier attempt to send this message ended without an "
			              "answer from the submission server; it may have been delivered and is not sent again");
			return j;
		}
	}
	if (j->cmd.kind != XDELIVER_NEW && j->cmd.reattach) {
		open_store(j);
		return j;
	}
	start_send(j);
	return j;
}

void gw_deliver_detach(struct deliver_job *job)
{
	if (!job)
		return;
	job->cb = NULL;
	job->ctx = NULL;
}

/* ------------------------------------------------------------------------ */
/* the module                                                                */

struct gw_deliver *gw_deliver_new(struct ev_loop *loop, const struct gateway_config *cfg,
                                  const struct store_target *store, const char *state_dir, char *err,
                                  size_t errlen)
{
	*err = '\0';
	if (!cfg->submission_url || !*cfg->submission_url)
		return NULL;
	struct gw_deliver *d = xcalloc(1, sizeof(*d));
	d->loop = loop;
	d->cfg = cfg;
	d->store = store;
	if (smtp_target_from_url(cfg->submission_url, &d->target, err, errlen) < 0)
		goto fail;
	d->creds = tlsio_client_creds_new(cfg->submission_ca_file, err, errlen);
	if (!d->creds)
		goto fail;
	d->target.creds = d->creds;
	d->target.allow_plaintext = cfg->submission_allow_plaintext;
	snprintf(d->server_name, sizeof(d->server_name), "%s", cfg->submission_server_name);
	d->target.server_name = d->server_name;
	gw_deliver_reconfigure(d, cfg);
	d->sent = gw_sent_open(state_dir, cfg->submission_dedup_window, cfg->submission_dedup_entries, err, errlen);
	if (!d->sent)
		goto fail;
	log_info("XDELIVER relays to %s (%s)", cfg->submission_url,
	         d->target.implicit_tls ? "implicit TLS" : cfg->submission_allow_plaintext ? "STARTTLS if offered"
	                                                                                    : "STARTTLS required");
	return d;
fail:
	gw_deliver_free(d);
	return NULL;
}

void gw_deliver_reconfigure(struct gw_deliver *d, const struct gateway_config *cfg)
{
	d->cfg = cfg;
	if (*cfg->submission_helo_name) {
		snprintf(d->helo, sizeof(d->helo), "%s", cfg->submission_helo_name);
	} else if (gethostname(d->helo, sizeof(d->helo) - 1) < 0 || !*d->helo) {
		snprintf(d->helo, sizeof(d->helo), "localhost");
	}
	d->helo[sizeof(d->helo) - 1] = '\0';
	d->target.helo_name = d->helo;
	d->target.connect_timeout = cfg->submission_connect_timeout;
	d->target.reply_timeout = cfg->submission_timeout;
	if (d->sent)
		gw_sent_set_limits(d->sent, cfg->submission_dedup_window, cfg->submission_dedup_entries);
}

void gw_deliver_free(struct gw_deliver *d)
{
	if (!d)
		return;
	while (d->jobs) {
		struct deliver_job *j = d->jobs;
		if (j->step == JOB_SENDING)
			jlog(j, LOG_LEVEL_WARN, "cut by shutdown while sending %s", *j->msgid ? j->msgid : "a message");
		j->cb = NULL;
		job_free(j);
	}
	gw_sent_close(d->sent);
	tlsio_creds_unref(d->creds);
	free(d);
}
