/*-------------------------------------------------------------------------
 *
 * check_constraints.c
 *	  The CHECK constraints of the tables compay writes without the
 *	  executor (ledger_heap.c, metering_heap.c), compiled once a backend.
 *
 * ExecConstraints compiles a table's CHECK constraints the first time it
 * checks a row for a ResultRelInfo: it reads each one back from its stored
 * node text and prepares an expression state, in the executor state's
 * memory.  A statement does that once for all its rows; compay makes a
 * ResultRelInfo per call, so every transfer read the accounts' constraint
 * back from text and every job payment the holds' three (6 % of a job
 * payment's time).  Here the prepared states are kept per table for the
 * life of the backend and handed to each new ResultRelInfo.
 *
 * A prepared check depends only on the table's definition, so a relcache
 * invalidation of the table (ALTER TABLE ... ADD or DROP CONSTRAINT, or
 * any other change of its definition) marks its entry stale, and the next
 * call compiles the constraints again from the relation it has open.  The
 * callback only marks: an invalidation can arrive while a check is being
 * evaluated (a check's function that opens a catalog), and the states in
 * use must stay valid until that evaluation ends.  The expression states
 * are built without a parent (as ExecPrepareExpr builds them) and take
 * their memory for results from the caller's expression context, so they
 * hold nothing of the call that first compiled them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/executor.h"
#include "nodes/execnodes.h"
#include "optimizer/optimizer.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "compay.h"

/* Tables compay writes without the executor: accounts, holds, usage_samples... */
#define CHECK_CACHE_SIZE 8

typedef struct CheckCacheEntry
{
	Oid			relid;			/* InvalidOid: a free entry */
	bool		valid;			/* false: compile again before use */
	int			ncheck;
	ExprState **exprs;
	MemoryContext cxt;
} CheckCacheEntry;

static CheckCacheEntry check_cache[CHECK_CACHE_SIZE];
static bool check_cache_callback = false;

static void
CheckCacheInvalidate(Datum arg pg_attribute_unused(), Oid relid)
{
	for (int i = 0; i < CHECK_CACHE_SIZE; i++)
		if (relid == InvalidOid || check_cache[i].relid == relid)
			check_cache[i].valid = false;
}

/* The entry of relid, a free one, or NULL when the cache is full. */
static CheckCacheEntry *
EntryFor(Oid relid)
{
	CheckCacheEntry *free_entry = NULL;

	for (int i = 0; i < CHECK_CACHE_SIZE; i++)
	{
		if (check_cache[i].relid == relid)
			return &check_cache[i];
		if (check_cache[i].relid == InvalidOid && free_entry == NULL)
			free_entry = &check_cache[i];
	}
	return free_entry;
}

/* Compiles the CHECK constraints of rel into e, as ExecRelCheck would. */
static void
Compile(CheckCacheEntry *e, Relation rel)
{
	TupleConstr *constr = RelationGetDescr(rel)->constr;
	MemoryContext old;

	e->valid = false;			/* until the states are all built */
	if (e->cxt == NULL)
		e->cxt = AllocSetContextCreate(CacheMemoryContext, "compay CHECK constraints",
									   ALLOCSET_SMALL_SIZES);
	else
		MemoryContextReset(e->cxt);
	e->relid = RelationGetRelid(rel);
	e->ncheck = constr->num_check;
	old = MemoryContextSwitchTo(e->cxt);
	e->exprs = palloc(sizeof(ExprState *) * e->ncheck);
	for (int i = 0; i < e->ncheck; i++)
		e->exprs[i] = ExecInitExpr(expression_planner(stringToNode(constr->check[i].ccbin)),
								   NULL);
	MemoryContextSwitchTo(old);
	e->valid = true;
}

/*
 * Gives rri the prepared CHECK constraints of its table, compiled here
 * once and kept, so that ExecConstraints does not compile them again.
 * Call it right after InitResultRelInfo, outside any check's evaluation.
 * A table without CHECK constraints, or one more than the cache holds, is
 * left to ExecConstraints as before.
 */
void
CompayUseCachedChecks(ResultRelInfo *rri)
{
	Relation	rel = rri->ri_RelationDesc;
	TupleConstr *constr = RelationGetDescr(rel)->constr;
	CheckCacheEntry *e;

	if (constr == NULL || constr->num_check == 0)
		return;
	if (!check_cache_callback)
	{
		CacheRegisterRelcacheCallback(CheckCacheInvalidate, (Datum) 0);
		check_cache_callback = true;
	}
	e = EntryFor(RelationGetRelid(rel));
	if (e == NULL)
		return;
	if (!e->valid || e->ncheck != constr->num_check)
		Compile(e, rel);
	Assert(rri->ri_ConstraintExprs == NULL);
	rri->ri_ConstraintExprs = e->exprs;
}
