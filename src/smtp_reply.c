/*
 * smtp_reply.c - incremental SMTP reply parser (see smtp_reply.h).
 */
#include "config.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "smtp_reply.h"

struct smtp_reply_parser {
	struct smtp_reply reply;
	char   line[SMTP_REPLY_MAX_LINE + 2]; /* the line being read, without its LF */
	size_t line_len;
	bool   done;
	const char *error;
};

struct smtp_reply_parser *smtp_reply_parser_new(void)
{
	struct smtp_reply_parser *p = xcalloc(1, sizeof(*p));
	buf_init(&p->reply.text, 0);
	return p;
}

void smtp_reply_parser_free(struct smtp_reply_parser *p)
{
	if (!p)
		return;
	buf_free(&p->reply.text);
	free(p);
}

void smtp_reply_reset(struct smtp_reply_parser *p)
{
	buf_clear(&p->reply.text);
	p->reply.code = 0;
	p->reply.nlines = 0;
	p->line_len = 0;
	p->done = false;
	p->error = NULL;
}

const struct smtp_reply *smtp_reply_get(const struct smtp_reply_parser *p)
{
	return p->done ? &p->reply : NULL;
}

const char *smtp_reply_error(const struct smtp_reply_parser *p)
{
	return p->error ? p->error : "no error";
}

static enum smtp_reply_result fail(struct smtp_reply_parser *p, const char *why)
{
	p->error = why;
	return SMTP_REPLY_ERROR;
}

/* One complete line (CR already removed): returns DONE for the last line of a reply. */
static enum smtp_reply_result take_line(struct smtp_reply_parser *p)
{
	const char *l = p->line;
	size_t n = p->line_len;
	if (n < 3 || !isdigit((unsigned char)l[0]) || !isdigit((unsigned char)l[1]) || !isdigit((unsigned char)l[2]))
		return fail(p, "reply line does not start with a three-digit code");
	int code = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
	if (code < 200 || code > 599)
		return fail(p, "reply code out of range");
	if (n > 3 && l[3] != ' ' && l[3] != '-')
		return fail(p, "reply code not followed by space or '-'");
	if (p->reply.nlines && code != p->reply.code)
		return fail(p, "reply lines with different codes");
	if (++p->reply.nlines > SMTP_REPLY_MAX_LINES)
		return fail(p, "reply has too many lines");
	p->reply.code = code;
	if (p->reply.nlines > 1)
		buf_append(&p->reply.text, "\n", 1);
	if (n > 4)
		buf_append(&p->reply.text, l + 4, n - 4);
	bool last = n == 3 || l[3] == ' ';
	p->line_len = 0;
	if (!last)
		return SMTP_REPLY_NEED_MORE;
	buf_append(&p->reply.text, "", 1);
	p->reply.text.end--; /* NUL-terminated, not counted */
	p->done = true;
	return SMTP_REPLY_DONE;
}

enum smtp_reply_result smtp_reply_feed(struct smtp_reply_parser *p, const uint8_t *data, size_t len,
                                       size_t *consumed)
{
	*consumed = 0;
	if (p->error)
		return SMTP_REPLY_ERROR;
	if (p->done)
		return SMTP_REPLY_DONE;
	for (size_t i = 0; i < len; i++) {
		uint8_t c = data[i];
		*consumed = i + 1;
		if (c == '\n') {
			if (p->line_len && p->line[p->line_len - 1] == '\r')
				p->line_len--;
			enum smtp_reply_result r = take_line(p);
			if (r != SMTP_REPLY_NEED_MORE)
				return r;
			continue;
		}
		if (c == '\0')
			return fail(p, "NUL byte in a reply");
		if (p->line_len >= SMTP_REPLY_MAX_LINE + 1)
			return fail(p, "reply line too long");
		p->line[p->line_len++] = (char)c;
	}
	return SMTP_REPLY_NEED_MORE;
}

bool smtp_reply_ehlo_has(const struct smtp_reply *r, const char *keyword, const char **params, size_t *params_len)
{
	const char *t = (const char *)buf_head(&r->text);
	size_t len = buf_len(&r->text), kl = strlen(keyword);
	size_t pos = 0;
	bool first = true;
	while (pos <= len && len) {
		const char *nl = memchr(t + pos, '\n', len - pos);
		size_t end = nl ? (size_t)(nl - t) : len;
		if (!first && end - pos >= kl && strncasecmp(t + pos, keyword, kl) == 0 &&
		    (end - pos == kl || t[pos + kl] == ' ' || t[pos + kl] == '=')) {
			if (params) {
				size_t s = pos + kl;
				while (s < end && (t[s] == ' ' || t[s] == '='))
					s++;
				*params = t + s;
				*params_len = end - s;
			}
			return true;
		}
		first = false;
		if (!nl)
			break;
		pos = end + 1;
	}
	return false;
}
