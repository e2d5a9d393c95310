/*
 * fuzz_roundtrip.c - what our writers produce, our parser accepts unchanged.
 *
 * The first byte picks the writer; the rest is its input:
 *  - astring (imap_write_astring): any bytes a C string can hold (user
 *    names, passwords, mailbox names) written as a LOGIN argument parse
 *    back to exactly those bytes; and the trace of that LOGIN
 *    (log_redact_imap) shows "<secret>" and never the password;
 *  - mailbox (imap_write_mailbox): in a command and in server responses
 *    (where literals are synchronising; at the end of a LIST line and in
 *    the middle of a STATUS line), the name parses back unchanged;
 *  - retag (imap_write_retagged): any command our parser accepts, re-tagged
 *    for the store, parses to the new tag and the same arguments, with every
 *    literal non-synchronising; and made all synchronising for an upstream
 *    without LITERAL+ (imap_write_literals_sync), the same command again;
 *  - UID sets (uidset_format): a set built by adds, ranges and removals
 *    formats to text that parses to the same set, also inside a UID FETCH;
 *  - preferences: canonical values of a random preference state, sent
 *    back as XSETPIMAPPREF from what XGETPIMAPPREF printed, give the same
 *    canonical values (a client that saves and restores its preferences
 *    changes nothing);
 *  - login names: user, device id and domain composed as
 *    user#P<device>@domain split back into the same parts;
 *  - SASL PLAIN: what the proxy encodes, the gateway decodes.
 *
 * Corpus: tests/fuzz/corpus/roundtrip; dictionary tests/fuzz/roundtrip.dict.
 */
#include "config.h"

#include "fuzz.h"
#include "imap_write.h"
#include "log.h"
#include "pimap_cmd.h"
#include "sasl.h"
#include "uidset.h"

enum which { W_ASTRING, W_MAILBOX, W_RETAG, W_UIDSET, W_PREFS, W_LOGIN, W_SASL, W_COUNT };

static void rt_astring(struct fuzz_in *in)
{
	size_t ulen, plen;
	char *user = fuzz_cstr(in, &ulen);
	char *pass = fuzz_cstr(in, &plen);
	struct buf line;
	buf_init(&line, 0);
	buf_append_str(&line, "a1 LOGIN ");
	imap_write_astring(&line, user, ulen);
	buf_append(&line, " ", 1);
	imap_write_astring(&line, pass, plen);
	buf_append(&line, "\r\n", 2);
	struct imap_parser *p = fuzz_parse_whole(IMAP_PARSE_COMMANDS, buf_head(&line), buf_len(&line));
	if (!p)
		fprintf(stderr, "unparseable: %.*s\n", (int)buf_len(&line), (const char *)buf_head(&line));
	FUZZ_CHECK(p != NULL);
	const struct imap_msg *m = imap_parser_msg(p);
	FUZZ_CHECK(m->nargs == 3);
	FUZZ_CHECK(m->args[1].len == ulen && memcmp(m->args[1].str, user, ulen) == 0);
	FUZZ_CHECK(m->args[2].len == plen && memcmp(m->args[2].str, pass, plen) == 0);
	imap_parser_free(p);

	/* The trace of this LOGIN hides the password, however it is written:
	 * it ends in "<secret>", and a password that the trace of the same
	 * LOGIN with another password does not show anyway is not in it. */
	char trace[4096], other[4096];
	log_redact_imap(buf_head(&line), buf_len(&line), false, trace, sizeof(trace));
	size_t tl = strlen(trace);
	if (tl < sizeof(trace) - 8)
		FUZZ_CHECK(tl >= 8 && strcmp(trace + tl - 8, "<secret>") == 0);
	struct buf line2;
	buf_init(&line2, 0);
	buf_append_str(&line2, "a1 LOGIN ");
	imap_write_astring(&line2, user, ulen);
	buf_append_str(&line2, " \"\"\r\n");
	log_redact_imap(buf_head(&line2), buf_len(&line2), false, other, sizeof(other));
	buf_free(&line2);
	if (plen >= 4 && !memchr(pass, '\\', plen) && strstr(other, pass) == NULL) {
		bool printable = true;
		for (size_t i = 0; i < plen && printable; i++)
			printable = pass[i] >= 0x20 && pass[i] < 0x7f;
		if (printable)
			FUZZ_CHECK(strstr(trace, pass) == NULL);
	}
	buf_free(&line);
	free(user);
	free(pass);
}

