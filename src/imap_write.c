/*
 * imap_write.c - IMAP text a server parses exactly as meant (see imap_write.h).
 */
#include "config.h"

#include <stdbool.h>
#include <string.h>

#include "imap_write.h"

/* The literal header ending the line raw[pos..lf_at] (LF at lf_at), if any. */
struct lit_header {
	size_t brace;   /* offset of "{" ("~" before it for literal8) */
	size_t close;   /* offset of "}" */
	bool   nonsync; /* "{n+}" */
	size_t size;    /* n, saturated at SIZE_MAX */
};

static bool header_at_line_end(const uint8_t *raw, size_t pos, size_t lf_at, struct lit_header *h)
{
	size_t e = lf_at;
	if (e > pos && raw[e - 1] == '\r')
		e--;
	if (e <= pos || raw[e - 1] != '}')
		return false;
	h->close = e - 1;
	size_t j = e - 1;
	h->nonsync = false;
	if (j > pos && raw[j - 1] == '+') {
		h->nonsync = true;
		j--;
	}
	size_t digits_end = j;
	while (j > pos && raw[j - 1] >= '0' && raw[j - 1] <= '9')
		j--;
	if (j == digits_end || j <= pos || raw[j - 1] != '{')
		return false;
	h->brace = j - 1;
	size_t start = h->brace > pos && raw[h->brace - 1] == '~' ? h->brace - 1 : h->brace;
	if (!(start == pos || raw[start - 1] == ' ' || raw[start - 1] == '('))
		return false;
	h->size = 0;
	for (size_t k = j; k < digits_end; k++) {
		size_t d = (size_t)(raw[k] - '0');
		h->size = h->size > (SIZE_MAX - d) / 10 ? SIZE_MAX : h->size * 10 + d;
	}
	return true;
}

/*
 * Visit every literal header of a complete command: ends/sizes/nonsync get
 * the offset after its LF, its n and its kind (when want matches: sync
 * only, or all). Returns the count, or -1 past max. A size running past the
 * end of raw ends the scan: raw is not what the parser accepted.
 */
static int scan_literals(const uint8_t *raw, size_t len, bool all, size_t *ends, size_t *sizes, bool *nonsync,
                         size_t max)
{
	size_t pos = 0;
	int count = 0;
	while (pos < len) {
		const uint8_t *lf = memchr(raw + pos, '\n', len - pos);
		if (!lf)
			break;
		size_t lf_at = (size_t)(lf - raw);
		size_t next = lf_at + 1;
		struct lit_header h;
		if (header_at_line_end(raw, pos, lf_at, &h)) {
			if (all || !h.nonsync) {
				if ((size_t)count >= max)
					return -1;
				ends[count] = next;
				if (sizes)
					sizes[count] = h.size;
				if (nonsync)
					nonsync[count] = h.nonsync;
				count++;
			}
			if (h.size > len - next)
				break;
			next += h.size;
		}
		pos = next;
	}
	return count;
}

int imap_find_sync_literals(const uint8_t *raw, size_t len, size_t *ends, size_t *sizes, size_t max)
{
	return scan_literals(raw, len, false, ends, sizes, NULL, max);
}

int imap_find_literals(const uint8_t *raw, size_t len, size_t *ends, size_t *sizes, bool *nonsync, size_t max)
{
	return scan_literals(raw, len, true, ends, sizes, nonsync, max);
}

int imap_write_literals_sync(struct buf *out, const uint8_t *raw, size_t len)
{
	size_t ends[IMAP_MAX_LITERAL_SEGMENTS];
	bool nonsync[IMAP_MAX_LITERAL_SEGMENTS];
	int n = imap_find_literals(raw, len, ends, NULL, nonsync, IMAP_MAX_LITERAL_SEGMENTS);
	if (n < 0)
		return -1;
	size_t from = 0;
	for (int i = 0; i < n; i++) {
		if (!nonsync[i])
			continue;
		size_t plus = ends[i] - 1; /* LF */
		if (plus > 0 && raw[plus - 1] == '\r')
			plus--;
		plus -= 2; /* "+}" */
		buf_append(out, raw + from, plus - from);
		from = plus + 1;
	}
	buf_append(out, raw + from, len - from);
	return n;
}

int imap_write_retagged(struct buf *out, const char *new_tag, const uint8_t *raw, size_t len, size_t tag_len)
{
	size_t ends[IMAP_MAX_LITERAL_SEGMENTS];
	int n = imap_find_sync_literals(raw, len, ends, NULL, IMAP_MAX_LITERAL_SEGMENTS);
	if (n < 0)
		return -1;
	buf_append(out, new_tag, strlen(new_tag));
	size_t from = tag_len;
	for (int i = 0; i < n; i++) {
		size_t brace = ends[i] - 1; /* LF */
		if (brace > 0 && raw[brace - 1] == '\r')
			brace--;
		brace--; /* '}' */
		buf_append(out, raw + from, brace - from);
		buf_append(out, "+", 1);
		from = brace;
	}
	buf_append(out, raw + from, len - from);
	return 0;
}

/* Quoted when every byte allows it, else a literal: "{n+}" from a client, "{n}" from a server. */
bool imap_astring_needs_literal(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\r' || c == '\n' || c == '\0' || c >= 0x80)
			return true;
	}
	return false;
}

static void write_astring(struct buf *out, const char *s, size_t len, bool nonsync)
{
	if (imap_astring_needs_literal(s, len)) {
		buf_printf(out, nonsync ? "{%zu+}\r\n" : "{%zu}\r\n", len);
		buf_append(out, s, len);
		return;
	}
	buf_append(out, "\"", 1);
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '"' || s[i] == '\\')
			buf_append(out, "\\", 1);
		buf_append(out, s + i, 1);
	}
	buf_append(out, "\"", 1);
}

void imap_write_astring(struct buf *out, const char *s, size_t len)
{
	write_astring(out, s, len, true);
}

bool imap_mailbox_is_atom(const char *name)
{
	bool atom = *name != '\0';
	/* ATOM-CHAR minus "[": "a[b" is a valid atom, but parsers (ours too)
	 * take "[" for the start of a BODY[...] section running to its "]", so
	 * "* STATUS a[b (MESSAGES 1)" would lose its list (fuzz_roundtrip). */
	for (const char *p = name; *p && atom; p++)
		atom = (unsigned char)*p > 0x20 && (unsigned char)*p < 0x7f && !strchr("(){ %*\"\\[]", *p);
	return atom;
}

void imap_write_mailbox(struct buf *out, const char *name, bool in_response)
{
	if (imap_mailbox_is_atom(name))
		buf_append_str(out, name);
	else
		write_astring(out, name, strlen(name), !in_response);
}
