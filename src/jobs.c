/*-------------------------------------------------------------------------
 *
 * jobs.c
 *	  The settings of jobs, escrow, verification and disputes.  The job
 *	  functions themselves are PL/pgSQL in the install script: each is a
 *	  short sequence of row locks and C ledger calls, and reads these
 *	  settings with current_setting().  They are defined here so that a
 *	  bad value is refused when it is set, not when a job is paid.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "datatype/timestamp.h"
#include "utils/guc.h"

#include "credit.h"
#include "jobs.h"

static char *min_stake = NULL;
static int	verification_quorum = 2;
static char *verification_reward_ratio = NULL;
static int	dispute_window_s = 72 * SECS_PER_HOUR;

/* The ratio as an exact decimal in [0.10, 0.20]: compare in atomic units. */
static bool
CheckRewardRatio(char **newval, void **extra pg_attribute_unused(),
				 GucSource source pg_attribute_unused())
{
	return CreditCheckSetting(*newval, CREDIT_UNIT / 10, CREDIT_UNIT / 5,
							  "The verification reward ratio is a decimal from 0.10 to 0.20.");
}

void
JobsInit(void)
{
	DefineCustomStringVariable("compay.min_stake",
							   "Stake a provider must hold to be assigned a job.",
							   "0 turns the check off.",
							   &min_stake, "0", PGC_SUSET, 0,
							   CreditCheckAmountSetting, NULL, NULL);
	DefineCustomIntVariable("compay.verification_quorum",
							"Passing (or failing) verifiers that decide a job.",
							NULL, &verification_quorum, 2, 1, 100,
							PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("compay.verification_reward_ratio",
							   "Share of a verified job's amount each passing verifier gets.",
							   "Allowed from 0.10 to 0.20; paid from the $rewards account.",
							   &verification_reward_ratio, "0.15", PGC_SUSET, 0,
							   CheckRewardRatio, NULL, NULL);
	DefineCustomIntVariable("compay.dispute_window",
							"How long after completion a payment can be disputed.",
							NULL, &dispute_window_s, 72 * SECS_PER_HOUR, 1, INT_MAX,
							PGC_SUSET, GUC_UNIT_S, NULL, NULL, NULL);
}
