# Packaging: one version everywhere, released scripts frozen, an upgrade
# path from every release, every install-script piece built in, and the
# PGXS test targets defined.
#
# - compay.control's default_version is META.json's version (x.y as
#   x.y.0), the version of its "compay" entry, the first CHANGELOG heading,
#   and README's upgrade section names the upgrade script to it.
# - sql/compay--0.1.sql is byte for byte the released script.
# - Every released version has an upgrade script to the current one.
# - The Makefile's SQL_PIECES is every src/*.sql, each once.
# - `make installcheck` has tests (REGRESS and ISOLATION are not empty).
#
# Run from the repository (or the staged copy) as test/suites.sh does.

use strict;
use warnings;

use Digest::SHA qw(sha256_hex);
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;

my %released = ('0.1' => '4453f1d81b7e4a70b106350a1ddedd6ec6a13bbe20d80a45d2c3d33fb522d43c');

my ($version) = slurp_file('compay.control') =~ /^default_version\s*=\s*'([^']+)'/m;
ok(defined $version, "compay.control has a default_version ($version)");

my $meta = decode_json(slurp_file('META.json'));
is($meta->{version}, "$version.0", 'META.json version is the control version');
is($meta->{provides}{compay}{version}, "$version.0", 'META.json provides compay at the control version');
is($meta->{provides}{compay}{file}, "sql/compay--$version.sql", 'META.json names the install script');

my ($first_heading) = slurp_file('CHANGELOG.md') =~ /^## (\S+)/m;
is($first_heading, $version, 'the first CHANGELOG heading is the control version');

like(slurp_file('README.md'), qr/compay--0\.1--\Q$version\E\.sql/,
	'README names the upgrade script to the current version');

for my $v (sort keys %released)
{
	is(sha256_hex(slurp_file("sql/compay--$v.sql")), $released{$v},
		"sql/compay--$v.sql is the released script, unchanged");
	next if $v eq $version;
	ok(-e "sql/compay--$v--$version.sql", "an upgrade script from $v to $version exists");
}

# The Makefile's view of itself.
my $probe = <<'EOF';
show:
	@echo "pieces=$(SQL_PIECES)"
	@echo "regress=$(REGRESS)"
	@echo "isolation=$(ISOLATION)"
EOF
my ($stdout, $stderr);
IPC::Run::run([ 'make', '-s', '--no-print-directory', '-f', 'Makefile', '-f', '-', 'show' ],
	'<', \$probe, '>', \$stdout, '2>', \$stderr);
my ($pieces) = $stdout =~ /^pieces=(.*)$/m;
my @pieces = split ' ', $pieces // '';
my %seen;
my @twice = grep { $seen{$_}++ } @pieces;
is_deeply(\@twice, [], 'no install-script piece is listed twice');
is_deeply([ sort @pieces ], [ sort glob('src/*.sql') ], 'SQL_PIECES is every src/*.sql');
my ($regress) = $stdout =~ /^regress=(.*)$/m;
my ($isolation) = $stdout =~ /^isolation=(.*)$/m;
cmp_ok(scalar(split(' ', $regress // '')), '>', 10, 'make installcheck has regression tests');
cmp_ok(scalar(split(' ', $isolation // '')), '>', 5, 'make installcheck has isolation specs');

done_testing();
