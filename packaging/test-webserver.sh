#!/usr/bin/env bash
# Checks that the shipped web server rules (packaging/webserver/) hide every
# name beginning with ".lockstep", anywhere in the tree, and nothing else:
# each installed server (nginx, Apache) is started on 127.0.0.1 on a free
# high port with a scratch docroot and the rule included the way
# docs/ops/webserver.md says, then asked for temporary and ordinary files.
# A server that is not installed is skipped with a printed reason. Exits 1
# if any check fails.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
passed=0 failed=0
tmp=$(mktemp -d /tmp/lockstep-webserver.XXXXXX)
pids=()

cleanup() {
	local pid
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$tmp"
}
trap cleanup EXIT

say() { printf 'webserver: %s\n' "$*"; }
pass() { passed=$((passed + 1)); }
fail() {
	failed=$((failed + 1))
	say "FAIL: $*"
}

# The docroot. Workers run as nobody: everything must be world-readable.
chmod 755 "$tmp"
www=$tmp/www
mkdir -p "$www/sub/deeper" "$www/.lockstep-stage" "$www/static"
echo home >"$www/index.html"
echo page >"$www/sub/page.html"
echo ordinary >"$www/sub/my.lockstep.txt"
echo ordinary >"$www/sub/lockstep.txt"
echo partial >"$www/.lockstep.abc.tmp"
echo partial >"$www/sub/.lockstep.x"
echo partial >"$www/sub/deeper/.lockstep.y.php"
echo partial >"$www/.lockstep-stage/index.html"
echo partial >"$www/static/.lockstep.s"
echo static >"$www/static/app.css"
chmod -R a+rX "$tmp"

# free_port prints a TCP port on 127.0.0.1 that nothing listens on.
free_port() {
	local port _
	for _ in $(seq 100); do
		port=$((20000 + RANDOM % 30000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			echo "$port"
			return 0
		fi
	done
	return 1
}

# wait_up PID PORT DIR waits until the server on PORT answers, for at most
# 10 s; it fails early if the server has exited, showing the logs in DIR.
wait_up() {
	local pid=$1 port=$2 dir=$3 deadline=$((SECONDS + 10)) log
	while ((SECONDS < deadline)); do
		if ! kill -0 "$pid" 2>/dev/null; then
			break
		fi
		if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/"; then
			return 0
		fi
		sleep 0.1
	done
	fail "server on port $port did not come up; its logs:"
	for log in "$dir"/*.log; do
		sed "s|^|    ${log##*/}: |" "$log" >&2
	done
	return 1
}

# check SERVER PORT PATH WANT: GET PATH (sent as is, not normalised by curl)
# must answer one of the statuses in WANT ("200", "404|403").
check() {
	local server=$1 port=$2 path=$3 want=$4 code
	code=$(curl -s -o /dev/null --path-as-is --max-time 5 -w '%{http_code}' "http://127.0.0.1:$port$path") || true
	if [[ "|$want|" == *"|$code|"* ]]; then
		pass
	else
		fail "$server: GET $path answered $code, want $want"
	fi
}

# expect_hidden and expect_served run the same requests against each server.
expect_hidden() {
	local server=$1 port=$2 want=$3 path
	for path in /.lockstep.abc.tmp /sub/.lockstep.x /%2Elockstep.abc.tmp /sub/%2elockstep.x \
		/sub/./.lockstep.x /sub//.lockstep.x /sub/deeper/../.lockstep.x /sub/deeper/.lockstep.y.php \
		/.lockstep-stage/ /.lockstep-stage/index.html /static/.lockstep.s /.lockstep-missing; do
		check "$server" "$port" "$path" "$want"
	done
}
expect_served() {
	local server=$1 port=$2 path
	for path in / /index.html /sub/page.html /sub/my.lockstep.txt /sub/lockstep.txt /static/app.css; do
		check "$server" "$port" "$path" 200
	done
}

test_nginx() {
	if ! command -v nginx >/dev/null 2>&1; then
		say "nginx not installed (apt-get install nginx): skipping its checks"
		return 0
	fi
	local dir=$tmp/nginx port user='' pid
	mkdir -p "$dir"
	port=$(free_port) || {
		fail "nginx: no free port"
		return 0
	}
	# As root, nginx switches its workers to this user.
	((EUID == 0)) && user='user nobody nogroup;'
	cat >"$dir/nginx.conf" <<EOF
$user
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    server {
        listen 127.0.0.1:$port;
        root $www;
        include $here/webserver/nginx-lockstep.conf;
        location / { try_files \$uri \$uri/ =404; }
        # Locations a location-level rule would not cover: a ^~ prefix and
        # a regex location like the usual PHP-FPM one.
        location ^~ /static/ { }
        location ~ \.php\$ { return 200 "php\n"; }
    }
}
EOF
	if ! nginx -t -q -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" 2>"$dir/test.log"; then
		fail "nginx rejects the configuration:"
		sed 's/^/    /' "$dir/test.log" >&2
		return 0
	fi
	nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" -g 'daemon off;' 2>"$dir/stderr.log" &
	pid=$!
	pids+=("$pid")
	wait_up "$pid" "$port" "$dir" || return 0
	say "nginx $(nginx -v 2>&1 | sed 's/.*nginx\///') on 127.0.0.1:$port"
	expect_hidden nginx "$port" 404
	expect_served nginx "$port"
}

