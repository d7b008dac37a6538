/*-------------------------------------------------------------------------
 *
 * wallet_rpc.c
 *	  The monero-wallet-rpc JSON-RPC client: libcurl, digest authentication,
 *	  connect and total timeouts, a cap on the reply size.  The one file
 *	  that includes <curl/curl.h>.
 *
 * A call is a success only when the transfer worked, the HTTP status is
 * 200, the body is JSON, and it has a "result" and no "error" member (the
 * wallet answers some failures with {"code":0,"message":""}, so the
 * presence of "error" decides, not its code).  Failures come back as a
 * WalletRpcStatus for the caller to report; nothing here raises an error
 * while a curl handle is live except out of memory, which PostgreSQL
 * reports by longjmp after the handle is cleaned up by the PG_FINALLY.
 *
 * Amounts stay integers: the reply is parsed by PostgreSQL's jsonb input,
 * which keeps numbers as numeric, never double.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include <curl/curl.h>

#include "common/jsonapi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "compay.h"
#include "wallet_rpc.h"

PG_FUNCTION_INFO_V1(compay_wallet_rpc);
PG_FUNCTION_INFO_V1(compay_daemon_rpc);

static char *wallet_rpc_url = NULL;
static char *wallet_rpc_user = NULL;
static char *wallet_rpc_password_file = NULL;
static char *daemon_rpc_url = NULL;
static int	wallet_rpc_connect_timeout_ms = 2000;
static int	wallet_rpc_timeout_s = 120;
static int	wallet_rpc_reply_max_kb = 4096;

static bool curl_ready = false;

/* The last failed call of this process (wallet or daemon), for the health fields. */
#define LAST_ERROR_LEN 512
static char last_error[LAST_ERROR_LEN];
static TimestampTz last_error_at = 0;

/* Calls made by this process, wallet and daemon. */
static uint64 calls_made = 0;

/* The reply body, capped; the callback never ereports. */
typedef struct ReplyBuffer
{
	char	   *data;
	size_t		len;
	size_t		cap;
	size_t		max;
	bool		too_big;
} ReplyBuffer;

