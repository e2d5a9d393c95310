/*
 * fuzz_pimap_cmd.c - libFuzzer target for the P-IMAP grammar that exists:
 * login names (user#P<device>), XSETPIMAPPREF values, XGETPIMAPPREF(S),
 * XPROVISION, the XZIP split, SASL PLAIN responses, UID sets, and the
 * capability list rewriting of caps.c (upstream lists are untrusted).
 *
 * The first byte picks the grammar; the rest is what a peer would send
 * (command arguments are prefixed with a tag and the command name, so the
 * fuzzer spends its time on the arguments). Besides "no crash", each case
 * checks what the daemons rely on:
 *  - a login name that parses has a non-empty store user and a device id of
 *    1..64 bytes of [A-Za-z0-9._-];
 *  - a preference that is accepted has a canonical value that
 *    pimap_pref_set_value() takes back unchanged (what the state database
 *    stores is what the next start loads), XGETPIMAPPREF output of any
 *    preference state parses as one untagged response, and the
 *    PIMAP_INBAND_NEW_FORMAT fetch items are a read-only FETCH (a push must
 *    never set \Seen: macro_command_is_read_only says so);
 *  - XZIP's inner command, when accepted, is exactly the outer command's
 *    inner tag and arguments, and never one that XZIP must not wrap;
 *  - a decoded SASL PLAIN response points inside the decode buffer;
 *  - a UID set that parses formats to a set that parses to the same set;
 *  - the capability list a client is given never offers STARTTLS on a TLS
 *    leg or after login, and parses as a CAPABILITY response.
 *
 * Corpus: tests/fuzz/corpus/pimap_cmd; dictionary tests/fuzz/pimap_cmd.dict.
 */
#include "config.h"

#include "caps.h"
#include "fuzz.h"
#include "macros.h"
#include "pimap_cmd.h"
#include "sasl.h"
#include "uidset.h"

enum which {
	W_LOGIN,
	W_SETPREF,
	W_GETPREF,
	W_STORED_PREF,
	W_UIDSET,
	W_XZIP,
	W_SASL,
	W_CAPS,
	W_COUNT
};

/* "a VERB " + payload (+ CRLF unless the payload ends with LF), parsed as one command. */
static struct imap_parser *parse_cmd(const char *verb, const uint8_t *p, size_t n)
{
	struct buf line;
	buf_init(&line, 0);
	buf_printf(&line, "a %s ", verb);
	buf_append(&line, p, n);
	if (!n || p[n - 1] != '\n')
		buf_append(&line, "\r\n", 2);
	struct imap_parser *parser = fuzz_parse_whole(IMAP_PARSE_COMMANDS, buf_head(&line), buf_len(&line));
	buf_free(&line);
	return parser;
}

static bool device_char_ok(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
	       c == '-';
}

static void fuzz_login(const uint8_t *p, size_t n)
{
	struct pimap_login login = {0};
	char err[256] = "";
	if (pimap_login_parse((const char *)p, n, &login, err, sizeof(err)) < 0) {
		FUZZ_CHECK(err[0] != '\0');
		FUZZ_CHECK(login.store_user == NULL && login.device_id == NULL);
		return;
	}
	FUZZ_CHECK(login.store_user != NULL && login.store_user[0] != '\0');
	FUZZ_CHECK(strlen(login.store_user) < n + 1);
	if (login.device_id) {
		size_t dl = strlen(login.device_id);
		FUZZ_CHECK(dl >= 1 && dl <= PIMAP_MAX_DEVICE_ID);
		for (size_t i = 0; i < dl; i++)
			FUZZ_CHECK(device_char_ok(login.device_id[i]));
		/* The device id came out of the name: "#P" + id is in it. */
		FUZZ_CHECK(strlen(login.store_user) + 2 + dl <= n);
	}
	pimap_login_free(&login);
}

