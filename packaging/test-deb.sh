#!/usr/bin/env bash
# Builds the lockstep .deb from bin/lockstep (building that first if it is
# missing), installs it on this machine with dpkg, checks what it installed
# and what its maintainer scripts did, upgrades it in place, removes and
# purges it. Run as root on a disposable machine: it refuses to touch an
# existing lockstep install, and it leaves the machine as it found it (the
# package purged, /var/lib/lockstep removed only if it created it, kernel
# limits restored). Prints "deb: N passed, N failed"; exits 1 on a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'deb: %s\n' "$*"; }
passed=0 failed=0
pass() { passed=$((passed + 1)); }
fail() {
	failed=$((failed + 1))
	say "FAIL: $*"
}
# ok DESCRIPTION COMMAND...: one check, passed when COMMAND succeeds.
ok() {
	local what=$1
	shift
	if "$@"; then pass; else fail "$what"; fi
}
not() { ! "$@"; }

if ((EUID != 0)); then
	say "must run as root (it installs a package)" >&2
	exit 2
fi
for tool in dpkg dpkg-query go; do
	command -v "$tool" >/dev/null 2>&1 || {
		say "$tool is missing" >&2
		exit 2
	}
done
status=$(dpkg-query -W -f '${Status}' lockstep 2>/dev/null || true)
if [[ -n $status && $status != *not-installed* ]] || [[ -e /etc/lockstep || -e /usr/bin/lockstep ]]; then
	say "lockstep is already on this machine ($status); not touching an existing install" >&2
	exit 2
fi

data=/var/lib/lockstep
created_data=1
[[ -e $data ]] && created_data=0
keys=(fs.inotify.max_user_watches fs.inotify.max_queued_events fs.inotify.max_user_instances
	net.core.rmem_max net.core.wmem_max)
declare -A before=()
for k in "${keys[@]}"; do
	before[$k]=$(sysctl -n "$k" 2>/dev/null || true)
done
tmp=$(mktemp -d /tmp/lockstep-deb.XXXXXX)

cleanup() {
	local status
	status=$(dpkg-query -W -f '${Status}' lockstep 2>/dev/null || true)
	if [[ -n $status && $status != *not-installed* ]]; then
		dpkg -P lockstep >/dev/null 2>&1 </dev/null || say "cleanup: dpkg -P lockstep failed"
	fi
	if ((created_data)); then
		rm -rf "$data"
	fi
	for k in "${keys[@]}"; do
		if [[ -n ${before[$k]} && $(sysctl -n "$k" 2>/dev/null) != "${before[$k]}" ]]; then
			sysctl -q -w "$k=${before[$k]}" >/dev/null 2>&1 || true
		fi
	done
	rm -rf "$tmp"
}
trap cleanup EXIT

# Build.
if [[ ! -x bin/lockstep ]]; then
	say "building bin/lockstep"
	CGO_ENABLED=0 go build -trimpath -o bin/lockstep ./cmd/lockstep
fi
version=0.0.0~test1
if ! deb=$(VERSION=$version packaging/build-deb.sh "$tmp/dist" 2>"$tmp/build.log" | tail -n 1) || [[ ! -f $deb ]]; then
	fail "packaging/build-deb.sh:"
	sed 's/^/    /' "$tmp/build.log"
	say "$passed passed, $failed failed"
	exit 1
fi
say "built $deb"
ok "the package's version" test "$(dpkg-deb -f "$deb" Version)" = "$version"
ok "the package's dependencies" test "$(dpkg-deb -f "$deb" Depends)" = procps

# Install.
if ! dpkg -i "$deb" >"$tmp/install.log" 2>&1 </dev/null; then
	fail "dpkg -i $deb:"
	sed 's/^/    /' "$tmp/install.log"
	say "$passed passed, $failed failed"
	exit 1
fi
pass

# has PATH MODE OWNER:GROUP [SOURCE]: an installed file with that mode and
# owner, byte-identical to SOURCE when given.
has() {
	local path=$1 mode=$2 owner=$3 src=${4:-} got
	if ! got=$(stat -c '%a %U:%G' "$path" 2>/dev/null); then
		fail "$path is missing"
		return
	fi
	if [[ $got != "$mode $owner" ]]; then
		fail "$path is $got, want $mode $owner"
		return
	fi
	if [[ -n $src ]] && ! cmp -s "$path" "$src"; then
		fail "$path differs from $src"
		return
	fi
	pass
}
has /usr/bin/lockstep 755 root:root bin/lockstep
has /lib/systemd/system/lockstep.service 644 root:root packaging/lockstep.service
has /etc/lockstep/lockstep.toml 640 root:root packaging/lockstep.toml
has /usr/lib/sysctl.d/60-lockstep.conf 644 root:root packaging/sysctl.d/60-lockstep.conf
has /usr/share/bash-completion/completions/lockstep 644 root:root packaging/bash-completion/lockstep
if grep -rqsE '^path-exclude[= ]+/usr/share/man' /etc/dpkg/dpkg.cfg.d; then
	say "dpkg excludes /usr/share/man on this machine (/etc/dpkg/dpkg.cfg.d): manual page not checked"
