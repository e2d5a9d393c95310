/*
 * xdeliver.c - the XDELIVER grammar and its results (see xdeliver.h).
 */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap_write.h"
#include "msg_header.h"
#include "xdeliver.h"

static void errf(char *err, size_t errlen, const char *msg)
{
	if (err && errlen)
		snprintf(err, errlen, "%s", msg);
}

static char *dup_arg(const struct imap_arg *a)
{
	char *s = xmalloc(a->len + 1);
	memcpy(s, a->str, a->len);
	s[a->len] = '\0';
	return s;
}

/* A string argument without NUL, CR or LF (a mailbox name, an address part). */
static bool clean_string(const struct imap_arg *a)
{
	if (!imap_arg_is_string(a) || a->type == IMAP_ARG_LIST)
		return false;
	for (size_t i = 0; i < a->len; i++)
		if (a->str[i] == '\0' || a->str[i] == '\r' || a->str[i] == '\n')
			return false;
	return true;
}

static bool is_nil(const struct imap_arg *a)
{
	return a->type == IMAP_ARG_ATOM && imap_arg_is_atom(a, "NIL");
}

/* RFC 5321 atext plus ".": a local part that needs no quoting (and no leading, trailing or double dot). */
static bool local_is_dot_atom(const char *s, size_t n)
{
	if (n == 0 || s[0] == '.' || s[n - 1] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '.' && s[i + 1] == '.')
			return false;
		if (!(isalnum(c) || strchr("!#$%&'*+-/=?^_`{|}~.", c)))
			return false;
	}
	return true;
}

/* "mailbox@host" for SMTP from an ENVELOPE address's parts: the local part quoted when it needs it. */
static int build_path(const struct imap_arg *mbox, const struct imap_arg *host, char **out)
{
	struct buf b;
	buf_init(&b, 0);
	if (local_is_dot_atom(mbox->str, mbox->len)) {
		buf_append(&b, mbox->str, mbox->len);
	} else {
		buf_append(&b, "\"", 1);
		for (size_t i = 0; i < mbox->len; i++) {
			unsigned char c = (unsigned char)mbox->str[i];
			if (c < 0x20 || c == 0x7f) {
				buf_free(&b);
				return -1;
			}
			if (c == '"' || c == '\\')
				buf_append(&b, "\\", 1);
			buf_append(&b, &mbox->str[i], 1);
		}
		buf_append(&b, "\"", 1);
	}
	buf_append(&b, "@", 1);
	for (size_t i = 0; i < host->len; i++) {
		unsigned char c = (unsigned char)host->str[i];
		/* A domain or an address literal [1.2.3.4]; never something that ends the path. */
		if (c <= 0x20 || c == 0x7f || c == '<' || c == '>' || c == '"' || c == '@' || c == ',') {
			buf_free(&b);
			return -1;
		}
	}
	buf_append(&b, host->str, host->len);
	if (buf_len(&b) > MSG_ADDR_MAX) {
		buf_free(&b);
		return -1;
	}
	buf_append(&b, "", 1);
	*out = xstrdup((const char *)buf_head(&b));
	buf_free(&b);
	return 0;
}

static int parse_envelope(const struct imap_arg *list, struct xdeliver_cmd *out, char *err, size_t errlen)
{
	if (list->type != IMAP_ARG_LIST || list->list_count == 0) {
		errf(err, errlen, "ENVELOPE needs a list of one or more recipient addresses");
		return -1;
	}
	if (list->list_count > XDELIVER_MAX_RECIPIENTS) {
		errf(err, errlen, "too many recipients");
		return -1;
	}
	out->rcpts = xcalloc(list->list_count, sizeof(*out->rcpts));
	for (size_t i = 0; i < list->list_count; i++) {
		const struct imap_arg *a = &list->list[i];
		if (a->type != IMAP_ARG_LIST || a->list_count != 4) {
			errf(err, errlen, "a recipient is (name adl mailbox host)");
			return -1;
		}
		const struct imap_arg *name = &a->list[0], *adl = &a->list[1], *mbox = &a->list[2], *host = &a->list[3];
		if ((!is_nil(name) && !clean_string(name)) || (!is_nil(adl) && !clean_string(adl))) {
			errf(err, errlen, "a recipient's name and route must be NIL or strings");
			return -1;
		}
		if (is_nil(mbox) || is_nil(host) || !clean_string(mbox) || !clean_string(host) || mbox->len == 0 ||
		    host->len == 0) {
			errf(err, errlen, "a recipient needs a mailbox and a host (group syntax is not a recipient)");
			return -1;
		}
		if (build_path(mbox, host, &out->rcpts[out->nrcpts]) < 0) {
			errf(err, errlen, "invalid recipient address");
			return -1;
		}
		out->nrcpts++;
	}
	return 0;
}

