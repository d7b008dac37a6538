// A consumer of compay's events with node-postgres (docs/clients.md), for
// test/t/062_events_listen.pl: LISTEN compay_events first, then read what
// was published after LAST_ID with compay.events_since (the backlog), then
// every notification, skipping ids already seen.  Prints one JSON line per
// event ({"id", "kind", "at", "payload", "via"}, via "backlog" or
// "notify") and "listening" once ready.  Connection from the PG*
// environment variables.
//
//   node node_events.js [LAST_ID]
'use strict';
const { Client } = require('pg');

async function main() {
  let lastId = BigInt(process.argv[2] || '0');
  const db = new Client();
  const print = (event, via) => {
    const id = BigInt(event.id);
    if (id <= lastId) return; // already read from the backlog
    lastId = id;
    process.stdout.write(`${JSON.stringify({ ...event, via })}\n`);
  };
  const queued = [];
  let ready = false;
  db.on('notification', (msg) => {
    const event = JSON.parse(msg.payload);
    if (ready) print(event, 'notify');
    else queued.push(event);
  });
  await db.connect();
  // LISTEN before reading the backlog: an event published in between is
  // both in the backlog and notified, never in neither.
  await db.query('LISTEN compay_events');
  for (;;) {
    const res = await db.query(
      'SELECT id::text, kind, at, payload FROM compay.events_since($1, 1000)',
      [lastId.toString()]);
    for (const row of res.rows) print(row, 'backlog');
    if (res.rows.length < 1000) break;
  }
  ready = true;
  for (const event of queued) print(event, 'notify');
  process.stdout.write('listening\n');
  const stop = () => db.end().then(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.stdin.on('end', stop);
  process.stdin.resume();
}

main().catch((e) => {
  process.stderr.write(`${e.code || ''} ${e.message}\n`);
  process.exit(1);
});
