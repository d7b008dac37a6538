/*-------------------------------------------------------------------------
 *
 * shard.c
 *	  Which shard owns a node, and the payer's half of a cross-shard
 *	  payment (docs/scaling.md).
 *
 * A database configured by compay.shard_configure() is shard `shard` of
 * `shards`; node_id lives on shard
 *     (hashtext(node_id) & (partitions - 1)) % shards,
 * the partition PL/Proxy's RUN ON hashtext(node_id) picks on the router.
 * A payment whose payee lives on another shard N credits the system
 * account '$clearing:N' here instead, and compay.clearing_queue() puts the
 * payee's credit into PgQ in the same transaction; the consumer on shard N
 * applies it (shard.sql).  System accounts ('$...') are local everywhere.
 *
 * The configuration is read once per backend and again after
 * compay.shard_configure() invalidates compay.shard_config's relcache
 * entry, so a database that is no shard pays one lookup per backend.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_collation_d.h"
#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"

#include "compay.h"
#include "shard.h"
#include "spi_util.h"

PG_FUNCTION_INFO_V1(compay_shard_config_changed);

typedef struct ShardConfig
{
	bool		loaded;
	int32		shard;			/* this database's shard, -1 when none */
	int32		shards;
	int32		partitions;
} ShardConfig;

static ShardConfig config = {false, -1, 0, 0};
static bool callback_registered = false;

static Oid	config_relid = InvalidOid;

static void
ShardConfigInvalidate(Datum arg pg_attribute_unused(), Oid relid)
{
	/* compay.shard_config's entry, or every entry (a cache reset). */
	if (relid == InvalidOid || relid == config_relid)
		config.loaded = false;
}

static void
ShardConfigLoad(void)
{
	Oid			nsp;

	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(ShardConfigInvalidate, (Datum) 0);
		callback_registered = true;
	}
	config.shard = -1;
	/*
	 * A 0.1 schema under this library has no table: no shard, looked up
	 * again at the next call (ALTER EXTENSION UPDATE creates it).
	 */
	nsp = get_namespace_oid("compay", true);
	config_relid = OidIsValid(nsp) ? get_relname_relid("shard_config", nsp) : InvalidOid;
	if (!OidIsValid(config_relid))
		return;
	SPI_connect();
	if (SPI_execute("SELECT shard, shards, partitions FROM compay.shard_config",
					true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read compay.shard_config");
	if (SPI_processed == 1)
	{
		bool		isnull;

		config.shard = DatumGetInt32(SpiGetDatum(0, 1, &isnull));
		config.shards = DatumGetInt32(SpiGetDatum(0, 2, &isnull));
		config.partitions = DatumGetInt32(SpiGetDatum(0, 3, &isnull));
		Assert(config.shards > 0 && config.partitions >= config.shards);
		Assert((config.partitions & (config.partitions - 1)) == 0);
	}
	SPI_finish();
	config.loaded = true;
}

/*
 * The shard that owns node_id; -1 when this database is no shard or the
 * node is a system account (every shard has its own).
 */
int
ShardOf(const char *node_id)
{
	int32		hash;

	if (!config.loaded)
		ShardConfigLoad();
	if (config.shard < 0 || node_id[0] == '$')
		return -1;
	hash = DatumGetInt32(DirectFunctionCall1Coll(hashtext, C_COLLATION_OID,
												 CStringGetTextDatum(node_id)));
	return (int) ((hash & (config.partitions - 1)) % config.shards);
}

/*
 * The account to credit for payee node_id on this shard: the node itself,
 * or '$clearing:N' when shard N owns it (*remote_shard = N, else -1).
 */
const char *
ShardPayee(const char *node_id, int *remote_shard)
{
	int			shard = ShardOf(node_id);

	*remote_shard = -1;
	if (shard < 0 || shard == config.shard)
		return node_id;
	*remote_shard = shard;
	return ShardClearingAccount(shard);
}

/* The clearing account of the money in flight with shard. */
char *
ShardClearingAccount(int shard)
{
	return psprintf(SHARD_CLEARING_PREFIX "%d", shard);
}

/*
 * A transfer with a '$clearing:N' side crossed shards: its other half is on
 * shard N, so a refund here (compay.refund, or a dispute's refund fronted
 * by $clawbacks) would never be matched there.  PY037.
 */
void
ShardRefuseRefund(int64 transfer_id, const char *payer, const char *payee)
{
	const size_t prefix = strlen(SHARD_CLEARING_PREFIX);

	if (strncmp(payee, SHARD_CLEARING_PREFIX, prefix) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_COMPAY_WRONG_SHARD),
				 errmsg("transfer " INT64_FORMAT " paid a node on another shard and cannot be refunded here", transfer_id),
				 errdetail("Its payee was credited on shard %s through clearing.", payee + prefix),
				 errhint("Let the payee transfer the amount back.")));
	if (strncmp(payer, SHARD_CLEARING_PREFIX, prefix) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_COMPAY_WRONG_SHARD),
				 errmsg("transfer " INT64_FORMAT " was paid from another shard and cannot be refunded here", transfer_id),
				 errdetail("Its payer was debited on shard %s through clearing.", payer + prefix),
				 errhint("Let the payee transfer the amount back.")));
}