static void rt_mailbox(struct fuzz_in *in)
{
	size_t len;
	char *name = fuzz_cstr(in, &len);
	struct buf line;

	buf_init(&line, 0);
	buf_append_str(&line, "a SELECT ");
	imap_write_mailbox(&line, name, false);
	buf_append(&line, "\r\n", 2);
	struct imap_parser *p = fuzz_parse_whole(IMAP_PARSE_COMMANDS, buf_head(&line), buf_len(&line));
	FUZZ_CHECK(p != NULL);
	const struct imap_msg *m = imap_parser_msg(p);
	FUZZ_CHECK(m->nargs == 2 && m->args[1].len == len && memcmp(m->args[1].str, name, len) == 0);
	imap_parser_free(p);
	buf_free(&line);

	buf_init(&line, 0);
	buf_append_str(&line, "* LIST () \"/\" ");
	imap_write_mailbox(&line, name, true);
	buf_append(&line, "\r\n", 2);
	p = fuzz_parse_whole(IMAP_PARSE_RESPONSES, buf_head(&line), buf_len(&line));
	FUZZ_CHECK(p != NULL);
	m = imap_parser_msg(p);
	FUZZ_CHECK(m->nargs == 4 && m->args[3].len == len && memcmp(m->args[3].str, name, len) == 0);
	/* A server's literal is synchronising in form; LITERAL+ is a client's. */
	FUZZ_CHECK(m->args[3].type != IMAP_ARG_LITERAL || m->args[3].lit_kind == IMAP_LITERAL_SYNC);
	imap_parser_free(p);
	buf_free(&line);

	/* With more after it on the line, as in STATUS. */
	buf_init(&line, 0);
	buf_append_str(&line, "* STATUS ");
	imap_write_mailbox(&line, name, true);
	buf_append_str(&line, " (MESSAGES 1)\r\n");
	p = fuzz_parse_whole(IMAP_PARSE_RESPONSES, buf_head(&line), buf_len(&line));
	if (!p)
		fprintf(stderr, "unparseable: %.*s\n", (int)buf_len(&line), (const char *)buf_head(&line));
	FUZZ_CHECK(p != NULL);
	m = imap_parser_msg(p);
	FUZZ_CHECK(m->nargs == 3 && m->args[1].len == len && memcmp(m->args[1].str, name, len) == 0);
	FUZZ_CHECK(m->args[2].type == IMAP_ARG_LIST && m->args[2].list_count == 2);
	imap_parser_free(p);
	buf_free(&line);
	free(name);
}

static void all_nonsync(const struct imap_arg *a, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (a[i].type == IMAP_ARG_LIST)
			all_nonsync(a[i].list, a[i].list_count);
		else if (a[i].type == IMAP_ARG_LITERAL)
			FUZZ_CHECK(a[i].lit_kind != IMAP_LITERAL_SYNC);
	}
}

static void all_sync(const struct imap_arg *a, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (a[i].type == IMAP_ARG_LIST)
			all_sync(a[i].list, a[i].list_count);
		else if (a[i].type == IMAP_ARG_LITERAL)
			FUZZ_CHECK(a[i].lit_kind != IMAP_LITERAL_NONSYNC);
	}
}

static void rt_retag(struct fuzz_in *in)
{
	struct imap_parser *p = imap_parser_new(IMAP_PARSE_COMMANDS, NULL);
	size_t used = 0;
	FUZZ_CHECK(p != NULL);
	if (imap_parser_feed(p, in->p, in->n, &used) != IMAP_PARSE_DONE) {
		imap_parser_free(p);
		return;
	}
	const struct imap_msg *m = imap_parser_msg(p);
	if (m->kind != IMAP_MSG_COMMAND || m->raw_len == 0) {
		imap_parser_free(p);
		return;
	}
	struct buf out;
	buf_init(&out, 0);
	if (imap_write_retagged(&out, "G4711", m->raw, m->raw_len, strlen(m->tag)) == 0) {
		struct imap_parser *q = fuzz_parse_whole(IMAP_PARSE_COMMANDS, buf_head(&out), buf_len(&out));
		if (!q)
			fprintf(stderr, "retagged command does not parse: %.*s\n", (int)buf_len(&out),
			        (const char *)buf_head(&out));
		FUZZ_CHECK(q != NULL);
		const struct imap_msg *r = imap_parser_msg(q);
		FUZZ_CHECK(strcmp(r->tag, "G4711") == 0);
		FUZZ_CHECK(fuzz_args_equal(r->args, r->nargs, m->args, m->nargs, false));
		/* The relay answered the client's "+": the store must not wait for another. */
		all_nonsync(r->args, r->nargs);
		imap_parser_free(q);
	}
	buf_free(&out);

	/* For an upstream without LITERAL+ (pimap-proxy): every literal
	 * synchronising, and still the same command. */
	buf_init(&out, 0);
	if (imap_write_literals_sync(&out, m->raw, m->raw_len) >= 0) {
		struct imap_parser *q = fuzz_parse_whole(IMAP_PARSE_COMMANDS, buf_head(&out), buf_len(&out));
		FUZZ_CHECK(q != NULL);
		const struct imap_msg *r = imap_parser_msg(q);
		FUZZ_CHECK(strcmp(r->tag, m->tag) == 0);
		FUZZ_CHECK(fuzz_args_equal(r->args, r->nargs, m->args, m->nargs, false));
		all_sync(r->args, r->nargs);
		imap_parser_free(q);
	}
	buf_free(&out);
	imap_parser_free(p);
}

