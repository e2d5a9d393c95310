/*
 * fuzz_smtp.c - libFuzzer target for SMTP: the submission server's state
 * machine (smtp_server.c, what pimap-proxy's SMTP listener runs on what a
 * client sends) and the reply reader (smtp_reply.c, what the gateway reads
 * from the submission server).
 *
 * Bit 0 of the first byte picks the server or the reply reader; the other
 * bits configure the server (STARTTLS offered, TLS already on, AUTH allowed
 * in clear) and seed the chunking. Each input is run once in one piece and
 * once in pieces: the transcripts (replies, actions, delivered envelopes and
 * messages; replies and errors) must be the same. Besides that the server
 * must never:
 *  - ask to check credentials over a connection that is not protected
 *    (no TLS yet, not tls_active) unless AUTH in clear is allowed;
 *  - deliver a message without an accepted AUTH since the last TLS start,
 *    with no recipient, with more than max_recipients, or over max_message;
 *  - keep the authenticated user across STARTTLS;
 *  - write anything but well-formed replies ("ddd" + " " or "-", 2xx-5xx,
 *    CRLF, no other CR or LF).
 * The credentials the harness accepts: any user with password "secret"
 * ("down": a temporary failure). A message starting with "reject" is
 * refused by the fake relay.
 *
 * Corpus: tests/fuzz/corpus/smtp; dictionary tests/fuzz/smtp.dict.
 */
#include "config.h"

#include "fuzz.h"
#include "smtp_reply.h"
#include "smtp_server.h"

/* Every reply line well-formed; appended to the transcript. */
static void take_output(struct smtp_server *s, struct buf *t)
{
	struct buf *out = smtp_server_output(s);
	const uint8_t *o = buf_head(out);
	size_t n = buf_len(out);
	size_t i = 0;
	while (i < n) {
		const uint8_t *lf = memchr(o + i, '\n', n - i);
		FUZZ_CHECK(lf != NULL);
		size_t e = (size_t)(lf - o);
		FUZZ_CHECK(e >= i + 4 && o[e - 1] == '\r');
		FUZZ_CHECK(o[i] >= '2' && o[i] <= '5' && o[i + 1] >= '0' && o[i + 1] <= '9' && o[i + 2] >= '0' &&
		           o[i + 2] <= '9');
		FUZZ_CHECK(o[i + 3] == ' ' || o[i + 3] == '-' || e == i + 4);
		FUZZ_CHECK(memchr(o + i, '\r', e - 1 - i) == NULL);
		i = e + 1;
	}
	buf_append(t, o, n);
	buf_clear(out);
}

static void run_server(const struct smtp_server_config *cfg, const uint8_t *data, size_t size, uint32_t rng,
                       struct buf *t)
{
	struct smtp_server *s = smtp_server_new(cfg);
	FUZZ_CHECK(s != NULL);
	bool tls = cfg->tls_active, authed = false;
	smtp_server_greet(s);
	take_output(s, t);
	size_t pos = 0;
	for (int guard = 0; guard < 100000; guard++) {
		size_t n = pos < size ? fuzz_chunk(&rng, size - pos) : 0, used = 0;
		enum smtp_action act = smtp_server_input(s, data + pos, n, &used);
		FUZZ_CHECK(used <= n);
		pos += used;
		take_output(s, t);
		/* NONE only says "give me more": how often depends on the chunking. */
		if (act != SMTP_ACTION_NONE)
			buf_printf(t, "<%d>", (int)act);
		if (act == SMTP_ACTION_CLOSE)
			break;
		switch (act) {
		case SMTP_ACTION_STARTTLS:
			FUZZ_CHECK(cfg->tls_offered && !tls);
			tls = true;
			authed = false;
			smtp_server_tls_started(s);
			/* RFC 3207 4.2: nothing learnt before TLS is kept. */
			FUZZ_CHECK(smtp_server_user(s) == NULL);
			break;
		case SMTP_ACTION_AUTH: {
			/* Never credentials over an unprotected connection unless allowed. */
			FUZZ_CHECK(tls || cfg->auth_in_clear);
			const char *pw = smtp_server_auth_password(s);
			const char *user = smtp_server_auth_user(s);
			FUZZ_CHECK(pw != NULL && user != NULL);
			buf_printf(t, "[auth %s]", user);
			enum smtp_auth_result r = strcmp(pw, "secret") == 0 ? SMTP_AUTH_OK
			                          : strcmp(pw, "down") == 0 ? SMTP_AUTH_TEMPFAIL
			                                                    : SMTP_AUTH_INVALID;
			smtp_server_auth_done(s, r);
			if (r == SMTP_AUTH_OK) {
				authed = true;
				FUZZ_CHECK(smtp_server_user(s) != NULL);
			}
			break;
		}
		case SMTP_ACTION_DELIVER: {
			FUZZ_CHECK(authed && smtp_server_user(s) != NULL);
			size_t nr = 0;
			char *const *rcpts = smtp_server_rcpts(s, &nr);
			FUZZ_CHECK(nr >= 1 && nr <= cfg->max_recipients);
			struct buf *m = smtp_server_message(s);
			FUZZ_CHECK(buf_len(m) <= cfg->max_message);
			FUZZ_CHECK(!memchr(buf_head(m), '\0', buf_len(m))); /* XDELIVER could not carry it */
			buf_printf(t, "[deliver %s", smtp_server_mail_from(s));
			for (size_t i = 0; i < nr; i++)
				buf_printf(t, " %s", rcpts[i]);
			buf_printf(t, " %zu]", buf_len(m));
			buf_append(t, buf_head(m), buf_len(m));
			bool reject = buf_len(m) >= 6 && memcmp(buf_head(m), "reject", 6) == 0;
			smtp_server_deliver_done(s, reject ? 550 : 250, reject ? "5.7.1" : "2.0.0", reject ? "no" : "sent");
			break;
		}
		case SMTP_ACTION_NONE:
			/* Everything given was taken (no action is pending). */
			FUZZ_CHECK(used == n);
			break;
		case SMTP_ACTION_CLOSE:
			break;
		}
		take_output(s, t);
		if (act == SMTP_ACTION_NONE && pos >= size)
			break;
	}
	smtp_server_free(s);
}

