# shellcheck shell=bash
# webproxy.sh - a real web proxy for the tests of upstream.http_proxy
# (sourced after harness.sh): Debian's tinyproxy in a private
# configuration, on 127.0.0.1, allowing CONNECT to the ports given, and
# nothing from anywhere but loopback.
#
#   start_webproxy NAME PORT "CONNECT-PORTS" [USER PASSWORD]
#       tinyproxy on 127.0.0.1:PORT, config $T/NAME.conf, log $T/NAME.log
#       (it logs every CONNECT it is asked for); with USER and PASSWORD it
#       demands Proxy-Authorization (Basic). Waits until it listens. Sets
#       WEBPROXY_PID; stop it with stop_pid.
#   webproxy_connects NAME TARGET   CONNECT requests for TARGET (host:port)
#       in its log so far

require tinyproxy

start_webproxy() {
	local name=$1 port=$2 ports=$3 user=${4:-} pass=${5:-} p
	{
		echo "Port $port"
		echo "Listen 127.0.0.1"
		echo "Allow 127.0.0.1"
		echo "Timeout 30"
		echo "MaxClients 50"
		echo "LogLevel Connect"
		echo "LogFile \"$T/$name.log\""
		echo "PidFile \"$T/$name.pid\""
		echo "DisableViaHeader Yes"
		for p in $ports; do echo "ConnectPort $p"; done
		[ -n "$user" ] && echo "BasicAuth $user $pass"
	} >"$T/$name.conf"
	spawn "$T/$name.stderr" tinyproxy -d -c "$T/$name.conf"
	WEBPROXY_PID=$SPAWNED_PID
	add_log "$T/$name.log"
	wait_port 127.0.0.1 "$port" 10 "$WEBPROXY_PID" || { dump_file "$T/$name.stderr"; hard_error "tinyproxy $name does not listen on $port"; }
	log "web proxy $name up (tinyproxy, pid $WEBPROXY_PID): 127.0.0.1:$port, CONNECT to $ports${user:+, Basic auth as $user}"
}

webproxy_connects() {
	grep -c "Request (file descriptor [0-9]*): CONNECT $2 " "$T/$1.log" 2>/dev/null || true
}
