#!/.explorer/busybox sh
# explorer guest init: PID 1 after the initramfs's switch_root. It runs with the disk's own
# static busybox (so it works whatever the image holds), starts the workload the way Docker
# would (argv, user, env and workdir come from /.explorer/workload.conf, written at build
# time), and prints EXPLORER-MARK lines on the console (format: explorer/guest/__init__.py).
BB=/.explorer/busybox
CONF=/.explorer/workload.conf
VIEW_PORT=explorer.view  # explorer.guest.VIEW_PORT

mark() {  # mark NAME [KEY=VALUE...]: one parseable line, stamped with the guest's uptime
  read -r up _ < /proc/uptime
  name=$1
  shift
  echo "EXPLORER-MARK $name uptime_s=$up${*:+ $*}"
}

halt() {  # PID 1 must never exit: power off, and should that fail, sleep forever
  $BB sync
  $BB poweroff -f
  while :; do $BB sleep 3600; done
}

mount_kernel_filesystems() {  # what Docker gives a container; /run stays the image's own
  $BB mkdir -p /proc /sys /dev
  $BB mount -t proc -o nosuid,nodev,noexec proc /proc
  mark init
  $BB mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
  $BB mount -t devtmpfs -o nosuid devtmpfs /dev
  $BB mkdir -p /dev/pts /dev/shm /dev/mqueue
  $BB mount -t devpts -o nosuid,noexec,gid=5,mode=620,ptmxmode=666 devpts /dev/pts
  $BB mount -t tmpfs -o nosuid,nodev,mode=1777 shm /dev/shm
  $BB mount -t mqueue -o nosuid,nodev,noexec mqueue /dev/mqueue
  $BB ln -sfn /proc/self/fd /dev/fd
  $BB ln -sfn /proc/self/fd/0 /dev/stdin
  $BB ln -sfn /proc/self/fd/1 /dev/stdout
  $BB ln -sfn /proc/self/fd/2 /dev/stderr
}

setup_network() {  # QEMU user networking: static, no DHCP wait (addresses inside the guest only)
  $BB ip link set lo up
  if $BB ip addr add 10.0.2.15/24 dev eth0 && $BB ip link set eth0 up; then
    $BB ip route add default via 10.0.2.2 dev eth0
    mark network
  else
    mark net-error dev=eth0
  fi
}

decode() {  # undo the config's escapes (\\ and \n) without evaluating anything
  case $1 in
    *\\*) decoded=$(printf '%bx' "$1") && decoded=${decoded%x} ;;
    *) decoded=$1 ;;  # nothing escaped: no subshell (a fork costs under emulation)
  esac
}

listening() {  # is anything in LISTEN state (0A) on local port $1 (hex)? builtins only
  for table in /proc/net/tcp /proc/net/tcp6; do
    [ -r "$table" ] || continue
    while read -r _ local _ state _; do
      case "$local" in *:"$1") [ "$state" = 0A ] && return 0 ;; esac
    done < "$table"
  done
  return 1
}

workload_pid() {  # the child of PID 1 that is not the watcher (pid $1): the workload
  watcher=$1
  for stat in /proc/[0-9]*/stat; do
    read -r line 2>/dev/null < "$stat" || continue
    pid=${line%% *}
    set -- ${line##*) }
    [ "$2" = 1 ] && [ "$pid" != "$watcher" ] && { echo "$pid"; return 0; }
  done
  return 1
}

watch_workload() {  # in the background: report the workload's pid, then its readiness inside
  read -r me _ < /proc/self/stat  # a builtin: this is the watcher's own pid, not a subshell's
  until pid=$(workload_pid "$me"); do $BB usleep 5000; done
  mark workload "pid=$pid"
  hex=$(printf '%04X' "$port")
  until listening "$hex"; do
    [ -d "/proc/$pid" ] || exit 0
    $BB usleep 20000
  done
  read -r ready _ < /proc/uptime
  echo "EXPLORER-MARK ready-inside uptime_s=$ready port=$port"
  serve_views
}

view_port() {  # the device of the virtio-serial port named explorer.view, or nothing
  for dir in /sys/class/virtio-ports/vport*; do
    [ -r "$dir/name" ] || continue
    read -r name < "$dir/name"
    [ "$name" = "$VIEW_PORT" ] && { echo "/dev/${dir##*/}"; return 0; }
  done
  return 1
}

serve_views() {  # answer each line the host sends on the view port with a fresh guest view
  # Taken when the host asks (after its own readiness check, as docker exec is), so workers
  # forked after the port listens (nginx's, PostgreSQL's checkpointer, ...) count on both sides
  # alike, and nothing runs in the guest until then. The host connects when it creates the VM;
  # a read with nobody connected returns at once, so that case looks again a second later.
  dev=$(view_port) || { mark view-error "port=$VIEW_PORT"; exit 0; }
  exec 3<> "$dev" || { mark view-error "open=$dev"; exit 0; }
  while [ -d "/proc/$pid" ]; do
    if read -r verb request size timeout runs <&3; then
      case $verb in
        inside) serve_inside >&3 ;;
        *) EXPLORER_VIEW_REQUEST=$request EXPLORER_AGENT_PIDS="1 $me" $BB sh /.explorer/view.sh >&3 ;;
      esac
    else
      $BB sleep 1
    fi
  done
}

serve_inside() {  # the inside probe: $size bytes follow on the port; run it once per run, remove it
  # Written into explorer's own directory on the VM's disk (the instance's overlay, gone with it);
  # each run's argument set is one field of $runs (",": between runs, ":" between arguments, "-":
  # none). Each run's JSON line follows a "run" line with its exit status; its stderr, prefixed.
  f=/.explorer/inside-$request
  $BB head -c "$size" <&3 > "$f" && $BB chmod 0755 "$f"
  echo "EXPLORER-INSIDE begin"
  echo "request=$request"
  echo "path=$f"
  saved_ifs=$IFS
  IFS=,
  for set in $runs; do
    IFS=$saved_ifs
    args=$(echo "$set" | $BB tr ':' ' ')
    [ "$args" = - ] && args=
    read -r t0 _ < /proc/uptime
    # shellcheck disable=SC2086 # the arguments are split on purpose
    out=$("$f" --timeout "$timeout" $args 2> "$f.err")
    rc=$?
    read -r t1 _ < /proc/uptime
    echo "run rc=$rc started=$t0 ended=$t1"
    echo "$out"
    while IFS= read -r line; do echo "stderr $line"; done < "$f.err"
    IFS=,
  done
  IFS=$saved_ifs
  $BB rm -f "$f" "$f.err"
  echo "EXPLORER-INSIDE end"
}

mount_kernel_filesystems
setup_network
# The config, read here and not in a function: `set --` builds this shell's own argv.
port=0 workdir=/ host=explorer
set --
while IFS= read -r line; do
  decode "${line#* }"
  case ${line%% *} in
    arg) set -- "$@" "$decoded" ;;
    port) port=$decoded ;;
    workdir) workdir=$decoded ;;
    hostname) host=$decoded ;;
  esac
done < "$CONF"
[ "$#" -gt 0 ] || { mark config-error "file=$CONF"; halt; }
echo "$host" > /proc/sys/kernel/hostname
ulimit -n 1048576 2>/dev/null
cd "$workdir" 2>/dev/null || { $BB mkdir -p "$workdir" && cd "$workdir"; } || mark workdir-error
watch_workload &
# The workload runs in the foreground: a background job of a non-interactive shell would
# start with SIGINT and SIGQUIT ignored, which a container's process does not.
"$@" < /dev/null
code=$?
mark workload-exited "code=$code"
halt
