/*
 * fuzz_imap_parse.c - libFuzzer target for imap_parse.c.
 *
 * The input after the first byte is treated as a stream of messages and
 * parsed in both modes, the way a connection would: reset after DONE (with
 * expect_raw_line() after IDLE, AUTHENTICATE and continuations, as the proxy
 * does), skip_line() after a recoverable ERROR, stop after a fatal one. Each
 * stream is parsed once in one piece and once in pieces whose sizes come from
 * a generator seeded by the first byte; both must report the same messages
 * and errors at the same stream positions, or the harness traps. It also
 * checks the contract the caller relies on: raw is exactly the consumed
 * bytes, every string is NUL-terminated, NEED_MORE consumes everything.
 *
 * Bit 0 of the first byte picks small limits (to reach every limit error)
 * or the defaults.
 *
 * Built by `./configure --enable-fuzzing` (see tests/fuzz/README.md);
 * corpus in tests/fuzz/corpus/imap_parse, dictionary tests/fuzz/imap_parse.dict.
 */
#include "config.h"

#include "fuzz.h"

#define CHECK FUZZ_CHECK

/* Event log of one parse: compared byte for byte between the two runs. */
struct log {
	uint8_t *s;
	size_t   len;
	size_t   cap;
};

static void log_put(struct log *l, const void *p, size_t n)
{
	if (l->len + n > l->cap) {
		size_t cap = l->cap ? l->cap : 1024;
		while (cap < l->len + n)
			cap *= 2;
		l->s = realloc(l->s, cap);
		CHECK(l->s != NULL);
		l->cap = cap;
	}
	memcpy(l->s + l->len, p, n);
	l->len += n;
}

static void log_num(struct log *l, size_t v)
{
	log_put(l, &v, sizeof(v));
}

/* Length-prefixed so that different structures never log the same bytes. */
static void log_str(struct log *l, const char *s, size_t len)
{
	if (!s) {
		log_num(l, SIZE_MAX);
		return;
	}
	CHECK(s[len] == '\0');
	log_num(l, len);
	log_put(l, s, len);
}

static void log_args(struct log *l, const struct imap_arg *args, size_t n)
{
	log_num(l, n);
	CHECK(n == 0 || args != NULL);
	for (size_t i = 0; i < n; i++) {
		const struct imap_arg *a = &args[i];
		log_num(l, a->type);
		if (a->type == IMAP_ARG_LIST) {
			log_args(l, a->list, a->list_count);
			continue;
		}
		CHECK(a->type == IMAP_ARG_ATOM || a->type == IMAP_ARG_QUOTED || a->type == IMAP_ARG_LITERAL);
		CHECK(imap_arg_is_string(a));
		/* NUL is refused everywhere but in literal8 payloads */
		if (a->type != IMAP_ARG_LITERAL || a->lit_kind != IMAP_LITERAL_BINARY)
			CHECK(memchr(a->str, '\0', a->len) == NULL);
		if (a->type == IMAP_ARG_ATOM)
			CHECK(a->len > 0);
		if (a->type == IMAP_ARG_LITERAL)
			log_num(l, a->lit_kind);
		log_str(l, a->str, a->len);
	}
}

static void log_msg(struct log *l, const struct imap_msg *m)
{
	log_num(l, m->kind);
	log_num(l, m->status);
	log_str(l, m->tag, m->tag ? strlen(m->tag) : 0);
	log_str(l, m->code, m->code_len);
	log_str(l, m->text, m->text_len);
	switch (m->kind) {
	case IMAP_MSG_COMMAND:
		CHECK(m->tag != NULL && m->nargs > 0 && m->args[0].type == IMAP_ARG_ATOM);
		break;
	case IMAP_MSG_TAGGED:
		CHECK(m->tag != NULL && m->nargs == 0 && m->text != NULL);
		CHECK(m->status == IMAP_STATUS_OK || m->status == IMAP_STATUS_NO || m->status == IMAP_STATUS_BAD);
		break;
	case IMAP_MSG_UNTAGGED:
		CHECK(m->tag == NULL);
		CHECK(m->status == IMAP_STATUS_NONE ? m->nargs > 0 : m->nargs == 0 && m->text != NULL);
		break;
	case IMAP_MSG_CONTINUATION:
	case IMAP_MSG_RAW_LINE:
		CHECK(m->tag == NULL && m->nargs == 0 && m->text != NULL && m->code == NULL);
		break;
	}
	log_args(l, m->args, m->nargs);
}

