/*-------------------------------------------------------------------------
 *
 * compay.c
 *	  Module magic and _PG_init.  _PG_init only calls one XxxInit() per
 *	  subsystem; each subsystem owns its GUCs, hooks and workers.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/numeric.h"
#include "utils/guc.h"

#include "compay.h"
#include "jobs.h"
#include "ledger.h"
#include "pricing.h"
#include "wallet_rpc.h"
#include "worker.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	LedgerInit();
	PricingInit();
	JobsInit();
	WorkerInit();
	WalletRpcInit();

	MarkGUCPrefixReserved("compay");
}

char *
CompayEchoInput(const char *input)
{
	int			len = strlen(input);
	int			cut;

	if (len <= COMPAY_ECHO_LEN_MAX)
		return pstrdup(input);

	/* Cut on a character boundary so the message stays valid text. */
	cut = pg_mbcliplen(input, len, COMPAY_ECHO_LEN_MAX);
	return psprintf("%.*s...", cut, input);
}

Numeric
CompayNumeric(const char *text)
{
	return DatumGetNumeric(DirectFunctionCall3(numeric_in, CStringGetDatum(text),
											   ObjectIdGetDatum(InvalidOid),
											   Int32GetDatum(-1)));
}

char *
CompayNumericText(Numeric n)
{
	return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(n)));
}

int
CompayNumericCmp(Numeric a, Numeric b)
{
	return DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(a),
											 NumericGetDatum(b)));
}
