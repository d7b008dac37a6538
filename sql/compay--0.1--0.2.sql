-- compay 0.1 -> 0.2: ALTER EXTENSION compay UPDATE TO '0.2'.
-- Every change of 0.2 to what 0.1 created; a fresh 0.2 install
-- (src/*.sql) and a 0.1 database updated by this script give the same
-- database (test/t/012_upgrade.pl compares them from the catalogs).

\echo Use "ALTER EXTENSION compay UPDATE TO '0.2'" to load this file. \quit
