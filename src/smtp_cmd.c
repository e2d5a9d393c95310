/*
 * smtp_cmd.c - reading what an SMTP client sends (see smtp_cmd.h).
 */
#include "config.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "msg_header.h"
#include "smtp_cmd.h"

/* Where DATA reading is: at a line start, after a leading dot, inside a line, after a CR. */
enum data_state { D_START, D_DOT, D_DOT_CR, D_LINE, D_CR };

struct smtp_in {
	bool            data_mode;
	bool            dead;        /* after DATA_BARE_LF */
	/* command mode: the line with its CR, NUL-terminated without it once complete */
	char            line[SMTP_MAX_COMMAND_LINE + 1];
	size_t          line_len;
	bool            skipping;    /* dropping an over-long line up to its LF */
	bool            line_ready;  /* SMTP_IN_LINE was returned: the next feed starts a new line */
	/* DATA */
	enum data_state ds;
	struct buf      data;
	size_t          max;
	uint64_t        size;
	bool            too_big;
};

struct smtp_in *smtp_in_new(size_t max_message)
{
	struct smtp_in *in = xcalloc(1, sizeof(*in));
	buf_init(&in->data, 0);
	in->max = max_message;
	return in;
}

void smtp_in_free(struct smtp_in *in)
{
	if (!in)
		return;
	buf_free(&in->data);
	free(in);
}

void smtp_in_begin_data(struct smtp_in *in)
{
	in->line_ready = false;
	in->line_len = 0;
	in->data_mode = true;
	in->ds = D_START;
	buf_free(&in->data);
	buf_init(&in->data, 0);
	in->size = 0;
	in->too_big = false;
}

struct buf *smtp_in_data(struct smtp_in *in)
{
	return &in->data;
}

bool smtp_in_data_too_big(const struct smtp_in *in)
{
	return in->too_big;
}

uint64_t smtp_in_data_size(const struct smtp_in *in)
{
	return in->size;
}

const char *smtp_in_line(const struct smtp_in *in, size_t *len)
{
	*len = in->line_len;
	return in->line;
}

static void emit(struct smtp_in *in, const uint8_t *p, size_t n)
{
	in->size += n;
	if (in->too_big)
		return;
	if (buf_len(&in->data) + n > in->max) {
		in->too_big = true;
		buf_free(&in->data); /* nothing of it will be sent: give the memory back now */
		buf_init(&in->data, 0);
		return;
	}
	buf_append(&in->data, p, n);
}

static enum smtp_in_event feed_data(struct smtp_in *in, const uint8_t *data, size_t len, size_t *consumed)
{
	size_t i = 0;
	while (i < len) {
		uint8_t c = data[i];
		switch (in->ds) {
		case D_START:
			if (c == '.') {
				in->ds = D_DOT;
				i++;
			} else {
				in->ds = D_LINE;
			}
			continue;
		case D_DOT:
			if (c == '\r') {
				in->ds = D_DOT_CR;
				i++;
				continue;
			}
			in->ds = D_LINE; /* a stuffed dot: dropped; c is the line's first byte */
			continue;
		case D_DOT_CR:
			if (c != '\n')
				break;
			*consumed = i + 1;
			in->data_mode = false;
			return SMTP_IN_DATA_END;
		case D_LINE: {
			size_t j = i;
			while (j < len && data[j] != '\r' && data[j] != '\n')
				j++;
			emit(in, data + i, j - i);
			i = j;
			if (i < len) {
				if (data[i] == '\n')
					break;
				in->ds = D_CR;
				i++;
			}
			continue;
		}
		case D_CR:
			if (c != '\n')
				break;
			emit(in, (const uint8_t *)"\r\n", 2);
			in->ds = D_START;
			i++;
			continue;
		}
		/* A bare CR or LF: the break of each case above. */
		*consumed = i + 1;
		in->dead = true;
		in->data_mode = false;
		return SMTP_IN_DATA_BARE_LF;
	}
	*consumed = len;
	return SMTP_IN_NEED_MORE;
}

enum smtp_in_event smtp_in_feed(struct smtp_in *in, const uint8_t *data, size_t len, size_t *consumed)
{
	*consumed = 0;
	if (in->dead)
		return SMTP_IN_NEED_MORE;
	if (in->data_mode)
		return feed_data(in, data, len, consumed);
	if (in->line_ready) {
		/* The line returned last time has been read by now. */
		in->line_ready = false;
		in->line_len = 0;
	}
	for (size_t i = 0; i < len; i++) {
		uint8_t c = data[i];
		if (c == '\n') {
			*consumed = i + 1;
			if (in->skipping) {
				in->skipping = false;
				in->line_len = 0;
				return SMTP_IN_LINE_TOO_LONG;
			}
			if (in->line_len == 0 || in->line[in->line_len - 1] != '\r') {
				in->line_len = 0;
				return SMTP_IN_BARE_LF;
			}
			in->line[--in->line_len] = '\0';
			in->line_ready = true;
			return SMTP_IN_LINE;
		}
		if (in->skipping)
			continue;
		if (in->line_len >= SMTP_MAX_COMMAND_LINE - 1) {
			in->skipping = true; /* the rest of this line is dropped, never buffered */
			continue;
		}
		in->line[in->line_len++] = (char)c;
	}
	*consumed = len;
	return SMTP_IN_NEED_MORE;
}