void
WalletRpcInit(void)
{
	DefineCustomStringVariable("compay.wallet_rpc_url",
							   "Base URL of the treasury's monero-wallet-rpc (http or https).",
							   "JSON-RPC calls go to URL/json_rpc; a URL that already ends in /json_rpc is taken as it is.",
							   &wallet_rpc_url, "http://127.0.0.1:18083", PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("compay.wallet_rpc_user",
							   "User name of the wallet RPC's digest login; empty for none.",
							   NULL, &wallet_rpc_user, "", PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("compay.wallet_rpc_password_file",
							   "File holding the wallet RPC's password (first line).",
							   "Read by the server at each call; keep it readable only by the server's user.",
							   &wallet_rpc_password_file, "", PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("compay.daemon_rpc_url",
							   "Base URL of the monerod RPC the wallet uses; empty for none.",
							   "Payouts ask it by tx hash (/get_transactions, /is_key_image_spent) before taking anything for not sent; without it a payout whose relay fails stays built.",
							   &daemon_rpc_url, "", PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomIntVariable("compay.wallet_rpc_connect_timeout",
							"Time allowed to connect to the wallet RPC.",
							NULL, &wallet_rpc_connect_timeout_ms, 2000, 100, 60000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("compay.wallet_rpc_timeout",
							"Time allowed for a whole wallet RPC call.",
							NULL, &wallet_rpc_timeout_s, 120, 1, 3600,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("compay.wallet_rpc_reply_max",
							"Largest wallet RPC reply accepted.",
							NULL, &wallet_rpc_reply_max_kb, 4096, 16, 1024 * 1024,
							PGC_SIGHUP, GUC_UNIT_KB, NULL, NULL, NULL);
}

static size_t
WriteReply(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	ReplyBuffer *buf = (ReplyBuffer *) userdata;
	size_t		n = size * nmemb;

	if (buf->len + n > buf->max)
	{
		buf->too_big = true;
		return 0;				/* makes curl stop with CURLE_WRITE_ERROR */
	}
	if (buf->len + n + 1 > buf->cap)
	{
		size_t		cap = Max(buf->cap * 2, buf->len + n + 1);
		char	   *data = realloc(buf->data, cap);

		if (data == NULL)
			return 0;
		buf->data = data;
		buf->cap = cap;
	}
	memcpy(buf->data + buf->len, ptr, n);
	buf->len += n;
	buf->data[buf->len] = '\0';
	return n;
}

/* The first line of the password file; NULL (and *error) if unreadable. */
static char *
ReadPassword(char **error)
{
	FILE	   *f;
	char		line[1024];

	if (wallet_rpc_password_file == NULL || wallet_rpc_password_file[0] == '\0')
		return pstrdup("");
	f = AllocateFile(wallet_rpc_password_file, "r");
	if (f == NULL)
	{
		int			save_errno = errno;

		/*
		 * The path goes to the server log only (never to a client, whatever
		 * its client_min_messages): the error a caller sees may reach a
		 * non-superuser through compay.deposit_address().
		 */
		ereport(LOG_SERVER_ONLY,
				(errmsg("compay: cannot read compay.wallet_rpc_password_file \"%s\": %s",
						wallet_rpc_password_file, strerror(save_errno))));
		*error = psprintf("cannot read compay.wallet_rpc_password_file: %s",
						  strerror(save_errno));
		return NULL;
	}
	if (fgets(line, sizeof(line), f) == NULL)
		line[0] = '\0';
	FreeFile(f);
	line[strcspn(line, "\r\n")] = '\0';
	return pstrdup(line);
}

/* Classifies a finished transfer into out; true if the body is worth parsing. */
static bool
CheckTransfer(CURLcode rc, long http_status, ReplyBuffer *reply, WalletRpcResult *out)
{
	out->http_status = http_status;
	out->curl_code = (int) rc;
	if (reply->too_big)
	{
		out->status = WALLET_RPC_BAD_REPLY;
		out->error = psprintf("the reply exceeds compay.wallet_rpc_reply_max (%d kB)",
							  wallet_rpc_reply_max_kb);
		return false;
	}
	if (rc != CURLE_OK)
	{
		if (rc == CURLE_OPERATION_TIMEDOUT)
			out->status = WALLET_RPC_TIMEOUT;
		else if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
				 rc == CURLE_URL_MALFORMAT || rc == CURLE_UNSUPPORTED_PROTOCOL)
			out->status = WALLET_RPC_UNREACHABLE;
		else
			out->status = WALLET_RPC_NO_REPLY;
		out->error = psprintf("%s", curl_easy_strerror(rc));
		return false;
	}
	if (http_status != 200)
	{
		out->status = http_status == 401 ? WALLET_RPC_UNAUTHORIZED : WALLET_RPC_BAD_REPLY;
		out->error = psprintf("HTTP status %ld", http_status);
		return false;
	}
	return true;
}

/* The body as jsonb if it is a JSON object, else NULL. */
static Jsonb *
ParseObject(const char *body)
{
	Jsonb	   *reply;
	JsonLexContext *lex;

	/* Check the syntax first: jsonb_in would raise an error on bad JSON. */
	lex = makeJsonLexContextCstringLen((char *) body, strlen(body),
									   GetDatabaseEncoding(), true);
	if (pg_parse_json(lex, &nullSemAction) != JSON_SUCCESS)
		return NULL;
	reply = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(body)));
	return JB_ROOT_IS_OBJECT(reply) ? reply : NULL;
}

/* Parses the body: a JSON object with "result" and without "error". */
static void
ParseReply(const char *body, WalletRpcResult *out)
{
	Jsonb	   *reply = ParseObject(body);
	JsonbValue *v;

	if (reply == NULL)
	{
		out->status = WALLET_RPC_BAD_REPLY;
		out->error = pstrdup("the reply is not a JSON object");
		return;
	}
	v = getKeyJsonValueFromContainer(&reply->root, "error", 5, NULL);
	if (v != NULL)
	{
		out->status = WALLET_RPC_ERROR;
		out->error_object = JsonbValueToJsonb(v);
		out->error = JsonbToCString(NULL, &out->error_object->root, VARSIZE(out->error_object));
		return;
	}
	v = getKeyJsonValueFromContainer(&reply->root, "result", 6, NULL);
	if (v == NULL)
	{
		out->status = WALLET_RPC_BAD_REPLY;
		out->error = pstrdup("the reply has neither result nor error");
		return;
	}
	out->status = WALLET_RPC_OK;
	out->result = JsonbValueToJsonb(v);
}

/*
 * Runs the transfer of curl to its end through a multi handle, so that
 * the wait is ours, not libcurl's: every WALLET_RPC_POLL_MS it takes the
 * server's interrupts (CHECK_FOR_INTERRUPTS: a cancel, statement_timeout
 * or, in the worker, SIGTERM ends the call at once by an error, and the
 * caller's PG_FINALLY frees the handles) and runs the wait hook (the
 * worker's ledger steps).  Neither happens inside a libcurl callback.
 */
#define WALLET_RPC_POLL_MS 100

static WalletRpcWaitHook wait_hook = NULL;
static bool in_wait_hook = false;

void
WalletRpcSetWaitHook(WalletRpcWaitHook hook)
{
	wait_hook = hook;
}

static CURLcode
PerformInterruptibly(CURLM *multi, CURL *curl)
{
	CURLcode	rc = CURLE_OK;
	int			running = 1;

	if (curl_multi_add_handle(multi, curl) != CURLM_OK)
		return CURLE_FAILED_INIT;
	for (;;)
	{
		CURLMsg    *msg;
		int			left;

		if (curl_multi_perform(multi, &running) != CURLM_OK)
		{
			rc = CURLE_FAILED_INIT;
			break;
		}
		if (running == 0)
		{
			rc = CURLE_FAILED_INIT;
			while ((msg = curl_multi_info_read(multi, &left)) != NULL)
				if (msg->msg == CURLMSG_DONE && msg->easy_handle == curl)
					rc = msg->data.result;
			break;
		}
		CHECK_FOR_INTERRUPTS();
		if (wait_hook != NULL && !in_wait_hook)
		{
			in_wait_hook = true;
			PG_TRY();
			{
				wait_hook();
			}
			PG_FINALLY();
			{
				in_wait_hook = false;
			}
			PG_END_TRY();
		}
		if (curl_multi_poll(multi, NULL, 0, WALLET_RPC_POLL_MS, NULL) != CURLM_OK)
		{
			rc = CURLE_FAILED_INIT;
			break;
		}
	}
	curl_multi_remove_handle(multi, curl);
	return rc;
}

/*
 * POSTs body (JSON) to url, with the wallet's digest login when login is
 * set; fills out->status (and error) for a transport failure and returns
 * the body, or NULL.  Never called with a ledger lock held or, from the
 * worker, inside a transaction (docs/design.md, "Payouts").  A reply is
 * taken only whole, within compay.wallet_rpc_reply_max, and valid in the
 * database encoding, so no string of it can be stored unreadable.
 */
static char *
HttpPostJson(const char *url, const char *body, size_t body_len, bool login,
			 WalletRpcResult *out)
{
	CURL	   *volatile curl = NULL;
	CURLM	   *volatile multi = NULL;
	struct curl_slist *volatile headers = NULL;
	ReplyBuffer reply = {0};
	char	   *volatile password = NULL;
	char	   *volatile text = NULL;
	CURLcode	rc;
	long		http_status = 0;
	long		connects = 0;

	if (!curl_ready)
	{
		if (curl_global_init(CURL_GLOBAL_ALL) != 0)
			elog(ERROR, "curl_global_init failed");
		curl_ready = true;
	}
	if (login && wallet_rpc_user[0] != '\0')
	{
		password = ReadPassword(&out->error);
		if (password == NULL)
		{
			out->status = WALLET_RPC_UNAUTHORIZED;
			return NULL;
		}
	}
	reply.max = (size_t) wallet_rpc_reply_max_kb * 1024;

	PG_TRY();
	{
		curl = curl_easy_init();
		multi = curl_multi_init();
		if (curl == NULL || multi == NULL)
			elog(ERROR, "curl_easy_init failed");
		headers = curl_slist_append(NULL, "Content-Type: application/json");
		curl_easy_setopt(curl, CURLOPT_URL, url);
		curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
		curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, (long) wallet_rpc_connect_timeout_ms);
		curl_easy_setopt(curl, CURLOPT_TIMEOUT, (long) wallet_rpc_timeout_s);
		curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
		curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long) body_len);
		curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, WriteReply);
		curl_easy_setopt(curl, CURLOPT_WRITEDATA, &reply);
		if (password != NULL)
		{
			curl_easy_setopt(curl, CURLOPT_HTTPAUTH, (long) CURLAUTH_DIGEST);
			curl_easy_setopt(curl, CURLOPT_USERNAME, wallet_rpc_user);
			curl_easy_setopt(curl, CURLOPT_PASSWORD, password);
		}
		rc = PerformInterruptibly(multi, curl);
		curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &http_status);
		curl_easy_getinfo(curl, CURLINFO_NUM_CONNECTS, &connects);
		if (CheckTransfer(rc, http_status, &reply, out))
		{
			const char *data = reply.data ? reply.data : "";

			if (!pg_verify_mbstr(GetDatabaseEncoding(), data, (int) reply.len, true) ||
				strlen(data) != reply.len)
			{
				out->status = WALLET_RPC_BAD_REPLY;
				out->error = psprintf("the reply is not valid %s text",
									  GetDatabaseEncodingName());
			}
			else
				text = pstrdup(data);
		}
	}
	PG_FINALLY();
	{
		if (headers)
			curl_slist_free_all(headers);
		/* libcurl's order: detach (a no-op if detached), easy, then multi. */
		if (multi && curl)
			curl_multi_remove_handle(multi, curl);
		if (curl)
			curl_easy_cleanup(curl);
		if (multi)
			curl_multi_cleanup(multi);
		free(reply.data);
		if (password)
			explicit_bzero(password, strlen(password));
	}
	PG_END_TRY();
	/* One connection serves the login's 401 and the request itself. */
	if (connects > 1)
		ereport(LOG_SERVER_ONLY,
				(errmsg("compay: the HTTP client sent a request to %s again on a new connection", url),
				 errdetail("A reused connection closed before the reply; the request may have run twice.")));
	return text;
}