static void rt_uidset(struct fuzz_in *in)
{
	struct uidset set, parsed;
	uidset_init(&set);
	uidset_init(&parsed);
	/* Small numbers mostly, so ranges meet and merge; sometimes huge ones. */
	while (in->n >= 5) {
		uint8_t op = fuzz_u8(in);
		uint32_t v = fuzz_u32(in);
		uint32_t a = op & 0x80 ? v : v % 200 + 1;
		if (a == 0)
			a = 1;
		switch (op % 3) {
		case 0:
			uidset_add(&set, a);
			break;
		case 1: {
			uint32_t len = op >> 2 & 0x1f;
			uint32_t b = a > UINT32_MAX - len ? UINT32_MAX : a + len;
			uidset_add_range(&set, a, b);
			break;
		}
		default:
			uidset_remove(&set, a);
			break;
		}
	}
	struct buf text;
	char err[256];
	buf_init(&text, 0);
	uidset_format(&set, &text);
	FUZZ_CHECK(uidset_parse(&parsed, (const char *)buf_head(&text), buf_len(&text), err, sizeof(err)) == 0);
	FUZZ_CHECK(parsed.count == set.count);
	FUZZ_CHECK(set.count == 0 || memcmp(parsed.uids, set.uids, set.count * sizeof(uint32_t)) == 0);
	if (set.count) {
		/* As the gateway sends it to the store. */
		struct buf cmd;
		buf_init(&cmd, 0);
		buf_append_str(&cmd, "G1 UID FETCH ");
		buf_append(&cmd, buf_head(&text), buf_len(&text));
		buf_append_str(&cmd, " (FLAGS)\r\n");
		struct imap_parser *p = fuzz_parse_whole(IMAP_PARSE_COMMANDS, buf_head(&cmd), buf_len(&cmd));
		FUZZ_CHECK(p != NULL);
		const struct imap_msg *m = imap_parser_msg(p);
		FUZZ_CHECK(m->nargs == 4 && m->args[2].type == IMAP_ARG_ATOM && m->args[2].len == buf_len(&text));
		imap_parser_free(p);
		buf_free(&cmd);
	}
	buf_free(&text);
	uidset_free(&set);
	uidset_free(&parsed);
}

/* Values a client may set: picked by the input, so the fuzzer can reach every form. */
static const char *const pref_values[] = {
	"ON", "off", "ALL", "new", "NONE", "EMN", "extended", "FLAGS", "(FLAGS UID)", "ALL", "FAST", "FULL",
	"(BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)]<0.100> RFC822.SIZE)", "(BODY[TEXT] ENVELOPE)",
	"\"mailto:joe@example.org\"", "\"\"", "{5+}\r\nhello", "(BINARY.PEEK[1]<0.10> BINARY.SIZE[1])",
	"RFC822.HEADER", "(INTERNALDATE BODYSTRUCTURE BODY)", "\"a b\"",
};

