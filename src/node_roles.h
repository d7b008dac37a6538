/*-------------------------------------------------------------------------
 *
 * node_roles.h
 *	  Who may act for a node: the one check every money function makes.
 *
 *-------------------------------------------------------------------------
 */
#ifndef COMPAY_NODE_ROLES_H
#define COMPAY_NODE_ROLES_H

/*
 * 42501 unless the caller may act for node_id: to write (write) or to
 * read.  Members of compay_app (compay_reader to read) and superusers act
 * for every node; any other role only for the nodes compay.node_roles maps
 * it to.  node_id NULL: only the roles that act for every node pass.
 */
extern void NodeRequire(const char *node_id, bool write);

/*
 * 25006 in a read-only transaction (every transaction on a hot standby):
 * what every function that writes calls before any work.  NodeRequire
 * calls it when write is set.
 */
extern void NodeRefuseReadOnly(void);

/* Whether the caller is a superuser or a member of compay_admin. */
extern bool NodeCallerIsAdmin(void);

/*
 * The prefix that keeps a node role's idempotency keys apart from every
 * other caller's ("node:<role oid>:"), or NULL for a role that acts for
 * every node (its keys are the application's, unprefixed).
 */
extern char *NodeKeyScope(void);

/* The caller's role name, for journals. */
extern char *NodeCallerName(void);

#endif							/* COMPAY_NODE_ROLES_H */
