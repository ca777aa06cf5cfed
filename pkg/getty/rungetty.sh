#!/bin/busybox sh
# One getty per console named on the kernel command line (console=ttyS0 ...).
# Shell builtins where they do: each program is a fork and an exec, slow on an emulated
# CPU, and the system's other services start on it at the same moment as this.
[ -f /hostroot/etc/getty.shadow ] && cp /hostroot/etc/getty.shadow /etc/shadow
mkdir -p -m 0700 /root   # root's home (login changes to it), which busybox's Debian root lacks
login=/bin/login
[ "$INSECURE" = "true" ] && login=/bin/sh   # no password asked: a root shell
[ -e /bin/login ] || ln -s busybox /bin/login
read -r cmdline </proc/cmdline
consoles=""
for word in $cmdline; do
    case "$word" in
        console=*) tty="${word#console=}" && consoles="$consoles ${tty%%,*}" ;;
    esac
done
for tty in ${consoles:-ttyS0}; do
    [ -c "/dev/$tty" ] || continue
    [ "$tty" = tty0 ] && continue   # the VGA console: not on a headless VM
    ( while true; do
        /bin/busybox setsid /bin/busybox getty -n -l "$login" -L 115200 "$tty" vt100
        sleep 1
      done ) &
done
# The applets' links (about 400), for programs that run them by path: this shell runs
# applets itself. Made once the gettys run, at the lowest priority: meanwhile the system's
# services start.
nice -n 19 /bin/busybox --install -s 2>/dev/null
wait