static void run_replies(const uint8_t *data, size_t size, uint32_t rng, struct buf *t)
{
	struct smtp_reply_parser *p = smtp_reply_parser_new();
	FUZZ_CHECK(p != NULL);
	size_t pos = 0, end = 0;
	while (pos < size) {
		if (end <= pos)
			end = pos + fuzz_chunk(&rng, size - pos);
		size_t used = 0;
		enum smtp_reply_result r = smtp_reply_feed(p, data + pos, end - pos, &used);
		FUZZ_CHECK(used <= end - pos);
		pos += used;
		if (r == SMTP_REPLY_NEED_MORE) {
			FUZZ_CHECK(pos == end); /* all of it consumed */
			continue;
		}
		if (r == SMTP_REPLY_ERROR) {
			FUZZ_CHECK(smtp_reply_error(p) != NULL);
			buf_printf(t, "[error %s]", smtp_reply_error(p));
			break;
		}
		const struct smtp_reply *reply = smtp_reply_get(p);
		FUZZ_CHECK(reply->code >= 200 && reply->code <= 599);
		FUZZ_CHECK(reply->nlines >= 1 && reply->nlines <= SMTP_REPLY_MAX_LINES);
		buf_printf(t, "[%d %zu %zu at %zu]", reply->code, reply->nlines, buf_len(&reply->text), pos);
		buf_append(t, buf_head(&reply->text), buf_len(&reply->text));
		const char *params = NULL;
		size_t plen = 0;
		(void)smtp_reply_ehlo_has(reply, "SIZE", &params, &plen);
		(void)smtp_reply_ehlo_has(reply, "AUTH", &params, &plen);
		smtp_reply_reset(p);
	}
	smtp_reply_parser_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t ctl = data[0];
	struct buf whole, split;
	buf_init(&whole, 0);
	buf_init(&split, 0);
	if (ctl & 1) {
		run_replies(data + 1, size - 1, 0, &whole);
		run_replies(data + 1, size - 1, ctl | 0x100u, &split);
	} else {
		const struct smtp_server_config cfg = {
			.hostname = "proxy.test",
			.max_message = (ctl & 0x10) ? 64 : 4096,
			.max_recipients = (ctl & 0x20) ? 1 : 3,
			.tls_offered = ctl & 2,
			.tls_active = ctl & 4,
			.auth_in_clear = ctl & 8,
		};
		run_server(&cfg, data + 1, size - 1, 0, &whole);
		run_server(&cfg, data + 1, size - 1, ctl | 0x100u, &split);
	}
	/* The same conversation whatever the chunking. */
	if (buf_len(&whole) != buf_len(&split) || memcmp(buf_head(&whole), buf_head(&split), buf_len(&whole)) != 0)
		fprintf(stderr, "whole: %.*s\nsplit: %.*s\n", (int)buf_len(&whole), (const char *)buf_head(&whole),
		        (int)buf_len(&split), (const char *)buf_head(&split));
	FUZZ_CHECK(buf_len(&whole) == buf_len(&split) && memcmp(buf_head(&whole), buf_head(&split), buf_len(&whole)) == 0);
	buf_free(&whole);
	buf_free(&split);
	return 0;
}
