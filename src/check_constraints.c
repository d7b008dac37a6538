/*-------------------------------------------------------------------------
 *
 * check_constraints.c
 *	  CHECK constraints of the tables compay writes without the executor
 *	  (ledger_heap.c, metering_heap.c), read and planned once a backend.
 *
 * ExecConstraints prepares a table's CHECK constraints the first time it
 * checks a row for a ResultRelInfo: it reads each one back from its stored
 * node text (stringToNode), plans it (expression_planner) and builds its
 * expression state.  A statement does that once for all its rows; compay
 * makes a ResultRelInfo per call, so every transfer read the accounts'
 * constraint back from text and planned it, and every job payment the
 * holds' three (6 % of a job payment's time).
 *
 * Here the planned expression trees are kept per table for the life of the
 * backend.  Each call still builds its own expression states, from a copy
 * of the trees, in its executor state's memory, as ExecPrepareExpr would:
 * the states, which cache per-query things (a whole-row variable's
 * descriptor, a SQL function's plan) and check EXECUTE privileges as they
 * are built, belong to the call, and a call nested inside another's check
 * shares nothing with it.
 *
 * A planned tree depends on the table's definition and, through inlining
 * and constant folding, on the functions, types (a domain's constraints),
 * operators and schemas it names, and on the user and search_path it was
 * planned under.  A relcache invalidation of the table (ALTER TABLE, a
 * constraint added, dropped or replaced, whether by this session, another,
 * or a rollback) marks its entry stale; any change of pg_proc, pg_type,
 * pg_operator or pg_namespace (rare) marks every entry stale; a check made
 * by another user or under another search_path than the plan's plans
 * again.  The callbacks only mark: only PlanChecks frees trees, and no call
 * reads them after copying them.  A mark that arrives while a table's
 * constraints are being planned is not lost, and a planning error leaves
 * nothing behind (the work is done in a context of the call's).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/execnodes.h"
#include "optimizer/optimizer.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "compay.h"

/* Tables with CHECK constraints that compay writes: accounts, holds. */
#define CHECK_CACHE_SIZE 8

typedef struct CheckCacheEntry
{
	Oid			relid;			/* InvalidOid: a free entry */
	bool		valid;			/* false: plan again before use */
	int			ncheck;
	Expr	  **trees;			/* planned, in cxt */
	Oid			user;			/* planned as this user */
	char	   *search_path;	/* and under this search_path, in cxt */
	MemoryContext cxt;
} CheckCacheEntry;

static CheckCacheEntry check_cache[CHECK_CACHE_SIZE];
static bool check_cache_callbacks_registered = false;

/* Bumped by every invalidation the cache sees. */
static uint64 check_cache_invalidations = 0;

static void
RelationChanged(Datum arg pg_attribute_unused(), Oid relid)
{
	check_cache_invalidations++;
	for (int i = 0; i < CHECK_CACHE_SIZE; i++)
		if (relid == InvalidOid || check_cache[i].relid == relid)
			check_cache[i].valid = false;
}

static void
CatalogChanged(Datum arg pg_attribute_unused(), int cacheid pg_attribute_unused(),
			   uint32 hashvalue pg_attribute_unused())
{
	check_cache_invalidations++;
	for (int i = 0; i < CHECK_CACHE_SIZE; i++)
		check_cache[i].valid = false;
}

static void
RegisterCallbacks(void)
{
	if (check_cache_callbacks_registered)
		return;
	CacheRegisterRelcacheCallback(RelationChanged, (Datum) 0);
	CacheRegisterSyscacheCallback(PROCOID, CatalogChanged, (Datum) 0);
	CacheRegisterSyscacheCallback(TYPEOID, CatalogChanged, (Datum) 0);
	CacheRegisterSyscacheCallback(OPEROID, CatalogChanged, (Datum) 0);
	CacheRegisterSyscacheCallback(NAMESPACEOID, CatalogChanged, (Datum) 0);
	check_cache_callbacks_registered = true;
}

/* The entry of relid, else a free or stale one to reuse, else NULL. */
static CheckCacheEntry *
EntryFor(Oid relid)
{
	CheckCacheEntry *spare = NULL;

	for (int i = 0; i < CHECK_CACHE_SIZE; i++)
	{
		if (check_cache[i].relid == relid)
			return &check_cache[i];
		if (spare == NULL && (check_cache[i].relid == InvalidOid || !check_cache[i].valid))
			spare = &check_cache[i];
	}
	return spare;
}

