// node-postgres and compay.credit (docs/clients.md): credit is read as a
// string (pg has no parser for its OID) and amounts are sent as strings or
// objects with toPostgres(); parameters are untyped, so a string amount is
// read by credit_in exactly as SQL text is.
'use strict';
const { Client } = require('pg');

let n = 0;
let failed = 0;
function ok(cond, name, diag) {
  n += 1;
  if (!cond) failed += 1;
  console.log(`${cond ? 'ok' : 'not ok'} ${n} - ${name}`);
  if (!cond && diag !== undefined) console.log(`# ${String(diag).split('\n').join('\n# ')}`);
}
function is(got, want, name) {
  ok(JSON.stringify(got) === JSON.stringify(want), name,
    `got:  ${JSON.stringify(got)}\nwant: ${JSON.stringify(want)}`);
}
async function raises(fn, states, name) {
  try {
    await fn();
    ok(false, name, 'no error');
  } catch (e) {
    ok(states.includes(e.code), `${name} (${e.code})`, e.message);
  }
}

// A decimal amount from a library such as decimal.js or big.js: pg sends
// what toPostgres() returns.
class Amount {
  constructor(digits) { this.digits = digits; }
  toPostgres() { return this.digits; }
}

async function main() {
  const db = new Client();
  await db.connect();
  const node = `node-${process.pid}`;
  const balance = async () =>
    (await db.query('SELECT balance FROM compay.accounts WHERE node_id = $1', [node])).rows[0].balance;
  try {
    const r = await db.query(
      "SELECT '1267650600228229401.496703205376'::compay.credit AS big, '0.000000000001'::compay.credit AS tiny");
    is([r.rows[0].big, r.rows[0].tiny], ['1267650600228229401.496703205376', '0.000000000001'],
      'reads 2^100 atomic units and one atomic unit as exact strings');
    const arr = await db.query("SELECT ARRAY['1.5', '-0.000000000001']::compay.credit[] AS a");
    is(arr.rows[0].a, '{1.5,-0.000000000001}', 'reads credit[] as its text (parse it with postgres-array)');

    await db.query('SELECT compay.deposit($1, $2)', [node, '1267650600228229401.496703205376']);
    await db.query('SELECT compay.deposit($1, $2)', [node, new Amount('0.000000000001')]);
    await db.query('SELECT compay.deposit($1, $2)', [node, 7n.toString()]);
    is(await balance(), '1267650600228229408.496703205377',
      'deposits a string, a toPostgres() object and a BigInt as string exactly');
    const sent = await db.query('SELECT $1::compay.credit::text AS t', ['1267650600228229401.496703205376']);
    is(sent.rows[0].t, '1267650600228229401.496703205376', '2^100 atomic units round-trip as a parameter');

    await raises(() => db.query('SELECT compay.deposit($1, $2)', [node, '1.0000000000001']),
      ['22P02'], '13 decimals are refused, not rounded');
    await raises(() => db.query('SELECT compay.deposit($1, $2)', [node, 0.1 + 0.2]),
      ['22P02'], 'a JS number with float noise (0.1 + 0.2) is refused');
    await raises(() => db.query('SELECT compay.deposit($1, $2::float8)', [node, '2.5']),
      ['42883'], 'a float8 amount is refused');
    is(await balance(), '1267650600228229408.496703205377', 'the refused calls wrote nothing');

    const ops = await db.query(
      `SELECT (balance + reserved)::text AS s, balance > '1' AS gt, sum(balance) OVER ()::text AS total
       FROM compay.accounts WHERE node_id = $1`, [node]);
    is(ops.rows[0], { s: '1267650600228229408.496703205377', gt: true, total: '1267650600228229408.496703205377' },
      '+, > and sum resolve from the database search_path');
  } catch (e) {
    ok(false, 'the test ran to its end', e.stack);
  } finally {
    await db.end();
  }
  console.log(`1..${n}`);
  process.exitCode = failed ? 1 : 0;
}

main();