/* A payer (role) that another shard owns cannot pay here: PY037. */
void
ShardRequireLocal(const char *node_id, const char *role)
{
	int			shard = ShardOf(node_id);

	if (shard >= 0 && shard != config.shard)
		ereport(ERROR,
				(errcode(ERRCODE_COMPAY_WRONG_SHARD),
				 errmsg("%s \"%s\" lives on shard %d, not on shard %d",
						role, CompayEchoInput(node_id), shard, config.shard),
				 errdetail("compay.shard_of() maps each node to the one shard that holds its account."),
				 errhint("Call through the router (extension compay_router), which runs each call on the node's shard.")));
}

/*
 * A hold or transfer id drawn here must name this shard (shard_configure
 * set the sequences' INCREMENT to partitions): the router runs capture and
 * refund by id & (partitions - 1).  A sequence altered by hand would
 * misroute them silently, so it is an error, never a stray id.
 */
void
ShardCheckId(int64 id, const char *sequence)
{
	if (!config.loaded)
		ShardConfigLoad();
	if (config.shard >= 0 && (id & (config.partitions - 1)) != config.shard)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("id " INT64_FORMAT " of compay.%s does not name shard %d",
						id, sequence, config.shard),
				 errdetail("On a shard every id of compay.%s is shard modulo %d, so that the router finds it; its INCREMENT was changed.",
						   sequence, config.partitions),
				 errhint("Run compay.shard_configure() again with this shard's arguments: it resets the sequences.")));
}

/*
 * Queues the payee's credit of a transfer into '$clearing:<remote_shard>'
 * (compay.clearing_queue: a row of compay.clearing_sent and a PgQ event),
 * in the caller's transaction.  The caller is connected to SPI.
 */
void
ShardQueueCredit(int remote_shard, int64 transfer_id, const char *payee, Credit amount,
				 const char *currency, const char *reference)
{
	static SpiStatement stmt = {
		.sql = "SELECT compay.clearing_queue($1, $2, $3, $4, $5, $6)",
		.nargs = 6,
		.argtypes = {INT4OID, INT8OID, TEXTOID, SPI_ARG_CREDIT, TEXTOID, TEXTOID}
	};
	Datum		args[6];
	char		nulls[6] = "      ";

	Assert(remote_shard >= 0 && remote_shard != config.shard);
	args[0] = Int32GetDatum(remote_shard);
	args[1] = Int64GetDatum(transfer_id);
	args[2] = CStringGetTextDatum(payee);
	args[3] = CreditGetDatum(amount);
	args[4] = CStringGetTextDatum(currency);
	args[5] = reference ? CStringGetTextDatum(reference) : (Datum) 0;
	if (reference == NULL)
		nulls[5] = 'n';
	SpiRun(&stmt, args, nulls, false, 0);
}

/*
 * compay.shard_config_changed(): tells every backend to read
 * compay.shard_config again (at its next transaction).
 */
Datum
compay_shard_config_changed(PG_FUNCTION_ARGS)
{
	CacheInvalidateRelcacheByRelid(CompayRelationOid("shard_config"));
	PG_RETURN_VOID();
}