/*
 * Plans the CHECK constraints of rel into e.  The planning is done in a
 * context of the call's, so an error leaves nothing behind; the trees are
 * then copied into a new context, and the one they replace is deleted,
 * which no call is reading (calls copy the trees before they use them).
 */
static void
PlanChecks(CheckCacheEntry *e, Relation rel)
{
	TupleConstr *constr = RelationGetDescr(rel)->constr;
	int			n = constr->num_check;
	uint64		invalidations = check_cache_invalidations;
	MemoryContext work;
	MemoryContext cxt;
	MemoryContext old;
	Expr	  **planned;
	Expr	  **trees;
	char	   *search_path;

	e->valid = false;
	work = AllocSetContextCreate(CurrentMemoryContext, "compay CHECK planning",
								 ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(work);
	planned = palloc(sizeof(Expr *) * n);
	for (int i = 0; i < n; i++)
		planned[i] = expression_planner(stringToNode(constr->check[i].ccbin));

	cxt = AllocSetContextCreate(work, "compay CHECK constraints", ALLOCSET_SMALL_SIZES);
	MemoryContextSwitchTo(cxt);
	trees = palloc(sizeof(Expr *) * n);
	for (int i = 0; i < n; i++)
		trees[i] = copyObject(planned[i]);
	search_path = pstrdup(namespace_search_path);
	MemoryContextSwitchTo(old);
	MemoryContextSetParent(cxt, CacheMemoryContext);
	MemoryContextDelete(work);

	if (e->cxt != NULL)
		MemoryContextDelete(e->cxt);
	e->cxt = cxt;
	e->trees = trees;
	e->relid = RelationGetRelid(rel);
	e->ncheck = n;
	e->user = GetUserId();
	e->search_path = search_path;
	/* Planning can take locks, and so take in invalidations: keep their mark. */
	e->valid = check_cache_invalidations == invalidations;
}

/* Whether e holds rel's constraints as planned for this check. */
static bool
Current(const CheckCacheEntry *e, Relation rel)
{
	return e->valid && e->relid == RelationGetRelid(rel) &&
		e->ncheck == RelationGetDescr(rel)->constr->num_check && e->user == GetUserId() &&
		strcmp(e->search_path, namespace_search_path) == 0;
}

/*
 * Builds rri's constraint expression states, as ExecRelCheck would, from
 * this backend's planned trees.  A table without CHECK constraints, or one
 * more than the cache holds, is left to ExecConstraints.
 */
static void
PrepareChecks(ResultRelInfo *rri, EState *estate)
{
	Relation	rel = rri->ri_RelationDesc;
	TupleConstr *constr = RelationGetDescr(rel)->constr;
	CheckCacheEntry *e;
	MemoryContext old;
	Expr	  **copies;
	ExprState **states;
	int			n;

	if (constr == NULL || constr->num_check == 0)
		return;
	RegisterCallbacks();
	e = EntryFor(RelationGetRelid(rel));
	if (e == NULL)
		return;
	if (!Current(e, rel))
		PlanChecks(e, rel);
	n = e->ncheck;
	old = MemoryContextSwitchTo(estate->es_query_cxt);
	/* All copied before any is built: building can run other code. */
	copies = palloc(sizeof(Expr *) * n);
	for (int i = 0; i < n; i++)
		copies[i] = copyObject(e->trees[i]);
	states = palloc(sizeof(ExprState *) * n);
	for (int i = 0; i < n; i++)
		states[i] = ExecInitExpr(copies[i], NULL);
	MemoryContextSwitchTo(old);
	rri->ri_ConstraintExprs = states;
}

/*
 * ExecConstraints, with rri's CHECK constraints prepared from the trees
 * this backend planned, the first time rri checks a row.
 */
void
CompayExecConstraints(ResultRelInfo *rri, TupleTableSlot *slot, EState *estate)
{
	if (rri->ri_ConstraintExprs == NULL)
		PrepareChecks(rri, estate);
	ExecConstraints(rri, slot, estate);
}