/* Commands after which the next client line is not a command. */
static bool next_is_raw(const struct imap_msg *m)
{
	if (m->kind == IMAP_MSG_CONTINUATION)
		return true;
	return m->kind == IMAP_MSG_COMMAND &&
	       (imap_arg_is_atom(&m->args[0], "IDLE") || imap_arg_is_atom(&m->args[0], "AUTHENTICATE"));
}

/*
 * Parse data[0..size) as a stream. seed 0 delivers everything at once;
 * otherwise chunk sizes come from a small generator, mostly tiny, sometimes
 * large, so both byte-at-a-time and bulk paths get split.
 */
static void run(enum imap_parser_mode mode, const struct imap_limits *lim, const uint8_t *data, size_t size,
                unsigned seed, struct log *l)
{
	struct imap_parser *p = imap_parser_new(mode, lim);
	uint32_t rng = seed * 2654435761u + 1;
	size_t pos = 0, end = 0, msg_start = 0;

	CHECK(p != NULL);
	for (;;) {
		enum imap_parse_result r;
		size_t used = 0;

		if (pos == end) {
			if (end == size)
				break;
			if (seed == 0) {
				end = size;
			} else {
				rng = rng * 1103515245u + 12345u;
				uint32_t x = rng >> 16;
				size_t n = (x & 7) == 0 ? (x >> 3) % 512 + 1 : (x >> 3) % 4 + 1;
				end = end + n > size ? size : end + n;
			}
		}
		r = imap_parser_feed(p, data + pos, end - pos, &used);
		CHECK(used <= end - pos);
		if (r == IMAP_PARSE_NEED_MORE) {
			CHECK(used == end - pos);
			CHECK(imap_parser_msg(p) == NULL);
			pos += used;
			continue;
		}
		pos += used;
		log_num(l, r);
		log_num(l, pos);
		if (r == IMAP_PARSE_DONE) {
			const struct imap_msg *m = imap_parser_msg(p);
			CHECK(m != NULL);
			CHECK(imap_parser_error(p) == NULL);
			/* a skipped line has no raw bytes; everything else is verbatim */
			if (m->raw_len) {
				CHECK(m->raw_len == pos - msg_start);
				CHECK(memcmp(m->raw, data + msg_start, m->raw_len) == 0);
				CHECK(m->raw[m->raw_len - 1] == '\n');
			}
			log_msg(l, m);
			bool raw = next_is_raw(m);
			/* feeding again without reset is a no-op */
			CHECK(imap_parser_feed(p, data + pos, end - pos, &used) == IMAP_PARSE_DONE && used == 0);
			imap_parser_reset(p);
			if (raw)
				imap_parser_expect_raw_line(p);
		} else {
			const char *why = imap_parser_error(p);
			const char *tag = imap_parser_tag(p);
			CHECK(why != NULL && imap_parser_msg(p) == NULL);
			log_str(l, why, strlen(why));
			log_str(l, tag, tag ? strlen(tag) : 0);
			log_num(l, imap_parser_error_recoverable(p));
			if (!imap_parser_error_recoverable(p))
				break;
			imap_parser_skip_line(p);
		}
		msg_start = pos;
	}
	/* where an unfinished message stopped must not depend on chunking */
	log_num(l, 99);
	log_num(l, pos);
	imap_parser_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const struct imap_limits *lim = (data[0] & 1) ? &fuzz_small_limits : NULL;
	unsigned seed = data[0] | 0x100; /* never 0: 0 means "one piece" */

	for (int mode = 0; mode < 2; mode++) {
		struct log whole = {0}, split = {0};
		enum imap_parser_mode m = mode ? IMAP_PARSE_RESPONSES : IMAP_PARSE_COMMANDS;

		run(m, lim, data + 1, size - 1, 0, &whole);
		run(m, lim, data + 1, size - 1, seed, &split);
		CHECK(whole.len == split.len && memcmp(whole.s, split.s, whole.len) == 0);
		free(whole.s);
		free(split.s);
	}
	return 0;
}
