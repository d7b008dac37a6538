/*-------------------------------------------------------------------------
 *
 * wallet_rpc.h
 *	  The monero-wallet-rpc JSON-RPC client (src/wallet_rpc.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef COMPAY_WALLET_RPC_H
#define COMPAY_WALLET_RPC_H

#include "datatype/timestamp.h"
#include "utils/jsonb.h"

#include "compay.h"

typedef enum WalletRpcStatus
{
	WALLET_RPC_OK,
	WALLET_RPC_UNREACHABLE,		/* no connection: nothing was sent */
	WALLET_RPC_TIMEOUT,			/* sent, no reply in time: outcome unknown */
	WALLET_RPC_NO_REPLY,		/* sent, connection lost before a whole
								 * reply: outcome unknown */
	WALLET_RPC_UNAUTHORIZED,	/* HTTP 401, or no password */
	WALLET_RPC_BAD_REPLY,		/* other HTTP status, not JSON, too big */
	WALLET_RPC_ERROR			/* the wallet answered with an error member */
} WalletRpcStatus;

typedef struct WalletRpcResult
{
	WalletRpcStatus status;
	long		http_status;
	int			curl_code;
	char	   *error;			/* why, when status is not OK */
	Jsonb	   *error_object;	/* the wallet's error member, if any */
	Jsonb	   *result;			/* the result member, when OK */
} WalletRpcResult;

/* Run every ~100 ms while a wallet call waits (the worker's ledger steps). */
typedef void (*WalletRpcWaitHook) (void);

extern void WalletRpcInit(void);
extern void WalletRpcSetWaitHook(WalletRpcWaitHook hook);
extern void WalletRpcCall(const char *method, const char *params, WalletRpcResult *out);
extern bool DaemonRpcConfigured(void);
extern void DaemonRpcCall(const char *path, const char *params, WalletRpcResult *out);
extern const char *WalletRpcStatusName(WalletRpcStatus status);
extern const char *WalletRpcLastError(TimestampTz *at);
extern void WalletRpcClearLastError(void);
extern uint64 WalletRpcCallCount(void);

#endif							/* COMPAY_WALLET_RPC_H */
