/*
 * outband_msg.c - EMN and sealed EXTENDED notifications (see outband_msg.h).
 *
 * AES-256-GCM because GnuTLS has it everywhere (hardware AES on most CPUs),
 * it authenticates as well as hides, and a 12-octet nonce made of a strictly
 * growing sequence number and a random salt is never reused under one key.
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include "outband_msg.h"

#define MARKER_LEN (sizeof(OUTBAND_MARKER) - 1)
#define HEADER_LEN (1 + 8 + OUTBAND_SALT_LEN)
/* Longest plaintext: seq, account, event, mailbox and three spaces. */
#define MAX_PLAIN (20 + OUTBAND_MAX_ACCOUNT + 24 + OUTBAND_MAX_MAILBOX + 3)

static const char *const event_names[OB_EVENT_COUNT] = {
	[OB_NEW_MESSAGE] = "NEW_MESSAGE",
	[OB_DELETED_MESSAGE] = "DELETED_MESSAGE",
	[OB_CHANGED_MESSAGE] = "CHANGED_MESSAGE",
	[OB_SYNC] = "SYNC",
	[OB_FULL_SYNC] = "FULL_SYNC",
};

const char *outband_event_name(enum outband_event ev)
{
	return (unsigned)ev < OB_EVENT_COUNT ? event_names[ev] : "SYNC";
}

static void put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (uint8_t)(v & 0xff);
		v >>= 8;
	}
}

static uint64_t get_be64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

/* AD = marker || version || seq: the parts a forger would like to change. */
static void make_ad(const uint8_t *header, uint8_t *ad)
{
	memcpy(ad, OUTBAND_MARKER, MARKER_LEN);
	memcpy(ad + MARKER_LEN, header, 1 + 8);
}

static bool printable_no_space(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
			return false;
	return true;
}

static bool printable(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
			return false;
	return true;
}

int outband_extended_encode(const uint8_t key[OUTBAND_KEY_LEN], uint64_t seq, const uint8_t salt[OUTBAND_SALT_LEN],
                            const char *account, enum outband_event ev, const char *mailbox, struct buf *out)
{
	if (!mailbox)
		mailbox = "";
	if (!*account || strlen(account) > OUTBAND_MAX_ACCOUNT || strlen(mailbox) > OUTBAND_MAX_MAILBOX ||
	    !printable_no_space(account) || !printable(mailbox) || (unsigned)ev >= OB_EVENT_COUNT)
		return -1;
	char plain[MAX_PLAIN + 1];
	int n = snprintf(plain, sizeof(plain), "%" PRIu64 " %s %s%s%s", seq, account, event_names[ev],
	                 *mailbox ? " " : "", mailbox);
	if (n < 0 || (size_t)n >= sizeof(plain))
		return -1;

	uint8_t blob[HEADER_LEN + MAX_PLAIN + OUTBAND_TAG_LEN];
	blob[0] = OUTBAND_VERSION;
	put_be64(blob + 1, seq);
	memcpy(blob + 9, salt, OUTBAND_SALT_LEN);
	uint8_t ad[MARKER_LEN + 9];
	make_ad(blob, ad);

	gnutls_datum_t k = {(unsigned char *)(uintptr_t)key, OUTBAND_KEY_LEN};
	gnutls_aead_cipher_hd_t h;
	if (gnutls_aead_cipher_init(&h, GNUTLS_CIPHER_AES_256_GCM, &k) < 0)
		return -1;
	size_t clen = sizeof(blob) - HEADER_LEN;
	int rc = gnutls_aead_cipher_encrypt(h, blob + 1, 12, ad, sizeof(ad), OUTBAND_TAG_LEN, plain, (size_t)n,
	                                    blob + HEADER_LEN, &clen);
	gnutls_aead_cipher_deinit(h);
	gnutls_memset(plain, 0, sizeof(plain));
	if (rc < 0)
		return -1;

	gnutls_datum_t src = {blob, (unsigned)(HEADER_LEN + clen)};
	gnutls_datum_t b64 = {NULL, 0};
	if (gnutls_base64_encode2(&src, &b64) < 0)
		return -1;
	buf_append_str(out, OUTBAND_MARKER);
	buf_append(out, " ", 1);
	buf_append(out, b64.data, b64.size);
	gnutls_free(b64.data);
	return 0;
}

static int bad(const char **why, const char *reason)
{
	if (why)
		*why = reason;
	return -1;
}

