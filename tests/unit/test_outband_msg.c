/*
 * test_outband_msg.c - out-band payloads: EXTENDED sealed and opened again,
 * every single-bit change of a datagram refused, another key refused, the
 * replay rule, a fixed test vector (so the wire format cannot drift
 * silently), malformed input whole and cut at every length, and EMN.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "outband_msg.h"
#include "suites.h"

static const uint8_t KEY[OUTBAND_KEY_LEN] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                             17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
static const uint8_t SALT[OUTBAND_SALT_LEN] = {0xa, 0xb, 0xc, 0xd};

static void test_round_trip(void)
{
	struct buf d;
	buf_init(&d, 0);
	CU_ASSERT_EQUAL_FATAL(outband_extended_encode(KEY, 1733578800123456ull, SALT, "bob#Plaptop@example.org",
	                                              OB_NEW_MESSAGE, "INBOX", &d), 0);
	CU_ASSERT_EQUAL(memcmp(buf_head(&d), OUTBAND_MARKER " ", strlen(OUTBAND_MARKER) + 1), 0);
	CU_ASSERT(buf_len(&d) < OUTBAND_MAX_DATAGRAM);
	struct outband_notice n;
	const char *why = NULL;
	CU_ASSERT_EQUAL_FATAL(outband_extended_decode(KEY, buf_head(&d), buf_len(&d), &n, &why), 0);
	CU_ASSERT_EQUAL(n.seq, 1733578800123456ull);
	CU_ASSERT_STRING_EQUAL(n.account, "bob#Plaptop@example.org");
	CU_ASSERT_EQUAL(n.event, OB_NEW_MESSAGE);
	CU_ASSERT_STRING_EQUAL(n.mailbox, "INBOX");
	/* without a mailbox; a name with spaces */
	buf_clear(&d);
	CU_ASSERT_EQUAL(outband_extended_encode(KEY, 7, SALT, "a#Pb", OB_SYNC, NULL, &d), 0);
	CU_ASSERT_EQUAL(outband_extended_decode(KEY, buf_head(&d), buf_len(&d), &n, &why), 0);
	CU_ASSERT_EQUAL(n.event, OB_SYNC);
	CU_ASSERT_STRING_EQUAL(n.mailbox, "");
	buf_clear(&d);
	CU_ASSERT_EQUAL(outband_extended_encode(KEY, 8, SALT, "a#Pb", OB_DELETED_MESSAGE, "Old Mail", &d), 0);
	CU_ASSERT_EQUAL(outband_extended_decode(KEY, buf_head(&d), buf_len(&d), &n, &why), 0);
	CU_ASSERT_STRING_EQUAL(n.mailbox, "Old Mail");
	/* a trailing CRLF is tolerated */
	buf_append_str(&d, "\r\n");
	CU_ASSERT_EQUAL(outband_extended_decode(KEY, buf_head(&d), buf_len(&d), &n, &why), 0);
	/* what cannot be encoded */
	buf_clear(&d);
	CU_ASSERT_EQUAL(outband_extended_encode(KEY, 9, SALT, "a b", OB_SYNC, NULL, &d), -1);
	CU_ASSERT_EQUAL(outband_extended_encode(KEY, 9, SALT, "", OB_SYNC, NULL, &d), -1);
	CU_ASSERT_EQUAL(outband_extended_encode(KEY, 9, SALT, "a", OB_SYNC, "x\r\ny", &d), -1);
	CU_ASSERT_EQUAL(outband_extended_encode(KEY, 9, SALT, "a", OB_EVENT_COUNT, NULL, &d), -1);
	buf_free(&d);
}