int xdeliver_parse(const struct imap_msg *m, struct xdeliver_cmd *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	const struct imap_arg *a = m->args;
	size_t n = m->nargs, i = 1;
	if (i >= n || a[i].type != IMAP_ARG_ATOM) {
		errf(err, errlen, "XDELIVER needs N, R or F");
		goto bad;
	}
	if (imap_arg_is_atom(&a[i], "N")) {
		out->kind = XDELIVER_NEW;
		i++;
	} else if (imap_arg_is_atom(&a[i], "R") || imap_arg_is_atom(&a[i], "F")) {
		out->kind = imap_arg_is_atom(&a[i], "R") ? XDELIVER_REPLY : XDELIVER_FORWARD;
		i++;
		if (i + 4 > n || !clean_string(&a[i]) || a[i].len == 0) {
			errf(err, errlen, "R and F need a folder, UIDVALIDITY, UID and Y or N");
			goto bad;
		}
		out->folder = dup_arg(&a[i++]);
		if (a[i].type != IMAP_ARG_ATOM || !imap_parse_u32(a[i].str, a[i].len, &out->uidvalidity) ||
		    out->uidvalidity == 0 || a[i + 1].type != IMAP_ARG_ATOM ||
		    !imap_parse_u32(a[i + 1].str, a[i + 1].len, &out->uid) || out->uid == 0) {
			errf(err, errlen, "UIDVALIDITY and UID must be numbers above 0");
			goto bad;
		}
		i += 2;
		if (imap_arg_is_atom(&a[i], "Y"))
			out->reattach = true;
		else if (!imap_arg_is_atom(&a[i], "N")) {
			errf(err, errlen, "expected Y or N (re-attach the original's attachments)");
			goto bad;
		}
		i++;
	} else {
		errf(err, errlen, "XDELIVER needs N, R or F");
		goto bad;
	}
	if (i < n && a[i].type == IMAP_ARG_ATOM && a[i].len >= 7 && strncasecmp(a[i].str, "SAVETO=", 7) == 0) {
		if (a[i].len == 7) {
			errf(err, errlen, "SAVETO= needs a folder (SAVETO \"name\" for names that need quotes)");
			goto bad;
		}
		out->saveto = xmalloc(a[i].len - 6);
		memcpy(out->saveto, a[i].str + 7, a[i].len - 7);
		out->saveto[a[i].len - 7] = '\0';
		i++;
	} else if (i < n && imap_arg_is_atom(&a[i], "SAVETO")) {
		if (i + 1 >= n || !clean_string(&a[i + 1]) || a[i + 1].len == 0) {
			errf(err, errlen, "SAVETO needs a folder");
			goto bad;
		}
		out->saveto = dup_arg(&a[i + 1]);
		i += 2;
	}
	if (i >= n || !imap_arg_is_atom(&a[i], "ENVELOPE")) {
		errf(err, errlen, "expected ENVELOPE (recipients)");
		goto bad;
	}
	i++;
	if (i >= n) {
		errf(err, errlen, "ENVELOPE needs a list of recipients");
		goto bad;
	}
	if (is_nil(&a[i])) {
		errf(err, errlen, "ENVELOPE NIL is not supported: list the recipients");
		goto bad;
	}
	if (parse_envelope(&a[i], out, err, errlen) < 0)
		goto bad;
	i++;
	if (i >= n || a[i].type != IMAP_ARG_LITERAL) {
		errf(err, errlen, "the message must follow as a literal");
		goto bad;
	}
	if (a[i].len == 0) {
		errf(err, errlen, "the message is empty");
		goto bad;
	}
	/* A literal8 can hold NUL; mail cannot (RFC 5322), the SAVETO copy goes
	 * to the store in a plain literal, and what pimap-proxy writes back
	 * (xdeliver_format) could not be parsed (found by fuzz_xdeliver). */
	if (memchr(a[i].str, '\0', a[i].len)) {
		errf(err, errlen, "the message contains a NUL byte, which mail cannot carry");
		goto bad;
	}
	out->msg = (const uint8_t *)a[i].str;
	out->msg_len = a[i].len;
	if (i + 1 != n) {
		errf(err, errlen, "unexpected arguments after the message");
		goto bad;
	}
	return 0;
bad:
	xdeliver_cmd_free(out);
	return -1;
}