static bool
IsHttpUrl(const char *url)
{
	return strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0;
}

/*
 * The JSON-RPC endpoint of compay.wallet_rpc_url: URL/json_rpc, or the URL
 * itself when it already ends in /json_rpc (as the Monero docs write it);
 * trailing slashes do not matter.
 */
static char *
WalletRpcEndpoint(void)
{
	size_t		len = strlen(wallet_rpc_url);

	while (len > 0 && wallet_rpc_url[len - 1] == '/')
		len--;
	if (len >= 9 && strncmp(wallet_rpc_url + len - 9, "/json_rpc", 9) == 0)
		len -= 9;
	while (len > 0 && wallet_rpc_url[len - 1] == '/')
		len--;
	return psprintf("%.*s/json_rpc", (int) len, wallet_rpc_url);
}

/* Keeps what a failed call says, for WalletRpcLastError. */
static void
NoteFailure(const char *what, WalletRpcResult *out)
{
	if (out->status == WALLET_RPC_OK)
		return;
	snprintf(last_error, LAST_ERROR_LEN, "%s: %s: %s", what, WalletRpcStatusName(out->status),
			 out->error ? out->error : "");
	last_error_at = GetCurrentTimestamp();
}

/*
 * The last failed wallet or daemon call of this process since
 * WalletRpcClearLastError ("method: status: why") and when it failed; NULL
 * if none.
 */