/* XGETPIMAPPREF of everything must be one untagged response our parser takes. */
static void check_get_all(const struct pimap_prefs *prefs)
{
	struct buf out;
	char err[256];
	buf_init(&out, 0);
	FUZZ_CHECK(pimap_prefs_format_get(prefs, "XGETPIMAPPREF", NULL, 0, &out, err, sizeof(err)) == 0);
	struct imap_parser *rp = fuzz_parse_whole(IMAP_PARSE_RESPONSES, buf_head(&out), buf_len(&out));
	if (!rp)
		fprintf(stderr, "unparseable: %.*s\n", (int)buf_len(&out), (const char *)buf_head(&out));
	FUZZ_CHECK(rp != NULL);
	const struct imap_msg *m = imap_parser_msg(rp);
	FUZZ_CHECK(m->kind == IMAP_MSG_UNTAGGED && m->nargs == 2 && m->args[1].type == IMAP_ARG_LIST);
	FUZZ_CHECK(m->args[1].list_count == 2 * PIMAP_PREF_COUNT);
	/* Each value reads back as the stored canonical text. */
	for (size_t i = 0; i < PIMAP_PREF_COUNT; i++) {
		const struct imap_arg *name = &m->args[1].list[2 * i];
		int id = pimap_pref_lookup(name->str, name->len);
		FUZZ_CHECK(id >= 0);
		const struct imap_arg *v = &m->args[1].list[2 * i + 1];
		if (v->type != IMAP_ARG_LIST) {
			FUZZ_CHECK(v->len == strlen(prefs->value[id]) && memcmp(v->str, prefs->value[id], v->len) == 0);
		}
	}
	imap_parser_free(rp);
	buf_free(&out);

	/* The push items of NEW_FORMAT: "a UID FETCH 1 (UID ...)" must be read-only. */
	buf_init(&out, 0);
	buf_append_str(&out, "a UID FETCH 1 ");
	if (pimap_new_format_fetch_items(prefs, &out)) {
		buf_append(&out, "\r\n", 2);
		struct imap_parser *cp = fuzz_parse_whole(IMAP_PARSE_COMMANDS, buf_head(&out), buf_len(&out));
		if (!cp)
			fprintf(stderr, "unparseable: %.*s\n", (int)buf_len(&out), (const char *)buf_head(&out));
		FUZZ_CHECK(cp != NULL);
		FUZZ_CHECK(macro_command_is_read_only(imap_parser_msg(cp)));
		imap_parser_free(cp);
	}
	buf_free(&out);
}

static void fuzz_setpref(const uint8_t *p, size_t n)
{
	struct imap_parser *parser = parse_cmd("XSETPIMAPPREF", p, n);
	if (!parser)
		return;
	const struct imap_msg *m = imap_parser_msg(parser);
	struct pimap_prefs prefs;
	pimap_prefs_init(&prefs);
	enum pimap_pref_id id;
	char err[256] = "";
	if (pimap_pref_set_args(&prefs, m->args + 1, m->nargs - 1, NULL, &id, err, sizeof(err)) == 0) {
		const char *canon = prefs.value[id];
		FUZZ_CHECK(strlen(canon) <= PIMAP_MAX_PREF_VALUE);
		/* What the state database stores must load back as the same value. */
		struct pimap_prefs again;
		pimap_prefs_init(&again);
		FUZZ_CHECK(pimap_pref_set_value(&again, id, canon) == 0);
		FUZZ_CHECK(strcmp(again.value[id], canon) == 0);
		pimap_prefs_free(&again);
		check_get_all(&prefs);
	} else {
		FUZZ_CHECK(err[0] != '\0');
	}
	pimap_prefs_free(&prefs);
	imap_parser_free(parser);
}

static void fuzz_getpref(const uint8_t *p, size_t n)
{
	if (n < 1)
		return;
	bool plural = p[0] & 1;
	const char *verb = plural ? "XGETPIMAPPREFS" : "XGETPIMAPPREF";
	struct imap_parser *parser = parse_cmd(verb, p + 1, n - 1);
	if (!parser)
		return;
	const struct imap_msg *m = imap_parser_msg(parser);
	struct pimap_prefs prefs;
	pimap_prefs_init(&prefs);
	struct buf out;
	buf_init(&out, 0);
	char err[256] = "";
	if (pimap_prefs_format_get(&prefs, verb, m->args + 1, m->nargs - 1, &out, err, sizeof(err)) == 0) {
		struct imap_parser *rp = fuzz_parse_whole(IMAP_PARSE_RESPONSES, buf_head(&out), buf_len(&out));
		FUZZ_CHECK(rp != NULL);
		imap_parser_free(rp);
	} else {
		FUZZ_CHECK(err[0] != '\0');
	}
	buf_free(&out);
	pimap_prefs_free(&prefs);
	imap_parser_free(parser);
}

