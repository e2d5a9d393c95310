/* Unit tests for caps.c: capability rewriting for the client leg. */
#include <string.h>
#include <CUnit/CUnit.h>

#include "buf.h"
#include "caps.h"
#include "suites.h"

static void expect(const char *upstream, bool tls, bool authed, const char *want)
{
	struct buf out;
	buf_init(&out, 0);
	struct caps_client_leg leg = {.tls = tls, .authenticated = authed};
	caps_for_client(upstream, strlen(upstream), &leg, &out);
	buf_append(&out, "", 1);
	CU_ASSERT_STRING_EQUAL((const char *)buf_head(&out), want);
	buf_free(&out);
}

static void test_prelogin_plain_leg(void)
{
	expect("IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS LOGINDISABLED AUTH=PLAIN",
	       false, false, "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ LOGINDISABLED AUTH=PLAIN STARTTLS");
}

static void test_prelogin_tls_leg(void)
{
	expect("IMAP4rev1 STARTTLS AUTH=PLAIN", true, false, "IMAP4rev1 AUTH=PLAIN");
}

static void test_postlogin_adds_compress(void)
{
	expect("IMAP4rev1 IDLE COMPRESS=DEFLATE MOVE", false, true, "IMAP4rev1 IDLE MOVE COMPRESS=DEFLATE");
	expect("IMAP4rev1 IDLE", true, true, "IMAP4rev1 IDLE COMPRESS=DEFLATE");
}

static void test_drops_channel_binding(void)
{
	expect("IMAP4rev1 AUTH=SCRAM-SHA-256 AUTH=SCRAM-SHA-256-PLUS auth=scram-sha-1-plus", true, false,
	       "IMAP4rev1 AUTH=SCRAM-SHA-256");
}

static void test_spacing_and_empty(void)
{
	expect("  IMAP4rev1   IDLE  ", true, false, "IMAP4rev1 IDLE");
	expect("", false, false, "STARTTLS");
	expect("", true, false, "");
}

static void test_login_disabled(void)
{
	struct buf out;
	buf_init(&out, 0);
	const char *up = "IMAP4rev1 AUTH=PLAIN AUTH=LOGIN IDLE";
	struct caps_client_leg leg = {.tls = false, .authenticated = false, .login_disabled = true};
	caps_for_client(up, strlen(up), &leg, &out);
	buf_append(&out, "", 1);
	CU_ASSERT_STRING_EQUAL((const char *)buf_head(&out), "IMAP4rev1 IDLE STARTTLS LOGINDISABLED");
	buf_free(&out);
}

static void test_contains(void)
{
	const char *l = "IMAP4rev1 COMPRESS=DEFLATE idle";
	CU_ASSERT_TRUE(caps_contains(l, strlen(l), "IDLE"));
	CU_ASSERT_TRUE(caps_contains(l, strlen(l), "compress=deflate"));
	CU_ASSERT_FALSE(caps_contains(l, strlen(l), "COMPRESS"));
	CU_ASSERT_FALSE(caps_contains(l, strlen(l), "IMAP4"));
	CU_ASSERT_FALSE(caps_contains("", 0, "IDLE"));
}

void suite_caps(void)
{
	ADD_SUITE("caps",
	          {"pre-login, plaintext client leg", test_prelogin_plain_leg},
	          {"pre-login, TLS client leg", test_prelogin_tls_leg},
	          {"post-login adds COMPRESS", test_postlogin_adds_compress},
	          {"drops channel binding", test_drops_channel_binding},
	          {"spacing and empty lists", test_spacing_and_empty},
	          {"LOGINDISABLED instead of AUTH=", test_login_disabled},
	          {"contains", test_contains});
}
