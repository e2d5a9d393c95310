/*
 * smtp_server.c - the SMTP submission server's state machine (see smtp_server.h).
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <gnutls/gnutls.h>

#include "sasl.h"
#include "smtp_cmd.h"
#include "smtp_server.h"

enum srv_state {
	S_COMMAND,      /* reading commands */
	S_DATA,         /* reading the message */
	S_AUTH_PLAIN,   /* AUTH PLAIN without initial response: waiting for it */
	S_AUTH_USER,    /* AUTH LOGIN: waiting for the user name */
	S_AUTH_PASS,    /* AUTH LOGIN: waiting for the password */
	S_WAIT_AUTH,    /* SMTP_ACTION_AUTH is out */
	S_WAIT_DELIVER, /* SMTP_ACTION_DELIVER is out */
	S_WAIT_TLS,     /* SMTP_ACTION_STARTTLS is out */
	S_CLOSED,       /* QUIT, a fatal error or a shutdown: nothing more is read */
};

struct smtp_server {
	struct smtp_server_config cfg;
	char            hostname[256];
	struct smtp_in *in;
	struct buf      out;
	enum srv_state  st;
	bool            helo;       /* EHLO or HELO seen (since TLS started) */
	bool            tls;
	char           *user;       /* authenticated as */
	char           *auth_user;  /* being checked */
	char           *auth_pass;
	bool            in_mail;
	char           *from;
	char          **rcpts;
	size_t          nrcpts;
	unsigned        errors;
	unsigned        auth_failures;
};

struct smtp_server *smtp_server_new(const struct smtp_server_config *cfg)
{
	struct smtp_server *s = xcalloc(1, sizeof(*s));
	s->cfg = *cfg;
	snprintf(s->hostname, sizeof(s->hostname), "%s", cfg->hostname && *cfg->hostname ? cfg->hostname : "localhost");
	s->cfg.hostname = s->hostname;
	s->in = smtp_in_new(cfg->max_message);
	buf_init(&s->out, 0);
	s->tls = cfg->tls_active;
	return s;
}

static void reset_transaction(struct smtp_server *s)
{
	s->in_mail = false;
	free(s->from);
	s->from = NULL;
	for (size_t i = 0; i < s->nrcpts; i++)
		free(s->rcpts[i]);
	free(s->rcpts);
	s->rcpts = NULL;
	s->nrcpts = 0;
}

void smtp_server_free(struct smtp_server *s)
{
	if (!s)
		return;
	reset_transaction(s);
	secret_free(&s->auth_user);
	secret_free(&s->auth_pass);
	free(s->user);
	smtp_in_free(s->in);
	buf_free(&s->out);
	free(s);
}

struct buf *smtp_server_output(struct smtp_server *s)
{
	return &s->out;
}

