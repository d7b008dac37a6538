/*-------------------------------------------------------------------------
 *
 * compay_util.c
 *	  Helpers shared by every part of compay (declared in compay.h), and
 *	  compay.setting(), the way SQL reads a compay setting.
 *
 * compay.setting(name) is what the PL/pgSQL functions call instead of
 * current_setting(name).  It is a C function, so calling it loads this
 * library, whose _PG_init defines every compay.* setting: it works as the
 * first call of a session that has not loaded compay yet (no
 * shared_preload_libraries), where current_setting('compay.x') fails with
 * "unrecognized configuration parameter" unless postgresql.conf or ALTER
 * ... SET happened to give the setting a value.  The value is the one
 * current_setting() gives once the library is loaded: set in the session,
 * the role, the database or postgresql.conf, else the default defined in
 * C; no default is written twice.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/tableam.h"
#include "access/xact.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/numeric.h"
#include "utils/rel.h"

#include "compay.h"

PG_FUNCTION_INFO_V1(compay_setting);

/*
 * Locks the row version at *tid FOR UPDATE as the executor's LockRows node
 * does.  Under READ COMMITTED it locks the newest version, following the
 * update chain and waiting for a writer; under snapshot isolation it locks
 * the version itself, and a newer one is a serialization failure.  slot
 * receives the locked version and *tid becomes its TID.  Returns false when
 * wait is LockWaitSkip and another transaction holds the row.  what and id
 * name the row in an internal error (a row that vanished).
 */
bool
CompayLockRow(Relation rel, ItemPointer tid, Snapshot snapshot, TupleTableSlot *slot,
			  CommandId cid, LockWaitPolicy wait, const char *what, int64 id)
{
	bool		xact_snapshot = IsolationUsesXactSnapshot();
	TM_FailureData tmfd;
	TM_Result	result;

	result = table_tuple_lock(rel, tid, snapshot, slot, cid, LockTupleExclusive, wait,
							  xact_snapshot ? 0 : TUPLE_LOCK_FLAG_FIND_LAST_VERSION, &tmfd);
	if (result == TM_WouldBlock)
		return false;
	if ((result == TM_Updated || result == TM_Deleted) && xact_snapshot)
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("could not serialize access due to concurrent update")));
	if (result != TM_Ok)
		elog(ERROR, "could not lock %s " INT64_FORMAT " (%d)", what, id, (int) result);
	ItemPointerCopy(&slot->tts_tid, tid);
	return true;
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

/*
 * get_attnum() without the catalog: the writers of the hot paths look up
 * a few dozen columns a call, and a syscache probe by name costs more than
 * comparing the names of a table of a dozen columns.
 */
AttrNumber
CompayColumn(Relation rel, const char *column, bool missing_ok)
{
	TupleDesc	desc = RelationGetDescr(rel);

	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && strcmp(NameStr(att->attname), column) == 0)
			return att->attnum;
	}
	if (!missing_ok)
		elog(ERROR, "column %s of %s does not exist", column, RelationGetRelationName(rel));
	return InvalidAttrNumber;
}

/*
 * compay.setting(name text) RETURNS text: current_setting(name) for a
 * compay.* setting, with the library loaded.  Other names: 22023 (this is
 * not a general reader); a compay.* name the library does not define:
 * 42704, as current_setting.  Reading a superuser-only setting needs what
 * current_setting needs (pg_read_all_settings).
 */
Datum
compay_setting(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));

	if (strncmp(name, "compay.", 7) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" is not a compay setting", CompayEchoInput(name)),
				 errdetail("compay.setting() reads only the settings whose names begin with \"compay.\"."),
				 errhint("Read other settings with current_setting().")));
	PG_RETURN_TEXT_P(cstring_to_text(GetConfigOptionByName(name, NULL, false)));
}