const char *
WalletRpcLastError(TimestampTz *at)
{
	*at = last_error_at;
	return last_error_at == 0 ? NULL : last_error;
}

/* How many wallet and daemon calls this process has made. */
uint64
WalletRpcCallCount(void)
{
	return calls_made;
}

void
WalletRpcClearLastError(void)
{
	last_error[0] = '\0';
	last_error_at = 0;
}

static void
WalletRpcCallOnce(const char *method, const char *params, WalletRpcResult *out)
{
	StringInfoData request;
	char	   *body;

	memset(out, 0, sizeof(*out));
	if (!IsHttpUrl(wallet_rpc_url))
	{
		out->status = WALLET_RPC_UNREACHABLE;
		out->error = pstrdup("compay.wallet_rpc_url is not an http or https URL");
		return;
	}
	initStringInfo(&request);
	appendStringInfo(&request, "{\"jsonrpc\":\"2.0\",\"id\":\"0\",\"method\":");
	escape_json(&request, method);
	appendStringInfo(&request, ",\"params\":%s}", params ? params : "{}");
	body = HttpPostJson(WalletRpcEndpoint(), request.data, request.len, true, out);
	if (body != NULL)
		ParseReply(body, out);
}

/* Calls method with params (JSON text of an object) on the wallet RPC. */
void
WalletRpcCall(const char *method, const char *params, WalletRpcResult *out)
{
	calls_made++;
	WalletRpcCallOnce(method, params, out);
	NoteFailure(method, out);
}