static void rt_prefs(struct fuzz_in *in)
{
	struct pimap_prefs prefs, restored;
	pimap_prefs_init(&prefs);
	pimap_prefs_init(&restored);
	char err[256];
	while (in->n >= 2) {
		uint8_t which = fuzz_u8(in), v = fuzz_u8(in);
		struct buf cmd;
		buf_init(&cmd, 0);
		buf_printf(&cmd, "a XSETPIMAPPREF %s ", pimap_pref_name((enum pimap_pref_id)(which % PIMAP_PREF_COUNT)));
		if (v & 0x80) {
			/* Free text from the input, as an address. */
			size_t len;
			char *s = fuzz_cstr(in, &len);
			imap_write_astring(&cmd, s, len);
			free(s);
		} else {
			buf_append_str(&cmd, pref_values[v % (sizeof(pref_values) / sizeof(pref_values[0]))]);
		}
		buf_append(&cmd, "\r\n", 2);
		struct imap_parser *p = fuzz_parse_whole(IMAP_PARSE_COMMANDS, buf_head(&cmd), buf_len(&cmd));
		if (p) {
			const struct imap_msg *m = imap_parser_msg(p);
			enum pimap_pref_id id;
			(void)pimap_pref_set_args(&prefs, m->args + 1, m->nargs - 1, NULL, &id, err, sizeof(err));
			imap_parser_free(p);
		}
		buf_free(&cmd);
	}

	/* XGETPIMAPPREF, then every pair sent back as XSETPIMAPPREF. */
	struct buf out;
	buf_init(&out, 0);
	FUZZ_CHECK(pimap_prefs_format_get(&prefs, "XGETPIMAPPREF", NULL, 0, &out, err, sizeof(err)) == 0);
	struct imap_parser *rp = fuzz_parse_whole(IMAP_PARSE_RESPONSES, buf_head(&out), buf_len(&out));
	FUZZ_CHECK(rp != NULL);
	const struct imap_msg *get = imap_parser_msg(rp);
	FUZZ_CHECK(get->nargs == 2 && get->args[1].type == IMAP_ARG_LIST);
	const struct imap_arg *l = get->args[1].list;
	for (size_t i = 0; i + 1 < get->args[1].list_count; i += 2) {
		enum pimap_pref_id id;
		if (pimap_pref_set_args(&restored, &l[i], 2, NULL, &id, err, sizeof(err)) != 0)
			fprintf(stderr, "XGETPIMAPPREF value refused by XSETPIMAPPREF: %s (%s)\n", l[i].str, err);
		FUZZ_CHECK(pimap_pref_set_args(&restored, &l[i], 2, NULL, &id, err, sizeof(err)) == 0);
	}
	for (int id = 0; id < PIMAP_PREF_COUNT; id++) {
		if (strcmp(prefs.value[id], restored.value[id]) != 0)
			fprintf(stderr, "%s: %s -> %s\n", pimap_pref_name((enum pimap_pref_id)id), prefs.value[id],
			        restored.value[id]);
		FUZZ_CHECK(strcmp(prefs.value[id], restored.value[id]) == 0);
	}
	imap_parser_free(rp);
	buf_free(&out);
	pimap_prefs_free(&prefs);
	pimap_prefs_free(&restored);
}

static void rt_login(struct fuzz_in *in)
{
	size_t ul, dl, hl;
	char *user = fuzz_cstr(in, &ul);
	char *dev = fuzz_cstr(in, &dl);
	char *dom = fuzz_cstr(in, &hl);
	struct buf name;
	buf_init(&name, 0);
	buf_append(&name, user, ul);
	buf_append_str(&name, "#P");
	buf_append(&name, dev, dl);
	if (hl) {
		buf_append(&name, "@", 1);
		buf_append(&name, dom, hl);
	}
	struct pimap_login login = {0};
	char err[256];
	if (pimap_login_parse((const char *)buf_head(&name), buf_len(&name), &login, err, sizeof(err)) == 0) {
		/* With no other "#", "@" in the parts, the parts come back. */
		if (!memchr(dev, '#', dl) && !memchr(dev, '@', dl) && !memchr(dom, '#', hl) && !memchr(dom, '@', hl) &&
		    !memchr(user, '@', ul)) {
			FUZZ_CHECK(login.device_id != NULL && strcmp(login.device_id, dev) == 0);
			struct buf want;
			buf_init(&want, 0);
			buf_append(&want, user, ul);
			if (hl) {
				buf_append(&want, "@", 1);
				buf_append(&want, dom, hl);
			}
			FUZZ_CHECK(strcmp(login.store_user, fuzz_buf_cstr(&want)) == 0);
			buf_free(&want);
		}
		pimap_login_free(&login);
	}
	buf_free(&name);
	free(user);
	free(dev);
	free(dom);
}

static void rt_sasl(struct fuzz_in *in)
{
	size_t ul, pl;
	char *user = fuzz_cstr(in, &ul);
	char *pass = fuzz_cstr(in, &pl);
	struct buf b64;
	buf_init(&b64, 0);
	sasl_plain_encode(user, ul, pass, pl, &b64);
	uint8_t raw[SASL_PLAIN_MAX + 1];
	struct sasl_plain plain;
	enum sasl_plain_result r = sasl_plain_decode((const char *)buf_head(&b64), buf_len(&b64), raw, &plain);
	if (ul + pl + 2 <= SASL_PLAIN_MAX && ul > 0) {
		FUZZ_CHECK(r == SASL_PLAIN_OK);
		FUZZ_CHECK(plain.user_len == ul && memcmp(plain.user, user, ul) == 0);
		FUZZ_CHECK(plain.password_len == pl && memcmp(plain.password, pass, pl) == 0);
	}
	buf_free(&b64);
	free(user);
	free(pass);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	struct fuzz_in in = {data + 1, size - 1};
	switch ((enum which)(data[0] % W_COUNT)) {
	case W_ASTRING:
		rt_astring(&in);
		break;
	case W_MAILBOX:
		rt_mailbox(&in);
		break;
	case W_RETAG:
		rt_retag(&in);
		break;
	case W_UIDSET:
		rt_uidset(&in);
		break;
	case W_PREFS:
		rt_prefs(&in);
		break;
	case W_LOGIN:
		rt_login(&in);
		break;
	case W_SASL:
	case W_COUNT:
		rt_sasl(&in);
		break;
	}
	return 0;
}
