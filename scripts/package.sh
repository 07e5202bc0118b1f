#!/usr/bin/env bash
# Builds the .deb (cargo-deb) and the .rpm (cargo-generate-rpm) into target/packages/ and checks them:
#   - the .deb: its files, its conffile, its maintainer scripts (user created, unit enabled but not started,
#     not restarted on upgrade), lintian (any error fails), and an install test: extracted into a throwaway
#     root, its binary must pass `check` on its config and on the config's commented example, its unit must
#     sit where systemd looks and pass `systemd-analyze verify`, its binary must be stripped;
#   - the .rpm: `rpm -qpl` (files), `rpm -qpc` (config files, %config(noreplace)), `rpm -qp --scripts` (user
#     creation, enable without start, stop on erase, no restart on upgrade), and the packed binary is the
#     stripped one.
# Every check is an assertion: the script exits non-zero on the first one that fails.
#
# Installs what it lacks: lintian, rpm, systemd (for systemd-analyze) and binutils with apt-get (through sudo
# when not root), and cargo-deb and cargo-generate-rpm with `cargo install --locked --debug` into ~/.cargo/bin (or
# $CARGO_HOME/bin) when they are not on PATH; later runs reuse them.
#
# Usage: scripts/package.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned so that a new release cannot change the packages or break the build under CI's toolchain.
CARGO_DEB_VERSION=3.8.0
CARGO_GENERATE_RPM_VERSION=0.21.1

out=target/packages
say() { echo "package.sh: $*" >&2; }
fail() {
    say "FAILED: $*"
    exit 1
}
run() {
    say "+ $*"
    "$@"
}
started=$SECONDS

# --- tools --------------------------------------------------------------------------------------------------

export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