/*
 * Whether compay.daemon_rpc_url is set: the payout code then also asks the
 * daemon, by tx hash, before it takes anything for "not sent".
 */
bool
DaemonRpcConfigured(void)
{
	return daemon_rpc_url != NULL && daemon_rpc_url[0] != '\0';
}

/*
 * POSTs params to one of monerod's other (non-JSON-RPC) endpoints, such as
 * /get_transactions; OK when the reply is an object whose "status" is
 * "OK", and then result is the whole reply.
 */
static void
DaemonRpcCallOnce(const char *path, const char *params, WalletRpcResult *out)
{
	char	   *body;
	Jsonb	   *reply;
	JsonbValue *v;

	memset(out, 0, sizeof(*out));
	if (!DaemonRpcConfigured() || !IsHttpUrl(daemon_rpc_url))
	{
		out->status = WALLET_RPC_UNREACHABLE;
		out->error = pstrdup("compay.daemon_rpc_url is not an http or https URL");
		return;
	}
	body = HttpPostJson(psprintf("%s%s", daemon_rpc_url, path), params, strlen(params),
						false, out);
	if (body == NULL)
		return;
	reply = ParseObject(body);
	if (reply == NULL)
	{
		out->status = WALLET_RPC_BAD_REPLY;
		out->error = pstrdup("the reply is not a JSON object");
		return;
	}
	v = getKeyJsonValueFromContainer(&reply->root, "status", 6, NULL);
	if (v == NULL || v->type != jbvString || v->val.string.len != 2 ||
		strncmp(v->val.string.val, "OK", 2) != 0)
	{
		out->status = WALLET_RPC_ERROR;
		out->error = psprintf("the daemon answered %s",
							  JsonbToCString(NULL, &reply->root, VARSIZE(reply)));
		return;
	}
	out->status = WALLET_RPC_OK;
	out->result = reply;
}

void
DaemonRpcCall(const char *path, const char *params, WalletRpcResult *out)
{
	calls_made++;
	DaemonRpcCallOnce(path, params, out);
	NoteFailure(psprintf("daemon %s", path), out);
}

const char *
WalletRpcStatusName(WalletRpcStatus status)
{
	switch (status)
	{
		case WALLET_RPC_OK:
			return "ok";
		case WALLET_RPC_UNREACHABLE:
			return "unreachable";
		case WALLET_RPC_TIMEOUT:
			return "timeout";
		case WALLET_RPC_NO_REPLY:
			return "no reply";
		case WALLET_RPC_UNAUTHORIZED:
			return "unauthorized";
		case WALLET_RPC_BAD_REPLY:
			return "bad reply";
		case WALLET_RPC_ERROR:
			return "wallet error";
	}
	return "unknown";
}

/*
 * The wallet methods that create and send a transaction.  libcurl sends a
 * request again, by itself, when a reused connection closes before any of
 * the reply arrives (and the digest login's request always goes on a
 * reused connection), so a call can run twice in the wallet; such a call
 * must not send money.  compay.wallet_rpc() therefore takes them only with
 * do_not_relay: the transaction is then relayed by relay_tx, which sends
 * the same transaction again or nothing: the payout code's way.
 */
static void
RefuseSending(const char *method, Jsonb *params)
{
	static const char *const sending[] = {
		"transfer", "transfer_split", "sweep_all", "sweep_single", "sweep_dust",
		"sweep_unmixable"
	};
	JsonbValue *v = NULL;

	for (int i = 0; i < (int) lengthof(sending); i++)
	{
		if (strcmp(method, sending[i]) != 0)
			continue;
		if (params != NULL)
			v = getKeyJsonValueFromContainer(&params->root, "do_not_relay", 12, NULL);
		if (v != NULL && v->type == jbvBool && v->val.boolean)
			return;
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("compay.wallet_rpc() sends no money: %s needs \"do_not_relay\": true", method),
				 errdetail("A request whose reply is lost can reach the wallet twice."),
				 errhint("Build with do_not_relay and get_tx_metadata, then relay the metadata with relay_tx, which cannot send twice; payouts do this by themselves.")));
	}
}

/*
 * compay.wallet_rpc(method, params jsonb DEFAULT '{}') -> jsonb: one call,
 * for operators and tests (superuser only).  It runs inside the caller's
 * transaction, so it must not be used while ledger locks are held; the
 * payout code calls WalletRpcCall outside any transaction.
 */