else
	has /usr/share/man/man1/lockstep.1.gz 644 root:root
	ok "the manual page is lockstep(1) and documents every command" \
		bash -c 'page=$(zcat /usr/share/man/man1/lockstep.1.gz) && [[ $page == ".TH LOCKSTEP 1 "* ]] &&
			for c in init id run status wait conflicts resume resync chunk; do grep -q "^\.SS \"lockstep $c\"" <<<"$page" || exit 1; done'
fi
if grep -rqsE '^path-exclude[= ]+/usr/share/doc' /etc/dpkg/dpkg.cfg.d; then
	say "dpkg excludes /usr/share/doc on this machine (/etc/dpkg/dpkg.cfg.d): documentation not checked"
else
	for pair in README.md:README.md SPEC.md:docs/SPEC.md install.md:docs/ops/install.md kernel.md:docs/ops/kernel.md \
		webserver.md:docs/ops/webserver.md guide.md:docs/ops/guide.md \
		grafana-dashboard.json:docs/ops/grafana-dashboard.json nginx-lockstep.conf:packaging/webserver/nginx-lockstep.conf \
		apache2-lockstep.conf:packaging/webserver/apache2-lockstep.conf \
		override.conf.example:packaging/override.conf.example \
		run-as-user.conf.example:packaging/run-as-user.conf.example; do
		has "/usr/share/doc/lockstep/${pair%%:*}" 644 root:root "${pair#*:}"
	done
fi
ok "the configuration is a dpkg conffile" \
	bash -c "dpkg-query -W -f '\${Conffiles}' lockstep | grep -q '^ /etc/lockstep/lockstep.toml '"
if ((created_data)); then
	has "$data" 700 root:root
fi

# The identity: created by postinst, announced, and stable.
id=$(lockstep id --data-dir "$data" 2>"$tmp/id.err") || true
if [[ -n $id && $id != *[[:space:]]* ]]; then
	pass
else
	fail "lockstep id --data-dir $data printed '$id': $(cat "$tmp/id.err")"
fi
ok "postinst prints the node ID" grep -qxF "    $id" "$tmp/install.log"
ok "postinst says the daemon is not started" grep -q 'installed but not started' "$tmp/install.log"
ok "lockstep init keeps the identity" test "$(lockstep init --data-dir "$data" 2>/dev/null)" = "$id"
data_files=$(ls -A "$data")

# Kernel limits: in effect, or postinst said which are not (as in a
# container whose /proc/sys belongs to the host).
missing=()
while read -r key _ value; do
	[[ $key == fs.* || $key == net.* ]] || continue
	[[ $(sysctl -n "$key" 2>/dev/null) == "$value" ]] || missing+=("$key")