/* ------------------------------------------------------------------------ */
/* command lines                                                             */

static const struct {
	const char    *name;
	enum smtp_verb verb;
} verbs[] = {
	{"HELO", SMTP_VERB_HELO}, {"EHLO", SMTP_VERB_EHLO}, {"MAIL", SMTP_VERB_MAIL}, {"RCPT", SMTP_VERB_RCPT},
	{"DATA", SMTP_VERB_DATA}, {"RSET", SMTP_VERB_RSET}, {"NOOP", SMTP_VERB_NOOP}, {"QUIT", SMTP_VERB_QUIT},
	{"VRFY", SMTP_VERB_VRFY}, {"HELP", SMTP_VERB_HELP}, {"STARTTLS", SMTP_VERB_STARTTLS},
	{"AUTH", SMTP_VERB_AUTH}, {"BDAT", SMTP_VERB_NOT_IMPLEMENTED}, {"EXPN", SMTP_VERB_NOT_IMPLEMENTED},
	{"ETRN", SMTP_VERB_NOT_IMPLEMENTED}, {"TURN", SMTP_VERB_NOT_IMPLEMENTED}, {"ATRN", SMTP_VERB_NOT_IMPLEMENTED},
	{"SEND", SMTP_VERB_NOT_IMPLEMENTED}, {"SOML", SMTP_VERB_NOT_IMPLEMENTED}, {"SAML", SMTP_VERB_NOT_IMPLEMENTED},
};

/* The path of MAIL FROM:/RCPT TO: at p: checks it and splits off the parameters. */
static enum smtp_parse_status parse_path(char *p, bool null_ok, struct smtp_command *cmd)
{
	while (*p == ' ')
		p++; /* "MAIL FROM: <a@b>": not RFC 5321, but what many clients send */
	if (*p != '<')
		return SMTP_PARSE_SYNTAX;
	char *start = ++p;
	bool quoted = false;
	for (; *p; p++) {
		if (*p == '\\' && quoted && p[1])
			p++;
		else if (*p == '"')
			quoted = !quoted;
		else if (*p == '>' && !quoted)
			break;
	}
	if (*p != '>')
		return SMTP_PARSE_SYNTAX;
	*p++ = '\0';
	if (*p && *p != ' ')
		return SMTP_PARSE_SYNTAX;
	while (*p == ' ')
		p++;
	cmd->params = p;
	/* An RFC 5321 source route "@a,@b:" is ignored (4.1.1.3). */
	if (*start == '@') {
		char *colon = strchr(start, ':');
		if (!colon)
			return SMTP_PARSE_BAD_ADDRESS;
		start = colon + 1;
	}
	cmd->path = start;
	size_t n = strlen(start);
	if (n == 0)
		return null_ok ? SMTP_PARSE_OK : SMTP_PARSE_BAD_ADDRESS;
	if (n > MSG_ADDR_MAX || !msg_addr_valid(start, n))
		return SMTP_PARSE_BAD_ADDRESS;
	return SMTP_PARSE_OK;
}

enum smtp_parse_status smtp_command_parse(char *line, struct smtp_command *cmd)
{
	memset(cmd, 0, sizeof(*cmd));
	cmd->arg = cmd->path = cmd->params = "";
	size_t vl = strcspn(line, " ");
	cmd->verb = SMTP_VERB_UNKNOWN;
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
		if (strlen(verbs[i].name) == vl && strncasecmp(line, verbs[i].name, vl) == 0)
			cmd->verb = verbs[i].verb;
	char *arg = line + vl;
	if (*arg == ' ')
		arg++;
	cmd->arg = arg;
	if (cmd->verb == SMTP_VERB_MAIL) {
		if (strncasecmp(arg, "FROM:", 5) != 0)
			return SMTP_PARSE_SYNTAX;
		return parse_path(arg + 5, true, cmd);
	}
	if (cmd->verb == SMTP_VERB_RCPT) {
		if (strncasecmp(arg, "TO:", 3) != 0)
			return SMTP_PARSE_SYNTAX;
		return parse_path(arg + 3, false, cmd);
	}
	return SMTP_PARSE_OK;
}

bool smtp_param_next(const char *params, size_t *pos, char *key, size_t keylen, char *value, size_t valuelen)
{
	const char *p = params + *pos;
	while (*p == ' ')
		p++;
	if (!*p)
		return false;
	size_t n = strcspn(p, " ");
	const char *eq = memchr(p, '=', n);
	size_t kl = eq ? (size_t)(eq - p) : n;
	size_t k = 0;
	for (; k < kl && k + 1 < keylen; k++)
		key[k] = (char)toupper((unsigned char)p[k]);
	key[k] = '\0';
	size_t v = 0;
	if (eq)
		for (const char *q = eq + 1; q < p + n && v + 1 < valuelen; q++)
			value[v++] = *q;
	value[v] = '\0';
	*pos = (size_t)(p + n - params);
	return true;
}
