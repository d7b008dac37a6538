/*-------------------------------------------------------------------------
 *
 * idempotency.c
 *	  Idempotency keys for every money-moving call.
 *
 * A call with a key first claims it: INSERT ... ON CONFLICT DO NOTHING.
 * If another transaction holds an uncommitted claim on the same key, the
 * insert waits for it; when that one commits, the conflict is visible and
 * this call returns the first result instead of moving money again, and
 * when it aborts, this call claims the key itself.  The claim and the money
 * movement commit or roll back together, so a key never points at work that
 * did not happen.  A key reused with other arguments is an error: the
 * request is fingerprinted as SHA-256 of the operation and its arguments.
 *
 * The PL/pgSQL money functions (request_payout, stake, unstake) use the same two steps
 * through compay.idempotency_claim() and compay.idempotency_record().
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "common/cryptohash.h"
#include "common/sha2.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"

#include "compay.h"
#include "ledger.h"
#include "node_roles.h"
#include "spi_util.h"

PG_FUNCTION_INFO_V1(compay_idempotency_claim);
PG_FUNCTION_INFO_V1(compay_idempotency_record);

static SpiStatement claim_stmt = {
	.sql = "INSERT INTO compay.idempotency_keys (key, operation, request_hash) "
	"VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING",
	.nargs = 3,
	.argtypes = {TEXTOID, TEXTOID, BYTEAOID}
};

static SpiStatement lookup_stmt = {
	.sql = "SELECT operation, request_hash, result_id FROM compay.idempotency_keys "
	"WHERE key = $1",
	.nargs = 1,
	.argtypes = {TEXTOID}
};

static SpiStatement record_stmt = {
	.sql = "UPDATE compay.idempotency_keys SET result_id = $2 WHERE key = $1",
	.nargs = 2,
	.argtypes = {TEXTOID, INT8OID}
};

static bytea *
RequestHash(const char *operation, const char *request)
{
	bytea	   *hash = palloc(VARHDRSZ + PG_SHA256_DIGEST_LENGTH);
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);

	if (pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) operation, strlen(operation) + 1) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) request, strlen(request)) < 0 ||
		pg_cryptohash_final(ctx, (uint8 *) VARDATA(hash), PG_SHA256_DIGEST_LENGTH) < 0)
		elog(ERROR, "could not compute SHA-256: %s", pg_cryptohash_error(ctx));
	pg_cryptohash_free(ctx);
	SET_VARSIZE(hash, VARHDRSZ + PG_SHA256_DIGEST_LENGTH);
	return hash;
}

/*
 * Claims key for this call.  Returns false when the caller should do the
 * work (and then call IdempotencyRecord), true when the same request was
 * already done, with its result in *result_id.  request is the canonical
 * text of the arguments.
 */
/*
 * The key as stored: a node role's keys carry its scope, so that a node
 * can neither claim a key the application will use nor replay another
 * caller's.  The stored key has at most IDEMPOTENCY_KEY_MAX characters.
 */
static char *
StoredKey(const char *key)
{
	char	   *scope = NodeKeyScope();
	int			max = IDEMPOTENCY_KEY_MAX - (scope ? (int) strlen(scope) : 0);
	int			len = pg_mbstrlen(key);

	if (len == 0 || len > max)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("an idempotency key has 1 to %d characters", max),
				 scope ? errdetail("A node role's keys are kept apart from other callers' with a prefix of %d characters.",
								   (int) strlen(scope)) : 0));
	return scope ? psprintf("%s%s", scope, key) : pstrdup(key);
}

bool
IdempotencyClaim(const char *key, const char *operation, const char *request,
				 int64 *result_id)
{
	bytea	   *hash = RequestHash(operation, request);
	Datum		args[3];
	char	   *stored_op;
	bytea	   *stored_hash;
	bool		isnull;
	const char *shown = key;

	key = StoredKey(key);
	args[0] = CStringGetTextDatum(key);
	args[1] = CStringGetTextDatum(operation);
	args[2] = PointerGetDatum(hash);
	if (SpiRun(&claim_stmt, args, NULL, false, 0) == 1)
		return false;

	if (SpiRun(&lookup_stmt, args, NULL, false, 1) != 1)
		elog(ERROR, "idempotency key \"%s\" vanished", key);
	stored_op = SpiGetText(0, 1);
	stored_hash = DatumGetByteaPP(SpiGetDatum(0, 2, &isnull));
	*result_id = SpiGetInt64(0, 3);

	if (strcmp(stored_op, operation) != 0 ||
		VARSIZE_ANY_EXHDR(stored_hash) != PG_SHA256_DIGEST_LENGTH ||
		memcmp(VARDATA_ANY(stored_hash), VARDATA(hash), PG_SHA256_DIGEST_LENGTH) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_COMPAY_IDEMPOTENCY_CONFLICT),
				 errmsg("idempotency key \"%s\" was already used for a different request",
						CompayEchoInput(shown)),
				 errdetail("The key was first used by %s with other arguments.", stored_op),
				 errhint("Use a new key for a new request; retry with the same arguments to get the first result.")));
	return true;
}

void
IdempotencyRecord(const char *key, int64 result_id)
{
	Datum		args[2];

	args[0] = CStringGetTextDatum(StoredKey(key));
	args[1] = Int64GetDatum(result_id);
	if (SpiRun(&record_stmt, args, NULL, false, 0) != 1)
		elog(ERROR, "idempotency key \"%s\" was not claimed", key);
}

/*
 * compay.idempotency_claim(key, operation, request): IdempotencyClaim for
 * the PL/pgSQL money functions (request_payout, stake, unstake), with the caller's
 * key scope.  NULL: the key is claimed, do the work and record its result
 * with compay.idempotency_record; otherwise the first call's result.  A
 * key reused with another request is PY005.  Not granted to any role.
 */
Datum
compay_idempotency_claim(PG_FUNCTION_ARGS)
{
	int64		result_id = 0;
	bool		done;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("key, operation and request must not be NULL")));
	SPI_connect();
	done = IdempotencyClaim(TextArgOrNull(fcinfo, 0), TextArgOrNull(fcinfo, 1),
							TextArgOrNull(fcinfo, 2), &result_id);
	SPI_finish();
	if (!done)
		PG_RETURN_NULL();
	PG_RETURN_INT64(result_id);
}

/* compay.idempotency_record(key, result_id): the result of a claimed key. */
Datum
compay_idempotency_record(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("key and result_id must not be NULL")));
	SPI_connect();
	IdempotencyRecord(TextArgOrNull(fcinfo, 0), PG_GETARG_INT64(1));
	SPI_finish();
	PG_RETURN_VOID();
}