done <packaging/sysctl.d/60-lockstep.conf
if ((${#missing[@]} == 0)); then
	pass
	ok "postinst warns about no limit in effect" not grep -q 'not in effect' "$tmp/install.log"
else
	say "kernel limits not settable here: ${missing[*]}"
	for key in "${missing[@]}"; do
		ok "postinst warns that $key is not in effect" grep -q "not in effect:.* $key=" "$tmp/install.log"
	done
fi

# systemd: neither enabled nor started by a first install, and the unit and
# the documented drop-ins verify cleanly against the installed binary.
if command -v systemctl >/dev/null 2>&1; then
	ok "the service is not enabled" test "$(systemctl is-enabled lockstep.service 2>/dev/null)" = disabled
else
	say "systemctl is missing: enablement not checked"
fi
if [[ -d /run/systemd/system ]]; then
	ok "the service is not running" not systemctl is-active --quiet lockstep.service
else
	say "systemd is not running here: service state not checked"
fi
# verify UNIT: systemd-analyze verify passes with nothing to say.
verify() {
	local out
	if out=$(cd "$tmp" && systemd-analyze verify "$1" 2>&1) && [[ -z $out ]]; then
		pass
	else
		fail "systemd-analyze verify $1: ${out:-exit status}"
	fi
}
if command -v systemd-analyze >/dev/null 2>&1; then
	verify /lib/systemd/system/lockstep.service
	mkdir -p "$tmp/units/lockstep.service.d"
	cp /lib/systemd/system/lockstep.service "$tmp/units/"
	for example in override run-as-user; do
		rm -f "$tmp/units/lockstep.service.d/"*
		cp "/usr/share/doc/lockstep/$example.conf.example" "$tmp/units/lockstep.service.d/$example.conf" 2>/dev/null ||
			cp "packaging/$example.conf.example" "$tmp/units/lockstep.service.d/$example.conf"
		verify "$tmp/units/lockstep.service"
	done
else
	say "systemd-analyze is missing (apt-get install systemd): unit not verified"
fi

# The shipped configuration loads, once the daemon can be asked about it:
# `status` exits 1 when no daemon answers, 2 on a configuration error.
if lockstep help 2>/dev/null | grep -q '^  status '; then
	rc=0
	lockstep status --config /etc/lockstep/lockstep.toml >/dev/null 2>"$tmp/status.err" || rc=$?
	ok "the shipped configuration loads (status exit $rc: $(head -n 1 "$tmp/status.err"))" test "$rc" = 1
else
	say "lockstep has no status command yet: the shipped configuration was not loaded by the binary"
fi

# Bash completion, from the installed file.
completion() {
	bash -c 'source /usr/share/bash-completion/completions/lockstep
		COMP_LINE=$1 COMP_POINT=${#1} COMPREPLY=()
		_lockstep
		[[ ${#COMPREPLY[@]} -eq 0 ]] || printf "%s\n" "${COMPREPLY[@]}" | sort | tr "\n" " "' _ "$1"
}
# completes LINE WANT: completing LINE offers exactly WANT (sorted).
completes() {
	local got
	got=$(completion "$1")
	got=${got% }
	if [[ $got == "$2" ]]; then pass; else fail "completing '$1' offered '$got', want '$2'"; fi
}
cat >"$tmp/cluster.toml" <<'EOF'
[node]
name = "web1"
[[peers]]
name = "web2"
id = "NOT-A-FOLDER"
[[folders]]
id = "docroot"
[[folders]]
  id="uploads"   # quorum
[[folders]]
id = 'sessions'
EOF
completes "lockstep " "--help --version chunk conflicts help id init resume resync run status version wait"
completes "lockstep re" "resume resync"
completes "lockstep status --" "--config --folder --help --json --max-lag"
completes "lockstep resync --" "--config --folder --help --no-wait"
completes "lockstep status --config $tmp/cluster.toml --folder " "docroot sessions uploads"
completes "lockstep conflicts --config=$tmp/cluster.toml --folder=up" "uploads"
mkdir "$tmp/data-dir"
completes "lockstep init --data-dir $tmp/data-" "$tmp/data-dir"
completes "lockstep id --config $tmp/clus" "$tmp/cluster.toml"
completes "lockstep help co" "conflicts"

# Upgrade in place (same package again, as dpkg sees an upgrade): the
# identity stays, and an edited configuration is kept.
echo "# edited by the operator" >>/etc/lockstep/lockstep.toml
if dpkg -i "$deb" >"$tmp/upgrade.log" 2>&1 </dev/null; then
	pass
	ok "the upgrade keeps the node ID" test "$(lockstep id --data-dir "$data")" = "$id"
	ok "the upgrade keeps the edited configuration" grep -q '^# edited by the operator$' /etc/lockstep/lockstep.toml
	ok "the upgrade does not repeat the first-install steps" not grep -q 'installed but not started' "$tmp/upgrade.log"
else
	fail "dpkg -i over the installed package:"
	sed 's/^/    /' "$tmp/upgrade.log"
fi

# Remove keeps the configuration and the data; purge removes the
# configuration and still keeps the data dir (identity and index).
if dpkg -r lockstep >"$tmp/remove.log" 2>&1 </dev/null; then
	pass
	ok "remove deletes the binary" test ! -e /usr/bin/lockstep
	ok "remove keeps the configuration" test -f /etc/lockstep/lockstep.toml
	ok "remove keeps the data dir" test "$(ls -A "$data")" = "$data_files"
else
	fail "dpkg -r lockstep:"
	sed 's/^/    /' "$tmp/remove.log"
fi
if dpkg -P lockstep >"$tmp/purge.log" 2>&1 </dev/null; then
	pass
	ok "purge deletes the configuration" test ! -e /etc/lockstep
	ok "purge keeps the data dir" test "$(ls -A "$data" 2>/dev/null)" = "$data_files"
	ok "purge says the data dir is kept" grep -q "$data is kept" "$tmp/purge.log"
else
	fail "dpkg -P lockstep:"
	sed 's/^/    /' "$tmp/purge.log"
fi

say "$passed passed, $failed failed"
((failed == 0))
