/*-------------------------------------------------------------------------
 *
 * node_roles.c
 *	  Per-node authorization: the one place that decides whether the
 *	  calling role may act for a node.
 *
 * The money functions are SECURITY DEFINER, so inside them the current
 * user is the extension's owner.  The caller is the session's role, as
 * SET ROLE left it (GetOuterUserId()).  Inside a security-restricted
 * operation (an index expression, a materialized view refresh, VACUUM,
 * ANALYZE) the code runs as another role than the session's, so the
 * caller cannot be told: the check then refuses, whatever the session's
 * role.
 *
 * Trusted roles (superusers, members of compay_app; of compay_reader to
 * read) act for every node.  Any other role acts for the nodes that
 * compay.node_roles maps it (or a role it has the privileges of) to.
 *
 * Every function that writes asks here first (NodeRequire with write, or
 * NodeRefuseReadOnly from LedgerBegin), so a write in a read-only
 * transaction (every transaction of a hot standby) is refused with
 * PostgreSQL's read-only error, 25006, before anything is looked up.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"

#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"

#include "compay.h"
#include "node_roles.h"
#include "spi_util.h"

PG_FUNCTION_INFO_V1(compay_require_node);

static SpiStatement mapped_stmt = {
	.sql = "SELECT 1 FROM compay.node_roles n "
	"JOIN pg_catalog.pg_roles r ON r.rolname = n.role_name "
	"WHERE n.node_id = $1 AND pg_catalog.pg_has_role($2, r.oid, 'USAGE') LIMIT 1",
	.nargs = 2,
	.argtypes = {TEXTOID, OIDOID}
};

static void
RefuseRestricted(void)
{
	if (InSecurityRestrictedOperation())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("compay cannot act for a role inside a security-restricted operation"),
				 errdetail("Index expressions, materialized view refreshes, VACUUM and ANALYZE run as another role than the session's, so the caller cannot be told."),
				 errhint("Call compay's functions from a plain statement.")));
}

/* Whether role is a superuser or has the privileges of role_name. */
static bool
RoleHas(Oid role, const char *role_name)
{
	Oid			trusted;

	if (superuser_arg(role))
		return true;
	trusted = get_role_oid(role_name, true);
	return OidIsValid(trusted) && has_privs_of_role(role, trusted);
}

static bool
NodeMapped(Oid role, const char *node_id)
{
	Datum		args[2];
	uint64		n;

	args[0] = CStringGetTextDatum(node_id);
	args[1] = ObjectIdGetDatum(role);
	SPI_connect();
	n = SpiRun(&mapped_stmt, args, NULL, true, 1);
	SPI_finish();
	return n > 0;
}

/*
 * A write on a hot standby would fail deep inside with "cannot assign
 * TransactionIds during recovery" (XX000); refuse it up front instead.
 */
void
NodeRefuseReadOnly(void)
{
	if (!XactReadOnly)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
			 errmsg("cannot run a compay write in a read-only transaction"),
			 RecoveryInProgress()
			 ? errdetail("This server is a hot standby: compay writes only on the primary.")
			 : errdetail("The transaction is read-only."),
			 errhint("Connect to the primary, for example with target_session_attrs=read-write in a multi-host connection string.")));
}

void
NodeRequire(const char *node_id, bool write)
{
	Oid			role;

	RefuseRestricted();
	if (write)
		NodeRefuseReadOnly();
	role = GetOuterUserId();
	if (RoleHas(role, write ? "compay_app" : "compay_reader"))
		return;
	if (node_id == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\" may not act for every node",
						GetUserNameFromId(role, false)),
				 errdetail("This call acts for no one node: it is for members of %s and superusers.",
						   write ? "compay_app" : "compay_reader"),
				 errhint("docs/operations.md lists what a node role (compay_node) may call.")));
	if (!NodeMapped(role, node_id))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\" may not act for node \"%s\"",
						GetUserNameFromId(role, false), CompayEchoInput(node_id)),
				 errdetail("Members of %s and superusers act for every node; other roles only for the nodes compay.node_roles maps them to.",
						   write ? "compay_app" : "compay_reader"),
				 errhint("A compay_admin maps a role to a node with compay.add_node_role().")));
}

bool
NodeCallerIsAdmin(void)
{
	RefuseRestricted();
	return RoleHas(GetOuterUserId(), "compay_admin");
}

char *
NodeKeyScope(void)
{
	Oid			role = GetOuterUserId();

	if (RoleHas(role, "compay_app"))
		return NULL;
	return psprintf("node:%u:", role);
}

char *
NodeCallerName(void)
{
	return GetUserNameFromId(GetOuterUserId(), false);
}

/*
 * compay.require_node(node_id, write): NodeRequire for the PL/pgSQL and
 * SQL functions.  A NULL node_id asks for a role that acts for every node.
 */
Datum
compay_require_node(PG_FUNCTION_ARGS)
{
	NodeRequire(PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0)),
				PG_ARGISNULL(1) ? true : PG_GETARG_BOOL(1));
	PG_RETURN_VOID();
}