void xdeliver_cmd_free(struct xdeliver_cmd *cmd)
{
	free(cmd->folder);
	free(cmd->saveto);
	for (size_t i = 0; i < cmd->nrcpts; i++)
		free(cmd->rcpts[i]);
	free(cmd->rcpts);
	memset(cmd, 0, sizeof(*cmd));
}

/* Split an SMTP path "local@domain" (local may be quoted) into the unquoted local part and the domain. */
static int split_path(const char *path, struct buf *local, const char **domain)
{
	const char *at = strrchr(path, '@');
	if (!at || at == path || !at[1])
		return -1;
	if (path[0] == '"') {
		if (at - path < 2 || at[-1] != '"')
			return -1;
		for (const char *p = path + 1; p < at - 1; p++) {
			if (*p == '\\' && p + 1 < at - 1)
				p++;
			buf_append(local, p, 1);
		}
	} else {
		buf_append(local, path, (size_t)(at - path));
	}
	*domain = at + 1;
	return 0;
}

int xdeliver_format(struct buf *out, const struct xdeliver_cmd *cmd)
{
	struct buf b;
	buf_init(&b, 0);
	buf_append_str(&b, "XDELIVER ");
	if (cmd->kind == XDELIVER_NEW) {
		buf_append_str(&b, "N");
	} else {
		buf_append_str(&b, cmd->kind == XDELIVER_REPLY ? "R " : "F ");
		imap_write_mailbox(&b, cmd->folder, false);
		buf_printf(&b, " %u %u %s", cmd->uidvalidity, cmd->uid, cmd->reattach ? "Y" : "N");
	}
	if (cmd->saveto) {
		if (imap_mailbox_is_atom(cmd->saveto)) {
			buf_printf(&b, " SAVETO=%s", cmd->saveto);
		} else {
			buf_append_str(&b, " SAVETO ");
			imap_write_mailbox(&b, cmd->saveto, false);
		}
	}
	buf_append_str(&b, " ENVELOPE (");
	for (size_t i = 0; i < cmd->nrcpts; i++) {
		struct buf local;
		const char *domain;
		buf_init(&local, 0);
		if (split_path(cmd->rcpts[i], &local, &domain) < 0) {
			buf_free(&local);
			buf_free(&b);
			return -1;
		}
		buf_append_str(&b, "(NIL NIL ");
		imap_write_astring(&b, (const char *)buf_head(&local), buf_len(&local));
		buf_append(&b, " ", 1);
		imap_write_astring(&b, domain, strlen(domain));
		buf_append_str(&b, ")");
		buf_free(&local);
	}
	buf_printf(&b, ") {%zu+}\r\n", cmd->msg_len);
	buf_append(&b, cmd->msg, cmd->msg_len);
	buf_append(&b, "\r\n", 2);
	buf_append(out, buf_head(&b), buf_len(&b));
	buf_free(&b);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* results                                                                   */

/* "X.Y.Z" with X the class of code: RFC 3463 status code at the start of s. Returns its length or 0. */
static size_t enhanced_prefix(const char *s, size_t len, int code)
{
	size_t i = 0;
	if (len < 5 || s[0] != '0' + code / 100 || s[1] != '.')
		return 0;
	i = 2;
	for (int part = 0; part < 2; part++) {
		size_t d = 0;
		while (i < len && isdigit((unsigned char)s[i]) && d < 3) {
			i++;
			d++;
		}
		if (d == 0)
			return 0;
		if (part == 0) {
			if (i >= len || s[i] != '.')
				return 0;
			i++;
		}
	}
	if (i < len && s[i] != ' ')
		return 0;
	return i;
}

void smtp_outcome_set(struct smtp_outcome *o, int code, const char *text, size_t len)
{
	memset(o, 0, sizeof(*o));
	o->code = code;
	size_t e = enhanced_prefix(text, len, code);
	if (e && e < sizeof(o->enhanced)) {
		memcpy(o->enhanced, text, e);
		o->enhanced[e] = '\0';
		text += e;
		len -= e;
	}
	while (len && *text == ' ') {
		text++;
		len--;
	}
	size_t k = 0;
	for (size_t i = 0; i < len && k < XDELIVER_MAX_TEXT; i++) {
		unsigned char c = (unsigned char)text[i];
		o->text[k++] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
	}
	while (k && o->text[k - 1] == ' ')
		k--;
	o->text[k] = '\0';
}

void xdeliver_result_format(struct buf *out, const struct smtp_outcome *o, const char *appenduid,
                            const char *prefix)
{
	bool ok = o->code >= 200 && o->code < 300;
	const char *sep = *o->enhanced ? " " : "";
	if (ok && appenduid)
		buf_printf(out, "OK [APPENDUID %s] %d%s%s ", appenduid, o->code, sep, o->enhanced);
	else
		buf_printf(out, "%s [SMTP %d%s%s] ", ok ? "OK" : "NO", o->code, sep, o->enhanced);
	if (prefix && *prefix)
		buf_printf(out, "%s%s", prefix, *o->text ? ": " : "");
	buf_append_str(out, o->text);
}

/* "SMTP 550 5.1.1" in a response code: the code and enhanced code. */
static bool smtp_code(const struct imap_msg *m, int *code, const char **enh, size_t *enh_len)
{
	if (!m->code || m->code_len < 8 || strncasecmp(m->code, "SMTP ", 5) != 0)
		return false;
	const char *p = m->code + 5;
	if (!isdigit((unsigned char)p[0]) || !isdigit((unsigned char)p[1]) || !isdigit((unsigned char)p[2]))
		return false;
	*code = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
	if (*code < 200 || *code > 599)
		return false;
	*enh = p[3] == ' ' ? p + 4 : p + 3;
	*enh_len = m->code_len - (size_t)(*enh - m->code);
	return true;
}

static bool code_is(const struct imap_msg *m, const char *name)
{
	size_t n = strlen(name);
	return m->code && m->code_len >= n && strncasecmp(m->code, name, n) == 0 &&
	       (m->code_len == n || m->code[n] == ' ');
}

static void outcome_fixed(struct smtp_outcome *o, int code, const char *enh, const char *what,
                          const struct imap_msg *m)
{
	char text[XDELIVER_MAX_TEXT + 64];
	snprintf(text, sizeof(text), "%s %s%s%.*s", enh, what, m->text_len ? ": " : "", (int)m->text_len,
	         m->text ? m->text : "");
	smtp_outcome_set(o, code, text, strlen(text));
}

enum xdeliver_status xdeliver_result_parse(const struct imap_msg *m, struct smtp_outcome *out)
{
	int code;
	const char *enh;
	size_t enh_len;
	if (smtp_code(m, &code, &enh, &enh_len)) {
		char text[XDELIVER_MAX_TEXT + 32];
		snprintf(text, sizeof(text), "%.*s%s%.*s", (int)enh_len, enh, enh_len ? " " : "", (int)m->text_len,
		         m->text ? m->text : "");
		smtp_outcome_set(out, code, text, strlen(text));
		if (m->status == IMAP_STATUS_OK && code < 300)
			return XDELIVER_SENT;
		if (m->status == IMAP_STATUS_NO && code >= 400)
			return XDELIVER_REJECTED;
		outcome_fixed(out, 451, "4.3.0", "Inconsistent answer from the gateway", m);
		return XDELIVER_UNAVAILABLE;
	}
	if (m->status == IMAP_STATUS_OK) {
		/* "OK [APPENDUID v u] 250 2.0.0 text": the server's reply follows in the text. */
		if (m->text_len >= 3 && isdigit((unsigned char)m->text[0]) && m->text[0] == '2' &&
		    isdigit((unsigned char)m->text[1]) && isdigit((unsigned char)m->text[2]) &&
		    (m->text_len == 3 || m->text[3] == ' '))
			smtp_outcome_set(out, (m->text[0] - '0') * 100 + (m->text[1] - '0') * 10 + (m->text[2] - '0'),
			                 m->text + (m->text_len > 3 ? 4 : 3), m->text_len > 3 ? m->text_len - 4 : 0);
		else
			outcome_fixed(out, 250, "2.0.0", "Sent", m);
		return XDELIVER_SENT;
	}
	if (code_is(m, "UNAVAILABLE")) {
		outcome_fixed(out, 451, "4.4.1", "The gateway cannot relay now", m);
		return XDELIVER_UNAVAILABLE;
	}
	if (code_is(m, "DELIVERYUNKNOWN")) {
		outcome_fixed(out, 554, "5.4.0", "Delivery status unknown; not sent again", m);
		return XDELIVER_UNKNOWN;
	}
	if (code_is(m, "TOOBIG")) {
		outcome_fixed(out, 552, "5.3.4", "Message too big for the gateway", m);
		return XDELIVER_REFUSED;
	}
	if (code_is(m, "LIMIT")) {
		outcome_fixed(out, 451, "4.3.2", "The gateway is busy", m);
		return XDELIVER_UNAVAILABLE;
	}
	if (m->status == IMAP_STATUS_BAD) {
		outcome_fixed(out, 554, "5.6.0", "The gateway refused the message", m);
		return XDELIVER_REFUSED;
	}
	outcome_fixed(out, 554, "5.7.0", "The gateway refused to send the message", m);
	return XDELIVER_REFUSED;
}
