/*-------------------------------------------------------------------------
 *
 * jobs.c
 *	  The settings of jobs, escrow, verification and disputes.  The job
 *	  functions themselves are PL/pgSQL in the install script: each is a
 *	  short sequence of row locks and C ledger calls, and reads these
 *	  settings with compay.setting().  They are defined here so that a
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
static bool verification_distinct_regions = false;
static int	verifier_votes_per_day = 0;
static char *verifier_stake_per_vote = NULL;
static double min_score_assign = 0.0;
static double min_score_verify = 0.0;

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
	DefineCustomBoolVariable("compay.verification_distinct_regions",
							 "Count toward the quorum one vote per region, none from the provider's.",
							 "A vote from a node without a region, from the provider's region or from "
							 "a region already counted for the same outcome is recorded but not counted.",
							 &verification_distinct_regions, false, PGC_SUSET, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("compay.verifier_votes_per_day",
							"Base of a verifier's daily vote limit (0: no limit).",
							"Limit: floor((base + floor(stake / compay.verifier_stake_per_vote)) "
							"x 2 x credit score) votes in any 24 hours.",
							&verifier_votes_per_day, 0, 0, 1000000,
							PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("compay.verifier_stake_per_vote",
							   "Stake that adds one vote to a verifier's daily limit base.",
							   "0 turns the stake term off.",
							   &verifier_stake_per_vote, "0", PGC_SUSET, 0,
							   CreditCheckAmountSetting, NULL, NULL);
	DefineCustomRealVariable("compay.min_score_assign",
							 "Credit score a provider needs to be assigned a job.",
							 "0 turns the check off.",
							 &min_score_assign, 0.0, 0.0, 1.0, PGC_SUSET, 0,
							 NULL, NULL, NULL);
	DefineCustomRealVariable("compay.min_score_verify",
							 "Credit score a verifier needs to vote.",
							 "0 turns the check off.",
							 &min_score_verify, 0.0, 0.0, 1.0, PGC_SUSET, 0,
							 NULL, NULL, NULL);
}
