# explorer guest view: prints the kernel, the boot_id and the process table as the guest
# sees them. POSIX sh with builtins and cat only: it runs in a bare image and in busybox.
echo "EXPLORER-VIEW begin"
echo "viewer_pid=$$"
# the host's request this view answers, where it asked over a channel (the microVM's view port)
[ -n "${EXPLORER_VIEW_REQUEST:-}" ] && echo "request=$EXPLORER_VIEW_REQUEST"
# explorer's own processes in the guest (the VM's init and its watcher), told apart from the OS's
echo "agent_pids=${EXPLORER_AGENT_PIDS:-}"
# gVisor (release 20221219) has no /proc/sys/kernel/osrelease: ask uname(2) there instead
release=
read -r release < /proc/sys/kernel/osrelease 2>/dev/null || release=$(uname -r 2>/dev/null)
echo "kernel_release=$release"
# seconds since this kernel booted, by its own clock (a restored VM's stood still while saved)
if [ -r /proc/uptime ]; then
  read -r uptime _ < /proc/uptime
  echo "uptime_s=$uptime"
fi
if [ -r /proc/sys/kernel/random/boot_id ]; then
  read -r boot < /proc/sys/kernel/random/boot_id
  echo "boot_id=$boot"
fi
for dir in /proc/[0-9]*; do
  read -r stat < "$dir/stat" 2>/dev/null || continue
  pid=${stat%% *}
  name=${stat#*(}
  name=${name%)*}
  rest=${stat##*) }
  set -- $rest
  # fields after the name: state ppid pgrp session tty_nr tpgid flags; PF_KTHREAD = 0x200000
  kthread=0
  [ $(( $7 & 2097152 )) -ne 0 ] && kthread=1
  echo "proc $pid $2 $kthread $name"
done
echo "EXPLORER-VIEW end"
