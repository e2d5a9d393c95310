/* Each test_*.c file registers one CUnit suite through one of these. */
#ifndef PIMAP_TEST_SUITES_H
#define PIMAP_TEST_SUITES_H

#include <stdint.h>

#include <CUnit/CUnit.h>

void suite_buf(void);
void suite_imap_parse(void);
void suite_zio(void);
void suite_cfg(void);
void suite_url(void);
void suite_log(void);
void suite_caps(void);
void suite_stream(void);
void suite_uidset(void);
void suite_imap_write(void);
void suite_pimap_cmd(void);
void suite_gw_state(void);
void suite_macros(void);
void suite_client_view(void);
void suite_prefetch(void);
void suite_msgcache(void);
void suite_status_cache(void);
void suite_http_wire(void);
void suite_outband_msg(void);
void suite_sending(void);
void suite_smtp_server(void);
void suite_outband_policy(void);
void suite_resolver(void);
void suite_xfilter(void);
void suite_fview(void);
void suite_vrelay(void);
void suite_filters(void);
void suite_http_tunnel(void);
void suite_login_throttle(void);

struct buf;
/* A deterministic pseudo-random sequence for randomised cases (unit_util.c):
 * seed it in each test, so every failure reproduces. below(n) is 0..n-1. */
void unit_rng_seed(uint32_t seed);
uint32_t unit_rng_next(void);
uint32_t unit_rng_below(uint32_t n);

/* The buffer's bytes as a NUL-terminated string (caller frees); unit_util.c. */
char *buf_str(const struct buf *b);

/* Add a suite with the given tests; aborts the run if CUnit cannot. */
#define ADD_SUITE(name, ...)                                                   \
	do {                                                                   \
		CU_pSuite s_ = CU_add_suite((name), NULL, NULL);               \
		CU_TestInfo t_[] = {__VA_ARGS__, CU_TEST_INFO_NULL};           \
		for (CU_TestInfo *i_ = t_; s_ && i_->pName; i_++)              \
			CU_add_test(s_, i_->pName, i_->pTestFunc);             \
	} while (0)

#endif