apt_missing=()
command -v lintian >/dev/null || apt_missing+=(lintian)
command -v rpm >/dev/null || apt_missing+=(rpm)
command -v systemd-analyze >/dev/null || apt_missing+=(systemd)
command -v readelf >/dev/null || apt_missing+=(binutils)
if ((${#apt_missing[@]})); then
    command -v apt-get >/dev/null || fail "missing ${apt_missing[*]} and there is no apt-get here to install them"
    sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || fail "missing ${apt_missing[*]}; run as root: apt-get install -y ${apt_missing[*]}"
        sudo=(sudo)
    fi
    say "installing ${apt_missing[*]}"
    run "${sudo[@]}" apt-get update -qq
    run "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${apt_missing[@]}" >/dev/null
fi

cargo_missing=()
cargo deb --version >/dev/null 2>&1 || cargo_missing+=("cargo-deb@$CARGO_DEB_VERSION")
cargo generate-rpm --version >/dev/null 2>&1 || cargo_missing+=("cargo-generate-rpm@$CARGO_GENERATE_RPM_VERSION")
if ((${#cargo_missing[@]})); then
    # Unoptimized (--debug): on 2 cores the two tools build in under 3 minutes instead of about 7, and they
    # then package this project in about 25 s more than optimized builds would. A fresh CI machine pays the
    # build once per run, so that is the cheaper side.
    run cargo install --locked --quiet --debug "${cargo_missing[@]}"
fi
say "tools: $(cargo deb --version 2>&1 | head -1), $(cargo generate-rpm --version 2>&1 | head -1), $(lintian --version)"

# --- build --------------------------------------------------------------------------------------------------

# The .deb's version is <Cargo version>-1; its changelog must have an entry for it (lintian wants one).
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
[[ -n $version ]] || fail "cannot read the version from Cargo.toml"
head -1 packaging/deb/changelog | grep -q "^zk-supervise ($version-1) " ||
    fail "packaging/deb/changelog: the latest entry is not for $version-1; add one (see dch(1))"

rm -rf "$out"
mkdir -p "$out"
# One release build (stripped by the release profile) that both packages take their binary from.
run cargo build --locked --release --bin zk-supervise
run cargo deb --no-build --locked --output "$out/"
run cargo generate-rpm --output "$out/"

debs=("$out"/*.deb)
rpms=("$out"/*.rpm)
[[ ${#debs[@]} -eq 1 && -f ${debs[0]} ]] || fail "expected one .deb in $out, found: ${debs[*]}"
[[ ${#rpms[@]} -eq 1 && -f ${rpms[0]} ]] || fail "expected one .rpm in $out, found: ${rpms[*]}"
deb=${debs[0]}
rpm_file=${rpms[0]}
say "built $deb ($(stat -c %s "$deb") bytes) and $rpm_file ($(stat -c %s "$rpm_file") bytes)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Asserts that the text in $1 has a line matching the extended regex $2 (described by $3).
expect_line() {
    grep -Eq -- "$2" <<<"$1" || fail "$3: no line matches /$2/ in:"$'\n'"$1"
}
# Asserts that it has none.
refuse_line() {
    if grep -Eq -- "$2" <<<"$1"; then
        fail "$3: a line matches /$2/ in:"$'\n'"$1"
    fi
}
# A command line that would start or restart the unit: `systemctl start|restart|try-restart ...`,
# `deb-systemd-invoke start|restart ...` (also through debhelper's `_dh_action=`), `systemctl enable --now`.
# Echo lines that merely advise a restart do not count.
starts_unit='^[[:space:]]*(systemctl|deb-systemd-invoke)[^#]*[[:space:]](start|restart|try-restart|reload-or-restart)[[:space:]]'
starts_unit+='|^[[:space:]]*systemctl[^#]*[[:space:]]enable[^#]*--now|_dh_action='

# --- the .deb -----------------------------------------------------------------------------------------------

say "checking $deb"
listing=$(dpkg-deb --contents "$deb" | awk '{print $NF}')
for f in ./usr/bin/zk-supervise \
    ./usr/lib/systemd/system/zk-supervise.service \
    ./etc/zk-supervise/workers.toml \
    ./usr/lib/sysusers.d/zk-supervise.conf \
    ./usr/share/man/man1/zk-supervise.1.gz \
    ./usr/share/doc/zk-supervise/copyright; do
    expect_line "$listing" "^${f//./\\.}\$" "deb contents"
done

dpkg-deb --control "$deb" "$work/control"
[[ -f $work/control/conffiles ]] || fail "the .deb has no conffiles"
expect_line "$(cat "$work/control/conffiles")" '^/etc/zk-supervise/workers\.toml$' "deb conffiles"
postinst=$(cat "$work/control/postinst")
expect_line "$postinst" 'systemd-sysusers .*zk-supervise\.conf' "deb postinst creates the user"
expect_line "$postinst" 'deb-systemd-helper enable zk-supervise\.service' "deb postinst enables the unit"
refuse_line "$postinst" "$starts_unit" "deb postinst must neither start nor restart the unit"
prerm=$(cat "$work/control/prerm")
# shellcheck disable=SC2016 # a literal $1 in the script
expect_line "$prerm" '"\$1" = remove' "deb prerm stops only on removal"
expect_line "$prerm" 'deb-systemd-invoke stop zk-supervise\.service' "deb prerm stops the unit on removal"
expect_line "$(cat "$work/control/control")" '^Depends:.*systemd' "deb depends on systemd for systemd-sysusers"

say "lintian $deb"
lintian_out=$(lintian --fail-on error --display-level '>=warning' "$deb" 2>&1) || {
    printf '%s\n' "$lintian_out" >&2
    fail "lintian reports errors"
}
if [[ -n $lintian_out ]]; then
    say "lintian warnings (not fatal):"
    printf '%s\n' "$lintian_out" >&2
fi

# Install test: unpack into a throwaway root, as dpkg would, and use what landed there.
root=$work/root
dpkg-deb --extract "$deb" "$root"
bin=$root/usr/bin/zk-supervise
conf=$root/etc/zk-supervise/workers.toml
[[ -x $bin ]] || fail "$bin is not executable"
say "+ $bin check $conf"
"$bin" check "$conf" || fail "the packaged config does not pass check"
# The commented example in it must be valid too: uncomment its settings ("#key", not "# prose") and check.
sed 's/^#\([^ #!]\)/\1/' "$conf" >"$work/example.toml"
grep -q '^\[\[worker\]\]' "$work/example.toml" || fail "the packaged config has no commented [[worker]] example"
say "+ $bin check <the config with its example uncommented>"
"$bin" check "$work/example.toml" || fail "the commented example in the packaged config does not pass check"
"$bin" --version >/dev/null || fail "$bin --version fails"
# (Output captured first: with pipefail, `readelf | grep -q` can fail on SIGPIPE when grep matches early.)
sections=$(readelf -S --wide "$bin")
if grep -q '\.symtab' <<<"$sections"; then
    fail "$bin is not stripped"
fi

unit=
for dir in usr/lib/systemd/system lib/systemd/system; do
    [[ -f $root/$dir/zk-supervise.service ]] && unit=$root/$dir/zk-supervise.service
done
[[ -n $unit ]] || fail "the unit is in neither /usr/lib/systemd/system nor /lib/systemd/system"
expect_line "$(cat "$unit")" '^Type=notify$' "the unit"
expect_line "$(cat "$unit")" '^KillMode=mixed$' "the unit"
expect_line "$(cat "$unit")" '^RestartPreventExitStatus=78$' "the unit"
expect_line "$(cat "$unit")" '^ExecStartPre=/usr/bin/zk-supervise check /etc/zk-supervise/workers\.toml$' "the unit"
expect_line "$(cat "$unit")" '^ExecStart=/usr/bin/zk-supervise run /etc/zk-supervise/workers\.toml$' "the unit"

# systemd-analyze verify checks that the commands exist and are executable, so point them at the unpacked
# binary (the only change), and find the man page of Documentation= in the unpacked root. It runs as root
# without systemd being PID 1.
sed "s#/usr/bin/zk-supervise#$bin#g" "$unit" >"$work/zk-supervise.service"
say "+ systemd-analyze verify <the packaged unit, run from $root>"
verify_out=$(MANPATH="$root/usr/share/man" SYSTEMD_LOG_LEVEL=notice \
    systemd-analyze verify "$work/zk-supervise.service" 2>&1) || {
    printf '%s\n' "$verify_out" >&2
    fail "systemd-analyze verify fails"
}
# It exits 0 on some problems and only prints them; the only lines allowed are about other units.
if grep -q 'zk-supervise' <<<"$verify_out"; then
    printf '%s\n' "$verify_out" >&2
    fail "systemd-analyze verify complains about the unit"
fi

# --- the .rpm -----------------------------------------------------------------------------------------------

say "checking $rpm_file"
say "+ rpm -qpl $rpm_file"
files=$(rpm -qpl "$rpm_file")
printf '%s\n' "$files" >&2
for f in /usr/bin/zk-supervise \
    /usr/lib/systemd/system/zk-supervise.service \
    /usr/lib/systemd/system-preset/50-zk-supervise.preset \
    /usr/lib/sysusers.d/zk-supervise.conf \
    /etc/zk-supervise/workers.toml \
    /usr/share/man/man1/zk-supervise.1; do
    expect_line "$files" "^${f//./\\.}\$" "rpm -qpl"
done

say "+ rpm -qpc $rpm_file"
config=$(rpm -qpc "$rpm_file")
printf '%s\n' "$config" >&2
expect_line "$config" '^/etc/zk-supervise/workers\.toml$' "rpm -qpc"
# %config(noreplace): the file flags of workers.toml include c (config) and n (noreplace).
flags=$(rpm -qp --queryformat '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$rpm_file")
expect_line "$flags" '^[a-z]*c[a-z]*n[a-z]* /etc/zk-supervise/workers\.toml$|^[a-z]*n[a-z]*c[a-z]* /etc/zk-supervise/workers\.toml$' \
    "workers.toml is %config(noreplace)"

say "+ rpm -qp --scripts $rpm_file"
scripts=$(rpm -qp --scripts "$rpm_file")
printf '%s\n' "$scripts" >&2
# Each scriptlet in its section: rpm prints "<name> scriptlet (using /bin/sh):" and then its body.
section() { awk -v want="$1" '/^[a-z]+ scriptlet/ {on = ($1 == want)} on' <<<"$scripts"; }
expect_line "$(section preinstall)" 'useradd -r .*zk-supervise' "rpm %pre creates the user"
expect_line "$(section preinstall)" 'groupadd -r zk-supervise' "rpm %pre creates the group"
expect_line "$(section postinstall)" 'systemctl --no-reload preset zk-supervise\.service' "rpm %post enables the unit"
expect_line "$(section preuninstall)" 'systemctl --no-reload disable --now zk-supervise\.service' "rpm %preun stops it on erase"
expect_line "$(section postuninstall)" 'systemctl daemon-reload' "rpm %postun reloads systemd"
refuse_line "$scripts" "$starts_unit" "the rpm scriptlets must neither start nor restart the unit"

# The packed binary is the release build, and that is stripped (`strip = true` in the release profile).
release_bin=target/release/zk-supervise
sections=$(readelf -S --wide "$release_bin")
if grep -q '\.symtab' <<<"$sections"; then
    fail "$release_bin is not stripped"
fi
want=$(sha256sum "$release_bin" | cut -d' ' -f1)
digests=$(rpm -qp --queryformat '[%{FILEDIGESTS} %{FILENAMES}\n]' "$rpm_file")
expect_line "$digests" "^$want /usr/bin/zk-supervise\$" "the rpm's /usr/bin/zk-supervise is the stripped $release_bin"

say "OK: $deb and $rpm_file built and checked in $((SECONDS - started)) s"