test_apache() {
	local bin
	bin=$(command -v apache2 || command -v httpd || true)
	if [[ -z $bin ]]; then
		say "apache2 not installed (apt-get install apache2): skipping its checks"
		return 0
	fi
	local dir=$tmp/apache port mods user='' pid m
	mkdir -p "$dir"
	port=$(free_port) || {
		fail "apache: no free port"
		return 0
	}
	mods=/usr/lib/apache2/modules
	[[ -d $mods ]] || mods=/usr/lib64/httpd/modules
	((EUID == 0)) && user=$'User nobody\nGroup nogroup'
	{
		for m in mpm_event authz_core alias dir proxy proxy_http; do
			# Compiled-in modules need no LoadModule.
			"$bin" -l | grep -q "mod_$m.c" || echo "LoadModule ${m}_module $mods/mod_$m.so"
		done
		cat <<EOF
ServerRoot $dir
ServerName localhost
DefaultRuntimeDir $dir
PidFile $dir/httpd.pid
ErrorLog $dir/error.log
Mutex file:$dir default
$user
Listen 127.0.0.1:$port
DirectoryIndex index.html
<Directory />
    Require all denied
</Directory>
<Directory $www>
    Require all granted
</Directory>
# As Debian's a2enconf does: at server level, before the virtual hosts.
Include $here/webserver/apache2-lockstep.conf
<VirtualHost 127.0.0.1:$port>
    DocumentRoot $www
    # URLs without ".lockstep" mapped onto such a file or directory: the
    # file system side of the rule must refuse them.
    Alias /alias-to-partial $www/.lockstep.abc.tmp
    Alias /alias-to-stage $www/.lockstep-stage
    Alias /alias-to-sub $www/sub
    # PHP sent to a backend by ProxyPassMatch, with .lockstep names kept out
    # of the pattern as docs/ops/webserver.md says (no backend listens: a
    # proxied request answers 503).
    ProxyPassMatch "^/((?!(?:.*/)?\.lockstep).*\.php)\$" "http://127.0.0.1:9/\$1"
</VirtualHost>
EOF
	} >"$dir/httpd.conf"
	if ! "$bin" -t -f "$dir/httpd.conf" >"$dir/test.log" 2>&1; then
		fail "apache rejects the configuration:"
		sed 's/^/    /' "$dir/test.log" >&2
		return 0
	fi
	"$bin" -f "$dir/httpd.conf" -DFOREGROUND 2>"$dir/stderr.log" &
	pid=$!
	pids+=("$pid")
	wait_up "$pid" "$port" "$dir" || return 0
	say "$("$bin" -v | sed -n 's/^Server version: //p') on 127.0.0.1:$port"
	expect_hidden apache "$port" 404
	expect_served apache "$port"
	check apache "$port" /alias-to-partial 403
	check apache "$port" /alias-to-stage/index.html 403
	check apache "$port" /alias-to-sub/.lockstep.x '404|403'
	check apache "$port" /alias-to-sub/page.html 200
	check apache "$port" /sub/app.php 503
}

test_nginx
test_apache
say "$passed passed, $failed failed"
((failed == 0))