/* A value read from the state database (a damaged or hand-edited file). */
static void fuzz_stored_pref(const uint8_t *p, size_t n)
{
	if (n < 1)
		return;
	enum pimap_pref_id id = (enum pimap_pref_id)(p[0] % PIMAP_PREF_COUNT);
	struct fuzz_in in = {p + 1, n - 1};
	char *value = fuzz_cstr(&in, NULL);
	struct pimap_prefs prefs;
	pimap_prefs_init(&prefs);
	char *before = strdup(prefs.value[id]);
	FUZZ_CHECK(before != NULL);
	if (pimap_pref_set_value(&prefs, id, value) == 0) {
		check_get_all(&prefs);
		/* Stored values are canonical: setting the result again changes nothing. */
		char *canon = strdup(prefs.value[id]);
		FUZZ_CHECK(canon != NULL);
		FUZZ_CHECK(pimap_pref_set_value(&prefs, id, canon) == 0 && strcmp(prefs.value[id], canon) == 0);
		free(canon);
	} else {
		/* A refused value leaves the default in place. */
		FUZZ_CHECK(strcmp(prefs.value[id], before) == 0);
	}
	free(before);
	free(value);
	pimap_prefs_free(&prefs);
}

static void fuzz_uidset(const uint8_t *p, size_t n)
{
	struct uidset set, again;
	uidset_init(&set);
	uidset_init(&again);
	char err[256] = "";
	if (uidset_parse(&set, (const char *)p, n, err, sizeof(err)) == 0) {
		for (size_t i = 1; i < set.count; i++)
			FUZZ_CHECK(set.uids[i - 1] < set.uids[i]);
		FUZZ_CHECK(set.count == 0 || set.uids[0] > 0);
		FUZZ_CHECK(set.count <= UIDSET_MAX_PARSE_COUNT);
		struct buf text;
		buf_init(&text, 0);
		uidset_format(&set, &text);
		FUZZ_CHECK(uidset_parse(&again, (const char *)buf_head(&text), buf_len(&text), err, sizeof(err)) == 0);
		FUZZ_CHECK(again.count == set.count);
		FUZZ_CHECK(set.count == 0 || memcmp(again.uids, set.uids, set.count * sizeof(uint32_t)) == 0);
		if (set.count) {
			uint32_t mid = set.uids[set.count / 2];
			FUZZ_CHECK(uidset_seq_of(&set, mid) == set.count / 2 + 1);
			FUZZ_CHECK(uidset_max(&set) == set.uids[set.count - 1]);
		}
		buf_free(&text);
	} else {
		FUZZ_CHECK(err[0] != '\0' && set.count == 0);
	}
	uidset_free(&set);
	uidset_free(&again);
}

static void fuzz_xzip(const uint8_t *p, size_t n)
{
	struct imap_parser *parser = parse_cmd("XZIP", p, n);
	if (!parser)
		return;
	const struct imap_msg *m = imap_parser_msg(parser);
	char err[160] = "";
	struct imap_parser *ip = pimap_xzip_parse_inner(m, n & 1 ? &fuzz_small_limits : NULL, err, sizeof(err));
	if (!ip) {
		FUZZ_CHECK(err[0] != '\0');
		imap_parser_free(parser);
		return;
	}
	/* What the gateway runs is what it checked: exactly the outer inner
	 * tag and arguments, and never a command that changes the connection. */
	const struct imap_msg *inner = imap_parser_msg(ip);
	FUZZ_CHECK(strlen(inner->tag) == m->args[1].len && memcmp(inner->tag, m->args[1].str, m->args[1].len) == 0);
	FUZZ_CHECK(strcmp(inner->tag, m->tag) != 0);
	FUZZ_CHECK(fuzz_args_equal(inner->args, inner->nargs, m->args + 2, m->nargs - 2, true));
	static const char *const refused[] = {"IDLE", "STARTTLS", "COMPRESS", "AUTHENTICATE", "LOGOUT", "XZIP",
	                                      "LOGIN", NULL};
	for (const char *const *r = refused; *r; r++)
		FUZZ_CHECK(!imap_arg_is_atom(&inner->args[0], *r));
	imap_parser_free(ip);
	imap_parser_free(parser);
}

