/*
 * msg_header.c - reading an RFC 5322 header (see msg_header.h).
 */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <gnutls/crypto.h>

#include "msg_header.h"

size_t msg_header_size(const uint8_t *msg, size_t len)
{
	size_t pos = 0;
	while (pos < len) {
		const uint8_t *lf = memchr(msg + pos, '\n', len - pos);
		size_t line_end = lf ? (size_t)(lf - msg) + 1 : len;
		size_t content = line_end - pos - (lf ? 1 : 0);
		if (content > 0 && msg[pos + content - 1] == '\r')
			content--;
		if (content == 0 && lf)
			return line_end;
		pos = line_end;
	}
	return len;
}

bool msg_header_next_field(const uint8_t *msg, size_t hlen, size_t *pos, struct msg_field *f)
{
	while (*pos < hlen) {
		size_t start = *pos;
		size_t end = start;
		/* A field is its first line plus every following line that starts with WSP. */
		do {
			const uint8_t *lf = memchr(msg + end, '\n', hlen - end);
			end = lf ? (size_t)(lf - msg) + 1 : hlen;
		} while (end < hlen && (msg[end] == ' ' || msg[end] == '\t'));
		*pos = end;
		const uint8_t *colon = memchr(msg + start, ':', end - start);
		if (!colon || msg[start] == ' ' || msg[start] == '\t' || msg[start] == '\r' || msg[start] == '\n')
			continue; /* not a field (a stray continuation, the blank line) */
		f->start = start;
		f->colon = (size_t)(colon - msg);
		f->end = end;
		return true;
	}
	return false;
}

bool msg_field_named(const uint8_t *msg, const struct msg_field *f, const char *name)
{
	size_t n = f->colon - f->start;
	/* Obsolete syntax allows WSP between the name and the colon. */
	while (n > 0 && (msg[f->start + n - 1] == ' ' || msg[f->start + n - 1] == '\t'))
		n--;
	return n == strlen(name) && strncasecmp((const char *)msg + f->start, name, n) == 0;
}

static bool is_wsp(uint8_t c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

bool msg_header_get(const uint8_t *msg, size_t len, const char *name, struct buf *out)
{
	size_t hlen = msg_header_size(msg, len), pos = 0;
	struct msg_field f;
	while (msg_header_next_field(msg, hlen, &pos, &f)) {
		if (!msg_field_named(msg, &f, name))
			continue;
		size_t a = f.colon + 1, b = f.end;
		while (a < b && is_wsp(msg[a]))
			a++;
		while (b > a && is_wsp(msg[b - 1]))
			b--;
		for (size_t i = a; i < b; i++)
			if (msg[i] != '\r' && msg[i] != '\n')
				buf_append(out, msg + i, 1);
		return true;
	}
	return false;
}

bool msg_header_has(const uint8_t *msg, size_t len, const char *name)
{
	size_t hlen = msg_header_size(msg, len), pos = 0;
	struct msg_field f;
	while (msg_header_next_field(msg, hlen, &pos, &f))
		if (msg_field_named(msg, &f, name))
			return true;
	return false;
}

/* ------------------------------------------------------------------------ */
/* address lists                                                             */

/*
 * One element of an address list, as collected by msg_address_list: the
 * text outside comments and angle brackets, and the content of the first
 * angle-addr if there was one.
 */
struct addr_elem {
	char outside[MSG_ADDR_MAX + 1];
	size_t nout;
	char angle[MSG_ADDR_MAX + 1];
	size_t nangle;
	bool have_angle;
	bool too_long;
	bool pending_space; /* whitespace after outside text: kept only if more text follows */
};

static void elem_put(struct addr_elem *e, bool in_angle, char c)
{
	char *dst = in_angle ? e->angle : e->outside;
	size_t *n = in_angle ? &e->nangle : &e->nout;
	if (!in_angle && e->pending_space) {
		e->pending_space = false;
		elem_put(e, false, ' ');
	}
	if (*n >= MSG_ADDR_MAX) {
		e->too_long = true;
		return;
	}
	dst[(*n)++] = c;
}

bool msg_addr_valid(const char *s, size_t n)
{
	size_t at = n;
	bool quoted = false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"')
			quoted = !quoted;
		else if (c == '@' && !quoted)
			at = i;
		else if (c < 0x20 || c == 0x7f || ((c == ' ' || c == '<' || c == '>') && !quoted))
			return false;
	}
	return !quoted && at > 0 && at + 1 < n;
}

/* Finish one element: 1 if it gave an address, 0 if empty, -1 if malformed. */
static int elem_finish(struct addr_elem *e, msg_addr_cb cb, void *ctx)
{
	if (e->too_long)
		return -1;
	const char *s;
	size_t n;
	if (e->have_angle) {
		s = e->angle;
		n = e->nangle;
		/* An obsolete source route "@a,@b:" before the address is dropped. */
		if (n && s[0] == '@') {
			const char *colon = memchr(s, ':', n);
			if (!colon)
				return -1;
			n -= (size_t)(colon + 1 - s);
			s = colon + 1;
		}
		if (n == 0)
			return -1; /* "<>" is no recipient */
	} else {
		s = e->outside;
		n = e->nout;
		if (n == 0)
			return 0;
	}
	if (!msg_addr_valid(s, n))
		return -1;
	if (cb)
		cb(s, n, ctx);
	return 1;
}

