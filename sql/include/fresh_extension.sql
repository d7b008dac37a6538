-- Included (\i sql/include/fresh_extension.sql, from the folder make installcheck
-- runs in) by the regression tests that start from a fresh compay.
SET search_path = public, compay;
SET client_min_messages = warning;
DROP EXTENSION compay CASCADE;
CREATE EXTENSION compay;
RESET client_min_messages;
