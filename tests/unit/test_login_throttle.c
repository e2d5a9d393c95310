/*
 * test_login_throttle.c - failed logins per client address: the limit,
 * logins under way, the window, address keys (IPv6 by /64), and a full
 * table that must still throttle.
 */
#include "config.h"

#include <string.h>

#include "login_throttle.h"
#include "suites.h"

static void expect_key(const char *peer, const char *want)
{
	char key[64];
	login_throttle_key(peer, key, sizeof(key));
	CU_ASSERT_STRING_EQUAL(key, want);
}

static void test_keys(void)
{
	expect_key("192.0.2.7:54321", "192.0.2.7");
	expect_key("192.0.2.7", "192.0.2.7");
	expect_key("[2001:db8:1:2:3:4:5:6]:143", "2001:db8:1:2::");
	expect_key("[2001:db8:1:2::ffff]:1", "2001:db8:1:2::");
	expect_key("2001:db8:1:3::1", "2001:db8:1:3::");
	expect_key("[::ffff:192.0.2.9]:5", "192.0.2.9");
	expect_key("[::1]:99", "::");
	expect_key("local", "local");
}

static void test_limit_and_window(void)
{
	struct login_throttle *t = login_throttle_new(60, 16);
	double now = 1000;
	for (int i = 0; i < 3; i++) {
		CU_ASSERT_FALSE(login_throttle_refuses(t, "192.0.2.1:1", now, 3));
		struct login_throttle_slot *s = login_throttle_begin(t, "192.0.2.1:1", now);
		login_throttle_end(t, s, now, true);
	}
	CU_ASSERT_TRUE(login_throttle_refuses(t, "192.0.2.1:2", now, 3));
	/* another address is not affected, nor the same one after the window */
	CU_ASSERT_FALSE(login_throttle_refuses(t, "192.0.2.2:1", now, 3));
	CU_ASSERT_FALSE(login_throttle_refuses(t, "192.0.2.1:3", now + 61, 3));
	/* a success does not count */
	struct login_throttle_slot *s = login_throttle_begin(t, "192.0.2.3:1", now);
	login_throttle_end(t, s, now, false);
	CU_ASSERT_FALSE(login_throttle_refuses(t, "192.0.2.3:1", now, 1));
	login_throttle_free(t);
}

/* Parallel guesses count while under way: the fourth is refused before any fails. */
static void test_in_flight(void)
{
	struct login_throttle *t = login_throttle_new(60, 16);
	struct login_throttle_slot *s[3];
	for (int i = 0; i < 3; i++) {
		CU_ASSERT_FALSE(login_throttle_refuses(t, "[2001:db8::1]:1", 5, 3));
		s[i] = login_throttle_begin(t, "[2001:db8::1]:1", 5);
	}
	/* another address in the same /64 is the same client */
	CU_ASSERT_TRUE(login_throttle_refuses(t, "[2001:db8::99]:7", 5, 3));
	for (int i = 0; i < 3; i++)
		login_throttle_end(t, s[i], 5, false);
	CU_ASSERT_FALSE(login_throttle_refuses(t, "[2001:db8::99]:7", 5, 3));
	login_throttle_end(t, NULL, 5, true); /* nothing under way: a no-op */
	login_throttle_free(t);
}

/* Every slot taken: the next addresses share one slot that throttles them together. */
static void test_full_table(void)
{
	struct login_throttle *t = login_throttle_new(60, 4);
	char peer[64];
	for (int i = 0; i < 4; i++) {
		snprintf(peer, sizeof(peer), "198.51.100.%d:1", i);
		login_throttle_end(t, login_throttle_begin(t, peer, 10), 10, true);
	}
	for (int i = 4; i < 7; i++) {
		snprintf(peer, sizeof(peer), "198.51.100.%d:1", i);
		CU_ASSERT_FALSE(login_throttle_refuses(t, peer, 10, 3));
		login_throttle_end(t, login_throttle_begin(t, peer, 10), 10, true);
	}
	/* a new address now: refused, though it never failed itself */
	CU_ASSERT_TRUE(login_throttle_refuses(t, "198.51.100.200:1", 10, 3));
	/* once the window is over, slots are reused */
	CU_ASSERT_FALSE(login_throttle_refuses(t, "198.51.100.200:1", 100, 3));
	struct login_throttle_slot *s = login_throttle_begin(t, "198.51.100.200:1", 100);
	login_throttle_end(t, s, 100, true);
	CU_ASSERT_FALSE(login_throttle_refuses(t, "198.51.100.200:1", 100, 3));
	login_throttle_free(t);
}

void suite_login_throttle(void)
{
	ADD_SUITE("login_throttle",
	          {"address keys", test_keys},
	          {"limit and window", test_limit_and_window},
	          {"logins under way", test_in_flight},
	          {"a full table still throttles", test_full_table});
}
