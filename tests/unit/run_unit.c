/* CUnit runner for every unit suite; exit status 0 only if all pass. */
#include <stdio.h>
#include <CUnit/Basic.h>
#include "suites.h"

int main(void)
{
	if (CU_initialize_registry() != CUE_SUCCESS)
		return 99;
	suite_buf();
	suite_imap_parse();
	suite_zio();
	suite_cfg();
	suite_url();
	suite_log();
	suite_caps();
	suite_stream();
	suite_uidset();
	suite_imap_write();
	suite_pimap_cmd();
	suite_gw_state();
	suite_macros();
	suite_client_view();
	suite_prefetch();
	suite_msgcache();
	suite_status_cache();
	suite_http_wire();
	suite_outband_msg();
	suite_sending();
	suite_smtp_server();
	suite_outband_policy();
	suite_resolver();
	suite_xfilter();
	suite_fview();
	suite_vrelay();
	suite_filters();
	suite_http_tunnel();
	suite_login_throttle();
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	unsigned failed = CU_get_number_of_tests_failed();
	unsigned run = CU_get_number_of_tests_run();
	CU_cleanup_registry();
	printf("unit: %u passed, %u failed\n", run - failed, failed);
	if (run == 0)
		return 99;
	return failed ? 1 : 0;
}