static void fuzz_sasl(const uint8_t *p, size_t n)
{
	uint8_t raw[SASL_PLAIN_MAX + 1];
	struct sasl_plain plain;
	enum sasl_plain_result r = sasl_plain_decode((const char *)p, n, raw, &plain);
	if (r == SASL_PLAIN_OK) {
		FUZZ_CHECK(plain.user >= (const char *)raw && plain.user + plain.user_len <= (const char *)raw + sizeof(raw));
		FUZZ_CHECK(plain.password >= (const char *)raw &&
		           plain.password + plain.password_len <= (const char *)raw + sizeof(raw));
		/* Encoding what was decoded decodes to the same user and password. */
		struct buf b64;
		buf_init(&b64, 0);
		sasl_plain_encode(plain.user, plain.user_len, plain.password, plain.password_len, &b64);
		uint8_t raw2[SASL_PLAIN_MAX + 1];
		struct sasl_plain again;
		if (plain.user_len + plain.password_len + 2 <= SASL_PLAIN_MAX) {
			FUZZ_CHECK(sasl_plain_decode((const char *)buf_head(&b64), buf_len(&b64), raw2, &again) == SASL_PLAIN_OK);
			FUZZ_CHECK(again.user_len == plain.user_len && memcmp(again.user, plain.user, plain.user_len) == 0);
			FUZZ_CHECK(again.password_len == plain.password_len &&
			           memcmp(again.password, plain.password, plain.password_len) == 0);
		}
		buf_free(&b64);
	} else {
		FUZZ_CHECK(sasl_plain_refusal(r) != NULL);
	}
}

/* ATOM-CHAR of RFC 3501, or SP. */
static bool atom_or_space(uint8_t c)
{
	return c == ' ' || (c > 0x20 && c < 0x7f && !strchr("(){%*\"\\]", c));
}

static void fuzz_caps(const uint8_t *p, size_t n)
{
	if (n < 1)
		return;
	struct caps_client_leg leg = {
		.tls = p[0] & 1,
		.authenticated = p[0] & 2,
		.login_disabled = p[0] & 4,
		.gateway = p[0] & 8,
	};
	struct buf out;
	buf_init(&out, 0);
	caps_for_client((const char *)p + 1, n - 1, &leg, &out);
	/* Never offer STARTTLS where it cannot be used. */
	if (leg.tls || leg.authenticated)
		FUZZ_CHECK(!caps_contains((const char *)buf_head(&out), buf_len(&out), "STARTTLS"));
	if (leg.gateway)
		FUZZ_CHECK(!caps_contains((const char *)buf_head(&out), buf_len(&out), "XPIMAPv1"));
	/* From a list of atoms (what a sane server sends) the line the proxy
	 * builds must parse; other bytes are the upstream's own garbage. */
	for (size_t i = 1; i < n; i++) {
		if (!atom_or_space(p[i])) {
			buf_free(&out);
			return;
		}
	}
	struct buf line;
	buf_init(&line, 0);
	buf_append_str(&line, "* CAPABILITY ");
	buf_append(&line, buf_head(&out), buf_len(&out));
	buf_append(&line, "\r\n", 2);
	struct imap_parser *rp = fuzz_parse_whole(IMAP_PARSE_RESPONSES, buf_head(&line), buf_len(&line));
	if (!rp)
		fprintf(stderr, "unparseable: %.*s\n", (int)buf_len(&line), (const char *)buf_head(&line));
	FUZZ_CHECK(rp != NULL);
	imap_parser_free(rp);
	buf_free(&line);
	buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const uint8_t *p = data + 1;
	size_t n = size - 1;
	switch ((enum which)(data[0] % W_COUNT)) {
	case W_LOGIN:
		fuzz_login(p, n);
		break;
	case W_SETPREF:
		fuzz_setpref(p, n);
		break;
	case W_GETPREF:
		fuzz_getpref(p, n);
		break;
	case W_STORED_PREF:
		fuzz_stored_pref(p, n);
		break;
	case W_UIDSET:
		fuzz_uidset(p, n);
		break;
	case W_XZIP:
		fuzz_xzip(p, n);
		break;
	case W_SASL:
		fuzz_sasl(p, n);
		break;
	case W_CAPS:
	case W_COUNT:
		fuzz_caps(p, n);
		break;
	}
	return 0;
}