static void reply(struct smtp_server *s, int code, const char *enh, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void reply(struct smtp_server *s, int code, const char *enh, const char *fmt, ...)
{
	char text[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	/* Nothing from a peer may break the reply line. */
	for (char *p = text; *p; p++)
		if ((unsigned char)*p < 0x20)
			*p = ' ';
	buf_printf(&s->out, "%d %s%s%s\r\n", code, enh ? enh : "", enh && *enh ? " " : "", text);
	if (code >= 500)
		s->errors++;
}

void smtp_server_greet(struct smtp_server *s)
{
	reply(s, 220, NULL, "%s ESMTP pimap-proxy ready", s->hostname);
}

void smtp_server_shutdown(struct smtp_server *s, const char *text)
{
	if (s->st == S_CLOSED)
		return;
	reply(s, 421, "4.3.2", "%s %s", s->hostname, text);
	s->st = S_CLOSED;
}

bool smtp_server_busy(const struct smtp_server *s)
{
	return s->in_mail || (s->st != S_COMMAND && s->st != S_CLOSED);
}

void smtp_server_tls_started(struct smtp_server *s)
{
	s->tls = true;
	s->helo = false;
	free(s->user);
	s->user = NULL;
	reset_transaction(s);
	s->st = S_COMMAND;
}

const char *smtp_server_auth_user(const struct smtp_server *s)
{
	return s->auth_user ? s->auth_user : "";
}

const char *smtp_server_auth_password(const struct smtp_server *s)
{
	return s->auth_pass ? s->auth_pass : "";
}

const char *smtp_server_user(const struct smtp_server *s)
{
	return s->user;
}

const char *smtp_server_mail_from(const struct smtp_server *s)
{
	return s->from ? s->from : "";
}

char *const *smtp_server_rcpts(const struct smtp_server *s, size_t *n)
{
	*n = s->nrcpts;
	return s->rcpts;
}

struct buf *smtp_server_message(struct smtp_server *s)
{
	return smtp_in_data(s->in);
}

/* Too many errors: the session ends (a client in a loop, or someone probing). */
static bool too_many_errors(struct smtp_server *s)
{
	if (s->errors < SMTP_SERVER_MAX_ERRORS)
		return false;
	reply(s, 421, "4.7.0", "%s Too many errors; closing", s->hostname);
	s->st = S_CLOSED;
	return true;
}

void smtp_server_auth_done(struct smtp_server *s, enum smtp_auth_result r)
{
	if (s->st != S_WAIT_AUTH)
		return;
	s->st = S_COMMAND;
	switch (r) {
	case SMTP_AUTH_OK:
		free(s->user);
		s->user = xstrdup(s->auth_user);
		reply(s, 235, "2.7.0", "Authentication successful");
		break;
	case SMTP_AUTH_INVALID:
		reply(s, 535, "5.7.8", "Authentication credentials invalid");
		if (++s->auth_failures >= SMTP_SERVER_MAX_AUTH_FAILURES) {
			reply(s, 421, "4.7.0", "%s Too many failed authentications; closing", s->hostname);
			s->st = S_CLOSED;
		}
		break;
	case SMTP_AUTH_TEMPFAIL:
		reply(s, 454, "4.7.0", "Temporary authentication failure: the account cannot be checked now");
		break;
	}
	secret_free(&s->auth_user);
	secret_free(&s->auth_pass);
}

void smtp_server_deliver_done(struct smtp_server *s, int code, const char *enhanced, const char *text)
{
	if (s->st != S_WAIT_DELIVER)
		return;
	s->st = S_COMMAND;
	unsigned errors = s->errors;
	reply(s, code, enhanced, "%s", text);
	s->errors = errors; /* the submission server's refusal is not the client's error */
	reset_transaction(s);
	buf_free(smtp_in_data(s->in));
	buf_init(smtp_in_data(s->in), 0);
}

/* ------------------------------------------------------------------------ */
/* AUTH                                                                      */

/* A base64 line into a NUL-terminated string (no NULs inside); NULL if it does not decode. */
static char *b64_string(const char *b64, size_t len)
{
	uint8_t raw[SASL_PLAIN_MAX + 1];
	long n = sasl_base64_decode(b64, len, raw, SASL_PLAIN_MAX);
	if (n < 0 || memchr(raw, '\0', (size_t)n)) {
		gnutls_memset(raw, 0, sizeof(raw));
		return NULL;
	}
	char *s = xmalloc((size_t)n + 1);
	memcpy(s, raw, (size_t)n);
	s[n] = '\0';
	gnutls_memset(raw, 0, sizeof(raw));
	return s;
}

/* The PLAIN response: go on to the check, or refuse. */
static enum smtp_action auth_plain(struct smtp_server *s, const char *b64, size_t len)
{
	uint8_t raw[SASL_PLAIN_MAX + 1];
	struct sasl_plain plain;
	enum sasl_plain_result r = len == 1 && *b64 == '=' ? SASL_PLAIN_MALFORMED : sasl_plain_decode(b64, len, raw, &plain);
	enum smtp_action act = SMTP_ACTION_NONE;
	s->st = S_COMMAND;
	if (r == SASL_PLAIN_CANCELLED) {
		reply(s, 501, "5.0.0", "Authentication cancelled");
	} else if (r == SASL_PLAIN_AUTHZID) {
		reply(s, 535, "5.7.8", "Authentication credentials invalid (no proxy authorization)");
	} else if (r != SASL_PLAIN_OK || !plain.user_len || memchr(plain.user, '\0', plain.user_len)) {
		reply(s, 501, "5.5.2", "Cannot decode the AUTH PLAIN response");
	} else {
		s->auth_user = xmalloc(plain.user_len + 1);
		memcpy(s->auth_user, plain.user, plain.user_len);
		s->auth_user[plain.user_len] = '\0';
		s->auth_pass = xmalloc(plain.password_len + 1);
		memcpy(s->auth_pass, plain.password, plain.password_len);
		s->auth_pass[plain.password_len] = '\0';
		s->st = S_WAIT_AUTH;
		act = SMTP_ACTION_AUTH;
	}
	gnutls_memset(raw, 0, sizeof(raw));
	return act;
}

static enum smtp_action auth_response(struct smtp_server *s, const char *line, size_t len)
{
	if (len == 1 && line[0] == '*') {
		secret_free(&s->auth_user);
		s->st = S_COMMAND;
		reply(s, 501, "5.0.0", "Authentication cancelled");
		return SMTP_ACTION_NONE;
	}
	if (s->st == S_AUTH_PLAIN)
		return auth_plain(s, line, len);
	char *v = b64_string(line, len);
	if (!v) {
		secret_free(&s->auth_user);
		s->st = S_COMMAND;
		reply(s, 501, "5.5.2", "Cannot decode the AUTH LOGIN response");
		return SMTP_ACTION_NONE;
	}
	if (s->st == S_AUTH_USER) {
		s->auth_user = v;
		s->st = S_AUTH_PASS;
		buf_append_str(&s->out, "334 UGFzc3dvcmQ6\r\n"); /* "Password:" */
		return SMTP_ACTION_NONE;
	}
	s->auth_pass = v;
	if (!*s->auth_user) {
		secret_free(&s->auth_user);
		secret_free(&s->auth_pass);
		s->st = S_COMMAND;
		reply(s, 535, "5.7.8", "Authentication credentials invalid");
		return SMTP_ACTION_NONE;
	}
	s->st = S_WAIT_AUTH;
	return SMTP_ACTION_AUTH;
}

static enum smtp_action cmd_auth(struct smtp_server *s, const char *arg)
{
	if (s->user) {
		reply(s, 503, "5.5.1", "Already authenticated");
		return SMTP_ACTION_NONE;
	}
	if (s->in_mail) {
		reply(s, 503, "5.5.1", "AUTH is not permitted during a mail transaction");
		return SMTP_ACTION_NONE;
	}
	if (!s->helo) {
		reply(s, 503, "5.5.1", "Send EHLO first");
		return SMTP_ACTION_NONE;
	}
	if (!s->tls && !s->cfg.auth_in_clear) {
		reply(s, 538, "5.7.11", "Encryption required for requested authentication mechanism (STARTTLS first)");
		return SMTP_ACTION_NONE;
	}
	size_t ml = strcspn(arg, " ");
	const char *ir = arg[ml] == ' ' ? arg + ml + 1 : NULL;
	if (ml == 5 && strncasecmp(arg, "PLAIN", 5) == 0) {
		if (ir)
			return auth_plain(s, ir, strlen(ir));
		s->st = S_AUTH_PLAIN;
		buf_append_str(&s->out, "334 \r\n");
		return SMTP_ACTION_NONE;
	}
	if (ml == 5 && strncasecmp(arg, "LOGIN", 5) == 0) {
		s->st = S_AUTH_USER;
		if (ir)
			return auth_response(s, ir, strlen(ir));
		buf_append_str(&s->out, "334 VXNlcm5hbWU6\r\n"); /* "Username:" */
		return SMTP_ACTION_NONE;
	}
	reply(s, 504, "5.5.4", "Unrecognized authentication type (PLAIN and LOGIN are offered)");
	return SMTP_ACTION_NONE;
}

/* ------------------------------------------------------------------------ */
/* commands                                                                  */

static void cmd_ehlo(struct smtp_server *s, const char *arg, bool extended)
{
	if (!*arg) {
		reply(s, 501, "5.5.4", "Syntax: %s hostname", extended ? "EHLO" : "HELO");
		return;
	}
	reset_transaction(s);
	s->helo = true;
	if (!extended) {
		buf_printf(&s->out, "250 %s\r\n", s->hostname);
		return;
	}
	buf_printf(&s->out, "250-%s\r\n250-PIPELINING\r\n250-SIZE %zu\r\n250-8BITMIME\r\n", s->hostname,
	           s->cfg.max_message);
	if (s->cfg.tls_offered && !s->tls)
		buf_append_str(&s->out, "250-STARTTLS\r\n");
	if (s->tls || s->cfg.auth_in_clear)
		buf_append_str(&s->out, "250-AUTH PLAIN LOGIN\r\n");
	buf_append_str(&s->out, "250 ENHANCEDSTATUSCODES\r\n");
}

static void cmd_mail(struct smtp_server *s, enum smtp_parse_status ps, const struct smtp_command *c)
{
	if (!s->helo) {
		reply(s, 503, "5.5.1", "Send EHLO first");
		return;
	}
	if (!s->user) {
		reply(s, 530, "5.7.0", "Authentication required");
		return;
	}
	if (s->in_mail) {
		reply(s, 503, "5.5.1", "Nested MAIL command");
		return;
	}
	if (ps == SMTP_PARSE_SYNTAX) {
		reply(s, 501, "5.5.4", "Syntax: MAIL FROM:<address>");
		return;
	}
	if (ps == SMTP_PARSE_BAD_ADDRESS) {
		reply(s, 501, "5.1.7", "Bad sender address syntax");
		return;
	}
	size_t pos = 0;
	char key[32], value[300];
	while (smtp_param_next(c->params, &pos, key, sizeof(key), value, sizeof(value))) {
		if (strcmp(key, "SIZE") == 0) {
			unsigned long long n = 0;
			bool digits = *value != '\0' && strlen(value) < 20;
			for (const char *p = value; digits && *p; p++)
				digits = *p >= '0' && *p <= '9';
			if (!digits) {
				reply(s, 501, "5.5.4", "Bad SIZE parameter");
				return;
			}
			n = strtoull(value, NULL, 10);
			if (n > s->cfg.max_message) {
				reply(s, 552, "5.3.4", "Message size exceeds fixed maximum message size (%zu bytes)",
				      s->cfg.max_message);
				return;
			}
		} else if (strcmp(key, "BODY") == 0) {
			if (strcasecmp(value, "7BIT") != 0 && strcasecmp(value, "8BITMIME") != 0) {
				reply(s, 501, "5.5.4", "BODY is 7BIT or 8BITMIME");
				return;
			}
		} else if (strcmp(key, "AUTH") != 0) { /* RFC 4954 5: AUTH= may be ignored */
			reply(s, 555, "5.5.4", "Unsupported parameter %s", key);
			return;
		}
	}
	s->from = xstrdup(c->path);
	s->in_mail = true;
	reply(s, 250, "2.1.0", "Ok");
}

static void cmd_rcpt(struct smtp_server *s, enum smtp_parse_status ps, const struct smtp_command *c)
{
	if (!s->in_mail) {
		reply(s, 503, "5.5.1", "Need MAIL command first");
		return;
	}
	if (ps == SMTP_PARSE_SYNTAX) {
		reply(s, 501, "5.5.4", "Syntax: RCPT TO:<address>");
		return;
	}
	if (ps == SMTP_PARSE_BAD_ADDRESS) {
		reply(s, 501, "5.1.3", "Bad recipient address syntax");
		return;
	}
	if (*c->params) {
		reply(s, 555, "5.5.4", "No RCPT parameters are supported");
		return;
	}
	if (s->nrcpts >= s->cfg.max_recipients) {
		reply(s, 452, "4.5.3", "Too many recipients (limit %zu)", s->cfg.max_recipients);
		return;
	}
	s->rcpts = xrealloc(s->rcpts, (s->nrcpts + 1) * sizeof(*s->rcpts));
	s->rcpts[s->nrcpts++] = xstrdup(c->path);
	reply(s, 250, "2.1.5", "Ok");
}

static void cmd_data(struct smtp_server *s, const char *arg)
{
	if (*arg) {
		reply(s, 501, "5.5.4", "Syntax: DATA");
		return;
	}
	if (!s->in_mail) {
		reply(s, 503, "5.5.1", "Need MAIL command first");
		return;
	}
	if (!s->nrcpts) {
		reply(s, 503, "5.5.1", "Need RCPT command first");
		return;
	}
	buf_append_str(&s->out, "354 End data with <CR><LF>.<CR><LF>\r\n");
	smtp_in_begin_data(s->in);
	s->st = S_DATA;
}

static enum smtp_action command_line(struct smtp_server *s, const char *line, size_t len)
{
	if (s->st == S_AUTH_PLAIN || s->st == S_AUTH_USER || s->st == S_AUTH_PASS)
		return auth_response(s, line, len);
	if (memchr(line, '\0', len)) {
		reply(s, 500, "5.5.2", "Syntax error (NUL byte)");
		return SMTP_ACTION_NONE;
	}
	char copy[SMTP_MAX_COMMAND_LINE + 1];
	memcpy(copy, line, len + 1);
	struct smtp_command c;
	enum smtp_parse_status ps = smtp_command_parse(copy, &c);
	switch (c.verb) {
	case SMTP_VERB_EHLO:
	case SMTP_VERB_HELO:
		cmd_ehlo(s, c.arg, c.verb == SMTP_VERB_EHLO);
		break;
	case SMTP_VERB_MAIL:
		cmd_mail(s, ps, &c);
		break;
	case SMTP_VERB_RCPT:
		cmd_rcpt(s, ps, &c);
		break;
	case SMTP_VERB_DATA:
		cmd_data(s, c.arg);
		break;
	case SMTP_VERB_RSET:
		if (*c.arg) {
			reply(s, 501, "5.5.4", "Syntax: RSET");
			break;
		}
		reset_transaction(s);
		reply(s, 250, "2.0.0", "Ok");
		break;
	case SMTP_VERB_NOOP:
		reply(s, 250, "2.0.0", "Ok");
		break;
	case SMTP_VERB_QUIT:
		reply(s, 221, "2.0.0", "Bye");
		s->st = S_CLOSED;
		return SMTP_ACTION_CLOSE;
	case SMTP_VERB_VRFY:
		reply(s, 252, "2.5.0", "Cannot VRFY user, but will accept message");
		break;
	case SMTP_VERB_HELP:
		reply(s, 214, "2.0.0", "pimap-proxy: see RFC 5321");
		break;
	case SMTP_VERB_STARTTLS:
		if (*c.arg) {
			reply(s, 501, "5.5.4", "Syntax: STARTTLS");
		} else if (s->tls) {
			reply(s, 503, "5.5.1", "TLS already active");
		} else if (!s->cfg.tls_offered) {
			reply(s, 454, "4.7.0", "TLS not available");
		} else {
			reply(s, 220, "2.0.0", "Ready to start TLS");
			s->st = S_WAIT_TLS;
			return SMTP_ACTION_STARTTLS;
		}
		break;
	case SMTP_VERB_AUTH:
		return cmd_auth(s, c.arg);
	case SMTP_VERB_NOT_IMPLEMENTED:
		reply(s, 502, "5.5.1", "Command not implemented");
		break;
	case SMTP_VERB_UNKNOWN:
		reply(s, 500, "5.5.2", "Syntax error, command unrecognized");
		break;
	}
	return SMTP_ACTION_NONE;
}

enum smtp_action smtp_server_input(struct smtp_server *s, const uint8_t *data, size_t len, size_t *consumed)
{
	size_t pos = 0;
	*consumed = 0;
	for (;;) {
		if (s->st == S_CLOSED)
			return SMTP_ACTION_CLOSE;
		if (s->st == S_WAIT_AUTH || s->st == S_WAIT_DELIVER || s->st == S_WAIT_TLS) {
			*consumed = pos;
			return SMTP_ACTION_NONE;
		}
		if (too_many_errors(s))
			return SMTP_ACTION_CLOSE;
		size_t used = 0;
		enum smtp_in_event ev = smtp_in_feed(s->in, data + pos, len - pos, &used);
		pos += used;
		*consumed = pos;
		enum smtp_action act = SMTP_ACTION_NONE;
		switch (ev) {
		case SMTP_IN_NEED_MORE:
			return SMTP_ACTION_NONE;
		case SMTP_IN_LINE: {
			size_t n;
			const char *line = smtp_in_line(s->in, &n);
			act = command_line(s, line, n);
			break;
		}
		case SMTP_IN_LINE_TOO_LONG:
			if (s->st != S_COMMAND) { /* an AUTH response */
				secret_free(&s->auth_user);
				s->st = S_COMMAND;
			}
			reply(s, 500, "5.5.2", "Line too long (limit %d bytes)", SMTP_MAX_COMMAND_LINE);
			break;
		case SMTP_IN_BARE_LF:
			if (s->st != S_COMMAND) {
				secret_free(&s->auth_user);
				s->st = S_COMMAND;
			}
			reply(s, 500, "5.5.2", "Bare LF: lines must end with CRLF");
			break;
		case SMTP_IN_DATA_END:
			if (smtp_in_data_too_big(s->in)) {
				s->st = S_COMMAND;
				reply(s, 552, "5.3.4", "Message size exceeds fixed maximum message size (%zu bytes)",
				      s->cfg.max_message);
				reset_transaction(s);
				break;
			}
			/* Mail cannot carry NUL (RFC 5322; 8BITMIME is no BINARYMIME), and
			 * the XDELIVER literal it would go in cannot either: the gateway
			 * dropped the link at it, and the outbox retried it for ever with
			 * every later message held behind it. */
			struct buf *m = smtp_in_data(s->in);
			if (memchr(buf_head(m), '\0', buf_len(m))) {
				s->st = S_COMMAND;
				reply(s, 554, "5.6.0", "The message contains a NUL byte, which mail cannot carry; nothing was sent");
				reset_transaction(s);
				break;
			}
			s->st = S_WAIT_DELIVER;
			act = SMTP_ACTION_DELIVER;
			break;
		case SMTP_IN_DATA_BARE_LF:
			reply(s, 521, "5.5.2", "%s Bare CR or LF in the message (lines must end with CRLF); "
			      "nothing was sent, closing", s->hostname);
			reset_transaction(s);
			s->st = S_CLOSED;
			return SMTP_ACTION_CLOSE;
		}
		if (act != SMTP_ACTION_NONE)
			return act;
	}
}