int msg_address_list(const char *value, size_t len, msg_addr_cb cb, void *ctx)
{
	struct addr_elem e;
	memset(&e, 0, sizeof(e));
	int count = 0, depth = 0;
	bool quoted = false, in_angle = false, esc = false;
	for (size_t i = 0; i <= len; i++) {
		char c = i < len ? value[i] : ',';
		if (esc) {
			esc = false;
			if (depth == 0)
				elem_put(&e, in_angle, c);
			continue;
		}
		if (depth > 0) { /* inside a comment: only nesting and escapes matter */
			if (c == '\\')
				esc = true;
			else if (c == '(')
				depth++;
			else if (c == ')')
				depth--;
			continue;
		}
		if (quoted) {
			if (c == '\\')
				esc = true;
			else if (c == '"')
				quoted = false;
			if (i == len)
				return -1; /* unterminated quoted string */
			elem_put(&e, in_angle, c);
			continue;
		}
		switch (c) {
		case '"':
			quoted = true;
			elem_put(&e, in_angle, c);
			break;
		case '(':
			depth = 1;
			break;
		case ')':
			return -1;
		case '<':
			if (in_angle || e.have_angle)
				return -1;
			in_angle = true;
			e.have_angle = true;
			break;
		case '>':
			if (!in_angle)
				return -1;
			in_angle = false;
			break;
		case ':':
			if (in_angle) {
				elem_put(&e, true, c);
				break;
			}
			/* "Group name:" - what came before was the group's display name. */
			e.nout = 0;
			e.pending_space = false;
			break;
		case ',':
		case ';':
			if (in_angle) {
				if (c == ';' || i == len)
					return -1;
				elem_put(&e, true, c); /* a route "@a,@b:" */
				break;
			} else {
				int r = elem_finish(&e, cb, ctx);
				if (r < 0)
					return -1;
				count += r;
				memset(&e, 0, sizeof(e));
			}
			break;
		case ' ':
		case '\t':
		case '\r':
		case '\n':
			/* Whitespace separates display-name words; an addr-spec has
			 * none, so without angle brackets it makes the element invalid. */
			if (!in_angle && e.nout)
				e.pending_space = true;
			break;
		default:
			/* Words of a display name before "<" are not the address. */
			elem_put(&e, in_angle, c);
			break;
		}
	}
	if (depth > 0 || quoted || in_angle)
		return -1;
	return count;
}

struct first_addr {
	char *out;
	size_t cap;
	bool found;
};

static void take_first(const char *addr, size_t len, void *ctx)
{
	struct first_addr *f = ctx;
	if (f->found || len + 1 > f->cap)
		return;
	memcpy(f->out, addr, len);
	f->out[len] = '\0';
	f->found = true;
}

bool msg_first_address(const char *value, size_t len, char *out, size_t cap)
{
	struct first_addr f = {out, cap, false};
	if (msg_address_list(value, len, take_first, &f) <= 0)
		return false;
	return f.found;
}

/* ------------------------------------------------------------------------ */
/* Message-ID                                                                */

bool msg_message_id(const uint8_t *msg, size_t len, char *out, size_t cap)
{
	struct buf v;
	buf_init(&v, 0);
	bool ok = msg_header_get(msg, len, "Message-ID", &v);
	size_t n = buf_len(&v);
	const char *s = (const char *)buf_head(&v);
	if (ok)
		ok = n >= 3 && n <= MSG_ID_MAX && n < cap && s[0] == '<' && s[n - 1] == '>' && memchr(s, '@', n);
	for (size_t i = 0; ok && i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c <= 0x20 || c >= 0x7f || (i > 0 && i + 1 < n && (c == '<' || c == '>')))
			ok = false;
	}
	if (ok) {
		memcpy(out, s, n);
		out[n] = '\0';
	}
	buf_free(&v);
	return ok;
}

void msg_random_hex(char *out, size_t nbytes)
{
	static const char digits[] = "0123456789abcdef";
	uint8_t rnd[64];
	if (nbytes > sizeof(rnd))
		nbytes = sizeof(rnd);
	gnutls_rnd(GNUTLS_RND_NONCE, rnd, nbytes);
	for (size_t i = 0; i < nbytes; i++) {
		out[2 * i] = digits[rnd[i] >> 4];
		out[2 * i + 1] = digits[rnd[i] & 15];
	}
	out[2 * nbytes] = '\0';
}

void msg_new_message_id(const char *host, char *out, size_t cap)
{
	char hex[12 * 2 + 1];
	msg_random_hex(hex, 12);
	/* The host part only needs to be unlikely to collide; keep it an atom. */
	char h[64];
	size_t k = 0;
	for (const char *p = host && *host ? host : "pimap.invalid"; *p && k + 1 < sizeof(h); p++)
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '.' ||
		    *p == '-')
			h[k++] = *p;
	h[k] = '\0';
	snprintf(out, cap, "<%lld.%s@%s>", (long long)time(NULL), hex, k ? h : "pimap.invalid");
}

bool msg_has_8bit(const uint8_t *msg, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (msg[i] & 0x80)
			return true;
	return false;
}

void msg_to_smtp_data(const uint8_t *msg, size_t len, struct buf *out)
{
	bool line_start = true;
	size_t run = 0; /* start of the current run of bytes copied as they are */
	for (size_t i = 0; i < len; i++) {
		uint8_t c = msg[i];
		if (line_start && c == '.') {
			buf_append(out, msg + run, i - run);
			buf_append(out, ".", 1);
			run = i;
		}
		line_start = false;
		if (c == '\r' && i + 1 < len && msg[i + 1] == '\n') {
			i++;
			line_start = true;
			continue;
		}
		if (c == '\r' || c == '\n') {
			buf_append(out, msg + run, i - run);
			buf_append(out, "\r\n", 2);
			run = i + 1;
			line_start = true;
		}
	}
	buf_append(out, msg + run, len - run);
	if (!line_start || len == 0)
		buf_append(out, "\r\n", 2);
}
