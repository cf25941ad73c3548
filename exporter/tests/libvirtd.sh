#!/usr/bin/env bash
# Starts and stops a private libvirtd for the libvirt source's real-daemon tests
# (exporter/tests/libvirt_daemon.rs): `libvirtd.sh start DIR`, `libvirtd.sh stop DIR`.
#
# The daemon runs as root with its sockets, config, PID file and log in DIR, no TCP listener,
# no authentication on its sockets (DIR is 0700, the read-only socket 0777). Clients reach the
# test driver's shared instance as test+unix:///default?socket=DIR/libvirt-sock (-ro for the
# read-only one). Only one libvirtd can run per machine: its drivers lock files under
# /run/libvirt. Needs Debian's libvirt-daemon and the libvirt-qemu user and group.
set -euo pipefail

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd=$1 dir=$2
conf=$dir/libvirtd.conf pidfile=$dir/libvirtd.pid log=$dir/libvirtd.log
deadline_s=20

answers() { virsh -q -c "test+unix:///default?socket=$dir/libvirt-sock" uri >/dev/null 2>&1; }

# A process that exists and is not a zombie waiting to be reaped.
running() { [ -r "/proc/$1/stat" ] && ! grep -q ') Z ' "/proc/$1/stat" 2>/dev/null; }

case $cmd in
start)
  mkdir -p "$dir"
  chmod 0700 "$dir"
  cat >"$conf" <<EOF
unix_sock_dir = "$dir"
unix_sock_ro_perms = "0777"
unix_sock_rw_perms = "0700"
auth_unix_ro = "none"
auth_unix_rw = "none"
log_outputs = "3:file:$log"
EOF
  # -d returns once the daemon has forked, before its drivers start: poll for an answer.
  libvirtd -f "$conf" -p "$pidfile" -d
  end=$((SECONDS + deadline_s))
  until answers; do
    if [ -s "$pidfile" ] && ! running "$(cat "$pidfile")"; then
      echo "libvirtd.sh: libvirtd in $dir exited while starting; its log:" >&2
      tail -20 "$log" >&2 || true
      exit 1
    fi
    if ((SECONDS >= end)); then
      echo "libvirtd.sh: libvirtd in $dir did not answer within ${deadline_s} s; its log:" >&2
      tail -20 "$log" >&2 || true
      exit 1
    fi
    sleep 0.05
  done
  ;;
stop)
  [ -s "$pidfile" ] || { echo "libvirtd.sh: no PID file $pidfile: nothing to stop" >&2; exit 1; }
  pid=$(cat "$pidfile")
  kill -TERM "$pid" 2>/dev/null || true
  end=$((SECONDS + deadline_s))
  while running "$pid"; do
    if ((SECONDS >= end)); then
      echo "libvirtd.sh: libvirtd $pid did not exit within ${deadline_s} s of SIGTERM; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
      exit 1
    fi
    sleep 0.05
  done
  # libvirtd removes its PID file on a clean exit; a killed one leaves it behind.
  rm -f "$pidfile"
  ;;
*) usage ;;
esac