int outband_extended_decode(const uint8_t key[OUTBAND_KEY_LEN], const uint8_t *dgram, size_t len,
                            struct outband_notice *out, const char **why)
{
	if (len > OUTBAND_MAX_DATAGRAM)
		return bad(why, "datagram too large");
	if (len < MARKER_LEN + 1 || memcmp(dgram, OUTBAND_MARKER, MARKER_LEN) != 0 || dgram[MARKER_LEN] != ' ')
		return bad(why, "not an EXTENDED notification");
	const uint8_t *b64 = dgram + MARKER_LEN + 1;
	size_t b64len = len - MARKER_LEN - 1;
	while (b64len && (b64[b64len - 1] == '\n' || b64[b64len - 1] == '\r'))
		b64len--;
	for (size_t i = 0; i < b64len; i++) {
		uint8_t c = b64[i];
		bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
		          c == '/' || c == '=';
		if (!ok)
			return bad(why, "malformed base64");
	}
	gnutls_datum_t src = {(unsigned char *)(uintptr_t)b64, (unsigned)b64len};
	gnutls_datum_t blob = {NULL, 0};
	if (b64len == 0 || gnutls_base64_decode2(&src, &blob) < 0)
		return bad(why, "malformed base64");
	int rc = -1;
	if (blob.size < HEADER_LEN + OUTBAND_TAG_LEN + 1) {
		bad(why, "too short");
		goto done;
	}
	if (blob.data[0] != OUTBAND_VERSION) {
		bad(why, "unknown version");
		goto done;
	}
	uint8_t ad[MARKER_LEN + 9];
	make_ad(blob.data, ad);
	gnutls_datum_t k = {(unsigned char *)(uintptr_t)key, OUTBAND_KEY_LEN};
	gnutls_aead_cipher_hd_t h;
	if (gnutls_aead_cipher_init(&h, GNUTLS_CIPHER_AES_256_GCM, &k) < 0) {
		bad(why, "cipher unavailable");
		goto done;
	}
	char plain[MAX_PLAIN + OUTBAND_TAG_LEN + 1];
	size_t plen = sizeof(plain) - 1;
	int dr = gnutls_aead_cipher_decrypt(h, blob.data + 1, 12, ad, sizeof(ad), OUTBAND_TAG_LEN,
	                                    blob.data + HEADER_LEN, blob.size - HEADER_LEN, plain, &plen);
	gnutls_aead_cipher_deinit(h);
	if (dr < 0) {
		bad(why, "authentication failed (forged, corrupted or another key)");
		goto done;
	}
	plain[plen] = '\0';
	if (memchr(plain, '\0', plen)) {
		bad(why, "NUL in the notification");
		goto done;
	}
	/* seq-decimal SP account SP event [SP mailbox] */
	memset(out, 0, sizeof(*out));
	uint64_t seq = get_be64(blob.data + 1);
	char *p = plain;
	char *sp = strchr(p, ' ');
	if (!sp) {
		bad(why, "malformed notification");
		goto done;
	}
	*sp = '\0';
	char *endnum;
	unsigned long long inner = strtoull(p, &endnum, 10);
	if (*p < '0' || *p > '9' || *endnum != '\0' || inner != seq) {
		bad(why, "sequence number does not match");
		goto done;
	}
	p = sp + 1;
	sp = strchr(p, ' ');
	if (!sp || (size_t)(sp - p) > OUTBAND_MAX_ACCOUNT || sp == p) {
		bad(why, "malformed notification");
		goto done;
	}
	memcpy(out->account, p, (size_t)(sp - p));
	p = sp + 1;
	sp = strchr(p, ' ');
	size_t evlen = sp ? (size_t)(sp - p) : strlen(p);
	int ev = -1;
	for (int i = 0; i < OB_EVENT_COUNT; i++)
		if (strlen(event_names[i]) == evlen && memcmp(p, event_names[i], evlen) == 0)
			ev = i;
	if (ev < 0) {
		bad(why, "unknown event");
		goto done;
	}
	out->event = (enum outband_event)ev;
	if (sp) {
		if (strlen(sp + 1) > OUTBAND_MAX_MAILBOX) {
			bad(why, "malformed notification");
			goto done;
		}
		snprintf(out->mailbox, sizeof(out->mailbox), "%s", sp + 1);
	}
	out->seq = seq;
	rc = 0;
	gnutls_memset(plain, 0, sizeof(plain));
done:
	gnutls_free(blob.data);
	return rc;
}

bool outband_seq_acceptable(uint64_t last_seq, uint64_t seq, uint64_t now_us, uint64_t max_age_us,
                            const char **why)
{
	if (seq <= last_seq) {
		if (why)
			*why = "replayed (sequence number not above the last one accepted)";
		return false;
	}
	if (max_age_us) {
		if (seq + max_age_us < now_us) {
			if (why)
				*why = "too old";
			return false;
		}
		if (seq > now_us + max_age_us) {
			if (why)
				*why = "from the future (clocks too far apart)";
			return false;
		}
	}
	return true;
}

void outband_emn_format(const char *account, time_t when, struct buf *out)
{
	struct tm tm;
	char ts[32];
	gmtime_r(&when, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
	buf_append_str(out, "<?xml version=\"1.0\"?>\n<emn mailbox=\"mailat:");
	for (const char *p = account; *p; p++) {
		switch (*p) {
		case '&': buf_append_str(out, "&amp;"); break;
		case '<': buf_append_str(out, "&lt;"); break;
		case '>': buf_append_str(out, "&gt;"); break;
		case '"': buf_append_str(out, "&quot;"); break;
		case '\'': buf_append_str(out, "&apos;"); break;
		default:
			if ((unsigned char)*p >= 0x20)
				buf_append(out, p, 1);
		}
	}
	buf_printf(out, "\" timestamp=\"%s\"/>\n", ts);
}