Datum
compay_wallet_rpc(PG_FUNCTION_ARGS)
{
	WalletRpcResult r;
	char	   *params = "{}";

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("method must not be NULL")));
	if (!PG_ARGISNULL(1))
	{
		Jsonb	   *p = PG_GETARG_JSONB_P(1);

		if (!JB_ROOT_IS_OBJECT(p))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("wallet RPC params must be a JSON object")));
		params = JsonbToCString(NULL, &p->root, VARSIZE(p));
	}
	RefuseSending(text_to_cstring(PG_GETARG_TEXT_PP(0)),
				  PG_ARGISNULL(1) ? NULL : PG_GETARG_JSONB_P(1));
	WalletRpcCall(text_to_cstring(PG_GETARG_TEXT_PP(0)), params, &r);
	if (r.status == WALLET_RPC_ERROR)
		ereport(ERROR,
				(errcode(ERRCODE_COMPAY_WALLET_ERROR),
				 errmsg("the wallet refused %s", text_to_cstring(PG_GETARG_TEXT_PP(0))),
				 errdetail("The wallet answered %s.", r.error)));
	if (r.status != WALLET_RPC_OK)
		ereport(ERROR,
				(errcode(ERRCODE_COMPAY_WALLET_UNAVAILABLE),
				 errmsg("wallet RPC %s: %s", WalletRpcStatusName(r.status), r.error),
				 errhint("Check compay.wallet_rpc_url, the login and that monero-wallet-rpc is running.")));
	PG_RETURN_JSONB_P(r.result);
}

/*
 * The daemon endpoints compay.daemon_rpc() takes: read-only ones, so that
 * the call cannot change the daemon (no /send_raw_transaction, no mining).
 */
static void
RefuseDaemonPath(const char *path)
{
	static const char *const reading[] = {
		"/get_height", "/get_info", "/get_transactions", "/get_transaction_pool_hashes",
		"/is_key_image_spent"
	};

	for (int i = 0; i < (int) lengthof(reading); i++)
		if (strcmp(path, reading[i]) == 0)
			return;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("compay.daemon_rpc() does not call %s", path),
			 errdetail("It calls the daemon's read-only endpoints only."),
			 errhint("Use /get_height, /get_info, /get_transactions, /get_transaction_pool_hashes or /is_key_image_spent.")));
}

/*
 * compay.daemon_rpc(path, params jsonb DEFAULT '{}') -> jsonb: one call to
 * a read-only endpoint of compay.daemon_rpc_url, the whole reply (superuser
 * only; the wallet tools and compay.diagnose() use it).  As
 * compay.wallet_rpc(), not inside a transaction that holds ledger locks.
 */
Datum
compay_daemon_rpc(PG_FUNCTION_ARGS)
{
	WalletRpcResult r;
	char	   *path;
	char	   *params = "{}";

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("path must not be NULL")));
	path = text_to_cstring(PG_GETARG_TEXT_PP(0));
	RefuseDaemonPath(path);
	if (!PG_ARGISNULL(1))
	{
		Jsonb	   *p = PG_GETARG_JSONB_P(1);

		if (!JB_ROOT_IS_OBJECT(p))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("daemon RPC params must be a JSON object")));
		params = JsonbToCString(NULL, &p->root, VARSIZE(p));
	}
	if (!DaemonRpcConfigured())
		ereport(ERROR,
				(errcode(ERRCODE_COMPAY_WALLET_UNAVAILABLE),
				 errmsg("compay.daemon_rpc_url is not set"),
				 errhint("Set compay.daemon_rpc_url to the monerod RPC the wallet uses.")));
	DaemonRpcCall(path, params, &r);
	if (r.status == WALLET_RPC_ERROR)
		ereport(ERROR,
				(errcode(ERRCODE_COMPAY_WALLET_ERROR),
				 errmsg("the daemon refused %s", path),
				 errdetail("%s.", r.error)));
	if (r.status != WALLET_RPC_OK)
		ereport(ERROR,
				(errcode(ERRCODE_COMPAY_WALLET_UNAVAILABLE),
				 errmsg("daemon RPC %s: %s", WalletRpcStatusName(r.status), r.error),
				 errhint("Check compay.daemon_rpc_url and that monerod is running.")));
	PG_RETURN_JSONB_P(r.result);
}