/* Any change to the datagram after the marker, and any other key, fails authentication or parsing. */
static void test_forgery(void)
{
	struct buf d;
	buf_init(&d, 0);
	outband_extended_encode(KEY, 42, SALT, "bob#Pp", OB_NEW_MESSAGE, "INBOX", &d);
	struct outband_notice n;
	const char *why;
	uint8_t *copy = malloc(buf_len(&d));
	size_t marker = strlen(OUTBAND_MARKER) + 1;
	for (size_t i = 0; i < buf_len(&d); i++) {
		for (int bit = 0; bit < 8; bit++) {
			memcpy(copy, buf_head(&d), buf_len(&d));
			copy[i] ^= (uint8_t)(1u << bit);
			why = NULL;
			int rc = outband_extended_decode(KEY, copy, buf_len(&d), &n, &why);
			/* Flipping a base64 character's unused low bits in the last quantum can decode to the
			 * same bytes; everything else must fail. */
			if (rc == 0) {
				CU_ASSERT(i >= buf_len(&d) - 3 && i >= marker);
				CU_ASSERT_EQUAL(n.seq, 42);
			} else {
				CU_ASSERT_PTR_NOT_NULL(why);
			}
		}
	}
	uint8_t other[OUTBAND_KEY_LEN];
	memcpy(other, KEY, sizeof(other));
	other[31] ^= 1;
	CU_ASSERT_EQUAL(outband_extended_decode(other, buf_head(&d), buf_len(&d), &n, &why), -1);
	CU_ASSERT_PTR_NOT_NULL(strstr(why, "authentication failed"));
	/* every truncation */
	for (size_t len = 0; len < buf_len(&d); len++)
		CU_ASSERT_EQUAL(outband_extended_decode(KEY, buf_head(&d), len, &n, &why), -1);
	free(copy);
	buf_free(&d);
	/* not ours */
	const char *emn = "<emn mailbox=\"mailat:bob\"/>";
	CU_ASSERT_EQUAL(outband_extended_decode(KEY, (const uint8_t *)emn, strlen(emn), &n, &why), -1);
	const char *junk = OUTBAND_MARKER " !!!!";
	CU_ASSERT_EQUAL(outband_extended_decode(KEY, (const uint8_t *)junk, strlen(junk), &n, &why), -1);
	CU_ASSERT_STRING_EQUAL(why, "malformed base64");
}

/* The wire format, pinned: a change here is a protocol change (docs/PROTOCOL.md 6). */
static void test_vector(void)
{
	struct buf d;
	buf_init(&d, 0);
	CU_ASSERT_EQUAL(outband_extended_encode(KEY, 1, SALT, "u#Pd", OB_NEW_MESSAGE, NULL, &d), 0);
	char *s = buf_str(&d);
	/* version 1, seq 1, salt 0a0b0c0d, AES-256-GCM of "1 u#Pd NEW_MESSAGE" with AD marker||01||seq;
	 * computed independently with Python's cryptography (AESGCM). */
	CU_ASSERT_STRING_EQUAL(s, OUTBAND_MARKER " AQAAAAAAAAABCgsMDQ/6RLRIcfq305PotE5bpVU5vWsokAun4x4cAYOmiJtTVbc=");
	free(s);
	buf_free(&d);
}

static void test_replay_rule(void)
{
	const char *why = NULL;
	uint64_t now = 1733578800000000ull, age = 300000000ull;
	CU_ASSERT_TRUE(outband_seq_acceptable(0, now, now, age, &why));
	CU_ASSERT_FALSE(outband_seq_acceptable(now, now, now, age, &why));
	CU_ASSERT_PTR_NOT_NULL(strstr(why, "replayed"));
	CU_ASSERT_FALSE(outband_seq_acceptable(now, now - 1, now, age, &why));
	CU_ASSERT_TRUE(outband_seq_acceptable(now, now + 1, now, age, &why));
	CU_ASSERT_FALSE(outband_seq_acceptable(0, now - age - 1, now, age, &why));
	CU_ASSERT_STRING_EQUAL(why, "too old");
	CU_ASSERT_FALSE(outband_seq_acceptable(0, now + age + 1, now, age, &why));
	CU_ASSERT_TRUE(outband_seq_acceptable(0, 5, now, 0, &why)); /* age check off */
}

static void test_emn(void)
{
	struct buf d;
	buf_init(&d, 0);
	outband_emn_format("bob#Pp<&>\"'@example.org", 1077259200, &d);
	char *s = buf_str(&d);
	CU_ASSERT_STRING_EQUAL(s, "<?xml version=\"1.0\"?>\n<emn mailbox=\"mailat:bob#Pp&lt;&amp;&gt;&quot;&apos;"
	                          "@example.org\" timestamp=\"2004-02-20T06:40:00Z\"/>\n");
	free(s);
	buf_free(&d);
}

void suite_outband_msg(void)
{
	ADD_SUITE("outband_msg", {"EXTENDED round trip", test_round_trip}, {"forgery and truncation", test_forgery},
	          {"test vector", test_vector}, {"replay rule", test_replay_rule}, {"EMN", test_emn});
}
