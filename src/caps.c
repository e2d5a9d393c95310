/*
 * caps.c - capability list rewriting for the client leg (see caps.h).
 */
#include "config.h"

#include <string.h>
#include <strings.h>

#include "caps.h"

/* Iterate over space-separated tokens of list: returns the next token start, sets *tlen. */
static const char *next_token(const char **pos, const char *end, size_t *tlen)
{
	const char *p = *pos;
	while (p < end && *p == ' ')
		p++;
	if (p >= end)
		return NULL;
	const char *t = p;
	while (p < end && *p != ' ')
		p++;
	*tlen = (size_t)(p - t);
	*pos = p;
	return t;
}

static bool token_is(const char *t, size_t tlen, const char *word)
{
	return strlen(word) == tlen && strncasecmp(t, word, tlen) == 0;
}

static bool token_has_prefix(const char *t, size_t tlen, const char *prefix)
{
	size_t n = strlen(prefix);
	return tlen >= n && strncasecmp(t, prefix, n) == 0;
}

/* Capabilities that the proxy cannot pass through unchanged. */
static bool dropped(const char *t, size_t tlen)
{
	/* STARTTLS on the client leg is ours. LOGINDISABLED stays: if the
	 * upstream still refuses LOGIN over our TLS link, the client must know. */
	if (token_is(t, tlen, "STARTTLS"))
		return true;
	if (token_has_prefix(t, tlen, "COMPRESS="))
		return true; /* the client leg's compression is ours; re-added below */
	/* Channel binding ties SASL to the TLS session the client sees, which is
	 * not the one the upstream sees. */
	if (token_has_prefix(t, tlen, "AUTH=") && tlen > 5 && strncasecmp(t + tlen - 5, "-PLUS", 5) == 0)
		return true;
	return false;
}

/* What a gateway offers that a client of the proxy must not see. */
static bool gateway_only(const char *t, size_t tlen)
{
	static const char *const words[] = {"XPIMAPv1", "XPIMAPPREF", "XFILTER", "XDELIVER", "XZIP", "XPROVISION",
	                                    "NOTIFY", NULL};
	for (const char *const *w = words; *w; w++)
		if (token_is(t, tlen, *w))
			return true;
	return token_has_prefix(t, tlen, "AUTH=") && !token_is(t, tlen, "AUTH=PLAIN");
}

void caps_for_client(const char *upstream, size_t len, const struct caps_client_leg *leg, struct buf *out)
{
	const char *pos = upstream, *end = upstream + len, *t;
	size_t tlen;
	bool first = true;

	while ((t = next_token(&pos, end, &tlen)) != NULL) {
		if (dropped(t, tlen) || (leg->gateway && gateway_only(t, tlen)))
			continue;
		if (leg->login_disabled && (token_has_prefix(t, tlen, "AUTH=") || token_is(t, tlen, "LOGINDISABLED")))
			continue;
		if (!first)
			buf_append(out, " ", 1);
		buf_append(out, t, tlen);
		first = false;
	}
	if (!leg->tls && !leg->authenticated) {
		buf_append_str(out, first ? "STARTTLS" : " STARTTLS");
		first = false;
	}
	if (leg->login_disabled) {
		buf_append_str(out, first ? "LOGINDISABLED" : " LOGINDISABLED");
		first = false;
	}
	if (leg->authenticated)
		buf_append_str(out, first ? "COMPRESS=DEFLATE" : " COMPRESS=DEFLATE");
}

bool caps_contains(const char *list, size_t len, const char *cap)
{
	const char *pos = list, *end = list + len, *t;
	size_t tlen;
	while ((t = next_token(&pos, end, &tlen)) != NULL)
		if (token_is(t, tlen, cap))
			return true;
	return false;
}
